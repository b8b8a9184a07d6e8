#!/bin/bash
# Proves the fuse-native patch (patches/fuse-native+2.2.6.patch) with real tools.
#   bash fuse-proto/check.sh            # checks + timings (~1 min)
#   SKIP_DD=1 bash fuse-proto/check.sh  # without the 1 GiB dd / pread part
# Needs: root or a user allowed to use /dev/fuse, fusermount (Debian: fuse), libfuse2,
# and the patched binding built (make native).
# Every FUSE server runs in its own process; everything mounted is unmounted on exit.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROTO=$ROOT/fuse-proto
PASS=0
FAIL=0
SRV_PID=
MNT=
SRV_LOG=

ok () { PASS=$((PASS + 1)); echo "ok   - $*"; }
bad () { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }
now_ns () { date +%s%N; }
# true while MNT is in the mount table, also when the server died (ENOTCONN)
is_mounted () { grep -q " $1 fuse" /proc/mounts; }
secs () { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

stop_server () {
  if [ -n "$MNT" ] && is_mounted "$MNT"; then
    fusermount -u "$MNT" 2>/dev/null || fusermount -uz "$MNT" 2>/dev/null
  fi
  if [ -n "$SRV_PID" ]; then
    kill -TERM "$SRV_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SRV_PID" 2>/dev/null && kill -KILL "$SRV_PID" 2>/dev/null
    wait "$SRV_PID" 2>/dev/null
    SRV_PID=
  fi
  if [ -n "$MNT" ] && is_mounted "$MNT"; then fusermount -uz "$MNT" 2>/dev/null; fi
}

cleanup () {
  stop_server
  [ -n "$MNT" ] && rmdir "$MNT" 2>/dev/null
  [ -n "$SRV_LOG" ] && rm -f "$SRV_LOG"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server SCRIPT OPTIONS_JSON: mounts a fresh (cold) instance on $MNT
start_server () {
  stop_server
  node "$PROTO/$1" "$MNT" "$2" >"$SRV_LOG" 2>&1 &
  SRV_PID=$!
  for _ in $(seq 100); do
    if grep -q '^ready' "$SRV_LOG" && mountpoint -q "$MNT"; then return 0; fi
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "server $1 did not start:"; cat "$SRV_LOG"
  exit 1
}

server_stats () { kill -USR2 "$SRV_PID"; sleep 0.3; grep '^stats:' "$SRV_LOG" | tail -1; }

# --- the binding ------------------------------------------------------------
# `make native` builds the patched binding and puts it where fuse-native loads it from.
FN=$ROOT/node_modules/fuse-native
node -e "require('$FN')" || { echo "the patched fuse-native binding does not load: run make native"; exit 1; }
export FUSE_NATIVE_PATH=$FN
echo "# binding: $FN"

MNT=$(mktemp -d /tmp/fuse-proto-mnt.XXXXXX)
SRV_LOG=$(mktemp /tmp/fuse-proto-srv.XXXXXX)
OPTS='{"useIno":true,"statCache":true,"attrTimeout":3600,"entryTimeout":3600,"negativeTimeout":60}'

# --- 1. identity, link count and nanosecond times ------------------------------
start_server memfs-patched.cjs "$OPTS"
A=$(stat -c '%i %h %y' "$MNT/links/a")
B=$(stat -c '%i %h %y' "$MNT/links/b")
echo "# stat -c '%i %h %y' links/a: $A"
echo "# stat -c '%i %h %y' links/b: $B"
[ "${A%% *}" = "${B%% *}" ] && ok "hard links share an inode (${A%% *})" || bad "hard links have different inodes: $A / $B"
[ "${A%% *}" = 1099511627783 ] && ok "64-bit inode number survives (2^40+7)" || bad "inode ${A%% *} != 1099511627783"
[ "$(echo "$A" | cut -d' ' -f2)" = 2 ] && [ "$(echo "$B" | cut -d' ' -f2)" = 2 ] && ok "link count is 2" || bad "link count wrong"
echo "$A" | grep -q ' 2023-11-14 22:13:20\.123456789 ' && ok "mtime has 9-digit nanoseconds (.123456789)" || bad "mtime lost precision: $A"
LSI=$(ls -i "$MNT/links" | awk '{print $1}' | sort -u)
[ "$LSI" = 1099511627783 ] && ok "readdir d_ino matches (ls -i)" || bad "ls -i gives $LSI"
T=$(stat -c '%y' "$MNT/big")
echo "$T" | grep -q '\.123456789 ' && ok "BigInt mtimeNs form keeps nanoseconds" || bad "mtimeNs: $T"
O=$(stat -c '%i %o %b %h %.9Y %.9X %.9Z' "$MNT/odd")
[ "$O" = "12345678901234567890 65536 7 3 -1.500000000 10.000000005 1.234567800" ] && ok "BigInt ino above 2^63, blksize, blocks, nlink, pre-1970 and {sec,nsec} times ($O)" || bad "odd stat: $O"
stat "$MNT/nonexistent" >/dev/null 2>&1 && bad "nonexistent path exists" || ok "ENOENT still reported"

# --- 2. cold metadata ----------------------------------------------------------
start_server memfs-patched.cjs "$OPTS"
t0=$(now_ns); N=$(find "$MNT" | wc -l); t1=$(now_ns)
echo "# cold find | wc -l: $N entries in $(secs $t0 $t1) s"
[ "$N" = 90808 ] && ok "find sees all 90808 entries" || bad "find saw $N entries"
awk -v s="$(secs $t0 $t1)" 'BEGIN { exit !(s <= 2.0) }' && ok "cold find <= 2.0 s ($(secs $t0 $t1) s)" || bad "cold find took $(secs $t0 $t1) s"

start_server memfs-patched.cjs "$OPTS"
t0=$(now_ns); N=$(find "$MNT/tree" -printf '%i %n %s %T@\n' | wc -l); t1=$(now_ns)
echo "# cold find tree -printf '%i %n %s %T@' (stats every entry): $N in $(secs $t0 $t1) s"
ST=$(server_stats); echo "# $ST"
JSG=$(echo "$ST" | sed -n 's/.*js getattr=\([0-9]*\).*/\1/p')
[ "${JSG:-99999}" -lt 100 ] && ok "stat walk answered natively (JS getattr calls: $JSG)" || bad "JS getattr calls: $JSG"

start_server memfs-patched.cjs "$OPTS"
t0=$(now_ns); N=$(ls -l "$MNT/wide" | wc -l); t1=$(now_ns)
echo "# cold ls -l over 10,000 files: $N lines in $(secs $t0 $t1) s"
[ "$N" = 10001 ] && ok "ls -l lists 10000 files" || bad "ls -l gave $N lines"

# readdir without stats + preload through fuse.cacheStats()
start_server memfs-patched.cjs '{"useIno":true,"statCache":true,"attrTimeout":3600,"entryTimeout":3600,"readdirStats":false,"preload":true}'
N=$(find "$MNT/tree" -printf '%i %n\n' | sort -u | wc -l)
ST=$(server_stats); echo "# preload: $ST"
JSG=$(echo "$ST" | sed -n 's/.*js getattr=\([0-9]*\).*/\1/p')
[ "$N" = 80801 ] && [ "${JSG:-99999}" -lt 100 ] && ok "fuse.cacheStats() preload answers stats natively" || bad "preload: $N distinct, JS getattr $JSG"

# the same tree without the cache (stock-like path through JS) must give identical output
start_server memfs-patched.cjs '{"useIno":true,"attrTimeout":3600,"entryTimeout":3600}'
X=$(cd "$MNT" && find . -printf '%p %i %n %s %T@ %m\n' | sort | md5sum)
start_server memfs-patched.cjs "$OPTS"
Y=$(cd "$MNT" && find . -printf '%p %i %n %s %T@ %m\n' | sort | md5sum)
[ "$X" = "$Y" ] && ok "cached and uncached metadata are identical" || bad "cached metadata differs"

# --- 3. data path --------------------------------------------------------------
if [ -z "${SKIP_DD:-}" ]; then
  start_server memfs-patched.cjs '{"useIno":true,"statCache":true,"attrTimeout":3600,"entryTimeout":3600,"kernelCache":true,"maxRead":1048576,"maxReadahead":1048576}'
  echo "# $(node "$PROTO/pread.cjs" "$MNT/big" 2000) (cold, fresh mount)"
  start_server memfs-patched.cjs '{"useIno":true,"statCache":true,"attrTimeout":3600,"entryTimeout":3600,"kernelCache":true,"maxRead":1048576,"maxReadahead":1048576}'
  D1=$(dd if="$MNT/big" of=/dev/null bs=1M 2>&1 | tail -1)
  D2=$(dd if="$MNT/big" of=/dev/null bs=1M 2>&1 | tail -1)
  echo "# dd bs=1M 1 GiB first:  $D1"
  echo "# dd bs=1M 1 GiB second: $D2"
  echo "# $(node "$PROTO/pread.cjs" "$MNT/big" 2000) (page cache warm)"
  echo "$D1" | grep -q '^1073741824 bytes' && ok "dd read 1 GiB" || bad "dd: $D1"
  SUM=$(head -c 1048576 "$MNT/big" | md5sum | cut -d' ' -f1)
  [ "$SUM" = "$(head -c 1048576 /dev/zero | tr '\0' '\7' | md5sum | cut -d' ' -f1)" ] && ok "data content correct" || bad "data content wrong"
fi

# --- 4. writes invalidate the cache, ttl, malformed replies ---------------------
start_server edgefs.cjs '{}'
(
  cd "$MNT" || exit 1
  echo hello >f
  [ "$(stat -c %s f)" = 6 ] || exit 11
  echo more >>f
  [ "$(stat -c %s f)" = 11 ] || exit 12
  truncate -s 100 f
  [ "$(stat -c %s f)" = 100 ] || exit 13
  mkdir d && mv f d/g && [ "$(stat -c %s d/g)" = 100 ] || exit 14
  stat f >/dev/null 2>&1 && exit 15
  mv d e && [ "$(stat -c %s e/g)" = 100 ] || exit 16
  stat d/g >/dev/null 2>&1 && exit 17
  rm e/g && rmdir e || exit 18
  stat e >/dev/null 2>&1 && exit 19
  exit 0
)
RC=$?
[ $RC = 0 ] && ok "create/write/truncate/rename/unlink/rmdir invalidate cached stats" || bad "write invalidation (step $RC)"
C1=$(stat -c %s "$MNT/clock"); C2=$(stat -c %s "$MNT/clock"); sleep 1.3; C3=$(stat -c %s "$MNT/clock")
[ "$C1" = "$C2" ] && [ "$C3" != "$C1" ] && ok "statCache.ttl expires entries ($C1 $C2 $C3)" || bad "ttl: $C1 $C2 $C3"
N=$(timeout 10 ls -f "$MNT/bad" | sort | tr '\n' ' ')
[ "$N" = "ok ok2 " ] && ok "malformed readdir reply does not hang (names kept: $N)" || bad "malformed readdir: '$N'"
N=$(timeout 10 ls -f "$MNT/badstats" | sort | tr '\n' ' ')
[ "$N" = "x y " ] && ok "readdir with a short stats array falls back to names" || bad "short stats: '$N'"

stop_server
if is_mounted "$MNT"; then bad "still mounted"; else ok "unmounted"; fi
LEFT=$(pgrep -f "$PROTO/(memfs-patched|edgefs).cjs" | tr '\n' ' ')
[ -z "$LEFT" ] && ok "no server process left" || bad "server processes left: $LEFT"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
