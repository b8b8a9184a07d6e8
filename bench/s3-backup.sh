#!/usr/bin/env bash
# bench/s3-backup.sh (issue 18 targets: "backup of the Linux tree to RGW <= restic's time to the
# same RGW; restore <= 0.7x restic's"; encryption <= 1.1x unencrypted). Brings up its own
# throw-away one-node Ceph RGW (.ci/ceph-up.sh; torn down on any exit), then REPS rounds of, in
# a rotating order: `bfs backup` to a fresh plain repository, `bfs backup` to a fresh encrypted
# one (BFS_PASSWORD, the real KDF) and `restic backup` to a fresh restic repository, all in one
# bucket under their own prefixes; then a restore of each into a tmpfs, the page cache dropped
# and every local cache empty before each (a host that never read the repository). The first
# round's restores are compared with the source (`diff -r --no-dereference`).
# Environment: BENCH_REPS (3), BENCH_TREE (/var/tmp/bfs-bench/corpus/full/tree, read in place),
# BENCH_BFS (bin/bfs of this checkout), BENCH_OUT (bench/results/DATE-s3-backup: .md and .log),
# CEPH_MON_PORT / CEPH_RGW_PORT (13400 / 17580, so that it runs beside `make test-s3`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REPS=${BENCH_REPS:-3}
TREE=${BENCH_TREE:-/var/tmp/bfs-bench/corpus/full/tree}
BFS=${BENCH_BFS:-$ROOT/bin/bfs}
OUT=${BENCH_OUT:-$ROOT/bench/results/$(date -u +%F)-s3-backup}
export CEPH_MON_PORT=${CEPH_MON_PORT:-13400} CEPH_RGW_PORT=${CEPH_RGW_PORT:-17580}
[ -d "$TREE" ] || { echo "s3-backup: no corpus at $TREE (make bench builds it)" >&2; exit 2; }
command -v restic >/dev/null || { echo "s3-backup: restic is not installed (apt-get install restic)" >&2; exit 2; }
W=$(mktemp -d /var/tmp/bfs-s3b.XXXXXX)
export CEPH_DIR=$W/ceph
T=$W/restore
cleanup() {
  mountpoint -q "$T" && umount "$T"
  [ -d "$CEPH_DIR" ] && .ci/ceph-down.sh >/dev/null 2>&1
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
.ci/ceph-pkgs.sh >/dev/null
vars=$(.ci/ceph-up.sh | tail -n 1)
# shellcheck disable=SC2163,SC2086
export $vars
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export RESTIC_PASSWORD=bench-restic-pass BFS_PASSWORD=bench-bfs-pass
unset NODE_ENV
mkdir -p "$T"
mount -t tmpfs -o size=4G bfs-s3b "$T"
LOG=$OUT.log
: >"$LOG"
say() { echo "$*" | tee -a "$LOG" >&2; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# timed NAME CMD...: wall seconds of CMD into $WALL (its output to the log; a failure stops all)
timed() {
  local name=$1 t0 rc=0
  shift
  t0=$EPOCHREALTIME
  "$@" >>"$LOG" 2>&1 || rc=$?
  WALL=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.2f", b-a}')
  [ $rc = 0 ] || { say "s3-backup: $name failed (exit $rc); see $LOG"; tail -5 "$LOG" >&2; exit 1; }
}
repo_of() { case $1 in restic) echo "s3:$S3_ENDPOINT/bench/restic-$2" ;; *) echo "s3:$S3_ENDPOINT/bench/$1-$2" ;; esac; }
backup() {  # TOOL REP
  local r
  r=$(repo_of "$1" "$2")
  case $1 in
    bfs) "$BFS" --repo "$r" --cache-dir "$W/c-$1-$2-b" init >>"$LOG" 2>&1
         timed "bfs backup" "$BFS" --repo "$r" --cache-dir "$W/c-$1-$2-b" backup "$TREE" ;;
    bfse) "$BFS" --repo "$r" --cache-dir "$W/c-$1-$2-b" init --encrypt >>"$LOG" 2>&1
          timed "bfs encrypted backup" "$BFS" --repo "$r" --cache-dir "$W/c-$1-$2-b" backup "$TREE" ;;
    restic) restic -r "$r" --cache-dir "$W/c-$1-$2-b" init >>"$LOG" 2>&1
            timed "restic backup" restic -r "$r" --cache-dir "$W/c-$1-$2-b" backup "$TREE" ;;
  esac
}
restore() {  # TOOL REP: into $T/TOOL, cold (page cache dropped, an empty local cache)
  local r
  r=$(repo_of "$1" "$2")
  rm -rf "${T:?}/$1"
  drop
  case $1 in
    bfs | bfse) timed "$1 restore" "$BFS" --repo "$r" --cache-dir "$W/c-$1-$2-r" restore latest "$T/$1" ;;
    restic) timed "restic restore" restic -r "$r" --cache-dir "$W/c-$1-$2-r" restore latest --target "$T/$1" ;;
  esac
}
same() {  # TOOL: the restored tree equals the source (restic restores the absolute path under the target)
  local got=$T/$1
  [ "$1" = restic ] && got=$T/$1$TREE
  diff -r --no-dereference "$TREE" "$got" >/dev/null && echo ok || echo DIFFERS
}
declare -A B R
TOOLS=(bfs bfse restic)
say "s3-backup: RGW at $S3_ENDPOINT; tree $TREE; $REPS rounds; bfs $("$BFS" --version 2>/dev/null | head -1); $(restic version | head -1)"
# the source in the page cache, as bench/run.sh's backups start
tar -cf - -C "$TREE" . | cat >/dev/null
for ((rep = 1; rep <= REPS; rep++)); do
  n=${#TOOLS[@]}
  for ((i = 0; i < n; i++)); do
    t=${TOOLS[$(((i + rep - 1) % n))]}
    load=$(cut -d' ' -f1 /proc/loadavg)
    backup "$t" "$rep"
    B[$t]+="$WALL "
    say "round $rep: $t backup $WALL s (load $load)"
  done
  for ((i = 0; i < n; i++)); do
    t=${TOOLS[$(((i + rep - 1) % n))]}
    load=$(cut -d' ' -f1 /proc/loadavg)
    restore "$t" "$rep"
    R[$t]+="$WALL "
    say "round $rep: $t restore $WALL s (load $load)"
    if [ "$rep" = 1 ]; then say "round 1: $t restore equals the source: $(same "$t")"; fi
    rm -rf "${T:?}/$t"
  done
done
med() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f (%.2f–%.2f, n=%d)", m, a[1], a[NR], NR}'; }
medv() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m}'; }
mb=$(echo "${B[bfs]}" | medv) mbe=$(echo "${B[bfse]}" | medv) mbr=$(echo "${B[restic]}" | medv)
mr=$(echo "${R[bfs]}" | medv) mre=$(echo "${R[bfse]}" | medv) mrr=$(echo "${R[restic]}" | medv)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
{
  echo "# Backup and restore of the Linux tree to a Ceph RGW: bfs, bfs encrypted, restic ($(date -u +%F))"
  echo
  echo "bench/s3-backup.sh. RGW: a one-node Ceph Pacific on this machine (.ci/ceph-up.sh). Tree: $TREE."
  echo "Rounds: $REPS, tools in a rotating order; restores into a tmpfs with the page cache dropped and an"
  echo "empty local cache. $(nproc) cores, Linux $(uname -r). Log: $(basename "$LOG")."
  echo
  echo "| s | bfs | bfs encrypted | restic 0.14 | bfs ÷ restic | encrypted ÷ restic | encrypted ÷ bfs | target |"
  echo "|---|---|---|---|---|---|---|---|"
  echo "| backup | $(echo "${B[bfs]}" | med) | $(echo "${B[bfse]}" | med) | $(echo "${B[restic]}" | med) | $(ratio "$mb" "$mbr") | $(ratio "$mbe" "$mbr") | $(ratio "$mbe" "$mb") | ≤ 1 × restic; encrypted ≤ 1.1 × bfs |"
  echo "| restore | $(echo "${R[bfs]}" | med) | $(echo "${R[bfse]}" | med) | $(echo "${R[restic]}" | med) | $(ratio "$mr" "$mrr") | $(ratio "$mre" "$mrr") | $(ratio "$mre" "$mr") | ≤ 0.7 × restic; encrypted ≤ 1.1 × bfs |"
} >"$OUT.md"
cat "$OUT.md"
