package sftp

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzParseURL: any location parses or fails without a panic; what it
// accepts names a host and port, never leaves the login directory through
// "..", and prints without a password.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"sftp://u@h/x", "sftp://u:p@h/x", "sftp://h:2222/~/a/b", "sftp://h/~/../x", "sftp://[::1]/", "sftp://u@h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		b, err := parseURL(u)
		if err != nil {
			return
		}
		if b.addr == "" || b.user == "" || b.root == "" {
			t.Fatalf("parseURL(%q) = addr %q user %q root %q", s, b.addr, b.user, b.root)
		}
		if b.root == ".." || strings.HasPrefix(b.root, "../") {
			t.Fatalf("parseURL(%q): root %q leaves the login directory", s, b.root)
		}
		if p, ok := u.User.Password(); ok && p != "" && strings.Contains(b.location, p) {
			t.Fatalf("parseURL(%q): location %q holds the password", s, b.location)
		}
	})
}
