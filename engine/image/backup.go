package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/lifeboat/lifeboat/engine/blockdev"
	"github.com/lifeboat/lifeboat/engine/clone"
	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/engine/fsmap/probe"
	"github.com/lifeboat/lifeboat/engine/progress"
	"github.com/lifeboat/lifeboat/engine/ptable"
	"github.com/lifeboat/lifeboat/engine/repo"
	"github.com/lifeboat/lifeboat/engine/system"
)

// Phases reported through progress.Counters.
const (
	PhaseScan    = "scan"
	PhaseBackup  = "backup"
	PhaseRestore = "restore"
	PhaseVerify  = "verify"
)

// BackupOptions says what to back up where.
type BackupOptions struct {
	Source *disks.Disk
	// Partition backs up one partition; 0 backs up the whole disk.
	Partition int
	// System backs up only the partitions the installed operating
	// systems need (engine/system), with the partition table and boot
	// areas; a restore of such a snapshot restores those partitions.
	System bool
	Repo   *repo.Repo
	// RepoPath is a local repository's directory, so that a repository on
	// the source disk is refused; empty for network repositories.
	RepoPath    string
	Tags        []string
	Host        string
	Compression repo.Compression
	// PackSize overrides the repository writer's pack size (tests, tuning).
	PackSize int
	Workers  int
	SysRoot  string
}

// BackupResult says what a backup stored.
type BackupResult struct {
	Snapshot *repo.Snapshot
	Meta     *Meta
	Stats    repo.WriterStats
	Duration time.Duration
	Warnings []string
}

// plannedRegion is one stream to save: a byte range of the source and the
// extents within it that hold data.
type plannedRegion struct {
	meta    RegionMeta
	extents []fsmap.Extent // relative to the region
}

// Backup saves the source disk (or one partition) as a new snapshot. The
// source is opened read-only; nothing is written to it.
func Backup(ctx context.Context, opt BackupOptions, counters *progress.Counters) (*BackupResult, error) {
	start := time.Now()
	if counters == nil {
		counters = &progress.Counters{}
	}
	if opt.Source == nil || opt.Repo == nil {
		return nil, fmt.Errorf("backup: source and repository are required")
	}
	if opt.RepoPath != "" {
		same, how, err := clone.SharesStorage(opt.SysRoot, opt.Source.Path, opt.RepoPath)
		if err != nil {
			return nil, fmt.Errorf("backup: check where the repository lives: %w", err)
		}
		if same {
			return nil, &clone.RefusedError{Reason: fmt.Sprintf("the repository %s is on the disk being backed up (%s): it would change while it is read", opt.RepoPath, how)}
		}
	}
	src, err := blockdev.Open(ctx, opt.Source.Path, blockdev.Options{Mode: blockdev.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("backup: open source: %w", err)
	}
	defer src.Close()

	counters.SetPhase(PhaseScan, 0)
	meta, regions, warnings, err := planBackup(ctx, src, opt)
	if err != nil {
		return nil, err
	}
	lock, err := opt.Repo.Lock(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer lock.Unlock()
	// Packs a killed backup uploaded but never indexed hold chunks this
	// run can reuse: index them first.
	if _, err := opt.Repo.IndexOrphanPacks(ctx); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}

	var total int64
	for _, r := range regions {
		total += fsmap.Total(r.extents)
	}
	counters.SetPhase(PhaseBackup, total)
	// An index file every 32 packs (about 1 GiB stored) keeps what the
	// writer holds per new chunk bounded on large disks.
	w := opt.Repo.NewWriter(repo.WriterOptions{Compression: opt.Compression, PackSize: opt.PackSize, IndexEvery: 32})
	workers := opt.Workers
	if workers <= 0 {
		// Each worker reads and hashes a chunk and, when it completes a
		// group, compresses it; beyond the repository's compressors,
		// more workers would only hold more groups while they wait.
		workers = max(2, min(runtime.GOMAXPROCS(0), repo.Compressors()+2))
	}
	cs := opt.Repo.Config().ChunkSize
	var streams []repo.Stream
	for _, r := range regions {
		ref, err := saveRegion(ctx, w, opt.Repo, blockdev.Sub(src, r.meta.Offset, r.meta.Size), r.meta.Size, r.extents, cs, workers, counters)
		if err != nil {
			return nil, fmt.Errorf("backup %s: %w", r.meta.Stream, err)
		}
		streams = append(streams, repo.Stream{Name: r.meta.Stream, Size: r.meta.Size, ChunkSize: cs, Chunks: ref})
	}
	stats, err := w.Flush(ctx)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	meta.Added = stats.BytesStored
	mb, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("backup: encode meta: %w", err)
	}
	host := opt.Host
	if host == "" {
		host, _ = os.Hostname()
	}
	snap := &repo.Snapshot{Time: time.Now().UTC(), Host: host, Tags: opt.Tags, Streams: streams, Meta: mb,
		Stats: repo.SnapshotStats{BytesIn: stats.BytesIn, BytesAdded: stats.BytesStored, ChunksNew: stats.ChunksNew, ChunksDedup: stats.ChunksDedup}}
	id, err := opt.Repo.SaveSnapshot(ctx, snap)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	snap.ID = id
	return &BackupResult{Snapshot: snap, Meta: meta, Stats: stats, Duration: time.Since(start), Warnings: warnings}, nil
}

// planBackup reads the partition table and each file system's used-block
// map and decides the regions to save.
func planBackup(ctx context.Context, src *blockdev.Disk, opt BackupOptions) (*Meta, []plannedRegion, []string, error) {
	d := opt.Source
	meta := &Meta{Version: MetaVersion, Kind: "disk", Partition: opt.Partition, Source: SourceInfo{
		Path: d.Path, Model: d.Model, Serial: d.Serial, WWN: d.WWN, Size: src.Size(),
		LogicalSectorSize: src.SectorSize(), PhysicalSectorSize: src.PhysicalSectorSize(), Transport: d.Transport,
	}}
	if opt.Partition != 0 {
		meta.Kind = "partition"
	}
	if opt.System && opt.Partition != 0 {
		return nil, nil, nil, fmt.Errorf("backup: --system and --partition do not go together")
	}
	tbl, err := ptable.Read(ctx, src, src.Size(), src.SectorSize())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("backup: read the partition table of %s: %w", d.Path, err)
	}
	meta.Table = string(tbl.Kind)
	warnings := tbl.Warnings()
	var sel *system.Selection
	if opt.System {
		if sel, err = system.Select(ctx, src, tbl); err != nil {
			var none *system.NoSystemError
			if errors.As(err, &none) {
				return nil, nil, nil, &clone.RefusedError{Reason: "--system: " + err.Error()}
			}
			return nil, nil, nil, fmt.Errorf("backup: --system: %w", err)
		}
		meta.Kind = "system"
		var b strings.Builder
		sel.Describe(&b)
		meta.System = strings.Split(strings.TrimSpace(b.String()), "\n")
		warnings = append(warnings, sel.Warnings...)
	}
	var regions []plannedRegion
	if tbl.Kind != ptable.None {
		areas := tbl.MetadataExtents(src.Size())
		if off, n := tbl.BootGap(); n > 0 {
			areas = append(areas, fsmap.Extent{Off: off, Len: n})
		}
		for _, a := range fsmap.Normalize(areas, src.Size()) {
			regions = append(regions, plannedRegion{
				meta:    RegionMeta{Stream: fmt.Sprintf("table@%d", a.Off), Offset: a.Off, Size: a.Len, What: "table"},
				extents: []fsmap.Extent{{Off: 0, Len: a.Len}},
			})
		}
	}
	type vol struct {
		num       int
		off, size int64
		p         ptable.Partition
	}
	var vols []vol
	if tbl.Kind == ptable.None {
		if opt.Partition != 0 {
			return nil, nil, nil, fmt.Errorf("backup: %s has no partition table, so no partition %d", d.Path, opt.Partition)
		}
		vols = append(vols, vol{num: 0, off: 0, size: src.Size()})
	} else {
		for _, p := range tbl.Partitions {
			if sel != nil && !sel.Has(p.Number) {
				continue
			}
			if opt.Partition == 0 || p.Number == opt.Partition {
				vols = append(vols, vol{num: p.Number, off: p.Start, size: p.Size, p: p})
			}
		}
		if len(vols) == 0 {
			return nil, nil, nil, fmt.Errorf("backup: %s has no partition %d", d.Path, opt.Partition)
		}
	}
	for _, v := range vols {
		w := blockdev.Sub(src, v.off, v.size)
		fs, err := probe.Detect(ctx, w, v.size)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("backup: partition %d: %w", v.num, err)
		}
		ext, err := fs.UsedExtents(ctx)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("backup: partition %d: map used blocks: %w", v.num, err)
		}
		ext = fsmap.Normalize(ext, v.size)
		info := fs.Info()
		rm := RegionMeta{
			Stream: fmt.Sprintf("part%d", v.num), Offset: v.off, Size: v.size, What: "partition", Number: v.num,
			Type: v.p.Type, TypeName: v.p.TypeName, Name: v.p.Name, GUID: v.p.GUID,
			FS: info.Type, FSVariant: info.Variant, Label: info.Label, UUID: info.UUID, Used: fsmap.Total(ext), Raw: info.Raw, Warnings: info.Warnings,
		}
		if v.num == 0 {
			rm.Stream, rm.What = "volume", "volume"
		}
		for _, wn := range info.Warnings {
			warnings = append(warnings, fmt.Sprintf("partition %d: %s", v.num, wn))
		}
		meta.Used += rm.Used
		regions = append(regions, plannedRegion{meta: rm, extents: ext})
	}
	for _, r := range regions {
		meta.Regions = append(meta.Regions, r.meta)
	}
	return meta, regions, warnings, nil
}

// saveRegion stores one region as fixed-size chunks aligned to its start
// and returns the chunk list. Bytes outside the used extents are zeroed
// before hashing, so the same content always gives the same id; a chunk
// with no used byte, or only zeros, is not stored (its id is zero).
func saveRegion(ctx context.Context, w *repo.Writer, r *repo.Repo, src *blockdev.Window, size int64, ext []fsmap.Extent, cs int, workers int, counters *progress.Counters) (repo.ListRef, error) {
	n := (size + int64(cs) - 1) / int64(cs)
	// The chunk list is stored part by part as chunks finish, so memory
	// does not grow with the region's size.
	list := w.NewList(n)
	type job struct {
		idx  int64
		used []fsmap.Extent // relative to the chunk
	}
	// The writer may go on uploading a pack that SaveChunk started after
	// this function returns, so it gets the caller's context, not the
	// group's, which is cancelled when the group ends.
	parent := ctx
	g, ctx := errgroup.WithContext(ctx)
	jobs := make(chan job, workers)
	g.Go(func() error {
		defer close(jobs)
		e := 0
		for i := int64(0); i < n; i++ {
			lo, hi := i*int64(cs), min((i+1)*int64(cs), size)
			for e < len(ext) && ext[e].End() <= lo {
				e++
			}
			var used []fsmap.Extent
			for k := e; k < len(ext) && ext[k].Off < hi; k++ {
				a, b := max(ext[k].Off, lo), min(ext[k].End(), hi)
				used = append(used, fsmap.Extent{Off: a - lo, Len: b - a})
			}
			if len(used) == 0 {
				if err := list.Set(parent, i, repo.ChunkID{}); err != nil {
					return err
				}
				continue
			}
			select {
			case jobs <- job{idx: i, used: used}:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	for k := 0; k < workers; k++ {
		g.Go(func() error {
			buf := make([]byte, cs)
			for j := range jobs {
				lo := j.idx * int64(cs)
				b := buf[:min(int64(cs), size-lo)]
				if err := fsmap.ReadFull(src, b, lo, "source"); err != nil {
					return err
				}
				zeroOutside(b, j.used)
				counters.Add(fsmap.Total(j.used))
				var id repo.ChunkID
				if !blockdev.IsZero(b) {
					id = r.Hash(b)
					if _, err := w.SaveChunk(parent, id, b); err != nil {
						return err
					}
				}
				if err := list.Set(parent, j.idx, id); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return repo.ListRef{}, err
	}
	ref, err := list.Finish()
	if err != nil {
		return repo.ListRef{}, fmt.Errorf("save its chunk list: %w", err)
	}
	return ref, nil
}

// zeroOutside clears the bytes of b not covered by used (sorted extents
// relative to b).
func zeroOutside(b []byte, used []fsmap.Extent) {
	var pos int64
	for _, u := range used {
		clear(b[pos:u.Off])
		pos = u.End()
	}
	clear(b[pos:])
}
