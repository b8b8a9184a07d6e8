/**
 * `bfs migrate`: moves units of chosen generations from disk to a tape tier
 * (native-notes/tape.md §"Migration"; format.md §"Tape catalog" for the records).
 *
 * Under the writer lock (backups wait; mounts and restores go on reading):
 *   1. choose the units: those of the chosen generations still on disk, less what the
 *      `keepOnDisk` newest generations read;
 *   2. write them to tape (TapeStore.writeBlobs): tape files of ≤ fileBytes, each a header
 *      record and the units' bytes in 1 MiB records spooled from disk, immediate filemarks;
 *      every `commitFiles` files a flush (the tape is durable), optionally a read-back that
 *      checks every unit's SHA-256;
 *   3. then the catalog record of each tape file (tmp → fsync → link, fsync tape/);
 *   4. then, and only then, the disk copies of its units are removed (fsync of gens/N).
 *
 * Crash safety (kill -9 anywhere): before 3, the units are still on disk and the tape
 * space is wasted (the next run appends after it); between 3 and 4 a unit is on disk and
 * on tape, readers use the disk copy, and the next run removes it; after 4 it is on tape,
 * and readers find it in the catalog. A unit is never in neither place.
 */
import { keys } from '../format/layout.js'
import type { Manifest } from '../format/manifest.js'
import { frameCountFor, SEEK_ENTRY_BYTES, UNIT_HEADER_BYTES, UNIT_TRAILER_BYTES } from '../format/unit.js'
import { StoreError } from '../store/store.js'
import { TapeStore, type TapeBatch, type WriteItem, type WriteProgress, type WriteResult } from '../store/tape.js'
import { VirtualTapeLibrary } from '../tape/vtl.js'
import { BfsError } from './errors.js'
import { WriterLock } from './commit/index.js'
import { neededUnits } from './needed.js'
import type { Repository } from './repository.js'
import { RepoTapeCatalog } from './tapecat.js'
import { listTiers, readTier, tapeToBfs, type TapeRepo, type Tier } from './tiers.js'

export interface MigrateOptions {
  /** Generation ids to migrate (undefined: every readable generation, filtered by the others). */
  gens?: number[]
  /** Only generations whose backup started more than this many ms ago. */
  olderThanMs?: number
  /** Keep on disk every unit the N newest generations read. */
  keepOnDisk?: number
  /** The tier (default: the only one). */
  tier?: string
  /** Data bytes per tape file (default 4 GiB). */
  fileBytes?: number
  /** Tape files between flushes and catalog commits (default 16). */
  commitFiles?: number
  /** Read every tape file back and check each unit's SHA-256 before committing it. */
  verify?: boolean
  /** Plan only. */
  dryRun?: boolean
  lockWaitMs?: number
  /** How long to wait for a drive another process (the recall service) holds, ms (default 10 min). */
  driveWaitMs?: number
  signal?: AbortSignal
  reporter?: { progress?: (p: WriteProgress & { totalBlobs: number; totalBytes: number }) => void; warn?: (m: string) => void; note?: (m: string) => void }
  /** Overrides the library's clock scale (tests). */
  clockScale?: number
}

export interface MigratePlan {
  tier: Tier
  /** Generations chosen. */
  gens: number[]
  /** Units to write, in stream order. */
  units: Array<{ key: string; gen: number; unit: number; bytes: number }>
  bytes: number
  /** Units on tape whose disk copy is still there (a run killed between commit and removal): removed now. */
  leftovers: string[]
  /** Units of chosen generations kept on disk because one of the newest generations reads them. */
  kept: number
  /** Units of chosen generations already on tape. */
  onTape: number
}

export interface MigrateResult {
  plan: MigratePlan
  write: WriteResult | null
  /** Disk copies removed (written units and leftovers). */
  removed: number
}

const DEFAULT_DRIVE_WAIT_MS = 10 * 60_000

/** The tier to migrate to: the one named, or the only one. */
export function chooseTier(repo: TapeRepo, name?: string): Tier {
  if (name !== undefined) return readTier(repo, name)
  const all = listTiers(repo)
  if (all.length === 0) throw new BfsError('BAD_INPUT', `${repo.dir} has no tier to migrate to (add one with 'bfs tier add NAME --vtl DIR')`)
  if (all.length > 1) throw new BfsError('USAGE', `${repo.dir} has ${all.length} tiers (${all.map((t) => t.name).join(', ')}): say which with --tier`)
  return all[0]!
}

/** Bytes at the end of a unit that its seek table and trailer take (kept in the catalog). */
export function unitTailBytes(man: Manifest, unit: number): number {
  return frameCountFor(man.units[unit]!.rawBlocks, man.frameBlocks) * SEEK_ENTRY_BYTES + UNIT_TRAILER_BYTES
}

/** Which units a migration would write (no lock, no writes). */
export function planMigration(repo: Repository, catalog: RepoTapeCatalog, o: MigrateOptions, now = Date.now()): MigratePlan {
  return planUnits(repo, catalog, o, {
    generations: repo.generations(),
    keep: (newest) => new Set(newest.flatMap((m) => neededUnits(repo, m).map((u) => u.key))),
    units: (m) => m.units.map((u) => ({ key: keys.unit(m.id, u.index), unit: u.index, bytes: u.bytes })),
    absent: 'damaged',
  }, now)
}

/** What a format's planning gives planUnits. */
export interface MigrationSource<M extends { id: number; time: string }> {
  /** The readable generations, oldest first. */
  generations: M[]
  /** The keys of every unit the `newest` generations read (kept on disk by --keep-on-disk). */
  keep(newest: M[]): Set<string>
  /** A generation's own units; `bytes` read from disk when undefined. */
  units(m: M): Array<{ key: string; unit: number; bytes?: number }>
  /** A unit neither on disk nor on tape: damage (format 1), or deleted by a prune (format 2). */
  absent: 'damaged' | 'pruned'
}

/** The selection of either format: the chosen generations' own units still on disk, less what the newest read. */
export function planUnits<M extends { id: number; time: string }>(repo: TapeRepo, catalog: RepoTapeCatalog, o: MigrateOptions, src: MigrationSource<M>, now = Date.now()): MigratePlan {
  const tier = chooseTier(repo, o.tier)
  const all = src.generations
  let chosen = o.gens ? all.filter((m) => o.gens!.includes(m.id)) : all
  if (o.gens) for (const id of o.gens) if (!all.some((m) => m.id === id)) throw new BfsError('NO_SUCH_GEN', `no generation gen${id} in ${repo.dir}`)
  if (o.olderThanMs !== undefined) chosen = chosen.filter((m) => now - Date.parse(m.time) > o.olderThanMs!)
  // what the newest generations read stays on disk (they are the ones restored and mounted)
  let keep = new Set<string>()
  if (o.keepOnDisk !== undefined && o.keepOnDisk > 0) {
    const newest = all.slice(-o.keepOnDisk)
    keep = src.keep(newest)
    const newestIds = new Set(newest.map((m) => m.id))
    chosen = chosen.filter((m) => !newestIds.has(m.id))
  }
  const disk = repo.store.sync
  const plan: MigratePlan = { tier, gens: chosen.map((m) => m.id), units: [], bytes: 0, leftovers: [], kept: 0, onTape: 0 }
  for (const m of chosen) {
    for (const u of src.units(m)) {
      const key = u.key
      const onDisk = disk.hasSync(key)
      if (catalog.entry(key)) {
        plan.onTape++
        if (onDisk && !keep.has(key)) plan.leftovers.push(key)
        continue
      }
      if (!onDisk) {
        if (src.absent === 'damaged') o.reporter?.warn?.(`${repo.store.where(key)} is missing and not on tape: gen${m.id} is damaged there (bfs verify)`)
        continue
      }
      if (keep.has(key)) {
        plan.kept++
        continue
      }
      const bytes = u.bytes ?? disk.statSync(key).sizeBytes
      plan.units.push({ key, gen: m.id, unit: u.unit, bytes })
      plan.bytes += bytes
    }
  }
  return plan
}

/** Runs a migration (see the file's comment). */
export async function migrate(repo: Repository, o: MigrateOptions = {}): Promise<MigrateResult> {
  const lock = o.dryRun ? null : await WriterLock.acquire(repo.store, 'migrate', o.lockWaitMs ?? 0, { onWait: (m) => o.reporter?.note?.(m) })
  try {
    const catalog = await openCatalog(repo, !!lock, o)
    const plan = planMigration(repo, catalog, o)
    if (o.dryRun) return { plan, write: null, removed: 0 }
    const manifests = new Map(repo.generations().map((m) => [m.id, m]))
    return await writeToTape(repo, catalog, plan, o, async (u) => ({ head: UNIT_HEADER_BYTES, tail: unitTailBytes(manifests.get(u.gen)!, u.unit) }))
  } finally {
    lock?.release()
  }
}

/** The tape catalog, after a locked run swept a killed migration's half-written record (its pid is dead). */
export async function openCatalog(repo: TapeRepo, locked: boolean, o: MigrateOptions): Promise<RepoTapeCatalog> {
  if (locked) await repo.store.sweep('tape')
  const catalog = new RepoTapeCatalog(repo.store, repo.tapeSeal ?? null)
  for (const p of catalog.problems) o.reporter?.warn?.(`${p.problem} (its units are unknown to this catalog)`)
  return catalog
}

/**
 * Steps 2–4 of the file's comment, for either format (the caller holds its lock): the
 * leftovers' disk copies removed, the plan's units written to tape, each tape file's units
 * removed from disk once its catalog record is durable. `ends(u)`: the bytes of the unit's
 * header and of its seek table (unit index) and trailer, which the catalog keeps copies of.
 */
export async function writeToTape(repo: TapeRepo & { config: { repoId: string } }, catalog: RepoTapeCatalog, plan: MigratePlan, o: MigrateOptions, ends: (u: MigratePlan['units'][number]) => Promise<{ head: number; tail: number }>): Promise<MigrateResult> {
  let lib: VirtualTapeLibrary | null = null
  let tape: TapeStore | null = null
  try {
    const disk = repo.store
    const res: MigrateResult = { plan, write: null, removed: 0 }
    const removeCopies = async (ks: string[]): Promise<void> => {
      const dirs = new Set<string>()
      for (const k of ks) {
        await disk.remove(k)
        dirs.add(k.slice(0, k.lastIndexOf('/')))
        res.removed++
      }
      for (const d of dirs) await disk.flush(d)
    }
    await removeCopies(plan.leftovers)
    if (plan.units.length === 0) return res
    try {
      lib = VirtualTapeLibrary.open(plan.tier.dir, o.clockScale === undefined ? {} : { clockScale: o.clockScale })
    } catch (err) {
      throw tapeToBfs(err)
    }
    const repoId = /^[0-9a-f]{32}$/.test(repo.config.repoId) ? Buffer.from(repo.config.repoId, 'hex') : undefined
    tape = new TapeStore({ tier: plan.tier.name, library: lib, catalog, repoId, engine: { windowMs: 0 }, headerSealer: repo.tapeSeal?.tapeFile ?? null })
    const items: WriteItem[] = []
    for (const u of plan.units) {
      const e = await ends(u)
      items.push({
        key: u.key,
        sizeBytes: u.bytes,
        headBytes: e.head,
        tailBytes: e.tail,
        open: async () => {
          const b = await disk.open(u.key)
          if (b.sizeBytes !== u.bytes) {
            await b.close()
            throw new StoreError('EIO', u.key, `${disk.where(u.key)}: ${b.sizeBytes} bytes, its manifest says ${u.bytes}: damaged, not migrated (bfs verify)`)
          }
          return b
        },
      })
    }
    try {
      res.write = await tape.writeBlobs(items, {
        fileBytes: o.fileBytes,
        commitFiles: o.commitFiles,
        verify: o.verify,
        driveWaitMs: o.driveWaitMs ?? DEFAULT_DRIVE_WAIT_MS,
        signal: o.signal,
        onProgress: (p) => o.reporter?.progress?.({ ...p, totalBlobs: plan.units.length, totalBytes: plan.bytes }),
        // the catalog record is durable: the disk copies may go
        onCommitted: (ks: string[], _b: TapeBatch) => removeCopies(ks),
      })
    } catch (err) {
      throw tapeToBfs(err)
    }
    for (const f of res.write.failed) o.reporter?.warn?.(`${f.key}: ${f.reason}; it stays on disk`)
    if (o.signal?.aborted) throw new BfsError('INTERRUPTED', `interrupted; ${res.removed} units were migrated and removed from disk, the rest stay on disk`)
    return res
  } finally {
    await tape?.close()
    await lib?.close()
  }
}
