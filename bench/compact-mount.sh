#!/usr/bin/env bash
# bench/compact-mount.sh — issue 16: compaction throughput while a mount serves reads.
#
# A format 2 repository holding the bench image (2 GiB ext4 image of the Linux tree, backed
# up with --volume as the bench does: 128 KiB frames) at the ingest level is copied fresh for each round. Per round: the
# generation is mounted; a steady reader (bench/pread-paced.mjs: a 4 KiB pread at a fresh
# random offset every 5 ms through the mount) runs 20 s alone ("before"), then for as long
# as `bfs compact --min-age 0` runs ("during"), then 20 s alone again ("after"); unmount.
# Compaction throughput = raw bytes compacted / compaction wall time; its CPU is the
# process's user + sys (/usr/bin/time). Rounds alternate nothing else: the reader's
# before/after rows are its baseline in the same sitting.
#
#   bash bench/compact-mount.sh            (BENCH_COMPACT_ROUNDS=3, BENCH_COMPACT_DIR, BENCH_COMPACT_SRC)
#
# Writes bench/results/YYYY-MM-DD-compact-mount.md. Needs `make build` and the bench image
# (`make bench` builds it: BENCH_DIR/corpus/full/img).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BFS=(node "$ROOT/dist/cli/run.js")
W=${BENCH_COMPACT_DIR:-/var/tmp/bfs-compact-mount}
SRC=${BENCH_COMPACT_SRC:-${BENCH_DIR:-/var/tmp/bfs-bench}/corpus/full/img}
ROUNDS=${BENCH_COMPACT_ROUNDS:-3}
READ_S=${BENCH_COMPACT_READ_S:-20}
OUT="$ROOT/bench/results/$(date -u +%F)-compact-mount.md"

[ -d "$SRC" ] || { echo "compact-mount: no image directory $SRC (run make bench once, or set BENCH_COMPACT_SRC)" >&2; exit 2; }
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null

MNT="$W/mnt"
cleanup() {
  if mountpoint -q "$MNT" 2>/dev/null; then "${BFS[@]}" umount "$MNT" >/dev/null 2>&1 || fusermount -uz "$MNT" 2>/dev/null || true; fi
  mountpoint -q "$MNT" 2>/dev/null || rm -rf "$W"
}
trap cleanup EXIT

rm -rf "$W"
mkdir -p "$W" "$MNT"
"${BFS[@]}" --repo "$W/orig" init --format 2 >/dev/null
t0=$(date +%s.%N)
FILE=$(cd "$SRC" && ls | head -1)
# as the bench stores images: a volume (128 KiB frames), shown in the mount as one file
"${BFS[@]}" --repo "$W/orig" backup -q --volume "$SRC/$FILE"
t1=$(date +%s.%N)
echo "backup of $SRC/$FILE: $(echo "$t1 - $t0" | bc) s, repository $(du -sb "$W/orig" | cut -f1) bytes"

rows=()
for r in $(seq 1 "$ROUNDS"); do
  rm -rf "$W/repo" "$W/done"
  cp -a "$W/orig" "$W/repo"
  sync
  "${BFS[@]}" --repo "$W/repo" mount latest "$MNT" >/dev/null
  IMG="$MNT/$(ls "$MNT" | head -1)"
  load0=$(cut -d' ' -f1 /proc/loadavg)
  before=$(node "$HERE/pread-paced.mjs" "$IMG" --seconds "$READ_S" --seed $((r * 10 + 1)))
  node "$HERE/pread-paced.mjs" "$IMG" --seconds 5 --seed $((r * 10 + 2)) --until-file "$W/done" >"$W/during.json" &
  rp=$!
  c0=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$W/compact.time" "${BFS[@]}" --repo "$W/repo" compact --min-age 0 --json >"$W/compact.json"
  c1=$(date +%s.%N)
  touch "$W/done"
  wait "$rp"
  during=$(cat "$W/during.json")
  after=$(node "$HERE/pread-paced.mjs" "$IMG" --seconds "$READ_S" --seed $((r * 10 + 3)))
  load1=$(cut -d' ' -f1 /proc/loadavg)
  "${BFS[@]}" umount "$MNT" >/dev/null
  raw=$(node -e 'const l=require("fs").readFileSync(process.argv[1],"utf8").trim().split("\n").map(JSON.parse).find(x=>x.message_type==="summary");process.stdout.write(String(l.bytes?l.bytes.raw:0))' "$W/compact.json")
  cpu=$(awk '{print $1 + $2}' "$W/compact.time")
  wall=$(echo "$c1 - $c0" | bc)
  rows+=("$r|$wall|$cpu|$raw|$before|$during|$after|$load0|$load1")
  echo "round $r: compact ${wall}s wall ${cpu}s CPU, $raw raw bytes; before $before; during $during; after $after; load $load0 → $load1"
done

node - "$OUT" "$SRC/$FILE" "${rows[@]}" <<'EOF'
const [out, src, ...rows] = process.argv.slice(2)
const fs = require('fs')
const r = rows.map((l) => {
  const [round, wall, cpu, raw, before, during, after, load0, load1] = l.split('|')
  return { round: +round, wall: +wall, cpu: +cpu, raw: +raw, before: JSON.parse(before), during: JSON.parse(during), after: JSON.parse(after), load0, load1 }
})
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)] }
const mb = (x) => (x / 1e6).toFixed(1)
const lines = []
lines.push(`# Compaction while a mount serves reads (issue 16), ${new Date().toISOString().slice(0, 16)}Z`)
lines.push('')
lines.push(`Source: ${src} (\`--volume\`) backed up to a format 2 repository at the ingest level; per round a fresh copy of it, \`bfs compact --min-age 0\` (default level) while a reader does a 4 KiB pread at a fresh random offset every 5 ms through a mount of the generation (bench/pread-paced.mjs); the same reader alone for ${process.env.BENCH_COMPACT_READ_S || 20} s before and after. Load average (1 min) at each round's start and end is given: 2 cores, shared.`)
lines.push('')
lines.push('| round | compact wall s | compact CPU s | raw MB | MB/s of raw data | reads before: n, median / p99 / max µs | during | after | >1 ms during | load |')
lines.push('|---|---|---|---|---|---|---|---|---|---|')
const f = (x) => `${x.n}: ${x.median_us} / ${x.p99_us} / ${x.max_us}`
for (const x of r) lines.push(`| ${x.round} | ${x.wall.toFixed(1)} | ${x.cpu.toFixed(1)} | ${mb(x.raw)} | ${(x.raw / 1e6 / x.wall).toFixed(1)} | ${f(x.before)} | ${f(x.during)} | ${f(x.after)} | ${x.during.over_1ms} | ${x.load0} → ${x.load1} |`)
lines.push(`| median | ${med(r.map((x) => x.wall)).toFixed(1)} | ${med(r.map((x) => x.cpu)).toFixed(1)} | ${mb(med(r.map((x) => x.raw)))} | ${med(r.map((x) => x.raw / 1e6 / x.wall)).toFixed(1)} | p99 ${med(r.map((x) => x.before.p99_us))} | p99 ${med(r.map((x) => x.during.p99_us))} | p99 ${med(r.map((x) => x.after.p99_us))} | | |`)
lines.push('')
lines.push('Targets (issue 16): compaction ≥ 15 MB/s of raw data on 2 cores while the mount serves reads with p99 ≤ 1 ms.')
fs.writeFileSync(out, lines.join('\n') + '\n')
console.log(lines.join('\n'))
EOF
rm -rf "$W"
