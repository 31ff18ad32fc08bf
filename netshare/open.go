package netshare

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/lifeboat/lifeboat/netshare/internal/core"
	"github.com/lifeboat/lifeboat/netshare/local"
	"github.com/lifeboat/lifeboat/netshare/nfs"
	"github.com/lifeboat/lifeboat/netshare/s3"
	"github.com/lifeboat/lifeboat/netshare/sftp"
	"github.com/lifeboat/lifeboat/netshare/smb"
)

var (
	_ Backend = (*local.Backend)(nil)
	_ Backend = (*smb.Backend)(nil)
	_ Backend = (*nfs.Backend)(nil)
	_ Backend = (*sftp.Backend)(nil)
	_ Backend = (*s3.Backend)(nil)
)

// Options carries what a network backend needs besides its location:
// credentials and trust anchors. See core.Options for each field.
type Options = core.Options

// networkSchemes are the locations reached over the network.
var networkSchemes = map[string]bool{"smb": true, "nfs": true, "sftp": true, "s3": true}

// IsNetwork reports whether location names a repository on the network
// (smb://, nfs://, sftp://, s3://).
func IsNetwork(location string) bool {
	scheme, _, err := parseLocation(location)
	return err == nil && networkSchemes[scheme]
}

// Open returns the backend for a repository location without network
// credentials: see OpenWith.
func Open(ctx context.Context, location string) (Backend, error) {
	return OpenWith(ctx, location, Options{})
}

// OpenWith returns the backend for a repository location: a plain path or
// a file:// URL opens a directory on a local disk (created if missing);
// smb://[domain;]user@host[:port]/share/path, nfs://host[:port]/export/path,
// sftp://user@host[:port]/path and s3://host[:port]/bucket/prefix open a
// share with opts' credentials. The backend is returned without
// decorators; wrap it with WithRetry for network use.
func OpenWith(ctx context.Context, location string, opts Options) (Backend, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open repository: %w", err)
	}
	scheme, path, err := parseLocation(location)
	if err != nil {
		return nil, Permanent(err)
	}
	if scheme == "file" {
		b, err := local.New(path)
		if err != nil {
			return nil, fmt.Errorf("open repository: %w", err)
		}
		return b, nil
	}
	u, err := url.Parse(location)
	if err != nil {
		// url.Parse's error repeats the URL, password included.
		return nil, Permanent(fmt.Errorf("open repository: malformed %s:// location", scheme))
	}
	var b Backend
	switch scheme {
	case "smb":
		b, err = smb.New(ctx, u, opts)
	case "nfs":
		b, err = nfs.New(ctx, u, opts)
	case "sftp":
		b, err = sftp.New(ctx, u, opts)
	case "s3":
		b, err = s3.New(ctx, u, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("open repository: %w", err)
	}
	return b, nil
}

// LocalDir returns the absolute directory of a local location (a path or a
// file:// URL), or "" for a network one: what the safety checks compare
// with the disks being written.
func LocalDir(location string) string {
	scheme, p, err := parseLocation(location)
	if err != nil || scheme != "file" {
		return ""
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return abs
}

// parseLocation splits a location into a scheme and, for "file", the
// directory path. It never puts a password into an error.
func parseLocation(location string) (scheme, path string, err error) {
	if location == "" {
		return "", "", errors.New("open repository: empty location")
	}
	before, _, found := strings.Cut(location, "://")
	if !found || strings.ContainsAny(before, "/\\") {
		// A plain path (which may itself contain "://" after a slash).
		return "file", location, nil
	}
	scheme = strings.ToLower(before)
	if scheme == "file" {
		u, err := url.Parse(location)
		if err != nil {
			// url.Parse's error repeats the URL, password included.
			return "", "", errors.New("open repository: malformed file URL")
		}
		if u.Host != "" && u.Host != "localhost" {
			return "", "", fmt.Errorf("open repository: file URL names host %q; only local files are allowed", u.Host)
		}
		if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return "", "", errors.New("open repository: file URL may hold only a path")
		}
		if u.Path == "" {
			return "", "", errors.New("open repository: file URL without a path")
		}
		return "file", u.Path, nil
	}
	if networkSchemes[scheme] {
		return scheme, "", nil
	}
	if !validScheme(scheme) {
		// Not echoed: what precedes "://" here may be a user and password.
		return "", "", errors.New("open repository: malformed location scheme (want a path, file://, smb://, nfs://, sftp:// or s3://)")
	}
	return "", "", fmt.Errorf("open repository: unknown location scheme %q (want a path, file://, smb://, nfs://, sftp:// or s3://)", scheme)
}

// validScheme reports whether s is a URL scheme as RFC 3986 defines it.
func validScheme(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
