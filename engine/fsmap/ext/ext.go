// Package ext detects ext2, ext3 and ext4 file systems, maps their used
// blocks from the block bitmaps, grows them with resize2fs, and reads small
// files from them without mounting (OpenFiles).
//
// The map is built from the on-disk format alone: the superblock, every
// group descriptor and every block bitmap. Groups whose bitmap was never
// written (BLOCK_UNINIT) hold only metadata, which is computed from the
// layout. All metadata the layout implies is added to the map whatever the
// bitmaps say, so the map is a superset of what the file system uses.
package ext

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

// maxBatch bounds one bitmap or descriptor read. Bitmaps that lie next to
// each other (flex_bg puts them together) are read in batches this large.
const maxBatch = 4 << 20

// FS is a detected ext2/3/4 file system.
type FS struct {
	r  io.ReaderAt
	sb *superblock
	g  *geometry
	// journalDev is set for an external journal device, which has no
	// bitmaps: it is copied whole.
	journalDev bool

	mu         sync.Mutex
	info       fsmap.Info
	descWarned bool
}

var _ fsmap.Detector = Detect

// Detect recognises an ext2/3/4 file system in the volume r of size bytes.
func Detect(ctx context.Context, r io.ReaderAt, size int64) (fsmap.FS, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("detect ext: %w", err)
	}
	if size < superOffset+superSize {
		return nil, errNotExt("volume of %d bytes is too small", size)
	}
	buf := make([]byte, superSize)
	if err := fsmap.ReadFull(r, buf, superOffset, "ext superblock"); err != nil {
		return nil, fmt.Errorf("detect ext: %w", err)
	}
	sb, err := parseSuperblock(buf)
	if err != nil {
		return nil, fmt.Errorf("detect ext: %w", err)
	}
	if sb.magic != superMagic {
		return nil, errNotExt("no ext superblock magic")
	}
	if sb.incompat&incompatJournalDev != 0 {
		return &FS{r: r, sb: sb, journalDev: true, info: fsmap.Info{
			Type: "jbd2", Label: sb.labelString(), UUID: sb.uuidString(),
			BlockSize: 1024, Size: size, Used: size, Raw: true,
			Warnings: []string{"external ext3/ext4 journal device: copied sector by sector"},
		}}, nil
	}
	g, err := newGeometry(sb, size)
	if err != nil {
		return nil, err
	}
	if unknown := sb.incompat &^ incompatKnown; unknown != 0 {
		return nil, fmt.Errorf("detect ext: unsupported incompatible features %#x", unknown)
	}
	f := &FS{r: r, sb: sb, g: g}
	f.info = fsmap.Info{
		Type:      sb.typeName(),
		Label:     sb.labelString(),
		UUID:      sb.uuidString(),
		BlockSize: g.bs,
		Size:      g.blocks * g.bs,
		Warnings:  sb.warnings(),
	}
	// An estimate from the free count until UsedExtents measures it.
	// The superblock counts free blocks, even with bigalloc, where the
	// descriptors count free clusters.
	if free := int64(sb.freeBlocks); free <= g.blocks {
		f.info.Used = (g.blocks - free) * g.bs
	}
	return f, nil
}

// Info implements fsmap.FS. Used is the superblock's estimate until
// UsedExtents has run, then the size of the map.
func (f *FS) Info() fsmap.Info {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.info
	i.Warnings = append([]string(nil), f.info.Warnings...)
	return i
}

// desc is the part of a group descriptor the map needs.
type desc struct {
	blockBitmap int64
	inodeBitmap int64
	inodeTable  int64
	flags       uint16
	// csumBad is set when the descriptor fails its checksum: its flags
	// cannot be trusted.
	csumBad bool
}

// UsedExtents implements fsmap.FS. It fails on a descriptor that points
// outside the file system rather than guess what that group holds.
func (f *FS) UsedExtents(ctx context.Context) ([]fsmap.Extent, error) {
	if f.journalDev {
		return []fsmap.Extent{{Off: 0, Len: f.info.Size}}, nil
	}
	g := f.g
	descs, descBlocks, err := f.readDescriptors(ctx)
	if err != nil {
		return nil, err
	}
	ext := f.layoutExtents(descBlocks)
	for i, d := range descs {
		for _, m := range []struct {
			what  string
			at, n int64
		}{
			{"block bitmap", d.blockBitmap, 1},
			{"inode bitmap", d.inodeBitmap, 1},
			{"inode table", d.inodeTable, g.itableBlocks},
		} {
			if m.at < g.gdtStart || m.at > g.blocks-m.n {
				return nil, fmt.Errorf("map ext group %d: %s at block %d (%d blocks) outside the file system of %d blocks", i, m.what, m.at, m.n, g.blocks)
			}
			ext = append(ext, f.blocks(m.at, m.n))
		}
	}
	bm, err := f.bitmapExtents(ctx, descs)
	if err != nil {
		return nil, err
	}
	ext = append(ext, bm...)
	out := fsmap.Normalize(ext, g.blocks*g.bs)
	bad := 0
	for _, d := range descs {
		if d.csumBad {
			bad++
		}
	}
	f.mu.Lock()
	f.info.Used = fsmap.Total(out)
	if bad > 0 && !f.descWarned {
		f.descWarned = true
		f.info.Warnings = append(f.info.Warnings, fmt.Sprintf("%d ext group descriptors fail their checksum: run e2fsck before copying", bad))
	}
	f.mu.Unlock()
	return out, nil
}

// blocks returns the byte extent of n blocks from block b, widened to whole
// clusters: with bigalloc a cluster is the unit the bitmaps allocate.
func (f *FS) blocks(b, n int64) fsmap.Extent {
	r := f.g.ratio
	start := b / r * r
	end := (b + n + r - 1) / r * r
	return fsmap.Extent{Off: start * f.g.bs, Len: (end - start) * f.g.bs}
}

// readDescriptors reads every group descriptor and returns them with the
// blocks they were read from.
func (f *FS) readDescriptors(ctx context.Context) ([]desc, []int64, error) {
	g, sb := f.g, f.sb
	// Runs of consecutive descriptor blocks: one run without meta_bg, one
	// per meta group with it.
	type run struct{ nr, block, n int64 }
	var runs []run
	for nr := int64(0); nr < g.gdtBlocks; nr++ {
		b := g.descBlock(sb, nr)
		if b < g.gdtStart || b >= g.blocks {
			return nil, nil, fmt.Errorf("map ext: descriptor block %d at block %d outside the file system of %d blocks", nr, b, g.blocks)
		}
		if n := len(runs); n > 0 && runs[n-1].block+runs[n-1].n == b && runs[n-1].n*g.bs < maxBatch {
			runs[n-1].n++
			continue
		}
		runs = append(runs, run{nr: nr, block: b, n: 1})
	}
	descs := make([]desc, 0, g.groups)
	blocks := make([]int64, 0, g.gdtBlocks)
	for _, rn := range runs {
		if err := ctx.Err(); err != nil {
			return nil, nil, fmt.Errorf("read ext group descriptors: %w", err)
		}
		buf := make([]byte, rn.n*g.bs)
		if err := fsmap.ReadFull(f.r, buf, rn.block*g.bs, fmt.Sprintf("ext group descriptor blocks %d-%d", rn.nr, rn.nr+rn.n-1)); err != nil {
			return nil, nil, fmt.Errorf("read ext group descriptors: %w", err)
		}
		for i := int64(0); i < rn.n; i++ {
			blocks = append(blocks, rn.block+i)
		}
		for off := int64(0); off+g.descSize <= int64(len(buf)) && int64(len(descs)) < g.groups; off += g.descSize {
			descs = append(descs, f.parseDesc(uint32(len(descs)), buf[off:off+g.descSize]))
		}
	}
	return descs, blocks, nil
}

func (f *FS) parseDesc(group uint32, b []byte) desc {
	le := binary.LittleEndian
	d := desc{
		blockBitmap: int64(le.Uint32(b[0x00:])),
		inodeBitmap: int64(le.Uint32(b[0x04:])),
		inodeTable:  int64(le.Uint32(b[0x08:])),
		flags:       le.Uint16(b[0x12:]),
	}
	if sum, ok := f.sb.descChecksum(group, b); ok && sum != le.Uint16(b[0x1E:]) {
		d.csumBad = true
	}
	if len(b) >= 64 {
		d.blockBitmap |= int64(le.Uint32(b[0x20:])) << 32
		d.inodeBitmap |= int64(le.Uint32(b[0x24:])) << 32
		d.inodeTable |= int64(le.Uint32(b[0x28:])) << 32
	}
	return d
}

// layoutExtents returns the metadata the layout implies, bitmaps aside:
// the boot area and superblock, every superblock and descriptor backup with
// the reserved descriptor blocks, the descriptor blocks read, the MMP block
// and the journal as the superblock's backup of its block map records it.
func (f *FS) layoutExtents(descBlocks []int64) []fsmap.Extent {
	g, sb := f.g, f.sb
	backup := 1 + g.oldDescBlocks(sb) + int64(sb.reservedGDT)
	ext := []fsmap.Extent{f.blocks(0, g.gdtStart+backup-1)}
	for i := int64(1); i < g.groups; i++ {
		if g.hasSuper(sb, i) {
			ext = append(ext, f.blocks(g.groupFirst(i), backup))
		}
	}
	for _, b := range descBlocks {
		ext = append(ext, f.blocks(b, 1))
	}
	if g.metaBG {
		// Each meta group's descriptor block is backed up in the second and
		// last group of the meta group.
		for nr := int64(sb.firstMetaBG); nr < g.gdtBlocks; nr++ {
			for _, i := range []int64{nr*g.descPerBlock + 1, nr*g.descPerBlock + g.descPerBlock - 1} {
				if i < g.groups {
					b := g.groupFirst(i)
					if g.hasSuper(sb, i) {
						b++
					}
					ext = append(ext, f.blocks(b, 1))
				}
			}
		}
	}
	if sb.incompat&incompatMMP != 0 && sb.mmpBlock > 0 && sb.mmpBlock < uint64(g.blocks) {
		ext = append(ext, f.blocks(int64(sb.mmpBlock), 1))
	}
	return append(ext, f.journalExtents()...)
}

// journalExtents reads the copy of the journal inode's block map kept in
// the superblock. The journal is in the bitmaps too; this guards against a
// bitmap that lost it. Pointers outside the file system are ignored: the
// copy is advisory.
func (f *FS) journalExtents() []fsmap.Extent {
	sb, g := f.sb, f.g
	if sb.compat&compatHasJournal == 0 || sb.journalInum == 0 || sb.jnlBackupType != 1 {
		return nil
	}
	var out []fsmap.Extent
	add := func(b, n int64) {
		if b > 0 && n > 0 && b < g.blocks && n <= g.blocks-b {
			out = append(out, f.blocks(b, n))
		}
	}
	w := sb.jnlBlocks
	if w[0]&0xffff == 0xF30A { // extent tree header
		entries := int64(w[0] >> 16)
		depth := w[1] >> 16
		for i := int64(0); i < entries && i < 4; i++ {
			e := w[3+3*i : 6+3*i]
			if depth == 0 {
				n := int64(e[1] & 0xffff)
				if n > 32768 { // unwritten extent
					n -= 32768
				}
				add(int64(e[1]>>16)<<32|int64(e[2]), n)
			} else {
				add(int64(e[2]&0xffff)<<32|int64(e[1]), 1)
			}
		}
		return out
	}
	for i := 0; i < 15; i++ { // 12 direct blocks, then the indirect blocks
		add(int64(w[i]), 1)
	}
	return out
}

// bitmapExtents reads the block bitmaps of every group that has one on disk
// and returns the clusters they mark as used.
func (f *FS) bitmapExtents(ctx context.Context, descs []desc) ([]fsmap.Extent, error) {
	g := f.g
	type bitmap struct{ group, block int64 }
	var bms []bitmap
	for i, d := range descs {
		if g.csum && d.flags&bgBlockUninit != 0 && !d.csumBad {
			// Never written: the group holds only the metadata that
			// layoutExtents and the descriptors already cover. A flag
			// that fails its checksum may be a flipped bit hiding data:
			// then the bitmap is read, at worst marking stale blocks.
			continue
		}
		bms = append(bms, bitmap{int64(i), d.blockBitmap})
	}
	sort.Slice(bms, func(i, j int) bool { return bms[i].block < bms[j].block })
	var out []fsmap.Extent
	batch := make([]byte, 0, min(int64(maxBatch), int64(len(bms))*g.bs))
	for i := 0; i < len(bms); {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read ext block bitmaps: %w", err)
		}
		// Extend the batch over bitmaps in consecutive (or the same) blocks.
		j := i + 1
		for j < len(bms) && bms[j].block-bms[i].block < maxBatch/g.bs && bms[j].block-bms[j-1].block <= 1 {
			j++
		}
		first, last := bms[i].block, bms[j-1].block
		buf := batch[:(last-first+1)*g.bs]
		if err := fsmap.ReadFull(f.r, buf, first*g.bs, fmt.Sprintf("ext block bitmaps at blocks %d-%d", first, last)); err != nil {
			return nil, fmt.Errorf("read ext block bitmaps: %w", err)
		}
		for _, bm := range bms[i:j] {
			start := g.groupFirst(bm.group)
			clusters := min(g.cpg, (g.blocks-start+g.ratio-1)/g.ratio)
			off := (bm.block - first) * g.bs
			out = append(out, fsmap.BitmapExtents(buf[off:off+g.bs], clusters, 0, g.ratio*g.bs, start*g.bs)...)
		}
		i = j
	}
	return out, nil
}
