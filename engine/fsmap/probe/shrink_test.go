package probe

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/lifeboat/lifeboat/engine/cow"
	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/engine/fsmap/swap"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

func TestCanShrink(t *testing.T) {
	for _, typ := range []string{"ext2", "ext3", "ext4", "ntfs", "vfat", "swap"} {
		if ok, why := CanShrink(typ); !ok || why != "" || Shrinker(typ) == nil {
			t.Errorf("CanShrink(%q) = %v, %q; Shrinker nil: %v", typ, ok, why, Shrinker(typ) == nil)
		}
	}
	for typ, want := range map[string]string{
		"xfs":       "XFS cannot shrink",
		"exfat":     "exFAT has no shrinking tool",
		"something": "something has no shrinker",
	} {
		if ok, why := CanShrink(typ); ok || why != want || Shrinker(typ) != nil {
			t.Errorf("CanShrink(%q) = %v, %q; want false, %q", typ, ok, why, want)
		}
	}
	// Every type the raw detector names has its reason.
	for _, typ := range []string{"btrfs", "luks", "bitlocker", "lvm2", "linux_raid_member", "zfs_member", "iso9660", "unknown"} {
		if _, found := cannotShrink[typ]; !found {
			t.Errorf("no reason given for %q", typ)
		}
	}
}

// TestShrinkSwap shrinks a swap area made by mkswap on an overlay: label
// and UUID stay, the size follows, a too small request names the minimum.
func TestShrinkSwap(t *testing.T) {
	testenv.RequireTools(t, "mkswap")
	img := filepath.Join(t.TempDir(), "swap.img")
	const size = 16 << 20
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	p, _ := testenv.LookPath("mkswap")
	if out, err := exec.Command(p, "-L", "shrinkswap", "-U", "0d1e2f30-4a5b-4c6d-8e9f-a0b1c2d3e4f5", img).CombinedOutput(); err != nil {
		t.Fatalf("mkswap: %v: %s", err, out)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	orig := append([]byte(nil), b...)
	ov, err := cow.New(bytes.NewReader(b), size, cow.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ov.Close()
	ctx := context.Background()
	if _, err := Shrinker("swap")(ctx, ov, 4096); !errors.Is(err, fsmap.ErrTooSmall) {
		t.Errorf("shrink swap to one page: %v, want ErrTooSmall", err)
	}
	got, err := Shrinker("swap")(ctx, ov, 5<<20+100)
	if err != nil || got != 5<<20 {
		t.Fatalf("shrink swap: %d, %v", got, err)
	}
	fs, err := swap.Detect(ctx, ov, ov.Size())
	if err != nil {
		t.Fatal(err)
	}
	if info := fs.Info(); info.Size != got || info.Label != "shrinkswap" || info.UUID != "0d1e2f30-4a5b-4c6d-8e9f-a0b1c2d3e4f5" {
		t.Errorf("shrunk swap: %+v", info)
	}
	if !bytes.Equal(b, orig) {
		t.Error("the source bytes changed")
	}
}
