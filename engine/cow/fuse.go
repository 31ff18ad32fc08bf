package cow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// volumeName is the name of the one file a mount shows.
const volumeName = "volume"

// mount is one FUSE mount showing an overlay as a file.
type mount struct {
	o      *Overlay
	dir    string
	server *fuse.Server
	mu     sync.Mutex
	done   bool
}

// DevicePath exposes the overlay as a regular file of Size bytes on a FUSE
// mount in a new temporary directory, for external tools (resize2fs,
// ntfsresize, e2fsck) that take a path. Writes through the file go to the
// overlay; the base is never opened for writing. release unmounts and
// removes the directory; it fails while a program still holds the file
// open. Mounting needs /dev/fuse and root (or the fusermount3 helper from
// Debian's fuse3 package).
//
// The file has the overlay's fixed size, as a partition has: a request to
// truncate it to a smaller size is accepted and ignored (resize2fs trims
// an image file it has shrunk), one to enlarge it fails with EFBIG.
// While the path is in use, write through it only: the kernel caches what
// it read, and a WriteAt beside it could be hidden until the file is
// opened again.
//
// It makes *Overlay an fsmap.Volume.
func (o *Overlay) DevicePath(ctx context.Context) (path string, release func() error, err error) {
	if err := ctx.Err(); err != nil {
		return "", nil, fmt.Errorf("expose copy-on-write overlay: %w", err)
	}
	o.mu.RLock()
	closed := o.closed
	o.mu.RUnlock()
	if closed {
		return "", nil, fmt.Errorf("expose copy-on-write overlay: %w", ErrClosed)
	}
	dir, err := os.MkdirTemp("", "lifeboat-cow-")
	if err != nil {
		return "", nil, fmt.Errorf("expose copy-on-write overlay: create mount point: %w", err)
	}
	timeout := time.Second
	root := &rootNode{o: o}
	server, err := fs.Mount(dir, root, &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName: "lifeboat-cow",
			Name:   "lifeboat-cow",
			// As root, mount(2) directly: the appliance need not carry
			// fusermount3. Elsewhere go-fuse falls back to it.
			DirectMount: true,
			MaxWrite:    1 << 20,
		},
		AttrTimeout:  &timeout,
		EntryTimeout: &timeout,
	})
	if err != nil {
		os.Remove(dir)
		return "", nil, fmt.Errorf("expose copy-on-write overlay: mount FUSE on %s (needs /dev/fuse and root or fusermount3): %w", dir, err)
	}
	m := &mount{o: o, dir: dir, server: server}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		if err := m.release(); err != nil {
			return "", nil, fmt.Errorf("expose copy-on-write overlay: %w (and %w)", ErrClosed, err)
		}
		return "", nil, fmt.Errorf("expose copy-on-write overlay: %w", ErrClosed)
	}
	o.mounts[m] = struct{}{}
	o.mu.Unlock()
	return filepath.Join(dir, volumeName), m.release, nil
}

// release unmounts and removes the mount point. After a failed unmount
// (a program still holds the file) it may be called again.
func (m *mount) release() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done {
		return nil
	}
	if err := m.server.Unmount(); err != nil {
		// The mount stays registered so Close tries again.
		return fmt.Errorf("unmount copy-on-write overlay at %s: %w", m.dir, err)
	}
	m.server.Wait()
	m.done = true
	m.o.mu.Lock()
	delete(m.o.mounts, m)
	m.o.mu.Unlock()
	if err := os.Remove(m.dir); err != nil {
		return fmt.Errorf("remove copy-on-write mount point %s: %w", m.dir, err)
	}
	return nil
}

// rootNode is the mount's directory, holding the volume file.
type rootNode struct {
	fs.Inode
	o *Overlay
}

var _ fs.NodeOnAdder = (*rootNode)(nil)

// OnAdd creates the volume file when the mount starts.
func (r *rootNode) OnAdd(ctx context.Context) {
	ch := r.NewPersistentInode(ctx, &volumeNode{o: r.o}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: 2})
	r.AddChild(volumeName, ch, false)
}

// volumeNode is the file that reads and writes the overlay.
type volumeNode struct {
	fs.Inode
	o *Overlay
}

var (
	_ fs.NodeGetattrer = (*volumeNode)(nil)
	_ fs.NodeSetattrer = (*volumeNode)(nil)
	_ fs.NodeOpener    = (*volumeNode)(nil)
	_ fs.NodeReader    = (*volumeNode)(nil)
	_ fs.NodeWriter    = (*volumeNode)(nil)
	_ fs.NodeFsyncer   = (*volumeNode)(nil)
	_ fs.NodeFlusher   = (*volumeNode)(nil)
)

func (n *volumeNode) fill(out *fuse.AttrOut) {
	out.Mode = syscall.S_IFREG | 0o600
	out.Size = uint64(n.o.size)
	out.Blocks = (uint64(n.o.size) + 511) / 512
	out.Blksize = BlockSize
	out.Nlink = 1
}

// Getattr reports a root-only regular file of the overlay's size.
func (n *volumeNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fill(out)
	return 0
}

// Setattr accepts what a tool may ask of an image file without changing
// the overlay: times and modes are ignored, shrinking truncates too (see
// DevicePath).
func (n *volumeNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok && sz > uint64(n.o.size) {
		return syscall.EFBIG
	}
	n.fill(out)
	return 0
}

// Open keeps no per-open state. Without FOPEN_DIRECT_IO the kernel may
// page-cache the file, which a loop device over it needs.
func (n *volumeNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, 0, 0
}

// Read reads the overlay.
func (n *volumeNode) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	got, err := n.o.ReadAt(dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(dest[:got]), 0
}

// Write writes into the overlay; past its end is ENOSPC, as on a device.
func (n *volumeNode) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if off < 0 || off+int64(len(data)) > n.o.size {
		return 0, syscall.ENOSPC
	}
	got, err := n.o.WriteAt(data, off)
	switch {
	case errors.Is(err, ErrFull):
		return uint32(got), syscall.ENOSPC
	case err != nil:
		return uint32(got), syscall.EIO
	}
	return uint32(got), 0
}

// Fsync has nothing to do: writes reach the overlay before Write returns.
func (n *volumeNode) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	return 0
}

// Flush has nothing to do either.
func (n *volumeNode) Flush(ctx context.Context, f fs.FileHandle) syscall.Errno { return 0 }
