// Package progress holds the counters an operation adds to and a display
// polls. Adding is a few atomic operations, so a slow display never slows a
// copy; readers take a Snapshot whenever they like.
package progress

import (
	"sync"
	"sync/atomic"
	"time"
)

// Counters is the live state of one operation. The zero value is ready.
type Counters struct {
	done     atomic.Int64
	total    atomic.Int64
	written  atomic.Int64
	mu       sync.Mutex
	phase    string
	started  time.Time
	phaseAt  time.Time
	warnings []string
}

// Snapshot is a copy of the counters at one moment.
type Snapshot struct {
	Phase string
	// Done and Total count the bytes of the current phase.
	Done, Total int64
	// Written counts bytes written to the target over the whole operation.
	Written  int64
	Elapsed  time.Duration
	PhaseAge time.Duration
	Warnings []string
}

// SetPhase starts a new phase with total bytes of work (0 if unknown).
func (c *Counters) SetPhase(name string, total int64) {
	c.mu.Lock()
	now := time.Now()
	if c.started.IsZero() {
		c.started = now
	}
	c.phase = name
	c.phaseAt = now
	c.mu.Unlock()
	c.done.Store(0)
	c.total.Store(total)
}

// Add records n more bytes of work done in the current phase.
func (c *Counters) Add(n int64) { c.done.Add(n) }

// AddWritten records n bytes written to the target.
func (c *Counters) AddWritten(n int64) { c.written.Add(n) }

// Warn records a warning for the user.
func (c *Counters) Warn(msg string) {
	c.mu.Lock()
	c.warnings = append(c.warnings, msg)
	c.mu.Unlock()
}

// Snapshot returns the current state.
func (c *Counters) Snapshot() Snapshot {
	c.mu.Lock()
	s := Snapshot{Phase: c.phase, Warnings: append([]string(nil), c.warnings...)}
	if !c.started.IsZero() {
		s.Elapsed = time.Since(c.started)
		s.PhaseAge = time.Since(c.phaseAt)
	}
	c.mu.Unlock()
	s.Done = c.done.Load()
	s.Total = c.total.Load()
	s.Written = c.written.Load()
	return s
}

// Rate estimates bytes per second from successive snapshots with an
// exponential moving average, so a display shows a steady speed.
type Rate struct {
	last     Snapshot
	lastTime time.Time
	bps      float64
}

// Update feeds a snapshot taken at now and returns the smoothed rate.
func (r *Rate) Update(s Snapshot, now time.Time) float64 {
	if !r.lastTime.IsZero() && s.Phase == r.last.Phase && s.Done >= r.last.Done {
		dt := now.Sub(r.lastTime).Seconds()
		if dt > 0 {
			inst := float64(s.Done-r.last.Done) / dt
			if r.bps == 0 {
				r.bps = inst
			} else {
				r.bps = 0.7*r.bps + 0.3*inst
			}
		}
	} else if s.Phase != r.last.Phase {
		r.bps = 0
	}
	r.last, r.lastTime = s, now
	return r.bps
}

// ETA returns the time left at rate bps, or -1 when unknown.
func ETA(s Snapshot, bps float64) time.Duration {
	if bps <= 0 || s.Total <= 0 || s.Done > s.Total {
		return -1
	}
	return time.Duration(float64(s.Total-s.Done) / bps * float64(time.Second))
}
