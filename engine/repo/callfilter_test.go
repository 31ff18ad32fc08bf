package repo

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

func TestFilterCallsRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 2000 {
		b := make([]byte, rng.IntN(200))
		for i := range b {
			// Mostly the bytes the filter looks at, so that its
			// patterns follow one another closely and overlap.
			b[i] = []byte{0xE8, 0x00, 0xFF, 0x48, 0x4C, 0x8D, 0x05, 0x3D, byte(rng.Uint32())}[rng.IntN(9)]
		}
		orig := bytes.Clone(b)
		filterCalls(b, true)
		filterCalls(b, false)
		if !bytes.Equal(b, orig) {
			t.Fatalf("case %d: %x came back as %x", n, orig, b)
		}
	}
}

// Two calls of one function from different places become the same bytes,
// which is the point of the filter.
func TestFilterCallsMakesCallsAlike(t *testing.T) {
	frame := make([]byte, 4096)
	target := 3000
	for _, site := range []int{100, 1000, 2500} {
		frame[site] = 0xE8
		binary.LittleEndian.PutUint32(frame[site+1:], uint32(int32(target-(site+5))))
	}
	frame[3500] = 0xE8 // a backward call
	binary.LittleEndian.PutUint32(frame[3501:], uint32(int32(target-3505)))
	// lea target(%rip), %rdi and lea target(%rip), %r9 (REX.WR).
	copy(frame[200:], []byte{0x48, 0x8D, 0x3D})
	binary.LittleEndian.PutUint32(frame[203:], uint32(int32(target-207)))
	copy(frame[3600:], []byte{0x4C, 0x8D, 0x0D})
	binary.LittleEndian.PutUint32(frame[3603:], uint32(int32(target-3607)))
	filterCalls(frame, true)
	for _, at := range []int{101, 1001, 2501, 3501, 203, 3603} {
		if got := binary.LittleEndian.Uint32(frame[at:]); got != uint32(target) {
			t.Errorf("displacement at %d: encoded %#x, want %#x", at, got, target)
		}
	}
	// A far displacement (top byte neither 0x00 nor 0xFF) is left alone.
	far := []byte{0xE8, 1, 2, 3, 0x40, 0}
	filterCalls(far, true)
	if !bytes.Equal(far, []byte{0xE8, 1, 2, 3, 0x40, 0}) {
		t.Errorf("far call rewritten: %x", far)
	}
}

func FuzzFilterCalls(f *testing.F) {
	f.Add([]byte{0xE8, 0xFF, 0xFF, 0xE8, 0xFB, 0x35, 0x0F, 0x00, 0x4C})
	f.Add([]byte{0xE8, 0, 0, 0, 0, 0xE8, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Add([]byte{0x48, 0x8D, 0x05, 0x48, 0x8D, 0x05, 0xFF, 0x48, 0x8D, 0x05, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := bytes.Clone(b)
		filterCalls(b, true)
		filterCalls(b, false)
		if !bytes.Equal(b, orig) {
			t.Fatalf("%x came back as %x", orig, b)
		}
		filterCalls(b, false)
		filterCalls(b, true)
		if !bytes.Equal(b, orig) {
			t.Fatalf("decode then encode: %x came back as %x", orig, b)
		}
	})
}

func BenchmarkFilterCalls(b *testing.B) {
	frame := make([]byte, 4<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range frame {
		frame[i] = byte(rng.Uint32())
	}
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		filterCalls(frame, true)
	}
}

// codeLike returns n bytes that look like x86 code to zstd: mostly
// compressible filler with a call every 40 bytes to one of a few functions,
// each call's displacement relative to its own site.
func codeLike(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 9))
	b := make([]byte, n)
	for i := range b {
		b[i] = "movq %rax, %rbx; ret "[rng.IntN(21)]
	}
	funcs := []int{n / 7, n / 3, n / 2, n - 4096}
	for site := 64; site+5 < n; site += 40 {
		b[site] = 0xE8
		binary.LittleEndian.PutUint32(b[site+1:], uint32(int32(funcs[rng.IntN(len(funcs))]-(site+5))))
	}
	return b
}

// Data frames are stored through the call filter, in groups and alone,
// compressed or not, encrypted or not, and read back exactly; the filter
// makes code-like data smaller than zstd alone does.
func TestCallFilterInRepository(t *testing.T) {
	ctx := context.Background()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	code := codeLike(1, 1<<20)
	noise := make([]byte, 1<<20) // incompressible: stored without zstd
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range noise {
		noise[i] = byte(rng.Uint32())
		if i%50 == 0 {
			noise[i] = 0xE8
		}
	}
	data := append(append(bytes.Clone(code), noise...), codeLike(2, 2<<20)...)
	for _, group := range []int{-1, 2 << 20} {
		for _, pw := range [][]byte{nil, []byte("pw")} {
			be, _ := newBackend(t)
			r, err := Init(ctx, be, InitOptions{Password: pw})
			if err != nil {
				t.Fatal(err)
			}
			w := r.NewWriter(WriterOptions{GroupSize: group, PackSize: 1 << 20})
			s := backupStream(ctx, t, r, w, "s", data, 1<<20)
			st, err := w.Flush(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.SaveSnapshot(ctx, &Snapshot{Time: time.Now(), Streams: []Stream{s}}); err != nil {
				t.Fatal(err)
			}
			r2, err := Open(ctx, be, pw)
			if err != nil {
				t.Fatal(err)
			}
			filtered, plain := 0, 0
			for _, loc := range indexBlobs(r2.idx) {
				if loc.kind == KindData && loc.flags&flagCalls != 0 {
					filtered++
					if loc.flags&flagZstd == 0 {
						plain++
					}
				}
				if loc.kind == KindList && loc.flags&flagCalls != 0 {
					t.Errorf("a list blob went through the call filter")
				}
			}
			if filtered != 4 || (group < 0 && plain != 1) {
				t.Errorf("group %d: %d data blobs filtered (want 4), %d of them stored uncompressed", group, filtered, plain)
			}
			sr, err := r2.StreamReader(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(data))
			if _, err := sr.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("group %d, password %v: read back wrong bytes", group, pw != nil)
			}
			rep, err := r2.Check(ctx, CheckOptions{ReadData: true})
			if err != nil || !rep.OK() {
				t.Fatalf("check: %v %+v", err, rep)
			}
			if group < 0 && pw == nil {
				alone := len(enc.EncodeAll(code, nil))
				first, _, ok := r2.idx.lookup(r2.Hash(code))
				if !ok {
					t.Fatal("the first chunk is not in the index")
				}
				t.Logf("code-like 1 MiB: %d bytes through the filter, %d by zstd alone; stored in all %d", first.stored, alone, st.BytesStored)
				if int(first.stored) >= alone*9/10 {
					t.Errorf("code-like chunk stored in %d bytes, zstd alone gives %d: the filter should save over 10%%", first.stored, alone)
				}
			}
		}
	}
}
