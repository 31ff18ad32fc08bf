// Package repo is Lifeboat's image repository: content-addressed chunks,
// compressed with zstd, checksummed, optionally encrypted, grouped into packs
// on a netshare.Backend; an index of where each chunk lives; chunk lists
// ("streams"); and snapshot manifests that carry an opaque description.
//
// The package knows nothing about disks. The on-disk format is documented in
// docs/FORMAT.md. Writes follow one order (packs, then index, then snapshot
// manifest) so a crash never leaves a snapshot pointing at missing data.
package repo

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/lifeboat/lifeboat/netshare"
	"github.com/zeebo/blake3"
)

// Version is the repository format version this package writes and reads.
const Version = 2

// DefaultChunkSize is the chunk size Init picks when none is given; see the
// measurement in docs/FORMAT.md.
const DefaultChunkSize = 1 << 20

// Errors that Open returns, testable with errors.Is.
var (
	// ErrNotRepository: the location holds no repository config.
	ErrNotRepository = errors.New("not a Lifeboat repository")
	// ErrPasswordRequired: the repository is encrypted and no password was given.
	ErrPasswordRequired = errors.New("repository is encrypted: a password is required")
	// ErrWrongPassword: no key of the repository opens with the password.
	ErrWrongPassword = errors.New("wrong password: no key of the repository opens with it")
	// ErrNotEncrypted: a password was given for a repository whose config
	// says it is not encrypted. The config cannot be authenticated before a
	// key is known, so an encrypted repository replaced by a planted
	// unencrypted one would look like this; the caller must open it
	// without a password on purpose.
	ErrNotEncrypted = errors.New("the repository is not encrypted, but a password was given")
	// ErrExists: Init found a repository already there.
	ErrExists = errors.New("a repository already exists there")
	// ErrDamaged: stored bytes fail their checksum, authentication or
	// structure checks.
	ErrDamaged = errors.New("repository data damaged")
	// ErrNotFound: a chunk, list or snapshot is not in the repository.
	ErrNotFound = errors.New("not found in the repository")
)

// Config is the repository's fixed configuration, stored in the config object.
type Config struct {
	// ID identifies the repository (64 hex digits, random).
	ID string `json:"id"`
	// Version is the format version.
	Version int `json:"version"`
	// ChunkSize is the fixed chunk size writers use for streams.
	ChunkSize int `json:"chunk_size"`
	// Encrypted says packs, indexes, snapshots and locks are sealed with
	// AES-256-GCM and chunk ids are keyed.
	Encrypted bool `json:"encrypted"`
}

// InitOptions configure a new repository.
type InitOptions struct {
	// Password makes the repository encrypted; nil leaves it unencrypted.
	Password []byte
	// ChunkSize is the stream chunk size; 0 picks DefaultChunkSize.
	ChunkSize int
}

// Repo is an open repository. Its methods are safe for concurrent use.
type Repo struct {
	be   netshare.Backend
	cfg  Config
	seal sealer
	hash hasher
	idx  *memIndex
	dec  *zstd.Decoder
	// frames caches decoded group frames for readers.
	frames *frameCache
	// wrote is set once this Repo stored or removed data, an index, a
	// snapshot or a log (locks do not count).
	wrote atomic.Bool

	// idxFiles names the index files idx was loaded from (sorted, joined),
	// so Lock can tell whether another process changed the index since.
	idxMu    sync.Mutex
	idxFiles string

	encMu sync.Mutex
	encs  map[Compression]*zstd.Encoder

	// Lock timing, changeable by tests.
	lockStale   time.Duration
	lockRefresh time.Duration
	now         func() time.Time
}

// keyFile is the content of a keys/<id> object.
type keyFile struct {
	RepoID  string    `json:"repo_id"`
	Created time.Time `json:"created"`
	KDF     string    `json:"kdf"`
	Params  kdfParams `json:"params"`
	Salt    []byte    `json:"salt"`
	// Wrapped is nonce || AES-256-GCM(master key || id key), additional
	// data the repository id, under the argon2id key of the password.
	Wrapped []byte `json:"wrapped"`
}

// Init creates a repository on be. It fails with ErrExists when be already
// holds a config object.
func Init(ctx context.Context, be netshare.Backend, opt InitOptions) (*Repo, error) {
	if _, err := be.Stat(ctx, "config"); err == nil {
		return nil, fmt.Errorf("init repository: %w", ErrExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("init repository: stat config: %w", err)
	}
	cs := opt.ChunkSize
	if cs == 0 {
		cs = DefaultChunkSize
	}
	if cs < 4096 || cs > MaxBlobSize {
		return nil, fmt.Errorf("init repository: chunk size %d outside [4096, %d]", cs, MaxBlobSize)
	}
	rid, err := randomBytes(32)
	if err != nil {
		return nil, fmt.Errorf("init repository: %w", err)
	}
	cfg := Config{ID: hex.EncodeToString(rid), Version: Version, ChunkSize: cs, Encrypted: opt.Password != nil}
	var master, idKey []byte
	if cfg.Encrypted {
		keys, err := randomBytes(2 * keyLen)
		if err != nil {
			return nil, fmt.Errorf("init repository: %w", err)
		}
		master, idKey = keys[:keyLen], keys[keyLen:]
		if err := saveKey(ctx, be, cfg.ID, opt.Password, keys); err != nil {
			return nil, fmt.Errorf("init repository: %w", err)
		}
	}
	cj, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("init repository: encode config: %w", err)
	}
	obj, _ := sealer{}.sealObject(cj) // plain sealing cannot fail
	// The config goes last: until it exists the location is no repository.
	if err := be.Save(ctx, "config", int64(len(obj)), bytes.NewReader(obj)); err != nil {
		return nil, fmt.Errorf("init repository: save config: %w", err)
	}
	return newRepo(be, cfg, master, idKey)
}

func saveKey(ctx context.Context, be netshare.Backend, repoID string, password, keys []byte) error {
	salt, err := randomBytes(32)
	if err != nil {
		return err
	}
	kf := keyFile{RepoID: repoID, Created: time.Now().UTC(), KDF: "argon2id", Params: defaultKDF, Salt: salt}
	kek, err := deriveKEK(password, salt, kf.Params)
	if err != nil {
		return fmt.Errorf("derive key: %w", err)
	}
	a, err := newGCM(kek)
	if err != nil {
		return err
	}
	nonce, err := randomBytes(nonceLen)
	if err != nil {
		return err
	}
	kf.Wrapped = a.Seal(nonce, nonce, keys, []byte(repoID))
	kj, err := json.Marshal(kf)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	obj, _ := sealer{}.sealObject(kj)
	sum := blake3.Sum256(obj)
	name := "keys/" + hex.EncodeToString(sum[:])
	if err := be.Save(ctx, name, int64(len(obj)), bytes.NewReader(obj)); err != nil {
		return fmt.Errorf("save %s: %w", name, err)
	}
	return nil
}

// Open opens the repository on be and loads its index. password must be
// nil for an unencrypted repository: one given there gives ErrNotEncrypted.
func Open(ctx context.Context, be netshare.Backend, password []byte) (*Repo, error) {
	obj, err := be.Load(ctx, "config", 0, -1)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open repository %s: %w", be.Properties().Location, ErrNotRepository)
	}
	if err != nil {
		return nil, fmt.Errorf("open repository: load config: %w", err)
	}
	cfg, err := parseConfig(obj)
	if err != nil {
		return nil, fmt.Errorf("open repository: config: %w", err)
	}
	var master, idKey []byte
	if !cfg.Encrypted && password != nil {
		return nil, fmt.Errorf("open repository %s: %w (open it without a password if it was never encrypted)", be.Properties().Location, ErrNotEncrypted)
	}
	if cfg.Encrypted {
		if password == nil {
			return nil, fmt.Errorf("open repository: %w", ErrPasswordRequired)
		}
		keys, err := openKeys(ctx, be, cfg.ID, password)
		if err != nil {
			return nil, fmt.Errorf("open repository: %w", err)
		}
		master, idKey = keys[:keyLen], keys[keyLen:]
	}
	r, err := newRepo(be, cfg, master, idKey)
	if err != nil {
		return nil, fmt.Errorf("open repository: %w", err)
	}
	if err := r.loadIndex(ctx); err != nil {
		return nil, fmt.Errorf("open repository: %w", err)
	}
	return r, nil
}

func parseConfig(obj []byte) (Config, error) {
	var cfg Config
	p, err := openPlain(obj)
	if err != nil {
		return cfg, fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	if err := json.Unmarshal(p, &cfg); err != nil {
		return cfg, fmt.Errorf("%w: decode: %w", ErrDamaged, err)
	}
	if cfg.Version != Version {
		return cfg, fmt.Errorf("format version %d not supported (this build reads version %d)", cfg.Version, Version)
	}
	if cfg.ChunkSize < 4096 || cfg.ChunkSize > MaxBlobSize || len(cfg.ID) != 64 {
		return cfg, fmt.Errorf("%w: invalid chunk size %d or id %q", ErrDamaged, cfg.ChunkSize, cfg.ID)
	}
	return cfg, nil
}

// openKeys tries every key object with the password.
func openKeys(ctx context.Context, be netshare.Backend, repoID string, password []byte) ([]byte, error) {
	var names []string
	if err := be.List(ctx, "keys/", func(fi netshare.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: encrypted repository has no key objects", ErrDamaged)
	}
	for _, name := range names {
		obj, err := be.Load(ctx, name, 0, -1)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", name, err)
		}
		p, err := openPlain(obj)
		if err != nil {
			continue
		}
		var kf keyFile
		if json.Unmarshal(p, &kf) != nil || kf.KDF != "argon2id" || kf.RepoID != repoID {
			continue
		}
		kek, err := deriveKEK(password, kf.Salt, kf.Params)
		if err != nil {
			continue
		}
		a, err := newGCM(kek)
		if err != nil || len(kf.Wrapped) < nonceLen+gcmTagLen {
			continue
		}
		keys, err := a.Open(nil, kf.Wrapped[:nonceLen], kf.Wrapped[nonceLen:], []byte(repoID))
		if err == nil && len(keys) == 2*keyLen {
			return keys, nil
		}
	}
	return nil, ErrWrongPassword
}

func newRepo(be netshare.Backend, cfg Config, master, idKey []byte) (*Repo, error) {
	s, err := newSealer(master)
	if err != nil {
		return nil, err
	}
	h, err := newHasher(idKey)
	if err != nil {
		return nil, err
	}
	// One decoder per core, at most maxDecoders: each keeps buffers of a
	// frame's size, and a restore has at most eight pieces in flight.
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(min(runtime.GOMAXPROCS(0), maxDecoders)), zstd.WithDecoderMaxMemory(2*MaxBlobSize))
	if err != nil {
		return nil, fmt.Errorf("create zstd decoder: %w", err)
	}
	return &Repo{
		be: be, cfg: cfg, seal: s, hash: h, idx: newMemIndex(), dec: dec, frames: newFrameCache(),
		encs:      map[Compression]*zstd.Encoder{},
		lockStale: 30 * time.Minute, lockRefresh: 5 * time.Minute, now: time.Now,
	}, nil
}

// Config returns the repository configuration.
func (r *Repo) Config() Config { return r.cfg }

// Backend returns the storage the repository lives on.
func (r *Repo) Backend() netshare.Backend { return r.be }

// Hash returns the chunk id of data: BLAKE3-256, keyed in an encrypted
// repository.
func (r *Repo) Hash(data []byte) ChunkID { return r.hash.sum(data) }

// Wrote reports whether this Repo changed the repository: stored a pack,
// an index, a snapshot or a log, or removed a snapshot or a pack.
func (r *Repo) Wrote() bool { return r.wrote.Load() }

// Has reports whether the index holds the blob id.
func (r *Repo) Has(id ChunkID) bool { return r.idx.has(id) }

// maxDecoders bounds the frames decoded at once (with GOMAXPROCS=16 and a
// decoder per core, a restore took 280 MiB against 188 MiB with 8).
const maxDecoders = 8

// IndexMemory is about the bytes of memory the repository's index holds:
// 69 or so per stored chunk. It is live for as long as the Repo is open.
func (r *Repo) IndexMemory() int64 { return r.idx.memory() }

// saveObject seals payload and stores it under dir/<BLAKE3 of the stored
// bytes>, returning the id.
func (r *Repo) saveObject(ctx context.Context, dir string, payload []byte) (string, error) {
	obj, err := r.seal.sealObject(payload)
	if err != nil {
		return "", err
	}
	if dir != "locks" {
		r.wrote.Store(true)
	}
	sum := blake3.Sum256(obj)
	id := hex.EncodeToString(sum[:])
	if err := r.be.Save(ctx, dir+"/"+id, int64(len(obj)), bytes.NewReader(obj)); err != nil {
		return "", fmt.Errorf("save %s/%s: %w", dir, id, err)
	}
	return id, nil
}

// loadObject loads and unseals a whole object.
func (r *Repo) loadObject(ctx context.Context, name string) ([]byte, error) {
	obj, err := r.be.Load(ctx, name, 0, -1)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	p, err := r.seal.openObject(obj)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrDamaged, name, err)
	}
	return p, nil
}

// listNames returns the names under prefix.
func (r *Repo) listNames(ctx context.Context, prefix string) ([]string, error) {
	var names []string
	err := r.be.List(ctx, prefix, func(fi netshare.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	return names, nil
}

// loadIndex reads every index file not superseded by another.
func (r *Repo) loadIndex(ctx context.Context) error {
	names, err := r.listNames(ctx, "index/")
	if err != nil {
		return err
	}
	files := map[string]*indexFile{}
	superseded := map[string]bool{}
	for _, name := range names {
		p, err := r.loadObject(ctx, name)
		if err != nil {
			return fmt.Errorf("load index: %w", err)
		}
		f, err := parseIndex(p)
		if err != nil {
			return fmt.Errorf("load index: %w: %s: %w", ErrDamaged, name, err)
		}
		id := strings.TrimPrefix(name, "index/")
		files[id] = f
		for _, s := range f.Supersedes {
			superseded[s.String()] = true
		}
	}
	// One add for all of them: each add rewrites the buckets it touches.
	var live []packInfo
	for id, f := range files {
		if !superseded[id] {
			live = append(live, f.Packs...)
		}
	}
	r.idx.add(live)
	sort.Strings(names)
	r.idxMu.Lock()
	r.idxFiles = strings.Join(names, "\n")
	r.idxMu.Unlock()
	return nil
}

// refreshIndex reloads the index when the set of index files differs from
// the one it was loaded from: another process wrote or pruned since. A
// writer must not dedup against blobs of packs a prune has removed, so
// Lock calls this once the lock is held.
func (r *Repo) refreshIndex(ctx context.Context) error {
	names, err := r.listNames(ctx, "index/")
	if err != nil {
		return fmt.Errorf("refresh index: %w", err)
	}
	sort.Strings(names)
	r.idxMu.Lock()
	same := r.idxFiles == strings.Join(names, "\n")
	r.idxMu.Unlock()
	if same {
		return nil
	}
	st, err := r.readIndexState(ctx, names)
	if err != nil {
		return fmt.Errorf("refresh index: %w", err)
	}
	if bad := sortedKeys(st.unreadable); len(bad) > 0 {
		return fmt.Errorf("refresh index: %w: %s: %w", ErrDamaged, bad[0], st.unreadable[bad[0]])
	}
	r.idx.replace(st.live)
	r.idxMu.Lock()
	r.idxFiles = strings.Join(names, "\n")
	r.idxMu.Unlock()
	return nil
}

// Close releases the compression workers. The backend stays open: it
// belongs to the caller.
func (r *Repo) Close() error {
	r.dec.Close()
	r.encMu.Lock()
	defer r.encMu.Unlock()
	for _, e := range r.encs {
		_ = e.Close()
	}
	r.encs = map[Compression]*zstd.Encoder{}
	return nil
}
