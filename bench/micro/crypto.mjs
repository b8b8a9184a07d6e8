#!/usr/bin/env node
// Per-message cost of bfs's AEAD (src/crypto/aead.ts, format.md §2.22) on one core: seal and
// open of 4 KiB, 128 KiB and 1 MiB messages under AES-256-GCM and ChaCha20-Poly1305
// (node:crypto, the baseline; bfs's seal/open and sealInto/openInto: native/aead.c), next to what the same bytes cost without encryption on the same paths: zstd
// level 3 compression and decompression of a 1 MiB / 128 KiB frame of mixed text (the
// codec's), and the per-object key derivation (HKDF) a reader pays once per object opened.
//
//   node bench/micro/crypto.mjs [--runs 7] [--mib 64]      (after `make build`)
//
// Each figure is the median over --runs passes of --mib MiB worth of messages, as µs of the
// process's CPU (user + sys) per message, and the best pass's wall µs per message.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const load = (p) => import(pathToFileURL(path.join(ROOT, 'dist', p)).href)
const { seal, open, sealInto, openInto, newSalt, nonceOf } = await load('crypto/aead.js')
const { deriveRepoKeys, objectKey } = await load('crypto/keys.js')
const zstd = await load('codec/zstd.js')

const opt = { runs: 7, mib: 64 }
for (let i = 2; i < process.argv.length; i += 2) opt[process.argv[i].replace(/^--/, '')] = Number(process.argv[i + 1])

// compressible, text-like data (a mix of words and random bytes: zstd level 3 reaches ~2-3x)
const words = 'the quick brown fox jumps over a lazy dog while bfs stores blocks in frames '.split(' ')
function mixed(n) {
  const b = Buffer.alloc(n)
  let o = 0
  const r = randomBytes(n)
  for (let i = 0; o < n; i++) {
    if (r[i % n] < 40) { b[o++] = r[(i * 7) % n] } else { const w = words[r[(i * 3) % n] % words.length] + ' '; o += b.write(w, o, 'latin1') }
  }
  return b
}

const aad = Buffer.from('frame/7/0/3/1048576')
function measure(name, perPass, fn) {
  fn() // warm up
  const cpu = []
  const wall = []
  for (let r = 0; r < opt.runs; r++) {
    const c0 = process.cpuUsage()
    const t0 = process.hrtime.bigint()
    fn()
    wall.push(Number(process.hrtime.bigint() - t0) / 1e3 / perPass)
    const c = process.cpuUsage(c0)
    cpu.push((c.user + c.system) / perPass)
  }
  cpu.sort((a, b) => a - b)
  wall.sort((a, b) => a - b)
  console.log(`${name.padEnd(44)} ${cpu[cpu.length >> 1].toFixed(2).padStart(9)} µs CPU/msg   (best wall ${wall[0].toFixed(2)} µs)`)
  return cpu[cpu.length >> 1]
}

const total = opt.mib * 1024 * 1024
console.log(`node ${process.version}, OpenSSL ${process.versions.openssl} · ${opt.mib} MiB per pass × ${opt.runs} passes, median, one core`)
for (const aead of ['aes-256-gcm', 'chacha20-poly1305']) {
  const keys = deriveRepoKeys(randomBytes(64), randomBytes(16).toString('hex'), aead)
  const k = objectKey(keys, newSalt(), 'unit')
  for (const size of [4096, 128 * 1024, 1 << 20]) {
    const n = Math.max(64, total / size)
    const msg = randomBytes(size)
    const sealed = seal(k, 1, 3, aad, msg)
    const label = `${aead} ${size >= 1 << 20 ? '1 MiB' : size / 1024 + ' KiB'}`
    // node:crypto, as src/crypto/aead.ts did until 2026-12-04 (the baseline of the native rows)
    const nonce = nonceOf(1, 3)
    const opts = { authTagLength: 16 }
    measure(`seal, node:crypto ${label}`, n, () => {
      for (let i = 0; i < n; i++) {
        const c = createCipheriv(aead, k.key, nonce, opts)
        c.setAAD(aad, { plaintextLength: size })
        Buffer.concat([c.update(msg), c.final(), c.getAuthTag()])
      }
    })
    measure(`open, node:crypto ${label}`, n, () => {
      for (let i = 0; i < n; i++) {
        const d = createDecipheriv(aead, k.key, nonce, opts)
        d.setAAD(aad, { plaintextLength: size })
        d.setAuthTag(sealed.subarray(size))
        d.update(sealed.subarray(0, size))
        d.final()
      }
    })
    // bfs's: native/aead.c, seal/open into a new buffer, sealInto/openInto into a reused one
    // (the frame paths: repo/worker.ts, blocks/frames.ts)
    measure(`seal (native) ${label}`, n, () => { for (let i = 0; i < n; i++) seal(k, 1, i, aad, msg) })
    measure(`open (native) ${label}`, n, () => { for (let i = 0; i < n; i++) open(k, 1, 3, aad, sealed, 'x') })
    const out = Buffer.allocUnsafe(size + 16)
    measure(`sealInto (native) ${label}`, n, () => { for (let i = 0; i < n; i++) sealInto(k, 1, i, aad, msg, out, 0) })
    measure(`openInto (native) ${label}`, n, () => { for (let i = 0; i < n; i++) openInto(k, 1, 3, aad, sealed, out, 'x') })
  }
}
{
  const keys = deriveRepoKeys(randomBytes(64), randomBytes(16).toString('hex'), 'aes-256-gcm')
  const salt = newSalt()
  measure('objectKey (HKDF-SHA256, once per object)', 20000, () => { for (let i = 0; i < 20000; i++) objectKey(keys, salt, 'unit') })
}
for (const size of [128 * 1024, 1 << 20]) {
  const raw = mixed(size)
  const frame = zstd.compressBuffer(raw, 3)
  const n = Math.max(16, total / size)
  const label = `${size >= 1 << 20 ? '1 MiB' : size / 1024 + ' KiB'} (→ ${(frame.length / 1024).toFixed(0)} KiB)`
  measure(`zstd -3 compress ${label}`, n, () => { for (let i = 0; i < n; i++) zstd.compressBuffer(raw, 3) })
  measure(`zstd decompress ${label}`, n, () => { for (let i = 0; i < n; i++) zstd.decompressBuffer(frame, size) })
}
