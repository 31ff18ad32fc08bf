package network

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// findIf returns the named interface from a fresh listing.
func findIf(t *testing.T, name string) Interface {
	t.Helper()
	all, err := Interfaces(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range all {
		if i.Name == name {
			return i
		}
	}
	t.Fatalf("no interface %s in %v", name, all)
	return Interface{}
}

func hasAddr(i Interface, p string) bool {
	for _, a := range i.Addresses {
		if a.Prefix.String() == p {
			return true
		}
	}
	return false
}

// defaultRoute returns the gateway of the link's default route of the
// given family.
func defaultRoute(t *testing.T, name string, family int) (netip.Addr, int) {
	t.Helper()
	link, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := netlink.RouteList(link, family)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			ones, _ := func() (int, int) {
				if r.Dst == nil {
					return 0, 0
				}
				return r.Dst.Mask.Size()
			}()
			if ones == 0 && r.Gw != nil {
				gw, _ := netip.AddrFromSlice(r.Gw)
				return gw.Unmap(), r.Priority
			}
		}
	}
	return netip.Addr{}, 0
}

// TestUpDHCP brings the lab's wire up against dnsmasq serving DHCPv4,
// router advertisements (SLAAC) and DHCPv6, then renews the lease and
// watches the carrier follow the server's end.
func TestUpDHCP(t *testing.T) {
	l := newLab(t, "10.77.0.1/24", "fd77::1/64")
	d := l.serve(t,
		"--dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,2m",
		"--dhcp-option=option:router,10.77.0.1",
		"--dhcp-option=option:dns-server,10.77.0.2,10.77.0.3",
		"--dhcp-option=option:domain-search,lab.example",
		"--enable-ra",
		"--dhcp-range=fd77::100,fd77::1ff,slaac,64,2m",
		"--dhcp-option=option6:dns-server,[fd77::53]")
	resolv := filepath.Join(t.TempDir(), "etc", "resolv.conf")
	var log strings.Builder
	res, err := Up(testCtx(t), Config{ResolvConf: resolv, DHCPTimeout: 30 * time.Second, IPv6Timeout: 15 * time.Second, Log: &log})
	if err != nil {
		t.Fatalf("Up: %v\nlog:\n%s", err, log.String())
	}
	t.Logf("log:\n%s", log.String())
	if len(res.Links) != 1 || res.Links[0].Interface != clientIf {
		t.Fatalf("Up configured %+v, want only %s (lo is not wired)", res.Links, clientIf)
	}
	lr := res.Links[0]
	if !lr.Carrier || lr.Err != nil || lr.Driver != "veth" {
		t.Errorf("link result %+v", lr)
	}
	v4 := lr.IPv4
	if v4 == nil {
		t.Fatalf("no IPv4 lease: %+v", lr)
	}
	lo, hi := netip.MustParseAddr("10.77.0.50"), netip.MustParseAddr("10.77.0.60")
	if v4.Source != "dhcpv4" || v4.Address.Bits() != 24 || v4.Address.Addr().Less(lo) || hi.Less(v4.Address.Addr()) {
		t.Errorf("lease address %s from %s, want 10.77.0.50-60/24 from dhcpv4", v4.Address, v4.Source)
	}
	if v4.Router != netip.MustParseAddr("10.77.0.1") || v4.Server != netip.MustParseAddr("10.77.0.1") {
		t.Errorf("lease router %s server %s, want 10.77.0.1 for both", v4.Router, v4.Server)
	}
	if want := []netip.Addr{netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr("10.77.0.3")}; !slices.Equal(v4.DNS, want) {
		t.Errorf("lease DNS %v, want %v", v4.DNS, want)
	}
	if !slices.Equal(v4.Search, []string{"lab.example"}) || v4.Duration != 2*time.Minute {
		t.Errorf("lease search %v duration %v, want [lab.example] and 2m", v4.Search, v4.Duration)
	}
	// dnsmasq agrees: its lease file holds our MAC and address.
	leases, err := os.ReadFile(filepath.Join(l.dir, "leases"))
	if err != nil || !strings.Contains(string(leases), lr.MAC+" "+v4.Address.Addr().String()) {
		t.Errorf("dnsmasq leases %q (%v) lack %s %s", leases, err, lr.MAC, v4.Address.Addr())
	}

	// The kernel holds what Up reported.
	ifc := findIf(t, clientIf)
	if !hasAddr(ifc, v4.Address.String()) {
		t.Errorf("%s has %v, not the lease %s", clientIf, ifc.Addresses, v4.Address)
	}
	if gw, _ := defaultRoute(t, clientIf, netlink.FAMILY_V4); gw != v4.Router {
		t.Errorf("default route via %v, want %s", gw, v4.Router)
	}

	// IPv6: a DHCPv6 address in the range and a SLAAC address in the
	// advertised prefix, both on the interface.
	if lr.DHCPv6 == nil {
		t.Errorf("no DHCPv6 lease; notes %v", lr.Notes)
	} else {
		a := lr.DHCPv6.Address
		if a.Bits() != 128 || a.Addr().Less(netip.MustParseAddr("fd77::100")) || netip.MustParseAddr("fd77::1ff").Less(a.Addr()) {
			t.Errorf("DHCPv6 address %s, want fd77::100-1ff/128", a)
		}
		if !slices.Contains(lr.IPv6, a) || !hasAddr(ifc, a.String()) {
			t.Errorf("DHCPv6 address %s missing from %v / %v", a, lr.IPv6, ifc.Addresses)
		}
	}
	mac, _ := net.ParseMAC(lr.MAC)
	slaac := eui64(netip.MustParsePrefix("fd77::/64"), mac)
	if !slices.Contains(lr.IPv6, slaac) {
		t.Errorf("IPv6 addresses %v lack the SLAAC address %s; notes %v", lr.IPv6, slaac, lr.Notes)
	}

	// resolv.conf: IPv4 servers, then IPv6 ones, and the search list.
	b, err := os.ReadFile(resolv)
	if err != nil {
		t.Fatal(err)
	}
	want := "# written by lifeboat network\nsearch lab.example\nnameserver 10.77.0.2\nnameserver 10.77.0.3\nnameserver fd77::53\n"
	if string(b) != want {
		t.Errorf("resolv.conf:\n%s\nwant:\n%s", b, want)
	}

	// Renewal: the same address comes back, acknowledged again.
	acks := d.count("DHCPACK(" + serverIf + ") " + v4.Address.Addr().String())
	nl, err := refresh(testCtx(t), res.cfg, clientIf, lr.Index, lr.lease4)
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	if nl.Address != v4.Address || !nl.Obtained.After(v4.Obtained) || nl.Duration != 2*time.Minute {
		t.Errorf("renewed lease %s obtained %v for %v; first %s obtained %v", nl.Address, nl.Obtained, nl.Duration, v4.Address, v4.Obtained)
	}
	if got := d.count("DHCPACK(" + serverIf + ") " + v4.Address.Addr().String()); got != acks+1 {
		t.Errorf("dnsmasq acknowledged %d times after renewal, %d before", got, acks)
	}
	// An expired lease is replaced by a new exchange.
	expired := *lr.lease4
	expired.expires = time.Now().Add(-time.Second)
	nl, err = refresh(testCtx(t), res.cfg, clientIf, lr.Index, &expired)
	if err != nil || nl.Address != v4.Address {
		t.Errorf("new lease after expiry: %v, %v", nl, err)
	}

	// The carrier follows the server's end of the wire.
	l.setPeer(t, false)
	if !waitFor(t, func() bool { i := findIf(t, clientIf); return !i.Carrier && i.State != "up" }) {
		t.Errorf("%s still has a carrier with its peer down: %+v", clientIf, findIf(t, clientIf))
	}
	if i := findIf(t, clientIf); !i.Up {
		t.Errorf("%s with its peer down is no longer set up", clientIf)
	}
	l.setPeer(t, true)
	if !waitFor(t, func() bool { return findIf(t, clientIf).Carrier }) {
		t.Errorf("%s has no carrier with its peer up", clientIf)
	}
}

// waitFor polls cond for up to ten seconds: kernel state changes are
// asynchronous.
func waitFor(t *testing.T, cond func() bool) bool {
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// eui64 is the SLAAC address the kernel makes from a MAC (RFC 4291
// appendix A), as addr_gen_mode 0 does.
func eui64(p netip.Prefix, mac net.HardwareAddr) netip.Prefix {
	a := p.Addr().As16()
	a[8], a[9], a[10] = mac[0]^2, mac[1], mac[2]
	a[11], a[12] = 0xff, 0xfe
	a[13], a[14], a[15] = mac[3], mac[4], mac[5]
	return netip.PrefixFrom(netip.AddrFrom16(a), 64)
}

// TestUpStatic configures a fixed address with IPv6 off, over a previous
// address that must go.
func TestUpStatic(t *testing.T) {
	newLab(t, "10.78.0.1/24")
	link, err := netlink.LinkByName(clientIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix("10.99.0.7/16"))}); err != nil {
		t.Fatal(err)
	}
	st, err := ParseStatic("10.78.0.5/24", "10.78.0.1", "10.78.0.53, 2001:db8::53")
	if err != nil {
		t.Fatal(err)
	}
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Up(testCtx(t), Config{Interfaces: []string{clientIf}, Static: st, NoIPv6: true, ResolvConf: resolv})
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	lr := res.Links[0]
	if lr.IPv4 == nil || lr.IPv4.Source != "static" || lr.IPv4.Address.String() != "10.78.0.5/24" || len(lr.IPv6) != 0 || lr.DHCPv6 != nil {
		t.Errorf("result %+v", lr)
	}
	ifc := findIf(t, clientIf)
	if !hasAddr(ifc, "10.78.0.5/24") || hasAddr(ifc, "10.99.0.7/16") {
		t.Errorf("%s addresses %v: want 10.78.0.5/24 in place of 10.99.0.7/16", clientIf, ifc.Addresses)
	}
	for _, a := range ifc.Addresses {
		if a.Prefix.Addr().Is6() {
			t.Errorf("IPv6 address %s with IPv6 off", a.Prefix)
		}
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + clientIf + "/disable_ipv6"); err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Errorf("disable_ipv6 = %q, %v; want 1", b, err)
	}
	if gw, metric := defaultRoute(t, clientIf, netlink.FAMILY_V4); gw != netip.MustParseAddr("10.78.0.1") || metric != 100+ifc.Index {
		t.Errorf("default route via %v metric %d, want 10.78.0.1 metric %d", gw, metric, 100+ifc.Index)
	}
	b, _ := os.ReadFile(resolv)
	if want := "# written by lifeboat network\nnameserver 10.78.0.53\nnameserver 2001:db8::53\n"; string(b) != want {
		t.Errorf("resolv.conf:\n%s\nwant:\n%s", b, want)
	}
	// The kernel can reach the server's end from the static address: a
	// UDP socket connected to it gets the static address as its source.
	c, err := net.Dial("udp4", "10.78.0.1:9")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if src := c.LocalAddr().(*net.UDPAddr).IP.String(); src != "10.78.0.5" {
		t.Errorf("route to 10.78.0.1 leaves from %s, want 10.78.0.5", src)
	}
}

// TestUpNoServer: with nobody answering DHCP, Up fails with ErrNoLease
// after its timeout and leaves resolv.conf alone.
func TestUpNoServer(t *testing.T) {
	newLab(t, "10.79.0.1/24")
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	res, err := Up(testCtx(t), Config{DHCPTimeout: 3 * time.Second, NoIPv6: true, ResolvConf: resolv})
	if !errors.Is(err, ErrNoLease) {
		t.Fatalf("Up: %v, want ErrNoLease", err)
	}
	if !strings.Contains(err.Error(), clientIf+": no DHCP offer within 3s") {
		t.Errorf("error %q does not say which interface and how long", err)
	}
	if len(res.Links) != 1 || res.Links[0].Error == "" || res.Links[0].IPv4 != nil || !res.Links[0].Carrier {
		t.Errorf("result %+v", res.Links)
	}
	if _, err := os.Stat(resolv); !os.IsNotExist(err) {
		t.Errorf("resolv.conf written without a server: %v", err)
	}
}

// TestUpNoCarrier: with the wire's other end down, Up fails with
// ErrNoCarrier.
func TestUpNoCarrier(t *testing.T) {
	l := newLab(t)
	l.setPeer(t, false)
	_, err := Up(testCtx(t), Config{CarrierTimeout: time.Second, NoIPv6: true, ResolvConf: filepath.Join(t.TempDir(), "r")})
	if !errors.Is(err, ErrNoCarrier) || !strings.Contains(err.Error(), clientIf) {
		t.Fatalf("Up: %v, want ErrNoCarrier naming %s", err, clientIf)
	}
	if i := findIf(t, clientIf); !i.Up || i.Carrier {
		t.Errorf("%s: up %v carrier %v, want set up without carrier", clientIf, i.Up, i.Carrier)
	}
}

// TestUpNoInterface: a name that does not exist, and a namespace with no
// wired interface, give ErrNoInterface.
func TestUpNoInterface(t *testing.T) {
	newLab(t)
	_, err := Up(testCtx(t), Config{Interfaces: []string{"nosuch0"}})
	if !errors.Is(err, ErrNoInterface) || !strings.Contains(err.Error(), "nosuch0") || !strings.Contains(err.Error(), clientIf) {
		t.Errorf("Up(nosuch0): %v, want ErrNoInterface naming nosuch0 and listing %s", err, clientIf)
	}
	run(t, "ip", "link", "del", clientIf)
	_, err = Up(testCtx(t), Config{})
	if !errors.Is(err, ErrNoInterface) || !strings.Contains(err.Error(), "lo (loopback)") {
		t.Errorf("Up with only lo: %v, want ErrNoInterface listing lo", err)
	}
}

// TestUpStaticNeedsOneInterface: a static address on "every wired
// interface" is refused when there are several.
func TestUpStaticNeedsOneInterface(t *testing.T) {
	newLab(t)
	run(t, "ip", "link", "add", "lbx0", "type", "veth", "peer", "name", "lbx1")
	t.Cleanup(func() { run(t, "ip", "link", "del", "lbx0") })
	st, _ := ParseStatic("10.80.0.2/24", "", "")
	_, err := Up(testCtx(t), Config{Static: st})
	if err == nil || !strings.Contains(err.Error(), "name one interface") || !strings.Contains(err.Error(), "lbx1") {
		t.Errorf("Up: %v, want a refusal listing the interfaces", err)
	}
}

// TestInterfaces describes the lab's interface and the loopback.
func TestInterfaces(t *testing.T) {
	newLab(t)
	lo := findIf(t, "lo")
	if lo.Kind != KindLoopback || lo.Wired() {
		t.Errorf("lo: %+v", lo)
	}
	c := findIf(t, clientIf)
	if c.Kind != KindEthernet || !c.Wired() || c.Driver != "veth" || c.Up || c.Carrier || c.MTU != 1500 {
		t.Errorf("%s before up: %+v", clientIf, c)
	}
	if _, err := net.ParseMAC(c.MAC); err != nil {
		t.Errorf("%s MAC %q: %v", clientIf, c.MAC, err)
	}
	link, _ := netlink.LinkByName(clientIf)
	if err := netlink.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	// The operational state follows the carrier a moment later (the
	// kernel's link watch runs deferred).
	if !waitFor(t, func() bool { i := findIf(t, clientIf); return i.Carrier && i.State == "up" }) {
		t.Fatalf("no carrier on %s: %+v", clientIf, findIf(t, clientIf))
	}
	// veth reports 10 Gb/s.
	if c := findIf(t, clientIf); !c.Up || c.State != "up" || c.SpeedMbps != 10000 {
		t.Errorf("%s after up: %+v", clientIf, c)
	}
	run(t, "ip", "link", "add", "lbd0", "type", "ifb")
	t.Cleanup(func() { run(t, "ip", "link", "del", "lbd0") })
	if d := findIf(t, "lbd0"); d.Kind != KindVirtual || d.Wired() || d.MAC == "" {
		t.Errorf("ifb: %+v", d)
	}
}
