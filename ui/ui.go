// Package ui is Lifeboat's console interface: a home screen with the disks
// and the actions, wizards for clone, backup and restore that end in a plan
// and a typed confirmation, and a progress screen that polls the engine's
// counters. It builds on the engine packages only; the screen is injected
// (a tcell.SimulationScreen in tests, a console or serial line on the
// appliance) so every flow can be driven without a terminal.
package ui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"

	"github.com/lifeboat/lifeboat/engine/blockdev"
	"github.com/lifeboat/lifeboat/engine/clone"
	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/ptable"
)

// Options says where the interface runs and what it may offer.
type Options struct {
	// Screen is the screen to draw on. When nil, TTY is opened, or the
	// process's own terminal when TTY is empty too.
	Screen tcell.Screen
	// TTY is a terminal device to run on (/dev/tty1, /dev/ttyS0) when
	// Screen is nil. Its type comes from $TERM.
	TTY string
	// DiskFiles are disk-image files shown beside the machine's disks, as
	// `lifeboat disks --disk` takes them.
	DiskFiles []string
	// NoSystemDisks leaves the machine's own disks out, so only DiskFiles
	// are shown (tests, and trying the interface on a workstation).
	NoSystemDisks bool
	// Version is shown in the title bar.
	Version string
	// Monochrome draws without colour; focus and selection stay visible in
	// reverse video. It is also chosen when the terminal has fewer than 8
	// colours (TERM=vt100, NO_COLOR).
	Monochrome bool
	// Mouse enables the mouse where the terminal has one; every action
	// also has a key.
	Mouse bool
	// LogPath is the file the interface appends its log to: every plan,
	// result and error. Empty means /run/lifeboat/lifeboat-ui.log when
	// /run/lifeboat can be created, else a file in the temporary directory.
	LogPath string
	// MountDir is where a repository's file system is mounted when it is
	// chosen (MountDir/repo-N); empty means /run/lifeboat.
	MountDir string
	// Shell, Reboot and PowerOff are offered as actions when set. Shell
	// runs with the screen suspended; Reboot and PowerOff are asked about
	// first.
	Shell, Reboot, PowerOff func(ctx context.Context) error
	// Quit offers a Quit action (and the q key) that makes Run return.
	Quit bool
}

// Run shows the interface until ctx ends or the user quits.
func Run(ctx context.Context, opts Options) error {
	screen := opts.Screen
	if screen == nil {
		var err error
		screen, err = openScreen(opts.TTY)
		if err != nil {
			return err
		}
	}
	a, err := newApp(ctx, opts, screen)
	if err != nil {
		return err
	}
	defer a.close()
	stop := context.AfterFunc(ctx, a.tv.Stop)
	defer stop()
	if err := a.tv.Run(); err != nil {
		return fmt.Errorf("run the console interface: %w", err)
	}
	return nil
}

// openScreen opens the terminal at tty, or the process's terminal.
func openScreen(tty string) (tcell.Screen, error) {
	if tty == "" {
		s, err := tcell.NewScreen()
		if err != nil {
			return nil, fmt.Errorf("open the terminal: %w", err)
		}
		return s, nil
	}
	t, err := tcell.NewDevTtyFromDev(tty)
	if err != nil {
		return nil, fmt.Errorf("open terminal %s: %w", tty, err)
	}
	s, err := tcell.NewTerminfoScreenFromTty(t)
	if err != nil {
		return nil, fmt.Errorf("open terminal %s (TERM=%s): %w", tty, os.Getenv("TERM"), err)
	}
	return s, nil
}

// app is one running interface.
type app struct {
	ctx   context.Context
	opts  Options
	tv    *tview.Application
	pages *tview.Pages
	title *tview.TextView
	help  *tview.TextView
	body  *tview.Pages
	theme theme

	logMu   sync.Mutex
	logPath string

	// diskList is the last scan, shown on the home screen. A scan runs
	// off the interface's goroutine (reading every file system's
	// allocation map takes seconds on large disks); scanSeq tells the
	// newest one, and an action chosen while it runs waits in pending.
	diskList []disks.Disk
	scanErr  error
	scanning bool
	scanSeq  int
	pending  func()
	// cleanups run when the user goes home: unmount a repository's file
	// system, close a repository.
	cleanups []func()
	// mountSeq numbers the mount points under MountDir.
	mountSeq int
	// screenName is the body's current page; screenSeq numbers them.
	screenName string
	screenSeq  int
	// jobs counts running jobs: Run returns only after they stop.
	jobs sync.WaitGroup

	// beforeScan, when set (tests), runs at the start of each disk scan,
	// off the interface's goroutine: it lets a test hold a scan.
	beforeScan func()
	// sourceHook, when set (tests), replaces opening a clone's source: it
	// lets a test hold a copy in the middle to cancel it.
	sourceHook func(ctx context.Context, d *disks.Disk) (blockdev.Device, error)
}

// theme holds the styles of one colour mode.
type theme struct {
	mono                      bool
	normal, focus, field, bar tcell.Style
	warn, bad, good           tcell.Style
}

func newTheme(mono bool) theme {
	if mono {
		d := tcell.StyleDefault
		return theme{mono: true, normal: d, focus: d.Reverse(true), field: d.Underline(true), bar: d.Reverse(true),
			warn: d.Bold(true), bad: d.Bold(true), good: d.Bold(true)}
	}
	d := tcell.StyleDefault.Background(tcell.ColorBlack).Foreground(tcell.ColorWhite)
	return theme{normal: d, focus: d.Reverse(true), field: tcell.StyleDefault.Background(tcell.ColorNavy).Foreground(tcell.ColorWhite),
		bar:  tcell.StyleDefault.Background(tcell.ColorTeal).Foreground(tcell.ColorBlack),
		warn: d.Foreground(tcell.ColorYellow).Bold(true), bad: d.Foreground(tcell.ColorRed).Bold(true), good: d.Foreground(tcell.ColorGreen).Bold(true)}
}

// apply sets tview's global styles: every primitive created afterwards
// draws in this mode.
func (t theme) apply() {
	if t.mono {
		tview.Styles = tview.Theme{
			PrimitiveBackgroundColor: tcell.ColorDefault, ContrastBackgroundColor: tcell.ColorDefault,
			MoreContrastBackgroundColor: tcell.ColorDefault, BorderColor: tcell.ColorDefault, TitleColor: tcell.ColorDefault,
			GraphicsColor: tcell.ColorDefault, PrimaryTextColor: tcell.ColorDefault, SecondaryTextColor: tcell.ColorDefault,
			TertiaryTextColor: tcell.ColorDefault, InverseTextColor: tcell.ColorDefault, ContrastSecondaryTextColor: tcell.ColorDefault,
		}
		return
	}
	tview.Styles = tview.Theme{
		PrimitiveBackgroundColor: tcell.ColorBlack, ContrastBackgroundColor: tcell.ColorNavy,
		MoreContrastBackgroundColor: tcell.ColorTeal, BorderColor: tcell.ColorWhite, TitleColor: tcell.ColorWhite,
		GraphicsColor: tcell.ColorWhite, PrimaryTextColor: tcell.ColorWhite, SecondaryTextColor: tcell.ColorSilver,
		TertiaryTextColor: tcell.ColorGreen, InverseTextColor: tcell.ColorBlack, ContrastSecondaryTextColor: tcell.ColorWhite,
	}
}

func newApp(ctx context.Context, opts Options, screen tcell.Screen) (*app, error) {
	a := &app{ctx: ctx, opts: opts, tv: tview.NewApplication()}
	// SetScreen initialises the screen; only then does it know its colours.
	a.tv.SetScreen(screen)
	a.tv.EnableMouse(opts.Mouse)
	a.theme = newTheme(opts.Monochrome || screen.Colors() < 8)
	a.theme.apply()
	if err := a.openLog(); err != nil {
		return nil, err
	}

	a.title = tview.NewTextView().SetTextStyle(a.theme.bar)
	a.title.SetBackgroundColor(styleBG(a.theme.bar))
	a.help = tview.NewTextView().SetTextStyle(a.theme.bar)
	a.help.SetBackgroundColor(styleBG(a.theme.bar))
	a.body = tview.NewPages()
	root := tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(a.title, 1, 0, false).
		AddItem(a.body, 0, 1, true).
		AddItem(a.help, 1, 0, false)
	a.pages = tview.NewPages().AddPage("main", root, true, true)
	a.tv.SetRoot(a.pages, true)
	a.tv.SetInputCapture(func(ev *tcell.EventKey) *tcell.EventKey {
		// Ctrl-C would stop tview at once, a copy with it; the progress
		// screen's cancel asks first instead.
		if ev.Key() == tcell.KeyCtrlC {
			return nil
		}
		return ev
	})
	// The home screen comes first, once the interface runs (QueueUpdate
	// waits for that, hence the goroutine): its disk scan starts then,
	// after the caller (a test) has set its hooks.
	go a.tv.QueueUpdateDraw(a.home)
	return a, nil
}

// styleBG returns a style's background colour.
func styleBG(s tcell.Style) tcell.Color {
	_, bg, _ := s.Decompose()
	return bg
}

// close runs the pending cleanups when the interface ends.
func (a *app) close() {
	a.jobs.Wait()
	a.runCleanups()
}

func (a *app) runCleanups() {
	for i := len(a.cleanups) - 1; i >= 0; i-- {
		a.cleanups[i]()
	}
	a.cleanups = nil
}

// openLog picks the log file and writes a first line, so the path shown
// on the summary screens exists.
func (a *app) openLog() error {
	path := a.opts.LogPath
	if path == "" {
		dir := a.mountDir()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			dir = os.TempDir()
		}
		path = filepath.Join(dir, "lifeboat-ui.log")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("open log %s: %w", path, err)
	}
	a.logPath = abs
	return a.logf("console interface started (version %s)", a.version())
}

func (a *app) mountDir() string {
	if a.opts.MountDir != "" {
		return a.opts.MountDir
	}
	return "/run/lifeboat"
}

func (a *app) version() string {
	if a.opts.Version == "" {
		return "dev"
	}
	return a.opts.Version
}

// logf appends one time-stamped entry to the log.
func (a *app) logf(format string, args ...any) error {
	a.logMu.Lock()
	defer a.logMu.Unlock()
	f, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log %s: %w", a.logPath, err)
	}
	msg := fmt.Sprintf(format, args...)
	_, werr := fmt.Fprintf(f, "%s %s\n", time.Now().Format("2006-01-02 15:04:05"), strings.TrimRight(msg, "\n"))
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("write log %s: %w", a.logPath, err)
	}
	return nil
}

// show replaces the body with one screen: its title and its key help.
func (a *app) show(title string, p tview.Primitive, help string) {
	a.title.SetText(" Lifeboat " + a.version() + " - " + title)
	a.help.SetText(" " + help)
	// The new screen goes in before the old one goes out: removing the
	// focused page of an empty Pages would leave the focus on the Pages
	// itself, and keys would go to the wrong place.
	old := a.screenName
	a.screenSeq++
	a.screenName = fmt.Sprintf("screen-%d", a.screenSeq)
	a.body.AddPage(a.screenName, p, true, true)
	if old != "" {
		a.body.RemovePage(old)
	}
	a.tv.SetFocus(p)
}

// dialog shows text over the current screen with buttons; done gets the
// index of the chosen button, or -1 for Esc when cancel is true.
func (a *app) dialog(title, text string, buttons []string, done func(int)) {
	const width = 66
	prev := a.tv.GetFocus()
	tvw := tview.NewTextView().SetText(text).SetWordWrap(true)
	lines := len(tview.WordWrap(text, width-4))
	for _, l := range strings.Split(text, "\n") {
		if l == "" {
			lines++
		}
	}
	lines = min(lines, 17)
	form := tview.NewForm().SetButtonsAlign(tview.AlignCenter)
	a.styleForm(form)
	finish := func(i int) {
		a.pages.RemovePage("dialog")
		if prev != nil {
			a.tv.SetFocus(prev)
		}
		if done != nil {
			done(i)
		}
	}
	for i, b := range buttons {
		form.AddButton(b, func() { finish(i) })
	}
	form.SetCancelFunc(func() { finish(-1) })
	box := tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(tvw, lines, 0, false).
		AddItem(form, 3, 0, true)
	box.SetBorder(true).SetTitle(" " + title + " ")
	outer := tview.NewFlex().
		AddItem(nil, 0, 1, false).
		AddItem(tview.NewFlex().SetDirection(tview.FlexRow).
			AddItem(nil, 0, 1, false).
			AddItem(box, lines+5, 0, true).
			AddItem(nil, 0, 1, false), width, 0, true).
		AddItem(nil, 0, 1, false)
	a.pages.AddPage("dialog", outer, true, true)
	a.tv.SetFocus(form)
	a.help.SetText(" ←→/Tab choose a button  Enter press it  Esc close")
}

// message shows text with one OK button, then calls done.
func (a *app) message(title, text string, done func()) {
	a.dialog(title, text, []string{"OK"}, func(int) {
		if done != nil {
			done()
		}
	})
}

// failed logs err and shows it in words.
func (a *app) failed(what string, err error, done func()) {
	a.logf("%s: %v", what, err)
	a.message(what, explain(err)+"\n\nNothing was written.", done)
}

// explain puts an engine error in words: what stopped the job first, then
// the engine's own detail.
func explain(err error) string {
	var small *ptable.TooSmallError
	var refused *clone.RefusedError
	switch {
	case errors.As(err, &small):
		return fmt.Sprintf("The target is too small: it holds %s, the copy needs at least %s.\n\n%v",
			disks.HumanBytes(small.Have), disks.HumanBytes(small.Need), err)
	case errors.As(err, &refused):
		return "Refused for safety: " + refused.Reason + "."
	}
	return err.Error()
}

func (a *app) styleForm(f *tview.Form) {
	f.SetFieldStyle(a.theme.field)
	f.SetButtonStyle(a.theme.normal.Reverse(false).Bold(true))
	f.SetButtonActivatedStyle(a.theme.focus)
	f.SetLabelColor(tview.Styles.PrimaryTextColor)
}

// newList returns a list styled for this mode: the selected row in reverse
// video, which a monochrome terminal shows too.
func (a *app) newList() *tview.List {
	l := tview.NewList().ShowSecondaryText(true).SetHighlightFullLine(true)
	l.SetSelectedStyle(a.theme.focus)
	l.SetMainTextStyle(a.theme.normal)
	l.SetSecondaryTextStyle(a.theme.normal.Dim(!a.theme.mono))
	l.SetWrapAround(false)
	l.SetUseStyleTags(false, false)
	return l
}

// newText returns a scrollable, word-wrapped text view.
func (a *app) newText(text string) *tview.TextView {
	t := tview.NewTextView().SetText(text).SetWordWrap(true).SetScrollable(true)
	t.SetTextStyle(a.theme.normal)
	return t
}

// async runs work off the interface's goroutine and then done on it, with
// a "working" note meanwhile, so the screen stays responsive.
func (a *app) async(note string, work func() error, done func(err error)) {
	a.help.SetText(" " + note + " …")
	go func() {
		err := work()
		a.tv.QueueUpdateDraw(func() { done(err) })
	}()
}
