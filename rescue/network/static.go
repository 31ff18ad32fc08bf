package network

import (
	"fmt"
	"net/netip"
	"strings"
)

// maxStaticInput bounds what ParseStatic reads: a few addresses are at
// most a few hundred bytes.
const maxStaticInput = 4096

// ParseStatic reads a static configuration as a person types it (the
// command line's --static, --gateway and --dns, or the console UI's
// fields): address "192.168.1.20/24" or "2001:db8::20/64", gateway
// "192.168.1.1" or empty for none, DNS servers separated by commas or
// spaces, or empty.
func ParseStatic(address, gateway, dns string) (*Static, error) {
	if len(address)+len(gateway)+len(dns) > maxStaticInput {
		return nil, fmt.Errorf("static address: input over %d bytes", maxStaticInput)
	}
	address = strings.TrimSpace(address)
	if !strings.Contains(address, "/") {
		return nil, fmt.Errorf("static address %q: give the prefix length too (192.168.1.20/24)", address)
	}
	p, err := netip.ParsePrefix(address)
	if err != nil {
		return nil, fmt.Errorf("static address %q: %w", address, err)
	}
	a := p.Addr()
	if !usableUnicast(a) || a.IsLinkLocalUnicast() || a.Is4In6() {
		return nil, fmt.Errorf("static address %q: not an address a host can use", address)
	}
	if a.Is4() && p.Bits() < 31 {
		// /31 links (RFC 3021) have no network or broadcast address.
		if a == p.Masked().Addr() {
			return nil, fmt.Errorf("static address %q: that is the network's own address", address)
		}
		if b, _ := netip.AddrFromSlice(broadcast(p)); a == b {
			return nil, fmt.Errorf("static address %q: that is the network's broadcast address", address)
		}
	}
	s := &Static{Address: p}
	if g := strings.TrimSpace(gateway); g != "" {
		gw, err := netip.ParseAddr(g)
		if err != nil {
			return nil, fmt.Errorf("gateway %q: %w", g, err)
		}
		switch {
		case gw.Is4() != a.Is4() || gw.Is4In6():
			return nil, fmt.Errorf("gateway %s: not the same IP version as %s", gw, p)
		case gw.Zone() != "":
			return nil, fmt.Errorf("gateway %s: no zone needed, the interface is known", gw)
		case !usableUnicast(gw) || gw == a:
			return nil, fmt.Errorf("gateway %s: not a router address", gw)
		}
		s.Gateway = gw
	}
	for _, f := range strings.FieldsFunc(dns, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		d, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("DNS server %q: %w", f, err)
		}
		if d.Zone() != "" || d.Is4In6() || !usableUnicast(d) || d.IsLinkLocalUnicast() {
			return nil, fmt.Errorf("DNS server %s: not a server address", d)
		}
		s.DNS = append(s.DNS, d)
	}
	if len(s.DNS) > maxNameservers {
		return nil, fmt.Errorf("DNS servers %s: at most %d are used", dns, maxNameservers)
	}
	return s, nil
}
