package roundtrip

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
	// PIN=1 gives the servers the last core and the backups the others,
	// as when the server is a machine of its own: on loopback they
	// otherwise compete for the same cores.
	pin := os.Getenv("PIN") == "1"
	if pin {
		if runtime.NumCPU() < 2 {
			b.Fatal("PIN=1 needs at least 2 cores")
		}
		pinThreads(b, runtime.NumCPU()-1, runtime.NumCPU())
	}
	smb := smbtest.Start(b)
	nfs := nfstest.Start(b)
	sftp := sftptest.Start(b)
	s3 := s3test.Start(b)
	s3.MakeBucket(b, "bench")
	if pin {
		pinThreads(b, 0, runtime.NumCPU()-1) // the servers started above keep the last core
		runtime.GOMAXPROCS(runtime.NumCPU() - 1)
	}
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
	times, cpus, others := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
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
			startBusy, _ := machineBusy()
			startCPU := processCPU()
			start := time.Now()
			res, err := image.Backup(ctx, image.BackupOptions{Source: disk, Repo: r}, &progress.Counters{})
			if err != nil {
				b.Fatalf("%s: backup: %v", be.name, err)
			}
			secs := time.Since(start).Seconds()
			endBusy, cores := machineBusy()
			cpu, busy := processCPU()-startCPU, endBusy-startBusy
			r.Close()
			store.Close()
			used = res.Meta.Used
			times[be.name] = append(times[be.name], secs)
			cpus[be.name] = append(cpus[be.name], cpu)
			others[be.name] = append(others[be.name], busy-cpu)
			// The CPU figures tell a CPU-bound backup from one that waits:
			// this process's CPU, and the whole machine's (the servers run
			// here too) against the cores' time.
			fmt.Printf("round %d %-5s %6.2f s  %7.1f MiB/s  cpu: backup %.2f s, others %.2f s, idle %.0f%%\n", round+1, be.name, secs,
				float64(used)/mib/secs, cpu, busy-cpu, 100*(1-busy/(secs*float64(cores))))
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
	if pin {
		cache += fmt.Sprintf(", servers on core %d and backups on cores 0-%d", runtime.NumCPU()-1, runtime.NumCPU()-2)
	}
	fmt.Fprintf(&out, "\nsource %s, %.1f MiB used, %s; medians over %d rounds:\n", src, float64(used)/mib, cache, rounds)
	for _, be := range backends {
		m := median(times[be.name])
		fmt.Fprintf(&out, "%-6s %7.2f s %8.1f MiB/s", be.name, m, float64(used)/mib/m)
		if len(times["local"]) > 0 {
			fmt.Fprintf(&out, "   speed / local %.2f (goal >= 0.8)", median(times["local"])/m)
		}
		fmt.Fprintf(&out, "   cpu: backup %.2f s, others %.2f s", median(cpus[be.name]), median(others[be.name]))
		fmt.Fprintln(&out)
	}
	fmt.Print(out.String())
}

// processCPU is this process's user and system CPU time so far, in seconds.
func processCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// machineBusy is the CPU time all cores spent not idle so far, in
// seconds, and the number of cores, from /proc/stat (USER_HZ ticks: 100 a
// second on Linux). Idle, iowait and the time a hypervisor stole are not
// busy; guest time is already counted in user.
func machineBusy() (busy float64, cores int) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 1
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "cpu":
			for i, v := range f[1:] {
				n, _ := strconv.ParseFloat(v, 64)
				if i != 3 && i != 4 && i < 7 {
					busy += n
				}
			}
		case len(f) > 0 && strings.HasPrefix(f[0], "cpu"):
			cores++
		}
	}
	return busy / 100, max(cores, 1)
}

// pinThreads moves every thread of this process to the cores [from, to);
// threads started later inherit it, and so do the processes they start.
// The runtime may start a thread from one not yet moved while this runs,
// so it goes over the threads again until a pass finds none to move.
func pinThreads(b *testing.B, from, to int) {
	var set unix.CPUSet
	for c := from; c < to; c++ {
		set.Set(c)
	}
	for pass := 0; ; pass++ {
		if pass == 100 {
			b.Fatalf("pin this process's threads to cores %d-%d: new threads keep appearing", from, to-1)
		}
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			b.Fatalf("list this process's threads: %v", err)
		}
		moved := 0
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			var cur unix.CPUSet
			if err := unix.SchedGetaffinity(tid, &cur); err != nil {
				continue // the thread has ended
			}
			if cur == set {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				b.Fatalf("pin thread %d to cores %d-%d: %v", tid, from, to-1, err)
			}
			moved++
		}
		if moved == 0 {
			return
		}
	}
}
