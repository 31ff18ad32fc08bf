package repo

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeebo/blake3"
)

func TestPasswordForUnencryptedRefused(t *testing.T) {
	ctx := context.Background()
	be, _ := newBackend(t)
	if _, err := Init(ctx, be, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, be, []byte("pw"))
	if !errors.Is(err, ErrNotEncrypted) {
		t.Fatalf("Open with a password: %v, want ErrNotEncrypted", err)
	}
	if _, err := Open(ctx, be, nil); err != nil {
		t.Fatalf("Open without a password: %v", err)
	}
}

// checkProblems runs a structural check and returns its problems joined.
func checkProblems(t *testing.T, r *Repo) string {
	t.Helper()
	rep, err := r.Check(context.Background(), CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(rep.Problems, "\n")
}

func TestCheckKeys(t *testing.T) {
	ctx := context.Background()
	be, dir := newBackend(t)
	pw := []byte("pw")
	r, err := Init(ctx, be, InitOptions{Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	if p := checkProblems(t, r); p != "" {
		t.Fatalf("fresh repository: %s", p)
	}
	keys, _ := filepath.Glob(filepath.Join(dir, "keys", "*"))
	if len(keys) != 1 {
		t.Fatalf("key objects: %v", keys)
	}
	good, err := os.ReadFile(keys[0])
	if err != nil {
		t.Fatal(err)
	}

	// A key of another repository, well formed and named by its hash.
	p, err := openPlain(good)
	if err != nil {
		t.Fatal(err)
	}
	var kf keyFile
	if err := json.Unmarshal(p, &kf); err != nil {
		t.Fatal(err)
	}
	kf.RepoID = strings.Repeat("ab", 32)
	kj, _ := json.Marshal(kf)
	foreign, _ := sealer{}.sealObject(kj)
	sum := blake3.Sum256(foreign)
	foreignPath := filepath.Join(dir, "keys", hex.EncodeToString(sum[:]))
	if err := os.WriteFile(foreignPath, foreign, 0o600); err != nil {
		t.Fatal(err)
	}
	if p := checkProblems(t, r); !strings.Contains(p, "belongs to repository "+kf.RepoID) {
		t.Fatalf("foreign key not reported: %q", p)
	}
	os.Remove(foreignPath)

	// A flipped byte in the only key: reported, and reported as leaving no
	// usable key.
	bad := append([]byte(nil), good...)
	bad[len(bad)/2] ^= 1
	if err := os.WriteFile(keys[0], bad, 0o600); err != nil {
		t.Fatal(err)
	}
	p2 := checkProblems(t, r)
	if !strings.Contains(p2, "content does not match its name") || !strings.Contains(p2, "no password can open it") {
		t.Fatalf("damaged key not reported: %q", p2)
	}
	if err := os.WriteFile(keys[0], good, 0o600); err != nil {
		t.Fatal(err)
	}
	if p := checkProblems(t, r); p != "" {
		t.Fatalf("restored key: %s", p)
	}
}
