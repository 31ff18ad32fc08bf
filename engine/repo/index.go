package repo

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"unsafe"
)

// PackID names a pack: the BLAKE3-256 of its bytes as stored.
type PackID [32]byte

// String returns the id as hex.
func (id PackID) String() string { return hex.EncodeToString(id[:]) }

func packName(id PackID) string {
	s := id.String()
	return "data/" + s[:2] + "/" + s
}

// packInfo is one pack as an index file records it.
type packInfo struct {
	ID      PackID
	Size    int64
	Entries []packEntry
}

// indexFile is the decoded content of one index/<id> object.
type indexFile struct {
	// Supersedes lists index files whose content this one replaces; a reader
	// ignores them even if they still exist (prune writes the new index,
	// then removes the old ones, and may be interrupted in between).
	Supersedes []ChunkID
	Packs      []packInfo
}

func encodeIndex(f *indexFile) []byte {
	n := 4 + 1 + 4 + 32*len(f.Supersedes) + 4
	for _, p := range f.Packs {
		n += 32 + 8 + 4 + entryLen*len(p.Entries)
	}
	b := make([]byte, 0, n)
	b = append(b, indexMagic...)
	b = append(b, formatVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Supersedes)))
	for _, s := range f.Supersedes {
		b = append(b, s[:]...)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Packs)))
	for _, p := range f.Packs {
		b = append(b, p.ID[:]...)
		b = binary.LittleEndian.AppendUint64(b, uint64(p.Size))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p.Entries)))
		for _, e := range p.Entries {
			b = appendEntry(b, e)
		}
	}
	return b
}

// parseIndex decodes an index plaintext. Every count is checked against the
// bytes left before anything is allocated, and every entry against its
// pack's size.
func parseIndex(b []byte) (*indexFile, error) {
	if len(b) < 9 || string(b[:4]) != indexMagic {
		return nil, errors.New("not an index")
	}
	if b[4] != formatVersion {
		return nil, fmt.Errorf("index version %d not supported", b[4])
	}
	rest := b[5:]
	u32 := func(what string) (uint32, error) {
		if len(rest) < 4 {
			return 0, fmt.Errorf("index truncated at %s", what)
		}
		v := binary.LittleEndian.Uint32(rest)
		rest = rest[4:]
		return v, nil
	}
	f := &indexFile{}
	ns, err := u32("supersedes count")
	if err != nil {
		return nil, err
	}
	if uint64(ns)*32 > uint64(len(rest)) {
		return nil, fmt.Errorf("index: %d superseded ids do not fit %d bytes", ns, len(rest))
	}
	f.Supersedes = make([]ChunkID, ns)
	for i := range f.Supersedes {
		copy(f.Supersedes[i][:], rest)
		rest = rest[32:]
	}
	np, err := u32("pack count")
	if err != nil {
		return nil, err
	}
	if uint64(np)*(32+8+4) > uint64(len(rest)) {
		return nil, fmt.Errorf("index: %d packs do not fit %d bytes", np, len(rest))
	}
	f.Packs = make([]packInfo, np)
	for i := range f.Packs {
		p := &f.Packs[i]
		if len(rest) < 44 {
			return nil, fmt.Errorf("index truncated at pack %d", i)
		}
		copy(p.ID[:], rest)
		size := binary.LittleEndian.Uint64(rest[32:])
		ne := binary.LittleEndian.Uint32(rest[40:])
		rest = rest[44:]
		if size < packTrailerLen+1 || size > maxPackSize {
			return nil, fmt.Errorf("index: pack %v: size %d out of range", p.ID, size)
		}
		p.Size = int64(size)
		if uint64(ne)*entryLen > uint64(len(rest)) {
			return nil, fmt.Errorf("index: pack %v: %d entries do not fit %d bytes", p.ID, ne, len(rest))
		}
		p.Entries = make([]packEntry, ne)
		for j := range p.Entries {
			e := readEntry(rest)
			rest = rest[entryLen:]
			// The header's exact size is not in the index; the blobs must at
			// least leave room for a trailer.
			if err := checkEntry(e, p.Size-packTrailerLen-1); err != nil {
				return nil, fmt.Errorf("index: pack %v entry %d: %w", p.ID, j, err)
			}
			p.Entries[j] = e
		}
		if err := linkFrames(p.Entries); err != nil {
			return nil, fmt.Errorf("index: pack %v: %w", p.ID, err)
		}
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("index: %d trailing bytes", len(rest))
	}
	return f, nil
}

// blobLoc is where a blob lives: its frame in a pack and its place in the
// decoded frame.
type blobLoc struct {
	pack     int32 // into memIndex.packs
	kind     BlobKind
	flags    uint8
	offset   uint32
	stored   uint32
	raw      uint32
	rawOff   uint32
	frameRaw uint32
}

// locOf is the location an entry gives, in pack pi.
func locOf(e packEntry, pi int32) blobLoc {
	return blobLoc{pack: pi, kind: e.Kind, flags: e.Flags, offset: e.Offset, stored: e.Stored, raw: e.Raw, rawOff: e.RawOff, frameRaw: e.frameRaw}
}

// memIndex is the in-memory union of all index files. Its blobs are kept
// in sorted slices, one per bucket of ids (by their first 12 bits), rather
// than in a map: 60 bytes per blob against the 132 a Go map took, which
// decides how much unique data a repository can hold within a backup's
// memory budget (docs/BENCHMARKS.md). Ids are uniformly spread, so the
// buckets stay even, and adding blobs rewrites only the buckets they fall
// in, so memory never holds a second copy of the whole index.
type memIndex struct {
	mu      sync.RWMutex
	buckets [indexBuckets][]indexEntry
	packs   []PackID
	pIdx    map[PackID]int32
	sizes   []int64
}

const indexBuckets = 1 << 12

// indexEntry is a blob's id and location.
type indexEntry struct {
	id  ChunkID
	loc blobLoc
}

func bucketOf(id ChunkID) int { return int(id[0])<<4 | int(id[1])>>4 }

func newMemIndex() *memIndex {
	return &memIndex{pIdx: map[PackID]int32{}}
}

// add merges packs; a blob already known keeps its first location, since
// any copy is as good as another.
func (m *memIndex) add(packs []packInfo) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, p := range packs {
		n += len(p.Entries)
	}
	fresh := make([]indexEntry, 0, n)
	for _, p := range packs {
		pi, ok := m.pIdx[p.ID]
		if !ok {
			pi = int32(len(m.packs))
			m.packs = append(m.packs, p.ID)
			m.sizes = append(m.sizes, p.Size)
			m.pIdx[p.ID] = pi
		}
		for _, e := range p.Entries {
			fresh = append(fresh, indexEntry{id: e.ID, loc: locOf(e, pi)})
		}
	}
	// By bucket, then id; among equal ids the first given comes first.
	slices.SortStableFunc(fresh, func(a, b indexEntry) int { return bytes.Compare(a.id[:], b.id[:]) })
	for i := 0; i < len(fresh); {
		b := bucketOf(fresh[i].id)
		j := i
		for j < len(fresh) && bucketOf(fresh[j].id) == b {
			j++
		}
		m.buckets[b] = mergeBucket(m.buckets[b], fresh[i:j])
		i = j
	}
}

// mergeBucket returns old (sorted) with the entries of add (sorted) whose
// ids it lacks, in a slice of exactly the needed size.
func mergeBucket(old, add []indexEntry) []indexEntry {
	out := make([]indexEntry, 0, len(old)+len(add))
	i := 0
	for k, e := range add {
		if k > 0 && add[k-1].id == e.id {
			continue
		}
		for i < len(old) && bytes.Compare(old[i].id[:], e.id[:]) < 0 {
			out = append(out, old[i])
			i++
		}
		if i < len(old) && old[i].id == e.id {
			continue
		}
		out = append(out, e)
	}
	out = append(out, old[i:]...)
	return slices.Clip(out)
}

// find returns the entry for id; the caller holds m.mu.
func (m *memIndex) find(id ChunkID) (*indexEntry, bool) {
	b := m.buckets[bucketOf(id)]
	i, ok := slices.BinarySearchFunc(b, id, func(e indexEntry, id ChunkID) int { return bytes.Compare(e.id[:], id[:]) })
	if !ok {
		return nil, false
	}
	return &b[i], true
}

func (m *memIndex) has(id ChunkID) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.find(id)
	return ok
}

// len is the number of blobs indexed.
func (m *memIndex) len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := 0
	for _, b := range m.buckets {
		n += len(b)
	}
	return n
}

// memory is about the bytes the index holds.
func (m *memIndex) memory() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var n int64
	for _, b := range m.buckets {
		n += int64(cap(b)) * int64(unsafe.Sizeof(indexEntry{}))
	}
	// A pack: its id and size in slices and an entry of the id → number
	// map, with their spare room (measured: about 256 bytes).
	return n + int64(len(m.packs))*256
}

// each calls fn for every blob, in id order; fn must not call m's methods.
func (m *memIndex) each(fn func(ChunkID, blobLoc)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, b := range m.buckets {
		for _, e := range b {
			fn(e.id, e.loc)
		}
	}
}

func (m *memIndex) lookup(id ChunkID) (blobLoc, PackID, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.find(id)
	if !ok {
		return blobLoc{}, PackID{}, false
	}
	return e.loc, m.packs[e.loc.pack], true
}

func (m *memIndex) hasPack(id PackID) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.pIdx[id]
	return ok
}
