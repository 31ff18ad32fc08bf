package clone

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/lifeboat/lifeboat/engine/blockdev"
	"github.com/lifeboat/lifeboat/engine/bootfix"
	"github.com/lifeboat/lifeboat/engine/cow"
	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/engine/fsmap/probe"
	"github.com/lifeboat/lifeboat/engine/ptable"
)

// patch replaces the source's bytes [off, off+size) with r's, for the copy.
type patch struct {
	off, size int64
	r         io.ReaderAt
	// shrunkFrom is the file system's size before it was shrunk on r.
	shrunkFrom int64
	close      func() error
}

// patched is the source as the copy reads it: volumes prepared on
// copy-on-write views (shrunk, given a fallback loader) and single sectors
// fixed in memory (GRUB's block list) read from there, the rest from the
// source. The source itself is never written.
type patched struct {
	blockdev.Device
	patches []patch // sorted, not overlapping
}

func (s *patched) add(pt patch) error {
	for _, q := range s.patches {
		if pt.off < q.off+q.size && q.off < pt.off+pt.size {
			return fmt.Errorf("plan clone: two prepared views overlap at bytes %d-%d", max(pt.off, q.off), min(pt.off+pt.size, q.off+q.size)-1)
		}
	}
	s.patches = append(s.patches, pt)
	sort.Slice(s.patches, func(i, j int) bool { return s.patches[i].off < s.patches[j].off })
	return nil
}

// replace swaps the view over [off, off+size) for another, closing the old.
func (s *patched) replace(pt patch) error {
	for i, q := range s.patches {
		if q.off == pt.off && q.size == pt.size {
			if q.close != nil {
				q.close()
			}
			s.patches[i] = pt
			return nil
		}
	}
	return s.add(pt)
}

func (s *patched) view(off, size int64) (io.ReaderAt, bool) {
	for _, q := range s.patches {
		if q.off == off && q.size == size {
			return q.r, true
		}
	}
	return nil, false
}

// written returns how many bytes the view over the volume at off holds
// in place of the source's.
func (s *patched) written(off int64) int64 {
	for _, q := range s.patches {
		if w, ok := q.r.(interface{ Written() int64 }); ok && q.off == off {
			return w.Written()
		}
	}
	return 0
}

func (s *patched) shrunkFrom(off int64) int64 {
	for _, q := range s.patches {
		if q.off == off {
			return q.shrunkFrom
		}
	}
	return 0
}

// ReadAt reads the source with the patches applied.
func (s *patched) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		want := p[done:]
		var src io.ReaderAt = s.Device
		base := int64(0)
		for _, q := range s.patches {
			if pos >= q.off && pos < q.off+q.size {
				src, base = q.r, q.off
				want = want[:min(int64(len(want)), q.off+q.size-pos)]
				break
			}
			if q.off > pos {
				want = want[:min(int64(len(want)), q.off-pos)]
				break
			}
		}
		n, err := src.ReadAt(want, pos-base)
		done += n
		if n < len(want) {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return done, err
		}
	}
	return done, nil
}

// WriteAt refuses: the source is never written.
func (s *patched) WriteAt([]byte, int64) (int, error) {
	return 0, errors.New("the source is never written")
}

func (s *patched) close() error {
	var err error
	for _, q := range s.patches {
		if q.close != nil {
			if e := q.close(); err == nil {
				err = e
			}
		}
	}
	s.patches = nil
	return err
}

// overlay returns a copy-on-write view of a source volume, taking an
// existing view's content when one was prepared already.
func (p *Plan) overlay(off, size int64) (*cow.Overlay, error) {
	var base io.ReaderAt = blockdev.Sub(p.src, off, size)
	if v, ok := p.read.view(off, size); ok {
		base = v
	}
	ov, err := cow.New(base, size, cow.Options{ScratchDir: p.Opts.ScratchDir})
	if err != nil {
		return nil, fmt.Errorf("copy-on-write view of bytes %d-%d of the source: %w", off, off+size-1, err)
	}
	return ov, nil
}

// isBootType reports whether a partition holds boot loaders or firmware
// data whose size users do not expect to change.
func isBootType(pt ptable.Partition) bool {
	switch strings.ToUpper(pt.Type) {
	case ptable.TypeEFISystem, ptable.TypeBIOSBoot, ptable.TypeMicrosoftReserved, ptable.TypeWindowsRecovery:
		return true
	}
	return pt.MBRType == 0xef || pt.MBRType == 0x27
}

// shrinkMargin is what a shrunk file system keeps free beyond its used
// blocks: room for its own bookkeeping while it shrinks, and for the
// system to run.
func shrinkMargin(used int64) int64 { return max(used/10, 32<<20) }

// minSizes returns, for the partitions whose file systems can shrink, the
// smallest partition that holds their used blocks with a margin.
func (p *Plan) minSizes(found map[int]detected) map[int]int64 {
	out := map[int]int64{}
	for _, sp := range p.SrcTable.Partitions {
		d, ok := found[sp.Number]
		if !ok || isBootType(sp) {
			continue
		}
		info := d.fs.Info()
		if info.Raw || info.NoGrow != "" {
			continue
		}
		if ok, _ := probe.CanShrink(info.Type); !ok {
			continue
		}
		used := fsmap.Total(d.ext)
		if m := used + shrinkMargin(used); m < sp.Size {
			out[sp.Number] = m
		}
	}
	return out
}

// tooSmall refuses a target that cannot hold the layout even with every
// file system that can shrink at its smallest, and says why each of the
// others cannot and what is left to do.
func (p *Plan) tooSmall(small *ptable.TooSmallError, found map[int]detected) error {
	o := p.Opts
	var why []string
	for _, sp := range p.SrcTable.Partitions {
		d, ok := found[sp.Number]
		if !ok {
			continue
		}
		info := d.fs.Info()
		switch {
		case isBootType(sp):
		case info.Raw && info.Type != "xfs" && info.Type != "btrfs":
			why = append(why, fmt.Sprintf("partition %d (%s, %s) is copied whole", sp.Number, info.Type, disks.HumanBytes(sp.Size)))
		case info.NoGrow != "":
			why = append(why, fmt.Sprintf("partition %d (%s, %s) must keep its size: %s", sp.Number, info.Type, disks.HumanBytes(sp.Size), info.NoGrow))
		default:
			if ok, reason := probe.CanShrink(info.Type); !ok {
				why = append(why, fmt.Sprintf("partition %d (%s, %s): %s", sp.Number, info.Type, disks.HumanBytes(sp.Size), reason))
			}
		}
	}
	msg := fmt.Sprintf("the target %s is too small: it holds %s but the layout needs %s with every file system that can shrink at its smallest", o.Target.Path, sizeWords(small.Have), sizeWords(small.Need))
	if len(why) > 0 {
		msg += "; " + strings.Join(why, "; ")
	}
	if o.System {
		msg += "; choose a larger target"
	} else {
		msg += "; choose --system (only the partitions the installed system needs) or a larger target"
	}
	return refuse("%s", msg)
}

// shrink shrinks a source file system on a copy-on-write view to fit
// dstSize bytes and maps it again there. The source is not written.
func (p *Plan) shrink(ctx context.Context, num int, srcOff, srcSize int64, info fsmap.Info, ext []fsmap.Extent, dstSize int64) (detected, error) {
	used := fsmap.Total(ext)
	if ok, reason := probe.CanShrink(info.Type); !ok {
		return detected{}, refuse("%s holds a %s file system of %s (%s used) but its partition on the target has %s: %s; choose --system or a larger target", volumeName(num), info.Type, sizeWords(info.Size), disks.HumanBytes(used), sizeWords(dstSize), reason)
	}
	if info.NoGrow != "" {
		return detected{}, refuse("%s must keep its size (%s) but its partition on the target has %s", volumeName(num), info.NoGrow, sizeWords(dstSize))
	}
	if used >= dstSize {
		return detected{}, refuse("%s holds %s of used data, more than the %s its partition on the target has", volumeName(num), sizeWords(used), sizeWords(dstSize))
	}
	ov, err := p.overlay(srcOff, srcSize)
	if err != nil {
		return detected{}, err
	}
	keep := false
	defer func() {
		if !keep {
			ov.Close()
		}
	}()
	newSize, err := probe.Shrinker(info.Type)(ctx, ov, dstSize)
	if err != nil {
		if errors.Is(err, fsmap.ErrTooSmall) {
			return detected{}, refuse("%s: its %s file system cannot shrink to the %s its partition on the target has: %v", volumeName(num), info.Type, sizeWords(dstSize), err)
		}
		return detected{}, fmt.Errorf("shrink the %s file system of %s on a copy-on-write view: %w", info.Type, volumeName(num), err)
	}
	if newSize > dstSize {
		return detected{}, fmt.Errorf("shrink the %s file system of %s: it ends at byte %d, past the %d bytes asked for", info.Type, volumeName(num), newSize, dstSize)
	}
	fs, err := probe.Detect(ctx, ov, dstSize)
	if err != nil {
		return detected{}, fmt.Errorf("the shrunk %s file system of %s: %w", info.Type, volumeName(num), err)
	}
	e, err := fs.UsedExtents(ctx)
	if err != nil {
		return detected{}, fmt.Errorf("map the shrunk %s file system of %s: %w", info.Type, volumeName(num), err)
	}
	if err := p.read.replace(patch{off: srcOff, size: srcSize, r: ov, shrunkFrom: info.Size, close: ov.Close}); err != nil {
		return detected{}, err
	}
	keep = true
	w := info.Warnings
	if info.Type == "ntfs" {
		// ntfsresize marks every volume it resizes for a check: say so
		// plainly instead of the detector's warning about a dirty volume.
		w = append(w, "ntfsresize marked the shrunk volume for a check, which Windows runs (chkdsk) at its next start")
	}
	return detected{fs: shrunkFS{FS: fs, warnings: w}, ext: fsmap.Normalize(e, dstSize)}, nil
}

// shrunkFS is a file system shrunk on a view; its warnings are the
// source's and what the shrinking did, not what the shrinker's own marks
// (a dirty flag) make the detector say.
type shrunkFS struct {
	fsmap.FS
	warnings []string
}

func (s shrunkFS) Info() fsmap.Info {
	i := s.FS.Info()
	i.Warnings = s.warnings
	return i
}

// fixBoot keeps the copy bootable: GRUB's BIOS pointers follow a BIOS boot
// partition that moved, and an EFI system partition gets the fallback
// loader when it lacks one.
func (p *Plan) fixBoot(ctx context.Context) error {
	src, dst := p.SrcTable, p.DstTable
	for _, sp := range src.Partitions {
		dp, ok := dst.Find(sp.Number)
		if !ok || !strings.EqualFold(sp.Type, ptable.TypeBIOSBoot) || dp.Start == sp.Start {
			continue
		}
		if !bootfix.IsGRUBBoot(dst.BootCode) {
			continue
		}
		if src.SectorSize != dst.SectorSize {
			p.Warnings = append(p.Warnings, "GRUB's BIOS boot code is not adapted to the target's sector size: the copy will not boot under BIOS")
			continue
		}
		ss := int64(src.SectorSize)
		first := make([]byte, 512)
		if err := fsmap.ReadFull(p.src, first, sp.Start, "first sector of the BIOS boot partition"); err != nil {
			return err
		}
		code := append([]byte(nil), dst.BootCode...)
		moved, err := bootfix.MoveGRUBCore(code, first, sp.Start/ss, dp.Start/ss, sp.Size/ss)
		if err != nil {
			p.Warnings = append(p.Warnings, "GRUB's BIOS boot code is not adapted to the moved BIOS boot partition: "+err.Error())
			continue
		}
		if moved {
			dst.BootCode = code
			if err := p.read.add(patch{off: sp.Start, size: 512, r: bytes.NewReader(first)}); err != nil {
				return err
			}
			p.Fixes = append(p.Fixes, fmt.Sprintf("GRUB's BIOS boot code and core image point at the BIOS boot partition's new place (sector %d, was %d)", dp.Start/ss, sp.Start/ss))
		}
	}
	for i, it := range p.Items {
		sp, ok := src.Find(it.Number)
		if !ok || it.FS.Type != "vfat" || !(strings.EqualFold(sp.Type, ptable.TypeEFISystem) || sp.MBRType == 0xef) {
			continue
		}
		if os.Geteuid() != 0 {
			p.Warnings = append(p.Warnings, fmt.Sprintf("partition %d: the fallback loader %s is not checked: that needs root (a copy-on-write view exposed through FUSE)", it.Number, bootfix.FallbackPath))
			continue
		}
		fixed, err := p.fallback(ctx, it)
		if err != nil {
			p.Warnings = append(p.Warnings, fmt.Sprintf("partition %d: %v", it.Number, err))
			continue
		}
		if fixed != nil {
			p.Items[i] = *fixed
		}
	}
	return nil
}

// fallback adds \EFI\BOOT\BOOTX64.EFI to a copy-on-write view of the ESP
// when it is missing, and maps the view again.
func (p *Plan) fallback(ctx context.Context, it Item) (*Item, error) {
	ov, err := p.overlay(it.SrcOff, it.SrcSize)
	if err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if !keep {
			ov.Close()
		}
	}()
	path, release, err := ov.DevicePath(ctx)
	if err != nil {
		return nil, fmt.Errorf("expose the EFI system partition as a file: %w", err)
	}
	did, err := bootfix.Fallback(ctx, path)
	if rerr := release(); err == nil && rerr != nil {
		err = rerr
	}
	if err != nil || did == "" {
		return nil, err
	}
	fs, err := probe.Detect(ctx, ov, it.SrcSize)
	if err != nil {
		return nil, fmt.Errorf("the EFI system partition with its fallback loader: %w", err)
	}
	ext, err := fs.UsedExtents(ctx)
	if err != nil {
		return nil, fmt.Errorf("map the EFI system partition with its fallback loader: %w", err)
	}
	from := p.read.shrunkFrom(it.SrcOff)
	if err := p.read.replace(patch{off: it.SrcOff, size: it.SrcSize, r: ov, shrunkFrom: from, close: ov.Close}); err != nil {
		return nil, err
	}
	keep = true
	// itemFrom adds the volume's warnings, which planning the item the
	// first time already gave.
	nw := len(p.Warnings)
	n, err := p.itemFrom(ctx, detected{fs: fs, ext: fsmap.Normalize(ext, it.SrcSize)}, it.Number, it.SrcOff, it.SrcSize, it.ToNumber, it.DstOff, it.DstSize)
	p.Warnings = p.Warnings[:nw]
	if err != nil {
		return nil, err
	}
	n.Action += "; " + did
	p.Fixes = append(p.Fixes, fmt.Sprintf("partition %d: %s", it.Number, did))
	return &n, nil
}
