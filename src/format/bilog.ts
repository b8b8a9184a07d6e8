/**
 * The BI capture file (BFSBILG v1, native-notes/format.md §2.16.1): what native/bilog.c
 * appends to during an online run. Pure: buffers in, objects out; the caller supplies XXH64
 * (seed 0). A torn or damaged tail is not an error: decoding stops at the first record that
 * breaks an invariant and says how many bytes it ignored.
 */
import { FormatError } from './errors.js'
import type { Xxh64Fn } from './v2/common.js'

export const BILOG_MAGIC = Buffer.from('BFSBILG\0', 'latin1')
export const BILOG_VERSION = 1
export const BILOG_HEADER_BYTES = 64
export const BILOG_RECORD_BYTES = 104
export const BILOG_RECORD_MAGIC = Buffer.from('BIR1', 'latin1')
export const BILOG_BLOCK_BYTES = 4096
export const BILOG_MAX_DATA_BYTES = 1 << 20

/** Record kinds. */
export const BiKind = { firstSight: 0, image: 1, truncate: 2, uncovered: 3, end: 4 } as const
/** Causes of image and truncate records. */
export const BiCause = { write: 1, openTrunc: 2, truncate: 3, fallocate: 4, mmap: 5, unknown: 6, preRead: 7 } as const

export interface BiLogHeader {
  version: number
  blockBytes: number
  t0Sec: bigint
  t0Nsec: number
  /** bit 0: the listener ran at SCHED_FIFO. */
  flags: number
  fsDev: bigint
}

export interface BiRecord {
  kind: number
  /** Kind 1, 2: a {@link BiCause}; kind 3: the reason; else 0. */
  cause: number
  igen: number
  seq: bigint
  dev: bigint
  ino: bigint
  /** Kind 1: image offset; kind 2: new EOF; kind 4: records before it. */
  offset: bigint
  t0Size: bigint
  mtimeSec: bigint
  mtimeNsec: number
  ctimeSec: bigint
  ctimeNsec: number
  tid: number
  syscall: number
  /** Kind 1: the old bytes (a view into the input). */
  data: Buffer
}

export interface BiLogFile {
  header: BiLogHeader
  records: BiRecord[]
  /** True when the last record is a kind 4 (clean stop). */
  ended: boolean
  /** Bytes after the last good record (a torn or damaged tail), ignored. */
  tornBytes: number
  /** Why decoding stopped early ('' when it did not). */
  tornReason: string
}

const pad8 = (n: number): number => (8 - (n % 8)) % 8

/** Encodes a file header (the T0 fields as given). */
export function encodeBiLogHeader(h: Omit<BiLogHeader, 'version' | 'blockBytes'>, xxh64: Xxh64Fn): Buffer {
  const b = Buffer.alloc(BILOG_HEADER_BYTES)
  BILOG_MAGIC.copy(b, 0)
  b.writeUInt16LE(BILOG_VERSION, 8)
  b.writeUInt16LE(BILOG_HEADER_BYTES, 10)
  b.writeUInt32LE(BILOG_BLOCK_BYTES, 12)
  b.writeBigInt64LE(h.t0Sec, 16)
  b.writeUInt32LE(h.t0Nsec, 24)
  b.writeUInt32LE(h.flags, 28)
  b.writeBigUInt64LE(h.fsDev, 32)
  b.writeBigUInt64LE(xxh64(b.subarray(0, 56)), 56)
  return b
}

/** Encodes one record with its data and padding (what bilog.c's emit() writes). */
export function encodeBiRecord(r: BiRecord, xxh64: Xxh64Fn): Buffer {
  if (r.kind === BiKind.image ? r.data.length < 1 || r.data.length > BILOG_MAX_DATA_BYTES : r.data.length !== 0)
    throw new RangeError(`bilog record: ${r.data.length} data bytes for kind ${r.kind}`)
  const b = Buffer.alloc(BILOG_RECORD_BYTES + r.data.length + pad8(r.data.length))
  BILOG_RECORD_MAGIC.copy(b, 0)
  b[4] = r.kind
  b[5] = r.cause
  b.writeUInt32LE(r.data.length, 8)
  b.writeUInt32LE(r.igen, 12)
  b.writeBigUInt64LE(r.seq, 16)
  b.writeBigUInt64LE(r.dev, 24)
  b.writeBigUInt64LE(r.ino, 32)
  b.writeBigUInt64LE(r.offset, 40)
  b.writeBigUInt64LE(r.t0Size, 48)
  b.writeBigInt64LE(r.mtimeSec, 56)
  b.writeUInt32LE(r.mtimeNsec, 64)
  b.writeUInt32LE(r.ctimeNsec, 68)
  b.writeBigInt64LE(r.ctimeSec, 72)
  b.writeUInt32LE(r.tid, 80)
  b.writeInt32LE(r.syscall, 84)
  b.writeBigUInt64LE(xxh64(r.data), 88)
  b.writeBigUInt64LE(xxh64(b.subarray(0, 96)), 96)
  r.data.copy(b, BILOG_RECORD_BYTES)
  return b
}

/**
 * Decodes a capture file. Throws FormatError only for a bad header (magic, version, sizes,
 * checksum); records are read until the first one that is short or breaks an invariant.
 */
export function decodeBiLog(buf: Buffer, xxh64: Xxh64Fn): BiLogFile {
  return decodeBiLogFrom({ size: buf.length, stable: true, read: (pos, len) => buf.subarray(pos, pos + len) }, xxh64)
}

/**
 * Where {@link decodeBiLogFrom} reads a capture file: `read` gives the bytes [pos, pos+len)
 * (fewer only at the end), valid until the next call unless `stable`.
 */
export interface BiLogSource {
  size: number
  stable: boolean
  read(pos: number, len: number): Buffer
}

/**
 * A capture file read through a window of `windowBytes` (1 MiB) reused from read to read:
 * ingestion read the whole file into one buffer, 29 MB in the bench's online tree backup,
 * mostly small files' T0 bytes it never keeps (cause 7), and faulting that buffer in cost
 * ~140 ms of the main thread on the VMs bfs is measured on.
 */
export function fileBiLogSource(fd: number, size: number, readAt: (fd: number, buf: Buffer, off: number, len: number, pos: number) => number, windowBytes = 1 << 20): BiLogSource {
  let win = Buffer.allocUnsafe(windowBytes)
  let winPos = 0
  let winLen = 0
  return {
    size,
    stable: false,
    read(pos, len) {
      if (pos >= winPos && pos + len <= winPos + winLen) return win.subarray(pos - winPos, pos - winPos + len)
      if (len > win.length) win = Buffer.allocUnsafe(len)
      winPos = pos
      winLen = 0
      const want = Math.min(win.length, size - pos)
      while (winLen < want) {
        const n = readAt(fd, win, winLen, want - winLen, pos + winLen)
        if (n <= 0) break
        winLen += n
      }
      return win.subarray(0, Math.min(len, winLen))
    },
  }
}

/**
 * decodeBiLog over a source. Every record is checked as decodeBiLog checks it (its data's
 * checksum too: a small file read whole by the listener was stored from its images, cause 7,
 * which only this check covers); with `keep`, an image record's data is kept only when keep
 * says so, and the others get an empty `data`, so a reader that keeps a few files' images
 * holds only those (a window source reads the rest through its one buffer).
 */
export function decodeBiLogFrom(src: BiLogSource, xxh64: Xxh64Fn, keep?: (kind: number, cause: number, dev: bigint, ino: bigint) => boolean): BiLogFile {
  const size = src.size
  if (size < BILOG_HEADER_BYTES) throw new FormatError('TRUNCATED', `bilog: ${size} bytes, a header needs 64`)
  const buf = src.read(0, BILOG_HEADER_BYTES)
  if (!buf.subarray(0, 8).equals(BILOG_MAGIC)) throw new FormatError('BAD_MAGIC', 'bilog: not a BI capture file (magic)')
  const version = buf.readUInt16LE(8)
  if (version !== BILOG_VERSION) throw new FormatError('BAD_VERSION', `bilog: version ${version}, this bfs reads ${BILOG_VERSION}`)
  if (buf.readUInt16LE(10) !== BILOG_HEADER_BYTES || buf.readUInt32LE(12) !== BILOG_BLOCK_BYTES)
    throw new FormatError('BAD_VALUE', 'bilog: header or block size is not 64 / 4096')
  if (buf.readBigUInt64LE(56) !== xxh64(buf.subarray(0, 56))) throw new FormatError('BAD_CHECKSUM', 'bilog: header checksum mismatch')
  if (buf.subarray(40, 56).some((x) => x !== 0)) throw new FormatError('BAD_VALUE', 'bilog: reserved header bytes are not 0')
  const header: BiLogHeader = {
    version,
    blockBytes: BILOG_BLOCK_BYTES,
    t0Sec: buf.readBigInt64LE(16),
    t0Nsec: buf.readUInt32LE(24),
    flags: buf.readUInt32LE(28),
    fsDev: buf.readBigUInt64LE(32),
  }
  const records: BiRecord[] = []
  const seen = new Set<string>() // identities with a first-sight record
  const logged = new Set<string>() // "dev:ino:block" already imaged
  const none = Buffer.alloc(0)
  let pos = BILOG_HEADER_BYTES
  let reason = ''
  let ended = false
  while (pos < size) {
    if (ended) {
      reason = 'bytes after the end record'
      break
    }
    if (size - pos < BILOG_RECORD_BYTES) {
      reason = 'short record header'
      break
    }
    const h = src.read(pos, BILOG_RECORD_BYTES)
    if (h.length < BILOG_RECORD_BYTES) {
      reason = 'short record header'
      break
    }
    if (!h.subarray(0, 4).equals(BILOG_RECORD_MAGIC)) {
      reason = 'bad record magic'
      break
    }
    if (h.readBigUInt64LE(96) !== xxh64(h.subarray(0, 96))) {
      reason = 'record header checksum mismatch'
      break
    }
    const kind = h[4]!
    const dataBytes = h.readUInt32LE(8)
    if (kind > BiKind.end || h.readUInt16LE(6) !== 0 || (kind === BiKind.image ? dataBytes < 1 || dataBytes > BILOG_MAX_DATA_BYTES : dataBytes !== 0)) {
      reason = 'bad record kind or size'
      break
    }
    const total = BILOG_RECORD_BYTES + dataBytes + pad8(dataBytes)
    if (size - pos < total) {
      reason = 'short record data'
      break
    }
    // every field before the data is read (a window source may reuse h's bytes)
    const dataCheck = h.readBigUInt64LE(88)
    const r: BiRecord = {
      kind,
      cause: h[5]!,
      igen: h.readUInt32LE(12),
      seq: h.readBigUInt64LE(16),
      dev: h.readBigUInt64LE(24),
      ino: h.readBigUInt64LE(32),
      offset: h.readBigUInt64LE(40),
      t0Size: h.readBigUInt64LE(48),
      mtimeSec: h.readBigInt64LE(56),
      mtimeNsec: h.readUInt32LE(64),
      ctimeNsec: h.readUInt32LE(68),
      ctimeSec: h.readBigInt64LE(72),
      tid: h.readUInt32LE(80),
      syscall: h.readInt32LE(84),
      data: none,
    }
    const data = dataBytes > 0 ? src.read(pos + BILOG_RECORD_BYTES, dataBytes) : none
    if (data.length < dataBytes) {
      reason = 'short record data'
      break
    }
    if (dataCheck !== xxh64(data)) {
      reason = 'record data checksum mismatch'
      break
    }
    if (dataBytes > 0 && (!keep || keep(kind, r.cause, r.dev, r.ino))) r.data = src.stable ? data : Buffer.from(data)
    if (r.seq !== BigInt(records.length + 1)) {
      reason = `seq ${r.seq} where ${records.length + 1} was due`
      break
    }
    const id = `${r.dev}:${r.ino}`
    if (kind === BiKind.firstSight) seen.add(id)
    if ((kind === BiKind.image || kind === BiKind.truncate) && !seen.has(id)) {
      reason = `seq ${r.seq}: no first-sight record for its file before it`
      break
    }
    if (kind === BiKind.image) {
      const bs = BigInt(BILOG_BLOCK_BYTES)
      if (r.offset % bs !== 0n || r.offset + BigInt(dataBytes) > r.t0Size) {
        reason = `seq ${r.seq}: image not block-aligned or beyond the T0 size`
        break
      }
      let dup = false
      for (let blk = r.offset / bs; blk * bs < r.offset + BigInt(dataBytes); blk++) {
        const k = `${id}:${blk}`
        if (logged.has(k)) dup = true
        logged.add(k)
      }
      if (dup) {
        reason = `seq ${r.seq}: a block imaged twice`
        break
      }
    }
    if (kind === BiKind.end) {
      if (r.offset !== BigInt(records.length)) {
        reason = `seq ${r.seq}: end record counts ${r.offset} records, ${records.length} came before`
        break
      }
      ended = true
    }
    records.push(r)
    pos += total
  }
  return { header, records, ended, tornBytes: size - pos, tornReason: reason }
}

/** T0 state and before-images of one file, from a decoded capture file. */
export interface BiFileOverlay {
  t0Size: bigint
  /** Image bytes by 4 KiB block index (the last may be shorter). */
  blocks: Map<number, Buffer>
}

/** Groups the images of a decoded capture file by file identity `"dev:ino"`. */
export function biOverlays(file: BiLogFile): Map<string, BiFileOverlay> {
  const out = new Map<string, BiFileOverlay>()
  for (const r of file.records) {
    if (r.kind !== BiKind.firstSight && r.kind !== BiKind.image) continue
    const id = `${r.dev}:${r.ino}`
    let o = out.get(id)
    if (!o) out.set(id, (o = { t0Size: r.t0Size, blocks: new Map() }))
    for (let i = 0; i * BILOG_BLOCK_BYTES < r.data.length; i++)
      o.blocks.set(Number(r.offset / BigInt(BILOG_BLOCK_BYTES)) + i, r.data.subarray(i * BILOG_BLOCK_BYTES, Math.min(r.data.length, (i + 1) * BILOG_BLOCK_BYTES)))
  }
  return out
}

/** A file's content at T0: `current` (its bytes now) with the overlay's images laid over, cut or zero-extended to the T0 size. */
export function applyBiOverlay(current: Buffer, o: BiFileOverlay): Buffer {
  const size = Number(o.t0Size)
  const out = Buffer.alloc(size)
  current.copy(out, 0, 0, Math.min(size, current.length))
  for (const [blk, img] of o.blocks) {
    const at = blk * BILOG_BLOCK_BYTES
    out.fill(0, at, Math.min(size, at + BILOG_BLOCK_BYTES))
    img.copy(out, at)
  }
  return out
}
