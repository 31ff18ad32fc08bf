// Package bootfix keeps a copied system disk bootable: it moves GRUB's BIOS
// pointers along with a BIOS boot partition that changed place, adds the
// removable-media fallback loader \EFI\BOOT\BOOTX64.EFI to an EFI system
// partition that lacks it, and builds the efibootmgr command that adds a
// firmware boot entry for a copy.
package bootfix

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Offsets in GRUB's i386-pc images (grub-core/boot/i386/pc/boot.S and
// diskboot.S): boot.img keeps the first sector of core.img as a 64-bit LBA
// at 0x5c; diskboot.img, core.img's first sector, ends with a list of
// (start LBA, sector count, segment) entries, 12 bytes each, growing down
// from byte 500 and ended by a zero count.
const (
	bootKernelSector = 0x5c
	blockListEnd     = 0x200 - 12
	blockListEntry   = 12
)

// IsGRUBBoot reports whether an MBR boot code area (at least 440 bytes) is
// GRUB's boot.img.
func IsGRUBBoot(mbr []byte) bool {
	return len(mbr) >= 440 && bytes.Contains(mbr[:440], []byte("GRUB "))
}

// MoveGRUBCore updates GRUB's BIOS boot chain for a core image that moved
// from the partition at oldLBA to newLBA (both in sectors, the partition
// holding size sectors): the LBA in mbr (boot.img) and the block list in
// core (core.img's first sector, diskboot.img), both changed in place, and
// only when every pointer checks out. It reports whether anything pointed
// into the old partition.
func MoveGRUBCore(mbr, core []byte, oldLBA, newLBA, size int64) (bool, error) {
	if !IsGRUBBoot(mbr) {
		return false, nil
	}
	if len(core) < 512 {
		return false, fmt.Errorf("GRUB core image: first sector is %d bytes", len(core))
	}
	inside := func(lba uint64) bool { return int64(lba) >= oldLBA && int64(lba) < oldLBA+size }
	first := binary.LittleEndian.Uint64(mbr[bootKernelSector:])
	if !inside(first) {
		return false, nil
	}
	if int64(first) != oldLBA {
		return false, fmt.Errorf("GRUB's boot code points at sector %d, inside the BIOS boot partition but not at its start (%d)", first, oldLBA)
	}
	// Check the whole block list before changing anything.
	var entries []int
	for off := blockListEnd; off >= 0x20; off -= blockListEntry {
		n := binary.LittleEndian.Uint16(core[off+8:])
		if n == 0 {
			break
		}
		start := binary.LittleEndian.Uint64(core[off:])
		if !inside(start) || int64(start)+int64(n) > oldLBA+size {
			return false, fmt.Errorf("GRUB's core image lists sectors %d-%d, outside its BIOS boot partition (sectors %d-%d)", start, int64(start)+int64(n)-1, oldLBA, oldLBA+size-1)
		}
		entries = append(entries, off)
	}
	if len(entries) == 0 {
		return false, fmt.Errorf("GRUB's core image at sector %d has an empty block list", first)
	}
	delta := newLBA - oldLBA
	binary.LittleEndian.PutUint64(mbr[bootKernelSector:], uint64(int64(first)+delta))
	for _, off := range entries {
		start := binary.LittleEndian.Uint64(core[off:])
		binary.LittleEndian.PutUint64(core[off:], uint64(int64(start)+delta))
	}
	return true, nil
}
