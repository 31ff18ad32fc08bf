package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/internal/testdisk"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

// tmuxSession runs a command in a detached 80x25 tmux session on a
// private server and reads its screen.
type tmuxSession struct {
	t      *testing.T
	socket string
}

func (s *tmuxSession) tmux(args ...string) string {
	s.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", s.socket}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (s *tmuxSession) screen() string { return s.tmux("capture-pane", "-p", "-t", "ui") }

// waitFor waits (up to a generous deadline that only decides failure)
// until every text is on the screen, and returns the screen.
func (s *tmuxSession) waitFor(texts ...string) string {
	s.t.Helper()
	end := time.Now().Add(90 * time.Second)
	for {
		scr := s.screen()
		ok := true
		for _, t := range texts {
			ok = ok && strings.Contains(scr, t)
		}
		if ok {
			return scr
		}
		if time.Now().After(end) {
			s.t.Fatalf("waited for %q; the screen is:\n%s", texts, scr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *tmuxSession) keys(keys ...string) {
	s.tmux(append([]string{"send-keys", "-t", "ui"}, keys...)...)
}

// TestTUIDiskCloneInTmux drives the real binary at 80x25 from the home
// screen through a disk clone of two image files to the summary, then
// checks the copy.
func TestTUIDiskCloneInTmux(t *testing.T) {
	testenv.RequireTools(t, "tmux", "sgdisk", "mkfs.ext4", "debugfs", "e2fsck")
	dir := t.TempDir()
	fx := testdisk.Build(t, filepath.Join(dir, "fx"), testdisk.Spec{
		Table: "gpt", Size: 96 << 20, BootCode: true,
		Parts: []testdisk.Part{
			{FS: "ext4", Size: 32 << 20, Label: "boot", Files: &testdisk.TreeOptions{Seed: 31, TotalBytes: 3 << 20, Symlinks: true}},
			{FS: "ext4", Size: 40 << 20, Label: "data", Files: &testdisk.TreeOptions{Seed: 32, TotalBytes: 5 << 20, HardLinks: true, Sparse: true}},
		},
	})
	a := filepath.Join(dir, "a.img")
	if err := os.Rename(fx.Path, a); err != nil {
		t.Fatal(err)
	}
	fx.Path = a
	b := testdisk.EmptyFile(t, filepath.Join(dir, "b.img"), 128<<20)
	logPath := filepath.Join(dir, "ui.log")

	s := &tmuxSession{t: t, socket: fmt.Sprintf("lifeboat-test-%d", os.Getpid())}
	t.Cleanup(func() { exec.Command("tmux", "-L", s.socket, "kill-server").Run() })
	cmd := fmt.Sprintf("env LIFEBOAT_TEST_AS_MAIN=1 %s tui --disk %s --disk %s --log %s --mount-dir %s; sleep 30",
		os.Args[0], a, b, logPath, filepath.Join(dir, "mnt"))
	s.tmux("new-session", "-d", "-s", "ui", "-x", "80", "-y", "25", cmd)

	home := s.waitFor("Disk Clone", "Power off", "a.img", "b.img", "boot", "data", "↑↓ choose")
	t.Logf("home:\n%s", home)
	s.keys("Enter")
	s.waitFor("copy FROM", "a.img", "b.img")
	s.keys("Enter")
	tgt := s.waitFor("copy TO", "b.img")
	if strings.Contains(tgt, "a.img  ") {
		t.Errorf("the source is offered as a target:\n%s", tgt)
	}
	s.keys("Enter")
	s.waitFor("Layout", "Verify", "[ ]")
	s.keys("Tab", "Space")
	s.waitFor("[X]")
	s.keys("Tab", "Enter")
	plan := s.waitFor("OVERWRITTEN", "KEPT", "partition 1 ext4 \"boot\"", "To copy:", "Continue")
	t.Logf("plan:\n%s", plan)
	s.keys("Enter")
	s.waitFor("Type its file name", "\"b.img\"")
	s.keys("b.im", "Enter")
	s.waitFor("does not match", "Nothing was written")
	s.keys("b.img", "Enter")
	sum := s.waitFor("FINISHED: Disk Clone", "Verify: every byte written was read back", "The log is")
	t.Logf("summary:\n%s", sum)
	s.keys("Enter")
	s.waitFor("Actions", "Disks")
	s.keys("q")
	// q leaves the interface: the screen is given back.
	end := time.Now().Add(90 * time.Second)
	for strings.Contains(s.screen(), "Actions") {
		if time.Now().After(end) {
			t.Fatalf("q did not quit:\n%s", s.screen())
		}
		time.Sleep(100 * time.Millisecond)
	}
	testdisk.CheckCopy(t, fx, b)
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "Disk Clone: finished") {
		t.Errorf("the log does not record the clone:\n%s", log)
	}
}

// TestTUIMonochromeInTmux runs the binary with TERM=vt100, which has no
// colours: the screen must use none, and the selected action must still
// show, in reverse video.
func TestTUIMonochromeInTmux(t *testing.T) {
	testenv.RequireTools(t, "tmux")
	dir := t.TempDir()
	img := testdisk.EmptyFile(t, filepath.Join(dir, "e.img"), 8<<20)
	s := &tmuxSession{t: t, socket: fmt.Sprintf("lifeboat-test-mono-%d", os.Getpid())}
	t.Cleanup(func() { exec.Command("tmux", "-L", s.socket, "kill-server").Run() })
	cmd := fmt.Sprintf("env TERM=vt100 LIFEBOAT_TEST_AS_MAIN=1 %s tui --disk %s --log %s --mount-dir %s; sleep 30",
		os.Args[0], img, filepath.Join(dir, "ui.log"), filepath.Join(dir, "mnt"))
	s.tmux("new-session", "-d", "-s", "ui", "-x", "80", "-y", "25", cmd)
	s.waitFor("Disk Clone", "e.img", "q quit")
	raw := s.tmux("capture-pane", "-p", "-e", "-t", "ui")
	for _, line := range strings.Split(raw, "\n") {
		if strings.Contains(line, "Disk Clone") && !strings.Contains(line, "\x1b[7m") {
			t.Errorf("the selected action is not in reverse video: %q", line)
		}
	}
	// Any SGR colour but the defaults (39, 49) is a colour.
	for _, m := range regexp.MustCompile(`\x1b\[([0-9;]*)m`).FindAllStringSubmatch(raw, -1) {
		for _, p := range strings.Split(m[1], ";") {
			n, _ := strconv.Atoi(p)
			if (n >= 30 && n <= 38) || (n >= 40 && n <= 48) || (n >= 90 && n <= 107) {
				t.Fatalf("a vt100 screen uses colour (%q):\n%q", m[0], raw)
			}
		}
	}
	s.keys("q")
}
