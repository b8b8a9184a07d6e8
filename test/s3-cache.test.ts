/**
 * The read cache of a repository on S3 (issue 18 item 2, store/objcache.ts): real commands
 * and a real FUSE mount against a real S3 service (`make test-s3`: a local Ceph RGW), the
 * requests counted from BFS_S3_LOG (every request each process and thread sends, one line).
 * Skipped, and saying so, without S3_ENDPOINT.
 */
import fs from 'node:fs'
import { randomBytes } from 'node:crypto'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { S3Store } from '../src/store/s3.js'
import { CHUNK, FILL_CHUNK, ObjectCache, ORDERED_FILLS, PEEK_BYTES, S3CachedStore, SMALL_OBJECT } from '../src/store/objcache.js'
import { DamagedUnit, Recompressor } from '../src/repo/v2/compact.js'
import { isChanged } from '../src/store/store.js'
import { bfs, diffTree, makeTree, sh, tmpdir } from './helpers.js'

const ENDPOINT = process.env.S3_ENDPOINT
const BUCKET = process.env.S3_BUCKET ?? 'bfs-test'
const env: Record<string, string> = ENDPOINT
  ? { AWS_ACCESS_KEY_ID: process.env.S3_ACCESS_KEY ?? process.env.AWS_ACCESS_KEY_ID ?? '', AWS_SECRET_ACCESS_KEY: process.env.S3_SECRET_KEY ?? process.env.AWS_SECRET_ACCESS_KEY ?? '' }
  : {}

if (!ENDPOINT) {
  describe('the read cache of an S3 repository', () => {
    it.skip('SKIPPED: S3_ENDPOINT is not set (make test-s3 runs these against a local Ceph RGW)', () => undefined)
  })
} else {
  const work = tmpdir('bfs-s3cache-')
  const src = path.join(work, 'src')
  const prefix = `cache${Date.now().toString(36)}${process.pid}`
  const repo = `s3:${ENDPOINT}/${BUCKET}/${prefix}`
  const spool = path.join(work, 'spool')
  const log = path.join(work, 'requests.log')
  const mnt = path.join(work, 'mnt')
  let cacheN = 0
  /** A fresh cache directory (each test starts cold). */
  const newCache = (): string => path.join(work, `cache${++cacheN}`)
  const run = (args: string[], cache: string, more: Record<string, string> = {}) => bfs(['--cache-dir', cache, ...args], { repo, env: { ...env, BFS_S3_SPOOL: spool, BFS_S3_LOG: log, ...more } })
  /** The requests logged since the last call (and the log emptied). */
  const requests = (): string[] => {
    const lines = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean) : []
    fs.writeFileSync(log, '')
    return lines
  }
  const unitGets = (lines: string[]): string[] => lines.filter((l) => /^GetObject gens\/\d+\/unit-/.test(l))
  const store = (): S3Store => {
    Object.assign(process.env, env)
    return S3Store.fromUrl(repo, { spoolDir: spool })
  }
  const big = (): string => path.join(src, 'big.bin')

  beforeAll(async () => {
    await store().createBucket()
    await makeTree(src)
    // incompressible and larger than a unit: units bigger than SMALL_OBJECT, filled by ranges
    fs.writeFileSync(big(), randomBytes(24 << 20))
    const init = await run(['init', '--format', '2'], newCache())
    expect(init.code, init.stderr).toBe(0)
    const b = await run(['backup', src], newCache())
    expect(b.code, b.stderr).toBe(0)
    requests()
  }, 300_000)
  afterAll(async () => {
    await sh(`fusermount -u '${mnt}' 2>/dev/null`)
    await store().remove('', { recursive: true })
    fs.rmSync(work, { recursive: true, force: true })
  })

  describe('the read cache of an S3 repository', () => {
    it('a second cat makes no GET of unit data (nor of packs); the bytes are the same', async () => {
      const cache = newCache()
      const a = await run(['cat', 'latest:/big.bin'], cache)
      expect(a.code, a.stderr).toBe(0)
      expect(a.out.equals(fs.readFileSync(big()))).toBe(true)
      const cold = requests()
      expect(unitGets(cold).length).toBeGreaterThan(0)
      // big units are fetched by ranges
      expect(unitGets(cold).some((l) => l.includes(`bytes=${CHUNK}-`))).toBe(true)
      const b = await run(['cat', 'latest:/big.bin'], cache)
      expect(b.code, b.stderr).toBe(0)
      expect(b.stderr).toBe('')
      expect(b.out.equals(fs.readFileSync(big()))).toBe(true)
      const warm = requests()
      expect(unitGets(warm)).toEqual([])
      expect(warm.filter((l) => /^GetObject gens\/\d+\/(pack-|stream|hashes)/.test(l))).toEqual([])
      // mutable keys are never cached: the manifest and the config are read from S3 again
      expect(warm.some((l) => l.startsWith('GetObject manifests/'))).toBe(true)
      const files = fs.readdirSync(path.join(cache), { recursive: true }).map(String)
      expect(files.some((f) => /data\/gens\/\d+\/unit-/.test(f))).toBe(true)
      expect(files.some((f) => /manifests|leases|config/.test(f))).toBe(false)
    }, 120_000)

    it('a cache entry corrupted on disk is detected, dropped and fetched again, never served', async () => {
      const cache = newCache()
      expect((await run(['cat', 'latest:/big.bin'], cache)).code).toBe(0)
      requests()
      const dataDir = fs.readdirSync(cache).map((d) => path.join(cache, d, 'data'))[0]!
      const units = fs.readdirSync(dataDir, { recursive: true }).map(String).filter((f) => /unit-\d+$/.test(f))
      expect(units.length).toBeGreaterThan(0)
      for (const u of units) {
        // one flipped byte in the middle of every cached unit (the size stays)
        const f = path.join(dataDir, u)
        const fd = fs.openSync(f, 'r+')
        const at = Math.floor(fs.fstatSync(fd).size / 2)
        const b = Buffer.alloc(1)
        fs.readSync(fd, b, 0, 1, at)
        b[0] ^= 0x5a
        fs.writeSync(fd, b, 0, 1, at)
        fs.closeSync(fd)
      }
      const c = await run(['cat', 'latest:/big.bin'], cache)
      expect(c.code, c.stderr).toBe(0)
      expect(c.out.equals(fs.readFileSync(big()))).toBe(true)
      expect(c.stderr).toMatch(/cache entry does not match its SHA-256 \(corrupt on local disk\); removed, fetching it again/)
      const again = new Set(unitGets(requests()).map((l) => l.split(' ')[1]))
      expect(again.size).toBe(units.length) // every corrupt unit fetched again
      // and the refetched entries are good: no warning, no GET
      const d = await run(['cat', 'latest:/big.bin'], cache)
      expect(d.stderr).toBe('')
      expect(d.out.equals(fs.readFileSync(big()))).toBe(true)
      expect(unitGets(requests())).toEqual([])
    }, 120_000)

    it('two processes share a cache directory: concurrent cold cats, then a mount (the owner) serves what a cat filled', async () => {
      const cache = newCache()
      const [a, b] = await Promise.all([run(['cat', 'latest:/big.bin'], cache), run(['cat', 'latest:/random.bin'], cache)])
      expect(a.code, a.stderr).toBe(0)
      expect(b.code, b.stderr).toBe(0)
      expect(a.out.equals(fs.readFileSync(big()))).toBe(true)
      expect(b.out.equals(fs.readFileSync(path.join(src, 'random.bin')))).toBe(true)
      requests()
      fs.mkdirSync(mnt, { recursive: true })
      const m = await run(['mount', 'latest', mnt], cache)
      expect(m.code, m.stderr).toBe(0)
      try {
        // the mount holds the cache's owner lock; a cat beside it still fills entries
        const seq = await run(['cat', 'latest:/seq.txt'], cache)
        expect(seq.code, seq.stderr).toBe(0)
        requests()
        expect(fs.readFileSync(path.join(mnt, 'big.bin')).equals(fs.readFileSync(big()))).toBe(true)
        expect(fs.readFileSync(path.join(mnt, 'random.bin')).equals(fs.readFileSync(path.join(src, 'random.bin')))).toBe(true)
        expect(fs.readFileSync(path.join(mnt, 'seq.txt')).equals(fs.readFileSync(path.join(src, 'seq.txt')))).toBe(true)
        expect(unitGets(requests())).toEqual([])
      } finally {
        expect((await run(['umount', mnt], cache)).code).toBe(0)
      }
    }, 180_000)

    it('a FUSE mount of the generation, cold then warm, reads the source tree (diff -r); warm makes no GET of unit data', async () => {
      const cache = newCache()
      fs.mkdirSync(mnt, { recursive: true })
      for (const pass of ['cold', 'warm']) {
        requests()
        const m = await run(['mount', 'latest', mnt], cache)
        expect(m.code, m.stderr).toBe(0)
        try {
          expect(await diffTree(src, mnt), pass).toBe('')
          if (pass === 'cold') {
            // the mount fills units in the background: wait until every unit is kept (a fill cut
            // short by the unmount is fetched again by the next mount, which is what warm tests)
            const s = store()
            const gens = (await s.list('gens')).sort()
            const units = (await s.list(gens[gens.length - 1]!)).filter((k) => /unit-/.test(k)).length
            const kept = (): number => fs.readdirSync(cache, { recursive: true }).map(String).filter((f) => /\/data\/gens\/\d+\/unit-\d+$/.test(f)).length
            for (let i = 0; i < 600 && kept() < units; i++) await new Promise((r) => setTimeout(r, 100))
            expect(kept()).toBe(units)
          }
        } finally {
          expect((await run(['umount', mnt], cache)).code).toBe(0)
        }
        const gets = unitGets(requests())
        if (pass === 'cold') expect(gets.length).toBeGreaterThan(0)
        else expect(gets).toEqual([])
      }
    }, 180_000)

    it('restore through the cache: cold and warm restores equal the source, the warm one without unit GETs', async () => {
      const cache = newCache()
      for (const pass of ['cold', 'warm']) {
        requests()
        const dest = path.join(work, `restored-${pass}`)
        const r = await run(['restore', 'latest', dest], cache)
        expect(r.code, r.stderr).toBe(0)
        expect(await diffTree(src, dest), pass).toBe('')
        const lines = requests()
        const gets = unitGets(lines)
        if (pass === 'cold') {
          expect(gets.length).toBeGreaterThan(0)
          // each unit fetched once, whole, ahead of the workers (Store.warm): no byte twice
          const ranges = new Map<string, Array<[number, number]>>()
          for (const l of gets) {
            const [, key, a, b] = /^GetObject (\S+) bytes=(\d+)-(\d+)/.exec(l) ?? []
            expect(key, l).toBeDefined()
            ranges.set(key!, [...(ranges.get(key!) ?? []), [Number(a), Number(b)]])
          }
          for (const [key, rs] of ranges) {
            rs.sort((x, y) => x[0] - y[0])
            for (let i = 1; i < rs.length; i++) expect(rs[i]![0], `${key}: a byte fetched twice`).toBeGreaterThan(rs[i - 1]![1])
          }
          // a pack the tree opens again and again is peeked at (its two ends) once, then read
          // through its fill (readingAll): before, every open of it peeked again
          const peeks = new Map<string, number>()
          for (const l of lines.filter((x) => /^GetObject gens\/\d+\/pack-\S+ bytes=-/.test(x))) peeks.set(l.split(' ')[1]!, (peeks.get(l.split(' ')[1]!) ?? 0) + 1)
          for (const [key, n] of peeks) expect(n, `${key} peeked ${n} times`).toBe(1)
        } else expect(gets).toEqual([])
      }
    }, 180_000)

    it('store level: a large object reads right before its fill is in, then from the entry (a descriptor); a small one is one GET', async () => {
      Object.assign(process.env, env)
      const dir = newCache()
      const s = new S3CachedStore(S3Store.fromUrl(repo, { spoolDir: spool }), dir, () => ObjectCache.open(dir))
      try {
        const gens = (await s.list('gens')).sort()
        const keys = (await s.list(gens[gens.length - 1]!)).filter((k) => /unit-/.test(k))
        let large: string | undefined
        for (const k of keys) if ((await s.stat(k)).sizeBytes > SMALL_OBJECT) large = k
        expect(large).toBeDefined()
        const whole = await store().get(large!)
        const b = await s.open(large!)
        expect(b.localFd).toBeUndefined()
        // the middle: not in what the open fetched (the first and last 64 KiB), so the read starts the fill
        const r = { offset: Math.floor(whole.length / 2), length: 4096 }
        expect((await b.read(r)).equals(whole.subarray(r.offset, r.offset + r.length))).toBe(true)
        await s.settle()
        expect(b.localFd).toBeTypeOf('number')
        expect((await b.read(r)).equals(whole.subarray(r.offset, r.offset + r.length))).toBe(true)
        await b.close()
        const b2 = await s.open(large!)
        expect(b2.localFd).toBeTypeOf('number')
        expect((await b2.read({ offset: 0, length: whole.length })).equals(whole)).toBe(true)
        await b2.close()
        expect(s.objects.counters.fills).toBe(1)
        // not cacheable: manifests and leases go to S3 every time
        const man = (await s.list('manifests'))[0]!
        await s.get(man)
        expect(fs.existsSync(path.join(dir, 'data', man))).toBe(false)
      } finally {
        s.close()
      }
    }, 60_000)

    it('store level: closing the store ends a fill that was still waiting to start (its promise settles; nothing is fetched after the close)', async () => {
      Object.assign(process.env, env)
      const dir = newCache()
      // reads "never" pause, so the fill stays queued until the close
      const s = new S3CachedStore(S3Store.fromUrl(repo, { spoolDir: spool }), dir, () => ObjectCache.open(dir), { idleMs: 600_000, deferMs: 600_000 })
      let closed = false
      try {
        const gens = (await s.list('gens')).sort()
        const keys = (await s.list(gens[gens.length - 1]!)).filter((k) => /unit-/.test(k))
        let large: string | undefined
        for (const k of keys) if ((await s.stat(k)).sizeBytes > SMALL_OBJECT) large = k
        const whole = await store().get(large!)
        const b = await s.open(large!)
        const r = { offset: Math.floor(whole.length / 2), length: 4096 }
        expect((await b.read(r)).equals(whole.subarray(r.offset, r.offset + r.length))).toBe(true)
        expect(s.fillState).toEqual({ running: 0, queued: 1 })
        await b.close()
        s.close()
        closed = true
        // settle() waits for every fill: before the fix the queued one never settled and this hung
        const outcome = await Promise.race([s.settle().then(() => 'settled'), new Promise((r) => setTimeout(() => r('hung'), 30_000))])
        expect(outcome).toBe('settled')
        expect(s.fillState).toEqual({ running: 0, queued: 0 })
        expect(fs.existsSync(path.join(dir, 'data', large!))).toBe(false)
      } finally {
        if (!closed) s.close()
      }
    }, 60_000)

    it('store level: a fill waits while reads need GETs (a cold read is one GET, not one behind a fill); it starts once reads pause, or after its longest wait', async () => {
      // the fill thread (a new worker of this process) logs its GETs; this thread's were set up without a log
      Object.assign(process.env, env, { BFS_S3_LOG: log })
      const gens = (await store().list('gens')).sort()
      const keys = (await store().list(gens[gens.length - 1]!)).filter((k) => /unit-/.test(k))
      let large: string | undefined
      for (const k of keys) if ((await store().stat(k)).sizeBytes > SMALL_OBJECT) large = k
      const whole = await store().get(large!)
      const mid = { offset: Math.floor(whole.length / 2), length: 4096 }
      const fillGets = (lines: string[]): string[] => lines.filter((l) => l.startsWith(`GetObject ${large} bytes=0-${FILL_CHUNK - 1} `))
      const kept = (dir: string): boolean => fs.existsSync(path.join(dir, 'data', large!))
      const until = async (ok: () => boolean): Promise<void> => {
        for (let i = 0; i < 600 && !ok(); i++) await new Promise((r) => setTimeout(r, 100))
      }
      for (const pace of [{ idleMs: 60_000, deferMs: 60_000 }, { idleMs: 100, deferMs: 60_000 }, { idleMs: 60_000, deferMs: 300 }]) {
        const dir = newCache()
        const s = new S3CachedStore(S3Store.fromUrl(repo, { spoolDir: spool }), dir, () => ObjectCache.open(dir), pace)
        try {
          requests()
          const b = await s.open(large!)
          expect((await b.read(mid)).equals(whole.subarray(mid.offset, mid.offset + mid.length))).toBe(true)
          expect(s.fillState.queued + s.fillState.running).toBe(1)
          if (pace.idleMs === 60_000 && pace.deferMs === 60_000) {
            // reads going on: each is one ranged GET, the fill stays queued
            for (const off of [0, 1 << 20, 2 << 20, whole.length - 8192]) {
              expect((await b.read({ offset: off, length: 8192 })).equals(whole.subarray(off, off + 8192))).toBe(true)
            }
            expect(s.fillState).toEqual({ running: 0, queued: 1 })
            expect(fillGets(requests())).toEqual([])
            expect(b.localFd).toBeUndefined()
            // settle() starts it
            await s.settle()
            expect(kept(dir)).toBe(true)
            expect(fillGets(requests()).length).toBe(1)
          } else {
            // idle for idleMs, or deferMs waited: the fill starts by itself, by FILL_CHUNK ranges
            await until(() => kept(dir))
            expect(kept(dir)).toBe(true)
            await s.settle()
            expect(fillGets(requests()).length).toBe(1)
          }
          expect(b.localFd).toBeTypeOf('number')
          expect((await b.read(mid)).equals(whole.subarray(mid.offset, mid.offset + mid.length))).toBe(true)
          await b.close()
        } finally {
          s.close()
        }
      }
      delete process.env.BFS_S3_LOG
    }, 120_000)

    /** The units of the latest generation, and each one's bytes. */
    const latestUnits = async (): Promise<Array<{ key: string; bytes: Buffer }>> => {
      const gens = (await store().list('gens')).sort()
      const keys = (await store().list(gens[gens.length - 1]!)).filter((k) => /unit-/.test(k))
      return Promise.all(keys.map(async (key) => ({ key, bytes: await store().get(key) })))
    }
    /** 4 KiB of `file` at each offset, through the mount. */
    const preads = (file: string, offsets: number[]): Buffer[] => {
      const fd = fs.openSync(file, 'r')
      try {
        return offsets.map((off) => {
          const b = Buffer.alloc(4096)
          expect(fs.readSync(fd, b, 0, 4096, off)).toBe(4096)
          return b
        })
      } finally {
        fs.closeSync(fd)
      }
    }
    const isPeek = (l: string): boolean => l.includes(` bytes=-${PEEK_BYTES} `) || l.includes(` bytes=0-${PEEK_BYTES - 1} `)
    /** A fill's range (FILL_CHUNK-aligned); a frame of a unit never starts at a multiple of it (a unit's header comes first). */
    const isFill = (l: string): boolean => Number(/ bytes=(\d+)-/.exec(l)?.[1] ?? -1) % FILL_CHUNK === 0

    it('unit indexes are kept: a later mount reads a cold frame with one GET and no peek; units replaced since (new ETags) are detected, their indexes read again, the bytes right', async () => {
      const cache = newCache()
      fs.mkdirSync(mnt, { recursive: true })
      const want = fs.readFileSync(big())
      // one 4 KiB read in frames all over big.bin (24 MiB: two units), each in a frame of its own
      const offsets = [4096, (5 << 20) + 123 * 4096, (13 << 20) + 7 * 4096, (21 << 20) + 4096, want.length - 4096]
      const mountAndRead = async (): Promise<void> => {
        const m = await run(['mount', 'latest', mnt], cache)
        expect(m.code, m.stderr).toBe(0)
        try {
          const got = preads(path.join(mnt, 'big.bin'), offsets)
          offsets.forEach((off, i) => expect(got[i]!.equals(want.subarray(off, off + 4096)), `at ${off}`).toBe(true))
        } finally {
          expect((await run(['umount', mnt], cache)).code).toBe(0)
        }
      }
      const sub = (): string => path.join(cache, fs.readdirSync(cache).find((d) => d.startsWith('s3-'))!)
      const records = (): string[] => fs.readdirSync(path.join(sub(), 'indexes'), { recursive: true }).map(String).filter((f) => /unit-\d+$/.test(f)).sort()
      /** Unit data leaves the cache as an eviction would take it; the index records stay. */
      const evictData = (): void => {
        for (const d of ['data', 'meta']) fs.rmSync(path.join(sub(), d, 'gens'), { recursive: true, force: true })
      }
      const units = await latestUnits()

      // 1. cold, nothing kept: every unit of the file is opened (peeked), and its index kept
      requests()
      await mountAndRead()
      expect(unitGets(requests()).filter(isPeek).length).toBeGreaterThan(0)
      expect(records()).toEqual(units.map((u) => u.key).sort())

      // 2. the data gone, the indexes kept: no peek, one GET per read (its frame)
      evictData()
      await mountAndRead()
      const gets = unitGets(requests()).filter((l) => !isFill(l))
      expect(gets.filter(isPeek)).toEqual([])
      expect(gets.length).toBe(offsets.length)

      // 3. every unit replaced as compact does (a v2 unit, revision + 1, level 12): written
      // as v1 units by the backup, the frames now start 64 bytes later, so the kept indexes
      // point at the wrong bytes — each read through one must fail If-Match and open again
      for (const u of units) {
        expect(u.bytes.readUInt16LE(8)).toBe(1)
        const [stream, unit] = [Number(u.key.split('/')[1]), Number(/unit-(\d+)/.exec(u.key)![1])]
        let parts: Buffer[] | undefined
        for (const alg of ['xxh64', 'sha256-64'] as const) {
          try {
            parts = new Recompressor(12, alg, 0n).rewrite(u.bytes, u.key, { stream, unitIndex: unit }).parts
            break
          } catch (err) {
            if (!(err instanceof DamagedUnit)) throw err
          }
        }
        const next = Buffer.concat(parts!)
        expect(next.readUInt16LE(8)).toBe(2)
        await store().put(u.key, next, { mode: 'replace' })
      }
      evictData()
      requests()
      await mountAndRead()
      const again = unitGets(requests())
      // each unit read: its stale index found out, the new one peeked
      expect(new Set(again.filter(isPeek).map((l) => l.split(' ')[1])).size).toBe(2)
      // and kept: a fourth mount reads the new versions with one GET each again
      evictData()
      await mountAndRead()
      const fourth = unitGets(requests()).filter((l) => !isFill(l))
      expect(fourth.filter(isPeek)).toEqual([])
      expect(fourth.length).toBe(offsets.length)
      // the whole file, cold, against the source
      evictData()
      const m = await run(['mount', 'latest', mnt], cache)
      expect(m.code, m.stderr).toBe(0)
      try {
        expect(fs.readFileSync(path.join(mnt, 'big.bin')).equals(want)).toBe(true)
      } finally {
        expect((await run(['umount', mnt], cache)).code).toBe(0)
      }
    }, 180_000)

    it('store level: an index record is used only as what it is — a corrupt one is removed and the object peeked; a stale one fails its first frame read (changed) and is dropped', async () => {
      Object.assign(process.env, env)
      const dir = newCache()
      const warned: string[] = []
      const s = new S3CachedStore(S3Store.fromUrl(repo, { spoolDir: spool }), dir, () => ObjectCache.open(dir, { warn: (m) => warned.push(m) }), { idleMs: 600_000, deferMs: 600_000 })
      try {
        const units = await latestUnits()
        const u = units.find((x) => x.bytes.length > 2 * PEEK_BYTES)!
        const recordFile = path.join(dir, 'indexes', u.key)
        // an open reads the header and the tail, and says the index was read: kept
        const b = await s.open(u.key)
        const head = await b.read({ offset: 0, length: 96 })
        const tail = await b.read({ offset: u.bytes.length - 4096, length: 4096 })
        b.indexRead?.()
        await b.close()
        for (let i = 0; i < 100 && !fs.existsSync(recordFile); i++) await new Promise((r) => setTimeout(r, 20))
        const rec = await s.objects.readIndex(u.key)
        expect(rec?.size).toBe(u.bytes.length)
        expect(rec?.ranges.map((r) => [r.offset, r.body.length])).toEqual([[u.bytes.length - 4096, 4096], [0, 96]])
        // opened from it: no request, the same bytes; a read past it is a GET
        const b2 = await s.open(u.key)
        expect(s.objects.counters.indexHits).toBe(1)
        expect((await b2.read({ offset: 0, length: 96 })).equals(head)).toBe(true)
        expect((await b2.read({ offset: u.bytes.length - 4096, length: 4096 })).equals(tail)).toBe(true)
        const mid = { offset: Math.floor(u.bytes.length / 2), length: 4096 }
        expect((await b2.read(mid)).equals(u.bytes.subarray(mid.offset, mid.offset + mid.length))).toBe(true)
        await b2.close()
        // a flipped byte in the record: removed, said, not used
        const text = fs.readFileSync(recordFile, 'utf8')
        const j = JSON.parse(text) as { data: string }
        const data = Buffer.from(j.data, 'base64')
        data[5] ^= 1
        fs.writeFileSync(recordFile, JSON.stringify({ ...JSON.parse(text), data: data.toString('base64') }))
        const b3 = await s.open(u.key)
        expect(s.objects.counters.indexHits).toBe(1)
        expect(warned.join('\n')).toMatch(/index record does not check \(corrupt on local disk\); removed/)
        expect(fs.existsSync(recordFile)).toBe(false)
        await b3.close()
        // a record of another version (the ETag of what was there before a replace): its first read past it fails, and it is dropped
        fs.writeFileSync(recordFile, text)
        const stale = JSON.parse(text) as { etag: string }
        expect((await s.objects.readIndex(u.key))?.etag).toBe(stale.etag)
        await store().put(u.key, u.bytes, { mode: 'replace' }) // the same bytes: the same ETag (MD5), so still good
        const b4 = await s.open(u.key)
        expect((await b4.read(mid)).equals(u.bytes.subarray(mid.offset, mid.offset + mid.length))).toBe(true)
        await b4.close()
        const changedBytes = Buffer.from(u.bytes)
        changedBytes[changedBytes.length >> 1] ^= 1 // another version (a test's: no reader reads it as a unit)
        await store().put(u.key, changedBytes, { mode: 'replace' })
        try {
          const b5 = await s.open(u.key)
          expect(s.objects.counters.indexHits).toBe(3)
          const err = await b5.read(mid).then(() => null, (e: unknown) => e)
          expect(isChanged(err)).toBe(true)
          expect(fs.existsSync(recordFile)).toBe(false)
          await b5.close()
        } finally {
          await store().put(u.key, u.bytes, { mode: 'replace' })
        }
      } finally {
        s.close()
      }
    }, 60_000)

    it('store level: an object opened again while its fill is under way is not peeked again; readingAll starts fills at once, and warm() fetches an object whole before its reader opens it', async () => {
      Object.assign(process.env, env)
      const dir = newCache()
      const inner = S3Store.fromUrl(repo, { spoolDir: spool })
      // counted, not changed: an open's peeks are its getRangeMeta calls
      let peeks = 0
      const getRangeMeta = inner.getRangeMeta.bind(inner)
      inner.getRangeMeta = (...a: Parameters<S3Store['getRangeMeta']>) => {
        peeks++
        return getRangeMeta(...a)
      }
      // fills that never start by themselves (no pause of reads is long enough)
      const s = new S3CachedStore(inner, dir, () => ObjectCache.open(dir), { idleMs: 600_000, deferMs: 600_000 })
      try {
        const [u, v] = (await latestUnits()).filter((x) => x.bytes.length > 2 * PEEK_BYTES)
        expect(v).toBeDefined()
        const mid = { offset: Math.floor(u!.bytes.length / 2), length: 4096 }
        const want = u!.bytes.subarray(mid.offset, mid.offset + mid.length)
        const b1 = await s.open(u!.key)
        expect(peeks).toBe(2)
        expect((await b1.read(mid)).equals(want)).toBe(true) // a GET; its fill is asked for (and waits)
        expect(s.fillState).toEqual({ running: 0, queued: 1 })
        const b2 = await s.open(u!.key)
        expect(peeks).toBe(2) // its size and ETag known from the fill asked for: no request
        expect((await b2.read(mid)).equals(want)).toBe(true)
        await b1.close()
        await b2.close()
        // a restore's process: the waiting fill starts now, and the object is kept
        s.readingAll()
        for (let i = 0; i < 300 && !s.objects.present(u!.key); i++) await new Promise((r) => setTimeout(r, 20))
        expect(s.objects.present(u!.key)).toBe(true)
        // warm: whole into the cache without an open (and without a peek); opened, it is the entry
        expect(s.objects.present(v!.key)).toBe(false)
        const b4 = await s.open(v!.key) // opened before (two peeks), read after it is kept
        expect(peeks).toBe(4)
        expect(await s.warm(v!.key)).toBe(true)
        expect(peeks).toBe(4)
        // its first read past the peeks is one GET, and the fill it asks for finds the entry: no second fetch
        const vmid = { offset: Math.floor(v!.bytes.length / 2), length: 4096 }
        expect((await b4.read(vmid)).equals(v!.bytes.subarray(vmid.offset, vmid.offset + vmid.length))).toBe(true)
        expect(s.fillState).toEqual({ running: 0, queued: 0 })
        expect(b4.localFd).toBeTypeOf('number')
        await b4.close()
        const b3 = await s.open(v!.key)
        expect(b3.localFd).toBeTypeOf('number')
        expect((await b3.read({ offset: 0, length: v!.bytes.length })).equals(v!.bytes)).toBe(true)
        await b3.close()
        expect(await s.warm(v!.key)).toBe(true) // kept already: nothing fetched
        expect(await s.warm('config')).toBe(false) // not an object the cache keeps
        // stopFetching (a restore that ends): a fetch under way ends, its warm settles (false
        // unless it was kept already), nothing is left running; a later warm fetches again
        const dir2 = newCache()
        const s2 = new S3CachedStore(S3Store.fromUrl(repo, { spoolDir: spool }), dir2, () => ObjectCache.open(dir2))
        try {
          s2.readingAll()
          const p = s2.warm(u!.key)
          await new Promise((r) => setTimeout(r, 1))
          s2.stopFetching()
          const got = await p
          expect(s2.objects.present(u!.key)).toBe(got)
          expect(s2.fillState).toEqual({ running: 0, queued: 0 })
          expect(await s2.warm(u!.key)).toBe(true)
        } finally {
          s2.close()
        }
      } finally {
        s.close()
      }
    }, 60_000)

    it('store level: warms ahead of need asked for at once are fetched in the fill thread in the order asked, ORDERED_FILLS objects at a time, while the asking thread never turns its event loop; another warm does not wait behind them', async () => {
      Object.assign(process.env, env, { BFS_S3_LOG: log })
      // six objects of 3 MiB (three FILL_CHUNK ranges each) under keys the cache keeps
      const objs = Array.from({ length: 6 }, (_, i) => ({ key: `gens/00000099/unit-${String(i).padStart(8, '0')}`, bytes: randomBytes(3 * FILL_CHUNK) }))
      for (const o of objs) await store().put(o.key, o.bytes)
      // and one a reader needs now (no `ahead`)
      const now = { key: 'gens/00000099/unit-00000099', bytes: randomBytes(3 * FILL_CHUNK) }
      await store().put(now.key, now.bytes)
      const dir = newCache()
      const s = new S3CachedStore(S3Store.fromUrl(repo, { spoolDir: spool }), dir, () => ObjectCache.open(dir))
      try {
        requests()
        s.readingAll()
        const warms = [...objs.map((o) => s.warm(o.key, { ahead: true })), s.warm(now.key)]
        // the fills are posted to the fill thread in the next turns; after that, this thread
        // blocks (as a restore reading its tree synchronously does) until all are kept
        await new Promise((r) => setImmediate(r))
        const wait = new Int32Array(new SharedArrayBuffer(4))
        const t0 = Date.now()
        const all = [...objs, now]
        while (!all.every((o) => s.objects.present(o.key)) && Date.now() - t0 < 120_000) Atomics.wait(wait, 0, 0, 20)
        expect(all.map((o) => s.objects.present(o.key))).toEqual(all.map(() => true))
        expect(await Promise.all(warms)).toEqual(all.map(() => true))
        // each object's GETs (from its first one's start to its last one's end), from the log
        const lines = requests().filter((l) => l.startsWith('GetObject gens/00000099/'))
        const spans = all.map((o) => {
          const mine = lines.filter((l) => l.split(' ')[1] === o.key).map((l) => {
            const t = Number(/ t=([\d.]+)/.exec(l)![1])
            return [t, t + Number(/ ms=([\d.]+)/.exec(l)![1])] as const
          })
          expect(mine.length).toBe(3)
          return { start: Math.min(...mine.map((x) => x[0])), end: Math.max(...mine.map((x) => x[1])) }
        })
        // begun in the order asked, and never more than ORDERED_FILLS under way at once
        const ahead = spans.slice(0, objs.length)
        for (let i = 1; i < ahead.length; i++) expect(ahead[i]!.start).toBeGreaterThanOrEqual(ahead[i - 1]!.start)
        for (const a of ahead) expect(ahead.filter((b) => b.start <= a.start && a.start < b.end).length).toBeLessThanOrEqual(ORDERED_FILLS)
        // the one needed now did not wait for the last of them to start
        expect(spans[objs.length]!.start).toBeLessThan(ahead[ahead.length - 1]!.start)
        // what was kept is what was stored
        for (const o of all) {
          const b = await s.open(o.key)
          expect((await b.read({ offset: 0, length: o.bytes.length })).equals(o.bytes)).toBe(true)
          await b.close()
        }
      } finally {
        s.close()
        for (const o of [...objs, now]) await store().remove(o.key)
        delete process.env.BFS_S3_LOG
      }
    }, 180_000)
  })
}
