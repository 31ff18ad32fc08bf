package probe

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// TestDetectEach makes each file system with its own mkfs and checks that
// probe names it, and that content nothing recognises is copied raw.
func TestDetectEach(t *testing.T) {
	cases := []struct {
		tool string
		args []string
		want string
		raw  bool
	}{
		{"mkfs.ext4", []string{"-q", "-F"}, "ext4", false},
		{"mkfs.ext2", []string{"-q", "-F"}, "ext2", false},
		{"mkfs.fat", []string{"-F", "32"}, "vfat", false},
		{"mkfs.fat", []string{"-F", "16"}, "vfat", false},
		{"mkntfs", []string{"-q", "-F", "-Q"}, "ntfs", false},
		{"mkfs.exfat", nil, "exfat", false},
		{"mkswap", nil, "swap", false},
		{"mkfs.xfs", []string{"-q", "-f"}, "xfs", true},
		{"mkfs.btrfs", []string{"-q", "-f"}, "btrfs", true},
		{"", nil, "unknown", true},
	}
	for _, c := range cases {
		name := c.want
		if c.tool != "" {
			name = c.tool + " " + c.want
		}
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "vol.img")
			size := int64(320 << 20) // XFS wants 300 MiB
			if err := os.WriteFile(path, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, size); err != nil {
				t.Fatal(err)
			}
			if c.tool != "" {
				testenv.RequireTools(t, c.tool)
				tool, _ := testenv.LookPath(c.tool)
				if out, err := exec.Command(tool, append(c.args, path)...).CombinedOutput(); err != nil {
					t.Fatalf("%s: %v\n%s", c.tool, err, out)
				}
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fs, err := Detect(context.Background(), f, size)
			if err != nil {
				t.Fatal(err)
			}
			info := fs.Info()
			if info.Type != c.want || info.Raw != c.raw {
				t.Fatalf("detected %s (raw %v), want %s (raw %v)", info.Type, info.Raw, c.want, c.raw)
			}
			ext, err := fs.UsedExtents(context.Background())
			if err != nil || len(ext) == 0 {
				t.Fatalf("used extents: %v %v", ext, err)
			}
			if c.raw && (ext[0].Off != 0 || ext[0].Len != size) {
				t.Errorf("raw content must be mapped whole: %v", ext)
			}
			if g := Grower(info.Type); (g != nil) == c.raw {
				t.Errorf("grower for %s: %v", info.Type, g != nil)
			}
		})
	}
}
