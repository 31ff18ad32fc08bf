// Package core holds the types and rules that package netshare and every
// backend share. It exists so that netshare.Open can import the backends
// (netshare/local, later SFTP, SMB, NFS, S3) while they use these types
// without importing netshare back; netshare re-exports everything here, and
// code outside netshare should use those names.
package core

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
)

// FileInfo describes one stored object.
type FileInfo struct {
	// Name is the object's full slash-separated key.
	Name string
	// Size is the object's length in bytes.
	Size int64
}

// Properties says what a backend can do.
type Properties struct {
	// Name is the backend kind: "local", "sftp", "smb", "nfs", "s3".
	Name string
	// Location is printable and never holds credentials.
	Location string
	// AtomicRename is true when Save publishes an object by renaming a
	// finished temporary one, so a crash never leaves a partial object.
	AtomicRename bool
	// MaxConnections is how many operations the caller should keep in
	// flight at once at most (at least 1).
	MaxConnections int
}

// ErrInvalidName is wrapped by every error that refuses an object name.
var ErrInvalidName = errors.New("invalid object name")

// ErrOutOfRange is wrapped by the error of a Load whose range does not lie
// inside the object.
var ErrOutOfRange = errors.New("range outside the object")

// MaxNameLen and MaxElemLen bound names so that every backend, with the
// suffix it adds for a temporary name, stays under common file system and
// protocol limits (255 bytes an element on most file systems, 1024 for S3
// keys).
const (
	MaxNameLen = 1024
	MaxElemLen = 200
)

type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Permanent marks err as one that retrying cannot fix. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether retrying err is pointless: it was marked by
// Permanent, or it says the object does not exist, access is denied, the
// name is invalid, the range lies outside the object, or the file system is
// read-only or full (which need a person, not a retry).
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	var p *permanentError
	if errors.As(err, &p) {
		return true
	}
	for _, target := range []error{fs.ErrNotExist, fs.ErrPermission, ErrInvalidName, ErrOutOfRange,
		syscall.EROFS, syscall.ENOSPC, syscall.EDQUOT} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// CheckName returns nil when name is a valid object name: non-empty
// slash-separated elements of ASCII letters, digits, '.', '_' and '-', no
// element "." or "..", no leading, trailing or doubled slash, within
// MaxNameLen and MaxElemLen. The character set is the one the repository
// uses and one that every protocol (SMB, S3, NFS, SFTP) stores unchanged;
// the rest keeps a hostile repository from naming a file outside it.
func CheckName(name string) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("%w %q: %s", ErrInvalidName, name, err)
	}
	return nil
}

func checkName(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("longer than %d bytes", MaxNameLen)
	}
	// Bounded by MaxNameLen: at most MaxNameLen/2+1 elements.
	for elem := range strings.SplitSeq(name, "/") {
		if err := checkElem(elem); err != nil {
			return err
		}
	}
	return nil
}

func checkElem(elem string) error {
	switch elem {
	case "":
		return errors.New("empty element (leading, trailing or doubled slash)")
	case ".", "..":
		return fmt.Errorf("element %q", elem)
	}
	if len(elem) > MaxElemLen {
		return fmt.Errorf("element longer than %d bytes", MaxElemLen)
	}
	for i := 0; i < len(elem); i++ {
		c := elem[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("character %q not allowed", c)
		}
	}
	return nil
}

// CheckPrefix returns nil when prefix may be passed to List: empty (every
// object), or a valid name, optionally followed by a slash, of which the
// last element may be only the start of an element (so "data/a" lists
// "data/ab/..." and "data/a1").
func CheckPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := checkName(strings.TrimSuffix(prefix, "/")); err != nil {
		return fmt.Errorf("%w: prefix %q: %s", ErrInvalidName, prefix, err)
	}
	return nil
}
