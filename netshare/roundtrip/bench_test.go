package roundtrip

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/engine/image"
	"github.com/lifeboat/lifeboat/engine/progress"
	"github.com/lifeboat/lifeboat/engine/repo"
	"github.com/lifeboat/lifeboat/internal/testdisk"
	"github.com/lifeboat/lifeboat/internal/testenv"
	"github.com/lifeboat/lifeboat/netshare"
	"github.com/lifeboat/lifeboat/netshare/local"
	"github.com/lifeboat/lifeboat/netshare/nfs/nfstest"
	"github.com/lifeboat/lifeboat/netshare/s3/s3test"
	"github.com/lifeboat/lifeboat/netshare/sftp/sftptest"
	"github.com/lifeboat/lifeboat/netshare/smb/smbtest"
)

// BenchmarkBackends is bench/netshare.sh's measurement, not a test: the
// same backup (default options) into a local directory and into each
// network backend on loopback, in rounds, each backend once a round, then
// medians and the ratio to local (the goal is at least 0.8). The source is
// LIFEBOAT_BENCH_IMAGE, else an ext4 image of /usr/share made here; COLD=1
// drops the page cache before each backup. Run:
//
//	go test -run '^$' -bench BenchmarkBackends -benchtime 1x -timeout 60m ./netshare/roundtrip
//
// ROUNDS=N sets the rounds (3), ONLY=local,sftp the backends (all).
func BenchmarkBackends(b *testing.B) {
	src := os.Getenv("LIFEBOAT_BENCH_IMAGE")
	if src == "" {
		testenv.RequireTools(b, "mkfs.ext4")
		mkfs, _ := testenv.LookPath("mkfs.ext4")
		src = filepath.Join(b.TempDir(), "usrshare.img")
		if out, err := exec.Command(mkfs, "-q", "-F", "-d", "/usr/share", src, "2G").CombinedOutput(); err != nil {
			b.Fatalf("mkfs.ext4 -d /usr/share: %v\n%s", err, out)
		}
	}
	rounds := 3
	if n := os.Getenv("ROUNDS"); n != "" {
		fmt.Sscan(n, &rounds)
	}
	// COLD=1 drops the page cache before each backup, as bench/backup.sh
	// does: a real backup reads its disk, not memory.
	cold := os.Getenv("COLD") == "1"
	smb := smbtest.Start(b)
	nfs := nfstest.Start(b)
	sftp := sftptest.Start(b)
	s3 := s3test.Start(b)
	s3.MakeBucket(b, "bench")
	localDir := b.TempDir()
	sftpDir := b.TempDir()
	type backend struct {
		name string
		open func(run string) (netshare.Backend, error)
	}
	ctx := context.Background()
	backends := []backend{
		{"local", func(run string) (netshare.Backend, error) { return local.New(filepath.Join(localDir, run)) }},
		{"smb", func(run string) (netshare.Backend, error) {
			return netshare.OpenWith(ctx, smb.URL(run).String(), netshare.Options{PasswordFile: smb.PasswordFile})
		}},
		{"nfs", func(run string) (netshare.Backend, error) {
			return netshare.OpenWith(ctx, nfs.URL(run).String(), netshare.Options{})
		}},
		{"sftp", func(run string) (netshare.Backend, error) {
			return netshare.OpenWith(ctx, sftp.URL("root", filepath.Join(sftpDir, run)).String(), sftp.Options())
		}},
		{"s3", func(run string) (netshare.Backend, error) {
			u := s3.URL("bench", run)
			return netshare.OpenWith(ctx, (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String(), s3.Options())
		}},
	}
	// ONLY=local,s3 runs just those backends (to profile one at a time).
	if only := os.Getenv("ONLY"); only != "" {
		var keep []backend
		for _, be := range backends {
			if slices.Contains(strings.Split(only, ","), be.name) {
				keep = append(keep, be)
			}
		}
		backends = keep
	}
	disk := testdisk.Inspect(b, src)
	times := map[string][]float64{}
	var used int64
	for round := range rounds {
		for _, be := range backends {
			run := fmt.Sprintf("r%d", round)
			store, err := be.open(run)
			if err != nil {
				b.Fatalf("%s: %v", be.name, err)
			}
			r, err := repo.Init(ctx, netshare.WithRetry(store, netshare.RetryPolicy{}), repo.InitOptions{})
			if err != nil {
				b.Fatalf("%s: init: %v", be.name, err)
			}
			if cold {
				syscall.Sync()
				if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200); err != nil {
					b.Fatalf("drop the page cache: %v", err)
				}
			}
			start := time.Now()
			res, err := image.Backup(ctx, image.BackupOptions{Source: disk, Repo: r}, &progress.Counters{})
			if err != nil {
				b.Fatalf("%s: backup: %v", be.name, err)
			}
			secs := time.Since(start).Seconds()
			r.Close()
			store.Close()
			used = res.Meta.Used
			times[be.name] = append(times[be.name], secs)
			fmt.Printf("round %d %-5s %6.2f s  %7.1f MiB/s\n", round+1, be.name, secs, float64(used)/mib/secs)
		}
		// The next round writes new repositories; free this one's space.
		os.RemoveAll(filepath.Join(localDir, fmt.Sprintf("r%d", round)))
		os.RemoveAll(filepath.Join(smb.Dir, fmt.Sprintf("r%d", round)))
		os.RemoveAll(filepath.Join(nfs.Dir, fmt.Sprintf("r%d", round)))
		os.RemoveAll(filepath.Join(sftpDir, fmt.Sprintf("r%d", round)))
		os.RemoveAll(filepath.Join(s3.Dir, "root", "bench", fmt.Sprintf("r%d", round)))
	}
	median := func(v []float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	var out strings.Builder
	cache := "source in the page cache"
	if cold {
		cache = "page cache dropped before each backup"
	}
	fmt.Fprintf(&out, "\nsource %s, %.1f MiB used, %s; medians over %d rounds:\n", src, float64(used)/mib, cache, rounds)
	for _, be := range backends {
		m := median(times[be.name])
		fmt.Fprintf(&out, "%-6s %7.2f s %8.1f MiB/s", be.name, m, float64(used)/mib/m)
		if len(times["local"]) > 0 {
			fmt.Fprintf(&out, "   speed / local %.2f (goal >= 0.8)", median(times["local"])/m)
		}
		fmt.Fprintln(&out)
	}
	fmt.Print(out.String())
}
