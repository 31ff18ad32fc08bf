package main

import (
	"bytes"
	"context"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/engine/blockdev"
	"github.com/lifeboat/lifeboat/engine/fsmap/probe"
)

// changeUsedBytes overwrites n bytes inside the used blocks of the ext4
// partition at 1 MiB of img with random data, so the next backup has
// something new to store.
func changeUsedBytes(t *testing.T, img string, n int64, seed uint64) {
	t.Helper()
	d, err := blockdev.Open(context.Background(), img, blockdev.Options{Mode: blockdev.ReadWrite})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	w := blockdev.Sub(d, 1<<20, 8<<20)
	f, err := probe.Detect(context.Background(), w, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := f.UsedExtents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ext {
		// Past the superblock and group descriptors, inside a long extent.
		if e.Len >= n+64<<10 {
			b := make([]byte, n)
			rng := rand.New(rand.NewPCG(seed, seed))
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			if _, err := w.WriteAt(b, e.Off+64<<10); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("no used extent long enough")
}

func biggestPack(t *testing.T, repoDir string) string {
	t.Helper()
	var best string
	var size int64
	filepath.WalkDir(filepath.Join(repoDir, "data"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, _ := d.Info(); fi.Size() > size {
				best, size = p, fi.Size()
			}
		}
		return nil
	})
	if best == "" {
		t.Fatal("no pack")
	}
	return best
}

// TestVerifyNamesDamage flips one byte in a pack: the structural check
// passes it, verify --read-data finds it, exits non-zero and names the
// snapshot, the partition and the byte range.
func TestVerifyNamesDamage(t *testing.T) {
	src := makeDisksImage(t)
	repoDir := filepath.Join(t.TempDir(), "repo")
	if code, _, errs := runCapture(t, "backup", "--from", src, "--repo", repoDir, "--progress", "none"); code != 0 {
		t.Fatal(errs)
	}
	code, out, errs := runCapture(t, "verify", "--repo", repoDir, "--read-data", "--progress", "none")
	if code != 0 || !strings.Contains(out, "No problems found") {
		t.Fatalf("clean repository: %d\n%s\n%s", code, out, errs)
	}
	_, snaps, _ := runCapture(t, "snapshots", "--repo", repoDir)
	id := regexp.MustCompile(`(?m)^([0-9a-f]{8})`).FindStringSubmatch(snaps)
	pack := biggestPack(t, repoDir)
	b, _ := os.ReadFile(pack)
	b[len(b)/3] ^= 0x40
	os.WriteFile(pack, b, 0o644)
	if code, out, _ := runCapture(t, "verify", "--repo", repoDir, "--progress", "none"); code != 0 {
		t.Logf("the structural check also noticed: %s", out)
	}
	code, out, errs = runCapture(t, "verify", "--repo", repoDir, "--read-data", "--progress", "none")
	if code == 0 {
		t.Fatalf("a flipped byte was not found:\n%s", out)
	}
	t.Logf("verify --read-data:\n%s%s", out, errs)
	if id == nil || !strings.Contains(out, "Damaged: snapshot "+id[1]) || !regexp.MustCompile(`bytes \d+-\d+`).MatchString(out) {
		t.Errorf("the damage is not named by snapshot %v and byte range:\n%s", id, out)
	}
	if !strings.Contains(out, `partition 1 (ext4 "cli-root")`) && !strings.Contains(out, "partition table area") {
		t.Errorf("the damage does not name the partition or area:\n%s", out)
	}
	if !strings.Contains(errs, "damaged") {
		t.Errorf("stderr: %s", errs)
	}
}

// TestForgetPrune keeps the newest snapshot of three, prunes, and checks
// that space was freed and what is kept still verifies and restores.
func TestForgetPrune(t *testing.T) {
	src := makeDisksImage(t)
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	for i := 0; i < 3; i++ {
		if i > 0 {
			changeUsedBytes(t, src, 512<<10, uint64(i))
		}
		if code, _, errs := runCapture(t, "backup", "--from", src, "--repo", repoDir, "--progress", "none", "--tag", "nightly"); code != 0 {
			t.Fatal(errs)
		}
	}
	before := dirSize(t, repoDir)
	// What the newest snapshot holds, before anything is forgotten.
	want := filepath.Join(dir, "want.raw")
	if code, _, errs := runCapture(t, "export", "--repo", repoDir, "--to", want); code != 0 {
		t.Fatal(errs)
	}
	if code, _, errs := runCapture(t, "forget", "--repo", repoDir); code != 2 || !strings.Contains(errs, "--keep") {
		t.Errorf("forget without a policy: exit %d, %q", code, errs)
	}
	code, out, errs := runCapture(t, "forget", "--repo", repoDir, "--keep-last", "1", "--tag", "nightly", "--dry-run")
	if code != 0 || !strings.Contains(out, "2 removed") || dirSize(t, repoDir) != before {
		t.Fatalf("dry run: %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = runCapture(t, "forget", "--repo", repoDir, "--keep-last", "1", "--tag", "nightly", "--prune")
	if code != 0 || !strings.Contains(out, "1 snapshot(s) kept, 2 removed") || !strings.Contains(out, "Pruned") {
		t.Fatalf("forget --prune: %d\n%s\n%s", code, out, errs)
	}
	t.Logf("%s", out)
	after := dirSize(t, repoDir)
	if after >= before {
		t.Errorf("prune freed nothing: %d bytes before, %d after", before, after)
	}
	_, list, _ := runCapture(t, "snapshots", "--repo", repoDir, "--json")
	if strings.Count(list, `"id"`) != 1 {
		t.Fatalf("snapshots after forget:\n%s", list)
	}
	if code, out, _ := runCapture(t, "verify", "--repo", repoDir, "--read-data", "--progress", "none"); code != 0 {
		t.Fatalf("verify after prune: %s", out)
	}
	dst := filepath.Join(dir, "dst.img")
	os.WriteFile(dst, nil, 0o644)
	os.Truncate(dst, 12<<20)
	if code, _, errs := runCapture(t, "restore", "--repo", repoDir, "--to", dst, "--yes", "--verify", "--progress", "none", "--layout", "keep"); code != 0 {
		t.Fatalf("restore after prune: %s", errs)
	}
	// The kept snapshot holds exactly what it held before the prune.
	got := filepath.Join(dir, "got.raw")
	if code, _, errs := runCapture(t, "export", "--repo", repoDir, "--to", got); code != 0 {
		t.Fatal(errs)
	}
	a, _ := os.ReadFile(want)
	b, _ := os.ReadFile(got)
	if !bytes.Equal(a, b) {
		t.Error("the kept snapshot changed in the prune")
	}
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
