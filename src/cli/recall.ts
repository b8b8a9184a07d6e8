/**
 * `bfs recall GEN[:PATH]`, the recall service's process (`bfs tier serve`, internal), and
 * the composition that lets any command read a repository with units on tape through the
 * service (`recallStores`).
 */
import fs from 'node:fs'
import path from 'node:path'
import { isFormat2 } from '../repo/v2/detect.js'
import { spawn } from 'node:child_process'
import { Command, InvalidArgumentError, Option } from 'commander'
import { EntryType } from '../format/catalog.js'
import { flock } from '../native/index.js'
import { recallServicePaths } from '../os/runtime.js'
import { BfsError, EXIT } from '../repo/errors.js'
import { neededUnits } from '../repo/needed.js'
import type { Repository } from '../repo/repository.js'
import { cacheDir, openDataStore, type RepoDataStore } from '../repo/stores.js'
import { RepoTapeCatalog } from '../repo/tapecat.js'
import { planRecall } from '../repo/recallplan.js'
import { readTier, tapeToBfs, type TapeRepo } from '../repo/tiers.js'
import { lookupPath } from '../repo/tree.js'
import { BufferCache, CacheBusy } from '../store/cache.js'
import { RecallClient, ServiceSource, ServiceUnavailable, type StartedService } from '../store/recall/client.js'
import type { ServiceStatus } from '../store/recall/protocol.js'
import { RecallService } from '../store/recall/service.js'
import { TapeStore, type ColdEntry } from '../store/tape.js'
import { VirtualTapeLibrary } from '../tape/vtl.js'
import type { ReadPolicy } from '../store/tiered.js'
import { count, humanBytes, resolveGen, simTime, sizeValue, type CmdCtx } from './output.js'
import { Progress, TTY_INTERVAL_MS } from './progress.js'
import { openTapeRepo } from './taperepo.js'
import { passphraseForChildren } from './open2.js'

/** Seconds a service waits with nothing to do before it exits ($BFS_RECALL_IDLE_S). */
function idleSeconds(): number {
  const v = Number(process.env.BFS_RECALL_IDLE_S)
  return Number.isFinite(v) && v > 0 ? v : 60
}

/**
 * Starts the repository's recall service in the background (its own session; output to its
 * log). An encrypted repository's service unlocks it itself: from $BFS_PASSWORD_FILE or
 * $BFS_PASSWORD (inherited), or with the passphrase this process was given at the terminal
 * (or by its parent), written to its stdin. Returns its fate for the client: why it ended
 * before answering (its error line from its log and its exit status), so a reader fails at
 * once with that reason (a wrong passphrase) instead of after the start timeout.
 */
export function spawnService(repoDir: string): StartedService {
  const paths = recallServicePaths(repoDir)
  const logFd = fs.openSync(paths.log, 'a', 0o600)
  // where this service's lines start in its log (appended to): its error line is read from here
  let from = 0
  let ended: { code: number | null; signal: NodeJS.Signals | null } | null = null
  try {
    from = fs.fstatSync(logFd).size
    const pass = passphraseForChildren
    const env = pass === null ? process.env : { ...process.env, BFS_PASSWORD_STDIN: '1' }
    const child = spawn(process.execPath, [process.argv[1]!, '--repo', repoDir, 'tier', 'serve', '--idle', String(idleSeconds())], { detached: true, stdio: [pass === null ? 'ignore' : 'pipe', logFd, logFd], env })
    if (pass !== null) {
      child.stdin!.on('error', () => undefined) // a service that exits at once (another one runs) reads nothing
      child.stdin!.end(`${pass}\n`)
    }
    // (unref'd: this process does not wait for it, but still hears of its end while it runs)
    child.on('exit', (code, signal) => void (ended = { code, signal }))
    child.on('error', () => void (ended = { code: null, signal: null }))
    child.unref()
  } finally {
    fs.closeSync(logFd)
  }
  return {
    // exit 0 is a service that found another one holding the lock (its clients find that one)
    failure: async () => {
      const e = ended as { code: number | null; signal: NodeJS.Signals | null } | null
      if (e === null || e.code === 0) return null
      let text = ''
      try {
        const fh = await fs.promises.open(paths.log, 'r')
        try {
          const { size } = await fh.stat()
          const n = Math.min(Math.max(0, size - from), 64 * 1024)
          const buf = Buffer.alloc(n)
          await fh.read(buf, 0, n, size - n)
          text = buf.toString('utf8')
        } finally {
          await fh.close()
        }
      } catch {
        // no log to read: the exit status alone
      }
      // its error line (main.ts: `bfs: …`), the last one it wrote
      const line = text.split('\n').filter((l) => /^(<\d>)?bfs: /.test(l)).pop()?.replace(/^(<\d>)?bfs: /, '').trim()
      const status = e.code !== null ? `exit ${e.code}` : e.signal ? `killed by ${e.signal}` : 'could not be run'
      return `${line ? `${line} (${status}` : `it ended (${status}`}; its log: ${paths.log})`
    },
  }
}

/** A client of the repository's recall service (started on demand unless `start` is false). */
export function recallClient(repo: TapeRepo, o: { cacheBytes?: number; start?: boolean } = {}): RecallClient {
  return new RecallClient({ socketPath: recallServicePaths(repo.dir).socket, spawn: o.start === false ? null : () => spawnService(repo.dir), cacheBytes: o.cacheBytes })
}

/**
 * The repository's data store for a command: the tiered store reading through the recall
 * service when units are on tape (this is what cat, restore and the mount use after the
 * issue-12 switch-over), else the disk store.
 */
export function recallStores(repo: TapeRepo, o: { cacheBytes?: number; timeoutMs?: number; policy?: ReadPolicy } = {}): RepoDataStore {
  return openDataStore(repo, {
    recall: 'service',
    policy: o.policy,
    service: (r, catalog, cache) => new ServiceSource(catalog, recallClient(r, { cacheBytes: o.cacheBytes }), cache, { timeoutMs: o.timeoutMs }),
  })
}

/** The recall service's process: one per repository (a lock), until idle. */
export async function runService(repo: TapeRepo, idleS: number): Promise<number> {
  const paths = recallServicePaths(repo.dir)
  const log = (line: string): void => void process.stderr.write(`${new Date().toISOString()} bfs recall service [${process.pid}] ${repo.dir}: ${line}\n`)
  const fd = fs.openSync(paths.lock, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600)
  if (!flock(fd, 'exclusive')) {
    fs.closeSync(fd) // another one runs (or is starting): its clients will find it
    return 0
  }
  fs.ftruncateSync(fd, 0)
  fs.writeSync(fd, `${process.pid}\n`)
  let cache: BufferCache
  try {
    cache = BufferCache.open(cacheDir(repo), { owner: true })
  } catch (err) {
    log(err instanceof CacheBusy ? `${err.message}; not starting` : `cannot open the buffer cache: ${(err as Error).message}`)
    fs.closeSync(fd)
    return 1
  }
  const catalog = new RepoTapeCatalog(repo.store, repo.tapeSeal ?? null)
  // A stop that does not finish must not leave the service behind (four of them, started by
  // a bench's mounts, once outlived SIGTERM and their idle timeout, idle in epoll): the
  // buffer cache and the library are crash-safe (kill -9 of the service is tested), so
  // after 5 minutes it exits anyway: longer than any drive operation a stop waits for (a
  // locate end to end ~2 min, an exchange ~2 min, at clock scale 1). Unref'd: a service
  // that exits on its own is not held.
  const exitAnyway = (): void => {
    setTimeout(() => {
      log('stopping, but still running 5 minutes later: exiting')
      process.exit(1)
    }, 300_000).unref()
  }
  const service = new RecallService({
    socketPath: paths.socket,
    cache,
    catalog,
    idleMs: idleS * 1000,
    log,
    onStopping: exitAnyway,
    openTier: (name) => {
      const tier = readTier(repo, name)
      try {
        return new TapeStore({ tier: name, library: VirtualTapeLibrary.open(tier.dir), catalog, engine: { windowMs: 20, lingerMs: 5000 } })
      } catch (err) {
        throw tapeToBfs(err)
      }
    },
  })
  const stop = (): void => void service.stop()
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  process.on('SIGHUP', () => undefined)
  await service.start()
  log(`started (buffer cache ${cache.dir}, limit ${humanBytes(cache.limitBytes)}; idle timeout ${idleS} s)`)
  await service.done()
  log('stopped')
  fs.closeSync(fd)
  return 0
}

/** Splits GEN[:PATH]. */
function splitRef(ref: string): { gen: string; path: string } {
  const i = ref.indexOf(':')
  return i < 0 ? { gen: ref, path: '' } : { gen: ref.slice(0, i), path: ref.slice(i + 1) }
}

const parseSize = (v: string): number => {
  const n = sizeValue(v)
  if (n === null) throw new InvalidArgumentError('a size like 10G, 512M or 1048576')
  return n
}

export interface RecallEstimate {
  /** Units the subtree needs, where they are now. */
  units: number
  onDisk: number
  inCache: number
  onTape: ColdEntry[]
  tapeBytes: number
  cartridges: string[]
  /** Simulated seconds to recall what is on tape (the scheduler's plan over the library's drives). */
  seconds: number
  /** The libraries' clock scales (real seconds per simulated second). */
  clockScale: number
}

/** What a recall of the units `keys` (a subtree's: neededUnits, or format 2's unitsRead) would bring back, and how long the tape would take (no tape touched). */
export function estimateRecall(repo: TapeRepo, keys: Iterable<string>): RecallEstimate {
  const catalog = new RepoTapeCatalog(repo.store, repo.tapeSeal ?? null)
  const cache = BufferCache.open(cacheDir(repo))
  const disk = repo.store.sync
  const est: RecallEstimate = { units: 0, onDisk: 0, inCache: 0, onTape: [], tapeBytes: 0, cartridges: [], seconds: 0, clockScale: 0 }
  for (const key of keys) {
    est.units++
    if (disk.hasSync(key)) est.onDisk++
    else {
      const e = catalog.entry(key)
      if (!e) continue // damaged: the reads will say so
      if (cache.has(key, e.sizeBytes)) est.inCache++
      else {
        est.onTape.push(e)
        est.tapeBytes += e.sizeBytes
      }
    }
  }
  const plan = planRecall(repo, est.onTape)
  est.seconds = plan.seconds
  est.cartridges = plan.cartridges
  est.clockScale = plan.clockScale
  // in the order the tape will give them (the recall asks for them in that order too)
  est.onTape = plan.order
  return est
}

function statusLines(s: ServiceStatus | null, cache: { dir: string; entries: number; usedBytes: number; limitBytes: number }): string[] {
  const out: string[] = []
  if (!s) {
    out.push('recall service: not running (the next read of a unit on tape starts it)')
    out.push(`buffer cache ${cache.dir}: ${humanBytes(cache.usedBytes)} of ${humanBytes(cache.limitBytes)}, ${count(cache.entries, 'entry', 'entries')}`)
    return out
  }
  out.push(`recall service: running, pid ${s.pid} since ${s.startedAt}, ${count(s.connections, 'client')}, ${count(s.inflight, 'unit')} being recalled`)
  for (const t of s.tiers) {
    const q = Object.entries(t.engine.pendingByCartridge).map(([c, n]) => `${c}: ${n}`).join(', ')
    out.push(`  tier ${t.tier}: queue ${count(t.engine.pending, 'request')}${q ? ` (${q})` : ''}${t.engine.pendingAhead ? `, ${t.engine.pendingAhead} asked ahead` : ''}; served ${t.engine.counters.served}, ${t.engine.counters.mounts} mounts, ${t.engine.counters.locates} locates, ${t.engine.counters.readThroughs} read-throughs`)
    for (const d of t.engine.drives) out.push(`    drive ${d.index}: ${d.state}${d.cartridge ? `, ${d.cartridge} ${d.loaded ? `loaded at block ${d.block}` : 'not loaded'}` : ', empty'}${d.held ? '' : ' (not held)'}`)
  }
  const c = s.cache
  out.push(`buffer cache ${c.dir}: ${humanBytes(c.usedBytes)} of ${humanBytes(c.limitBytes)}, ${count(c.entries, 'entry', 'entries')} (${humanBytes(c.protectedBytes)} used twice or more), ${count(c.pinnedKeys, 'pinned unit')}; ${c.hits} hits, ${c.misses} misses, ${c.evictions} evictions`)
  return out
}

/** The recall service's and the buffer cache's lines for `bfs tier status` (never starts the service). */
export async function serviceStatus(repo: TapeRepo): Promise<{ text: string[]; json: { service: ServiceStatus | null; cache: { dir: string; entries: number; usedBytes: number; limitBytes: number } } }> {
  const client = recallClient(repo, { start: false })
  let s: ServiceStatus | null = null
  try {
    s = await client.status()
  } catch (err) {
    if (!(err instanceof ServiceUnavailable)) throw err
  } finally {
    client.close()
  }
  const scan = BufferCache.open(cacheDir(repo)).scan()
  const cache = s ? { dir: s.cache.dir, entries: s.cache.entries, usedBytes: s.cache.usedBytes, limitBytes: s.cache.limitBytes } : { dir: cacheDir(repo), ...scan }
  return { text: statusLines(s, cache), json: { service: s, cache } }
}

/** The units format 1's generation `gen` reads under `p`. */
function recallKeys1(repo: Repository, gen: string, p: string, o: { source?: string; quiet?: boolean }): { repo: TapeRepo; id: number; keys: string[] } {
  const man = resolveGen(repo, gen, o)
  const entries = repo.catalog(man.id)
  const root = man.kind === 'volume' && !p ? 0 : lookupPath(entries, Buffer.from(p))
  if (root < 0) throw new BfsError('BAD_INPUT', `${p}: no such file or directory in gen${man.id}`)
  if (entries[root]!.type !== EntryType.Dir && entries[root]!.type !== EntryType.File) throw new BfsError('BAD_INPUT', `${p}: holds no data (not a file or directory)`)
  return { repo, id: man.id, keys: neededUnits(repo, man, root).map((u) => u.key) }
}

/** The units format 2's generation `gen` reads under `p` (its files' block maps). */
async function recallKeys2(dir: string, gen: string, p: string, source: string | undefined): Promise<{ repo: TapeRepo; id: number; keys: Iterable<string> }> {
  const { Repo2, tapeRepoOf } = await import('../repo/v2/repo2.js')
  const { unitsRead } = await import('../repo/v2/tape2.js')
  const repo = await (await import('./open2.js')).openRepo2(dir, (m) => process.stderr.write(`bfs: warning: ${m}\n`))
  const man = repo.resolve(gen, source === undefined ? undefined : path.resolve(source))
  return { repo: tapeRepoOf(repo), id: man.id, keys: await unitsRead(repo, [man], p) }
}

export function registerRecall(program: Command, ctx: CmdCtx): void {
  program
    .command('recall')
    .description('bring what a generation (or a subtree of it) needs from tape into the buffer cache, in tape order, with an estimate first')
    .argument('<ref>', 'GEN[:PATH]')
    .option('--dry-run', 'print the estimate only')
    .addOption(new Option('--buffer-cache <size>', "the buffer cache's size limit (kept for later runs; default 10G)").argParser(parseSize))
    .option('--source <path>', 'latest and latest~K count only the generations of this source')
    .option('--json', 'print JSON lines: progress (message_type "status", at most once a second), then the estimate and the result ("summary")')
    .option('-q, --quiet', 'print nothing but warnings and errors (no estimate, no progress, no summary)')
    .action(async (ref: string, o) => {
      const { gen, path: p } = splitRef(ref)
      // what the subtree reads: format 1's catalog, or format 2's tree (format.md §2.18)
      const { repo, id, keys } = isFormat2(ctx.repoDir()) ? await recallKeys2(ctx.repoDir(), gen, p, o.source) : recallKeys1(ctx.openRepo(), gen, p, o)
      const man = { id }
      const what = `gen${man.id}${p ? `:${p}` : ''}`
      const est = estimateRecall(repo, keys)
      const limit = o.bufferCache ?? BufferCache.open(cacheDir(repo)).limitBytes
      const estLine = `${what}: ${count(est.units, 'unit')} needed: ${est.onTape.length} on tape (${humanBytes(est.tapeBytes)}${est.cartridges.length ? ` on ${count(est.cartridges.length, 'cartridge')}: ${est.cartridges.join(', ')}` : ''}), ${est.inCache} in the buffer cache, ${est.onDisk} on disk`
      const timeLine = `estimated tape time ${simTime(est.seconds)} (simulated${est.clockScale > 0 ? `; at clock scale ${est.clockScale}: ${simTime(est.seconds * est.clockScale)} of real time` : ''})`
      const line = new Progress({ action: 'recall', label: 'recalling:', json: !!o.json, quiet: !!o.quiet, unit: 'unit' })
      if (line.textSummary) {
        process.stdout.write(`${estLine}\n${est.onTape.length ? `${timeLine}\n` : ''}`)
        if (est.tapeBytes > limit) process.stderr.write(`bfs: warning: ${humanBytes(est.tapeBytes)} to recall is more than the buffer cache holds (${humanBytes(limit)}): the first units will be evicted before the last arrive (--buffer-cache SIZE)\n`)
      }
      const base = { gen: man.id, path: p, units: est.units, onTape: est.onTape.length, inCache: est.inCache, onDisk: est.onDisk, tapeBytes: est.tapeBytes, cartridges: est.cartridges, estimateSeconds: est.seconds, clockScale: est.clockScale }
      if (o.dryRun || est.onTape.length === 0) {
        if (o.json) line.summary({ ...base, dryRun: !!o.dryRun, recalled: 0, failed: [], tapeSeconds: 0 })
        else if (!o.dryRun && line.textSummary) process.stdout.write(`nothing to recall: everything ${what} needs is on disk or in the buffer cache\n`)
        return
      }
      const client = recallClient(repo, { cacheBytes: o.bufferCache })
      const ac = new AbortController()
      const onSig = (): void => ac.abort()
      process.on('SIGINT', onSig)
      process.on('SIGTERM', onSig)
      const failed: Array<{ key: string; error: string }> = []
      let t0: number | null = null
      let t1 = 0
      let showDue = 0
      try {
        const before = await client.status().catch(() => null)
        t0 = before ? Math.max(0, ...before.tiers.map((t) => Math.max(0, ...t.engine.drives.map((d) => d.clock)))) : null
        const keys = est.onTape.map((e) => e.key)
        // pinned while this runs: nothing this recall brought back is evicted before it ends
        const { perKey, done } = client.recall(keys, {
          pin: true,
          signal: ac.signal,
          onProgress: (x) => {
            t0 ??= x.simNow
            t1 = x.simNow
            const frac = est.tapeBytes ? x.bytes / est.tapeBytes : x.done / x.total
            // JSON: the usual status object (files = units); a terminal: the tape's own clock and ETA (simulated time, not this process's rate)
            if (line.mode === 'json') line.update({ files: x.done, totalFiles: x.total, bytes: x.bytes, totalBytes: est.tapeBytes })
            else if (Date.now() >= showDue) {
              showDue = Date.now() + TTY_INTERVAL_MS
              line.show(`recalled ${x.done}/${x.total} units (${humanBytes(x.bytes)})${x.failed ? `, ${x.failed} failed` : ''}; tape time ${simTime(Math.max(0, x.simNow - (t0 ?? x.simNow)))}, ETA ${simTime(Math.max(0, est.seconds * (1 - frac)))} simulated`)
            }
          },
        })
        for (const [key, pr] of perKey) pr.catch((err: Error) => failed.push({ key, error: err.message }))
        await done
        await new Promise((r) => setImmediate(r))
      } finally {
        line.finish()
        process.off('SIGINT', onSig)
        process.off('SIGTERM', onSig)
        client.close()
      }
      if (ac.signal.aborted) throw new BfsError('INTERRUPTED', `interrupted; what was recalled stays in the buffer cache`)
      const tapeSeconds = t0 === null ? 0 : Math.max(0, t1 - t0)
      const ok = est.onTape.length - failed.length
      if (o.json) line.summary({ ...base, dryRun: false, recalled: ok, failed, tapeSeconds })
      else if (!line.textSummary) for (const f of failed) process.stderr.write(`bfs: ${f.error}\n`)
      else {
        for (const f of failed) process.stderr.write(`bfs: ${f.error}\n`)
        process.stdout.write(`recalled ${count(ok, 'unit')} (${humanBytes(est.onTape.filter((e) => !failed.some((f) => f.key === e.key)).reduce((a, e) => a + e.sizeBytes, 0))}) of ${what} into the buffer cache ${cacheDir(repo)} in ${simTime(tapeSeconds)} of tape time (simulated)${failed.length ? `; ${count(failed.length, 'unit')} failed` : ''}; not pinned now: the least recently used go first when the cache fills\n`)
      }
      if (failed.length) ctx.exitCode = EXIT.ERROR
    })
}

/** `bfs tier serve`: the recall service's process (started by clients; internal). */
export function registerServe(tier: Command, ctx: CmdCtx): void {
  tier
    .command('serve', { hidden: true })
    .description("the repository's recall service (started on demand by the commands that read tape; not for direct use)")
    .option('--idle <seconds>', 'exit after this long with nothing to do', (v) => {
      const n = Number(v)
      if (!(n > 0)) throw new InvalidArgumentError('--idle takes a number of seconds > 0')
      return n
    }, 60)
    .action(async (o) => {
      ctx.exitCode = await runService(await openTapeRepo(ctx), o.idle)
    })
}

export { CacheBusy }
