/**
 * The tape tier on a format 2 repository (native-notes/format.md §2.18): format 1's tiers,
 * tape catalog, migration writer, tiered store and recall service, reached through a
 * TapeRepo view of the repository. What is format 2's own: the view, the selection (a
 * generation's own data is stream N), the sizes of a unit's ends for either unit version,
 * the `tape` feature, the maintenance lock, and the units of a generation for
 * `--keep-on-disk` and the restore's recall plan.
 */
import { UNIT_HEADER_BYTES, UNIT_TRAILER_BYTES } from '../../format/unit.js'
import { UNIT_V2_HEADER_BYTES, UNIT_V2_VERSION } from '../../format/v2/unit.js'
import { encodeConfigV2 } from '../../format/v2/config.js'
import { FileType } from '../../format/v2/dir.js'
import { keys2 } from '../../format/v2/layout.js'
import type { ManifestV2 } from '../../format/v2/records.js'
import { unitLayout } from '../../blocks/units.js'
import type { DiskStore } from '../../store/disk.js'
import { BfsError } from '../errors.js'
import { openCatalog, planUnits, writeToTape, type MigrateOptions, type MigrateResult } from '../migrate.js'
import { unitKeysOf } from '../restore.js'
import { Lease } from './lease.js'
import { GenReader2, StreamSource2 } from './read2.js'
import { envelope2, tapeRepoOf, type Repo2 } from './repo2.js'
import { restoreSet2 } from './restore2.js'

/** The units of stream N (its stream record's count; none when it does not read: nothing to migrate). */
function streamUnits(repo: Repo2, n: number): Array<{ key: string; unit: number }> {
  let units: number
  try {
    units = repo.stream(n).units
  } catch {
    return []
  }
  return Array.from({ length: units }, (_, u) => ({ key: keys2.unit(n, u), unit: u }))
}

/** The keys of every unit the files of `gens` (under `p`) read (their block maps, into older streams). */
export async function unitsRead(repo: Repo2, gens: ManifestV2[], p = ''): Promise<Set<string>> {
  const out = new Set<string>()
  const ub = (s: number): number => repo.stream(s).unitBlocks
  for (const m of gens) {
    const r = new GenReader2(repo, m)
    try {
      const set = await restoreSet2(r, p)
      for (let i = 0; i < set.entries.length; i++) {
        const e = set.entries[i]!
        if ((e.type as number) !== FileType.File) continue
        for (const k of unitKeysOf(await set.extents(e, i), e.size, ub)) out.add(k)
      }
    } finally {
      await r.close()
    }
  }
  return out
}

/** Bytes of a unit's header and of its seek table (v1) or unit index (v2) with the trailer: what the catalog copies. */
async function unitEnds(repo: Repo2, disk: DiskStore, key: string, stream: number, unit: number): Promise<{ head: number; tail: number }> {
  const b = await disk.open(key)
  try {
    const size = b.sizeBytes
    let head = await b.read({ offset: 0, length: UNIT_HEADER_BYTES })
    if (head.length >= 10 && head.readUInt16LE(8) === UNIT_V2_VERSION) head = await b.read({ offset: 0, length: Math.min(UNIT_V2_HEADER_BYTES, size) })
    const g = new StreamSource2(repo).geometry(stream)
    const l = unitLayout(head, await b.read({ offset: size - UNIT_TRAILER_BYTES, length: UNIT_TRAILER_BYTES }), size, disk.where(key), stream, unit, g, g.unitRawBlocks[unit]!, repo.unitSealing)
    return { head: head.length, tail: size - l.at }
  } finally {
    await b.close()
  }
}

/** Sets the `tape` feature (config-copy, then config; §2.7) unless it is set. The caller holds the maintenance lock. */
function enableTape(repo: Repo2): void {
  const f = repo.config.features
  if (f.incompat.includes('tape')) return
  f.incompat.push('tape')
  const file = repo.configFile(repo.config)
  repo.sync.putSync(keys2.configCopy, file, { mode: 'replace' })
  repo.sync.putSync(keys2.config, file, { mode: 'replace' })
}

/** `bfs migrate` on a format 2 repository: format 1's writer and order, under the maintenance lock. */
export async function migrate2(repo: Repo2, o: MigrateOptions = {}): Promise<MigrateResult> {
  const tr = tapeRepoOf(repo)
  if (!o.dryRun && repo.readOnly) throw new BfsError('CORRUPT', `${repo.dir} uses a feature this bfs does not know: read-only, nothing migrated`)
  const lock = o.dryRun ? null : await Lease.maintenance(repo, 'migrate', { waitMs: o.lockWaitMs ?? 0, onWait: (m) => o.reporter?.note?.(m) })
  try {
    const catalog = await openCatalog(tr, !!lock, o)
    const gens = repo.generations().flatMap((g) => ('manifest' in g ? [g.manifest] : []))
    const keep = o.keepOnDisk ? await unitsRead(repo, gens.slice(-o.keepOnDisk)) : new Set<string>()
    const plan = planUnits(tr, catalog, o, { generations: gens, keep: () => keep, units: (m) => streamUnits(repo, m.id), absent: 'pruned' })
    if (o.dryRun) return { plan, write: null, removed: 0 }
    if (plan.units.length) enableTape(repo)
    return await writeToTape(tr, catalog, plan, o, (u) => unitEnds(repo, tr.store, u.key, u.gen, u.unit))
  } finally {
    lock?.release()
  }
}
