#!/usr/bin/env node
// The `many` corpus (issue 15): NDIRS directories d0000… of NFILES files file-00000.txt…
// of 0–200 bytes each, random bytes from a fixed seed (mulberry32), every mtime/atime
// fixed: the same tree every time.  Same seed for every size, so the 100k corpus is the
// first 100 directories of the 1M one.
//   node many-corpus.mjs DIR NDIRS NFILES [SEED]   builds DIR (which must not exist)
import fs from 'node:fs'
import path from 'node:path'

const [dir, nd, nf, seedArg = '15'] = process.argv.slice(2)
if (!dir || !nd || !nf) { console.error('usage: many-corpus.mjs DIR NDIRS NFILES [SEED]'); process.exit(64) }
const NDIRS = Number(nd), NFILES = Number(nf), T = 1700000000

let a = Number(seedArg) >>> 0
const next = () => { // mulberry32: a 32-bit word
  a = (a + 0x6d2b79f5) >>> 0
  let t = a
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return (t ^ (t >>> 14)) >>> 0
}
const buf = Buffer.alloc(204)
fs.mkdirSync(dir)
let bytes = 0
for (let d = 0; d < NDIRS; d++) {
  const dp = path.join(dir, `d${String(d).padStart(4, '0')}`)
  fs.mkdirSync(dp)
  for (let f = 0; f < NFILES; f++) {
    const size = next() % 201
    for (let i = 0; i < size; i += 4) buf.writeUInt32LE(next(), i)
    const fp = path.join(dp, `file-${String(f).padStart(5, '0')}.txt`)
    fs.writeFileSync(fp, buf.subarray(0, size))
    fs.utimesSync(fp, T, T)
    bytes += size
  }
  fs.utimesSync(dp, T, T)
}
fs.utimesSync(dir, T, T)
console.log(JSON.stringify({ dirs: NDIRS, files: NDIRS * NFILES, bytes }))
