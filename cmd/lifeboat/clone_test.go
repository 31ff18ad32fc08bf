package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testdisk"
)

func TestCloneJSONProgress(t *testing.T) {
	src := makeDisksImage(t)
	dst := filepath.Join(t.TempDir(), "dst.img")
	if err := os.WriteFile(dst, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(dst, 16<<20); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCapture(t, "clone", "--from", src, "--to", dst, "--yes", "--verify", "--progress", "json", "--layout", "keep")
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	phases := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev struct {
			Phase string  `json:"phase"`
			Done  int64   `json:"done"`
			Total int64   `json:"total"`
			BPS   float64 `json:"bytes_per_second"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("stdout line %q is not JSON: %v", line, err)
		}
		phases[ev.Phase] = true
		if ev.Done > ev.Total && ev.Total > 0 {
			t.Errorf("done %d > total %d", ev.Done, ev.Total)
		}
	}
	if len(phases) == 0 {
		t.Error("no progress lines")
	}
	if !strings.Contains(errs, "Target: image file "+dst) || !strings.Contains(errs, "Verified") {
		t.Errorf("plan and result not on stderr:\n%s", errs)
	}
	// The copy is a working file system, not just a run that reported.
	testdisk.Fsck(t, dst, 1<<20, 8<<20, "ext4")
}

func TestCloneNeedsConfirmation(t *testing.T) {
	src := makeDisksImage(t)
	dst := filepath.Join(t.TempDir(), "dst.img")
	os.WriteFile(dst, nil, 0o644)
	os.Truncate(dst, 16<<20)
	before := testdisk.SHA256(t, dst)

	// No terminal and no --yes: refused.
	code, _, errs := runCapture(t, "clone", "--from", src, "--to", dst)
	if code == 0 || !strings.Contains(errs, "--yes") {
		t.Errorf("exit %d, stderr %q: want a refusal that names --yes", code, errs)
	}
	// A terminal, and the wrong answer: refused; a lone "y" is not enough.
	for _, answer := range []string{"y\n", "\n", "yes\n"} {
		var out, eb bytes.Buffer
		env := &cmdEnv{stdin: strings.NewReader(answer), stdout: &out, stderr: &eb, interactive: true}
		if code := run(context.Background(), env, []string{"clone", "--from", src, "--to", dst}); code == 0 {
			t.Errorf("answer %q accepted", answer)
		}
		if !strings.Contains(eb.String(), "not confirmed") {
			t.Errorf("answer %q: stderr %q", answer, eb.String())
		}
	}
	if testdisk.SHA256(t, dst) != before {
		t.Fatal("the target changed without confirmation")
	}
	// The file name typed: the clone runs.
	var out, eb bytes.Buffer
	env := &cmdEnv{stdin: strings.NewReader("dst.img\n"), stdout: &out, stderr: &eb, interactive: true}
	if code := run(context.Background(), env, []string{"clone", "--from", src, "--to", dst, "--progress", "none"}); code != 0 {
		t.Fatalf("confirmed clone failed: %s", eb.String())
	}
	if !strings.Contains(out.String(), "Done:") {
		t.Errorf("no summary: %s", out.String())
	}
}

func TestCloneUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"clone"},
		{"clone", "--from", "x"},
		{"clone", "--from", "x", "--to", "y", "--layout", "sideways"},
	} {
		if code, _, _ := runCapture(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	code, _, errs := runCapture(t, "clone", "--from", "serial:NO-SUCH-DISK", "--to", "/nonexistent")
	if code != 1 || !strings.Contains(errs, "NO-SUCH-DISK") {
		t.Errorf("unknown identity: exit %d, %q", code, errs)
	}
}
