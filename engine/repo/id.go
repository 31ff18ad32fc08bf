package repo

import (
	"encoding/hex"
	"fmt"

	"github.com/zeebo/blake3"
)

// ChunkID names a blob by its content: the BLAKE3-256 hash of its plaintext,
// keyed with the repository's id key when the repository is encrypted so
// that ids reveal nothing about the content. The zero ChunkID is reserved
// for "no chunk here" in stream lists.
type ChunkID [32]byte

// String returns the id as 64 lower-case hex digits.
func (id ChunkID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the reserved "no chunk" id.
func (id ChunkID) IsZero() bool { return id == ChunkID{} }

// MarshalText encodes the id as hex, so ids in JSON manifests read as text.
func (id ChunkID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses a hex id.
func (id *ChunkID) UnmarshalText(b []byte) error {
	v, err := ParseChunkID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ParseChunkID parses 64 hex digits.
func ParseChunkID(s string) (ChunkID, error) {
	var id ChunkID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("parse chunk id %q: want %d hex digits, got %d", s, 2*len(id), len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("parse chunk id %q: %w", s, err)
	}
	return id, nil
}

// hasher computes chunk ids: plain BLAKE3-256, or keyed BLAKE3 when a key is
// set. The keyed state is prepared once and cloned per call, which avoids
// re-deriving the key schedule for every chunk.
type hasher struct {
	keyed *blake3.Hasher
}

func newHasher(key []byte) (hasher, error) {
	if key == nil {
		return hasher{}, nil
	}
	h, err := blake3.NewKeyed(key)
	if err != nil {
		return hasher{}, fmt.Errorf("create keyed BLAKE3: %w", err)
	}
	return hasher{keyed: h}, nil
}

func (h hasher) sum(data []byte) ChunkID {
	if h.keyed == nil {
		return blake3.Sum256(data)
	}
	c := h.keyed.Clone()
	_, _ = c.Write(data) // Hasher.Write never fails
	var id ChunkID
	c.Sum(id[:0])
	return id
}
