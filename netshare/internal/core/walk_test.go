package core

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWalkDirs(t *testing.T) {
	ctx := context.Background()
	// A small tree: every directory visited once, paths joined from ".".
	tree := map[string][]string{".": {"data", "index"}, "data": {"00", "01"}, "data/00": nil, "data/01": nil, "index": nil}
	var visited []string
	err := WalkDirs(ctx, func(_ context.Context, dir string) ([]string, error) {
		visited = append(visited, dir)
		var subs []string
		for _, name := range tree[dir] {
			subs = append(subs, JoinPath(dir, name))
		}
		return subs, nil
	})
	slices.Sort(visited)
	if err != nil || !slices.Equal(visited, []string{".", "data", "data/00", "data/01", "index"}) {
		t.Fatalf("visited %v, %v", visited, err)
	}

	// A loop (a link to a parent) stops at MaxWalkDepth levels.
	depth := 0
	err = WalkDirs(ctx, func(_ context.Context, dir string) ([]string, error) {
		depth++
		return []string{JoinPath(dir, "loop")}, nil
	})
	if err != nil || depth != MaxWalkDepth {
		t.Fatalf("a looping tree: %d levels visited (%v), want %d", depth, err, MaxWalkDepth)
	}

	// A tree wider than MaxWalkDirs stops with a permanent error.
	n := 0
	err = WalkDirs(ctx, func(_ context.Context, dir string) ([]string, error) {
		n++
		if dir != "." {
			return nil, nil
		}
		subs := make([]string, MaxWalkDirs+5)
		for i := range subs {
			subs[i] = fmt.Sprint(i)
		}
		return subs, nil
	})
	if !IsPermanent(err) || n != MaxWalkDirs {
		t.Fatalf("a huge tree: %d visited, %v; want a permanent error after %d", n, err, MaxWalkDirs)
	}

	// visit's error stops the walk as is; so does a cancelled context.
	boom := errors.New("boom")
	if err := WalkDirs(ctx, func(context.Context, string) ([]string, error) { return nil, boom }); err != boom {
		t.Fatalf("visit's error: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := WalkDirs(cctx, func(context.Context, string) ([]string, error) { return nil, nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// fakeTree is a directory tree for ListTree: directories map to their
// entries; a name missing from the map is a directory that is gone.
type fakeTree map[string][]Entry

func (ft fakeTree) readDir(reads *[]string) func(context.Context, string) ([]Entry, error) {
	var mu sync.Mutex
	return func(_ context.Context, dir string) ([]Entry, error) {
		mu.Lock()
		*reads = append(*reads, dir)
		mu.Unlock()
		e, ok := ft[dir]
		if !ok {
			return nil, fmt.Errorf("no directory %s: %w", dir, fs.ErrNotExist)
		}
		return e, nil
	}
}

func TestListTree(t *testing.T) {
	ctx := context.Background()
	tree := fakeTree{
		".": {{Name: "config", Regular: true, Size: 1}, {Name: "data", Dir: true}, {Name: "index", Dir: true},
			{Name: "link", Dir: false}, {Name: "bad\\name", Dir: true}},
		"data":        {{Name: "00", Dir: true}, {Name: "01", Dir: true}, {Name: "gone", Dir: true}},
		"data/00":     {{Name: "00aa", Regular: true, Size: 10}, {Name: "00bb.tmp-0123456789abcdef", Regular: true, Size: 3}},
		"data/01":     {{Name: "01cc", Regular: true, Size: 20}, {Name: "sub", Dir: true}},
		"data/01/sub": {{Name: "deep", Regular: true, Size: 5}},
		"index":       {{Name: "i1", Regular: true, Size: 7}},
	}
	list := func(prefix string, workers int) (map[string]int64, []string, error) {
		got := map[string]int64{}
		var reads []string
		err := ListTree(ctx, prefix, workers, tree.readDir(&reads), func(fi FileInfo) error {
			got[fi.Name] = fi.Size
			return nil
		})
		slices.Sort(reads)
		return got, reads, err
	}
	got, reads, err := list("", 1)
	want := map[string]int64{"config": 1, "data/00/00aa": 10, "data/01/01cc": 20, "data/01/sub/deep": 5, "index/i1": 7}
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("List(\"\") = %v, %v; want %v (temporary files, links, odd names and gone directories left out)", got, err, want)
	}
	if !slices.Equal(reads, []string{".", "data", "data/00", "data/01", "data/01/sub", "data/gone", "index"}) {
		t.Fatalf("List(\"\") read %v", reads)
	}
	// A prefix reads only the directories on its way and below it.
	got, reads, err = list("data/0", 4)
	if err != nil || !maps.Equal(got, map[string]int64{"data/00/00aa": 10, "data/01/01cc": 20, "data/01/sub/deep": 5}) {
		t.Fatalf("List(data/0) = %v, %v", got, err)
	}
	if !slices.Equal(reads, []string{"data", "data/00", "data/01", "data/01/sub"}) {
		t.Fatalf("List(data/0) read %v, want only data and what lies below it", reads)
	}
	got, reads, err = list("data/01/", 2)
	if err != nil || !maps.Equal(got, map[string]int64{"data/01/01cc": 20, "data/01/sub/deep": 5}) || !slices.Equal(reads, []string{"data/01", "data/01/sub"}) {
		t.Fatalf("List(data/01/) = %v, %v; read %v", got, err, reads)
	}
	// No directory where the prefix points: nothing, no error.
	if got, _, err := list("nothere/x", 1); err != nil || len(got) != 0 {
		t.Fatalf("List under a missing directory = %v, %v", got, err)
	}
	if err := ListTree(ctx, "../x", 1, tree.readDir(new([]string)), func(FileInfo) error { return nil }); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("List(../x): %v, want ErrInvalidName", err)
	}

	// fn's error comes back as it is; a read's error names the directory.
	stop := errors.New("stop")
	if err := ListTree(ctx, "", 1, tree.readDir(new([]string)), func(FileInfo) error { return stop }); err != stop {
		t.Fatalf("fn's error came back as %v", err)
	}
	boom := errors.New("boom")
	err = ListTree(ctx, "", 2, func(_ context.Context, dir string) ([]Entry, error) {
		if dir == "data/01" {
			return nil, boom
		}
		return tree[dir], nil
	}, func(FileInfo) error { return nil })
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), `read directory "data/01"`) {
		t.Fatalf("a failing read: %v", err)
	}

	// At most workers reads at once, and fn never runs during one.
	var mu sync.Mutex
	inFlight, most := 0, 0
	wide := fakeTree{".": nil}
	for i := range 40 {
		d := fmt.Sprintf("d%02d", i)
		wide["."] = append(wide["."], Entry{Name: d, Dir: true})
		wide[d] = []Entry{{Name: "f", Regular: true}}
	}
	err = ListTree(ctx, "", 3, func(_ context.Context, dir string) ([]Entry, error) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		time.Sleep(time.Millisecond)
		mu.Lock()
		inFlight--
		mu.Unlock()
		return wide[dir], nil
	}, func(FileInfo) error {
		mu.Lock()
		defer mu.Unlock()
		if inFlight != 0 {
			return fmt.Errorf("fn called with %d reads in flight", inFlight)
		}
		return nil
	})
	if err != nil || most > 3 || most < 2 {
		t.Fatalf("wide tree: %v; most reads at once %d, want 2 or 3", err, most)
	}

	// A cancelled context stops the walk.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := ListTree(cctx, "", 1, tree.readDir(new([]string)), func(FileInfo) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// TestListTreeBounds: a directory linked to its parent, as a server may
// show it, stops at MaxWalkDepth levels; a tree with more than
// MaxWalkDirs directories stops with a permanent error.
func TestListTreeBounds(t *testing.T) {
	ctx := context.Background()
	levels := 0
	err := ListTree(ctx, "", 1, func(_ context.Context, dir string) ([]Entry, error) {
		levels++
		return []Entry{{Name: "loop", Dir: true}}, nil
	}, func(FileInfo) error { return nil })
	if err != nil || levels != MaxWalkDepth {
		t.Fatalf("a looping tree: %d levels read (%v), want %d", levels, err, MaxWalkDepth)
	}
	reads := 0
	err = ListTree(ctx, "", 8, func(_ context.Context, dir string) ([]Entry, error) {
		reads++
		if dir != "." {
			return nil, nil
		}
		e := make([]Entry, MaxWalkDirs+5)
		for i := range e {
			e[i] = Entry{Name: fmt.Sprint(i), Dir: true}
		}
		return e, nil
	}, func(FileInfo) error { return nil })
	if !IsPermanent(err) || reads != 1 {
		t.Fatalf("a huge tree: %d read, %v; want a permanent error before reading its level", reads, err)
	}
}
