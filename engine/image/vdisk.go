package image

import (
	"errors"
	"fmt"
	"io"
	"sort"
)

// region is a byte range of a virtual disk backed by a reader.
type region struct {
	off, size int64
	r         io.ReaderAt
}

// VDisk is a snapshot seen as a read-only disk: each stored region (the
// partition table areas, each partition) at its offset, zeros everywhere
// else. Restore clones from it as it clones from a real disk, so both share
// one engine: layouts, growth, safety rules, the table written last.
type VDisk struct {
	size    int64
	sector  int
	psector int
	regions []region
}

// NewVDisk returns a virtual disk of size bytes with the given sector
// sizes. Regions are added with Add.
func NewVDisk(size int64, sector, psector int) *VDisk {
	if sector <= 0 {
		sector = 512
	}
	if psector < sector {
		psector = sector
	}
	return &VDisk{size: size, sector: sector, psector: psector}
}

// Add places r's first size bytes at off. Regions may not overlap.
func (d *VDisk) Add(off, size int64, r io.ReaderAt) error {
	if off < 0 || size < 0 || off+size > d.size {
		return fmt.Errorf("virtual disk: region %d+%d outside its %d bytes", off, size, d.size)
	}
	i := sort.Search(len(d.regions), func(i int) bool { return d.regions[i].off >= off })
	if i > 0 && d.regions[i-1].off+d.regions[i-1].size > off || i < len(d.regions) && off+size > d.regions[i].off {
		return fmt.Errorf("virtual disk: region %d+%d overlaps another", off, size)
	}
	d.regions = append(d.regions, region{})
	copy(d.regions[i+1:], d.regions[i:])
	d.regions[i] = region{off: off, size: size, r: r}
	return nil
}

// ReadAt implements io.ReaderAt.
func (d *VDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("virtual disk: negative offset")
	}
	if off >= d.size {
		return 0, io.EOF
	}
	var err error
	if rem := d.size - off; int64(len(p)) > rem {
		p = p[:rem]
		err = io.EOF
	}
	clear(p)
	end := off + int64(len(p))
	i := sort.Search(len(d.regions), func(i int) bool { return d.regions[i].off+d.regions[i].size > off })
	for ; i < len(d.regions) && d.regions[i].off < end; i++ {
		rg := d.regions[i]
		from, to := max(off, rg.off), min(end, rg.off+rg.size)
		if n, rerr := rg.r.ReadAt(p[from-off:to-off], from-rg.off); rerr != nil && !(rerr == io.EOF && int64(n) == to-from) {
			return 0, fmt.Errorf("read snapshot bytes %d-%d: %w", from, to-1, rerr)
		}
	}
	return len(p), err
}

// WriteAt refuses: a snapshot is never written.
func (d *VDisk) WriteAt(p []byte, off int64) (int, error) {
	return 0, errors.New("a snapshot cannot be written")
}

// Size implements blockdev.Device.
func (d *VDisk) Size() int64 { return d.size }

// SectorSize implements blockdev.Device.
func (d *VDisk) SectorSize() int { return d.sector }

// PhysicalSectorSize implements blockdev.Device.
func (d *VDisk) PhysicalSectorSize() int { return d.psector }

// Sync implements blockdev.Device.
func (d *VDisk) Sync() error { return nil }

// Close implements blockdev.Device.
func (d *VDisk) Close() error { return nil }
