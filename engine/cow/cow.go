// Package cow provides a copy-on-write view of a read-only volume: reads see
// the base with the overlay's own writes on top, and writes never reach the
// base. Shrinking a file system needs the tools to rewrite it in place; on
// an overlay they can, while the source disk stays byte for byte as it was.
//
// The overlay works in blocks of BlockSize bytes: the first write into a
// block copies it up from the base, later reads of the block come from the
// copy. Copies live in memory or, with Options.ScratchDir, in an unlinked
// temporary file. DevicePath exposes the overlay as a regular file through
// FUSE so external programs (e2fsck, resize2fs, ntfsresize) can work on it.
package cow

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// BlockSize is the copy-up unit: a write copies the whole block around it
// from the base once. 4 KiB matches the block and cluster sizes the
// shrinking tools write in, so a scattered metadata update costs little.
const BlockSize = 4096

// ErrClosed is returned by every method of a closed Overlay.
var ErrClosed = errors.New("copy-on-write overlay is closed")

// ErrFull is wrapped by WriteAt when the write would make the overlay hold
// more than Options.Limit bytes.
var ErrFull = errors.New("copy-on-write overlay is full")

// Options tunes an Overlay.
type Options struct {
	// ScratchDir, when set, holds written blocks in an unlinked temporary
	// file there; empty keeps them in memory.
	ScratchDir string
	// Limit, when positive, bounds the bytes the overlay may hold (Written):
	// a write that needs more fails with ErrFull instead of filling the
	// memory or the scratch file system.
	Limit int64
}

// Overlay is a copy-on-write view of a read-only base: reads see the base
// with the overlay's writes on top; writes go to memory or to a scratch
// file, never to the base. It is safe for concurrent use.
type Overlay struct {
	base  io.ReaderAt
	size  int64
	limit int64

	mu     sync.RWMutex
	index  map[int64]int64 // block number -> slot in the store
	store  store
	closed bool
	mounts map[*mount]struct{}
}

// store keeps the copied-up blocks, each in a slot of BlockSize bytes.
type store interface {
	readSlot(slot int64, p []byte, off int) error
	writeSlot(slot int64, p []byte, off int) error
	close() error
}

// New returns an overlay over the first size bytes of base. base is only
// ever read; it must stay unchanged while the overlay is in use.
func New(base io.ReaderAt, size int64, opt Options) (*Overlay, error) {
	if base == nil {
		return nil, errors.New("create copy-on-write overlay: no base volume")
	}
	if size < 0 {
		return nil, fmt.Errorf("create copy-on-write overlay: negative size %d", size)
	}
	o := &Overlay{base: base, size: size, limit: opt.Limit, index: make(map[int64]int64), mounts: make(map[*mount]struct{})}
	if opt.ScratchDir == "" {
		o.store = &memStore{}
		return o, nil
	}
	f, err := os.CreateTemp(opt.ScratchDir, "lifeboat-cow-*")
	if err != nil {
		return nil, fmt.Errorf("create copy-on-write scratch file in %s: %w", opt.ScratchDir, err)
	}
	// Unlinked at once: the blocks vanish with the process whatever
	// happens, and nobody can open the file by name meanwhile.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("unlink copy-on-write scratch file %s: %w", f.Name(), err)
	}
	o.store = &fileStore{f: f}
	return o, nil
}

// Size returns the size of the view in bytes, the base's size given to New.
func (o *Overlay) Size() int64 { return o.size }

// Written returns the bytes the overlay holds: the copied-up blocks.
func (o *Overlay) Written() int64 {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return int64(len(o.index)) * BlockSize
}

// ReadAt reads from the view: the overlay's blocks where written, the base
// elsewhere. Like a file, it returns io.EOF when it reads past Size.
func (o *Overlay) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read copy-on-write overlay at %d: negative offset", off)
	}
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.closed {
		return 0, ErrClosed
	}
	if off >= o.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > o.size-off {
		p = p[:o.size-off]
	}
	// Runs of blocks the overlay does not hold are read from the base in
	// one request each.
	baseStart, baseLen := off, 0
	flush := func() error {
		if baseLen == 0 {
			return nil
		}
		err := readFull(o.base, p[baseStart-off:baseStart-off+int64(baseLen)], baseStart, "base volume")
		baseLen = 0
		return err
	}
	for pos := 0; pos < len(p); {
		cur := off + int64(pos)
		blk := cur / BlockSize
		in := int(cur - blk*BlockSize)
		n := min(BlockSize-in, len(p)-pos)
		if slot, ok := o.index[blk]; ok {
			if err := flush(); err != nil {
				return 0, err
			}
			if err := o.store.readSlot(slot, p[pos:pos+n], in); err != nil {
				return 0, fmt.Errorf("read copy-on-write block %d: %w", blk, err)
			}
		} else {
			if baseLen == 0 {
				baseStart = cur
			}
			baseLen += n
		}
		pos += n
	}
	if err := flush(); err != nil {
		return 0, err
	}
	if len(p) < want {
		return len(p), io.EOF
	}
	return len(p), nil
}

// WriteAt writes into the overlay. A write reaching past Size fails whole
// and writes nothing: the view has the base's fixed size, like a partition.
func (o *Overlay) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > o.size || int64(len(p)) > o.size-off {
		return 0, fmt.Errorf("write %d bytes at %d to a %d-byte copy-on-write overlay: beyond its end", len(p), off, o.size)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0, ErrClosed
	}
	if o.limit > 0 {
		var need int64
		for blk := off / BlockSize; blk*BlockSize < off+int64(len(p)); blk++ {
			if _, ok := o.index[blk]; !ok {
				need += BlockSize
			}
		}
		if held := int64(len(o.index)) * BlockSize; need > 0 && held+need > o.limit {
			return 0, fmt.Errorf("write %d bytes at %d: overlay holds %d of its %d bytes and needs %d more: %w", len(p), off, held, o.limit, need, ErrFull)
		}
	}
	for pos := 0; pos < len(p); {
		cur := off + int64(pos)
		blk := cur / BlockSize
		in := int(cur - blk*BlockSize)
		n := min(BlockSize-in, len(p)-pos)
		slot, ok := o.index[blk]
		if !ok {
			var err error
			if slot, err = o.copyUp(blk, n == BlockSize); err != nil {
				return pos, err
			}
		}
		if err := o.store.writeSlot(slot, p[pos:pos+n], in); err != nil {
			return pos, fmt.Errorf("write copy-on-write block %d: %w", blk, err)
		}
		pos += n
	}
	return len(p), nil
}

// copyUp gives block blk a slot holding the base's bytes, unless the
// caller overwrites all of it anyway. o.mu must be held for writing.
func (o *Overlay) copyUp(blk int64, whole bool) (int64, error) {
	slot := int64(len(o.index))
	if !whole {
		buf := make([]byte, BlockSize)
		n := min(BlockSize, o.size-blk*BlockSize)
		if err := readFull(o.base, buf[:n], blk*BlockSize, "base volume"); err != nil {
			return 0, fmt.Errorf("copy up block %d: %w", blk, err)
		}
		if err := o.store.writeSlot(slot, buf, 0); err != nil {
			return 0, fmt.Errorf("copy up block %d: %w", blk, err)
		}
	}
	o.index[blk] = slot
	return slot, nil
}

// Close unmounts what DevicePath mounted and drops the written blocks
// (the scratch file goes with its descriptor).
func (o *Overlay) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	mounts := make([]*mount, 0, len(o.mounts))
	for m := range o.mounts {
		mounts = append(mounts, m)
	}
	o.mu.Unlock()
	var errs []error
	for _, m := range mounts {
		// Unmount before closing: a tool still reading must not see the
		// base suddenly through a closed overlay.
		if err := m.release(); err != nil {
			errs = append(errs, err)
		}
	}
	o.mu.Lock()
	o.closed = true
	o.index = nil
	if err := o.store.close(); err != nil {
		errs = append(errs, fmt.Errorf("close copy-on-write store: %w", err))
	}
	o.mu.Unlock()
	return errors.Join(errs...)
}

// readFull reads len(p) bytes at off of r, named what in errors.
func readFull(r io.ReaderAt, p []byte, off int64, what string) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes of the %s at %d: %w", len(p), what, off, err)
}

// memStore keeps blocks in memory, one allocation per block so memory
// grows with what was written and nothing more.
type memStore struct{ slots [][]byte }

func (s *memStore) readSlot(slot int64, p []byte, off int) error {
	copy(p, s.slots[slot][off:])
	return nil
}

func (s *memStore) writeSlot(slot int64, p []byte, off int) error {
	for int64(len(s.slots)) <= slot {
		s.slots = append(s.slots, make([]byte, BlockSize))
	}
	copy(s.slots[slot][off:], p)
	return nil
}

func (s *memStore) close() error {
	s.slots = nil
	return nil
}

// fileStore keeps block slot at slot*BlockSize of an unlinked file.
type fileStore struct{ f *os.File }

func (s *fileStore) readSlot(slot int64, p []byte, off int) error {
	// Every slot was written whole before it is read (copyUp fills a
	// slot a write covers only in part), so a short read is an error.
	return readFull(s.f, p, slot*BlockSize+int64(off), "scratch file")
}

func (s *fileStore) writeSlot(slot int64, p []byte, off int) error {
	_, err := s.f.WriteAt(p, slot*BlockSize+int64(off))
	return err
}

func (s *fileStore) close() error { return s.f.Close() }
