package rescue

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseCmdline(t *testing.T) {
	b, err := ParseCmdline(`BOOT_IMAGE=/vmlinuz console=tty0 console=ttyS0,115200n8 quiet lifeboat.run=clone,--from,serial:OLD1,--to,serial:NEW1,--yes lifeboat.after=poweroff` + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"clone", "--from", "serial:OLD1", "--to", "serial:NEW1", "--yes"}; !slices.Equal(b.Job, want) {
		t.Errorf("Job = %q, want %q", b.Job, want)
	}
	if b.After != AfterPoweroff {
		t.Errorf("After = %q", b.After)
	}
	if !slices.Equal(b.Consoles, []string{"tty0", "ttyS0"}) {
		t.Errorf("Consoles = %q", b.Consoles)
	}

	b, err = ParseCmdline(`console=ttyS0 lifeboat.run="backup,--from,model:My Disk,--to,/mnt/repo"`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"backup", "--from", "model:My Disk", "--to", "/mnt/repo"}; !slices.Equal(b.Job, want) {
		t.Errorf("quoted Job = %q, want %q", b.Job, want)
	}
	if b.After != AfterShell {
		t.Errorf("default After = %q, want shell", b.After)
	}

	b, err = ParseCmdline("console=ttyS0 quiet")
	if err != nil || b.Job != nil || b.After != AfterTUI {
		t.Errorf("no job: got %q, after %q, %v; want the console UI after", b.Job, b.After, err)
	}
	if b, err = ParseCmdline("lifeboat.term=xterm-256color"); err != nil || b.Term != "xterm-256color" {
		t.Errorf("lifeboat.term: %q %v", b.Term, err)
	}
	for _, bad := range []string{"lifeboat.after=halt", "lifeboat.run=", "lifeboat.run=clone,,--yes", strings.Repeat("x", maxCmdline+1)} {
		if _, err := ParseCmdline(bad); err == nil {
			t.Errorf("ParseCmdline(%.40q) accepted it", bad)
		}
	}
}

func TestParseConsoles(t *testing.T) {
	in := "tty0                 -WU (E  p  )    4:1\nttyS0                -W- (EC p a)    4:64\n"
	if got := ParseConsoles(in); !slices.Equal(got, []string{"ttyS0", "tty0"}) {
		t.Errorf("ParseConsoles = %q, want preferred ttyS0 first", got)
	}
	if got := ParseConsoles("../etc/passwd -W- (EC) 1:1\n"); len(got) != 0 {
		t.Errorf("accepted a path as a console: %q", got)
	}
}

// recorder is a System that records what it is asked.
type recorder struct {
	mounts   []string
	inserted []string
	fail     map[string]error
	powerOff int
	hostname string
}

func (r *recorder) Mount(source, target, fstype string) error {
	r.mounts = append(r.mounts, fstype+" "+target)
	return nil
}

func (r *recorder) Insert(path string) error {
	r.inserted = append(r.inserted, filepath.Base(path))
	return r.fail[filepath.Base(path)]
}

func (r *recorder) PowerOff() error { r.powerOff++; return nil }
func (r *recorder) Reboot() error   { return errors.New("unexpected reboot") }
func (r *recorder) SetHostname(name string) error {
	r.hostname = name
	return nil
}

// fakeRoot lays out a root with modules (from the kmod testdata), a sysfs
// holding a virtio PCI function and a virtio disk, and a command line.
func fakeRoot(t *testing.T, cmdline string) string {
	t.Helper()
	root := t.TempDir()
	mod := filepath.Join(root, "lib", "modules", "6.1.0-test")
	if err := os.MkdirAll(mod, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"modules.dep", "modules.alias", "modules.softdep"} {
		b, err := os.ReadFile(filepath.Join("kmod", "testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(mod, f), string(b))
	}
	write(t, filepath.Join(mod, "lifeboat.load"), "loop\n")
	write(t, filepath.Join(root, "sys", "devices", "pci0000:00", "0000:00:04.0", "modalias"), "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\n")
	write(t, filepath.Join(root, "sys", "devices", "pci0000:00", "0000:00:04.0", "virtio1", "modalias"), "virtio:d00000002v00001AF4\n")
	write(t, filepath.Join(root, "sys", "devices", "platform", "serial8250", "modalias"), "platform:serial8250\n")
	write(t, filepath.Join(root, "proc", "cmdline"), cmdline)
	return root
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestModaliases(t *testing.T) {
	root := fakeRoot(t, "")
	got, err := Modaliases(filepath.Join(root, "sys", "devices"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", "platform:serial8250", "virtio:d00000002v00001AF4"}
	if !slices.Equal(got, want) {
		t.Errorf("Modaliases = %q, want %q", got, want)
	}
}

func TestLoaderLoadsEachOnceInOrder(t *testing.T) {
	root := fakeRoot(t, "")
	rec := &recorder{fail: map[string]error{"crc32c-intel.ko": errors.New("no such device")}}
	var log bytes.Buffer
	ld, err := OpenLoader(filepath.Join(root, "lib", "modules", "6.1.0-test"), rec, &log)
	if err != nil {
		t.Fatal(err)
	}
	if n := ld.Load([]string{"ext4"}); n != 5 {
		t.Errorf("Load(ext4) loaded %d, want 5 (crc32c_generic crc16 mbcache jbd2 ext4): %q", n, rec.inserted)
	}
	if n := ld.Load([]string{"ext4", "jbd2"}); n != 0 {
		t.Errorf("second Load loaded %d again", n)
	}
	if got := rec.inserted[len(rec.inserted)-1]; got != "ext4.ko" {
		t.Errorf("last inserted %s, want ext4.ko after its dependencies: %q", got, rec.inserted)
	}
	if !strings.Contains(log.String(), "crc32c_intel: no such device") {
		t.Errorf("failure not logged: %s", log.String())
	}
}

func TestSettleLoadsByModalias(t *testing.T) {
	root := fakeRoot(t, "")
	rec := &recorder{}
	ld, err := OpenLoader(filepath.Join(root, "lib", "modules", "6.1.0-test"), rec, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ld.Settle(context.Background(), filepath.Join(root, "sys"), 50*time.Millisecond, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"virtio_pci.ko", "virtio_blk.ko", "virtio.ko", "virtio_ring.ko"} {
		if !slices.Contains(rec.inserted, m) {
			t.Errorf("%s not loaded: %q", m, rec.inserted)
		}
	}
	if slices.Contains(rec.inserted, "ext4.ko") || slices.Contains(rec.inserted, "loop.ko") {
		t.Errorf("loaded modules no device asked for: %q", rec.inserted)
	}
}

// helperSelf builds a stand-in for the lifeboat binary: a shell script
// that prints its arguments and fails when asked to.
func helperSelf(t *testing.T) string {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	p := filepath.Join(t.TempDir(), "lifeboat")
	write(t, p, "#!"+sh+"\necho \"ran: $*\"\ncase \"$*\" in *--fail*) echo boom >&2; exit 3;; esac\n")
	if err := os.Chmod(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMainRunsJobAndPowersOff(t *testing.T) {
	root := fakeRoot(t, "console=ttyS0 lifeboat.run=clone,--from,serial:OLD1,--to,serial:NEW1,--yes lifeboat.after=poweroff")
	rec := &recorder{}
	var out bytes.Buffer
	logFile := filepath.Join(root, "run", "lifeboat", "job.log")
	after, err := Main(context.Background(), Config{Version: "v9", Root: root, Sys: rec, Self: helperSelf(t),
		Stdout: &out, KernelRelease: "6.1.0-test", LogFile: logFile})
	if err != nil || after != AfterPoweroff {
		t.Fatalf("Main = %q, %v", after, err)
	}
	if rec.powerOff != 1 {
		t.Errorf("powered off %d times", rec.powerOff)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if last := lines[len(lines)-1]; last != "LIFEBOAT-JOB: ok" {
		t.Errorf("last line %q; output:\n%s", last, out.String())
	}
	if !strings.Contains(out.String(), "ran: clone --from serial:OLD1 --to serial:NEW1 --yes") {
		t.Errorf("job not run with its words:\n%s", out.String())
	}
	b, err := os.ReadFile(logFile)
	if err != nil || !strings.Contains(string(b), "LIFEBOAT-JOB: ok") {
		t.Errorf("log file: %q, %v", b, err)
	}
	for _, m := range []string{"proc " + filepath.Join(root, "proc"), "devtmpfs " + filepath.Join(root, "dev"), "sysfs " + filepath.Join(root, "sys")} {
		if !slices.Contains(rec.mounts, m) {
			t.Errorf("no mount %q in %q", m, rec.mounts)
		}
	}
	if !slices.Contains(rec.inserted, "loop.ko") || !slices.Contains(rec.inserted, "virtio_blk.ko") {
		t.Errorf("boot and device modules not loaded: %q", rec.inserted)
	}
}

func TestMainReportsFailedJob(t *testing.T) {
	root := fakeRoot(t, "lifeboat.run=clone,--fail lifeboat.after=shell")
	rec := &recorder{}
	var out bytes.Buffer
	after, err := Main(context.Background(), Config{Version: "v9", Root: root, Sys: rec, Self: helperSelf(t), Stdout: &out, KernelRelease: "6.1.0-test"})
	if err == nil || after != AfterShell || rec.powerOff != 0 {
		t.Fatalf("Main = %q, %v, %d power-offs", after, err, rec.powerOff)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if last := lines[len(lines)-1]; last != "LIFEBOAT-JOB: failed: lifeboat clone exited with status 3" {
		t.Errorf("last line %q; output:\n%s", last, out.String())
	}
}

func TestMainReadyWithoutJob(t *testing.T) {
	root := fakeRoot(t, "console=ttyS0")
	var out bytes.Buffer
	after, err := Main(context.Background(), Config{Version: "v9", Root: root, Sys: &recorder{}, Self: helperSelf(t), Stdout: &out, KernelRelease: "6.1.0-test"})
	if err != nil || after != AfterTUI {
		t.Fatalf("Main = %q, %v", after, err)
	}
	if !strings.Contains(out.String(), "LIFEBOAT-READY v9\nran: disks --no-usage\n") {
		t.Errorf("no ready line and disks list:\n%s", out.String())
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add("console=ttyS0 lifeboat.run=clone,--from,serial:OLD1,--to,serial:NEW1,--yes lifeboat.after=poweroff")
	f.Add(`lifeboat.run="a b,c" "console=tty0`)
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseCmdline(s)
		if err == nil {
			for _, w := range b.Job {
				if w == "" {
					t.Errorf("empty job word from %q", s)
				}
			}
		}
		ParseConsoles(s)
	})
}
