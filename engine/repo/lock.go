package repo

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrLocked is wrapped by the error of a Lock that conflicts with another.
var ErrLocked = errors.New("repository is locked")

// LockInfo is the content of a locks/<id> object.
type LockInfo struct {
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Time      time.Time `json:"time"`
	Exclusive bool      `json:"exclusive"`
}

func (li LockInfo) String() string {
	kind := "shared"
	if li.Exclusive {
		kind = "exclusive"
	}
	return fmt.Sprintf("%s lock held by pid %d on %s since %s", kind, li.PID, li.Host, li.Time.UTC().Format(time.RFC3339))
}

// LockedError names the holder of a conflicting lock.
type LockedError struct {
	Holder LockInfo
	Name   string
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("%v: %v (%s)", ErrLocked, e.Holder, e.Name)
}

// Unwrap makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Unwrap() error { return ErrLocked }

// Lock is a held repository lock, refreshed in the background until Unlock.
type Lock struct {
	r    *Repo
	info LockInfo
	stop chan struct{}
	wg   sync.WaitGroup

	mu   sync.Mutex
	name string
}

// Lock takes a shared (exclusive=false) or exclusive lock. An exclusive lock
// conflicts with every other lock, a shared one with exclusive locks. Stale
// locks (not refreshed for 30 minutes, or from this host whose process is
// gone) are removed instead of conflicting. Once the lock is held, the
// in-memory index is reloaded if other processes changed the index files
// since it was loaded (a prune may have removed packs it lists).
func (r *Repo) Lock(ctx context.Context, exclusive bool) (*Lock, error) {
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("lock repository: hostname: %w", err)
	}
	info := LockInfo{Host: host, PID: os.Getpid(), Time: r.now().UTC(), Exclusive: exclusive}
	if err := r.checkLocks(ctx, info, ""); err != nil {
		return nil, fmt.Errorf("lock repository: %w", err)
	}
	name, err := r.saveLock(ctx, info)
	if err != nil {
		return nil, fmt.Errorf("lock repository: %w", err)
	}
	// Two processes may have passed the first check at once; checking again
	// after writing makes at least one of them see the other and back off.
	if err := r.checkLocks(ctx, info, name); err != nil {
		_ = r.be.Remove(context.WithoutCancel(ctx), name)
		return nil, fmt.Errorf("lock repository: %w", err)
	}
	// Another process may have pruned or written since the index was
	// loaded; what this holder dedups against must be what is stored.
	if err := r.refreshIndex(ctx); err != nil {
		_ = r.be.Remove(context.WithoutCancel(ctx), name)
		return nil, fmt.Errorf("lock repository: %w", err)
	}
	l := &Lock{r: r, info: info, name: name, stop: make(chan struct{})}
	l.wg.Add(1)
	go l.refresher()
	return l, nil
}

func (r *Repo) saveLock(ctx context.Context, info LockInfo) (string, error) {
	b, err := json.Marshal(info)
	if err != nil {
		return "", fmt.Errorf("encode lock: %w", err)
	}
	// A random component keeps two locks with equal content apart.
	nonce, err := randomBytes(16)
	if err != nil {
		return "", err
	}
	b = append(b, []byte("\n"+hex.EncodeToString(nonce))...)
	id, err := r.saveObject(ctx, "locks", b)
	if err != nil {
		return "", err
	}
	return "locks/" + id, nil
}

func parseLock(p []byte) (LockInfo, error) {
	var li LockInfo
	if i := strings.LastIndexByte(string(p), '\n'); i >= 0 {
		p = p[:i]
	}
	if err := json.Unmarshal(p, &li); err != nil {
		return li, fmt.Errorf("decode lock: %w", err)
	}
	return li, nil
}

// checkLocks returns a LockedError for a lock that conflicts with want,
// after removing every stale lock. self is the caller's own lock.
func (r *Repo) checkLocks(ctx context.Context, want LockInfo, self string) error {
	names, err := r.listNames(ctx, "locks/")
	if err != nil {
		return err
	}
	var conflict *LockedError
	for _, name := range names {
		if name == self {
			continue
		}
		p, err := r.loadObject(ctx, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return fmt.Errorf("read lock %s: %w", name, err)
		}
		li, err := parseLock(p)
		if err != nil {
			return fmt.Errorf("read lock %s: %w: %w", name, ErrDamaged, err)
		}
		if r.stale(li, want.Host) {
			if err := r.be.Remove(ctx, name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove stale lock %s: %w", name, err)
			}
			continue
		}
		if (want.Exclusive || li.Exclusive) && conflict == nil {
			conflict = &LockedError{Holder: li, Name: name}
		}
	}
	if conflict != nil {
		return conflict
	}
	return nil
}

// stale says whether a lock can be broken: not refreshed within lockStale,
// or held by a process of this host that no longer exists.
func (r *Repo) stale(li LockInfo, host string) bool {
	if r.now().Sub(li.Time) > r.lockStale {
		return true
	}
	if li.Host == host && li.PID > 0 && li.PID != os.Getpid() {
		if err := syscall.Kill(li.PID, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
	}
	return false
}

// refresher rewrites the lock every lockRefresh so others do not find it
// stale. A new object is written before the old one is removed, so the lock
// never disappears.
func (l *Lock) refresher() {
	defer l.wg.Done()
	t := time.NewTicker(l.r.lockRefresh)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			info := l.info
			info.Time = l.r.now().UTC()
			ctx, cancel := context.WithTimeout(context.Background(), l.r.lockRefresh)
			name, err := l.r.saveLock(ctx, info)
			if err == nil {
				l.mu.Lock()
				old := l.name
				l.name = name
				l.mu.Unlock()
				_ = l.r.be.Remove(ctx, old)
			}
			cancel()
		}
	}
}

// Name returns the lock's current object name.
func (l *Lock) Name() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.name
}

// Unlock stops refreshing and removes the lock object.
func (l *Lock) Unlock() error {
	close(l.stop)
	l.wg.Wait()
	name := l.Name()
	if err := l.r.be.Remove(context.Background(), name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unlock repository: remove %s: %w", name, err)
	}
	return nil
}
