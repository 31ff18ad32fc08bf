package clone

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/zeebo/blake3"
	"golang.org/x/sync/errgroup"

	"github.com/lifeboat/lifeboat/engine/blockdev"
	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/engine/progress"
)

// span is one contiguous range to copy from the source to the target.
type span struct {
	src, dst, n int64
	// zeroSkip allows skipping the write of all-zero data, because the
	// target range already reads back as zeros.
	zeroSkip bool
}

// chunkSum is the checksum of what was written to [dst, dst+n).
type chunkSum struct {
	dst, n int64
	sum    [32]byte
}

// copier moves spans through a fixed pool of buffers: each worker reads a
// chunk, checksums it and writes it, so memory is workers*chunk whatever
// the disk size, and reads of one chunk overlap writes of others.
type copier struct {
	src io.ReaderAt
	dst io.WriterAt
	// dstReader reads the target back, for delta copies.
	dstReader io.ReaderAt
	chunk     int64
	workers   int
	counters  *progress.Counters
	// sums collects a checksum per chunk for --verify.
	sums bool
	// delta reads the target first and writes only pieces that differ.
	delta bool
}

type piece struct {
	span
	idx int
}

// run copies spans and returns the checksums of what it wrote (when asked)
// in target order.
func (c *copier) run(ctx context.Context, spans []span) ([]chunkSum, error) {
	var pieces []piece
	for _, s := range spans {
		for off := int64(0); off < s.n; off += c.chunk {
			n := min(c.chunk, s.n-off)
			pieces = append(pieces, piece{span: span{src: s.src + off, dst: s.dst + off, n: n, zeroSkip: s.zeroSkip}, idx: len(pieces)})
		}
	}
	var sums []chunkSum
	if c.sums {
		sums = make([]chunkSum, len(pieces))
	}
	g, ctx := errgroup.WithContext(ctx)
	work := make(chan piece)
	g.Go(func() error {
		defer close(work)
		for _, p := range pieces {
			select {
			case work <- p:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	for w := 0; w < c.workers; w++ {
		g.Go(func() error {
			buf := make([]byte, c.chunk)
			var old []byte
			if c.delta {
				old = make([]byte, c.chunk)
			}
			for p := range work {
				b := buf[:p.n]
				if err := fsmap.ReadFull(c.src, b, p.src, "source"); err != nil {
					return err
				}
				if c.sums {
					sums[p.idx] = chunkSum{dst: p.dst, n: p.n, sum: blake3.Sum256(b)}
				}
				same := false
				if c.delta {
					o := old[:p.n]
					if err := fsmap.ReadFull(c.dstReader, o, p.dst, "target"); err != nil {
						return err
					}
					same = bytes.Equal(o, b)
				}
				if !same && !(p.zeroSkip && blockdev.IsZero(b)) {
					if _, err := c.dst.WriteAt(b, p.dst); err != nil {
						return fmt.Errorf("write %d bytes at byte %d of the target: %w", p.n, p.dst, err)
					}
					if c.counters != nil {
						c.counters.AddWritten(p.n)
					}
				}
				if c.counters != nil {
					c.counters.Add(p.n)
				}
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return sums, nil
}

// Mismatch is a byte range of the target whose content differs from what
// was copied.
type Mismatch struct {
	Off, Len int64
}

// verify re-reads every checksummed chunk from r and returns the ranges
// whose checksum differs.
func verify(ctx context.Context, r io.ReaderAt, sums []chunkSum, chunk int64, workers int, counters *progress.Counters) ([]Mismatch, error) {
	var bad []Mismatch
	badCh := make(chan Mismatch, 16)
	done := make(chan struct{})
	go func() {
		for m := range badCh {
			bad = append(bad, m)
		}
		close(done)
	}()
	g, ctx := errgroup.WithContext(ctx)
	work := make(chan chunkSum)
	g.Go(func() error {
		defer close(work)
		for _, s := range sums {
			select {
			case work <- s:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	for w := 0; w < workers; w++ {
		g.Go(func() error {
			buf := make([]byte, chunk)
			for s := range work {
				b := buf[:s.n]
				if err := fsmap.ReadFull(r, b, s.dst, "target for verification"); err != nil {
					return err
				}
				if blake3.Sum256(b) != s.sum {
					badCh <- Mismatch{Off: s.dst, Len: s.n}
				}
				if counters != nil {
					counters.Add(s.n)
				}
			}
			return nil
		})
	}
	err := g.Wait()
	close(badCh)
	<-done
	sort.Slice(bad, func(i, j int) bool { return bad[i].Off < bad[j].Off })
	return bad, err
}

// extentSpans turns a used-block map into spans from srcBase to dstBase,
// merging extents separated by less than mergeGap bytes: reading a small
// unused gap costs less than another request, and copying it keeps the map
// a superset.
func extentSpans(ext []fsmap.Extent, srcBase, dstBase, mergeGap int64, zeroSkip bool) []span {
	var out []span
	for _, e := range ext {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if e.Off+srcBase-(last.src+last.n) <= mergeGap {
				last.n = e.End() + srcBase - last.src
				continue
			}
		}
		out = append(out, span{src: srcBase + e.Off, dst: dstBase + e.Off, n: e.Len, zeroSkip: zeroSkip})
	}
	return out
}

func blake3Sum(b []byte) [32]byte { return blake3.Sum256(b) }
