/**
 * Test helpers for the tape tier: read every file of a generation through the repository's
 * data store (the tiered store when units are on tape) with the one block reader, as cat and
 * restore will once issue 12's switch-over routes them through it, and compare with a tree.
 */
import { createHash, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { BlockReader } from '../src/blocks/reader.js'
import { EntryType } from '../src/format/catalog.js'
import { Repository } from '../src/repo/repository.js'
import { ObjectResolver } from '../src/repo/resolve.js'
import { repoStreamSource } from '../src/repo/stream-source.js'
import { dataEntry, pathOf, subtree } from '../src/repo/tree.js'
import type { Store } from '../src/store/store.js'
import { keys } from '../src/format/layout.js'
import { pidAlive } from '../src/os/process.js'
import { RepoTapeCatalog } from '../src/repo/tapecat.js'
import { DiskStore } from '../src/store/disk.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { bfs, sh, spawnBfs } from './helpers.js'

/** sha256 of every regular file of gen `id` read through `store`, by path (latin1 of the raw bytes). */
export async function readGeneration(repoDir: string, id: number, store: Store): Promise<Map<string, string>> {
  const repo = Repository.open(repoDir)
  const reader = new BlockReader({ store, source: repoStreamSource(repo), hashAlg: repo.config.hashAlg, blockSeed: 0n, cacheBytes: 4 << 20 })
  const resolver = new ObjectResolver(repo)
  const entries = repo.catalog(id)
  const out = new Map<string, string>()
  try {
    for (const i of subtree(entries, 0)) {
      const e = entries[i]!
      if (e.type !== EntryType.File) continue
      const d = dataEntry(entries, i)
      const h = createHash('sha256')
      if (d.objGen) {
        const f = reader.file(resolver.resolve(d.objGen, d.objIndex), d.size)
        const buf = Buffer.alloc(1 << 20)
        for (let pos = 0; pos < d.size; ) {
          const n = await reader.read(f, buf, Math.min(buf.length, d.size - pos), pos)
          if (n <= 0) throw new Error(`short read at ${pos} of ${pathOf(entries, i).toString()}`)
          h.update(buf.subarray(0, n))
          pos += n
        }
      }
      out.set(pathOf(entries, i).toString('latin1'), h.digest('hex'))
    }
  } finally {
    await reader.close()
  }
  return out
}

/** sha256 of every regular file under `dir`, by relative path. */
export function hashTree(dir: string): Map<string, string> {
  const out = new Map<string, string>()
  const walk = (d: string, rel: string): void => {
    for (const x of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, x.name)
      const r = rel ? `${rel}/${x.name}` : x.name
      if (x.isDirectory()) walk(p, r)
      else if (x.isFile()) out.set(Buffer.from(r).toString('latin1'), createHash('sha256').update(fs.readFileSync(p)).digest('hex'))
    }
  }
  walk(dir, '')
  return out
}

/** Every unit key of gen `id`'s manifest. */
export function unitKeys(repoDir: string, id: number): string[] {
  const repo = Repository.open(repoDir)
  return repo.manifest(id).units.map((u) => keys.unit(id, u.index))
}

/**
 * A tree of `dirs` × `files` files (sizes from `base` up, half of them compressible); `round`
 * > 0 rewrites a fifth of them (the generations the migrate tests back up).
 */
export function writeTree(dir: string, round: number, o: { dirs: number; files: number; base: number }): void {
  fs.mkdirSync(dir, { recursive: true })
  for (let d = 0; d < o.dirs; d++) {
    fs.mkdirSync(path.join(dir, `d${d}`), { recursive: true })
    for (let f = 0; f < o.files; f++) {
      if (round > 0 && (d + f + round) % 5 !== 0) continue
      const b = randomBytes(o.base + ((d * o.files + f) % 7) * 50_000)
      if (f % 2) for (let i = 0; i < b.length; i++) b[i] = 97 + (b[i]! & 15)
      fs.writeFileSync(path.join(dir, `d${d}`, `f${f}`), b)
    }
  }
}

/** Kills (SIGKILL) the recall services whose lock files are `locks` (their pids are in them) and waits for them to exit. */
export async function killServices(locks: Iterable<string>, waitMs = 30_000): Promise<void> {
  const killed: number[] = []
  for (const lock of locks) {
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
  for (const end = Date.now() + waitMs; killed.some(pidAlive) && Date.now() < end; ) await new Promise((r) => setTimeout(r, 100))
  if (killed.some(pidAlive)) throw new Error('timed out waiting for the recall services to exit')
}

/**
 * One round of the kill -9 tests: `bfs migrate ARGS` (commits after every tape file), killed a
 * random moment (0–40 ms) after a random number (1–3) of further catalog records, or of
 * further unit files gone from disk (`onDisk()` counts them), so that the kill lands in every
 * phase however fast the machine is. The exit code, or null when it was killed.
 */
export async function migrateKilled(repo: string, args: string[], onDisk: () => number): Promise<number | null> {
  const records = (): number => (fs.existsSync(path.join(repo, 'tape')) ? fs.readdirSync(path.join(repo, 'tape')).filter((n) => /^rec-\d+$/.test(n)).length : 0)
  const byRecords = Math.random() < 0.5
  const step = 1 + Math.floor(Math.random() * 3)
  const target = byRecords ? records() + step : onDisk() - step
  const p = spawnBfs(['migrate', ...args], repo)
  const exited: Promise<number | null> = p.exitCode !== null || p.signalCode !== null ? Promise.resolve(p.signalCode ? null : p.exitCode) : new Promise((r) => p.once('close', (code, sig) => r(sig ? null : code)))
  let done = false
  void exited.then(() => (done = true))
  while (!done && (byRecords ? records() < target : onDisk() > target)) await new Promise((r) => setTimeout(r, 2))
  await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 40)))
  p.kill('SIGKILL')
  return exited
}

/** Where each of the units `keys` of the repository in `repo` (either format) is: on disk, on tape (catalog), both, or neither. */
export function census(repo: string, keys: Iterable<string>): { disk: number; tape: number; both: number; lost: string[] } {
  const cat = new RepoTapeCatalog(DiskStore.open(repo))
  const out = { disk: 0, tape: 0, both: 0, lost: [] as string[] }
  for (const k of keys) {
    const onDisk = fs.existsSync(path.join(repo, k))
    const onTape = !!cat.entry(k)
    if (onDisk && onTape) out.both++
    else if (onDisk) out.disk++
    else if (onTape) out.tape++
    else out.lost.push(k)
  }
  return out
}

/**
 * Three backups of `src` (1 MiB units), the tree changed by `tree(src, round)` before each,
 * then a tape tier `tape1` in `vtl` (clock scale 0, 3 cartridges): each generation's expected
 * files (hashTree), by id. The repository exists (either format).
 */
export async function backupsAndTier(repo: string, src: string, vtl: string, tree: (dir: string, round: number) => void): Promise<Map<number, Map<string, string>>> {
  const expected = new Map<number, Map<string, string>>()
  for (let round = 0; round < 3; round++) {
    tree(src, round)
    const b = await bfs(['backup', src, '--unit-blocks', '256', '--frame-blocks', '64'], { repo })
    if (b.code !== 0) throw new Error(`backup: ${b.stderr}`)
    expected.set(round + 1, hashTree(src))
  }
  const t = await bfs(['tier', 'add', 'tape1', '--vtl', vtl, '--clock-scale', '0', '--cartridges', '3'], { repo })
  if (t.code !== 0) throw new Error(`tier add: ${t.stderr}`)
  return expected
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Waits (polling every 50 ms) until `ok()`; throws naming `what` after `ms`. */
export async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 120_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

/** Unmounts a bfs mount: bfs umount, else lazily, else fusermount -uz. */
export async function unmountBfs(mnt: string): Promise<void> {
  if ((await bfs(['umount', mnt])).code !== 0) await bfs(['umount', '--lazy', mnt])
  if ((await sh(`grep -q ' ${mnt} ' /proc/mounts`)).code === 0) await sh(`fusermount -uz '${mnt}'`)
}

/** user.bfs.residency of a file of a mount (getfattr's value; empty when it has none). */
export const residency = async (f: string): Promise<string> => (await sh(`getfattr --only-values -n user.bfs.residency '${f}'`)).stdout

/** A process a test started, its exit and what it wrote to stdout (when piped). */
export interface Started {
  p: ChildProcess
  exited: Promise<number | null>
  stdout: Buffer[]
}

/** Starts `cmd args`, remembered in `children` (the test's teardown kills what is left). */
export function startIn(children: Set<ChildProcess>, cmd: string, args: string[], out: 'ignore' | 'pipe' = 'ignore'): Started {
  const p = spawn(cmd, args, { stdio: ['ignore', out, 'ignore'] })
  children.add(p)
  const stdout: Buffer[] = []
  p.stdout?.on('data', (d: Buffer) => stdout.push(d))
  const exited = new Promise<number | null>((r) => p.on('close', (code) => r(code)))
  return { p, exited, stdout }
}

/**
 * Holds drive 0 of the library in `vtl` until release(): another process with the drive's
 * flock (flock(1), no fork), as a migration holding it would: a recall cannot start, so it
 * stays in the engine's queue, where a cancel takes it out.
 */
export async function holdDrive(vtl: string, start: (cmd: string, args: string[], out: 'pipe') => Started): Promise<{ release: () => Promise<void> }> {
  const h = start('flock', ['-x', '-F', path.join(vtl, 'drive-0.lock'), 'sh', '-c', 'echo held; exec sleep 600'], 'pipe')
  await until('the drive to be held', () => Buffer.concat(h.stdout).includes('held') || h.p.exitCode !== null, 60_000)
  if (h.p.exitCode !== null) throw new Error('flock of the drive exited')
  return {
    release: async () => {
      h.p.kill('SIGKILL')
      await h.exited
    },
  }
}

/** The recall service's engine queue and counters for tier `tier` (bfs tier status --json); zeros while no service lists it. */
export async function engineStatus(repo: string, env: Record<string, string>, tier = 'tape1'): Promise<{ pending: number; cancelled: number; served: number; inflight: number }> {
  const st = await bfs(['tier', 'status', tier, '--json'], { repo, env })
  if (st.code !== 0) throw new Error(`bfs tier status: ${st.stderr}`)
  const j = JSON.parse(st.stdout) as { service: { inflight: number; tiers: Array<{ engine: { pending: number; counters: { cancelled: number; served: number } } }> } | null }
  const e = j.service?.tiers[0]?.engine // (a service just started may not list its tier yet)
  if (!j.service || !e) return { pending: 0, cancelled: 0, served: 0, inflight: 0 }
  return { pending: e.pending, cancelled: e.counters.cancelled, served: e.counters.served, inflight: j.service.inflight }
}

/** Whether process `pid` is in state D (uninterruptible or killable sleep: a read waiting in the kernel). */
export const inD = (pid: number | undefined): boolean => {
  try {
    return /^State:\s+D/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
  } catch {
    return false
  }
}

/** The kernel stack of pid: in an O_DIRECT read it shows request_wait_answer called from fuse_direct_io. */
export const kernelStack = (pid: number | undefined): string => {
  try {
    return fs.readFileSync(`/proc/${pid}/stack`, 'utf8')
  } catch {
    return ''
  }
}

/**
 * The tree the mount tests read from tape: files over several 128 KiB units (sub/, sub/deep/),
 * small files, `many` small files in many/ that come first in the tree's order (before
 * small.txt and sub/), a hard link and a file with a hole.
 */
export function writeReadTree(src: string, many = 0): void {
  fs.mkdirSync(path.join(src, 'sub', 'deep'), { recursive: true })
  for (let f = 0; f < 8; f++) {
    const b = randomBytes(90_000 + f * 61_000)
    if (f % 2) for (let i = 0; i < b.length; i++) b[i] = 97 + (b[i]! & 7)
    fs.writeFileSync(path.join(src, f < 4 ? 'sub' : 'sub/deep', `f${f}`), b)
  }
  fs.writeFileSync(path.join(src, 'small.txt'), 'hello from tape\n')
  if (many) fs.mkdirSync(path.join(src, 'many'))
  for (let i = 0; i < many; i++) fs.writeFileSync(path.join(src, 'many', `m${String(i).padStart(2, '0')}`), randomBytes(20_000))
  fs.writeFileSync(path.join(src, 'top.bin'), randomBytes(300_000))
  fs.linkSync(path.join(src, 'sub', 'f1'), path.join(src, 'sub', 'f1-link'))
  const holey = fs.openSync(path.join(src, 'sub', 'holey'), 'w')
  fs.writeSync(holey, randomBytes(5000), 0, 5000, 600_000)
  fs.closeSync(holey)
}
