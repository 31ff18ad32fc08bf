package cow

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// baseFile writes size random bytes to a file, reopens it read-only and
// returns it with the SHA-256 of its content.
func baseFile(t *testing.T, size int64, seed int64) (*os.File, []byte, [32]byte) {
	t.Helper()
	data := make([]byte, size)
	rand.New(rand.NewSource(seed)).Read(data)
	path := filepath.Join(t.TempDir(), "base.img")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, data, sha256.Sum256(data)
}

// fileSum hashes a file's content as it is on disk now.
func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestOverlayMatchesModel(t *testing.T) {
	for _, scratch := range []bool{false, true} {
		name := map[bool]string{false: "memory", true: "scratch"}[scratch]
		t.Run(name, func(t *testing.T) {
			// Not a whole number of blocks: the last block is partial.
			const size = 3<<20 + 1000
			f, data, sum := baseFile(t, size, 1)
			opt := Options{}
			var dir string
			if scratch {
				dir = t.TempDir()
				opt.ScratchDir = dir
			}
			o, err := New(f, size, opt)
			if err != nil {
				t.Fatal(err)
			}
			model := append([]byte(nil), data...)
			touched := map[int64]bool{}
			rng := rand.New(rand.NewSource(2))
			for i := 0; i < 4000; i++ {
				off := rng.Int63n(size)
				n := rng.Intn(3 * BlockSize)
				if rng.Intn(4) == 0 {
					n = rng.Intn(256 << 10)
				}
				if i%2 == 0 {
					n = int(min(int64(n), size-off))
					p := make([]byte, n)
					rng.Read(p)
					got, err := o.WriteAt(p, off)
					if err != nil || got != n {
						t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", n, off, got, err)
					}
					copy(model[off:], p)
					for b := off / BlockSize; b*BlockSize < off+int64(n); b++ {
						touched[b] = true
					}
					continue
				}
				p := make([]byte, n)
				got, err := o.ReadAt(p, off)
				want := int(min(int64(n), size-off))
				if got != want || (want < n && err != io.EOF) || (want == n && err != nil) {
					t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want %d", n, off, got, err, want)
				}
				if !bytes.Equal(p[:got], model[off:off+int64(got)]) {
					t.Fatalf("ReadAt(%d bytes at %d) differs from the model", n, off)
				}
			}
			all := make([]byte, size)
			if n, err := o.ReadAt(all, 0); n != size || err != nil {
				t.Fatalf("read whole overlay: %d, %v", n, err)
			}
			if !bytes.Equal(all, model) {
				t.Fatal("whole overlay differs from the model")
			}
			if got, want := o.Written(), int64(len(touched))*BlockSize; got != want {
				t.Errorf("Written() = %d, want %d (%d blocks touched)", got, want, len(touched))
			}
			if fileSum(t, f.Name()) != sum {
				t.Fatal("the base file changed")
			}
			if scratch {
				// The scratch file is unlinked at once: nothing to leak.
				if ents, _ := os.ReadDir(dir); len(ents) != 0 {
					t.Errorf("scratch directory holds %d entries, want none", len(ents))
				}
			}
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := o.ReadAt(all[:10], 0); !errors.Is(err, ErrClosed) {
				t.Errorf("ReadAt after Close: %v, want ErrClosed", err)
			}
			if _, err := o.WriteAt(all[:10], 0); !errors.Is(err, ErrClosed) {
				t.Errorf("WriteAt after Close: %v, want ErrClosed", err)
			}
			t.Logf("%s: %d blocks written, %d bytes held", name, len(touched), int64(len(touched))*BlockSize)
		})
	}
}

func TestOverlayBounds(t *testing.T) {
	const size = 10*BlockSize + 100
	f, data, _ := baseFile(t, size, 3)
	o, err := New(f, size, Options{Limit: 4 * BlockSize})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	for _, c := range []struct {
		off int64
		n   int
	}{{size - 10, 11}, {size, 1}, {-1, 1}, {size + 5, 0}} {
		if n, err := o.WriteAt(make([]byte, c.n), c.off); err == nil || n != 0 {
			t.Errorf("WriteAt(%d bytes at %d) = %d, %v; want an error", c.n, c.off, n, err)
		}
	}
	if o.Written() != 0 {
		t.Fatalf("refused writes left %d bytes in the overlay", o.Written())
	}
	// The last, partial block: its tail must keep the base's bytes.
	if _, err := o.WriteAt([]byte{1, 2, 3}, size-3); err != nil {
		t.Fatal(err)
	}
	tail := make([]byte, 100)
	if n, err := o.ReadAt(tail, size-100); n != 100 || err != nil {
		t.Fatalf("read tail: %d, %v", n, err)
	}
	if !bytes.Equal(tail[:97], data[size-100:size-3]) || !bytes.Equal(tail[97:], []byte{1, 2, 3}) {
		t.Error("tail of the partial last block reads back wrong")
	}
	if n, err := o.ReadAt(make([]byte, 8), size); n != 0 || err != io.EOF {
		t.Errorf("read at the end: %d, %v; want 0, EOF", n, err)
	}
	// Limit: three more blocks fit, a write spanning two new ones does not.
	for i := int64(0); i < 3; i++ {
		if _, err := o.WriteAt([]byte{9}, i*BlockSize); err != nil {
			t.Fatalf("write within the limit: %v", err)
		}
	}
	if _, err := o.WriteAt([]byte{7, 7}, 5*BlockSize-1); !errors.Is(err, ErrFull) {
		t.Errorf("write past the limit: %v, want ErrFull", err)
	}
	// Rewriting held blocks needs no room.
	if _, err := o.WriteAt(make([]byte, 2*BlockSize), 0); err != nil {
		t.Errorf("rewrite of held blocks: %v", err)
	}
	if o.Written() != 4*BlockSize {
		t.Errorf("Written() = %d, want %d", o.Written(), 4*BlockSize)
	}
	if _, err := New(f, -1, Options{}); err == nil {
		t.Error("New with a negative size succeeded")
	}
	if _, err := New(f, 10, Options{ScratchDir: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("New with a missing scratch directory succeeded")
	}
}

// TestOverlayConcurrent runs writers on disjoint stripes and readers over
// everything at once (run it with -race); afterwards each stripe must hold
// its writer's last bytes.
func TestOverlayConcurrent(t *testing.T) {
	for _, scratch := range []bool{false, true} {
		const size = 2 << 20
		const workers = 8
		f, data, sum := baseFile(t, size, 4)
		opt := Options{}
		if scratch {
			opt.ScratchDir = t.TempDir()
		}
		o, err := New(f, size, opt)
		if err != nil {
			t.Fatal(err)
		}
		stripe := int64(size / workers)
		var wg sync.WaitGroup
		errs := make(chan error, 2*workers)
		final := make([][]byte, workers)
		wrote := make([][]bool, workers)
		for w := 0; w < workers; w++ {
			wg.Add(2)
			go func(w int) {
				defer wg.Done()
				rng := rand.New(rand.NewSource(int64(w)))
				// Each stripe starts one byte past a block boundary, so
				// neighbouring writers share the blocks at its edges.
				lo := int64(w)*stripe + 1
				span := min(stripe, size-lo)
				buf := make([]byte, span)
				mask := make([]bool, span)
				for i := 0; i < 50; i++ {
					off := rng.Int63n(span)
					n := rng.Int63n(span - off + 1)
					rng.Read(buf[off : off+n])
					if _, err := o.WriteAt(buf[off:off+n], lo+off); err != nil {
						errs <- err
						return
					}
					for j := off; j < off+n; j++ {
						mask[j] = true
					}
				}
				final[w], wrote[w] = buf, mask
			}(w)
			go func(w int) {
				defer wg.Done()
				p := make([]byte, 64<<10)
				for i := 0; i < 100; i++ {
					off := int64(i*7919*int(BlockSize)) % (size - int64(len(p)))
					if _, err := o.ReadAt(p, off); err != nil {
						errs <- err
						return
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Each byte must be the base's unless a writer wrote it last.
		all := make([]byte, size)
		if _, err := o.ReadAt(all, 0); err != nil {
			t.Fatal(err)
		}
		for w := 0; w < workers; w++ {
			lo := int64(w)*stripe + 1
			for i := range final[w] {
				want := data[lo+int64(i)]
				if wrote[w][i] {
					want = final[w][i]
				}
				if all[lo+int64(i)] != want {
					t.Fatalf("scratch=%v: byte %d is %d, want %d (written by worker %d: %v)", scratch, lo+int64(i), all[lo+int64(i)], want, w, wrote[w][i])
				}
			}
		}
		if all[0] != data[0] {
			t.Fatal("byte 0, never written, changed")
		}
		if fileSum(t, f.Name()) != sum {
			t.Fatal("the base file changed")
		}
		o.Close()
	}
}
