package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

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
	fl.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: lifeboat tui [--disk FILE]... [--system-disks] [--monochrome] [--log FILE]")
		fmt.Fprintln(env.stderr)
		fmt.Fprintln(env.stderr, "Runs the console interface: disks, clone, backup, restore and images.")
		fmt.Fprintln(env.stderr)
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return &exitError{code: 2, err: err}
	}
	if fl.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("unexpected argument %q", fl.Arg(0))}
	}
	if *tty == "" && !env.interactive {
		return &exitError{code: 2, err: errors.New("no terminal: run it on a terminal or give --tty DEVICE")}
	}
	return ui.Run(ctx, ui.Options{
		TTY: *tty, DiskFiles: files, NoSystemDisks: len(files) > 0 && !*system, Version: version,
		Monochrome: *mono, Mouse: *mouse, LogPath: *logPath, MountDir: *mountDir, Quit: true,
	})
}
