/**
 * Content dedup of format 2 backups (native-notes/format.md §2.17, issue 17 item 3): a new or
 * changed file whose content digest (keyed BLAKE3 of its bytes) is in the index of a committed
 * generation, with the same size, takes that generation's map; no data is stored. Each
 * backup writes the digests of the files it stored into its own objects
 * `index/dedup-<run>-<seq>`, before its commit.
 *
 * Lookups load nothing until the first file asks (a backup with no new or changed file never
 * touches `index/`), then the trailer and directory (Bloom filters, fences) of each object
 * of a committed generation older than the run; a page is read only when both filters say
 * maybe, and a few are cached. A hit is used only if `manifests/gen-<gen>` is committed with
 * the entry's `rev` (that manifest references the map, so the data is live; the backup's
 * lease protects it until its own commit).
 */
import fs from 'node:fs'
import { Blake3Hasher, blake3Into } from '../../native/index.js'
import {
  type DedupDirectory, type DedupEntry, type DedupOpener, type DedupSealer, DEDUP_HEADER_BYTES, DEDUP_PAGE_BYTES, DEDUP_TRAILER_BYTES, DedupBatch,
  decodeDedupDirectory, decodeDedupPage, decodeDedupTrailer, DedupProbe, findInPage, mayHaveDigest, mayHaveSize, openPage, pagesOf,
} from '../../format/v2/dedup.js'
import { NONCE_TAG, newSalt, open, seal } from '../../crypto/aead.js'
import { aad } from '../../crypto/aad.js'
import { objectKey } from '../../crypto/keys.js'
import { FormatError } from '../../format/errors.js'
import { keys2 } from '../../format/v2/layout.js'
import type { StoredMap } from '../../pieces/maps.js'
import { StoreError } from '../../store/store.js'
import { BfsError } from '../errors.js'
import type { Repo2 } from './repo2.js'

export const DEDUP_RE = /^dedup-(\d{8})-(\d{4})$/
/** Entries per object: a run's objects are written as this many accumulate (memory bounded), the last at the end. */
export const DEDUP_OBJECT_ENTRIES = 1 << 16
/** Raw index pages kept (64 KiB each at most). */
const PAGE_CACHE = 16
/** A page buffer's size: a page's entries take at most DEDUP_PAGE_BYTES, a sealed page a tag more. */
const PAGE_BYTES = DEDUP_PAGE_BYTES + 256
/** Unencrypted repositories' content key (§2.5): the all-zero key, BLAKE3's keyed mode. */
const CONTENT_KEY = Buffer.alloc(32)
const READ_BYTES = 1 << 20

/** The content key of a repository: `kContent` when encrypted (§2.22: digests are no oracle without it), else all zeros. */
export function contentKeyOf(repo: Repo2): Buffer {
  return repo.encrypted ? repo.keys.kContent : CONTENT_KEY
}

/** The content digest of bytes in memory. */
export function contentDigest(buf: Buffer, offset: number, length: number, key: Buffer = CONTENT_KEY): Buffer {
  const out = Buffer.allocUnsafe(32)
  blake3Into(buf, offset, length, key, out, 0, 32)
  return out
}

/** An encrypted repository's sealer for object (run, seq), under a fresh salt (§2.17: page p nonce (6, p), directory (7, 0)); undefined when plain. */
export function dedupSealer(repo: Repo2, run: number, seq: number): DedupSealer | undefined {
  if (!repo.encrypted) return undefined
  const salt = newSalt()
  const k = objectKey(repo.keys, salt, 'dedup')
  return {
    salt,
    page: (p, raw) => seal(k, NONCE_TAG.dedupPage, p, aad.dedup(run, seq, p), raw),
    directory: (raw) => seal(k, NONCE_TAG.dedupDirectory, 0, aad.dedup(run, seq, 0), raw),
  }
}

/** An encrypted repository's opener factory for object (run, seq) (`what` names it in errors); undefined when plain. */
export function dedupOpenerOf(repo: Repo2, run: number, seq: number, what: string): ((salt: Buffer) => DedupOpener) | undefined {
  if (!repo.encrypted) return undefined
  return (salt) => {
    const k = objectKey(repo.keys, salt, 'dedup')
    return {
      page: (p, stored) => open(k, NONCE_TAG.dedupPage, p, aad.dedup(run, seq, p), stored, `${what} page ${p}`),
      directory: (stored) => open(k, NONCE_TAG.dedupDirectory, 0, aad.dedup(run, seq, 0), stored, `${what} directory`),
    }
  }
}

let readBuf: Buffer | null = null
/** The content digest of an open file's first `size` bytes (holes read as zeros), or null if it is shorter now. */
export function fileDigest(fd: number, size: number, key: Buffer = CONTENT_KEY): Buffer | null {
  readBuf ??= Buffer.allocUnsafe(READ_BYTES)
  const h = new Blake3Hasher(key)
  let pos = 0
  while (pos < size) {
    const n = fs.readSync(fd, readBuf, 0, Math.min(READ_BYTES, size - pos), pos)
    if (n <= 0) return null
    h.update(readBuf, 0, n)
    pos += n
  }
  return h.digest()
}

const ZEROS = Buffer.alloc(64 << 10)

/**
 * The content digest of a file taken from the ranges storeObject reads (StoreHooks.onData):
 * what lies between them and after the last one reads as zeros (holes). Null when the
 * ranges were not in order or ran past the size (the file changed: no digest).
 */
export class StreamDigest {
  private readonly h: Blake3Hasher
  private at = 0
  private bad = false
  constructor(private readonly size: number, key: Buffer = CONTENT_KEY) {
    this.h = new Blake3Hasher(key)
  }

  private zeros(n: number): void {
    while (n > 0) {
      const k = Math.min(n, ZEROS.length)
      this.h.update(ZEROS, 0, k)
      n -= k
    }
  }

  update(buf: Buffer, off: number, len: number, pos: number): void {
    if (this.bad || pos < this.at || pos + len > this.size) {
      this.bad = true
      return
    }
    this.zeros(pos - this.at)
    this.h.update(buf, off, len)
    this.at = pos + len
  }

  digest(): Buffer | null {
    if (this.bad) return null
    this.zeros(this.size - this.at)
    return this.h.digest()
  }
}

/** Keys of a run's dedup objects. */
export function dedupKeysOf(repo: Repo2, run: number): string[] {
  return repo.sync.listSync(keys2.index).filter((k) => {
    const m = DEDUP_RE.exec(k.slice(k.lastIndexOf('/') + 1))
    return !!m && Number(m[1]) === run
  })
}

/** Deletes run N's dedup objects (an aborted or recovered run, §2.20.6). */
export function removeDedupOf(repo: Repo2, run: number): void {
  const keys = dedupKeysOf(repo, run)
  for (const k of keys) repo.sync.removeSync(k)
  // durable before the run is marked aborted: after a power cut they must not come back for
  // a run whose gens/N is gone (lookups would skip them, but nothing would delete them)
  if (keys.length) repo.sync.flushSync(keys2.index)
}

/** Every entry of one object, fully decoded and checked (verify). */
export function readDedupObject(repo: Repo2, key: string): DedupEntry[] {
  const m = DEDUP_RE.exec(key.slice(key.lastIndexOf('/') + 1))
  if (!m) throw new RangeError(`${key}: not a dedup object`)
  const what = repo.store.where(key)
  const b = repo.sync.getSync(key)
  if (b.length < DEDUP_HEADER_BYTES + DEDUP_TRAILER_BYTES) throw new FormatError('TRUNCATED', `${what}: ${b.length} bytes`)
  const t = decodeDedupTrailer(b.subarray(b.length - DEDUP_TRAILER_BYTES), b.length, what)
  const dir = decodeDedupDirectory(b.subarray(0, DEDUP_HEADER_BYTES), b.subarray(t.D, t.D + t.dirLen), t, Number(m[1]), Number(m[2]), what, dedupOpenerOf(repo, Number(m[1]), Number(m[2]), what))
  const out: DedupEntry[] = []
  dir.fences.forEach((f, p) => {
    const entries = decodeDedupPage(openPage(dir, p, b.subarray(f.offset, f.offset + f.storedLen)), `${what} page ${p}`)
    if (!entries.length || !entries[0]!.digest.subarray(0, 8).equals(f.prefix)) throw new FormatError('BAD_VALUE', `${what} page ${p}: its fence does not match its first entry`)
    if (out.length && Buffer.compare(out[out.length - 1]!.digest, entries[0]!.digest) >= 0) throw new FormatError('BAD_VALUE', `${what} page ${p}: entries not sorted by digest`)
    for (const e of entries) {
      if (!mayHaveDigest(dir, e.digest) || !mayHaveSize(dir, e.sizeBytes)) throw new FormatError('BAD_VALUE', `${what} page ${p}: an entry its filters do not hold`)
      out.push(e)
    }
  })
  if (out.length !== dir.entries) throw new FormatError('BAD_VALUE', `${what}: ${out.length} entries, the header says ${dir.entries}`)
  return out
}

interface LoadedObject {
  key: string
  dir: DedupDirectory
  /** This run's own object (no manifest yet). */
  own: boolean
}

export interface DedupStats {
  hits: number
  /** Logical bytes of the files that were hits. */
  bytes: number
  /** Objects and pages read. */
  objects: number
  pages: number
  /** Entries this run indexed. */
  indexed: number
}

/** A backup's dedup: lookups in committed generations' objects and this run's, and this run's writer. */
export class Dedup {
  readonly stats: DedupStats = { hits: 0, bytes: 0, objects: 0, pages: 0, indexed: 0 }
  readonly minBytes: number
  private loaded: LoadedObject[] | null = null
  private readonly revs = new Map<number, number | null>()
  private committed: Set<number> | null = null
  /** Cached pages (LRU), each with the buffer it was read into (reused for the next page read once it is the least recent). */
  private readonly pages = new Map<string, { page: Buffer; raw: Buffer }>()
  /** This run's entries not yet written (encoded as they come: an object per entry cost a full backup ~80 MB of heap). */
  private readonly batch = new DedupBatch()
  private seq = 0
  readonly problems: string[] = []

  /** The key of this repository's content digests (kContent when encrypted, §2.22). */
  readonly contentKey: Buffer

  constructor(private readonly repo: Repo2, private readonly run: number) {
    // `no-dedup` (§2.17): no file is a candidate, so no digest is taken, nothing is looked up or indexed
    this.minBytes = repo.dedupContent ? Math.max(1, repo.config.defaults.dedupMinBytes) : Infinity
    this.contentKey = contentKeyOf(repo)
  }

  /** Whether a file of this size is a candidate. */
  wants(size: number): boolean {
    return size >= this.minBytes
  }

  private problem(m: string): void {
    if (this.problems.length < 10) this.problems.push(m)
  }

  private load(): LoadedObject[] {
    if (this.loaded) return this.loaded
    this.loaded = []
    this.committed = new Set(this.repo.generationIds())
    let keys: string[]
    try {
      keys = this.repo.sync.listSync(keys2.index)
    } catch (err) {
      if (!(err instanceof StoreError)) throw err
      this.problem(err.message)
      return this.loaded
    }
    for (const k of keys) {
      const m = DEDUP_RE.exec(k.slice(k.lastIndexOf('/') + 1))
      if (!m) continue
      const run = Number(m[1])
      // objects of a run that is not committed are ignored; newer runs' maps could not be referenced (R1)
      if (run >= this.run || !this.committed.has(run)) continue
      const o = this.open(k, run, Number(m[2]), false)
      if (o) this.loaded.push(o)
    }
    // newest first: a hit in a recent generation keeps reads local to recent streams
    this.loaded.sort((a, b) => b.dir.run - a.dir.run || b.dir.seq - a.dir.seq)
    return this.loaded
  }

  private open(key: string, run: number, seq: number, own: boolean): LoadedObject | null {
    try {
      const size = this.repo.sync.statSync(key).sizeBytes
      if (size < DEDUP_HEADER_BYTES + DEDUP_TRAILER_BYTES) throw new FormatError('TRUNCATED', `${this.repo.store.where(key)}: ${size} bytes`)
      const what = this.repo.store.where(key)
      const head = this.repo.sync.getSync(key, { offset: 0, length: DEDUP_HEADER_BYTES })
      const t = decodeDedupTrailer(this.repo.sync.getSync(key, { offset: size - DEDUP_TRAILER_BYTES, length: DEDUP_TRAILER_BYTES }), size, what)
      const dirBytes = this.repo.sync.getSync(key, { offset: t.D, length: t.dirLen })
      this.stats.objects++
      return { key, dir: decodeDedupDirectory(head, dirBytes, t, run, seq, what, dedupOpenerOf(this.repo, run, seq, what)), own }
    } catch (err) {
      if (!(err instanceof FormatError) && !(err instanceof StoreError)) throw err
      this.problem(err.message)
      return null
    }
  }

  /** The committed revision of generation g, or null if it is not committed (or its manifest does not read). */
  private revOf(g: number): number | null {
    if (!this.committed!.has(g)) return null
    let r = this.revs.get(g)
    if (r === undefined) {
      try {
        r = this.repo.manifest(g).rev
      } catch (err) {
        if (!(err instanceof BfsError)) throw err
        r = null
      }
      this.revs.set(g, r)
    }
    return r
  }

  /** Raw page p of an object (a few cached), or null when it does not read. */
  private page(o: LoadedObject, p: number): Buffer | null {
    const ck = `${o.key}:${p}`
    const cached = this.pages.get(ck)
    if (cached) {
      this.pages.delete(ck)
      this.pages.set(ck, cached)
      return cached.page
    }
    const f = o.dir.fences[p]!
    // A full backup of new files reads pages at random (the digest filters' false positives:
    // ~1 % of lookups, 10,719 pages for 1M files), and a fresh buffer for each was ~700 MB of
    // garbage outside V8's heap: the least recent page's buffer is read into instead (what a
    // page decodes to is copied out of it: findInPage).
    let raw: Buffer | undefined
    if (this.pages.size >= PAGE_CACHE) {
      const [k, old] = this.pages.entries().next().value!
      this.pages.delete(k)
      if (old.raw.length >= f.storedLen) raw = old.raw
    }
    raw ??= Buffer.allocUnsafe(Math.max(f.storedLen, PAGE_BYTES))
    let page: Buffer
    try {
      const r = this.repo.sync.openSync(o.key)
      try {
        page = openPage(o.dir, p, r.readSync({ offset: f.offset, length: f.storedLen }, raw))
      } finally {
        r.closeSync()
      }
    } catch (err) {
      if (!(err instanceof StoreError) && !(err instanceof FormatError)) throw err
      this.problem(err.message)
      return null
    }
    this.stats.pages++
    this.pages.set(ck, { page, raw })
    return page
  }

  /**
   * Whether some stored file may have this size (the size filters, and this run's entries not
   * yet written): when not, no lookup can hit, and the digest is taken while the file is
   * stored instead of in a read pass of its own.
   */
  maySize(size: number): boolean {
    if (this.batch.sizes.has(size)) return true
    for (const o of this.load()) if (mayHaveSize(o.dir, size)) return true
    return false
  }

  /** The map of an already stored file with this digest and size, or null (the caller checks a map reference reads, and calls used()). */
  lookup(digest: Buffer, size: number): StoredMap | null {
    const mine = this.batch.find(digest)
    if (mine) return mine.sizeBytes === size ? this.hit(mine) : null
    let probe: DedupProbe | null = null
    for (const o of this.load()) {
      if (!(probe ??= new DedupProbe(digest, size)).mayHave(o.dir)) continue
      for (const p of pagesOf(o.dir, digest)) {
        const page = this.page(o, p)
        if (!page) continue
        let e: DedupEntry | null
        try {
          e = findInPage(page, digest, `${this.repo.store.where(o.key)} page ${p}`)
        } catch (err) {
          if (!(err instanceof FormatError)) throw err
          this.problem(err.message)
          continue
        }
        if (!e) continue
        const live = o.own ? e.gen === this.run : e.gen < this.run && this.revOf(e.gen) === e.rev
        if (e.sizeBytes === size && live) return this.hit(e)
        break
      }
    }
    return null
  }

  private hit(e: DedupEntry): StoredMap {
    return { map: e.map, dataBlocks: e.dataBlocks }
  }

  /** Counts a hit the caller used. */
  used(size: number): void {
    this.stats.hits++
    this.stats.bytes += size
  }

  /** Indexes a file this run stored (its map is in this run's tree). */
  add(digest: Buffer, size: number, m: StoredMap): void {
    if (!m.map || m.dataBlocks < 1) return // all zeros: nothing stored, nothing to share
    if (!this.batch.add({ digest, sizeBytes: size, gen: this.run, rev: 1, dataBlocks: m.dataBlocks, map: m.map })) return
    if (this.batch.count >= DEDUP_OBJECT_ENTRIES) this.writeBatch()
  }

  private writeBatch(): void {
    if (!this.batch.count) return
    const key = keys2.dedup(this.run, this.seq)
    this.repo.sync.putSync(key, this.batch.encodeParts(this.run, this.seq, dedupSealer(this.repo, this.run, this.seq)), { syncListing: false })
    this.stats.indexed += this.batch.count
    this.batch.clear()
    const o = this.open(key, this.run, this.seq, true)
    this.seq++
    if (o) {
      this.load()
      this.loaded!.unshift(o)
    }
  }

  /** The run's last object; the index directory made durable (before the manifest, §2.20.3 step 6). */
  finish(): void {
    this.writeBatch()
    if (this.seq > 0) {
      this.repo.sync.flushSync(keys2.index)
      this.repo.sync.flushSync('') // index/ may have been made by this run
    }
  }
}
