#!/usr/bin/env bash
# Side-by-side benchmarks (not tests): lifeboat clone against the tools users
# would otherwise pick, on the same source, in one run, page cache dropped
# before each run. Prints every run, then medians and ratios.
#
#   bench/run.sh                 # ext4 (8 GiB holding /usr/lib) and NTFS
#   RUNS=5 BENCH_TREE=/usr/share bench/run.sh
#
# Needs root (dropping caches, ntfs-3g mounts) and about 3x the partition
# size free under bench/work.
set -euo pipefail
export PATH=/usr/sbin:/sbin:$PATH
cd "$(dirname "$0")/.."
LIFEBOAT=${LIFEBOAT:-$PWD/out/lifeboat}
RUNS=${RUNS:-3}
TREE=${BENCH_TREE:-/usr/lib}
EXT_SIZE=${EXT_SIZE:-8G}
NTFS_SIZE=${NTFS_SIZE:-4G}
NTFS_FILL=${NTFS_FILL:-/usr/lib/x86_64-linux-gnu}
work=${BENCH_WORK:-$PWD/bench/work}
mkdir -p "$work"
results=$work/results.tsv
: >"$results"

[ "$(id -u)" -eq 0 ] || { echo "bench/run.sh: needs root (drop caches, mounts)" >&2; exit 1; }

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# measure NAME CMD...: runs CMD with caches dropped, records seconds and peak RSS.
measure() {
  local name=$1; shift
  drop
  local t0 t1 rss
  t0=$(date +%s.%N)
  /usr/bin/time -f %M -o "$work/rss" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; return 1; }
  sync
  t1=$(date +%s.%N)
  rss=$(tail -1 "$work/rss")
  printf '%s\t%.3f\t%s\n' "$name" "$(echo "$t1 - $t0" | bc)" "$rss" | tee -a "$results"
}

if [ ! -f "$work/ext4.img" ]; then
  echo "making the ext4 source: $EXT_SIZE holding $TREE (this takes a while)"
  truncate -s "$EXT_SIZE" "$work/ext4.img"
  mkfs.ext4 -q -F -d "$TREE" "$work/ext4.img"
fi
if [ ! -f "$work/ntfs.img" ]; then
  echo "making the NTFS source: $NTFS_SIZE holding $NTFS_FILL"
  truncate -s "$NTFS_SIZE" "$work/ntfs.img"
  mkntfs -q -F -Q "$work/ntfs.img"
  mkdir -p "$work/mnt"
  ntfs-3g "$work/ntfs.img" "$work/mnt"
  cp -a "$NTFS_FILL" "$work/mnt/" 2>/dev/null || true
  umount "$work/mnt"
fi
echo "ext4 source: $(dumpe2fs -h "$work/ext4.img" 2>/dev/null | awk -F: '/Block count/ {b=$2} /Free blocks/ {f=$2} /Block size/ {s=$2} END {printf "%.2f GiB used", (b-f)*s/2^30}')"

# The virtual disk under this machine has a cache of its own that
# drop_caches does not reach: read each source once so every run, whichever
# comes first, starts from the same state.
dd if="$work/ext4.img" of=/dev/null bs=4M status=none
dd if="$work/ntfs.img" of=/dev/null bs=4M status=none

fresh() { rm -f "$1"; truncate -s "$2" "$1"; }
size_of() { stat -c %s "$1"; }

for i in $(seq "$RUNS"); do
  fresh "$work/dst.img" "$(size_of "$work/ext4.img")"
  measure ext4-lifeboat "$LIFEBOAT" clone --from "$work/ext4.img" --to "$work/dst.img" --yes --progress none --layout keep
  rm -f "$work/dst.img"
  measure ext4-e2image e2image -ra -p "$work/ext4.img" "$work/dst.img"
  fresh "$work/dst.img" "$(size_of "$work/ext4.img")"
  measure ext4-dd dd if="$work/ext4.img" of="$work/dst.img" bs=4M conv=notrunc,fsync status=none

  fresh "$work/dst.img" "$(size_of "$work/ntfs.img")"
  measure ntfs-lifeboat "$LIFEBOAT" clone --from "$work/ntfs.img" --to "$work/dst.img" --yes --progress none --layout keep
  fresh "$work/dst.img" "$(size_of "$work/ntfs.img")"
  measure ntfs-ntfsclone ntfsclone -q --overwrite "$work/dst.img" "$work/ntfs.img"
  fresh "$work/dst.img" "$(size_of "$work/ntfs.img")"
  measure ntfs-dd dd if="$work/ntfs.img" of="$work/dst.img" bs=4M conv=notrunc,fsync status=none
done
rm -f "$work/dst.img"

echo
echo "medians over $RUNS runs (seconds, peak RSS KiB):"
median() { grep -P "^$1\t" "$results" | cut -f"$2" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for n in ext4-lifeboat ext4-e2image ext4-dd ntfs-lifeboat ntfs-ntfsclone ntfs-dd; do
  printf '%-16s %8s s %8s KiB\n' "$n" "$(median "$n" 2)" "$(median "$n" 3)"
done
ratio() { echo "scale=3; $(median "$1" 2) / $(median "$2" 2)" | bc; }
echo
echo "lifeboat / e2image (ext4):  $(ratio ext4-lifeboat ext4-e2image)   goal <= 0.8"
echo "lifeboat / dd (ext4):       $(ratio ext4-lifeboat ext4-dd)   goal <= 0.35"
echo "lifeboat / ntfsclone:       $(ratio ntfs-lifeboat ntfs-ntfsclone)"
echo "lifeboat / dd (ntfs):       $(ratio ntfs-lifeboat ntfs-dd)"
