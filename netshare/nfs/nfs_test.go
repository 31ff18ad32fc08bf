package nfs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/netshare"
	"github.com/lifeboat/lifeboat/netshare/internal/core"
	"github.com/lifeboat/lifeboat/netshare/netsharetest"
	"github.com/lifeboat/lifeboat/netshare/nfs"
	"github.com/lifeboat/lifeboat/netshare/nfs/nfstest"
)

var _ netshare.Backend = (*nfs.Backend)(nil)

func open(t *testing.T, u *url.URL) *nfs.Backend {
	t.Helper()
	b, err := nfs.New(context.Background(), u, core.Options{})
	if err != nil {
		t.Fatalf("nfs.New(%s): %v", u, err)
	}
	return b
}

func TestConformance(t *testing.T) {
	srv := nfstest.Start(t)
	var n atomic.Int64
	netsharetest.RunConformance(t, func(t *testing.T) netshare.Backend {
		sub := fmt.Sprintf("t%d", n.Add(1))
		if n.Load()%2 == 0 {
			sub += "/nested/deeper"
		}
		if n.Load()%3 == 0 {
			sub = "My Backups/" + sub // folders may have names objects may not
		}
		return open(t, srv.URL(sub))
	})
}

func TestExportRoot(t *testing.T) {
	srv := nfstest.Start(t)
	b := open(t, srv.URL(""))
	defer b.Close()
	data := []byte("at the root of the export")
	if err := b.Save(context.Background(), "data/ab/x", int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(srv.Dir, "data", "ab", "x"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file on the server: %q, %v; want %q", got, err, data)
	}
	if p := b.Properties(); p.Name != "nfs" || !p.AtomicRename || p.Location != srv.URL("").String() {
		t.Fatalf("Properties() = %+v", p)
	}
}

// Without a port the portmapper names the server's ports.
func TestPortmapper(t *testing.T) {
	srv := nfstest.Start(t)
	u := srv.URL("pm")
	u.Host, u.RawQuery = "127.0.0.1", ""
	var b *nfs.Backend
	var err error
	// Test packages run in parallel and the portmapper names the server
	// that registered last, maybe another test's, exporting another
	// directory or killed since: restarting ours registers it again.
	for range 5 {
		if b, err = nfs.New(context.Background(), u, core.Options{}); err == nil {
			break
		}
		t.Logf("through the portmapper: %v", err)
		srv.Restart()
	}
	if err != nil {
		t.Fatalf("nfs.New(%s) through the portmapper: %v", u, err)
	}
	defer b.Close()
	if err := b.Save(context.Background(), "config", 3, bytes.NewReader([]byte("abc"))); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(srv.Dir, "pm", "config")); err != nil {
		t.Fatal(err)
	}
}

func TestTemporaryFilesHidden(t *testing.T) {
	srv := nfstest.Start(t)
	b := open(t, srv.URL("r"))
	defer b.Close()
	if err := os.MkdirAll(filepath.Join(srv.Dir, "r", "index"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(srv.Dir, "r", "index", "a.tmp-0123456789abcdef"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := b.List(context.Background(), "", func(fi netshare.FileInfo) error { names = append(names, fi.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(names) != 0 {
		t.Fatalf("List shows %q, want nothing", names)
	}
}

func TestMissingExport(t *testing.T) {
	srv := nfstest.Start(t)
	u := srv.URL("")
	u.Path = "/nonexistent/export/x"
	_, err := nfs.New(context.Background(), u, core.Options{})
	if err == nil || !netshare.IsPermanent(err) || !strings.Contains(err.Error(), "exports nothing at or above /nonexistent/export/x") {
		t.Fatalf("missing export: got %v, want a permanent error naming the path", err)
	}
}

func TestRefusedLocations(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"nfs://user:pw@127.0.0.1/x", "may not hold a user"},
		{"nfs://127.0.0.1/", "without an export path"},
		{"nfs:///x", "without a host"},
		{"nfs://127.0.0.1:0/x", "not a port"},
		{"nfs://127.0.0.1/x/../y", `element ".."`},
		{"nfs://127.0.0.1/x//y", "empty element"},
		{"nfs://127.0.0.1/x?mode=7", "unknown"},
		{"nfs://127.0.0.1/x?uid=abc", "one number"},
		{"nfs://127.0.0.1/x?mountport=20048", "no port"},
		{"nfs://127.0.0.1:2049/x?mountport=0", "not a port"},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		_, err = nfs.New(context.Background(), u, core.Options{})
		if err == nil || !netshare.IsPermanent(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want a permanent error with %q", tc.url, err, tc.want)
		}
	}
}

// A server that goes away gives retryable errors, and the backend dials
// anew once it is back.
func TestServerRestart(t *testing.T) {
	srv := nfstest.Start(t)
	b := open(t, srv.URL("r"))
	defer b.Close()
	ctx := context.Background()
	data := bytes.Repeat([]byte("lifeboat"), 300000)
	if err := b.Save(ctx, "data/00/a", int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	_, err := b.Load(ctx, "data/00/a", 0, -1)
	if err == nil || netshare.IsPermanent(err) {
		t.Fatalf("Load with the server down: got %v, want a retryable error", err)
	}
	if err := b.Save(ctx, "data/00/b", int64(len(data)), bytes.NewReader(data)); err == nil || netshare.IsPermanent(err) {
		t.Fatalf("Save with the server down: got %v, want a retryable error", err)
	}
	srv.Restart()
	rb := netshare.WithRetry(b, netshare.RetryPolicy{Attempts: 5, Initial: 10 * time.Millisecond})
	got, err := rb.Load(ctx, "data/00/a", 0, -1)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Load after the restart: %d bytes, %v", len(got), err)
	}
	if err := rb.Save(ctx, "data/00/b", int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("Save after the restart: %v", err)
	}
	if err := rb.Remove(ctx, "data/00/nothing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Remove of a missing object after the restart: %v", err)
	}
}

// The query's uid and gid are the credentials the server sees.
func TestCredentials(t *testing.T) {
	srv := nfstest.Start(t)
	if err := os.Mkdir(filepath.Join(srv.Dir, "shared"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(srv.Dir, "shared"), 0o777); err != nil {
		t.Fatal(err)
	}
	u := srv.URL("shared/repo")
	u.RawQuery += "&uid=4242&gid=4343"
	b := open(t, u)
	defer b.Close()
	if err := b.Save(context.Background(), "config", 1, bytes.NewReader([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(srv.Dir, "shared", "repo", "config"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 4242 || st.Gid != 4343 {
		t.Fatalf("file saved with uid=4242&gid=4343 is owned by %d:%d", st.Uid, st.Gid)
	}
	// That user may not write into root's directories: a permanent error.
	if err := os.Mkdir(filepath.Join(srv.Dir, "private"), 0o755); err != nil {
		t.Fatal(err)
	}
	u = srv.URL("private/repo")
	u.RawQuery += "&uid=4242&gid=4343"
	_, err = nfs.New(context.Background(), u, core.Options{})
	if err == nil || !netshare.IsPermanent(err) || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("creating a repository in a directory the user may not write: got %v, want a permanent permission error", err)
	}
}
