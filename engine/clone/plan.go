// Package clone copies a disk or a partition onto another disk: the
// partition table, the boot areas and the used blocks of every file system,
// then grows file systems into larger partitions. It plans everything and
// checks every safety rule before it writes a byte.
package clone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lifeboat/lifeboat/engine/blockdev"
	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/engine/fsmap/probe"
	"github.com/lifeboat/lifeboat/engine/fsmap/raw"
	"github.com/lifeboat/lifeboat/engine/ptable"
	"github.com/lifeboat/lifeboat/engine/system"
)

// Options says what to clone where. Source and Target are resolved by the
// caller (by path or identity) with engine/disks.
type Options struct {
	Source, Target *disks.Disk
	// Layout is how partitions are laid out on a larger target.
	Layout ptable.Layout
	// Partition is the source partition to clone; 0 clones the whole disk.
	Partition int
	// ToPartition is the target partition to clone into; 0 means the
	// whole Target is the destination volume.
	ToPartition int
	// SectorBySector copies every sector of the source.
	SectorBySector bool
	// Verify re-reads the target and compares checksums.
	Verify bool
	// NoDiscard skips discarding the target before writing.
	NoDiscard bool
	// Protect lists paths written while the clone runs (a log, a
	// repository): the target may not hold them.
	Protect []string
	// Workers and ChunkSize tune the copy; 0 picks defaults.
	Workers   int
	ChunkSize int64
	// SysRoot is /sys, injectable for tests.
	SysRoot string
	// SourceDev, when set, is read instead of opening Source.Path: a
	// snapshot seen as a disk, for restore. Source still describes it.
	SourceDev blockdev.Device
	// SourceLabel, when set, names the source in the plan instead of
	// Source.Describe (a snapshot's id, time and origin).
	SourceLabel string
	// Delta reads the target and writes only the pieces that differ; the
	// target is neither discarded nor wiped first.
	Delta bool
	// System takes only the partitions the installed operating systems
	// need (engine/system) and lays them out from the start of the target.
	System bool
	// NewIDs gives the copy new disk and partition GUIDs and new file
	// system UUIDs, and rewrites what names the old ones in a Linux root.
	NewIDs bool
	// ScratchDir holds what copy-on-write views of the source write
	// (shrinking a file system before it is copied); empty keeps it in
	// memory.
	ScratchDir string
}

// Item is one volume to copy.
type Item struct {
	// Number and ToNumber are the partition numbers, 0 for a whole disk.
	Number, ToNumber int
	SrcOff, SrcSize  int64
	DstOff, DstSize  int64
	FS               fsmap.Info
	Extents          []fsmap.Extent
	// Copy is the number of bytes the used-block map covers.
	Copy int64
	// GrowTo is the size the file system is grown to, 0 for none.
	GrowTo int64
	grower fsmap.Grower
	// Action says in words what happens to this volume.
	Action string
	// ShrunkFrom is the file system's size on the source when it was
	// shrunk (on a copy-on-write view) to fit its target; 0 otherwise.
	ShrunkFrom int64
	// finish runs on the target volume after the copy and growth, before
	// the partition table is written (new identities).
	finish []func(ctx context.Context, v *volume) error
}

// Plan is a checked clone, ready to run.
type Plan struct {
	Opts           Options
	Source, Target *disks.Disk
	// SrcTable is the source's partition table; DstTable is written to the
	// target last (nil when the target's table is not touched).
	SrcTable, DstTable *ptable.Table
	Items              []Item
	// BootGap is the byte range before the first partition that is copied
	// verbatim (GRUB's core image on BIOS disks); zero length for none.
	BootGap  fsmap.Extent
	Total    int64
	Warnings []string
	// System is what --system found, nil without it.
	System *system.Selection
	// Fixes says what was changed on copy-on-write views of the source
	// (boot loader pointers, a fallback loader) or will be changed on the
	// target (new identities) for the copy to boot.
	Fixes []string

	src blockdev.Device
	// read is what the copy reads: the source, with the volumes prepared
	// on copy-on-write views (shrunk, fixed) read from those views.
	read *patched
	// ids are the identities --new-ids changes, for rewriting references.
	ids []idChange
}

// Close releases the source and the copy-on-write views.
func (p *Plan) Close() error {
	if p.src == nil {
		return nil
	}
	var err error
	if p.read != nil {
		err = p.read.close()
	}
	if e := p.src.Close(); err == nil {
		err = e
	}
	p.src = nil
	return err
}

// RefusedError says that a safety rule stopped the clone before anything
// was written.
type RefusedError struct {
	Reason string
}

func (e *RefusedError) Error() string { return "refused: " + e.Reason }

func refuse(format string, args ...any) error {
	return &RefusedError{Reason: fmt.Sprintf(format, args...)}
}

// MakePlan checks the safety rules and works out what to copy where. It
// opens only the source, read-only.
func MakePlan(ctx context.Context, opt Options) (*Plan, error) {
	if opt.Source == nil || opt.Target == nil {
		return nil, errors.New("plan clone: source and target are required")
	}
	if opt.Layout == "" {
		opt.Layout = ptable.LayoutGrowLast
	}
	if opt.SysRoot == "" {
		opt.SysRoot = "/sys"
	}
	if opt.ToPartition != 0 && opt.Partition == 0 {
		return nil, errors.New("plan clone: --to-partition needs --partition")
	}
	if opt.SectorBySector && opt.Partition != 0 {
		return nil, errors.New("plan clone: --sector-by-sector copies whole disks; it does not combine with --partition")
	}
	p := &Plan{Opts: opt, Source: opt.Source, Target: opt.Target}
	if err := p.checkTarget(); err != nil {
		return nil, err
	}
	if opt.SourceDev != nil {
		p.src = opt.SourceDev
	} else {
		src, err := blockdev.Open(ctx, opt.Source.Path, blockdev.Options{Mode: blockdev.ReadOnly})
		if err != nil {
			return nil, fmt.Errorf("open source: %w", err)
		}
		p.src = src
	}
	p.read = &patched{Device: p.src}
	if err := p.plan(ctx); err != nil {
		p.Close()
		return nil, err
	}
	for _, it := range p.Items {
		p.Total += it.Copy
	}
	p.Total += p.BootGap.Len
	return p, nil
}

// checkTarget applies the rules that do not need the source's contents.
func (p *Plan) checkTarget() error {
	o := p.Opts
	to, err := statObject(o.Target.Path)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	topo := topology{sysRoot: o.SysRoot}
	if o.SourceDev == nil {
		so, err := statObject(o.Source.Path)
		if err != nil {
			return fmt.Errorf("source: %w", err)
		}
		if same, how := topo.overlap(to, so); same {
			// Cloning one partition into another of the same disk is allowed;
			// the plan checks later that the two do not overlap.
			if !(o.Partition != 0 && o.ToPartition != 0) {
				return refuse("the target %s and the source %s share their bytes (%s): the source is never written", o.Target.Path, o.Source.Path, how)
			}
		}
	}
	for _, path := range o.Protect {
		po, err := statObject(path)
		if err != nil {
			continue // not created yet: its directory is checked below
		}
		if same, how := topo.overlap(to, po); same {
			return refuse("the target %s holds %s, which this job writes to (%s)", o.Target.Path, path, how)
		}
	}
	for _, path := range o.Protect {
		dir := path
		if _, err := os.Stat(path); err != nil {
			dir = parentDir(path)
		}
		if do, err := os.Stat(dir); err == nil && do.IsDir() {
			var fo object
			if fo, err = statDirObject(dir); err == nil {
				if same, how := topo.overlap(to, fo); same {
					return refuse("the target %s holds %s, which this job writes to (%s)", o.Target.Path, path, how)
				}
			}
		}
	}
	var busy []string
	if o.ToPartition != 0 {
		busy = append(busy, diskLevelUse(o.Target)...)
		for _, tp := range o.Target.Partitions {
			if tp.Number == o.ToPartition {
				busy = append(busy, partitionUse(tp)...)
			}
		}
	} else {
		busy = o.Target.InUse()
	}
	if len(busy) > 0 {
		return refuse("the target %s is in use: %s", o.Target.Path, strings.Join(busy, "; "))
	}
	if o.Target.ReadOnly {
		return refuse("the target %s is read-only", o.Target.Path)
	}
	return nil
}

func diskLevelUse(d *disks.Disk) []string {
	var out []string
	for _, m := range d.Mounts {
		out = append(out, fmt.Sprintf("%s is mounted on %s", d.Path, m))
	}
	if d.Swap {
		out = append(out, fmt.Sprintf("%s is active swap", d.Path))
	}
	for _, h := range d.Holders {
		out = append(out, fmt.Sprintf("%s is held by %s", d.Path, h))
	}
	return out
}

func partitionUse(p disks.Partition) []string {
	name := p.Path
	if name == "" {
		name = fmt.Sprintf("partition %d", p.Number)
	}
	var out []string
	for _, m := range p.Mounts {
		out = append(out, fmt.Sprintf("%s is mounted on %s", name, m))
	}
	if p.Swap {
		out = append(out, fmt.Sprintf("%s is active swap", name))
	}
	for _, h := range p.Holders {
		out = append(out, fmt.Sprintf("%s is held by %s", name, h))
	}
	return out
}

func (p *Plan) plan(ctx context.Context) error {
	o := p.Opts
	srcSize := p.src.Size()
	tbl, err := ptable.Read(ctx, p.src, srcSize, p.src.SectorSize())
	if err != nil {
		return fmt.Errorf("read the partition table of %s: %w", o.Source.Path, err)
	}
	p.SrcTable = tbl
	p.Warnings = append(p.Warnings, tbl.Warnings()...)
	if (o.System || o.NewIDs) && (o.SectorBySector || o.Partition != 0 || tbl.Kind == ptable.None) {
		what := "--system"
		if !o.System {
			what = "--new-ids"
		}
		return fmt.Errorf("plan clone: %s works on whole disks with a partition table, not with --partition, --sector-by-sector or a disk without a table", what)
	}
	switch {
	case o.SectorBySector:
		return p.planSectorBySector()
	case o.Partition != 0:
		return p.planPartition(ctx)
	case tbl.Kind == ptable.None:
		return p.planWholeVolume(ctx)
	default:
		return p.planDisk(ctx)
	}
}

func (p *Plan) planSectorBySector() error {
	o := p.Opts
	if o.Target.Size < o.Source.Size {
		return refuse("the target %s is too small for a sector-by-sector copy: it holds %s but the source has %s", o.Target.Path, sizeWords(o.Target.Size), sizeWords(o.Source.Size))
	}
	if ls, lt := p.src.SectorSize(), o.Target.LogicalSectorSize; lt != 0 && ls != lt {
		return refuse("the source has %d-byte sectors and the target %d-byte sectors: a sector-by-sector copy would not be readable there", ls, lt)
	}
	p.Items = []Item{{
		SrcSize: p.src.Size(), DstSize: p.src.Size(),
		FS:      raw.Whole(p.src.Size(), "disk").Info(),
		Extents: []fsmap.Extent{{Off: 0, Len: p.src.Size()}},
		Copy:    p.src.Size(),
		Action:  "copy every sector",
	}}
	if p.SrcTable.Kind == ptable.GPT && o.Target.Size > o.Source.Size {
		dst, err := ptable.Plan(p.SrcTable, p.src.Size(), ptable.PlanOptions{TargetSize: o.Target.Size, TargetSectorSize: p.src.SectorSize(), Layout: ptable.LayoutKeep})
		if err != nil {
			return fmt.Errorf("plan the GPT for the larger target: %w", err)
		}
		p.DstTable = dst
		p.Warnings = append(p.Warnings, "the backup GPT is moved to the end of the larger target")
	}
	return nil
}

// detect recognises the file system in a window of the source and maps it.
func (p *Plan) detect(ctx context.Context, off, size int64) (fsmap.FS, []fsmap.Extent, error) {
	w := blockdev.Sub(p.src, off, size)
	fs, err := probe.Detect(ctx, w, size)
	if err != nil {
		return nil, nil, err
	}
	ext, err := fs.UsedExtents(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("map used blocks of the %s file system: %w", fs.Info().Type, err)
	}
	return fs, fsmap.Normalize(ext, size), nil
}

func (p *Plan) planDisk(ctx context.Context) error {
	o := p.Opts
	if o.System {
		sel, err := system.Select(ctx, p.src, p.SrcTable)
		if err != nil {
			var none *system.NoSystemError
			if errors.As(err, &none) {
				return refuse("--system: %v", err)
			}
			return fmt.Errorf("--system: %w", err)
		}
		p.System = sel
		p.Warnings = append(p.Warnings, sel.Warnings...)
	}
	// Every file system carried is mapped first: a smaller target needs
	// to know what each one holds.
	found := map[int]detected{}
	for _, sp := range p.SrcTable.Partitions {
		if p.System != nil && !p.System.Has(sp.Number) {
			continue
		}
		fs, ext, err := p.detect(ctx, sp.Start, sp.Size)
		if err != nil {
			return partitionError(sp.Number, err)
		}
		found[sp.Number] = detected{fs: fs, ext: ext}
	}
	popt := ptable.PlanOptions{TargetSize: o.Target.Size, TargetSectorSize: targetSectorSize(o.Target, p.src), Layout: o.Layout}
	if p.System != nil {
		popt.Only, popt.Pack = p.System.Numbers(), true
	}
	dst, err := ptable.Plan(p.SrcTable, p.src.Size(), popt)
	var small *ptable.TooSmallError
	if errors.As(err, &small) {
		// A smaller target: close the gaps between partitions, and shrink
		// the file systems that can shrink if that is not enough.
		if mins := p.minSizes(found); !popt.Pack || len(mins) > 0 {
			popt.Pack, popt.MinSize = true, mins
			dst, err = ptable.Plan(p.SrcTable, p.src.Size(), popt)
		}
	}
	if err != nil {
		if errors.As(err, &small) {
			return p.tooSmall(small, found)
		}
		var sec *ptable.SectorSizeError
		if errors.As(err, &sec) {
			return refuse("%v", err)
		}
		return fmt.Errorf("plan the target's partition table: %w", err)
	}
	if o.NewIDs {
		if err := p.newTableIDs(dst); err != nil {
			return err
		}
	}
	p.DstTable = dst
	for _, sp := range p.SrcTable.Partitions {
		if p.System != nil && !p.System.Has(sp.Number) {
			continue
		}
		dp, ok := dst.Find(sp.Number)
		if !ok {
			return fmt.Errorf("plan clone: partition %d has no place on the target", sp.Number)
		}
		it, err := p.itemFrom(ctx, found[sp.Number], sp.Number, sp.Start, sp.Size, dp.Number, dp.Start, dp.Size)
		if err != nil {
			return partitionError(sp.Number, err)
		}
		p.Items = append(p.Items, it)
	}
	if off, n := p.SrcTable.BootGap(); n > 0 && dst.SectorSize == p.SrcTable.SectorSize {
		first := o.Target.Size
		for _, dp := range dst.Partitions {
			first = min(first, dp.Start)
		}
		if dst.Extended != nil {
			first = min(first, dst.Extended.Start)
		}
		if off+n <= first {
			p.BootGap = fsmap.Extent{Off: off, Len: n}
		} else {
			p.Warnings = append(p.Warnings, "the gap before the first partition is not copied: the target's first partition starts earlier")
		}
	}
	if err := p.fixBoot(ctx); err != nil {
		return err
	}
	if o.NewIDs {
		p.planNewFSIDs()
	}
	return nil
}

func (p *Plan) planWholeVolume(ctx context.Context) error {
	o := p.Opts
	it, err := p.item(ctx, 0, 0, p.src.Size(), 0, 0, o.Target.Size)
	if err != nil {
		return err
	}
	if o.Layout == ptable.LayoutKeep {
		it.GrowTo = 0
	}
	p.Items = []Item{it}
	return nil
}

func (p *Plan) planPartition(ctx context.Context) error {
	o := p.Opts
	sp, ok := p.SrcTable.Find(o.Partition)
	if !ok {
		return fmt.Errorf("the source %s has no partition %d (it has: %s)", o.Source.Path, o.Partition, partitionList(p.SrcTable))
	}
	dstOff, dstSize := int64(0), o.Target.Size
	toNum := 0
	if o.ToPartition != 0 {
		tgt, err := blockdev.Open(ctx, o.Target.Path, blockdev.Options{Mode: blockdev.ReadOnly})
		if err != nil {
			return fmt.Errorf("read the target's partition table: %w", err)
		}
		tt, err := ptable.Read(ctx, tgt, tgt.Size(), tgt.SectorSize())
		tgt.Close()
		if err != nil {
			return fmt.Errorf("read the partition table of %s: %w", o.Target.Path, err)
		}
		tp, ok := tt.Find(o.ToPartition)
		if !ok {
			return fmt.Errorf("the target %s has no partition %d (it has: %s)", o.Target.Path, o.ToPartition, partitionList(tt))
		}
		dstOff, dstSize, toNum = tp.Start, tp.Size, tp.Number
		if so, err := statObject(o.Source.Path); err == nil && o.SourceDev == nil {
			to, _ := statObject(o.Target.Path)
			if same, _ := (topology{sysRoot: o.SysRoot}).overlap(to, so); same {
				if sp.Number == tp.Number || (dstOff < sp.Start+sp.Size && sp.Start < dstOff+dstSize) {
					return refuse("partition %d and partition %d of %s overlap: the source is never written", sp.Number, tp.Number, o.Target.Path)
				}
			}
		}
	}
	it, err := p.item(ctx, sp.Number, sp.Start, sp.Size, toNum, dstOff, dstSize)
	if err != nil {
		return partitionError(sp.Number, err)
	}
	if o.Layout == ptable.LayoutKeep {
		it.GrowTo = 0
	}
	p.Items = []Item{it}
	return nil
}

// detected is a file system found on the source and its used-block map.
type detected struct {
	fs  fsmap.FS
	ext []fsmap.Extent
}

// item maps one source volume and decides how it lands on the target.
func (p *Plan) item(ctx context.Context, num int, srcOff, srcSize int64, toNum int, dstOff, dstSize int64) (Item, error) {
	fs, ext, err := p.detect(ctx, srcOff, srcSize)
	if err != nil {
		return Item{}, err
	}
	return p.itemFrom(ctx, detected{fs: fs, ext: ext}, num, srcOff, srcSize, toNum, dstOff, dstSize)
}

// itemFrom decides how a mapped source volume lands on the target,
// shrinking its file system on a copy-on-write view when the target
// partition is smaller than the file system.
func (p *Plan) itemFrom(ctx context.Context, d detected, num int, srcOff, srcSize int64, toNum int, dstOff, dstSize int64) (Item, error) {
	fs, ext := d.fs, d.ext
	info := fs.Info()
	info.Used = fsmap.Total(ext)
	it := Item{Number: num, ToNumber: toNum, SrcOff: srcOff, SrcSize: srcSize, DstOff: dstOff, DstSize: dstSize, FS: info, Extents: ext, Copy: info.Used}
	need := srcSize
	if !info.Raw && info.Size > 0 {
		need = info.Size
		if len(ext) > 0 {
			need = max(need, ext[len(ext)-1].End())
		}
	}
	if dstSize < need {
		if p.Opts.Partition != 0 || info.Raw {
			return Item{}, refuse("the target for %s holds %s but its %s file system needs %s", volumeName(num), sizeWords(dstSize), info.Type, sizeWords(need))
		}
		shrunk, err := p.shrink(ctx, num, srcOff, srcSize, info, ext, dstSize)
		if err != nil {
			return Item{}, err
		}
		if dp, ok := p.dstPartition(toNum); ok && info.Type == "ntfs" {
			// NTFS keeps its backup boot sector in the partition's last
			// sector (Windows) or in the sector after the volume
			// (ntfs-3g): the two agree only when the partition ends
			// right after the volume, which ntfsresize rounded down to
			// whole clusters.
			ss := int64(p.DstTable.SectorSize)
			if n := (shrunk.fs.Info().Size + ss - 1) / ss * ss; n < dp.Size {
				dp.Size, dstSize = n, n
			}
		}
		return p.itemFrom(ctx, shrunk, num, srcOff, srcSize, toNum, dstOff, dstSize)
	}
	if dstSize < srcSize && len(ext) > 0 {
		// The file system fits, but nothing past the target may be copied.
		it.Extents = fsmap.Normalize(ext, dstSize)
		it.Copy = fsmap.Total(it.Extents)
	}
	if ts := targetSectorSize(p.Opts.Target, p.src); ts > p.src.SectorSize() {
		fss, err := fsSectorSize(info, blockdev.Sub(p.src, srcOff, srcSize))
		if err != nil {
			return Item{}, err
		}
		if fss != 0 && fss < ts {
			return Item{}, refuse("the %s file system of %s uses %d-byte sectors, which a disk with %d-byte sectors cannot hold (it would not mount)", info.Type, volumeName(num), fss, ts)
		}
	}
	bare := ""
	if sp, ok := p.SrcTable.Find(num); ok && num != 0 && info.Raw {
		// These hold no file system by design: copied sector by sector,
		// with nothing to warn about.
		switch strings.ToUpper(sp.Type) {
		case ptable.TypeBIOSBoot:
			bare = "GRUB's core image"
		case ptable.TypeMicrosoftReserved:
			bare = "Microsoft reserved"
		}
	}
	if bare != "" {
		info.Warnings = nil
	}
	switch {
	case bare != "":
		it.Action = "copy every sector (" + bare + ")"
	case info.Raw:
		it.Action = "copy every sector (" + info.Type + ")"
	case info.Type == "swap":
		it.Action = "copy the swap header (label and UUID kept)"
	default:
		it.Action = "copy used blocks"
	}
	if from := p.read.shrunkFrom(srcOff); from > 0 {
		it.ShrunkFrom = from
		it.Action = fmt.Sprintf("shrink %s from %s to %s on a copy-on-write view of the source (%s rewritten there), then %s", info.Type, disks.HumanBytes(from), disks.HumanBytes(info.Size), disks.HumanBytes(p.read.written(srcOff)), it.Action)
	}
	for _, w := range info.Warnings {
		p.Warnings = append(p.Warnings, fmt.Sprintf("%s: %s", volumeName(num), w))
	}
	const slack = 1 << 20
	if !info.Raw && info.Size > 0 && dstSize > info.Size+slack {
		if info.NoGrow != "" {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s: the %s file system is not grown: %s", volumeName(num), info.Type, info.NoGrow))
		} else if g := probe.Grower(info.Type); g != nil {
			if p.Opts.Target.IsFile && os.Geteuid() != 0 {
				p.Warnings = append(p.Warnings, fmt.Sprintf("%s: the %s file system is not grown: growing one inside an image file needs root (for a loop device)", volumeName(num), info.Type))
			} else {
				it.GrowTo = dstSize
				it.grower = g
				it.Action += fmt.Sprintf(", grow %s to %s", info.Type, sizeWords(dstSize))
			}
		} else {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s: a %s file system cannot be grown; it keeps its size of %s in a %s partition", volumeName(num), info.Type, sizeWords(info.Size), sizeWords(dstSize)))
		}
	}
	return it, nil
}

// dstPartition returns the planned target partition numbered n.
func (p *Plan) dstPartition(n int) (*ptable.Partition, bool) {
	if p.DstTable == nil || n == 0 {
		return nil, false
	}
	return p.DstTable.Find(n)
}

// partitionError names the partition in an error, unless it is a refusal,
// whose message names it already.
func partitionError(num int, err error) error {
	var ref *RefusedError
	if errors.As(err, &ref) {
		return err
	}
	return fmt.Errorf("partition %d: %w", num, err)
}

func volumeName(num int) string {
	if num == 0 {
		return "the volume"
	}
	return fmt.Sprintf("partition %d", num)
}

func partitionList(t *ptable.Table) string {
	if len(t.Partitions) == 0 {
		return "no partitions"
	}
	var s []string
	for _, p := range t.Partitions {
		s = append(s, fmt.Sprint(p.Number))
	}
	return strings.Join(s, ", ")
}

func targetSectorSize(t *disks.Disk, src blockdev.Device) int {
	if t.LogicalSectorSize > 0 && !t.IsFile {
		return t.LogicalSectorSize
	}
	// An image file has no sector size of its own: it takes the source's.
	return src.SectorSize()
}

func sizeWords(n int64) string {
	return fmt.Sprintf("%s (%d bytes)", disks.HumanBytes(n), n)
}

func parentDir(path string) string {
	i := strings.LastIndex(path, "/")
	switch {
	case i > 0:
		return path[:i]
	case i == 0:
		return "/"
	}
	return "."
}

// statDirObject describes a directory as a file on its file system, so the
// disks under it can be found.
func statDirObject(dir string) (object, error) {
	st, err := statRaw(dir)
	if err != nil {
		return object{}, err
	}
	return object{path: dir, dev: st.dev, ino: st.ino}, nil
}

// Describe writes the plan in words: what is read, what is overwritten,
// and what each volume becomes.
func (p *Plan) Describe(w io.Writer) {
	src := p.Opts.SourceLabel
	if src == "" {
		src = p.Source.Describe()
	}
	fmt.Fprintf(w, "Source: %s\n", src)
	fmt.Fprintf(w, "Target: %s\n", p.Target.Describe())
	switch {
	case p.Opts.ToPartition != 0:
		fmt.Fprintf(w, "        partition %d of the target is overwritten; its other partitions are kept\n", p.Opts.ToPartition)
	case p.Opts.Partition != 0:
		fmt.Fprintf(w, "        the whole target is overwritten by partition %d of the source\n", p.Opts.Partition)
	case p.System != nil:
		fmt.Fprintf(w, "        EVERYTHING on the target is overwritten by the partitions the installed system needs, laid out from the start\n")
	default:
		fmt.Fprintf(w, "        EVERYTHING on the target is overwritten\n")
	}
	if p.DstTable != nil {
		fmt.Fprintf(w, "Table:  %s, %d-byte sectors, layout %s\n", p.DstTable.Kind, p.DstTable.SectorSize, p.Opts.Layout)
	}
	fmt.Fprintf(w, "\n  %-4s %-10s %-12s %-22s %-22s %-10s %s\n", "part", "fs", "label", "from (start, size)", "to (start, size)", "copy", "action")
	for _, it := range p.Items {
		num := "-"
		if it.Number != 0 {
			num = fmt.Sprint(it.Number)
			if it.ToNumber != 0 && it.ToNumber != it.Number {
				num += "→" + fmt.Sprint(it.ToNumber)
			}
		}
		fmt.Fprintf(w, "  %-4s %-10s %-12s %-22s %-22s %-10s %s\n", num, it.FS.Type, trunc(it.FS.Label, 12),
			disks.HumanBytes(it.SrcOff)+", "+disks.HumanBytes(it.SrcSize),
			disks.HumanBytes(it.DstOff)+", "+disks.HumanBytes(it.DstSize),
			disks.HumanBytes(it.Copy), it.Action)
	}
	if p.BootGap.Len > 0 {
		fmt.Fprintf(w, "  boot area before the first partition: %s copied verbatim\n", disks.HumanBytes(p.BootGap.Len))
	}
	if p.System != nil {
		fmt.Fprintln(w)
		p.System.Describe(w)
	}
	if len(p.Fixes) > 0 {
		fmt.Fprintf(w, "\nFor the copy to boot:\n")
		for _, f := range p.Fixes {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
	fmt.Fprintf(w, "\nTo copy: %s\n", sizeWords(p.Total))
	for _, wn := range p.Warnings {
		fmt.Fprintf(w, "Warning: %s\n", wn)
	}
}

func trunc(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
