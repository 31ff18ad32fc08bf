package ext

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

// Bounds of the file reader. Every count read from the disk is held to
// them, so a damaged or hostile file system gives an error, never a hang
// or a huge allocation.
const (
	// MaxFileSize is the largest file ReadFile returns.
	MaxFileSize = 1 << 20
	// maxDirBytes bounds the directory scanned for one path component.
	maxDirBytes = 16 << 20
	// maxSymlinkHops is the kernel's limit on links followed in one path.
	maxSymlinkHops = 40
	// maxSymlinkBytes is the longest symbolic link target read (PATH_MAX).
	maxSymlinkBytes = 4096
	// maxPathDepth bounds the directories a path may descend.
	maxPathDepth = 4096
	// readBudget bounds the bytes read (and holes stepped over) by one
	// ReadFile or Exists call: a hostile file system can chain symbolic
	// links to long paths through huge directories. Counted in bytes, not
	// reads, so 64 KiB blocks do not make it larger.
	readBudget = 256 << 20
	// maxExtentDepth is deeper than any extent tree the kernel builds.
	maxExtentDepth = 5
)

// Inode fields and flags the reader uses.
const (
	rootInode         = 2
	inodeFlagExtents  = 0x80000
	inodeFlagInline   = 0x10000000
	inodeBlockBytes   = 60 // i_block: 15 block pointers or an extent root
	extentMagic       = 0xF30A
	extentUninitLimit = 32768 // leaf lengths above this mark unwritten extents
)

// Files reads small files (os-release, fstab) from an ext2/3/4 file system
// without mounting it: group descriptors (meta_bg included), inodes, block
// maps or extent trees, linear directory scans and symbolic links. It only
// reads, and is safe for concurrent use.
type Files struct {
	r         io.ReaderAt
	sb        *superblock
	g         *geometry
	inodeSize int64
}

// OpenFiles checks the superblock of the ext2/3/4 file system in the
// volume r of size bytes and returns a reader for its files.
func OpenFiles(r io.ReaderAt, size int64) (*Files, error) {
	if size < superOffset+superSize {
		return nil, fmt.Errorf("open ext file system: volume of %d bytes is too small", size)
	}
	buf := make([]byte, superSize)
	if err := fsmap.ReadFull(r, buf, superOffset, "ext superblock"); err != nil {
		return nil, fmt.Errorf("open ext file system: %w", err)
	}
	sb, err := parseSuperblock(buf)
	if err != nil {
		return nil, fmt.Errorf("open ext file system: %w", err)
	}
	if sb.magic == superMagic && sb.incompat&incompatJournalDev != 0 {
		return nil, errors.New("open ext file system: an external journal device holds no files")
	}
	g, err := newGeometry(sb, size)
	if err != nil {
		return nil, fmt.Errorf("open ext file system: %w", err)
	}
	if unknown := sb.incompat &^ incompatKnown; unknown != 0 {
		return nil, fmt.Errorf("open ext file system: unsupported incompatible features %#x", unknown)
	}
	f := &Files{r: r, sb: sb, g: g, inodeSize: 128}
	if sb.revLevel > 0 {
		f.inodeSize = int64(sb.inodeSize) // checked by newGeometry
	}
	return f, nil
}

// ReadFile returns the contents of the regular file at name (absolute,
// inside the file system), following symbolic links as the kernel would
// with this file system mounted at /. A name that does not exist gives an
// error wrapping fs.ErrNotExist; a file larger than MaxFileSize an error.
func (f *Files) ReadFile(name string) ([]byte, error) {
	w := &walk{f: f, budget: readBudget}
	in, err := w.resolve(name)
	if err != nil {
		return nil, fmt.Errorf("read ext file %s: %w", name, err)
	}
	if !in.isReg() {
		return nil, fmt.Errorf("read ext file %s: not a regular file", name)
	}
	b, err := w.data(in, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("read ext file %s: %w", name, err)
	}
	return b, nil
}

// Exists reports whether name resolves to anything, symbolic links
// followed. A path that cannot be resolved on a damaged file system does
// not exist.
func (f *Files) Exists(name string) bool {
	w := &walk{f: f, budget: readBudget}
	_, err := w.resolve(name)
	return err == nil
}

// walk is the state of one ReadFile or Exists call.
type walk struct {
	f       *Files
	budget  int64  // bytes left to read
	scratch []byte // one block, for indirect and extent tree blocks
}

// mapBuf is the walk's block buffer for mapping a logical block: indirect
// blocks and extent tree nodes, read one after another.
func (w *walk) mapBuf() []byte {
	if w.scratch == nil {
		w.scratch = make([]byte, w.f.g.bs)
	}
	return w.scratch
}

// readBlock reads block b of the file system into p (one block long).
func (w *walk) readBlock(p []byte, b int64, what string) error {
	g := w.f.g
	if b < 0 || b >= g.blocks {
		return fmt.Errorf("ext %s at block %d lies outside the file system of %d blocks", what, b, g.blocks)
	}
	return w.readAt(p, b*g.bs, fmt.Sprintf("%s (block %d)", what, b))
}

// spend counts n bytes (read, or a hole stepped over) against the call's
// budget.
func (w *walk) spend(n int64) error {
	if w.budget -= n; w.budget < 0 {
		return errors.New("gave up: the path takes too many reads to resolve")
	}
	return nil
}

// readAt reads len(p) bytes at off, which must lie inside the file system,
// and counts the read against the call's budget.
func (w *walk) readAt(p []byte, off int64, what string) error {
	if err := w.spend(int64(len(p))); err != nil {
		return err
	}
	if end := w.f.g.blocks * w.f.g.bs; off < 0 || off > end-int64(len(p)) {
		return fmt.Errorf("ext %s: %d bytes at byte %d lie outside the %d-byte file system", what, len(p), off, end)
	}
	return fsmap.ReadFull(w.f.r, p, off, "ext "+what)
}

type inode struct {
	mode  uint16
	size  int64
	flags uint32
	block [inodeBlockBytes]byte
}

func (i *inode) isDir() bool     { return i.mode&0xF000 == 0x4000 }
func (i *inode) isSymlink() bool { return i.mode&0xF000 == 0xA000 }
func (i *inode) isReg() bool     { return i.mode&0xF000 == 0x8000 }

// inode reads inode n through its group's descriptor, which meta_bg may
// have put in any group.
func (w *walk) inode(n uint32) (*inode, error) {
	f := w.f
	g, sb := f.g, f.sb
	if n == 0 || n > sb.inodesCount {
		return nil, fmt.Errorf("inode %d out of range 1-%d", n, sb.inodesCount)
	}
	group := int64((n - 1) / sb.inodesPerGroup)
	idx := int64((n - 1) % sb.inodesPerGroup)
	// newGeometry holds inodesCount to groups × inodesPerGroup, so group
	// is below g.groups.
	d := make([]byte, g.descSize)
	descAt := g.descBlock(sb, group/g.descPerBlock)*g.bs + group%g.descPerBlock*g.descSize
	if err := w.readAt(d, descAt, fmt.Sprintf("group descriptor %d", group)); err != nil {
		return nil, fmt.Errorf("read inode %d: %w", n, err)
	}
	table := int64(binary.LittleEndian.Uint32(d[0x08:]))
	if g.descSize >= 64 {
		table |= int64(binary.LittleEndian.Uint32(d[0x28:])) << 32
	}
	if table <= 0 || table >= g.blocks {
		return nil, fmt.Errorf("read inode %d: group %d's inode table at block %d lies outside the file system of %d blocks", n, group, table, g.blocks)
	}
	raw := make([]byte, 128) // the fields read are all in the first 128 bytes
	if err := w.readAt(raw, table*g.bs+idx*f.inodeSize, fmt.Sprintf("inode %d", n)); err != nil {
		return nil, fmt.Errorf("read inode %d: %w", n, err)
	}
	in := &inode{
		mode:  binary.LittleEndian.Uint16(raw[0x00:]),
		size:  int64(binary.LittleEndian.Uint32(raw[0x04:])),
		flags: binary.LittleEndian.Uint32(raw[0x20:]),
	}
	// The size's high half is i_dir_acl on directories of file systems
	// without largedir (old ext2 may have it set), as the kernel reads it.
	if in.isReg() || sb.incompat&incompatLargeDir != 0 {
		in.size |= int64(binary.LittleEndian.Uint32(raw[0x6C:])) << 32
	}
	copy(in.block[:], raw[0x28:0x28+inodeBlockBytes])
	if in.size < 0 {
		return nil, fmt.Errorf("read inode %d: negative size", n)
	}
	return in, nil
}

// physBlock maps logical block lb of an inode to its physical block, 0
// for a hole.
func (w *walk) physBlock(in *inode, lb int64) (int64, error) {
	if in.flags&inodeFlagExtents != 0 {
		return w.extentLookup(in.block[:], lb, 0)
	}
	bs := w.f.g.bs
	per := bs / 4
	ptr := func(b []byte, i int64) int64 { return int64(binary.LittleEndian.Uint32(b[i*4:])) }
	if lb < 12 {
		return ptr(in.block[:], lb), nil
	}
	lb -= 12
	level, span := 1, int64(1)
	for ; level <= 3; level++ {
		span *= per
		if lb < span {
			break
		}
		lb -= span
	}
	if level > 3 {
		return 0, errors.New("logical block beyond the triple-indirect range")
	}
	b := ptr(in.block[:], int64(11+level))
	buf := w.mapBuf()
	for l := level; l > 0 && b != 0; l-- {
		span /= per
		if err := w.readBlock(buf, b, "indirect block"); err != nil {
			return 0, err
		}
		b = ptr(buf, lb/span)
		lb %= span
	}
	return b, nil
}

// extentLookup finds logical block lb in the extent tree node.
func (w *walk) extentLookup(node []byte, lb int64, depth int) (int64, error) {
	if depth > maxExtentDepth {
		return 0, fmt.Errorf("extent tree deeper than %d levels", maxExtentDepth)
	}
	le := binary.LittleEndian
	if len(node) < 12 || le.Uint16(node[0:]) != extentMagic {
		return 0, errors.New("bad extent header")
	}
	n := int(le.Uint16(node[2:]))
	if 12+n*12 > len(node) {
		return 0, fmt.Errorf("extent node claims %d entries", n)
	}
	leaf := le.Uint16(node[6:]) == 0
	next := int64(-1)
	for i := 0; i < n; i++ {
		ent := node[12+i*12:]
		first := int64(le.Uint32(ent[0:]))
		if leaf {
			l := int64(le.Uint16(ent[4:]))
			uninit := l > extentUninitLimit
			if uninit {
				l -= extentUninitLimit
			}
			if lb >= first && lb < first+l {
				if uninit {
					return 0, nil // reads as zeros
				}
				start := int64(le.Uint16(ent[6:]))<<32 | int64(le.Uint32(ent[8:]))
				return start + lb - first, nil
			}
			continue
		}
		if first <= lb {
			next = int64(le.Uint16(ent[8:]))<<32 | int64(le.Uint32(ent[4:]))
		}
	}
	if leaf || next < 0 {
		return 0, nil
	}
	// node is no longer read: the next level may take its buffer.
	buf := w.mapBuf()
	if err := w.readBlock(buf, next, "extent tree block"); err != nil {
		return 0, err
	}
	return w.extentLookup(buf, lb, depth+1)
}

// data returns the contents of an inode, at most limit bytes.
func (w *walk) data(in *inode, limit int64) ([]byte, error) {
	if in.size > limit {
		return nil, fmt.Errorf("%d bytes, more than the %d read", in.size, limit)
	}
	if in.flags&inodeFlagInline != 0 {
		// The first 60 bytes live in i_block, the rest in an extended
		// attribute, which is not read.
		if in.size > inodeBlockBytes {
			return nil, errors.New("inline data longer than the inode holds is not read")
		}
		return append([]byte(nil), in.block[:in.size]...), nil
	}
	bs := w.f.g.bs
	out := make([]byte, 0, in.size)
	buf := make([]byte, bs)
	for lb := int64(0); int64(len(out)) < in.size; lb++ {
		pb, err := w.physBlock(in, lb)
		if err != nil {
			return nil, err
		}
		if pb == 0 {
			// A hole costs no read, but a path can cross many sparse
			// files and directories: it is counted all the same.
			if err := w.spend(bs); err != nil {
				return nil, err
			}
			clear(buf)
		} else if err := w.readBlock(buf, pb, "data block"); err != nil {
			return nil, err
		}
		out = append(out, buf[:min(bs, in.size-int64(len(out)))]...)
	}
	return out, nil
}

// lookup finds name in directory dir by a linear scan, which also reads
// hashed (htree) directories: their index blocks look like empty entries.
func (w *walk) lookup(dir *inode, name string) (uint32, error) {
	if !dir.isDir() {
		return 0, errors.New("not a directory")
	}
	if dir.flags&inodeFlagInline != 0 {
		return 0, errors.New("inline directories are not read")
	}
	if dir.size > maxDirBytes {
		return 0, fmt.Errorf("directory of %d bytes is larger than the %d read", dir.size, maxDirBytes)
	}
	bs := w.f.g.bs
	buf := make([]byte, bs)
	for lb := int64(0); lb*bs < dir.size; lb++ {
		pb, err := w.physBlock(dir, lb)
		if err != nil {
			return 0, err
		}
		if pb == 0 {
			if err := w.spend(bs); err != nil {
				return 0, err
			}
			continue
		}
		if err := w.readBlock(buf, pb, "directory block"); err != nil {
			return 0, err
		}
		for off := int64(0); off+8 <= bs; {
			ino := binary.LittleEndian.Uint32(buf[off:])
			rec := int64(binary.LittleEndian.Uint16(buf[off+4:]))
			if bs == 1<<16 && (rec == 0 || rec == 1<<16-1) {
				rec = 1 << 16 // a record filling a 64 KiB block, as the kernel encodes it
			}
			nl := int64(buf[off+6])
			if rec < 8 || off+rec > bs {
				break // a damaged block: the rest of it is not trusted
			}
			if ino != 0 && nl <= rec-8 && string(buf[off+8:off+8+nl]) == name {
				return ino, nil
			}
			off += rec
		}
	}
	return 0, fs.ErrNotExist
}

// resolve walks p from the root directory.
func (w *walk) resolve(p string) (*inode, error) {
	hops := 0
	parts := splitPath(p)
	var stack []uint32 // inodes of the directories walked, for ".."
	cur := uint32(rootInode)
	for len(parts) > 0 {
		name := parts[0]
		parts = parts[1:]
		if name == ".." {
			if len(stack) > 0 {
				cur, stack = stack[len(stack)-1], stack[:len(stack)-1]
			}
			continue
		}
		dir, err := w.inode(cur)
		if err != nil {
			return nil, err
		}
		ino, err := w.lookup(dir, name)
		if err != nil {
			return nil, fmt.Errorf("look up %q: %w", name, err)
		}
		in, err := w.inode(ino)
		if err != nil {
			return nil, err
		}
		if in.isSymlink() {
			if hops++; hops > maxSymlinkHops {
				return nil, errors.New("too many levels of symbolic links")
			}
			var target []byte
			if in.size < inodeBlockBytes && in.flags&(inodeFlagExtents|inodeFlagInline) == 0 {
				target = in.block[:in.size] // a fast link: the target is in i_block
			} else if target, err = w.data(in, maxSymlinkBytes); err != nil {
				return nil, fmt.Errorf("read symbolic link %q: %w", name, err)
			}
			t := string(target)
			if strings.HasPrefix(t, "/") {
				stack, cur = nil, rootInode
			}
			parts = append(splitPath(t), parts...)
			continue
		}
		stack = append(stack, cur)
		cur = ino
		if len(stack) > maxPathDepth {
			return nil, errors.New("path too deep")
		}
	}
	return w.inode(cur)
}

// splitPath splits p into its names. Not path.Clean: ".." must go up from
// where a symbolic link was found, which resolve tracks.
func splitPath(p string) []string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		if s != "" && s != "." {
			out = append(out, s)
		}
	}
	return out
}
