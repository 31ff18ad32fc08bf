package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/engine/repo"
	"github.com/lifeboat/lifeboat/internal/testdisk"
	"github.com/lifeboat/lifeboat/netshare/local"
)

// TestBackupKilled kills a backup with SIGKILL at several points: the
// repository it leaves holds no unfinished snapshot, every snapshot it has
// reads back whole, and running the same backup again completes and reuses
// the chunks already stored.
func TestBackupKilled(t *testing.T) {
	dir := t.TempDir()
	fx := testdisk.Build(t, dir, testdisk.Spec{Table: "gpt", Size: 160 * testdisk.MiB,
		Parts: []testdisk.Part{{FS: "ext4", Size: 128 * testdisk.MiB, Label: "data",
			Files: &testdisk.TreeOptions{Seed: 7, TotalBytes: 48 << 20}}}})
	for _, at := range []float64{0.1, 0.4, 0.8} {
		repoDir := filepath.Join(dir, "repo-"+strings.ReplaceAll(time.Now().Format("150405.000"), ".", ""))
		killBackupAt(t, fx.Path, repoDir, at)
		be, err := local.New(repoDir)
		if err != nil {
			t.Fatal(err)
		}
		r, err := repo.Open(context.Background(), be, nil)
		if err != nil {
			t.Fatalf("killed at %.0f%%: open: %v", at*100, err)
		}
		snaps, err := r.Snapshots(context.Background())
		if err != nil || len(snaps) != 0 {
			t.Fatalf("killed at %.0f%%: snapshots %d, %v", at*100, len(snaps), err)
		}
		r.Close()
		be.Close()
		code, out, errs := runCapture(t, "backup", "--from", fx.Path, "--repo", repoDir, "--progress", "none", "--pack-size", "1048576")
		if code != 0 {
			t.Fatalf("rerun after kill at %.0f%%: %d\n%s", at*100, code, errs)
		}
		t.Logf("killed at %.0f%%, rerun: %s", at*100, strings.TrimSpace(out))
		// Past the first packs, the killed run's uploads are reused.
		if m := reused.FindStringSubmatch(out); at >= 0.4 && (m == nil || m[1] == "0") {
			t.Errorf("the rerun reused nothing: %s", out)
		}
		checkSnapshotsReadable(t, repoDir)
	}
}

var reused = regexp.MustCompile(`(\d+) already stored`)

func killBackupAt(t *testing.T, src, repoDir string, frac float64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "backup", "--from", src, "--repo", repoDir, "--progress", "json", "--pack-size", "1048576")
	cmd.Env = append(os.Environ(), "LIFEBOAT_TEST_AS_MAIN=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		var ev struct {
			Phase       string `json:"phase"`
			Done, Total int64
		}
		json.Unmarshal(lines.Bytes(), &ev)
		if ev.Phase == "backup" && ev.Total > 0 && float64(ev.Done) >= frac*float64(ev.Total) {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	for lines.Scan() {
	}
	cmd.Wait()
}

// checkSnapshotsReadable loads every snapshot and reads all its streams.
func checkSnapshotsReadable(t *testing.T, repoDir string) {
	t.Helper()
	be, err := local.New(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	r, err := repo.Open(context.Background(), be, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	snaps, err := r.Snapshots(context.Background())
	if err != nil || len(snaps) == 0 {
		t.Fatalf("snapshots: %d %v", len(snaps), err)
	}
	for _, s := range snaps {
		for _, st := range s.Streams {
			sr, err := r.StreamReader(context.Background(), st)
			if err != nil {
				t.Fatalf("snapshot %s stream %s: %v", s.ID, st.Name, err)
			}
			buf := make([]byte, 1<<20)
			for off := int64(0); off < st.Size; off += int64(len(buf)) {
				n := min(int64(len(buf)), st.Size-off)
				if _, err := sr.ReadAt(buf[:n], off); err != nil {
					t.Fatalf("snapshot %s stream %s at %d: %v", s.ID, st.Name, off, err)
				}
			}
		}
	}
}
