package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/netshare"
	"github.com/lifeboat/lifeboat/netshare/local"
	"github.com/lifeboat/lifeboat/netshare/netsharetest"
)

// tree lists the files under dir with their sizes.
func tree(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func ids(snaps []*Snapshot) []string {
	var out []string
	for _, s := range snaps {
		out = append(out, s.ID)
	}
	return out
}

// crashedBackup leaves packs no index lists, as a backup killed before its
// Flush does.
func (f *fixture) crashedBackup(t *testing.T) {
	t.Helper()
	w := f.r.NewWriter(WriterOptions{PackSize: 16 << 10, GroupSize: -1})
	backupStream(context.Background(), t, f.r, w, "lost", randBytes(999, 48<<10), fixChunk)
	w.wg.Wait()
	if w.Stats().Packs == 0 {
		t.Fatal("crashed backup uploaded no pack")
	}
}

func TestPruneAfterForget(t *testing.T) {
	for _, pw := range [][]byte{nil, []byte("secret")} {
		t.Run(fmt.Sprintf("encrypted=%v", pw != nil), func(t *testing.T) {
			ctx := context.Background()
			f := standardFixture(t, pw)
			r := f.reopen(t)
			if _, err := r.Forget(ctx, Policy{KeepLast: 2}, false); err != nil {
				t.Fatal(err)
			}
			before := dirBytes(t, f.dir, "data")
			dry, err := r.Prune(ctx, PruneOptions{DryRun: true})
			if err != nil {
				t.Fatal(err)
			}
			if after := dirBytes(t, f.dir, "data"); after != before {
				t.Fatal("dry run changed the packs")
			}
			var phases []string
			stats, err := r.Prune(ctx, PruneOptions{Progress: func(phase string, _, _ int64) {
				if len(phases) == 0 || phases[len(phases)-1] != phase {
					phases = append(phases, phase)
				}
			}})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("dry %+v, real %+v, phases %v", dry, stats, phases)
			freed := before - dirBytes(t, f.dir, "data")
			if stats.BytesFreed != freed {
				t.Fatalf("stats say %d bytes freed, the directory shrank by %d", stats.BytesFreed, freed)
			}
			if dry.PacksDeleted != stats.PacksDeleted || dry.PacksRepacked != stats.PacksRepacked || dry.BytesRepacked != stats.BytesRepacked {
				t.Fatalf("dry run %+v differs from the run %+v", dry, stats)
			}
			// The forgotten snapshots each had 32 KiB of random data of
			// their own, stored as is, plus lists and pack headers; some of
			// it may stay in packs still used above the repack threshold.
			unique := int64(2 * 32 << 10)
			if freed < unique*3/4 || freed > unique+unique/4 {
				t.Fatalf("prune freed %d bytes, want about %d", freed, unique)
			}
			if stats.PacksDeleted == 0 || stats.IndexesReplaced != 4 || !slices.Equal(phases, []string{"snapshots", "repack", "delete"}) && !slices.Equal(phases, []string{"snapshots", "delete"}) {
				t.Fatalf("stats %+v, phases %v", stats, phases)
			}
			if idx, _ := filepath.Glob(filepath.Join(f.dir, "index", "*")); len(idx) != 1 {
				t.Fatalf("index files after prune: %v", idx)
			}
			kept := ids(f.snaps[2:])
			f.verifyRestores(t, r, kept) // the pruning Repo's own index
			r2 := f.reopen(t)
			f.verifyRestores(t, r2, kept)
			if rep := mustCheck(t, r2, CheckOptions{ReadData: true}); !rep.OK() || len(rep.Warnings) != 0 {
				t.Fatalf("after prune: %q %v %q", rep.Problems, rep.Damaged, rep.Warnings)
			}
			for _, s := range f.snaps[:2] {
				if _, err := r2.LoadSnapshot(ctx, s.ID); !errors.Is(err, ErrNotFound) {
					t.Fatalf("forgotten snapshot: %v", err)
				}
			}
			// Nothing left to do, and a backup after prune dedups against
			// the new index and restores.
			again, err := r.Prune(ctx, PruneOptions{})
			if err != nil || again.PacksDeleted != 0 || again.PacksRepacked != 0 || again.IndexesReplaced != 0 {
				t.Fatalf("second prune: %+v, %v", again, err)
			}
			f.r = r
			s := f.add(t, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), "host1", nil, map[string][]byte{"disk": f.data[f.snaps[3].ID]["disk"]})
			f.verifyRestores(t, f.reopen(t), append(kept, s.ID))
		})
	}
}

func TestPruneRepacksHalfUsedPack(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	f.packSize = 1 << 20 // one pack per backup
	x := randBytes(1, 16*fixChunk)
	y := append(slices.Clone(x[9*fixChunk:]), randBytes(2, 9*fixChunk)...)
	sx := f.add(t, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "h", nil, map[string][]byte{"d": x})
	sy := f.add(t, time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), "h", nil, map[string][]byte{"d": y})
	packs := tree(t, filepath.Join(f.dir, "data"))
	if len(packs) != 2 {
		t.Fatalf("packs %v, want 2", packs)
	}
	r := f.reopen(t)
	if err := r.RemoveSnapshot(ctx, sx.ID); err != nil {
		t.Fatal(err)
	}
	before := tree(t, f.dir)
	dry, err := r.Prune(ctx, PruneOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if after := tree(t, f.dir); !equalTrees(before, after) {
		t.Fatalf("dry run changed the repository: %v -> %v", before, after)
	}
	stats, err := r.Prune(ctx, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// X's pack holds 16 chunks and X's list; Y still needs 7 of the chunks
	// (43%, under the default 50%): they move to a new pack.
	want := PruneStats{PacksDeleted: 1, PacksRepacked: 1, PacksKept: 1, BytesRepacked: 7 * fixChunk, IndexesReplaced: 2}
	got := *stats
	got.BytesFreed = 0
	if got != want || dry.PacksRepacked != 1 || dry.PacksDeleted != 1 {
		t.Fatalf("stats %+v (dry %+v), want %+v", stats, dry, want)
	}
	after := tree(t, filepath.Join(f.dir, "data"))
	if len(after) != 2 {
		t.Fatalf("packs after: %v", after)
	}
	var newPack int64
	for name, size := range after {
		if _, old := packs[name]; !old {
			newPack = size
		}
	}
	if newPack < 7*fixChunk || newPack > 7*fixChunk+2048 {
		t.Fatalf("new pack of %d bytes for 7 chunks of %d", newPack, fixChunk)
	}
	if freed := dirBytes(t, f.dir, "data") - sum(packs); -freed != stats.BytesFreed {
		t.Fatalf("freed %d, stats %d", -freed, stats.BytesFreed)
	}
	f.verifyRestores(t, f.reopen(t), []string{sy.ID})
	if rep := mustCheck(t, f.reopen(t), CheckOptions{ReadData: true}); !rep.OK() || len(rep.Warnings) != 0 {
		t.Fatalf("after repack: %+v", rep)
	}
	// A negative threshold never repacks.
	if err := r.RemoveSnapshot(ctx, sy.ID); err != nil {
		t.Fatal(err)
	}
	stats, err = r.Prune(ctx, PruneOptions{RepackBelow: -1})
	if err != nil || stats.PacksDeleted != 2 || stats.PacksRepacked != 0 {
		t.Fatalf("prune of everything: %+v, %v", stats, err)
	}
	if n := dirBytes(t, f.dir, "data"); n != 0 {
		t.Fatalf("%d bytes of packs left in an empty repository", n)
	}
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func equalTrees(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		// Lock objects come and go; everything else must stay.
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestPruneRefusesWhenLocked(t *testing.T) {
	ctx := context.Background()
	f := standardFixture(t, nil)
	r := f.reopen(t)
	l, err := f.reopen(t).Lock(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	var le *LockedError
	if _, err := r.Prune(ctx, PruneOptions{}); !errors.Is(err, ErrLocked) || !errors.As(err, &le) || le.Holder.Exclusive {
		t.Fatalf("prune beside a backup's lock: %v", err)
	}
	// A dry run only reads and shares.
	if _, err := r.Prune(ctx, PruneOptions{DryRun: true}); err != nil {
		t.Fatalf("dry run beside a shared lock: %v", err)
	}
}

func TestPruneOrphansAndLostIndex(t *testing.T) {
	ctx := context.Background()
	f := standardFixture(t, nil)
	f.crashedBackup(t)
	r := f.reopen(t)
	rep := mustCheck(t, r, CheckOptions{})
	if !rep.OK() || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "in no index") {
		t.Fatalf("orphans: %+v", rep)
	}
	// Lose the index file of the last backup: its chunks and lists are in
	// packs no index lists now, and prune must index them, not delete them.
	last := f.snaps[3].Streams[0].Chunks.Parts[0]
	for name := range tree(t, filepath.Join(f.dir, "index")) {
		b, _ := os.ReadFile(filepath.Join(f.dir, "index", name))
		p, _ := openPlain(b)
		ix, err := parseIndex(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, pk := range ix.Packs {
			for _, e := range pk.Entries {
				if e.ID == last {
					if err := os.Remove(filepath.Join(f.dir, "index", name)); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	r = f.reopen(t)
	if rep := mustCheck(t, r, CheckOptions{}); rep.OK() {
		t.Fatal("check misses a lost index file")
	}
	stats, err := r.Prune(ctx, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", stats)
	r = f.reopen(t)
	if rep := mustCheck(t, r, CheckOptions{ReadData: true}); !rep.OK() || len(rep.Warnings) != 0 {
		t.Fatalf("after prune: %+v", rep)
	}
	f.verifyRestores(t, r, ids(f.snaps))
}

// killable stands for a process that dies: from the first injected fault
// on, none of its saves or removes reach storage. It records the calls.
type killable struct {
	netshare.Backend
	mu    sync.Mutex
	dead  bool
	calls []netsharetest.Op
}

func (k *killable) do(op netsharetest.Op, name string, call func() error) error {
	k.mu.Lock()
	if k.dead {
		k.mu.Unlock()
		return fmt.Errorf("%s %s: process killed", op, name)
	}
	k.calls = append(k.calls, op)
	k.mu.Unlock()
	err := call()
	if errors.Is(err, netsharetest.ErrInjected) {
		k.mu.Lock()
		k.dead = true
		k.mu.Unlock()
	}
	return err
}

func (k *killable) Save(ctx context.Context, name string, size int64, r io.ReadSeeker) error {
	return k.do(netsharetest.OpSave, name, func() error { return k.Backend.Save(ctx, name, size, r) })
}

func (k *killable) Remove(ctx context.Context, name string) error {
	return k.do(netsharetest.OpRemove, name, func() error { return k.Backend.Remove(ctx, name) })
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	for name := range tree(t, src) {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dst, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPruneCrashSafety kills prune at every one of its saves and removes,
// once before the call lands and once just after, then checks the
// repository and runs prune again.
func TestPruneCrashSafety(t *testing.T) {
	ctx := context.Background()
	f := standardFixture(t, nil)
	f.crashedBackup(t)
	if _, err := f.reopen(t).Forget(ctx, Policy{KeepLast: 2}, false); err != nil {
		t.Fatal(err)
	}
	kept := ids(f.snaps[2:])

	open := func(t *testing.T, faults *netsharetest.Faults) (string, *killable, *Repo) {
		dir := t.TempDir()
		copyTree(t, f.dir, dir)
		be, err := local.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { be.Close() })
		k := &killable{Backend: netsharetest.WithFaults(be, faults)}
		r, err := Open(ctx, k, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return dir, k, r
	}

	// A clean run, to learn the sequence of calls and the end state.
	cleanDir, rec, r := open(t, &netsharetest.Faults{})
	stats, err := r.Prune(ctx, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if stats.PacksRepacked == 0 || stats.PacksDeleted <= stats.PacksRepacked {
		t.Fatalf("the fixture should make prune repack and delete: %+v", stats)
	}
	seq := rec.calls
	clean := tree(t, filepath.Join(cleanDir, "data"))
	t.Logf("prune: %+v in %d saves and removes", stats, len(seq))

	for k := range seq {
		for _, kind := range []netsharetest.Kind{netsharetest.PermanentFault, netsharetest.LostReply} {
			op := seq[k]
			nth := 0
			for _, o := range seq[:k+1] {
				if o == op {
					nth++
				}
			}
			name := fmt.Sprintf("call%d-%s%d-kind%d", k+1, op, nth, kind)
			t.Run(name, func(t *testing.T) {
				faults := &netsharetest.Faults{}
				faults.Add(netsharetest.Fault{Op: op, Call: nth, Kind: kind})
				dir, _, r := open(t, faults)
				_, err := r.Prune(ctx, PruneOptions{})
				if err == nil {
					t.Fatal("prune survived its own death")
				}
				// A new process: the repository checks clean and every kept
				// snapshot restores.
				be, err := local.New(dir)
				if err != nil {
					t.Fatal(err)
				}
				defer be.Close()
				r2, err := Open(ctx, be, nil)
				if err != nil {
					t.Fatalf("open after the crash: %v", err)
				}
				defer r2.Close()
				if rep := mustCheck(t, r2, CheckOptions{ReadData: true}); !rep.OK() {
					t.Fatalf("after a crash at %s: %q %v", name, rep.Problems, rep.Damaged)
				}
				f.verifyRestores(t, r2, kept)
				// The dead process's lock is stale (its pid is gone; here
				// the pid is ours, so let it age out), and prune runs again.
				r2.lockStale = time.Nanosecond
				if _, err := r2.Prune(ctx, PruneOptions{}); err != nil {
					t.Fatalf("prune again: %v", err)
				}
				if rep := mustCheck(t, r2, CheckOptions{ReadData: true}); !rep.OK() || len(rep.Warnings) != 0 {
					t.Fatalf("after the second prune: %+v", rep)
				}
				f.verifyRestores(t, r2, kept)
				if got := tree(t, filepath.Join(dir, "data")); !equalTrees(got, clean) {
					t.Fatalf("packs after the second prune:\n%v\nwant as after one clean prune:\n%v", sortedKeys(got), sortedKeys(clean))
				}
			})
		}
	}
}

// TestLockSeesPrune: a process that opened the repository before another
// pruned it must not dedup against the blobs prune removed, or its next
// snapshot would point at missing data.
func TestLockSeesPrune(t *testing.T) {
	ctx := context.Background()
	f := standardFixture(t, nil)
	early := f.reopen(t) // opened before the prune
	pruner := f.reopen(t)
	gone := f.snaps[0]
	if err := pruner.RemoveSnapshot(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := pruner.Prune(ctx, PruneOptions{}); err != nil {
		t.Fatal(err)
	}
	own := early.Hash(f.data[gone.ID]["disk"][:fixChunk]) // snapshot 0's own data
	if !early.Has(own) {
		t.Fatal("fixture: the early process should still list the pruned chunk")
	}
	l, err := early.Lock(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if early.Has(own) {
		t.Fatal("after Lock the index still lists a chunk prune removed")
	}
	// The same backup again stores the chunk anew and restores.
	f.r = early
	s := f.add(t, gone.Time, gone.Host, nil, f.data[gone.ID])
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	f.verifyRestores(t, f.reopen(t), []string{s.ID})
	if rep := mustCheck(t, f.reopen(t), CheckOptions{ReadData: true}); !rep.OK() {
		t.Fatalf("%+v", rep)
	}
}
