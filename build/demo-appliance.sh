#!/usr/bin/env bash
# The appliance demo: boots out/lifeboat.iso in QEMU on this terminal (serial
# console, -nographic) with two virtio disks: an "old disk" holding a small
# Linux system and data (serial OLD-DISK) and an empty, larger "new SSD"
# (serial NEW-SSD), so the clone can be run inside the appliance.
# Usage: build/demo-appliance.sh [OUTDIR]   (default out; the disks go to OUTDIR/demo)
# LIFEBOAT_ACCEL=kvm uses KVM where the host can run guests; TCG otherwise.
set -euo pipefail
export PATH=/usr/local/go/bin:/usr/sbin:/sbin:$PATH
out=${1:-out}
dir=$out/demo
iso=$out/lifeboat.iso
accel=${LIFEBOAT_ACCEL:-tcg}

for tool in qemu-system-x86_64 sgdisk mkfs.fat mcopy mkfs.ext4; do
  command -v "$tool" >/dev/null || { echo "demo-appliance: $tool is missing: run build/deps.sh (or make deps)" >&2; exit 1; }
done

if [ ! -f "$iso" ]; then
  echo "== Building the appliance into $out (go run ./cmd/lifeboat-build)"
  go run ./cmd/lifeboat-build --out "$out" --version "${VERSION:-demo}"
fi

old=$dir/old-disk.img new=$dir/new-ssd.img
echo "== Making the old disk ($old) and the new SSD ($new)"
"$(dirname "$0")/demo-disks.sh" "$dir"

cat <<HINT

== Booting Lifeboat ($iso) in QEMU on this terminal (serial console).
   The console interface comes up after "LIFEBOAT-READY" (about a minute under TCG). Choose Disk Clone
   (arrows, Enter), the old disk (serial OLD-DISK), then the new SSD (NEW-SSD), read the plan, and type
   the last four characters of the new disk's serial (-SSD) to start. Shell on the home screen gives a
   command line (lifeboat clone --from serial:OLD-DISK --to serial:NEW-SSD does the same there).
   Quit QEMU with Ctrl-A then X, or choose Power off.

HINT
sleep 2
exec qemu-system-x86_64 -accel "$accel" -m 1024 -nographic -no-reboot \
  -device virtio-rng-pci -cdrom "$iso" -boot d \
  -drive file="$old",if=none,id=old,format=raw -device virtio-blk-pci,drive=old,serial=OLD-DISK \
  -drive file="$new",if=none,id=new,format=raw -device virtio-blk-pci,drive=new,serial=NEW-SSD
