package image

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/engine/blockdev"
	"github.com/lifeboat/lifeboat/engine/clone"
	"github.com/lifeboat/lifeboat/engine/progress"
	"github.com/lifeboat/lifeboat/engine/ptable"
	"github.com/lifeboat/lifeboat/engine/repo"
	"github.com/lifeboat/lifeboat/internal/testdisk"
	"github.com/lifeboat/lifeboat/internal/testenv"
	"github.com/lifeboat/lifeboat/netshare/local"
)

const MiB = 1 << 20

func newRepo(t *testing.T, dir string, password []byte) *repo.Repo {
	t.Helper()
	be, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(context.Background(), be, repo.InitOptions{Password: password})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func openRepo(t *testing.T, dir string, password []byte) (*repo.Repo, error) {
	t.Helper()
	be, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return repo.Open(context.Background(), be, password)
}

func backup(t *testing.T, r *repo.Repo, repoDir, src string, part int) *BackupResult {
	t.Helper()
	res, err := Backup(context.Background(), BackupOptions{Source: testdisk.Inspect(t, src), Repo: r, RepoPath: repoDir, Partition: part, Tags: []string{"test"}}, &progress.Counters{})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	return res
}

func restore(t *testing.T, r *repo.Repo, snap *repo.Snapshot, target string, opt RestoreOptions) *clone.Result {
	t.Helper()
	opt.Repo, opt.Snapshot, opt.Target = r, snap, testdisk.Inspect(t, target)
	plan, _, err := PlanRestore(context.Background(), opt)
	if err != nil {
		t.Fatalf("plan restore: %v", err)
	}
	defer plan.Close()
	var b bytes.Buffer
	plan.Describe(&b)
	t.Logf("restore plan:\n%s", b.String())
	res, err := clone.Run(context.Background(), plan, &progress.Counters{})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	return res
}

// extFixture is a GPT disk with two ext4 partitions, built without root.
func extFixture(t *testing.T, dir string) *testdisk.Fixture {
	t.Helper()
	testenv.RequireTools(t, "sgdisk", "mkfs.ext4", "debugfs", "e2fsck")
	return testdisk.Build(t, dir, testdisk.Spec{
		Table: "gpt", Size: 160 * MiB, BootCode: true,
		Parts: []testdisk.Part{
			{FS: "ext4", Size: 48 * MiB, Label: "one", Files: &testdisk.TreeOptions{Seed: 1, TotalBytes: 6 << 20, HardLinks: true, Symlinks: true, Sparse: true, UTF8: true}},
			{FS: "ext4", Size: 64 * MiB, Label: "two", Files: &testdisk.TreeOptions{Seed: 2, TotalBytes: 10 << 20, Symlinks: true}},
		},
	})
}

func repoSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func TestRoundTripStandardFixtures(t *testing.T) {
	testenv.RequireRoot(t) // NTFS and exFAT fixtures, growth through loop devices
	for _, c := range []struct {
		name  string
		build func(testing.TB, string) *testdisk.Fixture
		size  int64
	}{
		{"gpt", testdisk.GPTStandard, 512 * MiB},
		{"mbr", testdisk.MBRStandard, 448 * MiB},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			fx := c.build(t, dir)
			sum := testdisk.SHA256(t, fx.Path)
			repoDir := filepath.Join(dir, "repo")
			r := newRepo(t, repoDir, nil)
			res := backup(t, r, repoDir, fx.Path, 0)
			if testdisk.SHA256(t, fx.Path) != sum {
				t.Fatal("backup changed the source")
			}
			t.Logf("snapshot %s: used %d, added %d, repository %d bytes", res.Snapshot.ID, res.Meta.Used, res.Stats.BytesStored, repoSize(t, repoDir))
			target := testdisk.EmptyFile(t, filepath.Join(dir, "target.img"), c.size)
			// Reopen, as a later run would.
			r2, err := openRepo(t, repoDir, nil)
			if err != nil {
				t.Fatal(err)
			}
			snap, err := r2.LoadSnapshot(context.Background(), "latest")
			if err != nil {
				t.Fatal(err)
			}
			out := restore(t, r2, snap, target, RestoreOptions{Verify: true, RepoPath: repoDir})
			if !out.Verified {
				t.Error("not verified")
			}
			testdisk.CheckCopy(t, fx, target)
			if !bytes.Equal(testdisk.ReadRange(t, target, 0, 440), fx.BootCode) {
				t.Error("boot code not restored")
			}
			if fx.GapLen > 0 && !bytes.Equal(testdisk.ReadRange(t, target, fx.GapOff, fx.GapLen), testdisk.ReadRange(t, fx.Path, fx.GapOff, fx.GapLen)) {
				t.Error("boot gap not restored")
			}
		})
	}
}

// TestDedupAndDelta: a second backup after a 1 MiB change adds at most
// 3 MiB; a delta restore onto an unchanged target writes under 1% of the
// used bytes.
func TestDedupAndDelta(t *testing.T) {
	dir := t.TempDir()
	fx := extFixture(t, dir)
	repoDir := filepath.Join(dir, "repo")
	r := newRepo(t, repoDir, nil)
	first := backup(t, r, repoDir, fx.Path, 0)
	size1 := repoSize(t, repoDir)
	// A second backup of the same disk stores nothing new.
	second := backup(t, r, repoDir, fx.Path, 0)
	if second.Stats.ChunksNew > 4 {
		t.Errorf("unchanged disk: %d new chunks", second.Stats.ChunksNew)
	}
	// Change 1 MiB inside the used data of partition 2 (a file's blocks).
	d, err := blockdev.Open(context.Background(), fx.Path, blockdev.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := blockdev.Sub(d, fx.Parts[1].Start, fx.Parts[1].Size)
	off := usedOffset(t, w, fx.Parts[1].Size)
	d.Close()
	f, _ := os.OpenFile(fx.Path, os.O_WRONLY, 0)
	// Random bytes, so compression cannot hide the change.
	junk := make([]byte, MiB)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range junk {
		junk[i] = byte(rng.Uint32())
	}
	f.WriteAt(junk, fx.Parts[1].Start+off)
	f.Close()
	size2 := repoSize(t, repoDir)
	backup(t, r, repoDir, fx.Path, 0)
	grown := repoSize(t, repoDir) - size2
	t.Logf("first backup %d bytes (used %d); unchanged second %+v; after a 1 MiB change the repository grew %d bytes", size1, first.Meta.Used, second.Stats, grown)
	if grown > 3*MiB {
		t.Errorf("a 1 MiB change grew the repository by %d bytes (> 3 MiB)", grown)
	}

	// Restore the latest, then delta-restore it again: almost nothing written.
	target := testdisk.EmptyFile(t, filepath.Join(dir, "t.img"), 160*MiB)
	snap, _ := r.LoadSnapshot(context.Background(), "latest")
	restore(t, r, snap, target, RestoreOptions{Layout: ptable.LayoutKeep})
	res := restore(t, r, snap, target, RestoreOptions{Layout: ptable.LayoutKeep, Delta: true})
	meta, _ := ParseMeta(snap.Meta)
	if res.Written*100 >= meta.Used {
		t.Errorf("delta restore onto an unchanged target wrote %d bytes of %d used", res.Written, meta.Used)
	}
	t.Logf("delta restore wrote %d of %d used bytes", res.Written, meta.Used)
	// The first snapshot still restores (to the state before the change).
	old, err := r.LoadSnapshot(context.Background(), first.Snapshot.ID)
	if err != nil {
		t.Fatal(err)
	}
	target2 := testdisk.EmptyFile(t, filepath.Join(dir, "t2.img"), 200*MiB)
	restore(t, r, old, target2, RestoreOptions{})
	testdisk.Fsck(t, target2, fx.Parts[1].Start, readTablePart(t, target2, 2).Size, "ext4")
}

func readTablePart(t *testing.T, path string, n int) ptable.Partition {
	t.Helper()
	p, ok := testdisk.ReadTable(t, path).Find(n)
	if !ok {
		t.Fatalf("%s has no partition %d", path, n)
	}
	return *p
}

// usedOffset finds a MiB-aligned MiB of an ext4 volume that is in use.
func usedOffset(t *testing.T, w *blockdev.Window, size int64) int64 {
	t.Helper()
	for off := size / 2 / MiB * MiB; off > 4*MiB; off -= MiB {
		b := make([]byte, MiB)
		w.ReadAt(b, off)
		if !blockdev.IsZero(b) && !blockdev.IsZero(b[:4096]) && !blockdev.IsZero(b[MiB-4096:]) {
			return off
		}
	}
	t.Fatal("no used MiB found")
	return 0
}

func TestEncryptedRepository(t *testing.T) {
	dir := t.TempDir()
	testenv.RequireTools(t, "sgdisk", "mkfs.ext4")
	// A file whose text is known: it must not appear in the repository.
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(tree, 0o755)
	marker := bytes.Repeat([]byte("LIFEBOAT-SECRET-MARKER the quick brown fox "), 4096)
	os.WriteFile(filepath.Join(tree, "secret.txt"), marker, 0o644)
	fx := testdisk.Build(t, filepath.Join(dir, "fx"), testdisk.Spec{Table: "gpt", Size: 64 * MiB,
		Parts: []testdisk.Part{{FS: "ext4", Size: 32 * MiB, Label: "secret"}}})
	// Put the file in with debugfs-free means: rebuild partition 1 with mkfs -d.
	part := fx.Parts[0]
	img := filepath.Join(dir, "p.img")
	testdisk.EmptyFile(t, img, part.Size)
	mk, _ := testenv.LookPath("mkfs.ext4")
	testdisk.Run(t, mk, "-q", "-F", "-d", tree, img)
	f, _ := os.OpenFile(fx.Path, os.O_WRONLY, 0)
	f.WriteAt(testdisk.ReadRange(t, img, 0, part.Size), part.Start)
	f.Close()

	repoDir := filepath.Join(dir, "repo")
	pw := []byte("correct horse battery staple")
	r := newRepo(t, repoDir, pw)
	backup(t, r, repoDir, fx.Path, 0)
	filepath.WalkDir(repoDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, []byte("LIFEBOAT-SECRET-MARKER")) || bytes.Contains(b, []byte("secret.txt")) {
			t.Errorf("%s holds plaintext", path)
		}
		return nil
	})
	if _, err := openRepo(t, repoDir, []byte("wrong")); !errors.Is(err, repo.ErrWrongPassword) {
		t.Errorf("wrong password: got %v", err)
	}
	if _, err := openRepo(t, repoDir, nil); !errors.Is(err, repo.ErrPasswordRequired) {
		t.Errorf("no password: got %v", err)
	}
	r2, err := openRepo(t, repoDir, pw)
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := r2.LoadSnapshot(context.Background(), "latest")
	vd, _, err := OpenSnapshot(context.Background(), r2, snap)
	if err != nil {
		t.Fatal(err)
	}
	// Reading at random: the snapshot's partition bytes equal the source's
	// wherever the source is in use (here: compare the whole ext4 image,
	// whose unused blocks are zero in both).
	got := make([]byte, part.Size)
	if _, err := vd.ReadAt(got, part.Start); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, testdisk.ReadRange(t, fx.Path, part.Start, part.Size)) {
		t.Error("snapshot bytes differ from the source")
	}
}

func TestBackupRefusesRepositoryOnSource(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "losetup", "mount", "umount")
	dir := t.TempDir()
	fx := extFixture(t, dir)
	// Mount partition 1 of the source and put the repository in it.
	loop := testdisk.Run(t, "losetup", "-f", "--show", "-o", itoa(fx.Parts[0].Start), "--sizelimit", itoa(fx.Parts[0].Size), fx.Path)
	defer testdisk.Run(t, "losetup", "-d", loop)
	mnt := t.TempDir()
	testdisk.Run(t, "mount", loop, mnt)
	defer testdisk.Run(t, "umount", mnt)
	repoDir := filepath.Join(mnt, "repo")
	r := newRepo(t, repoDir, nil)
	defer func() { r.Close(); r.Backend().Close() }()
	_, err := Backup(context.Background(), BackupOptions{Source: testdisk.Inspect(t, fx.Path), Repo: r, RepoPath: repoDir}, nil)
	var ref *clone.RefusedError
	if !errors.As(err, &ref) {
		t.Fatalf("repository on the source disk: got %v", err)
	}
	t.Log(err)
}

func TestExport(t *testing.T) {
	dir := t.TempDir()
	fx := extFixture(t, dir)
	repoDir := filepath.Join(dir, "repo")
	r := newRepo(t, repoDir, nil)
	res := backup(t, r, repoDir, fx.Path, 0)
	whole := filepath.Join(dir, "whole.raw")
	n, err := Export(context.Background(), ExportOptions{Repo: r, Snapshot: res.Snapshot, To: whole}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(whole); st.Size() != 160*MiB || n > 40*MiB {
		t.Errorf("export: size %d, %d bytes written", st.Size(), n)
	}
	sg, _ := testenv.LookPath("sgdisk")
	if out := testdisk.Run(t, sg, "-v", whole); !bytes.Contains([]byte(out), []byte("No problems found")) {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	testdisk.CheckCopy(t, fx, whole)
	// One partition alone: a file system image.
	p1 := filepath.Join(dir, "p1.raw")
	if _, err := Export(context.Background(), ExportOptions{Repo: r, Snapshot: res.Snapshot, Partition: 1, To: p1}, nil); err != nil {
		t.Fatal(err)
	}
	part := fx.Parts[0]
	testdisk.Fsck(t, p1, 0, part.Size, "ext4")
	got := filepath.Join(t.TempDir(), "got")
	on := part
	on.Start = 0
	testdisk.Extract(t, p1, on, got)
	testdisk.CompareTrees(t, part.SrcDir, got)
	// An existing file is never overwritten.
	if _, err := Export(context.Background(), ExportOptions{Repo: r, Snapshot: res.Snapshot, To: p1}, nil); err == nil {
		t.Error("export overwrote an existing file")
	}
}

// TestPartitionBackupAndRestore backs up one partition, restores it into a
// larger partition of another disk, and restores one partition of a whole
// disk snapshot the same way.
func TestPartitionBackupAndRestore(t *testing.T) {
	dir := t.TempDir()
	fx := extFixture(t, dir)
	repoDir := filepath.Join(dir, "repo")
	r := newRepo(t, repoDir, nil)
	partSnap := backup(t, r, repoDir, fx.Path, 1)
	if partSnap.Meta.Kind != "partition" || len(partSnap.Meta.Partitions()) != 1 {
		t.Fatalf("partition snapshot meta: %+v", partSnap.Meta)
	}
	diskSnap := backup(t, r, repoDir, fx.Path, 0)
	tgt := testdisk.Build(t, filepath.Join(dir, "tgt"), testdisk.Spec{Table: "gpt", Size: 200 * MiB,
		Parts: []testdisk.Part{{FS: "none", Size: 20 * MiB}, {FS: "none", Size: 120 * MiB}}})
	for _, c := range []struct {
		name string
		snap *repo.Snapshot
		part int
	}{{"partition snapshot", partSnap.Snapshot, 0}, {"disk snapshot", diskSnap.Snapshot, 1}} {
		t.Run(c.name, func(t *testing.T) {
			before := testdisk.ReadRange(t, tgt.Path, 0, tgt.Parts[1].Start)
			restore(t, r, c.snap, tgt.Path, RestoreOptions{Partition: c.part, ToPartition: 2, Verify: true})
			if !bytes.Equal(before, testdisk.ReadRange(t, tgt.Path, 0, tgt.Parts[1].Start)) {
				t.Error("the target's table or first partition changed")
			}
			on := fx.Parts[0]
			on.Start, on.Size = tgt.Parts[1].Start, tgt.Parts[1].Size
			testdisk.Fsck(t, tgt.Path, on.Start, on.Size, "ext4")
			got := filepath.Join(t.TempDir(), "got")
			testdisk.Extract(t, tgt.Path, on, got)
			testdisk.CompareTrees(t, fx.Parts[0].SrcDir, got)
		})
	}
	// A partition snapshot holds nothing else.
	_, _, err := PlanRestore(context.Background(), RestoreOptions{Repo: r, Snapshot: partSnap.Snapshot, Target: testdisk.Inspect(t, tgt.Path), Partition: 2, ToPartition: 2})
	if err == nil || !strings.Contains(err.Error(), "holds only partition 1") {
		t.Errorf("restoring partition 2 of a partition-1 snapshot: %v", err)
	}
}
