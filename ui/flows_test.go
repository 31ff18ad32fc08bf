package ui

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/gdamore/tcell/v2"

	"github.com/lifeboat/lifeboat/internal/testdisk"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

const MiB = 1 << 20

// extFixture is a small GPT disk with two ext4 partitions full of files,
// built without root.
func extFixture(t *testing.T, dir string) *testdisk.Fixture {
	t.Helper()
	testenv.RequireTools(t, "sgdisk", "mkfs.ext4", "debugfs", "e2fsck")
	return testdisk.Build(t, dir, testdisk.Spec{
		Table: "gpt", Size: 96 * MiB, BootCode: true,
		Parts: []testdisk.Part{
			{FS: "ext4", Size: 32 * MiB, Label: "one", Files: &testdisk.TreeOptions{Seed: 1, TotalBytes: 4 << 20, HardLinks: true, Symlinks: true, Sparse: true, UTF8: true}},
			{FS: "ext4", Size: 40 * MiB, Label: "two", Files: &testdisk.TreeOptions{Seed: 2, TotalBytes: 6 << 20, Symlinks: true}},
		},
	})
}

// startClone drives the home screen to the plan of a Disk Clone from src
// to dst, with verify on.
func startClone(h *harness, src, dst string) string {
	h.t.Helper()
	h.waitFor("Disk Clone", "Partition Clone", "Power off", filepath.Base(src))
	h.choose("Disk Clone")
	h.waitFor("copy FROM")
	h.choose(filepath.Base(src))
	h.waitFor("copy TO")
	h.choose(filepath.Base(dst))
	h.waitFor("Verify", "[ ]")
	h.key(tcell.KeyTab) // layout -> verify
	h.typeText(" ")
	h.waitFor("[X]")
	h.key(tcell.KeyTab) // -> Next
	h.key(tcell.KeyEnter)
	return h.waitFor("OVERWRITTEN", "KEPT", "Continue")
}

func TestDiskClone(t *testing.T) {
	dir := t.TempDir()
	fx := extFixture(t, dir)
	sum := testdisk.SHA256(t, fx.Path)
	target := testdisk.EmptyFile(t, filepath.Join(dir, "target.img"), 128*MiB)
	h := start(t, Options{DiskFiles: []string{fx.Path, target}}, nil)
	plan := startClone(h, fx.Path, target)
	for _, want := range []string{"only read", "EVERYTHING on the target", "nothing on the target", "partition 1 ext4 \"one\"", "To copy:"} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan)
		}
	}
	t.Logf("plan:\n%s", plan)
	h.key(tcell.KeyEnter) // Continue
	h.waitFor("Type its file name", "\"target.img\"")
	h.typeText("target")
	h.key(tcell.KeyEnter)
	h.waitFor("does not match", "Nothing was written")
	if testdisk.SHA256(t, target) != testdisk.SHA256(t, testdisk.EmptyFile(t, filepath.Join(t.TempDir(), "z"), 128*MiB)) {
		t.Fatal("the target was written after a wrong confirmation")
	}
	h.typeText("target.img")
	h.key(tcell.KeyEnter)
	s := h.waitFor("FINISHED", "Verify: every byte written was read back", "The log is")
	t.Logf("summary:\n%s", s)
	h.key(tcell.KeyEnter)
	h.waitFor("Actions", "Disks")
	if testdisk.SHA256(t, fx.Path) != sum {
		t.Fatal("the source changed")
	}
	testdisk.CheckCopy(t, fx, target)
}

// openRepoTyped picks "Type a location" and opens the repository at loc.
func openRepoTyped(h *harness, loc string) {
	h.t.Helper()
	h.choose("Type a location")
	h.waitFor("Location", "Password", "Open")
	h.typeText(loc)
	h.key(tcell.KeyTab, 4) // password, share password, host key, Open
	h.key(tcell.KeyEnter)
}

func TestBackupRestore(t *testing.T) {
	dir := t.TempDir()
	fx := extFixture(t, dir)
	sum := testdisk.SHA256(t, fx.Path)
	target := testdisk.EmptyFile(t, filepath.Join(dir, "restored.img"), 128*MiB)
	repoDir := filepath.Join(dir, "repo")
	h := start(t, Options{DiskFiles: []string{fx.Path, target}}, nil)

	h.waitFor("Backup", filepath.Base(fx.Path))
	h.choose("Backup")
	h.waitFor("Which disk do you back up?")
	h.choose(filepath.Base(fx.Path))
	h.waitFor("The whole disk, or one partition?")
	h.choose("the whole disk")
	h.waitFor("Where do the snapshots go?")
	openRepoTyped(h, repoDir)
	h.waitFor("Compression", "Tags")
	h.key(tcell.KeyTab)
	h.typeText("ui-test")
	h.key(tcell.KeyTab)
	h.key(tcell.KeyEnter)
	plan := h.waitFor("OVERWRITTEN  nothing", "KEPT         every snapshot", "tags ui-test", "Continue")
	t.Logf("backup plan:\n%s", plan)
	h.key(tcell.KeyEnter)
	s := h.waitFor("FINISHED", "Snapshot", "added to the repository", "The log is")
	t.Logf("backup summary:\n%s", s)
	h.key(tcell.KeyEnter)
	h.waitFor("Actions", "Disks")

	h.choose("Restore")
	h.waitFor("Where is the repository?")
	openRepoTyped(h, repoDir)
	h.waitFor("Which snapshot")
	h.choose("snapshot")
	h.waitFor("restore TO")
	h.choose(filepath.Base(target))
	h.waitFor("Layout", "Verify", "Delta")
	h.key(tcell.KeyTab) // -> verify
	h.typeText(" ")
	h.key(tcell.KeyTab, 2) // -> delta -> Next
	h.key(tcell.KeyEnter)
	plan = h.waitFor("FROM  snapshot", "OVERWRITTEN  EVERYTHING", "Continue")
	t.Logf("restore plan:\n%s", plan)
	h.key(tcell.KeyEnter)
	h.waitFor("Type its file name")
	h.typeText(filepath.Base(target))
	h.key(tcell.KeyEnter)
	s = h.waitFor("FINISHED", "matches the snapshot")
	t.Logf("restore summary:\n%s", s)
	h.key(tcell.KeyEnter)
	h.waitFor("Actions")
	if testdisk.SHA256(t, fx.Path) != sum {
		t.Fatal("the source changed")
	}
	testdisk.CheckCopy(t, fx, target)

	// Images: the snapshot verifies with all its data.
	h.choose("Images")
	h.waitFor("Where is the repository?")
	openRepoTyped(h, repoDir)
	h.waitFor("verify or forget")
	h.choose("snapshot")
	h.waitFor("Verify all data")
	h.key(tcell.KeyTab)
	h.key(tcell.KeyEnter)
	s = h.waitFor("FINISHED", "Verify result: no problems found")
	t.Logf("verify summary:\n%s", s)
}

func TestTargetTooSmall(t *testing.T) {
	dir := t.TempDir()
	fx := extFixture(t, dir)
	target := testdisk.EmptyFile(t, filepath.Join(dir, "small.img"), 48*MiB)
	sum := testdisk.SHA256(t, target)
	h := start(t, Options{DiskFiles: []string{fx.Path, target}}, nil)
	h.waitFor("Disk Clone", filepath.Base(target))
	h.choose("Disk Clone")
	h.waitFor("copy FROM")
	h.choose(filepath.Base(fx.Path))
	h.waitFor("copy TO")
	h.choose(filepath.Base(target))
	h.waitFor("Verify", "[ ]")
	h.key(tcell.KeyTab, 2)
	h.key(tcell.KeyEnter)
	s := h.waitFor("too small", "Nothing was written")
	t.Logf("refusal:\n%s", s)
	h.key(tcell.KeyEnter)
	h.waitFor("Layout", "Verify")
	if testdisk.SHA256(t, target) != sum {
		t.Fatal("the target changed")
	}
}
