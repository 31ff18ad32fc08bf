package disks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Resolve finds the disk that spec names among all. spec is a path (a device
// node, a /dev/disk/by-id symlink, an image file) or serial:S, wwn:W or
// model:M. Serials match exactly, WWNs with or without a "0x", "naa." or
// "eui." prefix and in any case, models in any case. When nothing or more
// than one disk matches, the error lists the candidates so the user can
// pick a more precise spec. A path that exists but is not in all (an image
// file, a device left out of the scan) is inspected and returned.
func Resolve(ctx context.Context, spec string, all []Disk) (*Disk, error) {
	key, val, hasKey := strings.Cut(spec, ":")
	if hasKey && (key == "serial" || key == "wwn" || key == "model") {
		var match []*Disk
		for i := range all {
			d := &all[i]
			switch key {
			case "serial":
				if d.Serial != "" && d.Serial == val {
					match = append(match, d)
				}
			case "wwn":
				if d.WWN != "" && normWWN(d.WWN) == normWWN(val) {
					match = append(match, d)
				}
			case "model":
				if d.Model != "" && strings.EqualFold(strings.TrimSpace(d.Model), strings.TrimSpace(val)) {
					match = append(match, d)
				}
			}
		}
		switch len(match) {
		case 1:
			return match[0], nil
		case 0:
			return nil, fmt.Errorf("find disk %q: no disk has %s %q%s", spec, key, val, candidates("disks", all, nil))
		default:
			return nil, fmt.Errorf("find disk %q: %d disks match, name one by path, serial or WWN%s", spec, len(match), candidates("matching", nil, match))
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := os.Stat(spec)
	if err != nil {
		return nil, fmt.Errorf("find disk %q: %w%s", spec, err, candidates("disks", all, nil))
	}
	real, err := filepath.EvalSymlinks(spec)
	if err != nil {
		return nil, fmt.Errorf("find disk %q: %w", spec, err)
	}
	for i := range all {
		d := &all[i]
		if d.Path == spec || d.Path == real {
			return d, nil
		}
		if dst, err := os.Stat(d.Path); err == nil && os.SameFile(st, dst) {
			return d, nil
		}
	}
	d, err := Inspect(ctx, real, Options{})
	if err != nil {
		return nil, fmt.Errorf("find disk %q: %w", spec, err)
	}
	d.Path = spec
	if d.IsFile {
		d.Path = real
	}
	return d, nil
}

// normWWN puts a WWN in one comparable form: lower case, no 0x/naa./eui.
// prefix.
func normWWN(w string) string {
	w = strings.ToLower(strings.TrimSpace(w))
	for _, p := range []string{"0x", "naa.", "eui.", "wwn-"} {
		w = strings.TrimPrefix(w, p)
	}
	return strings.TrimPrefix(w, "0x")
}

func candidates(what string, all []Disk, ptrs []*Disk) string {
	var b strings.Builder
	for i := range all {
		ptrs = append(ptrs, &all[i])
	}
	if len(ptrs) == 0 {
		return " (no disks found)"
	}
	fmt.Fprintf(&b, "; %s:", what)
	for _, d := range ptrs {
		b.WriteString("\n  ")
		b.WriteString(d.Describe())
	}
	return b.String()
}

// Describe names the disk in one line for prompts and errors, e.g.
// `"Samsung SSD 870 EVO 1TB" serial S6PTNM0R123456 1.0 TB (1000204886016
// bytes) at /dev/sda`. Disk makers quote sizes in decimal units, so
// block devices show those; image files show binary units.
func (d *Disk) Describe() string {
	if d.IsFile {
		return fmt.Sprintf("image file %s %s (%d bytes)", d.Path, HumanBytes(d.Size), d.Size)
	}
	var b strings.Builder
	model := strings.TrimSpace(d.Model)
	if v := strings.TrimSpace(d.Vendor); v != "" && v != "ATA" && !strings.HasPrefix(strings.ToLower(model), strings.ToLower(v)) {
		model = strings.TrimSpace(v + " " + model)
	}
	if model != "" {
		fmt.Fprintf(&b, "%q ", model)
	} else if d.Transport != "" {
		fmt.Fprintf(&b, "%s disk ", d.Transport)
	} else {
		b.WriteString("disk ")
	}
	if d.Serial != "" {
		fmt.Fprintf(&b, "serial %s ", d.Serial)
	}
	if d.BackingFile != "" {
		fmt.Fprintf(&b, "backed by %s ", d.BackingFile)
	}
	fmt.Fprintf(&b, "%s (%d bytes) at %s", HumanBytesDecimal(d.Size), d.Size, d.Path)
	return b.String()
}

// InUse returns the reasons the disk must not be written now: mounted or
// swapping partitions, device-mapper or md holders, loop devices attached
// to an image file. It is empty when the disk is free.
func (d *Disk) InUse() []string {
	if d.IsFile {
		return d.fileInUse()
	}
	var out []string
	for _, m := range d.Mounts {
		out = append(out, fmt.Sprintf("%s is mounted on %s", d.Path, m))
	}
	if d.Swap {
		out = append(out, fmt.Sprintf("%s is active swap", d.Path))
	}
	for _, h := range d.Holders {
		out = append(out, "held by "+holderKind(h))
	}
	for _, p := range d.Partitions {
		if p.Number == 0 {
			continue // the whole disk's file system: reported above
		}
		pn := p.Path
		if pn == "" {
			pn = fmt.Sprintf("partition %d of %s", p.Number, d.Path)
		}
		for _, m := range p.Mounts {
			out = append(out, fmt.Sprintf("%s is mounted on %s", pn, m))
		}
		if p.Swap {
			out = append(out, fmt.Sprintf("%s is active swap", pn))
		}
		for _, h := range p.Holders {
			out = append(out, fmt.Sprintf("%s is held by %s", pn, holderKind(h)))
		}
	}
	return out
}

// fileInUse reports the loop devices attached to an image file: whatever
// uses the image goes through one of them.
func (d *Disk) fileInUse() []string {
	var out []string
	for _, l := range d.Loops {
		var why []string
		for _, m := range l.Mounts {
			why = append(why, "mounted on "+m)
		}
		if l.Swap {
			why = append(why, "active swap")
		}
		for _, h := range l.Holders {
			why = append(why, "held by "+holderKind(h))
		}
		why = append(why, l.Parts...)
		where := ""
		if l.Offset != 0 {
			where = fmt.Sprintf(" at offset %d", l.Offset)
		}
		if len(why) == 0 {
			out = append(out, fmt.Sprintf("image file is attached to %s%s", l.Path, where))
			continue
		}
		out = append(out, fmt.Sprintf("image file is attached to %s%s, which is %s", l.Path, where, strings.Join(why, ", ")))
	}
	return out
}

// holderKind names a holder with what kind of device it is.
func holderKind(h string) string {
	switch {
	case strings.HasPrefix(h, "dm-"):
		return h + " (device-mapper)"
	case strings.HasPrefix(h, "md"):
		return h + " (md RAID)"
	case strings.HasPrefix(h, "bcache"):
		return h + " (bcache)"
	}
	return h
}

// HumanBytes formats n in binary units with one decimal: "8.0 GiB".
func HumanBytes(n int64) string {
	return human(n, 1024, []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"})
}

// HumanBytesDecimal formats n in decimal units with one decimal, as disk
// makers label their products: "1.0 TB".
func HumanBytesDecimal(n int64) string {
	return human(n, 1000, []string{"B", "kB", "MB", "GB", "TB", "PB", "EB"})
}

func human(n int64, unit float64, names []string) string {
	if n < 0 || float64(n) < unit {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	i := 0
	for v >= unit && i < len(names)-1 {
		v /= unit
		i++
	}
	// Rounding may reach the next unit: 1023.96 KiB prints as 1.0 MiB.
	if v >= unit-0.05 && i < len(names)-1 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %s", v, names[i])
}

// Confirmation returns what a person must type to confirm overwriting d,
// and how to ask for it: the last four characters of its serial, else an
// image file's name, else the device's name. The command line and the
// console UI both ask by this rule, so one rule holds on every screen; a
// lone Enter or "y" never names a disk.
func Confirmation(d *Disk) (want, prompt string) {
	switch {
	case len(d.Serial) >= 4:
		s := d.Serial[len(d.Serial)-4:]
		return s, fmt.Sprintf("the last four characters of its serial (%q)", s)
	case d.IsFile:
		b := filepath.Base(d.Path)
		return b, fmt.Sprintf("its file name (%q)", b)
	default:
		n := filepath.Base(d.Path)
		return n, fmt.Sprintf("its device name (%q)", n)
	}
}

// Confirmed reports whether typed names d by Confirmation's rule. Spaces
// around the text are ignored; case is not, as serials are printed.
func Confirmed(d *Disk, typed string) bool {
	want, _ := Confirmation(d)
	return strings.TrimSpace(typed) == want
}
