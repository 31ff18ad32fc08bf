package bootfix

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// EntryArgs returns the efibootmgr arguments that add a firmware boot
// entry named label starting loader (a path on the ESP, slashes or
// backslashes) from partition part of disk (a block device).
func EntryArgs(disk string, part int, label, loader string) []string {
	return []string{"--create", "--disk", disk, "--part", strconv.Itoa(part), "--label", label,
		"--loader", strings.ReplaceAll(loader, "/", `\`)}
}

// AddEntry adds a firmware boot entry for the copy through efibootmgr. It
// refuses on a machine not booted through UEFI (sysRoot/firmware/efi
// missing): the entry would go into no firmware, or the wrong one.
func AddEntry(ctx context.Context, sysRoot, disk string, part int, label, loader string) error {
	if sysRoot == "" {
		sysRoot = "/sys"
	}
	if _, err := os.Stat(filepath.Join(sysRoot, "firmware/efi")); err != nil {
		return fmt.Errorf("add an EFI boot entry: this machine did not boot through UEFI (%s/firmware/efi is missing), so it has no boot entries to add to", sysRoot)
	}
	out, err := exec.CommandContext(ctx, "efibootmgr", EntryArgs(disk, part, label, loader)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("add an EFI boot entry with efibootmgr: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}
