package disks

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// TestImageInUseThroughLoops attaches an image to one loop device as a
// whole and mounts its ext4 partition through a second loop device with an
// offset, then checks that the image's InUse names both.
func TestImageInUseThroughLoops(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "losetup", "mount", "umount")
	dir := t.TempDir()
	img := makeImage(t, dir)
	losetup, _ := testenv.LookPath("losetup")
	attach := func(args ...string) string {
		out, err := exec.Command(losetup, append([]string{"-f", "--show"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("losetup %v: %v\n%s", args, err, out)
		}
		dev := strings.TrimSpace(string(out))
		t.Cleanup(func() {
			if out, err := exec.Command(losetup, "-d", dev).CombinedOutput(); err != nil {
				t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
			}
		})
		return dev
	}
	whole := attach(img)
	part := attach("-o", fmt.Sprint(1*mib), "--sizelimit", fmt.Sprint(8*mib), img)
	mnt := filepath.Join(dir, "mnt")
	runTool(t, "mkdir", mnt)
	runTool(t, "mount", "-o", "ro", part, mnt)
	t.Cleanup(func() {
		umount, _ := testenv.LookPath("umount")
		if out, err := exec.Command(umount, mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})

	ctx := context.Background()
	list, err := Scan(ctx, Options{Files: []string{img}})
	if err != nil {
		t.Fatal(err)
	}
	d := list[len(list)-1]
	if !d.IsFile || d.Path != img {
		t.Fatalf("last disk = %+v", d)
	}
	inUse := d.InUse()
	want := []string{
		fmt.Sprintf("image file is attached to %s at offset %d, which is mounted on %s", part, 1*mib, mnt),
		fmt.Sprintf("image file is attached to %s", whole),
	}
	for _, w := range want {
		if !contains(inUse, w) {
			t.Errorf("InUse = %q, want %q", inUse, w)
		}
	}
	if len(inUse) != 2 {
		t.Errorf("InUse = %q, want 2 reasons", inUse)
	}
	if p := d.Partitions[0]; !contains(p.Mounts, mnt) {
		t.Errorf("partition 1 mounts = %q, want %s", p.Mounts, mnt)
	}
	if p := d.Partitions[1]; len(p.Mounts) != 0 {
		t.Errorf("partition 2 mounts = %q, want none", p.Mounts)
	}

	// The loop devices are disks of their own: the partition loop holds a
	// bare ext4 file system, mounted.
	ld, err := Inspect(ctx, part, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ld.Transport != "loop" || ld.BackingFile != img || ld.Table != "none" || len(ld.Partitions) != 1 || ld.Partitions[0].FS != "ext4" {
		t.Errorf("Inspect(%s) = %+v", part, ld)
	}
	if got := ld.InUse(); len(got) != 1 || got[0] != part+" is mounted on "+mnt {
		t.Errorf("Inspect(%s).InUse = %q", part, got)
	}
	rd, err := Resolve(ctx, whole, list)
	if err != nil {
		t.Fatal(err)
	}
	if rd.Name != filepath.Base(whole) || rd.Table != "gpt" {
		t.Errorf("Resolve(%s) = %+v", whole, rd)
	}
}
