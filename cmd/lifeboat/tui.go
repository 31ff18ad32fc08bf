package main

import (
	"os"
	"os/exec"

	"context"
	"errors"
	"flag"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/lifeboat/lifeboat/ui"
)

func init() {
	register("tui", command{summary: "the console interface (over --disk image files to try it)", run: runTUI})
}

func runTUI(ctx context.Context, env *cmdEnv, args []string) error {
	fl := flag.NewFlagSet("lifeboat tui", flag.ContinueOnError)
	fl.SetOutput(env.stderr)
	var files stringList
	fl.Var(&files, "disk", "show this disk-image `FILE` (repeatable); with --disk only the files are shown unless --system-disks")
	system := fl.Bool("system-disks", false, "also show this machine's disks when --disk is given")
	mono := fl.Bool("monochrome", false, "draw without colour (chosen by itself on terminals without colours)")
	mouse := fl.Bool("mouse", false, "enable the mouse")
	logPath := fl.String("log", "", "append the session's log to this file (default /run/lifeboat/lifeboat-ui.log)")
	mountDir := fl.String("mount-dir", "", "mount repository file systems under this directory (default /run/lifeboat)")
	tty := fl.String("tty", "", "run on this terminal device instead of the current one")
	appliance := fl.Bool("appliance", false, "the appliance's console: offer the shell, reboot and power off, and no quit")
	fl.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: lifeboat tui [--disk FILE]... [--system-disks] [--monochrome] [--log FILE]")
		fmt.Fprintln(env.stderr)
		fmt.Fprintln(env.stderr, "Runs the console interface: disks, clone, backup, restore and images.")
		fmt.Fprintln(env.stderr)
		fl.PrintDefaults()
	}
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	if *tty == "" && !env.interactive {
		return &exitError{code: 2, err: errors.New("no terminal: run it on a terminal or give --tty DEVICE")}
	}
	opts := ui.Options{
		TTY: *tty, DiskFiles: files, NoSystemDisks: len(files) > 0 && !*system, Version: version,
		Monochrome: *mono, Mouse: *mouse, LogPath: *logPath, MountDir: *mountDir, Quit: !*appliance,
	}
	if *appliance {
		opts.Shell = func(ctx context.Context) error { return consoleShell(ctx, *tty) }
		opts.Reboot = func(context.Context) error { return endMachine(unix.LINUX_REBOOT_CMD_RESTART) }
		opts.PowerOff = func(context.Context) error { return endMachine(unix.LINUX_REBOOT_CMD_POWER_OFF) }
	}
	return ui.Run(ctx, opts)
}

// consoleShell runs the appliance's shell on the UI's terminal until the
// user types exit.
func consoleShell(ctx context.Context, tty string) error {
	in, out := os.Stdin, os.Stdout
	if tty != "" {
		f, err := os.OpenFile(tty, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("open %s for the shell: %w", tty, err)
		}
		defer f.Close()
		in, out = f, f
	}
	shell := applianceShell()
	if shell == "" {
		return errors.New("no shell: neither /bin/defaultsh nor /bin/sh exists")
	}
	fmt.Fprintln(out, "\r\nLifeboat shell. Type exit to return to the console interface.\r")
	cmd := exec.CommandContext(ctx, shell)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, out, out
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil // the shell's own status is the user's business
		}
		return fmt.Errorf("run %s: %w", shell, err)
	}
	return nil
}

// endMachine flushes the disks and reboots or powers off: the appliance
// holds nothing else worth a clean shutdown.
func endMachine(how int) error {
	unix.Sync()
	if err := unix.Reboot(how); err != nil {
		return fmt.Errorf("reboot(2): %w", err)
	}
	return nil
}
