package ext

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

var _ fsmap.Grower = Grow

// Grow grows the ext2/3/4 file system on v to newSize bytes (rounded down to
// whole KiB; resize2fs rounds further down to whole blocks). A newSize of 0
// or less fills the volume. resize2fs sets the length of a regular file to
// the new size. It checks the file system with e2fsck first, as
// resize2fs demands a freshly checked file system.
func Grow(ctx context.Context, v fsmap.Volume, newSize int64) (err error) {
	if newSize <= 0 {
		// Name the size rather than let resize2fs find it: on a regular
		// file it would take the file's current length.
		newSize = v.Size()
	}
	if newSize > v.Size() {
		return fmt.Errorf("grow ext to %d bytes: volume holds only %d bytes", newSize, v.Size())
	}
	fs, err := Detect(ctx, v, v.Size())
	if err != nil {
		return fmt.Errorf("grow ext: %w", err)
	}
	info := fs.Info()
	if info.Raw {
		return fmt.Errorf("grow ext: %s cannot be resized", info.Type)
	}
	if newSize < info.Size {
		return fmt.Errorf("grow ext to %d bytes: file system already spans %d bytes", newSize, info.Size)
	}
	e2fsck, err := lookTool("e2fsck")
	if err != nil {
		return fmt.Errorf("grow ext: %w", err)
	}
	resize2fs, err := lookTool("resize2fs")
	if err != nil {
		return fmt.Errorf("grow ext: %w", err)
	}
	path, release, err := v.DevicePath(ctx)
	if err != nil {
		return fmt.Errorf("grow ext: get device path: %w", err)
	}
	defer func() {
		if rerr := release(); rerr != nil && err == nil {
			err = fmt.Errorf("grow ext: release %s: %w", path, rerr)
		}
	}()

	// Exit status 1 means errors were corrected, 2 that the system should
	// be rebooted (only for a mounted root): both leave a usable file system.
	if code, out, err := runTool(ctx, e2fsck, "-f", "-p", path); err != nil && (code < 0 || code >= 4) {
		return fmt.Errorf("grow ext: check %s with e2fsck (exit %d): %w: %s", path, code, err, out)
	}
	size := strconv.FormatInt(newSize/1024, 10) + "K"
	if code, out, err := runTool(ctx, resize2fs, path, size); err != nil {
		return fmt.Errorf("grow ext: resize %s with resize2fs (exit %d): %w: %s", path, code, err, out)
	}
	return nil
}

// runTool runs a program and returns its exit code (-1 when it did not
// exit on its own) and its combined, trimmed output for error messages.
func runTool(ctx context.Context, name string, args ...string) (int, string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.Exited() {
			code = ee.ExitCode()
		}
	}
	return code, strings.TrimSpace(out.String()), err
}

// lookTool finds a program on PATH or in the sbin directories, which the
// PATH of a non-login shell often lacks.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("find %s: not on PATH nor in sbin (install e2fsprogs)", name)
}
