package netshare

import (
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzCheckName checks that every name CheckName accepts is a clean,
// relative path that stays inside its root on any backend, and that
// CheckPrefix accepts every valid name.
func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"config", "data/ab/abcdef", "../x", "a//b", "/abs", "a/./b", "x..y", ".hidden", "a\\b", "", "caf\u00e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := CheckName(name)
		if err != nil {
			return
		}
		if !filepath.IsLocal(name) || path.Clean(name) != name || strings.Contains(name, "\\") {
			t.Fatalf("CheckName accepted %q, which is not a clean local path", name)
		}
		for elem := range strings.SplitSeq(name, "/") {
			if elem == ".." || elem == "." || elem == "" {
				t.Fatalf("CheckName accepted %q with element %q", name, elem)
			}
		}
		if err := CheckPrefix(name); err != nil {
			t.Fatalf("CheckPrefix refused valid name %q: %v", name, err)
		}
		if err := CheckPrefix(name + "/"); err != nil {
			t.Fatalf("CheckPrefix refused %q: %v", name+"/", err)
		}
	})
}

// FuzzParseLocation checks that parsing a location never panics and never
// puts a password into its error.
func FuzzParseLocation(f *testing.F) {
	for _, s := range []string{"/mnt/repo", "file:///mnt/repo", "smb://bob:pw@nas/share", "sftp://u@h:22/p", "s3://h/b/p", "x://", "file://h/x", "a:b@c://d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, loc string) {
		// The same location with credentials where URLs carry them.
		if before, after, ok := strings.Cut(loc, "://"); ok && !strings.Contains(before, "secret-pw") {
			withPW := before + "://bob:secret-pw@" + after
			if _, _, err := parseLocation(withPW); err != nil && strings.Contains(err.Error(), "secret-pw") {
				t.Fatalf("error for %q shows the password: %v", withPW, err)
			}
		}
		scheme, p, err := parseLocation(loc)
		if err != nil {
			return
		}
		if scheme == "" {
			t.Fatalf("parseLocation(%q) succeeded without a scheme", loc)
		}
		if scheme == "file" && p == "" {
			t.Fatalf("parseLocation(%q) gave an empty path", loc)
		}
	})
}
