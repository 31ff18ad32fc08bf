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

// disksUnder returns every whole disk whose bytes device d is made of:
// itself, the disks under a device-mapper or md device (their slaves), and
// the disk holding a loop device's backing file. files collects the loop
// backing files met on the way.
func (t topology) disksUnder(d uint64, files *[]string, depth int) []uint64 {
	if depth > 16 {
		return nil
	}
	dir := t.devDir(d)
	out := []uint64{t.whole(d)}
	if ents, err := os.ReadDir(filepath.Join(dir, "slaves")); err == nil {
		for _, e := range ents {
			if s, ok := readDev(filepath.Join(dir, "slaves", e.Name(), "dev")); ok {
				out = append(out, t.disksUnder(s, files, depth+1)...)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "loop/backing_file")); err == nil {
		bf := strings.TrimSpace(string(b))
		if files != nil {
			*files = append(*files, bf)
		}
		var st unix.Stat_t
		if unix.Stat(bf, &st) == nil {
			if st.Mode&unix.S_IFMT == unix.S_IFBLK {
				out = append(out, t.disksUnder(st.Rdev, files, depth+1)...)
			} else {
				out = append(out, t.disksUnder(st.Dev, files, depth+1)...)
			}
		}
	}
	return out
}

// reaches reports whether writing object a can change the bytes of object b
// or the other way round, and says how.
func (t topology) overlap(target, other object) (bool, string) {
	switch {
	case target.isBlock && other.isBlock:
		tw := t.disksUnder(target.rdev, nil, 0)
		ow := t.disksUnder(other.rdev, nil, 0)
		for _, a := range tw {
			for _, b := range ow {
				if a == b {
					if a == target.rdev && a == other.rdev {
						return true, "it is the same device"
					}
					return true, fmt.Sprintf("both are on the disk %s", t.name(a))
				}
			}
		}
	case target.isBlock && !other.isBlock:
		// A file on a file system that lives on the target device.
		for _, a := range t.disksUnder(target.rdev, nil, 0) {
			for _, b := range t.disksUnder(other.dev, nil, 0) {
				if a == b {
					return true, fmt.Sprintf("%s is stored on the disk %s", other.path, t.name(a))
				}
			}
		}
		var files []string
		t.disksUnder(target.rdev, &files, 0)
		for _, f := range files {
			if fo, err := statObject(f); err == nil && !fo.isBlock && fo.dev == other.dev && fo.ino == other.ino {
				return true, fmt.Sprintf("%s is the backing file of %s", other.path, target.path)
			}
		}
	case !target.isBlock && other.isBlock:
		for _, a := range t.disksUnder(target.dev, nil, 0) {
			for _, b := range t.disksUnder(other.rdev, nil, 0) {
				if a == b {
					return true, fmt.Sprintf("%s is stored on the disk %s", target.path, t.name(a))
				}
			}
		}
		var files []string
		t.disksUnder(other.rdev, &files, 0)
		for _, f := range files {
			if fo, err := statObject(f); err == nil && !fo.isBlock && fo.dev == target.dev && fo.ino == target.ino {
				return true, fmt.Sprintf("%s is the backing file of %s", target.path, other.path)
			}
		}
	default:
		if target.dev == other.dev && target.ino == other.ino {
			return true, "it is the same file"
		}
	}
	return false, ""
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
