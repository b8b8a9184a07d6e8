import { openUnitShare } from '../blocks/units.js'
import type { ReaderSpec } from '../blocks/spec.js'
import type { GenGeometry } from '../blocks/source.js'
import type { HashAlg } from '../codec/hash.js'
import type { Store } from '../store/store.js'
import type { WorkerPool } from './pool.js'
import { Repository } from './repository.js'
import { dataStoreOf } from './stream-source.js'

/**
 * Where worker readers read from: the store units are read from, the hash algorithm, and the
 * geometry of each stream a job may name (format 1: a generation's, from its manifest;
 * format 2: a run's stream, from its stream record).
 */
export interface ReaderOrigin {
  dir: string
  store: Store
  hashAlg: HashAlg
  geometry(gen: number): GenGeometry
}

/** A format 1 repository as a ReaderOrigin. */
function originOf(repo: Repository): ReaderOrigin {
  return {
    dir: repo.dir,
    store: dataStoreOf(repo),
    hashAlg: repo.config.hashAlg,
    geometry: (gen) => {
      const m = repo.manifest(gen)
      return { unitBlocks: m.unitBlocks, frameBlocks: m.frameBlocks, unitRawBlocks: m.units.map((u) => u.rawBlocks) }
    },
  }
}

let specs = 0

/**
 * Decompressed frames each worker's reader keeps: 32 MiB (8 MiB at least; 256 MiB over the
 * whole pool at most). A restore walks the tree in order and hands files out to the workers
 * in turn, so after incrementals each worker meets, within a few files, frames of many runs'
 * streams (one per run that changed something in the directory) and comes back to each: a
 * cache of one 1 MiB frame decompressed the same frames again and again. Restore of the 20th
 * of 20 incremental generations (bench quick Linux tree, 1 % changed per generation, format 2),
 * process CPU against a single full generation: 2.3x with 1 MiB, 1.03-1.09x with 32 MiB
 * (native-notes/v2-backup.md, "Restore after incrementals").
 */
export function workerReaderCacheBytes(workers: number): number {
  return Math.max(8 << 20, Math.min(32 << 20, Math.floor((256 << 20) / Math.max(1, workers))))
}

/**
 * The block readers of a pool's worker threads for one command (restore, verify): a
 * ReaderSpec the workers build their readers from (the repository's store re-created from
 * its description, the geometry of the generations the jobs read), each with its share of
 * the process's open-unit budget. Jobs name the spec by `id`.
 */
export class WorkerReaders {
  readonly spec: ReaderSpec
  private sent = false

  constructor(repo: Repository | ReaderOrigin, private readonly pool: WorkerPool, cacheBytes = workerReaderCacheBytes(pool.size)) {
    const origin = repo instanceof Repository ? originOf(repo) : repo
    const store = origin.store.describe()
    // every store a repository is opened on today describes itself (disk, and faulty over it)
    if (!store) throw new Error(`${origin.dir}: this repository's store cannot be shared with worker threads`)
    this.spec = { id: `r${process.pid}.${++specs}`, store, hashAlg: origin.hashAlg, geometry: {}, cacheBytes, maxOpenUnits: openUnitShare(pool.size) }
    this.origin = origin
  }

  private readonly origin: ReaderOrigin

  /** Adds generation (format 2: stream) `gen`'s geometry (its manifest or stream record must be readable); before start(). */
  add(gen: number): void {
    if (this.spec.geometry[gen]) return
    const g = this.origin.geometry(gen)
    this.spec.geometry[gen] = { unitBlocks: g.unitBlocks, frameBlocks: g.frameBlocks, unitRawBlocks: Array.from(g.unitRawBlocks) }
  }

  /** Sends the spec to every worker, once, before the first job that names it. */
  async start(): Promise<void> {
    if (this.sent) return
    this.sent = true
    await this.pool.broadcast({ op: 'readerSpec', spec: this.spec })
  }

  /** Closes the workers' readers (the units they keep open are the process's descriptors). */
  async close(): Promise<void> {
    if (this.sent) await this.pool.broadcast({ op: 'closeReader', specId: this.spec.id }).catch(() => undefined)
  }
}
