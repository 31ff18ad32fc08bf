package blockdev

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

func tempDisk(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadOnlyRefusesWrites(t *testing.T) {
	p := tempDisk(t, 1<<20)
	d, err := Open(context.Background(), p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Size() != 1<<20 || d.SectorSize() != 512 || d.IsBlockDevice() {
		t.Fatalf("size %d sector %d block %v", d.Size(), d.SectorSize(), d.IsBlockDevice())
	}
	if _, err := d.WriteAt([]byte{1}, 0); err == nil {
		t.Fatal("a read-only disk accepted a write")
	}
	if _, err := d.Discard(0, 4096); err == nil {
		t.Fatal("a read-only disk accepted a discard")
	}
	buf := make([]byte, 100)
	if n, err := d.ReadAt(buf, 1<<20-50); n != 50 || err != io.EOF {
		t.Fatalf("read across the end: %d %v", n, err)
	}
}

func TestWriteBounds(t *testing.T) {
	p := tempDisk(t, 1<<20)
	d, err := Open(context.Background(), p, Options{Mode: ReadWrite, SectorSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.SectorSize() != 4096 {
		t.Errorf("sector size %d", d.SectorSize())
	}
	if _, err := d.WriteAt(make([]byte, 10), 1<<20-5); err == nil {
		t.Fatal("a write past the end of an image was accepted (the file would grow)")
	}
	if st, _ := os.Stat(p); st.Size() != 1<<20 {
		t.Fatalf("file grew to %d", st.Size())
	}
}

func TestWindow(t *testing.T) {
	p := tempDisk(t, 1<<20)
	d, err := Open(context.Background(), p, Options{Mode: ReadWrite})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	w := Sub(d, 4096, 8192)
	got := make([]byte, 16)
	if _, err := w.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 16)
	d.ReadAt(want, 4096)
	if !bytes.Equal(got, want) {
		t.Error("window reads the wrong bytes")
	}
	if _, err := w.WriteAt(make([]byte, 2), 8191); err == nil {
		t.Error("a write across the window's end was accepted")
	}
	if _, err := w.WriteAt([]byte{0xAA}, 8191); err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	d.ReadAt(one, 4096+8191)
	if one[0] != 0xAA {
		t.Error("window write landed elsewhere")
	}
	if n, err := w.ReadAt(make([]byte, 10), 8190); n != 2 || err != io.EOF {
		t.Errorf("read across the window's end: %d %v", n, err)
	}
}

func TestDiscardFileReadsZeros(t *testing.T) {
	p := tempDisk(t, 1<<20)
	d, err := Open(context.Background(), p, Options{Mode: ReadWrite})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	zero, err := d.Discard(64<<10, 128<<10)
	if err != nil {
		t.Fatal(err)
	}
	if !zero {
		t.Error("a punched hole should read back zeros")
	}
	b := make([]byte, 128<<10)
	d.ReadAt(b, 64<<10)
	if !bytes.Equal(b, make([]byte, len(b))) {
		t.Error("discarded range is not zero")
	}
	// The bytes on either side keep their pattern.
	for _, off := range []int64{64<<10 - 1, 192 << 10} {
		edge := make([]byte, 1)
		d.ReadAt(edge, off)
		if want := byte(off*7 + 3); edge[0] != want {
			t.Errorf("byte %d is %#x after discard, want %#x", off, edge[0], want)
		}
	}
}

func TestLoopWithOffset(t *testing.T) {
	testenv.RequireRoot(t)
	p := tempDisk(t, 4<<20)
	l, err := AttachLoop(context.Background(), p, 1<<20, 2<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := Open(context.Background(), l.Path, Options{})
	if err != nil {
		l.Detach()
		t.Fatal(err)
	}
	if dev.Size() != 2<<20 || !dev.IsBlockDevice() {
		t.Errorf("loop size %d block %v", dev.Size(), dev.IsBlockDevice())
	}
	got := make([]byte, 4096)
	dev.ReadAt(got, 0)
	dev.Close()
	if err := l.Detach(); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 4096)
	f, _ := os.Open(p)
	f.ReadAt(want, 1<<20)
	f.Close()
	if !bytes.Equal(got, want) {
		t.Error("loop device does not start at its offset")
	}
}
