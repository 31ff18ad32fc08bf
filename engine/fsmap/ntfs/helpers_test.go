package ntfs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

// tool runs a program and returns its combined output, failing the test
// when it exits non-zero.
func tool(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := toolErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func toolErr(name string, args ...string) (string, error) {
	p, err := testenv.LookPath(name)
	if err != nil {
		return "", err
	}
	out, err := exec.Command(p, args...).CombinedOutput()
	return string(out), err
}

// makeNTFS creates a size-byte image holding a fresh NTFS volume.
func makeNTFS(t testing.TB, dir string, size int64, label string, extra ...string) string {
	t.Helper()
	testenv.RequireTools(t, "mkntfs")
	img := filepath.Join(dir, "ntfs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	args := append([]string{"-F", "-Q", "-L", label}, extra...)
	tool(t, "mkntfs", append(args, img)...)
	return img
}

// mount mounts an NTFS image with ntfs-3g (FUSE) and returns the mount
// point; the cleanup (or unmount) waits for ntfs-3g to exit, so the image
// is complete once it returns.
func mount(t testing.TB, img string, ro bool) (dir string, unmount func()) {
	t.Helper()
	dir, unmount, err := mountErr(t, img, ro)
	if err != nil {
		t.Fatal(err)
	}
	return dir, unmount
}

// mountErr is mount returning a failure to mount as an error.
func mountErr(t testing.TB, img string, ro bool) (dir string, unmount func(), err error) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ntfs-3g")
	dir = t.TempDir()
	p, _ := testenv.LookPath("ntfs-3g")
	opts := "no_detach"
	if ro {
		opts += ",ro"
	}
	cmd := exec.Command(p, "-o", opts, img, dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("ntfs-3g: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Wait until the mount shows up (or ntfs-3g gives up).
	giveUp := time.After(2 * time.Minute)
	for mounted := false; !mounted; {
		select {
		case err := <-exited:
			return "", nil, fmt.Errorf("ntfs-3g %s exited before mounting: %v\n%s", img, err, out.String())
		case <-giveUp:
			_ = cmd.Process.Kill()
			return "", nil, fmt.Errorf("ntfs-3g %s did not mount\n%s", img, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		mounted = isMounted(t, dir)
	}
	done := false
	unmount = func() {
		if done {
			return
		}
		done = true
		if b, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, b)
			return
		}
		if err := <-exited; err != nil {
			t.Errorf("ntfs-3g %s: %v\n%s", img, err, out.String())
		}
	}
	t.Cleanup(unmount)
	return dir, unmount, nil
}

func isMounted(t testing.TB, dir string) bool {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 1 && fields[1] == dir {
			return true
		}
	}
	return false
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fill populates a mounted NTFS volume with files that exercise the
// allocator: small resident files, large files fragmented by interleaved
// appends, hard links, symlinks, UTF-8 names, a deep tree and a sparse
// file; then it deletes some of them so freed clusters sit between used
// ones.
func fill(t testing.TB, dir string, large int) {
	t.Helper()
	rng := rand.New(rand.NewSource(1))
	random := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	small := filepath.Join(dir, "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 150; i++ {
		writeFile(t, filepath.Join(small, fmt.Sprintf("f%03d", i)), random(rng.Intn(900)))
	}
	// Leave free space only in holes between files, so that what is
	// written next is fragmented.
	ballast := random(40 << 20)
	writeFile(t, filepath.Join(dir, "ballast.bin"), ballast[:rng.Intn(1<<20)+(36<<20)])
	punchHoles(t, filepath.Join(dir, "holes"), 16<<10)
	// Interleaved appends fragment the large files further.
	// Interleaved appends fragment the large files.
	var bigs []*os.File
	for i := 0; i < 3; i++ {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("big%d.bin", i)))
		if err != nil {
			t.Fatal(err)
		}
		bigs = append(bigs, f)
	}
	for round := 0; round < large; round++ {
		for _, f := range bigs {
			if _, err := f.Write(random(48<<10 + rng.Intn(32<<10))); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, f := range bigs {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"héllo wörld.txt", "日本語のファイル", "emoji 😀 ß Ω.dat"} {
		writeFile(t, filepath.Join(dir, name), random(3000+rng.Intn(20000)))
	}
	deep := dir
	for i := 0; i < 25; i++ {
		deep = filepath.Join(deep, fmt.Sprintf("level%02d", i))
	}
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(deep, "bottom.bin"), random(10000))
	if err := os.Link(filepath.Join(dir, "big1.bin"), filepath.Join(small, "big1-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(small, "f010"), filepath.Join(dir, "f010-link")); err != nil {
		t.Fatal(err)
	}
	for target, link := range map[string]string{
		"big0.bin":             "link-to-big0",
		"small/f020":           "link-to-f020",
		"/nonexistent/abs":     "dangling",
		"héllo wörld.txt":      "link-utf8",
		"level00/level01/../x": "link-dotdot",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	sp, err := os.Create(filepath.Join(dir, "sparse.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.WriteAt(random(8192), 8<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.WriteAt(random(100), 30<<20); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 150; i += 3 {
		if i == 10 || i == 20 {
			continue
		}
		if err := os.Remove(filepath.Join(small, fmt.Sprintf("f%03d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"big2.bin", "ballast.bin"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// punchHoles fills the volume with size-byte files until it is full, then
// deletes every other one. It returns the number of bytes freed.
func punchHoles(t testing.TB, dir string, size int) int64 {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("hole"), size/4)
	n := 0
	for ; n < 100000; n++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("h%05d", n)), data, 0o644); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	if n < 20 {
		t.Fatalf("volume full after %d files of %d bytes", n, size)
	}
	var freed int64
	for i := 0; i < n; i += 2 {
		if err := os.Remove(filepath.Join(dir, fmt.Sprintf("h%05d", i))); err != nil {
			t.Fatal(err)
		}
		freed += int64(size)
	}
	// The file that hit ENOSPC may exist, partly written.
	_ = os.Remove(filepath.Join(dir, fmt.Sprintf("h%05d", n)))
	return freed
}

// treeSum describes every entry of a tree: type, size, inode (the MFT
// record, which a copy must keep), file content hash, symlink target.
func treeSum(t testing.TB, root string) map[string]string {
	t.Helper()
	m, err := treeSumErr(root)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// treeSumErr is treeSum returning read errors.
func treeSumErr(root string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		ino := st.Sys().(*syscall.Stat_t).Ino
		switch {
		case st.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link " + target
		case st.IsDir():
			out[rel] = fmt.Sprintf("dir ino=%d", ino)
		case st.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
			out[rel] = fmt.Sprintf("file ino=%d size=%d nlink=%d sha256=%x", ino, st.Size(), st.Sys().(*syscall.Stat_t).Nlink, h.Sum(nil))
		default:
			out[rel] = "other " + st.Mode().String()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", root, err)
	}
	return out, nil
}

// diffTrees lists the entries that differ between two trees.
func diffTrees(want, got map[string]string) []string {
	var diffs []string
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			diffs = append(diffs, fmt.Sprintf("%s: want %q, got %q", k, w, g))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: unexpected entry %q", k, g))
		}
	}
	return diffs
}

// compareTrees fails the test unless both trees hold the same entries.
func compareTrees(t testing.TB, want, got map[string]string) {
	t.Helper()
	diffs := diffTrees(want, got)
	for i, d := range diffs {
		if i == 10 {
			break
		}
		t.Error(d)
	}
	if len(diffs) > 0 {
		t.Fatalf("%d of %d entries differ", len(diffs), len(want))
	}
}

// copyExtents copies only the given extents of src into a new all-zero
// file of the same size.
func copyExtents(t testing.TB, src, dst string, ext []fsmap.Extent) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := out.Truncate(st.Size()); err != nil {
		t.Fatal(err)
	}
	for _, e := range ext {
		if _, err := io.Copy(io.NewOffsetWriter(out, e.Off), io.NewSectionReader(in, e.Off, e.Len)); err != nil {
			t.Fatalf("copy extent %+v: %v", e, err)
		}
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// detectFile runs Detect on an image file.
func detectFile(t testing.TB, img string) (*FS, error) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Detect(context.Background(), f, st.Size())
	if err != nil {
		return nil, err
	}
	return got.(*FS), nil
}

// blkid returns blkid's low-level probe of an image: TYPE, LABEL, UUID,
// unescaped.
func blkid(t testing.TB, img string) map[string]string {
	t.Helper()
	testenv.RequireTools(t, "blkid")
	m := map[string]string{}
	for _, tag := range []string{"TYPE", "LABEL", "UUID"} {
		m[tag] = strings.TrimSuffix(tool(t, "blkid", "-p", "-o", "value", "-s", tag, img), "\n")
	}
	return m
}

// ntfsinfoField returns a field of `ntfsinfo -f -m`.
func ntfsinfoField(t testing.TB, img, field string) string {
	t.Helper()
	testenv.RequireTools(t, "ntfsinfo")
	out := tool(t, "ntfsinfo", "-f", "-m", img)
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == field {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("ntfsinfo -m %s: no %q field in\n%s", img, field, out)
	return ""
}

// patchRecord rewrites MFT record n in both $MFT and $MFTMirr (when the
// mirror holds it) through edit, which sees the record with its fixups
// undone; the update sequence is re-applied before writing.
func patchRecord(t testing.TB, img string, n int64, edit func(rec []byte)) {
	t.Helper()
	fsys, err := detectFile(t, img)
	if err != nil {
		t.Fatal(err)
	}
	v := fsys.v
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	offs := []int64{mapOffset(t, v, v.mftRuns, n*v.b.recordSize)}
	if mirr, err := v.dataAttr(context.Background(), recMFTMirr, attrData, ""); err == nil && (n+1)*v.b.recordSize <= mirr.dataSize {
		offs = append(offs, mapOffset(t, v, mirr.runs, n*v.b.recordSize))
	}
	for _, off := range offs {
		rec := make([]byte, v.b.recordSize)
		if _, err := f.ReadAt(rec, off); err != nil {
			t.Fatal(err)
		}
		if err := v.fixup(rec, "FILE"); err != nil {
			t.Fatal(err)
		}
		edit(rec)
		protect(rec)
		if _, err := f.WriteAt(rec, off); err != nil {
			t.Fatal(err)
		}
	}
}

// protect applies the update sequence to a record before it is written.
func protect(rec []byte) {
	usaOff := int(binary.LittleEndian.Uint16(rec[4:]))
	for i := 0; i < len(rec)/fixupStride; i++ {
		end := (i+1)*fixupStride - 2
		copy(rec[usaOff+2*(i+1):], rec[end:end+2])
		copy(rec[end:end+2], rec[usaOff:usaOff+2])
	}
}

// mapOffset returns the disk byte of data offset off through runs (the
// record must not straddle runs, which holds for the system records).
func mapOffset(t testing.TB, v *volume, runs []run, off int64) int64 {
	for _, r := range runs {
		if vcn := off / v.b.clusterSize; vcn >= r.vcn && vcn < r.vcn+r.length && r.lcn >= 0 {
			return r.lcn*v.b.clusterSize + off - r.vcn*v.b.clusterSize
		}
	}
	t.Fatalf("offset %d not mapped", off)
	return 0
}

// findAttr returns the offset of the first attribute of a type in a record.
func findAttr(t testing.TB, rec []byte, typ uint32) int {
	off := int(binary.LittleEndian.Uint16(rec[0x14:]))
	for off+8 <= len(rec) {
		at := binary.LittleEndian.Uint32(rec[off:])
		if at == attrEnd {
			break
		}
		if at == typ {
			return off
		}
		off += int(binary.LittleEndian.Uint32(rec[off+4:]))
	}
	t.Fatalf("no attribute %#x", typ)
	return 0
}

// fileVolume is a fsmap.Volume over an image file.
type fileVolume struct {
	*os.File
	path string
}

func (v fileVolume) Size() int64 {
	st, err := v.Stat()
	if err != nil {
		return 0
	}
	return st.Size()
}

func (v fileVolume) DevicePath(ctx context.Context) (string, func() error, error) {
	return v.path, func() error { return nil }, nil
}

func openVolume(t testing.TB, img string) fileVolume {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return fileVolume{File: f, path: img}
}

// copyFile copies an image (sparse-unaware; images here are small).
func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, b)
}
