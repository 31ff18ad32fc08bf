package initramfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/lifeboat/lifeboat/initramfs/modinfo"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

// fakeBzImage is the part of an x86 boot image KernelVersion reads: the
// setup header's signature and the pointer to the version string.
func fakeBzImage(version string) []byte {
	b := make([]byte, 0x400+len(version)+1)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x20e:], 0x200) // string at 0x400
	copy(b[0x400:], version)
	return b
}

func TestKernelVersion(t *testing.T) {
	b := fakeBzImage("6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP")
	v, err := KernelVersion(bytes.NewReader(b), int64(len(b)))
	if err != nil || v != "6.1.0-56-amd64" {
		t.Errorf("KernelVersion = %q, %v", v, err)
	}
	for name, bad := range map[string][]byte{
		"short":       b[:0x100],
		"no HdrS":     func() []byte { c := slices.Clone(b); copy(c[0x202:], "XXXX"); return c }(),
		"ptr past":    func() []byte { c := slices.Clone(b); binary.LittleEndian.PutUint16(c[0x20e:], 0xff00); return c }(),
		"path in ver": fakeBzImage("../../etc x"),
	} {
		if v, err := KernelVersion(bytes.NewReader(bad), int64(len(bad))); err == nil {
			t.Errorf("%s: KernelVersion = %q, want an error", name, v)
		}
	}
}

func TestKernelVersionOfHostKernel(t *testing.T) {
	k, err := DefaultKernel("/boot")
	if err != nil {
		testenv.Skip(t, "needs a kernel in /boot (apt-get install linux-image-amd64)")
	}
	v, _, err := kernelInfo(k)
	if err != nil {
		t.Fatal(err)
	}
	// Debian names the file after the version the image carries.
	if want := strings.TrimPrefix(filepath.Base(k), "vmlinuz-"); v != want {
		t.Errorf("version %q read from %s, want %q", v, k, want)
	}
	if _, err := os.Stat(filepath.Join("/lib/modules", v, "modules.dep")); err != nil {
		t.Errorf("no modules for %s: %v", v, err)
	}
}

func TestSharedLibs(t *testing.T) {
	testenv.RequireTools(t, "resize2fs")
	p, err := lookTool("resize2fs")
	if err != nil {
		t.Fatal(err)
	}
	libs, err := SharedLibs([]string{p})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range libs {
		names = append(names, filepath.Base(l))
		if st, err := os.Stat(l); err != nil || !st.Mode().IsRegular() {
			t.Errorf("%s is not a file: %v", l, err)
		}
	}
	for _, want := range []string{"libext2fs.so.2", "libcom_err.so.2", "libc.so.6", "ld-linux-x86-64.so.2"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s missing from %q", want, names)
		}
	}
	if _, err := SharedLibs([]string{"/etc/hostname"}); err == nil {
		t.Error("SharedLibs accepted a file that is not ELF")
	}
}

func FuzzKernelVersion(f *testing.F) {
	f.Add(fakeBzImage("6.1.0-56-amd64 (x)"))
	f.Add(fakeBzImage(""))
	if k, err := DefaultKernel("/boot"); err == nil {
		if b, err := os.ReadFile(k); err == nil && len(b) > 0x4000 {
			f.Add(b[:0x4000])
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := KernelVersion(bytes.NewReader(b), int64(len(b)))
		if err == nil && (v == "" || strings.ContainsAny(v, "/ \x00")) {
			t.Errorf("bad version %q accepted", v)
		}
	})
}

func TestStageModulesFromHost(t *testing.T) {
	k, err := DefaultKernel("/boot")
	if err != nil {
		testenv.Skip(t, "needs a kernel in /boot (apt-get install linux-image-amd64)")
	}
	v, _, err := kernelInfo(k)
	if err != nil {
		t.Fatal(err)
	}
	stage := t.TempDir()
	rep := &Report{KernelVersion: v}
	cfg := Config{ModulesRoot: "/", Modules: []string{"ext4", "virtio_blk", "no_such_module"}}
	if err := stageModules(cfg, rep, stage); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Missing, []string{"no_such_module"}) {
		t.Errorf("missing = %q", rep.Missing)
	}
	dir := filepath.Join(stage, "lib", "modules", v)
	for _, m := range rep.Modules {
		if st, err := os.Stat(filepath.Join(dir, m)); err != nil || st.Size() == 0 {
			t.Errorf("module %s not staged: %v", m, err)
		}
	}
	dep, err := os.ReadFile(filepath.Join(dir, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	// Debian's ext4 needs jbd2 and mbcache; virtio_blk needs virtio.
	for _, want := range []string{"jbd2.ko", "mbcache.ko", "virtio.ko", "virtio_ring.ko"} {
		if !strings.Contains(string(dep), want) {
			t.Errorf("modules.dep lacks %s:\n%s", want, dep)
		}
	}
	if strings.Contains(string(dep), "btrfs") {
		t.Errorf("modules.dep holds a module nobody asked for:\n%s", dep)
	}
	load, err := os.ReadFile(filepath.Join(dir, BootList))
	if err != nil || strings.TrimSpace(string(load)) != "ext4" {
		t.Errorf("%s = %q, %v; want only ext4 of the boot modules", BootList, load, err)
	}
}

// hostModule returns the host kernel's release and the path of module name,
// or skips when the host has no Debian kernel with it.
func hostModule(t *testing.T, name string) (release, file string) {
	t.Helper()
	k, err := DefaultKernel("/boot")
	if err != nil {
		testenv.Skip(t, "needs a kernel in /boot (apt-get install linux-image-amd64)")
	}
	v, _, err := kernelInfo(k)
	if err != nil {
		t.Fatal(err)
	}
	dep, err := os.ReadFile(filepath.Join("/lib/modules", v, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(dep), "\n") {
		rel, _, _ := strings.Cut(line, ":")
		if moduleName(rel) == name {
			return v, filepath.Join("/lib/modules", v, rel)
		}
	}
	t.Fatalf("kernel %s has no module %s", v, name)
	return "", ""
}

// TestStageFirmware carries r8169 with firmware directories holding some
// of the files it names: plain, zstd- and xz-compressed, and one in two
// directories, of which the first wins.
func TestStageFirmware(t *testing.T) {
	v, file := hostModule(t, "r8169")
	names, err := modinfo.FileValues(file, "firmware")
	if err != nil || len(names) < 4 {
		t.Fatalf("r8169 names %q, %v; want several firmware files", names, err)
	}
	first, second := t.TempDir(), t.TempDir()
	put := func(dir, name, content string) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{}
	for i, n := range names[:3] {
		want[n] = strings.Repeat("firmware "+n+"\n", 100+i)
	}
	put(first, names[0], want[names[0]])
	put(second, names[0], "the second directory's copy, which the kernel would not read")
	put(second, names[1]+".zst", compress(t, "zst", want[names[1]]))
	put(second, names[2]+".xz", compress(t, "xz", want[names[2]]))

	stage := t.TempDir()
	rep := &Report{KernelVersion: v}
	cfg := Config{ModulesRoot: "/", Modules: []string{"r8169"}, FirmwareDirs: []string{first, second}}
	if err := stageModules(cfg, rep, stage); err != nil {
		t.Fatal(err)
	}
	var size int64
	for n, content := range want {
		b, err := os.ReadFile(filepath.Join(stage, "lib", "firmware", n))
		if err != nil || string(b) != content {
			t.Errorf("firmware %s staged as %q, %v; want the first directory's, decompressed", n, b, err)
		}
		size += int64(len(content))
	}
	if len(rep.Firmware) != 3 || rep.FirmwareBytes != size {
		t.Errorf("report: firmware %q, %d bytes; want the 3 files, %d bytes", rep.Firmware, rep.FirmwareBytes, size)
	}
	if got := rep.FirmwareMissing["r8169"]; !slices.Equal(got, sortedCopy(names[3:])) {
		t.Errorf("missing for r8169 = %q, want %q", got, names[3:])
	}
	var text bytes.Buffer
	rep.WriteText(&text)
	if !strings.Contains(text.String(), fmt.Sprintf("firmware the host lacks: %d files, named by r8169 (%d)", len(names)-3, len(names)-3)) {
		t.Errorf("report text does not count the missing firmware:\n%s", text.String())
	}
}

// compress returns s as the zstd or xz tools would write it; the kernel's
// xz decoder wants CRC32 checks, as kernel builds make them.
func compress(t *testing.T, kind, s string) string {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	var err error
	if kind == "zst" {
		w, err = zstd.NewWriter(&buf)
	} else {
		w, err = xz.WriterConfig{CheckSum: xz.CRC32}.NewWriter(&buf)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func TestValidFirmwareName(t *testing.T) {
	for name, ok := range map[string]bool{
		"rtl_nic/rtl8168h-2.fw": true, "iwlwifi-cc-a0-77.ucode": true,
		"": false, "/etc/shadow": false, "../x": false, "a/../../x": false, "a//b": false, "a/./b": false, "a/": false, "a\x00b": false,
	} {
		if validFirmwareName(name) != ok {
			t.Errorf("validFirmwareName(%q) = %v, want %v", name, !ok, ok)
		}
	}
}
