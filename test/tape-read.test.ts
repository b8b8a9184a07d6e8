/**
 * Reads from tape through every reader (issue 13, item 5): cat, restore, verify and the
 * mount read a generation whose units were migrated to a virtual tape library (clock
 * factor 0), through the repository's recall service and buffer cache. Real processes,
 * real tools (cp -a, diff -r, getfattr, cat).
 */
import fs from 'node:fs'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { spawn } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { recallServicePaths } from '../src/os/runtime.js'
import { pidAlive } from '../src/os/process.js'
import { Repository } from '../src/repo/repository.js'
import { cacheDir } from '../src/repo/stores.js'
import { RepoTapeCatalog } from '../src/repo/tapecat.js'
import { BufferCache } from '../src/store/cache.js'
import { bfs, newRepo, sh, tmpdir } from './helpers.js'
import { hashTree, unitKeys } from './tape-helpers.js'

let work: string
const services = new Set<string>() // lock files of the services the tests started
const mounts = new Set<string>()
beforeAll(() => {
  work = tmpdir('bfs-tape-read-')
})
afterAll(async () => {
  for (const m of mounts) await umount(m)
  const killed: number[] = []
  for (const lock of services) {
    try {
      const pid = Number(fs.readFileSync(lock, 'utf8').trim())
      if (pid > 0 && pidAlive(pid)) {
        process.kill(pid, 'SIGKILL')
        killed.push(pid)
      }
    } catch {
      // none
    }
  }
  await until('the recall services to exit', () => killed.every((pid) => !pidAlive(pid)), 30_000)
  // a mount server writes its last log line (in work/) as it exits after its unmount
  fs.rmSync(work, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 })
})

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 120_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

async function umount(mnt: string): Promise<void> {
  if ((await bfs(['umount', mnt])).code !== 0) await bfs(['umount', '--lazy', mnt])
  if ((await sh(`grep -q ' ${mnt} ' /proc/mounts`)).code === 0) await sh(`fusermount -uz '${mnt}'`)
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
async function setup(name: string, o: { clockScale?: number; cacheBytes?: string } = {}): Promise<Setup> {
  const repo = await newRepo(path.join(work, name))
  const env: Record<string, string> = { BFS_RUNTIME_DIR: path.join(work, `${name}-run`), BFS_RECALL_IDLE_S: '3' }
  fs.mkdirSync(env.BFS_RUNTIME_DIR!, { recursive: true })
  services.add(recallServicePaths(repo, env).lock)
  const src = path.join(work, `${name}-src`)
  fs.mkdirSync(path.join(src, 'sub', 'deep'), { recursive: true })
  for (let f = 0; f < 8; f++) {
    const b = randomBytes(90_000 + f * 61_000)
    if (f % 2) for (let i = 0; i < b.length; i++) b[i] = 97 + (b[i]! & 7)
    fs.writeFileSync(path.join(src, f < 4 ? 'sub' : 'sub/deep', `f${f}`), b)
  }
  fs.writeFileSync(path.join(src, 'small.txt'), 'hello from tape\n')
  fs.writeFileSync(path.join(src, 'top.bin'), randomBytes(300_000))
  fs.linkSync(path.join(src, 'sub', 'f1'), path.join(src, 'sub', 'f1-link'))
  const holey = fs.openSync(path.join(src, 'sub', 'holey'), 'w')
  fs.writeSync(holey, randomBytes(5000), 0, 5000, 600_000)
  fs.closeSync(holey)
  const b = await bfs(['backup', src, '--unit-blocks', '32', '--frame-blocks', '8'], { repo, env })
  expect(b.code, b.stderr).toBe(0)
  const vtl = path.join(work, `${name}-vtl`)
  expect((await bfs(['tier', 'add', 'tape1', '--vtl', vtl, '--clock-scale', String(o.clockScale ?? 0), '--cartridges', '2'], { repo })).code).toBe(0)
  const m = await bfs(['migrate', 'gen1', '--file-size', '1M'], { repo, env })
  expect(m.code, m.stderr).toBe(0)
  // every unit is on tape only
  const r = Repository.open(repo)
  for (const k of unitKeys(repo, 1)) expect(r.store.sync.hasSync(k), k).toBe(false)
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

  it('a reader killed while it waits for tape exits at once (its page-cache read is a background FUSE request); the recall goes on', async () => {
    // the library is slow since the test above
    const { mnt } = await mountGen('mnt-kill')
    const f = path.join(mnt, 'top.bin')
    expect(await residency(f)).toMatch(/^tape/)
    const reader = spawn('cat', [f], { stdio: ['ignore', 'ignore', 'ignore'] })
    const exited = new Promise<void>((r) => reader.on('exit', () => r()))
    await until('the reader to wait in the kernel', () => {
      try {
        return /^State:\s+D/m.test(fs.readFileSync(`/proc/${reader.pid}/status`, 'utf8'))
      } catch {
        return false
      }
    })
    reader.kill('SIGKILL')
    const t0 = Date.now()
    await exited
    expect(Date.now() - t0).toBeLessThan(10_000)
    expect(await residency(f)).toMatch(/^tape/) // not recalled yet: the reader did not wait for it
    await until('the recall', async () => (await residency(f)) === 'cache', 300_000)
    const r = await sh(`cmp '${f}' '${path.join(s.src, 'top.bin')}'`)
    expect(r.code, r.stderr).toBe(0)
    await umount(mnt)
  }, 600_000)

  const residency = async (f: string): Promise<string> => (await sh(`getfattr --only-values -n user.bfs.residency '${f}'`)).stdout
})

describe('the mount with --tape-readahead', () => {
  let s: Setup
  beforeAll(async () => {
    s = await setup('readahead')
  }, 600_000)

  async function mountGen(name: string, opts: string[] = []): Promise<{ mnt: string }> {
    const mnt = path.join(work, name)
    fs.mkdirSync(mnt, { recursive: true })
    const m = await bfs(['mount', 'gen1', mnt, ...opts], { repo: s.repo, env: s.env })
    expect(m.code, m.stderr).toBe(0)
    mounts.add(mnt)
    return { mnt }
  }
  const residency = async (f: string): Promise<string> => (await sh(`getfattr --only-values -n user.bfs.residency '${f}'`)).stdout

  it('--tape-readahead N: opening a file also asks for the next files of its directory', async () => {
    // --readahead 0: no frame readahead in stream order (which crosses into the next units,
    // other files' data, and recalls them too), so only the option brings siblings in
    const { mnt } = await mountGen('mnt-ra', ['--tape-readahead', '10', '--readahead', '0'])
    const next = path.join(mnt, 'sub', 'f3')
    expect(await residency(next)).toBe('tape')
    expect((await sh(`cat '${path.join(mnt, 'sub', 'f0')}' > /dev/null`)).code).toBe(0)
    // that file was never opened: its units came with f0's open
    await until('the readahead', async () => (await residency(next)) === 'cache', 300_000)
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
