package ptable

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// Write writes t to a disk of diskSize bytes with t.SectorSize sectors.
//
// MBR: sector 0 (boot code, disk signature, four entries with CHS fields
// computed for a 255-head, 63-sector geometry or 0xFE,0xFF,0xFF past its
// reach) and one EBR per logical partition. GPT: the backup entry array and
// header at the end of this disk, the primary header and entries at LBA 1
// and 2, and the protective MBR (keeping BootCode and DiskSignature) last, so
// a write cut short never leaves a disk whose sector 0 claims a table that is
// not all there. LastUsableLBA is recomputed for diskSize; t is not changed.
//
// Write touches only the table's structures: call Wipe first when the disk
// may hold another table (an old backup GPT would otherwise survive).
func (t *Table) Write(ctx context.Context, w io.WriterAt, diskSize int64) error {
	if err := checkContext(ctx, "write partition table"); err != nil {
		return err
	}
	if !validSectorSize(t.SectorSize) {
		return fmt.Errorf("write partition table: invalid sector size %d", t.SectorSize)
	}
	switch t.Kind {
	case MBR:
		return t.writeMBR(ctx, w, diskSize)
	case GPT:
		return t.writeGPT(ctx, w, diskSize)
	default:
		return fmt.Errorf("write partition table: cannot write a table of kind %q", t.Kind)
	}
}

// chs encodes an LBA as the 3-byte cylinder/head/sector field of an MBR
// entry, for the 255-head, 63-sector geometry every tool has assumed since
// LBA took over; past cylinder 1023 it is the conventional 0xFE,0xFF,0xFF.
func chs(lba int64) [3]byte {
	const heads, spt = 255, 63
	c := lba / (heads * spt)
	if c > 1023 {
		return [3]byte{0xFE, 0xFF, 0xFF}
	}
	h := (lba / spt) % heads
	s := lba%spt + 1
	return [3]byte{byte(h), byte(s) | byte(c>>8)<<6, byte(c)}
}

// putMBREntry fills one 16-byte MBR/EBR entry. lba and sectors are the
// values to store; absStart and absEnd (inclusive) are absolute LBAs for the
// CHS fields.
func putMBREntry(b []byte, status, typ byte, lba, sectors, absStart, absEnd int64) {
	b[0] = status
	s, e := chs(absStart), chs(absEnd)
	copy(b[1:4], s[:])
	b[4] = typ
	copy(b[5:8], e[:])
	binary.LittleEndian.PutUint32(b[8:12], uint32(lba))
	binary.LittleEndian.PutUint32(b[12:16], uint32(sectors))
}

func (t *Table) writeMBR(ctx context.Context, w io.WriterAt, diskSize int64) error {
	if err := t.validate(diskSize); err != nil {
		return fmt.Errorf("write MBR: %w", err)
	}
	ss := int64(t.SectorSize)
	status := func(p Partition) byte {
		if p.Bootable {
			return 0x80
		}
		return 0
	}
	// The EBR chain first, sector 0 last: until sector 0 is written the
	// chain is unreachable.
	idx := t.logicals()
	offs, err := t.ebrOffsets()
	if err != nil {
		return fmt.Errorf("write MBR: %w", err)
	}
	ext := t.Extended
	for k, i := range idx {
		if err := checkContext(ctx, "write EBR"); err != nil {
			return err
		}
		p := t.Partitions[i]
		ebr := make([]byte, 512)
		at := offs[k] / ss
		putMBREntry(ebr[446:462], status(p), p.MBRType, p.Start/ss-at, p.Size/ss, p.Start/ss, p.End()/ss-1)
		if k+1 < len(idx) {
			n := t.Partitions[idx[k+1]]
			nat := offs[k+1] / ss
			// The link spans the next EBR and its partition, as fdisk
			// writes it.
			putMBREntry(ebr[462:478], 0, 0x05, nat-ext.Start/ss, n.End()/ss-nat, nat, n.End()/ss-1)
		}
		ebr[510], ebr[511] = 0x55, 0xAA
		if _, err := w.WriteAt(ebr, offs[k]); err != nil {
			return fmt.Errorf("write EBR of logical partition %d at byte %d: %w", p.Number, offs[k], err)
		}
	}
	if ext != nil && len(idx) > 0 && offs[0] != ext.Start {
		// The chain starts with an EBR that only links to the first
		// logical partition's EBR.
		first := t.Partitions[idx[0]]
		lead := make([]byte, 512)
		nat := offs[0] / ss
		putMBREntry(lead[462:478], 0, 0x05, nat-ext.Start/ss, first.End()/ss-nat, nat, first.End()/ss-1)
		lead[510], lead[511] = 0x55, 0xAA
		if _, err := w.WriteAt(lead, ext.Start); err != nil {
			return fmt.Errorf("write leading EBR at byte %d: %w", ext.Start, err)
		}
	}
	if ext != nil && len(idx) == 0 {
		// An empty extended partition: a zeroed first EBR says so.
		if _, err := w.WriteAt(make([]byte, 512), ext.Start); err != nil {
			return fmt.Errorf("write empty EBR at byte %d: %w", ext.Start, err)
		}
	}
	sec := make([]byte, 512)
	copy(sec[:440], t.BootCode)
	binary.LittleEndian.PutUint32(sec[440:444], t.DiskSignature)
	copy(sec[444:446], t.mbrReserved[:])
	put := func(p Partition) {
		b := sec[446+16*(p.Number-1):]
		putMBREntry(b, status(p), p.MBRType, p.Start/ss, p.Size/ss, p.Start/ss, p.End()/ss-1)
	}
	for _, p := range t.Partitions {
		if !p.Logical {
			put(p)
		}
	}
	if ext != nil {
		put(*ext)
	}
	sec[510], sec[511] = 0x55, 0xAA
	if _, err := w.WriteAt(sec, 0); err != nil {
		return fmt.Errorf("write MBR at sector 0: %w", err)
	}
	return nil
}

// gptLayout is where Write puts the GPT structures on a disk, in LBAs.
type gptLayout struct {
	entrySectors            int64
	backupEntries, backupHd int64
	firstUsable, lastUsable int64
}

func (t *Table) layoutGPT(diskSize int64) (gptLayout, error) {
	ss := int64(t.SectorSize)
	es := t.entrySectors()
	sectors := diskSize / ss
	l := gptLayout{
		entrySectors:  es,
		backupHd:      sectors - 1,
		backupEntries: sectors - 1 - es,
		lastUsable:    sectors - 2 - es,
		firstUsable:   int64(t.FirstUsableLBA),
	}
	if min := 2 + es; l.firstUsable < min {
		if t.FirstUsableLBA != 0 {
			return l, fmt.Errorf("first usable LBA %d overlaps the %d-sector entry array at LBA 2", t.FirstUsableLBA, es)
		}
		l.firstUsable = min
	}
	if l.lastUsable < l.firstUsable {
		return l, fmt.Errorf("a disk of %d bytes is too small for a GPT", diskSize)
	}
	return l, nil
}

func (t *Table) writeGPT(ctx context.Context, w io.WriterAt, diskSize int64) error {
	ss := int64(t.SectorSize)
	l, err := t.layoutGPT(diskSize)
	if err != nil {
		return fmt.Errorf("write GPT: %w", err)
	}
	v := t.Clone()
	v.FirstUsableLBA, v.LastUsableLBA = uint64(l.firstUsable), uint64(l.lastUsable)
	if v.EntryCount == 0 {
		v.EntryCount = 128
	}
	if v.EntrySize == 0 {
		v.EntrySize = 128
	}
	if v.EntrySize < 128 || v.EntrySize%128 != 0 || int64(v.EntryCount)*int64(v.EntrySize) > maxEntryArray {
		return fmt.Errorf("write GPT: invalid entry array of %d x %d bytes", v.EntryCount, v.EntrySize)
	}
	if err := v.validate(diskSize); err != nil {
		return fmt.Errorf("write GPT: %w", err)
	}
	entries := make([]byte, l.entrySectors*ss)
	for _, p := range v.Partitions {
		e := entries[int64(p.Number-1)*int64(v.EntrySize):]
		if err := encodeGUID(e[0:16], p.Type); err != nil {
			return fmt.Errorf("write GPT: type of partition %d: %w", p.Number, err)
		}
		if isZero(e[0:16]) {
			return fmt.Errorf("write GPT: partition %d has the unused type GUID", p.Number)
		}
		if err := encodeGUID(e[16:32], p.GUID); err != nil {
			return fmt.Errorf("write GPT: unique GUID of partition %d: %w", p.Number, err)
		}
		binary.LittleEndian.PutUint64(e[32:40], uint64(p.Start/ss))
		binary.LittleEndian.PutUint64(e[40:48], uint64(p.End()/ss-1))
		binary.LittleEndian.PutUint64(e[48:56], p.Attributes)
		if err := encodeName(e[56:128], p.Name); err != nil {
			return fmt.Errorf("write GPT: partition %d: %w", p.Number, err)
		}
	}
	entriesCRC := crc32.ChecksumIEEE(entries[:int64(v.EntryCount)*int64(v.EntrySize)])
	header := func(my, alt, entriesLBA int64) ([]byte, error) {
		h := make([]byte, ss)
		copy(h[0:8], "EFI PART")
		binary.LittleEndian.PutUint32(h[8:12], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:16], 92)
		binary.LittleEndian.PutUint64(h[24:32], uint64(my))
		binary.LittleEndian.PutUint64(h[32:40], uint64(alt))
		binary.LittleEndian.PutUint64(h[40:48], v.FirstUsableLBA)
		binary.LittleEndian.PutUint64(h[48:56], v.LastUsableLBA)
		if err := encodeGUID(h[56:72], v.DiskGUID); err != nil {
			return nil, fmt.Errorf("disk GUID: %w", err)
		}
		binary.LittleEndian.PutUint64(h[72:80], uint64(entriesLBA))
		binary.LittleEndian.PutUint32(h[80:84], v.EntryCount)
		binary.LittleEndian.PutUint32(h[84:88], v.EntrySize)
		binary.LittleEndian.PutUint32(h[88:92], entriesCRC)
		binary.LittleEndian.PutUint32(h[16:20], crc32.ChecksumIEEE(h[:92]))
		return h, nil
	}
	primary, err := header(1, l.backupHd, 2)
	if err != nil {
		return fmt.Errorf("write GPT: %w", err)
	}
	backup, err := header(l.backupHd, 1, l.backupEntries)
	if err != nil {
		return fmt.Errorf("write GPT: %w", err)
	}
	pmbr := make([]byte, 512)
	copy(pmbr[:440], v.BootCode)
	binary.LittleEndian.PutUint32(pmbr[440:444], v.DiskSignature)
	copy(pmbr[444:446], v.mbrReserved[:])
	pmbrSectors := diskSize/ss - 1
	if pmbrSectors > 0xFFFFFFFF {
		pmbrSectors = 0xFFFFFFFF
	}
	putMBREntry(pmbr[446:462], 0, 0xee, 1, pmbrSectors, 1, pmbrSectors)
	pmbr[510], pmbr[511] = 0x55, 0xAA
	writes := []struct {
		what string
		buf  []byte
		lba  int64
	}{
		{"backup GPT entries", entries, l.backupEntries},
		{"backup GPT header", backup, l.backupHd},
		{"primary GPT entries", entries, 2},
		{"primary GPT header", primary, 1},
		{"protective MBR", pmbr, 0},
	}
	for _, wr := range writes {
		if err := checkContext(ctx, "write GPT"); err != nil {
			return err
		}
		if _, err := w.WriteAt(wr.buf, wr.lba*ss); err != nil {
			return fmt.Errorf("write %s at LBA %d: %w", wr.what, wr.lba, err)
		}
	}
	return nil
}

// Wipe zeroes what makes a disk show a partition table: sector 0, the
// primary GPT header and a 128-entry array after it, and the backup GPT
// area at the end of the disk, for both 512- and 4096-byte sector layouts.
// When w can also read, larger entry arrays named by a GPT header found on
// the disk are zeroed too. It is used before a clone starts writing, so an
// interrupted clone never looks like a good disk.
func Wipe(ctx context.Context, w io.WriterAt, diskSize int64, sectorSize int) error {
	if err := checkContext(ctx, "wipe partition table"); err != nil {
		return err
	}
	if !validSectorSize(sectorSize) {
		return fmt.Errorf("wipe partition table: invalid sector size %d", sectorSize)
	}
	ss := int64(sectorSize)
	const table = 128 * 128
	head := max(2*ss+table, 2*4096+table)
	tail := max(ss+table, 4096+table)
	type span struct{ off, n int64 }
	spans := []span{{0, head}, {diskSize - tail, tail}}
	if r, ok := w.(io.ReaderAt); ok {
		// A header with a larger entry array than the default: zero the
		// array it names. Both copies are looked for at both usual sector
		// sizes.
		for _, s := range []int64{512, 4096, ss} {
			if diskSize < 3*s {
				continue
			}
			for _, lba := range []int64{1, diskSize/s - 1} {
				b := make([]byte, s)
				if _, err := r.ReadAt(b, lba*s); err != nil {
					continue
				}
				h, err := parseGPTHeader(b, uint64(lba))
				if err != nil || h.entriesLBA >= uint64(diskSize/s) {
					continue
				}
				n := int64(h.entryCount) * int64(h.entrySize)
				spans = append(spans, span{int64(h.entriesLBA) * s, (n + s - 1) / s * s})
			}
		}
	}
	for _, sp := range spans {
		if sp.off < 0 {
			sp.n += sp.off
			sp.off = 0
		}
		if sp.off+sp.n > diskSize {
			sp.n = diskSize - sp.off
		}
		if sp.n <= 0 {
			continue
		}
		if err := checkContext(ctx, "wipe partition table"); err != nil {
			return err
		}
		if _, err := w.WriteAt(make([]byte, sp.n), sp.off); err != nil {
			return fmt.Errorf("wipe partition table: zero bytes %d-%d: %w", sp.off, sp.off+sp.n, err)
		}
	}
	return nil
}
