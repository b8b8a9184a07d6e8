/**
 * The S3 read cache's local half (store/objcache.ts, store/cache.ts), without S3: entries kept
 * with their record, checked on first open, a corrupt one dropped; a cache shared by an owner
 * and a writer that is not (another process's handle), counted by the owner's rescan and
 * evicted with its record; the async face's check (a mount's) turning the event loop while it
 * hashes. test/s3-cache.test.ts covers the rest against a real RGW.
 */
import fs from 'node:fs'
import path from 'node:path'
import { createHash } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import { BufferCache } from '../src/store/cache.js'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { cacheable, cacheDirOf, checkFetched, FILL_IDLE_MS, giveWay, HASH_PIECE, ObjectCache, S3CachedStore } from '../src/store/objcache.js'
import { S3Store } from '../src/store/s3.js'
import { tmpdir } from './helpers.js'

const work = tmpdir('bfs-objcache-')
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

const fetched = (bytes: Buffer, etag = `"${createHash('md5').update(bytes).digest('hex')}"`) => ({ chunks: [bytes.subarray(0, 1000), bytes.subarray(1000)], sizeBytes: bytes.length, etag })

describe('the S3 read cache, locally', () => {
  it('which keys are cached: immutable objects only, never mutable ones', () => {
    for (const k of ['gens/00000001/unit-00000000', 'gens/00000012/pack-00000003', 'gens/00000001/stream', 'gens/00000001/hashes', 'index/dedup-00000002-0000']) expect(cacheable(k), k).toBe(true)
    for (const k of ['config', 'config-copy', 'manifests/gen-00000001', 'runs/00000001', 'leases/0123456789abcdef', 'locks/maintenance', 'retired/gen-00000001-r0001', 'groups/x', 'tiers/t', 'lock', 'gens/00000001']) expect(cacheable(k), k).toBe(false)
  })

  it('the directory: one per endpoint, bucket and prefix; --cache-dir, BFS_CACHE_DIR, XDG_CACHE_HOME, ~/.cache', () => {
    const loc = { endpoint: 'http://h:1', bucket: 'b', prefix: 'p' }
    expect(cacheDirOf(loc, '/x')).toMatch(/^\/x\/s3-b-[0-9a-f]{16}$/)
    expect(cacheDirOf(loc, undefined, { BFS_CACHE_DIR: '/y' })).toMatch(/^\/y\/s3-b-/)
    expect(cacheDirOf(loc, undefined, { XDG_CACHE_HOME: '/z' })).toMatch(/^\/z\/bfs\/s3-b-/)
    expect(cacheDirOf(loc, undefined, {})).toMatch(/\/\.cache\/bfs\/s3-b-/)
    expect(cacheDirOf({ ...loc, prefix: 'q' }, '/x')).not.toBe(cacheDirOf(loc, '/x'))
  })

  it('a fetch whose bytes do not match the ETag (MD5) is refused; a multipart ETag leaves size', () => {
    const b = Buffer.from('x'.repeat(3000))
    expect(checkFetched('w', 'k', fetched(b))).toBe(createHash('sha256').update(b).digest('hex'))
    expect(() => checkFetched('w', 'k', fetched(b, '"00000000000000000000000000000000"'))).toThrow(/do not match the object's ETag/)
    expect(checkFetched('w', 'k', fetched(b, '"abc-2"'))).toMatch(/^[0-9a-f]{64}$/)
    expect(() => checkFetched('w', 'k', { ...fetched(b, '"abc-2"'), sizeBytes: 3001 })).toThrow(/fetched 3000 bytes of an object of 3001/)
  })

  it('an entry is served with its descriptor; corrupted on disk, a new process finds it, drops it and says so', async () => {
    const dir = path.join(work, 'c1')
    const warnings: string[] = []
    const a = ObjectCache.open(dir, { warn: (m) => warnings.push(m) })
    const bytes = Buffer.from(Array.from({ length: 5000 }, (_, i) => i & 0xff))
    const key = 'gens/00000001/unit-00000000'
    expect(await a.put(key, fetched(bytes), checkFetched('w', key, fetched(bytes)))).not.toBe('')
    const e = a.entrySync(key)!
    expect(e.localFd).toBeTypeOf('number')
    expect(e.readSync({ offset: 0, length: 5000 }).equals(bytes)).toBe(true)
    e.closeSync()
    a.close()
    // one byte flipped, size unchanged
    const f = path.join(dir, 'data', key)
    const buf = fs.readFileSync(f)
    buf[2500] ^= 1
    fs.writeFileSync(f, buf)
    const b = ObjectCache.open(dir, { warn: (m) => warnings.push(m) })
    expect(b.entrySync(key)).toBeNull()
    expect(b.counters.corrupt).toBe(1)
    expect(warnings.join('\n')).toMatch(/does not match its SHA-256 \(corrupt on local disk\); removed, fetching it again/)
    expect(fs.existsSync(f)).toBe(false)
    expect(fs.existsSync(path.join(dir, 'meta', key))).toBe(false)
    // an entry without its record is not used either
    expect(await b.put(key, fetched(bytes), checkFetched('w', key, fetched(bytes)))).not.toBe('')
    fs.rmSync(path.join(dir, 'meta', key))
    const c = ObjectCache.open(path.join(dir), { owner: false })
    expect(c.entrySync(key)).toBeNull()
    b.close()
    c.close()
  })

  it('shared: a writer that is not the owner adds entries; the owner counts them at rescan, evicts them and their records', async () => {
    const dir = path.join(work, 'c2')
    const owner = ObjectCache.open(dir, { limitBytes: 10_000 })
    expect(owner.cache.owner).toBe(true)
    const other = ObjectCache.open(dir) // the lock is taken: a writer only
    expect(other.cache.owner).toBe(false)
    const keys = ['gens/00000001/unit-00000000', 'gens/00000001/unit-00000001', 'gens/00000001/unit-00000002']
    for (const k of keys) {
      const bytes = Buffer.alloc(4000, k.length + k.charCodeAt(k.length - 1))
      expect(await other.put(k, fetched(bytes), checkFetched('w', k, fetched(bytes)))).not.toBe('')
    }
    expect(owner.cache.stats().entries).toBe(0)
    owner.cache.rescan()
    // 12,000 bytes over a 10,000 limit: the oldest goes, with its record
    const st = owner.cache.stats()
    expect(st.entries).toBe(2)
    expect(st.evictions).toBe(1)
    const left = keys.filter((k) => fs.existsSync(path.join(dir, 'data', k)))
    expect(left.length).toBe(2)
    for (const k of keys) expect(fs.existsSync(path.join(dir, 'meta', k))).toBe(left.includes(k))
    // the ones left are served to the owner too (hashed once, then trusted)
    for (const k of left) {
      const e = owner.entrySync(k)!
      expect(e.sizeBytes).toBe(4000)
      e.closeSync()
    }
    other.close()
    owner.close()
    const next = BufferCache.open(dir, { owner: true }) // the lock was given up
    expect(next.owner).toBe(true)
    next.close()
  })
})

describe('the S3 read cache on the async face (a mount): entries checked without blocking the event loop', () => {
  const KEY = 'gens/00000001/unit-00000003'
  const SIZE = 64 << 20
  const bytes = Buffer.alloc(SIZE)
  for (let i = 0; i < SIZE; i += 4096) bytes.writeUInt32LE(i * 2654435761 >>> 0, i)
  const cpuUs = (): number => {
    const u = process.cpuUsage()
    return u.user + u.system
  }
  /**
   * Turns of the event loop (setImmediate callbacks) while `p` runs, the most CPU time the
   * process spent between two of them (µs: CPU, not wall time, so another process's load
   * does not stretch it) and the CPU time of the whole.
   */
  const turnsDuring = async <T>(p: () => Promise<T> | T): Promise<{ v: T; turns: number; maxGapUs: number; totalUs: number }> => {
    let turns = 0
    let on = true
    const start = cpuUs()
    let last = start
    let maxGapUs = 0
    const spin = (): void => {
      const now = cpuUs()
      maxGapUs = Math.max(maxGapUs, now - last)
      last = now
      turns++
      if (on) setImmediate(spin)
    }
    setImmediate(spin)
    try {
      const v = await p()
      const end = cpuUs()
      return { v, turns, maxGapUs: Math.max(maxGapUs, end - last), totalUs: end - start }
    } finally {
      on = false
    }
  }
  /** A cache directory holding a 64 MiB entry, written by another handle (so a new handle has not hashed it). */
  const filled = async (name: string): Promise<string> => {
    const dir = path.join(work, name)
    const w = ObjectCache.open(dir, { owner: false })
    const f = { chunks: [bytes], sizeBytes: SIZE, etag: `"${createHash('md5').update(bytes).digest('hex')}"` }
    expect(await w.put(KEY, f, checkFetched('w', KEY, f))).not.toBe('')
    w.close()
    return dir
  }

  it('S3CachedStore.open of a 64 MiB cached entry hashes it piece by piece, the loop turning between pieces; entrySync (the sync face) holds it for the whole', async () => {
    const dir = await filled('a1')
    // no request is made for a cached entry: the S3 side points nowhere
    const s = new S3CachedStore(new S3Store({ endpoint: 'http://127.0.0.1:9', bucket: 'none', prefix: '' }, { maxAttempts: 1 }), dir, () => ObjectCache.open(dir))
    const h = monitorEventLoopDelay({ resolution: 10 })
    let asyncGapUs = 0
    try {
      expect(s.objects.dir).toBe(dir) // the cache handle opened (its directory scan) before the measure
      h.enable()
      const { v: b, turns, maxGapUs, totalUs } = await turnsDuring(() => s.open(KEY))
      h.disable()
      asyncGapUs = maxGapUs
      // a synchronous hash of 64 MiB is within one turn; HASH_PIECE reads of it are SIZE / HASH_PIECE turns at least
      expect(SIZE / HASH_PIECE).toBe(64)
      expect(turns).toBeGreaterThanOrEqual(64)
      expect(s.objects.counters.hits).toBe(1)
      console.log(`async open of a 64 MiB entry: ${turns} loop turns, ${(totalUs / 1000).toFixed(1)} ms CPU, at most ${(maxGapUs / 1000).toFixed(1)} ms CPU between two turns, longest block ${(h.max / 1e6).toFixed(1)} ms (wall)`)
      expect(b.localFd).toBeTypeOf('number')
      expect((await b.read({ offset: SIZE - 8192, length: 8192 })).equals(bytes.subarray(SIZE - 8192))).toBe(true)
      await b.close()
      // verified once per process and version: the next open does not hash (one turn at most)
      const again = await turnsDuring(() => s.open(KEY))
      expect(again.turns).toBeLessThanOrEqual(2)
      await again.v.close()
    } finally {
      s.close()
    }
    // the check the sync face makes: the same entry hashed within one turn (what the async face must not do)
    const c = ObjectCache.open(dir, { owner: false })
    const sync = await turnsDuring(() => c.entrySync(KEY))
    expect(sync.v).not.toBeNull()
    expect(sync.turns).toBe(0)
    sync.v!.closeSync()
    c.close()
    console.log(`sync check of the same entry: ${(sync.totalUs / 1000).toFixed(1)} ms CPU in one turn`)
    // CPU time (another process's load does not stretch it): the async face held the loop for
    // at most a fraction of what hashing the whole entry at once takes
    expect(asyncGapUs).toBeLessThan(sync.maxGapUs / 3)
  }, 120_000)

  it('a corrupted entry is found by the async check before any byte is served: dropped once (two opens at once), said, gone with its record', async () => {
    const dir = await filled('a2')
    const f = path.join(dir, 'data', KEY)
    const fd = fs.openSync(f, 'r+')
    fs.writeSync(fd, Buffer.from([bytes[SIZE - 3]! ^ 0x10]), 0, 1, SIZE - 3) // the last piece: read last
    fs.closeSync(fd)
    const warnings: string[] = []
    const c = ObjectCache.open(dir, { warn: (m) => warnings.push(m) })
    const [a, b] = await Promise.all([c.entry(KEY), c.entry(KEY)])
    expect(a).toBeNull()
    expect(b).toBeNull()
    expect(c.counters.corrupt).toBe(1)
    expect(warnings.length).toBe(1)
    expect(warnings[0]).toMatch(/does not match its SHA-256 \(corrupt on local disk\); removed, fetching it again/)
    expect(fs.existsSync(f)).toBe(false)
    expect(fs.existsSync(path.join(dir, 'meta', KEY))).toBe(false)
    // a good entry written again is served; entryVerified (a poll) never hashes: null until checked
    const w = ObjectCache.open(dir, { owner: false })
    const ff = { chunks: [bytes], sizeBytes: SIZE, etag: '' }
    expect(await w.put(KEY, ff, checkFetched('w', KEY, ff))).not.toBe('')
    w.close()
    expect(c.entryVerified(KEY)).toBeNull()
    const e = await c.entry(KEY)
    expect(e).not.toBeNull()
    await e!.close()
    const v = c.entryVerified(KEY)
    expect(v).not.toBeNull()
    v!.closeSync()
    c.close()
  }, 120_000)
})

describe("a mount's fills give way to its reads (the fill thread's gate)", () => {
  const settledWithin = async (p: Promise<unknown>, ms: number): Promise<boolean> => {
    let done = false
    void p.then(() => (done = true))
    await new Promise((r) => setTimeout(r, ms))
    return done
  }

  it('giveWay waits while a read waits for a GET and FILL_IDLE_MS after it ended; at most its bound', async () => {
    const busy = new Int32Array(new SharedArrayBuffer(8))
    // nothing waiting, no read for long: at once
    expect(await settledWithin(giveWay(busy, 60_000), 20)).toBe(true)
    // a read waiting: the fill waits (however long this takes here)
    Atomics.store(busy, 0, 1)
    const p = giveWay(busy, 60_000)
    expect(await settledWithin(p, 100)).toBe(false)
    // the read's GET answered: the fill still waits FILL_IDLE_MS (the read decodes and answers), then goes
    const t0 = Date.now()
    Atomics.store(busy, 1, t0 & 0x7fffffff) // msNow() at t0
    Atomics.store(busy, 0, 0)
    Atomics.notify(busy, 0)
    await p
    // a lower bound only (a loaded machine makes it longer, never shorter); 1 ms for rounding
    expect(Date.now() - t0).toBeGreaterThanOrEqual(FILL_IDLE_MS - 1)
    // a reader that never pauses: the fill goes after its bound
    Atomics.store(busy, 0, 1)
    expect(await settledWithin(giveWay(busy, 50), 2000)).toBe(true)
  })
})
