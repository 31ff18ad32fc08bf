package exfat

import (
	"bytes"
	"context"
	"math/rand"
	"os"
	"path/filepath"
	"syscall"
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

func TestGrow(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "mkfs.exfat", "fsck.exfat", "mount.exfat-fuse", "losetup", "umount")
	cases := []struct {
		name          string
		size, newSize int64
		cluster       string
		extra         []string
		heapMoves     bool
	}{
		{name: "room in FAT", size: 32 << 20, newSize: 33 << 20, cluster: "4K"},
		// mkfs.exfat aligns the heap to 1 MiB: the FAT can grow into the gap.
		{name: "FAT grows into the gap, bitmap moves", size: 32 << 20, newSize: 1 << 30, cluster: "4K"},
		{name: "heap moves", size: 32 << 20, newSize: 8 << 30, cluster: "4K", heapMoves: true},
		{name: "small clusters, packed bitmap", size: 16 << 20, newSize: 200 << 20, cluster: "512", extra: []string{"--pack-bitmap"}, heapMoves: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			img := makeImage(t, dir, c.size)
			run(t, "mkfs.exfat", append(append([]string{"-c", c.cluster, "-L", "grow"}, c.extra...), img)...)
			mnt, unmount := mount(t, img, false)
			writeTree(t, filepath.Join(mnt, "tree"), 3, int(c.size/3))
			want := treeDigest(t, mnt)
			unmount()
			old := detectFile(t, img)

			if err := os.Truncate(img, c.newSize); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(img, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			err = Grow(context.Background(), &fileVolume{f, c.newSize}, c.newSize)
			f.Close()
			if err != nil {
				t.Fatalf("Grow: %v", err)
			}
			run(t, "fsck.exfat", "-n", img)
			grown := detectFile(t, img)
			if grown.Info().Size != c.newSize || grown.Info().Label != "grow" || grown.Info().UUID != old.Info().UUID {
				t.Errorf("grown: %+v", grown.Info())
			}
			if moved := grown.g.heapOff != old.g.heapOff; moved != c.heapMoves {
				t.Errorf("heap moved %v, want %v", moved, c.heapMoves)
			}
			wantClusters := (c.newSize/grown.g.ss - grown.g.heapOff) / (grown.g.cs / grown.g.ss)
			if grown.g.clusters != wantClusters {
				t.Errorf("%d clusters, want %d", grown.g.clusters, wantClusters)
			}

			mnt, unmount = mount(t, img, false)
			compareTrees(t, want, treeDigest(t, mnt))
			var st syscall.Statfs_t
			if err := syscall.Statfs(mnt, &st); err != nil {
				t.Fatal(err)
			}
			free := int64(st.Bfree) * st.Bsize
			// Fill most of the free space, which is now mostly the new
			// clusters, and read it back.
			data := make([]byte, min(free*3/4, 256<<20))
			rand.New(rand.NewSource(5)).Read(data)
			if err := os.WriteFile(filepath.Join(mnt, "new.bin"), data, 0o644); err != nil {
				t.Fatalf("write into the new space (%d bytes free): %v", free, err)
			}
			unmount()
			run(t, "fsck.exfat", "-n", img)
			mnt, unmount = mount(t, img, true)
			got, err := os.ReadFile(filepath.Join(mnt, "new.bin"))
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("new file reads back wrong: %v", err)
			}
			os.Remove(filepath.Join(mnt, "new.bin"))
			after := treeDigest(t, mnt)
			delete(after, "new.bin")
			compareTrees(t, want, after)
			unmount()
			t.Logf("%s: %d -> %d clusters, FAT %d -> %d sectors, heap %d -> %d, %d bytes free after growing", c.name, old.g.clusters, grown.g.clusters, old.g.fatLen, grown.g.fatLen, old.g.heapOff, grown.g.heapOff, free)
		})
	}
}
