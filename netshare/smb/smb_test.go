package smb_test

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
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/netshare"
	"github.com/lifeboat/lifeboat/netshare/internal/core"
	"github.com/lifeboat/lifeboat/netshare/netsharetest"
	"github.com/lifeboat/lifeboat/netshare/smb"
	"github.com/lifeboat/lifeboat/netshare/smb/smbtest"
)

var _ netshare.Backend = (*smb.Backend)(nil)

func open(t *testing.T, srv *smbtest.Server, u *url.URL) *smb.Backend {
	t.Helper()
	b, err := smb.New(context.Background(), u, core.Options{PasswordFile: srv.PasswordFile})
	if err != nil {
		t.Fatalf("smb.New(%s): %v", u, err)
	}
	return b
}

func TestConformance(t *testing.T) {
	srv := smbtest.Start(t)
	var n atomic.Int64
	netsharetest.RunConformance(t, func(t *testing.T) netshare.Backend {
		// Each subtest gets a fresh directory, some of them nested, so the
		// backend creates its base directory itself.
		sub := fmt.Sprintf("t%d", n.Add(1))
		if n.Load()%2 == 0 {
			sub += "/nested/deeper"
		}
		if n.Load()%3 == 0 {
			sub = "My Backups/" + sub // folders may have names objects may not
		}
		return open(t, srv, srv.URL(sub))
	})
}

func TestShareRoot(t *testing.T) {
	srv := smbtest.Start(t)
	b := open(t, srv, srv.URL(""))
	defer b.Close()
	ctx := context.Background()
	data := []byte("at the root of the share")
	if err := b.Save(ctx, "data/ab/x", int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(srv.Dir, "data", "ab", "x"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file on the server: %q, %v; want %q", got, err, data)
	}
	p := b.Properties()
	if p.Name != "smb" || !p.AtomicRename || strings.Contains(p.Location, srv.Password) {
		t.Fatalf("Properties() = %+v", p)
	}
}

// Temporary files of a save that never finished are not objects.
func TestTemporaryFilesHidden(t *testing.T) {
	srv := smbtest.Start(t)
	b := open(t, srv, srv.URL("r"))
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
	if _, err := b.Stat(context.Background(), "index/a.tmp-0123456789abcdef"); !errors.Is(err, netshare.ErrInvalidName) {
		t.Fatalf("Stat of a temporary name: %v, want ErrInvalidName", err)
	}
}

func TestWrongPassword(t *testing.T) {
	srv := smbtest.Start(t)
	const wrong = "Wrong-Secret-4242"
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(wrong+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []core.Options{
		{PasswordFile: pwFile},
		{AskPassword: func(prompt string) ([]byte, error) {
			if !strings.Contains(prompt, smbtest.User) || !strings.Contains(prompt, "127.0.0.1") {
				t.Errorf("prompt %q names neither the user nor the host", prompt)
			}
			return []byte(wrong), nil
		}},
	} {
		_, err := smb.New(context.Background(), srv.URL("r"), opts)
		if err == nil {
			t.Fatal("smb.New with a wrong password succeeded")
		}
		if !netshare.IsPermanent(err) {
			t.Fatalf("wrong password: error %v is not permanent", err)
		}
		if !strings.Contains(err.Error(), "logon failure") {
			t.Fatalf("wrong password: error %q does not say logon failure", err)
		}
		if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), srv.Password) {
			t.Fatalf("error %q contains a password", err)
		}
	}
	// The right password from a prompt works.
	b, err := smb.New(context.Background(), srv.URL("r"), core.Options{AskPassword: func(string) ([]byte, error) { return []byte(srv.Password), nil }})
	if err != nil {
		t.Fatalf("smb.New with the password from a prompt: %v", err)
	}
	b.Close()
}

func TestMissingShare(t *testing.T) {
	srv := smbtest.Start(t)
	u := srv.URL("")
	u.Path = "/nosuchshare/x"
	_, err := smb.New(context.Background(), u, core.Options{PasswordFile: srv.PasswordFile})
	if err == nil || !netshare.IsPermanent(err) || !strings.Contains(err.Error(), "no such share") || !strings.Contains(err.Error(), "nosuchshare") {
		t.Fatalf("missing share: got %v, want a permanent error naming the share", err)
	}
}

func TestRefusedLocations(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"smb://root:Hunter2secret@127.0.0.1/repo", "password inside the URL"},
		{"smb://127.0.0.1/repo", "without a user"},
		{"smb://root@127.0.0.1/", "without a share"},
		{"smb://root@/repo", "without a host"},
		{"smb://root@127.0.0.1:99999/repo", "not a port"},
		{"smb://root@127.0.0.1/repo/../etc", `element ".."`},
		{"smb://root@127.0.0.1/repo/a%5Cb", "not allowed"},
		{"smb://root@127.0.0.1/repo?x=1", "query"},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		_, err = smb.New(context.Background(), u, core.Options{PasswordFile: "/nonexistent"})
		if err == nil || !netshare.IsPermanent(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want a permanent error with %q", tc.url, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "Hunter2secret") {
			t.Errorf("%s: error %q holds the password", tc.url, err)
		}
	}
	u, _ := url.Parse("smb://root@127.0.0.1:1/repo")
	_, err := smb.New(context.Background(), u, core.Options{})
	if err == nil || !netshare.IsPermanent(err) || !strings.Contains(err.Error(), "no password") {
		t.Errorf("no password given: got %v", err)
	}
}

// The domain may be given as "domain;user", escaped or not, or
// "domain\user"; the location printed keeps it and no password.
func TestDomainUser(t *testing.T) {
	srv := smbtest.Start(t)
	for _, raw := range []string{
		"smb://WORKGROUP;root@127.0.0.1:%d/repo/d",
		"smb://WORKGROUP%%3Broot@127.0.0.1:%d/repo/d",
		"smb://WORKGROUP%%5Croot@127.0.0.1:%d/repo/d",
	} {
		u, err := url.Parse(fmt.Sprintf(raw, srv.Port))
		if err != nil {
			t.Fatal(err)
		}
		b := open(t, srv, u)
		loc := b.Properties().Location
		b.Close()
		if !strings.Contains(loc, "WORKGROUP") || !strings.Contains(loc, "root@127.0.0.1") {
			t.Errorf("%s: Location %q", u, loc)
		}
	}
}

// A server that goes away gives retryable errors, and the backend dials
// anew once it is back: WithRetry rides out a restart.
func TestServerRestart(t *testing.T) {
	srv := smbtest.Start(t)
	b := open(t, srv, srv.URL("r"))
	defer b.Close()
	ctx := context.Background()
	data := bytes.Repeat([]byte("lifeboat"), 100000)
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
	if _, err := rb.Stat(ctx, "data/00/b"); err != nil {
		t.Fatal(err)
	}
	if err := rb.Remove(ctx, "data/00/nothing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Remove of a missing object after the restart: %v", err)
	}
}

// A server that speaks only SMB 3.1.1 and requires signing and encryption
// serves the backend too.
func TestSMB3Encrypted(t *testing.T) {
	srv := smbtest.Start(t, "server min protocol = SMB3_11", "server signing = mandatory", "server smb encrypt = required")
	b := open(t, srv, srv.URL("enc"))
	defer b.Close()
	ctx := context.Background()
	data := bytes.Repeat([]byte("sealed "), 200000)
	if err := b.Save(ctx, "data/00/x", int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	got, err := b.Load(ctx, "data/00/x", 7, 70000)
	if err != nil || !bytes.Equal(got, data[7:70007]) {
		t.Fatalf("Load over SMB 3.1.1 with encryption: %d bytes, %v", len(got), err)
	}
}
