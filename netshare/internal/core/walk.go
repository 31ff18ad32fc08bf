package core

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"golang.org/x/sync/errgroup"
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

// Entry is a directory entry as ListTree reads it.
type Entry struct {
	// Name is the entry's name in its directory.
	Name string
	// Dir and Regular say what it is; neither: a link or a special file,
	// which List never reports nor follows.
	Dir, Regular bool
	// Size is a regular file's length in bytes.
	Size int64
}

// ListTree is the walk behind the directory backends' List: it reads the
// directory holding prefix's last element and then, a level at a time,
// the subdirectories on the way to prefix or below it, at most workers
// reads at once, and calls fn for each regular file whose name starts
// with prefix, temporary files excepted.
//
// readDir returns one directory's entries (dir is "." for the root, else
// made with JoinPath). An error wrapping fs.ErrNotExist means the
// directory is not there, or is not a directory: for the first one,
// nothing lies under prefix; for another, it went since its parent was
// read. fn runs between the reads, never during one, so it may use the
// backend; its error comes back as it is. Other errors come back wrapped
// with the prefix and the directory. The walk is bounded as WalkDirs's is.
func ListTree(ctx context.Context, prefix string, workers int, readDir func(ctx context.Context, dir string) ([]Entry, error), fn func(FileInfo) error) error {
	if err := CheckPrefix(prefix); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	start := "."
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = prefix[:i]
	}
	level, seen := []string{start}, 0
	for depth := 0; len(level) > 0 && depth < MaxWalkDepth; depth++ {
		if seen += len(level); seen > MaxWalkDirs {
			return Permanent(fmt.Errorf("list %q: more than %d directories: not a repository", prefix, MaxWalkDirs))
		}
		entries := make([][]Entry, len(level))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(max(workers, 1))
		for i, dir := range level {
			g.Go(func() error {
				if err := gctx.Err(); err != nil {
					return err
				}
				list, err := readDir(gctx, dir)
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				if err != nil {
					return fmt.Errorf("read directory %q: %w", dir, err)
				}
				entries[i] = list
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			if cerr := ctx.Err(); cerr != nil {
				err = cerr
			}
			return fmt.Errorf("list %q: %w", prefix, err)
		}
		var next []string
		for i, dir := range level {
			for _, e := range entries[i] {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("list %q: %w", prefix, err)
				}
				p := JoinPath(dir, e.Name)
				if CheckName(p) != nil {
					continue // not a name a repository could have written
				}
				switch {
				case e.Dir:
					if strings.HasPrefix(p+"/", prefix) || strings.HasPrefix(prefix, p+"/") {
						next = append(next, p)
					}
				case e.Regular && strings.HasPrefix(p, prefix) && !IsTemp(e.Name):
					if err := fn(FileInfo{Name: p, Size: e.Size}); err != nil {
						return err
					}
				}
			}
		}
		level = next
	}
	return nil
}
