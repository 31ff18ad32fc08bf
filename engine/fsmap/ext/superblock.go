package ext

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"

	"github.com/lifeboat/lifeboat/engine/fsmap"
)

// The superblock always sits 1024 bytes into the volume, whatever the block
// size, and is 1024 bytes long.
const (
	superOffset = 1024
	superSize   = 1024
	superMagic  = 0xEF53
)

// Feature flags, from the ext4 on-disk format documentation.
const (
	compatHasJournal   = 0x4
	compatSparseSuper2 = 0x200

	incompatCompression = 0x1
	incompatFiletype    = 0x2
	incompatRecover     = 0x4
	incompatJournalDev  = 0x8
	incompatMetaBG      = 0x10
	incompatExtents     = 0x40
	incompat64Bit       = 0x80
	incompatMMP         = 0x100
	incompatFlexBG      = 0x200
	incompatEAInode     = 0x400
	incompatDirData     = 0x1000
	incompatCsumSeed    = 0x2000
	incompatLargeDir    = 0x4000
	incompatInlineData  = 0x8000
	incompatEncrypt     = 0x10000
	incompatCasefold    = 0x20000

	// incompatKnown are the incompatible features whose effect on block
	// placement this package understands. Any other bit may move data
	// outside what the bitmaps describe, so it is refused.
	incompatKnown = incompatFiletype | incompatRecover | incompatJournalDev | incompatMetaBG |
		incompatExtents | incompat64Bit | incompatMMP | incompatFlexBG | incompatEAInode |
		incompatDirData | incompatCsumSeed | incompatLargeDir | incompatInlineData |
		incompatEncrypt | incompatCasefold

	roCompatSparseSuper   = 0x1
	roCompatLargeFile     = 0x2
	roCompatBtreeDir      = 0x4
	roCompatGdtCsum       = 0x10
	roCompatBigalloc      = 0x200
	roCompatMetadataCsum  = 0x400
	roCompatOrphanPresent = 0x10000
)

// Superblock state bits.
const (
	stateValid  = 0x1
	stateErrors = 0x2
)

// Group descriptor flag: the block bitmap was never written and must be
// computed from the layout.
const bgBlockUninit = 0x2

// superblock holds the fields of the ext2/3/4 superblock this package uses.
type superblock struct {
	inodesCount    uint32
	blocksCount    uint64
	freeBlocks     uint64
	firstDataBlock uint32
	logBlockSize   uint32
	logClusterSize uint32
	blocksPerGroup uint32
	clustersPerGrp uint32
	inodesPerGroup uint32
	magic          uint16
	state          uint16
	revLevel       uint32
	inodeSize      uint16
	compat         uint32
	incompat       uint32
	roCompat       uint32
	uuid           [16]byte
	label          [16]byte
	reservedGDT    uint16
	journalInum    uint32
	lastOrphan     uint32
	jnlBackupType  uint8
	descSize       uint16
	firstMetaBG    uint32
	jnlBlocks      [17]uint32
	mmpBlock       uint64
	backupBGs      [2]uint32
	checksumType   uint8
	checksum       uint32
	csumOK         bool
	// csumSeed seeds the metadata_csum checksums of the descriptors.
	csumSeed uint32
}

// parseSuperblock decodes the 1024 bytes of a superblock. It checks nothing
// but the magic: geometry checks need the volume size.
func parseSuperblock(b []byte) (*superblock, error) {
	if len(b) < superSize {
		return nil, fmt.Errorf("parse ext superblock: %d bytes, want %d", len(b), superSize)
	}
	le := binary.LittleEndian
	s := &superblock{
		inodesCount:    le.Uint32(b[0x00:]),
		blocksCount:    uint64(le.Uint32(b[0x04:])),
		freeBlocks:     uint64(le.Uint32(b[0x0C:])),
		firstDataBlock: le.Uint32(b[0x14:]),
		logBlockSize:   le.Uint32(b[0x18:]),
		logClusterSize: le.Uint32(b[0x1C:]),
		blocksPerGroup: le.Uint32(b[0x20:]),
		clustersPerGrp: le.Uint32(b[0x24:]),
		inodesPerGroup: le.Uint32(b[0x28:]),
		magic:          le.Uint16(b[0x38:]),
		state:          le.Uint16(b[0x3A:]),
		revLevel:       le.Uint32(b[0x4C:]),
		inodeSize:      le.Uint16(b[0x58:]),
		compat:         le.Uint32(b[0x5C:]),
		incompat:       le.Uint32(b[0x60:]),
		roCompat:       le.Uint32(b[0x64:]),
		reservedGDT:    le.Uint16(b[0xCE:]),
		journalInum:    le.Uint32(b[0xE0:]),
		lastOrphan:     le.Uint32(b[0xE8:]),
		jnlBackupType:  b[0xFD],
		descSize:       le.Uint16(b[0xFE:]),
		firstMetaBG:    le.Uint32(b[0x104:]),
		mmpBlock:       le.Uint64(b[0x168:]),
		checksumType:   b[0x175],
		checksum:       le.Uint32(b[0x3FC:]),
	}
	copy(s.uuid[:], b[0x68:0x78])
	copy(s.label[:], b[0x78:0x88])
	for i := range s.jnlBlocks {
		s.jnlBlocks[i] = le.Uint32(b[0x10C+4*i:])
	}
	s.backupBGs[0] = le.Uint32(b[0x24C:])
	s.backupBGs[1] = le.Uint32(b[0x250:])
	if s.incompat&incompat64Bit != 0 {
		s.blocksCount |= uint64(le.Uint32(b[0x150:])) << 32
		s.freeBlocks |= uint64(le.Uint32(b[0x158:])) << 32
	} else {
		// Without 64bit the descriptor size field is meaningless.
		s.descSize = 32
	}
	s.csumOK = crc32c(^uint32(0), b[:0x3FC]) == s.checksum
	s.csumSeed = crc32c(^uint32(0), s.uuid[:])
	if s.incompat&incompatCsumSeed != 0 {
		s.csumSeed = le.Uint32(b[0x270:])
	}
	return s, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c is the kernel's crc32c: no inversion on entry or exit, which Go's
// crc32 package applies both.
func crc32c(seed uint32, p []byte) uint32 {
	return ^crc32.Update(^seed, castagnoli, p)
}

// crc16 is the kernel's crc16 (polynomial 0x8005, bit-reflected), used by
// the older gdt_csum descriptor checksums.
func crc16(crc uint16, p []byte) uint16 {
	for _, b := range p {
		crc ^= uint16(b)
		for i := 0; i < 8; i++ {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// descChecksum computes the checksum of the raw descriptor d of group
// number group, as stored at offset 0x1E; ok is false when the file system
// keeps no descriptor checksums.
func (s *superblock) descChecksum(group uint32, d []byte) (sum uint16, ok bool) {
	var num [4]byte
	binary.LittleEndian.PutUint32(num[:], group)
	const at = 0x1E
	switch {
	case s.roCompat&roCompatMetadataCsum != 0:
		c := crc32c(s.csumSeed, num[:])
		c = crc32c(c, d[:at])
		c = crc32c(c, []byte{0, 0})
		c = crc32c(c, d[at+2:])
		return uint16(c), true
	case s.roCompat&roCompatGdtCsum != 0:
		c := crc16(0xFFFF, s.uuid[:])
		c = crc16(c, num[:])
		c = crc16(c, d[:at])
		c = crc16(c, d[at+2:])
		return c, true
	}
	return 0, false
}

// typeName names the file system as blkid does: ext4 once any feature that
// ext3 lacks is on, ext3 with a journal, ext2 otherwise.
func (s *superblock) typeName() string {
	const ext3Incompat = incompatFiletype | incompatRecover | incompatMetaBG
	const ext3RoCompat = roCompatSparseSuper | roCompatLargeFile | roCompatBtreeDir
	switch {
	case s.incompat&^ext3Incompat != 0 || s.roCompat&^ext3RoCompat != 0:
		return "ext4"
	case s.compat&compatHasJournal != 0:
		return "ext3"
	default:
		return "ext2"
	}
}

func (s *superblock) uuidString() string {
	u := s.uuid
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

func (s *superblock) labelString() string {
	l := s.label[:]
	if i := strings.IndexByte(string(l), 0); i >= 0 {
		l = l[:i]
	}
	return strings.ToValidUTF8(string(l), "\uFFFD")
}

// warnings lists the states a user must hear about before a copy.
func (s *superblock) warnings() []string {
	var w []string
	if s.incompat&incompatRecover != 0 {
		w = append(w, "ext journal needs recovery (not replayed): blocks allocated by unreplayed transactions may be missed; mount the file system once or run e2fsck before copying")
	}
	if s.state&stateErrors != 0 {
		w = append(w, "ext file system is marked as having errors: run e2fsck before copying")
	} else if s.state&stateValid == 0 {
		w = append(w, "ext file system is mounted or was not cleanly unmounted")
	}
	if s.lastOrphan != 0 || s.roCompat&roCompatOrphanPresent != 0 {
		w = append(w, "ext file system has orphan inodes awaiting deletion (not cleanly unmounted)")
	}
	if s.roCompat&roCompatMetadataCsum != 0 && s.checksumType == 1 && !s.csumOK {
		w = append(w, "ext superblock checksum mismatch: the superblock may be damaged")
	}
	return w
}

// geometry is the layout derived from a superblock and checked against the
// volume size, so that every later loop and allocation is bounded by it.
type geometry struct {
	bs           int64 // block size in bytes
	ratio        int64 // blocks per cluster (1 without bigalloc)
	firstData    int64 // first data block: 1 for 1 KiB blocks, else 0
	blocks       int64 // blocks in the file system
	bpg          int64 // blocks per group
	cpg          int64 // clusters per group: bits used in each block bitmap
	groups       int64
	descSize     int64
	descPerBlock int64
	gdtBlocks    int64 // blocks needed to hold every descriptor
	gdtStart     int64 // block of the first descriptor block in group 0
	itableBlocks int64 // inode table length of each group
	metaBG       bool
	csum         bool // group descriptor checksums: the uninit flags are honoured
}

// errNotExt wraps fsmap.ErrNotDetected with the reason.
func errNotExt(format string, a ...any) error {
	return fmt.Errorf("detect ext: %s: %w", fmt.Sprintf(format, a...), fsmap.ErrNotDetected)
}

// newGeometry checks the superblock's numbers against each other and the
// volume size. Values no mkfs writes give ErrNotDetected (stray magic);
// a file system larger than its volume gives a plain error (truncated).
func newGeometry(s *superblock, size int64) (*geometry, error) {
	if s.magic != superMagic {
		return nil, errNotExt("no ext superblock magic")
	}
	if s.logBlockSize > 6 {
		return nil, errNotExt("block size 2^(10+%d) out of range", s.logBlockSize)
	}
	g := &geometry{bs: 1024 << s.logBlockSize, ratio: 1}
	bigalloc := s.roCompat&roCompatBigalloc != 0
	if bigalloc {
		if s.logClusterSize < s.logBlockSize || s.logClusterSize-s.logBlockSize > 16 {
			return nil, errNotExt("cluster size 2^(10+%d) with block size %d", s.logClusterSize, g.bs)
		}
		g.ratio = 1 << (s.logClusterSize - s.logBlockSize)
	}
	g.cpg = int64(s.blocksPerGroup)
	if bigalloc {
		g.cpg = int64(s.clustersPerGrp)
	}
	if g.cpg < 8 || g.cpg > 8*g.bs || g.cpg%8 != 0 {
		return nil, errNotExt("%d clusters per group with block size %d", g.cpg, g.bs)
	}
	g.bpg = g.cpg * g.ratio
	if bigalloc && int64(s.blocksPerGroup) != g.bpg {
		return nil, errNotExt("bigalloc blocks per group %d, want %d", s.blocksPerGroup, g.bpg)
	}
	if s.inodesPerGroup == 0 || int64(s.inodesPerGroup) > 8*g.bs {
		return nil, errNotExt("%d inodes per group", s.inodesPerGroup)
	}
	inodeSize := int64(128)
	if s.revLevel > 0 {
		inodeSize = int64(s.inodeSize)
		if inodeSize < 128 || inodeSize > g.bs || inodeSize&(inodeSize-1) != 0 {
			return nil, errNotExt("inode size %d", inodeSize)
		}
	}
	g.firstData = int64(s.firstDataBlock)
	wantFirst := int64(0)
	if g.bs == 1024 && g.ratio == 1 {
		wantFirst = 1
	}
	if g.firstData != wantFirst {
		return nil, errNotExt("first data block %d with block size %d", g.firstData, g.bs)
	}
	if s.blocksCount == 0 || s.blocksCount > 1<<48 || int64(s.blocksCount) <= g.firstData+1 {
		return nil, errNotExt("block count %d", s.blocksCount)
	}
	g.blocks = int64(s.blocksCount)
	if g.blocks > size/g.bs {
		return nil, fmt.Errorf("detect ext: file system of %d bytes is larger than its %d-byte volume (truncated?)", g.blocks*g.bs, size)
	}
	g.groups = (g.blocks - g.firstData + g.bpg - 1) / g.bpg
	if int64(s.inodesCount) != g.groups*int64(s.inodesPerGroup) {
		return nil, errNotExt("inode count %d is not %d groups of %d", s.inodesCount, g.groups, s.inodesPerGroup)
	}
	g.descSize = 32
	if s.incompat&incompat64Bit != 0 {
		g.descSize = int64(s.descSize)
		if g.descSize < 64 || g.descSize > 1024 || g.descSize&(g.descSize-1) != 0 {
			return nil, errNotExt("group descriptor size %d", g.descSize)
		}
	}
	g.descPerBlock = g.bs / g.descSize
	g.gdtBlocks = (g.groups + g.descPerBlock - 1) / g.descPerBlock
	// The superblock is at byte 1024: block 1 with 1 KiB blocks, block 0
	// otherwise; the descriptors start in the next block.
	g.gdtStart = superOffset/g.bs + 1
	g.itableBlocks = (int64(s.inodesPerGroup)*inodeSize + g.bs - 1) / g.bs
	g.metaBG = s.incompat&incompatMetaBG != 0
	g.csum = s.roCompat&(roCompatGdtCsum|roCompatMetadataCsum) != 0
	if int64(s.reservedGDT) > g.bs/4 {
		return nil, errNotExt("%d reserved descriptor blocks", s.reservedGDT)
	}
	if g.metaBG && int64(s.firstMetaBG) > g.gdtBlocks {
		return nil, errNotExt("first meta_bg %d beyond %d descriptor blocks", s.firstMetaBG, g.gdtBlocks)
	}
	if g.gdtStart+g.oldDescBlocks(s)+int64(s.reservedGDT) > g.blocks {
		return nil, errNotExt("descriptor blocks run past the end of the file system")
	}
	return g, nil
}

// oldDescBlocks is the number of descriptor blocks that follow the
// superblock in every group holding a backup (all of them without meta_bg).
func (g *geometry) oldDescBlocks(s *superblock) int64 {
	if g.metaBG {
		return int64(s.firstMetaBG)
	}
	return g.gdtBlocks
}

// groupFirst is the first block of group i.
func (g *geometry) groupFirst(i int64) int64 { return g.firstData + i*g.bpg }

// hasSuper reports whether group i holds a superblock backup.
func (g *geometry) hasSuper(s *superblock, i int64) bool {
	if i == 0 {
		return true
	}
	if s.compat&compatSparseSuper2 != 0 {
		return i == int64(s.backupBGs[0]) || i == int64(s.backupBGs[1])
	}
	if i == 1 || s.roCompat&roCompatSparseSuper == 0 {
		return true
	}
	if i%2 == 0 {
		return false
	}
	return isPower(i, 3) || isPower(i, 5) || isPower(i, 7)
}

func isPower(n, base int64) bool {
	p := base
	for p < n {
		p *= base
	}
	return p == n
}

// descBlock returns the block holding descriptor block nr.
func (g *geometry) descBlock(s *superblock, nr int64) int64 {
	if !g.metaBG || nr < int64(s.firstMetaBG) {
		return g.gdtStart + nr
	}
	bg := nr * g.descPerBlock
	b := g.groupFirst(bg)
	if g.hasSuper(s, bg) {
		b++
	}
	// Group 0 starts at block 0 when 1 KiB blocks come with bigalloc, but
	// its superblock still fills block 1.
	if nr == 0 && g.bs == 1024 && g.firstData == 0 {
		b++
	}
	return b
}
