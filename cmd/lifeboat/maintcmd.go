package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/image"
	"github.com/lifeboat/lifeboat/engine/progress"
	"github.com/lifeboat/lifeboat/engine/repo"
)

func init() {
	register("verify", command{summary: "check a repository; --read-data reads and checks every chunk", run: runVerify})
	register("forget", command{summary: "remove snapshots by a retention policy (--prune frees their space)", run: runForget})
	register("prune", command{summary: "delete the data no snapshot needs and repack mostly-empty packs", run: runPrune})
	register("logs", command{summary: "list the logs unattended jobs kept in a repository, or show one", run: runLogs})
}

func runLogs(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlags("logs", env, "logs --repo REPO [--json] [--show ID]")
	rf := addRepoFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	show := fs.String("show", "", "print the log whose id starts with this")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	r, _, err := openRepo(ctx, env, rf, false)
	if err != nil {
		return err
	}
	defer closeRepo(r)
	logs, lerr := r.Logs(ctx)
	if *show != "" {
		want := *show
		var match []repo.JobLog
		for _, l := range logs {
			if strings.HasPrefix(l.ID, want) {
				match = append(match, l)
			}
		}
		switch {
		case len(match) == 0 && lerr != nil:
			return lerr
		case len(match) == 0:
			return fmt.Errorf("no log %q in the repository", want)
		case len(match) > 1:
			return fmt.Errorf("log id %q is ambiguous: %d logs start with it", want, len(match))
		}
		l, err := r.LoadLog(ctx, match[0].ID)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(env.stdout, l)
		}
		fmt.Fprint(env.stdout, l.Text)
		return nil
	}
	if *asJSON {
		if logs == nil {
			logs = []repo.JobLog{}
		}
		if err := writeJSON(env.stdout, logs); err != nil {
			return err
		}
		return lerr
	}
	if len(logs) == 0 {
		fmt.Fprintln(env.stdout, "no logs in the repository")
	}
	for _, l := range logs {
		fmt.Fprintf(env.stdout, "%s  %s  %s\n", l.ID[:12], l.Time.Local().Format("2006-01-02 15:04:05"), l.Host)
	}
	return lerr
}

func runVerify(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlags("verify", env, "verify --repo REPO [--snapshot ID]... [--read-data]")
	rf := addRepoFlags(fs)
	readData := fs.Bool("read-data", false, "read, decrypt, decompress and hash-check every chunk the snapshots need")
	prog := fs.String("progress", "auto", "progress display: auto, bar, json or none")
	var snaps multiFlag
	fs.Var(&snaps, "snapshot", "verify only this snapshot (repeatable; default all)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	r, _, err := openRepo(ctx, env, rf, false)
	if err != nil {
		return err
	}
	defer closeRepo(r)
	counters := &progress.Counters{}
	phase := "verify"
	if *readData {
		phase = "read-data"
	}
	counters.SetPhase(phase, 0)
	var total int64
	stop := startProgress(env, *prog, counters)
	start := time.Now()
	rep, damaged, err := image.Verify(ctx, r, snaps, *readData, func(done, t int64) {
		if t != total {
			total = t
			counters.SetPhase(phase, t)
		}
		counters.Add(done - counters.Snapshot().Done)
	})
	stop()
	if err != nil {
		return err
	}
	words := wordsFor(env, *prog)
	what := "structure"
	if *readData {
		what = "structure and every chunk's content"
	}
	fmt.Fprintf(words, "Checked the %s of %d snapshot(s): %d chunks in %d packs, in %s\n", what, rep.Snapshots, rep.Chunks, rep.Packs, time.Since(start).Round(100*time.Millisecond))
	for _, w := range rep.Warnings {
		fmt.Fprintf(words, "Warning: %s\n", w)
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(words, "Problem: %s\n", p)
	}
	for _, d := range damaged {
		fmt.Fprintf(words, "Damaged: %s\n", d)
	}
	if !rep.OK() {
		affected := map[string]bool{}
		for _, d := range damaged {
			affected[d.Snapshot] = true
		}
		return fmt.Errorf("the repository is damaged: %d problem(s), %d damaged range(s) in %d snapshot(s)", len(rep.Problems), len(damaged), len(affected))
	}
	fmt.Fprintln(words, "No problems found")
	return nil
}

func runForget(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlags("forget", env, "forget --repo REPO [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N] [--keep-monthly N] [--keep-yearly N] [--tag T]... [--host H]... [--prune] [--dry-run]")
	rf := addRepoFlags(fs)
	var p repo.Policy
	fs.IntVar(&p.KeepLast, "keep-last", 0, "keep the newest N snapshots")
	fs.IntVar(&p.KeepHourly, "keep-hourly", 0, "keep the newest snapshot of each of the last N hours that have one")
	fs.IntVar(&p.KeepDaily, "keep-daily", 0, "keep the newest snapshot of each of the last N days that have one")
	fs.IntVar(&p.KeepWeekly, "keep-weekly", 0, "keep the newest snapshot of each of the last N weeks that have one")
	fs.IntVar(&p.KeepMonthly, "keep-monthly", 0, "keep the newest snapshot of each of the last N months that have one")
	fs.IntVar(&p.KeepYearly, "keep-yearly", 0, "keep the newest snapshot of each of the last N years that have one")
	var tags, hosts multiFlag
	fs.Var(&tags, "tag", "apply the policy only to snapshots with this tag (repeatable: all must match)")
	fs.Var(&hosts, "host", "apply the policy only to snapshots of this host (repeatable)")
	doPrune := fs.Bool("prune", false, "prune afterwards, freeing the space of the removed snapshots")
	dry := fs.Bool("dry-run", false, "show what would be removed; change nothing")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	p.Tags, p.Hosts = tags, hosts
	if p.Empty() {
		return &exitError{code: 2, err: errors.New("no --keep-* option given: forget would remove every snapshot it applies to; say what to keep")}
	}
	r, _, err := openRepo(ctx, env, rf, false)
	if err != nil {
		return err
	}
	defer closeRepo(r)
	decisions, err := r.Forget(ctx, p, *dry)
	if err != nil {
		return err
	}
	removed := 0
	for _, d := range decisions {
		verb := "keep  "
		if !d.Keep {
			verb = "remove"
			removed++
			if *dry {
				verb = "would remove"
			}
		}
		fmt.Fprintf(env.stdout, "%s %s %s %s %s\n", verb, short(d.Snapshot.ID), d.Snapshot.Time.Local().Format("2006-01-02 15:04:05"), d.Snapshot.Host, strings.Join(d.Reasons, ", "))
	}
	fmt.Fprintf(env.stdout, "%d snapshot(s) kept, %d removed\n", len(decisions)-removed, removed)
	if *doPrune && !*dry {
		return prune(ctx, env, r, repo.PruneOptions{})
	}
	return nil
}

func runPrune(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlags("prune", env, "prune --repo REPO [--repack-below F] [--dry-run] [--pack-size N]")
	rf := addRepoFlags(fs)
	below := fs.Float64("repack-below", 0.5, "repack packs whose used fraction is below this (0 to 1; negative: never)")
	packSize := fs.Int("pack-size", 0, "size of the packs repacking writes, in bytes (default 32 MiB; for tests and tuning)")
	dry := fs.Bool("dry-run", false, "show what would be freed; change nothing")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	r, _, err := openRepo(ctx, env, rf, false)
	if err != nil {
		return err
	}
	defer closeRepo(r)
	return prune(ctx, env, r, repo.PruneOptions{RepackBelow: *below, DryRun: *dry, PackSize: *packSize})
}

func prune(ctx context.Context, env *cmdEnv, r *repo.Repo, opt repo.PruneOptions) error {
	start := time.Now()
	st, err := r.Prune(ctx, opt)
	if err != nil {
		return err
	}
	verb := "Pruned"
	if opt.DryRun {
		verb = "Would prune"
	}
	fmt.Fprintf(env.stdout, "%s: %d pack(s) deleted (%d of them repacked), %d kept, %s freed, %s copied, %d index file(s) replaced, in %s\n",
		verb, st.PacksDeleted, st.PacksRepacked, st.PacksKept, disks.HumanBytes(st.BytesFreed), disks.HumanBytes(st.BytesRepacked), st.IndexesReplaced, time.Since(start).Round(100*time.Millisecond))
	if st.TempRemoved > 0 {
		fmt.Fprintf(env.stdout, "Removed %d leftover(s) of interrupted saves older than a day (temporary files, unfinished uploads)\n", st.TempRemoved)
	}
	return nil
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}
