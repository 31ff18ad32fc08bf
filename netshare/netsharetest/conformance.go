// Package netsharetest holds what the tests of netshare backends and of
// the code above them share: RunConformance, the suite every backend must
// pass, and WithFaults, a wrapper that injects failures (transient,
// permanent, lost replies, saves killed midway, corrupted loads) and counts
// calls.
package netsharetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"

	"github.com/lifeboat/lifeboat/netshare"
)

// RunConformance runs the backend contract's subtests. open must return a
// new, empty backend for each call; RunConformance closes it when the
// subtest ends.
func RunConformance(t *testing.T, open func(t *testing.T) netshare.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b netshare.Backend)
	}{
		{"Properties", testProperties},
		{"SaveLoad", testSaveLoad},
		{"Ranges", testRanges},
		{"Overwrite", testOverwrite},
		{"Stat", testStat},
		{"List", testList},
		{"ListCallbackError", testListCallbackError},
		{"Remove", testRemove},
		{"Missing", testMissing},
		{"Empty", testEmpty},
		{"Large", testLarge},
		{"Concurrent", testConcurrent},
		{"ConcurrentSameName", testConcurrentSameName},
		{"Names", testNames},
		{"InvalidNames", testInvalidNames},
		{"FailedReader", testFailedReader},
		{"WrongSize", testWrongSize},
		{"Cancelled", testCancelled},
		{"CancelledDuringSave", testCancelledDuringSave},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := open(t)
			t.Cleanup(func() {
				if err := b.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, b)
		})
	}
}

// randomBytes returns n bytes from a generator seeded by seed, so a failing
// run can be repeated.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			buf[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		buf[i] = byte(r.Uint32())
	}
	return buf
}

func save(t *testing.T, b netshare.Backend, name string, data []byte) {
	t.Helper()
	if err := b.Save(context.Background(), name, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("Save(%q, %d bytes): %v", name, len(data), err)
	}
}

func load(t *testing.T, b netshare.Backend, name string, off, length int64) []byte {
	t.Helper()
	got, err := b.Load(context.Background(), name, off, length)
	if err != nil {
		t.Fatalf("Load(%q, %d, %d): %v", name, off, length, err)
	}
	return got
}

func checkEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: got %d bytes, want %d; first difference at byte %d", what, len(got), len(want), i)
	}
}

// listAll returns the name and size of every object under prefix, failing
// the test when a name is reported twice.
func listAll(t *testing.T, b netshare.Backend, prefix string) map[string]int64 {
	t.Helper()
	got := make(map[string]int64)
	err := b.List(context.Background(), prefix, func(fi netshare.FileInfo) error {
		if _, dup := got[fi.Name]; dup {
			return fmt.Errorf("%q listed twice", fi.Name)
		}
		got[fi.Name] = fi.Size
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return got
}

func checkSet(t *testing.T, what string, got, want map[string]int64) {
	t.Helper()
	var missing, extra, wrong []string
	for n, s := range want {
		g, ok := got[n]
		switch {
		case !ok:
			missing = append(missing, n)
		case g != s:
			wrong = append(wrong, fmt.Sprintf("%s: size %d, want %d", n, g, s))
		}
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			extra = append(extra, n)
		}
	}
	if len(missing)+len(extra)+len(wrong) > 0 {
		sort.Strings(missing)
		sort.Strings(extra)
		t.Fatalf("%s: %d listed, want %d; missing %q, unexpected %q, wrong sizes %q",
			what, len(got), len(want), first(missing), first(extra), first(wrong))
	}
}

func first(s []string) []string {
	if len(s) > 5 {
		return append(s[:5:5], fmt.Sprintf("... %d more", len(s)-5))
	}
	return s
}

func checkNotExist(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s: got error %v, want one satisfying errors.Is(err, fs.ErrNotExist)", what, err)
	}
	if !netshare.IsPermanent(err) {
		t.Fatalf("%s: not-exist error %v is not permanent", what, err)
	}
}

func testProperties(t *testing.T, b netshare.Backend) {
	p := b.Properties()
	if p.Name == "" || p.Location == "" {
		t.Fatalf("Properties() = %+v: Name and Location must be set", p)
	}
	if p.MaxConnections < 1 {
		t.Fatalf("Properties().MaxConnections = %d, want at least 1", p.MaxConnections)
	}
}

func testSaveLoad(t *testing.T, b netshare.Backend) {
	data := randomBytes(1, 4099)
	save(t, b, "config", data)
	checkEqual(t, "Load whole", load(t, b, "config", 0, -1), data)
	checkEqual(t, "Load whole again (idempotent)", load(t, b, "config", 0, -1), data)
	checkEqual(t, "Load with explicit length", load(t, b, "config", 0, int64(len(data))), data)
}

func testRanges(t *testing.T, b netshare.Backend) {
	data := randomBytes(2, 10000)
	n := int64(len(data))
	save(t, b, "data/00/range", data)
	for _, r := range []struct{ off, length int64 }{
		{0, 1}, {1, 100}, {4096, 4096}, {n - 1, 1}, {n - 1, -1}, {5000, -1}, {n, 0}, {n, -1}, {0, 0}, {123, 0},
	} {
		want := data[r.off:]
		if r.length >= 0 {
			want = data[r.off : r.off+r.length]
		}
		got := load(t, b, "data/00/range", r.off, r.length)
		checkEqual(t, fmt.Sprintf("Load(off %d, length %d)", r.off, r.length), got, want)
	}
	for _, r := range []struct{ off, length int64 }{
		{n, 1}, {n + 1, 0}, {n + 1, -1}, {0, n + 1}, {n - 10, 11}, {-1, 1}, {-1, -1}, {1 << 62, 1 << 62},
	} {
		got, err := b.Load(context.Background(), "data/00/range", r.off, r.length)
		if err == nil {
			t.Fatalf("Load(off %d, length %d) of %d bytes: got %d bytes and no error, want an error", r.off, r.length, n, len(got))
		}
		if !errors.Is(err, netshare.ErrOutOfRange) || !netshare.IsPermanent(err) {
			t.Fatalf("Load(off %d, length %d): error %v does not wrap ErrOutOfRange or is not permanent", r.off, r.length, err)
		}
	}
}

func testOverwrite(t *testing.T, b netshare.Backend) {
	a, c := randomBytes(3, 5000), randomBytes(4, 1234)
	save(t, b, "index/aa", a)
	save(t, b, "index/aa", c)
	checkEqual(t, "Load after overwrite with shorter", load(t, b, "index/aa", 0, -1), c)
	d := randomBytes(5, 9000)
	save(t, b, "index/aa", d)
	checkEqual(t, "Load after overwrite with longer", load(t, b, "index/aa", 0, -1), d)
	checkSet(t, "List after overwrites", listAll(t, b, ""), map[string]int64{"index/aa": int64(len(d))})
}

func testStat(t *testing.T, b netshare.Backend) {
	sizes := map[string]int64{"a": 0, "b/c": 1, "b/d": 511, "b/e/f": 4096, "g": 65537}
	for name, size := range sizes {
		save(t, b, name, randomBytes(uint64(size), int(size)))
	}
	for name, size := range sizes {
		fi, err := b.Stat(context.Background(), name)
		if err != nil {
			t.Fatalf("Stat(%q): %v", name, err)
		}
		if fi.Name != name || fi.Size != size {
			t.Fatalf("Stat(%q) = %+v, want name %q size %d", name, fi, name, size)
		}
	}
	// A directory that only holds objects is not itself an object.
	_, err := b.Stat(context.Background(), "b")
	checkNotExist(t, `Stat("b") of a name that only prefixes objects`, err)
}

func testList(t *testing.T, b netshare.Backend) {
	all := make(map[string]int64)
	data := make(map[string]int64)
	for i := range 300 {
		id := fmt.Sprintf("%064x", uint64(i)*0x9e3779b97f4a7c15)
		name := "data/" + id[:2] + "/" + id
		size := int64(i % 7)
		save(t, b, name, randomBytes(uint64(i), int(size)))
		all[name], data[name] = size, size
	}
	others := map[string]int64{
		"config": 10, "keys/k1": 3, "index/i1": 5, "index/i2": 6, "snapshots/s1": 7,
		"locks/l1": 0, "datafile": 2, "data0/x": 1, "a/b/c/d/e": 4,
	}
	for name, size := range others {
		save(t, b, name, randomBytes(7, int(size)))
		all[name] = size
	}
	checkSet(t, `List("")`, listAll(t, b, ""), all)
	checkSet(t, `List("data/")`, listAll(t, b, "data/"), data)

	// A plain string prefix: partial elements match.
	sub := make(map[string]int64)
	for name, size := range all {
		if len(name) >= 6 && name[:6] == "data/0" {
			sub[name] = size
		}
	}
	checkSet(t, `List("data/0")`, listAll(t, b, "data/0"), sub)
	checkSet(t, `List("index")`, listAll(t, b, "index"), map[string]int64{"index/i1": 5, "index/i2": 6})
	checkSet(t, `List("data")`, listAll(t, b, "data"), func() map[string]int64 {
		m := map[string]int64{"datafile": 2, "data0/x": 1}
		for n, s := range data {
			m[n] = s
		}
		return m
	}())
	checkSet(t, `List("a/b/c/")`, listAll(t, b, "a/b/c/"), map[string]int64{"a/b/c/d/e": 4})
	checkSet(t, `List("config")`, listAll(t, b, "config"), map[string]int64{"config": 10})
	checkSet(t, `List("nothing/")`, listAll(t, b, "nothing/"), map[string]int64{})
	checkSet(t, `List("config/x")`, listAll(t, b, "config/x"), map[string]int64{})
}

func testListCallbackError(t *testing.T, b netshare.Backend) {
	for i := range 10 {
		save(t, b, fmt.Sprintf("packs/p%d", i), []byte{byte(i)})
	}
	stop := errors.New("stop here")
	calls := 0
	err := b.List(context.Background(), "packs/", func(netshare.FileInfo) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("List with a callback failing on the 3rd object: got %v, want the callback's error", err)
	}
	if calls != 3 {
		t.Fatalf("List went on after its callback failed: %d calls, want 3", calls)
	}
}

func testRemove(t *testing.T, b netshare.Backend) {
	save(t, b, "locks/a", []byte("a"))
	save(t, b, "locks/b", []byte("bb"))
	if err := b.Remove(context.Background(), "locks/a"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	_, err := b.Load(context.Background(), "locks/a", 0, -1)
	checkNotExist(t, "Load after Remove", err)
	_, err = b.Stat(context.Background(), "locks/a")
	checkNotExist(t, "Stat after Remove", err)
	checkNotExist(t, "second Remove", b.Remove(context.Background(), "locks/a"))
	checkSet(t, "List after Remove", listAll(t, b, ""), map[string]int64{"locks/b": 2})
	// A removed name can be saved again.
	save(t, b, "locks/a", []byte("again"))
	checkEqual(t, "Load after Save of a removed name", load(t, b, "locks/a", 0, -1), []byte("again"))
}

func testMissing(t *testing.T, b netshare.Backend) {
	save(t, b, "present/x", []byte("x"))
	for _, name := range []string{"never", "present/y", "absent/dir/z", "present/x/below"} {
		_, err := b.Load(context.Background(), name, 0, -1)
		checkNotExist(t, fmt.Sprintf("Load(%q)", name), err)
		_, err = b.Load(context.Background(), name, 0, 0)
		checkNotExist(t, fmt.Sprintf("Load(%q, 0, 0)", name), err)
		_, err = b.Stat(context.Background(), name)
		checkNotExist(t, fmt.Sprintf("Stat(%q)", name), err)
		checkNotExist(t, fmt.Sprintf("Remove(%q)", name), b.Remove(context.Background(), name))
	}
}

func testEmpty(t *testing.T, b netshare.Backend) {
	save(t, b, "locks/empty", nil)
	if got := load(t, b, "locks/empty", 0, -1); len(got) != 0 {
		t.Fatalf("Load of an empty object: got %d bytes", len(got))
	}
	if got := load(t, b, "locks/empty", 0, 0); len(got) != 0 {
		t.Fatalf("Load(0, 0) of an empty object: got %d bytes", len(got))
	}
	if _, err := b.Load(context.Background(), "locks/empty", 0, 1); !errors.Is(err, netshare.ErrOutOfRange) {
		t.Fatalf("Load(0, 1) of an empty object: got %v, want ErrOutOfRange", err)
	}
	fi, err := b.Stat(context.Background(), "locks/empty")
	if err != nil || fi.Size != 0 {
		t.Fatalf("Stat of an empty object = %+v, %v; want size 0", fi, err)
	}
	checkSet(t, "List with an empty object", listAll(t, b, "locks/"), map[string]int64{"locks/empty": 0})
}

func testLarge(t *testing.T, b netshare.Backend) {
	const size = 20 << 20
	data := randomBytes(6, size)
	save(t, b, "data/ff/large", data)
	checkEqual(t, "Load of a 20 MiB object", load(t, b, "data/ff/large", 0, -1), data)
	off := int64(size - 3<<20 - 17)
	checkEqual(t, "ranged Load near the end", load(t, b, "data/ff/large", off, 3<<20), data[off:off+3<<20])
	fi, err := b.Stat(context.Background(), "data/ff/large")
	if err != nil || fi.Size != size {
		t.Fatalf("Stat of a 20 MiB object = %+v, %v", fi, err)
	}
}

func testConcurrent(t *testing.T, b netshare.Backend) {
	const workers, perWorker = 8, 16
	objects := func(w, i int) (string, []byte) {
		seed := uint64(w*1000 + i)
		return fmt.Sprintf("data/%02x/w%d-%d", w*perWorker+i, w, i), randomBytes(seed, 1000+int(seed%5000))
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			ctx := context.Background()
			for i := range perWorker {
				name, data := objects(w, i)
				if err := b.Save(ctx, name, int64(len(data)), bytes.NewReader(data)); err != nil {
					errs <- fmt.Errorf("worker %d: Save(%q): %w", w, name, err)
					return
				}
				// Read back this object and one of another worker's, which
				// may or may not exist yet but is never partial.
				got, err := b.Load(ctx, name, 0, -1)
				if err != nil || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("worker %d: Load(%q) after Save: %d bytes, %v", w, name, len(got), err)
					return
				}
				other, odata := objects((w+1)%workers, i)
				got, err = b.Load(ctx, other, 0, -1)
				if err == nil && !bytes.Equal(got, odata) {
					errs <- fmt.Errorf("worker %d: Load(%q) returned %d bytes, not the object saved", w, other, len(got))
					return
				}
				if err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs <- fmt.Errorf("worker %d: Load(%q): %w", w, other, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	want := make(map[string]int64)
	for w := range workers {
		for i := range perWorker {
			name, data := objects(w, i)
			want[name] = int64(len(data))
		}
	}
	checkSet(t, "List after concurrent saves", listAll(t, b, ""), want)
}

func testConcurrentSameName(t *testing.T, b netshare.Backend) {
	// Eight writers replace one name while readers load it: every load
	// sees one whole version, never a mix or a partial one.
	const workers, rounds = 8, 8
	versions := make([][]byte, workers)
	for w := range versions {
		versions[w] = randomBytes(uint64(100+w), 200000)
	}
	save(t, b, "snapshots/same", versions[0])
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	for w := range workers {
		wg.Go(func() {
			for range rounds {
				v := versions[w]
				if err := b.Save(context.Background(), "snapshots/same", int64(len(v)), bytes.NewReader(v)); err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
			}
		})
		wg.Go(func() {
			for range rounds {
				got, err := b.Load(context.Background(), "snapshots/same", 0, -1)
				if err != nil {
					errs <- fmt.Errorf("reader %d: %w", w, err)
					return
				}
				if !isVersion(got, versions) {
					errs <- fmt.Errorf("reader %d: loaded %d bytes that are none of the saved versions", w, len(got))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if !isVersion(load(t, b, "snapshots/same", 0, -1), versions) {
		t.Fatal("final object is none of the saved versions")
	}
	checkSet(t, "List after concurrent replacements", listAll(t, b, ""), map[string]int64{"snapshots/same": 200000})
}

func isVersion(got []byte, versions [][]byte) bool {
	for _, v := range versions {
		if bytes.Equal(got, v) {
			return true
		}
	}
	return false
}

func testNames(t *testing.T, b netshare.Backend) {
	names := []string{
		"config",
		"keys/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"data/ab/ab0123456789abcdef-pack.zst",
		"index/0f.1-2_3",
		"locks/host-name.example_1234",
		"snapshots/2024-01-02T03-04-05Z",
		"a/b/c/d/e/f/g/h",
		"UPPER/lower.MiXeD",
		"-leading-dash",
		".hidden",
		"x..y",
	}
	want := make(map[string]int64)
	for i, name := range names {
		data := randomBytes(uint64(i+50), 10+i)
		save(t, b, name, data)
		checkEqual(t, fmt.Sprintf("Load(%q)", name), load(t, b, name, 0, -1), data)
		want[name] = int64(len(data))
	}
	checkSet(t, "List of names in the repository's character set", listAll(t, b, ""), want)
}

// InvalidNames are names every backend must refuse.
var InvalidNames = []string{
	"", "/", "/abs", "/etc/passwd", "..", "../x", "a/../b", "a/..", ".", "./a", "a/.", "a/./b",
	"a//b", "a/", "//a", "a\\b", "..\\x", "a b", "a\x00b", "a\nb", "caf\u00e9", "a:b", "a*b", "a?b",
	"very/" + string(bytes.Repeat([]byte("l"), 300)),
}

func testInvalidNames(t *testing.T, b netshare.Backend) {
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, netshare.ErrInvalidName) || !netshare.IsPermanent(err) {
			t.Fatalf("%s: got %v, want a permanent error wrapping ErrInvalidName", what, err)
		}
	}
	for _, name := range InvalidNames {
		check(fmt.Sprintf("Save(%q)", name), b.Save(ctx, name, 1, bytes.NewReader([]byte{1})))
		_, err := b.Load(ctx, name, 0, -1)
		check(fmt.Sprintf("Load(%q)", name), err)
		_, err = b.Stat(ctx, name)
		check(fmt.Sprintf("Stat(%q)", name), err)
		check(fmt.Sprintf("Remove(%q)", name), b.Remove(ctx, name))
	}
	for _, prefix := range []string{"/", "/abs", "..", "../", "a/../", "a//", "a\\", "./"} {
		check(fmt.Sprintf("List(%q)", prefix), b.List(ctx, prefix, func(netshare.FileInfo) error { return nil }))
	}
	checkSet(t, "List after refused saves", listAll(t, b, ""), map[string]int64{})
}

// FailAfter returns a reader of data that fails with err once it has given
// n bytes: a source that breaks midway, for Save. It seeks within data
// (from the start, or to where it is).
func FailAfter(data []byte, n int, err error) io.ReadSeeker {
	return &failAfter{data: data, n: n, err: err}
}

// failAfter reads n bytes of data, then fails with err.
type failAfter struct {
	data []byte
	n    int
	pos  int
	err  error
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.pos >= f.n {
		return 0, f.err
	}
	k := copy(p, f.data[f.pos:f.n])
	f.pos += k
	return k, nil
}

func (f *failAfter) Seek(off int64, whence int) (int64, error) {
	if whence != io.SeekStart && !(whence == io.SeekCurrent && off == 0) {
		return 0, errors.New("failAfter: unsupported seek")
	}
	if whence == io.SeekStart {
		f.pos = int(off)
	}
	return int64(f.pos), nil
}

func testFailedReader(t *testing.T, b netshare.Backend) {
	// A writer killed midway: the reader fails after part of the object.
	data := randomBytes(8, 3<<20)
	boom := errors.New("reader broke")
	for _, n := range []int{0, 1, 1 << 20, len(data) - 1} {
		err := b.Save(context.Background(), "data/aa/partial", int64(len(data)), FailAfter(data, n, boom))
		if !errors.Is(err, boom) {
			t.Fatalf("Save with a reader failing after %d bytes: got %v, want the reader's error", n, err)
		}
		_, err = b.Stat(context.Background(), "data/aa/partial")
		checkNotExist(t, fmt.Sprintf("Stat after a Save failing after %d bytes", n), err)
	}
	checkSet(t, "List after failed saves", listAll(t, b, ""), map[string]int64{})

	// A failed replacement keeps the old object whole.
	old := randomBytes(9, 5000)
	save(t, b, "index/keep", old)
	err := b.Save(context.Background(), "index/keep", int64(len(data)), FailAfter(data, 100000, boom))
	if !errors.Is(err, boom) {
		t.Fatalf("replacing Save with a failing reader: got %v, want the reader's error", err)
	}
	checkEqual(t, "Load after a failed replacement", load(t, b, "index/keep", 0, -1), old)
	checkSet(t, "List after a failed replacement", listAll(t, b, ""), map[string]int64{"index/keep": 5000})
}

func testWrongSize(t *testing.T, b netshare.Backend) {
	data := randomBytes(10, 1000)
	if err := b.Save(context.Background(), "data/bb/short", 1001, bytes.NewReader(data)); err == nil {
		t.Fatal("Save of 1000 bytes announced as 1001 succeeded")
	}
	if err := b.Save(context.Background(), "data/bb/long", 999, bytes.NewReader(data)); err == nil {
		t.Fatal("Save of 1000 bytes announced as 999 succeeded")
	}
	checkSet(t, "List after saves of the wrong size", listAll(t, b, ""), map[string]int64{})
}

func testCancelled(t *testing.T, b netshare.Backend) {
	save(t, b, "config", []byte("config"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with a cancelled context: got %v, want context.Canceled", what, err)
		}
	}
	check("Save", b.Save(ctx, "new", 3, bytes.NewReader([]byte("new"))))
	_, err := b.Load(ctx, "config", 0, -1)
	check("Load", err)
	_, err = b.Stat(ctx, "config")
	check("Stat", err)
	check("List", b.List(ctx, "", func(netshare.FileInfo) error { return nil }))
	check("Remove", b.Remove(ctx, "config"))
	checkSet(t, "List after cancelled calls", listAll(t, b, ""), map[string]int64{"config": 6})
}

// cancelAfter cancels its context once n bytes have been read.
type cancelAfter struct {
	r      *bytes.Reader
	n      int64
	read   int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.read >= c.n {
		c.cancel()
	}
	if int64(len(p)) > 64<<10 {
		p = p[:64<<10]
	}
	k, err := c.r.Read(p)
	c.read += int64(k)
	return k, err
}

func (c *cancelAfter) Seek(off int64, whence int) (int64, error) { return c.r.Seek(off, whence) }

func testCancelledDuringSave(t *testing.T, b netshare.Backend) {
	data := randomBytes(11, 4<<20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := b.Save(ctx, "data/cc/cancelled", int64(len(data)), &cancelAfter{r: bytes.NewReader(data), n: 1 << 20, cancel: cancel})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Save cancelled midway: got %v, want context.Canceled", err)
	}
	checkSet(t, "List after a cancelled Save", listAll(t, b, ""), map[string]int64{})
}
