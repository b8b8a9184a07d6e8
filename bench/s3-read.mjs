#!/usr/bin/env node
// node bench/s3-read.mjs S3REPO LOCALREPO FILE MNT [ROUNDS=6]  (issue 18 item 2, the read cache)
// FILE: a path in the latest generation of both repositories (the same source).
//  1. RGW's own latency: 200 ranged GETs of 128 KiB (and of 4 KiB) at random offsets of the
//     generation's units, one at a time, through bfs's S3 client (S3Store.getRange);
//  2. cold: ROUNDS × (empty cache directory, fresh mount, one 4 KiB pread per unit of FILE in a
//     random order: each the first touch of its unit — open + frame), back to back, or GAP_MS
//     (environment) apart; the first pread of each mount (which waits for the opens of all
//     the file's units) is also reported apart. Twice: with an empty cache (a host that never
//     read the repository), then with only the unit index records kept (CACHE/indexes, copied
//     from a cache where a mount opened the file's units: this host read the generation before,
//     or its unit data was evicted since) — every unit's data still fetched;
//  3. warm: the cache filled (FILE read whole through a mount), a fresh mount, bench/pread.mjs
//     (2,000 random 4 KiB preads) — against the same through a mount of LOCALREPO.
// BFS_BUILD=DIR: the bfs build to measure (default: this checkout), e.g. another worktree.
// The frame size measured is the generation's (the backup's --frame-blocks). SOURCE=DIR makes
// the two repositories first (they must not exist): `bfs init`, then `bfs backup SOURCE`, with
// `--frame-blocks $FRAME_BLOCKS` if set (32: 128 KiB frames, as volumes have); FILE is then a
// path under SOURCE. The caller removes them.
// Prints JSON lines (µs). Needs AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; BFS_S3_SPOOL as for bfs.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = process.env.BFS_BUILD ? path.resolve(process.env.BFS_BUILD) : path.join(here, '..')
const BFS = path.join(root, 'bin', 'bfs')
const { S3Store } = await import(path.join(root, 'dist', 'store', 's3.js'))
const [repo, local, file, mnt, roundsArg = '6'] = process.argv.slice(2)
if (!mnt) { console.error('usage: s3-read.mjs S3REPO LOCALREPO FILE MNT [ROUNDS]'); process.exit(64) }
const UNIT = 5120 * 4096
const stats = (us) => {
  us.sort((a, b) => a - b)
  const pct = (p) => us[Math.min(us.length - 1, Math.ceil((p / 100) * us.length) - 1)]
  return { n: us.length, median_us: Math.round(pct(50)), p99_us: Math.round(pct(99)), max_us: Math.round(us[us.length - 1]) }
}
const bfs = (args, env = {}) => execFileSync(BFS, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] }).toString()
const load = () => os.loadavg()[0].toFixed(1)

// 0. (SOURCE=DIR) the two repositories, backed up with FRAME_BLOCKS blocks per frame
if (process.env.SOURCE) {
  const fb = process.env.FRAME_BLOCKS ? ['--frame-blocks', process.env.FRAME_BLOCKS] : []
  for (const r of [repo, local]) {
    const t0 = process.hrtime.bigint()
    bfs(['--repo', r, 'init'])
    bfs(['--repo', r, 'backup', ...fb, path.resolve(process.env.SOURCE)])
    console.log(JSON.stringify({ what: `backup of ${process.env.SOURCE} to ${r}`, frame_blocks: Number(process.env.FRAME_BLOCKS) || 'default', load1: load(), seconds: Number(process.hrtime.bigint() - t0) / 1e9 }))
  }
}

// 1. RGW's own ranged GETs
const s3 = S3Store.fromUrl(repo)
const gens = (await s3.list('gens')).sort()
const units = (await s3.list(gens[gens.length - 1])).filter((k) => /unit-/.test(k))
const sizes = await Promise.all(units.map(async (k) => (await s3.stat(k)).sizeBytes))
for (const len of [128 << 10, 4096]) {
  const us = []
  for (let i = 0; i < 200; i++) {
    const u = Math.floor(Math.random() * units.length)
    const off = Math.floor(Math.random() * (sizes[u] - len))
    const t0 = process.hrtime.bigint()
    await s3.getRange(units[u], { offset: off, length: len })
    us.push(Number(process.hrtime.bigint() - t0) / 1000)
  }
  console.log(JSON.stringify({ what: `RGW ranged GET ${len >> 10} KiB`, load1: load(), ...stats(us) }))
}

// 2. cold: the first 4 KiB pread of each unit of FILE, on a fresh mount with an empty cache
// (or holding only the index records of `indexesFrom`)
const gapMs = Number(process.env.GAP_MS || 0)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
let cache = ''
/** ROUNDS fresh mounts, each reading one 4 KiB block of every unit of FILE in a random order. */
async function coldRounds(indexesFrom) {
  const cold = []
  const first = []
  for (let r = 0; r < Number(roundsArg); r++) {
    cache = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-s3read-'))
    if (indexesFrom) {
      for (const d of fs.readdirSync(indexesFrom)) {
        const from = path.join(indexesFrom, d, 'indexes')
        if (fs.existsSync(from)) fs.cpSync(from, path.join(cache, d, 'indexes'), { recursive: true })
      }
    }
    bfs(['--repo', repo, '--cache-dir', cache, 'mount', 'latest', mnt])
    try {
      const f = path.join(mnt, file)
      const size = fs.statSync(f).size
      const n = Math.ceil(size / UNIT)
      const order = [...Array(n).keys()].sort(() => Math.random() - 0.5)
      const fd = fs.openSync(f, 'r')
      const buf = Buffer.alloc(4096)
      for (const u of order) {
        const span = Math.min(UNIT, size - u * UNIT) - 4096
        const off = u * UNIT + Math.floor(Math.random() * Math.max(1, span / 4096)) * 4096
        const t0 = process.hrtime.bigint()
        fs.readSync(fd, buf, 0, 4096, off)
        const us = Number(process.hrtime.bigint() - t0) / 1000
        cold.push(us)
        if (u === order[0]) first.push(us)
        if (gapMs) await sleep(gapMs)
      }
      fs.closeSync(fd)
      // (a mount that kept index records has written them by now: the next round copies them)
      if (!indexesFrom && r + 1 === Number(roundsArg)) await sleep(300)
    } finally {
      bfs(['umount', mnt])
    }
    if (r + 1 < Number(roundsArg)) fs.rmSync(cache, { recursive: true, force: true })
  }
  const how = `${indexesFrom ? 'only the unit index records kept' : 'empty cache'}, ${gapMs ? gapMs + ' ms apart' : 'back to back'}`
  console.log(JSON.stringify({ what: `cold 4 KiB pread through a mount on RGW (first touch of each unit, ${how})`, load1: load(), ...stats(cold) }))
  console.log(JSON.stringify({ what: `the same, the first pread of each mount (${how})`, load1: load(), ...stats(first) }))
}
await coldRounds(null)
// the last round's cache (its mount opened every unit of FILE) lends its index records
const template = cache
cache = ''
await coldRounds(template)
fs.rmSync(template, { recursive: true, force: true })

// 3. warm: the cache filled, then pread.mjs through a fresh mount; the same on the local repository
execFileSync(BFS, ['--repo', repo, '--cache-dir', cache, 'cat', `latest:/${file}`], { stdio: ['ignore', 'ignore', 'inherit'] })
for (const [what, args] of [['warm (S3, cache filled)', ['--repo', repo, '--cache-dir', cache]], ['local repository', ['--repo', local]]]) {
  bfs([...args, 'mount', 'latest', mnt])
  try {
    const out = execFileSync(process.execPath, [path.join(here, 'pread.mjs'), path.join(mnt, file), '2000', '1']).toString()
    console.log(JSON.stringify({ what: `4 KiB pread through a mount: ${what}`, load1: load(), ...JSON.parse(out) }))
  } finally {
    bfs(['umount', mnt])
  }
}
fs.rmSync(cache, { recursive: true, force: true })
s3.close()
