// Package probe recognises the file system on a volume by asking each
// file-system package in turn, falling back to a raw copy, and finds the
// grower for a file-system type.
package probe

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/engine/fsmap/exfat"
	"github.com/lifeboat/lifeboat/engine/fsmap/ext"
	"github.com/lifeboat/lifeboat/engine/fsmap/fat"
	"github.com/lifeboat/lifeboat/engine/fsmap/ntfs"
	"github.com/lifeboat/lifeboat/engine/fsmap/raw"
	"github.com/lifeboat/lifeboat/engine/fsmap/swap"
)

// detectors are tried in order. Signatures that can coexist decide the
// order: a FAT or NTFS boot sector wins over stale signatures further in.
var detectors = []struct {
	name   string
	detect fsmap.Detector
}{
	{"ntfs", ntfs.Detect},
	{"exfat", exfat.Detect},
	{"fat", fat.Detect},
	{"ext", ext.Detect},
	{"swap", swap.Detect},
}

var growers = map[string]fsmap.Grower{
	"ext2":  ext.Grow,
	"ext3":  ext.Grow,
	"ext4":  ext.Grow,
	"vfat":  fat.Grow,
	"ntfs":  ntfs.Grow,
	"exfat": exfat.Grow,
	"swap":  swap.Grow,
}

// Detect returns the file system on r (size bytes). Content no package
// recognises comes back as a raw FS. A recognised but damaged file system
// is an error: copying it raw would hide the damage from the user.
func Detect(ctx context.Context, r io.ReaderAt, size int64) (fsmap.FS, error) {
	for _, d := range detectors {
		fs, err := d.detect(ctx, r, size)
		if err == nil {
			return fs, nil
		}
		if !errors.Is(err, fsmap.ErrNotDetected) {
			return nil, fmt.Errorf("detect %s: %w", d.name, err)
		}
	}
	return raw.Detect(ctx, r, size)
}

// Grower returns the function that grows file systems of the given type,
// or nil when that type cannot be grown.
func Grower(fsType string) fsmap.Grower { return growers[fsType] }
