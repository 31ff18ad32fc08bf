// Package netshare is where Lifeboat keeps its images: a small storage
// Backend interface whose contracts (atomic saves, idempotent ranged loads,
// permanent versus retryable errors) are written on its methods, decorators
// that wrap any backend (WithRetry), and Open, which picks a backend from a
// repository location.
//
// The backends live in sub-packages (netshare/local today; SFTP, SMB, NFS
// and S3 later) and every one of them passes the conformance suite in
// netshare/netsharetest, which also provides a fault-injecting wrapper for
// the tests of the repository built on top.
//
// Object names are slash-separated keys such as "data/ab/abcdef01...": see
// CheckName for the exact rule. Nothing in this package imports the engine
// or the UI.
package netshare

import (
	"context"
	"io"
	"time"

	"github.com/lifeboat/lifeboat/netshare/internal/core"
)

// FileInfo describes one stored object: its full name and its size in bytes.
type FileInfo = core.FileInfo

// Properties says what a backend can do: its kind (Name), a printable
// Location without credentials, whether saves are published by an atomic
// rename, and how many operations to keep in flight at most.
type Properties = core.Properties

// ErrInvalidName is wrapped by every error that refuses an object name or a
// List prefix. Such errors are permanent.
var ErrInvalidName = core.ErrInvalidName

// ErrOutOfRange is wrapped by the error of a Load whose range does not lie
// inside the object. Such errors are permanent.
var ErrOutOfRange = core.ErrOutOfRange

// Backend stores named objects. Every method is safe for concurrent use.
// Every backend passes netsharetest.RunConformance.
type Backend interface {
	// Save stores the size bytes read from r under name, atomically:
	// readers see either no object or the whole object (on a local disk:
	// a temporary name, fsync, rename, fsync of the directory). Saving an
	// existing name replaces it atomically. r must yield exactly size
	// bytes, else Save fails and stores nothing. Save reads r from its
	// current position; after a failed attempt the caller may seek r back
	// and call Save again (WithRetry does). Directories are created as
	// needed. A cancelled ctx stops the save and stores nothing.
	Save(ctx context.Context, name string, size int64, r io.ReadSeeker) error

	// Load returns the length bytes at off of name, or every byte from off
	// to the end when length < 0. Loading is idempotent. A missing object
	// gives an error satisfying errors.Is(err, fs.ErrNotExist). A range
	// that does not lie inside the object (off < 0, off > size, or
	// off+length > size) gives an error wrapping ErrOutOfRange, never a
	// short result; off == size with length 0 gives an empty result.
	Load(ctx context.Context, name string, off, length int64) ([]byte, error)

	// Stat returns the object's name and size; a missing object gives
	// fs.ErrNotExist.
	Stat(ctx context.Context, name string) (FileInfo, error)

	// List calls fn for every object whose name starts with prefix (a
	// plain string prefix: "data/a" matches "data/ab/x" and "data/a1"), in
	// no particular order, each once. An error from fn stops the listing
	// and is returned. Temporary objects of unfinished saves are never
	// listed. A prefix that matches nothing is not an error.
	List(ctx context.Context, prefix string, fn func(FileInfo) error) error

	// Remove deletes the object; a missing object gives fs.ErrNotExist.
	Remove(ctx context.Context, name string) error

	// Properties says what the backend can do.
	Properties() Properties

	// Close releases the backend's connections and handles.
	Close() error
}

// Cleaner is implemented by backends that can find and remove what
// interrupted saves leave behind: the temporary files of saves whose
// process was killed or whose connection dropped before the backend could
// remove them (named NAME.tmp- and 16 hex digits; List never shows them),
// or, on an object store, multipart uploads that were started and never
// completed. Such leftovers hold no object anyone can read, only space.
//
// Cleanup removes only leftovers last written (or, for uploads, started)
// more than olderThan ago and returns how many it removed, also when it
// fails midway. olderThan matters because a younger one may belong to a
// save still running, in this process or in another writer sharing the
// repository without holding its lock: removing it would fail that save.
// Objects are never touched. Check with a type assertion; wrappers such as
// WithRetry forward it when the backend they wrap has it.
type Cleaner interface {
	Cleanup(ctx context.Context, olderThan time.Duration) (int, error)
}

// Permanent marks err as one that retrying cannot fix (permission denied,
// bad credentials, not found). Permanent(nil) is nil.
func Permanent(err error) error { return core.Permanent(err) }

// IsPermanent reports whether retrying err is pointless: it was marked by
// Permanent, or it wraps fs.ErrNotExist, fs.ErrPermission, ErrInvalidName,
// ErrOutOfRange, or says the file system is read-only or full.
func IsPermanent(err error) bool { return core.IsPermanent(err) }

// CheckName returns nil when name is a valid object name, else an error
// wrapping ErrInvalidName. A valid name is made of non-empty
// slash-separated elements of ASCII letters, digits, '.', '_' and '-', none
// of them "." or "..", with no leading or trailing slash, at most 1024 bytes
// long with elements of at most 200 bytes. Every backend refuses other
// names, so a hostile repository cannot make Lifeboat write outside it, and
// a repository copied from one backend to another keeps its names.
func CheckName(name string) error { return core.CheckName(name) }

// CheckPrefix returns nil when prefix is valid for List: empty, or a valid
// name optionally followed by a slash.
func CheckPrefix(prefix string) error { return core.CheckPrefix(prefix) }
