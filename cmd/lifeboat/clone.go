package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/lifeboat/lifeboat/engine/bootfix"
	"github.com/lifeboat/lifeboat/engine/clone"
	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/ptable"
)

func init() {
	register("clone", command{summary: "clone a disk or a partition onto another disk", run: runClone})
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runClone(ctx context.Context, env *cmdEnv, args []string) error {
	fs := flag.NewFlagSet("clone", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	from := fs.String("from", "", "source disk: a path, an image file, or serial:S, wwn:W, model:M")
	to := fs.String("to", "", "target disk, named as --from; everything on it is overwritten")
	yes := fs.Bool("yes", false, "do not ask for confirmation (every safety rule still applies)")
	layout := fs.String("layout", string(ptable.LayoutGrowLast), "on a larger target: grow-last, proportional or keep")
	part := fs.Int("partition", 0, "clone only this source partition")
	toPart := fs.Int("to-partition", 0, "into this existing partition of the target")
	sbs := fs.Bool("sector-by-sector", false, "copy every sector (unknown layouts, forensic copies)")
	verify := fs.Bool("verify", false, "re-read the target and compare checksums with the source")
	noDiscard := fs.Bool("no-discard", false, "do not discard the target before writing")
	delta := fs.Bool("delta", false, "read the target first and write only what differs (a target that holds an earlier clone)")
	prog := fs.String("progress", "auto", "progress display: auto, bar, json or none")
	logPath := fs.String("log", "", "also write a log to this file (it may not be on the target)")
	sysOnly := fs.Bool("system", false, "copy only the partitions the installed system needs (EFI, BIOS boot, root, /boot, swap...), laid out from the start")
	newIDs := fs.Bool("new-ids", false, "give the copy new disk/partition GUIDs and file-system UUIDs, so both disks can stay attached")
	scratch := fs.String("scratch-dir", "", "directory for what shrinking a file system on a copy-on-write view writes (default: memory)")
	efiEntry := fs.Bool("efi-entry", false, "add an EFI boot entry for the copy to this machine's firmware (run it on the machine that will boot the copy)")
	var diskFiles multiFlag
	fs.Var(&diskFiles, "disk", "add a disk-image file to the disks that names can match (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: lifeboat clone --from SRC --to DST [--system] [--new-ids] [--partition N [--to-partition M]] [--layout grow-last|proportional|keep] [--verify] [--yes]")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *from == "" || *to == "" {
		fs.Usage()
		return &exitError{code: 2, err: errors.New("--from and --to are required")}
	}
	if *sysOnly && (*part != 0 || *sbs) {
		return &exitError{code: 2, err: errors.New("--system chooses the partitions itself: it does not combine with --partition or --sector-by-sector")}
	}
	lay, err := parseLayout(*layout)
	if err != nil {
		return err
	}
	// With JSON progress on stdout, words go to stderr so that stdout
	// stays one JSON object a line.
	words := wordsFor(env, *prog)
	log, closeLog, err := openLog(*logPath, words)
	if err != nil {
		return err
	}
	defer closeLog()

	src, err := resolveDisk(ctx, *from, diskFiles, "source")
	if err != nil {
		return err
	}
	dst, err := resolveDisk(ctx, *to, diskFiles, "target")
	if err != nil {
		return err
	}
	opt := clone.Options{
		Source: src, Target: dst, Layout: lay,
		Partition: *part, ToPartition: *toPart, SectorBySector: *sbs,
		Verify: *verify, NoDiscard: *noDiscard, Delta: *delta,
		System: *sysOnly, NewIDs: *newIDs, ScratchDir: *scratch,
	}
	if *logPath != "" {
		abs, _ := filepath.Abs(*logPath)
		opt.Protect = append(opt.Protect, abs)
	}
	plan, err := clone.MakePlan(ctx, opt)
	if err != nil {
		return err
	}
	defer plan.Close()
	res, err := confirmAndRun(ctx, env, plan, log, *yes, *prog)
	if err != nil {
		return err
	}
	for _, w := range res.Warnings[len(plan.Warnings):] {
		fmt.Fprintf(log, "Warning: %s\n", w)
	}
	fmt.Fprintf(log, "Done: %s copied, %s written in %s (%s/s)\n", disks.HumanBytes(res.Copied), disks.HumanBytes(res.Written),
		res.Duration.Round(100_000_000), disks.HumanBytes(int64(float64(res.Copied)/max(res.Duration.Seconds(), 0.001))))
	if res.Verified {
		fmt.Fprintln(log, "Verified: every byte written was read back and matches the source")
	}
	if *efiEntry {
		return addEFIEntry(ctx, log, plan)
	}
	return nil
}

// addEFIEntry adds a firmware boot entry for the copy's fallback loader on
// its EFI system partition.
func addEFIEntry(ctx context.Context, log io.Writer, plan *clone.Plan) error {
	if plan.Target.IsFile {
		return errors.New("--efi-entry: the target is an image file, which no firmware boots")
	}
	part, ok := espNumber(plan)
	if !ok {
		return errors.New("--efi-entry: the copy has no EFI system partition")
	}
	label := "Lifeboat copy " + plan.Target.Describe()
	if err := bootfix.AddEntry(ctx, "", plan.Target.Path, part, label, bootfix.FallbackPath); err != nil {
		return err
	}
	fmt.Fprintf(log, "Added the EFI boot entry %q for partition %d of %s\n", label, part, plan.Target.Path)
	return nil
}

// espNumber finds the EFI system partition in the planned target table.
func espNumber(plan *clone.Plan) (int, bool) {
	if plan.DstTable == nil {
		return 0, false
	}
	for _, p := range plan.DstTable.Partitions {
		if strings.EqualFold(p.Type, ptable.TypeEFISystem) || p.MBRType == 0xef {
			return p.Number, true
		}
	}
	return 0, false
}

// confirm asks the user to type the target's identity. A lone Enter or
// "y" is never enough: the typed text must name the disk.
func confirm(env *cmdEnv, dst *disks.Disk) error {
	if !env.interactive {
		return errors.New("no terminal to confirm on: pass --yes to run without confirmation")
	}
	_, what := disks.Confirmation(dst)
	fmt.Fprintf(env.stderr, "\nEverything on %s will be overwritten.\nType %s to go on: ", dst.Describe(), what)
	line, err := bufio.NewReader(env.stdin).ReadString('\n')
	if err != nil && line == "" {
		return fmt.Errorf("read confirmation: %w", err)
	}
	if !disks.Confirmed(dst, line) {
		return errors.New("not confirmed: nothing was written")
	}
	return nil
}
