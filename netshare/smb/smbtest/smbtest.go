// Package smbtest runs a real Samba server on loopback for the tests of
// the SMB backend and of the code above it. The server runs as root (Samba
// needs it to switch users), with every file it writes (configuration,
// password database, locks, logs) in the test's temporary directory, and
// is stopped when the test ends.
package smbtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// ShareName is the name of the share the server exports.
const ShareName = "repo"

// User is the account the server knows: root, whose Unix account exists on
// every test machine, so the tests add no system user.
const User = "root"

// Server is a running smbd.
type Server struct {
	// Dir is the directory the share exports.
	Dir string
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Password is User's password; PasswordFile holds it.
	Password, PasswordFile string

	t    testing.TB
	work string
	conf string
	cmd  *exec.Cmd
	done chan struct{}
}

// Start configures and starts smbd on a free port of 127.0.0.1 with one
// share, ShareName, on an empty directory, and User with a random
// password. Each of global is one more line of the configuration's
// [global] section ("server min protocol = SMB3_11"). It skips (or fails,
// in CI) without root or smbd, and stops the server when the test ends.
func Start(t testing.TB, global ...string) *Server {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "smbd", "smbpasswd")
	work := t.TempDir()
	s := &Server{t: t, work: work, Dir: filepath.Join(work, "share"), conf: filepath.Join(work, "smb.conf")}
	for _, d := range []string{"share", "private", "lock", "state", "cache", "pid", "ncalrpc", "log"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.Port = testenv.FreePort(t)
	conf := fmt.Sprintf(`[global]
  smb ports = %d
  interfaces = 127.0.0.1
  bind interfaces only = yes
  private dir = %[2]s/private
  lock directory = %[2]s/lock
  state directory = %[2]s/state
  cache directory = %[2]s/cache
  pid directory = %[2]s/pid
  ncalrpc dir = %[2]s/ncalrpc
  log file = %[2]s/log/smbd.log
  max log size = 0
  passdb backend = tdbsam
  server role = standalone server
  server min protocol = SMB2
  disable netbios = yes
  map to guest = never
  load printers = no
  printcap name = /dev/null
  disable spoolss = yes
%[5]s
[%[3]s]
  path = %[2]s/share
  read only = no
  valid users = %[4]s
`, s.Port, work, ShareName, User, strings.Join(global, "\n"))
	if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var rnd [9]byte
	_, _ = rand.Read(rnd[:])
	s.Password = "Pw-" + hex.EncodeToString(rnd[:])
	s.PasswordFile = filepath.Join(work, "password")
	if err := os.WriteFile(s.PasswordFile, []byte(s.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("smbpasswd", "-c", s.conf, "-a", "-s", User)
	cmd.Stdin = strings.NewReader(s.Password + "\n" + s.Password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("smbpasswd -a %s: %v\n%s", User, err, out)
	}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// URL returns the location of directory sub (empty for the share's root)
// on the server.
func (s *Server) URL(sub string) *url.URL {
	p := "/" + ShareName
	if sub != "" {
		p += "/" + sub
	}
	return &url.URL{Scheme: "smb", User: url.User(User), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), Path: p}
}

func (s *Server) start() {
	s.t.Helper()
	log, err := os.OpenFile(filepath.Join(s.work, "log", "stdout.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer log.Close()
	s.cmd = exec.Command("smbd", "--foreground", "--no-process-group", "--debug-stdout", "-d", "1", "-s", s.conf)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	// Its own process group: Stop kills the children serving connections
	// too, as a crashed server would lose them.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start smbd: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.cmd, s.done)
	if err := testenv.WaitListening(s.Port, s.done); err != nil {
		s.Stop()
		s.t.Fatalf("smbd: %v\n%s", err, s.Log())
	}
}

// Stop kills the server and every process serving a connection, as a crash
// or a power cut would. Calling it twice is harmless.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

// Restart starts the server again on the same port, share and accounts.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Log returns the end of the server's log, for failure messages.
func (s *Server) Log() string {
	var b strings.Builder
	for _, f := range []string{"stdout.log", "smbd.log"} {
		data, _ := os.ReadFile(filepath.Join(s.work, "log", f))
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		b.Write(data)
	}
	return b.String()
}
