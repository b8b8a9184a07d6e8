/**
 * The recall service (one per repository, started on demand, gone when idle, restarted
 * when dead) and `bfs recall` / `bfs tier status`, through real processes, a real
 * repository and a virtual tape library: concurrent clients share one recall per unit,
 * kill -9 of the service mid-recall is survived, kill -9 of a client cancels its requests,
 * a half-written cache entry is never served.
 */
import fs from 'node:fs'
import path from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { spawn } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Repository } from '../src/repo/repository.js'
import { RepoTapeCatalog } from '../src/repo/tapecat.js'
import { cacheDir } from '../src/repo/stores.js'
import { recallServicePaths } from '../src/os/runtime.js'
import { BufferCache, CacheStore } from '../src/store/cache.js'
import { RecallClient, ServiceSource } from '../src/store/recall/client.js'
import { VirtualTapeLibrary } from '../src/tape/vtl.js'
import { TieredStore } from '../src/store/tiered.js'
import { pidAlive } from '../src/os/process.js'
import { BFS, bfs, newRepoF, tmpdir } from './helpers.js'
import { hashTree, readGeneration, unitKeys } from './tape-helpers.js'


let work: string
const started = new Set<number>() // service pids seen, killed in afterAll if still alive
beforeAll(() => {
  work = tmpdir('bfs-recall-')
})
afterAll(async () => {
  for (const pid of started) if (pidAlive(pid)) process.kill(pid, 'SIGKILL')
  fs.rmSync(work, { recursive: true, force: true })
})

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

interface Setup {
  repo: string
  env: Record<string, string>
  expected: Map<number, Map<string, string>>
  vtl: string
}

/** A repository with two generations, both migrated to a tier with the given clock scale; its own runtime dir. */
async function setup(name: string, clockScale: number): Promise<Setup> {
  // format 1: the test reads the repository through format 1's Repository (its tape catalog, data store, buffer cache)
  const repo = await newRepoF(1, path.join(work, name))
  const env = { BFS_RUNTIME_DIR: path.join(work, `${name}-run`), BFS_RECALL_IDLE_S: '2' }
  const src = path.join(work, `${name}-src`)
  const expected = new Map<number, Map<string, string>>()
  for (let g = 1; g <= 2; g++) {
    fs.mkdirSync(src, { recursive: true })
    for (let f = 0; f < 12; f++) {
      if (g > 1 && f % 3) continue
      const b = randomBytes(200_000 + f * 37_000)
      if (f % 2) for (let i = 0; i < b.length; i++) b[i] = 97 + (b[i]! & 7)
      fs.writeFileSync(path.join(src, `f${f}`), b)
    }
    expect((await bfs(['backup', src, '--unit-blocks', '128', '--frame-blocks', '32'], { repo })).code).toBe(0)
    expected.set(g, hashTree(src))
  }
  const vtl = path.join(work, `${name}-vtl`)
  expect((await bfs(['tier', 'add', 'tape1', '--vtl', vtl, '--clock-scale', String(clockScale), '--cartridges', '2'], { repo })).code).toBe(0)
  const m = await bfs(['migrate', 'gen1-2', '--file-size', '2M'], { repo, env: { ...env } })
  expect(m.code, m.stderr).toBe(0)
  return { repo, env, expected, vtl }
}

/** The running service's pid (from its lock file), or null. */
function servicePid(s: Setup): number | null {
  const lock = recallServicePaths(s.repo, s.env).lock
  try {
    const pid = Number(fs.readFileSync(lock, 'utf8').trim())
    if (pid > 0 && pidAlive(pid)) {
      started.add(pid)
      return pid
    }
  } catch {
    // none yet
  }
  return null
}

/** A client in this process, starting the service as the CLI does (a detached `bfs tier serve`). */
function client(s: Setup, o: { cacheBytes?: number } = {}): RecallClient {
  const paths = recallServicePaths(s.repo, s.env)
  return new RecallClient({
    socketPath: paths.socket,
    cacheBytes: o.cacheBytes,
    lingerMs: 200,
    spawn: () => {
      const log = fs.openSync(paths.log, 'a')
      const c = spawn(BFS, ['--repo', s.repo, 'tier', 'serve', '--idle', s.env.BFS_RECALL_IDLE_S!], { detached: true, stdio: ['ignore', log, log], env: { ...process.env, ...s.env } })
      c.unref()
      fs.closeSync(log)
    },
  })
}

/** The repository's data store reading through the service, as cat/restore/mount will. */
function tieredVia(s: Setup, c: RecallClient): TieredStore {
  const repo = Repository.open(s.repo)
  const cache = BufferCache.open(cacheDir(repo))
  return new TieredStore({ hot: repo.store, cold: new CacheStore(cache, new ServiceSource(new RepoTapeCatalog(repo.store), c, cache)) })
}

/** Every cache entry is whole and matches the catalog's SHA-256; no temporary file is left. */
function cacheIsClean(s: Setup): number {
  const repo = Repository.open(s.repo)
  const cat = new RepoTapeCatalog(repo.store)
  let n = 0
  const walk = (dir: string, rel: string): void => {
    for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
      const key = rel ? `${rel}/${d.name}` : d.name
      if (d.isDirectory()) walk(path.join(dir, d.name), key)
      else {
        expect(d.name).not.toContain('.tmp-')
        const e = cat.entry(key)
        expect(e, key).toBeDefined()
        expect(createHash('sha256').update(fs.readFileSync(path.join(dir, d.name))).digest('hex'), key).toBe(e!.sha256)
        n++
      }
    }
  }
  walk(path.join(cacheDir(repo), 'data'), '')
  return n
}

describe('recall service', () => {
  it('starts on demand, serves every reader of the repository, recalls each unit once for concurrent clients, and goes away when idle', async () => {
    const s = await setup('basic', 0)
    expect(servicePid(s)).toBeNull()
    const a = client(s)
    const b = client(s)
    const ta = tieredVia(s, a)
    const tb = tieredVia(s, b)
    // two readers of gen1 at once, each through its own client
    const [ga, gb] = await Promise.all([readGeneration(s.repo, 1, ta), readGeneration(s.repo, 1, tb)])
    for (const [p, h] of s.expected.get(1)!) {
      expect(ga.get(p), p).toBe(h)
      expect(gb.get(p), p).toBe(h)
    }
    expect(a.starts + b.starts).toBeGreaterThanOrEqual(1)
    const pid = servicePid(s)
    expect(pid).not.toBeNull()
    const st = (await a.status())!
    expect(st.pid).toBe(pid)
    const units = unitKeys(s.repo, 1).length
    // one recall per unit however many clients missed it
    expect(st.tiers[0]!.engine.counters.served).toBe(units)
    expect(st.cache.entries).toBe(units)
    expect(cacheIsClean(s)).toBe(units)
    // the CLI's view
    const status = await bfs(['tier', 'status', 'tape1'], { repo: s.repo, env: s.env })
    expect(status.stdout).toMatch(new RegExp(`^recall service: running, pid ${pid} since `, 'm'))
    expect(status.stdout).toMatch(new RegExp(`^buffer cache .*/cache: [\\d.]+ \\w+ of 10\\.0 GiB, ${units} entries`, 'm'))
    expect(status.stdout).toMatch(/^ {4}drive 0: idle, BFS001L9 loaded at block \d+$/m)
    // gen2 in full, now only its own units come from tape
    const g2 = await readGeneration(s.repo, 2, ta)
    for (const [p, h] of s.expected.get(2)!) expect(g2.get(p), p).toBe(h)
    a.close()
    b.close()
    // idle (2 s here): it exits, its socket goes
    await until('the idle service to exit', () => !pidAlive(pid!), 30_000)
    expect(fs.existsSync(recallServicePaths(s.repo, s.env).socket)).toBe(false)
    const after = await bfs(['tier', 'status', 'tape1'], { repo: s.repo, env: s.env })
    expect(after.stdout).toMatch(/^recall service: not running/m)
    expect(after.stdout).toMatch(new RegExp(`^buffer cache .*: [\\d.]+ \\w+ of 10\\.0 GiB, ${units + unitKeys(s.repo, 2).length} entries$`, 'm'))
  })

  it('bfs recall: the estimate first, then everything in the cache; --dry-run touches nothing', async () => {
    const s = await setup('cli', 0)
    const dry = await bfs(['recall', 'gen2', '--dry-run'], { repo: s.repo, env: s.env })
    expect(dry.code, dry.stderr).toBe(0)
    const n = unitKeys(s.repo, 1).length + unitKeys(s.repo, 2).length
    expect(dry.stdout).toMatch(new RegExp(`^gen2: \\d+ units needed: \\d+ on tape \\([\\d.]+ MiB on 1 cartridge: BFS001L9\\), 0 in the buffer cache, 0 on disk\\nestimated tape time .* \\(simulated\\)\\n$`))
    expect(servicePid(s)).toBeNull()
    // neither the estimate nor the status changes anything in the repository
    expect((await bfs(['tier', 'status', 'tape1'], { repo: s.repo, env: s.env })).stdout).toMatch(/^recall service: not running/m)
    expect(fs.existsSync(path.join(s.repo, 'cache'))).toBe(false)
    const r = await bfs(['recall', 'gen2', '--json', '--buffer-cache', '1G'], { repo: s.repo, env: s.env })
    expect(r.code, r.stderr).toBe(0)
    const j = JSON.parse(r.stdout)
    expect(j.recalled).toBe(j.onTape)
    expect(j.failed).toEqual([])
    expect(j.onTape).toBeLessThanOrEqual(n)
    expect(j.tapeSeconds).toBeGreaterThan(0)
    // the estimate is the scheduler's plan: within a few percent of what the library's clock spent
    expect(Math.abs(j.tapeSeconds - j.estimateSeconds) / j.estimateSeconds).toBeLessThan(0.25)
    expect(JSON.parse(fs.readFileSync(path.join(cacheDir(Repository.open(s.repo)), 'config.json'), 'utf8')).limitBytes).toBe(1 << 30)
    const again = await bfs(['recall', 'gen2'], { repo: s.repo, env: s.env })
    expect(again.stdout).toMatch(/in the buffer cache, 0 on disk\nnothing to recall: everything gen2 needs is on disk or in the buffer cache\n$/)
    const bad = await bfs(['recall', 'gen2:nope'], { repo: s.repo, env: s.env })
    expect(bad.code).toBe(1)
    expect(bad.stderr).toBe('bfs: nope: no such file or directory in gen2\n')
    expect(cacheIsClean(s)).toBe(j.onTape)
  })

  it('a corrupt record on tape: bfs recall names the unit and exits 1; the unit is never cached; the rest is recalled', async () => {
    const s = await setup('corrupt', 0)
    const keys = unitKeys(s.repo, 1)
    const bad = keys[1]!
    // flip a byte of that unit where the cartridge file holds it: its bytes are its disk file's, gone now; find them through the catalog's copy of its trailer
    const repo = Repository.open(s.repo)
    const e = new RepoTapeCatalog(repo.store).entry(bad)!
    const cart = path.join(s.vtl, 'cartridges', `${e.loc.cartridge}.tape`)
    const bytes = fs.readFileSync(cart)
    const at = bytes.indexOf(e.tail)
    expect(at).toBeGreaterThan(0)
    bytes[at - 100]! ^= 0x20 // inside its last frame
    fs.writeFileSync(cart, bytes)
    const r = await bfs(['recall', 'gen1'], { repo: s.repo, env: s.env })
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(new RegExp(`^bfs: .*${bad.replace(/\//g, '\\/')}: the bytes read from tape do not match the catalog's SHA-256 \\(corrupt on tape\\); not served$`, 'm'))
    expect(r.stdout).toMatch(new RegExp(`^recalled ${keys.length - 1} units .*; 1 unit failed;`, 'm'))
    expect(fs.existsSync(path.join(cacheDir(repo), 'data', bad))).toBe(false)
    expect(cacheIsClean(s)).toBe(keys.length - 1)
  })

  it('kill -9 of the service during a recall: the client starts another, which completes; a half-written entry is never served', async () => {
    // clock scale 0.02: a locate of ~50 simulated s takes ~1 s of real time
    const s = await setup('killsvc', 0.02)
    const p = spawn(BFS, ['--repo', s.repo, 'recall', 'gen1', '--json'], { env: { ...process.env, ...s.env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    p.stdout.on('data', (d: Buffer) => (out += d))
    p.stderr.on('data', (d: Buffer) => (err += d))
    const exited = new Promise<number | null>((r) => p.once('close', (c) => r(c)))
    await until('the service to start', () => servicePid(s) !== null)
    const first = servicePid(s)!
    // some units in, most not
    const data = path.join(cacheDir(Repository.open(s.repo)), 'data', 'gens', '00000001')
    await until('the first unit in the cache', () => fs.existsSync(data) && fs.readdirSync(data).some((n) => !n.includes('.tmp-')))
    process.kill(first, 'SIGKILL')
    await until('a new service', () => {
      const pid = servicePid(s)
      return pid !== null && pid !== first
    })
    expect(await exited, err).toBe(0)
    const j = JSON.parse(out)
    expect(j.recalled).toBe(j.onTape)
    expect(j.failed).toEqual([])
    expect(cacheIsClean(s)).toBe(unitKeys(s.repo, 1).length)
    // what a service killed while writing an entry leaves (a temporary file of a dead pid) is never opened, and the next owner removes it
    const litter = path.join(data, 'unit-00000099.tmp-4194303-0badc0de')
    fs.writeFileSync(litter, Buffer.alloc(5000, 1))
    const c = client(s)
    const t = tieredVia(s, c)
    expect(await t.has('gens/00000001/unit-00000099')).toBe(false)
    const g1 = await readGeneration(s.repo, 1, t)
    for (const [f, h] of s.expected.get(1)!) expect(g1.get(f), f).toBe(h)
    c.close()
    const pid = servicePid(s)!
    process.kill(pid, 'SIGTERM')
    await until('the service to stop', () => !pidAlive(pid))
    // the next owner sweeps the dead writer's temporary file
    const c2 = client(s)
    c2.pin([unitKeys(s.repo, 1)[0]!]) // any request starts a service
    await until('a service', async () => (await c2.status()) !== null)
    await until('the litter swept', () => !fs.existsSync(litter))
    c2.close()
  })

  it('a reader that gives up cancels its recall in the service, also the first request of a client not yet connected (sent once)', async () => {
    // clock scale 0.2: the first mount (robot 10 s + load 16 s) takes ~5 s of real time, the window to cancel in
    const s = await setup('cancel', 0.2)
    const c = client(s)
    const t = tieredVia(s, c)
    const keys = unitKeys(s.repo, 1)
    expect(keys.length).toBeGreaterThan(3)
    const ac = new AbortController()
    // the client's very first request: it connects (starting the service) while the request waits
    const got = t.prefetch(keys, { signal: ac.signal })
    expect(got.size).toBe(keys.length)
    const watcher = client(s)
    await until('the queue to fill', async () => ((await watcher.status())?.tiers[0]?.engine.pending ?? 0) > 0)
    ac.abort()
    const outcomes = await Promise.allSettled([...got.values()])
    expect(outcomes.some((o) => o.status === 'rejected')).toBe(true)
    // the service drops what nobody wants any more: nothing left in flight, the queue empty,
    // and the engine cancelled requests rather than reading them all
    await until('the service to drop the request', async () => {
      const st = await watcher.status()
      return st !== null && st.inflight === 0 && (st.tiers[0]?.engine.pending ?? 0) === 0
    })
    const st = (await watcher.status())!
    expect(st.tiers[0]!.engine.counters.cancelled).toBeGreaterThan(0)
    expect(st.tiers[0]!.engine.counters.served).toBeLessThan(keys.length)
    expect(st.cache.entries).toBeLessThan(keys.length)
    c.close()
    watcher.close()
    expect(cacheIsClean(s)).toBe(st.cache.entries)
  })

  it('units asked ahead wait as such until a reader of any client waits for one: then it is promoted; all arrive once', async () => {
    const s = await setup('ahead', 0)
    // this process holds the library's drive: the service queues every request and serves none until it is given back
    const lib = VirtualTapeLibrary.open(s.vtl)
    const drives = await Promise.all(lib.state().drives.map((_, i) => lib.drive(i)))
    const c1 = client(s)
    const c2 = client(s)
    const t1 = tieredVia(s, c1)
    const t2 = tieredVia(s, c2)
    const keys = unitKeys(s.repo, 1)
    expect(keys.length).toBeGreaterThan(3)
    const engine = async () => (await c2.status())?.tiers[0]?.engine
    try {
      const got = t1.prefetch(keys, { ahead: true })
      await until('the queue to fill', async () => ((await engine())?.pending ?? 0) === keys.length)
      expect((await engine())!.pendingAhead).toBe(keys.length)
      // another client's reader of the last key: the service joins the two wants and promotes it
      const read2 = t2.get(keys[keys.length - 1]!)
      read2.catch(() => undefined) // awaited below; a failed check above must not leave it unhandled
      await until('the other client\'s reader promoted', async () => (await engine())!.pendingAhead === keys.length - 1)
      // this client's own reader of the first key: its cache store finds it in flight, asked ahead, and promotes it
      const read1 = t1.get(keys[0]!)
      read1.catch(() => undefined)
      await until('this client\'s reader promoted', async () => (await engine())!.pendingAhead === keys.length - 2)
      const e = (await engine())!
      expect(e.pending).toBe(keys.length)
      expect(e.counters.served).toBe(0)
      for (const d of drives) await d.release()
      const [b2, b1] = await Promise.all([read2, read1])
      expect(b2.length).toBeGreaterThan(0)
      expect(b1.length).toBeGreaterThan(0)
      await Promise.all(got.values())
      const st = (await engine())!
      expect(st.counters.served).toBe(keys.length) // each unit once
      expect(st.pending).toBe(0)
    } finally {
      for (const d of drives) await d.release().catch(() => undefined)
      await lib.close()
      c1.close()
      c2.close()
    }
    expect(cacheIsClean(s)).toBe(keys.length)
  })

  it('TieredStore.cancel(keys) gives up only those keys of a request (per-key cancel, protocol 2): the service cancels them, the others are recalled', async () => {
    const s = await setup('cancel-keys', 0)
    // the library's one drive is held by another process: nothing can start, all stays queued
    const holder = spawn('flock', ['-x', '-F', path.join(s.vtl, 'drive-0.lock'), 'sh', '-c', 'echo held; exec sleep 600'], { stdio: ['ignore', 'pipe', 'ignore'] })
    const holderGone = new Promise<void>((r) => holder.on('close', () => r()))
    const c = client(s)
    const watcher = client(s)
    try {
      let out = ''
      holder.stdout!.on('data', (d: Buffer) => (out += String(d)))
      await until('the drive to be held', () => out.includes('held'))
      const t = tieredVia(s, c)
      const keys = unitKeys(s.repo, 1)
      expect(keys.length).toBeGreaterThan(3)
      const got = t.prefetch(keys) // one request for them all
      await until('the queue to fill', async () => ((await watcher.status())?.tiers[0]?.engine.pending ?? 0) === keys.length)
      const drop = keys.slice(0, 2)
      expect(drop.every((k) => t.recalling(k))).toBe(true)
      expect(t.cancel(drop)).toBe(2)
      for (const k of drop) await expect(got.get(k)!).rejects.toThrow(/recall cancelled/)
      await until('the service to cancel them', async () => {
        const st = await watcher.status()
        return st !== null && st.tiers[0]!.engine.pending === keys.length - 2 && st.tiers[0]!.engine.counters.cancelled === 2 && st.inflight === keys.length - 2
      })
      // a key nobody here is fetching is not cancelled
      expect(t.cancel(drop)).toBe(0)
      holder.kill('SIGKILL')
      await holderGone
      for (const k of keys.slice(2)) await got.get(k)!
      const cache = BufferCache.open(cacheDir(Repository.open(s.repo)))
      expect(drop.filter((k) => cache.has(k))).toEqual([])
      expect(keys.slice(2).filter((k) => !cache.has(k))).toEqual([])
      expect(drop.some((k) => t.recalling(k))).toBe(false)
    } finally {
      c.close()
      watcher.close()
      holder.kill('SIGKILL')
      await holderGone
      // the service exits once idle (after 2 s): before afterAll removes its runtime directory
      const pid = servicePid(s)
      if (pid !== null) await until('the service to exit', () => !pidAlive(pid), 60_000)
    }
  })

  it('kill -9 of a client: its requests are cancelled, the service goes on; a recall deadline fails EIO', async () => {
    const s = await setup('killcli', 0.2)
    const p = spawn(BFS, ['--repo', s.repo, 'recall', 'gen1'], { env: { ...process.env, ...s.env }, stdio: 'ignore' })
    const exited = new Promise<void>((r) => p.once('close', () => r()))
    await until('the service to start', () => servicePid(s) !== null)
    const c = client(s)
    await until('the queue to fill', async () => ((await c.status())?.tiers[0]?.engine.pending ?? 0) > 0)
    p.kill('SIGKILL')
    await exited
    // the killed client's requests leave the queue (the unit being read finishes)
    await until('the queue to drain', async () => {
      const st = await c.status()
      return st !== null && st.inflight <= 1 && (st.tiers[0]?.engine.pending ?? 0) === 0
    })
    // cancelled, not read for nobody
    expect((await c.status())!.tiers[0]!.engine.counters.cancelled).toBeGreaterThan(0)
    // bfs's own deadline: EIO with a clear message while the tape is slow
    const repo = Repository.open(s.repo)
    const cache = BufferCache.open(cacheDir(repo))
    const slow = new TieredStore({ hot: repo.store, cold: new CacheStore(cache, new ServiceSource(new RepoTapeCatalog(repo.store), c, cache, { timeoutMs: 50 })) })
    const key = unitKeys(s.repo, 1).reverse().find((k) => !cache.has(k))!
    const e = await slow.get(key, { offset: 100, length: 10 }).then(() => null, (x: Error) => x)
    expect(e?.message).toMatch(/: not recalled within 0 s \(bfs's recall deadline\)$/)
    c.close()
    // a new client completes the job
    const again = await bfs(['recall', 'gen1', '--json'], { repo: s.repo, env: s.env })
    expect(again.code, again.stderr).toBe(0)
    expect(JSON.parse(again.stdout).failed).toEqual([])
    expect(cacheIsClean(s)).toBe(unitKeys(s.repo, 1).length)
  })
})
