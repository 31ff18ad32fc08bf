// Package ntfs detects NTFS volumes, reads their identity and state (label,
// serial, dirty flag, hibernation) and builds their used-block map from the
// cluster bitmap ($Bitmap, MFT record 6). Grow hands growth to ntfsresize.
//
// The parser works from the on-disk format only: boot sector, MFT records
// (with their update sequence fixups), attribute lists, data runs and the
// root directory index. Every size and position read from the disk is
// checked against the volume before it is used, so a hostile volume gives an
// error, never a panic, a huge allocation or an endless loop.
package ntfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

// Well-known MFT record numbers.
const (
	recMFT     = 0
	recMFTMirr = 1
	recVolume  = 3
	recRoot    = 5
	recBitmap  = 6
)

// volDirty is VOLUME_IS_DIRTY in $VOLUME_INFORMATION's flags.
const volDirty = 0x0001

// Warning texts, shared with tests so they can look for them.
const (
	warnDirty = "NTFS volume is marked dirty (Windows was not shut down cleanly or chkdsk is scheduled): " +
		"it is copied exactly as it is, Windows's pending state included; resizing it is unsafe until chkdsk has run in Windows"
	warnHibernated = "Windows is hibernated or was shut down with Fast Startup on this NTFS volume: " +
		"its cached state is copied exactly as it is and Windows will resume from it; resizing it is unsafe " +
		"(boot Windows and shut it down fully, with Fast Startup off, first)"
	warnHiberUnknown = "the NTFS root directory is too large to check for a hibernated Windows: " +
		"the volume is copied exactly as it is, but it is not resized"
	warnNoBackupBoot = "the NTFS backup boot sector lies past the end of the partition"
)

// boot is what the boot sector says about the volume's geometry.
type boot struct {
	bytesPerSector int64
	clusterSize    int64
	totalSectors   int64
	mftLCN         int64
	mirrLCN        int64
	recordSize     int64
	indexSize      int64
	serial         uint64
}

// volume is an NTFS volume being read: its geometry and the runlist of $MFT.
type volume struct {
	r         io.ReaderAt
	size      int64 // bytes the caller says r holds
	b         boot
	nClusters int64
	mftRuns   []run
	mftSize   int64 // bytes of $MFT's data
}

// FS is a detected NTFS volume.
type FS struct {
	v     *volume
	info  fsmap.Info
	hiber hiberState
	dirty bool

	mu   sync.Mutex
	used int64
}

// Info implements fsmap.FS.
func (f *FS) Info() fsmap.Info {
	f.mu.Lock()
	defer f.mu.Unlock()
	info := f.info
	info.Warnings = append([]string(nil), f.info.Warnings...)
	info.Used = f.used
	return info
}

// Detect is a fsmap.Detector for NTFS. A boot sector that is not NTFS gives
// an error wrapping fsmap.ErrNotDetected; an NTFS boot sector whose volume
// cannot be read consistently gives any other error.
func Detect(ctx context.Context, r io.ReaderAt, size int64) (fsmap.FS, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("detect ntfs: %w", err)
	}
	if size < 512 {
		return nil, fmt.Errorf("ntfs: volume of %d bytes too small: %w", size, fsmap.ErrNotDetected)
	}
	var sec [512]byte
	if err := fsmap.ReadFull(r, sec[:], 0, "ntfs boot sector"); err != nil {
		return nil, fmt.Errorf("detect ntfs: %w", err)
	}
	if !bytes.Equal(sec[3:11], []byte("NTFS    ")) || sec[510] != 0x55 || sec[511] != 0xaa {
		return nil, fmt.Errorf("ntfs: no NTFS boot sector: %w", fsmap.ErrNotDetected)
	}
	b, err := parseBoot(sec[:])
	if err != nil {
		return nil, fmt.Errorf("parse ntfs boot sector: %w", err)
	}
	v := &volume{r: r, size: size, b: b, nClusters: b.totalSectors * b.bytesPerSector / b.clusterSize}
	if b.totalSectors*b.bytesPerSector > size {
		return nil, fmt.Errorf("ntfs volume spans %d bytes but its partition holds %d: truncated", b.totalSectors*b.bytesPerSector, size)
	}
	if b.mftLCN >= v.nClusters || b.mirrLCN >= v.nClusters {
		return nil, fmt.Errorf("ntfs $MFT at cluster %d or $MFTMirr at cluster %d outside the %d-cluster volume", b.mftLCN, b.mirrLCN, v.nClusters)
	}
	if err := v.loadMFT(ctx); err != nil {
		return nil, err
	}
	info := fsmap.Info{
		Type:      "ntfs",
		UUID:      fmt.Sprintf("%016X", b.serial),
		BlockSize: b.clusterSize,
		Size:      (b.totalSectors + 1) * b.bytesPerSector,
	}
	if info.Size > size {
		// Windows keeps the backup boot sector in the sector after the
		// volume; a partition made exactly as large as the volume lacks it.
		info.Size = b.totalSectors * b.bytesPerSector
		info.Warnings = append(info.Warnings, warnNoBackupBoot)
	}
	label, flags, err := v.volumeState(ctx)
	if err != nil {
		return nil, err
	}
	info.Label = label
	if flags&volDirty != 0 {
		info.Warnings = append(info.Warnings, warnDirty)
	}
	hib, err := v.hibernated(ctx)
	if err != nil {
		return nil, err
	}
	switch hib {
	case hiberYes:
		info.Warnings = append(info.Warnings, warnHibernated)
		info.NoGrow = "Windows is hibernated (or shut down with Fast Startup) on it"
	case hiberUnknown:
		info.Warnings = append(info.Warnings, warnHiberUnknown)
		info.NoGrow = "whether Windows is hibernated on it cannot be checked"
	}
	return &FS{v: v, info: info, hiber: hib, dirty: flags&volDirty != 0}, nil
}

// parseBoot reads and checks the BIOS parameter block of an NTFS boot
// sector.
func parseBoot(sec []byte) (boot, error) {
	var b boot
	bps := int64(binary.LittleEndian.Uint16(sec[0x0b:]))
	if bps < 256 || bps > 4096 || bps&(bps-1) != 0 {
		return b, fmt.Errorf("bytes per sector %d: not a power of two in [256, 4096]", bps)
	}
	b.bytesPerSector = bps
	spc := int64(sec[0x0d])
	switch {
	case spc == 0:
		return b, fmt.Errorf("sectors per cluster is 0")
	case spc <= 0x80:
		if spc&(spc-1) != 0 {
			return b, fmt.Errorf("sectors per cluster %d: not a power of two", spc)
		}
	default:
		// Clusters larger than 128 sectors are written as a negative
		// power of two: 0xF4 means 2^12 sectors per cluster.
		shift := 256 - spc
		if shift > 20 {
			return b, fmt.Errorf("sectors per cluster encoding %#x out of range", sec[0x0d])
		}
		spc = 1 << shift
	}
	b.clusterSize = spc * bps
	if b.clusterSize > 2<<20 {
		return b, fmt.Errorf("cluster size %d bytes exceeds the NTFS maximum of 2 MiB", b.clusterSize)
	}
	ts := binary.LittleEndian.Uint64(sec[0x28:])
	if ts == 0 || ts > 1<<48 {
		return b, fmt.Errorf("total sectors %d out of range", ts)
	}
	b.totalSectors = int64(ts)
	if b.totalSectors*bps < b.clusterSize {
		return b, fmt.Errorf("volume of %d sectors smaller than one cluster", ts)
	}
	mft := binary.LittleEndian.Uint64(sec[0x30:])
	mirr := binary.LittleEndian.Uint64(sec[0x38:])
	if mft > 1<<48 || mirr > 1<<48 {
		return b, fmt.Errorf("$MFT cluster %d or $MFTMirr cluster %d out of range", mft, mirr)
	}
	b.mftLCN, b.mirrLCN = int64(mft), int64(mirr)
	var err error
	if b.recordSize, err = recordSize(int8(sec[0x40]), b.clusterSize); err != nil {
		return b, fmt.Errorf("MFT record size: %w", err)
	}
	if b.recordSize < bps {
		return b, fmt.Errorf("MFT record size %d smaller than a %d-byte sector", b.recordSize, bps)
	}
	if b.indexSize, err = recordSize(int8(sec[0x44]), b.clusterSize); err != nil {
		return b, fmt.Errorf("index record size: %w", err)
	}
	b.serial = binary.LittleEndian.Uint64(sec[0x48:])
	return b, nil
}

// recordSize decodes the size of an MFT or index record: a positive value
// counts clusters, a negative one is -log2 of the size in bytes (used when
// records are smaller than a cluster).
func recordSize(v int8, clusterSize int64) (int64, error) {
	var n int64
	switch {
	case v > 0:
		n = int64(v) * clusterSize
	case v < 0 && v >= -31:
		n = 1 << uint(-int(v))
	default:
		return 0, fmt.Errorf("encoding %d invalid", v)
	}
	if n < 512 || n > 64<<10 || n&(n-1) != 0 {
		return 0, fmt.Errorf("%d bytes: not a power of two in [512, 64 KiB]", n)
	}
	return n, nil
}

// loadMFT finds $MFT's data runs, starting from record 0 at the cluster the
// boot sector names and following its attribute list if it has one.
func (v *volume) loadMFT(ctx context.Context) error {
	rec := make([]byte, v.b.recordSize)
	off := v.b.mftLCN * v.b.clusterSize
	if off+v.b.recordSize > v.nClusters*v.b.clusterSize {
		return fmt.Errorf("ntfs $MFT record 0 at byte %d past the volume end", off)
	}
	if err := fsmap.ReadFull(v.r, rec, off, "ntfs $MFT record 0"); err != nil {
		return err
	}
	if err := v.fixup(rec, "FILE"); err != nil {
		return fmt.Errorf("ntfs MFT record 0: %w", err)
	}
	attrs, err := v.parseAttrs(rec)
	if err != nil {
		return fmt.Errorf("ntfs MFT record 0: %w", err)
	}
	// Bootstrap with the first $DATA segment: it holds at least the
	// records that describe the rest of $MFT.
	var first *attr
	for i := range attrs {
		if attrs[i].typ == attrData && attrs[i].name == "" && attrs[i].nonResident && attrs[i].lowVCN == 0 {
			first = &attrs[i]
			break
		}
	}
	if first == nil {
		return fmt.Errorf("ntfs MFT record 0: no non-resident $DATA attribute")
	}
	v.mftRuns = first.runs
	// With an attribute list, this segment maps only part of the data.
	v.mftSize = min(first.dataSize, runsLen(first.runs)*v.b.clusterSize)
	if v.mftSize < recBitmap*v.b.recordSize+v.b.recordSize {
		return fmt.Errorf("ntfs $MFT of %d bytes too small to hold the system files", v.mftSize)
	}
	full, err := v.dataAttr(ctx, recMFT, attrData, "")
	if err != nil {
		return fmt.Errorf("ntfs $MFT: %w", err)
	}
	v.mftRuns = full.runs
	v.mftSize = full.dataSize
	return nil
}

// checkDataSize verifies that a non-resident attribute's sizes agree with
// its runs.
func (v *volume) checkDataSize(a *attr, what string) error {
	if a.dataSize < 0 || a.initSize < 0 || a.allocSize < 0 || a.dataSize > a.allocSize || a.initSize > a.dataSize {
		return fmt.Errorf("ntfs %s: inconsistent sizes (allocated %d, data %d, initialised %d)", what, a.allocSize, a.dataSize, a.initSize)
	}
	if a.lowVCN == 0 && a.dataSize > runsLen(a.runs)*v.b.clusterSize {
		return fmt.Errorf("ntfs %s: %d bytes of data but runs map only %d", what, a.dataSize, runsLen(a.runs)*v.b.clusterSize)
	}
	return nil
}

// volumeState reads the label and flags of $Volume (record 3).
func (v *volume) volumeState(ctx context.Context) (label string, flags uint16, err error) {
	rec, err := v.record(ctx, recVolume)
	if err != nil {
		return "", 0, err
	}
	attrs, err := v.parseAttrs(rec)
	if err != nil {
		return "", 0, fmt.Errorf("ntfs $Volume record: %w", err)
	}
	seenInfo := false
	for _, a := range attrs {
		switch {
		case a.typ == attrVolumeName && !a.nonResident:
			label = utf16String(a.value)
		case a.typ == attrVolumeInfo && !a.nonResident:
			if len(a.value) < 12 {
				return "", 0, fmt.Errorf("ntfs $VOLUME_INFORMATION of %d bytes too short", len(a.value))
			}
			flags = binary.LittleEndian.Uint16(a.value[10:])
			seenInfo = true
		}
	}
	if !seenInfo {
		return "", 0, fmt.Errorf("ntfs $Volume record has no $VOLUME_INFORMATION")
	}
	return label, flags, nil
}

// UsedExtents implements fsmap.FS: the clusters set in $Bitmap, the boot
// sector and its backup, and the data of $MFT and $MFTMirr.
func (f *FS) UsedExtents(ctx context.Context) ([]fsmap.Extent, error) {
	v := f.v
	bm, err := v.dataAttr(ctx, recBitmap, attrData, "")
	if err != nil {
		return nil, fmt.Errorf("ntfs $Bitmap: %w", err)
	}
	need := (v.nClusters + 7) / 8
	if bm.dataSize < need {
		return nil, fmt.Errorf("ntfs $Bitmap holds %d bytes, %d clusters need %d", bm.dataSize, v.nClusters, need)
	}
	var ext []fsmap.Extent
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	for done := int64(0); done < need; done += chunk {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read ntfs $Bitmap: %w", err)
		}
		n := min(int64(chunk), need-done)
		p := buf[:n]
		if done+n > bm.initSize {
			// Past the initialised size the bitmap reads as zeroes.
			clear(p)
		}
		if m := min(n, bm.initSize-done); m > 0 {
			if err := v.readRuns(bm.runs, p[:m], done, "$Bitmap"); err != nil {
				return nil, err
			}
		}
		ext = append(ext, fsmap.BitmapExtents(p, min(n*8, v.nClusters-done*8), done*8, v.b.clusterSize, 0)...)
		ext = fsmap.Normalize(ext, 0)
	}
	bps := v.b.bytesPerSector
	ext = append(ext,
		fsmap.Extent{Off: 0, Len: max(8192, v.b.clusterSize)},
		fsmap.Extent{Off: v.b.totalSectors * bps, Len: bps})
	for _, rec := range []int64{recMFT, recMFTMirr} {
		a, err := v.dataAttr(ctx, rec, attrData, "")
		if err != nil {
			return nil, fmt.Errorf("ntfs MFT record %d: %w", rec, err)
		}
		ext = append(ext, runExtents(a.runs, v.b.clusterSize)...)
	}
	ext = fsmap.Normalize(ext, f.info.Size)
	f.mu.Lock()
	f.used = fsmap.Total(ext)
	f.mu.Unlock()
	return ext, nil
}

// runExtents returns the byte extents the allocated runs cover.
func runExtents(runs []run, clusterSize int64) []fsmap.Extent {
	out := make([]fsmap.Extent, 0, len(runs))
	for _, r := range runs {
		if r.lcn >= 0 {
			out = append(out, fsmap.Extent{Off: r.lcn * clusterSize, Len: r.length * clusterSize})
		}
	}
	return out
}
