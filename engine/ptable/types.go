package ptable

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// GPT partition type GUIDs this package names. The names match what
// util-linux's sfdisk and fdisk show, so a user sees the same words here as in
// the tools they know.
const (
	TypeEFISystem         = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	TypeBIOSBoot          = "21686148-6449-6E6F-744E-656564454649"
	TypeLinuxFilesystem   = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	TypeLinuxSwap         = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
	TypeMicrosoftBasic    = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
	TypeMicrosoftReserved = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"
	TypeWindowsRecovery   = "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC"
)

var gptTypeNames = map[string]string{
	TypeEFISystem:                          "EFI System",
	"024DEE41-33E7-11D3-9D69-0008C781F39F": "MBR partition scheme",
	TypeBIOSBoot:                           "BIOS boot",
	TypeMicrosoftReserved:                  "Microsoft reserved",
	TypeMicrosoftBasic:                     "Microsoft basic data",
	"5808C8AA-7E8F-42E0-85D2-E1E90434CFB3": "Microsoft LDM metadata",
	"AF9B60A0-1431-4F62-BC68-3311714A69AD": "Microsoft LDM data",
	TypeWindowsRecovery:                    "Windows recovery environment",
	"E75CAF8F-F680-4CEE-AFA3-B001E56EFC2D": "Microsoft Storage Spaces",
	TypeLinuxSwap:                          "Linux swap",
	TypeLinuxFilesystem:                    "Linux filesystem",
	"3B8F8425-20E0-4F3B-907F-1A25A76F98E8": "Linux server data",
	"44479540-F297-41B2-9AF7-D131D5F0458A": "Linux root (x86)",
	"4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "Linux root (x86-64)",
	"69DAD710-2CE4-4E3C-B16C-21A1D49ABED3": "Linux root (ARM)",
	"B921B045-1DF0-41C3-AF44-4C6F280D3FAE": "Linux root (ARM-64)",
	"8DA63339-0007-60C0-C436-083AC8230908": "Linux reserved",
	"933AC7E1-2EB4-4F13-B844-0E14E2AEF915": "Linux home",
	"A19D880F-05FC-4D3B-A006-743F0F84911E": "Linux RAID",
	"E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
	"4D21B016-B534-45C2-A9FB-5C16E091FD2D": "Linux variable data",
	"7EC6F557-3BC5-4ACA-B293-16EF5DF639D1": "Linux temporary data",
	"8484680C-9521-48C6-9C11-B0720656F69E": "Linux /usr (x86-64)",
	"BC13C2FF-59E6-4262-A352-B275FD6F7172": "Linux extended boot",
	"48465300-0000-11AA-AA11-00306543ECAC": "Apple HFS/HFS+",
	"7C3457EF-0000-11AA-AA11-00306543ECAC": "Apple APFS",
}

var mbrTypeNames = map[byte]string{
	0x01: "FAT12",
	0x04: "FAT16 <32M",
	0x05: "Extended",
	0x06: "FAT16",
	0x07: "HPFS/NTFS/exFAT",
	0x0b: "W95 FAT32",
	0x0c: "W95 FAT32 (LBA)",
	0x0e: "W95 FAT16 (LBA)",
	0x0f: "W95 Ext'd (LBA)",
	0x11: "Hidden FAT12",
	0x12: "Compaq diagnostics",
	0x14: "Hidden FAT16 <32M",
	0x16: "Hidden FAT16",
	0x17: "Hidden HPFS/NTFS",
	0x1b: "Hidden W95 FAT32",
	0x1c: "Hidden W95 FAT32 (LBA)",
	0x1e: "Hidden W95 FAT16 (LBA)",
	0x27: "Hidden NTFS WinRE",
	0x82: "Linux swap / Solaris",
	0x83: "Linux",
	0x84: "OS/2 hidden or Intel hibernation",
	0x85: "Linux extended",
	0x86: "NTFS volume set",
	0x87: "NTFS volume set",
	0x8e: "Linux LVM",
	0xa5: "FreeBSD",
	0xa6: "OpenBSD",
	0xa9: "NetBSD",
	0xaf: "HFS / HFS+",
	0xde: "Dell Utility",
	0xea: "Linux extended boot",
	0xee: "GPT",
	0xef: "EFI (FAT-12/16/32)",
	0xfd: "Linux raid autodetect",
}

// GPTTypeName returns the human name of a GPT type GUID, "Unknown" when
// this package does not know it.
func GPTTypeName(guid string) string {
	if n, ok := gptTypeNames[strings.ToUpper(guid)]; ok {
		return n
	}
	return "Unknown"
}

// MBRTypeName returns the human name of an MBR type byte, "Unknown" when
// this package does not know it.
func MBRTypeName(t byte) string {
	if n, ok := mbrTypeNames[t]; ok {
		return n
	}
	return "Unknown"
}

// mbrTypeString formats an MBR type byte the way Partition.Type holds it.
func mbrTypeString(t byte) string { return fmt.Sprintf("0x%02x", t) }

// isExtendedType reports whether an MBR type marks an extended container.
func isExtendedType(t byte) bool { return t == 0x05 || t == 0x0f || t == 0x85 }

// decodeGUID formats the 16 on-disk bytes of a GUID (first three fields
// little-endian, as the UEFI specification stores them) in canonical
// uppercase form.
func decodeGUID(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%04X-%012X",
		binary.LittleEndian.Uint32(b[0:4]),
		binary.LittleEndian.Uint16(b[4:6]),
		binary.LittleEndian.Uint16(b[6:8]),
		b[8:10], b[10:16])
}

// encodeGUID is the inverse of decodeGUID. It accepts either case.
func encodeGUID(dst []byte, s string) error {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return fmt.Errorf("parse GUID %q: not in 8-4-4-4-12 form", s)
	}
	raw, err := hex.DecodeString(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36])
	if err != nil {
		return fmt.Errorf("parse GUID %q: %w", s, err)
	}
	binary.LittleEndian.PutUint32(dst[0:4], binary.BigEndian.Uint32(raw[0:4]))
	binary.LittleEndian.PutUint16(dst[4:6], binary.BigEndian.Uint16(raw[4:6]))
	binary.LittleEndian.PutUint16(dst[6:8], binary.BigEndian.Uint16(raw[6:8]))
	copy(dst[8:16], raw[8:16])
	return nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
