package ui

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/gdamore/tcell/v2"

	"github.com/lifeboat/lifeboat/engine/repo"
	"github.com/lifeboat/lifeboat/netshare/local"
	"github.com/lifeboat/lifeboat/netshare/smb/smbtest"
)

// TestBackupToShare backs a disk up through the UI into a repository on an
// SMB share (Samba on loopback), the share's password typed into the
// repository form, and finds the snapshot in the share's directory.
func TestBackupToShare(t *testing.T) {
	fx := extFixture(t, t.TempDir())
	sourceSame := unchanged(t, fx.Path, "the source")
	srv := smbtest.Start(t)
	h := start(t, Options{DiskFiles: []string{fx.Path}}, nil)
	startBackup(h, fx.Path)
	h.choose("Type a location")
	h.waitFor("Location", "Share pw", "Host key", "Open")
	h.typeText(srv.URL("pc1").String())
	h.key(tcell.KeyTab, 2) // repository password (none), share password
	h.typeText(srv.Password)
	h.key(tcell.KeyTab, 2) // host key, Open
	h.key(tcell.KeyEnter)
	backupPlan(h, "")
	h.key(tcell.KeyEnter)
	s := h.waitFor("FINISHED", "Snapshot", "added to the repository")
	t.Logf("backup summary:\n%s", s)
	h.goHome()
	sourceSame()

	ctx := context.Background()
	be, err := local.New(filepath.Join(srv.Dir, "pc1"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, nil)
	if err != nil {
		t.Fatalf("the share holds no repository: %v", err)
	}
	defer r.Close()
	snaps, err := r.Snapshots(ctx)
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots on the share: %d, %v", len(snaps), err)
	}
}
