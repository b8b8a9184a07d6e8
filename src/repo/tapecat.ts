/**
 * The tape catalog of a repository (native-notes/format.md §"Tape catalog"): REPO/tape/,
 * records `rec-NNNNNNNN` written once each (tmp → fsync → link, then the directory fsynced)
 * and never modified; the catalog is their replay in number order. Implements the store
 * layer's TapeCatalog, so the tape store and the tiered store find every migrated unit, its
 * place on tape, its SHA-256 and the copies of its header, seek table and trailer here,
 * without touching tape.
 */
import { createHash } from 'node:crypto'
import { decodeEnvelope, FLAG_ZSTD } from '../format/envelope.js'
import { FormatError } from '../format/errors.js'
import { decodeTapeCat, encodeTapeCat, unitBlocks, type TapeBatchRecord, type TapeCatRecord } from '../format/tapecat.js'
import { decompressBuffer, rethrowUnavailable } from '../codec/zstd.js'
import { StoreError, syncOf, type Store } from '../store/store.js'
import type { ColdEntry, TapeBatch, TapeCatalog } from '../store/tape.js'
import { envelopeFor } from './repository.js'
import { BfsError } from './errors.js'
import type { TapeSeal } from './tiers.js'

export const TAPE_PREFIX = 'tape'
const REC_RE = /^rec-(\d{8,})$/
const recKey = (n: number): string => `${TAPE_PREFIX}/rec-${String(n).padStart(8, '0')}`

/** A record that could not be read: its units are unknown (reported; the rest of the catalog stands). */
export interface CatalogProblem {
  key: string
  problem: string
}

/** Counts of keys below each prefix, for list(). */
class KeyTree {
  private readonly children = new Map<string, Map<string, number>>()

  add(key: string): void {
    this.walk(key, 1)
  }

  remove(key: string): void {
    this.walk(key, -1)
  }

  private walk(key: string, d: number): void {
    const segs = key.split('/')
    let prefix = ''
    for (let i = 0; i < segs.length; i++) {
      const child = prefix === '' ? segs[i]! : `${prefix}/${segs[i]}`
      let m = this.children.get(prefix)
      if (!m) this.children.set(prefix, (m = new Map()))
      const n = (m.get(child) ?? 0) + d
      if (n <= 0) m.delete(child)
      else m.set(child, n)
      if (m.size === 0) this.children.delete(prefix)
      prefix = child
    }
  }

  list(prefix: string): string[] {
    return [...(this.children.get(prefix)?.keys() ?? [])].sort()
  }
}

export class RepoTapeCatalog implements TapeCatalog {
  private readonly entries = new Map<string, ColdEntry>()
  private readonly tree = new KeyTree()
  private readonly loaded = new Set<number>()
  private maxRec = 0
  private readonly lastByTier = new Map<string, string>()
  readonly problems: CatalogProblem[] = []

  /**
   * `store`: the repository's store (its sync face is used to read records); `seal`: an
   * encrypted repository's (unlocked) sealing of the records (format.md §2.18), else plain.
   */
  constructor(
    private readonly store: Store,
    private readonly seal: TapeSeal | null = null,
  ) {
    this.refresh()
  }

  where(): string {
    return this.store.where(TAPE_PREFIX)
  }

  entry(key: string): ColdEntry | undefined {
    return this.entries.get(key)
  }

  list(prefix: string): string[] {
    return this.tree.list(prefix)
  }

  keys(): Iterable<string> {
    return this.entries.keys()
  }

  /** Every entry (planning, status). */
  all(): Iterable<ColdEntry> {
    return this.entries.values()
  }

  get size(): number {
    return this.entries.size
  }

  lastCartridge(tier: string): string | null {
    return this.lastByTier.get(tier) ?? null
  }

  /** Loads records not loaded yet, in number order; true if any was. */
  refresh(): boolean {
    const sync = syncOf(this.store, TAPE_PREFIX)
    const nums: number[] = []
    for (const k of sync.listSync(TAPE_PREFIX)) {
      const m = REC_RE.exec(k.slice(TAPE_PREFIX.length + 1))
      if (m) nums.push(Number(m[1]))
    }
    nums.sort((a, b) => a - b)
    let changed = false
    for (const n of nums) {
      this.maxRec = Math.max(this.maxRec, n)
      if (this.loaded.has(n)) continue
      this.loaded.add(n)
      changed = true
      const key = recKey(n)
      let rec: TapeCatRecord
      try {
        rec = readRecord(sync.getSync(key), this.store.where(key), this.seal, key)
      } catch (err) {
        if (!(err instanceof FormatError) && !(err instanceof StoreError)) throw err
        // sealed (encrypted repository): damage, not a record to pass over (format.md §2.18)
        if (this.seal) {
          this.loaded.delete(n) // (every refresh says so again)
          throw new BfsError('CORRUPT', `${err.message} (a tape catalog record that does not open: nothing done)`)
        }
        this.problems.push({ key, problem: err.message })
        continue
      }
      this.apply(rec)
    }
    return changed
  }

  private apply(rec: TapeCatRecord): void {
    if (rec.kind === 'drop') {
      for (const k of rec.keys) {
        if (this.entries.delete(k)) this.tree.remove(k)
      }
      return
    }
    for (const u of rec.units) {
      const b = unitBlocks(rec, u)
      const e: ColdEntry = {
        key: u.key,
        sizeBytes: u.bytes,
        sha256: u.sha256.toString('hex'),
        head: u.head,
        tail: u.tail,
        loc: { tier: rec.tier, cartridge: rec.cartridge, file: rec.file, fileBlock: rec.fileBlock, block: b.block, records: b.records, skip: b.skip },
      }
      if (!this.entries.has(u.key)) this.tree.add(u.key)
      this.entries.set(u.key, e)
    }
    this.lastByTier.set(rec.tier, rec.cartridge)
  }

  /** Writes the next record number (exclusive create: a concurrent writer takes the next one). */
  private async commit(rec: TapeCatRecord): Promise<void> {
    const payload = encodeTapeCat(rec)
    const plain = this.seal ? null : envelopeFor('tapecat', payload, true)
    for (;;) {
      this.refresh()
      const n = this.maxRec + 1
      // sealed: the record's number is in the AAD (its logical name tapecat/N), so it is sealed for that number
      const file = plain ?? this.seal!.seal('tapecat', recKey(n), payload)
      try {
        await this.store.put(recKey(n), file, { mode: 'exclusive' })
      } catch (err) {
        if (err instanceof StoreError && err.code === 'EEXIST') continue
        throw err
      }
      this.maxRec = n
      this.loaded.add(n)
      this.apply(rec)
      return
    }
  }

  async commitBatch(b: TapeBatch): Promise<void> {
    const rec: TapeBatchRecord = {
      kind: 'batch',
      tier: b.tier,
      cartridge: b.cartridge,
      batch: b.batch,
      file: b.file,
      fileBlock: b.fileBlock,
      recordBytes: b.recordBytes,
      dataBlocks: b.dataBlocks,
      units: b.blobs.map((x) => ({ key: x.key, bytes: x.sizeBytes, sha256: x.sha256, offset: x.offset, head: x.head, tail: x.tail })),
    }
    await this.commit(rec)
  }

  async drop(keys: string[]): Promise<void> {
    if (keys.length) await this.commit({ kind: 'drop', keys })
  }
}

/** Decodes one record file (envelope, zstd, payload), or — `seal` given — opens the sealed record at store key `key`. */
export function readRecord(file: Buffer, what: string, seal: TapeSeal | null = null, key = ''): TapeCatRecord {
  if (seal) return decodeTapeCat(seal.open('tapecat', key, file), what)
  const env = decodeEnvelope('tapecat', file, what)
  let payload = env.stored
  if (env.flags & FLAG_ZSTD) {
    try {
      payload = decompressBuffer(env.stored, env.rawBytes)
    } catch (err) {
      rethrowUnavailable(err)
      throw new FormatError('BAD_CHECKSUM', `${what}: cannot decompress (${(err as Error).message})`)
    }
  }
  return decodeTapeCat(payload, what)
}

/** SHA-256 (hex) of a buffer. */
export function sha256Hex(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex')
}

/**
 * The keys the tape catalog of the repository in `store` knows (units on tape, with or
 * without a disk copy); empty, without reading anything more than a listing, when it has no
 * records. Format 2's prune, compact and verify leave these units alone (format.md §2.18).
 * An encrypted repository's (`seal` given): a record that does not open is damage (exit 6,
 * RepoTapeCatalog): a unit it names might be on tape and must not be taken for absent.
 */
export function tapeKeys(store: Store, seal: TapeSeal | null = null): Set<string> {
  let recs: string[]
  try {
    recs = syncOf(store).listSync(TAPE_PREFIX)
  } catch {
    return new Set()
  }
  if (!recs.some((k) => /\/rec-\d{8,}$/.test(k))) return new Set()
  const cat = new RepoTapeCatalog(store, seal)
  return new Set([...cat.all()].map((e) => e.key))
}
