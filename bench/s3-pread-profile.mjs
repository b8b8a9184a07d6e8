// node bench/s3-pread-profile.mjs S3REPO FILE MNT [ROUNDS=4]  (issue 18: where a cold S3 pread's time goes)
// A mount that opens every unit of FILE lends its index records (as bench/s3-read.mjs's second
// phase); then ROUNDS fresh mounts with only those records, BFS_S3_LOG set, one 4 KiB pread per
// unit in a random order, each matched to the unit GET sent during it: pre (pread start → GET
// sent), get (the SDK's send to the answer's headers), post (headers → the pread's answer: body,
// decode, the FUSE reply). Prints the medians, then one JSON line per pread (ms).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
const BFS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'bfs')
const [repo, file, mnt, rounds = '4'] = process.argv.slice(2)
if (!mnt) { console.error('usage: s3-pread-profile.mjs S3REPO FILE MNT [ROUNDS]'); process.exit(64) }
const UNIT = 5120 * 4096
const now = () => performance.timeOrigin + performance.now()
const bfs = (args, env = {}) => execFileSync(BFS, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] }).toString()
const template = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-prof-t-'))
// a mount that opens every unit: its index records
bfs(['--repo', repo, '--cache-dir', template, 'mount', 'latest', mnt])
{
  const f = path.join(mnt, file); const size = fs.statSync(f).size; const fd = fs.openSync(f, 'r'); const b = Buffer.alloc(4096)
  for (let u = 0; u * UNIT < size; u++) fs.readSync(fd, b, 0, 4096, u * UNIT)
  fs.closeSync(fd)
  await new Promise((r) => setTimeout(r, 500))
}
bfs(['umount', mnt])
const rows = []
for (let r = 0; r < Number(rounds); r++) {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-prof-'))
  for (const d of fs.readdirSync(template)) {
    const from = path.join(template, d, 'indexes')
    if (fs.existsSync(from)) fs.cpSync(from, path.join(cache, d, 'indexes'), { recursive: true })
  }
  const log = path.join(cache, 's3.log')
  bfs(['--repo', repo, '--cache-dir', cache, 'mount', 'latest', mnt], { BFS_S3_LOG: log })
  const preads = []
  try {
    const f = path.join(mnt, file); const size = fs.statSync(f).size; const n = Math.ceil(size / UNIT)
    const order = [...Array(n).keys()].sort(() => Math.random() - 0.5)
    const fd = fs.openSync(f, 'r'); const buf = Buffer.alloc(4096)
    for (const u of order) {
      const span = Math.min(UNIT, size - u * UNIT) - 4096
      const off = u * UNIT + Math.floor(Math.random() * Math.max(1, span / 4096)) * 4096
      const t0 = now(); fs.readSync(fd, buf, 0, 4096, off); const t1 = now()
      preads.push({ u, t0, t1 })
    }
    fs.closeSync(fd)
  } finally { bfs(['umount', mnt]) }
  const lines = fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => {
    const m = /^(\S+) (\S+)(?: bytes=(\d+)-(\d+))? t=([\d.]+) ms=([\d.]+)/.exec(l)
    return m && { cmd: m[1], key: m[2], a: Number(m[3]), b: Number(m[4]), t: Number(m[5]), ms: Number(m[6]) }
  }).filter(Boolean)
  for (const p of preads) {
    const gets = lines.filter((l) => l.cmd === 'GetObject' && /unit-/.test(l.key) && l.t >= p.t0 && l.t <= p.t1)
    const g = gets[0]
    if (!g) { rows.push({ total: p.t1 - p.t0, gets: 0 }); continue }
    rows.push({ total: p.t1 - p.t0, gets: gets.length, bytes: g.b - g.a + 1, pre: g.t - p.t0, get: g.ms, post: p.t1 - (g.t + g.ms) })
  }
  fs.rmSync(cache, { recursive: true, force: true })
}
fs.rmSync(template, { recursive: true, force: true })
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)] }
const ok = rows.filter((r) => r.gets === 1)
console.log(JSON.stringify({ repo, n: rows.length, oneGet: ok.length, load1: os.loadavg()[0].toFixed(1),
  median_ms: { total: med(rows.map((r) => r.total)).toFixed(2), pre: med(ok.map((r) => r.pre)).toFixed(2), get_headers: med(ok.map((r) => r.get)).toFixed(2), post: med(ok.map((r) => r.post)).toFixed(2), bytes: med(ok.map((r) => r.bytes)) } }))
for (const r of rows) console.log(JSON.stringify(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'number' && !Number.isInteger(v) ? +v.toFixed(2) : v]))))
