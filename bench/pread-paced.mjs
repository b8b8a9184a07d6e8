#!/usr/bin/env node
// node pread-paced.mjs FILE --seconds S [--interval-ms 5] [--seed 1] [--until-file F]
// A steady reader: a 4 KiB pread at a random 4 KiB-aligned offset every INTERVAL ms (a
// fresh offset each time, so most reads miss the kernel's page cache of the file and reach
// the filesystem), each timed alone, for S seconds — or, with --until-file, until F exists
// (at least S seconds). Prints JSON (µs): n, median, p90, p99, p99.9, max, and how many
// reads took over 1 ms.
import fs from 'node:fs'

const args = process.argv.slice(2)
const file = args[0]
const opt = (name, dflt) => {
  const i = args.indexOf(name)
  return i < 0 ? dflt : args[i + 1]
}
if (!file) {
  console.error('usage: pread-paced.mjs FILE --seconds S [--interval-ms 5] [--seed 1] [--until-file F]')
  process.exit(64)
}
const seconds = Number(opt('--seconds', '10'))
const intervalMs = Number(opt('--interval-ms', '5'))
const untilFile = opt('--until-file', null)
let a = Number(opt('--seed', '1')) >>> 0
const rnd = () => {
  // mulberry32
  a = (a + 0x6d2b79f5) >>> 0
  let t = a
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const BLOCK = 4096
const fd = fs.openSync(file, 'r')
const nblocks = Math.floor(fs.fstatSync(fd).size / BLOCK)
const buf = Buffer.alloc(BLOCK)
const us = []
const sleeper = new Int32Array(new SharedArrayBuffer(4))
const start = Date.now()
for (;;) {
  const elapsed = (Date.now() - start) / 1000
  if (elapsed >= seconds && (!untilFile || fs.existsSync(untilFile))) break
  const off = Math.floor(rnd() * nblocks) * BLOCK
  const t0 = process.hrtime.bigint()
  const n = fs.readSync(fd, buf, 0, BLOCK, off)
  const t1 = process.hrtime.bigint()
  if (n !== BLOCK) {
    console.error(`short read at ${off}: ${n}`)
    process.exit(1)
  }
  us.push(Number(t1 - t0) / 1000)
  Atomics.wait(sleeper, 0, 0, intervalMs)
}
fs.closeSync(fd)
us.sort((x, y) => x - y)
const pct = (p) => us[Math.min(us.length - 1, Math.max(0, Math.ceil((p / 100) * us.length) - 1))]
const r1 = (x) => Math.round(x * 10) / 10
console.log(
  JSON.stringify({
    n: us.length,
    seconds: r1((Date.now() - start) / 1000),
    median_us: r1(pct(50)),
    p90_us: r1(pct(90)),
    p99_us: r1(pct(99)),
    p999_us: r1(pct(99.9)),
    max_us: r1(us[us.length - 1]),
    over_1ms: us.filter((x) => x > 1000).length,
  }),
)
