// Package nfs is the netshare backend for an NFS export, spoken directly
// as NFSv3 over TCP: no kernel NFS client is needed, which matters on the
// appliance, whose kernel carries none.
//
// A location reads nfs://host[:port]/export[/path][?uid=N&gid=N&mountport=N].
// Without a port, the server's portmapper (TCP port 111) names the ports
// of its MOUNT and NFS programs; with one, NFS is reached on that port and
// MOUNT on mountport, or on the same port when the query names none (as
// user-space servers such as go-nfs serve both on one port). The export is the
// longest leading part of the path the server agrees to mount; the rest is
// a directory inside it, created when missing. Calls carry AUTH_UNIX
// credentials, uid and gid 0 (root) unless the query says otherwise, and
// leave from a reserved port when the process may bind one.
//
// The client is written here rather than taken from
// github.com/willscott/go-nfs-client, whose RPC layer panics on a
// malformed reply, allocates whatever length a server announces, retries
// a lost connection for minutes without a context, and has no COMMIT.
// This one bounds every reply, takes a context on every call, and turns a
// lost connection into a retryable error after which the next operation
// dials anew.
//
// Saves write a temporary file beside the object with unstable writes,
// COMMIT them (checking the server's write verifier, so a server reboot
// midway fails the save rather than losing data) and RENAME the file over
// the object, which NFSv3 does atomically.
package nfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lifeboat/lifeboat/netshare/internal/core"
)

// MaxConnections is how many connections the backend keeps at most, one
// operation on each at a time.
const MaxConnections = 4

// listWorkers is how many directories List reads at once: a repository
// has hundreds, and one at a time each waits a round trip.
const listWorkers = MaxConnections

// portmapPort is the portmapper's well-known port.
const portmapPort = 111

// cleanupTimeout bounds the removal of a failed save's temporary file,
// done under a context of its own since the caller's may be cancelled.
const cleanupTimeout = 10 * time.Second

// staleRetries bounds how often an operation starts again after its file
// handle went stale: the object was replaced by a concurrent Save between
// the lookup and the read.
const staleRetries = 20

// maxPathElems bounds the elements of a location's path, which the export
// search walks.
const maxPathElems = 64

// Backend stores objects as files on an NFS export. It implements
// netshare.Backend and is safe for concurrent use.
type Backend struct {
	host      string
	port      int // 0: ask the portmapper
	mountPort int // 0: the same as port
	exportArg string
	export    string // the path the server mounted, once known
	cred      []byte
	location  string

	pool *core.Pool[session]

	mu sync.Mutex // guards export
}

// session is one connection with the export mounted and the base
// directory's handle.
type session struct {
	c            nfsConn
	base         []byte
	rtmax, wtmax int
	dirs         map[string][]byte // handles of directories below base
}

// New mounts the export that u names and creates the location's directory
// when missing. An export the server refuses gives a permanent error.
func New(ctx context.Context, u *url.URL, opts core.Options) (*Backend, error) {
	_ = opts // NFSv3 with AUTH_UNIX has no secret to take.
	b, err := parseURL(u)
	if err != nil {
		return nil, core.Permanent(fmt.Errorf("open nfs repository: %w", err))
	}
	b.pool = core.NewPool(MaxConnections, func(ctx context.Context) (*session, error) {
		s, err := b.dial(ctx)
		return s, classify(err)
	}, (*session).close, func(s *session) bool { return !s.c.broken() },
		fmt.Errorf("nfs repository %s is %w", b.location, core.ErrPoolClosed))
	s, err := b.take(ctx)
	if err != nil {
		return nil, fmt.Errorf("open nfs repository %s: %w", b.location, err)
	}
	b.give(s, nil)
	return b, nil
}

// parseURL reads nfs://host[:port]/path[?uid=N&gid=N].
func parseURL(u *url.URL) (*Backend, error) {
	if u == nil || u.Scheme != "nfs" {
		return nil, errors.New("not an nfs:// URL")
	}
	if u.User != nil {
		return nil, errors.New("nfs URL may not hold a user (NFSv3 has no login)")
	}
	b := &Backend{host: u.Hostname()}
	if b.host == "" {
		return nil, errors.New("nfs URL without a host")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("nfs URL port %q is not a port number", p)
		}
		b.port = n
	}
	if u.Fragment != "" {
		return nil, errors.New("nfs URL may not hold a fragment")
	}
	uid, gid := uint64(0), uint64(0)
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, errors.New("nfs URL query is malformed")
	}
	for k, v := range q {
		var n uint64
		var err error
		if len(v) == 1 {
			n, err = strconv.ParseUint(v[0], 10, 32)
		}
		if len(v) != 1 || err != nil {
			return nil, fmt.Errorf("nfs URL option %q needs one number", k)
		}
		switch k {
		case "uid":
			uid = n
		case "gid":
			gid = n
		case "mountport":
			if n < 1 || n > 65535 {
				return nil, fmt.Errorf("nfs URL mountport %d is not a port number", n)
			}
			b.mountPort = int(n)
		default:
			return nil, fmt.Errorf("nfs URL option %q unknown (uid, gid, mountport)", k)
		}
	}
	if b.mountPort != 0 && b.port == 0 {
		return nil, errors.New("nfs URL names a mountport but no port: give both, or neither to ask the portmapper")
	}
	p := strings.Trim(u.Path, "/")
	if p == "" {
		return nil, errors.New("nfs URL without an export path (nfs://host/export[/path])")
	}
	if err := core.CheckDirPath(p, `\\`); err != nil {
		return nil, fmt.Errorf("nfs URL path %q: %w", p, err)
	}
	if strings.Count(p, "/") >= maxPathElems {
		return nil, fmt.Errorf("nfs URL path has more than %d elements", maxPathElems)
	}
	b.exportArg = "/" + p
	b.cred = authUnix(uint32(uid), uint32(gid))
	host := b.host
	if b.port != 0 {
		host = net.JoinHostPort(b.host, strconv.Itoa(b.port))
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	b.location = (&url.URL{Scheme: "nfs", Host: host, Path: b.exportArg, RawQuery: u.RawQuery}).String()
	return b, nil
}

// Properties says the backend is "nfs", publishes saves by rename and
// works best with MaxConnections operations in flight.
func (b *Backend) Properties() core.Properties {
	return core.Properties{Name: "nfs", Location: b.location, AtomicRename: true, MaxConnections: MaxConnections}
}

// Close closes every idle connection. Operations still running keep
// theirs until they end; it is closed when returned.
func (b *Backend) Close() error {
	b.pool.Close()
	return nil
}

func (s *session) close() { s.c.close() }

// take returns a session for one operation (see core.Pool).
func (b *Backend) take(ctx context.Context) (*session, error) { return b.pool.Take(ctx) }

// give returns s after an operation; a session whose connection failed, or
// whose handles went stale, is dropped, so the next operation dials a
// fresh one.
func (b *Backend) give(s *session, err error) {
	b.pool.Give(s, !(s.c.broken() || errors.Is(err, errConnBroken) || isStatus(err, nfs3ErrStale) || isStatus(err, nfs3ErrBadHandle)))
}

// dial finds the server's ports, mounts the export, and looks up (or
// creates) the base directory.
func (b *Backend) dial(ctx context.Context) (*session, error) {
	mountPort, nfsPort := b.port, b.port
	if b.mountPort != 0 {
		mountPort = b.mountPort
	}
	if b.port == 0 {
		addr := net.JoinHostPort(b.host, strconv.Itoa(portmapPort))
		pm, err := dialRPC(ctx, addr, noAuth())
		if err != nil {
			return nil, fmt.Errorf("ask the portmapper of %s: %w", b.host, err)
		}
		mountPort, err = getport(ctx, pm, progMount, versMount)
		if err == nil {
			nfsPort, err = getport(ctx, pm, progNFS, versNFS)
		}
		pm.close()
		if err != nil {
			return nil, fmt.Errorf("ask the portmapper of %s: %w", b.host, err)
		}
	}
	mc, err := dialRPC(ctx, net.JoinHostPort(b.host, strconv.Itoa(mountPort)), b.cred)
	if err != nil {
		return nil, err
	}
	root, rest, err := b.mount(ctx, mc)
	mc.close()
	if err != nil {
		return nil, err
	}
	rc, err := dialRPC(ctx, net.JoinHostPort(b.host, strconv.Itoa(nfsPort)), b.cred)
	if err != nil {
		return nil, err
	}
	c := nfsConn{rc}
	s := &session{c: c, dirs: make(map[string][]byte)}
	rt, wt, err := c.fsinfo(ctx, root)
	if err != nil {
		c.close()
		return nil, fmt.Errorf("export %s: %w", b.export, err)
	}
	s.rtmax, s.wtmax = ioSize(rt), ioSize(wt)
	s.base = root
	if rest != "" {
		fh, err := s.mkdirs(ctx, root, rest)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("create directory %s in export %s: %w", rest, b.export, err)
		}
		s.base = fh
	}
	return s, nil
}

// ioSize clamps a server's maximum transfer size to what this client
// handles, rounded down to 4 KiB.
func ioSize(n uint32) int {
	if n == 0 || n > maxIO {
		n = maxIO
	}
	if n >= 4096 {
		n &^= 4095
	}
	return int(n)
}

// mount mounts the longest leading part of the location's path that the
// server exports and returns its handle and the rest of the path.
func (b *Backend) mount(ctx context.Context, mc *rpcClient) ([]byte, string, error) {
	b.mu.Lock()
	export := b.export
	b.mu.Unlock()
	if export != "" {
		fh, err := mnt(ctx, mc, export)
		if err != nil {
			return nil, "", b.mountErr(err)
		}
		return fh, strings.TrimPrefix(strings.TrimPrefix(b.exportArg, export), "/"), nil
	}
	try := b.exportArg
	var first error
	for range maxPathElems + 1 {
		fh, err := mnt(ctx, mc, try)
		if err == nil {
			b.mu.Lock()
			b.export = try
			b.mu.Unlock()
			return fh, strings.TrimPrefix(strings.TrimPrefix(b.exportArg, try), "/"), nil
		}
		var me *mountError
		if !errors.As(err, &me) {
			return nil, "", err
		}
		if first == nil {
			first = err
		}
		i := strings.LastIndexByte(try, '/')
		if i <= 0 {
			break
		}
		try = try[:i]
	}
	return nil, "", b.mountErr(first)
}

func (b *Backend) mountErr(err error) error {
	var me *mountError
	if errors.As(err, &me) {
		return core.Permanent(fmt.Errorf("the server exports nothing at or above %s that this client may mount: %w", b.exportArg, err))
	}
	return err
}

// noAuth is the AUTH_NONE credential, which portmappers take.
func noAuth() []byte {
	var e encoder
	e.u32(0)
	e.u32(0)
	return e.b
}

// mkdirs looks up dir (slash-separated, below from) and creates the
// elements that are missing, returning its handle.
func (s *session) mkdirs(ctx context.Context, from []byte, dir string) ([]byte, error) {
	fh := from
	for elem := range strings.SplitSeq(dir, "/") {
		next, a, err := s.c.lookup(ctx, fh, elem)
		if errors.Is(err, fs.ErrNotExist) {
			next, err = s.c.mkdir(ctx, fh, elem)
			if errors.Is(err, fs.ErrExist) { // made meanwhile by another save
				next, a, err = s.c.lookup(ctx, fh, elem)
			} else {
				a.ftype = typeDir
			}
		}
		if err != nil {
			return nil, err
		}
		if a.ftype != typeDir {
			return nil, fmt.Errorf("%s is not a directory: %w", elem, syscall.ENOTDIR)
		}
		fh = next
	}
	return fh, nil
}

// dir returns the handle of directory dir (relative to base, "." for base
// itself), from the session's cache or by lookups; create makes missing
// directories.
func (s *session) dir(ctx context.Context, dir string, create bool) ([]byte, error) {
	if dir == "." {
		return s.base, nil
	}
	if fh, ok := s.dirs[dir]; ok {
		return fh, nil
	}
	var fh []byte
	var err error
	if create {
		fh, err = s.mkdirs(ctx, s.base, dir)
	} else {
		fh = s.base
		for elem := range strings.SplitSeq(dir, "/") {
			var a attr
			fh, a, err = s.c.lookup(ctx, fh, elem)
			if err == nil && a.ftype != typeDir {
				err = fmt.Errorf("%s is not a directory: %w", elem, fs.ErrNotExist)
			}
			if err != nil {
				break
			}
		}
	}
	if err != nil {
		return nil, notExist(err)
	}
	if len(s.dirs) > 4096 {
		clear(s.dirs)
	}
	s.dirs[dir] = fh
	return fh, nil
}

// run lends a session to fn. A stale handle (a directory removed and made
// again, the server restarted) clears the session's directory cache and
// runs fn once more.
func (b *Backend) run(ctx context.Context, fn func(s *session) error) error {
	s, err := b.take(ctx)
	if err != nil {
		return err
	}
	err = fn(s)
	if isStatus(err, nfs3ErrStale) || isStatus(err, nfs3ErrBadHandle) {
		clear(s.dirs)
		err = fn(s)
	}
	b.give(s, err)
	return err
}

// classify marks the errors that retrying cannot fix as permanent. A lost
// connection, a stale handle, a server fault or JUKEBOX stay retryable.
func classify(err error) error {
	if err == nil || core.IsPermanent(err) {
		return err
	}
	var re *rpcError
	if errors.As(err, &re) {
		return core.Permanent(err)
	}
	for _, errno := range []syscall.Errno{syscall.EISDIR, syscall.ENOTDIR, syscall.ENOTEMPTY, syscall.EEXIST,
		syscall.ENAMETOOLONG, syscall.EFBIG, syscall.EINVAL, syscall.EXDEV, syscall.EMLINK} {
		if errors.Is(err, errno) {
			return core.Permanent(err)
		}
	}
	for _, st := range []uint32{nfs3ErrNotSupp, nfs3ErrBadType, nfs3ErrTooSmall} {
		if isStatus(err, st) {
			return core.Permanent(err)
		}
	}
	return err
}

// Save writes the object to a temporary file beside its final name,
// commits it and renames it over the name.
func (b *Backend) Save(ctx context.Context, name string, size int64, r io.ReadSeeker) error {
	if err := core.CheckSave(ctx, name, size); err != nil {
		return err
	}
	dir, base := path.Split(name)
	dir = path.Clean(dir)
	tmp, err := core.TempName(base)
	if err != nil {
		return fmt.Errorf("save %q: %w", name, err)
	}
	created := false
	s, err := b.take(ctx)
	if err != nil {
		return classify(fmt.Errorf("save %q: %w", name, err))
	}
	err = b.save(ctx, s, name, dir, tmp, size, r, &created)
	b.give(s, err)
	if err != nil && created {
		b.removeTemp(dir, tmp)
	}
	return classify(err)
}

func (b *Backend) save(ctx context.Context, s *session, name, dir, tmp string, size int64, r io.Reader, created *bool) error {
	dfh, err := s.dir(ctx, dir, true)
	if err != nil {
		return fmt.Errorf("save %q: %w", name, err)
	}
	fh, err := s.c.createNew(ctx, dfh, tmp)
	if isStatus(err, nfs3ErrStale) || errors.Is(err, fs.ErrNotExist) {
		// The cached directory was removed meanwhile: look it up again.
		delete(s.dirs, dir)
		if dfh, err = s.dir(ctx, dir, true); err == nil {
			fh, err = s.c.createNew(ctx, dfh, tmp)
		}
	}
	if err != nil {
		return fmt.Errorf("save %q: create temporary file: %w", name, err)
	}
	*created = true
	buf := make([]byte, s.wtmax)
	src := io.LimitReader(core.ContextReader(ctx, r), size)
	var off int64
	var verf [8]byte
	for off < size {
		n, rerr := io.ReadFull(src, buf[:min(int64(len(buf)), size-off)])
		if n > 0 {
			v, err := s.c.write(ctx, fh, uint64(off), buf[:n], unstable)
			if err != nil {
				return fmt.Errorf("save %q: write at %d: %w", name, off, err)
			}
			if off > 0 && v != verf {
				return fmt.Errorf("save %q: the server restarted during the save (write verifier changed)", name)
			}
			verf = v
			off += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			if off < size {
				return core.Permanent(fmt.Errorf("save %q: reader ended after %d of %d bytes: %w", name, off, size, io.ErrUnexpectedEOF))
			}
			break
		}
		if rerr != nil {
			return fmt.Errorf("save %q: read after %d bytes: %w", name, off, rerr)
		}
	}
	var extra [1]byte
	if k, _ := io.ReadFull(r, extra[:]); k > 0 {
		return core.Permanent(fmt.Errorf("save %q: reader holds more than the %d bytes announced", name, size))
	}
	if size > 0 {
		v, err := s.c.commit(ctx, fh)
		if err != nil {
			return fmt.Errorf("save %q: %w", name, err)
		}
		if v != verf {
			return fmt.Errorf("save %q: the server restarted before COMMIT (write verifier changed)", name)
		}
	}
	if err := s.c.rename(ctx, dfh, tmp, path.Base(name)); err != nil {
		return fmt.Errorf("save %q: rename temporary file: %w", name, err)
	}
	return nil
}

// removeTemp removes the temporary file of a failed save on a session and
// a context of its own. A file left behind is hidden from List.
func (b *Backend) removeTemp(dir, tmp string) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	_ = b.run(ctx, func(s *session) error {
		dfh, err := s.dir(ctx, dir, false)
		if err != nil {
			return err
		}
		return s.c.remove(ctx, dfh, tmp)
	})
}

// object looks up name and returns its handle and attributes; a
// directory is not an object.
func (s *session) object(ctx context.Context, name string) ([]byte, attr, error) {
	dir, base := path.Split(name)
	dfh, err := s.dir(ctx, path.Clean(dir), false)
	if err != nil {
		return nil, attr{}, err
	}
	fh, a, err := s.c.lookup(ctx, dfh, base)
	if err != nil {
		return nil, attr{}, notExist(err)
	}
	if a.ftype != typeReg {
		return nil, attr{}, fmt.Errorf("not a regular file (type %d): %w", a.ftype, fs.ErrNotExist)
	}
	return fh, a, nil
}

// Load reads length bytes at off of the object (to its end when length <
// 0). The range is checked against the object's size before anything is
// allocated. An object replaced while it is read is read again.
func (b *Backend) Load(ctx context.Context, name string, off, length int64) ([]byte, error) {
	if err := core.CheckObjectName(name); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load %q: %w", name, err)
	}
	var out []byte
	err := b.run(ctx, func(s *session) error {
		var err error
		for range staleRetries {
			out, err = s.load(ctx, name, off, length)
			if !isStatus(err, nfs3ErrStale) {
				break
			}
		}
		return err
	})
	if err != nil {
		return nil, classify(fmt.Errorf("load %q: %w", name, err))
	}
	return out, nil
}

func (s *session) load(ctx context.Context, name string, off, length int64) ([]byte, error) {
	fh, a, err := s.object(ctx, name)
	if err != nil {
		return nil, err
	}
	size := int64(a.size)
	if size < 0 {
		return nil, fmt.Errorf("size %d out of range", a.size)
	}
	if length < 0 && off >= 0 && off <= size {
		length = size - off
	}
	if off < 0 || length < 0 || off > size || length > size-off {
		return nil, core.Permanent(fmt.Errorf("bytes [%d, +%d) of an object of %d bytes: %w", off, length, size, core.ErrOutOfRange))
	}
	buf := make([]byte, length)
	for done := int64(0); done < length; {
		p := buf[done:min(length, done+int64(s.rtmax))]
		n, eof, err := s.c.read(ctx, fh, uint64(off+done), p)
		if err != nil {
			return nil, fmt.Errorf("read at %d: %w", off+done, err)
		}
		done += int64(n)
		if n == 0 || eof && done < length {
			// The object shrank after the lookup: it was replaced.
			return nil, &statusError{proc: fmt.Sprintf("READ at %d (short)", off+done), status: nfs3ErrStale}
		}
	}
	return buf, nil
}

// Stat returns the object's size.
func (b *Backend) Stat(ctx context.Context, name string) (core.FileInfo, error) {
	if err := core.CheckObjectName(name); err != nil {
		return core.FileInfo{}, fmt.Errorf("stat: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return core.FileInfo{}, fmt.Errorf("stat %q: %w", name, err)
	}
	var size uint64
	err := b.run(ctx, func(s *session) error {
		_, a, err := s.object(ctx, name)
		size = a.size
		return err
	})
	if err != nil {
		return core.FileInfo{}, classify(fmt.Errorf("stat %q: %w", name, err))
	}
	return core.FileInfo{Name: name, Size: int64(size)}, nil
}

// List reports the objects whose names start with prefix (core.ListTree:
// temporary files skipped). Each directory is read on a session taken for
// that read alone, so fn may itself use the backend.
func (b *Backend) List(ctx context.Context, prefix string, fn func(core.FileInfo) error) error {
	return core.ListTree(ctx, prefix, listWorkers, func(ctx context.Context, dir string) ([]core.Entry, error) {
		var read []dirEntry
		err := b.run(ctx, func(s *session) error {
			read = read[:0]
			dfh, err := s.dir(ctx, dir, false)
			if err != nil {
				return err
			}
			return s.c.readdir(ctx, dfh, func(de dirEntry) error {
				read = append(read, de)
				return nil
			})
		})
		if errors.Is(err, syscall.ENOTDIR) {
			err = fmt.Errorf("%w: %w", fs.ErrNotExist, err) // a file: nothing below it
		}
		if err != nil {
			return nil, classify(err)
		}
		entries := make([]core.Entry, 0, len(read))
		for _, de := range read {
			a := de.a
			if !de.hasAttr {
				// READDIRPLUS may leave an entry's attributes out.
				p := core.JoinPath(dir, de.name)
				if core.CheckName(p) != nil {
					continue
				}
				err := b.run(ctx, func(s *session) error {
					var err error
					_, a, err = s.object(ctx, p)
					return err
				})
				if errors.Is(err, fs.ErrNotExist) {
					continue // removed since the directory was read
				}
				if err != nil {
					return nil, classify(err)
				}
			}
			entries = append(entries, core.Entry{Name: de.name, Dir: a.ftype == typeDir, Regular: a.ftype == typeReg, Size: int64(a.size)})
		}
		return entries, nil
	}, fn)
}

// Remove deletes the object. Directories left empty stay: they cost
// nothing and a later Save reuses them.
func (b *Backend) Remove(ctx context.Context, name string) error {
	if err := core.CheckObjectName(name); err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove %q: %w", name, err)
	}
	err := b.run(ctx, func(s *session) error {
		if _, _, err := s.object(ctx, name); err != nil {
			return err
		}
		dir, base := path.Split(name)
		dfh, err := s.dir(ctx, path.Clean(dir), false)
		if err != nil {
			return err
		}
		return notExist(s.c.remove(ctx, dfh, base))
	})
	if err != nil {
		return classify(fmt.Errorf("remove %q: %w", name, err))
	}
	return nil
}

// Cleanup removes the temporary files of saves that never finished (the
// connection dropped before Save could remove them) and were last written
// more than olderThan ago, by the server's clock, and returns how many it
// removed. A younger one may belong to a save still running. See
// netshare.Cleaner.
func (b *Backend) Cleanup(ctx context.Context, olderThan time.Duration) (int, error) {
	what := "clean up temporary files in " + b.location
	cutoff := time.Now().Add(-olderThan)
	removed := 0
	err := core.WalkDirs(ctx, func(ctx context.Context, dir string) ([]string, error) {
		var subdirs []string
		// One session per directory, as List does; run may call fn twice
		// (a stale handle), so fn starts its findings afresh.
		err := b.run(ctx, func(s *session) error {
			subdirs = subdirs[:0]
			dfh, err := s.dir(ctx, dir, false)
			if err != nil {
				if dir != "." && errors.Is(err, fs.ErrNotExist) {
					return nil // removed since its parent was read
				}
				return fmt.Errorf("directory %q: %w", dir, err)
			}
			var entries []dirEntry
			if err := s.c.readdir(ctx, dfh, func(de dirEntry) error {
				entries = append(entries, de)
				return nil
			}); err != nil {
				return fmt.Errorf("read directory %q: %w", dir, err)
			}
			for _, de := range entries {
				if err := ctx.Err(); err != nil {
					return err
				}
				p := core.JoinPath(dir, de.name)
				if core.CheckName(p) != nil {
					continue // not a name this repository could have written
				}
				a := de.a
				if !de.hasAttr {
					_, a, err = s.c.lookup(ctx, dfh, de.name)
					if errors.Is(err, fs.ErrNotExist) {
						continue // removed since the directory was read
					}
					if err != nil {
						return fmt.Errorf("look up %q: %w", p, err)
					}
				}
				switch {
				case a.ftype == typeDir:
					subdirs = append(subdirs, p)
				case a.ftype == typeReg && core.IsTemp(de.name) && a.mtime.Before(cutoff):
					err := s.c.remove(ctx, dfh, de.name)
					switch {
					case err == nil:
						removed++
					case errors.Is(err, fs.ErrNotExist):
						// Its save finished or failed meanwhile.
					default:
						return fmt.Errorf("remove %q: %w", p, err)
					}
				}
			}
			return nil
		})
		return subdirs, err
	})
	if err != nil {
		return removed, classify(fmt.Errorf("%s: %w", what, err))
	}
	return removed, nil
}
