package ui

import (
	"fmt"

	"github.com/rivo/tview"

	"github.com/lifeboat/lifeboat/engine/disks"
)

// step lays out one wizard step: a question above the content.
func (a *app) step(title, question string, content tview.Primitive, help string) {
	q := tview.NewTextView().SetText(question).SetWordWrap(true)
	q.SetTextStyle(a.theme.normal.Bold(true))
	lines := min(len(tview.WordWrap(question, 78)), 4)
	f := tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(q, lines, 0, false).
		AddItem(content, 0, 1, true)
	a.show(title, f, help)
	a.tv.SetFocus(content)
}

const listHelp = "↑↓ choose  Enter next  Esc back"

// pickDisk asks for a disk among those on the home screen, leaving out
// exclude (the source, when a target is asked for): the wrong disk cannot
// be picked if it is not on the list.
func (a *app) pickDisk(title, question string, exclude *disks.Disk, back func(), chosen func(*disks.Disk)) {
	l := a.newList()
	var shown []*disks.Disk
	for i := range a.diskList {
		d := &a.diskList[i]
		if exclude != nil && d.Path == exclude.Path {
			continue
		}
		shown = append(shown, d)
		l.AddItem(diskTitle(d), "    "+diskContents(d), 0, nil)
	}
	if len(shown) == 0 {
		what := "There is no disk to choose."
		if exclude != nil {
			what = "There is no other disk to choose: connect one and press r on the home screen."
		}
		a.message(title, what, back)
		return
	}
	l.SetSelectedFunc(func(i int, _, _ string, _ rune) { chosen(shown[i]) })
	l.SetDoneFunc(back)
	l.SetBorder(true)
	a.step(title, question, l, listHelp)
}

// pickPartition asks for one partition of d. whole, when not empty, is a
// first entry meaning the whole disk (number 0).
func (a *app) pickPartition(title, question string, d *disks.Disk, whole string, back func(), chosen func(int)) {
	l := a.newList()
	var nums []int
	if whole != "" {
		l.AddItem(whole, "    "+diskContents(d), 0, nil)
		nums = append(nums, 0)
	}
	for _, p := range d.Partitions {
		if p.Number == 0 {
			continue
		}
		l.AddItem(fmt.Sprintf("partition %s", partLine(p)), "", 0, nil)
		nums = append(nums, p.Number)
	}
	if len(nums) == 0 {
		a.message(title, fmt.Sprintf("%s has no partitions to choose.", diskTitle(d)), back)
		return
	}
	l.ShowSecondaryText(whole != "")
	l.SetSelectedFunc(func(i int, _, _ string, _ rune) { chosen(nums[i]) })
	l.SetDoneFunc(back)
	l.SetBorder(true).SetTitle(" " + trunc(diskTitle(d), 60) + " ")
	a.step(title, question, l, listHelp)
}

// partitionOf returns partition n of d.
func partitionOf(d *disks.Disk, n int) (disks.Partition, bool) {
	for _, p := range d.Partitions {
		if p.Number == n {
			return p, true
		}
	}
	return disks.Partition{}, false
}
