package testdisk

import "testing"

// GPTStandard builds a 384 MiB GPT disk in dir as a BIOS+UEFI Linux/Windows
// machine has it: a 1 MiB BIOS boot partition of random bytes (ef02), a
// 64 MiB FAT32 EFI system partition with files (ef00), a 128 MiB ext4 root
// with files of every shape (8300), a 96 MiB NTFS partition with files
// (0700), and about 94 MiB of free space at the end. Boot code is written
// into the protective MBR and the gap after the partition entries. Filling
// the NTFS partition needs root.
func GPTStandard(t testing.TB, dir string) *Fixture {
	t.Helper()
	return Build(t, dir, Spec{
		Table:    "gpt",
		Size:     384 * MiB,
		BootCode: true,
		Parts: []Part{
			{FS: "raw", Size: 1 * MiB, GPTType: "ef02", Label: "bios-boot"},
			{FS: "vfat", Size: 64 * MiB, GPTType: "ef00", Label: "ESP",
				Files: &TreeOptions{Seed: 11, TotalBytes: 4 << 20, UTF8: true}},
			{FS: "ext4", Size: 128 * MiB, GPTType: "8300", Label: "root",
				Files: &TreeOptions{Seed: 12, TotalBytes: 16 << 20, HardLinks: true, Symlinks: true,
					Sparse: true, UTF8: true, CaseCollide: true}},
			{FS: "ntfs", Size: 96 * MiB, GPTType: "0700", Label: "Windows",
				Files: &TreeOptions{Seed: 13, TotalBytes: 8 << 20, HardLinks: true, Symlinks: true,
					Sparse: true, UTF8: true, CaseCollide: true}},
		},
	})
}

// MBRStandard builds a 320 MiB MBR disk in dir: a bootable 64 MiB primary
// ext4 with files (83), a 64 MiB primary exFAT with files (7), and an
// extended partition holding a 96 MiB logical ext4 with files (83) and a
// 32 MiB logical swap with a label and UUID (82). Boot code is written into
// the MBR and the gap before the first partition, as GRUB would. Filling
// the exFAT partition needs root.
func MBRStandard(t testing.TB, dir string) *Fixture {
	t.Helper()
	return Build(t, dir, Spec{
		Table:    "mbr",
		Size:     320 * MiB,
		BootCode: true,
		Parts: []Part{
			{FS: "ext4", Size: 64 * MiB, MBRType: "83", Bootable: true, Label: "boot",
				Files: &TreeOptions{Seed: 21, TotalBytes: 4 << 20, HardLinks: true, Symlinks: true}},
			{FS: "exfat", Size: 64 * MiB, MBRType: "7", Label: "DATA",
				Files: &TreeOptions{Seed: 22, TotalBytes: 6 << 20, UTF8: true}},
			{FS: "ext4", Size: 96 * MiB, MBRType: "83", Logical: true, Label: "home",
				Files: &TreeOptions{Seed: 23, TotalBytes: 8 << 20, HardLinks: true, Symlinks: true,
					Sparse: true, UTF8: true, CaseCollide: true}},
			{FS: "swap", Size: 32 * MiB, MBRType: "82", Logical: true, Label: "swap"},
		},
	})
}
