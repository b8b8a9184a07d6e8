/**
 * A generation's before-image log (BFSBLOG payload, native-notes/format.md §"Before-image
 * log", format 1): the capture's records of the files the generation stored, in interception
 * order, with the images' places in the generation's stream. Pure: buffers in, objects out.
 */
import { ByteReader, ByteWriter } from './bytes.js'
import { FormatError } from './errors.js'
import { writeExtents, type Extent } from './maps.js'

export const GenBiKind = { image: 1, truncate: 2, uncovered: 3 } as const

export interface GenBiRecord {
  seq: number
  kind: number
  cause: number
  /** Index of the file's object in this generation's block maps. */
  object: number
  srcDev: number
  srcInoHi: number
  srcInoLo: number
  igen: number
  /** Bytes: kind 1 the image's offset (a multiple of 4096), kind 2 the new EOF. */
  offset: number
  /** Kind 1: bytes of the image as captured. */
  length: number
  t0Size: number
  mtimeSec: number
  mtimeNsec: number
  ctimeSec: number
  ctimeNsec: number
  /** XXH64 (seed 0) of the image bytes, 8 bytes LE (kind 1); of nothing otherwise. */
  check: Buffer
  /** Kind 1: where the image's blocks are (gen 0: all-zero blocks; else this generation's stream). */
  extents: Extent[]
}

export interface GenBiLog {
  t0Sec: number
  t0Nsec: number
  records: GenBiRecord[]
}

const BLOCK = 4096

export function encodeGenBiLog(log: GenBiLog): Buffer {
  const w = new ByteWriter(64 + log.records.length * 64)
  w.svarint(log.t0Sec).varint(log.t0Nsec).varint(log.records.length)
  let prev = 0
  for (const r of log.records) {
    if (r.seq <= prev) throw new RangeError('BI log records must have increasing seq')
    w.varint(r.seq - prev).u8(r.kind).u8(r.cause).varint(r.object)
    w.varint(r.srcDev).varint(r.srcInoHi).varint(r.srcInoLo).varint(r.igen)
    w.varint(r.offset).varint(r.length).varint(r.t0Size)
    w.svarint(r.mtimeSec).varint(r.mtimeNsec).svarint(r.ctimeSec).varint(r.ctimeNsec)
    if (r.check.length !== 8) throw new RangeError('a BI record check is 8 bytes')
    w.bytes(r.check)
    if (r.kind === GenBiKind.image) writeExtents(w, r.extents, r.offset / BLOCK)
    prev = r.seq
  }
  return w.finish()
}

/**
 * Decodes and checks a generation's BI log: `gen` is the generation it belongs to,
 * `objects` its maps' object count, `streamBlocks` its stream's length.
 */
export function decodeGenBiLog(payload: Buffer, what: string, gen: number, objects: number, streamBlocks: number): GenBiLog {
  const r = new ByteReader(payload, what)
  const bad = (m: string): never => {
    throw new FormatError('BAD_VALUE', `${what}: ${m}`)
  }
  const t0Sec = r.svarint()
  const t0Nsec = r.varint()
  if (t0Nsec > 999_999_999) bad('T0 nanoseconds out of range')
  const n = r.count(30, 'record')
  const records: GenBiRecord[] = new Array(n)
  const seen = new Map<number, Array<[number, number]>>() // object → image block ranges
  let seq = 0
  for (let i = 0; i < n; i++) {
    const d = r.varint()
    if (d < 1) bad(`record ${i}: seq does not increase`)
    seq += d
    const kind = r.u8()
    const cause = r.u8()
    if (kind < 1 || kind > 3) bad(`record ${i}: kind ${kind}`)
    const object = r.varint()
    if (object >= objects) bad(`record ${i}: object ${object} is not in the maps (${objects} objects)`)
    const rec: GenBiRecord = {
      seq, kind, cause, object,
      srcDev: r.varint(), srcInoHi: r.varint(), srcInoLo: r.varint(), igen: r.varint(),
      offset: r.varint(), length: r.varint(), t0Size: r.varint(),
      mtimeSec: r.svarint(), mtimeNsec: r.varint(), ctimeSec: r.svarint(), ctimeNsec: r.varint(),
      check: r.bytes(8), extents: [],
    }
    if (kind === GenBiKind.image) {
      if (rec.offset % BLOCK !== 0 || rec.length < 1 || rec.length > 1 << 20) bad(`record ${i}: image at ${rec.offset} of ${rec.length} bytes`)
      const first = rec.offset / BLOCK
      const end = first + Math.ceil(rec.length / BLOCK)
      if (end > Math.ceil(rec.t0Size / BLOCK)) bad(`record ${i}: image runs past the T0 size`)
      const count = r.count(3, 'extent')
      let next = first
      let lastStream = 0
      for (let j = 0; j < count; j++) {
        const fileBlock = next + r.varint()
        const c = r.varint()
        const g = r.varint()
        let streamBlock = 0
        if (g !== 0) {
          if (g !== gen) bad(`record ${i}: an image extent in gen${g}, not this generation`)
          streamBlock = lastStream + r.svarint()
          if (streamBlock < 0 || streamBlock + c > streamBlocks) bad(`record ${i}: image extent outside the stream`)
          lastStream = streamBlock + c
        }
        if (c <= 0 || fileBlock + c > end) bad(`record ${i}: image extent ${j} outside the image`)
        rec.extents.push({ fileBlock, count: c, gen: g, streamBlock })
        next = fileBlock + c
      }
      const covered = rec.extents.reduce((a, e) => a + e.count, 0)
      if (covered !== end - first) bad(`record ${i}: extents cover ${covered} of ${end - first} blocks`)
      let list = seen.get(object)
      if (!list) seen.set(object, (list = []))
      list.push([first, end])
    } else if (rec.length !== 0) bad(`record ${i}: kind ${kind} with image bytes`)
    records[i] = rec
  }
  if (r.remaining !== 0) bad(`${r.remaining} bytes after the last record`)
  for (const [object, list] of seen) {
    list.sort((a, b) => a[0] - b[0])
    for (let k = 1; k < list.length; k++) if (list[k]![0] < list[k - 1]![1]) bad(`a block of object ${object} is in two images`)
  }
  return { t0Sec, t0Nsec, records }
}

/** Per object, the image extents of a log (sorted by file block): what readers lay over the maps. */
export function genBiOverlays(log: GenBiLog): Map<number, Extent[]> {
  const out = new Map<number, Extent[]>()
  for (const r of log.records) {
    if (r.kind !== GenBiKind.image) continue
    let l = out.get(r.object)
    if (!l) out.set(r.object, (l = []))
    l.push(...r.extents)
  }
  for (const l of out.values()) l.sort((a, b) => a.fileBlock - b.fileBlock)
  return out
}
