package swap

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

// Grow makes the swap area on v cover newSize bytes by rewriting last_page
// in its header; label and UUID stay. Swap holds nothing worth keeping
// past the header, so nothing else needs to change. A hibernation image is
// refused: its header is the kernel's, not mkswap's.
func Grow(ctx context.Context, v fsmap.Volume, newSize int64) error {
	fs, err := Detect(ctx, v, v.Size())
	if err != nil {
		return fmt.Errorf("grow swap: %w", err)
	}
	f := fs.(*FS)
	if f.hibern {
		return errors.New("grow swap: the area holds a hibernation image; it is copied as it is")
	}
	if f.info.Variant != "v1" {
		return fmt.Errorf("grow swap: version %s headers are not grown", f.info.Variant)
	}
	if newSize > v.Size() {
		return fmt.Errorf("grow swap to %d bytes: the volume has only %d", newSize, v.Size())
	}
	pages := newSize / f.pageSize
	if pages < 2 {
		return fmt.Errorf("grow swap to %d bytes: smaller than two pages", newSize)
	}
	if pages-1 > 0xffffffff {
		pages = 0xffffffff + 1
	}
	h := make([]byte, 8)
	if err := fsmap.ReadFull(v, h, 1024, "swap header"); err != nil {
		return err
	}
	var order binary.ByteOrder = binary.LittleEndian
	if order.Uint32(h) != 1 {
		order = binary.BigEndian
	}
	order.PutUint32(h[4:], uint32(pages-1))
	if _, err := v.WriteAt(h[4:8], 1028); err != nil {
		return fmt.Errorf("grow swap: write header: %w", err)
	}
	return nil
}
