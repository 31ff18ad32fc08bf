package fat

import (
	"bytes"
	"context"
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

// run runs a tool found with testenv.LookPath and returns its output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(name string, args ...string) (string, error) {
	p, err := testenv.LookPath(name)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(p, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// makeImage creates a sparse file of size bytes.
func makeImage(t *testing.T, name string, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
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

// writeTree writes a deterministic tree of files under dir: small files,
// nested directories and a few large files, totalling about budget bytes.
func writeTree(t *testing.T, dir string, seed int64, budget int) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	sizes := []int{0, 1, 100, 511, 512, 513, 4000, 20000, 70000}
	total := 0
	for i := 0; total < budget; i++ {
		sub := dir
		if i%3 != 0 {
			sub = filepath.Join(dir, fmt.Sprintf("dir%d", i%7), fmt.Sprintf("sub%d", i%4))
		}
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		n := sizes[rng.Intn(len(sizes))]
		if i%17 == 5 {
			n = budget / 6 // a few large files
		}
		if n > budget-total {
			n = budget - total
		}
		data := make([]byte, n)
		rng.Read(data)
		name := fmt.Sprintf("file%03d.bin", i)
		if i%5 == 0 {
			name = fmt.Sprintf("A long file name number %d.dat", i)
		}
		if err := os.WriteFile(filepath.Join(sub, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		total += n + 1
	}
}

// populate copies a tree into img, deletes a third of the files to make
// holes, then writes more files so they fragment into the holes.
func populate(t *testing.T, img string, budget int) {
	t.Helper()
	src := t.TempDir()
	writeTree(t, src, 1, budget*2/3)
	entries, _ := os.ReadDir(src)
	for _, e := range entries {
		run(t, "mcopy", "-s", "-i", img, filepath.Join(src, e.Name()), "::/")
	}
	var del []string
	i := 0
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if i%3 == 1 {
				rel, _ := filepath.Rel(src, p)
				del = append(del, "::/"+filepath.ToSlash(rel))
			}
			i++
		}
		return nil
	})
	run(t, "mdel", append([]string{"-i", img}, del...)...)
	more := t.TempDir()
	writeTree(t, filepath.Join(more, "more"), 2, budget/3)
	run(t, "mcopy", "-s", "-i", img, filepath.Join(more, "more"), "::/")
	// And leave some holes free.
	del = del[:0]
	i = 0
	filepath.WalkDir(filepath.Join(more, "more"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if i%4 == 2 {
				rel, _ := filepath.Rel(more, p)
				del = append(del, "::/"+filepath.ToSlash(rel))
			}
			i++
		}
		return nil
	})
	run(t, "mdel", append([]string{"-i", img}, del...)...)
}

// extract copies the whole tree of img out with mcopy.
func extract(t *testing.T, img string) string {
	t.Helper()
	out := t.TempDir()
	run(t, "mcopy", "-s", "-n", "-i", img, "::/*", out)
	return out
}

// treeDigest lists every file of dir with its content, for comparison.
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

func compareTrees(t *testing.T, want, got string) int {
	t.Helper()
	a, b := treeDigest(t, want), treeDigest(t, got)
	for k, v := range a {
		w, ok := b[k]
		if !ok {
			t.Errorf("%s missing from copy", k)
		} else if !bytes.Equal(v, w) {
			t.Errorf("%s differs in copy", k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			t.Errorf("%s only in copy", k)
		}
	}
	return len(a)
}

// copyExtents writes only ext of src into a zeroed file of the same size.
func copyExtents(t *testing.T, src string, ext []fsmap.Extent) string {
	t.Helper()
	st, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := makeImage(t, "copy.img", st.Size())
	in, _ := os.Open(src)
	defer in.Close()
	out, _ := os.OpenFile(dst, os.O_WRONLY, 0)
	defer out.Close()
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
	return dst
}

func detectFile(t *testing.T, img string) (*FS, *os.File) {
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
	return got.(*FS), f
}

// blkid returns blkid's low-level probe of img as a map.
func blkid(t *testing.T, img string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, l := range strings.Split(run(t, "blkid", "-p", "-o", "export", img), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

func fsckClean(t *testing.T, img string) {
	t.Helper()
	if out, err := runErr("fsck.fat", "-n", img); err != nil {
		t.Fatalf("fsck.fat -n %s: %v\n%s", filepath.Base(img), err, out)
	}
}

func TestUsedExtentsClone(t *testing.T) {
	testenv.RequireTools(t, "mkfs.fat", "fsck.fat", "mcopy", "mdel", "blkid")
	cases := []struct {
		bits    int
		spc     int
		size    int64
		label   string
		variant string
	}{
		{12, 1, 2 << 20, "SMALL12", "FAT12"},
		{12, 4, 8 << 20, "", "FAT12"},
		{16, 2, 32 << 20, "SIXTEEN", "FAT16"},
		{16, 16, 100 << 20, "BIG16", "FAT16"},
		{32, 1, 64 << 20, "THIRTYTWO", "FAT32"},
		{32, 8, 300 << 20, "", "FAT32"},
		{32, 1, 300 << 20, "BIGSECTOR", "FAT32"}, // 4 KiB sectors
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s-s%d", c.variant, c.spc), func(t *testing.T) {
			img := makeImage(t, "fat.img", c.size)
			sector := 512
			if c.label == "BIGSECTOR" {
				sector = 4096
			}
			args := []string{"-F", fmt.Sprint(c.bits), "-s", fmt.Sprint(c.spc), "-S", fmt.Sprint(sector), "-i", "1A2B3C4D"}
			if c.label != "" {
				args = append(args, "-n", c.label)
			}
			run(t, "mkfs.fat", append(args, img)...)
			populate(t, img, int(min(c.size/3, 24<<20)))

			f, _ := detectFile(t, img)
			info := f.Info()
			bk := blkid(t, img)
			if info.Type != "vfat" || bk["TYPE"] != "vfat" {
				t.Errorf("Type = %q, blkid %q", info.Type, bk["TYPE"])
			}
			if info.Variant != c.variant || bk["VERSION"] != c.variant {
				t.Errorf("Variant = %q, want %q (blkid %q)", info.Variant, c.variant, bk["VERSION"])
			}
			if info.UUID != "1A2B-3C4D" || info.UUID != bk["UUID"] {
				t.Errorf("UUID = %q, blkid %q", info.UUID, bk["UUID"])
			}
			if info.Label != c.label || info.Label != bk["LABEL"] {
				t.Errorf("Label = %q, want %q (blkid %q)", info.Label, c.label, bk["LABEL"])
			}
			if info.BlockSize != int64(c.spc*sector) {
				t.Errorf("BlockSize = %d", info.BlockSize)
			}
			if info.Size <= 0 || info.Size > c.size || info.Size < c.size-int64(c.spc*sector)*64 {
				t.Errorf("Size = %d for a %d-byte image", info.Size, c.size)
			}
			if len(info.Warnings) != 0 {
				t.Errorf("Warnings on a clean file system: %v", info.Warnings)
			}
			ext, err := f.UsedExtents(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			used := fsmap.Total(ext)
			orig := extract(t, img)
			var data int64
			for _, b := range treeDigest(t, orig) {
				data += int64(len(b))
			}
			// The map must hold at least the file data, and leave out the
			// free space.
			if used != f.Info().Used || used >= info.Size || used < data {
				t.Errorf("used %d of %d with %d bytes of files (Info.Used %d)", used, info.Size, data, f.Info().Used)
			}
			cp := copyExtents(t, img, ext)
			fsckClean(t, cp)
			n := compareTrees(t, orig, extract(t, cp))
			t.Logf("%s %dx%d: %d entries, used %d of %d bytes in %d extents", c.variant, c.spc, sector, n, used, info.Size, len(ext))
		})
	}
}

// TestRootLabelWins checks that the root directory's label entry, which
// mlabel and Windows update, wins over the BPB copy as blkid has it.
func TestRootLabelWins(t *testing.T) {
	testenv.RequireTools(t, "mkfs.fat", "blkid")
	for _, bits := range []string{"16", "32"} {
		img := makeImage(t, "fat.img", 64<<20)
		run(t, "mkfs.fat", "-F", bits, "-n", "BPBLABEL", img)
		f, _ := detectFile(t, img)
		// mkfs.fat writes the label to both; make the BPB copy differ.
		raw, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		off := int64(43)
		if f.g.bits == 32 {
			off = 71
		}
		raw.WriteAt([]byte("OTHERLABEL "), off)
		raw.Close()
		f, _ = detectFile(t, img)
		if got, want := f.Info().Label, blkid(t, img)["LABEL"]; got != "BPBLABEL" || got != want {
			t.Errorf("FAT%s label = %q, blkid %q, want BPBLABEL", bits, got, want)
		}
	}
}

func TestDirtyWarning(t *testing.T) {
	testenv.RequireTools(t, "mkfs.fat")
	img := makeImage(t, "fat.img", 64<<20)
	run(t, "mkfs.fat", "-F", "32", img)
	f, _ := detectFile(t, img)
	if len(f.Info().Warnings) != 0 {
		t.Fatalf("clean: %v", f.Info().Warnings)
	}
	raw, _ := os.OpenFile(img, os.O_RDWR, 0)
	// Clear the clean-shutdown bit of FAT[1] in the first FAT.
	b := make([]byte, 4)
	off := f.g.rsvd*f.g.bps + 4
	raw.ReadAt(b, off)
	b[3] &^= 0x08
	raw.WriteAt(b, off)
	raw.Close()
	f, _ = detectFile(t, img)
	if len(f.Info().Warnings) != 1 {
		t.Fatalf("dirty: warnings %v", f.Info().Warnings)
	}
}

func TestNotDetected(t *testing.T) {
	ctx := context.Background()
	for name, data := range map[string][]byte{
		"zeros": make([]byte, 1<<20),
		"short": make([]byte, 100),
		"ntfs":  append(append([]byte{0xEB, 0x52, 0x90}, "NTFS    "...), make([]byte, 4096)...),
	} {
		_, err := Detect(ctx, bytes.NewReader(data), int64(len(data)))
		if !errors.Is(err, fsmap.ErrNotDetected) {
			t.Errorf("%s: err = %v, want ErrNotDetected", name, err)
		}
	}
}

// TestCorrupt damages fields of a real boot sector: each must give an
// error that is not ErrNotDetected (the volume is FAT, but broken).
func TestCorrupt(t *testing.T) {
	testenv.RequireTools(t, "mkfs.fat")
	img := makeImage(t, "fat.img", 64<<20)
	run(t, "mkfs.fat", "-F", "32", "-s", "1", img)
	orig, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	g, err := parseBPB(orig[:512], int64(len(orig)))
	if err != nil {
		t.Fatal(err)
	}
	put32 := func(off int, v uint32) func([]byte) {
		return func(b []byte) { b[off], b[off+1], b[off+2], b[off+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24) }
	}
	// deletedRoot fills the root cluster with deleted entries, so a label
	// scan must follow the chain to the next cluster.
	deletedRoot := func(b []byte) {
		off := g.clusterOff(g.rootClus)
		for i := int64(0); i < g.clusterBytes(); i += 32 {
			b[off+i] = 0xE5
		}
	}
	cases := map[string]func([]byte){
		"total sectors past the volume": put32(32, 0xFFFFFFF0),
		"FAT size fills the volume":     put32(36, 0x00100000),
		"FAT too small for clusters":    put32(36, 16),
		"root cluster out of range":     put32(44, 0x0FFFFFF0),
		"root dir chain leaves the fs": func(b []byte) {
			deletedRoot(b)
			put32(int(g.rsvd*g.bps)+int(g.rootClus)*4, 0x0FFFFF00)(b)
		},
		"root dir chain loops": func(b []byte) {
			// Root cluster points at itself: the scan must stop.
			deletedRoot(b)
			put32(int(g.rsvd*g.bps)+int(g.rootClus)*4, uint32(g.rootClus))(b)
		},
	}
	for name, mutate := range cases {
		b := append([]byte(nil), orig...)
		mutate(b)
		fsys, err := Detect(context.Background(), bytes.NewReader(b), int64(len(b)))
		if name == "root dir chain loops" {
			// A loop is bounded by the directory size limit, not an error.
			if err != nil {
				t.Errorf("%s: %v", name, err)
			} else if _, err := fsys.UsedExtents(context.Background()); err != nil {
				t.Errorf("%s: UsedExtents: %v", name, err)
			}
			continue
		}
		if err == nil || errors.Is(err, fsmap.ErrNotDetected) {
			t.Errorf("%s: err = %v, want a damage error", name, err)
		}
	}
	// A volume shorter than the file system.
	if _, err := Detect(context.Background(), bytes.NewReader(orig[:1<<20]), 1<<20); err == nil || errors.Is(err, fsmap.ErrNotDetected) {
		t.Errorf("truncated volume: err = %v", err)
	}
}

func FuzzDetect(f *testing.F) {
	// Seeds: the metadata head of real file systems of each type (built
	// here when mkfs.fat is present) and a synthesized FAT12 floppy.
	if p, err := testenv.LookPath("mkfs.fat"); err == nil {
		// Small volumes with big clusters keep the metadata, and so the
		// seeds, short.
		for _, c := range []struct {
			bits, spc string
			size      int64
		}{{"12", "1", 1 << 20}, {"16", "4", 16 << 20}, {"32", "8", 34 << 20}} {
			img := filepath.Join(f.TempDir(), "seed"+c.bits)
			os.WriteFile(img, nil, 0o644)
			os.Truncate(img, c.size)
			if exec.Command(p, "-F", c.bits, "-s", c.spc, "-n", "SEED", img).Run() == nil {
				b, _ := os.ReadFile(img)
				f.Add(b[:96<<10])
			}
		}
	}
	floppy := make([]byte, 1440*1024)
	copy(floppy, []byte{0xEB, 0x3C, 0x90, 'M', 'S', 'D', 'O', 'S', '5', '.', '0', 0, 2, 1, 1, 0, 2, 224, 0, 0x40, 0x0B, 0xF0, 9, 0})
	floppy[38] = 0x29
	floppy[510], floppy[511] = 0x55, 0xAA
	floppy[512], floppy[513], floppy[514] = 0xF0, 0xFF, 0xFF
	f.Add(floppy[:16<<10])
	f.Fuzz(func(t *testing.T, data []byte) {
		// The fuzzed bytes are the head of a volume that claims to be
		// larger: reads past them fail, which must be an error too.
		for _, size := range []int64{int64(len(data)), int64(len(data)) * 64} {
			r := bytes.NewReader(data)
			fsys, err := Detect(context.Background(), r, size)
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
