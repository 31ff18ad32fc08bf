package disks

import (
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// maxAttr bounds how much of one sysfs attribute is read: the kernel never
// returns more than a page, a fake or broken tree might.
const maxAttr = 64 << 10

// readRaw returns the bytes of a sysfs attribute, nil when it is missing.
func readRaw(path string) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAttr))
	if err != nil {
		return nil
	}
	return b
}

// readAttr returns a sysfs attribute with surrounding blanks removed, ""
// when it is missing or unreadable.
func readAttr(path string) string {
	return strings.TrimSpace(string(readRaw(path)))
}

// maxInt bounds numeric attributes so that sector counts turned into bytes
// cannot overflow: 2^54 bytes (16 PiB) is beyond any disk.
const maxInt = 1 << 54

// readInt returns a numeric sysfs attribute, 0 when missing, malformed or
// out of range.
func readInt(path string) int64 {
	n, err := strconv.ParseInt(readAttr(path), 10, 64)
	if err != nil || n < 0 || n > maxInt {
		return 0
	}
	return n
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// listDir returns the sorted entry names of dir (holders, slaves), nil when
// it is missing or empty.
func listDir(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) == 0 {
		return nil
	}
	if len(ents) > maxBlockEntries {
		ents = ents[:maxBlockEntries]
	}
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// transportOf works out how a disk is attached from its kernel name and the
// resolved sysfs device path, which runs through the buses on the way to the
// disk (.../usb2/2-1/... for USB, .../ata1/... for SATA). USB is tested first
// because a USB bridge may present a SATA or SCSI disk.
func transportOf(name, devicePath string) string {
	p := filepath.ToSlash(devicePath)
	switch {
	case strings.HasPrefix(name, "loop"):
		return "loop"
	case strings.Contains(p, "/usb"):
		return "usb"
	case strings.Contains(p, "/nvme"):
		return "nvme"
	case strings.Contains(p, "/mmc_host/"):
		return "mmc"
	case strings.Contains(p, "/virtio"):
		return "virtio"
	case strings.Contains(p, "/ata"):
		return "sata"
	case strings.Contains(p, "/host") && strings.Contains(p, "/target"):
		return "scsi"
	case strings.HasPrefix(name, "dm-"):
		return "dm"
	case strings.HasPrefix(name, "md"):
		return "md"
	}
	return ""
}

// identity reads model, vendor, serial and WWN of the disk whose sysfs
// directory is sys. NVMe namespaces find model and serial on their
// controller, which is their "device" link; virtio disks have the serial on
// the block device itself; SCSI and SATA disks have it in VPD page 0x80.
func identity(sys, transport string) (model, vendor, serial, wwn string) {
	dev := filepath.Join(sys, "device")
	model = readAttr(filepath.Join(dev, "model"))
	if model != "" {
		// virtio's device/vendor is a PCI id (0x1af4), not a name; only
		// devices with a model name have a vendor name beside it.
		vendor = readAttr(filepath.Join(dev, "vendor"))
		if strings.HasPrefix(vendor, "0x") {
			vendor = ""
		}
	}
	serial = readAttr(filepath.Join(dev, "serial"))
	if serial == "" {
		serial = readAttr(filepath.Join(sys, "serial"))
	}
	if serial == "" {
		serial = parseVPD80(readRaw(filepath.Join(dev, "vpd_pg80")))
	}
	for _, p := range []string{filepath.Join(sys, "wwid"), filepath.Join(dev, "wwid"), filepath.Join(dev, "wwn")} {
		w := readAttr(p)
		// t10. and nvme. identifiers are vendor, model and serial glued
		// together, not world-wide names.
		if w != "" && !strings.HasPrefix(w, "t10.") && !strings.HasPrefix(w, "nvme.") {
			wwn = w
			break
		}
	}
	return model, vendor, serial, wwn
}

// parseVPD80 returns the unit serial number from a SCSI VPD page 0x80
// (Unit Serial Number): a 4-byte header whose bytes 2-3 give the length of
// the ASCII serial that follows. It returns "" for anything malformed.
func parseVPD80(b []byte) string {
	if len(b) < 4 || b[1] != 0x80 {
		return ""
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n > len(b)-4 {
		n = len(b) - 4
	}
	s := strings.TrimRight(string(b[4:4+n]), "\x00")
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return ""
		}
	}
	return strings.TrimSpace(s)
}

// sysPart is the kernel's view of one partition (sysfs block/X/Y).
type sysPart struct {
	name        string
	number      int
	start, size int64 // bytes
	devno       string
	holders     []string
}

// sysPartitions lists the partitions the kernel knows under the disk
// directory sys, in order of start.
func sysPartitions(sys string) []sysPart {
	ents, err := os.ReadDir(sys)
	if err != nil {
		return nil
	}
	if len(ents) > maxBlockEntries {
		ents = ents[:maxBlockEntries]
	}
	var out []sysPart
	for _, e := range ents {
		dir := filepath.Join(sys, e.Name())
		if !fileExists(filepath.Join(dir, "partition")) {
			continue
		}
		out = append(out, sysPart{
			name:    e.Name(),
			number:  int(readInt(filepath.Join(dir, "partition"))),
			start:   readInt(filepath.Join(dir, "start")) * 512,
			size:    readInt(filepath.Join(dir, "size")) * 512,
			devno:   readAttr(filepath.Join(dir, "dev")),
			holders: listDir(filepath.Join(dir, "holders")),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].start != out[j].start {
			return out[i].start < out[j].start
		}
		return out[i].number < out[j].number
	})
	return out
}
