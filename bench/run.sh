#!/usr/bin/env bash
# bfs benchmark harness: bfs against tar|zstd, mksquashfs+squashfuse, restic and borg
# on the same corpora, interleaved.  Usage: bash bench/run.sh full|quick
# (make bench / make bench-quick).  See bench/README.md for what each figure means.
set -uo pipefail
MODE=${1:-full}
case "$MODE" in full | quick) ;; *) echo "usage: $0 full|quick" >&2; exit 64 ;; esac

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_SRC/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/bfs-bench}
# quick mode: one run of each step (a median of 3 does not fit in 3 minutes)
if [ "$MODE" = quick ]; then REPS=${BENCH_REPS:-1}; else REPS=${BENCH_REPS:-3}; fi
# mksquashfs at zstd level 15 is the slowest step by far (~3 min for both full corpora,
# n=1); its image and the time and RSS measured when it was built are reused while the
# corpus and mksquashfs are unchanged (the table says so). BENCH_SQUASHFS=build rebuilds.
SQUASHFS=${BENCH_SQUASHFS:-reuse}
TOOLS=(bfs bfse tar squashfs restic borg)
# Subsets (bench/ab.sh uses them; a filtered run's report gets a -partial suffix):
#   BENCH_TOOLS=bfs,restic      tools (columns), plus `native` for the mount reference;
#                               bfse is bfs with an encrypted repository (not a peer)
#   BENCH_STEPS=restore,mount   of nochange, incremental, restore, mount (the full backup
#                               always runs: every other step reads its repository), and
#                               online (bench/online.sh: its own sources; `online` alone
#                               runs no other step), and many (bench/many.sh: the
#                               issue 15 corpus of 1M / 100k small files, its own steps),
#                               and admin (bench/admin.sh: issue 17's diff, find and
#                               rename/copy figures on 20 generations of a copy of the tree),
#                               and compact (issue 16: `bfs compact` of a copy of the full
#                               backup's bfs repository: its size against tar|zstd -3's, and
#                               its mount's reads against the uncompacted one's)
#   BENCH_CORPORA=img           of tree, img
on_list() { [ -z "$2" ] || [[ ",$2," == *",$1,"* ]]; }
tool_on() { on_list "$1" "${BENCH_TOOLS:-}"; }
step_on() { on_list "$1" "${BENCH_STEPS:-}"; }
check_list() {  # check_list VAR VALUE ALLOWED...: dies on a name not in ALLOWED
  local var=$1 list=$2 x; shift 2
  for x in ${list//,/ }; do [[ " $* " == *" $x "* ]] || { echo "$var: unknown name '$x' (one of: $*)" >&2; exit 64; }; done
}
check_list BENCH_TOOLS "${BENCH_TOOLS:-}" "${TOOLS[@]}" native bfs1
check_list BENCH_STEPS "${BENCH_STEPS:-}" full nochange incremental restore mount compact online many admin
check_list BENCH_CORPORA "${BENCH_CORPORA:-}" tree img
FILTERED=$([ -n "${BENCH_TOOLS:-}${BENCH_STEPS:-}${BENCH_CORPORA:-}" ] && echo 1)
# the per-corpus steps (full backup and the steps reading it) run unless BENCH_STEPS names
# only `online`
# the image corpus is built (and described) only when a per-corpus step runs on it
img_on() { corpus_steps_on && on_list img "${BENCH_CORPORA:-}"; }
corpus_steps_on() {
  local s
  [ -z "${BENCH_STEPS:-}" ] && return 0
  for s in full nochange incremental restore mount compact; do step_on "$s" && return 0; done
  return 1
}
_all=("${TOOLS[@]}"); TOOLS=()
for t in "${_all[@]}"; do tool_on "$t" && TOOLS+=("$t"); done
# the Linux tree: the corpora of the per-corpus steps, and the online step's sources
linux_on() { corpus_steps_on || step_on online || step_on admin; }
TARBALL=/usr/src/linux-source-6.1.tar.xz
APT_PKGS=(zstd time fuse libfuse2 e2fsprogs util-linux diffutils)
linux_on && APT_PKGS+=(linux-source)
tool_on restic && APT_PKGS+=(restic)
tool_on borg && APT_PKGS+=(borgbackup)
tool_on squashfs && APT_PKGS+=(squashfs-tools squashfuse)
step_on online && APT_PKGS+=(gcc tar coreutils)
export BFS=${BENCH_BFS:-$ROOT/bin/bfs}   # BENCH_BFS: another bfs build to measure
# shellcheck source=bench/lib.sh
source "$BENCH_SRC/lib.sh"
# shellcheck source=bench/online.sh
source "$BENCH_SRC/online.sh"
# shellcheck source=bench/many.sh
source "$BENCH_SRC/many.sh"
# shellcheck source=bench/admin.sh
source "$BENCH_SRC/admin.sh"
TOOL_SH=("bash" "$BENCH_SRC/tool.sh")

# --------------------------------------------------------------------------
# set-up: packages, work dir, corpora
# --------------------------------------------------------------------------
install_packages() {
  local p missing=()
  for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing Debian packages (${missing[*]}); run as root so the bench can install them"
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install failed"
}

tarball_id() { stat -c '%s-%Y' "$TARBALL"; }

build_full_tree() {  # $BENCH_DIR/corpus/full/tree = linux-source-6.1.tar.xz extracted
  local dir=$BENCH_DIR/corpus/full stamp
  stamp="tree-v1 $(tarball_id)"
  if [ -f "$dir/tree.ok" ] && [ "$(cat "$dir/tree.ok")" = "$stamp" ] && [ -d "$dir/tree" ]; then return 0; fi
  log "corpus: extracting $TARBALL"
  rm -rf "$dir/tree" "$dir/tree.tmp" "$dir/tree.ok"
  mkdir -p "$dir/tree.tmp"
  tar -xJf "$TARBALL" -C "$dir/tree.tmp" || die "extracting $TARBALL failed"
  mv "$dir/tree.tmp/linux-source-6.1" "$dir/tree" && rmdir "$dir/tree.tmp" || die "unexpected layout in $TARBALL"
  echo "$stamp" >"$dir/tree.ok"
}

build_quick_tree() {  # ~10 %: tools/ sound/ fs/ of the full tree (137 MB)
  local dir=$BENCH_DIR/corpus/quick stamp d
  stamp="qtree-v1 $(tarball_id)"
  if [ -f "$dir/tree.ok" ] && [ "$(cat "$dir/tree.ok")" = "$stamp" ] && [ -d "$dir/tree" ]; then return 0; fi
  log "corpus: copying the quick tree subset"
  rm -rf "$dir/tree" "$dir/tree.ok"
  mkdir -p "$dir/tree"
  for d in tools sound fs; do cp -a "$BENCH_DIR/corpus/full/tree/$d" "$dir/tree/" || die "copy $d failed"; done
  echo "$stamp" >"$dir/tree.ok"
}

build_img() {  # sparse ext4 image built with mkfs.ext4 -d (no loop device); deterministic
  local dir=$BENCH_DIR/corpus/$MODE size=$1; shift
  local stamp="img-v1 $size $* $(tarball_id)" d stage=$dir/img.stage
  if [ -f "$dir/img.ok" ] && [ "$(cat "$dir/img.ok")" = "$stamp" ] && [ -f "$dir/img/$IMG_NAME" ]; then return 0; fi
  log "corpus: building the $size ext4 image from $*"
  rm -rf "$dir/img" "$stage" "$dir/img.ok"
  mkdir -p "$dir/img" "$stage"
  for d in "$@"; do cp -al "$BENCH_DIR/corpus/full/tree/$d" "$stage/" || die "staging $d failed"; done
  truncate -s "$size" "$dir/img/$IMG_NAME"
  E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -L bfs-bench -U 0b5c7a1e-6c6f-4e2d-9b1a-62666d62656e \
    -E hash_seed=0b5c7a1e-6c6f-4e2d-9b1a-62666d62656e,root_owner=0:0 -d "$stage" "$dir/img/$IMG_NAME" \
    || die "mkfs.ext4 -d failed"
  rm -rf "$stage"
  touch -d @1700000000 "$dir/img/$IMG_NAME"
  echo "$stamp" >"$dir/img.ok"
}

corpus_meta() {  # corpus_meta NAME DIR -> meta record with sizes and counts
  local name=$1 dir=$2 apparent
  apparent=$(du -sb "$dir" | cut -f1)
  find "$dir" -mindepth 1 -printf '%y %s %b\n' | awk -v n="$name" -v ap="$apparent" -v p="$dir" '
    { if ($1 == "f") { f++; fb += $2; alloc += $3 * 512 } else if ($1 == "d") d++; else if ($1 == "l") l++ }
    END { printf "{\"path\":\"%s\",\"apparent_bytes\":%.0f,\"file_bytes\":%.0f,\"allocated_bytes\":%.0f,\"files\":%d,\"dirs\":%d,\"symlinks\":%d}\n", p, ap, fb, alloc, f, d, l }' \
    >"$RUN/corpus-$name.json"
  rec_meta "corpus_$name" "$(cat "$RUN/corpus-$name.json")"
  log "corpus $name: $(cat "$RUN/corpus-$name.json")"
}

# --------------------------------------------------------------------------
# bfs feature detection: a step is "built" if `bfs <command> --help` exits 0 and
# prints that command's usage
# --------------------------------------------------------------------------
declare -A BFS_HAS
detect_bfs() {
  local c
  BFS_HAS[any]=0
  grep -q '^Usage: bfs' <<<"$("$BFS" --help 2>&1)" && BFS_HAS[any]=1   # fails without dist/
  for c in init backup restore mount umount generations compact; do
    BFS_HAS[$c]=0
    # exit 0 is not enough: commander prints the top-level help for an unknown command
    [ "${BFS_HAS[any]}" = 1 ] && grep -q "^Usage: bfs $c\b" <<<"$("$BFS" "$c" --help 2>&1)" && BFS_HAS[$c]=1
  done
  BFS_HAS[volume]=0
  [ "${BFS_HAS[backup]}" = 1 ] && grep -q -- '--volume' <<<"$("$BFS" backup --help 2>&1)" && BFS_HAS[volume]=1
  BFS_HAS[format2]=0   # bfs init --format 2 (issue 15; the many step's bfs column)
  [ "${BFS_HAS[init]}" = 1 ] && grep -q -- '--format' <<<"$("$BFS" init --help 2>&1)" && BFS_HAS[format2]=1
  BFS_HAS[encrypt]=0   # bfs init --encrypt in the help (issue 18: exposed 2026-12-04; the bfse column)
  [ "${BFS_HAS[init]}" = 1 ] && grep -q -- '--encrypt' <<<"$("$BFS" init --help 2>&1)" && BFS_HAS[encrypt]=1
  log "bfs: built=${BFS_HAS[any]} init=${BFS_HAS[init]} backup=${BFS_HAS[backup]} volume=${BFS_HAS[volume]} restore=${BFS_HAS[restore]} mount=${BFS_HAS[mount]} umount=${BFS_HAS[umount]} format2=${BFS_HAS[format2]} compact=${BFS_HAS[compact]} encrypt=${BFS_HAS[encrypt]}"
  rec_meta bfs_features "{\"built\":${BFS_HAS[any]},\"init\":${BFS_HAS[init]},\"backup\":${BFS_HAS[backup]},\"volume\":${BFS_HAS[volume]},\"restore\":${BFS_HAS[restore]},\"mount\":${BFS_HAS[mount]},\"umount\":${BFS_HAS[umount]},\"format2\":${BFS_HAS[format2]},\"compact\":${BFS_HAS[compact]},\"encrypt\":${BFS_HAS[encrypt]}}"
}
# bfs_can STEP [TOOL] -> 0 if bfs (TOOL bfse: with encryption) can run STEP (backup | restore | mount) on the current corpus
bfs_can() {
  [ "${BFS_HAS[init]}" = 1 ] && [ "${BFS_HAS[backup]}" = 1 ] || return 1
  # (encryption needs format 2: with BENCH_BFS_FORMAT=1 the bfse column is n/a)
  [ "${2:-bfs}" != bfse ] || { [ "${BFS_HAS[encrypt]}" = 1 ] && [ "${BFS_FORMAT:-}" != 1 ]; } || return 1
  [ "$KIND" = tree ] || [ "${BFS_HAS[volume]}" = 1 ] || return 1
  case $1 in
    backup) return 0 ;;
    restore) [ "${BFS_HAS[restore]}" = 1 ] ;;
    mount) [ "${BFS_HAS[mount]}" = 1 ] && [ "${BFS_HAS[umount]}" = 1 ] ;;
  esac
}

# --------------------------------------------------------------------------
# per-corpus steps.  Globals: NAME (tree|img), KIND, SRC (backed-up directory),
# REPO_OK[tool], GEN[tool] (first generation's name), NGEN[tool]
# --------------------------------------------------------------------------
declare -A REPO_OK GEN NGEN SIZE0
repo_of() { echo "$RUN/repo/$NAME-$1"; }
repo_mb() { du -sb "$(repo_of "$1")" | awk '{printf "%.1f", $1/1e6}'; }
repo_bytes() { du -sb "$(repo_of "$1")" | cut -f1; }
# skip_status METRIC TOOL STEP -> records n/a or skip for a tool that cannot run STEP; 0 if skipped
skip_status() {
  local metric=$1 tool=$2 step=$3
  if [[ $tool == bfs || $tool == bfse ]] && ! bfs_can "$step" "$tool"; then rec_status "$NAME" "$metric" "$tool" na "n/a (not built)"; return 0; fi
  if [ "$step" != backup ] && [ "$tool" != native ] && [ "${REPO_OK[$tool]:-0}" != 1 ]; then
    rec_status "$NAME" "$metric" "$tool" fail "skipped: no backup to read from"; return 0
  fi
  return 1
}
step_begin() { STEP_T0=$EPOCHREALTIME; log "== $NAME: $*"; }
step_end() { log "== $NAME: $* done in $(fsub "$STEP_T0" "$EPOCHREALTIME") s"; }

step_full_backup() {
  local rep tool repo logf
  step_begin "full backup (source in page cache), median of $REPS"
  warm "$SRC"
  for tool in "${TOOLS[@]}"; do REPO_OK[$tool]=0; skip_status full_wall_s "$tool" backup && REPO_OK[$tool]=skip; done
  for ((rep = 1; rep <= REPS; rep++)); do
    for tool in "${TOOLS[@]}"; do
      [ "${REPO_OK[$tool]}" = skip ] && continue
      want_rep "$NAME.full.$tool" "$rep" || continue
      repo=$(repo_of "$tool"); logf=$RUN/logs/$NAME-full-$tool-$rep.log
      rm -rf "$repo"
      if [ "$tool" = squashfs ] && [ "$rep" = 1 ] && squashfs_cached "$repo"; then continue; fi
      if ! "${TOOL_SH[@]}" init "$tool" "$repo" >"$logf.init" 2>&1; then
        rec_status "$NAME" full_wall_s "$tool" fail "init failed: $(tail_log "$logf.init")"; REPO_OK[$tool]=0; continue
      fi
      # Untimed: borg reads with POSIX_FADV_DONTNEED, which drops the source from the page
      # cache; without this the tool after it (bfs, in reps 2-3) read the tree from disk.
      warm "$SRC"
      timed "$logf" "${TOOL_SH[@]}" backup "$tool" "$repo" "$SRC" g1
      if [ "$RC" != 0 ]; then
        rec_status "$NAME" full_wall_s "$tool" fail "exit $RC: $(tail_log "$logf")"; REPO_OK[$tool]=0; continue
      fi
      REPO_OK[$tool]=1; NGEN[$tool]=1
      rec "$NAME" full_wall_s "$tool" "$rep" "$WALL"
      rec "$NAME" full_rss_mib "$tool" "$rep" "$RSS_MIB"
      rec "$NAME" repo_full_mb "$tool" "$rep" "$(repo_mb "$tool")"
      note_first "$NAME.full.$tool" "$rep" "$WALL"
      [ "$tool" = squashfs ] && squashfs_save "$repo"
      log "   full backup $tool #$rep: ${WALL} s, ${RSS_MIB} MiB, repo $(repo_mb "$tool") MB"
    done
  done
  for tool in "${TOOLS[@]}"; do [ "${REPO_OK[$tool]}" = skip ] && REPO_OK[$tool]=0; done
  GEN[bfs]=gen1; GEN[bfse]=gen1; GEN[borg]=g1; GEN[tar]=-; GEN[squashfs]=-
  if [ "${REPO_OK[restic]:-0}" = 1 ]; then
    GEN[restic]=$(restic -q -r "$(repo_of restic)" snapshots --json 2>/dev/null \
      | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const a=JSON.parse(s);process.stdout.write(a[0].short_id||a[0].id.slice(0,8))})')
    [ -n "${GEN[restic]}" ] || { rec_status "$NAME" full_wall_s restic fail "cannot list restic snapshots"; REPO_OK[restic]=0; }
  fi
  step_end "full backup"
}

# squashfs image cache: $BENCH_DIR/cache/squashfs-MODE-NAME.{sqfs,json}, valid while the
# corpus stamp and the mksquashfs version are unchanged
squashfs_key() { echo "$(cat "$BENCH_DIR/corpus/$MODE/$NAME.ok") $(mksquashfs -version 2>&1 | head -1) zstd-default"; }
squashfs_save() {
  local c=$BENCH_DIR/cache/squashfs-$MODE-$NAME
  mkdir -p "$BENCH_DIR/cache"
  ln -f "$1/image.sqfs" "$c.sqfs.tmp" && mv -f "$c.sqfs.tmp" "$c.sqfs" || return 0
  printf '{"key":%s,"date":"%s","wall_s":%s,"rss_mib":%s}\n' "$(json_str "$(squashfs_key)")" "$(date +%F)" "$WALL" "$RSS_MIB" >"$c.json"
}
squashfs_cached() {  # squashfs_cached REPO -> 0 when a cached image was put in REPO and recorded
  local c=$BENCH_DIR/cache/squashfs-$MODE-$NAME v
  [ "$SQUASHFS" = reuse ] && [ -f "$c.sqfs" ] && [ -f "$c.json" ] || return 1
  v=$(node -e 'const c=JSON.parse(require("fs").readFileSync(process.argv[1]));if(c.key!==process.argv[2])process.exit(1);console.log(c.wall_s,c.rss_mib,c.date)' "$c.json" "$(squashfs_key)") || return 1
  mkdir -p "$1" && ln -f "$c.sqfs" "$1/image.sqfs" || return 1
  set -- $v
  rec "$NAME" full_wall_s squashfs 1 "$1"; rec "$NAME" full_rss_mib squashfs 1 "$2"
  rec "$NAME" repo_full_mb squashfs 1 "$(repo_mb squashfs)"
  rec_status "$NAME" full_wall_s squashfs cached "image and figures reused from the run of $3 (BENCH_SQUASHFS=build to rebuild)"
  REPO_OK[squashfs]=1; FIRST_WALL[$NAME.full.squashfs]=999
  log "   full backup squashfs: reusing the image built on $3 (${1} s, ${2} MiB)"
}

# the tools with incremental backups (bench_many adds bfs1)
AGAIN_TOOLS=(bfs bfse restic borg)
# again_round KIND(nochange|incr) REP: one round of backups by the incremental tools
again_round() {
  local kind=$1 rep=$2 tool logf
  for tool in "${AGAIN_TOOLS[@]}"; do
    [ "${REPO_OK[$tool]:-0}" = 1 ] || continue
    want_rep "$NAME.$kind.$tool" "$rep" || continue
    NGEN[$tool]=$((NGEN[$tool] + 1))
    logf=$RUN/logs/$NAME-$kind-$tool-$rep.log
    timed "$logf" "${TOOL_SH[@]}" backup "$tool" "$(repo_of "$tool")" "$SRC" "g${NGEN[$tool]}"
    if [ "$RC" != 0 ]; then
      rec_status "$NAME" "${kind}_wall_s" "$tool" fail "exit $RC: $(tail_log "$logf")"; REPO_OK[$tool]=0; continue
    fi
    rec "$NAME" "${kind}_wall_s" "$tool" "$rep" "$WALL"
    rec "$NAME" "${kind}_rss_mib" "$tool" "$rep" "$RSS_MIB"
    note_first "$NAME.$kind.$tool" "$rep" "$WALL"
    COUNT[$tool]=$((COUNT[$tool] + 1))
    log "   $kind backup $tool #$rep: ${WALL} s, ${RSS_MIB} MiB"
  done
}
declare -A COUNT
again_begin() {
  local kind=$1 tool
  for tool in tar squashfs; do tool_on "$tool" && rec_status "$NAME" "${kind}_wall_s" "$tool" text "= full"; done
  for tool in "${AGAIN_TOOLS[@]}"; do
    COUNT[$tool]=0
    tool_on "$tool" || continue
    skip_status "${kind}_wall_s" "$tool" again && continue
    SIZE0[$tool]=$(repo_bytes "$tool")
  done
}
again_growth() {  # again_growth METRIC DIVISOR
  local metric=$1 div=$2 tool
  for tool in "${AGAIN_TOOLS[@]}"; do
    [ "${REPO_OK[$tool]:-0}" = 1 ] && [ "${COUNT[$tool]:-0}" -gt 0 ] || continue
    rec "$NAME" "$metric" "$tool" 1 "$(awk -v a="${SIZE0[$tool]}" -v b="$(repo_bytes "$tool")" -v n="${COUNT[$tool]}" -v d="$div" 'BEGIN{printf "%.4f", (b-a)/n/d}')"
  done
}

step_nochange() {
  local rep
  step_begin "backup with nothing changed, median of $REPS"
  again_begin nochange
  for ((rep = 1; rep <= REPS; rep++)); do again_round nochange "$rep"; done
  again_growth nochange_growth_kb 1e3
  step_end "no-change backup"
}

step_incremental() {
  local rep state=$BENCH_DIR/corpus/$MODE/mutations-$NAME.json
  step_begin "incremental backup ($([ "$KIND" = tree ] && echo 'a line appended to every 100th file' || echo 'ten random 4 KiB blocks overwritten')), median of $REPS"
  again_begin incr
  for ((rep = 1; rep <= REPS; rep++)); do
    if [ "$KIND" = tree ]; then node "$BENCH_SRC/mutate.mjs" apply tree "$SRC" "$rep" "$state" >&2
    else node "$BENCH_SRC/mutate.mjs" apply img "$BENCH_IMG" "$rep" "$state" >&2; fi || die "changing the corpus failed"
    again_round incr "$rep"
  done
  again_growth incr_growth_mb 1e6
  node "$BENCH_SRC/mutate.mjs" revert "$state" || die "reverting the corpus changes failed"
  step_end "incremental backup"
}

# check_same SRC OTHER LOG -> diff -r (tree) or cmp (image); 0 when identical
check_same() {
  if [ "$KIND" = tree ]; then diff -r --no-dereference "$1" "$2" >"$3" 2>&1
  else cmp "$1/$IMG_NAME" "$2" >"$3" 2>&1; fi
}
img_in() {  # the image file inside a restored/mounted root (bfs may restore the image as DEST itself)
  if [ -f "$1" ]; then echo "$1"; else echo "$1/$IMG_NAME"; fi
}

step_restore() {
  local rep tool dest root logf target
  step_begin "restore of the first generation (repository in page cache), median of $REPS"
  tool_on squashfs && rec_status "$NAME" restore_wall_s squashfs text "—"
  local rtools=(bfs bfse tar restic borg) ok=()
  for tool in "${rtools[@]}"; do tool_on "$tool" || continue; skip_status restore_wall_s "$tool" restore || ok+=("$tool"); done
  for ((rep = 1; rep <= REPS; rep++)); do
    for tool in "${ok[@]}"; do
      want_rep "$NAME.restore.$tool" "$rep" || continue
      dest=$OUTDIR/restore/$tool; logf=$RUN/logs/$NAME-restore-$tool-$rep.log
      rm -rf "$dest"; mkdir -p "$OUTDIR/restore"
      timed "$logf" "${TOOL_SH[@]}" restore "$tool" "$(repo_of "$tool")" "$dest" "${GEN[$tool]}"
      if [ "$RC" != 0 ]; then rec_status "$NAME" restore_wall_s "$tool" fail "exit $RC: $(tail_log "$logf")"; rm -rf "$dest"; continue; fi
      rec "$NAME" restore_wall_s "$tool" "$rep" "$WALL"
      rec "$NAME" restore_rss_mib "$tool" "$rep" "$RSS_MIB"
      note_first "$NAME.restore.$tool" "$rep" "$WALL"
      log "   restore $tool #$rep: ${WALL} s, ${RSS_MIB} MiB"
      if [ "$rep" = 1 ]; then
        root=$("${TOOL_SH[@]}" root "$tool" restore "$dest" "${GEN[$tool]}" "$SRC")
        target=$root; [ "$KIND" = img ] && target=$(img_in "$root")
        stopwatch_start
        if check_same "$SRC" "$target" "$logf.diff"; then rec_status "$NAME" restore_check "$tool" ok "identical"
        else rec_status "$NAME" restore_check "$tool" fail "restored data differs from the source: $(tail_log "$logf.diff")"; fi
        stopwatch_stop; log "   compare $tool restore with source: ${WALL} s"
      fi
      rm -rf "$dest"
    done
  done
  step_end "restore"
}

# ---- mounts -------------------------------------------------------------------
# start_mount TOOL RECORD(0|1) REP: cold mount; sets MNT MROOT MPID LPID. Times the mount
# (start -> mountpoint appears, start -> `ls` of the backed-up root answers) if RECORD=1.
start_mount() {
  local tool=$1 record=$2 rep=$3 t0 now ready="" lsd="" rc launched=1 before="" logf=$RUN/logs/$NAME-mount-$1.log
  MNT=$RUN/mnt/$tool; MPID=""
  mkdir -p "$MNT"; force_umount "$MNT"
  MROOT=$("${TOOL_SH[@]}" root "$tool" mount "$MNT" "${GEN[$tool]}" "$SRC")
  [[ $tool == bfs* ]] && before=" $(fuse_pids | tr '\n' ' ') "
  # The wait below forks nothing until the mount is there (bash builtins only: /proc/mounts read by
  # `read`, sleeps by `read -t` on a fifo no one writes): a mountpoint, awk and sleep per 5 ms
  # poll cost ~80 ms of a bfs mount's cold start on 2 cores (0.32-0.34 s to the mount table
  # against 0.24-0.25 s with no poller, 2026-12-04), CPU taken from the tool being timed.
  # (The mount table names the mount point by its real path.)
  local mnt_real repo; mnt_real=$(realpath "$MNT"); repo=$(repo_of "$tool")
  poll_fifo_open
  drop_caches
  t0=$EPOCHREALTIME
  setsid "${TOOL_SH[@]}" mount "$tool" "$repo" "$MNT" "${GEN[$tool]}" >>"$logf" 2>&1 9>&- {POLL_FD}>&- &  # daemons must not hold the lock (nor the poll fifo)
  LPID=$!; track_pid "$LPID"
  while :; do
    now=$EPOCHREALTIME
    if [ -z "$ready" ] && in_mount_table "$mnt_real"; then ready=$(fsub "$t0" "$now"); fi
    if [ -n "$ready" ] && [ -n "$(ls -A "$MROOT" 2>/dev/null)" ]; then lsd=$(fsub "$t0" "$EPOCHREALTIME"); break; fi
    if [ "$launched" = 1 ] && ! kill -0 "$LPID" 2>/dev/null; then
      wait "$LPID"; rc=$?; launched=0
      if [ "$rc" != 0 ]; then rec_status "$NAME" mount_ls_s "$tool" fail "mount exited $rc: $(tail_log "$logf")"; return 1; fi
    fi
    if (( ${now%.*} - ${t0%.*} > 120 )); then
      rec_status "$NAME" mount_ls_s "$tool" fail "mount did not answer ls within 120 s: $(tail_log "$logf")"; stop_mount "$tool"; return 1
    fi
    read -r -t 0.005 -u "$POLL_FD" || true
  done
  if kill -0 "$LPID" 2>/dev/null && [ "$tool" = restic ]; then MPID=$LPID; else MPID=$(mount_pid "$MNT"); fi
  if [ -z "$MPID" ] && [[ $tool == bfs* ]]; then  # daemon with other argv: the one new process holding /dev/fuse
    local p new=()
    for p in $(fuse_pids); do [[ "$before" == *" $p "* ]] || new+=("$p"); done
    [ ${#new[@]} = 1 ] && MPID=${new[0]}
  fi
  [ -n "$MPID" ] || MPID=$LPID
  [ "$MPID" != "$LPID" ] && track_pid "$MPID"
  if [ "$record" = 1 ]; then
    rec "$NAME" mount_ready_s "$tool" "$rep" "$ready"
    rec "$NAME" mount_ls_s "$tool" "$rep" "$lsd"
    note_first "$NAME.mount.$tool" "$rep" "$lsd"
    log "   mount $tool #$rep: mountpoint ${ready} s, ls ${lsd} s (daemon pid $MPID)"
  fi
  return 0
}
stop_mount() {
  local tool=$1
  "${TOOL_SH[@]}" umount "$tool" "$MNT" >>"$RUN/logs/$NAME-mount-$tool.log" 2>&1
  if is_mounted "$MNT"; then sleep 0.5; force_umount "$MNT" || rec_status "$NAME" mount_ls_s "$tool" fail "could not unmount $MNT"; fi
  wait_pid_gone "$MPID" 10
  kill -0 "$LPID" 2>/dev/null && wait_pid_gone "$LPID" 5
  wait "$LPID" 2>/dev/null
  return 0
}
mount_skip() {  # mount_skip TOOL -> 0 (and status records, once) when TOOL has no mount here
  local tool=$1 m
  case $tool in
    tar) [ "$2" = 1 ] && for m in $MOUNT_METRICS; do rec_status "$NAME" "$m" tar text "no mount"; done; return 0 ;;
    native) return 1 ;;
  esac
  if [[ $tool == bfs || $tool == bfse ]] && ! bfs_can mount "$tool"; then
    [ "$2" = 1 ] && for m in $MOUNT_METRICS; do rec_status "$NAME" "$m" "$tool" na "n/a (not built)"; done; return 0
  fi
  if [ "${REPO_OK[$tool]:-0}" != 1 ]; then
    [ "$2" = 1 ] && rec_status "$NAME" mount_ls_s "$tool" fail "skipped: no backup to mount"; return 0
  fi
  return 1
}
# timed_read METRIC TOOL REP LOGTAG CMD... -> runs a read step, records METRIC (s), fails loudly
timed_read() {
  local metric=$1 tool=$2 rep=$3 tag=$4; shift 4
  want_rep "$NAME.$metric.$tool" "$rep" || return 0
  drop_caches
  timed "$RUN/logs/$NAME-$tag-$tool-$rep.log" "$@"
  if [ "$RC" != 0 ]; then rec_status "$NAME" "$metric" "$tool" fail "exit $RC: $(tail_log "$RUN/logs/$NAME-$tag-$tool-$rep.log")"; return 1; fi
  rec "$NAME" "$metric" "$tool" "$rep" "$WALL"
  note_first "$NAME.$metric.$tool" "$rep" "$WALL"
  log "   $tag $tool #$rep: ${WALL} s"
}
mount_check() {  # rep 1: the mounted data must equal the source
  local tool=$1 target=$MROOT logf=$RUN/logs/$NAME-mountdiff-$1.log
  [ "$KIND" = img ] && target=$MROOT/$IMG_NAME
  stopwatch_start
  if check_same "$SRC" "$target" "$logf"; then rec_status "$NAME" mount_check "$tool" ok "identical"
  else rec_status "$NAME" mount_check "$tool" fail "mounted data differs from the source: $(tail_log "$logf")"; fi
  stopwatch_stop; log "   compare $tool mount with source: ${WALL} s"
}

step_mount_tree() {
  local rep tool root rss
  MOUNT_METRICS="mount_ready_s mount_ls_s find_s cat_s pread_cold_median_us pread_warm_median_us cp_tools_s mount_check mount_rss_mib"
  pread_list
  step_begin "mounted generation: ls, find, cat of every file, cp -a tools/ (each cold), median of $REPS"
  for ((rep = 1; rep <= REPS; rep++)); do
    for tool in bfs bfse squashfs restic borg native tar; do
      tool_on "$tool" || continue
      mount_skip "$tool" "$rep" && continue
      # session A: mount time, find | wc -l, cat of every file, diff -r, daemon peak RSS
      if [ "$tool" = native ]; then root=$SRC
      else
        want_rep "$NAME.mount.$tool" "$rep" || want_rep "$NAME.find_s.$tool" "$rep" || want_rep "$NAME.cat_s.$tool" "$rep" || continue
        start_mount "$tool" 1 "$rep" || continue
        root=$MROOT
      fi
      if timed_read find_s "$tool" "$rep" find bash -c 'find "$1" | wc -l' _ "$root"; then
        [ "$rep" = 1 ] && rec "$NAME" find_entries "$tool" 1 "$(tail -1 "$RUN/logs/$NAME-find-$tool-$rep.log")"
      fi
      timed_read cat_s "$tool" "$rep" cat bash -c 'cd "$1" && find . -type f -print0 | xargs -0 -r cat >/dev/null' _ "$root"
      if [ "$tool" != native ]; then
        [ "$rep" = 1 ] && mount_check "$tool"
        rss=$(vmhwm_mib "$MPID"); [ -n "$rss" ] && rec "$NAME" mount_rss_mib "$tool" "$rep" "$rss"
        stop_mount "$tool"
      fi
      # session B, on a fresh cold mount: 2000 random 4 KiB preads over the files of
      # 4 KiB or more outside tools/ (cold, then the same again warm), then cp -a tools/
      want_rep "$NAME.cp_tools_s.$tool" "$rep" || continue
      if [ "$tool" = native ]; then root=$SRC; else start_mount "$tool" 0 "$rep" || continue; root=$MROOT; fi
      drop_caches
      pread_run "$tool" "$rep" cold --list "$PREAD_LIST" "$root" && pread_run "$tool" "$rep" warm --list "$PREAD_LIST" "$root"
      rm -rf "$OUTDIR/cp"; mkdir -p "$OUTDIR/cp"
      timed_read cp_tools_s "$tool" "$rep" cp cp -a "$root/tools" "$OUTDIR/cp/"
      rm -rf "$OUTDIR/cp"
      [ "$tool" != native ] && stop_mount "$tool"
    done
  done
  step_end "mount"
}

pread_list() {  # the tree's pread files -> PREAD_LIST (built once per corpus)
  # every regular file of 4 KiB or more outside tools/ (which the mount step's session B
  # copies after the preads), relative to the tree's root, sorted
  PREAD_LIST=$RUN/pread-$NAME.list
  [ -s "$PREAD_LIST" ] && return 0
  (cd "$SRC" && find . -path ./tools -prune -o -type f -size +4095c -printf '%P\n' | LC_ALL=C sort) >"$PREAD_LIST"
  log "   pread files: $(wc -l <"$PREAD_LIST") (4 KiB or more, outside tools/)"
}

# pread_run TOOL REP STATE(cold|warm) FILE | --list LIST ROOT: records
# ${PREAD_PREFIX}pread_STATE_{median,p99}_us (the compact step sets PREAD_PREFIX=compact_)
pread_run() {
  local tool=$1 rep=$2 state=$3 out m=${PREAD_PREFIX:-}pread_$3; shift 3
  if ! out=$(node "$BENCH_SRC/pread.mjs" "$@" 2000 42 2>&1); then
    rec_status "$NAME" "${m}_median_us" "$tool" fail "pread failed: $out"; return 1
  fi
  rec "$NAME" "${m}_median_us" "$tool" "$rep" "$(node -e 'console.log(JSON.parse(process.argv[1]).median_us)' "$out")"
  rec "$NAME" "${m}_p99_us" "$tool" "$rep" "$(node -e 'console.log(JSON.parse(process.argv[1]).p99_us)' "$out")"
  log "   ${PREAD_PREFIX:-}pread $state $tool #$rep: $out"
}

step_mount_img() {
  local rep tool file rss rss2
  MOUNT_METRICS="mount_ready_s mount_ls_s dd_s pread_cold_median_us pread_warm_median_us mount_check mount_rss_mib"
  step_begin "mounted image: dd bs=1M, 2000 random 4 KiB preads (cold, then warm), median of $REPS"
  for ((rep = 1; rep <= REPS; rep++)); do
    for tool in bfs bfse squashfs restic borg native tar; do
      tool_on "$tool" || continue
      mount_skip "$tool" "$rep" && continue
      rss=""
      # session A: mount time, dd of the image, cmp, daemon peak RSS
      if [ "$tool" = native ]; then file=$BENCH_IMG
      else
        start_mount "$tool" 1 "$rep" || continue
        file=$MROOT/$IMG_NAME
      fi
      timed_read dd_s "$tool" "$rep" dd dd if="$file" of=/dev/null bs=1M
      if [ "$tool" != native ]; then
        [ "$rep" = 1 ] && mount_check "$tool"
        rss=$(vmhwm_mib "$MPID")
        stop_mount "$tool"
      fi
      # session B: random preads on a fresh cold mount, then the same offsets again (warm)
      if [ "$tool" != native ]; then start_mount "$tool" 0 "$rep" || continue; fi
      drop_caches
      pread_run "$tool" "$rep" cold "$file" && pread_run "$tool" "$rep" warm "$file"
      if [ "$tool" != native ]; then
        rss2=$(vmhwm_mib "$MPID")
        rss=$(awk -v a="${rss:-0}" -v b="${rss2:-0}" 'BEGIN{print (a > b ? a : b)}')
        rec "$NAME" mount_rss_mib "$tool" "$rep" "$rss"
        stop_mount "$tool"
      fi
    done
  done
  step_end "mount"
}

# ---- compact (issue 16) --------------------------------------------------------
# Right after the full backup, while bfs's repository holds generation 1 only (as tar's
# archive holds the corpus once). REPS times (once when the first took over a minute): a
# fresh `cp -a` copy of that repository, `bfs compact --min-age 0 --json` on it, timed
# (wall, user + sys CPU, peak RSS); `du -sb` of the copy before and after, the measure of
# the full backup's "repo size" row. Then generation 1 read through a cold mount of the
# uncompacted repository (tool bfs) and of the last compacted copy (tool bfsc), alternating
# bfs, bfsc / bfsc, bfs / … (BENCH_COMPACT_REPS rounds, default REPS): img: dd bs=1M, then
# on a fresh mount 2000 random 4 KiB preads cold and warm (as step_mount_img); tree: the
# mount step's preads (same files, same seed). Round 1 compares the compacted copy's mount
# with the source (cmp / diff -r). The copy is removed afterwards: every other step reads
# the uncompacted repository.
step_compact() {
  local rep tool src dst logf out before after cpu raw ub ua units order file ok=0
  tool_on bfs || return 0
  step_begin "compact: bfs compact --min-age 0 of a copy of the full backup's repository, median of $REPS; reads before / after"
  if ! bfs_can backup || [ "${BFS_HAS[compact]:-0}" != 1 ]; then
    rec_status "$NAME" compact_wall_s bfs na "n/a (not built)"; step_end compact; return 0
  fi
  if [ "${BFS_FORMAT:-}" = 1 ]; then
    rec_status "$NAME" compact_wall_s bfs na "n/a (format 1: bfs compact needs a format 2 repository)"; step_end compact; return 0
  fi
  if [ "${REPO_OK[bfs]:-0}" != 1 ]; then
    rec_status "$NAME" compact_wall_s bfs fail "skipped: no backup to compact"; step_end compact; return 0
  fi
  src=$(repo_of bfs) dst=$(repo_of bfsc)
  rec "$NAME" compact_load1_start host 1 "$(cut -d' ' -f1 /proc/loadavg)"
  for ((rep = 1; rep <= REPS; rep++)); do
    want_rep "$NAME.compact.bfs" "$rep" || continue
    logf=$RUN/logs/$NAME-compact-bfs-$rep.log
    rm -rf "$dst"
    if ! cp -a "$src" "$dst"; then rec_status "$NAME" compact_wall_s bfs fail "cp -a of the repository failed"; ok=0; break; fi
    before=$(du -sb "$dst" | cut -f1)
    timed "$logf" "${TOOL_SH[@]}" compact bfs "$dst"
    if [ "$RC" != 0 ]; then rec_status "$NAME" compact_wall_s bfs fail "exit $RC: $(tail_log "$logf")"; ok=0; break; fi
    after=$(du -sb "$dst" | cut -f1)
    # the summary line of --json: bytes.raw (raw bytes of the units compacted), before/after (units)
    if ! out=$(node -e '
      const l = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter((x) => x.startsWith("{"))
        .map((x) => { try { return JSON.parse(x) } catch { return {} } }).find((x) => x.message_type === "summary")
      if (!l || !l.bytes) process.exit(1)
      console.log(l.bytes.raw, l.bytes.before, l.bytes.after, l.units.compacted)' "$logf"); then
      rec_status "$NAME" compact_wall_s bfs fail "no summary in bfs compact --json: $(tail_log "$logf")"; ok=0; break
    fi
    read -r raw ub ua units <<<"$out"
    cpu=$(awk -F': ' '/User time \(seconds\)/{u=$2} /System time \(seconds\)/{s=$2} END{printf "%.2f", u+s}' "$logf.time")
    rec "$NAME" compact_wall_s bfs "$rep" "$WALL"
    rec "$NAME" compact_cpu_s bfs "$rep" "$cpu"
    rec "$NAME" compact_rss_mib bfs "$rep" "$RSS_MIB"
    rec "$NAME" compact_raw_bytes bfs "$rep" "$raw"
    rec "$NAME" compact_units bfs "$rep" "$units"
    rec "$NAME" compact_units_before_bytes bfs "$rep" "$ub"
    rec "$NAME" compact_units_after_bytes bfs "$rep" "$ua"
    rec "$NAME" compact_stored_before_bytes bfs "$rep" "$before"
    rec "$NAME" compact_stored_after_bytes bfs "$rep" "$after"
    note_first "$NAME.compact.bfs" "$rep" "$WALL"
    ok=1
    log "   compact #$rep: ${WALL} s wall, ${cpu} s CPU, ${RSS_MIB} MiB; $units units, $raw raw bytes; repository $before -> $after bytes"
  done
  rec "$NAME" compact_load1_end host 1 "$(cut -d' ' -f1 /proc/loadavg)"
  if [ "$ok" != 1 ]; then rm -rf "$dst"; step_end compact; return 0; fi
  if ! bfs_can mount; then
    rec_status "$NAME" compact_dd_s bfs na "n/a (not built)"; rm -rf "$dst"; step_end compact; return 0
  fi
  # the reads: their own number of rounds; PREAD_PREFIX names their records compact_pread_*
  local REPS=${BENCH_COMPACT_REPS:-$REPS} PREAD_PREFIX=compact_
  GEN[bfsc]=${GEN[bfs]}
  [ "$KIND" = tree ] && pread_list
  # the uncompacted side read from a copy written now too: the original was written long before
  # and read by every cp -a above, so a cache under this machine's disk (the VM host's) may hold
  # it where the fresh compacted copy is not; the original is put back after the reads
  mv "$src" "$src.orig" && cp -a "$src.orig" "$src" || { rec_status "$NAME" compact_dd_s bfs fail "copying the uncompacted repository failed"; rm -rf "$dst"; step_end compact; return 0; }
  log "   reads of generation 1, uncompacted (bfs, a fresh copy) and compacted (bfsc), alternating, $REPS round(s)"
  rec "$NAME" compact_load1_reads_start host 1 "$(cut -d' ' -f1 /proc/loadavg)"
  for ((rep = 1; rep <= REPS; rep++)); do
    if ((rep % 2)); then order="bfs bfsc"; else order="bfsc bfs"; fi
    for tool in $order; do
      if [ "$KIND" = img ]; then
        start_mount "$tool" 0 "$rep" || continue
        file=$MROOT/$IMG_NAME
        timed_read compact_dd_s "$tool" "$rep" compact-dd dd if="$file" of=/dev/null bs=1M
        [ "$rep" = 1 ] && [ "$tool" = bfsc ] && mount_check bfsc
        stop_mount "$tool"
        start_mount "$tool" 0 "$rep" || continue
        drop_caches
        pread_run "$tool" "$rep" cold "$file" && pread_run "$tool" "$rep" warm "$file"
        stop_mount "$tool"
      else
        start_mount "$tool" 0 "$rep" || continue
        drop_caches
        pread_run "$tool" "$rep" cold --list "$PREAD_LIST" "$MROOT" && pread_run "$tool" "$rep" warm --list "$PREAD_LIST" "$MROOT"
        [ "$rep" = 1 ] && [ "$tool" = bfsc ] && mount_check bfsc
        stop_mount "$tool"
      fi
    done
  done
  rec "$NAME" compact_load1_reads_end host 1 "$(cut -d' ' -f1 /proc/loadavg)"
  rm -rf "$dst" "$src" && mv "$src.orig" "$src"
  step_end compact
}

bench_corpus() {  # bench_corpus NAME KIND SRC
  NAME=$1 KIND=$2 SRC=$3
  export BENCH_KIND=$KIND BENCH_IMG=$SRC/$IMG_NAME
  REPO_OK=(); GEN=(); NGEN=(); FIRST_WALL=()
  # the bfs column's repository format: explicit (`bfs init --format N`), so the table
  # does not change meaning with bfs's default; BENCH_BFS_FORMAT=1 measures format 1
  if [ -n "${BENCH_BFS_FORMAT:-}" ]; then export BFS_FORMAT=$BENCH_BFS_FORMAT
  elif [ "${BFS_HAS[format2]:-0}" = 1 ]; then export BFS_FORMAT=2
  else unset BFS_FORMAT; fi
  rec_meta bfs_format "\"${BFS_FORMAT:-default}\""
  log "bfs column: repository format ${BFS_FORMAT:-default}"
  step_full_backup
  step_on compact && step_compact   # while bfs's repository holds generation 1 only, as tar's archive
  step_on nochange && step_nochange
  step_on incremental && step_incremental
  step_on restore && step_restore
  if step_on mount; then
    if [ "$KIND" = tree ]; then step_mount_tree; else step_mount_img; fi
  fi
  rm -rf "$OUTDIR/restore" "$OUTDIR/cp"
  unset BFS_FORMAT
}

# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || log "WARNING: not root: packages cannot be installed and the page cache cannot be dropped"
install_packages
RUN=$BENCH_DIR/run-$MODE
mkdir -p "$BENCH_DIR"
exec 9>"$BENCH_DIR/.lock"   # one bench at a time per BENCH_DIR (they would also skew each other)
flock -n 9 || die "another bench is running with BENCH_DIR=$BENCH_DIR"
if [ -d "$RUN/mnt" ]; then for m in "$RUN"/mnt/*; do [ -d "$m" ] && force_umount "$m"; done; fi
is_mounted "$RUN/out" && umount "$RUN/out"
online_stale   # a loop filesystem left by a run that was killed (before rm -rf "$RUN")
revert_mutations
rm -rf "$RUN"
mkdir -p "$RUN"/{repo,mnt,logs,out}
: >"$RUN/pids"
RESULTS=$RUN/results.jsonl
: >"$RESULTS"
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM
export RESTIC_PASSWORD=bfs-bench RESTIC_CACHE_DIR=$RUN/restic-cache BORG_BASE_DIR=$RUN/borg-home
export XDG_CACHE_HOME=$RUN/cache

# Restores and `cp -a` write into a tmpfs: on this kind of VM, ext4 spends 30-60 s of
# erratic kernel CPU creating the tree's 78k files, which would drown the tools' own cost.
OUTDIR=$RUN/out OUT_FS=disk
if [ "${BENCH_RESTORE_FS:-tmpfs}" = tmpfs ]; then
  if mount -t tmpfs -o size=8g,mode=0755 bfs-bench "$OUTDIR" 2>/dev/null; then OUT_FS=tmpfs
  else log "WARNING: cannot mount a tmpfs for restores; restoring to $OUTDIR on disk"; fi
fi
log "bench mode=$MODE BENCH_DIR=$BENCH_DIR reps=$REPS squashfs=$SQUASHFS restore target=$OUT_FS"
rec_meta reps "$REPS"
rec_meta restore_fs "\"$OUT_FS\""
rec_meta squashfs "\"$SQUASHFS\""
drop_caches
IMG_NAME=linux-6.1.img
if linux_on; then
  build_full_tree
  if [ "$MODE" = full ]; then
    TREE=$BENCH_DIR/corpus/full/tree
    img_on && build_img 2G drivers fs net include
  else
    build_quick_tree
    TREE=$BENCH_DIR/corpus/quick/tree
    img_on && build_img 256M fs net include
  fi
  corpus_meta tree "$TREE"
  img_on && corpus_meta img "$BENCH_DIR/corpus/$MODE/img"
fi
detect_bfs

if corpus_steps_on; then
  on_list tree "${BENCH_CORPORA:-}" && bench_corpus tree tree "$TREE"
  on_list img "${BENCH_CORPORA:-}" && bench_corpus img img "$BENCH_DIR/corpus/$MODE/img"
fi
if step_on online; then
  if [ "$(id -u)" != 0 ]; then rec_status online_tree backup_wall_s online na "n/a (needs root: loop device, fanotify)"
  elif [ "${BFS_HAS[backup]}" != 1 ]; then rec_status online_tree backup_wall_s online na "n/a (not built)"
  else bench_online; fi
fi
step_on many && bench_many
step_on admin && bench_admin

cleanup
trap - EXIT
rec_meta cold_ok "$COLD_OK"
rec_meta elapsed_s "$(fsub "$BENCH_T0" "$EPOCHREALTIME")"
OUT=${BENCH_OUT:-$BENCH_SRC/results/$(date +%F)$([ "$MODE" = quick ] && echo -quick)$([ -n "${BENCH_BFS:-}" ] && echo -custom-bfs)$([ -n "$FILTERED" ] && { case "${BENCH_STEPS:-}:${BENCH_TOOLS:-}" in many:) echo -many ;; admin:) echo -admin ;; compact:bfs,tar | full,compact:bfs,tar) echo -compact-size ;; *) echo -partial ;; esac; })}
mkdir -p "$(dirname "$OUT")"
node "$BENCH_SRC/report.mjs" "$RESULTS" "$OUT" "$MODE" || die "report failed"
rm -rf "$RUN/repo"
log "results: $OUT.md, $OUT.json (raw records and logs in $RUN)"
if [ "$FAILURES" -gt 0 ]; then log "$FAILURES step(s) FAILED"; exit 1; fi
log "all steps passed"
