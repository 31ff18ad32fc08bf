package initramfs

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// libDirs are where Debian's dynamic loader finds libraries without an
// ld.so.cache; the initramfs keeps each library at its host path so the
// same search works there.
var libDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// maxLibs bounds the closure of a hostile or looping dependency graph; the
// tools the engine runs need about ten.
const maxLibs = 256

// SharedLibs returns what the ELF programs need to run: their interpreter
// (PT_INTERP) and the closure of their DT_NEEDED libraries, as absolute
// host paths, found through DT_RUNPATH/DT_RPATH and the standard
// directories. A statically linked program needs nothing.
func SharedLibs(programs []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	queue := append([]string(nil), programs...)
	for len(queue) > 0 {
		if len(out) > maxLibs {
			return nil, fmt.Errorf("resolve shared libraries: more than %d", maxLibs)
		}
		p := queue[0]
		queue = queue[1:]
		interp, needed, search, err := elfDeps(p)
		if err != nil {
			return nil, err
		}
		if interp != "" && !seen[interp] {
			seen[interp] = true
			out = append(out, interp)
		}
		for _, lib := range needed {
			path, err := findLib(lib, search)
			if err != nil {
				return nil, fmt.Errorf("resolve shared libraries of %s: %w", p, err)
			}
			if !seen[path] {
				seen[path] = true
				out = append(out, path)
				queue = append(queue, path)
			}
		}
	}
	return out, nil
}

func elfDeps(path string) (interp string, needed, search []string, err error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", nil, nil, fmt.Errorf("read ELF %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, min(p.Filesz, 4096))
			if _, err := p.ReadAt(b, 0); err != nil {
				return "", nil, nil, fmt.Errorf("read ELF interpreter of %s: %w", path, err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	needed, err = f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return "", nil, nil, fmt.Errorf("read DT_NEEDED of %s: %w", path, err)
	}
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, _ := f.DynString(tag)
		for _, v := range vals {
			for _, d := range strings.Split(v, ":") {
				d = strings.ReplaceAll(d, "$ORIGIN", filepath.Dir(path))
				if d != "" {
					search = append(search, d)
				}
			}
		}
	}
	return interp, needed, search, nil
}

func findLib(name string, search []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, d := range append(search, libDirs...) {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("library %s not found in %s", name, strings.Join(libDirs, ", "))
}
