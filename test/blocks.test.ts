import fs from 'node:fs'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BlockReader, type OpenFile, type Piece } from '../src/blocks/reader.js'
import { Kind, overlayClaims, type Claimer, type ObjectRef, type ReadExtent } from '../src/blocks/extents.js'
import { NATIVE_DEFERRED, type NativeSink } from '../src/blocks/native.js'
import { readerFromSpec, specGeometry, type ReaderSpec } from '../src/blocks/spec.js'
import { BLOCK_BYTES, hashBlocks, HASH_BYTES } from '../src/codec/hash.js'
import { FormatError } from '../src/format/errors.js'
import { keys } from '../src/format/layout.js'
import type { Extent } from '../src/format/maps.js'
import { Repository } from '../src/repo/repository.js'
import { repoStreamSource } from '../src/repo/stream-source.js'
import { DiskStore } from '../src/store/disk.js'
import { FaultyStore } from '../src/store/faulty.js'
import { MemStore } from '../src/store/mem.js'
import { StoreError, type FaultRule, type Store } from '../src/store/store.js'
import { GenView } from '../src/vfs/tree.js'
import { bfs, newRepoF, ROOT, sh, tmpdir } from './helpers.js'

// Small units and frames (16 and 4 blocks: 64 KiB and 16 KiB) so reads cross both.
const GEOMETRY = ['--unit-blocks', '16', '--frame-blocks', '4']
const FILES = ['big.bin', 'text.txt', 'sparse.img', 'small', 'empty', 'new.bin']

let work: string
let src: string
let repoDir: string
let repo: Repository
/** What each file held when generation N was made: gen → name → bytes (absent: no such file). */
const truth = new Map<number, Map<string, Buffer>>()
let gens: number[] = []

function prng(seed: number): (n: number) => number {
  let s = seed >>> 0
  return (n: number) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return (s >>> 8) % n // the low bits of an LCG repeat with a short period
  }
}
function randomBuf(n: number, seed: number): Buffer {
  const r = prng(seed)
  const b = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) b[i] = r(256)
  return b
}

async function backup(): Promise<void> {
  const r = await bfs(['backup', src, ...GEOMETRY], { repo: repoDir })
  if (r.code !== 0) throw new Error(`bfs backup: ${r.stderr}`)
  const id = gens.length + 1
  gens.push(id)
  const m = new Map<string, Buffer>()
  for (const f of FILES) if (fs.existsSync(path.join(src, f))) m.set(f, fs.readFileSync(path.join(src, f)))
  truth.set(id, m)
}

const must = async (cmd: string): Promise<void> => {
  const r = await sh(cmd)
  if (r.code !== 0) throw new Error(`${cmd}: ${r.stderr}`)
}

/** Overwrites `data` at `pos` in place (same size, new mtime): a block-level incremental. */
function patch(name: string, pos: number, data: Buffer): void {
  const fd = fs.openSync(path.join(src, name), 'r+')
  fs.writeSync(fd, data, 0, data.length, pos)
  fs.closeSync(fd)
  const t = new Date(Date.now() + gens.length * 10_000)
  fs.utimesSync(path.join(src, name), t, t)
}

beforeAll(async () => {
  work = tmpdir('bfs-blocks-')
  src = path.join(work, 'src')
  fs.mkdirSync(src)
  // format 1: the test reads format 1's block maps (Repository, GenView)
  repoDir = await newRepoF(1, path.join(work, 'repo'))
  fs.writeFileSync(path.join(src, 'big.bin'), randomBuf(1 << 20, 1)) // 256 blocks: 16 units, 64 frames
  fs.writeFileSync(path.join(src, 'text.txt'), Array.from({ length: 9000 }, (_, i) => `line ${i} of a compressible file\n`).join(''))
  await must(`truncate -s 8M '${src}/sparse.img'`)
  patch('sparse.img', 12_345, randomBuf(70_000, 2))
  patch('sparse.img', 6 << 20, randomBuf(4096, 3))
  fs.writeFileSync(path.join(src, 'small'), 'a hundred bytes or so'.repeat(5))
  fs.writeFileSync(path.join(src, 'empty'), '')
  await backup() // gen1: full
  patch('big.bin', 3 * 4096 + 17, randomBuf(100, 4))
  patch('big.bin', 100 * 4096, randomBuf(8192, 5))
  fs.appendFileSync(path.join(src, 'text.txt'), 'appended\n'.repeat(600))
  patch('sparse.img', 5 << 20, randomBuf(20_000, 6))
  await backup() // gen2: block-level deltas
  fs.truncateSync(path.join(src, 'big.bin'), 700 * 1024 + 123)
  await must(`fallocate --punch-hole --offset ${6 << 20} --length 4096 '${src}/sparse.img'`)
  fs.writeFileSync(path.join(src, 'new.bin'), randomBuf(200_000, 7))
  await backup() // gen3: a shrink, a punched hole, a new file
  await backup() // gen4: nothing changed
  fs.writeFileSync(path.join(src, 'text.txt'), 'rewritten\n'.repeat(3000))
  patch('sparse.img', 8 * 4096, randomBuf(4096, 8))
  patch('new.bin', 199_990, randomBuf(10, 9))
  await backup() // gen5
  repo = Repository.open(repoDir)
}, 600_000)
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

/** A generation's object for a file: extents, size, object ref. */
function objectOf(gen: number, name: string): { extents: Extent[]; size: number; ref: ObjectRef | undefined } {
  const v = new GenView(repo, repo.manifest(gen))
  const i = v.lookup(Buffer.from(`/${name}`))
  if (i < 0) throw new Error(`gen${gen} has no ${name}`)
  const d = v.entry(v.leader(i))
  return { extents: v.extents(i), size: d.size, ref: d.objGen ? { gen: d.objGen, index: d.objIndex } : undefined }
}

function reader(opts: { store?: Store; cacheBytes?: number; maxOpenUnits?: number; readaheadFrames?: number; claimers?: Claimer[]; fullCheck?: boolean } = {}): BlockReader {
  return new BlockReader({ store: opts.store ?? DiskStore.open(repoDir), source: repoStreamSource(repo), hashAlg: repo.config.hashAlg, blockSeed: 0n, ...opts })
}

function open(r: BlockReader, gen: number, name: string): OpenFile {
  const o = objectOf(gen, name)
  return r.file(o.extents, o.size, o.ref)
}

/** [pos, len) pairs: the whole file, edges, and random ranges crossing frames and units. */
function ranges(size: number, seed: number, n = 60): Array<[number, number]> {
  const r = prng(seed)
  const out: Array<[number, number]> = [[0, size + 10], [0, 1], [Math.max(0, size - 1), 5], [size, 10], [size + 100, 10]]
  for (let k = 0; k < n; k++) out.push([r(size + 1), 1 + r(200_000)])
  for (const b of [4096, 16384, 65536]) if (size > b) out.push([b - 3, 7])
  return out
}

async function unitKeys(gen: number): Promise<string[]> {
  return repo.manifest(gen).units.map((u) => keys.unit(gen, u.index))
}

describe('BlockReader over real repositories (16-block units, 4-block frames, 5 generations)', () => {
  it('the repository has what the tests need: many units, deltas, holes', () => {
    expect(gens).toEqual([1, 2, 3, 4, 5])
    expect(repo.manifest(1).units.length).toBeGreaterThan(10)
    const big2 = objectOf(2, 'big.bin').extents
    expect(new Set(big2.map((e) => e.gen))).toEqual(new Set([1, 2])) // block-level incremental
    const sparse = objectOf(3, 'sparse.img')
    expect(sparse.extents.reduce((a, e) => a + e.count, 0)).toBeLessThan(sparse.size / BLOCK_BYTES / 10)
  })

  it('read (async), readSync and visitSync return every range of every file of every generation byte for byte', async () => {
    const r = reader({ cacheBytes: 1 << 20 })
    let pieces = 0
    let holes = 0
    for (const gen of gens) {
      for (const [name, want] of truth.get(gen)!) {
        const f = open(r, gen, name)
        expect(f.sizeBytes).toBe(want.length)
        for (const [k, [pos, len]] of ranges(want.length, gen * 31 + name.length).entries()) {
          const exp = want.subarray(pos, pos + len)
          const a = Buffer.alloc(len, 0xee)
          expect(await r.read(f, a, len, pos)).toBe(exp.length)
          if (!a.subarray(0, exp.length).equals(exp)) throw new Error(`read gen${gen} ${name} ${pos}+${len} differs (#${k})`)
          const b = Buffer.alloc(len, 0xee)
          expect(r.readSync(f, b, len, pos)).toBe(exp.length)
          if (!b.subarray(0, exp.length).equals(exp)) throw new Error(`readSync gen${gen} ${name} ${pos}+${len} differs`)
          let at = pos
          r.visitSync(f, pos, len, (pc: Piece) => {
            expect(pc.filePos).toBe(at)
            const got = pc.data ? pc.data.subarray(pc.offset, pc.offset + pc.bytes) : Buffer.alloc(pc.bytes)
            if (!got.equals(want.subarray(at, at + pc.bytes))) throw new Error(`visitSync gen${gen} ${name} piece at ${at} differs`)
            at += pc.bytes
            pieces++
            if (!pc.data) holes++
          })
          expect(at).toBe(pos + exp.length)
        }
        // a whole sequential pass in 128 KiB reads (the kernel's pattern, with readahead)
        const all = Buffer.alloc(want.length)
        for (let pos = 0; pos < want.length; pos += 131072) await r.read(f, all.subarray(pos), Math.min(131072, want.length - pos), pos)
        expect(all.equals(want)).toBe(true)
      }
    }
    expect(pieces).toBeGreaterThan(1000)
    expect(holes).toBeGreaterThan(10)
    expect(r.stats.readaheads).toBeGreaterThan(0)
    expect(r.stats.hits).toBeGreaterThan(0)
    await r.close()
  })

  it('visitSync reports holes as null pieces, only where the file reads zeros, without reading them', () => {
    const r = reader()
    for (const gen of [1, 3, 5]) {
      const want = truth.get(gen)!.get('sparse.img')!
      const f = open(r, gen, 'sparse.img')
      let holeBytes = 0
      r.visitSync(f, 0, want.length, (pc) => {
        if (pc.data) return
        holeBytes += pc.bytes
        expect(want.subarray(pc.filePos, pc.filePos + pc.bytes).every((x) => x === 0)).toBe(true)
      })
      expect(holeBytes).toBeGreaterThan(7 << 20)
    }
  })

  it('scanUnitSync reads and checks every frame of every unit (zstd and full), finding nothing wrong', () => {
    const r = reader()
    for (const gen of gens) {
      const m = repo.manifest(gen)
      for (const u of m.units) {
        for (const check of ['zstd', 'full'] as const) {
          const s = r.scanUnitSync(gen, u.index, check)
          expect(s.bad).toEqual([])
          expect(s.frames).toBe(Math.ceil(u.rawBlocks / m.frameBlocks))
          expect(s.rawBytes).toBe(u.rawBlocks * BLOCK_BYTES)
          expect(s.sizeBytes).toBe(u.bytes)
        }
      }
    }
  })

  it('hashCursor gives the stored hashes of a previous version, zero-block hashes for holes, in any order', () => {
    const r = reader()
    const zero = Buffer.alloc(BLOCK_BYTES)
    for (const gen of gens) {
      for (const [name, want] of truth.get(gen)!) {
        const blocks = Math.ceil(want.length / BLOCK_BYTES)
        const padded = Buffer.concat([want, zero.subarray(0, blocks * BLOCK_BYTES - want.length)])
        const exp = Buffer.alloc(blocks * HASH_BYTES)
        hashBlocks(repo.config.hashAlg, padded, 0, blocks, exp, 0, 0n)
        const cur = r.hashCursor(open(r, gen, name))
        const got = Buffer.alloc(blocks * HASH_BYTES, 0xcc)
        // monotonic chunks of odd sizes (as backup asks), then a step back
        for (let fb = 0, k = 1; fb < blocks; k++) {
          const n = Math.min(blocks - fb, 1 + ((k * 37) % 50))
          const out = Buffer.alloc(n * HASH_BYTES)
          const unknown = new Uint8Array(n).fill(9)
          cur.fill(fb, n, out, unknown)
          expect(unknown.every((x) => x === 0)).toBe(true)
          out.copy(got, fb * HASH_BYTES)
          fb += n
        }
        if (!got.equals(exp)) throw new Error(`hashCursor gen${gen} ${name} differs`)
        if (blocks > 2) {
          const back = Buffer.alloc(2 * HASH_BYTES)
          cur.fill(1, 2, back)
          expect(back.equals(exp.subarray(HASH_BYTES, 3 * HASH_BYTES))).toBe(true)
        }
      }
    }
  })

  it('nativeExtents builds the table the native read path takes (split at unit boundaries, one id per unit); units register with their descriptor and seek table', async () => {
    const r = reader()
    const registered = new Map<number, { fd: number; frameBytes: number; frames: Float64Array }>()
    const sink: NativeSink = {
      unit: (id, fd, frameBytes, frames) => registered.set(id, { fd, frameBytes, frames }),
      retire: () => 0,
      file: () => undefined,
      release: () => undefined,
    }
    r.attachNative(sink)
    const meta = Repository.open(repoDir)
    /** The table as format.md and native/nread.c define it: [file offset, length, unit id, offset in unit], split at unit boundaries. */
    const expected = (x: Extent[]): Float64Array => {
      const out: number[] = []
      for (const e of x) {
        const ub = meta.manifest(e.gen).unitBlocks
        for (let fb = e.fileBlock, sb = e.streamBlock, left = e.count; left > 0; ) {
          const unit = Math.floor(sb / ub)
          const n = Math.min(left, ub - (sb - unit * ub))
          units.add(`${e.gen}:${unit}`)
          out.push(fb * BLOCK_BYTES, n * BLOCK_BYTES, r.unitId(e.gen, unit), (sb - unit * ub) * BLOCK_BYTES)
          fb += n
          sb += n
          left -= n
        }
      }
      return new Float64Array(out)
    }
    const ids = new Set<string>()
    const units = new Set<string>()
    try {
      for (const gen of gens) {
        for (const name of truth.get(gen)!.keys()) {
          const o = objectOf(gen, name)
          const now = r.nativeExtents(r.file(o.extents, o.size, o.ref))
          expect(now).toEqual(expected(o.extents))
          for (let k = 2; k < now!.length; k += 4) ids.add(String(now![k]))
          expect(now!.length % 4).toBe(0)
        }
      }
      // let the eagerly opened units finish opening, then compare their registration with their tables
      await new Promise<void>((resolve) => {
        const t = setInterval(() => {
          if (r.openUnitCount >= 16) {
            clearInterval(t)
            resolve()
          }
        }, 5)
      })
      expect(registered.size).toBeGreaterThanOrEqual(16)
      const one = [...registered.entries()][0]!
      expect(fs.readlinkSync(`/proc/self/fd/${one[1].fd}`)).toMatch(/\/gens\/\d{8}\/unit-\d{8}$/)
      const frames = one[1].frames
      expect(frames.length % 3).toBe(0)
      expect(frames[0]).toBe(32) // the first frame follows the 32-byte header
      expect(one[1].frameBytes).toBe(4 * BLOCK_BYTES)
      // one id per unit: as many ids as distinct units the objects touch
      expect(ids.size).toBe(units.size)
      expect(ids.size).toBeGreaterThanOrEqual(16)
    } finally {
      await r.close()
    }
  })

  it('keeps at most maxOpenUnits units open (counted in /proc/self/fd), sync and async', async () => {
    const fds = (): number => fs.readdirSync('/proc/self/fd').length
    const want = truth.get(1)!.get('big.bin')!
    const base = fds()
    const r = reader({ maxOpenUnits: 4, readaheadFrames: 0, cacheBytes: 1 << 20 })
    const f = open(r, 1, 'big.bin')
    const b = Buffer.alloc(8192)
    let maxSeen = 0
    for (let pos = 0; pos < want.length; pos += 8192) {
      r.readSync(f, b, 8192, pos)
      maxSeen = Math.max(maxSeen, fds() - base, r.openUnitCount)
      expect(b.equals(want.subarray(pos, pos + 8192))).toBe(true)
    }
    expect(maxSeen).toBeLessThanOrEqual(4)
    const closedSync = r.stats.unitsClosed
    expect(closedSync).toBeGreaterThanOrEqual(12)
    await r.close()
    const r2 = reader({ maxOpenUnits: 4, readaheadFrames: 0, cacheBytes: 1 << 20 })
    const f2 = open(r2, 1, 'big.bin')
    maxSeen = 0
    for (let pos = want.length - 8192; pos >= 0; pos -= 8192) {
      await r2.read(f2, b, 8192, pos)
      // an async close completes on the libuv pool: wait for it before counting
      for (let i = 0; i < 100 && fds() - base > 4; i++) await new Promise((res) => setTimeout(res, 2))
      maxSeen = Math.max(maxSeen, fds() - base, r2.openUnitCount)
      expect(b.equals(want.subarray(pos, pos + 8192))).toBe(true)
    }
    expect(maxSeen).toBeLessThanOrEqual(4)
    expect(r2.stats.unitsClosed).toBeGreaterThanOrEqual(12)
    await r2.close()
    for (let i = 0; i < 100 && fds() > base; i++) await new Promise((res) => setTimeout(res, 2))
    expect(fds()).toBe(base)
  })

  it('gives a unit read natively since the last trim a second chance (retire -1), and never closes one a native read holds', async () => {
    const calls: Array<[number, number]> = []
    let holdId = -1
    const chance = new Set<number>()
    const sink: NativeSink = {
      unit: () => undefined,
      retire: (id) => {
        let v = 0
        if (id === holdId) v = 1
        else if (!chance.has(id)) {
          chance.add(id)
          v = -1
        }
        calls.push([id, v])
        return v
      },
      file: () => undefined,
      release: () => undefined,
    }
    const r = reader({ maxOpenUnits: 2, readaheadFrames: 0 })
    r.attachNative(sink)
    const f = open(r, 1, 'big.bin')
    holdId = 0
    const b = Buffer.alloc(4096)
    for (let u = 0; u < 8; u++) r.readSync(f, b, 4096, u * 65536)
    // unit 0 was held by a "native read" every time it was asked: never closed
    expect(calls.some(([id, v]) => id === 0 && v === 1)).toBe(true)
    expect(calls.filter(([id]) => id !== 0).some(([, v]) => v === -1)).toBe(true)
    expect(calls.filter(([id]) => id !== 0).some(([, v]) => v === 0)).toBe(true)
    expect(r.openUnitCount).toBeGreaterThan(2) // the bound gives way to a held unit and second chances, for a while
    await r.close()
  })

  it('single-flight: concurrent reads of one cold frame make one store read; a cached frame makes none', async () => {
    const f0 = new FaultyStore(DiskStore.open(repoDir), { seed: 1, rules: [{ fault: 'latency', latencyMs: 20, ops: ['read'] }] })
    const r = reader({ store: f0, readaheadFrames: 0 })
    const f = open(r, 1, 'big.bin')
    const want = truth.get(1)!.get('big.bin')!
    const unitKey = keys.unit(1, 2)
    await r.read(f, Buffer.alloc(10), 10, 2 * 65536) // opens unit 2, loads its frame 0
    f0.resetCounts()
    const pos = 2 * 65536 + 2 * 16384 + 100 // frame 2 of unit 2: cold
    const outs = Array.from({ length: 8 }, () => Buffer.alloc(5000))
    await Promise.all(outs.map((o, i) => r.read(f, o, 5000 - i * 100, pos + i * 100)))
    outs.forEach((o, i) => expect(o.subarray(0, 5000 - i * 100).equals(want.subarray(pos + i * 100, pos + 5000))).toBe(true))
    expect(f0.count('read', unitKey)).toBe(1)
    expect(r.stats.sharedLoads).toBe(7)
    f0.resetCounts()
    await Promise.all(outs.map((o) => r.read(f, o, 5000, pos)))
    r.readSync(f, outs[0]!, 5000, pos)
    expect(f0.count('read')).toBe(0)
    await r.close()
  })

  it('a synchronous read while an asynchronous open of the same unit is in flight: both read right, one copy stays open', async () => {
    const store = new FaultyStore(DiskStore.open(repoDir), { seed: 1, rules: [{ fault: 'latency', latencyMs: 30, ops: ['open'] }] })
    const r = reader({ store, readaheadFrames: 0 })
    const f = open(r, 1, 'big.bin')
    const want = truth.get(1)!.get('big.bin')!
    const pos = 11 * 65536 + 3000
    const a = Buffer.alloc(5000)
    const pa = r.read(f, a, 5000, pos)
    const b = Buffer.alloc(5000)
    r.readSync(f, b, 5000, pos + 100)
    await pa
    expect(a.equals(want.subarray(pos, pos + 5000))).toBe(true)
    expect(b.equals(want.subarray(pos + 100, pos + 5100))).toBe(true)
    expect(r.openUnitCount).toBe(1)
    await r.close()
  })

  it('reads right through a slow store (latency on every operation), sync and async', async () => {
    const store = new FaultyStore(DiskStore.open(repoDir), { seed: 4, rules: [{ fault: 'latency', latencyMs: [1, 3] }] })
    const r = reader({ store })
    for (const name of ['big.bin', 'new.bin', 'sparse.img']) {
      const want = truth.get(5)!.get(name)!
      const f = open(r, 5, name)
      const a = Buffer.alloc(want.length)
      for (let pos = 0; pos < want.length; pos += 131072) await r.read(f, a.subarray(pos), Math.min(131072, want.length - pos), pos)
      expect(a.equals(want)).toBe(true)
      const b = Buffer.alloc(want.length)
      r.readSync(f, b, want.length, 0)
      expect(b.equals(want)).toBe(true)
    }
    expect(store.injected.length).toBeGreaterThan(20)
    await r.close()
  })
})

/** The first error a promise or function fails with (a test failure if none). */
async function failure(p: Promise<unknown> | (() => unknown)): Promise<Error & { code?: string }> {
  try {
    await (typeof p === 'function' ? p() : p)
  } catch (e) {
    return e as Error & { code?: string }
  }
  throw new Error('expected an error, the read succeeded')
}

describe('BlockReader surfaces every store fault as an error, never as wrong bytes', () => {
  const bigUnit = (u: number): string => keys.unit(1, u)
  const faulty = (rules: FaultRule[]): FaultyStore => new FaultyStore(DiskStore.open(repoDir), { seed: 11, rules })
  const want = (): Buffer => truth.get(1)!.get('big.bin')!

  it('EIO reading one unit fails the reads that need it (async, sync, scan), and only those; a later read retries', async () => {
    const store = faulty([{ keys: bigUnit(3), ops: ['read'], fault: 'EIO', after: 3, times: 3 }])
    const r = reader({ store, readaheadFrames: 0 })
    const f = open(r, 1, 'big.bin')
    const b = Buffer.alloc(70_000)
    const e1 = await failure(r.read(f, b, 70_000, 3 * 65536 - 100))
    expect(e1).toBeInstanceOf(StoreError)
    expect(e1.code).toBe('EIO')
    expect(e1.message).toContain(store.where(bigUnit(3)))
    const e2 = await failure(() => r.readSync(f, b, 100, 3 * 65536 + 20_000))
    expect(e2.code).toBe('EIO')
    expect(await failure(() => r.scanUnitSync(1, 3, 'zstd'))).toMatchObject({ code: 'EIO' })
    // other units read fine meanwhile
    expect(await r.read(f, b, 1000, 5 * 65536)).toBe(1000)
    expect(b.subarray(0, 1000).equals(want().subarray(5 * 65536, 5 * 65536 + 1000))).toBe(true)
    // the fault is spent: the failed loads were not cached, the frames load now
    expect(await r.read(f, b, 70_000, 3 * 65536 - 100)).toBe(70_000)
    expect(b.equals(want().subarray(3 * 65536 - 100, 4 * 65536 + 69_900 - 65536))).toBe(true)
    await r.close()
  })

  it('EIO opening a unit fails the read (async and sync)', async () => {
    const r = reader({ store: faulty([{ keys: bigUnit(6), ops: ['open'], fault: 'EIO' }]) })
    const f = open(r, 1, 'big.bin')
    expect(await failure(r.read(f, Buffer.alloc(10), 10, 6 * 65536))).toMatchObject({ code: 'EIO' })
    expect(await failure(() => r.readSync(f, Buffer.alloc(10), 10, 6 * 65536))).toMatchObject({ code: 'EIO' })
    await r.close()
  })

  it('a short unit is TRUNCATED: cut before the trailer (open fails), or before a frame (that frame fails)', async () => {
    const size = repo.manifest(1).units[4]!.bytes
    const r = reader({ store: faulty([{ keys: bigUnit(4), fault: 'short', shortBytes: size - 40 }]) })
    const f = open(r, 1, 'big.bin')
    const e = await failure(r.read(f, Buffer.alloc(10), 10, 4 * 65536))
    expect(e.code).toBe('TRUNCATED')
    expect(e.message).toContain('unit-00000004')
    expect((await failure(() => r.readSync(f, Buffer.alloc(10), 10, 4 * 65536))).code).toBe('TRUNCATED')
    await r.close()
    // the blob opens whole, then reads past byte N come back short
    const tbl = reader()
    tbl.readSync(open(tbl, 1, 'big.bin'), Buffer.alloc(1), 1, 4 * 65536)
    const r2 = reader({ store: faulty([{ keys: bigUnit(4), ops: ['read'], fault: 'short', shortBytes: 2000, after: 3 }]), readaheadFrames: 0 })
    const f2 = open(r2, 1, 'big.bin')
    const e2 = await failure(r2.read(f2, Buffer.alloc(10), 10, 4 * 65536 + 3 * 16384))
    // a unit ending before a frame its table lists is a damaged stored file (the CLI exits 6)
    expect(e2).toBeInstanceOf(FormatError)
    expect(e2.code).toBe('TRUNCATED')
    expect(e2.message).toMatch(/unit-00000004: frame 3 is truncated/)
    const scan = r2.scanUnitSync(1, 4, 'zstd')
    expect(scan.bad.map((b) => b.reason)).toContain('truncated')
    await r2.close()
    await tbl.close()
  })

  it('flipped bytes are a checksum error naming the unit and the frame (async, sync); scan lists the frame', async () => {
    for (const fullCheck of [false, true]) {
      const store = faulty([{ keys: bigUnit(7), ops: ['read'], fault: 'flip', flipBytes: 1, after: 3 }])
      const r = reader({ store, readaheadFrames: 0, fullCheck })
      const f = open(r, 1, 'big.bin')
      const e = await failure(r.read(f, Buffer.alloc(100), 100, 7 * 65536 + 16384 + 5))
      expect(e).toBeInstanceOf(FormatError)
      expect(e.code).toBe('BAD_CHECKSUM')
      expect(e.message).toContain(store.where(bigUnit(7)))
      expect(e.message).toMatch(/frame 1\b/)
      const e2 = await failure(() => r.readSync(f, Buffer.alloc(100), 100, 7 * 65536 + 2 * 16384))
      expect(e2.code).toBe('BAD_CHECKSUM')
      expect(e2.message).toMatch(/frame 2\b/)
      const scan = r.scanUnitSync(1, 7, 'full')
      expect(scan.bad.length).toBe(scan.frames)
      for (const b of scan.bad) expect(b.reason).toMatch(/cannot decompress|checksum mismatch/)
      await r.close()
    }
  })

  it('flipped bytes in the header or seek table fail the unit at open', async () => {
    for (const after of [0, 1, 2]) {
      const r = reader({ store: faulty([{ keys: bigUnit(9), ops: ['read'], fault: 'flip', flipBytes: 4, after, times: 1 }]) })
      const e = await failure(() => r.readSync(open(r, 1, 'big.bin'), Buffer.alloc(1), 1, 9 * 65536))
      expect(e).toBeInstanceOf(FormatError)
      expect(e.message).toContain('unit-00000009')
      await r.close()
    }
  })

  it('a valid unit in the wrong place (another unit\'s bytes under its key) is refused, not read', async () => {
    const mem = await memCopy()
    await mem.put(bigUnit(5), await mem.get(bigUnit(6)), { mode: 'replace' })
    const r = reader({ store: mem })
    const f = open(r, 1, 'big.bin')
    for (const e of [await failure(r.read(f, Buffer.alloc(10), 10, 5 * 65536)), await failure(() => r.readSync(f, Buffer.alloc(10), 10, 5 * 65536))]) {
      expect(e).toBeInstanceOf(FormatError)
      expect(e.code).toBe('BAD_VALUE')
      expect(e.message).toContain('mem:gens/00000001/unit-00000005: unit header does not match its manifest')
    }
    expect(await failure(() => r.scanUnitSync(1, 5, 'full'))).toMatchObject({ code: 'BAD_VALUE' })
    await r.close()
  })

  it('errors reach every concurrent reader of a shared load', async () => {
    const store = new FaultyStore(DiskStore.open(repoDir), { seed: 1, rules: [{ keys: bigUnit(10), ops: ['read'], fault: 'EIO', after: 3 }, { fault: 'latency', latencyMs: 10, ops: ['read'] }] })
    const r = reader({ store, readaheadFrames: 0 })
    const f = open(r, 1, 'big.bin')
    await r.read(f, Buffer.alloc(1), 1, 9 * 65536) // warm another unit
    const res = await Promise.allSettled(Array.from({ length: 6 }, () => r.read(f, Buffer.alloc(100), 100, 10 * 65536 + 16384)))
    expect(res.every((x) => x.status === 'rejected' && (x.reason as StoreError).code === 'EIO')).toBe(true)
    expect(store.count('read', bigUnit(10))).toBe(4) // 3 to open, 1 load shared by all six
    await r.close()
  })
})

describe('deferred extents', () => {
  /** A claimer serving blocks of big.bin with a recognisable pattern. */
  const pattern = (pos: number): number => (pos * 7 + 3) & 0xff
  const claimer = (only: number): Claimer & { reads: number } => ({
    id: 'test',
    reads: 0,
    claims: (o: ObjectRef | undefined, size: number) => (o && o.gen === only && size === 1 << 20 ? [{ fileBlock: 2, count: 3 }, { fileBlock: 40, count: 1 }, { fileBlock: 255, count: 1 }] : []),
    async read(_o, pos, dst) {
      this.reads++
      await new Promise((r) => setTimeout(r, 1))
      for (let i = 0; i < dst.length; i++) dst[i] = pattern(pos + i)
    },
    readSync(_o, pos, dst) {
      this.reads++
      for (let i = 0; i < dst.length; i++) dst[i] = pattern(pos + i)
    },
  })
  const claimedAt = (pos: number): boolean => {
    const b = Math.floor(pos / BLOCK_BYTES)
    return (b >= 2 && b < 5) || b === 40 || b === 255
  }

  it('claimed ranges read through the claimer (async, sync, visit); the rest from the store', async () => {
    const c = claimer(1)
    const r = reader({ claimers: [c] })
    const f = open(r, 1, 'big.bin')
    expect(f.claimed).toBe(true)
    expect(f.extents.filter((e) => e.kind === Kind.Deferred).map((e) => [e.fileBlock, e.count])).toEqual([[2, 3], [40, 1], [255, 1]])
    const want = Buffer.from(truth.get(1)!.get('big.bin')!)
    for (let i = 0; i < want.length; i++) if (claimedAt(i)) want[i] = pattern(i)
    for (const [pos, len] of ranges(want.length, 5)) {
      const exp = want.subarray(pos, pos + len)
      const a = Buffer.alloc(len)
      expect(await r.read(f, a, len, pos)).toBe(exp.length)
      expect(a.subarray(0, exp.length).equals(exp)).toBe(true)
      const b = Buffer.alloc(len)
      r.readSync(f, b, len, pos)
      expect(b.subarray(0, exp.length).equals(exp)).toBe(true)
    }
    expect(c.reads).toBeGreaterThan(0)
    // other generations' objects are not claimed
    expect(open(r, 2, 'big.bin').claimed).toBe(false)
    await r.close()
  })

  it('claimed ranges are NATIVE_DEFERRED in the native table and unknown to hashCursor', async () => {
    const r = reader({ claimers: [claimer(1)] })
    const f = open(r, 1, 'big.bin')
    const x = r.nativeExtents(f)!
    const deferred: number[][] = []
    for (let i = 0; i < x.length; i += 4) if (x[i + 2] === NATIVE_DEFERRED) deferred.push([x[i]! / BLOCK_BYTES, x[i + 1]! / BLOCK_BYTES])
    expect(deferred).toEqual([[2, 3], [40, 1], [255, 1]])
    // the table still covers the whole file, in order
    let end = 0
    for (let i = 0; i < x.length; i += 4) {
      expect(x[i]).toBe(end)
      end += x[i + 1]!
    }
    expect(end).toBe(1 << 20)
    const out = Buffer.alloc(256 * HASH_BYTES)
    const unknown = new Uint8Array(256)
    r.hashCursor(f).fill(0, 256, out, unknown)
    expect([...unknown.keys()].filter((i) => unknown[i])).toEqual([2, 3, 4, 40, 255])
    await r.close()
  })

  it('overlayClaims cuts data extents and covers holes, whichever claimer comes last wins', () => {
    const c1 = claimer(1)
    const c2 = { ...claimer(1), id: 'second' }
    const ext: ReadExtent[] = [{ fileBlock: 0, count: 10, gen: 1, streamBlock: 100 }, { fileBlock: 20, count: 5, gen: 2, streamBlock: 7 }]
    const one = overlayClaims(ext, [{ fileBlock: 8, count: 14 }], c1)
    expect(one.map((e) => [e.fileBlock, e.count, e.kind ?? Kind.Data, e.streamBlock])).toEqual([[0, 8, Kind.Data, 100], [8, 14, Kind.Deferred, 0], [22, 3, Kind.Data, 9]])
    const two = overlayClaims(one, [{ fileBlock: 9, count: 2 }], c2)
    expect(two.map((e) => [e.fileBlock, e.count, e.claimer?.id ?? null])).toEqual([[0, 8, null], [8, 1, 'test'], [9, 2, 'second'], [11, 11, 'test'], [22, 3, null]])
  })

  it('units of a store without local descriptors are never registered natively, and become NATIVE_DEFERRED once open', async () => {
    const registered: number[] = []
    const sink: NativeSink = { unit: (id) => registered.push(id), retire: () => 0, file: () => undefined, release: () => undefined }
    const r = reader({ store: new FaultyStore(DiskStore.open(repoDir), { seed: 1, rules: [] }) })
    r.attachNative(sink)
    const f = open(r, 1, 'small')
    r.readSync(f, Buffer.alloc(10), 10, 0) // opens its unit
    const x = r.nativeExtents(f)!
    expect(x[2]).toBe(NATIVE_DEFERRED)
    expect(registered).toEqual([])
    await r.close()
  })
})

/** The repository's blobs copied into a memory store. */
async function memCopy(): Promise<MemStore> {
  const disk = DiskStore.open(repoDir)
  const mem = new MemStore()
  const walk = async (prefix: string): Promise<void> => {
    for (const k of await disk.list(prefix)) {
      if (await disk.has(k)) await mem.put(k, await disk.get(k))
      else await walk(k)
    }
  }
  await walk('')
  return mem
}

describe('BlockReader on other stores and threads', () => {
  it('reads the same bytes from a memory store', async () => {
    const r = reader({ store: await memCopy() })
    for (const [name, want] of truth.get(5)!) {
      const f = open(r, 5, name)
      const a = Buffer.alloc(want.length)
      expect(r.readSync(f, a, want.length, 0)).toBe(want.length)
      expect(a.equals(want)).toBe(true)
      const b = Buffer.alloc(want.length)
      await r.read(f, b, want.length, 0)
      expect(b.equals(want)).toBe(true)
    }
    await r.close()
  })

  it('a store without a synchronous face: the async path reads, the sync entry points fail ENOSYNC', async () => {
    const disk = DiskStore.open(repoDir)
    const noSync: Store = Object.assign(Object.create(disk) as Store, { sync: null })
    const r = reader({ store: noSync })
    const f = open(r, 1, 'small')
    const want = truth.get(1)!.get('small')!
    const a = Buffer.alloc(want.length)
    await r.read(f, a, want.length, 0)
    expect(a.equals(want)).toBe(true)
    const e = await failure(() => r.readSync(f, a, 10, 0))
    expect(e).toBeInstanceOf(StoreError)
    expect(e.code).toBe('ENOSYNC')
    await r.close()
  })

  it('a worker thread builds its reader from a ReaderSpec and reads the same bytes (disk and memory stores)', async () => {
    const src = repoStreamSource(repo)
    const mem = await memCopy()
    for (const store of [DiskStore.open(repoDir), mem] as Store[]) {
      const spec: ReaderSpec = {
        id: 'test',
        store: store.describe()!,
        hashAlg: repo.config.hashAlg,
        geometry: Object.fromEntries(gens.map((g) => [g, specGeometry(src.geometry(g))])),
        cacheBytes: 1 << 20,
        maxOpenUnits: 4,
      }
      const jobs = [...truth.get(3)!].map(([name, want]) => ({ name, o: objectOf(3, name), len: want.length }))
      const code = `
        const { parentPort, workerData } = require('node:worker_threads')
        ;(async () => {
          const { readerFromSpec, closeSpecReaders } = await import(workerData.url)
          const out = {}
          for (const j of workerData.jobs) {
            const r = readerFromSpec(workerData.spec)
            const f = r.file(j.o.extents, j.o.size, j.o.ref)
            const b = Buffer.alloc(j.len)
            r.readSync(f, b, j.len, 0)
            out[j.name] = require('node:crypto').createHash('sha256').update(b).digest('hex')
          }
          await closeSpecReaders()
          return out
        })().then((r) => parentPort.postMessage({ r }), (e) => parentPort.postMessage({ e: e.message }))`
      const got = await new Promise<Record<string, string>>((resolve, reject) => {
        const w = new Worker(code, { eval: true, workerData: { url: 'file://' + path.join(ROOT, 'dist/blocks/spec.js'), spec, jobs } })
        w.once('message', (m: { r?: Record<string, string>; e?: string }) => {
          void w.terminate()
          if (m.e) reject(new Error(m.e))
          else resolve(m.r!)
        })
        w.once('error', reject)
      })
      for (const [name, want] of truth.get(3)!) expect(got[name]).toBe((await import('node:crypto')).createHash('sha256').update(want).digest('hex'))
    }
    // the same spec id in this thread is one reader, which learns new generations from later specs
    const spec: ReaderSpec = { id: 'main', store: DiskStore.open(repoDir).describe(), hashAlg: repo.config.hashAlg, geometry: { 1: specGeometry(src.geometry(1)) }, cacheBytes: 1 << 20, maxOpenUnits: 4 }
    const a = readerFromSpec(spec)
    const b = readerFromSpec({ ...spec, geometry: { 2: specGeometry(src.geometry(2)) } })
    expect(b).toBe(a)
    const o = objectOf(2, 'big.bin')
    const buf = Buffer.alloc(o.size)
    a.readSync(a.file(o.extents, o.size), buf, o.size, 0)
    expect(buf.equals(truth.get(2)!.get('big.bin')!)).toBe(true)
  })
})
