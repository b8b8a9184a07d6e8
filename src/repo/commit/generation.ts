/**
 * The one way a generation is committed (native-notes/format.md "Write order"): every
 * writer — backup of a tree, of a volume, and later merge, migrate and compact — builds its
 * body through a GenerationSpec and commits it here.
 */
import os from 'node:os'
import { encodeCatalog, type Entry } from '../../format/catalog.js'
import { decodeEnvelope } from '../../format/envelope.js'
import { decodeConfig, type GenStats, type Manifest } from '../../format/manifest.js'
import { encodeMaps, type MapObject } from '../../format/maps.js'
import { BLOCK_BYTES } from '../../codec/hash.js'
import { syncOf, type SyncStore } from '../../store/store.js'
import { BfsError } from '../errors.js'
import { WorkerPool } from '../pool.js'
import { envelopeFor, fileRef, keys, type Repository } from '../repository.js'
import { WriterLock } from './lock.js'
import { recoverRepository, storageError } from './recover.js'
import type { StreamWriter } from './stream.js'

/** What every writer's options have in common (a backup's BackupOptions extends it). */
export interface CommitOptions {
  /** Label stored in the manifest. */
  label?: string
  /** `--tag`s stored in the manifest (default none). */
  tags?: string[]
  /** `--host`: the host name stored in the manifest (default: this machine's). */
  host?: string
  /**
   * The writer lock, already held by the caller for several generations in a row (one
   * backup of several sources): this commit neither takes nor releases it.
   */
  heldLock?: WriterLock
  /** Compression worker threads (default: CPUs). */
  threads?: number
  /** How long to wait for another writer's lock, ms (default 0: fail at once). */
  lockWaitMs?: number
  /** Aborted: nothing is committed (BfsError INTERRUPTED). */
  signal?: AbortSignal
  /** Told what the run is doing that is not a problem (waiting for the lock), one line each. */
  reporter?: { warn(message: string): void; note?(message: string): void }
}

/** A committed generation: its manifest and what the writer had to say. */
export interface CommitResult {
  manifest: Manifest
  warnings: string[]
  skippedPaths: string[]
}

/** A repository made before config-copy existed gets one from its (sound) config. Call under the writer lock. */
function ensureConfigCopy(repo: Repository): void {
  const st = repo.checkConfig()
  if (st.from !== 'config' || !st.copyMissing) return
  const file = meta(repo).getSync(keys.config)
  // the bytes just read are the copy: they must still decode to the settings in use
  try {
    if (JSON.stringify(decodeConfig(decodeEnvelope('config', file, keys.config).stored, keys.config)) !== JSON.stringify(repo.config)) return
  } catch {
    return
  }
  meta(repo).putSync(keys.configCopy, file)
}

/** The repository's store, synchronous face: the commit's metadata is written through it. */
function meta(repo: Repository): SyncStore {
  return syncOf(repo.store)
}

/**
 * Creates gens/N for the generation being written, marked in progress: the marker is
 * durable (and gens/N with it) before any unit is written, so a gens/N that holds data but
 * no marker and no manifest is never a crashed writer's.
 */
function startGenDir(repo: Repository, genId: number, source: string): void {
  const s = meta(repo)
  // the put makes gens/N and fsyncs it with the marker in it; then gens/ itself
  s.putSync(keys.marker(genId), Buffer.from(JSON.stringify({ pid: process.pid, host: os.hostname(), time: new Date().toISOString(), source }) + '\n'))
  s.flushSync(keys.gens)
}

/** What a generation writer produced, before its metadata files and manifest are written. */
export interface GenerationBody {
  entries: Entry[]
  objects: MapObject[]
  stream: StreamWriter
  stats: GenStats
  warnings: string[]
  skippedPaths: string[]
  /** Volumes: the manifest's `consistency`. */
  consistency?: Manifest['consistency']
  /** `--online`: the manifest's `online` record. */
  online?: Manifest['online']
  /** `--online`: the BI log's payload (gens/N/bilog), when the run logged images of files it stored. */
  biLog?: Buffer
}

export interface GenerationSpec {
  source: string
  kind: Manifest['kind']
  group: string | null
  /** The generation this one is incremental to (chosen under the lock, after recovery). */
  choosePrev(repo: Repository): Manifest | null
  build(ctx: { genId: number; pool: WorkerPool; prev: Manifest | null }): Promise<GenerationBody>
}

/**
 * The one way a generation is written: writer lock, recovery of what a crashed writer
 * left, the next id, the writer's data (units), then hashes, maps and catalog, then the
 * manifest (the commit point). On any failure the unfinished generation is removed.
 */
export async function writeGeneration(repo: Repository, opts: CommitOptions, spec: GenerationSpec): Promise<CommitResult> {
  const started = process.hrtime.bigint()
  const startTime = new Date()
  const lock = opts.heldLock ?? await WriterLock.acquire(repo.store, `backup ${spec.source}`, opts.lockWaitMs ?? 0, { onWait: (m) => (opts.reporter?.note ?? opts.reporter?.warn)?.call(opts.reporter, m) })
  const pool = new WorkerPool(opts.threads ?? os.availableParallelism())
  let genId = 0
  let committed = false
  try {
    await recoverRepository(repo)
    ensureConfigCopy(repo)
    genId = repo.nextGenerationId()
    startGenDir(repo, genId, spec.source)
    const prev = spec.choosePrev(repo)
    const body = await spec.build({ genId, pool, prev })
    const store = meta(repo)
    const hashesFile = envelopeFor('hashes', body.stream.hashes, false)
    const mapsFile = envelopeFor('maps', encodeMaps(body.objects), true)
    const catalogFile = envelopeFor('catalog', encodeCatalog(body.entries), true)
    store.putSync(keys.hashes(genId), hashesFile, { syncListing: false })
    store.putSync(keys.maps(genId), mapsFile, { syncListing: false })
    store.putSync(keys.catalog(genId), catalogFile, { syncListing: false })
    const biLogFile = body.biLog ? envelopeFor('bilog', body.biLog, true) : null
    if (biLogFile) store.putSync(keys.bilog(genId), biLogFile, { syncListing: false })
    store.flushSync(keys.genDir(genId))
    const stats = body.stats
    stats.entries = body.entries.length
    stats.storedBytes = body.stream.storedBytes
    stats.metaBytes = hashesFile.length + mapsFile.length + catalogFile.length + (biLogFile?.length ?? 0)
    stats.seconds = Math.round((Number(process.hrtime.bigint() - started) / 1e9) * 1000) / 1000
    const man: Manifest = {
      format: 1,
      id: genId,
      time: startTime.toISOString(),
      label: opts.label ?? '',
      source: spec.source,
      host: opts.host ?? os.hostname(),
      tags: opts.tags ?? [],
      kind: spec.kind,
      group: spec.group,
      parent: prev?.id ?? 0,
      blockBytes: BLOCK_BYTES,
      unitBlocks: body.stream.unitBlocks,
      frameBlocks: body.stream.frameBlocks,
      level: body.stream.level,
      streamBlocks: body.stream.totalBlocks,
      units: body.stream.units,
      catalog: fileRef(catalogFile),
      maps: fileRef(mapsFile),
      hashes: fileRef(hashesFile),
      partial: body.skippedPaths.length > 0,
      stats,
      ...(body.consistency ? { consistency: body.consistency } : {}),
      ...(biLogFile ? { biLog: fileRef(biLogFile) } : {}),
      ...(body.online ? { online: body.online } : {}),
    }
    if (opts.signal?.aborted) throw new BfsError('INTERRUPTED', 'interrupted; nothing was committed')
    repo.commitManifest(man)
    committed = true
    // not synced: a marker that outlives a crash beside its manifest is removed by the next recovery
    meta(repo).removeSync(keys.marker(genId))
    return { manifest: man, warnings: body.warnings, skippedPaths: body.skippedPaths }
  } catch (err) {
    throw storageError(err, repo, genId)
  } finally {
    await pool.close()
    if (!committed && genId > 0) meta(repo).removeSync(keys.genDir(genId), { recursive: true })
    if (!opts.heldLock) lock.release()
  }
}
