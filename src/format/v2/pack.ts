import { createHash } from 'node:crypto'
import { FormatError } from '../errors.js'
import {
  type PieceKind,
  type PieceRef,
  ID_BYTES,
  MAX_OBJECT_NUMBER,
  MAX_PIECE_RAW_BYTES,
  MAX_PIECE_STORED_BYTES,
  PACK_HEADER_BYTES,
  PIECE_KIND_NAMES,
} from './common.js'

/**
 * Pack files (BFSPACK): pieces back to back after a 64-byte header, then a table of them and a
 * trailer. Readers fetch pieces by PieceRef and never need the table; verify and recovery use
 * it. native-notes/format.md §2.11.
 */
export const PACK_MAGIC = 'BFSPACK\0'
export const PACK_END_MAGIC = 'BFSPEND\0'
export const PACK_VERSION = 2
export const PACK_FLAG_ENCRYPTED = 1
export const PACK_TRAILER_BYTES = 32
export const PACK_ROW_BYTES = 52

export interface PackHeader {
  run: number
  pack: number
  flags: number
  /** 32 bytes: the salt when encrypted, else zeros. */
  salt: Buffer
}

export interface PackRow {
  offset: number
  storedLen: number
  rawLen: number
  kind: PieceKind
  id: Buffer
}

export interface PackTrailer {
  /** Offset of the table = end of the last piece. */
  tableOffset: number
  pieces: number
  tableBytes: number
  /** First 8 bytes of SHA-256 of the stored table (zeros when encrypted). */
  tableCheck: Buffer
}

export function encodePackHeader(h: PackHeader): Buffer {
  if (!(h.run >= 1 && h.run <= MAX_OBJECT_NUMBER && h.pack >= 0 && h.pack <= MAX_OBJECT_NUMBER)) throw new RangeError(`pack header: run ${h.run}, pack ${h.pack}`)
  if (h.flags & ~PACK_FLAG_ENCRYPTED) throw new RangeError(`pack header: flags 0x${h.flags.toString(16)}`)
  if (h.salt.length !== 32 || (h.flags & PACK_FLAG_ENCRYPTED) !== 0 !== h.salt.some((b) => b !== 0)) throw new RangeError('pack header: the salt is 32 bytes, zeros exactly when unencrypted')
  const b = Buffer.alloc(PACK_HEADER_BYTES)
  b.write(PACK_MAGIC, 0, 'latin1')
  b.writeUInt16LE(PACK_VERSION, 8)
  b.writeUInt16LE(h.flags, 10)
  b.writeUInt32LE(h.run, 12)
  b.writeUInt32LE(h.pack, 16)
  h.salt.copy(b, 32)
  return b
}

/** Decodes and checks a pack header; `expected`: the run and pack its key names (a reader checks them). */
export function decodePackHeader(b: Buffer, what: string, expected?: { run: number; pack: number }): PackHeader {
  if (b.length < PACK_HEADER_BYTES) throw new FormatError('TRUNCATED', `${what}: ${b.length} bytes, too short for a pack header`)
  if (b.toString('latin1', 0, 8) !== PACK_MAGIC) throw new FormatError('BAD_MAGIC', `${what}: not a bfs pack file (bad magic)`)
  const version = b.readUInt16LE(8)
  if (version !== PACK_VERSION) throw new FormatError('BAD_VERSION', `${what}: pack version ${version} is not supported (this bfs reads ${PACK_VERSION})`)
  const flags = b.readUInt16LE(10)
  if (flags & ~PACK_FLAG_ENCRYPTED) throw new FormatError('BAD_VALUE', `${what}: unknown pack flags 0x${flags.toString(16)}`)
  for (let i = 20; i < 32; i++) if (b[i] !== 0) throw new FormatError('BAD_VALUE', `${what}: reserved pack header bytes are not 0 (corrupt, or a newer format)`)
  const salt = Buffer.from(b.subarray(32, 64))
  if ((flags & PACK_FLAG_ENCRYPTED) !== 0 !== salt.some((x) => x !== 0)) throw new FormatError('BAD_VALUE', `${what}: ${flags & PACK_FLAG_ENCRYPTED ? 'an encrypted pack has no salt' : 'an unencrypted pack has a salt'}`)
  const h = { run: b.readUInt32LE(12), pack: b.readUInt32LE(16), flags, salt }
  if (h.run < 1 || h.run > MAX_OBJECT_NUMBER || h.pack > MAX_OBJECT_NUMBER || (expected && (h.run !== expected.run || h.pack !== expected.pack))) {
    throw new FormatError('BAD_VALUE', `${what}: pack header names run ${h.run}, pack ${h.pack}${expected ? ` (its key says ${expected.run}, ${expected.pack})` : ''}`)
  }
  return h
}

function rowProblem(row: PackRow, expectOffset: number): string | null {
  if (row.offset !== expectOffset) return `starts at ${row.offset}, the previous piece ends at ${expectOffset}`
  if (row.storedLen < 1 || row.storedLen > MAX_PIECE_STORED_BYTES) return `has stored length ${row.storedLen}`
  if (row.rawLen < 2 || row.rawLen > MAX_PIECE_RAW_BYTES) return `has raw length ${row.rawLen}`
  if (!PIECE_KIND_NAMES[row.kind]) return `has unknown kind ${row.kind}`
  if (row.id.length !== ID_BYTES) return 'has a bad id'
  return null
}

/** The pack table (plaintext) for `rows` in offset order, row 0 at 64. */
export function encodePackTable(rows: readonly PackRow[]): Buffer {
  const t = Buffer.alloc(rows.length * PACK_ROW_BYTES)
  let at = PACK_HEADER_BYTES
  rows.forEach((row, i) => {
    const p = rowProblem(row, at)
    if (p) throw new RangeError(`pack table row ${i} ${p}`)
    const o = i * PACK_ROW_BYTES
    t.writeBigUInt64LE(BigInt(row.offset), o)
    t.writeUInt32LE(row.storedLen, o + 8)
    t.writeUInt32LE(row.rawLen, o + 12)
    t.writeUInt8(row.kind, o + 16)
    row.id.copy(t, o + 20)
    at += row.storedLen
  })
  return t
}

/** The trailer for `storedTable` at `tableOffset`; its checksum is computed unless the pack is encrypted (zeros then). */
export function encodePackTrailer(tableOffset: number, pieces: number, storedTable: Buffer, encrypted = false): Buffer {
  if (pieces < 1) throw new RangeError('a pack holds at least one piece')
  const t = Buffer.alloc(PACK_TRAILER_BYTES)
  t.writeBigUInt64LE(BigInt(tableOffset), 0)
  t.writeUInt32LE(pieces, 8)
  t.writeUInt32LE(storedTable.length, 12)
  if (!encrypted) createHash('sha256').update(storedTable).digest().copy(t, 16, 0, 8)
  t.write(PACK_END_MAGIC, 24, 'latin1')
  return t
}

export function decodePackTrailer(t: Buffer, fileBytes: number, encrypted: boolean, what: string): PackTrailer {
  if (t.length !== PACK_TRAILER_BYTES) throw new FormatError('TRUNCATED', `${what}: too short for a pack trailer`)
  if (t.toString('latin1', 24, 32) !== PACK_END_MAGIC) throw new FormatError('TRUNCATED', `${what}: pack trailer missing (file truncated or corrupt)`)
  const tableOffset = Number(t.readBigUInt64LE(0))
  const pieces = t.readUInt32LE(8)
  const tableBytes = t.readUInt32LE(12)
  const want = pieces * PACK_ROW_BYTES + (encrypted ? 16 : 0)
  if (pieces < 1 || tableBytes !== want || tableOffset < PACK_HEADER_BYTES + pieces || tableOffset + tableBytes + PACK_TRAILER_BYTES !== fileBytes) {
    throw new FormatError('BAD_VALUE', `${what}: pack trailer (${pieces} pieces, table of ${tableBytes} bytes at ${tableOffset}) does not fit a file of ${fileBytes} bytes`)
  }
  const tableCheck = Buffer.from(t.subarray(16, 24))
  if (encrypted && tableCheck.some((x) => x !== 0)) throw new FormatError('BAD_VALUE', `${what}: an encrypted pack's trailer has a table checksum`)
  return { tableOffset, pieces, tableBytes, tableCheck }
}

/** Decodes and checks the plaintext table: checksum (unencrypted), rows back to back from 64 to the table. */
export function decodePackTable(table: Buffer, trailer: PackTrailer, encrypted: boolean, what: string): PackRow[] {
  if (table.length !== trailer.pieces * PACK_ROW_BYTES) throw new FormatError('TRUNCATED', `${what}: pack table of ${table.length} bytes, expected ${trailer.pieces * PACK_ROW_BYTES}`)
  if (!encrypted && !createHash('sha256').update(table).digest().subarray(0, 8).equals(trailer.tableCheck)) {
    throw new FormatError('BAD_CHECKSUM', `${what}: pack table checksum mismatch (file is corrupt)`)
  }
  const rows: PackRow[] = []
  let at = PACK_HEADER_BYTES
  for (let i = 0; i < trailer.pieces; i++) {
    const o = i * PACK_ROW_BYTES
    const offset = Number(table.readBigUInt64LE(o))
    if (table[o + 17] || table[o + 18] || table[o + 19]) throw new FormatError('BAD_VALUE', `${what}: pack table row ${i} has reserved bytes set`)
    const row: PackRow = { offset, storedLen: table.readUInt32LE(o + 8), rawLen: table.readUInt32LE(o + 12), kind: table[o + 16] as PieceKind, id: Buffer.from(table.subarray(o + 20, o + 52)) }
    const p = rowProblem(row, at)
    if (p) throw new FormatError('BAD_VALUE', `${what}: pack table row ${i} ${p}`)
    rows.push(row)
    at += row.storedLen
  }
  if (at !== trailer.tableOffset) throw new FormatError('BAD_VALUE', `${what}: pieces end at ${at}, the table is at ${trailer.tableOffset}`)
  return rows
}

/**
 * Assembles one pack: `add` appends a stored piece (compressed, and encrypted in encrypted
 * repositories — by the caller) and returns its PieceRef; `finish` returns the file's bytes.
 * A writer that writes the file as it grows takes the bytes so far with `drain` (they are
 * then no longer held here), and the rest with `finishParts`. Pure bookkeeping: it
 * compresses, hashes and encrypts nothing itself, except the table checksum of an
 * unencrypted pack.
 */
export class PackBuilder {
  /** The file's bytes not yet drained, in order (the header first until the first drain). */
  private parts: Buffer[] = []
  private partBytes = 0
  private readonly rows: PackRow[] = []
  private at = PACK_HEADER_BYTES

  constructor(readonly header: PackHeader) {
    this.parts.push(encodePackHeader(header))
  }

  /** Bytes of stored pieces so far (what `packBytes` limits). */
  get storedBytes(): number {
    return this.at - PACK_HEADER_BYTES
  }

  get pieces(): number {
    return this.rows.length
  }

  add(stored: Buffer, rawLen: number, kind: PieceKind, id: Buffer): PieceRef {
    const row: PackRow = { offset: this.at, storedLen: stored.length, rawLen, kind, id: Buffer.from(id) }
    const p = rowProblem(row, this.at)
    if (p) throw new RangeError(`pack piece ${p}`)
    this.rows.push(row)
    this.parts.push(stored)
    this.partBytes += stored.length
    this.at += stored.length
    return { run: this.header.run, pack: this.header.pack, offset: row.offset, storedLen: row.storedLen, id: row.id }
  }

  /** Bytes of pieces added since the last drain (what a drain would take, the header aside). */
  get undrainedBytes(): number {
    return this.partBytes
  }

  /** The file's bytes so far that were not drained before, in order; they are the caller's now. */
  drain(): Buffer[] {
    const out = this.parts
    this.parts = []
    this.partBytes = 0
    return out
  }

  /**
   * The whole file (nothing drained before). Unencrypted: the table as is. Encrypted: `sealTable` turns the plaintext
   * table into its stored form (AEAD message ‖ tag).
   */
  finish(sealTable?: (plainTable: Buffer) => Buffer): Buffer {
    return Buffer.concat(this.finishParts(sealTable))
  }

  /**
   * The file as its parts in order (header, pieces, table, trailer), for a writer that writes
   * parts without joining them; after drain(), only what follows the drained bytes.
   */
  finishParts(sealTable?: (plainTable: Buffer) => Buffer): Buffer[] {
    const encrypted = (this.header.flags & PACK_FLAG_ENCRYPTED) !== 0
    if (encrypted !== !!sealTable) throw new RangeError('an encrypted pack needs sealTable, an unencrypted one none')
    const plain = encodePackTable(this.rows)
    const stored = sealTable ? sealTable(plain) : plain
    return [...this.parts, stored, encodePackTrailer(this.at, this.rows.length, stored, encrypted)]
  }
}
