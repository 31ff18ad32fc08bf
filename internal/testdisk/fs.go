package testdisk

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

// isExt reports whether fs is one of the ext family.
func isExt(fs string) bool { return fs == "ext2" || fs == "ext3" || fs == "ext4" }

// treeFor returns the tree options a file system of type fs can hold: FAT
// and exFAT have no hard links, symlinks, holes or case-sensitive names, and
// mtools drops characters outside the Basic Multilingual Plane.
func treeFor(fs string, opt TreeOptions) TreeOptions {
	switch fs {
	case "vfat", "exfat":
		opt.HardLinks, opt.Symlinks, opt.Sparse, opt.CaseCollide = false, false, false, false
		if fs == "vfat" {
			opt.BMPOnly = true
		}
	}
	return opt
}

// makeFS creates the file system of p in the new file img of info.Size
// bytes, filled with a populated tree when p.Files is set.
func makeFS(t testing.TB, dir, img string, spec Spec, p Part, info *PartInfo, idx int64) {
	t.Helper()
	f, err := os.Create(img)
	if err != nil {
		t.Fatalf("build fixture: create %s: %v", img, err)
	}
	if err := f.Truncate(info.Size); err != nil {
		f.Close()
		t.Fatalf("build fixture: size %s: %v", img, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("build fixture: close %s: %v", img, err)
	}
	var src string
	if p.Files != nil {
		switch {
		case isExt(p.FS), p.FS == "vfat", p.FS == "ntfs", p.FS == "exfat":
		default:
			t.Fatalf("build fixture: partition %d: a %q partition cannot hold files", info.Number, p.FS)
		}
		opt := treeFor(p.FS, *p.Files)
		src = filepath.Join(dir, fmt.Sprintf("part%d-src", info.Number))
		Populate(t, src, opt)
		info.SrcDir, info.Tree = src, &opt
	}
	ss := int64(spec.SectorSize)
	// Identifiers derived from the disk size and partition index keep
	// fixtures reproducible.
	serial := uint64(spec.Size)>>20<<8 | uint64(idx)
	uuid := fmt.Sprintf("4c696665-626f-4174-8000-%012x", serial&(1<<48-1))
	switch {
	case isExt(p.FS):
		testenv.RequireTools(t, "mke2fs")
		args := []string{"-q", "-F", "-t", p.FS, "-U", uuid}
		if p.Label != "" {
			args = append(args, "-L", p.Label)
		}
		if ss == 4096 {
			args = append(args, "-b", "4096")
		}
		if src != "" {
			args = append(args, "-d", src)
		}
		mustRun(t, "mke2fs", append(args, img)...)
	case p.FS == "vfat":
		testenv.RequireTools(t, "mkfs.fat", "mcopy")
		fat := p.FATSize
		if fat == 0 {
			fat = 32
		}
		args := []string{"-F", strconv.Itoa(fat), "-S", strconv.FormatInt(ss, 10),
			"-i", fmt.Sprintf("%08x", uint32(serial)), "-h", strconv.FormatInt(info.Start/ss, 10)}
		if ss == 4096 {
			// mkfs.fat 4.2 picks an unusable geometry for FAT16 on
			// 4096-byte sectors unless told one sector per cluster.
			args = append(args, "-s", "1")
		}
		if p.Label != "" {
			args = append(args, "-n", p.Label)
		}
		_, stderr, err := runToolFull("", "mkfs.fat", append(args, img)...)
		if err != nil {
			t.Fatalf("build fixture: %v", err)
		}
		// A FAT32 with too few clusters is read as FAT16 by everyone
		// else; mkfs.fat only warns.
		if bytes.Contains(bytes.ToLower(stderr), []byte("warning")) {
			t.Fatalf("build fixture: partition %d: mkfs.fat: %s", info.Number, stderr)
		}
		if src != "" {
			entries, err := os.ReadDir(src)
			if err != nil {
				t.Fatalf("build fixture: list %s: %v", src, err)
			}
			args := []string{"-s", "-Q", "-i", img}
			for _, e := range entries {
				args = append(args, filepath.Join(src, e.Name()))
			}
			mustRun(t, "mcopy", append(args, "::/")...)
		}
	case p.FS == "ntfs":
		testenv.RequireTools(t, "mkntfs")
		args := []string{"-F", "-Q", "-q", "-s", strconv.FormatInt(ss, 10), "-p", strconv.FormatInt(info.Start/ss, 10)}
		if p.Label != "" {
			args = append(args, "-L", p.Label)
		}
		mustRun(t, "mkntfs", append(args, img)...)
		if src != "" {
			fillFUSE(t, "ntfs", img, src)
		}
	case p.FS == "exfat":
		testenv.RequireTools(t, "mkfs.exfat")
		args := []string{}
		if p.Label != "" {
			args = append(args, "-L", p.Label)
		}
		mustRun(t, "mkfs.exfat", append(args, img)...)
		if src != "" {
			fillFUSE(t, "exfat", img, src)
		}
	case p.FS == "swap":
		testenv.RequireTools(t, "mkswap")
		args := []string{"-U", uuid}
		if p.Label != "" {
			args = append(args, "-L", p.Label)
		}
		mustRun(t, "mkswap", append(args, img)...)
	case p.FS == "raw":
		if err := fillRandom(img, info.Size, serial); err != nil {
			t.Fatalf("build fixture: %v", err)
		}
	case p.FS == "none":
	default:
		t.Fatalf("build fixture: partition %d: unknown FS %q", info.Number, p.FS)
	}
	if p.FS != "raw" && p.FS != "none" {
		// blkid exits 2 when a value is missing (exFAT made without a
		// serial has one anyway); an empty UUID is then the answer.
		out, _ := runTool("blkid", "-p", "-o", "value", "-s", "UUID", img)
		info.UUID = strings.TrimSpace(string(out))
	}
}

// fillRandom writes size pseudo-random bytes, seeded by seed, to path.
func fillRandom(path string, size int64, seed uint64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s for random fill: %w", path, err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(seed, 0x72617721))
	buf := make([]byte, copyBlock)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		for i := int64(0); i < n; i += 8 {
			v := rng.Uint64()
			for j := int64(0); j < 8 && i+j < n; j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return fmt.Errorf("fill %s at %d: %w", path, off, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// fillFUSE copies the tree src into the NTFS or exFAT image img through a
// read-write FUSE mount; these file systems have no root-free way in.
func fillFUSE(t testing.TB, fs, img, src string) {
	t.Helper()
	testenv.RequireRoot(t)
	mnt := t.TempDir()
	m := mountFUSE(t, fs, img, mnt, false)
	err := copyTree(src, mnt)
	if uerr := m.unmount(); err == nil {
		err = uerr
	}
	if err != nil {
		t.Fatalf("build fixture: fill %s %s: %v", fs, img, err)
	}
}

// tailBuffer keeps the last bytes written to it: FUSE daemons in the
// foreground can log a lot, and only the end matters for a failure.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	const keep = 8 << 10
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > keep {
		b.buf = append([]byte(nil), b.buf[len(b.buf)-keep:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// fuseMount is a FUSE daemon serving one image, kept in the foreground so
// that unmount can wait for it to write its last metadata and close the
// image: umount of a FUSE file system returns before the daemon is done.
type fuseMount struct {
	mnt  string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan error
	// detach releases the loop device the daemon serves, if any.
	detach func()
	once   sync.Once
	err    error
}

// mountFUSE mounts img (NTFS through ntfs-3g, exFAT through
// mount.exfat-fuse) on mnt and waits until the mount is there. A cleanup
// unmounts it if the test ends first.
func mountFUSE(t testing.TB, fs, img, mnt string, readOnly bool) *fuseMount {
	t.Helper()
	testenv.RequireRoot(t)
	var name string
	var args []string
	detach := func() {}
	switch fs {
	case "ntfs":
		name = "ntfs-3g"
		opts := "no_detach"
		if readOnly {
			opts += ",ro"
		}
		args = []string{"-o", opts, img, mnt}
	case "exfat":
		name = "mount.exfat-fuse"
		// Run as root, exfat-fuse mounts as fuseblk, which wants a
		// block device rather than an image file.
		dev, release := attachLoop(t, img, 512, readOnly)
		detach = release
		// -d keeps the daemon in the foreground (and logs every request).
		args = []string{"-d"}
		if readOnly {
			args = append(args, "-o", "ro")
		}
		args = append(args, dev, mnt)
	default:
		t.Fatalf("mount %s: no FUSE driver for %q", img, fs)
	}
	testenv.RequireTools(t, name, "umount")
	path, err := testenv.LookPath(name)
	if err != nil {
		t.Fatalf("mount %s: %v", img, err)
	}
	m := &fuseMount{mnt: mnt, out: &tailBuffer{}, done: make(chan error, 1), detach: detach}
	m.cmd = exec.Command(path, args...)
	m.cmd.Env = toolEnv()
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	if err := m.cmd.Start(); err != nil {
		detach()
		t.Fatalf("mount %s: start %s: %v", img, name, err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	t.Cleanup(func() { _ = m.unmount() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := isMountPoint(mnt)
		if err != nil {
			_ = m.unmount()
			t.Fatalf("mount %s: %v", img, err)
		}
		if ok {
			return m
		}
		select {
		case err := <-m.done:
			m.done <- err
			_ = m.unmount()
			t.Fatalf("mount %s on %s: %s exited (%v) before mounting:\n%s", img, mnt, name, err, clip(m.out.String()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = m.unmount()
			t.Fatalf("mount %s on %s: not mounted after 30 s:\n%s", img, mnt, clip(m.out.String()))
		}
	}
}

// unmount unmounts and waits for the daemon to exit; it is safe to call
// more than once.
func (m *fuseMount) unmount() error {
	m.once.Do(func() {
		if ok, _ := isMountPoint(m.mnt); ok {
			if _, err := runTool("umount", m.mnt); err != nil {
				m.err = fmt.Errorf("unmount %s: %w", m.mnt, err)
				_, _ = runTool("umount", "-l", m.mnt)
			}
		}
		select {
		case err := <-m.done:
			if err != nil && m.err == nil {
				m.err = fmt.Errorf("FUSE daemon for %s: %w\n%s", m.mnt, err, clip(m.out.String()))
			}
		case <-time.After(2 * time.Minute):
			_ = m.cmd.Process.Kill()
			<-m.done
			if m.err == nil {
				m.err = fmt.Errorf("FUSE daemon for %s did not exit after unmount", m.mnt)
			}
		}
		m.detach()
	})
	return m.err
}

// isMountPoint reports whether dir is a mount point of this process's mount
// namespace.
func isMountPoint(dir string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && disks.UnescapeOctal(fields[4]) == dir {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	return false, nil
}

// partCopy copies [off, off+size) of image to a new file in a temporary
// directory of the test and returns its path.
func partCopy(t testing.TB, image string, off, size int64) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "part.img")
	if err := extractRange(image, off, size, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

// Extract copies every file of the file system of part (its Start, Size and
// FS; Number and SrcDir are not used) in the image file into dest, creating
// dest. It works on a private copy of the partition bytes and never writes
// to image.
//
//   - ext2/3/4: debugfs rdump, without root. rdump writes each name of a
//     hard-linked file as a separate copy, so the hard links are made again
//     from the inode numbers `debugfs ls -p` lists. The lost+found directory
//     mke2fs creates is not extracted.
//   - vfat: mcopy.
//   - ntfs, exfat: a read-only FUSE mount (ntfs-3g, mount.exfat-fuse); needs
//     root.
//
// Symbolic links stay symbolic links.
func Extract(t testing.TB, image string, part PartInfo, dest string) {
	t.Helper()
	if err := os.MkdirAll(dest, 0o755); err != nil {
		t.Fatalf("extract %s: create %s: %v", part.FS, dest, err)
	}
	switch {
	case isExt(part.FS):
		testenv.RequireTools(t, "debugfs")
		img := partCopy(t, image, part.Start, part.Size)
		if err := extractExt(img, dest); err != nil {
			t.Fatalf("extract %s at %d of %s: %v", part.FS, part.Start, image, err)
		}
		if err := os.Remove(img); err != nil {
			t.Fatalf("extract %s: remove partition copy: %v", part.FS, err)
		}
	case part.FS == "vfat":
		testenv.RequireTools(t, "mcopy", "mdir")
		spec := fmt.Sprintf("%s@@%d", image, part.Start)
		// mdir -b lists nothing for an empty root, and mcopy fails on
		// an empty wildcard: only copy when there is something.
		list, err := runTool("mdir", "-b", "-i", spec, "::/")
		if err != nil {
			t.Fatalf("extract vfat at %d of %s: %v", part.Start, image, err)
		}
		if len(bytes.TrimSpace(list)) > 0 {
			if _, err := runTool("mcopy", "-s", "-n", "-m", "-Q", "-i", spec, "::/*", dest); err != nil {
				t.Fatalf("extract vfat at %d of %s: %v", part.Start, image, err)
			}
		}
	case part.FS == "ntfs", part.FS == "exfat":
		testenv.RequireRoot(t)
		img := partCopy(t, image, part.Start, part.Size)
		mnt := t.TempDir()
		m := mountFUSE(t, part.FS, img, mnt, true)
		err := copyTree(mnt, dest)
		if uerr := m.unmount(); err == nil {
			err = uerr
		}
		if err != nil {
			t.Fatalf("extract %s at %d of %s: %v", part.FS, part.Start, image, err)
		}
		if err := os.Remove(img); err != nil {
			t.Fatalf("extract %s: remove partition copy: %v", part.FS, err)
		}
	default:
		t.Fatalf("extract from %s: no file extraction for %q", image, part.FS)
	}
}

// extractExt dumps the ext file system in img into dest with debugfs and
// restores its hard links.
func extractExt(img, dest string) error {
	if strings.ContainsAny(dest, "\"\n") {
		return fmt.Errorf("destination %q: debugfs requests cannot name it", dest)
	}
	if err := debugfs(img, "rdump / "+quoteDebugfs(dest)); err != nil {
		return err
	}
	lf := filepath.Join(dest, "lost+found")
	if fi, err := os.Lstat(lf); err == nil && fi.IsDir() {
		if err := os.RemoveAll(lf); err != nil {
			return fmt.Errorf("remove lost+found: %w", err)
		}
	}
	return restoreHardLinks(img, dest)
}

// debugfs runs debugfs requests (one per line) on img. debugfs exits 0 even
// when a request fails, so anything on standard error but its banner (and
// the ownership complaints of a non-root rdump) is an error.
func debugfs(img string, requests ...string) error {
	_, err := debugfsOut(img, requests...)
	return err
}

func debugfsOut(img string, requests ...string) ([]byte, error) {
	cmds, err := os.CreateTemp("", "lifeboat-debugfs-*.txt")
	if err != nil {
		return nil, fmt.Errorf("create debugfs request file: %w", err)
	}
	defer os.Remove(cmds.Name())
	if _, err := cmds.WriteString(strings.Join(requests, "\n") + "\n"); err != nil {
		cmds.Close()
		return nil, fmt.Errorf("write debugfs request file: %w", err)
	}
	if err := cmds.Close(); err != nil {
		return nil, fmt.Errorf("close debugfs request file: %w", err)
	}
	out, stderr, err := runToolFull("", "debugfs", "-f", cmds.Name(), img)
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(stderr), "\n") {
		line = strings.TrimSpace(line)
		// Without root, rdump cannot give files their owners; owners
		// are not compared, so that is no error here.
		if line != "" && !strings.HasPrefix(line, "debugfs ") && !strings.Contains(line, "while changing ownership of ") {
			return nil, fmt.Errorf("debugfs %s: %s", img, clip(string(stderr)))
		}
	}
	return out, nil
}

// quoteDebugfs quotes a path for a debugfs request line; callers reject
// paths holding a double quote or a line break, which it cannot pass.
func quoteDebugfs(p string) string { return `"` + p + `"` }

// restoreHardLinks lists every directory of the dumped tree with debugfs
// `ls -p` and replaces the separate copies rdump made of one inode's names
// with hard links to the first name.
func restoreHardLinks(img, dest string) error {
	dirs := []string{"/"}
	err := filepath.WalkDir(dest, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != dest {
			rel, err := filepath.Rel(dest, path)
			if err != nil {
				return err
			}
			dirs = append(dirs, "/"+filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list dumped directories: %w", err)
	}
	reqs := make([]string, len(dirs))
	for i, d := range dirs {
		if strings.ContainsAny(d, "\"\n") {
			return fmt.Errorf("directory %q: debugfs requests cannot name it", d)
		}
		reqs[i] = "ls -p " + quoteDebugfs(d)
	}
	out, err := debugfsOut(img, reqs...)
	if err != nil {
		return err
	}
	byInode, err := parseLsP(out, dirs)
	if err != nil {
		return err
	}
	for _, names := range byInode {
		if len(names) < 2 {
			continue
		}
		sort.Strings(names)
		first := filepath.Join(dest, filepath.FromSlash(names[0]))
		for _, n := range names[1:] {
			p := filepath.Join(dest, filepath.FromSlash(n))
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("replace copy %s by a hard link: %w", p, err)
			}
			if err := os.Link(first, p); err != nil {
				return fmt.Errorf("hard link %s to %s: %w", p, first, err)
			}
		}
	}
	return nil
}

// parseLsP reads the output of `debugfs -f` running `ls -p` on each of dirs
// in order and returns the paths of regular files by inode number. Each
// request's output follows its echo line, which starts with "debugfs: ";
// each entry is /inode/mode/uid/gid/name/size/.
func parseLsP(out []byte, dirs []string) (map[uint64][]string, error) {
	byInode := map[uint64][]string{}
	cur := -1
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "debugfs: ") {
			cur++
			if cur >= len(dirs) {
				return nil, errors.New("parse debugfs ls -p: more requests echoed than sent")
			}
			continue
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		if cur < 0 {
			return nil, fmt.Errorf("parse debugfs ls -p: output before the first request: %q", line)
		}
		f := strings.Split(line, "/")
		if len(f) != 8 || f[0] != "" || f[7] != "" {
			return nil, fmt.Errorf("parse debugfs ls -p in %s: unexpected line %q", dirs[cur], line)
		}
		ino, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parse debugfs ls -p in %s: inode of %q: %w", dirs[cur], line, err)
		}
		mode, err := strconv.ParseUint(f[2], 8, 32)
		if err != nil {
			return nil, fmt.Errorf("parse debugfs ls -p in %s: mode of %q: %w", dirs[cur], line, err)
		}
		name := f[5]
		if name == "." || name == ".." || mode&0o170000 != 0o100000 {
			continue
		}
		p := strings.TrimPrefix(dirs[cur]+"/"+name, "/")
		p = strings.TrimPrefix(p, "/")
		byInode[ino] = append(byInode[ino], p)
	}
	if cur != len(dirs)-1 {
		return nil, fmt.Errorf("parse debugfs ls -p: %d requests echoed, want %d", cur+1, len(dirs))
	}
	return byInode, nil
}

// Fsck checks the file system fs at [offset, offset+size) of image with its
// own checker, on a private copy of the bytes so the image is never
// modified, and fails the test on any error: e2fsck -fn, fsck.fat -n,
// ntfsfix -n (and, as root, a read-only ntfs-3g mount), fsck.exfat -n; for
// swap, blkid must report TYPE=swap.
func Fsck(t testing.TB, image string, offset, size int64, fs string) {
	t.Helper()
	var tool string
	var args []string
	switch {
	case isExt(fs):
		tool, args = "e2fsck", []string{"-fn"}
	case fs == "vfat":
		tool, args = "fsck.fat", []string{"-n"}
	case fs == "ntfs":
		tool, args = "ntfsfix", []string{"-n"}
	case fs == "exfat":
		tool, args = "fsck.exfat", []string{"-n"}
	case fs == "swap":
		tool, args = "blkid", []string{"-p", "-o", "value", "-s", "TYPE"}
	default:
		t.Fatalf("fsck %s at %d: no checker for %q", image, offset, fs)
	}
	testenv.RequireTools(t, tool)
	img := partCopy(t, image, offset, size)
	defer os.Remove(img)
	out, err := runTool(tool, append(args, img)...)
	if err != nil {
		t.Fatalf("fsck %s at %d of %s: %v", fs, offset, image, err)
	}
	if fs == "swap" && strings.TrimSpace(string(out)) != "swap" {
		t.Fatalf("fsck swap at %d of %s: blkid reports TYPE %q", offset, image, strings.TrimSpace(string(out)))
	}
	if fs == "ntfs" && os.Geteuid() == 0 {
		if _, err := testenv.LookPath("ntfs-3g"); err == nil {
			m := mountFUSE(t, "ntfs", img, t.TempDir(), true)
			if err := m.unmount(); err != nil {
				t.Fatalf("fsck ntfs at %d of %s: read-only mount: %v", offset, image, err)
			}
		}
	}
}
