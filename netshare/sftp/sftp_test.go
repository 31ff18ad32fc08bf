package sftp_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/lifeboat/lifeboat/internal/testenv"
	"github.com/lifeboat/lifeboat/netshare"
	"github.com/lifeboat/lifeboat/netshare/internal/core"
	"github.com/lifeboat/lifeboat/netshare/netsharetest"
	"github.com/lifeboat/lifeboat/netshare/sftp"
	"github.com/lifeboat/lifeboat/netshare/sftp/sftptest"
)

var _ netshare.Backend = (*sftp.Backend)(nil)

func open(t *testing.T, u *url.URL, opts core.Options) *sftp.Backend {
	t.Helper()
	b, err := sftp.New(context.Background(), u, opts)
	if err != nil {
		t.Fatalf("New(%s): %v", u.Redacted(), err)
	}
	return b
}

func TestConformance(t *testing.T) {
	srv := sftptest.Start(t)
	netsharetest.RunConformance(t, func(t *testing.T) netshare.Backend {
		return open(t, srv.URL("root", filepath.Join(t.TempDir(), "repo")), srv.Options())
	})
}

func TestProperties(t *testing.T) {
	srv := sftptest.Start(t)
	dir := filepath.Join(t.TempDir(), "a", "repo")
	b := open(t, srv.URL("root", dir), srv.Options())
	defer b.Close()
	p := b.Properties()
	if p.Name != "sftp" || p.Location != "sftp://root@"+srv.Addr+dir || !p.AtomicRename || p.MaxConnections < 2 {
		t.Fatalf("Properties() = %+v", p)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("New did not create the repository directory %s: %v", dir, err)
	}
	// Objects are files whose paths mirror their names.
	if err := b.Save(context.Background(), "data/ab/abcdef", 3, bytes.NewReader([]byte("xyz"))); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "data", "ab", "abcdef")); err != nil || string(got) != "xyz" {
		t.Fatalf("file behind data/ab/abcdef: %q, %v", got, err)
	}
}

func permanentFailure(t *testing.T, what string, err error, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want a permanent error", what)
	}
	if !netshare.IsPermanent(err) {
		t.Fatalf("%s: error %q is not permanent", what, err)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Fatalf("%s: error %q does not mention %q", what, err, c)
		}
	}
}

func TestHostKeys(t *testing.T) {
	srv := sftptest.Start(t)
	ctx := context.Background()
	u := srv.URL("root", filepath.Join(t.TempDir(), "repo"))
	tmp := t.TempDir()
	base := core.Options{IdentityFile: srv.IdentityFile}

	t.Run("Unknown", func(t *testing.T) {
		o := base
		o.KnownHostsFile = filepath.Join(tmp, "absent")
		_, err := sftp.New(ctx, u, o)
		permanentFailure(t, "New with an unknown host key", err, "unknown", srv.Fingerprint)
		o.AcceptHostKey = func(host, fp string) bool { return false }
		_, err = sftp.New(ctx, u, o)
		permanentFailure(t, "New with an unknown host key the user declines", err, srv.Fingerprint)
	})

	t.Run("Accepted", func(t *testing.T) {
		o := base
		o.KnownHostsFile = filepath.Join(tmp, "kh", "known_hosts")
		var asked []string
		o.AcceptHostKey = func(host, fp string) bool { asked = append(asked, host+" "+fp); return true }
		b := open(t, u, o)
		b.Close()
		if want := srv.Addr + " " + srv.Fingerprint; len(asked) != 1 || asked[0] != want {
			t.Fatalf("AcceptHostKey asked %q, want once %q", asked, want)
		}
		// Recorded in the known_hosts file given: later runs need not ask.
		o.AcceptHostKey = nil
		b = open(t, u, o)
		b.Close()
	})

	t.Run("Fingerprint", func(t *testing.T) {
		o := base
		o.KnownHostsFile = filepath.Join(tmp, "absent")
		o.HostKeyFingerprint = srv.Fingerprint
		b := open(t, u, o)
		b.Close()
		o.HostKeyFingerprint = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
		_, err := sftp.New(ctx, u, o)
		permanentFailure(t, "New with the wrong fingerprint", err, srv.Fingerprint, o.HostKeyFingerprint)
		o.HostKeyFingerprint = "MD5:00:11"
		_, err = sftp.New(ctx, u, o)
		permanentFailure(t, "New with a fingerprint that is not SHA256", err, "SHA256:")
	})

	t.Run("Changed", func(t *testing.T) {
		pub, _, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		other, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		kh := filepath.Join(tmp, "changed")
		line := knownhosts.Line([]string{knownhosts.Normalize(srv.Addr)}, other) + "\n"
		if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		o := base
		o.KnownHostsFile = kh
		asked := false
		o.AcceptHostKey = func(string, string) bool { asked = true; return true }
		_, err = sftp.New(ctx, u, o)
		permanentFailure(t, "New with a host key that differs from known_hosts", err, "CHANGED", srv.Fingerprint, ssh.FingerprintSHA256(other))
		if asked {
			t.Fatal("AcceptHostKey was asked about a changed key")
		}
	})

	t.Run("Known", func(t *testing.T) {
		// known_hosts holds the Ed25519 key only: the client must ask
		// for it, not for the ECDSA key that x/crypto prefers.
		b := open(t, u, srv.Options())
		b.Close()
		// And the other way round.
		kh := filepath.Join(tmp, "ecdsa")
		line := knownhosts.Line([]string{knownhosts.Normalize(srv.Addr)}, srv.ECDSAHostKey) + "\n"
		if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		o := base
		o.KnownHostsFile = kh
		b = open(t, u, o)
		b.Close()
	})
}

// newUser creates a system account with a random password for the test
// and returns its name and password; the account is deleted afterwards.
func newUser(t *testing.T, home string) (string, string) {
	t.Helper()
	testenv.RequireTools(t, "useradd", "userdel", "chpasswd")
	var rnd [6]byte
	rand.Read(rnd[:])
	user := "lbsftp" + hex.EncodeToString(rnd[:3])
	password := "pw-" + hex.EncodeToString(rnd[3:]) + "-Secret"
	if out, err := exec.Command("useradd", "-M", "-d", home, "-s", "/bin/sh", user).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", user).Run() })
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(user + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v\n%s", err, out)
	}
	if out, err := exec.Command("chown", user, home).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v\n%s", err, out)
	}
	return user, password
}

func roundTrip(t *testing.T, b netshare.Backend) {
	t.Helper()
	ctx := context.Background()
	data := bytes.Repeat([]byte("lifeboat"), 100000)
	if err := b.Save(ctx, "data/00/x", int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("Save: %v", err)
	}
	got, err := b.Load(ctx, "data/00/x", 0, -1)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Load: %d bytes, %v", len(got), err)
	}
}

func TestCredentials(t *testing.T) {
	srv := sftptest.Start(t)
	ctx := context.Background()
	home := t.TempDir()
	// The account must reach its directory through the test's.
	for _, d := range []string{filepath.Dir(home), home} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	repoDir := filepath.Join(home, "repo")
	if err := os.Mkdir(repoDir, 0o700); err != nil {
		t.Fatal(err)
	}
	user, password := newUser(t, repoDir)
	u := srv.URL(user, repoDir)
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongPassword := password + "-wrong"
	wrongFile := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrongFile, []byte(wrongPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	noSecret := func(t *testing.T, err error) {
		t.Helper()
		for _, secret := range []string{password, wrongPassword, "-Secret"} {
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error %q gives away a password", err)
			}
		}
	}

	t.Run("PasswordFile", func(t *testing.T) {
		b := open(t, u, core.Options{PasswordFile: pwFile, KnownHostsFile: srv.KnownHosts})
		defer b.Close()
		roundTrip(t, b)
	})
	t.Run("AskPassword", func(t *testing.T) {
		var asked atomic.Int32
		o := core.Options{KnownHostsFile: srv.KnownHosts, AskPassword: func(prompt string) ([]byte, error) {
			asked.Add(1)
			if !strings.Contains(prompt, user+"@"+srv.Addr) {
				t.Errorf("password prompt %q does not name the account", prompt)
			}
			return []byte(password), nil
		}}
		b := open(t, u, o)
		defer b.Close()
		// Both connections log in; the password is asked once.
		for range 4 {
			roundTrip(t, b)
		}
		if asked.Load() != 1 {
			t.Fatalf("password asked %d times, want once", asked.Load())
		}
	})
	t.Run("WrongPassword", func(t *testing.T) {
		_, err := sftp.New(ctx, u, core.Options{PasswordFile: wrongFile, KnownHostsFile: srv.KnownHosts})
		permanentFailure(t, "New with a wrong password", err, "refused the credentials", user)
		noSecret(t, err)
		_, err = sftp.New(ctx, u, core.Options{KnownHostsFile: srv.KnownHosts, AskPassword: func(string) ([]byte, error) { return []byte(wrongPassword), nil }})
		permanentFailure(t, "New with a wrong password asked for", err, "refused the credentials")
		noSecret(t, err)
	})
	t.Run("WrongKey", func(t *testing.T) {
		key := filepath.Join(t.TempDir(), "id")
		testDiskRun(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
		_, err := sftp.New(ctx, srv.URL("root", t.TempDir()), core.Options{IdentityFile: key, KnownHostsFile: srv.KnownHosts})
		permanentFailure(t, "New with a key the server does not know", err, "refused the credentials")
	})
	t.Run("EncryptedKey", func(t *testing.T) {
		passphrase := "key-Secret-" + password
		key := filepath.Join(t.TempDir(), "id")
		testDiskRun(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", key)
		pub, err := os.ReadFile(key + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		ak := filepath.Join(srv.Dir, "authorized_keys")
		old, _ := os.ReadFile(ak)
		if err := os.WriteFile(ak, append(old, pub...), 0o600); err != nil {
			t.Fatal(err)
		}
		dir := srv.URL("root", t.TempDir())
		_, err = sftp.New(ctx, dir, core.Options{IdentityFile: key, KnownHostsFile: srv.KnownHosts})
		permanentFailure(t, "New with an encrypted key and no way to ask", err, "passphrase", key)
		b := open(t, dir, core.Options{IdentityFile: key, KnownHostsFile: srv.KnownHosts,
			AskPassword: func(prompt string) ([]byte, error) { return []byte(passphrase), nil }})
		defer b.Close()
		roundTrip(t, b)
		_, err = sftp.New(ctx, dir, core.Options{IdentityFile: key, KnownHostsFile: srv.KnownHosts,
			AskPassword: func(prompt string) ([]byte, error) { return []byte(wrongPassword), nil }})
		permanentFailure(t, "New with a wrong passphrase", err, key)
		noSecret(t, err)
	})
	t.Run("None", func(t *testing.T) {
		_, err := sftp.New(ctx, u, core.Options{KnownHostsFile: srv.KnownHosts})
		permanentFailure(t, "New without credentials", err, "no credentials")
	})
}

func testDiskRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
}

func TestLocations(t *testing.T) {
	ctx := context.Background()
	for _, loc := range []string{
		"sftp://root:hunter2-Secret@127.0.0.1/x",
		"sftp:///x",
		"sftp://root@127.0.0.1/x?opt=1",
		"sftp://root@127.0.0.1/~/../x",
		"smb://root@127.0.0.1/x",
	} {
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		_, err = sftp.New(ctx, u, core.Options{PasswordFile: "/nonexistent"})
		permanentFailure(t, "New("+u.Redacted()+")", err)
		if strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("error %q gives away the password of the location", err)
		}
	}
}

// A server that goes away and comes back: calls fail with retryable errors
// meanwhile, and the same backend dials again once it is back.
func TestServerRestart(t *testing.T) {
	srv := sftptest.Start(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	b := open(t, srv.URL("root", dir), srv.Options())
	defer b.Close()
	roundTrip(t, b)
	srv.Stop(t)
	for _, op := range []struct {
		name string
		fn   func() error
	}{
		{"Save", func() error { return b.Save(ctx, "index/x", 1, bytes.NewReader([]byte{1})) }},
		{"Load", func() error { _, err := b.Load(ctx, "data/00/x", 0, -1); return err }},
		{"Stat", func() error { _, err := b.Stat(ctx, "data/00/x"); return err }},
		{"List", func() error { return b.List(ctx, "", func(netshare.FileInfo) error { return nil }) }},
		{"Remove", func() error { return b.Remove(ctx, "data/00/x") }},
	} {
		err := op.fn()
		if err == nil || netshare.IsPermanent(err) {
			t.Fatalf("%s with the server down: %v, want a retryable error", op.name, err)
		}
	}
	_, err := sftp.New(ctx, srv.URL("root", dir), srv.Options())
	if err == nil || netshare.IsPermanent(err) {
		t.Fatalf("New with the server down: %v, want a retryable error", err)
	}
	// WithRetry rides out the restart.
	rb := netshare.WithRetry(b, netshare.RetryPolicy{Attempts: 50, Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- rb.Save(ctx, "index/y", 2, bytes.NewReader([]byte("yy"))) }()
	time.Sleep(100 * time.Millisecond)
	srv.Restart(t)
	if err := <-done; err != nil {
		t.Fatalf("Save through WithRetry across a server restart: %v", err)
	}
	roundTrip(t, b)
	if got, err := os.ReadFile(filepath.Join(dir, "index", "y")); err != nil || string(got) != "yy" {
		t.Fatalf("object saved across the restart: %q, %v", got, err)
	}
}

// Names that collide with the repository's layout fail for good, and a
// failed save leaves no file behind.
func TestCollisionsAndLeftovers(t *testing.T) {
	srv := sftptest.Start(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	b := open(t, srv.URL("root", dir), srv.Options())
	defer b.Close()
	if err := b.Save(ctx, "data/ab/x", 1, bytes.NewReader([]byte{1})); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"data/ab", "data/ab/x/y"} {
		err := b.Save(ctx, name, 1, bytes.NewReader([]byte{1}))
		if err == nil || !netshare.IsPermanent(err) {
			t.Errorf("Save(%q) colliding with the existing layout: %v, want a permanent error", name, err)
		}
	}
	boom := errors.New("reader broke")
	err := b.Save(ctx, "data/cd/y", 4<<20, &brokenReader{left: 1 << 20, err: boom})
	if !errors.Is(err, boom) {
		t.Fatalf("Save with a reader failing midway: %v", err)
	}
	var files []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 1 || files[0] != filepath.Join(dir, "data", "ab", "x") {
		t.Fatalf("files in the repository after failed saves: %q", files)
	}
	// A temporary file left by a lost connection is hidden, and Cleanup
	// removes it once it is old enough.
	left := filepath.Join(dir, "data", "ab", "z.tmp-0123456789abcdef")
	if err := os.WriteFile(left, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A symbolic link back to the root is neither listed nor walked into
	// (a regression guard: the walk's own bounds are tested in core).
	if err := os.Symlink(dir, filepath.Join(dir, "data", "loop")); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := b.List(ctx, "", func(netshare.FileInfo) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("List with a leftover temporary file: %d objects, %v", n, err)
	}
	if removed, err := b.Cleanup(ctx, time.Hour); err != nil || removed != 0 {
		t.Fatalf("Cleanup(1h) of a young temporary file = %d, %v", removed, err)
	}
	if removed, err := b.Cleanup(ctx, 0); err != nil || removed != 1 {
		t.Fatalf("Cleanup(0) = %d, %v; want 1", removed, err)
	}
	if _, err := os.Stat(left); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("temporary file still there after Cleanup: %v", err)
	}
}

type brokenReader struct {
	left int
	err  error
}

func (r *brokenReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, r.err
	}
	n := min(len(p), r.left)
	clear(p[:n])
	r.left -= n
	return n, nil
}

func (r *brokenReader) Seek(int64, int) (int64, error) { return 0, errors.New("no seek") }

// Against OpenSSH, which announces 256 KiB messages (limits@openssh.com),
// saves are sent in writes of bigPacket (255 KiB) rather than the 32 KiB
// every server must take: sftp-server's own log of the write requests it
// received says which path the client took.
func TestBigPackets(t *testing.T) {
	srv := sftptest.Start(t)
	var server string
	for _, p := range []string{"/usr/lib/openssh/sftp-server", "/usr/libexec/sftp-server", "/usr/libexec/openssh/sftp-server"} {
		if _, err := os.Stat(p); err == nil {
			server = p
			break
		}
	}
	if server == "" {
		testenv.Skip(t, "needs OpenSSH's sftp-server (Debian: openssh-sftp-server, which openssh-server depends on)")
	}
	// The same server code as internal-sftp, run as a program whose debug
	// log (-e: on its stderr) sshd's shell sends to a file.
	srv.Stop(t)
	conf := filepath.Join(srv.Dir, "sshd_config")
	c, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	const internal = "Subsystem sftp internal-sftp"
	if !bytes.Contains(c, []byte(internal)) {
		t.Fatalf("sftptest's sshd_config has no %q line to replace:\n%s", internal, c)
	}
	sftpLog := filepath.Join(srv.Dir, "sftp-server.log")
	c = bytes.Replace(c, []byte(internal), []byte("Subsystem sftp "+server+" -e -l DEBUG 2>>"+sftpLog), 1)
	if err := os.WriteFile(conf, c, 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Restart(t)

	b := open(t, srv.URL("root", filepath.Join(t.TempDir(), "r")), srv.Options())
	defer b.Close()
	const size = 4 << 20
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	if err := b.Save(context.Background(), "data/ab/big", size, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(sftpLog)
	if err != nil {
		t.Fatal(err)
	}
	// sftp-server logs: request N: write "PATH" (handle H) off OFF len LEN
	var writes, largest, total int64
	for line := range strings.Lines(string(log)) {
		if !strings.Contains(line, ": write \"") || !strings.Contains(line, "/data/ab/big"+core.TempMarker) {
			continue
		}
		var n int64
		i := strings.LastIndex(line, " len ")
		if i < 0 {
			t.Fatalf("write request without a length in sftp-server's log: %q", line)
		}
		if _, err := fmt.Sscanf(line[i:], " len %d", &n); err != nil {
			t.Fatalf("write request in sftp-server's log: %q: %v", line, err)
		}
		writes++
		total += n
		largest = max(largest, n)
	}
	const bigPacket = 255 << 10 // dial.go's
	if total != size || largest != bigPacket || writes != (size+bigPacket-1)/bigPacket {
		t.Fatalf("sftp-server received %d writes of at most %d bytes, %d in all; want %d writes of up to %d bytes, %d in all\n%s",
			writes, largest, total, (size+bigPacket-1)/bigPacket, bigPacket, size, log)
	}
}
