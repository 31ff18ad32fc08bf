// Package system finds which partitions of a disk an installed operating
// system needs to boot and run: the EFI system partition, a BIOS boot
// partition, Microsoft reserved and Windows recovery partitions, Linux
// roots (an ext2/3/4, XFS or btrfs file system holding /etc/os-release)
// with the /boot, /boot/efi, /usr, /var and swap partitions their fstab
// names, and Windows (an NTFS file system holding \Windows\System32). Data
// partitions are left out, each with the reason.
//
// Nothing is mounted or written for ext2/3/4: its files are read through
// the bounded reader of engine/fsmap/ext. XFS, btrfs and NTFS are looked
// into through a copy-on-write view (engine/cow) exposed as a file,
// mounted read-only (XFS, btrfs) or read with ntfs-3g's ntfsls; that needs
// root.
package system

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/lifeboat/lifeboat/engine/blockdev"
	"github.com/lifeboat/lifeboat/engine/cow"
	"github.com/lifeboat/lifeboat/engine/fsmap/ext"
	"github.com/lifeboat/lifeboat/engine/fsmap/probe"
	"github.com/lifeboat/lifeboat/engine/ptable"
)

// Choice is one partition and what selection made of it.
type Choice struct {
	Number int
	// Role says what the partition is ("EFI system partition", "Linux
	// root (Debian GNU/Linux 12 (bookworm))", "/boot from fstab", "data").
	Role string
	// Why says why it is taken or left out.
	Why string
	// FS is the detected file-system type, "" when none was found.
	FS string
}

// Selection is the outcome of Select.
type Selection struct {
	// Taken are the partitions the installed systems need, by number.
	Taken []Choice
	// Left are the other partitions, by number, with why they stay.
	Left []Choice
	// Systems names the operating systems found.
	Systems []string
	// Warnings are things the user must know (an fstab entry that names a
	// partition left out, a file system that could not be inspected).
	Warnings []string
}

// Has reports whether partition n is taken.
func (s *Selection) Has(n int) bool {
	for _, c := range s.Taken {
		if c.Number == n {
			return true
		}
	}
	return false
}

// Numbers returns the numbers of the partitions taken, in order.
func (s *Selection) Numbers() []int {
	var out []int
	for _, c := range s.Taken {
		out = append(out, c.Number)
	}
	return out
}

// Describe writes the selection in words.
func (s *Selection) Describe(w io.Writer) {
	fmt.Fprintf(w, "System: %s\n", strings.Join(s.Systems, ", "))
	for _, c := range s.Taken {
		fmt.Fprintf(w, "  take  partition %d: %s (%s)\n", c.Number, c.Role, c.Why)
	}
	for _, c := range s.Left {
		fmt.Fprintf(w, "  leave partition %d: %s (%s)\n", c.Number, c.Role, c.Why)
	}
}

// NoSystemError says that no installed system was found.
type NoSystemError struct {
	// Reasons says what each partition was found to be.
	Reasons []string
}

func (e *NoSystemError) Error() string {
	return "no installed operating system found: " + strings.Join(e.Reasons, "; ")
}

// MBR types that mark system partitions by themselves; the GPT ones are
// named in engine/ptable.
const (
	mbrESP       = 0xef
	mbrWinRE     = 0x27
	mbrHiddenRec = 0x12 // vendor recovery/diagnostics (Compaq diagnostics in fdisk's words)
)

// part is what Select learnt about one partition.
type part struct {
	p                  ptable.Partition
	fsType, uuid, lbl  string
	role, why          string
	taken              bool
	inspectErr         error
	fstab              []fstabEntry
	osName             string
	windows, winBootMg bool
}

// Select inspects every partition of tbl on src (a whole disk) and
// returns what an installed system needs. It writes nothing to src.
func Select(ctx context.Context, src io.ReaderAt, tbl *ptable.Table) (*Selection, error) {
	if tbl == nil || (tbl.Kind != ptable.GPT && tbl.Kind != ptable.MBR) {
		return nil, fmt.Errorf("select system partitions: the disk has no partition table")
	}
	parts := make([]*part, 0, len(tbl.Partitions))
	for _, p := range tbl.Partitions {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		x := &part{p: p}
		parts = append(parts, x)
		w := io.NewSectionReader(src, p.Start, p.Size)
		fs, err := probe.Detect(ctx, w, p.Size)
		if err == nil {
			info := fs.Info()
			x.fsType, x.uuid, x.lbl = info.Type, info.UUID, info.Label
		}
		x.inspect(ctx, w)
	}
	sel := &Selection{}
	// Partitions that are system partitions by their type.
	for _, x := range parts {
		switch {
		case strings.EqualFold(x.p.Type, ptable.TypeEFISystem) || x.p.MBRType == mbrESP:
			x.take("EFI system partition", "boot loaders for UEFI firmware")
		case strings.EqualFold(x.p.Type, ptable.TypeBIOSBoot):
			x.take("BIOS boot", "GRUB's core image for BIOS firmware")
		case strings.EqualFold(x.p.Type, ptable.TypeMicrosoftReserved):
			x.take("Microsoft reserved", "Windows keeps it beside its system partition")
		case strings.EqualFold(x.p.Type, ptable.TypeWindowsRecovery) || x.p.MBRType == mbrWinRE:
			x.take("Windows recovery", "Windows Recovery Environment")
		}
	}
	for _, x := range parts {
		switch {
		case x.osName != "":
			x.take("Linux root ("+x.osName+")", "/etc/os-release names "+x.osName)
			sel.Systems = append(sel.Systems, x.osName)
		case x.windows:
			x.take(`Windows (\Windows\System32)`, `holds \Windows\System32`)
			sel.Systems = append(sel.Systems, "Windows")
		case x.winBootMg:
			x.take(`Windows boot files (\bootmgr)`, `holds \bootmgr and \Boot\BCD`)
		}
	}
	// What each Linux root's fstab names.
	for _, root := range parts {
		if root.osName == "" {
			continue
		}
		for _, fe := range root.fstab {
			target := matchFstab(fe.spec, parts, tbl)
			need := fstabNeeded(fe)
			switch {
			case target == nil && need != "" && !fe.nofail():
				sel.Warnings = append(sel.Warnings, fmt.Sprintf("the fstab of %s names %s for %s, which is on no partition of this disk", root.osName, fe.spec, fe.mountName()))
			case target == nil:
			case need != "":
				how := fmt.Sprintf("%s's fstab mounts %s on %s", root.osName, fe.spec, fe.dir)
				if need == "swap" {
					how = fmt.Sprintf("%s's fstab uses %s as swap", root.osName, fe.spec)
				}
				target.take(need+" from fstab", how)
			case !target.taken && !fe.nofail():
				sel.Warnings = append(sel.Warnings, fmt.Sprintf("partition %d (%s) is left out but %s's fstab mounts it on %s without nofail: the copy waits for it at boot", target.p.Number, fe.spec, root.osName, fe.mountName()))
				if target.role == "" {
					target.role, target.why = fe.mountName()+" from fstab", "user data, not needed to boot"
				}
			case !target.taken && target.role == "":
				target.role, target.why = fe.mountName()+" from fstab", "user data, not needed to boot"
			}
		}
	}
	var reasons []string
	for _, x := range parts {
		if x.taken {
			sel.Taken = append(sel.Taken, Choice{Number: x.p.Number, Role: x.role, Why: x.why, FS: x.fsType})
			continue
		}
		role, why := x.role, x.why
		if role == "" {
			role = "data"
			if x.fsType == "swap" {
				role = "swap"
			}
		}
		if why == "" {
			why = x.leftReason()
		}
		switch x.fsType {
		case "luks", "bitlocker", "lvm2", "linux_raid_member":
			sel.Warnings = append(sel.Warnings, fmt.Sprintf("partition %d (%s) is left out unseen: a system inside it would not be copied", x.p.Number, x.fsType))
		}
		if x.inspectErr != nil {
			sel.Warnings = append(sel.Warnings, fmt.Sprintf("partition %d (%s) could not be looked into: %v", x.p.Number, x.fsType, x.inspectErr))
		}
		sel.Left = append(sel.Left, Choice{Number: x.p.Number, Role: role, Why: why, FS: x.fsType})
		reasons = append(reasons, fmt.Sprintf("partition %d: %s", x.p.Number, why))
	}
	if len(sel.Systems) == 0 {
		return nil, &NoSystemError{Reasons: reasons}
	}
	sort.Slice(sel.Taken, func(i, j int) bool { return sel.Taken[i].Number < sel.Taken[j].Number })
	sort.Slice(sel.Left, func(i, j int) bool { return sel.Left[i].Number < sel.Left[j].Number })
	return sel, nil
}

func (x *part) take(role, why string) {
	if x.taken {
		return // the first reason found stands: type before content
	}
	x.taken, x.role, x.why = true, role, why
}

func (x *part) leftReason() string {
	switch {
	case x.inspectErr != nil:
		return fmt.Sprintf("a %s file system that could not be looked into", x.fsType)
	case x.fsType == "swap":
		return "swap that no fstab of a system found here names"
	case x.fsType == "luks" || x.fsType == "bitlocker":
		return fmt.Sprintf("an encrypted %s volume, which cannot be looked into without its key", x.fsType)
	case x.fsType == "lvm2" || x.fsType == "linux_raid_member":
		return fmt.Sprintf("an %s member, which is not looked into", x.fsType)
	case x.fsType == "" || x.fsType == "unknown":
		return "no file system recognised and no system partition type"
	}
	return fmt.Sprintf("no operating system on its %s file system", x.fsType)
}

// inspect looks for an operating system in the partition.
func (x *part) inspect(ctx context.Context, w io.ReaderAt) {
	switch x.fsType {
	case "ext2", "ext3", "ext4":
		files, err := ext.OpenFiles(w, x.p.Size)
		if err != nil {
			x.inspectErr = err
			return
		}
		x.linux(files.ReadFile)
	case "xfs", "btrfs", "ntfs":
		x.inspectErr = x.inspectMounted(ctx, w)
	}
}

// linux reads os-release and fstab through read.
func (x *part) linux(read func(string) ([]byte, error)) {
	b, err := read("/etc/os-release")
	if err != nil {
		b, err = read("/usr/lib/os-release")
	}
	if err != nil {
		return
	}
	x.osName = osName(b)
	if fb, err := read("/etc/fstab"); err == nil {
		x.fstab = parseFstab(fb)
	}
}

// inspectMounted exposes the partition as a file through a copy-on-write
// overlay (nothing can reach the source) and looks at it with the kernel's
// driver (XFS, btrfs, read-only) or ntfs-3g.
func (x *part) inspectMounted(ctx context.Context, w io.ReaderAt) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("looking into %s needs root (a read-only mount of a copy-on-write view)", x.fsType)
	}
	ov, err := cow.New(w, x.p.Size, cow.Options{})
	if err != nil {
		return fmt.Errorf("copy-on-write view of partition %d: %w", x.p.Number, err)
	}
	defer ov.Close()
	file, release, err := ov.DevicePath(ctx)
	if err != nil {
		return fmt.Errorf("expose partition %d as a file: %w", x.p.Number, err)
	}
	defer release()
	if x.fsType == "ntfs" {
		x.windows = ntfsHas(ctx, file, "/Windows", "System32")
		x.winBootMg = ntfsHas(ctx, file, "/", "bootmgr") && ntfsHas(ctx, file, "/Boot", "BCD")
		return nil
	}
	loop, err := blockdev.AttachLoop(ctx, file, 0, x.p.Size, true)
	if err != nil {
		return fmt.Errorf("loop device for partition %d: %w", x.p.Number, err)
	}
	defer loop.Detach()
	dir, err := os.MkdirTemp("", "lifeboat-inspect-")
	if err != nil {
		return fmt.Errorf("mount point for partition %d: %w", x.p.Number, err)
	}
	defer os.Remove(dir)
	// mount(2) rather than a mount program: the appliance's is u-root's,
	// whose options differ from util-linux's.
	data := "norecovery"
	if x.fsType == "btrfs" {
		data = "rescue=nologreplay"
	}
	if err := unix.Mount(loop.Path, dir, x.fsType, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		return fmt.Errorf("mount partition %d read-only: %w", x.p.Number, err)
	}
	defer unix.Unmount(dir, 0)
	read := func(p string) ([]byte, error) {
		// os.Root keeps symbolic links inside the mounted file system.
		r, err := os.OpenRoot(dir)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		f, err := r.Open(strings.TrimPrefix(p, "/"))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return io.ReadAll(io.LimitReader(f, ext.MaxFileSize))
	}
	x.linux(read)
	if x.osName == "" && x.fsType == "btrfs" {
		// Ubuntu and openSUSE keep the root in a subvolume (@, @/.snapshots/1/snapshot).
		for _, sub := range []string{"@", "root", "@rootfs"} {
			x.linux(func(p string) ([]byte, error) { return read("/" + sub + p) })
			if x.osName != "" {
				break
			}
		}
	}
	return nil
}

// ntfsHas reports whether dir of the NTFS volume in file holds name
// (case-insensitive, as Windows names are).
func ntfsHas(ctx context.Context, file, dir, name string) bool {
	out, err := exec.CommandContext(ctx, "ntfsls", "-f", "-a", "-p", dir, file).Output()
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if strings.EqualFold(strings.TrimSpace(sc.Text()), name) {
			return true
		}
	}
	return false
}

// osName returns PRETTY_NAME, or NAME and VERSION, from an os-release file.
func osName(b []byte) string {
	vals := map[string]string{}
	for i, line := range strings.Split(string(b), "\n") {
		if i > 200 {
			break
		}
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		} else {
			v = strings.Trim(v, `"'`)
		}
		vals[k] = v
	}
	if n := vals["PRETTY_NAME"]; n != "" {
		return n
	}
	n := strings.TrimSpace(vals["NAME"] + " " + vals["VERSION"])
	if n == "" {
		n = "Linux"
	}
	return n
}
