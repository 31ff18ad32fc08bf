package image

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/lifeboat/lifeboat/engine/blockdev"

	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/engine/progress"
	"github.com/lifeboat/lifeboat/engine/repo"
)

// ExportOptions says what to export where.
type ExportOptions struct {
	Repo     *repo.Repo
	Snapshot *repo.Snapshot
	// Partition exports one partition; 0 exports the whole disk.
	Partition int
	// To is the raw image file to create; it must not exist.
	To string
}

// Export writes a snapshot as a raw disk (or partition) image, a sparse
// file: only bytes the snapshot holds are written, the rest stay holes.
func Export(ctx context.Context, opt ExportOptions, counters *progress.Counters) (written int64, err error) {
	if counters == nil {
		counters = &progress.Counters{}
	}
	vd, meta, err := OpenSnapshot(ctx, opt.Repo, opt.Snapshot)
	if err != nil {
		return 0, err
	}
	base, size := int64(0), meta.Source.Size
	regions := meta.Regions
	if opt.Partition != 0 {
		var found *RegionMeta
		for i := range meta.Regions {
			if meta.Regions[i].What == "partition" && meta.Regions[i].Number == opt.Partition {
				found = &meta.Regions[i]
			}
		}
		if found == nil {
			return 0, fmt.Errorf("export: snapshot %s holds no partition %d", short(opt.Snapshot.ID), opt.Partition)
		}
		base, size, regions = found.Offset, found.Size, []RegionMeta{*found}
	}
	f, err := os.OpenFile(opt.To, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return 0, fmt.Errorf("export: %s exists; it is not overwritten", opt.To)
		}
		return 0, fmt.Errorf("export: %w", err)
	}
	fail := func(err error) (int64, error) {
		f.Close()
		os.Remove(opt.To)
		return 0, err
	}
	if err := f.Truncate(size); err != nil {
		return fail(fmt.Errorf("export: size %s: %w", opt.To, err))
	}
	var total int64
	for _, r := range regions {
		total += r.Size
	}
	counters.SetPhase("export", total)
	cs := int64(opt.Repo.Config().ChunkSize)
	buf := make([]byte, cs)
	for _, r := range regions {
		// Chunks are aligned to the region's start, so each piece below
		// is one chunk: a chunk the snapshot does not hold reads as zeros
		// without loading anything and is left as a hole.
		for off := int64(0); off < r.Size; off += cs {
			if err := ctx.Err(); err != nil {
				return fail(err)
			}
			b := buf[:min(cs, r.Size-off)]
			if err := fsmap.ReadFull(vd, b, r.Offset+off, "snapshot"); err != nil {
				return fail(fmt.Errorf("export: %w", err))
			}
			counters.Add(int64(len(b)))
			if blockdev.IsZero(b) {
				continue
			}
			if _, err := f.WriteAt(b, r.Offset+off-base); err != nil {
				return fail(fmt.Errorf("export: write %s: %w", opt.To, err))
			}
			written += int64(len(b))
		}
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("export: flush %s: %w", opt.To, err))
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("export: close %s: %w", opt.To, err)
	}
	return written, nil
}
