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
	flagZstd   = 1 << 0 // the blob's plaintext is a zstd frame
	flagGroup  = 1 << 1 // the blob shares its stored frame with its neighbours
	flagCalls  = 1 << 2 // the decoded frame went through the x86 call filter
	knownFlags = flagZstd | flagGroup | flagCalls
)

const (
	// MaxBlobSize bounds a blob's raw length. It is far above any chunk or
	// list part and keeps hostile headers from forcing huge allocations.
	MaxBlobSize = 16 << 20
	// maxPackSize keeps offsets within the header's 32-bit fields.
	maxPackSize = 1 << 31

	packHeaderMagic = "LBPH"
	indexMagic      = "LBIX"
	formatVersion   = 2

	entryLen       = 1 + 1 + 32 + 4 + 4 + 4 + 4
	packTrailerLen = 4
)

// packEntry describes one blob in a pack. A blob is stored in a frame: the
// bytes [Offset, Offset+Stored) of the pack, sealed and perhaps compressed.
// Most frames hold one blob; a group frame (flagGroup) holds several
// consecutive data chunks compressed together, each entry naming the same
// frame and its own place in the decoded frame.
type packEntry struct {
	Kind   BlobKind
	Flags  uint8
	ID     ChunkID
	Offset uint32
	Stored uint32 // bytes of the frame in the pack
	Raw    uint32 // bytes of the decoded blob
	RawOff uint32 // where the blob starts in the decoded frame

	// frameRaw is the decoded frame's length: not stored, derived by
	// linkFrames from the entries sharing the frame.
	frameRaw uint32
}

func appendEntry(b []byte, e packEntry) []byte {
	b = append(b, byte(e.Kind), e.Flags)
	b = append(b, e.ID[:]...)
	b = binary.LittleEndian.AppendUint32(b, e.Offset)
	b = binary.LittleEndian.AppendUint32(b, e.Stored)
	b = binary.LittleEndian.AppendUint32(b, e.Raw)
	return binary.LittleEndian.AppendUint32(b, e.RawOff)
}

func readEntry(b []byte) packEntry {
	var e packEntry
	e.Kind = BlobKind(b[0])
	e.Flags = b[1]
	copy(e.ID[:], b[2:34])
	e.Offset = binary.LittleEndian.Uint32(b[34:])
	e.Stored = binary.LittleEndian.Uint32(b[38:])
	e.Raw = binary.LittleEndian.Uint32(b[42:])
	e.RawOff = binary.LittleEndian.Uint32(b[46:])
	return e
}

// checkEntry validates one entry against the bytes available for blobs.
func checkEntry(e packEntry, dataLen int64) error {
	if e.Kind != KindData && e.Kind != KindList {
		return fmt.Errorf("blob %v: unknown kind %d", e.ID, e.Kind)
	}
	if e.Flags&^knownFlags != 0 {
		return fmt.Errorf("blob %v: unknown flags 0x%02x", e.ID, e.Flags)
	}
	if e.Raw > MaxBlobSize {
		return fmt.Errorf("blob %v: raw length %d over the limit %d", e.ID, e.Raw, MaxBlobSize)
	}
	if e.Flags&flagGroup != 0 && e.Kind != KindData {
		return fmt.Errorf("blob %v: a %s blob in a group frame", e.ID, e.Kind)
	}
	if e.Flags&flagCalls != 0 && e.Kind != KindData {
		return fmt.Errorf("blob %v: a %s blob through the call filter", e.ID, e.Kind)
	}
	if e.Flags&flagGroup == 0 && e.RawOff != 0 {
		return fmt.Errorf("blob %v: offset %d in a frame of its own", e.ID, e.RawOff)
	}
	if e.Stored == 0 || int64(e.Offset)+int64(e.Stored) > dataLen {
		return fmt.Errorf("blob %v: bytes [%d,+%d) outside the pack's %d data bytes", e.ID, e.Offset, e.Stored, dataLen)
	}
	return nil
}

// linkFrames checks how entries share frames and sets each one's frameRaw.
// The entries of a group frame are consecutive, name the same stored bytes
// with the same flags, and tile the decoded frame from its start in order;
// a decoded frame is at most MaxBlobSize bytes. Entries are as listed by one
// pack header or one index file.
func linkFrames(entries []packEntry) error {
	for i := 0; i < len(entries); {
		e := entries[i]
		if e.Flags&flagGroup == 0 {
			entries[i].frameRaw = e.Raw
			i++
			continue
		}
		j := i
		var total int64
		for ; j < len(entries) && entries[j].Flags&flagGroup != 0 && entries[j].Offset == e.Offset; j++ {
			m := entries[j]
			if m.Stored != e.Stored || m.Flags != e.Flags {
				return fmt.Errorf("blob %v: stored length or flags differ from its group's", m.ID)
			}
			if int64(m.RawOff) != total {
				return fmt.Errorf("blob %v: at %d in its group frame, want %d", m.ID, m.RawOff, total)
			}
			total += int64(m.Raw)
		}
		if total > MaxBlobSize {
			return fmt.Errorf("group frame at offset %d: %d bytes decoded, over the limit %d", e.Offset, total, MaxBlobSize)
		}
		for k := i; k < j; k++ {
			entries[k].frameRaw = uint32(total)
		}
		i = j
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
		entries[i] = e
		if i > 0 && e.Flags&flagGroup != 0 && entries[i-1].Flags&flagGroup != 0 && entries[i-1].Offset == e.Offset {
			continue // another blob of the same group frame
		}
		if int64(e.Offset) != next {
			return nil, fmt.Errorf("pack header entry %d: offset %d, want %d (frames lie back to back)", i, e.Offset, next)
		}
		next += int64(e.Stored)
	}
	if err := linkFrames(entries); err != nil {
		return nil, fmt.Errorf("pack header: %w", err)
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
