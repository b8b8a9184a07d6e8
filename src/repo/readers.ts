import { openUnitShare } from '../blocks/units.js'
import type { ReaderSpec } from '../blocks/spec.js'
import type { WorkerPool } from './pool.js'
import type { Repository } from './repository.js'
import { dataStoreOf } from './stream-source.js'

let specs = 0

/**
 * The block readers of a pool's worker threads for one command (restore, verify): a
 * ReaderSpec the workers build their readers from (the repository's store re-created from
 * its description, the geometry of the generations the jobs read), each with its share of
 * the process's open-unit budget. Jobs name the spec by `id`.
 */
export class WorkerReaders {
  readonly spec: ReaderSpec
  private sent = false

  constructor(repo: Repository, private readonly pool: WorkerPool, cacheBytes = 1 << 20) {
    const store = dataStoreOf(repo).describe()
    // every store a repository is opened on today describes itself (disk, and faulty over it)
    if (!store) throw new Error(`${repo.dir}: this repository's store cannot be shared with worker threads`)
    this.spec = { id: `r${process.pid}.${++specs}`, store, hashAlg: repo.config.hashAlg, geometry: {}, cacheBytes, maxOpenUnits: openUnitShare(pool.size) }
    this.repo = repo
  }

  private readonly repo: Repository

  /** Adds generation `gen`'s geometry (its manifest must be readable); before start(). */
  add(gen: number): void {
    if (this.spec.geometry[gen]) return
    const m = this.repo.manifest(gen)
    this.spec.geometry[gen] = { unitBlocks: m.unitBlocks, frameBlocks: m.frameBlocks, unitRawBlocks: m.units.map((u) => u.rawBlocks) }
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
