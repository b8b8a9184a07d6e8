/**
 * The mount of a format 2 generation whose units are on tape, at parity with format 1's
 * (test/tape-read.test.ts): user.bfs.residency, the prefetch at open, the readahead over the
 * tree (--tape-readahead, a walk over directory pieces), and a reader killed while it waits
 * for a recall (its close gives the recall up; a synchronous read answers EINTR at once).
 * Real repositories, a virtual tape library at clock scale 0, real FUSE mounts (each its
 * own server process, unmounted in teardown), real tools (getfattr, cat, cp -a, find, dd).
 */
import fs from 'node:fs'
import path from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { recallServicePaths } from '../src/os/runtime.js'
import { pidAlive } from '../src/os/process.js'
import { cacheDir } from '../src/repo/stores.js'
import { Repo2, tapeRepoOf } from '../src/repo/v2/repo2.js'
import { GenReader2 } from '../src/repo/v2/read2.js'
import { BufferCache } from '../src/store/cache.js'
import { bfs, sh, tmpdir } from './helpers.js'
import { engineStatus, holdDrive, inD, kernelStack, killServices, residency, sleep, startIn, unmountBfs, until, writeReadTree } from './tape-helpers.js'

let work: string
const services = new Set<string>() // lock files of the services the tests started
const mounts = new Set<string>()
const servers = new Set<number>()
beforeAll(() => {
  work = tmpdir('bfs-f2tape-mount-')
})
afterAll(async () => {
  for (const m of [...mounts]) await umount(m)
  // the servers' last steps after the unmount write into work/
  await until('the mount servers to exit', () => [...servers].every((pid) => !pidAlive(pid)), 120_000)
  await killServices(services)
  fs.rmSync(work, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 })
}, 300_000)

async function umount(mnt: string): Promise<void> {
  await unmountBfs(mnt)
  mounts.delete(mnt)
}

interface Setup {
  repo: string
  src: string
  env: Record<string, string>
  vtl: string
}

/** A format 2 repository with one generation of tape-helpers' writeReadTree (a hard link, a hole), migrated to a tier at clock scale 0. */
async function setup(name: string, o: { many?: number } = {}): Promise<Setup> {
  const repo = path.join(work, name)
  expect((await bfs(['init', '--format', '2'], { repo })).code).toBe(0)
  const env: Record<string, string> = { BFS_RUNTIME_DIR: path.join(work, `${name}-run`), BFS_RECALL_IDLE_S: '600' }
  fs.mkdirSync(env.BFS_RUNTIME_DIR!, { recursive: true })
  services.add(recallServicePaths(repo, env).lock)
  const src = path.join(work, `${name}-src`)
  writeReadTree(src, o.many)
  const b = await bfs(['backup', src, '--unit-blocks', '32', '--frame-blocks', '8'], { repo, env })
  expect(b.code, b.stderr).toBe(0)
  const vtl = path.join(work, `${name}-vtl`)
  expect((await bfs(['tier', 'add', 'tape1', '--vtl', vtl, '--clock-scale', '0', '--cartridges', '2'], { repo })).code).toBe(0)
  const m = await bfs(['migrate', 'gen1', '--file-size', '1M'], { repo, env })
  expect(m.code, m.stderr).toBe(0)
  return { repo, src, env, vtl }
}

async function mountGen(s: Setup, name: string, opts: string[] = [], gen: string | null = 'gen1'): Promise<{ mnt: string; log: string; pid: number }> {
  const mnt = path.join(work, name)
  const log = path.join(work, `${name}.log`)
  fs.mkdirSync(mnt, { recursive: true })
  const m = await bfs(['mount', ...(gen ? [gen] : []), mnt, '--log', log, ...opts], { repo: s.repo, env: s.env })
  expect(m.code, m.stderr).toBe(0)
  mounts.add(mnt)
  const pid = Number(/pid (\d+)/.exec(m.stdout)![1])
  servers.add(pid)
  return { mnt, log, pid }
}

/** The unit keys of a file of gen1 (as the mount computes them). */
async function fileUnits(s: Setup, rel: string): Promise<string[]> {
  const repo = Repo2.open(s.repo)
  const r = new GenReader2(repo, repo.manifest(1))
  try {
    return await r.unitKeys((await r.lookup(rel))!, rel)
  } finally {
    await r.close()
  }
}
const cachedKeys = (s: Setup, keys: string[]): string[] => {
  const c = BufferCache.open(cacheDir(tapeRepoOf(Repo2.open(s.repo))))
  return keys.filter((k) => c.has(k))
}

describe('format 2: the mount of a tape-resident generation', () => {
  let s: Setup
  beforeAll(async () => {
    s = await setup('res')
  }, 600_000)

  it('user.bfs.residency says tape, then cache once read (not listed: cp -a does not copy it); also on the whole-repository mount; no attribute without a tape tier', async () => {
    const { mnt } = await mountGen(s, 'res-mnt', ['--readahead', '0', '--tape-readahead', '0'])
    expect(await residency(path.join(mnt, 'sub', 'deep', 'f5'))).toBe('tape')
    expect(await residency(path.join(mnt, 'top.bin'))).toBe('tape')
    // a directory has none
    expect((await sh(`getfattr -n user.bfs.residency '${path.join(mnt, 'sub')}'`)).stderr).toMatch(/No such attribute/)
    expect((await sh(`getfattr -d '${path.join(mnt, 'top.bin')}'`)).stdout).not.toContain('residency')
    // (listed after a readdir, whose listing must not tell the native side "no xattrs")
    expect((await sh(`ls -l '${path.join(mnt, 'sub', 'deep')}'`)).code).toBe(0)
    expect(await residency(path.join(mnt, 'sub', 'deep', 'f4'))).toBe('tape')
    const dest = path.join(work, 'res-cp')
    const cp = await sh(`cp -a '${path.join(mnt, 'sub')}' '${dest}'`)
    expect(cp.code, cp.stderr).toBe(0)
    expect((await sh(`diff -r '${path.join(s.src, 'sub')}' '${dest}'`)).code).toBe(0)
    expect((await sh(`getfattr -d -R '${dest}'`)).stdout).not.toContain('residency')
    expect(await residency(path.join(mnt, 'sub', 'deep', 'f5'))).toBe('cache')
    expect(await residency(path.join(mnt, 'small.txt'))).toMatch(/^(tape|cache)/)
    // a file partly recalled: `tape N/M units` (top.bin's units read by the copy of sub/, if any, are cached)
    const top = await fileUnits(s, 'top.bin')
    expect(top.length).toBeGreaterThan(1)
    const inCache = cachedKeys(s, top).length
    expect(await residency(path.join(mnt, 'top.bin'))).toBe(inCache ? `tape ${top.length - inCache}/${top.length} units` : 'tape')
    await umount(mnt)
    // the whole repository mounted: the same attribute under gen1/
    const all = await mountGen(s, 'res-all', ['--readahead', '0', '--tape-readahead', '0'], null)
    expect(await residency(path.join(all.mnt, 'gen1', 'sub', 'deep', 'f5'))).toBe('cache')
    expect(await residency(path.join(all.mnt, 'gen1', 'top.bin'))).toMatch(/^tape/)
    const c = await sh(`cmp '${path.join(all.mnt, 'gen1', 'top.bin')}' '${path.join(s.src, 'top.bin')}'`)
    expect(c.code, c.stderr).toBe(0)
    expect(await residency(path.join(all.mnt, 'gen1', 'top.bin'))).toBe('cache')
    await umount(all.mnt)
    // a format 2 repository without a tape tier: no such attribute
    const plain = path.join(work, 'plain')
    expect((await bfs(['init', '--format', '2'], { repo: plain })).code).toBe(0)
    expect((await bfs(['backup', path.join(s.src, 'sub')], { repo: plain, env: s.env })).code).toBe(0)
    const p = await mountGen({ ...s, repo: plain }, 'plain-mnt')
    const g = await sh(`getfattr -n user.bfs.residency '${path.join(p.mnt, 'f0')}'`)
    expect(g.code).not.toBe(0)
    expect(g.stderr).toMatch(/No such attribute/)
    await umount(p.mnt)
  }, 600_000)
})

describe("format 2: the mount's readahead over the tree", () => {
  let s: Setup
  beforeAll(async () => {
    s = await setup('ra', { many: 60 })
  }, 600_000)
  const m = (mnt: string, i: number): string => path.join(mnt, 'many', `m${String(i).padStart(2, '0')}`)

  it('--tape-readahead 0: opens in order ask for nothing ahead', async () => {
    const { mnt } = await mountGen(s, 'ra0-mnt', ['--tape-readahead', '0', '--readahead', '0'])
    const d = path.join(mnt, 'sub', 'deep')
    for (const f of ['f4', 'f5', 'f7']) expect(await residency(path.join(d, f))).toBe('tape')
    expect((await sh(`cat '${path.join(d, 'f4')}' '${path.join(d, 'f5')}' > /dev/null`)).code).toBe(0)
    await sleep(1000)
    expect(await residency(path.join(d, 'f7'))).toMatch(/^tape/)
    await umount(mnt)
  }, 600_000)

  it("asks ahead once opens follow the tree's order, within the directory the opens span, across directories; a lone open asks for its own file only", async () => {
    // --readahead 0: no frame readahead in stream order (which crosses into other files' units)
    const { mnt } = await mountGen(s, 'ra-mnt', ['--readahead', '0'])
    for (const f of [m(mnt, 30), m(mnt, 45), m(mnt, 55), path.join(mnt, 'sub', 'deep', 'f7')]) expect(await residency(f)).toBe('tape')
    // two opens far apart in the tree's order (m30, then top.bin after sub/): nothing ahead
    expect((await sh(`cat '${m(mnt, 30)}' > /dev/null && cat '${path.join(mnt, 'top.bin')}' > /dev/null`)).code).toBe(0)
    expect(await residency(m(mnt, 30))).toBe('cache')
    expect(await residency(path.join(mnt, 'top.bin'))).toBe('cache')
    await sleep(1000) // (clock scale 0: anything asked for would be in by now)
    expect(await residency(m(mnt, 45))).toBe('tape')
    // two opens in order: the files that come next are asked for, never opened; only inside
    // the directory the opens were in so far (a `cp -a many/` does not want sub/)
    expect((await sh(`cat '${m(mnt, 0)}' '${m(mnt, 1)}' > /dev/null`)).code).toBe(0)
    await until('the readahead over the tree', async () => (await residency(m(mnt, 55))) === 'cache', 300_000)
    await sleep(1000)
    expect(await residency(path.join(mnt, 'sub', 'deep', 'f7'))).toMatch(/^tape/)
    // opens in order that leave many/ (small.txt is next in the root): the walk widens to the
    // root and goes on into sub/ and sub/deep/
    expect((await sh(`cat '${m(mnt, 58)}' '${m(mnt, 59)}' '${path.join(mnt, 'small.txt')}' > /dev/null`)).code).toBe(0)
    await until('the readahead into sub/deep', async () => (await residency(path.join(mnt, 'sub', 'deep', 'f7'))) === 'cache', 300_000)
    const r = await sh(`diff -r '${s.src}' '${mnt}'`)
    expect(r.code, r.stderr).toBe(0)
    await umount(mnt)
  }, 600_000)

  it("find | xargs cat over a tree on tape: the mount asks ahead for the units of the files that come next (its stats line counts them), and the copy is right", async () => {
    // the cache emptied and the service restarted: every unit on tape again
    await killServices([recallServicePaths(s.repo, s.env).lock])
    fs.rmSync(path.join(s.repo, 'cache'), { recursive: true, force: true })
    const { mnt, log, pid } = await mountGen(s, 'ra-find', ['--readahead', '0'])
    expect(await residency(m(mnt, 59))).toBe('tape')
    const out = path.join(work, 'ra-find.out')
    const list = path.join(work, 'ra-find.list')
    const r = await sh(`cd '${mnt}' && find . -type f | tee '${list}' | xargs cat > '${out}'`)
    expect(r.code, r.stderr).toBe(0)
    // the same files in the same order (find's on the mount) read from the source
    const want = await sh(`cd '${s.src}' && xargs cat < '${list}' | sha256sum`)
    expect(fs.readFileSync(list, 'utf8').split('\n').length).toBeGreaterThan(60)
    expect((await sh(`sha256sum < '${out}'`)).stdout).toBe(want.stdout)
    // the server's stats line (SIGUSR2): opens in order, units asked for ahead
    process.kill(pid, 'SIGUSR2')
    let line = ''
    await until('the stats line', () => (line = fs.readFileSync(log, 'utf8').split('\n').find((l) => l.includes('tape readahead:')) ?? '') !== '')
    const c = JSON.parse(/tape readahead: (\{[^}]*\})/.exec(line)![1]!) as { inOrder: number; elsewhere: number; askedUnits: number }
    expect(c.inOrder, line).toBeGreaterThan(60)
    expect(c.askedUnits, line).toBeGreaterThan(0)
    await umount(mnt)
  }, 600_000)
})

describe('format 2: a reader interrupted while it waits for tape', () => {
  // The library's one drive is held by another process (flock on its lock, as a migration
  // holding it would): a recall cannot start, so it stays in the engine's queue, where a
  // cancel takes it out.
  let s: Setup
  beforeAll(async () => {
    s = await setup('intr')
  }, 600_000)

  const children = new Set<ChildProcess>()
  afterEach(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    await until('the test processes to exit', () => [...children].every((c) => c.exitCode !== null || c.signalCode !== null), 30_000)
    children.clear()
    for (const mnt of [...mounts]) if (mnt.includes('intr-')) await umount(mnt)
  })

  const start = (cmd: string, args: string[], out: 'ignore' | 'pipe' = 'ignore'): ReturnType<typeof startIn> => startIn(children, cmd, args, out)
  const engine = (): ReturnType<typeof engineStatus> => engineStatus(s.repo, s.env)
  // no frame readahead and no readahead over the tree: each reader's file's units only, so that the queue's counts are exact
  const quiet = ['--readahead', '0', '--tape-readahead', '0']

  it('a reader killed in a synchronous read (O_DIRECT) that waits for a recall exits at once (FUSE_INTERRUPT, EINTR), and its close cancels the recall', async () => {
    const x = 'sub/deep/f5'
    const xu = await fileUnits(s, x)
    expect(cachedKeys(s, xu)).toEqual([])
    const before = await engine()
    const drive = await holdDrive(s.vtl, start)
    const { mnt, log } = await mountGen(s, 'intr-sync', quiet)
    const a = start('dd', [`if=${path.join(mnt, x)}`, 'of=/dev/null', 'bs=65536', 'count=1', 'iflag=direct'])
    await until('the reader to wait for its read in the kernel', async () => /request_wait_answer[^]*fuse_direct_io/.test(kernelStack(a.p.pid)) && (await engine()).pending === xu.length)
    a.p.kill('SIGKILL')
    const t0 = Date.now()
    await a.exited
    expect(Date.now() - t0, fs.readFileSync(log, 'utf8')).toBeLessThan(10_000)
    await until('the recalls to be cancelled', async () => {
      const e = await engine()
      return e.pending === 0 && e.inflight === 0 && e.cancelled === before.cancelled + xu.length
    }, 60_000)
    expect(fs.readFileSync(log, 'utf8')).toMatch(/read of \/sub\/deep\/f5 interrupted while it waited for tape \(EINTR\)/)
    await drive.release()
    expect(cachedKeys(s, xu)).toEqual([])
    await umount(mnt)
  }, 600_000)

  it('a reader killed while its read waits for a recall exits at once, and its close cancels the recall (not recalled, not cached); the next read recalls it', async () => {
    const units = await fileUnits(s, 'top.bin')
    expect(units.length).toBeGreaterThan(1)
    expect(cachedKeys(s, units)).toEqual([])
    const before = await engine()
    const drive = await holdDrive(s.vtl, start)
    const { mnt, log } = await mountGen(s, 'intr-kill', quiet)
    const f = path.join(mnt, 'top.bin')
    const reader = start('cat', [f])
    // its open asked for the file's units (the prefetch at open), its read waits for them in the kernel
    await until('the recalls to be queued', async () => (await engine()).pending === units.length)
    await until('the reader to wait in the kernel', () => inD(reader.p.pid))
    reader.p.kill('SIGKILL')
    const t0 = Date.now()
    await reader.exited
    expect(Date.now() - t0).toBeLessThan(10_000)
    await until('the recalls to be cancelled', async () => {
      const e = await engine()
      return e.pending === 0 && e.inflight === 0 && e.cancelled === before.cancelled + units.length
    }, 60_000)
    await until('the log line', () => new RegExp(`close of /top\\.bin: ${units.length} unit recalls given up \\(no open file needs them\\), \\d+ reads? of closed files waiting for them interrupted \\(EINTR\\)`).test(fs.readFileSync(log, 'utf8')))
    await drive.release()
    await sleep(1000)
    expect(cachedKeys(s, units)).toEqual([])
    expect(await residency(f)).toBe('tape')
    const r = await sh(`cmp '${f}' '${path.join(s.src, 'top.bin')}'`)
    expect(r.code, r.stderr).toBe(0)
    expect(cachedKeys(s, units).sort()).toEqual([...units].sort())
    await umount(mnt)
  }, 600_000)
})
