package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/image"
	"github.com/lifeboat/lifeboat/engine/progress"
	"github.com/lifeboat/lifeboat/engine/ptable"
	"github.com/lifeboat/lifeboat/engine/repo"
)

func init() {
	register("init", command{summary: "create an image repository", run: runInit})
	register("backup", command{summary: "back up a disk or a partition into a repository", run: runBackup})
	register("snapshots", command{summary: "list the snapshots of a repository", run: runSnapshots})
	register("restore", command{summary: "restore a snapshot onto a disk or a partition", run: runRestore})
}

func runInit(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlags("init", env, "init --repo REPO [--password-file F]")
	rf := addRepoFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *rf.location == "" {
		return &exitError{code: 2, err: errors.New("--repo is required")}
	}
	be, err := openBackend(ctx, env, rf)
	if err != nil {
		return err
	}
	pw, err := readPassword(env, *rf.passwordFile, false)
	if err != nil {
		return err
	}
	defer be.Close()
	r, err := repo.Init(ctx, be, repo.InitOptions{Password: pw})
	if err != nil {
		return fmt.Errorf("create repository %s: %w", *rf.location, err)
	}
	defer r.Close()
	enc := "unencrypted"
	if r.Config().Encrypted {
		enc = "encrypted"
	}
	fmt.Fprintf(env.stdout, "created %s repository %s at %s (chunk size %s)\n", enc, r.Config().ID, *rf.location, disks.HumanBytes(int64(r.Config().ChunkSize)))
	return nil
}

func parseCompression(s string) (repo.Compression, error) {
	switch s {
	case "fastest":
		return repo.CompressFastest, nil
	case "default", "":
		return repo.CompressDefault, nil
	case "better":
		return repo.CompressBetter, nil
	}
	return 0, &exitError{code: 2, err: fmt.Errorf("--compression %q: want fastest, default or better", s)}
}

func runBackup(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlags("backup", env, "backup --from SRC --repo REPO [--system | --partition N] [--tag T]... [--compression fastest|default|better] [--password-file F]")
	rf := addRepoFlags(fs)
	from := fs.String("from", "", "disk to back up: a path, an image file, or serial:S, wwn:W, model:M")
	part := fs.Int("partition", 0, "back up only this partition")
	sysOnly := fs.Bool("system", false, "back up only the partitions the installed system needs (EFI, BIOS boot, root, /boot, swap...)")
	comp := fs.String("compression", "default", "fastest, default or better")
	prog := fs.String("progress", "auto", "progress display: auto, bar, json or none")
	host := fs.String("host", "", "host name to record (default: this machine's)")
	packSize := fs.Int("pack-size", 0, "pack size in bytes (default 32 MiB; for tests and tuning)")
	var tags, diskFiles multiFlag
	fs.Var(&tags, "tag", "tag the snapshot (repeatable)")
	fs.Var(&diskFiles, "disk", "add a disk-image file to the disks that names can match (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *from == "" {
		return &exitError{code: 2, err: errors.New("--from is required")}
	}
	level, err := parseCompression(*comp)
	if err != nil {
		return err
	}
	if *sysOnly && *part != 0 {
		return &exitError{code: 2, err: errors.New("--system and --partition do not go together")}
	}
	src, err := resolveDisk(ctx, *from, diskFiles, "source")
	if err != nil {
		return err
	}
	r, repoPath, err := openRepo(ctx, env, rf, true)
	if err != nil {
		return err
	}
	defer closeRepo(r)
	words := wordsFor(env, *prog)
	fmt.Fprintf(words, "Backing up %s into %s\n", src.Describe(), *rf.location)
	counters := &progress.Counters{}
	stop := startProgress(env, *prog, counters)
	res, err := image.Backup(ctx, image.BackupOptions{
		Source: src, Partition: *part, System: *sysOnly, Repo: r, RepoPath: repoPath, Tags: tags, Host: *host, Compression: level,
		PackSize: *packSize,
	}, counters)
	stop()
	if err != nil {
		if ctx.Err() != nil {
			return &exitError{code: 130, err: fmt.Errorf("interrupted: no snapshot was made; the chunks already stored are reused when the backup runs again")}
		}
		return err
	}
	for _, l := range res.Meta.System {
		fmt.Fprintln(words, l)
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(words, "Warning: %s\n", w)
	}
	fmt.Fprintf(words, "Snapshot %s saved: %s used, %s added to the repository (%d new chunks, %d already stored) in %s\n",
		res.Snapshot.ID, disks.HumanBytes(res.Meta.Used), disks.HumanBytes(res.Stats.BytesStored),
		res.Stats.ChunksNew, res.Stats.ChunksDedup, res.Duration.Round(100*time.Millisecond))
	return nil
}

// snapshotRow is one snapshot as `snapshots --json` prints it.
type snapshotRow struct {
	ID         string             `json:"id"`
	Time       time.Time          `json:"time"`
	Host       string             `json:"host"`
	Tags       []string           `json:"tags"`
	Kind       string             `json:"kind"`
	Source     image.SourceInfo   `json:"source"`
	Table      string             `json:"table"`
	Partitions []image.RegionMeta `json:"partitions"`
	Used       int64              `json:"used"`
	Added      int64              `json:"added"`
}

func runSnapshots(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlags("snapshots", env, "snapshots --repo REPO [--json] [--password-file F]")
	rf := addRepoFlags(fs)
	asJSON := fs.Bool("json", false, "print a JSON array")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	r, _, err := openRepo(ctx, env, rf, false)
	if err != nil {
		return err
	}
	defer closeRepo(r)
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return err
	}
	rows := []snapshotRow{}
	for _, s := range snaps {
		row := snapshotRow{ID: s.ID, Time: s.Time, Host: s.Host, Tags: s.Tags}
		if row.Tags == nil {
			row.Tags = []string{}
		}
		if m, err := image.ParseMeta(s.Meta); err == nil {
			row.Kind, row.Source, row.Table, row.Used, row.Added = m.Kind, m.Source, m.Table, m.Used, m.Added
			row.Partitions = m.Partitions()
		}
		rows = append(rows, row)
	}
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tHOST\tSOURCE\tPARTITIONS\tUSED\tADDED\tTAGS")
	for _, r := range rows {
		src := r.Source.Path
		if r.Source.Model != "" {
			src = r.Source.Model
		}
		if r.Source.Serial != "" {
			src += " " + r.Source.Serial
		}
		src += " " + disks.HumanBytes(r.Source.Size)
		var parts []string
		for _, p := range r.Partitions {
			parts = append(parts, fmt.Sprintf("%d:%s", p.Number, p.FS))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", short(r.ID), r.Time.Local().Format("2006-01-02 15:04:05"), r.Host, src,
			strings.Join(parts, " "), disks.HumanBytes(r.Used), disks.HumanBytes(r.Added), strings.Join(r.Tags, ","))
	}
	return tw.Flush()
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func runRestore(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlags("restore", env, "restore --repo REPO [--snapshot ID|latest] --to DST [--system] [--new-ids] [--partition N [--to-partition M]] [--layout ...] [--delta] [--verify] [--yes]")
	rf := addRepoFlags(fs)
	snapID := fs.String("snapshot", "latest", "snapshot id (a unique prefix) or latest")
	to := fs.String("to", "", "target disk: a path, an image file, or serial:S, wwn:W, model:M")
	part := fs.Int("partition", 0, "restore only this partition of the snapshot")
	toPart := fs.Int("to-partition", 0, "into this existing partition of the target")
	layout := fs.String("layout", string(ptable.LayoutGrowLast), "on a larger target: grow-last, proportional or keep")
	sysOnly := fs.Bool("system", false, "restore only the partitions the installed system needs, laid out from the start (a --system snapshot does so by itself)")
	newIDs := fs.Bool("new-ids", false, "give the restored disk new disk/partition GUIDs and file-system UUIDs")
	scratch := fs.String("scratch-dir", "", "directory for what shrinking a file system on a copy-on-write view writes (default: memory)")
	delta := fs.Bool("delta", false, "read the target first and write only the chunks that differ")
	verify := fs.Bool("verify", false, "re-read the target and compare checksums")
	noDiscard := fs.Bool("no-discard", false, "do not discard the target before writing")
	yes := fs.Bool("yes", false, "do not ask for confirmation (every safety rule still applies)")
	prog := fs.String("progress", "auto", "progress display: auto, bar, json or none")
	var diskFiles multiFlag
	fs.Var(&diskFiles, "disk", "add a disk-image file to the disks that names can match (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *to == "" {
		return &exitError{code: 2, err: errors.New("--to is required")}
	}
	if *sysOnly && *part != 0 {
		return &exitError{code: 2, err: errors.New("--system and --partition do not go together")}
	}
	lay, err := parseLayout(*layout)
	if err != nil {
		return err
	}
	r, repoPath, err := openRepo(ctx, env, rf, false)
	if err != nil {
		return err
	}
	defer closeRepo(r)
	snap, err := r.LoadSnapshot(ctx, *snapID)
	if err != nil {
		return err
	}
	dst, err := resolveDisk(ctx, *to, diskFiles, "target")
	if err != nil {
		return err
	}
	plan, _, err := image.PlanRestore(ctx, image.RestoreOptions{
		Repo: r, Snapshot: snap, Target: dst, Partition: *part, ToPartition: *toPart,
		Layout: lay, Delta: *delta, Verify: *verify, NoDiscard: *noDiscard, RepoPath: repoPath,
		System: *sysOnly, NewIDs: *newIDs, ScratchDir: *scratch,
	})
	if err != nil {
		return err
	}
	defer plan.Close()
	words := wordsFor(env, *prog)
	res, err := confirmAndRun(ctx, env, plan, words, *yes, *prog)
	if err != nil {
		return err
	}
	fmt.Fprintf(words, "Done: %s restored, %s written in %s\n", disks.HumanBytes(res.Copied), disks.HumanBytes(res.Written), res.Duration.Round(100*time.Millisecond))
	if res.Verified {
		fmt.Fprintln(words, "Verified: every byte written was read back and matches the snapshot")
	}
	return nil
}

func init() {
	register("export", command{summary: "write a snapshot as a raw disk or partition image (a sparse file)", run: runExport})
}

func runExport(ctx context.Context, env *cmdEnv, args []string) error {
	fs := newFlags("export", env, "export --repo REPO [--snapshot ID|latest] [--partition N] --to FILE")
	rf := addRepoFlags(fs)
	snapID := fs.String("snapshot", "latest", "snapshot id (a unique prefix) or latest")
	part := fs.Int("partition", 0, "export only this partition")
	to := fs.String("to", "", "raw image file to create (must not exist)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *to == "" {
		return &exitError{code: 2, err: errors.New("--to is required")}
	}
	r, _, err := openRepo(ctx, env, rf, false)
	if err != nil {
		return err
	}
	defer closeRepo(r)
	snap, err := r.LoadSnapshot(ctx, *snapID)
	if err != nil {
		return err
	}
	start := time.Now()
	n, err := image.Export(ctx, image.ExportOptions{Repo: r, Snapshot: snap, Partition: *part, To: *to}, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "Exported snapshot %s to %s: %s of data written in %s\n", short(snap.ID), *to, disks.HumanBytes(n), time.Since(start).Round(100*time.Millisecond))
	return nil
}
