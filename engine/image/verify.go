package image

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/repo"
)

// DamagedRange is a byte range of a snapshot's disk that cannot be read
// back as it was saved, in words a user can act on.
type DamagedRange struct {
	Snapshot string
	// Where names the partition or area ("partition 2 (ext4 \"root\")").
	Where string
	// Offset and Length are bytes of the stream (the partition); DiskOffset
	// is where they lie on the disk.
	Offset, Length, DiskOffset int64
	Reasons                    []string
}

func (d DamagedRange) String() string {
	return fmt.Sprintf("snapshot %s, %s: bytes %d-%d (%s; disk bytes %d-%d): %s", short(d.Snapshot), d.Where,
		d.Offset, d.Offset+d.Length-1, disks.HumanBytes(d.Length), d.DiskOffset, d.DiskOffset+d.Length-1, strings.Join(d.Reasons, "; "))
}

// DescribeDamage merges a check's damage into ranges per snapshot and
// partition and names each partition from the snapshots' meta.
func DescribeDamage(snaps []*repo.Snapshot, damage []repo.Damage) []DamagedRange {
	metas := map[string]*Meta{}
	for _, s := range snaps {
		if m, err := ParseMeta(s.Meta); err == nil {
			metas[s.ID] = m
		}
	}
	sorted := append([]repo.Damage(nil), damage...)
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.Snapshot != b.Snapshot {
			return a.Snapshot < b.Snapshot
		}
		if a.Stream != b.Stream {
			return a.Stream < b.Stream
		}
		return a.Offset < b.Offset
	})
	var out []DamagedRange
	for _, d := range sorted {
		where, diskOff := d.Stream, int64(0)
		if d.Stream == "" {
			where = "the whole snapshot"
		}
		if m := metas[d.Snapshot]; m != nil {
			for _, r := range m.Regions {
				if r.Stream != d.Stream {
					continue
				}
				diskOff = r.Offset
				switch r.What {
				case "table":
					where = fmt.Sprintf("the partition table area at disk byte %d", r.Offset)
				case "volume":
					where = fmt.Sprintf("the volume (%s)", r.FS)
				default:
					where = fmt.Sprintf("partition %d (%s", r.Number, r.FS)
					if r.Label != "" {
						where += fmt.Sprintf(" %q", r.Label)
					}
					where += ")"
				}
			}
		}
		if n := len(out); n > 0 && out[n-1].Snapshot == d.Snapshot && out[n-1].Where == where && out[n-1].Offset+out[n-1].Length >= d.Offset {
			last := &out[n-1]
			last.Length = max(last.Length, d.Offset+d.Length-last.Offset)
			if !contains(last.Reasons, d.Reason) {
				last.Reasons = append(last.Reasons, d.Reason)
			}
			continue
		}
		out = append(out, DamagedRange{Snapshot: d.Snapshot, Where: where, Offset: d.Offset, Length: d.Length, DiskOffset: diskOff + d.Offset, Reasons: []string{d.Reason}})
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Verify checks the repository (and with readData every byte of the
// chunks the chosen snapshots need) and describes what is damaged.
func Verify(ctx context.Context, r *repo.Repo, snapshots []string, readData bool, progress func(done, total int64)) (*repo.CheckReport, []DamagedRange, error) {
	rep, err := r.Check(ctx, repo.CheckOptions{ReadData: readData, Snapshots: snapshots, Progress: progress})
	if err != nil {
		return nil, nil, err
	}
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		snaps = nil // unreadable manifests are in the report already
	}
	return rep, DescribeDamage(snaps, rep.Damaged), nil
}
