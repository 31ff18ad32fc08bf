package sftp

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/lifeboat/lifeboat/netshare/sftp/sftptest"
)

// Servers without posix-rename get a remove and a plain rename; OpenSSH
// offers the extension, so the fallback is switched on by hand.
func TestSaveWithoutPosixRename(t *testing.T) {
	srv := sftptest.Start(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	b, err := New(ctx, srv.URL("root", dir), srv.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.posixRename = false
	for _, data := range []string{"first", "second, longer", "3"} {
		if err := b.Save(ctx, "index/a", int64(len(data)), bytes.NewReader([]byte(data))); err != nil {
			t.Fatalf("Save(%q) without posix-rename: %v", data, err)
		}
		got, err := os.ReadFile(filepath.Join(dir, "index", "a"))
		if err != nil || string(got) != data {
			t.Fatalf("object after a save without posix-rename: %q, %v; want %q", got, err, data)
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, "index"))
	if err != nil || len(entries) != 1 {
		t.Fatalf("index directory holds %d entries (%v), want only the object", len(entries), err)
	}
	if b.Properties().AtomicRename {
		t.Fatal("Properties().AtomicRename is true without posix-rename")
	}
}
