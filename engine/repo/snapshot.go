package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"
)

// SnapshotStats record what a backup added.
type SnapshotStats struct {
	// BytesIn is the raw size of everything the backup read and chunked.
	BytesIn int64 `json:"bytes_in"`
	// BytesAdded is what the backup added to the repository.
	BytesAdded int64 `json:"bytes_added"`
	// ChunksNew and ChunksDedup count chunks stored and chunks reused.
	ChunksNew   int `json:"chunks_new"`
	ChunksDedup int `json:"chunks_dedup"`
}

// Snapshot is one restore point. The repository gives Meta no meaning: the
// caller describes the disk there.
type Snapshot struct {
	// ID is the manifest's name; it is not stored inside the manifest.
	ID      string          `json:"-"`
	Time    time.Time       `json:"time"`
	Host    string          `json:"host"`
	Tags    []string        `json:"tags,omitempty"`
	Streams []Stream        `json:"streams"`
	Meta    json.RawMessage `json:"meta,omitempty"`
	Stats   SnapshotStats   `json:"stats"`
}

// maxStreams bounds a manifest so a hostile one cannot ask for much work.
const maxStreams = 4096

// SaveSnapshot writes the manifest; it must come after the Flush of every
// writer whose chunks the snapshot uses, because the manifest is what makes
// a snapshot exist. It sets and returns s.ID.
func (r *Repo) SaveSnapshot(ctx context.Context, s *Snapshot) (string, error) {
	if err := s.check(); err != nil {
		return "", fmt.Errorf("save snapshot: %w", err)
	}
	for _, st := range s.Streams {
		for _, p := range st.Chunks.Parts {
			if !r.Has(p) {
				return "", fmt.Errorf("save snapshot: stream %q: chunk list part %v is not in the index (flush the writer first): %w", st.Name, p, ErrNotFound)
			}
		}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("save snapshot: encode: %w", err)
	}
	id, err := r.saveObject(ctx, "snapshots", b)
	if err != nil {
		return "", fmt.Errorf("save snapshot: %w", err)
	}
	s.ID = id
	return id, nil
}

func (s *Snapshot) check() error {
	if len(s.Streams) > maxStreams {
		return fmt.Errorf("%d streams, at most %d", len(s.Streams), maxStreams)
	}
	for _, st := range s.Streams {
		if err := st.check(); err != nil {
			return err
		}
	}
	if len(s.Meta) > 0 && !json.Valid(s.Meta) {
		return errors.New("meta is not valid JSON")
	}
	return nil
}

// parseSnapshot decodes and validates a manifest plaintext.
func parseSnapshot(b []byte) (*Snapshot, error) {
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return &s, nil
}

func (r *Repo) loadSnapshotByID(ctx context.Context, id string) (*Snapshot, error) {
	p, err := r.loadObject(ctx, "snapshots/"+id)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("load snapshot %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("load snapshot %s: %w", id, err)
	}
	s, err := parseSnapshot(p)
	if err != nil {
		return nil, fmt.Errorf("load snapshot %s: %w: %w", id, ErrDamaged, err)
	}
	s.ID = id
	return s, nil
}

func (r *Repo) snapshotIDs(ctx context.Context) ([]string, error) {
	names, err := r.listNames(ctx, "snapshots/")
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(names))
	for i, n := range names {
		ids[i] = strings.TrimPrefix(n, "snapshots/")
	}
	sort.Strings(ids)
	return ids, nil
}

// Snapshots loads every snapshot, oldest first (ties by id).
func (r *Repo) Snapshots(ctx context.Context) ([]*Snapshot, error) {
	ids, err := r.snapshotIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	out := make([]*Snapshot, 0, len(ids))
	for _, id := range ids {
		s, err := r.loadSnapshotByID(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("list snapshots: %w", err)
		}
		out = append(out, s)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// LoadSnapshot loads a snapshot by full id, unique id prefix, or "latest"
// (the newest by time).
func (r *Repo) LoadSnapshot(ctx context.Context, ref string) (*Snapshot, error) {
	if ref == "latest" {
		all, err := r.Snapshots(ctx)
		if err != nil {
			return nil, err
		}
		if len(all) == 0 {
			return nil, fmt.Errorf("load latest snapshot: repository has no snapshots: %w", ErrNotFound)
		}
		return all[len(all)-1], nil
	}
	if ref == "" {
		return nil, fmt.Errorf("load snapshot: empty id: %w", ErrNotFound)
	}
	ids, err := r.snapshotIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("load snapshot %s: %w", ref, err)
	}
	var match []string
	for _, id := range ids {
		if id == ref {
			match = []string{id}
			break
		}
		if strings.HasPrefix(id, ref) {
			match = append(match, id)
		}
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("load snapshot %s: %w", ref, ErrNotFound)
	case 1:
		return r.loadSnapshotByID(ctx, match[0])
	default:
		return nil, fmt.Errorf("load snapshot %s: prefix matches %d snapshots (%s, %s, ...); give more digits", ref, len(match), match[0], match[1])
	}
}

// RemoveSnapshot deletes a manifest; the chunks it used stay until prune.
func (r *Repo) RemoveSnapshot(ctx context.Context, id string) error {
	if len(id) != 64 {
		return fmt.Errorf("remove snapshot %q: want a full 64-digit id", id)
	}
	if _, err := ParseChunkID(id); err != nil {
		return fmt.Errorf("remove snapshot: %w", err)
	}
	r.wrote.Store(true)
	if err := r.be.Remove(ctx, "snapshots/"+id); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove snapshot %s: %w", id, ErrNotFound)
		}
		return fmt.Errorf("remove snapshot %s: %w", id, err)
	}
	return nil
}
