package blockdev

import (
	"fmt"
	"io"
)

// Window is a byte range of a Device seen as a device of its own, such as a
// partition. Reads and writes outside it are refused.
type Window struct {
	dev  Device
	off  int64
	size int64
}

// Sub returns the window [off, off+size) of dev.
func Sub(dev Device, off, size int64) *Window {
	return &Window{dev: dev, off: off, size: size}
}

// Offset returns where the window starts on its device.
func (w *Window) Offset() int64 { return w.off }

// Parent returns the device the window is on.
func (w *Window) Parent() Device { return w.dev }

// ReadAt implements io.ReaderAt within the window.
func (w *Window) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at negative offset %d", off)
	}
	if off >= w.size {
		return 0, io.EOF
	}
	short := false
	if rem := w.size - off; int64(len(p)) > rem {
		p = p[:rem]
		short = true
	}
	n, err := w.dev.ReadAt(p, w.off+off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

// WriteAt implements io.WriterAt within the window.
func (w *Window) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > w.size {
		return 0, fmt.Errorf("write %d bytes at %d: outside the %d-byte window", len(p), off, w.size)
	}
	return w.dev.WriteAt(p, w.off+off)
}

// Size implements Device.
func (w *Window) Size() int64 { return w.size }

// SectorSize implements Device.
func (w *Window) SectorSize() int { return w.dev.SectorSize() }

// PhysicalSectorSize implements Device.
func (w *Window) PhysicalSectorSize() int { return w.dev.PhysicalSectorSize() }

// Sync implements Device.
func (w *Window) Sync() error { return w.dev.Sync() }

// Close does nothing: the window does not own its device.
func (w *Window) Close() error { return nil }
