// Package image backs disks up into a repository and restores them: the
// operations of issue 4 on top of engine/repo (chunks, streams, snapshots)
// and engine/clone (layouts, safety rules, the table written last).
//
// A snapshot of a disk is a set of streams, one per region of the disk
// that holds something: the partition-table areas (MBR, GPT headers and
// entries, EBRs, the boot gap) stored whole, and each partition stored as
// fixed-size chunks aligned to the partition's start, with the blocks its
// file system does not use zeroed and chunks that hold no used block not
// stored at all. Meta records where each stream lies on the disk.
package image

import (
	"encoding/json"
	"fmt"
)

// MetaVersion is the version of the Meta layout in snapshot manifests.
const MetaVersion = 1

// Meta is what a disk snapshot records about its source, in the
// snapshot manifest's meta field.
type Meta struct {
	Version int `json:"version"`
	// Kind is "disk" for a whole disk, "partition" for one partition,
	// "system" for the partitions an installed system needs (--system).
	Kind      string     `json:"kind"`
	Partition int        `json:"partition,omitempty"`
	Source    SourceInfo `json:"source"`
	// Table is the partition table kind: gpt, mbr or none.
	Table   string       `json:"table"`
	Regions []RegionMeta `json:"regions"`
	// Used is the number of used bytes of the partitions saved.
	Used int64 `json:"used"`
	// Added is the number of bytes this snapshot added to the repository.
	Added int64 `json:"added"`
	// System says, for a "system" snapshot, which partitions were taken
	// and left out and why, one line each.
	System []string `json:"system,omitempty"`
}

// SourceInfo identifies the disk a snapshot was taken of.
type SourceInfo struct {
	Path               string `json:"path"`
	Model              string `json:"model,omitempty"`
	Serial             string `json:"serial,omitempty"`
	WWN                string `json:"wwn,omitempty"`
	Size               int64  `json:"size"`
	LogicalSectorSize  int    `json:"logical_sector_size"`
	PhysicalSectorSize int    `json:"physical_sector_size"`
	Transport          string `json:"transport,omitempty"`
}

// RegionMeta places one stream on the disk.
type RegionMeta struct {
	Stream string `json:"stream"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	// What is "table" for partition-table and boot areas, "partition" or
	// "volume" (a disk without a table).
	What string `json:"what"`
	// The partition's identity, for partitions.
	Number    int      `json:"number,omitempty"`
	Type      string   `json:"type,omitempty"`
	TypeName  string   `json:"type_name,omitempty"`
	Name      string   `json:"name,omitempty"`
	GUID      string   `json:"guid,omitempty"`
	FS        string   `json:"fs,omitempty"`
	FSVariant string   `json:"fs_variant,omitempty"`
	Label     string   `json:"label,omitempty"`
	UUID      string   `json:"uuid,omitempty"`
	Used      int64    `json:"used,omitempty"`
	Raw       bool     `json:"raw,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
}

// ParseMeta decodes and checks a snapshot's meta.
func ParseMeta(b []byte) (*Meta, error) {
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode snapshot meta: %w", err)
	}
	if m.Version != MetaVersion {
		return nil, fmt.Errorf("snapshot meta version %d: this lifeboat reads version %d", m.Version, MetaVersion)
	}
	if m.Source.Size <= 0 {
		return nil, fmt.Errorf("snapshot meta: source size %d", m.Source.Size)
	}
	for _, r := range m.Regions {
		if r.Offset < 0 || r.Size < 0 || r.Offset+r.Size > m.Source.Size || r.Offset+r.Size < r.Offset {
			return nil, fmt.Errorf("snapshot meta: region %s (%d+%d) lies outside the %d-byte disk", r.Stream, r.Offset, r.Size, m.Source.Size)
		}
	}
	return &m, nil
}

// Partitions returns the partition regions.
func (m *Meta) Partitions() []RegionMeta {
	var out []RegionMeta
	for _, r := range m.Regions {
		if r.What != "table" {
			out = append(out, r)
		}
	}
	return out
}
