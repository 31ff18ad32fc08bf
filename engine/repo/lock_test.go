package repo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestLocks(t *testing.T) {
	ctx := context.Background()
	r, _, _ := initRepo(t)
	s1, err := r.Lock(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := r.Lock(ctx, false)
	if err != nil {
		t.Fatalf("two shared locks: %v", err)
	}
	_, err = r.Lock(ctx, true)
	var le *LockedError
	if !errors.Is(err, ErrLocked) || !errors.As(err, &le) {
		t.Fatalf("exclusive over shared: %v", err)
	}
	host, _ := os.Hostname()
	if le.Holder.Host != host || le.Holder.PID != os.Getpid() || !strings.Contains(err.Error(), fmt.Sprintf("pid %d on %s", os.Getpid(), host)) {
		t.Fatalf("conflict error does not name the holder: %v", err)
	}
	if err := s1.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := s2.Unlock(); err != nil {
		t.Fatal(err)
	}
	ex, err := r.Lock(ctx, true)
	if err != nil {
		t.Fatalf("exclusive on a free repository: %v", err)
	}
	if _, err := r.Lock(ctx, false); !errors.Is(err, ErrLocked) {
		t.Fatalf("shared over exclusive: %v", err)
	}
	if _, err := r.Lock(ctx, true); !errors.Is(err, ErrLocked) {
		t.Fatalf("exclusive over exclusive: %v", err)
	}
	if err := ex.Unlock(); err != nil {
		t.Fatal(err)
	}
	if names, _ := r.listNames(ctx, "locks/"); len(names) != 0 {
		t.Fatalf("locks left after Unlock: %v", names)
	}
}

func TestStaleLocksAreBroken(t *testing.T) {
	ctx := context.Background()
	be, _ := newBackend(t)
	r, err := Init(ctx, be, InitOptions{Password: []byte("pw")})
	if err != nil {
		t.Fatal(err)
	}
	// Old: another host, not refreshed for 31 minutes.
	old, err := r.saveLock(ctx, LockInfo{Host: "elsewhere", PID: 1, Time: time.Now().Add(-31 * time.Minute), Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	// Dead process on this host, recent.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	dead, err := r.saveLock(ctx, LockInfo{Host: host, PID: cmd.Process.Pid, Time: time.Now(), Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	// Live and recent on another host: must conflict.
	live, err := r.saveLock(ctx, LockInfo{Host: "elsewhere", PID: 1, Time: time.Now().Add(-29 * time.Minute), Exclusive: false})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Lock(ctx, true)
	var le *LockedError
	if !errors.As(err, &le) || le.Name != live || le.Holder.Host != "elsewhere" {
		t.Fatalf("exclusive lock over a live shared lock: %v", err)
	}
	for _, n := range []string{old, dead} {
		if _, err := be.Stat(ctx, n); err == nil {
			t.Fatalf("stale lock %s not removed", n)
		}
	}
	if err := be.Remove(ctx, live); err != nil {
		t.Fatal(err)
	}
	l, err := r.Lock(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestLockRefresh(t *testing.T) {
	ctx := context.Background()
	r, _, _ := initRepo(t)
	r.lockRefresh = 20 * time.Millisecond
	l, err := r.Lock(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	first := l.Name()
	// Wait (generously) for a refresh to replace the object.
	deadline := time.Now().Add(30 * time.Second)
	for l.Name() == first && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l.Name() == first {
		t.Fatal("lock never refreshed")
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if names, _ := r.listNames(ctx, "locks/"); len(names) != 0 {
		t.Fatalf("locks left after Unlock: %v", names)
	}
}
