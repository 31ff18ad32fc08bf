#!/usr/bin/env bash
# Makes the two demo disks both demos use: DIR/old-disk.img (1 GiB, GPT: an
# EFI system partition, a Linux root and a data partition, with files) and
# DIR/new-ssd.img (2 GiB, empty). Usage: build/demo-disks.sh DIR
set -euo pipefail
export PATH=/usr/sbin:/sbin:$PATH
dir=${1:?usage: build/demo-disks.sh DIR}
mkdir -p "$dir"
old=$dir/old-disk.img new=$dir/new-ssd.img
rm -f "$old" "$new"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

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
