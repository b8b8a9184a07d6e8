/**
 * A generation's before-image log (src/format/bilog-gen.ts, native-notes/format.md
 * §"Before-image log", format 1): a golden vector, the round trip, what the decoder refuses,
 * and how readers lay it over a block map (ObjectResolver).
 */
import { describe, expect, it } from 'vitest'
import { decodeGenBiLog, encodeGenBiLog, genBiOverlays, GenBiKind, type GenBiRecord } from '../src/format/bilog-gen.js'
import { arrayMaps, ObjectResolver } from '../src/repo/resolve.js'
import type { MapObject } from '../src/format/maps.js'

const id = { srcDev: 1792, srcInoHi: 0, srcInoLo: 12, igen: 0x5eed, t0Size: 40960, mtimeSec: 1700000000, mtimeNsec: 123, ctimeSec: -1, ctimeNsec: 999999999 }
const check = Buffer.from('0123456789abcdef', 'hex')
const records: GenBiRecord[] = [
  { ...id, seq: 2, kind: GenBiKind.image, cause: 1, object: 0, offset: 8192, length: 8192, check, extents: [{ fileBlock: 2, count: 1, gen: 3, streamBlock: 10 }, { fileBlock: 3, count: 1, gen: 0, streamBlock: 0 }] },
  { ...id, seq: 5, kind: GenBiKind.truncate, cause: 3, object: 0, offset: 30000, length: 0, check: Buffer.alloc(8), extents: [] },
  { ...id, seq: 6, kind: GenBiKind.image, cause: 3, object: 0, offset: 28672, length: 12288, check, extents: [{ fileBlock: 7, count: 3, gen: 3, streamBlock: 11 }] },
]
const log = { t0Sec: 1796170381, t0Nsec: 753484672, records }

describe('generation BI log (BFSBLOG payload)', () => {
  it('golden vector: encodes to these bytes and back', () => {
    const bytes = encodeGenBiLog(log)
    // A change to these bytes is a format change (format.md §"Before-image log").
    expect(bytes.toString('hex')).toBe(GOLDEN)
    expect(decodeGenBiLog(bytes, 'x', 3, 1, 14)).toEqual(log)
  })

  it('refuses: an object not in the maps, an extent in another generation or past the stream, two images of one block, an image past the T0 size, trailing bytes', () => {
    const bytes = encodeGenBiLog(log)
    expect(() => decodeGenBiLog(bytes, 'x', 3, 0, 14)).toThrow(/object 0 is not in the maps/)
    expect(() => decodeGenBiLog(bytes, 'x', 4, 1, 14)).toThrow(/in gen3, not this generation/)
    expect(() => decodeGenBiLog(bytes, 'x', 3, 1, 13)).toThrow(/outside the stream/)
    const twice = { ...log, records: [...records, { ...records[2]!, seq: 9, extents: [{ fileBlock: 7, count: 3, gen: 0, streamBlock: 0 }] }] }
    expect(() => decodeGenBiLog(encodeGenBiLog(twice), 'x', 3, 1, 14)).toThrow(/in two images/)
    const past = { ...log, records: [{ ...records[2]!, t0Size: 32768 }] }
    expect(() => decodeGenBiLog(encodeGenBiLog(past), 'x', 3, 1, 14)).toThrow(/past the T0 size/)
    const short = { ...log, records: [{ ...records[0]!, extents: [records[0]!.extents[0]!] }] }
    expect(() => decodeGenBiLog(encodeGenBiLog(short), 'x', 3, 1, 14)).toThrow(/cover 1 of 2 blocks/)
    expect(() => decodeGenBiLog(Buffer.concat([bytes, Buffer.from([0])]), 'x', 3, 1, 14)).toThrow(/after the last record/)
  })

  it('readers lay the images over the resolved map (gen-0 image blocks punch holes), through a delta chain and for later generations that refer to the object', () => {
    // gen 3, object 0: 10 blocks of data at stream blocks 0…9; the BI log of gen 3 holds blocks 2, 3 (zeros) and 7…9
    const maps = new Map<number, MapObject[]>([
      [3, [{ sizeBytes: 40960, baseGen: 0, baseIndex: 0, depth: 0, extents: [{ fileBlock: 0, count: 10, gen: 3, streamBlock: 0 }] }]],
      // gen 4, object 0: a delta over it that changes block 8
      [4, [{ sizeBytes: 40960, baseGen: 3, baseIndex: 0, depth: 1, extents: [{ fileBlock: 8, count: 1, gen: 4, streamBlock: 0 }] }]],
    ])
    const over = genBiOverlays(log)
    const src = { ...arrayMaps((g) => maps.get(g) ?? []), biOverlay: (g: number, i: number) => (g === 3 ? over.get(i) : undefined) }
    const r = new ObjectResolver(src)
    expect(r.resolve(3, 0)).toEqual([
      { fileBlock: 0, count: 2, gen: 3, streamBlock: 0 },
      { fileBlock: 2, count: 1, gen: 3, streamBlock: 10 },
      { fileBlock: 4, count: 3, gen: 3, streamBlock: 4 },
      { fileBlock: 7, count: 3, gen: 3, streamBlock: 11 },
    ])
    expect(r.dataBlocks(3, 0)).toBe(9)
    expect(r.resolve(4, 0)).toEqual([
      { fileBlock: 0, count: 2, gen: 3, streamBlock: 0 },
      { fileBlock: 2, count: 1, gen: 3, streamBlock: 10 },
      { fileBlock: 4, count: 3, gen: 3, streamBlock: 4 },
      { fileBlock: 7, count: 1, gen: 3, streamBlock: 11 },
      { fileBlock: 8, count: 1, gen: 4, streamBlock: 0 },
      { fileBlock: 9, count: 1, gen: 3, streamBlock: 13 },
    ])
    // without the log: the map alone
    expect(new ObjectResolver(arrayMaps((g) => maps.get(g) ?? [])).resolve(3, 0)).toEqual([{ fileBlock: 0, count: 10, gen: 3, streamBlock: 0 }])
  })
})

// t0 (svarint, varint), 3 records; the first: seqDelta 2, kind 1, cause 1, object 0, dev 1792,
// inode 0:12, igen 0x5eed, offset 8192, length 8192, t0Size 40960, mtime, ctime (-1 s), the
// check, 2 extents (block 2 → gen 3 stream block 10; block 3 → zeros)
const GOLDEN =
  '9a8afbb00d8087a5e70203' +
  '020101' + '00' + '800e000cedbd01' + '80408040' + '80c002' + '80c49fd50c7b01ff93ebdc03' + '0123456789abcdef' + '02' + '00010314' + '000100' +
  '030203' + '00' + '800e000cedbd01' + 'b0ea0100' + '80c002' + '80c49fd50c7b01ff93ebdc03' + '0000000000000000' +
  '010103' + '00' + '800e000cedbd01' + '80e0018060' + '80c002' + '80c49fd50c7b01ff93ebdc03' + '0123456789abcdef' + '01' + '00030316'
