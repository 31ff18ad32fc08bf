package progress

import (
	"testing"
	"time"
)

func TestCountersAndRate(t *testing.T) {
	var c Counters
	c.SetPhase("copy", 1000)
	c.Add(100)
	c.AddWritten(60)
	c.Warn("careful")
	s := c.Snapshot()
	if s.Phase != "copy" || s.Done != 100 || s.Total != 1000 || s.Written != 60 || len(s.Warnings) != 1 {
		t.Fatalf("snapshot %+v", s)
	}
	var r Rate
	t0 := time.Now()
	r.Update(s, t0)
	c.Add(100)
	bps := r.Update(c.Snapshot(), t0.Add(time.Second))
	if bps < 99 || bps > 101 {
		t.Fatalf("rate %v, want 100 B/s", bps)
	}
	if eta := ETA(c.Snapshot(), bps); eta < 7900*time.Millisecond || eta > 8100*time.Millisecond {
		t.Errorf("eta %v, want 8s", eta)
	}
	c.SetPhase("verify", 10)
	if s := c.Snapshot(); s.Done != 0 || s.Written != 60 {
		t.Errorf("new phase: %+v", s)
	}
	if ETA(Snapshot{Total: 10}, 0) != -1 {
		t.Error("unknown rate must give an unknown ETA")
	}
}
