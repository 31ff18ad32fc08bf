package nfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"time"
)

// The NFSv3 (RFC 1813), MOUNT v3 and portmapper v2 procedures the backend
// uses, as calls on an rpcClient.

// maxIO is the most bytes one READ or WRITE moves; servers usually allow
// 1 MiB, and their own limit (FSINFO) lowers it.
const maxIO = 1 << 20

// maxFH is the largest NFSv3 file handle.
const maxFH = 64

// maxName bounds a directory entry's name in a reply.
const maxName = 4096

// NFSv3 procedures.
const (
	procGetattr     = 1
	procLookup      = 3
	procRead        = 6
	procWrite       = 7
	procCreate      = 8
	procMkdir       = 9
	procRemove      = 12
	procRename      = 14
	procReaddirplus = 17
	procFsinfo      = 19
	procCommit      = 21
)

// NFSv3 status codes that are not errno values of Linux's.
const (
	nfs3ErrStale       = 70
	nfs3ErrBadHandle   = 10001
	nfs3ErrNotSync     = 10002
	nfs3ErrBadCookie   = 10003
	nfs3ErrNotSupp     = 10004
	nfs3ErrTooSmall    = 10005
	nfs3ErrServerFault = 10006
	nfs3ErrBadType     = 10007
	nfs3ErrJukebox     = 10008
)

// File types of fattr3.
const (
	typeReg = 1
	typeDir = 2
)

// statusError is an NFS or MOUNT status other than OK. It unwraps to the
// matching errno where there is one, so errors.Is(err, fs.ErrNotExist)
// and the like work.
type statusError struct {
	proc   string
	status uint32
}

var statusNames = map[uint32]string{
	1: "NFS3ERR_PERM", 2: "NFS3ERR_NOENT", 5: "NFS3ERR_IO", 6: "NFS3ERR_NXIO", 13: "NFS3ERR_ACCES",
	17: "NFS3ERR_EXIST", 18: "NFS3ERR_XDEV", 19: "NFS3ERR_NODEV", 20: "NFS3ERR_NOTDIR", 21: "NFS3ERR_ISDIR",
	22: "NFS3ERR_INVAL", 27: "NFS3ERR_FBIG", 28: "NFS3ERR_NOSPC", 30: "NFS3ERR_ROFS", 31: "NFS3ERR_MLINK",
	63: "NFS3ERR_NAMETOOLONG", 66: "NFS3ERR_NOTEMPTY", 69: "NFS3ERR_DQUOT", 70: "NFS3ERR_STALE",
	71: "NFS3ERR_REMOTE", 10001: "NFS3ERR_BADHANDLE", 10002: "NFS3ERR_NOT_SYNC", 10003: "NFS3ERR_BAD_COOKIE",
	10004: "NFS3ERR_NOTSUPP", 10005: "NFS3ERR_TOOSMALL", 10006: "NFS3ERR_SERVERFAULT", 10007: "NFS3ERR_BADTYPE",
	10008: "NFS3ERR_JUKEBOX",
}

func (e *statusError) Error() string {
	name := statusNames[e.status]
	if name == "" {
		name = fmt.Sprintf("status %d", e.status)
	}
	if errno, ok := e.errno(); ok {
		return fmt.Sprintf("%s: %s (%v)", e.proc, name, errno)
	}
	return fmt.Sprintf("%s: %s", e.proc, name)
}

func (e *statusError) errno() (syscall.Errno, bool) {
	switch e.status {
	case 1, 2, 5, 6, 13, 17, 18, 19, 20, 21, 22, 27, 28, 30, 31, 63, 66, 69, 70, 71:
		return syscall.Errno(e.status), true
	}
	return 0, false
}

func (e *statusError) Unwrap() error {
	if errno, ok := e.errno(); ok {
		return errno
	}
	return nil
}

func isStatus(err error, status uint32) bool {
	var se *statusError
	return errors.As(err, &se) && se.status == status
}

// attr is the part of fattr3 the backend uses.
type attr struct {
	ftype uint32
	size  uint64
	mtime time.Time
}

func decodeFattr(d *decoder) attr {
	var a attr
	a.ftype = d.u32()
	d.skip(16) // mode, nlink, uid, gid
	a.size = d.u64()
	d.skip(40) // used, rdev, fsid, fileid, atime
	sec, nsec := d.u32(), d.u32()
	a.mtime = time.Unix(int64(sec), int64(nsec%1e9))
	d.skip(8) // ctime
	return a
}

// decodePostOpAttr reads post_op_attr and says whether it held attributes.
func decodePostOpAttr(d *decoder) (attr, bool) {
	if d.boolean() {
		return decodeFattr(d), true
	}
	return attr{}, false
}

func skipWcc(d *decoder) {
	if d.boolean() { // pre_op_attr
		d.skip(24)
	}
	decodePostOpAttr(d)
}

// status reads an NFS status and turns a failure into a statusError.
func status(d *decoder, proc string) error {
	st := d.u32()
	if d.err != nil {
		return fmt.Errorf("%s: %w: %w", proc, errConnBroken, d.err)
	}
	if st != 0 {
		return &statusError{proc: proc, status: st}
	}
	return nil
}

// decodeErr is the error of a reply that ended early or held nonsense;
// the connection is dropped, as the stream may be out of step.
func decodeErr(proc string, d *decoder) error {
	if d.err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w: %w", proc, errConnBroken, d.err)
}

// nfsConn is one connection to the NFS program.
type nfsConn struct{ *rpcClient }

func (c nfsConn) nfs(ctx context.Context, proc uint32, args *encoder) (*decoder, error) {
	return c.call(ctx, progNFS, versNFS, proc, args.b)
}

func dirop(e *encoder, dir []byte, name string) {
	e.opaque(dir)
	e.str(name)
}

// lookup returns the handle and attributes of name in dir.
func (c nfsConn) lookup(ctx context.Context, dir []byte, name string) ([]byte, attr, error) {
	var e encoder
	dirop(&e, dir, name)
	d, err := c.nfs(ctx, procLookup, &e)
	if err != nil {
		return nil, attr{}, fmt.Errorf("LOOKUP %s: %w", name, err)
	}
	if err := status(d, "LOOKUP "+name); err != nil {
		return nil, attr{}, err
	}
	fh := d.opaque(maxFH)
	a, ok := decodePostOpAttr(d)
	if err := decodeErr("LOOKUP "+name, d); err != nil {
		return nil, attr{}, err
	}
	if !ok {
		if a, err = c.getattr(ctx, fh); err != nil {
			return nil, attr{}, err
		}
	}
	return fh, a, nil
}

func (c nfsConn) getattr(ctx context.Context, fh []byte) (attr, error) {
	var e encoder
	e.opaque(fh)
	d, err := c.nfs(ctx, procGetattr, &e)
	if err != nil {
		return attr{}, fmt.Errorf("GETATTR: %w", err)
	}
	if err := status(d, "GETATTR"); err != nil {
		return attr{}, err
	}
	a := decodeFattr(d)
	return a, decodeErr("GETATTR", d)
}

// read reads up to count bytes at off into p's start, returning how many
// and whether the end of the file was reached.
func (c nfsConn) read(ctx context.Context, fh []byte, off uint64, p []byte) (int, bool, error) {
	var e encoder
	e.opaque(fh)
	e.u64(off)
	e.u32(uint32(len(p)))
	d, err := c.nfs(ctx, procRead, &e)
	if err != nil {
		return 0, false, fmt.Errorf("READ: %w", err)
	}
	st := status(d, "READ")
	decodePostOpAttr(d)
	if st != nil {
		return 0, false, st
	}
	count := d.u32()
	eof := d.boolean()
	data := d.opaque(len(p))
	if err := decodeErr("READ", d); err != nil {
		return 0, false, err
	}
	if int(count) != len(data) {
		return 0, false, fmt.Errorf("READ: %w: count %d but %d bytes of data", errConnBroken, count, len(data))
	}
	return copy(p, data), eof, nil
}

// Stability levels of WRITE.
const (
	unstable = 0
	fileSync = 2
)

// write writes p at off and returns the server's write verifier.
func (c nfsConn) write(ctx context.Context, fh []byte, off uint64, p []byte, stable uint32) ([8]byte, error) {
	var verf [8]byte
	var e encoder
	e.opaque(fh)
	e.u64(off)
	e.u32(uint32(len(p)))
	e.u32(stable)
	e.opaque(p)
	d, err := c.nfs(ctx, procWrite, &e)
	if err != nil {
		return verf, fmt.Errorf("WRITE: %w", err)
	}
	st := status(d, "WRITE")
	skipWcc(d)
	if st != nil {
		return verf, st
	}
	count := d.u32()
	d.u32() // committed
	copy(verf[:], d.fixed(8))
	if err := decodeErr("WRITE", d); err != nil {
		return verf, err
	}
	if int(count) != len(p) {
		// Short writes are allowed by the protocol; the caller writes
		// whole pieces, so it treats one as a failed attempt.
		return verf, fmt.Errorf("WRITE: server wrote %d of %d bytes", count, len(p))
	}
	return verf, nil
}

// commit makes the unstable writes of fh durable and returns the verifier.
func (c nfsConn) commit(ctx context.Context, fh []byte) ([8]byte, error) {
	var verf [8]byte
	var e encoder
	e.opaque(fh)
	e.u64(0)
	e.u32(0) // to the end of the file
	d, err := c.nfs(ctx, procCommit, &e)
	if err != nil {
		return verf, fmt.Errorf("COMMIT: %w", err)
	}
	st := status(d, "COMMIT")
	skipWcc(d)
	if st != nil {
		return verf, st
	}
	copy(verf[:], d.fixed(8))
	return verf, decodeErr("COMMIT", d)
}

// sattrMode encodes a sattr3 that sets only the mode.
func sattrMode(e *encoder, mode uint32) {
	e.boolean(true)
	e.u32(mode)
	e.boolean(false) // uid
	e.boolean(false) // gid
	e.boolean(false) // size
	e.u32(0)         // atime: don't change
	e.u32(0)         // mtime: don't change
}

// createNew creates name in dir, failing if it exists (GUARDED), and
// returns its handle.
func (c nfsConn) createNew(ctx context.Context, dir []byte, name string) ([]byte, error) {
	var e encoder
	dirop(&e, dir, name)
	e.u32(1) // GUARDED
	sattrMode(&e, 0o600)
	return c.created(ctx, procCreate, "CREATE "+name, &e, dir, name)
}

func (c nfsConn) mkdir(ctx context.Context, dir []byte, name string) ([]byte, error) {
	var e encoder
	dirop(&e, dir, name)
	sattrMode(&e, 0o700)
	return c.created(ctx, procMkdir, "MKDIR "+name, &e, dir, name)
}

// created reads the reply of CREATE or MKDIR, looking the new object up
// when the server does not return its handle.
func (c nfsConn) created(ctx context.Context, proc uint32, what string, e *encoder, dir []byte, name string) ([]byte, error) {
	d, err := c.nfs(ctx, proc, e)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	st := status(d, what)
	if st != nil {
		return nil, st
	}
	var fh []byte
	if d.boolean() {
		fh = d.opaque(maxFH)
	}
	decodePostOpAttr(d)
	skipWcc(d)
	if err := decodeErr(what, d); err != nil {
		return nil, err
	}
	if fh == nil {
		fh, _, err = c.lookup(ctx, dir, name)
	}
	return fh, err
}

func (c nfsConn) remove(ctx context.Context, dir []byte, name string) error {
	var e encoder
	dirop(&e, dir, name)
	d, err := c.nfs(ctx, procRemove, &e)
	if err != nil {
		return fmt.Errorf("REMOVE %s: %w", name, err)
	}
	st := status(d, "REMOVE "+name)
	skipWcc(d)
	if st != nil {
		return st
	}
	return decodeErr("REMOVE", d)
}

// rename renames from to to, both in dir, replacing to atomically.
func (c nfsConn) rename(ctx context.Context, dir []byte, from, to string) error {
	var e encoder
	dirop(&e, dir, from)
	dirop(&e, dir, to)
	d, err := c.nfs(ctx, procRename, &e)
	if err != nil {
		return fmt.Errorf("RENAME %s to %s: %w", from, to, err)
	}
	st := status(d, "RENAME "+from+" to "+to)
	skipWcc(d)
	skipWcc(d)
	if st != nil {
		return st
	}
	return decodeErr("RENAME", d)
}

// dirEntry is one entry of READDIRPLUS.
type dirEntry struct {
	name    string
	a       attr
	hasAttr bool
	fh      []byte
}

// maxDirReply is the largest READDIRPLUS reply asked for; maxDirCalls
// bounds the calls of one directory listing (a server that never says
// EOF).
const (
	maxDirReply = 64 << 10
	maxDirCalls = 1 << 20
)

// readdir calls fn for every entry of dir but "." and "..".
func (c nfsConn) readdir(ctx context.Context, dir []byte, fn func(dirEntry) error) error {
	var cookie, prev uint64
	var verf [8]byte
	for range maxDirCalls {
		var e encoder
		e.opaque(dir)
		e.u64(cookie)
		e.fixed(verf[:])
		e.u32(maxDirReply / 4) // dircount
		e.u32(maxDirReply)     // maxcount
		d, err := c.nfs(ctx, procReaddirplus, &e)
		if err != nil {
			return fmt.Errorf("READDIRPLUS: %w", err)
		}
		st := status(d, "READDIRPLUS")
		decodePostOpAttr(d)
		if st != nil {
			return st
		}
		copy(verf[:], d.fixed(8))
		var entries []dirEntry
		for d.boolean() {
			var de dirEntry
			d.u64() // fileid
			de.name = string(d.opaque(maxName))
			cookie = d.u64()
			de.a, de.hasAttr = decodePostOpAttr(d)
			if d.boolean() {
				de.fh = d.opaque(maxFH)
			}
			if d.err != nil {
				break
			}
			entries = append(entries, de)
		}
		eof := d.boolean()
		if err := decodeErr("READDIRPLUS", d); err != nil {
			return err
		}
		for _, de := range entries {
			if de.name == "." || de.name == ".." {
				continue
			}
			if err := fn(de); err != nil {
				return err
			}
		}
		if eof {
			return nil
		}
		if len(entries) == 0 || cookie == prev {
			// The listing would never end.
			return fmt.Errorf("READDIRPLUS: %w: server returned no new entries and no end of directory", errConnBroken)
		}
		prev = cookie
	}
	return fmt.Errorf("READDIRPLUS: directory not finished after %d calls", maxDirCalls)
}

// fsinfo returns the server's preferred maximum READ and WRITE sizes.
func (c nfsConn) fsinfo(ctx context.Context, root []byte) (rtmax, wtmax uint32, err error) {
	var e encoder
	e.opaque(root)
	d, err := c.nfs(ctx, procFsinfo, &e)
	if err != nil {
		return 0, 0, fmt.Errorf("FSINFO: %w", err)
	}
	st := status(d, "FSINFO")
	decodePostOpAttr(d)
	if st != nil {
		return 0, 0, st
	}
	rtmax = d.u32()
	d.u32() // rtpref
	d.u32() // rtmult
	wtmax = d.u32()
	return rtmax, wtmax, decodeErr("FSINFO", d)
}

// MOUNT v3 status codes with a meaning of their own.
var mountStatus = map[uint32]string{
	1: "not owner (MNT3ERR_PERM)", 2: "no such export (MNT3ERR_NOENT)", 5: "I/O error (MNT3ERR_IO)",
	13: "access denied (MNT3ERR_ACCES)", 20: "not a directory (MNT3ERR_NOTDIR)", 22: "invalid argument (MNT3ERR_INVAL)",
	63: "name too long (MNT3ERR_NAMETOOLONG)", 10004: "not supported (MNT3ERR_NOTSUPP)", 10006: "server fault (MNT3ERR_SERVERFAULT)",
}

// mountError is a refused MNT.
type mountError struct {
	path   string
	status uint32
}

func (e *mountError) Error() string {
	msg := mountStatus[e.status]
	if msg == "" {
		msg = fmt.Sprintf("status %d", e.status)
	}
	return fmt.Sprintf("mount %s: %s", e.path, msg)
}

// mnt asks the MOUNT program for the root handle of path.
func mnt(ctx context.Context, c *rpcClient, path string) ([]byte, error) {
	var e encoder
	e.str(path)
	d, err := c.call(ctx, progMount, versMount, 1, e.b)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", path, err)
	}
	st := d.u32()
	if d.err != nil {
		return nil, fmt.Errorf("mount %s: %w: %w", path, errConnBroken, d.err)
	}
	if st != 0 {
		return nil, &mountError{path: path, status: st}
	}
	fh := d.opaque(maxFH)
	if d.err != nil {
		return nil, fmt.Errorf("mount %s: %w: %w", path, errConnBroken, d.err)
	}
	return fh, nil
}

// getport asks a portmapper for the TCP port of prog and vers.
func getport(ctx context.Context, c *rpcClient, prog, vers uint32) (int, error) {
	var e encoder
	e.u32(prog)
	e.u32(vers)
	e.u32(6) // TCP
	e.u32(0)
	d, err := c.call(ctx, progPortmap, versPortmap, 3, e.b)
	if err != nil {
		return 0, err
	}
	port := d.u32()
	if d.err != nil {
		return 0, fmt.Errorf("%w: %w", errConnBroken, d.err)
	}
	if port == 0 || port > 65535 {
		return 0, fmt.Errorf("program %d version %d is not registered", prog, vers)
	}
	return int(port), nil
}

// notExist makes the statuses that mean "no such object" on a path read
// as fs.ErrNotExist: a path running through a file.
func notExist(err error) error {
	if errors.Is(err, syscall.ENOTDIR) && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", fs.ErrNotExist, err)
	}
	return err
}
