package ptable

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// planAndWrite plans src onto a new image of size bytes, writes it, and
// checks that sfdisk and our own Read see exactly the planned table.
func planAndWrite(t *testing.T, src *Table, srcSize int64, opt PlanOptions) (*Table, string) {
	t.Helper()
	plan, err := Plan(src, srcSize, opt)
	if err != nil {
		t.Fatalf("Plan %+v: %v", opt, err)
	}
	out := newImage(t, "target.img", opt.TargetSize)
	writeImage(t, plan, out, opt.TargetSize)
	if plan.Kind == GPT {
		if v := tool(t, "", "sgdisk", "-v", out); !strings.Contains(v, "No problems found") {
			t.Errorf("sgdisk -v:\n%s", v)
		}
	} else {
		tool(t, "", "sfdisk", "-V", out)
	}
	back := readImage(t, out, plan.SectorSize)
	compareWithSfdisk(t, back, sfdiskJSON(t, out))
	if !reflect.DeepEqual(back.Partitions, plan.Partitions) || !reflect.DeepEqual(back.Extended, plan.Extended) {
		t.Errorf("read back differs from the plan:\n%+v\n%+v", back.Partitions, plan.Partitions)
	}
	if len(back.Warnings()) != 0 {
		t.Errorf("warnings on the written table: %q", back.Warnings())
	}
	return plan, out
}

// checkKept verifies that identity fields survive planning and that starts
// and sizes did not shrink.
func checkKept(t *testing.T, src, plan *Table) {
	t.Helper()
	if plan.DiskGUID != src.DiskGUID || plan.DiskSignature != src.DiskSignature || len(plan.Partitions) != len(src.Partitions) {
		t.Fatalf("identity lost: %+v", plan)
	}
	for i, p := range plan.Partitions {
		s := src.Partitions[i]
		if p.Number != s.Number || p.Type != s.Type || p.GUID != s.GUID || p.Name != s.Name || p.Attributes != s.Attributes || p.Bootable != s.Bootable || p.Logical != s.Logical {
			t.Errorf("partition %d identity changed: %+v vs %+v", s.Number, p, s)
		}
		if p.Start < s.Start || p.Size < s.Size {
			t.Errorf("partition %d moved back or shrank: %d+%d from %d+%d", s.Number, p.Start, p.Size, s.Start, s.Size)
		}
	}
}

func TestPlanGPT(t *testing.T) {
	img := makeGPTImage(t)
	src := readImage(t, img, 512)
	const srcSize, target = 128 * mib, 300 * mib
	last := int64(target/512 - 34) // last usable LBA on the target

	t.Run("keep", func(t *testing.T) {
		plan, out := planAndWrite(t, src, srcSize, PlanOptions{TargetSize: target, Layout: LayoutKeep})
		checkKept(t, src, plan)
		if !reflect.DeepEqual(plan.Partitions, src.Partitions) {
			t.Error("keep changed partitions")
		}
		if sf := sfdiskJSON(t, out); sf.LastLBA != uint64(last) || sf.FirstLBA != 34 {
			t.Errorf("usable LBAs %d-%d", sf.FirstLBA, sf.LastLBA)
		}
	})
	t.Run("grow-last", func(t *testing.T) {
		plan, _ := planAndWrite(t, src, srcSize, PlanOptions{TargetSize: target, Layout: LayoutGrowLast})
		checkKept(t, src, plan)
		p5, _ := plan.Find(5)
		// (last+1)*512 aligned down to 1 MiB.
		if want := int64(299 * mib); p5.End() != want || p5.Start != src.Partitions[3].Start {
			t.Errorf("partition 5 ends at %d, want %d", p5.End(), want)
		}
		for i := 0; i < 3; i++ {
			if plan.Partitions[i] != src.Partitions[i] {
				t.Errorf("partition %d changed", plan.Partitions[i].Number)
			}
		}
	})
	t.Run("proportional", func(t *testing.T) {
		plan, _ := planAndWrite(t, src, srcSize, PlanOptions{TargetSize: target, Layout: LayoutProportional})
		checkKept(t, src, plan)
		checkProportional(t, src, plan, srcSize, target, mib)
	})
}

// checkProportional verifies each partition got its share of the extra
// space, give or take the alignment, and that moved boundaries are aligned.
func checkProportional(t *testing.T, src, plan *Table, srcSize, target, align int64) {
	t.Helper()
	extra := plan.usableEnd(target) - src.usableEnd(srcSize)
	var total int64
	for _, p := range src.Partitions {
		total += p.Size
	}
	lastEnd := int64(0)
	for _, p := range src.Partitions {
		lastEnd = max(lastEnd, p.End())
	}
	for i, p := range plan.Partitions {
		s := src.Partitions[i]
		share := int64(float64(extra) * float64(s.Size) / float64(total))
		if s.End() == lastEnd {
			// It filled the source disk: it fills the target.
			if want := alignDown(plan.usableEnd(target), align); p.End() != want {
				t.Errorf("last partition %d ends at %d, want %d", p.Number, p.End(), want)
			}
			continue
		}
		grown := p.Size - s.Size
		if grown > share || grown < share-2*align {
			t.Errorf("partition %d grew %d bytes, its share is %d", p.Number, grown, share)
		}
		if p.Start != s.Start && p.Start%align != 0 {
			t.Errorf("partition %d moved to unaligned byte %d", p.Number, p.Start)
		}
		if p.Size != s.Size && p.End()%align != 0 {
			t.Errorf("partition %d grew to unaligned end %d", p.Number, p.End())
		}
	}
}

func TestPlanMBR(t *testing.T) {
	img := makeMBRImage(t)
	src := readImage(t, img, 512)
	const srcSize, target = 128 * mib, 300 * mib

	t.Run("keep", func(t *testing.T) {
		plan, out := planAndWrite(t, src, srcSize, PlanOptions{TargetSize: target})
		if a, b := sfdiskDump(t, img), sfdiskDump(t, out); a != b {
			t.Errorf("sfdisk -d differs:\n%s\n%s", a, b)
		}
		checkKept(t, src, plan)
	})
	t.Run("grow-last", func(t *testing.T) {
		plan, _ := planAndWrite(t, src, srcSize, PlanOptions{TargetSize: target, Layout: LayoutGrowLast})
		checkKept(t, src, plan)
		p7, _ := plan.Find(7)
		if p7.End() != target || plan.Extended.End() != target || plan.Extended.Start != src.Extended.Start {
			t.Errorf("logical 7 ends at %d, extended %d+%d", p7.End(), plan.Extended.Start, plan.Extended.Size)
		}
	})
	t.Run("proportional", func(t *testing.T) {
		plan, _ := planAndWrite(t, src, srcSize, PlanOptions{TargetSize: target, Layout: LayoutProportional})
		checkKept(t, src, plan)
		checkProportional(t, src, plan, srcSize, target, mib)
		// Each EBR keeps its 1 MiB distance to its partition, and the
		// extended partition starts at the first EBR.
		for _, p := range plan.Partitions {
			if o, ok := p.EBR(); ok && p.Start-o != mib {
				t.Errorf("logical %d: EBR %d bytes before the partition", p.Number, p.Start-o)
			}
		}
		p5, _ := plan.Find(5)
		if o, _ := p5.EBR(); plan.Extended.Start != o {
			t.Errorf("extended starts at %d, first EBR at %d", plan.Extended.Start, o)
		}
	})
}

func TestPlanTooSmall(t *testing.T) {
	src := readImage(t, makeGPTImage(t), 512)
	_, err := Plan(src, 128*mib, PlanOptions{TargetSize: 100 * mib, Layout: LayoutGrowLast})
	var ts *TooSmallError
	if !errors.As(err, &ts) || ts.Need != 128*mib || ts.Have != 100*mib {
		t.Fatalf("error %v", err)
	}
	if want := "target holds 100.0 MiB (104857600 bytes) but the layout needs 128.0 MiB (134217728 bytes)"; err.Error() != want {
		t.Errorf("message %q", err.Error())
	}

	// A smaller MBR target that still holds every partition: the extended
	// container is cut at the target's end.
	img := makeMBRImage(t)
	mbr := readImage(t, img, 512)
	p7, _ := mbr.Find(7)
	p7.Size = 32 * mib
	small := p7.End() + 5*mib
	plan, _ := planAndWrite(t, mbr, 128*mib, PlanOptions{TargetSize: small})
	if plan.Extended.End() != small {
		t.Errorf("extended ends at %d on a %d-byte target", plan.Extended.End(), small)
	}
	_, err = Plan(mbr, 128*mib, PlanOptions{TargetSize: p7.End() - mib})
	if !errors.As(err, &ts) || ts.Need != p7.End() {
		t.Errorf("MBR too small: %v", err)
	}
}

func TestPlanMBRLimit(t *testing.T) {
	src := readImage(t, makeMBRImage(t), 512)
	const tib = int64(1) << 40
	for _, l := range []Layout{LayoutGrowLast, LayoutProportional} {
		_, err := Plan(src, 128*mib, PlanOptions{TargetSize: 3 * tib, Layout: l})
		if err == nil || !strings.Contains(err.Error(), "cannot address past 2.0 TiB") {
			t.Errorf("%s to 3 TiB: %v", l, err)
		}
	}
	if _, err := Plan(src, 128*mib, PlanOptions{TargetSize: 3 * tib}); err != nil {
		t.Errorf("keep to 3 TiB: %v", err)
	}
	// With 4096-byte sectors an MBR reaches 16 TiB.
	plan, err := Plan(src, 128*mib, PlanOptions{TargetSize: 3 * tib, TargetSectorSize: 4096, Layout: LayoutGrowLast})
	if err != nil {
		t.Fatalf("grow to 3 TiB with 4096-byte sectors: %v", err)
	}
	if p7, _ := plan.Find(7); p7.End() != 3*tib {
		t.Errorf("logical 7 ends at %d", p7.End())
	}
}

// TestPlanGPTBeyondMBRLimit writes a GPT on a sparse 3 TiB image: the
// protective MBR saturates at 0xFFFFFFFF sectors and sgdisk accepts it.
func TestPlanGPTBeyondMBRLimit(t *testing.T) {
	src := readImage(t, makeGPTImage(t), 512)
	const size = int64(3) << 40
	plan, _ := planAndWrite(t, src, 128*mib, PlanOptions{TargetSize: size, Layout: LayoutGrowLast})
	if p5, _ := plan.Find(5); p5.End() != size-mib {
		t.Errorf("partition 5 ends at %d", p5.End())
	}
}

func TestPlanSectorSize(t *testing.T) {
	testenv.RequireTools(t, "sgdisk", "sfdisk")
	t.Run("refused unaligned size", func(t *testing.T) {
		src := readImage(t, makeGPTImage(t), 512)
		_, err := Plan(src, 128*mib, PlanOptions{TargetSize: 128 * mib, TargetSectorSize: 4096})
		var se *SectorSizeError
		if !errors.As(err, &se) || se.From != 512 || se.To != 4096 || !strings.Contains(err.Error(), "partition 5 is") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("refused GPT structures", func(t *testing.T) {
		img := newImage(t, "g.img", 64*mib)
		tool(t, "", "sgdisk", "-o", "-a", "8", "-n", "1:40:+1M", img)
		src := readImage(t, img, 512)
		_, err := Plan(src, 64*mib, PlanOptions{TargetSize: 64 * mib, TargetSectorSize: 4096})
		var se *SectorSizeError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), "past the start of partition 1") {
			t.Errorf("error %v", err)
		}
	})
	for _, kind := range []string{"gpt", "dos"} {
		t.Run("exact "+kind, func(t *testing.T) {
			testenv.RequireRoot(t)
			testenv.RequireTools(t, "losetup")
			img := newImage(t, "src.img", 128*mib)
			if kind == "gpt" {
				tool(t, "", "sgdisk", "-o", "-n", "1:0:+1M", "-t", "1:EF02", "-n", "2:0:+32M", "-t", "2:EF00", "-n", "3:0:+64M", "-c", "3:root", img)
			} else {
				tool(t, "label: dos\nstart=2048, size=16M, type=c, bootable\ntype=5\nsize=8M, type=83\nsize=8M, type=82\n",
					"sfdisk", "--no-reread", "--no-tell-kernel", img)
			}
			src := readImage(t, img, 512)
			plan, err := Plan(src, 128*mib, PlanOptions{TargetSize: 128 * mib, TargetSectorSize: 4096})
			if err != nil {
				t.Fatal(err)
			}
			out := newImage(t, "4k.img", 128*mib)
			writeImage(t, plan, out, 128*mib)
			dev := loop4K(t, out)
			if kind == "gpt" {
				if v := tool(t, "", "sgdisk", "-v", dev); !strings.Contains(v, "No problems found") {
					t.Errorf("sgdisk -v:\n%s", v)
				}
			}
			sf := sfdiskJSON(t, dev)
			back := readImage(t, out, 4096)
			compareWithSfdisk(t, back, sf)
			for i, p := range back.Partitions {
				if s := src.Partitions[i]; p.Start != s.Start || p.Size != s.Size {
					t.Errorf("partition %d moved: %d+%d from %d+%d", p.Number, p.Start, p.Size, s.Start, s.Size)
				}
			}
			// And back to 512-byte sectors: the original layout.
			again, err := Plan(back, 128*mib, PlanOptions{TargetSize: 128 * mib, TargetSectorSize: 512})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(again.Partitions, src.Partitions) || !reflect.DeepEqual(again.Extended, src.Extended) {
				t.Errorf("4096 → 512 differs from the source:\n%+v\n%+v", again.Partitions, src.Partitions)
			}
		})
	}
}
