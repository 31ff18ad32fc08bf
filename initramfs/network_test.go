package initramfs_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat/lifeboat/engine/repo"
	"github.com/lifeboat/lifeboat/internal/testdisk"
	"github.com/lifeboat/lifeboat/internal/testenv"
	"github.com/lifeboat/lifeboat/netshare/local"
	"github.com/lifeboat/lifeboat/netshare/nfs/nfstest"
	"github.com/lifeboat/lifeboat/netshare/smb/smbtest"
)

// TestNetworkUp boots the appliance with a virtio NIC on QEMU's user-mode
// network and runs "lifeboat network up" as the unattended job: the
// driver is loaded by modalias, DHCPv4 gets QEMU's fixed lease (10.0.2.15,
// router 10.0.2.2, DNS 10.0.2.3), the kernel's SLAAC address from QEMU's
// router advertisement is reported, and the shell afterwards finds the DNS
// server in /etc/resolv.conf.
func TestNetworkUp(t *testing.T) {
	rep := netboot(t)
	extra := []string{"-nic", "user,model=virtio-net-pci"}
	lines, hit, _ := qemuTalk(t, rep, "lifeboat.run=network,up", extra, []string{"LIFEBOAT-JOB:"}, time.Second,
		"cat /etc/resolv.conf; echo NET-$((6*7))", "NET-42")
	all := strings.Join(lines, "\n")
	if strings.TrimSpace(hit) != "LIFEBOAT-JOB: ok" {
		t.Fatalf("job result %q; console:\n%s", hit, tail(lines, 60))
	}
	if !strings.Contains(all, "module virtio_net loaded") {
		t.Errorf("virtio_net was not loaded by modalias; console:\n%s", tail(lines, 80))
	}
	lease := regexp.MustCompile(`(?m)^(\w+): address 10\.0\.2\.15/24 \(DHCPv4 lease from 10\.0\.2\.2 for [0-9hms]+\), router 10\.0\.2\.2, dns 10\.0\.2\.3\r?$`)
	if !lease.MatchString(all) {
		t.Errorf("no DHCPv4 lease of 10.0.2.15 with router 10.0.2.2 on the console:\n%s", tail(lines, 60))
	}
	// QEMU advertises fec0::/64: the kernel's SLAAC address is reported.
	if !regexp.MustCompile(`(?m)^\w+: IPv6 fec0::[0-9a-f:]+/64$`).MatchString(all) {
		t.Errorf("no SLAAC address in fec0::/64 on the console:\n%s", tail(lines, 60))
	}
	if !regexp.MustCompile(`(?m)^nameserver 10\.0\.2\.3\r?$`).MatchString(all) {
		t.Errorf("/etc/resolv.conf does not name 10.0.2.3; console:\n%s", tail(lines, 30))
	}
	t.Logf("console, last lines:\n%s", tail(lines, 20))
}

// TestBootJobBackupToShare is the fleet use end to end: the appliance boots
// with a job file on a small disk labelled LBJOBS (lifeboat.job), gets a
// lease from QEMU's user network, backs the disk with serial SRC1 up to an
// SMB share served by Samba on the host (QEMU's 10.0.2.2 is the host's
// loopback), restores that image onto the disk with serial DST1, keeps the
// job's log in the repository, and powers off. The host then checks the
// restored disk (fsck, every file) and finds the snapshot and the log.
func TestBootJobBackupToShare(t *testing.T) {
	rep := netboot(t)
	testenv.RequireTools(t, "mkfs.ext4", "sgdisk", "e2fsck", "debugfs")
	dir := t.TempDir()
	fx := testdisk.Build(t, dir, testdisk.Spec{Table: "gpt", Size: 48 * testdisk.MiB, Parts: []testdisk.Part{
		{FS: "ext4", Size: 40 * testdisk.MiB, Label: "pc1", Files: &testdisk.TreeOptions{Seed: 9, TotalBytes: 5 << 20, HardLinks: true, Symlinks: true, UTF8: true}},
	}})
	target := testdisk.EmptyFile(t, filepath.Join(dir, "dst.img"), 64*testdisk.MiB)
	srv := smbtest.Start(t)

	jobs := filepath.Join(dir, "jobs")
	loc := fmt.Sprintf("smb://%s@10.0.2.2:%d/%s/pc1", smbtest.User, srv.Port, smbtest.ShareName)
	share := "--share-password-file smb-pw --password-file repo-pw --progress none"
	job := "# nightly image of pc1, then a test restore\n" +
		"backup --from serial:SRC1 --repo " + loc + " --tag nightly " + share + "\n" +
		"lifeboat restore --repo " + loc + " --to serial:DST1 --yes " + share + "\n"
	for name, content := range map[string]string{"nightly.job": job, "repo-pw": "correct horse\n", "smb-pw": srv.Password + "\n"} {
		if err := os.MkdirAll(jobs, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(jobs, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	jobDisk := filepath.Join(dir, "jobs.img")
	mkfs, _ := testenv.LookPath("mkfs.ext4")
	if out, err := exec.Command(mkfs, "-q", "-L", "LBJOBS", "-d", jobs, jobDisk, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	extra := []string{"-nic", "user,model=virtio-net-pci",
		"-drive", "file=" + fx.Path + ",if=none,id=d0,format=raw", "-device", "virtio-blk-pci,drive=d0,serial=SRC1",
		"-drive", "file=" + target + ",if=none,id=d1,format=raw", "-device", "virtio-blk-pci,drive=d1,serial=DST1",
		"-drive", "file=" + jobDisk + ",if=none,id=d2,format=raw,readonly=on", "-device", "virtio-blk-pci,drive=d2,serial=JOBS",
	}
	lines, hit, exited := qemu(t, rep, "lifeboat.job=LABEL=LBJOBS:/nightly.job lifeboat.after=poweroff", extra, []string{"LIFEBOAT-JOB:"}, 2*time.Minute)
	all := strings.Join(lines, "\n")
	if strings.TrimSpace(hit) != "LIFEBOAT-JOB: ok" {
		t.Fatalf("job result %q; console:\n%s\nsmbd log:\n%s", hit, tail(lines, 80), srv.Log())
	}
	if !exited {
		t.Error("QEMU did not power off after the job")
	}
	for _, want := range []string{"job file LABEL=LBJOBS:/nightly.job (2 commands)", "address 10.0.2.15/24", "job log saved in the repository"} {
		if !strings.Contains(all, want) {
			t.Errorf("console lacks %q:\n%s", want, tail(lines, 60))
		}
	}
	if strings.Contains(all, srv.Password) {
		t.Error("the share password appeared on the console")
	}
	t.Logf("console, last lines:\n%s", tail(lines, 25))
	testdisk.CheckCopy(t, fx, target)

	// The repository on the share, opened on the host as a local one.
	ctx := context.Background()
	be, err := local.New(filepath.Join(srv.Dir, "pc1"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	snaps, err := r.Snapshots(ctx)
	if err != nil || len(snaps) != 1 || !slices.Contains(snaps[0].Tags, "nightly") {
		t.Fatalf("snapshots on the share: %v %+v", err, snaps)
	}
	logs, err := r.Logs(ctx)
	if err != nil || len(logs) != 1 {
		t.Fatalf("logs on the share: %v %+v", err, logs)
	}
	l, err := r.LoadLog(ctx, logs[0].ID)
	if err != nil || !strings.Contains(l.Text, "lifeboat: job: lifeboat backup --from serial:SRC1") {
		t.Fatalf("job log: %v\n%s", err, l.Text)
	}
}

// TestBootRunBackupRestoreNFS is the same round trip with one command per
// boot, through lifeboat.run: a first boot backs the SRC1 disk up to an
// NFS export served on the host by nfs-ganesha (an unencrypted repository,
// so no password file is needed), a second boot restores it onto DST1;
// each brings the network up by itself because its command names an
// nfs:// repository.
func TestBootRunBackupRestoreNFS(t *testing.T) {
	rep := netboot(t)
	testenv.RequireTools(t, "mkfs.ext4", "sgdisk", "e2fsck", "debugfs")
	dir := t.TempDir()
	fx := testdisk.Build(t, dir, testdisk.Spec{Table: "gpt", Size: 40 * testdisk.MiB, Parts: []testdisk.Part{
		{FS: "ext4", Size: 32 * testdisk.MiB, Label: "pc2", Files: &testdisk.TreeOptions{Seed: 11, TotalBytes: 4 << 20, HardLinks: true, Symlinks: true}},
	}})
	target := testdisk.EmptyFile(t, filepath.Join(dir, "dst.img"), 48*testdisk.MiB)
	srv := nfstest.Start(t)
	u := srv.URL("pc2")
	u.Host = fmt.Sprintf("10.0.2.2:%d", srv.Port) // the host, as the guest sees it
	loc := u.String()
	disksArgs := []string{"-nic", "user,model=virtio-net-pci",
		"-drive", "file=" + fx.Path + ",if=none,id=d0,format=raw", "-device", "virtio-blk-pci,drive=d0,serial=SRC1",
		"-drive", "file=" + target + ",if=none,id=d1,format=raw", "-device", "virtio-blk-pci,drive=d1,serial=DST1",
	}
	for _, job := range []string{
		"backup,--from,serial:SRC1,--repo," + loc + ",--progress,none",
		"restore,--repo," + loc + ",--to,serial:DST1,--yes,--progress,none",
	} {
		lines, hit, exited := qemu(t, rep, "lifeboat.run="+job+" lifeboat.after=poweroff", disksArgs, []string{"LIFEBOAT-JOB:"}, 2*time.Minute)
		if strings.TrimSpace(hit) != "LIFEBOAT-JOB: ok" {
			t.Fatalf("lifeboat.run=%s: %q; console:\n%s\nganesha log:\n%s", job, hit, tail(lines, 60), srv.Log())
		}
		if !exited {
			t.Errorf("lifeboat.run=%s: QEMU did not power off", job)
		}
		if !strings.Contains(strings.Join(lines, "\n"), "address 10.0.2.15/24") {
			t.Errorf("lifeboat.run=%s: no lease on the console", job)
		}
		t.Logf("lifeboat.run=%s, console (end):\n%s", job, tail(lines, 8))
	}
	testdisk.CheckCopy(t, fx, target)
}
