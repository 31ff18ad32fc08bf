// Command lifeboat-build builds the Lifeboat appliance on a Debian host: the
// netboot pair out/netboot/vmlinuz and out/netboot/initramfs.img with an
// iPXE script and a GRUB netboot config beside them, and the hybrid
// bootable image out/lifeboat.iso, with a report of what went in and the
// sizes.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/lifeboat/lifeboat/initramfs"
	"github.com/lifeboat/lifeboat/iso"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Stdout, os.Stderr, os.Args[1:]))
}

// run builds what args ask for and returns the exit status.
func run(ctx context.Context, stdout, stderr io.Writer, args []string) int {
	fl := flag.NewFlagSet("lifeboat-build", flag.ContinueOnError)
	fl.SetOutput(stderr)
	kernel := fl.String("kernel", "", "kernel bzImage `PATH` (default: the newest /boot/vmlinuz-*, from linux-image-amd64)")
	out := fl.String("out", "out", "output `DIR`; the netboot pair goes to DIR/netboot")
	version := fl.String("version", "dev", "version stamped into the lifeboat binary")
	modRoot := fl.String("modules-root", "/", "`DIR` holding lib/modules/<kernel version>")
	firmware := fl.String("firmware", "", "comma-separated `DIRS` searched in order for the firmware the carried modules name (default: the kernel's own search path under --modules-root: lib/firmware/updates/<release>, lib/firmware/updates, lib/firmware/<release>, lib/firmware)")
	noISO := fl.Bool("no-iso", false, "build only the netboot files, not DIR/lifeboat.iso")
	appendLine := fl.String("append", iso.DefaultAppend, "kernel command `LINE` of the ISO's and the netboot configs' default entry")
	if err := fl.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "lifeboat-build: unexpected argument %q\n", fl.Arg(0))
		return 2
	}
	// The busybox build runs in other directories: a relative output
	// directory would point elsewhere there.
	if abs, err := filepath.Abs(*out); err == nil {
		*out = abs
	}
	var fwDirs []string
	if *firmware != "" {
		fwDirs = strings.Split(*firmware, ",")
	}
	rep, err := initramfs.Build(ctx, initramfs.Config{
		Kernel:       *kernel,
		ModulesRoot:  *modRoot,
		FirmwareDirs: fwDirs,
		OutDir:       filepath.Join(*out, "netboot"),
		Version:      *version,
		Log:          stderr,
	})
	if rep != nil {
		rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "lifeboat-build: %v\n", err)
		return 1
	}
	netDir := filepath.Join(*out, "netboot")
	ipxe, grubCfg, err := iso.WriteNetboot(netDir, *appendLine)
	if err != nil {
		fmt.Fprintf(stderr, "lifeboat-build: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "netboot    %s (iPXE), %s (GRUB), next to vmlinuz and initramfs.img\n", ipxe, grubCfg)
	if *noISO {
		return 0
	}
	irep, err := iso.Build(ctx, iso.Config{
		Kernel:    rep.KernelOut,
		Initramfs: rep.InitramfsOut,
		Out:       filepath.Join(*out, "lifeboat.iso"),
		Version:   *version,
		Append:    *appendLine,
		Log:       stderr,
	})
	if err != nil {
		fmt.Fprintf(stderr, "lifeboat-build: %v\n", err)
		return 1
	}
	irep.WriteText(stdout)
	return 0
}
