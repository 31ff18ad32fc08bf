package core

import (
	"context"
	"fmt"
)

// Bounds of a walk over a repository's directories: a repository is three
// levels deep and holds a few hundred directories. Deeper directories (a
// symbolic link to a parent that the server follows, or a server that
// invents directories) are not walked; a larger tree is not a repository
// and stops the walk.
const (
	MaxWalkDepth = 16
	MaxWalkDirs  = 1 << 16
)

// WalkDirs calls visit for the directory "." and then, depth first, for
// every subdirectory visit returns (paths relative to the same root, made
// with JoinPath), at most MaxWalkDepth levels down. An error from visit
// stops the walk and is returned as is; more than MaxWalkDirs directories
// stop it with a permanent error. The backends' Cleanup walks use it, each
// visit listing a directory on a session of its own.
func WalkDirs(ctx context.Context, visit func(ctx context.Context, dir string) (subdirs []string, err error)) error {
	type dirAt struct {
		path  string
		depth int
	}
	stack := []dirAt{{".", 0}}
	for seen := 0; len(stack) > 0; seen++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if seen >= MaxWalkDirs {
			return Permanent(fmt.Errorf("more than %d directories: not a repository", MaxWalkDirs))
		}
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		subdirs, err := visit(ctx, d.path)
		if err != nil {
			return err
		}
		if d.depth+1 < MaxWalkDepth {
			for _, s := range subdirs {
				stack = append(stack, dirAt{s, d.depth + 1})
			}
		}
	}
	return nil
}

// JoinPath is name inside dir, where dir "." is the root.
func JoinPath(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}
