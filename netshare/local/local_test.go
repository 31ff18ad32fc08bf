package local_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/internal/testenv"
	"github.com/lifeboat/lifeboat/netshare"
	"github.com/lifeboat/lifeboat/netshare/local"
	"github.com/lifeboat/lifeboat/netshare/netsharetest"
)

func newBackend(t *testing.T) (*local.Backend, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	b, err := local.New(dir)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b, dir
}

func TestConformance(t *testing.T) {
	netsharetest.RunConformance(t, func(t *testing.T) netshare.Backend {
		b, _ := newBackend(t)
		return b
	})
}

// Both decorators must be transparent when nothing fails.
func TestConformanceDecorated(t *testing.T) {
	netsharetest.RunConformance(t, func(t *testing.T) netshare.Backend {
		b, _ := newBackend(t)
		return netshare.WithRetry(netsharetest.WithFaults(b, &netsharetest.Faults{}), netshare.RetryPolicy{Initial: time.Millisecond, Max: 4 * time.Millisecond})
	})
}

// filesUnder returns every regular file under dir, relative to it.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestNewCreatesRootPrivate(t *testing.T) {
	b, dir := newBackend(t)
	defer b.Close()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("new repository directory has mode %v, want 0700", fi.Mode().Perm())
	}
	p := b.Properties()
	if p.Name != "local" || p.Location != dir || !p.AtomicRename {
		t.Fatalf("Properties() = %+v", p)
	}
}

func TestFilesMirrorNames(t *testing.T) {
	b, dir := newBackend(t)
	defer b.Close()
	if err := b.Save(context.Background(), "data/ab/abcdef", 3, bytes.NewReader([]byte("xyz"))); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "data", "ab", "abcdef"))
	if err != nil || string(got) != "xyz" {
		t.Fatalf("file behind data/ab/abcdef: %q, %v", got, err)
	}
	if files := filesUnder(t, dir); len(files) != 1 {
		t.Fatalf("files in the repository after one save: %q", files)
	}
}

// A save killed midway leaves neither the object nor, after Save returns, a
// temporary file.
func TestFailedSaveLeavesNothing(t *testing.T) {
	b, dir := newBackend(t)
	defer b.Close()
	faults := &netsharetest.Faults{}
	faults.Add(netsharetest.Fault{Op: netsharetest.OpSave, Call: 1, Kind: netsharetest.PartialSave, After: 1 << 20})
	w := netsharetest.WithFaults(b, faults)
	data := bytes.Repeat([]byte("lifeboat"), 1<<19) // 4 MiB
	err := w.Save(context.Background(), "data/01/pack", int64(len(data)), bytes.NewReader(data))
	if !errors.Is(err, netsharetest.ErrInjected) {
		t.Fatalf("Save with a reader failing after 1 MiB: got %v, want ErrInjected", err)
	}
	if _, err := b.Stat(context.Background(), "data/01/pack"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat after a failed save: %v, want not exist", err)
	}
	if files := filesUnder(t, dir); len(files) != 0 {
		t.Fatalf("files left by a failed save: %q", files)
	}
}

// A temporary file left by a crash is never listed, and Cleanup removes it
// once it is old enough.
func TestCrashLeftoverTempFile(t *testing.T) {
	b, dir := newBackend(t)
	defer b.Close()
	ctx := context.Background()
	if err := b.Save(ctx, "index/0a", 2, bytes.NewReader([]byte("ok"))); err != nil {
		t.Fatal(err)
	}
	oldTmp := filepath.Join(dir, "index", "0b.tmp-0123456789abcdef")
	youngTmp := filepath.Join(dir, "index", "0c.tmp-fedcba9876543210")
	notTmp := filepath.Join(dir, "index", "0d.tmp-xyz")
	for _, p := range []string{oldTmp, youngTmp, notTmp} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(oldTmp, past, past); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	if err := b.List(ctx, "", func(fi netshare.FileInfo) error { got[fi.Name] = fi.Size; return nil }); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"index/0a": 2, "index/0d.tmp-xyz": 7}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("List with leftover temporary files = %v, want %v", got, want)
	}
	// A temporary name cannot be used as an object name either.
	if _, err := b.Stat(ctx, "index/0b.tmp-0123456789abcdef"); !errors.Is(err, netshare.ErrInvalidName) {
		t.Fatalf("Stat of a temporary name: %v, want ErrInvalidName", err)
	}
	n, err := b.Cleanup(ctx, time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("Cleanup(1h) = %d, %v; want 1 removed", n, err)
	}
	if _, err := os.Stat(oldTmp); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("old temporary file still there after Cleanup: %v", err)
	}
	for _, p := range []string{youngTmp, notTmp, filepath.Join(dir, "index", "0a")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("Cleanup removed %s: %v", p, err)
		}
	}
	if n, err := b.Cleanup(ctx, 0); err != nil || n != 1 {
		t.Fatalf("Cleanup(0) = %d, %v; want the young temporary file removed", n, err)
	}
}

// A hostile repository must not make the backend write or read outside its
// root: neither by names nor by symbolic links planted in it.
func TestStaysInsideRoot(t *testing.T) {
	b, dir := newBackend(t)
	defer b.Close()
	ctx := context.Background()
	outside := filepath.Join(filepath.Dir(dir), "outside")
	if err := os.Mkdir(outside, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"../outside/x", "data/../../outside/x", "/" + outside + "/x"} {
		err := b.Save(ctx, name, 1, bytes.NewReader([]byte{1}))
		if !errors.Is(err, netshare.ErrInvalidName) {
			t.Fatalf("Save(%q): %v, want ErrInvalidName", name, err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(dir, "data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "config")); err != nil {
		t.Fatal(err)
	}
	err := b.Save(ctx, "data/x", 1, bytes.NewReader([]byte{1}))
	if err == nil || !netshare.IsPermanent(err) {
		t.Fatalf("Save through a symbolic link leading out of the repository: %v, want a permanent error", err)
	}
	if _, err := b.Load(ctx, "data/secret", 0, -1); err == nil {
		t.Fatal("Load through a symbolic link leading out of the repository succeeded")
	}
	if _, err := b.Load(ctx, "config", 0, -1); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a symbolic link to a file outside: %v, want not exist", err)
	}
	if err := b.Remove(ctx, "config"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Remove of a symbolic link: %v, want not exist", err)
	}
	listed := 0
	if err := b.List(ctx, "", func(netshare.FileInfo) error { listed++; return nil }); err != nil || listed != 0 {
		t.Fatalf("List over symbolic links: %d objects, %v; want none", listed, err)
	}
	entries, err := os.ReadDir(outside)
	if err != nil || len(entries) != 1 {
		t.Fatalf("directory outside the repository now holds %d entries (%v), want only its secret", len(entries), err)
	}
	if got, _ := os.ReadFile(secret); string(got) != "secret" {
		t.Fatalf("file outside the repository changed: %q", got)
	}
}

// Errors that no retry can fix are marked permanent. Root bypasses file
// permissions, so a read-only bind mount stands in for a denied write.
func TestPermanentErrors(t *testing.T) {
	b, dir := newBackend(t)
	defer b.Close()
	ctx := context.Background()
	// A name whose directory is a file: no retry helps.
	if err := b.Save(ctx, "config", 1, bytes.NewReader([]byte{1})); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(dir, 0o700)
		err := b.Save(ctx, "keys/k", 1, bytes.NewReader([]byte{1}))
		if !errors.Is(err, fs.ErrPermission) || !netshare.IsPermanent(err) {
			t.Fatalf("Save into a read-only directory: %v, want a permanent permission error", err)
		}
		return
	}
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
		testenv.Skip(t, "bind mount: "+err.Error())
	}
	defer syscall.Unmount(dir, syscall.MNT_DETACH)
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
		testenv.Skip(t, "remount read-only: "+err.Error())
	}
	ro, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	err = ro.Save(ctx, "keys/k", 1, bytes.NewReader([]byte{1}))
	if err == nil || !netshare.IsPermanent(err) || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("Save on a read-only file system: %v, want a permanent read-only error", err)
	}
}

// Names that collide with the repository's own layout fail for good.
func TestCollisionsArePermanent(t *testing.T) {
	b, _ := newBackend(t)
	defer b.Close()
	ctx := context.Background()
	if err := b.Save(ctx, "data/ab/x", 1, bytes.NewReader([]byte{1})); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"data/ab", "data/ab/x/y"} {
		err := b.Save(ctx, name, 1, bytes.NewReader([]byte{1}))
		if err == nil || !netshare.IsPermanent(err) {
			t.Errorf("Save(%q) colliding with the existing layout: %v, want a permanent error", name, err)
		}
	}
	got := 0
	if err := b.List(ctx, "", func(netshare.FileInfo) error { got++; return nil }); err != nil || got != 1 {
		t.Fatalf("List after refused saves: %d objects, %v", got, err)
	}
}

// WithFaults passes Cleanup through, counted and failed like every other
// call, and stays without one over a backend that has none.
func TestFaultsForwardCleanup(t *testing.T) {
	b, dir := newBackend(t)
	defer b.Close()
	ctx := context.Background()
	left := filepath.Join(dir, "index", "0b.tmp-0123456789abcdef")
	if err := os.MkdirAll(filepath.Dir(left), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(left, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	faults := &netsharetest.Faults{}
	faults.Add(netsharetest.Fault{Op: netsharetest.OpCleanup, Call: 1, Kind: netsharetest.Transient})
	c, ok := netsharetest.WithFaults(b, faults).(netshare.Cleaner)
	if !ok {
		t.Fatal("WithFaults of a Cleaner is not a Cleaner")
	}
	if n, err := c.Cleanup(ctx, 0); !errors.Is(err, netsharetest.ErrInjected) || n != 0 {
		t.Fatalf("first Cleanup = %d, %v; want the injected fault", n, err)
	}
	if _, err := os.Stat(left); err != nil {
		t.Fatalf("a failed Cleanup removed the temporary file: %v", err)
	}
	if n, err := c.Cleanup(ctx, 0); err != nil || n != 1 {
		t.Fatalf("second Cleanup = %d, %v; want 1 removed", n, err)
	}
	if got := faults.Calls(netsharetest.OpCleanup); got != 2 {
		t.Fatalf("%d Cleanup calls counted, want 2", got)
	}
	if _, ok := netsharetest.WithFaults(struct{ netshare.Backend }{b}, faults).(netshare.Cleaner); ok {
		t.Fatal("WithFaults of a backend without Cleanup is a Cleaner")
	}
}
