package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/term"

	"github.com/lifeboat/lifeboat/netshare"
)

// shareFlags are the options of a repository on the network: the share's
// credentials and the anchors that say whom to trust. They are apart from
// --password-file, which is the repository's own (encryption) password.
type shareFlags struct {
	passwordFile    *string
	identityFile    *string
	knownHosts      *string
	hostKey         *string
	caFile          *string
	credentialsFile *string
	saveCredentials *bool
}

func addShareFlags(fs *flag.FlagSet) shareFlags {
	return shareFlags{
		passwordFile:    fs.String("share-password-file", "", "file holding the share's password (SMB, SFTP); asked for on a terminal when missing"),
		identityFile:    fs.String("identity-file", "", "SSH private key for an sftp:// repository"),
		knownHosts:      fs.String("known-hosts", "", "known_hosts file checked for an sftp:// server's key (default ~/.ssh/known_hosts)"),
		hostKey:         fs.String("host-key", "", "accept the sftp:// server whose host key has this fingerprint (SHA256:...)"),
		caFile:          fs.String("ca-file", "", "PEM file of extra certificate authorities for an s3:// server"),
		credentialsFile: fs.String("credentials-file", "", "AWS-style credentials file for s3:// (default: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"),
		saveCredentials: fs.Bool("save-credentials", false, "keep a share password typed in, in a file only its owner (root) can read, for later runs"),
	}
}

// credentialsDir is where --save-credentials keeps share passwords:
// LIFEBOAT_CREDENTIALS_DIR, else lifeboat/credentials under the user's
// configuration directory.
func credentialsDir() (string, error) {
	if d := os.Getenv("LIFEBOAT_CREDENTIALS_DIR"); d != "" {
		return d, nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the credentials directory: %w", err)
	}
	return filepath.Join(d, "lifeboat", "credentials"), nil
}

// credentialsName names the saved password of a location: its scheme,
// user, host, port and first path element (the SMB share), never the
// password.
func credentialsName(location string) (string, bool) {
	u, err := url.Parse(location)
	if err != nil || u.User == nil || u.Host == "" {
		return "", false
	}
	first, _, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	name := strings.ToLower(u.Scheme) + "_" + u.User.Username() + "@" + u.Host + "_" + first
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@._-", r) {
			return r
		}
		return '_'
	}, name)
	return clean, true
}

// savedPasswordFile returns the saved password file of location, if one
// exists and only its owner, who must be us, can read it.
func savedPasswordFile(location string) (string, error) {
	name, ok := credentialsName(location)
	if !ok {
		return "", nil
	}
	dir, err := credentialsDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("saved credentials: %w", err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm()&0o077 != 0 || st == nil || int(st.Uid) != os.Getuid() {
		// Like ssh with a private key others can read: refuse rather
		// than use a secret that may have been seen or planted.
		return "", fmt.Errorf("saved credentials %s: readable by others or not owned by this user: refusing to use it (remove it or chmod 600)", p)
	}
	return p, nil
}

// savePassword keeps a share password for later runs: 0600 in a 0700
// directory, written to a temporary name first.
func savePassword(location string, pw []byte) (string, error) {
	name, ok := credentialsName(location)
	if !ok {
		return "", fmt.Errorf("save credentials: location names no user and host")
	}
	dir, err := credentialsDir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("save credentials: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", fmt.Errorf("save credentials: %w", err)
	}
	p := filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return "", fmt.Errorf("save credentials: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(append([]byte(nil), pw...), '\n')); err != nil {
		tmp.Close()
		return "", fmt.Errorf("save credentials: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("save credentials: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return "", fmt.Errorf("save credentials: %w", err)
	}
	return p, nil
}

// shareOptions turns the flags into the backend's options. On a terminal
// it asks for a missing share password (and remembers it for
// --save-credentials) and whether to trust an unknown host key.
func shareOptions(env *cmdEnv, sf shareFlags, location string) (netshare.Options, *[]byte, error) {
	opts := netshare.Options{
		PasswordFile: *sf.passwordFile, IdentityFile: *sf.identityFile, KnownHostsFile: *sf.knownHosts,
		HostKeyFingerprint: *sf.hostKey, CAFile: *sf.caFile, CredentialsFile: *sf.credentialsFile,
	}
	if opts.PasswordFile == "" {
		p, err := savedPasswordFile(location)
		if err != nil {
			return opts, nil, err
		}
		if p != "" {
			opts.PasswordFile = p
			fmt.Fprintf(env.stderr, "using the share password saved in %s\n", p)
		}
	}
	asked := new([]byte)
	tty, ok := env.stdin.(*os.File)
	if !env.interactive || !ok {
		return opts, asked, nil
	}
	opts.AskPassword = func(prompt string) ([]byte, error) {
		fmt.Fprintf(env.stderr, "%s: ", prompt)
		b, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(env.stderr)
		if err != nil {
			return nil, fmt.Errorf("read share password: %w", err)
		}
		*asked = bytes.Clone(b)
		return b, nil
	}
	opts.AcceptHostKey = func(host, fingerprint string) bool {
		fmt.Fprintf(env.stderr, "The server %s is not known. Its host key is\n  %s\nCompare it with the one the server's owner gives you. Trust it? Type yes: ", host, fingerprint)
		line, _ := bufio.NewReader(env.stdin).ReadString('\n')
		return strings.TrimSpace(line) == "yes"
	}
	return opts, asked, nil
}

// openBackend opens the repository location's backend: network ones with
// the share options and retries with backoff (each retry said on stderr).
func openBackend(ctx context.Context, env *cmdEnv, rf repoFlags) (netshare.Backend, error) {
	loc := *rf.location
	if !netshare.IsNetwork(loc) {
		return netshare.Open(ctx, loc)
	}
	opts, asked, err := shareOptions(env, rf.share, loc)
	if err != nil {
		return nil, err
	}
	be, err := netshare.OpenWith(ctx, loc, opts)
	if err != nil {
		return nil, err
	}
	if *rf.share.saveCredentials {
		if len(*asked) == 0 {
			fmt.Fprintln(env.stderr, "--save-credentials: no password was typed in, nothing saved")
		} else if p, err := savePassword(loc, *asked); err != nil {
			fmt.Fprintf(env.stderr, "lifeboat: %v\n", err)
		} else {
			fmt.Fprintf(env.stderr, "share password saved in %s (readable by its owner only)\n", p)
		}
	}
	return netshare.WithRetry(be, netshare.RetryPolicy{Report: func(op, name string, attempt int, err error) {
		fmt.Fprintf(env.stderr, "lifeboat: %s %s failed (attempt %d), retrying: %v\n", op, name, attempt, err)
	}}), nil
}
