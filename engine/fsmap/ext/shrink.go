package ext

import (
	"context"
	"fmt"
	"regexp"
	"strconv"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

var _ fsmap.Shrinker = Shrink

// minSizeRE finds the block count in `resize2fs -P` output.
var minSizeRE = regexp.MustCompile(`(?m)^Estimated minimum size of the filesystem: (\d+)\s*$`)

// Shrink is a fsmap.Shrinker for ext2/3/4: e2fsck -f -y (resize2fs demands
// a freshly checked file system; on a copy-on-write view repairs cost the
// source nothing), `resize2fs -P` for the smallest size reachable, then
// resize2fs to the whole blocks that fit newSize, and a final e2fsck -fn.
// It returns the size the file system then spans. A newSize at or above
// the current size changes nothing.
func Shrink(ctx context.Context, v fsmap.Volume, newSize int64) (size int64, err error) {
	if newSize > v.Size() {
		newSize = v.Size()
	}
	fs, err := Detect(ctx, v, v.Size())
	if err != nil {
		return 0, fmt.Errorf("shrink ext: %w", err)
	}
	info := fs.Info()
	if info.Raw {
		return 0, fmt.Errorf("shrink ext: %s cannot be resized", info.Type)
	}
	if newSize >= info.Size {
		return info.Size, nil
	}
	bs := info.BlockSize
	if bs <= 0 {
		return 0, fmt.Errorf("shrink ext: block size %d", bs)
	}
	e2fsck, err := lookTool("e2fsck")
	if err != nil {
		return 0, fmt.Errorf("shrink ext: %w", err)
	}
	resize2fs, err := lookTool("resize2fs")
	if err != nil {
		return 0, fmt.Errorf("shrink ext: %w", err)
	}
	path, release, err := v.DevicePath(ctx)
	if err != nil {
		return 0, fmt.Errorf("shrink ext: get device path: %w", err)
	}
	defer func() {
		if rerr := release(); rerr != nil && err == nil {
			err = fmt.Errorf("shrink ext: release %s: %w", path, rerr)
		}
	}()
	// Exit status 1 means errors were corrected: the result is usable.
	if code, out, err := runTool(ctx, e2fsck, "-f", "-y", path); err != nil && (code < 0 || code >= 4) {
		return 0, fmt.Errorf("shrink ext: check %s with e2fsck (exit %d): %w: %s", path, code, err, out)
	}
	_, out, err := runTool(ctx, resize2fs, "-P", path)
	if err != nil {
		return 0, fmt.Errorf("shrink ext: estimate the minimum size of %s with resize2fs -P: %w: %s", path, err, out)
	}
	m := minSizeRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("shrink ext: resize2fs -P on %s printed no minimum size: %s", path, out)
	}
	minBlocks, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || minBlocks <= 0 {
		return 0, fmt.Errorf("shrink ext: resize2fs -P on %s: minimum %q blocks", path, m[1])
	}
	want := newSize / bs
	if want < minBlocks {
		return 0, fmt.Errorf("shrink %s to %d bytes: the smallest size its data allows is %d bytes (%d blocks of %d): %w",
			info.Type, newSize, minBlocks*bs, minBlocks, bs, fsmap.ErrTooSmall)
	}
	// A count without a unit is in file-system blocks.
	if code, out, err := runTool(ctx, resize2fs, path, strconv.FormatInt(want, 10)); err != nil {
		return 0, fmt.Errorf("shrink %s on %s to %d blocks of %d with resize2fs (exit %d): %w: %s", info.Type, path, want, bs, code, err, out)
	}
	if code, out, err := runTool(ctx, e2fsck, "-f", "-n", path); err != nil {
		return 0, fmt.Errorf("shrink ext: check the shrunk file system on %s with e2fsck -fn (exit %d): %w: %s", path, code, err, out)
	}
	after, err := Detect(ctx, v, v.Size())
	if err != nil {
		return 0, fmt.Errorf("shrink ext: detect the shrunk file system: %w", err)
	}
	size = after.Info().Size
	if size > newSize {
		return 0, fmt.Errorf("shrink %s to %d bytes: resize2fs left it at %d bytes", info.Type, newSize, size)
	}
	return size, nil
}
