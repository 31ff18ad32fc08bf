package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// dhcp4Lease is a DHCPv4 lease with what renewing it needs.
type dhcp4Lease struct {
	Lease
	raw *nclient4.Lease
	// renewAt is T1, when the lease should be renewed; expires is the end
	// of the lease.
	renewAt, expires time.Time
}

// Discover waits: the first answer is awaited 4 s, as RFC 2131 suggests
// (servers such as dnsmasq first ping the address they mean to offer, for
// up to 3 s), later ones twice as long as the one before but at most 8 s,
// so a switch port that starts forwarding late (spanning tree's 30 s) is
// heard from soon after.
const (
	firstDHCPWait = 4 * time.Second
	maxDHCPWait   = 8 * time.Second
)

// dhcp4 gets a lease on the interface and configures it.
func dhcp4(ctx context.Context, cfg Config, name string, link netlink.Link) (*dhcp4Lease, error) {
	l, err := requestLease(ctx, cfg, name)
	if err != nil {
		return nil, err
	}
	if err := applyLease(link, l); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Log, "%s: DHCPv4 lease %s from %s\n", name, l.Address, l.Server)
	return l, nil
}

// requestLease runs Discover, Offer, Request, Ack until a server answers
// or cfg.DHCPTimeout ends.
func requestLease(ctx context.Context, cfg Config, name string) (*dhcp4Lease, error) {
	tctx, cancel := context.WithTimeout(ctx, cfg.DHCPTimeout)
	defer cancel()
	wait := firstDHCPWait
	for {
		fmt.Fprintf(cfg.Log, "%s: DHCPv4 discover\n", name)
		raw, err := tryLease(tctx, name, wait)
		if err == nil {
			return leaseFrom(raw)
		}
		var nak *nclient4.ErrNak
		switch {
		case errors.As(err, &nak):
			return nil, fmt.Errorf("DHCPv4 server %s refused the offered address %s: %w", nak.Offer.ServerIdentifier(), nak.Offer.YourIPAddr, err)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("DHCPv4: %w", ctx.Err())
		case tctx.Err() != nil:
			return nil, fmt.Errorf("%w within %v", ErrNoLease, cfg.DHCPTimeout)
		case !errors.Is(err, nclient4.ErrNoResponse):
			return nil, fmt.Errorf("DHCPv4: %w", err)
		}
		wait = min(2*wait, maxDHCPWait)
	}
}

// tryLease makes one DHCPv4 exchange waiting up to wait for each answer.
// A new client (and raw socket) per try keeps the waits in our hands.
func tryLease(ctx context.Context, name string, wait time.Duration) (*nclient4.Lease, error) {
	c, err := nclient4.New(name, nclient4.WithTimeout(wait), nclient4.WithRetry(1))
	if err != nil {
		return nil, fmt.Errorf("open DHCPv4 client: %w", err)
	}
	defer c.Close()
	return c.Request(ctx, dhcpv4.WithRequestedOptions(dhcpv4.OptionDNSDomainSearchList))
}

// leaseFrom reads what the Ack gives. The server's answer is checked: a
// lease must name a usable unicast address.
func leaseFrom(raw *nclient4.Lease) (*dhcp4Lease, error) {
	ack := raw.ACK
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr)
	ip = ip.Unmap()
	if !ok || !ip.Is4() || !usableUnicast(ip) {
		return nil, fmt.Errorf("DHCPv4 server %s offered an unusable address %v", ack.ServerIdentifier(), ack.YourIPAddr)
	}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ack.YourIPAddr.DefaultMask()
	}
	ones, bits := mask.Size()
	if bits != 32 {
		return nil, fmt.Errorf("DHCPv4 server %s sent an invalid subnet mask %v", ack.ServerIdentifier(), mask)
	}
	l := &dhcp4Lease{raw: raw}
	l.Source = "dhcpv4"
	l.Address = netip.PrefixFrom(ip, ones)
	for _, r := range ack.Router() {
		if a, ok := addr4(r); ok && a != ip {
			l.Router = a
			break
		}
	}
	for _, d := range ack.DNS() {
		if a, ok := addr4(d); ok {
			l.DNS = append(l.DNS, a)
		}
	}
	if s := ack.DomainSearch(); s != nil {
		l.Search = validDomains(s.Labels)
	}
	if len(l.Search) == 0 && ack.DomainName() != "" {
		l.Search = validDomains([]string{ack.DomainName()})
	}
	if s, ok := addr4(ack.ServerIdentifier()); ok {
		l.Server = s
	}
	// A lease without a time is infinite (RFC 2132 says the option is
	// required in an Ack; a year stands for "never renew").
	l.Duration = ack.IPAddressLeaseTime(365 * 24 * time.Hour)
	l.Obtained = raw.CreationTime
	t1 := ack.IPAddressRenewalTime(l.Duration / 2)
	if t1 <= 0 || t1 > l.Duration {
		t1 = l.Duration / 2
	}
	l.renewAt = l.Obtained.Add(t1)
	l.expires = l.Obtained.Add(l.Duration)
	return l, nil
}

func addr4(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	a = a.Unmap()
	if !ok || !a.Is4() || !usableUnicast(a) {
		return netip.Addr{}, false
	}
	return a, true
}

// usableUnicast refuses what no host can be given or talk to.
func usableUnicast(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLoopback() &&
		a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// validDomains keeps the names that can go on a resolv.conf search line:
// a server's bytes must not add lines or options to the file.
func validDomains(names []string) []string {
	var out []string
	for _, n := range names {
		n = strings.TrimSuffix(n, ".")
		if n == "" || len(n) > 253 {
			continue
		}
		ok := true
		for _, c := range n {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, n)
		}
	}
	return out
}

// applyLease configures the lease's address and default route.
func applyLease(link netlink.Link, l *dhcp4Lease) error {
	if err := setAddress(link, l.Address); err != nil {
		return err
	}
	if l.Router.IsValid() {
		if err := setDefaultRoute(link, l.Address, l.Router); err != nil {
			return err
		}
	}
	return nil
}

// KeepLeases renews the DHCPv4 leases Up obtained until ctx ends, then
// returns ctx's error. Each lease is renewed from its renewal time (T1,
// half the lease unless the server says otherwise), retried every minute
// or so while it lasts; a lease that expires unrenewed is replaced by a
// new Discover, tried the same way. The address stays configured
// meanwhile. A new lease that changes the address or router is applied;
// resolv.conf is not rewritten. Progress goes to the Config's Log. The
// Result itself is not updated.
func (r *Result) KeepLeases(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, lr := range r.Links {
		if lr.lease4 == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			keepLease(ctx, r.cfg, lr.Interface, lr.Index, lr.lease4)
		}()
	}
	wg.Wait()
	<-ctx.Done()
	return ctx.Err()
}

// keepLease is KeepLeases for one interface.
func keepLease(ctx context.Context, cfg Config, name string, index int, l *dhcp4Lease) {
	next := l.renewAt
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		nl, err := refresh(ctx, cfg, name, index, l)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			left := time.Until(l.expires)
			retry := min(max(left/2, 10*time.Second), time.Minute)
			if left <= 0 {
				retry = time.Minute
			}
			fmt.Fprintf(cfg.Log, "%s: renew DHCPv4 lease %s: %v; again in %v\n", name, l.Address, err, retry)
			next = time.Now().Add(retry)
			continue
		}
		l = nl
		next = l.renewAt
		fmt.Fprintf(cfg.Log, "%s: DHCPv4 lease %s renewed for %v\n", name, l.Address, l.Duration)
	}
}

// refresh renews l while it lasts, or asks for a new lease once it has
// expired, and applies the result.
func refresh(ctx context.Context, cfg Config, name string, index int, l *dhcp4Lease) (*dhcp4Lease, error) {
	link, err := netlink.LinkByIndex(index)
	if err != nil {
		return nil, fmt.Errorf("find link: %w", err)
	}
	if time.Now().After(l.expires) {
		return dhcp4(ctx, cfg, name, link)
	}
	nl, err := renewLease(ctx, cfg, name, l)
	if err != nil {
		return nil, err
	}
	if err := applyLease(link, nl); err != nil {
		return nil, err
	}
	return nl, nil
}

// renewLease sends one renewing Request for l and reads the Ack.
func renewLease(ctx context.Context, cfg Config, name string, l *dhcp4Lease) (*dhcp4Lease, error) {
	tctx, cancel := context.WithTimeout(ctx, cfg.DHCPTimeout)
	defer cancel()
	c, err := nclient4.New(name, nclient4.WithTimeout(maxDHCPWait), nclient4.WithRetry(3))
	if err != nil {
		return nil, fmt.Errorf("open DHCPv4 client: %w", err)
	}
	defer c.Close()
	raw, err := c.Renew(tctx, l.raw, dhcpv4.WithRequestedOptions(dhcpv4.OptionDNSDomainSearchList))
	if err != nil {
		return nil, fmt.Errorf("DHCPv4 renew: %w", err)
	}
	return leaseFrom(raw)
}
