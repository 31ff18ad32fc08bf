package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/engine/repo"
	"github.com/lifeboat/lifeboat/internal/testenv"
	"github.com/lifeboat/lifeboat/netshare/local"
)

// TestBackupKilled kills a backup with SIGKILL at several points: the
// repository it leaves holds no unfinished snapshot, and running the same
// backup again completes, reuses the chunks already stored, and gives a
// snapshot that reads back whole.
func TestBackupKilled(t *testing.T) {
	testenv.RequireTools(t, "mkfs.ext4")
	dir := t.TempDir()
	// An ext4 volume holding 256 MiB of random data: enough work to be
	// interrupted, and nothing compression could shrink.
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(tree, 0o755)
	data := make([]byte, 256<<20)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < len(data); i += 8 {
		binary.LittleEndian.PutUint64(data[i:], rng.Uint64())
	}
	if err := os.WriteFile(filepath.Join(tree, "random.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "vol.img")
	mk, _ := testenv.LookPath("mkfs.ext4")
	if out, err := exec.Command(mk, "-q", "-F", "-d", tree, src, "300M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	args := func(repoDir string) []string {
		return []string{"backup", "--from", src, "--repo", repoDir, "--progress", "none", "--pack-size", "4194304"}
	}
	run := func(repoDir string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], args(repoDir)...)
		cmd.Env = append(os.Environ(), "LIFEBOAT_TEST_AS_MAIN=1")
		return cmd
	}
	// A whole backup's packs, to kill others part of the way: by the packs
	// they have stored, not by time, which a warm page cache changes.
	if out, err := run(filepath.Join(dir, "full")).CombinedOutput(); err != nil {
		t.Fatalf("full backup: %v\n%s", err, out)
	}
	total := len(packSet(t, filepath.Join(dir, "full")))
	if total < 20 {
		t.Fatalf("the full backup stored %d packs: too few to kill one part of the way", total)
	}
	interrupted := 0
	for i, frac := range []float64{0.2, 0.5, 0.8} {
		repoDir := filepath.Join(dir, fmt.Sprintf("killed-%d", i))
		cmd := run(repoDir)
		err := killWhen(t, cmd, func() bool { return len(packSet(t, repoDir)) >= int(frac*float64(total)) })
		if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Logf("the backup ended before the kill at %.0f%% of its packs (%v)", frac*100, err)
			continue
		}
		interrupted++
		if n := countSnapshots(t, repoDir); n != 0 {
			t.Fatalf("killed at %.0f%%: %d snapshots exist", frac*100, n)
		}
		code, out, errs := runCapture(t, args(repoDir)...)
		if code != 0 {
			t.Fatalf("rerun after a kill at %.0f%%: %d\n%s", frac*100, code, errs)
		}
		t.Logf("killed at %.0f%% of %d packs; rerun: %s", frac*100, total, strings.TrimSpace(out))
		if m := reused.FindStringSubmatch(out); frac >= 0.5 && (m == nil || m[1] == "0") {
			t.Errorf("the rerun reused nothing the killed run stored: %s", out)
		}
		checkSnapshotsReadable(t, repoDir)
	}
	if interrupted < 2 {
		t.Fatalf("only %d of 3 backups were killed before they ended", interrupted)
	}
}

var reused = regexp.MustCompile(`(\d+) already stored`)

var packName = regexp.MustCompile(`^[0-9a-f]{64}$`)

// killWhen starts cmd and kills it with SIGKILL as soon as reached says so
// (polled every 200 µs), unless it ends first; it returns cmd.Wait's error.
func killWhen(t *testing.T, cmd *exec.Cmd, reached func() bool) error {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for {
		select {
		case err := <-exited:
			return err
		case <-time.After(200 * time.Microsecond):
			if reached() {
				cmd.Process.Signal(syscall.SIGKILL)
				return <-exited
			}
		}
	}
}

// packSet and indexSet are the names of a local repository's finished
// packs and index files.
func packSet(t *testing.T, repoDir string) map[string]bool { return objectSet(t, repoDir, "data") }

func indexSet(t *testing.T, repoDir string) map[string]bool { return objectSet(t, repoDir, "index") }

func objectSet(t *testing.T, repoDir, sub string) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	filepath.WalkDir(filepath.Join(repoDir, sub), func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && packName.MatchString(d.Name()) {
			set[d.Name()] = true
		}
		return nil
	})
	return set
}

func countSnapshots(t *testing.T, repoDir string) int {
	t.Helper()
	be, err := local.New(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	r, err := repo.Open(context.Background(), be, nil)
	if errors.Is(err, repo.ErrNotRepository) {
		return 0 // killed before the repository was created
	}
	if err != nil {
		t.Fatalf("open the killed backup's repository: %v", err)
	}
	defer r.Close()
	snaps, err := r.Snapshots(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(snaps)
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

// TestPruneKilled kills prune with SIGKILL at several points while it
// repacks half-used packs: the repository verifies after each kill, prune
// runs again to the end, and the kept snapshot holds exactly what it held.
func TestPruneKilled(t *testing.T) {
	testenv.RequireTools(t, "mkfs.ext4")
	dir := t.TempDir()
	// Two volumes whose one file differs in half its MiBs: forgetting
	// the first snapshot leaves each of its packs about half used.
	data := make([]byte, 160<<20)
	rng := rand.New(rand.NewPCG(11, 11))
	fill := func(b []byte) {
		for i := 0; i+8 <= len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
		}
	}
	fill(data)
	mk, _ := testenv.LookPath("mkfs.ext4")
	vol := func(name string) string {
		tree := filepath.Join(dir, name+"-tree")
		os.MkdirAll(tree, 0o755)
		if err := os.WriteFile(filepath.Join(tree, "data.bin"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		img := filepath.Join(dir, name+".img")
		if out, err := exec.Command(mk, "-q", "-F", "-d", tree, img, "200M").CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v\n%s", err, out)
		}
		return img
	}
	v1 := vol("v1")
	// Changed 4 MiB runs, so that the chunks between them (1 MiB, aligned
	// to the partition, not to the file) stay the same.
	for off := 0; off < len(data); off += 8 << 20 {
		fill(data[off : off+4<<20])
	}
	v2 := vol("v2")
	base := filepath.Join(dir, "base")
	for _, v := range []string{v1, v2} {
		if code, _, errs := runCapture(t, "backup", "--from", v, "--repo", base, "--progress", "none", "--pack-size", "8388608"); code != 0 {
			t.Fatal(errs)
		}
	}
	if code, _, errs := runCapture(t, "forget", "--repo", base, "--keep-last", "1"); code != 0 {
		t.Fatal(errs)
	}
	want := filepath.Join(dir, "want.raw")
	if code, _, errs := runCapture(t, "export", "--repo", base, "--to", want); code != 0 {
		t.Fatal(errs)
	}
	prune := func(repoDir string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "prune", "--repo", repoDir, "--repack-below", "0.7", "--pack-size", "1048576")
		cmd.Env = append(os.Environ(), "LIFEBOAT_TEST_AS_MAIN=1")
		return cmd
	}
	// A whole prune, on a copy, to kill others part of the way: by the
	// packs they have written, not by time, which the page cache changes.
	basePacks := packSet(t, base)
	full := copyTree(t, base, filepath.Join(dir, "full"))
	out, err := prune(full).CombinedOutput()
	t.Logf("%s", out)
	if err != nil || !strings.Contains(string(out), "repacked") {
		t.Fatalf("prune: %v\n%s", err, out)
	}
	written := 0
	for name := range packSet(t, full) {
		if !basePacks[name] {
			written++
		}
	}
	if written < 4 {
		t.Fatalf("the whole prune wrote %d packs: too few to kill one part of the way", written)
	}
	if code, out, _ := runCapture(t, "snapshots", "--repo", full); code == 0 {
		t.Logf("after it:\n%s", out)
	}
	interrupted := 0
	// Killed after its first new pack, after half of them, and once its
	// new index is written (while it removes what that index dropped).
	for i, stage := range []string{"first", "half", "index"} {
		repoDir := copyTree(t, base, filepath.Join(dir, fmt.Sprintf("killed-%d", i)))
		baseIndex := indexSet(t, repoDir)
		cmd := prune(repoDir)
		reached := func() bool {
			switch stage {
			case "index":
				for name := range indexSet(t, repoDir) {
					if !baseIndex[name] {
						return true
					}
				}
				return false
			default:
				n := 0
				for name := range packSet(t, repoDir) {
					if !basePacks[name] {
						n++
					}
				}
				return n >= 1 && (stage == "first" || n >= written/2)
			}
		}
		err := killWhen(t, cmd, reached)
		if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Logf("the prune ended before the kill at stage %q (%v)", stage, err)
			continue
		}
		t.Logf("prune killed at stage %q", stage)
		interrupted++
		if code, out, errs := runCapture(t, "verify", "--repo", repoDir, "--read-data", "--progress", "none"); code != 0 {
			t.Fatalf("after a kill at stage %q: verify failed:\n%s\n%s", stage, out, errs)
		}
		// The killed prune's lock is stale only after 30 minutes or when
		// its process is gone: it is gone, on this host.
		if code, out, errs := runCapture(t, "prune", "--repo", repoDir, "--repack-below", "0.7"); code != 0 {
			t.Fatalf("prune again after a kill at stage %q: %s %s", stage, out, errs)
		}
		if code, out, _ := runCapture(t, "verify", "--repo", repoDir, "--read-data", "--progress", "none"); code != 0 {
			t.Fatalf("verify after the second prune:\n%s", out)
		}
		got := filepath.Join(dir, fmt.Sprintf("got-%d.raw", i))
		if code, _, errs := runCapture(t, "export", "--repo", repoDir, "--to", got); code != 0 {
			t.Fatal(errs)
		}
		if sha(t, got) != sha(t, want) {
			t.Errorf("after a kill at stage %q the kept snapshot changed", stage)
		}
	}
	if interrupted < 2 {
		t.Fatalf("only %d of 3 prunes were killed before they ended", interrupted)
	}
}

func copyTree(t *testing.T, from, to string) string {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	return to
}

func sha(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}
