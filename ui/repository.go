package ui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rivo/tview"
	"golang.org/x/sys/unix"

	"github.com/lifeboat/lifeboat/engine/blockdev"
	"github.com/lifeboat/lifeboat/engine/disks"
	"github.com/lifeboat/lifeboat/engine/repo"
	"github.com/lifeboat/lifeboat/netshare"
)

// openedRepo is a repository chosen in a wizard.
type openedRepo struct {
	r        *repo.Repo
	location string
	// dir is a local repository's directory, which a restore's target may
	// not hold; empty for network shares.
	dir     string
	created bool
}

// repoPlace is one entry of the repository list.
type repoPlace struct {
	title, about string
	// mountpoint is where the file system already is; empty when it must
	// be mounted (disk and part) or the location is typed (typed).
	mountpoint string
	disk       *disks.Disk
	part       disks.Partition
	typed      bool
}

// kernelFS maps a file system name to the kernel's driver, when this
// kernel has it (/proc/filesystems): only those can hold a repository.
func kernelFS(fs string) (string, bool) {
	driver := fs
	switch {
	case fs == "ntfs":
		driver = "ntfs3"
	case fs == "vfat" || strings.HasPrefix(fs, "fat"):
		driver = "vfat"
	}
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return "", false
	}
	have := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 1 {
			have[f[0]] = true
		}
	}
	if have[driver] {
		return driver, true
	}
	// ext4's driver mounts ext2 and ext3 when they are not built apart.
	if (fs == "ext2" || fs == "ext3") && have["ext4"] {
		return "ext4", true
	}
	return "", false
}

// repoPlaces lists where a repository can be: mounted file systems,
// unmounted partitions with a file system the kernel mounts, and a typed
// location (a directory, or a network share once those are supported).
func (a *app) repoPlaces() []repoPlace {
	var out []repoPlace
	for i := range a.diskList {
		d := &a.diskList[i]
		for _, p := range d.Partitions {
			name := fmt.Sprintf("%s partition %d", filepath.Base(d.Path), p.Number)
			what := fmt.Sprintf("%s %q %s", dash(p.FS), partLabel(p), disks.HumanBytes(p.Size))
			if p.Used >= 0 {
				what += fmt.Sprintf(", %s free", disks.HumanBytes(max(0, p.Size-p.Used)))
			}
			if len(p.Mounts) > 0 {
				out = append(out, repoPlace{title: "folder on " + p.Mounts[0], about: name + ": " + what, mountpoint: p.Mounts[0], disk: d, part: p})
				continue
			}
			if p.Swap || len(p.Holders) > 0 || p.FS == "" || p.Raw {
				continue
			}
			if _, ok := kernelFS(p.FS); !ok {
				continue
			}
			out = append(out, repoPlace{title: name + " " + what, about: "not mounted: mounted for writing only when chosen", disk: d, part: p})
		}
	}
	out = append(out, repoPlace{title: "Type a location", about: "a directory path (or a network share, once this build has them)", typed: true})
	return out
}

// chooseRepo asks where the repository is, mounts its file system when
// needed, and opens it (creating it when create is set and none is
// there). The mount and the repository are released when the user goes
// home.
func (a *app) chooseRepo(title string, create bool, back func(), chosen func(*openedRepo)) {
	places := a.repoPlaces()
	l := a.newList()
	for _, p := range places {
		l.AddItem(p.title, "    "+p.about, 0, nil)
	}
	pick := func() {
		q := "Where is the repository? A file system, or a location typed in."
		if create {
			q = "Where do the snapshots go? A file system (a new repository is made in a folder on it), or a location typed in."
		}
		a.step(title, q, l, listHelp)
	}
	l.SetDoneFunc(back)
	l.SetSelectedFunc(func(i int, _, _ string, _ rune) {
		pl := places[i]
		if pl.typed || pl.mountpoint != "" {
			def := ""
			if pl.mountpoint != "" {
				def = filepath.Join(pl.mountpoint, "lifeboat-repo")
			}
			a.repoForm(title, def, create, pick, chosen)
			return
		}
		var dir string
		a.async("Mounting "+pl.title, func() (err error) {
			dir, err = a.mountPartition(a.ctx, pl.disk, pl.part)
			return err
		}, func(err error) {
			if err != nil {
				a.failed("Mount the file system", err, pick)
				return
			}
			a.repoForm(title, filepath.Join(dir, "lifeboat-repo"), create, pick, chosen)
		})
	})
	pick()
}

// repoForm asks for the location and the password, then opens it.
func (a *app) repoForm(title, location string, create bool, back func(), chosen func(*openedRepo)) {
	f := tview.NewForm()
	a.styleForm(f)
	f.AddInputField("Location ", location, 0, nil, func(s string) { location = s })
	var password string
	f.AddPasswordField("Password ", "", 30, '*', func(s string) { password = s })
	// A share's own credentials, apart from the repository's password:
	// SMB and SFTP passwords, and the SFTP server's host key, which is
	// never trusted unseen.
	var share shareCreds
	f.AddPasswordField("Share pw ", "", 30, '*', func(s string) { share.password = s })
	f.AddInputField("Host key ", "", 0, nil, func(s string) { share.hostKey = strings.TrimSpace(s) })
	f.AddButton("Open", func() {
		var or *openedRepo
		a.async("Opening the repository", func() (err error) {
			or, err = a.openRepo(a.ctx, strings.TrimSpace(location), password, share, create)
			return err
		}, func(err error) {
			switch {
			case errors.Is(err, repo.ErrPasswordRequired):
				a.message("Password", "This repository is encrypted: type its password.", nil)
			case err != nil:
				a.failed("Open the repository", err, nil)
			default:
				chosen(or)
			}
		})
	})
	f.AddButton("Back", back)
	f.SetCancelFunc(back)
	f.SetBorder(true)
	q := "A directory or a share (smb://, nfs://, sftp://, s3://) and the repository's password (empty: none); a share's own password and an SFTP server's host key (SHA256:...) below."
	if create {
		q = "The repository's location. A new one is made there when none is; with a password it is encrypted (keep the password: without it nothing can be restored)."
	}
	a.step(title, q, f, "Tab/↓ next field  Enter press  Esc back")
}

// shareCreds are what the repository form takes for a network share.
type shareCreds struct {
	password, hostKey string
}

// options turns them into the backend's options: the typed password is
// what a share that asks for one gets; an SFTP host key not given here or
// in known_hosts is refused (the error shows its fingerprint, to compare
// and type in).
func (c shareCreds) options() netshare.Options {
	o := netshare.Options{HostKeyFingerprint: c.hostKey}
	if c.password != "" {
		o.AskPassword = func(string) ([]byte, error) { return []byte(c.password), nil }
	}
	return o
}

// openRepo opens (or with create makes) the repository at location and
// registers its release. Network locations are retried with backoff.
func (a *app) openRepo(ctx context.Context, location, password string, share shareCreds, create bool) (*openedRepo, error) {
	if location == "" {
		return nil, errors.New("no location given")
	}
	be, err := netshare.OpenWith(ctx, location, share.options())
	if err != nil {
		return nil, err
	}
	if netshare.IsNetwork(location) {
		be = netshare.WithRetry(be, netshare.RetryPolicy{})
	}
	var pw []byte
	if password != "" {
		pw = []byte(password)
	}
	or := &openedRepo{location: location, dir: netshare.LocalDir(location)}
	or.r, err = repo.Open(ctx, be, pw)
	if errors.Is(err, repo.ErrNotRepository) && create {
		or.r, err = repo.Init(ctx, be, repo.InitOptions{Password: pw})
		if err == nil {
			or.created = true
			enc := "unencrypted"
			if pw != nil {
				enc = "encrypted"
			}
			a.logf("created %s repository %s at %s", enc, or.r.Config().ID, location)
		}
	}
	if err != nil {
		be.Close()
		return nil, fmt.Errorf("open repository %s: %w", location, err)
	}
	a.cleanups = append(a.cleanups, func() { or.r.Close(); be.Close() })
	return or, nil
}

// mountPartition mounts p of d read-write under MountDir/repo-N, through
// a loop device when d is an image file, and registers the unmount.
func (a *app) mountPartition(ctx context.Context, d *disks.Disk, p disks.Partition) (string, error) {
	driver, ok := kernelFS(p.FS)
	if !ok {
		return "", fmt.Errorf("mount partition %d of %s: this kernel cannot mount %s", p.Number, d.Path, p.FS)
	}
	dev := p.Path
	var loop *blockdev.Loop
	if dev == "" || d.IsFile {
		var err error
		loop, err = blockdev.AttachLoop(ctx, d.Path, p.Start, p.Size, false)
		if err != nil {
			return "", fmt.Errorf("mount partition %d of %s: %w", p.Number, d.Path, err)
		}
		dev = loop.Path
	}
	a.mountSeq++
	dir := filepath.Join(a.mountDir(), fmt.Sprintf("repo-%d", a.mountSeq))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		if loop != nil {
			loop.Detach()
		}
		return "", fmt.Errorf("mount partition %d of %s: %w", p.Number, d.Path, err)
	}
	if err := unix.Mount(dev, dir, driver, 0, ""); err != nil {
		if loop != nil {
			loop.Detach()
		}
		os.Remove(dir)
		return "", fmt.Errorf("mount %s (%s, partition %d of %s) on %s: %w", dev, p.FS, p.Number, d.Path, dir, err)
	}
	a.logf("mounted %s (partition %d of %s) read-write on %s", dev, p.Number, d.Path, dir)
	a.cleanups = append(a.cleanups, func() {
		if err := unix.Unmount(dir, 0); err != nil {
			a.logf("unmount %s: %v", dir, err)
			return
		}
		if loop != nil {
			loop.Detach()
		}
		os.Remove(dir)
		a.logf("unmounted %s", dir)
	})
	return dir, nil
}
