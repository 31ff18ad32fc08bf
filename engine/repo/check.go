package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/lifeboat/lifeboat/netshare"
	"github.com/zeebo/blake3"
)

// CheckOptions configure Repo.Check.
type CheckOptions struct {
	// ReadData reads every pack a checked snapshot needs, whole, and
	// decrypts, decompresses and hash-checks every blob in it.
	ReadData bool
	// Snapshots limits the check to these snapshots (full ids or unique
	// prefixes); empty checks every snapshot.
	Snapshots []string
	// Progress, when set, is called as work completes: with ReadData in
	// pack bytes read, otherwise in chunk list blobs loaded.
	Progress func(done, total int64)
}

// Damage is one byte range of one stream of one snapshot that cannot be
// restored, and why.
type Damage struct {
	// Snapshot is the snapshot's id.
	Snapshot string
	// Stream is the stream's name; empty when the whole snapshot is lost
	// (its manifest is unreadable).
	Stream string
	// Offset and Length are the affected bytes of the stream.
	Offset, Length int64
	// Chunk is the missing or damaged blob: a data chunk, or the chunk list
	// blob when the whole range a list blob covers is lost.
	Chunk ChunkID
	// Pack names the pack object the blob should be read from, if known.
	Pack string
	// Reason says what is wrong.
	Reason string
}

// String names the snapshot, stream, byte range, blob, pack and reason,
// as `lifeboat verify` prints them.
func (d Damage) String() string {
	if d.Stream == "" {
		return fmt.Sprintf("snapshot %s: %s", d.Snapshot, d.Reason)
	}
	s := fmt.Sprintf("snapshot %s stream %q bytes %d-%d (%d bytes): blob %v", d.Snapshot, d.Stream, d.Offset, d.Offset+d.Length, d.Length, d.Chunk)
	if d.Pack != "" {
		s += " in " + d.Pack
	}
	return s + ": " + d.Reason
}

// CheckReport is what Check found.
type CheckReport struct {
	// Snapshots, Chunks and Packs count the snapshots checked, the distinct
	// blobs they need (data chunks and chunk list blobs) and the packs
	// holding those blobs.
	Snapshots, Chunks, Packs int
	// Problems are structural problems in words: missing packs, packs of
	// the wrong size or content, unreadable index files or manifests,
	// stray objects.
	Problems []string
	// Damaged lists every snapshot byte range affected by a missing or
	// damaged blob.
	Damaged []Damage
	// Warnings are findings that harm no snapshot: packs no index lists
	// (left by an interrupted backup or prune; prune removes them) and
	// damaged blobs no checked snapshot needs.
	Warnings []string
}

// OK reports whether the check found neither problems nor damage.
func (rep *CheckReport) OK() bool { return len(rep.Problems) == 0 && len(rep.Damaged) == 0 }

// indexState is the index as read afresh from storage.
type indexState struct {
	// files are the index files listed, sorted; ids their names as ids.
	files []string
	ids   []ChunkID
	// unreadable maps index files that failed to load or parse to the error.
	unreadable map[string]error
	// live are the packs of the files no other file supersedes, each once.
	live []packInfo
	idx  *memIndex
}

// readIndexState loads every index file. An unreadable file is recorded,
// not fatal: check reports it, prune refuses to run.
func (r *Repo) readIndexState(ctx context.Context, names []string) (*indexState, error) {
	st := &indexState{unreadable: map[string]error{}, idx: newMemIndex()}
	sort.Strings(names)
	files := map[string]*indexFile{}
	superseded := map[string]bool{}
	for _, name := range names {
		id, err := ParseChunkID(strings.TrimPrefix(name, "index/"))
		if err != nil {
			st.unreadable[name] = fmt.Errorf("not an index file name: %w", err)
			continue
		}
		st.files = append(st.files, name)
		st.ids = append(st.ids, id)
		p, err := r.loadObject(ctx, name)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			st.unreadable[name] = err
			continue
		}
		f, err := parseIndex(p)
		if err != nil {
			st.unreadable[name] = fmt.Errorf("%w: %w", ErrDamaged, err)
			continue
		}
		files[name] = f
		for _, s := range f.Supersedes {
			superseded["index/"+s.String()] = true
		}
	}
	seen := map[PackID]bool{}
	for _, name := range st.files {
		f := files[name]
		if f == nil || superseded[name] {
			continue
		}
		for _, p := range f.Packs {
			if !seen[p.ID] {
				seen[p.ID] = true
				st.live = append(st.live, p)
			}
		}
	}
	st.idx.add(st.live)
	return st, nil
}

// repoListing is one listing of the whole repository.
type repoListing struct {
	packs     map[PackID]int64 // every well-named pack and its size
	indexes   []string
	keys      []string
	snapshots []string // ids, sorted
	stray     []string
}

func (r *Repo) listAll(ctx context.Context) (*repoListing, error) {
	l := &repoListing{packs: map[PackID]int64{}}
	err := r.be.List(ctx, "", func(fi netshare.FileInfo) error {
		dir, base := path.Split(fi.Name)
		_, idErr := ParseChunkID(base)
		switch {
		case fi.Name == "config":
		case strings.HasPrefix(fi.Name, "data/"):
			if idErr == nil && packName(PackID(mustID(base))) == fi.Name {
				l.packs[PackID(mustID(base))] = fi.Size
			} else {
				l.stray = append(l.stray, fi.Name)
			}
		case dir == "index/":
			l.indexes = append(l.indexes, fi.Name)
		case dir == "snapshots/" && idErr == nil:
			l.snapshots = append(l.snapshots, base)
		case dir == "keys/" && idErr == nil:
			l.keys = append(l.keys, fi.Name)
		case (dir == "locks/" || dir == "logs/") && idErr == nil:
		default:
			l.stray = append(l.stray, fi.Name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list repository: %w", err)
	}
	sort.Strings(l.snapshots)
	sort.Strings(l.stray)
	return l, nil
}

// checkKeys checks every key object: its name is the BLAKE3 of its bytes,
// its envelope's checksum holds, and it is a well-formed key of this
// repository with KDF parameters a reader accepts. Which password a key
// opens cannot be checked; an encrypted repository without one usable key
// object cannot be opened by anyone, which is reported too.
func (c *checker) checkKeys(ctx context.Context, names []string) error {
	usable := 0
	for _, name := range names {
		if !c.r.cfg.Encrypted {
			c.problem("key object %s in an unencrypted repository", name)
			continue
		}
		obj, err := c.r.be.Load(ctx, name, 0, -1)
		if err != nil {
			if !isDamage(err) {
				return fmt.Errorf("load %s: %w", name, err)
			}
			c.problem("key object %s unreadable: %v", name, err)
			continue
		}
		if fmt.Sprintf("keys/%x", blake3.Sum256(obj)) != name {
			c.problem("key object %s: content does not match its name (damaged)", name)
			continue
		}
		p, err := openPlain(obj)
		if err != nil {
			c.problem("key object %s: %v", name, err)
			continue
		}
		var kf keyFile
		if err := json.Unmarshal(p, &kf); err != nil {
			c.problem("key object %s: decode: %v", name, err)
			continue
		}
		switch {
		case kf.RepoID != c.r.cfg.ID:
			c.problem("key object %s belongs to repository %s, not this one", name, kf.RepoID)
		case kf.KDF != "argon2id":
			c.problem("key object %s: unknown key derivation %q", name, kf.KDF)
		case checkKDFParams(kf.Params) != nil:
			c.problem("key object %s: %v", name, checkKDFParams(kf.Params))
		case len(kf.Salt) < 16 || len(kf.Wrapped) != nonceLen+2*keyLen+gcmTagLen:
			c.problem("key object %s: salt of %d bytes or wrapped keys of %d bytes", name, len(kf.Salt), len(kf.Wrapped))
		default:
			usable++
		}
	}
	if c.r.cfg.Encrypted && usable == 0 {
		c.problem("encrypted repository without a usable key object: no password can open it")
	}
	return nil
}

// mustID parses a name already known to be 64 hex digits.
func mustID(s string) ChunkID {
	id, _ := ParseChunkID(s)
	return id
}

// badBlob says why a blob cannot be read.
type badBlob struct {
	pack   string
	reason string
}

// isDamage tells damage found in stored data (reported) from failures to
// run the check (returned).
func isDamage(err error) bool {
	return errors.Is(err, ErrDamaged) || errors.Is(err, ErrNotFound) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, netshare.ErrOutOfRange)
}

// checker holds one run of Check.
type checker struct {
	r     *Repo
	opt   CheckOptions
	rep   *CheckReport
	st    *indexState
	snaps []*Snapshot
	// bad holds every blob known to be unreadable; needed every blob a
	// checked snapshot needs.
	bad    map[ChunkID]badBlob
	needed map[ChunkID]struct{}
}

// Check verifies the repository: every manifest loads; every chunk list
// blob and every chunk a snapshot needs is in the index; every pack the
// index names exists with the size it records. With ReadData it also
// reads each needed pack whole and checks its name, its header against the
// index and every blob in it. The index is read afresh from storage. A
// damaged repository gives a report whose OK is false, naming every
// snapshot byte range affected; the error is only for failures to run
// (storage unreachable, cancelled, unknown snapshot).
func (r *Repo) Check(ctx context.Context, opt CheckOptions) (*CheckReport, error) {
	c := &checker{r: r, opt: opt, rep: &CheckReport{}, bad: map[ChunkID]badBlob{}, needed: map[ChunkID]struct{}{}}
	if err := c.run(ctx); err != nil {
		return nil, fmt.Errorf("check repository: %w", err)
	}
	return c.rep, nil
}

func (c *checker) problem(format string, a ...any) {
	c.rep.Problems = append(c.rep.Problems, fmt.Sprintf(format, a...))
}

func (c *checker) run(ctx context.Context) error {
	r := c.r
	ls, err := r.listAll(ctx)
	if err != nil {
		return err
	}
	for _, s := range ls.stray {
		c.problem("stray object %s: not part of the repository format", s)
	}
	if obj, err := r.be.Load(ctx, "config", 0, -1); err != nil {
		if !isDamage(err) {
			return fmt.Errorf("load config: %w", err)
		}
		c.problem("config unreadable: %v", err)
	} else if cfg, err := parseConfig(obj); err != nil {
		c.problem("config: %v", err)
	} else if cfg != r.cfg {
		c.problem("config changed since the repository was opened")
	}
	if err := c.checkKeys(ctx, ls.keys); err != nil {
		return err
	}
	c.st, err = r.readIndexState(ctx, ls.indexes)
	if err != nil {
		return err
	}
	for _, name := range sortedKeys(c.st.unreadable) {
		c.problem("index file %s unreadable: %v", name, c.st.unreadable[name])
	}
	c.checkPackSizes(ls)
	ids, err := c.selectSnapshots(ls.snapshots)
	if err != nil {
		return err
	}
	for _, id := range ids {
		s, err := r.loadSnapshotByID(ctx, id)
		if err != nil {
			if !isDamage(err) {
				return err
			}
			c.problem("snapshot %s: manifest unreadable: %v", id, err)
			c.rep.Damaged = append(c.rep.Damaged, Damage{Snapshot: id, Reason: fmt.Sprintf("manifest unreadable: %v", err)})
			continue
		}
		c.snaps = append(c.snaps, s)
	}
	c.rep.Snapshots = len(ids)
	if err := c.walkLists(ctx); err != nil {
		return err
	}
	c.rep.Chunks = len(c.needed)
	packs := c.neededPacks(ls)
	c.rep.Packs = len(packs)
	if c.opt.ReadData {
		if err := c.readPacks(ctx, packs, ls); err != nil {
			return err
		}
	}
	return c.mapDamage(ctx)
}

// checkPackSizes compares the listing with the index: missing packs and
// packs of the wrong size are problems, and the blobs they lose are bad.
func (c *checker) checkPackSizes(ls *repoListing) {
	var unindexed int
	var unindexedBytes int64
	for id, size := range ls.packs {
		if !c.st.idx.hasPack(id) {
			unindexed++
			unindexedBytes += size
		}
	}
	if unindexed > 0 {
		c.rep.Warnings = append(c.rep.Warnings, fmt.Sprintf("%d packs (%d bytes) are in no index: left by an interrupted backup or prune; prune removes them", unindexed, unindexedBytes))
	}
	for _, p := range c.st.live {
		name := packName(p.ID)
		actual, ok := ls.packs[p.ID]
		switch {
		case !ok:
			c.problem("pack %s is missing (the index lists %d blobs in it)", name, len(p.Entries))
		case actual != p.Size:
			c.problem("pack %s is %d bytes, the index says %d", name, actual, p.Size)
		default:
			continue
		}
		for _, e := range p.Entries {
			if !c.locatedIn(e, p.ID) {
				continue
			}
			if !ok {
				c.bad[e.ID] = badBlob{pack: name, reason: "pack missing"}
			} else if int64(e.Offset)+int64(e.Stored) > actual {
				c.bad[e.ID] = badBlob{pack: name, reason: fmt.Sprintf("pack truncated to %d bytes, blob ends at %d", actual, int64(e.Offset)+int64(e.Stored))}
			}
		}
	}
}

// locatedIn reports whether the index reads blob e from pack id (a blob
// stored twice is read from the first pack listing it).
func (c *checker) locatedIn(e packEntry, id PackID) bool {
	loc, pack, ok := c.st.idx.lookup(e.ID)
	return ok && pack == id && loc.offset == e.Offset
}

func (c *checker) selectSnapshots(all []string) ([]string, error) {
	if len(c.opt.Snapshots) == 0 {
		return all, nil
	}
	seen := map[string]bool{}
	var out []string
	for _, ref := range c.opt.Snapshots {
		var match []string
		for _, id := range all {
			if id == ref {
				match = []string{id}
				break
			}
			if ref != "" && strings.HasPrefix(id, ref) {
				match = append(match, id)
			}
		}
		if len(match) != 1 {
			return nil, fmt.Errorf("snapshot %q: %d snapshots match: %w", ref, len(match), ErrNotFound)
		}
		if !seen[match[0]] {
			seen[match[0]] = true
			out = append(out, match[0])
		}
	}
	sort.Strings(out)
	return out, nil
}

// walkLists loads every chunk list of the checked snapshots once, marking
// what is needed and what the index lacks.
func (c *checker) walkLists(ctx context.Context) error {
	var total, done int64
	for _, s := range c.snaps {
		for _, st := range s.Streams {
			total += int64(len(st.Chunks.Parts))
		}
	}
	loaded := map[ChunkID]bool{}
	for _, s := range c.snaps {
		for _, st := range s.Streams {
			for i, pid := range st.Chunks.Parts {
				done++
				if c.opt.Progress != nil && !c.opt.ReadData {
					c.opt.Progress(done, total)
				}
				c.needed[pid] = struct{}{}
				if _, isBad := c.bad[pid]; isBad || loaded[pid] {
					continue
				}
				if !c.st.idx.has(pid) {
					c.bad[pid] = badBlob{reason: "chunk list blob not in the index"}
					continue
				}
				ids, err := c.r.loadListPartFrom(ctx, c.st.idx, st.Chunks, i)
				if err != nil {
					if !isDamage(err) {
						return err
					}
					_, pack, _ := c.st.idx.lookup(pid)
					c.bad[pid] = badBlob{pack: packName(pack), reason: err.Error()}
					continue
				}
				loaded[pid] = true
				for _, id := range ids {
					if id.IsZero() {
						continue
					}
					c.needed[id] = struct{}{}
					if !c.st.idx.has(id) {
						c.bad[id] = badBlob{reason: "chunk not in the index"}
					}
				}
			}
		}
	}
	return nil
}

// neededPacks returns the present packs holding needed blobs, sorted.
func (c *checker) neededPacks(ls *repoListing) []PackID {
	set := map[PackID]bool{}
	for id := range c.needed {
		if _, pack, ok := c.st.idx.lookup(id); ok {
			set[pack] = true
		}
	}
	out := make([]PackID, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// readPacks reads each pack whole and checks it; a few at a time, so
// memory stays at a few pack sizes.
func (c *checker) readPacks(ctx context.Context, packs []PackID, ls *repoListing) error {
	entries := map[PackID][]packEntry{}
	for _, p := range c.st.live {
		entries[p.ID] = p.Entries
	}
	var total int64
	for _, p := range packs {
		total += ls.packs[p]
	}
	workers := min(max(c.r.be.Properties().MaxConnections, 1), 2)
	var (
		mu       sync.Mutex
		done     int64
		firstErr error
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan PackID)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				res, err := c.checkPack(ctx, id, ls.packs[id], entries[id])
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
						cancel()
					}
				} else {
					c.rep.Problems = append(c.rep.Problems, res.problems...)
					for id, b := range res.bad {
						c.bad[id] = b
					}
					done += ls.packs[id]
					if c.opt.Progress != nil {
						c.opt.Progress(done, total)
					}
				}
				mu.Unlock()
			}
		}()
	}
	for _, p := range packs {
		if _, present := ls.packs[p]; !present {
			continue // reported as missing already
		}
		select {
		case work <- p:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

type packResult struct {
	problems []string
	bad      map[ChunkID]badBlob
}

// checkPack loads one pack with one Load and checks its name, its header
// against the index entries, and every blob the index reads from it.
func (c *checker) checkPack(ctx context.Context, id PackID, size int64, want []packEntry) (packResult, error) {
	name := packName(id)
	res := packResult{bad: map[ChunkID]badBlob{}}
	if size > maxPackSize {
		res.problems = append(res.problems, fmt.Sprintf("pack %s: %d bytes, over the %d-byte limit: not read", name, size, int64(maxPackSize)))
		return res, nil
	}
	b, err := c.r.be.Load(ctx, name, 0, -1)
	if err != nil {
		if isDamage(err) {
			res.problems = append(res.problems, fmt.Sprintf("pack %s unreadable: %v", name, err))
			for _, e := range want {
				if c.locatedIn(e, id) {
					res.bad[e.ID] = badBlob{pack: name, reason: "pack unreadable"}
				}
			}
			return res, nil
		}
		return res, fmt.Errorf("read pack %s: %w", name, err)
	}
	if PackID(blake3.Sum256(b)) != id {
		res.problems = append(res.problems, fmt.Sprintf("pack %s: content does not match its name (damaged)", name))
	}
	if err := c.checkHeader(b, want); err != nil {
		res.problems = append(res.problems, fmt.Sprintf("pack %s header: %v", name, err))
	}
	frameAt := int64(-1)
	var frame []byte
	var frameErr error
	for _, e := range want {
		if !c.locatedIn(e, id) {
			continue
		}
		end := int64(e.Offset) + int64(e.Stored)
		if end > int64(len(b)) {
			res.bad[e.ID] = badBlob{pack: name, reason: fmt.Sprintf("blob ends at %d, past the pack's %d bytes", end, len(b))}
			continue
		}
		loc := locOf(e, 0)
		if frameAt != int64(e.Offset) {
			// Each frame is decoded once, however many blobs it holds.
			frameAt = int64(e.Offset)
			frame, frameErr = c.r.decodeFrame(b[e.Offset:end], loc)
		}
		var data []byte
		err := frameErr
		if err == nil {
			data, err = member(frame, loc)
		}
		if err == nil && c.r.Hash(data) != e.ID {
			err = errors.New("content does not match its id")
		}
		if err != nil {
			res.bad[e.ID] = badBlob{pack: name, reason: fmt.Sprintf("damaged at pack offset %d: %v", e.Offset, err)}
		}
	}
	return res, nil
}

// checkHeader compares the pack's own header with the index's entries.
func (c *checker) checkHeader(pack []byte, want []packEntry) error {
	dataLen, hdr, err := splitPack(pack)
	if err != nil {
		return err
	}
	body, err := c.r.seal.openObject(hdr)
	if err != nil {
		return err
	}
	got, err := parsePackHeader(body, dataLen)
	if err != nil {
		return err
	}
	if len(got) != len(want) {
		return fmt.Errorf("%d entries, the index lists %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Errorf("entry %d (blob %v) differs from the index", i, got[i].ID)
		}
	}
	return nil
}

// mapDamage turns every bad needed blob into the snapshot byte ranges it
// affects. It reloads the chunk lists (only when something is bad), so
// memory does not grow with the number of snapshots.
func (c *checker) mapDamage(ctx context.Context) error {
	for id, b := range c.bad {
		if _, need := c.needed[id]; !need {
			c.rep.Warnings = append(c.rep.Warnings, fmt.Sprintf("blob %v in %s, needed by no checked snapshot, is unreadable: %s", id, b.pack, b.reason))
			delete(c.bad, id)
		}
	}
	sort.Strings(c.rep.Warnings)
	if len(c.bad) == 0 {
		return nil
	}
	for _, s := range c.snaps {
		for _, st := range s.Streams {
			cs := int64(st.ChunkSize)
			for i, pid := range st.Chunks.Parts {
				first := int64(i) * ListPartLen
				if b, isBad := c.bad[pid]; isBad {
					off := first * cs
					end := min(st.Size, (first+ListPartLen)*cs)
					c.rep.Damaged = append(c.rep.Damaged, Damage{Snapshot: s.ID, Stream: st.Name, Offset: off, Length: end - off, Chunk: pid, Pack: b.pack, Reason: "chunk list blob: " + b.reason})
					continue
				}
				ids, err := c.r.loadListPartFrom(ctx, c.st.idx, st.Chunks, i)
				if err != nil {
					return err
				}
				for j, id := range ids {
					b, isBad := c.bad[id]
					if id.IsZero() || !isBad {
						continue
					}
					off := (first + int64(j)) * cs
					c.rep.Damaged = append(c.rep.Damaged, Damage{Snapshot: s.ID, Stream: st.Name, Offset: off, Length: min(cs, st.Size-off), Chunk: id, Pack: b.pack, Reason: b.reason})
				}
			}
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
