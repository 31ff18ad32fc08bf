package initramfs

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/lifeboat/lifeboat/initramfs/modinfo"
)

// maxFirmware bounds what a firmware file may decompress to: the largest
// in Debian's firmware packages are a few tens of MiB.
const maxFirmware = 256 << 20

// DefaultFirmwareDirs returns the directories the kernel's firmware loader
// searches, in its order (fw_path in drivers/base/firmware_loader/main.c),
// under root for the kernel release.
func DefaultFirmwareDirs(root, release string) []string {
	base := filepath.Join(root, "lib", "firmware")
	return []string{
		filepath.Join(base, "updates", release),
		filepath.Join(base, "updates"),
		filepath.Join(base, release),
		base,
	}
}

// validFirmwareName accepts the relative paths the kernel would look up
// under a firmware directory and nothing that could leave it.
func validFirmwareName(name string) bool {
	if name == "" || strings.HasPrefix(name, "/") || path.Clean(name) != name || strings.ContainsAny(name, "\x00\\") {
		return false
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." || part == "." {
			return false
		}
	}
	return true
}

// stageFirmware carries to stage/lib/firmware every firmware file the
// carried modules name and the first of dirs holds, at the path the kernel
// asks for. A file the host keeps compressed (name.zst, name.xz) is carried
// decompressed: the kernel always tries the plain name, whatever
// compressions it was built to read (Debian 12's reads xz but not zstd),
// and the initramfs is compressed as a whole anyway. Names no directory
// holds are recorded by module in rep.FirmwareMissing.
func stageFirmware(dirs []string, rep *Report, modDir, stage string) error {
	want := map[string][]string{} // firmware name -> modules naming it
	for _, m := range rep.Modules {
		names, err := modinfo.FileValues(filepath.Join(modDir, m), "firmware")
		if err != nil {
			return fmt.Errorf("build initramfs: %w", err)
		}
		for _, n := range names {
			want[n] = append(want[n], moduleName(m))
		}
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	dst := filepath.Join(stage, "lib", "firmware")
	for _, n := range names {
		src, comp := findFirmware(dirs, n)
		if src == "" {
			for _, m := range want[n] {
				if rep.FirmwareMissing == nil {
					rep.FirmwareMissing = map[string][]string{}
				}
				rep.FirmwareMissing[m] = append(rep.FirmwareMissing[m], n)
			}
			continue
		}
		size, err := copyDecompressed(src, comp, filepath.Join(dst, filepath.FromSlash(n)))
		if err != nil {
			return fmt.Errorf("build initramfs: carry firmware %s: %w", n, err)
		}
		rep.Firmware = append(rep.Firmware, n)
		rep.FirmwareBytes += size
	}
	return nil
}

// moduleName is a module's name as modinfo and the report print it: the
// file name without .ko and a compression suffix.
func moduleName(rel string) string {
	b := filepath.Base(rel)
	if i := strings.Index(b, ".ko"); i > 0 {
		b = b[:i]
	}
	return b
}

// findFirmware returns the first regular file (following links, as the
// kernel does) for name in dirs, plain or compressed, and its compression
// suffix.
func findFirmware(dirs []string, name string) (string, string) {
	if !validFirmwareName(name) {
		return "", ""
	}
	for _, d := range dirs {
		for _, suffix := range []string{"", ".zst", ".xz"} {
			p := filepath.Join(d, filepath.FromSlash(name)+suffix)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				return p, suffix
			}
		}
	}
	return "", ""
}

// copyDecompressed writes src, decompressed per suffix, to dst and returns
// the bytes written.
func copyDecompressed(src, suffix, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	var r io.Reader = in
	switch suffix {
	case ".zst":
		zr, err := zstd.NewReader(in)
		if err != nil {
			return 0, fmt.Errorf("decompress %s: %w", src, err)
		}
		defer zr.Close()
		r = zr
	case ".xz":
		xr, err := xz.NewReader(in)
		if err != nil {
			return 0, fmt.Errorf("decompress %s: %w", src, err)
		}
		r = xr
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, fmt.Errorf("create %s: %w", filepath.Dir(dst), err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", dst, err)
	}
	n, err := io.Copy(out, io.LimitReader(r, maxFirmware+1))
	if err == nil && n > maxFirmware {
		err = fmt.Errorf("over %d bytes", maxFirmware)
	}
	if err != nil {
		out.Close()
		return 0, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return 0, fmt.Errorf("write %s: %w", dst, err)
	}
	return n, nil
}
