package repo

import (
	"context"
	"encoding/binary"
	"fmt"
	"path"

	"github.com/lifeboat/lifeboat/netshare"
)

// IndexOrphanPacks finds packs that no index lists (a backup killed after
// uploading them but before its Flush), reads their headers, and writes one
// index file covering them, so a rerun reuses their chunks instead of
// uploading them again. It returns the number of packs indexed. A pack
// whose header is damaged is reported as an error and nothing is indexed.
//
// It is safe while another writer runs: packs are saved atomically, so every
// listed pack is complete, and an index listing a pack twice is harmless.
func (r *Repo) IndexOrphanPacks(ctx context.Context) (int, error) {
	var orphans []packInfo
	var sizes []int64
	var ids []PackID
	err := r.be.List(ctx, "data/", func(fi netshare.FileInfo) error {
		id, err := ParseChunkID(path.Base(fi.Name))
		if err != nil || packName(PackID(id)) != fi.Name {
			return nil // not a pack name; verify reports strays
		}
		if !r.idx.hasPack(PackID(id)) {
			ids = append(ids, PackID(id))
			sizes = append(sizes, fi.Size)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("index orphan packs: list data: %w", err)
	}
	for i, id := range ids {
		entries, err := r.readPackHeader(ctx, id, sizes[i])
		if err != nil {
			return 0, fmt.Errorf("index orphan packs: %w", err)
		}
		orphans = append(orphans, packInfo{ID: id, Size: sizes[i], Entries: entries})
	}
	if len(orphans) == 0 {
		return 0, nil
	}
	if _, err := r.saveObject(ctx, "index", encodeIndex(&indexFile{Packs: orphans})); err != nil {
		return 0, fmt.Errorf("index orphan packs: %w", err)
	}
	r.idx.add(orphans)
	return len(orphans), nil
}

// readPackHeader loads a pack's trailer and header with two ranged loads.
func (r *Repo) readPackHeader(ctx context.Context, id PackID, size int64) ([]packEntry, error) {
	name := packName(id)
	if size < packTrailerLen+1 || size > maxPackSize {
		return nil, fmt.Errorf("pack %s: %w: size %d out of range", name, ErrDamaged, size)
	}
	t, err := r.be.Load(ctx, name, size-packTrailerLen, packTrailerLen)
	if err != nil {
		return nil, fmt.Errorf("read pack %s trailer: %w", name, err)
	}
	hl := int64(binary.LittleEndian.Uint32(t))
	if hl == 0 || hl > size-packTrailerLen {
		return nil, fmt.Errorf("pack %s: %w: header length %d does not fit %d bytes", name, ErrDamaged, hl, size)
	}
	dataLen := size - packTrailerLen - hl
	hdr, err := r.be.Load(ctx, name, dataLen, hl)
	if err != nil {
		return nil, fmt.Errorf("read pack %s header: %w", name, err)
	}
	body, err := r.seal.openObject(hdr)
	if err != nil {
		return nil, fmt.Errorf("pack %s header: %w: %w", name, ErrDamaged, err)
	}
	entries, err := parsePackHeader(body, dataLen)
	if err != nil {
		return nil, fmt.Errorf("pack %s header: %w: %w", name, ErrDamaged, err)
	}
	return entries, nil
}
