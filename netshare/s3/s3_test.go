package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
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
	"github.com/lifeboat/lifeboat/netshare/s3"
	"github.com/lifeboat/lifeboat/netshare/s3/s3test"
)

var _ netshare.Backend = (*s3.Backend)(nil)

func open(t *testing.T, u *url.URL, opts core.Options) *s3.Backend {
	t.Helper()
	b, err := s3.New(context.Background(), u, opts)
	if err != nil {
		t.Fatalf("New(%s): %v", u, err)
	}
	return b
}

// openRepo starts a server with the bucket "lifeboat" and opens the
// backend on its prefix "repo", closed when the test ends.
func openRepo(t *testing.T) (*s3test.Server, *s3.Backend) {
	t.Helper()
	srv := s3test.Start(t)
	srv.MakeBucket(t, "lifeboat")
	b := open(t, srv.URL("lifeboat", "repo"), srv.Options())
	t.Cleanup(func() { b.Close() })
	return srv, b
}

func permanentFailure(t *testing.T, what string, err error, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want a permanent error", what)
	}
	if !netshare.IsPermanent(err) {
		t.Fatalf("%s: error %q is not permanent", what, err)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Fatalf("%s: error %q does not mention %q", what, err, c)
		}
	}
}

// Each subtest gets its own key prefix in one bucket, so the prefix is
// exercised too; TestBucketRoot covers a location without one.
func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "lifeboat")
	var n atomic.Int32
	netsharetest.RunConformance(t, func(t *testing.T) netshare.Backend {
		return open(t, srv.URL("lifeboat", fmt.Sprintf("repos/r%d", n.Add(1))), srv.Options())
	})
}

func TestBucketRoot(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "whole")
	srv.MakeBucket(t, "other")
	ctx := context.Background()
	b := open(t, srv.URL("whole", ""), srv.Options())
	defer b.Close()
	p := b.Properties()
	if p.Name != "s3" || p.Location != "s3://"+srv.Addr+"/whole" || p.MaxConnections < 1 {
		t.Fatalf("Properties() = %+v", p)
	}
	if err := b.Save(ctx, "data/ab/x", 3, bytes.NewReader([]byte("abc"))); err != nil {
		t.Fatal(err)
	}
	// The posix backend of versitygw keeps keys as files.
	if got, err := os.ReadFile(filepath.Join(srv.Dir, "root", "whole", "data", "ab", "x")); err != nil || string(got) != "abc" {
		t.Fatalf("file behind whole/data/ab/x: %q, %v", got, err)
	}
	// A key no call could load (another tool's) is not listed.
	if err := os.WriteFile(filepath.Join(srv.Dir, "root", "whole", "data", "ab", "a b"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := b.List(ctx, "", func(fi netshare.FileInfo) error { names = append(names, fi.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "data/ab/x" {
		t.Fatalf("List of the bucket = %q, want only data/ab/x", names)
	}
	// Another bucket does not see it.
	o := open(t, srv.URL("other", "x"), srv.Options())
	defer o.Close()
	if _, err := o.Stat(ctx, "data/ab/x"); err == nil {
		t.Fatal("object visible through another bucket")
	}
}

func TestCredentials(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "lifeboat")
	ctx := context.Background()
	u := srv.URL("lifeboat", "")
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wrongSecret := srv.SecretKey + "-wrong"
	noSecret := func(t *testing.T, err error) {
		t.Helper()
		for _, s := range []string{srv.SecretKey, wrongSecret} {
			if strings.Contains(err.Error(), s) {
				t.Fatalf("error %q gives away a secret key", err)
			}
		}
	}

	t.Run("WrongSecret", func(t *testing.T) {
		o := srv.Options()
		o.CredentialsFile = write("wrong", "[default]\naws_access_key_id="+srv.AccessKey+"\naws_secret_access_key="+wrongSecret+"\n")
		_, err := s3.New(ctx, u, o)
		permanentFailure(t, "New with a wrong secret key", err)
		noSecret(t, err)
	})
	t.Run("UnknownKey", func(t *testing.T) {
		o := srv.Options()
		o.CredentialsFile = write("unknown", "[default]\naws_access_key_id = nobody\naws_secret_access_key = "+srv.SecretKey+"\n")
		_, err := s3.New(ctx, u, o)
		permanentFailure(t, "New with an unknown access key", err)
		noSecret(t, err)
	})
	t.Run("Profile", func(t *testing.T) {
		// s3test's file holds a wrong [other] section before [default].
		pu := *u
		pu.RawQuery = "profile=other"
		_, err := s3.New(ctx, &pu, srv.Options())
		permanentFailure(t, "New with the [other] profile's keys", err)
		pu.RawQuery = "profile=absent"
		_, err = s3.New(ctx, &pu, srv.Options())
		permanentFailure(t, "New with a profile the file lacks", err, "[absent]")
	})
	t.Run("Environment", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
		b := open(t, u, core.Options{CAFile: srv.CAFile})
		defer b.Close()
		if err := b.Save(ctx, "config", 1, bytes.NewReader([]byte{1})); err != nil {
			t.Fatal(err)
		}
		t.Setenv("AWS_SECRET_ACCESS_KEY", wrongSecret)
		_, err := s3.New(ctx, u, core.Options{CAFile: srv.CAFile})
		permanentFailure(t, "New with a wrong secret key in the environment", err)
		noSecret(t, err)
		t.Setenv("AWS_SECRET_ACCESS_KEY", "")
		_, err = s3.New(ctx, u, core.Options{CAFile: srv.CAFile})
		permanentFailure(t, "New without credentials", err, "no credentials")
	})
	t.Run("Malformed", func(t *testing.T) {
		o := srv.Options()
		o.CredentialsFile = write("malformed", "[default]\naws_secret_access_key "+srv.SecretKey+"\n")
		_, err := s3.New(ctx, u, o)
		permanentFailure(t, "New with a malformed credentials file", err, "line 2")
		noSecret(t, err)
	})
}

func TestMissingBucket(t *testing.T) {
	srv := s3test.Start(t)
	_, err := s3.New(context.Background(), srv.URL("absent", "x"), srv.Options())
	permanentFailure(t, "New on a missing bucket", err, `bucket "absent" does not exist`)
}

func TestUntrustedCertificate(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "lifeboat")
	o := srv.Options()
	o.CAFile = ""
	_, err := s3.New(context.Background(), srv.URL("lifeboat", ""), o)
	permanentFailure(t, "New with a certificate no authority vouches for", err, "certificate")
	o.CAFile = o.CredentialsFile
	_, err = s3.New(context.Background(), srv.URL("lifeboat", ""), o)
	permanentFailure(t, "New with a CA file holding no certificate", err, "no PEM certificate")
}

func TestLocations(t *testing.T) {
	for _, loc := range []string{
		"s3://AKIA:hunter2-Secret@127.0.0.1/bucket",
		"s3:///bucket",
		"s3://127.0.0.1/",
		"s3://127.0.0.1/Bad_Bucket",
		"s3://127.0.0.1/bucket/a//b",
		"s3://127.0.0.1/bucket/x?insecure=1",
		"sftp://127.0.0.1/bucket",
	} {
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s3.New(context.Background(), u, core.Options{CredentialsFile: "/nonexistent"})
		permanentFailure(t, "New("+u.Redacted()+")", err)
		if strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("error %q gives away the secret of the location", err)
		}
	}
}

// A server that goes away and comes back: calls fail with retryable errors
// meanwhile, and WithRetry rides out the restart.
func TestServerRestart(t *testing.T) {
	srv, b := openRepo(t)
	ctx := context.Background()
	if err := b.Save(ctx, "data/00/x", 3, bytes.NewReader([]byte("abc"))); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)
	for _, op := range []struct {
		name string
		fn   func() error
	}{
		{"Save", func() error { return b.Save(ctx, "index/x", 1, bytes.NewReader([]byte{1})) }},
		{"Load", func() error { _, err := b.Load(ctx, "data/00/x", 0, -1); return err }},
		{"Stat", func() error { _, err := b.Stat(ctx, "data/00/x"); return err }},
		{"List", func() error { return b.List(ctx, "", func(netshare.FileInfo) error { return nil }) }},
		{"Remove", func() error { return b.Remove(ctx, "data/00/x") }},
	} {
		err := op.fn()
		if err == nil || netshare.IsPermanent(err) {
			t.Fatalf("%s with the server down: %v, want a retryable error", op.name, err)
		}
	}
	_, err := s3.New(ctx, srv.URL("lifeboat", "repo"), srv.Options())
	if err == nil || netshare.IsPermanent(err) {
		t.Fatalf("New with the server down: %v, want a retryable error", err)
	}
	rb := netshare.WithRetry(b, netshare.RetryPolicy{Attempts: 50, Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- rb.Save(ctx, "index/y", 2, bytes.NewReader([]byte("yy"))) }()
	time.Sleep(100 * time.Millisecond)
	srv.Restart(t)
	if err := <-done; err != nil {
		t.Fatalf("Save through WithRetry across a server restart: %v", err)
	}
	got, err := b.Load(ctx, "index/y", 0, -1)
	if err != nil || string(got) != "yy" {
		t.Fatalf("Load after the restart: %q, %v", got, err)
	}
}

// An object over PartSize goes in parts: it comes back whole, and a save
// whose reader fails after the first part stores nothing and leaves no
// unfinished upload.
func TestMultipartSave(t *testing.T) {
	_, b := openRepo(t)
	ctx := context.Background()
	data := make([]byte, s3.PartSize+3<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if err := b.Save(ctx, "data/00/big", int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	got, err := b.Load(ctx, "data/00/big", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("loaded %d bytes, not the %d saved", len(got), len(data))
	}
	tail, err := b.Load(ctx, "data/00/big", s3.PartSize-10, 20)
	if err != nil || !bytes.Equal(tail, data[s3.PartSize-10:s3.PartSize+10]) {
		t.Fatalf("range across the part border: %v", err)
	}
	boom := errors.New("disk read error")
	failing := netsharetest.FailAfter(data, s3.PartSize+1<<20, boom)
	if err := b.Save(ctx, "data/00/cut", int64(len(data)), failing); !errors.Is(err, boom) {
		t.Fatalf("a save whose reader failed midway: %v, want the reader's error", err)
	}
	if _, err := b.Stat(ctx, "data/00/cut"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after a failed multipart save: stat %v, want not exist", err)
	}
	if n, err := b.Cleanup(ctx, 0); err != nil || n != 0 {
		t.Fatalf("unfinished uploads after the failed save: %d (%v), want none", n, err)
	}
}
