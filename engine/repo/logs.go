package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"time"
)

// MaxLogSize bounds the text a log object keeps: the end of a longer log,
// where the outcome is, is kept.
const MaxLogSize = 4 << 20

// JobLog describes one log object: the output of an unattended job that
// wrote to the repository, kept next to the images it made.
type JobLog struct {
	// ID names the log (logs/<ID>).
	ID   string    `json:"-"`
	Time time.Time `json:"time"`
	Host string    `json:"host"`
	// Truncated says the start of a log longer than MaxLogSize was dropped.
	Truncated bool `json:"truncated,omitempty"`
	// Text is the log's text; Logs leaves it empty.
	Text string `json:"text"`
}

// SaveLog stores a job's log (sealed in an encrypted repository, like a
// manifest) and returns its id. A text over MaxLogSize keeps its end.
func (r *Repo) SaveLog(ctx context.Context, l JobLog) (string, error) {
	if len(l.Text) > MaxLogSize {
		l.Text = l.Text[len(l.Text)-MaxLogSize:]
		l.Truncated = true
	}
	b, err := json.Marshal(l)
	if err != nil {
		return "", fmt.Errorf("save log: encode: %w", err)
	}
	id, err := r.saveObject(ctx, "logs", b)
	if err != nil {
		return "", fmt.Errorf("save log: %w", err)
	}
	return id, nil
}

// LoadLog loads one log by id.
func (r *Repo) LoadLog(ctx context.Context, id string) (*JobLog, error) {
	if _, err := ParseChunkID(id); err != nil {
		return nil, fmt.Errorf("load log %q: not a log id", id)
	}
	p, err := r.loadObject(ctx, "logs/"+id)
	if err != nil {
		return nil, fmt.Errorf("load log: %w", err)
	}
	var l JobLog
	if err := json.Unmarshal(p, &l); err != nil {
		return nil, fmt.Errorf("load log %s: %w: decode: %w", id, ErrDamaged, err)
	}
	l.ID = id
	return &l, nil
}

// Logs lists the repository's logs, oldest first, without their text. A
// log that does not load is returned with its error joined to the others.
func (r *Repo) Logs(ctx context.Context) ([]JobLog, error) {
	names, err := r.listNames(ctx, "logs/")
	if err != nil {
		return nil, fmt.Errorf("list logs: %w", err)
	}
	var out []JobLog
	var errs []error
	for _, name := range names {
		l, err := r.LoadLog(ctx, path.Base(name))
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			errs = append(errs, err)
			continue
		}
		l.Text = ""
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].ID < out[j].ID
	})
	return out, errors.Join(errs...)
}
