package clone

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lifeboat/lifeboat/engine/blockdev"
	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/engine/fsmap/probe"
	"github.com/lifeboat/lifeboat/engine/progress"
	"github.com/lifeboat/lifeboat/engine/ptable"
	"github.com/lifeboat/lifeboat/internal/testdisk"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

func probeAt(d *blockdev.Disk, off, size int64) (fsmap.Info, error) {
	fs, err := probe.Detect(context.Background(), blockdev.Sub(d, off, size), size)
	if err != nil {
		return fsmap.Info{}, err
	}
	return fs.Info(), nil
}

// extFixture is a small GPT disk with two ext4 partitions, built without root.
func extFixture(t *testing.T, dir string) *testdisk.Fixture {
	t.Helper()
	testenv.RequireTools(t, "sgdisk", "mkfs.ext4", "debugfs", "e2fsck")
	return testdisk.Build(t, dir, testdisk.Spec{
		Table: "gpt", Size: 160 * MiB, BootCode: true,
		Parts: []testdisk.Part{
			{FS: "ext4", Size: 48 * MiB, Label: "one", Files: &testdisk.TreeOptions{Seed: 1, TotalBytes: 6 << 20, HardLinks: true, Symlinks: true, Sparse: true, UTF8: true}},
			{FS: "ext4", Size: 64 * MiB, Label: "two", Files: &testdisk.TreeOptions{Seed: 2, TotalBytes: 10 << 20, Symlinks: true}},
		},
	})
}

func TestCloneExtKeepNoRoot(t *testing.T) {
	dir := t.TempDir()
	fx := extFixture(t, dir)
	sum := testdisk.SHA256(t, fx.Path)
	target := testdisk.EmptyFile(t, filepath.Join(dir, "t.img"), 200*MiB)
	res, _ := cloneFiles(t, Options{Source: testdisk.Inspect(t, fx.Path), Target: testdisk.Inspect(t, target), Layout: ptable.LayoutKeep, Verify: true})
	if !res.Verified || res.Copied == 0 {
		t.Fatalf("result %+v", res)
	}
	if testdisk.SHA256(t, fx.Path) != sum {
		t.Fatal("source changed")
	}
	sgdiskVerify(t, target)
	checkClone(t, fx, target, nil)
	// Only used blocks were written: far less than the partitions' size.
	if res.Written > 40*MiB {
		t.Errorf("wrote %d bytes for about 16 MiB of files", res.Written)
	}
}

// TestRefusals checks each safety rule: the clone is refused before
// anything is written, the message says why, and the target is unchanged.
func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	fx := extFixture(t, dir)
	// Too small even with both file systems shrunk to their used blocks.
	small := testdisk.EmptyFile(t, filepath.Join(dir, "small.img"), 48*MiB)
	writeJunk(t, small)
	ok := testdisk.EmptyFile(t, filepath.Join(dir, "ok.img"), 200*MiB)
	writeJunk(t, ok)
	link := filepath.Join(dir, "link.img")
	if err := os.Symlink(fx.Path, link); err != nil {
		t.Fatal(err)
	}
	// An image file is in use through the loop devices attached to it;
	// these stand for what disks.Inspect finds in sysfs (the fake-sysfs
	// tests of engine/disks and TestRefusalsLoop cover the finding).
	held := testdisk.Inspect(t, ok)
	held.Loops = []disks.Loop{{Path: "/dev/loop9", Holders: []string{"dm-0"}}}
	mounted := testdisk.Inspect(t, ok)
	mounted.Loops = []disks.Loop{{Path: "/dev/loop9", Offset: MiB, Mounts: []string{"/mnt/x"}}}
	swapped := testdisk.Inspect(t, ok)
	swapped.Loops = []disks.Loop{{Path: "/dev/loop9", Swap: true}}
	cases := []struct {
		name   string
		opt    Options
		target string
		want   string
	}{
		{"too small", Options{Source: testdisk.Inspect(t, fx.Path), Target: testdisk.Inspect(t, small)}, small, "too small"},
		{"same file", Options{Source: testdisk.Inspect(t, fx.Path), Target: testdisk.Inspect(t, fx.Path)}, fx.Path, "same file"},
		{"same file by symlink", Options{Source: testdisk.Inspect(t, fx.Path), Target: testdisk.Inspect(t, link)}, fx.Path, "same file"},
		{"held by device-mapper", Options{Source: testdisk.Inspect(t, fx.Path), Target: held}, ok, "dm-0"},
		{"mounted partition", Options{Source: testdisk.Inspect(t, fx.Path), Target: mounted}, ok, "mounted on /mnt/x"},
		{"active swap", Options{Source: testdisk.Inspect(t, fx.Path), Target: swapped}, ok, "swap"},
		{"log on target", Options{Source: testdisk.Inspect(t, fx.Path), Target: testdisk.Inspect(t, ok), Protect: []string{ok}}, ok, "writes to"},
		{"overlapping partitions", Options{Source: testdisk.Inspect(t, fx.Path), Target: testdisk.Inspect(t, fx.Path), Partition: 1, ToPartition: 1}, fx.Path, "overlap"},
		{"partition too small", Options{Source: testdisk.Inspect(t, fx.Path), Target: testdisk.Inspect(t, fx.Path), Partition: 2, ToPartition: 1}, fx.Path, "needs"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := testdisk.SHA256(t, c.target)
			srcBefore := testdisk.SHA256(t, fx.Path)
			p, err := MakePlan(context.Background(), c.opt)
			if err == nil {
				_, err = Run(context.Background(), p, nil)
				p.Close()
			}
			var ref *RefusedError
			if !errors.As(err, &ref) {
				t.Fatalf("got %v, want a refusal", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("message %q does not say %q", err, c.want)
			}
			t.Logf("%v", err)
			if testdisk.SHA256(t, c.target) != before || testdisk.SHA256(t, fx.Path) != srcBefore {
				t.Error("a refused clone changed the target or the source")
			}
		})
	}
}

func writeJunk(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for off := int64(0); off < 8*MiB; off += 4096 {
		f.WriteAt([]byte(strings.Repeat("junk", 1024)), off)
	}
}

// TestRefusalsLoop repeats the mount and swap rules with real loop devices:
// the image attached to a loop device and mounted or used as swap.
func TestRefusalsLoop(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "losetup", "mount", "umount", "swapon", "swapoff", "mkswap")
	dir := t.TempDir()
	fx := extFixture(t, dir)
	target := testdisk.EmptyFile(t, filepath.Join(dir, "t.img"), 200*MiB)
	// A copy of the fixture as target so it has a mountable partition.
	copyFile(t, fx.Path, target)
	sum := testdisk.SHA256(t, target)
	loop := losetup(t, target, fx.Parts[0].Start, fx.Parts[0].Size)
	mnt := t.TempDir()
	testdisk.Run(t, "mount", "-o", "ro", loop, mnt)
	opt := Options{Source: testdisk.Inspect(t, fx.Path), Target: testdisk.Inspect(t, target)}
	_, err := MakePlan(context.Background(), opt)
	testdisk.Run(t, "umount", mnt)
	var ref *RefusedError
	if !errors.As(err, &ref) || !strings.Contains(err.Error(), "mounted") {
		t.Fatalf("mounted target: got %v", err)
	}
	if testdisk.SHA256(t, target) != sum {
		t.Error("target changed")
	}
	t.Logf("%v", err)

	swapLoop := losetup(t, target, fx.Parts[1].Start, fx.Parts[1].Size)
	// mkswap over a copy's partition is fine: the target is a scratch copy.
	testdisk.Run(t, "mkswap", swapLoop)
	sum = testdisk.SHA256(t, target)
	testdisk.Run(t, "swapon", swapLoop)
	_, err = MakePlan(context.Background(), Options{Source: testdisk.Inspect(t, fx.Path), Target: testdisk.Inspect(t, target)})
	testdisk.Run(t, "swapoff", swapLoop)
	if !errors.As(err, &ref) || !strings.Contains(err.Error(), "swap") {
		t.Fatalf("swap target: got %v", err)
	}
	t.Logf("%v", err)
	if testdisk.SHA256(t, target) != sum {
		t.Error("target changed")
	}

	// A loop device over the source is the source: refused as a target.
	srcLoop := losetup(t, fx.Path, 0, 0)
	_, err = MakePlan(context.Background(), Options{Source: testdisk.Inspect(t, fx.Path), Target: testdisk.Inspect(t, srcLoop)})
	if !errors.As(err, &ref) {
		t.Fatalf("loop over the source as target: got %v", err)
	}
	t.Logf("%v", err)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func losetup(t *testing.T, file string, off, size int64) string {
	t.Helper()
	args := []string{"-f", "--show"}
	if off > 0 {
		args = append(args, "-o", itoa(off))
	}
	if size > 0 {
		args = append(args, "--sizelimit", itoa(size))
	}
	dev := testdisk.Run(t, "losetup", append(args, file)...)
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestPartitionToPartition(t *testing.T) {
	dir := t.TempDir()
	fx := extFixture(t, dir)
	// The target disk has one larger partition with other data around it.
	tgt := testdisk.Build(t, filepath.Join(dir, "tgt"), testdisk.Spec{
		Table: "gpt", Size: 200 * MiB,
		Parts: []testdisk.Part{
			{FS: "ext4", Size: 40 * MiB, Label: "keepme", Files: &testdisk.TreeOptions{Seed: 9, TotalBytes: 2 << 20}},
			{FS: "none", Size: 100 * MiB},
		},
	})
	keepSum := sha(testdisk.ReadRange(t, tgt.Path, tgt.Parts[0].Start, tgt.Parts[0].Size))
	tableBefore := sha(testdisk.ReadRange(t, tgt.Path, 0, MiB))
	res, p := cloneFiles(t, Options{Source: testdisk.Inspect(t, fx.Path), Target: testdisk.Inspect(t, tgt.Path), Partition: 1, ToPartition: 2, Verify: true})
	if !res.Verified {
		t.Error("not verified")
	}
	if p.DstTable != nil {
		t.Error("a partition clone must not write the target's table")
	}
	if sha(testdisk.ReadRange(t, tgt.Path, tgt.Parts[0].Start, tgt.Parts[0].Size)) != keepSum || sha(testdisk.ReadRange(t, tgt.Path, 0, MiB)) != tableBefore {
		t.Error("the target's other partition or its table changed")
	}
	part := fx.Parts[0]
	part.Start, part.Size = tgt.Parts[1].Start, tgt.Parts[1].Size
	testdisk.Fsck(t, tgt.Path, part.Start, part.Size, "ext4")
	got := filepath.Join(t.TempDir(), "got")
	testdisk.Extract(t, tgt.Path, part, got)
	testdisk.CompareTrees(t, fx.Parts[0].SrcDir, got)
	if os.Geteuid() == 0 {
		d, _ := blockdev.Open(context.Background(), tgt.Path, blockdev.Options{})
		info, err := probeAt(d, part.Start, part.Size)
		d.Close()
		if err != nil || info.Size != part.Size {
			t.Errorf("file system not grown to the 100 MiB partition: %+v %v", info, err)
		}
	}

	// Partition 2 into partition 1 of the same disk works too.
	same := testdisk.EmptyFile(t, filepath.Join(dir, "same.img"), 0)
	copyFile(t, fx.Path, same)
	_, _ = cloneFiles(t, Options{Source: testdisk.Inspect(t, same), Target: testdisk.Inspect(t, same), Partition: 1, ToPartition: 2, Layout: ptable.LayoutKeep})
	part = fx.Parts[0]
	part.Start, part.Size = fx.Parts[1].Start, fx.Parts[1].Size
	testdisk.Fsck(t, same, part.Start, part.Size, "ext4")
	got2 := filepath.Join(t.TempDir(), "got2")
	testdisk.Extract(t, same, part, got2)
	testdisk.CompareTrees(t, fx.Parts[0].SrcDir, got2)
}

func TestSectorBySector(t *testing.T) {
	dir := t.TempDir()
	fx := extFixture(t, dir)
	target := testdisk.EmptyFile(t, filepath.Join(dir, "t.img"), 256*MiB)
	res, _ := cloneFiles(t, Options{Source: testdisk.Inspect(t, fx.Path), Target: testdisk.Inspect(t, target), SectorBySector: true, Verify: true})
	if !res.Verified || res.Copied != 160*MiB {
		t.Errorf("result %+v", res)
	}
	// Every byte from the first partition to the end of the source equals.
	first := fx.Parts[0].Start
	if sha(testdisk.ReadRange(t, fx.Path, first, 150*MiB)) != sha(testdisk.ReadRange(t, target, first, 150*MiB)) {
		t.Error("content differs")
	}
	sgdiskVerify(t, target)
	checkClone(t, fx, target, nil)
}

func TestCancelLeavesNoTable(t *testing.T) {
	dir := t.TempDir()
	fx := extFixture(t, dir)
	target := testdisk.EmptyFile(t, filepath.Join(dir, "t.img"), 200*MiB)
	p, err := MakePlan(context.Background(), Options{Source: testdisk.Inspect(t, fx.Path), Target: testdisk.Inspect(t, target), ChunkSize: 64 << 10, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	c := &progress.Counters{}
	go func() {
		for {
			s := c.Snapshot()
			if s.Phase == PhaseCopy && s.Done > 0 {
				cancel()
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	_, err = Run(ctx, p, c)
	var inc *IncompleteError
	if !errors.As(err, &inc) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want an incomplete target after cancel", err)
	}
	t.Logf("error: %v", err)
	if tbl := testdisk.ReadTable(t, target); tbl.Kind != ptable.None {
		t.Errorf("an interrupted clone left a %s table", tbl.Kind)
	}
}

func TestVerifyFindsDifference(t *testing.T) {
	dir := t.TempDir()
	src := testdisk.EmptyFile(t, filepath.Join(dir, "a"), 8*MiB)
	writeJunk(t, src)
	dst := testdisk.EmptyFile(t, filepath.Join(dir, "b"), 8*MiB)
	s, _ := blockdev.Open(context.Background(), src, blockdev.Options{})
	d, _ := blockdev.Open(context.Background(), dst, blockdev.Options{Mode: blockdev.ReadWrite})
	defer s.Close()
	defer d.Close()
	cp := &copier{src: s, dst: d, chunk: MiB, workers: 2, sums: true}
	sums, err := cp.run(context.Background(), []span{{src: 0, dst: 0, n: 8 * MiB}})
	if err != nil {
		t.Fatal(err)
	}
	if bad, err := verify(context.Background(), d, sums, MiB, 2, nil); err != nil || len(bad) != 0 {
		t.Fatalf("clean copy: %v %v", bad, err)
	}
	d.WriteAt([]byte{0xff}, 3*MiB+17)
	bad, err := verify(context.Background(), d, sums, MiB, 2, nil)
	if err != nil || len(bad) != 1 || bad[0].Off != 3*MiB {
		t.Fatalf("flipped byte: got %v %v", bad, err)
	}
	if msg := (&VerifyError{Mismatches: bad}).Error(); !strings.Contains(msg, "3145728-4194303") {
		t.Errorf("message %q does not name the range", msg)
	}
}

func sha(b []byte) [32]byte { return blake3Sum(b) }

// TestCloneLoopDevices clones between block devices: the source and the
// target image files attached to loop devices, so the target is opened
// with O_EXCL, discarded with BLKDISCARD and its table re-read.
func TestCloneLoopDevices(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "losetup", "resize2fs")
	dir := t.TempDir()
	fx := extFixture(t, dir)
	sum := testdisk.SHA256(t, fx.Path)
	target := testdisk.EmptyFile(t, filepath.Join(dir, "t.img"), 256*MiB)
	writeJunk(t, target)
	srcDev := losetup(t, fx.Path, 0, 0)
	dstDev := losetup(t, target, 0, 0)
	src, dst := testdisk.Inspect(t, srcDev), testdisk.Inspect(t, dstDev)
	if src.IsFile || dst.IsFile || dst.Transport != "loop" {
		t.Fatalf("not block devices: %+v %+v", src, dst)
	}
	// While the clone holds the target exclusively, nobody else may.
	res, p := cloneFiles(t, Options{Source: src, Target: dst, Verify: true})
	if !res.Verified || p.Items[len(p.Items)-1].GrowTo == 0 {
		t.Errorf("result %+v, last item %+v", res, p.Items[len(p.Items)-1])
	}
	if testdisk.SHA256(t, fx.Path) != sum {
		t.Fatal("source changed")
	}
	sgdiskVerify(t, target)
	checkClone(t, fx, target, map[int]bool{2: true})

	// O_EXCL: a target held open exclusively elsewhere is refused at open.
	held, err := os.OpenFile(dstDev, os.O_RDWR|unix.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	p2, err := MakePlan(context.Background(), Options{Source: src, Target: testdisk.Inspect(t, dstDev)})
	if err == nil {
		_, err = Run(context.Background(), p2, nil)
		p2.Close()
	}
	var ref *RefusedError
	if !errors.As(err, &ref) || !strings.Contains(err.Error(), "exclusively") {
		t.Fatalf("target held exclusively: got %v", err)
	}
	t.Log(err)
}

// TestCloneTo4KSectors clones a 512-byte-sector disk onto a disk with
// 4096-byte logical sectors (a loop device with that sector size): ext4
// with 4 KiB blocks translates exactly; FAT with 512-byte sectors is refused.
func TestCloneTo4KSectors(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "losetup", "sgdisk", "mkfs.fat")
	dir := t.TempDir()
	fx := testdisk.Build(t, dir, testdisk.Spec{
		// mke2fs picks 4 KiB blocks from 512 MiB up; smaller ones get
		// 1 KiB blocks, which a 4K disk cannot hold.
		Table: "gpt", Size: 640 * MiB,
		Parts: []testdisk.Part{
			{FS: "ext4", Size: 560 * MiB, Label: "four-k", Files: &testdisk.TreeOptions{Seed: 4, TotalBytes: 4 << 20, Symlinks: true}},
			{FS: "none", Size: 32 * MiB},
		},
	})
	target := testdisk.EmptyFile(t, filepath.Join(dir, "t4k.img"), 700*MiB)
	dev := testdisk.Run(t, "losetup", "-f", "--show", "--sector-size", "4096", target)
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	dst := testdisk.Inspect(t, dev)
	if dst.LogicalSectorSize != 4096 {
		t.Fatalf("loop device has %d-byte sectors", dst.LogicalSectorSize)
	}
	_, p := cloneFiles(t, Options{Source: testdisk.Inspect(t, fx.Path), Target: dst, Layout: ptable.LayoutKeep, Verify: true})
	if p.DstTable.SectorSize != 4096 {
		t.Fatalf("table written with %d-byte sectors", p.DstTable.SectorSize)
	}
	exec.Command("losetup", "-d", dev).Run()
	// Read back through a fresh 4K loop device, as a 4Kn disk shows it.
	dev2 := testdisk.Run(t, "losetup", "-f", "--show", "--sector-size", "4096", target)
	t.Cleanup(func() { exec.Command("losetup", "-d", dev2).Run() })
	sg, _ := testenv.LookPath("sgdisk")
	if out, err := exec.Command(sg, "-v", dev2).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v on the 4K disk: %v\n%s", err, out)
	}
	d, err := blockdev.Open(context.Background(), dev2, blockdev.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := ptable.Read(context.Background(), d, d.Size(), d.SectorSize())
	d.Close()
	if err != nil || tbl.Kind != ptable.GPT {
		t.Fatalf("read the 4K table: %v %+v", err, tbl)
	}
	for i, part := range fx.Parts {
		tp, ok := tbl.Find(part.Number)
		if !ok || tp.Start != part.Start || tp.Size != part.Size {
			t.Fatalf("partition %d moved: %+v vs %+v", part.Number, tp, part)
		}
		if i == 0 {
			testdisk.Fsck(t, target, tp.Start, tp.Size, part.FS)
			got := filepath.Join(t.TempDir(), "got")
			testdisk.Extract(t, target, part, got)
			testdisk.CompareTrees(t, part.SrcDir, got)
		}
	}

	// FAT with 512-byte sectors cannot live on the 4K disk.
	fat := testdisk.Build(t, filepath.Join(dir, "fat"), testdisk.Spec{
		Table: "gpt", Size: 80 * MiB,
		Parts: []testdisk.Part{{FS: "vfat", Size: 40 * MiB, Label: "ESP"}},
	})
	before := testdisk.SHA256(t, target)
	_, err = MakePlan(context.Background(), Options{Source: testdisk.Inspect(t, fat.Path), Target: testdisk.Inspect(t, dev2)})
	var ref *RefusedError
	if !errors.As(err, &ref) || !strings.Contains(err.Error(), "512-byte sectors") {
		t.Fatalf("FAT onto 4K sectors: got %v", err)
	}
	t.Log(err)
	if testdisk.SHA256(t, target) != before {
		t.Error("target changed")
	}
}

// TestHibernatedNTFS clones a disk whose NTFS volume holds a hibernated
// Windows onto a larger disk: the volume is copied exactly and not grown,
// and the plan says why.
func TestHibernatedNTFS(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "mkntfs", "ntfs-3g", "sgdisk", "ntfsfix")
	dir := t.TempDir()
	vol := testdisk.EmptyFile(t, filepath.Join(dir, "ntfs.img"), 64*MiB)
	testdisk.Run(t, "mkntfs", "-q", "-F", "-Q", "-L", "Windows", vol)
	mnt := t.TempDir()
	testdisk.Run(t, "ntfs-3g", vol, mnt)
	hib := append([]byte("hibr"), make([]byte, 1<<20)...)
	err := os.WriteFile(filepath.Join(mnt, "hiberfil.sys"), hib, 0o644)
	os.WriteFile(filepath.Join(mnt, "document.txt"), []byte("unsaved work\n"), 0o644)
	testdisk.Run(t, "umount", mnt)
	if err != nil {
		t.Fatal(err)
	}
	disk := testdisk.EmptyFile(t, filepath.Join(dir, "disk.img"), 80*MiB)
	testdisk.Run(t, "sgdisk", "-n", "1:2048:+64M", "-t", "1:0700", disk)
	f, _ := os.OpenFile(disk, os.O_WRONLY, 0)
	f.WriteAt(testdisk.ReadRange(t, vol, 0, 64*MiB), MiB)
	f.Close()
	target := testdisk.EmptyFile(t, filepath.Join(dir, "t.img"), 160*MiB)
	res, p := cloneFiles(t, Options{Source: testdisk.Inspect(t, disk), Target: testdisk.Inspect(t, target), Verify: true})
	if p.Items[0].GrowTo != 0 {
		t.Error("a hibernated NTFS volume was planned to grow")
	}
	found := false
	for _, w := range res.Warnings {
		if strings.Contains(w, "not grown") && strings.Contains(w, "hibernated") {
			found = true
		}
	}
	if !found {
		t.Errorf("no warning that the hibernated volume is not grown: %q", res.Warnings)
	}
	tbl := testdisk.ReadTable(t, target)
	tp, _ := tbl.Find(1)
	if tp.Size <= 64*MiB {
		t.Errorf("the partition should still grow: %d", tp.Size)
	}
	// Every byte of the volume is as it was: Windows can resume.
	if sha(testdisk.ReadRange(t, target, tp.Start, 64*MiB)) != sha(testdisk.ReadRange(t, vol, 0, 64*MiB)) {
		t.Error("the hibernated volume's bytes changed")
	}
	testdisk.Fsck(t, target, tp.Start, 64*MiB, "ntfs")
}

// TestDeltaWritesOnlyDifferences clones, changes one file's blocks on the
// target, and clones again with Delta: only the changed pieces are written
// and the target equals a full clone.
func TestDeltaWritesOnlyDifferences(t *testing.T) {
	dir := t.TempDir()
	fx := extFixture(t, dir)
	target := testdisk.EmptyFile(t, filepath.Join(dir, "t.img"), 160*MiB)
	full, _ := cloneFiles(t, Options{Source: testdisk.Inspect(t, fx.Path), Target: testdisk.Inspect(t, target), Layout: ptable.LayoutKeep})
	res, _ := cloneFiles(t, Options{Source: testdisk.Inspect(t, fx.Path), Target: testdisk.Inspect(t, target), Layout: ptable.LayoutKeep, Delta: true})
	if res.Written != 0 || res.Copied != full.Copied {
		t.Fatalf("delta over an identical target: wrote %d bytes, compared %d (full clone copied %d)", res.Written, res.Copied, full.Copied)
	}
	// Damage 1 MiB inside the first partition's used data on the target.
	junk := make([]byte, MiB)
	for i := range junk {
		junk[i] = 0x5a
	}
	f, _ := os.OpenFile(target, os.O_WRONLY, 0)
	f.WriteAt(junk, fx.Parts[0].Start+8*MiB)
	f.Close()
	res, _ = cloneFiles(t, Options{Source: testdisk.Inspect(t, fx.Path), Target: testdisk.Inspect(t, target), Layout: ptable.LayoutKeep, Delta: true, Verify: true})
	if res.Written == 0 || res.Written > 2*defaultChunk {
		t.Errorf("delta after a 1 MiB change wrote %d bytes", res.Written)
	}
	checkClone(t, fx, target, nil)
}

// TestSharesStorage checks the containment rules behind "the source is
// never written": a file inside a file system that lives in an image file
// shares that image's bytes; two files side by side do not.
func TestSharesStorage(t *testing.T) {
	dir := t.TempDir()
	a := testdisk.EmptyFile(t, filepath.Join(dir, "a.img"), MiB)
	b := testdisk.EmptyFile(t, filepath.Join(dir, "b.img"), MiB)
	if same, how, err := SharesStorage("", a, b); err != nil || same {
		t.Fatalf("side-by-side files: %v %q %v", same, how, err)
	}
	if same, _, err := SharesStorage("", a, a); err != nil || !same {
		t.Fatalf("a file and itself: %v %v", same, err)
	}
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "mkfs.ext4", "losetup", "mount", "umount")
	fsimg := testdisk.EmptyFile(t, filepath.Join(dir, "fs.img"), 64*MiB)
	testdisk.Run(t, "mkfs.ext4", "-q", "-F", fsimg)
	loop := losetup(t, fsimg, 0, 0)
	mnt := t.TempDir()
	testdisk.Run(t, "mount", loop, mnt)
	defer testdisk.Run(t, "umount", mnt)
	inner := testdisk.EmptyFile(t, filepath.Join(mnt, "inner.img"), MiB)
	for _, c := range []struct{ x, y string }{{inner, fsimg}, {fsimg, inner}, {mnt, fsimg}, {loop, inner}} {
		same, how, err := SharesStorage("", c.x, c.y)
		if err != nil || !same {
			t.Errorf("%s and %s: shared %v (%s), %v", c.x, c.y, same, how, err)
		}
		t.Logf("%s / %s: %s", c.x, c.y, how)
	}
	if same, how, _ := SharesStorage("", inner, a); same {
		t.Errorf("a file inside fs.img and a file beside it share storage: %s", how)
	}
}
