package ntfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
)

// maxRootIndex bounds how much of the root directory's index is scanned for
// hiberfil.sys: a Windows system volume's root holds a few dozen entries.
const maxRootIndex = 64 << 20

// hiberState is what the hibernation check found.
type hiberState int

const (
	hiberNo hiberState = iota
	hiberYes
	hiberUnknown // root directory too large to scan
)

// hibernated reports whether hiberfil.sys in the root directory starts with
// a hibernation signature, which Windows writes when it hibernates or shuts
// down with Fast Startup. It scans every in-use entry of the root index
// rather than descending the B+ tree, which would need $UpCase collation.
func (v *volume) hibernated(ctx context.Context) (hiberState, error) {
	ref, found, tooBig, err := v.findInRoot(ctx, "hiberfil.sys")
	if err != nil {
		return hiberNo, fmt.Errorf("ntfs root directory: %w", err)
	}
	if tooBig {
		return hiberUnknown, nil
	}
	if !found {
		return hiberNo, nil
	}
	n := int64(ref & (1<<48 - 1))
	seq := uint16(ref >> 48)
	rec, err := v.record(ctx, n)
	if err != nil {
		return hiberNo, fmt.Errorf("ntfs hiberfil.sys: %w", err)
	}
	if binary.LittleEndian.Uint16(rec[0x10:]) != seq {
		// A stale entry for a deleted file; the record was reused.
		return hiberNo, nil
	}
	a, err := v.dataAttr(ctx, n, attrData, "")
	if err != nil {
		return hiberNo, fmt.Errorf("ntfs hiberfil.sys: %w", err)
	}
	var sig [4]byte
	switch {
	case !a.nonResident:
		copy(sig[:], a.value)
	case a.initSize >= 4:
		if err := v.readRuns(a.runs, sig[:], 0, "hiberfil.sys"); err != nil {
			return hiberNo, err
		}
	}
	switch strings.ToLower(string(sig[:])) {
	case "hibr", "wake", "rstr":
		return hiberYes, nil
	}
	return hiberNo, nil
}

// findInRoot looks for a name (ASCII, compared case-insensitively) in the
// root directory's $I30 index and returns its MFT reference.
func (v *volume) findInRoot(ctx context.Context, name string) (ref uint64, found, tooBig bool, err error) {
	rootAttr, err := v.dataAttr(ctx, recRoot, attrIndexRoot, "$I30")
	if err != nil {
		return 0, false, false, err
	}
	if rootAttr.nonResident || len(rootAttr.value) < 0x20 {
		return 0, false, false, fmt.Errorf("$INDEX_ROOT malformed")
	}
	root := rootAttr.value
	if ref, found, err = scanEntries(root[0x10:], name); err != nil || found {
		return ref, found, false, err
	}
	if root[0x10+12]&0x01 == 0 {
		// Small index: every entry is in the root.
		return 0, false, false, nil
	}
	blockSize := int64(binary.LittleEndian.Uint32(root[8:]))
	if blockSize < 512 || blockSize > 64<<10 || blockSize&(blockSize-1) != 0 {
		return 0, false, false, fmt.Errorf("index block size %d invalid", blockSize)
	}
	alloc, err := v.dataAttr(ctx, recRoot, attrIndexAlloc, "$I30")
	if err != nil {
		return 0, false, false, err
	}
	if !alloc.nonResident {
		return 0, false, false, fmt.Errorf("$INDEX_ALLOCATION is resident")
	}
	if alloc.dataSize > maxRootIndex {
		return 0, false, true, nil
	}
	bm, err := v.dataAttr(ctx, recRoot, attrBitmap, "$I30")
	if err != nil {
		return 0, false, false, err
	}
	var bits []byte
	if bm.nonResident {
		if bm.dataSize > maxRootIndex/512/8+8 {
			return 0, false, false, fmt.Errorf("index bitmap of %d bytes too large", bm.dataSize)
		}
		bits = make([]byte, bm.initSize)
		if err := v.readRuns(bm.runs, bits, 0, "root index bitmap"); err != nil {
			return 0, false, false, err
		}
	} else {
		bits = bm.value
	}
	blk := make([]byte, blockSize)
	for i := int64(0); i < alloc.initSize/blockSize; i++ {
		if i/8 >= int64(len(bits)) {
			break
		}
		if bits[i/8]&(1<<(i%8)) == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return 0, false, false, err
		}
		if err := v.readRuns(alloc.runs, blk, i*blockSize, "root index"); err != nil {
			return 0, false, false, err
		}
		if err := v.fixup(blk, "INDX"); err != nil {
			return 0, false, false, fmt.Errorf("index block %d: %w", i, err)
		}
		if ref, found, err = scanEntries(blk[0x18:], name); err != nil || found {
			if err != nil {
				err = fmt.Errorf("index block %d: %w", i, err)
			}
			return ref, found, false, err
		}
	}
	return 0, false, false, nil
}

// scanEntries walks the index entries behind an index header (h starts at
// the header) looking for a $FILE_NAME key with the given name.
func scanEntries(h []byte, name string) (uint64, bool, error) {
	if len(h) < 16 {
		return 0, false, fmt.Errorf("index header truncated")
	}
	start := int(binary.LittleEndian.Uint32(h))
	end := int(binary.LittleEndian.Uint32(h[4:]))
	if start < 16 || end > len(h) || start > end {
		return 0, false, fmt.Errorf("index entries %d..%d outside the %d-byte node", start, end, len(h))
	}
	want := []byte(strings.ToLower(name))
	// Every entry is at least 16 bytes, which bounds the loop.
	for off := start; off+16 <= end; {
		e := h[off:end]
		elen := int(binary.LittleEndian.Uint16(e[8:]))
		klen := int(binary.LittleEndian.Uint16(e[10:]))
		flags := binary.LittleEndian.Uint16(e[12:])
		if elen < 16 || elen > len(e) {
			return 0, false, fmt.Errorf("index entry at %d has bad length %d", off, elen)
		}
		if flags&0x02 != 0 {
			return 0, false, nil
		}
		if klen >= 0x42 && 16+klen <= elen {
			key := e[16 : 16+klen]
			nlen := int(key[0x40])
			if 0x42+2*nlen <= klen && nlen == len(want) {
				got := []byte(strings.ToLower(utf16String(key[0x42 : 0x42+2*nlen])))
				if bytes.Equal(got, want) {
					return binary.LittleEndian.Uint64(e), true, nil
				}
			}
		}
		off += elen
	}
	return 0, false, nil
}
