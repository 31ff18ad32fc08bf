package ui

import (
	"os"
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

// extAndTarget builds extFixture and an empty image file of size named
// name beside it, to clone or restore onto.
func extAndTarget(t *testing.T, name string, size int64) (*testdisk.Fixture, string) {
	t.Helper()
	dir := t.TempDir()
	return extFixture(t, dir), testdisk.EmptyFile(t, filepath.Join(dir, name), size)
}

// unchanged records the SHA-256 of the file at path; the check it returns
// fails the test when the file no longer has it.
func unchanged(t *testing.T, path, what string) func() {
	t.Helper()
	sum := testdisk.SHA256(t, path)
	return func() {
		t.Helper()
		if testdisk.SHA256(t, path) != sum {
			t.Fatalf("%s changed", what)
		}
	}
}

// walkClone drives the home screen through clone wizard action (Disk
// Clone, System Clone) from src to dst, ticks verify when asked, and
// presses Next on the options; onTarget must show on the target step.
func walkClone(h *harness, action, src, dst string, verify bool, onTarget ...string) {
	h.t.Helper()
	h.waitFor(action, filepath.Base(src), filepath.Base(dst))
	h.choose(action)
	h.waitFor("copy FROM")
	h.choose(filepath.Base(src))
	h.waitFor(append([]string{"copy TO"}, onTarget...)...)
	h.choose(filepath.Base(dst))
	h.waitFor("Verify", "[ ]")
	h.key(tcell.KeyTab) // layout -> verify
	if verify {
		h.typeText(" ")
		h.waitFor("[X]")
	}
	h.key(tcell.KeyTab) // -> Next
	h.key(tcell.KeyEnter)
}

// startClone drives the home screen to the plan of a Disk Clone from src
// to dst, with verify on.
func startClone(h *harness, src, dst string) string {
	h.t.Helper()
	h.waitFor("Disk Clone", "Partition Clone", "Power off")
	walkClone(h, "Disk Clone", src, dst, true)
	return h.waitFor("OVERWRITTEN", "KEPT", "Continue")
}

// confirmAs waits for the typed confirmation and types text.
func confirmAs(h *harness, text string) {
	h.t.Helper()
	h.waitFor("Type its file name")
	h.typeText(text)
	h.key(tcell.KeyEnter)
}

// backFromConfirmation presses Esc on the typed confirmation of wizard
// name: the plan must come back whole, its Continue first and focused, and
// Continue must lead to the confirmation again.
func backFromConfirmation(h *harness, name string) {
	h.t.Helper()
	h.waitFor(name+" 5/5: confirm", "Type its file name")
	h.key(tcell.KeyEscape)
	s := h.waitFor(name+" 4/5: plan", "OVERWRITTEN", "Back")
	if !strings.Contains(s, "Continue") {
		h.t.Fatalf("the plan shown again after Esc on the confirmation has no Continue:\n%s", s)
	}
	h.key(tcell.KeyEnter) // Continue
	h.waitFor(name+" 5/5: confirm", "Type its file name")
}

// goHome presses Home on a job's summary and waits for the home screen.
func (h *harness) goHome() {
	h.t.Helper()
	h.key(tcell.KeyEnter)
	h.waitFor("Actions", "Disks")
}

// startBackup drives the home screen through the Backup wizard to the
// repository step for the whole of src; also must show there.
func startBackup(h *harness, src string, also ...string) {
	h.t.Helper()
	h.waitFor("Backup", filepath.Base(src))
	h.choose("Backup")
	h.waitFor("Which disk do you back up?")
	h.choose(filepath.Base(src))
	h.waitFor("The whole disk, or one partition?")
	h.choose("the whole disk")
	h.waitFor(append([]string{"Where do the snapshots go?"}, also...)...)
}

// backupPlan fills the backup's options with tags and returns its plan
// screen, which must show want too.
func backupPlan(h *harness, tags string, want ...string) string {
	h.t.Helper()
	h.waitFor("Compression", "Tags")
	h.key(tcell.KeyTab) // -> tags
	h.typeText(tags)
	h.key(tcell.KeyTab) // -> Next
	h.key(tcell.KeyEnter)
	return h.waitFor(append([]string{"OVERWRITTEN  nothing", "KEPT         every snapshot", "Continue"}, want...)...)
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

func TestDiskClone(t *testing.T) {
	fx, target := extAndTarget(t, "target.img", 128*MiB)
	sourceSame := unchanged(t, fx.Path, "the source")
	targetSame := unchanged(t, target, "the target, after a wrong confirmation,")
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
	backFromConfirmation(h, "Disk Clone")
	h.waitFor("\"target.img\"")
	confirmAs(h, "target")
	h.waitFor("does not match", "Nothing was written")
	targetSame()
	h.typeText("target.img")
	h.key(tcell.KeyEnter)
	s := h.waitFor("FINISHED", "Verify: every byte written was read back", "The log is")
	t.Logf("summary:\n%s", s)
	h.goHome()
	sourceSame()
	testdisk.CheckCopy(t, fx, target)
}

func TestBackupRestore(t *testing.T) {
	fx, target := extAndTarget(t, "restored.img", 128*MiB)
	sourceSame := unchanged(t, fx.Path, "the source")
	repoDir := filepath.Join(t.TempDir(), "repo")
	h := start(t, Options{DiskFiles: []string{fx.Path, target}}, nil)

	startBackup(h, fx.Path)
	openRepoTyped(h, repoDir)
	plan := backupPlan(h, "ui-test", "tags ui-test")
	t.Logf("backup plan:\n%s", plan)
	h.key(tcell.KeyEnter)
	s := h.waitFor("FINISHED", "Snapshot", "added to the repository", "The log is")
	t.Logf("backup summary:\n%s", s)
	h.goHome()

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
	backFromConfirmation(h, "Restore")
	confirmAs(h, filepath.Base(target))
	s = h.waitFor("FINISHED", "matches the snapshot")
	t.Logf("restore summary:\n%s", s)
	h.goHome()
	sourceSame()
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
	fx, target := extAndTarget(t, "small.img", 48*MiB)
	targetSame := unchanged(t, target, "the target")
	h := start(t, Options{DiskFiles: []string{fx.Path, target}}, nil)
	walkClone(h, "Disk Clone", fx.Path, target, false)
	s := h.waitFor("too small", "Nothing was written")
	t.Logf("refusal:\n%s", s)
	h.key(tcell.KeyEnter)
	h.waitFor("Layout", "Verify")
	targetSame()
}

// TestPartitionClone copies the fixture's second partition into the only
// partition of another disk, whose table and other bytes stay: the copy
// fills the larger partition, passes fsck and holds every file.
func TestPartitionClone(t *testing.T) {
	dir := t.TempDir()
	fx := extFixture(t, dir)
	dst := testdisk.Build(t, filepath.Join(dir, "dst"), testdisk.Spec{Table: "gpt", Size: 96 * MiB,
		Parts: []testdisk.Part{{FS: "ext4", Size: 64 * MiB, Label: "old"}}})
	// Both images are disk.img: the target gets a name of its own.
	target := filepath.Join(dir, "target.img")
	if err := os.Rename(dst.Path, target); err != nil {
		t.Fatal(err)
	}
	dst.Path = target
	sourceSame := unchanged(t, fx.Path, "the source")
	before := testdisk.ReadTable(t, dst.Path)
	h := start(t, Options{DiskFiles: []string{fx.Path, dst.Path}}, nil)
	h.waitFor("Partition Clone", filepath.Base(dst.Path))
	h.choose("Partition Clone")
	h.waitFor("copy FROM")
	h.choose(filepath.Base(fx.Path))
	h.waitFor("Which partition do you copy?")
	h.choose("ext4  two")
	h.waitFor("copy TO")
	h.choose(filepath.Base(dst.Path))
	h.waitFor("Into which partition of the target?")
	h.choose("ext4  old")
	h.waitFor("Verify", "[ ]")
	h.typeText(" ") // verify
	h.waitFor("[X]")
	h.key(tcell.KeyTab) // -> Next
	h.key(tcell.KeyEnter)
	plan := h.waitFor("OVERWRITTEN", "Continue")
	t.Logf("plan:\n%s", plan)
	for _, want := range []string{`partition 1 of the target (ext4 "old"`, "KEPT         the target's partition table", `partition 2 -> 1 ext4 "two"`, "grow ext4 to 64.0 MiB"} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan lacks %q", want)
		}
	}
	h.key(tcell.KeyEnter)
	confirmAs(h, filepath.Base(dst.Path))
	s := h.waitFor("FINISHED", "Verify: every byte written was read back")
	t.Logf("summary:\n%s", s)
	h.goHome()
	sourceSame()

	after := testdisk.ReadTable(t, dst.Path)
	tp, ok := after.Find(1)
	bp, _ := before.Find(1)
	if !ok || len(after.Partitions) != len(before.Partitions) || tp.Start != bp.Start || tp.Size != bp.Size || after.DiskGUID != before.DiskGUID {
		t.Fatalf("the target's table changed: before %+v, after %+v", before, after)
	}
	src := fx.Parts[1]
	testdisk.Fsck(t, dst.Path, tp.Start, tp.Size, src.FS)
	got := filepath.Join(t.TempDir(), "got")
	on := src
	on.Start, on.Size = tp.Start, tp.Size
	testdisk.Extract(t, dst.Path, on, got)
	testdisk.CompareTrees(t, src.SrcDir, got)
	if d := testdisk.Inspect(t, dst.Path); len(d.Partitions) != 1 || d.Partitions[0].Size != tp.Size || d.Partitions[0].FS != "ext4" {
		t.Fatalf("target after the clone: %+v", d.Partitions)
	}
}
