import { FormatError } from './errors.js'

/**
 * Growable little-endian byte writer. Varints are unsigned LEB128 up to 2^53-1
 * (JS safe integers); signed values use zigzag.
 */
export class ByteWriter {
  private buf: Buffer
  private pos = 0
  constructor(initialBytes = 4096) {
    this.buf = Buffer.allocUnsafe(initialBytes)
  }
  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.pos + n) size *= 2
    const next = Buffer.allocUnsafe(size)
    this.buf.copy(next, 0, 0, this.pos)
    this.buf = next
  }
  get length(): number {
    return this.pos
  }
  /** Starts again at byte 0, keeping the buffer (what finish() returned before is overwritten by the next writes). */
  reset(): void {
    this.pos = 0
  }
  /** The buffer written into, as it is now (valid until the next write; bytes from `length` on are not written). */
  get raw(): Buffer {
    return this.buf
  }
  u8(v: number): this {
    this.ensure(1)
    this.buf[this.pos++] = v
    return this
  }
  u16(v: number): this {
    this.ensure(2)
    this.buf.writeUInt16LE(v, this.pos)
    this.pos += 2
    return this
  }
  u32(v: number): this {
    this.ensure(4)
    this.buf.writeUInt32LE(v >>> 0, this.pos)
    this.pos += 4
    return this
  }
  /** Unsigned 64-bit from a safe integer. */
  u64(v: number): this {
    this.ensure(8)
    this.buf.writeBigUInt64LE(BigInt(v), this.pos)
    this.pos += 8
    return this
  }
  bytes(b: Uint8Array): this {
    this.ensure(b.length)
    this.buf.set(b, this.pos)
    this.pos += b.length
    return this
  }
  /** Unsigned LEB128 varint (0 … 2^53-1). */
  varint(v: number): this {
    if (this.pos + 8 > this.buf.length) this.ensure(8)
    if (v >>> 0 === v) {
      // 0 … 2^32-1, nearly every value in a catalog: bit operations, no division
      const b = this.buf
      let p = this.pos
      while (v >= 0x80) {
        b[p++] = (v & 0x7f) | 0x80
        v >>>= 7
      }
      b[p++] = v
      this.pos = p
      return this
    }
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`varint out of range: ${v}`)
    while (v >= 0x80) {
      this.buf[this.pos++] = (v % 0x80) | 0x80
      v = Math.floor(v / 0x80)
    }
    this.buf[this.pos++] = v
    return this
  }
  /** Zigzag-encoded signed varint. */
  svarint(v: number): this {
    return this.varint(v >= 0 ? v * 2 : -v * 2 - 1)
  }
  /** varint length + raw bytes. */
  blob(b: Uint8Array): this {
    return this.varint(b.length).bytes(b)
  }
  finish(): Buffer {
    return this.buf.subarray(0, this.pos)
  }
}

/** Bounds-checked reader: every read checks length first and throws FormatError('TRUNCATED'). */
export class ByteReader {
  pos: number
  constructor(
    readonly buf: Buffer,
    readonly what: string,
    start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start
  }
  private need(n: number): void {
    if (n < 0 || this.pos + n > this.end) {
      throw new FormatError('TRUNCATED', `${this.what}: truncated at byte ${this.pos} (need ${n}, have ${this.end - this.pos})`)
    }
  }
  get remaining(): number {
    return this.end - this.pos
  }
  u8(): number {
    this.need(1)
    return this.buf[this.pos++]!
  }
  u16(): number {
    this.need(2)
    const v = this.buf.readUInt16LE(this.pos)
    this.pos += 2
    return v
  }
  u32(): number {
    this.need(4)
    const v = this.buf.readUInt32LE(this.pos)
    this.pos += 4
    return v
  }
  u64(): number {
    this.need(8)
    const v = this.buf.readBigUInt64LE(this.pos)
    this.pos += 8
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError('BAD_VALUE', `${this.what}: 64-bit value too large at byte ${this.pos - 8}`)
    return Number(v)
  }
  bytes(n: number): Buffer {
    this.need(n)
    const b = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return b
  }
  varint(): number {
    // fast path: most varints here (modes, counts, deltas) are one byte
    const pos = this.pos
    if (pos < this.end) {
      const b = this.buf[pos]!
      if (b < 0x80) {
        this.pos = pos + 1
        return b
      }
    }
    return this.varintSlow()
  }
  private varintSlow(): number {
    let result = 0
    let mul = 1
    for (let i = 0; i < 8; i++) {
      const b = this.u8()
      result += (b & 0x7f) * mul
      if ((b & 0x80) === 0) {
        if (!Number.isSafeInteger(result)) break
        return result
      }
      mul *= 0x80
    }
    throw new FormatError('BAD_VALUE', `${this.what}: bad varint at byte ${this.pos}`)
  }
  svarint(): number {
    const v = this.varint()
    return v % 2 === 0 ? v / 2 : -(v + 1) / 2
  }
  blob(maxBytes = 1 << 30): Buffer {
    const n = this.varint()
    if (n > maxBytes) throw new FormatError('BAD_VALUE', `${this.what}: length ${n} over limit ${maxBytes} at byte ${this.pos}`)
    return this.bytes(n)
  }
  /** A count that must fit in what is left when each element takes at least minBytesEach. */
  count(minBytesEach: number, what: string): number {
    const n = this.varint()
    if (n * minBytesEach > this.remaining) throw new FormatError('BAD_VALUE', `${this.what}: ${what} count ${n} exceeds the data left`)
    return n
  }
}

/**
 * A cursor over bytes checked before (CatalogIndex's pass): readers for the per-entry paths
 * that must not allocate (CatalogIndex.stat, MapsIndex.fullDataBlocks). Single-threaded use.
 */
let rdPos = 0
export function rdSetPos(pos: number): void {
  rdPos = pos
}
export function rdSkip(n: number): void {
  rdPos += n
}
export function rdU8(b: Buffer): number {
  return b[rdPos++]!
}
export function rdVi(b: Buffer): number {
  let x = b[rdPos++]!
  if (x < 0x80) return x
  let v = x & 0x7f
  let mul = 0x80
  do {
    x = b[rdPos++]!
    v += (x & 0x7f) * mul
    mul *= 0x80
  } while (x >= 0x80)
  return v
}
export function rdSi(b: Buffer): number {
  const z = rdVi(b)
  return z % 2 === 0 ? z / 2 : -(z + 1) / 2
}
