package network

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// WriteSummary writes what Up configured, one line per lease or address
// family, so a person (or a test reading a serial console) sees the lease.
func (res *Result) WriteSummary(w io.Writer) {
	for _, lr := range res.Links {
		if lr.IPv4 != nil {
			l := lr.IPv4
			line := fmt.Sprintf("%s: address %s", lr.Interface, l.Address)
			switch l.Source {
			case "dhcpv4":
				line += fmt.Sprintf(" (DHCPv4 lease from %s for %v)", l.Server, l.Duration)
			case "static":
				line += " (static)"
			}
			if l.Router.IsValid() {
				line += ", router " + l.Router.String()
			}
			if len(l.DNS) > 0 {
				line += ", dns " + joinAddrs(l.DNS)
			}
			fmt.Fprintln(w, line)
		}
		if len(lr.IPv6) > 0 {
			var as []string
			for _, p := range lr.IPv6 {
				s := p.String()
				if lr.DHCPv6 != nil && p == lr.DHCPv6.Address {
					s += " (DHCPv6)"
				}
				as = append(as, s)
			}
			fmt.Fprintf(w, "%s: IPv6 %s\n", lr.Interface, strings.Join(as, ", "))
		}
		for _, n := range lr.Notes {
			fmt.Fprintf(w, "%s: note: %s\n", lr.Interface, n)
		}
		if lr.Error != "" {
			fmt.Fprintf(w, "%s: failed: %s\n", lr.Interface, strings.TrimPrefix(lr.Error, lr.Interface+": "))
		}
	}
	if len(res.DNS) > 0 {
		fmt.Fprintf(w, "dns %s written to %s\n", joinAddrs(res.DNS), res.ResolvConf)
	}
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, " ")
}
