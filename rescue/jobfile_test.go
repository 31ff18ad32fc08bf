package rescue

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

func TestParseJobFile(t *testing.T) {
	text := `# nightly image of the office PC
lifeboat network up
backup --from serial:S1 --repo smb://bob@nas/images --password-file pw.txt \
  --tag "nightly run" --tag 'it''s'   # trailing comment
forget --repo smb://bob@nas/images --keep-daily 7 --prune

verify --repo "a \"quoted\" \\ path" --snapshot x#y
`
	got, err := ParseJobFile(text)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"network", "up"},
		{"backup", "--from", "serial:S1", "--repo", "smb://bob@nas/images", "--password-file", "pw.txt", "--tag", "nightly run", "--tag", "its"},
		{"forget", "--repo", "smb://bob@nas/images", "--keep-daily", "7", "--prune"},
		{"verify", "--repo", `a "quoted" \ path`, "--snapshot", "x#y"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	for name, bad := range map[string]string{
		"empty":        "# nothing\n\n",
		"pipe":         "backup --from a | tee x\n",
		"variable":     "backup --repo $HOME\n",
		"semicolon":    "disks; reboot\n",
		"open quote":   "backup --tag \"x\n",
		"open single":  "backup --tag 'x\n",
		"control char": "disks \x01\n",
		"end escape":   "disks \\",
	} {
		if _, err := ParseJobFile(bad); err == nil {
			t.Errorf("%s: accepted %q", name, bad)
		}
	}
	if _, err := ParseJobFile(strings.Repeat("disks\n", maxJobFile)); err == nil {
		t.Error("oversized job file accepted")
	}
}

func TestParseJobSpec(t *testing.T) {
	for spec, want := range map[string][2]string{
		"/jobs/nightly.job":                {"", "/jobs/nightly.job"},
		"LABEL=LBJOBS:/nightly.job":        {"LABEL=LBJOBS", "/nightly.job"},
		"UUID=1234-ABCD:/a/b.job":          {"UUID=1234-ABCD", "/a/b.job"},
		"/dev/sdb1:/job":                   {"/dev/sdb1", "/job"},
		"/dev/disk/by-label/X:/j/../k.job": {"", ""},
	} {
		dev, file, err := ParseJobSpec(spec)
		if want[1] == "" {
			if err == nil {
				t.Errorf("%q accepted as %q %q", spec, dev, file)
			}
			continue
		}
		if err != nil || dev != want[0] || file != want[1] {
			t.Errorf("%q: %q %q %v, want %q", spec, dev, file, err, want)
		}
	}
	for _, bad := range []string{"", "jobs/x", "sdb1:/x", "LABEL=:/x", "/dev/sdb1", "LABEL=A:rel", "/"} {
		if _, _, err := ParseJobSpec(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestNeedsNetwork(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"backup", "--repo", "smb://nas/x"}, true},
		{[]string{"backup", "--repo=S3://h/b"}, true},
		{[]string{"restore", "--repo", "sftp://u@h/p", "--to", "x"}, true},
		{[]string{"backup", "--repo", "/mnt/usb/images"}, false},
		{[]string{"clone", "--from", "smb://not-a-repo"}, false},
		{[]string{"backup", "--repo"}, false},
	} {
		if got := NeedsNetwork(tc.args); got != tc.want {
			t.Errorf("NeedsNetwork(%q) = %v", tc.args, got)
		}
	}
}

func TestMainRunsJobFile(t *testing.T) {
	root := fakeRoot(t, "console=ttyS0 lifeboat.job=LABEL=LBJOBS:/jobs/nightly.job lifeboat.after=poweroff")
	jobDir := filepath.Join(t.TempDir(), "jobs")
	write(t, filepath.Join(jobDir, "nightly.job"), "backup --from serial:S1 --repo nfs://nas/x\nlifeboat verify --repo nfs://nas/x\n")
	var findSpec string
	released := false
	find := func(_ context.Context, _, spec string) (string, func(), error) {
		findSpec = spec
		return filepath.Join(jobDir, "nightly.job"), func() { released = true }, nil
	}
	self := helperSelf(t)
	// The stand-in also prints its working directory and the log path it
	// was given.
	write(t, self, "#!/bin/sh\necho \"ran: $* in $(pwd) log=$"+JobLogEnv+"\"\n")
	rec := &recorder{}
	var out bytes.Buffer
	ups, stops := 0, 0
	netUp := func(_ context.Context, w io.Writer) (func(), error) {
		ups++
		fmt.Fprintln(w, "eth0: address 10.0.2.15/24")
		return func() { stops++ }, nil
	}
	logFile := filepath.Join(root, "run", "lifeboat", "job.log")
	after, err := Main(context.Background(), Config{Version: "v9", Root: root, Sys: rec, Self: self,
		Stdout: &out, KernelRelease: "6.1.0-test", LogFile: logFile, FindJob: find, NetworkUp: netUp})
	if err != nil || after != AfterPoweroff || rec.powerOff != 1 {
		t.Fatalf("Main = %q, %v; output:\n%s", after, err, out.String())
	}
	if findSpec != "LABEL=LBJOBS:/jobs/nightly.job" || !released {
		t.Errorf("find got %q, released %v", findSpec, released)
	}
	o := out.String()
	wantOrder := []string{
		"eth0: address 10.0.2.15/24",
		"ran: backup --from serial:S1 --repo nfs://nas/x in " + jobDir + " log=" + logFile,
		"ran: verify --repo nfs://nas/x in " + jobDir,
		"LIFEBOAT-JOB: ok",
	}
	pos := 0
	for _, w := range wantOrder {
		i := strings.Index(o[pos:], w)
		if i < 0 {
			t.Fatalf("%q missing or out of order in:\n%s", w, o)
		}
		pos += i + len(w)
	}
	if ups != 1 || stops != 1 {
		t.Errorf("network brought up %d times, stopped %d times", ups, stops)
	}
}

func TestMainJobFileStopsAtFirstFailure(t *testing.T) {
	root := fakeRoot(t, "lifeboat.job=/j.job")
	dir := t.TempDir()
	write(t, filepath.Join(dir, "j.job"), "disks\nclone --fail\nbackup --from x --repo /r\n")
	find := func(context.Context, string, string) (string, func(), error) {
		return filepath.Join(dir, "j.job"), func() {}, nil
	}
	var out bytes.Buffer
	after, err := Main(context.Background(), Config{Version: "v9", Root: root, Sys: &recorder{}, Self: helperSelf(t), Stdout: &out, KernelRelease: "6.1.0-test", FindJob: find})
	if err == nil || after != AfterShell {
		t.Fatalf("Main = %q, %v", after, err)
	}
	o := out.String()
	if !strings.Contains(o, "ran: disks") || strings.Contains(o, "ran: backup") || !strings.HasSuffix(strings.TrimSpace(o), "LIFEBOAT-JOB: failed: lifeboat clone exited with status 3") {
		t.Fatalf("output:\n%s", o)
	}
}

func TestMainJobFileNotFound(t *testing.T) {
	root := fakeRoot(t, "lifeboat.job=/missing.job")
	find := func(context.Context, string, string) (string, func(), error) {
		return "", nil, os.ErrNotExist
	}
	var out bytes.Buffer
	_, err := Main(context.Background(), Config{Version: "v9", Root: root, Sys: &recorder{}, Self: helperSelf(t), Stdout: &out, KernelRelease: "6.1.0-test", FindJob: find})
	if err == nil || !strings.Contains(out.String(), "LIFEBOAT-JOB: failed: file does not exist") {
		t.Fatalf("Main: %v; output:\n%s", err, out.String())
	}
}

// TestFindJobFileByLabel finds a job file on a real ext4 file system on a
// loop device, by its label, and mounts it read only.
func TestFindJobFileByLabel(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "mkfs.ext4", "losetup")
	dir := t.TempDir()
	content := filepath.Join(dir, "content")
	write(t, filepath.Join(content, "jobs", "x.job"), "disks\n")
	img := filepath.Join(dir, "jobs.img")
	mkfs, _ := testenv.LookPath("mkfs.ext4")
	label := fmt.Sprintf("LBJ%08X", rand.Uint32()) // unique: another disk could carry a fixed one
	if out, err := exec.Command(mkfs, "-q", "-L", label, "-d", content, img, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	losetup, _ := testenv.LookPath("losetup")
	out, err := exec.Command(losetup, "-f", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command(losetup, "-d", loop).Run() })
	root := t.TempDir()
	for _, l := range []string{"sys", "proc", "dev"} {
		if err := os.Symlink("/"+l, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	p, release, err := FindJobFile(context.Background(), root, "LABEL="+label+":/jobs/x.job")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "disks\n" {
		t.Fatalf("job file %s: %q, %v", p, b, err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(p), "w"), []byte("x"), 0o600); err == nil {
		t.Error("the job file's file system is writable: want read only")
	}
	release()
	if _, err := os.Stat(p); err == nil {
		t.Error("still mounted after release")
	}
	if _, _, err := FindJobFile(context.Background(), root, "LABEL="+label+":/jobs/other.job"); err == nil || !strings.Contains(err.Error(), "not found on ") || !strings.Contains(err.Error(), filepath.Base(loop)+" (ext4)") {
		t.Errorf("missing file: %v", err)
	}
	if _, _, err := FindJobFile(context.Background(), root, "LABEL=NO-SUCH-LABEL:/x.job"); err == nil || !strings.Contains(err.Error(), "no file system LABEL=NO-SUCH-LABEL") {
		t.Errorf("missing label: %v", err)
	}
}

func FuzzParseJobFile(f *testing.F) {
	f.Add("backup --from serial:S1 --repo 'smb://a b' \\\n --tag \"x\\\"y\" # c\n")
	f.Add("a\\\nb 'c\nd' \"e\nf\"")
	f.Fuzz(func(t *testing.T, s string) {
		cmds, err := ParseJobFile(s)
		if err != nil {
			return
		}
		for _, c := range cmds {
			if len(c) == 0 {
				t.Fatalf("empty command from %q", s)
			}
		}
	})
}

func TestMachineName(t *testing.T) {
	root := t.TempDir()
	if got := machineName(root, ""); got != "lifeboat" {
		t.Errorf("no DMI: %q", got)
	}
	write(t, filepath.Join(root, "sys", "class", "dmi", "id", "product_uuid"), "4C4C4544-0042-3510-8051-B4C04F4B4D32\n")
	if got := machineName(root, ""); got != "lifeboat-4c4c4544" {
		t.Errorf("DMI uuid: %q", got)
	}
	write(t, filepath.Join(root, "sys", "class", "dmi", "id", "product_uuid"), "00000000-0000-0000-0000-000000000000\n")
	if got := machineName(root, ""); got != "lifeboat" {
		t.Errorf("all-zero uuid: %q", got)
	}
	if got := machineName(root, "pc-7"); got != "pc-7" {
		t.Errorf("from the command line: %q", got)
	}
	for _, bad := range []string{"lifeboat.hostname=-x", "lifeboat.hostname=a.b", "lifeboat.hostname=" + strings.Repeat("a", 64)} {
		if _, err := ParseCmdline(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if b, err := ParseCmdline("lifeboat.hostname=office-pc-12"); err != nil || b.Hostname != "office-pc-12" {
		t.Errorf("hostname: %+v %v", b, err)
	}
}

func TestConsoleUIs(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "proc", "cmdline"), "console=tty0 console=ttyS0,115200 lifeboat.term=xterm\n")
	write(t, filepath.Join(root, "proc", "consoles"), "ttyS0                -W- (EC p a)    4:64\ntty0                 -WU (E  p  )    4:1\n")
	got := ConsoleUIs(root)
	want := []ConsoleUI{{filepath.Join(root, "dev", "ttyS0"), "xterm"}, {filepath.Join(root, "dev", "tty1"), "linux"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ConsoleUIs = %+v, want %+v", got, want)
	}
	os.Remove(filepath.Join(root, "proc", "consoles"))
	write(t, filepath.Join(root, "proc", "cmdline"), "console=ttyS1\n")
	if got := ConsoleUIs(root); len(got) != 1 || got[0].TTY != filepath.Join(root, "dev", "ttyS1") || got[0].Term != DefaultSerialTerm {
		t.Fatalf("from console=: %+v", got)
	}
}
