import { pieceIdOf, ZERO_ID_KEY } from '../codec/hash.js'
import { FrameCompressor } from '../codec/zstd.js'
import { type PieceRef, MAX_PIECE_RAW_BYTES, MAX_PIECE_STORED_BYTES, MAX_OBJECT_NUMBER, PACK_HEADER_BYTES, pieceKind } from '../format/v2/common.js'
import { keys2 } from '../format/v2/layout.js'
import { PackBuilder } from '../format/v2/pack.js'
import type { Staged, Store } from '../store/store.js'
import { type ObjectKey, NONCE_TAG, TAG_BYTES, newSalt, seal } from '../crypto/aead.js'
import { aad } from '../crypto/aad.js'
import { type RepoKeys, objectKey } from '../crypto/keys.js'
import { PACK_FLAG_ENCRYPTED } from '../format/v2/pack.js'

/** Default pack size limit (config `defaults.packBytes`, format.md §2.7, §2.11). */
export const DEFAULT_PACK_BYTES = 16 << 20
/**
 * A store that can append to a staged blob (Store.appendStaged: a disk store) gets the open
 * pack's pieces in runs of at least this many bytes, at the next settle(), instead of the
 * whole pack once it is sealed: the writer holds this much of a pack, not packBytes.
 */
export const PACK_APPEND_BYTES = 1 << 20
export const MIN_PACK_BYTES = 1 << 20
export const MAX_PACK_BYTES = 1 << 30

export interface PackWriterOptions {
  /** The run whose `gens/<run>/pack-K` files this writer creates. */
  run: number
  /** Stored bytes of pieces per pack before it is finished and written (1 MiB … 1 GiB; default 16 MiB). */
  packBytes?: number
  /** zstd level of the pieces (default 3). */
  level?: number
  /** The BLAKE3 key of piece ids (32 zero bytes for an unencrypted repository). */
  idKey?: Buffer
  /** Number of the first pack (default 0; a run's packs are numbered from 0). */
  firstPack?: number
  /**
   * An encrypted repository's keys (§2.11, §2.22): each pack takes a fresh salt, each piece
   * and the table are sealed, piece ids are keyed with kId (idKey is then ignored).
   */
  keys?: RepoKeys
}

export interface PackWriterStats {
  /** Pieces added. */
  pieces: number
  /** Their raw (uncompressed) bytes. */
  rawBytes: number
  /** Their stored (compressed) bytes. */
  storedBytes: number
  /** Pack files written (committed). */
  packs: number
  /** Bytes of the pack files written (headers, tables and trailers included). */
  packFileBytes: number
}

/**
 * Appends pieces to a run's packs (format.md §2.11, §2.12): `add` compresses a raw piece
 * payload, computes its id and returns its PieceRef at once (synchronously, so map trees and
 * directory pages can be built without yielding); a pack that reaches `packBytes` is sealed
 * and written by the next `settle()` (or `finish()`) as a staged write, stage → writeStaged →
 * commitStaged without a directory fsync; `finish()` writes the last pack and makes the
 * listing of `gens/<run>/` durable once, which must happen before the manifest that references
 * the pieces is written (§2.20.3 steps 5–6, 8).
 *
 * Memory: the open pack (≤ packBytes of stored pieces, or one bigger piece) plus sealed packs
 * not settled yet; callers settle after every directory, so at most one sealed pack waits.
 * With a store that appends to staged blobs (a disk store), settle() also writes the open
 * pack's pieces once PACK_APPEND_BYTES have gathered, so only that much of a pack is held: a
 * 16 MiB pack held whole was 14 MiB of a 1M-file backup's peak RSS, its pieces, allocated all
 * through the walk, also pinning the heap around them. Pieces become readable once their pack
 * is committed (a ref handed out earlier names a pack that is not there yet).
 */
export class PackWriter {
  readonly run: number
  readonly packBytes: number
  readonly stats: PackWriterStats = { pieces: 0, rawBytes: 0, storedBytes: 0, packs: 0, packFileBytes: 0 }
  private readonly idKey: Buffer
  private readonly keys: RepoKeys | null
  /** The open pack's object key (encrypted). */
  private openKey: ObjectKey | null = null
  private readonly sealKeys = new Map<PackBuilder, ObjectKey>()
  /** Packs whose pieces are being appended to a staged blob (appendStaged): their staged write and the bytes appended so far. */
  private readonly staging = new Map<PackBuilder, { staged: Promise<Staged>; bytes: number }>()
  private readonly compressor: FrameCompressor
  private scratch: Buffer = Buffer.alloc(0)
  private open: PackBuilder | null = null
  private nextPack: number
  private readonly sealed: PackBuilder[] = []
  private writing: Promise<void> = Promise.resolve()
  private failed: unknown = null
  private finished = false

  constructor(
    private readonly store: Store,
    opts: PackWriterOptions,
  ) {
    if (!(Number.isSafeInteger(opts.run) && opts.run >= 1 && opts.run <= MAX_OBJECT_NUMBER)) throw new RangeError(`pack writer: run ${opts.run}`)
    this.run = opts.run
    this.packBytes = opts.packBytes ?? DEFAULT_PACK_BYTES
    if (!(this.packBytes >= MIN_PACK_BYTES && this.packBytes <= MAX_PACK_BYTES)) throw new RangeError(`pack writer: packBytes ${this.packBytes} is outside 1 MiB … 1 GiB`)
    this.keys = opts.keys ?? null
    this.idKey = this.keys ? this.keys.kId : (opts.idKey ?? ZERO_ID_KEY)
    this.compressor = new FrameCompressor(opts.level ?? 3)
    this.nextPack = opts.firstPack ?? 0
  }

  /** The id this writer gives a raw payload (keyed BLAKE3). */
  idOf(payload: Buffer): Buffer {
    return pieceIdOf(payload, this.idKey)
  }

  /**
   * Appends one raw piece payload (its kind byte first); returns where it will be. `id`: the
   * payload's id when the caller has computed it already (it is trusted).
   */
  add(payload: Buffer, id: Buffer = this.idOf(payload)): PieceRef {
    if (this.finished) throw new Error('pack writer: add after finish')
    if (this.failed) throw this.failed
    if (payload.length > MAX_PIECE_RAW_BYTES) throw new RangeError(`piece of ${payload.length} bytes is over the ${MAX_PIECE_RAW_BYTES}-byte limit`)
    const kind = pieceKind(payload, 'pack writer')
    const bound = FrameCompressor.bound(payload.length)
    if (this.scratch.length < bound) this.scratch = Buffer.allocUnsafe(Math.max(bound, 64 << 10))
    const n = this.compressor.compressInto(this.scratch, payload)
    const tag = this.keys ? TAG_BYTES : 0
    if (n + tag > MAX_PIECE_STORED_BYTES) throw new RangeError(`piece compresses to ${n} bytes, over the stored limit`)
    if (this.open && this.open.pieces > 0 && this.open.storedBytes + n + tag > this.packBytes) this.seal()
    if (!this.open) {
      if (this.keys) {
        const salt = newSalt()
        this.open = new PackBuilder({ run: this.run, pack: this.nextPack++, flags: PACK_FLAG_ENCRYPTED, salt })
        this.openKey = objectKey(this.keys, salt, 'pack')
        this.sealKeys.set(this.open, this.openKey)
      } else this.open = new PackBuilder({ run: this.run, pack: this.nextPack++, flags: 0, salt: Buffer.alloc(32) })
      if (this.nextPack - 1 > MAX_OBJECT_NUMBER) throw new RangeError('pack writer: out of pack numbers')
    }
    // encrypted: the piece at offset o is AEAD(packKey, nonce(3, o), aad, zstd frame) ‖ tag (§2.11)
    const at = PACK_HEADER_BYTES + this.open.storedBytes
    const stored = this.openKey ? seal(this.openKey, NONCE_TAG.packPiece, at, aad.packPiece(this.run, this.open.header.pack, at, n + tag), this.scratch.subarray(0, n)) : Buffer.from(this.scratch.subarray(0, n))
    const ref = this.open.add(stored, payload.length, kind, id)
    this.stats.pieces++
    this.stats.rawBytes += payload.length
    this.stats.storedBytes += stored.length
    // a pack at its limit is sealed now, so a settle() after this piece writes it
    if (this.open.storedBytes >= this.packBytes) this.seal()
    return ref
  }

  /** Whether sealed packs wait to be written. */
  get pending(): boolean {
    return this.sealed.length > 0
  }

  private seal(): void {
    if (this.open && this.open.pieces > 0) this.sealed.push(this.open)
    this.open = null
    this.openKey = null
  }

  /** Writes the sealed packs (in pack order), and the open pack's pieces so far when they are enough to append; rethrows the first write failure. */
  async settle(): Promise<void> {
    while (this.sealed.length) {
      const b = this.sealed.shift()!
      this.writing = this.writing.then(() => this.writePack(b))
    }
    const o = this.open
    if (o && this.store.appendStaged && o.undrainedBytes >= PACK_APPEND_BYTES && !this.failed) {
      const parts = o.drain()
      this.writing = this.writing.then(() => this.append(o, parts))
    }
    try {
      await this.writing
    } catch (err) {
      this.failed ??= err
    }
    if (this.failed) throw this.failed
  }

  /** Appends pieces of a pack not yet sealed to its staged blob (staged at the first append). */
  private async append(b: PackBuilder, parts: Buffer[]): Promise<void> {
    if (this.failed) return
    let st = this.staging.get(b)
    if (!st) this.staging.set(b, (st = { staged: this.store.stage(keys2.pack(this.run, b.header.pack)), bytes: 0 }))
    const staged = await st.staged
    try {
      st.bytes += await this.store.appendStaged!(staged, parts, st.bytes)
    } catch (err) {
      this.staging.delete(b)
      await this.store.abortStaged(staged).catch(() => {})
      throw err
    }
  }

  private async writePack(b: PackBuilder): Promise<void> {
    const streamed = this.staging.get(b)
    this.staging.delete(b)
    if (this.failed) {
      if (streamed) await streamed.staged.then((st) => this.store.abortStaged(st)).catch(() => {})
      return
    }
    const key = keys2.pack(this.run, b.header.pack)
    const k = this.sealKeys.get(b)
    this.sealKeys.delete(b)
    const parts = k ? b.finishParts((plain) => seal(k, NONCE_TAG.packTable, 0, aad.packTable(this.run, b.header.pack), plain)) : b.finishParts()
    const staged = streamed ? await streamed.staged : await this.store.stage(key)
    try {
      // (a pack whose first pieces were appended gets the rest appended: its table and trailer at least)
      const n = streamed ? streamed.bytes + (await this.store.appendStaged!(staged, parts, streamed.bytes)) : await this.store.writeStaged(staged, parts)
      await this.store.commitStaged(staged, { syncListing: false })
      this.stats.packs++
      this.stats.packFileBytes += n
    } catch (err) {
      await this.store.abortStaged(staged).catch(() => {})
      throw err
    }
  }

  /**
   * Writes the last pack and makes `gens/<run>/`'s listing durable: after this, every
   * PieceRef handed out is readable and may be referenced by a manifest. Returns the stats.
   */
  async finish(): Promise<PackWriterStats> {
    if (this.finished) return this.stats
    this.seal()
    await this.settle()
    this.finished = true
    if (this.stats.packs > 0) await this.store.flush(keys2.genDir(this.run))
    return this.stats
  }
}

export type { PieceRef }
