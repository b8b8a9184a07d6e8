#!/usr/bin/env bash
# bench/merge-restore.sh — issue 16: restore of the newest of 20 generations, before and after
# `bfs merge`, against restoring one full generation of the same content.
#
# A copy of the Linux tree is backed up (format 2), then changed 19 times by
# `mutate.mjs gen` (1 % of the files each: appended, removed, added) with a backup after each:
# repository A, 20 generations. The final tree is also backed up alone into repository F
# (one full generation). A copy of A gets `bfs merge gen1..gen20` (repository M). Then rounds
# of three restores in rotated order, each into a fresh directory on a tmpfs, repositories
# in the page cache: F's generation, A's gen20, M's merged generation. Wall and process CPU
# (user + sys, /usr/bin/time) per restore; the medians and their ratios to F.
#
#   bash bench/merge-restore.sh     (BENCH_MERGE_ROUNDS=5, BENCH_MERGE_DIR, BENCH_MERGE_SRC)
#
# Writes bench/results/YYYY-MM-DD-merge-restore.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BFS=(node "$ROOT/dist/cli/run.js")
W=${BENCH_MERGE_DIR:-/var/tmp/bfs-merge-restore}
SRC0=${BENCH_MERGE_SRC:-${BENCH_DIR:-/var/tmp/bfs-bench}/corpus/full/tree}
ROUNDS=${BENCH_MERGE_ROUNDS:-5}
GENS=20
OUT="$ROOT/bench/results/$(date -u +%F)-merge-restore.md"
[ -d "$SRC0" ] || { echo "merge-restore: no tree $SRC0 (run make bench once, or set BENCH_MERGE_SRC)" >&2; exit 2; }

cleanup() {
  if mountpoint -q "$W/out" 2>/dev/null; then umount "$W/out" || true; fi
  mountpoint -q "$W/out" 2>/dev/null || rm -rf "$W"
}
trap cleanup EXIT
rm -rf "$W"
mkdir -p "$W/out"
mount -t tmpfs -o size=8g bfs-merge-restore "$W/out"
cp -a "$SRC0" "$W/src"
"${BFS[@]}" --repo "$W/A" init --format 2 >/dev/null
"${BFS[@]}" --repo "$W/A" backup -q "$W/src"
for g in $(seq 2 $GENS); do
  node "$HERE/mutate.mjs" gen "$W/src" "$g" >/dev/null
  "${BFS[@]}" --repo "$W/A" backup -q "$W/src"
done
"${BFS[@]}" --repo "$W/F" init --format 2 >/dev/null
"${BFS[@]}" --repo "$W/F" backup -q "$W/src"
cp -a "$W/A" "$W/M"
"${BFS[@]}" --repo "$W/M" merge "gen1..gen$GENS" >/dev/null
echo "repositories: A $(du -sb "$W/A" | cut -f1), F $(du -sb "$W/F" | cut -f1), M $(du -sb "$W/M" | cut -f1) bytes"

restore() { # NAME REPO REF → "wall cpu"
  local d="$W/out/$1"
  rm -rf "$d"
  sync
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$W/time" "${BFS[@]}" --repo "$2" restore -q "$3" "$d"
  t1=$(date +%s.%N)
  echo "$(echo "$t1 - $t0" | bc) $(awk '{print $1 + $2}' "$W/time")"
  rm -rf "$d"
}
# a first untimed pass puts every repository in the page cache
for x in F A M; do restore $x "$W/$x" latest >/dev/null; done
rows=()
for r in $(seq 1 "$ROUNDS"); do
  order=(F A M)
  k=$(( (r - 1) % 3 ))
  order=("${order[@]:$k}" "${order[@]:0:$k}")
  load=$(cut -d' ' -f1 /proc/loadavg)
  for x in "${order[@]}"; do
    rows+=("$r $x $(restore "$x" "$W/$x" latest) $load")
    echo "round $r $x: ${rows[-1]}"
  done
done

node - "$OUT" "$SRC0" "$ROUNDS" "${rows[@]}" <<'EOF'
const [out, src, rounds, ...rows] = process.argv.slice(2)
const fs = require('fs')
const r = rows.map((l) => { const [round, x, wall, cpu, load] = l.split(' '); return { round: +round, x, wall: +wall, cpu: +cpu, load } })
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2 }
const of = (x, k) => r.filter((y) => y.x === x).map((y) => y[k])
const name = { F: 'one full generation of the final tree', A: 'gen20 of 20 (19 incrementals of 1 %)', M: 'the same after merge gen1..gen20' }
const lines = [`# Restore after 20 incrementals and after merge (issue 16), ${new Date().toISOString().slice(0, 16)}Z`, '',
  `Source: a copy of ${src}, changed 19 times by \`mutate.mjs gen\` (1 % of the files each) with a format 2 backup after each; restores of \`latest\` into a tmpfs, repositories in the page cache, ${rounds} rounds in rotated order; load average (1 min) per round: ${[...new Set(r.map((y) => y.load))].join(', ')} (2 cores, shared).`, '',
  '| restore of | wall s, median (min–max) | ÷ full | CPU s, median (min–max) | ÷ full |', '|---|---|---|---|---|']
const mf = med(of('F', 'wall')), cf = med(of('F', 'cpu'))
for (const x of ['F', 'A', 'M']) {
  const w = of(x, 'wall'), c = of(x, 'cpu')
  lines.push(`| ${name[x]} | ${med(w).toFixed(2)} (${Math.min(...w).toFixed(2)}–${Math.max(...w).toFixed(2)}) | ${(med(w) / mf).toFixed(3)} | ${med(c).toFixed(2)} (${Math.min(...c).toFixed(2)}–${Math.max(...c).toFixed(2)}) | ${(med(c) / cf).toFixed(3)} |`)
}
lines.push('', 'Target (issue 16): restore of the newest of 20 generations after `merge` within 5 % of restoring a single full generation.')
fs.writeFileSync(out, lines.join('\n') + '\n')
console.log(lines.join('\n'))
EOF
umount "$W/out"
rm -rf "$W"
