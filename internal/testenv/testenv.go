// Package testenv decides whether a test that needs root or an external tool
// can run. Run by hand without them, such a test skips with the reason; under
// LIFEBOAT_TEST_NO_SKIP=1 (set by .ci/run) the skip becomes a failure, so CI
// never passes by skipping.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// NoSkip reports whether skips are turned into failures.
func NoSkip() bool { return os.Getenv("LIFEBOAT_TEST_NO_SKIP") == "1" }

// Skip skips the test with reason, or fails it under LIFEBOAT_TEST_NO_SKIP=1.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if NoSkip() {
		t.Fatalf("cannot run (LIFEBOAT_TEST_NO_SKIP=1): %s", reason)
	}
	t.Skip(reason)
}

// RequireTools skips (or fails) unless every named program is on PATH
// (sbin directories included).
func RequireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := LookPath(n); err != nil {
			Skip(t, "needs "+n+" (apt-get install the package that provides it)")
		}
	}
}

// LookPath finds a program on PATH or in the sbin directories, which a
// non-root PATH often lacks.
func LookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return exec.LookPath(name)
}

// RequireRoot skips (or fails) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root (loop devices, mounts)")
	}
}

// Short skips long tests under -short; it never fails under NoSkip because
// CI does not pass -short.
func Short(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("long test skipped under -short")
	}
}
