package image

import (
	"context"
	"fmt"
	"strings"

	"github.com/lifeboat/lifeboat/engine/clone"
	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/ptable"
	"github.com/lifeboat/lifeboat/engine/repo"
)

// OpenSnapshot returns a snapshot as a read-only disk: any byte range of it
// can be read without restoring it, loading only the chunks it needs.
func OpenSnapshot(ctx context.Context, r *repo.Repo, s *repo.Snapshot) (*VDisk, *Meta, error) {
	meta, err := ParseMeta(s.Meta)
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot %s: %w", s.ID, err)
	}
	streams := map[string]repo.Stream{}
	for _, st := range s.Streams {
		streams[st.Name] = st
	}
	vd := NewVDisk(meta.Source.Size, meta.Source.LogicalSectorSize, meta.Source.PhysicalSectorSize)
	for _, rm := range meta.Regions {
		st, ok := streams[rm.Stream]
		if !ok {
			return nil, nil, fmt.Errorf("snapshot %s: region %s has no stream", s.ID, rm.Stream)
		}
		if st.Size != rm.Size {
			return nil, nil, fmt.Errorf("snapshot %s: stream %s holds %d bytes, its region %d", s.ID, rm.Stream, st.Size, rm.Size)
		}
		sr, err := r.StreamReader(ctx, st)
		if err != nil {
			return nil, nil, fmt.Errorf("snapshot %s: open stream %s: %w", s.ID, rm.Stream, err)
		}
		if err := vd.Add(rm.Offset, rm.Size, sr); err != nil {
			return nil, nil, fmt.Errorf("snapshot %s: %w", s.ID, err)
		}
	}
	return vd, meta, nil
}

// RestoreOptions says which snapshot goes where.
type RestoreOptions struct {
	Repo     *repo.Repo
	Snapshot *repo.Snapshot
	Target   *disks.Disk
	// Partition restores one partition of the snapshot; ToPartition puts
	// it into that partition of the target (0: the whole target).
	Partition, ToPartition int
	Layout                 ptable.Layout
	Delta, Verify          bool
	NoDiscard              bool
	// System restores only the partitions the installed system needs;
	// a snapshot made with --system restores that way by itself.
	System bool
	// NewIDs gives the restored disk new GUIDs and file-system UUIDs.
	NewIDs bool
	// ScratchDir holds what copy-on-write views of the snapshot write
	// (shrinking onto a smaller disk); empty keeps it in memory.
	ScratchDir string
	// RepoPath is a local repository's directory: the target may not hold it.
	RepoPath string
	Protect  []string
	SysRoot  string
}

// PlanRestore checks the safety rules and plans the restore as a clone
// from the snapshot. Run the plan with clone.Run.
func PlanRestore(ctx context.Context, opt RestoreOptions) (*clone.Plan, *Meta, error) {
	vd, meta, err := OpenSnapshot(ctx, opt.Repo, opt.Snapshot)
	if err != nil {
		return nil, nil, err
	}
	part := opt.Partition
	if meta.Kind == "partition" {
		if part == 0 {
			part = meta.Partition
		}
		if part != meta.Partition {
			return nil, nil, fmt.Errorf("snapshot %s holds only partition %d", short(opt.Snapshot.ID), meta.Partition)
		}
	}
	if opt.ToPartition != 0 && part == 0 {
		return nil, nil, fmt.Errorf("--to-partition needs --partition (the snapshot's partition to restore)")
	}
	protect := append([]string(nil), opt.Protect...)
	if opt.RepoPath != "" {
		protect = append(protect, opt.RepoPath)
	}
	src := &disks.Disk{
		Path: "snapshot:" + opt.Snapshot.ID, IsFile: true, Model: meta.Source.Model, Serial: meta.Source.Serial,
		WWN: meta.Source.WWN, Size: meta.Source.Size, LogicalSectorSize: meta.Source.LogicalSectorSize,
		PhysicalSectorSize: meta.Source.PhysicalSectorSize, Table: meta.Table,
	}
	plan, err := clone.MakePlan(ctx, clone.Options{
		Source: src, SourceDev: vd, SourceLabel: Describe(opt.Snapshot, meta),
		Target: opt.Target, Layout: opt.Layout, Partition: part, ToPartition: opt.ToPartition,
		Verify: opt.Verify, Delta: opt.Delta, NoDiscard: opt.NoDiscard, Protect: protect, SysRoot: opt.SysRoot,
		System: (opt.System || meta.Kind == "system") && part == 0, NewIDs: opt.NewIDs, ScratchDir: opt.ScratchDir,
	})
	if err != nil {
		return nil, nil, err
	}
	return plan, meta, nil
}

// Describe names a snapshot for people: id, time, and the disk it came from.
func Describe(s *repo.Snapshot, m *Meta) string {
	var b strings.Builder
	fmt.Fprintf(&b, "snapshot %s of %s", short(s.ID), s.Time.Local().Format("2006-01-02 15:04:05"))
	if m != nil {
		what := m.Source.Path
		if m.Source.Model != "" {
			what = fmt.Sprintf("%q", m.Source.Model)
		}
		if m.Source.Serial != "" {
			what += " serial " + m.Source.Serial
		}
		fmt.Fprintf(&b, ", from %s %s (%d bytes)", what, disks.HumanBytes(m.Source.Size), m.Source.Size)
		if m.Kind == "partition" {
			fmt.Fprintf(&b, ", partition %d only", m.Partition)
		}
		if m.Kind == "system" {
			b.WriteString(", the installed system's partitions only")
		}
	}
	if s.Host != "" {
		fmt.Fprintf(&b, " on host %s", s.Host)
	}
	return b.String()
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
