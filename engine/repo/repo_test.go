package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/netshare"
	"github.com/lifeboat/lifeboat/netshare/local"
)

// newBackend returns a local backend in a fresh directory.
func newBackend(t testing.TB) (netshare.Backend, string) {
	t.Helper()
	dir := t.TempDir()
	be, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be, dir
}

// initRepo makes an unencrypted repository on a new local backend and
// returns it, the backend and its directory.
func initRepo(tb testing.TB) (*Repo, netshare.Backend, string) {
	tb.Helper()
	be, dir := newBackend(tb)
	r, err := Init(context.Background(), be, InitOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return r, be, dir
}

// testData returns n bytes that look like disk content: runs of text,
// random bytes and zeros, so some chunks compress and some do not.
func testData(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, 0, n)
	for len(b) < n {
		switch rng.IntN(3) {
		case 0:
			for i := 0; i < 200 && len(b) < n; i++ {
				b = fmt.Appendf(b, "line %d of seed %d: the quick brown fox\n", rng.IntN(1000), seed)
			}
		case 1:
			k := min(n-len(b), 1+rng.IntN(20000))
			for range k {
				b = append(b, byte(rng.Uint32()))
			}
		case 2:
			b = append(b, make([]byte, min(n-len(b), rng.IntN(30000)))...)
		}
	}
	return b[:n]
}

// dirBytes sums the sizes of the files under dir/sub.
func dirBytes(t testing.TB, dir, sub string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(filepath.Join(dir, sub), func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !d.IsDir() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// backupStream chunks data into a stream the way the backup layer will:
// fixed-size chunks, all-zero chunks absent.
func backupStream(ctx context.Context, t *testing.T, r *Repo, w *Writer, name string, data []byte, cs int) Stream {
	t.Helper()
	var ids []ChunkID
	for off := 0; off < len(data); off += cs {
		c := data[off:min(off+cs, len(data))]
		if isZero(c) {
			ids = append(ids, ChunkID{})
			continue
		}
		id := r.Hash(c)
		if _, err := w.SaveChunk(ctx, id, c); err != nil {
			t.Fatalf("SaveChunk: %v", err)
		}
		ids = append(ids, id)
	}
	ref, err := saveList(ctx, w, ids)
	if err != nil {
		t.Fatalf("save the list: %v", err)
	}
	return Stream{Name: name, Size: int64(len(data)), ChunkSize: cs, Chunks: ref}
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func readAll(t *testing.T, r *Repo, s Stream) []byte {
	t.Helper()
	sr, err := r.StreamReader(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.NewSectionReader(sr, 0, s.Size))
	if err != nil {
		t.Fatalf("read stream %s: %v", s.Name, err)
	}
	return got
}

func TestRoundTrip(t *testing.T) {
	for _, pw := range [][]byte{nil, []byte("correct horse")} {
		t.Run(fmt.Sprintf("encrypted=%v", pw != nil), func(t *testing.T) {
			ctx := context.Background()
			be, _ := newBackend(t)
			r, err := Init(ctx, be, InitOptions{Password: pw, ChunkSize: 64 << 10})
			if err != nil {
				t.Fatal(err)
			}
			if c := r.Config(); c.Encrypted != (pw != nil) || c.ChunkSize != 64<<10 || c.Version != Version || len(c.ID) != 64 {
				t.Fatalf("config %+v", c)
			}
			data := testData(1, 3<<20+12345)
			copy(data[1<<20:], make([]byte, 256<<10)) // whole zero chunks
			w := r.NewWriter(WriterOptions{PackSize: 256 << 10, Compression: CompressBetter, GroupSize: -1})
			s := backupStream(ctx, t, r, w, "disk", data, 64<<10)
			st, err := w.Flush(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Packs < 3 || st.ChunksNew == 0 {
				t.Fatalf("stats %+v: want several packs", st)
			}
			meta := json.RawMessage(`{"disk":"test"}`)
			id, err := r.SaveSnapshot(ctx, &Snapshot{Time: time.Now(), Host: "h", Tags: []string{"a"}, Streams: []Stream{s}, Meta: meta})
			if err != nil {
				t.Fatal(err)
			}

			r2, err := Open(ctx, be, pw)
			if err != nil {
				t.Fatal(err)
			}
			snap, err := r2.LoadSnapshot(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if string(snap.Meta) != string(meta) || snap.Host != "h" || len(snap.Streams) != 1 || snap.ID != id {
				t.Fatalf("snapshot %+v", snap)
			}
			if got := readAll(t, r2, snap.Streams[0]); !bytes.Equal(got, data) {
				t.Fatal("stream bytes differ after reopening")
			}
			ids, err := r2.LoadList(ctx, snap.Streams[0].Chunks)
			if err != nil {
				t.Fatal(err)
			}
			for i, cid := range ids {
				want := data[i*(64<<10) : min((i+1)*(64<<10), len(data))]
				if cid.IsZero() {
					if !isZero(want) {
						t.Fatalf("chunk %d absent but not zero", i)
					}
					continue
				}
				got, err := r2.LoadChunk(ctx, cid)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("chunk %d differs", i)
				}
			}
		})
	}
}

func TestChunkIDText(t *testing.T) {
	r := &Repo{}
	id := r.Hash([]byte("x"))
	back, err := ParseChunkID(id.String())
	if err != nil || back != id {
		t.Fatalf("ParseChunkID(%s) = %v, %v", id, back, err)
	}
	if _, err := ParseChunkID("zz"); err == nil {
		t.Fatal("short id accepted")
	}
	if _, err := ParseChunkID(strings.Repeat("g", 64)); err == nil {
		t.Fatal("non-hex id accepted")
	}
}

func TestKeyedIDs(t *testing.T) {
	ctx := context.Background()
	plainBe, _ := newBackend(t)
	encBe, _ := newBackend(t)
	rp, err := Init(ctx, plainBe, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	re, err := Init(ctx, encBe, InitOptions{Password: []byte("pw")})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("same content")
	if rp.Hash(data) == re.Hash(data) {
		t.Fatal("encrypted repository uses unkeyed ids")
	}
	re2, err := Open(ctx, encBe, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if re2.Hash(data) != re.Hash(data) {
		t.Fatal("id key not restored by Open")
	}
}

func TestDedup(t *testing.T) {
	ctx := context.Background()
	r, be, dir := initRepo(t)
	chunk := testData(2, 100<<10)
	id := r.Hash(chunk)
	w := r.NewWriter(WriterOptions{GroupSize: -1})
	n1, err := w.SaveChunk(ctx, id, chunk)
	if err != nil || n1 == 0 {
		t.Fatalf("first save: %d, %v", n1, err)
	}
	n2, err := w.SaveChunk(ctx, id, chunk)
	if err != nil || n2 != 0 {
		t.Fatalf("second save in the same writer: %d, %v", n2, err)
	}
	data := testData(3, 2<<20)
	s := backupStream(ctx, t, r, w, "d", data, 64<<10)
	st, err := w.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ChunksDedup < 1 || st.Packs != 1 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := r.SaveSnapshot(ctx, &Snapshot{Time: time.Now(), Streams: []Stream{s}}); err != nil {
		t.Fatal(err)
	}
	before := dirBytes(t, dir, "data") + dirBytes(t, dir, "index")

	// A second backup of the same data through a fresh Open adds no chunk.
	r2, err := Open(ctx, be, nil)
	if err != nil {
		t.Fatal(err)
	}
	w2 := r2.NewWriter(WriterOptions{})
	s2 := backupStream(ctx, t, r2, w2, "d", data, 64<<10)
	st2, err := w2.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st2.ChunksNew != 0 || st2.BytesStored != 0 || st2.Packs != 0 {
		t.Fatalf("second writer stats %+v: want nothing new", st2)
	}
	if after := dirBytes(t, dir, "data") + dirBytes(t, dir, "index"); after != before {
		t.Fatalf("repository grew from %d to %d bytes on identical data", before, after)
	}
	if s2.Chunks.Parts[0] != s.Chunks.Parts[0] {
		t.Fatal("identical chunk lists got different ids")
	}

	// Concurrent saves of the same content store it once.
	w3 := r2.NewWriter(WriterOptions{GroupSize: -1})
	fresh := testData(4, 64<<10)
	fid := r2.Hash(fresh)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := w3.SaveChunk(ctx, fid, fresh)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			total += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	st3, err := w3.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st3.ChunksNew != 1 || st3.ChunksDedup != 7 || total != st3.BytesStored {
		t.Fatalf("concurrent saves: stats %+v, returned %d bytes", st3, total)
	}
}

// grepDir reports the files under dir holding needle.
func grepDir(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

func TestEncryptedHoldsNoPlaintext(t *testing.T) {
	ctx := context.Background()
	marker := []byte("LIFEBOAT-KNOWN-PLAINTEXT-7f3a")
	var text []byte
	for i := 0; len(text) < 1<<20; i++ {
		text = fmt.Appendf(text, "%s record %d\n", marker, i%7)
	}
	meta := json.RawMessage(fmt.Sprintf(`{"label":%q}`, marker))
	for _, pw := range [][]byte{nil, []byte("secret")} {
		be, dir := newBackend(t)
		r, err := Init(ctx, be, InitOptions{Password: pw})
		if err != nil {
			t.Fatal(err)
		}
		w := r.NewWriter(WriterOptions{})
		s := backupStream(ctx, t, r, w, string(marker), text, 256<<10)
		if _, err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := r.SaveSnapshot(ctx, &Snapshot{Time: time.Now(), Host: string(marker), Streams: []Stream{s}, Meta: meta}); err != nil {
			t.Fatal(err)
		}
		lk, err := r.Lock(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		hits := grepDir(t, dir, marker)
		if pw == nil && len(hits) == 0 {
			// The manifest of an unencrypted repository is plain JSON: the
			// grep must find it there, or it proves nothing.
			t.Fatal("marker not found in the unencrypted repository: the grep is broken")
		}
		if pw != nil && len(hits) != 0 {
			t.Fatalf("plaintext marker found in the encrypted repository: %v", hits)
		}
		if err := lk.Unlock(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	be, _ := newBackend(t)
	if _, err := Open(ctx, be, nil); !errors.Is(err, ErrNotRepository) {
		t.Fatalf("open empty location: %v", err)
	}
	if _, err := Init(ctx, be, InitOptions{Password: []byte("right")}); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(ctx, be, InitOptions{}); !errors.Is(err, ErrExists) {
		t.Fatalf("second init: %v", err)
	}
	if _, err := Open(ctx, be, nil); !errors.Is(err, ErrPasswordRequired) {
		t.Fatalf("open without password: %v", err)
	}
	_, err := Open(ctx, be, []byte("wrong"))
	if !errors.Is(err, ErrWrongPassword) || !strings.Contains(err.Error(), "wrong password") {
		t.Fatalf("open with wrong password: %v", err)
	}
	if _, err := Open(ctx, be, []byte("right")); err != nil {
		t.Fatalf("open with the right password: %v", err)
	}
}

// onePack returns the path of the only pack under dir.
func onePack(t *testing.T, dir string) string {
	t.Helper()
	packs, err := filepath.Glob(filepath.Join(dir, "data", "*", "*"))
	if err != nil || len(packs) != 1 {
		t.Fatalf("packs %v, %v: want exactly one", packs, err)
	}
	return packs[0]
}

func TestFlippedByteNamesChunkAndPack(t *testing.T) {
	for _, tc := range []struct {
		pw    []byte
		group int
	}{{nil, -1}, {[]byte("pw"), -1}, {nil, 0}, {[]byte("pw"), 0}} {
		pw := tc.pw
		t.Run(fmt.Sprintf("encrypted=%v,group=%d", pw != nil, tc.group), func(t *testing.T) {
			ctx := context.Background()
			be, dir := newBackend(t)
			r, err := Init(ctx, be, InitOptions{Password: pw})
			if err != nil {
				t.Fatal(err)
			}
			w := r.NewWriter(WriterOptions{GroupSize: tc.group})
			var ids []ChunkID
			for i := range 4 {
				c := testData(uint64(10+i), 64<<10)
				id := r.Hash(c)
				ids = append(ids, id)
				if _, err := w.SaveChunk(ctx, id, c); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := w.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			loc, pack, _ := r.idx.lookup(ids[2])
			path := onePack(t, dir)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[loc.offset+loc.stored/2] ^= 0x40
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			r2, err := Open(ctx, be, pw)
			if err != nil {
				t.Fatal(err)
			}
			_, err = r2.LoadChunk(ctx, ids[2])
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), ids[2].String()) || !strings.Contains(err.Error(), pack.String()) {
				t.Fatalf("damaged chunk: %v (want ErrDamaged naming chunk %v and pack %v)", err, ids[2], pack)
			}
			for _, i := range []int{0, 1, 3} {
				_, err := r2.LoadChunk(ctx, ids[i])
				if tc.group < 0 && err != nil {
					t.Fatalf("undamaged chunk %d: %v", i, err)
				}
				// Grouped, the four chunks share one frame. Encrypted,
				// the frame fails authentication: each chunk is reported
				// damaged, by its own id. Unencrypted, zstd may still
				// decode the other chunks' bytes intact (the frame has
				// no checksum of its own); LoadChunk checked each id, so
				// a chunk it returns is right, and one it refuses must
				// be named.
				if tc.group >= 0 && (pw != nil || err != nil) && (!errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), ids[i].String())) {
					t.Fatalf("chunk %d in the damaged frame: %v", i, err)
				}
			}
		})
	}
}

func TestStreamReaderRandomRanges(t *testing.T) {
	ctx := context.Background()
	r, _, _ := initRepo(t)
	const cs = 4096
	// More chunks than one list part holds, mostly absent, with data on
	// both sides of the part boundary and a short last chunk.
	size := int64(ListPartLen+300)*cs + 1234
	data := make([]byte, size)
	for _, at := range []int64{0, 5 * cs, int64(ListPartLen-2) * cs, int64(ListPartLen+7) * cs, size - 5000} {
		copy(data[at:], testData(uint64(at), 3*cs))
	}
	w := r.NewWriter(WriterOptions{})
	s := backupStream(ctx, t, r, w, "sparse", data, cs)
	if _, err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(s.Chunks.Parts) != 2 {
		t.Fatalf("list in %d parts, want 2", len(s.Chunks.Parts))
	}
	sr, err := r.StreamReader(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				off := rng2(g, i, size)
				n := 1 + (off*7+int64(i))%(3*cs)
				buf := make([]byte, n)
				got, err := sr.ReadAt(buf, off)
				want := min(n, size-off)
				if int64(got) != want || (want < n && err != io.EOF) || (want == n && err != nil) {
					t.Errorf("ReadAt(%d bytes at %d) = %d, %v", n, off, got, err)
					return
				}
				if !bytes.Equal(buf[:got], data[off:off+int64(got)]) {
					t.Errorf("ReadAt(%d bytes at %d): bytes differ", n, off)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n, err := sr.ReadAt(make([]byte, 10), size); n != 0 || err != io.EOF {
		t.Fatalf("read at end: %d, %v", n, err)
	}
	if got := readAll(t, r, s); !bytes.Equal(got, data) {
		t.Fatal("whole stream differs")
	}
}

// rng2 picks offsets deterministically per goroutine, biased towards the
// interesting places (chunk and part boundaries, the end).
func rng2(g, i int, size int64) int64 {
	rng := rand.New(rand.NewPCG(uint64(g), uint64(i)))
	switch rng.IntN(4) {
	case 0:
		return int64(ListPartLen)*4096 - int64(rng.IntN(20000))
	case 1:
		return size - 1 - int64(rng.IntN(10000))
	case 2:
		return max(0, int64(rng.IntN(20))*4096-int64(rng.IntN(3))*7)
	}
	return rng.Int64N(size)
}

func TestSnapshots(t *testing.T) {
	ctx := context.Background()
	r, _, _ := initRepo(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var ids []string
	// 20 snapshots over 16 possible first hex digits: some share a prefix.
	for i := range 20 {
		id, err := r.SaveSnapshot(ctx, &Snapshot{Time: base.Add(time.Duration((i*7)%20) * time.Hour), Host: fmt.Sprintf("h%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	all, err := r.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 20 {
		t.Fatalf("%d snapshots, want 20", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].Time.Before(all[i-1].Time) {
			t.Fatal("snapshots not sorted by time")
		}
	}
	latest, err := r.LoadSnapshot(ctx, "latest")
	if err != nil || !latest.Time.Equal(base.Add(19*time.Hour)) {
		t.Fatalf("latest: %v, %v", latest, err)
	}
	for i, id := range ids {
		s, err := r.LoadSnapshot(ctx, id[:12])
		if err != nil || s.ID != id || s.Host != fmt.Sprintf("h%d", i) {
			t.Fatalf("by prefix %s: %+v, %v", id[:12], s, err)
		}
	}
	ambiguous := false
	for _, a := range ids {
		for _, b := range ids {
			if a != b && a[0] == b[0] {
				if _, err := r.LoadSnapshot(ctx, a[:1]); err == nil || !strings.Contains(err.Error(), "matches") {
					t.Fatalf("ambiguous prefix %s: %v", a[:1], err)
				}
				ambiguous = true
			}
		}
	}
	if !ambiguous {
		t.Fatal("no shared prefix among 20 ids")
	}
	if _, err := r.LoadSnapshot(ctx, "notthere"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if err := r.RemoveSnapshot(ctx, ids[3]); err != nil {
		t.Fatal(err)
	}
	if _, err := r.LoadSnapshot(ctx, ids[3]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed snapshot still loads: %v", err)
	}
	if err := r.RemoveSnapshot(ctx, ids[3]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing twice: %v", err)
	}
	if all, _ := r.Snapshots(ctx); len(all) != 19 {
		t.Fatalf("%d snapshots after remove, want 19", len(all))
	}
}

func TestSnapshotRefusesUnflushedList(t *testing.T) {
	ctx := context.Background()
	r, _, _ := initRepo(t)
	w := r.NewWriter(WriterOptions{})
	s := backupStream(ctx, t, r, w, "d", testData(5, 300<<10), 64<<10)
	if _, err := r.SaveSnapshot(ctx, &Snapshot{Time: time.Now(), Streams: []Stream{s}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("snapshot before flush: %v", err)
	}
}

func TestCrashBeforeManifest(t *testing.T) {
	ctx := context.Background()
	r, be, _ := initRepo(t)
	data := testData(6, 1<<20)
	w := r.NewWriter(WriterOptions{})
	s := backupStream(ctx, t, r, w, "d", data, 64<<10)
	if _, err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The process dies here: no manifest.
	r2, err := Open(ctx, be, nil)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := r2.Snapshots(ctx)
	if err != nil || len(snaps) != 0 {
		t.Fatalf("snapshots after a crash before the manifest: %d, %v", len(snaps), err)
	}
	// A rerun reuses every chunk.
	w2 := r2.NewWriter(WriterOptions{})
	backupStream(ctx, t, r2, w2, "d", data, 64<<10)
	st, err := w2.Flush(ctx)
	if err != nil || st.ChunksNew != 0 {
		t.Fatalf("rerun: %+v, %v", st, err)
	}
	if _, err := r2.SaveSnapshot(ctx, &Snapshot{Time: time.Now(), Streams: []Stream{s}}); err != nil {
		t.Fatal(err)
	}
}

// failingBackend fails every Save of a pack after the first okPacks.
type failingBackend struct {
	netshare.Backend
	mu      sync.Mutex
	okPacks int
}

var errInjected = errors.New("injected upload failure")

func (f *failingBackend) Save(ctx context.Context, name string, size int64, r io.ReadSeeker) error {
	if strings.HasPrefix(name, "data/") {
		f.mu.Lock()
		ok := f.okPacks > 0
		f.okPacks--
		f.mu.Unlock()
		if !ok {
			return errInjected
		}
	}
	return f.Backend.Save(ctx, name, size, r)
}

func TestUploadFailureSurfaces(t *testing.T) {
	ctx := context.Background()
	inner, dir := newBackend(t)
	be := &failingBackend{Backend: inner, okPacks: 1}
	r, err := Init(ctx, be, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := r.NewWriter(WriterOptions{PackSize: 128 << 10, Concurrency: 1, GroupSize: -1})
	var saveErr error
	for i := 0; i < 40 && saveErr == nil; i++ {
		c := testData(uint64(100+i), 64<<10)
		_, saveErr = w.SaveChunk(ctx, r.Hash(c), c)
	}
	_, flushErr := w.Flush(ctx)
	if !errors.Is(flushErr, errInjected) {
		t.Fatalf("Flush after a failed upload: %v", flushErr)
	}
	if saveErr != nil && !errors.Is(saveErr, errInjected) {
		t.Fatalf("SaveChunk error %v does not wrap the upload failure", saveErr)
	}
	if saveErr == nil {
		t.Fatal("40 chunks over 128 KiB packs: a later SaveChunk should have seen the failed upload")
	}
	if n := dirBytes(t, dir, "index"); n != 0 {
		t.Fatalf("an index was written (%d bytes) although uploads failed", n)
	}

	// Failure of the last pack, uploaded by Flush itself.
	be2 := &failingBackend{Backend: inner, okPacks: 0}
	r2, err := Open(ctx, be2, nil)
	if err != nil {
		t.Fatal(err)
	}
	w2 := r2.NewWriter(WriterOptions{})
	c := testData(999, 1000)
	if _, err := w2.SaveChunk(ctx, r2.Hash(c), c); err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Flush(ctx); !errors.Is(err, errInjected) {
		t.Fatalf("Flush with a failing last pack: %v", err)
	}
}

// indexBlobs returns the index's blobs as a map, for tests to range over.
func indexBlobs(m *memIndex) map[ChunkID]blobLoc {
	out := map[ChunkID]blobLoc{}
	m.each(func(id ChunkID, loc blobLoc) { out[id] = loc })
	return out
}
