# Helpers sourced by bench/run.sh: logging, timing, result records, page-cache
# dropping, FUSE mount bookkeeping and cleanup. Nothing here runs on its own.

BENCH_T0=${EPOCHREALTIME}
FAILURES=0

# --- logging ---------------------------------------------------------------
elapsed() { awk -v a="$BENCH_T0" -v b="$EPOCHREALTIME" 'BEGIN{s=int(b-a); printf "%02d:%02d", s/60, s%60}'; }
log() { printf '[%s] %s\n' "$(elapsed)" "$*" >&2; }
die() { log "FATAL: $*"; exit 2; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b-a}'; }   # b - a, 3 decimals

# --- result records (JSON lines in $RESULTS) ---------------------------------
json_str() {  # escape a string for JSON (quotes, backslashes, control chars)
  local s=${1//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/ }; s=${s//$'\r'/ }; s=${s//$'\t'/ }
  printf '"%s"' "$s"
}
# rec CORPUS METRIC TOOL REP VALUE
rec() { printf '{"corpus":"%s","metric":"%s","tool":"%s","rep":%s,"value":%s}\n' "$1" "$2" "$3" "$4" "$5" >>"$RESULTS"; }
# rec_status CORPUS METRIC TOOL STATUS NOTE   (STATUS: na | fail | text | ok)
rec_status() {
  printf '{"corpus":"%s","metric":"%s","tool":"%s","status":"%s","note":%s}\n' "$1" "$2" "$3" "$4" "$(json_str "$5")" >>"$RESULTS"
  if [ "$4" = fail ]; then FAILURES=$((FAILURES + 1)); log "FAIL: $1 $2 $3: $5"; fi
}
# rec_meta KEY JSONVALUE
rec_meta() { printf '{"meta":"%s","value":%s}\n' "$1" "$2" >>"$RESULTS"; }

# --- timing ------------------------------------------------------------------
# timed LOGFILE CMD...: runs CMD under /usr/bin/time -v. Sets WALL (s), RSS_MIB, RC.
timed() {
  local logf=$1; shift
  local tf="$logf.time" t0 t1
  # Write back what the previous step left dirty first, untimed: otherwise a tool that
  # fsyncs (bfs, restic, borg) waits for the previous tool's writeback and is charged
  # for it (bfs's full backup measured 5.9 s after a warm-up and ~10 s right after borg).
  sync
  t0=$EPOCHREALTIME
  /usr/bin/time -v -o "$tf" "$@" >"$logf" 2>&1
  RC=$?
  t1=$EPOCHREALTIME
  WALL=$(fsub "$t0" "$t1")
  RSS_MIB=$(awk -F': ' '/Maximum resident set size/{printf "%.1f", $2/1024}' "$tf" 2>/dev/null)
  [ -n "$RSS_MIB" ] || RSS_MIB=0
}
# wall-clock only (no /usr/bin/time): stopwatch_start / stopwatch_stop -> WALL
stopwatch_start() { SW0=$EPOCHREALTIME; }
stopwatch_stop() { WALL=$(fsub "$SW0" "$EPOCHREALTIME"); }
tail_log() { tail -c 400 "$1" 2>/dev/null | tr '\n' ' '; }

# --- repetition policy: median of $REPS, but 1 run when the first run took > 60 s --
declare -A FIRST_WALL
# want_rep KEY REP -> 0 if this repetition should run
want_rep() {
  local key=$1 rep=$2
  [ "$rep" -le "$REPS" ] || return 1
  [ "$rep" -eq 1 ] && return 0
  local first=${FIRST_WALL[$key]:-}
  [ -z "$first" ] && return 1          # first run failed or was skipped: don't repeat
  awk -v w="$first" 'BEGIN{exit !(w <= 60)}'
}
note_first() { [ "$2" -eq 1 ] && FIRST_WALL[$1]=$3; return 0; }

# --- page cache --------------------------------------------------------------
COLD_OK=1
drop_caches() {
  sync
  if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
    if [ "$COLD_OK" = 1 ]; then log "WARNING: cannot drop the page cache: 'cold' steps below are NOT cold"; fi
    COLD_OK=0
  fi
}
warm() {  # read a source tree or image fully so backups start from page cache
  local src=$1
  find "$src" -type f -print0 | xargs -0 -r cat >/dev/null
}

# --- mounts and background processes ----------------------------------------
# Every mountpoint lives under $RUN/mnt; every process we start in the background
# is listed in $RUN/pids. cleanup() unmounts and stops exactly those.
is_mounted() { mountpoint -q "$1" 2>/dev/null; }
# in_mount_table DIR: DIR is a mount point in /proc/mounts, found without a fork (bench paths
# hold no spaces, which /proc/mounts would show as \040)
in_mount_table() {
  local dev mp rest
  while read -r dev mp rest; do [ "$mp" = "$1" ] && return 0; done </proc/mounts
  return 1
}
# poll_fifo_open: POLL_FD, a fifo opened read-write that no one writes, so that
# `read -t SECONDS -u "$POLL_FD"` sleeps without forking a sleep(1) (once per run)
poll_fifo_open() {
  [ -n "${POLL_FD:-}" ] && return 0
  local f
  f=$(mktemp -u "${TMPDIR:-/tmp}/bfs-bench-poll.XXXXXX") && mkfifo -m 600 "$f" && exec {POLL_FD}<>"$f" && rm -f "$f"
}
force_umount() {
  local m=$1 i
  for i in 1 2 3; do
    is_mounted "$m" || return 0
    fusermount -u "$m" 2>/dev/null || umount "$m" 2>/dev/null
    is_mounted "$m" || return 0
    sleep 0.5
  done
  fusermount -uz "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  ! is_mounted "$m"
}
# mount_pid MNT: pid of the FUSE daemon serving MNT (argv names the mountpoint; the
# process holds /dev/fuse open). Prefer processes that satisfy both.
mount_pid() {
  local mnt=$1 p best="" fallback=""
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = "$$" ] && continue
    if tr '\0' '\n' 2>/dev/null <"/proc/$p/cmdline" | grep -xF -- "$mnt" >/dev/null; then
      if ls -l "/proc/$p/fd" 2>/dev/null | grep ' -> /dev/fuse$' >/dev/null; then best=$p; else fallback=$p; fi
    fi
  done
  echo "${best:-$fallback}"
}
fuse_pids() {  # processes holding /dev/fuse open
  local d
  for d in /proc/[0-9]*/fd; do ls -l "$d" 2>/dev/null | grep ' -> /dev/fuse$' >/dev/null && { d=${d#/proc/}; echo "${d%/fd}"; }; done
}
vmhwm_mib() { awk '/^VmHWM:/{printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null; }
# ours PID: the process is one this run started (its argv names a path under $RUN)
ours() { [ -n "$1" ] && tr '\0' '\n' 2>/dev/null <"/proc/$1/cmdline" | grep -F -- "$RUN/" >/dev/null; }
wait_pid_gone() {  # wait_pid_gone PID SECONDS; then TERM, then KILL, if it is still ours
  local pid=$1 n=$(( $2 * 10 )) i
  [ -n "$pid" ] || return 0
  for ((i = 0; i < n; i++)); do ours "$pid" || return 0; sleep 0.1; done
  log "stopping leftover process $pid"
  kill -TERM "$pid" 2>/dev/null; sleep 1
  ours "$pid" && kill -KILL "$pid" 2>/dev/null
  return 0
}
track_pid() { echo "$1" >>"$RUN/pids"; }

cleanup() {
  local m pid
  set +e
  if [ -d "${RUN:-/nonexistent}/mnt" ]; then
    for m in "$RUN"/mnt/*; do
      [ -d "$m" ] || continue
      if is_mounted "$m"; then log "cleanup: unmounting $m"; force_umount "$m"; fi
    done
  fi
  if [ -f "${RUN:-/nonexistent}/pids" ]; then
    while read -r pid; do
      ours "$pid" && wait_pid_gone "$pid" 1
    done <"$RUN/pids"
    : >"$RUN/pids"
  fi
  # the online step's loop filesystem (bench/online.sh), once its writers and backups are gone
  declare -F online_teardown >/dev/null && online_teardown
  if [ -n "${RUN:-}" ] && is_mounted "$RUN/out"; then umount "$RUN/out" || umount -l "$RUN/out"; fi
  revert_mutations
}
revert_mutations() {
  local st
  for st in "${BENCH_DIR:-/nonexistent}"/corpus/*/mutations-*.json; do
    [ -f "$st" ] || continue
    log "reverting corpus changes recorded in $st"
    node "$BENCH_SRC/mutate.mjs" revert "$st" || log "WARNING: could not revert $st (delete the corpus to rebuild it)"
  done
}
