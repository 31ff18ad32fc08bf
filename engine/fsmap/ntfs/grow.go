package ntfs

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

// Grow is a fsmap.Grower for NTFS: it runs ntfsresize on the volume's
// device path, first as a dry run so that a refusal leaves the volume
// untouched. ntfsresize schedules a chkdsk for the next Windows boot, so a
// grown volume reads as dirty afterwards.
//
// A hibernated volume (or one whose hibernation state cannot be checked) is
// refused: Windows would resume with a memory image describing the old
// layout and corrupt the volume.
func Grow(ctx context.Context, v fsmap.Volume, newSize int64) error {
	if newSize > v.Size() {
		return fmt.Errorf("grow ntfs to %d bytes: the volume holds only %d", newSize, v.Size())
	}
	detected, err := Detect(ctx, v, v.Size())
	if err != nil {
		return fmt.Errorf("grow ntfs: %w", err)
	}
	f := detected.(*FS)
	switch f.hiber {
	case hiberYes:
		return fmt.Errorf("grow ntfs: refused: Windows is hibernated (or shut down with Fast Startup) on this volume; " +
			"boot Windows and shut it down fully first")
	case hiberUnknown:
		return fmt.Errorf("grow ntfs: refused: the root directory is too large to check whether Windows is hibernated")
	}
	if newSize < f.info.Size {
		return fmt.Errorf("grow ntfs to %d bytes: smaller than the current %d bytes", newSize, f.info.Size)
	}
	if newSize-f.info.Size < f.v.b.bytesPerSector {
		// Not a whole sector more: nothing ntfsresize could add.
		return nil
	}
	tool, err := lookTool("ntfsresize")
	if err != nil {
		return fmt.Errorf("grow ntfs: %w", err)
	}
	path, release, err := v.DevicePath(ctx)
	if err != nil {
		return fmt.Errorf("grow ntfs: device path: %w", err)
	}
	released := false
	defer func() {
		if !released {
			_ = release() // the resize error is the one worth reporting
		}
	}()
	size := strconv.FormatInt(newSize, 10)
	// --force answers ntfsresize's confirmation prompt and lets it resize a
	// volume marked dirty, which the user was warned about at detection.
	if err := runTool(ctx, tool, "--no-action", "--force", "--no-progress-bar", "--size", size, path); err != nil {
		return fmt.Errorf("grow ntfs on %s to %d bytes: dry run: %w", path, newSize, err)
	}
	if err := runTool(ctx, tool, "--force", "--no-progress-bar", "--size", size, path); err != nil {
		return fmt.Errorf("grow ntfs on %s to %d bytes: %w", path, newSize, err)
	}
	released = true
	if err := release(); err != nil {
		return fmt.Errorf("grow ntfs: release %s: %w", path, err)
	}
	return nil
}

var errNoTool = errors.New("not found on PATH or in sbin (install ntfs-3g)")

// runTool runs a program with no input and returns its output in the error
// when it fails.
func runTool(ctx context.Context, tool string, args ...string) error {
	cmd := exec.CommandContext(ctx, tool, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// lookTool finds a program on PATH or in the sbin directories, which the
// appliance's and a user's PATH may lack.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("find %s: %w", name, errNoTool)
}
