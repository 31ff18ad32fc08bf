package blockdev

import "encoding/binary"

// IsZero reports whether b holds only zero bytes: such data need not be
// written where the device already reads back zeros, nor stored.
func IsZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
