package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Defaults for Config's zero values.
const (
	DefaultCarrierTimeout = 10 * time.Second
	DefaultDHCPTimeout    = 30 * time.Second
	DefaultIPv6Timeout    = 8 * time.Second
	DefaultResolvConf     = "/etc/resolv.conf"
)

// Config says which interfaces Up configures and how. The zero value asks
// DHCPv4 and IPv6 autoconfiguration on every wired interface that has a
// carrier.
type Config struct {
	// Interfaces names the interfaces to configure; empty means every
	// wired one (Interface.Wired).
	Interfaces []string
	// CarrierTimeout is how long to wait for each link's carrier after
	// setting it up.
	CarrierTimeout time.Duration
	// DHCPTimeout bounds the DHCPv4 exchange on each interface.
	// Discover is sent again after 4 s, then every 8 s, until an offer
	// comes or the timeout ends.
	DHCPTimeout time.Duration
	// NoIPv6 turns IPv6 off on the configured interfaces
	// (disable_ipv6), so the kernel makes no SLAAC address either.
	NoIPv6 bool
	// IPv6Timeout bounds the wait for a router advertisement's
	// addresses and the DHCPv6 exchange, which run beside DHCPv4.
	IPv6Timeout time.Duration
	// Static, when set, is configured instead of DHCPv4; it needs exactly
	// one interface.
	Static *Static
	// ResolvConf is the file the DNS servers are written to;
	// DefaultResolvConf when empty. It is left alone when no server is
	// known.
	ResolvConf string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Static is a fixed configuration for one interface.
type Static struct {
	// Address is the interface's address and prefix length
	// (192.168.1.20/24 or 2001:db8::20/64).
	Address netip.Prefix `json:"address"`
	// Gateway is the default router; invalid (zero) for none.
	Gateway netip.Addr `json:"gateway,omitzero"`
	// DNS are the name servers written to resolv.conf.
	DNS []netip.Addr `json:"dns,omitempty"`
}

// Result is what Up configured.
type Result struct {
	// Links holds one entry per interface Up tried, in the order chosen.
	Links []*LinkResult `json:"links"`
	// DNS are the name servers written to ResolvConf (empty when none was
	// known and the file was left alone).
	DNS        []netip.Addr `json:"dns"`
	Search     []string     `json:"search,omitempty"`
	ResolvConf string       `json:"resolv_conf,omitempty"`

	cfg Config
}

// LinkResult is what happened on one interface.
type LinkResult struct {
	Interface string `json:"interface"`
	Index     int    `json:"index"`
	MAC       string `json:"mac,omitempty"`
	Driver    string `json:"driver,omitempty"`
	Carrier   bool   `json:"carrier"`
	// IPv4 is the DHCPv4 lease or the static configuration; nil when
	// neither was configured.
	IPv4 *Lease `json:"ipv4,omitempty"`
	// IPv6 are the IPv6 addresses beyond the link (global, or QEMU's
	// site-local) on the interface after autoconfiguration (SLAAC,
	// DHCPv6 and static).
	IPv6 []netip.Prefix `json:"ipv6,omitempty"`
	// DHCPv6 is the DHCPv6 lease, nil when no server answered.
	DHCPv6 *Lease `json:"dhcpv6,omitempty"`
	// Notes are what went wrong without making the interface unusable
	// (no DHCPv6 server, no router advertisement).
	Notes []string `json:"notes,omitempty"`
	// Error is why the interface could not be configured; empty on
	// success. Err is the same as an error value for errors.Is.
	Error string `json:"error,omitempty"`
	Err   error  `json:"-"`

	lease4 *dhcp4Lease
}

// Configured reports whether the interface got an address to talk from: an
// IPv4 lease or static address, or a global IPv6 address.
func (l *LinkResult) Configured() bool {
	return l.Err == nil && (l.IPv4 != nil || len(l.IPv6) > 0)
}

// Lease is an address given by a DHCP server, or a static one.
type Lease struct {
	// Source is "dhcpv4", "dhcpv6" or "static".
	Source  string       `json:"source"`
	Address netip.Prefix `json:"address"`
	Router  netip.Addr   `json:"router,omitzero"`
	DNS     []netip.Addr `json:"dns,omitempty"`
	Search  []string     `json:"search,omitempty"`
	// Server is the DHCP server that gave the lease.
	Server netip.Addr `json:"server,omitzero"`
	// Duration is the lease time; 0 for static addresses. JSON carries
	// it in nanoseconds, as encoding/json does for time.Duration.
	Duration time.Duration `json:"duration,omitempty"`
	// Obtained is when the server acknowledged the lease.
	Obtained time.Time `json:"obtained,omitzero"`
}

// Up configures the network as cfg says and returns what it did. It fails
// when no interface could be configured; the Result then still says what
// was tried on each one, and the error joins each interface's error
// (ErrNoInterface, ErrNoCarrier, ErrNoLease, wrapped).
func Up(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	all, err := Interfaces(ctx)
	if err != nil {
		return nil, err
	}
	targets, err := choose(all, cfg.Interfaces)
	if err != nil {
		return nil, err
	}
	if cfg.Static != nil && len(targets) != 1 {
		names := make([]string, len(targets))
		for i, t := range targets {
			names[i] = t.Name
		}
		return nil, fmt.Errorf("configure static address %s: name one interface (found %s)", cfg.Static.Address, strings.Join(names, ", "))
	}
	res := &Result{cfg: cfg}
	var wg sync.WaitGroup
	for i := range targets {
		lr := &LinkResult{Interface: targets[i].Name, Index: targets[i].Index, MAC: targets[i].MAC, Driver: targets[i].Driver}
		res.Links = append(res.Links, lr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := upLink(ctx, cfg, lr); err != nil {
				lr.Err = fmt.Errorf("%s: %w", lr.Interface, err)
				lr.Error = lr.Err.Error()
			}
		}()
	}
	wg.Wait()
	var errs []error
	ok := false
	for _, lr := range res.Links {
		if lr.Configured() {
			ok = true
		} else if lr.Err != nil {
			errs = append(errs, lr.Err)
		} else {
			lr.Err = fmt.Errorf("%s: no address configured", lr.Interface)
			lr.Error = lr.Err.Error()
			errs = append(errs, lr.Err)
		}
	}
	if !ok {
		return res, fmt.Errorf("bring network up: %w", errors.Join(errs...))
	}
	if err := res.writeResolvConf(); err != nil {
		return res, err
	}
	return res, nil
}

func (c Config) withDefaults() Config {
	if c.CarrierTimeout <= 0 {
		c.CarrierTimeout = DefaultCarrierTimeout
	}
	if c.DHCPTimeout <= 0 {
		c.DHCPTimeout = DefaultDHCPTimeout
	}
	if c.IPv6Timeout <= 0 {
		c.IPv6Timeout = DefaultIPv6Timeout
	}
	if c.ResolvConf == "" {
		c.ResolvConf = DefaultResolvConf
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	if _, ok := c.Log.(*lockedWriter); !ok {
		c.Log = &lockedWriter{w: c.Log}
	}
	return c
}

// lockedWriter serialises the progress lines of the interfaces configured
// side by side.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// choose picks the interfaces to configure: the named ones, which must
// exist (any kind: the user knows best), or every wired one.
func choose(all []Interface, names []string) ([]Interface, error) {
	if len(names) == 0 {
		var out []Interface
		for _, i := range all {
			if i.Wired() {
				out = append(out, i)
			}
		}
		if len(out) == 0 {
			var seen []string
			for _, i := range all {
				seen = append(seen, i.Name+" ("+i.Kind+")")
			}
			return nil, fmt.Errorf("find network interfaces: %w (found: %s)", ErrNoInterface, orNone(strings.Join(seen, ", ")))
		}
		return out, nil
	}
	var out []Interface
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		found := false
		for _, i := range all {
			if i.Name == n {
				out = append(out, i)
				found = true
				break
			}
		}
		if !found {
			var have []string
			for _, i := range all {
				have = append(have, i.Name)
			}
			return nil, fmt.Errorf("find network interface %s: %w by that name (have: %s)", n, ErrNoInterface, orNone(strings.Join(have, ", ")))
		}
	}
	return out, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// upLink configures one interface: link up, carrier, then IPv4 (DHCP or
// static) and IPv6 side by side.
func upLink(ctx context.Context, cfg Config, lr *LinkResult) error {
	link, err := netlink.LinkByIndex(lr.Index)
	if err != nil {
		return fmt.Errorf("find link: %w", err)
	}
	if err := setIPv6(lr.Interface, !cfg.NoIPv6); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set link up: %w", err)
	}
	fmt.Fprintf(cfg.Log, "%s: link up, waiting for carrier\n", lr.Interface)
	if err := waitCarrier(ctx, lr.Index, cfg.CarrierTimeout); err != nil {
		return err
	}
	lr.Carrier = true
	fmt.Fprintf(cfg.Log, "%s: carrier\n", lr.Interface)

	var wg sync.WaitGroup
	var v6 ipv6Result
	if !cfg.NoIPv6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v6 = autoconf6(ctx, cfg, link)
		}()
	}
	var err4 error
	if cfg.Static != nil {
		err4 = applyStatic(link, cfg.Static)
		if err4 == nil {
			lr.IPv4 = &Lease{Source: "static", Address: cfg.Static.Address, Router: cfg.Static.Gateway, DNS: cfg.Static.DNS}
		}
	} else {
		var l *dhcp4Lease
		l, err4 = dhcp4(ctx, cfg, lr.Interface, link)
		if err4 == nil {
			lr.lease4 = l
			lr.IPv4 = &l.Lease
		}
	}
	wg.Wait()
	lr.DHCPv6 = v6.lease
	lr.Notes = append(lr.Notes, v6.notes...)
	lr.IPv6 = globalIPv6(link)
	if err4 != nil {
		if len(lr.IPv6) > 0 {
			// An IPv6-only network: usable, but say why IPv4 is missing.
			lr.Notes = append(lr.Notes, "IPv4: "+err4.Error())
			return nil
		}
		return err4
	}
	return nil
}

// waitCarrier polls the link until the kernel reports a carrier; polling
// every 100 ms costs nothing next to autonegotiation's seconds.
func waitCarrier(ctx context.Context, index int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		l, err := netlink.LinkByIndex(index)
		if err != nil {
			return fmt.Errorf("read link state: %w", err)
		}
		if l.Attrs().RawFlags&unix.IFF_LOWER_UP != 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %v", ErrNoCarrier, timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for carrier: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// applyStatic configures a fixed address, its default route and nothing
// else; DNS goes to resolv.conf with the other interfaces' servers.
func applyStatic(link netlink.Link, s *Static) error {
	if err := setAddress(link, s.Address); err != nil {
		return err
	}
	if s.Gateway.IsValid() {
		if err := setDefaultRoute(link, s.Address, s.Gateway); err != nil {
			return err
		}
	}
	return nil
}

// setAddress puts p on the link. For IPv4 it removes the link's other
// global addresses, left by an earlier lease or static configuration, so
// the machine answers from one address; IPv6 interfaces hold several
// addresses by design, and those are kept.
func setAddress(link netlink.Link, p netip.Prefix) error {
	a := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is4() {
		a.Broadcast = broadcast(p)
	}
	if err := netlink.AddrReplace(link, a); err != nil {
		return fmt.Errorf("add address %s: %w", p, err)
	}
	if p.Addr().Is6() {
		return nil
	}
	old, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, o := range old {
		op, ok := prefixOf(o.IPNet)
		if !ok || op == p || o.Scope != int(netlink.SCOPE_UNIVERSE) {
			continue
		}
		if err := netlink.AddrDel(link, &o); err != nil {
			return fmt.Errorf("remove old address %s: %w", op, err)
		}
	}
	return nil
}

// setDefaultRoute replaces the link's default route. Each link gets its
// own metric so two wired networks can both have one; a router outside
// the address's prefix (some providers hand out /32 leases) is declared
// on-link.
func setDefaultRoute(link netlink.Link, addr netip.Prefix, gw netip.Addr) error {
	bits := gw.BitLen()
	r := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       ipNet(netip.PrefixFrom(netip.IPv6Unspecified(), 0)),
		Gw:        gw.AsSlice(),
		Priority:  100 + link.Attrs().Index,
	}
	if bits == 32 {
		r.Dst = ipNet(netip.PrefixFrom(netip.IPv4Unspecified(), 0))
	}
	if !addr.Masked().Contains(gw) {
		r.Flags = int(netlink.FLAG_ONLINK)
	}
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("set default route via %s: %w", gw, err)
	}
	return nil
}

func broadcast(p netip.Prefix) []byte {
	a := p.Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	return a[:]
}

// globalIPv6 lists the link's usable IPv6 addresses beyond the link.
func globalIPv6(link netlink.Link) []netip.Prefix {
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, a := range addrs {
		p, ok := prefixOf(a.IPNet)
		if !ok || !routable(a) || a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			continue
		}
		out = append(out, p)
	}
	return out
}
