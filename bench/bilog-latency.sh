#!/bin/bash
# Writer latency under BI capture (issue 14 targets: p50 ≤ 50 µs, p99 ≤ 250 µs): a C writer
# does N random 4 KiB pwrites into a 256 MiB file on a fresh ext4 loop filesystem, without
# capture, with capture (first writes: each block's image copied), and again (blocks already
# logged). Figures, not assertions. Needs root and Linux ≥ 6.14. usage: bilog-latency.sh [N]
set -euo pipefail
N=${1:-20000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /var/tmp/bfs-bilog-lat-XXXXXX)
DEV=""
cleanup() {
  [ -n "${CAP_PID:-}" ] && kill -9 "$CAP_PID" 2>/dev/null || true
  mountpoint -q "$W/mnt" && umount "$W/mnt" || true
  [ -n "$DEV" ] && losetup -d "$DEV" || true
  rm -rf "$W"
}
trap cleanup EXIT
cc -O2 -o "$W/randw" "$ROOT/bench/bilog-randw.c"
truncate -s 1G "$W/img"
mkfs.ext4 -q -F "$W/img"
DEV=$(losetup --find --show "$W/img")
mkdir "$W/mnt"
mount "$DEV" "$W/mnt"
head -c 256M /dev/urandom > "$W/mnt/data"
sync
SIZE=$((256 << 20))
echo "no capture:          $("$W/randw" "$W/mnt/data" $SIZE "$N" 1)"
mkfifo "$W/ctl"
node "$ROOT/test/fixtures/bilog-capture.mjs" "$W/mnt" "$W/cap.bilog" 10000 < "$W/ctl" > "$W/cap.out" &
CAP_PID=$!
exec 9> "$W/ctl"
until [ -s "$W/cap.out" ]; do sleep 0.05; done
echo "capture: $(head -1 "$W/cap.out")"
echo "capture, first write: $("$W/randw" "$W/mnt/data" $SIZE "$N" 2)"
echo "capture, same blocks: $("$W/randw" "$W/mnt/data" $SIZE "$N" 2)"
echo stop >&9
wait "$CAP_PID" || true
CAP_PID=""
echo "capture stats: $(tail -1 "$W/cap.out")"
echo "no capture (after):  $("$W/randw" "$W/mnt/data" $SIZE "$N" 3)"
