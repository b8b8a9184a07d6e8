#!/usr/bin/env node
// node report.mjs RESULTS.jsonl OUTBASE MODE
// Turns the raw records written by run.sh into one markdown table per corpus
// (metric x tool, plus bfs / best-peer ratio), writes OUTBASE.md and OUTBASE.json,
// and prints the markdown.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawnSync } from 'node:child_process'

const [resultsFile, outBase, mode = 'full'] = process.argv.slice(2)
if (!resultsFile || !outBase) { console.error('usage: report.mjs RESULTS.jsonl OUTBASE MODE'); process.exit(64) }

const records = fs.readFileSync(resultsFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
const meta = {}
for (const r of records) if (r.meta) meta[r.meta] = r.value

const TOOLS = ['bfs', 'bfse', 'tar', 'squashfs', 'restic', 'borg', 'native']
const PEERS = ['tar', 'squashfs', 'restic', 'borg']
const HEAD = { bfs: 'bfs', bfse: 'bfs encrypted', tar: 'tar+zstd -3', squashfs: 'mksquashfs zstd(15) + squashfuse', restic: 'restic', borg: 'borg', native: 'native (source)' }

// [metric, label, kind, derived-from]
// kinds: time (s), int, one (1 decimal), rate (MB/s, higher is better), check, pair (median / p99 µs)
const BACKUP_ROWS = [
  ['full_wall_s', 'full backup wall s', 'time'],
  ['full_mbps', 'full backup MB/s (apparent bytes)', 'rate', ['full_wall_s', 'apparent_bytes']],
  ['full_rss_mib', 'full backup peak RSS MiB', 'int'],
  ['repo_full_mb', 'repo size after full MB', 'one'],
  ['nochange_wall_s', 'no-change backup wall s', 'time'],
  ['nochange_rss_mib', 'no-change backup peak RSS MiB', 'int'],
  ['nochange_growth_kb', 'repo growth per no-change backup kB', 'one'],
  ['incr_wall_s', 'incremental backup wall s', 'time'],
  ['incr_rss_mib', 'incremental backup peak RSS MiB', 'int'],
  ['incr_growth_mb', 'repo growth per incremental MB', 'one'],
  ['restore_wall_s', 'restore of generation 1 wall s', 'time'],
  ['restore_mbps', 'restore MB/s (apparent bytes)', 'rate', ['restore_wall_s', 'apparent_bytes']],
  ['restore_rss_mib', 'restore peak RSS MiB', 'int'],
  ['restore_check', 'restored data identical to source', 'check'],
  ['mount_ready_s', 'mount: start→mountpoint ready s (cold)', 'time'],
  ['mount_ls_s', 'mount: start→first `ls` of backed-up root s (cold)', 'time'],
]
const ROWS = {
  tree: [
    ...BACKUP_ROWS,
    ['find_s', '`find | wc -l` s (cold)', 'time'],
    ['cat_s', 'cat every file s (cold)', 'time'],
    ['cat_mbps', 'cat every file MB/s', 'rate', ['cat_s', 'file_bytes']],
    ['pread_cold', '2000×4KiB random pread over files ≥ 4 KiB outside tools/ (cold) median / p99 µs', 'pair'],
    ['pread_warm', 'the same preads (warm) median / p99 µs', 'pair'],
    ['cp_tools_s', '`cp -a tools/` s (cold)', 'time'],
    ['mount_check', 'mounted tree identical to source (`diff -r`)', 'check'],
    ['mount_rss_mib', 'mount daemon peak RSS (VmHWM) MiB', 'int'],
  ],
  img: [
    ...BACKUP_ROWS,
    ['dd_s', 'dd image bs=1M s (cold)', 'time'],
    ['dd_mbps', 'dd image MB/s', 'rate', ['dd_s', 'apparent_bytes']],
    ['pread_cold', '2000×4KiB random pread (cold) median / p99 µs', 'pair'],
    ['pread_warm', '2000×4KiB random pread (warm) median / p99 µs', 'pair'],
    ['mount_check', 'mounted image identical to source (`cmp`)', 'check'],
    ['mount_rss_mib', 'mount daemon peak RSS (VmHWM) MiB', 'int'],
  ],
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2 }
const fmtTime = (x) => (x < 0.1 ? x.toFixed(3) : x.toFixed(2))
const fmtOne = (x) => (Math.abs(x) >= 1 || x === 0 ? x.toFixed(1) : Math.abs(x) >= 0.1 ? x.toFixed(2) : x.toFixed(3))
const fmtNum = (x, kind) => (kind === 'time' ? fmtTime(x) : kind === 'int' || kind === 'rate' ? String(Math.round(x)) : fmtOne(x))

// cell for a measured metric: {values, median, min, max, n, status, note, text}
function baseCell(corpus, metric, tool) {
  const recs = records.filter((r) => r.corpus === corpus && r.metric === metric && r.tool === tool)
  const values = recs.filter((r) => typeof r.value === 'number').map((r) => r.value)
  const st = recs.filter((r) => r.status)
  const fail = st.find((r) => r.status === 'fail')
  const cell = { values }
  if (values.length) Object.assign(cell, { median: median(values), min: Math.min(...values), max: Math.max(...values), n: values.length })
  const cached = st.find((r) => r.status === 'cached')
  if (cached) cell.cached = cached.note
  if (fail) Object.assign(cell, { status: 'fail', note: fail.note })
  else if (!values.length && st.length) Object.assign(cell, { status: st[0].status, note: st[0].note })
  return cell
}
function cellText(c, kind) {
  if (c.status === 'fail') return 'FAIL'
  if (c.median === undefined) return c.status === 'ok' ? 'ok' : c.note || ''
  const v = fmtNum(c.median, kind)
  if (kind !== 'time') return v
  if (c.cached) return `${v} (n=1, cached ${c.cached.match(/\d{4}-\d\d-\d\d/)?.[0] || ''})`
  return c.n > 1 ? `${v} (${fmtTime(c.min)}–${fmtTime(c.max)}, n=${c.n})` : `${v} (n=1)`
}
function makeCell(corpus, [metric, , kind, from], tool) {
  if (kind === 'pair') {
    const m = baseCell(corpus, `${metric}_median_us`, tool)
    const p = baseCell(corpus, `${metric}_p99_us`, tool)
    if (m.status === 'fail' || p.status === 'fail') return { status: 'fail', note: m.note || p.note, text: 'FAIL' }
    if (m.median === undefined) return { ...m, text: cellText(m, kind) }
    return { median: m.median, p99: p.median, n: m.n, values: m.values, p99_values: p.values, text: `${Math.round(m.median)} / ${Math.round(p.median)}` }
  }
  if (kind === 'rate') {
    const [src, bytesKey] = from
    const b = baseCell(corpus, src, tool)
    const bytes = meta[`corpus_${corpus}`]?.[bytesKey]
    if (b.median === undefined || b.status === 'fail' || !bytes) return { status: b.status, note: b.note, text: b.status === 'fail' ? 'FAIL' : cellText(b, kind) }
    const rate = bytes / 1e6 / b.median
    return { median: rate, n: b.n, text: String(Math.round(rate)) }
  }
  const c = baseCell(corpus, metric, tool)
  c.text = cellText(c, kind)
  return c
}
function ratio(cells, kind) {
  if (kind === 'check') return ''
  const b = cells.bfs
  if (!b || b.median === undefined || b.status === 'fail') return '—'
  const higher = kind === 'rate'
  const peers = PEERS.filter((t) => cells[t] && cells[t].median !== undefined && cells[t].status !== 'fail')
  if (!peers.length) return '—'
  const best = peers.reduce((x, y) => ((higher ? cells[y].median > cells[x].median : cells[y].median < cells[x].median) ? y : x))
  const r = (a, z) => (z === 0 ? (a === 0 ? '1.00' : '∞') : (a / z).toFixed(2))
  if (kind === 'pair') {
    // the p99 against the best peer by p99, which need not be the best by median
    const withP = peers.filter((t) => cells[t].p99 !== undefined)
    const bestP = withP.length ? withP.reduce((x, y) => (cells[y].p99 < cells[x].p99 ? y : x)) : best
    return `${r(b.median, cells[best].median)} / ${r(b.p99, cells[bestP].p99)}× (${best}${bestP === best ? '' : ` / ${bestP}`})`
  }
  return `${r(b.median, cells[best].median)}× (${best})`
}

// bfs encrypted ÷ bfs (issue 18 targets: backup and restore ≤ 1.1×; warm pread + ≤ 20 µs, so the
// pread pairs say the difference in µs too)
function encRatio(cells, kind) {
  const e = cells.bfse, b = cells.bfs
  if (kind === 'check' || !e || !b || e.median === undefined || b.median === undefined || e.status === 'fail' || b.status === 'fail') return ''
  const r = (x, y) => (y === 0 ? (x === 0 ? '1.00' : '∞') : (x / y).toFixed(2))
  if (kind === 'pair') return `${r(e.median, b.median)} / ${r(e.p99, b.p99)}× (${e.median - b.median >= 0 ? '+' : ''}${Math.round(e.median - b.median)} µs median)`
  return `${r(e.median, b.median)}×`
}

function sh(cmd, args) { const r = spawnSync(cmd, args, { encoding: 'utf8' }); return ((r.stdout || '') + (r.stderr || '')).trim().split('\n')[0] }
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
const commit = sh('git', ['-C', root, 'rev-parse', '--short', 'HEAD'])
const dirty = spawnSync('git', ['-C', root, 'status', '--porcelain', '--', 'src', 'bin', 'native', 'package.json'], { encoding: 'utf8' }).stdout.trim() ? ' (uncommitted changes in src/)' : ''
// BENCH_BFS: another build was measured; name its commit (the bench's own is the one above)
const other = process.env.BENCH_BFS ? `${sh('git', ['-C', path.dirname(path.dirname(path.resolve(process.env.BENCH_BFS))), 'rev-parse', '--short', 'HEAD'])} (BENCH_BFS=${process.env.BENCH_BFS}; bench scripts ${commit})` : ''
const env = {
  cores: os.cpus().length, cpu: os.cpus()[0]?.model, mem_gib: Math.round(os.totalmem() / 2 ** 30), kernel: os.release(), node: process.version,
  tar: sh('tar', ['--version']), zstd: sh('zstd', ['--version']).replace(/\*/g, '').replace(/,.*$/, '').trim(), mksquashfs: sh('mksquashfs', ['-version']), squashfuse: sh('dpkg-query', ['-W', '-f=${Version}', 'squashfuse']),
  restic: sh('restic', ['version']), borg: sh('borg', ['--version']), bfs_commit: other || commit + dirty,
}

const date = path.basename(outBase).slice(0, 10)
const fails = records.filter((r) => r.status === 'fail')
const lines = []
lines.push(`# bfs benchmark ${date} (${mode})`, '')
lines.push(`Machine: ${env.cores} cores (${env.cpu}), ${env.mem_gib} GiB RAM, Linux ${env.kernel}, Node ${env.node}. bfs ${env.bfs_commit}.`)
lines.push(`Peers: ${env.tar}; ${env.zstd}; ${env.mksquashfs}, squashfuse ${env.squashfuse}; ${env.restic}; ${env.borg}.`)
const f = meta.bfs_features || {}
lines.push(`bfs features found: ${Object.entries(f).map(([k, v]) => `${k}=${v ? 'yes' : 'no'}`).join(', ')}.`)
lines.push(`Restores and \`cp -a\` write to ${meta.restore_fs === 'tmpfs' ? 'a tmpfs (this VM\'s ext4 spends erratic tens of seconds of kernel CPU creating 78k files)' : 'the disk'}.`)
lines.push(`Run took ${meta.elapsed_s ? (meta.elapsed_s / 60).toFixed(1) : '?'} min. Page cache ${meta.cold_ok === 1 ? 'dropped before every cold step' : 'could NOT be dropped: "cold" figures are warm'}.`)
const repsText = (meta.reps ?? 3) > 1 ? `median of ${meta.reps ?? 3} (min–max, n), one run when the first took over a minute` : 'one run of each step (quick mode: no medians)'
lines.push('', `Method: every tool does the same work, interleaved; ${repsText}. Backups start with the source in page cache. ` +
  'Incremental = a line appended to every 100th file (tree) / ten random 4 KiB blocks overwritten (img). Restore and mount read generation 1. ' +
  'Ratio = bfs / best peer (native and bfs encrypted excluded): below 1 is better for s, MiB, MB and µs, above 1 is better for MB/s.', '')
const tables = {}
for (const corpus of ['tree', 'img']) {
  const cm = meta[`corpus_${corpus}`]
  if (!cm || !records.some((r) => r.corpus === corpus)) continue
  const desc = corpus === 'tree'
    ? `${(cm.apparent_bytes / 1e9).toFixed(2)} GB, ${cm.files.toLocaleString('en')} files, ${cm.dirs.toLocaleString('en')} dirs, ${cm.symlinks} symlinks`
    : `${(cm.apparent_bytes / 2 ** 30).toFixed(2)} GiB sparse ext4 image, ${(cm.allocated_bytes / 1e9).toFixed(2)} GB allocated`
  lines.push(`## corpus \`${corpus}\` (${desc})`, '')
  const bfsHead = meta.bfs_format ? `bfs (format ${meta.bfs_format === 'default' ? "bfs's default" : meta.bfs_format})` : HEAD.bfs
  // bfs encrypted (issue 18): not a peer; its own column against bfs when it ran
  const enc = records.some((r) => r.corpus === corpus && r.tool === 'bfse')
  const cols = TOOLS.filter((t) => t !== 'bfse' || enc)
  lines.push(`| metric | ${cols.map((t) => (t === 'bfs' ? bfsHead : HEAD[t])).join(' | ')} | bfs / best peer |${enc ? ' encrypted / bfs |' : ''}`)
  lines.push(`|---|${cols.map(() => '---').join('|')}|---|${enc ? '---|' : ''}`)
  tables[corpus] = []
  for (const row of ROWS[corpus]) {
    const cells = {}
    for (const t of TOOLS) cells[t] = makeCell(corpus, row, t)
    const rt = ratio(cells, row[2])
    const et = enc ? encRatio(cells, row[2]) : undefined
    tables[corpus].push({ metric: row[0], label: row[1], cells, ratio: rt, ...(enc ? { encrypted_ratio: et } : {}) })
    lines.push(`| ${row[1].replace(/\|/g, '\\|')} | ${cols.map((t) => cells[t].text.replace(/\|/g, '\\|')).join(' | ')} | ${rt} |${enc ? ` ${et} |` : ''}`)
  }
  lines.push('')
}
// ---- the compact step (issue 16): `bfs compact` of a copy of the full backup's repository --
// columns: before compact (tool bfs: the uncompacted repository), after (tool bfsc for the
// reads; the compaction's own records are tool bfs, compact_*)
const CSIZE = { tree: 0.95, img: 0.97 }   // issue 16: stored after compact ≤ this × tar|zstd -3
const READ_LIMIT = 1.1                    // and the reads within 10 % of before
const spread = (c, f) => (c.median === undefined ? (c.status === 'fail' ? 'FAIL' : c.note || '') : c.n > 1 ? `${f(c.median)} (${f(c.min) === f(c.max) ? '' : `${f(c.min)}–${f(c.max)}, `}n=${c.n})` : f(c.median))
const scaled = (c, k) => (c.median === undefined ? c : { ...c, median: c.median / k, min: c.min / k, max: c.max / k, values: c.values.map((v) => v / k) })
for (const corpus of ['tree', 'img']) {
  if (!records.some((r) => r.corpus === corpus && r.metric && r.metric.startsWith('compact_'))) continue
  const cb = (m, t = 'bfs') => baseCell(corpus, m, t)
  const wall = cb('compact_wall_s'), cpu = cb('compact_cpu_s'), raw = cb('compact_raw_bytes')
  const sb = cb('compact_stored_before_bytes'), sa = cb('compact_stored_after_bytes')
  const tar = baseCell(corpus, 'repo_full_mb', 'tar')
  const tarB = tar.median !== undefined && tar.status !== 'fail' ? tar.median * 1e6 : undefined
  const load = (k) => cb(k, 'host').median
  const rounds = Math.max(0, ...records.filter((r) => r.corpus === corpus && r.metric?.startsWith('compact_pread_cold_median') && typeof r.value === 'number').map((r) => r.rep))
  const nc = wall.n || 0
  lines.push(`## issue 16: corpus \`${corpus}\` after \`bfs compact\``, '')
  if (!nc) {   // not built, format 1, or the compaction failed: no table of empty cells
    lines.push(`Not measured: ${wall.status === 'fail' ? 'FAIL, ' : ''}${wall.note || 'no compaction in this run'}.`, '')
    continue
  }
  lines.push(`The bfs column's repository right after its full backup (generation 1 only, format ${meta.bfs_format ?? '?'}, ingest level), copied with \`cp -a\`; ` +
    `\`bfs compact --min-age 0\` (default level, nice 19, low I/O priority) on the copy, ${nc} time${nc === 1 ? '' : 's'}, each on a fresh copy in page cache (median; one run when the first took over a minute). ` +
    'Stored = `du -sb` of the repository directory, as the "repo size after full" row; tar|zstd -3 = that row\'s tar column' + (tarB ? ` (${(tarB / 1e6).toFixed(1)} MB)` : ' (not in this run: BENCH_TOOLS without tar)') + '. ' +
    `Reads: generation 1 through a cold \`bfs mount\` of the uncompacted repository (before) and of the compacted copy (after), alternating before/after then after/before, ${rounds} round${rounds === 1 ? '' : 's'} (median, min–max); ` +
    (corpus === 'img' ? 'dd bs=1M of the image, then on a fresh mount 2000 random 4 KiB preads cold and the same again warm (as the mount rows above). ' : 'on a fresh mount the mount rows\' 2000 random 4 KiB preads over the files of 4 KiB or more outside tools/, cold then warm. ') +
    `Load average (1 min): ${load('compact_load1_start') ?? '?'} → ${load('compact_load1_end') ?? '?'} during the compactions, ${load('compact_load1_reads_start') ?? '?'} → ${load('compact_load1_reads_end') ?? '?'} during the reads (2 cores).`, '')
  lines.push('| metric | before compact | after compact | after ÷ before | target | met |')
  lines.push('|---|---|---|---|---|---|')
  const rows = []
  const row = (label, b, a, ratioText, target = '', met = '') => { rows.push({ label, before: b, after: a, ratio: ratioText, target, met }); lines.push(`| ${label.replace(/\|/g, '\\|')} | ${b} | ${a} | ${ratioText} | ${target} | ${met} |`) }
  const yes = (ok) => (ok === undefined ? 'n/a' : ok ? 'yes' : '**NO**')
  const rt = (a, b) => (a === undefined || b === undefined || !b ? undefined : a / b)
  const r2 = (x, d = 2) => (x === undefined ? '' : `${x.toFixed(d)}×`)
  const mb = (c) => spread(scaled(c, 1e6), (x) => x.toFixed(1))
  row('stored MB (`du -sb` of the repository)', mb(sb), mb(sa), r2(rt(sa.median, sb.median), 3))
  const tb = rt(sb.median, tarB), ta = rt(sa.median, tarB)
  row('stored ÷ tar|zstd -3\'s', tb === undefined ? '' : tb.toFixed(3), ta === undefined ? '' : ta.toFixed(3), '', `≤ ${CSIZE[corpus]} after`, yes(ta === undefined ? undefined : ta <= CSIZE[corpus]))
  const ub = cb('compact_units_before_bytes'), ua = cb('compact_units_after_bytes')
  row('unit files MB (bfs compact --json: bytes.before / after)', mb(ub), mb(ua), r2(rt(ua.median, ub.median), 3))
  row('compaction wall s', '', spread(wall, fmtTime), '')
  row('compaction CPU s (user + sys)', '', spread(cpu, fmtTime), '')
  row('compaction peak RSS MiB', '', spread(cb('compact_rss_mib'), (x) => String(Math.round(x))), '')
  row('raw data compacted MB (bytes.raw)', '', raw.median === undefined ? '' : (raw.median / 1e6).toFixed(1), '')
  const mbps = raw.median !== undefined && wall.median ? raw.median / 1e6 / wall.median : undefined
  const mbcpu = raw.median !== undefined && cpu.median ? raw.median / 1e6 / cpu.median : undefined
  row('compaction MB/s of raw data (wall; no reader)', '', mbps === undefined ? '' : mbps.toFixed(1), '', '≥ 15 (issue 16: with a mount reading, `make bench-compact`)', yes(mbps === undefined ? undefined : mbps >= 15))
  row('compaction MB of raw data per CPU second', '', mbcpu === undefined ? '' : mbcpu.toFixed(1), '')
  const reads = corpus === 'img'
    ? [['compact_dd_s', 'dd image bs=1M s (cold)', fmtTime, true], ['compact_pread_cold_median_us', '2000×4KiB random pread (cold) median µs', (x) => String(Math.round(x)), true],
       ['compact_pread_cold_p99_us', '… p99 µs (cold)', (x) => String(Math.round(x)), true], ['compact_pread_warm_median_us', 'the same preads (warm) median µs', (x) => String(Math.round(x))],
       ['compact_pread_warm_p99_us', '… p99 µs (warm)', (x) => String(Math.round(x))]]
    : [['compact_pread_cold_median_us', '2000×4KiB random pread over files ≥ 4 KiB (cold) median µs', (x) => String(Math.round(x)), true],
       ['compact_pread_cold_p99_us', '… p99 µs (cold)', (x) => String(Math.round(x)), true], ['compact_pread_warm_median_us', 'the same preads (warm) median µs', (x) => String(Math.round(x))],
       ['compact_pread_warm_p99_us', '… p99 µs (warm)', (x) => String(Math.round(x))]]
  for (const [m, label, f, target] of reads) {
    const b = cb(m, 'bfs'), a = cb(m, 'bfsc')
    const ok = b.status === 'fail' || a.status === 'fail' ? false : rt(a.median, b.median)
    row(label, spread(b, f), spread(a, f), typeof ok === 'number' ? r2(ok) : '', target ? `after ≤ ${READ_LIMIT}× before` : '', target ? yes(ok === false ? false : ok === undefined ? undefined : ok <= READ_LIMIT) : '')
  }
  const chk = baseCell(corpus, 'mount_check', 'bfsc')
  row(`compacted ${corpus === 'img' ? 'image' : 'tree'} through the mount identical to source (\`${corpus === 'img' ? 'cmp' : 'diff -r'}\`)`, '', chk.status === 'fail' ? 'FAIL' : chk.status === 'ok' ? 'ok' : '', '')
  tables[`compact_${corpus}`] = rows
  lines.push('')
}
// ---- the online step (bench/online.sh): its own sources and columns -------------------
// columns: the writer alone, during the offline backup, during the --online backup
const OTOOLS = ['none', 'offline', 'online']
const OHEAD = { none: 'writer alone (no backup)', offline: 'bfs backup (offline)', online: 'bfs backup --online' }
// [metric, label, kind, compare(cells) -> [ratio text, meets target?] | undefined, target text]
const ratioOf = (a, b) => (a && b && a.median !== undefined && b.median !== undefined && b.median !== 0 ? a.median / b.median : undefined)
const ONLINE_ROWS = [
  ['backup_wall_s', 'backup wall s (writer running)', 'time', (c) => { const r = ratioOf(c.online, c.offline); return r === undefined ? undefined : [`${r.toFixed(2)}× offline`, r <= 1.15] }, '≤ 1.15× offline'],
  ['w_p50_us', 'writer 4 KiB pwrite p50 µs', 'one', (c) => { const r = ratioOf(c.online, c.none); return c.online?.median === undefined ? undefined : [r === undefined ? '' : `${r.toFixed(1)}× alone`, c.online.median <= 50] }, '≤ 50 µs (online)'],
  ['w_p99_us', 'writer pwrite p99 µs', 'one', (c) => { const r = ratioOf(c.online, c.none); return c.online?.median === undefined ? undefined : [r === undefined ? '' : `${r.toFixed(1)}× alone`, c.online.median <= 250] }, '≤ 250 µs (online)'],
  ['w_max_us', 'writer pwrite max µs', 'int'],
  ['w_writes_per_s', 'writer throughput writes/s', 'int', (c) => { const r = ratioOf(c.online, c.none); return r === undefined ? undefined : [`${(r * 100).toFixed(1)} % of alone`, r >= 0.8] }, '≥ 80 % of alone'],
  ['w_max_lag_ms', 'writer: largest lag behind its schedule ms', 'one'],
  ['w_writes', 'writes', 'int'],
  ['w_distinct_blocks', 'distinct 4 KiB blocks written', 'int'],
  ['w_bound_mb', 'distinct blocks × 4096 MB (upper bound of the BI bytes)', 'one'],
  ['bi_mb', 'before-images captured MB (`online.imageBytes`)', 'one', (c) => { const r = ratioOf(c.online, { median: c.__bound }); return r === undefined ? undefined : [`${r.toFixed(2)}× the bound`, r <= 1] }, '≤ bytes of unread blocks overwritten'],
  ['bi_kept_mb', 'BI blocks kept in the generation × 4096 MB (`online.biBlocks`)', 'one', (c) => { const r = ratioOf(c.online, { median: c.__bound }); return r === undefined ? undefined : [`${r.toFixed(2)}× the bound`, r <= 1] }, '≤ bytes of unread blocks overwritten'],
  ['bi_stored_mb', 'stored BI log file MB (`gens/N/bilog`: the records; the images are in the data stream, so in the repository size)', 'one'],
  ['bi_preread_mb', 'small files read whole at their first write MB (`online.preReadBytes`: stored as the files\' data, not kept in the BI log)', 'one'],
  ['bi_prereads', 'small files read whole at their first write', 'int'],
  ['bi_events', 'events of other processes intercepted', 'int'],
  ['bi_images', 'before-image records', 'int'],
  ['repo_mb', 'repository size after the backup MB', 'one', (c) => { const r = ratioOf(c.online, c.offline); return r === undefined ? undefined : [`${r.toFixed(3)}× offline`, undefined] }, ''],
  ['backup_rss_mib', 'backup peak RSS MiB', 'int'],
  ['listener_sched', 'capture listener thread: scheduling class / rt priority (`ps -L`)', 'check'],
  ['load1_start', 'load average (1 min) at the start', 'one'],
  ['load1_end', 'load average (1 min) at the end', 'one'],
  ['read_dd_s', 'read gen1 through a cold mount: dd of the image / cat of the writer\'s files s', 'time', (c) => { const r = ratioOf(c.online, c.offline); return r === undefined ? undefined : [`${r.toFixed(2)}× offline`, undefined] }, 'no measurable change'],
  ['pread_cold', 'gen1: 2000×4KiB random pread (cold) median / p99 µs', 'pair', (c) => { const r = ratioOf(c.online, c.offline); return r === undefined ? undefined : [`${r.toFixed(2)} / ${(c.online.p99 / c.offline.p99).toFixed(2)}× offline`, undefined] }, 'no measurable change'],
  ['pread_warm', 'gen1: the same preads (warm) median / p99 µs', 'pair'],
]
function onlineCell(corpus, row, tool) {
  const [metric, , kind] = row
  const MB = { w_bound_mb: 'w_bound_bytes', bi_mb: 'bi_bytes', bi_kept_mb: 'bi_kept_bytes', bi_stored_mb: 'bi_stored_bytes', bi_preread_mb: 'bi_preread_bytes' }
  if (MB[metric]) {
    const c = baseCell(corpus, MB[metric], tool)
    if (c.median !== undefined) for (const k of ['median', 'min', 'max']) c[k] /= 1e6
    c.values = (c.values || []).map((v) => v / 1e6)
    c.text = c.median === undefined ? (c.status === 'fail' ? 'FAIL' : c.note || '') : fmtOne(c.median)
    return c
  }
  if (kind === 'pair') return makeCell(corpus, row, tool)
  const c = baseCell(corpus, metric, tool)
  c.text = cellText(c, kind)
  return c
}
for (const corpus of ['online_tree', 'online_img']) {
  if (!records.some((r) => r.corpus === corpus)) continue
  const of = meta.online_fs || {}
  const wf = meta[`${corpus}_writer_files`]
  lines.push(`## online: \`${corpus === 'online_tree' ? 'bfs backup TREE' : 'bfs backup --volume IMG'} --online\` with a writer (issue 14)`, '')
  lines.push(`Source: ${corpus === 'online_tree' ? `the tree (as corpus \`tree\`) copied into` : `a ${of.image || '?'} image file (the first bytes of a reproducible tar of the tree) in`} a ${of.size || '?'} ext4 on a loop device (the capture marks the whole filesystem). ` +
    `Writer: ${of.rate || '?'} random 4 KiB pwrites/s ${wf ? `into ${wf.files} files of the tree (every 20th of 4 KiB or more; preads on the largest, \`${wf.largest}\`)` : 'into the image file'}, running during each backup (online: from T0, \`--t0-file\`), and alone for as long as the online backup took. ` +
    (corpus === 'online_img' ? (meta.online_img_warm === 'cat'
      ? 'Before each backup and the writer alone, the page cache is emptied and the image read with `cat` (on this kernel its pages then sit in 2 MiB folios, into which a 4 KiB write costs ~35–48 µs even with no backup running). '
      : meta.online_img_warm ? 'Before each backup and the writer alone, the page cache is emptied and the image read without read-ahead (`online-writer --warm`: its pages in small folios, as a live image\'s working set; a `cat` leaves 2 MiB folios, into which a 4 KiB write costs ~35–48 µs with no backup running: BENCH_ONLINE_WARM=cat). ' : '') : '') +
    'No peer does this (restic, borg and the others need a snapshot): the comparison is the same bfs backup offline, during which the writer changes the source as it is read. ' +
    (records.some((r) => r.corpus === corpus && r.metric === 'bi_kept_bytes')
      ? 'The online generation keeps its BI log (`gens/N/bilog`), so the read rows compare a generation read through its BI log with one without.'
      : 'This bfs keeps no BI log in the generation (`online.biBlocks` absent), so the read rows compare two generations of the same kind.'), '')
  lines.push(`| metric | ${OTOOLS.map((t) => OHEAD[t]).join(' | ')} | --online vs. | target | met |`)
  lines.push('|---|---|---|---|---|---|---|')
  tables[corpus] = []
  const bound = baseCell(corpus, 'w_bound_bytes', 'online')
  for (const row of ONLINE_ROWS) {
    const cells = {}
    for (const t of OTOOLS) cells[t] = onlineCell(corpus, row, t)
    if (row[0] === 'bi_mb' || row[0] === 'bi_kept_mb') cells.__bound = bound.median === undefined ? undefined : bound.median / 1e6
    const cmp = row[3] ? row[3](cells) : undefined
    const met = cmp ? (cmp[1] === undefined ? '' : cmp[1] ? 'yes' : '**NO**') : ''
    const target = row[4] || ''
    delete cells.__bound
    tables[corpus].push({ metric: row[0], label: row[1], cells, compare: cmp?.[0], target, met })
    lines.push(`| ${row[1].replace(/\|/g, '\\|')} | ${OTOOLS.map((t) => (cells[t].text || '').replace(/\|/g, '\\|')).join(' | ')} | ${cmp?.[0] ?? ''} | ${target} | ${met} |`)
  }
  lines.push('')
}
// ---- the many step (bench/many.sh, issue 15): 1M / 100k small files -------------------
// [metric, label, kind, target text, met(cells, ctx) -> true | false | undefined]
const MTOOLS = ['bfs', 'bfs1', 'restic', 'borg', 'squashfs']
const MHEAD = { bfs: 'bfs (format 2)', bfs1: 'bfs format 1', restic: 'restic', borg: 'borg', squashfs: 'mksquashfs zstd(15) + squashfuse' }
const MB = 1e6 / 2 ** 20   // MiB per MB
const med = (c) => (c && c.status !== 'fail' ? c.median : undefined)
const lt = (a, b) => (a === undefined || b === undefined ? undefined : a <= b)
const MANY_ROWS = [
  ['full_wall_s', 'full backup wall s', 'time', '≤ 1/2 restic', (c) => lt(med(c.bfs), med(c.restic) / 2)],
  ['full_rss_mib', 'full backup peak RSS MiB', 'int', '≤ 250 MB (238 MiB)', (c) => lt(med(c.bfs), 250 * MB)],
  ['repo_full_mb', 'repository size after full MB', 'one'],
  ['nochange_wall_s', 'no-change backup wall s', 'time', '≤ 1/3 restic', (c) => lt(med(c.bfs), med(c.restic) / 3)],
  ['nochange_rss_mib', 'no-change backup peak RSS MiB', 'int'],
  ['nochange_growth_kb', 'repository growth per no-change backup kB', 'one', '≤ 100 KB', (c) => lt(med(c.bfs), 100)],
  ['incr_wall_s', '1 % changed: backup wall s', 'time'],
  ['incr_rss_mib', '1 % changed: backup peak RSS MiB', 'int'],
  ['incr_growth_mb', '1 % changed: repository growth per backup MB', 'one', (x) => x.incrTarget, (c, x) => lt(med(c.bfs), x.incrLimit)],
  ['mount_ready_s', 'mount: start→mountpoint in the mount table s (cold)', 'time'],
  ['mount_ls_s', 'mount: start→first successful `ls` s (cold)', 'time', '≤ 0.3 s', (c) => lt(med(c.bfs), 0.3)],
  ['find_s', 'mount: `find MNT | wc -l` s (cold)', 'time', '≤ squashfuse', (c) => lt(med(c.bfs), med(c.squashfs))],
  ['find_entries', 'mount: entries `find` listed', 'int'],
  ['mount_rss_mib', 'mount server peak RSS (VmHWM) after find MiB', 'int', '≤ 100 MB (95 MiB)', (c) => lt(med(c.bfs), 100 * MB)],
  ['mount_vmrss_mib', 'mount server RSS (VmRSS) after find MiB', 'int'],
  ['mount_check', 'mounted tree identical to source (`diff -r`; 1M: every 100th directory, and the entry count)', 'check'],
  ['ls_s', (x) => `ls of ${x.dir} s (warm)`, 'time', '≤ 0.3 s', (c) => lt(med(c.bfs), 0.3)],
  ['ls_cold_s', (x) => `ls of ${x.dir} s (cold, n=1)`, 'time'],
  ['cat_s', (x) => `cat of ${x.file} s (warm)`, 'time', '≤ 0.3 s', (c) => lt(med(c.bfs), 0.3)],
  ['cat_cold_s', (x) => `cat of ${x.file} s (cold, n=1)`, 'time'],
  ['lookup_check', 'ls lists the directory, cat prints the file', 'check'],
]
function manyCell(corpus, metric, kind, tool) {
  const scaled = { nochange_growth_kb: ['nochange_growth_b', 1e3], incr_growth_mb: ['incr_growth_b', 1e6] }[metric]
  const c = baseCell(corpus, scaled ? scaled[0] : metric, tool)
  if (scaled && c.median !== undefined) { for (const k of ['median', 'min', 'max']) c[k] /= scaled[1]; c.values = c.values.map((v) => v / scaled[1]) }
  c.text = cellText(c, kind)
  if (metric === 'lookup_check' && c.median === undefined && !c.status && records.some((r) => r.corpus === corpus && r.metric === 'cat_s' && r.tool === tool && typeof r.value === 'number')) c.text = 'ok'
  return c
}
if (records.some((r) => r.corpus === 'many')) {
  const cm = meta.corpus_many || {}
  const big = cm.files >= 1e6
  const ctx = { dir: big ? 'd0500' : 'd0050' }
  ctx.file = `${ctx.dir}/file-00500.txt`
  const changed = baseCell('many', 'incr_changed_bytes', 'corpus')
  const appended = baseCell('many', 'incr_appended_bytes', 'corpus')
  const nchanged = baseCell('many', 'incr_changed_files', 'corpus')
  if (changed.median !== undefined) {
    ctx.incrLimit = (2 * changed.median + 1e6) / 1e6
    ctx.incrTarget = `≤ 2× changed + 1 MB = ${ctx.incrLimit.toFixed(2)} MB`
  } else ctx.incrTarget = '≤ 2× changed + 1 MB'
  lines.push(`## issue 15: many (${(cm.files || 0).toLocaleString('en')} files of 0–200 bytes in ${(cm.dirs || 0).toLocaleString('en')} directories, ${((cm.file_bytes || 0) / 1e6).toFixed(1)} MB of file data)`, '')
  lines.push('Corpus built by `bench/many-corpus.mjs` (seed 15, fixed mtimes) on ext4 in /var/tmp; the bfs column is a format 2 repository (`bfs init --format 2`), ' +
    '`bfs format 1` a format 1 one (`bfs init --format 1`). 1 % changed = a line appended to every 100th file (sorted walk)' +
    (changed.median !== undefined ? `: ${Math.round(nchanged.median).toLocaleString('en')} files, ${(changed.median / 1e6).toFixed(2)} MB in the changed files (the "changed" of the target), of which ${(appended.median / 1e3).toFixed(0)} kB appended since the full backup (median over the rounds)` : '') +
    '; growth is the mean over the rounds. Mount: `bfs mount gen1 MNT` / `squashfuse IMAGE MNT` after dropping the page cache; `find` cold on that mount; the server\'s RSS read right after it. ' +
    'ls / cat: `bfs ls gen1:DIR`, `bfs cat gen1:FILE`; `restic ls SNAP /SRC/DIR`, `restic dump`; `borg list REPO::g1 DIR`, `borg extract --stdout`; whole commands (process start included). ' +
    'Targets apply to the bfs (format 2) column.', '')
  lines.push(`| metric | ${MTOOLS.map((t) => MHEAD[t]).join(' | ')} | target | met |`)
  lines.push(`|---|${MTOOLS.map(() => '---').join('|')}|---|---|`)
  tables.many = []
  for (const [metric, label0, kind, target0, test] of MANY_ROWS) {
    const cells = {}
    for (const t of MTOOLS) cells[t] = manyCell('many', metric, kind, t)
    if (MTOOLS.every((t) => !cells[t].text)) continue
    const label = typeof label0 === 'function' ? label0(ctx) : label0
    const target = typeof target0 === 'function' ? target0(ctx) : target0 || ''
    const ok = test ? test(cells, ctx) : undefined
    const met = ok === undefined ? (test ? 'n/a' : '') : ok ? 'yes' : '**NO**'
    tables.many.push({ metric, label, cells, target, met })
    lines.push(`| ${label.replace(/\|/g, '\\|')} | ${MTOOLS.map((t) => cells[t].text.replace(/\|/g, '\\|')).join(' | ')} | ${target} | ${met} |`)
  }
  // peak RSS flatness: the 1M figure over the 100k one (a full run backs up both)
  const small = big ? baseCell('many_100k', 'full_rss_mib', 'bfs') : undefined
  const bigRss = med(baseCell('many', 'full_rss_mib', 'bfs'))
  let rtext = '', rmet = 'n/a'
  if (!big) rtext = 'only the 100k corpus in this run (a full run backs up both)'
  else if (small?.median !== undefined && bigRss !== undefined) {
    const r = bigRss / small.median
    rtext = `${r.toFixed(2)} (1M ${Math.round(bigRss)} MiB / 100k ${Math.round(small.median)} MiB${small.n > 1 ? `, n=${small.n}` : ''})`
    rmet = r <= 1.3 ? 'yes' : '**NO**'
    tables.many.push({ metric: 'full_rss_ratio', label: 'full backup peak RSS 1M / 100k', cells: { bfs: { median: r, text: r.toFixed(2) } }, target: '≤ 1.3', met: rmet })
  } else rtext = 'no 100k figure in this run'
  lines.push(`| full backup peak RSS 1M / 100k | ${rtext} | ${MTOOLS.slice(1).map(() => '').join(' | ')} | ≤ 1.3 (with ≤ 250 MB) | ${rmet} |`)
  lines.push('')
}
// ---- the admin step (bench/admin.sh, issue 17): diff, find, rename/copy growth ---------
const ATOOLS = ['bfs1', 'bfs2', 'restic', 'borg']
const AHEAD = { bfs1: 'bfs format 1', bfs2: 'bfs format 2', restic: 'restic', borg: 'borg' }
// [metric, label, kind, scale, target text, test(bfs median, restic median) -> bool]
const quick = (lim) => (b, r) => (b === undefined || r === undefined ? undefined : b <= lim && b <= r / 3)
const ADMIN_ROWS = [
  ['full_wall_s', 'generation 1 (full backup) wall s', 'time'],
  ['incr_wall_s', 'generations 2–N: backup wall s', 'time'],
  ['incr_growth_b', 'generations 2–N: repository growth per backup MB', 'one', 1e6],
  ['repo_mb', 'repository size after N generations MB', 'one'],
  ['diff_warm_s', '`diff latest~1 latest` s (warm)', 'time', 1, '≤ 0.5 s and ≤ 1/3 restic', quick(0.5)],
  ['diff_cold_s', '`diff latest~1 latest` s (cold)', 'time', 1, '≤ 0.5 s and ≤ 1/3 restic', quick(0.5)],
  ['diff_counts', 'diff: files new / removed / changed (checked against the change made)', 'counts'],
  ['find_Makefile_warm_s', '`find Makefile` over N generations s (warm)', 'time', 1, '≤ 1 s and ≤ 1/3 restic', quick(1)],
  ['find_Makefile_cold_s', '`find Makefile` over N generations s (cold)', 'time', 1, '≤ 1 s and ≤ 1/3 restic', quick(1)],
  ['find_Makefile_hits', '`find Makefile`: entries found (all generations; checked against restic)', 'int'],
  ['find_ext4_jbd2.c_warm_s', '`find ext4_jbd2.c` over N generations s (warm)', 'time', 1, '≤ 1 s and ≤ 1/3 restic', quick(1)],
  ['find_ext4_jbd2.c_cold_s', '`find ext4_jbd2.c` over N generations s (cold)', 'time', 1, '≤ 1 s and ≤ 1/3 restic', quick(1)],
  ['find_ext4_jbd2.c_hits', '`find ext4_jbd2.c`: entries found', 'int'],
  ['nochange_growth_b', 'no-change backup: repository growth kB', 'one', 1e3],
  ['nochange_wall_s', 'no-change backup wall s', 'time'],
  ['rename_growth_b', 'backup after 1 % renamed or copied: repository growth MB', 'one', 1e6, '≤ 1.1× restic', (b, r) => (b === undefined || r === undefined ? undefined : b <= 1.1 * r)],
  ['rename_wall_s', 'backup after 1 % renamed or copied: wall s', 'time'],
]
function adminCell(metric, kind, scale, tool) {
  if (kind === 'counts') {
    const v = ['new', 'removed', 'changed'].map((k) => baseCell('admin', `diff_${k}`, tool).median)
    const chk = baseCell('admin', 'diff_check', tool)
    if (v[0] === undefined) return { text: chk.status === 'fail' ? 'FAIL' : '' }
    return { values: v, text: `${v.join(' / ')}${chk.status === 'fail' ? ' FAIL' : chk.status === 'ok' ? ' ok' : ''}`, status: chk.status }
  }
  const c = baseCell('admin', metric, tool)
  if (scale && scale !== 1 && c.median !== undefined) { for (const k of ['median', 'min', 'max']) c[k] /= scale; c.values = c.values.map((v) => v / scale) }
  if (kind === 'time' || scale) c.text = cellText(c, kind === 'time' ? 'time' : 'time').replace(/^([\d.]+)/, (m) => (kind === 'time' ? m : fmtOne(c.median)))
  else c.text = cellText(c, kind)
  if (scale && c.median !== undefined && kind !== 'time') c.text = c.n > 1 ? `${fmtOne(c.median)} (${fmtOne(c.min)}–${fmtOne(c.max)}, n=${c.n})` : fmtOne(c.median)
  if (metric.endsWith('_hits')) {
    const chk = baseCell('admin', metric.replace(/_hits$/, '_check'), tool)
    if (chk.status === 'fail') c.text += ' FAIL'
  }
  return c
}
if (records.some((r) => r.corpus === 'admin')) {
  const cm = meta.corpus_admin || {}
  const ngen = 1 + new Set(records.filter((r) => r.corpus === 'admin' && r.metric === 'incr_wall_s').map((r) => r.rep)).size
  const mut = (k) => baseCell('admin', `mut_${k}`, 'corpus')
  const ren = (k) => baseCell('admin', `ren_${k}`, 'corpus').median
  const load = (k) => baseCell('admin', k, 'host').median
  const areps = Math.max(0, ...records.filter((r) => r.corpus === 'admin' && r.metric === 'diff_warm_s').map((r) => r.rep))
  lines.push(`## issue 17: admin — diff, find, renamed and copied files (${ngen} generations of the Linux tree: ${(cm.files || 0).toLocaleString('en')} files, ${((cm.apparent_bytes || 0) / 1e9).toFixed(2)} GB at generation 1)`, '')
  lines.push(`Generations 2–${ngen}: before each, \`mutate.mjs gen\` changes 1 % of the files (seeded by the generation): ` +
    `${Math.round(mut('changed').median)} changed (a line appended), ${Math.round(mut('removed').median)} removed, ${Math.round(mut('added').median)} added (a header line + the bytes of another file of the tree); ` +
    `${(mut('changed_bytes').median / 1e6).toFixed(1)} MB in the changed files, ${(mut('added_bytes').median / 1e6).toFixed(2)} MB added (medians over the generations). ` +
    `bfs: \`bfs diff latest~1 latest\`, \`bfs find NAME\`; restic: \`restic diff ID${ngen - 1} ID${ngen}\`, \`restic find NAME\` (all snapshots); whole commands, process start included, output to a file. ` +
    `Per repetition each tool runs once cold (\`sync; echo 3 > /proc/sys/vm/drop_caches\` first; restic's cache directory is kept, filled by its backups, as a user has it) and right after once warm; ${areps} repetition${areps === 1 ? '' : 's'}, interleaved, median (min–max, n). ` +
    `Load average (1 min) ${load('load1_timing_start')} at the start of the timings, ${load('load1_timing_end')} at their end (${load('load1_start')} at the start of the step, ${load('load1_end')} at its end; 2 cores, other work running). ` +
    `Then a no-change backup and a backup after \`mutate.mjs rename\`: ${ren('renamed')} files renamed (${ren('moved')} of them into another directory) and ${ren('copied')} copied into another directory, ` +
    `${((ren('renamed_bytes') + ren('copied_bytes')) / 1e6).toFixed(2)} MB of file data (${(ren('renamed_bytes') / 1e6).toFixed(2)} renamed, ${(ren('copied_bytes') / 1e6).toFixed(2)} copied). ` +
    'Growth = `du -sb` of the repository directory after the backup minus before. borg backs up only the last two states (from an empty repository: what it stores for a rename depends on the chunks already stored, not on earlier archives). ' +
    'Targets apply to both bfs columns (met: format 1 / format 2).', '')
  lines.push(`| metric | ${ATOOLS.map((t) => AHEAD[t]).join(' | ')} | bfs f1 / restic | bfs f2 / restic | target | met (f1 / f2) |`)
  lines.push(`|---|${ATOOLS.map(() => '---').join('|')}|---|---|---|---|`)
  tables.admin = []
  for (const [metric, label0, kind, scale, target = '', test] of ADMIN_ROWS) {
    const cells = {}
    for (const t of ATOOLS) cells[t] = adminCell(metric, kind, scale, t)
    if (ATOOLS.every((t) => !cells[t].text)) continue
    const label = label0.replace(/\bN\b/g, String(ngen))
    const r = med(cells.restic)
    const ratios = ['bfs1', 'bfs2'].map((t) => { const b = med(cells[t]); return b === undefined || r === undefined || kind === 'counts' || metric.endsWith('_hits') ? '' : r === 0 ? '∞' : `${(b / r).toFixed(2)}×` })
    const mets = test ? ['bfs1', 'bfs2'].map((t) => { const ok = test(med(cells[t]), r); return ok === undefined ? 'n/a' : ok ? 'yes' : '**NO**' }) : undefined
    tables.admin.push({ metric, label, cells, ratio_f1: ratios[0], ratio_f2: ratios[1], target, met_f1: mets?.[0], met_f2: mets?.[1] })
    lines.push(`| ${label.replace(/\|/g, '\\|')} | ${ATOOLS.map((t) => (cells[t].text || '').replace(/\|/g, '\\|')).join(' | ')} | ${ratios[0]} | ${ratios[1]} | ${target} | ${mets ? mets.join(' / ') : ''} |`)
  }
  // what the renames and copies cost beyond a backup of an unchanged tree
  const extra = {}
  for (const t of ATOOLS) {
    const a = med(baseCell('admin', 'rename_growth_b', t)), b = med(baseCell('admin', 'nochange_growth_b', t))
    extra[t] = a === undefined || b === undefined ? { text: '' } : { median: (a - b) / 1e6, text: fmtOne((a - b) / 1e6) }
  }
  if (ATOOLS.some((t) => extra[t].text)) {
    const r = extra.restic.median
    const rt = ['bfs1', 'bfs2'].map((t) => (extra[t].median === undefined || !r ? '' : `${(extra[t].median / r).toFixed(2)}×`))
    tables.admin.push({ metric: 'rename_minus_nochange_mb', label: 'rename/copy growth minus no-change growth MB', cells: extra, ratio_f1: rt[0], ratio_f2: rt[1] })
    lines.push(`| rename/copy growth minus no-change growth MB | ${ATOOLS.map((t) => extra[t].text).join(' | ')} | ${rt[0]} | ${rt[1]} |  |  |`)
  }
  lines.push('')
}
if (fails.length) {
  lines.push('## Failures', '')
  for (const r of fails) lines.push(`- ${r.corpus} ${r.metric} ${r.tool}: ${r.note}`)
  lines.push('')
}
const md = lines.join('\n')
fs.writeFileSync(`${outBase}.md`, md)
fs.writeFileSync(`${outBase}.json`, JSON.stringify({ date, mode, env, meta, tables, failures: fails, records }, null, 1) + '\n')
console.log(md)
