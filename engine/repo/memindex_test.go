package repo

import (
	"crypto/rand"
	mrand "math/rand/v2"
	"runtime"
	"testing"
)

func randomPacks(n, perPack int) []packInfo {
	packs := make([]packInfo, (n+perPack-1)/perPack)
	for i := range packs {
		_, _ = rand.Read(packs[i].ID[:])
		packs[i].Size = 32 << 20
		packs[i].Entries = make([]packEntry, min(perPack, n-i*perPack))
		for j := range packs[i].Entries {
			_, _ = rand.Read(packs[i].Entries[j].ID[:])
			packs[i].Entries[j].Raw = uint32(j + 1)
			packs[i].Entries[j].Offset = uint32(j)
		}
	}
	return packs
}

// The index answers like a map that keeps each id's first location, through
// batches of every size, duplicates within and across batches, and replace.
func TestMemIndexAgainstMap(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	m := newMemIndex()
	want := map[ChunkID]PackID{}
	var all []ChunkID
	for round := range 40 {
		packs := randomPacks(1+rng.IntN(3000), 1+rng.IntN(64))
		// Repeat some known ids, in this batch and from earlier ones.
		for k := range packs {
			for j := range packs[k].Entries {
				if len(all) > 0 && rng.IntN(5) == 0 {
					packs[k].Entries[j].ID = all[rng.IntN(len(all))]
				}
			}
		}
		m.add(packs)
		for _, p := range packs {
			for _, e := range p.Entries {
				if _, ok := want[e.ID]; !ok {
					want[e.ID] = p.ID
					all = append(all, e.ID)
				}
			}
		}
		if m.len() != len(want) {
			t.Fatalf("round %d: %d blobs indexed, want %d", round, m.len(), len(want))
		}
	}
	for id, pack := range want {
		loc, p, ok := m.lookup(id)
		if !ok || p != pack || !m.has(id) || m.packs[loc.pack] != pack {
			t.Fatalf("lookup %v: %v %v, want pack %v", id, p, ok, pack)
		}
	}
	var absent ChunkID
	for range 1000 {
		_, _ = rand.Read(absent[:])
		if m.has(absent) {
			t.Fatalf("absent id %v found", absent)
		}
	}
	prev, seen := ChunkID{}, 0
	m.each(func(id ChunkID, _ blobLoc) {
		if seen > 0 && string(id[:]) <= string(prev[:]) {
			t.Fatalf("each: %v after %v", id, prev)
		}
		prev = id
		seen++
	})
	if seen != len(want) {
		t.Fatalf("each gave %d blobs, want %d", seen, len(want))
	}
	m.replace(randomPacks(10, 5))
	if m.len() != 10 || m.has(all[0]) {
		t.Fatalf("after replace: %d blobs, old one found %v", m.len(), m.has(all[0]))
	}
}

// What a repository can hold within a backup's memory budget depends on the
// bytes each indexed blob costs: a map took 132, sorted buckets take 60
// plus their share of the pack table.
func TestMemIndexBytesPerBlob(t *testing.T) {
	const n = 1 << 18
	packs := randomPacks(n, 32)
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	m := newMemIndex()
	m.add(packs)
	runtime.GC()
	runtime.ReadMemStats(&b)
	per := float64(int64(b.HeapAlloc)-int64(a.HeapAlloc)) / n
	t.Logf("%d blobs: %.1f bytes each; the index says %.1f", n, per, float64(m.memory())/n)
	if per > 80 {
		t.Errorf("%.1f bytes per indexed blob, want at most 80", per)
	}
	// memory, which raises the CLI's soft memory limit, is within 15% of
	// what the heap measured.
	if est := float64(m.memory()) / n; est < per*0.85 || est > per*1.15 {
		t.Errorf("the index estimates %.1f bytes per blob, the heap measured %.1f", est, per)
	}
	runtime.KeepAlive(m)
	runtime.KeepAlive(packs)
}
