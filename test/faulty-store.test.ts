import fs from 'node:fs'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { DiskStore } from '../src/store/disk.js'
import { MemStore } from '../src/store/mem.js'
import { FaultyStore, globRe } from '../src/store/faulty.js'
import type { FaultRule, Store } from '../src/store/store.js'
import { inWorker, storeError } from './store-conformance.js'
import { tmpdir } from './helpers.js'

const work = tmpdir('bfs-faulty-')
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))
let n = 0
const disk = (): DiskStore => DiskStore.create(path.join(work, `d${n++}`))

async function filled(inner: Store = new MemStore()): Promise<Store> {
  for (let u = 0; u < 3; u++) await inner.put(`gens/00000001/unit-0000000${u}`, Buffer.alloc(10_000, 0x10 + u))
  await inner.put('config', Buffer.from('{"format":1}'))
  return inner
}

const outcome = async (p: Promise<unknown>): Promise<string> => p.then(() => 'ok', (e) => e.code ?? String(e))

describe('FaultyStore', () => {
  it('errors hit only the keys and operations a rule names', async () => {
    const f = new FaultyStore(await filled(), { seed: 1, rules: [{ keys: 'gens/*/unit-00000001', ops: ['read'], fault: 'EIO' }] })
    const u1 = await f.open('gens/00000001/unit-00000001')
    const e = await storeError(u1.read({ offset: 0, length: 10 }))
    expect(e.code).toBe('EIO')
    expect(e.key).toBe('gens/00000001/unit-00000001')
    expect(e.message).toContain('mem:gens/00000001/unit-00000001')
    expect(await outcome(f.get('gens/00000001/unit-00000001'))).toBe('ok') // get is another operation
    const u0 = await f.open('gens/00000001/unit-00000000')
    expect((await u0.read({ offset: 0, length: 10 })).equals(Buffer.alloc(10, 0x10))).toBe(true)
    expect(f.injected).toEqual([{ op: 'read', key: 'gens/00000001/unit-00000001', fault: 'EIO' }])
  })

  it('each fault has its default operations (ENOSPC on writes only, ENOENT on reads, has → false)', async () => {
    const f = new FaultyStore(await filled(), { seed: 1, rules: [{ fault: 'ENOSPC' }, { keys: 'config', fault: 'ENOENT' }] })
    expect(await outcome(f.get('gens/00000001/unit-00000000'))).toBe('ok')
    expect(await outcome(f.put('new', Buffer.from('x')))).toBe('ENOSPC')
    expect(await f.has('new')).toBe(false)
    expect(await outcome(f.get('config'))).toBe('ENOENT')
    expect(await outcome(f.stat('config'))).toBe('ENOENT')
    expect(await f.has('config')).toBe(false)
    expect(f.sync!.hasSync('config')).toBe(false)
    expect(await outcome(f.list(''))).toBe('ok')
    const st = await f.stage('staged')
    expect(await outcome(f.writeStaged(st, [Buffer.from('x')]))).toBe('ENOSPC')
    expect(() => f.sync!.putSync('other', Buffer.from('x'))).toThrow(expect.objectContaining({ code: 'ENOSPC' }))
  })

  it('after N, at most M times', async () => {
    const f = new FaultyStore(await filled(), { seed: 1, rules: [{ keys: 'config', fault: 'EIO', after: 2, times: 3 }] })
    const got: string[] = []
    for (let i = 0; i < 8; i++) got.push(await outcome(f.get('config')))
    expect(got).toEqual(['ok', 'ok', 'EIO', 'EIO', 'EIO', 'ok', 'ok', 'ok'])
    expect(f.injected.length).toBe(3)
  })

  it('a probability is drawn from the seeded PRNG: same seed, same calls fail; another seed, others; about the rate asked', async () => {
    const pattern = async (seed: number): Promise<string> => {
      const f = new FaultyStore(await filled(), { seed, rules: [{ fault: 'EIO', ops: ['get'], probability: 0.3 }] })
      let s = ''
      for (let i = 0; i < 1000; i++) s += (await outcome(f.get('config'))) === 'ok' ? '.' : 'x'
      return s
    }
    const a = await pattern(42)
    expect(await pattern(42)).toBe(a)
    expect(await pattern(43)).not.toBe(a)
    const rate = a.split('').filter((c) => c === 'x').length / a.length
    expect(rate).toBeGreaterThan(0.2)
    expect(rate).toBeLessThan(0.4)
  })

  it("'short': stat, open and get see the blob cut at shortBytes; reads past it are TRUNCATED, reads before it are right", async () => {
    const f = new FaultyStore(await filled(), { seed: 1, rules: [{ keys: 'gens/**', fault: 'short', shortBytes: 4000 }] })
    const k = 'gens/00000001/unit-00000002'
    expect((await f.stat(k)).sizeBytes).toBe(4000)
    expect((await f.get(k)).equals(Buffer.alloc(4000, 0x12))).toBe(true)
    expect((await storeError(f.get(k, { offset: 3000, length: 2000 }))).code).toBe('TRUNCATED')
    const b = await f.open(k)
    expect(b.sizeBytes).toBe(4000)
    expect((await b.read({ offset: 3990, length: 10 })).equals(Buffer.alloc(10, 0x12))).toBe(true)
    expect((await storeError(b.read({ offset: 3990, length: 11 }))).code).toBe('TRUNCATED')
    expect((await f.stat('config')).sizeBytes).toBe(12)
    // on 'read' only: the blob opens at its real size, then reads past the cut fail
    const g = new FaultyStore(await filled(), { seed: 1, rules: [{ fault: 'short', ops: ['read'], shortBytes: 100 }] })
    const r = g.sync!.openSync(k)
    expect(r.sizeBytes).toBe(10_000)
    expect(() => r.readSync({ offset: 50, length: 100 })).toThrow(expect.objectContaining({ code: 'TRUNCATED' }))
    expect(r.readSync({ offset: 0, length: 100 }).length).toBe(100)
  })

  it("'flip' XORs 0xff into seeded positions of what a read returns, the same ones for the same seed", async () => {
    const flipped = async (seed: number): Promise<number[]> => {
      const f = new FaultyStore(await filled(), { seed, rules: [{ fault: 'flip', flipBytes: 1, keys: 'gens/*/unit-00000000' }] })
      const got = await f.get('gens/00000001/unit-00000000')
      const diff: number[] = []
      for (let i = 0; i < got.length; i++) if (got[i] !== 0x10) diff.push(i)
      expect(diff.length).toBe(1)
      expect(got[diff[0]!]).toBe(0x10 ^ 0xff)
      expect((await f.get('config')).toString()).toBe('{"format":1}')
      return diff
    }
    expect(await flipped(5)).toEqual(await flipped(5))
    const f = new FaultyStore(await filled(), { seed: 9, rules: [{ fault: 'flip', flipBytes: 3 }] })
    const r = await f.open('gens/00000001/unit-00000001')
    const into = Buffer.alloc(5000)
    const got = await r.read({ offset: 0, length: 5000 }, into)
    let d = 0
    for (const x of got) if (x !== 0x11) d++
    expect(d).toBeGreaterThanOrEqual(1) // 3 draws; two on one byte cancel
    expect(d).toBeLessThanOrEqual(3)
  })

  it("'latency' delays async calls with a timer and sync calls by waiting", async () => {
    const f = new FaultyStore(await filled(), { seed: 1, rules: [{ fault: 'latency', latencyMs: 30, keys: 'config' }] })
    let t = process.hrtime.bigint()
    await f.get('config')
    expect(Number(process.hrtime.bigint() - t) / 1e6).toBeGreaterThanOrEqual(29)
    t = process.hrtime.bigint()
    f.sync!.getSync('config')
    expect(Number(process.hrtime.bigint() - t) / 1e6).toBeGreaterThanOrEqual(29)
    // other keys are not delayed (and the event loop runs while a call waits)
    let ticks = 0
    const timer = setInterval(() => ticks++, 1)
    await Promise.all([f.get('config'), f.get('config')])
    clearInterval(timer)
    expect(ticks).toBeGreaterThan(0)
    expect(f.injected.length).toBe(4)
  })

  it("'torn': a put writes half to a temporary file and fails EIO, the key never appears; a torn staged write fails EIO", async () => {
    const inner = disk()
    const f = new FaultyStore(inner, { seed: 1, rules: [{ fault: 'torn', keys: 'gens/**' }] })
    const e = await storeError(f.put('gens/00000002/unit-00000000', Buffer.alloc(8192, 7)))
    expect(e.code).toBe('EIO')
    expect(await f.has('gens/00000002/unit-00000000')).toBe(false)
    expect(await f.list('gens/00000002')).toEqual([])
    const left = fs.readdirSync(inner.where('gens/00000002'))
    expect(left.length).toBe(1)
    expect(fs.statSync(path.join(inner.where('gens/00000002'), left[0]!)).size).toBe(4096)
    const st = await f.stage('gens/00000002/unit-00000001')
    expect((await storeError(f.writeStaged(st, [Buffer.alloc(1000)]))).code).toBe('EIO')
    await f.abortStaged(st)
    expect(fs.readdirSync(inner.where('gens/00000002')).length).toBe(1)
    expect(await outcome(f.put('other', Buffer.from('x')))).toBe('ok')
  })

  it("'unacked': a put or a staged commit lands, then fails EIO (a lost acknowledgement); sync puts too", async () => {
    const inner = disk()
    const f = new FaultyStore(inner, { seed: 1, rules: [{ fault: 'unacked', keys: 'manifests/*' }] })
    const e = await storeError(f.put('manifests/gen-00000001', Buffer.from('m1')))
    expect(e.code).toBe('EIO')
    expect(e.message).toMatch(/injected EIO after the write landed/)
    expect((await inner.get('manifests/gen-00000001')).toString()).toBe('m1')
    expect(() => f.sync!.putSync('manifests/gen-00000002', Buffer.from('m2'), { mode: 'exclusive' })).toThrow(/injected EIO after the write landed/)
    expect(inner.sync.getSync('manifests/gen-00000002').toString()).toBe('m2')
    const st = await f.stage('manifests/gen-00000003')
    await f.writeStaged(st, [Buffer.from('m3')])
    expect((await storeError(f.commitStaged(st))).code).toBe('EIO')
    expect((await inner.get('manifests/gen-00000003')).toString()).toBe('m3')
    expect(await outcome(f.put('runs/00000001', Buffer.from('x')))).toBe('ok')
    expect(f.injected.map((i) => i.fault)).toEqual(['unacked', 'unacked', 'unacked'])
  })

  it('counts every call by operation and key, and hides the descriptor unless exposeFd', async () => {
    const inner = disk()
    await filled(inner)
    const f = new FaultyStore(inner, { seed: 1, rules: [] })
    const b = await f.open('gens/00000001/unit-00000000')
    for (let i = 0; i < 5; i++) await b.read({ offset: i, length: 1 })
    await f.get('config')
    expect(f.count('read', 'gens/*/unit-00000000')).toBe(5)
    expect(f.count('read')).toBe(5)
    expect(f.count('open')).toBe(1)
    expect(f.count('get', 'config')).toBe(1)
    expect(b.localFd).toBeUndefined()
    await b.close()
    f.resetCounts()
    expect(f.count('read')).toBe(0)
    const g = new FaultyStore(inner, { seed: 1, rules: [], exposeFd: true })
    const c = await g.open('config')
    expect(typeof c.localFd).toBe('number')
    await c.close()
  })

  it('describe() carries seed and rules: a worker thread gets the same faults', async () => {
    const inner = disk()
    await filled(inner)
    const rules: FaultRule[] = [{ keys: 'config', fault: 'EIO' }]
    const f = new FaultyStore(inner, { seed: 7, rules })
    expect(f.describe()).toEqual({ kind: 'faulty', seed: 7, rules, exposeFd: false, inner: { kind: 'disk', root: inner.root } })
    const got = await inWorker<string[]>(f.describe(), `
      const out = []
      for (const k of arg) out.push(await store.get(k).then(() => 'ok', (e) => e.code))
      return out`, ['config', 'gens/00000001/unit-00000000'])
    expect(got).toEqual(['EIO', 'ok'])
  })

  it('refuses rules it cannot apply', () => {
    expect(() => new FaultyStore(new MemStore(), { seed: 1, rules: [{ fault: 'nope' as 'EIO' }] })).toThrow(TypeError)
    expect(() => new FaultyStore(new MemStore(), { seed: 1, rules: [{ fault: 'short' }] })).toThrow(TypeError)
  })

  it('key globs: * stays in a segment, ** crosses them, ? is one character', () => {
    expect(globRe('gens/*/unit-*').test('gens/00000001/unit-00000003')).toBe(true)
    expect(globRe('gens/*').test('gens/00000001/unit-00000003')).toBe(false)
    expect(globRe('gens/**').test('gens/00000001/unit-00000003')).toBe(true)
    expect(globRe('unit-0000000?').test('unit-00000003')).toBe(true)
    expect(globRe('unit-0000000?').test('unit-000000034')).toBe(false)
    expect(globRe('a.b').test('aXb')).toBe(false)
  })
})
