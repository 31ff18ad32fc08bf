package initramfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// KernelVersion reads the version string an x86 bzImage carries in its
// setup header (the kernel_version field at 0x20e points, relative to
// 0x200, to a NUL-terminated string such as "6.1.0-56-amd64 (debian-kernel@...)")
// and returns its first word, the name of the kernel's modules directory.
func KernelVersion(r io.ReaderAt, size int64) (string, error) {
	var hdr [0x210]byte
	if size < int64(len(hdr)) {
		return "", fmt.Errorf("read kernel header: image of %d bytes is too small", size)
	}
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return "", fmt.Errorf("read kernel header: %w", err)
	}
	if string(hdr[0x202:0x206]) != "HdrS" {
		return "", errors.New("read kernel header: no HdrS signature (not an x86 bzImage)")
	}
	ptr := int64(binary.LittleEndian.Uint16(hdr[0x20e:]))
	if ptr == 0 {
		return "", errors.New("read kernel header: no version string")
	}
	off := ptr + 0x200
	if off >= size {
		return "", fmt.Errorf("read kernel header: version string at %d is past the end (%d bytes)", off, size)
	}
	buf := make([]byte, min(256, size-off))
	n, err := r.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read kernel version string: %w", err)
	}
	buf = buf[:n]
	if i := bytes.IndexByte(buf, 0); i >= 0 {
		buf = buf[:i]
	}
	f := strings.Fields(string(buf))
	if len(f) == 0 || !printable(f[0]) {
		return "", errors.New("read kernel header: empty or garbled version string")
	}
	return f[0], nil
}

func printable(s string) bool {
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || c == '/' {
			return false
		}
	}
	return true
}

// DefaultKernel returns the newest /boot/vmlinuz-* of the build host (sorted
// by modification time, as installing a kernel package touches it).
func DefaultKernel(boot string) (string, error) {
	list, err := filepath.Glob(filepath.Join(boot, "vmlinuz-*"))
	if err != nil || len(list) == 0 {
		return "", fmt.Errorf("find kernel: no %s/vmlinuz-* (apt-get install linux-image-amd64, or pass --kernel)", boot)
	}
	type k struct {
		path string
		mod  int64
	}
	var ks []k
	for _, p := range list {
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		ks = append(ks, k{p, st.ModTime().UnixNano()})
	}
	if len(ks) == 0 {
		return "", fmt.Errorf("find kernel: no readable %s/vmlinuz-*", boot)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].mod > ks[j].mod })
	return ks[0].path, nil
}
