package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/rescue"
)

// TestJobLogKeptInRepository runs commands as an appliance job does (the
// job's log file named in the environment): those that write to the
// repository keep the log in it; one that only reads does not.
func TestJobLogKeptInRepository(t *testing.T) {
	src := makeDisksImage(t)
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("pw\n"), 0o600)
	logFile := filepath.Join(dir, "job.log")
	os.WriteFile(logFile, []byte("lifeboat: job: lifeboat backup ...\nsecret-free progress line\n"), 0o600)
	t.Setenv(rescue.JobLogEnv, logFile)

	if code, _, errs := runCapture(t, "backup", "--from", src, "--repo", repoDir, "--password-file", pwFile, "--progress", "none"); code != 0 {
		t.Fatalf("backup: %d %s", code, errs)
	}
	if code, _, errs := runCapture(t, "verify", "--repo", repoDir, "--password-file", pwFile, "--progress", "none"); code != 0 {
		t.Fatalf("verify: %d %s", code, errs)
	}
	code, out, errs := runCapture(t, "logs", "--repo", repoDir, "--password-file", pwFile, "--json")
	if code != 0 {
		t.Fatalf("logs: %d %s", code, errs)
	}
	var logs []struct {
		ID   string `json:"-"`
		Host string `json:"host"`
	}
	// One log: the backup's; verify only read.
	if err := json.Unmarshal([]byte(out), &logs); err != nil || len(logs) != 1 {
		t.Fatalf("logs --json: %v %s", err, out)
	}
	code, out, _ = runCapture(t, "logs", "--repo", repoDir, "--password-file", pwFile)
	if code != 0 || len(strings.Fields(out)) < 3 {
		t.Fatalf("logs: %d %q", code, out)
	}
	id := strings.Fields(out)[0]
	code, out, errs = runCapture(t, "logs", "--repo", repoDir, "--password-file", pwFile, "--show", id)
	if code != 0 || !strings.Contains(out, "secret-free progress line") {
		t.Fatalf("logs %s: %d %q %s", id, code, out, errs)
	}
	// The repository is encrypted: the log's text is not stored in clear.
	if hits := grepTree(t, repoDir, "secret-free progress line"); len(hits) > 0 {
		t.Fatalf("log text in clear in %v", hits)
	}
	if code, out, errs := runCapture(t, "verify", "--repo", repoDir, "--password-file", pwFile, "--progress", "none"); code != 0 {
		t.Fatalf("verify with a log in the repository: %d %s %s", code, out, errs)
	}
}

// grepTree returns the files under dir that contain needle.
func grepTree(t *testing.T, dir, needle string) []string {
	t.Helper()
	var hits []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), needle) {
			hits = append(hits, p)
		}
		return nil
	})
	return hits
}
