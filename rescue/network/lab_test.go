package network

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/internal/testenv"
	"golang.org/x/sys/unix"
)

// innerEnv marks the copy of the test binary that runs in its own network
// and mount namespaces.
const innerEnv = "LIFEBOAT_NETWORK_TEST_NETNS"

// TestMain runs the tests, as root, in a new network namespace of their
// own: Up and Interfaces then see only the test's interfaces, and every
// goroutine (DHCP receive loops, lease renewal) is in that namespace as on
// the appliance, which one thread switched with setns would not give. A
// new mount namespace with its own sysfs shows /sys/class/net for that
// network namespace.
func TestMain(m *testing.M) {
	switch {
	case os.Getenv(innerEnv) == "1":
		if err := privateSysfs(); err != nil {
			fmt.Fprintf(os.Stderr, "network tests: %v\n", err)
			os.Exit(1)
		}
		// Fuzzing workers are children in the same namespaces, where
		// the sysfs is mounted already.
		os.Setenv(innerEnv, "mounted")
		os.Exit(m.Run())
	case os.Geteuid() != 0 || os.Getenv(innerEnv) != "":
		os.Exit(m.Run())
	}
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), innerEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNET | unix.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.Exited() {
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintf(os.Stderr, "network tests: run in a new network namespace: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// privateSysfs mounts a sysfs for this network namespace, without letting
// the mount reach the host's namespace.
func privateSysfs() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
		return fmt.Errorf("mount sysfs: %w", err)
	}
	return nil
}

// Lab interface names: the client end in the test's namespace, the server
// end in a namespace of its own.
const (
	clientIf = "lbc0"
	serverIf = "lbs0"
)

// lab is a wire from the test's namespace to a server namespace.
type lab struct {
	ns  string
	dir string
	dns *dnsmasq
}

var labCount int

// newLab makes the server namespace and the veth pair between it and the
// test's namespace, with serverAddrs on the server's end.
func newLab(t *testing.T, serverAddrs ...string) *lab {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip")
	if os.Getenv(innerEnv) == "" {
		t.Fatal("lab tests must run in the test's own network namespace (TestMain)")
	}
	labCount++
	l := &lab{ns: fmt.Sprintf("lbnet%d-%d", os.Getpid(), labCount), dir: t.TempDir()}
	run(t, "ip", "netns", "add", l.ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.ns).Run() })
	run(t, "ip", "link", "add", clientIf, "type", "veth", "peer", "name", serverIf, "netns", l.ns)
	t.Cleanup(func() { exec.Command("ip", "link", "del", clientIf).Run() })
	run(t, "ip", "-n", l.ns, "link", "set", "lo", "up")
	for _, a := range serverAddrs {
		args := []string{"-n", l.ns, "addr", "add", a, "dev", serverIf}
		if strings.Contains(a, ":") {
			args = append(args, "nodad")
		}
		run(t, "ip", args...)
	}
	run(t, "ip", "-n", l.ns, "link", "set", serverIf, "up")
	return l
}

// setPeer sets the server's end up or down, which is the client's carrier.
func (l *lab) setPeer(t *testing.T, up bool) {
	t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	run(t, "ip", "-n", l.ns, "link", "set", serverIf, state)
}

// dnsmasq is a DHCP and router-advertisement server in the lab.
type dnsmasq struct {
	mu    sync.Mutex
	lines []string
}

func (d *dnsmasq) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.lines, "\n")
}

func (d *dnsmasq) count(s string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, l := range d.lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// serve starts dnsmasq on the server's end with args added to a
// configuration that serves DHCP only (no DNS), logging every exchange.
// It returns once dnsmasq has said it serves its ranges.
func (l *lab) serve(t *testing.T, args ...string) *dnsmasq {
	t.Helper()
	testenv.RequireTools(t, "dnsmasq")
	bin, _ := testenv.LookPath("dnsmasq")
	all := append([]string{"netns", "exec", l.ns, bin, "--keep-in-foreground", "--conf-file=/dev/null",
		"--log-facility=-", "--log-dhcp", "--port=0", "--user=root", "--group=root",
		"--interface=" + serverIf, "--bind-interfaces", "--pid-file=",
		"--dhcp-leasefile=" + filepath.Join(l.dir, "leases")}, args...)
	cmd := exec.Command("ip", all...)
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	d := &dnsmasq{}
	ready := make(chan bool, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		said := false
		for sc.Scan() {
			d.mu.Lock()
			d.lines = append(d.lines, sc.Text())
			d.mu.Unlock()
			if !said && strings.Contains(sc.Text(), "DHCP, IP range") {
				said = true
				ready <- true
			}
		}
		if !said {
			ready <- false
		}
		io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq log:\n%s", d.log())
		}
	})
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("dnsmasq exited: %s", d.log())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("dnsmasq did not start: %s", d.log())
	}
	l.dns = d
	return d
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// testCtx bounds a test's network operations; the timeouts in Config are
// what the tests exercise, this only stops a hung test.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
