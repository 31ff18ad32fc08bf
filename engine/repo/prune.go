package repo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"time"

	"github.com/lifeboat/lifeboat/netshare"
)

// PruneOptions configure Repo.Prune.
type PruneOptions struct {
	// RepackBelow repacks packs whose used fraction (bytes of blobs still
	// needed over bytes of all their blobs) is below it; 0 picks 0.5, a
	// negative value never repacks.
	RepackBelow float64
	// DryRun computes what prune would do and changes nothing.
	DryRun bool
	// PackSize is the size of the packs repacking writes; 0 picks
	// DefaultPackSize.
	PackSize int
	// Progress, when set, is called as work completes; phase is
	// "snapshots" (chunk list blobs loaded), "repack" (pack bytes read) or
	// "delete" (objects removed).
	Progress func(phase string, done, total int64)
}

// PruneStats say what a prune did (or, dry, would do).
type PruneStats struct {
	// PacksDeleted counts removed packs: wholly unused ones, repacked ones
	// and ones no index listed. PacksRepacked counts those whose needed
	// blobs were copied first; PacksKept those left as they are.
	PacksDeleted, PacksRepacked, PacksKept int
	// BytesFreed is the size of the removed packs less the size of the new
	// packs; BytesRepacked the stored bytes of the blobs copied.
	BytesFreed, BytesRepacked int64
	// IndexesReplaced counts the index files the new one superseded.
	IndexesReplaced int
	// TempRemoved counts what interrupted saves had left behind and the
	// backend removed (temporary files, unfinished multipart uploads):
	// see netshare.Cleaner. A dry run removes nothing and counts none.
	TempRemoved int
}

// tempMaxAge is how old a leftover of an interrupted save must be before
// Prune removes it. Prune holds the exclusive lock, but a writer that does
// not take locks (another tool, an older Lifeboat) may share the
// repository: a day is far longer than any one save runs.
const tempMaxAge = 24 * time.Hour

// packPlan is one pack's fate.
type packPlan struct {
	info      packInfo
	used      []packEntry // needed blobs this pack supplies
	usedBytes int64
	allBytes  int64
}

// Prune removes what no snapshot needs. Under an exclusive lock it:
// reads the index and every snapshot; marks every chunk and chunk list
// blob they reference; copies the needed blobs of packs used below
// RepackBelow into new packs; writes one index file that lists every pack
// still wanted and supersedes every index file there was; removes the old
// index files; and last removes the packs no longer listed (unused,
// repacked, and packs no index listed). Killed at any point, the
// repository still checks clean and Prune can run again: see "Prune" in
// docs/FORMAT.md. Last, when the backend is a netshare.Cleaner, it removes
// what interrupted saves left behind more than a day ago. It refuses to
// run on a repository whose index, manifests or chunk lists are damaged or
// whose listed packs are missing (run Check).
func (r *Repo) Prune(ctx context.Context, opt PruneOptions) (stats *PruneStats, err error) {
	l, err := r.Lock(ctx, !opt.DryRun)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	defer func() {
		if uerr := l.Unlock(); uerr != nil && err == nil {
			err = fmt.Errorf("prune: %w", uerr)
		}
	}()
	stats, err = r.prune(ctx, opt)
	if err != nil {
		return stats, fmt.Errorf("prune: %w", err)
	}
	if c, ok := r.be.(netshare.Cleaner); ok && !opt.DryRun {
		n, err := c.Cleanup(ctx, tempMaxAge)
		stats.TempRemoved = n
		if err != nil {
			return stats, fmt.Errorf("prune: packs and index done, but removing the leftovers of interrupted saves failed: %w", err)
		}
	}
	return stats, nil
}

func (r *Repo) prune(ctx context.Context, opt PruneOptions) (*PruneStats, error) {
	threshold := opt.RepackBelow
	if threshold == 0 {
		threshold = 0.5
	}
	progress := func(phase string, done, total int64) {
		if opt.Progress != nil {
			opt.Progress(phase, done, total)
		}
	}
	ls, err := r.listAll(ctx)
	if err != nil {
		return nil, err
	}
	st, err := r.readIndexState(ctx, ls.indexes)
	if err != nil {
		return nil, err
	}
	if bad := sortedKeys(st.unreadable); len(bad) > 0 {
		return nil, fmt.Errorf("index file %s unreadable (run check): %w", bad[0], st.unreadable[bad[0]])
	}
	for _, p := range st.live {
		if size, ok := ls.packs[p.ID]; !ok || size != p.Size {
			return nil, fmt.Errorf("pack %s listed in the index is missing or of the wrong size (run check): %w", packName(p.ID), ErrDamaged)
		}
	}
	orphans := map[PackID]bool{}
	for id := range ls.packs {
		if !st.idx.hasPack(id) {
			orphans[id] = true
		}
	}
	candidates := slices.Clone(st.live)
	var used map[ChunkID]bool
	for {
		used, err = r.usedBlobs(ctx, st, ls.snapshots, progress)
		if err != nil {
			return nil, err
		}
		missing := missingBlobs(st, used)
		if len(missing) == 0 {
			break
		}
		// Each round indexes at least one more pack, so this ends.
		rescued, err := r.rescueOrphans(ctx, st, missing, ls, orphans)
		if err != nil {
			return nil, err
		}
		candidates = append(candidates, rescued...)
	}

	keep, repack, drop := planPacks(candidates, used, threshold)
	stats := &PruneStats{PacksKept: len(keep), PacksRepacked: len(repack)}
	gone := map[PackID]int64{} // packs to remove, with their sizes
	for _, p := range append(repack, drop...) {
		gone[p.info.ID] = p.info.Size
	}
	for id := range orphans {
		gone[id] = ls.packs[id]
	}
	for _, p := range repack {
		stats.BytesRepacked += p.usedBytes
	}
	changed := len(gone) > 0 || len(candidates) > len(st.live) || len(st.files) > 1
	if opt.DryRun || !changed {
		stats.PacksDeleted = len(gone)
		for _, size := range gone {
			stats.BytesFreed += size
		}
		stats.BytesFreed -= stats.BytesRepacked
		return stats, nil
	}

	// 1. New packs for the blobs of the repacked ones. Until step 2 they
	// are packs no index lists: harmless, and removed by the next prune.
	newPacks, err := r.repack(ctx, repack, opt.PackSize, progress)
	if err != nil {
		return stats, err
	}
	// 2. One index listing every pack still wanted, superseding every
	// index file read. Saved atomically: before it, the old index holds;
	// after it, the new one does.
	live := make([]packInfo, 0, len(keep)+len(newPacks))
	for _, p := range keep {
		live = append(live, p.info)
	}
	live = append(live, newPacks...)
	newIndex, err := r.saveObject(ctx, "index", encodeIndex(&indexFile{Supersedes: st.ids, Packs: live}))
	if err != nil {
		return stats, fmt.Errorf("write new index: %w", err)
	}
	stats.IndexesReplaced = len(st.files)
	r.idx.replace(live)
	// A new pack may have the name of a pack there already (an earlier
	// prune killed before its index made the same pack): never remove a
	// pack the new index lists.
	for _, p := range newPacks {
		if _, existed := ls.packs[p.ID]; !existed {
			stats.BytesFreed -= p.Size
		}
	}
	for _, p := range live {
		delete(gone, p.ID)
	}
	removeNames := make([]string, 0, len(gone))
	for id, size := range gone {
		removeNames = append(removeNames, packName(id))
		stats.BytesFreed += size
	}
	sort.Strings(removeNames)
	stats.PacksDeleted = len(removeNames)
	// 3. The old index files, which readers now ignore.
	total := int64(len(st.files) + len(removeNames))
	var done int64
	for _, name := range st.files {
		if name != "index/"+newIndex {
			if err := r.removeObject(ctx, name); err != nil {
				return stats, err
			}
		}
		done++
		progress("delete", done, total)
	}
	// 4. The packs no index lists any more.
	for _, name := range removeNames {
		if err := r.removeObject(ctx, name); err != nil {
			return stats, err
		}
		done++
		progress("delete", done, total)
	}
	return stats, nil
}

func (r *Repo) removeObject(ctx context.Context, name string) error {
	r.wrote.Store(true)
	if err := r.be.Remove(ctx, name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// usedBlobs loads every snapshot and chunk list and returns the set of
// blobs they reference. Any damage stops prune: what a damaged list
// references cannot be known, so nothing may be deleted.
func (r *Repo) usedBlobs(ctx context.Context, st *indexState, ids []string, progress func(string, int64, int64)) (map[ChunkID]bool, error) {
	var snaps []*Snapshot
	var total, done int64
	for _, id := range ids {
		s, err := r.loadSnapshotByID(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("%w (run check)", err)
		}
		snaps = append(snaps, s)
		for _, stream := range s.Streams {
			total += int64(len(stream.Chunks.Parts))
		}
	}
	used := map[ChunkID]bool{}
	for _, s := range snaps {
		for _, stream := range s.Streams {
			for i, pid := range stream.Chunks.Parts {
				done++
				if used[pid] {
					continue
				}
				used[pid] = true
				if !st.idx.has(pid) {
					continue // rescueOrphans looks for it, or prune stops
				}
				chunks, err := r.loadListPartFrom(ctx, st.idx, stream.Chunks, i)
				if err != nil {
					return nil, fmt.Errorf("snapshot %s stream %q: %w (run check)", s.ID, stream.Name, err)
				}
				for _, c := range chunks {
					if !c.IsZero() {
						used[c] = true
					}
				}
				progress("snapshots", done, total)
			}
		}
	}
	return used, nil
}

// missingBlobs returns the needed blobs the index lacks, sorted.
func missingBlobs(st *indexState, used map[ChunkID]bool) []ChunkID {
	var out []ChunkID
	for id := range used {
		if !st.idx.has(id) {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// rescueOrphans handles needed blobs that no index lists. Snapshots are
// written after their index, so this only happens in a damaged
// repository; packs no index lists may still hold such blobs, and those
// packs are kept (and indexed). The packs returned are added to st's index
// and removed from orphans. When no orphan holds any missing blob, prune
// stops.
func (r *Repo) rescueOrphans(ctx context.Context, st *indexState, missing []ChunkID, ls *repoListing, orphans map[PackID]bool) ([]packInfo, error) {
	want := map[ChunkID]bool{}
	for _, id := range missing {
		want[id] = true
	}
	ids := make([]PackID, 0, len(orphans))
	for id := range orphans {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	var rescued []packInfo
	for _, id := range ids {
		entries, err := r.readPackHeader(ctx, id, ls.packs[id])
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			continue // a damaged orphan supplies nothing
		}
		helps := false
		for _, e := range entries {
			if want[e.ID] {
				delete(want, e.ID)
				helps = true
			}
		}
		if helps {
			rescued = append(rescued, packInfo{ID: id, Size: ls.packs[id], Entries: entries})
			delete(orphans, id)
		}
	}
	if len(rescued) == 0 {
		return nil, fmt.Errorf("blob %v, which a snapshot needs, is in no pack (run check): %w", missing[0], ErrNotFound)
	}
	st.idx.add(rescued)
	return rescued, nil
}

// planPacks decides each pack's fate. Every needed blob is supplied by one
// pack; packs are considered fullest first so duplicates are taken from
// packs that stay.
func planPacks(candidates []packInfo, used map[ChunkID]bool, threshold float64) (keep, repack, drop []*packPlan) {
	plans := make([]*packPlan, len(candidates))
	for i, p := range candidates {
		pl := &packPlan{info: p}
		for _, e := range p.Entries {
			pl.allBytes += storedShare(e)
			if used[e.ID] {
				pl.usedBytes += storedShare(e)
			}
		}
		plans[i] = pl
	}
	frac := func(p *packPlan) float64 {
		if p.allBytes == 0 {
			return 0
		}
		return float64(p.usedBytes) / float64(p.allBytes)
	}
	sort.SliceStable(plans, func(i, j int) bool {
		fi, fj := frac(plans[i]), frac(plans[j])
		if fi != fj {
			return fi > fj
		}
		return plans[i].info.ID.String() < plans[j].info.ID.String()
	})
	claimed := map[ChunkID]bool{}
	for _, pl := range plans {
		pl.usedBytes = 0
		for _, e := range pl.info.Entries {
			if used[e.ID] && !claimed[e.ID] {
				claimed[e.ID] = true
				pl.used = append(pl.used, e)
				pl.usedBytes += storedShare(e)
			}
		}
		switch {
		case len(pl.used) == 0:
			drop = append(drop, pl)
		case threshold > 0 && frac(pl) < threshold:
			repack = append(repack, pl)
		default:
			keep = append(keep, pl)
		}
	}
	return keep, repack, drop
}

// repack copies the needed blobs of packs as stored (still sealed and
// compressed) into new packs, after checking each one, and returns the new
// packs, which no index lists yet.
func (r *Repo) repack(ctx context.Context, plans []*packPlan, packSize int, progress func(string, int64, int64)) ([]packInfo, error) {
	if len(plans) == 0 {
		return nil, nil
	}
	var total, done int64
	for _, p := range plans {
		total += p.info.Size
	}
	w := r.NewWriter(WriterOptions{PackSize: packSize})
	for _, p := range plans {
		name := packName(p.info.ID)
		b, err := r.be.Load(ctx, name, 0, -1)
		if err == nil {
			err = r.repackOne(ctx, w, name, b, p)
		}
		if err != nil {
			_, _ = w.uploadAll(ctx) // stopping anyway: wait for the uploads in flight
			return nil, fmt.Errorf("repack %s: %w", name, err)
		}
		done += p.info.Size
		progress("repack", done, total)
	}
	packs, err := w.uploadAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("repack: %w", err)
	}
	return packs, nil
}

// repackOne copies the needed blobs of one pack, whose bytes are b, into w
// after checking each. A frame whose blobs are all needed is copied as
// stored (still sealed and compressed); the needed blobs of a group frame
// that also holds unneeded ones are stored anew, so the unneeded ones free
// their space.
func (r *Repo) repackOne(ctx context.Context, w *Writer, name string, b []byte, p *packPlan) error {
	used := map[ChunkID]bool{}
	for _, e := range p.used {
		used[e.ID] = true
	}
	entries := p.info.Entries
	for i := 0; i < len(entries); {
		j := i + 1
		for j < len(entries) && entries[j].Flags&flagGroup != 0 && entries[i].Flags&flagGroup != 0 && entries[j].Offset == entries[i].Offset {
			j++
		}
		frame := entries[i:j]
		i = j
		var need []packEntry
		for _, e := range frame {
			if used[e.ID] {
				need = append(need, e)
			}
		}
		if len(need) == 0 {
			continue
		}
		e0 := frame[0]
		end := int64(e0.Offset) + int64(e0.Stored)
		if end > int64(len(b)) {
			return fmt.Errorf("%w: blob %v ends at %d, past the pack's %d bytes", ErrDamaged, e0.ID, end, len(b))
		}
		stored := b[e0.Offset:end]
		raw, err := r.decodeFrame(stored, locOf(e0, 0))
		if err != nil {
			return fmt.Errorf("blob %v: %w: %w (run check --read-data)", e0.ID, ErrDamaged, err)
		}
		blobs := make([][]byte, len(need))
		for k, e := range need {
			data, err := member(raw, locOf(e, 0))
			if err == nil && r.Hash(data) != e.ID {
				err = errors.New("content does not match its id")
			}
			if err != nil {
				return fmt.Errorf("blob %v: %w: %w (run check --read-data)", e.ID, ErrDamaged, err)
			}
			blobs[k] = data
		}
		if len(need) == len(frame) {
			if err := w.copyFrame(ctx, frame, stored); err != nil {
				return err
			}
			continue
		}
		for k, e := range need {
			if _, err := w.saveBlob(ctx, e.Kind, e.ID, blobs[k], true); err != nil {
				return err
			}
		}
	}
	return nil
}

// storedShare is the part of its frame's stored bytes a blob accounts for:
// all of it for a frame of its own, a share by raw length in a group.
func storedShare(e packEntry) int64 {
	if e.frameRaw == 0 || e.Flags&flagGroup == 0 {
		return int64(e.Stored)
	}
	return int64(e.Stored) * int64(e.Raw) / int64(e.frameRaw)
}

// replace swaps in the index of exactly packs, for a Repo whose index prune
// rewrote.
func (m *memIndex) replace(packs []packInfo) {
	n := newMemIndex()
	n.add(packs)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.buckets, m.packs, m.pIdx, m.sizes = n.buckets, n.packs, n.pIdx, n.sizes
}
