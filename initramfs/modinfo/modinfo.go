// Package modinfo reads the .modinfo section of Linux kernel modules: the
// key=value tags (firmware, alias, depends, license...) that `modinfo`
// prints, from .ko files and their xz, zstd and gzip compressed forms.
package modinfo

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

const (
	// maxModule bounds what a module file may decompress to: the largest
	// Debian modules are a few tens of MiB.
	maxModule = 256 << 20
	// maxSection bounds the .modinfo section, a few KiB in a real
	// module, so a damaged header cannot make Data allocate or inflate
	// hundreds of MiB.
	maxSection = 1 << 20
)

// Values returns the values of key in the .modinfo section of the ELF
// module r, in the order the module lists them; none when the module has
// no such tag or no .modinfo at all.
func Values(r io.ReaderAt, key string) ([]string, error) {
	ef, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("parse ELF: %w", err)
	}
	defer ef.Close()
	sec := ef.Section(".modinfo")
	if sec == nil {
		return nil, nil
	}
	if sec.Type == elf.SHT_NOBITS || sec.Size > maxSection {
		return nil, fmt.Errorf("bad .modinfo section (type %v, %d bytes)", sec.Type, sec.Size)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo: %w", err)
	}
	prefix := []byte(key + "=")
	var vals []string
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, prefix); ok && len(v) > 0 {
			vals = append(vals, string(v))
		}
	}
	return vals, nil
}

// FileValues is Values for a module file, decompressing .xz, .zst and .gz
// files in memory.
func FileValues(file, key string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("read module info: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(file, ".xz"):
		xr, err := xz.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("decompress module %s: %w", file, err)
		}
		r = xr
	case strings.HasSuffix(file, ".zst"):
		zr, err := zstd.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("decompress module %s: %w", file, err)
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(file, ".gz"):
		gr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("decompress module %s: %w", file, err)
		}
		r = gr
	}
	b, err := io.ReadAll(io.LimitReader(r, maxModule+1))
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", file, err)
	}
	if len(b) > maxModule {
		return nil, fmt.Errorf("read module %s: over %d bytes", file, maxModule)
	}
	vals, err := Values(bytes.NewReader(b), key)
	if err != nil {
		return nil, fmt.Errorf("read module info of %s: %w", file, err)
	}
	return vals, nil
}
