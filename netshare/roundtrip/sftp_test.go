package roundtrip

import (
	"testing"
)

// TestSFTP backs a fixture disk up to an OpenSSH server and restores it,
// then kills the server in the middle of another backup and resumes.
func TestSFTP(t *testing.T) {
	srv := sftpStart(t)
	dir := t.TempDir()
	fx := fixture(t, dir)
	t.Run("RoundTrip", func(t *testing.T) {
		roundTripFixture(t, srv.open(t, "roundtrip"), fx, t.TempDir())
	})
	t.Run("Resume", func(t *testing.T) {
		resumeAfterKill(t, srv.open(t, "resume"), fx, t.TempDir(), 6, srv.stop, srv.restart)
	})
}
