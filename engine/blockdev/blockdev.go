// Package blockdev gives byte access to a block device or a disk-image file
// through io.ReaderAt and io.WriterAt, with the safety properties the engine
// relies on: sources are opened read-only, block-device targets with O_EXCL
// (the kernel then refuses the open while the device or any of its
// partitions is mounted or held by another exclusive user).
package blockdev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Device is a disk or a window onto one.
type Device interface {
	io.ReaderAt
	io.WriterAt
	// Size is the number of addressable bytes.
	Size() int64
	// SectorSize is the logical sector size in bytes.
	SectorSize() int
	// PhysicalSectorSize is the physical sector size in bytes.
	PhysicalSectorSize() int
	Sync() error
	Close() error
}

// Mode says how a device is opened.
type Mode int

const (
	// ReadOnly opens for reading only. Sources are always opened so.
	ReadOnly Mode = iota
	// ReadWrite opens for writing; a block device is opened with O_EXCL.
	ReadWrite
)

// Options tunes Open.
type Options struct {
	Mode Mode
	// SectorSize overrides the logical sector size of a regular file
	// (default 512); ignored for block devices, which report their own.
	SectorSize int
}

// Disk is an opened block device or regular file.
type Disk struct {
	f        *os.File
	path     string
	size     int64
	lsector  int
	psector  int
	isBlock  bool
	readOnly bool
	rdev     uint64
}

// Open opens path (a block device or a regular file) as a Device.
func Open(ctx context.Context, path string, opt Options) (*Disk, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open disk %s: %w", path, err)
	}
	d := &Disk{path: path, readOnly: opt.Mode == ReadOnly}
	flags := os.O_RDONLY
	if opt.Mode == ReadWrite {
		flags = os.O_RDWR
	}
	switch {
	case st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
		d.isBlock = true
		if opt.Mode == ReadWrite {
			flags |= unix.O_EXCL
		}
	case st.Mode().IsRegular():
	default:
		return nil, fmt.Errorf("open disk %s: not a block device or regular file", path)
	}
	f, err := os.OpenFile(path, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("open %s exclusively: %w (it, or one of its partitions, is mounted or held by another program)", path, err)
		}
		return nil, fmt.Errorf("open disk %s: %w", path, err)
	}
	d.f = f
	if d.isBlock {
		if d.size, err = blockSize(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("read size of %s: %w", path, err)
		}
		if v, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET); err == nil {
			d.lsector = v
		}
		if v, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKPBSZGET); err == nil {
			d.psector = v
		}
		var sst unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &sst); err == nil {
			d.rdev = sst.Rdev
		}
	} else {
		d.size = st.Size()
		d.lsector = opt.SectorSize
	}
	if d.lsector <= 0 {
		d.lsector = 512
	}
	if d.psector < d.lsector {
		d.psector = d.lsector
	}
	return d, nil
}

func blockSize(f *os.File) (int64, error) {
	var size uint64
	if err := ioctlPtr(f.Fd(), unix.BLKGETSIZE64, &size); err != nil {
		return 0, err
	}
	return int64(size), nil
}

// Path returns the path the disk was opened by.
func (d *Disk) Path() string { return d.path }

// IsBlockDevice reports whether the disk is a block device (not a file).
func (d *Disk) IsBlockDevice() bool { return d.isBlock }

// Rdev returns the device number of a block device, or 0.
func (d *Disk) Rdev() uint64 { return d.rdev }

// File returns the underlying file, for ioctls.
func (d *Disk) File() *os.File { return d.f }

// Size implements Device.
func (d *Disk) Size() int64 { return d.size }

// SectorSize implements Device.
func (d *Disk) SectorSize() int { return d.lsector }

// PhysicalSectorSize implements Device.
func (d *Disk) PhysicalSectorSize() int { return d.psector }

// ReadAt implements io.ReaderAt. Reads past the end return io.EOF.
func (d *Disk) ReadAt(p []byte, off int64) (int, error) {
	if off >= d.size {
		return 0, io.EOF
	}
	short := false
	if rem := d.size - off; int64(len(p)) > rem {
		p = p[:rem]
		short = true
	}
	n, err := d.f.ReadAt(p, off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

// WriteAt implements io.WriterAt. Writes past the end of a block device or
// of a read-only disk fail; a regular file does not grow past its size.
func (d *Disk) WriteAt(p []byte, off int64) (int, error) {
	if d.readOnly {
		return 0, fmt.Errorf("write %s: opened read-only", d.path)
	}
	if off < 0 || off+int64(len(p)) > d.size {
		return 0, fmt.Errorf("write %d bytes at %d on %s: beyond its end (%d bytes)", len(p), off, d.path, d.size)
	}
	return d.f.WriteAt(p, off)
}

// Sync flushes written data to stable storage.
func (d *Disk) Sync() error {
	if d.readOnly {
		return nil
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("flush %s: %w", d.path, err)
	}
	return nil
}

// Close closes the disk.
func (d *Disk) Close() error { return d.f.Close() }

// Discard tells the device that [off, off+n) holds no data. On a block
// device it issues BLKDISCARD; on a file it punches a hole. It reports
// whether the range now reads back as zeros.
func (d *Disk) Discard(off, n int64) (zeroes bool, err error) {
	if d.readOnly {
		return false, fmt.Errorf("discard on %s: opened read-only", d.path)
	}
	if d.isBlock {
		r := [2]uint64{uint64(off), uint64(n)}
		if err := ioctlPtr(d.f.Fd(), unix.BLKDISCARD, &r); err != nil {
			return false, fmt.Errorf("discard %d bytes at %d on %s: %w", n, off, d.path, err)
		}
		return d.discardZeroes(), nil
	}
	if err := unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err != nil {
		return false, fmt.Errorf("punch hole of %d bytes at %d in %s: %w", n, off, d.path, err)
	}
	return true, nil
}

// ZeroOut makes [off, off+n) read back as zeros, cheaply where the device
// can (BLKZEROOUT, or a hole in a file).
func (d *Disk) ZeroOut(off, n int64) error {
	if d.readOnly {
		return fmt.Errorf("zero range on %s: opened read-only", d.path)
	}
	if d.isBlock {
		r := [2]uint64{uint64(off), uint64(n)}
		if err := ioctlPtr(d.f.Fd(), unix.BLKZEROOUT, &r); err != nil {
			return fmt.Errorf("zero %d bytes at %d on %s: %w", n, off, d.path, err)
		}
		return nil
	}
	if err := unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err != nil {
		return fmt.Errorf("punch hole of %d bytes at %d in %s: %w", n, off, d.path, err)
	}
	return nil
}

// discardZeroes reports whether discarded blocks read back as zeros, from
// sysfs. Modern kernels report 0 always, so this is conservative.
func (d *Disk) discardZeroes() bool {
	name := filepath.Base(d.path)
	if real, err := filepath.EvalSymlinks(d.path); err == nil {
		name = filepath.Base(real)
	}
	b, err := os.ReadFile("/sys/class/block/" + name + "/queue/discard_zeroes_data")
	return err == nil && len(b) > 0 && b[0] == '1'
}

// RereadPartitions asks the kernel to re-read the partition table of a
// block device (BLKRRPART). It is a no-op on files.
func (d *Disk) RereadPartitions() error {
	if !d.isBlock {
		return nil
	}
	if _, err := unix.IoctlGetInt(int(d.f.Fd()), unix.BLKRRPART); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return nil // loop devices without partition scanning, partitions themselves
		}
		return fmt.Errorf("re-read partition table of %s: %w", d.path, err)
	}
	return nil
}
