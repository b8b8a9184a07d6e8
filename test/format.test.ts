import { createRequire } from 'node:module'
import { describe, expect, it } from 'vitest'
import { ByteReader, ByteWriter } from '../src/format/bytes.js'
import { decodeEnvelope, encodeEnvelope } from '../src/format/envelope.js'
import { decodeSeekTable, decodeUnitHeader, decodeUnitTrailer, encodeSeekTableAndTrailer, encodeUnitHeader } from '../src/format/unit.js'
import { decodeMaps, encodeMaps, MapsIndex, overlayExtents, type Extent, type MapObject } from '../src/format/maps.js'
import { arrayMaps, dataBlocks, ObjectResolver } from '../src/repo/resolve.js'
import { CatalogIndex, decodeCatalog, encodeCatalog, EntryType, ID_CTIME_NSEC, ID_CTIME_SEC, ID_DEV, ID_FIELDS, ID_FLAGS, ID_INO_HI, ID_INO_LO, ID_LEADER, ID_MTIME_NSEC, ID_MTIME_SEC, ID_OBJ_GEN, ID_OBJ_INDEX, ID_SIZE, ID_TYPE, newEntry, type Entry } from '../src/format/catalog.js'
import { decodeManifest } from '../src/format/manifest.js'
import { FormatError } from '../src/format/errors.js'

// Golden vectors: the byte layouts of native-notes/format.md. A change here is a format change.
const GOLDEN = {
  envelope: '4246534841534800010000000000000003000000000000000300000000000000ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad616263',
  unitHeader: '424653554e495400010000000700000002000000640000004000000002000000',
  seekTable: 'e8030000000004000102030405060708f4010000004002001112131415161718fc050000000000000200000000000000d662804519b2a0e842465355454e4400',
  maps: '02904e000000010002010a80400100010201010000010200',
  catalog: '0202000000ed030000000002050000000000000101010101000261ffa4030000000003000000030000000101000106757365722e610162',
}

const code = (fn: () => unknown): string => {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(FormatError)
    return (err as FormatError).code
  }
  throw new Error('expected a FormatError')
}

describe('varints', () => {
  it('round-trips edge values', () => {
    const vals = [0, 1, 127, 128, 16383, 16384, 2 ** 32, 2 ** 53 - 1]
    const w = new ByteWriter(1)
    for (const v of vals) w.varint(v).svarint(-Math.min(v, 2 ** 52))
    const r = new ByteReader(w.finish(), 't')
    for (const v of vals) {
      expect(r.varint()).toBe(v)
      expect(r.svarint()).toBe(v === 0 ? 0 : -Math.min(v, 2 ** 52))
    }
    expect(r.remaining).toBe(0)
  })
  it('rejects truncated and overlong varints', () => {
    expect(code(() => new ByteReader(Buffer.from([0x80]), 't').varint())).toBe('TRUNCATED')
    expect(code(() => new ByteReader(Buffer.alloc(9, 0xff), 't').varint())).toBe('BAD_VALUE')
  })
})

describe('envelope', () => {
  it('matches the golden vector and decodes', () => {
    const b = encodeEnvelope('hashes', 0, 3, Buffer.from('abc'))
    expect(b.toString('hex')).toBe(GOLDEN.envelope)
    expect(decodeEnvelope('hashes', b, 'x').stored.toString()).toBe('abc')
  })
  it('names a foreign or wrong-kind file, and catches any flipped byte', () => {
    const b = Buffer.from(GOLDEN.envelope, 'hex')
    expect(() => decodeEnvelope('catalog', b, 'f')).toThrow(/is a bfs hashes file, expected catalog/)
    expect(code(() => decodeEnvelope('hashes', Buffer.from('not a bfs file at all, just some text here that is long enough to pass the length check'), 'f'))).toBe('BAD_MAGIC')
    const v = Buffer.from(b)
    v.writeUInt16LE(2, 8)
    expect(code(() => decodeEnvelope('hashes', v, 'f'))).toBe('BAD_VERSION')
    const c = Buffer.from(b)
    c[c.length - 1] ^= 1
    expect(code(() => decodeEnvelope('hashes', c, 'f'))).toBe('BAD_CHECKSUM')
    expect(code(() => decodeEnvelope('hashes', b.subarray(0, b.length - 1), 'f'))).toBe('TRUNCATED')
    // the reserved field (offset 12) is outside the payload checksum: it is checked by itself
    for (let byte = 12; byte < 16; byte++) {
      const r = Buffer.from(b)
      r[byte] ^= 1
      expect(code(() => decodeEnvelope('hashes', r, 'f'))).toBe('BAD_VALUE')
    }
  })
})

describe('unit file', () => {
  const header = { genId: 7, unitIndex: 2, rawBlocks: 100, frameBlocks: 64, frameCount: 2 }
  const entries = [
    { compBytes: 1000, rawBytes: 262144, check: Buffer.from('0102030405060708', 'hex') },
    { compBytes: 500, rawBytes: 147456, check: Buffer.from('1112131415161718', 'hex') },
  ]
  it('header, seek table and trailer match the golden vectors', () => {
    expect(encodeUnitHeader(header).toString('hex')).toBe(GOLDEN.unitHeader)
    expect(encodeSeekTableAndTrailer(entries, 32 + 1500).toString('hex')).toBe(GOLDEN.seekTable)
    expect(decodeUnitHeader(Buffer.from(GOLDEN.unitHeader, 'hex'), 'u')).toEqual(header)
  })
  it('decodes the seek table into frame offsets', () => {
    const tail = Buffer.from(GOLDEN.seekTable, 'hex')
    const fileBytes = 32 + 1500 + tail.length
    const t = decodeUnitTrailer(tail.subarray(tail.length - 32), fileBytes, header, 'u')
    expect(t.seekTableOffset).toBe(1532)
    const st = decodeSeekTable(tail.subarray(0, t.tableBytes), t.tableCheck, header, t.seekTableOffset, 4096, 'u')
    expect(st.offsets).toEqual([32, 1032, 1532])
    const bad = Buffer.from(tail)
    bad[3] ^= 1
    expect(code(() => decodeSeekTable(bad.subarray(0, t.tableBytes), t.tableCheck, header, t.seekTableOffset, 4096, 'u'))).toBe('BAD_CHECKSUM')
  })
  it('rejects a header whose frame count does not fit', () => {
    const b = Buffer.from(GOLDEN.unitHeader, 'hex')
    b.writeUInt32LE(3, 28)
    expect(code(() => decodeUnitHeader(b, 'u'))).toBe('BAD_VALUE')
    expect(code(() => decodeUnitTrailer(Buffer.alloc(32), 2000, header, 'u'))).toBe('TRUNCATED')
  })
  it('rejects a flipped byte in a reserved field: the trailer\'s (end−20) and the header\'s flags', () => {
    const tail = Buffer.from(GOLDEN.seekTable, 'hex')
    const fileBytes = 32 + 1500 + tail.length
    for (let byte = 0; byte < 4; byte++) {
      const t = Buffer.from(tail.subarray(tail.length - 32))
      t[12 + byte] ^= 0x40 // trailer offset 12 = file offset end−20
      expect(code(() => decodeUnitTrailer(t, fileBytes, header, 'u'))).toBe('BAD_VALUE')
      expect(() => decodeUnitTrailer(t, fileBytes, header, 'u')).toThrow(/reserved/)
    }
    for (let byte = 0; byte < 2; byte++) {
      const h = Buffer.from(GOLDEN.unitHeader, 'hex')
      h[10 + byte] ^= 1
      expect(code(() => decodeUnitHeader(h, 'u'))).toBe('BAD_VALUE')
    }
  })
})

describe('block maps', () => {
  const objs = [
    { sizeBytes: 10000, baseGen: 0, baseIndex: 0, depth: 0, extents: [{ fileBlock: 0, count: 2, gen: 1, streamBlock: 5 }] },
    { sizeBytes: 8192, baseGen: 1, baseIndex: 0, depth: 1, extents: [{ fileBlock: 1, count: 1, gen: 0, streamBlock: 0 }, { fileBlock: 2, count: 1, gen: 2, streamBlock: 0 }] },
  ]
  it('matches the golden vector and round-trips', () => {
    const b = encodeMaps(objs)
    expect(b.toString('hex')).toBe(GOLDEN.maps)
    expect(decodeMaps(b, 'm')).toEqual(objs)
  })
  it('rejects trailing bytes, huge counts and inconsistent depth', () => {
    expect(code(() => decodeMaps(Buffer.concat([Buffer.from(GOLDEN.maps, 'hex'), Buffer.from([0])]), 'm'))).toBe('TRAILING_BYTES')
    expect(code(() => decodeMaps(Buffer.from([0xff, 0xff, 0x03]), 'm'))).toBe('BAD_VALUE')
    expect(code(() => decodeMaps(encodeMaps([{ ...objs[0]!, depth: 1 }]), 'm'))).toBe('BAD_VALUE')
  })
  it('MapsIndex decodes each object on demand exactly as decodeMaps, and rejects what it rejects', () => {
    const b = encodeMaps(objs)
    const x = new MapsIndex(b, 'm')
    expect(x.length).toBe(2)
    expect([x.object(0), x.object(1)]).toEqual(objs)
    expect(x.object(2)).toBeUndefined()
    expect(x.object(-1)).toBeUndefined()
    for (const bad of [Buffer.concat([b, Buffer.from([0])]), Buffer.from([0xff, 0xff, 0x03]), encodeMaps([{ ...objs[0]!, depth: 1 }]), b.subarray(0, b.length - 1)]) {
      expect(code(() => new MapsIndex(bad, 'm'))).toBe(code(() => decodeMaps(bad, 'm')))
    }
  })
  it("MapsIndex.fullDataBlocks counts a full map's data blocks within its size as the resolver does, and declines a delta", () => {
    const e = (fileBlock: number, count: number, gen: number, streamBlock: number): Extent => ({ fileBlock, count, gen, streamBlock })
    const full = (sizeBytes: number, extents: Extent[]): MapObject => ({ sizeBytes, baseGen: 0, baseIndex: 0, depth: 0, extents })
    const list: MapObject[] = [
      full(0, []),
      full(10 * 4096, [e(0, 10, 1, 0)]),
      full(10 * 4096, [e(0, 2, 1, 0), e(2, 3, 0, 0), e(5, 5, 1, 2)]), // a hole listed as gen 0
      full(3 * 4096 + 1, [e(1, 8, 2, 300)]), // past the size: clipped to 4 blocks
      full(200 * 4096, [e(0, 1, 1, 5), e(150, 100, 3, 70000)]), // clipped to 50 blocks
      { sizeBytes: 4096, baseGen: 1, baseIndex: 0, depth: 1, extents: [e(0, 1, 2, 0)] },
    ]
    const x = new MapsIndex(encodeMaps(list), 'm')
    const resolver = new ObjectResolver(arrayMaps(() => list))
    list.forEach((o, i) => expect(x.fullDataBlocks(i, 4096), `object ${i}`).toBe(o.baseGen ? -1 : resolver.dataBlocks(2, i)))
    expect([x.fullDataBlocks(1, 4096), x.fullDataBlocks(2, 4096), x.fullDataBlocks(3, 4096), x.fullDataBlocks(4, 4096)]).toEqual([10, 7, 3, 51])
    expect(x.fullDataBlocks(list.length, 4096)).toBe(-1)
  })
  it('overlays a delta on its base: newer wins per block, zeros punch holes, clipped to size', () => {
    const e = (fileBlock: number, count: number, gen: number, streamBlock: number): Extent => ({ fileBlock, count, gen, streamBlock })
    const base = [e(0, 10, 1, 100)]
    expect(overlayExtents(base, [e(3, 2, 2, 7)], 10)).toEqual([e(0, 3, 1, 100), e(3, 2, 2, 7), e(5, 5, 1, 105)])
    expect(overlayExtents(base, [e(0, 1, 0, 0), e(9, 3, 2, 0)], 12)).toEqual([e(1, 8, 1, 101), e(9, 3, 2, 0)])
    expect(overlayExtents(base, [], 4)).toEqual([e(0, 4, 1, 100)])
    expect(overlayExtents([], [e(2, 2, 3, 9)], 100)).toEqual([e(2, 2, 3, 9)])
    // a delta extent spanning two base extents
    expect(overlayExtents([e(0, 2, 1, 0), e(4, 2, 1, 10)], [e(1, 4, 2, 50)], 6)).toEqual([e(0, 1, 1, 0), e(1, 4, 2, 50), e(5, 1, 1, 11)])
    // adjacent pieces that continue each other are merged
    expect(overlayExtents([e(0, 2, 1, 0)], [e(2, 2, 1, 2)], 4)).toEqual([e(0, 4, 1, 0)])
  })
  it('counts data blocks without resolving full maps, as resolving would', () => {
    const e = (fileBlock: number, count: number, gen: number, streamBlock: number): Extent => ({ fileBlock, count, gen, streamBlock })
    const maps: Record<number, MapObject[]> = {
      1: [
        { sizeBytes: 40960, baseGen: 0, baseIndex: 0, depth: 0, extents: [e(0, 3, 1, 0), e(5, 5, 1, 3)] },
        { sizeBytes: 5 * 4096 + 1, baseGen: 0, baseIndex: 0, depth: 0, extents: [e(0, 2, 0, 0), e(2, 9, 1, 20)] }, // a hole extent, clipped at 6 blocks
        { sizeBytes: 0, baseGen: 0, baseIndex: 0, depth: 0, extents: [] },
      ],
      2: [{ sizeBytes: 40960, baseGen: 1, baseIndex: 0, depth: 1, extents: [e(0, 1, 0, 0), e(3, 2, 2, 0)] }],
    }
    const r = new ObjectResolver(arrayMaps((g) => maps[g] ?? []))
    const fresh = (): ObjectResolver => new ObjectResolver(arrayMaps((g) => maps[g] ?? []))
    for (const [g, i, want] of [[1, 0, 8], [1, 1, 4], [1, 2, 0], [2, 0, 9]] as const) {
      expect(fresh().dataBlocks(g, i)).toBe(want)
      expect(dataBlocks(r.resolve(g, i))).toBe(want)
      expect(r.dataBlocks(g, i)).toBe(want) // from the memo
    }
  })
})

describe('catalog', () => {
  const make = () => {
    const root = newEntry(2, 0, Buffer.alloc(0))
    root.mode = 0o755
    root.firstChild = 1
    root.childCount = 1
    root.mtimeSec = 1
    root.mtimeNsec = 5
    const f = newEntry(1, 0, Buffer.from([0x61, 0xff]))
    f.mode = 0o644
    f.size = 3
    f.objGen = 1
    f.xattrs = [[Buffer.from('user.a'), Buffer.from('b')]]
    f.mtimeSec = -2
    return [root, f]
  }
  it('matches the golden vector and round-trips raw names, negative times and xattrs', () => {
    const b = encodeCatalog(make())
    expect(b.toString('hex')).toBe(GOLDEN.catalog)
    const back = decodeCatalog(b, 'c')
    expect(back[1]!.name).toEqual(Buffer.from([0x61, 0xff]))
    expect(back[1]!.mtimeSec).toBe(-2)
    expect(back[1]!.xattrs![0]![0].toString()).toBe('user.a')
    expect(back[0]!.mtimeNsec).toBe(5)
  })
  it('rejects names with a slash, children out of range and broken parent links', () => {
    const bad = make()
    bad[1]!.name = Buffer.from('a/b')
    expect(code(() => decodeCatalog(encodeCatalog(bad), 'c'))).toBe('BAD_VALUE')
    const range = make()
    range[0]!.childCount = 5
    expect(code(() => decodeCatalog(encodeCatalog(range), 'c'))).toBe('BAD_VALUE')
    const parent = make()
    parent.push(newEntry(1, 1, Buffer.from('x')))
    parent[0]!.childCount = 2
    expect(code(() => decodeCatalog(encodeCatalog(parent), 'c'))).toBe('BAD_VALUE')
    expect(code(() => decodeCatalog(Buffer.from(GOLDEN.catalog, 'hex').subarray(0, GOLDEN.catalog.length / 2 - 3), 'c'))).toBe('TRUNCATED')
  })
})

describe('catalog index (the mount reads catalogs through it)', () => {
  /** A tree of 3 dirs, files, a hard link, a symlink, a device node and xattrs. */
  const tree = (): Entry[] => {
    const e = (type: EntryType, parent: number, name: string): Entry => {
      const x = newEntry(type, parent, Buffer.from(name, 'latin1'))
      x.mode = 0o644
      x.mtimeSec = 1_700_000_000
      x.mtimeNsec = 123
      return x
    }
    const root = e(EntryType.Dir, 0, '')
    const a = e(EntryType.Dir, 0, 'a')
    const f = e(EntryType.File, 0, 'f\xff')
    const l = e(EntryType.Symlink, 0, 'l')
    const g = e(EntryType.File, 1, 'g')
    const h = e(EntryType.File, 1, 'h')
    const d = e(EntryType.CharDev, 1, 'null')
    Object.assign(root, { firstChild: 1, childCount: 3 })
    Object.assign(a, { firstChild: 4, childCount: 3 })
    Object.assign(f, { size: 5, objGen: 1, objIndex: 0, nlink: 2, xattrs: [[Buffer.from('user.k'), Buffer.from('v')]] })
    Object.assign(l, { target: Buffer.from('f\xff', 'latin1'), size: 2 })
    Object.assign(g, { size: 5, nlink: 2, flags: 2, linkLeader: 2 })
    Object.assign(h, { size: 0 })
    Object.assign(d, { rdevMajor: 1, rdevMinor: 3 })
    return [root, a, f, l, g, h, d]
  }
  it('identity() reads the change-detection fields of every entry as decodeCatalog does', () => {
    const entries = tree()
    // large, negative and multi-byte values in every field identity() reads or skips
    Object.assign(entries[2]!, { srcDev: 2 ** 40 + 7, srcInoHi: 3, srcInoLo: 2 ** 32 - 1, ctimeSec: -1, ctimeNsec: 999_999_999, atimeSec: -(2 ** 40), uid: 1e6, objGen: 300, objIndex: 2 ** 33 })
    Object.assign(entries[5]!, { mtimeSec: 2 ** 45, size: 2 ** 50, objGen: 0, objIndex: 0 })
    entries[4]!.name = Buffer.alloc(300, 0x61) // a name whose length takes two varint bytes
    const b = encodeCatalog(entries)
    const full = decodeCatalog(b, 'c')
    const x = new CatalogIndex(b, 'c')
    const id = new Float64Array(ID_FIELDS)
    for (let i = 0; i < full.length; i++) {
      const e = full[i]!
      x.identity(i, id)
      const file = e.type === EntryType.File && !(e.flags & 2)
      expect(Array.from(id), `entry ${i}`).toEqual(
        Array.from({ length: ID_FIELDS }, (_, k) =>
          [e.type, e.flags, e.size, e.srcDev, e.srcInoHi, e.srcInoLo, e.mtimeSec, e.mtimeNsec, e.ctimeSec, e.ctimeNsec, file ? e.objGen : 0, file ? e.objIndex : 0, e.flags & 2 ? e.linkLeader : i][k],
        ),
      )
    }
    expect([ID_TYPE, ID_FLAGS, ID_SIZE, ID_DEV, ID_INO_HI, ID_INO_LO, ID_MTIME_SEC, ID_MTIME_NSEC, ID_CTIME_SEC, ID_CTIME_NSEC, ID_OBJ_GEN, ID_OBJ_INDEX, ID_LEADER]).toEqual([...Array(ID_FIELDS).keys()])
  })

  it('decodes every entry as decodeCatalog does, and finds children by raw name', () => {
    const b = encodeCatalog(tree())
    const full = decodeCatalog(b, 'c')
    const x = new CatalogIndex(b, 'c')
    expect(x.length).toBe(full.length)
    for (let i = 0; i < full.length; i++) {
      expect(x.entry(i)).toEqual(full[i])
      expect(x.name(i)).toEqual(full[i]!.name)
      expect(x.type[i]).toBe(full[i]!.type)
      expect(x.parent[i]).toBe(full[i]!.parent)
      expect(x.leader[i]).toBe(full[i]!.flags & 2 ? full[i]!.linkLeader : i)
    }
    expect(x.childIndex(0, Buffer.from('a'))).toBe(1)
    expect(x.childIndex(0, Buffer.from('f\xff', 'latin1'))).toBe(2)
    expect(x.childIndex(0, Buffer.from('l'))).toBe(3)
    expect(x.childIndex(0, Buffer.from('f'))).toBe(-1)
    expect(x.childIndex(0, Buffer.from('m'))).toBe(-1)
    expect(x.childIndex(1, Buffer.from('null'))).toBe(6)
    expect(x.childIndex(1, Buffer.from('a'))).toBe(-1)
    for (const probe of ['', 'a', 'b', 'f', 'f\xff', 'f\xff\x00', 'l', 'zz']) {
      const b = Buffer.from(probe, 'latin1')
      for (let i = 1; i < full.length; i++) expect(Math.sign(x.compareName(i, b))).toBe(Buffer.compare(full[i]!.name, b))
    }
  })
  it('rejects exactly what decodeCatalog rejects, with the same error code (every truncation and every flipped byte)', () => {
    const b = encodeCatalog(tree())
    const outcome = (f: () => unknown): string => {
      try {
        f()
        return 'ok'
      } catch (err) {
        return (err as { code?: string }).code ?? String(err)
      }
    }
    const cases: Buffer[] = []
    for (let n = 0; n < b.length; n++) cases.push(b.subarray(0, n))
    for (let i = 0; i < b.length; i++) {
      for (const bit of [0x01, 0x10, 0x80]) {
        const c = Buffer.from(b)
        c[i] ^= bit
        cases.push(c)
      }
    }
    cases.push(Buffer.concat([b, Buffer.from([0])]))
    // one more entry announced, and only an invalid type byte of it present
    cases.push(Buffer.concat([Buffer.from([b[0]! + 1]), b.subarray(1), Buffer.from([0])]))
    cases.push(Buffer.concat([Buffer.from([b[0]! + 1]), b.subarray(1), Buffer.from([1])]))
    let rejected = 0
    for (const c of cases) {
      const want = outcome(() => decodeCatalog(c, 'c'))
      expect(outcome(() => new CatalogIndex(c, 'c'))).toBe(want)
      if (want !== 'ok') rejected++
    }
    expect(rejected).toBeGreaterThan(cases.length / 2)
  })
})

describe('block hashes', () => {
  it('XXH64 matches the reference vectors (xxhsum -H1)', async () => {
    const { hashBlocks, frameCheck, zeroBlockHash } = await import('../src/codec/hash.js')
    const { xxh64Into } = await import('../src/native/index.js')
    const one = (b: Buffer): string => {
      const o = Buffer.alloc(8)
      xxh64Into(b, o, 0)
      return o.readBigUInt64LE(0).toString(16).padStart(16, '0')
    }
    expect(one(Buffer.alloc(0))).toBe('ef46db3751d8e999')
    expect(one(Buffer.from('a'))).toBe('d24ec4f1a98c6e5b')
    expect(zeroBlockHash('xxh64', 0n).readBigUInt64LE(0).toString(16)).toBe('ac869b6f32d8bbdb')
    const two = Buffer.alloc(8192)
    two.write('hello', 4096)
    const h = Buffer.alloc(16)
    hashBlocks('xxh64', two, 0, 2, h, 0, 0n)
    expect(h.subarray(0, 8).equals(zeroBlockHash('xxh64', 0n))).toBe(true)
    expect(frameCheck('xxh64', h, 0n).toString('hex')).toBe(Buffer.from(one(h), 'hex').reverse().toString('hex'))
    // the older algorithm still works
    expect(zeroBlockHash('sha256-64', 0n).toString('hex')).toBe('ad7facb2586fc6e9')
  })

  it('the addon\'s seeded XXH64 (encrypted repositories, format.md §2.22): xxHash\'s own sanity vectors; no seed and seed 0 are today\'s hashes', async () => {
    const native = await import('../src/native/index.js')
    const addon = createRequire(import.meta.url)('../native/build/Release/bfs_native.node') as {
      hashBlocks(s: Buffer, so: number, n: number, o: Buffer, oo: number, seed?: unknown): void
      xxh64Into(s: Buffer, o: Buffer, oo: number, seed?: unknown): void
    }
    // xxHash's sanity buffer (xxhsum's older self-test): byte i = gen >> 24, gen = gen² mod 2^32 from PRIME32
    const PRIME32 = 2654435761n
    const sanity = Buffer.alloc(222)
    let g = PRIME32
    for (let i = 0; i < sanity.length; i++) {
      sanity[i] = Number((g >> 24n) & 0xffn)
      g = (g * g) & 0xffffffffn
    }
    const xx = (b: Buffer, seed?: bigint): string => {
      const o = Buffer.alloc(8)
      native.xxh64Into(b, o, 0, seed)
      return o.readBigUInt64LE(0).toString(16).padStart(16, '0')
    }
    for (const [len, seed, want] of [
      [0, 0n, 'ef46db3751d8e999'], [0, PRIME32, 'ac75fda2929b17ef'],
      [1, 0n, '4fce394cc88952d8'], [1, PRIME32, '739840cb819fa723'],
      [14, 0n, 'cffa8db881bc3a3d'], [14, PRIME32, '5b9611585efcc9cb'],
      [222, 0n, '9dd507880debb03d'], [222, PRIME32, 'dc515172b8ee0600'],
    ] as const) expect(xx(sanity.subarray(0, len), seed), `${len} bytes, seed ${seed}`).toBe(want)
    // hashBlocks: each block as xxh64Into hashes it, seed for seed; omitted = 0; a seed changes every hash
    const data = Buffer.concat([Buffer.alloc(4096, 7), sanity, Buffer.alloc(4096 - 222, 1)])
    for (const seed of [undefined, 0n, 1n, PRIME32, (1n << 64n) - 1n]) {
      const h = Buffer.alloc(16)
      native.hashBlocks(data, 0, 2, h, 0, seed)
      expect(h.readBigUInt64LE(0).toString(16).padStart(16, '0')).toBe(xx(data.subarray(0, 4096), seed))
      expect(h.readBigUInt64LE(8).toString(16).padStart(16, '0')).toBe(xx(data.subarray(4096), seed))
    }
    const at = (seed?: bigint): string => {
      const h = Buffer.alloc(16)
      native.hashBlocks(data, 0, 2, h, 0, seed)
      return h.toString('hex')
    }
    expect(at(0n)).toBe(at())
    expect(at(1n).slice(0, 16)).not.toBe(at().slice(0, 16))
    expect(at(1n).slice(16)).not.toBe(at().slice(16))
    expect(at(1n)).not.toBe(at(2n))
    // a seed is a BigInt in 0 … 2^64-1, nothing else
    const o = Buffer.alloc(8)
    expect(() => addon.xxh64Into(data, o, 0, 1)).toThrow(TypeError)
    expect(() => addon.xxh64Into(data, o, 0, '1')).toThrow(TypeError)
    expect(() => addon.xxh64Into(data, o, 0, -1n)).toThrow(RangeError)
    expect(() => addon.hashBlocks(data, 0, 1, o, 0, 1n << 64n)).toThrow(RangeError)
    expect(() => addon.hashBlocks(data, 0, 1, o, 0, 1)).toThrow(TypeError)
  })
})

describe('manifest', () => {
  it('rejects missing or inconsistent fields with the field name', () => {
    expect(() => decodeManifest(Buffer.from('{'), 'm')).toThrow(/not valid JSON/)
    expect(() => decodeManifest(Buffer.from(JSON.stringify({ format: 1, id: 3 })), 'm')).toThrow(/manifest field 'blockBytes'/)
    expect(() => decodeManifest(Buffer.from(JSON.stringify({ format: 2 })), 'm')).toThrow(/manifest field 'format'/)
  })

  it('consistency: optional (older manifests have none), one of four values, volumes only', () => {
    const ref = { bytes: 10, sha256: 'ab'.repeat(32) }
    const man = { format: 1, id: 2, time: '2026-11-22T10:00:00.000Z', label: '', source: '/dev/loop0', host: 'h', kind: 'volume', group: null, parent: 1, blockBytes: 4096, unitBlocks: 64, frameBlocks: 32, level: 3, streamBlocks: 3, units: [{ index: 0, bytes: 100, rawBlocks: 3 }], catalog: ref, maps: ref, hashes: ref, partial: false, stats: {} }
    const dec = (m: object): ReturnType<typeof decodeManifest> => decodeManifest(Buffer.from(JSON.stringify(m)), 'm')
    expect(dec(man).consistency).toBeUndefined()
    for (const c of ['unmounted', 'read-only', 'frozen', 'mounted-rw']) expect(dec({ ...man, consistency: c }).consistency).toBe(c)
    expect(() => dec({ ...man, consistency: 'clean' })).toThrow(/manifest field 'consistency'/)
    expect(() => dec({ ...man, consistency: null })).toThrow(/manifest field 'consistency'/)
    expect(() => dec({ ...man, kind: 'files', consistency: 'frozen' })).toThrow(/manifest field 'consistency'/)
  })
})
