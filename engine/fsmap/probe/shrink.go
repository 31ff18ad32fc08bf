package probe

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/engine/fsmap/ext"
	"github.com/lifeboat/lifeboat/engine/fsmap/fat"
	"github.com/lifeboat/lifeboat/engine/fsmap/ntfs"
	"github.com/lifeboat/lifeboat/engine/fsmap/swap"
)

var shrinkers = map[string]fsmap.Shrinker{
	"ext2": ext.Shrink,
	"ext3": ext.Shrink,
	"ext4": ext.Shrink,
	"ntfs": ntfs.Shrink,
	"vfat": fat.Shrink,
	"swap": shrinkSwap,
}

// cannotShrink says why a type that has no shrinker keeps its size.
var cannotShrink = map[string]string{
	"xfs":               "XFS cannot shrink",
	"btrfs":             "btrfs shrinks only while mounted, which Lifeboat does not do to a source",
	"exfat":             "exFAT has no shrinking tool",
	"luks":              "a LUKS volume is encrypted: its file system cannot be read without the key",
	"bitlocker":         "a BitLocker volume is encrypted: its file system cannot be read without the key",
	"lvm2":              "an LVM physical volume is copied whole",
	"linux_raid_member": "an md RAID member is copied whole",
	"zfs_member":        "a ZFS member is copied whole",
	"iso9660":           "ISO 9660 is read-only",
	"unknown":           "the content is not recognised, so it is copied whole",
}

// Shrinker returns the function that shrinks file systems of the given
// type (as fsmap.Info.Type names it) on a copy-on-write view, or nil when
// that type cannot shrink.
func Shrinker(fsType string) fsmap.Shrinker { return shrinkers[fsType] }

// CanShrink reports whether file systems of the given type can be shrunk,
// and when not, why, in words for the user ("XFS cannot shrink").
func CanShrink(fsType string) (ok bool, why string) {
	if shrinkers[fsType] != nil {
		return true, ""
	}
	if why, found := cannotShrink[fsType]; found {
		return false, why
	}
	return false, fmt.Sprintf("%s has no shrinker", fsType)
}

// shrinkSwap shrinks a swap area by rewriting its header's last page, as
// swap.Grow does for growing: swap holds nothing worth keeping. A header
// listing bad pages is refused, as they could lie past the new end.
func shrinkSwap(ctx context.Context, v fsmap.Volume, newSize int64) (int64, error) {
	fs, err := swap.Detect(ctx, v, v.Size())
	if err != nil {
		return 0, fmt.Errorf("shrink swap: %w", err)
	}
	info := fs.Info()
	if newSize >= info.Size {
		return info.Size, nil
	}
	if minSize := 2 * info.BlockSize; newSize < minSize {
		return 0, fmt.Errorf("shrink swap to %d bytes: the smallest size its data allows is %d bytes (two pages): %w", newSize, minSize, fsmap.ErrTooSmall)
	}
	h := make([]byte, 12)
	if err := fsmap.ReadFull(v, h, 1024, "swap header"); err != nil {
		return 0, fmt.Errorf("shrink swap: %w", err)
	}
	var order binary.ByteOrder = binary.LittleEndian
	if order.Uint32(h) != 1 {
		order = binary.BigEndian
	}
	if n := order.Uint32(h[8:]); n != 0 {
		return 0, fmt.Errorf("shrink swap: its header lists %d bad pages", n)
	}
	if err := swap.Grow(ctx, v, newSize); err != nil {
		return 0, fmt.Errorf("shrink swap to %d bytes: %w", newSize, err)
	}
	after, err := swap.Detect(ctx, v, v.Size())
	if err != nil {
		return 0, fmt.Errorf("shrink swap: detect the shrunk area: %w", err)
	}
	size := after.Info().Size
	if size > newSize {
		return 0, fmt.Errorf("shrink swap to %d bytes: %d bytes left", newSize, size)
	}
	return size, nil
}
