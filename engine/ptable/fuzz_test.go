package ptable

import (
	"context"
	"os"
	"reflect"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// fuzzSeeds returns small disks (small, because the fuzzer minimises
// every new input and that is slow on large ones) holding tables: written by our own code
// from hand-made tables, and by sgdisk and sfdisk where they are installed.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	gpt := &Table{
		Kind: GPT, SectorSize: 512, DiskGUID: "11111111-2222-3333-4444-555555555555",
		BootCode: []byte{0xEB, 0x63, 0x90}, DiskSignature: 0xdeadbeef,
		EntryCount: 4, EntrySize: 128,
		Partitions: []Partition{
			{Number: 1, Start: 4 * 512, Size: 8 * 512, Type: TypeBIOSBoot, GUID: "AAAAAAAA-0000-0000-0000-000000000001", Name: "bios"},
			{Number: 3, Start: 16 * 512, Size: 12 * 512, Type: TypeLinuxFilesystem, GUID: "AAAAAAAA-0000-0000-0000-000000000003", Name: "ünï ☃", Attributes: 1<<60 | 4},
		},
	}
	mbr := &Table{
		Kind: MBR, SectorSize: 512, DiskSignature: 0x12345678,
		Extended: &Partition{Number: 2, Start: 12 * 512, Size: 20 * 512, MBRType: 0x05},
		Partitions: []Partition{
			{Number: 1, Start: 2 * 512, Size: 8 * 512, MBRType: 0x0c, Bootable: true},
			{Number: 5, Start: 14 * 512, Size: 4 * 512, MBRType: 0x83, Logical: true},
			{Number: 6, Start: 20 * 512, Size: 4 * 512, MBRType: 0x82, Logical: true, ebr: 19 * 512},
			{Number: 7, Start: 26 * 512, Size: 6 * 512, MBRType: 0x07, Logical: true, ebr: 25 * 512},
		},
	}
	// A chain whose first EBR only links to the next one.
	lead := mbr.Clone()
	lead.Partitions[1].ebr = 13 * 512
	for _, tab := range []*Table{gpt, mbr, lead} {
		d := make(memDisk, 16*1024)
		if err := tab.Write(context.Background(), d, int64(len(d))); err != nil {
			t.Fatalf("seed: %v", err)
		}
		seeds = append(seeds, d)
	}
	dir := t.TempDir()
	if _, err := testenv.LookPath("sgdisk"); err == nil {
		p := dir + "/g.img"
		if os.WriteFile(p, make([]byte, 40*1024), 0o644) == nil {
			if _, err := toolErr("", "sgdisk", "-o", "-a", "1", "-n", "1:34:+4K", "-t", "1:EF00", "-c", "1:esp", "-n", "2:0:0", p); err == nil {
				if b, err := os.ReadFile(p); err == nil {
					seeds = append(seeds, b)
				}
			}
		}
	}
	if _, err := testenv.LookPath("sfdisk"); err == nil {
		p := dir + "/m.img"
		if os.WriteFile(p, make([]byte, 16*1024), 0o644) == nil {
			script := "label: dos\nstart=2, size=8, type=c, bootable\nstart=12, size=20, type=5\nstart=14, size=4, type=83\nstart=20, size=4, type=83\n"
			if _, err := toolErr(script, "sfdisk", "--no-reread", "--no-tell-kernel", p); err == nil {
				if b, err := os.ReadFile(p); err == nil {
					seeds = append(seeds, b)
				}
			}
		}
	}
	return seeds
}

// TestFuzzSeedsRead makes sure the seeds hold what they should, so the
// fuzzer starts from valid tables.
func TestFuzzSeedsRead(t *testing.T) {
	testenv.RequireTools(t, "sgdisk", "sfdisk")
	seeds := fuzzSeeds(t)
	if len(seeds) != 5 {
		t.Fatalf("%d seeds, want 5 (two from the tools)", len(seeds))
	}
	for i, s := range seeds {
		tab, err := Read(context.Background(), memDisk(s), int64(len(s)), 512)
		if err != nil || tab.Kind == None || len(tab.Partitions) < 2 {
			t.Errorf("seed %d: %v %+v", i, err, tab)
		}
	}
}

// FuzzRead feeds hostile disks to Read: it must return a table or an
// error, never panic or hang; a table it returns must survive Write and a
// second Read unchanged, and planning it must not panic.
func FuzzRead(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, data []byte, fourK bool) {
		ss := 512
		if fourK {
			ss = 4096
		}
		ctx := context.Background()
		tab, err := Read(ctx, memDisk(data), int64(len(data)), ss)
		if err != nil || tab.Kind == None {
			return
		}
		size := int64(len(data))
		tab.MetadataExtents(size)
		tab.BootGap()
		_, _ = Plan(tab, size, PlanOptions{TargetSize: 2 * size, Layout: LayoutProportional, Align: int64(ss)})
		out := make(memDisk, len(data))
		if err := tab.Write(ctx, out, size); err != nil {
			return
		}
		back, err := Read(ctx, out, size, ss)
		if err != nil {
			t.Fatalf("Read of our own Write: %v", err)
		}
		if back.Kind != tab.Kind || !reflect.DeepEqual(back.Partitions, tab.Partitions) || !reflect.DeepEqual(back.Extended, tab.Extended) {
			t.Fatalf("round trip changed the table:\n%+v\n%+v", tab, back)
		}
	})
}
