// Package sftptest starts a real OpenSSH server on loopback for the tests
// of the SFTP backend and of the code above it: a private sshd (its own
// configuration, host key and authorized keys in a temporary directory,
// a free port on 127.0.0.1) that can be stopped, connections and all, and
// started again on the same port. It needs root (sshd checks passwords and
// switches users) and /usr/sbin/sshd.
package sftptest

import (
	"bufio"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/lifeboat/lifeboat/internal/testenv"
	"github.com/lifeboat/lifeboat/netshare/internal/core"
)

// Server is a running (or stopped) sshd.
type Server struct {
	// Dir holds the server's configuration, keys and log.
	Dir string
	// Addr is the server's 127.0.0.1:port.
	Addr string
	// HostKey is the server's Ed25519 host key, Fingerprint its SHA256
	// fingerprint as ssh-keygen -lf prints it. The server has an ECDSA
	// host key too, ECDSAHostKey, as Debian's sshd has several: clients
	// must ask for the one they can check.
	HostKey      ssh.PublicKey
	Fingerprint  string
	ECDSAHostKey ssh.PublicKey
	// KnownHosts is a known_hosts file that holds HostKey for Addr.
	KnownHosts string
	// IdentityFile is an unencrypted private key that may log in as root.
	IdentityFile string

	mu  sync.Mutex
	cmd *exec.Cmd
	log *os.File
}

// Start starts sshd and stops it when the test ends. Password logins are
// allowed (for accounts that have a password), root included.
func Start(t testing.TB) *Server {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "sshd", "ssh-keygen")
	dir := t.TempDir()
	s := &Server{Dir: dir}
	keygen := func(file, typ string) ssh.PublicKey {
		t.Helper()
		out, err := exec.Command("ssh-keygen", "-q", "-t", typ, "-N", "", "-C", "lifeboat-test", "-f", file).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh-keygen %s: %v\n%s", file, err, out)
		}
		pub, err := os.ReadFile(file + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		key, _, _, _, err := ssh.ParseAuthorizedKey(pub)
		if err != nil {
			t.Fatalf("parse %s.pub: %v", file, err)
		}
		return key
	}
	hostKey := filepath.Join(dir, "host_ed25519")
	s.HostKey = keygen(hostKey, "ed25519")
	ecdsaKey := filepath.Join(dir, "host_ecdsa")
	s.ECDSAHostKey = keygen(ecdsaKey, "ecdsa")
	s.IdentityFile = filepath.Join(dir, "id_ed25519")
	keygen(s.IdentityFile, "ed25519")
	pub, err := os.ReadFile(s.IdentityFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	s.Fingerprint = ssh.FingerprintSHA256(s.HostKey)
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	s.KnownHosts = filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey) + "\n"
	if err := os.WriteFile(s.KnownHosts, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	config := strings.Join([]string{
		"Port " + port,
		"ListenAddress 127.0.0.1",
		"HostKey " + ecdsaKey,
		"HostKey " + hostKey,
		"PidFile none",
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
		"PermitRootLogin yes",
		"PasswordAuthentication yes",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"StrictModes no",
		"MaxStartups 100",
		"MaxSessions 100",
		"LogLevel ERROR",
		"Subsystem sftp internal-sftp",
		"",
	}, "\n")
	if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	// The privilege-separation directory, which the Debian package creates
	// at boot through systemd.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	s.Restart(t)
	t.Cleanup(func() { s.Stop(t) })
	return s
}

// Restart starts sshd on the server's port (after Stop, or the first
// time) and waits until it greets a client.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		t.Fatal("sftptest: Restart of a running server")
	}
	sshd, err := testenv.LookPath("sshd")
	if err != nil {
		t.Fatal(err)
	}
	if s.log == nil {
		s.log, err = os.OpenFile(filepath.Join(s.Dir, "sshd.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(sshd, "-D", "-e", "-f", filepath.Join(s.Dir, "sshd_config"))
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.cmd = cmd
	// sshd may take a moment to listen; the loop ends with it greeting us,
	// exiting, or after a minute (a broken setup, not a slow one).
	for deadline := time.Now().Add(time.Minute); ; {
		select {
		case err := <-exited:
			s.cmd = nil
			t.Fatalf("sshd exited at start: %v\n%s", err, s.Log())
		default:
		}
		if greets(s.Addr) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd does not answer on %s\n%s", s.Addr, s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	go func() { <-exited }()
}

// greets reports whether an SSH server answers on addr with its banner.
func greets(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}

// Stop kills sshd and every session process it started, as a crash or a
// power cut of the server would: open connections break. It may be called
// from any goroutine.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	killTree(s.cmd.Process.Pid)
	s.cmd = nil
	// The listener's socket goes with the process; wait until the port
	// refuses so that a Restart does not race the old server.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
	}
	// Errorf, not Fatalf: Stop may run on a goroutine of the code under
	// test (a hook that kills the server midway).
	t.Errorf("sshd on %s still answers after being killed", s.Addr)
}

// killTree kills pid and its descendants (sshd's per-connection children
// start their own sessions, so a process group would miss them).
func killTree(pid int) {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The fields after the command name, which is in parentheses and
		// may hold spaces: state, then the parent's pid.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	var kill func(p int, depth int)
	kill = func(p int, depth int) {
		_ = syscall.Kill(p, syscall.SIGSTOP) // no new children meanwhile
		if depth < 8 {
			for _, c := range children[p] {
				kill(c, depth+1)
			}
		}
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	kill(pid, 0)
}

// Log returns what sshd wrote so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "sshd.log"))
	return string(b)
}

// URL returns sftp://user@Addr/dir.
func (s *Server) URL(user, dir string) *url.URL {
	return &url.URL{Scheme: "sftp", User: url.User(user), Host: s.Addr, Path: dir}
}

// Options returns the options that log in as root with IdentityFile and
// check the host key against KnownHosts.
func (s *Server) Options() core.Options {
	return core.Options{IdentityFile: s.IdentityFile, KnownHostsFile: s.KnownHosts}
}
