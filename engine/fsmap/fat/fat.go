// Package fat detects FAT12, FAT16 and FAT32 file systems, maps the clusters
// they use and grows them in place.
//
// The layout follows Microsoft's "FAT: General Overview of On-Disk Format"
// (version 1.03): a reserved region starting with the boot sector (BPB),
// NumFATs copies of the allocation table, on FAT12/16 a fixed root
// directory region, then the cluster heap, whose cluster n (n >= 2) starts
// (n-2) clusters into it. A cluster is in use when its FAT entry is not zero.
package fat

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

// Cluster-count limits that decide the FAT type (Microsoft spec): fewer than
// 4085 clusters is FAT12, fewer than 65525 is FAT16.
const (
	maxFAT12Clusters = 4084
	maxFAT16Clusters = 65524
	// maxFAT32Clusters keeps every cluster number below the reserved
	// values 0x0FFFFFF7 (bad) and up.
	maxFAT32Clusters = 0x0FFFFFF5
)

// maxDirEntries bounds a directory scan: FAT directories hold at most
// 65536 entries (the spec's limit), so a longer chain is damage.
const maxDirEntries = 65536

// chunkSize is the unit of the FAT scans and data moves: large enough for
// sequential I/O, small enough to keep memory flat.
const chunkSize = 1 << 20

// geometry is the validated layout of one FAT file system.
type geometry struct {
	bps       int64 // bytes per sector
	spc       int64 // sectors per cluster
	rsvd      int64 // reserved sectors
	nfats     int64
	rootEnt   int64 // FAT12/16 root directory entries
	totSec    int64
	fatSz     int64 // sectors per FAT copy
	rootSec   int64 // sectors of the FAT12/16 root directory region
	dataSec   int64 // first sector of the cluster heap
	clusters  int64 // number of data clusters (numbered 2..clusters+1)
	bits      int   // FAT entry width: 12, 16 or 32
	rootClus  int64 // FAT32 root directory cluster
	fsInfo    int64 // FAT32 FSInfo sector, 0 when none
	bkBoot    int64 // FAT32 backup boot sector, 0 when none
	extFlags  uint16
	variant   string
	bpbLabel  string
	serial    uint32
	hasSerial bool
	// linuxDirty is bit 0 of the BPB byte Linux uses as its "dirty" state.
	linuxDirty bool
}

// clusterBytes is the size of one cluster.
func (g *geometry) clusterBytes() int64 { return g.spc * g.bps }

// clusterOff is the byte offset of cluster n.
func (g *geometry) clusterOff(n int64) int64 { return g.dataSec*g.bps + (n-2)*g.clusterBytes() }

// fatCapacity is how many entries one FAT copy can hold.
func (g *geometry) fatCapacity() int64 { return g.fatSz * g.bps * 8 / int64(g.bits) }

// growMaxClusters is the largest cluster count Grow gives a file system of
// the given FAT width. It stays one below the spec's limits for FAT12 and
// FAT16 because blkid calls a count equal to them neither FAT12 nor FAT16.
func growMaxClusters(bits int) int64 {
	switch bits {
	case 12:
		return maxFAT12Clusters - 1
	case 16:
		return maxFAT16Clusters - 1
	}
	return maxFAT32Clusters
}

// looksLikeFAT reports whether the boot sector carries a plausible BPB. It is
// the detection test: a sector that fails it is not FAT at all, one that
// passes it but is inconsistent is a damaged FAT.
func looksLikeFAT(bs []byte) bool {
	if string(bs[3:11]) == "NTFS    " || string(bs[3:11]) == "EXFAT   " {
		return false
	}
	if bs[0] != 0xEB && bs[0] != 0xE9 && !(bs[510] == 0x55 && bs[511] == 0xAA) {
		return false
	}
	bps := binary.LittleEndian.Uint16(bs[11:])
	spc := bs[13]
	if bps < 512 || bps > 4096 || bps&(bps-1) != 0 {
		return false
	}
	if spc == 0 || spc&(spc-1) != 0 {
		return false
	}
	if binary.LittleEndian.Uint16(bs[14:]) == 0 || bs[16] == 0 {
		return false
	}
	if media := bs[21]; media != 0xF0 && media < 0xF8 {
		return false
	}
	return true
}

// parseBPB validates the boot sector against the volume size.
func parseBPB(bs []byte, size int64) (*geometry, error) {
	le := binary.LittleEndian
	g := &geometry{
		bps:     int64(le.Uint16(bs[11:])),
		spc:     int64(bs[13]),
		rsvd:    int64(le.Uint16(bs[14:])),
		nfats:   int64(bs[16]),
		rootEnt: int64(le.Uint16(bs[17:])),
		totSec:  int64(le.Uint16(bs[19:])),
		fatSz:   int64(le.Uint16(bs[22:])),
	}
	if g.totSec == 0 {
		g.totSec = int64(le.Uint32(bs[32:]))
	}
	// FAT32 is told by its BPB shape (no 16-bit FAT size, no fixed root
	// directory), as Linux and blkid do; 12 versus 16 by the cluster count.
	fat32 := g.fatSz == 0
	extOff := 36
	if fat32 {
		g.fatSz = int64(le.Uint32(bs[36:]))
		g.extFlags = le.Uint16(bs[40:])
		g.rootClus = int64(le.Uint32(bs[44:]))
		g.fsInfo = int64(le.Uint16(bs[48:]))
		g.bkBoot = int64(le.Uint16(bs[50:]))
		extOff = 64
		if g.rootEnt != 0 {
			return nil, fmt.Errorf("FAT32 boot sector has %d fixed root directory entries", g.rootEnt)
		}
	}
	if g.totSec == 0 || g.fatSz == 0 {
		return nil, fmt.Errorf("boot sector has zero total sectors (%d) or FAT size (%d)", g.totSec, g.fatSz)
	}
	if g.spc > 128 || g.nfats > 16 {
		return nil, fmt.Errorf("boot sector has %d sectors per cluster and %d FATs", g.spc, g.nfats)
	}
	if g.totSec > size/g.bps {
		return nil, fmt.Errorf("file system of %d sectors of %d bytes is larger than the %d-byte volume", g.totSec, g.bps, size)
	}
	g.rootSec = (g.rootEnt*32 + g.bps - 1) / g.bps
	g.dataSec = g.rsvd + g.nfats*g.fatSz + g.rootSec
	if g.dataSec >= g.totSec {
		return nil, fmt.Errorf("metadata (%d sectors) fills the %d-sector file system", g.dataSec, g.totSec)
	}
	g.clusters = (g.totSec - g.dataSec) / g.spc
	switch {
	case fat32:
		g.bits, g.variant = 32, "FAT32"
		if g.clusters > maxFAT32Clusters {
			return nil, fmt.Errorf("FAT32 with %d clusters exceeds the format's limit", g.clusters)
		}
		if g.rootClus < 2 || g.rootClus > g.clusters+1 {
			return nil, fmt.Errorf("FAT32 root directory cluster %d outside 2..%d", g.rootClus, g.clusters+1)
		}
		if g.fsInfo >= g.rsvd {
			g.fsInfo = 0
		}
		if g.bkBoot >= g.rsvd || g.bkBoot+1 > g.rsvd {
			g.bkBoot = 0
		}
	case g.clusters <= maxFAT12Clusters:
		g.bits, g.variant = 12, "FAT12"
	case g.clusters <= maxFAT16Clusters:
		g.bits, g.variant = 16, "FAT16"
	default:
		return nil, fmt.Errorf("16-bit FAT size but %d clusters, too many for FAT16", g.clusters)
	}
	if g.clusters < 1 {
		return nil, fmt.Errorf("file system has no data clusters")
	}
	if g.fatCapacity() < g.clusters+2 {
		return nil, fmt.Errorf("%s of %d sectors holds %d entries, fewer than %d clusters need", g.variant, g.fatSz, g.fatCapacity(), g.clusters+2)
	}
	ext := bs[extOff:]
	g.linuxDirty = ext[1]&1 != 0
	if sig := ext[2]; sig == 0x29 || sig == 0x28 {
		g.serial = le.Uint32(ext[3:])
		g.hasSerial = true
		if sig == 0x29 {
			g.bpbLabel = cleanLabel(ext[7:18])
		}
	}
	return g, nil
}

// cleanLabel trims the space padding of an 11-byte label; "NO NAME" is the
// formatters' way of saying there is none.
func cleanLabel(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	s := strings.TrimRight(string(b), " ")
	if s == "NO NAME" {
		return ""
	}
	return latin1(s)
}

// latin1 maps bytes above 0x7F one to one onto runes so a label in an OEM
// code page still yields valid UTF-8.
func latin1(s string) string {
	r := make([]rune, 0, len(s))
	for i := 0; i < len(s); i++ {
		r = append(r, rune(s[i]))
	}
	return string(r)
}

// FS is a detected FAT file system.
type FS struct {
	r    io.ReaderAt
	g    *geometry
	mu   sync.Mutex
	info fsmap.Info
}

// Info implements fsmap.FS.
func (f *FS) Info() fsmap.Info {
	f.mu.Lock()
	defer f.mu.Unlock()
	info := f.info
	info.Warnings = append([]string(nil), f.info.Warnings...)
	return info
}

// Detect recognises a FAT12/16/32 file system in r (size bytes). It returns
// an error wrapping fsmap.ErrNotDetected when the first sector carries no
// FAT boot sector, and a plain error when it does but the layout is
// inconsistent with itself or with size.
func Detect(ctx context.Context, r io.ReaderAt, size int64) (fsmap.FS, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if size < 512 {
		return nil, fmt.Errorf("fat: volume of %d bytes: %w", size, fsmap.ErrNotDetected)
	}
	bs := make([]byte, 512)
	if err := fsmap.ReadFull(r, bs, 0, "FAT boot sector"); err != nil {
		return nil, err
	}
	if !looksLikeFAT(bs) {
		return nil, fmt.Errorf("fat: no BPB in the boot sector: %w", fsmap.ErrNotDetected)
	}
	g, err := parseBPB(bs, size)
	if err != nil {
		return nil, fmt.Errorf("parse FAT boot sector: %w", err)
	}
	f := &FS{r: r, g: g}
	f.info = fsmap.Info{
		Type:      "vfat",
		Variant:   g.variant,
		Label:     g.bpbLabel,
		BlockSize: g.clusterBytes(),
		Size:      g.totSec * g.bps,
	}
	if g.hasSerial {
		f.info.UUID = fmt.Sprintf("%04X-%04X", g.serial>>16, g.serial&0xFFFF)
	}
	label, found, err := f.rootLabel(ctx)
	if err != nil {
		return nil, fmt.Errorf("read FAT volume label: %w", err)
	}
	if found {
		f.info.Label = label
	}
	dirty, err := f.dirty(g)
	if err != nil {
		return nil, err
	}
	if dirty {
		f.info.Warnings = append(f.info.Warnings, "FAT file system is marked dirty (not cleanly unmounted): run fsck.fat on the source")
	}
	return f, nil
}

// dirty reads the clean-shutdown bits of FAT[1] (FAT16/32) and the Linux
// state byte of the BPB.
func (f *FS) dirty(g *geometry) (bool, error) {
	if g.linuxDirty {
		return true, nil
	}
	switch g.bits {
	case 16:
		b := make([]byte, 2)
		if err := fsmap.ReadFull(f.r, b, g.rsvd*g.bps+2, "FAT[1]"); err != nil {
			return false, err
		}
		return binary.LittleEndian.Uint16(b)&0x8000 == 0, nil
	case 32:
		b := make([]byte, 4)
		if err := fsmap.ReadFull(f.r, b, g.rsvd*g.bps+4, "FAT[1]"); err != nil {
			return false, err
		}
		return binary.LittleEndian.Uint32(b)&0x08000000 == 0, nil
	}
	return false, nil
}

// fatCopyOff is the byte offset of FAT copy i.
func (g *geometry) fatCopyOff(i int64) int64 { return (g.rsvd + i*g.fatSz) * g.bps }

// activeFAT is the FAT copy chains are read from: the first, unless a
// FAT32 volume turned mirroring off (ExtFlags bit 7) and names another.
func (g *geometry) activeFAT() int64 {
	if g.bits == 32 && g.extFlags&0x80 != 0 {
		if a := int64(g.extFlags & 0x0F); a < g.nfats {
			return a
		}
	}
	return 0
}

// readEntry reads FAT entry n from the active FAT copy.
func (f *FS) readEntry(n int64) (uint32, error) {
	g := f.g
	var b [4]byte
	off := g.fatCopyOff(g.activeFAT()) + n*int64(g.bits)/8
	width := g.bits / 8
	if g.bits == 12 {
		width = 2
	}
	if err := fsmap.ReadFull(f.r, b[:width], off, "FAT entry"); err != nil {
		return 0, err
	}
	switch g.bits {
	case 12:
		v := uint32(binary.LittleEndian.Uint16(b[:]))
		if n&1 == 1 {
			return v >> 4, nil
		}
		return v & 0xFFF, nil
	case 16:
		return uint32(binary.LittleEndian.Uint16(b[:])), nil
	}
	return binary.LittleEndian.Uint32(b[:]) & 0x0FFFFFFF, nil
}

// isEOC reports whether a FAT entry ends a chain (or is bad, which also
// ends any sane walk).
func (g *geometry) isEOC(v uint32) bool {
	switch g.bits {
	case 12:
		return v >= 0xFF7
	case 16:
		return v >= 0xFFF7
	}
	return v >= 0x0FFFFFF7
}

// rootLabel scans the root directory for the volume-label entry, the label
// blkid prefers over the BPB copy.
func (f *FS) rootLabel(ctx context.Context) (string, bool, error) {
	g := f.g
	var label string
	found, done := false, false
	scan := func(buf []byte) {
		for i := 0; i+32 <= len(buf) && !done; i += 32 {
			e := buf[i : i+32]
			switch {
			case e[0] == 0:
				done = true
			case e[0] == 0xE5:
			case e[11]&0x3F == 0x0F: // long-name entry
			case binary.LittleEndian.Uint16(e[20:]) != 0 || binary.LittleEndian.Uint16(e[26:]) != 0:
				// A label owns no clusters; blkid skips such entries too.
			case e[11]&0x08 != 0 && e[11]&0x10 == 0:
				name := append([]byte(nil), e[:11]...)
				if name[0] == 0x05 {
					name[0] = 0xE5
				}
				label, found, done = cleanLabel(name), true, true
				if label == "" {
					found = false
				}
			}
		}
	}
	if g.bits != 32 {
		buf := make([]byte, g.rootSec*g.bps)
		off := (g.rsvd + g.nfats*g.fatSz) * g.bps
		if err := fsmap.ReadFull(f.r, buf, off, "FAT root directory"); err != nil {
			return "", false, err
		}
		scan(buf)
		return label, found, nil
	}
	cb := g.clusterBytes()
	buf := make([]byte, cb)
	cl := g.rootClus
	for read := int64(0); !done && read < maxDirEntries*32; read += cb {
		if err := ctx.Err(); err != nil {
			return "", false, err
		}
		if cl < 2 || cl > g.clusters+1 {
			return "", false, fmt.Errorf("root directory chain reaches cluster %d outside 2..%d", cl, g.clusters+1)
		}
		if err := fsmap.ReadFull(f.r, buf, g.clusterOff(cl), "FAT32 root directory cluster"); err != nil {
			return "", false, err
		}
		scan(buf)
		next, err := f.readEntry(cl)
		if err != nil {
			return "", false, err
		}
		if g.isEOC(next) {
			break
		}
		cl = int64(next)
	}
	return label, found, nil
}

// clusterRun is the clusters [first, first+n).
type clusterRun struct{ first, n int64 }

// usedRuns scans every FAT copy and returns the runs of clusters whose entry
// is non-zero in any copy (a union, so a stale copy can only add clusters),
// and how many clusters the active copy marks non-zero.
func (f *FS) usedRuns(ctx context.Context) ([]clusterRun, int64, error) {
	g := f.g
	// Bytes of FAT that cover entries 0..clusters+1, rounded so FAT12 pairs
	// (3 bytes per 2 entries) never split across chunks.
	need := ((g.clusters+2)*int64(g.bits) + 7) / 8
	step := int64(chunkSize)
	step -= step % 3
	bufs := make([][]byte, g.nfats)
	var runs []clusterRun
	var activeCount int64
	runStart := int64(-1)
	for base := int64(0); base < need; base += step {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		n := step
		if base+n > need {
			n = need - base
		}
		for i := range bufs {
			if bufs[i] == nil {
				bufs[i] = make([]byte, min(step, need))
			}
			b := bufs[i][:n]
			if err := fsmap.ReadFull(f.r, b, g.fatCopyOff(int64(i))+base, fmt.Sprintf("FAT copy %d", i)); err != nil {
				return nil, 0, err
			}
		}
		firstEntry := base * 8 / int64(g.bits)
		lastEntry := (base + n) * 8 / int64(g.bits) // exclusive
		if lastEntry > g.clusters+2 {
			lastEntry = g.clusters + 2
		}
		for e := max(firstEntry, 2); e < lastEntry; e++ {
			used := false
			for i := range bufs {
				if v := entryAt(bufs[i], e-firstEntry, g.bits, e); v != 0 {
					used = true
					if int64(i) == g.activeFAT() {
						activeCount++
					}
				}
			}
			switch {
			case used && runStart < 0:
				runStart = e
			case !used && runStart >= 0:
				runs = append(runs, clusterRun{runStart, e - runStart})
				runStart = -1
			}
		}
	}
	if runStart >= 0 {
		runs = append(runs, clusterRun{runStart, g.clusters + 2 - runStart})
	}
	return runs, activeCount, nil
}

// entryAt decodes entry rel of a FAT buffer whose first entry is even;
// abs is the entry's absolute number (it decides FAT12 nibble order).
func entryAt(buf []byte, rel int64, bits int, abs int64) uint32 {
	switch bits {
	case 12:
		off := rel * 3 / 2
		if off+1 >= int64(len(buf)) {
			return 0
		}
		v := uint32(binary.LittleEndian.Uint16(buf[off:]))
		if abs&1 == 1 {
			return v >> 4
		}
		return v & 0xFFF
	case 16:
		if rel*2+2 > int64(len(buf)) {
			return 0
		}
		return uint32(binary.LittleEndian.Uint16(buf[rel*2:]))
	}
	if rel*4+4 > int64(len(buf)) {
		return 0
	}
	// The top four bits are reserved; keep them so a set bit counts as
	// used (a superset is safe).
	return binary.LittleEndian.Uint32(buf[rel*4:])
}

// UsedExtents implements fsmap.FS: the reserved region, every FAT copy, the
// FAT12/16 root directory, and each cluster whose FAT entry is non-zero
// (allocated, end of chain or bad).
func (f *FS) UsedExtents(ctx context.Context) ([]fsmap.Extent, error) {
	g := f.g
	runs, _, err := f.usedRuns(ctx)
	if err != nil {
		return nil, fmt.Errorf("scan FAT: %w", err)
	}
	ext := make([]fsmap.Extent, 0, len(runs)+1)
	ext = append(ext, fsmap.Extent{Off: 0, Len: g.dataSec * g.bps})
	for _, r := range runs {
		ext = append(ext, fsmap.Extent{Off: g.clusterOff(r.first), Len: r.n * g.clusterBytes()})
	}
	ext = fsmap.Normalize(ext, g.totSec*g.bps)
	f.mu.Lock()
	f.info.Used = fsmap.Total(ext)
	f.mu.Unlock()
	return ext, nil
}
