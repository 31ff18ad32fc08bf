// Package s3test starts a real S3 server on loopback for the tests of the
// S3 backend and of the code above it: versitygw (Apache-2.0) with its
// posix backend on a temporary directory, serving HTTPS with a certificate
// signed by a certificate authority made for the test, on a free port of
// 127.0.0.1. The server can be killed and started again on the same port
// and directory.
//
// versitygw is not a Debian package; CI installs it with
//
//	cd /tmp && GOFLAGS=-mod=mod go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
//
// and the tests find it on PATH, in $GOBIN, or in $(go env GOPATH)/bin.
package s3test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/lifeboat/lifeboat/internal/testenv"
	"github.com/lifeboat/lifeboat/netshare/internal/core"
)

// Server is a running (or stopped) versitygw.
type Server struct {
	// Dir holds the certificates, the credentials file, the log and, in
	// Dir/root, the buckets.
	Dir string
	// Addr is the server's 127.0.0.1:port.
	Addr string
	// AccessKey and SecretKey are the root account's keys.
	AccessKey, SecretKey string
	// CAFile is the PEM certificate of the authority that signed the
	// server's certificate; CredentialsFile an AWS shared credentials file
	// holding the keys under [default].
	CAFile, CredentialsFile string

	bin    string
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error
	log    *os.File
}

// find returns the versitygw binary.
func find() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	dirs := []string{os.Getenv("GOBIN")}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, d := range filepath.SplitList(string(trimNL(out))) {
			dirs = append(dirs, filepath.Join(d, "bin"))
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, "versitygw")
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// Start starts versitygw and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := find()
	if err != nil {
		testenv.Skip(t, "needs versitygw (cd /tmp && GOFLAGS=-mod=mod go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)")
	}
	dir := t.TempDir()
	s := &Server{Dir: dir, bin: bin}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	s.AccessKey = "lifeboat" + randomHex(t, 6)
	s.SecretKey = "secret-" + randomHex(t, 16)
	s.CredentialsFile = filepath.Join(dir, "credentials")
	creds := "# written by s3test\n[other]\naws_access_key_id = nobody\naws_secret_access_key = nothing\n\n[default]\n" +
		"aws_access_key_id = " + s.AccessKey + "\naws_secret_access_key = " + s.SecretKey + "\n"
	if err := os.WriteFile(s.CredentialsFile, []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}
	s.CAFile = filepath.Join(dir, "ca.pem")
	makeCerts(t, s.CAFile, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err := os.Mkdir(filepath.Join(dir, "root"), 0o700); err != nil {
		t.Fatal(err)
	}
	s.Restart(t)
	t.Cleanup(func() { s.Stop(t) })
	return s
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// makeCerts writes a self-signed CA and a server certificate for
// 127.0.0.1 signed by it.
func makeCerts(t testing.TB, caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Lifeboat test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for file, block := range map[string]*pem.Block{
		caFile:   {Type: "CERTIFICATE", Bytes: caDER},
		certFile: {Type: "CERTIFICATE", Bytes: leafDER},
		keyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// Restart starts versitygw on the server's port and directory (after
// Stop, or the first time) and waits until it answers.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		t.Fatal("s3test: Restart of a running server")
	}
	var err error
	if s.log == nil {
		s.log, err = os.OpenFile(filepath.Join(s.Dir, "versitygw.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(s.bin, "--port", s.Addr, "--cert", filepath.Join(s.Dir, "cert.pem"), "--key", filepath.Join(s.Dir, "key.pem"),
		"--quiet", "posix", filepath.Join(s.Dir, "root"))
	// Keys in the environment, not on the command line where ps shows them.
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.AccessKey, "ROOT_SECRET_ACCESS_KEY="+s.SecretKey)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.cmd = cmd
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(s.CAFile)
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	// The loop ends with the server answering, exiting, or after a minute
	// (a broken setup, not a slow one).
	for deadline := time.Now().Add(time.Minute); ; {
		select {
		case err := <-exited:
			s.cmd = nil
			t.Fatalf("versitygw exited at start: %v\n%s", err, s.Log())
		default:
		}
		if resp, err := client.Get("https://" + s.Addr + "/"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw does not answer on %s\n%s", s.Addr, s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.exited = exited
}

// Stop kills versitygw, as a crash of the server would. It may be called
// from any goroutine.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Log returns what versitygw wrote so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "versitygw.log"))
	return string(b)
}

// MakeBucket creates a bucket.
func (s *Server) MakeBucket(t testing.TB, bucket string) {
	t.Helper()
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(s.CAFile)
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	c, err := minio.New(s.Addr, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Secure: true,
		Transport: tr, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MakeBucket(context.Background(), bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v", bucket, err)
	}
}

// URL returns s3://Addr/bucket/prefix.
func (s *Server) URL(bucket, prefix string) *url.URL {
	p := "/" + bucket
	if prefix != "" {
		p += "/" + prefix
	}
	return &url.URL{Scheme: "s3", Host: s.Addr, Path: p}
}

// Options returns the options that use CredentialsFile and trust CAFile.
func (s *Server) Options() core.Options {
	return core.Options{CredentialsFile: s.CredentialsFile, CAFile: s.CAFile}
}
