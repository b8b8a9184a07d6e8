import { createHash } from 'node:crypto'
import { FormatError } from './errors.js'

/**
 * Unit file: header, independently decompressible zstd frames, seek table, trailer.
 * See native-notes/format.md §"Unit file".
 */
export const UNIT_MAGIC = 'BFSUNIT\0'
export const UNIT_END_MAGIC = 'BFSUEND\0'
export const UNIT_VERSION = 1
export const UNIT_HEADER_BYTES = 32
export const UNIT_TRAILER_BYTES = 32
export const SEEK_ENTRY_BYTES = 16

export interface UnitHeader {
  genId: number
  unitIndex: number
  /** Number of 4 KiB blocks of raw data in the unit. */
  rawBlocks: number
  /** Blocks per frame; every frame but the last holds exactly this many. */
  frameBlocks: number
  frameCount: number
}

export interface SeekEntry {
  /** Compressed size of the frame in bytes. */
  compBytes: number
  /** Raw size of the frame in bytes (a multiple of the block size). */
  rawBytes: number
  /** 8-byte frame check: see codec/hash.ts frameCheck(). */
  check: Buffer
}

export interface SeekTable {
  entries: SeekEntry[]
  /** Byte offset of frame i in the unit file; offsets[frameCount] = start of the seek table. */
  offsets: number[]
  /** Format 2 (§2.9): unit-relative block ranges a prune zeroed (dead blocks: their stored block hashes are not theirs any more). */
  dead?: Array<{ start: number; blocks: number }>
}

export function frameCountFor(rawBlocks: number, frameBlocks: number): number {
  return Math.ceil(rawBlocks / frameBlocks)
}

export function encodeUnitHeader(h: UnitHeader): Buffer {
  const b = Buffer.alloc(UNIT_HEADER_BYTES)
  b.write(UNIT_MAGIC, 0, 'latin1')
  b.writeUInt16LE(UNIT_VERSION, 8)
  b.writeUInt16LE(0, 10)
  b.writeUInt32LE(h.genId, 12)
  b.writeUInt32LE(h.unitIndex, 16)
  b.writeUInt32LE(h.rawBlocks, 20)
  b.writeUInt32LE(h.frameBlocks, 24)
  b.writeUInt32LE(h.frameCount, 28)
  return b
}

export function decodeUnitHeader(b: Buffer, what: string): UnitHeader {
  if (b.length < UNIT_HEADER_BYTES) throw new FormatError('TRUNCATED', `${what}: too short for a unit header`)
  if (b.toString('latin1', 0, 8) !== UNIT_MAGIC) throw new FormatError('BAD_MAGIC', `${what}: not a bfs unit file (bad magic)`)
  const version = b.readUInt16LE(8)
  if (version !== UNIT_VERSION) throw new FormatError('BAD_VERSION', `${what}: unit format version ${version} is not supported`)
  const flags = b.readUInt16LE(10)
  if (flags !== 0) throw new FormatError('BAD_VALUE', `${what}: unit header flags 0x${flags.toString(16)} are not 0 (corrupt, or a newer format)`)
  const h: UnitHeader = {
    genId: b.readUInt32LE(12),
    unitIndex: b.readUInt32LE(16),
    rawBlocks: b.readUInt32LE(20),
    frameBlocks: b.readUInt32LE(24),
    frameCount: b.readUInt32LE(28),
  }
  if (h.frameBlocks === 0 || h.frameCount !== frameCountFor(h.rawBlocks, h.frameBlocks)) {
    throw new FormatError('BAD_VALUE', `${what}: frame count ${h.frameCount} does not fit ${h.rawBlocks} blocks of ${h.frameBlocks}`)
  }
  return h
}

/** Seek table followed by the trailer; appended after the last frame. */
export function encodeSeekTableAndTrailer(entries: SeekEntry[], seekTableOffset: number): Buffer {
  const table = Buffer.alloc(entries.length * SEEK_ENTRY_BYTES)
  entries.forEach((e, i) => {
    const o = i * SEEK_ENTRY_BYTES
    table.writeUInt32LE(e.compBytes, o)
    table.writeUInt32LE(e.rawBytes, o + 4)
    e.check.copy(table, o + 8, 0, 8)
  })
  const t = Buffer.alloc(UNIT_TRAILER_BYTES)
  t.writeBigUInt64LE(BigInt(seekTableOffset), 0)
  t.writeUInt32LE(entries.length, 8)
  t.writeUInt32LE(0, 12)
  createHash('sha256').update(table).digest().copy(t, 16, 0, 8)
  t.write(UNIT_END_MAGIC, 24, 'latin1')
  return Buffer.concat([table, t])
}

/** Parses the trailer (last 32 bytes of the unit file); returns where the seek table starts and its length. */
export function decodeUnitTrailer(t: Buffer, fileBytes: number, header: UnitHeader, what: string): { seekTableOffset: number; tableBytes: number; tableCheck: Buffer } {
  if (t.length !== UNIT_TRAILER_BYTES) throw new FormatError('TRUNCATED', `${what}: too short for a unit trailer`)
  if (t.toString('latin1', 24, 32) !== UNIT_END_MAGIC) throw new FormatError('TRUNCATED', `${what}: unit trailer missing (file truncated or corrupt)`)
  const reserved = t.readUInt32LE(12)
  if (reserved !== 0) throw new FormatError('BAD_VALUE', `${what}: unit trailer reserved field is 0x${reserved.toString(16)}, not 0 (corrupt, or a newer format)`)
  const seekTableOffset = Number(t.readBigUInt64LE(0))
  const frameCount = t.readUInt32LE(8)
  const tableBytes = frameCount * SEEK_ENTRY_BYTES
  if (frameCount !== header.frameCount || seekTableOffset + tableBytes + UNIT_TRAILER_BYTES !== fileBytes || seekTableOffset < UNIT_HEADER_BYTES) {
    throw new FormatError('BAD_VALUE', `${what}: unit trailer does not match the header or the file size`)
  }
  return { seekTableOffset, tableBytes, tableCheck: t.subarray(16, 24) }
}

export function decodeSeekTable(table: Buffer, tableCheck: Buffer, header: UnitHeader, seekTableOffset: number, blockBytes: number, what: string): SeekTable {
  if (!createHash('sha256').update(table).digest().subarray(0, 8).equals(tableCheck)) {
    throw new FormatError('BAD_CHECKSUM', `${what}: seek table checksum mismatch (file is corrupt)`)
  }
  const entries: SeekEntry[] = []
  const offsets: number[] = [UNIT_HEADER_BYTES]
  let off = UNIT_HEADER_BYTES
  for (let i = 0; i < header.frameCount; i++) {
    const o = i * SEEK_ENTRY_BYTES
    const compBytes = table.readUInt32LE(o)
    const rawBytes = table.readUInt32LE(o + 4)
    const blocks = i < header.frameCount - 1 ? header.frameBlocks : header.rawBlocks - header.frameBlocks * (header.frameCount - 1)
    if (rawBytes !== blocks * blockBytes) throw new FormatError('BAD_VALUE', `${what}: frame ${i} raw size ${rawBytes} should be ${blocks * blockBytes}`)
    entries.push({ compBytes, rawBytes, check: Buffer.from(table.subarray(o + 8, o + 16)) })
    off += compBytes
    offsets.push(off)
  }
  if (off !== seekTableOffset) throw new FormatError('BAD_VALUE', `${what}: frame sizes add up to ${off}, seek table is at ${seekTableOffset}`)
  return { entries, offsets }
}
