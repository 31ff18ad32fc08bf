package initramfs_test

import (
	"regexp"
	"strings"
	"testing"
	"time"
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
