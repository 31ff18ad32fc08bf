// Package sysdisk builds a small bootable Linux system disk from real parts
// for tests: a GPT disk with a data partition, a BIOS boot partition
// holding GRUB's core image (installed by grub-bios-setup), an EFI system
// partition with Debian's signed shim and GRUB (\EFI\debian, no
// \EFI\BOOT fallback loader, as an installed system has), and an ext4 root
// with the host's Debian kernel, a small initramfs of busybox and the
// kernel's own modules that mounts root=UUID=..., /etc/os-release, an
// fstab naming everything by UUID, and /sbin/marker, which prints
// "LIFEBOAT-SYSDISK-BOOTED root=<UUID of the mounted root> fstab=<UUID the
// fstab gives for />" on the serial console and powers off. Options.MBR
// makes the classic BIOS layout instead (MBR table, GRUB's core image in
// the gap after the MBR). Boot starts such disks in QEMU under SeaBIOS or
// OVMF and waits for that line.
package sysdisk

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testenv"
)

// MiB is a mebibyte.
const MiB = 1 << 20

// Marker starts the line the booted system prints.
const Marker = "LIFEBOAT-SYSDISK-BOOTED"

// Partition numbers of the disk Build makes. The data partition comes
// first so that --system, which lays the partitions it takes out from the
// start of the target, moves the BIOS boot partition and GRUB's pointers
// must follow it.
const (
	PartData = 1
	PartBIOS = 2
	PartESP  = 3
	PartRoot = 4
	// MBRPartRoot is the root's number on the disk Options.MBR makes.
	MBRPartRoot = 2
)

// Disk is a system disk made by Build.
type Disk struct {
	Path string
	// Size of the image in bytes.
	Size int64
	// RootUUID, DataUUID (ext4) and ESPSerial (FAT, "ABCD-1234") name the
	// file systems as fstab and GRUB do.
	RootUUID, DataUUID, ESPSerial string
	// Sizes of the partitions by number.
	Sizes map[int]int64
	// Root is the root partition's number.
	Root int
}

// Options change the disk Build makes.
type Options struct {
	// DataSize, RootSize: partition sizes; 32 MiB and 96 MiB when zero.
	DataSize, RootSize int64
	// MBR makes a classic BIOS disk instead: an MBR table with the data
	// partition (1) and the root (2, active), GRUB's core image in the
	// gap after the MBR, and no ESP.
	MBR bool
}

// host parts the fixture is made of, and their Debian packages.
var hostParts = map[string]string{
	"/usr/lib/shim/shimx64.efi.signed":                   "shim-signed",
	"/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed": "grub-efi-amd64-signed",
	"/usr/lib/grub/i386-pc/boot.img":                     "grub-pc-bin",
	"/usr/bin/busybox":                                   "busybox",
	biosSetup:                                            "grub-pc-bin",
}

// biosSetup is where grub-pc-bin keeps grub-bios-setup (off PATH).
const biosSetup = "/usr/lib/grub/i386-pc/grub-bios-setup"

// Build makes dir/system.img. It needs root (grub-bios-setup reads the
// image through GRUB's own disk layer, which is fine as a file, but the
// kernel modules and busybox it copies are read from the host).
func Build(t testing.TB, dir string, opt Options) *Disk {
	t.Helper()
	testenv.RequireTools(t, "sgdisk", "mkfs.ext4", "mkfs.fat", "mmd", "mcopy", "grub-mkimage")
	for p, pkg := range hostParts {
		if _, err := os.Stat(p); err != nil {
			testenv.Skip(t, "needs "+p+" (apt-get install "+pkg+")")
		}
	}
	kernel, modDir := hostKernel(t)
	if opt.DataSize == 0 {
		opt.DataSize = 32 * MiB
	}
	if opt.RootSize == 0 {
		opt.RootSize = 96 * MiB
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("sysdisk: %v", err)
	}
	d := &Disk{Path: filepath.Join(dir, "system.img"), RootUUID: uuid(), DataUUID: uuid(), ESPSerial: serial()}
	d.Sizes = map[int]int64{PartData: opt.DataSize, PartBIOS: MiB, PartESP: 16 * MiB, PartRoot: opt.RootSize}
	d.Size = MiB + opt.DataSize + MiB + 16*MiB + opt.RootSize + MiB
	d.Root = PartRoot
	if opt.MBR {
		d.Root = MBRPartRoot
		d.Sizes = map[int]int64{PartData: opt.DataSize, MBRPartRoot: opt.RootSize}
		d.Size = MiB + opt.DataSize + opt.RootSize
	}
	f, err := os.Create(d.Path)
	if err != nil {
		t.Fatalf("sysdisk: %v", err)
	}
	if err := f.Truncate(d.Size); err != nil {
		t.Fatalf("sysdisk: %v", err)
	}
	f.Close()
	var starts map[int]int64
	if opt.MBR {
		testenv.RequireTools(t, "sfdisk")
		cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", d.Path)
		cmd.Stdin = strings.NewReader(fmt.Sprintf("label: dos\nstart=2048, size=%dKiB, type=83\nsize=%dKiB, type=83, bootable\n", opt.DataSize/1024, opt.RootSize/1024))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sysdisk: sfdisk: %v\n%s", err, out)
		}
		starts = map[int]int64{PartData: MiB, MBRPartRoot: MiB + opt.DataSize}
	} else {
		run(t, "sgdisk", "-a", "2048",
			"-n", fmt.Sprintf("%d:0:+%dK", PartData, opt.DataSize/1024), "-t", fmt.Sprintf("%d:8300", PartData), "-c", fmt.Sprintf("%d:data", PartData),
			"-n", fmt.Sprintf("%d:0:+1M", PartBIOS), "-t", fmt.Sprintf("%d:ef02", PartBIOS), "-c", fmt.Sprintf("%d:bios", PartBIOS),
			"-n", fmt.Sprintf("%d:0:+16M", PartESP), "-t", fmt.Sprintf("%d:ef00", PartESP), "-c", fmt.Sprintf("%d:esp", PartESP),
			"-n", fmt.Sprintf("%d:0:+%dK", PartRoot, opt.RootSize/1024), "-t", fmt.Sprintf("%d:8304", PartRoot), "-c", fmt.Sprintf("%d:root", PartRoot),
			d.Path)
		starts = partStarts(t, d.Path)
	}

	// The data partition: a few files the selection must leave out.
	dataDir := filepath.Join(dir, "data-tree")
	writeFiles(t, dataDir, map[string]string{"home/user/notes.txt": "user data, not the system\n"})
	dataImg := filepath.Join(dir, "data.img")
	mkfsExt4(t, dataImg, opt.DataSize, d.DataUUID, "data", dataDir)
	place(t, d.Path, dataImg, starts[PartData])

	// The root.
	rootDir := filepath.Join(dir, "root-tree")
	d.populateRoot(t, rootDir, kernel, modDir, !opt.MBR)
	rootImg := filepath.Join(dir, "root.img")
	mkfsExt4(t, rootImg, opt.RootSize, d.RootUUID, "root", rootDir)
	place(t, d.Path, rootImg, starts[d.Root])
	if opt.MBR {
		// GRUB for BIOS on an MBR disk: the core image in the gap between
		// the MBR and the first partition, its prefix naming the root by
		// number on the boot disk.
		core := filepath.Join(dir, "core.img")
		run(t, "grub-mkimage", "-O", "i386-pc", "-o", core, "-p", fmt.Sprintf("(,msdos%d)/boot/grub", MBRPartRoot),
			"biosdisk", "part_msdos", "ext2", "normal", "linux", "search", "search_fs_uuid", "configfile", "echo", "test", "gzio")
		installGRUBBIOS(t, d.Path, core, 512)
		return d
	}

	// The ESP: Debian's shim and signed GRUB, and the grub.cfg that
	// Debian's grub-install writes beside them.
	espImg := filepath.Join(dir, "esp.img")
	makeFile(t, espImg, 16*MiB)
	run(t, "mkfs.fat", "-F", "16", "-i", strings.ReplaceAll(d.ESPSerial, "-", ""), "-n", "ESP", espImg)
	mt := func(args ...string) { runEnv(t, []string{"MTOOLS_SKIP_CHECK=1"}, args[0], args[1:]...) }
	mt("mmd", "-i", espImg, "::/EFI", "::/EFI/debian")
	mt("mcopy", "-i", espImg, "/usr/lib/shim/shimx64.efi.signed", "::/EFI/debian/shimx64.efi")
	mt("mcopy", "-i", espImg, "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", "::/EFI/debian/grubx64.efi")
	espCfg := filepath.Join(dir, "esp-grub.cfg")
	writeFile(t, espCfg, fmt.Sprintf("search.fs_uuid %s root\nset prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n", d.RootUUID))
	mt("mcopy", "-i", espImg, espCfg, "::/EFI/debian/grub.cfg")
	place(t, d.Path, espImg, starts[PartESP])

	// GRUB for BIOS: a core image whose prefix names the root partition
	// by number on the disk it booted from, as grub-install makes it,
	// embedded in the BIOS boot partition the way grub-bios-setup does.
	core := filepath.Join(dir, "core.img")
	run(t, "grub-mkimage", "-O", "i386-pc", "-o", core, "-p", fmt.Sprintf("(,gpt%d)/boot/grub", PartRoot),
		"biosdisk", "part_gpt", "ext2", "xfs", "normal", "linux", "search", "search_fs_uuid", "configfile", "echo", "test", "serial", "terminal", "gzio")
	installGRUBBIOS(t, d.Path, core, starts[PartBIOS])
	return d
}

// installGRUBBIOS does what grub-bios-setup does (grub-bios-setup itself
// insists on finding the disk that holds its directory among the host's):
// boot.img into the MBR's boot code with the LBA of core.img at 0x5c and
// the boot-drive check replaced by NOPs (0x66), core.img at start (a BIOS
// boot partition, or the gap after the MBR) with diskboot.img's block list
// (the 12 bytes before 0x200 of its first sector) naming the rest of it.
func installGRUBBIOS(t testing.TB, disk, core string, start int64) {
	t.Helper()
	boot, err := os.ReadFile("/usr/lib/grub/i386-pc/boot.img")
	if err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(core)
	if err != nil {
		t.Fatal(err)
	}
	sectors := (int64(len(img)) + 511) / 512
	if start+sectors*512 > (start/MiB+1)*MiB {
		t.Fatalf("sysdisk: core.img of %d bytes does not fit before the next MiB", len(img))
	}
	img = append(img, make([]byte, sectors*512-int64(len(img)))...)
	lba := start / 512
	binary.LittleEndian.PutUint64(img[0x200-12:], uint64(lba+1))
	binary.LittleEndian.PutUint16(img[0x200-4:], uint16(sectors-1))
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mbr := make([]byte, 512)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	copy(mbr[:440], boot[:440])
	binary.LittleEndian.PutUint64(mbr[0x5c:], uint64(lba))
	mbr[0x66], mbr[0x67] = 0x90, 0x90
	if _, err := f.WriteAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(img, start); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// populateRoot writes the root file system's tree.
func (d *Disk) populateRoot(t testing.TB, root, kernel, modDir string, esp bool) {
	t.Helper()
	fstab := fmt.Sprintf("# <file system> <mount point> <type> <options> <dump> <pass>\nUUID=%s / ext4 errors=remount-ro 0 1\n", d.RootUUID)
	if esp {
		fstab += fmt.Sprintf("UUID=%s /boot/efi vfat umask=0077 0 1\n", d.ESPSerial)
	}
	fstab += fmt.Sprintf("UUID=%s /srv/data ext4 defaults,nofail 0 2\n", d.DataUUID)
	cmdline := fmt.Sprintf("root=UUID=%s ro console=ttyS0,115200 panic=-1", d.RootUUID)
	writeFiles(t, root, map[string]string{
		"etc/os-release":     "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
		"etc/fstab":          fstab,
		"boot/grub/grub.cfg": fmt.Sprintf("set timeout=0\nset default=0\nsearch --no-floppy --fs-uuid --set=root %s\nmenuentry 'Debian GNU/Linux' {\n  search --no-floppy --fs-uuid --set=root %s\n  linux /boot/vmlinuz %s\n  initrd /boot/initrd.img\n}\n", d.RootUUID, d.RootUUID, cmdline),
		"sbin/marker": "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n" +
			"dev=$(/bin/busybox awk '$2==\"/\" && $1!=\"rootfs\" {print $1}' /proc/mounts | /bin/busybox tail -n 1)\n" +
			"uuid=$(/bin/busybox blkid \"$dev\" | /bin/busybox sed -n 's/.* UUID=\"\\([^\"]*\\)\".*/\\1/p')\n" +
			"fst=$(/bin/busybox awk '$2==\"/\" {print $1}' /etc/fstab | /bin/busybox sed 's/^UUID=//')\n" +
			"echo \"" + Marker + " root=$uuid fstab=$fst\" > /dev/ttyS0\n/bin/busybox poweroff -f\n",
	})
	for _, dir := range []string{"proc", "sys", "dev", "srv/data", "boot/efi", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "sbin/marker"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, kernel, filepath.Join(root, "boot/vmlinuz"))
	installBusybox(t, root)
	initrd := filepath.Join(root, "boot/initrd.img")
	buildInitramfs(t, filepath.Join(filepath.Dir(root), "initramfs-tree"), initrd, modDir)
	// GRUB's modules for the prefix, as grub-install copies them.
	modsDst := filepath.Join(root, "boot/grub/i386-pc")
	if err := os.MkdirAll(modsDst, 0o755); err != nil {
		t.Fatal(err)
	}
	mods, _ := filepath.Glob("/usr/lib/grub/i386-pc/*.mod")
	for _, m := range mods {
		copyFile(t, m, filepath.Join(modsDst, filepath.Base(m)))
	}
	for _, n := range []string{"command.lst", "fs.lst", "moddep.lst", "partmap.lst", "terminal.lst", "crypto.lst"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/grub/i386-pc", n)); err == nil {
			copyFile(t, filepath.Join("/usr/lib/grub/i386-pc", n), filepath.Join(modsDst, n))
		}
	}
}

// initModules are loaded by the initramfs, in order: virtio disks and ext4
// with what ext4's checksums need.
var initModules = []string{
	"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
	"kernel/drivers/virtio/virtio_pci_legacy_dev.ko", "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
	"kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/block/virtio_blk.ko",
	"kernel/lib/crc16.ko", "kernel/fs/mbcache.ko", "kernel/fs/jbd2/jbd2.ko", "kernel/crypto/crc32c_generic.ko",
	"kernel/fs/ext4/ext4.ko", "kernel/lib/libcrc32c.ko", "kernel/fs/xfs/xfs.ko",
}

// initScript mounts the root named by root=UUID= on the kernel command
// line, as Debian's initramfs does, and starts /sbin/marker in it.
const initScript = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /root
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in $(/bin/busybox cat /modules.order); do /bin/busybox insmod /$m 2>/dev/null; done
uuid=$(/bin/busybox sed -n 's/.*root=UUID=\([^ ]*\).*/\1/p' /proc/cmdline)
i=0
while [ $i -lt 200 ]; do
  dev=$(/bin/busybox findfs UUID=$uuid 2>/dev/null) && break
  /bin/busybox sleep 0.1; i=$((i+1))
done
echo "initramfs: root UUID=$uuid is $dev"
/bin/busybox mount -o ro "$dev" /root || { echo "initramfs: cannot mount $dev"; /bin/busybox poweroff -f; }
/bin/busybox umount /proc /sys
/bin/busybox mount --move /dev /root/dev
exec /bin/busybox switch_root /root /sbin/marker
`

func buildInitramfs(t testing.TB, tree, out, modDir string) {
	t.Helper()
	installBusybox(t, tree)
	var order []string
	for _, m := range initModules {
		src := filepath.Join(modDir, m)
		if _, err := os.Stat(src); err != nil {
			continue // built in, or not needed by this kernel
		}
		copyFile(t, src, filepath.Join(tree, m))
		order = append(order, m)
	}
	writeFiles(t, tree, map[string]string{"init": initScript, "modules.order": strings.Join(order, "\n") + "\n"})
	if err := os.Chmod(filepath.Join(tree, "init"), 0o755); err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	if err := writeNewc(&archive, tree); err != nil {
		t.Fatalf("sysdisk: initramfs archive: %v", err)
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	if _, err := io.Copy(zw, &archive); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// writeNewc writes the directories and regular files under tree as a cpio
// archive in the "newc" format the kernel unpacks into its initramfs: per
// entry a 110-byte header ("070701" and thirteen 8-digit hex fields), the
// name with its NUL, then the data, each padded to 4 bytes; "TRAILER!!!"
// ends it.
func writeNewc(w *bytes.Buffer, tree string) error {
	var names []string
	err := filepath.Walk(tree, func(p string, _ os.FileInfo, err error) error {
		if err == nil && p != tree {
			rel, _ := filepath.Rel(tree, p)
			names = append(names, rel)
		}
		return err
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	pad := func() {
		for w.Len()%4 != 0 {
			w.WriteByte(0)
		}
	}
	entry := func(ino int, name string, mode uint32, data []byte) {
		fmt.Fprintf(w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		w.WriteString(name)
		w.WriteByte(0)
		pad()
		w.Write(data)
		pad()
	}
	for i, n := range names {
		fi, err := os.Lstat(filepath.Join(tree, n))
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			entry(i+1, n, 0o040755, nil)
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(filepath.Join(tree, n))
			if err != nil {
				return err
			}
			entry(i+1, n, 0o100000|uint32(fi.Mode().Perm()), b)
		default:
			return fmt.Errorf("%s: only directories and regular files go into the initramfs", n)
		}
	}
	entry(0, "TRAILER!!!", 0, nil)
	return nil
}

// installBusybox copies busybox and the libraries it links into root.
func installBusybox(t testing.TB, root string) {
	t.Helper()
	copyFile(t, "/usr/bin/busybox", filepath.Join(root, "bin/busybox"))
	os.Chmod(filepath.Join(root, "bin/busybox"), 0o755)
	out, err := exec.Command("ldd", "/usr/bin/busybox").Output()
	if err != nil {
		t.Fatalf("sysdisk: ldd busybox: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				copyFile(t, f, filepath.Join(root, f))
				os.Chmod(filepath.Join(root, f), 0o755)
			}
		}
	}
}

// hostKernel returns the host's Debian kernel and its module directory.
func hostKernel(t testing.TB) (string, string) {
	t.Helper()
	ks, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Strings(ks)
	for i := len(ks) - 1; i >= 0; i-- {
		ver := strings.TrimPrefix(filepath.Base(ks[i]), "vmlinuz-")
		if _, err := os.Stat(filepath.Join("/lib/modules", ver, "kernel/fs/ext4")); err == nil {
			return ks[i], filepath.Join("/lib/modules", ver)
		}
	}
	testenv.Skip(t, "needs a Debian kernel with its modules (apt-get install linux-image-amd64)")
	return "", ""
}

func mkfsExt4(t testing.TB, img string, size int64, id, label, tree string) {
	t.Helper()
	makeFile(t, img, size)
	run(t, "mkfs.ext4", "-q", "-F", "-U", id, "-L", label, "-d", tree, "-E", "root_owner=0:0", img)
}

// partStarts reads the partition starts sgdisk chose.
func partStarts(t testing.TB, img string) map[int]int64 {
	t.Helper()
	out := run(t, "sgdisk", "-p", img)
	starts := map[int]int64{}
	for _, line := range strings.Split(out, "\n") {
		var n int
		var start int64
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "%d %d", &n, &start); err == nil && n > 0 {
			starts[n] = start * 512
		}
	}
	if len(starts) != 4 {
		t.Fatalf("sysdisk: sgdisk lists %d partitions:\n%s", len(starts), out)
	}
	return starts
}

func place(t testing.TB, disk, img string, off int64) {
	t.Helper()
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	buf := make([]byte, MiB)
	for pos := int64(0); ; pos += MiB {
		n, err := src.ReadAt(buf, pos)
		if n > 0 && !bytes.Equal(buf[:n], make([]byte, n)) {
			if _, werr := dst.WriteAt(buf[:n], off+pos); werr != nil {
				t.Fatal(werr)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	os.Remove(img)
}

func uuid() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func serial() string {
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%X-%X", b[0:2], b[2:4])
}

func makeFile(t testing.TB, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeFiles(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		writeFile(t, filepath.Join(root, p), c)
	}
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("sysdisk: %v", err)
	}
	writeFile(t, dst, string(b))
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	return runEnv(t, nil, name, args...)
}

func runEnv(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	path, err := testenv.LookPath(name)
	if err != nil {
		testenv.Skip(t, "needs "+name)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sysdisk: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
