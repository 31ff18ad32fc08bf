// Package raw is the fallback for content that has no used-block map: every
// byte is copied. It names what it finds (LUKS, BitLocker, LVM, XFS, btrfs,
// ...) so the plan can say what is copied raw and why.
package raw

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

// FS is raw content: its used-block map is the whole volume.
type FS struct {
	info fsmap.Info
}

// Info implements fsmap.FS.
func (f *FS) Info() fsmap.Info { return f.info }

// UsedExtents implements fsmap.FS: the whole volume.
func (f *FS) UsedExtents(ctx context.Context) ([]fsmap.Extent, error) {
	if f.info.Size == 0 {
		return nil, nil
	}
	return []fsmap.Extent{{Off: 0, Len: f.info.Size}}, nil
}

type signature struct {
	typ     string
	off     int64
	magic   []byte
	warning string
}

var signatures = []signature{
	{typ: "luks", off: 0, magic: []byte("LUKS\xba\xbe"), warning: "LUKS encrypted volume: copied sector by sector (its contents cannot be read without the key)"},
	{typ: "bitlocker", off: 3, magic: []byte("-FVE-FS-"), warning: "BitLocker encrypted volume: copied sector by sector; keep its recovery key at hand"},
	{typ: "lvm2", off: 512 + 24, magic: []byte("LVM2 001"), warning: "LVM physical volume: copied sector by sector"},
	{typ: "lvm2", off: 24, magic: []byte("LVM2 001"), warning: "LVM physical volume: copied sector by sector"},
	{typ: "xfs", off: 0, magic: []byte("XFSB"), warning: "XFS has no used-block map yet: copied sector by sector"},
	{typ: "btrfs", off: 0x10040, magic: []byte("_BHRfS_M"), warning: "btrfs has no used-block map yet: copied sector by sector"},
	{typ: "linux_raid_member", off: 4096, magic: []byte{0xfc, 0x4e, 0x2b, 0xa9}, warning: "md RAID member: copied sector by sector"},
	{typ: "zfs_member", off: 8 << 10, magic: []byte{0x0c, 0xb1, 0xba, 0x00}, warning: "ZFS member: copied sector by sector"},
	{typ: "iso9660", off: 0x8001, magic: []byte("CD001"), warning: "ISO 9660: copied sector by sector"},
}

// Detect names the content of r and returns a raw FS for it. It never
// returns ErrNotDetected: unknown content is "unknown".
func Detect(ctx context.Context, r io.ReaderAt, size int64) (fsmap.FS, error) {
	info := fsmap.Info{Type: "unknown", Size: size, Used: size, Raw: true, BlockSize: 512}
	for _, s := range signatures {
		if s.off+int64(len(s.magic)) > size {
			continue
		}
		buf := make([]byte, len(s.magic))
		if err := fsmap.ReadFull(r, buf, s.off, "signature"); err != nil {
			return nil, fmt.Errorf("probe raw signatures: %w", err)
		}
		if bytes.Equal(buf, s.magic) {
			info.Type = s.typ
			info.Warnings = []string{s.warning}
			break
		}
	}
	if info.Type == "luks" {
		var hdr [0x100]byte
		if err := fsmap.ReadFull(r, hdr[:], 0, "LUKS header"); err == nil {
			info.Variant = fmt.Sprintf("LUKS%d", binary.BigEndian.Uint16(hdr[6:8]))
			// The UUID sits at 0xa8 in both LUKS1 and LUKS2 headers.
			info.UUID = string(bytes.TrimRight(hdr[0xa8:0xa8+40], "\x00"))
		}
	}
	if info.Type == "unknown" {
		info.Warnings = []string{"content not recognised: copied sector by sector"}
	}
	return &FS{info: info}, nil
}

// Whole returns a raw FS over size bytes with a given type name, for
// sector-by-sector copies the user asked for.
func Whole(size int64, typ string) *FS {
	return &FS{info: fsmap.Info{Type: typ, Size: size, Used: size, Raw: true, BlockSize: 512}}
}
