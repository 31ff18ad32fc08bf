// Package sftp is the netshare backend for a directory on an SSH server,
// reached with the SFTP subsystem (sftp://user@host[:port]/path). Objects
// are files under the directory whose paths mirror their names, as with
// netshare/local.
//
// A save writes a temporary file beside the object's final name, asks the
// server to fsync it when it offers fsync@openssh.com, and renames it into
// place with posix-rename@openssh.com, which replaces the old object
// atomically. Servers without that extension get a plain SFTP rename,
// preceded by a removal of the old object when one exists; a crash between
// the two leaves no object under the name (never a partial one).
//
// The backend keeps a few SSH connections (see Connections), each carrying
// many SFTP requests at once, and dials a connection again when it was
// lost, so that netshare.WithRetry can ride out a server restart.
//
// The server is trusted by its host key, checked against a known_hosts
// file or a SHA256 fingerprint; an unknown key is refused unless
// Options.AcceptHostKey accepts it, and a changed key always is (see
// hostKeys). The client logs in with an OpenSSH private key
// (Options.IdentityFile; a passphrase-protected one needs
// Options.AskPassword for its passphrase), with a password
// (Options.PasswordFile or Options.AskPassword, offered as "password" and
// as a one-question "keyboard-interactive"), or both, the key first. No
// ssh-agent is used. The user is the location's, else $USER, else root.
package sftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pkgsftp "github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/lifeboat/lifeboat/netshare/internal/core"
)

// Connections is how many SSH connections a backend opens at most. One SSH
// channel's flow-control window limits a connection's throughput on a
// long path; two keep the link busy while one waits for window updates,
// and each carries up to maxRequests SFTP requests per file at once.
const Connections = 2

// maxRequests is the number of SFTP read or write requests kept in flight
// for one file: 64 requests of 32 KiB fill 2 MiB of a fat network pipe.
const maxRequests = 64

// listWorkers is how many directories List reads at once.
const listWorkers = 8

// Backend stores objects as files under a directory of an SFTP server. It
// implements netshare.Backend and is safe for concurrent use.
type Backend struct {
	addr     string // host:port as dialled
	user     string
	root     string // directory on the server; relative paths start at the login directory
	location string
	auth     *authenticator
	keys     *hostKeys

	conns  [Connections]slot
	next   atomic.Uint32
	closed atomic.Bool

	posixRename bool // the server offers posix-rename@openssh.com
	fsync       bool // the server offers fsync@openssh.com

	dirs sync.Map // directories (relative to root) known to exist
}

// slot holds one SSH connection, dialled when first needed and again after
// it was lost.
type slot struct {
	mu  sync.Mutex
	cur *session
}

// session is one SSH connection and the SFTP client on it.
type session struct {
	ssh  *ssh.Client
	sftp *pkgsftp.Client
	done chan struct{} // closed when the connection or the SFTP client ends
}

func (s *session) dead() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *session) close() {
	_ = s.sftp.Close()
	_ = s.ssh.Close()
}

// New connects to the SFTP server that u names, authenticating both ways
// as the package comment says, and creates the repository directory when
// it is missing. The location's path is absolute; one that starts with
// "/~/" is relative to the login directory. Errors that no retry can fix (bad location, unknown
// or changed host key, refused credentials) are permanent.
func New(ctx context.Context, u *url.URL, opts core.Options) (*Backend, error) {
	b, err := parseURL(u)
	if err != nil {
		return nil, core.Permanent(err)
	}
	b.keys = &hostKeys{opts: opts}
	if err := b.keys.init(); err != nil {
		return nil, core.Permanent(fmt.Errorf("open %s: %w", b.location, err))
	}
	b.auth, err = newAuthenticator(opts, b.user, b.addr)
	if err != nil {
		return nil, core.Permanent(fmt.Errorf("open %s: %w", b.location, err))
	}
	s, err := b.session(ctx)
	if err != nil {
		return nil, err
	}
	b.posixRename = hasExtension(s.sftp, "posix-rename@openssh.com")
	b.fsync = hasExtension(s.sftp, "fsync@openssh.com")
	if b.root != "." {
		if err := s.sftp.MkdirAll(b.root); err != nil {
			b.Close()
			return nil, classify(fmt.Errorf("open %s: create the repository directory: %w", b.location, err))
		}
		fi, err := s.sftp.Stat(b.root)
		if err == nil && !fi.IsDir() {
			err = errors.New("not a directory")
		}
		if err != nil {
			b.Close()
			return nil, core.Permanent(fmt.Errorf("open %s: repository directory: %w", b.location, err))
		}
	}
	return b, nil
}

func hasExtension(c *pkgsftp.Client, name string) bool {
	_, ok := c.HasExtension(name)
	return ok
}

// parseURL checks an sftp:// location and fills in where to connect. It
// never repeats a password found in u.
func parseURL(u *url.URL) (*Backend, error) {
	if u == nil || u.Scheme != "sftp" {
		return nil, errors.New("open sftp repository: not an sftp:// location")
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			return nil, errors.New("open sftp repository: the location holds a password; give it in a password file instead")
		}
	}
	host := u.Hostname()
	if host == "" {
		return nil, errors.New("open sftp repository: the location names no host")
	}
	port := u.Port()
	if port == "" {
		port = "22"
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("open sftp repository on %s: the location may not hold a query or fragment", host)
	}
	user := ""
	if u.User != nil {
		user = u.User.Username()
	}
	if user == "" {
		user = os.Getenv("USER")
	}
	if user == "" {
		user = "root"
	}
	// RFC draft-ietf-secsh-scp-sftp-ssh-uri: the path is absolute, and
	// "/~/" starts it at the login (home) directory.
	root := u.Path
	switch {
	case root == "" || root == "/~" || root == "/~/":
		root = "."
	case strings.HasPrefix(root, "/~/"):
		root = path.Clean(root[len("/~/"):])
	default:
		root = path.Clean(root)
	}
	if strings.HasPrefix(root, "../") || root == ".." {
		return nil, fmt.Errorf("open sftp repository on %s: path %q leaves the login directory", host, u.Path)
	}
	addr := net.JoinHostPort(host, port)
	loc := (&url.URL{Scheme: "sftp", User: url.User(user), Host: addr, Path: u.Path}).String()
	return &Backend{addr: addr, user: user, root: root, location: loc}, nil
}

// Properties says the backend is "sftp" at its location (user, host,
// port and path, no secrets), publishes saves by rename, and keeps up to
// eight operations in flight over its connections.
func (b *Backend) Properties() core.Properties {
	return core.Properties{Name: "sftp", Location: b.location, AtomicRename: b.posixRename, MaxConnections: 4 * Connections}
}

// Close closes every connection. Calls after Close fail.
func (b *Backend) Close() error {
	b.closed.Store(true)
	for i := range b.conns {
		s := &b.conns[i]
		s.mu.Lock()
		if s.cur != nil {
			s.cur.close()
			s.cur = nil
		}
		s.mu.Unlock()
	}
	return nil
}

// session returns a live connection, dialling one when the slot's turn
// has none or lost it.
func (b *Backend) session(ctx context.Context) (*session, error) {
	if b.closed.Load() {
		return nil, core.Permanent(fmt.Errorf("use %s: backend closed", b.location))
	}
	s := &b.conns[b.next.Add(1)%Connections]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && !s.cur.dead() {
		return s.cur, nil
	}
	if s.cur != nil {
		s.cur.close()
		s.cur = nil
	}
	cur, err := b.dial(ctx)
	if err != nil {
		return nil, err
	}
	s.cur = cur
	return cur, nil
}

// abs is the server path of an object name or directory.
func (b *Backend) abs(name string) string {
	if name == "." {
		return b.root
	}
	return path.Join(b.root, name)
}

// sftp status codes that retrying cannot fix (draft-ietf-secsh-filexfer-02).
const (
	fxOpUnsupported = 8
	fxBadMessage    = 5
)

// classify marks the errors that retrying cannot fix as permanent. A lost
// connection, a timeout or the generic SSH_FX_FAILURE stay retryable.
func classify(err error) error {
	if err == nil || core.IsPermanent(err) {
		return err
	}
	var st *pkgsftp.StatusError
	if errors.As(err, &st) && (st.Code == fxOpUnsupported || st.Code == fxBadMessage) {
		return core.Permanent(err)
	}
	return err
}

// notObject is the error for a name whose file is not a regular file: a
// directory or a symbolic link is not an object.
func notObject(name string, fi os.FileInfo) error {
	return fmt.Errorf("%s is a %s, not an object: %w", name, typeName(fi.Mode()), fs.ErrNotExist)
}

func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	default:
		return "special file"
	}
}

// Save writes the object to a temporary file beside its final name, syncs
// it when the server can, and renames it into place.
func (b *Backend) Save(ctx context.Context, name string, size int64, r io.ReadSeeker) error {
	if err := core.CheckSave(ctx, name, size); err != nil {
		return err
	}
	s, err := b.session(ctx)
	if err != nil {
		return fmt.Errorf("save %q: %w", name, err)
	}
	tmp, err := core.TempName(name)
	if err != nil {
		return fmt.Errorf("save %q: %w", name, err)
	}
	f, err := b.createTemp(s.sftp, name, tmp)
	if err != nil {
		return b.collision(s.sftp, name, classify(err))
	}
	er := core.NewExactReader(ctx, r, name, size)
	if err := b.writeTemp(f, name, size, er); err != nil {
		_ = f.Close()
		_ = s.sftp.Remove(b.abs(tmp))
		return classify(err)
	}
	if err := b.publish(s.sftp, tmp, name); err != nil {
		_ = s.sftp.Remove(b.abs(tmp))
		return b.collision(s.sftp, name, classify(fmt.Errorf("save %q: rename temporary file: %w", name, err)))
	}
	return nil
}

// createTemp creates the temporary file, making the object's directory
// first. A directory remembered as existing but removed since is made
// again.
func (b *Backend) createTemp(c *pkgsftp.Client, name, tmp string) (*pkgsftp.File, error) {
	dir := path.Dir(name)
	for try := 0; ; try++ {
		if err := b.mkdirs(c, dir); err != nil {
			return nil, fmt.Errorf("save %q: %w", name, err)
		}
		f, err := c.OpenFile(b.abs(tmp), os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err == nil {
			return f, nil
		}
		if try == 0 && errors.Is(err, fs.ErrNotExist) {
			b.dirs.Delete(dir)
			continue
		}
		return nil, fmt.Errorf("save %q: create temporary file: %w", name, err)
	}
}

// writeTemp copies the reader into f with many write requests in flight,
// syncs and closes it.
func (b *Backend) writeTemp(f *pkgsftp.File, name string, size int64, er *core.ExactReader) error {
	n, err := f.ReadFromWithConcurrency(er, maxRequests)
	if er.Err() != nil {
		// The reader's own failure, whatever the client made of it.
		return fmt.Errorf("save %q: after %d bytes: %w", name, er.Sent(), er.Err())
	}
	if err != nil {
		return fmt.Errorf("save %q: write after %d bytes: %w", name, n, err)
	}
	if n != size {
		return fmt.Errorf("save %q: wrote %d of %d bytes", name, n, size)
	}
	if b.fsync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("save %q: sync: %w", name, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save %q: close: %w", name, err)
	}
	return nil
}

// publish renames the finished temporary file to the object's name,
// replacing an older object.
func (b *Backend) publish(c *pkgsftp.Client, tmp, name string) error {
	if b.posixRename {
		return c.PosixRename(b.abs(tmp), b.abs(name))
	}
	return renameReplacing(c, b.abs(tmp), b.abs(name))
}

// renameReplacing is the rename of servers without posix-rename: SFTP
// version 3's rename refuses an existing target, so an existing object is
// removed first. Not atomic: a crash between the two calls leaves no
// object (but never a partial one).
func renameReplacing(c *pkgsftp.Client, from, to string) error {
	err := c.Rename(from, to)
	if err == nil {
		return nil
	}
	fi, serr := c.Lstat(to)
	if serr != nil || !fi.Mode().IsRegular() {
		return err // the rename failed for another reason
	}
	if err := c.Remove(to); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the object being replaced: %w", err)
	}
	return c.Rename(from, to)
}

// mkdirs creates dir (relative to root) and its missing parents,
// remembering it so later saves skip the round trips.
func (b *Backend) mkdirs(c *pkgsftp.Client, dir string) error {
	if dir == "." {
		return nil
	}
	if _, ok := b.dirs.Load(dir); ok {
		return nil
	}
	if err := c.MkdirAll(b.abs(dir)); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	b.dirs.Store(dir, struct{}{})
	return nil
}

// collision makes a failed save's error permanent when the name collides
// with the repository's layout (the name is a directory, or one of its
// directories is a file): that stays so until someone repairs the
// repository. Other errors are returned as they are.
func (b *Backend) collision(c *pkgsftp.Client, name string, err error) error {
	if core.IsPermanent(err) {
		return err
	}
	if fi, serr := c.Lstat(b.abs(name)); serr == nil && fi.IsDir() {
		return core.Permanent(fmt.Errorf("%w (%s is a directory)", err, name))
	}
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if fi, serr := c.Lstat(b.abs(dir)); serr == nil && !fi.IsDir() {
			return core.Permanent(fmt.Errorf("%w (%s is not a directory)", err, dir))
		}
	}
	return err
}

// object returns the metadata of name, which must be a regular file.
func (b *Backend) object(c *pkgsftp.Client, name string) (os.FileInfo, error) {
	fi, err := c.Lstat(b.abs(name))
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, notObject(name, fi)
	}
	return fi, nil
}

// Load reads length bytes at off of the object (to its end when length <
// 0), with many read requests in flight. The range is checked against the
// size of the opened file before anything is allocated.
func (b *Backend) Load(ctx context.Context, name string, off, length int64) ([]byte, error) {
	if err := core.CheckObjectName(name); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load %q: %w", name, err)
	}
	s, err := b.session(ctx)
	if err != nil {
		return nil, fmt.Errorf("load %q: %w", name, err)
	}
	if _, err := b.object(s.sftp, name); err != nil {
		return nil, classify(fmt.Errorf("load %q: %w", name, err))
	}
	f, err := s.sftp.Open(b.abs(name))
	if err != nil {
		return nil, classify(fmt.Errorf("load %q: %w", name, err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, classify(fmt.Errorf("load %q: %w", name, err))
	}
	if !fi.Mode().IsRegular() {
		return nil, classify(fmt.Errorf("load %q: %w", name, notObject(name, fi)))
	}
	size := fi.Size()
	if length < 0 && off >= 0 && off <= size {
		length = size - off
	}
	if off < 0 || length < 0 || off > size || length > size-off {
		return nil, fmt.Errorf("load %q: bytes [%d, +%d) of an object of %d bytes: %w", name, off, length, size, core.ErrOutOfRange)
	}
	buf := make([]byte, length)
	if length == 0 {
		return buf, nil
	}
	n, err := f.ReadAt(buf, off)
	if n == len(buf) {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("load %q: %w", name, err)
		}
		return buf, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF // the object shrank under us
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
	s, err := b.session(ctx)
	if err != nil {
		return core.FileInfo{}, fmt.Errorf("stat %q: %w", name, err)
	}
	fi, err := b.object(s.sftp, name)
	if err != nil {
		return core.FileInfo{}, classify(fmt.Errorf("stat %q: %w", name, err))
	}
	return core.FileInfo{Name: name, Size: fi.Size()}, nil
}

// Remove deletes the object. Directories left empty stay.
func (b *Backend) Remove(ctx context.Context, name string) error {
	if err := core.CheckObjectName(name); err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove %q: %w", name, err)
	}
	s, err := b.session(ctx)
	if err != nil {
		return fmt.Errorf("remove %q: %w", name, err)
	}
	if _, err := b.object(s.sftp, name); err != nil {
		return classify(fmt.Errorf("remove %q: %w", name, err))
	}
	if err := s.sftp.Remove(b.abs(name)); err != nil {
		return classify(fmt.Errorf("remove %q: %w", name, err))
	}
	return nil
}

// List reports the objects whose names start with prefix (core.ListTree:
// several directories read at once, temporary files and symbolic links
// skipped).
func (b *Backend) List(ctx context.Context, prefix string, fn func(core.FileInfo) error) error {
	s, err := b.session(ctx)
	if err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	return core.ListTree(ctx, prefix, listWorkers, func(ctx context.Context, dir string) ([]core.Entry, error) {
		infos, err := s.sftp.ReadDirContext(ctx, b.abs(dir))
		var st *pkgsftp.StatusError
		if err != nil && !errors.Is(err, fs.ErrNotExist) && errors.As(err, &st) {
			// A file read as a directory fails with SSH_FX_FAILURE
			// (ENOTDIR) on some servers: nothing lies below it. (Only a
			// server's answer is checked so: Lstat takes no context, and
			// a dropped connection must not wait on it.)
			if fi, serr := s.sftp.Lstat(b.abs(dir)); serr == nil && !fi.IsDir() {
				err = fmt.Errorf("%w: %w", fs.ErrNotExist, err)
			}
		}
		if err != nil {
			return nil, classify(err)
		}
		entries := make([]core.Entry, len(infos))
		for i, fi := range infos {
			entries[i] = core.Entry{Name: fi.Name(), Dir: fi.IsDir(), Regular: fi.Mode().IsRegular(), Size: fi.Size()}
		}
		return entries, nil
	}, fn)
}

// Cleanup removes the temporary files of saves that never finished (the
// connection was lost before the backend could remove them) and were last
// written more than olderThan ago, and returns how many it removed. A
// younger one may belong to a save still running.
func (b *Backend) Cleanup(ctx context.Context, olderThan time.Duration) (int, error) {
	s, err := b.session(ctx)
	if err != nil {
		return 0, fmt.Errorf("clean up temporary files in %s: %w", b.location, err)
	}
	what := "clean up temporary files in " + b.location
	cutoff := time.Now().Add(-olderThan)
	removed := 0
	// core.WalkDirs bounds the walk: a server could show a link loop or
	// an endless tree as directories.
	err = core.WalkDirs(ctx, func(ctx context.Context, dir string) ([]string, error) {
		entries, err := s.sftp.ReadDirContext(ctx, b.abs(dir))
		if err != nil {
			if dir != "." && errors.Is(err, fs.ErrNotExist) {
				return nil, nil // removed since its parent was read
			}
			return nil, fmt.Errorf("read directory %q: %w", dir, err)
		}
		var subdirs []string
		for _, fi := range entries {
			p := core.JoinPath(dir, fi.Name())
			if core.CheckName(p) != nil {
				continue // not a name this repository could have written
			}
			if fi.IsDir() {
				subdirs = append(subdirs, p)
				continue
			}
			if !fi.Mode().IsRegular() || !core.IsTemp(fi.Name()) || !fi.ModTime().Before(cutoff) {
				continue
			}
			if err := s.sftp.Remove(b.abs(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("remove %q: %w", p, err)
			}
			removed++
		}
		return subdirs, nil
	})
	if err != nil {
		return removed, classify(fmt.Errorf("%s: %w", what, err))
	}
	return removed, nil
}
