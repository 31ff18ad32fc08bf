package repo

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the DST cases need zone data whatever the machine has
)

// snap makes a snapshot for policy tests; its id is its name.
func snap(id string, t time.Time, host string, tags ...string) *Snapshot {
	return &Snapshot{ID: id, Time: t, Host: host, Tags: tags}
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestApplyPolicy(t *testing.T) {
	utc := time.UTC
	d := func(y int, m time.Month, day, h, min int, loc *time.Location) time.Time {
		return time.Date(y, m, day, h, min, 0, 0, loc)
	}
	// Two snapshots a day at 01:00 and 13:00 UTC, 2026-10-01 .. 2026-11-30.
	var daily []*Snapshot
	for day := d(2026, 10, 1, 0, 0, utc); day.Before(d(2026, 12, 1, 0, 0, utc)); day = day.AddDate(0, 0, 1) {
		daily = append(daily, snap(day.Format("0102")+"a", day.Add(time.Hour), "h"), snap(day.Format("0102")+"b", day.Add(13*time.Hour), "h"))
	}
	// One snapshot on the first of each month for three years.
	var monthly []*Snapshot
	for m := range 36 {
		monthly = append(monthly, snap(fmt.Sprintf("m%02d", m), d(2024, time.Month(1+m), 1, 12, 0, utc), "h"))
	}
	ny := mustZone(t, "America/New_York")
	berlin := mustZone(t, "Europe/Berlin")
	now := d(2026, 12, 1, 0, 0, utc)
	tests := []struct {
		name  string
		snaps []*Snapshot
		p     Policy
		now   time.Time
		keep  []string // ids kept, newest first
		why   map[string]string
	}{
		{name: "last 3", snaps: daily, p: Policy{KeepLast: 3}, now: now, keep: []string{"1130b", "1130a", "1129b"},
			why: map[string]string{"1130b": "last 1", "1129b": "last 3"}},
		{name: "daily 3", snaps: daily, p: Policy{KeepDaily: 3}, now: now, keep: []string{"1130b", "1129b", "1128b"},
			why: map[string]string{"1128b": "daily 2026-11-28"}},
		{name: "last and daily overlap", snaps: daily, p: Policy{KeepLast: 2, KeepDaily: 2}, now: now, keep: []string{"1130b", "1130a", "1129b"},
			why: map[string]string{"1130b": "last 1,daily 2026-11-30", "1130a": "last 2", "1129b": "daily 2026-11-29"}},
		// 2026-11-30 is a Monday: ISO week 49 has only it; weeks 48, 47
		// end on Sundays 11-29 and 11-22.
		{name: "weekly 3", snaps: daily, p: Policy{KeepWeekly: 3}, now: now, keep: []string{"1130b", "1129b", "1122b"},
			why: map[string]string{"1122b": "weekly 2026-W47"}},
		{name: "monthly 2", snaps: daily, p: Policy{KeepMonthly: 2}, now: now, keep: []string{"1130b", "1031b"}},
		{name: "monthly more than there are", snaps: daily, p: Policy{KeepMonthly: 10}, now: now, keep: []string{"1130b", "1031b"}},
		{name: "yearly", snaps: monthly, p: Policy{KeepYearly: 2, KeepMonthly: 1}, now: now, keep: []string{"m35", "m23"},
			why: map[string]string{"m35": "monthly 2026-12,yearly 2026", "m23": "yearly 2025"}},
		{name: "hourly", snaps: daily[:4], p: Policy{KeepHourly: 3}, now: now, keep: []string{"1002b", "1002a", "1001b"}},
		{name: "no rule keeps all", snaps: daily[:3], p: Policy{}, now: now, keep: []string{"1002a", "1001b", "1001a"},
			why: map[string]string{"1001a": "policy has no keep rule"}},
		{name: "tags: others kept, last counts only tagged", now: now,
			snaps: []*Snapshot{snap("t1", d(2026, 1, 1, 0, 0, utc), "h", "a", "b"), snap("t2", d(2026, 1, 2, 0, 0, utc), "h", "a"), snap("t3", d(2026, 1, 3, 0, 0, utc), "h", "b", "a"), snap("t4", d(2026, 1, 4, 0, 0, utc), "h")},
			p:     Policy{KeepLast: 1, Tags: []string{"a", "b"}}, keep: []string{"t4", "t3", "t2"},
			why: map[string]string{"t4": "not selected by the policy's tags or hosts", "t3": "last 1"}},
		{name: "hosts", now: now,
			snaps: []*Snapshot{snap("x1", d(2026, 1, 1, 0, 0, utc), "x"), snap("y1", d(2026, 1, 2, 0, 0, utc), "y"), snap("x2", d(2026, 1, 3, 0, 0, utc), "x"), snap("z1", d(2026, 1, 4, 0, 0, utc), "z")},
			p:     Policy{KeepLast: 1, Hosts: []string{"x", "y"}}, keep: []string{"z1", "x2"}},
		{name: "equal times: ties broken by id, one per day", now: now,
			snaps: []*Snapshot{snap("e1", d(2026, 1, 1, 5, 0, utc), "h"), snap("e3", d(2026, 1, 1, 5, 0, utc), "h"), snap("e2", d(2026, 1, 1, 5, 0, utc), "h")},
			p:     Policy{KeepDaily: 5}, keep: []string{"e3"}},
		{name: "equal times: last counts each", now: now,
			snaps: []*Snapshot{snap("e1", d(2026, 1, 1, 5, 0, utc), "h"), snap("e3", d(2026, 1, 1, 5, 0, utc), "h"), snap("e2", d(2026, 1, 1, 5, 0, utc), "h")},
			p:     Policy{KeepLast: 2}, keep: []string{"e3", "e2"}},
		// 20:00 and 08:00 New York time are on different local days but the
		// same UTC day (2026-11-21): days are local.
		{name: "local days", now: time.Date(2026, 12, 1, 0, 0, 0, 0, ny),
			snaps: []*Snapshot{snap("ev", d(2026, 11, 20, 20, 0, ny), "h"), snap("mo", d(2026, 11, 21, 8, 0, ny), "h"), snap("old", d(2026, 11, 20, 9, 0, ny), "h")},
			p:     Policy{KeepDaily: 2}, keep: []string{"mo", "ev"}, why: map[string]string{"ev": "daily 2026-11-20"}},
		// Berlin leaves summer time on 2026-10-25 at 03:00 CEST: 02:30 comes
		// twice. Both are the same local hour; 23:30 on the 24th and 00:30
		// on the 26th are a day apart on the calendar although 49 hours
		// apart in time, and the 25th has 25 hours.
		{name: "DST fall back", now: time.Date(2026, 11, 1, 0, 0, 0, 0, berlin),
			snaps: []*Snapshot{
				snap("cest", time.Date(2026, 10, 25, 0, 30, 0, 0, utc), "h"), // 02:30 CEST
				snap("cet", time.Date(2026, 10, 25, 1, 30, 0, 0, utc), "h"),  // 02:30 CET
				snap("late24", d(2026, 10, 24, 23, 30, berlin), "h"),
				snap("early26", d(2026, 10, 26, 0, 30, berlin), "h"),
				snap("late25", d(2026, 10, 25, 23, 59, berlin), "h"),
			},
			p: Policy{KeepDaily: 3, KeepHourly: 4}, keep: []string{"early26", "late25", "cet", "late24"},
			why: map[string]string{"cet": "hourly 2026-10-25 02h", "late25": "hourly 2026-10-25 23h,daily 2026-10-25", "late24": "hourly 2026-10-24 23h,daily 2026-10-24"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.snaps)
			ds := ApplyPolicy(tc.snaps, tc.p, tc.now)
			if !slices.Equal(in, tc.snaps) {
				t.Fatal("ApplyPolicy changed its input")
			}
			if len(ds) != len(tc.snaps) {
				t.Fatalf("%d decisions for %d snapshots", len(ds), len(tc.snaps))
			}
			var kept []string
			for i, dc := range ds {
				if i > 0 && ds[i-1].Snapshot.Time.Before(dc.Snapshot.Time) {
					t.Fatal("decisions not newest first")
				}
				if dc.Keep != (len(dc.Reasons) > 0) {
					t.Fatalf("%s: keep %v with reasons %q", dc.Snapshot.ID, dc.Keep, dc.Reasons)
				}
				if dc.Keep {
					kept = append(kept, dc.Snapshot.ID)
				}
				if w, ok := tc.why[dc.Snapshot.ID]; ok && strings.Join(dc.Reasons, ",") != w {
					t.Fatalf("%s: reasons %q, want %q", dc.Snapshot.ID, dc.Reasons, w)
				}
			}
			if !slices.Equal(kept, tc.keep) {
				t.Fatalf("kept %v, want %v", kept, tc.keep)
			}
		})
	}
}

func TestForget(t *testing.T) {
	ctx := context.Background()
	f := standardFixture(t, nil)
	r := f.reopen(t)
	// A lock held by someone else stops forget (but not a dry run).
	other := f.reopen(t)
	l, err := other.Lock(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Forget(ctx, Policy{KeepLast: 1}, false); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("forget under another lock: %v", err)
	}
	ds, err := r.Forget(ctx, Policy{KeepLast: 2}, true)
	if err != nil || len(ds) != 4 {
		t.Fatalf("dry run: %v, %v", ds, err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if all, _ := r.Snapshots(ctx); len(all) != 4 {
		t.Fatalf("dry run removed snapshots: %d left", len(all))
	}
	ds, err = r.Forget(ctx, Policy{KeepLast: 2}, false)
	if err != nil {
		t.Fatal(err)
	}
	var gone []string
	for _, dc := range ds {
		if !dc.Keep {
			gone = append(gone, dc.Snapshot.ID)
		}
	}
	all, err := r.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, s := range all {
		left = append(left, s.ID)
	}
	if !slices.Equal(left, []string{f.snaps[2].ID, f.snaps[3].ID}) || !slices.Equal(gone, []string{f.snaps[1].ID, f.snaps[0].ID}) {
		t.Fatalf("left %v, gone %v", left, gone)
	}
	if locks, _ := r.listNames(ctx, "locks/"); len(locks) != 0 {
		t.Fatalf("locks left behind: %v", locks)
	}
}
