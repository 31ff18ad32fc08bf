package testdisk

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// maxReported is how many differences CompareTrees reports one by one before
// summing up the rest.
const maxReported = 20

// entry is what CompareTrees knows of one path of a tree.
type entry struct {
	mode   fs.FileMode // type bits only
	size   int64
	target string // symlink target
	ino    uint64 // inode number, meaningful with nlink > 1
	nlink  uint64
}

// scanTree lists every path below root (relative, slash-separated), root
// itself excluded.
func scanTree(root string) (map[string]entry, error) {
	out := map[string]entry{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == root {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return fmt.Errorf("relative path of %s: %w", path, err)
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return fmt.Errorf("stat %s: %w", path, err)
		}
		e := entry{mode: fi.Mode().Type(), size: fi.Size()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			e.ino, e.nlink = st.Ino, uint64(st.Nlink)
		}
		if e.mode&fs.ModeSymlink != 0 {
			if e.target, err = os.Readlink(path); err != nil {
				return fmt.Errorf("read link %s: %w", path, err)
			}
		}
		out[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan tree %s: %w", root, err)
	}
	return out, nil
}

// typeName names a file type for messages.
func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsRegular():
		return "regular file"
	default:
		return "special file " + m.String()
	}
}

// CompareTrees checks that got holds exactly the tree want holds: the same
// set of paths with the same types, regular files of equal size and
// byte-identical content, symbolic links with equal targets, and the same
// hard-link groups (names of one inode in want are names of one inode in
// got). Modes, owners and times are not compared: FAT and exFAT cannot hold
// them. The first differences are reported by path with t.Errorf.
func CompareTrees(t testing.TB, want, got string) {
	t.Helper()
	diffs := compareTrees(want, got)
	for i, d := range diffs {
		if i == maxReported {
			t.Errorf("compare %s with %s: %d more differences not shown", want, got, len(diffs)-maxReported)
			break
		}
		t.Errorf("compare %s with %s: %s", want, got, d)
	}
}

// compareTrees returns the differences between want and got, sorted by path.
func compareTrees(want, got string) []string {
	w, err := scanTree(want)
	if err != nil {
		return []string{err.Error()}
	}
	g, err := scanTree(got)
	if err != nil {
		return []string{err.Error()}
	}
	var diffs []string
	paths := make([]string, 0, len(w))
	for p := range w {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		we := w[p]
		ge, ok := g[p]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s: %s missing", p, typeName(we.mode)))
			continue
		}
		if we.mode != ge.mode {
			diffs = append(diffs, fmt.Sprintf("%s: want %s, got %s", p, typeName(we.mode), typeName(ge.mode)))
			continue
		}
		switch {
		case we.mode&fs.ModeSymlink != 0:
			if we.target != ge.target {
				diffs = append(diffs, fmt.Sprintf("%s: symlink target %q, want %q", p, ge.target, we.target))
			}
		case we.mode.IsRegular():
			if we.size != ge.size {
				diffs = append(diffs, fmt.Sprintf("%s: size %d, want %d", p, ge.size, we.size))
				continue
			}
			off, err := firstDifference(filepath.Join(want, p), filepath.Join(got, p))
			if err != nil {
				diffs = append(diffs, fmt.Sprintf("%s: %v", p, err))
			} else if off >= 0 {
				diffs = append(diffs, fmt.Sprintf("%s: content differs from byte %d", p, off))
			}
		}
	}
	var extra []string
	for p, ge := range g {
		if _, ok := w[p]; !ok {
			extra = append(extra, fmt.Sprintf("%s: unexpected %s", p, typeName(ge.mode)))
		}
	}
	sort.Strings(extra)
	diffs = append(diffs, extra...)
	return append(diffs, compareLinkGroups(w, g)...)
}

// compareLinkGroups checks that the names sharing an inode in want share one
// inode in got, and that got joins no names want keeps apart.
func compareLinkGroups(w, g map[string]entry) []string {
	groups := func(m map[string]entry) map[uint64][]string {
		out := map[uint64][]string{}
		for p, e := range m {
			if e.mode.IsRegular() && e.nlink > 1 {
				out[e.ino] = append(out[e.ino], p)
			}
		}
		for _, ps := range out {
			sort.Strings(ps)
		}
		return out
	}
	norm := func(gr map[uint64][]string, within map[string]entry) []string {
		var out []string
		for _, ps := range gr {
			var in []string
			for _, p := range ps {
				if _, ok := within[p]; ok {
					in = append(in, p)
				}
			}
			if len(in) > 1 {
				out = append(out, strings.Join(in, " = "))
			}
		}
		sort.Strings(out)
		return out
	}
	// Only paths present in both trees are compared here; missing paths
	// are reported already.
	both := map[string]entry{}
	for p, e := range w {
		if _, ok := g[p]; ok {
			both[p] = e
		}
	}
	wg, gg := norm(groups(w), both), norm(groups(g), both)
	var diffs []string
	gset := map[string]bool{}
	for _, s := range gg {
		gset[s] = true
	}
	wset := map[string]bool{}
	for _, s := range wg {
		wset[s] = true
		if !gset[s] {
			diffs = append(diffs, fmt.Sprintf("hard-link group %s not kept", s))
		}
	}
	for _, s := range gg {
		if !wset[s] {
			diffs = append(diffs, fmt.Sprintf("unexpected hard-link group %s", s))
		}
	}
	return diffs
}

// firstDifference returns the offset of the first byte that differs between
// two files of equal size, or -1 when they are identical.
func firstDifference(a, b string) (int64, error) {
	fa, err := os.Open(a)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", a, err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", b, err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	var off int64
	for {
		na, errA := io.ReadFull(fa, ba)
		nb, errB := io.ReadFull(fb, bb)
		if na != nb {
			return off + int64(min(na, nb)), nil
		}
		if i := mismatch(ba[:na], bb[:nb]); i >= 0 {
			return off + int64(i), nil
		}
		off += int64(na)
		endA := errors.Is(errA, io.EOF) || errors.Is(errA, io.ErrUnexpectedEOF)
		endB := errors.Is(errB, io.EOF) || errors.Is(errB, io.ErrUnexpectedEOF)
		if errA != nil && !endA {
			return 0, fmt.Errorf("read %s: %w", a, errA)
		}
		if errB != nil && !endB {
			return 0, fmt.Errorf("read %s: %w", b, errB)
		}
		if endA || endB {
			return -1, nil
		}
	}
}

// mismatch returns the index of the first differing byte of two equal-length
// slices, or -1.
func mismatch(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// SHA256 returns the hex SHA-256 of the whole file at path, to assert that a
// source image was left unchanged.
func SHA256(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("hash %s: %v", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("hash %s: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
