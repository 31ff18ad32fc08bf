package ui

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gdamore/tcell/v2"

	"github.com/lifeboat/lifeboat/engine/blockdev"
	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/fsmap/probe"
	"github.com/lifeboat/lifeboat/engine/ptable"
	"github.com/lifeboat/lifeboat/internal/sysdisk"
	"github.com/lifeboat/lifeboat/internal/testdisk"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

// gated is a source whose reads wait, once armed, until the gate opens:
// the test holds a copy in the middle to stop it there.
type gated struct {
	blockdev.Device
	armed atomic.Bool
	gate  chan struct{}
}

func (g *gated) ReadAt(p []byte, off int64) (int, error) {
	if g.armed.Load() {
		<-g.gate
	}
	return g.Device.ReadAt(p, off)
}

func TestCancelDuringCopy(t *testing.T) {
	fx, target := extAndTarget(t, "target.img", 128*MiB)
	src := &gated{gate: make(chan struct{})}
	released := false
	release := func() {
		if !released {
			released = true
			close(src.gate)
		}
	}
	defer release()
	h := start(t, Options{DiskFiles: []string{fx.Path, target}}, func(a *app) {
		a.sourceHook = func(ctx context.Context, d *disks.Disk) (blockdev.Device, error) {
			dev, err := blockdev.Open(ctx, d.Path, blockdev.Options{Mode: blockdev.ReadOnly})
			src.Device = dev
			return src, err
		}
	})
	startClone(h, fx.Path, target)
	h.key(tcell.KeyEnter)
	h.waitFor("Type its file name")
	// Planning has read the source; from now on the copy waits.
	src.armed.Store(true)
	h.typeText("target.img")
	h.key(tcell.KeyEnter)
	h.waitFor("copy", "running", "Esc or c: stop")
	h.key(tcell.KeyEscape)
	h.waitFor("Stop disk clone now?", "incomplete", "Keep going")
	h.key(tcell.KeyTab) // -> Stop
	h.key(tcell.KeyEnter)
	h.waitGone("Keep going")
	release()
	s := h.waitFor("STOPPED", "incomplete", "The log is")
	t.Logf("summary:\n%s", s)
	if tbl := testdisk.ReadTable(t, target); tbl.Kind != ptable.None {
		t.Errorf("a stopped clone left a %s table on the target", tbl.Kind)
	}
}

// TestTargetMounted mounts a partition of the target: the clone is refused
// in words before anything is written.
func TestTargetMounted(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "losetup", "mount", "umount")
	dir := t.TempDir()
	fx := extFixture(t, dir)
	target := filepath.Join(dir, "busy.img")
	testdisk.Run(t, "cp", "--sparse=always", fx.Path, target)
	loop := testdisk.Run(t, "losetup", "-f", "--show", "-o", strconv.FormatInt(fx.Parts[0].Start, 10),
		"--sizelimit", strconv.FormatInt(fx.Parts[0].Size, 10), target)
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	mnt := t.TempDir()
	testdisk.Run(t, "mount", "-o", "ro", loop, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	targetSame := unchanged(t, target, "the target")

	h := start(t, Options{DiskFiles: []string{fx.Path, target}}, nil)
	h.waitFor("in use: image file is attached to " + loop)
	walkClone(h, "Disk Clone", fx.Path, target, false, "IN USE")
	s := h.waitFor("Refused for safety", "mounted", "Nothing was written")
	t.Logf("refusal:\n%s", s)
	targetSame()
}

// TestScreensFit checks the home screen at 80x25 in colour and without:
// every action and the key help fully visible, and the selected action
// in reverse video, which shows on a monochrome terminal.
func TestScreensFit(t *testing.T) {
	for _, mono := range []bool{false, true} {
		h := start(t, Options{DiskFiles: []string{}, Monochrome: mono, Reboot: func(context.Context) error { return nil }}, nil)
		s := h.waitFor("Disk Clone")
		lines := strings.Split(s, "\n")
		if len(lines) < 25 || len([]rune(lines[0])) != 80 {
			t.Fatalf("screen is not 80x25:\n%s", s)
		}
		for _, want := range []string{"Disk Clone", "Partition Clone", "System Clone", "Backup", "Restore", "Images", "Network",
			"Shell", "Log", "Reboot", "Power off", "↑↓ choose  Enter start  Tab disks/actions  r rescan"} {
			if !strings.Contains(s, want) {
				t.Errorf("mono=%v: %q is not fully visible:\n%s", mono, want, s)
			}
		}
		if got := h.selectedRow(); got != "Disk Clone" {
			t.Errorf("mono=%v: selected row %q, want Disk Clone in reverse video", mono, got)
		}
		if mono {
			cells, _, _ := h.contents()
			for _, c := range cells {
				if fg, bg, _ := c.Style.Decompose(); fg != tcell.ColorDefault && fg != tcell.ColorReset || bg != tcell.ColorDefault && bg != tcell.ColorReset {
					t.Fatalf("monochrome screen has a colour (fg %v bg %v) at %q", fg, bg, string(c.Runes))
				}
			}
		}
		// An action that lacks what it needs says so in words.
		h.choose("System Clone")
		h.waitFor("There is no disk to choose.")
		h.key(tcell.KeyEnter)
		h.waitFor("Actions")
		h.choose("Network")
		h.waitFor("Network interfaces", "loopback", "Bring up wired interfaces")
		h.key(tcell.KeyEscape)
		h.waitFor("Actions")
		h.choose("Reboot")
		h.waitFor("Reboot now?", "Cancel")
		h.key(tcell.KeyEnter)
		h.stop()
	}
}

// TestBackupToPartition backs up into a repository on an unmounted
// partition: it is mounted read-write only once chosen, under MountDir,
// and unmounted when the user goes home.
func TestBackupToPartition(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	fx := extFixture(t, dir)
	store := testdisk.Build(t, filepath.Join(dir, "store"), testdisk.Spec{Table: "gpt", Size: 80 * MiB,
		Parts: []testdisk.Part{{FS: "ext4", Size: 64 * MiB, Label: "store"}}})
	storeImg := filepath.Join(dir, "store.img")
	testdisk.Run(t, "mv", store.Path, storeImg)
	mountDir := t.TempDir()
	h := start(t, Options{DiskFiles: []string{fx.Path, storeImg}, MountDir: mountDir}, nil)
	h.waitFor("store.img")
	startBackup(h, fx.Path, "mounted for writing only when chosen")
	h.choose("store.img partition 1")
	h.waitFor("Location", "repo-1/lifeboat-repo")
	if !isMounted(t, filepath.Join(mountDir, "repo-1")) {
		t.Fatal("the chosen partition is not mounted")
	}
	h.key(tcell.KeyTab, 4) // password, share password, host key, Open
	h.key(tcell.KeyEnter)
	backupPlan(h, "")
	h.key(tcell.KeyEnter)
	h.waitFor("FINISHED", "saved in", "lifeboat-repo")
	h.goHome()
	log, err := os.ReadFile(h.a.logPath)
	if loc := filepath.Join(mountDir, "repo-1", "lifeboat-repo"); err != nil || !strings.Contains(string(log), "saved in "+loc) {
		t.Errorf("the log does not say the snapshot went to %s (%v):\n%s", loc, err, log)
	}
	if isMounted(t, filepath.Join(mountDir, "repo-1")) {
		t.Fatal("the repository's file system is still mounted after going home")
	}
	got := filepath.Join(t.TempDir(), "files")
	testdisk.Extract(t, storeImg, store.Parts[0], got)
	snaps, err := filepath.Glob(filepath.Join(got, "lifeboat-repo", "snapshots", "*"))
	if err != nil || len(snaps) != 1 {
		t.Fatalf("the partition holds %d snapshots (%v), want 1", len(snaps), err)
	}
}

func isMounted(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// TestSystemClone clones a bootable Linux disk with System Clone onto a
// smaller disk: the plan names what is taken and what is left, and the
// copy's root passes fsck. Booting such copies is the engine's test.
func TestSystemClone(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	src := sysdisk.Build(t, filepath.Join(dir, "src"), sysdisk.Options{})
	sourceSame := unchanged(t, src.Path, "the source")
	target := testdisk.EmptyFile(t, filepath.Join(dir, "small.img"), src.Size-24*MiB)
	h := start(t, Options{DiskFiles: []string{src.Path, target}}, nil)
	walkClone(h, "System Clone", src.Path, target, false)
	plan := h.waitFor("OVERWRITTEN", "System:", "take", "Continue")
	t.Logf("plan:\n%s", plan)
	h.key(tcell.KeyEnter)
	backFromConfirmation(h, "System Clone")
	confirmAs(h, filepath.Base(target))
	s := h.waitFor("FINISHED", "The log is")
	t.Logf("summary:\n%s", s)
	sourceSame()
	tbl := testdisk.ReadTable(t, target)
	var root *ptable.Partition
	for i := range tbl.Partitions {
		if tbl.Partitions[i].Size > 0 && fsType(t, target, tbl.Partitions[i].Start, tbl.Partitions[i].Size) == "ext4" {
			root = &tbl.Partitions[i]
		}
	}
	if root == nil {
		t.Fatalf("the copy has no ext4 root: %+v", tbl.Partitions)
	}
	testdisk.Fsck(t, target, root.Start, root.Size, "ext4")
}

func fsType(t *testing.T, path string, off, size int64) string {
	t.Helper()
	d, err := blockdev.Open(context.Background(), path, blockdev.Options{Mode: blockdev.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fs, err := probe.Detect(context.Background(), blockdev.Sub(d, off, size), size)
	if err != nil {
		return ""
	}
	return fs.Info().Type
}

// TestActionWaitsForScan: the home screen reads the disks off the
// interface's goroutine; an action chosen before they are read starts once
// they are, and offers the disks just read.
func TestActionWaitsForScan(t *testing.T) {
	fx, target := extAndTarget(t, "target.img", 96*testdisk.MiB)
	release := make(chan struct{})
	h := start(t, Options{DiskFiles: []string{fx.Path, target}}, func(a *app) {
		a.beforeScan = func() { <-release }
	})
	h.waitFor("Reading the disks", "Disk Clone")
	h.choose("Disk Clone")
	h.waitFor("Disk Clone starts once they are read")
	if strings.Contains(h.text(), "copy FROM") {
		t.Fatalf("the clone wizard started before the disks were read:\n%s", h.text())
	}
	close(release)
	h.waitFor("copy FROM", filepath.Base(fx.Path), filepath.Base(target))
}
