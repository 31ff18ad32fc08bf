#!/usr/bin/env bash
# Side-by-side benchmark (not a test) of lifeboat backup and restore against
# Clonezilla's pipeline on the same ext4 source: partclone.ext4 -c | zstd
# -T0 -3 for the backup, zstd -dc | partclone.ext4 -r for the restore. Page
# cache dropped before each command; medians over RUNS.
#
#   sudo bench/backup.sh            # uses bench/work/ext4.img (made by bench/run.sh)
set -euo pipefail
export PATH=/usr/sbin:/sbin:$PATH
cd "$(dirname "$0")/.."
LIFEBOAT=${LIFEBOAT:-$PWD/out/lifeboat}
RUNS=${RUNS:-3}
work=${BENCH_WORK:-$PWD/bench/work}
src=$work/ext4.img
[ "$(id -u)" -eq 0 ] || { echo "bench/backup.sh: needs root" >&2; exit 1; }
[ -f "$src" ] || { echo "bench/backup.sh: $src missing: run bench/run.sh first" >&2; exit 1; }
results=$work/backup-results.tsv
: >"$results"

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
measure() {
  local name=$1; shift
  drop
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f %M -o "$work/rss" bash -c "$*" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; return 1; }
  sync
  t1=$(date +%s.%N)
  printf '%s\t%.3f\t%s\n' "$name" "$(echo "$t1 - $t0" | bc)" "$(tail -1 "$work/rss")" | tee -a "$results"
}
dd if="$src" of=/dev/null bs=4M status=none # same host-cache state for every run
size=$(stat -c %s "$src")

for i in $(seq "$RUNS"); do
  rm -rf "$work/repo" "$work/pc.img.zst"
  measure backup-lifeboat "$LIFEBOAT backup --from $src --repo $work/repo --progress none"
  measure backup2-lifeboat "$LIFEBOAT backup --from $src --repo $work/repo --progress none"
  measure backup-partclone-zstd "partclone.ext4 -q -c -s $src -o - | zstd -q -T0 -3 -o $work/pc.img.zst"
  printf 'size-lifeboat\t%s\t0\n' "$(du -sb "$work/repo" | cut -f1)" >>"$results"
  printf 'size-partclone-zstd\t%s\t0\n' "$(stat -c %s "$work/pc.img.zst")" >>"$results"

  rm -f "$work/dst.img"; truncate -s "$size" "$work/dst.img"
  measure restore-lifeboat "$LIFEBOAT restore --repo $work/repo --to $work/dst.img --yes --layout keep --progress none"
  rm -f "$work/dst.img"; truncate -s "$size" "$work/dst.img"
  measure restore-partclone-zstd "zstd -q -dc $work/pc.img.zst | partclone.ext4 -q -r -s - -O $work/dst.img"
done
rm -f "$work/dst.img"

median() { grep -P "^$1\t" "$results" | cut -f"$2" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "medians over $RUNS runs:"
for n in backup-lifeboat backup2-lifeboat backup-partclone-zstd restore-lifeboat restore-partclone-zstd; do
  printf '%-24s %8s s %8s KiB\n' "$n" "$(median "$n" 2)" "$(median "$n" 3)"
done
printf '%-24s %12s bytes\n' size-lifeboat "$(median size-lifeboat 2)" size-partclone-zstd "$(median size-partclone-zstd 2)"
ratio() { echo "scale=${3:-3}; $(median "$1" 2) / $(median "$2" 2)" | bc; }
echo
echo "backup:  lifeboat / partclone+zstd   $(ratio backup-lifeboat backup-partclone-zstd)   goal <= 0.7"
echo "size:    lifeboat / partclone+zstd   $(ratio size-lifeboat size-partclone-zstd 4)   goal <= 1.0"
echo "restore: lifeboat / zstd+partclone   $(ratio restore-lifeboat restore-partclone-zstd)   goal <= 0.8"
echo "second backup / first backup         $(ratio backup2-lifeboat backup-lifeboat)   goal <= 0.3"
