import fs from 'node:fs'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { afterAll, describe, expect, it } from 'vitest'
import { DiskStore } from '../src/store/disk.js'
import { MemStore } from '../src/store/mem.js'
import { FaultyStore } from '../src/store/faulty.js'
import { openStore } from '../src/store/open.js'
import type { Store } from '../src/store/store.js'
import { keys as layoutKeys, MANIFEST_RE as LAYOUT_MANIFEST_RE } from '../src/format/layout.js'
import { keys as repoKeys } from '../src/repo/repository.js'
import { TapeStore } from '../src/store/tape.js'
import { BufferCache, CacheStore, TapeSource } from '../src/store/cache.js'
import { TieredStore } from '../src/store/tiered.js'
import { RepoTapeCatalog } from '../src/repo/tapecat.js'
import { VirtualTapeLibrary } from '../src/tape/vtl.js'
import { LTO9 } from '../src/tape/model.js'
import { describeStore, storeError } from './store-conformance.js'
import { ROOT, sh, tmpdir } from './helpers.js'

const work = tmpdir('bfs-store-')
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))
let n = 0
const diskDir = (): string => {
  const d = path.join(work, `s${n++}`)
  fs.mkdirSync(path.join(d, 'root'), { recursive: true })
  return d
}

/** Runs a separate Node process that stages and writes `key` and exits without committing: a killed writer's litter (its pid is dead afterwards). */
function litterFromDeadProcess(s: Store, key: string): Promise<void> {
  const desc = s.describe()
  const code = `
    const { openStore } = await import(${JSON.stringify('file://' + path.join(ROOT, 'dist/store/open.js'))})
    const s = openStore(JSON.parse(process.argv[1]))
    const st = await s.stage(${JSON.stringify(key)})
    await s.writeStaged(st, [Buffer.from('half a unit')])
    process.exit(0)`
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', code, JSON.stringify(desc)], { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    child.stderr.on('data', (b: Buffer) => (err += b))
    child.on('close', (c) => (c === 0 ? resolve() : reject(new Error(`litter writer exited ${c}: ${err}`))))
  })
}

const disk = {
  make: async (): Promise<Store> => DiskStore.create(path.join(diskDir(), 'root')),
  destroy: async (s: Store) => fs.rmSync(path.dirname(s.localRoots()[0]!), { recursive: true, force: true }),
  liveStagedSurvivesSweep: true,
  workerWrites: true,
  localRoots: (s: Store) => [s.where('')],
  outside: (s: Store) => path.dirname(s.where('')),
}
const rootOf = (s: Store): string => (s instanceof FaultyStore ? rootOf(s.inner) : s.where(''))

describeStore('disk', { ...disk, makeLitter: litterFromDeadProcess, localFd: true })

describeStore('mem', {
  make: async () => new MemStore(),
  makeLitter: async (s, key) => {
    const st = await s.stage(key)
    await s.writeStaged(st, [Buffer.from('abandoned')])
  },
  liveStagedSurvivesSweep: false,
  workerWrites: false,
  localFd: false,
  localRoots: () => [],
})

describeStore('faulty (no rules) over disk', {
  make: async () => new FaultyStore(await disk.make(), { seed: 1, rules: [] }),
  destroy: async (s) => fs.rmSync(path.dirname(rootOf(s)), { recursive: true, force: true }),
  makeLitter: litterFromDeadProcess,
  liveStagedSurvivesSweep: true,
  workerWrites: true,
  localFd: false,
  manyKeys: 1000, // the listing is the disk store's, tested with 10,000 above; fsyncs make it slow
  localRoots: (s) => [rootOf(s)],
  outside: (s) => path.dirname(rootOf(s)),
})

describeStore('faulty (no rules, exposeFd) over disk', {
  make: async () => new FaultyStore(await disk.make(), { seed: 1, rules: [], exposeFd: true }),
  destroy: async (s) => fs.rmSync(path.dirname(rootOf(s)), { recursive: true, force: true }),
  makeLitter: litterFromDeadProcess,
  liveStagedSurvivesSweep: true,
  workerWrites: true,
  localFd: true,
  manyKeys: 1000,
  localRoots: (s) => [rootOf(s)],
})

describeStore('faulty (no rules) over mem', {
  make: async () => new FaultyStore(new MemStore(), { seed: 2, rules: [] }),
  makeLitter: async (s, key) => {
    const st = await s.stage(key)
    await s.writeStaged(st, [Buffer.from('abandoned')])
  },
  liveStagedSurvivesSweep: false,
  workerWrites: false,
  localFd: false,
  localRoots: () => [],
})

describeStore('faulty (latency 1-3 ms) over disk', {
  make: async () => new FaultyStore(await disk.make(), { seed: 3, rules: [{ fault: 'latency', latencyMs: [1, 3] }] }),
  destroy: async (s) => fs.rmSync(path.dirname(rootOf(s)), { recursive: true, force: true }),
  makeLitter: litterFromDeadProcess,
  liveStagedSurvivesSweep: true,
  workerWrites: true,
  localFd: false,
  manyKeys: 1000,
  localRoots: (s) => [rootOf(s)],
})

describe('disk store specifics', () => {
  it('a full filesystem is ENOSPC (the CLI says "disk full" by that code), and leaves no temporary file', async () => {
    const d = diskDir()
    const mnt = path.join(d, 'small')
    fs.mkdirSync(mnt)
    const m = await sh(`mount -t tmpfs -o size=1m bfs-store-test '${mnt}'`)
    if (m.code !== 0) throw new Error(`cannot mount a tmpfs for the test: ${m.stderr}`)
    try {
      const s = DiskStore.open(mnt)
      const e = await storeError(s.put('big', Buffer.alloc(2 << 20, 1)))
      expect(e.code).toBe('ENOSPC')
      expect(e.message).toContain(s.where('big'))
      const e2 = await storeError(() => s.sync.putSync('big', Buffer.alloc(2 << 20, 1)))
      expect(e2.code).toBe('ENOSPC')
      const st = await s.stage('staged')
      const e3 = await storeError(s.writeStaged(st, [Buffer.alloc(2 << 20, 1)]))
      expect(e3.code).toBe('ENOSPC')
      expect(fs.readdirSync(mnt)).toEqual([])
      // appended: the first append fits, the second does not
      const ap = await s.stage('appended')
      expect(await s.appendStaged(ap, [Buffer.alloc(256 << 10, 1)], 0)).toBe(256 << 10)
      const e4 = await storeError(s.appendStaged(ap, [Buffer.alloc(2 << 20, 1)], 256 << 10))
      expect(e4.code).toBe('ENOSPC')
      expect(e4.message).toContain(s.where('appended'))
      expect(fs.readdirSync(mnt)).toEqual([])
    } finally {
      await sh(`umount '${mnt}'`)
    }
  })

  it('appendStaged: a staged blob written in several appends is invisible until committed, then holds them in order; abort leaves nothing', async () => {
    const s = DiskStore.create(path.join(diskDir(), 'root'))
    const st = await s.stage('gens/00000001/pack-00000000')
    expect(await s.appendStaged(st, [Buffer.from('head'), Buffer.from('-a')], 0)).toBe(6)
    expect(await s.appendStaged(st, [], 6)).toBe(0)
    expect(await s.appendStaged(st, [Buffer.from('-b')], 6)).toBe(2)
    expect(await s.has('gens/00000001/pack-00000000')).toBe(false)
    expect(await s.list('gens/00000001')).toEqual([])
    await s.commitStaged(st)
    expect((await s.get('gens/00000001/pack-00000000')).toString()).toBe('head-a-b')
    const ab = await s.stage('gens/00000001/pack-00000001')
    await s.appendStaged(ab, [Buffer.from('x')], 0)
    await s.abortStaged(ab)
    expect(fs.readdirSync(path.join(s.where(''), 'gens/00000001'))).toEqual(['pack-00000000'])
    // a tiered store appends through its disk store
    const t = new TieredStore({ hot: s, cacheDir: path.join(diskDir(), 'cache') })
    const ts = await t.stage('gens/00000001/pack-00000002')
    expect(await t.appendStaged!(ts, [Buffer.from('tiered')], 0)).toBe(6)
    await t.commitStaged(ts)
    expect((await s.get('gens/00000001/pack-00000002')).toString()).toBe('tiered')
    // stores without it: the pack writer holds the pack and writes it once (writeStaged)
    expect(new MemStore().appendStaged).toBeUndefined()
    expect(new FaultyStore(s, { seed: 1, rules: [] }).appendStaged).toBeUndefined()
  })

  it('appendStaged never makes a staged blob again: its temporary file removed or changed between appends fails the append (no blob without its first bytes)', async () => {
    const s = DiskStore.create(path.join(diskDir(), 'root'))
    const st = await s.stage('gens/00000002/pack-00000000')
    expect(await s.appendStaged(st, [Buffer.from('header')], 0)).toBe(6)
    // a second "first" append of the same token: the file exists
    expect((await storeError(s.appendStaged(st, [Buffer.from('again')], 0))).code).toBe('EEXIST')
    // the temporary file changed meanwhile (another writer, a torn copy): the count does not match
    const { tmp } = s.staged(st)
    fs.appendFileSync(tmp, 'x')
    const changed = await storeError(s.appendStaged(st, [Buffer.from('-a')], 6))
    expect(changed.code).toBe('EIO')
    expect(changed.message).toMatch(/holds 7/)
    // removed meanwhile (e.g. another host's sweep): the append fails, nothing is made again
    fs.rmSync(tmp)
    expect((await storeError(s.appendStaged(st, [Buffer.from('-b')], 7))).code).toBe('ENOENT')
    expect(fs.existsSync(tmp)).toBe(false)
    expect(await s.has('gens/00000002/pack-00000000')).toBe(false)
    await expect(s.appendStaged(st, [], -1)).rejects.toThrow(RangeError)
  })

  it('writes temporary names <key>.tmp-<host>-<pid>-<hex>, and sweep() reads the older <pid>-<hex> form too', async () => {
    const s = DiskStore.create(path.join(diskDir(), 'root'))
    const st = await s.stage('gens/00000001/unit-00000000')
    await s.writeStaged(st, [Buffer.from('x')])
    const names = fs.readdirSync(s.where('gens/00000001'))
    expect(names.length).toBe(1)
    const host = (await import('node:os')).hostname()
    const esc = host.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    expect(names[0]).toMatch(new RegExp(`^unit-00000000\\.tmp-${esc}-${process.pid}-[0-9a-f]{8}$`))
    // litter of a dead pid on this host (both name forms), another host's, an unparseable old one
    const dead = 2 ** 22 + 12345 // above pid_max: never alive
    const dir = s.where('gens/00000001')
    fs.writeFileSync(path.join(dir, `unit-00000001.tmp-${dead}-0badc0de`), '')
    fs.writeFileSync(path.join(dir, `unit-00000002.tmp-${host}-${dead}-0badc0de`), '')
    fs.writeFileSync(path.join(dir, `unit-00000003.tmp-other.host-${dead}-0badc0de`), '')
    fs.writeFileSync(path.join(dir, 'unit-00000004.tmp-garbage'), '')
    const old = new Date(Date.now() - 60_000)
    fs.utimesSync(path.join(dir, 'unit-00000004.tmp-garbage'), old, old)
    fs.writeFileSync(path.join(dir, 'unit-00000005.tmp-fresh-garbage'), '')
    expect(await s.sweep()).toBe(3)
    expect(fs.readdirSync(dir).sort()).toEqual([names[0], 'unit-00000003.tmp-other.host-' + dead + '-0badc0de', 'unit-00000005.tmp-fresh-garbage'].sort())
    await s.commitStaged(st)
    expect((await s.get('gens/00000001/unit-00000000')).toString()).toBe('x')
  })

  it('a staged-write token cannot name a file other than a temporary one next to its key', async () => {
    const s = DiskStore.create(path.join(diskDir(), 'root'))
    for (const token of ['config\n../../etc/passwd', 'config\nconfig', 'a/b\nb.tmp-1-ab/../x', 'nonsense', '../x\nx.tmp-1-ab']) {
      let err: unknown
      try {
        await s.writeStaged({ token }, [Buffer.from('x')])
      } catch (e) {
        err = e
      }
      expect(err, token).toBeInstanceOf(TypeError)
    }
  })

  it('open() refuses a missing or non-directory root with ENOENT; create() makes it', async () => {
    const d = diskDir()
    expect((await storeError(() => DiskStore.open(path.join(d, 'nope')))).code).toBe('ENOENT')
    fs.writeFileSync(path.join(d, 'file'), 'x')
    expect((await storeError(() => DiskStore.open(path.join(d, 'file')))).code).toBe('ENOENT')
    const s = DiskStore.create(path.join(d, 'made/deep'))
    expect(fs.statSync(s.root).isDirectory()).toBe(true)
    expect(openStore(s.describe()).where('x')).toBe(s.where('x'))
  })
})

describe('format/layout.ts', () => {
  it('is the one spelling of the keys: repo/repository.ts re-exports it, and keys are what format.md says', () => {
    expect(repoKeys).toBe(layoutKeys)
    expect(layoutKeys.unit(1, 7)).toBe('gens/00000001/unit-00000007')
    expect(layoutKeys.manifest(42)).toBe('manifests/gen-00000042')
    expect(layoutKeys.marker(3)).toBe('gens/00000003/in-progress')
    expect(layoutKeys.configCopy).toBe('config-copy')
    expect(LAYOUT_MANIFEST_RE.test('gen-00000001')).toBe(true)
    expect(LAYOUT_MANIFEST_RE.test('gen-00000001.tmp-1-ab')).toBe(false)
  })
})

// ---- the tape tier (issue 13): a virtual tape library with clock scale 0, its catalog in a disk store

/** A tape store on a fresh one-drive library (clock scale 0), its catalog records in a disk store beside it. */
async function tapeStore(): Promise<TapeStore> {
  const d = diskDir()
  VirtualTapeLibrary.create(path.join(d, 'vtl'), { model: LTO9, cartridges: 2, drives: 1, clockScale: 0 })
  const meta = DiskStore.create(path.join(d, 'meta'))
  return new TapeStore({ tier: 'tape', library: VirtualTapeLibrary.open(path.join(d, 'vtl')), catalog: new RepoTapeCatalog(meta), engine: { windowMs: 0, lingerMs: 50 } })
}

describeStore('tape (virtual library, clock 0)', {
  make: tapeStore,
  destroy: async (s) => {
    const t = s as TapeStore
    await t.close()
    await t.library.close()
    fs.rmSync(path.dirname(t.library.dir), { recursive: true, force: true })
  },
  makeLitter: async (s, key) => {
    const st = await s.stage(key)
    await s.writeStaged(st, [Buffer.from('abandoned')])
  },
  liveStagedSurvivesSweep: false,
  workerWrites: false,
  localFd: false,
  manyKeys: 100,
  localRoots: (s) => [(s as TapeStore).library.dir],
})

/** The tape store above behind a buffer cache this process owns (tape through cache). */
async function tapeThroughCache(): Promise<CacheStore> {
  const tape = await tapeStore()
  const cache = BufferCache.open(path.join(path.dirname(tape.library.dir), 'cache'), { owner: true, limitBytes: 64 << 20 })
  return new CacheStore(cache, new TapeSource(tape, cache))
}

async function destroyCold(c: CacheStore): Promise<void> {
  const tape = (c.source as TapeSource).tape
  c.cache.close()
  await tape.close()
  await tape.library.close()
  fs.rmSync(path.dirname(tape.library.dir), { recursive: true, force: true })
}

describeStore('tape through a buffer cache', {
  make: tapeThroughCache,
  destroy: async (s) => destroyCold(s as CacheStore),
  makeLitter: async (s, key) => {
    const st = await s.stage(key)
    await s.writeStaged(st, [Buffer.from('abandoned')])
  },
  liveStagedSurvivesSweep: false,
  workerWrites: false,
  localFd: true,
  manyKeys: 100,
  localRoots: (s) => [(s as CacheStore).cache.dir, ((s as CacheStore).source as TapeSource).tape.library.dir],
})

describeStore('tiered: disk, then tape through a buffer cache', {
  make: async () => {
    const cold = await tapeThroughCache()
    const hot = DiskStore.create(path.join(path.dirname(cold.cache.dir), 'hot'))
    return new TieredStore({ hot, cold })
  },
  destroy: async (s) => destroyCold((s as TieredStore).cold!),
  makeLitter: litterFromDeadProcess,
  liveStagedSurvivesSweep: true,
  workerWrites: true,
  localFd: true,
  manyKeys: 1000,
  localRoots: (s) => [(s as TieredStore).hot.where(''), (s as TieredStore).cold!.cache.dir, ((s as TieredStore).cold!.source as TapeSource).tape.library.dir],
  outside: (s) => path.dirname((s as TieredStore).hot.where('')),
})
