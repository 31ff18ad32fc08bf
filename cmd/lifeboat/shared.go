package main

import (
	"context"
	"fmt"
	"io"

	"github.com/lifeboat/lifeboat/engine/clone"
	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/progress"
	"github.com/lifeboat/lifeboat/engine/ptable"
)

// resolveDisk finds the disk a name (path or identity) means, among the
// machine's disks and the image files given with --disk.
func resolveDisk(ctx context.Context, spec string, files []string, role string) (*disks.Disk, error) {
	all, err := disks.Scan(ctx, disks.Options{Files: files})
	if err != nil {
		return nil, fmt.Errorf("list disks: %w", err)
	}
	d, err := disks.Resolve(ctx, spec, all)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", role, err)
	}
	return d, nil
}

// parseLayout checks a --layout value.
func parseLayout(s string) (ptable.Layout, error) {
	switch l := ptable.Layout(s); l {
	case ptable.LayoutGrowLast, ptable.LayoutProportional, ptable.LayoutKeep:
		return l, nil
	}
	return "", &exitError{code: 2, err: fmt.Errorf("--layout %q: want grow-last, proportional or keep", s)}
}

// confirmAndRun shows the plan, asks for the target's identity unless yes,
// and runs the plan with progress on the chosen display.
func confirmAndRun(ctx context.Context, env *cmdEnv, plan *clone.Plan, words io.Writer, yes bool, prog string) (*clone.Result, error) {
	plan.Describe(words)
	if !yes {
		if err := confirm(env, plan.Target); err != nil {
			return nil, err
		}
	}
	counters := &progress.Counters{}
	stop := startProgress(env, prog, counters)
	res, err := clone.Run(ctx, plan, counters)
	stop()
	if err != nil {
		if ctx.Err() != nil {
			return nil, &exitError{code: 130, err: err}
		}
		return nil, err
	}
	return res, nil
}

// wordsFor returns where plans and results go: stdout, or stderr when
// stdout carries JSON progress lines.
func wordsFor(env *cmdEnv, prog string) io.Writer {
	if prog == "json" {
		return env.stderr
	}
	return env.stdout
}
