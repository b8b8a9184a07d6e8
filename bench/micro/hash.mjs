#!/usr/bin/env node
// Hash throughput on one core: BLAKE3 (the addon's, plain and keyed; one-shot and incremental)
// against node:crypto SHA-256 (SHA-NI here) and the addon's XXH64, in the same run.
//
//   node bench/micro/hash.mjs [--mib 256] [--runs 7]      (after `make build`)
//
// Each figure is the median of --runs passes over --mib MiB of random data, hashed in pieces
// of the given size (1 MiB = a file frame, 64 KiB = a large metadata piece, 4 KiB = a block).
// Prints GB/s (10^9 bytes per second) of input per second of the process's CPU time (user +
// sys: steadier than wall time on a shared, loaded machine, where a pass can wait for a
// core) and, for comparison, the best pass by wall time. Single-threaded: the addon's calls
// and node:crypto's one-shot digests run on the calling thread.
import { createHash, randomBytes } from 'node:crypto'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const native = await import(pathToFileURL(path.join(ROOT, 'dist/native/index.js')).href)

const opt = { mib: 256, runs: 7 }
for (let i = 2; i < process.argv.length; i += 2) opt[process.argv[i].replace(/^--/, '')] = Number(process.argv[i + 1])
const total = opt.mib * 1024 * 1024
const data = randomBytes(total)
const key = randomBytes(32)
const out = Buffer.alloc(32)

const cases = {
  'blake3 1 MiB': (n) => { for (let o = 0; o < total; o += n) native.blake3Into(data, o, n, null, out, 0, 32) },
  'blake3 keyed 1 MiB': (n) => { for (let o = 0; o < total; o += n) native.blake3Into(data, o, n, key, out, 0, 32) },
  'blake3 incremental 1 MiB updates': (n) => { const h = new native.Blake3Hasher(key); for (let o = 0; o < total; o += n) h.update(data, o, n); h.digestInto(out, 0) },
  'blake3 keyed 64 KiB': (n) => { for (let o = 0; o < total; o += n) native.blake3Into(data, o, n, key, out, 0, 32) },
  'blake3 keyed 4 KiB': (n) => { for (let o = 0; o < total; o += n) native.blake3Into(data, o, n, key, out, 0, 32) },
  'sha256 (node:crypto) 1 MiB': (n) => { for (let o = 0; o < total; o += n) createHash('sha256').update(data.subarray(o, o + n)).digest() },
  'sha256 (node:crypto) 4 KiB': (n) => { for (let o = 0; o < total; o += n) createHash('sha256').update(data.subarray(o, o + n)).digest() },
  'xxh64 blocks (addon) 1 MiB': (n) => { const h = Buffer.alloc((n / 4096) * 8); for (let o = 0; o < total; o += n) native.hashBlocks(data, o, n / 4096, h, 0) },
}
const piece = (name) => (name.includes('64 KiB') ? 65536 : name.includes('4 KiB') ? 4096 : 1 << 20)

console.log(`BLAKE3 ${native.blake3Version()} · ${opt.mib} MiB × ${opt.runs} runs, median, one core`)
for (const [name, fn] of Object.entries(cases)) {
  const n = piece(name)
  fn(n) // warm up
  const cpu = []
  const wall = []
  for (let r = 0; r < opt.runs; r++) {
    const c0 = process.cpuUsage()
    const t0 = process.hrtime.bigint()
    fn(n)
    wall.push(Number(process.hrtime.bigint() - t0) / 1e9)
    const c = process.cpuUsage(c0)
    cpu.push((c.user + c.system) / 1e6)
  }
  cpu.sort((a, b) => a - b)
  wall.sort((a, b) => a - b)
  const gbs = (s) => (total / s / 1e9).toFixed(2)
  console.log(`${name.padEnd(36)} ${gbs(cpu[cpu.length >> 1])} GB/s per CPU second   (best wall ${gbs(wall[0])} GB/s)`)
}
