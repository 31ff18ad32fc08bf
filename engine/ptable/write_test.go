package ptable

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// readRange returns n bytes at off of the file at path.
func readRange(t testing.TB, path string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWriteGPTSameDisk writes a table read from an sgdisk image onto a
// blank disk of the same size: the header and entry sectors must come out
// byte for byte as sgdisk wrote them.
func TestWriteGPTSameDisk(t *testing.T) {
	img := makeGPTImage(t)
	tab := readImage(t, img, 512)
	out := newImage(t, "out.img", 128*mib)
	writeImage(t, tab, out, 128*mib)
	tool(t, "", "sgdisk", "-v", out)
	if a, b := sfdiskDump(t, img), sfdiskDump(t, out); a != b {
		t.Errorf("sfdisk -d differs:\n%s\n%s", a, b)
	}
	for _, r := range []struct {
		what   string
		off, n int64
	}{
		{"primary header and entries", 512, 33 * 512},
		{"backup entries and header", 128*mib - 33*512, 33 * 512},
		{"protective MBR", 0, 512},
	} {
		if !bytes.Equal(readRange(t, img, r.off, r.n), readRange(t, out, r.off, r.n)) {
			t.Errorf("%s differ from sgdisk's", r.what)
		}
	}
}

func TestWriteMBRSameDisk(t *testing.T) {
	img := makeMBRImage(t)
	tab := readImage(t, img, 512)
	tab.BootCode = bytes.Repeat([]byte{0xAB}, 440)
	out := newImage(t, "out.img", 128*mib)
	writeImage(t, tab, out, 128*mib)
	if a, b := sfdiskDump(t, img), sfdiskDump(t, out); a != b {
		t.Errorf("sfdisk -d differs:\n%s\n%s", a, b)
	}
	tool(t, "", "sfdisk", "-V", out)
	back := readImage(t, out, 512)
	if !bytes.Equal(back.BootCode, tab.BootCode) {
		t.Error("boot code not kept")
	}
	// The EBRs land where sfdisk put them, with sfdisk's entries (CHS
	// included, for its 255/63 geometry of an image file).
	for _, p := range tab.Partitions {
		if o, ok := p.EBR(); ok {
			if a, b := readRange(t, img, o+446, 66), readRange(t, out, o+446, 66); !bytes.Equal(a, b) {
				t.Errorf("EBR of %d differs:\n% x\n% x", p.Number, a, b)
			}
		}
	}
	if a, b := readRange(t, img, 446, 66), readRange(t, out, 446, 66); !bytes.Equal(a, b) {
		t.Errorf("MBR entries differ:\n% x\n% x", a, b)
	}
}

func TestWipe(t *testing.T) {
	testenv.RequireTools(t, "wipefs", "blkid")
	for name, mk := range map[string]func(testing.TB) string{"gpt": makeGPTImage, "mbr": makeMBRImage} {
		t.Run(name, func(t *testing.T) {
			img := mk(t)
			f, err := os.OpenFile(img, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := Wipe(context.Background(), f, 128*mib, 512); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if out, err := toolErr("", "sfdisk", "-d", img); err == nil {
				t.Errorf("sfdisk still sees a table:\n%s", out)
			}
			if out := tool(t, "", "wipefs", "--no-act", img); strings.TrimSpace(out) != "" {
				t.Errorf("wipefs finds signatures:\n%s", out)
			}
			if out, err := toolErr("", "blkid", "-p", img); err == nil {
				t.Errorf("blkid finds something:\n%s", out)
			}
			if tab := readImage(t, img, 512); tab.Kind != None {
				t.Errorf("Read after Wipe: %q", tab.Kind)
			}
		})
	}
}

// TestWriteRejects checks Write refuses tables it cannot write faithfully.
func TestWriteRejects(t *testing.T) {
	img := makeGPTImage(t)
	tab := readImage(t, img, 512)
	disk := make(memDisk, 128*mib)
	for _, tc := range []struct {
		name string
		edit func(*Table)
		want string
	}{
		{"long name", func(t *Table) { t.Partitions[0].Name = strings.Repeat("x", 37) }, "longer than 36"},
		{"bad GUID", func(t *Table) { t.Partitions[0].GUID = "nope" }, "unique GUID of partition 1"},
		{"overlap", func(t *Table) { t.Partitions[1].Start -= 512 * 2048 }, "overlap"},
		{"past usable", func(t *Table) { t.Partitions[3].Size += 512 }, "outside the GPT usable area"},
		{"unaligned", func(t *Table) { t.Partitions[3].Size -= 100 }, "sector boundaries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tab.Clone()
			tc.edit(c)
			err := c.Write(context.Background(), disk, int64(len(disk)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	// A cancelled context writes nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tab.Write(ctx, disk, int64(len(disk))); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled write: %v", err)
	}
	if !isZero(disk[:1024]) {
		t.Error("cancelled write wrote")
	}
}

// TestWriteHandBuiltMBR writes tables built in code, as an engine may: EBR
// positions left for Write to choose, and an empty extended partition.
func TestWriteHandBuiltMBR(t *testing.T) {
	testenv.RequireTools(t, "sfdisk")
	const size = 64 * mib
	tab := &Table{
		Kind: MBR, SectorSize: 512, DiskSignature: 0x0badcafe,
		Extended: &Partition{Number: 2, Start: 10 * mib, Size: 50 * mib, MBRType: 0x0f},
		Partitions: []Partition{
			{Number: 1, Start: mib, Size: 8 * mib, MBRType: 0x83, Bootable: true},
			{Number: 5, Start: 11 * mib, Size: 10 * mib, MBRType: 0x83, Logical: true},
			{Number: 6, Start: 22 * mib, Size: 10 * mib, MBRType: 0x8e, Logical: true},
		},
	}
	img := newImage(t, "hand.img", size)
	writeImage(t, tab, img, size)
	tool(t, "", "sfdisk", "-V", img)
	back := readImage(t, img, 512)
	compareWithSfdisk(t, back, sfdiskJSON(t, img))
	p6, _ := back.Find(6)
	if o, _ := p6.EBR(); o != 22*mib-512 {
		t.Errorf("EBR of 6 at %d, want the sector before the partition", o)
	}

	empty := &Table{
		Kind: MBR, SectorSize: 512,
		Extended:   &Partition{Number: 4, Start: 40 * mib, Size: 10 * mib, MBRType: 0x05},
		Partitions: []Partition{{Number: 1, Start: mib, Size: 30 * mib, MBRType: 0x07}},
	}
	img2 := newImage(t, "empty.img", size)
	writeImage(t, empty, img2, size)
	back = readImage(t, img2, 512)
	compareWithSfdisk(t, back, sfdiskJSON(t, img2))
	if len(back.Warnings()) != 0 || back.Extended == nil || len(back.Partitions) != 1 {
		t.Errorf("empty extended read back as %+v, warnings %q", back, back.Warnings())
	}
	plan, _ := planAndWrite(t, back, size, PlanOptions{TargetSize: 2 * size, Layout: LayoutProportional})
	if p1, _ := plan.Find(1); plan.Extended.Start != 40*mib+(p1.End()-31*mib) {
		t.Errorf("empty extended moved to %d, partition 1 ends at %d", plan.Extended.Start, p1.End())
	}
}

// TestLeadingEmptyEBR covers a chain whose first EBR holds only a link (the
// fuzzer found Write used to move the first logical's EBR to the container's
// start): Write keeps the EBR where it was and links to it, and sfdisk
// reads the same partitions.
func TestLeadingEmptyEBR(t *testing.T) {
	testenv.RequireTools(t, "sfdisk")
	const size = 64 * mib
	tab := &Table{
		Kind: MBR, SectorSize: 512,
		Extended: &Partition{Number: 2, Start: 10 * mib, Size: 50 * mib, MBRType: 0x05},
		Partitions: []Partition{
			{Number: 1, Start: mib, Size: 8 * mib, MBRType: 0x83},
			{Number: 5, Start: 13 * mib, Size: 10 * mib, MBRType: 0x83, Logical: true, ebr: 12 * mib},
			{Number: 6, Start: 25 * mib, Size: 10 * mib, MBRType: 0x82, Logical: true},
		},
	}
	img := newImage(t, "lead.img", size)
	writeImage(t, tab, img, size)
	back := readImage(t, img, 512)
	if len(back.Warnings()) != 0 {
		t.Errorf("warnings %q", back.Warnings())
	}
	p5, _ := back.Find(5)
	if o, _ := p5.EBR(); o != 12*mib {
		t.Errorf("first logical's EBR at %d, want %d", o, 12*mib)
	}
	compareWithSfdisk(t, back, sfdiskJSON(t, img))
	ext := back.MetadataExtents(size)
	if len(ext) != 4 || ext[1].Off != 10*mib || ext[2].Off != 12*mib {
		t.Errorf("MetadataExtents %v", ext)
	}
}
