package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6/nclient6"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ipv6Result is what IPv6 autoconfiguration found on one link.
type ipv6Result struct {
	lease *Lease
	notes []string
}

// setIPv6 turns IPv6 on or off for one interface. The kernel does SLAAC
// itself (accept_ra and autoconf are on by default when forwarding is
// off); a kernel without IPv6 has no such file, which only matters when
// IPv6 is wanted.
func setIPv6(name string, on bool) error {
	p := filepath.Join("/proc/sys/net/ipv6/conf", name, "disable_ipv6")
	v := "1\n"
	if on {
		v = "0\n"
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("set IPv6 on %s: %w", name, err)
	}
	defer f.Close()
	if _, err := f.WriteString(v); err != nil {
		return fmt.Errorf("set IPv6 on %s: %w", name, err)
	}
	return nil
}

// autoconf6 waits for the addresses router advertisements give (the
// kernel configures them) and asks DHCPv6, both within cfg.IPv6Timeout.
// Neither is an error when missing: many networks have no IPv6.
func autoconf6(ctx context.Context, cfg Config, link netlink.Link) ipv6Result {
	name := link.Attrs().Name
	ctx, cancel := context.WithTimeout(ctx, cfg.IPv6Timeout)
	defer cancel()
	var res ipv6Result
	// A DHCPv6 client sends from its link-local address, which is
	// usable once duplicate address detection has passed (about a
	// second after the link comes up).
	if err := waitIPv6(ctx, link, func(a netlink.Addr) bool { return a.Scope == int(netlink.SCOPE_LINK) }); err != nil {
		res.notes = append(res.notes, fmt.Sprintf("IPv6: no link-local address within %v", cfg.IPv6Timeout))
		return res
	}
	var wg sync.WaitGroup
	var slaacErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		slaacErr = waitIPv6(ctx, link, func(a netlink.Addr) bool {
			return routable(a) && a.Flags&unix.IFA_F_PERMANENT == 0
		})
	}()
	lease, err := dhcp6(ctx, name)
	if err == nil {
		err = setAddress(link, lease.Address)
	}
	if err == nil {
		// The address is usable once duplicate address detection
		// passes; it gets its own second or two past the timeout.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		want := lease.Address
		err = waitIPv6(dctx, link, func(a netlink.Addr) bool { p, ok := prefixOf(a.IPNet); return ok && p == want })
		cancel()
		if err != nil {
			err = fmt.Errorf("address %s failed duplicate address detection: %w", want, err)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			res.notes = append(res.notes, fmt.Sprintf("DHCPv6: no answer within %v", cfg.IPv6Timeout))
		} else {
			res.notes = append(res.notes, "DHCPv6: "+err.Error())
		}
	} else {
		res.lease = lease
		fmt.Fprintf(cfg.Log, "%s: DHCPv6 lease %s\n", name, lease.Address)
	}
	wg.Wait()
	if slaacErr != nil {
		res.notes = append(res.notes, fmt.Sprintf("IPv6: no router advertisement gave an address within %v", cfg.IPv6Timeout))
	}
	return res
}

// waitIPv6 polls the link's IPv6 addresses until one that match accepts
// has passed duplicate address detection.
func waitIPv6(ctx context.Context, link netlink.Link, match func(netlink.Addr) bool) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
		if err != nil {
			return fmt.Errorf("list IPv6 addresses: %w", err)
		}
		for _, a := range addrs {
			if a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 && match(a) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// dhcp6 asks a DHCPv6 server for an address (rapid commit, or solicit,
// advertise, request, reply).
func dhcp6(ctx context.Context, name string) (*Lease, error) {
	c, err := nclient6.New(name, nclient6.WithTimeout(time.Second), nclient6.WithRetry(10))
	if err != nil {
		return nil, fmt.Errorf("open DHCPv6 client: %w", err)
	}
	defer c.Close()
	reply, err := c.RapidSolicit(ctx)
	if err != nil {
		return nil, err
	}
	if st := reply.Options.Status(); st != nil && st.StatusCode != 0 {
		return nil, fmt.Errorf("server refused: %s", st)
	}
	iana := reply.Options.OneIANA()
	if iana == nil {
		return nil, errors.New("the server gave no address")
	}
	if st := iana.Options.Status(); st != nil && st.StatusCode != 0 {
		return nil, fmt.Errorf("server gave no address: %s", st)
	}
	ia := iana.Options.OneAddress()
	if ia == nil {
		return nil, errors.New("the server gave no address")
	}
	ip, ok := netip.AddrFromSlice(ia.IPv6Addr)
	if !ok || !ip.Is6() || ip.Is4In6() || !usableUnicast(ip) || ip.IsLinkLocalUnicast() {
		return nil, fmt.Errorf("the server gave an unusable address %v", ia.IPv6Addr)
	}
	// The prefix length comes from router advertisements, not DHCPv6:
	// the address alone is configured, as other clients do.
	l := &Lease{Source: "dhcpv6", Address: netip.PrefixFrom(ip, 128), Duration: ia.ValidLifetime, Obtained: time.Now()}
	for _, d := range reply.Options.DNS() {
		if a, ok := netip.AddrFromSlice(d); ok && a.Is6() && usableUnicast(a) && !a.IsLinkLocalUnicast() {
			l.DNS = append(l.DNS, a)
		}
	}
	if s := reply.Options.DomainSearchList(); s != nil {
		l.Search = validDomains(s.Labels)
	}
	return l, nil
}

// routable is true for addresses beyond the link: global ones, and the
// deprecated site-local fec0::/10 that QEMU's user network still
// advertises (the kernel gives those site scope).
func routable(a netlink.Addr) bool {
	return a.Scope == int(netlink.SCOPE_UNIVERSE) || a.Scope == int(netlink.SCOPE_SITE)
}
