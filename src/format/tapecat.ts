import { ByteReader, ByteWriter } from './bytes.js'
import { FormatError } from './errors.js'

/**
 * Tape catalog records (native-notes/format.md §"Tape catalog"): REPO/tape/rec-NNNNNNNN,
 * each a BFSTCAT envelope around this payload. A record is written once and never
 * modified; the catalog is every record replayed in number order. A `batch` record says
 * where one tape file's blobs (units) are on tape and keeps a copy of each blob's first
 * and last bytes (a unit's header, and its seek table with the trailer), so that nothing
 * but frame data ever needs the tape; a `drop` record forgets keys.
 */

export const TAPECAT_KIND = { batch: 1, drop: 2 } as const

/** One blob of a tape file as its batch record lists it. */
export interface TapeCatUnit {
  /** Store key, e.g. gens/00000003/unit-00000007. */
  key: string
  /** Size of the whole blob, bytes. */
  bytes: number
  /** SHA-256 of the whole blob (32 bytes). */
  sha256: Buffer
  /** Where the blob starts in the tape file's data stream (the records after the header record), bytes. */
  offset: number
  /** Copy of the blob's first head.length bytes. */
  head: Buffer
  /** Copy of the blob's last tail.length bytes. */
  tail: Buffer
}

export interface TapeBatchRecord {
  kind: 'batch'
  /** The tier (REPO/tiers/NAME) whose library holds the cartridge. */
  tier: string
  cartridge: string
  /** The batch id in the tape file's header record (8 random bytes). */
  batch: Buffer
  /** Tape file number: filemarks before its header record. */
  file: number
  /** Block address of the tape file's header record. */
  fileBlock: number
  /** Bytes per record of the data stream (every record but the last). */
  recordBytes: number
  /** Records of data after the header record (the filemark not counted). */
  dataBlocks: number
  units: TapeCatUnit[]
}

export interface TapeDropRecord {
  kind: 'drop'
  keys: string[]
}

export type TapeCatRecord = TapeBatchRecord | TapeDropRecord

const KEY_RE = /^[A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*$/
/** A store key: segments of [A-Za-z0-9._-], none '.' or '..' (store.ts checkKey). */
const goodKey = (k: string): boolean => KEY_RE.test(k) && !k.split('/').some((s) => s === '.' || s === '..')
const LABEL_RE = /^[ -~]{1,16}$/
const MAX_NAME = 4096

/** First block and record count of a unit of a batch: derived, never stored. */
export function unitBlocks(r: Pick<TapeBatchRecord, 'fileBlock' | 'recordBytes'>, u: Pick<TapeCatUnit, 'offset' | 'bytes'>): { block: number; skip: number; records: number } {
  const first = Math.floor(u.offset / r.recordBytes)
  const skip = u.offset - first * r.recordBytes
  return { block: r.fileBlock + 1 + first, skip, records: Math.max(1, Math.ceil((skip + u.bytes) / r.recordBytes)) }
}

export function encodeTapeCat(r: TapeCatRecord): Buffer {
  const w = new ByteWriter(1024)
  if (r.kind === 'drop') {
    w.u8(TAPECAT_KIND.drop).varint(r.keys.length)
    for (const k of r.keys) w.varint(Buffer.byteLength(k)).bytes(Buffer.from(k))
    return w.finish()
  }
  checkBatch(r, 'tape catalog record')
  const str = (s: string): void => {
    const b = Buffer.from(s, 'utf8')
    w.varint(b.length).bytes(b)
  }
  w.u8(TAPECAT_KIND.batch)
  str(r.tier)
  str(r.cartridge)
  w.varint(r.batch.length).bytes(r.batch)
  w.varint(r.file).varint(r.fileBlock).varint(r.recordBytes).varint(r.dataBlocks).varint(r.units.length)
  for (const u of r.units) {
    str(u.key)
    w.varint(u.bytes).bytes(u.sha256).varint(u.offset)
    w.varint(u.head.length).bytes(u.head)
    w.varint(u.tail.length).bytes(u.tail)
  }
  return w.finish()
}

export function decodeTapeCat(payload: Buffer, what: string): TapeCatRecord {
  const rd = new ByteReader(payload, what)
  const kind = rd.u8()
  const str = (max = MAX_NAME): string => rd.blob(max).toString('utf8')
  let out: TapeCatRecord
  if (kind === TAPECAT_KIND.drop) {
    const n = rd.count(2, 'key')
    const keys: string[] = []
    for (let i = 0; i < n; i++) {
      const k = str()
      if (!goodKey(k)) throw new FormatError('BAD_VALUE', `${what}: bad key ${JSON.stringify(k)}`)
      keys.push(k)
    }
    out = { kind: 'drop', keys }
  } else if (kind === TAPECAT_KIND.batch) {
    const tier = str(64)
    const cartridge = str(16)
    const batch = Buffer.from(rd.blob(64))
    const file = rd.varint()
    const fileBlock = rd.varint()
    const recordBytes = rd.varint()
    const dataBlocks = rd.varint()
    const n = rd.count(36, 'unit')
    const units: TapeCatUnit[] = []
    for (let i = 0; i < n; i++) {
      const key = str()
      const bytes = rd.varint()
      const sha256 = Buffer.from(rd.bytes(32))
      const offset = rd.varint()
      const head = Buffer.from(rd.blob())
      const tail = Buffer.from(rd.blob())
      units.push({ key, bytes, sha256, offset, head, tail })
    }
    out = { kind: 'batch', tier, cartridge, batch, file, fileBlock, recordBytes, dataBlocks, units }
    checkBatch(out, what)
  } else throw new FormatError('BAD_VALUE', `${what}: unknown tape catalog record kind ${kind}`)
  if (rd.remaining !== 0) throw new FormatError('TRAILING_BYTES', `${what}: ${rd.remaining} bytes after the record`)
  return out
}

/** The invariants of a batch record (format.md): units in stream order, inside the file, copies no larger than the blob. */
function checkBatch(r: TapeBatchRecord, what: string): void {
  const bad = (m: string): never => {
    throw new FormatError('BAD_VALUE', `${what}: ${m}`)
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(r.tier)) bad(`bad tier name ${JSON.stringify(r.tier)}`)
  if (!LABEL_RE.test(r.cartridge)) bad(`bad cartridge label ${JSON.stringify(r.cartridge)}`)
  if (r.batch.length !== 8) bad(`batch id of ${r.batch.length} bytes (8)`)
  if (!(r.recordBytes >= 1)) bad('record size 0')
  const streamBytes = r.dataBlocks * r.recordBytes
  let end = 0
  const seen = new Set<string>()
  for (const u of r.units) {
    if (!goodKey(u.key)) bad(`bad key ${JSON.stringify(u.key)}`)
    if (seen.has(u.key)) bad(`key ${u.key} listed twice`)
    seen.add(u.key)
    if (u.sha256.length !== 32) bad(`${u.key}: sha256 of ${u.sha256.length} bytes`)
    if (u.offset < end) bad(`${u.key}: overlaps the blob before it`)
    if (u.head.length + u.tail.length > u.bytes) bad(`${u.key}: head and tail copies (${u.head.length} + ${u.tail.length}) are larger than the blob (${u.bytes})`)
    end = u.offset + u.bytes
    if (end > streamBytes) bad(`${u.key}: ends past the tape file's data (${end} > ${streamBytes})`)
  }
}
