package fat

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

var _ fsmap.Shrinker = Shrink

// maxShrinkFATBytes bounds the FAT Shrink holds in memory: 256 MiB is a
// FAT32 of 64 Mi clusters, a 2 TiB volume with 32 KiB clusters.
const maxShrinkFATBytes = 256 << 20

// Shrink shrinks the FAT file system on v to end within newSize bytes and
// returns its new size. It is a fsmap.Shrinker and must run on a
// copy-on-write view: it is not crash-safe.
//
// The cluster size, the FAT type and the size of the FATs stay (a FAT
// larger than its clusters need is valid). Every used cluster past the new
// end is copied into a free cluster below it, lowest first; then the FAT
// chains, the directory entries that start a moved chain (the '.' and '..'
// entries of moved directories included), the FAT32 root cluster, the
// total sector count and the FSInfo free count are rewritten, the boot
// sector last. Bad clusters past the end are dropped with it.
//
// The smallest size is the one whose clusters hold every used and bad
// cluster, and never fewer clusters than the FAT type needs (FAT16 more
// than 4085, FAT32 at least 65526 unless it already had fewer): a FAT's
// type follows from its cluster count.
func Shrink(ctx context.Context, v fsmap.Volume, newSize int64) (int64, error) {
	if newSize > v.Size() {
		newSize = v.Size()
	}
	fsys, err := Detect(ctx, v, v.Size())
	if err != nil {
		return 0, fmt.Errorf("shrink FAT: %w", err)
	}
	f := fsys.(*FS)
	g := f.g
	if cur := g.totSec * g.bps; newSize >= cur {
		return cur, nil
	}
	total := g.clusters + 2
	need := (total*int64(g.bits) + 7) / 8
	if need > maxShrinkFATBytes {
		return 0, fmt.Errorf("shrink FAT: its table of %d bytes is more than the %d this shrinker holds in memory", need, maxShrinkFATBytes)
	}
	fat := make([]byte, need)
	if err := fsmap.ReadFull(v, fat, g.fatCopyOff(g.activeFAT()), "FAT"); err != nil {
		return 0, fmt.Errorf("shrink FAT: %w", err)
	}
	t := &table{b: fat, bits: g.bits}

	var used, bad int64
	for c := int64(2); c < total; c++ {
		switch e := t.get(c); {
		case e == 0:
		case t.isBad(e):
			bad++
		default:
			used++
		}
	}
	floor := typeFloor(g)
	minClusters := max(floor, used+bad)
	minSize := (g.dataSec + minClusters*g.spc) * g.bps
	tooSmall := func(why string) error {
		return fmt.Errorf("shrink %s to %d bytes: %s; the smallest size its data allows is %d bytes: %w", g.variant, newSize, why, minSize, fsmap.ErrTooSmall)
	}
	newTot := newSize / g.bps
	var n int64
	if newTot > g.dataSec {
		n = (newTot - g.dataSec) / g.spc
	}
	if n < floor {
		return 0, tooSmall(fmt.Sprintf("%d clusters are fewer than a %s needs (%d)", n, g.variant, floor))
	}
	limit := n + 2 // clusters below limit stay where they are

	// Plan: each used cluster at or past limit gets the lowest free one.
	var moving, free int64
	for c := int64(2); c < total; c++ {
		e := t.get(c)
		switch {
		case c < limit && e == 0:
			free++
		case c >= limit && e != 0 && !t.isBad(e):
			moving++
		}
	}
	if moving > free {
		return 0, tooSmall(fmt.Sprintf("%d used clusters lie past the new end and only %d are free before it", moving, free))
	}
	remap := make([]uint32, total-limit) // cluster limit+i moves to remap[i]; 0: stays (or is freed)
	next := int64(2)
	for c := limit; c < total; c++ {
		e := t.get(c)
		if e != 0 && !t.isBad(e) {
			for t.get(next) != 0 {
				next++
			}
			remap[c-limit] = uint32(next)
			t.set(next, e) // re-pointed below, with every other link
			next++
		}
		t.set(c, 0)
	}
	moved := func(c int64) (int64, bool) {
		if c < limit || c >= total {
			return c, false
		}
		if d := remap[c-limit]; d != 0 {
			return int64(d), true
		}
		return c, false
	}
	for c := int64(2); c < limit; c++ {
		e := int64(t.get(c))
		if e < limit || e >= total {
			continue // free, end of chain, bad, or a link that stays
		}
		d, ok := moved(e)
		if !ok {
			return 0, fmt.Errorf("shrink FAT: the chain through cluster %d links to cluster %d, which is free: the file system is damaged (run fsck.fat on the source)", c, e)
		}
		t.set(c, uint32(d))
	}

	if err := copyClusters(ctx, v, g, remap, limit); err != nil {
		return 0, fmt.Errorf("shrink FAT: %w", err)
	}
	rootClus := g.rootClus
	if d, ok := moved(rootClus); ok && g.bits == 32 {
		rootClus = d
	}
	w := &dirWalk{v: v, g: g, t: t, moved: moved, limit: limit, total: total}
	if err := w.run(ctx, rootClus); err != nil {
		return 0, fmt.Errorf("shrink FAT: %w", err)
	}
	for k := int64(0); k < g.nfats; k++ {
		if _, err := v.WriteAt(fat, g.fatCopyOff(k)); err != nil {
			return 0, fmt.Errorf("shrink FAT: write FAT copy %d: %w", k, err)
		}
	}
	var freeAfter int64
	for c := int64(2); c < limit; c++ {
		if t.get(c) == 0 {
			freeAfter++
		}
	}
	if err := writeShrunkBoot(v, g, newTot, rootClus, freeAfter); err != nil {
		return 0, fmt.Errorf("shrink FAT: %w", err)
	}
	return newTot * g.bps, nil
}

// typeFloor is the fewest clusters a shrunk file system may keep so that
// its cluster count still names its FAT type (one above the spec's bound,
// as blkid reads a count equal to it as neither type).
func typeFloor(g *geometry) int64 {
	switch g.bits {
	case 16:
		return maxFAT12Clusters + 2
	case 32:
		return min(g.clusters, maxFAT16Clusters+2)
	}
	return 1
}

// table is a FAT held in memory as its on-disk bytes.
type table struct {
	b    []byte
	bits int
}

// get returns entry n (FAT32: its low 28 bits).
func (t *table) get(n int64) uint32 {
	switch t.bits {
	case 12:
		v := uint32(binary.LittleEndian.Uint16(t.b[n*3/2:]))
		if n&1 == 1 {
			return v >> 4
		}
		return v & 0xFFF
	case 16:
		return uint32(binary.LittleEndian.Uint16(t.b[n*2:]))
	}
	return binary.LittleEndian.Uint32(t.b[n*4:]) & 0x0FFFFFFF
}

// set writes entry n, keeping the neighbouring FAT12 nibble and the four
// reserved high bits of a FAT32 entry.
func (t *table) set(n int64, v uint32) {
	switch t.bits {
	case 12:
		p := t.b[n*3/2:]
		old := binary.LittleEndian.Uint16(p)
		if n&1 == 1 {
			binary.LittleEndian.PutUint16(p, old&0x000F|uint16(v&0xFFF)<<4)
		} else {
			binary.LittleEndian.PutUint16(p, old&0xF000|uint16(v&0xFFF))
		}
	case 16:
		binary.LittleEndian.PutUint16(t.b[n*2:], uint16(v))
	default:
		old := binary.LittleEndian.Uint32(t.b[n*4:])
		binary.LittleEndian.PutUint32(t.b[n*4:], old&0xF0000000|v&0x0FFFFFFF)
	}
}

// isBad reports whether an entry marks a bad cluster.
func (t *table) isBad(v uint32) bool {
	switch t.bits {
	case 12:
		return v == 0xFF7
	case 16:
		return v == 0xFFF7
	}
	return v == 0x0FFFFFF7
}

// copyClusters copies each moving cluster to its new place, joining runs
// that are contiguous at both ends into one read and write.
func copyClusters(ctx context.Context, v fsmap.Volume, g *geometry, remap []uint32, limit int64) error {
	cb := g.clusterBytes()
	maxRun := max(1, chunkSize/cb)
	buf := make([]byte, maxRun*cb)
	for i := int64(0); i < int64(len(remap)); {
		if remap[i] == 0 {
			i++
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		src, dst := limit+i, int64(remap[i])
		k := int64(1)
		for k < maxRun && i+k < int64(len(remap)) && int64(remap[i+k]) == dst+k {
			k++
		}
		p := buf[:k*cb]
		if err := fsmap.ReadFull(v, p, g.clusterOff(src), "FAT clusters"); err != nil {
			return fmt.Errorf("move clusters %d..%d: %w", src, src+k-1, err)
		}
		if _, err := v.WriteAt(p, g.clusterOff(dst)); err != nil {
			return fmt.Errorf("move clusters %d..%d to %d: %w", src, src+k-1, dst, err)
		}
		i += k
	}
	return nil
}

// dirWalk rewrites the first-cluster fields of every directory entry whose
// chain moved, walking the tree in its new place.
type dirWalk struct {
	v            fsmap.Volume
	g            *geometry
	t            *table
	moved        func(int64) (int64, bool)
	limit, total int64
	seen         map[int64]bool
}

// run walks from the root directory (FAT32: its first cluster, already
// moved).
func (w *dirWalk) run(ctx context.Context, rootClus int64) error {
	g := w.g
	w.seen = map[int64]bool{}
	var stack []int64
	if g.bits != 32 {
		off := (g.rsvd + g.nfats*g.fatSz) * g.bps
		buf := make([]byte, g.rootSec*g.bps)
		if err := fsmap.ReadFull(w.v, buf, off, "FAT root directory"); err != nil {
			return err
		}
		subs, changed, _, err := w.patch(buf)
		if err != nil {
			return fmt.Errorf("root directory: %w", err)
		}
		if changed {
			if _, err := w.v.WriteAt(buf, off); err != nil {
				return fmt.Errorf("write FAT root directory: %w", err)
			}
		}
		stack = subs
	} else {
		stack = []int64{rootClus}
	}
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if d < 2 || d >= w.limit || w.seen[d] {
			continue // the root ('..' of its children), damage, or a loop
		}
		w.seen[d] = true
		subs, err := w.dir(d)
		if err != nil {
			return err
		}
		stack = append(stack, subs...)
	}
	return nil
}

// dir patches the directory whose chain starts at cluster first and
// returns the first clusters of its subdirectories.
func (w *dirWalk) dir(first int64) ([]int64, error) {
	g := w.g
	cb := g.clusterBytes()
	buf := make([]byte, cb)
	var subs []int64
	c := first
	for read := int64(0); read < maxDirEntries*32; read += cb {
		if c < 2 || c >= w.limit {
			return nil, fmt.Errorf("directory at cluster %d: its chain reaches cluster %d outside 2..%d", first, c, w.limit-1)
		}
		off := g.clusterOff(c)
		if err := fsmap.ReadFull(w.v, buf, off, "FAT directory"); err != nil {
			return nil, err
		}
		s, changed, end, err := w.patch(buf)
		if err != nil {
			return nil, fmt.Errorf("directory at cluster %d: %w", first, err)
		}
		if changed {
			if _, err := w.v.WriteAt(buf, off); err != nil {
				return nil, fmt.Errorf("write FAT directory cluster %d: %w", c, err)
			}
		}
		subs = append(subs, s...)
		e := w.t.get(c)
		if end || e >= uint32(w.total) || e < 2 {
			break // end of directory, end of chain, or bad
		}
		c = int64(e)
	}
	return subs, nil
}

// patch rewrites the moved first clusters in a buffer of directory
// entries. It returns the subdirectories' (new) first clusters, whether
// the buffer changed, and whether the end-of-directory mark was met.
func (w *dirWalk) patch(buf []byte) (subs []int64, changed, end bool, err error) {
	le := binary.LittleEndian
	for i := 0; i+32 <= len(buf); i += 32 {
		e := buf[i : i+32]
		if e[0] == 0 {
			return subs, changed, true, nil
		}
		attr := e[11]
		if e[0] == 0xE5 || attr&0x3F == 0x0F || (attr&0x08 != 0 && attr&0x10 == 0) {
			continue // deleted, long-name part, volume label
		}
		cl := int64(le.Uint16(e[26:]))
		if w.g.bits == 32 {
			cl |= int64(le.Uint16(e[20:])) << 16
		}
		if d, ok := w.moved(cl); ok {
			le.PutUint16(e[26:], uint16(d))
			if w.g.bits == 32 {
				le.PutUint16(e[20:], uint16(d>>16))
			}
			cl, changed = d, true
		} else if cl >= w.limit && cl < w.total {
			return nil, false, false, fmt.Errorf("entry %q starts at cluster %d, which is free: the file system is damaged (run fsck.fat on the source)", e[:11], cl)
		}
		dot := e[0] == '.' && (e[1] == ' ' || (e[1] == '.' && e[2] == ' '))
		if attr&0x10 != 0 && !dot && cl >= 2 {
			subs = append(subs, cl)
		}
	}
	return subs, changed, false, nil
}

// writeShrunkBoot records the new total sector count and FAT32 root
// cluster in the backup boot sector and the primary, and the free count
// in each FSInfo sector (its next-free hint becomes "unknown": the old
// one may lie past the end). The primary boot sector is written last.
func writeShrunkBoot(v fsmap.Volume, g *geometry, newTot, rootClus, free int64) error {
	le := binary.LittleEndian
	bs := make([]byte, g.bps)
	if err := fsmap.ReadFull(v, bs, 0, "FAT boot sector"); err != nil {
		return err
	}
	if g.bits == 32 || newTot >= 0x10000 {
		le.PutUint16(bs[19:], 0)
		le.PutUint32(bs[32:], uint32(newTot))
	} else {
		le.PutUint16(bs[19:], uint16(newTot))
		le.PutUint32(bs[32:], 0)
	}
	if g.bits == 32 {
		le.PutUint32(bs[44:], uint32(rootClus))
	}
	targets := []int64{0}
	if g.bkBoot > 0 {
		targets = append(targets, g.bkBoot)
	}
	for _, sec := range targets {
		if g.fsInfo > 0 && sec+g.fsInfo < g.rsvd {
			b := make([]byte, 512)
			off := (sec + g.fsInfo) * g.bps
			if err := fsmap.ReadFull(v, b, off, "FAT32 FSInfo"); err != nil {
				return err
			}
			if le.Uint32(b[0:]) == fsInfoLead && le.Uint32(b[484:]) == fsInfoStruct {
				le.PutUint32(b[488:], uint32(free))
				le.PutUint32(b[492:], 0xFFFFFFFF)
				if _, err := v.WriteAt(b, off); err != nil {
					return fmt.Errorf("write FAT32 FSInfo at sector %d: %w", sec+g.fsInfo, err)
				}
			}
		}
	}
	for i := len(targets) - 1; i >= 0; i-- {
		if _, err := v.WriteAt(bs, targets[i]*g.bps); err != nil {
			return fmt.Errorf("write boot sector %d: %w", targets[i], err)
		}
	}
	return nil
}
