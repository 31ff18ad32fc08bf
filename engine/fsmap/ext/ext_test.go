package ext

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

// tool runs an e2fsprogs program and returns its combined output; a
// non-zero exit fails the test.
func tool(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, code := toolCode(t, name, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d\n%s", name, strings.Join(args, " "), code, out)
	}
	return out
}

func toolCode(t testing.TB, name string, args ...string) (string, int) {
	t.Helper()
	p, err := testenv.LookPath(name)
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	cmd := exec.Command(p, args...)
	// dumpe2fs and debugfs print their banner on stderr; keep the two
	// streams apart so parsers see only stdout.
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), 0
	case errors.As(err, &ee):
		return stdout.String() + stderr.String(), ee.ExitCode()
	default:
		t.Fatalf("run %s: %v", name, err)
		return "", -1
	}
}

// makeTree writes a deterministic tree of random files: small and large
// ones (the large ones span several block groups), nested directories and
// a symlink. It returns the names of some files to delete later.
func makeTree(t testing.TB, dir string, seed int64, scale int) []string {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	var victims []string
	write := func(name string, n int) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, n)
		rng.Read(b)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 40; i++ {
		name := fmt.Sprintf("d%d/small%02d", i%4, i)
		write(name, rng.Intn(20000))
		if i%3 == 0 {
			victims = append(victims, name)
		}
	}
	for i := 0; i < 3*scale; i++ {
		name := fmt.Sprintf("big/f%02d", i)
		write(name, (2<<20)+rng.Intn(1<<20))
		if i%2 == 1 {
			victims = append(victims, name)
		}
	}
	write("empty", 0)
	if err := os.Symlink("d1/small01", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	return victims
}

// mkImage makes a file system image of size bytes with mkfs.ext4 args,
// filled from a fresh random tree when fill > 0, and deletes some files with
// debugfs afterwards so that the bitmaps have holes.
func mkImage(t testing.TB, size int64, fill int, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var victims []string
	all := append([]string{"-q", "-F", "-E", "nodiscard"}, args...)
	if fill > 0 {
		tree := filepath.Join(dir, "tree")
		victims = makeTree(t, tree, int64(size)+int64(len(args)), fill)
		all = append(all, "-d", tree)
	}
	tool(t, "mke2fs", append(all, img)...)
	if len(victims) > 0 {
		cmds := filepath.Join(dir, "rm.cmds")
		var b strings.Builder
		for _, v := range victims {
			fmt.Fprintf(&b, "rm /%s\n", v)
		}
		if err := os.WriteFile(cmds, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		tool(t, "debugfs", "-w", "-f", cmds, img)
	}
	return img
}

func detectFile(t testing.TB, img string) (fsmap.FS, *os.File) {
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
	fsys, err := Detect(context.Background(), f, st.Size())
	if err != nil {
		t.Fatalf("Detect %s: %v", img, err)
	}
	return fsys, f
}

// truth is what dumpe2fs reports for an image.
type truth struct {
	bs, cluster, blocks int64
	used                []bool // per block: not listed as free
	uninit              int    // groups flagged BLOCK_UNINIT
	header              map[string]string
}

var (
	groupRe = regexp.MustCompile(`^Group (\d+): \(Blocks (\d+)-(\d+)\)`)
	rangeRe = regexp.MustCompile(`^(\d+)(?:-(\d+))?$`)
)

// dumpTruth parses dumpe2fs: the header fields and each group's "Free
// blocks:" list. With bigalloc a listed number is the first block of a free
// cluster.
func dumpTruth(t testing.TB, img string) *truth {
	t.Helper()
	out := tool(t, "dumpe2fs", img)
	tr := &truth{header: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var gStart, gEnd int64 = -1, -1
	num := func(s string) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("dumpe2fs number %q: %v", s, err)
		}
		return n
	}
	for sc.Scan() {
		line := sc.Text()
		if m := groupRe.FindStringSubmatch(line); m != nil {
			if tr.used == nil {
				tr.bs = num(tr.header["Block size"])
				tr.cluster = tr.bs
				if c, ok := tr.header["Cluster size"]; ok {
					tr.cluster = num(c)
				}
				tr.blocks = num(tr.header["Block count"])
				tr.used = make([]bool, tr.blocks)
				for i := range tr.used {
					tr.used[i] = true
				}
			}
			gStart, gEnd = num(m[2]), num(m[3])
			if strings.Contains(line, "BLOCK_UNINIT") {
				tr.uninit++
			}
			continue
		}
		if tr.used == nil {
			if k, v, ok := strings.Cut(line, ":"); ok {
				tr.header[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
			continue
		}
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "Free blocks:")
		if !ok {
			continue
		}
		ratio := tr.cluster / tr.bs
		for _, r := range strings.Split(rest, ",") {
			r = strings.TrimSpace(r)
			if r == "" {
				continue
			}
			m := rangeRe.FindStringSubmatch(r)
			if m == nil {
				t.Fatalf("dumpe2fs free range %q", r)
			}
			a, b := num(m[1]), num(m[1])
			if m[2] != "" {
				b = num(m[2])
			}
			for x := a; x < b+ratio && x <= gEnd; x++ {
				if x < gStart {
					t.Fatalf("free block %d before its group at %d", x, gStart)
				}
				tr.used[x] = false
			}
		}
	}
	if tr.used == nil {
		t.Fatalf("dumpe2fs listed no groups:\n%s", out)
	}
	return tr
}

// checkSuperset checks that the map covers every block dumpe2fs does not
// list as free, and returns how many blocks it covers beyond them.
func checkSuperset(t *testing.T, tr *truth, ext []fsmap.Extent, size int64) int64 {
	t.Helper()
	covered := make([]bool, tr.blocks)
	prevEnd := int64(-1)
	for _, e := range ext {
		if e.Off <= prevEnd || e.Len <= 0 || e.End() > size {
			t.Fatalf("extent %+v not normalized (previous end %d, size %d)", e, prevEnd, size)
		}
		prevEnd = e.End()
		for b := e.Off / tr.bs; b*tr.bs < e.End(); b++ {
			covered[b] = true
		}
	}
	var used, extra, missing int64
	for b := range covered {
		switch {
		case tr.used[b] && !covered[b]:
			if missing < 10 {
				t.Errorf("block %d is in use but not in the map", b)
			}
			missing++
		case tr.used[b]:
			used++
		case covered[b]:
			extra++
		}
	}
	if missing > 0 {
		t.Fatalf("%d used blocks missing from the map", missing)
	}
	t.Logf("%d blocks, %d used per dumpe2fs, map covers %d more, %d BLOCK_UNINIT groups", tr.blocks, used, extra, tr.uninit)
	return extra
}

// copyUsed copies only the mapped extents of img into a new all-zero file.
func copyUsed(t *testing.T, src io.ReaderAt, ext []fsmap.Extent, size int64) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy.img")
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, e := range ext {
		if _, err := io.Copy(io.NewOffsetWriter(f, e.Off), io.NewSectionReader(src, e.Off, e.Len)); err != nil {
			t.Fatalf("copy extent %+v: %v", e, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// treeOf dumps a file system's files with debugfs rdump and returns each
// path's kind and content (symlinks: their target).
func treeOf(t *testing.T, img string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	if out, code := toolCode(t, "debugfs", "-R", "rdump / "+dir, img); code != 0 {
		t.Fatalf("debugfs rdump %s: exit %d: %s", img, code, out)
	}
	tree := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			tree[rel] = "link:" + target
			return err
		case d.IsDir():
			tree[rel] = "dir"
		default:
			b, err := os.ReadFile(p)
			tree[rel] = "file:" + string(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk rdump of %s: %v", img, err)
	}
	return tree
}

func compareTrees(t *testing.T, want, got map[string]string) {
	t.Helper()
	files := 0
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			t.Errorf("%s missing from the copy", p)
		case g != w:
			t.Errorf("%s differs in the copy (%d vs %d bytes)", p, len(g), len(w))
		}
		if strings.HasPrefix(w, "file:") {
			files++
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s only in the copy", p)
		}
	}
	if files == 0 {
		t.Fatalf("rdump found no files: the comparison proves nothing")
	}
}

type layoutCase struct {
	name    string
	size    int64
	fill    int
	wantTyp string
	uninit  bool // the layout must leave BLOCK_UNINIT groups
	args    []string
}

var layoutCases = []layoutCase{
	{name: "ext2-1k", size: 64 << 20, fill: 2, wantTyp: "ext2", args: []string{"-t", "ext2", "-b", "1024"}},
	{name: "ext3-4k", size: 128 << 20, fill: 3, wantTyp: "ext3", args: []string{"-t", "ext3", "-b", "4096", "-g", "4096"}},
	{name: "ext4-defaults", size: 128 << 20, fill: 3, wantTyp: "ext4", uninit: true, args: []string{"-t", "ext4"}},
	{name: "ext4-4k", size: 256 << 20, fill: 4, wantTyp: "ext4", uninit: true, args: []string{"-t", "ext4", "-b", "4096", "-g", "4096"}},
	{name: "ext4-noflex", size: 128 << 20, fill: 3, wantTyp: "ext4", uninit: true, args: []string{"-t", "ext4", "-b", "4096", "-g", "4096", "-O", "^flex_bg"}},
	{name: "ext4-metabg-1k", size: 64 << 20, fill: 2, wantTyp: "ext4", uninit: true, args: []string{"-t", "ext4", "-b", "1024", "-g", "1024", "-O", "meta_bg,^resize_inode"}},
	{name: "ext4-metabg-32bit", size: 64 << 20, fill: 2, wantTyp: "ext4", uninit: true, args: []string{"-t", "ext4", "-b", "1024", "-g", "512", "-O", "meta_bg,^resize_inode,^64bit"}},
	{name: "ext4-no64bit-1k", size: 64 << 20, fill: 2, wantTyp: "ext4", uninit: true, args: []string{"-t", "ext4", "-b", "1024", "-O", "^64bit"}},
	{name: "ext4-gdtcsum", size: 128 << 20, fill: 3, wantTyp: "ext4", uninit: true, args: []string{"-t", "ext4", "-b", "4096", "-g", "4096", "-O", "^metadata_csum,uninit_bg"}},
	{name: "ext4-sparse2", size: 128 << 20, fill: 3, wantTyp: "ext4", args: []string{"-t", "ext4", "-b", "4096", "-g", "4096", "-O", "sparse_super2", "-E", "num_backup_sb=1"}},
	{name: "ext4-bigalloc", size: 128 << 20, fill: 3, wantTyp: "ext4", args: []string{"-t", "ext4", "-b", "4096", "-O", "bigalloc", "-C", "16384", "-g", "1024"}},
	{name: "ext2-nosparse", size: 64 << 20, fill: 2, wantTyp: "ext2", args: []string{"-t", "ext2", "-b", "2048", "-g", "2048", "-O", "^sparse_super,^resize_inode"}},
	{name: "ext4-64k", size: 96 << 20, fill: 2, wantTyp: "ext4", args: []string{"-t", "ext4", "-b", "65536"}},
	{name: "ext4-nojournal", size: 64 << 20, fill: 2, wantTyp: "ext4", args: []string{"-t", "ext4", "-b", "4096", "-g", "2048", "-O", "^has_journal"}},
}

// TestUsedExtents compares the map with dumpe2fs for each layout, then
// copies only the mapped extents and checks the copy with e2fsck and by
// comparing every file.
func TestUsedExtents(t *testing.T) {
	testenv.RequireTools(t, "mke2fs", "dumpe2fs", "debugfs", "e2fsck")
	for _, c := range layoutCases {
		t.Run(c.name, func(t *testing.T) {
			img := mkImage(t, c.size, c.fill, c.args...)
			fsys, f := detectFile(t, img)
			info := fsys.Info()
			if info.Type != c.wantTyp {
				t.Errorf("Type = %q, want %q", info.Type, c.wantTyp)
			}
			ext, err := fsys.UsedExtents(context.Background())
			if err != nil {
				t.Fatalf("UsedExtents: %v", err)
			}
			tr := dumpTruth(t, img)
			if want := (tr.blocks - mustInt(t, tr.header["Free blocks"])) * tr.bs; info.Used != want {
				t.Errorf("Used estimate before UsedExtents = %d, want %d from the free count", info.Used, want)
			}
			if info.BlockSize != tr.bs || info.Size != tr.blocks*tr.bs {
				t.Errorf("BlockSize, Size = %d, %d; dumpe2fs says %d, %d", info.BlockSize, info.Size, tr.bs, tr.blocks*tr.bs)
			}
			if c.uninit && tr.uninit == 0 {
				t.Errorf("layout has no BLOCK_UNINIT group: the case does not test them")
			}
			if w := strings.Join(fsys.Info().Warnings, "; "); w != "" {
				t.Errorf("warnings on a clean file system: %s", w)
			}
			// Every descriptor of a fresh file system passes its checksum:
			// this checks the crc16 and crc32c implementations.
			descs, _, err := fsys.(*FS).readDescriptors(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for i, d := range descs {
				if d.csumBad {
					t.Errorf("group %d descriptor fails its checksum", i)
				}
			}
			extra := checkSuperset(t, tr, ext, info.Size)
			// Beyond dumpe2fs's set the map may only add metadata that the
			// layout implies (reserved descriptor blocks where the bitmap
			// does not claim them, journal pointers): a few blocks per group.
			groups := (tr.blocks + 1023) / 1024
			if limit := 4*groups + 64; extra > limit {
				t.Errorf("map covers %d blocks beyond the used ones, over the allowed %d", extra, limit)
			}
			if got := fsys.Info().Used; got != fsmap.Total(ext) {
				t.Errorf("Info().Used = %d, Total(extents) = %d", got, fsmap.Total(ext))
			}
			cp := copyUsed(t, f, ext, info.Size)
			if out, code := toolCode(t, "e2fsck", "-fn", cp); code != 0 {
				t.Fatalf("e2fsck -fn of the copy: exit %d\n%s", code, out)
			}
			compareTrees(t, treeOf(t, img), treeOf(t, cp))
		})
	}
}

func TestInfo(t *testing.T) {
	testenv.RequireTools(t, "mke2fs", "dumpe2fs", "debugfs")
	const uuid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	img := mkImage(t, 32<<20, 0, "-t", "ext4", "-L", "rescue-me", "-U", uuid)
	fsys, _ := detectFile(t, img)
	info := fsys.Info()
	hdr := dumpTruth(t, img).header
	if info.Label != "rescue-me" || info.UUID != uuid || info.UUID != hdr["Filesystem UUID"] {
		t.Errorf("Label, UUID = %q, %q; want rescue-me, %s", info.Label, info.UUID, uuid)
	}
	if len(info.Warnings) != 0 || info.Raw {
		t.Errorf("clean file system: Warnings %q, Raw %v", info.Warnings, info.Raw)
	}
	wantUsed := (mustInt(t, hdr["Block count"]) - mustInt(t, hdr["Free blocks"])) * info.BlockSize
	if info.Used != wantUsed {
		t.Errorf("estimated Used = %d, want %d from the free count", info.Used, wantUsed)
	}

	for _, c := range []struct{ cmd, want string }{
		{"feature needs_recovery", "needs recovery"},
		{"ssv state 2", "errors"},
		{"ssv state 0", "not cleanly unmounted"},
		{"ssv last_orphan 12", "orphan"},
	} {
		cp := filepath.Join(t.TempDir(), "w.img")
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		tool(t, "debugfs", "-w", "-R", c.cmd, cp)
		fsys, _ := detectFile(t, cp)
		if w := strings.Join(fsys.Info().Warnings, "; "); !strings.Contains(w, c.want) {
			t.Errorf("after %q: warnings %q lack %q", c.cmd, w, c.want)
		}
	}
}

// TestFlippedUninit sets BLOCK_UNINIT on a group that holds data without
// fixing the descriptor checksum: the flag must be distrusted, the bitmap
// read and the data mapped.
func TestFlippedUninit(t *testing.T) {
	testenv.RequireTools(t, "mke2fs", "dumpe2fs", "debugfs")
	for _, feat := range []string{"metadata_csum", "^metadata_csum,uninit_bg"} {
		// Without flex_bg and a journal, the used blocks of a group past
		// group 0 are its own few metadata blocks and file data.
		img := mkImage(t, 128<<20, 3, "-t", "ext4", "-b", "4096", "-g", "4096", "-O", feat+",^flex_bg,^has_journal")
		tr := dumpTruth(t, img)
		// The group past group 0 with the most blocks in use.
		best, bestUsed := int64(-1), 0
		for g := int64(1); g*4096 < tr.blocks; g++ {
			n := 0
			for b := g * 4096; b < min((g+1)*4096, tr.blocks); b++ {
				if tr.used[b] {
					n++
				}
			}
			if n > bestUsed {
				best, bestUsed = g, n
			}
		}
		if bestUsed < 1024 {
			t.Fatalf("%s: no group past 0 holds data (best %d blocks)", feat, bestUsed)
		}
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		descSize := int64(64)
		if !strings.Contains(tr.header["Filesystem features"], "64bit") {
			descSize = 32
		}
		b[4096+best*descSize+0x12] |= bgBlockUninit
		fsys, err := Detect(context.Background(), bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		ext, err := fsys.UsedExtents(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: flagged group %d holding %d used blocks", feat, best, bestUsed)
		checkSuperset(t, tr, ext, int64(len(b)))
		if w := strings.Join(fsys.Info().Warnings, "; "); !strings.Contains(w, "checksum") {
			t.Errorf("%s: no checksum warning: %q", feat, w)
		}
	}
}

// TestJournalBackup checks the journal found through the superblock's copy
// of the journal inode's block map: all of it with extents, the direct and
// indirect blocks with a block map.
func TestJournalBackup(t *testing.T) {
	testenv.RequireTools(t, "mke2fs", "dumpe2fs")
	for _, c := range []struct {
		typ   string
		exact bool
	}{{"ext4", true}, {"ext3", false}} {
		img := mkImage(t, 64<<20, 0, "-t", c.typ, "-b", "4096")
		fsys, _ := detectFile(t, img)
		tr := dumpTruth(t, img)
		journal := mustInt(t, tr.header["Total journal blocks"]) * tr.bs
		got := fsmap.Total(fsmap.Normalize(fsys.(*FS).journalExtents(), 0))
		switch {
		case c.exact && got != journal:
			t.Errorf("%s: journal extents cover %d bytes, journal is %d", c.typ, got, journal)
		case !c.exact && got < 13*tr.bs:
			t.Errorf("%s: journal blocks cover %d bytes, want the 12 direct and an indirect block", c.typ, got)
		}
		for _, e := range fsys.(*FS).journalExtents() {
			for b := e.Off / tr.bs; b < e.End()/tr.bs; b++ {
				if !tr.used[b] {
					t.Errorf("%s: journal block %d is free per dumpe2fs", c.typ, b)
				}
			}
		}
	}
}

func mustInt(t testing.TB, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return n
}

func TestJournalDevice(t *testing.T) {
	testenv.RequireTools(t, "mke2fs")
	img := mkImage(t, 8<<20, 0, "-O", "journal_dev", "-b", "4096")
	fsys, _ := detectFile(t, img)
	info := fsys.Info()
	if info.Type != "jbd2" || !info.Raw {
		t.Fatalf("journal device: Type %q Raw %v", info.Type, info.Raw)
	}
	ext, err := fsys.UsedExtents(context.Background())
	if err != nil || fsmap.Total(ext) != 8<<20 {
		t.Fatalf("journal device map %v, %v: want the whole volume", ext, err)
	}
}

// fileVolume is an fsmap.Volume over an image file.
type fileVolume struct {
	*os.File
	size     int64
	released int
}

func (v *fileVolume) Size() int64 { return v.size }

func (v *fileVolume) DevicePath(ctx context.Context) (string, func() error, error) {
	return v.Name(), func() error { v.released++; return nil }, nil
}

func TestGrow(t *testing.T) {
	testenv.RequireTools(t, "mke2fs", "dumpe2fs", "debugfs", "e2fsck", "resize2fs")
	img := mkImage(t, 48<<20, 2, "-t", "ext4", "-b", "4096")
	before := treeOf(t, img)
	const volSize = 128 << 20
	if err := os.Truncate(img, volSize); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v := &fileVolume{File: f, size: volSize}
	ctx := context.Background()

	if err := Grow(ctx, v, 32<<20); err == nil {
		t.Errorf("Grow to a smaller size succeeded")
	}
	if err := Grow(ctx, v, volSize+4096); err == nil {
		t.Errorf("Grow past the volume succeeded")
	}
	for _, size := range []int64{96 << 20, 0} {
		if err := Grow(ctx, v, size); err != nil {
			t.Fatalf("Grow to %d: %v", size, err)
		}
		want := size
		if size == 0 {
			want = volSize
		}
		if out, code := toolCode(t, "e2fsck", "-fn", img); code != 0 {
			t.Fatalf("e2fsck -fn after Grow to %d: exit %d\n%s", size, code, out)
		}
		hdr := dumpTruth(t, img).header
		if got := mustInt(t, hdr["Block count"]) * mustInt(t, hdr["Block size"]); got != want {
			t.Errorf("after Grow to %d: dumpe2fs says %d bytes, want %d", size, got, want)
		}
		fsys, _ := detectFile(t, img)
		if fsys.Info().Size != want {
			t.Errorf("after Grow to %d: Detect says %d bytes", size, fsys.Info().Size)
		}
	}
	if v.released != 2 {
		t.Errorf("device path released %d times, want 2", v.released)
	}
	compareTrees(t, before, treeOf(t, img))
}

// smallImage is a 1 MiB ext4 with 1 KiB blocks and four groups of 256
// blocks (mke2fs turns on meta_bg for it), or mkfs args given.
func smallImage(t testing.TB, args ...string) []byte {
	t.Helper()
	if len(args) == 0 {
		args = []string{"-t", "ext4", "-b", "1024", "-g", "256", "-N", "64"}
	}
	img := mkImage(t, 1<<20, 0, args...)
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func put32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }

func TestCorrupt(t *testing.T) {
	testenv.RequireTools(t, "mke2fs")
	ctx := context.Background()
	good := smallImage(t, "-t", "ext4", "-b", "1024", "-g", "256", "-N", "64", "-O", "^meta_bg")
	if _, err := Detect(ctx, bytes.NewReader(good), int64(len(good))); err != nil {
		t.Fatalf("Detect of the unmodified image: %v", err)
	}
	sb := superOffset
	gdt := 2 * 1024 // 1 KiB blocks: descriptors in block 2
	cases := []struct {
		name        string
		mod         func(b []byte) []byte
		size        int64 // 0: len(b)
		notDetected bool  // Detect must say ErrNotDetected
		mapFails    bool  // Detect passes, UsedExtents fails
	}{
		{name: "zeros", mod: func(b []byte) []byte { return make([]byte, len(b)) }, notDetected: true},
		{name: "tiny", mod: func(b []byte) []byte { return b[:1500] }, notDetected: true},
		{name: "bad magic", mod: func(b []byte) []byte { b[sb+0x38] = 0; return b }, notDetected: true},
		{name: "block size 2^40", mod: func(b []byte) []byte { put32(b, sb+0x18, 30); return b }, notDetected: true},
		{name: "8 blocks per group", mod: func(b []byte) []byte { put32(b, sb+0x20, 8); return b }, notDetected: true},
		{name: "zero blocks per group", mod: func(b []byte) []byte { put32(b, sb+0x20, 0); return b }, notDetected: true},
		{name: "absurd group count", mod: func(b []byte) []byte { put32(b, sb+0x04, 0xffffffff); return b }},
		{name: "truncated image", mod: func(b []byte) []byte { return b[:len(b)/2] }},
		{name: "short reader", mod: func(b []byte) []byte { return b[:3072] }, size: 1 << 20, mapFails: true},
		{name: "bitmap past end", mod: func(b []byte) []byte { put32(b, gdt+3*64, 0xfffffff0); return b }, mapFails: true},
		{name: "bitmap hi past end", mod: func(b []byte) []byte { put32(b, gdt+2*64+0x20, 1); return b }, mapFails: true},
		{name: "inode table past end", mod: func(b []byte) []byte { put32(b, gdt+1*64+8, 1022); return b }, mapFails: true},
		{name: "bitmap in boot block", mod: func(b []byte) []byte { put32(b, gdt, 0); return b }, mapFails: true},
		{name: "unknown incompat", mod: func(b []byte) []byte { b[sb+0x63] |= 0x80; return b }},
		{name: "first meta_bg too large", mod: func(b []byte) []byte {
			b[sb+0x60] |= incompatMetaBG
			put32(b, sb+0x104, 99)
			return b
		}, notDetected: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.mod(append([]byte(nil), good...))
			size := c.size
			if size == 0 {
				size = int64(len(b))
			}
			fsys, err := Detect(ctx, bytes.NewReader(b), size)
			if c.notDetected {
				if !errors.Is(err, fsmap.ErrNotDetected) {
					t.Fatalf("Detect = %v, want ErrNotDetected", err)
				}
				return
			}
			if !c.mapFails {
				if err == nil || errors.Is(err, fsmap.ErrNotDetected) {
					t.Fatalf("Detect = %v, want a damage error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Detect: %v", err)
			}
			if ext, err := fsys.UsedExtents(ctx); err == nil {
				t.Fatalf("UsedExtents = %v, want an error", ext)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	testenv.RequireTools(t, "mke2fs")
	b := smallImage(t)
	fsys, err := Detect(context.Background(), bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := fsys.UsedExtents(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("UsedExtents on a cancelled context = %v", err)
	}
}

// paddedReader reads data followed by zeros up to size bytes, so that a
// fuzz input need only hold the start of an image, where the metadata is.
type paddedReader struct {
	data []byte
	size int64
}

func (p paddedReader) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 || off >= p.size {
		return 0, io.EOF
	}
	n := 0
	if off < int64(len(p.data)) {
		n = copy(b, p.data[off:])
	}
	for n < len(b) && off+int64(n) < p.size {
		b[n] = 0
		n++
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

// FuzzDetect runs Detect and UsedExtents on mutated small images: they must
// return an error or a map that stays inside the file system, never panic.
// An input is the first bytes of an image; sizeKiB gives the volume size
// (at most 4 MiB, so that nothing can allocate much).
func FuzzDetect(f *testing.F) {
	if _, err := testenv.LookPath("mke2fs"); err == nil {
		// The metadata of these 1 MiB images lies in their first 40 KiB.
		const head = 48 << 10
		for _, args := range [][]string{
			nil,
			{"-t", "ext4", "-b", "1024", "-g", "256", "-N", "64", "-O", "^meta_bg,64bit,^resize_inode"},
			{"-t", "ext2", "-b", "1024", "-g", "256", "-N", "64"},
			{"-t", "ext4", "-b", "1024", "-O", "bigalloc", "-C", "4096", "-g", "256", "-N", "64"},
		} {
			f.Add(smallImage(f, args...)[:head], uint16(1024))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, sizeKiB uint16) {
		size := min(int64(sizeKiB)*1024, 4<<20)
		if int64(len(data)) > size {
			data = data[:size]
		}
		ctx := context.Background()
		fsys, err := Detect(ctx, paddedReader{data, size}, size)
		if err != nil {
			return
		}
		info := fsys.Info()
		ext, err := fsys.UsedExtents(ctx)
		if err != nil {
			return
		}
		prevEnd := int64(-1)
		for _, e := range ext {
			if e.Off <= prevEnd || e.Len <= 0 || e.End() > info.Size {
				t.Fatalf("extent %+v out of order or past %d", e, info.Size)
			}
			prevEnd = e.End()
		}
		if fsys.Info().Used != fsmap.Total(ext) {
			t.Fatalf("Used %d != Total %d", fsys.Info().Used, fsmap.Total(ext))
		}
	})
}

// BenchmarkUsedExtents maps freshly made 8 GiB file systems (sparse image
// files): 64 groups with 4 KiB blocks, 1024 groups with 1 KiB blocks.
func BenchmarkUsedExtents(b *testing.B) {
	testenv.RequireTools(b, "mke2fs")
	for _, bs := range []string{"4096", "1024"} {
		b.Run("8GiB-"+bs, func(b *testing.B) {
			img := mkImage(b, 8<<30, 0, "-t", "ext4", "-b", bs)
			f, err := os.Open(img)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			ctx := context.Background()
			for b.Loop() {
				fsys, err := Detect(ctx, f, 8<<30)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := fsys.UsedExtents(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
