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
		e := mountEntry{devno: f[2], mountPoint: unescapeOctal(f[4])}
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				if i+2 < len(f) {
					e.source = unescapeOctal(f[i+2])
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
		out = append(out, unescapeOctal(f[0]))
	}
	return out
}

// unescapeOctal undoes the kernel's \ooo escaping of blanks and
// backslashes in mount points and swap file names.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			v := (s[i+1]-'0')*64 + (s[i+2]-'0')*8 + (s[i+3] - '0')
			b.WriteByte(v)
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
