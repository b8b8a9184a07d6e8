#!/usr/bin/env node
// Issue 16's crash target: kill -9 at many random points spread over the maintenance commands
// (forget, prune — half of its points with `--max-unused 0`, so that the rewrite of partly used
// units is killed too — and merge and compact where this bfs has them) and backups, on a real format 2
// repository; after every kill, the repository must hold every generation it should, each
// restoring as the tree was when it was backed up (`bfs verify --against` a cp -a copy taken
// then), and `bfs verify --all` must pass. Prints a table and writes
// bench/results/YYYY-MM-DD-crash.md (BENCH_OUT=prefix writes elsewhere).
//
//   node bench/crash.mjs [--points 100] [--seed 1] [--dir /var/tmp/bfs-crash] [--ops forget,prune,merge,compact,backup]
//
// How a point works: the command is started, and SIGKILLed after bfs's start-up time (a
// `bfs version`, measured first: no repository I/O happens before it) plus a delay drawn
// uniformly from [0, 1.2 × the rest of its last uninterrupted run] (the first run of each
// command is not killed: it measures). A command that ends before its kill is a "finished" point, not a
// crash; the table says how many kills landed. What is checked after each point:
// - every generation listed reads and equals its copy (verify --against, exit 0);
// - every generation committed and not named by a forget that was started is listed (a
//   forget that was killed may or may not have retired its generation: both are right);
// - a backup that was killed left no generation, or left one that equals its copy;
// - verify --all exits 0.
import { spawn, spawnSync } from 'node:child_process'
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
const POINTS = Number(opt('points', 100))
let seed = Number(opt('seed', 1)) >>> 0
const DIR = opt('dir', '/var/tmp/bfs-crash')
const rand = () => {
  // xorshift32: the same points for the same seed
  seed ^= seed << 13; seed >>>= 0
  seed ^= seed >>> 17
  seed ^= seed << 5; seed >>>= 0
  return seed / 2 ** 32
}
const pick = (a) => a[Math.floor(rand() * a.length)]

const repo = path.join(DIR, 'repo')
const src = path.join(DIR, 'src')
const copies = path.join(DIR, 'copies')
const env = { ...process.env, BFS_REPO: repo }

function bfs(a, o = {}) {
  const r = spawnSync(BFS, a, { env, encoding: 'utf8', maxBuffer: 1 << 28, ...o })
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' }
}
const has = (cmd) => bfs(['help', cmd]).code === 0

const wantOps = opt('ops', 'forget,prune,merge,compact,backup').split(',')
const ops = wantOps.filter((op) => op === 'backup' || has(op))
const missing = wantOps.filter((op) => !ops.includes(op))

// ---- the tree and its changes (deterministic from the seed) ---------------------------
function fill(n) {
  const b = Buffer.allocUnsafe(n + 3)
  for (let i = 0; i < n; i += 4) b.writeUInt32LE((rand() * 2 ** 32) >>> 0, i)
  return b.subarray(0, n)
}
function makeTree() {
  for (let d = 0; d < 12; d++) {
    fs.mkdirSync(path.join(src, `d${d}`, 'sub'), { recursive: true })
    for (let f = 0; f < 60; f++) fs.writeFileSync(path.join(src, `d${d}`, f % 4 ? `f${f}.txt` : `sub/f${f}.bin`), f % 4 ? `d${d} f${f} ${rand()}\n`.repeat(1 + f * 20) : fill(16384 + Math.floor(rand() * 200000)))
  }
  fs.symlinkSync('d0/f1.txt', path.join(src, 'link'))
}
let serial = 0
function mutate() {
  for (let k = 0; k < 12; k++) {
    const d = path.join(src, `d${Math.floor(rand() * 12)}`)
    const names = fs.readdirSync(d).filter((n) => n !== 'sub')
    const r = rand()
    if (r < 0.5 && names.length) fs.appendFileSync(path.join(d, pick(names)), `change ${serial++}\n`)
    else if (r < 0.8) fs.writeFileSync(path.join(d, `new${serial++}.bin`), fill(4096 + Math.floor(rand() * 100000)))
    else if (names.length > 3) fs.rmSync(path.join(d, pick(names)))
  }
}

// ---- what must be true -------------------------------------------------------------------
/** Generation id → 'live' (must be listed), 'maybe' (a started forget or a killed backup named it). */
const expected = new Map()
function listed() {
  const r = bfs(['generations', '--json'])
  if (r.code !== 0) return { error: `generations exit ${r.code}: ${r.stderr.trim()}` }
  return { ids: JSON.parse(r.stdout).map((g) => g.id) }
}
function takeCopy(id) {
  fs.mkdirSync(copies, { recursive: true })
  spawnSync('cp', ['-a', src, path.join(copies, `gen${id}`)])
}
const failures = []
function check(label) {
  const l = listed()
  if (l.error) return void failures.push(`${label}: ${l.error}`)
  for (const [id, state] of expected) {
    if (!l.ids.includes(id)) {
      if (state === 'live') failures.push(`${label}: gen${id} is lost (committed, never forgotten)`)
      else expected.delete(id)
    }
  }
  for (const id of l.ids) {
    if (!expected.has(id)) {
      failures.push(`${label}: gen${id} is listed but no backup committed it`)
      continue
    }
    const copy = path.join(copies, `gen${id}`)
    if (!fs.existsSync(copy)) {
      failures.push(`${label}: gen${id} is listed but no copy was taken (a killed backup committed before its kill?)`)
      continue
    }
    const v = bfs(['verify', '--against', copy, String(id)])
    if (v.code !== 0) failures.push(`${label}: gen${id} differs from its copy (exit ${v.code}): ${(v.stdout + v.stderr).trim().split('\n').slice(0, 3).join(' | ')}`)
  }
  const all = bfs(['verify', '--all'])
  if (all.code !== 0) failures.push(`${label}: verify --all exit ${all.code}: ${(all.stdout + all.stderr).trim().split('\n').slice(0, 3).join(' | ')}`)
}

// ---- one point ---------------------------------------------------------------------------
const lastMs = new Map()
const stats = new Map(ops.map((op) => [op, { points: 0, killed: 0, finished: 0, measured: 0 }]))

function argsFor(op) {
  const ids = [...expected.keys()].sort((a, b) => a - b)
  switch (op) {
    case 'forget': {
      if (ids.length < 4) return null
      const id = pick(ids.slice(0, -1)) // never the newest: the next backup's parent stays
      return { args: ['forget', String(id)], forgets: [id] }
    }
    case 'prune':
      // half of them rewrite every partly used unit (step 7 as a kill point), the others use the default --max-unused (5 %)
      return { args: rand() < 0.5 ? ['prune', '--max-unused', '0'] : ['prune'] }
    case 'compact':
      return { args: ['compact', '--min-age', '0'] }
    case 'merge': {
      if (ids.length < 4) return null
      const i = Math.floor(rand() * (ids.length - 2))
      const a = ids[i], b = ids[i + 2]
      return { args: ['merge', `gen${a}..gen${b}`], forgets: ids.filter((x) => x >= a && x < b) }
    }
    case 'backup':
      return { args: ['backup', src, '--json'], backup: true }
  }
  return null
}

function runKilled(a, delayMs) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint()
    const p = spawn(BFS, a, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    p.stdout.on('data', (d) => (out += d))
    p.stderr.on('data', (d) => (err += d))
    let killed = false
    const timer = delayMs === null ? null : setTimeout(() => {
      killed = true
      p.kill('SIGKILL')
    }, delayMs)
    p.on('close', (code, sig) => {
      if (timer) clearTimeout(timer)
      resolve({ code, sig, killed: killed && sig === 'SIGKILL', ms: Number(process.hrtime.bigint() - t0) / 1e6, out, err })
    })
  })
}

async function point(n) {
  let op = ops[n % ops.length]
  let plan = argsFor(op)
  if (!plan) {
    op = 'backup'
    plan = argsFor(op)
  }
  if (plan.backup) mutate()
  for (const id of plan.forgets ?? []) if (expected.get(id) === 'live') expected.set(id, 'maybe')
  // after the process's start-up (no repository I/O before it), uniformly over the rest of its last run
  const est = lastMs.get(op)
  const delay = est === undefined ? null : startupMs + rand() * 1.2 * Math.max(1, est - startupMs)
  const before = listed().ids ?? []
  // a backup's copy is the tree now: taken before it runs, kept only if it commits
  const nextCopy = plan.backup ? path.join(copies, 'next') : null
  if (nextCopy) {
    fs.rmSync(nextCopy, { recursive: true, force: true })
    spawnSync('cp', ['-a', src, nextCopy])
  }
  const r = await runKilled(plan.args, delay)
  if (process.env.CRASH_DEBUG) process.stderr.write(`\n${n} ${plan.args.join(' ')}: ${r.killed ? `killed at ${Math.round(delay)} ms` : `exit ${r.code} in ${Math.round(r.ms)} ms`} ${r.err.trim().split('\n')[0] ?? ''}\n`)
  const s = stats.get(op)
  s.points++
  if (r.killed) s.killed++
  else {
    if (delay === null) s.measured++
    else s.finished++
    lastMs.set(op, r.ms)
    if (r.code !== 0 && !(op === 'forget' && /no generation|not found/.test(r.err))) failures.push(`point ${n} ${op}: exit ${r.code}: ${r.err.trim().split('\n')[0]}`)
  }
  if (nextCopy) {
    const after = listed().ids ?? []
    for (const id of after.filter((x) => !before.includes(x))) {
      fs.renameSync(nextCopy, path.join(copies, `gen${id}`))
      expected.set(id, 'live')
    }
  }
  check(`point ${n} (${op}${r.killed ? `, killed at ${Math.round(delay)} ms` : ''})`)
}

// ---- main --------------------------------------------------------------------------------
fs.rmSync(DIR, { recursive: true, force: true })
fs.mkdirSync(src, { recursive: true })
makeTree()
if (bfs(['init', '--format', '2']).code !== 0) throw new Error('bfs init failed')
for (let g = 0; g < 8; g++) {
  if (g) mutate()
  const b = bfs(['backup', src, '--json'])
  if (b.code !== 0) throw new Error(`backup failed: ${b.stderr}`)
  const id = JSON.parse(b.stdout.trim().split('\n').pop()).id
  expected.set(id, 'live')
  takeCopy(id)
}
// the start-up of a bfs process that touches no repository (median of 5): kills before it are no crash points
const startupMs = (() => {
  const t = []
  for (let i = 0; i < 5; i++) {
    const a = process.hrtime.bigint()
    spawnSync(BFS, ['version'])
    t.push(Number(process.hrtime.bigint() - a) / 1e6)
  }
  return t.sort((a, b) => a - b)[2]
})()
const t0 = Date.now()
for (let n = 0; n < POINTS; n++) {
  await point(n)
  if (failures.length) break
  process.stderr.write(`\rpoint ${n + 1}/${POINTS}, ${expected.size} generations, ${Math.round((Date.now() - t0) / 1000)} s`)
}
process.stderr.write('\n')
// the next run of each command finishes what a killed one left
if (!failures.length) {
  for (const op of ops.filter((o) => o === 'prune')) {
    const r = bfs(['prune', '--max-unused', '0'])
    if (r.code !== 0) failures.push(`final prune: exit ${r.code}: ${r.stderr.trim()}`)
  }
  check('final')
}
const rows = [...stats].map(([op, s]) => `| ${op} | ${s.points} | ${s.killed} | ${s.finished} | ${s.measured} | ${lastMs.has(op) ? Math.round(lastMs.get(op)) : '–'} |`)
const kills = [...stats.values()].reduce((a, s) => a + s.killed, 0)
const report = [
  `# kill -9 points over ${ops.join(', ')} (${new Date().toISOString().slice(0, 10)}, seed ${opt('seed', 1)})`,
  '',
  `bfs: ${BFS}; ${POINTS} points, ${kills} of them killed mid-run (after the ${Math.round(startupMs)} ms a bfs process takes to start); ${Math.round((Date.now() - t0) / 1000)} s.` + (missing.length ? ` Not in this bfs: ${missing.join(', ')}.` : ''),
  '',
  '| command | points | killed mid-run | finished before the kill | uninterrupted (measuring) | last run, ms |',
  '|---|---|---|---|---|---|',
  ...rows,
  '',
  failures.length ? `**${failures.length} failure(s)** (the run stops at the first point that fails):\n\n${failures.map((f) => `- ${f}`).join('\n')}` : '**0 lost or damaged generations**: after every point each listed generation equals its copy (verify --against), none committed and unforgotten is missing, and verify --all passes.',
  '',
].join('\n')
process.stdout.write(report)
const out = process.env.BENCH_OUT ?? path.join(here, 'results', `${new Date().toISOString().slice(0, 10)}-crash`)
fs.mkdirSync(path.dirname(out), { recursive: true })
fs.writeFileSync(`${out}.md`, report)
if (!process.env.BENCH_KEEP) fs.rmSync(DIR, { recursive: true, force: true })
process.exit(failures.length ? 1 : 0)
