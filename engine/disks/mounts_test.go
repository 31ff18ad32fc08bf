package disks

import "testing"

func TestUnescapeOctal(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"/mnt/plain", "/mnt/plain"},
		{`/srv/my\040data`, "/srv/my data"},
		{`\011tab\012nl`, "\ttab\nnl"},
		{`back\134slash`, `back\slash`},
		{`\040\040`, "  "},
		{`\0401`, " 1"},         // only three digits are read
		{`caf\303\251`, "café"}, // bytes of a UTF-8 name
		{`\\040`, `\ `},         // a backslash before an escape
		{`\377`, "\xff"},        // the largest byte
		{`\400`, `\400`},        // not a byte: kept
		{`\777`, `\777`},        // not a byte: kept
		{`\04`, `\04`},          // short at the end
		{`a\0`, `a\0`},          // short at the end
		{`end\`, `end\`},        // a lone trailing backslash
		{`\08x`, `\08x`},        // 8 is no octal digit
		{`\x41`, `\x41`},        // no hexadecimal escapes
		{`\04a/b`, `\04a/b`},    // short in the middle
		{`\1234`, "S4"},         // \123 is 'S'
	} {
		if got := UnescapeOctal(c.in); got != c.want {
			t.Errorf("UnescapeOctal(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
