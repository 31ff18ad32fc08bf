package cow

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

var _ fsmap.Volume = (*Overlay)(nil)

func requireFUSE(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Skip(t, "needs /dev/fuse (modprobe fuse)")
	}
}

func TestDevicePath(t *testing.T) {
	requireFUSE(t)
	const size = 4<<20 + 512
	f, data, sum := baseFile(t, size, 5)
	o, err := New(f, size, Options{ScratchDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	ctx := context.Background()
	path, release, err := o.DevicePath(ctx)
	if err != nil {
		t.Fatal(err)
	}
	released := false
	defer func() {
		if !released {
			release()
		}
	}()
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() || st.Size() != size {
		t.Fatalf("stat %s: %v, %v", path, st, err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read through FUSE: %d bytes, %v; differs from the base", len(got), err)
	}
	vf, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	patch := bytes.Repeat([]byte("lifeboat"), 40000) // unaligned, several blocks
	if _, err := vf.WriteAt(patch, 12345); err != nil {
		t.Fatalf("write through FUSE: %v", err)
	}
	if err := vf.Sync(); err != nil {
		t.Fatalf("fsync through FUSE: %v", err)
	}
	if _, err := vf.WriteAt([]byte("xx"), size-1); !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EFBIG) {
		t.Errorf("write past the end through FUSE: %v, want ENOSPC", err)
	}
	// resize2fs trims a shrunk image file: accepted, size unchanged.
	if err := vf.Truncate(size / 2); err != nil {
		t.Errorf("truncate to a smaller size: %v", err)
	}
	if err := vf.Truncate(size * 2); err == nil {
		t.Error("truncate to a larger size succeeded")
	}
	vf.Close()
	want := append([]byte(nil), data...)
	copy(want[12345:], patch)
	back := make([]byte, size)
	if _, err := o.ReadAt(back, 0); err != nil || !bytes.Equal(back, want) {
		t.Fatalf("overlay after writes through FUSE: %v; differs from what was written", err)
	}
	if st, _ := os.Stat(path); st.Size() != size {
		t.Errorf("file size after truncate: %d, want %d", st.Size(), size)
	}

	// A loop device over the FUSE file gives tools that need a block
	// device the same bytes, writes included.
	if _, err := testenv.LookPath("losetup"); err == nil {
		out, err := exec.Command("losetup", "--find", "--show", path).CombinedOutput()
		if err != nil {
			t.Fatalf("losetup over %s: %v: %s", path, err, out)
		}
		loop := strings.TrimSpace(string(out))
		lb, err := os.OpenFile(loop, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lb.WriteAt(bytes.Repeat([]byte{0xAB}, 4096), 8192); err != nil {
			t.Errorf("write through the loop device: %v", err)
		}
		lb.Sync()
		lbData := make([]byte, size&^511)
		if _, err := lb.ReadAt(lbData, 0); err != nil {
			t.Errorf("read through the loop device: %v", err)
		}
		lb.Close()
		if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
			t.Fatalf("losetup -d %s: %v: %s", loop, err, out)
		}
		copy(want[8192:], bytes.Repeat([]byte{0xAB}, 4096))
		if !bytes.Equal(lbData, want[:len(lbData)]) {
			t.Error("loop device reads differ from the overlay")
		}
		if _, err := o.ReadAt(back, 0); err != nil || !bytes.Equal(back, want) {
			t.Fatalf("overlay after writes through the loop device: %v; differs", err)
		}
	}
	if fileSum(t, f.Name()) != sum {
		t.Fatal("the base file changed")
	}
	released = true
	if err := release(); err != nil {
		t.Fatalf("release: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
		t.Errorf("mount point %s still there after release: %v", filepath.Dir(path), err)
	}
	if err := release(); err != nil {
		t.Errorf("second release: %v", err)
	}
}

// TestCloseUnmounts checks that Close takes down a mount left in place and
// that a released overlay can be exposed again.
func TestCloseUnmounts(t *testing.T) {
	requireFUSE(t)
	f, _, _ := baseFile(t, 1<<20, 6)
	o, err := New(f, 1<<20, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p1, rel1, err := o.DevicePath(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rel1(); err != nil {
		t.Fatal(err)
	}
	p2, _, err := o.DevicePath(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p1 == p2 {
		t.Errorf("second mount reused %s", p1)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("Close with a mount in place: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(p2)); !os.IsNotExist(err) {
		t.Errorf("mount point %s still there after Close: %v", filepath.Dir(p2), err)
	}
	if _, _, err := o.DevicePath(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("DevicePath after Close: %v, want ErrClosed", err)
	}
}
