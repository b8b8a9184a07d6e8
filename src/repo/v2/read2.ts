/**
 * Reading a format 2 generation (issue 15 step 1, the minimal reader): a generation is its
 * manifest's root entry; paths are looked up directory by directory through the TreeReader
 * (one piece per directory on the path, plus index levels), files' maps resolved by the
 * MapReader, and data read by the existing BlockReader, whose StreamSource here is the
 * runs' stream records (`gens/S/stream`) and hashes files. Nothing is loaded that the
 * command does not visit. Leases (quick commands: §10 decision 3, retry once on ENOENT) are
 * not built yet.
 */
import type { Extent as V1Extent } from '../../format/maps.js'
import type { Entry2 } from '../../format/v2/dir.js'
import type { Extent } from '../../format/v2/common.js'
import { FileType } from '../../format/v2/dir.js'
import { keys2 } from '../../format/v2/layout.js'
import type { ManifestV2 } from '../../format/v2/records.js'
import { FormatError } from '../../format/errors.js'
import { BlockReader, type OpenFile } from '../../blocks/reader.js'
import { PROCESS_OPEN_UNITS } from '../../blocks/units.js'
import type { GenGeometry, StreamSource } from '../../blocks/source.js'
import { MapReader } from '../../pieces/maps.js'
import { PieceReader, isPieceFailure } from '../../pieces/reader.js'
import { TreeReader } from '../../pieces/tree-reader.js'
import { BfsError } from '../errors.js'
import { eachBytes } from '../read.js'
import { unitKeysOf } from '../restore.js'
import { type Repo2, payloadOf } from './repo2.js'

/** Stream geometry and hashes of format 2 streams, from their stream records (read once each, immutable). */
export class StreamSource2 implements StreamSource {
  constructor(private readonly repo: Repo2) {}

  geometry(stream: number): GenGeometry {
    const r = this.repo.stream(stream)
    const raw = new Array<number>(r.units).fill(r.unitBlocks)
    raw[r.units - 1] = r.streamBlocks - (r.units - 1) * r.unitBlocks
    return { unitBlocks: r.unitBlocks, frameBlocks: r.frameBlocks, unitRawBlocks: raw }
  }

  blockHashes(stream: number): Buffer {
    const key = keys2.hashes(stream)
    return this.repo.unsealHashes(stream, this.repo.sync.getSync(key))
  }

  private readonly hashesRead = new Map<number, Buffer>()

  /** blockHashes, each stream's file read once per source (diff, find and log compare many entries of few streams). */
  cachedBlockHashes(stream: number): Buffer {
    let h = this.hashesRead.get(stream)
    if (!h) this.hashesRead.set(stream, (h = this.blockHashes(stream)))
    return h
  }
}

export class GenReader2 {
  readonly pieces: PieceReader
  readonly tree: TreeReader
  readonly maps: MapReader
  private blocks: BlockReader | null = null

  constructor(
    readonly repo: Repo2,
    readonly manifest: ManifestV2,
    cacheBytes = 16 << 20,
    /** A piece reader to share (bfs find and log: one cache for every generation); else its own. */
    pieces?: PieceReader,
  ) {
    this.pieces = pieces ?? new PieceReader(repo.store, { cacheBytes, keys: repo.sealing })
    this.tree = new TreeReader(this.pieces)
    this.maps = new MapReader(this.pieces, manifest.biIndex) // (BI overlays first: §2.16)
  }

  /** The entry at a slash-separated path ('' or '/' = the root), or null. */
  async lookup(p: string): Promise<Entry2 | null> {
    const parts = p.split('/').filter((c) => c !== '' && c !== '.').map((c) => Buffer.from(c))
    try {
      return await this.tree.lookupPath(this.manifest.rootEntry, parts)
    } catch (err) {
      throw this.damage(err, p)
    }
  }

  /** The entries of a directory entry, in name order, a page at a time. */
  async *entries(dir: Entry2, p: string): AsyncGenerator<Entry2> {
    if (dir.type !== FileType.Dir || !dir.dir) return
    try {
      for await (const e of this.tree.entries(dir.dir)) yield e
    } catch (err) {
      throw this.damage(err, p)
    }
  }

  /** The entries of a directory entry a page at a time (one await per page, not per entry: restore, verify). */
  async *pages(dir: Entry2, p: string): AsyncGenerator<readonly Entry2[]> {
    if (dir.type !== FileType.Dir || !dir.dir) return
    try {
      for await (const page of this.tree.pages(dir.dir, null)) yield page.entries
    } catch (err) {
      throw this.damage(err, p)
    }
  }

  /**
   * The block reader of this command's reads: at most PROCESS_OPEN_UNITS unit files open at
   * once, as format 1's commands (cat of a file of more units than descriptors: EMFILE).
   */
  private blockReader(): BlockReader {
    return new BlockReader({ store: this.repo.data, source: new StreamSource2(this.repo), hashAlg: this.repo.config.hashAlg, blockSeed: this.repo.blockSeed, maxOpenUnits: PROCESS_OPEN_UNITS, sealing: this.repo.unitSealing })
  }

  /** A file entry opened for the block reader (its map resolved into extents). */
  async open(e: Entry2, p: string): Promise<OpenFile> {
    const ext = await this.extentsOf(e, p)
    const v1: V1Extent[] = ext.map((x) => ({ fileBlock: x.fileBlock, count: x.count, gen: x.stream, streamBlock: x.streamBlock }))
    this.blocks ??= this.blockReader()
    return this.blocks.file(v1, e.size)
  }

  /** The store keys of the units a file entry's data is in (the tape tier's recalls). */
  async unitKeys(e: Entry2, p: string): Promise<string[]> {
    const ext = await this.extentsOf(e, p)
    return unitKeysOf(ext.flatMap((x) => [x.fileBlock, x.count, x.stream, x.streamBlock]), e.size, (s) => this.repo.stream(s).unitBlocks)
  }

  /** A file entry's map resolved into extents; damage as the one line of `genN:p`. */
  private async extentsOf(e: Entry2, p: string): Promise<Extent[]> {
    try {
      return await this.maps.extents(e)
    } catch (err) {
      throw this.damage(err, p)
    }
  }

  /** The bytes of `sizeBytes` read through `extents` (file blocks from 0; stream 0 and gaps read as zeros): a BI log image (verify). */
  async readExtents(extents: readonly Extent[], sizeBytes: number): Promise<Buffer> {
    const v1: V1Extent[] = extents.filter((x) => x.stream !== 0).map((x) => ({ fileBlock: x.fileBlock, count: x.count, gen: x.stream, streamBlock: x.streamBlock }))
    this.blocks ??= this.blockReader()
    const out = Buffer.alloc(sizeBytes)
    let pos = 0
    this.each(this.blocks.file(v1, sizeBytes), (data, offset, bytes) => {
      data.copy(out, pos, offset, offset + bytes)
      pos += bytes
      return true
    })
    return out
  }

  /** Hands a file's bytes to `write` in order (holes as zeros) until the end or until it returns false. */
  each(f: OpenFile, write: (data: Buffer, offset: number, bytes: number) => boolean): void {
    eachBytes(this.blocks!, f, write)
  }

  async close(): Promise<void> {
    await this.blocks?.close()
  }

  /** A piece or store failure as the one-line damage of `genN:p` (exit 6); anything else as it is. */
  damageOf(err: unknown, p: string): unknown {
    return this.damage(err, p)
  }

  private damage(err: unknown, p: string): unknown {
    if (err instanceof BfsError && err.code === 'CORRUPT') return new BfsError('CORRUPT', `gen${this.manifest.id}:${p}: ${err.message}`)
    if (err instanceof FormatError || isPieceFailure(err)) return new BfsError('CORRUPT', `gen${this.manifest.id}:${p}: ${(err as Error).message}`)
    return err
  }
}
