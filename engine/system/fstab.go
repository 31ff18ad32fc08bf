package system

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/ptable"
)

// fstabEntry is one line of /etc/fstab.
type fstabEntry struct {
	spec, dir, fsType, opts string
}

func (f fstabEntry) nofail() bool {
	for _, o := range strings.Split(f.opts, ",") {
		if o == "nofail" || o == "noauto" {
			return true
		}
	}
	return false
}

func (f fstabEntry) mountName() string {
	if f.fsType == "swap" {
		return "swap"
	}
	return f.dir
}

// parseFstab reads fstab lines; octal escapes (\040) in paths are decoded.
func parseFstab(b []byte) []fstabEntry {
	var out []fstabEntry
	for i, line := range strings.Split(string(b), "\n") {
		if i > 1000 {
			break
		}
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		e := fstabEntry{spec: disks.UnescapeOctal(f[0]), dir: disks.UnescapeOctal(f[1]), fsType: f[2]}
		if len(f) > 3 {
			e.opts = f[3]
		}
		out = append(out, e)
	}
	return out
}

// fstabNeeded returns the role of a mount the system needs to boot, ""
// for one it does not (data).
func fstabNeeded(e fstabEntry) string {
	if e.fsType == "swap" {
		return "swap"
	}
	switch path.Clean(e.dir) {
	case "/boot", "/boot/efi", "/efi", "/usr", "/var":
		return path.Clean(e.dir)
	}
	return ""
}

// matchFstab finds the partition an fstab source names: UUID=, PARTUUID=,
// LABEL=, PARTLABEL=, their /dev/disk/by-* links, or a kernel name such as
// /dev/sda3 or /dev/nvme0n1p3 (taken to mean this disk's partition 3).
func matchFstab(spec string, parts []*part, tbl *ptable.Table) *part {
	key, val, ok := strings.Cut(spec, "=")
	if !ok {
		for _, by := range []struct{ dir, key string }{
			{"/dev/disk/by-uuid/", "UUID"}, {"/dev/disk/by-partuuid/", "PARTUUID"},
			{"/dev/disk/by-label/", "LABEL"}, {"/dev/disk/by-partlabel/", "PARTLABEL"},
		} {
			if strings.HasPrefix(spec, by.dir) {
				key, val, ok = by.key, disks.UnescapeOctal(strings.TrimPrefix(spec, by.dir)), true
			}
		}
	}
	if !ok {
		n := kernelPartNumber(spec)
		for _, x := range parts {
			if n > 0 && x.p.Number == n {
				return x
			}
		}
		return nil
	}
	val = strings.Trim(val, `"`)
	for _, x := range parts {
		switch key {
		case "UUID":
			if x.uuid != "" && strings.EqualFold(x.uuid, val) {
				return x
			}
		case "LABEL":
			if x.lbl != "" && x.lbl == val {
				return x
			}
		case "PARTUUID":
			if strings.EqualFold(partUUID(tbl, x.p), val) {
				return x
			}
		case "PARTLABEL":
			if x.p.Name != "" && x.p.Name == val {
				return x
			}
		}
	}
	return nil
}

// partUUID is what the kernel calls a partition's PARTUUID: its GPT GUID,
// or on MBR the disk signature and the partition number ("1a2b3c4d-02").
func partUUID(tbl *ptable.Table, p ptable.Partition) string {
	if tbl.Kind == ptable.GPT {
		return p.GUID
	}
	return fmt.Sprintf("%08x-%02x", tbl.DiskSignature, p.Number)
}

// kernelPartNumber returns N for /dev/sdaN, /dev/vdaN, /dev/hdaN,
// /dev/xvdaN, /dev/nvme0n1pN and /dev/mmcblk0pN; 0 otherwise.
func kernelPartNumber(spec string) int {
	name, ok := strings.CutPrefix(spec, "/dev/")
	if !ok {
		return 0
	}
	i := len(name)
	for i > 0 && name[i-1] >= '0' && name[i-1] <= '9' {
		i--
	}
	if i == len(name) || i == 0 {
		return 0
	}
	base := name[:i]
	if strings.HasPrefix(base, "nvme") || strings.HasPrefix(base, "mmcblk") {
		if !strings.HasSuffix(base, "p") {
			return 0
		}
	} else if !(strings.HasPrefix(base, "sd") || strings.HasPrefix(base, "vd") || strings.HasPrefix(base, "hd") || strings.HasPrefix(base, "xvd")) {
		return 0
	}
	n, err := strconv.Atoi(name[i:])
	if err != nil || n <= 0 || n > 256 {
		return 0
	}
	return n
}
