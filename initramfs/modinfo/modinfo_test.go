package modinfo

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// hostModule returns the path of a module of the newest kernel under
// /lib/modules that has it, and that kernel's release.
func hostModule(t *testing.T, name string) (release, file string) {
	t.Helper()
	matches, _ := filepath.Glob("/lib/modules/*/kernel/drivers/net/ethernet/realtek/" + name + ".ko*")
	if len(matches) == 0 {
		testenv.Skip(t, "needs a Debian kernel's modules (apt-get install linux-image-amd64)")
	}
	file = matches[len(matches)-1]
	rel, _ := filepath.Rel("/lib/modules", file)
	return strings.SplitN(rel, string(filepath.Separator), 2)[0], file
}

// TestFileValuesAgreesWithModinfo reads r8169's firmware names (the
// Realtek NICs' rtl_nic files) from the module as it is and compressed
// three ways, and checks them against modinfo's.
func TestFileValuesAgreesWithModinfo(t *testing.T) {
	testenv.RequireTools(t, "modinfo")
	release, file := hostModule(t, "r8169")
	out, err := exec.Command("modinfo", "-k", release, "-F", "firmware", file).Output()
	if err != nil {
		t.Fatalf("modinfo: %v", err)
	}
	want := strings.Fields(string(out))
	if len(want) == 0 {
		t.Fatalf("modinfo names no firmware for %s", file)
	}
	got, err := FileValues(file, "firmware")
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("FileValues(%s) = %q, %v; modinfo says %q", file, got, err, want)
	}
	if lic, err := FileValues(file, "license"); err != nil || !slices.Equal(lic, []string{"GPL"}) {
		t.Errorf("license = %q, %v; want GPL", lic, err)
	}
	if none, err := FileValues(file, "no_such_key"); err != nil || len(none) != 0 {
		t.Errorf("no_such_key = %q, %v; want none", none, err)
	}

	raw, err := readModule(file)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for suffix, compress := range map[string]func(io.Writer) (io.WriteCloser, error){
		".xz":  func(w io.Writer) (io.WriteCloser, error) { return xz.WriterConfig{CheckSum: xz.CRC32}.NewWriter(w) },
		".zst": func(w io.Writer) (io.WriteCloser, error) { return zstd.NewWriter(w) },
		".gz":  func(w io.Writer) (io.WriteCloser, error) { return gzip.NewWriter(w), nil },
	} {
		var buf bytes.Buffer
		w, err := compress(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(raw); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "r8169.ko"+suffix)
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := FileValues(p, "firmware"); err != nil || !slices.Equal(got, want) {
			t.Errorf("FileValues(%s) = %q, %v; want %q", p, got, err, want)
		}
	}
	if _, err := FileValues("/etc/hostname", "firmware"); err == nil {
		t.Error("FileValues accepted a file that is not ELF")
	}
}

// readModule returns the module's ELF bytes, whatever the host compresses
// its modules with (Debian 12: none, later releases: xz).
func readModule(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(file, ".xz"):
		if r, err = xz.NewReader(f); err != nil {
			return nil, err
		}
	case strings.HasSuffix(file, ".zst"):
		zr, err := zstd.NewReader(f)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	}
	return io.ReadAll(r)
}

// tinyModule builds the smallest ELF64 relocatable object that carries a
// section named name (.modinfo) holding data, as a module's would: the
// fuzzer mutates its few hundred bytes much faster than a real module's
// thousands.
func tinyModule(name string, data []byte, size uint64) []byte {
	le := binary.LittleEndian
	shstr := []byte("\x00" + name + "\x00.shstrtab\x00")
	dataOff := uint64(64)
	strOff := dataOff + uint64(len(data))
	shOff := (strOff + uint64(len(shstr)) + 7) &^ 7
	b := make([]byte, shOff+3*64)
	copy(b, "\x7fELF\x02\x01\x01")
	le.PutUint16(b[16:], uint16(elf.ET_REL))
	le.PutUint16(b[18:], uint16(elf.EM_X86_64))
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[40:], shOff)
	le.PutUint16(b[52:], 64) // ehsize
	le.PutUint16(b[58:], 64) // shentsize
	le.PutUint16(b[60:], 3)  // shnum
	le.PutUint16(b[62:], 2)  // shstrndx
	copy(b[dataOff:], data)
	copy(b[strOff:], shstr)
	sh := func(i int, nameOff uint32, typ elf.SectionType, off, size uint64) {
		h := b[shOff+uint64(i)*64:]
		le.PutUint32(h[0:], nameOff)
		le.PutUint32(h[4:], uint32(typ))
		le.PutUint64(h[24:], off)
		le.PutUint64(h[32:], size)
		le.PutUint64(h[48:], 1)
	}
	sh(1, 1, elf.SHT_PROGBITS, dataOff, size)
	sh(2, uint32(2+len(name)), elf.SHT_STRTAB, strOff, uint64(len(shstr)))
	return b
}

func TestValues(t *testing.T) {
	info := []byte("license=GPL\x00firmware=a.fw\x00description=x\x00firmware=\x00firmware=rtl_nic/b.fw\x00")
	got, err := Values(bytes.NewReader(tinyModule(".modinfo", info, uint64(len(info)))), "firmware")
	if err != nil || !slices.Equal(got, []string{"a.fw", "rtl_nic/b.fw"}) {
		t.Errorf("Values = %q, %v; want the two non-empty firmware names", got, err)
	}
	if got, err := Values(bytes.NewReader(tinyModule(".text", info, uint64(len(info)))), "firmware"); err != nil || got != nil {
		t.Errorf("a module without .modinfo gave %q, %v; want nothing", got, err)
	}
	if _, err := Values(bytes.NewReader(tinyModule(".modinfo", info, 2<<20)), "firmware"); err == nil {
		t.Error("a .modinfo section of 2 MiB (past the file's end) was accepted")
	}
	if _, err := Values(bytes.NewReader([]byte("\x7fELF\x02\x01")), "firmware"); err == nil {
		t.Error("a truncated ELF header was accepted")
	}
}

// FuzzValues starts from a tiny module rather than a real one: with
// thousands of bytes per input the fuzzer spends its time minimizing.
func FuzzValues(f *testing.F) {
	info := []byte("license=GPL\x00firmware=a.fw\x00firmware=rtl_nic/b.fw\x00")
	f.Add(tinyModule(".modinfo", info, uint64(len(info))))
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, b []byte) {
		vals, err := Values(bytes.NewReader(b), "firmware")
		if err == nil {
			for _, v := range vals {
				if v == "" {
					t.Error("empty value returned")
				}
			}
		}
	})
}
