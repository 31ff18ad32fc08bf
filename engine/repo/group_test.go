package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// repetitive returns n bytes in which each 64 KiB piece repeats the one
// before with a few changes: chunks compressed alone gain little, chunks
// compressed together gain a lot, as files spread over chunk borders do.
func repetitive(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	piece := make([]byte, 64<<10)
	for i := range piece {
		piece[i] = byte(rng.Uint32())
	}
	var b []byte
	for len(b) < n {
		for range 8 {
			piece[rng.IntN(len(piece))] = byte(rng.Uint32())
		}
		b = append(b, piece...)
	}
	return b[:n]
}

func TestGroupRoundTrip(t *testing.T) {
	ctx := context.Background()
	data := repetitive(1, 2<<20)
	stored := map[int]int64{}
	for _, group := range []int{-1, 256 << 10} {
		be, _ := newBackend(t)
		r, err := Init(ctx, be, InitOptions{Password: []byte("pw")})
		if err != nil {
			t.Fatal(err)
		}
		w := r.NewWriter(WriterOptions{GroupSize: group, PackSize: 1 << 20})
		s := backupStream(ctx, t, r, w, "s", data, 64<<10)
		st, err := w.Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stored[group] = st.BytesStored
		if _, err := r.SaveSnapshot(ctx, &Snapshot{Time: time.Now(), Streams: []Stream{s}}); err != nil {
			t.Fatal(err)
		}
		// Read back through a fresh Open, which parses the index file, from
		// parallel readers at random ranges.
		r2, err := Open(ctx, be, []byte("pw"))
		if err != nil {
			t.Fatal(err)
		}
		grouped := 0
		for id, loc := range indexBlobs(r2.idx) {
			if loc.kind == KindData && loc.flags&flagGroup != 0 {
				grouped++
				if loc.frameRaw != 256<<10 || loc.raw != 64<<10 || loc.rawOff%(64<<10) != 0 {
					t.Fatalf("blob %v: frame %d bytes, blob [%d,+%d)", id, loc.frameRaw, loc.rawOff, loc.raw)
				}
			}
		}
		if want := map[int]int{-1: 0, 256 << 10: 32}[group]; grouped != want {
			t.Fatalf("group %d: %d grouped blobs, want %d", group, grouped, want)
		}
		sr, err := r2.StreamReader(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(g), 1))
				for range 50 {
					off := rng.IntN(len(data))
					n := min(len(data)-off, 1+rng.IntN(200<<10))
					got := make([]byte, n)
					if _, err := sr.ReadAt(got, int64(off)); err != nil {
						t.Errorf("ReadAt(%d, %d): %v", off, n, err)
						return
					}
					if !bytes.Equal(got, data[off:off+n]) {
						t.Errorf("ReadAt(%d, %d): wrong bytes", off, n)
						return
					}
				}
			}()
		}
		wg.Wait()
		rep, err := r2.Check(ctx, CheckOptions{ReadData: true})
		if err != nil || !rep.OK() {
			t.Fatalf("check: %v %+v", err, rep)
		}
	}
	t.Logf("stored: chunks alone %d bytes, in 256 KiB groups %d bytes", stored[-1], stored[256<<10])
	if stored[256<<10]*2 > stored[-1] {
		t.Fatalf("grouping stored %d bytes, chunks alone %d: want less than half", stored[256<<10], stored[-1])
	}
}

func TestGroupDamageNamesEveryChunkOfTheFrame(t *testing.T) {
	ctx := context.Background()
	r, be, dir := initRepo(t)
	data := repetitive(2, 1<<20)
	w := r.NewWriter(WriterOptions{GroupSize: 256 << 10})
	s := backupStream(ctx, t, r, w, "s", data, 64<<10)
	if _, err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	snap, err := r.SaveSnapshot(ctx, &Snapshot{Time: time.Now(), Streams: []Stream{s}})
	if err != nil {
		t.Fatal(err)
	}
	// Damage the frame holding chunk 5 (chunks 4..7, bytes 256 KiB..512 KiB).
	ids, err := r.LoadList(ctx, s.Chunks)
	if err != nil {
		t.Fatal(err)
	}
	loc, _, _ := r.idx.lookup(ids[5])
	path := onePack(t, dir)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[loc.offset+loc.stored/2] ^= 0x10
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(ctx, be, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r2.Check(ctx, CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range rep.Damaged {
		if d.Snapshot != snap {
			t.Fatalf("damage in snapshot %s, want %s", d.Snapshot, snap)
		}
		if d.Offset < 256<<10 || d.Offset+d.Length > 512<<10 {
			t.Fatalf("damage at [%d,+%d) outside the damaged frame", d.Offset, d.Length)
		}
	}
	if len(rep.Damaged) != 4 {
		t.Fatalf("damaged %d ranges, want the frame's 4 chunks: %+v", len(rep.Damaged), rep.Damaged)
	}
	for i := range ids {
		_, err := r2.LoadChunk(ctx, ids[i])
		inFrame := i >= 4 && i < 8
		if inFrame != (err != nil) || inFrame && (!errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), ids[i].String())) {
			t.Fatalf("chunk %d (in the damaged frame: %v): %v", i, inFrame, err)
		}
	}
}

func TestGroupPrunePartlyDeadFrames(t *testing.T) {
	ctx := context.Background()
	r, be, dir := initRepo(t)
	// Snapshot 1 interleaves chunks that snapshot 2 keeps with chunks of
	// its own (random, incompressible), so every frame mixes both.
	keep := testData(5, 1<<20)
	own := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range own {
		own[i] = byte(rng.Uint32())
	}
	var mixed []byte
	for off := 0; off < len(keep); off += 64 << 10 {
		mixed = append(mixed, keep[off:off+64<<10]...)
		mixed = append(mixed, own[off:off+64<<10]...)
	}
	w := r.NewWriter(WriterOptions{GroupSize: 256 << 10, PackSize: 512 << 10})
	s1 := backupStream(ctx, t, r, w, "mixed", mixed, 64<<10)
	if _, err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	id1, err := r.SaveSnapshot(ctx, &Snapshot{Time: time.Now().Add(-time.Hour), Streams: []Stream{s1}})
	if err != nil {
		t.Fatal(err)
	}
	w2 := r.NewWriter(WriterOptions{GroupSize: 256 << 10})
	s2 := backupStream(ctx, t, r, w2, "keep", keep, 64<<10)
	if st, err := w2.Flush(ctx); err != nil || st.ChunksNew != 1 { // only its list is new
		t.Fatalf("second backup: %+v, %v", st, err)
	}
	if _, err := r.SaveSnapshot(ctx, &Snapshot{Time: time.Now(), Streams: []Stream{s2}}); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveSnapshot(ctx, id1); err != nil {
		t.Fatal(err)
	}
	before := dirBytes(t, dir, "data")
	stats, err := r.Prune(ctx, PruneOptions{RepackBelow: 1.01})
	if err != nil {
		t.Fatal(err)
	}
	freed := before - dirBytes(t, dir, "data")
	t.Logf("prune %+v: data %d -> %d bytes", stats, before, before-freed)
	// The random half (1 MiB, incompressible) must be gone although every
	// frame held some of it.
	if freed < 900<<10 {
		t.Fatalf("prune freed %d bytes, want about 1 MiB", freed)
	}
	r2, err := Open(ctx, be, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r2.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("check after prune: %v %+v", err, rep)
	}
	sr, err := r2.StreamReader(ctx, s2)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(keep))
	if _, err := sr.ReadAt(got, 0); err != nil || !bytes.Equal(got, keep) {
		t.Fatalf("kept snapshot after prune: %v, equal %v", err, bytes.Equal(got, keep))
	}
}

func TestLinkFramesRefusesBadGroups(t *testing.T) {
	e := func(off, stored, raw, rawOff uint32) packEntry {
		return packEntry{Kind: KindData, Flags: flagGroup | flagZstd, Offset: off, Stored: stored, Raw: raw, RawOff: rawOff}
	}
	good := []packEntry{e(0, 100, 10, 0), e(0, 100, 20, 10), e(100, 50, 5, 0)}
	if err := linkFrames(good); err != nil {
		t.Fatalf("good frames: %v", err)
	}
	if good[0].frameRaw != 30 || good[1].frameRaw != 30 || good[2].frameRaw != 5 {
		t.Fatalf("frame sizes %d %d %d", good[0].frameRaw, good[1].frameRaw, good[2].frameRaw)
	}
	for name, bad := range map[string][]packEntry{
		"gap":            {e(0, 100, 10, 0), e(0, 100, 20, 11)},
		"not from zero":  {e(0, 100, 10, 4)},
		"stored differs": {e(0, 100, 10, 0), e(0, 99, 20, 10)},
		"too large":      {e(0, 100, MaxBlobSize, 0), e(0, 100, 1, MaxBlobSize)},
	} {
		if err := linkFrames(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A pack header whose group members do not share their frame's bytes
	// back to back is refused as a whole.
	hdr := encodePackHeader([]packEntry{e(0, 100, 10, 0), e(0, 100, 20, 10), e(100, 50, 5, 0)})
	if _, err := parsePackHeader(hdr, 150); err != nil {
		t.Fatalf("header: %v", err)
	}
	if _, err := parsePackHeader(hdr, 250); err == nil {
		t.Fatal("header whose frames cover 150 of 250 bytes accepted")
	}
}

// A writer with IndexEvery indexes its packs as it goes: a repository
// opened before Flush already finds them, and the writer's own dedup set
// holds only what no index lists yet.
func TestWriterIndexEvery(t *testing.T) {
	ctx := context.Background()
	r, be, _ := initRepo(t)
	w := r.NewWriter(WriterOptions{PackSize: 256 << 10, GroupSize: -1, IndexEvery: 2})
	var ids []ChunkID
	for i := range 40 {
		c := testData(uint64(100+i), 64<<10)
		id := r.Hash(c)
		ids = append(ids, id)
		if _, err := w.SaveChunk(ctx, id, c); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for the uploads in flight without flushing.
	w.wg.Wait()
	w.mu.Lock()
	seen, pending := len(w.seen), len(w.done)
	w.mu.Unlock()
	r2, err := Open(ctx, be, nil)
	if err != nil {
		t.Fatal(err)
	}
	indexed := 0
	for _, id := range ids {
		if r2.idx.has(id) {
			indexed++
			if _, err := r2.LoadChunk(ctx, id); err != nil {
				t.Fatalf("chunk indexed before Flush: %v", err)
			}
		}
	}
	t.Logf("before Flush: %d of %d chunks indexed, %d in the writer's dedup set, %d packs unindexed", indexed, len(ids), seen, pending)
	if indexed < len(ids)/2 || seen > len(ids)-indexed || pending >= 2 {
		t.Fatalf("before Flush: %d of %d chunks indexed, %d in the writer's dedup set, %d packs unindexed", indexed, len(ids), seen, pending)
	}
	// A chunk indexed along the way is still deduplicated by this writer.
	if n, err := w.SaveChunk(ctx, ids[0], testData(100, 64<<10)); err != nil || n != 0 {
		t.Fatalf("saving an indexed chunk again: %d bytes, %v", n, err)
	}
	if _, err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r3, err := Open(ctx, be, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := r3.LoadChunk(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := r3.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("check: %v %+v", err, rep)
	}
}

// saveList stores a whole chunk list part after part: the plain reference
// the tests hold ListBuilder and the list readers to.
func saveList(ctx context.Context, w *Writer, ids []ChunkID) (ListRef, error) {
	ref := ListRef{Len: int64(len(ids))}
	for start := 0; start < len(ids); start += ListPartLen {
		pid, err := w.saveListPart(ctx, ids[start:min(start+ListPartLen, len(ids))])
		if err != nil {
			return ListRef{}, fmt.Errorf("save chunk list part %d: %w", len(ref.Parts), err)
		}
		ref.Parts = append(ref.Parts, pid)
	}
	return ref, nil
}

// A list built position by position, in any order and from several
// goroutines, is the list saveList stores; parts are stored as they
// complete, and an unfinished list is refused.
func TestListBuilder(t *testing.T) {
	ctx := context.Background()
	r, _, _ := initRepo(t)
	w := r.NewWriter(WriterOptions{})
	n := int64(2*ListPartLen + 123)
	ids := make([]ChunkID, n)
	rng := rand.New(rand.NewPCG(3, 3))
	for i := range ids {
		if rng.IntN(3) > 0 { // a third absent
			ids[i] = r.Hash([]byte{byte(i), byte(i >> 8), byte(i >> 16)})
		}
	}
	want, err := saveList(ctx, w, ids)
	if err != nil {
		t.Fatal(err)
	}
	b := w.NewList(n)
	order := rng.Perm(int(n))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for _, i := range order[g*len(order)/4 : (g+1)*len(order)/4] {
				if err := b.Set(ctx, int64(i), ids[i]); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	got, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if got.Len != want.Len || !slices.Equal(got.Parts, want.Parts) {
		t.Fatalf("built list %+v, saveList gave %+v", got, want)
	}
	b.mu.Lock()
	pending := len(b.pending)
	b.mu.Unlock()
	if pending != 0 {
		t.Fatalf("%d parts still held after the list was complete", pending)
	}
	short := w.NewList(n)
	for i := range n - 1 {
		if err := short.Set(ctx, i, ids[i]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := short.Finish(); err == nil {
		t.Fatal("a list with a position never set was finished")
	}
	if err := short.Set(ctx, n, ChunkID{}); err == nil {
		t.Fatal("a position past the end was accepted")
	}
	if _, err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}
