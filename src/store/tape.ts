/**
 * The tape tier as a Store (native-notes/tape.md §"Tape store"): blobs written to a library's
 * cartridges in tape files (a header record, then the blobs' bytes back to back in records,
 * then a filemark), found again through a tape catalog that the repository keeps on disk
 * (REPO/tape/, repo/tapecat.ts; this layer sees only the TapeCatalog interface), read back
 * whole by the recall engine and checked against the SHA-256 the catalog recorded.
 *
 * Reads are slow (minutes) and whole-blob: a BufferCache (cache.ts) goes in front of it.
 * Writes are what migration does: `writeBlobs` streams many blobs into bounded tape files,
 * flushes, optionally reads them back, and only then commits their catalog records.
 */
import { createHash, randomBytes } from 'node:crypto'
import { RecallCancelled, RecallEngine, type EngineOptions } from '../tape/engine.js'
import { TapeError } from '../tape/device.js'
import { decodeTapeFileHeader, encodeTapeFileHeader, tapeFileHeaderBytes, type TapeFileSealer } from '../tape/tapefile.js'
import type { VirtualTapeDrive, VirtualTapeLibrary } from '../tape/vtl.js'
import {
  checkInBlob, checkKey, partsOf, StoreError,
  type BlobReader, type BlobStat, type ByteRange, type PutOptions, type Staged, type Store, type StoreDescription, getByOpen
} from './store.js'

/** Where a blob is on tape. */
export interface TapeLocation {
  tier: string
  cartridge: string
  /** Tape file number (filemarks before its header record). */
  file: number
  /** Block address of the tape file's header record. */
  fileBlock: number
  /** First block holding the blob's bytes, and how many records to read. */
  block: number
  records: number
  /** Bytes of the first record before the blob starts. */
  skip: number
}

/** A blob on tape as the catalog knows it, with copies of its first and last bytes. */
export interface ColdEntry {
  key: string
  sizeBytes: number
  /** SHA-256 of the whole blob, hex. */
  sha256: string
  /** The blob's first head.length bytes. */
  head: Buffer
  /** The blob's last tail.length bytes. */
  tail: Buffer
  loc: TapeLocation
}

/** One tape file's blobs, as the writer commits them to the catalog. */
export interface TapeBatch {
  tier: string
  cartridge: string
  batch: Buffer
  file: number
  fileBlock: number
  recordBytes: number
  dataBlocks: number
  blobs: Array<{ key: string; sizeBytes: number; sha256: Buffer; offset: number; head: Buffer; tail: Buffer }>
}

/** The tape catalog (kept by the repository; repo/tapecat.ts). */
export interface TapeCatalog {
  /** The newest entry for `key`, or undefined. */
  entry(key: string): ColdEntry | undefined
  /** Direct children of `prefix` ('' = top), keys and sub-prefixes, sorted. */
  list(prefix: string): string[]
  /** Every key, in no particular order. */
  keys(): Iterable<string>
  /** Reads records committed since (by this or another process); true if anything changed. */
  refresh(): boolean
  /** Durably records a tape file's blobs; entry() finds them afterwards. */
  commitBatch(b: TapeBatch): Promise<void>
  /** Durably forgets keys (their tape space is not reused). */
  drop(keys: string[]): Promise<void>
  /** The cartridge last written (for the writer to continue on), or null. */
  lastCartridge(tier: string): string | null
  /** Where the catalog lives, for messages. */
  where(): string
}

/** A blob to write to tape: its size, how many of its first and last bytes the catalog keeps, and its bytes. */
export interface WriteItem {
  key: string
  sizeBytes: number
  headBytes: number
  tailBytes: number
  open(): Promise<Pick<BlobReader, 'read' | 'close'>>
}

export interface WriteOptions {
  /** Data bytes per tape file (default 4 GiB). */
  fileBytes?: number
  /** Tape files written between flushes and catalog commits (default 16: one backhitch per ~64 GiB). */
  commitFiles?: number
  /** Read each group of files back and check every blob's SHA-256 before committing it. */
  verify?: boolean
  /** Wait this long for a drive (ms). */
  driveWaitMs?: number
  /** Called after each tape file's catalog record is durable, with its keys (migration removes the disk copies then). */
  onCommitted?: (keys: string[], batch: TapeBatch) => void | Promise<void>
  /** Progress: bytes streamed so far. */
  onProgress?: (p: WriteProgress) => void
  signal?: AbortSignal
}

export interface WriteProgress {
  files: number
  blobs: number
  bytes: number
  committedBlobs: number
}

/** What a writeBlobs run did, with its simulated and real time. */
export interface WriteResult {
  files: number
  blobs: number
  bytes: number
  /** Blobs whose read-back did not match (not committed; they stay where they were). */
  failed: Array<{ key: string; reason: string }>
  /** Simulated seconds the drive spent from the first write to the last commit (verify included). */
  seconds: number
  /** Simulated seconds of streaming data (writes and filemarks only), for the rate. */
  writeSeconds: number
  verifySeconds: number
  /** Bytes per real second at which the blobs were read from their source (the spool feed). */
  feedRate: number
  backhitches: number
  cartridges: string[]
}

export interface TapeStoreOptions {
  tier: string
  library: VirtualTapeLibrary
  catalog: TapeCatalog
  /** The repository id written into every tape file header (16 bytes; zeros when absent). */
  repoId?: Buffer
  /** An engine to share (the recall service's); else one is made with these options. */
  engine?: RecallEngine | EngineOptions
  /** Default data bytes per tape file (4 GiB). */
  fileBytes?: number
  /** An encrypted repository's: the header records it writes are sealed (format.md §2.18). */
  headerSealer?: TapeFileSealer | null
}

export const DEFAULT_FILE_BYTES = 4 * 2 ** 30
/** Blobs per tape file at most (its header record must fit in one record). */
const MAX_FILE_BLOBS = 8192
/** Bytes spooled in memory before they go to the drive in one WRITE. */
const SPOOL_BYTES = 64 * 2 ** 20
/** How long a put waits for a drive another process holds. */
const PUT_DRIVE_WAIT_MS = 60_000

const sha256hex = (b: Buffer): string => b.toString('hex')
const EMPTY_SHA256 = createHash('sha256').digest('hex')

/** An opened tape blob: read whole (and verified) at open, served from memory. */
class TapeBlob implements BlobReader {
  private bytes: Buffer | null
  readonly localFd = undefined
  constructor(
    readonly key: string,
    bytes: Buffer,
    private readonly whereKey: string,
  ) {
    this.bytes = bytes
  }
  get sizeBytes(): number {
    return this.bytes?.length ?? 0
  }
  async read(r: ByteRange, into?: Buffer): Promise<Buffer> {
    const b = this.bytes
    if (!b) throw new StoreError('EIO', this.key, `${this.whereKey}: read after close`)
    checkInBlob(this.key, this.whereKey, r, b.length)
    if (into && into.length < r.length) throw new TypeError(`buffer of ${into.length} bytes for a read of ${r.length}`)
    const out = into ? into.subarray(0, r.length) : Buffer.allocUnsafe(r.length)
    b.copy(out, 0, r.offset, r.offset + r.length)
    return out
  }
  async close(): Promise<void> {
    this.bytes = null
  }
}

/** Wraps a buffer as a WriteItem source. */
function bufferSource(parts: readonly Uint8Array[]): Pick<BlobReader, 'read' | 'close'> {
  const all = Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)))
  return {
    read: async (r) => Buffer.from(all.subarray(r.offset, r.offset + r.length)),
    close: async () => undefined,
  }
}

export class TapeStore implements Store {
  readonly sync = null
  readonly engine: RecallEngine
  readonly tier: string
  readonly library: VirtualTapeLibrary
  readonly catalog: TapeCatalog
  private readonly ownEngine: boolean
  private readonly repoId: Buffer
  private readonly fileBytes: number
  private readonly headerSealer: TapeFileSealer | null
  /** One writer at a time in this process (puts and migration): check-then-write is atomic under it. */
  private writing: Promise<unknown> = Promise.resolve()
  private readonly staged = new Map<string, { key: string; parts: Uint8Array[] | null }>()
  private driveWaitMs = 0

  constructor(o: TapeStoreOptions) {
    this.tier = o.tier
    this.library = o.library
    this.catalog = o.catalog
    this.repoId = o.repoId && o.repoId.length === 16 ? o.repoId : Buffer.alloc(16)
    this.fileBytes = o.fileBytes ?? DEFAULT_FILE_BYTES
    this.headerSealer = o.headerSealer ?? null
    if (o.engine instanceof RecallEngine) {
      this.engine = o.engine
      this.ownEngine = false
    } else {
      this.engine = new RecallEngine(o.library, o.engine)
      this.ownEngine = true
    }
  }

  where(key: string): string {
    const e = key ? this.catalog.entry(key) : undefined
    return e ? `tape ${e.loc.cartridge} file ${e.loc.file} block ${e.loc.block} (${this.library.dir}): ${key}` : `tape tier ${this.tier} (${this.library.dir}): ${key}`
  }

  localRoots(): string[] {
    return [this.library.dir]
  }

  describe(): StoreDescription | null {
    return null
  }

  /** The catalog entry, refreshing once if it is not known (another process may have committed it). */
  entry(key: string): ColdEntry | undefined {
    checkKey(key)
    const e = this.catalog.entry(key)
    if (e) return e
    return this.catalog.refresh() ? this.catalog.entry(key) : undefined
  }

  private need(key: string): ColdEntry {
    const e = this.entry(key)
    if (!e || e.loc.tier !== this.tier) throw new StoreError('ENOENT', key, `${this.where(key)}: no such blob on tape`)
    return e
  }

  // ---- reads ------------------------------------------------------------------------------

  /**
   * Reads blobs from tape in the engine's order, handing each one's bytes (in order, as
   * buffers) to `sink` and then checking them against the catalog's SHA-256: `done` fails
   * with StoreError EIO on a mismatch, so a sink must not make the bytes visible before
   * `done` resolves for that key (the cache writes a temporary file and renames it after).
   */
  /** Engine requests of keys asked for ahead (`recall`'s `ahead`), until they are done or promoted. */
  private readonly aheadIds = new Map<string, number>()

  /** A reader now waits for `key`, recalled ahead: the engine orders it as any other request from now. */
  promote(key: string): void {
    const id = this.aheadIds.get(key)
    if (id === undefined) return
    this.aheadIds.delete(key)
    this.engine.promote(id)
  }

  recall(entries: ColdEntry[], sink: (e: ColdEntry, chunks: Buffer[]) => void | Promise<void>, o: { deadline?: number; signal?: AbortSignal; ahead?: boolean } = {}): Map<string, Promise<void>> {
    const out = new Map<string, Promise<void>>()
    const ids: number[] = []
    for (const e of entries) {
      if (out.has(e.key)) continue
      if (e.sizeBytes === 0) {
        // nothing on tape to read
        out.set(e.key, (async () => {
          if (e.sha256 !== EMPTY_SHA256) throw new StoreError('EIO', e.key, `${this.where(e.key)}: an empty blob whose SHA-256 in the catalog is not that of no bytes`)
          await sink(e, [])
        })())
        continue
      }
      let chunks: Buffer[] = []
      const { id, done } = this.engine.submit({
        cartridge: e.loc.cartridge,
        block: e.loc.block,
        records: e.loc.records,
        deadline: o.deadline,
        ahead: !!o.ahead,
        sink: async (records) => {
          chunks = sliceBlob(records, e.loc.skip, e.sizeBytes)
          const h = createHash('sha256')
          let n = 0
          for (const c of chunks) {
            h.update(c)
            n += c.length
          }
          if (n !== e.sizeBytes) throw new StoreError('EIO', e.key, `${this.where(e.key)}: read ${n} of ${e.sizeBytes} bytes from tape (the tape file is shorter than the catalog says); not served`)
          const got = h.digest('hex')
          if (got !== e.sha256) throw new StoreError('EIO', e.key, `${this.where(e.key)}: the bytes read from tape do not match the catalog's SHA-256 (corrupt on tape); not served`)
          await sink(e, chunks)
        },
      })
      ids.push(id)
      if (o.ahead) {
        this.aheadIds.set(e.key, id)
        const forget = (): void => {
          if (this.aheadIds.get(e.key) === id) this.aheadIds.delete(e.key)
        }
        done.then(forget, forget)
      }
      out.set(
        e.key,
        done.catch((err: unknown) => {
          if (err instanceof StoreError) throw err
          if (err instanceof RecallCancelled) throw new StoreError('EIO', e.key, `${this.where(e.key)}: recall cancelled`, { cause: err })
          throw new StoreError('EIO', e.key, `${this.where(e.key)}: cannot read from tape: ${(err as Error).message}`, { cause: err })
        }),
      )
    }
    o.signal?.addEventListener('abort', () => {
      for (const id of ids) this.engine.cancel(id)
    }, { once: true })
    return out
  }

  /** A blob's whole bytes, verified. */
  async readBlob(key: string, o: { deadline?: number; signal?: AbortSignal } = {}): Promise<Buffer> {
    const e = this.need(key)
    let got: Buffer | null = null
    await this.recall([e], (_, chunks) => {
      got = Buffer.concat(chunks)
    }, o).get(key)!
    return got!
  }

  get(key: string, range?: ByteRange): Promise<Buffer> {
    return getByOpen(this, key, range)
  }

  async open(key: string): Promise<BlobReader> {
    return new TapeBlob(key, await this.readBlob(key), this.where(key))
  }

  async has(key: string): Promise<boolean> {
    const e = this.entry(key)
    return !!e && e.loc.tier === this.tier
  }

  async stat(key: string): Promise<BlobStat> {
    const e = this.need(key)
    return { sizeBytes: e.sizeBytes, sha256: e.sha256 }
  }

  async list(prefix: string): Promise<string[]> {
    checkKey(prefix, true)
    this.catalog.refresh()
    return this.catalog.list(prefix)
  }

  // ---- writes -----------------------------------------------------------------------------

  /** Runs `fn` as the one writer of this process. */
  private exclusiveWrite<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.writing.then(fn, fn)
    this.writing = p.catch(() => undefined)
    return p
  }

  async put(key: string, data: Uint8Array | readonly Uint8Array[], opts: PutOptions = {}): Promise<void> {
    checkKey(key)
    const parts = partsOf(data)
    const size = parts.reduce((a, p) => a + p.length, 0)
    const mode = opts.mode ?? 'create'
    await this.exclusiveWrite(async () => {
      if (mode !== 'replace' && (await this.has(key))) throw new StoreError('EEXIST', key, `${this.where(key)}: refusing to overwrite a stored blob`)
      const res = await this.writeUnlocked([{ key, sizeBytes: size, headBytes: 0, tailBytes: 0, open: async () => bufferSource(parts) }], { commitFiles: 1, driveWaitMs: PUT_DRIVE_WAIT_MS })
      if (res.failed.length) throw new StoreError('EIO', key, `${this.where(key)}: ${res.failed[0]!.reason}`)
    })
  }

  async stage(key: string): Promise<Staged> {
    checkKey(key)
    const token = `${key}\n${randomBytes(8).toString('hex')}`
    this.staged.set(token, { key, parts: null })
    return { token }
  }

  private stagedOf(s: Staged): { key: string; parts: Uint8Array[] | null } {
    const st = this.staged.get(s.token)
    if (!st) throw new TypeError(`not a staged write of this store: ${JSON.stringify(s.token)}`)
    return st
  }

  async writeStaged(s: Staged, data: readonly Uint8Array[]): Promise<number> {
    const st = this.stagedOf(s)
    st.parts = data.map((p) => Buffer.from(p))
    return data.reduce((a, p) => a + p.length, 0)
  }

  async commitStaged(s: Staged): Promise<void> {
    const st = this.stagedOf(s)
    await this.put(st.key, st.parts ?? [])
    this.staged.delete(s.token)
  }

  async abortStaged(s: Staged): Promise<void> {
    this.staged.delete(s.token)
  }

  async remove(key: string, opts: { recursive?: boolean } = {}): Promise<void> {
    checkKey(key, !!opts.recursive)
    this.catalog.refresh()
    const under = key === '' ? [...this.catalog.keys()] : [...this.catalog.keys()].filter((k) => k.startsWith(key + '/'))
    if (!opts.recursive) {
      if (under.length && !this.catalog.entry(key)) throw new TypeError(`${this.where(key)}: is a prefix; remove it with { recursive: true }`)
      if (this.catalog.entry(key)) await this.catalog.drop([key])
      return
    }
    const all = this.catalog.entry(key) ? [key, ...under] : under
    if (all.length) await this.catalog.drop(all)
  }

  async flush(): Promise<void> {
    // every put is durable when it returns (tape flushed, catalog record fsynced)
  }

  /** Staged writes live in this process only: under the writer lock any left are abandoned. */
  async sweep(prefix = '', opts: { shallow?: boolean } = {}): Promise<number> {
    let n = 0
    for (const [t, st] of this.staged) {
      const rest = prefix === '' ? st.key : st.key.startsWith(prefix + '/') ? st.key.slice(prefix.length + 1) : null
      if (rest !== null && !(opts.shallow && rest.includes('/'))) {
        this.staged.delete(t)
        n++
      }
    }
    return n
  }

  /** Writes `items` to tape (see WriteOptions); the one writer of this process. */
  writeBlobs(items: WriteItem[], o: WriteOptions = {}): Promise<WriteResult> {
    return this.exclusiveWrite(() => this.writeUnlocked(items, o))
  }

  private async writeUnlocked(items: WriteItem[], o: WriteOptions): Promise<WriteResult> {
    const fileBytes = o.fileBytes ?? this.fileBytes
    if (!(fileBytes >= 1)) throw new RangeError(`bad tape file size ${fileBytes}`)
    const res: WriteResult = { files: 0, blobs: 0, bytes: 0, failed: [], seconds: 0, writeSeconds: 0, verifySeconds: 0, feedRate: 0, backhitches: 0, cartridges: [] }
    if (items.length === 0) return res
    const files = planFiles(items, fileBytes, this.library.model.recordBytes, !!this.headerSealer)
    this.driveWaitMs = o.driveWaitMs ?? 0
    let readMs = 0
    let readBytes = 0
    let committed = 0
    await this.engine.exclusive(async (drive) => {
      const t0 = drive.clock.now()
      const bh0 = drive.record().backhitches
      let cartridge = await this.startCartridge(drive, this.catalog.lastCartridge(this.tier))
      res.cartridges.push(cartridge)
      const group: Array<{ batch: TapeBatch; shas: Map<string, Buffer> }> = []
      const commitGroup = async (): Promise<void> => {
        if (group.length === 0) return
        const tf = drive.clock.now()
        await drive.flush()
        res.writeSeconds += drive.clock.now() - tf
        if (o.verify) {
          const tv = drive.clock.now()
          await this.verifyGroup(drive, group, res)
          res.verifySeconds += drive.clock.now() - tv
        }
        for (const g of group) {
          if (g.batch.blobs.length === 0) continue
          await this.catalog.commitBatch(g.batch)
          committed += g.batch.blobs.length
          o.onProgress?.({ files: res.files, blobs: res.blobs, bytes: res.bytes, committedBlobs: committed })
          await o.onCommitted?.(g.batch.blobs.map((b) => b.key), g.batch)
        }
        group.length = 0
      }
      for (const f of files) {
        if (o.signal?.aborted) break
        let pos = await drive.readPosition()
        if (pos.earlyWarning) {
          await commitGroup()
          cartridge = await this.nextCartridge(drive, cartridge)
          res.cartridges.push(cartridge)
          pos = await drive.readPosition()
        }
        const tw = drive.clock.now()
        const written = await this.writeFile(drive, cartridge, pos.file, pos.block, f, (ms, n) => {
          readMs += ms
          readBytes += n
        })
        res.writeSeconds += drive.clock.now() - tw
        group.push(written)
        res.files++
        res.blobs += f.length
        res.bytes += written.batch.blobs.reduce((a, b) => a + b.sizeBytes, 0)
        o.onProgress?.({ files: res.files, blobs: res.blobs, bytes: res.bytes, committedBlobs: committed })
        if (group.length >= (o.commitFiles ?? 16)) await commitGroup()
      }
      await commitGroup()
      res.seconds = drive.clock.now() - t0
      res.backhitches = drive.record().backhitches - bh0
    }, { waitMs: o.driveWaitMs ?? 0 })
    res.feedRate = readMs > 0 ? readBytes / (readMs / 1000) : Infinity
    return res
  }

  /** Mounts the cartridge to continue on (or the first one) and positions at its end of data, moving on while it is past early warning. */
  private async startCartridge(drive: VirtualTapeDrive, last: string | null): Promise<string> {
    const labels = this.library.state().cartridges
    const first = last && labels.includes(last) ? last : labels[0]!
    await this.placeAndMount(drive, first)
    const pos = await drive.readPosition()
    if (pos.eodBlock > 0) await drive.locate(pos.eodBlock)
    if ((await drive.readPosition()).earlyWarning) return this.nextCartridge(drive, first)
    return first
  }

  /** The next cartridge in label order whose end of data is before early warning, mounted and positioned at EOD. */
  private async nextCartridge(drive: VirtualTapeDrive, after: string): Promise<string> {
    const labels = this.library.state().cartridges
    for (let i = labels.indexOf(after) + 1; i < labels.length; i++) {
      await this.placeAndMount(drive, labels[i]!)
      const pos = await drive.readPosition()
      if (pos.eodBlock > 0) await drive.locate(pos.eodBlock)
      if (!(await drive.readPosition()).earlyWarning) return labels[i]!
    }
    throw new TapeError('VOLUME_OVERFLOW', `every cartridge of ${this.library.dir} after ${after} is full: add cartridges`)
  }

  private async placeAndMount(drive: VirtualTapeDrive, label: string): Promise<void> {
    await this.engine.bringCartridge(drive, label, this.driveWaitMs)
  }

  /**
   * Writes one tape file: header record, then each blob in records of 1 MiB starting on a
   * record of its own (its last record short), then an immediate filemark. A blob's offset
   * is its first record's index × recordBytes: units next to each other on tape are read
   * one after the other without stepping back into a shared record.
   */
  private async writeFile(drive: VirtualTapeDrive, cartridge: string, file: number, fileBlock: number, items: WriteItem[], onRead: (ms: number, bytes: number) => void): Promise<{ batch: TapeBatch; shas: Map<string, Buffer> }> {
    const rb = this.library.model.recordBytes
    const batchId = randomBytes(8)
    let records = 0
    const blobs: TapeBatch['blobs'] = []
    for (const it of items) {
      blobs.push({ key: it.key, sizeBytes: it.sizeBytes, sha256: Buffer.alloc(32), offset: records * rb, head: Buffer.alloc(0), tail: Buffer.alloc(0) })
      records += Math.ceil(it.sizeBytes / rb)
    }
    const dataBlocks = records
    const header = encodeTapeFileHeader({ repoId: this.repoId, batch: batchId, recordBytes: rb, dataBytes: dataBlocks * rb, blobs: blobs.map((b) => ({ key: b.key, bytes: b.sizeBytes, offset: b.offset })) }, this.headerSealer)
    await drive.write([header])
    // spooled in memory, then written in large WRITEs (the drive streams from the spool)
    let spool: Buffer[] = []
    let spoolBytes = 0
    let partial = Buffer.alloc(0)
    const flushSpool = async (): Promise<void> => {
      if (spool.length) await drive.write(spool)
      spool = []
      spoolBytes = 0
    }
    /** The rest of a blob: its short last record. */
    const endBlob = async (): Promise<void> => {
      if (partial.length) {
        spool.push(partial)
        spoolBytes += partial.length
        partial = Buffer.alloc(0)
      }
      if (spoolBytes >= SPOOL_BYTES) await flushSpool()
    }
    const push = async (chunk: Buffer): Promise<void> => {
      let c = chunk
      if (partial.length) {
        const take = c.subarray(0, rb - partial.length)
        partial = Buffer.concat([partial, take])
        c = c.subarray(take.length)
        if (partial.length === rb) {
          spool.push(partial)
          spoolBytes += rb
          partial = Buffer.alloc(0)
        }
      }
      while (c.length >= rb) {
        spool.push(Buffer.from(c.subarray(0, rb)))
        spoolBytes += rb
        c = c.subarray(rb)
      }
      if (c.length) partial = Buffer.from(c)
      if (spoolBytes >= SPOOL_BYTES) await flushSpool()
    }
    const shas = new Map<string, Buffer>()
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!
      const b = blobs[i]!
      const src = await it.open()
      try {
        const h = createHash('sha256')
        const CH = 8 * 2 ** 20
        for (let off = 0; off < it.sizeBytes; off += CH) {
          const len = Math.min(CH, it.sizeBytes - off)
          const t = performance.now()
          const chunk = await src.read({ offset: off, length: len })
          onRead(performance.now() - t, len)
          h.update(chunk)
          if (off === 0) b.head = Buffer.from(chunk.subarray(0, Math.min(it.headBytes, it.sizeBytes)))
          await push(chunk)
        }
        const tailBytes = Math.min(it.tailBytes, it.sizeBytes - b.head.length)
        b.tail = tailBytes > 0 ? Buffer.from(await src.read({ offset: it.sizeBytes - tailBytes, length: tailBytes })) : Buffer.alloc(0)
        b.sha256 = h.digest()
        shas.set(it.key, b.sha256)
        await endBlob()
      } finally {
        await src.close()
      }
    }
    await flushSpool()
    await drive.writeFilemarks(1, { immediate: true })
    return { batch: { tier: this.tier, cartridge, batch: batchId, file, fileBlock, recordBytes: rb, dataBlocks, blobs }, shas }
  }

  /** Reads a group of just-written files back; blobs that do not match are dropped from their batch (not committed). */
  private async verifyGroup(drive: VirtualTapeDrive, group: Array<{ batch: TapeBatch; shas: Map<string, Buffer> }>, res: WriteResult): Promise<void> {
    const end = (await drive.readPosition()).block
    for (const g of group) {
      const b = g.batch
      const failAll = (why: string): void => {
        for (const x of b.blobs) res.failed.push({ key: x.key, reason: `read back from ${b.cartridge} file ${b.file}: ${why}` })
        b.blobs = []
      }
      await drive.locate(b.fileBlock)
      const head = await drive.read(1)
      try {
        const h = decodeTapeFileHeader(head.records[0] ?? Buffer.alloc(0), `${b.cartridge} file ${b.file}`, this.headerSealer)
        if (!h.batch.equals(b.batch) || h.blobs.length !== b.blobs.length) throw new Error('the header record is not the one written')
      } catch (err) {
        failAll((err as Error).message)
        continue
      }
      // stream the data back in spool-sized reads, hashing each blob's range as it passes
      const hashes = b.blobs.map(() => createHash('sha256'))
      const perRead = Math.max(1, Math.floor(SPOOL_BYTES / b.recordBytes))
      let pos = 0
      let left = b.dataBlocks
      let short = false
      while (left > 0) {
        const r = await drive.read(Math.min(perRead, left))
        if (r.count === 0) {
          short = true
          break
        }
        for (const rec of r.records) {
          // record k holds bytes [k × recordBytes, + its length) of the file's positions
          const recEnd = pos + rec.length
          b.blobs.forEach((x, i) => {
            const s0 = Math.max(pos, x.offset)
            const e0 = Math.min(recEnd, x.offset + x.sizeBytes)
            if (s0 < e0) hashes[i]!.update(rec.subarray(s0 - pos, e0 - pos))
          })
          pos += b.recordBytes
        }
        left -= r.count
        if (r.filemark || r.eod) {
          short = left > 0
          break
        }
      }
      if (short) {
        failAll(`${b.dataBlocks - left} of ${b.dataBlocks} records`)
        continue
      }
      const keep: TapeBatch['blobs'] = []
      b.blobs.forEach((x, i) => {
        if (hashes[i]!.digest().equals(x.sha256)) keep.push(x)
        else res.failed.push({ key: x.key, reason: `read back from ${b.cartridge} file ${b.file}: SHA-256 mismatch` })
      })
      b.blobs = keep
    }
    await drive.locate(end)
  }

  async close(): Promise<void> {
    if (this.ownEngine) await this.engine.close()
  }
}

/** `bytes` bytes of records starting `skip` bytes into the first: views, no copies. */
export function sliceBlob(records: Buffer[], skip: number, bytes: number): Buffer[] {
  const out: Buffer[] = []
  let left = bytes
  let s = skip
  for (const r of records) {
    if (left <= 0) break
    if (s >= r.length) {
      s -= r.length
      continue
    }
    const take = Math.min(r.length - s, left)
    out.push(r.subarray(s, s + take))
    left -= take
    s = 0
  }
  return out
}

/** Cuts items into tape files of at most `fileBytes` of data (at least one blob each), their headers within one record. */
function planFiles(items: WriteItem[], fileBytes: number, recordBytes: number, sealed: boolean): WriteItem[][] {
  const out: WriteItem[][] = []
  let cur: WriteItem[] = []
  let bytes = 0
  let keys: string[] = []
  for (const it of items) {
    const over = cur.length > 0 && (bytes + it.sizeBytes > fileBytes || cur.length >= MAX_FILE_BLOBS || tapeFileHeaderBytes([...keys, it.key], sealed) > recordBytes)
    if (over) {
      out.push(cur)
      cur = []
      bytes = 0
      keys = []
    }
    cur.push(it)
    keys.push(it.key)
    bytes += it.sizeBytes
  }
  if (cur.length) out.push(cur)
  return out
}

export { sha256hex }
