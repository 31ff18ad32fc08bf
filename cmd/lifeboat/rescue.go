package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
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
	if len(args) > 0 {
		return &exitError{code: 2, err: fmt.Errorf("unexpected argument %q", args[0])}
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
	var shell string
	for _, sh := range []string{"/bin/defaultsh", "/bin/sh"} {
		if _, serr := os.Stat(sh); serr == nil {
			shell = sh
			break
		}
	}
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
