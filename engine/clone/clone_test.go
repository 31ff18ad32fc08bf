package clone

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/engine/blockdev"
	"github.com/lifeboat/lifeboat/engine/progress"
	"github.com/lifeboat/lifeboat/engine/ptable"
	"github.com/lifeboat/lifeboat/internal/testdisk"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

const MiB = 1 << 20

func cloneFiles(t *testing.T, opt Options) (*Result, *Plan) {
	t.Helper()
	p, err := MakePlan(context.Background(), opt)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	defer p.Close()
	var buf bytes.Buffer
	p.Describe(&buf)
	t.Logf("plan:\n%s", buf.String())
	res, err := Run(context.Background(), p, &progress.Counters{})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return res, p
}

// checkClone checks the fixture's copy on target, and that the file
// systems of the partitions in grown fill their (larger) partitions.
func checkClone(t *testing.T, fx *testdisk.Fixture, target string, grown map[int]bool) {
	t.Helper()
	tbl := testdisk.CheckCopy(t, fx, target)
	for _, part := range fx.Parts {
		tp, _ := tbl.Find(part.Number)
		if !grown[part.Number] || tp.Size <= part.Size {
			continue
		}
		d, err := blockdev.Open(context.Background(), target, blockdev.Options{})
		if err != nil {
			t.Fatal(err)
		}
		fs, err := probeAt(d, tp.Start, tp.Size)
		d.Close()
		if err != nil {
			t.Fatal(err)
		}
		if fs.Size < tp.Size-2*MiB {
			t.Errorf("partition %d: %s file system is %d bytes in a %d-byte partition: not grown", part.Number, part.FS, fs.Size, tp.Size)
		}
	}
}

func sgdiskVerify(t *testing.T, path string) {
	t.Helper()
	sg, _ := testenv.LookPath("sgdisk")
	out, err := exec.Command(sg, "-v", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v %s: %v\n%s", path, err, out)
	}
}

func TestCloneGPTStandard(t *testing.T) {
	testenv.RequireRoot(t) // NTFS fixture and growth through a loop device
	testenv.RequireTools(t, "sgdisk", "mkfs.ext4", "mkfs.fat", "mkntfs", "ntfs-3g", "resize2fs", "ntfsresize")
	dir := t.TempDir()
	fx := testdisk.GPTStandard(t, dir)
	srcSum := testdisk.SHA256(t, fx.Path)
	for _, layout := range []ptable.Layout{ptable.LayoutGrowLast, ptable.LayoutProportional, ptable.LayoutKeep} {
		t.Run(string(layout), func(t *testing.T) {
			target := testdisk.EmptyFile(t, filepath.Join(t.TempDir(), "target.img"), 512*MiB)
			res, _ := cloneFiles(t, Options{Source: testdisk.Inspect(t, fx.Path), Target: testdisk.Inspect(t, target), Layout: layout, Verify: true})
			if !res.Verified {
				t.Error("not verified")
			}
			if got := testdisk.SHA256(t, fx.Path); got != srcSum {
				t.Fatal("the source changed")
			}
			sgdiskVerify(t, target)
			grown := map[int]bool{}
			switch layout {
			case ptable.LayoutGrowLast:
				grown[4] = true
			case ptable.LayoutProportional:
				grown[2], grown[3], grown[4] = true, true, true
			}
			checkClone(t, fx, target, grown)
			tbl := testdisk.ReadTable(t, target)
			src := testdisk.ReadTable(t, fx.Path)
			last, _ := tbl.Find(4)
			srcLast, _ := src.Find(4)
			switch layout {
			case ptable.LayoutKeep:
				if last.Size != srcLast.Size {
					t.Errorf("keep: partition 4 is %d bytes, want %d", last.Size, srcLast.Size)
				}
			default:
				if last.Size <= srcLast.Size {
					t.Errorf("%s: partition 4 did not grow (%d bytes)", layout, last.Size)
				}
			}
			for _, p := range tbl.Partitions {
				sp, _ := src.Find(p.Number)
				if p.GUID != sp.GUID || p.Type != sp.Type || p.Name != sp.Name || p.Attributes != sp.Attributes {
					t.Errorf("partition %d: identity not kept: %+v vs %+v", p.Number, p, sp)
				}
			}
			// Boot code and the gap after the GPT entries are carried.
			if !bytes.Equal(testdisk.ReadRange(t, target, 0, 440), fx.BootCode) {
				t.Error("protective MBR boot code not carried")
			}
			if fx.GapLen > 0 && !bytes.Equal(testdisk.ReadRange(t, target, fx.GapOff, fx.GapLen), testdisk.ReadRange(t, fx.Path, fx.GapOff, fx.GapLen)) {
				t.Error("boot gap not carried")
			}
		})
	}
}

func TestCloneMBRStandard(t *testing.T) {
	testenv.RequireRoot(t) // exFAT fixture and growth through a loop device
	testenv.RequireTools(t, "sfdisk", "mkfs.ext4", "mkfs.exfat", "mkswap", "resize2fs")
	dir := t.TempDir()
	fx := testdisk.MBRStandard(t, dir)
	srcSum := testdisk.SHA256(t, fx.Path)
	target := testdisk.EmptyFile(t, filepath.Join(dir, "target.img"), 400*MiB)
	res, _ := cloneFiles(t, Options{Source: testdisk.Inspect(t, fx.Path), Target: testdisk.Inspect(t, target), Verify: true})
	if !res.Verified {
		t.Error("not verified")
	}
	if testdisk.SHA256(t, fx.Path) != srcSum {
		t.Fatal("the source changed")
	}
	checkClone(t, fx, target, nil)
	src, dst := testdisk.ReadTable(t, fx.Path), testdisk.ReadTable(t, target)
	if dst.DiskSignature != src.DiskSignature {
		t.Errorf("disk signature %08x, want %08x", dst.DiskSignature, src.DiskSignature)
	}
	if dst.Extended == nil || dst.Extended.Start+dst.Extended.Size != 400*MiB {
		t.Errorf("extended partition did not grow to the end: %+v", dst.Extended)
	}
	for _, p := range src.Partitions {
		q, ok := dst.Find(p.Number)
		if !ok || q.Logical != p.Logical || q.Bootable != p.Bootable || q.MBRType != p.MBRType {
			t.Errorf("partition %d not carried: %+v vs %+v", p.Number, q, p)
		}
	}
	if !bytes.Equal(testdisk.ReadRange(t, target, 0, 440), fx.BootCode) {
		t.Error("MBR boot code not carried")
	}
	if !bytes.Equal(testdisk.ReadRange(t, target, fx.GapOff, fx.GapLen), testdisk.ReadRange(t, fx.Path, fx.GapOff, fx.GapLen)) {
		t.Error("boot gap not carried")
	}
	sf, _ := testenv.LookPath("sfdisk")
	if out, err := exec.Command(sf, "-d", target).CombinedOutput(); err != nil {
		t.Errorf("sfdisk -d: %v\n%s", err, out)
	} else {
		t.Logf("target table:\n%s", out)
	}
}

// TestCloneStandardThroughLoops repeats the standard fixtures' clones with
// block devices on both sides: each image attached to a loop device.
func TestCloneStandardThroughLoops(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "losetup", "sgdisk", "sfdisk", "mkntfs", "mkfs.exfat", "resize2fs", "ntfsresize")
	for _, c := range []struct {
		name  string
		build func(testing.TB, string) *testdisk.Fixture
		size  int64
	}{
		{"gpt", testdisk.GPTStandard, 512 * MiB},
		{"mbr", testdisk.MBRStandard, 448 * MiB},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			fx := c.build(t, dir)
			sum := testdisk.SHA256(t, fx.Path)
			target := testdisk.EmptyFile(t, filepath.Join(dir, "target.img"), c.size)
			src, dst := losetup(t, fx.Path, 0, 0), losetup(t, target, 0, 0)
			res, _ := cloneFiles(t, Options{Source: testdisk.Inspect(t, src), Target: testdisk.Inspect(t, dst), Verify: true})
			if !res.Verified {
				t.Error("not verified")
			}
			if testdisk.SHA256(t, fx.Path) != sum {
				t.Fatal("the source changed")
			}
			last := fx.Parts[len(fx.Parts)-1]
			checkClone(t, fx, target, map[int]bool{last.Number: true})
		})
	}
}
