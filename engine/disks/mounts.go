package disks

import (
	"bufio"
	"bytes"
	"strings"
)

// mountEntry is one line of /proc/self/mountinfo, as far as disks care.
type mountEntry struct {
	devno      string // major:minor of the mounted device (anonymous for btrfs)
	mountPoint string
	source     string // the mount source, /dev/sda1 for block devices
}

// maxProcLines bounds how many lines of a proc table are parsed.
const maxProcLines = 1 << 16

// parseMountinfo parses the mountinfo format (proc(5)): fields 3 and 5 are
// the device number and mount point, and the mount source is the second
// field after the "-" separator. Malformed lines are skipped.
func parseMountinfo(b []byte) []mountEntry {
	var out []mountEntry
	s := bufio.NewScanner(bytes.NewReader(b))
	s.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 0; n < maxProcLines && s.Scan(); n++ {
		f := strings.Fields(s.Text())
		if len(f) < 7 {
			continue
		}
		e := mountEntry{devno: f[2], mountPoint: UnescapeOctal(f[4])}
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				if i+2 < len(f) {
					e.source = UnescapeOctal(f[i+2])
				}
				break
			}
		}
		out = append(out, e)
	}
	return out
}

// parseSwaps returns the file names listed in /proc/swaps, skipping the
// header line.
func parseSwaps(b []byte) []string {
	var out []string
	s := bufio.NewScanner(bytes.NewReader(b))
	s.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 0; n < maxProcLines && s.Scan(); n++ {
		f := strings.Fields(s.Text())
		if len(f) == 0 || (n == 0 && f[0] == "Filename") {
			continue
		}
		out = append(out, UnescapeOctal(f[0]))
	}
	return out
}

// UnescapeOctal undoes the \ooo escaping of blanks and backslashes that
// the kernel applies to mount points and swap file names in /proc, and
// that fstab(5) uses in its fields. A backslash not followed by three
// octal digits of a byte value (000 to 377) is kept as it is.
func UnescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] >= '0' && s[i+1] <= '3' && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
