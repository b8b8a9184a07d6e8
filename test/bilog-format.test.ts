/**
 * The BI capture file codec (src/format/bilog.ts, native-notes/format.md §2.16.1): golden
 * vectors, round trips, and a torn or damaged tail detected and ignored at every byte.
 * The engine's own output is decoded by test/bilog.test.ts.
 */
import { describe, expect, it } from 'vitest'
import { BiCause, BiKind, applyBiOverlay, biOverlays, decodeBiLog, decodeBiLogFrom, encodeBiLogHeader, encodeBiRecord, fileBiLogSource, type BiRecord } from '../src/format/bilog.js'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { xxh64Into } from '../src/native/index.js'

const xxh64 = (b: Buffer): bigint => {
  const o = Buffer.alloc(8)
  xxh64Into(b, o, 0)
  return o.readBigUInt64LE(0)
}

const file = { dev: 1792n, ino: 12n, igen: 0x5eed, t0Size: 5000n, mtimeSec: 1700000000n, mtimeNsec: 123, ctimeSec: -1n, ctimeNsec: 999999999 }
const rec = (seq: number, kind: number, cause: number, offset: bigint, data = Buffer.alloc(0), tid = 4242, syscall = 18): BiRecord => ({
  ...file, seq: BigInt(seq), kind, cause, offset, data, tid, syscall,
})
const header = encodeBiLogHeader({ t0Sec: 1796170381n, t0Nsec: 753484672, flags: 1, fsDev: 1792n }, xxh64)
const image = Buffer.alloc(5000 - 4096, 0xab)
const records = [
  rec(1, BiKind.firstSight, 0, 0n),
  rec(2, BiKind.image, BiCause.write, 4096n, image),
  rec(3, BiKind.truncate, BiCause.truncate, 100n, undefined, 4243, 77),
  { ...rec(4, BiKind.end, 0, 3n, undefined, 0, -1), dev: 0n, ino: 0n, igen: 0, t0Size: 0n, mtimeSec: 0n, mtimeNsec: 0, ctimeSec: 0n, ctimeNsec: 0 },
]
const bytes = Buffer.concat([header, ...records.map((r) => encodeBiRecord(r, xxh64))])

// A change to any of these is a format change (format.md §2.16.1). The header is byte for byte
// the one native/bilog.c wrote in a capture whose T0 was 1796170381.753484672 on device 1792.
const GOLDEN = {
  header: '42465342494c470001004000001000008d620f6b000000008043e92c01000000000700000000000000000000000000000000000000000000f1095178a73bb7b1',
  firstSight: '424952310000000000000000ed5e0000010000000000000000070000000000000c000000000000000000000000000000881300000000000000f15365000000007b000000ffc99a3bffffffffffffffff921000001200000099e9d85137db46efdba58a0e1c21b1bc',
  truncate: '424952310203000000000000ed5e0000030000000000000000070000000000000c000000000000006400000000000000881300000000000000f15365000000007b000000ffc99a3bffffffffffffffff931000004d00000099e9d85137db46efa2ce64d2811cde44',
  whole: 'b6dac4b465c26f43',
}

describe('BI capture file (BFSBILG v1)', () => {
  it('golden vectors', () => {
    expect(header.toString('hex')).toBe(GOLDEN.header)
    expect(encodeBiRecord(records[0], xxh64).toString('hex')).toBe(GOLDEN.firstSight)
    expect(encodeBiRecord(records[2], xxh64).toString('hex')).toBe(GOLDEN.truncate)
    expect(xxh64(bytes).toString(16)).toBe(GOLDEN.whole)
    expect(bytes.length).toBe(64 + 104 + 104 + 904 + 0 + 104 + 104)
  })

  it('decodes what it encodes', () => {
    const f = decodeBiLog(bytes, xxh64)
    expect(f).toMatchObject({ ended: true, tornBytes: 0, tornReason: '' })
    expect(f.header).toMatchObject({ version: 1, blockBytes: 4096, t0Sec: 1796170381n, t0Nsec: 753484672, flags: 1, fsDev: 1792n })
    expect(f.records).toEqual(records)
    const o = biOverlays(f).get('1792:12')!
    expect(o.t0Size).toBe(5000n)
    const now = Buffer.alloc(100, 0x11) // truncated to 100 bytes after T0
    const t0 = applyBiOverlay(now, o)
    expect(t0.length).toBe(5000)
    expect(t0.subarray(0, 100).equals(now)).toBe(true)
    expect(t0.subarray(4096).equals(image)).toBe(true)
  })

  it('read from a file through a small window, with only the wanted images held and every image checked (ingestion)', () => {
    // two files, an image each (the second's damaged in its data): the window (100 bytes,
    // then grown to a record's data) is refilled across every header and data
    const other = { dev: 1792n, ino: 13n }
    const recs = [
      records[0]!,
      records[1]!,
      { ...rec(3, BiKind.firstSight, 0, 0n), ...other },
      { ...rec(4, BiKind.image, BiCause.preRead, 0n, Buffer.alloc(3000, 0x5a)), ...other },
      { ...rec(5, BiKind.end, 0, 4n, undefined, 0, -1), dev: 0n, ino: 0n, igen: 0, t0Size: 0n, mtimeSec: 0n, mtimeNsec: 0, ctimeSec: 0n, ctimeNsec: 0 },
    ]
    const all = Buffer.concat([header, ...recs.map((r) => encodeBiRecord(r, xxh64))])
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bfs-bilog-format-'))
    try {
      const p = path.join(dir, 'capture.bilog')
      const open = (b: Buffer): number => (fs.writeFileSync(p, b), fs.openSync(p, 'r'))
      let fd = open(all)
      const whole = decodeBiLogFrom(fileBiLogSource(fd, all.length, fs.readSync, 100), xxh64)
      fs.closeSync(fd)
      expect(whole).toMatchObject({ ended: true, tornBytes: 0 })
      expect(whole.records).toEqual(recs)
      expect(whole).toEqual(decodeBiLog(all, xxh64))
      // only ino 12's images kept: the others' data is checked, not held
      fd = open(all)
      const keptOnly = decodeBiLogFrom(fileBiLogSource(fd, all.length, fs.readSync, 100), xxh64, (_k, _c, _d, ino) => ino === 12n)
      fs.closeSync(fd)
      expect(keptOnly).toMatchObject({ ended: true, tornBytes: 0 })
      expect(keptOnly.records.map((r) => r.data.length)).toEqual([0, 904, 0, 0, 0])
      expect(keptOnly.records[1]!.data.equals(image)).toBe(true)
      expect(keptOnly.records.map((r) => r.seq)).toEqual(recs.map((r) => r.seq))
      // damage in an image not kept still stops decoding there (a small file read whole by
      // the listener was stored from such images: only this check covers them)
      const bad = Buffer.from(all)
      bad[64 + 104 + 104 + 904 + 104 + 104 + 10] ^= 1
      fd = open(bad)
      const damaged = decodeBiLogFrom(fileBiLogSource(fd, bad.length, fs.readSync, 100), xxh64, (_k, _c, _d, ino) => ino === 12n)
      fs.closeSync(fd)
      expect(damaged).toMatchObject({ ended: false, tornReason: 'record data checksum mismatch' })
      expect(damaged.records.length).toBe(3)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a torn tail at any byte is ignored: the records before it stay, the file is not ended', () => {
    const ends = [64, 64 + 104, 64 + 104 + 104 + 904, 64 + 104 + 104 + 904 + 104]
    for (let len = 64; len < bytes.length; len++) {
      const f = decodeBiLog(bytes.subarray(0, len), xxh64)
      const whole = ends.filter((e) => e <= len).length - 1
      expect(f.records.length, `cut at ${len}`).toBe(whole)
      expect(f.ended).toBe(false)
      expect(f.tornBytes).toBe(len - ends[whole])
    }
  })

  it('a flipped byte in any record stops decoding there', () => {
    for (const at of [64 + 5, 64 + 20, 64 + 104 + 104 + 500, bytes.length - 30]) {
      const bad = Buffer.from(bytes)
      bad[at] ^= 0x40
      const f = decodeBiLog(bad, xxh64)
      expect(f.ended, `flip at ${at}`).toBe(false)
      expect(f.tornReason).not.toBe('')
    }
  })

  it('refuses a bad header with a FormatError', () => {
    expect(() => decodeBiLog(bytes.subarray(0, 63), xxh64)).toThrow(expect.objectContaining({ code: 'TRUNCATED' }))
    const b = Buffer.from(bytes)
    b[0] = 0x41
    expect(() => decodeBiLog(b, xxh64)).toThrow(expect.objectContaining({ code: 'BAD_MAGIC' }))
    const c = Buffer.from(bytes)
    c[30] = 1
    expect(() => decodeBiLog(c, xxh64)).toThrow(expect.objectContaining({ code: 'BAD_CHECKSUM' }))
  })

  it('an image of a block already imaged, a seq gap, or an image before its first sight is where the log stops', () => {
    const again = encodeBiRecord(rec(3, BiKind.image, BiCause.write, 4096n, image), xxh64)
    const dup = Buffer.concat([header, ...records.slice(0, 2).map((r) => encodeBiRecord(r, xxh64)), again])
    expect(decodeBiLog(dup, xxh64)).toMatchObject({ tornReason: 'seq 3: a block imaged twice' })
    const gap = Buffer.concat([header, encodeBiRecord(records[0], xxh64), encodeBiRecord({ ...records[1], seq: 3n }, xxh64)])
    expect(decodeBiLog(gap, xxh64).records.length).toBe(1)
    const orphan = Buffer.concat([header, encodeBiRecord({ ...records[1], seq: 1n }, xxh64)])
    expect(decodeBiLog(orphan, xxh64).tornReason).toMatch(/no first-sight record/)
  })
})
