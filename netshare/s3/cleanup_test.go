package s3

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/lifeboat/lifeboat/netshare/s3/s3test"
)

// startUpload starts a multipart upload of key and sends its first part,
// as a Save of a large object killed midway leaves it, and returns its id.
func startUpload(t *testing.T, b *Backend, key string) string {
	t.Helper()
	ctx := context.Background()
	id, err := b.core.NewMultipartUpload(ctx, b.bucket, key, minio.PutObjectOptions{})
	if err != nil {
		t.Fatalf("start upload of %s: %v", key, err)
	}
	part := bytes.Repeat([]byte("part"), 1<<18) // 1 MiB
	if _, err := b.core.PutObjectPart(ctx, b.bucket, key, id, 1, bytes.NewReader(part), int64(len(part)), minio.PutObjectPartOptions{}); err != nil {
		t.Fatalf("send part 1 of %s: %v", key, err)
	}
	return id
}

// uploads lists the unfinished uploads of the whole bucket: key -> start.
func uploads(t *testing.T, b *Backend) map[string]time.Time {
	t.Helper()
	res, err := b.core.ListMultipartUploads(context.Background(), b.bucket, "", "", "", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Time{}
	for _, u := range res.Uploads {
		out[u.Key] = u.Initiated
	}
	return out
}

func TestCleanup(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "lifeboat")
	b, err := New(context.Background(), srv.URL("lifeboat", "repo"), srv.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	objects := map[string][]byte{"config": []byte("cfg"), "data/ab/p1": bytes.Repeat([]byte("pack"), 1000)}
	for name, data := range objects {
		if err := b.Save(ctx, name, int64(len(data)), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	const (
		stale   = "repo/data/cd/p2"
		young   = "repo/data/ef/p3"
		outside = "other/data/ab/x" // another repository's
		foreign = "repo/not a name" // no object this repository could have
	)
	// versitygw's posix backend reports as an upload's start the time of
	// its directory under .sgwtmp/multipart: age the stale ones there.
	old := time.Now().Add(-48 * time.Hour)
	for _, key := range []string{stale, outside, foreign} {
		id := startUpload(t, b, key)
		dirs, err := filepath.Glob(filepath.Join(srv.Dir, "root", "lifeboat", ".sgwtmp", "multipart", "*", id))
		if err != nil || len(dirs) != 1 {
			t.Fatalf("directory of upload %s of %s: %q, %v", id, key, dirs, err)
		}
		if err := os.Chtimes(dirs[0], old, old); err != nil {
			t.Fatal(err)
		}
	}
	startUpload(t, b, young)
	before := uploads(t, b)
	if len(before) != 4 || !before[stale].Before(time.Now().Add(-47*time.Hour)) || before[young].Before(time.Now().Add(-time.Hour)) {
		t.Fatalf("uploads before Cleanup: %v; want 4, %s started two days ago, %s now", before, stale, young)
	}

	n, err := b.Cleanup(ctx, time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("Cleanup(1h) = %d, %v; want the stale upload aborted", n, err)
	}
	after := uploads(t, b)
	if _, ok := after[stale]; ok || len(after) != 3 {
		t.Fatalf("uploads after Cleanup(1h): %v; want all but %s", after, stale)
	}
	n, err = b.Cleanup(ctx, 0)
	if err != nil || n != 1 {
		t.Fatalf("Cleanup(0) = %d, %v; want the young upload aborted", n, err)
	}
	after = uploads(t, b)
	_, hasOutside := after[outside]
	_, hasForeign := after[foreign]
	if len(after) != 2 || !hasOutside || !hasForeign {
		t.Fatalf("uploads after Cleanup(0): %v; want only %s and %s", after, outside, foreign)
	}
	if n, err := b.Cleanup(ctx, 0); err != nil || n != 0 {
		t.Fatalf("Cleanup with nothing left = %d, %v", n, err)
	}
	for name, data := range objects {
		got, err := b.Load(ctx, name, 0, -1)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("object %s after Cleanup: %d bytes, %v", name, len(got), err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.Cleanup(cctx, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Cleanup with a cancelled context: %v", err)
	}
}
