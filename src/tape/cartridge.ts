/**
 * A cartridge of the virtual tape library: one file holding the records of one tape
 * (native-notes/tape.md §"Cartridge file"). A 4 KiB header, then an append-only log of
 * entries, each a 64-byte header and the payload of the records it describes:
 *
 *   data      `count` records of `recordBytes` (the last one `lastBytes`), stored;
 *   fill      `count` records whose bytes are not stored (they read back as zeros);
 *   filemark  `count` filemarks.
 *
 * Entries cover consecutive block addresses from 0, so the file is its own record index:
 * end of data (EOD) is found by walking the entry headers (payloads are skipped with
 * seeks). A write appends an entry; a write before EOD first cuts the log at that block.
 * After a crash the walk stops at the first entry that is incomplete or not valid, and
 * the file is cut there: EOD is the end of the last complete write.
 */
import fs from 'node:fs'
import { lazyBuiltin } from '../os/builtin.js'
import { TapeError } from './device.js'

const zlib = lazyBuiltin<typeof import('node:zlib')>('node:zlib')
const crc32 = (b: Buffer): number => zlib().crc32(b)

export const CART_MAGIC = 'BFSTAPE\0'
export const ENTRY_MAGIC = 'BFSTREC\0'
export const CART_VERSION = 1
export const CART_HEADER_BYTES = 4096
export const ENTRY_HEADER_BYTES = 64
/** Bytes read at a time when walking the entry headers. */
const SCAN_WINDOW = 256 * 1024
/** Bytes of small entries gathered before they are written (see CartridgeFile.pending). */
const PENDING_MAX = 1 << 20

export const EntryKind = { Data: 1, Fill: 2, Filemark: 3 } as const
export type EntryKind = (typeof EntryKind)[keyof typeof EntryKind]

export interface CartridgeInfo {
  label: string
  /** Largest record, bytes. */
  maxRecordBytes: number
  capacityBlocks: number
  earlyWarningBlocks: number
  /** 8 random bytes: every entry carries them, so bytes of another cartridge (say, a backup of one) are never taken for an entry of this one. */
  nonce: Buffer
}

export interface Entry {
  /** File offset of the entry header. */
  offset: number
  kind: EntryKind
  firstBlock: number
  count: number
  recordBytes: number
  lastBytes: number
  payloadBytes: number
}

const entryEnd = (e: Entry): number => e.offset + ENTRY_HEADER_BYTES + e.payloadBytes

function encodeCartHeader(info: CartridgeInfo): Buffer {
  const b = Buffer.alloc(CART_HEADER_BYTES)
  b.write(CART_MAGIC, 0, 'latin1')
  b.writeUInt16LE(CART_VERSION, 8)
  b.writeUInt16LE(0, 10)
  b.writeUInt32LE(info.maxRecordBytes, 12)
  b.writeBigUInt64LE(BigInt(info.capacityBlocks), 16)
  b.writeBigUInt64LE(BigInt(info.earlyWarningBlocks), 24)
  info.nonce.copy(b, 32, 0, 8)
  if (!/^[ -~]{1,16}$/.test(info.label)) throw new RangeError(`bad cartridge label '${info.label}'`)
  b.write(info.label, 40, 'latin1')
  b.writeUInt32LE(crc32(b.subarray(0, 60)), 60)
  return b
}

function decodeCartHeader(b: Buffer, file: string): CartridgeInfo {
  if (b.length < 64 || b.toString('latin1', 0, 8) !== CART_MAGIC) throw new TapeError('MEDIUM_ERROR', `${file}: not a bfs tape cartridge (bad magic)`)
  if (b.readUInt32LE(60) !== crc32(b.subarray(0, 60))) throw new TapeError('MEDIUM_ERROR', `${file}: cartridge header checksum mismatch`)
  const version = b.readUInt16LE(8)
  if (version !== CART_VERSION) throw new TapeError('MEDIUM_ERROR', `${file}: cartridge format version ${version} is not supported`)
  return {
    maxRecordBytes: b.readUInt32LE(12),
    capacityBlocks: Number(b.readBigUInt64LE(16)),
    earlyWarningBlocks: Number(b.readBigUInt64LE(24)),
    nonce: Buffer.from(b.subarray(32, 40)),
    label: b.toString('latin1', 40, 56).replace(/\0+$/, ''),
  }
}

function encodeEntryHeader(e: Entry, nonce: Buffer): Buffer {
  const b = Buffer.alloc(ENTRY_HEADER_BYTES)
  b.write(ENTRY_MAGIC, 0, 'latin1')
  nonce.copy(b, 8, 0, 8)
  b.writeBigUInt64LE(BigInt(e.firstBlock), 16)
  b.writeUInt32LE(e.count, 24)
  b.writeUInt16LE(e.kind, 28)
  b.writeUInt32LE(e.recordBytes, 32)
  b.writeUInt32LE(e.lastBytes, 36)
  b.writeBigUInt64LE(BigInt(e.payloadBytes), 40)
  b.writeUInt32LE(crc32(b.subarray(0, 60)), 60)
  return b
}

/** The entry at `offset`, or null when the bytes there are not a valid, complete entry following block `expectBlock`. */
function decodeEntryHeader(b: Buffer, offset: number, nonce: Buffer, expectBlock: number, maxRecord: number, fileSize: number): Entry | null {
  if (b.length < ENTRY_HEADER_BYTES || b.toString('latin1', 0, 8) !== ENTRY_MAGIC) return null
  if (!b.subarray(8, 16).equals(nonce)) return null
  if (b.readUInt32LE(60) !== crc32(b.subarray(0, 60))) return null
  const e: Entry = {
    offset,
    firstBlock: Number(b.readBigUInt64LE(16)),
    count: b.readUInt32LE(24),
    kind: b.readUInt16LE(28) as EntryKind,
    recordBytes: b.readUInt32LE(32),
    lastBytes: b.readUInt32LE(36),
    payloadBytes: Number(b.readBigUInt64LE(40)),
  }
  if (e.firstBlock !== expectBlock || e.count < 1) return null
  if (e.kind === EntryKind.Filemark) {
    if (e.payloadBytes !== 0) return null
  } else if (e.kind === EntryKind.Data || e.kind === EntryKind.Fill) {
    if (e.recordBytes < 1 || e.recordBytes > maxRecord || e.lastBytes < 1 || e.lastBytes > e.recordBytes) return null
    const want = e.kind === EntryKind.Data ? (e.count - 1) * e.recordBytes + e.lastBytes : 0
    if (e.payloadBytes !== want) return null
  } else return null
  if (entryEnd(e) > fileSize) return null // torn: the write did not complete
  return e
}

/** What opening a cartridge found. */
export interface Recovery {
  /** Bytes cut off the end: an incomplete or invalid tail (a write a crash interrupted). */
  cutBytes: number
}

/**
 * The entry index of cartridges this process closed, so that loading one again (a drive
 * going back and forth between cartridges) need not walk its headers again. Used only if
 * the file is unchanged since: same inode, size, and nanosecond mtime and ctime.
 */
const indexCache = new Map<string, { stat: fs.BigIntStats; nonce: Buffer; entries: Entry[]; fmBefore: number[] }>()

function sameFile(a: fs.BigIntStats, b: fs.BigIntStats): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs
}

export class CartridgeFile {
  private entries: Entry[] = []
  /** Filemarks before entry i. */
  private fmBefore: number[] = []
  private unsynced = false
  /**
   * Appended entries not yet handed to the kernel (the drive's buffer): small entries are
   * gathered here and written in one go, at PENDING_MAX bytes, before a large payload, and
   * before any read, cut, sync or close. Always a suffix of the log, in order.
   */
  private pending: Buffer[] = []
  private pendingBytes = 0
  /** File offset where the pending bytes go. */
  private pendingAt = 0

  private constructor(
    readonly path: string,
    private fd: number,
    readonly info: CartridgeInfo,
    readonly recovery: Recovery,
  ) {}

  /** Writes a new, empty cartridge (header only) durably. Fails if the file exists. */
  static create(file: string, info: CartridgeInfo): void {
    const fd = fs.openSync(file, 'wx', 0o644)
    try {
      fs.writeSync(fd, encodeCartHeader(info), 0, CART_HEADER_BYTES, 0)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
  }

  /** Reads just the header (labels for status displays). */
  static readInfo(file: string): CartridgeInfo {
    const fd = fs.openSync(file, 'r')
    try {
      const b = Buffer.alloc(CART_HEADER_BYTES)
      const n = fs.readSync(fd, b, 0, CART_HEADER_BYTES, 0)
      return decodeCartHeader(b.subarray(0, n), file)
    } finally {
      fs.closeSync(fd)
    }
  }

  /**
   * Opens a cartridge for a drive: walks the entries and cuts off an incomplete or invalid
   * tail (the caller owns the cartridge: it holds the drive the cartridge is in).
   */
  static open(file: string): CartridgeFile {
    const fd = fs.openSync(file, 'r+')
    try {
      const head = Buffer.alloc(CART_HEADER_BYTES)
      const n = fs.readSync(fd, head, 0, CART_HEADER_BYTES, 0)
      const info = decodeCartHeader(head.subarray(0, n), file)
      const st = fs.fstatSync(fd, { bigint: true })
      const known = indexCache.get(file)
      if (known && sameFile(known.stat, st) && known.nonce.equals(info.nonce)) {
        // this process closed it last, and nothing has changed it since
        const c = new CartridgeFile(file, fd, info, { cutBytes: 0 })
        c.entries = known.entries.slice()
        c.fmBefore = known.fmBefore.slice()
        return c
      }
      const size = Number(st.size)
      const entries: Entry[] = []
      // the headers are read through a window, so that a tape of many small entries (filemarks,
      // fill, short records) takes a few reads, and one of large records a read per entry
      const win = Buffer.alloc(SCAN_WINDOW)
      let winAt = 0
      let winLen = 0
      let off = CART_HEADER_BYTES
      let block = 0
      while (off + ENTRY_HEADER_BYTES <= size) {
        if (off < winAt || off + ENTRY_HEADER_BYTES > winAt + winLen) {
          winAt = off
          winLen = fs.readSync(fd, win, 0, Math.min(SCAN_WINDOW, size - off), off)
        }
        const e = decodeEntryHeader(win.subarray(off - winAt, Math.min(winLen, off - winAt + ENTRY_HEADER_BYTES)), off, info.nonce, block, info.maxRecordBytes, size)
        if (!e) break
        entries.push(e)
        block += e.count
        off = entryEnd(e)
      }
      const cut = size - off
      if (cut > 0) {
        fs.ftruncateSync(fd, off)
        fs.fsyncSync(fd)
      }
      const c = new CartridgeFile(file, fd, info, { cutBytes: cut })
      c.entries = entries
      let fm = 0
      for (const e of entries) {
        c.fmBefore.push(fm)
        if (e.kind === EntryKind.Filemark) fm += e.count
      }
      return c
    } catch (err) {
      fs.closeSync(fd)
      throw err
    }
  }

  get label(): string {
    return this.info.label
  }

  /** End of data: the block address after the last record or filemark. */
  eod(): number {
    const e = this.entries[this.entries.length - 1]
    return e ? e.firstBlock + e.count : 0
  }

  /** Entries written (for tests and status). */
  entryCount(): number {
    return this.entries.length
  }

  private endOffset(): number {
    const e = this.entries[this.entries.length - 1]
    return e ? entryEnd(e) : CART_HEADER_BYTES
  }

  /** Index of the entry holding `block` (< EOD). */
  private find(block: number): number {
    let lo = 0
    let hi = this.entries.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (this.entries[mid]!.firstBlock <= block) lo = mid
      else hi = mid - 1
    }
    return lo
  }

  /** Filemarks before `block` (the tape file number there). */
  filemarksBefore(block: number): number {
    if (block <= 0 || this.entries.length === 0) return 0
    if (block >= this.eod()) {
      const last = this.entries.length - 1
      const e = this.entries[last]!
      return this.fmBefore[last]! + (e.kind === EntryKind.Filemark ? e.count : 0)
    }
    const i = this.find(block)
    const e = this.entries[i]!
    return this.fmBefore[i]! + (e.kind === EntryKind.Filemark ? block - e.firstBlock : 0)
  }

  /** The address of the first filemark at or after `block`, or null. */
  nextFilemark(block: number): number | null {
    if (block >= this.eod()) return null
    for (let i = this.find(Math.max(0, block)); i < this.entries.length; i++) {
      const e = this.entries[i]!
      if (e.kind === EntryKind.Filemark) return Math.max(block, e.firstBlock)
    }
    return null
  }

  /** The address of the last filemark before `block`, or null. */
  prevFilemark(block: number): number | null {
    if (block <= 0 || this.entries.length === 0) return null
    for (let i = this.find(Math.min(block, this.eod()) - 1); i >= 0; i--) {
      const e = this.entries[i]!
      if (e.kind === EntryKind.Filemark) return Math.min(block - 1, e.firstBlock + e.count - 1)
    }
    return null
  }

  /**
   * Reads records from `block` until `max` records, a filemark (passed: `next` is after
   * it) or EOD. With `data` false, the bytes are not read.
   */
  read(block: number, max: number, data: boolean): { records: Buffer[]; count: number; bytes: number; filemark: boolean; eod: boolean; next: number } {
    const out = { records: [] as Buffer[], count: 0, bytes: 0, filemark: false, eod: false, next: block }
    if (data) this.drain()
    const eod = this.eod()
    if (block >= eod) return { ...out, eod: max > 0 }
    let i = this.find(block)
    let b = block
    while (out.count < max) {
      if (b >= eod) {
        out.eod = true
        break
      }
      const e = this.entries[i]!
      if (b >= e.firstBlock + e.count) {
        i++
        continue
      }
      if (e.kind === EntryKind.Filemark) {
        out.filemark = true
        b++
        break
      }
      const k = b - e.firstBlock
      const n = Math.min(max - out.count, e.count - k)
      // records k .. k+n-1 of the entry: all full-size but possibly the entry's last
      const lastIncluded = k + n === e.count
      const bytes = (lastIncluded ? n - 1 : n) * e.recordBytes + (lastIncluded ? e.lastBytes : 0)
      if (data) {
        if (e.kind === EntryKind.Data) {
          const buf = Buffer.allocUnsafe(bytes)
          let got = 0
          const pos = e.offset + ENTRY_HEADER_BYTES + k * e.recordBytes
          while (got < bytes) {
            const r = fs.readSync(this.fd, buf, got, bytes - got, pos + got)
            if (r === 0) throw new TapeError('MEDIUM_ERROR', `${this.path}: short read at block ${b + Math.floor(got / e.recordBytes)}`)
            got += r
          }
          for (let j = 0; j < n; j++) {
            const len = lastIncluded && j === n - 1 ? e.lastBytes : e.recordBytes
            out.records.push(buf.subarray(j * e.recordBytes, j * e.recordBytes + len))
          }
        } else {
          for (let j = 0; j < n; j++) out.records.push(Buffer.alloc(lastIncluded && j === n - 1 ? e.lastBytes : e.recordBytes))
        }
      }
      out.count += n
      out.bytes += bytes
      b += n
    }
    out.next = b
    return out
  }

  /**
   * Cuts the tape at `block` (≤ EOD): everything from there on is gone, as when a drive
   * writes at that point. Crash-safe: a split entry's header is rewritten (and synced)
   * before the file is shortened, so a crash in between leaves a log whose walk stops at
   * the new end (the next "entry" is old payload, or an entry whose first block no longer
   * follows on).
   */
  truncate(block: number): void {
    if (block >= this.eod()) return
    this.drain()
    const i = this.find(block)
    const e = this.entries[i]!
    let end: number
    if (block === e.firstBlock) {
      end = e.offset
      this.entries.length = i
      this.fmBefore.length = i
    } else {
      const keep = block - e.firstBlock
      // kept records are full-size: only an entry's last record may be short
      const shorter: Entry = { ...e, count: keep, lastBytes: e.kind === EntryKind.Filemark ? 0 : e.recordBytes, payloadBytes: e.kind === EntryKind.Data ? keep * e.recordBytes : 0 }
      fs.writeSync(this.fd, encodeEntryHeader(shorter, this.info.nonce), 0, ENTRY_HEADER_BYTES, e.offset)
      fs.fdatasyncSync(this.fd)
      this.entries[i] = shorter
      this.entries.length = i + 1
      this.fmBefore.length = i + 1
      end = entryEnd(shorter)
    }
    fs.ftruncateSync(this.fd, end)
    fs.fsyncSync(this.fd)
  }

  /** Writes `parts` at `pos` completely (writev, then the rest if it was short). */
  private writeAll(parts: Buffer[], pos: number): void {
    let total = 0
    for (const p of parts) total += p.length
    let done = 0
    while (done < total) {
      let skip = done
      const rest: Buffer[] = []
      for (const p of parts) {
        if (skip >= p.length) skip -= p.length
        else {
          rest.push(skip ? p.subarray(skip) : p)
          skip = 0
        }
      }
      // writev takes at most IOV_MAX (1024) buffers
      done += fs.writevSync(this.fd, rest.slice(0, 1024), pos + done)
    }
  }

  /** Hands the buffered entries to the kernel. */
  private drain(): void {
    if (this.pendingBytes === 0) return
    this.writeAll(this.pending, this.pendingAt)
    this.pending = []
    this.pendingBytes = 0
  }

  private appendEntry(e: Omit<Entry, 'offset' | 'firstBlock'>, payload: Buffer[]): void {
    const full: Entry = { ...e, offset: this.endOffset(), firstBlock: this.eod() }
    const fmBefore = this.filemarksBefore(full.firstBlock)
    const head = encodeEntryHeader(full, this.info.nonce)
    if (e.payloadBytes >= PENDING_MAX) {
      // large: written straight from the caller's buffers, after what is buffered
      this.drain()
      this.writeAll([head, ...payload], full.offset)
    } else {
      if (this.pendingBytes === 0) this.pendingAt = full.offset
      // small payloads are copied: the caller may reuse its buffers once write returns
      this.pending.push(head, ...payload.map((p) => Buffer.from(p)))
      this.pendingBytes += ENTRY_HEADER_BYTES + e.payloadBytes
      if (this.pendingBytes >= PENDING_MAX) this.drain()
    }
    this.entries.push(full)
    this.fmBefore.push(fmBefore)
    this.unsynced = true
  }

  /** Appends data records at EOD (one entry per run of equal-size records; a shorter record ends a run). */
  appendRecords(records: Buffer[]): void {
    for (const r of records) if (r.length < 1 || r.length > this.info.maxRecordBytes) throw new TapeError('ILLEGAL_REQUEST', `record of ${r.length} bytes (1 to ${this.info.maxRecordBytes})`)
    let i = 0
    while (i < records.length) {
      const size = records[i]!.length
      let j = i + 1
      while (j < records.length && records[j]!.length === size) j++
      // a shorter record may close the run
      let last = size
      if (j < records.length && records[j]!.length < size) {
        last = records[j]!.length
        j++
      }
      const run = records.slice(i, j)
      this.appendEntry({ kind: EntryKind.Data, count: run.length, recordBytes: size, lastBytes: last, payloadBytes: (run.length - 1) * size + last }, run)
      i = j
    }
  }

  /** Appends `count` fill records of `bytes` each (not stored). */
  appendFill(count: number, bytes: number): void {
    if (bytes < 1 || bytes > this.info.maxRecordBytes) throw new TapeError('ILLEGAL_REQUEST', `record of ${bytes} bytes (1 to ${this.info.maxRecordBytes})`)
    // an entry counts at most 2^32−1 records
    for (let left = count; left > 0; ) {
      const n = Math.min(left, 0xffffffff)
      this.appendEntry({ kind: EntryKind.Fill, count: n, recordBytes: bytes, lastBytes: bytes, payloadBytes: 0 }, [])
      left -= n
    }
  }

  appendFilemarks(count: number): void {
    if (count > 0) this.appendEntry({ kind: EntryKind.Filemark, count, recordBytes: 0, lastBytes: 0, payloadBytes: 0 }, [])
  }

  /** Whether anything was appended since the last sync. */
  get dirty(): boolean {
    return this.unsynced
  }

  /** Makes everything written durable (fsync). */
  sync(): void {
    this.drain()
    fs.fsyncSync(this.fd)
    this.unsynced = false
  }

  close(): void {
    if (this.fd >= 0) {
      if (this.unsynced || this.pendingBytes) this.sync()
      indexCache.set(this.path, { stat: fs.fstatSync(this.fd, { bigint: true }), nonce: this.info.nonce, entries: this.entries.slice(), fmBefore: this.fmBefore.slice() })
      fs.closeSync(this.fd)
      this.fd = -1
    }
  }
}
