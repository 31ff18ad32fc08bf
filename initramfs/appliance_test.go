package initramfs_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/lifeboat/lifeboat/initramfs"
	"github.com/lifeboat/lifeboat/internal/testdisk"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

// bootTimeout is generous: under TCG the Debian kernel boots in about ten
// seconds on a quiet machine, and CI machines are not quiet.
const bootTimeout = 5 * time.Minute

var (
	buildOnce sync.Once
	buildRep  *initramfs.Report
	buildErr  error
	buildDir  string
)

// netboot builds the netboot pair once per test binary.
func netboot(t *testing.T) *initramfs.Report {
	t.Helper()
	testenv.Short(t)
	testenv.RequireTools(t, "qemu-system-x86_64", "go")
	if _, err := initramfs.DefaultKernel("/boot"); err != nil {
		testenv.Skip(t, "needs a Debian kernel in /boot (apt-get install linux-image-amd64)")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "lifeboat-netboot-")
		if buildErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		var fwDirs []string
		if fwDirs, buildErr = firmwareDirs(buildDir); buildErr != nil {
			return
		}
		buildRep, buildErr = initramfs.Build(ctx, initramfs.Config{OutDir: filepath.Join(buildDir, "out"), Version: "test-1", FirmwareDirs: fwDirs})
	})
	if buildErr != nil {
		t.Fatalf("build netboot pair: %v", buildErr)
	}
	return buildRep
}

// fakeFirmware is a firmware file r8169 names (the RTL8168h NICs'), put in
// a firmware directory searched before the host's so the build must carry
// it: a host without firmware-realtek still shows the carrying works.
const (
	fakeFirmware        = "rtl_nic/rtl8168h-2.fw"
	fakeFirmwareContent = "lifeboat test firmware for r8169\n"
)

// firmwareDirs makes dir/firmware holding fakeFirmware and returns it
// before the host kernel's own firmware directories.
func firmwareDirs(dir string) ([]string, error) {
	release, err := hostRelease()
	if err != nil {
		return nil, err
	}
	fw := filepath.Join(dir, "firmware")
	if err := os.MkdirAll(filepath.Join(fw, filepath.Dir(fakeFirmware)), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(fw, fakeFirmware), []byte(fakeFirmwareContent), 0o644); err != nil {
		return nil, err
	}
	return append([]string{fw}, initramfs.DefaultFirmwareDirs("/", release)...), nil
}

func hostRelease() (string, error) {
	k, err := initramfs.DefaultKernel("/boot")
	if err != nil {
		return "", err
	}
	f, err := os.Open(k)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	return initramfs.KernelVersion(f, st.Size())
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// qemu boots the pair with append as the kernel command line and the given
// extra arguments, and returns the console lines up to the first line
// holding one of stops (and that line), then whether QEMU exited by itself
// within grace after that.
func qemu(t *testing.T, rep *initramfs.Report, appendArgs string, extra []string, stops []string, grace time.Duration) (lines []string, hit string, exited bool) {
	return qemuTalk(t, rep, appendArgs, extra, stops, grace, "", "")
}

// qemuTalk is qemu that, once a stop line is seen, types send on the serial
// console every two seconds (a shell starting may flush what came before
// it) until a line holding want appears.
func qemuTalk(t *testing.T, rep *initramfs.Report, appendArgs string, extra []string, stops []string, grace time.Duration, send, want string) (lines []string, hit string, exited bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	args := []string{"-accel", "tcg", "-m", "1024", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-kernel", rep.KernelOut, "-initrd", rep.InitramfsOut,
		"-append", "console=ttyS0 " + appendArgs, "-device", "virtio-rng-pci"}
	args = append(args, extra...)
	bin, _ := testenv.LookPath("qemu-system-x86_64")
	cmd := exec.CommandContext(ctx, bin, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for hit == "" && sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		lines = append(lines, line)
		for _, s := range stops {
			if strings.Contains(line, s) {
				hit = line
			}
		}
	}
	if hit != "" && send != "" {
		got := make(chan bool, 1)
		go func() {
			for sc.Scan() {
				line := strings.TrimRight(sc.Text(), "\r")
				lines = append(lines, line)
				if strings.Contains(line, want) {
					got <- true
					return
				}
			}
			got <- false
		}()
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		ok, received := false, false
	talk:
		for {
			if _, err := io.WriteString(stdin, send+"\r"); err != nil {
				break
			}
			select {
			case ok = <-got:
				received = true
				break talk
			case <-tick.C:
			case <-ctx.Done():
				break talk
			}
		}
		if !ok {
			cancel()
			<-done
			if !received {
				<-got // the reader has stopped: lines is ours again
			}
			t.Fatalf("no %q on the console after typing %q; last lines:\n%s", want, send, tail(lines, 40))
		}
	}
	go io.Copy(io.Discard, pr)
	select {
	case <-done:
		exited = ctx.Err() == nil
	case <-time.After(grace):
		cancel()
		<-done
	}
	if hit == "" {
		t.Fatalf("no %q on the console within %v; last lines:\n%s", stops, bootTimeout, tail(lines, 60))
	}
	return lines, hit, exited
}

func tail(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func TestBootReady(t *testing.T) {
	rep := netboot(t)
	if rep.ImageSize > initramfs.MaxImageSize {
		t.Errorf("initramfs is %d bytes, over %d", rep.ImageSize, initramfs.MaxImageSize)
	}
	// After the ready line the shell takes over the console: arithmetic
	// shows it evaluates what it reads (the console's echo of the typed
	// line holds no 42), and e2fsck -V that the carried tools find their
	// libraries.
	// /dev/fuse is there because fuse is in lifeboat.load: loading by
	// modalias never asks for it.
	lines, hit, _ := qemuTalk(t, rep, "lifeboat.after=shell", nil, []string{"LIFEBOAT-READY"}, time.Second,
		"echo SHELL-$((6*7)); e2fsck -V 2>&1 | head -n 1; mdir -V | head -n 1; tune2fs 2>&1 | head -n 1; [ -c /dev/fuse ] && echo FUSE-$((2*21)); echo TOOLS-$((7*6))", "TOOLS-42")
	if strings.TrimSpace(hit) != "LIFEBOAT-READY test-1" {
		t.Errorf("ready line %q, want \"LIFEBOAT-READY test-1\"", hit)
	}
	// The virtio drivers are modules in Debian's kernel: seeing them load
	// shows module loading by modalias worked.
	all := strings.Join(lines, "\n")
	if !strings.Contains(all, "module virtio_pci loaded") {
		t.Errorf("virtio_pci was not loaded by modalias; console:\n%s", tail(lines, 80))
	}
	if !strings.Contains(all, "SHELL-42") || !strings.Contains(all, "e2fsck 1.") || !strings.Contains(all, "mtools") || !strings.Contains(all, "Usage: tune2fs") {
		t.Errorf("the shell did not run the typed commands; console:\n%s", tail(lines, 40))
	}
	if !strings.Contains(all, "module fuse loaded") || !strings.Contains(all, "FUSE-42") {
		t.Errorf("fuse was not loaded at boot, or /dev/fuse is not a character device; console:\n%s", tail(lines, 80))
	}
	t.Logf("console, last lines:\n%s", tail(lines, 12))
}

func TestBootCloneJob(t *testing.T) {
	rep := netboot(t)
	testenv.RequireTools(t, "mkfs.ext4", "sgdisk", "e2fsck", "debugfs")
	dir := t.TempDir()
	fx := testdisk.Build(t, dir, testdisk.Spec{
		Table: "gpt",
		Size:  64 * testdisk.MiB,
		Parts: []testdisk.Part{
			{FS: "ext4", Size: 48 * testdisk.MiB, GPTType: "8300", Label: "root",
				Files: &testdisk.TreeOptions{Seed: 5, TotalBytes: 6 << 20, HardLinks: true, Symlinks: true, Sparse: true, UTF8: true}},
		},
	})
	target := testdisk.EmptyFile(t, filepath.Join(dir, "new.img"), 96*testdisk.MiB)
	extra := []string{
		"-drive", "file=" + fx.Path + ",if=none,id=d0,format=raw",
		"-device", "virtio-blk-pci,drive=d0,serial=OLD1",
		"-drive", "file=" + target + ",if=none,id=d1,format=raw",
		"-device", "virtio-blk-pci,drive=d1,serial=NEW1",
	}
	lines, hit, exited := qemu(t, rep, "lifeboat.run=clone,--from,serial:OLD1,--to,serial:NEW1,--yes lifeboat.after=poweroff",
		extra, []string{"LIFEBOAT-JOB:"}, 2*time.Minute)
	if strings.TrimSpace(hit) != "LIFEBOAT-JOB: ok" {
		t.Fatalf("job result %q; console:\n%s", hit, tail(lines, 80))
	}
	if !exited {
		t.Errorf("QEMU did not power off after the job")
	}
	t.Logf("console, last lines:\n%s", tail(lines, 25))
	tbl := testdisk.CheckCopy(t, fx, target)
	p, ok := tbl.Find(fx.Parts[0].Number)
	if !ok {
		t.Fatal("target has no partition 1")
	}
	// grow-last: the partition and its ext4 were grown in the guest with
	// e2fsck and resize2fs from the initramfs.
	if p.Size <= fx.Parts[0].Size {
		t.Errorf("target partition is %d bytes, not grown past %d", p.Size, fx.Parts[0].Size)
	}
	// The ext4 superblock (at 1024 bytes) gives the file system's size:
	// s_blocks_count_lo at 4, s_log_block_size at 24.
	sb := testdisk.ReadRange(t, target, p.Start+1024, 1024)
	fsBytes := int64(binary.LittleEndian.Uint32(sb[4:])) << (10 + binary.LittleEndian.Uint32(sb[24:]))
	if fsBytes <= fx.Parts[0].Size || fsBytes > p.Size {
		t.Errorf("ext4 on the target is %d bytes: not grown into the %d-byte partition (source %d)", fsBytes, p.Size, fx.Parts[0].Size)
	}
}

// TestFirmwareInInitramfs reads the built initramfs back: the fake r8169
// firmware is at its path under /lib/firmware, and so is every firmware
// file a carried module names (modinfo's list) that the host has.
func TestFirmwareInInitramfs(t *testing.T) {
	rep := netboot(t)
	testenv.RequireTools(t, "modinfo")
	ar := readInitramfs(t, rep.InitramfsOut)
	if got := fileIn(t, ar, "lib/firmware/"+fakeFirmware); got != fakeFirmwareContent {
		t.Errorf("/lib/firmware/%s in the initramfs holds %q, want the test firmware", fakeFirmware, got)
	}
	if !slices.Contains(rep.Firmware, fakeFirmware) {
		t.Errorf("report lists firmware %q, without %s", rep.Firmware, fakeFirmware)
	}
	hostDirs := initramfs.DefaultFirmwareDirs("/", rep.KernelVersion)
	checked := 0
	for _, m := range rep.Modules {
		name := strings.SplitN(filepath.Base(m), ".ko", 2)[0]
		out, err := exec.Command("modinfo", "-k", rep.KernelVersion, "-F", "firmware", name).Output()
		if err != nil {
			t.Fatalf("modinfo %s: %v", name, err)
		}
		for _, fw := range strings.Fields(string(out)) {
			if !onHost(hostDirs, fw) {
				continue
			}
			checked++
			if _, ok := ar.Get("lib/firmware/" + fw); !ok {
				t.Errorf("the host has firmware %s, which %s names, but the initramfs lacks it", fw, m)
			}
		}
	}
	t.Logf("firmware carried: %d files, %d bytes; %d host files named by carried modules checked", len(rep.Firmware), rep.FirmwareBytes, checked)
}

func onHost(dirs []string, name string) bool {
	for _, d := range dirs {
		for _, suffix := range []string{"", ".zst", ".xz"} {
			if st, err := os.Stat(filepath.Join(d, name+suffix)); err == nil && st.Mode().IsRegular() {
				return true
			}
		}
	}
	return false
}

// readInitramfs decompresses the zstd initramfs and indexes its newc
// records.
func readInitramfs(t *testing.T, path string) *cpio.Archive {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("decompress %s: %v", path, err)
	}
	ar, err := cpio.ArchiveFromReader(cpio.Newc.Reader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("read the cpio in %s: %v", path, err)
	}
	return ar
}

func fileIn(t *testing.T, ar *cpio.Archive, name string) string {
	t.Helper()
	r, ok := ar.Get(name)
	if !ok {
		t.Fatalf("no %s in the initramfs", name)
	}
	b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	if err != nil {
		t.Fatalf("read %s from the initramfs: %v", name, err)
	}
	return string(b)
}
