package sysdisk

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// Firmware is what QEMU boots with.
type Firmware string

// The firmwares Boot knows.
const (
	BIOS Firmware = "seabios"
	UEFI Firmware = "ovmf"
)

const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	// bootTimeout is a deadline for a hung boot, not a measure of speed:
	// TCG on a busy machine is slow.
	bootTimeout = 5 * time.Minute
)

// Booted is what the booted system printed.
type Booted struct {
	// Root is the UUID of the file system mounted as /; Fstab the UUID
	// its /etc/fstab gives for /.
	Root, Fstab string
	// Console is everything QEMU printed up to the marker.
	Console string
}

// Boot starts QEMU (TCG) with the disks attached as virtio disks, the first
// one booted, fresh firmware variables for UEFI (no boot entries: only the
// fallback loader \EFI\BOOT\BOOTX64.EFI can boot), and waits for the
// marker line. The disks are opened with snapshot=on: the guest's writes
// never reach them.
func Boot(t testing.TB, fw Firmware, disks ...string) Booted {
	t.Helper()
	bin, err := testenv.LookPath("qemu-system-x86_64")
	if err != nil {
		testenv.Skip(t, "needs qemu-system-x86_64 (apt-get install qemu-system-x86)")
	}
	args := []string{"-accel", "tcg", "-m", "512", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"}
	if fw == UEFI {
		for _, p := range []string{ovmfCode, ovmfVars} {
			if _, err := os.Stat(p); err != nil {
				testenv.Skip(t, "needs "+p+" (apt-get install ovmf)")
			}
		}
		vars := filepath.Join(t.TempDir(), "vars.fd")
		b, err := os.ReadFile(ovmfVars)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vars, b, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-drive", "if=pflash,format=raw,readonly=on,file="+ovmfCode, "-drive", "if=pflash,format=raw,file="+vars)
	}
	for i, d := range disks {
		args = append(args, "-drive", fmt.Sprintf("file=%s,format=raw,if=none,id=d%d,snapshot=on", d, i),
			"-device", fmt.Sprintf("virtio-blk-pci,drive=d%d,bootindex=%d", i, i+1))
	}
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); pw.Close(); close(done) }()
	defer func() { cancel(); go io.Copy(io.Discard, pr); <-done }()
	var lines []string
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		lines = append(lines, line)
		if i := strings.Index(line, Marker+" "); i >= 0 {
			var b Booted
			for _, f := range strings.Fields(line[i+len(Marker):]) {
				if v, ok := strings.CutPrefix(f, "root="); ok {
					b.Root = v
				}
				if v, ok := strings.CutPrefix(f, "fstab="); ok {
					b.Fstab = v
				}
			}
			b.Console = strings.Join(lines, "\n")
			return b
		}
	}
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	t.Fatalf("%s: no %q on the console (QEMU exited or %v passed); last lines:\n%s", fw, Marker, bootTimeout, strings.Join(lines, "\n"))
	return Booted{}
}
