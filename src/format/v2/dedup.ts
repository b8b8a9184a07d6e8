import { createHash } from 'node:crypto'
import { ByteWriter } from '../bytes.js'
import { FormatError } from '../errors.js'
import type { FileMap } from './dir.js'
import { ID_BYTES, StrictReader, readExtentList, readPieceRef, writeExtentList, writePieceRef } from './common.js'

/**
 * The dedup index object `index/dedup-<run>-<seq>` (BFSDDUP, native-notes/format.md §2.17):
 * entries sorted by content digest in pages of ≤ 64 KiB, then a directory (a Bloom filter of
 * the digests, one of the sizes, and a fence per page), then a 32-byte trailer. A reader
 * fetches the trailer and the directory once, and a page only when both filters say maybe.
 * Unencrypted only (issue 18 adds the AEAD form).
 */

export const DEDUP_MAGIC = 'BFSDDUP\0'
export const DEDUP_END_MAGIC = 'BFSDEND\0'
export const DEDUP_VERSION = 2
export const DEDUP_HEADER_BYTES = 64
export const DEDUP_TRAILER_BYTES = 32
/** A page's raw bytes at most (one entry larger than this is a page of its own). */
export const DEDUP_PAGE_BYTES = 64 << 10
const FENCE_BYTES = 16
/** Header flag bit0: the pages and the directory are sealed (§2.17, §2.22). */
export const DEDUP_FLAG_ENCRYPTED = 1

/** One stored file: its content digest, size, the generation (and revision) whose tree holds the map, and the map. */
export interface DedupEntry {
  digest: Buffer
  sizeBytes: number
  gen: number
  rev: number
  dataBlocks: number
  map: FileMap
}

/**
 * How an encrypted repository seals an object's messages (§2.17, §2.22; the keys and the AEAD
 * are the caller's: this layer never imports crypto): page p and the directory, each one
 * AEAD message ‖ tag, under the key of `salt` (header bytes 32–63).
 */
export interface DedupSealer {
  salt: Buffer
  page(p: number, raw: Buffer): Buffer
  directory(raw: Buffer): Buffer
}

/** The opening side of DedupSealer, for the salt an object's header holds; each throws FormatError when a message does not authenticate. */
export interface DedupOpener {
  page(p: number, stored: Buffer): Buffer
  directory(stored: Buffer): Buffer
}

/** What a reader keeps of an object: its header fields, the two filters and the fences. */
export interface DedupDirectory {
  run: number
  seq: number
  entries: number
  /** Split-block Bloom filter of the digests: 32-byte blocks of 8 u32 words. */
  digestBloom: Uint32Array
  /** Bloom filter of the sizes (bits). */
  sizeBloom: Uint8Array
  /** Per page: the first 8 digest bytes of its first entry, offset, storedLen. */
  fences: Array<{ prefix: Buffer; offset: number; storedLen: number }>
  /** An encrypted object's: its pages are opened with it (`openPage`). */
  opener?: DedupOpener
}

/** The raw bytes of page p of an object read as `stored` (opened when the object is encrypted). */
export function openPage(dir: DedupDirectory, p: number, stored: Buffer): Buffer {
  return dir.opener ? dir.opener.page(p, stored) : stored
}

function fmix32(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/**
 * Bits of an object's digest filter per entry (a writer's choice: readers take the block count
 * the directory gives). 20: ~0.05 % false positives (10 gave ~1.5 %). A backup looks each new
 * file up in every index object of its own run written so far and of earlier runs, so a false
 * positive rate p costs p × objects page scans per file: with 10 bits, a full backup of
 * 1,000,000 small files (15 objects by its end) scanned ~200,000 pages of ~1,400 entries and
 * took 43 s instead of 13.
 */
export const DIGEST_BLOOM_BITS = 20

/** The size's two hashes (the size filter probes h1 + j × h2, j = 0, 1, 2). */
function sizeHashes(size: number): [number, number] {
  const lo = size >>> 0
  const hi = Math.floor(size / 0x1_0000_0000) >>> 0
  const h1 = fmix32(lo ^ fmix32(hi ^ 0x5bd1e995))
  const h2 = (fmix32(h1 ^ 0x9e3779b9) | 1) >>> 0
  return [h1, h2]
}

/** The three bit positions of a size in a size filter of `bits` bits. */
function sizeProbes(size: number, bits: number): [number, number, number] {
  const [h1, h2] = sizeHashes(size)
  return [h1 % bits, (h1 + h2) % bits, (h1 + 2 * h2) % bits]
}

/** The digest filter's words w0…w6: digest bytes 0–27 as u32 LE (block w0 mod B, bit w_i >>> 27 of word i). */
function digestWords(d: Buffer): Uint32Array {
  const w = new Uint32Array(7)
  for (let i = 0; i < 7; i++) w[i] = d.readUInt32LE(i * 4)
  return w
}

function hasDigestWords(dir: DedupDirectory, w: Uint32Array): boolean {
  const blocks = dir.digestBloom.length / 8
  if (!blocks) return false
  const b = (w[0]! % blocks) * 8
  const bloom = dir.digestBloom
  for (let i = 0; i < 7; i++) if (!(bloom[b + i]! & (1 << (w[i]! >>> 27)))) return false
  return true
}

function hasSizeHashes(dir: DedupDirectory, h1: number, h2: number): boolean {
  const bits = dir.sizeBloom.length * 8
  if (!bits) return false
  const sb = dir.sizeBloom
  for (let j = 0; j < 3; j++) {
    const p = (h1 + j * h2) % bits
    if (!(sb[p >>> 3]! & (1 << (p & 7)))) return false
  }
  return true
}

/** Whether a digest may be in the object (false: certainly not). */
export function mayHaveDigest(dir: DedupDirectory, d: Buffer): boolean {
  return hasDigestWords(dir, digestWords(d))
}

/** Whether a size may be in the object. */
export function mayHaveSize(dir: DedupDirectory, size: number): boolean {
  const [h1, h2] = sizeHashes(size)
  return hasSizeHashes(dir, h1, h2)
}

/** A lookup's filter probes, computed once for all the objects it is checked against. */
export class DedupProbe {
  private readonly w: Uint32Array
  private readonly h1: number
  private readonly h2: number
  constructor(digest: Buffer, size: number) {
    this.w = digestWords(digest)
    ;[this.h1, this.h2] = sizeHashes(size)
  }

  /** mayHaveSize && mayHaveDigest. */
  mayHave(dir: DedupDirectory): boolean {
    return hasSizeHashes(dir, this.h1, this.h2) && hasDigestWords(dir, this.w)
  }
}

function encodeEntry(w: ByteWriter, e: DedupEntry): void {
  w.bytes(e.digest).varint(e.sizeBytes).varint(e.gen).varint(e.rev).varint(e.dataBlocks)
  if (e.map.kind === 'inline') {
    w.u8(1)
    writeExtentList(w, e.map.extents)
  } else {
    w.u8(2)
    writePieceRef(w, e.map.root)
    w.varint(e.map.extentCount)
  }
}

function decodeEntry(r: StrictReader): DedupEntry {
  const digest = Buffer.from(r.bytes(ID_BYTES))
  const sizeBytes = r.varint()
  const gen = r.varint()
  const rev = r.varint()
  const dataBlocks = r.varint()
  const kind = r.u8()
  let map: FileMap
  if (kind === 1) map = { kind: 'inline', extents: readExtentList(r) }
  else if (kind === 2) map = { kind: 'ref', root: readPieceRef(r), extentCount: r.varint() }
  else throw new FormatError('BAD_VALUE', `${r.what}: entry map kind ${kind}`)
  if (gen < 1 || rev < 1 || dataBlocks < 1) throw new FormatError('BAD_VALUE', `${r.what}: entry with gen ${gen}, rev ${rev}, ${dataBlocks} data blocks`)
  return { digest, sizeBytes, gen, rev, dataBlocks, map }
}

/**
 * The entries of one object as they come, encoded at once (~45 bytes each, no object per
 * entry: a backup holds up to 65,536 of them), findable by digest before they are written.
 */
export class DedupBatch {
  private readonly w = new ByteWriter(1 << 16)
  private readonly ends: number[] = []
  readonly sizes = new Set<number>()
  /** Digest bytes 0–3 (u32) → the last entry with them; `chain[i]`: the previous one, or -1. */
  private readonly heads = new Map<number, number>()
  private readonly chain: number[] = []

  get count(): number {
    return this.ends.length
  }

  private startOf(i: number): number {
    return i ? this.ends[i - 1]! : 0
  }

  private index(digest: Buffer): number {
    const bytes = this.w.raw // (no view made per call: a backup of 1M files asks ~2M times)
    for (let i = this.heads.get(digest.readUInt32LE(0)) ?? -1; i >= 0; i = this.chain[i]!) {
      const at = this.startOf(i)
      if (bytes.compare(digest, 0, ID_BYTES, at, at + ID_BYTES) === 0) return i
    }
    return -1
  }

  /** Adds an entry; false (nothing added) when its digest is there already. */
  add(e: DedupEntry): boolean {
    if (e.digest.length !== ID_BYTES) throw new RangeError('dedup entry: digest of the wrong length')
    if (this.index(e.digest) >= 0) return false
    encodeEntry(this.w, e)
    const i = this.ends.length
    this.ends.push(this.w.length)
    const k = e.digest.readUInt32LE(0)
    this.chain.push(this.heads.get(k) ?? -1)
    this.heads.set(k, i)
    this.sizes.add(e.sizeBytes)
    return true
  }

  /** The entry with this digest, or null. */
  find(digest: Buffer): DedupEntry | null {
    const i = this.index(digest)
    if (i < 0) return null
    return decodeEntry(new StrictReader(this.w.finish(), 'dedup batch', this.startOf(i), this.ends[i]!))
  }

  /**
   * Empties the batch for the next object, keeping its buffer: a backup writes an object every
   * 65,536 files, and growing a fresh buffer to ~4 MiB each time (64 KiB, doubled, each step
   * copied and freed) left freed holes of every size in the C heap.
   */
  clear(): void {
    this.w.reset()
    this.ends.length = 0
    this.sizes.clear()
    this.heads.clear()
    this.chain.length = 0
  }

  /** The object (run, seq) holding these entries, sorted by digest; sealed with `sealer` (an encrypted repository). */
  encode(run: number, seq: number, sealer?: DedupSealer): Buffer {
    return Buffer.concat(this.encodeParts(run, seq, sealer))
  }

  /** encode() as the object's parts in order, not joined (written as they are: no copy of the whole object). */
  encodeParts(run: number, seq: number, sealer?: DedupSealer): Buffer[] {
    const bytes = this.w.finish()
    const n = this.ends.length
    // latin1 strings compare as the bytes do, and much faster than Buffer.compare in a sort
    const keys = new Array<string>(n)
    for (let i = 0; i < n; i++) keys[i] = bytes.toString('latin1', this.startOf(i), this.startOf(i) + ID_BYTES)
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => (keys[a]! < keys[b]! ? -1 : 1))
    const body = Buffer.allocUnsafe(bytes.length)
    const ends: number[] = []
    let len = 0
    for (const i of order) {
      len += bytes.copy(body, len, this.startOf(i), this.ends[i]!)
      ends.push(len)
    }
    return assemble(run, seq, body, ends, this.sizes, sealer)
  }
}

/** Encodes one object of run `run`; `entries` in any order (sorted here; of equal digests the first is kept). */
export function encodeDedupObject(run: number, seq: number, entries: DedupEntry[], sealer?: DedupSealer): Buffer {
  const b = new DedupBatch()
  for (const e of entries) b.add(e)
  return b.encode(run, seq, sealer)
}

/** An object's parts from its entries' bytes in digest order (`ends`: where each ends in `body`; each starts with its digest). */
function assemble(run: number, seq: number, body: Buffer, ends: number[], sizes: Set<number>, sealer?: DedupSealer): Buffer[] {
  const digestAt = (i: number): number => (i ? ends[i - 1]! : 0)
  const head = Buffer.alloc(DEDUP_HEADER_BYTES)
  const fences: DedupDirectory['fences'] = []
  let start = 0 // byte where the current page starts
  let firstEntry = 0
  for (let i = 0; i < ends.length; i++) {
    const last = i === ends.length - 1
    if (last || ends[i + 1]! - start > DEDUP_PAGE_BYTES) {
      fences.push({ prefix: Buffer.from(body.subarray(digestAt(firstEntry), digestAt(firstEntry) + 8)), offset: DEDUP_HEADER_BYTES + start, storedLen: ends[i]! - start })
      start = ends[i]!
      firstEntry = i + 1
    }
  }
  const parts: Buffer[] = [head]
  if (!sealer) parts.push(body)
  else {
    // each page its own message (§2.17: nonce (6, p)): the fences name the sealed pages
    let off = DEDUP_HEADER_BYTES
    fences.forEach((f, p) => {
      const sealed = sealer.page(p, body.subarray(f.offset - DEDUP_HEADER_BYTES, f.offset - DEDUP_HEADER_BYTES + f.storedLen))
      parts.push(sealed)
      f.offset = off
      f.storedLen = sealed.length
      off += sealed.length
    })
  }
  const at = parts.reduce((n, b) => n + b.length, 0)
  // directory: u32 digest Bloom blocks, the blocks; u32 size Bloom bytes, the bytes; fences
  const n = ends.length
  const blocks = n ? Math.max(1, Math.ceil((n * DIGEST_BLOOM_BITS) / 256)) : 0
  const bloom = new Uint32Array(blocks * 8)
  for (let e = 0; e < n; e++) {
    const d = digestAt(e)
    const b = (body.readUInt32LE(d) % blocks) * 8
    for (let i = 0; i < 7; i++) bloom[b + i]! |= 1 << (body.readUInt32LE(d + i * 4) >>> 27)
  }
  const sizeBytes = sizes.size ? Math.max(8, sizes.size) : 0
  const sizeBloom = new Uint8Array(sizeBytes)
  for (const s of sizes) for (const p of sizeProbes(s, sizeBytes * 8)) sizeBloom[p >>> 3]! |= 1 << (p & 7)
  const d = new ByteWriter(16 + bloom.byteLength + sizeBytes + fences.length * FENCE_BYTES)
  d.u32(blocks)
  for (const w of bloom) d.u32(w)
  d.u32(sizeBytes).bytes(sizeBloom)
  for (const f of fences) d.bytes(f.prefix).u32(f.offset).u32(f.storedLen)
  const dir = sealer ? sealer.directory(d.finish()) : d.finish()
  const D = at
  parts.push(dir)
  const trailer = new ByteWriter(DEDUP_TRAILER_BYTES)
  trailer.u64(D).u32(dir.length).u32(n).bytes(createHash('sha256').update(dir).digest().subarray(0, 8)).bytes(Buffer.from(DEDUP_END_MAGIC, 'latin1'))
  parts.push(trailer.finish())
  head.write(DEDUP_MAGIC, 0, 'latin1')
  head.writeUInt16LE(DEDUP_VERSION, 8)
  head.writeUInt16LE(sealer ? DEDUP_FLAG_ENCRYPTED : 0, 10)
  if (sealer) sealer.salt.copy(head, 32)
  head.writeUInt32LE(run, 12)
  head.writeUInt32LE(seq, 16)
  head.writeUInt32LE(n, 20)
  head.writeUInt32LE(fences.length, 24)
  return parts
}

const bad = (what: string, m: string): never => {
  throw new FormatError('BAD_VALUE', `${what}: ${m}`)
}

/** Decodes the header, trailer and directory of an object (the pages are read on demand). `head` = its first 64 bytes, `tail` = its last 32, `dirBytes` = the directory. */
export function decodeDedupTrailer(tail: Buffer, size: number, what: string): { D: number; dirLen: number; entries: number; check: Buffer } {
  if (tail.length !== DEDUP_TRAILER_BYTES || tail.toString('latin1', 24, 32) !== DEDUP_END_MAGIC) bad(what, 'no BFSDDUP trailer')
  const D = Number(tail.readBigUInt64LE(0))
  const dirLen = tail.readUInt32LE(8)
  if (D < DEDUP_HEADER_BYTES || D + dirLen + DEDUP_TRAILER_BYTES !== size) bad(what, `directory at ${D} (${dirLen} bytes) does not end at the trailer`)
  return { D, dirLen, entries: tail.readUInt32LE(12), check: tail.subarray(16, 24) }
}

/**
 * `openerOf` (an encrypted repository): the opener for the salt of an object's header. A
 * plain object there, or a sealed one where there is none, is refused (§2.22).
 */
export function decodeDedupDirectory(head: Buffer, dirBytes: Buffer, trailer: ReturnType<typeof decodeDedupTrailer>, run: number, seq: number, what: string, openerOf?: (salt: Buffer) => DedupOpener): DedupDirectory {
  if (head.length < DEDUP_HEADER_BYTES || head.toString('latin1', 0, 8) !== DEDUP_MAGIC) bad(what, 'not a BFSDDUP object')
  if (head.readUInt16LE(8) !== DEDUP_VERSION) bad(what, `version ${head.readUInt16LE(8)}`)
  const flags = head.readUInt16LE(10)
  if (flags & ~DEDUP_FLAG_ENCRYPTED) bad(what, `flags ${flags}`)
  const salt = head.subarray(32, 64)
  const sealed = flags === DEDUP_FLAG_ENCRYPTED
  if (sealed && !openerOf) bad(what, 'encrypted, in a repository that is not (or not unlocked)')
  if (!sealed && openerOf) bad(what, 'not encrypted, in an encrypted repository (refused: a plaintext object here is tampering or a downgrade)')
  if (head.readUInt32LE(28) !== 0 || (!sealed && !salt.equals(Buffer.alloc(32)))) bad(what, 'reserved bytes are not zero')
  if (sealed && salt.equals(Buffer.alloc(32))) bad(what, 'an encrypted object with an all-zero salt')
  if (head.readUInt32LE(12) !== run || head.readUInt32LE(16) !== seq) bad(what, `header says run ${head.readUInt32LE(12)} seq ${head.readUInt32LE(16)}`)
  const entries = head.readUInt32LE(20)
  const pages = head.readUInt32LE(24)
  if (entries !== trailer.entries) bad(what, `header says ${entries} entries, trailer ${trailer.entries}`)
  if (!createHash('sha256').update(dirBytes).digest().subarray(0, 8).equals(trailer.check)) bad(what, 'directory check does not match')
  const opener = sealed ? openerOf!(Buffer.from(salt)) : undefined
  if (opener) dirBytes = opener.directory(dirBytes)
  const r = new StrictReader(dirBytes, what)
  const blocks = r.u32()
  if (blocks * 32 > r.remaining) bad(what, `digest filter of ${blocks} blocks`)
  const digestBloom = new Uint32Array(blocks * 8)
  for (let i = 0; i < digestBloom.length; i++) digestBloom[i] = r.u32()
  const sizeBytes = r.u32()
  const sizeBloom = new Uint8Array(r.bytes(sizeBytes))
  if (r.remaining !== pages * FENCE_BYTES) bad(what, `${r.remaining} bytes of fences for ${pages} pages`)
  const fences: DedupDirectory['fences'] = []
  let next = DEDUP_HEADER_BYTES
  for (let p = 0; p < pages; p++) {
    const f = { prefix: Buffer.from(r.bytes(8)), offset: r.u32(), storedLen: r.u32() }
    if (f.offset !== next || f.storedLen < 1) bad(what, `page ${p} at ${f.offset}`)
    next = f.offset + f.storedLen
    fences.push(f)
  }
  if (next !== trailer.D) bad(what, `pages end at ${next}, the directory starts at ${trailer.D}`)
  if ((entries === 0) !== (pages === 0)) bad(what, `${entries} entries in ${pages} pages`)
  return { run, seq, entries, digestBloom, sizeBloom, fences, ...(opener ? { opener } : {}) }
}

/** The entries of one page (sorted by digest: checked). */
export function decodeDedupPage(page: Buffer, what: string): DedupEntry[] {
  const r = new StrictReader(page, what)
  const out: DedupEntry[] = []
  while (r.remaining > 0) {
    const e = decodeEntry(r)
    if (out.length && Buffer.compare(out[out.length - 1]!.digest, e.digest) >= 0) bad(what, 'entries not sorted by digest')
    out.push(e)
  }
  return out
}

/** Skips one encoded entry (its digest already passed). */
function skipEntryRest(r: StrictReader): void {
  r.varint()
  r.varint()
  r.varint()
  r.varint()
  const kind = r.u8()
  if (kind === 1) {
    const n = r.count(3, 'extent')
    for (let i = 0; i < n; i++) {
      r.varint()
      r.varint()
      if (r.varint() !== 0) r.svarint()
    }
  } else if (kind === 2) {
    r.varint()
    r.varint()
    r.varint()
    r.varint()
    r.bytes(ID_BYTES)
    r.varint()
  } else throw new FormatError('BAD_VALUE', `${r.what}: entry map kind ${kind}`)
}

/**
 * The entry of a raw page with this digest, or null: the page is scanned in place (entries
 * are sorted: the scan stops past the digest) and only that entry is decoded, so a lookup
 * allocates next to nothing (a page decoded whole is ~1,400 objects).
 */
export function findInPage(page: Buffer, digest: Buffer, what: string): DedupEntry | null {
  const r = new StrictReader(page, what)
  while (r.remaining > 0) {
    const at = r.pos
    if (r.remaining < ID_BYTES) throw new FormatError('TRUNCATED', `${what}: entry at ${at}`)
    const c = page.compare(digest, 0, ID_BYTES, at, at + ID_BYTES)
    if (c === 0) return decodeEntry(r)
    if (c > 0) return null // this entry's digest is above the one looked for
    r.pos = at + ID_BYTES
    skipEntryRest(r)
  }
  return null
}

/** Indexes of the pages that may hold `digest`: the last whose fence prefix ≤ the digest's, and earlier ones while their prefix is the same. */
export function pagesOf(dir: DedupDirectory, digest: Buffer): number[] {
  const key = digest.subarray(0, 8)
  let lo = 0
  let hi = dir.fences.length - 1
  let found = -1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    if (Buffer.compare(dir.fences[mid]!.prefix, key) <= 0) {
      found = mid
      lo = mid + 1
    } else hi = mid - 1
  }
  const out: number[] = []
  for (let p = found; p >= 0; p--) {
    out.push(p)
    if (!dir.fences[p]!.prefix.equals(key)) break
  }
  return out
}
