package swap

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

type fileVolume struct {
	*os.File
	size int64
}

func (v fileVolume) Size() int64 { return v.size }
func (v fileVolume) DevicePath(ctx context.Context) (string, func() error, error) {
	return v.Name(), func() error { return nil }, nil
}

func TestGrow(t *testing.T) {
	testenv.RequireTools(t, "mkswap", "blkid")
	path := filepath.Join(t.TempDir(), "swap.img")
	if err := os.WriteFile(path, make([]byte, 16<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	mk, _ := testenv.LookPath("mkswap")
	if out, err := exec.Command(mk, "-L", "grow-me", "-U", "6c2a1d3e-7f8b-4c5d-9e0f-112233445566", path).CombinedOutput(); err != nil {
		t.Fatalf("mkswap: %v\n%s", err, out)
	}
	if err := os.Truncate(path, 48<<20); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v := fileVolume{f, 48 << 20}
	if err := Grow(context.Background(), v, 48<<20); err != nil {
		t.Fatal(err)
	}
	fs, err := Detect(context.Background(), f, 48<<20)
	if err != nil {
		t.Fatal(err)
	}
	info := fs.Info()
	if info.Size != 48<<20 || info.Label != "grow-me" || info.UUID != "6c2a1d3e-7f8b-4c5d-9e0f-112233445566" {
		t.Errorf("after grow: %+v", info)
	}
	bl, _ := testenv.LookPath("blkid")
	out, err := exec.Command(bl, "-p", "-o", "export", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "LABEL=grow-me") || !strings.Contains(string(out), "TYPE=swap") {
		t.Errorf("blkid after grow: %v\n%s", err, out)
	}
	if os.Geteuid() == 0 {
		// The kernel accepts the grown area at its new size.
		lo, _ := testenv.LookPath("losetup")
		dev, err := exec.Command(lo, "-f", "--show", path).Output()
		if err != nil {
			t.Fatal(err)
		}
		d := strings.TrimSpace(string(dev))
		defer exec.Command(lo, "-d", d).Run()
		on, _ := testenv.LookPath("swapon")
		if out, err := exec.Command(on, d).CombinedOutput(); err != nil {
			t.Fatalf("swapon: %v\n%s", err, out)
		}
		sw, _ := os.ReadFile("/proc/swaps")
		off, _ := testenv.LookPath("swapoff")
		exec.Command(off, d).Run()
		var found bool
		for _, line := range strings.Split(string(sw), "\n") {
			fields := strings.Fields(line)
			if len(fields) > 2 && fields[0] == d {
				found = true
				// Size in KiB: 48 MiB less the header page.
				if fields[2] != "49148" {
					t.Errorf("kernel sees %s KiB of swap, want 49148", fields[2])
				}
			}
		}
		if !found {
			t.Errorf("%s not in /proc/swaps:\n%s", d, sw)
		}
	}
}
