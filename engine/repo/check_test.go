package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/netshare"
	"github.com/lifeboat/lifeboat/netshare/local"
	"github.com/lifeboat/lifeboat/netshare/netsharetest"
)

// fixture is a repository with a few snapshots whose content the test
// keeps, to compare restores with.
type fixture struct {
	be    netshare.Backend
	dir   string
	pw    []byte
	r     *Repo
	snaps []*Snapshot
	data  map[string]map[string][]byte // snapshot id -> stream -> bytes
	// packSize is the writers' pack size; 0 picks 24 KiB, a few chunks.
	packSize int
}

const fixChunk = 4096

// randBytes returns n incompressible bytes.
func randBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, ^seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func newFixture(t *testing.T, pw []byte) *fixture {
	t.Helper()
	ctx := context.Background()
	be, dir := newBackend(t)
	r, err := Init(ctx, be, InitOptions{Password: pw, ChunkSize: fixChunk})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{be: be, dir: dir, pw: pw, r: r, data: map[string]map[string][]byte{}}
}

// add saves a snapshot of the given streams, with its own writer and index
// file, as one backup would.
func (f *fixture) add(t *testing.T, when time.Time, host string, tags []string, streams map[string][]byte) *Snapshot {
	t.Helper()
	ctx := context.Background()
	ps := f.packSize
	if ps == 0 {
		ps = 24 << 10
	}
	w := f.r.NewWriter(WriterOptions{PackSize: ps, GroupSize: -1})
	s := &Snapshot{Time: when, Host: host, Tags: tags}
	names := make([]string, 0, len(streams))
	for n := range streams {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s.Streams = append(s.Streams, backupStream(ctx, t, f.r, w, n, streams[n], fixChunk))
	}
	if _, err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.SaveSnapshot(ctx, s); err != nil {
		t.Fatal(err)
	}
	f.snaps = append(f.snaps, s)
	f.data[s.ID] = streams
	return s
}

// standard builds four snapshots a day apart: each shares a base with the
// others, has a region of its own, and a second stream with zeros.
func standardFixture(t *testing.T, pw []byte) *fixture {
	t.Helper()
	f := newFixture(t, pw)
	base := testData(1, 160<<10)
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for i := range 4 {
		disk := bytes.Clone(base)
		copy(disk[i*32<<10:], randBytes(uint64(100+i), 32<<10))
		boot := make([]byte, 20<<10+123)
		copy(boot[4096:], randBytes(uint64(200+i%2), 3000))
		f.add(t, t0.Add(time.Duration(i)*24*time.Hour), "host1", []string{"nightly"}, map[string][]byte{"disk": disk, "boot": boot})
	}
	return f
}

// reopen opens the repository afresh, as a new process would.
func (f *fixture) reopen(t *testing.T) *Repo {
	t.Helper()
	r, err := Open(context.Background(), f.be, f.pw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// verifyRestores reads every stream of the snapshots byte for byte.
func (f *fixture) verifyRestores(t *testing.T, r *Repo, ids []string) {
	t.Helper()
	for _, id := range ids {
		s, err := r.LoadSnapshot(context.Background(), id)
		if err != nil {
			t.Fatalf("load snapshot %s: %v", id, err)
		}
		for _, st := range s.Streams {
			if got := readAll(t, r, st); !bytes.Equal(got, f.data[id][st.Name]) {
				t.Fatalf("snapshot %s stream %s differs after restore", id, st.Name)
			}
		}
	}
}

func mustCheck(t *testing.T, r *Repo, opt CheckOptions) *CheckReport {
	t.Helper()
	rep, err := r.Check(context.Background(), opt)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return rep
}

func TestCheckCleanRepository(t *testing.T) {
	for _, pw := range [][]byte{nil, []byte("secret")} {
		t.Run(fmt.Sprintf("encrypted=%v", pw != nil), func(t *testing.T) {
			f := standardFixture(t, pw)
			r := f.reopen(t)
			for _, readData := range []bool{false, true} {
				var calls int
				var last, total int64
				rep := mustCheck(t, r, CheckOptions{ReadData: readData, Progress: func(d, tot int64) { calls++; last, total = d, tot }})
				if !rep.OK() || len(rep.Warnings) != 0 {
					t.Fatalf("readData=%v: fresh repository: problems %q, damage %v, warnings %q", readData, rep.Problems, rep.Damaged, rep.Warnings)
				}
				if rep.Snapshots != 4 || rep.Packs < 2 || rep.Chunks < 40 {
					t.Fatalf("counts %d snapshots, %d chunks, %d packs", rep.Snapshots, rep.Chunks, rep.Packs)
				}
				if calls == 0 || last != total {
					t.Fatalf("progress: %d calls, last %d of %d", calls, last, total)
				}
			}
			rep := mustCheck(t, r, CheckOptions{Snapshots: []string{f.snaps[1].ID[:10]}})
			if !rep.OK() || rep.Snapshots != 1 {
				t.Fatalf("one snapshot: %+v", rep)
			}
			if _, err := r.Check(context.Background(), CheckOptions{Snapshots: []string{"ffffffffffffff0"}}); !errors.Is(err, ErrNotFound) {
				t.Fatalf("unknown snapshot: %v", err)
			}
		})
	}
}

// uses lists every (snapshot, stream, chunk index) that references id.
func (f *fixture) uses(t *testing.T, r *Repo, id ChunkID) []Damage {
	t.Helper()
	var out []Damage
	for _, s := range f.snaps {
		for _, st := range s.Streams {
			ids, err := r.LoadList(context.Background(), st.Chunks)
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range ids {
				if c == id {
					off := int64(i) * int64(st.ChunkSize)
					out = append(out, Damage{Snapshot: s.ID, Stream: st.Name, Offset: off, Length: min(int64(st.ChunkSize), st.Size-off), Chunk: id})
				}
			}
		}
	}
	return out
}

// ranges reduces damage to comparable keys.
func ranges(ds []Damage) []string {
	var out []string
	for _, d := range ds {
		out = append(out, fmt.Sprintf("%s/%s/%d+%d/%v", d.Snapshot, d.Stream, d.Offset, d.Length, d.Chunk))
	}
	sort.Strings(out)
	return out
}

func sameRanges(t *testing.T, got, want []Damage) {
	t.Helper()
	g, w := ranges(got), ranges(want)
	if strings.Join(g, "\n") != strings.Join(w, "\n") {
		t.Fatalf("damage:\n%s\nwant:\n%s", strings.Join(g, "\n"), strings.Join(w, "\n"))
	}
}

// packFile returns the file of the pack holding id, and the blob's place.
func (f *fixture) packFile(t *testing.T, r *Repo, id ChunkID) (string, blobLoc) {
	t.Helper()
	loc, pack, ok := r.idx.lookup(id)
	if !ok {
		t.Fatalf("blob %v not indexed", id)
	}
	return filepath.Join(f.dir, filepath.FromSlash(packName(pack))), loc
}

func TestCheckFlippedByteNeedsReadData(t *testing.T) {
	for _, pw := range [][]byte{nil, []byte("secret")} {
		t.Run(fmt.Sprintf("encrypted=%v", pw != nil), func(t *testing.T) {
			f := standardFixture(t, pw)
			r := f.reopen(t)
			// A chunk of the base that every snapshot but the first shares:
			// one of chunks 0..7 of "disk" (snapshot 0 overwrote them).
			disk := f.data[f.snaps[1].ID]["disk"]
			k := 0
			for isZero(disk[k*fixChunk : (k+1)*fixChunk]) {
				k++
			}
			victim := r.Hash(disk[k*fixChunk : (k+1)*fixChunk])
			want := f.uses(t, r, victim)
			if len(want) != 3 {
				t.Fatalf("victim chunk used %d times, want 3", len(want))
			}
			path, loc := f.packFile(t, r, victim)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[loc.offset+loc.stored/2] ^= 0x10
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if rep := mustCheck(t, r, CheckOptions{}); !rep.OK() {
				t.Fatalf("structural check sees a flipped data byte: %q %v", rep.Problems, rep.Damaged)
			}
			rep := mustCheck(t, r, CheckOptions{ReadData: true})
			if rep.OK() {
				t.Fatal("read-data check missed a flipped byte")
			}
			sameRanges(t, rep.Damaged, want)
			pack := strings.TrimPrefix(filepath.ToSlash(path), filepath.ToSlash(f.dir)+"/")
			for _, d := range rep.Damaged {
				if d.Pack != pack || d.Reason == "" {
					t.Fatalf("damage %v: want pack %s and a reason", d, pack)
				}
			}
			if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "does not match its name") {
				t.Fatalf("problems %q", rep.Problems)
			}
			// Only the damaged snapshots are named; the first is intact.
			rep = mustCheck(t, r, CheckOptions{ReadData: true, Snapshots: []string{f.snaps[0].ID}})
			if len(rep.Damaged) != 0 {
				t.Fatalf("snapshot 0 does not use the chunk: %v", rep.Damaged)
			}
		})
	}
}

// blobsOf returns the ids whose index location is the pack file path.
func blobsOf(r *Repo, pack PackID) []ChunkID {
	var out []ChunkID
	for id, loc := range indexBlobs(r.idx) {
		if _, p, _ := r.idx.lookup(id); p == pack && r.idx.packs[loc.pack] == pack {
			out = append(out, id)
		}
	}
	return out
}

func TestCheckMissingAndTruncatedPacks(t *testing.T) {
	f := standardFixture(t, nil)
	r := f.reopen(t)
	// The pack holding snapshot 2's own region.
	victim := r.Hash(f.data[f.snaps[2].ID]["disk"][64<<10 : 64<<10+fixChunk])
	path, _ := f.packFile(t, r, victim)
	_, pack, _ := r.idx.lookup(victim)
	var want []Damage
	for _, id := range blobsOf(r, pack) {
		want = append(want, f.uses(t, r, id)...)
	}
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("missing", func(t *testing.T) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(path, orig, 0o600)
		for _, readData := range []bool{false, true} {
			rep := mustCheck(t, r, CheckOptions{ReadData: readData})
			if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], packName(pack)+" is missing") {
				t.Fatalf("problems %q", rep.Problems)
			}
			sameRanges(t, rep.Damaged, want)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		cut := len(orig) / 2
		if err := os.WriteFile(path, orig[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(path, orig, 0o600)
		// Structurally: the blobs past the cut are lost.
		var past []Damage
		for _, id := range blobsOf(r, pack) {
			if loc, _, _ := r.idx.lookup(id); int(loc.offset+loc.stored) > cut {
				past = append(past, f.uses(t, r, id)...)
			}
		}
		if len(past) == 0 {
			t.Fatal("no blob past the cut")
		}
		rep := mustCheck(t, r, CheckOptions{})
		if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], fmt.Sprintf("is %d bytes, the index says %d", cut, len(orig))) {
			t.Fatalf("problems %q", rep.Problems)
		}
		sameRanges(t, rep.Damaged, past)
		// Reading it finds the same blobs, and the header gone.
		rep = mustCheck(t, r, CheckOptions{ReadData: true})
		sameRanges(t, rep.Damaged, past)
		if len(rep.Problems) < 2 {
			t.Fatalf("problems %q: want the size and the header", rep.Problems)
		}
	})
	if rep := mustCheck(t, r, CheckOptions{ReadData: true}); !rep.OK() {
		t.Fatalf("restored pack: %q %v", rep.Problems, rep.Damaged)
	}
}

func TestCheckDamagedListAndManifest(t *testing.T) {
	f := standardFixture(t, nil)
	r := f.reopen(t)
	s := f.snaps[3]
	var disk Stream
	for _, st := range s.Streams {
		if st.Name == "disk" {
			disk = st
		}
	}
	part := disk.Chunks.Parts[0]
	path, loc := f.packFile(t, r, part)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[loc.offset+1] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// A damaged list blob is found without reading data and damages the
	// whole range it covers.
	rep := mustCheck(t, r, CheckOptions{})
	if len(rep.Damaged) != 1 {
		t.Fatalf("damage %v", rep.Damaged)
	}
	d := rep.Damaged[0]
	if d.Snapshot != s.ID || d.Stream != "disk" || d.Offset != 0 || d.Length != disk.Size || d.Chunk != part || !strings.Contains(d.Reason, "chunk list") {
		t.Fatalf("damage %+v", d)
	}
	b[loc.offset+1] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	// An unreadable manifest and a stray object are problems; the
	// manifest's snapshot is named as damaged as a whole.
	mpath := filepath.Join(f.dir, "snapshots", f.snaps[0].ID)
	m, err := os.ReadFile(mpath)
	if err != nil {
		t.Fatal(err)
	}
	m[5] ^= 1
	if err := os.WriteFile(mpath, m, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "data", "stray.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	rep = mustCheck(t, r, CheckOptions{ReadData: true})
	if len(rep.Problems) != 2 || !strings.Contains(strings.Join(rep.Problems, "\n"), "stray object data/stray.txt") {
		t.Fatalf("problems %q", rep.Problems)
	}
	if len(rep.Damaged) != 1 || rep.Damaged[0].Snapshot != f.snaps[0].ID || rep.Damaged[0].Stream != "" {
		t.Fatalf("damage %v", rep.Damaged)
	}
}

func TestCheckDamagedIndexFile(t *testing.T) {
	f := standardFixture(t, nil)
	r := f.reopen(t)
	names, err := filepath.Glob(filepath.Join(f.dir, "index", "*"))
	if err != nil || len(names) != 4 {
		t.Fatalf("index files %v, %v", names, err)
	}
	// The first snapshot's index lists the base chunks every snapshot uses.
	var first string
	for _, n := range names {
		b, _ := os.ReadFile(n)
		if p, err := openPlain(b); err == nil {
			if ix, err := parseIndex(p); err == nil {
				for _, pk := range ix.Packs {
					for _, e := range pk.Entries {
						if e.ID == f.snaps[0].Streams[1].Chunks.Parts[0] {
							first = n
						}
					}
				}
			}
		}
	}
	if first == "" {
		t.Fatal("index of the first snapshot not found")
	}
	if err := os.WriteFile(first, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	rep := mustCheck(t, r, CheckOptions{})
	if rep.OK() || !strings.Contains(strings.Join(rep.Problems, "\n"), "index file index/"+filepath.Base(first)+" unreadable") {
		t.Fatalf("problems %q", rep.Problems)
	}
	seen := map[string]bool{}
	for _, d := range rep.Damaged {
		seen[d.Snapshot] = true
		if !strings.Contains(d.Reason, "not in the index") {
			t.Fatalf("damage %v", d)
		}
	}
	if len(seen) != 4 {
		t.Fatalf("damage names %d snapshots, want all 4 (they share the base)", len(seen))
	}
	if _, err := r.Prune(context.Background(), PruneOptions{}); err == nil || !strings.Contains(err.Error(), "unreadable") {
		t.Fatalf("prune over a damaged index: %v", err)
	}
}

// TestCheckFindsAnyFlippedByte flips one byte of a random object and
// expects a read-data check to notice: every stored byte is covered.
func TestCheckFindsAnyFlippedByte(t *testing.T) {
	f := standardFixture(t, nil)
	f.crashedBackup(t) // unindexed packs too: damage there is only a warning
	objects := tree(t, f.dir)
	var names []string
	for n := range objects {
		if !strings.HasPrefix(n, "locks/") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 60 {
		name := names[rng.IntN(len(names))]
		at := rng.IntN(int(objects[name]))
		t.Run(fmt.Sprintf("%d-%s-%d", i, strings.ReplaceAll(name, "/", "_"), at), func(t *testing.T) {
			dir := t.TempDir()
			copyTree(t, f.dir, dir)
			be, err := local.New(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer be.Close()
			r, err := Open(context.Background(), be, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			p := filepath.Join(dir, filepath.FromSlash(name))
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[at] ^= byte(1 + rng.IntN(255))
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			rep := mustCheck(t, r, CheckOptions{ReadData: true})
			orphan := !r.idx.hasPack(PackID(mustID(filepath.Base(name)))) && strings.HasPrefix(name, "data/")
			if orphan {
				if !rep.OK() {
					t.Fatalf("damage in an unindexed pack is a warning: %+v", rep)
				}
				return
			}
			if rep.OK() {
				t.Fatalf("a flipped byte in %s at %d went unnoticed", name, at)
			}
		})
	}
}

// TestCheckRequests counts backend calls: one listing, no Stat per pack,
// and with ReadData one Load per pack.
func TestCheckRequests(t *testing.T) {
	ctx := context.Background()
	f := standardFixture(t, nil)
	faults := &netsharetest.Faults{}
	r, err := Open(ctx, netsharetest.WithFaults(f.be, faults), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	count := func(readData bool) (list, stat, load int, rep *CheckReport) {
		l0, s0, ld0 := faults.Calls(netsharetest.OpList), faults.Calls(netsharetest.OpStat), faults.Calls(netsharetest.OpLoad)
		rep = mustCheck(t, r, CheckOptions{ReadData: readData})
		return faults.Calls(netsharetest.OpList) - l0, faults.Calls(netsharetest.OpStat) - s0, faults.Calls(netsharetest.OpLoad) - ld0, rep
	}
	l1, s1, ld1, _ := count(false)
	l2, s2, ld2, rep := count(true)
	if l1 != 1 || l2 != 1 || s1 != 0 || s2 != 0 {
		t.Fatalf("lists %d/%d, stats %d/%d: want one listing and no Stat", l1, l2, s1, s2)
	}
	if ld2-ld1 != rep.Packs || rep.Packs < 2 {
		t.Fatalf("read-data check made %d more loads for %d packs", ld2-ld1, rep.Packs)
	}
}
