package roundtrip

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/engine/clone"
	"github.com/lifeboat/lifeboat/engine/image"
	"github.com/lifeboat/lifeboat/engine/progress"
	"github.com/lifeboat/lifeboat/engine/repo"
	"github.com/lifeboat/lifeboat/internal/testdisk"
	"github.com/lifeboat/lifeboat/internal/testenv"
	"github.com/lifeboat/lifeboat/netshare"
	"github.com/lifeboat/lifeboat/netshare/local"
)

// Scheme-neutral helpers: nothing here knows which backend it drives.

const mib = 1 << 20

// fixtureSize is the size of the fixture disk, and of restore targets.
const fixtureSize = 96 * mib

// testPackSize keeps packs small so that a fixture backup saves many of
// them and a server can be killed between two.
const testPackSize = 1 * mib

// testRetry is the retry policy of the tests: quick, so that a backup
// against a dead server fails in well under a second.
var testRetry = netshare.RetryPolicy{Attempts: 3, Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond}

// fixture builds a 96 MiB GPT disk with an ext4 partition full of files of
// every shape, a FAT16 partition with files, and a partition of random
// bytes (incompressible, every byte used), without root.
func fixture(t *testing.T, dir string) *testdisk.Fixture {
	t.Helper()
	testenv.RequireTools(t, "sgdisk", "mkfs.ext4", "debugfs", "e2fsck", "mkfs.vfat", "fsck.vfat", "mcopy")
	return testdisk.Build(t, dir, testdisk.Spec{
		Table: "gpt", Size: fixtureSize, BootCode: true,
		Parts: []testdisk.Part{
			{FS: "ext4", Size: 40 * mib, Label: "root", Files: &testdisk.TreeOptions{Seed: 71, TotalBytes: 10 << 20,
				HardLinks: true, Symlinks: true, Sparse: true, UTF8: true}},
			{FS: "vfat", FATSize: 16, Size: 20 * mib, Label: "ESP", Files: &testdisk.TreeOptions{Seed: 72, TotalBytes: 4 << 20}},
			{FS: "raw", Size: 16 * mib, Label: "blob"},
		},
	})
}

// backup runs a backup of the disk image src into r.
func backup(ctx context.Context, t *testing.T, r *repo.Repo, src string) (*image.BackupResult, error) {
	t.Helper()
	return image.Backup(ctx, image.BackupOptions{Source: testdisk.Inspect(t, src), Repo: r, PackSize: testPackSize, Tags: []string{"roundtrip"}}, &progress.Counters{})
}

// restoreAndCheck opens the repository on be afresh, as a later run would,
// restores its latest snapshot onto an empty image in dir, and checks every
// partition against the fixture (fsck, every file compared, raw bytes).
func restoreAndCheck(t *testing.T, be netshare.Backend, fx *testdisk.Fixture, dir string) {
	t.Helper()
	ctx := context.Background()
	r, err := repo.Open(ctx, netshare.WithRetry(be, testRetry), nil)
	if err != nil {
		t.Fatalf("open the repository on %s: %v", be.Properties().Location, err)
	}
	defer r.Close()
	snap, err := r.LoadSnapshot(ctx, "latest")
	if err != nil {
		t.Fatalf("load the latest snapshot: %v", err)
	}
	target := testdisk.EmptyFile(t, filepath.Join(dir, "target.img"), fixtureSize)
	plan, _, err := image.PlanRestore(ctx, image.RestoreOptions{Repo: r, Snapshot: snap, Target: testdisk.Inspect(t, target), Verify: true})
	if err != nil {
		t.Fatalf("plan the restore: %v", err)
	}
	defer plan.Close()
	res, err := clone.Run(ctx, plan, &progress.Counters{})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if !res.Verified {
		t.Error("restore not verified")
	}
	testdisk.CheckCopy(t, fx, target)
}

// roundTrip backs a fresh fixture up into a new repository on be (wrapped
// with netshare.WithRetry), restores it and compares everything. It logs
// the backup's throughput and returns its result.
func roundTrip(t *testing.T, be netshare.Backend) *image.BackupResult {
	t.Helper()
	dir := t.TempDir()
	return roundTripFixture(t, be, fixture(t, dir), dir)
}

// roundTripFixture is roundTrip on a fixture already built in dir.
func roundTripFixture(t *testing.T, be netshare.Backend, fx *testdisk.Fixture, dir string) *image.BackupResult {
	t.Helper()
	sum := testdisk.SHA256(t, fx.Path)
	ctx := context.Background()
	r, err := repo.Init(ctx, netshare.WithRetry(be, testRetry), repo.InitOptions{})
	if err != nil {
		t.Fatalf("init a repository on %s: %v", be.Properties().Location, err)
	}
	res, err := backup(ctx, t, r, fx.Path)
	r.Close()
	if err != nil {
		t.Fatalf("backup to %s: %v", be.Properties().Location, err)
	}
	if testdisk.SHA256(t, fx.Path) != sum {
		t.Fatal("backup changed the source")
	}
	logThroughput(t, be, res)
	restoreAndCheck(t, be, fx, dir)
	return res
}

// logThroughput reports how fast a backup read and stored the disk's used
// bytes (for the record; no test passes or fails on it).
func logThroughput(t *testing.T, be netshare.Backend, res *image.BackupResult) {
	t.Helper()
	secs := res.Duration.Seconds()
	t.Logf("backup to %s (%s): %.1f MiB used, %.1f MiB stored in %d packs, %d new and %d reused chunks, %.2f s: %.1f MiB/s used, %.1f MiB/s stored",
		be.Properties().Name, be.Properties().Location, float64(res.Meta.Used)/mib, float64(res.Stats.BytesStored)/mib,
		res.Stats.Packs, res.Stats.ChunksNew, res.Stats.ChunksDedup, secs,
		float64(res.Meta.Used)/mib/secs, float64(res.Stats.BytesStored)/mib/secs)
}

// saveHook passes every call to Backend and calls fn once, right after the
// n-th Save that succeeded, before that Save returns.
type saveHook struct {
	netshare.Backend
	n     int64
	fn    func()
	saves atomic.Int64
	once  sync.Once
}

func (h *saveHook) Save(ctx context.Context, name string, size int64, r io.ReadSeeker) error {
	err := h.Backend.Save(ctx, name, size, r)
	if err == nil && h.saves.Add(1) == h.n {
		h.once.Do(h.fn)
	}
	return err
}

// TestLocalRoundTrip is the reference the network backends are measured
// against: the same fixture and backup into a local directory.
func TestLocalRoundTrip(t *testing.T) {
	be, err := local.New(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	roundTrip(t, be)
}

// resumeAfterKill backs fx up into a new repository on be and calls stop
// (which must kill the server) right after the backup's killAfter-th
// save. The backup must fail with an error, not hang; after restart, a
// new backup must reuse the chunks of the packs uploaded before the kill,
// and its snapshot must restore exactly.
func resumeAfterKill(t *testing.T, be netshare.Backend, fx *testdisk.Fixture, dir string, killAfter int, stop, restart func()) {
	t.Helper()
	ctx := context.Background()
	r0, err := repo.Init(ctx, netshare.WithRetry(be, testRetry), repo.InitOptions{})
	if err != nil {
		t.Fatalf("init a repository on %s: %v", be.Properties().Location, err)
	}
	r0.Close()

	hook := &saveHook{Backend: be, n: int64(killAfter), fn: stop}
	r1, err := repo.Open(ctx, netshare.WithRetry(hook, testRetry), nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := backup(ctx, t, r1, fx.Path)
	r1.Close()
	if err == nil {
		t.Fatalf("backup with the server killed after %d saves succeeded (snapshot %s)", killAfter, res.Snapshot.ID)
	}
	if hook.saves.Load() < int64(killAfter) {
		t.Fatalf("backup failed after %d saves, before the server was killed: %v", hook.saves.Load(), err)
	}
	t.Logf("backup with the server killed after save %d failed after %v: %v", killAfter, time.Since(start).Round(time.Millisecond), err)
	// The error must say what failed and why: a save, and the connection.
	if msg := err.Error(); !strings.Contains(msg, "save") || !strings.Contains(msg, "connect") {
		t.Fatalf("backup error %q names neither the failed save nor the lost connection", msg)
	}

	restart()
	r2, err := repo.Open(ctx, netshare.WithRetry(be, testRetry), nil)
	if err != nil {
		t.Fatalf("open the repository after the restart: %v", err)
	}
	orphans, err := r2.IndexOrphanPacks(ctx)
	if err != nil {
		t.Fatalf("index the packs of the killed backup: %v", err)
	}
	if orphans < 1 {
		t.Fatalf("the killed backup left %d packs to reuse; want at least one", orphans)
	}
	res, err = backup(ctx, t, r2, fx.Path)
	r2.Close()
	if err != nil {
		t.Fatalf("backup after the restart: %v", err)
	}
	logThroughput(t, be, res)
	if res.Stats.ChunksDedup < orphans {
		t.Fatalf("the resumed backup reused %d chunks; the %d packs left by the killed one hold at least that many", res.Stats.ChunksDedup, orphans)
	}
	t.Logf("resumed: %d packs of the killed backup indexed, %d chunks reused, %d new", orphans, res.Stats.ChunksDedup, res.Stats.ChunksNew)
	restoreAndCheck(t, be, fx, dir)
}
