#!/usr/bin/env node
// node pread.mjs FILE [COUNT=2000] [SEED=1]
// node pread.mjs --list LIST ROOT [COUNT=2000] [SEED=1]
// COUNT preads of 4 KiB at random 4 KiB-aligned offsets (fixed seed, so a second run
// reads the same offsets: "warm"). Each pread is timed alone. Prints JSON (µs).
// With --list: each pread picks a file at random from LIST (paths relative to ROOT, one a
// line, each of 4 KiB or more), then a random 4 KiB-aligned block of it (the tree corpus:
// small-file reads). A file is opened (untimed) the first time it is picked; only the
// pread is timed, as for one big file.
import fs from 'node:fs'
import path from 'node:path'

const args = process.argv.slice(2)
let files, root
if (args[0] === '--list') {
  if (args.length < 3) { console.error('usage: pread.mjs --list LIST ROOT [COUNT] [SEED]'); process.exit(64) }
  files = fs.readFileSync(args[1], 'utf8').split('\n').filter(Boolean)
  root = args[2]
  args.splice(0, 3)
  if (!files.length) { console.error(`pread.mjs: ${process.argv[3]}: no files`); process.exit(64) }
} else {
  if (!args[0]) { console.error('usage: pread.mjs FILE [COUNT] [SEED]'); process.exit(64) }
  files = [args.shift()]
  root = ''
}
const [countArg = '2000', seedArg = '1'] = args
const BLOCK = 4096
let a = Number(seedArg) >>> 0
const rnd = () => { // mulberry32
  a = (a + 0x6d2b79f5) >>> 0
  let t = a
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const open = new Map() // index -> [fd, nblocks]
const fdOf = (i) => {
  let o = open.get(i)
  if (!o) {
    const fd = fs.openSync(root ? path.join(root, files[i]) : files[i], 'r')
    o = [fd, Math.floor(fs.fstatSync(fd).size / BLOCK)]
    if (o[1] < 1) { console.error(`${files[i]}: smaller than ${BLOCK} bytes`); process.exit(1) }
    open.set(i, o)
  }
  return o
}
const count = Number(countArg)
const buf = Buffer.alloc(BLOCK)
const us = new Array(count)
let bytes = 0
for (let i = 0; i < count; i++) {
  const [fd, nblocks] = fdOf(files.length === 1 ? 0 : Math.floor(rnd() * files.length))
  const off = Math.floor(rnd() * nblocks) * BLOCK
  const t0 = process.hrtime.bigint()
  const n = fs.readSync(fd, buf, 0, BLOCK, off)
  const t1 = process.hrtime.bigint()
  if (n !== BLOCK) { console.error(`short read at ${off}: ${n}`); process.exit(1) }
  bytes += n
  us[i] = Number(t1 - t0) / 1000
}
for (const [fd] of open.values()) fs.closeSync(fd)
us.sort((x, y) => x - y)
const pct = (p) => us[Math.min(count - 1, Math.ceil((p / 100) * count) - 1)]
const r2 = (x) => Math.round(x * 10) / 10
console.log(JSON.stringify({ n: count, files: open.size, median_us: r2(pct(50)), p99_us: r2(pct(99)), min_us: r2(us[0]), max_us: r2(us[count - 1]), mean_us: r2(us.reduce((s, x) => s + x, 0) / count) }))
