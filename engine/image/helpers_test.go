package image

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

func runCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	p, err := testenv.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(p, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
