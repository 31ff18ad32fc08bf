package testdisk

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TreeOptions chooses which shapes of files Populate creates. The zero value
// gives plain files and directories only, with ASCII names.
type TreeOptions struct {
	// Seed makes the tree deterministic: the same options give the same
	// names and bytes.
	Seed int64
	// TotalBytes roughly caps the bytes of file data (holes not counted);
	// the larger random files are left out once it is reached. Zero means
	// 8 MiB.
	TotalBytes int64
	// HardLinks adds files with several names, within and across
	// directories.
	HardLinks bool
	// Symlinks adds relative, absolute-looking, directory, dangling,
	// self-referencing and long (slow, > 60 bytes) symbolic links.
	Symlinks bool
	// Sparse adds files with large holes at the start, middle and end.
	Sparse bool
	// UTF8 adds names with accents, CJK characters and, unless BMPOnly,
	// emoji.
	UTF8 bool
	// BMPOnly keeps UTF-8 names inside the Unicode Basic Multilingual
	// Plane: mtools silently drops characters outside it (emoji), because
	// they need UTF-16 surrogate pairs in FAT long names.
	BMPOnly bool
	// CaseCollide adds names that differ only in case, which only
	// case-sensitive file systems (ext*, NTFS through ntfs-3g) can hold.
	CaseCollide bool
	// ShortNames restricts every name to an upper-case DOS 8.3 name, for
	// tools or file systems without long names; it also leaves out the
	// awkward ASCII names (spaces, several dots, long names).
	ShortNames bool
}

// defaultTotalBytes is the data cap when TreeOptions.TotalBytes is zero.
const defaultTotalBytes = 8 << 20

// Populate fills dir (created if missing) with a file tree of the shapes
// file systems and copy tools get wrong: random files of awkward sizes
// (0, 1, 511, 4096, 65537 bytes, a few MiB), text files, a 30-level deep
// directory chain, a directory of 500 small files, empty directories, and,
// as opt asks, hard links, symbolic links, sparse files, UTF-8 and
// case-colliding names.
func Populate(t testing.TB, dir string, opt TreeOptions) {
	t.Helper()
	p := &populator{
		t:      t,
		rng:    rand.New(rand.NewPCG(uint64(opt.Seed), 0x6c696665626f6174)),
		budget: opt.TotalBytes,
		opt:    opt,
	}
	if p.budget <= 0 {
		p.budget = defaultTotalBytes
	}
	p.mkdir(dir)
	p.run(dir)
}

type populator struct {
	t      testing.TB
	rng    *rand.Rand
	budget int64
	opt    TreeOptions
}

// name returns long unless the tree is restricted to 8.3 names.
func (p *populator) name(long, short string) string {
	if p.opt.ShortNames {
		return short
	}
	return long
}

func (p *populator) run(root string) {
	short := p.opt.ShortNames

	// Random data of the sizes that straddle sector, block and cluster
	// boundaries, smallest first so a small budget still gets the edge
	// cases.
	data := filepath.Join(root, p.name("data", "DATA"))
	p.mkdir(data)
	sizes := []int64{0, 1, 511, 512, 513, 4095, 4096, 4097, 65537, 1<<20 + 7, 3<<20 + 123, 5<<20 - 1}
	for i, n := range sizes {
		if n > p.budget {
			continue
		}
		p.writeRandom(filepath.Join(data, p.name(fmt.Sprintf("rand-%d.bin", n), fmt.Sprintf("R%07d.BIN", i))), n)
	}

	// Text files, one with CRLF line ends, so a tool that converts line
	// ends (mtools -t, FTP-style modes) shows up as a difference.
	text := filepath.Join(root, p.name("text", "TEXT"))
	p.mkdir(text)
	p.writeBytes(filepath.Join(text, p.name("lines.txt", "LINES.TXT")), p.textLines(400, "\n"))
	p.writeBytes(filepath.Join(text, p.name("dos-lines.txt", "DOSLINES.TXT")), p.textLines(200, "\r\n"))
	p.writeBytes(filepath.Join(text, p.name("no-newline.txt", "NONL.TXT")), []byte("no newline at the end"))

	if !short {
		odd := filepath.Join(root, "names")
		p.mkdir(odd)
		for _, n := range []string{
			"with space.txt",
			"semi;colon+plus=eq[1],comma.txt",
			"UPPER lower.MiXeD",
			".hidden",
			"a.b.c.d.txt",
			"no_extension",
			strings.Repeat("long-name-", 20) + "end.txt",
		} {
			p.writeRandom(filepath.Join(odd, n), int64(len(n))*3)
		}
	}

	// A deep chain: recursive walkers with fixed-size stacks or path
	// buffers fail here.
	deep := filepath.Join(root, p.name("deep", "DEEP"))
	cur := deep
	for i := 1; i <= 30; i++ {
		cur = filepath.Join(cur, fmt.Sprintf(p.name("d%02d", "D%02d"), i))
	}
	p.mkdir(cur)
	p.writeRandom(filepath.Join(cur, p.name("leaf.bin", "LEAF.BIN")), 777)

	// Many small files in one directory: directory blocks spill over,
	// ext4 switches to an htree, FAT chains its directory clusters.
	many := filepath.Join(root, p.name("many", "MANY"))
	p.mkdir(many)
	for i := 0; i < 500; i++ {
		p.writeRandom(filepath.Join(many, fmt.Sprintf(p.name("f%04d.dat", "F%04d.DAT"), i)), int64(p.rng.IntN(300)))
	}

	p.mkdir(filepath.Join(root, p.name("empty", "EMPTY"), p.name("nested-empty", "NESTED")))
	p.mkdir(filepath.Join(root, p.name("empty2", "EMPTY2")))

	if p.opt.HardLinks {
		links := filepath.Join(root, p.name("hardlinks", "HLINKS"))
		sub := filepath.Join(links, p.name("sub", "SUB"))
		p.mkdir(sub)
		orig := filepath.Join(links, p.name("orig.bin", "ORIG.BIN"))
		p.writeRandom(orig, 10000)
		p.link(orig, filepath.Join(links, p.name("second-name.bin", "SECOND.BIN")))
		p.link(orig, filepath.Join(sub, p.name("third-name.bin", "THIRD.BIN")))
		empty := filepath.Join(links, p.name("empty-orig", "EMPTYORG"))
		p.writeBytes(empty, nil)
		p.link(empty, filepath.Join(sub, p.name("empty-link", "EMPTYLNK")))
	}

	if p.opt.Symlinks {
		sl := filepath.Join(root, p.name("symlinks", "SYMLINKS"))
		p.mkdir(sl)
		targets := [][2]string{
			{p.name("relative", "REL"), "../" + p.name("text", "TEXT") + "/" + p.name("lines.txt", "LINES.TXT")},
			{p.name("to-dir", "TODIR"), "../" + p.name("deep", "DEEP")},
			{p.name("absolute", "ABS"), "/etc/lifeboat-fixture/not-here"},
			{p.name("dangling", "DANGLING"), p.name("does-not-exist", "NOTHERE")},
			{p.name("self-loop", "LOOP"), p.name("self-loop", "LOOP")},
			{p.name("slow-long", "LONG"), strings.Repeat("x/", 70) + "target"},
		}
		for _, tg := range targets {
			if err := os.Symlink(tg[1], filepath.Join(sl, tg[0])); err != nil {
				p.t.Fatalf("populate: symlink %s: %v", tg[0], err)
			}
		}
	}

	if p.opt.Sparse {
		sp := filepath.Join(root, p.name("sparse", "SPARSE"))
		p.mkdir(sp)
		// Data blocks at chosen offsets inside a larger apparent size.
		p.writeSparse(filepath.Join(sp, p.name("hole-first.img", "HOLEFRST.IMG")), 12<<20, []int64{12<<20 - 5000})
		p.writeSparse(filepath.Join(sp, p.name("hole-middle.img", "HOLEMID.IMG")), 8<<20+3, []int64{0, 8<<20 - 4000})
		p.writeSparse(filepath.Join(sp, p.name("hole-last.img", "HOLELAST.IMG")), 6<<20, []int64{8192})
		p.writeSparse(filepath.Join(sp, p.name("all-hole.img", "ALLHOLE.IMG")), 4<<20, nil)
	}

	if p.opt.UTF8 && !short {
		// Every name is longer than 8.3 so FAT keeps it in a long-name
		// entry: mtools stores a name that fits 8.3 as a short name only,
		// upper-casing non-ASCII letters (the FAT lower-case flags cover
		// ASCII alone).
		u := filepath.Join(root, "utf8-names-é")
		p.mkdir(u)
		names := []string{"café-crème.txt", "Ünïcødé ñame.txt", "日本語のファイル.txt", "Ελληνικά.txt", "кириллица-имя"}
		if !p.opt.BMPOnly {
			names = append(names, "emoji-😀-🚀.txt")
		}
		for _, n := range names {
			p.writeBytes(filepath.Join(u, n), []byte("name: "+n+"\n"))
		}
		p.mkdir(filepath.Join(u, "目录-ディレクトリ"))
		p.writeRandom(filepath.Join(u, "目录-ディレクトリ", "ファイル-データ.bin"), 2048)
	}

	if p.opt.CaseCollide && !short {
		c := filepath.Join(root, "case")
		p.mkdir(c)
		p.writeBytes(filepath.Join(c, "Readme.txt"), []byte("mixed case\n"))
		p.writeBytes(filepath.Join(c, "README.txt"), []byte("upper case, other bytes\n"))
		p.writeBytes(filepath.Join(c, "readme.txt"), []byte("lower\n"))
	}
}

func (p *populator) mkdir(dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatalf("populate: create directory %s: %v", dir, err)
	}
}

func (p *populator) writeBytes(path string, b []byte) {
	if err := os.WriteFile(path, b, 0o644); err != nil {
		p.t.Fatalf("populate: write %s: %v", path, err)
	}
	p.budget -= int64(len(b))
}

func (p *populator) writeRandom(path string, n int64) {
	b := make([]byte, n)
	p.fill(b)
	p.writeBytes(path, b)
}

// fill writes pseudo-random bytes from the tree's generator.
func (p *populator) fill(b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := p.rng.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}

// textLines returns n numbered lines of words ending in eol.
func (p *populator) textLines(n int, eol string) []byte {
	words := []string{"lifeboat", "sector", "cluster", "inode", "extent", "journal", "bitmap", "clone"}
	var sb strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "%04d", i)
		for j := 0; j < 1+p.rng.IntN(8); j++ {
			sb.WriteString(" " + words[p.rng.IntN(len(words))])
		}
		sb.WriteString(eol)
	}
	return []byte(sb.String())
}

func (p *populator) link(oldname, newname string) {
	if err := os.Link(oldname, newname); err != nil {
		p.t.Fatalf("populate: hard link %s: %v", newname, err)
	}
}

// writeSparse creates a file of size bytes that holds 4 KiB of random data at
// each offset in data and holes everywhere else.
func (p *populator) writeSparse(path string, size int64, data []int64) {
	f, err := os.Create(path)
	if err != nil {
		p.t.Fatalf("populate: create %s: %v", path, err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for _, off := range data {
		n := min(int64(len(buf)), size-off)
		p.fill(buf[:n])
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			p.t.Fatalf("populate: write %s at %d: %v", path, off, err)
		}
		p.budget -= n
	}
	if err := f.Truncate(size); err != nil {
		p.t.Fatalf("populate: truncate %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		p.t.Fatalf("populate: close %s: %v", path, err)
	}
}
