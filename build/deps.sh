#!/usr/bin/env bash
# Installs what building and testing Lifeboat needs on Debian or Ubuntu:
# the file-system and partitioning tools the engine calls and the tests use
# to make and check fixtures. Safe to run again; installs only what is missing.
set -euo pipefail

packages=(
  e2fsprogs dosfstools mtools ntfs-3g exfatprogs exfat-fuse fuse3
  gdisk fdisk util-linux xfsprogs btrfs-progs
  partclone zstd coreutils make gcc bc time
  linux-image-amd64 qemu-system-x86
  xorriso grub-common grub-pc-bin grub-efi-amd64-bin grub-efi-amd64-signed shim-signed ovmf ipxe-qemu
  # network repositories and bring-up: the servers the tests start on loopback
  samba openssh-server nfs-ganesha nfs-ganesha-vfs rpcbind dnsmasq iproute2 passwd
  # the bootable system disk the system-clone tests build (its tiny initramfs)
  busybox
  # the console UI's terminal test
  tmux
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "build/deps.sh: missing Debian packages: ${missing[*]}" >&2
    echo "run as root (sudo make ...) or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y "${missing[@]}"
fi

if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "build/deps.sh: Go is missing: sudo apt-get install -y golang-go" >&2
    exit 1
  fi
  # Debian's Go fetches the version go.mod asks for through the module proxy.
  apt-get install -y golang-go
fi

# The S3 server the tests start on loopback: versitygw (Apache-2.0) has no
# Debian package; build it outside this module so it never enters go.mod.
go=$(command -v go || echo /usr/local/go/bin/go)
gobin=$("$go" env GOPATH)/bin
if ! command -v versitygw >/dev/null 2>&1 && [ ! -x "$gobin/versitygw" ]; then
  (cd /tmp && GOFLAGS=-mod=mod "$go" install github.com/versity/versitygw/cmd/versitygw@v1.8.0)
fi
