package ptable

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

func TestReadGPTMatchesSfdisk(t *testing.T) {
	img := makeGPTImage(t)
	tab := readImage(t, img, 512)
	compareWithSfdisk(t, tab, sfdiskJSON(t, img))
	if len(tab.Warnings()) != 0 {
		t.Errorf("warnings on a clean GPT: %q", tab.Warnings())
	}
	if tab.EntryCount != 128 || tab.EntrySize != 128 {
		t.Errorf("entry array %d x %d, want 128 x 128", tab.EntryCount, tab.EntrySize)
	}
	names := map[int]string{1: "BIOS boot", 2: "EFI System", 3: "Linux filesystem", 5: "Microsoft basic data"}
	for n, want := range names {
		p, ok := tab.Find(n)
		if !ok || p.TypeName != want {
			t.Errorf("partition %d type name %q, want %q", n, p.TypeName, want)
		}
	}
	if _, ok := tab.Find(4); ok {
		t.Error("empty entry 4 read as a partition")
	}
	off, size := tab.BootGap()
	if off != 34*512 || size != 2048*512-34*512 {
		t.Errorf("BootGap %d+%d, want %d+%d", off, size, 34*512, 2048*512-34*512)
	}
	const disk = 128 * mib
	want := []fsmap.Extent{{Off: 0, Len: 34 * 512}, {Off: disk - 33*512, Len: 33 * 512}}
	if got := tab.MetadataExtents(disk); !reflect.DeepEqual(got, want) {
		t.Errorf("MetadataExtents %v, want %v", got, want)
	}
}

func TestReadMBRMatchesSfdisk(t *testing.T) {
	img := makeMBRImage(t)
	tab := readImage(t, img, 512)
	compareWithSfdisk(t, tab, sfdiskJSON(t, img))
	if len(tab.Warnings()) != 0 {
		t.Errorf("warnings on a clean MBR: %q", tab.Warnings())
	}
	if tab.Extended == nil || tab.Extended.Number != 3 || tab.Extended.TypeName != "Extended" {
		t.Fatalf("extended partition %+v", tab.Extended)
	}
	if p, _ := tab.Find(1); p.TypeName != "W95 FAT32 (LBA)" || !p.Bootable {
		t.Errorf("partition 1: %+v", p)
	}
	// Every metadata sector but sector 0 is an EBR sfdisk wrote: it
	// carries the boot signature, and there is one per logical partition.
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	ext := tab.MetadataExtents(int64(len(raw)))
	if len(ext) != 4 || ext[0] != (fsmap.Extent{Off: 0, Len: 512}) || ext[1].Off != tab.Extended.Start {
		t.Fatalf("MetadataExtents %v", ext)
	}
	for i, e := range ext[1:] {
		if !hasBootSignature(raw[e.Off : e.Off+512]) {
			t.Errorf("EBR %d at byte %d has no signature", i, e.Off)
		}
		p, _ := tab.Find(5 + i)
		if o, ok := p.EBR(); !ok || o != e.Off {
			t.Errorf("logical %d EBR %d, extent %d", p.Number, o, e.Off)
		}
	}
	if off, size := tab.BootGap(); off != 512 || size != 2048*512-512 {
		t.Errorf("BootGap %d+%d", off, size)
	}
}

// TestReadNativeFourK reads tables that the tools wrote on a loop device
// with 4096-byte logical sectors.
func TestReadNativeFourK(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "losetup", "sgdisk", "sfdisk")
	for _, kind := range []string{"gpt", "dos"} {
		t.Run(kind, func(t *testing.T) {
			img := newImage(t, kind+".img", 64*mib)
			dev := loop4K(t, img)
			if kind == "gpt" {
				tool(t, "", "sgdisk", "-o", "-n", "1:0:+8M", "-t", "1:EF00", "-c", "1:esp", "-n", "2:0:0", "-c", "2:data", dev)
			} else {
				tool(t, "label: dos\nlabel-id: 0xcafe0001\nsize=8M, type=c, bootable\ntype=5\nsize=8M, type=83\ntype=83\n",
					"sfdisk", "--no-reread", "--no-tell-kernel", dev)
			}
			sf := sfdiskJSON(t, dev)
			if sf.SectorSize != 4096 {
				t.Fatalf("loop device sector size %d", sf.SectorSize)
			}
			tab := readImage(t, img, 4096)
			compareWithSfdisk(t, tab, sf)
			if kind == "gpt" {
				// Read with the wrong sector size: no GPT at byte 512,
				// and the error says which size would work.
				_, err := readImageErr(img, 512)
				if err == nil || !strings.Contains(err.Error(), "4096-byte sectors") {
					t.Errorf("read 4Kn GPT as 512: %v", err)
				}
			}
		})
	}
}

// loop4K attaches img to a loop device with 4096-byte sectors.
func loop4K(t testing.TB, img string) string {
	t.Helper()
	dev := strings.TrimSpace(tool(t, "", "losetup", "-f", "--show", "-b", "4096", img))
	t.Cleanup(func() {
		if _, err := toolErr("", "losetup", "-d", dev); err != nil {
			t.Errorf("detach %s: %v", dev, err)
		}
	})
	return dev
}

func TestGPTPrimaryDamagedUsesBackup(t *testing.T) {
	img := makeGPTImage(t)
	orig := readImage(t, img, 512)
	for _, tc := range []struct {
		name string
		off  int64
	}{{"header", 512 + 40}, {"entries", 2*512 + 200}} {
		t.Run(tc.name, func(t *testing.T) {
			copyImg := copyImage(t, img)
			flipByte(t, copyImg, tc.off)
			tab := readImage(t, copyImg, 512)
			w := strings.Join(tab.Warnings(), "\n")
			if !strings.Contains(w, "primary GPT is damaged") || !strings.Contains(w, "backup") {
				t.Errorf("warnings %q", w)
			}
			if !reflect.DeepEqual(tab.Partitions, orig.Partitions) || tab.DiskGUID != orig.DiskGUID {
				t.Errorf("backup table differs from the primary")
			}
			// Writing the table read from the backup repairs the disk.
			writeImage(t, tab, copyImg, 128*mib)
			tool(t, "", "sgdisk", "-v", copyImg)
			if again := readImage(t, copyImg, 512); len(again.Warnings()) != 0 {
				t.Errorf("warnings after repair: %q", again.Warnings())
			}
			// Now damage both copies.
			flipByte(t, copyImg, 512+40)
			flipByte(t, copyImg, 128*mib-512+40)
			_, err := readImageErr(copyImg, 512)
			if err == nil || !strings.Contains(err.Error(), "GPT header CRC mismatch at LBA 1") || !strings.Contains(err.Error(), "backup") {
				t.Errorf("both copies damaged: %v", err)
			}
		})
	}
}

func TestReadBackupWarnings(t *testing.T) {
	img := makeGPTImage(t)
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	// The disk copied onto a larger one: the backup is no longer at the end.
	bigger := append(append([]byte(nil), raw...), make([]byte, mib)...)
	tab, err := Read(context.Background(), memDisk(bigger), int64(len(bigger)), 512)
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(tab.Warnings(), "\n"); !strings.Contains(w, "not at the last sector") {
		t.Errorf("warnings %q", w)
	}
	// Protective MBR lost: still a GPT, with a warning.
	noPMBR := append([]byte(nil), raw...)
	clear(noPMBR[:512])
	tab, err = Read(context.Background(), memDisk(noPMBR), int64(len(noPMBR)), 512)
	if err != nil || tab.Kind != GPT || len(tab.Partitions) != 4 {
		t.Fatalf("GPT without protective MBR: %v %+v", err, tab)
	}
	if w := strings.Join(tab.Warnings(), "\n"); !strings.Contains(w, "no protective MBR") {
		t.Errorf("warnings %q", w)
	}
	// Backup destroyed.
	for i := len(raw) - 512; i < len(raw); i++ {
		raw[i] = 0
	}
	tab, err = Read(context.Background(), memDisk(raw), int64(len(raw)), 512)
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(tab.Warnings(), "\n"); !strings.Contains(w, "backup GPT is damaged or missing") {
		t.Errorf("warnings %q", w)
	}
}

func TestReadNoTable(t *testing.T) {
	ctx := context.Background()
	blank := make(memDisk, mib)
	if tab, err := Read(ctx, blank, int64(len(blank)), 512); err != nil || tab.Kind != None {
		t.Fatalf("blank disk: %v %v", tab, err)
	}
	tiny := make(memDisk, 100)
	if tab, err := Read(ctx, tiny, 100, 512); err != nil || tab.Kind != None {
		t.Fatalf("tiny disk: %v %v", tab, err)
	}
	type fs struct {
		tool string
		args []string
	}
	for _, f := range []fs{
		{"mkfs.vfat", []string{"-F", "32"}},
		{"mkfs.vfat", []string{"-F", "16"}},
		{"mkfs.ntfs", []string{"-F", "-Q"}},
		{"mkfs.exfat", nil},
	} {
		t.Run(f.tool+strings.Join(f.args, ""), func(t *testing.T) {
			testenv.RequireTools(t, f.tool)
			img := newImage(t, "fs.img", 64*mib)
			tool(t, "", f.tool, append(f.args, img)...)
			raw, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			if !hasBootSignature(raw[:512]) {
				t.Fatalf("%s wrote no 0x55AA: the test proves nothing", f.tool)
			}
			tab := readImage(t, img, 512)
			if tab.Kind != None {
				t.Errorf("superfloppy %s read as %q with %d partitions", f.tool, tab.Kind, len(tab.Partitions))
			}
		})
	}
}

// TestReadHostileMBR edits a good MBR image into broken ones and checks the
// errors name what is wrong.
func TestReadHostileMBR(t *testing.T) {
	img := makeMBRImage(t)
	good, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	tab := readImage(t, img, 512)
	p6, ok6 := tab.Find(6)
	p7, ok7 := tab.Find(7)
	if !ok6 || !ok7 {
		t.Fatalf("partitions %+v", tab.Partitions)
	}
	ebr6, _ := p6.EBR()
	ebr7, _ := p7.EBR()
	for _, tc := range []struct {
		name string
		edit func(b []byte)
		want string
	}{
		{"primary past end", func(b []byte) { binary.LittleEndian.PutUint32(b[446+16+12:], 1<<30) }, "partition 2 (bytes"},
		{"overlap", func(b []byte) { binary.LittleEndian.PutUint32(b[446+16+8:], 4096) }, "overlap"},
		{"chain loop", func(b []byte) {
			// The last EBR links back to the EBR of logical 6.
			e := b[ebr7+462:]
			e[4] = 0x05
			binary.LittleEndian.PutUint32(e[8:], uint32((ebr6-tab.Extended.Start)/512))
			binary.LittleEndian.PutUint32(e[12:], 2048)
		}, "loops back"},
		{"logical past end", func(b []byte) {
			binary.LittleEndian.PutUint32(b[ebr7+446+12:], 1<<30)
		}, "logical partition 7 (bytes"},
		{"link outside", func(b []byte) {
			binary.LittleEndian.PutUint32(b[tab.Extended.Start+462+8:], 1<<30)
		}, "outside the extended partition"},
		{"two extended", func(b []byte) { b[446+16+4] = 0x0f }, "both extended"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), good...)
			tc.edit(b)
			_, err := Read(context.Background(), memDisk(b), int64(len(b)), 512)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	// A bad boot flag means sector 0 is not a partition table at all.
	b := append([]byte(nil), good...)
	b[446] = 0x12
	if tab, err := Read(context.Background(), memDisk(b), int64(len(b)), 512); err != nil || tab.Kind != None {
		t.Errorf("invalid status byte: %v %v", tab, err)
	}
}

func TestTypeNamesMatchSfdisk(t *testing.T) {
	testenv.RequireTools(t, "sfdisk")
	for _, label := range []string{"gpt", "dos"} {
		out := tool(t, "", "sfdisk", "--label", label, "-T")
		known := map[string]string{}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || f[0] == "Id" {
				continue
			}
			known[strings.ToUpper(f[0])] = strings.Join(f[1:], " ")
		}
		if label == "gpt" {
			for g, n := range gptTypeNames {
				if known[g] != n {
					t.Errorf("GPT %s: we say %q, sfdisk %q", g, n, known[g])
				}
			}
		} else {
			for b, n := range mbrTypeNames {
				k := strings.ToUpper(strings.TrimPrefix(mbrTypeString(b), "0x"))
				k = strings.TrimPrefix(k, "0")
				if known[k] != n {
					t.Errorf("MBR %#x: we say %q, sfdisk %q", b, n, known[k])
				}
			}
		}
	}
}

func TestGUIDRoundTrip(t *testing.T) {
	var b [16]byte
	for _, g := range []string{TypeEFISystem, TypeBIOSBoot, "00000000-0000-0000-0000-000000000001"} {
		if err := encodeGUID(b[:], strings.ToLower(g)); err != nil {
			t.Fatal(err)
		}
		if got := decodeGUID(b[:]); got != g {
			t.Errorf("GUID %s round-trips to %s", g, got)
		}
	}
	// The UEFI specification's byte order for the EFI System type.
	want := []byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}
	if err := encodeGUID(b[:], TypeEFISystem); err != nil || !bytes.Equal(b[:], want) {
		t.Errorf("EFI System GUID bytes % x", b)
	}
	for _, bad := range []string{"", "C12A7328F81F11D2BA4B00A0C93EC93B", "G12A7328-F81F-11D2-BA4B-00A0C93EC93B"} {
		if err := encodeGUID(b[:], bad); err == nil {
			t.Errorf("GUID %q accepted", bad)
		}
	}
}

func TestReadHybridMBRWarns(t *testing.T) {
	img := makeGPTImage(t)
	tool(t, "", "sgdisk", "-h", "3", img)
	tab := readImage(t, img, 512)
	if tab.Kind != GPT || !strings.Contains(strings.Join(tab.Warnings(), "\n"), "hybrid MBR") {
		t.Errorf("hybrid MBR: kind %q, warnings %q", tab.Kind, tab.Warnings())
	}
}
