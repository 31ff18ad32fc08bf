package clone

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/engine/ptable"
)

// idChange is one identity the copy gets anew: the old and new spellings
// as they appear in fstab, GRUB and loader entries.
type idChange struct{ old, new string }

// newGUID returns a random (version 4) GUID in canonical uppercase form.
func newGUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// newTableIDs gives the planned table a new disk GUID (or MBR signature)
// and new partition GUIDs, and records them for the references rewritten
// in the copy's Linux roots.
func (p *Plan) newTableIDs(dst *ptable.Table) error {
	if os.Geteuid() != 0 {
		return refuse("--new-ids needs root: the copy's file systems get their new UUIDs through loop devices")
	}
	if dst.Kind == ptable.GPT {
		dst.DiskGUID = newGUID()
		for i := range dst.Partitions {
			old := dst.Partitions[i].GUID
			dst.Partitions[i].GUID = newGUID()
			p.ids = append(p.ids, idChange{old, dst.Partitions[i].GUID})
		}
		p.Fixes = append(p.Fixes, "new disk GUID "+dst.DiskGUID+" and new partition GUIDs")
		return nil
	}
	var b [4]byte
	rand.Read(b[:])
	old := dst.DiskSignature
	dst.DiskSignature = binary.LittleEndian.Uint32(b[:])
	for _, pt := range dst.Partitions {
		p.ids = append(p.ids, idChange{fmt.Sprintf("%08x-%02x", old, pt.Number), fmt.Sprintf("%08x-%02x", dst.DiskSignature, pt.Number)})
	}
	p.Fixes = append(p.Fixes, fmt.Sprintf("new MBR disk signature %08x", dst.DiskSignature))
	return nil
}

// planNewFSIDs chooses a new UUID (or FAT serial) for each file system
// copied and adds the steps that set them and rewrite what names the old
// ones on the target.
func (p *Plan) planNewFSIDs() {
	for i := range p.Items {
		it := &p.Items[i]
		old := it.FS.UUID
		switch {
		case old == "":
			continue
		case it.FS.Type == "ext2" || it.FS.Type == "ext3" || it.FS.Type == "ext4":
			nu := strings.ToLower(newGUID())
			p.ids = append(p.ids, idChange{old, nu})
			it.finish = append(it.finish, func(ctx context.Context, v *volume) error { return setExtUUID(ctx, v, nu) })
			it.Action += ", new UUID " + nu
		case it.FS.Type == "vfat":
			var b [4]byte
			rand.Read(b[:])
			serial := binary.LittleEndian.Uint32(b[:])
			nu := fmt.Sprintf("%04X-%04X", serial>>16, serial&0xffff)
			p.ids = append(p.ids, idChange{old, nu})
			it.finish = append(it.finish, func(ctx context.Context, v *volume) error { return setFATSerial(v, serial) })
			it.Action += ", new serial " + nu
		case it.FS.Type == "swap":
			nu := strings.ToLower(newGUID())
			p.ids = append(p.ids, idChange{old, nu})
			it.finish = append(it.finish, func(ctx context.Context, v *volume) error { return setSwapUUID(v, nu) })
			it.Action += ", new UUID " + nu
		default:
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s: the %s file system keeps its UUID %s (--new-ids changes ext2/3/4, FAT and swap)", volumeName(it.Number), it.FS.Type, old))
		}
	}
	for i := range p.Items {
		it := &p.Items[i]
		switch it.FS.Type {
		case "ext2", "ext3", "ext4":
			it.finish = append(it.finish, p.rewriteExt)
		case "vfat":
			it.finish = append(it.finish, p.rewriteESP)
		}
	}
	p.Fixes = append(p.Fixes, "new file-system UUIDs; fstab, crypttab, GRUB configuration and boot loader entries on the copy name them")
}

func setExtUUID(ctx context.Context, v *volume, uuid string) error {
	dev, release, err := v.DevicePath(ctx)
	if err != nil {
		return err
	}
	defer release()
	// tune2fs rewrites every metadata checksum for a new UUID and wants a
	// freshly checked file system for that.
	if out, err := exec.CommandContext(ctx, "e2fsck", "-f", "-y", dev).CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
			return fmt.Errorf("e2fsck before the new UUID: %w: %s", err, bytes.TrimSpace(out))
		}
	}
	if out, err := exec.CommandContext(ctx, "tune2fs", "-U", uuid, dev).CombinedOutput(); err != nil {
		return fmt.Errorf("tune2fs -U %s: %w: %s", uuid, err, bytes.TrimSpace(out))
	}
	return nil
}

// setFATSerial writes a FAT volume serial into the boot sector and, for
// FAT32, its backup.
func setFATSerial(v *volume, serial uint32) error {
	bs := make([]byte, 512)
	if err := fsmap.ReadFull(v, bs, 0, "FAT boot sector"); err != nil {
		return err
	}
	off := int64(0x27)
	fat32 := binary.LittleEndian.Uint16(bs[0x16:]) == 0
	if fat32 {
		off = 0x43
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], serial)
	if _, err := v.WriteAt(b[:], off); err != nil {
		return fmt.Errorf("write FAT serial: %w", err)
	}
	if backup := int64(binary.LittleEndian.Uint16(bs[0x32:])); fat32 && backup > 0 && backup < 32 {
		sector := int64(binary.LittleEndian.Uint16(bs[0x0b:]))
		if _, err := v.WriteAt(b[:], backup*sector+off); err != nil {
			return fmt.Errorf("write FAT serial in the backup boot sector: %w", err)
		}
	}
	return nil
}

// setSwapUUID writes the UUID field of a Linux swap header (page 0, byte
// 1036).
func setSwapUUID(v *volume, uuid string) error {
	raw, err := parseUUID(uuid)
	if err != nil {
		return err
	}
	if _, err := v.WriteAt(raw, 1024+12); err != nil {
		return fmt.Errorf("write swap UUID: %w", err)
	}
	return nil
}

func parseUUID(s string) ([]byte, error) {
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 {
		return nil, fmt.Errorf("UUID %q: want 32 hex digits", s)
	}
	out := make([]byte, 16)
	for i := range out {
		if _, err := fmt.Sscanf(h[2*i:2*i+2], "%02x", &out[i]); err != nil {
			return nil, fmt.Errorf("UUID %q: %w", s, err)
		}
	}
	return out, nil
}

// replaceIDs rewrites every old identity in b to its new one, in the case
// it was written in.
func (p *Plan) replaceIDs(b []byte) []byte {
	for _, c := range p.ids {
		if c.old == "" {
			continue
		}
		for _, f := range []func(string) string{strings.ToLower, strings.ToUpper} {
			b = bytes.ReplaceAll(b, []byte(f(c.old)), []byte(f(c.new)))
		}
	}
	return b
}

// rewriteExt mounts an ext2/3/4 file system of the target and rewrites the
// files that name disks: fstab, crypttab, GRUB's configuration and boot
// loader entries (in a root and in a separate /boot alike).
func (p *Plan) rewriteExt(ctx context.Context, v *volume) error {
	dev, release, err := v.DevicePath(ctx)
	if err != nil {
		return err
	}
	defer release()
	dir, err := os.MkdirTemp("", "lifeboat-newids-")
	if err != nil {
		return fmt.Errorf("mount point for rewriting identities: %w", err)
	}
	defer os.Remove(dir)
	// mount(2) rather than a mount program: the appliance's is u-root's.
	if err := unix.Mount(dev, dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mount the copy to rewrite its identities: %w", err)
	}
	mounted := true
	defer func() {
		if mounted {
			_ = unix.Unmount(dir, 0)
		}
	}()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open the copy's root: %w", err)
	}
	files := []string{"etc/fstab", "etc/crypttab", "etc/kernel/cmdline", "etc/default/grub", "boot/grub/grub.cfg", "grub/grub.cfg"}
	for _, pat := range []string{"boot/loader/entries/*.conf", "loader/entries/*.conf"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, f := range m {
			rel, _ := filepath.Rel(dir, f)
			files = append(files, rel)
		}
	}
	for _, f := range files {
		b, err := root.ReadFile(f)
		if err != nil {
			continue // absent here
		}
		nb := p.replaceIDs(b)
		if bytes.Equal(b, nb) {
			continue
		}
		if err := root.WriteFile(f, nb, 0o644); err != nil {
			root.Close()
			return fmt.Errorf("rewrite /%s on the copy: %w", f, err)
		}
	}
	root.Close()
	mounted = false
	if err := unix.Unmount(dir, 0); err != nil {
		return fmt.Errorf("unmount the copy: %w", err)
	}
	return nil
}

// rewriteESP rewrites the grub.cfg files on an EFI system partition of the
// target (Debian's \EFI\debian\grub.cfg finds the root by UUID).
func (p *Plan) rewriteESP(ctx context.Context, v *volume) error {
	dev, release, err := v.DevicePath(ctx)
	if err != nil {
		return err
	}
	defer release()
	env := append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	mdir := exec.CommandContext(ctx, "mdir", "-/", "-b", "-i", dev, "::/EFI")
	mdir.Env = env // as for mcopy below: else a geometry check hides \EFI
	list, err := mdir.Output()
	if err != nil {
		return nil // no \EFI: nothing names a disk here
	}
	tmp, err := os.MkdirTemp("", "lifeboat-esp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, line := range strings.Split(string(list), "\n") {
		name := strings.TrimSpace(line)
		if !strings.EqualFold(filepath.Base(name), "grub.cfg") {
			continue
		}
		local := filepath.Join(tmp, "grub.cfg")
		os.Remove(local)
		cmd := exec.CommandContext(ctx, "mcopy", "-n", "-i", dev, name, local)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("read %s on the copy: %w: %s", name, err, bytes.TrimSpace(out))
		}
		b, err := os.ReadFile(local)
		if err != nil {
			return err
		}
		nb := p.replaceIDs(b)
		if bytes.Equal(b, nb) {
			continue
		}
		if err := os.WriteFile(local, nb, 0o644); err != nil {
			return err
		}
		cmd = exec.CommandContext(ctx, "mcopy", "-o", "-i", dev, local, name)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("write %s on the copy: %w: %s", name, err, bytes.TrimSpace(out))
		}
	}
	return nil
}
