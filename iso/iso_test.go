package iso_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/initramfs"
	"github.com/lifeboat/lifeboat/internal/testenv"
	"github.com/lifeboat/lifeboat/iso"
)

// bootTimeout is generous: under TCG each boot takes 15 to 20 seconds on a
// quiet machine, and CI machines are not quiet.
const bootTimeout = 5 * time.Minute

const (
	ovmfCode   = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars   = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	ovmfCodeMS = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd"
	ovmfVarsMS = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
	// ipxeROM is QEMU's default virtio-net option ROM (ipxe-qemu): iPXE
	// for BIOS and UEFI in one file. Its PCI data structures name the
	// modern virtio-net device, 1af4:1041. QEMU patches the IDs to the
	// device's only in the ROM it picks itself; a ROM named with romfile=
	// is used as it is, and SeaBIOS runs no ROM whose IDs differ from the
	// device's, so a virtio-net-pci that is transitional (1af4:1000, the
	// default on i440fx) boots nothing from it. disable-legacy=on makes the
	// device 1af4:1041.
	ipxeROM = "/usr/lib/ipxe/qemu/efi-virtio.rom"
	// grubNet is Debian's signed network GRUB; its built-in prefix is
	// /grub on the TFTP server it came from.
	grubNet = "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"
	shim    = "/usr/lib/shim/shimx64.efi.signed"
)

var (
	buildOnce sync.Once
	built     *appliance
	buildErr  error
	buildDir  string
)

type appliance struct {
	netboot *initramfs.Report
	iso     *iso.Report
	netDir  string
}

// build makes the netboot pair, its configs and the ISO once per test
// binary.
func build(t *testing.T) *appliance {
	t.Helper()
	testenv.Short(t)
	testenv.RequireTools(t, "go", "xorriso", "grub-mkimage", "mkfs.fat", "mcopy", "mmd")
	if _, err := initramfs.DefaultKernel("/boot"); err != nil {
		testenv.Skip(t, "needs a Debian kernel in /boot (apt-get install linux-image-amd64)")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "lifeboat-iso-")
		if buildErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		a := &appliance{netDir: filepath.Join(buildDir, "netboot")}
		if a.netboot, buildErr = initramfs.Build(ctx, initramfs.Config{OutDir: a.netDir, Version: "test-iso"}); buildErr != nil {
			return
		}
		if _, _, buildErr = iso.WriteNetboot(a.netDir, ""); buildErr != nil {
			return
		}
		a.iso, buildErr = iso.Build(ctx, iso.Config{
			Kernel: a.netboot.KernelOut, Initramfs: a.netboot.InitramfsOut,
			Out: filepath.Join(buildDir, "lifeboat.iso"), Version: "test-iso",
		})
		built = a
	})
	if buildErr != nil {
		t.Fatalf("build appliance: %v", buildErr)
	}
	return built
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// BootResult is what Boot saw on the serial console.
type BootResult struct {
	// Lines are the console lines up to and including the ready line.
	Lines []string
	// Ready is the line holding the awaited text.
	Ready string
	// Elapsed is the time from starting QEMU to the ready line.
	Elapsed time.Duration
}

// Boot starts qemu-system-x86_64 under TCG with 1 GiB, a virtio RNG, the
// serial console on stdio and the given arguments, and waits for a console
// line holding want; it fails the test with the console's last lines when
// none comes within bootTimeout. QEMU is stopped before it returns.
func Boot(t *testing.T, want string, args ...string) BootResult {
	t.Helper()
	bin, err := testenv.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	all := append([]string{"-accel", "tcg", "-m", "1024", "-nographic", "-no-reboot", "-nodefaults",
		"-serial", "stdio", "-device", "virtio-rng-pci"}, args...)
	cmd := exec.CommandContext(ctx, bin, all...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); pw.Close(); close(done) }()
	defer func() { cancel(); go io.Copy(io.Discard, pr); <-done }()
	var res BootResult
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		res.Lines = append(res.Lines, line)
		if strings.Contains(line, want) {
			res.Ready, res.Elapsed = line, time.Since(start)
			return res
		}
	}
	t.Fatalf("no %q on the console (QEMU exited or %v passed); last lines:\n%s", want, bootTimeout, tail(res.Lines, 60))
	return res
}

func tail(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// writableCopy copies firmware variables: OVMF writes boot entries there.
func writableCopy(t *testing.T, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		testenv.Skip(t, "needs OVMF firmware (apt-get install ovmf): "+err.Error())
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// grubTFTP lays out a TFTP root for GRUB netboot as docs/BOOT.md tells
// users to: Debian's network GRUB as grubnetx64.efi and, for Secure Boot,
// as grubx64.efi beside shimx64.efi, with the netboot directory as grub/,
// where that GRUB's built-in config looks for grub.cfg.
func grubTFTP(t *testing.T, netDir string) string {
	t.Helper()
	needFiles(t, "grub-efi-amd64-signed", grubNet)
	needFiles(t, "shim-signed", shim)
	dir := t.TempDir()
	for name, src := range map[string]string{"grubnetx64.efi": grubNet, "grubx64.efi": grubNet, "shimx64.efi": shim} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(netDir, filepath.Join(dir, "grub")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func needFiles(t *testing.T, pkg string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			testenv.Skip(t, "needs "+p+" (apt-get install "+pkg+")")
		}
	}
}

// TestBoot boots the ISO and the netboot files under every firmware and
// medium they are made for, each to the appliance's ready line.
func TestBoot(t *testing.T) {
	a := build(t)
	testenv.RequireTools(t, "qemu-system-x86_64")
	t.Logf("ISO %s: %d bytes (%.1f MiB)", a.iso.ISO, a.iso.Size, float64(a.iso.Size)/(1<<20))
	img := a.iso.ISO
	// snapshot=on: the guest may write to a disk, never to the ISO.
	asDisk := func(bus string) []string {
		if bus == "virtio" {
			return []string{"-drive", "file=" + img + ",format=raw,if=none,id=d0,snapshot=on", "-device", "virtio-blk-pci,drive=d0"}
		}
		return []string{"-drive", "file=" + img + ",format=raw,if=ide,snapshot=on"}
	}
	uefi := func(t *testing.T) []string {
		needFiles(t, "ovmf", ovmfCode, ovmfVars)
		return []string{"-drive", "if=pflash,format=raw,readonly=on,file=" + ovmfCode,
			"-drive", "if=pflash,format=raw,file=" + writableCopy(t, ovmfVars)}
	}
	// tftp serves dir with bootfile as the DHCP boot file name, through
	// iPXE's option ROM or, with rom false, the firmware's own PXE.
	tftp := func(t *testing.T, dir, bootfile string, rom bool) []string {
		nic := "virtio-net-pci,netdev=n0,bootindex=1,romfile="
		if rom {
			needFiles(t, "ipxe-qemu", ipxeROM)
			nic += ipxeROM + ",disable-legacy=on"
		}
		return []string{"-netdev", "user,id=n0,tftp=" + dir + ",bootfile=" + bootfile, "-device", nic}
	}
	secureBoot := func(t *testing.T) []string {
		needFiles(t, "ovmf", ovmfCodeMS, ovmfVarsMS)
		return []string{"-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on",
			"-drive", "if=pflash,format=raw,readonly=on,file=" + ovmfCodeMS,
			"-drive", "if=pflash,format=raw,file=" + writableCopy(t, ovmfVarsMS)}
	}
	ipxe := func(t *testing.T) []string { return tftp(t, a.netDir, iso.IPXEScript, true) }
	grubLoading := "Loading Lifeboat from (tftp,10.0.2.2)/grub..."
	cases := []struct {
		name string
		args func(t *testing.T) []string
		// console lines must appear before the ready line.
		console []string
	}{
		{"bios-cd", func(t *testing.T) []string { return []string{"-cdrom", img} }, []string{"SeaBIOS"}},
		{"bios-usb-disk", func(t *testing.T) []string { return asDisk("ide") }, []string{"Booting from Hard Disk"}},
		{"uefi-cd", func(t *testing.T) []string { return append(uefi(t), "-cdrom", img) }, []string{"secureboot: Secure boot disabled"}},
		{"uefi-usb-disk", func(t *testing.T) []string { return append(uefi(t), asDisk("virtio")...) }, []string{"secureboot: Secure boot disabled"}},
		{"uefi-secureboot-cd", func(t *testing.T) []string { return append(secureBoot(t), "-cdrom", img) }, []string{"secureboot: Secure boot enabled"}},
		{"bios-pxe-ipxe", ipxe, []string{"iPXE (PCI 00:03.0) starting execution", iso.IPXEScript + "... ok"}},
		{"uefi-pxe-ipxe", func(t *testing.T) []string { return append(uefi(t), ipxe(t)...) }, []string{"secureboot: Secure boot disabled"}},
		// iPXE's UEFI driver fetches Debian's network GRUB, which reads
		// grub/grub.cfg from the same server.
		{"uefi-pxe-grub", func(t *testing.T) []string {
			return append(uefi(t), tftp(t, grubTFTP(t, a.netDir), "grubnetx64.efi", true)...)
		}, []string{"Welcome to GRUB!", grubLoading, "secureboot: Secure boot disabled"}},
		// The firmware's own PXE fetches shim, shim fetches grubx64.efi
		// (the network GRUB) next to itself and verifies it. Not through
		// iPXE: Debian 12's iPXE, as a UEFI PXE base code, misreports the
		// file's size to shim, which then rejects GRUB as malformed.
		{"uefi-secureboot-pxe-shim-grub", func(t *testing.T) []string {
			return append(secureBoot(t), tftp(t, grubTFTP(t, a.netDir), "shimx64.efi", false)...)
		}, []string{"Fetching Netboot Image grubx64.efi", grubLoading, "secureboot: Secure boot enabled"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			res := Boot(t, "LIFEBOAT-READY", c.args(t)...)
			if strings.TrimSpace(res.Ready) != "LIFEBOAT-READY test-iso" {
				t.Errorf("ready line %q, want \"LIFEBOAT-READY test-iso\"", res.Ready)
			}
			all := strings.Join(res.Lines, "\n")
			for _, want := range c.console {
				if !strings.Contains(all, want) {
					t.Errorf("no %q on the console before the ready line; console:\n%s", want, tail(res.Lines, 80))
				}
			}
			t.Logf("%s: power-on to LIFEBOAT-READY in %.1f s (TCG)", c.name, res.Elapsed.Seconds())
		})
	}
}

// TestLayout checks the image without booting it: both El Torito entries,
// the partition that exposes the ESP when the image is a disk, and the
// signed binaries in the ESP, byte for byte.
func TestLayout(t *testing.T) {
	a := build(t)
	testenv.RequireTools(t, "sfdisk", "mcopy")
	out, err := exec.Command("xorriso", "-indev", a.iso.ISO, "-report_el_torito", "plain").CombinedOutput()
	if err != nil {
		t.Fatalf("xorriso -report_el_torito: %v\n%s", err, out)
	}
	rep := string(out)
	if !strings.Contains(rep, "El Torito boot img :   1  BIOS") || !strings.Contains(rep, "El Torito boot img :   2  UEFI") {
		t.Errorf("El Torito catalog lacks a BIOS and a UEFI entry:\n%s", rep)
	}
	sfdisk, _ := testenv.LookPath("sfdisk")
	out, err = exec.Command(sfdisk, "--dump", a.iso.ISO).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk --dump: %v\n%s", err, out)
	}
	// xorriso writes a GPT (with a protective MBR) holding the ESP image
	// as a partition, so UEFI finds it when the image is a disk.
	if !strings.Contains(string(out), "type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B") {
		t.Errorf("the image has no EFI system partition in its partition table:\n%s", out)
	}

	dir := t.TempDir()
	esp := filepath.Join(dir, "efi.img")
	out, err = exec.Command("xorriso", "-osirrox", "on", "-indev", a.iso.ISO, "-extract", "/boot/grub/efi.img", esp).CombinedOutput()
	if err != nil {
		t.Fatalf("extract the ESP image: %v\n%s", err, out)
	}
	for name, src := range map[string]string{
		"BOOTX64.EFI": "/usr/lib/shim/shimx64.efi.signed",
		"grubx64.efi": "/usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed",
		"mmx64.efi":   "/usr/lib/shim/mmx64.efi.signed",
	} {
		got := filepath.Join(dir, name)
		if out, err := exec.Command("mcopy", "-i", esp, "::/EFI/BOOT/"+name, got).CombinedOutput(); err != nil {
			t.Errorf("mcopy %s out of the ESP: %v\n%s", name, err, out)
			continue
		}
		want, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(got); !bytes.Equal(b, want) {
			t.Errorf("ESP /EFI/BOOT/%s differs from %s", name, src)
		}
	}
	if out, err := exec.Command("mtype", "-i", esp, "::/EFI/BOOT/grub.cfg").CombinedOutput(); err != nil || !strings.Contains(string(out), "/.disk/lifeboat-"+a.iso.Stamp) {
		t.Errorf("ESP grub.cfg does not search for this image's stamp %s: %v\n%s", a.iso.Stamp, err, out)
	}
}

// TestBadAppend checks that a command line the configs cannot carry is
// refused instead of written.
func TestBadAppend(t *testing.T) {
	dir := t.TempDir()
	for _, s := range []string{"console=ttyS0\nset root=x", "lifeboat.run=\"a b\"", "a;b"} {
		if _, _, err := iso.WriteNetboot(dir, s); err == nil {
			t.Errorf("WriteNetboot accepted %q", s)
		}
		if _, err := iso.Build(context.Background(), iso.Config{Kernel: "k", Initramfs: "i", Out: filepath.Join(dir, "x.iso"), Append: s}); err == nil {
			t.Errorf("Build accepted %q", s)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, iso.IPXEScript)); err == nil {
		t.Errorf("a refused command line still wrote %s", iso.IPXEScript)
	}
}
