package repo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestIndexOrphanPacks(t *testing.T) {
	for _, pw := range [][]byte{nil, []byte("pw")} {
		ctx := context.Background()
		be, dir := newBackend(t)
		r, err := Init(ctx, be, InitOptions{Password: pw})
		if err != nil {
			t.Fatal(err)
		}
		w := r.NewWriter(WriterOptions{PackSize: 100 << 10, GroupSize: -1})
		data := testData(77, 1<<20)
		backupStream(ctx, t, r, w, "d", data, 64<<10)
		w.wg.Wait() // the uploads finish, then the process dies before Flush
		uploaded := w.Stats().Packs
		if uploaded < 2 {
			t.Fatalf("%d packs uploaded before the crash, want several", uploaded)
		}

		r2, err := Open(ctx, be, pw)
		if err != nil {
			t.Fatal(err)
		}
		first := r2.Hash(data[:64<<10])
		if r2.Has(first) {
			t.Fatal("chunk of an unindexed pack is in the index")
		}
		n, err := r2.IndexOrphanPacks(ctx)
		if err != nil || n != uploaded {
			t.Fatalf("IndexOrphanPacks = %d, %v; want %d", n, err, uploaded)
		}
		if got, err := r2.LoadChunk(ctx, first); err != nil || !bytes.Equal(got, data[:64<<10]) {
			t.Fatalf("chunk of an adopted pack: %v", err)
		}
		// Persisted: a fresh Open sees them, and a second call finds none.
		r3, err := Open(ctx, be, pw)
		if err != nil {
			t.Fatal(err)
		}
		if !r3.Has(first) {
			t.Fatal("adopted pack not in the index after reopening")
		}
		if n, err := r3.IndexOrphanPacks(ctx); n != 0 || err != nil {
			t.Fatalf("second IndexOrphanPacks = %d, %v", n, err)
		}
		// The rerun stores only what the lost last pack held.
		w3 := r3.NewWriter(WriterOptions{})
		backupStream(ctx, t, r3, w3, "d", data, 64<<10)
		st, err := w3.Flush(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.ChunksDedup == 0 || st.ChunksNew >= 16 {
			t.Fatalf("rerun stats %+v: adopted chunks not reused", st)
		}

		// A damaged orphan header is an error, not a silent skip.
		w4 := r3.NewWriter(WriterOptions{})
		c := testData(78, 50<<10)
		if _, err := w4.SaveChunk(ctx, r3.Hash(c), c); err != nil {
			t.Fatal(err)
		}
		if _, err := w4.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		before, _ := filepath.Glob(filepath.Join(dir, "data", "*", "*"))
		// Damage a pack's header and drop every index.
		p := before[0]
		b, _ := os.ReadFile(p)
		b[len(b)-10] ^= 1
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		idx, _ := filepath.Glob(filepath.Join(dir, "index", "*"))
		for _, f := range idx {
			os.Remove(f)
		}
		r6, err := Open(ctx, be, pw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r6.IndexOrphanPacks(ctx); !errors.Is(err, ErrDamaged) {
			t.Fatalf("damaged orphan header: %v", err)
		}
	}
}
