package disks

import (
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

const (
	mib      = 1 << 20
	rootUUID = "3b1d5e8c-6f0a-4c1e-9a53-2f6a7d1c9e01"
)

// runTool runs a real tool and fails the test with its output on error.
func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	p, err := testenv.LookPath(name)
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	out, err := exec.Command(p, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// makeImage builds a 24 MiB GPT disk image: partition 1 (1 MiB, 8 MiB,
// "root") holds an ext4 file system with a known label and UUID, partition
// 2 (9 MiB to the end, "swap") holds swap.
func makeImage(t *testing.T, dir string) string {
	t.Helper()
	testenv.RequireTools(t, "sgdisk", "mkfs.ext4", "mkswap")
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 24*mib); err != nil {
		t.Fatal(err)
	}
	runTool(t, "sgdisk", "-n", "1:2048:+8M", "-t", "1:8300", "-c", "1:root", "-n", "2:0:0", "-t", "2:8200", "-c", "2:swap", img)

	fsImg := filepath.Join(dir, "root.ext4")
	content := filepath.Join(dir, "content")
	if err := os.MkdirAll(content, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(content, "hello.txt"), []byte(strings.Repeat("lifeboat\n", 50000)), 0o644); err != nil {
		t.Fatal(err)
	}
	runTool(t, "mkfs.ext4", "-q", "-F", "-L", "lb-root", "-U", rootUUID, "-d", content, fsImg, "8M")
	swapImg := filepath.Join(dir, "swap.img")
	if err := os.Truncate(swapImg, 0); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := os.WriteFile(swapImg, make([]byte, 4*mib), 0o600); err != nil {
		t.Fatal(err)
	}
	runTool(t, "mkswap", "-L", "lb-swap", swapImg)
	placeInto(t, img, fsImg, 1*mib)
	placeInto(t, img, swapImg, 9*mib)
	return img
}

// placeInto copies the file src into dst at byte off without truncating it.
func placeInto(t *testing.T, dst, src string, off int64) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// ext4Used returns what dumpe2fs says is allocated in the ext4 file system
// at byte off of img: (blocks - free blocks) * block size.
func ext4Used(t *testing.T, dir, img string, off, size int64) int64 {
	t.Helper()
	part := filepath.Join(dir, "part.ext4")
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(part, b[off:off+size], 0o644); err != nil {
		t.Fatal(err)
	}
	out := runTool(t, "dumpe2fs", "-h", part)
	field := func(name string) int64 {
		for _, l := range strings.Split(out, "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == name {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					t.Fatalf("dumpe2fs %s: %v", name, err)
				}
				return n
			}
		}
		t.Fatalf("dumpe2fs has no %q:\n%s", name, out)
		return 0
	}
	return (field("Block count") - field("Free blocks")) * field("Block size")
}

// fakeTree is a fake sysfs, procfs and /dev in a temporary directory.
type fakeTree struct {
	t                    *testing.T
	root, sys, proc, dev string
}

func newFakeTree(t *testing.T) *fakeTree {
	root := t.TempDir()
	f := &fakeTree{t: t, root: root, sys: filepath.Join(root, "sys"), proc: filepath.Join(root, "proc"), dev: filepath.Join(root, "dev")}
	for _, d := range []string{filepath.Join(f.sys, "block"), filepath.Join(f.sys, "dev", "block"), filepath.Join(f.proc, "self"), f.dev} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fakeTree) opts() Options {
	return Options{SysRoot: f.sys, ProcRoot: f.proc, DevRoot: f.dev}
}

// write creates file rel under the fake root with the given content.
func (f *fakeTree) write(rel, content string) {
	f.t.Helper()
	p := filepath.Join(f.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeTree) mkdir(rel string) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Join(f.root, rel), 0o755); err != nil {
		f.t.Fatal(err)
	}
}

// link makes rel a symlink to target (relative to rel's directory).
func (f *fakeTree) link(target, rel string) {
	f.t.Helper()
	p := filepath.Join(f.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		f.t.Fatal(err)
	}
}

// disk adds a whole disk whose sysfs directory is devPath (under
// sys/devices), linked from sys/block/NAME as the kernel does.
func (f *fakeTree) disk(name, devPath, devno string, sectors int64, lbs, pbs int, rot bool) string {
	dir := filepath.Join("sys", "devices", devPath)
	f.write(filepath.Join(dir, "size"), strconv.FormatInt(sectors, 10)+"\n")
	f.write(filepath.Join(dir, "dev"), devno+"\n")
	f.write(filepath.Join(dir, "removable"), "0\n")
	f.write(filepath.Join(dir, "ro"), "0\n")
	f.write(filepath.Join(dir, "queue", "logical_block_size"), strconv.Itoa(lbs)+"\n")
	f.write(filepath.Join(dir, "queue", "physical_block_size"), strconv.Itoa(pbs)+"\n")
	r := "0"
	if rot {
		r = "1"
	}
	f.write(filepath.Join(dir, "queue", "rotational"), r+"\n")
	f.mkdir(filepath.Join(dir, "holders"))
	f.link(filepath.Join("..", "devices", devPath), filepath.Join("sys", "block", name))
	f.link(filepath.Join("..", "..", "devices", devPath), filepath.Join("sys", "dev", "block", devno))
	return dir
}

// part adds a kernel partition under a disk's sysfs directory.
func (f *fakeTree) part(diskDir, name string, number int, start, size int64, devno string, holders ...string) {
	dir := filepath.Join(diskDir, name)
	f.write(filepath.Join(dir, "partition"), strconv.Itoa(number)+"\n")
	f.write(filepath.Join(dir, "start"), strconv.FormatInt(start/512, 10)+"\n")
	f.write(filepath.Join(dir, "size"), strconv.FormatInt(size/512, 10)+"\n")
	f.write(filepath.Join(dir, "dev"), devno+"\n")
	f.mkdir(filepath.Join(dir, "holders"))
	for _, h := range holders {
		f.link(filepath.Join("..", "..", "..", "..", "virtual", "block", h), filepath.Join(dir, "holders", h))
	}
}

func vpd80(serial string) string {
	b := []byte{0, 0x80, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(len(serial)+2))
	return string(append(b, []byte(serial+"  ")...))
}

// buildFake makes the fake machine used by the scan tests:
//   - sda: SATA SSD whose /dev node is the GPT image img; sda1 is held by
//     dm-0, sda2 is active swap.
//   - sdb: a USB stick with the same model (no /dev node: unreadable); its
//     sdb1 is mounted (btrfs-style anonymous device number, matched by
//     source) on a mount point with a blank in it.
//   - nvme0n1: NVMe namespace, no /dev node.
//   - vda: virtio disk holding an ext4 file system directly, mounted on /.
//   - loop0 backed by a file, loop1 unattached, ram0, zram0: only loop0 is
//     listed.
func buildFake(t *testing.T, img, vdaImg string) *fakeTree {
	f := newFakeTree(t)
	const sdaDev = "pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0"
	sda := f.disk("sda", sdaDev+"/block/sda", "8:0", 24*mib/512, 512, 4096, false)
	f.write(filepath.Join("sys/devices", sdaDev, "model"), "Samsung SSD 870 EVO 1TB \n")
	f.write(filepath.Join("sys/devices", sdaDev, "vendor"), "ATA     \n")
	f.write(filepath.Join("sys/devices", sdaDev, "wwid"), "naa.5002538e40a1b2c3\n")
	f.write(filepath.Join("sys/devices", sdaDev, "vpd_pg80"), vpd80("S6PTNM0R123456"))
	f.link("../../../0:0:0:0", filepath.Join(sda, "device"))
	f.part(sda, "sda1", 1, 1*mib, 8*mib, "8:1", "dm-0")
	f.part(sda, "sda2", 2, 9*mib, 15*mib-16896, "8:2")

	const sdbDev = "pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0"
	sdb := f.disk("sdb", sdbDev+"/block/sdb", "8:16", 1000204886016/512, 512, 512, false)
	f.write(filepath.Join(sdb, "removable"), "1\n")
	f.write(filepath.Join("sys/devices", sdbDev, "model"), "Samsung SSD 870 EVO 1TB\n")
	f.write(filepath.Join("sys/devices", sdbDev, "vendor"), "ATA\n")
	f.write(filepath.Join("sys/devices", sdbDev, "serial"), "S6PTNM0R999999\n")
	f.link("../../../6:0:0:0", filepath.Join(sdb, "device"))
	f.part(sdb, "sdb1", 1, 1*mib, 500*mib, "8:17")

	const nvmeCtl = "pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0"
	nv := f.disk("nvme0n1", nvmeCtl+"/nvme0n1", "259:0", 2000409264, 512, 512, false)
	f.write(filepath.Join("sys/devices", nvmeCtl, "model"), "WDC WDS100T2B0C\n")
	f.write(filepath.Join("sys/devices", nvmeCtl, "serial"), "21154F801234      \n")
	f.write(filepath.Join(nv, "wwid"), "eui.e8238fa6bf530001001b448b4c0d9f6a\n")
	f.link("..", filepath.Join(nv, "device"))

	vda := f.disk("vda", "pci0000:00/0000:00:02.0/virtio1/block/vda", "254:0", 16*mib/512, 512, 512, true)
	f.write(filepath.Join(vda, "serial"), "VIRTSERIAL01\n")
	f.write("sys/devices/pci0000:00/0000:00:02.0/virtio1/vendor", "0x1af4\n")
	f.link("../../../virtio1", filepath.Join(vda, "device"))

	lp := f.disk("loop0", "virtual/block/loop0", "7:0", 24*mib/512, 512, 512, false)
	f.write(filepath.Join(lp, "loop", "backing_file"), "/srv/images/backing.img\n")
	f.write(filepath.Join(lp, "loop", "offset"), "0\n")
	f.disk("loop1", "virtual/block/loop1", "7:1", 0, 512, 512, false)
	f.disk("ram0", "virtual/block/ram0", "1:0", 8192, 512, 512, false)
	f.disk("zram0", "virtual/block/zram0", "252:0", 8192, 4096, 4096, false)

	f.write("proc/self/mountinfo", strings.Join([]string{
		"22 27 0:21 / /proc rw,relatime - proc proc rw",
		"27 1 254:0 / / rw,relatime - ext4 /dev/vda rw",
		"40 27 0:45 /@ /mnt/my\\040usb rw,relatime shared:1 - btrfs /dev/sdb1 rw,space_cache=v2",
		"41 27 0:46 / /mnt/also rw - btrfs /dev/disk/by-label/usb rw",
	}, "\n")+"\n")
	f.write("proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/sda2                               partition\t15360\t\t0\t\t-2\n")

	// /dev: sda is the GPT image (a regular file opens like a disk), vda a
	// bare ext4 file system; partition nodes exist only for sda.
	// A copy, not a link: Resolve must not take the image for sda.
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dev, "sda"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(vdaImg, filepath.Join(f.dev, "vda")); err != nil {
		t.Fatal(err)
	}
	f.write("dev/sda1", "")
	f.write("dev/sda2", "")
	f.link("../../sdb1", "dev/disk/by-label/usb")
	f.write("dev/sdb1", "")
	return f
}

func findDisk(t *testing.T, list []Disk, name string) *Disk {
	t.Helper()
	for i := range list {
		if list[i].Name == name || (list[i].IsFile && list[i].Path == name) {
			return &list[i]
		}
	}
	t.Fatalf("disk %s not listed", name)
	return nil
}

func contains(list []string, want string) bool {
	for _, s := range list {
		if s == want {
			return true
		}
	}
	return false
}

func TestScanFakeMachine(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir)
	vdaImg := filepath.Join(dir, "vda.ext4")
	runTool(t, "mkfs.ext4", "-q", "-F", "-L", "vroot", vdaImg, "16M")
	f := buildFake(t, img, vdaImg)
	file2 := filepath.Join(dir, "copy.img")
	b, _ := os.ReadFile(img)
	if err := os.WriteFile(file2, b, 0o644); err != nil {
		t.Fatal(err)
	}
	opt := f.opts()
	opt.Files = []string{file2}
	opt.Usage = true
	list, err := Scan(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range list {
		names = append(names, d.Name)
	}
	if got, want := strings.Join(names, ","), "loop0,nvme0n1,sda,sdb,vda,"; got != want {
		t.Fatalf("disks = %q, want %q", got, want)
	}

	sda := findDisk(t, list, "sda")
	if sda.Model != "Samsung SSD 870 EVO 1TB" || sda.Vendor != "ATA" || sda.Serial != "S6PTNM0R123456" || sda.WWN != "naa.5002538e40a1b2c3" {
		t.Errorf("sda identity = %q %q %q %q", sda.Model, sda.Vendor, sda.Serial, sda.WWN)
	}
	if sda.Transport != "sata" || sda.Devno != "8:0" || sda.Size != 24*mib || sda.LogicalSectorSize != 512 || sda.PhysicalSectorSize != 4096 || sda.Rotational || sda.Removable {
		t.Errorf("sda = %+v", sda)
	}
	if sda.Table != "gpt" || len(sda.Partitions) != 2 || sda.DiskGUID == "" {
		t.Fatalf("sda table %q (%s) guid %q partitions %+v", sda.Table, sda.TableError, sda.DiskGUID, sda.Partitions)
	}
	p1, p2 := sda.Partitions[0], sda.Partitions[1]
	if p1.Number != 1 || p1.Start != 1*mib || p1.Size != 8*mib || p1.Name != "root" || p1.Path != filepath.Join(f.dev, "sda1") {
		t.Errorf("sda1 = %+v", p1)
	}
	if p1.FS != "ext4" || p1.Label != "lb-root" || p1.UUID != rootUUID || p1.Raw {
		t.Errorf("sda1 fs = %q label %q uuid %q raw %v warnings %v", p1.FS, p1.Label, p1.UUID, p1.Raw, p1.FSWarnings)
	}
	if min := ext4Used(t, dir, img, p1.Start, p1.Size); p1.Used < min || p1.Used > p1.Size {
		t.Errorf("sda1 used = %d, want between dumpe2fs's %d and the size %d", p1.Used, min, p1.Size)
	}
	if !contains(p1.Holders, "dm-0") || p1.Swap || len(p1.Mounts) != 0 {
		t.Errorf("sda1 holders %v swap %v mounts %v", p1.Holders, p1.Swap, p1.Mounts)
	}
	if p2.Number != 2 || p2.Start != 9*mib || p2.Name != "swap" || !p2.Swap || p2.Path != filepath.Join(f.dev, "sda2") {
		t.Errorf("sda2 = %+v", p2)
	}
	inUse := strings.Join(sda.InUse(), "\n")
	for _, want := range []string{
		filepath.Join(f.dev, "sda1") + " is held by dm-0 (device-mapper)",
		filepath.Join(f.dev, "sda2") + " is active swap",
	} {
		if !strings.Contains(inUse, want) {
			t.Errorf("sda InUse = %q, want %q", inUse, want)
		}
	}

	sdb := findDisk(t, list, "sdb")
	if sdb.Transport != "usb" || !sdb.Removable || sdb.Serial != "S6PTNM0R999999" || sdb.Size != 1000204886016 {
		t.Errorf("sdb = %+v", sdb)
	}
	if sdb.Table != "error" || sdb.TableError == "" || len(sdb.Partitions) != 1 {
		t.Fatalf("sdb table %q %q partitions %+v", sdb.Table, sdb.TableError, sdb.Partitions)
	}
	if got := sdb.Partitions[0].Mounts; len(got) != 2 || got[0] != "/mnt/my usb" || got[1] != "/mnt/also" {
		t.Errorf("sdb1 mounts = %q", got)
	}
	if sdb.Partitions[0].Start != 1*mib || sdb.Partitions[0].Used != -1 {
		t.Errorf("sdb1 = %+v", sdb.Partitions[0])
	}
	if got := sdb.InUse(); len(got) != 2 || got[0] != filepath.Join(f.dev, "sdb1")+" is mounted on /mnt/my usb" {
		t.Errorf("sdb InUse = %q", got)
	}

	nv := findDisk(t, list, "nvme0n1")
	if nv.Transport != "nvme" || nv.Model != "WDC WDS100T2B0C" || nv.Serial != "21154F801234" || nv.WWN != "eui.e8238fa6bf530001001b448b4c0d9f6a" || nv.Size != 2000409264*512 {
		t.Errorf("nvme0n1 = %+v", nv)
	}
	if nv.Table != "error" || !strings.Contains(nv.TableError, "nvme0n1") || len(nv.InUse()) != 0 {
		t.Errorf("nvme0n1 table %q %q in use %q", nv.Table, nv.TableError, nv.InUse())
	}

	vda := findDisk(t, list, "vda")
	if vda.Transport != "virtio" || vda.Serial != "VIRTSERIAL01" || vda.Vendor != "" || !vda.Rotational {
		t.Errorf("vda = %+v", vda)
	}
	if vda.Table != "none" || len(vda.Partitions) != 1 || vda.Partitions[0].Number != 0 || vda.Partitions[0].FS != "ext4" || vda.Partitions[0].Label != "vroot" {
		t.Errorf("vda table %q %q partitions %+v", vda.Table, vda.TableError, vda.Partitions)
	}
	if !contains(vda.Mounts, "/") || len(vda.InUse()) != 1 || vda.InUse()[0] != filepath.Join(f.dev, "vda")+" is mounted on /" {
		t.Errorf("vda mounts %q in use %q", vda.Mounts, vda.InUse())
	}

	lp := findDisk(t, list, "loop0")
	if lp.Transport != "loop" || lp.BackingFile != "/srv/images/backing.img" || lp.Table != "error" {
		t.Errorf("loop0 = %+v", lp)
	}

	fd := list[len(list)-1]
	if !fd.IsFile || fd.Path != file2 || fd.Transport != "file" || fd.Table != "gpt" || len(fd.Partitions) != 2 || fd.Size != 24*mib {
		t.Fatalf("file disk = %+v", fd)
	}
	if fd.Partitions[0].Path != "" || fd.Partitions[0].FS != "ext4" || len(fd.InUse()) != 0 {
		t.Errorf("file partition 1 = %+v, in use %q", fd.Partitions[0], fd.InUse())
	}
}

func TestScanWithoutUsage(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir)
	f := newFakeTree(t)
	f.write("proc/self/mountinfo", "")
	opt := f.opts()
	opt.Files = []string{img}
	list, err := Scan(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || len(list[0].Partitions) != 2 {
		t.Fatalf("scan = %+v", list)
	}
	for _, p := range list[0].Partitions {
		if p.Used != -1 {
			t.Errorf("partition %d used = %d without Options.Usage, want -1", p.Number, p.Used)
		}
	}
	if _, err := Scan(context.Background(), Options{SysRoot: f.sys, ProcRoot: f.proc, DevRoot: f.dev, Files: []string{filepath.Join(dir, "missing.img")}}); err == nil {
		t.Error("scan with a missing image file succeeded")
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir)
	vdaImg := filepath.Join(dir, "vda.ext4")
	runTool(t, "mkfs.ext4", "-q", "-F", vdaImg, "16M")
	f := buildFake(t, img, vdaImg)
	ctx := context.Background()
	list, err := Scan(ctx, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ spec, want string }{
		{"serial:S6PTNM0R123456", "sda"},
		{"serial:21154F801234", "nvme0n1"},
		{"wwn:naa.5002538e40a1b2c3", "sda"},
		{"wwn:0x5002538E40A1B2C3", "sda"},
		{"wwn:5002538e40a1b2c3", "sda"},
		{"wwn:E8238FA6BF530001001B448B4C0D9F6A", "nvme0n1"},
		{"model:wdc wds100t2b0c", "nvme0n1"},
		{filepath.Join(f.dev, "vda"), "vda"},
	} {
		d, err := Resolve(ctx, tc.spec, list)
		if err != nil {
			t.Errorf("Resolve(%q): %v", tc.spec, err)
			continue
		}
		if d.Name != tc.want {
			t.Errorf("Resolve(%q) = %s, want %s", tc.spec, d.Name, tc.want)
		}
	}

	_, err = Resolve(ctx, "model:samsung ssd 870 evo 1tb", list)
	if err == nil {
		t.Fatal("two disks with one model: Resolve succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, "2 disks match") || !strings.Contains(msg, `"Samsung SSD 870 EVO 1TB" serial S6PTNM0R123456 25.2 MB (25165824 bytes) at `+filepath.Join(f.dev, "sda")) || !strings.Contains(msg, "serial S6PTNM0R999999 1.0 TB (1000204886016 bytes)") {
		t.Errorf("several-match error = %q", msg)
	}
	if strings.Contains(msg, "nvme0n1") {
		t.Errorf("several-match error lists a disk that does not match: %q", msg)
	}

	_, err = Resolve(ctx, "serial:NOPE", list)
	if err == nil {
		t.Fatal("unknown serial: Resolve succeeded")
	}
	for _, d := range list {
		if !strings.Contains(err.Error(), d.Describe()) {
			t.Errorf("no-match error %q does not list %s", err, d.Describe())
		}
	}
	if _, err := Resolve(ctx, filepath.Join(dir, "absent.img"), list); err == nil {
		t.Error("missing path: Resolve succeeded")
	}

	// An image file not in the list is inspected, through a symlink too.
	link := filepath.Join(dir, "by-id-link")
	if err := os.Symlink(img, link); err != nil {
		t.Fatal(err)
	}
	d, err := Resolve(ctx, link, list)
	if err != nil {
		t.Fatal(err)
	}
	if !d.IsFile || d.Path != img || d.Table != "gpt" || len(d.Partitions) != 2 {
		t.Errorf("Resolve(image symlink) = %+v", d)
	}
	if got, want := d.Describe(), "image file "+img+" 24.0 MiB (25165824 bytes)"; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
}

func TestDescribe(t *testing.T) {
	d := Disk{Path: "/dev/sda", Model: "Samsung SSD 870 EVO 1TB", Vendor: "ATA", Serial: "S6PTNM0R123456", Size: 1000204886016}
	if got, want := d.Describe(), `"Samsung SSD 870 EVO 1TB" serial S6PTNM0R123456 1.0 TB (1000204886016 bytes) at /dev/sda`; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
	d = Disk{Path: "/dev/sdc", Model: "Ultra", Vendor: "SanDisk", Size: 30752636928, Transport: "usb"}
	if got, want := d.Describe(), `"SanDisk Ultra" 30.8 GB (30752636928 bytes) at /dev/sdc`; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
	d = Disk{Path: "/dev/vda", Size: 8 << 30, Transport: "virtio", Serial: "X1"}
	if got, want := d.Describe(), `virtio disk serial X1 8.6 GB (8589934592 bytes) at /dev/vda`; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
}

func TestInUseHolders(t *testing.T) {
	d := Disk{Path: "/dev/sdc", Holders: []string{"md0"}, Partitions: []Partition{
		{Number: 1, Path: "/dev/sdc1", Holders: []string{"dm-3"}, Mounts: []string{"/home"}},
		{Number: 2, Swap: true},
	}}
	got := d.InUse()
	want := []string{"held by md0 (md RAID)", "/dev/sdc1 is mounted on /home", "/dev/sdc1 is held by dm-3 (device-mapper)", "partition 2 of /dev/sdc is active swap"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("InUse = %q, want %q", got, want)
	}
	if got := (&Disk{Path: "/dev/sdd", Partitions: []Partition{{Number: 1}}}).InUse(); len(got) != 0 {
		t.Errorf("free disk InUse = %q", got)
	}
}

func TestHumanBytes(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {8 << 30, "8.0 GiB"},
		{1<<20 - 1, "1.0 MiB"}, {-5, "-5 B"}, {1<<63 - 1, "8.0 EiB"},
	} {
		if got := HumanBytes(tc.n); got != tc.want {
			t.Errorf("HumanBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	if got := HumanBytesDecimal(1000204886016); got != "1.0 TB" {
		t.Errorf("HumanBytesDecimal = %q", got)
	}
}

func TestTransportOf(t *testing.T) {
	for _, tc := range []struct{ name, path, want string }{
		{"sda", "/sys/devices/pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0/block/sda", "sata"},
		{"sdb", "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-3/2-3:1.0/host4/target4:0:0/4:0:0:0/block/sdb", "usb"},
		{"sdc", "/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/host0/target0:2:0/0:2:0:0/block/sdc", "scsi"},
		{"nvme0n1", "/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1", "nvme"},
		{"vda", "/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda", "virtio"},
		{"mmcblk0", "/sys/devices/platform/soc/fe340000.mmc/mmc_host/mmc0/mmc0:0001/block/mmcblk0", "mmc"},
		{"loop0", "/sys/devices/virtual/block/loop0", "loop"},
		{"dm-0", "/sys/devices/virtual/block/dm-0", "dm"},
		{"md127", "/sys/devices/virtual/block/md127", "md"},
		{"xyz", "/sys/devices/platform/xyz", ""},
	} {
		if got := transportOf(tc.name, tc.path); got != tc.want {
			t.Errorf("transportOf(%s) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestParseMountinfoAndSwaps(t *testing.T) {
	m := parseMountinfo([]byte("36 35 98:0 /mnt1 /mnt/a\\040b\\134c rw,noatime master:1 - ext3 /dev/root rw,errors=continue\nshort line\n37 1 8:2 / / rw - ext4 /dev/sda2 rw\n"))
	if len(m) != 2 || m[0].devno != "98:0" || m[0].mountPoint != `/mnt/a b\c` || m[0].source != "/dev/root" || m[1].source != "/dev/sda2" {
		t.Errorf("parseMountinfo = %+v", m)
	}
	s := parseSwaps([]byte("Filename\tType\tSize\tUsed\tPriority\n/dev/dm-1 partition 8388604 0 -2\n/swap\\040file file 1024 0 -3\n"))
	if len(s) != 2 || s[0] != "/dev/dm-1" || s[1] != "/swap file" {
		t.Errorf("parseSwaps = %q", s)
	}
}

func TestParseVPD80(t *testing.T) {
	if got := parseVPD80([]byte(vpd80("WD-WCC4N1234567"))); got != "WD-WCC4N1234567" {
		t.Errorf("parseVPD80 = %q", got)
	}
	for _, bad := range [][]byte{nil, {0, 0x83, 0, 2, 'a', 'b'}, {0, 0x80, 0xff, 0xff, 'a'}, {0, 0x80, 0, 2, 1, 2}} {
		if got := parseVPD80(bad); got != "" && got != "a" {
			t.Errorf("parseVPD80(%x) = %q", bad, got)
		}
	}
}

// TestScanRealSystem runs the scan on this machine's /sys, /proc and /dev:
// whatever the machine, it must not fail and must list well-formed disks.
func TestScanRealSystem(t *testing.T) {
	list, err := Scan(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range list {
		if d.Name == "" || strings.HasPrefix(d.Name, "ram") || strings.HasPrefix(d.Name, "zram") {
			t.Errorf("listed %q", d.Name)
		}
		if d.Table == "" {
			t.Errorf("%s: empty table kind", d.Name)
		}
		t.Logf("%s: %s table %s %s, %d partitions, in use %q", d.Name, d.Describe(), d.Table, d.TableError, len(d.Partitions), d.InUse())
	}
}

func TestConfirmation(t *testing.T) {
	cases := []struct {
		d    Disk
		want string
		bad  []string
	}{
		{Disk{Path: "/dev/sda", Serial: "S6PTNM0R123456"}, "3456", []string{"y", "", "34567", "S6PTNM0R123456"}},
		// Case counts: serials are printed as the disk gives them.
		{Disk{Path: "/dev/sdb", Serial: "S6PTNM0R12AB34CD"}, "34CD", []string{"34cd", "34C", "y"}},
		{Disk{Path: "/tmp/x/b.img", IsFile: true}, "b.img", []string{"", "B.img", "/tmp/x/b.img"}},
		{Disk{Path: "/dev/nvme0n1", Serial: "AB"}, "nvme0n1", []string{"AB", "", "y"}},
	}
	for _, c := range cases {
		want, prompt := Confirmation(&c.d)
		if want != c.want || !strings.Contains(prompt, strconv.Quote(c.want)) {
			t.Errorf("%s: Confirmation = %q, %q; want %q", c.d.Path, want, prompt, c.want)
		}
		if !Confirmed(&c.d, " "+c.want+"\n") {
			t.Errorf("%s: %q refused", c.d.Path, c.want)
		}
		for _, bad := range c.bad {
			if Confirmed(&c.d, bad) {
				t.Errorf("%s: %q accepted", c.d.Path, bad)
			}
		}
	}
}
