package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"golang.org/x/term"

	"github.com/lifeboat/lifeboat/engine/repo"
	"github.com/lifeboat/lifeboat/netshare"
	"github.com/lifeboat/lifeboat/rescue"
)

// repoFlags are the options every repository command takes.
type repoFlags struct {
	location     *string
	passwordFile *string
	share        shareFlags
}

func addRepoFlags(fs *flag.FlagSet) repoFlags {
	return repoFlags{
		location:     fs.String("repo", "", "repository: a directory (created when missing by init and backup), smb://[domain;]user@host/share/path, nfs://host/export/path, sftp://user@host/path or s3://host/bucket/prefix"),
		passwordFile: fs.String("password-file", "", "file holding the repository password (encrypts a new repository)"),
		share:        addShareFlags(fs),
	}
}

// readPassword returns the password from the file, from the terminal when
// there is one and ask is set, or nil.
func readPassword(env *cmdEnv, file string, ask bool) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read password file: %w", err)
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return nil, fmt.Errorf("password file %s is empty", file)
		}
		return b, nil
	}
	if !ask || !env.interactive {
		return nil, nil
	}
	f, ok := env.stdin.(*os.File)
	if !ok {
		return nil, nil
	}
	fmt.Fprint(env.stderr, "Repository password: ")
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(env.stderr)
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	return b, nil
}

// openRepo opens the repository at the flags' location. With create, a
// missing repository is created (encrypted when a password file is given).
func openRepo(ctx context.Context, env *cmdEnv, rf repoFlags, create bool) (_ *repo.Repo, _ string, err error) {
	if *rf.location == "" {
		return nil, "", &exitError{code: 2, err: errors.New("--repo is required")}
	}
	be, err := openBackend(ctx, env, rf)
	if err != nil {
		return nil, "", err
	}
	defer func() {
		if err != nil {
			be.Close()
		}
	}()
	pw, err := readPassword(env, *rf.passwordFile, false)
	if err != nil {
		return nil, "", err
	}
	r, err := repo.Open(ctx, be, pw)
	switch {
	case err == nil:
		allowIndex(r)
		return r, netshare.LocalDir(*rf.location), nil
	case errors.Is(err, repo.ErrNotRepository) && create:
		r, err = repo.Init(ctx, be, repo.InitOptions{Password: pw})
		if err != nil {
			return nil, "", fmt.Errorf("create repository %s: %w", *rf.location, err)
		}
		enc := "unencrypted"
		if pw != nil {
			enc = "encrypted"
		}
		fmt.Fprintf(env.stderr, "created %s repository %s at %s\n", enc, r.Config().ID, *rf.location)
		return r, netshare.LocalDir(*rf.location), nil
	case errors.Is(err, repo.ErrPasswordRequired) && *rf.passwordFile == "":
		pw, perr := readPassword(env, "", true)
		if perr != nil {
			return nil, "", perr
		}
		if pw == nil {
			return nil, "", fmt.Errorf("open repository %s: %w (give --password-file)", *rf.location, err)
		}
		r, err = repo.Open(ctx, be, pw)
		if err != nil {
			return nil, "", fmt.Errorf("open repository %s: %w", *rf.location, err)
		}
		allowIndex(r)
		return r, netshare.LocalDir(*rf.location), nil
	default:
		return nil, "", fmt.Errorf("open repository %s: %w", *rf.location, err)
	}
}

// allowIndex raises the soft memory limit by what r's index holds. The
// limit keeps the garbage of the copy buffers in check; a large index is
// live data no collection can free, and under a limit it fills the
// collector would run without end.
func allowIndex(r *repo.Repo) {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit + r.IndexMemory())
	}
}

// closeRepo releases a repository opened by openRepo and its backend. In
// an unattended job (rescue.JobLogEnv set), a command that wrote to the repository
// first saves the job's log so far into it, next to the images.
func closeRepo(r *repo.Repo) {
	if p := os.Getenv(rescue.JobLogEnv); p != "" && r.Wrote() {
		if err := saveJobLog(r, p); err != nil {
			fmt.Fprintf(os.Stderr, "lifeboat: %v\n", err)
		}
	}
	r.Close()
	r.Backend().Close()
}

// saveJobLog copies the job log at path into the repository. It runs when
// the command ends, also after an interruption, so it has its own deadline
// rather than the command's context.
func saveJobLog(r *repo.Repo, path string) error {
	text, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("keep the job log in the repository: %w", err)
	}
	host, _ := os.Hostname()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id, err := r.SaveLog(ctx, repo.JobLog{Time: time.Now().UTC(), Host: host, Text: string(text)})
	if err != nil {
		return fmt.Errorf("keep the job log in the repository: %w", err)
	}
	fmt.Fprintf(os.Stderr, "lifeboat: job log saved in the repository as logs/%s\n", id[:12])
	return nil
}
