package image

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/internal/sysdisk"
	"github.com/lifeboat/lifeboat/internal/testdisk"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

// TestSystemBackupRestore backs up the bootable fixture with System (the
// data partition is not stored), restores the snapshot onto a disk smaller
// than the source, where the root is shrunk on a copy-on-write view of the
// snapshot, and boots the result under SeaBIOS and OVMF.
func TestSystemBackupRestore(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "e2fsck", "resize2fs", "qemu-system-x86_64")
	dir := t.TempDir()
	src := sysdisk.Build(t, filepath.Join(dir, "src"), sysdisk.Options{})
	sum := testdisk.SHA256(t, src.Path)
	repoDir := filepath.Join(dir, "repo")
	r := newRepo(t, repoDir, nil)
	defer r.Close()
	res, err := Backup(t.Context(), BackupOptions{Source: testdisk.Inspect(t, src.Path), Repo: r, RepoPath: repoDir, System: true}, nil)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if res.Meta.Kind != "system" {
		t.Errorf("snapshot kind %q, want system", res.Meta.Kind)
	}
	for _, p := range res.Meta.Partitions() {
		if p.Number == sysdisk.PartData {
			t.Errorf("the data partition was backed up: %+v", p)
		}
	}
	if !strings.Contains(strings.Join(res.Meta.System, "\n"), "leave partition 1: /srv/data from fstab") {
		t.Errorf("the snapshot's system lines %q do not say the data partition was left out", res.Meta.System)
	}
	target := testdisk.EmptyFile(t, filepath.Join(dir, "target.img"), 84*MiB)
	restore(t, r, res.Snapshot, target, RestoreOptions{Verify: true})
	if testdisk.SHA256(t, src.Path) != sum {
		t.Fatal("the source changed")
	}
	tbl := testdisk.ReadTable(t, target)
	rp, ok := tbl.Find(sysdisk.PartRoot)
	if !ok || len(tbl.Partitions) != 3 {
		t.Fatalf("restored partitions %+v", tbl.Partitions)
	}
	testdisk.Fsck(t, target, rp.Start, rp.Size, "ext4")
	for _, fw := range []sysdisk.Firmware{sysdisk.BIOS, sysdisk.UEFI} {
		b := sysdisk.Boot(t, fw, target)
		if b.Root != src.RootUUID || b.Fstab != src.RootUUID {
			t.Errorf("%s: booted root %q, fstab %q; want %q", fw, b.Root, b.Fstab, src.RootUUID)
		}
	}
}
