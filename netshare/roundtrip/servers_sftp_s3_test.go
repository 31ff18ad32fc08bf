package roundtrip

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/lifeboat/lifeboat/netshare"
	"github.com/lifeboat/lifeboat/netshare/s3"
	"github.com/lifeboat/lifeboat/netshare/s3/s3test"
	"github.com/lifeboat/lifeboat/netshare/sftp"
	"github.com/lifeboat/lifeboat/netshare/sftp/sftptest"
)

// sftpServer is an OpenSSH server on loopback (see sftptest) whose
// repositories live under a temporary directory.
type sftpServer struct {
	*sftptest.Server
	t    *testing.T
	root string
}

func sftpStart(t *testing.T) *sftpServer {
	t.Helper()
	return &sftpServer{Server: sftptest.Start(t), t: t, root: t.TempDir()}
}

// open connects a backend to the repository directory name, logging in as
// root with a key and checking the host key against known_hosts.
func (s *sftpServer) open(t *testing.T, name string) netshare.Backend {
	t.Helper()
	b, err := sftp.New(context.Background(), s.URL("root", filepath.Join(s.root, name)), s.Options())
	if err != nil {
		t.Fatalf("connect to the sftp server: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func (s *sftpServer) stop()    { s.Stop(s.t) }
func (s *sftpServer) restart() { s.Restart(s.t) }

// s3Server is versitygw on loopback (see s3test) with one bucket; each
// repository is a key prefix in it.
type s3Server struct {
	*s3test.Server
	t *testing.T
}

func s3Start(t *testing.T) *s3Server {
	t.Helper()
	s := &s3Server{Server: s3test.Start(t), t: t}
	s.MakeBucket(t, "lifeboat")
	return s
}

// open connects a backend to the repository under the key prefix name,
// with the test's credentials file and certificate authority.
func (s *s3Server) open(t *testing.T, name string) netshare.Backend {
	t.Helper()
	b, err := s3.New(context.Background(), s.URL("lifeboat", name), s.Options())
	if err != nil {
		t.Fatalf("connect to the s3 server: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func (s *s3Server) stop()    { s.Stop(s.t) }
func (s *s3Server) restart() { s.Restart(s.t) }
