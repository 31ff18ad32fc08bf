// Package ptable reads, plans and writes MBR (with logical partitions in an
// extended container) and GPT partition tables.
//
// The code is our own, written from the UEFI specification (GPT) and the
// long-standing IBM PC MBR/EBR conventions, rather than built on
// github.com/diskfs/go-diskfs. That library parses GPT well but does not
// serve a clone engine: it reads no MBR logical partitions, its GPT writer
// replaces the protective MBR with one that drops the boot code and the disk
// signature and always places a 128-entry array right after the header, it
// sizes its entry-array read from the on-disk header without a bound (a
// hostile header makes it allocate gigabytes), it needs a seekable file rather
// than an io.ReaderAt, takes no context and wraps errors with %v. What we need
// on top of it (EBR chains, planning for other disk and sector sizes, exact
// round-trips of the boot code) would be most of the work anyway.
//
// All positions in this package's API are bytes from the start of the disk;
// the sector size only matters when a table is read or written.
package ptable

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

// Kind is the partitioning scheme of a disk.
type Kind string

// The partitioning schemes Read recognises.
const (
	None Kind = "none"
	MBR  Kind = "mbr"
	GPT  Kind = "gpt"
)

// Partition is one partition of a table.
type Partition struct {
	// Number follows Linux: GPT entry index+1; MBR primaries 1-4, logicals
	// 5, 6, ... in EBR chain order.
	Number int
	// Start is the first byte of the partition from the start of the disk.
	Start int64
	// Size is the partition's length in bytes.
	Size int64
	// Type is the GPT type GUID (uppercase) or the MBR type as "0x83".
	Type string
	// TypeName is a human name for Type ("Linux filesystem"), "Unknown" when
	// the type is not one we know.
	TypeName string
	// GUID is the GPT unique partition GUID ("" on MBR).
	GUID string
	// Name is the GPT partition name ("" on MBR).
	Name string
	// Attributes are the GPT attribute bits.
	Attributes uint64
	// MBRType is the MBR type byte (0 on GPT).
	MBRType byte
	// Bootable is the MBR active flag.
	Bootable bool
	// Logical marks an MBR logical partition, described by an EBR inside
	// the extended container.
	Logical bool

	// ebr is the byte offset of the EBR describing a logical partition.
	// Zero means "not set": Write then places it (see ebrOffsets).
	ebr int64
}

// End returns the first byte past the partition.
func (p Partition) End() int64 { return p.Start + p.Size }

// EBR returns the byte offset of the extended boot record that describes a
// logical partition, and false for any other partition or when the table
// was built by hand and Write will choose the position.
func (p Partition) EBR() (int64, bool) { return p.ebr, p.Logical && p.ebr > 0 }

// Table is a partition table, as read from a disk or planned for one.
type Table struct {
	Kind Kind
	// SectorSize is the logical sector size the table was read or is
	// written with.
	SectorSize int
	// DiskGUID is the GPT disk GUID.
	DiskGUID string
	// DiskSignature is the MBR disk signature (bytes 440-443), also kept
	// from a GPT's protective MBR.
	DiskSignature uint32
	// BootCode is bytes 0-439 of sector 0 (the MBR boot code), from the MBR
	// or the protective MBR. Nil or short means zeros.
	BootCode []byte
	// Partitions are sorted by Number. On MBR they exclude the extended
	// container.
	Partitions []Partition
	// Extended is the MBR extended container, nil if none.
	Extended *Partition

	// FirstUsableLBA and LastUsableLBA are the GPT header's fields, in
	// sectors of SectorSize. Write recomputes LastUsableLBA for the disk it
	// writes to.
	FirstUsableLBA, LastUsableLBA uint64
	// EntryCount and EntrySize describe the GPT entry array.
	EntryCount, EntrySize uint32

	// mbrReserved holds MBR bytes 444-445 (0x5A5A marks a copy-protected
	// disk on some systems), written back as read.
	mbrReserved [2]byte
	warnings    []string
}

// Limits on what Read accepts, so hostile input cannot make it allocate or
// loop without bound.
const (
	// maxEntryArray bounds the GPT entry array (EntryCount*EntrySize).
	maxEntryArray = 1 << 20
	// maxEBRHops bounds the logical partitions followed in an EBR chain.
	maxEBRHops = 1024
	// defaultAlign is the boundary Plan aligns what it chooses to.
	defaultAlign = 1 << 20
)

// Warnings returns conditions found while reading the table that a user
// should be told about (a damaged primary GPT, a hybrid MBR).
func (t *Table) Warnings() []string { return append([]string(nil), t.warnings...) }

func (t *Table) warnf(format string, args ...any) {
	t.warnings = append(t.warnings, fmt.Sprintf(format, args...))
}

// Find returns the partition numbered number.
func (t *Table) Find(number int) (*Partition, bool) {
	for i := range t.Partitions {
		if t.Partitions[i].Number == number {
			return &t.Partitions[i], true
		}
	}
	return nil, false
}

// Clone returns a deep copy of t.
func (t *Table) Clone() *Table {
	c := *t
	c.BootCode = append([]byte(nil), t.BootCode...)
	c.Partitions = append([]Partition(nil), t.Partitions...)
	if t.Extended != nil {
		e := *t.Extended
		c.Extended = &e
	}
	c.warnings = append([]string(nil), t.warnings...)
	return &c
}

// MetadataExtents returns the byte ranges the table's own structures occupy
// on a disk of diskSize bytes, laid out as Write lays them out: sector 0,
// each EBR sector, and for GPT the primary header and entry array and the
// backup entry array and header at the end of the disk. The result is
// sorted and merged.
func (t *Table) MetadataExtents(diskSize int64) []fsmap.Extent {
	ss := int64(t.SectorSize)
	if ss <= 0 {
		return nil
	}
	out := []fsmap.Extent{{Off: 0, Len: ss}}
	switch t.Kind {
	case MBR:
		if t.Extended != nil {
			// The first EBR, written even when the container is empty.
			out = append(out, fsmap.Extent{Off: t.Extended.Start, Len: ss})
		}
		if offs, err := t.ebrOffsets(); err == nil {
			for _, o := range offs {
				out = append(out, fsmap.Extent{Off: o, Len: ss})
			}
		}
	case GPT:
		es := t.entrySectors()
		out = append(out, fsmap.Extent{Off: ss, Len: (1 + es) * ss})
		last := diskSize/ss - 1
		if last-es > 1+es {
			out = append(out, fsmap.Extent{Off: (last - es) * ss, Len: (es + 1) * ss})
		}
	}
	return fsmap.Normalize(out, diskSize)
}

// BootGap returns the bytes between the end of the table structures at the
// start of the disk (sector 1 for MBR, the end of the primary entry array
// for GPT) and the first partition or EBR: where GRUB's core image sits on
// BIOS/MBR disks. size is 0 when there is no such gap or no partition.
func (t *Table) BootGap() (off, size int64) {
	ss := int64(t.SectorSize)
	switch t.Kind {
	case MBR:
		off = ss
	case GPT:
		off = (2 + t.entrySectors()) * ss
	default:
		return 0, 0
	}
	first := int64(-1)
	consider := func(v int64) {
		if first < 0 || v < first {
			first = v
		}
	}
	for _, p := range t.Partitions {
		consider(p.Start)
	}
	if t.Extended != nil {
		consider(t.Extended.Start)
	}
	if offs, err := t.ebrOffsets(); t.Kind == MBR && err == nil {
		for _, o := range offs {
			consider(o)
		}
	}
	if first <= off {
		return 0, 0
	}
	return off, first - off
}

// entrySectors is the number of sectors the GPT entry array fills.
func (t *Table) entrySectors() int64 {
	n, sz := int64(t.EntryCount), int64(t.EntrySize)
	if n == 0 {
		n = 128
	}
	if sz == 0 {
		sz = 128
	}
	ss := int64(t.SectorSize)
	return (n*sz + ss - 1) / ss
}

// logicals returns the indexes of the logical partitions in chain order.
func (t *Table) logicals() []int {
	var idx []int
	for i, p := range t.Partitions {
		if p.Logical {
			idx = append(idx, i)
		}
	}
	sort.Slice(idx, func(a, b int) bool { return t.Partitions[idx[a]].Number < t.Partitions[idx[b]].Number })
	return idx
}

// ebrOffsets returns the EBR position of each logical partition in chain
// order. An unset position is the extended container's start for the first
// logical and the sector before the partition otherwise. When the first
// logical's EBR is not at the container's start, an EBR holding only a link
// sits there (Linux and fdisk accept such chains).
func (t *Table) ebrOffsets() ([]int64, error) {
	idx := t.logicals()
	if len(idx) == 0 {
		return nil, nil
	}
	if t.Extended == nil {
		return nil, errors.New("logical partitions without an extended partition")
	}
	out := make([]int64, len(idx))
	for k, i := range idx {
		p := t.Partitions[i]
		switch {
		case p.ebr > 0:
			out[k] = p.ebr
		case k == 0:
			out[k] = t.Extended.Start
		default:
			out[k] = p.Start - int64(t.SectorSize)
		}
	}
	return out, nil
}

// checkContext returns ctx's error, wrapped to name the operation.
func checkContext(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

func validSectorSize(ss int) bool {
	return ss >= 512 && ss <= 65536 && ss&(ss-1) == 0
}
