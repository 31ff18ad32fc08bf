package testdisk

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// recorder is a testing.TB whose Error and Errorf record instead of
// failing, so a test can assert that CompareTrees reports a difference.
// Fatal and everything else still go to the real test.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Error(args ...any) { r.errs = append(r.errs, fmt.Sprint(args...)) }

// has reports whether some recorded error contains every one of subs.
func (r *recorder) has(subs ...string) bool {
	for _, e := range r.errs {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(e, s)
		}
		if all {
			return true
		}
	}
	return false
}

func TestLayout(t *testing.T) {
	pos, ext, err := layout(Spec{Table: "mbr", Size: 320 * MiB, SectorSize: 512, Parts: []Part{
		{FS: "ext4", Size: 64 * MiB}, {FS: "exfat", Size: 64*MiB - 100},
		{FS: "ext4", Size: 96 * MiB, Logical: true}, {FS: "swap", Size: 32 * MiB, Logical: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []placed{
		{1, 1 * MiB, 64 * MiB},
		{2, 65 * MiB, 64 * MiB},  // 64 MiB - 100 rounded up to a whole sector
		{5, 130 * MiB, 96 * MiB}, // 1 MiB after the extended start, for the EBR
		{6, 227 * MiB, 32 * MiB},
	}
	if fmt.Sprint(pos) != fmt.Sprint(want) {
		t.Errorf("positions %v, want %v", pos, want)
	}
	if wantExt := (placed{3, 129 * MiB, 259*MiB - 129*MiB}); ext != wantExt {
		t.Errorf("extended %v, want %v", ext, wantExt)
	}
	for _, bad := range []Spec{
		{Table: "gpt", Size: 64 * MiB, SectorSize: 512, Parts: []Part{{FS: "ext4", Size: 63 * MiB}}}, // no room for the backup GPT
		{Table: "gpt", Size: 64 * MiB, SectorSize: 512, Parts: []Part{{FS: "ext4", Size: MiB, Logical: true}}},
		{Table: "mbr", Size: 64 * MiB, SectorSize: 512, Parts: []Part{{Size: MiB, Logical: true}, {Size: MiB}}},
		{Table: "mbr", Size: 64 * MiB, SectorSize: 512, Parts: []Part{{Size: MiB}, {Size: MiB}, {Size: MiB}, {Size: MiB}, {Size: MiB}}},
		{Table: "mbr", Size: 64 * MiB, SectorSize: 1024, Parts: []Part{{Size: MiB}}},
		{Table: "apm", Size: 64 * MiB, SectorSize: 512},
		{Table: "mbr", Size: 64*MiB + 1, SectorSize: 512},
	} {
		if _, _, err := layout(bad); err == nil {
			t.Errorf("layout(%+v) succeeded, want an error", bad)
		}
	}
}

// TestPopulate checks that the tree is deterministic and holds the shapes it
// promises.
func TestPopulate(t *testing.T) {
	opt := TreeOptions{Seed: 7, TotalBytes: 2 << 20, HardLinks: true, Symlinks: true, Sparse: true, UTF8: true, CaseCollide: true}
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	Populate(t, a, opt)
	Populate(t, b, opt)
	CompareTrees(t, a, b)
	opt.Seed = 8
	Populate(t, c, opt)
	if d := compareTrees(a, c); len(d) == 0 {
		t.Error("trees from different seeds are identical")
	}

	tree, err := scanTree(a)
	if err != nil {
		t.Fatal(err)
	}
	var files, links, deepest, many int
	var data int64
	for p, e := range tree {
		switch {
		case e.mode.IsRegular():
			files++
			if e.nlink > 1 {
				links++
			}
			if strings.HasPrefix(p, "many/") {
				many++
			}
			fi, err := os.Stat(filepath.Join(a, p))
			if err != nil {
				t.Fatal(err)
			}
			data += fi.Sys().(*syscall.Stat_t).Blocks * 512
		}
		deepest = max(deepest, strings.Count(p, "/"))
	}
	if many != 500 {
		t.Errorf("many/ holds %d files, want 500", many)
	}
	if deepest < 30 {
		t.Errorf("deepest path has %d levels, want at least 30", deepest)
	}
	if links != 5 {
		t.Errorf("%d hard-linked names, want 5", links)
	}
	// 2 MiB of budget: the 3 MiB and 5 MiB random files must be left out,
	// and the 30 MiB of sparse files must not take their apparent size.
	if data > 4<<20 {
		t.Errorf("tree uses %d bytes on disk, want under 4 MiB for a 2 MiB budget", data)
	}
	for _, p := range []string{"sparse/hole-first.img", "symlinks/dangling", "utf8-names-é/emoji-😀-🚀.txt", "case/README.txt", "case/Readme.txt", "empty/nested-empty"} {
		if _, ok := tree[p]; !ok {
			t.Errorf("%s missing", p)
		}
	}
	if _, ok := tree["data/rand-3145851.bin"]; ok {
		t.Error("3 MiB file written despite a 2 MiB budget")
	}

	short := t.TempDir()
	Populate(t, short, TreeOptions{Seed: 1, ShortNames: true, UTF8: true, HardLinks: true})
	st, err := scanTree(short)
	if err != nil {
		t.Fatal(err)
	}
	for p := range st {
		for _, part := range strings.Split(p, "/") {
			base, ext, _ := strings.Cut(part, ".")
			if len(base) > 8 || len(ext) > 3 || strings.ToUpper(part) != part || strings.ContainsAny(part, " +,;=[]") {
				t.Errorf("ShortNames tree holds %q, not an 8.3 name", p)
			}
		}
	}
}

// TestCompareTreesDetects mutates a copy of a tree in every way
// CompareTrees must notice and checks each is reported by path.
func TestCompareTreesDetects(t *testing.T) {
	src := t.TempDir()
	Populate(t, src, TreeOptions{Seed: 3, TotalBytes: 1 << 20, HardLinks: true, Symlinks: true, Sparse: true})
	got := t.TempDir()
	if err := copyTree(src, got); err != nil {
		t.Fatal(err)
	}
	if d := compareTrees(src, got); len(d) != 0 {
		t.Fatalf("copyTree copy differs: %v", d)
	}
	cases := []struct {
		name   string
		mutate func(dir string) error
		want   []string
	}{
		{"flipped byte", func(d string) error {
			return flipByte(filepath.Join(d, "data/rand-65537.bin"), 40000)
		}, []string{"data/rand-65537.bin", "content differs from byte 40000"}},
		{"flipped byte in sparse data", func(d string) error {
			return flipByte(filepath.Join(d, "sparse/hole-middle.img"), 8<<20-10)
		}, []string{"sparse/hole-middle.img", "content differs"}},
		{"truncated", func(d string) error {
			return os.Truncate(filepath.Join(d, "text/lines.txt"), 10)
		}, []string{"text/lines.txt", "size 10"}},
		{"missing file", func(d string) error {
			return os.Remove(filepath.Join(d, "many/f0123.dat"))
		}, []string{"many/f0123.dat", "missing"}},
		{"missing empty dir", func(d string) error {
			return os.Remove(filepath.Join(d, "empty/nested-empty"))
		}, []string{"empty/nested-empty", "directory missing"}},
		{"extra file", func(d string) error {
			return os.WriteFile(filepath.Join(d, "empty/stray"), nil, 0o644)
		}, []string{"empty/stray", "unexpected regular file"}},
		{"symlink target", func(d string) error {
			p := filepath.Join(d, "symlinks/relative")
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Symlink("elsewhere", p)
		}, []string{"symlinks/relative", `"elsewhere"`}},
		{"symlink became file", func(d string) error {
			p := filepath.Join(d, "symlinks/dangling")
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.WriteFile(p, nil, 0o644)
		}, []string{"symlinks/dangling", "want symlink, got regular file"}},
		{"hard link broken", func(d string) error {
			p := filepath.Join(d, "hardlinks/sub/third-name.bin")
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.WriteFile(p, b, 0o644)
		}, []string{"hard-link group", "hardlinks/sub/third-name.bin", "not kept"}},
		{"names joined", func(d string) error {
			p := filepath.Join(d, "data/rand-1.bin")
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Link(filepath.Join(d, "data/rand-0.bin"), filepath.Join(d, "data/rand-1.bin"))
		}, []string{"unexpected hard-link group data/rand-0.bin = data/rand-1.bin"}},
	}
	// The mutations touch distinct paths, so one copy takes them all and
	// each must be reported on its own.
	for _, c := range cases {
		if err := c.mutate(got); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	r := &recorder{TB: t}
	CompareTrees(r, src, got)
	for _, c := range cases {
		if !r.has(c.want...) {
			t.Errorf("%s: CompareTrees reported %q, want a difference naming %q", c.name, r.errs, c.want)
		}
	}
	// And nothing outside the mutated paths is reported.
	touched := []string{"data/rand-65537.bin", "sparse/hole-middle.img", "text/lines.txt", "many/f0123.dat",
		"empty/nested-empty", "empty/stray", "symlinks/relative", "symlinks/dangling", "hardlinks/", "data/rand-1.bin"}
	for _, e := range r.errs {
		ok := false
		for _, p := range touched {
			ok = ok || strings.Contains(e, p)
		}
		if !ok {
			t.Errorf("CompareTrees reported an untouched path: %s", e)
		}
	}
}

func flipByte(path string, off int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		return err
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		return err
	}
	return f.Close()
}

// checkFixture runs fsck on every file system of fx, extracts every
// populated one and compares it with its source, and checks that none of
// this wrote to the image.
func checkFixture(t *testing.T, fx *Fixture) {
	t.Helper()
	before := SHA256(t, fx.Path)
	for _, p := range fx.Parts {
		t.Run(fmt.Sprintf("part%d-%s", p.Number, p.FS), func(t *testing.T) {
			switch p.FS {
			case "raw":
				b := readAt(t, fx.Path, p.Start, p.Size)
				if bytes.Count(b, []byte{0}) > len(b)/64 {
					t.Errorf("raw partition holds %d zero bytes of %d: not random", bytes.Count(b, []byte{0}), len(b))
				}
				return
			case "none":
				return
			}
			Fsck(t, fx.Path, p.Start, p.Size, p.FS)
			if p.FS != "swap" && p.UUID == "" {
				t.Errorf("blkid found no UUID")
			}
			if p.SrcDir == "" {
				return
			}
			dest := t.TempDir()
			Extract(t, fx.Path, p, dest)
			CompareTrees(t, p.SrcDir, dest)
		})
	}
	if fx.Spec.BootCode {
		if got := readAt(t, fx.Path, 0, 440); !bytes.Equal(got, fx.BootCode) || !bytes.HasPrefix(got, []byte("LIFEBOAT-MBR")) {
			t.Errorf("MBR boot code not in the image")
		}
		gap := readAt(t, fx.Path, fx.GapOff, fx.GapLen)
		if fx.GapLen < 512 || !bytes.HasPrefix(gap, []byte("LIFEBOAT-GAP")) || bytes.IndexByte(gap, 0) >= 0 {
			t.Errorf("boot gap [%d, +%d) not filled", fx.GapOff, fx.GapLen)
		}
		if sig := readAt(t, fx.Path, 510, 2); !bytes.Equal(sig, []byte{0x55, 0xaa}) {
			t.Errorf("MBR signature %x after writing boot code", sig)
		}
	}
	if after := SHA256(t, fx.Path); after != before {
		t.Errorf("image changed while checking it: sha256 %s, was %s", after, before)
	}
}

func readAt(t testing.TB, path string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("read %s at %d: %v", path, off, err)
	}
	return b
}

func TestGPTStandard(t *testing.T) {
	testenv.RequireRoot(t)
	fx := GPTStandard(t, t.TempDir())
	if len(fx.Parts) != 4 || fx.Extended != nil {
		t.Fatalf("parts %+v", fx.Parts)
	}
	// sgdisk must have written the requested type codes.
	out := mustRun(t, "sgdisk", "-p", fx.Path)
	for _, code := range []string{"EF02", "EF00", "8300", "0700"} {
		if !strings.Contains(string(out), code) {
			t.Errorf("sgdisk -p lacks type %s:\n%s", code, out)
		}
	}
	checkFixture(t, fx)
}

func TestMBRStandard(t *testing.T) {
	testenv.RequireRoot(t)
	fx := MBRStandard(t, t.TempDir())
	if fx.Extended == nil || fx.Extended.Number != 3 {
		t.Fatalf("extended partition %+v, want number 3", fx.Extended)
	}
	if nums := []int{fx.Parts[0].Number, fx.Parts[1].Number, fx.Parts[2].Number, fx.Parts[3].Number}; fmt.Sprint(nums) != "[1 2 5 6]" {
		t.Errorf("partition numbers %v, want [1 2 5 6]", nums)
	}
	swap := fx.Parts[3]
	img := partCopy(t, fx.Path, swap.Start, swap.Size)
	out := mustRun(t, "blkid", "-p", "-o", "export", img)
	if !strings.Contains(string(out), "LABEL=swap") || !strings.Contains(string(out), "UUID="+swap.UUID) || swap.UUID == "" {
		t.Errorf("swap blkid:\n%s\nwant label swap and UUID %q", out, swap.UUID)
	}
	// The boot flag is on partition 1 only.
	dump := string(mustRun(t, "sfdisk", "-d", fx.Path))
	if strings.Count(dump, "bootable") != 1 || !strings.Contains(dump, "start=        2048, size=      131072, type=83, bootable") {
		t.Errorf("sfdisk -d does not show partition 1 alone bootable:\n%s", dump)
	}
	checkFixture(t, fx)
}

// TestSector4K builds 4096-byte-sector disks (through a 4K loop device)
// and reads their file systems back.
func TestSector4K(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "fdisk")
	for _, table := range []string{"gpt", "mbr"} {
		t.Run(table, func(t *testing.T) {
			fx := Build(t, t.TempDir(), Spec{Table: table, Size: 96 * MiB, SectorSize: 4096, Parts: []Part{
				{FS: "vfat", FATSize: 16, Size: 40 * MiB, GPTType: "ef00", Label: "EFI", Files: &TreeOptions{Seed: 31, TotalBytes: 1 << 20, UTF8: true}},
				{FS: "ext4", Size: 32 * MiB, Logical: table == "mbr", Files: &TreeOptions{Seed: 32, TotalBytes: 1 << 20, HardLinks: true, Symlinks: true, Sparse: true}},
				{FS: "swap", Size: 8 * MiB, Logical: table == "mbr"},
			}})
			// Without the loop device, a 512-byte reader finds no table
			// where a 512-byte disk would hold it, and fdisk told the
			// sector size lists the partitions at their 4 KiB sectors.
			out := string(mustRun(t, "fdisk", "-l", "-b", "4096", fx.Path))
			for _, p := range fx.Parts {
				if !strings.Contains(out, fmt.Sprintf("%s%d ", fx.Path, p.Number)) || !strings.Contains(out, fmt.Sprintf(" %d ", p.Start/4096)) {
					t.Errorf("fdisk -b 4096 does not list partition %d at sector %d:\n%s", p.Number, p.Start/4096, out)
				}
			}
			bs := string(mustRun(t, "fsck.fat", "-n", "-v", partCopy(t, fx.Path, fx.Parts[0].Start, fx.Parts[0].Size)))
			if !strings.Contains(bs, "4096 bytes per logical sector") {
				t.Errorf("FAT not made with 4096-byte sectors:\n%s", bs)
			}
			checkFixture(t, fx)
		})
	}
}

// TestExtractDetectsCorruption corrupts one file's data block in a copy of
// an ext4 partition: the file system stays consistent for e2fsck, and only
// comparing the extracted files shows the damage.
func TestExtractDetectsCorruption(t *testing.T) {
	dir := t.TempDir()
	fx := Build(t, dir, Spec{Table: "gpt", Size: 48 * MiB, Parts: []Part{
		{FS: "ext4", Size: 40 * MiB, Files: &TreeOptions{Seed: 41, TotalBytes: 2 << 20, HardLinks: true, Symlinks: true}},
	}})
	p := fx.Parts[0]
	img := partCopy(t, fx.Path, p.Start, p.Size)
	const victim = "data/rand-65537.bin"
	out, err := debugfsOut(img, "stats", "blocks /"+victim)
	if err != nil {
		t.Fatal(err)
	}
	var bs int64
	var blocks []int64
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Block size:"); ok {
			bs, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	// The last line of output lists the file's blocks.
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, f := range strings.Fields(lines[len(lines)-1]) {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatalf("debugfs blocks: %q: %v\n%s", f, err, out)
		}
		blocks = append(blocks, n)
	}
	if bs == 0 || len(blocks) < 2 {
		t.Fatalf("block size %d, blocks %v of %s:\n%s", bs, blocks, victim, out)
	}
	// Flip a byte 100 bytes into the file's second block.
	if err := flipByte(img, blocks[1]*bs+100); err != nil {
		t.Fatal(err)
	}
	corrupt := PartInfo{Start: 0, Size: p.Size, FS: "ext4"}
	Fsck(t, img, 0, p.Size, "ext4")
	dest := t.TempDir()
	Extract(t, img, corrupt, dest)
	r := &recorder{TB: t}
	CompareTrees(r, p.SrcDir, dest)
	if want := fmt.Sprintf("content differs from byte %d", bs+100); !r.has(victim, want) || len(r.errs) != 1 {
		t.Errorf("CompareTrees reported %q, want exactly one difference: %s %s", r.errs, victim, want)
	}
	// And the untouched partition in the image still compares clean.
	clean := t.TempDir()
	Extract(t, fx.Path, p, clean)
	CompareTrees(t, p.SrcDir, clean)
}

func TestParseLsP(t *testing.T) {
	out := "debugfs: ls -p \"/\"\n/2/040755/0/0/.//\n/2/040755/0/0/..//\n/12/100644/0/0/a b/3/\n/13/120777/0/0/l/8/\n\n" +
		"debugfs: ls -p \"/d\"\n/14/040755/0/0/.//\n/12/100644/0/0/hl/3/\n/15/100644/0/0/x/0/\n"
	got, err := parseLsP([]byte(out), []string{"/", "/d"})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got[12]) != "[a b d/hl]" || fmt.Sprint(got[15]) != "[d/x]" || len(got) != 2 {
		t.Errorf("parseLsP = %v", got)
	}
	for _, bad := range []string{"/12/100644/0/0/a/3/\n", "debugfs: ls\n/x/100644/0/0/a/3/\n", "debugfs: ls\n/1/2/3\n", "debugfs: ls\ndebugfs: ls\ndebugfs: ls\n"} {
		if _, err := parseLsP([]byte(bad), []string{"/", "/d"}); err == nil {
			t.Errorf("parseLsP(%q) succeeded", bad)
		}
	}
}

// FuzzParseLsP feeds arbitrary debugfs output to the parser: it must return
// an error or a result, never panic.
func FuzzParseLsP(f *testing.F) {
	f.Add([]byte("debugfs: ls -p \"/\"\n/2/040755/0/0/.//\n/12/100644/0/0/a/3/\n"), uint8(1))
	f.Add([]byte("debugfs: x\ndebugfs: y\n/12/100644/0/0/a/3/\n/12/100644/0/0/b/3/\n"), uint8(2))
	f.Add([]byte("/////////\n"), uint8(0))
	f.Fuzz(func(t *testing.T, out []byte, ndirs uint8) {
		dirs := make([]string, int(ndirs%16)+1)
		for i := range dirs {
			dirs[i] = fmt.Sprintf("/d%d", i)
		}
		_, _ = parseLsP(out, dirs)
	})
}

// TestEmptyFileSystems covers the file-system variants the standard
// fixtures leave out (ext2, ext3, FAT12, FAT16) and empty file systems,
// which must check clean and extract to nothing.
func TestEmptyFileSystems(t *testing.T) {
	testenv.RequireRoot(t)
	fx := Build(t, t.TempDir(), Spec{Table: "gpt", Size: 160 * MiB, Parts: []Part{
		{FS: "ext2", Size: 16 * MiB, Label: "e2"},
		{FS: "ext3", Size: 16 * MiB, Label: "e3"},
		{FS: "vfat", FATSize: 12, Size: 4 * MiB, Label: "F12"},
		{FS: "vfat", FATSize: 16, Size: 20 * MiB, Label: "F16"},
		{FS: "vfat", Size: 40 * MiB, Label: "F32"},
		{FS: "ntfs", Size: 16 * MiB},
		{FS: "exfat", Size: 16 * MiB},
		{FS: "none", Size: 1 * MiB},
	}})
	empty := t.TempDir()
	for _, p := range fx.Parts {
		if p.FS == "none" {
			if b := readAt(t, fx.Path, p.Start, p.Size); bytes.Count(b, []byte{0}) != len(b) {
				t.Errorf("partition %d of FS none is not all zeros", p.Number)
			}
			continue
		}
		t.Run(fmt.Sprintf("part%d-%s", p.Number, p.FS), func(t *testing.T) {
			Fsck(t, fx.Path, p.Start, p.Size, p.FS)
			out := mustRun(t, "blkid", "-p", "-o", "value", "-s", "TYPE", partCopy(t, fx.Path, p.Start, p.Size))
			if got := strings.TrimSpace(string(out)); got != p.FS {
				t.Errorf("blkid TYPE %q, want %q", got, p.FS)
			}
			if p.FS == "vfat" {
				v := string(mustRun(t, "fsck.fat", "-nv", partCopy(t, fx.Path, p.Start, p.Size)))
				if want := p.Label[1:] + " bit entries"; !strings.Contains(v, want) {
					t.Errorf("FAT %s: fsck.fat -v lacks %q:\n%s", p.Label, want, v)
				}
			}
			dest := t.TempDir()
			Extract(t, fx.Path, p, dest)
			CompareTrees(t, empty, dest)
		})
	}
}
