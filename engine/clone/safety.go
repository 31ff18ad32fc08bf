package clone

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// object is what a path names, for deciding whether two paths can reach the
// same bytes: a block device (by device number) or a regular file (by the
// device of its file system and its inode).
type object struct {
	path    string
	isBlock bool
	rdev    uint64 // block devices
	dev     uint64 // regular files: the file system's device
	ino     uint64
}

func statObject(path string) (object, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return object{}, fmt.Errorf("stat %s: %w", path, err)
	}
	o := object{path: path}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		o.isBlock = true
		o.rdev = st.Rdev
	case unix.S_IFREG:
		o.dev = st.Dev
		o.ino = st.Ino
	default:
		return o, fmt.Errorf("%s is neither a block device nor a regular file", path)
	}
	return o, nil
}

// topology answers questions about block devices from sysfs.
type topology struct {
	sysRoot string
}

func devString(d uint64) string { return fmt.Sprintf("%d:%d", unix.Major(d), unix.Minor(d)) }

func (t topology) devDir(d uint64) string {
	return filepath.Join(t.sysRoot, "dev/block", devString(d))
}

// whole returns the device number of the disk that holds d: d itself, or
// its parent when d is a partition.
func (t topology) whole(d uint64) uint64 {
	dir := t.devDir(d)
	if _, err := os.Stat(filepath.Join(dir, "partition")); err != nil {
		return d
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return d
	}
	if p, ok := readDev(filepath.Join(filepath.Dir(real), "dev")); ok {
		return p
	}
	return d
}

func readDev(path string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	var maj, min uint32
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &maj, &min); err != nil {
		return 0, false
	}
	return unix.Mkdev(maj, min), true
}

// atom is a unit of storage that objects are made of: a whole disk, or a
// regular file (which lives on the disks in within).
type atom struct {
	disk   uint64 // a whole disk's device number, when file is false
	file   bool
	dev    uint64
	ino    uint64
	path   string
	within []uint64 // the disks under a file's file system
}

// atoms returns what the bytes of o are stored on: a partition is its
// disk; a device-mapper or md device is the disks under it (its slaves); a
// loop device is its backing file or device; a file is itself, within the
// disks under its file system.
func (t topology) atoms(o object, depth int) []atom {
	if depth > 16 {
		return nil
	}
	if !o.isBlock {
		return []atom{{file: true, dev: o.dev, ino: o.ino, path: o.path, within: t.disksOf(o.dev, depth+1)}}
	}
	return t.blockAtoms(o.rdev, depth)
}

func (t topology) blockAtoms(d uint64, depth int) []atom {
	if depth > 16 {
		return nil
	}
	dir := t.devDir(d)
	if b, err := os.ReadFile(filepath.Join(dir, "loop/backing_file")); err == nil {
		bf := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
		if bo, err := statObject(bf); err == nil {
			return t.atoms(bo, depth+1)
		}
	}
	var out []atom
	if ents, err := os.ReadDir(filepath.Join(dir, "slaves")); err == nil {
		for _, e := range ents {
			if s, ok := readDev(filepath.Join(dir, "slaves", e.Name(), "dev")); ok {
				out = append(out, t.blockAtoms(s, depth+1)...)
			}
		}
	}
	if len(out) == 0 {
		out = []atom{{disk: t.whole(d)}}
	}
	return out
}

// disksOf returns the whole disks under block device d (a file system's
// device): through device-mapper, md and loop devices.
func (t topology) disksOf(d uint64, depth int) []uint64 {
	var out []uint64
	for _, a := range t.blockAtoms(d, depth) {
		if a.file {
			out = append(out, a.within...)
		} else {
			out = append(out, a.disk)
		}
	}
	return out
}

// overlap reports whether writing target can change the bytes of other,
// and says how.
func (t topology) overlap(target, other object) (bool, string) {
	ta, oa := t.atoms(target, 0), t.atoms(other, 0)
	for _, a := range ta {
		for _, b := range oa {
			switch {
			case !a.file && !b.file && a.disk == b.disk:
				if target.isBlock && other.isBlock && target.rdev == other.rdev {
					return true, "it is the same device"
				}
				return true, fmt.Sprintf("both are on the disk %s", t.name(a.disk))
			case a.file && b.file && a.dev == b.dev && a.ino == b.ino:
				if !target.isBlock && !other.isBlock {
					return true, "it is the same file"
				}
				return true, fmt.Sprintf("both are stored in the file %s", a.path)
			case a.file && !b.file && contains(a.within, b.disk):
				return true, fmt.Sprintf("%s is stored on the disk %s", a.path, t.name(b.disk))
			case !a.file && b.file && contains(b.within, a.disk):
				return true, fmt.Sprintf("%s is stored on the disk %s", b.path, t.name(a.disk))
			}
		}
	}
	return false, ""
}

func contains(list []uint64, v uint64) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// name returns a device's kernel name for messages, or its number.
func (t topology) name(d uint64) string {
	if real, err := filepath.EvalSymlinks(t.devDir(d)); err == nil {
		return "/dev/" + filepath.Base(real)
	}
	return devString(d)
}

type rawStat struct{ dev, ino uint64 }

func statRaw(path string) (rawStat, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return rawStat{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return rawStat{dev: st.Dev, ino: st.Ino}, nil
}
