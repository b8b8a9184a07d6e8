#!/usr/bin/env bash
# A/B of two bfs builds on one bench step, alternating runs so that load drifting on a
# shared machine hits both alike.  Usage:
#
#   bash bench/ab.sh OLD_BFS NEW_BFS STEP [N=5]
#
# OLD_BFS, NEW_BFS: paths of bin/bfs of two built trees (e.g. a scratch worktree of the
#   base: git worktree add /work/wt/scratch-x BASE && make -C /work/wt/scratch-x build).
# STEP: full | nochange | incremental | restore | mount, or a comma list (restore,mount) — what bench/run.sh runs besides
#   the full backup (which always runs: every other step reads its repository).
# N: runs of each build, in the order A B B A A B … (default 5).
# Env: BENCH_MODE quick|full (default quick), BENCH_CORPORA tree,img (default both),
#   BENCH_DIR as for run.sh, AB_OUT (default $BENCH_DIR/ab-<time>) for the raw records.
#
# Each run is `bash bench/run.sh MODE` with BENCH_BFS, BENCH_TOOLS=bfs, BENCH_STEPS=STEP,
# BENCH_REPS=1; its results.jsonl is kept as AB_OUT/<a|b>-<i>.jsonl. Prints per metric the
# median (min–max) of each build, new/old, and "WORSE" where the new median is above the
# old build's maximum (the plan's rule for noise on this VM: repeat before believing it).
set -uo pipefail
[ $# -ge 3 ] || { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 64; }
OLD=$1 NEW=$2 STEP=$3 N=${4:-5}
BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODE=${BENCH_MODE:-quick}
BENCH_DIR=${BENCH_DIR:-/var/tmp/bfs-bench}
for s in ${STEP//,/ }; do
  case $s in full | nochange | incremental | restore | mount) ;; *) echo "ab.sh: STEP must be full, nochange, incremental, restore or mount, or a comma list of them" >&2; exit 64 ;; esac
done
for b in "$OLD" "$NEW"; do [ -x "$b" ] || { echo "ab.sh: $b is not an executable bfs" >&2; exit 64; }; done
OLD=$(readlink -f "$OLD") NEW=$(readlink -f "$NEW")
OUTDIR=${AB_OUT:-$BENCH_DIR/ab-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUTDIR"

one() {  # one a|b BFS I
  local tag=$1 bin=$2 i=$3 t0=$EPOCHREALTIME
  echo "[ab] run $i $tag: $bin" >&2
  if ! BENCH_BFS=$bin BENCH_TOOLS=bfs BENCH_STEPS=$STEP BENCH_REPS=1 BENCH_OUT="$OUTDIR/report-$tag-$i" \
    bash "$BENCH_SRC/run.sh" "$MODE" >"$OUTDIR/$tag-$i.log" 2>&1; then
    echo "[ab] run $i $tag FAILED (see $OUTDIR/$tag-$i.log)" >&2
  fi
  cp "$BENCH_DIR/run-$MODE/results.jsonl" "$OUTDIR/$tag-$i.jsonl" 2>/dev/null
  echo "[ab] run $i $tag: $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.0f", b-a}') s" >&2
}
for ((i = 1; i <= N; i++)); do
  if ((i % 2)); then one a "$OLD" "$i"; one b "$NEW" "$i"; else one b "$NEW" "$i"; one a "$OLD" "$i"; fi
done

node - "$OUTDIR" "$N" "$STEP" "$OLD" "$NEW" <<'EOF'
const fs = require('fs')
const [dir, n, step, oldBin, newBin] = process.argv.slice(2)
const vals = { a: new Map(), b: new Map() }
for (const tag of ['a', 'b']) {
  for (let i = 1; i <= Number(n); i++) {
    const f = `${dir}/${tag}-${i}.jsonl`
    if (!fs.existsSync(f)) continue
    for (const line of fs.readFileSync(f, 'utf8').split('\n')) {
      if (!line) continue
      const r = JSON.parse(line)
      if (r.tool !== 'bfs' || typeof r.value !== 'number' || r.metric === 'find_entries') continue
      const k = `${r.corpus} ${r.metric}`
      if (!vals[tag].has(k)) vals[tag].set(k, [])
      vals[tag].get(k).push(r.value)
    }
  }
}
const med = (a) => { const s = [...a].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2 }
const fmt = (a) => a && a.length ? `${+med(a).toPrecision(4)} (${+Math.min(...a).toPrecision(4)}–${+Math.max(...a).toPrecision(4)}, n=${a.length})` : '—'
console.log(`A/B of step '${step}': a = ${oldBin}, b = ${newBin}; lower is better for every figure`)
console.log('| corpus metric | a (old) | b (new) | b/a |  |')
console.log('|---|---|---|---|---|')
for (const k of [...new Set([...vals.a.keys(), ...vals.b.keys()])].sort()) {
  const a = vals.a.get(k), b = vals.b.get(k)
  const ratio = a && b ? (med(b) / med(a)).toFixed(3) : ''
  const worse = a && b && med(b) > Math.max(...a) ? 'WORSE' : ''
  console.log(`| ${k} | ${fmt(a)} | ${fmt(b)} | ${ratio} | ${worse} |`)
}
console.log(`raw records: ${dir}`)
EOF
