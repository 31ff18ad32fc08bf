package testdisk

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// toolTimeout bounds every external tool so a wedged FUSE daemon or a tool
// waiting on a prompt fails the test instead of hanging it.
const toolTimeout = 5 * time.Minute

// toolEnv is the environment every tool runs with: mtools refuses images
// whose geometry it cannot check without MTOOLS_SKIP_CHECK, and converts
// long names to the locale's charset, which must be UTF-8.
func toolEnv() []string {
	env := os.Environ()
	return append(env, "MTOOLS_SKIP_CHECK=1", "LC_ALL=C.UTF-8", "LANG=C.UTF-8")
}

// runTool runs name with args and returns its standard output. A non-zero
// exit is returned as an error carrying the tool's output.
func runTool(name string, args ...string) ([]byte, error) {
	return runToolStdin("", name, args...)
}

// runToolStdin is runTool with standard input read from the file stdin
// (none when empty).
func runToolStdin(stdin, name string, args ...string) ([]byte, error) {
	out, _, err := runToolFull(stdin, name, args...)
	return out, err
}

// runToolFull is runToolStdin that also returns standard error, for tools
// (debugfs) that report failed requests there but still exit 0.
func runToolFull(stdin, name string, args ...string) ([]byte, []byte, error) {
	path, err := testenv.LookPath(name)
	if err != nil {
		return nil, nil, fmt.Errorf("find %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = toolEnv()
	if stdin != "" {
		f, err := os.Open(stdin)
		if err != nil {
			return nil, nil, fmt.Errorf("open input for %s: %w", name, err)
		}
		defer f.Close()
		cmd.Stdin = f
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), stderr.Bytes(), fmt.Errorf("run %s %s: %w\nstdout: %s\nstderr: %s",
			name, strings.Join(args, " "), err, clip(stdout.String()), clip(stderr.String()))
	}
	return stdout.Bytes(), stderr.Bytes(), nil
}

// mustRun runs a tool and fails the test if it fails.
func mustRun(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	out, err := runTool(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// clip keeps tool output in failure messages readable.
func clip(s string) string {
	const max = 4000
	if len(s) > max {
		return s[:max] + "...(clipped)"
	}
	return s
}
