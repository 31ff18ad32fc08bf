package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testdisk"
)

// TestBackupSnapshotsRestoreCLI drives the repository commands the way a
// user would: init an encrypted repository, back up twice with tags, list
// the snapshots as JSON, restore the latest onto a larger image file.
func TestBackupSnapshotsRestoreCLI(t *testing.T) {
	src := makeDisksImage(t)
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
	if code, out, errs := runCapture(t, "init", "--repo", repoDir, "--password-file", pwFile); code != 0 || !strings.Contains(out, "encrypted repository") {
		t.Fatalf("init: %d %s %s", code, out, errs)
	}
	for _, tag := range []string{"monday", "tuesday"} {
		code, out, errs := runCapture(t, "backup", "--from", src, "--repo", repoDir, "--password-file", pwFile, "--tag", tag, "--progress", "none")
		if code != 0 || !strings.Contains(out, "Snapshot ") {
			t.Fatalf("backup: %d\n%s\n%s", code, out, errs)
		}
	}
	code, out, errs := runCapture(t, "snapshots", "--repo", repoDir, "--password-file", pwFile, "--json")
	if code != 0 {
		t.Fatalf("snapshots: %d %s", code, errs)
	}
	var rows []struct {
		ID     string   `json:"id"`
		Tags   []string `json:"tags"`
		Host   string   `json:"host"`
		Source struct {
			Path string `json:"path"`
			Size int64  `json:"size"`
		} `json:"source"`
		Partitions []struct {
			Number int    `json:"number"`
			FS     string `json:"fs"`
			Label  string `json:"label"`
		} `json:"partitions"`
		Used  int64 `json:"used"`
		Added int64 `json:"added"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("snapshots --json: %v\n%s", err, out)
	}
	if len(rows) != 2 || rows[0].Tags[0] != "monday" || rows[1].Tags[0] != "tuesday" || rows[0].Source.Size != 12<<20 ||
		len(rows[0].Partitions) != 1 || rows[0].Partitions[0].FS != "ext4" || rows[0].Partitions[0].Label != "cli-root" || rows[0].Used == 0 {
		t.Fatalf("snapshots: %+v", rows)
	}
	if rows[1].Added >= rows[0].Added/2 {
		t.Errorf("the second backup of an unchanged disk added %d bytes (first %d)", rows[1].Added, rows[0].Added)
	}
	code, out, _ = runCapture(t, "snapshots", "--repo", repoDir, "--password-file", pwFile)
	if code != 0 || !strings.Contains(out, rows[0].ID[:8]) || !strings.Contains(out, "1:ext4") {
		t.Errorf("snapshots table:\n%s", out)
	}

	// A wrong password is refused clearly.
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("nope"), 0o600)
	if code, _, errs := runCapture(t, "snapshots", "--repo", repoDir, "--password-file", bad); code == 0 || !strings.Contains(strings.ToLower(errs), "password") {
		t.Errorf("wrong password: exit %d, %q", code, errs)
	}

	dst := filepath.Join(dir, "dst.img")
	os.WriteFile(dst, nil, 0o644)
	os.Truncate(dst, 24<<20)
	code, out, errs = runCapture(t, "restore", "--repo", repoDir, "--password-file", pwFile, "--snapshot", rows[0].ID[:10], "--to", dst, "--yes", "--verify", "--progress", "none")
	if code != 0 || !strings.Contains(out, "Verified") || !strings.Contains(out, "snapshot "+rows[0].ID[:8]) {
		t.Fatalf("restore: %d\n%s\n%s", code, out, errs)
	}
	code, out, _ = runCapture(t, "disks", "--json", "--disk", dst)
	var ds []struct {
		Path       string `json:"path"`
		Partitions []struct {
			Start int64  `json:"start"`
			Size  int64  `json:"size"`
			FS    string `json:"fs"`
		} `json:"partitions"`
	}
	if err := json.Unmarshal([]byte(out), &ds); err != nil || code != 0 {
		t.Fatalf("disks: %v", err)
	}
	for _, d := range ds {
		if d.Path == dst {
			p := d.Partitions[0]
			if p.Size < 20<<20 {
				t.Errorf("the last partition did not grow on the larger target: %d bytes", p.Size)
			}
			testdisk.Fsck(t, dst, p.Start, p.Size, "ext4")
			return
		}
	}
	t.Fatal("target not listed")
}
