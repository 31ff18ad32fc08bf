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

// DefaultGroupSize is how many bytes of new data chunks a writer compresses
// together as one frame. Chunks stay the unit of deduplication and of the
// index; compressing 4 MiB at a time finds the matches that lie across 1 MiB
// chunk borders (measured on an ext4 image of /usr/lib: 4.6% smaller than
// chunks compressed alone, see docs/FORMAT.md), while reading one chunk
// still decodes only its 4 MiB frame.
const DefaultGroupSize = 4 << 20

// WriterOptions configure a Writer.
type WriterOptions struct {
	Compression Compression
	// GroupSize is the raw size at which a group of new data chunks is
	// compressed as one frame; 0 picks DefaultGroupSize, a negative value
	// stores each chunk in a frame of its own.
	GroupSize int
	// PackSize is the size at which a pack is uploaded; 0 picks
	// DefaultPackSize.
	PackSize int
	// Concurrency is the number of pack uploads in flight at most; 0 picks 2.
	// Memory held by a writer is about (Concurrency+1) × PackSize.
	Concurrency int
	// IndexEvery, when positive, makes the writer write an index file
	// each time that many packs have been uploaded since the last one
	// (Flush writes the rest). A long backup's entries then move into the
	// repository's index as it goes instead of piling up in the writer
	// (its own list and dedup set cost about twice what the index does),
	// and a backup killed later finds them indexed. Prune leaves it 0:
	// its new packs must be listed by its own superseding index.
	IndexEvery int
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

	groupSize  int
	indexEvery int
	groupBufs  *bufList // group buffers, 2 × groupSize
	frameBufs  *bufList // compressed frames of groups, 2 × groupSize
	packBufs   *bufList // packs being filled and uploaded

	mu      sync.Mutex
	seen    map[ChunkID]bool // blobs given to this writer since the last Flush
	group   []byte           // data chunks waiting to be compressed together
	members []packEntry      // their entries
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
	gs := opt.GroupSize
	switch {
	case gs == 0:
		gs = DefaultGroupSize
	case gs < 0:
		gs = 0
	case gs > MaxBlobSize/2:
		// A group closes once it reaches gs bytes, so with one more chunk
		// of under gs it stays within MaxBlobSize.
		gs = MaxBlobSize / 2
	}
	w := &Writer{r: r, enc: r.encoder(opt.Compression), packSize: ps, sem: make(chan struct{}, c), seen: map[ChunkID]bool{}, groupSize: gs, indexEvery: opt.IndexEvery}
	// Buffers in use at once: a group being filled and one being
	// compressed per saving goroutine; a pack being filled and one per
	// upload slot.
	w.groupBufs = newBufList(4, 2*gs)
	w.frameBufs = newBufList(4, 2*gs)
	w.packBufs = newBufList(c+1, ps+ps/8)
	return w
}

// maxCompressors bounds the frames compressed at once, whatever the number
// of cores. Each holds its group (4 MiB), zstd's copy of it and its tables
// and the compressed frame, about 12 MiB: with one per core a 16-core
// machine took 420 MiB (measured with GOMAXPROCS=16 and 16 workers), over
// the 256 MiB a backup may use. Four compress about 1.2 GB/s of used data
// (300 MB/s a core on the bench source).
const maxCompressors = 4

// Compressors is how many frames a repository compresses at once: one per
// core (GOMAXPROCS), at most maxCompressors. Backups need no more chunk
// workers than a couple beyond it.
func Compressors() int { return min(runtime.GOMAXPROCS(0), maxCompressors) }

// encoder returns the shared encoder for a level; EncodeAll is safe for
// concurrent use, and blocks while all Compressors() encoders are busy.
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
	e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(lvl), zstd.WithEncoderConcurrency(Compressors()),
		// Every blob is checked by its id (BLAKE3) after decoding, so
		// zstd's own frame checksum would only cost time and 4 bytes.
		zstd.WithEncoderCRC(false),
		// Frames are at most a group of 4 MiB by default: a window much
		// larger buys nothing and costs memory in every encoder.
		zstd.WithWindowSize(DefaultGroupSize))
	if err != nil {
		// Only invalid options make NewWriter fail; these are constants.
		panic(fmt.Sprintf("repo: create zstd encoder: %v", err))
	}
	r.encs[c] = e
	return e
}

// SaveChunk stores a data chunk whose id the caller computed with Repo.Hash.
// It returns the bytes added to the repository by this call: 0 when the
// chunk is already there, and also when it waits in the group being filled
// (the group's frame is counted by the call that completes it). An upload
// failure of an earlier pack is returned by a later SaveChunk or by Flush.
func (w *Writer) SaveChunk(ctx context.Context, id ChunkID, data []byte) (int64, error) {
	return w.saveBlob(ctx, KindData, id, data, false)
}

// saveBlob stores a blob unless this writer or the index has it; with
// force, only this writer's own copies count (prune's re-saving of blobs
// from the packs it is emptying).
func (w *Writer) saveBlob(ctx context.Context, kind BlobKind, id ChunkID, data []byte, force bool) (int64, error) {
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
	if w.seen[id] || !force && w.r.idx.has(id) {
		w.stats.ChunksDedup++
		w.mu.Unlock()
		return 0, nil
	}
	// Claim the id before the slow part so a concurrent save of the same
	// content is counted as a duplicate.
	w.seen[id] = true
	if kind == KindData && len(data) < w.groupSize {
		if w.group == nil {
			w.group = w.groupBufs.get()
		}
		w.members = append(w.members, packEntry{Kind: kind, ID: id, Raw: uint32(len(data)), RawOff: uint32(len(w.group))})
		w.group = append(w.group, data...)
		if len(w.group) < w.groupSize {
			w.mu.Unlock()
			return 0, nil
		}
		raw, members := w.takeGroup()
		w.mu.Unlock()
		return w.storeFrame(ctx, raw, members)
	}
	w.mu.Unlock()
	return w.storeFrame(ctx, data, []packEntry{{Kind: kind, ID: id, Raw: uint32(len(data))}})
}

// takeGroup hands over the group being filled; the caller holds w.mu.
func (w *Writer) takeGroup() ([]byte, []packEntry) {
	raw, members := w.group, w.members
	w.group, w.members = nil, nil
	return raw, members
}

// storeFrame compresses and seals raw, the decoded frame of the blobs
// entries describe (one blob, or a group of data chunks in order), and
// adds it to the pack being filled. It returns the bytes stored.
func (w *Writer) storeFrame(ctx context.Context, raw []byte, entries []packEntry) (int64, error) {
	var frameFlags uint8
	if len(entries) > 1 {
		frameFlags = flagGroup
	} else {
		entries[0].RawOff = 0
	}
	if entries[0].Kind == KindData {
		// Data frames go through the call filter (see callfilter.go);
		// a group's buffer is the writer's own, a single chunk is the
		// caller's and is filtered in a copy.
		if frameFlags&flagGroup == 0 {
			raw = bytes.Clone(raw)
		}
		filterCalls(raw, true)
		frameFlags |= flagCalls
	}
	blob, zflag, err := w.encode(raw)
	if err != nil {
		w.mu.Lock()
		for _, e := range entries {
			delete(w.seen, e.ID)
		}
		w.mu.Unlock()
		return 0, fmt.Errorf("save %s blob %v: %w", entries[0].Kind, entries[0].ID, err)
	}
	for i := range entries {
		entries[i].Flags = zflag | frameFlags
		entries[i].Stored = uint32(len(blob))
		entries[i].frameRaw = uint32(len(raw))
	}
	err = w.appendFrame(ctx, entries, blob)
	// appendFrame copied the frame, so its buffer goes back for reuse
	// unless it is raw itself, and so does a group's raw buffer (a single
	// blob's raw bytes are the caller's).
	if len(blob) > 0 && len(raw) > 0 && &blob[0] != &raw[0] {
		w.frameBufs.put(blob)
	}
	if frameFlags&flagGroup != 0 {
		w.groupBufs.put(raw)
	}
	if err != nil {
		return 0, err
	}
	return int64(len(blob)), nil
}

// appendFrame adds an encoded frame (the entries' Offset is set here) to
// the pack being filled and starts its upload once the pack is full.
func (w *Writer) appendFrame(ctx context.Context, entries []packEntry, blob []byte) error {
	w.mu.Lock()
	if w.cur == nil {
		w.cur = bytes.NewBuffer(w.packBufs.get())
	}
	for i := range entries {
		entries[i].Offset = uint32(w.cur.Len())
	}
	w.entries = append(w.entries, entries...)
	w.cur.Write(blob)
	w.stats.ChunksNew += len(entries)
	w.stats.BytesStored += int64(len(blob))
	var full *bytes.Buffer
	var pending []packEntry
	if w.cur.Len() >= w.packSize {
		full, pending = w.cur, w.entries
		w.cur, w.entries = nil, nil
	}
	w.mu.Unlock()

	if full != nil {
		return w.startUpload(ctx, full, pending)
	}
	return nil
}

// copyFrame adds a frame exactly as another pack stores it (still sealed
// and compressed) with all its blobs, for prune's repacking. Unlike
// SaveChunk it does not skip blobs the index already holds: the point is a
// second copy. The caller must have checked the blobs.
func (w *Writer) copyFrame(ctx context.Context, entries []packEntry, stored []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("copy %s blob %v: %w", entries[0].Kind, entries[0].ID, err)
	}
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	for _, e := range entries {
		w.seen[e.ID] = true
		w.stats.BytesIn += int64(e.Raw)
	}
	w.mu.Unlock()
	return w.appendFrame(ctx, append([]packEntry(nil), entries...), stored)
}

// encode compresses when that saves space, then seals.
func (w *Writer) encode(data []byte) ([]byte, uint8, error) {
	var dst []byte
	if len(data) <= w.frameBufs.size {
		dst = w.frameBufs.get()
	}
	plain, flags := w.enc.EncodeAll(data, dst), uint8(flagZstd)
	if len(plain) >= len(data) {
		w.frameBufs.put(plain)
		plain, flags = data, 0
	}
	if w.r.seal.aead == nil {
		// The pack buffer copies it; no need to copy here.
		return plain, flags, nil
	}
	var out []byte
	if nonceLen+len(plain)+gcmTagLen <= w.frameBufs.size {
		out = w.frameBufs.get()
	}
	out, err := w.r.seal.seal(out, plain)
	if flags != 0 {
		w.frameBufs.put(plain) // sealed into out
	}
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
			return
		}
		w.packBufs.put(pack)
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
	w.r.wrote.Store(true)
	if err := w.r.be.Save(ctx, name, int64(len(pack)), bytes.NewReader(pack)); err != nil {
		return fmt.Errorf("upload pack %s: %w", name, err)
	}
	w.mu.Lock()
	w.done = append(w.done, packInfo{ID: id, Size: int64(len(pack)), Entries: entries})
	w.stats.Packs++
	var batch []packInfo
	if w.indexEvery > 0 && len(w.done) >= w.indexEvery {
		batch, w.done = w.done, nil
	}
	w.mu.Unlock()
	if batch != nil {
		return w.indexPacks(ctx, batch)
	}
	return nil
}

// indexPacks writes an index file for packs this writer uploaded, adds them
// to the repository's index, and then forgets their blobs, which the index
// now answers for.
func (w *Writer) indexPacks(ctx context.Context, packs []packInfo) error {
	if _, err := w.r.saveObject(ctx, "index", encodeIndex(&indexFile{Packs: packs})); err != nil {
		return fmt.Errorf("write index: %w", err)
	}
	w.r.idx.add(packs)
	w.mu.Lock()
	for _, p := range packs {
		for _, e := range p.Entries {
			delete(w.seen, e.ID)
		}
	}
	w.mu.Unlock()
	return nil
}

// Flush uploads the pack being filled, waits for every upload, then writes
// one index file covering the packs this writer uploaded since the last
// Flush. When Flush returns nil, every blob saved is durable and indexed.
// The writer may be used again afterwards. Flush must not run concurrently
// with SaveChunk or a ListBuilder on the same writer.
func (w *Writer) Flush(ctx context.Context) (WriterStats, error) {
	done, err := w.uploadAll(ctx)
	if err != nil {
		return w.Stats(), fmt.Errorf("flush: %w", err)
	}
	if len(done) > 0 {
		if err := w.indexPacks(ctx, done); err != nil {
			return w.Stats(), fmt.Errorf("flush: %w", err)
		}
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
	if len(w.members) > 0 {
		raw, members := w.takeGroup()
		w.mu.Unlock()
		if _, err := w.storeFrame(ctx, raw, members); err != nil {
			_ = w.fail(err)
		}
		w.mu.Lock()
	}
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

// saveListPart stores one part of a chunk list (the zero ChunkID stands
// for an absent chunk) and returns its id.
func (w *Writer) saveListPart(ctx context.Context, ids []ChunkID) (ChunkID, error) {
	b := make([]byte, 0, 32*len(ids))
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	pid := w.r.Hash(b)
	if _, err := w.saveBlob(ctx, KindList, pid, b, false); err != nil {
		return ChunkID{}, err
	}
	return pid, nil
}

// ListBuilder stores a chunk list of a known length part by part as its ids
// become known, in any order, so that a backup holds only the parts not yet
// complete (with chunks handed out in order, one or two) rather than 32
// bytes per MiB of the disk until the end (128 MiB for a 4 TB disk). It is
// safe for concurrent use.
type ListBuilder struct {
	w       *Writer
	n       int64
	mu      sync.Mutex
	pending map[int64]*listPart // by part number
	parts   []ChunkID
	err     error
}

type listPart struct {
	ids    []ChunkID
	filled int
}

// NewList starts a chunk list of n ids.
func (w *Writer) NewList(n int64) *ListBuilder {
	return &ListBuilder{w: w, n: n, pending: map[int64]*listPart{}, parts: make([]ChunkID, (n+ListPartLen-1)/ListPartLen)}
}

// Set gives the id at position i (the zero id for an absent chunk). Every
// position must be set exactly once; the part a Set completes is stored.
func (b *ListBuilder) Set(ctx context.Context, i int64, id ChunkID) error {
	if i < 0 || i >= b.n {
		return fmt.Errorf("chunk list: position %d outside [0, %d)", i, b.n)
	}
	k := i / ListPartLen
	b.mu.Lock()
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return err
	}
	p := b.pending[k]
	if p == nil {
		p = &listPart{ids: make([]ChunkID, min(ListPartLen, b.n-k*ListPartLen))}
		b.pending[k] = p
	}
	p.ids[i-k*ListPartLen] = id
	p.filled++
	done := p.filled == len(p.ids)
	if done {
		delete(b.pending, k)
	}
	b.mu.Unlock()
	if !done {
		return nil
	}
	pid, err := b.w.saveListPart(ctx, p.ids)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.err = fmt.Errorf("save chunk list part %d: %w", k, err)
		return b.err
	}
	b.parts[k] = pid
	return nil
}

// Finish returns the list's reference once every position was set.
func (b *ListBuilder) Finish() (ListRef, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return ListRef{}, b.err
	}
	if len(b.pending) > 0 {
		return ListRef{}, fmt.Errorf("chunk list: %d parts incomplete", len(b.pending))
	}
	for k, pid := range b.parts {
		if pid.IsZero() {
			return ListRef{}, fmt.Errorf("chunk list: part %d never set", k)
		}
	}
	if len(b.parts) == 0 {
		return ListRef{Len: b.n}, nil // an empty list has no parts
	}
	return ListRef{Len: b.n, Parts: b.parts}, nil
}
