// Command lifeboat-build builds the Lifeboat appliance on a Debian host:
// today the netboot pair out/netboot/vmlinuz and out/netboot/initramfs.img,
// with a report of what went in and the sizes.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/lifeboat/lifeboat/initramfs"
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
	rep, err := initramfs.Build(ctx, initramfs.Config{
		Kernel:      *kernel,
		ModulesRoot: *modRoot,
		OutDir:      filepath.Join(*out, "netboot"),
		Version:     *version,
		Log:         stderr,
	})
	if rep != nil {
		rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "lifeboat-build: %v\n", err)
		return 1
	}
	return 0
}
