// Package smb is the netshare backend for a Windows or Samba share, spoken
// directly over SMB 2 and 3 (github.com/cloudsoda/go-smb2, NTLM
// authentication): no kernel CIFS client is needed, which matters on the
// appliance, whose kernel carries none.
//
// A location reads smb://[domain;]user@host[:port]/share[/path]: the share
// is the first path element and objects live under path, which is created
// when missing. The password comes from core.Options (a password file, or
// a question to the user); a password inside the URL is refused, as it
// would show in process lists and logs.
//
// Saves write a temporary file beside the object, flush it and rename it
// over the object with the SMB "replace if exists" flag. The backend keeps
// a few sessions, each on its own TCP connection, and lends one to each
// operation; a session whose connection broke is dropped and dialled anew
// by the next operation, so netshare.WithRetry can ride out a restarted
// server.
package smb

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
	"strconv"
	"strings"
	"time"

	smb2 "github.com/cloudsoda/go-smb2"

	"github.com/lifeboat/lifeboat/netshare/internal/core"
)

// DefaultPort is the SMB port used when the location names none.
const DefaultPort = 445

// MaxConnections is how many sessions the backend keeps at most, each on
// its own TCP connection: a few streams fill a gigabit link where one
// session waits on round trips.
const MaxConnections = 4

// listWorkers is how many directories List reads at once: a repository
// has hundreds, and one at a time each waits a round trip.
const listWorkers = MaxConnections

// copyBufSize is the write size of Save; go-smb2 splits it into the largest
// writes the server allows.
const copyBufSize = 1 << 20

// cleanupTimeout bounds the work done after a failed Save (closing the
// temporary file, removing it) under a context of its own, since the
// caller's may be the one that was cancelled.
const cleanupTimeout = 10 * time.Second

// sharingRetries bounds how often an operation that met a sharing
// violation (another open handle, typically a Load, in the way of a rename
// or removal) is tried again inside the backend, sharingDelay apart.
const (
	sharingRetries = 100
	sharingDelay   = 20 * time.Millisecond
)

// NTSTATUS codes the backend classifies; go-smb2 keeps its table internal.
const (
	statusWrongPassword       = 0xC000006A
	statusNoSuchUser          = 0xC0000064
	statusLogonFailure        = 0xC000006D
	statusAccountRestriction  = 0xC000006E
	statusPasswordExpired     = 0xC0000071
	statusAccountDisabled     = 0xC0000072
	statusAccountLockedOut    = 0xC0000234
	statusAccessDenied        = 0xC0000022
	statusNetworkAccessDenied = 0xC00000CA
	statusBadNetworkName      = 0xC00000CC
	statusSharingViolation    = 0xC0000043
	statusDeletePending       = 0xC0000056
	statusNotADirectory       = 0xC0000103
	statusFileIsADirectory    = 0xC00000BA
	statusDiskFull            = 0xC000007F
	statusWriteProtected      = 0xC00000A2
	statusObjectNameInvalid   = 0xC0000033
	statusNetworkNameDeleted  = 0xC00000C9
	statusUserSessionDeleted  = 0xC0000203
	statusNetworkSessionExp   = 0xC000035C
)

// Backend stores objects as files on an SMB share. It implements
// netshare.Backend and is safe for concurrent use.
type Backend struct {
	addr     string // host:port
	share    string
	base     string // directory inside the share, slash-separated, "" for its root
	location string
	// user, domain and password make a fresh NTLM initiator for each
	// dial: an initiator holds the state of one authentication.
	user, domain, password string

	pool *core.Pool[session]
}

// session is one authenticated SMB session with the share mounted.
type session struct {
	s     *smb2.Session
	share *smb2.Share
}

// New opens the share that u names, authenticates, and creates the
// directory of the location when missing. Bad credentials, an unknown
// share and a missing password give permanent errors.
func New(ctx context.Context, u *url.URL, opts core.Options) (*Backend, error) {
	loc, err := parseURL(u)
	if err != nil {
		return nil, core.Permanent(fmt.Errorf("open smb repository: %w", err))
	}
	if loc.passwordInURL {
		return nil, core.Permanent(fmt.Errorf("open smb repository %s: a password inside the URL is refused; give a password file", loc.printable))
	}
	password, err := readPassword(loc, opts)
	if err != nil {
		return nil, err
	}
	b := &Backend{
		addr:     loc.addr,
		share:    loc.share,
		base:     loc.base,
		location: loc.printable,
		user:     loc.user,
		domain:   loc.domain,
		password: password,
	}
	b.pool = core.NewPool(MaxConnections, b.dial, (*session).close, nil,
		fmt.Errorf("smb repository %s is %w", b.location, core.ErrPoolClosed))
	// The first session proves the address, the credentials and the share.
	s, err := b.take(ctx)
	if err != nil {
		return nil, fmt.Errorf("open smb repository %s: %w", b.location, err)
	}
	err = mkdirs(s.share.WithContext(ctx), b.base)
	b.give(s, err)
	if err != nil {
		_ = b.Close()
		return nil, classify(fmt.Errorf("open smb repository %s: create directory %q: %w", b.location, b.base, err))
	}
	return b, nil
}

// location is a parsed smb:// URL.
type location struct {
	addr, domain, user, share, base string
	passwordInURL                   bool
	printable                       string
}

// parseURL reads smb://[domain;]user@host[:port]/share[/path]. The user
// part may also spell the separator "%3B" or use a backslash
// ("domain\user"). Errors never repeat the URL's user information.
func parseURL(u *url.URL) (location, error) {
	var loc location
	if u == nil || u.Scheme != "smb" {
		return loc, errors.New("not an smb:// URL")
	}
	host := u.Hostname()
	if host == "" {
		return loc, errors.New("smb URL without a host")
	}
	port := DefaultPort
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return loc, fmt.Errorf("smb URL port %q is not a port number", p)
		}
		port = n
	}
	loc.addr = net.JoinHostPort(host, strconv.Itoa(port))
	if u.RawQuery != "" || u.Fragment != "" {
		return loc, errors.New("smb URL may not hold a query or a fragment")
	}
	if u.User != nil {
		name := u.User.Username()
		_, loc.passwordInURL = u.User.Password()
		if d, n, ok := strings.Cut(name, ";"); ok {
			loc.domain, name = d, n
		} else if d, n, ok := strings.Cut(name, `\`); ok {
			loc.domain, name = d, n
		}
		loc.user = name
	}
	if loc.user == "" {
		return loc, errors.New("smb URL without a user name (smb://[domain;]user@host/share)")
	}
	p := strings.Trim(u.Path, "/")
	share, rest, _ := strings.Cut(p, "/")
	if share == "" {
		return loc, errors.New("smb URL without a share name (smb://user@host/share[/path])")
	}
	if strings.ContainsAny(share, `\:*?"<>|`) {
		return loc, fmt.Errorf("smb share name %q holds a character shares cannot have", share)
	}
	if rest != "" {
		if err := core.CheckDirPath(rest, `\\:*?"<>|`); err != nil {
			return loc, fmt.Errorf("smb URL path %q: %w", rest, err)
		}
	}
	loc.share, loc.base = share, rest
	who := loc.user
	if loc.domain != "" {
		who = loc.domain + ";" + loc.user
	}
	loc.printable = (&url.URL{Scheme: "smb", User: url.User(who), Host: loc.addr, Path: "/" + p}).String()
	return loc, nil
}

// readPassword takes the password from the password file, else asks for
// it. It never puts the password into an error.
func readPassword(loc location, opts core.Options) (string, error) {
	if opts.PasswordFile != "" {
		data, err := os.ReadFile(opts.PasswordFile)
		if err != nil {
			return "", core.Permanent(fmt.Errorf("open smb repository %s: read password file: %w", loc.printable, err))
		}
		return strings.TrimRight(string(data), "\r\n"), nil
	}
	if opts.AskPassword != nil {
		who := loc.user
		if loc.domain != "" {
			who = loc.domain + `\` + loc.user
		}
		pw, err := opts.AskPassword(fmt.Sprintf("Password for %s on %s", who, loc.printable))
		if err != nil {
			return "", core.Permanent(fmt.Errorf("open smb repository %s: ask for password: %w", loc.printable, err))
		}
		return string(pw), nil
	}
	return "", core.Permanent(fmt.Errorf("open smb repository %s: no password: give a password file (PasswordFile) or answer a prompt", loc.printable))
}

// Properties says the backend is "smb", publishes saves by rename and
// works best with MaxConnections operations in flight.
func (b *Backend) Properties() core.Properties {
	return core.Properties{Name: "smb", Location: b.location, AtomicRename: true, MaxConnections: MaxConnections}
}

// Close logs off every idle session. Operations still running keep theirs
// until they end; it is closed when returned.
func (b *Backend) Close() error {
	b.pool.Close()
	return nil
}

// take returns a session for one operation (see core.Pool).
func (b *Backend) take(ctx context.Context) (*session, error) { return b.pool.Take(ctx) }

// give returns s after an operation that ended with err: a session whose
// connection or login may be gone is dropped, so the next operation dials
// a fresh one.
func (b *Backend) give(s *session, err error) { b.pool.Give(s, err == nil || healthy(err)) }

// dial connects, authenticates and mounts the share.
func (b *Backend) dial(ctx context.Context) (*session, error) {
	d := &smb2.Dialer{Initiator: &smb2.NTLMInitiator{User: b.user, Password: b.password, Domain: b.domain}}
	s, err := d.Dial(ctx, b.addr)
	if err != nil {
		return nil, classify(fmt.Errorf("connect to %s as %s: %w", b.addr, b.account(), describe(err)))
	}
	sh, err := s.WithContext(ctx).Mount(b.share)
	if err != nil {
		logoff(s)
		err = describe(err)
		if isStatus(err, statusBadNetworkName) {
			return nil, core.Permanent(fmt.Errorf("mount share %q on %s: no such share: %w", b.share, b.addr, err))
		}
		return nil, classify(fmt.Errorf("mount share %q on %s: %w", b.share, b.addr, err))
	}
	return &session{s: s, share: sh}, nil
}

// account names the user as Windows prints it.
func (b *Backend) account() string {
	if b.domain != "" {
		return b.domain + `\` + b.user
	}
	return b.user
}

func (s *session) close() { logoff(s.s) }

// logoff ends the session and always closes its connection, waiting a
// little for the server's answer.
func logoff(s *smb2.Session) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.WithContext(ctx).Logoff()
}

// run lends a session to fn and returns it, dropping it when fn's error
// says the connection may be broken.
func (b *Backend) run(ctx context.Context, fn func(sh *smb2.Share) error) error {
	s, err := b.take(ctx)
	if err != nil {
		return err
	}
	err = fn(s.share.WithContext(ctx))
	b.give(s, err)
	return err
}

// full returns the path inside the share of the object or directory name.
func (b *Backend) full(name string) string {
	if name == "." || name == "" {
		return b.base
	}
	if b.base == "" {
		return name
	}
	return b.base + "/" + name
}

// statusError names an NTSTATUS that go-smb2 reports only as a number.
type statusError struct {
	code uint32
	err  error
}

func (e *statusError) Error() string {
	if msg, ok := statusText[e.code]; ok {
		return fmt.Sprintf("%s (NTSTATUS 0x%08X)", msg, e.code)
	}
	return e.err.Error()
}

func (e *statusError) Unwrap() error { return e.err }

var statusText = map[uint32]string{
	statusWrongPassword:       "wrong password",
	statusNoSuchUser:          "no such user",
	statusLogonFailure:        "logon failure: unknown user name or bad password",
	statusAccountRestriction:  "account restriction",
	statusPasswordExpired:     "password expired",
	statusAccountDisabled:     "account disabled",
	statusAccountLockedOut:    "account locked out",
	statusNetworkAccessDenied: "network access denied",
	statusBadNetworkName:      "no such share",
	statusSharingViolation:    "sharing violation (the file is open elsewhere)",
	statusDeletePending:       "delete pending",
	statusNotADirectory:       "not a directory",
	statusFileIsADirectory:    "is a directory",
	statusDiskFull:            "disk full",
	statusWriteProtected:      "write protected",
	statusObjectNameInvalid:   "invalid object name",
}

// describe gives go-smb2's numeric server errors a readable message.
func describe(err error) error {
	var re *smb2.ResponseError
	if errors.As(err, &re) {
		return &statusError{code: re.Code, err: err}
	}
	return err
}

func isStatus(err error, codes ...uint32) bool {
	var re *smb2.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	for _, c := range codes {
		if re.Code == c {
			return true
		}
	}
	return false
}

// healthy reports whether the session that gave err can serve the next
// operation: the server answered (a status), rather than the connection
// failing, a reply going missing or the caller giving up midway.
func healthy(err error) bool {
	if isStatus(err, statusNetworkNameDeleted, statusUserSessionDeleted, statusNetworkSessionExp) {
		return false
	}
	var re *smb2.ResponseError
	if errors.As(err, &re) {
		return true
	}
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrExist) || errors.Is(err, fs.ErrPermission)
}

// classify marks the errors that retrying cannot fix as permanent: bad
// credentials, a missing share, a name in the way, a full or read-only
// share. Connection failures stay retryable.
func classify(err error) error {
	if err == nil || core.IsPermanent(err) {
		return err
	}
	if isStatus(err, statusWrongPassword, statusNoSuchUser, statusLogonFailure, statusAccountRestriction,
		statusPasswordExpired, statusAccountDisabled, statusAccountLockedOut, statusAccessDenied,
		statusNetworkAccessDenied, statusBadNetworkName, statusFileIsADirectory, statusDiskFull,
		statusWriteProtected, statusObjectNameInvalid) {
		return core.Permanent(err)
	}
	if errors.Is(err, fs.ErrExist) {
		return core.Permanent(err)
	}
	return err
}

// notExist makes the statuses that mean "no such object" read as
// fs.ErrNotExist: a path running through a file, or a file being deleted.
func notExist(err error) error {
	if isStatus(err, statusNotADirectory, statusDeletePending) && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", fs.ErrNotExist, err)
	}
	return err
}

// vanishRetries and vanishDelay bound how often an open that found no
// object is tried again (see openExisting).
const (
	vanishRetries = 3
	vanishDelay   = 10 * time.Millisecond
)

// openExisting runs fn, an open or stat of an object, again while it finds
// no object, a few times: Samba answers "not found" to an open that meets
// a rename replacing the object (measured: about one open in a thousand
// with eight writers replacing one name), although the name never ceases
// to exist on the server. A missing object is reported vanishRetries ×
// vanishDelay later than it would be otherwise.
func openExisting(ctx context.Context, fn func() error) error {
	missing := func(err error) bool { return errors.Is(err, fs.ErrNotExist) }
	return retryWhile(ctx, vanishRetries+1, vanishDelay, missing, func() error { return notExist(withSharing(ctx, false, fn)) })
}

// withSharing runs fn again while it fails with a sharing violation: a
// Load's handle briefly in the way of a removal, or a rename in the way of
// an open. With denied set, "access denied" is retried too: that is what
// Samba answers a rename over a file that another client has open (SMB
// opens without FILE_SHARE_DELETE, which go-smb2 cannot ask for).
func withSharing(ctx context.Context, denied bool, fn func() error) error {
	inUse := func(err error) bool {
		return isStatus(err, statusSharingViolation) || denied && errors.Is(err, fs.ErrPermission)
	}
	return retryWhile(ctx, sharingRetries, sharingDelay, inUse, fn)
}

// retryWhile runs fn up to tries times, delay apart, while again says its
// error may go away by itself, and returns the last error.
func retryWhile(ctx context.Context, tries int, delay time.Duration, again func(error) bool, fn func() error) error {
	var err error
	for range tries {
		err = fn()
		if !again(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
	}
	return err
}

// Save writes the object to a temporary file beside its final name, flushes
// it and renames it over the name, so that readers see the old object or
// the whole new one.
func (b *Backend) Save(ctx context.Context, name string, size int64, r io.ReadSeeker) error {
	if err := core.CheckSave(ctx, name, size); err != nil {
		return err
	}
	tmpName, err := core.TempName(name)
	if err != nil {
		return fmt.Errorf("save %q: %w", name, err)
	}
	tmp := b.full(tmpName)
	s, err := b.take(ctx)
	if err != nil {
		return fmt.Errorf("save %q: %w", name, err)
	}
	err = b.save(ctx, s.share.WithContext(ctx), name, tmp, size, r)
	b.give(s, err)
	if err != nil {
		b.removeTemp(tmp)
	}
	return classify(err)
}

func (b *Backend) save(ctx context.Context, sh *smb2.Share, name, tmp string, size int64, r io.Reader) error {
	// The directory usually exists: create it only when the server says
	// the path is missing.
	f, err := sh.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		if err := mkdirs(sh, path.Dir(b.full(name))); err != nil {
			return fmt.Errorf("save %q: %w", name, err)
		}
		f, err = sh.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err != nil {
		return fmt.Errorf("save %q: create temporary file: %w", name, describe(err))
	}
	bufp := make([]byte, copyBufSize)
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, io.LimitReader(core.ContextReader(ctx, r), size), bufp)
	if err == nil && n < size {
		err = core.Permanent(fmt.Errorf("reader ended after %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF))
	}
	if err == nil {
		var extra [1]byte
		if k, _ := io.ReadFull(r, extra[:]); k > 0 {
			err = core.Permanent(fmt.Errorf("reader holds more than the %d bytes announced", size))
		}
	}
	if err == nil {
		if err = f.Sync(); err != nil {
			err = fmt.Errorf("flush: %w", describe(err))
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", describe(cerr))
	}
	if err != nil {
		return fmt.Errorf("save %q: write temporary file after %d bytes: %w", name, n, err)
	}
	err = withSharing(ctx, true, func() error { return sh.Rename(tmp, b.full(name)) })
	if err != nil {
		return fmt.Errorf("save %q: rename temporary file: %w", name, describe(err))
	}
	return nil
}

// removeTemp removes the temporary file of a failed save, on a session and
// a context of its own (the failure may have been the caller's context or
// the session). A file left behind is hidden from List.
func (b *Backend) removeTemp(tmp string) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	_ = b.run(ctx, func(sh *smb2.Share) error {
		err := sh.Remove(tmp)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	})
}

// mkdirs creates dir and its missing parents.
func mkdirs(sh *smb2.Share, dir string) error {
	if dir == "." || dir == "" {
		return nil
	}
	if fi, err := sh.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	p := ""
	for elem := range strings.SplitSeq(dir, "/") {
		p = path.Join(p, elem)
		err := sh.Mkdir(p, 0o700)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create directory %s: %w", p, describe(err))
		}
	}
	return nil
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
	var out []byte
	err := b.run(ctx, func(sh *smb2.Share) error {
		var f *smb2.File
		err := openExisting(ctx, func() error {
			var err error
			f, err = sh.Open(b.full(name))
			return err
		})
		if err != nil {
			return notExist(describe(err))
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return describe(err)
		}
		if fi.IsDir() {
			return fmt.Errorf("a directory, not an object: %w", fs.ErrNotExist)
		}
		size := fi.Size()
		if length < 0 && off >= 0 && off <= size {
			length = size - off
		}
		if off < 0 || length < 0 || off > size || length > size-off {
			return fmt.Errorf("bytes [%d, +%d) of an object of %d bytes: %w", off, length, size, core.ErrOutOfRange)
		}
		buf := make([]byte, length)
		n, err := io.ReadFull(io.NewSectionReader(f, off, length), buf)
		if err != nil {
			return fmt.Errorf("read %d of %d bytes at %d: %w", n, length, off, describe(err))
		}
		out = buf
		return nil
	})
	if err != nil {
		return nil, classify(fmt.Errorf("load %q: %w", name, err))
	}
	return out, nil
}

// Stat returns the object's size.
func (b *Backend) Stat(ctx context.Context, name string) (core.FileInfo, error) {
	if err := core.CheckObjectName(name); err != nil {
		return core.FileInfo{}, fmt.Errorf("stat: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return core.FileInfo{}, fmt.Errorf("stat %q: %w", name, err)
	}
	var size int64
	err := b.run(ctx, func(sh *smb2.Share) error {
		var fi fs.FileInfo
		err := openExisting(ctx, func() error {
			var err error
			fi, err = sh.Stat(b.full(name))
			return err
		})
		if err != nil {
			return notExist(describe(err))
		}
		if fi.IsDir() {
			return fmt.Errorf("a directory, not an object: %w", fs.ErrNotExist)
		}
		size = fi.Size()
		return nil
	})
	if err != nil {
		return core.FileInfo{}, classify(fmt.Errorf("stat %q: %w", name, err))
	}
	return core.FileInfo{Name: name, Size: size}, nil
}

// List reports the objects whose names start with prefix (core.ListTree:
// temporary files skipped). Each directory is read on a session taken for
// that read alone, so fn may itself use the backend.
func (b *Backend) List(ctx context.Context, prefix string, fn func(core.FileInfo) error) error {
	return core.ListTree(ctx, prefix, listWorkers, func(ctx context.Context, dir string) ([]core.Entry, error) {
		var entries []core.Entry
		err := b.run(ctx, func(sh *smb2.Share) error {
			entries = entries[:0]
			infos, err := sh.ReadDir(b.full(dir))
			if err != nil {
				// Reading a file as a directory fails with "not
				// supported" on Samba: find out what is there.
				fi, serr := sh.Stat(b.full(dir))
				if errors.Is(notExist(describe(serr)), fs.ErrNotExist) || serr == nil && !fi.IsDir() {
					return fmt.Errorf("%w: %w", fs.ErrNotExist, describe(err))
				}
				return describe(err)
			}
			for _, fi := range infos {
				entries = append(entries, core.Entry{Name: fi.Name(), Dir: fi.IsDir(), Regular: fi.Mode().IsRegular(), Size: fi.Size()})
			}
			return nil
		})
		return entries, classify(err)
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
	err := b.run(ctx, func(sh *smb2.Share) error {
		return withSharing(ctx, false, func() error {
			fi, err := sh.Stat(b.full(name))
			if err != nil {
				return notExist(describe(err))
			}
			if fi.IsDir() {
				return fmt.Errorf("a directory, not an object: %w", fs.ErrNotExist)
			}
			return notExist(describe(sh.Remove(b.full(name))))
		})
	})
	if err != nil {
		return classify(fmt.Errorf("remove %q: %w", name, err))
	}
	return nil
}

// Cleanup removes the temporary files of saves that never finished (the
// connection dropped before Save could remove them) and were last written
// more than olderThan ago, and returns how many it removed. A younger one
// may belong to a save still running. A file another client holds open
// is in use, whatever its age, and stays. See netshare.Cleaner.
func (b *Backend) Cleanup(ctx context.Context, olderThan time.Duration) (int, error) {
	what := "clean up temporary files in " + b.location
	cutoff := time.Now().Add(-olderThan)
	removed := 0
	err := core.WalkDirs(ctx, func(ctx context.Context, dir string) ([]string, error) {
		var subdirs []string
		// One session per directory, as List does, so that a long walk
		// does not keep one from the other operations.
		err := b.run(ctx, func(sh *smb2.Share) error {
			subdirs = subdirs[:0]
			entries, err := sh.ReadDir(b.full(dir))
			if err != nil {
				if dir != "." && errors.Is(notExist(describe(err)), fs.ErrNotExist) {
					return nil // removed since its parent was read
				}
				return fmt.Errorf("read directory %q: %w", dir, describe(err))
			}
			for _, e := range entries {
				if err := ctx.Err(); err != nil {
					return err
				}
				p := core.JoinPath(dir, e.Name())
				if core.CheckName(p) != nil {
					continue // not a name this repository could have written
				}
				if e.IsDir() {
					subdirs = append(subdirs, p)
					continue
				}
				if !e.Mode().IsRegular() || !core.IsTemp(e.Name()) || !e.ModTime().Before(cutoff) {
					continue
				}
				err := describe(sh.Remove(b.full(p)))
				switch {
				case err == nil:
					removed++
				case errors.Is(notExist(err), fs.ErrNotExist), isStatus(err, statusSharingViolation):
					// Its save finished or failed meanwhile, or it is
					// open: in use after all.
				default:
					return fmt.Errorf("remove %q: %w", p, err)
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
