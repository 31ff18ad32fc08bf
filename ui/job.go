package ui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"

	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/progress"
)

// pollInterval is how often the progress screen reads the counters. The
// engine only adds to atomic counters, so the screen never slows a copy.
const pollInterval = 250 * time.Millisecond

// job is an operation the progress screen runs: it reports through
// counters and returns a summary in words.
type job struct {
	title string
	// stopWords says what stopping leaves behind, for the cancel question.
	stopWords string
	run       func(ctx context.Context, c *progress.Counters) (summary string, err error)
}

// phaseRow is one phase as the progress screen shows it.
type phaseRow struct {
	name        string
	done, total int64
	finished    bool
}

// runJob shows the progress of j until it ends, then its summary.
func (a *app) runJob(j job) {
	ctx, cancel := context.WithCancel(a.ctx)
	counters := &progress.Counters{}
	view := tview.NewTextView().SetWordWrap(true)
	view.SetTextStyle(a.theme.normal)
	view.SetBorder(true).SetTitle(" " + j.title + " ")
	// Both are only touched on the interface's goroutine (input
	// capture and queued updates).
	var finished, asking bool
	askStop := func() {
		if finished || asking {
			return
		}
		asking = true
		a.dialog("Stop?", "Stop "+strings.ToLower(j.title)+" now?\n\n"+j.stopWords, []string{"Keep going", "Stop"}, func(i int) {
			asking = false
			a.help.SetText(" Esc or c: stop (asks first)")
			if i == 1 {
				a.logf("%s: stop asked for", j.title)
				cancel()
			}
		})
	}
	view.SetInputCapture(func(ev *tcell.EventKey) *tcell.EventKey {
		if ev.Key() == tcell.KeyEscape || (ev.Key() == tcell.KeyRune && (ev.Rune() == 'c' || ev.Rune() == 'C')) {
			askStop()
			return nil
		}
		return ev
	})
	a.show(j.title, view, "Esc or c: stop (asks first)")
	a.logf("%s: started", j.title)
	a.jobs.Add(1)

	var rows []phaseRow
	var rate progress.Rate
	draw := func(s progress.Snapshot, now time.Time, final bool) {
		bps := rate.Update(s, now)
		if s.Phase != "" && (len(rows) == 0 || rows[len(rows)-1].name != s.Phase) {
			if len(rows) > 0 {
				rows[len(rows)-1].finished = true
				if rows[len(rows)-1].total > 0 {
					rows[len(rows)-1].done = rows[len(rows)-1].total
				}
			}
			rows = append(rows, phaseRow{name: s.Phase})
		}
		if len(rows) > 0 {
			rows[len(rows)-1].done, rows[len(rows)-1].total = s.Done, s.Total
		}
		view.SetText(progressText(rows, s, bps, final))
	}

	stopPoll := make(chan struct{})
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		t := time.NewTicker(pollInterval)
		defer t.Stop()
		for {
			select {
			case <-stopPoll:
				return
			case now := <-t.C:
				s := counters.Snapshot()
				a.tv.QueueUpdateDraw(func() { draw(s, now, false) })
			}
		}
	}()
	go func() {
		defer a.jobs.Done()
		summary, err := j.run(ctx, counters)
		close(stopPoll)
		<-pollDone
		s := counters.Snapshot()
		stopped := ctx.Err() != nil
		cancel()
		a.tv.QueueUpdateDraw(func() {
			finished = true
			draw(s, time.Now(), true)
			a.pages.RemovePage("dialog")
			a.summary(j, s, summary, err, stopped)
		})
	}()
}

// progressText draws every phase seen so far with a bar, and for the
// current one bytes done and total, speed and time left.
func progressText(rows []phaseRow, s progress.Snapshot, bps float64, final bool) string {
	var b strings.Builder
	for i, r := range rows {
		cur := i == len(rows)-1 && !final
		state := "done"
		if cur {
			state = "running"
		} else if !r.finished && final {
			state = "ended"
		}
		fmt.Fprintf(&b, "%-10s %s %s\n", r.name, bar(r.done, r.total, 30), state)
		if cur {
			total := "unknown"
			if r.total > 0 {
				total = disks.HumanBytes(r.total)
			}
			fmt.Fprintf(&b, "           %s of %s", disks.HumanBytes(r.done), total)
			if bps > 0 {
				fmt.Fprintf(&b, "  %s/s", disks.HumanBytes(int64(bps)))
			}
			if eta := progress.ETA(s, bps); eta >= 0 {
				fmt.Fprintf(&b, "  %s left", clock(eta))
			}
			b.WriteString("\n")
		}
	}
	if len(rows) == 0 {
		b.WriteString("starting…\n")
	}
	fmt.Fprintf(&b, "\nelapsed %s, %s written\n", clock(s.Elapsed), disks.HumanBytes(s.Written))
	for _, w := range s.Warnings {
		fmt.Fprintf(&b, "Warning: %s\n", w)
	}
	return b.String()
}

// bar draws done of total in width characters with plain ASCII, which
// every console and serial terminal shows.
func bar(done, total int64, width int) string {
	frac := 0.0
	if total > 0 {
		frac = min(1, float64(done)/float64(total))
	}
	n := int(frac * float64(width))
	return fmt.Sprintf("[%s%s] %5.1f%%", strings.Repeat("#", n), strings.Repeat("-", width-n), frac*100)
}

// clock formats a duration as minutes and seconds (hours when needed).
func clock(d time.Duration) string {
	d = d.Round(time.Second)
	if d >= time.Hour {
		return fmt.Sprintf("%d:%02d:%02d", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
	}
	return fmt.Sprintf("%02d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// summary ends a job: what it did, or why it stopped, and where the log is.
func (a *app) summary(j job, s progress.Snapshot, text string, err error, stopped bool) {
	heading := "Finished"
	switch {
	case err != nil && (stopped || errors.Is(err, context.Canceled)):
		heading = "Stopped"
	case err != nil:
		heading = "Failed"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s\n\n", strings.ToUpper(heading), j.title)
	if err != nil {
		fmt.Fprintf(&b, "%v\n", err)
		a.logf("%s: %s: %v", j.title, strings.ToLower(heading), err)
	} else {
		b.WriteString(text)
		a.logf("%s: finished: %s", j.title, text)
	}
	for _, w := range s.Warnings {
		if !strings.Contains(b.String(), w) {
			fmt.Fprintf(&b, "Warning: %s\n", w)
		}
	}
	fmt.Fprintf(&b, "\nTook %s. The log is %s\n", clock(s.Elapsed), a.logPath)
	view := a.newText(b.String())
	view.SetBorder(true).SetTitle(" " + heading + " ")
	form := tview.NewForm().AddButton("Home", func() { a.home() })
	a.styleForm(form)
	f := tview.NewFlex().SetDirection(tview.FlexRow).AddItem(view, 0, 1, false).AddItem(form, 3, 0, true)
	a.show(j.title+": "+strings.ToLower(heading), f, "Enter home  Tab scroll the text")
	f.SetInputCapture(func(ev *tcell.EventKey) *tcell.EventKey {
		if ev.Key() == tcell.KeyTab {
			if form.HasFocus() {
				a.tv.SetFocus(view)
			} else {
				a.tv.SetFocus(form)
			}
			return nil
		}
		return ev
	})
	a.tv.SetFocus(form)
}
