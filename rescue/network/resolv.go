package network

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxNameservers is how many nameserver lines the C library and Go's
// resolver read (MAXNS); more would be ignored.
const maxNameservers = 3

// writeResolvConf writes the name servers and search domains of every
// configured interface, IPv4 servers first, to the configured file. It
// leaves the file alone when no server is known.
func (r *Result) writeResolvConf() error {
	seenDNS := map[netip.Addr]bool{}
	seenDom := map[string]bool{}
	add := func(l *Lease) {
		if l == nil {
			return
		}
		for _, d := range l.DNS {
			if !seenDNS[d] {
				seenDNS[d] = true
				r.DNS = append(r.DNS, d)
			}
		}
		for _, s := range l.Search {
			if !seenDom[s] {
				seenDom[s] = true
				r.Search = append(r.Search, s)
			}
		}
	}
	for _, lr := range r.Links {
		if lr.Configured() {
			add(lr.IPv4)
		}
	}
	for _, lr := range r.Links {
		if lr.Configured() {
			add(lr.DHCPv6)
		}
	}
	if len(r.DNS) > maxNameservers {
		r.DNS = r.DNS[:maxNameservers]
	}
	if len(r.DNS) == 0 {
		return nil
	}
	r.ResolvConf = r.cfg.ResolvConf
	if err := writeFile(r.cfg.ResolvConf, resolvConf(r.DNS, r.Search)); err != nil {
		return fmt.Errorf("write DNS servers to %s: %w", r.cfg.ResolvConf, err)
	}
	fmt.Fprintf(r.cfg.Log, "DNS servers written to %s\n", r.cfg.ResolvConf)
	return nil
}

// resolvConf renders the file.
func resolvConf(dns []netip.Addr, search []string) []byte {
	var b strings.Builder
	b.WriteString("# written by lifeboat network\n")
	if len(search) > 0 {
		b.WriteString("search " + strings.Join(search, " ") + "\n")
	}
	for _, d := range dns {
		b.WriteString("nameserver " + d.String() + "\n")
	}
	return []byte(b.String())
}

// writeFile replaces the file through a temporary file and a rename, so a
// reader never sees half of it. A file that is a mount point (containers
// and "ip netns exec" bind-mount resolv.conf) cannot be renamed over and
// is rewritten in place.
func writeFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".resolv-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	err = os.Rename(tmp.Name(), path)
	if errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.EXDEV) {
		return os.WriteFile(path, data, 0o644)
	}
	return err
}
