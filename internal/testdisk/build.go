package testdisk

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// MiB is the partition alignment Build uses, as partitioning tools do.
const MiB = 1 << 20

// Part describes one partition of a fixture disk.
type Part struct {
	// FS is what the partition holds: "ext2", "ext3", "ext4", "vfat"
	// (FAT32 unless FATSize says otherwise), "ntfs", "exfat", "swap",
	// "raw" (random bytes) or "none" (zeros).
	FS string
	// Size in bytes, rounded up to a whole sector.
	Size int64
	// Label is the file-system label (and the GPT partition name).
	Label string
	// FATSize is 12, 16 or 32 for FS "vfat"; zero means 32.
	FATSize int
	// GPTType is the sgdisk type code (ef00, ef02, 8300, 0700, 8200...);
	// empty picks one from FS.
	GPTType string
	// MBRType is the sfdisk type in hex (c, 83, 7, 82...); empty picks one
	// from FS.
	MBRType string
	// Logical puts the partition inside the MBR extended partition.
	// Logical partitions come after every primary one in Parts.
	Logical bool
	// Bootable sets the MBR active flag.
	Bootable bool
	// Files, when set, fills the file system with Populate(Files). For
	// FAT and exFAT the shapes they cannot hold (hard links, symlinks,
	// holes, case collisions; emoji too on FAT) are left out.
	Files *TreeOptions
}

// Spec describes a fixture disk.
type Spec struct {
	// Table is "gpt" or "mbr".
	Table string
	// Size of the disk image in bytes.
	Size int64
	// SectorSize is 512 (the default) or 4096. Neither sgdisk nor sfdisk
	// 2.38 can be told the sector size of an image file, so a 4096-byte
	// disk is partitioned through a loop device with that sector size,
	// which needs root.
	SectorSize int
	// Parts are laid out in order from 1 MiB, each aligned to 1 MiB.
	Parts []Part
	// BootCode writes recognisable non-zero bytes into the MBR boot code
	// area and the gap between the partition table and the first
	// partition, as a boot loader (GRUB) would.
	BootCode bool
}

// PartInfo is where a partition of a fixture lies and what it holds.
type PartInfo struct {
	// Number is the partition number as Linux counts it: GPT entries from
	// 1, MBR primaries 1 to 4, MBR logical partitions from 5.
	Number int
	// Start and Size are in bytes from the start of the disk.
	Start int64
	Size  int64
	// FS, Label and UUID (as blkid reports it, empty when none) of the
	// content.
	FS, Label, UUID string
	// SrcDir is the directory whose tree was copied into the file system,
	// empty when it was left empty.
	SrcDir string
	// Tree are the options SrcDir was populated with, after removing the
	// shapes the file system cannot hold.
	Tree *TreeOptions
}

// Fixture is a disk image built by Build.
type Fixture struct {
	// Path of the disk image file.
	Path string
	Spec Spec
	// Parts in the order of Spec.Parts.
	Parts []PartInfo
	// Extended is the MBR extended partition, nil when there is none.
	Extended *PartInfo
	// BootCode holds the 440 bytes written at the start of the MBR, nil
	// unless Spec.BootCode.
	BootCode []byte
	// GapOff and GapLen locate the boot-loader gap written between the
	// partition table and the first partition (zero unless Spec.BootCode).
	GapOff, GapLen int64
}

// placed is a partition's position after layout, in bytes.
type placed struct {
	number      int
	start, size int64
}

// layout places the partitions of spec and returns their positions and the
// MBR extended partition (size zero when there is none).
func layout(spec Spec) ([]placed, placed, error) {
	ss := int64(spec.SectorSize)
	if ss != 512 && ss != 4096 {
		return nil, placed{}, fmt.Errorf("lay out disk: sector size %d, want 512 or 4096", ss)
	}
	if spec.Table != "gpt" && spec.Table != "mbr" {
		return nil, placed{}, fmt.Errorf("lay out disk: table %q, want gpt or mbr", spec.Table)
	}
	if spec.Size <= 0 || spec.Size%ss != 0 {
		return nil, placed{}, fmt.Errorf("lay out disk: size %d is not a positive multiple of the %d-byte sector", spec.Size, ss)
	}
	limit := spec.Size
	if spec.Table == "gpt" {
		// The backup GPT: 128 entries of 128 bytes and a header sector.
		limit -= 16384 + ss
	}
	align := func(v int64) int64 { return (v + MiB - 1) / MiB * MiB }
	var out []placed
	var ext placed
	next := int64(MiB)
	primaries, logicals := 0, 0
	for i, p := range spec.Parts {
		if p.Size <= 0 {
			return nil, placed{}, fmt.Errorf("lay out partition %d: size %d", i+1, p.Size)
		}
		size := (p.Size + ss - 1) / ss * ss
		var pl placed
		switch {
		case p.Logical && spec.Table != "mbr":
			return nil, placed{}, fmt.Errorf("lay out partition %d: logical partitions need an MBR table", i+1)
		case p.Logical:
			if logicals == 0 {
				if primaries > 3 {
					return nil, placed{}, fmt.Errorf("lay out partition %d: no primary slot left for the extended partition", i+1)
				}
				ext = placed{number: primaries + 1, start: align(next)}
				next = ext.start
			}
			// Each logical partition is preceded by its EBR; keep
			// 1 MiB for it so the partition stays aligned.
			pl = placed{number: 5 + logicals, start: align(next) + MiB, size: size}
			logicals++
			ext.size = pl.start + size - ext.start
		default:
			if logicals > 0 {
				return nil, placed{}, fmt.Errorf("lay out partition %d: primary partition after logical ones", i+1)
			}
			primaries++
			if spec.Table == "mbr" && primaries > 4 {
				return nil, placed{}, fmt.Errorf("lay out partition %d: more than 4 primary partitions", i+1)
			}
			pl = placed{number: primaries, start: align(next), size: size}
		}
		if pl.start+pl.size > limit {
			return nil, placed{}, fmt.Errorf("lay out partition %d: ends at %d, past the usable end %d", i+1, pl.start+pl.size, limit)
		}
		next = pl.start + pl.size
		out = append(out, pl)
	}
	return out, ext, nil
}

// Build creates the disk image dir/disk.img described by spec, with every
// partition's file system made and filled by the real tools, and returns
// where everything lies. Source trees are kept under dir for comparisons.
func Build(t testing.TB, dir string, spec Spec) *Fixture {
	t.Helper()
	if spec.SectorSize == 0 {
		spec.SectorSize = 512
	}
	pos, ext, err := layout(spec)
	if err != nil {
		t.Fatalf("build fixture: %v", err)
	}
	testenv.RequireTools(t, "blkid", "sfdisk")
	if spec.Table == "gpt" {
		testenv.RequireTools(t, "sgdisk")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("build fixture: create %s: %v", dir, err)
	}
	fx := &Fixture{Path: filepath.Join(dir, "disk.img"), Spec: spec}
	disk, err := os.Create(fx.Path)
	if err != nil {
		t.Fatalf("build fixture: create disk image: %v", err)
	}
	defer disk.Close()
	if err := disk.Truncate(spec.Size); err != nil {
		t.Fatalf("build fixture: size disk image: %v", err)
	}
	if err := disk.Close(); err != nil {
		t.Fatalf("build fixture: close disk image: %v", err)
	}
	writeTable(t, fx.Path, spec, pos, ext)

	for i, p := range spec.Parts {
		info := PartInfo{Number: pos[i].number, Start: pos[i].start, Size: pos[i].size, FS: p.FS, Label: p.Label}
		img := filepath.Join(dir, fmt.Sprintf("part%d.img", info.Number))
		makeFS(t, dir, img, spec, p, &info, int64(i+1))
		if err := copyInto(fx.Path, img, info.Start, info.Size); err != nil {
			t.Fatalf("build fixture: partition %d: %v", info.Number, err)
		}
		if err := os.Remove(img); err != nil {
			t.Fatalf("build fixture: remove %s: %v", img, err)
		}
		fx.Parts = append(fx.Parts, info)
	}
	if ext.size > 0 {
		fx.Extended = &PartInfo{Number: ext.number, Start: ext.start, Size: ext.size, FS: "extended"}
	}
	if spec.BootCode {
		writeBootCode(t, fx, pos)
	}
	checkTable(t, fx)
	return fx
}

// copyInto writes the partition image img into disk at off; conv=notrunc
// in dd's words, skipping zero blocks since the disk reads as zeros there.
func copyInto(disk, img string, off, size int64) error {
	in, err := os.Open(img)
	if err != nil {
		return fmt.Errorf("open partition image: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("stat partition image: %w", err)
	}
	if st.Size() != size {
		return fmt.Errorf("partition image %s is %d bytes, want %d", img, st.Size(), size)
	}
	out, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open disk image: %w", err)
	}
	defer out.Close()
	if err := copySparse(out, off, in, 0, size); err != nil {
		return fmt.Errorf("copy %s into %s at %d: %w", img, disk, off, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close disk image: %w", err)
	}
	return nil
}

func gptType(p Part) string {
	if p.GPTType != "" {
		return strings.ToLower(p.GPTType)
	}
	switch p.FS {
	case "vfat", "ntfs", "exfat":
		return "0700"
	case "swap":
		return "8200"
	default:
		return "8300"
	}
}

func mbrType(p Part) string {
	if p.MBRType != "" {
		return strings.ToLower(p.MBRType)
	}
	switch p.FS {
	case "vfat":
		switch p.FATSize {
		case 12:
			return "1"
		case 16:
			return "e"
		default:
			return "c"
		}
	case "ntfs", "exfat":
		return "7"
	case "swap":
		return "82"
	default:
		return "83"
	}
}

// partName is the GPT partition name.
func partName(p Part, number int) string {
	if p.Label != "" {
		return p.Label
	}
	return fmt.Sprintf("%s-%d", p.FS, number)
}

// tableDevice returns the path partitioning tools must work on for disk.
// sgdisk and sfdisk (util-linux 2.38) cannot be told the sector size of an
// image file and assume 512 bytes; for 4096-byte sectors the image is
// attached to a loop device with that logical sector size, which needs
// root. release detaches it.
func tableDevice(t testing.TB, disk string, ss int64) (dev string, release func()) {
	t.Helper()
	if ss == 512 {
		return disk, func() {}
	}
	return attachLoop(t, disk, ss, false)
}

// attachLoop attaches file to a free loop device with the given logical
// sector size and returns the device; release detaches it once (a test
// cleanup does it too, should the test end first). Needs root.
func attachLoop(t testing.TB, file string, ss int64, readOnly bool) (dev string, release func()) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "losetup")
	args := []string{"--find", "--show", "--sector-size", strconv.FormatInt(ss, 10)}
	if readOnly {
		args = append(args, "--read-only")
	}
	out := mustRun(t, "losetup", append(args, file)...)
	dev = strings.TrimSpace(string(out))
	var once sync.Once
	release = func() {
		once.Do(func() {
			if _, err := runTool("losetup", "-d", dev); err != nil {
				t.Errorf("detach %s from %s: %v", dev, file, err)
			}
		})
	}
	t.Cleanup(release)
	return dev, release
}

// writeTable writes the partition table: GPT with sgdisk, MBR with sfdisk.
func writeTable(t testing.TB, disk string, spec Spec, pos []placed, ext placed) {
	t.Helper()
	ss := int64(spec.SectorSize)
	dev, release := tableDevice(t, disk, ss)
	defer release()
	if spec.Table == "gpt" {
		args := []string{"-o"}
		for i, p := range spec.Parts {
			n := pos[i].number
			args = append(args,
				fmt.Sprintf("-n%d:%d:%d", n, pos[i].start/ss, (pos[i].start+pos[i].size)/ss-1),
				fmt.Sprintf("-t%d:%s", n, gptType(p)),
				fmt.Sprintf("-c%d:%s", n, partName(p, n)))
		}
		mustRun(t, "sgdisk", append(args, dev)...)
		return
	}
	// Entries are numbered in order: primaries, the extended partition,
	// then logical partitions from 5.
	var sb strings.Builder
	sb.WriteString("label: dos\nlabel-id: 0x4c696665\nunit: sectors\n\n")
	for i, p := range spec.Parts {
		if p.Logical && pos[i].number == 5 {
			fmt.Fprintf(&sb, "start=%d, size=%d, type=5\n", ext.start/ss, ext.size/ss)
		}
		boot := ""
		if p.Bootable {
			boot = ", bootable"
		}
		fmt.Fprintf(&sb, "start=%d, size=%d, type=%s%s\n", pos[i].start/ss, pos[i].size/ss, mbrType(p), boot)
	}
	script := filepath.Join(filepath.Dir(disk), "sfdisk.script")
	if err := os.WriteFile(script, []byte(sb.String()), 0o644); err != nil {
		t.Fatalf("build fixture: write sfdisk script: %v", err)
	}
	if _, err := runToolStdin(script, "sfdisk", "-q", "--no-reread", "--no-tell-kernel", "--wipe", "never", dev); err != nil {
		t.Fatalf("build fixture: %v", err)
	}
}

// sfdiskDump is the part of `sfdisk --json` Build checks.
type sfdiskDump struct {
	PartitionTable struct {
		Label      string `json:"label"`
		SectorSize int64  `json:"sectorsize"`
		Partitions []struct {
			Node  string `json:"node"`
			Start int64  `json:"start"`
			Size  int64  `json:"size"`
			Type  string `json:"type"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// checkTable reads the table back with sfdisk and fails unless every
// partition lies where the fixture says: a wrong layout would make every
// later comparison meaningless.
func checkTable(t testing.TB, fx *Fixture) {
	t.Helper()
	ss := int64(fx.Spec.SectorSize)
	dev, release := tableDevice(t, fx.Path, ss)
	defer release()
	out := mustRun(t, "sfdisk", "--json", dev)
	var d sfdiskDump
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatalf("build fixture: parse sfdisk --json: %v\n%s", err, out)
	}
	wantLabel := map[string]string{"gpt": "gpt", "mbr": "dos"}[fx.Spec.Table]
	if d.PartitionTable.SectorSize != ss {
		t.Fatalf("build fixture: sfdisk sees %d-byte sectors, want %d", d.PartitionTable.SectorSize, ss)
	}
	if d.PartitionTable.Label != wantLabel {
		t.Fatalf("build fixture: sfdisk sees a %q table, want %q", d.PartitionTable.Label, wantLabel)
	}
	got := map[int][2]int64{}
	for _, p := range d.PartitionTable.Partitions {
		// Nodes are the path with the number appended (disk.img1), or
		// /dev/loop0p1 for a loop device.
		n, err := strconv.Atoi(p.Node[len(strings.TrimRight(p.Node, "0123456789")):])
		if err != nil {
			t.Fatalf("build fixture: sfdisk node %q: %v", p.Node, err)
		}
		got[n] = [2]int64{p.Start * ss, p.Size * ss}
	}
	want := append([]PartInfo(nil), fx.Parts...)
	if fx.Extended != nil {
		want = append(want, *fx.Extended)
	}
	for _, p := range want {
		g, ok := got[p.Number]
		if !ok {
			t.Fatalf("build fixture: sfdisk does not list partition %d", p.Number)
		}
		// sfdisk lists an extended partition's size as written.
		if g[0] != p.Start || g[1] != p.Size {
			t.Fatalf("build fixture: partition %d at [%d, +%d), want [%d, +%d)", p.Number, g[0], g[1], p.Start, p.Size)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("build fixture: sfdisk lists %d partitions, want %d", len(got), len(want))
	}
}

// writeBootCode fills the MBR boot code area and the gap before the first
// partition with non-zero pseudo-random bytes, leaving the disk signature,
// partition entries and GPT structures alone.
func writeBootCode(t testing.TB, fx *Fixture, pos []placed) {
	t.Helper()
	ss := int64(fx.Spec.SectorSize)
	rng := rand.New(rand.NewPCG(0x626f6f74, uint64(fx.Spec.Size)))
	nonZero := func(n int64) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(1 + rng.IntN(255))
		}
		return b
	}
	fx.BootCode = nonZero(440)
	copy(fx.BootCode, "LIFEBOAT-MBR")
	fx.GapOff = ss
	if fx.Spec.Table == "gpt" {
		fx.GapOff = 2*ss + (16384+ss-1)/ss*ss
	}
	first := fx.Spec.Size
	for _, p := range pos {
		first = min(first, p.start)
	}
	if fx.Extended != nil {
		first = min(first, fx.Extended.Start)
	}
	fx.GapLen = max(0, first-fx.GapOff)
	gap := nonZero(fx.GapLen)
	copy(gap, "LIFEBOAT-GAP")
	f, err := os.OpenFile(fx.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("build fixture: open disk for boot code: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteAt(fx.BootCode, 0); err != nil {
		t.Fatalf("build fixture: write boot code: %v", err)
	}
	if _, err := f.WriteAt(gap, fx.GapOff); err != nil {
		t.Fatalf("build fixture: write boot gap: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("build fixture: close disk: %v", err)
	}
}
