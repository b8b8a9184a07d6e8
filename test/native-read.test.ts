import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Repository } from '../src/repo/repository.js'
import { Vfs, VfsError } from '../src/vfs/tree.js'
import { createFastPath, MAX_NATIVE_UNITS, NATIVE_DEFERRED, type FastPath } from '../src/native/fastpath.js'
import { MAX_NATIVE_UNITS as VFS_MAX_NATIVE_UNITS, type NativeSink as NativeReads } from '../src/blocks/native.js'
import { bfs, newRepoF, ROOT, sh, tmpdir } from './helpers.js'

// The C read path (native/nread.c) against the JavaScript reader of the mount (src/vfs),
// byte for byte, without FUSE: FastPath.readForTest runs on this thread the same C read a
// libfuse thread runs. The repositories are made with the real CLI, with tiny units (16
// blocks = 64 KiB) and frames (4 blocks = 16 KiB), so that reads cross frame and unit
// boundaries all the time, and with block incrementals, so that a file's extents point
// into the units of several generations.

const UNIT = 16 * 4096
const FRAME = 4 * 4096
const GENS = 5
let work: string
let repo: string
/** The source files as they were at each generation (refs[g]/name). */
let refs: string[]

let seed = 1
const rnd = (n: number): number => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0
  return Math.floor((seed / 4294967296) * n)
}
const noise = (n: number): Buffer => {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = rnd(256)
  return b
}
const P = (s: string): Buffer => Buffer.from(s, 'latin1')

async function backup(src: string): Promise<void> {
  const r = await bfs(['backup', src, '--unit-blocks', '16', '--frame-blocks', '4'], { repo })
  expect(r.stderr).toBe('')
  expect(r.code).toBe(0)
}

beforeAll(async () => {
  work = tmpdir('bfs-nread-')
  // format 1: the test compares the C read path with format 1's Vfs (Repository)
  repo = await newRepoF(1, path.join(work, 'repo'))
  const src = path.join(work, 'src')
  fs.mkdirSync(src)
  const f = (n: string): string => path.join(src, n)
  // holes: data, 1 MiB hole, data across a unit boundary, hole, an unaligned tail
  const fd = fs.openSync(f('sparse.bin'), 'w')
  fs.writeSync(fd, noise(100_000), 0, 100_000, 0)
  fs.writeSync(fd, noise(300_000), 0, 300_000, (1 << 20) + 777)
  fs.writeSync(fd, noise(5000), 0, 5000, (3 << 20) - 5000)
  fs.closeSync(fd)
  fs.writeFileSync(f('random.bin'), noise(700_000)) // incompressible, 11 units
  fs.writeFileSync(f('text.txt'), Array.from({ length: 40_000 }, (_, i) => `line ${i} of the text`).join('\n'))
  fs.writeFileSync(f('small.txt'), 'small file\n')
  fs.writeFileSync(f('empty'), '')
  refs = []
  for (let g = 1; g <= GENS; g++) {
    if (g > 1) {
      // a block incremental: scattered blocks rewritten, some zeroed, files grown
      for (const name of ['sparse.bin', 'random.bin']) {
        const h = fs.openSync(f(name), 'r+')
        const size = fs.fstatSync(h).size
        for (let k = 0; k < 6; k++) fs.writeSync(h, noise(4096), 0, 4096, rnd(Math.floor(size / 4096)) * 4096 + (k % 2) * 123)
        fs.writeSync(h, Buffer.alloc(4096), 0, 4096, rnd(Math.floor(size / 4096)) * 4096)
        fs.closeSync(h)
      }
      fs.appendFileSync(f('text.txt'), `\ngeneration ${g}\n`.repeat(500))
      if (g === 3) fs.appendFileSync(f('random.bin'), noise(50_000))
      if (g === 4) fs.truncateSync(f('sparse.bin'), (4 << 20) + 1)
    }
    const ref = path.join(work, `ref${g}`)
    expect((await sh(`cp -a --sparse=always '${src}' '${ref}'`)).code).toBe(0)
    refs[g] = ref
    await backup(src)
  }
})
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

/** A vfs of generation `gen` whose reads may be served by `fp` (as the mount wires them). */
function mountLike(gen: number, fp: FastPath): Vfs {
  const vfs = new Vfs(Repository.open(repo), { generation: gen, cacheBytes: 1 << 20, nativeReads: true })
  const sink: NativeReads = fp // the vfs registers units and handles through the fast path's own calls
  vfs.attachNative(sink)
  return vfs
}

it('the vfs and the fast path agree on the unit ids the native read path takes', () => {
  expect(VFS_MAX_NATIVE_UNITS).toBe(MAX_NATIVE_UNITS)
  const fp = createFastPath({ readCacheBytes: 1 << 20 })
  expect(() => fp.unit(MAX_NATIVE_UNITS, 3, 4096, new Float64Array(0))).toThrow(RangeError)
  expect(() => fp.unit(MAX_NATIVE_UNITS - 1, 3, 4096, new Float64Array(0))).not.toThrow()
  expect(fp.close()).toBe(0)
})

/** Reads the whole file in JavaScript, which opens (and so registers natively) every unit it uses. */
async function warm(vfs: Vfs, h: number, size: number): Promise<void> {
  const b = Buffer.alloc(1 << 20)
  for (let pos = 0; pos < size; pos += b.length) await vfs.read(h, b, b.length, pos)
}

describe('the native read path against the JavaScript reader', () => {
  it('reads every generation byte for byte as JavaScript and the source, over holes, frame and unit boundaries', async () => {
    for (let gen = 1; gen <= GENS; gen++) {
      const fp = createFastPath({ readCacheBytes: 8 * FRAME }) // small: frames are evicted and loaded again
      const vfs = mountLike(gen, fp)
      for (const name of ['sparse.bin', 'random.bin', 'text.txt', 'small.txt', 'empty']) {
        const want = fs.readFileSync(path.join(refs[gen]!, name))
        const h = vfs.open(P(`/${name}`))
        await warm(vfs, h, want.length)
        const positions: Array<[number, number]> = []
        // every frame and unit boundary of the first units, from both sides
        for (let b = FRAME; b < Math.min(want.length, 6 * UNIT); b += FRAME) positions.push([b - 1, 2], [b - 100, 5000], [b, FRAME])
        for (let k = 0; k < 150; k++) {
          const pos = k % 4 === 0 ? rnd(Math.ceil(want.length / 4096) + 1) * 4096 : rnd(want.length + 100)
          positions.push([pos, k % 3 === 0 ? 4096 : 1 + rnd(3 * UNIT)])
        }
        positions.push([0, want.length + 10], [want.length, 10], [want.length + 5000, 1])
        for (const [pos, len] of positions) {
          const c = Buffer.alloc(len, 0xaa)
          const j = Buffer.alloc(len, 0x55)
          const n = fp.readForTest(h, c, pos)
          const m = await vfs.read(h, j, len, pos)
          const exp = want.subarray(pos, pos + len)
          expect([name, pos, len, n]).toEqual([name, pos, len, exp.length])
          expect(m).toBe(exp.length)
          expect(c.subarray(0, n).equals(exp)).toBe(true)
          expect(j.subarray(0, m).equals(exp)).toBe(true)
        }
        vfs.release(h)
        // a released handle is no longer served natively
        expect(fp.readForTest(h, Buffer.alloc(10), 0)).toBe(-1)
      }
      const info = fp.info()
      expect(info.fallbacks).toBe(5) // the five reads after release, nothing else
      expect(info.served).toBeGreaterThan(500)
      expect(info.misses).toBeGreaterThan(20)
      expect(info.hits).toBeGreaterThan(20)
      expect(info.cachedBytes).toBeLessThanOrEqual(8 * FRAME)
      // buffers are allocated as the cache grows, then the evicted frames' are reused
      // (native/test/nread_stress.c checks the bound exactly)
      expect(info.buffers).toBeGreaterThan(0)
      expect(info.buffers).toBeLessThan(info.misses)
      expect(fp.close()).toBe(0)
      await vfs.close()
    }
  })

  it('answers -1 (JavaScript serves it) for a unit not open yet, a deferred extent, a corrupt frame and after close', async () => {
    const fp = createFastPath({ readCacheBytes: 1 << 20 })
    const vfs = mountLike(GENS, fp)
    const want = fs.readFileSync(path.join(refs[GENS]!, 'random.bin'))
    const h = vfs.open(P('/random.bin'))
    // the handle is registered at open, its units open in the background: until one is,
    // its reads are JavaScript's
    const before = fp.info().fallbacks
    const far = want.length - 1000
    if (fp.readForTest(h, Buffer.alloc(100), far) === -1) expect(fp.info().fallbacks).toBe(before + 1)
    await warm(vfs, h, want.length)
    const b = Buffer.alloc(100)
    expect(fp.readForTest(h, b, far)).toBe(100)
    expect(b.equals(want.subarray(far, far + 100))).toBe(true)

    // deferred extents: -1 for them
    const fh = 1_000_000
    fp.file(fh, 3 * 4096, new Float64Array([2 * 4096, 4096, NATIVE_DEFERRED, 0]))
    expect(fp.readForTest(fh, Buffer.alloc(4096), 2 * 4096)).toBe(-1)
    // a read that ends in the hole before one is served: it needs nothing of that extent
    const zeros = Buffer.alloc(4096, 1)
    expect(fp.readForTest(fh, zeros, 0)).toBe(4096)
    expect(zeros.equals(Buffer.alloc(4096))).toBe(true)
    expect(fp.readForTest(fh, Buffer.alloc(100), 2 * 4096 - 100)).toBe(100)
    expect(fp.readForTest(fh, Buffer.alloc(8192), 4096)).toBe(-1)
    fp.release(fh)

    // refused tables: not registered, the caller is told
    expect(() => fp.file(fh, 100, new Float64Array([0, 4096, 0, 0, 10, 10, 0, 0]))).toThrow(/bad extent/)
    expect(() => fp.unit(5, 3, 16384, new Float64Array([0, 10, 20000]))).toThrow(/bad frame/)
    expect(() => fp.unit(1 << 22, 3, 16384, new Float64Array([0, 10, 100]))).toThrow(RangeError)

    expect(fp.close()).toBe(0)
    expect(fp.readForTest(h, b, 0)).toBe(-1)
    expect(fp.close()).toBe(0)
    await vfs.close()
  })

  it('a corrupt frame: -1 natively, EIO in JavaScript, the frames around it still served', async () => {
    const r = await newRepoF(1, path.join(work, 'repo-bad'))
    const s = path.join(work, 'bad-src')
    fs.mkdirSync(s)
    const data = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `line ${i}`).join('\n'))
    fs.writeFileSync(path.join(s, 'big'), data)
    expect((await bfs(['backup', s, '--unit-blocks', '16', '--frame-blocks', '4'], { repo: r })).code).toBe(0)
    const unit = path.join(r, 'gens/00000001/unit-00000000')
    const u = fs.readFileSync(unit)
    u[40] ^= 0x55 // inside frame 0 (the header is 32 bytes)
    fs.writeFileSync(unit, u)
    const fp = createFastPath({ readCacheBytes: 1 << 20 })
    const vfs = new Vfs(Repository.open(r), { generation: 1, nativeReads: true })
    vfs.attachNative(fp)
    const h = vfs.open(P('/big'))
    const b = Buffer.alloc(1000)
    expect(await vfs.read(h, b, 1000, 2 * FRAME)).toBe(1000) // opens (and registers) the unit
    expect(fp.readForTest(h, b, 2 * FRAME + 5)).toBe(1000)
    expect(b.equals(data.subarray(2 * FRAME + 5, 2 * FRAME + 1005))).toBe(true)
    const fallbacks = fp.info().fallbacks
    expect(fp.readForTest(h, b, 10)).toBe(-1)
    expect(fp.readForTest(h, b, FRAME - 10)).toBe(-1) // ends in frame 1: still needs frame 0
    expect(fp.info().fallbacks).toBe(fallbacks + 2)
    expect(fp.readForTest(h, b, FRAME)).toBe(1000)
    expect(b.equals(data.subarray(FRAME, FRAME + 1000))).toBe(true)
    await expect(vfs.read(h, b, 1000, 10)).rejects.toSatisfy((e: unknown) => e instanceof VfsError && e.errno === 'EIO' && /frame 0 is corrupt/.test(String((e as Error & { cause: Error }).cause?.message)))
    expect(fp.close()).toBe(0)
    await vfs.close()
  })

  it('retire: a unit read natively gets a second chance, then is unregistered (reads -1) until registered again', async () => {
    const fp = createFastPath({ readCacheBytes: 1 << 20 })
    const vfs = mountLike(1, fp)
    const want = fs.readFileSync(path.join(refs[1]!, 'random.bin'))
    const h = vfs.open(P('/random.bin'))
    await warm(vfs, h, want.length)
    const ids = vfs.repo.manifest(1).units.map((_, u) => vfs.reader.unitId(1, u))
    // read only by JavaScript so far: every unit goes at once
    expect(ids.map((id) => fp.retire(id))).toEqual(ids.map(() => 0))
    const b = Buffer.alloc(500)
    expect(fp.readForTest(h, b, 0)).toBe(-1)
    expect(fp.retire(ids[0]!)).toBe(0) // retired already
    // registered again (as the vfs does when it opens a unit again)
    vfs.reader.attachNative(fp)
    expect(fp.readForTest(h, b, 0)).toBe(500)
    expect(b.equals(want.subarray(0, 500))).toBe(true)
    // the one unit read natively since it was registered is kept once, the others go
    const first = ids.map((id) => fp.retire(id))
    expect(first.filter((x) => x === -1).length).toBe(1)
    expect(first.filter((x) => x === 0).length).toBe(ids.length - 1)
    expect(ids.map((id) => fp.retire(id))).toEqual(ids.map(() => 0))
    expect(fp.readForTest(h, b, 0)).toBe(-1)
    expect(fp.close()).toBe(0)
    await vfs.close()
  })

  it('concurrent misses of one frame from several threads share one load; a unit they hold is not retired', async () => {
    const fp = createFastPath({ readCacheBytes: 1 << 20 })
    const vfs = mountLike(1, fp)
    const want = fs.readFileSync(path.join(refs[1]!, 'random.bin'))
    const h = vfs.open(P('/random.bin'))
    await warm(vfs, h, want.length) // units registered; the C frame cache is still cold
    const ids = vfs.repo.manifest(1).units.map((_, u) => vfs.reader.unitId(1, u))
    const THREADS = 4
    // every load first sleeps 2 s: the threads, released together, all meet the first one
    fp.setTestLoadDelay(2_000_000)
    const go = new Int32Array(new SharedArrayBuffer(8)) // [go, workers ready]
    const url = pathToFileURL(path.join(ROOT, 'dist/native/fastpath.js')).href
    const code = `
      const { workerData, parentPort } = require('node:worker_threads')
      import(workerData.url).then(({ FastPath }) => {
        const fp = FastPath.byId(workerData.id)
        Atomics.add(workerData.go, 1, 1)
        Atomics.wait(workerData.go, 0, 0)
        const b = Buffer.alloc(3000)
        const n = fp.readForTest(workerData.h, b, workerData.pos)
        parentPort.postMessage({ n, b })
      })`
    const pos = 5 * FRAME + 100
    const workers = Array.from({ length: THREADS }, (_, k) => new Worker(code, { eval: true, workerData: { url, id: fp.id, go, h, pos: pos + k * 1000 } }))
    const results = workers.map((w) => new Promise<{ n: number; b: Uint8Array }>((res, rej) => { w.once('message', res); w.once('error', rej) }))
    for (let t = Date.now(); Atomics.load(go, 1) < THREADS && Date.now() - t < 60_000; ) await new Promise((r) => setTimeout(r, 20))
    Atomics.store(go, 0, 1)
    Atomics.notify(go, 0)
    // wait until one thread loads and the others wait for it
    for (let t = Date.now(); fp.info().misses + fp.info().sharedLoads < THREADS && Date.now() - t < 60_000; ) await new Promise((r) => setTimeout(r, 20))
    const during = fp.info()
    // the unit they read is held: a retire refuses (after the second chance its reads earned)
    const held = ids.map((id) => fp.retire(id))
    const holder = held.indexOf(-1)
    expect(held.filter((x) => x === -1).length).toBe(1)
    expect(fp.retire(ids[holder]!)).toBeGreaterThanOrEqual(1)
    const got = await Promise.all(results)
    await Promise.all(workers.map((w) => w.terminate()))
    for (let k = 0; k < THREADS; k++) {
      expect(got[k]!.n).toBe(3000)
      expect(Buffer.from(got[k]!.b).equals(want.subarray(pos + k * 1000, pos + k * 1000 + 3000))).toBe(true)
    }
    const after = fp.info()
    expect(during.misses).toBe(1)
    expect(after.misses).toBe(1)
    expect(after.sharedLoads).toBeGreaterThanOrEqual(1)
    expect(after.sharedLoads + after.hits).toBe(THREADS - 1)
    // released by its readers, the unit goes
    expect(fp.retire(ids[holder]!)).toBe(0)
    expect(fp.close()).toBe(0)
    await vfs.close()
  })
})
