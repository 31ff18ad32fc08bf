package netshare

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOpenLocal(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, loc := range []string{filepath.Join(dir, "plain"), "file://" + filepath.Join(dir, "url"), "FILE://localhost" + filepath.Join(dir, "host")} {
		b, err := Open(ctx, loc)
		if err != nil {
			t.Fatalf("Open(%q): %v", loc, err)
		}
		if err := b.Save(ctx, "config", 2, bytes.NewReader([]byte("ok"))); err != nil {
			t.Fatalf("Save through Open(%q): %v", loc, err)
		}
		p := b.Properties()
		if p.Name != "local" {
			t.Fatalf("Open(%q) gave a %q backend", loc, p.Name)
		}
		if got, err := os.ReadFile(filepath.Join(p.Location, "config")); err != nil || string(got) != "ok" {
			t.Fatalf("Open(%q): object not under %s: %q, %v", loc, p.Location, got, err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ loc, want string }{
		{"", "empty location"},
		{"smb://bob:hunter2@nas/share/path", `a password inside the URL is refused`},
		{"sftp://bob:hunter2@host/path", `give it in a password file`},
		{"S3://host/bucket?x=1", `unknown option "x"`},
		{"s3://key:hunter2@host/bucket", `give keys in a credentials file`},
		{"nfs://bob:hunter2@host/export", `may not hold a user`},
		{"gopher://host/x", `unknown location scheme "gopher"`},
		{"bob:hunter2@host://x", "malformed location scheme"},
		{"file://otherhost/x", `names host "otherhost"`},
		{"file://bob:hunter2@localhost/x", "only a path"},
		{"file://", "without a path"},
	} {
		_, err := Open(ctx, tc.loc)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %v, want an error containing %q", tc.loc, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%q) error shows the password: %v", tc.loc, err)
		}
		if err != nil && !IsPermanent(err) {
			t.Errorf("Open(%q) error is not permanent: %v", tc.loc, err)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Open(cancelled, t.TempDir()); !errors.Is(err, context.Canceled) {
		t.Errorf("Open with a cancelled context: %v", err)
	}
}

// A path with "://" after a slash is still a path.
func TestParseLocationPath(t *testing.T) {
	for _, loc := range []string{"/mnt/usb/repo", "repo", "./a://b", "/x/y://z"} {
		scheme, path, err := parseLocation(loc)
		if err != nil || scheme != "file" || path != loc {
			t.Errorf("parseLocation(%q) = %q, %q, %v; want file and the path itself", loc, scheme, path, err)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	p := RetryPolicy{Initial: 100 * time.Millisecond, Max: time.Second}.withDefaults()
	if p.Attempts != DefaultAttempts {
		t.Fatalf("default attempts = %d", p.Attempts)
	}
	for attempt, step := range map[int]time.Duration{
		1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond,
		4: 800 * time.Millisecond, 5: time.Second, 60: time.Second, 1 << 30: time.Second,
	} {
		lo, hi := time.Duration(1<<62), time.Duration(0)
		for range 200 {
			d := p.delay(attempt)
			lo, hi = min(lo, d), max(hi, d)
		}
		if lo < step/2 || hi > step {
			t.Errorf("attempt %d: delays in [%v, %v], want within [%v, %v]", attempt, lo, hi, step/2, step)
		}
		if lo == hi {
			t.Errorf("attempt %d: 200 delays all %v: no jitter", attempt, lo)
		}
	}
}
