/**
 * `bfs restore` of a format 2 generation (or a subtree of it): the tree is read directory by
 * directory from the subtree's root (TreeReader: only the pieces on the path and below it),
 * turned into entries of format 1's catalog shape, and restored by format 1's restore
 * (repo/restore.ts restoreEntries: the same directories, symlinks, special files, file data on
 * worker threads, hard links, metadata bottom-up, the same damage handling). File maps are
 * resolved as the data phase reaches each file (MapReader); the workers read the runs'
 * streams through their stream records' geometry.
 */
import { EntryType, ENTRY_FLAG_LINK_FOLLOWER, type Entry } from '../../format/catalog.js'
import { E_LINKED, FileType, type Entry2 } from '../../format/v2/dir.js'
import { FormatError } from '../../format/errors.js'
import { BfsError } from '../errors.js'
import { WorkerReaders } from '../readers.js'
import { unitKeysOf, type RestoreSet } from '../restore.js'
import { planTapePasses } from '../tapepasses.js'
import { keys } from '../../format/layout.js'
import type { Store } from '../../store/store.js'
import { tapeRepoOf } from './repo2.js'
import { type GenReader2, StreamSource2 } from './read2.js'

/** A format 2 entry carried as a format 1 catalog entry (the map kept for the data phase). */
type Entry1 = Entry & { map: Entry2['map']; dataBlocks: number }

const SLASH = Buffer.from('/')

/** Units per lane fetched before the data phase asks (warmGeneration): 16 × 20 MiB raw. */
const EARLY_UNITS_PER_LANE = 16

/**
 * A restore of a whole generation from a remote store (S3): its run's own units fetched into
 * the cache from now on, while the tree is read, the directories are made and every file's
 * extents resolved (~0.8 s of the main thread on the Linux tree, the other core idle): in
 * `lanes` interleaved runs from evenly spaced starts, the order restore's lanes read a full
 * backup's data in (repo/lanes.ts). All are asked for at once (Store.warm's `ahead`); the
 * store's fill thread runs them in that order, ORDERED_FILLS at a time, with no turn of this
 * event loop between them (asked for one after another from here, each next one waited for
 * such a turn, and the tree's synchronous reads give none for most of a second). The data
 * phase's own warming (RestoreSet.warm) joins what is under way, goes on past these, and does
 * not wait behind them (an incremental's units in older runs). At most
 * EARLY_UNITS_PER_LANE per lane (the cache must not be filled far ahead of the reads).
 * Store.stopFetching ends those not fetched yet.
 */
export function warmGeneration(r: GenReader2, lanes: number): void {
  const warm = r.repo.data.warm
  if (!warm || !r.manifest.stream) return
  let units: number
  try {
    units = r.repo.stream(r.manifest.run).units
  } catch {
    return // the data phase reports it
  }
  // at most 4 lanes' worth (64 units of 20 MiB raw): the read cache (10 GiB by default) must
  // keep what is fetched ahead until its worker reads it
  const n = Math.max(1, Math.min(lanes, 4, units))
  const starts = Array.from({ length: n + 1 }, (_, i) => Math.floor((i * units) / n))
  for (let k = 0; k < EARLY_UNITS_PER_LANE; k++) {
    for (let i = 0; i < n; i++) if (starts[i]! + k < starts[i + 1]!) void warm.call(r.repo.data, keys.unit(r.manifest.run, starts[i]! + k), { ahead: true })
  }
}

/** A store's warm (Store.warm), bound, or undefined for a store whose units are local. */
function warmOf(store: Store): RestoreSet['warm'] {
  const warm = store.warm
  return warm ? (key) => warm.call(store, key) : undefined
}

/**
 * The entries of `path` (a subtree; '' = the whole generation) of the generation `r` reads,
 * as a RestoreSet whose root is entry 0. A directory whose pieces do not read is restored
 * with what could be read of it, and named in `problems` (genN:path and the damage); damage
 * on the way to `path` itself is thrown (BfsError CORRUPT, exit 6): there is nothing to restore.
 */
export async function restoreSet2(r: GenReader2, path: string): Promise<RestoreSet> {
  const gen = r.manifest.id
  const rootPath = path.split('/').filter((c) => c !== '' && c !== '.').join('/')
  const top = await r.lookup(rootPath)
  if (!top) throw new BfsError('BAD_INPUT', `${rootPath}: no such file or directory in gen${gen}`)
  const entries: Entry1[] = []
  const problems: RestoreSet['problems'] = []
  /** Hard-linked files (E_LINKED) by source identity → the first one met (the leader). */
  const leaders = new Map<string, number>()
  /** The generation-relative path of entry i (for messages). */
  const pathOf = (i: number): string => {
    const parts: Buffer[] = []
    for (let j = i; j !== 0; j = entries[j]!.parent) parts.unshift(entries[j]!.name)
    if (rootPath) parts.unshift(Buffer.from(rootPath))
    return Buffer.concat(parts.flatMap((p, k) => (k ? [SLASH, p] : [p]))).toString()
  }
  const add = (x: Entry2, parent: number): number => {
    const i = entries.length
    let flags = 0
    let linkLeader = 0
    if (x.type === FileType.File && x.flags & E_LINKED) {
      const id = `${x.srcDev}:${x.srcInoHi}:${x.srcInoLo}`
      const l = leaders.get(id)
      if (l === undefined) leaders.set(id, i)
      else {
        flags = ENTRY_FLAG_LINK_FOLLOWER
        linkLeader = l
      }
    }
    // a catalog entry of one shape for all (adding fields to the Entry2s would give 100k objects new shapes)
    const e: Entry1 = {
      type: x.type as number as EntryType, flags, parent, name: x.name, mode: x.mode, uid: x.uid, gid: x.gid,
      atimeSec: x.atimeSec, atimeNsec: x.atimeNsec, mtimeSec: x.mtimeSec, mtimeNsec: x.mtimeNsec, ctimeSec: x.ctimeSec, ctimeNsec: x.ctimeNsec,
      size: x.size, srcDev: x.srcDev, srcInoHi: x.srcInoHi, srcInoLo: x.srcInoLo, nlink: x.nlink,
      firstChild: 0, childCount: 0, objGen: 0, objIndex: 0, linkLeader,
      target: x.target, rdevMajor: x.rdevMajor, rdevMinor: x.rdevMinor, xattrs: x.xattrs, map: x.map, dataBlocks: x.dataBlocks,
    }
    entries.push(e)
    return i
  }
  // Breadth first, one directory at a time: parents before children, as restore wants them.
  const dirs: Array<{ index: number; dir: Entry2 }> = []
  add(top, 0)
  if (top.type === FileType.Dir && top.dir) dirs.push({ index: 0, dir: top })
  for (let d = 0; d < dirs.length; d++) {
    const { index, dir } = dirs[d]!
    dirs[d] = undefined as never // read once: let it go
    let n = 0
    try {
      for await (const page of r.pages(dir, pathOf(index))) {
        for (const c of page) {
          const i = add(c, index)
          n++
          if (c.type === FileType.Dir && c.dir) dirs.push({ index: i, dir: c })
        }
      }
    } catch (err) {
      if (!(err instanceof BfsError && err.code === 'CORRUPT')) throw err
      problems.push({ index, message: err.message })
      n++ // it has entries that were not restored: an empty restored directory is not the backup's
    }
    entries[index]!.childCount = n
  }
  const order = Array.from({ length: entries.length }, (_, i) => i)
  const source = new StreamSource2(r.repo)
  return {
    label: `gen${gen}`,
    entries,
    order,
    problems,
    extents: async (d, i) => {
      const e = d as Entry1
      // (no map: a BI overlay may still hold its data, §2.16)
      if (e.type !== EntryType.File || (!e.map && !r.manifest.biIndex)) return []
      const flat: number[] = []
      try {
        const list = await r.maps.extents({ map: e.map, size: e.size, dataBlocks: e.dataBlocks, srcDev: e.srcDev, srcInoHi: e.srcInoHi, srcInoLo: e.srcInoLo })
        for (const x of list) {
          // the run's stream record must read (cached), and the extent lie within its stream
          const s = r.repo.stream(x.stream)
          if (x.streamBlock + x.count > s.streamBlocks) throw new FormatError('BAD_VALUE', `the map refers past the end of stream ${x.stream} (${s.streamBlocks} blocks)`)
          flat.push(x.fileBlock, x.count, x.stream, x.streamBlock)
        }
      } catch (err) {
        throw r.damageOf(err, pathOf(i))
      }
      return flat
    },
    readers: (pool) =>
      new WorkerReaders({ dir: r.repo.dir, store: r.repo.data, hashAlg: r.repo.config.hashAlg, blockSeed: r.repo.blockSeed, geometry: (s) => source.geometry(s), sealing: r.repo.unitSealing }, pool),
    // units on tape (the tiered store is r.repo.data): format 1's planning, in tape order
    unitsOf: (flat, size) => unitKeysOf(flat, size, (s) => r.repo.stream(s).unitBlocks),
    planTape: (tiered, units, passBytes) => planTapePasses(tapeRepoOf(r.repo), tiered, units, passBytes),
    // units on S3: fetched into the read cache a job or two before the workers read them
    warm: warmOf(r.repo.data),
  }
}
