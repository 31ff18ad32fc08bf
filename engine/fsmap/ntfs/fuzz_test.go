package ntfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"testing"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

// FuzzDetect runs Detect and UsedExtents on a small mkntfs image whose
// boot sector and first MFT records are patched by the fuzz input: each
// 3-byte group (offset, little-endian 16 bits; value) sets one byte of that
// region. Patches keep inputs small, so minimising them stays cheap, while
// reaching every field the parser reads first. size is the volume size the
// detector is told.
func FuzzDetect(f *testing.F) {
	img := makeNTFS(f, f.TempDir(), 2<<20, "fuzz")
	base, err := os.ReadFile(img)
	if err != nil {
		f.Fatal(err)
	}
	cs := int64(base[0x0d]) * int64(binary.LittleEndian.Uint16(base[0x0b:]))
	mftOff := int64(binary.LittleEndian.Uint64(base[0x30:])) * cs
	const mftLen = 16 << 10
	// region maps patch offsets: the boot sector, then the MFT's start.
	region := func(i int) int64 {
		i %= 512 + mftLen
		if i < 512 {
			return int64(i)
		}
		return mftOff + int64(i-512)
	}
	if fsys, err := Detect(context.Background(), bytes.NewReader(base), int64(len(base))); err != nil {
		f.Fatalf("Detect on the seed: %v", err)
	} else if _, err := fsys.UsedExtents(context.Background()); err != nil {
		f.Fatalf("UsedExtents on the seed: %v", err)
	}
	patch := func(pairs ...int) []byte {
		var p []byte
		for i := 0; i+1 < len(pairs); i += 2 {
			p = binary.LittleEndian.AppendUint16(p, uint16(pairs[i]))
			p = append(p, byte(pairs[i+1]))
		}
		return p
	}
	f.Add([]byte{}, int64(len(base)))
	f.Add([]byte{}, int64(len(base)/2))
	f.Add(patch(0x0d, 0xf8), int64(len(base)))                 // negative cluster exponent
	f.Add(patch(0x40, 0x01), int64(len(base)))                 // record size in clusters
	f.Add(patch(512+1022, 0), int64(len(base)))                // torn $MFT record
	f.Add(patch(512+6*1024+0x140, 0x44), int64(len(base)))     // $Bitmap data
	f.Add(patch(512+3*1024+0x16, 0), int64(len(base)))         // $Volume unused
	f.Add(patch(512+5*1024+0x100, 0xff), int64(len(base)))     // root index
	f.Add(patch(0x28, 0xff, 0x29, 0xff), int64(len(base)+512)) // total sectors
	img2 := make([]byte, len(base))
	f.Fuzz(func(t *testing.T, patches []byte, size int64) {
		if size <= 0 || size > int64(len(base)) {
			size = int64(len(base))
		}
		copy(img2, base)
		for i := 0; i+3 <= len(patches); i += 3 {
			img2[region(int(binary.LittleEndian.Uint16(patches[i:])))] = patches[i+2]
		}
		got, err := Detect(context.Background(), bytes.NewReader(img2[:size]), size)
		if err != nil {
			return
		}
		info := got.Info()
		if info.Size > size || info.Size <= 0 {
			t.Fatalf("Size %d outside a %d-byte volume", info.Size, size)
		}
		ext, err := got.UsedExtents(context.Background())
		if err != nil {
			return
		}
		if n := fsmap.Normalize(ext, info.Size); len(n) != len(ext) || fsmap.Total(n) != fsmap.Total(ext) {
			t.Fatalf("extents not normalised within the volume: %v", ext)
		}
	})
}
