package ptable

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// memDisk is a disk in memory for tests that need no files.
type memDisk []byte

func (m memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(m)) {
		return 0, io.EOF
	}
	n := copy(p, m[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m memDisk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, fmt.Errorf("write past the end of a %d-byte disk", len(m))
	}
	return copy(m[off:], p), nil
}

// tool runs a program found with testenv.LookPath and returns its stdout;
// the test fails if it exits non-zero.
func tool(t testing.TB, stdin string, name string, args ...string) string {
	t.Helper()
	out, err := toolErr(stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

func toolErr(stdin string, name string, args ...string) (string, error) {
	p, err := testenv.LookPath(name)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(p, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s%s", err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

// newImage creates a zero-filled sparse image file of size bytes.
func newImage(t testing.TB, name string, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// readImage reads the table of an image file with our code.
func readImage(t testing.TB, path string, ss int) *Table {
	t.Helper()
	tab, err := readImageErr(path, ss)
	if err != nil {
		t.Fatalf("Read %s: %v", path, err)
	}
	return tab
}

func readImageErr(path string, ss int) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return Read(context.Background(), f, st.Size(), ss)
}

// writeImage writes tab to path (a file of size bytes, created if missing).
func writeImage(t testing.TB, tab *Table, path string, size int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := tab.Write(context.Background(), f, size); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

// sfTable is sfdisk --json output.
type sfTable struct {
	Label      string   `json:"label"`
	ID         string   `json:"id"`
	FirstLBA   uint64   `json:"firstlba"`
	LastLBA    uint64   `json:"lastlba"`
	SectorSize int      `json:"sectorsize"`
	Partitions []sfPart `json:"partitions"`
}

type sfPart struct {
	Node     string `json:"node"`
	Start    int64  `json:"start"`
	Size     int64  `json:"size"`
	Type     string `json:"type"`
	UUID     string `json:"uuid"`
	Name     string `json:"name"`
	Attrs    string `json:"attrs"`
	Bootable bool   `json:"bootable"`
}

// number returns the partition number from the node name ("x.img5" → 5).
func (p sfPart) number(t testing.TB) int {
	i := len(p.Node)
	for i > 0 && p.Node[i-1] >= '0' && p.Node[i-1] <= '9' {
		i--
	}
	n, err := strconv.Atoi(p.Node[i:])
	if err != nil {
		t.Fatalf("partition node %q has no number", p.Node)
	}
	return n
}

func sfdiskJSON(t testing.TB, path string) sfTable {
	t.Helper()
	out := tool(t, "", "sfdisk", "--json", path)
	// sfdisk may print notes ("omitting empty partition") before the JSON.
	if i := strings.IndexByte(out, '{'); i > 0 {
		out = out[i:]
	}
	var v struct {
		PT sfTable `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("parse sfdisk --json: %v\n%s", err, out)
	}
	return v.PT
}

// sfAttrs turns sfdisk's attribute words into bits.
func sfAttrs(t testing.TB, s string) uint64 {
	var a uint64
	for _, w := range strings.Fields(s) {
		switch {
		case w == "RequiredPartition":
			a |= 1
		case w == "NoBlockIOProtocol":
			a |= 2
		case w == "LegacyBIOSBootable":
			a |= 4
		case strings.HasPrefix(w, "GUID:"):
			for _, b := range strings.Split(strings.TrimPrefix(w, "GUID:"), ",") {
				n, err := strconv.Atoi(b)
				if err != nil {
					t.Fatalf("sfdisk attribute %q", w)
				}
				a |= 1 << uint(n)
			}
		default:
			t.Fatalf("unknown sfdisk attribute %q", w)
		}
	}
	return a
}

// compareWithSfdisk checks that our table and sfdisk's view of the same
// image agree on everything both report.
func compareWithSfdisk(t testing.TB, tab *Table, sf sfTable) {
	t.Helper()
	ss := int64(sf.SectorSize)
	if tab.SectorSize != sf.SectorSize {
		t.Fatalf("sector size %d, sfdisk %d", tab.SectorSize, sf.SectorSize)
	}
	switch sf.Label {
	case "gpt":
		if tab.Kind != GPT {
			t.Fatalf("kind %q, sfdisk says gpt", tab.Kind)
		}
		if tab.DiskGUID != sf.ID || tab.FirstUsableLBA != sf.FirstLBA || tab.LastUsableLBA != sf.LastLBA {
			t.Fatalf("disk GUID/first/last %s %d %d, sfdisk %s %d %d", tab.DiskGUID, tab.FirstUsableLBA, tab.LastUsableLBA, sf.ID, sf.FirstLBA, sf.LastLBA)
		}
	case "dos":
		if tab.Kind != MBR {
			t.Fatalf("kind %q, sfdisk says dos", tab.Kind)
		}
		if got := fmt.Sprintf("0x%08x", tab.DiskSignature); got != sf.ID {
			t.Fatalf("disk signature %s, sfdisk %s", got, sf.ID)
		}
	default:
		t.Fatalf("sfdisk label %q", sf.Label)
	}
	n := len(tab.Partitions)
	if tab.Extended != nil {
		n++
	}
	if n != len(sf.Partitions) {
		t.Fatalf("%d partitions (extended included), sfdisk %d", n, len(sf.Partitions))
	}
	for _, sp := range sf.Partitions {
		num := sp.number(t)
		var p *Partition
		if tab.Extended != nil && tab.Extended.Number == num {
			p = tab.Extended
		} else if q, ok := tab.Find(num); ok {
			p = q
		} else {
			t.Fatalf("sfdisk partition %d missing", num)
		}
		if p.Start != sp.Start*ss || p.Size != sp.Size*ss {
			t.Errorf("partition %d: bytes %d+%d, sfdisk %d+%d", num, p.Start, p.Size, sp.Start*ss, sp.Size*ss)
		}
		if sf.Label == "gpt" {
			if p.Type != sp.Type || p.GUID != sp.UUID || p.Name != sp.Name || p.Attributes != sfAttrs(t, sp.Attrs) {
				t.Errorf("partition %d: type %s guid %s name %q attrs %#x; sfdisk %s %s %q %q", num, p.Type, p.GUID, p.Name, p.Attributes, sp.Type, sp.UUID, sp.Name, sp.Attrs)
			}
		} else {
			if want := fmt.Sprintf("0x%02s", sp.Type); p.Type != want || p.Bootable != sp.Bootable {
				t.Errorf("partition %d: type %s bootable %v; sfdisk %s %v", num, p.Type, p.Bootable, want, sp.Bootable)
			}
			if p.Logical != (num >= 5) {
				t.Errorf("partition %d: logical %v", num, p.Logical)
			}
		}
	}
}

const mib = 1 << 20

// makeGPTImage builds a 128 MiB GPT image with sgdisk: BIOS boot, ESP, a
// Linux partition with a UTF-8 name and attributes, and entry 5 (entry 4
// left empty) filling the rest.
func makeGPTImage(t testing.TB) string {
	t.Helper()
	testenv.RequireTools(t, "sgdisk", "sfdisk")
	p := newImage(t, "gpt.img", 128*mib)
	tool(t, "", "sgdisk", "-o",
		"-n", "1:2048:+1M", "-t", "1:EF02", "-c", "1:bios",
		"-n", "2:0:+32M", "-t", "2:EF00", "-c", "2:EFI system",
		"-n", "3:0:+64M", "-t", "3:8300", "-c", "3:root ünï ☃", "-A", "3:set:2", "-A", "3:set:60",
		"-n", "5:0:0", "-t", "5:0700",
		p)
	return p
}

// makeMBRImage builds a 128 MiB MBR image with sfdisk: a bootable FAT32
// primary, a Linux primary, and an extended partition with three logicals.
func makeMBRImage(t testing.TB) string {
	t.Helper()
	testenv.RequireTools(t, "sfdisk")
	p := newImage(t, "mbr.img", 128*mib)
	tool(t, "label: dos\nlabel-id: 0x12345678\nstart=2048, size=16M, type=c, bootable\nsize=32M, type=83\ntype=5\nsize=8M, type=83\nsize=8M, type=82\ntype=7\n",
		"sfdisk", "--no-reread", "--no-tell-kernel", p)
	return p
}

// sfdiskDump returns sfdisk -d output with device names made neutral, for
// comparing two images' tables.
func sfdiskDump(t testing.TB, path string) string {
	t.Helper()
	out := tool(t, "", "sfdisk", "-d", path)
	return strings.ReplaceAll(out, path, "DEV")
}

// copyImage copies an image file, keeping it sparse.
func copyImage(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy.img")
	tool(t, "", "cp", "--sparse=always", src, dst)
	return dst
}

// flipByte inverts some bits of the byte at off in the file at path.
func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
