package disks

import (
	"strings"
	"testing"
)

// FuzzProcTables feeds arbitrary bytes to the mountinfo, swaps and VPD
// parsers: they must never panic, and what they return must come from the
// input.
func FuzzProcTables(f *testing.F) {
	f.Add([]byte("36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n"))
	f.Add([]byte("Filename\tType\tSize\tUsed\tPriority\n/dev/sda2 partition 8388604 0 -2\n"))
	f.Add([]byte(vpd80("S6PTNM0R123456")))
	f.Add([]byte("1 2 3 4 5 6 -\n\\\\1 \\777 \\0"))
	f.Add([]byte{0, 0x80, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range parseMountinfo(b) {
			if m.devno == "" || m.mountPoint == "" {
				t.Fatalf("empty field in %+v", m)
			}
		}
		for _, s := range parseSwaps(b) {
			if s == "" {
				t.Fatal("empty swap name")
			}
		}
		if s := parseVPD80(b); len(s) > len(b) || strings.ContainsAny(s, "\n\r\t\x00") {
			t.Fatalf("parseVPD80 = %q", s)
		}
		_ = UnescapeOctal(string(b))
	})
}
