package system

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/engine/blockdev"
	"github.com/lifeboat/lifeboat/engine/ptable"
	"github.com/lifeboat/lifeboat/internal/sysdisk"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

func open(t *testing.T, path string) (*blockdev.Disk, *ptable.Table) {
	t.Helper()
	d, err := blockdev.Open(context.Background(), path, blockdev.Options{Mode: blockdev.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	tbl, err := ptable.Read(context.Background(), d, d.Size(), d.SectorSize())
	if err != nil {
		t.Fatal(err)
	}
	return d, tbl
}

// TestSelectSystemDisk runs the selection on the bootable fixture: the BIOS
// boot partition, the ESP and the root are taken, each with its reason, and
// the data partition, which the root's fstab mounts on /srv/data, is left
// out as data.
func TestSelectSystemDisk(t *testing.T) {
	testenv.RequireRoot(t)
	disk := sysdisk.Build(t, t.TempDir(), sysdisk.Options{})
	d, tbl := open(t, disk.Path)
	sel, err := Select(context.Background(), d, tbl)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	sel.Describe(&b)
	t.Logf("\n%s", b.String())
	want := map[int]string{
		sysdisk.PartBIOS: "BIOS boot",
		sysdisk.PartESP:  "EFI system partition",
		sysdisk.PartRoot: "Linux root (Debian GNU/Linux 12 (bookworm))",
	}
	if len(sel.Taken) != len(want) {
		t.Fatalf("took %v, want %v", sel.Taken, want)
	}
	for _, c := range sel.Taken {
		if want[c.Number] != c.Role || c.Why == "" {
			t.Errorf("partition %d taken as %q (%q), want %q with a reason", c.Number, c.Role, c.Why, want[c.Number])
		}
	}
	if len(sel.Left) != 1 || sel.Left[0].Number != sysdisk.PartData || sel.Left[0].Role != "/srv/data from fstab" || !strings.Contains(sel.Left[0].Why, "not needed to boot") {
		t.Errorf("left out %+v, want partition %d as /srv/data from fstab", sel.Left, sysdisk.PartData)
	}
	if len(sel.Systems) != 1 || sel.Systems[0] != "Debian GNU/Linux 12 (bookworm)" {
		t.Errorf("systems %v", sel.Systems)
	}
}

// TestSelectFollowsFstab builds a disk with a separate /boot and swap that
// only the root's fstab says belong to the system (by LABEL= and by
// PARTUUID=), a second ext4 with no system, and a root whose os-release is
// a relative symbolic link, as Debian ships it.
func TestSelectFollowsFstab(t *testing.T) {
	testenv.RequireTools(t, "sgdisk", "mkfs.ext4", "mkswap")
	dir := t.TempDir()
	const mib = 1 << 20
	img := filepath.Join(dir, "disk.img")
	mk := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64*mib); err != nil {
		t.Fatal(err)
	}
	mk("sgdisk", "-n", "1:0:+8M", "-n", "2:0:+8M", "-t", "2:8200", "-n", "3:0:+16M", "-n", "4:0:+16M", img)
	_, tbl0 := open(t, img)
	swapGUID := strings.ToLower(tbl0.Partitions[1].GUID)
	root := filepath.Join(dir, "root")
	for p, c := range map[string]string{
		"usr/lib/os-release": "NAME=\"Fedora Linux\"\nVERSION=\"40 (Workstation Edition)\"\n",
		"etc/fstab":          "LABEL=bootfs /boot ext4 defaults 1 2\nPARTUUID=" + swapGUID + " none swap sw 0 0\n/dev/sda4 /home ext4 defaults 0 2\n# UUID=deadbeef /old ext4\n",
	} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(c), 0o644)
	}
	if err := os.Symlink("../usr/lib/os-release", filepath.Join(root, "etc/os-release")); err != nil {
		t.Fatal(err)
	}
	part := func(n int, size int64, args ...string) {
		t.Helper()
		f := filepath.Join(dir, "p.img")
		os.Remove(f)
		os.WriteFile(f, nil, 0o644)
		os.Truncate(f, size)
		mk(args[0], append(args[1:], f)...)
		b, _ := os.ReadFile(f)
		w, _ := os.OpenFile(img, os.O_WRONLY, 0)
		w.WriteAt(b, tbl0.Partitions[n-1].Start)
		w.Close()
	}
	part(1, 8*mib, "mkfs.ext4", "-q", "-L", "bootfs")
	part(2, 8*mib, "mkswap")
	part(3, 16*mib, "mkfs.ext4", "-q", "-d", root)
	part(4, 16*mib, "mkfs.ext4", "-q", "-L", "home")
	d, tbl := open(t, img)
	sel, err := Select(context.Background(), d, tbl)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	sel.Describe(&b)
	t.Logf("\n%s", b.String())
	got := map[int]string{}
	for _, c := range sel.Taken {
		got[c.Number] = c.Role
	}
	want := map[int]string{1: "/boot from fstab", 2: "swap from fstab", 3: "Linux root (Fedora Linux 40 (Workstation Edition))"}
	if len(got) != len(want) {
		t.Fatalf("took %v, want %v", got, want)
	}
	for n, r := range want {
		if got[n] != r {
			t.Errorf("partition %d: %q, want %q", n, got[n], r)
		}
	}
	if len(sel.Left) != 1 || sel.Left[0].Number != 4 || sel.Left[0].Role != "/home from fstab" {
		t.Errorf("left %+v", sel.Left)
	}
	if len(sel.Warnings) != 1 || !strings.Contains(sel.Warnings[0], "without nofail") {
		t.Errorf("warnings %q, want one about /home mounted without nofail", sel.Warnings)
	}
}

// TestNoSystem refuses a disk with only data on it, saying what each
// partition holds.
func TestNoSystem(t *testing.T) {
	testenv.RequireTools(t, "sgdisk", "mkfs.ext4")
	img := filepath.Join(t.TempDir(), "disk.img")
	os.WriteFile(img, nil, 0o644)
	os.Truncate(img, 32<<20)
	if out, err := exec.Command("sgdisk", "-n", "1:0:+16M", img).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	d, tbl := open(t, img)
	_, err := Select(context.Background(), d, tbl)
	var none *NoSystemError
	if !errors.As(err, &none) || !strings.Contains(err.Error(), "partition 1: no file system recognised") {
		t.Fatalf("got %v, want a NoSystemError naming partition 1", err)
	}
}

func TestParseFstab(t *testing.T) {
	es := parseFstab([]byte("# c\n\nUUID=abc / ext4 defaults 0 1\n/dev/nvme0n1p3\t/srv/my\\040data xfs nofail\nbad line\n"))
	if len(es) != 2 || es[0].spec != "UUID=abc" || es[1].dir != "/srv/my data" || !es[1].nofail() || es[0].nofail() {
		t.Fatalf("%+v", es)
	}
	for in, want := range map[string]int{"/dev/sda3": 3, "/dev/nvme0n1p12": 12, "/dev/nvme0n1": 0, "/dev/mmcblk0p2": 2, "/dev/vdb1": 1, "/dev/mapper/x1": 0, "UUID=1": 0, "/dev/sda": 0} {
		if got := kernelPartNumber(in); got != want {
			t.Errorf("kernelPartNumber(%q) = %d, want %d", in, got, want)
		}
	}
	if n := osName([]byte("NAME=Arch\nVERSION='rolling'\n")); n != "Arch rolling" {
		t.Errorf("osName: %q", n)
	}
}

// TestSelectMounted finds Linux roots on XFS and btrfs, which are looked
// into through a read-only mount of a copy-on-write view, and checks that
// the source is not changed by it (XFS and btrfs would replay their logs).
func TestSelectMounted(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "sgdisk", "mkfs.xfs", "mkfs.btrfs", "losetup", "mount")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	os.WriteFile(img, nil, 0o644)
	os.Truncate(img, 700<<20)
	if out, err := exec.Command("sgdisk", "-n", "1:0:+320M", "-n", "2:0:+320M", img).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	_, tbl0 := open(t, img)
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc/os-release"), []byte("PRETTY_NAME=\"openSUSE Tumbleweed\"\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "etc/fstab"), []byte("UUID=none / btrfs defaults 0 0\n"), 0o644)
	p1, p2 := tbl0.Partitions[0], tbl0.Partitions[1]
	// XFS: made and filled through a loop device over the partition.
	loop, err := exec.Command("losetup", "-f", "--show", "-o", fmt.Sprint(p1.Start), "--sizelimit", fmt.Sprint(p1.Size), img).Output()
	if err != nil {
		t.Fatal(err)
	}
	dev := strings.TrimSpace(string(loop))
	defer exec.Command("losetup", "-d", dev).Run()
	mnt := t.TempDir()
	for _, c := range [][]string{{"mkfs.xfs", "-q", "-f", dev}, {"mount", dev, mnt}, {"cp", "-a", tree + "/.", mnt}, {"umount", mnt}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", c, err, out)
		}
	}
	// btrfs: filled by mkfs from the tree.
	part := filepath.Join(dir, "btrfs.img")
	os.WriteFile(part, nil, 0o644)
	os.Truncate(part, p2.Size)
	if out, err := exec.Command("mkfs.btrfs", "-q", "--rootdir", tree, part).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.btrfs: %v %s", err, out)
	}
	b, _ := os.ReadFile(part)
	f, _ := os.OpenFile(img, os.O_WRONLY, 0)
	f.WriteAt(b, p2.Start)
	f.Close()
	exec.Command("losetup", "-d", dev).Run()

	before, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	d, tbl := open(t, img)
	sel, err := Select(context.Background(), d, tbl)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sel.Describe(&out)
	t.Logf("\n%s", out.String())
	if len(sel.Taken) != 2 || sel.Taken[0].FS != "xfs" || sel.Taken[1].FS != "btrfs" ||
		sel.Taken[0].Role != "Linux root (openSUSE Tumbleweed)" || sel.Taken[1].Role != "Linux root (openSUSE Tumbleweed)" {
		t.Errorf("taken %+v", sel.Taken)
	}
	after, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("looking into the file systems changed the disk")
	}
}
