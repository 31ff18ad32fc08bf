package rescue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/lifeboat/lifeboat/rescue/kmod"
)

// Limits of the sysfs walk: a real machine has a few thousand devices; a
// broken sysfs must not keep boot walking forever.
const (
	maxSysEntries = 200000
	maxSysDepth   = 40
)

// Inserter loads one module file into the kernel. The real one calls
// finit_module(2); tests record the calls.
type Inserter interface {
	Insert(path string) error
}

// Loader loads modules from one modules directory, each at most once.
type Loader struct {
	Dir   string // /lib/modules/<version>
	Index *kmod.Index
	Ins   Inserter
	// Log receives a line per module loaded or failed.
	Log   io.Writer
	tried map[string]bool
}

// OpenLoader reads the index files of dir.
func OpenLoader(dir string, ins Inserter, log io.Writer) (*Loader, error) {
	ix := kmod.NewIndex()
	for _, f := range []struct {
		name string
		read func(io.Reader) error
	}{{"modules.dep", ix.ReadDep}, {"modules.alias", ix.ReadAlias}, {"modules.softdep", ix.ReadSoftdep}} {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		if errors.Is(err, fs.ErrNotExist) && f.name != "modules.dep" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open modules: %w", err)
		}
		if err := f.read(bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("open modules in %s: %w", dir, err)
		}
	}
	return &Loader{Dir: dir, Index: ix, Ins: ins, Log: log, tried: map[string]bool{}}, nil
}

// Load loads the named modules (names or aliases) with their dependencies
// and returns how many it loaded now. A module that fails is reported and
// not tried again; a module already in the kernel counts as loaded.
func (l *Loader) Load(names []string) int {
	order, _ := l.Index.Order(names)
	n := 0
	for _, m := range order {
		if l.tried[m] {
			continue
		}
		l.tried[m] = true
		err := l.Ins.Insert(filepath.Join(l.Dir, l.Index.Path[m]))
		switch {
		case err == nil:
			n++
			fmt.Fprintf(l.Log, "module %s loaded\n", m)
		case errors.Is(err, os.ErrExist):
		default:
			fmt.Fprintf(l.Log, "module %s: %v\n", m, err)
		}
	}
	return n
}

// Modaliases returns the distinct modalias values of the devices under
// sysDevices (/sys/devices), sorted.
func Modaliases(sysDevices string) ([]string, error) {
	seen := map[string]bool{}
	count := 0
	err := filepath.WalkDir(sysDevices, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// Attributes vanish while devices come and go.
			if p == sysDevices {
				return err
			}
			return nil
		}
		count++
		if count > maxSysEntries {
			return fmt.Errorf("more than %d entries", maxSysEntries)
		}
		if d.IsDir() {
			if strings.Count(strings.TrimPrefix(p, sysDevices), "/") > maxSysDepth {
				return fs.SkipDir
			}
			return nil
		}
		if d.Name() != "modalias" || d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		b, err := readSmall(p, 4096)
		if err != nil {
			return nil
		}
		if a := strings.TrimSpace(string(b)); a != "" {
			seen[a] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s for modaliases: %w", sysDevices, err)
	}
	out := make([]string, 0, len(seen))
	for a := range seen {
		out = append(out, a)
	}
	sort.Strings(out)
	return out, nil
}

func readSmall(p string, max int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max))
}

// Settle loads the driver of every device sysfs shows, again and again as
// loaded drivers reveal new devices (a PCI virtio function, then the disk on
// it), until a round loads nothing and the block devices stop changing for
// quiet, or until limit passes.
func (l *Loader) Settle(ctx context.Context, sysRoot string, quiet, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	lastBlocks, stableSince := "", time.Now()
	for {
		aliases, err := Modaliases(filepath.Join(sysRoot, "devices"))
		if err != nil {
			return fmt.Errorf("settle devices: %w", err)
		}
		var mods []string
		for _, a := range aliases {
			mods = append(mods, l.Index.MatchAlias(a)...)
		}
		loaded := l.Load(mods)
		blocks := listNames(filepath.Join(sysRoot, "block"))
		if loaded > 0 || blocks != lastBlocks {
			lastBlocks, stableSince = blocks, time.Now()
		} else if time.Since(stableSince) >= quiet {
			return nil
		}
		if time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("settle devices: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func listNames(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}
