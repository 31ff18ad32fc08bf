// Package exfat detects exFAT file systems and maps the clusters they use.
//
// The layout follows Microsoft's "exFAT file system specification": a main
// and a backup boot region of 12 sectors each, the FAT region, and the
// cluster heap. Which clusters are in use is recorded in the Allocation
// Bitmap, a file of the root directory (entry type 0x81); files written
// without a FAT chain are contiguous and have no FAT entries, so the bitmap,
// not the FAT, is the authority.
package exfat

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"unicode/utf16"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

// Directory entry types of the root directory this package reads.
const (
	entryEnd    = 0x00
	entryBitmap = 0x81
	entryUpcase = 0x82
	entryLabel  = 0x83
)

// Volume flags (boot sector offset 106).
const (
	flagActiveFAT    = 1 << 0
	flagVolumeDirty  = 1 << 1
	flagMediaFailure = 1 << 2
)

// maxDirBytes is the spec's limit on a directory's size (256 MiB); a longer
// root directory chain is damage.
const maxDirBytes = 256 << 20

// chunkSize bounds each read of the bitmap and FAT.
const chunkSize = 1 << 20

// bootRegionSectors is the main (12) plus the backup (12) boot region.
const bootRegionSectors = 24

// geometry is the validated boot sector.
type geometry struct {
	ss        int64 // bytes per sector
	cs        int64 // bytes per cluster
	volLen    int64 // sectors
	fatOff    int64 // sectors
	fatLen    int64 // sectors
	nfats     int64
	heapOff   int64 // sectors
	clusters  int64
	rootClus  int64
	serial    uint32
	flags     uint16
	activeFAT int64
}

func (g *geometry) clusterOff(n int64) int64 { return g.heapOff*g.ss + (n-2)*g.cs }

// fatStart is the byte offset of the FAT chains are read from.
func (g *geometry) fatStart() int64 { return (g.fatOff + g.activeFAT*g.fatLen) * g.ss }

// parseBoot validates the main boot sector bs against the volume size.
func parseBoot(bs []byte, size int64) (*geometry, error) {
	le := binary.LittleEndian
	if bs[510] != 0x55 || bs[511] != 0xAA {
		return nil, fmt.Errorf("boot signature %02x%02x, want 55aa", bs[510], bs[511])
	}
	bpsShift, spcShift := int64(bs[108]), int64(bs[109])
	if bpsShift < 9 || bpsShift > 12 {
		return nil, fmt.Errorf("bytes-per-sector shift %d outside 9..12", bpsShift)
	}
	if spcShift > 25-bpsShift {
		return nil, fmt.Errorf("sectors-per-cluster shift %d makes clusters over 32 MiB", spcShift)
	}
	g := &geometry{
		ss:       1 << bpsShift,
		fatOff:   int64(le.Uint32(bs[80:])),
		fatLen:   int64(le.Uint32(bs[84:])),
		heapOff:  int64(le.Uint32(bs[88:])),
		clusters: int64(le.Uint32(bs[92:])),
		rootClus: int64(le.Uint32(bs[96:])),
		serial:   le.Uint32(bs[100:]),
		flags:    le.Uint16(bs[106:]),
		nfats:    int64(bs[110]),
	}
	g.cs = g.ss << spcShift
	volLen := le.Uint64(bs[72:])
	if volLen == 0 || volLen > uint64(size/g.ss) {
		return nil, fmt.Errorf("volume length of %d sectors of %d bytes does not fit the %d-byte volume", volLen, g.ss, size)
	}
	g.volLen = int64(volLen)
	if g.nfats != 1 && g.nfats != 2 {
		return nil, fmt.Errorf("%d FATs, want 1 or 2", g.nfats)
	}
	if g.flags&flagActiveFAT != 0 && g.nfats == 2 {
		g.activeFAT = 1
	}
	if g.fatOff < bootRegionSectors || g.fatLen == 0 || g.fatOff+g.nfats*g.fatLen > g.heapOff {
		return nil, fmt.Errorf("FAT region at sector %d, %d x %d sectors, overlaps the boot region or the cluster heap at %d", g.fatOff, g.nfats, g.fatLen, g.heapOff)
	}
	if g.clusters == 0 || g.heapOff+g.clusters*(g.cs/g.ss) > g.volLen {
		return nil, fmt.Errorf("cluster heap of %d clusters at sector %d exceeds the %d-sector volume", g.clusters, g.heapOff, g.volLen)
	}
	if g.fatLen*g.ss < (g.clusters+2)*4 {
		return nil, fmt.Errorf("FAT of %d sectors cannot hold %d clusters", g.fatLen, g.clusters)
	}
	if g.rootClus < 2 || g.rootClus > g.clusters+1 {
		return nil, fmt.Errorf("root directory cluster %d outside 2..%d", g.rootClus, g.clusters+1)
	}
	return g, nil
}

// bootChecksum computes the boot-region checksum over sectors 0..10,
// skipping VolumeFlags and PercentInUse, which change without it.
func bootChecksum(region []byte, ss int) uint32 {
	var sum uint32
	for i, b := range region[:11*ss] {
		if i == 106 || i == 107 || i == 112 {
			continue
		}
		sum = (sum << 31) | (sum >> 1)
		sum += uint32(b)
	}
	return sum
}

// fileRef is a file of the root directory the used map must cover.
type fileRef struct {
	first int64
	size  int64
	// entryOff is the byte offset of its directory entry, for Grow.
	entryOff int64
}

// FS is a detected exFAT file system.
type FS struct {
	r       io.ReaderAt
	g       *geometry
	bitmaps []fileRef
	upcase  []fileRef
	mu      sync.Mutex
	info    fsmap.Info
}

// Info implements fsmap.FS.
func (f *FS) Info() fsmap.Info {
	f.mu.Lock()
	defer f.mu.Unlock()
	info := f.info
	info.Warnings = append([]string(nil), f.info.Warnings...)
	return info
}

// Detect recognises an exFAT file system in r (size bytes). A volume without
// the "EXFAT   " name gives an error wrapping fsmap.ErrNotDetected; one with
// it but a bad checksum or an inconsistent layout gives a plain error.
func Detect(ctx context.Context, r io.ReaderAt, size int64) (fsmap.FS, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if size < 512 {
		return nil, fmt.Errorf("exfat: volume of %d bytes: %w", size, fsmap.ErrNotDetected)
	}
	bs := make([]byte, 512)
	if err := fsmap.ReadFull(r, bs, 0, "exFAT boot sector"); err != nil {
		return nil, err
	}
	if string(bs[3:11]) != "EXFAT   " {
		return nil, fmt.Errorf("exfat: no EXFAT name in the boot sector: %w", fsmap.ErrNotDetected)
	}
	g, err := parseBoot(bs, size)
	if err != nil {
		return nil, fmt.Errorf("parse exFAT boot sector: %w", err)
	}
	region := make([]byte, 12*g.ss)
	if err := fsmap.ReadFull(r, region, 0, "exFAT boot region"); err != nil {
		return nil, err
	}
	sum := bootChecksum(region, int(g.ss))
	for off := 11 * g.ss; off < 12*g.ss; off += 4 {
		if got := binary.LittleEndian.Uint32(region[off:]); got != sum {
			return nil, fmt.Errorf("exFAT boot checksum %08x at byte %d, computed %08x", got, off, sum)
		}
	}
	f := &FS{r: r, g: g}
	f.info = fsmap.Info{
		Type:      "exfat",
		UUID:      fmt.Sprintf("%04X-%04X", g.serial>>16, g.serial&0xFFFF),
		BlockSize: g.cs,
		Size:      g.volLen * g.ss,
	}
	if err := f.readRoot(ctx); err != nil {
		return nil, fmt.Errorf("read exFAT root directory: %w", err)
	}
	if len(f.bitmaps) == 0 {
		return nil, fmt.Errorf("exFAT root directory has no allocation bitmap entry")
	}
	if g.flags&flagVolumeDirty != 0 {
		f.info.Warnings = append(f.info.Warnings, "exFAT volume is marked dirty (not cleanly unmounted): run fsck.exfat on the source")
	}
	if g.flags&flagMediaFailure != 0 {
		f.info.Warnings = append(f.info.Warnings, "exFAT volume records media failures: the source disk may be failing")
	}
	return f, nil
}

// fatEntry reads FAT entry n of the active FAT.
func (f *FS) fatEntry(n int64) (uint32, error) {
	var b [4]byte
	if err := fsmap.ReadFull(f.r, b[:], f.g.fatStart()+n*4, "exFAT FAT entry"); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b[:]), nil
}

// clusterRun is the clusters [first, first+n).
type clusterRun struct{ first, n int64 }

// chain returns the clusters of a file starting at first, at most limit of
// them. A file whose first FAT entry is free was written without a FAT
// chain (NoFatChain) and is contiguous. With exact set, a FAT chain shorter
// than limit is an error.
func (f *FS) chain(ctx context.Context, first, limit int64, exact bool) ([]clusterRun, error) {
	g := f.g
	if first < 2 || first > g.clusters+1 {
		return nil, fmt.Errorf("cluster %d outside 2..%d", first, g.clusters+1)
	}
	next, err := f.fatEntry(first)
	if err != nil {
		return nil, err
	}
	if next == 0 {
		if first+limit > g.clusters+2 {
			return nil, fmt.Errorf("contiguous run of %d clusters at %d passes the heap end", limit, first)
		}
		return []clusterRun{{first, limit}}, nil
	}
	var runs []clusterRun
	cur := first
	for i := int64(0); i < limit; i++ {
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if n := len(runs); n > 0 && runs[n-1].first+runs[n-1].n == cur {
			runs[n-1].n++
		} else {
			runs = append(runs, clusterRun{cur, 1})
		}
		if i+1 == limit {
			break
		}
		if i > 0 {
			if next, err = f.fatEntry(cur); err != nil {
				return nil, err
			}
		}
		if next >= 0xFFFFFFF7 {
			if exact {
				return nil, fmt.Errorf("chain from cluster %d ends after %d of %d clusters", first, i+1, limit)
			}
			break
		}
		if next < 2 || int64(next) > g.clusters+1 {
			return nil, fmt.Errorf("chain from cluster %d reaches cluster %d outside 2..%d", first, next, g.clusters+1)
		}
		cur = int64(next)
	}
	return runs, nil
}

// readRoot walks the root directory for the bitmap, up-case table and
// label entries.
func (f *FS) readRoot(ctx context.Context) error {
	g := f.g
	runs, err := f.chain(ctx, g.rootClus, min(maxDirBytes/g.cs+1, g.clusters), false)
	if err != nil {
		return err
	}
	buf := make([]byte, g.cs)
	le := binary.LittleEndian
	for _, r := range runs {
		for c := r.first; c < r.first+r.n; c++ {
			if err := fsmap.ReadFull(f.r, buf, g.clusterOff(c), "exFAT root directory cluster"); err != nil {
				return err
			}
			for i := 0; i+32 <= len(buf); i += 32 {
				e := buf[i : i+32]
				switch e[0] {
				case entryEnd:
					return nil
				case entryBitmap, entryUpcase:
					ref := fileRef{first: int64(le.Uint32(e[20:])), size: int64(le.Uint64(e[24:]) & (1<<62 - 1)), entryOff: g.clusterOff(c) + int64(i)}
					if e[0] == entryBitmap {
						f.bitmaps = append(f.bitmaps, ref)
					} else {
						f.upcase = append(f.upcase, ref)
					}
				case entryLabel:
					n := int(e[1])
					if n > 11 {
						return fmt.Errorf("volume label of %d characters, at most 11", n)
					}
					u := make([]uint16, n)
					for j := range u {
						u[j] = le.Uint16(e[2+2*j:])
					}
					f.info.Label = string(utf16.Decode(u))
				}
			}
		}
	}
	return nil
}

// UsedExtents implements fsmap.FS: both boot regions, the FAT region, every
// cluster set in the allocation bitmap(s), and the clusters of the bitmap,
// up-case table and root directory themselves.
func (f *FS) UsedExtents(ctx context.Context) ([]fsmap.Extent, error) {
	g := f.g
	ext := []fsmap.Extent{
		{Off: 0, Len: bootRegionSectors * g.ss},
		{Off: g.fatOff * g.ss, Len: g.nfats * g.fatLen * g.ss},
	}
	addRuns := func(runs []clusterRun) {
		for _, r := range runs {
			ext = append(ext, fsmap.Extent{Off: g.clusterOff(r.first), Len: r.n * g.cs})
		}
	}
	root, err := f.chain(ctx, g.rootClus, min(maxDirBytes/g.cs+1, g.clusters), false)
	if err != nil {
		return nil, fmt.Errorf("exFAT root directory: %w", err)
	}
	addRuns(root)
	for _, u := range f.upcase {
		runs, err := f.chain(ctx, u.first, ceilDiv(max(u.size, 1), g.cs), true)
		if err != nil {
			return nil, fmt.Errorf("exFAT up-case table: %w", err)
		}
		addRuns(runs)
	}
	need := ceilDiv(g.clusters, 8)
	for i, b := range f.bitmaps {
		if b.size < need {
			return nil, fmt.Errorf("exFAT allocation bitmap %d holds %d bytes, %d clusters need %d", i, b.size, g.clusters, need)
		}
		runs, err := f.chain(ctx, b.first, ceilDiv(need, g.cs), true)
		if err != nil {
			return nil, fmt.Errorf("exFAT allocation bitmap %d: %w", i, err)
		}
		addRuns(runs)
		bm, err := f.bitmapExtents(ctx, runs, g.clusters)
		if err != nil {
			return nil, fmt.Errorf("exFAT allocation bitmap %d: %w", i, err)
		}
		ext = append(ext, bm...)
		// Keep memory flat on big volumes: merge as we go.
		ext = fsmap.Normalize(ext, 0)
	}
	ext = fsmap.Normalize(ext, g.volLen*g.ss)
	f.mu.Lock()
	f.info.Used = fsmap.Total(ext)
	f.mu.Unlock()
	return ext, nil
}

// bitmapExtents reads the bitmap stored in runs and turns its first nbits
// bits (bit i is cluster i+2) into byte extents.
func (f *FS) bitmapExtents(ctx context.Context, runs []clusterRun, nbits int64) ([]fsmap.Extent, error) {
	g := f.g
	var ext []fsmap.Extent
	buf := make([]byte, min(chunkSize, ceilDiv(nbits, 8)))
	var bit int64
	for _, r := range runs {
		start, end := g.clusterOff(r.first), g.clusterOff(r.first)+r.n*g.cs
		for off := start; off < end && bit < nbits; {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			n := min(int64(len(buf)), end-off, ceilDiv(nbits-bit, 8))
			if err := fsmap.ReadFull(f.r, buf[:n], off, "exFAT allocation bitmap"); err != nil {
				return nil, err
			}
			bits := min(n*8, nbits-bit)
			ext = append(ext, fsmap.BitmapExtents(buf[:n], bits, bit, g.cs, g.heapOff*g.ss)...)
			bit += bits
			off += n
		}
	}
	return ext, nil
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }
