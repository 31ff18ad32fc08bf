package repo

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
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

// memIndex is the in-memory union of all index files.
type memIndex struct {
	mu    sync.RWMutex
	blobs map[ChunkID]blobLoc
	packs []PackID
	pIdx  map[PackID]int32
	sizes []int64
}

func newMemIndex() *memIndex {
	return &memIndex{blobs: map[ChunkID]blobLoc{}, pIdx: map[PackID]int32{}}
}

// add merges packs; a blob already known keeps its first location, since
// any copy is as good as another.
func (m *memIndex) add(packs []packInfo) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range packs {
		pi, ok := m.pIdx[p.ID]
		if !ok {
			pi = int32(len(m.packs))
			m.packs = append(m.packs, p.ID)
			m.sizes = append(m.sizes, p.Size)
			m.pIdx[p.ID] = pi
		}
		for _, e := range p.Entries {
			if _, dup := m.blobs[e.ID]; dup {
				continue
			}
			m.blobs[e.ID] = locOf(e, pi)
		}
	}
}

func (m *memIndex) has(id ChunkID) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.blobs[id]
	return ok
}

func (m *memIndex) lookup(id ChunkID) (blobLoc, PackID, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	l, ok := m.blobs[id]
	if !ok {
		return l, PackID{}, false
	}
	return l, m.packs[l.pack], true
}

func (m *memIndex) hasPack(id PackID) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.pIdx[id]
	return ok
}
