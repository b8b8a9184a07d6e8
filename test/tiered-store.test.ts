/**
 * The buffer cache (store/cache.ts) and the tiered store (store/tiered.ts) on a real
 * virtual tape library (clock scale 0) and real files: what is served from where, what
 * touches tape, eviction that resists scans, pins, restarts, half-written entries, and a
 * corrupt record on tape.
 */
import fs from 'node:fs'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { DiskStore } from '../src/store/disk.js'
import { BufferCache, CacheBusy, CacheStore, TapeSource } from '../src/store/cache.js'
import { TapeStore, type WriteItem } from '../src/store/tape.js'
import { TieredStore } from '../src/store/tiered.js'
import { StoreError, type Store } from '../src/store/store.js'
import { RepoTapeCatalog } from '../src/repo/tapecat.js'
import { VirtualTapeLibrary } from '../src/tape/vtl.js'
import { LTO9 } from '../src/tape/model.js'
import { tmpdir } from './helpers.js'

const work = tmpdir('bfs-tiered-')
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))
let n = 0
const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

interface Rig {
  dir: string
  hot: DiskStore
  tape: TapeStore
  cache: BufferCache
  cold: CacheStore
  tiered: TieredStore
  lib: VirtualTapeLibrary
}

/** Disk store, a one-drive library (clock 0), the catalog in the disk store under tape/, a cache this process owns. */
function rig(o: { cacheBytes?: number } = {}): Rig {
  const dir = path.join(work, `r${n++}`)
  VirtualTapeLibrary.create(path.join(dir, 'vtl'), { model: LTO9, cartridges: 2, drives: 1, clockScale: 0 })
  const hot = DiskStore.create(path.join(dir, 'repo'))
  const lib = VirtualTapeLibrary.open(path.join(dir, 'vtl'))
  const tape = new TapeStore({ tier: 'tape1', library: lib, catalog: new RepoTapeCatalog(hot), engine: { windowMs: 5, lingerMs: 100 } })
  const cache = BufferCache.open(path.join(dir, 'cache'), { owner: true, limitBytes: o.cacheBytes ?? 256 << 20 })
  const cold = new CacheStore(cache, new TapeSource(tape, cache))
  const tiered = new TieredStore({ hot, cold })
  cleanups.push(async () => {
    cache.close()
    await tape.close()
    await lib.close()
  })
  return { dir, hot, tape, cache, cold, tiered, lib }
}

/** A unit-like blob: 32-byte header, body, 96-byte "seek table and trailer". */
function blob(size: number): Buffer {
  return randomBytes(size)
}

/** Migrates `keys` from the disk store to tape as bfs migrate does: write, commit, then remove the disk copy. */
async function migrate(r: Rig, keys: string[], o: { fileBytes?: number } = {}): Promise<void> {
  const items: WriteItem[] = []
  for (const key of keys) {
    const st = await r.hot.stat(key)
    items.push({ key, sizeBytes: st.sizeBytes, headBytes: 32, tailBytes: 96, open: () => r.hot.open(key) })
  }
  const res = await r.tape.writeBlobs(items, { fileBytes: o.fileBytes, verify: true, onCommitted: async (ks) => {
    for (const k of ks) await r.hot.remove(k)
  } })
  expect(res.failed).toEqual([])
}

const reads = (r: Rig): number => r.tape.engine.counters.served

describe('tiered store over tape through the buffer cache', () => {
  it('serves header, seek table and trailer of a migrated blob from the catalog copies; frames from the cache, recalled once', async () => {
    const r = rig()
    const data = blob(3 << 20)
    await r.hot.put('gens/00000001/unit-00000000', data)
    await r.hot.put('gens/00000001/unit-00000001', blob(1000))
    await migrate(r, ['gens/00000001/unit-00000000'])
    expect(fs.existsSync(path.join(r.dir, 'repo/gens/00000001/unit-00000000'))).toBe(false)
    expect(await r.tiered.list('gens/00000001')).toEqual(['gens/00000001/unit-00000000', 'gens/00000001/unit-00000001'])
    expect(await r.tiered.residency('gens/00000001/unit-00000000')).toBe('tape')
    expect(await r.tiered.residency('gens/00000001/unit-00000001')).toBe('disk')
    expect((await r.tiered.stat('gens/00000001/unit-00000000')).sizeBytes).toBe(data.length)

    const clock = r.tape.engine.status().drives[0]!.clock
    const b = await r.tiered.open('gens/00000001/unit-00000000')
    expect(b.localFd).toBeUndefined() // not in the cache yet: no descriptor for the native path
    // a unit reader's first three reads: header, trailer, seek table: no tape
    expect((await b.read({ offset: 0, length: 32 })).equals(data.subarray(0, 32))).toBe(true)
    expect((await b.read({ offset: data.length - 32, length: 32 })).equals(data.subarray(-32))).toBe(true)
    expect((await b.read({ offset: data.length - 96, length: 64 })).equals(data.subarray(-96, -32))).toBe(true)
    expect(reads(r)).toBe(0)
    expect(r.tape.engine.status().drives[0]!.clock).toBe(clock)
    // a frame: recalled into the cache, verified, served
    expect((await b.read({ offset: 1000, length: 100_000 })).equals(data.subarray(1000, 101_000))).toBe(true)
    expect(reads(r)).toBe(1)
    expect(await r.tiered.residency('gens/00000001/unit-00000000')).toBe('cache')
    await b.close()
    // opened again: from the cache, with the cache file's descriptor for the native path
    const c = await r.tiered.open('gens/00000001/unit-00000000')
    expect(c.localFd).toBeTypeOf('number')
    const dst = Buffer.alloc(4096)
    expect(fs.readSync(c.localFd!, dst, 0, 4096, 2 << 20)).toBe(4096)
    expect(dst.equals(data.subarray(2 << 20, (2 << 20) + 4096))).toBe(true)
    await c.close()
    expect((await r.tiered.get('gens/00000001/unit-00000000')).equals(data)).toBe(true)
    expect(reads(r)).toBe(1)
  })

  it('concurrent misses of one blob are one recall; of many blobs, one batch', async () => {
    const r = rig()
    const blobs = new Map<string, Buffer>()
    for (let i = 0; i < 12; i++) {
      const k = `gens/00000002/unit-${String(i).padStart(8, '0')}`
      blobs.set(k, blob(300_000 + i * 1000))
      await r.hot.put(k, blobs.get(k)!)
    }
    await migrate(r, [...blobs.keys()], { fileBytes: 1 << 20 })
    const k0 = [...blobs.keys()][0]!
    const same = await Promise.all(Array.from({ length: 8 }, () => r.tiered.get(k0, { offset: 100, length: 1000 })))
    for (const g of same) expect(g.equals(blobs.get(k0)!.subarray(100, 1100))).toBe(true)
    expect(reads(r)).toBe(1)
    const all = await Promise.all([...blobs.keys()].slice(1).map(async (k) => [k, await r.tiered.get(k)] as const))
    for (const [k, g] of all) expect(g.equals(blobs.get(k)!)).toBe(true)
    expect(reads(r)).toBe(12)
    expect(r.tape.engine.counters.mounts).toBe(0) // the cartridge stayed in the drive after the migration
  })

  it('the synchronous face reads disk blobs, the copies and cached blobs; a range on tape fails ENOSYNC until recalled', async () => {
    const r = rig()
    const data = blob(2 << 20)
    await r.hot.put('gens/00000003/unit-00000000', data)
    await migrate(r, ['gens/00000003/unit-00000000'])
    const sync = r.tiered.sync!
    const b = sync.openSync('gens/00000003/unit-00000000')
    expect(b.readSync({ offset: 0, length: 32 }).equals(data.subarray(0, 32))).toBe(true)
    let err: unknown
    try {
      b.readSync({ offset: 5000, length: 10 })
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(StoreError)
    expect((err as StoreError).code).toBe('ENOSYNC')
    expect((err as StoreError).message).toMatch(/on tape and not in the buffer cache; it cannot be read synchronously \(recall it first\)$/)
    b.closeSync()
    await Promise.all(r.tiered.prefetch(['gens/00000003/unit-00000000']).values())
    expect(sync.getSync('gens/00000003/unit-00000000').equals(data)).toBe(true)
    expect(sync.listSync('gens/00000003')).toEqual(['gens/00000003/unit-00000000'])
    expect(sync.hasSync('gens/00000003/unit-00000000')).toBe(true)
  })

  it('a reader that opened the disk copy before migration removed it keeps reading it; a reader whose catalog predates the migration finds the unit', async () => {
    const r = rig()
    const data = blob(1 << 20)
    await r.hot.put('gens/00000004/unit-00000000', data)
    // another process's view: its own catalog, loaded before the migration
    const otherCatalog = new RepoTapeCatalog(r.hot)
    const otherCache = BufferCache.open(path.join(r.dir, 'cache')) // a reader of the same cache, not its owner
    const other = new TieredStore({ hot: r.hot, cold: new CacheStore(otherCache, { ...new TapeSource(r.tape, r.cache), entry: (k: string) => otherCatalog.entry(k) ?? (otherCatalog.refresh() ? otherCatalog.entry(k) : undefined), list: async (p: string) => otherCatalog.list(p), listSync: (p: string) => otherCatalog.list(p), where: (k: string) => r.tape.where(k), localRoots: () => [], fill: (es, o) => new TapeSource(r.tape, r.cache).fill(es, o), touch: () => undefined, pin: () => undefined, unpin: () => undefined, writer: null }) })
    const early = await other.open('gens/00000004/unit-00000000')
    expect(early.localFd).toBeTypeOf('number') // the disk file
    await migrate(r, ['gens/00000004/unit-00000000'])
    expect(fs.existsSync(path.join(r.dir, 'repo/gens/00000004/unit-00000000'))).toBe(false)
    expect((await early.read({ offset: 0, length: data.length })).equals(data)).toBe(true)
    await early.close()
    expect(otherCatalog.entry('gens/00000004/unit-00000000')).toBeUndefined()
    expect((await other.get('gens/00000004/unit-00000000')).equals(data)).toBe(true)
  })

  it('a corrupt record on tape is detected at recall (SHA-256), fails EIO with a clear message, and is never served or cached', async () => {
    const r = rig()
    const good = blob(1 << 20)
    const bad = blob(2 << 20)
    await r.hot.put('gens/00000005/unit-00000000', good)
    await r.hot.put('gens/00000005/unit-00000001', bad)
    await migrate(r, ['gens/00000005/unit-00000000', 'gens/00000005/unit-00000001'])
    // flip one byte of the second unit where the cartridge file stores it
    await r.tape.close() // the engine gives the drive (and the cartridge file) back
    const cart = path.join(r.dir, 'vtl/cartridges/BFS001L9.tape')
    const bytes = fs.readFileSync(cart)
    const at = bytes.indexOf(bad.subarray(1_500_000, 1_500_064))
    expect(at).toBeGreaterThan(0)
    bytes[at + 10]! ^= 0x01
    fs.writeFileSync(cart, bytes)
    const tape = new TapeStore({ tier: 'tape1', library: r.lib, catalog: new RepoTapeCatalog(r.hot), engine: { windowMs: 0 } })
    cleanups.push(() => tape.close())
    const tiered = new TieredStore({ hot: r.hot, cold: new CacheStore(r.cache, new TapeSource(tape, r.cache)) })
    const b = await tiered.open('gens/00000005/unit-00000001')
    expect((await b.read({ offset: 0, length: 32 })).equals(bad.subarray(0, 32))).toBe(true) // the copy: fine
    let err: unknown
    try {
      await b.read({ offset: 1_000_000, length: 10 })
    } catch (e) {
      err = e
    }
    await b.close()
    expect(err).toBeInstanceOf(StoreError)
    expect((err as StoreError).code).toBe('EIO')
    expect((err as StoreError).message).toMatch(/^tape BFS001L9 file 0 block \d+ \(.*\): gens\/00000005\/unit-00000001: the bytes read from tape do not match the catalog's SHA-256 \(corrupt on tape\); not served$/)
    expect(r.cache.has('gens/00000005/unit-00000001')).toBe(false)
    const cached = path.join(r.dir, 'cache/data/gens/00000005')
    expect(fs.existsSync(cached) ? fs.readdirSync(cached) : []).toEqual([])
    // the other unit of the same tape file reads fine
    expect((await tiered.get('gens/00000005/unit-00000000')).equals(good)).toBe(true)
  })

  it('offline eio: a range on tape fails EIO at once (nothing recalled); the copies and cached units still read', async () => {
    const r = rig()
    const data = blob(1 << 20)
    await r.hot.put('gens/00000007/unit-00000000', data)
    await r.hot.put('gens/00000007/unit-00000001', blob(1 << 20))
    await migrate(r, ['gens/00000007/unit-00000000', 'gens/00000007/unit-00000001'])
    await Promise.all(r.tiered.prefetch(['gens/00000007/unit-00000001']).values())
    const served = reads(r)
    const eio = new TieredStore({ hot: r.hot, cold: r.cold, offline: 'eio' })
    const b = await eio.open('gens/00000007/unit-00000000')
    expect((await b.read({ offset: 0, length: 32 })).equals(data.subarray(0, 32))).toBe(true)
    const e = await b.read({ offset: 5000, length: 10 }).then(() => null, (x: StoreError) => x)
    await b.close()
    expect(e?.code).toBe('EIO')
    expect(e?.message).toMatch(/gens\/00000007\/unit-00000000: on tape and not in the buffer cache \(offline: eio; recall it first\)$/)
    expect((await eio.get('gens/00000007/unit-00000001', { offset: 5000, length: 10 })).length).toBe(10)
    expect(reads(r)).toBe(served)
  })

  it('writes go to disk; a create over a tape-resident key is EEXIST', async () => {
    const r = rig()
    await r.hot.put('gens/00000006/unit-00000000', blob(100_000))
    await migrate(r, ['gens/00000006/unit-00000000'])
    let err: unknown
    try {
      await r.tiered.put('gens/00000006/unit-00000000', Buffer.from('x'))
    } catch (e) {
      err = e
    }
    expect((err as StoreError).code).toBe('EEXIST')
    await r.tiered.put('gens/00000006/other', Buffer.from('x'))
    expect(fs.readFileSync(path.join(r.dir, 'repo/gens/00000006/other'), 'utf8')).toBe('x')
  })
})

describe('buffer cache', () => {
  const fill = async (c: BufferCache, key: string, bytes: number): Promise<void> => c.insert(key, '', [Buffer.alloc(bytes, 7)])

  it('resists a scan: entries read twice stay while a stream of once-read entries passes through', async () => {
    const dir = path.join(work, `c${n++}`)
    const c = BufferCache.open(dir, { owner: true, limitBytes: 10 << 20 })
    cleanups.push(() => c.close())
    // the working set: 4 units of 1 MiB, each used again after its recall
    for (let i = 0; i < 4; i++) {
      await fill(c, `ws/u${i}`, 1 << 20)
      c.touch(`ws/u${i}`)
    }
    // a scan: 30 units read once each (a find | xargs cat, a restore of something else)
    for (let i = 0; i < 30; i++) await fill(c, `scan/u${i}`, 1 << 20)
    for (let i = 0; i < 4; i++) expect(c.has(`ws/u${i}`), `ws/u${i}`).toBe(true)
    const st = c.stats()
    expect(st.usedBytes).toBeLessThanOrEqual(10 << 20)
    expect(st.protectedBytes).toBe(4 << 20)
    expect(st.evictions).toBe(24)
    expect(fs.readdirSync(path.join(dir, 'data/scan')).length).toBe(6)
  })

  it('never evicts a pinned entry (over the limit rather); unpinned, it goes', async () => {
    const c = BufferCache.open(path.join(work, `c${n++}`), { owner: true, limitBytes: 3 << 20 })
    cleanups.push(() => c.close())
    for (let i = 0; i < 3; i++) c.pin(`p/u${i}`, 'restore-1') // pinned before they arrive, as a restore's plan
    for (let i = 0; i < 3; i++) await fill(c, `p/u${i}`, 1 << 20)
    await fill(c, 'other', 1 << 20)
    for (let i = 0; i < 3; i++) expect(c.has(`p/u${i}`)).toBe(true)
    expect(c.has('other')).toBe(false)
    c.pin('p/u3', 'restore-1')
    await fill(c, 'p/u3', 1 << 20)
    expect(c.stats().usedBytes).toBe(4 << 20) // over the limit: everything is pinned
    c.unpin('p/u0', 'restore-1')
    expect(c.has('p/u0')).toBe(false)
    expect(c.stats().usedBytes).toBe(3 << 20)
    c.unpinHolder('restore-1')
    expect(c.stats().pinnedKeys).toBe(0)
  })

  it('survives a restart with its order; a second owner is refused; a half-written entry is never served and is removed by the next owner', async () => {
    const dir = path.join(work, `c${n++}`)
    const c = BufferCache.open(dir, { owner: true, limitBytes: 4 << 20 })
    await fill(c, 'a/hot', 1 << 20)
    c.touch('a/hot')
    await fill(c, 'a/cold', 1 << 20)
    expect(() => BufferCache.open(dir, { owner: true })).toThrow(CacheBusy)
    c.close()
    // what a writer killed mid-entry leaves: a temporary file next to the key (its pid is dead)
    const litter = path.join(dir, 'data/a/new.tmp-4194303-0badc0de')
    fs.writeFileSync(litter, Buffer.alloc(1000))
    const reader = BufferCache.open(dir)
    expect(await reader.openEntry('a/new')).toBeNull()
    expect(reader.has('a/new')).toBe(false)
    const again = BufferCache.open(dir, { owner: true })
    cleanups.push(() => again.close())
    expect(fs.existsSync(litter)).toBe(false)
    expect(again.limitBytes).toBe(4 << 20) // kept in config.json
    expect(again.segmentOf('a/hot')).toBe('protected')
    expect(again.segmentOf('a/cold')).toBe('probation')
    for (let i = 0; i < 4; i++) await fill(again, `b/${i}`, 1 << 20)
    expect(again.has('a/hot')).toBe(true) // protected: the scan took a/cold and older b's
    expect(again.has('a/cold')).toBe(false)
  })
})

/** The Store interface is all TieredStore needs of its disk tier. */
export type _HotIsAStore = Store
