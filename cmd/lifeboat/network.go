package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/lifeboat/lifeboat/rescue/network"
)

func init() {
	register("network", command{summary: "show network interfaces, or bring the network up (DHCP or static)", run: runNetwork})
}

func runNetwork(ctx context.Context, env *cmdEnv, args []string) error {
	sub := "status"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "status":
		return networkStatus(ctx, env, args)
	case "up":
		return networkUp(ctx, env, args)
	}
	networkUsage(env.stderr)
	return &exitError{code: 2, err: fmt.Errorf("unknown subcommand %q: want status or up", sub)}
}

func networkUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: lifeboat network [status] [--json]")
	fmt.Fprintln(w, "       lifeboat network up [--iface NAME]... [--static ADDR/PREFIX [--gateway IP] [--dns IP,...]]")
	fmt.Fprintln(w, "                           [--timeout 30s] [--carrier-timeout 10s] [--no-ipv6] [--json]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "status lists the network interfaces with their link state and addresses.")
	fmt.Fprintln(w, "up configures every wired interface (or those named) with DHCPv4 and IPv6")
	fmt.Fprintln(w, "autoconfiguration (router advertisements, DHCPv6), or one with a static address,")
	fmt.Fprintln(w, "and writes the DNS servers to /etc/resolv.conf.")
	fmt.Fprintln(w)
}

func networkStatus(ctx context.Context, env *cmdEnv, args []string) error {
	fl := flag.NewFlagSet("lifeboat network status", flag.ContinueOnError)
	fl.SetOutput(env.stderr)
	asJSON := fl.Bool("json", false, "print a JSON array of interfaces")
	fl.Usage = func() { networkUsage(env.stderr); fl.PrintDefaults() }
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	list, err := network.Interfaces(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeNetworkJSON(env.stdout, list, "interface list")
	}
	if len(list) == 0 {
		fmt.Fprintln(env.stdout, "no network interfaces")
		return nil
	}
	for i := range list {
		printInterface(env.stdout, &list[i])
	}
	return nil
}

// printInterface writes one interface: a line of identity and link state,
// then one line per address.
func printInterface(w io.Writer, ifc *network.Interface) {
	parts := []string{ifc.Kind}
	if ifc.Driver != "" {
		parts = append(parts, "driver "+ifc.Driver)
	}
	if ifc.MAC != "" {
		parts = append(parts, "mac "+ifc.MAC)
	}
	switch {
	case !ifc.Up:
		parts = append(parts, "down")
	case ifc.Carrier:
		parts = append(parts, "up, carrier")
	default:
		parts = append(parts, "up, no carrier")
	}
	if ifc.SpeedMbps > 0 {
		parts = append(parts, fmt.Sprintf("%d Mb/s", ifc.SpeedMbps))
	}
	fmt.Fprintf(w, "%s: %s\n", ifc.Name, strings.Join(parts, ", "))
	for _, a := range ifc.Addresses {
		fam := "inet"
		if a.Prefix.Addr().Is6() {
			fam = "inet6"
		}
		var notes []string
		if a.Scope != "global" {
			notes = append(notes, a.Scope)
		}
		if a.Dynamic {
			notes = append(notes, "autoconfigured")
		}
		if a.Tentative {
			notes = append(notes, "tentative")
		}
		line := fmt.Sprintf("  %s %s", fam, a.Prefix)
		if len(notes) > 0 {
			line += " (" + strings.Join(notes, ", ") + ")"
		}
		fmt.Fprintln(w, line)
	}
}

func networkUp(ctx context.Context, env *cmdEnv, args []string) error {
	fl := flag.NewFlagSet("lifeboat network up", flag.ContinueOnError)
	fl.SetOutput(env.stderr)
	var ifaces stringList
	fl.Var(&ifaces, "iface", "configure this interface `NAME` (repeatable; default: every wired one)")
	static := fl.String("static", "", "static `ADDR/PREFIX` (192.168.1.20/24) instead of DHCP; needs one interface")
	gateway := fl.String("gateway", "", "default router `IP` for --static")
	dns := fl.String("dns", "", "DNS servers for --static, `IP,IP`")
	timeout := fl.Duration("timeout", network.DefaultDHCPTimeout, "how long to wait for a DHCP lease")
	carrier := fl.Duration("carrier-timeout", network.DefaultCarrierTimeout, "how long to wait for a link's carrier")
	noIPv6 := fl.Bool("no-ipv6", false, "turn IPv6 off on the interfaces (no SLAAC, no DHCPv6)")
	asJSON := fl.Bool("json", false, "print the result as JSON")
	fl.Usage = func() { networkUsage(env.stderr); fl.PrintDefaults() }
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	cfg := network.Config{Interfaces: ifaces, DHCPTimeout: *timeout, CarrierTimeout: *carrier, NoIPv6: *noIPv6, Log: env.stderr}
	if *timeout <= 0 || *carrier <= 0 {
		return &exitError{code: 2, err: errors.New("--timeout and --carrier-timeout must be positive")}
	}
	if *static != "" {
		s, err := network.ParseStatic(*static, *gateway, *dns)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		cfg.Static = s
	} else if *gateway != "" || *dns != "" {
		return &exitError{code: 2, err: errors.New("--gateway and --dns go with --static (DHCP gives them otherwise)")}
	}
	res, err := network.Up(ctx, cfg)
	if res != nil {
		if *asJSON {
			if jerr := writeNetworkJSON(env.stdout, res, "network result"); jerr != nil && err == nil {
				err = jerr
			}
		} else {
			res.WriteSummary(env.stdout)
		}
	}
	if err != nil && ctx.Err() != nil {
		return &exitError{code: 130, err: err}
	}
	return err
}

func writeNetworkJSON(w io.Writer, v any, what string) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write %s: %w", what, err)
	}
	return nil
}
