package ui

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/lifeboat/lifeboat/engine/disks"
)

// diskTitle names a disk in one line: model, serial, size and where.
func diskTitle(d *disks.Disk) string {
	if d.IsFile {
		return fmt.Sprintf("%s  %s  image file %s", filepath.Base(d.Path), disks.HumanBytes(d.Size), d.Path)
	}
	var parts []string
	model := strings.TrimSpace(d.Model)
	if model == "" {
		model = "disk"
		if d.Transport != "" {
			model = d.Transport + " disk"
		}
	}
	parts = append(parts, model)
	if d.Serial != "" {
		parts = append(parts, "serial "+d.Serial)
	}
	parts = append(parts, disks.HumanBytesDecimal(d.Size), d.Path)
	return strings.Join(parts, "  ")
}

// partLine describes one partition in a line: number, file system, label,
// size, used space and whether it is mounted.
func partLine(p disks.Partition) string {
	fs := p.FS
	if fs == "" {
		fs = "-"
	}
	var b strings.Builder
	used := ""
	if p.Used >= 0 && p.FS != "" {
		used = "used " + disks.HumanBytes(p.Used)
	}
	fmt.Fprintf(&b, "%2d %-5s %-10s %9s %-14s %s", p.Number, trunc(fs, 5), trunc(partLabel(p), 10), disks.HumanBytes(p.Size), used, partState(p))
	return b.String()
}

func partLabel(p disks.Partition) string {
	if p.Label != "" {
		return p.Label
	}
	if p.Name != "" {
		return p.Name
	}
	return "-"
}

// partState says whether a partition is in use.
func partState(p disks.Partition) string {
	var s []string
	for _, m := range p.Mounts {
		s = append(s, "mounted on "+m)
	}
	if p.Swap {
		s = append(s, "active swap")
	}
	for _, h := range p.Holders {
		s = append(s, "held by "+h)
	}
	if len(s) == 0 {
		return "unmounted"
	}
	return strings.Join(s, ", ")
}

// diskContents summarises a disk's table and partitions in one line.
func diskContents(d *disks.Disk) string {
	var b strings.Builder
	b.WriteString(d.Table)
	if d.TableError != "" {
		b.WriteString(" (" + d.TableError + ")")
	}
	if len(d.Partitions) == 0 {
		b.WriteString(", no partitions")
	}
	for i, p := range d.Partitions {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		fs := p.FS
		if fs == "" {
			fs = "?"
		}
		fmt.Fprintf(&b, "%d %s", p.Number, fs)
		if l := partLabel(p); l != "-" {
			fmt.Fprintf(&b, " %q", l)
		}
		b.WriteString(" " + disks.HumanBytes(p.Size))
	}
	if use := d.InUse(); len(use) > 0 {
		b.WriteString("; IN USE: " + strings.Join(use, "; "))
	}
	return b.String()
}

func trunc(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
