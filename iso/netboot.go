package iso

import (
	"fmt"
	"os"
	"path/filepath"
)

// NetbootFiles are the names WriteNetboot writes next to vmlinuz and
// initramfs.img.
const (
	IPXEScript = "lifeboat.ipxe"
	GrubNetCfg = "grub.cfg"
)

// WriteNetboot writes the iPXE script and the GRUB netboot config into dir,
// the directory holding vmlinuz and initramfs.img, and returns their paths.
// Both name the pair relative to themselves, so dir can be served as it is
// by TFTP or HTTP under any path. appendLine empty means DefaultAppend.
//
// Debian's signed network GRUB (grubnetx64.efi.signed) looks for its
// config at the fixed prefix /grub of the TFTP server it was loaded from:
// (tftp,SERVER)/grub/x86_64-efi/grub.cfg, else (tftp,SERVER)/grub/grub.cfg.
// So dir is served as the TFTP root's grub/ directory, beside the GRUB
// image (or shimx64.efi.signed with that GRUB renamed grubx64.efi, for
// Secure Boot).
func WriteNetboot(dir, appendLine string) (ipxe, grubCfg string, err error) {
	if appendLine == "" {
		appendLine = DefaultAppend
	}
	if err := checkAppend(appendLine); err != nil {
		return "", "", err
	}
	// iPXE resolves relative names against the script's own URI. The
	// initrd= argument names the image for the kernel's EFI stub, which
	// loads it itself when iPXE boots the kernel under UEFI.
	script := fmt.Sprintf("#!ipxe\necho Lifeboat: loading the kernel and the initramfs\nkernel vmlinuz initrd=initramfs.img %s\ninitrd initramfs.img\nboot\n", appendLine)
	// GRUB sets $config_directory only while it reads a config file: an
	// entry runs after the reading is over, when it names the caller's
	// directory (Debian's grubnetx64.efi reads this file with `source`
	// from its built-in config in (memdisk)). The top level keeps it.
	cfg := fmt.Sprintf(`set lifeboat_dir="$config_directory"
set default=0
set timeout=3
menuentry 'Lifeboat (netboot)' {
  echo "Loading Lifeboat from $lifeboat_dir..."
  linux $lifeboat_dir/vmlinuz %s
  initrd $lifeboat_dir/initramfs.img
}
`, appendLine)
	ipxe = filepath.Join(dir, IPXEScript)
	grubCfg = filepath.Join(dir, GrubNetCfg)
	for p, text := range map[string]string{ipxe: script, grubCfg: cfg} {
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			return "", "", fmt.Errorf("write netboot config %s: %w", p, err)
		}
	}
	return ipxe, grubCfg, nil
}
