package repo

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"
)

// Policy says which snapshots to keep. Each Keep* count keeps the newest
// snapshot of each of that many most recent periods that have snapshots;
// a snapshot kept by any rule is kept.
type Policy struct {
	// KeepLast keeps the newest KeepLast snapshots.
	KeepLast int
	// KeepHourly .. KeepYearly keep one snapshot per hour, day, ISO week,
	// month or year (in the time zone of ApplyPolicy's now).
	KeepHourly, KeepDaily, KeepWeekly, KeepMonthly, KeepYearly int
	// Tags, when set, limits the policy to snapshots carrying all of these
	// tags; other snapshots are kept.
	Tags []string
	// Hosts, when set, limits the policy to snapshots of one of these
	// hosts; other snapshots are kept.
	Hosts []string
}

// Empty reports whether the policy has no keep rule, so it keeps
// everything. The CLI refuses such a policy rather than doing nothing.
func (p Policy) Empty() bool {
	return p.KeepLast <= 0 && p.KeepHourly <= 0 && p.KeepDaily <= 0 && p.KeepWeekly <= 0 && p.KeepMonthly <= 0 && p.KeepYearly <= 0
}

// Decision is what a policy decided for one snapshot.
type Decision struct {
	Snapshot *Snapshot
	Keep     bool
	// Reasons says which rules keep it ("last 3", "daily 2026-11-20"), or
	// why it is outside the policy; empty when the snapshot goes.
	Reasons []string
}

// selects reports whether p applies to s.
func (p Policy) selects(s *Snapshot) bool {
	for _, t := range p.Tags {
		if !slices.Contains(s.Tags, t) {
			return false
		}
	}
	return len(p.Hosts) == 0 || slices.Contains(p.Hosts, s.Host)
}

// bucket is one Keep* rule while the policy runs.
type bucket struct {
	name  string
	left  int
	key   func(t time.Time, rank int) string
	last  string
	taken bool
}

// ApplyPolicy decides, for every snapshot, whether p keeps it. It returns
// the decisions newest first (equal times by id). Periods are calendar
// periods of local time in now's location, keyed by their local date
// (so a day is a day across a DST change); weeks are ISO weeks. Snapshots
// the policy does not select (Tags, Hosts) are kept; a policy with no
// rule keeps everything. It is a pure function.
func ApplyPolicy(snaps []*Snapshot, p Policy, now time.Time) []Decision {
	list := slices.Clone(snaps)
	sort.SliceStable(list, func(i, j int) bool {
		if !list[i].Time.Equal(list[j].Time) {
			return list[i].Time.After(list[j].Time)
		}
		return list[i].ID > list[j].ID
	})
	loc := now.Location()
	buckets := []*bucket{
		{name: "last", left: p.KeepLast, key: func(_ time.Time, rank int) string { return fmt.Sprint(rank) }},
		{name: "hourly", left: p.KeepHourly, key: func(t time.Time, _ int) string { return t.In(loc).Format("2006-01-02 15h") }},
		{name: "daily", left: p.KeepDaily, key: func(t time.Time, _ int) string { return t.In(loc).Format("2006-01-02") }},
		{name: "weekly", left: p.KeepWeekly, key: func(t time.Time, _ int) string {
			y, w := t.In(loc).ISOWeek()
			return fmt.Sprintf("%04d-W%02d", y, w)
		}},
		{name: "monthly", left: p.KeepMonthly, key: func(t time.Time, _ int) string { return t.In(loc).Format("2006-01") }},
		{name: "yearly", left: p.KeepYearly, key: func(t time.Time, _ int) string { return t.In(loc).Format("2006") }},
	}
	out := make([]Decision, 0, len(list))
	rank := 0
	for _, s := range list {
		d := Decision{Snapshot: s}
		switch {
		case !p.selects(s):
			d.Keep = true
			d.Reasons = []string{"not selected by the policy's tags or hosts"}
		case p.Empty():
			d.Keep = true
			d.Reasons = []string{"policy has no keep rule"}
		default:
			rank++
			for _, b := range buckets {
				if b.left <= 0 {
					continue
				}
				k := b.key(s.Time, rank)
				if b.taken && k == b.last {
					continue // a newer snapshot already stands for this period
				}
				b.last, b.taken = k, true
				b.left--
				d.Keep = true
				d.Reasons = append(d.Reasons, b.name+" "+k)
			}
		}
		out = append(out, d)
	}
	return out
}

// Forget applies p to the repository's snapshots and, unless dryRun,
// removes the manifests of those it does not keep (their data stays until
// Prune). It takes an exclusive lock unless dryRun. The decisions come
// newest first.
func (r *Repo) Forget(ctx context.Context, p Policy, dryRun bool) (ds []Decision, err error) {
	if !dryRun {
		l, err := r.Lock(ctx, true)
		if err != nil {
			return nil, fmt.Errorf("forget: %w", err)
		}
		defer func() {
			if uerr := l.Unlock(); uerr != nil && err == nil {
				err = fmt.Errorf("forget: %w", uerr)
			}
		}()
	}
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return nil, fmt.Errorf("forget: %w", err)
	}
	ds = ApplyPolicy(snaps, p, r.now())
	if dryRun {
		return ds, nil
	}
	for _, d := range ds {
		if d.Keep {
			continue
		}
		if err := r.RemoveSnapshot(ctx, d.Snapshot.ID); err != nil {
			return ds, fmt.Errorf("forget: %w", err)
		}
	}
	return ds, nil
}
