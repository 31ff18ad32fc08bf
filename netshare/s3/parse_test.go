package s3

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseURL: any location parses or fails without a panic, and what it
// accepts gives a printable location without user information and a key
// prefix that is a valid object name.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"s3://host/bucket", "s3://h:9000/b/a/b/c?region=eu&profile=x", "s3://k:s@h/b", "s3://h/b/..", "s3://h/b//x", "s3://[::1]:1/bb-b/x/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		b, _, _, err := parseURL(u)
		if err != nil {
			return
		}
		if strings.Contains(b.location, "@") {
			t.Fatalf("location %q holds user information", b.location)
		}
		if b.base != "" && (!strings.HasSuffix(b.base, "/") || strings.Contains(b.base, "//") || strings.HasPrefix(b.base, "/")) {
			t.Fatalf("key prefix %q", b.base)
		}
	})
}

// FuzzParseCredentials: any credentials file parses or fails without a
// panic, and an error never repeats a value of the file.
func FuzzParseCredentials(f *testing.F) {
	f.Add("[default]\naws_access_key_id = A\naws_secret_access_key = SECRETVALUE\n")
	f.Add("# c\n[x]\n[default]\n; c\naws_secret_access_key SECRETVALUE\n")
	f.Add("[default\naws_secret_access_key=SECRETVALUE")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content string) {
		p := filepath.Join(dir, "credentials")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		keys, err := parseCredentials(p, "default")
		if err == nil {
			if keys["aws_access_key_id"] == "" || keys["aws_secret_access_key"] == "" {
				t.Fatalf("accepted keys %d without both keys", len(keys))
			}
			return
		}
		if strings.Contains(content, "SECRETVALUE") && strings.Contains(err.Error(), "SECRETVALUE") {
			t.Fatalf("error %q repeats a value of the file", err)
		}
	})
}
