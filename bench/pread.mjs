#!/usr/bin/env node
// node pread.mjs FILE [COUNT=2000] [SEED=1]
// COUNT preads of 4 KiB at random 4 KiB-aligned offsets (fixed seed, so a second run
// reads the same offsets: "warm"). Each pread is timed alone. Prints JSON (µs).
import fs from 'node:fs'

const [file, countArg = '2000', seedArg = '1'] = process.argv.slice(2)
if (!file) { console.error('usage: pread.mjs FILE [COUNT] [SEED]'); process.exit(64) }
const BLOCK = 4096
let a = Number(seedArg) >>> 0
const rnd = () => { // mulberry32
  a = (a + 0x6d2b79f5) >>> 0
  let t = a
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const fd = fs.openSync(file, 'r')
const nblocks = Math.floor(fs.fstatSync(fd).size / BLOCK)
const count = Number(countArg)
const buf = Buffer.alloc(BLOCK)
const us = new Array(count)
let bytes = 0
for (let i = 0; i < count; i++) {
  const off = Math.floor(rnd() * nblocks) * BLOCK
  const t0 = process.hrtime.bigint()
  const n = fs.readSync(fd, buf, 0, BLOCK, off)
  const t1 = process.hrtime.bigint()
  if (n !== BLOCK) { console.error(`short read at ${off}: ${n}`); process.exit(1) }
  bytes += n
  us[i] = Number(t1 - t0) / 1000
}
fs.closeSync(fd)
us.sort((x, y) => x - y)
const pct = (p) => us[Math.min(count - 1, Math.ceil((p / 100) * count) - 1)]
const r2 = (x) => Math.round(x * 10) / 10
console.log(JSON.stringify({ n: count, median_us: r2(pct(50)), p99_us: r2(pct(99)), min_us: r2(us[0]), max_us: r2(us[count - 1]), mean_us: r2(us.reduce((s, x) => s + x, 0) / count) }))
