# The `admin` step (issue 17): diff, find and content dedup against restic (and borg),
# sourced by bench/run.sh. BENCH_STEPS=admin (make bench-admin) runs it alone; bench/README.md
# describes it.
#
# Corpus: a copy of the Linux tree (full: corpus/full/tree; quick: corpus/quick/tree) in
# $RUN/admin/src, changed before each of generations 2..20 by `mutate.mjs gen` (1 % of the
# files, seeded by the generation number: 60 % of them changed, 20 % removed, as many added),
# backed up by bfs in format 1 (`bfs1`, `bfs init --format 1`), bfs in format 2 (`bfs2`,
# `bfs init --format 2`, the default) and restic. Then `bfs diff latest~1 latest` against `restic diff`, and
# `bfs find NAME` against `restic find NAME` over the 20 generations, for a name with thousands
# of hits (Makefile) and a name with one (ext4_jbd2.c): per repetition each tool once cold
# (page cache dropped; restic's cache directory kept, as a user has it) and once warm.
# Then a no-change backup (growth for reference) and a backup after `mutate.mjs rename`
# (1 % of the files renamed or copied): the repository growth of that backup (`du -sb` of the
# repository directory before and after); borg backs up the same two states (from an empty
# repository: its growth depends on the chunks already stored, not on the 20 generations).

ADMIN_GENS=${BENCH_ADMIN_GENS:-20}
ADMIN_KEEP=Makefile,ext4_jbd2.c        # never removed or renamed: find's names
ADMIN_FIND=(Makefile ext4_jbd2.c)
ADMIN_TOOLS=(bfs1 bfs2 restic)

admin_repo() { echo "$RUN/repo/admin-$1"; }
admin_bytes() { du -sb "$(admin_repo "$1")" | cut -f1; }
load1() { cut -d' ' -f1 /proc/loadavg; }
restic_ids() { restic -q -r "$(admin_repo restic)" snapshots --json | node -e 'const s=JSON.parse(require("fs").readFileSync(0,"utf8")).sort((a,b)=>a.time<b.time?-1:1);console.log(s.map(x=>x.id).join(" "))'; }

# admin_backup TOOL METRIC REP: one backup of $SRC, timed; growth recorded as METRIC's growth
declare -A ADMIN_OK
admin_backup() {
  local tool=$1 metric=$2 rep=$3 logf s0 s1
  [ "${ADMIN_OK[$tool]:-0}" = 1 ] || return 1
  logf=$RUN/logs/admin-$metric-$tool-$rep.log
  s0=$(admin_bytes "$tool")
  timed "$logf" "${TOOL_SH[@]}" backup "$tool" "$(admin_repo "$tool")" "$SRC" "$metric-$rep"
  if [ "$RC" != 0 ]; then rec_status admin "${metric}_wall_s" "$tool" fail "exit $RC: $(tail_log "$logf")"; ADMIN_OK[$tool]=0; return 1; fi
  s1=$(admin_bytes "$tool")
  rec admin "${metric}_wall_s" "$tool" "$rep" "$WALL"
  rec admin "${metric}_growth_b" "$tool" "$rep" "$((s1 - s0))"
  log "   $metric backup $tool #$rep: ${WALL} s, +$((s1 - s0)) B"
}
admin_init() {
  local tool=$1 logf=$RUN/logs/admin-init-$1.log
  rm -rf "$(admin_repo "$tool")"
  if "${TOOL_SH[@]}" init "$tool" "$(admin_repo "$tool")" >"$logf" 2>&1; then ADMIN_OK[$tool]=1
  else ADMIN_OK[$tool]=0; rec_status admin full_wall_s "$tool" fail "init failed: $(tail_log "$logf")"; fi
}

# admin_time OP TOOL REP STATE(cold|warm): one timed diff / find; sets the log in ALOG
admin_time() {
  local op=$1 tool=$2 rep=$3 state=$4 repo
  repo=$(admin_repo "$tool")
  ALOG=$RUN/logs/admin-$op-$tool-$state-$rep.log
  [ "$state" = cold ] && drop_caches
  case "$op:$tool" in
    diff:bfs*) timed "$ALOG" "$BFS" --repo "$repo" diff latest~1 latest ;;
    diff:restic) timed "$ALOG" restic -r "$repo" diff "${RIDS[-2]}" "${RIDS[-1]}" ;;
    find_*:bfs*) timed "$ALOG" "$BFS" --repo "$repo" find "${op#find_}" ;;
    find_*:restic) timed "$ALOG" restic -r "$repo" find "${op#find_}" ;;
  esac
  if [ "$RC" != 0 ]; then rec_status admin "${op}_${state}_s" "$tool" fail "exit $RC: $(tail_log "$ALOG")"; return 1; fi
  rec admin "${op}_${state}_s" "$tool" "$rep" "$WALL"
  log "   $op $tool $state #$rep: ${WALL} s"
}
# "Files:   N new,   N removed,   N changed" (bfs diff and restic diff print the same line)
diff_files() { awk '/^Files:/{gsub(/,/, ""); print $2, $4, $6; exit}' "$1"; }

admin_timings() {
  local rep op tool state n tools=() want hits
  for tool in "${ADMIN_TOOLS[@]}"; do [ "${ADMIN_OK[$tool]:-0}" = 1 ] && tools+=("$tool"); done
  read -r -a RIDS <<<"$(restic_ids 2>/dev/null)"
  step_begin "bfs diff / find vs restic diff / find over $ADMIN_GENS generations: each cold then warm, $AREPS repetitions"
  rec admin load1_timing_start host 1 "$(load1)"
  for ((rep = 1; rep <= AREPS; rep++)); do
    for op in diff "${ADMIN_FIND[@]/#/find_}"; do
      for tool in "${tools[@]}"; do
        for state in cold warm; do
          admin_time "$op" "$tool" "$rep" "$state" || continue
          [ "$rep" = 1 ] && [ "$state" = warm ] || continue
          # the answers must be right: diff against the mutation, find's hits against restic's
          if [ "$op" = diff ]; then
            read -r -a n <<<"$(diff_files "$ALOG")"
            rec admin diff_new "$tool" 1 "${n[0]:-0}"; rec admin diff_removed "$tool" 1 "${n[1]:-0}"; rec admin diff_changed "$tool" 1 "${n[2]:-0}"
            want="${ADMIN_LAST[added]} ${ADMIN_LAST[removed]} ${ADMIN_LAST[changed]}"
            if [ "${n[*]}" = "$want" ]; then rec_status admin diff_check "$tool" ok "$want"
            else rec_status admin diff_check "$tool" fail "new/removed/changed ${n[*]}, the last mutation made $want"; fi
          else
            hits=$(grep -c "/${op#find_}\$" "$ALOG")
            rec admin "${op}_hits" "$tool" 1 "$hits"
          fi
        done
      done
    done
  done
  rec admin load1_timing_end host 1 "$(load1)"
  for op in "${ADMIN_FIND[@]/#/find_}"; do   # every column finds what restic finds
    want=$(grep -h "\"metric\":\"${op}_hits\",\"tool\":\"restic\"" "$RESULTS" | sed 's/.*"value"://; s/}//')
    for tool in "${tools[@]}"; do
      [ "$tool" = restic ] && continue
      hits=$(grep -h "\"metric\":\"${op}_hits\",\"tool\":\"$tool\"" "$RESULTS" | sed 's/.*"value"://; s/}//')
      if [ -n "$hits" ] && [ "$hits" = "$want" ]; then rec_status admin "${op}_check" "$tool" ok "$hits hits"
      else rec_status admin "${op}_check" "$tool" fail "${hits:-no} hits, restic found ${want:-none}"; fi
    done
  done
  step_end "diff / find"
}

declare -A ADMIN_LAST
bench_admin() {
  local g tool out k v logf
  AREPS=${BENCH_ADMIN_REPS:-$([ "$MODE" = full ] && echo 5 || echo 3)}
  NAME=admin KIND=tree SRC=$RUN/admin/src
  export BENCH_KIND=tree BENCH_IMG=
  if [ "${BFS_HAS[backup]}" != 1 ] || ! grep -q '^Usage: bfs diff' <<<"$("$BFS" diff --help 2>&1)" || ! grep -q '^Usage: bfs find' <<<"$("$BFS" find --help 2>&1)"; then
    rec_status admin diff_warm_s bfs1 na "n/a (bfs diff / find not built)"; return 0
  fi
  step_begin "corpus: copy of $TREE"
  rm -rf "$RUN/admin"; mkdir -p "$RUN/admin"
  cp -a "$TREE" "$SRC" || die "copying the tree failed"
  touch -d @1700000000 "$SRC"
  sync
  step_end "copy"
  corpus_meta admin "$SRC"
  rec admin load1_start host 1 "$(load1)"
  for tool in "${ADMIN_TOOLS[@]}"; do
    if [ "$tool" = bfs2 ] && [ "${BFS_HAS[format2]:-0}" != 1 ]; then rec_status admin full_wall_s bfs2 na "n/a (no bfs init --format 2)"; continue; fi
    tool_on "${tool%[12]}" || continue
    admin_init "$tool"
  done
  step_begin "$ADMIN_GENS generations, each after a 1 % change (mutate.mjs gen)"
  warm "$SRC"
  for ((g = 1; g <= ADMIN_GENS; g++)); do
    if [ "$g" -gt 1 ]; then
      out=$(node "$BENCH_SRC/mutate.mjs" gen "$SRC" "$g" "$ADMIN_KEEP") || die "changing the corpus failed"
      for k in changed added removed changed_bytes added_bytes removed_bytes files; do
        v=$(node -e 'console.log(JSON.parse(process.argv[1])[process.argv[2]])' "$out" "$k")
        ADMIN_LAST[$k]=$v; rec admin "mut_$k" corpus "$g" "$v"
      done
      log "   gen $g: $out"
    fi
    for tool in "${ADMIN_TOOLS[@]}"; do
      if [ "$g" = 1 ]; then admin_backup "$tool" full 1; else admin_backup "$tool" incr "$g"; fi
    done
  done
  for tool in "${ADMIN_TOOLS[@]}"; do [ "${ADMIN_OK[$tool]:-0}" = 1 ] && rec admin repo_mb "$tool" 1 "$(admin_bytes "$tool" | awk '{printf "%.1f", $1/1e6}')"; done
  step_end "generations"

  admin_timings

  step_begin "no-change backup, then 1 % of the files renamed or copied (mutate.mjs rename): repository growth"
  if tool_on borg; then   # borg: the same two states from an empty repository
    ADMIN_TOOLS+=(borg)
    rm -rf "$(admin_repo borg)"
    if "${TOOL_SH[@]}" init borg "$(admin_repo borg)" >"$RUN/logs/admin-init-borg.log" 2>&1; then ADMIN_OK[borg]=1; admin_backup borg full 1
    else rec_status admin rename_growth_b borg fail "init failed: $(tail_log "$RUN/logs/admin-init-borg.log")"; fi
  fi
  for tool in "${ADMIN_TOOLS[@]}"; do admin_backup "$tool" nochange 1; done
  out=$(node "$BENCH_SRC/mutate.mjs" rename "$SRC" 17 "$ADMIN_KEEP") || die "renaming in the corpus failed"
  log "   rename/copy: $out"
  for k in renamed moved copied renamed_bytes copied_bytes files; do
    rec admin "ren_$k" corpus 1 "$(node -e 'console.log(JSON.parse(process.argv[1])[process.argv[2]])' "$out" "$k")"
  done
  for tool in "${ADMIN_TOOLS[@]}"; do admin_backup "$tool" rename 1; done
  rec admin load1_end host 1 "$(load1)"
  step_end "rename / copy"
  ADMIN_TOOLS=(bfs1 bfs2 restic)
  rm -rf "$RUN/admin" "$RUN"/repo/admin-*
}
