package bootfix

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// FallbackPath is where UEFI firmware looks for a loader on a disk that
// has no boot entry of its own (the removable-media path for x86-64).
const FallbackPath = "/EFI/BOOT/BOOTX64.EFI"

// loaders are what Fallback copies, best first: a distribution's shim
// (which loads grubx64.efi beside it, so that is copied too), GRUB,
// Windows Boot Manager, systemd-boot.
var loaders = []struct {
	name    string
	besides []string
}{
	{"shimx64.efi", []string{"grubx64.efi", "mmx64.efi"}},
	{"grubx64.efi", nil},
	{"bootmgfw.efi", nil},
	{"systemd-bootx64.efi", nil},
}

// Fallback makes sure the FAT file system in the file img (an EFI system
// partition) has \EFI\BOOT\BOOTX64.EFI, copying it from a boot loader
// installed on the same partition when it is missing. It returns what it
// did in words, "" when the fallback loader was there already.
func Fallback(ctx context.Context, img string) (string, error) {
	if _, err := mtools(ctx, "mdir", "-b", "-i", img, "::"+FallbackPath); err == nil {
		return "", nil
	}
	if _, err := mtools(ctx, "mdir", "-b", "-i", img, "::/"); err != nil {
		return "", fmt.Errorf("read the EFI system partition: %w", err)
	}
	out, err := mtools(ctx, "mdir", "-/", "-b", "-i", img, "::/EFI")
	if err != nil {
		return "", fmt.Errorf("the EFI system partition has no \\EFI directory, so no boot loader to copy as %s", strings.ReplaceAll(FallbackPath, "/", `\`))
	}
	files := map[string]string{} // lower-case path -> path as stored
	for _, line := range strings.Split(string(out), "\n") {
		p := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "::"))
		if p != "" {
			files[strings.ToLower(p)] = p
		}
	}
	// In name order, so that of two directories holding the same loader
	// the same one is taken every time.
	names := slices.Sorted(maps.Keys(files))
	for _, l := range loaders {
		for _, low := range names {
			p := files[low]
			dir := path.Dir(low)
			if path.Base(low) != l.name || strings.EqualFold(dir, "/efi/boot") {
				continue
			}
			copies := [][2]string{{p, FallbackPath}}
			for _, b := range l.besides {
				if q, ok := files[path.Join(dir, b)]; ok {
					copies = append(copies, [2]string{q, "/EFI/BOOT/" + b})
				}
			}
			if err := copyWithin(ctx, img, copies); err != nil {
				return "", err
			}
			var what []string
			for _, c := range copies {
				what = append(what, strings.ReplaceAll(c[1], "/", `\`)+" from "+strings.ReplaceAll(c[0], "/", `\`))
			}
			return "added the fallback loader " + strings.Join(what, ", "), nil
		}
	}
	return "", fmt.Errorf("the EFI system partition has no \\EFI\\BOOT\\BOOTX64.EFI and no shimx64.efi, grubx64.efi, bootmgfw.efi or systemd-bootx64.efi to copy there")
}

// copyWithin copies files inside a FAT image through a temporary directory
// (mcopy copies between the image and the host only).
func copyWithin(ctx context.Context, img string, copies [][2]string) error {
	tmp, err := os.MkdirTemp("", "lifeboat-esp-")
	if err != nil {
		return fmt.Errorf("temporary directory for the fallback loader: %w", err)
	}
	defer os.RemoveAll(tmp)
	// The directory may exist with another case or not at all.
	mtools(ctx, "mmd", "-i", img, "::/EFI/BOOT")
	for i, c := range copies {
		local := filepath.Join(tmp, fmt.Sprint(i))
		if _, err := mtools(ctx, "mcopy", "-n", "-i", img, "::"+c[0], local); err != nil {
			return fmt.Errorf("read %s from the EFI system partition: %w", c[0], err)
		}
		if _, err := mtools(ctx, "mcopy", "-o", "-i", img, local, "::"+c[1]); err != nil {
			return fmt.Errorf("write %s on the EFI system partition: %w", c[1], err)
		}
	}
	return nil
}

// mtools runs an mtools command without its drive-geometry checks, which
// an image of a partition does not pass.
func mtools(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "MTOOLS_NO_VFAT=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}
