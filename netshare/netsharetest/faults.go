package netsharetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat/lifeboat/netshare"
)

// Op names a Backend operation for fault injection and call counting.
type Op string

// The operations of netshare.Backend that Faults can count and fail.
const (
	OpSave   Op = "save"
	OpLoad   Op = "load"
	OpStat   Op = "stat"
	OpList   Op = "list"
	OpRemove Op = "remove"
	// OpCleanup is netshare.Cleaner's Cleanup; its name is "".
	OpCleanup Op = "cleanup"
)

// Kind is what an injected fault does.
type Kind int

const (
	// Transient fails the call with a retryable error before it reaches
	// the backend.
	Transient Kind = iota
	// PermanentFault fails the call with a permanent error before it
	// reaches the backend.
	PermanentFault
	// LostReply lets the call reach the backend and succeed, then returns
	// a transient error, as when a connection drops before the reply: the
	// retry must be harmless.
	LostReply
	// PartialSave (OpSave only) calls the backend's real Save with a
	// reader that fails after After bytes, as a killed writer would; the
	// backend must then store nothing. The error is transient.
	PartialSave
	// Corrupt (OpLoad only) flips one byte of what a successful Load
	// returns, at index At (or the middle when At < 0 or past the end).
	Corrupt
)

// ErrInjected is wrapped by every error that Faults injects.
var ErrInjected = errors.New("injected fault")

// Fault is one rule: it fires on the Call-th call of Op (counted from 1,
// from when the rule is added) among the calls whose name starts with
// Prefix, or on every such call when Call is 0.
type Fault struct {
	Op     Op
	Call   int
	Prefix string
	Kind   Kind
	// After is how many bytes a PartialSave passes before its reader
	// fails.
	After int64
	// At is the index of the byte a Corrupt flips.
	At int
}

type rule struct {
	Fault
	seen int
}

// Faults decides which calls of a backend wrapped by WithFaults fail, and
// counts every call. It is safe for concurrent use; its zero value injects
// nothing.
type Faults struct {
	mu       sync.Mutex
	rules    []*rule
	calls    map[Op]int
	injected map[Op]int
}

// Add adds a rule.
func (f *Faults) Add(fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, &rule{Fault: fault})
}

// Clear removes every rule; the counts stay.
func (f *Faults) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
}

// Calls returns how many calls of op the wrapper has received, whether
// they failed or not.
func (f *Faults) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// Injected returns how many faults have fired on calls of op.
func (f *Faults) Injected(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.injected[op]
}

// next counts a call and returns the fault that fires on it, if any. When
// several rules match, the first added fires; every matching rule counts
// the call.
func (f *Faults) next(op Op, name string) *Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = make(map[Op]int)
		f.injected = make(map[Op]int)
	}
	f.calls[op]++
	var fire *Fault
	for _, r := range f.rules {
		if r.Op != op || !strings.HasPrefix(name, r.Prefix) {
			continue
		}
		r.seen++
		if fire == nil && (r.Call == 0 || r.Call == r.seen) {
			fault := r.Fault
			fire = &fault
		}
	}
	if fire != nil {
		f.injected[op]++
	}
	return fire
}

func injected(op Op, name string, k Kind) error {
	err := fmt.Errorf("%s %q: %w", op, name, ErrInjected)
	if k == PermanentFault {
		return netshare.Permanent(err)
	}
	return err
}

// WithFaults wraps b so that f's rules fail its calls and f counts them.
// When b is a netshare.Cleaner, so is the result (its Cleanup counted and
// failed as OpCleanup), so that what prune does with one can be tested
// through faults too.
func WithFaults(b netshare.Backend, f *Faults) netshare.Backend {
	w := &faultBackend{b: b, f: f}
	if c, ok := b.(netshare.Cleaner); ok {
		return &faultCleaner{faultBackend: w, c: c}
	}
	return w
}

// faultCleaner is a faultBackend whose backend is a Cleaner.
type faultCleaner struct {
	*faultBackend
	c netshare.Cleaner
}

func (w *faultCleaner) Cleanup(ctx context.Context, olderThan time.Duration) (int, error) {
	fault := w.f.next(OpCleanup, "")
	if err := before(fault, OpCleanup, ""); err != nil {
		return 0, err
	}
	n, err := w.c.Cleanup(ctx, olderThan)
	return n, after(fault, OpCleanup, "", err)
}

type faultBackend struct {
	b netshare.Backend
	f *Faults
}

// before returns the error of a fault that fails the call before it
// reaches the backend.
func before(fault *Fault, op Op, name string) error {
	if fault != nil && (fault.Kind == Transient || fault.Kind == PermanentFault) {
		return injected(op, name, fault.Kind)
	}
	return nil
}

// after turns a successful call into a lost reply when the fault says so.
func after(fault *Fault, op Op, name string, err error) error {
	if err == nil && fault != nil && fault.Kind == LostReply {
		return injected(op, name, Transient)
	}
	return err
}

func (w *faultBackend) Save(ctx context.Context, name string, size int64, r io.ReadSeeker) error {
	fault := w.f.next(OpSave, name)
	if err := before(fault, OpSave, name); err != nil {
		return err
	}
	if fault != nil && fault.Kind == PartialSave {
		r = &failingReader{r: r, left: fault.After, err: injected(OpSave, name, Transient)}
	}
	return after(fault, OpSave, name, w.b.Save(ctx, name, size, r))
}

// failingReader passes left bytes of r, then fails with err.
type failingReader struct {
	r    io.ReadSeeker
	left int64
	err  error
}

func (fr *failingReader) Read(p []byte) (int, error) {
	if fr.left <= 0 {
		return 0, fr.err
	}
	if int64(len(p)) > fr.left {
		p = p[:fr.left]
	}
	n, err := fr.r.Read(p)
	fr.left -= int64(n)
	return n, err
}

func (fr *failingReader) Seek(off int64, whence int) (int64, error) {
	return 0, fmt.Errorf("seek on a reader that fails midway: %w", fr.err)
}

func (w *faultBackend) Load(ctx context.Context, name string, off, length int64) ([]byte, error) {
	fault := w.f.next(OpLoad, name)
	if err := before(fault, OpLoad, name); err != nil {
		return nil, err
	}
	data, err := w.b.Load(ctx, name, off, length)
	if err == nil && fault != nil && fault.Kind == Corrupt && len(data) > 0 {
		at := fault.At
		if at < 0 || at >= len(data) {
			at = len(data) / 2
		}
		data[at] ^= 0xff
	}
	if err = after(fault, OpLoad, name, err); err != nil {
		return nil, err
	}
	return data, nil
}

func (w *faultBackend) Stat(ctx context.Context, name string) (netshare.FileInfo, error) {
	fault := w.f.next(OpStat, name)
	if err := before(fault, OpStat, name); err != nil {
		return netshare.FileInfo{}, err
	}
	fi, err := w.b.Stat(ctx, name)
	if err = after(fault, OpStat, name, err); err != nil {
		return netshare.FileInfo{}, err
	}
	return fi, nil
}

func (w *faultBackend) List(ctx context.Context, prefix string, fn func(netshare.FileInfo) error) error {
	fault := w.f.next(OpList, prefix)
	if err := before(fault, OpList, prefix); err != nil {
		return err
	}
	return after(fault, OpList, prefix, w.b.List(ctx, prefix, fn))
}

func (w *faultBackend) Remove(ctx context.Context, name string) error {
	fault := w.f.next(OpRemove, name)
	if err := before(fault, OpRemove, name); err != nil {
		return err
	}
	return after(fault, OpRemove, name, w.b.Remove(ctx, name))
}

func (w *faultBackend) Properties() netshare.Properties { return w.b.Properties() }

func (w *faultBackend) Close() error { return w.b.Close() }
