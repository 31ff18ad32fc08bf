package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/internal/testenv"
	"github.com/lifeboat/lifeboat/rescue/network"
)

func TestNetworkUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"network", "sideways"}, `unknown subcommand "sideways"`},
		{[]string{"network", "status", "extra"}, "unexpected arguments: extra"},
		{[]string{"network", "up", "--gateway", "10.0.0.1"}, "go with --static"},
		{[]string{"network", "up", "--dns", "10.0.0.1"}, "go with --static"},
		{[]string{"network", "up", "--static", "10.0.0.5"}, "prefix length"},
		{[]string{"network", "up", "--static", "10.0.0.5/24", "--gateway", "2001:db8::1"}, "same IP version"},
		{[]string{"network", "up", "--timeout", "soon"}, "invalid value"},
		{[]string{"network", "up", "--timeout", "0s"}, "must be positive"},
	} {
		code, _, stderr := runCapture(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.msg) {
			t.Errorf("lifeboat %s: exit %d, stderr %q; want 2 and %q", strings.Join(c.args, " "), code, stderr, c.msg)
		}
	}
	if code, _, stderr := runCapture(t, "network", "up", "-h"); code != 0 || !strings.Contains(stderr, "--no-ipv6") {
		t.Errorf("network up -h: exit %d, stderr %q", code, stderr)
	}
}

// netLab is a client network namespace wired by a veth pair to a server
// namespace running dnsmasq as DHCPv4 server.
type netLab struct {
	client, server string
	resolv         string // the client's /etc/resolv.conf, as ip netns exec shows it
}

const cliIf = "lbcli0"

func newNetLab(t *testing.T) *netLab {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip", "dnsmasq")
	l := &netLab{client: fmt.Sprintf("lbcli-c%d", os.Getpid()), server: fmt.Sprintf("lbcli-s%d", os.Getpid())}
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{l.client, l.server} {
		sh("netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	// ip netns exec bind-mounts /etc/netns/NAME/resolv.conf over
	// /etc/resolv.conf: the command's DNS servers land there, not in the
	// host's file.
	etc := filepath.Join("/etc/netns", l.client)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	l.resolv = filepath.Join(etc, "resolv.conf")
	if err := os.WriteFile(l.resolv, []byte("# before\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sh("-n", l.client, "link", "add", cliIf, "type", "veth", "peer", "name", "lbsrv0", "netns", l.server)
	sh("-n", l.server, "addr", "add", "10.81.0.1/24", "dev", "lbsrv0")
	sh("-n", l.server, "link", "set", "lbsrv0", "up")

	bin, _ := testenv.LookPath("dnsmasq")
	cmd := exec.Command("ip", "netns", "exec", l.server, bin, "--keep-in-foreground", "--conf-file=/dev/null",
		"--log-facility=-", "--port=0", "--user=root", "--group=root", "--interface=lbsrv0", "--bind-interfaces",
		"--pid-file=", "--dhcp-leasefile="+filepath.Join(t.TempDir(), "leases"),
		"--dhcp-range=10.81.0.100,10.81.0.100,255.255.255.0,1h",
		"--dhcp-option=option:router,10.81.0.1", "--dhcp-option=option:dns-server,10.81.0.53")
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		var log []string
		for sc.Scan() {
			log = append(log, sc.Text())
			if strings.Contains(sc.Text(), "DHCP, IP range") {
				ready <- ""
				for sc.Scan() {
				}
				return
			}
		}
		ready <- strings.Join(log, "\n")
	}()
	select {
	case failed := <-ready:
		if failed != "" {
			t.Fatalf("dnsmasq did not start:\n%s", failed)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("dnsmasq did not start")
	}
	return l
}

// lifeboat runs this test binary as lifeboat in the client namespace.
func (l *netLab) lifeboat(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.client, os.Args[0]}, args...)...)
	cmd.Env = append(os.Environ(), "LIFEBOAT_TEST_AS_MAIN=1")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run lifeboat %s: %v", strings.Join(args, " "), err)
	}
	return code, stdout.String(), stderr.String()
}

// TestNetworkUpAndStatus runs "lifeboat network up" and "status" in a
// network namespace against dnsmasq.
func TestNetworkUpAndStatus(t *testing.T) {
	l := newNetLab(t)
	code, stdout, stderr := l.lifeboat(t, "network", "status")
	if code != 0 || !regexp.MustCompile(`(?m)^`+cliIf+`: ethernet, driver veth, mac [0-9a-f:]{17}, down$`).MatchString(stdout) {
		t.Errorf("status before up: exit %d\n%s%s", code, stdout, stderr)
	}

	code, stdout, stderr = l.lifeboat(t, "network", "up", "--iface", cliIf, "--no-ipv6", "--timeout", "20s")
	if code != 0 {
		t.Fatalf("network up: exit %d\n%s%s", code, stdout, stderr)
	}
	want := cliIf + ": address 10.81.0.100/24 (DHCPv4 lease from 10.81.0.1 for 1h0m0s), router 10.81.0.1, dns 10.81.0.53\n" +
		"dns 10.81.0.53 written to /etc/resolv.conf\n"
	if stdout != want {
		t.Errorf("network up printed:\n%s\nwant:\n%s\nstderr:\n%s", stdout, want, stderr)
	}
	if b, _ := os.ReadFile(l.resolv); string(b) != "# written by lifeboat network\nnameserver 10.81.0.53\n" {
		t.Errorf("the namespace's resolv.conf holds %q", b)
	}

	code, stdout, stderr = l.lifeboat(t, "network", "status", "--json")
	var list []network.Interface
	if err := json.Unmarshal([]byte(stdout), &list); code != 0 || err != nil {
		t.Fatalf("status --json: exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
	found := false
	for _, i := range list {
		if i.Name == cliIf {
			found = true
			if !i.Up || !i.Carrier || i.Kind != network.KindEthernet || len(i.Addresses) != 1 || i.Addresses[0].Prefix.String() != "10.81.0.100/24" {
				t.Errorf("status --json for %s: %+v", cliIf, i)
			}
		}
	}
	if !found {
		t.Errorf("status --json lacks %s:\n%s", cliIf, stdout)
	}

	// The other end unplugged: a clear error, exit 1.
	if out, err := exec.Command("ip", "-n", l.server, "link", "set", "lbsrv0", "down").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	code, stdout, stderr = l.lifeboat(t, "network", "up", "--carrier-timeout", "1s", "--json")
	var res network.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || code != 1 || !strings.Contains(stderr, "lifeboat network: bring network up: "+cliIf+": no carrier (is a cable plugged in?) after 1s") {
		t.Errorf("up without carrier: exit %d, %v\nstdout:\n%s\nstderr:\n%s", code, err, stdout, stderr)
	}
	if len(res.Links) != 1 || res.Links[0].Carrier || res.Links[0].Error == "" {
		t.Errorf("up without carrier: result %+v", res.Links)
	}
}
