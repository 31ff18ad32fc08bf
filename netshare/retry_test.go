package netshare_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/netshare"
	"github.com/lifeboat/lifeboat/netshare/local"
	nt "github.com/lifeboat/lifeboat/netshare/netsharetest"
)

type report struct {
	op, name string
	attempt  int
	err      error
}

// setup returns a local backend wrapped in faults and then in retries, the
// faults, and the retries reported so far.
func setup(t *testing.T, attempts int) (netshare.Backend, *nt.Faults, *[]report) {
	t.Helper()
	b, err := local.New(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	faults := &nt.Faults{}
	var reports []report
	r := netshare.WithRetry(nt.WithFaults(b, faults), netshare.RetryPolicy{
		Attempts: attempts, Initial: time.Millisecond, Max: 2 * time.Millisecond,
		Report: func(op, name string, attempt int, err error) {
			reports = append(reports, report{op, name, attempt, err})
		},
	})
	return r, faults, &reports
}

func TestRetryTransient(t *testing.T) {
	ctx := context.Background()
	b, faults, reports := setup(t, 5)
	data := []byte("the object")
	faults.Add(nt.Fault{Op: nt.OpSave, Call: 1, Kind: nt.Transient})
	faults.Add(nt.Fault{Op: nt.OpSave, Call: 2, Kind: nt.Transient})
	if err := b.Save(ctx, "config", int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("Save with two transient failures: %v", err)
	}
	if got := faults.Calls(nt.OpSave); got != 3 {
		t.Fatalf("Save attempts = %d, want 3", got)
	}
	if len(*reports) != 2 || (*reports)[0].attempt != 1 || (*reports)[1].attempt != 2 ||
		(*reports)[0].op != "save" || (*reports)[0].name != "config" || !errors.Is((*reports)[1].err, nt.ErrInjected) {
		t.Fatalf("reported retries = %+v, want save attempts 1 and 2", *reports)
	}
	for _, op := range []nt.Op{nt.OpLoad, nt.OpStat, nt.OpList, nt.OpRemove} {
		faults.Add(nt.Fault{Op: op, Call: 1, Kind: nt.Transient})
	}
	got, err := b.Load(ctx, "config", 0, -1)
	if err != nil || string(got) != string(data) {
		t.Fatalf("Load after a transient failure = %q, %v", got, err)
	}
	fi, err := b.Stat(ctx, "config")
	if err != nil || fi.Size != int64(len(data)) {
		t.Fatalf("Stat after a transient failure = %+v, %v", fi, err)
	}
	n := 0
	if err := b.List(ctx, "", func(netshare.FileInfo) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("List after a transient failure: %d objects, %v", n, err)
	}
	if err := b.Remove(ctx, "config"); err != nil {
		t.Fatalf("Remove after a transient failure: %v", err)
	}
	for _, op := range []nt.Op{nt.OpLoad, nt.OpStat, nt.OpList, nt.OpRemove} {
		if c, i := faults.Calls(op), faults.Injected(op); c != 2 || i != 1 {
			t.Errorf("%s: %d calls, %d faults; want 2 and 1", op, c, i)
		}
	}
}

func TestRetryPermanentNotRetried(t *testing.T) {
	ctx := context.Background()
	b, faults, reports := setup(t, 5)
	faults.Add(nt.Fault{Op: nt.OpSave, Call: 1, Kind: nt.PermanentFault})
	err := b.Save(ctx, "config", 1, bytes.NewReader([]byte{1}))
	if !errors.Is(err, nt.ErrInjected) || !netshare.IsPermanent(err) {
		t.Fatalf("Save with a permanent failure: %v", err)
	}
	// Missing objects and invalid names are permanent too.
	_, err = b.Load(ctx, "missing", 0, -1)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing object: %v", err)
	}
	_, err = b.Stat(ctx, "../x")
	if !errors.Is(err, netshare.ErrInvalidName) {
		t.Fatalf("Stat of an invalid name: %v", err)
	}
	if c := faults.Calls(nt.OpSave) + faults.Calls(nt.OpLoad) + faults.Calls(nt.OpStat); c != 3 {
		t.Fatalf("%d calls reached the backend, want 3 (no retries)", c)
	}
	if len(*reports) != 0 {
		t.Fatalf("permanent errors were retried: %+v", *reports)
	}
}

func TestRetryGivesUp(t *testing.T) {
	b, faults, reports := setup(t, 4)
	faults.Add(nt.Fault{Op: nt.OpLoad, Kind: nt.Transient}) // every call
	_, err := b.Load(context.Background(), "x", 0, -1)
	if !errors.Is(err, nt.ErrInjected) {
		t.Fatalf("Load failing every time: %v", err)
	}
	if c := faults.Calls(nt.OpLoad); c != 4 {
		t.Fatalf("Load attempts = %d, want 4", c)
	}
	if len(*reports) != 3 {
		t.Fatalf("%d retries reported, want 3", len(*reports))
	}
}

// A Save killed midway and retried must store the whole object, which
// needs its reader rewound to where it stood at the call.
func TestRetrySaveRewinds(t *testing.T) {
	b, faults, _ := setup(t, 5)
	data := bytes.Repeat([]byte("0123456789abcdef"), 300000) // 4.6 MB
	faults.Add(nt.Fault{Op: nt.OpSave, Call: 1, Kind: nt.PartialSave, After: 1 << 20})
	faults.Add(nt.Fault{Op: nt.OpSave, Call: 2, Kind: nt.PartialSave, After: 3 << 20})
	faults.Add(nt.Fault{Op: nt.OpSave, Call: 3, Kind: nt.LostReply})
	// The reader starts past a header that is not part of the object.
	header := []byte("HEADER")
	r := bytes.NewReader(append(append([]byte{}, header...), data...))
	if _, err := r.Seek(int64(len(header)), 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(context.Background(), "data/00/pack", int64(len(data)), r); err != nil {
		t.Fatalf("Save with two partial attempts and a lost reply: %v", err)
	}
	if c := faults.Calls(nt.OpSave); c != 4 {
		t.Fatalf("Save attempts = %d, want 4", c)
	}
	got, err := b.Load(context.Background(), "data/00/pack", 0, -1)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Load after retried Save: %d bytes (want %d), equal %v, %v", len(got), len(data), bytes.Equal(got, data), err)
	}
}

// A Remove whose reply was lost finds the object gone on its retry: that is
// success, not "not found".
func TestRetryRemoveLostReply(t *testing.T) {
	ctx := context.Background()
	b, faults, _ := setup(t, 5)
	if err := b.Save(ctx, "locks/l", 1, bytes.NewReader([]byte{1})); err != nil {
		t.Fatal(err)
	}
	faults.Add(nt.Fault{Op: nt.OpRemove, Call: 1, Kind: nt.LostReply})
	if err := b.Remove(ctx, "locks/l"); err != nil {
		t.Fatalf("Remove with a lost reply: %v", err)
	}
	if c := faults.Calls(nt.OpRemove); c != 2 {
		t.Fatalf("Remove attempts = %d, want 2", c)
	}
	if err := b.Remove(ctx, "locks/l"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Remove of a missing object on the first attempt: %v, want not exist", err)
	}
}

// A List that fails after reporting some objects is retried without
// reporting any object twice; the callback's own error is not retried.
func TestRetryList(t *testing.T) {
	ctx := context.Background()
	b, faults, reports := setup(t, 5)
	for i := range 20 {
		if err := b.Save(ctx, fmt.Sprintf("index/%02d", i), 1, bytes.NewReader([]byte{1})); err != nil {
			t.Fatal(err)
		}
	}
	faults.Add(nt.Fault{Op: nt.OpList, Call: 1, Kind: nt.LostReply})
	seen := map[string]int{}
	if err := b.List(ctx, "index/", func(fi netshare.FileInfo) error { seen[fi.Name]++; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 20 {
		t.Fatalf("List reported %d objects, want 20", len(seen))
	}
	for n, c := range seen {
		if c != 1 {
			t.Fatalf("%s reported %d times across retries", n, c)
		}
	}
	stop := errors.New("stop")
	*reports = nil
	err := b.List(ctx, "index/", func(netshare.FileInfo) error { return stop })
	if err != stop {
		t.Fatalf("List whose callback fails: %v, want the callback's error unchanged", err)
	}
	if len(*reports) != 0 {
		t.Fatalf("the callback's error was retried: %+v", *reports)
	}
}

// Cancelling the context ends a wait between attempts at once. The delay is
// an hour: if the wait ignored ctx the test would hang until its timeout.
func TestRetryCancelStopsBackoff(t *testing.T) {
	b, err := local.New(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	faults := &nt.Faults{}
	faults.Add(nt.Fault{Op: nt.OpLoad, Kind: nt.Transient})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := netshare.WithRetry(nt.WithFaults(b, faults), netshare.RetryPolicy{
		Initial: time.Hour, Max: time.Hour,
		Report: func(string, string, int, error) { cancel() },
	})
	_, err = r.Load(ctx, "x", 0, -1)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, nt.ErrInjected) {
		t.Fatalf("Load cancelled during backoff: %v, want context.Canceled and the last error", err)
	}
	if c := faults.Calls(nt.OpLoad); c != 1 {
		t.Fatalf("Load attempts = %d, want 1", c)
	}
	// A cancelled context is not retried either.
	faults.Clear()
	_, err = r.Stat(ctx, "x")
	if !errors.Is(err, context.Canceled) || faults.Calls(nt.OpStat) != 1 {
		t.Fatalf("Stat with a cancelled context: %v after %d calls", err, faults.Calls(nt.OpStat))
	}
}

// Corrupt flips a byte of what Load returns: the repository's checksums
// must catch it, so the injector must really change the data.
func TestFaultsCorrupt(t *testing.T) {
	ctx := context.Background()
	b, faults, _ := setup(t, 2)
	data := []byte("abcdefgh")
	if err := b.Save(ctx, "data/00/c", int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	faults.Add(nt.Fault{Op: nt.OpLoad, Call: 1, Kind: nt.Corrupt, At: 2})
	faults.Add(nt.Fault{Op: nt.OpLoad, Call: 2, Prefix: "data/", Kind: nt.Corrupt, At: -1})
	got, err := b.Load(ctx, "data/00/c", 0, -1)
	if err != nil || string(got) != "ab\x9cdefgh" {
		t.Fatalf("first corrupted Load = %q, %v", got, err)
	}
	got, err = b.Load(ctx, "data/00/c", 0, -1)
	if err != nil || string(got) != "abcd\x9afgh" {
		t.Fatalf("second corrupted Load = %q, %v", got, err)
	}
	got, err = b.Load(ctx, "data/00/c", 0, -1)
	if err != nil || string(got) != string(data) {
		t.Fatalf("third Load = %q, %v; want the stored bytes", got, err)
	}
	// The stored object itself is intact.
	if faults.Injected(nt.OpLoad) != 2 {
		t.Fatalf("faults fired on %d loads, want 2", faults.Injected(nt.OpLoad))
	}
}

// Prefix restricts a fault, and Call counts only the calls it matches.
func TestFaultsPrefix(t *testing.T) {
	ctx := context.Background()
	b, err := local.New(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	faults := &nt.Faults{}
	w := nt.WithFaults(b, faults)
	faults.Add(nt.Fault{Op: nt.OpSave, Call: 2, Prefix: "snapshots/", Kind: nt.PermanentFault})
	for i, name := range []string{"data/1", "snapshots/1", "data/2", "snapshots/2", "snapshots/3"} {
		err := w.Save(ctx, name, 1, bytes.NewReader([]byte{1}))
		if wantFail := i == 3; (err != nil) != wantFail {
			t.Fatalf("Save(%q) = %v; want failure %v", name, err, wantFail)
		}
	}
	if _, err := b.Stat(ctx, "snapshots/2"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a save failed before the backend stored something: %v", err)
	}
	if c := faults.Calls(nt.OpSave); c != 5 {
		t.Fatalf("counted %d saves, want 5", c)
	}
}

// flakyCleaner is a local backend whose Cleanup, on its first calls, does
// its real work and then reports a transient failure, as a connection
// dropped after some removals would.
type flakyCleaner struct {
	*local.Backend
	fails, calls int
}

func (f *flakyCleaner) Cleanup(ctx context.Context, olderThan time.Duration) (int, error) {
	f.calls++
	n, err := f.Backend.Cleanup(ctx, olderThan)
	if err == nil && f.calls <= f.fails {
		err = fmt.Errorf("cleanup call %d: %w", f.calls, nt.ErrInjected)
	}
	return n, err
}

// writeTemp leaves a temporary file of an unfinished save under dir, last
// written age ago, and returns its path.
func writeTemp(t *testing.T, dir, name string, age time.Duration) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("half a pack"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-age)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	return p
}

// WithRetry passes Cleanup on, retried, when the backend has it, and does
// not pretend to have it when the backend does not.
func TestRetryCleanup(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	lb, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	if _, ok := netshare.WithRetry(struct{ netshare.Backend }{lb}, netshare.RetryPolicy{}).(netshare.Cleaner); ok {
		t.Fatal("WithRetry of a backend without Cleanup is a Cleaner")
	}

	stale1 := writeTemp(t, dir, "data/ab/p1.tmp-0123456789abcdef", 48*time.Hour)
	stale2 := writeTemp(t, dir, "index/i.tmp-fedcba9876543210", 48*time.Hour)
	young := writeTemp(t, dir, "data/cd/p2.tmp-00112233445566aa", time.Minute)
	obj := []byte("an object")
	if err := lb.Save(ctx, "data/ab/p1", int64(len(obj)), bytes.NewReader(obj)); err != nil {
		t.Fatal(err)
	}
	var reports []report
	fc := &flakyCleaner{Backend: lb, fails: 1}
	rb := netshare.WithRetry(fc, netshare.RetryPolicy{
		Attempts: 3, Initial: time.Millisecond, Max: 2 * time.Millisecond,
		Report: func(op, name string, attempt int, err error) {
			reports = append(reports, report{op, name, attempt, err})
		},
	})
	c, ok := rb.(netshare.Cleaner)
	if !ok {
		t.Fatal("WithRetry of a Cleaner is not a Cleaner")
	}
	n, err := c.Cleanup(ctx, 24*time.Hour)
	if err != nil || n != 2 {
		t.Fatalf("Cleanup = %d, %v; want 2 removed over two attempts", n, err)
	}
	if fc.calls != 2 || len(reports) != 1 || reports[0].op != "cleanup" || !errors.Is(reports[0].err, nt.ErrInjected) {
		t.Fatalf("%d calls, reports %+v; want one retried cleanup", fc.calls, reports)
	}
	for _, p := range []string{stale1, stale2} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stale temporary file %s: %v, want removed", p, err)
		}
	}
	if _, err := os.Stat(young); err != nil {
		t.Errorf("young temporary file: %v, want kept", err)
	}
	if got, err := rb.Load(ctx, "data/ab/p1", 0, -1); err != nil || !bytes.Equal(got, obj) {
		t.Errorf("object beside a removed temporary file: %q, %v", got, err)
	}

	// A permanent failure is not retried.
	perm := &permanentCleaner{Backend: lb}
	if _, err := netshare.WithRetry(perm, netshare.RetryPolicy{Attempts: 3, Initial: time.Millisecond}).(netshare.Cleaner).Cleanup(ctx, 0); !netshare.IsPermanent(err) || perm.calls != 1 {
		t.Fatalf("permanent Cleanup failure: %v after %d calls, want it returned after 1", err, perm.calls)
	}
}

// permanentCleaner's Cleanup always fails permanently.
type permanentCleaner struct {
	netshare.Backend
	calls int
}

func (p *permanentCleaner) Cleanup(context.Context, time.Duration) (int, error) {
	p.calls++
	return 0, netshare.Permanent(fmt.Errorf("clean up: %w", fs.ErrPermission))
}
