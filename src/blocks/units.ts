import { BLOCK_BYTES } from '../codec/hash.js'
import { FormatError } from '../format/errors.js'
import { keys } from '../format/layout.js'
import {
  decodeSeekTable, decodeUnitHeader, decodeUnitTrailer, UNIT_HEADER_BYTES, UNIT_TRAILER_BYTES, type SeekTable, type UnitHeader,
} from '../format/unit.js'
import { UNIT_FLAG_ENCRYPTED, UNIT_V2_HEADER_BYTES, UNIT_V2_VERSION, decodeAnyUnitHeader, decodeUnitHeaderV2, decodeUnitIndex, decodeUnitTrailerV2 } from '../format/v2/unit.js'
import { decodeDict } from '../format/v2/dict.js'
import { keys2 } from '../format/v2/layout.js'
import { DecompressionDictionary } from '../codec/zstd.js'
import { syncOf, type BlobReader, type Store, type SyncBlobReader } from '../store/store.js'
import { MAX_NATIVE_DICTS, MAX_NATIVE_UNITS, type NativeSink } from './native.js'
import { type AeadName, type ObjectKey, NONCE_TAG, algOf, open } from '../crypto/aead.js'
import { aad } from '../crypto/aad.js'
import { objectKey } from '../crypto/keys.js'

/**
 * What reading an encrypted repository's units takes (§2.9, §2.22): the AEAD and kEnc, from
 * which each unit's key is derived once, when it is opened. Plain data: it crosses to worker
 * threads in a ReaderSpec.
 */
export interface UnitSealing {
  aead: AeadName
  kEnc: Uint8Array
}
import type { GenGeometry, StreamSource } from './source.js'

/** Counters a reader exposes for measuring which caching pays (the mount's stats line prints them). */
export interface ReaderStats {
  hits: number
  misses: number
  sharedLoads: number
  readaheads: number
  decompressedBytes: number
  /** Units closed to stay within the open-unit bound. */
  unitsClosed: number
}

/** One open unit: its blob, its validated seek table, and who is using it. */
export interface UnitInfo {
  readonly gen: number
  readonly unit: number
  /** Never reused: the native read path's id. */
  readonly id: number
  readonly blob: BlobReader
  readonly table: SeekTable
  /** Where the unit lives, for messages. */
  readonly where: string
  /** Loads reading through blob right now: such a unit is not closed. */
  users: number
  /** Closed to stay within the open-unit bound: open it again to read. */
  closed: boolean
  /** An encrypted unit's key (its frames are opened before zstd; never read natively), else null. */
  readonly key: ObjectKey | null
  /** The unit's revision (an encrypted frame's AAD binds it). */
  readonly revision: number
  /** The dictionary every frame of the unit needs (a compact's, format.md §2.9.1), or undefined. */
  readonly dict?: UnitDict
}

/** A stream's dictionary, as the readers of its units hold it. */
export interface UnitDict {
  readonly stream: number
  readonly id: number
  readonly dec: DecompressionDictionary
}

/** Units whose seek tables warm() loads ahead by default (each keeps a unit open). */
export const WARM_UNITS = 256

/** Units kept open by default (one descriptor each on disk; see trim): the mount's default (--open-units). */
export const DEFAULT_OPEN_UNITS = 1024

/**
 * Unit blobs the one-shot commands (cat, verify, restore) keep open in one process, all
 * readers and worker threads together: a command reading a file of 50,000 units must not
 * run out of descriptors, and the bound is the same whatever the command.
 */
export const PROCESS_OPEN_UNITS = 64

/** One reader's share of PROCESS_OPEN_UNITS when `readers` read at once (worker threads): at least 4, so a reader never thrashes. */
export function openUnitShare(readers: number): number {
  return Math.max(4, Math.floor(PROCESS_OPEN_UNITS / Math.max(1, readers)))
}

/** Whether a unit's first bytes say version 2 (its header is then 96 bytes, not 32). */
function isV2(head: Buffer): boolean {
  return head.length >= 10 && head.readUInt16LE(8) === UNIT_V2_VERSION
}

/**
 * Where a unit's seek table (v1) or unit index (v2) lies, from its first bytes (up to 96) and
 * its 32-byte trailer, with the header checked against the generation's geometry; `table`
 * decodes and checks those bytes. Format 2 readers read both unit versions (format.md §2.9):
 * v1 as the stream writer still writes them (`v1-streams`), v2 as compact rewrites them.
 */
export function unitLayout(head: Buffer, trailer: Buffer, size: number, where: string, gen: number, unit: number, g: GenGeometry, raw: number, sealing: UnitSealing | null = null): { at: number; length: number; table: (b: Buffer) => SeekTable; key: ObjectKey | null; revision: number; dict: number } {
  const any = decodeAnyUnitHeader(head, where)
  if (any.stream !== gen || any.unitIndex !== unit || any.rawBlocks !== raw || any.frameBlocks !== g.frameBlocks) {
    throw new FormatError('BAD_VALUE', `${where}: unit header does not match its manifest`)
  }
  if (size < any.headerBytes + UNIT_TRAILER_BYTES) throw new FormatError('TRUNCATED', `${where}: unit file truncated`)
  const plainHere = (): FormatError => new FormatError('BAD_VALUE', `${where}: not encrypted, in an encrypted repository (refused: a plaintext object here is tampering or a downgrade)`)
  if (any.version === 1) {
    if (sealing) throw plainHere()
    const header: UnitHeader = decodeUnitHeader(head.subarray(0, UNIT_HEADER_BYTES), where)
    const t = decodeUnitTrailer(trailer, size, header, where)
    return { at: t.seekTableOffset, length: t.tableBytes, table: (b) => decodeSeekTable(b, t.tableCheck, header, t.seekTableOffset, BLOCK_BYTES, where), key: null, revision: 0, dict: 0 }
  }
  const h = decodeUnitHeaderV2(head, where)
  const encrypted = (h.flags & UNIT_FLAG_ENCRYPTED) !== 0
  if (encrypted && !sealing) throw new FormatError('UNSUPPORTED_FEATURE', `${where}: an encrypted unit, in a repository that is not encrypted`)
  if (!encrypted && sealing) throw plainHere()
  // the unit's key, derived once per open unit (§2.22.1: never per message)
  const key = sealing ? objectKey({ aead: sealing.aead, kEnc: Buffer.from(sealing.kEnc.buffer, sealing.kEnc.byteOffset, sealing.kEnc.length) }, h.salt, 'unit') : null
  const t = decodeUnitTrailerV2(trailer, size, h, where)
  return {
    dict: h.dict ?? 0,
    at: t.indexOffset,
    length: t.indexBytes,
    table: (b) => {
      // encrypted: the unit index is one AEAD message, nonce (2, 0) (§2.9)
      const plain = key ? open(key, NONCE_TAG.unitIndex, 0, aad.unitIndex(gen, unit, h.revision), b, `${where} (unit index)`) : b
      const x = decodeUnitIndex(plain, key ? null : t.indexCheck, h, t.indexOffset, BLOCK_BYTES, where)
      return x.dead.length ? { entries: x.seek, offsets: x.offsets, dead: x.dead } : { entries: x.seek, offsets: x.offsets }
    },
    key,
    revision: h.revision,
  }
}

/**
 * The units a BlockReader reads: opened through the store and validated once (header
 * against the manifest, trailer, seek-table checksum), kept in an LRU bounded by
 * maxOpenUnits (a unit in use by a load or a native read stays), registered with the native
 * read path when it is attached and the blob has a local descriptor. One table serves both
 * the synchronous entry points and the asynchronous ones.
 */
export class UnitTable {
  /** Units open or opening, least recently used first. */
  private readonly units = new Map<string, Promise<UnitInfo>>()
  /** The units of `units` that are open. */
  private readonly openUnits = new Map<string, UnitInfo>()
  /** Native ids of units (gen:unit → id), assigned on first use, never reused. */
  private readonly unitIds = new Map<string, number>()
  private native: NativeSink | null = null
  private closed = false

  constructor(
    private readonly store: Store,
    private readonly source: StreamSource,
    private readonly stats: ReaderStats,
    private readonly maxOpenUnits = DEFAULT_OPEN_UNITS,
    private readonly sealing: UnitSealing | null = null,
  ) {}

  /** Units open now. */
  get openCount(): number {
    return this.openUnits.size
  }

  /** The unit, opening it if needed (asynchronously; never blocks). */
  unit(gen: number, unit: number): Promise<UnitInfo> {
    const k = `${gen}:${unit}`
    let p = this.units.get(k)
    if (p) {
      // most recently used last
      this.units.delete(k)
      this.units.set(k, p)
      return p
    }
    const opening = this.openUnit(gen, unit, this.unitId(gen, unit))
    p = opening
    this.units.set(k, p)
    opening.then(
      (info) => {
        if (this.closed || this.units.get(k) !== opening) {
          // closed meanwhile (close() closes it), or replaced by a synchronous open of the
          // same unit: loads waiting for this one see `closed` and ask again
          if (!this.closed) {
            info.closed = true
            void info.blob.close().catch(() => undefined)
          }
          return
        }
        this.adopt(k, info, false)
      },
      () => {
        if (this.units.get(k) === opening) this.units.delete(k)
      },
    )
    return p
  }

  /** The unit, opening it synchronously if needed (store.sync; the CLI and worker threads). */
  unitSync(gen: number, unit: number): UnitInfo {
    const k = `${gen}:${unit}`
    const info = this.openUnits.get(k)
    if (info) {
      const p = this.units.get(k)!
      this.units.delete(k)
      this.units.set(k, p)
      return info
    }
    const opened = this.openUnitSync(gen, unit, this.unitId(gen, unit))
    this.units.delete(k)
    this.units.set(k, Promise.resolve(opened))
    this.adopt(k, opened, true)
    return opened
  }

  private adopt(k: string, info: UnitInfo, sync: boolean): void {
    this.openUnits.set(k, info)
    this.registerNative(info)
    this.trim(k, sync)
  }

  /**
   * Closes the least recently used units beyond maxOpenUnits: a reader of a large
   * generation, or of many, would otherwise hold a descriptor per unit it ever touched. A
   * unit a load or a native read is using right now stays (the bound is exceeded for a
   * while), and so does `keep`, the one just opened. `sync`: called from a synchronous
   * entry point, whose caller may not yield before the next open: close at once.
   */
  private trim(keep: string, sync: boolean): void {
    if (this.openUnits.size <= this.maxOpenUnits) return
    const readNatively: string[] = []
    for (const k of this.units.keys()) {
      if (this.openUnits.size <= this.maxOpenUnits) break
      const info = this.openUnits.get(k)
      if (!info || k === keep || info.users > 0) continue
      const held = this.native && info.blob.localFd !== undefined ? this.native.retire(info.id) : 0
      if (held < 0) readNatively.push(k) // read natively since last asked: a second chance
      if (held !== 0) continue
      info.closed = true
      this.openUnits.delete(k)
      this.units.delete(k)
      this.stats.unitsClosed++
      if (sync) closeBlobSync(info.blob)
      else void info.blob.close().catch(() => undefined)
    }
    for (const k of readNatively) {
      const p = this.units.get(k)!
      this.units.delete(k)
      this.units.set(k, p)
    }
  }

  /**
   * A unit whose blob changed since it was opened (StoreError.changed: replaced by a prune or
   * a compact, its old index kept by the store): closed and forgotten, so that the next unit()
   * opens it again and reads its new header and index. Loads reading it now fail the same way
   * and ask again.
   */
  forget(info: UnitInfo): void {
    const k = `${info.gen}:${info.unit}`
    if (this.openUnits.get(k) === info) {
      this.openUnits.delete(k)
      this.units.delete(k)
    }
    if (info.closed) return
    info.closed = true
    void info.blob.close().catch(() => undefined)
  }

  /** The native read path's id for a unit (assigned on first use, never reused). */
  unitId(gen: number, unit: number): number {
    const k = `${gen}:${unit}`
    let id = this.unitIds.get(k)
    if (id === undefined) {
      id = this.unitIds.size
      this.unitIds.set(k, id)
    }
    return id
  }

  /** false when the unit is open and its bytes are not on local disk (no descriptor): its reads are deferred to JavaScript. */
  isLocal(gen: number, unit: number): boolean | undefined {
    const info = this.openUnits.get(`${gen}:${unit}`)
    return info ? info.blob.localFd !== undefined : undefined
  }

  /** Starts opening a unit not opened yet, so the native read path learns it; true if it did (a unit open already counts as used now). */
  ensureUnit(gen: number, unit: number): boolean {
    const opened = !this.units.has(`${gen}:${unit}`)
    this.unit(gen, unit).catch(() => undefined)
    return opened
  }

  /** Hands reads to a native path: every unit opened so far, and from now on, is registered with it. */
  attachNative(n: NativeSink): void {
    this.native = n
    for (const info of this.openUnits.values()) this.registerNative(info)
  }

  /** Units the native read path was told about. */
  private readonly registered = new WeakSet<UnitInfo>()
  /** Dictionaries handed to the native read path (stream:id → slot, 1 … 255, never reused). */
  private readonly dictSlots = new Map<string, number>()
  /** Dictionaries loaded, by stream:id (a stream has one; it never changes once written). */
  private readonly dicts = new Map<string, Promise<UnitDict>>()
  /** The same, once loaded (the synchronous opens use them). */
  private readonly loadedDicts = new Map<string, UnitDict>()

  /** Stream `gen`'s dictionary `id` (gens/N/dict-<id>), read and checked once. */
  private dictionary(gen: number, id: number): Promise<UnitDict> {
    const k = `${gen}:${id}`
    let p = this.dicts.get(k)
    if (!p) {
      const key = keys2.dict(gen, id)
      p = this.store.get(key).then((b) => {
        const d = loadDict(b, this.store.where(key), gen, id)
        this.loadedDicts.set(k, d)
        return d
      })
      p.catch(() => this.dicts.delete(k)) // a failure is reported to its reader; the next one tries again
      this.dicts.set(k, p)
    }
    return p
  }

  private dictionarySync(gen: number, id: number): UnitDict {
    const key = keys2.dict(gen, id)
    const d = loadDict(syncOf(this.store, key).getSync(key), this.store.where(key), gen, id)
    this.loadedDicts.set(`${gen}:${id}`, d)
    this.dicts.set(`${gen}:${id}`, Promise.resolve(d))
    return d
  }

  /**
   * A unit opened without a local descriptor whose blob has one now (a unit on tape, read
   * once its recall is in the buffer cache: store/tiered.ts) is handed to the native read
   * path from now on; its earlier reads were deferred to JavaScript.
   */
  localNow(info: UnitInfo): void {
    if (this.native && !info.closed && !this.registered.has(info) && info.blob.localFd !== undefined) this.registerNative(info)
  }

  private registerNative(info: UnitInfo): void {
    const fd = info.blob.localFd
    if (!this.native || fd === undefined || info.id >= MAX_NATIVE_UNITS) return
    const t = info.table
    let slot = 0
    if (info.dict) {
      // its frames need the stream's dictionary: handed to the native path once, by slot
      const k = `${info.dict.stream}:${info.dict.id}`
      const known = this.dictSlots.get(k)
      if (known !== undefined) slot = known
      else {
        if (!this.native.dict || this.dictSlots.size + 1 >= MAX_NATIVE_DICTS) return // (stays in JavaScript)
        slot = this.dictSlots.size + 1
        try {
          this.native.dict(slot, Buffer.from(info.dict.dec.bytes))
        } catch {
          return // a dictionary the native path refuses: its units are read in JavaScript
        }
        this.dictSlots.set(k, slot)
      }
    }
    // a unit with dead ranges (a prune zeroed blocks in it) is read in JavaScript, which
    // refuses a read of a dead block (BlockReader.refuseDead); the native path would serve zeros
    if (t.dead) return
    const frames = new Float64Array(t.entries.length * 3)
    for (let f = 0; f < t.entries.length; f++) {
      frames[3 * f] = t.offsets[f]!
      frames[3 * f + 1] = t.entries[f]!.compBytes
      frames[3 * f + 2] = t.entries[f]!.rawBytes
    }
    try {
      const g = this.source.geometry(info.gen)
      // an encrypted unit: the native path opens its frames (native/aead.c) with its object key
      const seal = info.key ? { alg: algOf(info.key), key: info.key.key, revision: info.revision } : undefined
      this.native.unit(info.id, fd, g.frameBlocks * BLOCK_BYTES, frames, { stream: info.gen, unit: info.unit, unitBlocks: g.unitBlocks }, slot || undefined, seal)
      this.registered.add(info)
    } catch {
      // a table the native path refuses (or no memory): its reads stay in JavaScript,
      // which checks and reports what is wrong with the unit
    }
  }

  private expect(gen: number, unit: number): { g: GenGeometry; raw: number; key: string; where: string } {
    const g = this.source.geometry(gen)
    const raw = unit >= 0 && unit < g.unitRawBlocks.length ? g.unitRawBlocks[unit] : undefined
    if (raw === undefined) throw new FormatError('BAD_VALUE', `gen${gen} has no unit ${unit}`)
    const key = keys.unit(gen, unit)
    return { g, raw, key, where: this.store.where(key) }
  }

  private async openUnit(gen: number, unit: number, id: number): Promise<UnitInfo> {
    const { g, raw, key, where } = this.expect(gen, unit)
    const blob = await this.store.open(key)
    try {
      const size = blob.sizeBytes
      if (size < UNIT_HEADER_BYTES + UNIT_TRAILER_BYTES) throw new FormatError('TRUNCATED', `${where}: unit file truncated`)
      // a v1 header is 32 bytes (what a format 1 reader reads); a v2 header's 96 are read once it says version 2
      let head = await blob.read({ offset: 0, length: UNIT_HEADER_BYTES })
      if (isV2(head)) head = await blob.read({ offset: 0, length: Math.min(UNIT_V2_HEADER_BYTES, size) })
      const l = unitLayout(head, await blob.read({ offset: size - UNIT_TRAILER_BYTES, length: UNIT_TRAILER_BYTES }), size, where, gen, unit, g, raw, this.sealing)
      const table = l.table(await blob.read({ offset: l.at, length: l.length }))
      const dict = l.dict ? await this.dictionary(gen, l.dict) : undefined
      // read and checked: a store far away may keep these bytes (S3: a later cold read is one GET)
      blob.indexRead?.()
      return { gen, unit, id, blob, table, where, users: 0, closed: false, key: l.key, revision: l.revision, ...(dict ? { dict } : {}) }
    } catch (err) {
      await blob.close().catch(() => undefined)
      throw err
    }
  }

  private openUnitSync(gen: number, unit: number, id: number): UnitInfo {
    const { g, raw, key, where } = this.expect(gen, unit)
    const blob: SyncBlobReader = syncOf(this.store, key).openSync(key)
    try {
      const size = blob.sizeBytes
      if (size < UNIT_HEADER_BYTES + UNIT_TRAILER_BYTES) throw new FormatError('TRUNCATED', `${where}: unit file truncated`)
      let head = blob.readSync({ offset: 0, length: UNIT_HEADER_BYTES })
      if (isV2(head)) head = blob.readSync({ offset: 0, length: Math.min(UNIT_V2_HEADER_BYTES, size) })
      const l = unitLayout(head, blob.readSync({ offset: size - UNIT_TRAILER_BYTES, length: UNIT_TRAILER_BYTES }), size, where, gen, unit, g, raw, this.sealing)
      const table = l.table(blob.readSync({ offset: l.at, length: l.length }))
      const dict = l.dict ? (this.loadedDicts.get(`${gen}:${l.dict}`) ?? this.dictionarySync(gen, l.dict)) : undefined
      return { gen, unit, id, blob, table, where, users: 0, closed: false, key: l.key, revision: l.revision, ...(dict ? { dict } : {}) }
    } catch (err) {
      blob.closeSync()
      throw err
    }
  }

  /**
   * Opens gen's units and reads their seek tables in the background (at most `max`, 4 at a
   * time), so the first cold read of each unit pays one store read instead of four (open,
   * header, trailer, seek table). Errors are left for the reads that need the unit.
   */
  warm(gen: number, max = WARM_UNITS): void {
    let n: number
    try {
      n = Math.min(this.source.geometry(gen).unitRawBlocks.length, max)
    } catch {
      return
    }
    let next = 0
    const lane = async (): Promise<void> => {
      while (next < n && !this.closed) await this.unit(gen, next++).catch(() => undefined)
    }
    for (let k = 0; k < 4; k++) void lane()
  }

  get isClosed(): boolean {
    return this.closed
  }

  async close(): Promise<void> {
    this.closed = true
    for (const p of this.units.values()) {
      try {
        await (await p).blob.close()
      } catch {
        // it failed to open, or is closed already
      }
    }
    this.units.clear()
    this.openUnits.clear()
  }
}

/** A dictionary file's bytes, checked (§2.9.1) and loaded for decompression. */
function loadDict(b: Buffer, where: string, stream: number, id: number): UnitDict {
  const d = decodeDict(b, where, { stream, id })
  let dec: DecompressionDictionary
  try {
    dec = new DecompressionDictionary(d.bytes)
  } catch (err) {
    if ((err as { code?: string }).code === 'ELIBACC') throw err
    throw new FormatError('BAD_VALUE', `${where}: not a zstd dictionary (${(err as Error).message})`)
  }
  return { stream, id, dec }
}

/** Closes a blob now when it can be (its sync face), else without waiting. */
function closeBlobSync(b: BlobReader): void {
  const s = b as Partial<SyncBlobReader>
  if (s.closeSync) {
    try {
      s.closeSync.call(b)
    } catch {
      // nothing to report: the unit is no longer needed
    }
  } else void b.close().catch(() => undefined)
}
