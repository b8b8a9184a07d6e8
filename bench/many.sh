# The `many` step (issue 15): a corpus of many small files, sourced by bench/run.sh.
# BENCH_STEPS=many (make bench-many) runs it alone; bench/README.md describes it.
#
# Corpus: 1,000 directories × 1,000 files of 0–200 random bytes (full), 100 × 1,000 (quick),
# built by bench/many-corpus.mjs from a fixed seed into $BENCH_DIR/corpus/MODE/many (ext4
# under /var/tmp, stamp many.ok: built once, reused). Columns: bfs (a format 2 repository,
# `bfs init --format 2`), bfs1 (format 1, `bfs init --format 1`; bfs's default until 2026-12-03), restic, borg; squashfs
# (mksquashfs + squashfuse) for the mount rows.

MANY_SEED=15
MANY_T=1700000000

many_build() {  # many_build MODE NDIRS NFILES: $BENCH_DIR/corpus/MODE/many
  local dir=$BENCH_DIR/corpus/$1 nd=$2 nf=$3 stamp
  stamp="many-v1 $nd dirs x $nf files, 0-200 bytes, seed $MANY_SEED"
  if [ -f "$dir/many.ok" ] && [ "$(cat "$dir/many.ok")" = "$stamp" ] && [ -d "$dir/many" ]; then return 0; fi
  log "corpus: building many ($nd dirs × $nf files) in $dir/many"
  rm -rf "$dir/many" "$dir/many.tmp" "$dir/many.ok"
  mkdir -p "$dir"
  node "$BENCH_SRC/many-corpus.mjs" "$dir/many.tmp" "$nd" "$nf" "$MANY_SEED" >&2 || die "building the many corpus failed"
  mv "$dir/many.tmp" "$dir/many" && touch -d "@$MANY_T" "$dir/many" || die "building the many corpus failed"
  sync
  echo "$stamp" >"$dir/many.ok"
}

# full mode: bfs's full backup of the 100k corpus too, so that one run gives the 1M/100k
# peak RSS ratio (records under corpus many_100k)
many_small_full() {
  local src=$BENCH_DIR/corpus/quick/many repo=$RUN/repo/many_100k-bfs rep logf
  step_begin "bfs full backup of the 100k corpus (for the 1M/100k RSS ratio), median of $REPS"
  for ((rep = 1; rep <= REPS; rep++)); do
    logf=$RUN/logs/many_100k-full-bfs-$rep.log
    rm -rf "$repo"
    "${TOOL_SH[@]}" init bfs "$repo" >"$logf.init" 2>&1 || { rec_status many_100k full_wall_s bfs fail "init failed: $(tail_log "$logf.init")"; return; }
    warm "$src"
    timed "$logf" "${TOOL_SH[@]}" backup bfs "$repo" "$src" g1
    if [ "$RC" != 0 ]; then rec_status many_100k full_wall_s bfs fail "exit $RC: $(tail_log "$logf")"; return; fi
    rec many_100k full_wall_s bfs "$rep" "$WALL"
    rec many_100k full_rss_mib bfs "$rep" "$RSS_MIB"
    log "   full backup of 100k bfs #$rep: ${WALL} s, ${RSS_MIB} MiB"
  done
  rm -rf "$repo"
  step_end "100k full backup"
}

many_nochange() {
  local rep
  step_begin "backup with nothing changed, median of $REPS"
  again_begin nochange
  for ((rep = 1; rep <= REPS; rep++)); do again_round nochange "$rep"; done
  again_growth nochange_growth_b 1
  step_end "no-change backup"
}

# 1 %: a line appended to every 100th file (sorted walk, bench/mutate.mjs), reverted after
many_incremental() {
  local rep state=$BENCH_DIR/corpus/$MODE/mutations-$NAME.json out
  step_begin "1 % of the files changed (a line appended to every 100th file), median of $REPS"
  again_begin incr
  for ((rep = 1; rep <= REPS; rep++)); do
    node "$BENCH_SRC/mutate.mjs" apply tree "$SRC" "$rep" "$state" >&2 || die "changing the corpus failed"
    # the changed data: the whole changed files (what a file-granular backup must store
    # again), and the bytes appended to them since the full backup
    out=$(node -e 'const fs=require("fs");const s=JSON.parse(fs.readFileSync(process.argv[1]));let b=0,o=0;for(const f of s.files){b+=fs.statSync(f.p).size;o+=f.size}console.log(b,b-o,s.files.length)' "$state") \
      || die "reading the corpus changes failed"
    set -- $out
    rec "$NAME" incr_changed_bytes corpus "$rep" "$1"
    rec "$NAME" incr_appended_bytes corpus "$rep" "$2"
    rec "$NAME" incr_changed_files corpus "$rep" "$3"
    again_round incr "$rep"
  done
  again_growth incr_growth_b 1
  node "$BENCH_SRC/mutate.mjs" revert "$state" || die "reverting the corpus changes failed"
  step_end "1 % changed backup"
}

# rep 1: the mounted tree against the source. diff -r of 100k files through a mount took
# 104 s here, so of 1M (~17 min per tool) only every 100th directory (10,000 files) is
# compared, plus the entry count of the whole tree against the source's.
many_mount_check() {
  local tool=$1 logf=$RUN/logs/$NAME-mountdiff-$1.log d n ok=1 what="identical"
  stopwatch_start
  if [ "$MODE" = full ]; then
    for ((n = 0; n < 1000; n += 100)); do
      d=d$(printf %04d "$n")
      diff -r --no-dereference "$SRC/$d" "$MROOT/$d" >>"$logf" 2>&1 || ok=0
    done
    n=$(find "$SRC" | wc -l)
    [ "$n" = "$(find "$MROOT" | wc -l)" ] || { ok=0; echo "entry count differs from the source's $n" >>"$logf"; }
    what="every 100th directory identical, same entry count"
  else
    diff -r --no-dereference "$SRC" "$MROOT" >"$logf" 2>&1 || ok=0
  fi
  if [ "$ok" = 1 ]; then rec_status "$NAME" mount_check "$tool" ok "$what"
  else rec_status "$NAME" mount_check "$tool" fail "mounted data differs from the source: $(tail_log "$logf")"; fi
  stopwatch_stop; log "   compare $tool mount with source: ${WALL} s"
}

vmrss_mib() { awk '/^VmRSS:/{printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null; }

many_mount() {
  local rep tool rss
  MOUNT_METRICS="mount_ready_s mount_ls_s find_s mount_check mount_rss_mib"
  step_begin "mount of generation 1 (cold): start → first ls, find | wc -l, server RSS after find, median of $REPS"
  for ((rep = 1; rep <= REPS; rep++)); do
    for tool in bfs squashfs; do
      tool_on "$tool" || continue
      mount_skip "$tool" "$rep" && continue
      want_rep "$NAME.mount.$tool" "$rep" || continue
      start_mount "$tool" 1 "$rep" || continue
      if timed_read find_s "$tool" "$rep" find bash -c 'find "$1" | wc -l' _ "$MROOT"; then
        [ "$rep" = 1 ] && rec "$NAME" find_entries "$tool" 1 "$(tail -1 "$RUN/logs/$NAME-find-$tool-$rep.log")"
      fi
      rss=$(vmhwm_mib "$MPID"); [ -n "$rss" ] && rec "$NAME" mount_rss_mib "$tool" "$rep" "$rss"
      rss=$(vmrss_mib "$MPID"); [ -n "$rss" ] && rec "$NAME" mount_vmrss_mib "$tool" "$rep" "$rss"
      log "   $tool server after find: VmHWM $(vmhwm_mib "$MPID") MiB, VmRSS $rss MiB"
      [ "$rep" = 1 ] && many_mount_check "$tool"   # after the RSS figures: diff -r reads every file
      stop_mount "$tool"
    done
  done
  step_end "mount"
}

# bfs ls GEN:DIR and bfs cat GEN:FILE, and the peers' equivalents (restic ls / dump, borg
# list / extract --stdout): once cold (page cache dropped), then 3 times warm, interleaved
many_lookup() {
  local d f rep tool op logf tools=() cnt
  if [ "$MODE" = full ]; then d=d0500; else d=d0050; fi
  f=$d/file-00500.txt
  step_begin "ls of $d and cat of $f from generation 1: cold once, then warm, median of 3"
  for tool in bfs bfs1 restic borg; do
    tool_on "$tool" || continue
    skip_status ls_s "$tool" restore && continue
    tools+=("$tool")
  done
  for ((rep = 0; rep <= 3; rep++)); do   # rep 0: cold
    for op in ls cat; do
      for tool in "${tools[@]}"; do
        logf=$RUN/logs/$NAME-$op-$tool-$rep.log
        [ "$rep" = 0 ] && drop_caches
        if [ "$op" = ls ]; then timed "$logf" "${TOOL_SH[@]}" ls "$tool" "$(repo_of "$tool")" "${GEN[$tool]}" "$SRC" "$d"
        else timed "$logf" "${TOOL_SH[@]}" cat "$tool" "$(repo_of "$tool")" "${GEN[$tool]}" "$SRC" "$f"; fi
        if [ "$RC" != 0 ]; then rec_status "$NAME" "${op}_s" "$tool" fail "exit $RC: $(tail_log "$logf")"; continue; fi
        if [ "$rep" = 0 ]; then rec "$NAME" "${op}_cold_s" "$tool" 1 "$WALL"
        else rec "$NAME" "${op}_s" "$tool" "$rep" "$WALL"; fi
        log "   $op $tool $([ "$rep" = 0 ] && echo cold || echo "#$rep"): ${WALL} s"
        if [ "$rep" = 1 ]; then  # the answer must be right
          if [ "$op" = cat ]; then
            if cmp -s "$logf" "$SRC/$f"; then rec_status "$NAME" lookup_check "$tool" ok "identical"
            else rec_status "$NAME" lookup_check "$tool" fail "cat of $f differs from the source"; fi
          else
            cnt=$(grep -c 'file-00[0-9]*\.txt' "$logf")
            [ "$cnt" -ge 1000 ] || rec_status "$NAME" lookup_check "$tool" fail "ls of $d listed $cnt of its 1000 files"
          fi
        fi
      done
    done
  done
  step_end "ls / cat"
}

bench_many() {
  local saved=("${TOOLS[@]}") t nd=100
  [ "$MODE" = full ] && nd=1000
  many_build "$MODE" "$nd" 1000
  [ "$MODE" = full ] && tool_on bfs && many_build quick 100 1000
  NAME=many KIND=tree SRC=$BENCH_DIR/corpus/$MODE/many
  export BENCH_KIND=tree BENCH_IMG=
  corpus_meta many "$SRC"
  REPO_OK=(); GEN=(); NGEN=(); FIRST_WALL=()
  TOOLS=()
  for t in bfs bfs1 restic borg squashfs; do tool_on "$t" && TOOLS+=("$t"); done
  if tool_on bfs && [ "${BFS_HAS[format2]:-0}" != 1 ]; then   # bfs column = format 2
    rec_status many full_wall_s bfs na "n/a (no bfs init --format 2)"
    local kept=()
    for t in "${TOOLS[@]}"; do [ "$t" = bfs ] || kept+=("$t"); done
    TOOLS=("${kept[@]}")
  fi
  export BFS_FORMAT=2
  step_full_backup
  GEN[bfs1]=gen1
  [ "$MODE" = full ] && [ "${REPO_OK[bfs]:-0}" = 1 ] && many_small_full
  AGAIN_TOOLS=(bfs bfs1 restic borg)
  many_nochange
  many_incremental
  many_mount
  many_lookup
  AGAIN_TOOLS=(bfs restic borg)
  TOOLS=("${saved[@]}")
  unset BFS_FORMAT
  rm -rf "$RUN"/repo/many-*
}
