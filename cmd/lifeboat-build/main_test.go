package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunRejectsBadArguments(t *testing.T) {
	for _, args := range [][]string{{"--no-such-flag"}, {"extra"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), &out, &errb, args); code != 2 {
			t.Errorf("run(%q) = %d, want 2; stderr %s", args, code, errb.String())
		}
	}
}

func TestRunReportsMissingKernel(t *testing.T) {
	var out, errb bytes.Buffer
	dir := t.TempDir()
	code := run(context.Background(), &out, &errb, []string{"--kernel", filepath.Join(dir, "vmlinuz"), "--out", dir})
	if code != 1 || !strings.Contains(errb.String(), "open kernel") {
		t.Errorf("run with a missing kernel = %d, stderr %q", code, errb.String())
	}
}
