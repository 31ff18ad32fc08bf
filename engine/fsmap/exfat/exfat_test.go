package exfat

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	p, err := testenv.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(p, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func makeImage(t *testing.T, dir string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, "vol.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

// mount attaches img to a loop device and mounts it with exfat-fuse (the
// kernel here has no exfat driver); the returned function unmounts it.
func mount(t *testing.T, img string, readOnly bool) (string, func()) {
	t.Helper()
	args := []string{"-f", "--show", img}
	if readOnly {
		args = append([]string{"-r"}, args...)
	}
	loop := strings.TrimSpace(run(t, "losetup", args...))
	mnt := t.TempDir()
	margs := []string{loop, mnt}
	if readOnly {
		margs = append([]string{"-o", "ro"}, margs...)
	}
	if p, err := testenv.LookPath("mount.exfat-fuse"); err != nil {
		t.Fatal(err)
	} else if out, err := exec.Command(p, margs...).CombinedOutput(); err != nil {
		exec.Command("losetup", "-d", loop).Run()
		t.Fatalf("mount.exfat-fuse: %v\n%s", err, out)
	}
	done := false
	unmount := func() {
		if done {
			return
		}
		done = true
		run(t, "umount", mnt)
		run(t, "losetup", "-d", loop)
	}
	t.Cleanup(unmount)
	return mnt, unmount
}

// writeTree writes deterministic files and directories under dir.
func writeTree(t *testing.T, dir string, seed int64, budget int) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	sizes := []int{0, 1, 100, 4095, 4096, 4097, 30000, 200000}
	total := 0
	for i := 0; total < budget; i++ {
		sub := dir
		if i%3 != 0 {
			sub = filepath.Join(dir, fmt.Sprintf("dir%d", i%5), fmt.Sprintf("süb%d", i%3))
		}
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		n := sizes[rng.Intn(len(sizes))]
		if i%13 == 4 {
			n = budget / 5
		}
		n = min(n, budget-total)
		data := make([]byte, n)
		rng.Read(data)
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("File number %03d.bin", i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		total += n + 1
	}
}

func treeDigest(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			m[rel+"/"] = nil
			return nil
		}
		b, err := os.ReadFile(p)
		m[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func compareTrees(t *testing.T, want, got map[string][]byte) {
	t.Helper()
	for k, v := range want {
		w, ok := got[k]
		if !ok {
			t.Errorf("%s missing from copy", k)
		} else if !bytes.Equal(v, w) {
			t.Errorf("%s differs in copy", k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s only in copy", k)
		}
	}
}

func copyExtents(t *testing.T, src, dst string, ext []fsmap.Extent) {
	t.Helper()
	st, _ := os.Stat(src)
	in, _ := os.Open(src)
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	out.Truncate(st.Size())
	buf := make([]byte, 1<<20)
	for _, e := range ext {
		for done := int64(0); done < e.Len; {
			n := min(int64(len(buf)), e.Len-done)
			if _, err := in.ReadAt(buf[:n], e.Off+done); err != nil {
				t.Fatal(err)
			}
			if _, err := out.WriteAt(buf[:n], e.Off+done); err != nil {
				t.Fatal(err)
			}
			done += n
		}
	}
}

func detectFile(t *testing.T, img string) *FS {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, _ := f.Stat()
	got, err := Detect(context.Background(), f, st.Size())
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	return got.(*FS)
}

// blkid returns blkid's low-level probe of img. It asks for one value at a
// time because "-o export" escapes non-ASCII labels.
func blkid(t *testing.T, img string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, k := range []string{"TYPE", "UUID", "LABEL"} {
		p, _ := testenv.LookPath("blkid")
		out, _ := exec.Command(p, "-p", "-s", k, "-o", "value", img).Output()
		m[k] = strings.TrimSuffix(string(out), "\n")
	}
	return m
}

func TestUsedExtentsClone(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "mkfs.exfat", "fsck.exfat", "tune.exfat", "mount.exfat-fuse", "losetup", "umount", "blkid")
	cases := []struct {
		size    int64
		cluster string
		cs      int64
		label   string
		extra   []string
	}{
		{64 << 20, "4K", 4096, "Ünïcode", nil},
		{96 << 20, "32K", 32768, "", nil},
		{24 << 20, "512", 512, "packed", []string{"--pack-bitmap"}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("cluster%s%s", c.cluster, strings.Join(c.extra, "")), func(t *testing.T) {
			dir := t.TempDir()
			img := makeImage(t, dir, c.size)
			args := append([]string{"-c", c.cluster}, c.extra...)
			if c.label != "" {
				args = append(args, "-L", c.label)
			}
			run(t, "mkfs.exfat", append(args, img)...)
			run(t, "tune.exfat", "-I", "0x89abcdef", img)

			src := t.TempDir()
			writeTree(t, filepath.Join(src, "first"), 1, int(c.size/3))
			mnt, unmount := mount(t, img, false)
			run(t, "cp", "-r", filepath.Join(src, "first"), mnt)
			// Delete every third file to leave holes, then fill them.
			i := 0
			filepath.WalkDir(filepath.Join(mnt, "first"), func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					if i%3 == 1 {
						os.Remove(p)
					}
					i++
				}
				return nil
			})
			writeTree(t, filepath.Join(mnt, "second"), 2, int(c.size/4))
			// And leave some holes free.
			i = 0
			filepath.WalkDir(filepath.Join(mnt, "second"), func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					if i%4 == 2 {
						os.Remove(p)
					}
					i++
				}
				return nil
			})
			unmount()
			run(t, "fsck.exfat", "-n", img)

			f := detectFile(t, img)
			info := f.Info()
			bk := blkid(t, img)
			if info.Type != "exfat" || bk["TYPE"] != "exfat" {
				t.Errorf("Type %q, blkid %q", info.Type, bk["TYPE"])
			}
			if info.UUID != "89AB-CDEF" || info.UUID != bk["UUID"] {
				t.Errorf("UUID %q, blkid %q", info.UUID, bk["UUID"])
			}
			if info.Label != c.label || info.Label != bk["LABEL"] {
				t.Errorf("Label %q, want %q, blkid %q", info.Label, c.label, bk["LABEL"])
			}
			if info.Size != c.size || len(info.Warnings) != 0 {
				t.Errorf("Size %d of %d, warnings %v", info.Size, c.size, info.Warnings)
			}
			if info.BlockSize != c.cs {
				t.Errorf("BlockSize %d, want %d", info.BlockSize, c.cs)
			}
			ext, err := f.UsedExtents(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			origMnt, unmountOrig := mount(t, img, true)
			want := treeDigest(t, origMnt)
			unmountOrig()
			var data int64
			for _, b := range want {
				data += int64(len(b))
			}
			// The map must hold at least the file data, and leave out the
			// free space.
			used := fsmap.Total(ext)
			if used >= info.Size || used < data || f.Info().Used != used {
				t.Errorf("used %d of %d bytes with %d bytes of files (Info.Used %d)", used, info.Size, data, f.Info().Used)
			}
			cp := filepath.Join(dir, "copy.img")
			copyExtents(t, img, cp, ext)
			run(t, "fsck.exfat", "-n", cp)
			if got := blkid(t, cp); got["UUID"] != bk["UUID"] || got["LABEL"] != bk["LABEL"] {
				t.Errorf("copy blkid %v, original %v", got, bk)
			}
			cpMnt, unmountCp := mount(t, cp, true)
			compareTrees(t, want, treeDigest(t, cpMnt))
			unmountCp()
			t.Logf("cluster %s: %d entries, used %d of %d bytes in %d extents", c.cluster, len(want), used, info.Size, len(ext))
		})
	}
}

// fixBootChecksum rewrites sector 11 of the main boot region after a test
// changed the boot sector, so the damage under test is the only one.
func fixBootChecksum(b []byte) {
	ss := 1 << b[108]
	sum := bootChecksum(b, ss)
	for off := 11 * ss; off < 12*ss; off += 4 {
		binary.LittleEndian.PutUint32(b[off:], sum)
	}
}

func TestDirtyAndCorrupt(t *testing.T) {
	testenv.RequireTools(t, "mkfs.exfat")
	dir := t.TempDir()
	img := makeImage(t, dir, 32<<20)
	run(t, "mkfs.exfat", "-L", "x", img)
	orig, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	detect := func(b []byte) (fsmap.FS, error) {
		return Detect(context.Background(), bytes.NewReader(b), int64(len(b)))
	}
	// The dirty flag is outside the checksum: no fix-up needed.
	b := append([]byte(nil), orig...)
	b[106] |= flagVolumeDirty
	if fsys, err := detect(b); err != nil || len(fsys.Info().Warnings) != 1 {
		t.Fatalf("dirty: %v", err)
	}
	g, err := parseBoot(orig[:512], int64(len(orig)))
	if err != nil {
		t.Fatal(err)
	}
	put32 := func(off int64, v uint32) func([]byte) {
		return func(b []byte) { binary.LittleEndian.PutUint32(b[off:], v) }
	}
	cases := map[string]struct {
		mutate  func([]byte)
		fixSum  bool
		atUsage bool // the error shows when the bitmap is read
	}{
		"checksum":               {mutate: func(b []byte) { b[120] ^= 1 }},
		"volume length":          {mutate: put32(72, 0xFFFFFFF), fixSum: true},
		"cluster count":          {mutate: put32(92, 0x7FFFFFFF), fixSum: true},
		"root cluster":           {mutate: put32(96, 1), fixSum: true},
		"sector shift":           {mutate: func(b []byte) { b[108] = 13 }, fixSum: true},
		"FAT over heap":          {mutate: put32(84, 0x100000), fixSum: true},
		"root chain leaves heap": {mutate: put32(g.fatStart()+g.rootClus*4, 0x7FFFFF)},
		"no bitmap entry": {mutate: func(b []byte) {
			off := g.clusterOff(g.rootClus)
			for i := int64(0); i < g.cs; i += 32 {
				if b[off+i] == entryBitmap {
					b[off+i] = 0x01 // unused-entry type
				}
			}
		}},
	}
	for name, c := range cases {
		b := append([]byte(nil), orig...)
		c.mutate(b)
		if c.fixSum {
			fixBootChecksum(b)
		}
		fsys, err := detect(b)
		if err == nil {
			_, err = fsys.UsedExtents(context.Background())
		}
		if err == nil || errors.Is(err, fsmap.ErrNotDetected) {
			t.Errorf("%s: err = %v, want a damage error", name, err)
		}
	}
	for name, data := range map[string][]byte{"zeros": make([]byte, 1<<20), "short": {1, 2}, "fat": append([]byte{0xEB, 0x3C, 0x90}, "mkfs.fat"...)} {
		if _, err := detect(append(data, make([]byte, 600)...)); !errors.Is(err, fsmap.ErrNotDetected) {
			t.Errorf("%s: err = %v, want ErrNotDetected", name, err)
		}
	}
}

func FuzzDetect(f *testing.F) {
	if p, err := testenv.LookPath("mkfs.exfat"); err == nil {
		for _, c := range []string{"512", "4K"} {
			img := filepath.Join(f.TempDir(), "seed"+c)
			os.WriteFile(img, nil, 0o644)
			os.Truncate(img, 8<<20)
			if exec.Command(p, "-c", c, "-L", "seed", "-b", "16K", img).Run() == nil {
				b, _ := os.ReadFile(img)
				// Keep the boot regions, FAT and the first clusters
				// (bitmap, up-case table, root directory).
				f.Add(b[:96<<10])
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Also try the input with a valid checksum, or mutations of the
		// boot sector would never get past it.
		fixed := append([]byte(nil), data...)
		if len(fixed) >= 12*4096 && fixed[108] >= 9 && fixed[108] <= 12 {
			fixBootChecksum(fixed)
		}
		for _, in := range []struct {
			b    []byte
			size int64
		}{{data, int64(len(data))}, {fixed, int64(len(data))}, {fixed, int64(len(data)) * 64}} {
			fsys, err := Detect(context.Background(), bytes.NewReader(in.b), in.size)
			if err != nil {
				continue
			}
			ext, err := fsys.UsedExtents(context.Background())
			if err != nil {
				continue
			}
			info := fsys.Info()
			for i, e := range ext {
				if e.Off < 0 || e.Len <= 0 || e.End() > info.Size || (i > 0 && e.Off <= ext[i-1].End()) {
					t.Fatalf("bad extent %d %+v of %d", i, e, info.Size)
				}
			}
		}
	})
}
