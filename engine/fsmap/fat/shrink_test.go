package fat

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/lifeboat/lifeboat/engine/cow"
	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

var minBytesRE = regexp.MustCompile(`smallest size its data allows is (\d+) bytes`)

func sha256Of(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// highImage makes a FAT image whose files lie in its upper part: a ballast
// file takes the low clusters, the tree goes in after it, and the ballast
// is deleted, so a shrink must move every file and directory.
func highImage(t *testing.T, bits, spc, sector int, size int64, ballast, budget int) string {
	t.Helper()
	img := makeImage(t, "fat.img", size)
	run(t, "mkfs.fat", "-F", fmt.Sprint(bits), "-s", fmt.Sprint(spc), "-S", fmt.Sprint(sector), "-n", "SHRINKME", "-i", "0BADF00D", img)
	b := filepath.Join(t.TempDir(), "ballast.bin")
	if err := os.WriteFile(b, make([]byte, ballast), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "mcopy", "-i", img, b, "::/")
	populate(t, img, budget)
	run(t, "mdel", "-i", img, "::/ballast.bin")
	return img
}

// copyFrom writes the extents of r into a new image of size bytes.
func copyFrom(t *testing.T, r io.ReaderAt, ext []fsmap.Extent, size int64) string {
	t.Helper()
	dst := makeImage(t, "shrunk.img", size)
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	for _, e := range ext {
		if e.End() > size {
			t.Fatalf("used extent %+v past the new size %d", e, size)
		}
		if _, err := io.Copy(io.NewOffsetWriter(out, e.Off), io.NewSectionReader(r, e.Off, e.Len)); err != nil {
			t.Fatal(err)
		}
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestShrink shrinks FAT12, FAT16 and FAT32 images whose files all lie
// past the new end on a copy-on-write overlay of the read-only image, to
// the smallest size Shrink names and to a size between, then copies only
// the used extents into an image of the new size: fsck.fat must pass,
// blkid must see the same type, UUID and label, mdir the right free space,
// and every file must come back identical. The source must not change.
func TestShrink(t *testing.T) {
	testenv.RequireTools(t, "mkfs.fat", "fsck.fat", "mcopy", "mdel", "mdir", "blkid")
	cases := []struct {
		name              string
		bits, spc, sector int
		size              int64
		ballast, budget   int
	}{
		{"FAT12", 12, 2, 512, 3 << 20, 1 << 20, 1 << 20},
		{"FAT16", 16, 4, 512, 48 << 20, 24 << 20, 4 << 20},
		{"FAT32", 32, 1, 512, 96 << 20, 56 << 20, 12 << 20},
		{"FAT32 4K sectors", 32, 1, 4096, 320 << 20, 280 << 20, 12 << 20},
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := highImage(t, c.bits, c.spc, c.sector, c.size, c.ballast, c.budget)
			fsckClean(t, img)
			before := extract(t, img)
			sum := sha256Of(t, img)
			src, _ := detectFile(t, img)
			og := *src.g

			ro, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer ro.Close()
			probe, err := cow.New(ro, c.size, cow.Options{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = Shrink(ctx, probe, 64<<10)
			if !errors.Is(err, fsmap.ErrTooSmall) {
				t.Fatalf("Shrink to 64 KiB: %v, want ErrTooSmall", err)
			}
			m := minBytesRE.FindStringSubmatch(err.Error())
			if m == nil {
				t.Fatalf("ErrTooSmall names no minimum: %v", err)
			}
			if probe.Written() != 0 {
				t.Errorf("refused shrink wrote %d bytes", probe.Written())
			}
			probe.Close()
			minSize, _ := strconv.ParseInt(m[1], 10, 64)
			if minSize >= c.size || minSize <= int64(og.dataSec*og.bps) {
				t.Fatalf("minimum %d of %d: implausible", minSize, c.size)
			}
			srcExt, err := src.UsedExtents(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// The minimum, and halfway from it to the end of the data.
			for _, newSize := range []int64{minSize, (minSize + srcExt[len(srcExt)-1].End()) / 2} {
				// Used clusters past the new end: what must move.
				limit := (newSize/og.bps-og.dataSec)/og.spc + 2
				runs, _, err := src.usedRuns(ctx)
				if err != nil {
					t.Fatal(err)
				}
				var beyond int64
				for _, r := range runs {
					beyond += max(0, r.first+r.n-max(r.first, limit))
				}
				if beyond == 0 {
					t.Fatalf("test setup: no used cluster past cluster %d: nothing would move", limit)
				}
				ov, err := cow.New(ro, c.size, cow.Options{ScratchDir: t.TempDir()})
				if err != nil {
					t.Fatal(err)
				}
				got, err := Shrink(ctx, ov, newSize)
				if err != nil {
					t.Fatalf("Shrink to %d: %v", newSize, err)
				}
				if got > newSize || got <= newSize-og.bps {
					t.Errorf("Shrink to %d returned %d", newSize, got)
				}
				if sha256Of(t, img) != sum {
					t.Fatal("the source image changed")
				}
				fsys, err := Detect(ctx, ov, ov.Size())
				if err != nil {
					t.Fatalf("detect the shrunk file system: %v", err)
				}
				ng := fsys.(*FS).g
				if fsys.Info().Size != got || ng.variant != og.variant {
					t.Errorf("shrunk: %s of %d bytes, want %s of %d", ng.variant, fsys.Info().Size, og.variant, got)
				}
				ext, err := fsys.UsedExtents(ctx)
				if err != nil {
					t.Fatal(err)
				}
				cp := copyFrom(t, ov, ext, got)
				ov.Close()
				fsckClean(t, cp)
				bk := blkid(t, cp)
				if bk["VERSION"] != og.variant || bk["UUID"] != "0BAD-F00D" || bk["LABEL"] != "SHRINKME" {
					t.Errorf("blkid of the shrunk copy: %v", bk)
				}
				cu, _ := detectFile(t, cp)
				_, usedClusters, err := cu.usedRuns(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if free, want := freeBytes(t, cp), (ng.clusters-usedClusters)*ng.clusterBytes(); free != want {
					t.Errorf("mdir reports %d bytes free, want %d", free, want)
				}
				n := compareTrees(t, before, extract(t, cp))
				t.Logf("%s: %d -> %d bytes (asked %d, minimum %d): %d -> %d clusters, %d used, %d moved; %d entries identical",
					c.name, c.size, got, newSize, minSize, og.clusters, ng.clusters, usedClusters, beyond, n)
			}
		})
	}
}

// TestShrinkKeepsSize checks that a size at or above the current one
// changes nothing.
func TestShrinkKeepsSize(t *testing.T) {
	testenv.RequireTools(t, "mkfs.fat")
	img := makeImage(t, "fat.img", 8<<20)
	run(t, "mkfs.fat", "-F", "16", "-s", "1", img)
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	ov, err := cow.New(bytes.NewReader(b), int64(len(b)), cow.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ov.Close()
	for _, size := range []int64{8 << 20, 9 << 20} {
		got, err := Shrink(context.Background(), ov, size)
		if err != nil || got != 8<<20 {
			t.Errorf("Shrink to %d: %d, %v", size, got, err)
		}
	}
	if ov.Written() != 0 {
		t.Errorf("a no-op shrink wrote %d bytes", ov.Written())
	}
}

// TestShrinkMovesFAT32Root moves a FAT32 root directory's first cluster
// to the last cluster by hand (mkfs.fat always puts it first), then
// shrinks: the root cluster in both boot sectors must follow it.
func TestShrinkMovesFAT32Root(t *testing.T) {
	testenv.RequireTools(t, "mkfs.fat", "fsck.fat", "mcopy", "mdel", "mdir", "blkid")
	const size = 96 << 20
	img := makeImage(t, "fat.img", size)
	run(t, "mkfs.fat", "-F", "32", "-s", "1", "-n", "ROOTMOVE", img)
	populate(t, img, 2<<20)
	src, _ := detectFile(t, img)
	g := src.g
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	last := g.clusters + 1
	fatOff := g.fatCopyOff(0)
	tb := &table{b: b[fatOff : fatOff+g.fatSz*g.bps], bits: 32}
	if tb.get(last) != 0 {
		t.Fatalf("test setup: last cluster %d in use", last)
	}
	cb := g.clusterBytes()
	copy(b[g.clusterOff(last):g.clusterOff(last)+cb], b[g.clusterOff(g.rootClus):g.clusterOff(g.rootClus)+cb])
	tb.set(last, tb.get(g.rootClus))
	tb.set(g.rootClus, 0)
	for k := int64(1); k < g.nfats; k++ {
		copy(b[g.fatCopyOff(k):g.fatCopyOff(k)+g.fatSz*g.bps], tb.b)
	}
	for _, sec := range []int64{0, g.bkBoot} {
		binary.LittleEndian.PutUint32(b[sec*g.bps+44:], uint32(last))
	}
	if err := os.WriteFile(img, b, 0o644); err != nil {
		t.Fatal(err)
	}
	fsckClean(t, img)
	before := extract(t, img)
	ov, err := cow.New(bytes.NewReader(b), size, cow.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ov.Close()
	newSize := int64(40 << 20)
	got, err := Shrink(context.Background(), ov, newSize)
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := Detect(context.Background(), ov, ov.Size())
	if err != nil {
		t.Fatal(err)
	}
	ng := fsys.(*FS).g
	if ng.rootClus >= ng.clusters+2 || ng.rootClus == last {
		t.Fatalf("root cluster %d after shrinking to %d clusters", ng.rootClus, ng.clusters)
	}
	bk := make([]byte, 512)
	if _, err := ov.ReadAt(bk, g.bkBoot*g.bps); err != nil {
		t.Fatal(err)
	}
	if r := int64(binary.LittleEndian.Uint32(bk[44:])); r != ng.rootClus {
		t.Errorf("backup boot sector names root cluster %d, the primary %d", r, ng.rootClus)
	}
	ext, err := fsys.UsedExtents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cp := copyFrom(t, ov, ext, got)
	fsckClean(t, cp)
	if bk := blkid(t, cp); bk["LABEL"] != "ROOTMOVE" {
		t.Errorf("blkid label %q after moving the root", bk["LABEL"])
	}
	n := compareTrees(t, before, extract(t, cp))
	t.Logf("root cluster %d -> %d; %d entries identical", last, ng.rootClus, n)
}

// FuzzShrink runs Shrink on mutated small FAT images: it must return an
// error or a file system Detect accepts, never panic or hang.
func FuzzShrink(f *testing.F) {
	if p, err := testenv.LookPath("mkfs.fat"); err == nil {
		for _, c := range []struct {
			bits, spc string
			size      int64
		}{{"12", "1", 512 << 10}, {"16", "1", 4200 << 10}, {"32", "1", 34 << 20}} {
			img := filepath.Join(f.TempDir(), "seed"+c.bits)
			os.WriteFile(img, nil, 0o644)
			os.Truncate(img, c.size)
			if exec.Command(p, "-F", c.bits, "-s", c.spc, img).Run() != nil {
				continue
			}
			// A directory and a file near the end give Shrink work.
			if m, err := testenv.LookPath("mmd"); err == nil {
				exec.Command(m, "-i", img, "::/d").Run()
			}
			b, _ := os.ReadFile(img)
			f.Add(b[:min(len(b), 64<<10)], uint16(900))
		}
	}
	f.Fuzz(func(t *testing.T, head []byte, keepKiB uint16) {
		// The fuzzed head is the start of a larger, otherwise zero volume.
		const size = 36 << 20
		ov, err := cow.New(zeroTail(head), size, cow.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer ov.Close()
		got, err := Shrink(context.Background(), ov, int64(keepKiB)<<10)
		if err != nil {
			return
		}
		if got > size {
			t.Fatalf("Shrink returned %d for a %d-byte volume", got, size)
		}
		if _, err := Detect(context.Background(), ov, got); err != nil && got < size {
			t.Fatalf("shrunk to %d bytes but Detect fails: %v", got, err)
		}
	})
}

// zeroTail reads as its bytes followed by zeros, without allocating them.
type zeroTail []byte

func (z zeroTail) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	if off < int64(len(z)) {
		copy(p, z[off:])
	}
	return len(p), nil
}
