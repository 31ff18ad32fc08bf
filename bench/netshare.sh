#!/usr/bin/env bash
# Side-by-side benchmark (not a test) of a backup into a local directory and
# into each network backend served on loopback (Samba, nfs-ganesha, OpenSSH,
# versitygw), in rounds; prints medians and each backend's speed relative
# to local (goal: at least 0.8). Needs root (the servers) and build/deps.sh.
#
#   sudo bench/netshare.sh                      # source: an ext4 image of /usr/share
#   sudo LIFEBOAT_BENCH_IMAGE=bench/work/ext4.img ROUNDS=3 bench/netshare.sh
#   sudo COLD=1 bench/netshare.sh               # page cache dropped before each backup
#   sudo ONLY=local,s3 bench/netshare.sh        # only these backends
#   sudo PIN=1 bench/netshare.sh                # servers on the last core, backups on the others
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/netshare.sh: needs root (it starts smbd, ganesha, sshd)" >&2; exit 1; }
if [ -n "${LIFEBOAT_BENCH_IMAGE:-}" ]; then LIFEBOAT_BENCH_IMAGE=$(realpath "$LIFEBOAT_BENCH_IMAGE"); export LIFEBOAT_BENCH_IMAGE; fi
go test -run '^$' -bench BenchmarkBackends -benchtime 1x -timeout 60m ./netshare/roundtrip | grep -v '^\(goos\|goarch\|pkg\|cpu\|PASS\|ok\|BenchmarkBackends\)'
