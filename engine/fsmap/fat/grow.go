package fat

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

// fsInfo signatures (Microsoft spec, FSInfo sector).
const (
	fsInfoLead   = 0x41615252
	fsInfoStruct = 0x61417272
)

// Grow grows the FAT file system on v to fill newSize bytes, keeping its
// cluster size and FAT type. It is a fsmap.Grower.
//
// When the FAT copies already have an entry for every new cluster, only the
// boot sector (and on FAT32 its backup and the FSInfo free count) changes.
// Otherwise the FATs are enlarged, which moves the root directory region
// (FAT12/16) and the cluster heap up: used clusters are moved from the last
// one down, so no cluster is overwritten before it has been copied.
//
// The FAT type is decided by the cluster count, so growth stops at the
// largest size that keeps the type (4083 clusters for FAT12, 65523 for
// FAT16, 0x0FFFFFF5 for FAT32, and 2^32-1 sectors): the file system then
// ends before newSize and Grow still returns nil. Grow is not crash-safe
// while it moves data: the volume must not be in use and a failure in the
// middle leaves it damaged.
func Grow(ctx context.Context, v fsmap.Volume, newSize int64) error {
	if newSize > v.Size() {
		return fmt.Errorf("grow FAT to %d bytes: volume holds only %d", newSize, v.Size())
	}
	fsys, err := Detect(ctx, v, v.Size())
	if err != nil {
		return fmt.Errorf("grow FAT: %w", err)
	}
	f := fsys.(*FS)
	g := f.g
	if newSize < g.totSec*g.bps {
		return fmt.Errorf("grow FAT to %d bytes: file system already spans %d", newSize, g.totSec*g.bps)
	}
	ng := plan(g, newSize)
	if ng.totSec == g.totSec && ng.fatSz == g.fatSz {
		return nil
	}
	runs, used, err := f.usedRuns(ctx)
	if err != nil {
		return fmt.Errorf("grow FAT: scan FAT: %w", err)
	}
	if ng.fatSz != g.fatSz {
		if err := relocate(ctx, v, g, ng, runs); err != nil {
			return fmt.Errorf("grow FAT: %w", err)
		}
	}
	if err := zeroEntries(ctx, v, ng, g.clusters+2, ng.clusters+2); err != nil {
		return fmt.Errorf("grow FAT: clear new FAT entries: %w", err)
	}
	if err := writeBootSectors(v, g, ng, used); err != nil {
		return fmt.Errorf("grow FAT: %w", err)
	}
	return nil
}

// plan returns the geometry of g grown towards newSize bytes: the layout
// with the most clusters among keeping the FATs and enlarging them, never
// past the FAT type's cluster limit.
func plan(g *geometry, newSize int64) *geometry {
	newTot := min(newSize/g.bps, 0xFFFFFFFF)
	limit := growMaxClusters(g.bits)
	fit := func(fatSz int64) (*geometry, bool) {
		ng := *g
		ng.fatSz = fatSz
		ng.dataSec = g.rsvd + g.nfats*fatSz + g.rootSec
		if ng.dataSec >= newTot {
			return nil, false
		}
		avail := (newTot - ng.dataSec) / g.spc
		ng.clusters = min(avail, limit, ng.fatCapacity()-2)
		ng.totSec = newTot
		if ng.clusters < avail {
			ng.totSec = ng.dataSec + ng.clusters*g.spc
		}
		return &ng, ng.clusters >= g.clusters
	}
	best, _ := fit(g.fatSz)
	if best == nil || best.clusters < g.clusters {
		// Cannot happen for newSize >= the current size; keep g.
		return g
	}
	// Entries needed if the FATs did not shrink the heap.
	want := min((newTot-g.dataSec)/g.spc, limit)
	fatSz := (((want+2)*int64(g.bits)+7)/8 + g.bps - 1) / g.bps
	if fatSz > g.fatSz {
		// Keep the heap's offset a whole number of clusters from where it
		// was, so a heap aligned by mkfs stays aligned.
		for i := int64(0); i < g.spc && (g.nfats*(fatSz-g.fatSz))%g.spc != 0; i++ {
			fatSz++
		}
		if ng, ok := fit(fatSz); ok && ng.clusters > best.clusters {
			best = ng
		}
	}
	return best
}

// relocate enlarges the FATs from g.fatSz to ng.fatSz sectors, moving the
// used clusters and the FAT12/16 root directory up to make room. Every move
// goes to a higher offset and starts with the highest data, so nothing is
// overwritten before it has been copied.
func relocate(ctx context.Context, v fsmap.Volume, g, ng *geometry, runs []clusterRun) error {
	shift := (ng.dataSec - g.dataSec) * g.bps
	for i := len(runs) - 1; i >= 0; i-- {
		r := runs[i]
		src := g.clusterOff(r.first)
		if err := fsmap.MoveUp(ctx, v, src, src+shift, r.n*g.clusterBytes(), "FAT volume data"); err != nil {
			return fmt.Errorf("move clusters %d..%d: %w", r.first, r.first+r.n-1, err)
		}
	}
	if g.rootSec > 0 {
		src := (g.rsvd + g.nfats*g.fatSz) * g.bps
		dst := (ng.rsvd + ng.nfats*ng.fatSz) * g.bps
		if err := fsmap.MoveUp(ctx, v, src, dst, g.rootSec*g.bps, "FAT volume data"); err != nil {
			return fmt.Errorf("move root directory: %w", err)
		}
	}
	for k := g.nfats - 1; k >= 0; k-- {
		src, dst := g.fatCopyOff(k), ng.fatCopyOff(k)
		if err := fsmap.MoveUp(ctx, v, src, dst, g.fatSz*g.bps, "FAT volume data"); err != nil {
			return fmt.Errorf("move FAT copy %d: %w", k, err)
		}
		if err := fsmap.WriteZeros(ctx, v, dst+g.fatSz*g.bps, (ng.fatSz-g.fatSz)*g.bps); err != nil {
			return fmt.Errorf("extend FAT copy %d: %w", k, err)
		}
	}
	return nil
}

// zeroEntries frees FAT entries [from, to) in every copy: the entries that
// become clusters must start free whatever the old FAT's slack held.
func zeroEntries(ctx context.Context, v fsmap.Volume, g *geometry, from, to int64) error {
	to = min(to, g.fatCapacity())
	if from >= to {
		return nil
	}
	for k := int64(0); k < g.nfats; k++ {
		base := g.fatCopyOff(k)
		if g.bits != 12 {
			w := int64(g.bits / 8)
			if err := fsmap.WriteZeros(ctx, v, base+from*w, (to-from)*w); err != nil {
				return err
			}
			continue
		}
		// FAT12 packs two entries in three bytes: read, patch, write back.
		// Its FAT is at most 6 KiB, so the span is small.
		lo, hi := from*3/2, min((to*3+1)/2+1, g.fatSz*g.bps)
		buf := make([]byte, hi-lo)
		if err := fsmap.ReadFull(v, buf, base+lo, "FAT12 entries"); err != nil {
			return err
		}
		for e := from; e < to; e++ {
			off := e*3/2 - lo
			if e&1 == 1 {
				buf[off] &= 0x0F
				buf[off+1] = 0
			} else {
				buf[off] = 0
				buf[off+1] &= 0xF0
			}
		}
		if _, err := v.WriteAt(buf, base+lo); err != nil {
			return fmt.Errorf("write FAT12 entries at %d: %w", base+lo, err)
		}
	}
	return nil
}

// writeBootSectors records ng in the boot sector and, on FAT32, in the
// backup boot sector and the FSInfo free count (used clusters are those the
// first FAT marks non-zero).
func writeBootSectors(v fsmap.Volume, g, ng *geometry, used int64) error {
	bs := make([]byte, g.bps)
	if err := fsmap.ReadFull(v, bs, 0, "FAT boot sector"); err != nil {
		return err
	}
	le := binary.LittleEndian
	if g.bits == 32 {
		le.PutUint32(bs[36:], uint32(ng.fatSz))
		le.PutUint16(bs[19:], 0)
		le.PutUint32(bs[32:], uint32(ng.totSec))
	} else {
		le.PutUint16(bs[22:], uint16(ng.fatSz))
		if ng.totSec < 0x10000 {
			le.PutUint16(bs[19:], uint16(ng.totSec))
			le.PutUint32(bs[32:], 0)
		} else {
			le.PutUint16(bs[19:], 0)
			le.PutUint32(bs[32:], uint32(ng.totSec))
		}
	}
	targets := []int64{0}
	if g.bkBoot > 0 {
		targets = append(targets, g.bkBoot)
	}
	for _, sec := range targets {
		if g.fsInfo > 0 {
			if err := updateFSInfo(v, g, sec+g.fsInfo, ng.clusters-used); err != nil {
				return err
			}
		}
	}
	// The primary boot sector last: until it is written the file system
	// still reads as its old, consistent self.
	for i := len(targets) - 1; i >= 0; i-- {
		if _, err := v.WriteAt(bs, targets[i]*g.bps); err != nil {
			return fmt.Errorf("write boot sector %d: %w", targets[i], err)
		}
	}
	return nil
}

// updateFSInfo sets the free-cluster count of the FSInfo sector at sec when
// it carries valid signatures; one that does not is left alone, as the
// spec says its hints are then unknown.
func updateFSInfo(v fsmap.Volume, g *geometry, sec, free int64) error {
	if sec >= g.rsvd {
		return nil
	}
	b := make([]byte, 512)
	if err := fsmap.ReadFull(v, b, sec*g.bps, "FAT32 FSInfo"); err != nil {
		return err
	}
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != fsInfoLead || le.Uint32(b[484:]) != fsInfoStruct {
		return nil
	}
	le.PutUint32(b[488:], uint32(free))
	if _, err := v.WriteAt(b, sec*g.bps); err != nil {
		return fmt.Errorf("write FAT32 FSInfo at sector %d: %w", sec, err)
	}
	return nil
}
