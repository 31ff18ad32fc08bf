package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/lifeboat/lifeboat/rescue"
)

func init() {
	register("rescue", command{summary: "the appliance's boot entry (started by init; not for use on a running system)", run: runRescue})
}

// runRescue is what the appliance's init starts: it brings the system up,
// runs the kernel command line's job and does what lifeboat.after says.
// The summary above keeps people from running it on a workstation, where
// lifeboat.after=poweroff would power it off.
func runRescue(ctx context.Context, env *cmdEnv, args []string) error {
	if err := parseFlags(newFlags("rescue", env, "rescue (started by the appliance's init)"), args); err != nil {
		return err
	}
	// Mounting tmpfs on /tmp and powering off belong to the appliance
	// only: its init (PID 1) starts this directly.
	if os.Getpid() != 1 && os.Getppid() != 1 {
		return &exitError{code: 2, err: fmt.Errorf("only the appliance's init starts this command (it mounts file systems and may power the machine off)")}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("rescue: find own executable: %w", err)
	}
	after, err := rescue.Main(ctx, rescue.Config{
		Version:       version,
		Root:          "/",
		Sys:           rescue.Linux{},
		Self:          self,
		Stdout:        env.stdout,
		KernelRelease: rescue.KernelRelease(),
		LogFile:       "/run/lifeboat/job.log",
	})
	if err != nil {
		fmt.Fprintf(env.stderr, "lifeboat rescue: %v\n", err)
	}
	if after == rescue.AfterPoweroff || after == rescue.AfterReboot {
		return nil
	}
	if after == rescue.AfterTUI {
		// The console UI on every console; the shell follows once every
		// one of them has ended (a UI that fails leaves the shell).
		runConsoleUIs(ctx, env, self)
	}
	shell := applianceShell()
	if os.Getpid() == 1 {
		// Started as PID 1 (no u-root init), returning or exec'ing a
		// shell that exits would panic the kernel: run shells forever.
		for {
			if shell != "" {
				sh := exec.Command(shell)
				sh.Stdin, sh.Stdout, sh.Stderr = os.Stdin, os.Stdout, os.Stderr
				sh.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
				_ = sh.Run()
			}
			time.Sleep(time.Second)
		}
	}
	// Under u-root's init the shell takes this process's place rather
	// than start after it: init made this process a session leader owning
	// the console, and when a session leader exits the kernel hangs the
	// console up, so a shell started next would read end-of-file at once.
	if shell != "" {
		err = syscall.Exec(shell, []string{shell}, os.Environ())
		return fmt.Errorf("rescue: start %s: %w", shell, err)
	}
	return nil
}

// runConsoleUIs starts "lifeboat tui --appliance" on every console, each
// in a session of its own, and waits for all of them.
func runConsoleUIs(ctx context.Context, env *cmdEnv, self string) {
	// Kernel warnings printed over the UI would garble its screen: keep
	// only errors on the consoles (dmesg still has everything).
	_ = os.WriteFile("/proc/sys/kernel/printk", []byte("3"), 0o644)
	var wg sync.WaitGroup
	for _, c := range rescue.ConsoleUIs("/") {
		cmd := exec.CommandContext(ctx, self, "tui", "--appliance", "--tty", c.TTY)
		cmd.Env = append(os.Environ(), "TERM="+c.Term)
		if f, err := os.OpenFile(c.TTY, os.O_WRONLY|syscall.O_NOCTTY, 0); err == nil {
			cmd.Stdout, cmd.Stderr = f, f
			defer f.Close()
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(env.stderr, "lifeboat rescue: console interface on %s: %v\n", c.TTY, err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				fmt.Fprintf(env.stderr, "lifeboat rescue: console interface on %s ended: %v\n", c.TTY, err)
			}
		}()
	}
	wg.Wait()
}

// applianceShell is the shell for experts: u-root's default shell, else
// /bin/sh; "" when there is neither.
func applianceShell() string {
	for _, sh := range []string{"/bin/defaultsh", "/bin/sh"} {
		if _, err := os.Stat(sh); err == nil {
			return sh
		}
	}
	return ""
}
