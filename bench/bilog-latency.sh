#!/bin/bash
# Writer latency under BI capture (issue 14 targets: p50 ≤ 50 µs, p99 ≤ 250 µs, throughput
# ≥ 80 % of without): a C writer does N random 4 KiB pwrites into a 256 MiB file on a fresh
# ext4 loop filesystem, without capture, with capture (first writes: each block's image
# copied), and again (blocks already logged); then the same at a fixed RATE (writes/s) with
# and without capture. The capturer is bench/bilog-cap.c linked with the engine's C source
# (no Node), so two versions can be compared with one harness. Figures, not assertions.
# Needs root and Linux ≥ 6.14.
#   usage: bilog-latency.sh [N]
#   BILOG_C=path/to/bilog.c   the engine to measure (default: this tree's native/bilog.c)
#   PROF=1                    build it with -DBILOG_PROF: per-phase listener times on stderr
#   RATE=5000                 the fixed-rate passes (0: skip them)
set -euo pipefail
N=${1:-20000}
RATE=${RATE:-5000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BILOG_C=${BILOG_C:-$ROOT/native/bilog.c}
W=$(mktemp -d /var/tmp/bfs-bilog-lat-XXXXXX)
DEV=""
CAP_PID=""
cleanup() {
  [ -n "$CAP_PID" ] && kill -9 "$CAP_PID" 2>/dev/null || true
  mountpoint -q "$W/mnt" && umount "$W/mnt" || true
  [ -n "$DEV" ] && losetup -d "$DEV" || true
  rm -rf "$W"
}
trap cleanup EXIT
cc -O2 -o "$W/randw" "$ROOT/bench/bilog-randw.c"
cc -O2 -std=gnu11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 ${PROF:+-DBILOG_PROF} -I"$ROOT/native" \
  -o "$W/cap" "$ROOT/bench/bilog-cap.c" "$BILOG_C" -lpthread
# the engine's watchdog, where it looks for it (next to the program; BILOG_C of a version
# before it was a program of its own forks instead and never runs this one)
cc -O2 -std=gnu11 -D_GNU_SOURCE -o "$W/bfs-bilog-wd" "$ROOT/native/bilog_wd.c"
truncate -s 1G "$W/img"
mkfs.ext4 -q -F "$W/img"
DEV=$(losetup --find --show "$W/img")
mkdir "$W/mnt"
mount "$DEV" "$W/mnt"
head -c 256M /dev/urandom > "$W/mnt/data"
sync
SIZE=$((256 << 20))
mkfifo "$W/ctl"
# start_cap: a capture on the filesystem, T0 set when it returns
start_cap() {
  rm -f "$W/cap.out" # (a stale one would look like T0 already set)
  "$W/cap" "$W/mnt" "$W/cap.bilog" < "$W/ctl" > "$W/cap.out" 2> "$W/cap.err" &
  CAP_PID=$!
  exec 9> "$W/ctl"
  until [ -s "$W/cap.out" ]; do sleep 0.05; done
}
stop_cap() {
  echo stop >&9
  exec 9>&-
  wait "$CAP_PID" || true
  CAP_PID=""
  echo "capture stats: $(tail -1 "$W/cap.out")"
  [ -s "$W/cap.err" ] && cat "$W/cap.err" || true
}
echo "engine: $BILOG_C${PROF:+ (profiled)}; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "no capture:           $("$W/randw" "$W/mnt/data" $SIZE "$N" 1)"
start_cap
echo "capture: $(head -1 "$W/cap.out")"
echo "capture, first write: $("$W/randw" "$W/mnt/data" $SIZE "$N" 2)"
echo "capture, same blocks: $("$W/randw" "$W/mnt/data" $SIZE "$N" 2)"
stop_cap
echo "no capture (after):   $("$W/randw" "$W/mnt/data" $SIZE "$N" 3)"
if [ "$RATE" != 0 ]; then
  echo "at $RATE/s, no capture:   $("$W/randw" "$W/mnt/data" $SIZE "$N" 4 "$RATE")"
  start_cap
  echo "at $RATE/s, capture:      $("$W/randw" "$W/mnt/data" $SIZE "$N" 5 "$RATE")"
  stop_cap
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
