package ext

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// deepDir is a directory eight levels down in the trees of TestFiles.
const deepDir = "deep/l1/l2/l3/l4/l5/l6/l7/l8"

// fileTree writes the tree TestFiles reads back: hundreds of small files in
// nested directories (so that their inodes fill many groups), a deep file, a
// file as large as ReadFile returns, one larger, a sparse file and symbolic
// links of every kind. It returns each regular file's contents by path.
func fileTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	rng := rand.New(rand.NewSource(1))
	want := map[string][]byte{}
	write := func(name string, b []byte) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		want[name] = b
	}
	random := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	for d := 0; d < 40; d++ {
		for f := 0; f < 30; f++ {
			write(fmt.Sprintf("fill/d%02d/f%02d", d, f), random(rng.Intn(3000)))
		}
	}
	write(deepDir+"/fstab", []byte("UUID=x / ext4 defaults 0 1\n"))
	write("big/max", random(MaxFileSize))
	write("big/short", random(900_000))
	write("empty", nil)
	// A sparse file: its hole must read as zeros.
	sparse := make([]byte, 700_000)
	copy(sparse[600_000:], random(4096))
	p := filepath.Join(dir, "sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(sparse[600_000:600_000+4096], 600_000); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(len(sparse))); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want["sparse"] = sparse
	if err := os.WriteFile(filepath.Join(dir, "big/too-large"), random(MaxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"etc/os-release": "../" + deepDir + "/fstab",                     // relative, up through ..
		"abs":            "/big/short",                                   // absolute, fast
		"slow":           "/./././././././././././" + deepDir + "/fstab", // longer than i_block holds
		"dirlink":        deepDir,
		"loop":           "loop",
		"dangling":       "nowhere",
	} {
		p := filepath.Join(dir, link)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	return want
}

// openImage opens the ext image at img with OpenFiles.
func openImage(t testing.TB, img string) (*Files, []byte) {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	files, err := OpenFiles(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("OpenFiles(%s): %v", filepath.Base(img), err)
	}
	return files, b
}

var ncheckRe = regexp.MustCompile(`(?m)^(\d+)\s+/(\S+)$`)

// TestFiles makes file systems with mke2fs -d and reads every file back:
// 1 KiB and 4 KiB blocks, 32- and 64-byte descriptors, block maps and
// extents, and meta_bg with enough groups that the descriptors lie in
// several meta groups, which are not where a contiguous table would be.
func TestFiles(t *testing.T) {
	testenv.RequireTools(t, "mke2fs", "debugfs")
	tree := filepath.Join(t.TempDir(), "tree")
	want := fileTree(t, tree)
	for _, c := range []struct {
		name string
		size int64
		args []string
	}{
		{"meta_bg 1k", 25 << 20, []string{"-t", "ext4", "-b", "1024", "-g", "256", "-N", "1600", "-O", "meta_bg,^resize_inode,^64bit"}},
		{"meta_bg 1k 64bit", 25 << 20, []string{"-t", "ext4", "-b", "1024", "-g", "256", "-N", "1600", "-O", "meta_bg,^resize_inode,64bit"}},
		{"meta_bg 4k 64bit", 200 << 20, []string{"-t", "ext4", "-b", "4096", "-g", "256", "-N", "1600", "-O", "meta_bg,^resize_inode,64bit"}},
		{"ext2 1k block maps", 25 << 20, []string{"-t", "ext2", "-b", "1024"}},
		{"ext4 4k", 64 << 20, []string{"-t", "ext4", "-b", "4096"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "fs.img")
			sparseImage(t, img, c.size)
			tool(t, "mke2fs", append(append([]string{"-q", "-F", "-E", "nodiscard"}, c.args...), "-d", tree, img)...)
			files, _ := openImage(t, img)
			if files.g.metaBG {
				checkFarGroups(t, files, img)
			}
			for name, b := range want {
				got, err := files.ReadFile("/" + name)
				if err != nil {
					t.Errorf("ReadFile(/%s): %v", name, err)
				} else if !bytes.Equal(got, b) {
					t.Errorf("ReadFile(/%s): %d bytes differ from the %d written", name, len(got), len(b))
				}
			}
			for name, target := range map[string]string{
				"/etc/os-release":                      deepDir + "/fstab",
				"/abs":                                 "big/short",
				"/slow":                                deepDir + "/fstab",
				"/dirlink/fstab":                       deepDir + "/fstab",
				"/dirlink/../l8/fstab":                 deepDir + "/fstab", // .. is the real parent of l8, as in the kernel
				"/../../" + deepDir + "/../l8/./fstab": deepDir + "/fstab",
			} {
				got, err := files.ReadFile(name)
				if err != nil || !bytes.Equal(got, want[target]) {
					t.Errorf("ReadFile(%s) = %d bytes, %v; want /%s", name, len(got), err, target)
				}
			}
			for _, e := range []struct {
				name, err string
				notExist  bool
			}{
				{"/big/too-large", "more than the", false},
				{"/missing", "", true},
				{"/dangling", "", true},
				{"/" + deepDir + "/fstab/x", "not a directory", false},
				{"/loop", "too many levels of symbolic links", false},
				{"/deep", "not a regular file", false},
			} {
				got, err := files.ReadFile(e.name)
				switch {
				case err == nil:
					t.Errorf("ReadFile(%s) = %d bytes, want an error", e.name, len(got))
				case !strings.Contains(err.Error(), e.name):
					t.Errorf("ReadFile(%s): error %q does not name the file", e.name, err)
				case e.notExist != errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), e.err):
					t.Errorf("ReadFile(%s): %v, want %q (not exist: %v)", e.name, err, e.err, e.notExist)
				}
			}
			for name, ok := range map[string]bool{"/deep": true, "/dirlink": true, "/etc/os-release": true, "/missing": false, "/dangling": false, "/loop": false} {
				if files.Exists(name) != ok {
					t.Errorf("Exists(%s) = %v", name, !ok)
				}
			}
		})
	}
}

// checkFarGroups fails the test unless some file of the tree has its inode
// in a group whose descriptor is in a meta group other than the first: it
// is what makes a reader that assumes a contiguous descriptor table fail.
func checkFarGroups(t *testing.T, files *Files, img string) {
	t.Helper()
	g, sb := files.g, files.sb
	if g.gdtBlocks < 3 {
		t.Fatalf("%d descriptor blocks: the file system needs at least 3 meta groups", g.gdtBlocks)
	}
	if sb.firstMetaBG != 0 {
		t.Fatalf("first_meta_bg %d, want 0", sb.firstMetaBG)
	}
	// The descriptor block of a later meta group must not follow the first.
	if b := g.descBlock(sb, 1); b == g.gdtStart+1 {
		t.Fatalf("descriptor block 1 at block %d, right after block 0", b)
	}
	first := g.descPerBlock*int64(sb.inodesPerGroup) + 1
	var args []string
	for ino := first; ino <= int64(sb.inodesCount) && len(args) < 2000; ino++ {
		args = append(args, strconv.FormatInt(ino, 10))
	}
	out := tool(t, "debugfs", "-R", "ncheck "+strings.Join(args, " "), img)
	deep := 0
	for _, m := range ncheckRe.FindAllStringSubmatch(out, -1) {
		if strings.Count(m[2], "/") >= 2 {
			deep++
		}
	}
	if deep == 0 {
		t.Fatalf("no file two directories down has an inode in group %d or later:\n%s", g.descPerBlock, out)
	}
	t.Logf("%d groups, %d descriptor blocks, %d nested files with inodes from group %d on", g.groups, g.gdtBlocks, deep, g.descPerBlock)
}

// TestFilesDamaged checks that OpenFiles refuses what is no usable ext
// file system, and that a descriptor pointing outside the file system gives
// an error naming the file.
func TestFilesDamaged(t *testing.T) {
	testenv.RequireTools(t, "mke2fs")
	tree := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(filepath.Join(tree, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "etc/fstab"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := smallImage(t, "-t", "ext4", "-b", "1024", "-g", "256", "-N", "64", "-O", "^meta_bg", "-d", tree)
	if _, err := OpenFiles(bytes.NewReader(good[:1500]), 1500); err == nil {
		t.Error("OpenFiles of 1500 bytes succeeded")
	}
	zeros := make([]byte, len(good))
	if _, err := OpenFiles(bytes.NewReader(zeros), int64(len(zeros))); err == nil {
		t.Error("OpenFiles of zeros succeeded")
	}
	unknown := append([]byte(nil), good...)
	unknown[superOffset+0x63] |= 0x80
	if _, err := OpenFiles(bytes.NewReader(unknown), int64(len(unknown))); err == nil || !strings.Contains(err.Error(), "unsupported incompatible features") {
		t.Errorf("OpenFiles with an unknown feature: %v", err)
	}
	bad := append([]byte(nil), good...)
	put32(bad, 2*1024+8, 0xfffffff0) // group 0's inode table, in block 2
	files, err := OpenFiles(bytes.NewReader(bad), int64(len(bad)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := files.ReadFile("/etc/fstab"); err == nil || !strings.Contains(err.Error(), "/etc/fstab") || !strings.Contains(err.Error(), "outside the file system") {
		t.Errorf("ReadFile with the inode table past the end: %v", err)
	}
	if files.Exists("/etc") {
		t.Error("Exists(/etc) with the inode table past the end")
	}
}

// FuzzFiles feeds damaged ext images to the file reader: errors, never
// panics or hangs.
func FuzzFiles(f *testing.F) {
	// A real ext4 seed, so the fuzzer starts past the superblock checks.
	testenv.RequireTools(f, "mke2fs")
	dir := f.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		f.Fatal(err)
	}
	fstab := []byte("UUID=x / ext4 defaults 0 1\n")
	if err := os.WriteFile(filepath.Join(root, "etc/fstab"), fstab, 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink("fstab", filepath.Join(root, "etc/os-release")); err != nil {
		f.Fatal(err)
	}
	img := filepath.Join(dir, "fs.img")
	sparseImage(f, img, 64<<10) // small inputs fuzz fast
	tool(f, "mke2fs", "-q", "-F", "-t", "ext4", "-b", "1024", "-N", "16", "-O", "^has_journal,^resize_inode", "-d", root, img)
	files, seed := openImage(f, img) // the seed must open
	for _, p := range []string{"/etc/fstab", "/etc/os-release"} {
		if got, err := files.ReadFile(p); err != nil || !bytes.Equal(got, fstab) {
			f.Fatalf("the seed's %s: %q, %v", p, got, err)
		}
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		files, err := OpenFiles(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		for _, p := range []string{"/etc/os-release", "/etc/fstab"} {
			if got, err := files.ReadFile(p); err == nil && len(got) > MaxFileSize {
				t.Fatalf("%s: %d bytes, more than MaxFileSize", p, len(got))
			}
		}
		files.Exists("/a/../../etc/x")
	})
}

// TestFilesDirectoryEdges reads directories as the kernel does where their
// on-disk fields are unusual but valid: a record that fills a whole 64 KiB
// block (its length stored as 65535 by e2fsprogs, as 0 by a kernel with 64
// KiB pages), and the size's high half on an ext2 directory, which without
// largedir is i_dir_acl and not part of the size.
func TestFilesDirectoryEdges(t *testing.T) {
	testenv.RequireTools(t, "mke2fs", "debugfs")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	// 252 names of 252 bytes: 251 fill the directory's first 64 KiB block,
	// the last one stands alone in the second.
	names := make([]string, 252)
	for i := range names {
		names[i] = fmt.Sprintf("f%03d", i) + strings.Repeat("x", 248)
		p := filepath.Join(tree, "d", names[i])
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(names[i][:4]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "64k.img")
	sparseImage(t, img, 64<<20)
	tool(t, "mke2fs", "-q", "-F", "-E", "nodiscard", "-t", "ext4", "-b", "65536", "-O", "^dir_index,^metadata_csum,^has_journal", "-d", tree, img)
	last := "/d/" + names[len(names)-1]
	files, b := openImage(t, img)
	if got, err := files.ReadFile(last); err != nil || string(got) != "f251" {
		t.Fatalf("ReadFile of the entry alone in a 64 KiB block = %q, %v", got, err)
	}
	// Find that entry at the start of a block, stored as 65535 ...
	at := -1
	for off := 0; off+8 <= len(b); off += 1 << 16 {
		if bytes.HasPrefix(b[off+8:], []byte(names[len(names)-1])) {
			at = off
		}
	}
	if at < 0 || b[at+4] != 0xff || b[at+5] != 0xff {
		t.Fatalf("no entry filling a 64 KiB block with record length 65535 (at %d)", at)
	}
	// ... then as 0, as a 64 KiB-page kernel writes it.
	b[at+4], b[at+5] = 0, 0
	files, err := OpenFiles(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := files.ReadFile(last); err != nil || string(got) != "f251" {
		t.Fatalf("ReadFile with the record length stored as 0 = %q, %v", got, err)
	}
	for _, n := range names[:3] {
		if got, err := files.ReadFile("/d/" + n); err != nil || string(got) != n[:4] {
			t.Fatalf("ReadFile(/d/%s) = %q, %v", n[:4], got, err)
		}
	}

	ext2 := filepath.Join(dir, "ext2.img")
	sparseImage(t, ext2, 8<<20)
	small := filepath.Join(dir, "small")
	if err := os.MkdirAll(filepath.Join(small, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(small, "etc", "fstab"), []byte("fstab\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tool(t, "mke2fs", "-q", "-F", "-t", "ext2", "-b", "1024", "-d", small, ext2)
	if out := tool(t, "debugfs", "-w", "-R", "sif /etc size_hi 7", ext2); strings.Contains(out, "sif:") {
		t.Fatalf("debugfs did not set the size's high half: %s", out) // it exits 0 on a bad command
	}
	files, _ = openImage(t, ext2)
	if got, err := files.ReadFile("/etc/fstab"); err != nil || string(got) != "fstab\n" {
		t.Fatalf("ReadFile under an ext2 directory with i_dir_acl set = %q, %v", got, err)
	}
}

// sparseImage makes an empty file of size bytes, holes only.
func sparseImage(t testing.TB, path string, size int64) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}
