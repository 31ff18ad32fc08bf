// Package rescue is the appliance's runtime: what the program started at
// boot owes lifeboat (file systems mounted, drivers loaded for every device,
// consoles found, TERM set), the unattended job runner driven by the kernel
// command line, and power-off. docs/BOOT.md is its contract. The parts that
// need PID 1's powers sit behind System so the rest is tested as a plain
// program.
package rescue

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/lifeboat/lifeboat/rescue/network"
)

// System is what the runtime needs from the kernel.
type System interface {
	// Mount mounts a file system; a target already mounted is not an
	// error.
	Mount(source, target, fstype string) error
	// Inserter loads module files.
	Inserter
	// PowerOff and Reboot flush the disks and end the machine.
	PowerOff() error
	Reboot() error
	// SetHostname names the machine: snapshots and job logs record it.
	SetHostname(name string) error
}

// Config is how Main runs.
type Config struct {
	// Version is printed in LIFEBOAT-READY.
	Version string
	// Root is where /proc, /sys, /dev and /lib/modules are found: "/" on
	// the appliance.
	Root string
	// Sys does the privileged work.
	Sys System
	// Self is the lifeboat executable the job runs as a child.
	Self string
	// Stdout is the fallback output when no console can be opened.
	Stdout io.Writer
	// KernelRelease names the modules directory (uname -r).
	KernelRelease string
	// LogFile receives a copy of the job's output. Its path is given to
	// each command as LIFEBOAT_JOB_LOG, so a command that writes to a
	// repository keeps the log there, next to the images.
	LogFile string
	// FindJob locates lifeboat.job's file; nil means FindJobFile.
	FindJob func(ctx context.Context, root, spec string) (path string, release func(), err error)
	// NetworkUp brings the network up for a job that names a network
	// repository, writing what it did to w, and keeps it up (DHCP leases
	// renewed) until stop is called; nil means BringUpNetwork.
	NetworkUp func(ctx context.Context, w io.Writer) (stop func(), err error)
}

// BringUpNetwork configures every wired interface (DHCPv4, SLAAC and
// DHCPv6) and renews the leases until stop is called.
func BringUpNetwork(ctx context.Context, w io.Writer) (func(), error) {
	res, err := network.Up(ctx, network.Config{Log: w})
	if err != nil {
		return nil, err
	}
	res.WriteSummary(w)
	kctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = res.KeepLeases(kctx)
	}()
	return func() { cancel(); <-done }, nil
}

// JobLogEnv is the environment variable that gives a job's commands the
// path of the job's log file.
const JobLogEnv = "LIFEBOAT_JOB_LOG"

// Result lines the job prints last; tests and people watching a serial
// console wait for them.
const (
	ReadyPrefix = "LIFEBOAT-READY"
	JobPrefix   = "LIFEBOAT-JOB:"
)

// mounts are the file systems lifeboat expects, in order.
var mounts = []struct{ source, target, fstype string }{
	{"proc", "proc", "proc"},
	{"sysfs", "sys", "sysfs"},
	{"devtmpfs", "dev", "devtmpfs"},
	{"devpts", "dev/pts", "devpts"},
	{"tmpfs", "run", "tmpfs"},
	{"tmpfs", "tmp", "tmpfs"},
}

// Main brings the system up and runs what the kernel command line asks.
// It returns the action left to its caller: AfterShell or AfterTUI mean
// "start the shell or the UI"; poweroff and reboot do not return on a real
// system.
func Main(ctx context.Context, cfg Config) (string, error) {
	root := cfg.Root
	var setupErrs []string
	for _, m := range mounts {
		target := filepath.Join(root, m.target)
		if err := os.MkdirAll(target, 0o755); err != nil {
			setupErrs = append(setupErrs, fmt.Sprintf("create %s: %v", target, err))
			continue
		}
		if err := cfg.Sys.Mount(m.source, target, m.fstype); err != nil {
			setupErrs = append(setupErrs, err.Error())
		}
	}
	if os.Getenv("TERM") == "" {
		os.Setenv("TERM", "linux")
	}
	cmdline, _ := readSmall(filepath.Join(root, "proc", "cmdline"), maxCmdline)
	boot, perr := ParseCmdline(string(cmdline))

	out, closeOut := openConsoles(root, boot.Consoles, cfg.Stdout)
	defer closeOut()
	for _, e := range setupErrs {
		fmt.Fprintf(out, "lifeboat: boot: %s\n", e)
	}

	modDir := filepath.Join(root, "lib", "modules", cfg.KernelRelease)
	if ld, err := OpenLoader(modDir, cfg.Sys, io.Discard); err != nil {
		fmt.Fprintf(out, "lifeboat: boot: %v\n", err)
	} else {
		ld.Log = out
		if names, err := readList(filepath.Join(modDir, "lifeboat.load")); err == nil {
			ld.Load(names)
		}
		if err := ld.Settle(ctx, filepath.Join(root, "sys"), time.Second, 20*time.Second); err != nil {
			fmt.Fprintf(out, "lifeboat: boot: %v\n", err)
		}
	}
	if name := machineName(root, boot.Hostname); name != "" {
		if err := cfg.Sys.SetHostname(name); err != nil {
			fmt.Fprintf(out, "lifeboat: boot: %v\n", err)
		}
	}
	efivars := filepath.Join(root, "sys", "firmware", "efi", "efivars")
	if _, err := os.Stat(efivars); err == nil {
		_ = cfg.Sys.Mount("efivarfs", efivars, "efivarfs")
	}

	if perr != nil {
		fmt.Fprintf(out, "%s failed: %v\n", JobPrefix, perr)
		return AfterShell, perr
	}
	if boot.Job == nil && boot.JobFile == "" {
		fmt.Fprintf(out, "%s %s\n", ReadyPrefix, cfg.Version)
		runChild(ctx, cfg.Self, []string{"disks", "--no-usage"}, out, "", nil)
		return boot.After, nil
	}
	var jobErr error
	if boot.JobFile != "" {
		jobErr = runJobFile(ctx, cfg, boot.JobFile, out)
	} else {
		jobErr = runJob(ctx, cfg, [][]string{boot.Job}, "", out)
	}
	switch boot.After {
	case AfterPoweroff:
		return boot.After, cfg.Sys.PowerOff()
	case AfterReboot:
		return boot.After, cfg.Sys.Reboot()
	}
	return boot.After, jobErr
}

// machineName is the host name the appliance takes: lifeboat.hostname,
// else "lifeboat-" and the start of the firmware's machine UUID, so the
// snapshots of a fleet imaged from one stick tell the machines apart
// (the kernel's "(none)" would not); "" keeps the kernel's name.
func machineName(root, fromCmdline string) string {
	if fromCmdline != "" {
		return fromCmdline
	}
	b, err := readSmall(filepath.Join(root, "sys", "class", "dmi", "id", "product_uuid"), 256)
	id := strings.ToLower(strings.TrimSpace(string(b)))
	if err != nil || len(id) < 8 || strings.Trim(id[:8], "0123456789abcdef") != "" || strings.Trim(id, "0-f") == "" {
		return "lifeboat"
	}
	return "lifeboat-" + id[:8]
}

// runJobFile finds, reads and runs the job file spec names.
func runJobFile(ctx context.Context, cfg Config, spec string, out io.Writer) error {
	find := cfg.FindJob
	if find == nil {
		find = FindJobFile
	}
	fail := func(err error) error {
		fmt.Fprintf(out, "%s failed: %s\n", JobPrefix, oneLine(err.Error()))
		return err
	}
	p, release, err := find(ctx, cfg.Root, spec)
	if err != nil {
		return fail(err)
	}
	defer release()
	text, err := readSmall(p, maxJobFile)
	if err != nil {
		return fail(fmt.Errorf("read job file %s: %w", spec, err))
	}
	cmds, err := ParseJobFile(string(text))
	if err != nil {
		return fail(fmt.Errorf("%s: %w", spec, err))
	}
	fmt.Fprintf(out, "lifeboat: job file %s (%d commands)\n", spec, len(cmds))
	// Relative paths in the file (a password file beside it) are the job
	// file's directory's.
	return runJob(ctx, cfg, cmds, filepath.Dir(p), out)
}

// runJob runs each lifeboat command line in turn, stopping at the first
// failure, in dir (when set), copies the output to out and the log file,
// and prints the result line last. A command that names a network
// repository gets the network brought up first, unless the job already
// ran "network".
func runJob(ctx context.Context, cfg Config, cmds [][]string, dir string, out io.Writer) error {
	w := out
	var env []string
	if cfg.LogFile != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.LogFile), 0o755); err == nil {
			if f, err := os.Create(cfg.LogFile); err == nil {
				defer f.Close()
				w = io.MultiWriter(out, f)
				env = []string{JobLogEnv + "=" + cfg.LogFile}
			} else {
				fmt.Fprintf(out, "lifeboat: job log: %v\n", err)
			}
		}
	}
	networkUp := false
	for _, args := range cmds {
		if args[0] == "network" {
			networkUp = true
		} else if !networkUp && NeedsNetwork(args) {
			fmt.Fprintf(w, "lifeboat: job: bringing the network up (the job names a network repository)\n")
			up := cfg.NetworkUp
			if up == nil {
				up = BringUpNetwork
			}
			stop, err := up(ctx, w)
			if err != nil {
				fmt.Fprintf(w, "%s failed: bring the network up: %s\n", JobPrefix, oneLine(err.Error()))
				return err
			}
			defer stop()
			networkUp = true
		}
		fmt.Fprintf(w, "lifeboat: job: lifeboat %s\n", strings.Join(args, " "))
		if err := runChild(ctx, cfg.Self, args, w, dir, env); err != nil {
			fmt.Fprintf(w, "%s failed: %s\n", JobPrefix, oneLine(err.Error()))
			return err
		}
	}
	fmt.Fprintf(w, "%s ok\n", JobPrefix)
	return nil
}

// networkSchemes are the repository locations reached over the network.
var networkSchemes = []string{"smb://", "nfs://", "sftp://", "s3://"}

// NeedsNetwork reports whether a lifeboat command line names a repository
// on the network (--repo smb://..., --repo=s3://...).
func NeedsNetwork(args []string) bool {
	for i, a := range args {
		v, ok := strings.CutPrefix(a, "--repo=")
		if !ok {
			if a != "--repo" && a != "-repo" || i+1 >= len(args) {
				continue
			}
			v = args[i+1]
		}
		for _, s := range networkSchemes {
			if len(v) >= len(s) && strings.EqualFold(v[:len(s)], s) {
				return true
			}
		}
	}
	return false
}

// runChild runs self with args in dir (when set) with env added, its
// output and errors to w.
func runChild(ctx context.Context, self string, args []string, w io.Writer, dir string, env []string) error {
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.Exited() {
			return fmt.Errorf("lifeboat %s exited with status %d", args[0], ee.ExitCode())
		}
		return fmt.Errorf("run lifeboat %s: %w", args[0], err)
	}
	return nil
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

func readList(p string) ([]string, error) {
	b, err := readSmall(p, 1<<20)
	if err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && l[0] != '#' {
			out = append(out, l)
		}
	}
	return out, nil
}

// openConsoles opens every console the kernel reports in /proc/consoles
// (or, when that is unreadable, the console= arguments) and returns a
// writer to all of them. With none, output goes to fallback.
func openConsoles(root string, fromCmdline []string, fallback io.Writer) (io.Writer, func()) {
	names := []string(nil)
	if b, err := readSmall(filepath.Join(root, "proc", "consoles"), maxCmdline); err == nil {
		names = ParseConsoles(string(b))
	}
	if len(names) == 0 {
		names = fromCmdline
	}
	var ws []io.Writer
	var files []*os.File
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		f, err := os.OpenFile(filepath.Join(root, "dev", n), os.O_WRONLY|consoleFlags, 0)
		if err != nil {
			continue
		}
		files = append(files, f)
		ws = append(ws, bestEffort{f})
	}
	if len(ws) == 0 {
		return fallback, func() {}
	}
	return io.MultiWriter(ws...), func() {
		for _, f := range files {
			f.Close()
		}
	}
}

// bestEffort never reports a failed write: output to consoles is best
// effort, and a console that fails (a VGA console without a screen) must
// neither stop the others in a MultiWriter nor make a job fail.
type bestEffort struct{ w io.Writer }

func (b bestEffort) Write(p []byte) (int, error) {
	_, _ = b.w.Write(p)
	return len(p), nil
}
