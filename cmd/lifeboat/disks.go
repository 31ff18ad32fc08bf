package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/lifeboat/lifeboat/engine/disks"
)

func init() {
	register("disks", command{summary: "list disks, partitions and file systems", run: runDisks})
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runDisks(ctx context.Context, env *cmdEnv, args []string) error {
	fl := flag.NewFlagSet("lifeboat disks", flag.ContinueOnError)
	fl.SetOutput(env.stderr)
	asJSON := fl.Bool("json", false, "print a JSON array of disks")
	noUsage := fl.Bool("no-usage", false, "skip computing used bytes (reads allocation bitmaps)")
	var files stringList
	fl.Var(&files, "disk", "also describe this disk-image `FILE` (repeatable)")
	fl.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: lifeboat disks [--json] [--no-usage] [--disk FILE]...")
		fmt.Fprintln(env.stderr)
		fmt.Fprintln(env.stderr, "Lists the disks of this machine and the given image files, their partitions,")
		fmt.Fprintln(env.stderr, "file systems and what is using them.")
		fmt.Fprintln(env.stderr)
		fl.PrintDefaults()
	}
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	list, err := disks.Scan(ctx, disks.Options{Files: files, Usage: !*noUsage})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if list == nil {
			list = []disks.Disk{}
		}
		if err := enc.Encode(list); err != nil {
			return fmt.Errorf("write disk list: %w", err)
		}
		return nil
	}
	if len(list) == 0 {
		fmt.Fprintln(env.stdout, "no disks found")
		return nil
	}
	for i := range list {
		if i > 0 {
			fmt.Fprintln(env.stdout)
		}
		if err := printDisk(env.stdout, &list[i]); err != nil {
			return fmt.Errorf("write disk list: %w", err)
		}
	}
	return nil
}

// printDisk writes one disk's block: identity lines, then a table of its
// partitions.
func printDisk(w io.Writer, d *disks.Disk) error {
	fmt.Fprintln(w, d.Describe())
	var id []string
	if d.Vendor != "" {
		id = append(id, "vendor "+d.Vendor)
	}
	if d.Model != "" {
		id = append(id, fmt.Sprintf("model %q", d.Model))
	}
	if d.Serial != "" {
		id = append(id, "serial "+d.Serial)
	}
	if d.WWN != "" {
		id = append(id, "wwn "+d.WWN)
	}
	if len(id) > 0 {
		fmt.Fprintf(w, "  %s\n", strings.Join(id, ", "))
	}
	kind := []string{fmt.Sprintf("size %s (%d bytes)", disks.HumanBytes(d.Size), d.Size),
		fmt.Sprintf("sectors %d/%d", d.LogicalSectorSize, d.PhysicalSectorSize)}
	if !d.IsFile {
		if d.Rotational {
			kind = append(kind, "rotational")
		} else {
			kind = append(kind, "non-rotational")
		}
		if d.Removable {
			kind = append(kind, "removable")
		}
	}
	if d.ReadOnly {
		kind = append(kind, "read-only")
	}
	if d.Transport != "" {
		kind = append(kind, "transport "+d.Transport)
	}
	if d.Devno != "" {
		kind = append(kind, "dev "+d.Devno)
	}
	fmt.Fprintf(w, "  %s\n", strings.Join(kind, ", "))
	if d.BackingFile != "" {
		fmt.Fprintf(w, "  backing file %s\n", d.BackingFile)
	}
	table := "  table " + d.Table
	if d.DiskGUID != "" {
		table += ", disk guid " + d.DiskGUID
	}
	if d.TableError != "" {
		table += ": " + d.TableError
	}
	fmt.Fprintln(w, table)
	for _, tw := range d.TableWarnings {
		fmt.Fprintf(w, "  warning: %s\n", tw)
	}
	for _, u := range d.InUse() {
		fmt.Fprintf(w, "  in use: %s\n", u)
	}
	if len(d.Partitions) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tSTART\tSIZE\tTYPE\tNAME/LABEL\tFS\tUUID\tUSED\tSTATE")
	for _, p := range d.Partitions {
		typ := p.TypeName
		if typ == "" {
			typ = p.Type
		}
		name := p.Name
		if p.Label != "" {
			if name != "" && name != p.Label {
				name += " / " + p.Label
			} else {
				name = p.Label
			}
		}
		fs := p.FS
		if p.FSVariant != "" {
			fs += " (" + p.FSVariant + ")"
		}
		if p.Raw {
			fs += " [raw]"
		}
		used := "-"
		if p.Used >= 0 {
			used = disks.HumanBytes(p.Used)
		}
		var state []string
		for _, m := range p.Mounts {
			state = append(state, "mounted at "+m)
		}
		if p.Swap {
			state = append(state, "swap")
		}
		for _, h := range p.Holders {
			state = append(state, "held by "+h)
		}
		fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Number, p.Start, disks.HumanBytes(p.Size),
			dash(typ), dash(name), dash(fs), dash(p.UUID), used, dash(strings.Join(state, ", ")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range d.Partitions {
		for _, wmsg := range p.FSWarnings {
			fmt.Fprintf(w, "  warning: partition %d: %s\n", p.Number, wmsg)
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
