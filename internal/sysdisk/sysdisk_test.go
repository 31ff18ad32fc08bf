package sysdisk

import (
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// TestBuildBoots boots the fixture itself under SeaBIOS: GRUB from the BIOS
// boot partition, the kernel and initramfs from the root found by UUID, and
// the marker from that root.
func TestBuildBoots(t *testing.T) {
	testenv.RequireRoot(t)
	d := Build(t, t.TempDir(), Options{})
	b := Boot(t, BIOS, d.Path)
	if b.Root != d.RootUUID || b.Fstab != d.RootUUID {
		t.Fatalf("booted root %q, fstab %q; want %q for both", b.Root, b.Fstab, d.RootUUID)
	}
}
