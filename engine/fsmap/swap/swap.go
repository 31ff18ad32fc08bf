// Package swap detects Linux swap areas.
//
// A swap area's first page is its header: the signature in the last 10
// bytes of the page ("SWAPSPACE2" for the version 1 layout every mkswap
// since Linux 2.2 writes, "SWAP-SPACE" for the old version 0), and in
// version 1 at byte 1024 the version, the last usable page, the bad-page
// count, the UUID and the label. Everything after the header is paged-out
// memory, meaningless once the system that wrote it is gone, so the used
// map is the header page alone: a copy made from it is what mkswap with the
// same UUID and label would give, and blkid and swaplabel report the same
// identity on it. The exception is a hibernation image (the kernel replaces
// the signature with its own while one is stored): then the whole area is
// copied so that resume still finds its image.
package swap

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

// pageSizes are the page sizes of Linux architectures, smallest first.
var pageSizes = []int64{4096, 8192, 16384, 32768, 65536}

// hibernation signatures that replace the swap signature while a suspend
// image is stored (kernel swsusp, uswsusp, TuxOnIce's header version).
var hibernation = [][]byte{
	[]byte("S1SUSPEND"),
	[]byte("S2SUSPEND"),
	[]byte("ULSUSPEND"),
	[]byte("LINHIB0001"),
}

// FS is a detected swap area.
type FS struct {
	info     fsmap.Info
	pageSize int64
	hibern   bool
}

// Info implements fsmap.FS.
func (f *FS) Info() fsmap.Info {
	info := f.info
	info.Warnings = append([]string(nil), f.info.Warnings...)
	return info
}

// UsedExtents implements fsmap.FS: the header page, or the whole area when
// it holds a hibernation image.
func (f *FS) UsedExtents(ctx context.Context) ([]fsmap.Extent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if f.hibern {
		return []fsmap.Extent{{Off: 0, Len: f.info.Size}}, nil
	}
	return []fsmap.Extent{{Off: 0, Len: min(f.pageSize, f.info.Size)}}, nil
}

// Detect recognises a Linux swap area in r (size bytes), trying each page
// size. It returns an error wrapping fsmap.ErrNotDetected when no signature
// is found.
func Detect(ctx context.Context, r io.ReaderAt, size int64) (fsmap.FS, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sig := make([]byte, 10)
	for _, ps := range pageSizes {
		if ps > size {
			break
		}
		if err := fsmap.ReadFull(r, sig, ps-10, "swap signature"); err != nil {
			return nil, err
		}
		switch {
		case string(sig) == "SWAPSPACE2":
			return parseV1(r, size, ps, false)
		case string(sig) == "SWAP-SPACE":
			f := &FS{pageSize: ps}
			f.info = fsmap.Info{Type: "swap", Variant: "v0", BlockSize: ps, Size: size}
			f.info.Used = ps
			return f, nil
		}
		for _, h := range hibernation {
			if bytes.HasPrefix(sig, h) {
				return parseV1(r, size, ps, true)
			}
		}
	}
	return nil, fmt.Errorf("swap: no signature at the end of the first page: %w", fsmap.ErrNotDetected)
}

// parseV1 reads the version 1 header in the first page of ps bytes.
func parseV1(r io.ReaderAt, size, ps int64, hibern bool) (fsmap.FS, error) {
	h := make([]byte, 1068-1024)
	if err := fsmap.ReadFull(r, h, 1024, "swap header"); err != nil {
		return nil, err
	}
	// mkswap writes the header in the byte order of the machine; a
	// version of 1 tells which one it was.
	var order binary.ByteOrder = binary.LittleEndian
	if order.Uint32(h) != 1 {
		if binary.BigEndian.Uint32(h) != 1 && !hibern {
			return nil, fmt.Errorf("swap header version %#x, want 1", binary.LittleEndian.Uint32(h))
		}
		order = binary.BigEndian
	}
	lastPage := int64(order.Uint32(h[4:]))
	f := &FS{pageSize: ps, hibern: hibern}
	f.info = fsmap.Info{
		Type:      "swap",
		Variant:   "v1",
		BlockSize: ps,
		Size:      min((lastPage+1)*ps, size),
		UUID:      formatUUID(h[12:28]),
		Label:     cstring(h[28:44]),
	}
	if lastPage == 0 {
		// Some tools leave last_page zero; the area is then the volume.
		f.info.Size = size
	}
	if hibern {
		f.info.Variant = "swsuspend"
		f.info.Warnings = append(f.info.Warnings, "swap area holds a hibernation image: copied whole so the copy can still resume")
		f.info.Used = f.info.Size
	} else {
		f.info.Used = min(ps, f.info.Size)
	}
	return f, nil
}

// formatUUID renders 16 bytes as blkid does, or "" when all are zero.
func formatUUID(b []byte) string {
	if bytes.Equal(b, make([]byte, 16)) {
		return ""
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// cstring returns b up to its first NUL.
func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
