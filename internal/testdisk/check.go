package testdisk

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/engine/blockdev"
	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/ptable"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

// EmptyFile creates (or truncates) path as a sparse file of size bytes.
func EmptyFile(t testing.TB, path string, size int64) string {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	return path
}

// ReadRange returns n bytes at off of the file at path.
func ReadRange(t testing.TB, path string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("read %d bytes at %d of %s: %v", n, off, path, err)
	}
	return b
}

// Run runs a tool (found in the sbin directories too) and returns its
// trimmed output, failing the test when it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	p, err := testenv.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(p, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// ReadTable reads the partition table of a disk or image file.
func ReadTable(t testing.TB, path string) *ptable.Table {
	t.Helper()
	d, err := blockdev.Open(context.Background(), path, blockdev.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tbl, err := ptable.Read(context.Background(), d, d.Size(), d.SectorSize())
	if err != nil {
		t.Fatalf("read the partition table of %s: %v", path, err)
	}
	return tbl
}

// CheckCopy checks a copy of the fixture on target (a clone or a restore),
// each partition found by its number in target's table: raw and empty
// partitions hold the same bytes; file systems pass their fsck and give
// back every file of the fixture's source tree. It returns the table.
func CheckCopy(t testing.TB, fx *Fixture, target string) *ptable.Table {
	t.Helper()
	tbl := ReadTable(t, target)
	for _, part := range fx.Parts {
		tp, ok := tbl.Find(part.Number)
		if !ok {
			t.Fatalf("%s has no partition %d", target, part.Number)
		}
		if part.FS == "raw" || part.FS == "none" {
			if !bytes.Equal(ReadRange(t, fx.Path, part.Start, part.Size), ReadRange(t, target, tp.Start, part.Size)) {
				t.Errorf("partition %d (%s): content differs", part.Number, part.FS)
			}
			continue
		}
		Fsck(t, target, tp.Start, tp.Size, part.FS)
		if part.SrcDir != "" {
			got := filepath.Join(t.TempDir(), "got")
			on := part
			on.Start, on.Size = tp.Start, tp.Size
			Extract(t, target, on, got)
			CompareTrees(t, part.SrcDir, got)
		}
	}
	return tbl
}

// Inspect describes a disk or image file as the commands see it.
func Inspect(t testing.TB, path string) *disks.Disk {
	t.Helper()
	d, err := disks.Inspect(context.Background(), path, disks.Options{})
	if err != nil {
		t.Fatalf("inspect %s: %v", path, err)
	}
	return d
}
