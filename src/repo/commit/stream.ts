import { newSalt } from '../../crypto/aead.js'
import { type RepoKeys, objectKey } from '../../crypto/keys.js'
import { BLOCK_BYTES, HASH_BYTES, type HashAlg } from '../../codec/hash.js'
import type { UnitRef } from '../../format/manifest.js'
import type { Staged, Store, StoreDescription } from '../../store/store.js'
import { keys } from '../repository.js'
import type { WorkerPool } from '../pool.js'
import type { CompressReply, CompressRequest, PlannedRead, ReadResult } from '../worker.js'
import { BfsError } from '../errors.js'
import { adviseHugePages } from '../../native/index.js'

/**
 * The data stream of one generation being written: 4 KiB blocks packed into units of
 * `unitBlocks`, each unit compressed by worker `unitIndex % threads` and written as
 * gens/<id>/unit-<n>. Callers place data with reserve()/commit(); stream block numbers
 * are dense (every unit but the last is full).
 */
export class StreamWriter {
  /** The current unit's buffer: taken only when the main thread writes data into it itself. */
  private buf: Buffer | null = null
  private fill = 0
  private unitIndex = 0
  /**
   * A fixed ring of unit buffers in shared memory: each worker compresses one while (with
   * `spare`) the main thread fills another; nothing is copied or transferred, and memory is
   * bounded by construction. A file backup mostly plans reads (the workers do them; only
   * sparse and changed files are read here, through reserve()), so a unit needs a buffer
   * only when it is sent or written into here: planning runs ahead of the buffers, up to
   * `pool.size` planned units, and a worker that finishes finds its next unit planned (an
   * earlier version planned only once a buffer was free, and each worker then sat idle a
   * sixth of a full backup). File backups run without the spare: 20 MiB less by default.
   */
  private readonly free: Buffer[] = []
  /** Flushed units waiting for a buffer (in unit order), and who waits on that queue. */
  private readonly queue: Array<{ unitIndex: number; rawBlocks: number; buf: Buffer | null; reads: PlannedRead[] }> = []
  private readonly wakers: Array<() => void> = []
  private readonly inflight = new Set<Promise<void>>()
  private error: Error | null = null
  readonly units: UnitRef[] = []
  /** Ranges the worker will read into the current unit. */
  private reads: PlannedRead[] = []
  /** Told what the workers found when they read planned ranges. */
  onReadResults: ((results: ReadResult[]) => void) | null = null
  /** 8-byte hash of every stream block, filled as units come back from the workers. */
  hashes: Buffer
  storedBytes = 0
  /** An encrypted repository's keys: units are written as sealed v2 units (§2.9). Set before the first unit. */
  sealing: Pick<RepoKeys, 'aead' | 'kEnc'> | null = null
  /** The store as the workers open it (they write the units' staged blobs themselves). */
  private readonly described: StoreDescription

  constructor(
    private readonly store: Store,
    private readonly pool: WorkerPool,
    readonly genId: number,
    readonly unitBlocks: number,
    readonly frameBlocks: number,
    readonly level: number,
    private readonly hashAlg: HashAlg,
    /** The repository's XXH64 seed (Repo2.blockSeed; UNENCRYPTED_SEED for format 1). */
    readonly blockSeed: bigint,
    spare: boolean,
  ) {
    for (let i = 0; i < pool.size + (spare ? 1 : 0); i++) {
      const b = Buffer.from(new SharedArrayBuffer(unitBlocks * BLOCK_BYTES))
      // huge pages where the kernel gives them on advice: touching 20 MiB fresh took ~190 ms
      // of page faults in a VM, a tenth of a 100k-file backup (native-notes/v2-backup.md)
      adviseHugePages(b)
      this.free.push(b)
    }
    this.hashes = Buffer.alloc(unitBlocks * HASH_BYTES * 4)
    const d = store.describe()
    if (!d) throw new TypeError(`${store.where('')}: a generation's units are written by worker threads, and this store cannot be opened in one`)
    this.described = d
  }

  /** Stream block number of the next block to be committed. */
  get nextStreamBlock(): number {
    return this.unitIndex * this.unitBlocks + this.fill
  }

  /** Free blocks in the current unit: space handed out by reserve() is at buffer[fill…]. */
  async reserve(): Promise<{ buf: Buffer; offsetBytes: number; blocks: number }> {
    if (this.error) throw this.error
    // The first data of a backup starts the workers: their start-up (~0.1 s) then overlaps
    // the rest of the scan instead of following it (an incremental often fills one unit).
    this.pool.prestart()
    if (this.fill === this.unitBlocks) await this.flushUnit()
    // Queued units come first: the current unit takes a buffer only when none waits for one.
    while (!this.buf) {
      if (this.free.length && this.queue.length === 0) this.buf = this.free.pop()!
      else await this.wait()
      if (this.error) throw this.error
    }
    return { buf: this.buf, offsetBytes: this.fill * BLOCK_BYTES, blocks: this.unitBlocks - this.fill }
  }

  /** Marks `blocks` blocks at the reserved position as written; returns their first stream block. */
  commit(blocks: number): number {
    const first = this.nextStreamBlock
    this.fill += blocks
    return first
  }

  /**
   * Plans a file range to be read by the worker that compresses the unit (so file I/O runs
   * in parallel, off the main thread). Returns the first stream block and how many bytes
   * of the range fit in the current unit; call again for the rest.
   */
  async planRead(tag: number, path: Buffer, fileOffset: number, bytes: number, first: boolean, totalBytes: number, bilog = 0, ino?: [number, number, number]): Promise<{ streamBlock: number; bytes: number }> {
    if (this.error) throw this.error
    this.pool.prestart()
    if (this.fill === this.unitBlocks) await this.flushUnit()
    const fitBytes = Math.min(bytes, (this.unitBlocks - this.fill) * BLOCK_BYTES)
    const streamBlock = this.nextStreamBlock
    this.reads.push({ tag, path, fileOffset, bytes: fitBytes, unitOffsetBytes: this.fill * BLOCK_BYTES, first, last: fileOffset + fitBytes >= totalBytes, ...(bilog ? { bilog, ...(ino ? { ino } : {}) } : {}) })
    this.fill += Math.ceil(fitBytes / BLOCK_BYTES)
    return { streamBlock, bytes: fitBytes }
  }

  private wait(): Promise<void> {
    return new Promise<void>((r) => this.wakers.push(r))
  }

  private wake(): void {
    for (const w of this.wakers.splice(0)) w()
  }

  /** Sends queued units to their workers while buffers are free, in unit order. */
  private dispatch(): void {
    // After a failure nothing more is sent: the generation is discarded anyway.
    while (!this.error && this.queue.length && (this.queue[0]!.buf || this.free.length)) {
      const u = this.queue.shift()!
      const buf = u.buf ?? this.free.pop()!
      const p = this.compressAndWrite(u.unitIndex, u.rawBlocks, buf, u.reads)
        .catch((err: Error) => {
          this.error ??= err
        })
        .finally(() => {
          this.free.push(buf)
          this.inflight.delete(p)
          this.dispatch()
          this.wake()
        })
      this.inflight.add(p)
    }
  }

  /** Queues the current unit for its worker; waits while too many units are planned ahead (bounds memory). */
  private async flushUnit(): Promise<void> {
    if (this.fill === 0) return
    this.queue.push({ unitIndex: this.unitIndex, rawBlocks: this.fill, buf: this.buf, reads: this.reads })
    this.buf = null
    this.reads = []
    this.unitIndex++
    this.fill = 0
    this.dispatch()
    while (this.queue.length > this.pool.size && !this.error) await this.wait()
    if (this.error) throw this.error
  }

  private async compressAndWrite(unitIndex: number, rawBlocks: number, buf: Buffer, reads: PlannedRead[]): Promise<void> {
    const key = keys.unit(this.genId, unitIndex)
    let reply: CompressReply
    let staged: Staged | null = null
    try {
      staged = await this.store.stage(key)
      const req: Omit<CompressRequest, 'id'> = { op: 'compress', raw: buf.buffer as SharedArrayBuffer, rawBlocks, frameBlocks: this.frameBlocks, level: this.level, hashAlg: this.hashAlg, blockSeed: this.blockSeed, reads, store: this.described, staged, genId: this.genId, unitIndex }
      if (this.sealing) {
        // a fresh salt per unit, its key derived here once (the worker seals every frame with it)
        const salt = newSalt()
        req.seal = { aead: this.sealing.aead, key: objectKey(this.sealing, salt, 'unit').key, salt }
      }
      reply = await this.pool.run<CompressReply>(req, [], unitIndex)
    } catch (err) {
      // a staged blob is invisible; dropping it here only saves the next writer's sweep the work
      if (staged) await this.store.abortStaged(staged).catch(() => undefined)
      throw this.writeError(err, key)
    }
    if (reply.readResults) this.onReadResults?.(reply.readResults)
    const hashes = Buffer.from(reply.hashes)
    const need = (unitIndex * this.unitBlocks + rawBlocks) * HASH_BYTES
    if (need > this.hashes.length) {
      const grown = Buffer.alloc(Math.max(need, this.hashes.length * 2))
      this.hashes.copy(grown)
      this.hashes = grown
    }
    hashes.copy(this.hashes, unitIndex * this.unitBlocks * HASH_BYTES)
    try {
      // the listing is flushed once for all units (finish → the commit)
      await this.store.commitStaged(staged!, { syncListing: false })
    } catch (err) {
      throw this.writeError(err, key)
    }
    const bytes = reply.fileBytes
    this.storedBytes += bytes
    this.units[unitIndex] = { index: unitIndex, bytes, rawBlocks }
  }

  private writeError(err: unknown, key: string): Error {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOSPC' || code === 'EDQUOT') return err as Error
    // A failed system call or a store error (a worker's arrives as its message and code, no
    // syscall) is a write error that ends the backup: left as it was, backup's per-file catch
    // took it for a read error of each remaining source file. A worker's own failure (no
    // code) passes as it is.
    if (err instanceof BfsError || !code) return err as Error
    const where = this.store.where(key)
    const m = (err as Error).message
    return new BfsError('IO', m.includes(where) ? m : `cannot write ${where}: ${m}`)
  }

  /**
   * Settles every planned read: those of the unit being filled are done here, on this thread,
   * by `readHere` (the unit stays open), then this waits for the units already sent to the
   * workers. Their results reach onReadResults before it returns. (`--online`: the capture
   * must outlive every read through it, and images still go into this stream afterwards.)
   */
  async settleReads(readHere: (raw: Buffer, reads: PlannedRead[]) => ReadResult[]): Promise<void> {
    // (a unit of planned reads only has no buffer yet; a full one goes to its worker)
    if (this.reads.length) await this.reserve()
    if (this.reads.length) {
      const results = readHere(this.buf!, this.reads)
      this.reads = []
      this.onReadResults?.(results)
    }
    while (this.inflight.size || (this.queue.length && !this.error)) await this.wait()
    if (this.error) throw this.error
  }

  /** Flushes the last unit and waits until every unit file is durable. */
  async finish(): Promise<number> {
    const blocks = this.nextStreamBlock
    await this.flushUnit()
    while (this.inflight.size || (this.queue.length && !this.error)) await this.wait()
    if (this.error) throw this.error
    this.totalBlocks = blocks
    this.hashes = this.hashes.subarray(0, blocks * HASH_BYTES)
    return blocks
  }

  /** Blocks in the finished stream (valid after finish()). */
  totalBlocks = 0
}
