package netshare

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"time"
)

// RetryPolicy says how WithRetry retries. Zero fields take the defaults.
type RetryPolicy struct {
	// Attempts is the most tries of one operation, the first included
	// (default 10).
	Attempts int
	// Initial is the delay before the first retry (default 100ms); each
	// further delay doubles, up to Max (default 30s). Each delay is
	// jittered to between half and all of its value, so that parallel
	// workers do not retry in step.
	Initial, Max time.Duration
	// Report, if set, is told of every failed attempt that will be
	// retried: the operation ("save", "load", "stat", "list", "remove",
	// "cleanup"), the object name (the prefix for list, "" for cleanup),
	// the attempt number from 1, and the error.
	Report func(op, name string, attempt int, err error)
}

// Default retry settings.
const (
	DefaultAttempts = 10
	DefaultInitial  = 100 * time.Millisecond
	DefaultMax      = 30 * time.Second
)

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = DefaultAttempts
	}
	if p.Initial <= 0 {
		p.Initial = DefaultInitial
	}
	if p.Max <= 0 {
		p.Max = DefaultMax
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	return p
}

// delay returns the wait after the given failed attempt (from 1): the
// exponential step, capped at Max, jittered into [step/2, step].
func (p RetryPolicy) delay(attempt int) time.Duration {
	step := p.Initial
	for i := 1; i < attempt && step < p.Max; i++ {
		step *= 2
	}
	step = min(step, p.Max)
	half := step / 2
	return half + rand.N(step-half+1)
}

// WithRetry wraps b so that transient errors are retried with exponential
// backoff. Errors that IsPermanent reports, and context cancellation, are
// returned at once; a cancelled ctx also ends a wait between attempts at
// once. Save seeks its reader back to where it was at the call before each
// retry. List never calls fn twice for the same name across retries, and an
// error from fn is never retried. A Remove that finds the object missing on
// a retry succeeds: an earlier attempt removed it but lost the reply.
// When b is a Cleaner, so is the result, and its Cleanup is retried too;
// otherwise the result is not one, so callers can still tell.
func WithRetry(b Backend, p RetryPolicy) Backend {
	r := &retryBackend{b: b, p: p.withDefaults()}
	if c, ok := b.(Cleaner); ok {
		return &retryCleaner{retryBackend: r, c: c}
	}
	return r
}

// retryCleaner is a retryBackend whose backend is a Cleaner.
type retryCleaner struct {
	*retryBackend
	c Cleaner
}

// Cleanup retries the wrapped Cleanup, which removes only what is still
// stale on each attempt, so retrying it is harmless. The count adds up the
// removals of every attempt, failed ones included.
func (r *retryCleaner) Cleanup(ctx context.Context, olderThan time.Duration) (int, error) {
	total := 0
	err := r.do(ctx, "cleanup", "", func(int) error {
		n, err := r.c.Cleanup(ctx, olderThan)
		total += n
		return err
	})
	return total, err
}

type retryBackend struct {
	b Backend
	p RetryPolicy
}

// do runs f until it succeeds, fails permanently, ctx ends or the attempts
// run out.
func (r *retryBackend) do(ctx context.Context, op, name string, f func(attempt int) error) error {
	for attempt := 1; ; attempt++ {
		err := f(attempt)
		if err == nil {
			return nil
		}
		if IsPermanent(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return err
		}
		if attempt >= r.p.Attempts {
			return fmt.Errorf("%s %q: giving up after %d attempts: %w", op, name, attempt, err)
		}
		if r.p.Report != nil {
			r.p.Report(op, name, attempt, err)
		}
		t := time.NewTimer(r.p.delay(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s %q: retry abandoned: %w (last error: %w)", op, name, ctx.Err(), err)
		case <-t.C:
		}
	}
}

func (r *retryBackend) Save(ctx context.Context, name string, size int64, rd io.ReadSeeker) error {
	start, err := rd.Seek(0, io.SeekCurrent)
	if err != nil {
		return Permanent(fmt.Errorf("save %q: find reader position: %w", name, err))
	}
	return r.do(ctx, "save", name, func(attempt int) error {
		if attempt > 1 {
			if _, err := rd.Seek(start, io.SeekStart); err != nil {
				return Permanent(fmt.Errorf("save %q: rewind reader for retry: %w", name, err))
			}
		}
		return r.b.Save(ctx, name, size, rd)
	})
}

func (r *retryBackend) Load(ctx context.Context, name string, off, length int64) ([]byte, error) {
	var data []byte
	err := r.do(ctx, "load", name, func(int) error {
		var err error
		data, err = r.b.Load(ctx, name, off, length)
		return err
	})
	if err != nil {
		return nil, err
	}
	return data, nil
}

func (r *retryBackend) Stat(ctx context.Context, name string) (FileInfo, error) {
	var fi FileInfo
	err := r.do(ctx, "stat", name, func(int) error {
		var err error
		fi, err = r.b.Stat(ctx, name)
		return err
	})
	if err != nil {
		return FileInfo{}, err
	}
	return fi, nil
}

func (r *retryBackend) List(ctx context.Context, prefix string, fn func(FileInfo) error) error {
	seen := make(map[string]struct{})
	var fnErr error
	err := r.do(ctx, "list", prefix, func(int) error {
		err := r.b.List(ctx, prefix, func(fi FileInfo) error {
			if _, ok := seen[fi.Name]; ok {
				return nil
			}
			seen[fi.Name] = struct{}{}
			if err := fn(fi); err != nil {
				fnErr = err
				return err
			}
			return nil
		})
		if fnErr != nil {
			// The caller's own error: never retried, returned as is below.
			return Permanent(fnErr)
		}
		return err
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

func (r *retryBackend) Remove(ctx context.Context, name string) error {
	return r.do(ctx, "remove", name, func(attempt int) error {
		err := r.b.Remove(ctx, name)
		if attempt > 1 && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	})
}

func (r *retryBackend) Properties() Properties { return r.b.Properties() }

func (r *retryBackend) Close() error { return r.b.Close() }
