#!/usr/bin/env bash
# The demo: an "old disk" with a small Linux system and a data partition is
# cloned onto an empty, larger "new SSD", both disk-image files, and the
# result is shown and checked. The appliance issue turns this into a QEMU
# boot of the Lifeboat appliance on the same two disks.
set -euo pipefail
export PATH=/usr/sbin:/sbin:$PATH
dir=${1:-out/demo}
lifeboat=${LIFEBOAT:-out/lifeboat}
mkdir -p "$dir"
old=$dir/old-disk.img new=$dir/new-ssd.img
rm -f "$old" "$new"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Making the old disk: GPT, EFI system partition, Linux root, data (1 GiB)"
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

say "Making the new SSD: an empty 2 GiB disk"
truncate -s 2G "$new"

say "lifeboat disks --disk $old --disk $new"
"$lifeboat" disks --disk "$old" --disk "$new"

say "lifeboat clone --from $old --to $new --verify --yes"
"$lifeboat" clone --from "$old" --to "$new" --verify --yes

say "The new SSD after the clone"
"$lifeboat" disks --disk "$new"

say "Checking every file system on the new SSD"
for n in 1 2 3; do
  o=$(sgdisk -i $n "$new" | awk '/First sector/ {print $3 * 512}')
  if [ "$n" = 1 ]; then
    s=$(sgdisk -i $n "$new" | awk '/Partition size/ {print $3}')
    dd if="$new" of="$work/p.img" bs=512 skip=$((o / 512)) count="$s" status=none
    fsck.fat -n "$work/p.img" >/dev/null && echo "partition 1 (FAT32): clean"
  else
    e2fsck -fn "$new?offset=$o" >/dev/null 2>&1 && echo "partition $n (ext4): clean"
  fi
done
echo
echo "Demo disks are in $dir. Try: $lifeboat disks --disk $new"
