package main

import (
	"strings"
	"testing"
)

// TestFlagsEveryCommand checks the one flag parser every command uses:
// -h prints the command's usage and exits 0 without an error line, and
// an unknown flag or a stray argument exits 2 naming it, before the
// command does anything (no --from/--to given, nothing opened).
func TestFlagsEveryCommand(t *testing.T) {
	for name := range commands {
		code, _, stderr := runCapture(t, name, "-h")
		if code != 0 || !strings.Contains(stderr, "usage: lifeboat "+name) || strings.Contains(stderr, "lifeboat "+name+":") {
			t.Errorf("lifeboat %s -h: exit %d, stderr %q; want 0 and only the usage", name, code, stderr)
		}
		code, _, stderr = runCapture(t, name, "--no-such-flag")
		if code != 2 || !strings.Contains(stderr, "flag provided but not defined: -no-such-flag") {
			t.Errorf("lifeboat %s --no-such-flag: exit %d, stderr %q; want 2 naming the flag", name, code, stderr)
		}
	}
	code, _, stderr := runCapture(t, "clone", "--from", "a.img", "--to", "b.img", "stray")
	if code != 2 || !strings.Contains(stderr, "unexpected arguments: stray") {
		t.Errorf("clone with a stray argument: exit %d, stderr %q; want 2 naming it", code, stderr)
	}
}
