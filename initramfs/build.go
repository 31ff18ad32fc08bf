// Package initramfs builds the Lifeboat appliance's netboot pair: the kernel
// and a zstd-compressed newc initramfs holding u-root's init and core
// commands (built with github.com/u-root/mkuimage), the static lifeboat
// binary that init starts, the kernel modules for storage, file systems and
// network with their dependencies, and the external tools the engine runs
// with their shared libraries. It is build-time code: the appliance binary
// never links it.
package initramfs

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// DefaultModules are the drivers the appliance carries: storage
// controllers and disks, the file systems the engine reads, grows or
// mounts, loop, nbd and device-mapper snapshots, network cards, the EFI
// variable file system and a hardware RNG. Their dependencies and soft
// dependencies come along, and the firmware they name that the build host
// has.
var DefaultModules = []string{
	// storage
	"virtio_blk", "virtio_pci", "virtio_scsi", "nvme", "ahci", "vmd", "sd_mod", "sr_mod",
	"usb_storage", "uas", "xhci_pci", "ehci_pci", "mmc_block", "sdhci_pci", "sdhci_acpi",
	// file systems
	"ext4", "vfat", "exfat", "xfs", "btrfs", "fuse", "isofs", "nls_cp437", "nls_iso8859_1", "nls_utf8",
	// block helpers: loop and nbd for images and network disks;
	// dm-snapshot (with dm-mod) for copy-on-write views of a disk, not
	// loaded at boot (the copy-on-write overlay goes through FUSE)
	"loop", "nbd", "dm_snapshot",
	// network
	"virtio_net", "e1000", "e1000e", "igb", "r8169",
	// common USB network adapters
	"r8152", "asix", "ax88179_178a", "cdc_ether",
	// network file systems for repositories on shares
	"cifs", "nfs", "nfsv3", "nfsv4",
	// firmware and entropy
	"efivarfs", "virtio_rng",
	// keyboards for the console
	"usbhid", "hid_generic",
}

// BootModules are loaded at every boot whatever the hardware: nothing
// asks for them by device, and the appliance has no modprobe for the
// kernel to call when a mount or a loop device needs one.
var BootModules = []string{
	"ext4", "vfat", "exfat", "xfs", "btrfs", "fuse", "isofs", "nls_cp437", "nls_iso8859_1", "nls_utf8",
	"loop", "efivarfs",
}

// DefaultTools are the programs engine/ runs (grep exec.Command under
// engine/) and ntfs-3g, which the appliance needs to read NTFS because
// Debian's kernel has no NTFS driver.
var DefaultTools = []string{"e2fsck", "resize2fs", "tune2fs", "ntfsresize", "ntfsls", "ntfs-3g", "mdir", "mcopy", "efibootmgr"}

// DefaultCommands are u-root's commands built into one busybox binary:
// init, a shell and the core tools an expert needs to look around.
var DefaultCommands = []string{
	"init", "gosh", "ls", "cat", "cp", "mv", "rm", "mkdir", "ln", "mount", "umount",
	"dmesg", "ps", "kill", "poweroff", "shutdown", "sync", "df", "free", "grep", "more",
	"lsmod", "insmod", "rmmod", "ip", "dhclient", "dd", "hexdump", "echo", "pwd", "uname",
	"tail", "head", "wc", "chmod", "losetup", "sleep", "find", "tee", "blkid",
}

// Config says what to build and where.
type Config struct {
	// Kernel is the bzImage to boot; empty picks the newest
	// /boot/vmlinuz-* of the build host.
	Kernel string
	// ModulesRoot holds lib/modules/<version>; empty is "/".
	ModulesRoot string
	// OutDir receives vmlinuz, initramfs.img and report.txt.
	OutDir string
	// SourceDir is the root of the lifeboat module (where go.mod is);
	// empty asks `go env GOMOD`.
	SourceDir string
	// Version is stamped into the lifeboat binary (main.version).
	Version string
	// FirmwareDirs are searched, in order, for the firmware files the
	// carried modules name; nil is the kernel's own search path under
	// ModulesRoot (DefaultFirmwareDirs).
	FirmwareDirs []string
	// Modules, Tools and Commands default to DefaultModules,
	// DefaultTools and DefaultCommands.
	Modules, Tools, Commands []string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Report is what went into the netboot pair.
type Report struct {
	Kernel, KernelVersion string
	KernelSize            int64
	// Modules are the module files carried, relative to the modules
	// directory; Missing are requested modules the kernel does not have
	// as modules (built in, or absent).
	Modules, Missing []string
	ModulesBytes     int64
	// Firmware are the firmware files carried, relative to
	// lib/firmware, FirmwareBytes their size; FirmwareMissing maps each
	// carried module to the firmware files it names that the host lacks
	// (Debian's firmware-* packages have most).
	Firmware        []string
	FirmwareBytes   int64
	FirmwareMissing map[string][]string
	// Tools and Libraries are host paths of the programs and the shared
	// libraries (with the dynamic loader) they need.
	Tools, Libraries []string
	// Commands are the u-root commands in the busybox.
	Commands     []string
	LifeboatSize int64
	// ArchiveSize is the uncompressed cpio, ImageSize the compressed
	// initramfs.img.
	ArchiveSize, ImageSize int64
	// KernelOut and InitramfsOut are the written files.
	KernelOut, InitramfsOut string
}

// MaxImageSize is the goal for the compressed initramfs: it has to fit a
// netboot over slow TFTP and small machines' memory.
const MaxImageSize = 40 << 20

// Build writes OutDir/vmlinuz and OutDir/initramfs.img and returns what
// went in. It needs the Go toolchain (it compiles lifeboat and u-root's
// commands) and the host's modules and tools.
func Build(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.OutDir == "" {
		return nil, fmt.Errorf("build initramfs: no output directory")
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.ModulesRoot == "" {
		cfg.ModulesRoot = "/"
	}
	if cfg.Modules == nil {
		cfg.Modules = DefaultModules
	}
	if cfg.Tools == nil {
		cfg.Tools = DefaultTools
	}
	if cfg.Commands == nil {
		cfg.Commands = DefaultCommands
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	var err error
	if cfg.SourceDir == "" {
		if cfg.SourceDir, err = moduleRoot(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.Kernel == "" {
		if cfg.Kernel, err = DefaultKernel("/boot"); err != nil {
			return nil, err
		}
	}
	rep := &Report{Kernel: cfg.Kernel, Commands: cfg.Commands}
	if rep.KernelVersion, rep.KernelSize, err = kernelInfo(cfg.Kernel); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("build initramfs: create %s: %w", cfg.OutDir, err)
	}
	tmp, err := os.MkdirTemp(cfg.OutDir, ".build-")
	if err != nil {
		return nil, fmt.Errorf("build initramfs: temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	stage := filepath.Join(tmp, "stage")

	fmt.Fprintf(cfg.Log, "kernel %s (%s)\n", cfg.Kernel, rep.KernelVersion)
	if err := stageModules(cfg, rep, stage); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Log, "modules: %d files, %d bytes\n", len(rep.Modules), rep.ModulesBytes)
	fmt.Fprintf(cfg.Log, "firmware: %d files, %d bytes; %d named files not on the host\n", len(rep.Firmware), rep.FirmwareBytes, rep.missingFirmware())
	if err := stageTools(cfg, rep, stage); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Log, "tools: %s with %d libraries\n", strings.Join(rep.Tools, " "), len(rep.Libraries))
	lifeboat := filepath.Join(stage, "bin", "lifeboat")
	if err := buildLifeboat(ctx, cfg, lifeboat); err != nil {
		return nil, err
	}
	if st, err := os.Stat(lifeboat); err == nil {
		rep.LifeboatSize = st.Size()
	}
	fmt.Fprintf(cfg.Log, "lifeboat: %d bytes\n", rep.LifeboatSize)

	cpioPath := filepath.Join(tmp, "initramfs.cpio")
	if err := buildArchive(ctx, cfg, stage, tmp, cpioPath); err != nil {
		return nil, err
	}
	rep.KernelOut = filepath.Join(cfg.OutDir, "vmlinuz")
	rep.InitramfsOut = filepath.Join(cfg.OutDir, "initramfs.img")
	if rep.ArchiveSize, rep.ImageSize, err = compressFile(cpioPath, rep.InitramfsOut); err != nil {
		return nil, err
	}
	if err := copyFile(cfg.Kernel, rep.KernelOut, 0o644); err != nil {
		return nil, fmt.Errorf("build initramfs: copy kernel: %w", err)
	}
	if err := writeReport(rep, filepath.Join(cfg.OutDir, "report.txt")); err != nil {
		return nil, err
	}
	if rep.ImageSize > MaxImageSize {
		return rep, fmt.Errorf("build initramfs: %s is %d bytes, over the %d-byte goal", rep.InitramfsOut, rep.ImageSize, MaxImageSize)
	}
	return rep, nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find the lifeboat source: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("find the lifeboat source: not inside a Go module (run from the repository)")
	}
	return filepath.Dir(gomod), nil
}

func kernelInfo(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("open kernel: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, fmt.Errorf("stat kernel %s: %w", path, err)
	}
	v, err := KernelVersion(f, st.Size())
	if err != nil {
		return "", 0, fmt.Errorf("kernel %s: %w", path, err)
	}
	return v, st.Size(), nil
}

// buildLifeboat compiles cmd/lifeboat static: the initramfs has no C
// library for it, and a static binary starts before anything is mounted.
func buildLifeboat(ctx context.Context, cfg Config, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-s -w -X main.version="+cfg.Version, "-o", out, "./cmd/lifeboat")
	cmd.Dir = cfg.SourceDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build lifeboat: go build: %w: %s", err, strings.TrimSpace(string(b)))
	}
	return nil
}

// stageTools copies each tool and the libraries it needs to their host
// paths under stage, so the programs find their loader and libraries
// where they were built to look.
func stageTools(cfg Config, rep *Report, stage string) error {
	var progs []string
	// links are multi-call names (mdir and mcopy are mtools): the link's
	// path and the program it names beside it.
	var links [][2]string
	for _, t := range cfg.Tools {
		p, err := lookTool(t)
		if err != nil {
			return err
		}
		if filepath.Base(p) != t {
			links = append(links, [2]string{filepath.Join(filepath.Dir(p), t), filepath.Base(p)})
		}
		if !slices.Contains(progs, p) {
			progs = append(progs, p)
		}
	}
	libs, err := SharedLibs(progs)
	if err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	for _, p := range progs {
		if err := copyFile(p, filepath.Join(stage, p), 0o755); err != nil {
			return fmt.Errorf("build initramfs: copy tool: %w", err)
		}
	}
	for _, l := range libs {
		if err := copyFile(l, filepath.Join(stage, l), 0o755); err != nil {
			return fmt.Errorf("build initramfs: copy library: %w", err)
		}
	}
	for _, l := range links {
		if err := os.Symlink(l[1], filepath.Join(stage, l[0])); err != nil {
			return fmt.Errorf("build initramfs: link %s: %w", l[0], err)
		}
	}
	rep.Tools, rep.Libraries = progs, libs
	return nil
}

// toolDirs are searched in order; the initramfs PATH holds all of them.
var toolDirs = []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// toolPackage names the Debian package of each default tool, for the error
// when the build host lacks it.
var toolPackage = map[string]string{
	"e2fsck": "e2fsprogs", "resize2fs": "e2fsprogs", "tune2fs": "e2fsprogs", "ntfsresize": "ntfs-3g", "ntfsls": "ntfs-3g",
	"ntfs-3g": "ntfs-3g", "mdir": "mtools", "mcopy": "mtools", "efibootmgr": "efibootmgr",
}

func lookTool(name string) (string, error) {
	for _, d := range toolDirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			// Keep the tool at its own directory, not a usr-merge
			// symlink's, so two names never hold one file.
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				return "", fmt.Errorf("find tool %s: %w", name, err)
			}
			return filepath.Join(d, filepath.Base(real)), nil
		}
	}
	if pkg := toolPackage[name]; pkg != "" {
		return "", fmt.Errorf("find tool %s: not installed (apt-get install %s)", name, pkg)
	}
	return "", fmt.Errorf("find tool %s: not found in %s", name, strings.Join(toolDirs, " "))
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dst), err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return nil
}

func writeReport(rep *Report, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	rep.WriteText(f)
	if err := f.Close(); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return nil
}

// WriteText prints the report for people: what went in and the sizes.
func (r *Report) WriteText(w io.Writer) {
	mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
	fmt.Fprintf(w, "kernel     %s (%s), %s -> %s\n", r.Kernel, r.KernelVersion, mib(r.KernelSize), r.KernelOut)
	fmt.Fprintf(w, "initramfs  %s compressed (zstd), %s cpio -> %s (goal %s)\n", mib(r.ImageSize), mib(r.ArchiveSize), r.InitramfsOut, mib(MaxImageSize))
	fmt.Fprintf(w, "lifeboat   %s, static\n", mib(r.LifeboatSize))
	fmt.Fprintf(w, "u-root     %d commands: %s\n", len(r.Commands), strings.Join(r.Commands, " "))
	fmt.Fprintf(w, "tools      %s\n", strings.Join(r.Tools, " "))
	fmt.Fprintf(w, "libraries  %s\n", strings.Join(r.Libraries, " "))
	mods := make([]string, 0, len(r.Modules))
	for _, m := range r.Modules {
		mods = append(mods, filepath.Base(m))
	}
	sort.Strings(mods)
	fmt.Fprintf(w, "modules    %d, %s: %s\n", len(r.Modules), mib(r.ModulesBytes), strings.Join(mods, " "))
	if len(r.Missing) > 0 {
		fmt.Fprintf(w, "built in or absent: %s\n", strings.Join(r.Missing, " "))
	}
	fmt.Fprintf(w, "firmware   %d files, %s\n", len(r.Firmware), mib(r.FirmwareBytes))
	if n := r.missingFirmware(); n > 0 {
		// A count per module: the names run to hundreds for some
		// drivers, and the module tells which firmware package to add.
		mods := make([]string, 0, len(r.FirmwareMissing))
		for m := range r.FirmwareMissing {
			mods = append(mods, m)
		}
		sort.Strings(mods)
		var per []string
		for _, m := range mods {
			names := r.FirmwareMissing[m]
			if len(names) <= 3 {
				per = append(per, fmt.Sprintf("%s (%s)", m, strings.Join(names, " ")))
			} else {
				per = append(per, fmt.Sprintf("%s (%d)", m, len(names)))
			}
		}
		fmt.Fprintf(w, "firmware the host lacks: %d files, named by %s\n", n, strings.Join(per, ", "))
	}
}

// missingFirmware counts the firmware files named by carried modules that
// were not found, each once.
func (r *Report) missingFirmware() int {
	seen := map[string]bool{}
	for _, names := range r.FirmwareMissing {
		for _, n := range names {
			seen[n] = true
		}
	}
	return len(seen)
}
