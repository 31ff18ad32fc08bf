package roundtrip

import (
	"context"
	"net/url"
	"testing"

	"github.com/lifeboat/lifeboat/netshare"
	"github.com/lifeboat/lifeboat/netshare/internal/core"
	"github.com/lifeboat/lifeboat/netshare/nfs"
	"github.com/lifeboat/lifeboat/netshare/nfs/nfstest"
	"github.com/lifeboat/lifeboat/netshare/smb"
	"github.com/lifeboat/lifeboat/netshare/smb/smbtest"
)

// smbServer is a Samba server and how to open a backend on it.
type smbServer struct{ *smbtest.Server }

func smbStart(t *testing.T) smbServer { return smbServer{smbtest.Start(t)} }

// open returns a backend on directory sub of the share, closed when the
// test ends.
func (s smbServer) open(t *testing.T, sub string) netshare.Backend {
	t.Helper()
	return smbOpen(t, s.URL(sub), core.Options{PasswordFile: s.PasswordFile})
}

func smbOpen(t *testing.T, u *url.URL, opts core.Options) netshare.Backend {
	t.Helper()
	b, err := smb.New(context.Background(), u, opts)
	if err != nil {
		t.Fatalf("open %s: %v", u, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// nfsServer is an nfs-ganesha server and how to open a backend on it.
type nfsServer struct{ *nfstest.Server }

func nfsStart(t *testing.T) nfsServer { return nfsServer{nfstest.Start(t)} }

// open returns a backend on directory sub of the export, closed when the
// test ends.
func (s nfsServer) open(t *testing.T, sub string) netshare.Backend {
	t.Helper()
	b, err := nfs.New(context.Background(), s.URL(sub), core.Options{})
	if err != nil {
		t.Fatalf("open %s: %v", s.URL(sub), err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}
