// Package fsmap defines what every file-system package under engine/fsmap
// provides: detection, identity (type, label, UUID) and the used-block map,
// an ordered list of byte extents that covers every allocated block.
//
// A used-block map must be a superset of what the file system allocates:
// copying too much costs time, copying too little corrupts a clone.
package fsmap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
)

// ErrNotDetected is returned by a Detector when the bytes it was given do not
// hold its file system. Any other error means the file system was recognised
// but is damaged or unsupported.
var ErrNotDetected = errors.New("file system not detected")

// Extent is the byte range [Off, Off+Len) relative to the start of the file
// system (the start of its partition).
type Extent struct {
	Off int64
	Len int64
}

// End returns the first byte past the extent.
func (e Extent) End() int64 { return e.Off + e.Len }

// Info describes a detected file system.
type Info struct {
	// Type is the short name shown to users and used to pick a resizer:
	// ext2, ext3, ext4, vfat, ntfs, exfat, swap, or for raw-copied content
	// luks, bitlocker, lvm2, xfs, btrfs, unknown.
	Type string
	// Variant refines Type where it matters (FAT12, FAT16, FAT32; LUKS2).
	Variant string
	Label   string
	UUID    string
	// BlockSize is the allocation unit in bytes (cluster or block size).
	BlockSize int64
	// Size is the number of bytes the file system spans from its start.
	Size int64
	// Used is the number of bytes the used-block map covers.
	Used int64
	// Raw is true when no used-block map exists for this content and every
	// byte is copied.
	Raw bool
	// NoGrow, when set, says why the file system must not be resized
	// (a hibernated Windows would lose its state); it is still copied.
	NoGrow string
	// Warnings are conditions a user must be told about (a hibernated NTFS
	// volume, a file system marked dirty, a raw copy of an encrypted volume).
	Warnings []string
}

// FS is a file system detected on a volume.
type FS interface {
	// Info returns what was detected. Used may be zero until UsedExtents ran.
	Info() Info
	// UsedExtents returns sorted, non-overlapping, non-adjacent extents that
	// cover every allocated block and all metadata. It reads the allocation
	// bitmaps, so it may take a while on large volumes.
	UsedExtents(ctx context.Context) ([]Extent, error)
}

// Detector recognises one file system in the volume r of size bytes.
// It returns ErrNotDetected (possibly wrapped) when the volume does not hold it.
type Detector func(ctx context.Context, r io.ReaderAt, size int64) (FS, error)

// Volume is read-write access to one file system's partition on a target,
// for resizers. DevicePath gives external tools (resize2fs, ntfsresize) a
// path holding exactly the volume: a partition device node or a loop device
// with an offset. release must be called when the tool is done.
type Volume interface {
	io.ReaderAt
	io.WriterAt
	Size() int64
	DevicePath(ctx context.Context) (path string, release func() error, err error)
}

// Grower grows the file system on v to fill newSize bytes (newSize >= its
// current size). It must leave a file system that its fsck accepts.
type Grower func(ctx context.Context, v Volume, newSize int64) error

// Shrinker shrinks the file system on v so that it ends within newSize
// bytes (newSize < its current size), moving data as needed, and returns
// the file system's new size. It runs on a copy-on-write view of a source,
// never on the source itself. When the used data cannot fit it returns an
// error wrapping ErrTooSmall that gives the smallest size it could reach.
// It must leave a file system that its fsck accepts.
type Shrinker func(ctx context.Context, v Volume, newSize int64) (int64, error)

// ErrTooSmall is wrapped by a Shrinker's error when the file system's used
// data does not fit the size asked for.
var ErrTooSmall = errors.New("file system does not fit")

// Normalize sorts extents, drops empty ones, clamps them to [0, limit) and
// merges overlapping and adjacent ones. A limit <= 0 means no clamp.
func Normalize(ext []Extent, limit int64) []Extent {
	out := make([]Extent, 0, len(ext))
	for _, e := range ext {
		if limit > 0 {
			if e.Off >= limit {
				continue
			}
			if e.End() > limit {
				e.Len = limit - e.Off
			}
		}
		if e.Off < 0 {
			e.Len += e.Off
			e.Off = 0
		}
		if e.Len > 0 {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Off < out[j].Off })
	merged := out[:0]
	for _, e := range out {
		if n := len(merged); n > 0 && e.Off <= merged[n-1].End() {
			if e.End() > merged[n-1].End() {
				merged[n-1].Len = e.End() - merged[n-1].Off
			}
			continue
		}
		merged = append(merged, e)
	}
	return merged
}

// Total returns the number of bytes the extents cover.
func Total(ext []Extent) int64 {
	var n int64
	for _, e := range ext {
		n += e.Len
	}
	return n
}

// BitmapExtents turns an allocation bitmap into extents: bit i set (LSB
// first within each byte) means unit first+i is in use, where a unit is
// unitSize bytes starting at base. nbits bounds how many bits are read.
func BitmapExtents(bitmap []byte, nbits int64, first int64, unitSize, base int64) []Extent {
	var out []Extent
	if max := int64(len(bitmap)) * 8; nbits > max {
		nbits = max
	}
	var runStart int64 = -1
	flush := func(end int64) {
		if runStart >= 0 {
			out = append(out, Extent{Off: base + (first+runStart)*unitSize, Len: (end - runStart) * unitSize})
			runStart = -1
		}
	}
	for i := int64(0); i < nbits; {
		b := bitmap[i/8]
		if i%8 == 0 && i+8 <= nbits && (b == 0 || b == 0xff) {
			if b == 0xff {
				if runStart < 0 {
					runStart = i
				}
			} else {
				flush(i)
			}
			i += 8
			continue
		}
		if b&(1<<(uint(i)%8)) != 0 {
			if runStart < 0 {
				runStart = i
			}
		} else {
			flush(i)
		}
		i++
	}
	flush(nbits)
	return out
}

// ReadFull reads len(p) bytes at off from r, naming what was read in errors.
func ReadFull(r io.ReaderAt, p []byte, off int64, what string) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %s at byte %d: %w", what, off, err)
}
