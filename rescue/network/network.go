// Package network brings the appliance's wired network up: it lists the
// network interfaces with their link state and addresses (Interfaces), and
// configures them (Up) with DHCPv4, IPv6 router advertisements and DHCPv6,
// or a static address, then writes the DNS servers to resolv.conf.
//
// Drivers are not loaded here: rescue loads every NIC's module by modalias
// at boot. Links, addresses and routes go through netlink in the calling
// process's network namespace; DHCPv4 uses a raw packet socket, so it works
// on an interface that has no address yet.
//
// Leases are not tied to the process: addresses are configured without a
// lifetime, so they stay after the lease time has passed or the process
// has exited (the appliance lives for hours, a DHCP lease for a day or more
// on most networks). A process that runs longer than its leases, such as a
// rescue job holding a backup open, calls Result.KeepLeases to renew them.
package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Errors Up returns, wrapped with the interface's name; test with
// errors.Is.
var (
	// ErrNoInterface: no wired network interface was found, or a named
	// one does not exist.
	ErrNoInterface = errors.New("no wired network interface")
	// ErrNoCarrier: the link stayed down (no cable, or the switch port
	// is off) for the whole carrier timeout.
	ErrNoCarrier = errors.New("no carrier (is a cable plugged in?)")
	// ErrNoLease: no DHCPv4 server answered within the timeout.
	ErrNoLease = errors.New("no DHCP offer")
)

// Interface kinds.
const (
	KindEthernet = "ethernet" // a wired NIC (or a veth, which behaves as one)
	KindWireless = "wireless"
	KindLoopback = "loopback"
	KindVirtual  = "virtual" // bridges, bonds, tunnels, dummies...
)

// Interface is one network interface as the kernel reports it.
type Interface struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
	MAC   string `json:"mac,omitempty"`
	// Driver is the kernel driver's name (virtio_net, e1000e, r8169),
	// from the ethtool ioctl; empty when the interface has none.
	Driver string `json:"driver,omitempty"`
	// Kind is KindEthernet, KindWireless, KindLoopback or KindVirtual.
	Kind string `json:"kind"`
	// Up is the administrative state (ip link set up).
	Up bool `json:"up"`
	// Carrier is true when the link is physically up (IFF_LOWER_UP).
	Carrier bool `json:"carrier"`
	// State is the kernel's operational state: up, down, dormant,
	// lowerlayerdown, unknown...
	State string `json:"state"`
	// SpeedMbps is the negotiated speed, 0 when unknown or down.
	SpeedMbps int `json:"speed_mbps,omitempty"`
	MTU       int `json:"mtu"`
	// Addresses are every IPv4 and IPv6 address on the interface.
	Addresses []Address `json:"addresses"`
}

// Wired reports whether Up considers the interface by default.
func (i *Interface) Wired() bool { return i.Kind == KindEthernet }

// Address is one address configured on an interface.
type Address struct {
	Prefix netip.Prefix `json:"prefix"`
	// Scope is global, link or host.
	Scope string `json:"scope"`
	// Tentative is true while IPv6 duplicate address detection runs;
	// the address cannot be used yet.
	Tentative bool `json:"tentative,omitempty"`
	// Dynamic is true for an address with a lifetime (SLAAC).
	Dynamic bool `json:"dynamic,omitempty"`
}

// sysClassNet is where the kernel shows each interface's speed and whether
// it is wireless.
const sysClassNet = "/sys/class/net"

// Interfaces lists the network interfaces of the current network namespace,
// sorted by index.
func Interfaces(ctx context.Context) ([]Interface, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	out := make([]Interface, 0, len(links))
	for _, l := range links {
		ifc, err := describe(l)
		if err != nil {
			return nil, err
		}
		out = append(out, ifc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, nil
}

// describe reads one link's state and addresses.
func describe(l netlink.Link) (Interface, error) {
	a := l.Attrs()
	ifc := Interface{
		Name:    a.Name,
		Index:   a.Index,
		MAC:     a.HardwareAddr.String(),
		Kind:    kindOf(l),
		Up:      a.Flags&net.FlagUp != 0,
		Carrier: a.RawFlags&unix.IFF_LOWER_UP != 0,
		State:   a.OperState.String(),
		MTU:     a.MTU,
	}
	ifc.Driver = driverOf(a.Name)
	if ifc.Carrier {
		ifc.SpeedMbps = speedOf(a.Name)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return ifc, fmt.Errorf("list addresses of %s: %w", a.Name, err)
	}
	ifc.Addresses = make([]Address, 0, len(addrs))
	for _, ad := range addrs {
		if p, ok := prefixOf(ad.IPNet); ok {
			ifc.Addresses = append(ifc.Addresses, Address{
				Prefix:    p,
				Scope:     scopeName(ad.Scope),
				Tentative: ad.Flags&unix.IFA_F_TENTATIVE != 0,
				Dynamic:   ad.Flags&unix.IFA_F_PERMANENT == 0 && p.Addr().Is6(),
			})
		}
	}
	return ifc, nil
}

// kindOf sorts a link: netlink names physical NICs "device" (the kernel
// gives them no link kind); veth pairs are wires between namespaces and
// serve as NICs in containers and tests.
func kindOf(l netlink.Link) string {
	a := l.Attrs()
	switch {
	case a.Flags&net.FlagLoopback != 0:
		return KindLoopback
	case a.EncapType != "ether":
		return KindVirtual
	}
	for _, f := range []string{"wireless", "phy80211"} {
		if _, err := os.Stat(filepath.Join(sysClassNet, a.Name, f)); err == nil {
			return KindWireless
		}
	}
	switch l.Type() {
	case "device", "veth":
		return KindEthernet
	}
	return KindVirtual
}

// driverOf asks the driver its name with the ethtool ioctl, which answers
// in the caller's namespace (sysfs shows the namespace it was mounted in).
func driverOf(name string) string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	info, err := unix.IoctlGetEthtoolDrvinfo(fd, name)
	if err != nil {
		return ""
	}
	return unix.ByteSliceToString(info.Driver[:])
}

// speedOf reads the negotiated speed; the file holds -1 or is unreadable
// when the driver does not know.
func speedOf(name string) int {
	b, err := os.ReadFile(filepath.Join(sysClassNet, name, "speed"))
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

func scopeName(s int) string {
	switch netlink.Scope(s) {
	case netlink.SCOPE_UNIVERSE:
		return "global"
	case netlink.SCOPE_LINK:
		return "link"
	case netlink.SCOPE_HOST:
		return "host"
	case netlink.SCOPE_SITE:
		return "site"
	}
	return strconv.Itoa(s)
}

// prefixOf converts a netlink address (IPv4 addresses may come as 16-byte
// slices) to a prefix.
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap()
	ones, bits := n.Mask.Size()
	if bits == 0 || (ip.Is4() && bits != 32) || (ip.Is6() && bits != 128) {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(ip, ones), true
}

// ipNet converts a prefix to the form netlink takes, keeping the host bits.
func ipNet(p netip.Prefix) *net.IPNet {
	bits := p.Addr().BitLen()
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}
