package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets a test run this test binary as the lifeboat command, so a
// real process can be interrupted.
func TestMain(m *testing.M) {
	if os.Getenv("LIFEBOAT_TEST_AS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestInterruptSaysIncomplete interrupts a running clone with SIGINT: it
// stops, exits 130 and says that the target is incomplete and holds no
// partition table.
func TestInterruptSaysIncomplete(t *testing.T) {
	dir := t.TempDir()
	// A disk of zeros has no table and no file system: it is copied raw,
	// reading 16 GiB of holes, long enough to interrupt after the first
	// progress line (a second in) on a fast machine too.
	src := filepath.Join(dir, "src.img")
	dst := filepath.Join(dir, "dst.img")
	for _, p := range []string{src, dst} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, 16<<30); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "clone", "--from", src, "--to", dst, "--yes", "--progress", "json")
	cmd.Env = append(os.Environ(), "LIFEBOAT_TEST_AS_MAIN=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for the copy to report progress, then interrupt.
	lines := bufio.NewScanner(out)
	deadline := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	for lines.Scan() {
		if strings.Contains(lines.Text(), `"phase":"copy"`) {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	for lines.Scan() {
	}
	err = cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 130 {
		t.Fatalf("exit: %v (want status 130)\nstderr: %s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "incomplete") {
		t.Errorf("stderr does not say the target is incomplete:\n%s", stderr.String())
	}
	t.Logf("stderr tail: %s", tail(stderr.String(), 300))
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestInterruptBackup interrupts a backup: exit 130, no snapshot, and a
// message that says so.
func TestInterruptBackup(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	os.WriteFile(src, nil, 0o644)
	os.Truncate(src, 16<<30) // no table, no file system: read whole, for longer than a second
	repoDir := filepath.Join(dir, "repo")
	cmd := exec.Command(os.Args[0], "backup", "--from", src, "--repo", repoDir, "--progress", "json")
	cmd.Env = append(os.Environ(), "LIFEBOAT_TEST_AS_MAIN=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if strings.Contains(lines.Text(), `"phase":"backup"`) {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	for lines.Scan() {
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("exit: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "interrupted: no snapshot was made") {
		t.Errorf("stderr: %s", stderr.String())
	}
	if n := countSnapshots(t, repoDir); n != 0 {
		t.Errorf("%d snapshots after an interrupted backup", n)
	}
}
