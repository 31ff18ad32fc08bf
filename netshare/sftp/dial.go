package sftp

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	pkgsftp "github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/lifeboat/lifeboat/netshare/internal/core"
)

// Timeouts of the SSH connection: dialTimeout bounds the TCP connect and
// the SSH handshake with authentication; a keepalive request is sent every
// keepaliveEvery and a connection that leaves one unanswered for
// keepaliveTimeout is closed, so that a server that vanished without a
// word (a cable pulled, a machine powered off) does not hang the backup.
const (
	dialTimeout      = 30 * time.Second
	keepaliveEvery   = 15 * time.Second
	keepaliveTimeout = 30 * time.Second
)

// authenticator holds the credentials of one backend: a private key and a
// password, either of which may be absent. A password that has to be asked
// for is asked once, when the server first wants one, and kept for the
// connections dialled later.
type authenticator struct {
	signer ssh.Signer

	mu       sync.Mutex
	password []byte
	ask      func(prompt string) ([]byte, error)
	prompt   string
}

// newAuthenticator reads the identity file and the password file of opts.
// An encrypted identity file is decrypted with a passphrase obtained from
// opts.AskPassword; without it, such a key is refused. Nothing read from
// either file is ever put into an error.
func newAuthenticator(opts core.Options, user, addr string) (*authenticator, error) {
	a := &authenticator{ask: opts.AskPassword, prompt: fmt.Sprintf("password for %s@%s", user, addr)}
	if opts.IdentityFile != "" {
		pem, err := os.ReadFile(opts.IdentityFile)
		if err != nil {
			return nil, fmt.Errorf("read identity file: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(pem)
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			if opts.AskPassword == nil {
				return nil, fmt.Errorf("identity file %s is protected by a passphrase and no one can be asked for it: give an unencrypted key or a way to ask", opts.IdentityFile)
			}
			pass, aerr := opts.AskPassword("passphrase for " + opts.IdentityFile)
			if aerr != nil {
				return nil, fmt.Errorf("ask the passphrase of identity file %s: %w", opts.IdentityFile, aerr)
			}
			signer, err = ssh.ParsePrivateKeyWithPassphrase(pem, pass)
			clear(pass)
			if err != nil {
				// x/crypto's message does not repeat the passphrase.
				return nil, fmt.Errorf("decrypt identity file %s: %w", opts.IdentityFile, err)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("parse identity file %s: %w", opts.IdentityFile, err)
		}
		a.signer = signer
	}
	if opts.PasswordFile != "" {
		pw, err := os.ReadFile(opts.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("read password file: %w", err)
		}
		a.password = bytes.TrimRight(pw, "\r\n")
	}
	if a.signer == nil && a.password == nil && a.ask == nil {
		return nil, errors.New("no credentials: give an identity file (private key) or a password file")
	}
	return a, nil
}

// getPassword returns the password, asking for it the first time.
func (a *authenticator) getPassword() (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.password != nil {
		return string(a.password), nil
	}
	if a.ask == nil {
		return "", errors.New("no password given")
	}
	pw, err := a.ask(a.prompt)
	if err != nil {
		return "", fmt.Errorf("ask for the password: %w", err)
	}
	a.password = bytes.TrimRight(pw, "\r\n")
	return string(a.password), nil
}

// methods are the SSH authentication methods to try, the key first.
func (a *authenticator) methods() []ssh.AuthMethod {
	var m []ssh.AuthMethod
	if a.signer != nil {
		m = append(m, ssh.PublicKeys(a.signer))
	}
	if a.password != nil || a.ask != nil {
		m = append(m, ssh.PasswordCallback(a.getPassword))
		// Servers that check passwords through PAM ask for them by
		// keyboard-interactive: answer a single prompt with the password.
		m = append(m, ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
			if len(questions) == 0 {
				return nil, nil
			}
			if len(questions) != 1 {
				return nil, fmt.Errorf("server asks %d questions, only a password can be answered", len(questions))
			}
			pw, err := a.getPassword()
			if err != nil {
				return nil, err
			}
			return []string{pw}, nil
		}))
	}
	return m
}

// hostKeys decides whether to trust a server's host key:
//
//   - with Options.HostKeyFingerprint, the key must have that SHA256
//     fingerprint (as `ssh-keygen -lf` prints it), and known_hosts is not
//     read;
//   - otherwise the key must be in the known_hosts file
//     (Options.KnownHostsFile, or ~/.ssh/known_hosts), checked by
//     golang.org/x/crypto/ssh/knownhosts, hashed entries and
//     @revoked markers included;
//   - a key that known_hosts does not know is refused with an error giving
//     its fingerprint, unless Options.AcceptHostKey accepts it; an accepted
//     key is appended to Options.KnownHostsFile when that is set (a file
//     the caller chose to keep), and otherwise trusted for this backend's
//     lifetime only (the appliance's home directory lives in memory);
//   - a key that differs from the one known_hosts holds for the host is
//     always refused, as is one that differs from the key a connection of
//     this backend accepted earlier.
type hostKeys struct {
	opts     core.Options
	file     string
	explicit bool

	mu       sync.Mutex
	accepted ssh.PublicKey
}

// init resolves the known_hosts file.
func (h *hostKeys) init() error {
	if fp := h.opts.HostKeyFingerprint; fp != "" && !strings.HasPrefix(fp, "SHA256:") {
		return fmt.Errorf("host key fingerprint %q: want SHA256:... as ssh-keygen -lf prints it", fp)
	}
	h.file, h.explicit = h.opts.KnownHostsFile, h.opts.KnownHostsFile != ""
	if !h.explicit {
		home, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("find known_hosts: %w", err)
		}
		h.file = filepath.Join(home, ".ssh", "known_hosts")
	}
	return nil
}

// callback reads the known_hosts file; a missing file knows no host.
func (h *hostKeys) callback() (ssh.HostKeyCallback, error) {
	if _, err := os.Stat(h.file); errors.Is(err, fs.ErrNotExist) {
		return func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }, nil
	}
	cb, err := knownhosts.New(h.file)
	if err != nil {
		return nil, fmt.Errorf("read known hosts file %s: %w", h.file, err)
	}
	return cb, nil
}

// preferredHostKeyAlgos is OpenSSH's order of preference, so that a server
// with several host keys shows the one `ssh` shows, whose fingerprint the
// user has seen (x/crypto's own order puts ECDSA first).
var preferredHostKeyAlgos = []string{
	ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

// algorithms returns the host key algorithms to ask the server for: those
// of the keys known_hosts holds for it, so that a server with several keys
// shows one we can check (otherwise it might show an ECDSA key while
// known_hosts holds its Ed25519 one, and look changed); else OpenSSH's
// order.
func (h *hostKeys) algorithms(addr string, remote net.Addr) []string {
	if h.opts.HostKeyFingerprint != "" {
		return preferredHostKeyAlgos
	}
	cb, err := h.callback()
	if err != nil {
		return preferredHostKeyAlgos
	}
	// Asking about a key no one has makes knownhosts list the known ones.
	pub, _, _ := ed25519.GenerateKey(nil)
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return preferredHostKeyAlgos
	}
	var ke *knownhosts.KeyError
	if !errors.As(cb(addr, remote, probe), &ke) || len(ke.Want) == 0 {
		return preferredHostKeyAlgos
	}
	var algos []string
	for _, k := range ke.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algos = append(algos, t)
		}
	}
	return algos
}

// check is the ssh.HostKeyCallback.
func (h *hostKeys) check(addr string, remote net.Addr, key ssh.PublicKey) error {
	fp := ssh.FingerprintSHA256(key)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.accepted != nil {
		if bytes.Equal(h.accepted.Marshal(), key.Marshal()) {
			return nil
		}
		return fmt.Errorf("host key of %s changed while connected: it was %s %s, it is now %s %s; refusing it",
			addr, h.accepted.Type(), ssh.FingerprintSHA256(h.accepted), key.Type(), fp)
	}
	if want := h.opts.HostKeyFingerprint; want != "" {
		if fp != want {
			return fmt.Errorf("host key of %s is %s %s, not the expected %s; refusing it (if the server's key was really replaced, check the new one with its administrator)",
				addr, key.Type(), fp, want)
		}
		h.accepted = key
		return nil
	}
	cb, err := h.callback()
	if err != nil {
		return err
	}
	err = cb(addr, remote, key)
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case err == nil:
		h.accepted = key
		return nil
	case errors.As(err, &re):
		return fmt.Errorf("host key %s %s of %s is revoked in %s; refusing it", key.Type(), fp, addr, h.file)
	case errors.As(err, &ke) && len(ke.Want) > 0:
		w := ke.Want[0]
		return fmt.Errorf("HOST KEY OF %s HAS CHANGED: the server shows %s %s, but %s line %d holds %s %s for it. "+
			"Someone may be intercepting the connection; refusing it. If the server's key was really replaced, "+
			"remove the old entry (ssh-keygen -R %s -f %s) and connect again",
			addr, key.Type(), fp, w.Filename, w.Line, w.Key.Type(), ssh.FingerprintSHA256(w.Key),
			knownhosts.Normalize(addr), h.file)
	case errors.As(err, &ke):
		if h.opts.AcceptHostKey != nil && h.opts.AcceptHostKey(addr, fp) {
			if h.explicit {
				if err := appendKnownHost(h.file, addr, key); err != nil {
					return err
				}
			}
			h.accepted = key
			return nil
		}
		host, port, _ := net.SplitHostPort(addr)
		return fmt.Errorf("host key of %s is unknown: %s %s. Check this fingerprint with the server's administrator "+
			"(ssh-keygen -lf on the server's host key), then accept it: give it as the host key fingerprint, "+
			"or add the key to %s (ssh-keyscan -p %s %s >> %s)", addr, key.Type(), fp, h.file, port, host, h.file)
	default:
		return fmt.Errorf("check host key of %s against %s: %w", addr, h.file, err)
	}
}

// appendKnownHost records an accepted key at the end of a known_hosts file.
func appendKnownHost(file, addr string, key ssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("record the accepted host key of %s in %s: %w", addr, file, err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("record the accepted host key of %s in %s: %w", addr, file, err)
	}
	_, err = fmt.Fprintln(f, knownhosts.Line([]string{knownhosts.Normalize(addr)}, key))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("record the accepted host key of %s in %s: %w", addr, file, err)
	}
	return nil
}

// hostKeyError marks the errors of the host key check, which are
// permanent, as they pass through the SSH handshake's wrapping.
type hostKeyError struct{ err error }

func (e *hostKeyError) Error() string { return e.err.Error() }
func (e *hostKeyError) Unwrap() error { return e.err }

// dial opens one SSH connection, authenticates, and starts the SFTP
// subsystem on it. Refused host keys and credentials are permanent errors;
// a server that cannot be reached is not.
func (b *Backend) dial(ctx context.Context) (*session, error) {
	what := fmt.Sprintf("connect to sftp server %s as %s", b.addr, b.user)
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", b.addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	// The handshake takes no context: the deadline and a watcher bound it.
	deadline, _ := dctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(dctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	cfg := &ssh.ClientConfig{
		User: b.user,
		Auth: b.auth.methods(),
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			if err := b.keys.check(host, remote, key); err != nil {
				return &hostKeyError{err}
			}
			return nil
		},
		HostKeyAlgorithms: b.keys.algorithms(b.addr, conn.RemoteAddr()),
		Timeout:           dialTimeout,
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, b.addr, cfg)
	stopped := stop()
	if err != nil {
		_ = conn.Close()
		var hk *hostKeyError
		switch {
		case errors.As(err, &hk):
			return nil, core.Permanent(fmt.Errorf("%s: %w", what, hk.err))
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, core.Permanent(fmt.Errorf("%s: the server refused the credentials: %w", what, err))
		case !stopped && ctx.Err() != nil:
			return nil, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	_ = conn.SetDeadline(time.Time{})
	client := ssh.NewClient(c, chans, reqs)
	sc, err := pkgsftp.NewClient(client, pkgsftp.UseConcurrentWrites(true), pkgsftp.MaxConcurrentRequestsPerFile(maxRequests))
	if err != nil {
		_ = client.Close()
		if strings.Contains(err.Error(), "subsystem request failed") {
			return nil, core.Permanent(fmt.Errorf("%s: the server offers no SFTP subsystem: %w", what, err))
		}
		return nil, fmt.Errorf("%s: start SFTP: %w", what, err)
	}
	// OpenSSH's sftp-server takes 256 KiB messages and says so with the
	// limits@openssh.com extension; the protocol's guaranteed 32 KiB packets
	// cost both ends four times the per-packet work, which a CPU-bound
	// backup feels. Servers that do not say so keep 32 KiB.
	if _, ok := sc.HasExtension("limits@openssh.com"); ok {
		if big, err := pkgsftp.NewClient(client, pkgsftp.UseConcurrentWrites(true), pkgsftp.MaxConcurrentRequestsPerFile(maxRequests),
			pkgsftp.MaxPacketUnchecked(bigPacket)); err == nil {
			_ = sc.Close()
			sc = big
		}
	}
	s := &session{ssh: client, sftp: sc, done: make(chan struct{})}
	var once sync.Once
	end := func() { once.Do(func() { close(s.done) }) }
	go func() { _ = client.Wait(); end() }()
	go func() { _ = sc.Wait(); end() }()
	go keepalive(client, s.done)
	return s, nil
}

// bigPacket is the data size of SFTP reads and writes to servers that
// accept 256 KiB messages, with room for the message's own header.
const bigPacket = 255 << 10

// keepalive sends keepalive@openssh.com requests until done is closed and
// closes the connection when one goes unanswered.
func keepalive(c *ssh.Client, done <-chan struct{}) {
	t := time.NewTicker(keepaliveEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		replied := make(chan struct{})
		go func() {
			_, _, _ = c.SendRequest("keepalive@openssh.com", true, nil)
			close(replied)
		}()
		timer := time.NewTimer(keepaliveTimeout)
		select {
		case <-replied:
			timer.Stop()
		case <-done:
			timer.Stop()
			return
		case <-timer.C:
			_ = c.Close()
			return
		}
	}
}
