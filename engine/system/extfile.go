package system

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// extReader reads small files (os-release, fstab) from an ext2/3/4 file
// system without mounting it: superblock, group descriptors, inodes, block
// maps or extent trees, linear directory scans and symbolic links. It reads
// only; every count read from the disk is bounded, so a damaged or hostile
// file system gives an error, never a hang or a huge allocation.
type extReader struct {
	r          io.ReaderAt
	size       int64
	bs         int64
	ipg        uint32
	inodes     uint32
	inodeSize  int64
	descSize   int64
	descStart  int64 // byte offset of the group descriptor table
	groupCount int64
	// budget bounds the reads of one readFile or exists call: a hostile
	// file system can chain symbolic links to long paths through huge
	// directories.
	budget int
}

const (
	extMaxFile     = 1 << 20 // largest file read
	extMaxDirBytes = 16 << 20
	extMaxHops     = 40
	extRootInode   = 2
	extReadBudget  = 50000
)

var errNotFound = errors.New("no such file")

func newExtReader(r io.ReaderAt, size int64) (*extReader, error) {
	sb := make([]byte, 1024)
	if n, err := r.ReadAt(sb, 1024); n < len(sb) {
		return nil, fmt.Errorf("read ext superblock: %w", err)
	}
	if binary.LittleEndian.Uint16(sb[56:]) != 0xEF53 {
		return nil, errors.New("no ext2/3/4 superblock")
	}
	logBS := binary.LittleEndian.Uint32(sb[24:])
	if logBS > 6 {
		return nil, fmt.Errorf("ext block size shift %d out of range", logBS)
	}
	e := &extReader{r: r, size: size, bs: 1024 << logBS}
	e.inodes = binary.LittleEndian.Uint32(sb[0:])
	bpg := int64(binary.LittleEndian.Uint32(sb[32:]))
	e.ipg = binary.LittleEndian.Uint32(sb[40:])
	blocks := int64(binary.LittleEndian.Uint32(sb[4:]))
	incompat := binary.LittleEndian.Uint32(sb[96:])
	e.inodeSize = 128
	if binary.LittleEndian.Uint32(sb[76:]) >= 1 {
		e.inodeSize = int64(binary.LittleEndian.Uint16(sb[88:]))
	}
	e.descSize = 32
	if incompat&0x80 != 0 { // 64bit
		blocks |= int64(binary.LittleEndian.Uint32(sb[0x150:])) << 32
		if ds := int64(binary.LittleEndian.Uint16(sb[254:])); ds >= 64 {
			e.descSize = ds
		}
	}
	switch {
	case bpg <= 0 || e.ipg == 0 || blocks <= 0:
		return nil, errors.New("ext superblock has zero blocks or groups")
	case e.inodeSize < 128 || e.inodeSize > e.bs || e.inodeSize&(e.inodeSize-1) != 0:
		return nil, fmt.Errorf("ext inode size %d invalid", e.inodeSize)
	case e.descSize > 1024 || e.descSize&(e.descSize-1) != 0:
		return nil, fmt.Errorf("ext descriptor size %d invalid", e.descSize)
	}
	first := int64(binary.LittleEndian.Uint32(sb[20:]))
	e.descStart = (first + 1) * e.bs
	e.groupCount = (blocks - first + bpg - 1) / bpg
	return e, nil
}

// readAt reads exactly len(p) bytes inside the file system.
func (e *extReader) readAt(p []byte, off int64) error {
	if e.budget--; e.budget < 0 {
		return errors.New("gave up: the path takes too many reads to resolve")
	}
	if off < 0 || off+int64(len(p)) > e.size {
		return fmt.Errorf("ext read of %d bytes at %d lies outside the %d-byte volume", len(p), off, e.size)
	}
	n, err := e.r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return err
}

type extInode struct {
	mode  uint16
	size  int64
	flags uint32
	block [60]byte
}

func (i *extInode) isDir() bool     { return i.mode&0xF000 == 0x4000 }
func (i *extInode) isSymlink() bool { return i.mode&0xF000 == 0xA000 }
func (i *extInode) isReg() bool     { return i.mode&0xF000 == 0x8000 }

func (e *extReader) inode(n uint32) (*extInode, error) {
	if n == 0 || n > e.inodes {
		return nil, fmt.Errorf("inode %d out of range", n)
	}
	g := int64((n - 1) / e.ipg)
	idx := int64((n - 1) % e.ipg)
	if g >= e.groupCount {
		return nil, fmt.Errorf("inode %d: group %d out of range", n, g)
	}
	d := make([]byte, e.descSize)
	if err := e.readAt(d, e.descStart+g*e.descSize); err != nil {
		return nil, fmt.Errorf("read group descriptor %d: %w", g, err)
	}
	table := int64(binary.LittleEndian.Uint32(d[8:]))
	if e.descSize >= 64 {
		table |= int64(binary.LittleEndian.Uint32(d[0x28:])) << 32
	}
	raw := make([]byte, 128)
	if err := e.readAt(raw, table*e.bs+idx*e.inodeSize); err != nil {
		return nil, fmt.Errorf("read inode %d: %w", n, err)
	}
	in := &extInode{
		mode:  binary.LittleEndian.Uint16(raw[0:]),
		size:  int64(binary.LittleEndian.Uint32(raw[4:])) | int64(binary.LittleEndian.Uint32(raw[108:]))<<32,
		flags: binary.LittleEndian.Uint32(raw[32:]),
	}
	copy(in.block[:], raw[40:100])
	if in.size < 0 {
		return nil, fmt.Errorf("inode %d: negative size", n)
	}
	return in, nil
}

// physBlock maps logical block lb of an inode to its physical block, 0
// for a hole.
func (e *extReader) physBlock(in *extInode, lb int64) (int64, error) {
	if in.flags&0x80000 != 0 { // extents
		return e.extentLookup(in.block[:], lb, 0)
	}
	per := e.bs / 4
	ptr := func(b []byte, i int64) int64 { return int64(binary.LittleEndian.Uint32(b[i*4:])) }
	if lb < 12 {
		return ptr(in.block[:], lb), nil
	}
	lb -= 12
	level, start := 0, int64(0)
	span := int64(1)
	for level = 1; level <= 3; level++ {
		span *= per
		if lb < span {
			break
		}
		lb -= span
	}
	if level > 3 {
		return 0, fmt.Errorf("logical block beyond the triple-indirect range")
	}
	start = ptr(in.block[:], int64(11+level))
	buf := make([]byte, e.bs)
	for l := level; l > 0 && start != 0; l-- {
		span /= per
		if err := e.readAt(buf, start*e.bs); err != nil {
			return 0, fmt.Errorf("read indirect block %d: %w", start, err)
		}
		start = ptr(buf, lb/span)
		lb %= span
	}
	return start, nil
}

func (e *extReader) extentLookup(node []byte, lb int64, depth int) (int64, error) {
	if depth > 5 {
		return 0, errors.New("extent tree deeper than 5 levels")
	}
	if len(node) < 12 || binary.LittleEndian.Uint16(node[0:]) != 0xF30A {
		return 0, errors.New("bad extent header")
	}
	n := int(binary.LittleEndian.Uint16(node[2:]))
	if 12+n*12 > len(node) {
		return 0, fmt.Errorf("extent node claims %d entries", n)
	}
	leaf := binary.LittleEndian.Uint16(node[6:]) == 0
	var next int64 = -1
	for i := 0; i < n; i++ {
		ent := node[12+i*12:]
		first := int64(binary.LittleEndian.Uint32(ent[0:]))
		if leaf {
			l := int64(binary.LittleEndian.Uint16(ent[4:]))
			uninit := l > 32768
			if uninit {
				l -= 32768
			}
			if lb >= first && lb < first+l {
				if uninit {
					return 0, nil // reads as zeros
				}
				start := int64(binary.LittleEndian.Uint16(ent[6:]))<<32 | int64(binary.LittleEndian.Uint32(ent[8:]))
				return start + lb - first, nil
			}
			continue
		}
		if first <= lb {
			next = int64(binary.LittleEndian.Uint16(ent[8:]))<<32 | int64(binary.LittleEndian.Uint32(ent[4:]))
		}
	}
	if leaf || next < 0 {
		return 0, nil
	}
	buf := make([]byte, e.bs)
	if err := e.readAt(buf, next*e.bs); err != nil {
		return 0, fmt.Errorf("read extent block %d: %w", next, err)
	}
	return e.extentLookup(buf, lb, depth+1)
}

// data returns the contents of an inode, at most limit bytes.
func (e *extReader) data(in *extInode, limit int64) ([]byte, error) {
	if in.size > limit {
		return nil, fmt.Errorf("%d bytes, more than the %d read", in.size, limit)
	}
	if in.flags&0x10000000 != 0 { // inline data: the first 60 bytes live in i_block
		if in.size > 60 {
			return nil, errors.New("inline data longer than the inode holds is not read")
		}
		return append([]byte(nil), in.block[:in.size]...), nil
	}
	out := make([]byte, 0, in.size)
	buf := make([]byte, e.bs)
	for lb := int64(0); int64(len(out)) < in.size; lb++ {
		pb, err := e.physBlock(in, lb)
		if err != nil {
			return nil, err
		}
		if pb == 0 {
			clear(buf)
		} else if err := e.readAt(buf, pb*e.bs); err != nil {
			return nil, fmt.Errorf("read data block %d: %w", pb, err)
		}
		out = append(out, buf[:min(e.bs, in.size-int64(len(out)))]...)
	}
	return out, nil
}

// lookup finds name in directory inode dir.
func (e *extReader) lookup(dir *extInode, name string) (uint32, error) {
	if !dir.isDir() {
		return 0, errors.New("not a directory")
	}
	if dir.flags&0x10000000 != 0 {
		return 0, errors.New("inline directories are not read")
	}
	if dir.size > extMaxDirBytes {
		return 0, fmt.Errorf("directory of %d bytes is larger than the %d read", dir.size, extMaxDirBytes)
	}
	buf := make([]byte, e.bs)
	for lb := int64(0); lb*e.bs < dir.size; lb++ {
		pb, err := e.physBlock(dir, lb)
		if err != nil {
			return 0, err
		}
		if pb == 0 {
			continue
		}
		if err := e.readAt(buf, pb*e.bs); err != nil {
			return 0, fmt.Errorf("read directory block %d: %w", pb, err)
		}
		for off := int64(0); off+8 <= e.bs; {
			ino := binary.LittleEndian.Uint32(buf[off:])
			rec := int64(binary.LittleEndian.Uint16(buf[off+4:]))
			nl := int64(buf[off+6])
			if rec < 8 || off+rec > e.bs {
				break // a damaged block: the rest of it is not trusted
			}
			if ino != 0 && nl <= rec-8 && string(buf[off+8:off+8+nl]) == name {
				return ino, nil
			}
			off += rec
		}
	}
	return 0, errNotFound
}

// readFile returns the contents of the file at p (absolute, inside the
// file system), following symbolic links as the kernel would with this
// file system mounted at /.
func (e *extReader) readFile(p string) ([]byte, error) {
	e.budget = extReadBudget
	in, err := e.resolve(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if !in.isReg() {
		return nil, fmt.Errorf("%s: not a regular file", p)
	}
	b, err := e.data(in, extMaxFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return b, nil
}

// exists reports whether p names anything.
func (e *extReader) exists(p string) bool {
	e.budget = extReadBudget
	_, err := e.resolve(p)
	return err == nil
}

func (e *extReader) resolve(p string) (*extInode, error) {
	hops := 0
	parts := splitPath(p)
	var stack []uint32 // inodes of the directories walked, for ".."
	cur := uint32(extRootInode)
	for len(parts) > 0 {
		name := parts[0]
		parts = parts[1:]
		dir, err := e.inode(cur)
		if err != nil {
			return nil, err
		}
		if name == ".." {
			if len(stack) > 0 {
				cur, stack = stack[len(stack)-1], stack[:len(stack)-1]
			}
			continue
		}
		ino, err := e.lookup(dir, name)
		if err != nil {
			return nil, err
		}
		in, err := e.inode(ino)
		if err != nil {
			return nil, err
		}
		if in.isSymlink() {
			if hops++; hops > extMaxHops {
				return nil, errors.New("too many levels of symbolic links")
			}
			var target []byte
			if in.size < 60 && in.flags&0x80000 == 0 && in.flags&0x10000000 == 0 {
				target = in.block[:in.size]
			} else if target, err = e.data(in, 4096); err != nil {
				return nil, fmt.Errorf("read symbolic link: %w", err)
			}
			t := string(target)
			if strings.HasPrefix(t, "/") {
				stack, cur = nil, extRootInode
			}
			parts = append(splitPath(t), parts...)
			continue
		}
		stack = append(stack, cur)
		cur = ino
		if len(stack) > 4096 {
			return nil, errors.New("path too deep")
		}
	}
	return e.inode(cur)
}

func splitPath(p string) []string {
	var out []string
	// Not path.Clean: ".." must go up from where a symbolic link was
	// found, which resolve tracks.
	for _, s := range strings.Split(p, "/") {
		if s != "" && s != "." {
			out = append(out, s)
		}
	}
	return out
}
