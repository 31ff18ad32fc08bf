package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat/lifeboat/internal/testdisk"
	"github.com/lifeboat/lifeboat/internal/testenv"
	"github.com/lifeboat/lifeboat/netshare/nfs/nfstest"
	"github.com/lifeboat/lifeboat/netshare/s3/s3test"
	"github.com/lifeboat/lifeboat/netshare/sftp/sftptest"
	"github.com/lifeboat/lifeboat/netshare/smb/smbtest"
)

// TestNetworkRepositoriesCLI backs a disk up to, and restores it from, a
// repository on each kind of share through the command line, with the
// share's credentials given by flags: Samba, ganesha's NFS, OpenSSH's SFTP
// and versitygw's S3, all on loopback.
func TestNetworkRepositoriesCLI(t *testing.T) {
	testenv.RequireTools(t, "sgdisk", "mkfs.ext4", "debugfs", "e2fsck")
	dir := t.TempDir()
	fx := testdisk.Build(t, dir, testdisk.Spec{Table: "gpt", Size: 32 << 20, Parts: []testdisk.Part{
		{FS: "ext4", Size: 24 << 20, Label: "pc1", Files: &testdisk.TreeOptions{Seed: 5, TotalBytes: 4 << 20, HardLinks: true, Symlinks: true}},
	}})
	src := fx.Path
	pw := filepath.Join(dir, "repo-pw")
	os.WriteFile(pw, []byte("repo secret\n"), 0o600)

	smb := smbtest.Start(t)
	nfs := nfstest.Start(t)
	sftp := sftptest.Start(t)
	s3 := s3test.Start(t)
	s3.MakeBucket(t, "images")
	cases := []struct {
		name  string
		loc   string
		flags []string
	}{
		{"smb", smb.URL("office/pc1").String(), []string{"--share-password-file", smb.PasswordFile}},
		{"nfs", nfs.URL("office/pc1").String(), nil},
		{"sftp", sftp.URL("root", filepath.Join(sftp.Dir, "images")).String(), []string{"--identity-file", sftp.IdentityFile, "--known-hosts", sftp.KnownHosts}},
		{"s3", s3.URL("images", "pc1").String(), []string{"--credentials-file", s3.CredentialsFile, "--ca-file", s3.CAFile}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"backup", "--from", src, "--repo", tc.loc, "--password-file", pw, "--progress", "none"}, tc.flags...)
			if code, out, errs := runCapture(t, args...); code != 0 || !strings.Contains(out, "Snapshot ") {
				t.Fatalf("backup to %s: %d\n%s\n%s", tc.loc, code, out, errs)
			}
			args = append([]string{"verify", "--repo", tc.loc, "--password-file", pw, "--read-data", "--progress", "none"}, tc.flags...)
			if code, out, errs := runCapture(t, args...); code != 0 {
				t.Fatalf("verify: %d\n%s\n%s", code, out, errs)
			}
			dst := testdisk.EmptyFile(t, filepath.Join(t.TempDir(), "dst.img"), 40<<20)
			args = append([]string{"restore", "--repo", tc.loc, "--password-file", pw, "--to", dst, "--yes", "--progress", "none"}, tc.flags...)
			if code, out, errs := runCapture(t, args...); code != 0 {
				t.Fatalf("restore: %d\n%s\n%s", code, out, errs)
			}
			testdisk.CheckCopy(t, fx, dst)
		})
	}

	t.Run("refusals", func(t *testing.T) {
		// No known_hosts entry and no terminal to ask: the unknown host
		// key is refused, with its fingerprint, before any login.
		empty := filepath.Join(dir, "known_hosts")
		os.WriteFile(empty, nil, 0o600)
		code, _, errs := runCapture(t, "snapshots", "--repo", cases[2].loc, "--password-file", pw, "--identity-file", sftp.IdentityFile, "--known-hosts", empty)
		if code == 0 || !strings.Contains(errs, sftp.Fingerprint) {
			t.Errorf("unknown host key: %d %s", code, errs)
		}
		bad := filepath.Join(dir, "bad-pw")
		os.WriteFile(bad, []byte("not the password\n"), 0o600)
		code, _, errs = runCapture(t, "snapshots", "--repo", cases[0].loc, "--password-file", pw, "--share-password-file", bad)
		if code == 0 || !strings.Contains(strings.ToLower(errs), "logon failure") || strings.Contains(errs, "not the password") {
			t.Errorf("wrong share password: %d %s", code, errs)
		}
		code, _, errs = runCapture(t, "snapshots", "--repo", cases[1].loc, "--password-file", bad)
		if code == 0 || !strings.Contains(errs, "wrong password") {
			t.Errorf("wrong repository password: %d %s", code, errs)
		}
	})
}

// TestSavedCredentials keeps a share password only in a file its owner
// alone can read, and refuses one others could have read.
func TestSavedCredentials(t *testing.T) {
	t.Setenv("LIFEBOAT_CREDENTIALS_DIR", filepath.Join(t.TempDir(), "creds"))
	loc := "smb://corp;bob@nas.example:4455/backups/pc1"
	p, err := savePassword(loc, []byte("hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v", p, fi.Mode())
	}
	if fi, _ := os.Stat(filepath.Dir(p)); fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s has mode %v", filepath.Dir(p), fi.Mode())
	}
	if strings.Contains(p, "hunter2") {
		t.Fatal("the file name holds the password")
	}
	got, err := savedPasswordFile(loc)
	if err != nil || got != p {
		t.Fatalf("saved file: %q %v", got, err)
	}
	if other, err := savedPasswordFile("smb://corp;bob@nas.example:4455/other"); err != nil || other != "" {
		t.Fatalf("another share found %q %v", other, err)
	}
	os.Chmod(p, 0o644)
	if _, err := savedPasswordFile(loc); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("world-readable saved password used: %v", err)
	}
}
