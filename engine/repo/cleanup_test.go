package repo

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/netshare"
)

// leaveTemp writes, under the repository's directory, the temporary file
// a local save killed before its rename leaves, last written age ago.
func leaveTemp(t *testing.T, dir, name string, age time.Duration) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("the first bytes of a pack"), 0o600); err != nil {
		t.Fatal(err)
	}
	when := time.Now().Add(-age)
	if err := os.Chtimes(p, when, when); err != nil {
		t.Fatal(err)
	}
	return p
}

func exists(t *testing.T, p string) bool {
	t.Helper()
	_, err := os.Stat(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// Prune removes the temporary files interrupted saves left more than a
// day ago, also through WithRetry, keeps younger ones (a save may still
// be running), and a dry run removes none.
func TestPruneRemovesStaleTemporaryFiles(t *testing.T) {
	ctx := context.Background()
	f := standardFixture(t, nil)
	pack := strings.Repeat("ab", 32)
	stale := leaveTemp(t, f.dir, "data/ab/"+pack+".tmp-0123456789abcdef", 25*time.Hour)
	staleIndex := leaveTemp(t, f.dir, "index/"+pack+".tmp-fedcba9876543210", 30*24*time.Hour)
	young := leaveTemp(t, f.dir, "data/cd/"+strings.Repeat("cd", 32)+".tmp-00112233445566aa", 23*time.Hour)

	r := f.reopen(t)
	dry, err := r.Prune(ctx, PruneOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.TempRemoved != 0 || !exists(t, stale) || !exists(t, staleIndex) {
		t.Fatalf("dry run: TempRemoved %d, stale file there %v; want 0 and kept", dry.TempRemoved, exists(t, stale))
	}
	st, err := r.Prune(ctx, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.TempRemoved != 2 || exists(t, stale) || exists(t, staleIndex) || !exists(t, young) {
		t.Fatalf("Prune: TempRemoved %d; stale there %v %v, young there %v; want 2 removed, the young kept",
			st.TempRemoved, exists(t, stale), exists(t, staleIndex), exists(t, young))
	}
	f.verifyRestores(t, r, ids(f.snaps))

	// Through WithRetry, as the CLI and the UI open repositories.
	stale2 := leaveTemp(t, f.dir, "snapshots/"+pack+".tmp-0123456789abcdef", 48*time.Hour)
	rr, err := Open(ctx, netshare.WithRetry(f.be, netshare.RetryPolicy{}), f.pw)
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	st, err = rr.Prune(ctx, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.TempRemoved != 1 || exists(t, stale2) || !exists(t, young) {
		t.Fatalf("Prune through WithRetry: TempRemoved %d, stale there %v, young there %v", st.TempRemoved, exists(t, stale2), exists(t, young))
	}
	rep, err := rr.Check(ctx, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 || len(rep.Damaged) != 0 || rep.Snapshots != len(f.snaps) {
		t.Fatalf("check after prune: %+v", rep)
	}
}
