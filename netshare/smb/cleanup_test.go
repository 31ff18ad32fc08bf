package smb

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"testing"
	"time"

	smb2 "github.com/cloudsoda/go-smb2"

	"github.com/lifeboat/lifeboat/netshare/internal/core"
	"github.com/lifeboat/lifeboat/netshare/smb/smbtest"
)

// leaveTemp writes the temporary file of a save of name that stops after
// its first bytes, as one whose connection dropped leaves it: created and
// written over SMB, never renamed. It returns the file's path on the
// server's disk.
func leaveTemp(t *testing.T, b *Backend, srv *smbtest.Server, sub, name string) string {
	t.Helper()
	tmp, err := core.TempName(name)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err = b.run(ctx, func(sh *smb2.Share) error {
		if err := mkdirs(sh, path.Dir(b.full(name))); err != nil {
			return err
		}
		f, err := sh.OpenFile(b.full(tmp), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := f.Write(bytes.Repeat([]byte("half"), 1000)); err != nil {
			_ = f.Close()
			return err
		}
		return f.Close()
	})
	if err != nil {
		t.Fatalf("leave temporary file of %s: %v", name, err)
	}
	return filepath.Join(srv.Dir, sub, filepath.FromSlash(tmp))
}

func TestCleanup(t *testing.T) {
	srv := smbtest.Start(t)
	b, err := New(context.Background(), srv.URL("r/x"), core.Options{PasswordFile: srv.PasswordFile})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	objects := map[string][]byte{"config": []byte("cfg"), "data/ab/p1": []byte("pack one"), "index/i1": []byte("index")}
	for name, data := range objects {
		if err := b.Save(ctx, name, int64(len(data)), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	// An object as old as the stale temporary file stays.
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(filepath.Join(srv.Dir, "r/x/data/ab/p1"), old, old); err != nil {
		t.Fatal(err)
	}
	stale := leaveTemp(t, b, srv, "r/x", "data/ab/p2")
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	young := leaveTemp(t, b, srv, "r/x", "index/i2")
	// Above the repository: not Cleanup's to touch.
	outside := filepath.Join(srv.Dir, "r", "outside.tmp-0123456789abcdef")
	if err := os.WriteFile(outside, []byte("not ours"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(outside, old, old); err != nil {
		t.Fatal(err)
	}

	// A symbolic link to a parent (Samba follows it some way): the walk must
	// still end, and succeed.
	if err := os.Symlink("..", filepath.Join(srv.Dir, "r/x/data/ab/loop")); err != nil {
		t.Fatal(err)
	}

	exists := func(p string) bool {
		_, err := os.Stat(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		return err == nil
	}
	n, err := b.Cleanup(ctx, time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("Cleanup(1h) = %d, %v; want the stale file removed", n, err)
	}
	if exists(stale) || !exists(young) || !exists(outside) {
		t.Fatalf("after Cleanup(1h): stale there %v, young there %v, outside there %v; want false, true, true",
			exists(stale), exists(young), exists(outside))
	}
	n, err = b.Cleanup(ctx, 0)
	if err != nil || n != 1 || exists(young) || !exists(outside) {
		t.Fatalf("Cleanup(0) = %d, %v; young there %v, outside there %v; want 1 removed, outside kept", n, err, exists(young), exists(outside))
	}
	if n, err := b.Cleanup(ctx, 0); err != nil || n != 0 {
		t.Fatalf("Cleanup with nothing left = %d, %v", n, err)
	}
	for name, data := range objects {
		got, err := b.Load(ctx, name, 0, -1)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("object %s after Cleanup: %q, %v", name, got, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.Cleanup(cctx, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Cleanup with a cancelled context: %v", err)
	}
}
