package exfat

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

// maxClusters is the spec's largest cluster count (cluster numbers stay
// below the 0xFFFFFFF7 bad-cluster mark).
const maxClusters = 0xFFFFFFF5

// Grow grows the exFAT file system on v to fill newSize bytes, keeping its
// cluster size. It is a fsmap.Grower.
//
// When the FAT has no entry for the new clusters it is enlarged, which
// moves the cluster heap up by whole clusters: the used clusters are moved
// from the last one down so nothing is overwritten before it is copied, and
// since cluster numbers do not change no FAT chain or directory entry needs
// rewriting. The allocation bitmap is lengthened in place, or moved to the
// start of the added space when its clusters cannot hold it. Both
// boot regions are rewritten last, with a fresh checksum. Volumes with two
// FATs (TexFAT) are refused. Grow is not crash-safe while it moves data: the
// volume must not be in use.
func Grow(ctx context.Context, v fsmap.Volume, newSize int64) error {
	if newSize > v.Size() {
		return fmt.Errorf("grow exFAT to %d bytes: volume holds only %d", newSize, v.Size())
	}
	fsys, err := Detect(ctx, v, v.Size())
	if err != nil {
		return fmt.Errorf("grow exFAT: %w", err)
	}
	f := fsys.(*FS)
	g := f.g
	if newSize < g.volLen*g.ss {
		return fmt.Errorf("grow exFAT to %d bytes: file system already spans %d", newSize, g.volLen*g.ss)
	}
	if g.nfats != 1 || len(f.bitmaps) != 1 {
		return fmt.Errorf("grow exFAT: %d FATs and %d allocation bitmaps: only single-FAT volumes can be grown", g.nfats, len(f.bitmaps))
	}
	spc := g.cs / g.ss
	ng := *g
	ng.volLen = newSize / g.ss
	ng.clusters = min((ng.volLen-g.heapOff)/spc, maxClusters)
	if ng.clusters+2 > g.fatLen*g.ss/4 {
		// The FAT must grow; move the heap by whole clusters so an
		// aligned heap stays aligned.
		ng.fatLen = ceilDiv((ng.clusters+2)*4, g.ss)
		shift := ceilDiv(g.fatOff+ng.fatLen-g.heapOff, spc) * spc
		ng.heapOff = g.heapOff + max(shift, 0)
		ng.clusters = min((ng.volLen-ng.heapOff)/spc, maxClusters)
	}
	if ng.clusters < g.clusters {
		return nil // too little room to gain a cluster
	}
	if ng.clusters == g.clusters && ng.volLen == g.volLen {
		return nil
	}
	if ng.heapOff != g.heapOff {
		if err := f.moveHeap(ctx, v, &ng); err != nil {
			return fmt.Errorf("grow exFAT: %w", err)
		}
	}
	// The bitmap and the directory entries of the new clusters are
	// written through a FS view of the new layout.
	nf := &FS{r: v, g: &ng, bitmaps: f.bitmaps, upcase: f.upcase}
	if ng.heapOff != g.heapOff {
		shift := (ng.heapOff - g.heapOff) * g.ss
		nf.bitmaps = []fileRef{f.bitmaps[0]}
		nf.bitmaps[0].entryOff += shift
	}
	if err := nf.extendFAT(ctx, v, g); err != nil {
		return fmt.Errorf("grow exFAT: %w", err)
	}
	if err := nf.extendBitmap(ctx, v, g.clusters); err != nil {
		return fmt.Errorf("grow exFAT: %w", err)
	}
	if err := writeBootRegions(v, &ng); err != nil {
		return fmt.Errorf("grow exFAT: %w", err)
	}
	return nil
}

// moveHeap moves every used cluster of f from the old heap offset to
// ng.heapOff, highest first.
func (f *FS) moveHeap(ctx context.Context, v fsmap.Volume, ng *geometry) error {
	g := f.g
	ext, err := f.UsedExtents(ctx)
	if err != nil {
		return err
	}
	heap := g.heapOff * g.ss
	shift := (ng.heapOff - g.heapOff) * g.ss
	for i := len(ext) - 1; i >= 0; i-- {
		e := ext[i]
		if e.End() <= heap {
			break
		}
		if e.Off < heap {
			e = fsmap.Extent{Off: heap, Len: e.End() - heap}
		}
		if err := fsmap.MoveUp(ctx, v, e.Off, e.Off+shift, e.Len, "exFAT volume data"); err != nil {
			return fmt.Errorf("move clusters at byte %d: %w", e.Off, err)
		}
	}
	return nil
}

// extendFAT zeroes the FAT from the entry after old's last cluster to the
// end of the (possibly enlarged) FAT: the new clusters start free, and
// sectors taken from the old heap hold no stale entries.
func (f *FS) extendFAT(ctx context.Context, v fsmap.Volume, old *geometry) error {
	g := f.g
	from := g.fatOff*g.ss + (old.clusters+2)*4
	to := (g.fatOff + g.fatLen) * g.ss
	if err := fsmap.WriteZeros(ctx, v, from, to-from); err != nil {
		return fmt.Errorf("clear new FAT entries: %w", err)
	}
	return nil
}

// extendBitmap lengthens the allocation bitmap from oldClusters bits to the
// new cluster count, new bits zero. When its clusters cannot hold the
// longer bitmap it is moved to the first added clusters: Linux and
// exfatprogs read the bitmap as one contiguous run, so it cannot simply
// gain a cluster elsewhere.
func (f *FS) extendBitmap(ctx context.Context, v fsmap.Volume, oldClusters int64) error {
	g := f.g
	le := binary.LittleEndian
	ref := f.bitmaps[0]
	have := ceilDiv(max(ref.size, 1), g.cs)
	runs, err := f.chain(ctx, ref.first, have, true)
	if err != nil {
		return fmt.Errorf("allocation bitmap: %w", err)
	}
	oldBytes := ceilDiv(oldClusters, 8)
	needBytes := ceilDiv(g.clusters, 8)
	bm := make([]byte, needBytes)
	got := int64(0)
	for _, r := range runs {
		n := min(r.n*g.cs, oldBytes-got)
		if n <= 0 {
			break
		}
		if err := fsmap.ReadFull(v, bm[got:got+n], g.clusterOff(r.first), "allocation bitmap"); err != nil {
			return err
		}
		got += n
	}
	if rem := oldClusters % 8; rem != 0 {
		bm[oldClusters/8] &= byte(1<<rem - 1)
	}
	setBit := func(c int64, used bool) {
		if used {
			bm[(c-2)/8] |= 1 << ((c - 2) % 8)
		} else {
			bm[(c-2)/8] &^= 1 << ((c - 2) % 8)
		}
	}
	first := ref.first
	needClusters := ceilDiv(needBytes, g.cs)
	if needClusters > have {
		first = oldClusters + 2
		for _, r := range runs {
			for c := r.first; c < r.first+r.n; c++ {
				setBit(c, false)
			}
		}
		for c := first; c < first+needClusters; c++ {
			setBit(c, true)
		}
		if _, err := v.WriteAt(bm, g.clusterOff(first)); err != nil {
			return fmt.Errorf("write moved allocation bitmap: %w", err)
		}
		// Chain the new run and free the old clusters in the FAT.
		fat := make([]byte, needClusters*4)
		for i := int64(0); i < needClusters; i++ {
			next := uint32(first + i + 1)
			if i == needClusters-1 {
				next = 0xFFFFFFFF
			}
			le.PutUint32(fat[i*4:], next)
		}
		if _, err := v.WriteAt(fat, g.fatOff*g.ss+first*4); err != nil {
			return fmt.Errorf("chain moved allocation bitmap: %w", err)
		}
		var zero [4]byte
		for _, r := range runs {
			for c := r.first; c < r.first+r.n; c++ {
				if _, err := v.WriteAt(zero[:], g.fatOff*g.ss+c*4); err != nil {
					return fmt.Errorf("free old allocation bitmap: %w", err)
				}
			}
		}
	} else {
		// In place: the bytes past the old ones are written too, which
		// zeroes any stale bits beyond the old cluster count.
		done := int64(0)
		for _, r := range runs {
			n := min(r.n*g.cs, needBytes-done)
			if n <= 0 {
				break
			}
			if _, err := v.WriteAt(bm[done:done+n], g.clusterOff(r.first)); err != nil {
				return fmt.Errorf("write allocation bitmap: %w", err)
			}
			done += n
		}
	}
	var e [12]byte
	le.PutUint32(e[0:], uint32(first))
	le.PutUint64(e[4:], uint64(needBytes))
	if _, err := v.WriteAt(e[:], ref.entryOff+20); err != nil {
		return fmt.Errorf("write allocation bitmap entry: %w", err)
	}
	return nil
}

// writeBootRegions writes the grown geometry into the boot sector with a
// fresh checksum, to the backup boot region first so that the main one,
// which mounts read, changes last.
func writeBootRegions(v fsmap.Volume, g *geometry) error {
	region := make([]byte, 12*g.ss)
	if err := fsmap.ReadFull(v, region, 0, "exFAT boot region"); err != nil {
		return err
	}
	le := binary.LittleEndian
	le.PutUint64(region[72:], uint64(g.volLen))
	le.PutUint32(region[84:], uint32(g.fatLen))
	le.PutUint32(region[88:], uint32(g.heapOff))
	le.PutUint32(region[92:], uint32(g.clusters))
	region[112] = 0xFF // percent in use: unknown
	sum := bootChecksum(region, int(g.ss))
	for off := 11 * g.ss; off < 12*g.ss; off += 4 {
		le.PutUint32(region[off:], sum)
	}
	if _, err := v.WriteAt(region, 12*g.ss); err != nil {
		return fmt.Errorf("write backup boot region: %w", err)
	}
	if _, err := v.WriteAt(region, 0); err != nil {
		return fmt.Errorf("write main boot region: %w", err)
	}
	return nil
}
