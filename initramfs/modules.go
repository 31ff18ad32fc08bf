package initramfs

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/lifeboat/lifeboat/rescue/kmod"
)

// BootList is the file, in the modules directory, naming the modules init
// loads at every boot (one a line).
const BootList = "lifeboat.load"

// stageModules copies the requested modules with their dependencies and
// soft dependencies into stage/lib/modules/<version>, with modules.dep,
// modules.alias and modules.softdep cut down to what is carried, and the
// firmware files they name that the host has into stage/lib/firmware.
func stageModules(cfg Config, rep *Report, stage string) error {
	src := filepath.Join(cfg.ModulesRoot, "lib", "modules", rep.KernelVersion)
	ix := kmod.NewIndex()
	for _, f := range []struct {
		name string
		read func(io.Reader) error
	}{{"modules.dep", ix.ReadDep}, {"modules.alias", ix.ReadAlias}, {"modules.softdep", ix.ReadSoftdep}} {
		b, err := os.ReadFile(filepath.Join(src, f.name))
		if err != nil {
			return fmt.Errorf("read modules of kernel %s: %w (install the kernel's package, or pass --kernel)", rep.KernelVersion, err)
		}
		if err := f.read(bytes.NewReader(b)); err != nil {
			return fmt.Errorf("read modules of kernel %s: %w", rep.KernelVersion, err)
		}
	}
	order, missing := ix.Order(cfg.Modules)
	rep.Missing = missing
	sub := ix.Subset(order)
	dst := filepath.Join(stage, "lib", "modules", rep.KernelVersion)
	for _, m := range order {
		rel, err := stageModule(filepath.Join(src, sub.Path[m]), dst, sub.Path[m])
		if err != nil {
			return err
		}
		sub.Path[m] = rel
		rep.Modules = append(rep.Modules, rel)
		if st, err := os.Stat(filepath.Join(dst, rel)); err == nil {
			rep.ModulesBytes += st.Size()
		}
	}
	for _, f := range []struct {
		name  string
		write func(io.Writer) error
	}{{"modules.dep", sub.WriteDep}, {"modules.alias", sub.WriteAlias}, {"modules.softdep", sub.WriteSoftdep}} {
		var buf bytes.Buffer
		if err := f.write(&buf); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, f.name), buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	fwDirs := cfg.FirmwareDirs
	if fwDirs == nil {
		fwDirs = DefaultFirmwareDirs(cfg.ModulesRoot, rep.KernelVersion)
	}
	if err := stageFirmware(fwDirs, rep, dst, stage); err != nil {
		return err
	}
	var boot []string
	for _, m := range BootModules {
		if sub.Path[m] != "" {
			boot = append(boot, m)
		}
	}
	if err := os.WriteFile(filepath.Join(dst, BootList), []byte(strings.Join(boot, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", BootList, err)
	}
	return nil
}

// stageModule copies one module, decompressing .ko.zst and .ko.gz (Go
// reads those) and keeping .ko.xz as it is (the kernel decompresses it at
// load time when built with CONFIG_MODULE_DECOMPRESS). It returns the
// module's path relative to the modules directory.
func stageModule(src, dstDir, rel string) (string, error) {
	var dec func(io.Reader) (io.Reader, error)
	switch {
	case strings.HasSuffix(rel, ".ko.zst"):
		dec = func(r io.Reader) (io.Reader, error) { return zstd.NewReader(r) }
		rel = strings.TrimSuffix(rel, ".zst")
	case strings.HasSuffix(rel, ".ko.gz"):
		dec = func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }
		rel = strings.TrimSuffix(rel, ".gz")
	}
	if dec == nil {
		if err := copyFile(src, filepath.Join(dstDir, rel), 0o644); err != nil {
			return "", fmt.Errorf("copy module: %w", err)
		}
		return rel, nil
	}
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("open module: %w", err)
	}
	defer in.Close()
	r, err := dec(in)
	if err != nil {
		return "", fmt.Errorf("decompress module %s: %w", src, err)
	}
	dst := filepath.Join(dstDir, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", filepath.Dir(dst), err)
	}
	out, err := os.Create(dst)
	if err != nil {
		return "", fmt.Errorf("create module: %w", err)
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return "", fmt.Errorf("decompress module %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return "", fmt.Errorf("write module %s: %w", dst, err)
	}
	return rel, nil
}
