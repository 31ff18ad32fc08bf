package clone

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

// fsSectorSize returns the smallest unit the file system addresses, which
// must not be smaller than the target's logical sector size: Linux and
// Windows refuse to mount a FAT, exFAT or NTFS volume whose sector size is
// below the disk's, and ext4 whose block size is. 0 means no constraint.
func fsSectorSize(info fsmap.Info, r io.ReaderAt) (int, error) {
	switch info.Type {
	case "vfat", "ntfs":
		var b [2]byte
		if err := fsmap.ReadFull(r, b[:], 11, info.Type+" bytes per sector"); err != nil {
			return 0, err
		}
		return int(binary.LittleEndian.Uint16(b[:])), nil
	case "exfat":
		var b [1]byte
		if err := fsmap.ReadFull(r, b[:], 108, "exFAT bytes-per-sector shift"); err != nil {
			return 0, err
		}
		if b[0] > 12 {
			return 0, fmt.Errorf("exFAT bytes-per-sector shift %d", b[0])
		}
		return 1 << b[0], nil
	case "ext2", "ext3", "ext4":
		return int(info.BlockSize), nil
	}
	return 0, nil
}
