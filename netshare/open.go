package netshare

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/lifeboat/lifeboat/netshare/local"
)

var _ Backend = (*local.Backend)(nil)

// plannedSchemes are the network locations that issue 7 adds.
var plannedSchemes = map[string]bool{"smb": true, "nfs": true, "sftp": true, "s3": true}

// Open returns the backend for a repository location: a plain path or a
// file:// URL opens a directory on a local disk (created if missing). The
// network schemes smb://, nfs://, sftp:// and s3:// give an error that says
// they are not supported yet. The backend is returned without decorators;
// wrap it with WithRetry for network use.
func Open(ctx context.Context, location string) (Backend, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open repository: %w", err)
	}
	scheme, path, err := parseLocation(location)
	if err != nil {
		return nil, Permanent(err)
	}
	switch scheme {
	case "file":
		b, err := local.New(path)
		if err != nil {
			return nil, fmt.Errorf("open repository: %w", err)
		}
		return b, nil
	default:
		return nil, Permanent(fmt.Errorf("open repository: %s:// locations are not supported yet", scheme))
	}
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
	if plannedSchemes[scheme] {
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
