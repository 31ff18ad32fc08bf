package blockdev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Loop is a loop device attached to a byte range of a file or block device.
// External tools (resize2fs, ntfsresize, fsck) need a path that holds
// exactly one file system; a partition inside an image file, or a partition
// whose table is not written yet, has none until a loop device gives it one.
type Loop struct {
	Path string
	f    *os.File
}

// AttachLoop attaches [off, off+size) of backing to a free loop device.
func AttachLoop(ctx context.Context, backing string, off, size int64, readOnly bool) (*Loop, error) {
	flags := os.O_RDWR
	if readOnly {
		flags = os.O_RDONLY
	}
	bf, err := os.OpenFile(backing, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("attach loop device to %s: %w", backing, err)
	}
	defer bf.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("attach loop device to %s: %w", backing, err)
	}
	defer ctl.Close()
	// Another process may take the free device between GET_FREE and
	// SET_FD; try again a few times.
	for attempt := 0; attempt < 10; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("find a free loop device: %w", err)
		}
		path := fmt.Sprintf("/dev/loop%d", n)
		lf, err := os.OpenFile(path, flags|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		if err := unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_SET_FD, int(bf.Fd())); err != nil {
			lf.Close()
			if errors.Is(err, unix.EBUSY) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return nil, fmt.Errorf("attach %s to %s: %w", path, backing, err)
		}
		info := unix.LoopInfo64{Offset: uint64(off), Sizelimit: uint64(size), Flags: unix.LO_FLAGS_AUTOCLEAR}
		if readOnly {
			info.Flags |= unix.LO_FLAGS_READ_ONLY
		}
		if err := unix.IoctlLoopSetStatus64(int(lf.Fd()), &info); err != nil {
			unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_CLR_FD, 0)
			lf.Close()
			return nil, fmt.Errorf("set offset %d and size %d on %s: %w", off, size, path, err)
		}
		return &Loop{Path: path, f: lf}, nil
	}
	return nil, fmt.Errorf("attach loop device to %s: every free device was taken by others", backing)
}

// Detach flushes and frees the loop device.
func (l *Loop) Detach() error {
	if l.f == nil {
		return nil
	}
	unix.Fsync(int(l.f.Fd()))
	err := unix.IoctlSetInt(int(l.f.Fd()), unix.LOOP_CLR_FD, 0)
	cerr := l.f.Close()
	l.f = nil
	if err != nil && !errors.Is(err, unix.ENXIO) {
		return fmt.Errorf("detach %s: %w", l.Path, err)
	}
	if cerr != nil {
		return fmt.Errorf("close %s: %w", l.Path, cerr)
	}
	return nil
}

// DropCache writes back and evicts cached pages of [off, off+n), so a
// following read comes from the device: verification must not read back
// what is still in memory.
func (d *Disk) DropCache(off, n int64) error {
	if err := unix.Fdatasync(int(d.f.Fd())); err != nil {
		return fmt.Errorf("flush %s: %w", d.path, err)
	}
	if err := unix.Fadvise(int(d.f.Fd()), off, n, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("drop cached pages of %s: %w", d.path, err)
	}
	return nil
}
