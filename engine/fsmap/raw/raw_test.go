package raw

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
)

func TestSignatures(t *testing.T) {
	const size = 1 << 20
	mk := func(off int, magic string) []byte {
		b := make([]byte, size)
		copy(b[off:], magic)
		return b
	}
	luks := mk(0, "LUKS\xba\xbe")
	binary.BigEndian.PutUint16(luks[6:], 2)
	copy(luks[0xa8:], "0b9a1c3e-5f7d-4e2b-9a8c-7d6e5f4a3b2c")
	cases := []struct {
		img          []byte
		typ, variant string
		uuid         string
	}{
		{luks, "luks", "LUKS2", "0b9a1c3e-5f7d-4e2b-9a8c-7d6e5f4a3b2c"},
		{mk(3, "-FVE-FS-"), "bitlocker", "", ""},
		{mk(512+24, "LVM2 001"), "lvm2", "", ""},
		{mk(0, "XFSB"), "xfs", "", ""},
		{mk(0x10040, "_BHRfS_M"), "btrfs", "", ""},
		{make([]byte, size), "unknown", "", ""},
	}
	for _, c := range cases {
		fs, err := Detect(context.Background(), bytes.NewReader(c.img), size)
		if err != nil {
			t.Fatal(err)
		}
		info := fs.Info()
		if info.Type != c.typ || info.Variant != c.variant || info.UUID != c.uuid || !info.Raw || len(info.Warnings) == 0 {
			t.Errorf("%s: got %+v", c.typ, info)
		}
		ext, _ := fs.UsedExtents(context.Background())
		if len(ext) != 1 || ext[0].Off != 0 || ext[0].Len != size {
			t.Errorf("%s: extents %v", c.typ, ext)
		}
	}
	// A volume too small for a signature's offset is still handled.
	if fs, err := Detect(context.Background(), bytes.NewReader(make([]byte, 100)), 100); err != nil || fs.Info().Type != "unknown" {
		t.Errorf("tiny volume: %v %v", fs, err)
	}
}
