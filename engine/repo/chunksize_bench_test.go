package repo

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

// BenchmarkChunkSize is the measurement behind DefaultChunkSize (see
// docs/FORMAT.md). It reads up to 1 GiB of a real file-system image
// (LIFEBOAT_BENCH_IMAGE, else bench/work/ext4.img, else an ext4 image of
// /usr/lib built with mkfs.ext4 -d) and, per chunk size, reports zstd
// throughput and ratio, the index and list bytes per GiB, and the worst
// repository growth over 32 random 1 MiB changes.
//
//	go test -run '^$' -bench BenchmarkChunkSize -benchtime 1x ./engine/repo
func BenchmarkChunkSize(b *testing.B) {
	img := imageForMeasurement(b)
	f, err := os.Open(img)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sample, err := io.ReadAll(io.LimitReader(f, 1<<30))
	if err != nil {
		b.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("image %s, sample %d MiB", img, len(sample)>>20)
	b.Logf("%8s %8s %10s %8s %12s %14s", "chunk", "chunks", "MB/s", "ratio", "meta/GiB", "max 1MiB grow")
	for _, cs := range []int{256 << 10, 512 << 10, 1 << 20, 4 << 20} {
		b.Run(fmt.Sprintf("%dKiB", cs>>10), func(b *testing.B) {
			var raw, stored, chunks int64
			var elapsed time.Duration
			for b.Loop() {
				raw, stored, chunks = 0, 0, 0
				start := time.Now()
				for off := 0; off+cs <= len(sample); off += cs {
					c := sample[off : off+cs]
					if isZero(c) {
						continue
					}
					chunks++
					raw += int64(cs)
					stored += int64(min(len(enc.EncodeAll(c, nil)), cs))
				}
				elapsed = time.Since(start)
			}
			// Per stored chunk: an index entry, plus per chunk of the
			// stream (stored or not) a 32-byte list entry.
			meta := float64(chunks*entryLen+int64(len(sample)/cs)*32) * float64(1<<30) / float64(len(sample))
			grow := worstChange(sample, cs, enc)
			b.ReportMetric(float64(raw)/elapsed.Seconds()/1e6, "MB/s")
			b.ReportMetric(float64(stored)/float64(max(raw, 1)), "ratio")
			b.ReportMetric(float64(grow)/(1<<20), "MiB-grow")
			b.Logf("%7dK %8d %10.0f %8.3f %11.0fK %13.2fM", cs>>10, chunks, float64(raw)/elapsed.Seconds()/1e6,
				float64(stored)/float64(max(raw, 1)), meta/1024, float64(grow)/(1<<20))
		})
	}
}

// worstChange writes 1 MiB of random bytes at 32 random 4 KiB-aligned
// offsets (one at a time) and returns the largest growth: the compressed
// size of every chunk the change touches, plus the list part rewritten.
func worstChange(sample []byte, cs int, enc *zstd.Encoder) int64 {
	var worst int64
	noise := make([]byte, 1<<20)
	_, _ = rand.Read(noise)
	var pick [8]byte
	for range 32 {
		_, _ = rand.Read(pick[:])
		off := int(uint64(pick[0])|uint64(pick[1])<<8|uint64(pick[2])<<16) * 4096 % (len(sample) - len(noise))
		off -= off % 4096
		var grow int64
		for c := off / cs * cs; c < off+len(noise); c += cs {
			chunk := append([]byte(nil), sample[c:min(c+cs, len(sample))]...)
			lo, hi := max(off, c), min(off+len(noise), c+len(chunk))
			copy(chunk[lo-c:hi-c], noise[lo-off:])
			grow += int64(min(len(enc.EncodeAll(chunk, nil)), len(chunk)))
		}
		// The list part holding these ids is rewritten: random ids do not
		// compress, so count it whole (a stream of this sample's size).
		grow += int64(min(len(sample)/cs, ListPartLen)) * 32
		worst = max(worst, grow)
	}
	return worst
}

func imageForMeasurement(b *testing.B) string {
	if p := os.Getenv("LIFEBOAT_BENCH_IMAGE"); p != "" {
		return p
	}
	if p := "../../bench/work/ext4.img"; fileExists(p) {
		return p
	}
	testenv.RequireTools(b, "mkfs.ext4")
	mkfs, _ := testenv.LookPath("mkfs.ext4")
	img := filepath.Join(b.TempDir(), "usrlib.img")
	out, err := exec.Command(mkfs, "-q", "-F", "-d", "/usr/lib", img, "2G").CombinedOutput()
	if err != nil {
		b.Fatalf("mkfs.ext4 -d /usr/lib: %v\n%s", err, out)
	}
	return img
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
