package ptable

import (
	"fmt"
	"sort"
)

// keepOnly drops the partitions whose numbers are not in only. MBR logical
// partitions are numbered by their place in the EBR chain, so leaving one
// out while a later one stays would renumber the later one: that is
// refused. The extended container goes when no logical partition stays.
func (t *Table) keepOnly(only []int) error {
	want := map[int]bool{}
	for _, n := range only {
		if _, ok := t.Find(n); !ok {
			return fmt.Errorf("plan partition table: the source has no partition %d", n)
		}
		want[n] = true
	}
	var kept []Partition
	droppedLogical := 0
	for _, i := range append(t.primaries(), t.logicals()...) {
		p := t.Partitions[i]
		if want[p.Number] {
			if p.Logical && droppedLogical != 0 {
				return fmt.Errorf("plan partition table: logical partition %d would be renumbered because logical partition %d before it is left out", p.Number, droppedLogical)
			}
			kept = append(kept, p)
		} else if p.Logical && droppedLogical == 0 {
			droppedLogical = p.Number
		}
	}
	sort.Slice(kept, func(a, b int) bool { return kept[a].Number < kept[b].Number })
	t.Partitions = kept
	if len(t.logicals()) == 0 {
		t.Extended = nil
	}
	return nil
}

func (t *Table) primaries() []int {
	var idx []int
	for i, p := range t.Partitions {
		if !p.Logical {
			idx = append(idx, i)
		}
	}
	return idx
}

// unit is what packing moves as one piece: a partition, or the extended
// container with every logical partition in it.
type unit struct {
	idx        int // index in Partitions, -1 for the extended container
	start, end int64
}

func (t *Table) units() []unit {
	var us []unit
	for _, i := range t.primaries() {
		p := t.Partitions[i]
		us = append(us, unit{idx: i, start: p.Start, end: p.End()})
	}
	if e := t.Extended; e != nil {
		u := unit{idx: -1, start: e.Start, end: e.End()}
		if offs, err := t.ebrOffsets(); err == nil && len(offs) > 0 {
			u.start = min(u.start, offs[0])
		}
		us = append(us, u)
	}
	sort.Slice(us, func(a, b int) bool { return us[a].start < us[b].start })
	return us
}

// pack lays the partitions out one after the other from the first aligned
// byte the table's own structures leave free, each aligned, in their
// order; sizes come from size (by partition number) where given. It
// returns the end of the layout.
func (t *Table) pack(first, align int64, size map[int]int64) int64 {
	cursor := first
	var end int64
	for k, u := range t.units() {
		start := alignUp(cursor, align)
		if k == 0 && u.start >= first && u.start < start {
			// An old layout's first partition below the alignment (sector
			// 63) keeps its place: boot code may count on it.
			start = u.start
		}
		shift := start - u.start
		if u.idx < 0 {
			e := t.Extended
			e.Start += shift
			for _, i := range t.logicals() {
				p := &t.Partitions[i]
				p.Start += shift
				if p.ebr > 0 {
					p.ebr += shift
				}
			}
			cursor = e.End()
		} else {
			p := &t.Partitions[u.idx]
			p.Start = start
			if s, ok := size[p.Number]; ok {
				p.Size = s
			}
			cursor = p.End()
		}
		end = max(end, cursor)
	}
	return end
}

// firstFree is the first byte a partition may start at on this table.
func (t *Table) firstFree() int64 {
	ss := int64(t.SectorSize)
	if t.Kind == GPT {
		return max(int64(t.FirstUsableLBA), 2+t.entrySectors()) * ss
	}
	return ss
}

// shrinkToFit packs the table into limit, taking the bytes that are
// missing from the partitions in minSize in proportion to the room each
// has to shrink (its size less its minimum, both aligned). It returns the
// planned layout's end, or a TooSmallError giving the smallest disk that
// holds the layout with every shrinkable partition at its minimum.
func (t *Table) shrinkToFit(limit, align int64, minSize map[int]int64, tail int64) error {
	orig := t.Clone()
	first := t.firstFree()
	sizes := map[int]int64{}
	var slack []int64
	var nums []int
	var room int64
	for _, p := range orig.Partitions {
		m, ok := minSize[p.Number]
		if !ok || p.Logical {
			continue
		}
		m = min(alignUp(max(m, int64(orig.SectorSize)), align), p.Size)
		if p.Size > m {
			nums = append(nums, p.Number)
			slack = append(slack, p.Size-m)
			room += p.Size - m
		}
	}
	probe := orig.Clone()
	end := probe.pack(first, align, nil)
	over := end - limit
	if over <= 0 {
		*t = *probe
		return nil
	}
	for try := 0; try < 16; try++ {
		if over > room {
			break
		}
		for k, n := range nums {
			p, _ := orig.Find(n)
			give := alignUp(mulDiv(over, slack[k], room), align)
			sizes[n] = max(p.Size-give, p.Size-slack[k])
		}
		c := orig.Clone()
		end = c.pack(first, align, sizes)
		if end <= limit {
			*t = *c
			return nil
		}
		over += end - limit
	}
	least := orig.Clone()
	for k, n := range nums {
		p, _ := orig.Find(n)
		sizes[n] = p.Size - slack[k]
	}
	need := least.pack(first, align, sizes) + tail
	return &TooSmallError{Need: need, Have: limit + tail}
}

// mulDiv returns a*b/c rounded up, without overflow for disk-sized values.
func mulDiv(a, b, c int64) int64 {
	if c <= 0 {
		return a
	}
	q := float64(a) * float64(b) / float64(c)
	r := int64(q)
	if float64(r) < q {
		r++
	}
	return min(r, a)
}
