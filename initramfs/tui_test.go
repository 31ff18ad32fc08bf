package initramfs_test

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/internal/testdisk"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

// ansi matches the escape sequences a terminal UI draws with.
var ansi = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>78]|\][^\x07]*\x07)`)

// screenText is what a terminal shows of output, near enough to find
// words in: escape sequences dropped, each cursor move taken as a space.
func screenText(b []byte) string {
	return strings.Join(strings.Fields(ansi.ReplaceAllString(string(b), " ")), " ")
}

// TestBootConsoleUI boots the appliance without a job: the console UI
// starts on the serial console (TERM vt220) and shows its home screen with
// the attached disk by serial; then the arrow keys and Enter choose Power
// off and confirm it, and the machine powers off.
func TestBootConsoleUI(t *testing.T) {
	rep := netboot(t)
	disk := testdisk.EmptyFile(t, filepath.Join(t.TempDir(), "d.img"), 32*testdisk.MiB)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	bin, _ := testenv.LookPath("qemu-system-x86_64")
	cmd := exec.CommandContext(ctx, bin, "-accel", "tcg", "-m", "1024", "-nographic", "-no-reboot", "-nodefaults",
		"-serial", "stdio", "-kernel", rep.KernelOut, "-initrd", rep.InitramfsOut,
		"-append", "console=ttyS0", "-device", "virtio-rng-pci",
		"-drive", "file="+disk+",if=none,id=d0,format=raw", "-device", "virtio-blk-pci,drive=d0,serial=UIDISK7")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var out bytes.Buffer
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := pr.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	screen := func() string {
		mu.Lock()
		defer mu.Unlock()
		return screenText(out.Bytes())
	}
	waitFor := func(words ...string) {
		t.Helper()
		for {
			s := screen()
			all := true
			for _, w := range words {
				all = all && strings.Contains(s, w)
			}
			if all {
				return
			}
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				t.Fatalf("no %q on the serial console; it shows (end):\n%s", words, tailString(s, 3000))
			}
		}
	}
	waitFor("LIFEBOAT-READY")
	waitFor("Disk Clone", "System Clone", "Backup", "Restore", "Power off", "UIDISK7")
	t.Logf("home screen reached; console text (end):\n%s", tailString(screen(), 1500))
	// Down past the last action (the list stops there: Power off), then
	// Enter, Tab to the "Power off" button, Enter.
	keys := append(slices.Repeat([]string{"\x1b[B"}, 12), "\r", "\t", "\r")
	for _, k := range keys {
		time.Sleep(time.Second) // TCG is slow: let the UI take each key
		if _, err := io.WriteString(stdin, k); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-done:
		if ctx.Err() != nil {
			t.Fatal("QEMU was killed, not powered off")
		}
		if !strings.Contains(screen(), "Power off now?") {
			t.Errorf("the power-off question was not shown; console (end):\n%s", tailString(screen(), 1500))
		}
	case <-time.After(2 * time.Minute):
		cancel()
		<-done
		t.Fatalf("the machine did not power off from the UI; console (end):\n%s", tailString(screen(), 3000))
	}
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
