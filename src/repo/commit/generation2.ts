/**
 * The commit of a format 2 generation (native-notes/format.md §2.20.3): the one way a format 2
 * writer commits, as writeGeneration is for format 1. Claim the run (runs/N, a conditional
 * create), recover this host's dead runs, let the writer build its body (data into the stream,
 * pieces into the run's packs), then: the last unit, the hashes, the last pack, the stream
 * record, `gens/N/` made durable — and only then `manifests/gen-N` (conditional create, the
 * commit point) and `runs/N` → committed.
 *
 * The lease (steps 1 and 7, repo/v2/lease.ts) is held from before the claim until the record
 * says committed or aborted. Not here yet: history records, BI ingestion.
 */
import os from 'node:os'
import { createHash } from 'node:crypto'
import { HASH_BYTES } from '../../codec/hash.js'
import type { Entry2 } from '../../format/v2/dir.js'
import type { PieceRef } from '../../format/v2/common.js'
import { keys2 } from '../../format/v2/layout.js'
import { type ManifestV2, type RunRecord, type VolumeConsistency, decodeManifestV2, encodeManifestV2, encodeStreamRecord } from '../../format/v2/records.js'
import type { ManifestOnline } from '../../format/manifest.js'
import { FormatError } from '../../format/errors.js'
import { StoreError } from '../../store/store.js'
import { PackWriter } from '../../pieces/packs.js'
import { PieceReader } from '../../pieces/reader.js'
import { pidAlive } from '../../os/process.js'
import { BfsError } from '../errors.js'
import { WorkerPool } from '../pool.js'
import { type Repo2, envelope2, payloadOf } from '../v2/repo2.js'
import { holderAlive, Lease, listLeases, readLease } from '../v2/lease.js'
import { removeDedupOf } from '../v2/dedup.js'
import { dropStaleSuperseded } from '../v2/forget.js'
import type { CommitOptions } from './generation.js'
import { storageError } from './recover.js'
import { StreamWriter } from './stream.js'
import { DEFAULT_LEVEL } from './geometry.js'

/** A backup's piece cache: small (native-notes/pieces.md "Memory": a big one only slows a backup). */
export const BACKUP_PIECE_CACHE_BYTES = 4 << 20

export interface Generation2Body {
  rootEntry: Entry2
  /** The links table (§2.15), null when no entry is linked. */
  links: PieceRef | null
  nextOrd: number
  /** The stats object of the manifest (format 1's fields and the pieces' own). */
  stats: Record<string, number>
  warnings: string[]
  skippedPaths: string[]
  /** `--online` (issue 14, §2.16): the BILIST and the BI index (null: nothing logged), and what the capture did (the manifest's `online`). */
  biLog?: PieceRef | null
  biIndex?: PieceRef | null
  online?: ManifestOnline
}

export interface Generation2Context {
  run: number
  pool: WorkerPool
  stream: StreamWriter
  packs: PackWriter
  pieces: PieceReader
  prev: ManifestV2 | null
}

export interface Generation2Spec {
  source: string
  kind: 'files' | 'volume'
  /** Volume generations: what the filesystem on the source was doing while it was read (manifest `consistency`). */
  consistency?: VolumeConsistency
  /** File backups of a group (`--group`, format.md §2.14.2): its name (manifest `group`); null or absent otherwise. */
  group?: string | null
  /** Stream geometry of this run. */
  unitBlocks: number
  frameBlocks: number
  level?: number
  choosePrev(repo: Repo2): ManifestV2 | null
  build(ctx: Generation2Context): Promise<Generation2Body>
}

/** CommitOptions, and what only a format 2 commit takes. */
export interface Commit2Options extends CommitOptions {
  /**
   * Compression workers the caller started already (an encrypted repository's: while its
   * passphrase went through scrypt, cli/v2.ts). Used instead of a pool of the commit's own and
   * closed as that one is, before a failed run's gens/N is removed; the caller closes it as
   * well for the ways out before the commit starts (WorkerPool.close is idempotent).
   */
  pool?: WorkerPool
}

export interface Commit2Result {
  manifest: ManifestV2
  warnings: string[]
  skippedPaths: string[]
  /** `--online` runs: what the capture did. */
  online?: ManifestOnline
}

/**
 * Dead backup and merge runs (§2.20.6): a `running` record of this host whose pid is gone, or of any
 * host whose lease (the record names it) is gone or dead (§2.8.5: on this host by pid and start
 * time, elsewhere expired). With its manifest present the run committed (it died between
 * steps 8 and 9); without, nothing reachable references `gens/N/`: it is deleted, then the
 * record says aborted. Another host's record without a lease (written before leases existed)
 * is left alone.
 */
export async function recoverRuns2(repo: Repo2): Promise<number> {
  // temporary files of dead writers (the store's sweep keeps a live writer's)
  for (const prefix of ['', keys2.manifests, keys2.runs, keys2.retired, keys2.leases, keys2.locks, keys2.tmp, keys2.index]) await repo.store.sweep(prefix, { shallow: true })
  await repo.store.sweep(keys2.history, { shallow: true }).catch(() => undefined) // best effort (issue 17): never stops a backup
  let n = 0
  const host = os.hostname()
  for (const r of repo.runs()) {
    if (r.state !== 'running' || (r.kind !== 'backup' && r.kind !== 'merge') || (r.host === host && r.pid === process.pid)) continue
    if (!runDead(repo, r, host)) continue
    const committed = r.kind === 'merge' ? mergeLanded(repo, r) : repo.sync.hasSync(keys2.manifest(r.run))
    if (committed === null) continue // its target's manifest does not read: left for bfs verify
    if (!committed) {
      // a merge's superseded copy of the target's still-current revision goes first (§2.20.6)
      if (r.kind === 'merge') dropSupersededOf(repo, r)
      repo.sync.removeSync(keys2.genDir(r.run), { recursive: true })
      if (r.kind === 'backup') removeDedupOf(repo, r.run)
    }
    repo.putRun({ ...r, state: committed ? 'committed' : 'aborted', ended: new Date().toISOString() }, 'replace')
    n++
  }
  if (n) repo.sync.flushSync(keys2.runs)
  // leases this host's dead processes left (kill -9): litter once their runs are recovered
  for (const l of listLeases(repo)) if (l.host === host && !holderAlive(l)) repo.sync.removeSync(keys2.lease(l.lease))
  return n
}

/**
 * A dead merge run (§2.20.6, merge row): committed when its target's manifest is the revision
 * it wrote (`run` = the merge's run), not when it is absent or another revision; null when that
 * manifest does not read (nothing is decided).
 */
function mergeLanded(repo: Repo2, r: RunRecord): boolean | null {
  const B = r.target!
  try {
    if (repo.manifest(B).run === r.run) return true
  } catch (err) {
    if (err instanceof BfsError && err.code === 'CORRUPT') return null
    if (!(err instanceof BfsError && err.code === 'NO_SUCH_GEN')) throw err
  }
  // the revision it wrote may have been retired since (forgotten, or merged again): still a commit
  const prefix = keys2.retiredManifest(B, 0).replace(/r0000$/, 'r')
  for (const k of repo.sync.listSync(keys2.retired)) {
    if (!k.startsWith(prefix)) continue
    try {
      if (decodeManifestV2(repo.unseal('manifest', k, repo.sync.getSync(k)), repo.store.where(k), true).run === r.run) return true
    } catch (err) {
      if (err instanceof FormatError || err instanceof StoreError) return null
      throw err
    }
  }
  return false
}

/** A dead, uncommitted merge's `superseded` copy of its target's revision, when that revision is still the current one (see dropStaleSuperseded). */
function dropSupersededOf(repo: Repo2, r: RunRecord): void {
  let cur: ManifestV2
  try {
    cur = repo.manifest(r.target!)
  } catch (err) {
    if (err instanceof BfsError) return // gone or damaged: nothing current to compare with
    throw err
  }
  dropStaleSuperseded(repo, cur, r.run)
}

/** Whether a `running` record's writer is gone (see recoverRuns2). */
function runDead(repo: Repo2, r: RunRecord, host: string): boolean {
  if (r.host === host && !pidAlive(r.pid)) return true
  if (r.lease === '') return false // this host: its pid runs; another host: no lease to judge by
  const l = readLease(repo, keys2.lease(r.lease))
  if (!l) return true // its writer deletes its lease only after the record says committed
  if (!l.record) return false // unreadable: being written, or damaged; not judged
  return !holderAlive(l.record)
}

/** Writes a format 2 generation; on any failure before the commit point, its run is aborted and gens/N removed. */
export async function writeGeneration2(repo: Repo2, opts: Commit2Options, spec: Generation2Spec): Promise<Commit2Result> {
  if (repo.readOnly) throw new BfsError('BAD_INPUT', `${repo.dir}: this repository uses a feature this bfs may only read; no backup`)
  const t0 = process.hrtime.bigint()
  const startTime = new Date()
  // §2.20.3 step 1: the lease, before anything is listed (a parent retired later stays protected by it)
  const lease = Lease.take(repo, 'backup')
  let run: RunRecord
  try {
    await recoverRuns2(repo)
    run = repo.claimRun((n) => ({ run: n, kind: 'backup', state: 'running', host: os.hostname(), pid: process.pid, lease: lease.name, started: new Date().toISOString(), gen: n }))
  } catch (err) {
    lease.release()
    throw err
  }
  const N = run.run
  const pool = opts.pool ?? new WorkerPool(opts.threads ?? os.availableParallelism())
  let committed = false
  try {
    const level = spec.level ?? DEFAULT_LEVEL
    // (a volume is read on the main thread: a spare buffer fills while the workers compress, as format 1's)
    const stream = new StreamWriter(repo.store, pool, N, spec.unitBlocks, spec.frameBlocks, level, repo.config.hashAlg, repo.blockSeed, spec.kind === 'volume')
    stream.sealing = repo.sealing ?? null
    const packs = new PackWriter(repo.store, { run: N, packBytes: repo.config.defaults.packBytes, keys: repo.sealing })
    const pieces = new PieceReader(repo.store, { cacheBytes: BACKUP_PIECE_CACHE_BYTES, syncReads: true, keys: repo.sealing })
    const prev = spec.choosePrev(repo)
    const body = await spec.build({ run: N, pool, stream, packs, pieces, prev })
    // §2.20.3 step 6: the last unit, the hashes, the last pack, the stream record, then gens/N durable
    const blocks = await stream.finish()
    const packStats = await packs.finish()
    let metaBytes = packStats.packFileBytes
    if (blocks > 0) {
      // (written as the header and the hashes themselves: two copies of them, 8 MB each for a
      // run of 1M blocks, were 15 MiB at the very end of a 1M-file backup, its peak RSS)
      const hashes = stream.hashes.subarray(0, blocks * HASH_BYTES)
      const hashesFile = repo.sealHashes(N, hashes)
      const hashesBytes = hashesFile.reduce((n, b) => n + b.length, 0)
      repo.sync.putSync(keys2.hashes(N), hashesFile, { syncListing: false })
      const rec = repo.seal('stream', keys2.stream(N), encodeStreamRecord({
        stream: N, unitBlocks: stream.unitBlocks, frameBlocks: stream.frameBlocks, streamBlocks: blocks, units: Math.ceil(blocks / stream.unitBlocks),
        level, hashAlg: repo.config.hashAlg, hashes: { bytes: hashesBytes, sha256: repo.encrypted ? null : createHash('sha256').update(hashes).digest('hex') }, created: new Date().toISOString(),
      }, repo.encrypted))
      repo.sync.putSync(keys2.stream(N), rec, { syncListing: false })
      metaBytes += hashesBytes + rec.length
    }
    if (blocks > 0 || packStats.packs > 0) {
      repo.sync.flushSync(keys2.genDir(N))
      // gens/N itself was made by the run's first write: its entry in gens/ must be durable
      // before the manifest refers to it (§2.20.2), or a power cut could lose the directory
      repo.sync.flushSync(keys2.gens)
    }
    if (opts.signal?.aborted) throw new BfsError('INTERRUPTED', 'interrupted; nothing was committed')
    // step 7: renew the lease and check it never lapsed (a machine that slept past its expiry
    // may have been judged dead: prune, or another host's recovery, may have removed gens/N)
    await lease.renew()
    if (lease.lapsed()) throw new BfsError('IO', `the backup's lease ${lease.key} was not renewed in time (the machine slept, or the repository was unwritable); nothing was committed`)
    const stats = { ...body.stats, storedBytes: stream.storedBytes, metaBytes, pieces: packStats.pieces, pieceBytes: packStats.storedBytes, packs: packStats.packs, seconds: Math.round(Number(process.hrtime.bigint() - t0) / 1e6) / 1000 }
    const man: ManifestV2 = {
      format: 2, id: N, rev: 1, run: N, time: startTime.toISOString(), endTime: new Date().toISOString(), label: opts.label ?? '', tags: opts.tags ?? [],
      host: opts.host ?? os.hostname(), user: os.userInfo().username, kind: spec.kind, group: spec.group ?? null,
      sources: [{ path: spec.source, parent: prev?.id ?? 0, nextOrd: body.nextOrd, ordBase: 0 }],
      rootEntry: body.rootEntry, links: body.links, biLog: body.biLog ?? null, biIndex: body.biIndex ?? null,
      stream: blocks > 0 ? { blocks } : null, merged: null, partial: body.skippedPaths.length > 0, stats,
      ...(spec.consistency !== undefined ? { consistency: spec.consistency } : {}),
      ...(body.online ? { online: body.online as unknown as Record<string, unknown> } : {}),
    }
    // step 8, the commit point; then step 9
    repo.sync.putSync(keys2.manifest(N), repo.seal('manifest', keys2.manifest(N), encodeManifestV2(man)), { mode: 'exclusive' })
    committed = true
    repo.putRun({ ...run, state: 'committed', ended: new Date().toISOString() }, 'replace')
    return { manifest: man, warnings: body.warnings, skippedPaths: body.skippedPaths, ...(body.online ? { online: body.online } : {}) }
  } catch (err) {
    throw storageError(err, repo, N)
  } finally {
    await pool.close()
    try {
      if (!committed) {
        try {
          // recovery's rule (§2.20.6): a manifest that landed although its create failed (a lost
          // acknowledgement: the directory fsync after the link) is a commit; nothing is deleted
          const landed = repo.sync.hasSync(keys2.manifest(N))
          if (!landed) {
            repo.sync.removeSync(keys2.genDir(N), { recursive: true })
            removeDedupOf(repo, N)
          }
          repo.putRun({ ...run, state: landed ? 'committed' : 'aborted', ended: new Date().toISOString() }, 'replace')
        } catch {
          // the next writer's recovery finishes it (the record still says running, with our dead pid)
        }
      }
    } finally {
      // step 9's end, and on every way out: after the record says what happened
      lease.release()
    }
  }
}
