// Package nfstest runs a real NFSv3 server, nfs-ganesha with its VFS
// backend, on loopback for the tests of the NFS backend and of the code
// above it. Ganesha registers its programs with rpcbind and refuses to
// start without one, so Start also runs rpcbind when none is listening on
// port 111 (that port is the portmapper's and cannot be moved). The server
// serves NFS and MOUNT on two free ports of 127.0.0.1 that its URL names,
// so clients need not ask the portmapper; every file
// ganesha writes but its recovery state lives in the test's temporary
// directory.
package nfstest

import (
	"errors"
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
	"time"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// Server is a running ganesha.nfsd.
type Server struct {
	// Dir is the exported directory; its path is also the export's.
	Dir string
	// Port serves NFS and MountPort MOUNT on 127.0.0.1.
	Port, MountPort int

	t      testing.TB
	work   string
	conf   string
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
}

// Start configures and starts ganesha.nfsd exporting an empty directory
// over NFSv3 and TCP, read-write with root not squashed. It skips (or
// fails, in CI) without root, ganesha or rpcbind, and stops the server
// (and rpcbind, when it started one) when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ganesha.nfsd", "rpcbind")
	ensureRpcbind(t)
	work := t.TempDir()
	s := &Server{t: t, work: work, Dir: filepath.Join(work, "export"), conf: filepath.Join(work, "ganesha.conf")}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.Port = testenv.FreePort(t)
	for s.MountPort == 0 || s.MountPort == s.Port {
		s.MountPort = testenv.FreePort(t)
	}
	conf := fmt.Sprintf(`NFS_CORE_PARAM {
  Protocols = 3;
  NFS_Port = %[1]d;
  MNT_Port = %[3]d;
  Bind_addr = 127.0.0.1;
  Enable_NLM = false;
  Enable_RQUOTA = false;
  Enable_UDP = false;
}
NFSV4 { Graceless = true; }
NFS_KRB5 { Active_krb5 = false; }
EXPORT {
  Export_Id = 1;
  Path = %[2]s;
  Pseudo = %[2]s;
  Access_Type = RW;
  Squash = No_Root_Squash;
  Protocols = 3;
  Transports = TCP;
  SecType = sys;
  FSAL { Name = VFS; }
}
`, s.Port, s.Dir, s.MountPort)
	if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// URL returns the location of directory sub (empty for the export's root)
// on the server.
func (s *Server) URL(sub string) *url.URL {
	p := s.Dir
	if sub != "" {
		p += "/" + sub
	}
	return &url.URL{Scheme: "nfs", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), Path: p,
		RawQuery: "mountport=" + strconv.Itoa(s.MountPort)}
}

func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command("ganesha.nfsd", "-F", "-L", filepath.Join(s.work, "ganesha.log"),
		"-f", s.conf, "-p", filepath.Join(s.work, "ganesha.pid"))
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start ganesha.nfsd: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.cmd, s.done)
	if err := s.waitReady(); err != nil {
		s.Stop()
		s.t.Fatalf("ganesha.nfsd: %v\n%s", err, s.Log())
	}
}

// waitReady waits for ganesha to say it serves: it listens on its port
// some time before its programs answer.
func (s *Server) waitReady() error {
	deadline := time.Now().Add(time.Minute)
	log := filepath.Join(s.work, "ganesha.log")
	for {
		data, _ := os.ReadFile(log)
		// Each start appends to the log: count the starts seen so far.
		if strings.Count(string(data), "NFS SERVER INITIALIZED") > s.starts {
			s.starts++
			return testenv.WaitListening(s.Port, s.done)
		}
		select {
		case <-s.done:
			return errors.New("server exited during start")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("server not ready after a minute")
		}
	}
}

// Stop kills the server, as a crash would. Calling it twice is harmless.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

// Restart starts the server again on the same port and directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	// ganesha registers with rpcbind when it starts; the rpcbind it used
	// may have been another test package's, stopped since.
	ensureRpcbind(s.t)
	s.start()
}

// Log returns the end of the server's log without its D-Bus complaints
// (there is no system bus in a test), for failure messages.
func (s *Server) Log() string {
	data, _ := os.ReadFile(filepath.Join(s.work, "ganesha.log"))
	var keep []string
	for l := range strings.SplitSeq(string(data), "\n") {
		if !strings.Contains(l, "DBUS") {
			keep = append(keep, l)
		}
	}
	if len(keep) > 40 {
		keep = keep[len(keep)-40:]
	}
	return strings.Join(keep, "\n")
}

// ensureRpcbind starts rpcbind in the foreground when nothing listens on
// the portmapper's port, and stops it when the test ends. One started by
// someone else (the system's, or a test running beside) is used as is.
func ensureRpcbind(t testing.TB) {
	t.Helper()
	if listening() {
		return
	}
	cmd := exec.Command("rpcbind", "-f", "-w")
	out, err := os.Create(filepath.Join(t.TempDir(), "rpcbind.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start rpcbind: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	if err := testenv.WaitListening(111, done); err != nil {
		// Another test may have started one at the same moment.
		if !listening() {
			t.Fatalf("rpcbind: %v", err)
		}
		return
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
}

func listening() bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:111", time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
