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
// regular file, which itself lives in the atoms under its file system.
type atom struct {
	disk uint64 // a whole disk's device number, when file is false
	file bool
	dev  uint64
	ino  uint64
	path string
	in   []atom // for files: what the file system holding it is stored on
}

// atoms returns what the bytes of o are stored on: a partition is its
// disk; a device-mapper or md device is the disks under it (its slaves); a
// loop device is its backing file or device; a file is itself, inside what
// its file system is stored on.
func (t topology) atoms(o object, depth int) []atom {
	if depth > 16 {
		return nil
	}
	if !o.isBlock {
		return []atom{{file: true, dev: o.dev, ino: o.ino, path: o.path, in: t.blockAtoms(o.dev, depth+1)}}
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

// meets reports whether atoms a and b share bytes: one holds the other, at
// any depth (a disk holds the files on its file systems, a file holds the
// files of a file system in it). Two files side by side on one disk do not
// meet: writing one leaves the other as it was.
func (t topology) meets(a, b atom) (bool, string) {
	if t.holds(a, b, 0) {
		return true, t.how(a, b)
	}
	if t.holds(b, a, 0) {
		return true, t.how(b, a)
	}
	return false, ""
}

// holds reports whether x is y or holds it.
func (t topology) holds(x, y atom, depth int) bool {
	if depth > 16 {
		return false
	}
	if !x.file && !y.file && x.disk == y.disk || x.file && y.file && x.dev == y.dev && x.ino == y.ino {
		return true
	}
	if y.file {
		for _, c := range y.in {
			if t.holds(x, c, depth+1) {
				return true
			}
		}
	}
	return false
}

func (t topology) how(outer, inner atom) string {
	if outer.file == inner.file && (outer.file && outer.ino == inner.ino || !outer.file && outer.disk == inner.disk) {
		return "both are " + t.atomName(outer)
	}
	return fmt.Sprintf("%s is stored on %s", t.atomName(inner), t.atomName(outer))
}

func (t topology) atomName(a atom) string {
	if a.file {
		return "the file " + a.path
	}
	return "the disk " + t.name(a.disk)
}

// overlap reports whether writing target can change the bytes of other,
// and says how.
func (t topology) overlap(target, other object) (bool, string) {
	if target.isBlock && other.isBlock && target.rdev == other.rdev {
		return true, "it is the same device"
	}
	if !target.isBlock && !other.isBlock && target.dev == other.dev && target.ino == other.ino {
		return true, "it is the same file"
	}
	for _, a := range t.atoms(target, 0) {
		for _, b := range t.atoms(other, 0) {
			if ok, how := t.meets(a, b); ok {
				return true, how
			}
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

// SharesStorage reports whether writing a (a block device or a file, or a
// directory's file system) can change the bytes of b, and says how. The
// image operations use it to keep a repository off the disk it backs up
// or restores to.
func SharesStorage(sysRoot, a, b string) (bool, string, error) {
	if sysRoot == "" {
		sysRoot = "/sys"
	}
	oa, err := statAny(a)
	if err != nil {
		return false, "", err
	}
	ob, err := statAny(b)
	if err != nil {
		return false, "", err
	}
	same, how := topology{sysRoot: sysRoot}.overlap(oa, ob)
	return same, how, nil
}

// statAny describes a block device or file as statObject does, and a
// directory as a file on its file system.
func statAny(path string) (object, error) {
	if o, err := statObject(path); err == nil {
		return o, nil
	}
	st, err := statRaw(path)
	if err != nil {
		return object{}, err
	}
	return object{path: path, dev: st.dev, ino: st.ino}, nil
}
