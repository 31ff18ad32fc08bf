package ext

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/engine/cow"
	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

// fileSHA256 hashes a whole file.
func fileSHA256(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

var minBytesRE = regexp.MustCompile(`smallest size its data allows is (\d+) bytes`)

// TestShrink shrinks file systems whose data reaches past the new end on a
// copy-on-write overlay of a read-only image, then copies only the shrunk
// file system's used extents into a smaller image, which must pass e2fsck
// and hold every file unchanged; the source must not change by a byte.
func TestShrink(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "mke2fs", "debugfs", "e2fsck", "resize2fs")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Skip(t, "needs /dev/fuse for the overlay's device path")
	}
	cases := []struct {
		name string
		size int64
		fill int // mkImage's scale; 0: frontDeleted with 24 files
		args []string
	}{
		{"ext4-4k", 256 << 20, 0, []string{"-t", "ext4", "-b", "4096"}},
		{"ext3-1k", 64 << 20, 2, []string{"-t", "ext3", "-b", "1024"}},
		{"ext2-4k", 96 << 20, 2, []string{"-t", "ext2", "-b", "4096", "-g", "2048"}},
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var img string
			if c.fill > 0 {
				img = mkImage(t, c.size, c.fill, c.args...)
			} else {
				img = frontDeleted(t, c.size, 24, c.args...)
			}
			sum := fileSHA256(t, img)
			before := treeOf(t, img)
			src, f := detectFile(t, img)
			ext, err := src.UsedExtents(ctx)
			if err != nil {
				t.Fatal(err)
			}
			used := fsmap.Total(ext)
			ro, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer ro.Close()
			ov, err := cow.New(ro, c.size, cow.Options{ScratchDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer ov.Close()

			_, err = Shrink(ctx, ov, 1<<20)
			if !errors.Is(err, fsmap.ErrTooSmall) {
				t.Fatalf("Shrink to 1 MiB: %v, want ErrTooSmall", err)
			}
			m := minBytesRE.FindStringSubmatch(err.Error())
			if m == nil {
				t.Fatalf("ErrTooSmall names no minimum: %v", err)
			}
			minBytes, _ := strconv.ParseInt(m[1], 10, 64)
			if minBytes <= used/2 || minBytes >= c.size {
				t.Fatalf("minimum %d bytes: implausible for %d bytes used of %d", minBytes, used, c.size)
			}
			if fileSHA256(t, img) != sum {
				t.Fatal("the source image changed")
			}
			// Just above the minimum, so that files must move.
			newSize := (minBytes + 2<<20) &^ (1<<20 - 1)
			beyond := fileBlocksBeyond(t, img, before, newSize/src.Info().BlockSize)
			if beyond == 0 {
				t.Fatalf("test setup: no file data past the new size %d: nothing would move", newSize)
			}

			got, err := Shrink(ctx, ov, newSize)
			if err != nil {
				t.Fatalf("Shrink to %d: %v", newSize, err)
			}
			if got > newSize || got < newSize-64<<10 {
				t.Errorf("Shrink to %d returned %d", newSize, got)
			}
			if fileSHA256(t, img) != sum {
				t.Fatal("the source image changed")
			}
			if _, err := Detect(ctx, f, c.size); err != nil {
				t.Fatal(err)
			}
			shrunk, err := Detect(ctx, ov, ov.Size())
			if err != nil {
				t.Fatalf("detect the shrunk file system: %v", err)
			}
			if shrunk.Info().Size != got {
				t.Errorf("shrunk file system spans %d bytes, Shrink said %d", shrunk.Info().Size, got)
			}
			sext, err := shrunk.UsedExtents(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if e := sext[len(sext)-1]; e.End() > got {
				t.Fatalf("used extent %+v past the new end %d", e, got)
			}
			cp := copyUsed(t, ov, sext, got)
			if out, code := toolCode(t, "e2fsck", "-fn", cp); code != 0 {
				t.Fatalf("e2fsck -fn on the shrunk copy: exit %d\n%s", code, out)
			}
			after := treeOf(t, cp)
			compareTrees(t, before, after)
			t.Logf("%s: %d -> %d bytes (asked %d, minimum %d), %d used, %d file blocks were past the new end; overlay held %d bytes; %d entries identical",
				c.name, c.size, got, newSize, minBytes, used, beyond, ov.Written(), len(after))
		})
	}
}

// fileBlocksBeyond counts the blocks of the regular files in tree (as
// treeOf returns it) that lie at or past block limit, per debugfs.
func fileBlocksBeyond(t *testing.T, img string, tree map[string]string, limit int64) int {
	t.Helper()
	n := 0
	for p, v := range tree {
		if !strings.HasPrefix(v, "file:") {
			continue
		}
		for _, f := range strings.Fields(tool(t, "debugfs", "-R", "blocks /"+p, img)) {
			b, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				t.Fatalf("debugfs blocks /%s: %q", p, f)
			}
			if b >= limit {
				n++
			}
		}
	}
	return n
}

// frontDeleted makes an image with mke2fs -d from n files of 2.5 MB, a
// small file, a directory and a symlink, then deletes the first two thirds
// of the big files: mke2fs places files from the start, so what remains
// lies well past what the data needs, and a shrink must move it.
func frontDeleted(t *testing.T, size int64, n int, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	rng := rand.New(rand.NewSource(size))
	var rm strings.Builder
	for i := 0; i < n; i++ {
		b := make([]byte, 2500000+rng.Intn(4096))
		rng.Read(b)
		name := fmt.Sprintf("big%02d", i)
		if err := os.MkdirAll(tree, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tree, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if i < n*2/3 {
			fmt.Fprintf(&rm, "rm /%s\n", name)
		}
	}
	if err := os.MkdirAll(filepath.Join(tree, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "sub", "note.txt"), []byte("kept across the shrink\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/note.txt", filepath.Join(tree, "link")); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "fs.img")
	sparseImage(t, img, size)
	tool(t, "mke2fs", append(append([]string{"-q", "-F", "-E", "nodiscard", "-d", tree}, args...), img)...)
	cmds := filepath.Join(dir, "rm.cmds")
	if err := os.WriteFile(cmds, []byte(rm.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tool(t, "debugfs", "-w", "-f", cmds, img)
	return img
}
