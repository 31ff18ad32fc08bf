package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/internal/sysdisk"
	"github.com/lifeboat/lifeboat/internal/testdisk"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

// TestSystemCLI runs clone --system onto a disk smaller than the source
// (the root shrinks), then backup --system and restore onto another small
// disk, and checks what the plan says, the copies' file systems and that
// the source never changes. The boots of such copies are in engine/clone
// and engine/image.
func TestSystemCLI(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "e2fsck", "resize2fs", "tune2fs", "debugfs")
	dir := t.TempDir()
	src := sysdisk.Build(t, filepath.Join(dir, "src"), sysdisk.Options{})
	sum := testdisk.SHA256(t, src.Path)
	check := func(t *testing.T, target, out string) {
		t.Helper()
		for _, want := range []string{
			"take  partition 4: Linux root (Debian GNU/Linux 12 (bookworm))", "leave partition 1:",
			"shrink ext4 from 96.0 MiB", `\EFI\BOOT\BOOTX64.EFI`, "GRUB's BIOS boot code",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("the output does not say %q:\n%s", want, out)
			}
		}
		tbl := testdisk.ReadTable(t, target)
		rp, ok := tbl.Find(sysdisk.PartRoot)
		if !ok || len(tbl.Partitions) != 3 {
			t.Fatalf("target partitions %+v", tbl.Partitions)
		}
		testdisk.Fsck(t, target, rp.Start, rp.Size, "ext4")
		if testdisk.SHA256(t, src.Path) != sum {
			t.Fatal("the source changed")
		}
	}
	t.Run("clone", func(t *testing.T) {
		dst := testdisk.EmptyFile(t, filepath.Join(dir, "clone.img"), 84<<20)
		code, out, errs := runCapture(t, "clone", "--from", src.Path, "--to", dst, "--system", "--yes", "--progress", "none", "--scratch-dir", t.TempDir())
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errs)
		}
		check(t, dst, out)
	})
	t.Run("backup-restore", func(t *testing.T) {
		repoDir := filepath.Join(dir, "repo")
		pw := filepath.Join(dir, "pw")
		os.WriteFile(pw, []byte("pw\n"), 0o600)
		if code, out, errs := runCapture(t, "init", "--repo", repoDir, "--password-file", pw); code != 0 {
			t.Fatalf("init: %d %s %s", code, out, errs)
		}
		code, out, errs := runCapture(t, "backup", "--from", src.Path, "--repo", repoDir, "--password-file", pw, "--system", "--progress", "none")
		if code != 0 || !strings.Contains(out, "leave partition 1: /srv/data from fstab") {
			t.Fatalf("backup: %d\n%s\n%s", code, out, errs)
		}
		dst := testdisk.EmptyFile(t, filepath.Join(dir, "restore.img"), 84<<20)
		code, out, errs = runCapture(t, "restore", "--repo", repoDir, "--password-file", pw, "--to", dst, "--yes", "--progress", "none")
		if code != 0 {
			t.Fatalf("restore: %d\n%s\n%s", code, out, errs)
		}
		check(t, dst, out)

		// The same snapshot again, with new identities: the copy's root
		// has a new UUID and its fstab and grub.cfg name it.
		dst = testdisk.EmptyFile(t, filepath.Join(dir, "restore-new.img"), 84<<20)
		code, out, errs = runCapture(t, "restore", "--repo", repoDir, "--password-file", pw, "--to", dst, "--new-ids", "--yes", "--progress", "none")
		if code != 0 {
			t.Fatalf("restore --new-ids: %d\n%s\n%s", code, out, errs)
		}
		check(t, dst, out)
		tbl := testdisk.ReadTable(t, dst)
		rp, _ := tbl.Find(sysdisk.PartRoot)
		spec := fmt.Sprintf("%s?offset=%d", dst, rp.Start)
		for _, f := range []string{"/etc/fstab", "/boot/grub/grub.cfg"} {
			b, err := exec.Command("debugfs", "-R", "cat "+f, spec).Output()
			if err != nil {
				t.Fatalf("debugfs cat %s: %v", f, err)
			}
			if strings.Contains(string(b), src.RootUUID) || !strings.Contains(string(b), "UUID=") {
				t.Errorf("%s on the copy still names the source's root %s:\n%s", f, src.RootUUID, b)
			}
		}
	})
}

func TestSystemUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"clone", "--from", "a", "--to", "b", "--system", "--partition", "2"},
		{"clone", "--from", "a", "--to", "b", "--system", "--sector-by-sector"},
		{"backup", "--from", "a", "--repo", "r", "--system", "--partition", "2"},
		{"restore", "--repo", "r", "--to", "b", "--system", "--partition", "2"},
	} {
		if code, _, errs := runCapture(t, args...); code != 2 || !strings.Contains(errs, "--system") {
			t.Errorf("%v: exit %d (%s), want 2 naming --system", args, code, errs)
		}
	}
}
