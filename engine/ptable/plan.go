package ptable

import (
	"fmt"
	"math/bits"
	"sort"
)

// Layout says how Plan maps a source layout onto a target disk.
type Layout string

// The layouts Plan knows.
const (
	// LayoutKeep keeps every start and size; only the GPT backup moves to
	// the end of the target.
	LayoutKeep Layout = "keep"
	// LayoutGrowLast grows the partition that ends last to fill the target.
	LayoutGrowLast Layout = "grow-last"
	// LayoutProportional shares the target's extra space among all
	// partitions in proportion to their sizes.
	LayoutProportional Layout = "proportional"
)

// PlanOptions describe the target of a plan.
type PlanOptions struct {
	// TargetSize is the target disk's size in bytes.
	TargetSize int64
	// TargetSectorSize is the target's logical sector size; 0 means the
	// source's.
	TargetSectorSize int
	// Layout is LayoutKeep when empty.
	Layout Layout
	// Align is the boundary, in bytes, for the starts and ends Plan
	// chooses (moved starts, grown ends); 1 MiB when 0. A partition that
	// need not move is never moved to align it.
	Align int64
	// Only, when not empty, lists the partitions to carry by number; the
	// others are left off the target's table.
	Only []int
	// Pack lays the partitions out one after the other from the start of
	// the disk, in their order on the source, each aligned (the first
	// keeps its start when it can), before Layout shares out what is left.
	Pack bool
	// MinSize gives, with Pack, the partitions that may shrink (by number)
	// and the smallest size that holds each one's content. When the packed
	// layout does not fit the target, these partitions give up the bytes
	// that are missing, each in proportion to its room to shrink (its size
	// less its minimum); the others keep their sizes.
	MinSize map[int]int64
}

// TooSmallError is returned by Plan when the target cannot hold the source
// layout.
type TooSmallError struct {
	// Need is the smallest disk size in bytes that holds the layout.
	Need int64
	// Have is the target's size in bytes.
	Have int64
}

// Error gives both sizes in bytes and in binary units.
func (e *TooSmallError) Error() string {
	return fmt.Sprintf("target holds %s (%d bytes) but the layout needs %s (%d bytes)", humanBytes(e.Have), e.Have, humanBytes(e.Need), e.Need)
}

// SectorSizeError is returned by Plan when a table cannot be expressed
// exactly in the target's sector size.
type SectorSizeError struct {
	From, To int
	Reason   string
}

// Error names the sector sizes and the first thing that does not fit.
func (e *SectorSizeError) Error() string {
	return fmt.Sprintf("cannot translate the partition table from %d-byte to %d-byte sectors: %s", e.From, e.To, e.Reason)
}

// humanBytes formats n in binary units with one decimal ("8.0 GiB").
func humanBytes(n int64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n) / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, units[i])
}

func alignDown(v, a int64) int64 { return v / a * a }
func alignUp(v, a int64) int64   { return (v + a - 1) / a * a }

// usableEnd is the first byte past the area partitions may use on a disk of
// size bytes: before the backup GPT, or the last whole sector for MBR.
func (t *Table) usableEnd(size int64) int64 {
	ss := int64(t.SectorSize)
	sectors := size / ss
	if t.Kind == GPT {
		sectors -= 1 + t.entrySectors()
	}
	return sectors * ss
}

// Plan returns the table to write on a target described by opt for the
// source table src read from a disk of srcDiskSize bytes. Numbers, types,
// GUIDs, names, attributes and flags stay the same; the GPT disk GUID and
// the MBR boot code and signature too, since a clone replaces the disk.
//
// For MBR logical partitions each EBR keeps its distance to its partition's
// start (fdisk leaves one alignment unit, 1 MiB, between them), so a logical
// partition that moves takes its EBR along, and the extended container
// starts at the first EBR and ends where its slack after the last logical
// partition says, clamped to the target.
func Plan(src *Table, srcDiskSize int64, opt PlanOptions) (*Table, error) {
	if src.Kind != MBR && src.Kind != GPT {
		return nil, fmt.Errorf("plan partition table: the source has no partition table (kind %q)", src.Kind)
	}
	from, to := src.SectorSize, opt.TargetSectorSize
	if to == 0 {
		to = from
	}
	if !validSectorSize(to) {
		return nil, fmt.Errorf("plan partition table: invalid target sector size %d", to)
	}
	align := opt.Align
	if align == 0 {
		align = defaultAlign
	}
	if align < 0 || align%int64(to) != 0 {
		return nil, fmt.Errorf("plan partition table: alignment %d is not a multiple of the %d-byte target sector", align, to)
	}
	layout := opt.Layout
	if layout == "" {
		layout = LayoutKeep
	}
	if layout != LayoutKeep && layout != LayoutGrowLast && layout != LayoutProportional {
		return nil, fmt.Errorf("plan partition table: unknown layout %q", layout)
	}
	if opt.TargetSize <= 0 {
		return nil, fmt.Errorf("plan partition table: invalid target size %d", opt.TargetSize)
	}

	t := src.Clone()
	t.warnings = nil
	// Pin every EBR where the source has it before anything moves.
	offs, err := src.ebrOffsets()
	if err != nil {
		return nil, fmt.Errorf("plan partition table: %w", err)
	}
	for k, i := range t.logicals() {
		t.Partitions[i].ebr = offs[k]
	}
	srcLimit := src.usableEnd(srcDiskSize)
	if to != from {
		if err := t.translate(src, to); err != nil {
			return nil, err
		}
	}
	t.SectorSize = to
	ss := int64(to)
	limit := t.usableEnd(opt.TargetSize)
	if len(opt.Only) > 0 {
		if err := t.keepOnly(opt.Only); err != nil {
			return nil, err
		}
	}
	if opt.Pack {
		return t.planPacked(opt, limit, align)
	}

	// The smallest target that holds the layout unchanged.
	var end int64
	for _, p := range t.Partitions {
		end = max(end, p.End())
		if o, ok := p.EBR(); ok {
			end = max(end, o+ss)
		}
	}
	if t.Extended != nil {
		end = max(end, t.Extended.Start+ss)
	}
	if end > limit {
		need := end
		if t.Kind == GPT {
			need += (1 + t.entrySectors()) * ss
		}
		return nil, &TooSmallError{Need: need, Have: opt.TargetSize}
	}

	return t.finish(opt, layout, limit, srcLimit, align)
}

// finish grows the layout as asked, fits the extended container and the GPT
// usable area to the target, and checks the result.
func (t *Table) finish(opt PlanOptions, layout Layout, limit, srcLimit, align int64) (*Table, error) {
	ss := int64(t.SectorSize)
	switch layout {
	case LayoutGrowLast:
		t.growLast(limit, align)
	case LayoutProportional:
		t.proportional(limit, limit-srcLimit, align)
	}
	if t.Extended != nil {
		// The container may stretch past the target (a smaller target
		// whose partitions still fit): end it at the target's end, or
		// the last logical partition's end if that is later.
		e := t.Extended
		if e.End() > limit {
			newEnd := limit
			for _, i := range t.logicals() {
				newEnd = max(newEnd, t.Partitions[i].End())
			}
			e.Size = newEnd - e.Start
		}
	}
	if t.Kind == MBR && layout != LayoutKeep {
		maxEnd := int64(0xFFFFFFFF) * ss
		for _, p := range append(t.Partitions, *orZero(t.Extended)) {
			if p.End() > maxEnd {
				return nil, fmt.Errorf("plan partition table: an MBR cannot address past %s with %d-byte sectors but partition %d would end at %s (byte %d); use layout %q or a GPT disk",
					humanBytes(maxEnd), ss, p.Number, humanBytes(p.End()), p.End(), LayoutKeep)
			}
		}
	}
	if t.Kind == GPT {
		es := t.entrySectors()
		if min := uint64(2 + es); t.FirstUsableLBA < min {
			t.FirstUsableLBA = min
		}
		t.LastUsableLBA = uint64(limit/ss - 1)
	}
	if err := t.validate(opt.TargetSize); err != nil {
		return nil, fmt.Errorf("plan partition table: planned layout is invalid: %w", err)
	}
	return t, nil
}

// planPacked is Plan for opt.Pack: pack, shrink what may shrink when the
// target is too small, else grow as the layout says.
func (t *Table) planPacked(opt PlanOptions, limit, align int64) (*Table, error) {
	before := map[int]int64{}
	for _, p := range t.Partitions {
		before[p.Number] = p.Size
	}
	if err := t.shrinkToFit(limit, align, opt.MinSize, opt.TargetSize-limit); err != nil {
		return nil, err
	}
	layout := opt.Layout
	var end int64
	shrunk := false
	for _, p := range t.Partitions {
		end = max(end, p.End())
		shrunk = shrunk || p.Size < before[p.Number]
	}
	if t.Extended != nil {
		end = max(end, t.Extended.End())
	}
	if shrunk || layout == "" {
		// A shrunk layout already fills the target.
		layout = LayoutKeep
	}
	return t.finish(opt, layout, limit, end, align)
}

func orZero(p *Partition) *Partition {
	if p == nil {
		return &Partition{}
	}
	return p
}

// translate checks that src's layout is expressible in sectors of to bytes
// and recomputes the GPT structures for them.
func (t *Table) translate(src *Table, to int) error {
	ss := int64(to)
	fail := func(format string, args ...any) error {
		return &SectorSizeError{From: src.SectorSize, To: to, Reason: fmt.Sprintf(format, args...)}
	}
	order := append([]Partition(nil), t.Partitions...)
	sort.Slice(order, func(i, j int) bool { return order[i].Number < order[j].Number })
	if t.Extended != nil {
		e := *t.Extended
		if e.Start%ss != 0 || e.Size%ss != 0 {
			return fail("extended partition %d (start byte %d, %d bytes) is not a multiple of %d bytes", e.Number, e.Start, e.Size, to)
		}
	}
	for _, p := range order {
		if p.Start%ss != 0 {
			return fail("partition %d starts at byte %d, not a multiple of %d", p.Number, p.Start, to)
		}
		if p.Size%ss != 0 {
			return fail("partition %d is %d bytes long, not a multiple of %d", p.Number, p.Size, to)
		}
		if o, ok := p.EBR(); ok && o%ss != 0 {
			return fail("the EBR of logical partition %d is at byte %d, not a multiple of %d", p.Number, o, to)
		}
	}
	if t.Kind == GPT {
		srcFirst := int64(src.FirstUsableLBA) * int64(src.SectorSize)
		t.SectorSize = to
		first := max(2+t.entrySectors(), (srcFirst+ss-1)/ss)
		t.FirstUsableLBA = uint64(first)
		for _, p := range order {
			if p.Start < first*ss {
				return fail("the GPT structures would end at byte %d (first usable LBA %d), past the start of partition %d (byte %d)", first*ss, first, p.Number, p.Start)
			}
		}
	}
	return nil
}

// growLast grows the partition that ends last to limit aligned down, and
// the extended container with it when it is a logical partition.
func (t *Table) growLast(limit, align int64) {
	last := -1
	for i, p := range t.Partitions {
		if last < 0 || p.End() > t.Partitions[last].End() {
			last = i
		}
	}
	if last < 0 {
		return
	}
	p := &t.Partitions[last]
	newEnd := alignDown(limit, align)
	if newEnd <= p.End() {
		return
	}
	p.Size = newEnd - p.Start
	if p.Logical && t.Extended != nil && t.Extended.End() < newEnd {
		t.Extended.Size = newEnd - t.Extended.Start
	}
}

// proportional shares extra bytes among the partitions in proportion to
// their sizes, moving later partitions forward as earlier ones grow.
func (t *Table) proportional(limit, extra, align int64) {
	if extra <= 0 || len(t.Partitions) == 0 {
		return
	}
	orig := t.Clone()
	srcLimit := limit - extra
	// Rounding to the alignment can push an unaligned source layout a few
	// units further than the extra space; retry with less until it fits.
	for try := 0; try < 8 && extra > 0; try++ {
		c := orig.Clone()
		over := c.share(extra, align) - limit
		if over <= 0 {
			*t = *c
			break
		}
		extra -= over
	}
	// A last partition that filled the source disk fills the target too,
	// instead of leaving the alignment losses of every share unused.
	last := -1
	for i, p := range orig.Partitions {
		if last < 0 || p.End() > orig.Partitions[last].End() {
			last = i
		}
	}
	if last >= 0 && srcLimit-orig.Partitions[last].End() < align {
		t.growLast(limit, align)
	}
}

// share performs one proportional pass and returns the planned layout's end.
func (t *Table) share(extra, align int64) int64 {
	type item struct {
		idx int // index in Partitions, -1 for an empty extended container
	}
	var items []item
	var total uint64
	for i, p := range t.Partitions {
		items = append(items, item{i})
		total += uint64(p.Size)
	}
	hasLogicals := len(t.logicals()) > 0
	if t.Extended != nil && !hasLogicals {
		items = append(items, item{-1})
	}
	startOf := func(it item) int64 {
		if it.idx < 0 {
			return t.Extended.Start
		}
		return t.Partitions[it.idx].Start
	}
	sort.SliceStable(items, func(a, b int) bool { return startOf(items[a]) < startOf(items[b]) })

	var extEnd, extLead int64
	if t.Extended != nil {
		extEnd = t.Extended.End()
		if hasLogicals {
			// Bytes between the container's start and the first EBR.
			extLead = t.Partitions[t.logicals()[0]].ebr - t.Extended.Start
		}
	}
	var cum, end, lastLogicalShift int64
	for _, it := range items {
		if it.idx < 0 {
			t.Extended.Start += cum
			end = max(end, t.Extended.Start+int64(t.SectorSize))
			continue
		}
		p := &t.Partitions[it.idx]
		oldStart, oldEnd := p.Start, p.End()
		hi, lo := bits.Mul64(uint64(extra), uint64(p.Size))
		part, _ := bits.Div64(hi, lo, total)
		newStart := oldStart
		if cum > 0 {
			newStart = alignUp(oldStart+cum, align)
		}
		newEnd := alignDown(oldEnd+cum+int64(part), align)
		if newEnd < newStart+p.Size {
			newEnd = newStart + p.Size
		}
		if p.Logical {
			p.ebr = newStart - (oldStart - p.ebr)
		}
		p.Start, p.Size = newStart, newEnd-newStart
		cum = newEnd - oldEnd
		if p.Logical {
			lastLogicalShift = cum
		}
		end = max(end, newEnd)
	}
	if t.Extended != nil && hasLogicals {
		idx := t.logicals()
		e := t.Extended
		e.Start = t.Partitions[idx[0]].ebr - extLead
		newEnd := max(extEnd+lastLogicalShift, t.Partitions[idx[len(idx)-1]].End())
		e.Size = newEnd - e.Start
		end = max(end, t.Partitions[idx[len(idx)-1]].End())
	}
	return end
}
