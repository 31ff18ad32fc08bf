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

mkdir -p "$dir"
old=$dir/old-disk.img new=$dir/new-ssd.img
rm -f "$old" "$new"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The old disk, as build/demo.sh makes it: GPT, EFI system partition,
# Linux root, data (1 GiB).
echo "== Making the old disk ($old) and the new SSD ($new)"
truncate -s 1G "$old"
sgdisk -n 1:2048:+64M -t 1:ef00 -c 1:"EFI system" \
          -n 2:0:+512M -t 2:8304 -c 2:"root" \
          -n 3:0:+256M -t 3:8300 -c 3:"data" "$old" >/dev/null
mkdir -p "$work/root/etc" "$work/root/boot" "$work/root/home/demo" "$work/data/photos" "$work/esp/EFI/debian"
printf 'PRETTY_NAME="Demo Linux"\nID=demo\n' >"$work/root/etc/os-release"
echo "demo" >"$work/root/etc/hostname"
head -c 8M /dev/urandom >"$work/root/boot/vmlinuz-demo"
head -c 4M /dev/urandom >"$work/root/boot/initrd.img-demo"
seq 1 200000 >"$work/root/home/demo/numbers.txt"
for i in $(seq 1 40); do head -c 512K /dev/urandom >"$work/data/photos/img$i.jpg"; done
head -c 2M /dev/urandom >"$work/esp/EFI/debian/grubx64.efi"
off() { sgdisk -i "$1" "$old" | awk '/First sector/ {print $3 * 512}'; }
sz() { sgdisk -i "$1" "$old" | awk '/Partition size/ {print $3 * 512}'; }
mkfs.fat -F 32 -n ESP -C "$work/esp.img" $(( $(sz 1) / 1024 )) >/dev/null
mcopy -s -i "$work/esp.img" "$work/esp/EFI" ::/
dd if="$work/esp.img" of="$old" bs=1M seek=$(( $(off 1) / 1048576 )) conv=notrunc,sparse status=none
mkfs.ext4 -q -L root -d "$work/root" -E offset=$(off 2) "$old" $(( $(sz 2) / 1024 ))k
mkfs.ext4 -q -L data -d "$work/data" -E offset=$(off 3) "$old" $(( $(sz 3) / 1024 ))k
truncate -s 2G "$new"

cat <<HINT

== Booting Lifeboat ($iso) in QEMU on this terminal (serial console).
   When "LIFEBOAT-READY" appears, press Enter for the shell and clone the old disk onto the new SSD:
       lifeboat clone --from serial:OLD-DISK --to serial:NEW-SSD
   then check it with:  lifeboat disks
   Quit QEMU with Ctrl-A then X.

HINT
sleep 2
exec qemu-system-x86_64 -accel "$accel" -m 1024 -nographic -no-reboot \
  -device virtio-rng-pci -cdrom "$iso" -boot d \
  -drive file="$old",if=none,id=old,format=raw -device virtio-blk-pci,drive=old,serial=OLD-DISK \
  -drive file="$new",if=none,id=new,format=raw -device virtio-blk-pci,drive=new,serial=NEW-SSD
