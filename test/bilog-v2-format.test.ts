/**
 * BILOG and BILIST pieces (native-notes/format.md §2.16, issue 14) and the BI overlay laid over
 * a map (pieces/maps.ts overlayExtents): a golden vector written out by hand from the spec, round
 * trips, and the decoder's refusals.
 */
import { describe, expect, it } from 'vitest'
import { type Bi2Record, Bi2Kind, decodeBiList, decodeBiLogPage, encodeBiList, encodeBiLogPage } from '../src/format/v2/bilog.js'
import { FormatError } from '../src/format/errors.js'
import { overlayExtents } from '../src/pieces/maps.js'

const rec = (over: Partial<Bi2Record>): Bi2Record => ({
  seq: 5, kind: Bi2Kind.image, srcDev: 2049, srcInoHi: 0, srcInoLo: 12, igen: 0, offset: 8192, length: 4096, oldSize: 10000,
  mtimeSec: 100, mtimeNsec: 5, ctimeSec: 100, ctimeNsec: 6, check: Buffer.from('0102030405060708', 'hex'),
  data: [{ fileBlock: 2, count: 1, stream: 7, streamBlock: 3 }], reason: 0, ...over,
})

describe('BILOG / BILIST (§2.16)', () => {
  it('encodes a one-record page as the spec says, byte for byte (golden vector)', () => {
    const hex = [
      '0801', // kind 8 BILOG, version 1
      '05', '01', // firstSeq 5, 1 record
      '00', '01', // seqDelta 0 (the first), kind 1 image
      '8110', '00', '0c', '00', // srcDev 2049, srcInoHi 0, srcInoLo 12, igen 0
      '8040', '8020', '904e', // offset 8192, length 4096, oldSize 10000
      'c801', '05', 'c801', '06', // mtime 100 s 5 ns, ctime 100 s 6 ns (svarint seconds)
      '0102030405060708', // check
      '01', '00', '01', '07', '06', // extents: 1; gap 0 from block 2, 1 block, stream 7, stream block +3 (svarint 6)
    ].join('')
    const b = encodeBiLogPage({ firstSeq: 5, records: [rec({})] })
    expect(b.toString('hex')).toBe(hex)
    expect(decodeBiLogPage(b, 't')).toEqual({ firstSeq: 5, records: [rec({})] })
  })

  it('round-trips images (zeros as stream 0), truncates and not-covered records in seq order', () => {
    const records = [
      rec({ seq: 10, data: [{ fileBlock: 2, count: 1, stream: 0, streamBlock: 0 }] }),
      rec({ seq: 11, kind: Bi2Kind.truncate, offset: 5000, length: 0, data: [] }),
      rec({ seq: 14, offset: 0, length: 10000, data: [{ fileBlock: 0, count: 2, stream: 9, streamBlock: 100 }, { fileBlock: 2, count: 1, stream: 0, streamBlock: 0 }] }),
      rec({ seq: 15, kind: Bi2Kind.uncovered, offset: 0, length: 0, data: [], reason: 1, srcInoHi: 3 }),
    ]
    const b = encodeBiLogPage({ firstSeq: 10, records })
    expect(decodeBiLogPage(b, 't')).toEqual({ firstSeq: 10, records })
    const ref = { run: 3, pack: 0, offset: 64, storedLen: 100, id: Buffer.alloc(32, 9) }
    const l = encodeBiList({ pages: [ref, { ...ref, offset: 164 }], totalRecords: 4 })
    expect(decodeBiList(l, 't')).toEqual({ pages: [ref, { ...ref, offset: 164 }], totalRecords: 4 })
  })

  it('refuses what its encoder never writes: a first delta not 0, seqs not increasing, an image its extents do not cover, trailing bytes', () => {
    const good = encodeBiLogPage({ firstSeq: 5, records: [rec({})] })
    const firstDelta = Buffer.from(good)
    firstDelta[4] = 1
    expect(() => decodeBiLogPage(firstDelta, 't')).toThrow(FormatError)
    expect(() => encodeBiLogPage({ firstSeq: 5, records: [rec({}), rec({ seq: 5 })] })).toThrow(RangeError)
    expect(() => encodeBiLogPage({ firstSeq: 5, records: [rec({ length: 8192 })] })).toThrow(/do not cover/)
    expect(() => decodeBiLogPage(Buffer.concat([good, Buffer.from([0])]), 't')).toThrow(FormatError)
    expect(() => decodeBiList(encodeBiLogPage({ firstSeq: 5, records: [rec({})] }), 't')).toThrow(/BILOG piece, expected BILIST/)
  })
})

describe('overlayExtents (a BI overlay over a map)', () => {
  const x = (fileBlock: number, count: number, stream: number, streamBlock = 0) => ({ fileBlock, count, stream, streamBlock })
  it('replaces the blocks it covers, punches zeros with stream 0, fills holes, clips to the size', () => {
    const base = [x(0, 10, 1, 0), x(20, 5, 1, 10)]
    expect(overlayExtents(base, [x(2, 2, 3, 50)], 30)).toEqual([x(0, 2, 1, 0), x(2, 2, 3, 50), x(4, 6, 1, 4), x(20, 5, 1, 10)])
    // a hole (block 12) filled, a stream 0 overlay punching blocks 8–9 and 20, across extents
    expect(overlayExtents(base, [x(8, 2, 0), x(12, 1, 3, 7), x(20, 1, 0)], 30)).toEqual([x(0, 8, 1, 0), x(12, 1, 3, 7), x(21, 4, 1, 11)])
    // spanning two base extents, and clipped at 22 blocks
    expect(overlayExtents(base, [x(5, 17, 4, 0)], 22)).toEqual([x(0, 5, 1, 0), x(5, 17, 4, 0)])
    // continuing the map's stream blocks: merged (canonical)
    expect(overlayExtents([x(0, 2, 1, 0)], [x(2, 2, 1, 2)], 4)).toEqual([x(0, 4, 1, 0)])
    expect(overlayExtents([], [x(1, 1, 2, 5)], 4)).toEqual([x(1, 1, 2, 5)])
  })
})
