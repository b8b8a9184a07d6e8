import { openUnitShare, type UnitSealing } from '../blocks/units.js'
import type { ReaderSpec } from '../blocks/spec.js'
import type { GenGeometry } from '../blocks/source.js'
import { type HashAlg, UNENCRYPTED_SEED } from '../codec/hash.js'
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
  /** The repository's XXH64 seed (Repo2.blockSeed; UNENCRYPTED_SEED for format 1). */
  blockSeed: bigint
  geometry(gen: number): GenGeometry
  /** An encrypted repository's unit keys. */
  sealing?: UnitSealing | null
}

/** A format 1 repository as a ReaderOrigin. */
function originOf(repo: Repository): ReaderOrigin {
  return {
    dir: repo.dir,
    store: dataStoreOf(repo),
    hashAlg: repo.config.hashAlg,
    blockSeed: UNENCRYPTED_SEED, // format 1 is never encrypted
    geometry: (gen) => {
      const m = repo.manifest(gen)
      return { unitBlocks: m.unitBlocks, frameBlocks: m.frameBlocks, unitRawBlocks: m.units.map((u) => u.rawBlocks) }
    },
  }
}

let specs = 0

/**
 * Decompressed frames each worker's reader keeps: 64 MiB (8 MiB at least; 256 MiB over the
 * whole pool at most). A restore hands out its files in the order of their data, one lane of
 * jobs per worker (repo/restore.ts dataOrder, repo/lanes.ts); after incrementals or a merge a
 * lane's files also read the blocks later runs added, a few frames per run that stay in use
 * over a long stretch of the lane, while the frames of the first run stream past. 64 MiB
 * keeps those of 20 runs (native-notes/v2-backup.md, "Restore after incrementals"): the
 * Linux tree's 20th of 20 generations after merge decompressed 1,630 frames for 1,496
 * distinct (1,914 with 32 MiB, 1,601 with 128 MiB at 140 MB more RSS).
 */
export function workerReaderCacheBytes(workers: number): number {
  return Math.max(8 << 20, Math.min(64 << 20, Math.floor((256 << 20) / Math.max(1, workers))))
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
    this.spec = { id: `r${process.pid}.${++specs}`, store, hashAlg: origin.hashAlg, blockSeed: origin.blockSeed, geometry: {}, cacheBytes, maxOpenUnits: openUnitShare(pool.size), sealing: origin.sealing ?? null }
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
