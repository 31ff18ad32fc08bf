package bootfix

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// grubImages returns GRUB's real boot.img and a core.img made by
// grub-mkimage, with its block list set as for a BIOS boot partition at
// sector 2048.
func grubImages(t *testing.T) (mbr, core []byte) {
	t.Helper()
	testenv.RequireTools(t, "grub-mkimage")
	boot, err := os.ReadFile("/usr/lib/grub/i386-pc/boot.img")
	if err != nil {
		testenv.Skip(t, "needs /usr/lib/grub/i386-pc (apt-get install grub-pc-bin)")
	}
	out := filepath.Join(t.TempDir(), "core.img")
	if b, err := exec.Command("grub-mkimage", "-O", "i386-pc", "-o", out, "-p", "(,gpt2)/boot/grub", "biosdisk", "part_gpt", "ext2").CombinedOutput(); err != nil {
		t.Fatalf("grub-mkimage: %v %s", err, b)
	}
	core, err = os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	mbr = append([]byte(nil), boot[:440]...)
	binary.LittleEndian.PutUint64(mbr[bootKernelSector:], 2048)
	binary.LittleEndian.PutUint64(core[blockListEnd:], 2049)
	binary.LittleEndian.PutUint16(core[blockListEnd+8:], uint16((len(core)+511)/512-1))
	return mbr, core
}

func TestMoveGRUBCore(t *testing.T) {
	mbr, core := grubImages(t)
	n := binary.LittleEndian.Uint16(core[blockListEnd+8:])
	moved, err := MoveGRUBCore(mbr, core, 2048, 67584, 2048)
	if err != nil || !moved {
		t.Fatalf("moved %v, %v", moved, err)
	}
	if got := binary.LittleEndian.Uint64(mbr[bootKernelSector:]); got != 67584 {
		t.Errorf("boot.img points at %d, want 67584", got)
	}
	if got := binary.LittleEndian.Uint64(core[blockListEnd:]); got != 67585 {
		t.Errorf("block list starts at %d, want 67585", got)
	}
	if binary.LittleEndian.Uint16(core[blockListEnd+8:]) != n {
		t.Error("the block list's length changed")
	}

	// Pointing elsewhere (GRUB embedded after the MBR, not in this
	// partition): nothing to do.
	mbr, core = grubImages(t)
	binary.LittleEndian.PutUint64(mbr[bootKernelSector:], 1)
	if moved, err := MoveGRUBCore(mbr, core, 2048, 4096, 2048); moved || err != nil {
		t.Errorf("core outside the partition: moved %v, %v", moved, err)
	}
	// Not GRUB.
	if moved, err := MoveGRUBCore(make([]byte, 440), core, 2048, 4096, 2048); moved || err != nil {
		t.Errorf("zero MBR: moved %v, %v", moved, err)
	}
	// A block list leaving the partition is refused, and nothing changes.
	mbr, core = grubImages(t)
	binary.LittleEndian.PutUint64(core[blockListEnd:], 9000)
	before, coreBefore := bytes.Clone(mbr), bytes.Clone(core)
	if _, err := MoveGRUBCore(mbr, core, 2048, 4096, 2048); err == nil || !strings.Contains(err.Error(), "outside its BIOS boot partition") {
		t.Errorf("got %v", err)
	}
	if !bytes.Equal(mbr, before) || !bytes.Equal(core, coreBefore) {
		t.Error("a refused move changed the boot code or the core image")
	}
}

// esp makes a FAT image holding files (ESP path -> host file).
func esp(t *testing.T, files map[string]string) string {
	t.Helper()
	testenv.RequireTools(t, "mkfs.fat", "mmd", "mcopy", "mdir")
	img := filepath.Join(t.TempDir(), "esp.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(img, 16<<20)
	if b, err := exec.Command("mkfs.fat", "-F", "16", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.fat: %v %s", err, b)
	}
	for dst, src := range files {
		dir := ""
		for _, part := range strings.Split(strings.Trim(filepath.Dir(dst), "/"), "/") {
			dir += "/" + part
			mtools(context.Background(), "mmd", "-i", img, "::"+dir)
		}
		if _, err := mtools(context.Background(), "mcopy", "-i", img, src, "::"+dst); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

func espFile(t *testing.T, img, p string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "f")
	if _, err := mtools(context.Background(), "mcopy", "-n", "-i", img, "::"+p, out); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	b, _ := os.ReadFile(out)
	return b
}

func TestFallback(t *testing.T) {
	dir := t.TempDir()
	fake := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o644)
		return p
	}
	shim, grub, other := "/usr/lib/shim/shimx64.efi.signed", "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", fake("other", "another loader")
	for _, p := range []string{shim, grub} {
		if _, err := os.Stat(p); err != nil {
			testenv.Skip(t, "needs "+p+" (apt-get install shim-signed grub-efi-amd64-signed)")
		}
	}
	read := func(p string) []byte { b, _ := os.ReadFile(p); return b }
	ctx := context.Background()

	t.Run("shim", func(t *testing.T) {
		img := esp(t, map[string]string{"/EFI/debian/shimx64.efi": shim, "/EFI/debian/grubx64.efi": grub})
		did, err := Fallback(ctx, img)
		if err != nil || !strings.Contains(did, `\EFI\BOOT\BOOTX64.EFI from \EFI\debian\shimx64.efi`) {
			t.Fatalf("%q, %v", did, err)
		}
		if !bytes.Equal(espFile(t, img, FallbackPath), read(shim)) || !bytes.Equal(espFile(t, img, "/EFI/BOOT/grubx64.efi"), read(grub)) {
			t.Error("BOOTX64.EFI is not the shim, or grubx64.efi is not beside it")
		}
		if b, err := exec.Command("fsck.fat", "-n", img).CombinedOutput(); err != nil {
			t.Errorf("fsck.fat: %v\n%s", err, b)
		}
	})
	t.Run("grub-only", func(t *testing.T) {
		img := esp(t, map[string]string{"/EFI/arch/grubx64.efi": grub})
		did, err := Fallback(ctx, img)
		if err != nil || !strings.Contains(did, `from \EFI\arch\grubx64.efi`) || !bytes.Equal(espFile(t, img, FallbackPath), read(grub)) {
			t.Fatalf("%q, %v", did, err)
		}
	})
	t.Run("present", func(t *testing.T) {
		img := esp(t, map[string]string{"/EFI/BOOT/BOOTX64.EFI": other, "/EFI/debian/shimx64.efi": shim})
		if did, err := Fallback(ctx, img); did != "" || err != nil {
			t.Fatalf("%q, %v", did, err)
		}
		if !bytes.Equal(espFile(t, img, FallbackPath), read(other)) {
			t.Error("an existing fallback loader was replaced")
		}
	})
	t.Run("none", func(t *testing.T) {
		img := esp(t, map[string]string{"/EFI/tools/shell.efi": other})
		if _, err := Fallback(ctx, img); err == nil || !strings.Contains(err.Error(), "no shimx64.efi") {
			t.Fatalf("got %v", err)
		}
	})
}

// TestEntryArgs checks the efibootmgr command; running it needs a machine
// booted through UEFI, which the test machines are not, so AddEntry is
// checked only for its refusal there.
func TestEntryArgs(t *testing.T) {
	got := EntryArgs("/dev/nvme1n1", 1, "Lifeboat copy", "/EFI/BOOT/BOOTX64.EFI")
	want := []string{"--create", "--disk", "/dev/nvme1n1", "--part", "1", "--label", "Lifeboat copy", "--loader", `\EFI\BOOT\BOOTX64.EFI`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%q", got)
	}
	if err := AddEntry(context.Background(), t.TempDir(), "/dev/null", 1, "x", FallbackPath); err == nil || !strings.Contains(err.Error(), "did not boot through UEFI") {
		t.Errorf("got %v", err)
	}
}
