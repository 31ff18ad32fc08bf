package initramfs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"
)

// uroot is the import path prefix of u-root's core commands; go.mod pins
// the module with a tool directive per command so `go mod tidy` keeps
// them.
const uroot = "github.com/u-root/u-root/cmds/core/"

// shellEditorTag builds gosh with peterh/liner, a plain line editor that
// reads the terminal on the calling goroutine, instead of its default
// bubbletea editor: that one hung now and then as it shut down after a
// line was entered (CI saw the appliance's shell take a command and never
// run it), and it redraws the whole prompt on every key, which is slow on
// a serial console.
const shellEditorTag = "goshliner"

// buildArchive has mkuimage build u-root's commands into one busybox binary
// and write the newc cpio: /init is u-root's init, /bin/uinit (which init
// starts on every console) is `lifeboat rescue`, the shell is gosh, and
// everything staged is added at its own path.
func buildArchive(ctx context.Context, cfg Config, stage, tmp, out string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	var pkgs []string
	for _, c := range cfg.Commands {
		pkgs = append(pkgs, uroot+c)
	}
	entries, err := os.ReadDir(stage)
	if err != nil {
		return fmt.Errorf("build initramfs: read staging tree: %w", err)
	}
	var files []string
	for _, e := range entries {
		if e.Name() == "bin" {
			continue // u-root owns bin/; lifeboat is added by itself
		}
		files = append(files, filepath.Join(stage, e.Name())+":"+e.Name())
	}
	files = append(files, filepath.Join(stage, "bin", "lifeboat")+":bin/lifeboat")
	l := llog.New(slog.LevelWarn, func(format string, v ...any) { fmt.Fprintf(cfg.Log, format+"\n", v...) })
	err = uimage.Create(l,
		uimage.WithEnv(golang.WithGOOS("linux"), golang.WithGOARCH("amd64"), golang.DisableCGO(),
			golang.WithWorkingDir(cfg.SourceDir), golang.WithBuildTag(shellEditorTag)),
		uimage.WithBusyboxCommands(pkgs...),
		uimage.WithFiles(files...),
		uimage.WithSkipLDD(),
		uimage.WithInit("init"),
		uimage.WithUinit("/bin/lifeboat", "rescue"),
		uimage.WithShell("gosh"),
		uimage.WithTempDir(tmp),
		uimage.WithCPIOOutput(out),
	)
	if err != nil {
		return fmt.Errorf("build initramfs: mkuimage: %w", err)
	}
	return nil
}

// compressFile writes src zstd-compressed to dst (the kernel unpacks a
// zstd initramfs when built with CONFIG_RD_ZSTD, as Debian's is) and
// returns both sizes.
func compressFile(src, dst string) (int64, int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, 0, fmt.Errorf("compress initramfs: %w", err)
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return 0, 0, fmt.Errorf("compress initramfs: %w", err)
	}
	defer os.Remove(tmp)
	// The kernel's zstd decoder needs a window it can allocate at boot:
	// 8 MiB is what its own initramfs tools use.
	zw, err := zstd.NewWriter(out, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithWindowSize(8<<20))
	if err != nil {
		out.Close()
		return 0, 0, fmt.Errorf("compress initramfs: %w", err)
	}
	n, err := io.Copy(zw, in)
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		out.Close()
		return 0, 0, fmt.Errorf("compress initramfs %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return 0, 0, fmt.Errorf("compress initramfs: write %s: %w", tmp, err)
	}
	st, err := os.Stat(tmp)
	if err != nil {
		return 0, 0, fmt.Errorf("compress initramfs: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return 0, 0, fmt.Errorf("compress initramfs: %w", err)
	}
	return n, st.Size(), nil
}
