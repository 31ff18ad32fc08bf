// Package local is the netshare backend for a directory on a local disk
// (or on a share the kernel has mounted). Objects are regular files under
// the root whose paths mirror their names. Every path is resolved through
// an os.Root, so neither a hostile name nor a symbolic link planted in the
// repository can make it read or write outside the root.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lifeboat/lifeboat/netshare/internal/core"
)

// copyBufSize is the write size of Save: large writes keep a disk or a
// network mount streaming.
const copyBufSize = 1 << 20

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// Backend stores objects as files under a root directory. It implements
// netshare.Backend and is safe for concurrent use.
type Backend struct {
	root *os.Root
	dir  string
}

// New opens the directory root as a backend, creating it (mode 0700) when
// it does not exist.
func New(root string) (*Backend, error) {
	if root == "" {
		return nil, core.Permanent(errors.New("open local repository: empty path"))
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open local repository %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, classify(fmt.Errorf("create local repository %s: %w", abs, err))
	}
	r, err := os.OpenRoot(abs)
	if err != nil {
		return nil, classify(fmt.Errorf("open local repository %s: %w", abs, err))
	}
	return &Backend{root: r, dir: abs}, nil
}

// Properties says the backend is "local" at its absolute path, publishes
// saves by rename, and gains little from more than a few parallel writers.
func (b *Backend) Properties() core.Properties {
	return core.Properties{Name: "local", Location: b.dir, AtomicRename: true, MaxConnections: 4}
}

// Close releases the root directory's handle.
func (b *Backend) Close() error {
	if err := b.root.Close(); err != nil {
		return fmt.Errorf("close local repository %s: %w", b.dir, err)
	}
	return nil
}

// classify marks the errors that retrying cannot fix as permanent.
func classify(err error) error {
	if err == nil || core.IsPermanent(err) {
		return err
	}
	// os.Root's error for a path leaving the root is not exported; a name
	// or symbolic link that leads out of the repository will do so on every
	// attempt.
	if strings.Contains(err.Error(), "path escapes from parent") {
		return core.Permanent(err)
	}
	// A name that collides with a directory, or runs through a file, stays
	// so until someone repairs the repository.
	for _, errno := range []syscall.Errno{syscall.EISDIR, syscall.ENOTDIR, syscall.ENOTEMPTY, syscall.EEXIST, syscall.ENAMETOOLONG} {
		if errors.Is(err, errno) {
			return core.Permanent(err)
		}
	}
	return err
}

// notExist makes a lookup through a file where a directory was expected
// (ENOTDIR) read as a missing object, as it is one.
func notExist(err error) error {
	if errors.Is(err, syscall.ENOTDIR) && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", fs.ErrNotExist, err)
	}
	return err
}

// Save writes the object to a temporary file beside its final name, syncs
// it, renames it into place and syncs the directory, so that after a crash
// the name holds either the old object, or none, or the whole new one.
func (b *Backend) Save(ctx context.Context, name string, size int64, r io.ReadSeeker) error {
	if err := core.CheckSave(ctx, name, size); err != nil {
		return err
	}
	dir := path.Dir(name)
	if err := b.mkdirs(dir); err != nil {
		return classify(fmt.Errorf("save %q: %w", name, err))
	}
	tmp, err := core.TempName(name)
	if err != nil {
		return fmt.Errorf("save %q: %w", name, err)
	}
	f, err := b.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return classify(fmt.Errorf("save %q: create temporary file: %w", name, err))
	}
	if err := b.writeTemp(ctx, f, name, size, r); err != nil {
		_ = f.Close()
		_ = b.root.Remove(tmp)
		return classify(err)
	}
	if err := b.root.Rename(tmp, name); err != nil {
		_ = b.root.Remove(tmp)
		return classify(fmt.Errorf("save %q: rename temporary file: %w", name, err))
	}
	if err := b.syncDir(dir); err != nil {
		return classify(fmt.Errorf("save %q: %w", name, err))
	}
	return nil
}

// writeTemp copies exactly size bytes of r into f, syncs and closes it.
func (b *Backend) writeTemp(ctx context.Context, f *os.File, name string, size int64, r io.Reader) error {
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	// The anonymous struct hides f's ReadFrom, which would ignore the
	// buffer and copy in small pieces.
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, io.LimitReader(core.ContextReader(ctx, r), size), *bufp)
	if err != nil {
		return fmt.Errorf("save %q: write after %d bytes: %w", name, n, err)
	}
	if n < size {
		return core.Permanent(fmt.Errorf("save %q: reader ended after %d of %d bytes: %w", name, n, size, io.ErrUnexpectedEOF))
	}
	var extra [1]byte
	if k, _ := io.ReadFull(r, extra[:]); k > 0 {
		return core.Permanent(fmt.Errorf("save %q: reader holds more than the %d bytes announced", name, size))
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save %q: sync: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save %q: close: %w", name, err)
	}
	return nil
}

// mkdirs creates dir and its missing parents, syncing each parent that
// gained an entry so the new directories survive a crash.
func (b *Backend) mkdirs(dir string) error {
	if dir == "." {
		return nil
	}
	if fi, err := b.root.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	parent := "."
	for elem := range strings.SplitSeq(dir, "/") {
		p := path.Join(parent, elem)
		err := b.root.Mkdir(p, 0o700)
		switch {
		case err == nil:
			if err := b.syncDir(parent); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
		default:
			return fmt.Errorf("create directory %s: %w", p, err)
		}
		parent = p
	}
	return nil
}

// syncDir fsyncs a directory so that entries created, renamed or removed
// in it are durable.
func (b *Backend) syncDir(dir string) error {
	d, err := b.root.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s for sync: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// object returns the metadata of name, which must be a regular file: a
// directory or a symbolic link is not an object.
func (b *Backend) object(name string) (fs.FileInfo, error) {
	fi, err := b.root.Lstat(name)
	if err != nil {
		return nil, notExist(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is a %s, not an object: %w", name, fi.Mode().Type(), fs.ErrNotExist)
	}
	return fi, nil
}

// Load reads length bytes at off of the object (to its end when length <
// 0). The range is checked against the object's size before anything is
// allocated.
func (b *Backend) Load(ctx context.Context, name string, off, length int64) ([]byte, error) {
	if err := core.CheckObjectName(name); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load %q: %w", name, err)
	}
	if _, err := b.object(name); err != nil {
		return nil, classify(fmt.Errorf("load %q: %w", name, err))
	}
	f, err := b.root.Open(name)
	if err != nil {
		return nil, classify(fmt.Errorf("load %q: %w", name, notExist(err)))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, classify(fmt.Errorf("load %q: %w", name, err))
	}
	size := fi.Size()
	if length < 0 && off >= 0 && off <= size {
		length = size - off
	}
	if off < 0 || length < 0 || off > size || length > size-off {
		return nil, fmt.Errorf("load %q: bytes [%d, +%d) of an object of %d bytes: %w", name, off, length, size, core.ErrOutOfRange)
	}
	buf := make([]byte, length)
	n, err := f.ReadAt(buf, off)
	if n == len(buf) {
		return buf, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return nil, classify(fmt.Errorf("load %q: read %d of %d bytes at %d: %w", name, n, length, off, err))
}

// Stat returns the object's size.
func (b *Backend) Stat(ctx context.Context, name string) (core.FileInfo, error) {
	if err := core.CheckObjectName(name); err != nil {
		return core.FileInfo{}, fmt.Errorf("stat: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return core.FileInfo{}, fmt.Errorf("stat %q: %w", name, err)
	}
	fi, err := b.object(name)
	if err != nil {
		return core.FileInfo{}, classify(fmt.Errorf("stat %q: %w", name, err))
	}
	return core.FileInfo{Name: name, Size: fi.Size()}, nil
}

// List walks the directory that holds prefix's last element and reports the
// regular files whose names start with prefix. Temporary files are
// skipped; symbolic links are neither reported nor followed.
func (b *Backend) List(ctx context.Context, prefix string, fn func(core.FileInfo) error) error {
	if err := core.CheckPrefix(prefix); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	start := "."
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = prefix[:i]
	}
	fsys := b.root.FS()
	err := fs.WalkDir(fsys, start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)) {
				return fs.SkipAll // nothing under prefix
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			// Prune directories that cannot hold a match.
			if p != "." && !strings.HasPrefix(p+"/", prefix) && !strings.HasPrefix(prefix, p+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || core.IsTemp(path.Base(p)) || !strings.HasPrefix(p, prefix) {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed since the directory was read
		}
		if err != nil {
			return err
		}
		if err := fn(core.FileInfo{Name: p, Size: info.Size()}); err != nil {
			return &fnError{err}
		}
		return nil
	})
	var fe *fnError
	if errors.As(err, &fe) {
		return fe.err
	}
	if err != nil {
		return classify(fmt.Errorf("list %q: %w", prefix, err))
	}
	return nil
}

// fnError carries the error of List's callback through fs.WalkDir so that
// it is returned unchanged.
type fnError struct{ err error }

func (e *fnError) Error() string { return e.err.Error() }

// Remove deletes the object and syncs its directory. Directories left empty
// stay: they cost nothing and a later Save reuses them.
func (b *Backend) Remove(ctx context.Context, name string) error {
	if err := core.CheckObjectName(name); err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove %q: %w", name, err)
	}
	if _, err := b.object(name); err != nil {
		return classify(fmt.Errorf("remove %q: %w", name, err))
	}
	if err := b.root.Remove(name); err != nil {
		return classify(fmt.Errorf("remove %q: %w", name, notExist(err)))
	}
	if err := b.syncDir(path.Dir(name)); err != nil {
		return classify(fmt.Errorf("remove %q: %w", name, err))
	}
	return nil
}

// Cleanup removes the temporary files of saves that never finished (the
// process was killed) and were last written more than olderThan ago, and
// returns how many it removed. A younger one may belong to a save still
// running, in this process or another one sharing the repository.
func (b *Backend) Cleanup(ctx context.Context, olderThan time.Duration) (int, error) {
	cutoff := time.Now().Add(-olderThan)
	removed := 0
	err := fs.WalkDir(b.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() || !core.IsTemp(path.Base(p)) {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // its save finished or failed meanwhile
		}
		if err != nil {
			return err
		}
		if !info.ModTime().Before(cutoff) {
			return nil
		}
		if err := b.root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		removed++
		return nil
	})
	if err != nil {
		return removed, classify(fmt.Errorf("clean up temporary files in %s: %w", b.dir, err))
	}
	return removed, nil
}
