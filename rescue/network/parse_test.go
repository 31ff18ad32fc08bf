package network

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

func TestParseStatic(t *testing.T) {
	good := []struct {
		addr, gw, dns string
		want          string
	}{
		{"192.168.1.20/24", "192.168.1.1", "1.1.1.1,9.9.9.9", "192.168.1.20/24 via 192.168.1.1 dns [1.1.1.1 9.9.9.9]"},
		{" 10.0.0.2/8 ", "", "", "10.0.0.2/8 via invalid IP dns []"},
		{"10.0.0.1/31", "10.0.0.0", "2001:db8::1 1.1.1.1", "10.0.0.1/31 via 10.0.0.0 dns [2001:db8::1 1.1.1.1]"},
		{"2001:db8::20/64", "2001:db8::1", "", "2001:db8::20/64 via 2001:db8::1 dns []"},
		// A router outside the prefix is configured on-link.
		{"203.0.113.5/32", "203.0.113.1", "", "203.0.113.5/32 via 203.0.113.1 dns []"},
	}
	for _, g := range good {
		s, err := ParseStatic(g.addr, g.gw, g.dns)
		if err != nil {
			t.Errorf("ParseStatic(%q, %q, %q): %v", g.addr, g.gw, g.dns, err)
			continue
		}
		got := s.Address.String() + " via " + s.Gateway.String() + " dns [" + strings.Join(strs(s.DNS), " ") + "]"
		if got != g.want {
			t.Errorf("ParseStatic(%q, %q, %q) = %s, want %s", g.addr, g.gw, g.dns, got, g.want)
		}
	}
	bad := []struct{ addr, gw, dns, msg string }{
		{"192.168.1.20", "", "", "prefix length"},
		{"192.168.1.20/33", "", "", "static address"},
		{"192.168.1.0/24", "", "", "network's own address"},
		{"192.168.1.255/24", "", "", "broadcast address"},
		{"0.0.0.0/0", "", "", "not an address"},
		{"127.0.0.1/8", "", "", "not an address"},
		{"224.0.0.1/4", "", "", "not an address"},
		{"fe80::1/64", "", "", "not an address"},
		{"192.168.1.20/24", "2001:db8::1", "", "same IP version"},
		{"192.168.1.20/24", "192.168.1.20", "", "not a router"},
		{"192.168.1.20/24", "router", "", "gateway"},
		{"2001:db8::20/64", "fe80::1%eth0", "", "zone"},
		{"192.168.1.20/24", "", "1.1.1.1;rm", "DNS server"},
		{"192.168.1.20/24", "", "255.255.255.255", "not a server"},
		{"192.168.1.20/24", "", "1.1.1.1,1.0.0.1,9.9.9.9,8.8.8.8", "at most 3"},
		{strings.Repeat("1", 5000), "", "", "over 4096"},
	}
	for _, b := range bad {
		if _, err := ParseStatic(b.addr, b.gw, b.dns); err == nil || !strings.Contains(err.Error(), b.msg) {
			t.Errorf("ParseStatic(%.40q, %q, %q): %v, want an error saying %q", b.addr, b.gw, b.dns, err, b.msg)
		}
	}
}

func strs(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// FuzzParseStatic: whatever is typed, ParseStatic returns an error or a
// configuration that Up can apply as it is.
func FuzzParseStatic(f *testing.F) {
	f.Add("192.168.1.20/24", "192.168.1.1", "1.1.1.1,9.9.9.9")
	f.Add("2001:db8::20/64", "2001:db8::1", "2001:db8::53")
	f.Add("10.0.0.1/31", "", "")
	f.Add("::ffff:1.2.3.4/120", "::ffff:1.2.3.1", "")
	f.Fuzz(func(t *testing.T, addr, gw, dns string) {
		s, err := ParseStatic(addr, gw, dns)
		if err != nil {
			return
		}
		a := s.Address.Addr()
		if !s.Address.IsValid() || !usableUnicast(a) || a.Zone() != "" || a.Is4In6() {
			t.Fatalf("accepted address %s", s.Address)
		}
		if s.Gateway.IsValid() && (s.Gateway.Is4() != a.Is4() || s.Gateway.Zone() != "" || s.Gateway == a) {
			t.Fatalf("accepted gateway %s for %s", s.Gateway, s.Address)
		}
		if len(s.DNS) > maxNameservers {
			t.Fatalf("accepted %d DNS servers", len(s.DNS))
		}
		for _, d := range s.DNS {
			if !d.IsValid() || d.Zone() != "" || strings.ContainsAny(d.String(), " \n#;") {
				t.Fatalf("DNS server %q would break resolv.conf", d)
			}
		}
	})
}

func TestResolvConf(t *testing.T) {
	got := string(resolvConf([]netip.Addr{netip.MustParseAddr("10.0.2.3"), netip.MustParseAddr("2001:db8::53")}, []string{"a.example", "b.example"}))
	want := "# written by lifeboat network\nsearch a.example b.example\nnameserver 10.0.2.3\nnameserver 2001:db8::53\n"
	if got != want {
		t.Errorf("resolvConf:\n%s\nwant:\n%s", got, want)
	}
	if d := validDomains([]string{"ok.example.", "bad name", "x\noptions ndots:9", "", strings.Repeat("a", 254), "lab_1.example"}); strings.Join(d, ",") != "ok.example,lab_1.example" {
		t.Errorf("validDomains kept %q", d)
	}
}

// ack builds a DHCPv4 Ack as a server would send it.
func ack(t testing.TB, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeAck)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLeaseFrom(t *testing.T) {
	now := time.Now()
	m := ack(t, dhcpv4.WithYourIP(net.IPv4(10, 0, 2, 15)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithRouter(net.IPv4(10, 0, 2, 15), net.IPv4(10, 0, 2, 2)),
		dhcpv4.WithDNS(net.IPv4(10, 0, 2, 3), net.IPv4(0, 0, 0, 0)),
		dhcpv4.WithServerIP(net.IPv4(10, 0, 2, 2)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 2, 2))),
		dhcpv4.WithOption(dhcpv4.OptDomainName("bad domain\nnameserver 6.6.6.6")),
		dhcpv4.WithLeaseTime(3600))
	l, err := leaseFrom(&nclient4.Lease{ACK: m, Offer: m, CreationTime: now})
	if err != nil {
		t.Fatal(err)
	}
	// The router list's first entry is the client itself: skipped.
	if l.Address.String() != "10.0.2.15/24" || l.Router.String() != "10.0.2.2" || l.Server.String() != "10.0.2.2" ||
		strings.Join(strs(l.DNS), ",") != "10.0.2.3" || len(l.Search) != 0 || l.Duration != time.Hour {
		t.Errorf("lease %+v", l.Lease)
	}
	if !l.renewAt.Equal(now.Add(30*time.Minute)) || !l.expires.Equal(now.Add(time.Hour)) {
		t.Errorf("renew at %v, expires %v; obtained %v", l.renewAt, l.expires, now)
	}
	// No mask: the class's; no lease time: a year.
	m = ack(t, dhcpv4.WithYourIP(net.IPv4(172, 16, 1, 2)))
	if l, err := leaseFrom(&nclient4.Lease{ACK: m, Offer: m}); err != nil || l.Address.String() != "172.16.1.2/16" || l.Duration != 365*24*time.Hour {
		t.Errorf("lease without mask or time: %+v, %v", l, err)
	}
	for _, ip := range []net.IP{net.IPv4zero, net.IPv4bcast, net.IPv4(127, 0, 0, 1), net.IPv4(239, 1, 1, 1)} {
		m = ack(t, dhcpv4.WithYourIP(ip))
		if _, err := leaseFrom(&nclient4.Lease{ACK: m, Offer: m}); err == nil || !strings.Contains(err.Error(), "unusable address") {
			t.Errorf("lease of %v: %v, want refused", ip, err)
		}
	}
	m = ack(t, dhcpv4.WithYourIP(net.IPv4(10, 0, 0, 2)), dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionSubnetMask, Value: dhcpv4.OptionGeneric{Data: []byte{255, 0, 255, 0}}}))
	if _, err := leaseFrom(&nclient4.Lease{ACK: m, Offer: m}); err == nil || !strings.Contains(err.Error(), "subnet mask") {
		t.Errorf("non-contiguous mask: %v, want refused", err)
	}
}

// FuzzLeaseFrom feeds arbitrary server replies to leaseFrom: it must not
// panic, and a lease it accepts must be one Up can apply and write to
// resolv.conf safely.
func FuzzLeaseFrom(f *testing.F) {
	f.Add(ack(f, dhcpv4.WithYourIP(net.IPv4(10, 0, 2, 15)), dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithRouter(net.IPv4(10, 0, 2, 2)), dhcpv4.WithDNS(net.IPv4(10, 0, 2, 3)),
		dhcpv4.WithOption(dhcpv4.OptDomainName("example.com")), dhcpv4.WithLeaseTime(86400)).ToBytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		l, err := leaseFrom(&nclient4.Lease{ACK: m, Offer: m, CreationTime: time.Unix(1e9, 0)})
		if err != nil {
			return
		}
		if !l.Address.IsValid() || !l.Address.Addr().Is4() || !usableUnicast(l.Address.Addr()) {
			t.Fatalf("accepted address %s", l.Address)
		}
		if l.renewAt.After(l.expires) || l.Duration < 0 {
			t.Fatalf("renew at %v after expiry %v", l.renewAt, l.expires)
		}
		rc := string(resolvConf(l.DNS, l.Search))
		if n := strings.Count(rc, "\n"); n != 1+len(l.DNS)+min(1, len(l.Search)) {
			t.Fatalf("resolv.conf from lease has %d lines:\n%s", n, rc)
		}
	})
}
