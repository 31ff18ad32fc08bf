package ui

import (
	"context"
	"fmt"
	"strings"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"

	"github.com/lifeboat/lifeboat/engine/clone"
	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/progress"
	"github.com/lifeboat/lifeboat/engine/ptable"
)

// writeOptions are the choices of a wizard that writes a disk.
type writeOptions struct {
	layout ptable.Layout
	verify bool
	delta  bool
}

var layouts = []ptable.Layout{ptable.LayoutGrowLast, ptable.LayoutProportional, ptable.LayoutKeep}

var layoutWords = []string{"grow-last", "proportional", "keep"}

// cloneWizard returns the Disk Clone (or Partition Clone) flow: source,
// target, options, plan, typed confirmation, progress, summary.
func (a *app) cloneWizard(partition, system bool) func() {
	name := "Disk Clone"
	switch {
	case partition:
		name = "Partition Clone"
	case system:
		name = "System Clone"
	}
	return func() {
		var src, dst *disks.Disk
		var part, toPart int
		opts := writeOptions{layout: ptable.LayoutGrowLast}
		var pickSrc, pickPart, pickDst, pickToPart, options func()
		pickSrc = func() {
			a.pickDisk(name+" 1/5: source", "Which disk do you copy FROM? It is only read.", nil, a.home, func(d *disks.Disk) {
				src = d
				if partition {
					pickPart()
				} else {
					pickDst()
				}
			})
		}
		pickPart = func() {
			a.pickPartition(name+" 1/5: source partition", "Which partition do you copy?", src, "", pickSrc, func(n int) {
				part = n
				pickDst()
			})
		}
		pickDst = func() {
			back := pickSrc
			if partition {
				back = pickPart
			}
			a.pickDisk(name+" 2/5: target", "Which disk do you copy TO? What the plan names on it is overwritten.", src, back, func(d *disks.Disk) {
				dst = d
				if partition {
					pickToPart()
				} else {
					options()
				}
			})
		}
		pickToPart = func() {
			a.pickPartition(name+" 2/5: target partition", "Into which partition of the target? Or the whole target disk (a new table).", dst,
				"the whole disk: everything on it is replaced", pickDst, func(n int) {
					toPart = n
					options()
				})
		}
		options = func() {
			back := pickDst
			if partition {
				back = pickToPart
			}
			a.writeOptionsForm(name+" 3/5: options", toPart == 0, false, &opts, back, func() {
				a.planOverwrite(overwrite{name: name, note: "Planning: reading the source's partition table and used blocks",
					noun: "clone", from: "the source",
					plan: func(ctx context.Context) (*clone.Plan, error) {
						co := clone.Options{Source: src, Target: dst, Layout: opts.layout, Partition: part, ToPartition: toPart,
							Verify: opts.verify, System: system, Protect: []string{a.logPath}}
						if a.sourceHook != nil {
							dev, err := a.sourceHook(ctx, src)
							if err != nil {
								return nil, err
							}
							co.SourceDev = dev
						}
						return clone.MakePlan(ctx, co)
					}}, options)
			})
		}
		pickSrc()
	}
}

// writeOptionsForm asks for layout (when the target's table is replaced),
// verify and, for restores, delta.
func (a *app) writeOptionsForm(title string, withLayout, withDelta bool, o *writeOptions, back, next func()) {
	f := tview.NewForm()
	a.styleForm(f)
	if withLayout {
		cur := 0
		for i, l := range layouts {
			if l == o.layout {
				cur = i
			}
		}
		dd := tview.NewDropDown().SetLabel("Layout ").SetOptions(layoutWords, func(_ string, i int) {
			if i >= 0 {
				o.layout = layouts[i]
			}
		}).SetCurrentOption(cur)
		dd.SetFieldStyle(a.theme.field).SetFocusedStyle(a.theme.focus).SetListStyles(a.theme.normal, a.theme.focus)
		f.AddFormItem(dd)
	}
	f.AddFormItem(a.checkbox("Verify ", &o.verify))
	if withDelta {
		f.AddFormItem(a.checkbox("Delta ", &o.delta))
	}
	f.AddButton("Next", next).AddButton("Back", back)
	f.SetCancelFunc(back)
	f.SetBorder(true)
	q := "Verify reads the target back and compares it. Nothing is written before the plan is shown and confirmed."
	if withLayout {
		q = "Layout, on a larger target: grow-last (the last partition grows), proportional (all grow) or keep (sizes kept). " + q
	}
	if withDelta {
		q += " Delta writes only what differs from a target that holds an older copy."
	}
	a.step(title, q, f,
		"Tab/↓ next field  Enter open or press  Space tick  Esc back")
}

// checkbox is a tick box drawn as [X] or [ ], which reads the same
// without colour.
func (a *app) checkbox(label string, v *bool) *tview.Checkbox {
	cb := tview.NewCheckbox().SetLabel(label).SetChecked(*v).SetChangedFunc(func(c bool) { *v = c })
	cb.SetCheckedString(tview.Escape("[X]")).SetUncheckedString(tview.Escape("[ ]"))
	cb.SetActivatedStyle(a.theme.focus).SetUncheckedStyle(a.theme.normal).SetCheckedStyle(a.theme.normal)
	return cb
}

// overwrite is a wizard step that ends in writing a disk (a clone or a
// restore): how its plan is made and how its screens name it.
type overwrite struct {
	// name is the wizard's, the prefix of its screens' titles.
	name string
	// note is shown while the plan is made.
	note string
	// noun is what the user runs again to finish a stopped job.
	noun string
	// from is what a verify compares the target with, for the summary.
	from string
	// extra is added to the plan's words.
	extra string
	// plan makes the plan; it runs off the interface's goroutine.
	plan func(ctx context.Context) (*clone.Plan, error)
}

// planOverwrite makes w's plan off the interface's goroutine, then shows
// it, asks for the typed confirmation and runs the job. Refusals (target
// mounted, too small, the source itself) come from the engine and are
// shown in its words; again goes back to the step before the plan. Esc on
// the confirmation shows the same plan again, Continue included.
func (a *app) planOverwrite(w overwrite, again func()) {
	var plan *clone.Plan
	a.async(w.note, func() (err error) {
		plan, err = w.plan(a.ctx)
		return err
	}, func(err error) {
		if err != nil {
			a.failed(w.name+": cannot plan", err, again)
			return
		}
		a.logf("%s plan:\n%s", w.name, describePlan(plan))
		text := planText(plan) + w.extra
		run := func() {
			a.runJob(job{title: w.name, stopWords: "The target is left incomplete, with no partition table: run the " + w.noun + " again to finish it.",
				run: func(ctx context.Context, c *progress.Counters) (string, error) {
					defer plan.Close()
					res, err := clone.Run(ctx, plan, c)
					if err != nil {
						return "", err
					}
					return cloneSummary(plan, res, w.from), nil
				}})
		}
		var showPlan, confirm func()
		showPlan = func() { a.showPlan(w.name+" 4/5: plan", text, func() { plan.Close(); again() }, confirm) }
		confirm = func() { a.confirmTarget(w.name+" 5/5: confirm", plan.Target, showPlan, run) }
		showPlan()
	})
}

// showPlan shows a plan's words with Continue and Back.
func (a *app) showPlan(title, text string, back, next func()) {
	view := a.newText(text)
	view.SetBorder(true)
	f := tview.NewForm()
	a.styleForm(f)
	f.AddButton("Continue", next).AddButton("Back", back)
	f.SetCancelFunc(back)
	box := tview.NewFlex().SetDirection(tview.FlexRow).AddItem(view, 0, 1, false).AddItem(f, 3, 0, true)
	box.SetInputCapture(func(ev *tcell.EventKey) *tcell.EventKey {
		switch ev.Key() {
		case tcell.KeyPgDn, tcell.KeyPgUp:
			view.InputHandler()(ev, nil)
			return nil
		case tcell.KeyEscape:
			back()
			return nil
		}
		return ev
	})
	a.show(title, box, "PgUp/PgDn scroll  ←→/Tab choose  Enter press  Esc back")
	a.tv.SetFocus(f)
}

// confirmTarget asks for the target's identity, typed. A wrong text is
// refused on the spot and nothing is written.
func (a *app) confirmTarget(title string, d *disks.Disk, back, run func()) {
	_, prompt := disks.Confirmation(d)
	info := tview.NewTextView().SetWordWrap(true)
	info.SetTextStyle(a.theme.normal)
	info.SetText(fmt.Sprintf("What the plan names on this disk is overwritten:\n\n  %s\n  %s\n\nType %s and press Enter.",
		diskTitle(d), trunc(diskContents(d), 150), prompt))
	status := tview.NewTextView().SetWordWrap(true)
	status.SetTextStyle(a.theme.bad)
	in := tview.NewInputField().SetLabel("Confirm: ").SetFieldWidth(30)
	in.SetFieldStyle(a.theme.field)
	in.SetDoneFunc(func(k tcell.Key) {
		switch k {
		case tcell.KeyEscape:
			back()
		case tcell.KeyEnter:
			typed := in.GetText()
			if !disks.Confirmed(d, typed) {
				a.logf("confirmation for %s refused: %q typed", d.Path, typed)
				status.SetText(fmt.Sprintf("%q does not match %s. Nothing was written. Type it again, or Esc to go back.", typed, prompt))
				in.SetText("")
				return
			}
			a.logf("confirmed writing %s", d.Describe())
			run()
		}
	})
	box := tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(info, 9, 0, false).
		AddItem(in, 1, 0, true).
		AddItem(tview.NewBox(), 1, 0, false).
		AddItem(status, 3, 0, false)
	box.SetBorder(true).SetTitle(" Overwrite? ")
	a.show(title, box, "type the text  Enter confirm  Esc back")
	a.tv.SetFocus(in)
}

// planText is a plan in words for an 80-column screen: what is read, what
// is overwritten, what is kept, and each volume's action.
func planText(p *clone.Plan) string {
	var b strings.Builder
	src := p.Opts.SourceLabel
	if src == "" {
		src = diskTitle(p.Source)
	}
	fmt.Fprintf(&b, "FROM  %s\n      only read: nothing on it changes\n", src)
	fmt.Fprintf(&b, "TO    %s\n\n", diskTitle(p.Target))
	var others []string
	for _, tp := range p.Target.Partitions {
		if tp.Number != p.Opts.ToPartition || p.Opts.ToPartition == 0 {
			others = append(others, fmt.Sprintf("%d %s %q %s", tp.Number, dash(tp.FS), partLabel(tp), disks.HumanBytes(tp.Size)))
		}
	}
	switch {
	case p.Opts.ToPartition != 0:
		tp, _ := partitionOf(p.Target, p.Opts.ToPartition)
		fmt.Fprintf(&b, "OVERWRITTEN  partition %d of the target (%s %q, %s)\n", tp.Number, dash(tp.FS), partLabel(tp), disks.HumanBytes(tp.Size))
		if len(others) > 0 {
			fmt.Fprintf(&b, "KEPT         its other partitions: %s\n", strings.Join(others, ", "))
		} else {
			b.WriteString("KEPT         the target's partition table\n")
		}
	default:
		if len(others) > 0 {
			fmt.Fprintf(&b, "OVERWRITTEN  EVERYTHING on the target: its %s table and partitions %s\n", p.Target.Table, strings.Join(others, ", "))
		} else {
			b.WriteString("OVERWRITTEN  EVERYTHING on the target (it holds no partitions now)\n")
		}
		b.WriteString("KEPT         nothing on the target\n")
	}
	if p.System != nil {
		b.WriteString("\n")
		p.System.Describe(&b)
	}
	if p.DstTable != nil {
		fmt.Fprintf(&b, "NEW TABLE    %s, %d-byte sectors, layout %s\n", p.DstTable.Kind, p.DstTable.SectorSize, p.Opts.Layout)
	}
	b.WriteString("\n")
	for _, it := range p.Items {
		num := "whole disk"
		if it.Number != 0 {
			num = fmt.Sprintf("partition %d", it.Number)
			if it.ToNumber != 0 && it.ToNumber != it.Number {
				num += fmt.Sprintf(" -> %d", it.ToNumber)
			}
		}
		label := ""
		if it.FS.Label != "" {
			label = fmt.Sprintf(" %q", it.FS.Label)
		}
		fmt.Fprintf(&b, "%s %s%s: %s, copy %s\n    %s\n", num, dash(it.FS.Type), label, disks.HumanBytes(it.SrcSize),
			disks.HumanBytes(it.Copy), it.Action)
	}
	if p.BootGap.Len > 0 {
		fmt.Fprintf(&b, "boot area before the first partition: %s copied as is\n", disks.HumanBytes(p.BootGap.Len))
	}
	fmt.Fprintf(&b, "\nTo copy: %s", disks.HumanBytes(p.Total))
	if p.Opts.Verify {
		b.WriteString(", then read back and compared")
	}
	b.WriteString("\n")
	for _, w := range p.Warnings {
		fmt.Fprintf(&b, "Warning: %s\n", w)
	}
	return b.String()
}

// describePlan is the engine's own words for the log.
func describePlan(p *clone.Plan) string {
	var b strings.Builder
	p.Describe(&b)
	return b.String()
}

// cloneSummary says what a finished clone or restore did.
func cloneSummary(p *clone.Plan, res *clone.Result, from string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s copied, %s written to %s.\n", disks.HumanBytes(res.Copied), disks.HumanBytes(res.Written), diskTitle(p.Target))
	switch {
	case res.Verified:
		fmt.Fprintf(&b, "Verify: every byte written was read back and matches %s.\n", from)
	case p.Opts.Verify:
		b.WriteString("Verify: NOT verified.\n")
	default:
		b.WriteString("Verify: not asked for.\n")
	}
	for _, w := range res.Warnings[min(len(p.Warnings), len(res.Warnings)):] {
		fmt.Fprintf(&b, "Warning: %s\n", w)
	}
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
