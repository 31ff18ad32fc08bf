// Package kmod reads the module index files depmod writes (modules.dep,
// modules.alias, modules.softdep), matches device modaliases against them and
// orders modules so that each loads after its dependencies. The appliance's
// init uses it to load drivers by device, and the image builder uses it to
// pick which modules to carry. It has no I/O of its own beyond the readers it
// is given, so both run it on files they read themselves.
package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// Limits keep a hostile or corrupt index from exhausting memory: real
// indexes of a distribution kernel hold about 6,000 modules and 30,000
// aliases, with lines well under 4 KiB.
const (
	maxLine    = 64 << 10
	maxEntries = 1 << 20
	// The longest real alias patterns (DMI and device-tree ones) are a
	// few hundred bytes; the longest modaliases (x86 CPU feature lists)
	// about two thousand.
	maxPattern  = 1024
	maxModalias = 4096
)

// ErrUnknown is wrapped by errors about a module the index does not hold.
var ErrUnknown = errors.New("module not in modules.dep")

// Index is what depmod knows about one kernel's modules.
type Index struct {
	// Path maps a module name (underscores, no suffix) to its file,
	// relative to the modules directory (kernel/fs/ext4/ext4.ko).
	Path map[string]string
	// Deps maps a module name to the names of the modules it needs, in
	// modules.dep order.
	Deps map[string][]string
	// Aliases are modules.alias entries in file order.
	Aliases []Alias
	// Pre and Post are the soft dependencies: modules to load before and
	// after a module, by name or alias.
	Pre, Post map[string][]string
}

// Alias is one "alias PATTERN MODULE" line.
type Alias struct {
	Pattern, Module string
}

// Name turns a module file name or a module name into the name the kernel
// uses: directory and suffixes (.ko, .ko.xz, .ko.zst, .ko.gz) dropped and
// dashes turned into underscores.
func Name(file string) string {
	base := path.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// lines calls fn for each non-empty, non-comment line of r, bounding
// line length and count.
func lines(r io.Reader, what string, fn func(fields []string, line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		n++
		if n > maxEntries {
			return fmt.Errorf("read %s: more than %d entries", what, maxEntries)
		}
		if err := fn(strings.Fields(line), line); err != nil {
			return fmt.Errorf("read %s line %d: %w", what, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	return nil
}

// NewIndex returns an empty index, ready for the Read methods.
func NewIndex() *Index {
	return &Index{Path: map[string]string{}, Deps: map[string][]string{}, Pre: map[string][]string{}, Post: map[string][]string{}}
}

// ReadDep reads modules.dep: "kernel/a.ko: kernel/b.ko kernel/c.ko".
func (ix *Index) ReadDep(r io.Reader) error {
	return lines(r, "modules.dep", func(_ []string, line string) error {
		file, rest, ok := strings.Cut(line, ":")
		file = strings.TrimSpace(file)
		if !ok || file == "" {
			return fmt.Errorf("no module before ':' in %q", clip(line))
		}
		name := Name(file)
		ix.Path[name] = file
		var deps []string
		for _, d := range strings.Fields(rest) {
			deps = append(deps, Name(d))
		}
		ix.Deps[name] = deps
		return nil
	})
}

// ReadAlias reads modules.alias: "alias PATTERN MODULE".
func (ix *Index) ReadAlias(r io.Reader) error {
	return lines(r, "modules.alias", func(f []string, line string) error {
		if len(f) != 3 || f[0] != "alias" {
			return fmt.Errorf("want 'alias PATTERN MODULE', got %q", clip(line))
		}
		ix.Aliases = append(ix.Aliases, Alias{Pattern: f[1], Module: Name(f[2])})
		return nil
	})
}

// ReadSoftdep reads modules.softdep: "softdep MODULE pre: A B post: C".
func (ix *Index) ReadSoftdep(r io.Reader) error {
	return lines(r, "modules.softdep", func(f []string, line string) error {
		if len(f) < 2 || f[0] != "softdep" {
			return fmt.Errorf("want 'softdep MODULE pre: ... post: ...', got %q", clip(line))
		}
		mod := Name(f[1])
		var into *map[string][]string
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				into = &ix.Pre
			case "post:":
				into = &ix.Post
			default:
				// Words before pre: or post: (depmod copies
				// MODULE_SOFTDEP("gcm") from cifs as it is) are
				// ignored, as modprobe ignores them.
				if into != nil {
					(*into)[mod] = append((*into)[mod], w)
				}
			}
		}
		return nil
	})
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Lookup returns the modules a name stands for: itself when modules.dep
// holds it, otherwise every module with an alias matching the name (soft
// dependencies name algorithms such as "crc32c" that several modules
// provide). Built-in or unknown names give nothing.
func (ix *Index) Lookup(name string) []string {
	if n := Name(name); ix.Path[n] != "" {
		return []string{n}
	}
	return ix.MatchAlias(name)
}

// MatchAlias returns the modules whose alias patterns match a device's
// modalias, each once, in modules.alias order.
func (ix *Index) MatchAlias(modalias string) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range ix.Aliases {
		if !seen[a.Module] && Match(a.Pattern, modalias) {
			seen[a.Module] = true
			out = append(out, a.Module)
		}
	}
	return out
}

// Order returns the modules to load for names, each once, every module
// after its hard dependencies and its "pre" soft dependencies and before its
// "post" ones. Names the index does not hold are returned in missing
// (they may be built into the kernel). Soft dependencies that resolve to
// nothing are ignored, as modprobe does.
func (ix *Index) Order(names []string) (order, missing []string) {
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string, depth int)
	visit = func(n string, depth int) {
		// Dependency chains in real kernels are a few modules deep; a
		// cycle or absurd depth in a corrupt index stops here.
		if state[n] != 0 || depth > 64 {
			return
		}
		state[n] = 1
		for _, pre := range ix.Pre[n] {
			for _, m := range ix.Lookup(pre) {
				visit(m, depth+1)
			}
		}
		for _, d := range ix.Deps[n] {
			if ix.Path[d] != "" {
				visit(d, depth+1)
			}
		}
		state[n] = 2
		order = append(order, n)
		for _, post := range ix.Post[n] {
			for _, m := range ix.Lookup(post) {
				visit(m, depth+1)
			}
		}
	}
	for _, name := range names {
		mods := ix.Lookup(name)
		if len(mods) == 0 {
			missing = append(missing, name)
			continue
		}
		for _, m := range mods {
			visit(m, 0)
		}
	}
	return order, missing
}

// Subset returns an index holding only the named modules, with aliases
// and soft dependencies filtered to them: what an image that carries those
// modules should ship.
func (ix *Index) Subset(mods []string) *Index {
	keep := map[string]bool{}
	for _, m := range mods {
		keep[m] = true
	}
	out := NewIndex()
	for m := range keep {
		if p := ix.Path[m]; p != "" {
			out.Path[m] = p
			for _, d := range ix.Deps[m] {
				if keep[d] {
					out.Deps[m] = append(out.Deps[m], d)
				}
			}
			if pre := ix.Pre[m]; len(pre) > 0 {
				out.Pre[m] = pre
			}
			if post := ix.Post[m]; len(post) > 0 {
				out.Post[m] = post
			}
		}
	}
	for _, a := range ix.Aliases {
		if keep[a.Module] {
			out.Aliases = append(out.Aliases, a)
		}
	}
	return out
}

// WriteDep writes the index as modules.dep, sorted by file.
func (ix *Index) WriteDep(w io.Writer) error {
	names := make([]string, 0, len(ix.Path))
	for n := range ix.Path {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return ix.Path[names[i]] < ix.Path[names[j]] })
	bw := bufio.NewWriter(w)
	for _, n := range names {
		fmt.Fprintf(bw, "%s:", ix.Path[n])
		for _, d := range ix.Deps[n] {
			fmt.Fprintf(bw, " %s", ix.Path[d])
		}
		fmt.Fprintln(bw)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write modules.dep: %w", err)
	}
	return nil
}

// WriteAlias writes the index's aliases as modules.alias.
func (ix *Index) WriteAlias(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for _, a := range ix.Aliases {
		fmt.Fprintf(bw, "alias %s %s\n", a.Pattern, a.Module)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write modules.alias: %w", err)
	}
	return nil
}

// WriteSoftdep writes the index's soft dependencies as modules.softdep.
func (ix *Index) WriteSoftdep(w io.Writer) error {
	names := map[string]bool{}
	for n := range ix.Pre {
		names[n] = true
	}
	for n := range ix.Post {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	bw := bufio.NewWriter(w)
	for _, n := range sorted {
		fmt.Fprintf(bw, "softdep %s", n)
		if pre := ix.Pre[n]; len(pre) > 0 {
			fmt.Fprintf(bw, " pre: %s", strings.Join(pre, " "))
		}
		if post := ix.Post[n]; len(post) > 0 {
			fmt.Fprintf(bw, " post: %s", strings.Join(post, " "))
		}
		fmt.Fprintln(bw)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write modules.softdep: %w", err)
	}
	return nil
}

// Match reports whether s matches the shell pattern p as modprobe matches
// modaliases (fnmatch without special slashes): '*' any run of bytes, '?'
// one byte, '[...]' a class with ranges and a leading '!' or '^' to negate.
// It runs in O(len(p)*len(s)) time whatever the input; patterns over
// maxPattern bytes and strings over maxModalias bytes (sysfs gives at most
// a page) never match, which bounds one call to a few million steps.
func Match(p, s string) bool {
	if len(p) > maxPattern || len(s) > maxModalias {
		return false
	}
	// Classic greedy matching with one backtrack point for the last '*':
	// linear in practice and quadratic at worst, never exponential.
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			switch p[pi] {
			case '*':
				starP, starS = pi, si
				pi++
				continue
			case '?':
				pi++
				si++
				continue
			case '[':
				if ok, next, valid := matchClass(p, pi, s[si]); valid {
					if ok {
						pi = next
						si++
						continue
					}
				} else if s[si] == '[' { // an unclosed '[' is a literal
					pi++
					si++
					continue
				}
			default:
				if p[pi] == '\\' && pi+1 < len(p) {
					if p[pi+1] == s[si] {
						pi += 2
						si++
						continue
					}
				} else if p[pi] == s[si] {
					pi++
					si++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		pi, si = starP+1, starS
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// matchClass matches c against the class starting at p[i] == '['. It
// returns whether c is in it, the index after the class, and whether the
// class was well formed (closed by ']').
func matchClass(p string, i int, c byte) (ok bool, next int, valid bool) {
	j := i + 1
	neg := false
	if j < len(p) && (p[j] == '!' || p[j] == '^') {
		neg = true
		j++
	}
	first := true
	for j < len(p) {
		if p[j] == ']' && !first {
			return ok != neg, j + 1, true
		}
		first = false
		lo := p[j]
		if j+2 < len(p) && p[j+1] == '-' && p[j+2] != ']' {
			if lo <= c && c <= p[j+2] {
				ok = true
			}
			j += 3
			continue
		}
		if lo == c {
			ok = true
		}
		j++
	}
	return false, 0, false
}
