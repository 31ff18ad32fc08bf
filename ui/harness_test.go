package ui

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdamore/tcell/v2"
)

// deadline bounds every wait for the screen; it is generous because a test
// machine may be slow, and it only decides failure, never success.
const deadline = 90 * time.Second

// harness runs the interface on a simulated 80x25 screen.
type harness struct {
	t      *testing.T
	sim    tcell.SimulationScreen
	cancel context.CancelFunc
	done   chan error
	a      *app
	once   sync.Once
}

// start runs the interface with opts; setup may adjust the app before it
// runs (test hooks).
func start(t *testing.T, opts Options, setup func(*app)) *harness {
	t.Helper()
	sim := tcell.NewSimulationScreen("UTF-8")
	opts.Screen = sim
	if opts.LogPath == "" {
		opts.LogPath = t.TempDir() + "/ui.log"
	}
	if opts.MountDir == "" {
		opts.MountDir = t.TempDir()
	}
	if opts.DiskFiles != nil {
		opts.NoSystemDisks = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, sim: sim, cancel: cancel, done: make(chan error, 1)}
	a, err := newApp(ctx, opts, sim)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(a)
	}
	h.a = a
	go func() {
		defer a.close()
		stop := context.AfterFunc(ctx, a.tv.Stop)
		defer stop()
		h.done <- a.tv.Run()
	}()
	t.Cleanup(h.stop)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(opts.LogPath)
			t.Logf("the interface's log:\n%s", b)
		}
	})
	return h
}

func (h *harness) stop() {
	h.once.Do(func() {
		h.cancel()
		select {
		case <-h.done:
		case <-time.After(deadline):
			h.t.Error("the interface did not stop")
		}
	})
}

// contents copies the screen's cells on the interface's goroutine, which
// is the only one that draws, so the copy is never half drawn.
func (h *harness) contents() ([]tcell.SimCell, int, int) {
	type snap struct {
		cells []tcell.SimCell
		w, h  int
	}
	ch := make(chan snap, 1)
	h.a.tv.QueueUpdate(func() {
		cells, w, ht := h.sim.GetContents()
		cp := make([]tcell.SimCell, len(cells))
		for i, c := range cells {
			cp[i] = tcell.SimCell{Style: c.Style, Runes: append([]rune(nil), c.Runes...)}
		}
		ch <- snap{cp, w, ht}
	})
	select {
	case s := <-ch:
		return s.cells, s.w, s.h
	case <-time.After(deadline):
		h.t.Fatal("the interface does not answer")
		return nil, 0, 0
	}
}

// text returns the screen as lines of text.
func (h *harness) text() string {
	cells, w, ht := h.contents()
	var b strings.Builder
	for y := 0; y < ht; y++ {
		for x := 0; x < w; x++ {
			c := cells[y*w+x]
			if len(c.Runes) == 0 {
				b.WriteByte(' ')
				continue
			}
			b.WriteString(string(c.Runes))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// waitFor waits until every one of texts is on the screen and returns
// the screen.
func (h *harness) waitFor(texts ...string) string {
	h.t.Helper()
	end := time.Now().Add(deadline)
	for {
		s := h.text()
		ok := true
		for _, t := range texts {
			if !strings.Contains(s, t) {
				ok = false
				break
			}
		}
		if ok {
			return s
		}
		if time.Now().After(end) {
			h.t.Fatalf("waited for %q; the screen is:\n%s", texts, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitGone waits until text is no longer on the screen.
func (h *harness) waitGone(text string) {
	h.t.Helper()
	end := time.Now().Add(deadline)
	for strings.Contains(h.text(), text) {
		if time.Now().After(end) {
			h.t.Fatalf("%q is still on the screen:\n%s", text, h.text())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) key(k tcell.Key, n ...int) {
	count := 1
	if len(n) > 0 {
		count = n[0]
	}
	for i := 0; i < count; i++ {
		h.sim.InjectKey(k, 0, tcell.ModNone)
	}
}

func (h *harness) typeText(s string) {
	for _, r := range s {
		h.sim.InjectKey(tcell.KeyRune, r, tcell.ModNone)
	}
}

// choose moves down the focused list to the row holding text and presses
// Enter: it reads the screen to find the selected (reverse-video) row.
func (h *harness) choose(text string) {
	h.t.Helper()
	h.waitFor(text)
	end := time.Now().Add(deadline)
	for {
		if strings.Contains(h.selectedRow(), text) {
			h.key(tcell.KeyEnter)
			return
		}
		if time.Now().After(end) {
			h.t.Fatalf("no selected row holds %q; selected %q; screen:\n%s", text, h.selectedRow(), h.text())
		}
		h.key(tcell.KeyDown)
		time.Sleep(30 * time.Millisecond)
	}
}

// selectedRow returns the text of the first row drawn in reverse video.
func (h *harness) selectedRow() string {
	cells, w, ht := h.contents()
	for y := 0; y < ht; y++ {
		var b strings.Builder
		rev := false
		for x := 0; x < w; x++ {
			c := cells[y*w+x]
			if _, _, attr := c.Style.Decompose(); attr&tcell.AttrReverse != 0 && len(c.Runes) > 0 {
				rev = rev || c.Runes[0] != ' '
				b.WriteString(string(c.Runes))
			}
		}
		if rev && y > 0 && y < ht-1 {
			return strings.TrimSpace(b.String())
		}
	}
	return ""
}
