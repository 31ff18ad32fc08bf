package nfs

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

	"github.com/lifeboat/lifeboat/netshare/internal/core"
	"github.com/lifeboat/lifeboat/netshare/nfs/nfstest"
)

// leaveTemp writes the temporary file of a save of name that stops after
// its first bytes, as one whose connection dropped leaves it: created and
// written (unstable, no COMMIT) over NFS, never renamed. It returns the
// file's path on the server's disk.
func leaveTemp(t *testing.T, b *Backend, srv *nfstest.Server, sub, name string) string {
	t.Helper()
	dir, base := path.Split(name)
	dir = path.Clean(dir)
	tmp, err := core.TempName(base)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err = b.run(ctx, func(s *session) error {
		dfh, err := s.dir(ctx, dir, true)
		if err != nil {
			return err
		}
		fh, err := s.c.createNew(ctx, dfh, tmp)
		if err != nil {
			return err
		}
		_, err = s.c.write(ctx, fh, 0, bytes.Repeat([]byte("half"), 1000), unstable)
		return err
	})
	if err != nil {
		t.Fatalf("leave temporary file of %s: %v", name, err)
	}
	return filepath.Join(srv.Dir, sub, filepath.FromSlash(dir), tmp)
}

func TestCleanup(t *testing.T) {
	srv := nfstest.Start(t)
	// The stale temporary file and an equally old object are made on the
	// server's disk before the server looks at their directory, so that
	// its attribute cache holds the old times: NFSv3 as the backend
	// speaks it sets no times.
	old := time.Now().Add(-48 * time.Hour)
	onDisk := func(rel string) string {
		p := filepath.Join(srv.Dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("written before"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := onDisk("r/data/cd/p3.tmp-0123456789abcdef")
	oldObject := onDisk("r/data/cd/p3")
	outside := onDisk("outside.tmp-0123456789abcdef") // above the repository

	b, err := New(context.Background(), srv.URL("r"), core.Options{})
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
	young := leaveTemp(t, b, srv, "r", "data/ab/p2")

	exists := func(p string) bool {
		_, err := os.Stat(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		return err == nil
	}
	if !exists(young) {
		t.Fatalf("temporary file %s not on the server's disk", young)
	}
	n, err := b.Cleanup(ctx, time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("Cleanup(1h) = %d, %v; want the stale file removed", n, err)
	}
	if exists(stale) || !exists(young) || !exists(outside) || !exists(oldObject) {
		t.Fatalf("after Cleanup(1h): stale %v, young %v, outside %v, old object %v; want false, true, true, true",
			exists(stale), exists(young), exists(outside), exists(oldObject))
	}
	n, err = b.Cleanup(ctx, 0)
	if err != nil || n != 1 || exists(young) || !exists(outside) {
		t.Fatalf("Cleanup(0) = %d, %v; young there %v, outside there %v; want 1 removed, outside kept", n, err, exists(young), exists(outside))
	}
	if n, err := b.Cleanup(ctx, 0); err != nil || n != 0 {
		t.Fatalf("Cleanup with nothing left = %d, %v", n, err)
	}
	objects["data/cd/p3"] = []byte("written before")
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
