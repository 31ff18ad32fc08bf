package ntfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/engine/fsmap"
	"github.com/lifeboat/lifeboat/internal/testenv"
)

// checkExtents verifies the used-block map's shape and that it matches what
// ntfscluster counts as used: every cluster set in $Bitmap, plus the backup
// boot sector, which lies past the last whole cluster.
func checkExtents(t *testing.T, img string, fsys *FS) []fsmap.Extent {
	t.Helper()
	ext, err := fsys.UsedExtents(context.Background())
	if err != nil {
		t.Fatalf("UsedExtents: %v", err)
	}
	info := fsys.Info()
	for i, e := range ext {
		if e.Len <= 0 || e.Off < 0 || e.End() > info.Size || (i > 0 && e.Off <= ext[i-1].End()) {
			t.Fatalf("extent %d %+v out of order or range (size %d)", i, e, info.Size)
		}
	}
	if info.Used != fsmap.Total(ext) {
		t.Errorf("Info().Used = %d, extents total %d", info.Used, fsmap.Total(ext))
	}
	testenv.RequireTools(t, "ntfscluster")
	out := tool(t, "ntfscluster", "-f", "-i", img)
	field := func(name string) int64 {
		for _, line := range strings.Split(out, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == name {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					t.Fatalf("ntfscluster %s: %v", name, err)
				}
				return n
			}
		}
		t.Fatalf("ntfscluster -i: no %q in\n%s", name, out)
		return 0
	}
	wantUsed := field("bytes per volume") - field("bytes of free space") + fsys.v.b.bytesPerSector
	if got := fsmap.Total(ext); got != wantUsed {
		t.Errorf("used bytes = %d, ntfscluster says %d (in-bitmap) + backup boot sector = %d", got, wantUsed-fsys.v.b.bytesPerSector, wantUsed)
	}
	return ext
}

func TestDetectGeometries(t *testing.T) {
	testenv.RequireTools(t, "mkntfs", "blkid", "ntfsinfo", "ntfscluster")
	cases := []struct {
		name  string
		args  []string
		size  int64
		label string
	}{
		{"default", nil, 64 << 20, "Lifeboat Vol"},
		{"cluster512", []string{"-c", "512"}, 32 << 20, "small clusters"},
		{"cluster64k", []string{"-c", "65536"}, 64 << 20, "C64K"},
		// 128 KiB clusters need the negative sectors-per-cluster encoding.
		{"cluster128k", []string{"-c", "131072"}, 64 << 20, "C128K"},
		{"sector4096", []string{"-s", "4096"}, 64 << 20, "Sekt4K"},
		{"odd size", nil, 64<<20 + 7*512, "Ünïcødé 名前"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := makeNTFS(t, t.TempDir(), c.size, c.label, c.args...)
			fsys, err := detectFile(t, img)
			if err != nil {
				t.Fatalf("Detect: %v", err)
			}
			info := fsys.Info()
			b := blkid(t, img)
			if info.Type != b["TYPE"] || info.Label != b["LABEL"] || info.UUID != b["UUID"] {
				t.Errorf("type/label/UUID = %q %q %q, blkid says %q %q %q", info.Type, info.Label, info.UUID, b["TYPE"], b["LABEL"], b["UUID"])
			}
			if info.Label != c.label {
				t.Errorf("label %q, want %q", info.Label, c.label)
			}
			if cs := ntfsinfoField(t, img, "Cluster Size"); strconv.FormatInt(info.BlockSize, 10) != cs {
				t.Errorf("BlockSize %d, ntfsinfo says %s", info.BlockSize, cs)
			}
			if got := ntfsinfoField(t, img, "Volume Size in Clusters"); got != strconv.FormatInt(fsys.v.nClusters, 10) {
				t.Errorf("clusters %d, ntfsinfo says %s", fsys.v.nClusters, got)
			}
			// mkntfs leaves the last sector of the device for the backup
			// boot sector: Size covers the whole image (to the sector).
			if sec := fsys.v.b.bytesPerSector; info.Size != c.size/sec*sec {
				t.Errorf("Size %d, want %d", info.Size, c.size/sec*sec)
			}
			if len(info.Warnings) != 0 {
				t.Errorf("fresh volume has warnings %q", info.Warnings)
			}
			ext := checkExtents(t, img, fsys)
			last := ext[len(ext)-1]
			if last.End() != info.Size {
				t.Errorf("last extent %+v does not reach the backup boot sector ending at %d", last, info.Size)
			}
			t.Logf("cluster %d, %d extents, %d of %d bytes used", info.BlockSize, len(ext), fsys.Info().Used, info.Size)
		})
	}
}

// TestCloneUsedExtents is the functional check: a copy of only the used
// extents is a volume that ntfsfix accepts and whose every file, link and
// directory equals the original's.
func TestCloneUsedExtents(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "mkntfs", "ntfs-3g", "ntfsfix", "ntfscluster")
	dir := t.TempDir()
	img := makeNTFS(t, dir, 64<<20, "clone me")
	mnt, unmount := mount(t, img, false)
	fill(t, mnt, 40)
	unmount()

	fsys, err := detectFile(t, img)
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	ext := checkExtents(t, img, fsys)
	if a, _ := fileRuns(t, fsys, "big0.bin"); len(a.runs) < 2 {
		t.Errorf("big0.bin has %d data runs: the fill did not fragment it", len(a.runs))
	} else {
		t.Logf("big0.bin: %d data runs", len(a.runs))
	}
	sparse := false
	if a, _ := fileRuns(t, fsys, "sparse.bin"); a.nonResident {
		for _, r := range a.runs {
			sparse = sparse || r.lcn < 0
		}
	}
	if !sparse {
		t.Error("sparse.bin has no sparse run: the fill did not make it sparse")
	}
	info := fsys.Info()
	if info.Used >= info.Size/2 {
		t.Errorf("used %d of %d bytes: the map should leave most of this volume out", info.Used, info.Size)
	}
	t.Logf("%d extents, %d of %d bytes used", len(ext), info.Used, info.Size)

	cp := filepath.Join(dir, "copy.img")
	copyExtents(t, img, cp, ext)
	if out, err := toolErr("ntfsfix", "-n", cp); err != nil {
		t.Fatalf("ntfsfix -n on the copy: %v\n%s", err, out)
	}
	origMnt, _ := mount(t, img, true)
	copyMnt, _ := mount(t, cp, true)
	want := treeSum(t, origMnt)
	if len(want) < 130 {
		t.Fatalf("original tree has only %d entries", len(want))
	}
	compareTrees(t, want, treeSum(t, copyMnt))
	t.Logf("%d entries compared equal", len(want))

	// Control: the same check must notice a copy that misses clusters.
	// Leave out the last cluster of every extent.
	var short []fsmap.Extent
	for _, e := range ext {
		if e.Len > info.BlockSize {
			e.Len -= info.BlockSize
		}
		short = append(short, e)
	}
	bad := filepath.Join(dir, "short.img")
	copyExtents(t, img, bad, short)
	if _, err := toolErr("ntfsfix", "-n", bad); err != nil {
		t.Logf("control: ntfsfix -n rejects the short copy: %v", err)
		return
	}
	badMnt, _, err := mountErr(t, bad, true)
	if err != nil {
		t.Logf("control: the short copy does not mount: %v", err)
		return
	}
	got, err := treeSumErr(badMnt)
	if err != nil {
		t.Logf("control: reading the short copy fails: %v", err)
		return
	}
	diffs := diffTrees(want, got)
	if len(diffs) == 0 {
		t.Fatal("control: a copy missing one cluster per extent compared equal: the check is blind")
	}
	t.Logf("control: %d entries differ in the short copy", len(diffs))
}

// setVolumeFlags rewrites $VOLUME_INFORMATION's flags in $MFT and $MFTMirr.
func setVolumeFlags(t *testing.T, img string, flags uint16) {
	patchRecord(t, img, recVolume, func(rec []byte) {
		a := findAttr(t, rec, attrVolumeInfo)
		voff := int(binary.LittleEndian.Uint16(rec[a+0x14:]))
		binary.LittleEndian.PutUint16(rec[a+voff+10:], flags)
	})
}

func TestDirtyFlag(t *testing.T) {
	testenv.RequireTools(t, "mkntfs", "ntfsinfo", "ntfsfix")
	img := makeNTFS(t, t.TempDir(), 16<<20, "dirty")
	setVolumeFlags(t, img, volDirty)
	if got := ntfsinfoField(t, img, "Volume Flags"); !strings.Contains(got, "0x0001") {
		t.Fatalf("ntfsinfo shows flags %q after setting the dirty bit", got)
	}
	fsys, err := detectFile(t, img)
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	if w := fsys.Info().Warnings; len(w) != 1 || w[0] != warnDirty {
		t.Fatalf("warnings %q, want the dirty warning", w)
	}
	// A dirty volume is still mapped.
	checkExtents(t, img, fsys)

	tool(t, "ntfsfix", "-d", img)
	fsys, err = detectFile(t, img)
	if err != nil {
		t.Fatalf("Detect after ntfsfix -d: %v", err)
	}
	if w := fsys.Info().Warnings; len(w) != 0 {
		t.Fatalf("warnings %q after ntfsfix -d cleared the dirty flag", w)
	}
}

func TestHibernation(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "mkntfs", "ntfs-3g", "ntfsresize")
	base := makeNTFS(t, t.TempDir(), 32<<20, "hib")
	mnt, unmount := mount(t, base, false)
	// Enough root entries that the root index spills into index blocks
	// and hiberfil.sys is not in $INDEX_ROOT.
	for i := 0; i < 300; i++ {
		writeFile(t, filepath.Join(mnt, fmt.Sprintf("Root entry with a long name %04d.txt", i)), []byte("x"))
	}
	unmount()
	if fsys, err := detectFile(t, base); err != nil {
		t.Fatalf("Detect: %v", err)
	} else if _, err := fsys.v.dataAttr(context.Background(), recRoot, attrIndexAlloc, "$I30"); err != nil {
		t.Fatalf("root index has no index blocks, the test would not exercise them: %v", err)
	}
	big := func(sig string) []byte {
		b := bytes.Repeat([]byte{0xa5}, 64<<10)
		copy(b, sig)
		return b
	}
	cases := []struct {
		name, file string
		data       []byte
		want       bool
	}{
		{"hibr non-resident", "hiberfil.sys", big("hibr"), true},
		{"HIBR resident", "hiberfil.sys", []byte("HIBR and a short header"), true},
		{"wake upper-case name", "HIBERFIL.SYS", big("wake"), true},
		{"zeroed", "hiberfil.sys", make([]byte, 64<<10), false},
		{"elsewhere", "hiberfil.sys.bak", big("hibr"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "hib.img")
			copyFile(t, base, img)
			mnt, unmount := mount(t, img, false)
			writeFile(t, filepath.Join(mnt, c.file), c.data)
			unmount()
			fsys, err := detectFile(t, img)
			if err != nil {
				t.Fatalf("Detect: %v", err)
			}
			w := fsys.Info().Warnings
			if got := len(w) == 1 && w[0] == warnHibernated; got != c.want || (!c.want && len(w) != 0) {
				t.Fatalf("warnings %q, want hibernated=%v", w, c.want)
			}
			checkExtents(t, img, fsys)
			if !c.want {
				return
			}
			if err := os.Truncate(img, 64<<20); err != nil {
				t.Fatal(err)
			}
			before, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			err = Grow(context.Background(), openVolume(t, img), 64<<20)
			if err == nil || !strings.Contains(err.Error(), "hibernated") {
				t.Fatalf("Grow on a hibernated volume: %v, want a refusal naming hibernation", err)
			}
			after, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Fatal("refused Grow changed the volume")
			}
		})
	}
}

func TestGrow(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "mkntfs", "ntfs-3g", "ntfsresize", "ntfsfix", "ntfsinfo", "ntfscluster")
	dir := t.TempDir()
	orig := makeNTFS(t, dir, 64<<20, "grow me")
	mnt, unmount := mount(t, orig, false)
	fill(t, mnt, 15)
	unmount()
	img := filepath.Join(dir, "grown.img")
	copyFile(t, orig, img)
	const newSize = 256 << 20
	if err := os.Truncate(img, newSize); err != nil {
		t.Fatal(err)
	}
	vol := openVolume(t, img)
	if err := Grow(context.Background(), vol, newSize+512); err == nil {
		t.Fatal("Grow past the end of the volume succeeded")
	}
	if err := Grow(context.Background(), vol, 32<<20); err == nil {
		t.Fatal("Grow to a smaller size succeeded")
	}
	if err := Grow(context.Background(), vol, newSize); err != nil {
		t.Fatalf("Grow: %v", err)
	}
	if out, err := toolErr("ntfsfix", "-n", img); err != nil {
		t.Fatalf("ntfsfix -n after Grow: %v\n%s", err, out)
	}
	fsys, err := detectFile(t, img)
	if err != nil {
		t.Fatalf("Detect after Grow: %v", err)
	}
	info := fsys.Info()
	if info.Size > newSize || info.Size <= newSize-info.BlockSize-512 {
		t.Errorf("grown Size %d, want within a cluster of %d", info.Size, newSize)
	}
	if got, want := ntfsinfoField(t, img, "Volume Size in Clusters"), strconv.FormatInt(fsys.v.nClusters, 10); got != want {
		t.Errorf("ntfsinfo clusters %s, Detect says %s", got, want)
	}
	if fsys.v.nClusters < (newSize-info.BlockSize)/info.BlockSize {
		t.Errorf("grown to %d clusters only", fsys.v.nClusters)
	}
	// ntfsresize schedules chkdsk for Windows, which shows as dirty.
	if w := info.Warnings; len(w) != 1 || w[0] != warnDirty {
		t.Errorf("warnings after Grow %q, want the dirty warning", w)
	}
	checkExtents(t, img, fsys)
	origMnt, _ := mount(t, orig, true)
	grownMnt, _ := mount(t, img, true)
	want := treeSum(t, origMnt)
	compareTrees(t, want, treeSum(t, grownMnt))
	t.Logf("grown to %d bytes (%d clusters); %d entries compared equal", info.Size, fsys.v.nClusters, len(want))
}

// mutate returns a copy of img with edit applied to it.
func mutate(img []byte, edit func(b []byte)) []byte {
	b := append([]byte(nil), img...)
	edit(b)
	return b
}

func TestCorrupt(t *testing.T) {
	testenv.RequireTools(t, "mkntfs")
	path := makeNTFS(t, t.TempDir(), 8<<20, "corrupt")
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := Detect(context.Background(), bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatalf("Detect on the pristine image: %v", err)
	}
	v := fsys.(*FS).v
	recOff := func(n int64) int64 { return v.b.mftLCN*v.b.clusterSize + n*v.b.recordSize }
	// editRecord edits record n of $MFT with its fixups undone.
	editRecord := func(n int64, edit func(rec []byte)) func(b []byte) {
		return func(b []byte) {
			rec := b[recOff(n) : recOff(n)+v.b.recordSize]
			if err := v.fixup(rec, "FILE"); err != nil {
				t.Fatal(err)
			}
			edit(rec)
			protect(rec)
		}
	}
	runlist := func(rec []byte) []byte {
		a := findAttr(t, rec, attrData)
		return rec[a+int(binary.LittleEndian.Uint16(rec[a+0x20:])):]
	}
	cases := []struct {
		name        string
		edit        func(b []byte)
		size        int64 // 0: the image's size
		notDetected bool
		usedErr     bool // Detect succeeds, UsedExtents fails
	}{
		{name: "zeroes", edit: func(b []byte) { clear(b[:512]) }, notDetected: true},
		{name: "OEM", edit: func(b []byte) { copy(b[3:], "MSDOS5.0") }, notDetected: true},
		{name: "boot signature", edit: func(b []byte) { b[510] = 0 }, notDetected: true},
		{name: "tiny", size: 100, notDetected: true},
		{name: "bytes per sector", edit: func(b []byte) { binary.LittleEndian.PutUint16(b[0x0b:], 768) }},
		{name: "sectors per cluster", edit: func(b []byte) { b[0x0d] = 3 }},
		{name: "sectors per cluster exponent", edit: func(b []byte) { b[0x0d] = 0xd0 }},
		{name: "total sectors huge", edit: func(b []byte) { binary.LittleEndian.PutUint64(b[0x28:], 1<<60) }},
		{name: "truncated", size: 4 << 20},
		{name: "MFT cluster", edit: func(b []byte) { binary.LittleEndian.PutUint64(b[0x30:], 1<<40) }},
		{name: "MFT record size", edit: func(b []byte) { b[0x40] = 0 }},
		{name: "MFT record size huge", edit: func(b []byte) { b[0x40] = 0xe0 }},
		{name: "torn MFT record 0", edit: func(b []byte) { b[recOff(0)+510] ^= 0xff }},
		{name: "MFT record 0 magic", edit: func(b []byte) { copy(b[recOff(0):], "BAAD") }},
		{name: "Volume not in use", edit: editRecord(recVolume, func(rec []byte) { rec[0x16] &^= recordInUse })},
		{name: "attribute length zero", edit: editRecord(recVolume, func(rec []byte) {
			binary.LittleEndian.PutUint32(rec[findAttr(t, rec, attrVolumeInfo)+4:], 0)
		})},
		{name: "MFT runlist past the volume", edit: editRecord(recMFT, func(rec []byte) {
			copy(runlist(rec), []byte{0x31, 0x04, 0x00, 0x00, 0x70, 0x00}) // 4 clusters at 0x700000
		})},
		{name: "Bitmap runlist absurd length", usedErr: true, edit: editRecord(recBitmap, func(rec []byte) {
			copy(runlist(rec), []byte{0x14, 0xff, 0xff, 0xff, 0x7f, 0x01, 0x00}) // 2^31 clusters
		})},
		{name: "Bitmap runlist bad header", usedErr: true, edit: editRecord(recBitmap, func(rec []byte) {
			copy(runlist(rec), []byte{0x09, 0x01})
		})},
		{name: "Bitmap too small", usedErr: true, edit: editRecord(recBitmap, func(rec []byte) {
			a := findAttr(t, rec, attrData)
			binary.LittleEndian.PutUint64(rec[a+0x30:], 1)
			binary.LittleEndian.PutUint64(rec[a+0x38:], 1)
		})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := img
			if c.edit != nil {
				b = mutate(img, c.edit)
			}
			size := int64(len(b))
			if c.size != 0 {
				size = c.size
				b = b[:min(size, int64(len(b)))]
			}
			got, err := Detect(context.Background(), bytes.NewReader(b), size)
			switch {
			case c.notDetected:
				if !errors.Is(err, fsmap.ErrNotDetected) {
					t.Fatalf("Detect: %v, want ErrNotDetected", err)
				}
			case c.usedErr:
				if err != nil {
					t.Fatalf("Detect: %v", err)
				}
				if _, err := got.UsedExtents(context.Background()); err == nil {
					t.Fatal("UsedExtents succeeded on a corrupt $Bitmap")
				} else {
					t.Logf("UsedExtents: %v", err)
				}
			default:
				if err == nil || errors.Is(err, fsmap.ErrNotDetected) {
					t.Fatalf("Detect: %v, want a damage error", err)
				}
				t.Logf("Detect: %v", err)
			}
		})
	}
}

func TestSignedLE(t *testing.T) {
	for _, c := range []struct {
		b    []byte
		want int64
	}{
		{[]byte{0x7f}, 127},
		{[]byte{0x80}, -128},
		{[]byte{0xff, 0xff}, -1},
		{[]byte{0x00, 0x80, 0x00}, 0x8000},
		{[]byte{0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80}, -1<<63 + 1},
	} {
		if got := signedLE(c.b); got != c.want {
			t.Errorf("signedLE(% x) = %d, want %d", c.b, got, c.want)
		}
	}
}

func TestRecordSize(t *testing.T) {
	for _, c := range []struct {
		v       int8
		cluster int64
		want    int64
	}{
		{-10, 4096, 1024},
		{-12, 65536, 4096},
		{1, 1024, 1024},
		{2, 2048, 4096},
		{0, 4096, 0},
		{-9, 4096, 512},
		{-17, 4096, 0},
		{64, 4096, 0},
	} {
		got, err := recordSize(c.v, c.cluster)
		if (err != nil) != (c.want == 0) || got != c.want {
			t.Errorf("recordSize(%d, %d) = %d, %v; want %d", c.v, c.cluster, got, err, c.want)
		}
	}
}

// fileRuns returns the unnamed $DATA of a root directory file, read with
// this package's parser, and whether its record has an attribute list.
func fileRuns(t *testing.T, fsys *FS, name string) (*attr, bool) {
	t.Helper()
	ctx := context.Background()
	ref, found, _, err := fsys.v.findInRoot(ctx, name)
	if err != nil || !found {
		t.Fatalf("find %s in the root directory: found=%v, %v", name, found, err)
	}
	n := int64(ref & (1<<48 - 1))
	rec, err := fsys.v.record(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := fsys.v.parseAttrs(rec)
	if err != nil {
		t.Fatal(err)
	}
	hasList := false
	for _, a := range attrs {
		hasList = hasList || a.typ == attrList
	}
	a, err := fsys.v.dataAttr(ctx, n, attrData, "")
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return a, hasList
}

// TestAttributeList reads a file so fragmented that its runlist spills
// into extension records through an attribute list, and checks that the
// joined runs give back exactly the bytes written.
func TestAttributeList(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "mkntfs", "ntfs-3g")
	img := makeNTFS(t, t.TempDir(), 16<<20, "alist", "-c", "512")
	mnt, unmount := mount(t, img, false)
	freed := punchHoles(t, filepath.Join(mnt, "holes"), 1024)
	want := map[string][]byte{"a.bin": nil, "b.bin": nil}
	files := map[string]*os.File{}
	for name := range want {
		f, err := os.Create(filepath.Join(mnt, name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = f
	}
	// The holes are two clusters each: each file gets a run per hole.
	for i := int64(0); i < (freed-64<<10)/1024; i++ {
		for _, name := range []string{"a.bin", "b.bin"} {
			chunk := bytes.Repeat([]byte{byte(i), byte(i >> 8), name[0]}, 171)[:512]
			if _, err := files[name].Write(chunk); err != nil {
				t.Fatal(err)
			}
			want[name] = append(want[name], chunk...)
		}
	}
	for _, f := range files {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	unmount()
	fsys, err := detectFile(t, img)
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	for name, data := range want {
		a, hasList := fileRuns(t, fsys, name)
		if !hasList {
			t.Fatalf("%s has no attribute list: the test does not exercise one", name)
		}
		if a.dataSize != int64(len(data)) {
			t.Fatalf("%s: data size %d, wrote %d", name, a.dataSize, len(data))
		}
		got := make([]byte, a.dataSize)
		if err := fsys.v.readRuns(a.runs, got, 0, name); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%s read through its %d runs differs from what was written", name, len(a.runs))
		}
		t.Logf("%s: %d runs across an attribute list read back equal", name, len(a.runs))
	}
	checkExtents(t, img, fsys)
}

// TestNoBackupBootSector: a partition exactly as large as the volume has no
// room for the backup boot sector; the volume is still mapped, within the
// partition, with a warning.
func TestNoBackupBootSector(t *testing.T) {
	testenv.RequireTools(t, "mkntfs")
	path := makeNTFS(t, t.TempDir(), 8<<20, "nobackup")
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img = img[:len(img)-512]
	got, err := Detect(context.Background(), bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	info := got.Info()
	if info.Size != int64(len(img)) || len(info.Warnings) != 1 || info.Warnings[0] != warnNoBackupBoot {
		t.Fatalf("Size %d (want %d), warnings %q", info.Size, len(img), info.Warnings)
	}
	ext, err := got.UsedExtents(context.Background())
	if err != nil {
		t.Fatalf("UsedExtents: %v", err)
	}
	if last := ext[len(ext)-1]; last.End() > info.Size {
		t.Fatalf("extent %+v past the %d-byte volume", last, info.Size)
	}
}
