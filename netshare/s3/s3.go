// Package s3 is the netshare backend for a bucket of an S3-compatible
// object store (AWS, MinIO, Ceph, versitygw, ...), at
// s3://host[:port]/bucket[/prefix][?region=R&profile=P]. Objects are the
// keys prefix/name; requests use path-style addressing over HTTPS, with the
// system's certificate authorities plus those of Options.CAFile.
//
// Keys come from Options.CredentialsFile, an AWS shared credentials file:
//
//	[default]
//	aws_access_key_id = AKIA...
//	aws_secret_access_key = ...
//	aws_session_token = ...   (optional)
//
// of which the section named by ?profile= (default "default") is used, or,
// without a file, from the environment (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN). The secret key is never put
// into an error.
//
// A PutObject is atomic by nature: readers see the old object or the new
// one. Objects over PartSize are uploaded in parts (multipart), which the
// server assembles into one object only when the last part is in. Every
// upload carries a CRC32C checksum, so the server refuses a body that is
// cut short or damaged on the way. The bucket must exist: New refuses a
// missing one rather than creating it.
package s3

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/lifeboat/lifeboat/netshare/internal/core"
)

// PartSize is the part size of multipart uploads, and so the largest
// object sent in one request. It is above a repository's packs (about 32
// MiB, at most 48 by default), so each pack goes in one PUT: with 16 MiB
// parts a server on the same machine spent a tenth of a backup's time
// assembling parts (versitygw copies them into the object at the end). A
// larger object goes in parts one at a time, each buffered, which bounds a
// save's memory to PartSize.
const (
	PartSize    = 64 << 20
	partThreads = 1
)

// maxConnections is how many operations the caller should keep in flight:
// object stores serve parallel requests well.
const maxConnections = 8

// errReplaced says an object changed size between a Load's HEAD and GET:
// a save replaced it, and the Load looks again.
var errReplaced = errors.New("object replaced while being read")

// staleTries bounds the attempts of a Load whose object is replaced
// between its size check and its read.
const staleTries = 3

// Backend stores objects as keys of a bucket. It implements
// netshare.Backend and is safe for concurrent use.
type Backend struct {
	client    *minio.Client
	core      minio.Core
	transport *http.Transport
	bucket    string
	base      string // key prefix of every object: "" or "some/prefix/"
	location  string
}

// New connects to the S3 endpoint that u names and checks that the bucket
// exists and the credentials are accepted. Errors that no retry can fix (a
// bad location, unreadable or refused credentials, an untrusted
// certificate, a missing bucket) are permanent; an unreachable server is
// not.
func New(ctx context.Context, u *url.URL, opts core.Options) (*Backend, error) {
	b, region, profile, err := parseURL(u)
	if err != nil {
		return nil, core.Permanent(err)
	}
	creds, err := loadCredentials(opts.CredentialsFile, profile)
	if err != nil {
		return nil, core.Permanent(fmt.Errorf("open %s: %w", b.location, err))
	}
	transport, err := newTransport(opts.CAFile)
	if err != nil {
		return nil, core.Permanent(fmt.Errorf("open %s: %w", b.location, err))
	}
	b.transport = transport
	b.client, err = minio.New(u.Host, &minio.Options{
		Creds:        creds,
		Secure:       true,
		Transport:    transport,
		Region:       region,
		BucketLookup: minio.BucketLookupPath,
		// netshare.WithRetry retries, with the caller's policy.
		MaxRetries: 1,
		// Trailing checksums let every part carry a CRC32C the server
		// checks (see Save).
		TrailingHeaders: true,
	})
	if err != nil {
		return nil, core.Permanent(fmt.Errorf("open %s: %w", b.location, err))
	}
	b.core = minio.Core{Client: b.client}
	ok, err := b.client.BucketExists(ctx, b.bucket)
	if err != nil {
		return nil, b.classify(fmt.Errorf("open %s: check the bucket: %w", b.location, err))
	}
	if !ok {
		return nil, core.Permanent(fmt.Errorf("open %s: bucket %q does not exist on %s; create it first", b.location, b.bucket, u.Host))
	}
	return b, nil
}

// parseURL checks an s3:// location. It never repeats what the user part
// of u holds.
func parseURL(u *url.URL) (b *Backend, region, profile string, err error) {
	if u == nil || u.Scheme != "s3" {
		return nil, "", "", errors.New("open s3 repository: not an s3:// location")
	}
	if u.User != nil {
		return nil, "", "", errors.New("open s3 repository: the location holds a user or key; give keys in a credentials file or the environment instead")
	}
	if u.Host == "" {
		return nil, "", "", errors.New("open s3 repository: the location names no host")
	}
	if u.Fragment != "" {
		return nil, "", "", fmt.Errorf("open s3 repository on %s: the location may not hold a fragment", u.Host)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, "", "", fmt.Errorf("open s3 repository on %s: malformed query", u.Host)
	}
	for k, v := range q {
		switch {
		case len(v) != 1:
			return nil, "", "", fmt.Errorf("open s3 repository on %s: option %q given %d times", u.Host, k, len(v))
		case k == "region":
			region = v[0]
		case k == "profile":
			profile = v[0]
		default:
			return nil, "", "", fmt.Errorf("open s3 repository on %s: unknown option %q (want region or profile)", u.Host, k)
		}
	}
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	prefix = strings.TrimSuffix(prefix, "/")
	if err := s3utils.CheckValidBucketNameStrict(bucket); err != nil {
		return nil, "", "", fmt.Errorf("open s3 repository on %s: bucket %q: %w", u.Host, bucket, err)
	}
	base := ""
	if prefix != "" {
		if err := core.CheckName(prefix); err != nil {
			return nil, "", "", fmt.Errorf("open s3 repository on %s: key prefix: %w", u.Host, err)
		}
		base = prefix + "/"
	}
	loc := (&url.URL{Scheme: "s3", Host: u.Host, Path: "/" + bucket + "/" + prefix}).String()
	return &Backend{bucket: bucket, base: base, location: strings.TrimSuffix(loc, "/")}, region, profile, nil
}

// loadCredentials reads the keys from an AWS shared credentials file, or
// from the environment when file is empty.
func loadCredentials(file, profile string) (*credentials.Credentials, error) {
	if profile == "" {
		profile = "default"
	}
	if file == "" {
		id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
		if id == "" || secret == "" {
			return nil, errors.New("no credentials: give a credentials file or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
		}
		return credentials.NewStaticV4(id, secret, os.Getenv("AWS_SESSION_TOKEN")), nil
	}
	keys, err := parseCredentials(file, profile)
	if err != nil {
		return nil, err
	}
	return credentials.NewStaticV4(keys["aws_access_key_id"], keys["aws_secret_access_key"], keys["aws_session_token"]), nil
}

// maxCredentialsSize bounds the credentials file read.
const maxCredentialsSize = 1 << 20

// parseCredentials returns the keys of one section of an AWS shared
// credentials file. Errors name lines, never their values.
func parseCredentials(file, profile string) (map[string]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("read credentials file: %w", err)
	}
	defer f.Close()
	keys := map[string]string{}
	found := false
	section := ""
	sc := bufio.NewScanner(io.LimitReader(f, maxCredentialsSize))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("credentials file %s line %d: malformed section header", file, n)
			}
			section = strings.TrimSpace(line[1 : len(line)-1])
			found = found || section == profile
			continue
		}
		if section != profile {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("credentials file %s line %d: want key = value", file, n)
		}
		keys[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read credentials file %s: %w", file, err)
	}
	if !found {
		return nil, fmt.Errorf("credentials file %s has no [%s] section", file, profile)
	}
	if keys["aws_access_key_id"] == "" || keys["aws_secret_access_key"] == "" {
		return nil, fmt.Errorf("credentials file %s: section [%s] lacks aws_access_key_id or aws_secret_access_key", file, profile)
	}
	return keys, nil
}

// newTransport returns an HTTPS transport that trusts the system's
// certificate authorities and those in caFile.
func newTransport(caFile string) (*http.Transport, error) {
	t, err := minio.DefaultTransport(true)
	if err != nil {
		return nil, fmt.Errorf("set up HTTPS: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
		}
	}
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{}
	}
	t.TLSClientConfig.RootCAs = pool
	t.TLSClientConfig.MinVersion = tls.VersionTLS12
	t.MaxIdleConnsPerHost = 2 * maxConnections
	return t, nil
}

// Properties says the backend is "s3" at its location; saves are atomic
// puts, not renames.
func (b *Backend) Properties() core.Properties {
	return core.Properties{Name: "s3", Location: b.location, AtomicRename: false, MaxConnections: maxConnections}
}

// Close releases idle connections.
func (b *Backend) Close() error {
	b.transport.CloseIdleConnections()
	return nil
}

// S3 error codes that retrying cannot fix, with what to tell the user.
var permanentCodes = map[string]string{
	"AccessDenied":              "the server refused access: check the keys and the bucket's policy",
	"InvalidAccessKeyId":        "the server does not know the access key",
	"XAdminUserNotFound":        "the server does not know the access key", // versitygw's InvalidAccessKeyId
	"SignatureDoesNotMatch":     "the server refused the secret key",
	"InvalidToken":              "the server refused the session token",
	"ExpiredToken":              "the session token has expired",
	"AllAccessDisabled":         "all access to the bucket is disabled",
	"AccountProblem":            "the account has a problem that blocks access",
	"NoSuchBucket":              "the bucket does not exist",
	"InvalidBucketName":         "the bucket name is invalid",
	"KeyTooLongError":           "the key is too long",
	"EntityTooLarge":            "the object is too large",
	"InvalidObjectName":         "the server refuses the key",
	"XMinioInvalidObjectName":   "the server refuses the key",
	"MethodNotAllowed":          "the server does not allow the request",
	"NotImplemented":            "the server does not implement the request",
	"InvalidStorageClass":       "invalid storage class",
	"QuotaExceeded":             "the quota is exceeded",
	"XAmzContentSHA256Mismatch": "the server received other bytes than sent",
}

// classify turns S3 errors into the netshare contract: a missing key
// wraps fs.ErrNotExist; refused credentials, a missing bucket, an
// untrusted certificate and requests the server will never accept are
// permanent. Network failures, throttling and server errors stay
// retryable.
func (b *Backend) classify(err error) error {
	if err == nil || core.IsPermanent(err) {
		return err
	}
	var uerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	var cerr x509.CertificateInvalidError
	var verr *tls.CertificateVerificationError
	if errors.As(err, &uerr) || errors.As(err, &herr) || errors.As(err, &cerr) || errors.As(err, &verr) {
		return core.Permanent(fmt.Errorf("%w (the server's TLS certificate is not trusted: give its certificate authority as the CA file)", err))
	}
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) {
		return err
	}
	switch resp.Code {
	case "":
		return err
	case "NoSuchKey", "NotFound":
		return fmt.Errorf("%w: %w", fs.ErrNotExist, err)
	case "InvalidRange":
		return fmt.Errorf("%w: %w", core.ErrOutOfRange, err)
	}
	if why, ok := permanentCodes[resp.Code]; ok {
		return core.Permanent(fmt.Errorf("%w (%s: %s)", err, resp.Code, why))
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return core.Permanent(fmt.Errorf("%w (%s: the server refused access)", err, resp.Code))
	}
	return err
}

// key is the S3 key of an object name.
func (b *Backend) key(name string) string { return b.base + name }

// Save puts the object; over PartSize it goes in parts that the server
// publishes as one object at the end. A failed or cancelled save stores
// nothing (an unfinished multipart upload is aborted, and never listed).
func (b *Backend) Save(ctx context.Context, name string, size int64, r io.ReadSeeker) error {
	if err := core.CheckName(name); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if size < 0 {
		return core.Permanent(fmt.Errorf("save %q: negative size %d", name, size))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %q: %w", name, err)
	}
	er := core.NewExactReader(ctx, r, name, size)
	info, err := b.client.PutObject(ctx, b.bucket, b.key(name), er, size, minio.PutObjectOptions{
		PartSize:    PartSize,
		NumThreads:  partThreads,
		ContentType: "application/octet-stream",
		// With a checksum the client reads a whole part before sending
		// it, so a reader that fails midway sends nothing, and the
		// server refuses a body that arrives cut short (versitygw 1.8
		// otherwise stores what it received of an aborted PUT). CRC32C
		// (hardware-accelerated) rather than Content-MD5, which cost a
		// fifth of a backup's time to a server on the same machine.
		Checksum: minio.ChecksumCRC32C,
	})
	if er.Err() != nil {
		return fmt.Errorf("save %q: after %d bytes: %w", name, er.Sent(), er.Err())
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w (%w)", cerr, err)
		}
		return b.classify(fmt.Errorf("save %q: %w", name, err))
	}
	if er.Sent() != size || info.Size != size {
		return fmt.Errorf("save %q: sent %d of %d bytes", name, er.Sent(), size)
	}
	return nil
}

// stat returns the object's size and ETag.
func (b *Backend) stat(ctx context.Context, name string) (minio.ObjectInfo, error) {
	info, err := b.client.StatObject(ctx, b.bucket, b.key(name), minio.StatObjectOptions{})
	if err != nil {
		return minio.ObjectInfo{}, err
	}
	if info.Size < 0 {
		return minio.ObjectInfo{}, fmt.Errorf("server gives size %d", info.Size)
	}
	return info, nil
}

// Load reads length bytes at off of the object (to its end when length <
// 0). The range is checked against the size a HEAD request gives; the
// ranged GET that follows must answer with exactly that range of an object
// of that size (Content-Range) and that many bytes, so a server that
// ignores the range cannot pass other bytes for the ones asked. A GET that
// finds another size (the object was replaced meanwhile) starts over.
func (b *Backend) Load(ctx context.Context, name string, off, length int64) ([]byte, error) {
	if err := core.CheckName(name); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	var err error
	for range staleTries {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("load %q: %w", name, cerr)
		}
		var data []byte
		data, err = b.load(ctx, name, off, length)
		if err == nil {
			return data, nil
		}
		if !errors.Is(err, errReplaced) {
			break
		}
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%w)", cerr, err)
	}
	return nil, b.classify(fmt.Errorf("load %q: %w", name, err))
}

func (b *Backend) load(ctx context.Context, name string, off, length int64) ([]byte, error) {
	info, err := b.stat(ctx, name)
	if err != nil {
		return nil, err
	}
	size := info.Size
	if length < 0 && off >= 0 && off <= size {
		length = size - off
	}
	if off < 0 || length < 0 || off > size || length > size-off {
		return nil, fmt.Errorf("bytes [%d, +%d) of an object of %d bytes: %w", off, length, size, core.ErrOutOfRange)
	}
	if length == 0 {
		return []byte{}, nil
	}
	var opts minio.GetObjectOptions
	if err := opts.SetRange(off, off+length-1); err != nil {
		return nil, err
	}
	body, _, header, err := b.core.GetObject(ctx, b.bucket, b.key(name), opts)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	var first, last, total int64
	cr := header.Get("Content-Range")
	if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &first, &last, &total); err != nil || first != off || last != off+length-1 {
		return nil, fmt.Errorf("server answers a request for bytes %d-%d with Content-Range %q", off, off+length-1, cr)
	}
	if total != size {
		return nil, fmt.Errorf("%w: %d bytes, then %d", errReplaced, size, total)
	}
	if cl := header.Get("Content-Length"); cl != "" && cl != strconv.FormatInt(length, 10) {
		return nil, fmt.Errorf("server answers a request for %d bytes with Content-Length %s", length, cl)
	}
	buf := make([]byte, length)
	n, err := io.ReadFull(body, buf)
	if err != nil {
		return nil, fmt.Errorf("read %d of %d bytes at %d: %w", n, length, off, err)
	}
	var extra [1]byte
	if k, _ := body.Read(extra[:]); k > 0 {
		return nil, fmt.Errorf("server sends more than the %d bytes asked for", length)
	}
	return buf, nil
}

// Stat returns the object's size.
func (b *Backend) Stat(ctx context.Context, name string) (core.FileInfo, error) {
	if err := core.CheckName(name); err != nil {
		return core.FileInfo{}, fmt.Errorf("stat: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return core.FileInfo{}, fmt.Errorf("stat %q: %w", name, err)
	}
	info, err := b.stat(ctx, name)
	if err != nil {
		return core.FileInfo{}, b.classify(fmt.Errorf("stat %q: %w", name, err))
	}
	return core.FileInfo{Name: name, Size: info.Size}, nil
}

// Remove deletes the object. S3's DELETE succeeds on a missing key, so a
// HEAD first tells a missing object (fs.ErrNotExist) from a removed one.
func (b *Backend) Remove(ctx context.Context, name string) error {
	if err := core.CheckName(name); err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove %q: %w", name, err)
	}
	if _, err := b.stat(ctx, name); err != nil {
		return b.classify(fmt.Errorf("remove %q: %w", name, err))
	}
	if err := b.client.RemoveObject(ctx, b.bucket, b.key(name), minio.RemoveObjectOptions{}); err != nil {
		return b.classify(fmt.Errorf("remove %q: %w", name, err))
	}
	return nil
}

// List lists the keys under the location's prefix followed by prefix.
// Keys that are no valid object name (a console's "folder/" marker, names
// written by other tools) are skipped: no call could load them.
func (b *Backend) List(ctx context.Context, prefix string, fn func(core.FileInfo) error) error {
	if err := core.CheckPrefix(prefix); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine when fn fails
	for obj := range b.client.ListObjects(lctx, b.bucket, minio.ListObjectsOptions{Prefix: b.key(prefix), Recursive: true}) {
		if obj.Err != nil {
			err := obj.Err
			if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
				err = fmt.Errorf("%w (%w)", cerr, err)
			}
			return b.classify(fmt.Errorf("list %q: %w", prefix, err))
		}
		name, ok := strings.CutPrefix(obj.Key, b.base)
		if !ok || !strings.HasPrefix(name, prefix) || core.CheckName(name) != nil {
			continue
		}
		if err := fn(core.FileInfo{Name: name, Size: obj.Size}); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	return nil
}

// Bounds of Cleanup's listing: uploads asked for per page, and pages.
const (
	uploadsPerPage = 1000
	maxUploadPages = 1 << 14
)

// Cleanup aborts the multipart uploads under the location's prefix that
// were started more than olderThan ago and never completed or aborted (the
// process was killed, or the abort of a failed Save was lost), which
// frees the parts the server keeps for them, and returns how many it
// aborted. A younger upload may belong to a save still running. Only
// uploads of keys that are valid object names are touched: others are not
// this repository's. Ages are measured against the server's clock as it
// reports each upload's start; an upload whose start the server does not
// report is left alone. See netshare.Cleaner.
func (b *Backend) Cleanup(ctx context.Context, olderThan time.Duration) (int, error) {
	what := "abort unfinished uploads in " + b.location
	cutoff := time.Now().Add(-olderThan)
	aborted := 0
	keyMarker, idMarker := "", ""
	for range maxUploadPages {
		if err := ctx.Err(); err != nil {
			return aborted, fmt.Errorf("%s: %w", what, err)
		}
		res, err := b.core.ListMultipartUploads(ctx, b.bucket, b.base, keyMarker, idMarker, "", uploadsPerPage)
		if err != nil {
			return aborted, b.classify(fmt.Errorf("%s: list uploads: %w", what, err))
		}
		for _, u := range res.Uploads {
			name, ok := strings.CutPrefix(u.Key, b.base)
			if !ok || core.CheckName(name) != nil || u.Initiated.IsZero() || !u.Initiated.Before(cutoff) {
				continue
			}
			err := b.core.AbortMultipartUpload(ctx, b.bucket, u.Key, u.UploadID)
			var resp minio.ErrorResponse
			switch {
			case err == nil:
				aborted++
			case errors.As(err, &resp) && resp.Code == "NoSuchUpload":
				// Completed or aborted meanwhile.
			default:
				return aborted, b.classify(fmt.Errorf("%s: abort upload %s of %q: %w", what, u.UploadID, name, err))
			}
		}
		if !res.IsTruncated {
			return aborted, nil
		}
		if res.NextKeyMarker == keyMarker && res.NextUploadIDMarker == idMarker {
			return aborted, fmt.Errorf("%s: list uploads: the server says there are more but gives no new marker", what)
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
	return aborted, core.Permanent(fmt.Errorf("%s: more than %d pages of uploads", what, maxUploadPages))
}
