/**
 * Reads from tape through every reader (issue 13, item 5): cat, restore, verify and the
 * mount read a generation whose units were migrated to a virtual tape library (clock
 * factor 0), through the repository's recall service and buffer cache. Real processes,
 * real tools (cp -a, diff -r, getfattr, cat).
 */
import fs from 'node:fs'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import type { ChildProcess } from 'node:child_process'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { recallServicePaths } from '../src/os/runtime.js'
import { pidAlive } from '../src/os/process.js'
import { Repository } from '../src/repo/repository.js'
import { cacheDir } from '../src/repo/stores.js'
import { RepoTapeCatalog } from '../src/repo/tapecat.js'
import { BufferCache } from '../src/store/cache.js'
import { extentUnits } from '../src/repo/needed.js'
import { GenView } from '../src/vfs/tree.js'
import { bfs, newRepo, newRepoF, sh, tmpdir } from './helpers.js'
import { engineStatus, hashTree, holdDrive, inD, kernelStack, killServices, residency, sleep, startIn, unitKeys, unmountBfs, until, writeReadTree } from './tape-helpers.js'

let work: string
const services = new Set<string>() // lock files of the services the tests started
const mounts = new Set<string>()
beforeAll(() => {
  work = tmpdir('bfs-tape-read-')
})
afterAll(async () => {
  for (const m of mounts) await umount(m)
  await killServices(services)
  // a mount server writes its last log line (in work/) as it exits after its unmount
  fs.rmSync(work, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 })
})

async function umount(mnt: string): Promise<void> {
  await unmountBfs(mnt)
  mounts.delete(mnt)
}

interface Setup {
  name: string
  repo: string
  src: string
  env: Record<string, string>
  vtl: string
}

/**
 * A repository with one generation of `src` (files over several 128 KiB units, small
 * files, a subdirectory, a hard link, a hole), migrated to a tier of the given clock scale.
 */
async function setup(name: string, o: { clockScale?: number; cacheBytes?: string; many?: number; migrate?: boolean } = {}): Promise<Setup> {
  // format 1: the test reads the repository through format 1's Repository (tape catalog, units); format 2's tape tier: format2-tape.test.ts
  const repo = await newRepoF(1, path.join(work, name))
  const env: Record<string, string> = { BFS_RUNTIME_DIR: path.join(work, `${name}-run`), BFS_RECALL_IDLE_S: '3' }
  fs.mkdirSync(env.BFS_RUNTIME_DIR!, { recursive: true })
  services.add(recallServicePaths(repo, env).lock)
  const src = path.join(work, `${name}-src`)
  writeReadTree(src, o.many)
  const b = await bfs(['backup', src, '--unit-blocks', '32', '--frame-blocks', '8'], { repo, env })
  expect(b.code, b.stderr).toBe(0)
  const vtl = path.join(work, `${name}-vtl`)
  expect((await bfs(['tier', 'add', 'tape1', '--vtl', vtl, '--clock-scale', String(o.clockScale ?? 0), '--cartridges', '2'], { repo })).code).toBe(0)
  const r = Repository.open(repo)
  if (o.migrate !== false) {
    const m = await bfs(['migrate', 'gen1', '--file-size', '1M'], { repo, env })
    expect(m.code, m.stderr).toBe(0)
    // every unit is on tape only
    for (const k of unitKeys(repo, 1)) expect(r.store.sync.hasSync(k), k).toBe(false)
  }
  if (o.cacheBytes) {
    // the buffer cache's limit is kept in its config.json by the first owner
    BufferCache.open(cacheDir(r), { owner: true, limitBytes: Number(o.cacheBytes) }).close()
  }
  return { name, repo, src, env, vtl }
}

/** Flips a byte inside `key`'s last frame where its cartridge file holds it (found by the catalog's copy of its trailer). */
function corrupt(s: Setup, key: string): void {
  const e = new RepoTapeCatalog(Repository.open(s.repo).store).entry(key)!
  const cart = path.join(s.vtl, 'cartridges', `${e.loc.cartridge}.tape`)
  const bytes = fs.readFileSync(cart)
  const at = bytes.indexOf(e.tail)
  expect(at).toBeGreaterThan(0)
  bytes[at - 100]! ^= 0x20
  fs.writeFileSync(cart, bytes)
}

/** Whether the repository's recall service runs (its lock's pid is alive). */
function serviceUp(s: Setup): boolean {
  try {
    const pid = Number(fs.readFileSync(recallServicePaths(s.repo, s.env).lock, 'utf8').trim())
    return pid > 0 && pidAlive(pid)
  } catch {
    return false
  }
}

/** Units in the buffer cache now. */
function cached(s: Setup): number {
  const r = Repository.open(s.repo)
  const c = BufferCache.open(cacheDir(r))
  return unitKeys(s.repo, 1).filter((k) => c.has(k)).length
}

describe('reads from tape', () => {
  let s: Setup
  beforeAll(async () => {
    s = await setup('cat')
  }, 600_000)

  it('cat of a tape-resident file recalls its units and writes the bytes of the source', async () => {
    expect(cached(s)).toBe(0)
    for (const f of ['sub/deep/f7', 'small.txt', 'sub/holey']) {
      const r = await bfs(['cat', `gen1:${f}`], { repo: s.repo, env: s.env })
      expect(r.code, r.stderr).toBe(0)
      expect(r.out.equals(fs.readFileSync(path.join(s.src, f))), f).toBe(true)
    }
    expect(cached(s)).toBeGreaterThan(0)
    expect(cached(s)).toBeLessThan(unitKeys(s.repo, 1).length)
  }, 600_000)

  it('restore of a tape-resident generation and of a subtree equals the source (diff -r)', async () => {
    const dest = path.join(work, 'cat-restore')
    const r = await bfs(['restore', 'gen1', dest], { repo: s.repo, env: s.env })
    expect(r.code, r.stderr).toBe(0)
    expect((await sh(`diff -r '${s.src}' '${dest}'`)).code).toBe(0)
    expect(fs.statSync(path.join(dest, 'sub', 'f1')).ino).toBe(fs.statSync(path.join(dest, 'sub', 'f1-link')).ino)
    const sub = path.join(work, 'cat-restore-sub')
    const r2 = await bfs(['restore', 'gen1:sub/deep', sub], { repo: s.repo, env: s.env })
    expect(r2.code, r2.stderr).toBe(0)
    expect((await sh(`diff -r '${path.join(s.src, 'sub', 'deep')}' '${sub}'`)).code).toBe(0)
  }, 600_000)
})

describe('restore from tape with a buffer cache of 10 % of its data', () => {
  it('plans the whole set up front and recalls no unit twice', async () => {
    const s = await setup('small-cache')
    const r = Repository.open(s.repo)
    const bytes = unitKeys(s.repo, 1).reduce((a, k) => a + r.manifest(1).units[Number(k.split('-').pop())]!.bytes, 0)
    const limit = Math.floor(bytes / 10)
    // the service stays up (status below); killed in afterAll
    const env = { ...s.env, BFS_RECALL_IDLE_S: '120' }
    const dest = path.join(work, 'small-cache-restore')
    const res = await bfs(['restore', 'gen1', dest, '--buffer-cache', String(limit), '--threads', '2'], { repo: s.repo, env })
    expect(res.code, res.stderr).toBe(0)
    expect((await sh(`diff -r '${s.src}' '${dest}'`)).code).toBe(0)
    const st = await bfs(['tier', 'status', 'tape1', '--json'], { repo: s.repo, env })
    expect(st.code, st.stderr).toBe(0)
    const j = JSON.parse(st.stdout) as { service: { cache: { inserts: number; limitBytes: number; usedBytes: number } } | null }
    expect(j.service).not.toBeNull()
    expect(j.service!.cache.limitBytes).toBe(limit)
    // every unit recalled once: as many insertions as units, and the cache kept within its limit
    expect(j.service!.cache.inserts).toBe(unitKeys(s.repo, 1).length)
    expect(j.service!.cache.usedBytes).toBeLessThanOrEqual(limit)
    expect(unitKeys(s.repo, 1).length).toBeGreaterThanOrEqual(20) // many passes
  }, 600_000)
})

describe('verify of a migrated generation', () => {
  it('reads every unit from tape (recalled pass by pass) and finds a corrupt record', async () => {
    const s = await setup('verify')
    const v = await bfs(['verify', 'gen1'], { repo: s.repo, env: s.env })
    expect(v.code, v.stdout + v.stderr).toBe(0)
    expect(v.stdout).toMatch(new RegExp(`^ok: gen1 verified \\(${unitKeys(s.repo, 1).length} units, `, 'm'))
    const a = await bfs(['verify', 'gen1', '--against', s.src], { repo: s.repo, env: s.env })
    expect(a.code, a.stdout + a.stderr).toBe(0)
    expect(a.stdout).toMatch(/^gen1 matches /m)
    // a corrupt record on tape (the cache emptied first): verify names the unit and exits 4
    fs.rmSync(path.join(cacheDir(Repository.open(s.repo)), 'data'), { recursive: true, force: true })
    await until('the recall service to go idle', () => !fs.existsSync(recallServicePaths(s.repo, s.env).socket) || !serviceUp(s))
    const bad = unitKeys(s.repo, 1)[2]!
    corrupt(s, bad)
    const c = await bfs(['verify', 'gen1'], { repo: s.repo, env: s.env })
    expect(c.code, c.stdout + c.stderr).toBe(4)
    expect(c.stdout).toMatch(new RegExp(`^FAIL .*${bad.replace(/\//g, '\\/')}: the bytes read from tape do not match the catalog's SHA-256 \\(corrupt on tape\\); not served$`, 'm'))
    expect(c.stdout).toMatch(/^1 problem found$/m)
  }, 600_000)
})

describe('the mount of a tape-resident generation', () => {
  let s: Setup
  beforeAll(async () => {
    s = await setup('mount')
  }, 600_000)

  async function mountGen(name: string, opts: string[] = []): Promise<{ mnt: string; log: string; pid: number }> {
    const mnt = path.join(work, name)
    const log = path.join(work, `${name}.log`)
    fs.mkdirSync(mnt, { recursive: true })
    const m = await bfs(['mount', 'gen1', mnt, '--log', log, ...opts], { repo: s.repo, env: s.env })
    expect(m.code, m.stderr).toBe(0)
    mounts.add(mnt)
    return { mnt, log, pid: Number(/pid (\d+)/.exec(m.stdout)![1]) }
  }

  const residency = async (f: string): Promise<string> => {
    const r = await sh(`getfattr --only-values -n user.bfs.residency '${f}'`)
    expect(r.code, r.stderr).toBe(0)
    return r.stdout
  }

  /** The mount's native read counters (its stats line, SIGUSR2). */
  async function nativeStats(pid: number, log: string): Promise<{ served: number; fallbacks: number }> {
    const seen = fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('native reads:')).length
    process.kill(pid, 'SIGUSR2')
    let line: string | undefined
    await until('the stats line', () => {
      const all = fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('native reads:'))
      line = all[seen]
      return !!line
    })
    return JSON.parse(/native reads: (\{[^}]*\})/.exec(line!)![1]!) as { served: number; fallbacks: number }
  }

  it('cp -a of a tape-resident subtree equals the source; user.bfs.residency says tape, then cache', async () => {
    const { mnt, log, pid } = await mountGen('mnt-cp')
    expect(await residency(path.join(mnt, 'sub', 'deep', 'f5'))).toBe('tape')
    expect(await residency(path.join(mnt, 'top.bin'))).toBe('tape')
    // not listed (cp -a must not copy it): only asked for by name
    expect((await sh(`getfattr -d '${path.join(mnt, 'top.bin')}'`)).stdout).not.toContain('residency')
    const dest = path.join(work, 'mnt-cp-dest')
    const cp = await sh(`cp -a '${path.join(mnt, 'sub')}' '${dest}'`)
    expect(cp.code, cp.stderr).toBe(0)
    expect((await sh(`diff -r '${path.join(s.src, 'sub')}' '${dest}'`)).code).toBe(0)
    expect(await residency(path.join(mnt, 'sub', 'deep', 'f5'))).toBe('cache')
    // top.bin's units are still on tape (perhaps one shared with what was read)
    expect(await residency(path.join(mnt, 'top.bin'))).toMatch(/^tape( \d+\/\d+ units)?$/)
    const all = path.join(work, 'mnt-cp-all')
    expect((await sh(`cp -a '${mnt}' '${all}'`)).code).toBe(0)
    expect((await sh(`diff -r '${s.src}' '${all}'`)).code).toBe(0)
    expect(await residency(path.join(mnt, 'top.bin'))).toBe('cache')
    // once recalled, a unit opened while it was on tape is served by the native read path:
    // top.bin read again past the page cache never needs JavaScript's read
    const before = await nativeStats(pid, log)
    expect((await sh(`dd if='${path.join(mnt, 'top.bin')}' iflag=nocache count=0 status=none && cat '${path.join(mnt, 'top.bin')}' > /dev/null`)).code).toBe(0)
    const after = await nativeStats(pid, log)
    expect(after.served, JSON.stringify({ before, after })).toBeGreaterThan(before.served)
    expect(after.fallbacks).toBe(before.fallbacks)
    await umount(mnt)
  }, 600_000)
})

describe('the mount with --offline eio and a recall deadline', () => {
  let s: Setup
  beforeAll(async () => {
    s = await setup('offline')
  }, 600_000)

  async function mountGen(name: string, opts: string[] = []): Promise<{ mnt: string; log: string }> {
    const mnt = path.join(work, name)
    const log = path.join(work, `${name}.log`)
    fs.mkdirSync(mnt, { recursive: true })
    const m = await bfs(['mount', 'gen1', mnt, '--log', log, ...opts], { repo: s.repo, env: s.env })
    expect(m.code, m.stderr).toBe(0)
    mounts.add(mnt)
    return { mnt, log }
  }

  it('--offline eio: a read of data on tape fails with EIO at once and recalls nothing', async () => {
    const { mnt } = await mountGen('mnt-eio', ['--offline', 'eio'])
    const r = await sh(`cat '${path.join(mnt, 'top.bin')}' > /dev/null`)
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/Input\/output error/)
    expect(cached(s)).toBe(0)
    // metadata never needs tape
    expect((await sh(`ls -lR '${mnt}'`)).code).toBe(0)
    await umount(mnt)
  }, 600_000)

  it('a recall deadline gives EIO and one log line; the mount keeps serving, and the recall goes on', async () => {
    // the library slow from now on: a recall takes seconds of real time (robot, load, locate)
    const state = path.join(s.vtl, 'state.json')
    const st = JSON.parse(fs.readFileSync(state, 'utf8')) as { clockScale: number }
    st.clockScale = 0.25
    fs.writeFileSync(state, JSON.stringify(st, null, 1) + '\n')
    const { mnt, log } = await mountGen('mnt-deadline', ['--recall-timeout', '1'])
    const f = path.join(mnt, 'sub', 'deep', 'f6')
    const t0 = Date.now()
    const r = await sh(`cat '${f}' > /dev/null`)
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/Input\/output error/)
    expect(Date.now() - t0).toBeLessThan(60_000)
    await until('the log line', () => /read \/sub\/deep\/f6: .*not recalled within 1 s \(bfs's recall deadline\)/.test(fs.readFileSync(log, 'utf8')))
    const lines = fs.readFileSync(log, 'utf8').split('\n').filter((l) => /not recalled within/.test(l))
    expect(lines, lines.join('\n')).toHaveLength(1)
    expect((await sh(`ls -l '${mnt}/sub'`)).code).toBe(0)
    // the recall went on: once the units are in, the same file reads whole
    await until('the recall', async () => (await residency(f)) === 'cache', 300_000)
    const again = await sh(`cmp '${f}' '${path.join(s.src, 'sub', 'deep', 'f6')}'`)
    expect(again.code, again.stderr).toBe(0)
    await umount(mnt)
  }, 600_000)

})

describe('a reader interrupted while it waits for tape', () => {
  // The library's one drive is held by another process (flock on its lock, as a migration
  // holding it would): a recall cannot start, so it stays in the engine's queue, where a
  // cancel takes it out (a recall being read on a drive is not cancelled, it completes).
  let s: Setup
  // the service stays up between the steps (its counters are read); killed in afterAll
  let env: Record<string, string>
  beforeAll(async () => {
    s = await setup('intr')
    env = { ...s.env, BFS_RECALL_IDLE_S: '600' }
  }, 600_000)

  const children = new Set<ChildProcess>()
  afterEach(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    await until('the test processes to exit', () => [...children].every((c) => c.exitCode !== null || c.signalCode !== null), 30_000)
    children.clear()
    for (const m of [...mounts]) if (m.includes('mnt-intr')) await umount(m)
    // the servers' last steps after the unmount touch their runtime directory (in work/)
    await until('the mount servers to exit', () => [...servers].every((pid) => !pidAlive(pid)), 120_000)
    servers.clear()
  })
  const servers = new Set<number>()

  const start = (cmd: string, args: string[], out: 'ignore' | 'pipe' = 'ignore'): ReturnType<typeof startIn> => startIn(children, cmd, args, out)

  async function mountGen(name: string): Promise<{ mnt: string; log: string }> {
    const mnt = path.join(work, name)
    const log = path.join(work, `${name}.log`)
    fs.mkdirSync(mnt, { recursive: true })
    // --readahead 0: no frame readahead into the next units (other files' data)
    // no frame readahead and no readahead over the tree: each reader's file's units only, so
    // that the queue's counts are exact
    const m = await bfs(['mount', 'gen1', mnt, '--log', log, '--readahead', '0', '--tape-readahead', '0'], { repo: s.repo, env })
    expect(m.code, m.stderr).toBe(0)
    mounts.add(mnt)
    servers.add(Number(/pid (\d+)/.exec(m.stdout)![1]))
    return { mnt, log }
  }

  /** The recall service's engine queue and counters (bfs tier status --json). */
  const engine = (): ReturnType<typeof engineStatus> => engineStatus(s.repo, env)

  /** The unit keys of a file of gen1 (as the mount computes them). */
  function fileUnits(rel: string): string[] {
    const r = Repository.open(s.repo)
    const v = new GenView(r, r.manifest(1))
    const i = v.lookup(Buffer.from(rel))
    return extentUnits(r, v.extents(i), v.entry(v.leader(i)).size)
  }
  const cachedKeys = (keys: string[]): string[] => {
    const c = BufferCache.open(cacheDir(Repository.open(s.repo)))
    return keys.filter((k) => c.has(k))
  }
  // A synchronous read (O_DIRECT: no page cache, no background readahead; the kernel's
  // request_wait_answer) that reached the mount: the kernel sends FUSE_INTERRUPT when its
  // reader gets a signal, and the patched binding passes it on (FUSE_NATIVE_BFS_PATCH 5).
  // Before, a killed reader was held in state D until the recall came in. (First in this
  // block: neither test leaves any unit in the cache, so the tests below see none.)
  const uncached = (): string => {
    const x = ['sub/deep/f5', 'sub/deep/f4', 'sub/f3', 'sub/f0', 'sub/deep/f6'].find((f) => cachedKeys(fileUnits(f)).length === 0)
    expect(x).toBeDefined()
    return x!
  }
  /** Resolves the exit code, or 'held' if the process has not exited within ms. */
  const exitWithin = (c: { exited: Promise<number | null> }, ms: number): Promise<number | null | 'held'> =>
    Promise.race([c.exited, sleep(ms).then(() => 'held' as const)])

  it('a reader killed in a synchronous read (O_DIRECT) that waits for a recall exits at once (FUSE_INTERRUPT, EINTR), and its close cancels the recall', async () => {
    const x = uncached()
    const xu = fileUnits(x)
    const before = await engine()
    const drive = await holdDrive(s.vtl, start)
    const { mnt, log } = await mountGen('mnt-intr-sync')
    const a = start('dd', [`if=${path.join(mnt, x)}`, 'of=/dev/null', 'bs=65536', 'count=1', 'iflag=direct'])
    await until('the reader to wait for its read in the kernel', async () => /request_wait_answer[^]*fuse_direct_io/.test(kernelStack(a.p.pid)) && (await engine()).pending === xu.length)
    a.p.kill('SIGKILL')
    expect(await exitWithin(a, 10_000), fs.readFileSync(log, 'utf8')).not.toBe('held')
    await until('the recalls to be cancelled', async () => {
      const e = await engine()
      return e.pending === 0 && e.inflight === 0 && e.cancelled === before.cancelled + xu.length
    }, 60_000)
    expect(fs.readFileSync(log, 'utf8')).toMatch(new RegExp(`read of /${x.replace(/\//g, '\\/')} interrupted while it waited for tape \\(EINTR\\)`))
    await drive.release()
    expect(cachedKeys(xu)).toEqual([])
    await umount(mnt)
  }, 600_000)

  it('a reader that handles the signal (SIGINT in Python) gets EINTR from its synchronous read at once; its recall is kept until it closes the file', async () => {
    const x = uncached()
    const xu = fileUnits(x)
    const before = await engine()
    const drive = await holdDrive(s.vtl, start)
    const { mnt, log } = await mountGen('mnt-intr-eintr')
    // reads with O_DIRECT into an aligned buffer; on KeyboardInterrupt (Python's SIGINT
    // handler: the read returned EINTR) says so, and closes the file when sent SIGUSR1
    const py = [
      'import os, sys, mmap, signal',
      'signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])',
      'fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)',
      'm = mmap.mmap(-1, 65536)',
      'try:',
      '    n = os.readv(fd, [m]); print("read", n, flush=True)',
      'except KeyboardInterrupt:',
      '    print("interrupted", flush=True)',
      'signal.sigwait([signal.SIGUSR1])',
      'os.close(fd)',
      'print("closed", flush=True)',
    ].join('\n')
    const a = start('python3', ['-c', py, path.join(mnt, x)], 'pipe')
    const said = (w: string): boolean => Buffer.concat(a.stdout).toString().includes(w)
    await until('the reader to wait for its read in the kernel', async () => /request_wait_answer[^]*fuse_direct_io/.test(kernelStack(a.p.pid)) && (await engine()).pending === xu.length)
    a.p.kill('SIGINT')
    await until('the read to return EINTR', () => said('interrupted') || said('read') || a.p.exitCode !== null, 10_000)
    expect(Buffer.concat(a.stdout).toString()).toBe('interrupted\n')
    await until('the log line', () => /interrupted while it waited for tape \(EINTR\)/.test(fs.readFileSync(log, 'utf8')), 10_000)
    // the reader lives on with the file open: nothing is given up yet
    expect(await engine()).toMatchObject({ pending: xu.length, cancelled: before.cancelled })
    a.p.kill('SIGUSR1')
    expect(await a.exited).toBe(0)
    expect(said('closed')).toBe(true)
    await until('the recalls to be cancelled', async () => {
      const e = await engine()
      return e.pending === 0 && e.inflight === 0 && e.cancelled === before.cancelled + xu.length
    }, 60_000)
    await drive.release()
    expect(cachedKeys(xu)).toEqual([])
    await umount(mnt)
  }, 600_000)

  it('a reader killed while its read waits for a recall exits at once, and its recall is cancelled (not recalled, not cached); the next read recalls it', async () => {
    const units = fileUnits('top.bin')
    expect(units.length).toBeGreaterThan(1)
    expect(cachedKeys(units)).toEqual([])
    const before = await engine()
    const drive = await holdDrive(s.vtl, start)
    const { mnt, log } = await mountGen('mnt-intr-kill')
    const f = path.join(mnt, 'top.bin')
    const reader = start('cat', [f])
    // its open asked for the file's units, its read waits for them in the kernel
    await until('the recalls to be queued', async () => (await engine()).pending === units.length)
    await until('the reader to wait in the kernel', () => inD(reader.p.pid))
    reader.p.kill('SIGKILL')
    const t0 = Date.now()
    await reader.exited
    expect(Date.now() - t0).toBeLessThan(10_000)
    // its close's FUSE_FLUSH gave the recalls up: out of the engine's queue, none left in flight
    await until('the recalls to be cancelled', async () => {
      const e = await engine()
      return e.pending === 0 && e.inflight === 0 && e.cancelled === before.cancelled + units.length
    }, 60_000)
    await until('the log line', () => new RegExp(`close of /top\\.bin: ${units.length} unit recalls given up \\(no open file needs them\\), \\d+ reads? of closed files waiting for them interrupted \\(EINTR\\)`).test(fs.readFileSync(log, 'utf8')))
    expect((await engine()).served).toBe(before.served)
    await drive.release()
    // nothing was recalled: the units are on tape only, and nothing comes later
    await sleep(1000)
    expect(cachedKeys(units)).toEqual([])
    expect((await sh(`getfattr --only-values -n user.bfs.residency '${f}'`)).stdout).toBe('tape')
    // the mount goes on serving: the same file read again is recalled and right
    const r = await sh(`cmp '${f}' '${path.join(s.src, 'top.bin')}'`)
    expect(r.code, r.stderr).toBe(0)
    expect(cachedKeys(units).sort()).toEqual([...units].sort())
    await umount(mnt)
  }, 600_000)

  it('of two readers of one file, the one killed does not cancel what the other waits for; a killed reader of another file does', async () => {
    const x = 'sub/deep/f7'
    const y = 'sub/f2'
    const xu = fileUnits(x)
    const yu = fileUnits(y)
    expect(xu.filter((k) => yu.includes(k))).toEqual([]) // no unit shared
    expect(cachedKeys([...xu, ...yu])).toEqual([])
    const before = await engine()
    const drive = await holdDrive(s.vtl, start)
    const { mnt, log } = await mountGen('mnt-intr-two')
    const a = start('cat', [path.join(mnt, x)])
    await until('the first reader to wait', async () => inD(a.p.pid) && (await engine()).pending === xu.length)
    const b = start('cat', [path.join(mnt, x)], 'pipe')
    await until('the second reader to wait', () => inD(b.p.pid))
    const c = start('cat', [path.join(mnt, y)])
    await until('the third reader to wait', async () => inD(c.p.pid) && (await engine()).pending === xu.length + yu.length)
    a.p.kill('SIGKILL')
    c.p.kill('SIGKILL')
    await a.exited
    await c.exited
    // y's recalls are cancelled; x's stay queued for the reader still waiting
    await until("y's recalls to be cancelled", async () => {
      const e = await engine()
      return e.cancelled === before.cancelled + yu.length && e.pending === xu.length
    }, 60_000)
    // the other reader still waits, for the pages the killed one's reads will bring (their
    // recalls are not cancelled, and those reads are left to complete)
    await sleep(500)
    expect(b.p.exitCode, fs.readFileSync(log, 'utf8')).toBeNull()
    expect(inD(b.p.pid)).toBe(true)
    expect((await engine()).pending).toBe(xu.length)
    await drive.release()
    expect(await b.exited).toBe(0)
    expect(Buffer.concat(b.stdout).equals(fs.readFileSync(path.join(s.src, x)))).toBe(true)
    expect(cachedKeys(yu)).toEqual([])
    const r = await sh(`cmp '${path.join(mnt, y)}' '${path.join(s.src, y)}'`)
    expect(r.code, r.stderr).toBe(0)
    await umount(mnt)
  }, 600_000)

  it('two readers of one file killed one after the other: the second still exits at once, and then the recall is cancelled', async () => {
    // a file none of whose units the tests above brought into the cache
    const x = ['sub/deep/f5', 'sub/deep/f4', 'sub/f3', 'sub/f0', 'sub/deep/f6'].find((f) => cachedKeys(fileUnits(f)).length === 0)!
    expect(x).toBeDefined()
    const xu = fileUnits(x)
    const before = await engine()
    const drive = await holdDrive(s.vtl, start)
    const { mnt } = await mountGen('mnt-intr-both')
    const a = start('cat', [path.join(mnt, x)])
    await until('the first reader to wait', async () => inD(a.p.pid) && (await engine()).pending === xu.length)
    const b = start('cat', [path.join(mnt, x)])
    await until('the second reader to wait', () => inD(b.p.pid))
    a.p.kill('SIGKILL')
    await a.exited
    // the second one still wants them: nothing is cancelled
    await sleep(1000)
    expect(await engine()).toMatchObject({ pending: xu.length, cancelled: before.cancelled })
    expect(b.p.exitCode).toBeNull()
    // killed in turn, it is not held (it waits for the first one's reads, killably) ...
    b.p.kill('SIGKILL')
    const t0 = Date.now()
    await b.exited
    expect(Date.now() - t0).toBeLessThan(10_000)
    // ... and its close gives the recalls up
    await until('the recalls to be cancelled', async () => {
      const e = await engine()
      return e.pending === 0 && e.inflight === 0 && e.cancelled === before.cancelled + xu.length
    }, 60_000)
    await drive.release()
    expect(cachedKeys(xu)).toEqual([])
    const r = await sh(`cmp '${path.join(mnt, x)}' '${path.join(s.src, x)}'`)
    expect(r.code, r.stderr).toBe(0)
    await umount(mnt)
  }, 600_000)
})

describe('the mount\'s readahead over the tree', () => {
  let s: Setup
  beforeAll(async () => {
    s = await setup('readahead', { many: 60 })
  }, 600_000)

  async function mountGen(name: string, opts: string[] = []): Promise<{ mnt: string }> {
    const mnt = path.join(work, name)
    fs.mkdirSync(mnt, { recursive: true })
    const m = await bfs(['mount', 'gen1', mnt, ...opts], { repo: s.repo, env: s.env })
    expect(m.code, m.stderr).toBe(0)
    mounts.add(mnt)
    return { mnt }
  }

  it('--tape-readahead 0: opens in order ask for nothing ahead', async () => {
    const { mnt } = await mountGen('mnt-ra0', ['--tape-readahead', '0', '--readahead', '0'])
    const d = path.join(mnt, 'sub', 'deep')
    for (const f of ['f4', 'f5', 'f7']) expect(await residency(path.join(d, f))).not.toBe('cache')
    // f4, f5 in order (f6 and f7 come next): nothing ahead
    expect((await sh(`cat '${path.join(d, 'f4')}' '${path.join(d, 'f5')}' > /dev/null`)).code).toBe(0)
    await new Promise((r) => setTimeout(r, 1000))
    expect(await residency(path.join(d, 'f7'))).toMatch(/^tape/)
    await umount(mnt)
  }, 600_000)

  it('asks ahead once opens follow the tree\'s order, within the directory the opens span, across directories; a lone open asks for its own file only', async () => {
    // --readahead 0: no frame readahead in stream order (which crosses into the next units,
    // other files' data, and recalls them too), so only the readahead over the tree brings
    // other files' units in
    const { mnt } = await mountGen('mnt-ra', ['--readahead', '0'])
    const m = (i: number): string => path.join(mnt, 'many', `m${String(i).padStart(2, '0')}`)
    for (const f of [m(30), m(45), m(55), path.join(mnt, 'sub', 'deep', 'f7')]) expect(await residency(f)).toBe('tape')
    // two opens far apart in the tree's order (m30, then top.bin after sub/): no readahead
    expect((await sh(`cat '${m(30)}' > /dev/null && cat '${path.join(mnt, 'top.bin')}' > /dev/null`)).code).toBe(0)
    expect(await residency(m(30))).toBe('cache')
    expect(await residency(path.join(mnt, 'top.bin'))).toBe('cache')
    // (the clock scale is 0: anything asked for with those opens would be in by now)
    await new Promise((r) => setTimeout(r, 1000))
    expect(await residency(m(45))).toBe('tape')
    // two opens in order: the files that come next are asked for, never opened; but only
    // inside the directory the opens were in so far (a `cp -a many/` does not want sub/)
    expect((await sh(`cat '${m(0)}' '${m(1)}' > /dev/null`)).code).toBe(0)
    await until('the readahead over the tree', async () => (await residency(m(55))) === 'cache', 300_000)
    await new Promise((r) => setTimeout(r, 1000))
    expect(await residency(path.join(mnt, 'sub', 'deep', 'f7'))).toMatch(/^tape/)
    // opens in order that leave many/ (for small.txt, next in the root): the walk widens to
    // the root and goes on into sub/deep
    expect((await sh(`cat '${m(58)}' '${m(59)}' '${path.join(mnt, 'small.txt')}' > /dev/null`)).code).toBe(0)
    await until('the readahead into sub/deep', async () => (await residency(path.join(mnt, 'sub', 'deep', 'f7'))) === 'cache', 300_000)
    // and what was recalled ahead reads right
    const r = await sh(`diff -r '${path.join(s.src, 'many')}' '${path.join(mnt, 'many')}'`)
    expect(r.code, r.stderr).toBe(0)
    await umount(mnt)
  }, 600_000)
})

describe('a mount started before the generation is migrated', () => {
  it('reads the units migrate moved to tape meanwhile (through the recall service), and says where they are', async () => {
    const s = await setup('late', { migrate: false })
    const mnt = path.join(work, 'late-mnt')
    fs.mkdirSync(mnt)
    // --open-units 2: the mount keeps two unit files open (it opens some at start: those it
    // can still read from after migrate removes them); the others must come from tape
    const m = await bfs(['mount', 'gen1', mnt, '--readahead', '0', '--open-units', '2'], { repo: s.repo, env: s.env })
    expect(m.code, m.stderr).toBe(0)
    mounts.add(mnt)
    const f = path.join(mnt, 'top.bin')
    expect(await residency(f)).toBe('disk')
    // migrate frees the disk copies while the mount serves the generation
    const mg = await bfs(['migrate', 'gen1', '--file-size', '1M'], { repo: s.repo, env: s.env })
    expect(mg.code, mg.stderr).toBe(0)
    for (const k of unitKeys(s.repo, 1)) expect(Repository.open(s.repo).store.sync.hasSync(k), k).toBe(false)
    expect(await residency(f)).toBe('tape')
    // never read before: nothing in the page cache; read through the recall service
    const r = await sh(`cmp '${f}' '${path.join(s.src, 'top.bin')}'`)
    expect(r.code, r.stderr).toBe(0)
    const d = await sh(`diff -r '${s.src}' '${mnt}'`)
    expect(d.code, d.stderr).toBe(0)
    // (a unit served from a descriptor opened before the migrate is recalled by the prefetch at open)
    await until('top.bin in the cache', async () => (await residency(f)) === 'cache')
    // the mount started the recall service: it must not hold the mount's /dev/fuse (an
    // inherited one keeps a dead server's connection alive: readers hang, not ENOTCONN)
    const svc = Number(fs.readFileSync(recallServicePaths(s.repo, s.env).lock, 'utf8').trim())
    expect(pidAlive(svc)).toBe(true)
    const fds = fs.readdirSync(`/proc/${svc}/fd`).map((n) => {
      try {
        return fs.readlinkSync(`/proc/${svc}/fd/${n}`)
      } catch {
        return ''
      }
    })
    expect(fds).not.toContain('/dev/fuse')
    await umount(mnt)
  }, 600_000)

})

describe('a repository without a tape tier', () => {
  it('reads as before: no recall service, no buffer cache, no residency attribute (the tiered store is never opened)', async () => {
    const repo = await newRepo(path.join(work, 'plain'))
    const env = { BFS_RUNTIME_DIR: path.join(work, 'plain-run') }
    fs.mkdirSync(env.BFS_RUNTIME_DIR, { recursive: true })
    const src = path.join(work, 'plain-src')
    fs.mkdirSync(src)
    fs.writeFileSync(path.join(src, 'a'), randomBytes(300_000))
    expect((await bfs(['backup', src], { repo, env })).code).toBe(0)
    expect((await bfs(['cat', 'gen1:a'], { repo, env })).out.equals(fs.readFileSync(path.join(src, 'a')))).toBe(true)
    expect((await bfs(['restore', 'gen1', path.join(work, 'plain-dest')], { repo, env })).code).toBe(0)
    expect((await bfs(['verify'], { repo, env })).code).toBe(0)
    const mnt = path.join(work, 'plain-mnt')
    fs.mkdirSync(mnt)
    const m = await bfs(['mount', 'gen1', mnt], { repo, env })
    expect(m.code).toBe(0)
    mounts.add(mnt)
    const g = await sh(`getfattr -n user.bfs.residency '${path.join(mnt, 'a')}'`)
    expect(g.code).not.toBe(0)
    expect(g.stderr).toMatch(/No such attribute/)
    await umount(mnt)
    // the server's last steps after the unmount touch its runtime directory (in work/): let it
    // exit before afterAll removes work/, or it leaves an empty plain-run behind
    const pid = Number(/pid (\d+)/.exec(m.stdout)?.[1])
    if (pid > 0) await until('the mount server to exit', () => !pidAlive(pid), 120_000)
    expect(fs.readdirSync(env.BFS_RUNTIME_DIR).filter((n) => n.startsWith('recall-'))).toEqual([])
    expect(fs.existsSync(path.join(repo, 'cache'))).toBe(false)
  }, 600_000)
})
