#!/bin/bash
# Runs native/test/bilog_test.c's binaries (given as arguments) on a fresh ext4 loop
# filesystem each, cleaning up mounts and loop devices whatever happens. Skips (exit 0, one
# line) when not root or the kernel predates pre-content events (Linux 6.14).
#   usage: bilog_test.sh BINARY...      (SEED=n to repeat a run; default: random)
set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "bilog_test: skipped (needs root)"; exit 0; fi
IFS=. read -r MAJ MIN _ < /proc/sys/kernel/osrelease
if [ "$MAJ" -lt 6 ] || { [ "$MAJ" = 6 ] && [ "${MIN%%[!0-9]*}" -lt 14 ]; }; then
  echo "bilog_test: skipped (Linux $MAJ.$MIN has no pre-content events)"; exit 0
fi
W=$(mktemp -d /var/tmp/bfs-bilog-ctest-XXXXXX)
DEV=""
cleanup() {
  mountpoint -q "$W/mnt" && umount "$W/mnt" || true
  [ -n "$DEV" ] && losetup -d "$DEV" || true
  rm -rf "$W"
}
trap cleanup EXIT
for BIN in "$@"; do
  truncate -s 200M "$W/img"
  mkfs.ext4 -q -F "$W/img"
  DEV=$(losetup --find --show "$W/img")
  mkdir -p "$W/mnt"
  mount "$DEV" "$W/mnt"
  SEED=${SEED:-$RANDOM}
  echo "$(basename "$BIN") SEED=$SEED"
  # the kernel releases a writer blocked on the mark when the process dies: a hang is killed
  timeout -s KILL 300 "$BIN" "$W/mnt" "$SEED"
  umount "$W/mnt"
  losetup -d "$DEV"
  DEV=""
  rm -f "$W/img"
done
