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

say "Making the old disk (GPT: EFI system partition, Linux root, data; 1 GiB) and an empty 2 GiB new SSD"
"$(dirname "$0")/demo-disks.sh" "$dir"

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
