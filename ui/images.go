package ui

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rivo/tview"

	"github.com/lifeboat/lifeboat/engine/clone"
	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/image"
	"github.com/lifeboat/lifeboat/engine/progress"
	"github.com/lifeboat/lifeboat/engine/ptable"
	"github.com/lifeboat/lifeboat/engine/repo"
)

var compressions = []repo.Compression{repo.CompressFastest, repo.CompressDefault, repo.CompressBetter}

var compressionWords = []string{"fastest", "default", "better (slower, smaller)"}

// backupWizard: source disk, whole disk or one partition, repository,
// options (compression, tags), plan, progress, summary. Nothing is
// overwritten, so the plan's Start needs no typed confirmation.
func (a *app) backupWizard() {
	const name = "Backup"
	var src *disks.Disk
	var part int
	var or *openedRepo
	level := repo.CompressDefault
	var tags string
	var pickSrc, pickPart, pickRepo, options func()
	pickSrc = func() {
		a.pickDisk(name+" 1/4: source", "Which disk do you back up? It is only read.", nil, a.home, func(d *disks.Disk) {
			src = d
			pickPart()
		})
	}
	pickPart = func() {
		a.pickPartition(name+" 1/4: what", "The whole disk, or one partition?", src, "the whole disk: table, boot code and every partition", pickSrc, func(n int) {
			part = n
			pickRepo()
		})
	}
	pickRepo = func() {
		a.chooseRepo(name+" 2/4: repository", true, pickPart, func(r *openedRepo) {
			or = r
			options()
		})
	}
	options = func() {
		f := tview.NewForm()
		a.styleForm(f)
		cur := compressionIndex(level)
		dd := tview.NewDropDown().SetLabel("Compression ").SetOptions(compressionWords, func(_ string, i int) {
			if i >= 0 {
				level = compressions[i]
			}
		}).SetCurrentOption(cur)
		dd.SetFieldStyle(a.theme.field).SetFocusedStyle(a.theme.focus).SetListStyles(a.theme.normal, a.theme.focus)
		f.AddFormItem(dd)
		f.AddInputField("Tags (space separated) ", tags, 40, nil, func(s string) { tags = s })
		back := func() { a.runCleanups(); pickRepo() }
		f.AddButton("Next", func() { a.backupPlan(src, part, or, level, strings.Fields(tags), options) })
		f.AddButton("Back", back)
		f.SetCancelFunc(back)
		f.SetBorder(true)
		a.step(name+" 3/4: options", "Options.", f, "Tab/↓ next field  Enter open or press  Esc back")
	}
	pickSrc()
}

// backupPlan says what the backup reads and adds, then runs it.
func (a *app) backupPlan(src *disks.Disk, part int, or *openedRepo, level repo.Compression, tags []string, back func()) {
	var b strings.Builder
	fmt.Fprintf(&b, "FROM  %s\n      only read: nothing on it changes\n", diskTitle(src))
	fmt.Fprintf(&b, "TO    repository %s", or.location)
	if or.created {
		b.WriteString(" (made just now)")
	}
	enc := "unencrypted"
	if or.r.Config().Encrypted {
		enc = "encrypted"
	}
	fmt.Fprintf(&b, ", %s\n\nOVERWRITTEN  nothing: a new snapshot is added\nKEPT         every snapshot already in the repository\n\n", enc)
	if part == 0 {
		fmt.Fprintf(&b, "Saved: the whole disk (%s table, boot areas) and the used blocks of\n", src.Table)
		for _, p := range src.Partitions {
			b.WriteString("  " + partLine(p) + "\n")
		}
	} else {
		p, _ := partitionOf(src, part)
		fmt.Fprintf(&b, "Saved: the used blocks of\n  %s\n", partLine(p))
	}
	fmt.Fprintf(&b, "\nCompression %s", compressionWords[compressionIndex(level)])
	if len(tags) > 0 {
		fmt.Fprintf(&b, ", tags %s", strings.Join(tags, " "))
	}
	b.WriteString("\n")
	a.logf("Backup plan:\n%s", b.String())
	a.showPlan("Backup 4/4: plan", b.String(), back, func() {
		a.runJob(job{title: "Backup", stopWords: "No snapshot is made. The chunks already stored are reused when the backup runs again.",
			run: func(ctx context.Context, c *progress.Counters) (string, error) {
				res, err := image.Backup(ctx, image.BackupOptions{Source: src, Partition: part, Repo: or.r, RepoPath: or.dir,
					Tags: tags, Compression: level}, c)
				if err != nil {
					if ctx.Err() != nil {
						return "", fmt.Errorf("stopped: no snapshot was made; the chunks already stored are reused when the backup runs again: %w", err)
					}
					return "", err
				}
				var s strings.Builder
				fmt.Fprintf(&s, "Snapshot %s saved in %s.\n%s used on the source, %s added to the repository (%d new chunks, %d already stored).\n",
					shortID(res.Snapshot.ID), or.location, disks.HumanBytes(res.Meta.Used), disks.HumanBytes(res.Stats.BytesStored),
					res.Stats.ChunksNew, res.Stats.ChunksDedup)
				s.WriteString("Verify: every chunk was hashed when stored; Images > Verify reads them back.\n")
				for _, w := range res.Warnings {
					fmt.Fprintf(&s, "Warning: %s\n", w)
				}
				return s.String(), nil
			}})
	})
}

func compressionIndex(c repo.Compression) int {
	for i, x := range compressions {
		if x == c {
			return i
		}
	}
	return 1
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// snapshotItem is a snapshot with its metadata, for lists.
type snapshotItem struct {
	s    *repo.Snapshot
	meta *image.Meta
}

func (si snapshotItem) title() string { return image.Describe(si.s, si.meta) }

func (si snapshotItem) about() string {
	if si.meta == nil {
		return "unreadable metadata"
	}
	var parts []string
	for _, p := range si.meta.Partitions() {
		parts = append(parts, fmt.Sprintf("%d %s %s", p.Number, dash(p.FS), disks.HumanBytes(p.Size)))
	}
	s := fmt.Sprintf("%s table; %s used", si.meta.Table, disks.HumanBytes(si.meta.Used))
	if len(parts) > 0 {
		s += "; partitions " + strings.Join(parts, ", ")
	}
	if len(si.s.Tags) > 0 {
		s += "; tags " + strings.Join(si.s.Tags, " ")
	}
	return s
}

// loadSnapshots reads the repository's snapshots, newest first.
func loadSnapshots(ctx context.Context, r *repo.Repo) ([]snapshotItem, error) {
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]snapshotItem, 0, len(snaps))
	for i := len(snaps) - 1; i >= 0; i-- {
		si := snapshotItem{s: snaps[i]}
		if m, err := image.ParseMeta(snaps[i].Meta); err == nil {
			si.meta = m
		}
		out = append(out, si)
	}
	return out, nil
}

// pickSnapshot lists the snapshots of r.
func (a *app) pickSnapshot(title, question string, r *repo.Repo, back func(), chosen func(snapshotItem)) {
	var items []snapshotItem
	a.async("Reading the snapshots", func() (err error) {
		items, err = loadSnapshots(a.ctx, r)
		return err
	}, func(err error) {
		if err != nil {
			a.failed("Read the snapshots", err, back)
			return
		}
		if len(items) == 0 {
			a.message(title, "This repository holds no snapshots yet.", back)
			return
		}
		l := a.newList()
		for _, si := range items {
			l.AddItem(si.title(), "    "+si.about(), 0, nil)
		}
		l.SetSelectedFunc(func(i int, _, _ string, _ rune) { chosen(items[i]) })
		l.SetDoneFunc(back)
		l.SetBorder(true)
		a.step(title, question, l, listHelp)
	})
}

// restoreWizard: repository, snapshot, target, options, plan, typed
// confirmation, progress, summary. The restore is a clone from the
// snapshot, so every safety rule of a clone applies.
func (a *app) restoreWizard() {
	const name = "Restore"
	var or *openedRepo
	var snap snapshotItem
	var dst *disks.Disk
	opts := writeOptions{layout: ptable.LayoutGrowLast}
	var pickRepo, pickSnap, pickDst, options func()
	pickRepo = func() {
		a.chooseRepo(name+" 1/5: repository", false, a.home, func(r *openedRepo) {
			or = r
			pickSnap()
		})
	}
	pickSnap = func() {
		a.pickSnapshot(name+" 1/5: snapshot", "Which snapshot do you restore?", or.r, func() { a.runCleanups(); pickRepo() }, func(si snapshotItem) {
			snap = si
			pickDst()
		})
	}
	pickDst = func() {
		a.pickDisk(name+" 2/5: target", "Which disk do you restore TO? What the plan names on it is overwritten.", nil, pickSnap, func(d *disks.Disk) {
			dst = d
			options()
		})
	}
	options = func() {
		a.writeOptionsForm(name+" 3/5: options", true, true, &opts, pickDst, func() {
			var extra string
			if opts.delta {
				extra = "Delta: the target is read first and only what differs is written.\n"
			}
			a.planOverwrite(overwrite{name: name, note: "Planning the restore", noun: "restore", from: "the snapshot", extra: extra,
				plan: func(ctx context.Context) (*clone.Plan, error) {
					plan, _, err := image.PlanRestore(ctx, image.RestoreOptions{Repo: or.r, Snapshot: snap.s, Target: dst, Layout: opts.layout,
						Delta: opts.delta, Verify: opts.verify, RepoPath: or.dir, Protect: []string{a.logPath}})
					return plan, err
				}}, options)
		})
	}
	pickRepo()
}

// imagesScreen lists a repository's snapshots; each can be verified or
// forgotten.
func (a *app) imagesScreen() {
	var or *openedRepo
	var pickRepo, list func()
	pickRepo = func() {
		a.chooseRepo("Images: repository", false, a.home, func(r *openedRepo) {
			or = r
			list()
		})
	}
	list = func() {
		a.pickSnapshot("Images: "+or.location, "Choose a snapshot to verify or forget.", or.r, func() { a.runCleanups(); pickRepo() }, func(si snapshotItem) {
			a.dialog("Snapshot "+shortID(si.s.ID), si.title()+"\n\n"+si.about(),
				[]string{"Verify", "Verify all data", "Forget", "Back"}, func(i int) {
					switch i {
					case 0, 1:
						a.verifyJob(or, si, i == 1)
					case 2:
						a.forget(or, si, list)
					default:
						list()
					}
				})
		})
	}
	pickRepo()
}

// verifyJob checks a snapshot's structure and, with data, every chunk.
func (a *app) verifyJob(or *openedRepo, si snapshotItem, data bool) {
	phase := "verify"
	if data {
		phase = "read-data"
	}
	a.runJob(job{title: "Verify", stopWords: "Nothing is changed by verifying; the check is incomplete.",
		run: func(ctx context.Context, c *progress.Counters) (string, error) {
			c.SetPhase(phase, 0)
			var total int64
			start := time.Now()
			rep, damaged, err := image.Verify(ctx, or.r, []string{si.s.ID}, data, func(done, t int64) {
				if t != total {
					total = t
					c.SetPhase(phase, t)
				}
				c.Add(done - c.Snapshot().Done)
			})
			if err != nil {
				return "", err
			}
			var b strings.Builder
			what := "structure"
			if data {
				what = "structure and every chunk's content"
			}
			fmt.Fprintf(&b, "Checked the %s of snapshot %s: %d chunks in %d packs, in %s.\n", what, shortID(si.s.ID), rep.Chunks, rep.Packs, clock(time.Since(start)))
			for _, w := range rep.Warnings {
				fmt.Fprintf(&b, "Warning: %s\n", w)
			}
			for _, p := range rep.Problems {
				fmt.Fprintf(&b, "Problem: %s\n", p)
			}
			for _, d := range damaged {
				fmt.Fprintf(&b, "Damaged: %s\n", d)
			}
			if !rep.OK() {
				return "", fmt.Errorf("verify: the repository is damaged: %d problem(s), %d damaged range(s)\n%s", len(rep.Problems), len(damaged), b.String())
			}
			b.WriteString("Verify result: no problems found.\n")
			return b.String(), nil
		}})
}

// forget removes one snapshot's manifest after asking.
func (a *app) forget(or *openedRepo, si snapshotItem, after func()) {
	a.dialog("Forget?", "Forget "+si.title()+"?\n\nIts manifest is removed; the data only it used stays in the repository until it is pruned. It cannot be restored afterwards.",
		[]string{"Keep it", "Forget"}, func(i int) {
			if i != 1 {
				after()
				return
			}
			a.async("Forgetting", func() error {
				l, err := or.r.Lock(a.ctx, true)
				if err != nil {
					return fmt.Errorf("forget snapshot %s: %w", shortID(si.s.ID), err)
				}
				err = or.r.RemoveSnapshot(a.ctx, si.s.ID)
				if uerr := l.Unlock(); err == nil && uerr != nil {
					err = fmt.Errorf("forget snapshot %s: %w", shortID(si.s.ID), uerr)
				}
				return err
			}, func(err error) {
				if err != nil {
					a.failed("Forget", err, after)
					return
				}
				a.logf("forgot %s", si.title())
				a.message("Forgotten", "Snapshot "+shortID(si.s.ID)+" is forgotten.", after)
			})
		})
}
