package kmod

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func loadTestdata(t testing.TB) *Index {
	t.Helper()
	ix := NewIndex()
	for name, read := range map[string]func([]byte) error{
		"modules.dep":     func(b []byte) error { return ix.ReadDep(bytes.NewReader(b)) },
		"modules.alias":   func(b []byte) error { return ix.ReadAlias(bytes.NewReader(b)) },
		"modules.softdep": func(b []byte) error { return ix.ReadSoftdep(bytes.NewReader(b)) },
	} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := read(b); err != nil {
			t.Fatal(err)
		}
	}
	return ix
}

func TestName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/arch/x86/crypto/crc32c-intel.ko": "crc32c_intel",
		"kernel/fs/ext4/ext4.ko.xz":              "ext4",
		"usb-storage":                            "usb_storage",
		"virtio_blk.ko.zst":                      "virtio_blk",
	} {
		if got := Name(in); got != want {
			t.Errorf("Name(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMatch(t *testing.T) {
	cases := []struct {
		p, s string
		want bool
	}{
		{"virtio:d00000002v*", "virtio:d00000002v00001AF4", true},
		{"virtio:d00000002v*", "virtio:d00000001v00001AF4", false},
		{"pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", true},
		{"pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00008086d00001001sv00001AF4sd00000002bc01sc00i00", false},
		{"cpu:type:x86,ven*fam*mod*:feature:*0094*", "cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0001,0094,00E5", true},
		{"block-major-7-*", "block-major-7-0", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"x[0-9]y", "x5y", true},
		{"x[!0-9]y", "x5y", false},
		{"x[!0-9]y", "xay", true},
		{"x[]]y", "x]y", true},
		{"x[ab", "x[ab", true},
		{"*", "", true},
		{"", "a", false},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		{"*", strings.Repeat("x", maxModalias+1), false},
	}
	for _, c := range cases {
		if got := Match(c.p, c.s); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.p, c.s, got, c.want)
		}
	}
}

func TestMatchAliasFromTestdata(t *testing.T) {
	ix := loadTestdata(t)
	if got := ix.MatchAlias("virtio:d00000002v00001AF4"); !slices.Equal(got, []string{"virtio_blk"}) {
		t.Errorf("virtio disk matched %v", got)
	}
	if got := ix.MatchAlias("pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00"); !slices.Equal(got, []string{"virtio_pci"}) {
		t.Errorf("virtio PCI function matched %v", got)
	}
	if got := ix.MatchAlias("pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00"); len(got) != 0 {
		t.Errorf("e1000 matched %v in an index without it", got)
	}
	if got := ix.Lookup("crc32c"); !slices.Equal(got, []string{"crc32c_intel", "crc32c_generic"}) {
		t.Errorf("Lookup(crc32c) = %v", got)
	}
}

func TestOrderFromTestdata(t *testing.T) {
	ix := loadTestdata(t)
	order, missing := ix.Order([]string{"ext4", "virtio_blk", "virtio_pci", "loop", "ext4", "sd_mod"})
	if !slices.Equal(missing, []string{"sd_mod"}) {
		t.Errorf("missing = %v, want [sd_mod]", missing)
	}
	pos := map[string]int{}
	for i, m := range order {
		if _, dup := pos[m]; dup {
			t.Errorf("%s listed twice in %v", m, order)
		}
		pos[m] = i
	}
	// Every module after its dependencies, ext4 after the crc32c
	// providers its soft dependency names.
	before := [][2]string{
		{"crc16", "ext4"}, {"mbcache", "ext4"}, {"jbd2", "ext4"},
		{"crc32c_intel", "ext4"}, {"crc32c_generic", "ext4"}, {"crc32c_intel", "jbd2"},
		{"virtio", "virtio_blk"}, {"virtio_ring", "virtio_blk"},
		{"virtio_pci_legacy_dev", "virtio_pci"}, {"virtio_pci_modern_dev", "virtio_pci"},
	}
	for _, b := range before {
		i, ok1 := pos[b[0]]
		j, ok2 := pos[b[1]]
		if !ok1 || !ok2 || i > j {
			t.Errorf("%s must come before %s in %v", b[0], b[1], order)
		}
	}
	if len(order) != 13 {
		t.Errorf("order has %d modules, want 13: %v", len(order), order)
	}
}

func TestSubsetRoundTrip(t *testing.T) {
	ix := loadTestdata(t)
	order, _ := ix.Order([]string{"ext4"})
	sub := ix.Subset(order)
	var dep, alias, soft bytes.Buffer
	if err := sub.WriteDep(&dep); err != nil {
		t.Fatal(err)
	}
	if err := sub.WriteAlias(&alias); err != nil {
		t.Fatal(err)
	}
	if err := sub.WriteSoftdep(&soft); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(dep.String(), "virtio") || strings.Contains(alias.String(), "virtio") {
		t.Errorf("subset for ext4 kept virtio:\n%s%s", dep.String(), alias.String())
	}
	back := NewIndex()
	if err := back.ReadDep(&dep); err != nil {
		t.Fatal(err)
	}
	if err := back.ReadAlias(&alias); err != nil {
		t.Fatal(err)
	}
	if err := back.ReadSoftdep(&soft); err != nil {
		t.Fatal(err)
	}
	again, missing := back.Order([]string{"ext4"})
	if len(missing) != 0 || !slices.Equal(again, order) {
		t.Errorf("re-read subset orders %v (missing %v), want %v", again, missing, order)
	}
}

func TestReadRejectsGarbage(t *testing.T) {
	ix := NewIndex()
	if err := ix.ReadAlias(strings.NewReader("alias onlytwo\n")); err == nil {
		t.Error("ReadAlias accepted a line with two words")
	}
	if err := ix.ReadSoftdep(strings.NewReader("alias ext4 crc32c\n")); err == nil {
		t.Error("ReadSoftdep accepted an alias line")
	}
	if err := ix.ReadDep(strings.NewReader(": kernel/a.ko\n")); err == nil {
		t.Error("ReadDep accepted a line without a module")
	}
	if err := ix.ReadDep(strings.NewReader(strings.Repeat("x", maxLine+10))); err == nil {
		t.Error("ReadDep accepted an over-long line")
	}
}

func TestSoftdepWordsBeforePreIgnored(t *testing.T) {
	ix := NewIndex()
	if err := ix.ReadSoftdep(strings.NewReader("softdep cifs gcm\nsoftdep cifs pre: ccm\n")); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ix.Pre["cifs"], []string{"ccm"}) || len(ix.Post["cifs"]) != 0 {
		t.Errorf("pre %v post %v, want pre [ccm]", ix.Pre["cifs"], ix.Post["cifs"])
	}
}

func TestOrderSurvivesCycles(t *testing.T) {
	ix := NewIndex()
	if err := ix.ReadDep(strings.NewReader("a.ko: b.ko\nb.ko: a.ko\n")); err != nil {
		t.Fatal(err)
	}
	if err := ix.ReadSoftdep(strings.NewReader("softdep a pre: a b post: a\n")); err != nil {
		t.Fatal(err)
	}
	order, _ := ix.Order([]string{"a"})
	if len(order) != 2 {
		t.Errorf("cyclic index ordered as %v", order)
	}
}

func FuzzIndex(f *testing.F) {
	for _, name := range []string{"modules.dep", "modules.alias", "modules.softdep"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "virtio:d00000002v00001AF4")
	}
	f.Add([]byte("alias [[[*?* x\nsoftdep x pre: x post: x\nx.ko: x.ko\n"), "[[[[")
	f.Fuzz(func(t *testing.T, data []byte, modalias string) {
		// Real index files are read from the initramfs the build wrote;
		// a fuzzed megabyte of aliases each matched against a long
		// modalias only measures the quadratic matcher.
		if len(data) > 64<<10 {
			return
		}
		ix := NewIndex()
		_ = ix.ReadDep(bytes.NewReader(data))
		_ = ix.ReadAlias(bytes.NewReader(data))
		_ = ix.ReadSoftdep(bytes.NewReader(data))
		mods := ix.MatchAlias(modalias)
		order, _ := ix.Order(append(mods, modalias))
		sub := ix.Subset(order)
		var buf bytes.Buffer
		_ = sub.WriteDep(&buf)
		_ = sub.WriteAlias(&buf)
		_ = sub.WriteSoftdep(&buf)
		for _, a := range ix.Aliases {
			if Match(a.Pattern, modalias) && !slices.Contains(mods, a.Module) {
				t.Errorf("alias %q matches %q but MatchAlias left out %s", a.Pattern, modalias, a.Module)
			}
			if !strings.ContainsAny(a.Pattern, `*?[\`) && len(a.Pattern) <= maxPattern && !Match(a.Pattern, a.Pattern) {
				t.Errorf("literal pattern %q does not match itself", a.Pattern)
			}
		}
	})
}
