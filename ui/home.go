package ui

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"

	"github.com/lifeboat/lifeboat/engine/disks"
)

// action is one entry of the home screen.
type action struct {
	name, about string
	run         func()
}

// scan lists the disks as `lifeboat disks` shows them, used space included.
func (a *app) scan(ctx context.Context) ([]disks.Disk, error) {
	if !a.opts.NoSystemDisks {
		return disks.Scan(ctx, disks.Options{Files: a.opts.DiskFiles, Usage: true})
	}
	var out []disks.Disk
	for _, f := range a.opts.DiskFiles {
		d, err := disks.Inspect(ctx, f, disks.Options{Usage: true})
		if err != nil {
			return nil, err
		}
		out = append(out, *d)
	}
	return out, nil
}

// home shows the disks and the actions. The disk list is read again each
// time, so what a clone or a mount changed shows as soon as it is read;
// an action chosen before that starts once it is.
func (a *app) home() {
	a.runCleanups()
	a.pending = nil
	actions := a.actions()
	menu := a.newList().ShowSecondaryText(false)
	for _, ac := range actions {
		menu.AddItem(ac.name, ac.about, 0, func() {
			if a.scanning {
				a.pending = ac.run
				a.help.SetText(" Reading the disks … " + ac.name + " starts once they are read")
				return
			}
			ac.run()
		})
	}
	about := tview.NewTextView().SetWordWrap(true)
	about.SetTextStyle(a.theme.normal)
	menu.SetChangedFunc(func(i int, _, secondary string, _ rune) { about.SetText(secondary) })
	about.SetText(actions[0].about)

	diskView := a.newText("Reading the disks …")
	diskView.SetBorder(true).SetTitle(" Disks ")
	a.rescan(diskView)
	left := tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(menu, len(actions), 0, true).
		AddItem(about, 0, 1, false)
	left.SetBorder(true).SetTitle(" Actions ")
	screen := tview.NewFlex().
		AddItem(left, 22, 0, true).
		AddItem(diskView, 0, 1, false)

	help := "↑↓ choose  Enter start  Tab disks/actions  r rescan"
	if a.opts.Quit {
		help += "  q quit"
	}
	screen.SetInputCapture(func(ev *tcell.EventKey) *tcell.EventKey {
		switch {
		case ev.Key() == tcell.KeyTab || ev.Key() == tcell.KeyBacktab:
			if menu.HasFocus() {
				a.tv.SetFocus(diskView)
			} else {
				a.tv.SetFocus(menu)
			}
			return nil
		case ev.Key() == tcell.KeyRune && ev.Rune() == 'r':
			a.rescan(diskView)
			return nil
		case ev.Key() == tcell.KeyRune && ev.Rune() == 'q' && a.opts.Quit:
			a.tv.Stop()
			return nil
		}
		return ev
	})
	a.show("Home", screen, help)
	a.tv.SetFocus(menu)
}

// rescan reads the disks off the interface's goroutine and shows them in
// view, then starts the action chosen meanwhile, if any. A scan that a
// newer one has overtaken is dropped.
func (a *app) rescan(view *tview.TextView) {
	a.scanSeq++
	seq := a.scanSeq
	a.scanning = true
	go func() {
		if a.beforeScan != nil {
			a.beforeScan()
		}
		list, err := a.scan(a.ctx)
		a.tv.QueueUpdateDraw(func() {
			if seq != a.scanSeq {
				return
			}
			a.diskList, a.scanErr, a.scanning = list, err, false
			view.SetText(a.diskText())
			if run := a.pending; run != nil {
				a.pending = nil
				run()
			}
		})
	}()
}

// diskText is the home screen's disk pane.
func (a *app) diskText() string {
	if a.scanErr != nil {
		return "Could not list the disks: " + a.scanErr.Error()
	}
	if len(a.diskList) == 0 {
		return "No disks found. Connect a disk and press r."
	}
	var b strings.Builder
	for i := range a.diskList {
		d := &a.diskList[i]
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(diskTitle(d) + "\n")
		if !d.IsFile && (d.Model != "" || d.Serial != "") {
			fmt.Fprintf(&b, "  model %q serial %q\n", strings.TrimSpace(d.Model), d.Serial)
		}
		table := d.Table
		if d.TableError != "" {
			table += ": " + d.TableError
		}
		fmt.Fprintf(&b, "  table %s, %d partition(s)\n", table, len(d.Partitions))
		for _, p := range d.Partitions {
			b.WriteString(partLine(p) + "\n")
		}
		for _, u := range d.InUse() {
			b.WriteString("  in use: " + u + "\n")
		}
	}
	return b.String()
}

// actions lists what the home screen offers. An action whose means are
// missing says so when chosen instead of failing halfway.
func (a *app) actions() []action {
	list := []action{
		{"Disk Clone", "Copy a whole disk onto another disk: partition table, boot code and every file system's used blocks.", a.cloneWizard(false, false)},
		{"Partition Clone", "Copy one partition onto another disk or into an existing partition.", a.cloneWizard(true, false)},
		{"System Clone", "Copy only the partitions the installed operating systems need, packed from the start of the target: a smaller disk will do.", a.cloneWizard(false, true)},
		{"Backup", "Save a disk or a partition as a snapshot in an image repository.", a.backupWizard},
		{"Restore", "Write a snapshot from a repository back onto a disk.", a.restoreWizard},
		{"Images", "List the snapshots of a repository, verify them, forget one.", a.imagesScreen},
		{"Network", "Show the network interfaces, for repositories on network shares.", a.networkScreen},
		{"Shell", "A command shell for experts. Type exit to come back.", a.shell},
		{"Log", "What this session did: plans, results and errors.", a.logScreen},
		{"Reboot", "Restart the machine.", a.power("Reboot", a.opts.Reboot)},
		{"Power off", "Turn the machine off.", a.power("Power off", a.opts.PowerOff)},
	}
	if a.opts.Quit {
		list = append(list, action{"Quit", "Leave Lifeboat.", a.tv.Stop})
	}
	return list
}

func (a *app) shell() {
	if a.opts.Shell == nil {
		a.message("Shell", "No shell is offered here: this session runs as a program on another system, whose own shell you can use.", nil)
		return
	}
	var err error
	a.tv.Suspend(func() { err = a.opts.Shell(a.ctx) })
	if err != nil {
		a.failed("Shell", err, nil)
	}
}

func (a *app) power(what string, f func(ctx context.Context) error) func() {
	return func() {
		if f == nil {
			a.message(what, what+" is not offered here: this session runs as a program on another system.", nil)
			return
		}
		a.dialog(what, what+" now? Anything not saved is lost.", []string{"Cancel", what}, func(i int) {
			if i != 1 {
				return
			}
			a.logf("%s chosen", what)
			if err := f(a.ctx); err != nil {
				a.failed(what, err, nil)
			}
		})
	}
}

// logScreen shows the session's log, newest at the bottom.
func (a *app) logScreen() {
	b, err := os.ReadFile(a.logPath)
	text := string(b)
	if err != nil {
		text = fmt.Sprintf("Could not read the log %s: %v", a.logPath, err)
	}
	tv := a.newText(text)
	tv.SetBorder(true).SetTitle(" " + a.logPath + " ")
	tv.ScrollToEnd()
	tv.SetDoneFunc(func(tcell.Key) { a.home() })
	a.show("Log", tv, "↑↓ PgUp PgDn scroll  Esc back")
}
