#!/usr/bin/env node
// Issue 16's prune target: "forget half of 20 generations and prune" — the repository's size
// afterwards against a fresh repository holding only the kept generations, and prune's time
// against restic's on the same history (each generation's source changes applied once, both
// tools backing up the same tree). Prints a markdown table; with BENCH_OUT=file writes it there too.
//
//   node bench/prune.mjs [--dir /var/tmp/bfs-prune] [--gens 20] [--files 2000] [--seed 1] [--max-unused 0,5]
//
// History: a tree of `files` text files (~7 KB each) in 40 directories; every generation after
// the first changes 5 % of the files (a run of lines in the middle rewritten), deletes 1 % and
// adds 1 %. Every other generation (1, 3, …) is forgotten; each prune runs on its own copy of
// the repository (cp -a) for each --max-unused value. Fresh repositories are built by backing up
// the kept generations' trees, in order, from the same source path. Sizes are `du -sb`;
// times are wall, user and system CPU of the prune process (GNU time). restic (if on PATH)
// uses its default repository version (2 in 0.14: compressed) and RESTIC_PASSWORD=bench.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const BFS = process.env.BENCH_BFS ?? path.join(here, '..', 'bin', 'bfs')
const args = process.argv.slice(2)
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : def
}
const DIR = opt('dir', '/var/tmp/bfs-prune')
const GENS = Number(opt('gens', 20))
const FILES = Number(opt('files', 2000))
const MAX_UNUSED = opt('max-unused', '0,5').split(',')
let seed = Number(opt('seed', 1)) >>> 0
const rand = () => {
  seed ^= seed << 13; seed >>>= 0
  seed ^= seed >>> 17
  seed ^= seed << 5; seed >>>= 0
  return seed / 2 ** 32
}
const words = 'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega'.split(' ')
const line = () => Array.from({ length: 6 + Math.floor(rand() * 8) }, () => words[Math.floor(rand() * words.length)]).join(' ') + ` ${Math.floor(rand() * 1e9)}\n`
const text = (bytes) => {
  let s = ''
  while (s.length < bytes) s += line()
  return s
}

const src = path.join(DIR, 'src')
const snaps = path.join(DIR, 'snaps')
const env = { ...process.env, RESTIC_PASSWORD: 'bench' }
const hasRestic = spawnSync('restic', ['version']).status === 0

function run(cmd, a, o = {}) {
  const r = spawnSync(cmd, a, { env: { ...env, ...(o.env ?? {}) }, encoding: 'utf8', maxBuffer: 1 << 28 })
  if (r.status !== 0 && !o.mayFail) throw new Error(`${cmd} ${a.join(' ')}: exit ${r.status}: ${r.stderr}`)
  return r
}
/** Wall, user, system seconds and peak RSS of one command (GNU time). */
function timed(cmd, a, o = {}) {
  const tf = path.join(DIR, 'time.out')
  const r = run('/usr/bin/time', ['-o', tf, '-f', '%e %U %S %M', cmd, ...a], o)
  const [wall, user, sys, rss] = fs.readFileSync(tf, 'utf8').trim().split('\n').pop().split(' ').map(Number)
  return { wall, user, sys, rssMB: rss / 1024, out: r.stdout }
}
const du = (d) => Number(run('du', ['-sb', d]).stdout.split('\t')[0])
const mb = (n) => (n / 1e6).toFixed(2)

fs.rmSync(DIR, { recursive: true, force: true })
fs.mkdirSync(snaps, { recursive: true })
let serial = 0
const names = []
for (let i = 0; i < FILES; i++) {
  const n = path.join(`d${i % 40}`, `f${serial++}.txt`)
  fs.mkdirSync(path.join(src, path.dirname(n)), { recursive: true })
  fs.writeFileSync(path.join(src, n), text(3000 + Math.floor(rand() * 8000)))
  names.push(n)
}
function mutate() {
  const pickIdx = () => Math.floor(rand() * names.length)
  for (let k = 0; k < Math.round(FILES * 0.05); k++) {
    const f = path.join(src, names[pickIdx()])
    const lines = fs.readFileSync(f, 'utf8').split('\n')
    const at = Math.floor(rand() * lines.length)
    for (let j = at; j < Math.min(lines.length - 1, at + 5); j++) lines[j] = line().trimEnd()
    fs.writeFileSync(f, lines.join('\n'))
  }
  for (let k = 0; k < Math.round(FILES * 0.01); k++) fs.rmSync(path.join(src, names.splice(pickIdx(), 1)[0]))
  for (let k = 0; k < Math.round(FILES * 0.01); k++) {
    const n = path.join(`d${Math.floor(rand() * 40)}`, `f${serial++}.txt`)
    fs.writeFileSync(path.join(src, n), text(3000 + Math.floor(rand() * 8000)))
    names.push(n)
  }
}

const bfsRepo = path.join(DIR, 'bfs')
const resticRepo = path.join(DIR, 'restic')
run(BFS, ['init', '--format', '2'], { env: { BFS_REPO: bfsRepo } })
if (hasRestic) run('restic', ['-q', 'init', '-r', resticRepo])
const resticIds = []
for (let g = 1; g <= GENS; g++) {
  if (g > 1) mutate()
  run(BFS, ['backup', '-q', src], { env: { BFS_REPO: bfsRepo } })
  if (hasRestic) {
    const r = run('restic', ['-r', resticRepo, 'backup', '--json', src])
    resticIds.push(JSON.parse(r.stdout.trim().split('\n').pop()).snapshot_id)
  }
  if (g % 2 === 0) run('cp', ['-a', src, path.join(snaps, `g${g}`)])
}
const forget = Array.from({ length: GENS }, (_, i) => i + 1).filter((g) => g % 2 === 1)
const kept = Array.from({ length: GENS }, (_, i) => i + 1).filter((g) => g % 2 === 0)
run(BFS, ['forget', ...forget.map(String)], { env: { BFS_REPO: bfsRepo } })
if (hasRestic) run('restic', ['-q', '-r', resticRepo, 'forget', ...forget.map((g) => resticIds[g - 1])])

// fresh repositories of the kept generations, backed up from one path
const freshSrc = path.join(DIR, 'fresh-src')
const freshBfs = path.join(DIR, 'fresh-bfs')
const freshRestic = path.join(DIR, 'fresh-restic')
run(BFS, ['init', '--format', '2'], { env: { BFS_REPO: freshBfs } })
if (hasRestic) run('restic', ['-q', 'init', '-r', freshRestic])
for (const g of kept) {
  fs.rmSync(freshSrc, { recursive: true, force: true })
  run('cp', ['-a', path.join(snaps, `g${g}`), freshSrc])
  run(BFS, ['backup', '-q', freshSrc], { env: { BFS_REPO: freshBfs } })
  if (hasRestic) run('restic', ['-q', '-r', freshRestic, 'backup', freshSrc])
}

const rows = []
const before = { bfs: du(bfsRepo), restic: hasRestic ? du(resticRepo) : 0 }
const fresh = { bfs: du(freshBfs), restic: hasRestic ? du(freshRestic) : 0 }
for (const mu of MAX_UNUSED) {
  const b = `${bfsRepo}-${mu}`
  run('cp', ['-a', bfsRepo, b])
  const t = timed(BFS, ['prune', '--json', '--max-unused', `${mu}%`], { env: { BFS_REPO: b } })
  const res = JSON.parse(t.out)
  const v = run(BFS, ['verify', '--all', '-q'], { env: { BFS_REPO: b }, mayFail: true })
  rows.push({ tool: 'bfs', mu, before: before.bfs, after: du(b), fresh: fresh.bfs, ...t, note: `${res.units.rewritten} units rewritten, verify ${v.status === 0 ? 'ok' : 'FAILED'}` })
  if (hasRestic) {
    const r = `${resticRepo}-${mu}`
    run('cp', ['-a', resticRepo, r])
    const rt = timed('restic', ['-r', r, 'prune', '--max-unused', `${mu}%`])
    const c = run('restic', ['-q', '-r', r, 'check'], { mayFail: true })
    rows.push({ tool: 'restic', mu, before: before.restic, after: du(r), fresh: fresh.restic, ...rt, note: `check ${c.status === 0 ? 'ok' : 'FAILED'}` })
  }
}
const out = [
  `forget ${forget.length} of ${GENS} generations (every other) of ${FILES} text files, then prune; load average ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
  '',
  '| tool | --max-unused | before MB | after MB | fresh MB | after / fresh | prune wall s | user s | sys s | peak RSS MB | |',
  '|---|---|---|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.tool} | ${r.mu} % | ${mb(r.before)} | ${mb(r.after)} | ${mb(r.fresh)} | ${(r.after / r.fresh).toFixed(3)} | ${r.wall.toFixed(2)} | ${r.user.toFixed(2)} | ${r.sys.toFixed(2)} | ${r.rssMB.toFixed(0)} | ${r.note} |`),
].join('\n')
process.stdout.write(out + '\n')
if (process.env.BENCH_OUT) fs.writeFileSync(process.env.BENCH_OUT, out + '\n')
