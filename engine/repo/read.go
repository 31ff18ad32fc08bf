package repo

import (
	"bytes"
	"container/list"
	"context"
	"fmt"
	"io"
	"sync"
)

// LoadChunk loads a data chunk: a ranged load of just that blob from its
// pack, then decryption, decompression and a check of its id. Damage gives
// an error wrapping ErrDamaged that names the chunk and the pack.
func (r *Repo) LoadChunk(ctx context.Context, id ChunkID) ([]byte, error) {
	return r.loadBlob(ctx, id)
}

func (r *Repo) loadBlob(ctx context.Context, id ChunkID) ([]byte, error) {
	return r.loadBlobFrom(ctx, r.idx, id)
}

// loadBlobFrom loads a blob located by idx, which check and prune read
// afresh from storage rather than trusting the index loaded at Open. A blob
// in a group frame comes from the repository's frame cache, so the chunks
// of one group read one after the other (or by parallel workers) load and
// decode their frame once.
func (r *Repo) loadBlobFrom(ctx context.Context, idx *memIndex, id ChunkID) ([]byte, error) {
	loc, pack, ok := idx.lookup(id)
	if !ok {
		return nil, fmt.Errorf("load chunk %v: %w", id, ErrNotFound)
	}
	name := packName(pack)
	var frame []byte
	var err error
	if loc.flags&flagGroup != 0 {
		frame, err = r.frames.get(frameKey{pack: pack, offset: loc.offset}, func() ([]byte, error) {
			return r.loadFrame(ctx, name, loc)
		})
	} else {
		frame, err = r.loadFrame(ctx, name, loc)
	}
	if err != nil {
		return nil, fmt.Errorf("load chunk %v: %w", id, err)
	}
	data, err := member(frame, loc)
	if err == nil && r.Hash(data) != id {
		err = fmt.Errorf("content does not match its id")
	}
	if err != nil {
		return nil, fmt.Errorf("load chunk %v from pack %s at offset %d: %w: %w", id, name, loc.offset, ErrDamaged, err)
	}
	if loc.flags&flagGroup != 0 {
		// The frame is shared through the cache: the caller gets its own.
		data = append([]byte(nil), data...)
	}
	return data, nil
}

// loadFrame loads and decodes the frame holding loc's blob.
func (r *Repo) loadFrame(ctx context.Context, name string, loc blobLoc) ([]byte, error) {
	b, err := r.be.Load(ctx, name, int64(loc.offset), int64(loc.stored))
	if err != nil {
		return nil, fmt.Errorf("load frame at offset %d of pack %s: %w", loc.offset, name, err)
	}
	frame, err := r.decodeFrame(b, loc)
	if err != nil {
		return nil, fmt.Errorf("load frame at offset %d of pack %s: %w: %w", loc.offset, name, ErrDamaged, err)
	}
	return frame, nil
}

// member returns loc's blob within its decoded frame.
func member(frame []byte, loc blobLoc) ([]byte, error) {
	end := int64(loc.rawOff) + int64(loc.raw)
	if end > int64(len(frame)) {
		return nil, fmt.Errorf("blob at [%d,+%d) of a %d-byte frame", loc.rawOff, loc.raw, len(frame))
	}
	return frame[loc.rawOff:end:end], nil
}

// decodeFrame opens and decompresses a stored frame and checks its length.
func (r *Repo) decodeFrame(b []byte, loc blobLoc) ([]byte, error) {
	plain := b
	if r.seal.aead != nil {
		p, err := r.seal.open(b)
		if err != nil {
			return nil, err
		}
		plain = p
	}
	if loc.flags&flagZstd == 0 {
		if len(plain) != int(loc.frameRaw) {
			return nil, fmt.Errorf("stored %d bytes, index says %d", len(plain), loc.frameRaw)
		}
		if loc.flags&flagCalls != 0 {
			// Unencrypted, plain is the caller's stored bytes.
			plain = bytes.Clone(plain)
			filterCalls(plain, false)
		}
		return plain, nil
	}
	// The decoder is bounded by WithDecoderMaxMemory; the frame's declared
	// size is checked again below.
	out, err := r.dec.DecodeAll(plain, make([]byte, 0, loc.frameRaw))
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	if len(out) != int(loc.frameRaw) {
		return nil, fmt.Errorf("decompressed to %d bytes, index says %d", len(out), loc.frameRaw)
	}
	if loc.flags&flagCalls != 0 {
		filterCalls(out, false)
	}
	return out, nil
}

// frameKey names a frame: its pack and offset.
type frameKey struct {
	pack   PackID
	offset uint32
}

// frameCache keeps the most recently decoded group frames and lets
// concurrent readers of one frame share a single load.
type frameCache struct {
	mu       sync.Mutex
	cache    *lru[frameKey, []byte]
	inflight map[frameKey]*frameCall
}

type frameCall struct {
	done  chan struct{}
	frame []byte
	err   error
}

// cachedFrames is how many decoded group frames a repository keeps: enough
// for the parallel readers of a restore to find the frame the group's other
// chunks were read from (4 MiB each by default).
const cachedFrames = 6

func newFrameCache() *frameCache {
	return &frameCache{cache: newLRU[frameKey, []byte](cachedFrames), inflight: map[frameKey]*frameCall{}}
}

// get returns the frame for k from the cache, from a load in flight, or by
// calling load. Failures are not cached.
func (c *frameCache) get(k frameKey, load func() ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	if f, ok := c.cache.get(k); ok {
		c.mu.Unlock()
		return f, nil
	}
	if call, ok := c.inflight[k]; ok {
		c.mu.Unlock()
		<-call.done
		return call.frame, call.err
	}
	call := &frameCall{done: make(chan struct{})}
	c.inflight[k] = call
	c.mu.Unlock()

	call.frame, call.err = load()
	c.mu.Lock()
	delete(c.inflight, k)
	if call.err == nil {
		c.cache.put(k, call.frame)
	}
	c.mu.Unlock()
	close(call.done)
	return call.frame, call.err
}

// LoadList loads a whole chunk list.
func (r *Repo) LoadList(ctx context.Context, ref ListRef) ([]ChunkID, error) {
	if err := ref.check(); err != nil {
		return nil, fmt.Errorf("load chunk list: %w", err)
	}
	// Grow as parts arrive rather than trusting Len for one allocation.
	ids := make([]ChunkID, 0, min(ref.Len, ListPartLen))
	for i := range ref.Parts {
		part, err := r.loadListPart(ctx, ref, i)
		if err != nil {
			return nil, err
		}
		ids = append(ids, part...)
	}
	return ids, nil
}

// check validates a ListRef's shape against its length, so later arithmetic
// on it is safe.
func (ref ListRef) check() error {
	if ref.Len < 0 {
		return fmt.Errorf("negative list length %d", ref.Len)
	}
	if int64(len(ref.Parts)) != ceilDiv(ref.Len, ListPartLen) {
		return fmt.Errorf("list of %d ids needs %d parts, has %d", ref.Len, ceilDiv(ref.Len, ListPartLen), len(ref.Parts))
	}
	return nil
}

func (r *Repo) loadListPart(ctx context.Context, ref ListRef, i int) ([]ChunkID, error) {
	return r.loadListPartFrom(ctx, r.idx, ref, i)
}

func (r *Repo) loadListPartFrom(ctx context.Context, idx *memIndex, ref ListRef, i int) ([]ChunkID, error) {
	want := min(int64(ListPartLen), ref.Len-int64(i)*ListPartLen)
	b, err := r.loadBlobFrom(ctx, idx, ref.Parts[i])
	if err != nil {
		return nil, fmt.Errorf("load chunk list part %d: %w", i, err)
	}
	if int64(len(b)) != want*32 {
		return nil, fmt.Errorf("load chunk list part %d (%v): %w: %d bytes, want %d", i, ref.Parts[i], ErrDamaged, len(b), want*32)
	}
	ids := make([]ChunkID, want)
	for j := range ids {
		copy(ids[j][:], b[j*32:])
	}
	return ids, nil
}

// Stream is a sequence of bytes stored as fixed-size chunks: the unit a
// snapshot holds (a partition, a disk's boot area).
type Stream struct {
	Name      string  `json:"name"`
	Size      int64   `json:"size"`
	ChunkSize int     `json:"chunk_size"`
	Chunks    ListRef `json:"chunks"`
}

// check validates a stream's geometry.
func (s Stream) check() error {
	if s.Size < 0 || s.ChunkSize <= 0 || s.ChunkSize > MaxBlobSize {
		return fmt.Errorf("stream %q: size %d or chunk size %d out of range", s.Name, s.Size, s.ChunkSize)
	}
	if want := ceilDiv(s.Size, int64(s.ChunkSize)); s.Chunks.Len != want {
		return fmt.Errorf("stream %q: %d bytes in %d-byte chunks need %d chunks, list has %d", s.Name, s.Size, s.ChunkSize, want, s.Chunks.Len)
	}
	if err := s.Chunks.check(); err != nil {
		return fmt.Errorf("stream %q: %w", s.Name, err)
	}
	return nil
}

// StreamReader reads any byte range of a stream, loading only the chunks the
// range needs. It is safe for concurrent use.
type StreamReader struct {
	r   *Repo
	ctx context.Context
	s   Stream

	mu     sync.Mutex
	parts  *lru[int, []ChunkID]
	chunks *lru[int64, []byte]
}

// Cache sizes: a few list parts (512 KiB each) and decoded chunks.
const (
	readerListParts = 4
	readerChunks    = 8
)

// StreamReader returns a reader over s. ctx bounds every load the reader
// makes.
func (r *Repo) StreamReader(ctx context.Context, s Stream) (*StreamReader, error) {
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("open stream reader: %w", err)
	}
	return &StreamReader{r: r, ctx: ctx, s: s, parts: newLRU[int, []ChunkID](readerListParts), chunks: newLRU[int64, []byte](readerChunks)}, nil
}

// Size returns the stream's length.
func (sr *StreamReader) Size() int64 { return sr.s.Size }

// ReadAt implements io.ReaderAt. Absent chunks read as zeros.
func (sr *StreamReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read stream %q: negative offset %d", sr.s.Name, off)
	}
	if off >= sr.s.Size {
		return 0, io.EOF
	}
	n := 0
	cs := int64(sr.s.ChunkSize)
	for n < len(p) && off < sr.s.Size {
		ci := off / cs
		within := off - ci*cs
		data, err := sr.chunk(ci)
		if err != nil {
			return n, err
		}
		var c int
		if data == nil {
			c = int(min(int64(len(p)-n), min(cs, sr.s.Size-ci*cs)-within))
			clear(p[n : n+c])
		} else {
			c = copy(p[n:], data[within:])
		}
		n += c
		off += int64(c)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// chunk returns chunk ci decoded, or nil for an absent chunk.
func (sr *StreamReader) chunk(ci int64) ([]byte, error) {
	sr.mu.Lock()
	if d, ok := sr.chunks.get(ci); ok {
		sr.mu.Unlock()
		return d, nil
	}
	sr.mu.Unlock()
	pi := int(ci / ListPartLen)
	sr.mu.Lock()
	ids, ok := sr.parts.get(pi)
	sr.mu.Unlock()
	if !ok {
		var err error
		ids, err = sr.r.loadListPart(sr.ctx, sr.s.Chunks, pi)
		if err != nil {
			return nil, fmt.Errorf("read stream %q: %w", sr.s.Name, err)
		}
		sr.mu.Lock()
		sr.parts.put(pi, ids)
		sr.mu.Unlock()
	}
	id := ids[ci%ListPartLen]
	if id.IsZero() {
		return nil, nil
	}
	d, err := sr.r.LoadChunk(sr.ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read stream %q chunk %d (bytes %d..): %w", sr.s.Name, ci, ci*int64(sr.s.ChunkSize), err)
	}
	if want := min(int64(sr.s.ChunkSize), sr.s.Size-ci*int64(sr.s.ChunkSize)); int64(len(d)) != want {
		return nil, fmt.Errorf("read stream %q chunk %d: %w: %d bytes, want %d", sr.s.Name, ci, ErrDamaged, len(d), want)
	}
	sr.mu.Lock()
	sr.chunks.put(ci, d)
	sr.mu.Unlock()
	return d, nil
}

// lru is a small least-recently-used cache; the caller locks.
type lru[K comparable, V any] struct {
	max   int
	order *list.List // front: most recent; values are K
	items map[K]*list.Element
	vals  map[K]V
}

func newLRU[K comparable, V any](n int) *lru[K, V] {
	return &lru[K, V]{max: n, order: list.New(), items: map[K]*list.Element{}, vals: map[K]V{}}
}

func (c *lru[K, V]) get(k K) (V, bool) {
	e, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(e)
	return c.vals[k], true
}

func (c *lru[K, V]) put(k K, v V) {
	if e, ok := c.items[k]; ok {
		c.order.MoveToFront(e)
		c.vals[k] = v
		return
	}
	c.items[k] = c.order.PushFront(k)
	c.vals[k] = v
	for c.order.Len() > c.max {
		last := c.order.Back()
		lk := last.Value.(K)
		c.order.Remove(last)
		delete(c.items, lk)
		delete(c.vals, lk)
	}
}

// ceilDiv divides non-negative a by positive b, rounding up, without the
// overflow of (a+b-1)/b near the top of the range.
func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 {
		q++
	}
	return q
}
