import fs from 'node:fs'
import {
  decodeSeekTable, decodeUnitHeader, decodeUnitTrailer, UNIT_HEADER_BYTES, UNIT_TRAILER_BYTES,
  type SeekTable, type UnitHeader,
} from '../format/unit.js'
import { FormatError } from '../format/errors.js'
import { FrameDecompressor } from '../codec/zstd.js'
import { BLOCK_BYTES, frameCheck, hashBlocks, HASH_BYTES, type HashAlg } from '../codec/hash.js'

/** An open unit file: header and seek table loaded, frames read on demand (synchronously). */
export class UnitFile {
  private constructor(
    readonly path: string,
    private fd: number,
    readonly header: UnitHeader,
    readonly table: SeekTable,
  ) {}

  static open(path: string, expect?: { genId: number; unitIndex: number; rawBlocks: number; frameBlocks: number }): UnitFile {
    const fd = fs.openSync(path, 'r')
    try {
      const size = fs.fstatSync(fd).size
      const head = readExactly(fd, 0, UNIT_HEADER_BYTES, path)
      const header = decodeUnitHeader(head, path)
      if (expect && (header.genId !== expect.genId || header.unitIndex !== expect.unitIndex || header.rawBlocks !== expect.rawBlocks || header.frameBlocks !== expect.frameBlocks)) {
        throw new FormatError('BAD_VALUE', `${path}: unit header does not match its manifest`)
      }
      if (size < UNIT_HEADER_BYTES + UNIT_TRAILER_BYTES) throw new FormatError('TRUNCATED', `${path}: unit file truncated`)
      const trailer = readExactly(fd, size - UNIT_TRAILER_BYTES, UNIT_TRAILER_BYTES, path)
      const t = decodeUnitTrailer(trailer, size, header, path)
      const table = decodeSeekTable(readExactly(fd, t.seekTableOffset, t.tableBytes, path), t.tableCheck, header, t.seekTableOffset, BLOCK_BYTES, path)
      return new UnitFile(path, fd, header, table)
    } catch (err) {
      fs.closeSync(fd)
      throw err
    }
  }

  /** Reads compressed frame `i` into a new buffer. */
  readCompressed(i: number): Buffer {
    const off = this.table.offsets[i]!
    return readExactly(this.fd, off, this.table.offsets[i + 1]! - off, this.path)
  }

  /**
   * Decompresses frame `i` into `dst` (at least rawBytes long). zstd checks its own XXH64
   * content checksum; with `fullCheck` (the repository's hash algorithm) the frame check
   * over every block hash is verified too.
   */
  readFrame(i: number, dst: Buffer, dec: FrameDecompressor, fullCheck: HashAlg | null = null): Buffer {
    const e = this.table.entries[i]!
    const comp = this.readCompressed(i)
    const out = dst.subarray(0, e.rawBytes)
    let n: number
    try {
      n = dec.decompressInto(out, comp)
    } catch (err) {
      throw new FormatError('BAD_CHECKSUM', `${this.path}: frame ${i} is corrupt (${(err as Error).message})`)
    }
    if (n !== e.rawBytes) throw new FormatError('BAD_VALUE', `${this.path}: frame ${i} decompressed to ${n} bytes, expected ${e.rawBytes}`)
    if (fullCheck) {
      const blocks = e.rawBytes / BLOCK_BYTES
      const hashes = Buffer.allocUnsafe(blocks * HASH_BYTES)
      hashBlocks(fullCheck, out, 0, blocks, hashes, 0)
      if (!frameCheck(fullCheck, hashes).equals(e.check)) throw new FormatError('BAD_CHECKSUM', `${this.path}: frame ${i} checksum mismatch (data is corrupt)`)
    }
    return out
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd)
    this.fd = -1
  }
}

export function readExactly(fd: number, pos: number, len: number, what: string): Buffer {
  const b = Buffer.allocUnsafe(len)
  let got = 0
  while (got < len) {
    const n = fs.readSync(fd, b, got, len - got, pos + got)
    if (n === 0) throw new FormatError('TRUNCATED', `${what}: unexpected end of file at byte ${pos + got}`)
    got += n
  }
  return b
}
