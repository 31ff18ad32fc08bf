package repo

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

// Compression selects the zstd level for new chunks.
type Compression int

const (
	// CompressDefault is zstd's default level (about zstd -3).
	CompressDefault Compression = iota
	// CompressFastest favours speed.
	CompressFastest
	// CompressBetter trades speed for a smaller repository.
	CompressBetter
)

// DefaultPackSize is the size at which a pack is closed and uploaded: tens of
// MiB, so a network share or S3 sees few requests.
const DefaultPackSize = 32 << 20

// WriterOptions configure a Writer.
type WriterOptions struct {
	Compression Compression
	// PackSize is the size at which a pack is uploaded; 0 picks
	// DefaultPackSize.
	PackSize int
	// Concurrency is the number of pack uploads in flight at most; 0 picks 2.
	// Memory held by a writer is about (Concurrency+1) × PackSize.
	Concurrency int
}

// WriterStats count what a writer did.
type WriterStats struct {
	// ChunksNew and ChunksDedup count blobs stored and blobs found already
	// present (in the index or earlier in this writer).
	ChunksNew, ChunksDedup int
	// BytesIn is the raw size of every blob given; BytesStored the bytes
	// the new blobs take in packs.
	BytesIn, BytesStored int64
	// Packs is the number of packs uploaded.
	Packs int
}

// Writer adds blobs to the repository. Its methods are safe for concurrent
// use: callers hash and save from a worker pool; compression and encryption
// run in the calling goroutine.
type Writer struct {
	r        *Repo
	enc      *zstd.Encoder
	packSize int
	sem      chan struct{}
	wg       sync.WaitGroup

	mu      sync.Mutex
	seen    map[ChunkID]bool // blobs given to this writer since the last Flush
	cur     *bytes.Buffer
	entries []packEntry
	done    []packInfo // uploaded, not yet in an index
	err     error      // first upload failure
	stats   WriterStats
}

// NewWriter returns a writer with its own packs.
func (r *Repo) NewWriter(opt WriterOptions) *Writer {
	ps := opt.PackSize
	if ps <= 0 {
		ps = DefaultPackSize
	}
	if ps > maxPackSize/2 {
		ps = maxPackSize / 2
	}
	c := opt.Concurrency
	if c <= 0 {
		c = 2
	}
	return &Writer{r: r, enc: r.encoder(opt.Compression), packSize: ps, sem: make(chan struct{}, c), seen: map[ChunkID]bool{}}
}

// encoder returns the shared encoder for a level; EncodeAll is safe for
// concurrent use.
func (r *Repo) encoder(c Compression) *zstd.Encoder {
	r.encMu.Lock()
	defer r.encMu.Unlock()
	if e, ok := r.encs[c]; ok {
		return e
	}
	lvl := zstd.SpeedDefault
	switch c {
	case CompressFastest:
		lvl = zstd.SpeedFastest
	case CompressBetter:
		lvl = zstd.SpeedBetterCompression
	}
	e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(lvl), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		// Chunks are 1 MiB by default: a window much larger than a blob
		// buys nothing and costs memory in every encoder.
		zstd.WithWindowSize(2<<20))
	if err != nil {
		// Only invalid options make NewWriter fail; these are constants.
		panic(fmt.Sprintf("repo: create zstd encoder: %v", err))
	}
	r.encs[c] = e
	return e
}

// SaveChunk stores a data chunk whose id the caller computed with Repo.Hash.
// It returns the bytes added to the repository: 0 when the chunk is already
// there. An upload failure of an earlier pack is returned by a later
// SaveChunk or by Flush.
func (w *Writer) SaveChunk(ctx context.Context, id ChunkID, data []byte) (int64, error) {
	return w.saveBlob(ctx, KindData, id, data)
}

func (w *Writer) saveBlob(ctx context.Context, kind BlobKind, id ChunkID, data []byte) (int64, error) {
	if len(data) > MaxBlobSize {
		return 0, fmt.Errorf("save %s blob %v: %d bytes over the limit %d", kind, id, len(data), MaxBlobSize)
	}
	if id.IsZero() {
		return 0, fmt.Errorf("save %s blob: the zero id is reserved for absent chunks", kind)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("save %s blob %v: %w", kind, id, err)
	}
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return 0, err
	}
	w.stats.BytesIn += int64(len(data))
	if w.seen[id] || w.r.idx.has(id) {
		w.stats.ChunksDedup++
		w.mu.Unlock()
		return 0, nil
	}
	// Claim the id before the slow part so a concurrent save of the same
	// content is counted as a duplicate.
	w.seen[id] = true
	w.mu.Unlock()

	blob, flags, err := w.encode(data)
	if err != nil {
		w.mu.Lock()
		delete(w.seen, id)
		w.mu.Unlock()
		return 0, fmt.Errorf("save %s blob %v: %w", kind, id, err)
	}

	if err := w.appendBlob(ctx, packEntry{Kind: kind, Flags: flags, ID: id, Stored: uint32(len(blob)), Raw: uint32(len(data))}, blob); err != nil {
		return 0, err
	}
	return int64(len(blob)), nil
}

// appendBlob adds an encoded blob (e's Offset is set here) to the pack being
// filled and starts its upload once the pack is full.
func (w *Writer) appendBlob(ctx context.Context, e packEntry, blob []byte) error {
	w.mu.Lock()
	if w.cur == nil {
		w.cur = bytes.NewBuffer(make([]byte, 0, w.packSize+w.packSize/8))
	}
	e.Offset = uint32(w.cur.Len())
	w.entries = append(w.entries, e)
	w.cur.Write(blob)
	w.stats.ChunksNew++
	w.stats.BytesStored += int64(len(blob))
	var full *bytes.Buffer
	var entries []packEntry
	if w.cur.Len() >= w.packSize {
		full, entries = w.cur, w.entries
		w.cur, w.entries = nil, nil
	}
	w.mu.Unlock()

	if full != nil {
		return w.startUpload(ctx, full, entries)
	}
	return nil
}

// copyStored adds a blob exactly as another pack stores it (still sealed
// and compressed), for prune's repacking. Unlike SaveChunk it does not skip
// blobs the index already holds: the point is a second copy. The caller
// must have checked the blob. Copies of one id within a writer are made
// once.
func (w *Writer) copyStored(ctx context.Context, e packEntry, stored []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("copy %s blob %v: %w", e.Kind, e.ID, err)
	}
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	if w.seen[e.ID] {
		w.mu.Unlock()
		return nil
	}
	w.seen[e.ID] = true
	w.stats.BytesIn += int64(e.Raw)
	w.mu.Unlock()
	return w.appendBlob(ctx, e, stored)
}

// encode compresses when that saves space, then seals.
func (w *Writer) encode(data []byte) ([]byte, uint8, error) {
	var flags uint8
	plain := data
	c := w.enc.EncodeAll(data, make([]byte, 0, len(data)/2))
	if len(c) < len(data) {
		plain, flags = c, flagZstd
	}
	if w.r.seal.aead == nil {
		if flags == 0 {
			// The pack buffer copies it; no need to copy here.
			return data, 0, nil
		}
		return plain, flags, nil
	}
	out, err := w.r.seal.seal(make([]byte, 0, nonceLen+len(plain)+gcmTagLen), plain)
	if err != nil {
		return nil, 0, err
	}
	return out, flags, nil
}

// startUpload finishes a pack and uploads it in the background once one of
// the upload slots is free; waiting for the slot is what bounds memory.
func (w *Writer) startUpload(ctx context.Context, buf *bytes.Buffer, entries []packEntry) error {
	pack, err := w.finishPack(buf, entries)
	if err != nil {
		return w.fail(err)
	}
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		return w.fail(fmt.Errorf("upload pack: %w", ctx.Err()))
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer func() { <-w.sem }()
		if err := w.upload(ctx, pack, entries); err != nil {
			_ = w.fail(err)
		}
	}()
	return nil
}

func (w *Writer) fail(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
	return w.err
}

// finishPack appends the sealed header and its length.
func (w *Writer) finishPack(buf *bytes.Buffer, entries []packEntry) ([]byte, error) {
	hdr, err := w.r.seal.sealObject(encodePackHeader(entries))
	if err != nil {
		return nil, fmt.Errorf("seal pack header: %w", err)
	}
	buf.Write(hdr)
	var n [packTrailerLen]byte
	binary.LittleEndian.PutUint32(n[:], uint32(len(hdr)))
	buf.Write(n[:])
	return buf.Bytes(), nil
}

func (w *Writer) upload(ctx context.Context, pack []byte, entries []packEntry) error {
	id := PackID(blake3.Sum256(pack))
	name := packName(id)
	if err := w.r.be.Save(ctx, name, int64(len(pack)), bytes.NewReader(pack)); err != nil {
		return fmt.Errorf("upload pack %s: %w", name, err)
	}
	w.mu.Lock()
	w.done = append(w.done, packInfo{ID: id, Size: int64(len(pack)), Entries: entries})
	w.stats.Packs++
	w.mu.Unlock()
	return nil
}

// Flush uploads the pack being filled, waits for every upload, then writes
// one index file covering the packs this writer uploaded since the last
// Flush. When Flush returns nil, every blob saved is durable and indexed.
// The writer may be used again afterwards. Flush must not run concurrently
// with SaveChunk or SaveList on the same writer.
func (w *Writer) Flush(ctx context.Context) (WriterStats, error) {
	done, err := w.uploadAll(ctx)
	if err != nil {
		return w.Stats(), fmt.Errorf("flush: %w", err)
	}
	if len(done) > 0 {
		if _, err := w.r.saveObject(ctx, "index", encodeIndex(&indexFile{Packs: done})); err != nil {
			return w.Stats(), fmt.Errorf("flush: write index: %w", err)
		}
		w.r.idx.add(done)
	}
	w.mu.Lock()
	w.done = w.done[len(done):]
	if len(w.done) == 0 {
		w.done = nil
	}
	w.seen = map[ChunkID]bool{}
	w.mu.Unlock()
	return w.Stats(), nil
}

// uploadAll uploads the pack being filled and waits for every upload. It
// returns the packs uploaded since the last Flush, which no index lists
// yet; prune uses it to write one superseding index of its own.
func (w *Writer) uploadAll(ctx context.Context) ([]packInfo, error) {
	w.mu.Lock()
	buf, entries := w.cur, w.entries
	w.cur, w.entries = nil, nil
	w.mu.Unlock()
	if buf != nil && len(entries) > 0 {
		if err := w.startUpload(ctx, buf, entries); err != nil {
			w.wg.Wait()
			return nil, err
		}
	}
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return nil, w.err
	}
	return w.done, nil
}

// Stats returns the counts so far.
func (w *Writer) Stats() WriterStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// ListRef names a stream's chunk list: Len ids stored in parts of
// ListPartLen ids (the last part may be shorter).
type ListRef struct {
	Len   int64     `json:"len"`
	Parts []ChunkID `json:"parts"`
}

// ListPartLen is the number of ids per list blob. 16Ki ids (512 KiB) keep
// the blob a one-byte change rewrites small, while an 8 TB disk in 1 MiB
// chunks still needs only 512 parts in its manifest.
const ListPartLen = 16 << 10

// SaveList stores a chunk list; the zero ChunkID stands for an absent (all
// zero or unused) chunk.
func (w *Writer) SaveList(ctx context.Context, ids []ChunkID) (ListRef, error) {
	ref := ListRef{Len: int64(len(ids))}
	for start := 0; start < len(ids); start += ListPartLen {
		end := min(start+ListPartLen, len(ids))
		b := make([]byte, 0, 32*(end-start))
		for _, id := range ids[start:end] {
			b = append(b, id[:]...)
		}
		pid := w.r.Hash(b)
		if _, err := w.saveBlob(ctx, KindList, pid, b); err != nil {
			return ListRef{}, fmt.Errorf("save chunk list part %d: %w", len(ref.Parts), err)
		}
		ref.Parts = append(ref.Parts, pid)
	}
	return ref, nil
}
