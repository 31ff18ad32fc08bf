package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/progress"
)

// startProgress polls counters and draws them until the returned function
// is called. auto draws a bar on a terminal and nothing otherwise.
func startProgress(env *cmdEnv, mode string, c *progress.Counters) (stop func()) {
	if mode == "auto" {
		mode = "none"
		if env.interactive {
			mode = "bar"
		}
	}
	var draw func(s progress.Snapshot, bps float64, final bool)
	switch mode {
	case "bar":
		draw = func(s progress.Snapshot, bps float64, final bool) { drawBar(env.stderr, s, bps, final) }
	case "json":
		enc := json.NewEncoder(env.stdout)
		draw = func(s progress.Snapshot, bps float64, final bool) {
			enc.Encode(struct {
				Phase          string  `json:"phase"`
				Done           int64   `json:"done"`
				Total          int64   `json:"total"`
				BytesPerSecond float64 `json:"bytes_per_second"`
				Written        int64   `json:"written"`
				ElapsedSeconds float64 `json:"elapsed_seconds"`
			}{s.Phase, s.Done, s.Total, bps, s.Written, s.Elapsed.Seconds()})
		}
	default:
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var rate progress.Rate
		interval := 200 * time.Millisecond
		if mode == "json" {
			interval = time.Second
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				s := c.Snapshot()
				draw(s, rate.Update(s, time.Now()), true)
				return
			case now := <-t.C:
				s := c.Snapshot()
				if s.Phase != "" {
					draw(s, rate.Update(s, now), false)
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func drawBar(w io.Writer, s progress.Snapshot, bps float64, final bool) {
	const width = 20
	frac := 0.0
	if s.Total > 0 {
		frac = min(1, float64(s.Done)/float64(s.Total))
	}
	filled := int(frac * width)
	eta := "--:--"
	if d := progress.ETA(s, bps); d >= 0 {
		eta = fmt.Sprintf("%02d:%02d", int(d.Minutes()), int(d.Seconds())%60)
	}
	line := fmt.Sprintf("\r%-7s [%s%s] %5.1f%% %s/%s %s/s left %s", s.Phase,
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), frac*100,
		disks.HumanBytes(s.Done), disks.HumanBytes(s.Total), disks.HumanBytes(int64(bps)), eta)
	// Clear to the end of the line rather than pad: the terminal may be
	// narrower than any fixed width (80 columns on a console).
	fmt.Fprint(w, line+"\033[K")
	if final {
		fmt.Fprintln(w)
	}
}

// openLog returns where plan and results are written: out, and also the
// log file when one is named.
func openLog(path string, out io.Writer) (io.Writer, func(), error) {
	if path == "" {
		return out, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("open log: %w", err)
	}
	return io.MultiWriter(out, f), func() { f.Close() }, nil
}
