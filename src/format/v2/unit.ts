import { createHash } from 'node:crypto'
import { ByteWriter } from '../bytes.js'
import { FormatError } from '../errors.js'
import {
  type SeekEntry, type UnitHeader as UnitHeaderV1, decodeSeekTable as decodeSeekTableV1, decodeUnitHeader as decodeUnitHeaderV1, decodeUnitTrailer as decodeUnitTrailerV1, frameCountFor,
  UNIT_HEADER_BYTES as UNIT_V1_HEADER_BYTES,
} from '../unit.js'
import { MAX_OBJECT_NUMBER, StrictReader } from './common.js'

/**
 * Unit file v2: a 96-byte header (revision, level, hash algorithm, salt), frames, the unit
 * index (seek table + dead ranges) and a trailer. Format 1 units (32-byte header) stay
 * readable: decodeAnyUnitHeader tells them apart. native-notes/format.md §2.9.
 */
export const UNIT_MAGIC = 'BFSUNIT\0'
export const UNIT_END_MAGIC = 'BFSUEND\0'
export const UNIT_V2_VERSION = 2
export const UNIT_V2_HEADER_BYTES = 96
export const UNIT_TRAILER_BYTES = 32
export const SEEK_ENTRY_BYTES = 16
export const UNIT_FLAG_ENCRYPTED = 1
export const UNIT_FLAG_DEAD_RANGES = 2
/** Every frame was compressed with the stream's dictionary `dict` (a compact's, §2.9.1). */
export const UNIT_FLAG_DICT = 4
/** Where a v2 header holds the dictionary id (u32 LE; 0 when the flag is clear). */
const DICT_AT = 40
/** Block hash algorithms in the unit header. */
export const HASH_ALG_CODES = { xxh64: 1, 'sha256-64': 2 } as const
export type HashAlg = keyof typeof HASH_ALG_CODES

export interface UnitHeaderV2 {
  version: 2
  flags: number
  stream: number
  unitIndex: number
  rawBlocks: number
  frameBlocks: number
  frameCount: number
  /** 0 as written by its run; + 1 by every prune or compact rewrite. */
  revision: number
  /** zstd level of the frames, 1 … 22. */
  level: number
  hashAlg: HashAlg
  /** 32 bytes: the salt when encrypted, else zeros. */
  salt: Buffer
  /** The id of the dictionary (`gens/S/dict-<id>`, §2.9.1) every frame needs; 0: none. Absent means 0. */
  dict?: number
}

/** What a reader needs of either version. */
export interface AnyUnitHeader {
  version: 1 | 2
  /** Bytes before frame 0: 32 (format 1) or 96. */
  headerBytes: number
  stream: number
  unitIndex: number
  rawBlocks: number
  frameBlocks: number
  frameCount: number
  revision: number
  flags: number
  /** The dictionary every frame needs (§2.9.1), 0: none (always 0 in v1). */
  dict: number
}

/** A dead range: unit-relative blocks [start, start + blocks). */
export interface DeadRange {
  start: number
  blocks: number
}

export interface UnitIndex {
  seek: SeekEntry[]
  dead: DeadRange[]
}

function headerProblem(h: UnitHeaderV2): string | null {
  if (h.flags & ~(UNIT_FLAG_ENCRYPTED | UNIT_FLAG_DEAD_RANGES | UNIT_FLAG_DICT)) return `has unknown flags 0x${h.flags.toString(16)}`
  if (!(h.stream >= 1 && h.stream <= MAX_OBJECT_NUMBER) || !(h.unitIndex >= 0 && h.unitIndex <= MAX_OBJECT_NUMBER)) return `names stream ${h.stream}, unit ${h.unitIndex}`
  if (!(h.rawBlocks >= 1 && h.rawBlocks <= 0xffffffff) || !(h.frameBlocks >= 1 && h.frameBlocks <= 0xffffffff)) return `has ${h.rawBlocks} blocks in frames of ${h.frameBlocks}`
  if (h.frameCount !== frameCountFor(h.rawBlocks, h.frameBlocks)) return `has frame count ${h.frameCount}, not ⌈${h.rawBlocks} / ${h.frameBlocks}⌉`
  if (!(h.revision >= 0 && h.revision <= 0xffffffff)) return `has revision ${h.revision}`
  if (h.flags & UNIT_FLAG_DEAD_RANGES && h.revision === 0) return 'has dead ranges at revision 0'
  if (!(h.level >= 1 && h.level <= 22)) return `has zstd level ${h.level}`
  const dict = h.dict ?? 0
  if (!(Number.isInteger(dict) && dict >= 0 && dict <= 0xffffffff) || (dict !== 0) !== ((h.flags & UNIT_FLAG_DICT) !== 0)) return `has dictionary ${dict} with flags 0x${h.flags.toString(16)}`
  if (!(h.hashAlg in HASH_ALG_CODES)) return `has hash algorithm ${h.hashAlg}`
  if (h.salt.length !== 32 || (h.flags & UNIT_FLAG_ENCRYPTED) !== 0 !== h.salt.some((b) => b !== 0)) return h.flags & UNIT_FLAG_ENCRYPTED ? 'is encrypted without a salt' : 'has a salt but is not encrypted'
  return null
}

export function encodeUnitHeaderV2(h: Omit<UnitHeaderV2, 'version'>): Buffer {
  const full: UnitHeaderV2 = { version: 2, ...h }
  const p = headerProblem(full)
  if (p) throw new RangeError(`unit header ${p}`)
  const b = Buffer.alloc(UNIT_V2_HEADER_BYTES)
  b.write(UNIT_MAGIC, 0, 'latin1')
  b.writeUInt16LE(UNIT_V2_VERSION, 8)
  b.writeUInt16LE(h.flags, 10)
  b.writeUInt32LE(h.stream, 12)
  b.writeUInt32LE(h.unitIndex, 16)
  b.writeUInt32LE(h.rawBlocks, 20)
  b.writeUInt32LE(h.frameBlocks, 24)
  b.writeUInt32LE(h.frameCount, 28)
  b.writeUInt32LE(h.revision, 32)
  b.writeUInt8(h.level, 36)
  b.writeUInt8(HASH_ALG_CODES[h.hashAlg], 37)
  b.writeUInt32LE(h.dict ?? 0, DICT_AT)
  h.salt.copy(b, 64)
  return b
}

/** Decodes and checks a v2 unit header; `expected`: the stream and unit its key names (a reader checks them). */
export function decodeUnitHeaderV2(b: Buffer, what: string, expected?: { stream: number; unitIndex: number }): UnitHeaderV2 {
  if (b.length < UNIT_V2_HEADER_BYTES) throw new FormatError('TRUNCATED', `${what}: too short for a unit header`)
  if (b.toString('latin1', 0, 8) !== UNIT_MAGIC) throw new FormatError('BAD_MAGIC', `${what}: not a bfs unit file (bad magic)`)
  const version = b.readUInt16LE(8)
  if (version !== UNIT_V2_VERSION) throw new FormatError('BAD_VERSION', `${what}: unit format version ${version} is not supported here (expected ${UNIT_V2_VERSION})`)
  for (let i = 38; i < 64; i++) if (b[i] !== 0 && (i < DICT_AT || i >= DICT_AT + 4)) throw new FormatError('BAD_VALUE', `${what}: reserved unit header bytes are not 0 (corrupt, or a newer format)`)
  const algCode = b[37]!
  const hashAlg = (Object.keys(HASH_ALG_CODES) as HashAlg[]).find((k) => HASH_ALG_CODES[k] === algCode)
  if (!hashAlg) throw new FormatError('BAD_VALUE', `${what}: unknown block hash algorithm ${algCode}`)
  const h: UnitHeaderV2 = {
    version: 2,
    flags: b.readUInt16LE(10),
    stream: b.readUInt32LE(12),
    unitIndex: b.readUInt32LE(16),
    rawBlocks: b.readUInt32LE(20),
    frameBlocks: b.readUInt32LE(24),
    frameCount: b.readUInt32LE(28),
    revision: b.readUInt32LE(32),
    level: b[36]!,
    hashAlg,
    salt: Buffer.from(b.subarray(64, 96)),
    dict: b.readUInt32LE(DICT_AT),
  }
  const p = headerProblem(h)
  if (p) throw new FormatError('BAD_VALUE', `${what}: unit header ${p}`)
  if (expected && (h.stream !== expected.stream || h.unitIndex !== expected.unitIndex)) {
    throw new FormatError('BAD_VALUE', `${what}: unit header names stream ${h.stream}, unit ${h.unitIndex} (its key says ${expected.stream}, ${expected.unitIndex})`)
  }
  return h
}

/** Either version's header, from at least the first 96 bytes of the file (or the whole of a shorter one). */
export function decodeAnyUnitHeader(b: Buffer, what: string): AnyUnitHeader {
  if (b.length >= 10 && b.toString('latin1', 0, 8) === UNIT_MAGIC && b.readUInt16LE(8) === 1) {
    const h: UnitHeaderV1 = decodeUnitHeaderV1(b.subarray(0, UNIT_V1_HEADER_BYTES), what)
    return { version: 1, headerBytes: UNIT_V1_HEADER_BYTES, stream: h.genId, unitIndex: h.unitIndex, rawBlocks: h.rawBlocks, frameBlocks: h.frameBlocks, frameCount: h.frameCount, revision: 0, flags: 0, dict: 0 }
  }
  const h = decodeUnitHeaderV2(b, what)
  return { version: 2, headerBytes: UNIT_V2_HEADER_BYTES, stream: h.stream, unitIndex: h.unitIndex, rawBlocks: h.rawBlocks, frameBlocks: h.frameBlocks, frameCount: h.frameCount, revision: h.revision, flags: h.flags, dict: h.dict ?? 0 }
}

function deadProblem(dead: readonly DeadRange[], rawBlocks: number): string | null {
  let end = 0
  for (let i = 0; i < dead.length; i++) {
    const d = dead[i]!
    if (!(d.blocks >= 1)) return `dead range ${i} is empty`
    if (i > 0 ? d.start <= end : d.start < 0) return `dead range ${i} overlaps or touches the one before`
    end = d.start + d.blocks
    if (end > rawBlocks) return `dead range ${i} ends beyond the unit's ${rawBlocks} blocks`
  }
  return null
}

/** The plaintext unit index: seek table, then the dead ranges. */
export function encodeUnitIndex(x: UnitIndex, h: Pick<UnitHeaderV2, 'rawBlocks' | 'frameCount' | 'flags'>): Buffer {
  if (x.seek.length !== h.frameCount) throw new RangeError(`unit index: ${x.seek.length} seek entries for ${h.frameCount} frames`)
  const p = deadProblem(x.dead, h.rawBlocks)
  if (p) throw new RangeError(`unit index: ${p}`)
  if ((x.dead.length > 0) !== ((h.flags & UNIT_FLAG_DEAD_RANGES) !== 0)) throw new RangeError('unit index: the header flag says whether there are dead ranges')
  const w = new ByteWriter(x.seek.length * SEEK_ENTRY_BYTES + 16 + x.dead.length * 6)
  for (const e of x.seek) {
    if (e.check.length !== 8) throw new RangeError('unit index: a frame check is 8 bytes')
    w.u32(e.compBytes).u32(e.rawBytes).bytes(e.check)
  }
  w.varint(x.dead.length)
  let end = 0
  for (const d of x.dead) {
    w.varint(d.start - end).varint(d.blocks)
    end = d.start + d.blocks
  }
  return Buffer.from(w.finish())
}

/** The trailer after a stored unit index of `indexBytes` at `indexOffset` (the checksum unless encrypted). */
export function encodeUnitTrailer(indexOffset: number, frameCount: number, storedIndex: Buffer, encrypted = false): Buffer {
  const t = Buffer.alloc(UNIT_TRAILER_BYTES)
  t.writeBigUInt64LE(BigInt(indexOffset), 0)
  t.writeUInt32LE(frameCount, 8)
  t.writeUInt32LE(storedIndex.length, 12)
  if (!encrypted) createHash('sha256').update(storedIndex).digest().copy(t, 16, 0, 8)
  t.write(UNIT_END_MAGIC, 24, 'latin1')
  return t
}

export interface UnitTrailerV2 {
  indexOffset: number
  indexBytes: number
  indexCheck: Buffer
}

export function decodeUnitTrailerV2(t: Buffer, fileBytes: number, h: UnitHeaderV2, what: string): UnitTrailerV2 {
  if (t.length !== UNIT_TRAILER_BYTES) throw new FormatError('TRUNCATED', `${what}: too short for a unit trailer`)
  if (t.toString('latin1', 24, 32) !== UNIT_END_MAGIC) throw new FormatError('TRUNCATED', `${what}: unit trailer missing (file truncated or corrupt)`)
  const indexOffset = Number(t.readBigUInt64LE(0))
  const frameCount = t.readUInt32LE(8)
  const indexBytes = t.readUInt32LE(12)
  const min = h.frameCount * SEEK_ENTRY_BYTES + 1 + (h.flags & UNIT_FLAG_ENCRYPTED ? 16 : 0)
  if (frameCount !== h.frameCount || indexBytes < min || indexOffset < UNIT_V2_HEADER_BYTES + h.frameCount || indexOffset + indexBytes + UNIT_TRAILER_BYTES !== fileBytes) {
    throw new FormatError('BAD_VALUE', `${what}: unit trailer does not match the header or the file size`)
  }
  const indexCheck = Buffer.from(t.subarray(16, 24))
  if (h.flags & UNIT_FLAG_ENCRYPTED && indexCheck.some((b) => b !== 0)) throw new FormatError('BAD_VALUE', `${what}: an encrypted unit's trailer has an index checksum`)
  return { indexOffset, indexBytes, indexCheck }
}

/**
 * Decodes the plaintext unit index (after its checksum, or its AEAD tag, was checked: pass
 * `check` null for an encrypted unit) and the frame offsets it implies.
 */
export function decodeUnitIndex(index: Buffer, check: Buffer | null, h: UnitHeaderV2, indexOffset: number, blockBytes: number, what: string): UnitIndex & { offsets: number[] } {
  if (check && !createHash('sha256').update(index).digest().subarray(0, 8).equals(check)) throw new FormatError('BAD_CHECKSUM', `${what}: unit index checksum mismatch (file is corrupt)`)
  const r = new StrictReader(index, what)
  const seek: SeekEntry[] = []
  const offsets: number[] = [UNIT_V2_HEADER_BYTES]
  let off = UNIT_V2_HEADER_BYTES
  for (let i = 0; i < h.frameCount; i++) {
    const compBytes = r.u32()
    const rawBytes = r.u32()
    const check8 = Buffer.from(r.bytes(8))
    const blocks = i < h.frameCount - 1 ? h.frameBlocks : h.rawBlocks - h.frameBlocks * (h.frameCount - 1)
    if (rawBytes !== blocks * blockBytes) throw new FormatError('BAD_VALUE', `${what}: frame ${i} raw size ${rawBytes} should be ${blocks * blockBytes}`)
    if (compBytes < 1) throw new FormatError('BAD_VALUE', `${what}: frame ${i} has no bytes`)
    seek.push({ compBytes, rawBytes, check: check8 })
    off += compBytes
    offsets.push(off)
  }
  if (off !== indexOffset) throw new FormatError('BAD_VALUE', `${what}: frame sizes add up to ${off}, the unit index is at ${indexOffset}`)
  const n = r.count(2, 'dead range')
  const dead: DeadRange[] = []
  let end = 0
  for (let i = 0; i < n; i++) {
    const start = end + r.varint()
    const blocks = r.varint()
    dead.push({ start, blocks })
    end = start + blocks
  }
  if (r.remaining !== 0) throw new FormatError('TRAILING_BYTES', `${what}: ${r.remaining} bytes after the unit index`)
  const p = deadProblem(dead, h.rawBlocks)
  if (p) throw new FormatError('BAD_VALUE', `${what}: ${p}`)
  if ((dead.length > 0) !== ((h.flags & UNIT_FLAG_DEAD_RANGES) !== 0)) throw new FormatError('BAD_VALUE', `${what}: the header's dead-range flag and the unit index disagree`)
  return { seek, dead, offsets }
}

/**
 * How an encrypted unit file is written (§2.9, §2.22): its salt, and the sealing of its unit
 * index (the caller's AEAD under the unit's key, nonce (2, 0): this layer does no crypto).
 * Its frames come to encodeUnitFileV2 sealed already, each seek entry's `compBytes` the
 * sealed length (tag included).
 */
export interface UnitFileSealing {
  salt: Buffer
  sealIndex: (plainIndex: Buffer) => Buffer
}

/**
 * The parts of a whole v2 unit file (header, frames, unit index, trailer), to be written in
 * one atomic put. `frames[i]` is frame i's stored bytes; `seek[i]` its entry (its `compBytes`
 * must be frames[i].length). With `sealed`: an encrypted unit (flag bit0, the salt, the
 * unit index sealed, the trailer's index check zeros).
 */
export function encodeUnitFileV2(h: Omit<UnitHeaderV2, 'version' | 'frameCount' | 'flags' | 'salt'>, frames: readonly Uint8Array[], seek: readonly SeekEntry[], dead: readonly DeadRange[], sealed?: UnitFileSealing): Buffer[] {
  const frameCount = frameCountFor(h.rawBlocks, h.frameBlocks)
  if (frames.length !== frameCount || seek.length !== frameCount) throw new RangeError(`unit file: ${frames.length} frames and ${seek.length} seek entries for ${frameCount}`)
  const flags = (dead.length ? UNIT_FLAG_DEAD_RANGES : 0) | (h.dict ? UNIT_FLAG_DICT : 0) | (sealed ? UNIT_FLAG_ENCRYPTED : 0)
  const header = encodeUnitHeaderV2({ ...h, flags, frameCount, salt: sealed ? sealed.salt : Buffer.alloc(32) })
  let at = UNIT_V2_HEADER_BYTES
  frames.forEach((f, i) => {
    if (f.length !== seek[i]!.compBytes) throw new RangeError(`unit file: frame ${i} is ${f.length} bytes, its seek entry says ${seek[i]!.compBytes}`)
    at += f.length
  })
  const plain = encodeUnitIndex({ seek: [...seek], dead: [...dead] }, { rawBlocks: h.rawBlocks, frameCount, flags })
  const index = sealed ? sealed.sealIndex(plain) : plain
  return [header, ...frames.map((f) => Buffer.from(f.buffer, f.byteOffset, f.length)), index, encodeUnitTrailer(at, frameCount, index, !!sealed)]
}

/** A unit file of either version, parsed from its bytes (header, frame offsets, seek entries, dead ranges). */
export interface ParsedUnit {
  version: 1 | 2
  stream: number
  unitIndex: number
  rawBlocks: number
  frameBlocks: number
  frameCount: number
  revision: number
  /** v2: the header's level; v1: null (the level it was written at is not recorded). */
  level: number | null
  flags: number
  /** The dictionary every frame needs, 0: none. */
  dict: number
  seek: SeekEntry[]
  /** offsets[i]: where frame i starts; offsets[frameCount]: the end of the last frame. */
  offsets: number[]
  dead: DeadRange[]
  /** The header's salt: 32 bytes, zeros unless encrypted (v1: zeros). */
  salt: Buffer
}

/**
 * Parses a whole unit file (either version) and checks its layout; the frames are not decoded.
 * An encrypted unit needs `openIndex` (the AEAD open of its sealed unit index under the unit's
 * key, nonce (2, 0), §2.9: this layer does no crypto); without it one is refused.
 */
export function parseUnitFile(b: Buffer, blockBytes: number, what: string, expected?: { stream: number; unitIndex: number }, openIndex?: (sealedIndex: Buffer, h: UnitHeaderV2) => Buffer): ParsedUnit {
  const any = decodeAnyUnitHeader(b.subarray(0, Math.min(b.length, UNIT_V2_HEADER_BYTES)), what)
  if (expected && (any.stream !== expected.stream || any.unitIndex !== expected.unitIndex)) {
    throw new FormatError('BAD_VALUE', `${what}: unit header names stream ${any.stream}, unit ${any.unitIndex} (its key says ${expected.stream}, ${expected.unitIndex})`)
  }
  if (b.length < any.headerBytes + UNIT_TRAILER_BYTES) throw new FormatError('TRUNCATED', `${what}: unit file truncated`)
  const t = b.subarray(b.length - UNIT_TRAILER_BYTES)
  if (any.version === 1) {
    const h = decodeUnitHeaderV1(b.subarray(0, UNIT_V1_HEADER_BYTES), what)
    const tr = decodeUnitTrailerV1(t, b.length, h, what)
    const table = decodeSeekTableV1(b.subarray(tr.seekTableOffset, tr.seekTableOffset + tr.tableBytes), tr.tableCheck, h, tr.seekTableOffset, blockBytes, what)
    return { ...any, version: 1, level: null, seek: table.entries, offsets: table.offsets, dead: [], salt: Buffer.alloc(32) }
  }
  const h = decodeUnitHeaderV2(b, what)
  const encrypted = (h.flags & UNIT_FLAG_ENCRYPTED) !== 0
  if (encrypted && !openIndex) throw new FormatError('UNSUPPORTED_FEATURE', `${what}: an encrypted unit, read without its key`)
  const tr = decodeUnitTrailerV2(t, b.length, h, what)
  const stored = b.subarray(tr.indexOffset, tr.indexOffset + tr.indexBytes)
  const x = encrypted ? decodeUnitIndex(openIndex!(stored, h), null, h, tr.indexOffset, blockBytes, what) : decodeUnitIndex(stored, tr.indexCheck, h, tr.indexOffset, blockBytes, what)
  return { ...any, version: 2, level: h.level, seek: x.seek, offsets: x.offsets, dead: x.dead, salt: h.salt }
}
