// Package iso builds the bootable Lifeboat image, out/lifeboat.iso, from the
// netboot pair (vmlinuz and initramfs.img) that package initramfs makes.
//
// The image is hybrid: it boots as a CD (El Torito) and, written to a USB
// stick with dd, as a disk, under BIOS and under UEFI, and under UEFI with
// Secure Boot enforced. Secure Boot works because every stage is signed by
// a key the firmware already trusts: Microsoft signs Debian's shim
// (shim-signed), shim trusts Debian's key, which signs the monolithic GRUB
// (grub-efi-amd64-signed) and the Debian kernel.
//
// The layout inside the ISO 9660 file system:
//
//	/.disk/lifeboat-<id>              stamp GRUB searches for to find this medium
//	/boot/vmlinuz, /boot/initramfs.img
//	/boot/grub/grub.cfg               the menu, for both firmwares
//	/boot/grub/i386-pc/eltorito.img   BIOS GRUB (cdboot.img + core.img)
//	/boot/grub/efi.img                EFI system partition image (FAT)
//
// and in the EFI system partition image:
//
//	/EFI/BOOT/BOOTX64.EFI   shimx64.efi.signed
//	/EFI/BOOT/grubx64.efi   gcdx64.efi.signed (shim loads grubx64.efi next to itself)
//	/EFI/BOOT/mmx64.efi     mokManager, which shim starts when a signature fails
//	/EFI/BOOT/grub.cfg      finds the ISO by its stamp and loads its grub.cfg
//
// Tools: xorriso assembles the image; go-diskfs was considered (the design
// names it for FAT and ISO) and rejected here for two reasons. Its ISO
// writer makes El Torito catalogs but neither the hybrid MBR that lets BIOS
// boot the image as a disk nor the GRUB boot-info patching, which xorriso
// does. Its FAT writer makes only FAT32, and a small ESP (a few MiB) has
// too few clusters for FAT32: UEFI firmware decides the FAT type from the
// cluster count as the specification says, so it would read such a volume
// as FAT16 and fail. mkfs.fat picks the right type and mtools fills it
// without mounting (the kernel of a build machine may not mount vfat).
// GRUB rather than syslinux boots BIOS machines, so one grub.cfg serves
// both firmwares and one boot loader package family is needed.
package iso

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DefaultAppend is the kernel command line of the ISO's and the netboot
// configs' default entry: the VGA console and the first serial port, the
// serial port last so that it is /dev/console (what a headless machine or
// QEMU -nographic shows).
const DefaultAppend = "console=tty0 console=ttyS0,115200"

// Host files the build copies, and the Debian package that has each file
// or tool.
var (
	shimPath      = "/usr/lib/shim/shimx64.efi.signed"
	mokManager    = "/usr/lib/shim/mmx64.efi.signed"
	grubEFIPath   = "/usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed"
	grubPCDir     = "/usr/lib/grub/i386-pc"
	hostPackageOf = map[string]string{
		"/usr/lib/shim/shimx64.efi.signed":                  "shim-signed",
		"/usr/lib/shim/mmx64.efi.signed":                    "shim-signed",
		"/usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed": "grub-efi-amd64-signed",
		"/usr/lib/grub/i386-pc":                             "grub-pc-bin",
		"xorriso":                                           "xorriso",
		"grub-mkimage":                                      "grub-common",
		"mkfs.fat":                                          "dosfstools",
		"mcopy":                                             "mtools",
		"mmd":                                               "mtools",
	}
)

// biosModules are built into the BIOS core image, so the ISO needs no
// module directory; grub-mkimage adds their dependencies.
var biosModules = []string{
	"biosdisk", "iso9660", "part_msdos", "part_gpt", "fat", "normal", "search",
	"search_fs_file", "configfile", "linux", "echo", "test", "serial", "terminal",
	"reboot", "halt", "ls", "cat",
}

// Config says what goes into the image.
type Config struct {
	// Kernel and Initramfs are the netboot pair to boot.
	Kernel, Initramfs string
	// Out is the ISO file to write.
	Out string
	// Version names the build in the menu and the volume.
	Version string
	// Append replaces DefaultAppend when not empty; the lifeboat.*
	// parameters of docs/BOOT.md may go here for an unattended medium.
	Append string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Report is what went into the image.
type Report struct {
	ISO                       string
	Size                      int64
	Kernel, Initramfs         string
	Shim, GrubEFI             string
	ESPSize                   int64
	Stamp                     string
	Append                    string
	Xorriso, GrubMkimage      string
	KernelSize, InitramfsSize int64
}

// WriteText prints the report for people.
func (r *Report) WriteText(w io.Writer) {
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	fmt.Fprintf(w, "iso        %s -> %s (hybrid: CD and USB disk; BIOS via GRUB, UEFI and Secure Boot via shim and signed GRUB)\n", mib(r.Size), r.ISO)
	fmt.Fprintf(w, "iso boot   %s (%s) + %s (%s), append %q\n", r.Kernel, mib(r.KernelSize), r.Initramfs, mib(r.InitramfsSize), r.Append)
	fmt.Fprintf(w, "iso esp    %s FAT image: %s as BOOTX64.EFI, %s as grubx64.efi\n", mib(r.ESPSize), r.Shim, r.GrubEFI)
}

// Build writes cfg.Out. It needs xorriso, grub-mkimage (grub-common),
// grub-pc-bin, grub-efi-amd64-signed, shim-signed, mkfs.fat (dosfstools)
// and mtools; a missing one is named with its package in the error.
func Build(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Out == "" || cfg.Kernel == "" || cfg.Initramfs == "" {
		return nil, errors.New("build iso: Out, Kernel and Initramfs are required")
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.Append == "" {
		cfg.Append = DefaultAppend
	}
	if err := checkAppend(cfg.Append); err != nil {
		return nil, err
	}
	rep := &Report{ISO: cfg.Out, Kernel: cfg.Kernel, Initramfs: cfg.Initramfs, Shim: shimPath, GrubEFI: grubEFIPath, Append: cfg.Append}
	var err error
	if rep.Xorriso, err = lookTool("xorriso"); err != nil {
		return nil, err
	}
	if rep.GrubMkimage, err = lookTool("grub-mkimage"); err != nil {
		return nil, err
	}
	mkfsFat, err := lookTool("mkfs.fat")
	if err != nil {
		return nil, err
	}
	mcopy, err := lookTool("mcopy")
	if err != nil {
		return nil, err
	}
	mmd, err := lookTool("mmd")
	if err != nil {
		return nil, err
	}
	for _, p := range []string{shimPath, mokManager, grubEFIPath, filepath.Join(grubPCDir, "boot_hybrid.img"), filepath.Join(grubPCDir, "cdboot.img")} {
		if err := needFile(p); err != nil {
			return nil, err
		}
	}
	if rep.KernelSize, err = fileSize(cfg.Kernel); err != nil {
		return nil, fmt.Errorf("build iso: kernel: %w", err)
	}
	if rep.InitramfsSize, err = fileSize(cfg.Initramfs); err != nil {
		return nil, fmt.Errorf("build iso: initramfs: %w", err)
	}
	if rep.Stamp, err = stamp(cfg); err != nil {
		return nil, err
	}

	if err := os.MkdirAll(filepath.Dir(cfg.Out), 0o755); err != nil {
		return nil, fmt.Errorf("build iso: create %s: %w", filepath.Dir(cfg.Out), err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(cfg.Out), ".iso-")
	if err != nil {
		return nil, fmt.Errorf("build iso: temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	for _, d := range []string{".disk", "boot/grub/i386-pc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, fmt.Errorf("build iso: stage %s: %w", d, err)
		}
	}
	files := map[string]string{
		".disk/lifeboat-" + rep.Stamp: fmt.Sprintf("Lifeboat %s\n", cfg.Version),
		"boot/grub/grub.cfg":          menuConfig(cfg.Version, rep.Stamp, cfg.Append),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o644); err != nil {
			return nil, fmt.Errorf("build iso: write %s: %w", name, err)
		}
	}

	fmt.Fprintf(cfg.Log, "iso: BIOS GRUB core image\n")
	early := filepath.Join(tmp, "early.cfg")
	if err := os.WriteFile(early, []byte(earlyConfig(rep.Stamp)), 0o644); err != nil {
		return nil, fmt.Errorf("build iso: write early.cfg: %w", err)
	}
	eltorito := filepath.Join(root, "boot/grub/i386-pc/eltorito.img")
	args := append([]string{"-O", "i386-pc-eltorito", "-d", grubPCDir, "-p", "/boot/grub", "-c", early, "-o", eltorito}, biosModules...)
	if err := runTool(ctx, rep.GrubMkimage, args...); err != nil {
		return nil, fmt.Errorf("build iso: BIOS core image: %w", err)
	}

	fmt.Fprintf(cfg.Log, "iso: EFI system partition image\n")
	esp := filepath.Join(root, "boot/grub/efi.img")
	espCfg := filepath.Join(tmp, "esp-grub.cfg")
	if err := os.WriteFile(espCfg, []byte(espConfig(rep.Stamp)), 0o644); err != nil {
		return nil, fmt.Errorf("build iso: write ESP grub.cfg: %w", err)
	}
	if rep.ESPSize, err = buildESP(ctx, esp, mkfsFat, mmd, mcopy, espCfg); err != nil {
		return nil, err
	}

	fmt.Fprintf(cfg.Log, "iso: assembling %s with xorriso\n", cfg.Out)
	part := cfg.Out + ".part"
	os.Remove(part)
	args = []string{"-as", "mkisofs", "-o", part, "-r", "-V", "LIFEBOAT", "-graft-points",
		// BIOS, as a CD: El Torito no-emulation boot of GRUB's cdboot.img +
		// core.img; as a disk: boot_hybrid.img in the MBR, patched by
		// --grub2-boot-info with the core image's address.
		"-b", "boot/grub/i386-pc/eltorito.img", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
		"--grub2-boot-info", "--grub2-mbr", filepath.Join(grubPCDir, "boot_hybrid.img"),
		// UEFI, as a CD: a second El Torito entry for the ESP image; as a
		// disk: the same image exposed as an MBR partition of type 0xEF.
		"-eltorito-alt-boot", "-e", "boot/grub/efi.img", "-no-emul-boot",
		"-efi-boot-part", "--efi-boot-image", "--protective-msdos-label",
		"-c", "boot/boot.cat",
		root,
		"boot/vmlinuz=" + cfg.Kernel,
		"boot/initramfs.img=" + cfg.Initramfs,
	}
	if err := runTool(ctx, rep.Xorriso, args...); err != nil {
		os.Remove(part)
		return nil, fmt.Errorf("build iso: xorriso: %w", err)
	}
	if err := os.Rename(part, cfg.Out); err != nil {
		return nil, fmt.Errorf("build iso: rename to %s: %w", cfg.Out, err)
	}
	if rep.Size, err = fileSize(cfg.Out); err != nil {
		return nil, fmt.Errorf("build iso: %w", err)
	}
	return rep, nil
}

// checkAppend refuses what would break the generated GRUB and iPXE
// configs: they hold the line unquoted on one line.
func checkAppend(s string) error {
	if strings.ContainsAny(s, "\n\r\"'\\;$`{}") {
		return fmt.Errorf("build iso: kernel command line %q holds a character the boot configs cannot carry (newline, quote, backslash, ;, $, `, braces)", s)
	}
	return nil
}

// stamp names this build's marker file: GRUB finds the ISO by it, so a
// second Lifeboat or Debian medium in the machine is never taken for this
// one. It is derived from the inputs, so the same inputs give the same ISO
// contents.
func stamp(cfg Config) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", cfg.Version, cfg.Append)
	for _, p := range []string{cfg.Kernel, cfg.Initramfs} {
		f, err := os.Open(p)
		if err != nil {
			return "", fmt.Errorf("build iso: stamp: %w", err)
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("build iso: stamp: read %s: %w", p, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:8]), nil
}

// buildESP makes the FAT image of the EFI system partition and returns
// its size.
func buildESP(ctx context.Context, path, mkfsFat, mmd, mcopy, grubCfg string) (int64, error) {
	var total int64
	for _, p := range []string{shimPath, mokManager, grubEFIPath} {
		n, err := fileSize(p)
		if err != nil {
			return 0, fmt.Errorf("build ESP: %w", err)
		}
		total += n
	}
	// Room for FAT metadata and cluster rounding, whole MiB: a few
	// spare MiB cost little next to the kernel and initramfs.
	kib := (total>>10 + 2048 + 1023) &^ 1023
	os.Remove(path)
	if err := runTool(ctx, mkfsFat, "-C", "-n", "LIFEBOAT", path, fmt.Sprint(kib)); err != nil {
		return 0, fmt.Errorf("build ESP: mkfs.fat: %w", err)
	}
	img := "-i" + path
	steps := [][]string{
		{mmd, img, "::/EFI", "::/EFI/BOOT"},
		{mcopy, img, shimPath, "::/EFI/BOOT/BOOTX64.EFI"},
		{mcopy, img, grubEFIPath, "::/EFI/BOOT/grubx64.efi"},
		{mcopy, img, mokManager, "::/EFI/BOOT/mmx64.efi"},
		{mcopy, img, grubCfg, "::/EFI/BOOT/grub.cfg"},
	}
	for _, s := range steps {
		if err := runTool(ctx, s[0], s[1:]...); err != nil {
			return 0, fmt.Errorf("build ESP: %w", err)
		}
	}
	return int64(kib) << 10, nil
}

// earlyConfig is built into the BIOS core image: find this medium (a CD,
// or the whole disk when written to a stick) and let GRUB's normal mode
// read its grub.cfg.
func earlyConfig(stamp string) string {
	return fmt.Sprintf("search --no-floppy --file --set=root /.disk/lifeboat-%s\nset prefix=($root)/boot/grub\n", stamp)
}

// espConfig is read by Debian's signed GRUB, whose built-in config tries
// /.disk/info and $prefix first (Debian's own media) and then
// $cmdpath/grub.cfg, this file next to grubx64.efi.
func espConfig(stamp string) string {
	return fmt.Sprintf("search --no-floppy --file --set=root /.disk/lifeboat-%s\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n", stamp)
}

// menuConfig is the ISO's /boot/grub/grub.cfg for both firmwares. It
// searches for the stamp again because Debian's signed GRUB may have come
// here through another route ($prefix on the boot device).
func menuConfig(version, stamp, appendLine string) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "search --no-floppy --file --set=root /.disk/lifeboat-%s\n", stamp)
	b.WriteString(`if serial --unit=0 --speed=115200; then
  terminal_input --append serial
  terminal_output --append serial
fi
set default=0
set timeout=3
`)
	fmt.Fprintf(&b, "menuentry 'Lifeboat %s' {\n  echo 'Loading Lifeboat...'\n  linux /boot/vmlinuz %s\n  initrd /boot/initramfs.img\n}\n", version, appendLine)
	fmt.Fprintf(&b, "menuentry 'Lifeboat %s, kernel messages on screen only (no serial console)' {\n  linux /boot/vmlinuz console=tty0\n  initrd /boot/initramfs.img\n}\n", version)
	b.WriteString("if [ \"$grub_platform\" = efi ]; then\n  menuentry 'UEFI firmware settings' {\n    fwsetup\n  }\nfi\n")
	b.WriteString("menuentry 'Reboot' {\n  reboot\n}\nmenuentry 'Power off' {\n  halt\n}\n")
	return b.String()
}

func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if pkg := hostPackageOf[name]; pkg != "" {
		return "", fmt.Errorf("build iso: find tool %s: not installed (apt-get install %s)", name, pkg)
	}
	return "", fmt.Errorf("build iso: find tool %s: not found", name)
}

func needFile(p string) error {
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	pkg := hostPackageOf[p]
	if pkg == "" {
		pkg = hostPackageOf[filepath.Dir(p)]
	}
	if pkg != "" {
		return fmt.Errorf("build iso: %s is missing (apt-get install %s)", p, pkg)
	}
	return fmt.Errorf("build iso: %s is missing", p)
}

func fileSize(p string) (int64, error) {
	st, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// runTool runs a host tool, returning its output in the error when it
// fails (xorriso and grub-mkimage explain themselves there).
func runTool(ctx context.Context, bin string, args ...string) error {
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 2000 {
			msg = msg[len(msg)-2000:]
		}
		return fmt.Errorf("%s: %w: %s", filepath.Base(bin), err, msg)
	}
	return nil
}
