package roundtrip

import (
	"testing"
)

// TestS3 backs a fixture disk up to an S3 server (versitygw) and restores
// it, then kills the server in the middle of another backup and resumes.
func TestS3(t *testing.T) {
	srv := s3Start(t)
	dir := t.TempDir()
	fx := fixture(t, dir)
	t.Run("RoundTrip", func(t *testing.T) {
		roundTripFixture(t, srv.open(t, "roundtrip"), fx, t.TempDir())
	})
	t.Run("Resume", func(t *testing.T) {
		resumeAfterKill(t, srv.open(t, "resume"), fx, t.TempDir(), 6, srv.stop, srv.restart)
	})
}
