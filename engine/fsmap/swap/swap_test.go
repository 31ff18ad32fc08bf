package swap

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	p, err := testenv.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(p, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func makeImage(t *testing.T, name string, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func blkid(t *testing.T, img string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, l := range strings.Split(run(t, "blkid", "-p", "-o", "export", img), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

func detect(t *testing.T, img string) fsmap.FS {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := Detect(context.Background(), bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	return fsys
}

// TestHeaderCopy checks the claim of the package: copying only the used
// map into a zeroed volume gives a swap area that blkid and swaplabel see
// with the same identity as the original.
func TestHeaderCopy(t *testing.T) {
	testenv.RequireTools(t, "mkswap", "swaplabel", "blkid")
	const uuid = "0b7f5a4e-93c2-4d1e-8a6b-2f1c9e3d7a55"
	for _, ps := range []int64{4096, 16384, 65536} {
		size := int64(32 << 20)
		img := makeImage(t, "swap.img", size)
		run(t, "mkswap", "-p", strconv.FormatInt(ps, 10), "-L", "swaplbl", "-U", uuid, img)
		fsys := detect(t, img)
		info := fsys.Info()
		bk := blkid(t, img)
		if info.Type != "swap" || bk["TYPE"] != "swap" || info.UUID != uuid || bk["UUID"] != uuid || info.Label != "swaplbl" || bk["LABEL"] != "swaplbl" {
			t.Errorf("page %d: info %+v, blkid %v", ps, info, bk)
		}
		if info.Size != size || info.BlockSize != ps {
			t.Errorf("page %d: Size %d BlockSize %d", ps, info.Size, info.BlockSize)
		}
		ext, err := fsys.UsedExtents(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ext, []fsmap.Extent{{Off: 0, Len: ps}}) || info.Used != ps {
			t.Errorf("page %d: extents %v, Used %d", ps, ext, info.Used)
		}
		orig, _ := os.ReadFile(img)
		cp := makeImage(t, "copy.img", size)
		f, _ := os.OpenFile(cp, os.O_WRONLY, 0)
		f.WriteAt(orig[:ext[0].Len], 0)
		f.Close()
		if got := blkid(t, cp); got["UUID"] != uuid || got["LABEL"] != "swaplbl" || got["TYPE"] != "swap" {
			t.Errorf("page %d: copy blkid %v", ps, got)
		}
		sl := run(t, "swaplabel", cp)
		if !strings.Contains(sl, "LABEL: swaplbl") || !strings.Contains(sl, "UUID:  "+uuid) {
			t.Errorf("page %d: swaplabel on the copy:\n%s", ps, sl)
		}
	}
}

func TestClampAndNoIdentity(t *testing.T) {
	testenv.RequireTools(t, "mkswap")
	img := makeImage(t, "swap.img", 16<<20)
	run(t, "mkswap", "-p", "4096", img)
	// The volume shrank under the header: Size follows the volume.
	b, _ := os.ReadFile(img)
	b = b[:8<<20]
	fsys, err := Detect(context.Background(), bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if info := fsys.Info(); info.Size != 8<<20 || info.Label != "" || info.UUID == "" {
		t.Errorf("clamped: %+v", info)
	}
	// No UUID at all: blkid shows none, nor do we.
	copy(b[1036:1052], make([]byte, 16))
	fsys, _ = Detect(context.Background(), bytes.NewReader(b), int64(len(b)))
	if fsys.Info().UUID != "" {
		t.Errorf("zero UUID shown as %q", fsys.Info().UUID)
	}
}

func TestHibernation(t *testing.T) {
	testenv.RequireTools(t, "mkswap", "blkid")
	img := makeImage(t, "swap.img", 8<<20)
	run(t, "mkswap", "-p", "4096", "-L", "hib", img)
	b, _ := os.ReadFile(img)
	copy(b[4096-10:], "S1SUSPEND\x00")
	os.WriteFile(img, b, 0o644)
	if got := blkid(t, img)["TYPE"]; got != "swsuspend" {
		t.Fatalf("blkid TYPE %q, want swsuspend (fixture)", got)
	}
	fsys := detect(t, img)
	ext, _ := fsys.UsedExtents(context.Background())
	if info := fsys.Info(); info.Variant != "swsuspend" || len(info.Warnings) != 1 || info.Label != "hib" ||
		!reflect.DeepEqual(ext, []fsmap.Extent{{Off: 0, Len: 8 << 20}}) {
		t.Errorf("hibernation: %+v, extents %v", info, ext)
	}
}

func TestNotDetected(t *testing.T) {
	for name, b := range map[string][]byte{
		"zeros":       make([]byte, 1<<20),
		"tiny":        make([]byte, 100),
		"sig too far": append(make([]byte, 128<<10), "SWAPSPACE2"...),
	} {
		if _, err := Detect(context.Background(), bytes.NewReader(b), int64(len(b))); !errors.Is(err, fsmap.ErrNotDetected) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	bad := make([]byte, 1<<20)
	copy(bad[4086:], "SWAPSPACE2")
	bad[1024] = 7 // version 7
	if _, err := Detect(context.Background(), bytes.NewReader(bad), int64(len(bad))); err == nil || errors.Is(err, fsmap.ErrNotDetected) {
		t.Errorf("bad version: err = %v", err)
	}
}

func FuzzDetect(f *testing.F) {
	if p, err := testenv.LookPath("mkswap"); err == nil {
		img := filepath.Join(f.TempDir(), "seed")
		os.WriteFile(img, nil, 0o644)
		os.Truncate(img, 1<<20)
		if exec.Command(p, "-L", "seed", img).Run() == nil {
			b, _ := os.ReadFile(img)
			f.Add(b[:8192])
		}
	}
	v0 := make([]byte, 4096)
	copy(v0[4086:], "SWAP-SPACE")
	f.Add(v0)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, size := range []int64{int64(len(data)), int64(len(data)) * 64} {
			fsys, err := Detect(context.Background(), bytes.NewReader(data), size)
			if err != nil {
				continue
			}
			ext, err := fsys.UsedExtents(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			info := fsys.Info()
			if info.Size > size || info.Size <= 0 || fsmap.Total(ext) != info.Used || ext[0].End() > info.Size {
				t.Fatalf("info %+v extents %v for size %d", info, ext, size)
			}
		}
	})
}
