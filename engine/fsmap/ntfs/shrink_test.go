package ntfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/lifeboat/lifeboat/engine/cow"
	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

func sha256File(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

var minBytesRE = regexp.MustCompile(`smallest size its data allows is (\d+) bytes`)

// TestShrink fills a volume so data lies all over it, shrinks it on a
// copy-on-write overlay of the read-only image to just above the smallest
// size ntfsresize allows, copies only the shrunk volume's used extents into
// an image of the new size, and checks that copy with ntfsfix, a read-only
// ntfs-3g mount comparing every file, and the backup boot sector. The
// source image must not change.
func TestShrink(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "mkntfs", "ntfs-3g", "ntfsresize", "ntfsfix")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Skip(t, "needs /dev/fuse")
	}
	ctx := context.Background()
	dir := t.TempDir()
	const size = 96 << 20
	img := makeNTFS(t, dir, size, "shrink me")
	mnt, unmount := mount(t, img, false)
	fill(t, mnt, 15)
	unmount()
	sum := sha256File(t, img)
	src, err := detectFile(t, img)
	if err != nil {
		t.Fatal(err)
	}
	srcExt, err := src.UsedExtents(ctx)
	if err != nil {
		t.Fatal(err)
	}

	ro, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	ov, err := cow.New(ro, size, cow.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ov.Close()

	_, err = Shrink(ctx, ov, 4<<20)
	if !errors.Is(err, fsmap.ErrTooSmall) {
		t.Fatalf("Shrink to 4 MiB: %v, want ErrTooSmall", err)
	}
	m := minBytesRE.FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("ErrTooSmall names no minimum: %v", err)
	}
	minBytes, _ := strconv.ParseInt(m[1], 10, 64)
	used := fsmap.Total(srcExt)
	if minBytes < used/2 || minBytes >= size {
		t.Fatalf("minimum %d bytes: implausible for %d used of %d", minBytes, used, size)
	}
	newSize := minBytes + 1<<20 + 1000 // not sector-aligned on purpose
	var beyond int64
	for _, e := range srcExt {
		if e.End() > newSize && e.Off < src.v.b.totalSectors*src.v.b.bytesPerSector {
			beyond += e.End() - max(e.Off, newSize)
		}
	}
	if beyond < 1<<20 {
		t.Fatalf("test setup: only %d used bytes past the new size %d: nothing much would move", beyond, newSize)
	}

	got, err := Shrink(ctx, ov, newSize)
	if err != nil {
		t.Fatalf("Shrink to %d: %v", newSize, err)
	}
	if got > newSize || got < newSize-src.Info().BlockSize-512 {
		t.Errorf("Shrink to %d returned %d", newSize, got)
	}
	if sha256File(t, img) != sum {
		t.Fatal("the source image changed")
	}
	shrunk, err := Detect(ctx, ov, ov.Size())
	if err != nil {
		t.Fatalf("detect the shrunk volume: %v", err)
	}
	if shrunk.Info().Size != got {
		t.Errorf("shrunk volume spans %d bytes, Shrink said %d", shrunk.Info().Size, got)
	}
	ext, err := shrunk.UsedExtents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "shrunk.img")
	copyFromReader(t, ov, cp, got, ext)

	// The copy alone, exactly the new size, must be a whole volume.
	fsys, err := detectFile(t, cp)
	if err != nil {
		t.Fatalf("detect the copy: %v", err)
	}
	if fsys.Info().Size != got || len(fsys.Info().Warnings) != 1 || fsys.Info().Warnings[0] != warnDirty {
		t.Errorf("copy: size %d (want %d), warnings %q (want only the dirty one ntfsresize leaves)", fsys.Info().Size, got, fsys.Info().Warnings)
	}
	b, err := os.ReadFile(cp)
	if err != nil {
		t.Fatal(err)
	}
	bps := fsys.v.b.bytesPerSector
	if !bytes.Equal(b[got-bps:], b[:bps]) {
		t.Error("the last sector of the shrunk volume is not the backup boot sector")
	}
	if out, err := toolErr("ntfsfix", "-n", cp); err != nil {
		t.Fatalf("ntfsfix -n on the shrunk copy: %v\n%s", err, out)
	}
	origMnt, _ := mount(t, img, true)
	cpMnt, _ := mount(t, cp, true)
	want := treeSum(t, origMnt)
	compareTrees(t, want, treeSum(t, cpMnt))
	t.Logf("%d -> %d bytes (asked %d, minimum %d), %d used bytes were past the new end; overlay held %d bytes; %d entries identical",
		int64(size), got, newSize, minBytes, beyond, ov.Written(), len(want))

	// Shrinking an already shrunk volume to its own size changes nothing.
	if again, err := Shrink(ctx, ov, got); err != nil || again != got {
		t.Errorf("Shrink to the current size: %d, %v", again, err)
	}
}

// TestShrinkRefusesHibernated checks that a hibernated volume is refused
// before ntfsresize runs.
func TestShrinkRefusesHibernated(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "mkntfs", "ntfs-3g")
	dir := t.TempDir()
	img := makeNTFS(t, dir, 32<<20, "hiber")
	mnt, unmount := mount(t, img, false)
	hib := bytes.Repeat([]byte{0}, 64<<10)
	copy(hib, "HIBR")
	writeFile(t, filepath.Join(mnt, "hiberfil.sys"), hib)
	unmount()
	sum := sha256File(t, img)
	ro, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	ov, err := cow.New(ro, 32<<20, cow.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ov.Close()
	_, err = Shrink(context.Background(), ov, 16<<20)
	if err == nil || errors.Is(err, fsmap.ErrTooSmall) {
		t.Fatalf("Shrink of a hibernated volume: %v, want a refusal", err)
	}
	if ov.Written() != 0 || sha256File(t, img) != sum {
		t.Errorf("refused shrink wrote %d bytes to the overlay or changed the source", ov.Written())
	}
	t.Logf("refused: %v", err)
}

// copyFromReader writes the extents of r into a new file of size bytes.
func copyFromReader(t *testing.T, r io.ReaderAt, dst string, size int64, ext []fsmap.Extent) {
	t.Helper()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := out.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, e := range ext {
		if e.End() > size {
			t.Fatalf("used extent %+v past the new size %d", e, size)
		}
		if _, err := io.Copy(io.NewOffsetWriter(out, e.Off), io.NewSectionReader(r, e.Off, e.Len)); err != nil {
			t.Fatalf("copy extent %+v: %v", e, err)
		}
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
