package clone

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
	"github.com/lifeboat/lifeboat/engine/fsmap/probe"
	"github.com/lifeboat/lifeboat/engine/progress"
	"github.com/lifeboat/lifeboat/internal/sysdisk"
	"github.com/lifeboat/lifeboat/internal/testdisk"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

// fsUUID reads the UUID of the file system in partition n of disk.
func fsUUID(t *testing.T, disk string, n int) string {
	t.Helper()
	tbl := testdisk.ReadTable(t, disk)
	p, ok := tbl.Find(n)
	if !ok {
		t.Fatalf("%s has no partition %d", disk, n)
	}
	d, err := blockdev.Open(context.Background(), disk, blockdev.Options{Mode: blockdev.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fs, err := probe.Detect(context.Background(), blockdev.Sub(d, p.Start, p.Size), p.Size)
	if err != nil {
		t.Fatal(err)
	}
	return fs.Info().UUID
}

func planText(p *Plan) string {
	var b bytes.Buffer
	p.Describe(&b)
	return b.String()
}

// sourceImage is a disk image a test clones, with its checksum taken before
// anything runs so that the test can check that cloning leaves it as it was.
type sourceImage struct {
	path, sum string
}

func newSourceImage(t *testing.T, path string) sourceImage {
	t.Helper()
	return sourceImage{path: path, sum: testdisk.SHA256(t, path)}
}

// unchanged fails the test at once if the source image no longer has the
// checksum it had.
func (s sourceImage) unchanged(t *testing.T) {
	t.Helper()
	if testdisk.SHA256(t, s.path) != s.sum {
		t.Fatal("the source changed")
	}
}

// planOnto plans a clone of src onto a new empty image of size bytes, with
// opts (Source and Target are set here), and logs the plan. It returns the
// plan, its text and the target image's path.
func planOnto(t *testing.T, src sourceImage, size int64, opts Options) (*Plan, string, string) {
	t.Helper()
	target := testdisk.EmptyFile(t, filepath.Join(t.TempDir(), "target.img"), size)
	opts.Source, opts.Target = testdisk.Inspect(t, src.path), testdisk.Inspect(t, target)
	p, err := MakePlan(context.Background(), opts)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	text := planText(p)
	t.Logf("plan:\n%s", text)
	return p, text, target
}

// runPlan runs p with counters c (nil: none), closes it, and fails the test
// at once if the run fails or the source changed.
func runPlan(t *testing.T, p *Plan, c *progress.Counters, src sourceImage) {
	t.Helper()
	_, err := Run(context.Background(), p, c)
	p.Close()
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	src.unchanged(t)
}

// TestSystemClone clones the bootable fixture with System onto a larger
// disk, onto a smaller one its system partitions fit as they are, and onto
// one so small that the root must shrink; each copy boots under SeaBIOS
// and OVMF (which has no boot entry, so only the fallback loader that the
// clone adds can boot it) to the marker naming the root it mounted, and
// the source's checksum never changes.
func TestSystemClone(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "e2fsck", "resize2fs", "qemu-system-x86_64")
	dir := t.TempDir()
	src := sysdisk.Build(t, filepath.Join(dir, "src"), sysdisk.Options{})
	srcImg := newSourceImage(t, src.Path)
	cases := []struct {
		name   string
		size   int64
		shrunk bool
		boot   []sysdisk.Firmware
	}{
		{"larger", src.Size + 64*MiB, false, []sysdisk.Firmware{sysdisk.BIOS, sysdisk.UEFI}},
		{"smaller", src.Size - 24*MiB, false, []sysdisk.Firmware{sysdisk.BIOS}},
		{"smaller-shrunk", 84 * MiB, true, []sysdisk.Firmware{sysdisk.BIOS, sysdisk.UEFI}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, text, target := planOnto(t, srcImg, c.size, Options{System: true, Verify: true})
			var nums []int
			for _, it := range p.Items {
				nums = append(nums, it.Number)
				if it.Number == sysdisk.PartRoot && (it.ShrunkFrom > 0) != c.shrunk {
					t.Errorf("root shrunk from %d, want shrunk=%v", it.ShrunkFrom, c.shrunk)
				}
			}
			if len(nums) != 3 || nums[0] != sysdisk.PartBIOS || nums[1] != sysdisk.PartESP || nums[2] != sysdisk.PartRoot {
				t.Errorf("copies partitions %v, want the BIOS boot partition, the ESP and the root", nums)
			}
			for _, want := range []string{"leave partition 1: /srv/data from fstab", "take  partition 4: Linux root (Debian GNU/Linux 12 (bookworm))", "GRUB's BIOS boot code and core image point at the BIOS boot partition's new place", `\EFI\BOOT\BOOTX64.EFI from \EFI\debian\shimx64.efi`} {
				if !strings.Contains(text, want) {
					t.Errorf("the plan does not say %q", want)
				}
			}
			if strings.Contains(text, "GRUB's BIOS boot code is not adapted") {
				t.Errorf("the plan warns that GRUB's boot code is not adapted")
			}
			if c.shrunk && !strings.Contains(text, "shrink ext4 from 96.0 MiB") {
				t.Errorf("the plan does not say the root shrinks")
			}
			runPlan(t, p, &progress.Counters{}, srcImg)
			tbl := testdisk.ReadTable(t, target)
			if _, ok := tbl.Find(sysdisk.PartData); ok || len(tbl.Partitions) != 3 {
				t.Errorf("target partitions %+v, want 2, 3 and 4 only", tbl.Partitions)
			}
			first := int64(-1)
			for _, tp := range tbl.Partitions {
				if tp.Start%MiB != 0 {
					t.Errorf("partition %d starts at %d, not on a MiB", tp.Number, tp.Start)
				}
				if first < 0 || tp.Start < first {
					first = tp.Start
				}
			}
			if first != MiB {
				t.Errorf("the first partition starts at %d, want 1 MiB (laid out from the start)", first)
			}
			rp, _ := tbl.Find(sysdisk.PartRoot)
			testdisk.Fsck(t, target, rp.Start, rp.Size, "ext4")
			for _, fw := range c.boot {
				b := sysdisk.Boot(t, fw, target)
				if b.Root != src.RootUUID || b.Fstab != src.RootUUID {
					t.Errorf("%s: booted root %q, fstab %q; want %q", fw, b.Root, b.Fstab, src.RootUUID)
				}
			}
		})
	}
}

// TestSystemNewIDs clones the fixture with new identities and boots each
// disk with both attached: each finds its own root.
func TestSystemNewIDs(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "e2fsck", "tune2fs", "mcopy", "qemu-system-x86_64")
	dir := t.TempDir()
	src := sysdisk.Build(t, filepath.Join(dir, "src"), sysdisk.Options{})
	srcImg := newSourceImage(t, src.Path)
	p, _, target := planOnto(t, srcImg, src.Size, Options{System: true, NewIDs: true})
	runPlan(t, p, nil, srcImg)
	st, tt := testdisk.ReadTable(t, src.Path), testdisk.ReadTable(t, target)
	if st.DiskGUID == tt.DiskGUID {
		t.Error("the disk GUID is the same")
	}
	for _, tp := range tt.Partitions {
		sp, _ := st.Find(tp.Number)
		if sp.GUID == tp.GUID {
			t.Errorf("partition %d keeps its GUID", tp.Number)
		}
	}
	newRoot := fsUUID(t, target, sysdisk.PartRoot)
	if newRoot == src.RootUUID || newRoot == "" {
		t.Fatalf("the copy's root UUID is %q, the source's %q", newRoot, src.RootUUID)
	}
	if s := fsUUID(t, target, sysdisk.PartESP); s == src.ESPSerial {
		t.Errorf("the copy's ESP keeps the serial %s", s)
	}
	rp, _ := tt.Find(sysdisk.PartRoot)
	testdisk.Fsck(t, target, rp.Start, rp.Size, "ext4")
	sp, _ := st.Find(sysdisk.PartRoot)
	testdisk.Fsck(t, src.Path, sp.Start, sp.Size, "ext4")
	b := sysdisk.Boot(t, sysdisk.BIOS, target, src.Path)
	if b.Root != newRoot || b.Fstab != newRoot {
		t.Errorf("booting the copy (source attached too): root %q, fstab %q; want %q", b.Root, b.Fstab, newRoot)
	}
	// Under OVMF the copy's \EFI\debian\grub.cfg (rewritten) finds its root.
	b = sysdisk.Boot(t, sysdisk.UEFI, target, src.Path)
	if b.Root != newRoot || b.Fstab != newRoot {
		t.Errorf("booting the copy under OVMF (source attached too): root %q, fstab %q; want %q", b.Root, b.Fstab, newRoot)
	}
	b = sysdisk.Boot(t, sysdisk.BIOS, src.Path, target)
	if b.Root != src.RootUUID || b.Fstab != src.RootUUID {
		t.Errorf("booting the source (copy attached too): root %q, fstab %q; want %q", b.Root, b.Fstab, src.RootUUID)
	}
	srcImg.unchanged(t)
}

// TestSmallerXFSRefused refuses a smaller target when an XFS file system
// would have to shrink, with the sizes and the ways out.
func TestSmallerXFSRefused(t *testing.T) {
	testenv.RequireTools(t, "sgdisk", "mkfs.ext4", "mkfs.xfs")
	dir := t.TempDir()
	img := testdisk.EmptyFile(t, filepath.Join(dir, "src.img"), 360*MiB)
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
	}
	run("sgdisk", "-n", "1:0:+16M", "-n", "2:0:0", img)
	tbl := testdisk.ReadTable(t, img)
	for n, fs := range map[int]string{1: "mkfs.ext4", 2: "mkfs.xfs"} {
		p, _ := tbl.Find(n)
		part := testdisk.EmptyFile(t, filepath.Join(dir, "p.img"), p.Size)
		run(fs, "-q", part)
		b, err := os.ReadFile(part)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := os.OpenFile(img, os.O_WRONLY, 0)
		f.WriteAt(b, p.Start)
		f.Close()
		os.Remove(part)
	}
	srcImg := newSourceImage(t, img)
	target := testdisk.EmptyFile(t, filepath.Join(dir, "dst.img"), 200*MiB)
	_, err := MakePlan(context.Background(), Options{Source: testdisk.Inspect(t, img), Target: testdisk.Inspect(t, target)})
	var ref *RefusedError
	if !errors.As(err, &ref) {
		t.Fatalf("got %v, want a refusal", err)
	}
	t.Log(err)
	for _, want := range []string{"too small", "200.0 MiB", "XFS cannot shrink", "--system", "larger target"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not say %q", want)
		}
	}
	srcImg.unchanged(t)
}

// windowsDisk builds a GPT disk laid out as Windows installs itself: ESP,
// Microsoft reserved, the Windows NTFS volume (a file tree and
// \Windows\System32), a recovery NTFS volume, and an NTFS data volume.
func windowsDisk(t *testing.T, dir string) *testdisk.Fixture {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "mkntfs", "ntfs-3g", "ntfsls", "ntfsfix", "losetup")
	fx := testdisk.Build(t, dir, testdisk.Spec{Table: "gpt", Size: 240 * MiB, Parts: []testdisk.Part{
		{FS: "vfat", FATSize: 16, Size: 16 * MiB, Label: "SYSTEM", GPTType: "ef00"},
		{FS: "none", Size: 16 * MiB, GPTType: "0c01"},
		{FS: "ntfs", Size: 96 * MiB, Label: "Windows", GPTType: "0700", Files: &testdisk.TreeOptions{Seed: 7, TotalBytes: 12 << 20, HardLinks: true, UTF8: true}},
		{FS: "ntfs", Size: 32 * MiB, Label: "Recovery", GPTType: "2700"},
		{FS: "ntfs", Size: 64 * MiB, Label: "Data", GPTType: "0700", Files: &testdisk.TreeOptions{Seed: 8, TotalBytes: 2 << 20}},
	}})
	win := fx.Parts[2]
	out, err := exec.Command("losetup", "-f", "--show", "-o", fmt.Sprint(win.Start), "--sizelimit", fmt.Sprint(win.Size), fx.Path).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", loop).Run()
	mnt := t.TempDir()
	if b, err := exec.Command("ntfs-3g", loop, mnt).CombinedOutput(); err != nil {
		t.Fatalf("ntfs-3g: %v %s", err, b)
	}
	os.MkdirAll(filepath.Join(mnt, "Windows/System32"), 0o755)
	os.WriteFile(filepath.Join(mnt, "Windows/System32/ntoskrnl.exe"), bytes.Repeat([]byte("MZ kernel "), 4096), 0o644)
	if b, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, b)
	}
	return fx
}

// TestSystemWindowsShrink selects the Windows partitions of a Windows
// layout (the data volume is left out), clones them onto a disk so small
// that the Windows volume must shrink (ntfsresize on a copy-on-write view),
// and checks the copy with ntfsfix and by comparing every file with the
// source's.
func TestSystemWindowsShrink(t *testing.T) {
	dir := t.TempDir()
	fx := windowsDisk(t, filepath.Join(dir, "src"))
	srcImg := newSourceImage(t, fx.Path)
	p, text, target := planOnto(t, srcImg, 128*MiB, Options{System: true, Verify: true})
	for _, want := range []string{
		"take  partition 1: EFI system partition", "take  partition 2: Microsoft reserved", `take  partition 3: Windows (\Windows\System32)`,
		"take  partition 4: Windows recovery", "leave partition 5: data", "shrink ntfs from 96.0 MiB",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the plan does not say %q", want)
		}
	}
	runPlan(t, p, nil, srcImg)
	tbl := testdisk.ReadTable(t, target)
	tp, ok := tbl.Find(3)
	if !ok || tp.Size >= 96*MiB {
		t.Fatalf("the Windows partition on the target: %+v", tp)
	}
	// ntfsfix -n reports problems without changing anything; run it on a
	// copy of the partition, as ntfs-3g tools take no offset.
	part := filepath.Join(dir, "win.img")
	b, _ := os.ReadFile(target)
	os.WriteFile(part, b[tp.Start:tp.End()], 0o644)
	if out, err := exec.Command("ntfsfix", "-n", part).CombinedOutput(); err != nil {
		t.Errorf("ntfsfix -n: %v\n%s", err, out)
	}
	want, got := filepath.Join(dir, "want"), filepath.Join(dir, "got")
	src := fx.Parts[2]
	testdisk.Extract(t, fx.Path, src, want)
	testdisk.Extract(t, target, testdisk.PartInfo{Number: 3, Start: tp.Start, Size: tp.Size, FS: "ntfs"}, got)
	testdisk.CompareTrees(t, want, got)
	if _, err := os.Stat(filepath.Join(got, "Windows/System32/ntoskrnl.exe")); err != nil {
		t.Errorf("the copy lacks \\Windows\\System32\\ntoskrnl.exe: %v", err)
	}
}

// TestSystemCloneMBR clones a classic BIOS disk (MBR table, GRUB's core
// image in the gap after the MBR) with System onto a smaller disk: the
// root moves to the start, keeps its number (GRUB's prefix names it), the
// boot code and the gap come along, and the copy boots under SeaBIOS.
func TestSystemCloneMBR(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "qemu-system-x86_64")
	dir := t.TempDir()
	src := sysdisk.Build(t, filepath.Join(dir, "src"), sysdisk.Options{MBR: true})
	srcImg := newSourceImage(t, src.Path)
	p, text, target := planOnto(t, srcImg, 100*MiB, Options{System: true, Verify: true})
	if !strings.Contains(text, "boot area before the first partition") || len(p.Items) != 1 || p.Items[0].Number != sysdisk.MBRPartRoot {
		t.Errorf("want only the root and the boot area copied")
	}
	runPlan(t, p, nil, srcImg)
	tbl := testdisk.ReadTable(t, target)
	rp, ok := tbl.Find(sysdisk.MBRPartRoot)
	if !ok || len(tbl.Partitions) != 1 || rp.Start != MiB || !rp.Bootable {
		t.Fatalf("target partitions %+v, want the active root alone at 1 MiB as partition 2", tbl.Partitions)
	}
	if !bytes.Equal(testdisk.ReadRange(t, target, 0, 440), testdisk.ReadRange(t, src.Path, 0, 440)) ||
		!bytes.Equal(testdisk.ReadRange(t, target, 512, MiB-512), testdisk.ReadRange(t, src.Path, 512, MiB-512)) {
		t.Error("the boot code or the gap after the MBR differ from the source's")
	}
	b := sysdisk.Boot(t, sysdisk.BIOS, target)
	if b.Root != src.RootUUID || b.Fstab != src.RootUUID {
		t.Errorf("booted root %q, fstab %q; want %q", b.Root, b.Fstab, src.RootUUID)
	}
}

// TestSmallerShrinksExtAndFAT clones a whole disk (no --system) onto one
// smaller than the source: the ext4 and FAT file systems both shrink, each
// by its room, on copy-on-write views; every file of the copy matches the
// source's, fsck accepts both, and the source is unchanged.
func TestSmallerShrinksExtAndFAT(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "e2fsck", "resize2fs", "fsck.fat", "mcopy")
	dir := t.TempDir()
	fx := testdisk.Build(t, filepath.Join(dir, "src"), testdisk.Spec{Table: "gpt", Size: 160 * MiB, Parts: []testdisk.Part{
		{FS: "ext4", Size: 72 * MiB, Label: "linux", Files: &testdisk.TreeOptions{Seed: 21, TotalBytes: 8 << 20, HardLinks: true, Symlinks: true, Sparse: true}},
		{FS: "vfat", FATSize: 16, Size: 72 * MiB, Label: "FAT", Files: &testdisk.TreeOptions{Seed: 22, TotalBytes: 6 << 20, BMPOnly: true}},
	}})
	srcImg := newSourceImage(t, fx.Path)
	p, _, target := planOnto(t, srcImg, 120*MiB, Options{Verify: true})
	for _, it := range p.Items {
		if it.ShrunkFrom == 0 {
			t.Errorf("partition %d was not shrunk", it.Number)
		}
	}
	runPlan(t, p, nil, srcImg)
	tbl := testdisk.ReadTable(t, target)
	for i, part := range fx.Parts {
		tp, ok := tbl.Find(part.Number)
		if !ok || tp.Size >= part.Size {
			t.Fatalf("partition %d on the target: %+v", part.Number, tp)
		}
		testdisk.Fsck(t, target, tp.Start, tp.Size, part.FS)
		want, got := filepath.Join(dir, fmt.Sprint("want", i)), filepath.Join(dir, fmt.Sprint("got", i))
		testdisk.Extract(t, fx.Path, part, want)
		testdisk.Extract(t, target, testdisk.PartInfo{Number: tp.Number, Start: tp.Start, Size: tp.Size, FS: part.FS}, got)
		testdisk.CompareTrees(t, want, got)
	}
}
