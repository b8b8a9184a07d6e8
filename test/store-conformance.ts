/**
 * The store conformance suite (issue 12 plan §4.2, native-notes/store.md "What a new tier
 * must pass"): every Store runs it, through its async face and, when it has one, again
 * through its sync face. A new tier adds one describeStore() line in test/store.test.ts.
 *
 * Worker-thread cases load the compiled store (dist/store/open.js): run `make build` (or tsc) first.
 */
import { randomBytes, createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { StoreError, type BlobStat, type ByteRange, type PutOptions, type Staged, type Store, type StoreErrorCode } from '../src/store/store.js'
import { ROOT } from './helpers.js'

export interface StoreCase {
  make: () => Promise<Store>
  /** Called after each test with the store it made (remove directories). */
  destroy?: (s: Store) => Promise<void>
  /** Leaves litter a killed writer would: a staged write, written and never committed, by a dead writer. */
  makeLitter: (s: Store, key: string) => Promise<void>
  /** Whether a live writer's uncommitted staged write survives sweep() (disk: yes, by its pid; mem: no, see MemStore.sweep). */
  liveStagedSurvivesSweep: boolean
  /** Whether a worker thread's store from describe() can write (mem: a read-only snapshot, EROFS). */
  workerWrites: boolean
  /** Whether localFd is defined for opened blobs. */
  localFd: boolean
  /** Keys for the big-listing test (plan: 10,000; slow tiers fewer). */
  manyKeys?: number
  /** Local roots the store reports (disk: its directory). */
  localRoots: (s: Store) => string[]
  /** A directory beside the store's root for the key-escape sentinel (disk only). */
  outside?: (s: Store) => string | null
}

interface Reader {
  sizeBytes: number
  localFd: number | undefined
  read(r: ByteRange, into?: Buffer): Promise<Buffer>
  close(): Promise<void>
}

/** The async face, or the sync face behind the same shape. */
interface Face {
  name: string
  get(k: string, r?: ByteRange): Promise<Buffer>
  open(k: string): Promise<Reader>
  put(k: string, d: Uint8Array | readonly Uint8Array[], o?: PutOptions): Promise<void>
  writeStaged(s: Staged, d: readonly Uint8Array[]): Promise<number>
  has(k: string): Promise<boolean>
  stat(k: string): Promise<BlobStat>
  list(p: string): Promise<string[]>
  remove(k: string, o?: { recursive?: boolean }): Promise<void>
  flush(p: string): Promise<void>
}

function asyncFace(s: Store): Face {
  return {
    name: 'async',
    get: (k, r) => s.get(k, r),
    open: (k) => s.open(k),
    put: (k, d, o) => s.put(k, d, o),
    writeStaged: (st, d) => s.writeStaged(st, d),
    has: (k) => s.has(k),
    stat: (k) => s.stat(k),
    list: (p) => s.list(p),
    remove: (k, o) => s.remove(k, o),
    flush: (p) => s.flush(p),
  }
}

function syncFace(s: Store): Face {
  const y = s.sync!
  // Each call first yields to the event loop: a test of 1,000 sync reads in a row would
  // otherwise hold this worker's loop for its whole length (82 s on S3 at load 19), and
  // vitest's RPC to the main process times out ("Timeout calling onTaskUpdate").
  const wrap = <A extends unknown[], R>(fn: (...a: A) => R) => async (...a: A): Promise<R> => {
    await new Promise(setImmediate)
    return fn(...a)
  }
  return {
    name: 'sync',
    get: wrap((k: string, r?: ByteRange) => y.getSync(k, r)),
    open: wrap((k: string) => {
      const b = y.openSync(k)
      return { sizeBytes: b.sizeBytes, localFd: b.localFd, read: wrap((r: ByteRange, into?: Buffer) => b.readSync(r, into)), close: wrap(() => b.closeSync()) }
    }),
    put: wrap((k: string, d: Uint8Array | readonly Uint8Array[], o?: PutOptions) => y.putSync(k, d, o)),
    writeStaged: wrap((st: Staged, d: readonly Uint8Array[]) => y.writeStagedSync(st, d)),
    has: wrap((k: string) => y.hasSync(k)),
    stat: wrap((k: string) => y.statSync(k)),
    list: wrap((p: string) => y.listSync(p)),
    remove: wrap((k: string, o?: { recursive?: boolean }) => y.removeSync(k, o)),
    flush: wrap((p: string) => y.flushSync(p)),
  }
}

/** The StoreError a promise (or function) fails with; fails the test if it resolves or throws something else. */
export async function storeError(p: Promise<unknown> | (() => unknown)): Promise<StoreError> {
  let err: unknown
  try {
    await (typeof p === 'function' ? p() : p)
  } catch (e) {
    err = e
  }
  if (!(err instanceof StoreError)) throw new Error(`expected a StoreError, got ${err === undefined ? 'success' : String(err)}`)
  return err
}

async function expectCode(p: Promise<unknown> | (() => unknown), code: StoreErrorCode, key?: string): Promise<StoreError> {
  const e = await storeError(p)
  expect(e.code, e.message).toBe(code)
  if (key !== undefined) expect(e.key).toBe(key)
  expect(e.message).not.toContain('\n')
  return e
}

async function expectTypeError(p: Promise<unknown> | (() => unknown)): Promise<void> {
  let err: unknown
  try {
    await (typeof p === 'function' ? p() : p)
  } catch (e) {
    err = e
  }
  expect(err).toBeInstanceOf(TypeError)
}

const DIST_OPEN = path.join(ROOT, 'dist', 'store', 'open.js')

/** Runs `body` (an async function body with `store`, `arg` and `Buffer` in scope) in a worker thread on openStore(desc); resolves with what it returns. */
export function inWorker<T>(desc: unknown, body: string, arg: unknown = null): Promise<T> {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads')
    ;(async () => {
      const { openStore } = await import(workerData.url)
      const store = openStore(workerData.desc)
      const arg = workerData.arg
      ${body}
    })().then((r) => parentPort.postMessage({ r }), (e) => parentPort.postMessage({ e: { message: e.message, code: e.code, name: e.name } }))`
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { url: 'file://' + DIST_OPEN, desc, arg } })
    w.once('message', (m: { r?: T; e?: { message: string; code: string; name: string } }) => {
      void w.terminate()
      if (m.e) reject(Object.assign(new Error(m.e.message), { code: m.e.code, name: m.e.name }))
      else resolve(m.r as T)
    })
    w.once('error', reject)
  })
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

export function describeStore(name: string, c: StoreCase): void {
  describe(`store conformance: ${name}`, () => {
    it('dist/store/open.js is built (worker cases need it; run make build)', () => {
      expect(fs.existsSync(DIST_OPEN)).toBe(true)
    })

    let store: Store
    beforeEach(async () => {
      store = await c.make()
    })
    afterEach(async () => {
      await c.destroy?.(store)
    })

    for (const faceName of ['async', 'sync'] as const) {
      const face = (): Face => (faceName === 'async' ? asyncFace(store) : syncFace(store))
      const d = faceName === 'async' ? describe : describe
      d(`${faceName} face`, () => {
        const skip = (): boolean => faceName === 'sync' && !store.sync

        it('1. put → get round-trips 0 B, 1 B, 4 KiB, 1 MiB and a 20 MiB multi-part put', async () => {
          if (skip()) return
          const f = face()
          for (const [i, n] of [0, 1, 4096, 1 << 20].entries()) {
            const b = randomBytes(n)
            await f.put(`rt/b${i}`, b)
            expect((await f.get(`rt/b${i}`)).equals(b)).toBe(true)
            expect((await f.stat(`rt/b${i}`)).sizeBytes).toBe(n)
          }
          const parts = Array.from({ length: 20 }, () => randomBytes(1 << 20))
          await f.put('rt/big', parts)
          const got = await f.get('rt/big')
          expect(got.length).toBe(20 << 20)
          expect(sha(got)).toBe(sha(Buffer.concat(parts)))
        })

        it('2. ranges: start, middle, last byte, zero length, exactly to the end; past the end TRUNCATED; bad ranges TypeError', async () => {
          if (skip()) return
          const f = face()
          const b = randomBytes(10_000)
          await f.put('r/x', b)
          const r = await f.open('r/x')
          try {
            for (const [o, l] of [[0, 10], [4000, 2000], [9999, 1], [500, 0], [0, 10_000], [7000, 3000], [10_000, 0]] as const) {
              expect((await f.get('r/x', { offset: o, length: l })).equals(b.subarray(o, o + l))).toBe(true)
              expect((await r.read({ offset: o, length: l })).equals(b.subarray(o, o + l))).toBe(true)
            }
            await expectCode(f.get('r/x', { offset: 9000, length: 1001 }), 'TRUNCATED', 'r/x')
            await expectCode(r.read({ offset: 10_001, length: 0 }), 'TRUNCATED', 'r/x')
            await expectCode(r.read({ offset: 5000, length: 6000 }), 'TRUNCATED', 'r/x')
            for (const bad of [{ offset: -1, length: 1 }, { offset: 0, length: -1 }, { offset: 0.5, length: 1 }, { offset: 0, length: 1.5 }, { offset: NaN, length: 1 }]) {
              await expectTypeError(() => f.get('r/x', bad))
              await expectTypeError(() => r.read(bad))
            }
          } finally {
            await r.close()
          }
        })

        it('3. a missing key: get/open/stat → ENOENT with .key; has → false', async () => {
          if (skip()) return
          const f = face()
          await expectCode(f.get('nope/x'), 'ENOENT', 'nope/x')
          await expectCode(f.open('nope/x'), 'ENOENT', 'nope/x')
          await expectCode(f.stat('nope/x'), 'ENOENT', 'nope/x')
          expect(await f.has('nope/x')).toBe(false)
        })

        it("4. put 'create' over an existing key → EEXIST, old bytes intact", async () => {
          if (skip()) return
          const f = face()
          const old = randomBytes(100)
          await f.put('c/k', old)
          await expectCode(f.put('c/k', randomBytes(50)), 'EEXIST', 'c/k')
          await expectCode(f.put('c/k', randomBytes(50), { mode: 'create' }), 'EEXIST', 'c/k')
          expect((await f.get('c/k')).equals(old)).toBe(true)
          expect(await f.list('c')).toEqual(['c/k'])
        })

        it("5. put 'replace' while 4 readers read in a loop: each sees the old or the new bytes entirely", async () => {
          if (skip()) return
          const f = face()
          const a = Buffer.alloc(1 << 20, 0x41)
          const b = Buffer.alloc((1 << 20) + 4096, 0x42)
          await f.put('rep/k', a)
          let done = false
          const seen = { a: 0, b: 0 }
          const reader = async (): Promise<void> => {
            while (!done) {
              const g = await store.get('rep/k')
              if (g.equals(a)) seen.a++
              else if (g.equals(b)) seen.b++
              else throw new Error(`a reader saw ${g.length} bytes that are neither version`)
              await new Promise((r) => setImmediate(r))
            }
          }
          const readers = [reader(), reader(), reader(), reader()]
          try {
            for (let i = 0; i < 10; i++) {
              await f.put('rep/k', i % 2 ? a : b, { mode: 'replace' })
              await new Promise((r) => setImmediate(r))
            }
          } finally {
            done = true
            await Promise.all(readers)
          }
          expect(seen.a + seen.b).toBeGreaterThan(0)
          expect((await f.get('rep/k')).equals(a)).toBe(true)
          expect(await f.list('rep')).toEqual(['rep/k'])
        })

        it("6. put 'exclusive' from 8 concurrent callers (and 2 worker threads where the store is shared): exactly one wins", async () => {
          if (skip()) return
          const f = face()
          const tries = Array.from({ length: 8 }, (_, i) => f.put('ex/lock', Buffer.from(`writer ${i}`), { mode: 'exclusive' }).then(() => i))
          const desc = store.describe()
          const workers = desc && c.workerWrites
            ? [0, 1].map((w) => inWorker<number>(desc, `await store.put('ex/lock', Buffer.from('worker ' + arg), { mode: 'exclusive' }); return 100 + arg`, w))
            : []
          const results = await Promise.allSettled([...tries, ...workers])
          const won = results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<number>).value)
          expect(won.length).toBe(1)
          for (const r of results) if (r.status === 'rejected') expect((r.reason as StoreError).code).toBe('EEXIST')
          const body = (await f.get('ex/lock')).toString()
          expect(body).toBe(won[0]! >= 100 ? `worker ${won[0]! - 100}` : `writer ${won[0]}`)
          expect(await f.list('ex')).toEqual(['ex/lock'])
          // and again once it is gone
          await f.remove('ex/lock')
          await f.put('ex/lock', Buffer.from('again'), { mode: 'exclusive' })
          await expectCode(f.put('ex/lock', Buffer.from('x'), { mode: 'exclusive' }), 'EEXIST', 'ex/lock')
        })

        it('7. stat/has for blobs and for prefixes (a prefix is not a blob)', async () => {
          if (skip()) return
          const f = face()
          await f.put('p/q/r', Buffer.from('x'))
          expect(await f.has('p/q/r')).toBe(true)
          expect(await f.has('p/q')).toBe(false)
          expect(await f.has('p')).toBe(false)
          await expectCode(f.stat('p/q'), 'ENOENT', 'p/q')
          await expectCode(f.get('p/q'), 'ENOENT', 'p/q')
          expect((await f.stat('p/q/r')).sizeBytes).toBe(1)
        })

        it('8. list: direct children, sorted, blobs and sub-prefixes, [] for a missing prefix, never temporary or staged names', async () => {
          if (skip()) return
          const f = face()
          for (const k of ['l/b', 'l/a', 'l/c/d', 'l/c/e/f', 'l/Z', 'top']) await f.put(k, Buffer.from(k))
          expect(await f.list('l')).toEqual(['l/Z', 'l/a', 'l/b', 'l/c'])
          expect(await f.list('l/c')).toEqual(['l/c/d', 'l/c/e'])
          expect(await f.list('')).toEqual(expect.arrayContaining(['l', 'top']))
          expect(await f.list('missing')).toEqual([])
          expect(await f.list('missing/deeper')).toEqual([])
          // a staged write (written, not committed) and a put in flight are never listed
          const st = await store.stage('l/staged')
          await f.writeStaged(st, [randomBytes(1000)])
          expect(await f.list('l')).toEqual(['l/Z', 'l/a', 'l/b', 'l/c'])
          expect(await f.has('l/staged')).toBe(false)
          const big = Array.from({ length: 16 }, () => randomBytes(1 << 20))
          let finished = false
          const put = store.put('l/inflight', big).then(() => {
            finished = true
          })
          const lists: string[][] = []
          while (!finished) {
            lists.push(await f.list('l'))
            await new Promise((r) => setImmediate(r))
          }
          await put
          for (const l of lists) {
            for (const k of l) expect(['l/Z', 'l/a', 'l/b', 'l/c', 'l/inflight']).toContain(k)
          }
          expect(await f.list('l')).toEqual(['l/Z', 'l/a', 'l/b', 'l/c', 'l/inflight'])
          await store.abortStaged(st)
        })

        it('9. remove: a key, a missing key (no error), a prefix recursively; has/list agree afterwards', async () => {
          if (skip()) return
          const f = face()
          for (const k of ['rm/a', 'rm/b', 'rm/sub/c', 'rm/sub/d/e']) await f.put(k, Buffer.from(k))
          await f.remove('rm/a')
          expect(await f.has('rm/a')).toBe(false)
          await f.remove('rm/a')
          await f.remove('never/was')
          await expectTypeError(() => f.remove('rm/sub'))
          expect(await f.has('rm/sub/c')).toBe(true)
          await f.remove('rm/sub', { recursive: true })
          expect(await f.list('rm')).toEqual(['rm/b'])
          expect(await f.has('rm/sub/c')).toBe(false)
          expect(await f.list('rm/sub')).toEqual([])
          await f.remove('rm', { recursive: true })
          expect(await f.list('rm')).toEqual([])
        })

        it('10. key validation: .., leading /, a//b, NUL, \\, empty, temporary-looking → TypeError; nothing outside the root is touched', async () => {
          if (skip()) return
          const f = face()
          const out = c.outside?.(store) ?? null
          const sentinel = out && path.join(out, 'sentinel')
          if (sentinel) fs.writeFileSync(sentinel, 'keep')
          for (const k of ['..', '../sentinel', 'a/../../sentinel', '/abs', 'a//b', 'a/', 'a\0b', 'a\\b', '', '.', 'a/./b', 'x.tmp-1-ab', 'sp ace', 'é']) {
            await expectTypeError(() => f.put(k, Buffer.from('bad')))
            await expectTypeError(() => f.get(k))
            await expectTypeError(() => f.has(k))
            await expectTypeError(() => f.remove(k))
            await expectTypeError(() => f.stat(k))
            await expectTypeError(() => store.stage(k))
          }
          for (const p of ['..', '/', 'a//b', '../x']) {
            await expectTypeError(() => f.list(p))
            await expectTypeError(() => f.remove(p, { recursive: true }))
          }
          if (sentinel) expect(fs.readFileSync(sentinel, 'utf8')).toBe('keep')
        })

        it('11. open: sizeBytes, 1,000 random ranged reads equal get(), concurrent reads on one reader, read after close → error', async () => {
          if (skip()) return
          const f = face()
          const b = randomBytes(300_000)
          await f.put('o/k', b)
          const r = await f.open('o/k')
          expect(r.sizeBytes).toBe(b.length)
          let seed = 7
          const rnd = (n: number): number => {
            seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0
            return seed % n
          }
          const into = Buffer.alloc(70_000)
          for (let i = 0; i < 1000; i++) {
            const o = rnd(b.length)
            const l = rnd(Math.min(65_536, b.length - o) + 1)
            const got = i % 2 ? await r.read({ offset: o, length: l }) : await r.read({ offset: o, length: l }, into)
            expect(got.length).toBe(l)
            if (!got.equals(b.subarray(o, o + l))) throw new Error(`read ${o}+${l} differs`)
          }
          const many = await Promise.all(Array.from({ length: 32 }, (_, i) => r.read({ offset: i * 9000, length: 9000 })))
          many.forEach((g, i) => expect(g.equals(b.subarray(i * 9000, (i + 1) * 9000))).toBe(true))
          await r.close()
          await storeError(() => r.read({ offset: 0, length: 1 }))
        })

        it('12. localFd: when defined, pread at random offsets equals read(); defined exactly where the store promises bytes on local disk', async () => {
          if (skip()) return
          const f = face()
          const b = randomBytes(200_000)
          await f.put('fd/k', b)
          const r = await f.open('fd/k')
          try {
            expect(r.localFd !== undefined).toBe(c.localFd)
            if (r.localFd !== undefined) {
              for (let i = 0; i < 100; i++) {
                const o = (i * 7919) % b.length
                const l = Math.min(4096, b.length - o)
                const dst = Buffer.alloc(l)
                expect(fs.readSync(r.localFd, dst, 0, l, o)).toBe(l)
                expect(dst.equals(b.subarray(o, o + l))).toBe(true)
                expect((await r.read({ offset: o, length: l })).equals(dst)).toBe(true)
              }
            }
          } finally {
            await r.close()
          }
        })

        it('13. staged: invisible before commit, visible after; abort leaves nothing; commit over an existing key → EEXIST; written by a worker, committed here', async () => {
          if (skip()) return
          const f = face()
          const data = [randomBytes(5000), randomBytes(7000)]
          const st = await store.stage('st/a')
          expect(await f.writeStaged(st, data)).toBe(12_000)
          expect(await f.has('st/a')).toBe(false)
          expect(await f.list('st')).toEqual([])
          await expectCode(f.get('st/a'), 'ENOENT', 'st/a')
          await store.commitStaged(st)
          expect((await f.get('st/a')).equals(Buffer.concat(data))).toBe(true)
          expect(await f.list('st')).toEqual(['st/a'])
          // abort
          const ab = await store.stage('st/b')
          await f.writeStaged(ab, [randomBytes(100)])
          await store.abortStaged(ab)
          expect(await f.list('st')).toEqual(['st/a'])
          expect(await f.has('st/b')).toBe(false)
          // over an existing key
          const again = await store.stage('st/a')
          await f.writeStaged(again, [randomBytes(10)])
          await expectCode(store.commitStaged(again), 'EEXIST', 'st/a')
          await store.abortStaged(again)
          expect((await f.get('st/a')).equals(Buffer.concat(data))).toBe(true)
          // written by another thread from the token, committed on this one
          const desc = store.describe()
          if (desc) {
            const w = await store.stage('st/w')
            const body = `return store.sync.writeStagedSync(arg.staged, [Buffer.from(arg.bytes)])`
            const bytes = randomBytes(3000)
            if (c.workerWrites) {
              expect(await inWorker<number>(desc, body, { staged: w, bytes })).toBe(3000)
              expect(await f.has('st/w')).toBe(false)
              await store.commitStaged(w)
              expect((await f.get('st/w')).equals(bytes)).toBe(true)
            } else {
              await expect(inWorker<number>(desc, body, { staged: w, bytes })).rejects.toMatchObject({ code: 'EROFS' })
              await store.abortStaged(w)
            }
          }
        })

        it('14. describe() → openStore() in a worker reads every committed blob byte-identical', async () => {
          if (skip()) return
          const f = face()
          const blobs: Record<string, Buffer> = { 'w/a': randomBytes(1), 'w/b/c': randomBytes(70_000), 'w/e': Buffer.alloc(0), 'w/big': randomBytes(3 << 20) }
          for (const [k, v] of Object.entries(blobs)) await f.put(k, v)
          const desc = store.describe()
          if (!desc) return
          const got = await inWorker<Record<string, string>>(desc, `
            const { createHash } = require('node:crypto')
            const out = {}
            for (const k of arg) {
              const b = store.sync ? store.sync.getSync(k) : await store.get(k)
              const r = await store.open(k)
              const half = await r.read({ offset: Math.floor(r.sizeBytes / 2), length: r.sizeBytes - Math.floor(r.sizeBytes / 2) })
              await r.close()
              out[k] = createHash('sha256').update(b).digest('hex') + ':' + createHash('sha256').update(half).digest('hex')
            }
            return out`, Object.keys(blobs))
          for (const [k, v] of Object.entries(blobs)) expect(got[k]).toBe(sha(v) + ':' + sha(v.subarray(Math.floor(v.length / 2))))
        })

        it('15. sweep() removes only litter (a dead writer\'s staged write), shallow or deep, and counts it', async () => {
          if (skip()) return
          const f = face()
          await f.put('sw/kept', Buffer.from('kept'))
          await c.makeLitter(store, 'sw/litter')
          await c.makeLitter(store, 'sw/deeper/litter')
          const live = await store.stage('sw/live')
          await f.writeStaged(live, [Buffer.from('live')])
          // shallow: sw/litter (mem: and the abandoned sw/live), not sw/deeper/litter
          expect(await store.sweep('sw', { shallow: true })).toBe(c.liveStagedSurvivesSweep ? 1 : 2)
          expect(await store.sweep('sw/deeper')).toBe(1)
          expect(await store.sweep()).toBe(0)
          expect((await f.get('sw/kept')).toString()).toBe('kept')
          if (c.liveStagedSurvivesSweep) {
            await store.commitStaged(live)
            expect((await f.get('sw/live')).toString()).toBe('live')
          }
          expect((await f.list('sw')).filter((k) => k !== 'sw/deeper')).toEqual(c.liveStagedSurvivesSweep ? ['sw/kept', 'sw/live'] : ['sw/kept'])
        })

        it('16. flush(prefix) succeeds on existing and fresh prefixes', async () => {
          if (skip()) return
          const f = face()
          await f.put('fl/a', Buffer.from('a'), { syncListing: false })
          await f.put('fl/b', Buffer.from('b'), { syncListing: false })
          await f.flush('fl')
          await f.flush('')
          await f.flush('fresh/never/used')
          expect(await f.list('fl')).toEqual(['fl/a', 'fl/b'])
        })

        it('18. errors are one-line StoreErrors naming where(key)', async () => {
          if (skip()) return
          const f = face()
          const e = await expectCode(f.get('err/missing'), 'ENOENT', 'err/missing')
          expect(e.message).toContain(store.where('err/missing'))
          await f.put('err/x', Buffer.from('x'))
          const e2 = await expectCode(f.put('err/x', Buffer.from('y')), 'EEXIST', 'err/x')
          expect(e2.message).toContain(store.where('err/x'))
          const e3 = await expectCode(f.get('err/x', { offset: 0, length: 2 }), 'TRUNCATED', 'err/x')
          expect(e3.message).toContain(store.where('err/x'))
        })
      })
    }

    it(`17. many keys under one prefix: list complete and sorted`, async () => {
      const n = c.manyKeys ?? 10_000
      const want: string[] = []
      const one = Buffer.from('k')
      for (let i = 0; i < n; i += 64) {
        const batch: Promise<void>[] = []
        for (let j = i; j < Math.min(n, i + 64); j++) {
          const k = `many/k${String((j * 7919) % n).padStart(6, '0')}`
          want.push(k)
          batch.push(store.put(k, one, { syncListing: false }))
        }
        await Promise.all(batch)
      }
      await store.flush('many')
      expect(await store.list('many')).toEqual(want.sort())
      if (store.sync) expect(store.sync.listSync('many')).toEqual(want)
    })

    it('19. localRoots()', () => {
      expect(store.localRoots()).toEqual(c.localRoots(store))
    })
  })
}
