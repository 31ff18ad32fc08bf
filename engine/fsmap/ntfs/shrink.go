package ntfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

var _ fsmap.Shrinker = Shrink

// mightResizeRE finds the smallest size in `ntfsresize --info` output.
var mightResizeRE = regexp.MustCompile(`You might resize at (\d+) bytes`)

// Shrink is a fsmap.Shrinker for NTFS. It asks `ntfsresize --info` for the
// smallest size the volume's data allows, makes a dry run, then lets
// ntfsresize move the clusters past the new end and shrink the volume. It
// then writes the backup boot sector into the sector after the volume,
// where Windows keeps it and ntfsresize does not put it, and returns the
// size the volume spans with it. ntfsresize marks the volume for a check
// at the next Windows boot, so a shrunk volume reads as dirty.
//
// It refuses a hibernated volume, or one whose hibernation state cannot be
// checked, before running anything: Windows would resume with a memory
// image describing the old layout. A newSize at or above the current size
// changes nothing.
func Shrink(ctx context.Context, v fsmap.Volume, newSize int64) (size int64, err error) {
	if newSize > v.Size() {
		newSize = v.Size()
	}
	detected, err := Detect(ctx, v, v.Size())
	if err != nil {
		return 0, fmt.Errorf("shrink ntfs: %w", err)
	}
	f := detected.(*FS)
	switch f.hiber {
	case hiberYes:
		return 0, fmt.Errorf("shrink ntfs: refused: Windows is hibernated (or shut down with Fast Startup) on this volume; " +
			"boot Windows and shut it down fully first")
	case hiberUnknown:
		return 0, fmt.Errorf("shrink ntfs: refused: the root directory is too large to check whether Windows is hibernated")
	}
	if newSize >= f.info.Size {
		return f.info.Size, nil
	}
	bps := f.v.b.bytesPerSector
	tool, err := lookTool("ntfsresize")
	if err != nil {
		return 0, fmt.Errorf("shrink ntfs: %w", err)
	}
	path, release, err := v.DevicePath(ctx)
	if err != nil {
		return 0, fmt.Errorf("shrink ntfs: device path: %w", err)
	}
	released := false
	defer func() {
		if !released {
			_ = release() // the shrink error is the one worth reporting
		}
	}()
	// --force lets ntfsresize work on a volume marked dirty (the user was
	// warned at detection) and answers its confirmation prompt.
	out, err := toolOutput(ctx, tool, "--info", "--force", "--no-progress-bar", path)
	if err != nil {
		return 0, fmt.Errorf("shrink ntfs on %s: find the smallest size: %w", path, err)
	}
	m := mightResizeRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("shrink ntfs on %s: ntfsresize --info names no smallest size: %s", path, lastLines(out, 5))
	}
	minSize, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || minSize <= 0 {
		return 0, fmt.Errorf("shrink ntfs on %s: ntfsresize --info: smallest size %q", path, m[1])
	}
	if newSize < minSize {
		return 0, fmt.Errorf("shrink ntfs to %d bytes: the smallest size its data allows is %d bytes: %w", newSize, minSize, fsmap.ErrTooSmall)
	}
	// ntfsresize takes the partition's size: it rounds it down to whole
	// sectors and leaves the last one for the backup boot sector.
	target := strconv.FormatInt(newSize/bps*bps, 10)
	if err := runTool(ctx, tool, "--no-action", "--force", "--no-progress-bar", "--size", target, path); err != nil {
		return 0, fmt.Errorf("shrink ntfs on %s to %d bytes: dry run: %w", path, newSize, err)
	}
	if err := runTool(ctx, tool, "--force", "--no-progress-bar", "--size", target, path); err != nil {
		return 0, fmt.Errorf("shrink ntfs on %s to %d bytes: %w", path, newSize, err)
	}
	released = true
	if err := release(); err != nil {
		return 0, fmt.Errorf("shrink ntfs: release %s: %w", path, err)
	}
	if err := writeBackupBoot(v); err != nil {
		return 0, fmt.Errorf("shrink ntfs: %w", err)
	}
	after, err := Detect(ctx, v, v.Size())
	if err != nil {
		return 0, fmt.Errorf("shrink ntfs: detect the shrunk volume: %w", err)
	}
	size = after.Info().Size
	if size > newSize {
		return 0, fmt.Errorf("shrink ntfs to %d bytes: ntfsresize left %d bytes", newSize, size)
	}
	return size, nil
}

// writeBackupBoot copies the boot sector into the sector that follows the
// volume, where Windows's chkdsk and recovery tools look for it.
func writeBackupBoot(v fsmap.Volume) error {
	sec := make([]byte, 512)
	if err := fsmap.ReadFull(v, sec, 0, "ntfs boot sector"); err != nil {
		return err
	}
	b, err := parseBoot(sec)
	if err != nil {
		return fmt.Errorf("parse the shrunk ntfs boot sector: %w", err)
	}
	full := make([]byte, b.bytesPerSector)
	if err := fsmap.ReadFull(v, full, 0, "ntfs boot sector"); err != nil {
		return err
	}
	off := b.totalSectors * b.bytesPerSector
	if off+b.bytesPerSector > v.Size() {
		return fmt.Errorf("backup boot sector at byte %d lies past the %d-byte volume", off, v.Size())
	}
	if _, err := v.WriteAt(full, off); err != nil {
		return fmt.Errorf("write ntfs backup boot sector at byte %d: %w", off, err)
	}
	return nil
}

// toolOutput runs a program and returns its combined output; a failure
// carries the output's tail.
func toolOutput(ctx context.Context, tool string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, tool, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("exit %d", ee.ExitCode())
		}
		return out.String(), fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, lastLines(out.String(), 5))
	}
	return out.String(), nil
}

// lastLines returns the last n non-empty lines of s, joined by " | ".
func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
