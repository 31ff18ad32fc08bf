package repo

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// BlobKind says what a blob holds.
type BlobKind uint8

const (
	// KindData is a chunk of stream bytes.
	KindData BlobKind = 0
	// KindList is part of a stream's chunk list: concatenated 32-byte ids.
	KindList BlobKind = 1
)

func (k BlobKind) String() string {
	switch k {
	case KindData:
		return "data"
	case KindList:
		return "list"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Blob flags.
const (
	flagZstd = 1 << 0 // the blob's plaintext is a zstd frame
)

const (
	// MaxBlobSize bounds a blob's raw length. It is far above any chunk or
	// list part and keeps hostile headers from forcing huge allocations.
	MaxBlobSize = 16 << 20
	// maxPackSize keeps offsets within the header's 32-bit fields.
	maxPackSize = 1 << 31

	packHeaderMagic = "LBPH"
	indexMagic      = "LBIX"
	formatVersion   = 1

	entryLen       = 1 + 1 + 32 + 4 + 4 + 4
	packTrailerLen = 4
)

// packEntry describes one blob in a pack.
type packEntry struct {
	Kind   BlobKind
	Flags  uint8
	ID     ChunkID
	Offset uint32
	Stored uint32 // bytes in the pack
	Raw    uint32 // bytes of the decoded blob
}

func appendEntry(b []byte, e packEntry) []byte {
	b = append(b, byte(e.Kind), e.Flags)
	b = append(b, e.ID[:]...)
	b = binary.LittleEndian.AppendUint32(b, e.Offset)
	b = binary.LittleEndian.AppendUint32(b, e.Stored)
	return binary.LittleEndian.AppendUint32(b, e.Raw)
}

func readEntry(b []byte) packEntry {
	var e packEntry
	e.Kind = BlobKind(b[0])
	e.Flags = b[1]
	copy(e.ID[:], b[2:34])
	e.Offset = binary.LittleEndian.Uint32(b[34:])
	e.Stored = binary.LittleEndian.Uint32(b[38:])
	e.Raw = binary.LittleEndian.Uint32(b[42:])
	return e
}

// checkEntry validates one entry against the bytes available for blobs.
func checkEntry(e packEntry, dataLen int64) error {
	if e.Kind != KindData && e.Kind != KindList {
		return fmt.Errorf("blob %v: unknown kind %d", e.ID, e.Kind)
	}
	if e.Flags&^flagZstd != 0 {
		return fmt.Errorf("blob %v: unknown flags 0x%02x", e.ID, e.Flags)
	}
	if e.Raw > MaxBlobSize {
		return fmt.Errorf("blob %v: raw length %d over the limit %d", e.ID, e.Raw, MaxBlobSize)
	}
	if e.Stored == 0 || int64(e.Offset)+int64(e.Stored) > dataLen {
		return fmt.Errorf("blob %v: bytes [%d,+%d) outside the pack's %d data bytes", e.ID, e.Offset, e.Stored, dataLen)
	}
	return nil
}

// encodePackHeader serialises the header plaintext: magic, version, count,
// entries.
func encodePackHeader(entries []packEntry) []byte {
	b := make([]byte, 0, 9+len(entries)*entryLen)
	b = append(b, packHeaderMagic...)
	b = append(b, formatVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(entries)))
	for _, e := range entries {
		b = appendEntry(b, e)
	}
	return b
}

// parsePackHeader decodes a header plaintext for a pack whose blobs occupy
// the first dataLen bytes. Blobs must lie back to back from offset 0 and
// fill exactly dataLen bytes, so a header cannot point outside its pack.
func parsePackHeader(b []byte, dataLen int64) ([]packEntry, error) {
	if len(b) < 9 || string(b[:4]) != packHeaderMagic {
		return nil, errors.New("not a pack header")
	}
	if b[4] != formatVersion {
		return nil, fmt.Errorf("pack header version %d not supported", b[4])
	}
	n := binary.LittleEndian.Uint32(b[5:9])
	if uint64(n)*entryLen != uint64(len(b)-9) {
		return nil, fmt.Errorf("pack header: %d entries do not fit %d bytes", n, len(b)-9)
	}
	entries := make([]packEntry, n)
	var next int64
	for i := range entries {
		e := readEntry(b[9+i*entryLen:])
		if err := checkEntry(e, dataLen); err != nil {
			return nil, fmt.Errorf("pack header entry %d: %w", i, err)
		}
		if int64(e.Offset) != next {
			return nil, fmt.Errorf("pack header entry %d: offset %d, want %d (blobs lie back to back)", i, e.Offset, next)
		}
		next += int64(e.Stored)
		entries[i] = e
	}
	if next != dataLen {
		return nil, fmt.Errorf("pack header: blobs cover %d bytes, pack holds %d", next, dataLen)
	}
	return entries, nil
}

// splitPack locates the header object of a whole pack: it returns the blob
// bytes length and the header object (still sealed).
func splitPack(pack []byte) (dataLen int64, hdr []byte, err error) {
	if len(pack) < packTrailerLen {
		return 0, nil, errors.New("pack too short for its trailer")
	}
	hl := int64(binary.LittleEndian.Uint32(pack[len(pack)-packTrailerLen:]))
	if hl == 0 || hl > int64(len(pack)-packTrailerLen) {
		return 0, nil, fmt.Errorf("pack header length %d does not fit a %d-byte pack", hl, len(pack))
	}
	dataLen = int64(len(pack)) - packTrailerLen - hl
	return dataLen, pack[dataLen : dataLen+hl], nil
}
