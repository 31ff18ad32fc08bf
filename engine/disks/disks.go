// Package disks discovers the disks of a machine and what is on them: identity
// from sysfs (model, serial, WWN, size, sector sizes, transport), the
// partition table, the file system of each partition, and whether anything
// is using them (mounts, swap, device-mapper or md holders, loop devices).
//
// The sysfs, proc and dev roots are options so tests can point them at a
// fake tree; disk-image files are described the same way as block devices.
package disks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/lifeboat/lifeboat/engine/blockdev"
	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/engine/fsmap/probe"
	"github.com/lifeboat/lifeboat/engine/ptable"
)

// Disk is one whole disk (a block device) or a disk-image file.
type Disk struct {
	// Path is the device node (/dev/sda) or the image file's path.
	Path string `json:"path"`
	// Name is the kernel name (sda, nvme0n1, vda, loop0); empty for files.
	Name string `json:"name,omitempty"`
	// IsFile is true for a disk-image file.
	IsFile bool `json:"is_file"`
	// Model, Vendor, Serial and WWN identify the drive as sysfs reports
	// it; empty when unknown.
	Model  string `json:"model,omitempty"`
	Vendor string `json:"vendor,omitempty"`
	Serial string `json:"serial,omitempty"`
	WWN    string `json:"wwn,omitempty"`
	// Size is the disk's size in bytes.
	Size               int64 `json:"size"`
	LogicalSectorSize  int   `json:"logical_sector_size"`
	PhysicalSectorSize int   `json:"physical_sector_size"`
	Rotational         bool  `json:"rotational"`
	Removable          bool  `json:"removable"`
	ReadOnly           bool  `json:"read_only"`
	// Transport is how the disk is attached: nvme, sata, scsi, usb, virtio,
	// mmc, loop, file, or "" when sysfs does not tell.
	Transport string `json:"transport,omitempty"`
	// Devno is the device number as "major:minor".
	Devno string `json:"devno,omitempty"`
	// BackingFile is the file behind a loop device.
	BackingFile string `json:"backing_file,omitempty"`
	// Table is the partition table kind: gpt, mbr, none, or error (see
	// TableError) when the disk could not be read.
	Table      string `json:"table"`
	TableError string `json:"table_error,omitempty"`
	// TableWarnings are conditions found in the partition table (a damaged
	// primary GPT, a hybrid MBR).
	TableWarnings []string    `json:"table_warnings,omitempty"`
	DiskGUID      string      `json:"disk_guid,omitempty"`
	Partitions    []Partition `json:"partitions"`
	// Mounts are the mount points of the whole device.
	Mounts []string `json:"mounts,omitempty"`
	// Swap is true when the whole device is active swap.
	Swap bool `json:"swap,omitempty"`
	// Holders are the kernel devices stacked on the whole disk (dm-0, md0).
	Holders []string `json:"holders,omitempty"`
	// Loops are the loop devices whose backing file is this image file.
	Loops []Loop `json:"loops,omitempty"`
}

// Partition is one partition of a Disk, with the file system found on it.
// A disk without a partition table whose whole content is a file system is
// shown as one partition numbered 0 spanning the disk.
type Partition struct {
	Number int `json:"number"`
	// Path is the partition's device node; empty for image files or when
	// the kernel has no node for it.
	Path string `json:"path,omitempty"`
	// Start and Size are in bytes from the start of the disk.
	Start    int64  `json:"start"`
	Size     int64  `json:"size"`
	Type     string `json:"type,omitempty"`
	TypeName string `json:"type_name,omitempty"`
	Name     string `json:"name,omitempty"`
	GUID     string `json:"guid,omitempty"`
	Bootable bool   `json:"bootable,omitempty"`
	Logical  bool   `json:"logical,omitempty"`
	// FS is the detected content type (ext4, vfat, ntfs, swap, luks,
	// unknown...); empty when it could not be read.
	FS        string `json:"fs,omitempty"`
	FSVariant string `json:"fs_variant,omitempty"`
	Label     string `json:"label,omitempty"`
	UUID      string `json:"uuid,omitempty"`
	// Used is the number of bytes the used-block map covers; -1 when it was
	// not computed (Options.Usage off, raw content, or an error).
	Used int64 `json:"used"`
	// Raw is true when the content has no used-block map and is copied
	// sector by sector.
	Raw        bool     `json:"raw,omitempty"`
	FSWarnings []string `json:"fs_warnings,omitempty"`
	Mounts     []string `json:"mounts,omitempty"`
	Swap       bool     `json:"swap,omitempty"`
	Holders    []string `json:"holders,omitempty"`
}

// Loop is a loop device attached to an image file.
type Loop struct {
	Path string `json:"path"`
	// Offset and SizeLimit are the loop's window into the file (0 = whole).
	Offset    int64    `json:"offset"`
	SizeLimit int64    `json:"size_limit,omitempty"`
	Mounts    []string `json:"mounts,omitempty"`
	Swap      bool     `json:"swap,omitempty"`
	Holders   []string `json:"holders,omitempty"`
	// Parts are the loop's own partitions (loop0p1) that are in use,
	// described as "loop0p1 mounted on /mnt".
	Parts []string `json:"parts,omitempty"`
}

// Options says where to look and how much work to do.
type Options struct {
	// SysRoot is the sysfs mount point, "/sys" by default.
	SysRoot string
	// ProcRoot is the procfs mount point, "/proc" by default.
	ProcRoot string
	// DevRoot is the device-node directory, "/dev" by default.
	DevRoot string
	// Files are disk-image files to describe after the block devices.
	Files []string
	// Usage computes each partition's used bytes, which reads allocation
	// bitmaps and may take a while on large disks.
	Usage bool
}

func (o Options) withDefaults() Options {
	if o.SysRoot == "" {
		o.SysRoot = "/sys"
	}
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if o.DevRoot == "" {
		o.DevRoot = "/dev"
	}
	return o
}

// maxBlockEntries bounds how many sysfs entries are looked at, so a broken
// or hostile tree cannot make a scan run away.
const maxBlockEntries = 4096

// Scan lists every disk under SysRoot/block, sorted by name, followed by the
// image files in opt.Files. RAM disks, zram and unattached loop devices are
// left out. A disk that cannot be opened is still listed with what sysfs
// says, Table "error" and the reason in TableError.
func Scan(ctx context.Context, opt Options) ([]Disk, error) {
	opt = opt.withDefaults()
	sc, err := newScanner(opt)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(opt.SysRoot, "block"))
	if err != nil {
		return nil, fmt.Errorf("list block devices in %s: %w", opt.SysRoot, err)
	}
	if len(ents) > maxBlockEntries {
		ents = ents[:maxBlockEntries]
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") {
			continue
		}
		if fileExists(filepath.Join(opt.SysRoot, "block", n, "partition")) {
			continue
		}
		if strings.HasPrefix(n, "loop") && readAttr(filepath.Join(opt.SysRoot, "block", n, "loop", "backing_file")) == "" {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]Disk, 0, len(names)+len(opt.Files))
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out = append(out, *sc.blockDisk(ctx, n))
	}
	for _, f := range opt.Files {
		d, err := sc.fileDisk(ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, *d)
	}
	return out, nil
}

// Inspect describes one disk: a block device (found in sysfs by its device
// number) or an image file.
func Inspect(ctx context.Context, path string, opt Options) (*Disk, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	opt = opt.withDefaults()
	sc, err := newScanner(opt)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("inspect disk %s: %w", path, err)
	}
	switch {
	case st.Mode().IsRegular():
		return sc.fileDisk(ctx, path)
	case st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
		devno := statDevno(st)
		link, err := os.Readlink(filepath.Join(opt.SysRoot, "dev", "block", devno))
		if err != nil {
			return nil, fmt.Errorf("inspect disk %s: find device %s in sysfs: %w", path, devno, err)
		}
		name := filepath.Base(link)
		if !fileExists(filepath.Join(opt.SysRoot, "block", name)) {
			return nil, fmt.Errorf("inspect disk %s: %s is a partition, not a whole disk", path, name)
		}
		d := sc.blockDisk(ctx, name)
		d.Path = path
		return d, nil
	default:
		return nil, fmt.Errorf("inspect disk %s: not a block device or regular file", path)
	}
}

// scanner holds what is read once per scan: mounts, swaps and loop devices.
type scanner struct {
	opt Options
	// devReal is DevRoot with symlinks resolved, to compare resolved
	// node paths against.
	devReal string
	mounts  []mountEntry
	swaps   []swapEntry
	loops   []loopInfo
}

type loopInfo struct {
	name      string
	backing   string
	offset    int64
	sizeLimit int64
}

func newScanner(opt Options) (*scanner, error) {
	sc := &scanner{opt: opt, devReal: opt.DevRoot}
	if r, err := filepath.EvalSymlinks(opt.DevRoot); err == nil {
		sc.devReal = r
	}
	mi, err := os.ReadFile(filepath.Join(opt.ProcRoot, "self", "mountinfo"))
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	sc.mounts = parseMountinfo(mi)
	sw, err := os.ReadFile(filepath.Join(opt.ProcRoot, "swaps"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read swap table: %w", err)
	}
	for _, p := range parseSwaps(sw) {
		sc.swaps = append(sc.swaps, sc.swapEntry(p))
	}
	ents, _ := os.ReadDir(filepath.Join(opt.SysRoot, "block"))
	if len(ents) > maxBlockEntries {
		ents = ents[:maxBlockEntries]
	}
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, "loop") {
			continue
		}
		dir := filepath.Join(opt.SysRoot, "block", n, "loop")
		b := readAttr(filepath.Join(dir, "backing_file"))
		if b == "" {
			continue
		}
		sc.loops = append(sc.loops, loopInfo{
			name:      n,
			backing:   b,
			offset:    readInt(filepath.Join(dir, "offset")),
			sizeLimit: readInt(filepath.Join(dir, "sizelimit")),
		})
	}
	return sc, nil
}

// devPath maps a kernel name to its node under DevRoot.
func (sc *scanner) devPath(name string) string { return filepath.Join(sc.opt.DevRoot, name) }

// nodeName turns a path such as /dev/sda1 or /dev/disk/by-uuid/X into a
// kernel name (sda1), following symlinks inside DevRoot; "" when the path
// is not a device node path.
func (sc *scanner) nodeName(p string) string {
	const dev = "/dev/"
	if !strings.HasPrefix(p, dev) {
		return ""
	}
	rel := filepath.Clean(strings.TrimPrefix(p, dev))
	if strings.HasPrefix(rel, "..") {
		return ""
	}
	// Follow links such as /dev/disk/by-uuid/X or /dev/mapper/X to the
	// kernel's node; a dangling link keeps its own name.
	if r, err := filepath.EvalSymlinks(filepath.Join(sc.devReal, rel)); err == nil {
		if rr, err := filepath.Rel(sc.devReal, r); err == nil && !strings.HasPrefix(rr, "..") {
			rel = rr
		}
	}
	return rel
}

// blockDisk describes the sysfs disk name.
func (sc *scanner) blockDisk(ctx context.Context, name string) *Disk {
	sys := filepath.Join(sc.opt.SysRoot, "block", name)
	d := &Disk{
		Path:               sc.devPath(name),
		Name:               name,
		Size:               readInt(filepath.Join(sys, "size")) * 512,
		LogicalSectorSize:  int(readInt(filepath.Join(sys, "queue", "logical_block_size"))),
		PhysicalSectorSize: int(readInt(filepath.Join(sys, "queue", "physical_block_size"))),
		Rotational:         readAttr(filepath.Join(sys, "queue", "rotational")) == "1",
		Removable:          readAttr(filepath.Join(sys, "removable")) == "1",
		ReadOnly:           readAttr(filepath.Join(sys, "ro")) == "1",
		Devno:              readAttr(filepath.Join(sys, "dev")),
		BackingFile:        readAttr(filepath.Join(sys, "loop", "backing_file")),
		Holders:            listDir(filepath.Join(sys, "holders")),
	}
	if d.LogicalSectorSize <= 0 {
		d.LogicalSectorSize = 512
	}
	if d.PhysicalSectorSize < d.LogicalSectorSize {
		d.PhysicalSectorSize = d.LogicalSectorSize
	}
	if link, err := filepath.EvalSymlinks(sys); err == nil {
		d.Transport = transportOf(name, link)
	}
	d.Model, d.Vendor, d.Serial, d.WWN = identity(sys, d.Transport)
	d.Mounts, d.Swap = sc.usage(d.Devno, name)

	sysParts := sysPartitions(sys)
	sc.readContent(ctx, d, d.Path)
	if d.Table == "error" {
		// The disk could not be read: show the kernel's view of it.
		for _, sp := range sysParts {
			d.Partitions = append(d.Partitions, Partition{Number: sp.number, Start: sp.start, Size: sp.size, Used: -1})
		}
	}
	for i := range d.Partitions {
		p := &d.Partitions[i]
		if p.Number == 0 {
			// The whole disk holds a file system: its users are the disk's.
			p.Path = d.Path
			p.Mounts, p.Swap, p.Holders = d.Mounts, d.Swap, d.Holders
			continue
		}
		for _, sp := range sysParts {
			if sp.start == p.Start && (sp.number == p.Number || sp.number == 0) {
				if fileExists(sc.devPath(sp.name)) {
					p.Path = sc.devPath(sp.name)
				}
				p.Mounts, p.Swap = sc.usage(sp.devno, sp.name)
				p.Holders = sp.holders
				break
			}
		}
	}
	return d
}

// fileDisk describes an image file, with the loop devices attached to it.
func (sc *scanner) fileDisk(ctx context.Context, path string) (*Disk, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("inspect image file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("inspect image file %s: not a regular file", path)
	}
	d := &Disk{
		Path:               path,
		IsFile:             true,
		Size:               st.Size(),
		LogicalSectorSize:  512,
		PhysicalSectorSize: 512,
		Transport:          "file",
		ReadOnly:           unix.Access(path, unix.W_OK) != nil,
	}
	sc.readContent(ctx, d, path)
	for _, l := range sc.loops {
		bst, err := os.Stat(strings.TrimSuffix(l.backing, " (deleted)"))
		if err != nil || !os.SameFile(st, bst) {
			continue
		}
		sys := filepath.Join(sc.opt.SysRoot, "block", l.name)
		devno := readAttr(filepath.Join(sys, "dev"))
		lp := Loop{Path: sc.devPath(l.name), Offset: l.offset, SizeLimit: l.sizeLimit, Holders: listDir(filepath.Join(sys, "holders"))}
		lp.Mounts, lp.Swap = sc.usage(devno, l.name)
		for _, sp := range sysPartitions(sys) {
			m, s := sc.usage(sp.devno, sp.name)
			for _, mp := range m {
				lp.Parts = append(lp.Parts, sp.name+" mounted on "+mp)
			}
			if s {
				lp.Parts = append(lp.Parts, sp.name+" active swap")
			}
			for _, h := range sp.holders {
				lp.Parts = append(lp.Parts, sp.name+" held by "+h)
			}
			// A partition-scanning loop over the whole image exposes the
			// image's partitions: give their users to them.
			if l.offset == 0 {
				for i := range d.Partitions {
					if d.Partitions[i].Start == sp.start {
						d.Partitions[i].Mounts = appendUnique(d.Partitions[i].Mounts, m...)
						d.Partitions[i].Swap = d.Partitions[i].Swap || s
						d.Partitions[i].Holders = appendUnique(d.Partitions[i].Holders, sp.holders...)
					}
				}
			}
		}
		// A loop with an offset is one partition of the image (losetup -o).
		for i := range d.Partitions {
			p := &d.Partitions[i]
			if p.Start == l.offset && (l.offset != 0 || p.Number == 0) {
				p.Mounts = appendUnique(p.Mounts, lp.Mounts...)
				p.Swap = p.Swap || lp.Swap
				p.Holders = appendUnique(p.Holders, lp.Holders...)
			}
		}
		if l.offset == 0 {
			d.Mounts = appendUnique(d.Mounts, lp.Mounts...)
			d.Swap = d.Swap || lp.Swap
		}
		d.Loops = append(d.Loops, lp)
	}
	return d, nil
}

// readContent opens path read-only, reads its partition table and probes
// each partition's file system. Failures are recorded on d, not returned:
// a disk that cannot be read is still worth listing.
func (sc *scanner) readContent(ctx context.Context, d *Disk, path string) {
	d.Partitions = []Partition{} // JSON shows [] rather than null
	dev, err := blockdev.Open(ctx, path, blockdev.Options{Mode: blockdev.ReadOnly, SectorSize: d.LogicalSectorSize})
	if err != nil {
		d.Table, d.TableError = "error", err.Error()
		return
	}
	defer dev.Close()
	if d.Size == 0 || d.IsFile {
		d.Size = dev.Size()
	}
	if d.IsFile {
		d.LogicalSectorSize, d.PhysicalSectorSize = dev.SectorSize(), dev.PhysicalSectorSize()
	}
	tab, err := ptable.Read(ctx, dev, dev.Size(), dev.SectorSize())
	if err != nil {
		d.Table, d.TableError = "error", fmt.Sprintf("read partition table of %s: %v", path, err)
		return
	}
	d.Table = string(tab.Kind)
	d.DiskGUID = tab.DiskGUID
	d.TableWarnings = tab.Warnings()
	if tab.Kind == ptable.None {
		// No table: the disk may hold a file system directly (a
		// "superfloppy" USB stick, a loop of a file-system image).
		p := Partition{Number: 0, Start: 0, Size: dev.Size(), Used: -1}
		sc.probe(ctx, &p, dev)
		if p.FS != "" && p.FS != "unknown" {
			d.Partitions = append(d.Partitions, p)
		}
		return
	}
	for _, tp := range tab.Partitions {
		if err := ctx.Err(); err != nil {
			d.TableError = err.Error()
			return
		}
		p := Partition{
			Number:   tp.Number,
			Start:    tp.Start,
			Size:     tp.Size,
			Type:     tp.Type,
			TypeName: tp.TypeName,
			Name:     tp.Name,
			GUID:     tp.GUID,
			Bootable: tp.Bootable,
			Logical:  tp.Logical,
			Used:     -1,
		}
		sc.probe(ctx, &p, dev)
		d.Partitions = append(d.Partitions, p)
	}
}

// probe detects the file system of partition p on dev and, when asked,
// its used bytes. Problems become warnings on the partition.
func (sc *scanner) probe(ctx context.Context, p *Partition, dev blockdev.Device) {
	if p.Start < 0 || p.Size <= 0 || p.Start > dev.Size() || p.Size > dev.Size()-p.Start {
		p.FSWarnings = append(p.FSWarnings, fmt.Sprintf("partition lies outside the disk (%d bytes at %d on a %d-byte disk)", p.Size, p.Start, dev.Size()))
		return
	}
	fs, err := probe.Detect(ctx, blockdev.Sub(dev, p.Start, p.Size), p.Size)
	if err != nil {
		p.FSWarnings = append(p.FSWarnings, fmt.Sprintf("detect file system: %v", err))
		return
	}
	info := fs.Info()
	p.FS, p.FSVariant, p.Label, p.UUID, p.Raw = info.Type, info.Variant, info.Label, info.UUID, info.Raw
	p.FSWarnings = append(p.FSWarnings, info.Warnings...)
	if !sc.opt.Usage || info.Raw {
		return
	}
	ext, err := fs.UsedExtents(ctx)
	if err != nil {
		p.FSWarnings = append(p.FSWarnings, fmt.Sprintf("read used-block map: %v", err))
		return
	}
	p.Used = fsmap.Total(ext)
}

// usage returns the mount points of the device devno/name and whether it
// is active swap.
func (sc *scanner) usage(devno, name string) (mounts []string, swap bool) {
	for _, m := range sc.mounts {
		if (devno != "" && m.devno == devno) || (name != "" && sc.nodeName(m.source) == name) {
			mounts = appendUnique(mounts, m.mountPoint)
		}
	}
	for _, s := range sc.swaps {
		if (devno != "" && s.devno == devno) || (name != "" && s.name == name) {
			swap = true
		}
	}
	return mounts, swap
}

type swapEntry struct {
	path, name, devno string
}

func (sc *scanner) swapEntry(p string) swapEntry {
	e := swapEntry{path: p, name: sc.nodeName(p)}
	local := p
	if e.name != "" {
		local = sc.devPath(e.name)
	}
	if st, err := os.Stat(local); err == nil && st.Mode()&os.ModeDevice != 0 {
		e.devno = statDevno(st)
	}
	return e
}

func statDevno(st os.FileInfo) string {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%d:%d", unix.Major(uint64(sys.Rdev)), unix.Minor(uint64(sys.Rdev)))
}

func appendUnique(list []string, add ...string) []string {
outer:
	for _, a := range add {
		for _, l := range list {
			if l == a {
				continue outer
			}
		}
		list = append(list, a)
	}
	return list
}
