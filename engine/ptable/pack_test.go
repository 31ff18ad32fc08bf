package ptable

import (
	"errors"
	"strings"
	"testing"
)

// TestPlanPackedSubset carries partitions 1, 3 and 5 of the GPT fixture,
// laid out from the start: 3 moves back over the place of 2, 5 follows it,
// and grow-last gives 5 the rest of the target.
func TestPlanPackedSubset(t *testing.T) {
	src := readImage(t, makeGPTImage(t), 512)
	const target = 128 * mib
	plan, _ := planAndWrite(t, src, 128*mib, PlanOptions{TargetSize: target, Layout: LayoutGrowLast, Only: []int{1, 3, 5}, Pack: true})
	if len(plan.Partitions) != 3 {
		t.Fatalf("planned %+v", plan.Partitions)
	}
	if _, ok := plan.Find(2); ok {
		t.Error("partition 2 was not left out")
	}
	p1, _ := plan.Find(1)
	p3, _ := plan.Find(3)
	p5, _ := plan.Find(5)
	s3, _ := src.Find(3)
	if p1.Start != mib || p3.Start != 2*mib || p3.Size != s3.Size || p5.Start != p3.End() {
		t.Errorf("packed layout 1:%d+%d 3:%d+%d 5:%d+%d", p1.Start, p1.Size, p3.Start, p3.Size, p5.Start, p5.Size)
	}
	if p5.End() != (target-33*512)/mib*mib {
		t.Errorf("partition 5 ends at %d, not at the last MiB of the target", p5.End())
	}
	if p3.GUID != s3.GUID || p3.Name != s3.Name || p3.Type != s3.Type {
		t.Errorf("partition 3 lost its identity: %+v", p3)
	}
}

// TestPlanShrink packs partitions onto a smaller target: only those given a
// minimum size shrink, each in proportion to its room to shrink, the layout
// fills the target, and a target below every minimum is refused with the
// size that would do.
func TestPlanShrink(t *testing.T) {
	src := readImage(t, makeGPTImage(t), 512)
	opt := PlanOptions{Layout: LayoutGrowLast, Only: []int{1, 2, 3}, Pack: true, MinSize: map[int]int64{3: 20 * mib}}

	opt.TargetSize = 64 * mib
	plan, _ := planAndWrite(t, src, 128*mib, opt)
	p2, _ := plan.Find(2)
	p3, _ := plan.Find(3)
	if p2.Size != 32*mib {
		t.Errorf("partition 2 (no minimum given) changed size to %d", p2.Size)
	}
	if p3.Size < 20*mib || p3.Size >= 64*mib || p3.Start != 34*mib || p3.End() > opt.TargetSize-33*512 || p3.End() < opt.TargetSize-33*512-mib {
		t.Errorf("partition 3 shrunk to %d+%d, want from 34 MiB to the target's last MiB, at least 20 MiB", p3.Start, p3.Size)
	}

	opt.TargetSize = 40 * mib
	_, err := Plan(src, 128*mib, opt)
	var small *TooSmallError
	if !errors.As(err, &small) || small.Need != 54*mib+33*512 {
		t.Fatalf("got %v, want TooSmallError needing 54 MiB and the backup GPT", err)
	}

	// Two partitions share the loss by their room: 2 has 28 MiB above its
	// minimum, 3 has 56 MiB.
	opt = PlanOptions{Only: []int{2, 3}, Pack: true, MinSize: map[int]int64{2: 4 * mib, 3: 8 * mib}, TargetSize: 64 * mib}
	plan, _ = planAndWrite(t, src, 128*mib, opt)
	p2, _ = plan.Find(2)
	p3, _ = plan.Find(3)
	give2, give3 := 32*mib-p2.Size, 64*mib-p3.Size
	if give2 <= 0 || give3 <= 0 || give3 < give2*3/2 || give3 > give2*5/2 {
		t.Errorf("partition 2 gave %d, partition 3 gave %d: want about 1 to 2", give2, give3)
	}
}

// TestPlanPackedMBR moves the extended container with its logical
// partitions as one piece, and refuses to leave out a logical partition
// that a kept one follows (it would be renumbered).
func TestPlanPackedMBR(t *testing.T) {
	src := readImage(t, makeMBRImage(t), 512)
	plan, _ := planAndWrite(t, src, 128*mib, PlanOptions{TargetSize: 128 * mib, Only: []int{2, 5, 6}, Pack: true})
	p2, _ := plan.Find(2)
	p5, _ := plan.Find(5)
	s5, _ := src.Find(5)
	if p2.Start != mib || p5.Start != s5.Start-16*mib || plan.Extended == nil || plan.Extended.Start != src.Extended.Start-16*mib {
		t.Errorf("packed: 2 at %d, 5 at %d (was %d), extended %+v", p2.Start, p5.Start, s5.Start, plan.Extended)
	}
	if _, ok := plan.Find(7); ok {
		t.Error("logical 7 not left out")
	}
	_, err := Plan(src, 128*mib, PlanOptions{TargetSize: 128 * mib, Only: []int{1, 6}, Pack: true})
	if err == nil || !strings.Contains(err.Error(), "renumbered") {
		t.Errorf("got %v, want a refusal to renumber logical 6", err)
	}
	plan, err = Plan(src, 128*mib, PlanOptions{TargetSize: 128 * mib, Only: []int{1, 2}, Pack: true})
	if err != nil || plan.Extended != nil {
		t.Errorf("without logical partitions the container goes: %v %+v", err, plan)
	}
}
