package ntfs

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"unicode/utf16"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

// Attribute types this package reads.
const (
	attrList        = 0x20
	attrFileName    = 0x30
	attrVolumeName  = 0x60
	attrVolumeInfo  = 0x70
	attrData        = 0x80
	attrIndexRoot   = 0x90
	attrIndexAlloc  = 0xa0
	attrBitmap      = 0xb0
	attrEnd         = 0xffffffff
	recordInUse     = 0x0001
	fixupStride     = 512
	maxAttrListSize = 4 << 20
	maxSize         = int64(1) << 56 // bytes; far beyond any NTFS volume
)

// run maps length clusters starting at vcn to lcn; lcn is -1 for a sparse
// run (reads as zeroes, occupies no clusters).
type run struct {
	vcn, lcn, length int64
}

// attr is one attribute record of an MFT record, decoded.
type attr struct {
	typ         uint32
	name        string
	nonResident bool
	value       []byte // resident value
	lowVCN      int64
	highVCN     int64
	allocSize   int64
	dataSize    int64
	initSize    int64
	runs        []run // non-resident runs, vcn absolute
}

// fixup checks and undoes the update sequence of a multi-sector record:
// the last two bytes of every 512-byte stride were replaced on write by the
// sequence number, whose saved originals follow it in the array.
func (v *volume) fixup(rec []byte, magic string) error {
	if string(rec[:4]) != magic {
		return fmt.Errorf("bad magic %q, want %q", rec[:4], magic)
	}
	usaOff := int(binary.LittleEndian.Uint16(rec[4:]))
	usaCount := int(binary.LittleEndian.Uint16(rec[6:]))
	strides := len(rec) / fixupStride
	if usaCount != strides+1 {
		return fmt.Errorf("update sequence of %d entries for a %d-byte record", usaCount, len(rec))
	}
	if usaOff < 8 || usaOff%2 != 0 || usaOff+2*usaCount > fixupStride-2 {
		return fmt.Errorf("update sequence at offset %d out of range", usaOff)
	}
	usn := rec[usaOff : usaOff+2]
	for i := 0; i < strides; i++ {
		end := (i+1)*fixupStride - 2
		if rec[end] != usn[0] || rec[end+1] != usn[1] {
			return fmt.Errorf("torn write: sector %d of the record does not carry the update sequence number", i)
		}
	}
	for i := 0; i < strides; i++ {
		end := (i+1)*fixupStride - 2
		copy(rec[end:end+2], rec[usaOff+2*(i+1):usaOff+2*(i+1)+2])
	}
	return nil
}

// record reads MFT record n through $MFT's runs and applies its fixups.
func (v *volume) record(ctx context.Context, n int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read ntfs MFT record %d: %w", n, err)
	}
	if n < 0 || n >= v.mftSize/v.b.recordSize {
		return nil, fmt.Errorf("ntfs MFT record %d outside the %d-record $MFT", n, v.mftSize/v.b.recordSize)
	}
	rec := make([]byte, v.b.recordSize)
	if err := v.readRuns(v.mftRuns, rec, n*v.b.recordSize, fmt.Sprintf("MFT record %d", n)); err != nil {
		return nil, err
	}
	if err := v.fixup(rec, "FILE"); err != nil {
		return nil, fmt.Errorf("ntfs MFT record %d: %w", n, err)
	}
	if binary.LittleEndian.Uint16(rec[0x16:])&recordInUse == 0 {
		return nil, fmt.Errorf("ntfs MFT record %d is not in use", n)
	}
	return rec, nil
}

// readRuns reads len(p) bytes at byte offset off of the data the runs map.
// Sparse runs read as zeroes; unmapped bytes are an error.
func (v *volume) readRuns(runs []run, p []byte, off int64, what string) error {
	cs := v.b.clusterSize
	for len(p) > 0 {
		vcn := off / cs
		i := sort.Search(len(runs), func(i int) bool { return runs[i].vcn+runs[i].length > vcn })
		if i == len(runs) || runs[i].vcn > vcn {
			return fmt.Errorf("read ntfs %s: byte %d not mapped by its runs", what, off)
		}
		r := runs[i]
		avail := (r.vcn+r.length)*cs - off
		if avail <= 0 {
			return fmt.Errorf("read ntfs %s: run at VCN %d maps no bytes at %d", what, r.vcn, off)
		}
		n := min(int64(len(p)), avail)
		if r.lcn < 0 {
			clear(p[:n])
		} else {
			disk := r.lcn*cs + (off - r.vcn*cs)
			if err := fsmap.ReadFull(v.r, p[:n], disk, "ntfs "+what); err != nil {
				return err
			}
		}
		p = p[n:]
		off += n
	}
	return nil
}

// parseAttrs decodes the attribute records of an MFT record whose fixups
// have been applied.
func (v *volume) parseAttrs(rec []byte) ([]attr, error) {
	inUse := int(binary.LittleEndian.Uint32(rec[0x18:]))
	if inUse > len(rec) || inUse < 0x30 {
		return nil, fmt.Errorf("bytes in use %d out of range for a %d-byte record", inUse, len(rec))
	}
	off := int(binary.LittleEndian.Uint16(rec[0x14:]))
	var out []attr
	// Each attribute is at least 16 bytes long, which bounds the loop.
	for {
		if off+4 > inUse {
			return nil, fmt.Errorf("attributes run past the %d bytes in use without an end marker", inUse)
		}
		typ := binary.LittleEndian.Uint32(rec[off:])
		if typ == attrEnd {
			return out, nil
		}
		if off+0x18 > inUse {
			return nil, fmt.Errorf("attribute at offset %d truncated", off)
		}
		length := int(binary.LittleEndian.Uint32(rec[off+4:]))
		if length < 0x18 || length%8 != 0 || off+length > inUse {
			return nil, fmt.Errorf("attribute %#x at offset %d has bad length %d", typ, off, length)
		}
		a, err := v.parseAttr(rec[off : off+length])
		if err != nil {
			return nil, fmt.Errorf("attribute %#x at offset %d: %w", typ, off, err)
		}
		out = append(out, a)
		off += length
	}
}

// parseAttr decodes one attribute record (b is exactly its length).
func (v *volume) parseAttr(b []byte) (attr, error) {
	a := attr{typ: binary.LittleEndian.Uint32(b), nonResident: b[8] != 0}
	nameLen := int(b[9])
	nameOff := int(binary.LittleEndian.Uint16(b[0x0a:]))
	if nameLen > 0 {
		if nameOff+2*nameLen > len(b) {
			return a, fmt.Errorf("name runs past the attribute")
		}
		a.name = utf16String(b[nameOff : nameOff+2*nameLen])
	}
	if !a.nonResident {
		vlen := int(binary.LittleEndian.Uint32(b[0x10:]))
		voff := int(binary.LittleEndian.Uint16(b[0x14:]))
		if voff > len(b) || vlen > len(b)-voff {
			return a, fmt.Errorf("resident value (%d bytes at %d) runs past the attribute", vlen, voff)
		}
		a.value = b[voff : voff+vlen]
		a.dataSize, a.initSize, a.allocSize = int64(vlen), int64(vlen), int64(vlen)
		return a, nil
	}
	if len(b) < 0x40 {
		return a, fmt.Errorf("non-resident attribute of %d bytes too short", len(b))
	}
	low := binary.LittleEndian.Uint64(b[0x10:])
	high := binary.LittleEndian.Uint64(b[0x18:])
	// highVCN is -1 for an empty attribute.
	maxVCN := uint64(v.maxVCN())
	if low >= maxVCN || (int64(high) != -1 && (high >= maxVCN || high < low)) {
		return a, fmt.Errorf("VCN range %d..%d invalid", low, int64(high))
	}
	a.lowVCN, a.highVCN = int64(low), int64(high)
	mpOff := int(binary.LittleEndian.Uint16(b[0x20:]))
	if mpOff < 0x40 || mpOff > len(b) {
		return a, fmt.Errorf("mapping pairs offset %d out of range", mpOff)
	}
	sizes := [3]uint64{binary.LittleEndian.Uint64(b[0x28:]), binary.LittleEndian.Uint64(b[0x30:]), binary.LittleEndian.Uint64(b[0x38:])}
	for _, s := range sizes {
		if s > uint64(maxSize) {
			return a, fmt.Errorf("size %d out of range", s)
		}
	}
	a.allocSize, a.dataSize, a.initSize = int64(sizes[0]), int64(sizes[1]), int64(sizes[2])
	runs, err := v.decodeRuns(b[mpOff:], a.lowVCN, a.highVCN)
	if err != nil {
		return a, err
	}
	a.runs = runs
	return a, nil
}

// decodeRuns decodes mapping pairs: per run, a header byte whose low nibble
// is the byte count of the run length and high nibble that of the signed
// LCN delta (0: sparse run), both little-endian.
func (v *volume) decodeRuns(mp []byte, lowVCN, highVCN int64) ([]run, error) {
	var runs []run
	vcn, lcn := lowVCN, int64(0)
	for i := 0; i < len(mp); {
		h := mp[i]
		if h == 0 {
			break
		}
		ls, os := int(h&0x0f), int(h>>4)
		if ls == 0 || ls > 8 || os > 8 || i+1+ls+os > len(mp) {
			return nil, fmt.Errorf("data run header %#x at byte %d invalid", h, i)
		}
		length := signedLE(mp[i+1 : i+1+ls])
		if length <= 0 || length > v.maxVCN()-vcn {
			return nil, fmt.Errorf("data run at VCN %d has absurd length %d", vcn, length)
		}
		r := run{vcn: vcn, lcn: -1, length: length}
		if os > 0 {
			lcn += signedLE(mp[i+1+ls : i+1+ls+os])
			if lcn < 0 || lcn >= v.nClusters || length > v.nClusters-lcn {
				return nil, fmt.Errorf("data run of %d clusters at cluster %d outside the %d-cluster volume", length, lcn, v.nClusters)
			}
			r.lcn = lcn
		}
		runs = append(runs, r)
		vcn += length
		i += 1 + ls + os
	}
	if highVCN >= lowVCN && vcn != highVCN+1 {
		return nil, fmt.Errorf("data runs map VCNs %d..%d, attribute says %d..%d", lowVCN, vcn-1, lowVCN, highVCN)
	}
	return runs, nil
}

// maxVCN bounds cluster numbers within an attribute so that byte offsets
// (VCN times cluster size) cannot overflow.
func (v *volume) maxVCN() int64 { return maxSize / v.b.clusterSize }

// signedLE decodes a little-endian two's complement integer of 1 to 8 bytes.
func signedLE(b []byte) int64 {
	var u uint64
	for i := len(b) - 1; i >= 0; i-- {
		u = u<<8 | uint64(b[i])
	}
	if n := uint(len(b)) * 8; n < 64 && b[len(b)-1]&0x80 != 0 {
		u |= ^uint64(0) << n
	}
	return int64(u)
}

// runsLen returns the number of clusters (VCNs) the runs map.
func runsLen(runs []run) int64 {
	if len(runs) == 0 {
		return 0
	}
	last := runs[len(runs)-1]
	return last.vcn + last.length - runs[0].vcn
}

// dataAttr returns the attribute of the given type and name of record n as
// one non-resident attribute with every run, joining the segments an
// attribute list spreads over extension records. Resident attributes are
// returned as they are.
func (v *volume) dataAttr(ctx context.Context, n int64, typ uint32, name string) (*attr, error) {
	rec, err := v.record(ctx, n)
	if err != nil {
		return nil, err
	}
	attrs, err := v.parseAttrs(rec)
	if err != nil {
		return nil, fmt.Errorf("MFT record %d: %w", n, err)
	}
	var list *attr
	var segs []attr
	for i := range attrs {
		if attrs[i].typ == attrList {
			list = &attrs[i]
		}
		if attrs[i].typ == typ && attrs[i].name == name {
			segs = append(segs, attrs[i])
		}
	}
	if list != nil {
		if segs, err = v.listSegments(ctx, n, list, typ, name); err != nil {
			return nil, err
		}
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("MFT record %d has no attribute %#x %q", n, typ, name)
	}
	if !segs[0].nonResident {
		if len(segs) > 1 {
			return nil, fmt.Errorf("MFT record %d: resident attribute %#x %q appears %d times", n, typ, name, len(segs))
		}
		return &segs[0], nil
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].lowVCN < segs[j].lowVCN })
	out := segs[0]
	if out.lowVCN != 0 {
		return nil, fmt.Errorf("MFT record %d: attribute %#x %q has no segment at VCN 0", n, typ, name)
	}
	out.runs = append([]run(nil), segs[0].runs...)
	next := out.lowVCN + runsLen(out.runs)
	for _, s := range segs[1:] {
		if !s.nonResident || s.lowVCN != next {
			return nil, fmt.Errorf("MFT record %d: attribute %#x %q segment at VCN %d, expected %d", n, typ, name, s.lowVCN, next)
		}
		out.runs = append(out.runs, s.runs...)
		next += runsLen(s.runs)
	}
	if err := v.checkDataSize(&out, fmt.Sprintf("MFT record %d attribute %#x", n, typ)); err != nil {
		return nil, err
	}
	return &out, nil
}

// listSegments collects the attributes of a type and name that the
// attribute list of base record n points to, in the base and extension
// records.
func (v *volume) listSegments(ctx context.Context, n int64, list *attr, typ uint32, name string) ([]attr, error) {
	var data []byte
	if list.nonResident {
		if list.dataSize > maxAttrListSize || list.dataSize > runsLen(list.runs)*v.b.clusterSize {
			return nil, fmt.Errorf("MFT record %d: attribute list of %d bytes too large", n, list.dataSize)
		}
		data = make([]byte, list.dataSize)
		if err := v.readRuns(list.runs, data, 0, fmt.Sprintf("attribute list of MFT record %d", n)); err != nil {
			return nil, err
		}
	} else {
		data = list.value
	}
	var recs []int64
	seen := map[int64]bool{}
	for off := 0; off+0x1a <= len(data); {
		elen := int(binary.LittleEndian.Uint16(data[off+4:]))
		if elen < 0x1a || off+elen > len(data) {
			return nil, fmt.Errorf("MFT record %d: attribute list entry at %d has bad length %d", n, off, elen)
		}
		e := data[off : off+elen]
		etyp := binary.LittleEndian.Uint32(e)
		nlen, noff := int(e[6]), int(e[7])
		if noff+2*nlen > elen {
			return nil, fmt.Errorf("MFT record %d: attribute list entry at %d: name runs past it", n, off)
		}
		ename := ""
		if nlen > 0 {
			ename = utf16String(e[noff : noff+2*nlen])
		}
		ref := int64(binary.LittleEndian.Uint64(e[0x10:]) & (1<<48 - 1))
		if etyp == typ && ename == name && !seen[ref] {
			seen[ref] = true
			recs = append(recs, ref)
		}
		off += elen
	}
	var segs []attr
	for _, r := range recs {
		rec, err := v.record(ctx, r)
		if err != nil {
			return nil, fmt.Errorf("extension of MFT record %d: %w", n, err)
		}
		if r != n {
			if base := int64(binary.LittleEndian.Uint64(rec[0x20:]) & (1<<48 - 1)); base != n {
				return nil, fmt.Errorf("MFT record %d listed as extension of %d belongs to %d", r, n, base)
			}
		}
		attrs, err := v.parseAttrs(rec)
		if err != nil {
			return nil, fmt.Errorf("MFT record %d: %w", r, err)
		}
		for _, a := range attrs {
			if a.typ == typ && a.name == name {
				segs = append(segs, a)
			}
		}
	}
	return segs, nil
}

// utf16String decodes little-endian UTF-16 (an odd trailing byte is
// dropped).
func utf16String(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}
