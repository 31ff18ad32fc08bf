package ui

import (
	"fmt"
	"strings"

	"github.com/rivo/tview"

	"github.com/lifeboat/lifeboat/rescue/network"
)

// networkScreen shows the network interfaces and brings the wired ones up
// with DHCP (and IPv6 autoconfiguration) on request, for repositories on
// network shares.
func (a *app) networkScreen() {
	var list []network.Interface
	a.async("Reading the network interfaces", func() (err error) {
		list, err = network.Interfaces(a.ctx)
		return err
	}, func(err error) {
		if err != nil {
			a.failed("Network", err, a.home)
			return
		}
		view := a.newText(interfacesText(list))
		view.SetBorder(true).SetTitle(" Network interfaces ")
		f := tview.NewForm()
		a.styleForm(f)
		f.AddButton("Bring up wired interfaces (DHCP)", func() { a.networkUp() })
		f.AddButton("Back", a.home)
		f.SetCancelFunc(a.home)
		box := tview.NewFlex().SetDirection(tview.FlexRow).AddItem(view, 0, 1, false).AddItem(f, 3, 0, true)
		a.show("Network", box, "←→/Tab choose  Enter press  Esc back")
		a.tv.SetFocus(f)
	})
}

// interfacesText lists each interface: kind, link state, addresses.
func interfacesText(list []network.Interface) string {
	if len(list) == 0 {
		return "No network interfaces found."
	}
	var b strings.Builder
	for _, it := range list {
		link := "no cable/link"
		if it.Carrier {
			link = "link up"
			if it.SpeedMbps > 0 {
				link += fmt.Sprintf(" %d Mb/s", it.SpeedMbps)
			}
		}
		if !it.Up {
			link = "down"
		}
		fmt.Fprintf(&b, "%-10s %-9s %-15s %s", it.Name, it.Kind, link, it.MAC)
		if it.Driver != "" {
			b.WriteString(" " + it.Driver)
		}
		b.WriteString("\n")
		for _, ad := range it.Addresses {
			fmt.Fprintf(&b, "           %s (%s)\n", ad.Prefix, ad.Scope)
		}
	}
	return b.String()
}

// networkUp configures the wired interfaces and says what it got.
func (a *app) networkUp() {
	var res *network.Result
	a.async("Bringing the network up (DHCP can take 30 seconds)", func() (err error) {
		res, err = network.Up(a.ctx, network.Config{})
		return err
	}, func(err error) {
		var b strings.Builder
		if res != nil {
			res.WriteSummary(&b)
		}
		if err != nil {
			a.logf("network up: %v\n%s", err, b.String())
			a.message("Network", fmt.Sprintf("No interface could be configured: %v\n\n%s", err, b.String()), a.networkScreen)
			return
		}
		a.logf("network up:\n%s", b.String())
		a.message("Network", b.String(), a.networkScreen)
	})
}
