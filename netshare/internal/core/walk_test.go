package core

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
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
