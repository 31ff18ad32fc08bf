package ptable

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf16"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

// mbrEntry is one 16-byte entry of an MBR or EBR partition array.
type mbrEntry struct {
	status  byte
	typ     byte
	lba     uint32
	sectors uint32
}

func parseMBREntries(sec []byte) [4]mbrEntry {
	var e [4]mbrEntry
	for i := range e {
		b := sec[446+16*i : 446+16*(i+1)]
		e[i] = mbrEntry{
			status:  b[0],
			typ:     b[4],
			lba:     binary.LittleEndian.Uint32(b[8:12]),
			sectors: binary.LittleEndian.Uint32(b[12:16]),
		}
	}
	return e
}

func hasBootSignature(sec []byte) bool { return sec[510] == 0x55 && sec[511] == 0xAA }

// Read reads the partition table of a disk of diskSize bytes whose logical
// sectors are sectorSize bytes. It returns a table of Kind None, and no
// error, when the disk holds no partition table: no 0x55AA signature, or the
// boot sector of a file system that fills the whole disk (a "superfloppy").
func Read(ctx context.Context, r io.ReaderAt, diskSize int64, sectorSize int) (*Table, error) {
	if err := checkContext(ctx, "read partition table"); err != nil {
		return nil, err
	}
	if !validSectorSize(sectorSize) {
		return nil, fmt.Errorf("read partition table: invalid sector size %d", sectorSize)
	}
	ss := int64(sectorSize)
	none := &Table{Kind: None, SectorSize: sectorSize}
	if diskSize < ss {
		return none, nil
	}
	sec0 := make([]byte, ss)
	if err := fsmap.ReadFull(r, sec0, 0, "sector 0"); err != nil {
		return nil, fmt.Errorf("read partition table: %w", err)
	}
	if !hasBootSignature(sec0) {
		// A GPT whose protective MBR was lost is still a GPT (gdisk
		// agrees); only a CRC-valid primary header counts.
		t, err := readGPT(ctx, r, diskSize, sectorSize, sec0, true)
		if err == nil {
			t.warnf("sector 0 holds no protective MBR; the GPT was found without it")
			return t, nil
		}
		return none, nil
	}
	entries := parseMBREntries(sec0)
	hasGPT := false
	for _, e := range entries {
		if e.status != 0 && e.status != 0x80 {
			// Not a partition table: boot code or a file system's boot
			// sector occupies the entry area.
			return none, nil
		}
		if e.typ == 0xee {
			hasGPT = true
		}
	}
	if hasGPT {
		return readGPT(ctx, r, diskSize, sectorSize, sec0, false)
	}
	if looksLikeFSBootSector(sec0) {
		return none, nil
	}
	return readMBR(ctx, r, diskSize, sectorSize, sec0)
}

// looksLikeFSBootSector reports whether sector 0 is the boot sector of a FAT,
// NTFS or exFAT file system spanning the whole disk rather than an MBR. An
// MBR never carries these file systems' identifiers at these offsets.
func looksLikeFSBootSector(b []byte) bool {
	jump := b[0] == 0xEB && b[2] == 0x90 || b[0] == 0xE9
	if !jump {
		return false
	}
	oem := string(b[3:11])
	if oem == "NTFS    " || oem == "EXFAT   " {
		return true
	}
	// FAT: a plausible BIOS parameter block.
	bps := binary.LittleEndian.Uint16(b[11:13])
	spc := b[13]
	reserved := binary.LittleEndian.Uint16(b[14:16])
	fats := b[16]
	media := b[21]
	return bps >= 512 && bps <= 4096 && bps&(bps-1) == 0 &&
		spc != 0 && spc&(spc-1) == 0 && reserved != 0 &&
		(fats == 1 || fats == 2) && (media == 0xF0 || media >= 0xF8)
}

func readMBR(ctx context.Context, r io.ReaderAt, diskSize int64, sectorSize int, sec0 []byte) (*Table, error) {
	ss := int64(sectorSize)
	t := &Table{
		Kind:          MBR,
		SectorSize:    sectorSize,
		DiskSignature: binary.LittleEndian.Uint32(sec0[440:444]),
		BootCode:      append([]byte(nil), sec0[:440]...),
	}
	copy(t.mbrReserved[:], sec0[444:446])
	for i, e := range parseMBREntries(sec0) {
		if e.typ == 0 || e.sectors == 0 {
			continue
		}
		p := Partition{
			Number:   i + 1,
			Start:    int64(e.lba) * ss,
			Size:     int64(e.sectors) * ss,
			Type:     mbrTypeString(e.typ),
			TypeName: MBRTypeName(e.typ),
			MBRType:  e.typ,
			Bootable: e.status == 0x80,
		}
		if e.lba == 0 {
			return nil, fmt.Errorf("read MBR: partition %d starts in sector 0", p.Number)
		}
		if p.End() > diskSize {
			return nil, fmt.Errorf("read MBR: partition %d (bytes %d-%d) extends past the end of the disk (%d bytes)", p.Number, p.Start, p.End(), diskSize)
		}
		if isExtendedType(e.typ) {
			if t.Extended != nil {
				return nil, fmt.Errorf("read MBR: partitions %d and %d are both extended partitions", t.Extended.Number, p.Number)
			}
			ext := p
			t.Extended = &ext
			continue
		}
		t.Partitions = append(t.Partitions, p)
	}
	if t.Extended != nil {
		if err := t.readEBRChain(ctx, r, diskSize); err != nil {
			return nil, fmt.Errorf("read MBR: %w", err)
		}
	}
	if err := t.validate(diskSize); err != nil {
		return nil, fmt.Errorf("read MBR: %w", err)
	}
	return t, nil
}

// readEBRChain follows the linked list of extended boot records. Each EBR
// holds one logical partition (start relative to the EBR) and a link to the
// next EBR (start relative to the extended container).
func (t *Table) readEBRChain(ctx context.Context, r io.ReaderAt, diskSize int64) error {
	ss := int64(t.SectorSize)
	ext := t.Extended
	buf := make([]byte, ss)
	seen := map[int64]bool{}
	at := ext.Start
	number := 5
	for hop := 0; ; hop++ {
		if err := checkContext(ctx, "read EBR chain"); err != nil {
			return err
		}
		if hop >= maxEBRHops {
			return fmt.Errorf("EBR chain longer than %d logical partitions", maxEBRHops)
		}
		if seen[at] {
			return fmt.Errorf("EBR chain loops back to the EBR at byte %d", at)
		}
		seen[at] = true
		if err := fsmap.ReadFull(r, buf, at, "EBR"); err != nil {
			return err
		}
		if !hasBootSignature(buf) {
			if hop > 0 || !isZero(buf[:512]) {
				t.warnf("EBR at byte %d has no 0x55AA signature; the logical partition chain ends there", at)
			}
			return nil
		}
		var logical, link *mbrEntry
		entries := parseMBREntries(buf)
		for i := range entries {
			e := &entries[i]
			if e.typ == 0 || e.sectors == 0 {
				continue
			}
			if isExtendedType(e.typ) {
				if link == nil {
					link = e
				}
				continue
			}
			if logical == nil {
				logical = e
			} else {
				t.warnf("EBR at byte %d describes more than one logical partition; only the first is used", at)
			}
		}
		if logical != nil {
			p := Partition{
				Number:   number,
				Start:    at + int64(logical.lba)*ss,
				Size:     int64(logical.sectors) * ss,
				Type:     mbrTypeString(logical.typ),
				TypeName: MBRTypeName(logical.typ),
				MBRType:  logical.typ,
				Bootable: logical.status == 0x80,
				Logical:  true,
				ebr:      at,
			}
			if logical.lba == 0 {
				return fmt.Errorf("logical partition %d starts on its own EBR at byte %d", number, at)
			}
			if p.End() > diskSize {
				return fmt.Errorf("logical partition %d (bytes %d-%d) extends past the end of the disk (%d bytes)", number, p.Start, p.End(), diskSize)
			}
			if p.Start < ext.Start || p.End() > ext.End() {
				return fmt.Errorf("logical partition %d (bytes %d-%d) lies outside the extended partition (bytes %d-%d)", number, p.Start, p.End(), ext.Start, ext.End())
			}
			t.Partitions = append(t.Partitions, p)
			number++
		} else if hop > 0 {
			// An empty EBR first in the chain is a valid layout; one
			// in the middle is dropped when the chain is rewritten.
			t.warnf("EBR at byte %d describes no logical partition", at)
		}
		if link == nil {
			return nil
		}
		next := ext.Start + int64(link.lba)*ss
		if link.lba == 0 || next >= ext.End() {
			return fmt.Errorf("EBR at byte %d links to byte %d, outside the extended partition (bytes %d-%d)", at, next, ext.Start, ext.End())
		}
		at = next
	}
}

// validate checks that partitions lie on the disk, on sector boundaries,
// and do not overlap one another or the table's own structures.
func (t *Table) validate(diskSize int64) error {
	ss := int64(t.SectorSize)
	seen := map[int]bool{}
	type span struct {
		name       string
		start, end int64
	}
	var top, inner []span
	describe := func(p Partition) string {
		if p.Logical {
			return fmt.Sprintf("logical partition %d", p.Number)
		}
		return fmt.Sprintf("partition %d", p.Number)
	}
	check := func(p Partition, what string) error {
		if p.Size <= 0 {
			return fmt.Errorf("%s has size %d", what, p.Size)
		}
		if p.Start%ss != 0 || p.Size%ss != 0 {
			return fmt.Errorf("%s (bytes %d-%d) is not on %d-byte sector boundaries", what, p.Start, p.End(), ss)
		}
		if p.Start < ss {
			return fmt.Errorf("%s starts in sector 0", what)
		}
		if p.End() > diskSize {
			return fmt.Errorf("%s (bytes %d-%d) extends past the end of the disk (%d bytes)", what, p.Start, p.End(), diskSize)
		}
		return nil
	}
	for _, p := range t.Partitions {
		what := describe(p)
		if seen[p.Number] {
			return fmt.Errorf("partition number %d is used twice", p.Number)
		}
		seen[p.Number] = true
		if err := check(p, what); err != nil {
			return err
		}
		switch t.Kind {
		case GPT:
			if p.Number < 1 || p.Number > int(t.EntryCount) {
				return fmt.Errorf("partition number %d is outside the %d-entry GPT array", p.Number, t.EntryCount)
			}
			first, last := int64(t.FirstUsableLBA)*ss, (int64(t.LastUsableLBA)+1)*ss
			if p.Start < first || p.End() > last {
				return fmt.Errorf("%s (bytes %d-%d) lies outside the GPT usable area (bytes %d-%d)", what, p.Start, p.End(), first, last)
			}
		case MBR:
			if p.Logical && p.Number < 5 || !p.Logical && (p.Number < 1 || p.Number > 4) {
				return fmt.Errorf("%s has a number an MBR cannot give it", what)
			}
			if p.Start/ss > 0xFFFFFFFF || p.Size/ss > 0xFFFFFFFF {
				return fmt.Errorf("%s (bytes %d-%d) is beyond what an MBR addresses with %d-byte sectors (%s)", what, p.Start, p.End(), ss, humanBytes(0xFFFFFFFF*ss))
			}
		}
		if p.Logical {
			inner = append(inner, span{what, p.Start, p.End()})
		} else {
			top = append(top, span{what, p.Start, p.End()})
		}
	}
	if t.Kind == MBR {
		if t.Extended != nil {
			e := *t.Extended
			if seen[e.Number] {
				return fmt.Errorf("partition number %d is used twice", e.Number)
			}
			if err := check(e, fmt.Sprintf("extended partition %d", e.Number)); err != nil {
				return err
			}
			top = append(top, span{fmt.Sprintf("extended partition %d", e.Number), e.Start, e.End()})
			offs, err := t.ebrOffsets()
			if err != nil {
				return err
			}
			idx := t.logicals()
			for k, i := range idx {
				p := t.Partitions[i]
				if p.Number != 5+k {
					return fmt.Errorf("logical partitions must be numbered 5, 6, ... in chain order; found %d in place %d", p.Number, 5+k)
				}
				if p.Start < e.Start || p.End() > e.End() {
					return fmt.Errorf("logical partition %d (bytes %d-%d) lies outside the extended partition (bytes %d-%d)", p.Number, p.Start, p.End(), e.Start, e.End())
				}
				o := offs[k]
				if o%ss != 0 || o < e.Start || o >= p.Start {
					return fmt.Errorf("EBR of logical partition %d at byte %d must lie in the extended partition before the partition's start (byte %d)", p.Number, o, p.Start)
				}
				if p.Start-o > 0xFFFFFFFF*ss || o-e.Start > 0xFFFFFFFF*ss {
					return fmt.Errorf("EBR of logical partition %d at byte %d is too far from its partition for an MBR", p.Number, o)
				}
				inner = append(inner, span{fmt.Sprintf("the EBR of logical partition %d", p.Number), o, o + ss})
			}
		} else if len(t.logicals()) > 0 {
			return errors.New("logical partitions without an extended partition")
		}
	}
	for _, group := range [][]span{top, inner} {
		for i := range group {
			for j := i + 1; j < len(group); j++ {
				a, b := group[i], group[j]
				if a.start < b.end && b.start < a.end {
					return fmt.Errorf("%s (bytes %d-%d) and %s (bytes %d-%d) overlap", a.name, a.start, a.end, b.name, b.start, b.end)
				}
			}
		}
	}
	return nil
}

// gptHeader is the part of a GPT header this package uses.
type gptHeader struct {
	myLBA, altLBA           uint64
	firstUsable, lastUsable uint64
	diskGUID                string
	entriesLBA              uint64
	entryCount, entrySize   uint32
	entriesCRC              uint32
}

// parseGPTHeader checks and decodes the header sector read from lba.
func parseGPTHeader(b []byte, lba uint64) (*gptHeader, error) {
	if string(b[0:8]) != "EFI PART" {
		return nil, fmt.Errorf("no GPT header signature at LBA %d", lba)
	}
	hsize := binary.LittleEndian.Uint32(b[12:16])
	if hsize < 92 || int(hsize) > len(b) {
		return nil, fmt.Errorf("GPT header at LBA %d has invalid size %d", lba, hsize)
	}
	want := binary.LittleEndian.Uint32(b[16:20])
	h := append([]byte(nil), b[:hsize]...)
	binary.LittleEndian.PutUint32(h[16:20], 0)
	if got := crc32.ChecksumIEEE(h); got != want {
		return nil, fmt.Errorf("GPT header CRC mismatch at LBA %d (stored %08x, computed %08x)", lba, want, got)
	}
	g := &gptHeader{
		myLBA:       binary.LittleEndian.Uint64(b[24:32]),
		altLBA:      binary.LittleEndian.Uint64(b[32:40]),
		firstUsable: binary.LittleEndian.Uint64(b[40:48]),
		lastUsable:  binary.LittleEndian.Uint64(b[48:56]),
		diskGUID:    decodeGUID(b[56:72]),
		entriesLBA:  binary.LittleEndian.Uint64(b[72:80]),
		entryCount:  binary.LittleEndian.Uint32(b[80:84]),
		entrySize:   binary.LittleEndian.Uint32(b[84:88]),
		entriesCRC:  binary.LittleEndian.Uint32(b[88:92]),
	}
	if g.myLBA != lba {
		return nil, fmt.Errorf("GPT header at LBA %d says it is at LBA %d", lba, g.myLBA)
	}
	if g.entrySize < 128 || g.entrySize%128 != 0 || g.entrySize&(g.entrySize-1) != 0 {
		return nil, fmt.Errorf("GPT header at LBA %d has invalid entry size %d", lba, g.entrySize)
	}
	if g.entryCount == 0 || uint64(g.entryCount)*uint64(g.entrySize) > maxEntryArray {
		return nil, fmt.Errorf("GPT header at LBA %d has an entry array of %d x %d bytes (at most %d bytes accepted)", lba, g.entryCount, g.entrySize, maxEntryArray)
	}
	if g.firstUsable > g.lastUsable+1 {
		return nil, fmt.Errorf("GPT header at LBA %d has first usable LBA %d past last usable LBA %d", lba, g.firstUsable, g.lastUsable)
	}
	return g, nil
}

// gptCopy is one (primary or backup) GPT as read.
type gptCopy struct {
	hdr     *gptHeader
	entries []byte
}

// readGPTCopy reads and checks the header at lba and its entry array.
func readGPTCopy(r io.ReaderAt, diskSize int64, ss int64, lba uint64) (*gptCopy, error) {
	sectors := uint64(diskSize / ss)
	if lba >= sectors {
		return nil, fmt.Errorf("GPT header LBA %d is past the end of the disk (%d sectors)", lba, sectors)
	}
	b := make([]byte, ss)
	if err := fsmap.ReadFull(r, b, int64(lba)*ss, fmt.Sprintf("GPT header at LBA %d", lba)); err != nil {
		return nil, err
	}
	h, err := parseGPTHeader(b, lba)
	if err != nil {
		return nil, err
	}
	n := int64(h.entryCount) * int64(h.entrySize)
	es := uint64((n + ss - 1) / ss)
	if h.entriesLBA < 1 || h.entriesLBA >= sectors || h.entriesLBA+es > sectors ||
		(h.entriesLBA <= lba && lba < h.entriesLBA+es) {
		return nil, fmt.Errorf("GPT header at LBA %d puts its entry array at invalid LBA %d", lba, h.entriesLBA)
	}
	if h.lastUsable >= sectors {
		// A GPT copied to a smaller disk; the partitions are checked
		// against the disk separately.
		h.lastUsable = sectors - 1
	}
	entries := make([]byte, n)
	if err := fsmap.ReadFull(r, entries, int64(h.entriesLBA)*ss, fmt.Sprintf("GPT entries at LBA %d", h.entriesLBA)); err != nil {
		return nil, err
	}
	if got := crc32.ChecksumIEEE(entries); got != h.entriesCRC {
		return nil, fmt.Errorf("GPT entry array CRC mismatch at LBA %d (header at LBA %d stores %08x, computed %08x)", h.entriesLBA, lba, h.entriesCRC, got)
	}
	return &gptCopy{hdr: h, entries: entries}, nil
}

func readGPT(ctx context.Context, r io.ReaderAt, diskSize int64, sectorSize int, sec0 []byte, noPMBR bool) (*Table, error) {
	ss := int64(sectorSize)
	if err := checkContext(ctx, "read GPT"); err != nil {
		return nil, err
	}
	lastLBA := uint64(diskSize/ss) - 1
	primary, perr := readGPTCopy(r, diskSize, ss, 1)
	if noPMBR && perr != nil {
		return nil, perr
	}
	var backup *gptCopy
	var berr error
	var warnings []string
	if perr == nil {
		alt := primary.hdr.altLBA
		if alt != lastLBA {
			warnings = append(warnings, fmt.Sprintf("the GPT header names its backup at LBA %d, not at the last sector of the disk (LBA %d): the disk was copied from one of another size", alt, lastLBA))
		}
		backup, berr = readGPTCopy(r, diskSize, ss, alt)
		switch {
		case berr != nil:
			warnings = append(warnings, fmt.Sprintf("backup GPT is damaged or missing: %v", berr))
		case backup.hdr.altLBA != 1 || !bytes.Equal(backup.entries, primary.entries) ||
			backup.hdr.diskGUID != primary.hdr.diskGUID:
			warnings = append(warnings, "primary and backup GPT differ; the primary is used")
		}
	} else {
		backup, berr = readGPTCopy(r, diskSize, ss, lastLBA)
		if berr != nil {
			err := fmt.Errorf("read GPT: primary: %v; backup: %w", perr, berr)
			if other := otherSectorSizeGPT(r, diskSize, sectorSize); other != 0 {
				err = fmt.Errorf("%w (a GPT with %d-byte sectors is present: read the disk with that sector size)", err, other)
			}
			return nil, err
		}
		warnings = append(warnings, fmt.Sprintf("primary GPT is damaged (%v); the backup at LBA %d is used", perr, lastLBA))
		primary = backup
	}
	h := primary.hdr
	t := &Table{
		Kind:           GPT,
		SectorSize:     sectorSize,
		DiskGUID:       h.diskGUID,
		FirstUsableLBA: h.firstUsable,
		LastUsableLBA:  h.lastUsable,
		EntryCount:     h.entryCount,
		EntrySize:      h.entrySize,
		warnings:       warnings,
	}
	if !noPMBR {
		t.DiskSignature = binary.LittleEndian.Uint32(sec0[440:444])
		t.BootCode = append([]byte(nil), sec0[:440]...)
		copy(t.mbrReserved[:], sec0[444:446])
		others := 0
		for _, e := range parseMBREntries(sec0) {
			if e.typ != 0 && e.typ != 0xee {
				others++
			}
		}
		if others > 0 {
			t.warnf("the disk has a hybrid MBR; only the protective entry is kept when the table is written")
		}
	}
	for i := uint32(0); i < h.entryCount; i++ {
		e := primary.entries[int64(i)*int64(h.entrySize):]
		if isZero(e[0:16]) {
			continue
		}
		first := binary.LittleEndian.Uint64(e[32:40])
		last := binary.LittleEndian.Uint64(e[40:48])
		number := int(i) + 1
		if last < first || last > lastLBA {
			return nil, fmt.Errorf("read GPT: partition %d (LBA %d-%d) extends past the end of the disk (%d sectors) or ends before it starts", number, first, last, lastLBA+1)
		}
		typ := decodeGUID(e[0:16])
		t.Partitions = append(t.Partitions, Partition{
			Number:     number,
			Start:      int64(first) * ss,
			Size:       int64(last-first+1) * ss,
			Type:       typ,
			TypeName:   GPTTypeName(typ),
			GUID:       decodeGUID(e[16:32]),
			Attributes: binary.LittleEndian.Uint64(e[48:56]),
			Name:       decodeName(e[56:128]),
		})
	}
	if err := t.validate(diskSize); err != nil {
		return nil, fmt.Errorf("read GPT: %w", err)
	}
	return t, nil
}

// otherSectorSizeGPT looks for a valid GPT header at LBA 1 for the other
// common sector sizes, to turn "no GPT" into a useful hint.
func otherSectorSizeGPT(r io.ReaderAt, diskSize int64, sectorSize int) int {
	for _, ss := range []int{512, 4096} {
		if ss == sectorSize || diskSize < int64(2*ss) {
			continue
		}
		b := make([]byte, ss)
		if fsmap.ReadFull(r, b, int64(ss), "GPT header") != nil {
			continue
		}
		if _, err := parseGPTHeader(b, 1); err == nil {
			return ss
		}
	}
	return 0
}

// decodeName decodes a GPT partition name: UTF-16LE up to the first NUL.
func decodeName(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// encodeName encodes a GPT partition name into the 72-byte field.
func encodeName(dst []byte, name string) error {
	u := utf16.Encode([]rune(name))
	if len(u) > len(dst)/2 {
		return fmt.Errorf("partition name %q is longer than %d UTF-16 code units", name, len(dst)/2)
	}
	for i, c := range u {
		binary.LittleEndian.PutUint16(dst[2*i:], c)
	}
	return nil
}
