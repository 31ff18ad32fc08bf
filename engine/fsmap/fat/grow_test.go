package fat

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// fileVolume is an image file seen as a fsmap.Volume.
type fileVolume struct {
	*os.File
	size int64
}

func (v *fileVolume) Size() int64 { return v.size }

func (v *fileVolume) DevicePath(ctx context.Context) (string, func() error, error) {
	return v.Name(), func() error { return nil }, nil
}

func growImage(t *testing.T, img string, newSize int64) {
	t.Helper()
	if err := os.Truncate(img, newSize); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Grow(context.Background(), &fileVolume{f, newSize}, newSize); err != nil {
		t.Fatalf("Grow: %v", err)
	}
}

func TestGrow(t *testing.T) {
	testenv.RequireTools(t, "mkfs.fat", "fsck.fat", "mcopy", "mdel", "blkid")
	cases := []struct {
		name      string
		bits, spc int
		size      int64
		newSize   int64 // 0: grow into the slack of the last FAT sector
		fatGrows  bool
		capped    bool
		sector    int
	}{
		{name: "FAT16 FAT grows 4K sectors", bits: 16, spc: 1, size: 64 << 20, newSize: 128 << 20, fatGrows: true, sector: 4096},
		{name: "FAT32 room in FAT", bits: 32, spc: 1, size: 64 << 20, newSize: 0},
		{name: "FAT16 room in FAT", bits: 16, spc: 8, size: 64 << 20, newSize: 0},
		{name: "FAT32 FAT grows", bits: 32, spc: 1, size: 64 << 20, newSize: 512 << 20, fatGrows: true},
		{name: "FAT16 FAT grows", bits: 16, spc: 4, size: 40 << 20, newSize: 100 << 20, fatGrows: true},
		{name: "FAT12 FAT grows", bits: 12, spc: 4, size: 4 << 20, newSize: 7 << 20, fatGrows: true},
		{name: "FAT16 capped at 65523 clusters", bits: 16, spc: 2, size: 32 << 20, newSize: 300 << 20, fatGrows: true, capped: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := makeImage(t, "fat.img", c.size)
			sector := max(c.sector, 512)
			run(t, "mkfs.fat", "-F", fmt.Sprint(c.bits), "-s", fmt.Sprint(c.spc), "-S", fmt.Sprint(sector), "-n", "GROWME", "-i", "CAFEF00D", img)
			populate(t, img, int(min(c.size/3, 16<<20)))
			before := extract(t, img)
			freeBefore := freeBytes(t, img)
			old, _ := detectFile(t, img)
			og := *old.g
			newSize := c.newSize
			if newSize == 0 {
				slack := og.fatCapacity() - 2 - og.clusters
				if slack < 8 {
					t.Fatalf("test setup: only %d spare FAT entries", slack)
				}
				newSize = (og.dataSec+(og.clusters+slack)*og.spc)*og.bps + 1000
			}
			growImage(t, img, newSize)

			fsckClean(t, img)
			compareTrees(t, before, extract(t, img))
			grown, _ := detectFile(t, img)
			ng := grown.g
			info := grown.Info()
			bk := blkid(t, img)
			if info.Variant != og.variant || bk["VERSION"] != og.variant || bk["UUID"] != "CAFE-F00D" || bk["LABEL"] != "GROWME" {
				t.Errorf("after grow: variant %s, blkid %v", info.Variant, bk)
			}
			if (ng.fatSz != og.fatSz) != c.fatGrows {
				t.Errorf("FAT size %d -> %d, want grown=%v", og.fatSz, ng.fatSz, c.fatGrows)
			}
			switch {
			case c.capped:
				if ng.clusters != growMaxClusters(og.bits) || info.Size >= newSize {
					t.Errorf("capped grow: %d clusters, size %d of %d", ng.clusters, info.Size, newSize)
				}
			case c.newSize == 0:
				if ng.clusters != og.fatCapacity()-2 {
					t.Errorf("room grow: %d clusters, FAT holds %d", ng.clusters, og.fatCapacity()-2)
				}
			default:
				if info.Size < newSize-ng.clusterBytes() {
					t.Errorf("grown size %d, want about %d", info.Size, newSize)
				}
			}
			if ng.clusters <= og.clusters {
				t.Fatalf("clusters %d -> %d", og.clusters, ng.clusters)
			}
			// mtools must count every added cluster as free.
			if got, want := freeBytes(t, img), freeBefore+(ng.clusters-og.clusters)*ng.clusterBytes(); got != want {
				t.Errorf("mdir reports %d bytes free after growing, want %d", got, want)
			}
			// A file bigger than the space left before must now fit.
			add := min(freeBefore+(ng.clusters-og.clusters)*ng.clusterBytes()/2, freeBefore+(32<<20))
			data := make([]byte, add)
			rand.New(rand.NewSource(9)).Read(data)
			src := filepath.Join(t.TempDir(), "newspace.bin")
			os.WriteFile(src, data, 0o644)
			run(t, "mcopy", "-i", img, src, "::/")
			fsckClean(t, img)
			after := extract(t, img)
			got, err := os.ReadFile(filepath.Join(after, "newspace.bin"))
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("file written into the new space reads back wrong (%v)", err)
			}
			os.Remove(filepath.Join(after, "newspace.bin"))
			n := compareTrees(t, before, after)
			t.Logf("%s: %d -> %d clusters, FAT %d -> %d sectors, %d entries intact", c.name, og.clusters, ng.clusters, og.fatSz, ng.fatSz, n)
		})
	}
}

// freeBytes returns the free space mdir reports for img.
func freeBytes(t *testing.T, img string) int64 {
	t.Helper()
	out := run(t, "mdir", "-i", img, "::/")
	for _, l := range strings.Split(out, "\n") {
		if num, ok := strings.CutSuffix(strings.TrimSpace(l), " bytes free"); ok {
			n, err := strconv.ParseInt(strings.ReplaceAll(num, " ", ""), 10, 64)
			if err != nil {
				t.Fatalf("mdir free line %q: %v", l, err)
			}
			return n
		}
	}
	t.Fatalf("no free space in mdir output:\n%s", out)
	return 0
}
