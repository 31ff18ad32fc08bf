package rescue

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// consoleFlags open a console without making it the controlling terminal.
const consoleFlags = unix.O_NOCTTY

// Linux is the System of a real machine.
type Linux struct{}

// Mount mounts fstype on target unless something is mounted there already.
func (Linux) Mount(source, target, fstype string) error {
	if mounted(target) {
		return nil
	}
	if err := unix.Mount(source, target, fstype, unix.MS_NOSUID, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount %s on %s: %w", fstype, target, err)
	}
	return nil
}

// mounted reports whether target is a mount point, from /proc/self/mountinfo
// (unreadable before /proc is mounted, when nothing else is mounted either).
func mounted(target string) bool {
	b, err := readSmall("/proc/self/mountinfo", 4<<20)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == target {
			return true
		}
	}
	return false
}

// Insert loads a module file with finit_module(2); .ko.xz and .ko.zst
// files are handed to the kernel to decompress.
func (Linux) Insert(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	defer f.Close()
	flags := 0
	if strings.HasSuffix(path, ".xz") || strings.HasSuffix(path, ".zst") || strings.HasSuffix(path, ".gz") {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(int(f.Fd()), "", flags); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("load module %s: %w", path, os.ErrExist)
		}
		return fmt.Errorf("load module %s: %w", path, err)
	}
	return nil
}

// PowerOff flushes the disks and powers the machine off.
func (Linux) PowerOff() error {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		return fmt.Errorf("power off: %w", err)
	}
	return nil
}

// Reboot flushes the disks and restarts the machine.
func (Linux) Reboot() error {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	return nil
}

// KernelRelease returns uname -r.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// SetHostname sets the kernel's host name.
func (Linux) SetHostname(name string) error {
	if err := unix.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("set host name %q: %w", name, err)
	}
	return nil
}
