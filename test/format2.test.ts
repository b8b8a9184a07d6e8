/**
 * Golden vectors of format 2 (native-notes/format.md "Format 2", §2.24): fixed inputs → fixed
 * bytes, decode(bytes) = the input, and what every decoder must refuse. A change to a vector
 * is a format change: update format.md in the same commit.
 *
 * The robustness property used throughout: for every truncation, every flipped bit pattern
 * and a trailing byte, a decoder either throws a FormatError or returns a value that encodes
 * back to exactly those bytes (it accepts only canonical encodings, never crashes otherwise).
 */
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ByteWriter } from '../src/format/bytes.js'
import { FormatError } from '../src/format/errors.js'
import {
  type Extent,
  type PieceRef,
  MAX_PIECE_STORED_BYTES,
  PieceKind,
  StrictReader,
  canonicalExtents,
  checkPieceId,
  comparePieceRefs,
  parsePieceRef,
  pieceKind,
  pieceRefToString,
  readExtentList,
  readPieceRef,
  writeExtentList,
  writePieceRef,
} from '../src/format/v2/common.js'
import {
  type DirDelta,
  type DirIndex,
  type Entry2,
  E_CHANGED_WHILE_READ,
  E_LINKED,
  E_SYNTHETIC,
  FileType,
  applyDirDelta,
  checkPage,
  cutDirPages,
  decodeDir,
  decodeDirDelta,
  decodeDirIndex,
  decodeRootEntry,
  deltaWorthIt,
  diffDir,
  encodeDir,
  encodeDirDelta,
  encodeDirIndex,
  encodeRootEntry,
  entryBytes,
  findEntry,
  findIndexChild,
  fitsInline,
  inlineMapBytes,
  fitsOneDir,
  groupIndexChildren,
  newEntry2,
  readDirPiece,
  readEntry,
  writeEntry,
} from '../src/format/v2/dir.js'
import { buildMap, decodeMapInner, decodeMapLeaf, encodeMapInner, encodeMapLeaf, findExtent, mapChildSlot, readMap, rootShift } from '../src/format/v2/map.js'
import { type IdPage, type LinkRow, TableKind, cutIdPages, decodeIdIndex, decodeIdPage, encodeIdIndex, encodeIdPage, findIdChild, findRow } from '../src/format/v2/idtable.js'
import { PackBuilder, decodePackHeader, decodePackTable, decodePackTrailer, encodePackHeader } from '../src/format/v2/pack.js'
import {
  type UnitHeaderV2,
  UNIT_FLAG_DEAD_RANGES,
  UNIT_FLAG_DICT,
  decodeAnyUnitHeader,
  decodeUnitHeaderV2,
  decodeUnitIndex,
  decodeUnitTrailerV2,
  encodeUnitHeaderV2,
  encodeUnitIndex,
  encodeUnitTrailer,
} from '../src/format/v2/unit.js'
import { decodeDict, encodeDict } from '../src/format/v2/dict.js'
import { ENV_FLAG_ENCRYPTED, ENV_FLAG_ZSTD, decodeEnvelope2, encodeEnvelope2, encodeEnvelope2Parts, hashOffset } from '../src/format/v2/envelope.js'
import { type ConfigV2, DEFAULTS, checkFeatures, decodeConfigV2, encodeConfigV2, newRepoDefaults } from '../src/format/v2/config.js'
import { isFormat2, notYetOnFormat2 } from '../src/repo/v2/detect.js'
import {
  type LeaseRecord,
  type ManifestV2,
  type RunRecord,
  type StreamRecord,
  decodeLease,
  decodeManifestV2,
  decodeRunRecord,
  decodeStreamRecord,
  encodeLease,
  encodeManifestV2,
  encodeRunRecord,
  encodeStreamRecord,
  guardLock,
  isGuardLock,
  leaseLive,
} from '../src/format/v2/records.js'
import { keys2 } from '../src/format/v2/layout.js'
import { encodeEnvelope } from '../src/format/envelope.js'
import { blake3, xxh64Into } from '../src/native/index.js'
import { bfs, tmpdir } from './helpers.js'

// ---- the vectors ----------------------------------------------------------------------------

const GOLDEN: Record<string, string> = {
  'pieceref': '070040ac020708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223242526',
  'pieceref-max':
    'ffc1d72fffc1d72fffffffffffffff0f8080443f404142434445464748494a4b4c4d4e4f505152535455565758595a5b' +
    '5c5d5e',
  'extents': '04030205d00f000106d30f00040512f6ffffffff1f808040ffc1d72fe4ffffffffff0f',
  'extents-zeros': '020003000001040e',
  'entry-a-fifo': '06612d6669666f060009a403e8076401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d20901',
  'entry-b-blk': '05622d626c6b05000aa403e8076401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d209010801',
  'entry-c-chr': '05632d63687204000ba403e8076401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d209010103',
  'entry-d-dir':
    '05642d646972020002ed03e8076401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d2090306018020bc050e0f10' +
    '1112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d0c',
  'entry-e-empty': '07652d656d707479024003c003e8076401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d20902',
  'entry-f-inline':
    '08662d696e6c696e65010804a403e8076401ff93ebdc0380c49fd50c7b82c49fd50c00904e811000d209010302000206' +
    'c801000107cb01',
  'entry-g-mapref':
    '08672d6d6170726566011006a403e8076401ff93ebdc0380c49fd50c7b82c49fd50c00808080808020811000d2090188' +
    '270700e807882715161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333407',
  'entry-h-empty': '07682d656d707479010007a403e8076401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d2090100',
  'entry-i-linked':
    '08692d6c696e6b6564010e08a403e8076401ff93ebdc0380c49fd50c7b82c49fd50c0001811000d20902010100010780' +
    '8080808040',
  'entry-s-sock': '06732d736f636b07000ca403e8076401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d20901',
  'entry-y-link': '06792d6c696e6b03000da403e8076401ff93ebdc0380c49fd50c7b82c49fd50c0006811000d2090105662dff696e',
  'entry-z-xattrs':
    '097a2d786174747273ff01010ea403e8076401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d209010002107365' +
    '6375726974792e73656c696e7578017806757365722e6100',
  'root-entry':
    '00022000ed03e8076401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d20904070040ac020708090a0b0c0d0e0f' +
    '101112131415161718191a1b1c1d1e1f2021222324252603',
  'dir-all-types':
    '01010c06612d6669666f060009a403e8076401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d2090105622d626c' +
    '6b05000aa403e8076401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d20901080105632d63687204000ba403e8' +
    '076401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d20901010305642d646972020002ed03e8076401ff93ebdc' +
    '0380c49fd50c7b82c49fd50c0000811000d2090306018020bc050e0f101112131415161718191a1b1c1d1e1f20212223' +
    '2425262728292a2b2c2d0c07652d656d707479024003c003e8076401ff93ebdc0380c49fd50c7b82c49fd50c00008110' +
    '00d2090208662d696e6c696e65010804a403e8076401ff93ebdc0380c49fd50c7b82c49fd50c00904e811000d2090103' +
    '02000206c801000107cb0108672d6d6170726566011006a403e8076401ff93ebdc0380c49fd50c7b82c49fd50c008080' +
    '80808020811000d2090188270700e807882715161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132' +
    '33340707682d656d707479010007a403e8076401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d209010008692d' +
    '6c696e6b6564010e08a403e8076401ff93ebdc0380c49fd50c7b82c49fd50c0001811000d20902010100010780808080' +
    '804006732d736f636b07000ca403e8076401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d2090106792d6c696e' +
    '6b03000da403e8076401ff93ebdc0380c49fd50c7b82c49fd50c0006811000d2090105662dff696e097a2d7861747472' +
    '73ff01010ea403e8076401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d2090100021073656375726974792e73' +
    '656c696e7578017806757365722e6100',
  'dir-all-types-id': 'b364496ea54c89078796c339dea5fa0af5e41e00426394e3f36a88242507e105',
  'dir-small':
    '01010206612d6669666f060009a403e8076401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d2090107682d656d' +
    '707479010007a403e8076401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d2090100',
  'dirdelta':
    '0201070040ac02b364496ea54c89078796c339dea5fa0af5e41e00426394e3f36a88242507e1050c030106612d666966' +
    '6f0600098003e8076401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d209010105622d6e6577010014a403e807' +
    '6401ff93ebdc0380c49fd50c7b82c49fd50c0000811000d20901000207682d656d707479',
  'dirindex':
    '03010088270200090040d00f1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3ba814056d' +
    '3030343209009010ec0e232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142e012',
  'mapleaf': '04010c804002000a03649e06010477',
  'mapinner':
    '050114000400000000000000000000000000000000000000000000000000000000000080030040282a2b2c2d2e2f3031' +
    '32333435363738393a3b3c3d3e3f404142434445464748490b030068323132333435363738393a3b3c3d3e3f40414243' +
    '4445464748494a4b4c4d4e4f508020',
  'idpage-links': '060101038110000c0028028110000d00290382100100010201',
  'idindex':
    '07010100a84602000000040040840738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565788' +
    '278110004d0400c407a0063f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5ea01f',
  'idpage-bi':
    '060102030100054d804009011402010200010000010c0601000600000000000004010007018080808004000000000a0c' +
    '004063464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465',
  'pack':
    '4246535041434b00020000000c0000000300000000000000000000000000000000000000000000000000000000000000' +
    '0000000000000000000000000000000066697273742073746f7265642070696563657365636f6e644000000000000000' +
    '1200000064000000010000004d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c52000000' +
    '00000000060000001e000000040000005455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f70717273' +
    '58000000000000000200000068000000dc5b8660f186130142465350454e4400',
  'unit-v2-header':
    '424653554e49540002000200070000000200000064000000400000000200000001000000130100000000000000000000' +
    '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000',
  // the same header naming dictionary 0x4cbd156e (flag bit2, bytes 40–43; §2.9.1)
  'unit-v2-header-dict':
    '424653554e49540002000600070000000200000064000000400000000200000001000000130100006e15bd4c00000000' +
    '000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000',
  // a dictionary file of stream 7 (§2.9.1) holding a 16-byte zstd dictionary with id 0x4cbd156e
  'dict-file': '424653444943540001000000070000006e15bd4c10000000c73ebdb886e29fff000000000000000000000000000000000000000000000000000000000000000037a430ec6e15bd4c0001020304050607',
  'unit-v2-index': 'e8030000000004000102030405060708f401000000400200111213141516171803000307362301',
  'unit-v2-trailer': '3c06000000000000020000002700000083431964bef0f3a642465355454e4400',
  'unit-v2-index-plain': 'e8030000000004000102030405060708f401000000400200111213141516171800',
  'envelope-v2':
    '42465352554e0000020000000000000003000000000000000300000000000000ba7816bf8f01cfea414140de5dae2223' +
    'b00361a396177a9cb410ff61f20015ad616263',
  'envelope-v2-encrypted':
    '4246534d414e49000200030000000000e8030000000000000e00000000000000abababababababababababababababab' +
    'abababababababababababababababab',
}

/** The JSON records, as text (UTF-8). */
const GOLDEN_TEXT: Record<string, string> = {
  'config': '{"format":2,"repoId":"0123456789abcdef0123456789abcdef","created":"2026-12-02T10:00:00.000Z","blockBytes":4096,"hashAlg":"xxh64","compression":"zstd","features":{"incompat":["pieces"],"rocompat":[],"compat":[]},"defaults":{"unitBlocks":5120,"frameBlocks":{"files":32,"volume":32},"level":3,"packBytes":16777216,"dirDelta":true,"dedupMinBytes":1},"encryption":null,"mac":null}',
  'manifest': '{"format":2,"id":12,"rev":1,"run":12,"time":"2026-12-02T10:00:00.000Z","endTime":"2026-12-02T10:05:00.000Z","label":"nightly","tags":["a","b"],"host":"h1","user":"root","kind":"files","group":null,"sources":[{"path":"/srv/data","parent":11,"nextOrd":1000,"ordBase":0}],"rootEntry":"AAIAAO0D6AdkAf+T69wDgMSf1Qx7gsSf1QwAAIEQANIJAwwA9AOEB4yNjo+QkZKTlJWWl5iZmpucnZ6foKGio6SlpqeoqaqrBA==","links":"12.0.1400.40:939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2","biLog":null,"biIndex":null,"stream":{"blocks":5000},"merged":null,"partial":false,"stats":{"entries":4,"pieces":3}}',
  'stream': '{"stream":12,"unitBlocks":5120,"frameBlocks":256,"streamBlocks":12000,"units":3,"level":3,"hashAlg":"xxh64","hashes":{"bytes":96064,"sha256":"abababababababababababababababababababababababababababababababab"},"created":"2026-12-02T10:05:00.000Z"}',
  'run': '{"run":12,"kind":"backup","state":"committed","host":"h1","pid":4242,"lease":"0123456789abcdef","started":"2026-12-02T10:00:00.000Z","ended":"2026-12-02T10:05:00.000Z","gen":12}',
  'lease': '{"lease":"fedcba9876543210","kind":"mount","host":"h1","pid":77,"pidStart":123456,"started":"2026-12-02T10:00:00.000Z","renewed":"2026-12-02T10:10:00.000Z","expiresAfterMs":1800000,"pins":["12@1","9@2"]}',
  'guard-lock': "{\"pid\":0,\"host\":\"bfs-format-2 (this bfs reads format 1: upgrade bfs)\",\"time\":\"2026-12-02T10:00:00.000Z\",\"command\":\"format 2 repository\"}\n",
}

function pin(name: string, b: Buffer): void {
  if (process.env.BFS_PRINT_GOLDEN) return void console.log(`GOLDEN ${name} ${b.toString('hex')}`)
  if (name in GOLDEN_TEXT) expect(b.toString('utf8'), `golden vector ${name}`).toBe(GOLDEN_TEXT[name])
  else expect(b.toString('hex'), `golden vector ${name}`).toBe(GOLDEN[name])
}

// ---- helpers --------------------------------------------------------------------------------

/** The piece id of an unencrypted repository: BLAKE3 keyed with 32 zero bytes. */
const ZERO_KEY = Buffer.alloc(32)
const pieceId = (payload: Buffer): Buffer => blake3(payload, ZERO_KEY)
/** XXH64 seed 0 (unencrypted repositories' page-cut hash). */
const xxh64 = (b: Buffer): bigint => {
  const o = Buffer.alloc(8)
  xxh64Into(b, o, 0)
  return o.readBigUInt64LE(0)
}

const code = (fn: () => unknown): string => {
  try {
    fn()
  } catch (err) {
    if (!(err instanceof FormatError)) throw err
    return err.code
  }
  throw new Error('expected a FormatError')
}

/** Every truncation, three bit flips per byte, and one trailing byte. */
function mutations(b: Buffer): { truncated: Buffer[]; other: Buffer[] } {
  const truncated: Buffer[] = []
  for (let n = 0; n < b.length; n++) truncated.push(b.subarray(0, n))
  const other: Buffer[] = [Buffer.concat([b, Buffer.from([0])])]
  for (let i = 0; i < b.length; i++) {
    for (const bit of [0x01, 0x10, 0x80]) {
      const c = Buffer.from(b)
      c[i]! ^= bit
      other.push(c)
    }
  }
  return { truncated, other }
}

/**
 * The robustness property (see the file comment). Returns how many mutations were refused,
 * so a caller can insist that most were.
 */
function robust<T>(b: Buffer, decode: (x: Buffer) => T, encode: (v: T) => Buffer): number {
  const { truncated, other } = mutations(b)
  for (const t of truncated) expect(() => decode(t), `truncated to ${t.length} bytes`).toThrow(FormatError)
  let refused = truncated.length
  for (const m of other) {
    let v: T
    try {
      v = decode(m)
    } catch (err) {
      expect(err, `mutation ${m.toString('hex')}`).toBeInstanceOf(FormatError)
      refused++
      continue
    }
    expect(encode(v).toString('hex'), `accepted mutation re-encodes to itself`).toBe(m.toString('hex'))
  }
  return refused
}

const id = (seed: number): Buffer => Buffer.from(Array.from({ length: 32 }, (_, i) => (seed * 7 + i) & 0xff))
const ref = (run: number, pack: number, offset: number, storedLen: number, seed: number): PieceRef => ({ run, pack, offset, storedLen, id: id(seed) })
const REF = ref(7, 0, 64, 300, 1)

const enc = (fn: (w: ByteWriter) => void): Buffer => {
  const w = new ByteWriter(64)
  fn(w)
  return Buffer.from(w.finish())
}
const ent = (type: FileType, name: string, fill: Partial<Entry2> = {}): Entry2 => {
  const e = newEntry2(type, Buffer.from(name, 'latin1'))
  Object.assign(e, { ord: 5, mode: 0o644, uid: 1000, gid: 100, mtimeSec: 1_700_000_000, mtimeNsec: 123, ctimeSec: 1_700_000_001, atimeSec: -1, atimeNsec: 999_999_999, srcDev: 2049, srcInoLo: 1234 }, fill)
  return e
}

/** One entry of every type and flag (§2.13.1), names sorted. */
function allTypes(): Entry2[] {
  return [
    ent(FileType.Fifo, 'a-fifo', { ord: 9 }),
    ent(FileType.BlockDev, 'b-blk', { ord: 10, rdevMajor: 8, rdevMinor: 1 }),
    ent(FileType.CharDev, 'c-chr', { ord: 11, rdevMajor: 1, rdevMinor: 3 }),
    ent(FileType.Dir, 'd-dir', { ord: 2, mode: 0o755, nlink: 3, dir: { child: ref(6, 1, 4096, 700, 2), entries: 12 } }),
    ent(FileType.Dir, 'e-empty', { ord: 3, mode: 0o700, nlink: 2 }),
    ent(FileType.File, 'f-inline', { ord: 4, size: 10_000, dataBlocks: 3, map: { kind: 'inline', extents: [{ fileBlock: 0, count: 2, stream: 6, streamBlock: 100 }, { fileBlock: 2, count: 1, stream: 7, streamBlock: 0 }] } }),
    ent(FileType.File, 'g-mapref', { ord: 6, size: 2 ** 40, dataBlocks: 5000, map: { kind: 'ref', root: ref(7, 0, 1000, 5000, 3), extentCount: 7 } }),
    ent(FileType.File, 'h-empty', { ord: 7, size: 0 }),
    ent(FileType.File, 'i-linked', { ord: 8, size: 1, nlink: 2, flags: E_LINKED | E_CHANGED_WHILE_READ, dataBlocks: 1, map: { kind: 'inline', extents: [{ fileBlock: 0, count: 1, stream: 7, streamBlock: 2 ** 40 }] } }),
    ent(FileType.Socket, 's-sock', { ord: 12 }),
    ent(FileType.Symlink, 'y-link', { ord: 13, size: 6, target: Buffer.from('f-\xffin', 'latin1') }),
    ent(FileType.File, 'z-xattrs\xff', { ord: 14, xattrs: [[Buffer.from('security.selinux'), Buffer.from('x')], [Buffer.from('user.a'), Buffer.alloc(0)]] }),
  ]
}

// ---- common encodings ------------------------------------------------------------------------

describe('PieceRef and extent lists (§2.4)', () => {
  it('a PieceRef: golden bytes and JSON form, round trips, order', () => {
    const b = enc((w) => writePieceRef(w, REF))
    pin('pieceref', b)
    expect(readPieceRef(new StrictReader(b, 'r'))).toEqual(REF)
    const big = ref(99_999_999, 99_999_999, 2 ** 53 - 1, MAX_PIECE_STORED_BYTES, 9)
    pin('pieceref-max', enc((w) => writePieceRef(w, big)))
    expect(pieceRefToString(REF)).toBe(`7.0.64.300:${id(1).toString('hex')}`)
    expect(parsePieceRef(pieceRefToString(big), 'j')).toEqual(big)
    expect(comparePieceRefs(ref(7, 0, 64, 1, 0), ref(7, 0, 65, 1, 0))).toBeLessThan(0)
    expect(comparePieceRefs(ref(7, 1, 64, 1, 0), ref(7, 0, 9999, 1, 0))).toBeGreaterThan(0)
    expect(comparePieceRefs(ref(6, 9, 9999, 1, 0), ref(7, 0, 64, 1, 0))).toBeLessThan(0)
  })
  it('a PieceRef out of range is refused, in bytes and in JSON', () => {
    const bytes = (r: Record<string, number>): Buffer => enc((w) => w.varint(r.run!).varint(r.pack!).varint(r.offset!).varint(r.storedLen!).bytes(id(0)))
    for (const bad of [{ run: 0, pack: 0, offset: 64, storedLen: 1 }, { run: 1, pack: 0, offset: 63, storedLen: 1 }, { run: 1, pack: 0, offset: 64, storedLen: 0 }, { run: 1, pack: 0, offset: 64, storedLen: MAX_PIECE_STORED_BYTES + 1 }, { run: 100_000_000, pack: 0, offset: 64, storedLen: 1 }]) {
      expect(code(() => readPieceRef(new StrictReader(bytes(bad), 'r')))).toBe('BAD_VALUE')
      expect(() => writePieceRef(new ByteWriter(), { ...bad, id: id(0) } as PieceRef)).toThrow(RangeError)
    }
    for (const s of ['7.0.64.300:' + 'ab'.repeat(31), '7.0.64.300' + 'ab'.repeat(32), '0.0.64.1:' + 'ab'.repeat(32), '7.00.64.1:' + 'ab'.repeat(32), '7.0.63.1:' + 'ab'.repeat(32), 7, null, '7.0.64.1:' + 'AB'.repeat(32)]) {
      expect(code(() => parsePieceRef(s, 'j'))).toBe('BAD_VALUE')
    }
    expect(robust(enc((w) => writePieceRef(w, REF)), (x) => {
      const r = new StrictReader(x, 'r')
      const v = readPieceRef(r)
      if (r.remaining) throw new FormatError('TRAILING_BYTES', 'x')
      return v
    }, (v) => enc((w) => writePieceRef(w, v)))).toBeGreaterThan(10)
  })
  it('an extent list: golden bytes (gaps, negative deltas, large values), canonical only', () => {
    const ext: Extent[] = [
      { fileBlock: 3, count: 2, stream: 5, streamBlock: 1000 },
      { fileBlock: 5, count: 1, stream: 6, streamBlock: 0 },
      { fileBlock: 6, count: 4, stream: 5, streamBlock: 10 }, // a negative delta
      { fileBlock: 2 ** 40, count: 2 ** 20, stream: 99_999_999, streamBlock: 2 ** 45 },
    ]
    const b = enc((w) => writeExtentList(w, ext))
    pin('extents', b)
    expect(readExtentList(new StrictReader(b, 'x'))).toEqual(ext)
    // a BI overlay's zeros (stream 0) only where allowed
    const zeros: Extent[] = [{ fileBlock: 0, count: 3, stream: 0, streamBlock: 0 }, { fileBlock: 3, count: 1, stream: 4, streamBlock: 7 }]
    const z = enc((w) => writeExtentList(w, zeros, { allowZeros: true }))
    pin('extents-zeros', z)
    expect(readExtentList(new StrictReader(z, 'x'), { allowZeros: true })).toEqual(zeros)
    expect(code(() => readExtentList(new StrictReader(z, 'x')))).toBe('BAD_VALUE')
    // two extents that continue each other are one: refused, and canonicalExtents merges them
    const split: Extent[] = [{ fileBlock: 0, count: 2, stream: 5, streamBlock: 10 }, { fileBlock: 2, count: 3, stream: 5, streamBlock: 12 }]
    expect(() => enc((w) => writeExtentList(w, split))).toThrow(RangeError)
    expect(code(() => readExtentList(new StrictReader(Buffer.from('02000205140003050000', 'hex'), 'x')))).toBe('BAD_VALUE')
    expect(canonicalExtents(split)).toEqual([{ fileBlock: 0, count: 5, stream: 5, streamBlock: 10 }])
    // a non-minimal varint (count 1 as 0x81 0x00) is refused by format 2 readers
    expect(code(() => readExtentList(new StrictReader(Buffer.from('0100810005', 'hex'), 'x')))).toBe('BAD_VALUE')
    // an empty extent, a limit
    expect(code(() => readExtentList(new StrictReader(Buffer.from('0100000500', 'hex'), 'x')))).toBe('BAD_VALUE')
    expect(code(() => readExtentList(new StrictReader(b, 'x'), { limit: 100 }))).toBe('BAD_VALUE')
  })
})

// ---- entries and directories -----------------------------------------------------------------

describe('entries (§2.13.1)', () => {
  it('every type and flag: golden bytes, round trip', () => {
    for (const e of allTypes()) {
      const b = entryBytes(e)
      pin(`entry-${e.name.toString('latin1').replace(/[^a-z-]/g, '')}`, b)
      const back = readEntry(new StrictReader(b, 'e'))
      expect(back).toEqual({ ...e, flags: back.flags })
      expect(entryBytes(back).equals(b)).toBe(true)
    }
  })
  it('the root entry: empty name, ord 0, a directory; inline in the manifest', () => {
    const root = ent(FileType.Dir, '', { ord: 0, mode: 0o755, nlink: 4, dir: { child: REF, entries: 3 }, flags: E_SYNTHETIC })
    const b = encodeRootEntry(root)
    pin('root-entry', b)
    expect(decodeRootEntry(b, 'r')).toEqual(root)
    const empty = ent(FileType.Dir, '', { ord: 0 })
    expect(decodeRootEntry(encodeRootEntry(empty), 'r').dir).toBeNull()
    expect(() => encodeRootEntry({ ...root, ord: 1 })).toThrow(RangeError)
    expect(() => encodeRootEntry({ ...root, name: Buffer.from('x') })).toThrow(RangeError)
    expect(() => encodeRootEntry(ent(FileType.File, '', { ord: 0 }))).toThrow(RangeError)
    // and an ordinary entry may not have the empty name or ord 0
    expect(() => entryBytes({ ...allTypes()[0]!, ord: 0 })).toThrow(RangeError)
    expect(() => entryBytes({ ...allTypes()[0]!, name: Buffer.alloc(0) })).toThrow(RangeError)
    expect(robust(b, (x) => decodeRootEntry(x, 'r'), (v) => encodeRootEntry(v))).toBeGreaterThan(100)
  })
  it('refuses what §2.13.1 forbids', () => {
    const file = allTypes()[5]!
    const bad: Array<[string, Entry2]> = [
      ['slash in a name', { ...file, name: Buffer.from('a/b') }],
      ['NUL in a name', { ...file, name: Buffer.from('a\0b') }],
      ['4,097-byte name', { ...file, name: Buffer.alloc(4097, 0x61) }],
      ['mode beyond 0o7777', { ...file, mode: 0o10000 }],
      ['nanoseconds', { ...file, mtimeNsec: 1_000_000_000 }],
      ['inline map beyond the size', { ...file, size: 8192 }],
      ['dataBlocks ≠ the inline map', { ...file, dataBlocks: 4 }],
      ['5 inline extents', { ...file, size: 1 << 20, dataBlocks: 5, map: { kind: 'inline', extents: [0, 2, 4, 6, 8].map((b) => ({ fileBlock: b, count: 1, stream: 1, streamBlock: b * 10 })) } }],
      ['an inline map over 48 bytes', { ...file, size: 2 ** 50, dataBlocks: 4, map: { kind: 'inline', extents: [0, 1, 2, 3].map((k) => ({ fileBlock: k * 2 ** 44, count: 1, stream: 99_999_999, streamBlock: k * 2 ** 50 })) } }],
      ['data blocks without a map', { ...file, map: null }],
      ['a linked directory', { ...allTypes()[3]!, flags: E_LINKED }],
      ['a synthetic file', { ...file, flags: E_SYNTHETIC }],
      ['a changed-while-read fifo', { ...allTypes()[0]!, flags: E_CHANGED_WHILE_READ }],
      ['xattrs out of order', { ...allTypes()[11]!, xattrs: [[Buffer.from('user.b'), Buffer.alloc(0)], [Buffer.from('user.a'), Buffer.alloc(0)]] }],
      ['an xattr value over 64 KiB', { ...allTypes()[11]!, xattrs: [[Buffer.from('user.b'), Buffer.alloc(65537)]] }],
      ['a symlink without a target', { ...allTypes()[10]!, target: null }],
      ['a size on a directory', { ...allTypes()[3]!, size: 4096 }],
      ['a device number on a file', { ...file, rdevMajor: 1 }],
    ]
    for (const [what, e] of bad) expect(() => entryBytes(e), what).toThrow(RangeError)
    // the decoder refuses the same things when they arrive as bytes: flags on the wrong type
    const fifo = entryBytes(allTypes()[0]!) // name(7) type flags …
    const flagsAt = 1 + 6 + 1
    for (const f of [8, 16, 64, 128, 8 | 16]) {
      const b = Buffer.from(fifo)
      b[flagsAt] = f
      expect(code(() => readEntry(new StrictReader(b, 'e'))), `flags ${f}`).toBe('BAD_VALUE')
    }
    const typed = Buffer.from(fifo)
    typed[flagsAt - 1] = 8
    expect(code(() => readEntry(new StrictReader(typed, 'e')))).toBe('BAD_VALUE')
  })
  it('inline exactly when the map fits: ≤ 4 extents in ≤ 48 bytes', () => {
    const one = [{ fileBlock: 0, count: 1, stream: 1, streamBlock: 0 }]
    expect(fitsInline(one)).toBe(true)
    expect(fitsInline([])).toBe(false)
    expect(fitsInline([0, 2, 4, 6].map((b) => ({ fileBlock: b, count: 1, stream: 3, streamBlock: b })))).toBe(true)
    expect(fitsInline([0, 2, 4, 6, 8].map((b) => ({ fileBlock: b, count: 1, stream: 3, streamBlock: b })))).toBe(false)
  })
})

describe('inline map size (§2.13.1)', () => {
  it('inlineMapBytes counts exactly the bytes writeExtentList writes (it no longer encodes to measure)', () => {
    let x = 99
    const rnd = (n: number): number => {
      x = (x * 1103515245 + 12345) >>> 0
      return x % n
    }
    const scales = [1, 100, 1 << 14, 1 << 21, 2 ** 35, 2 ** 49]
    for (let t = 0; t < 3000; t++) {
      const list: Extent[] = []
      let fb = scales[rnd(scales.length)]! * rnd(3)
      for (let i = 0, n = 1 + rnd(4); i < n; i++) {
        fb += rnd(2) ? 0 : 1 + rnd(scales[rnd(scales.length)]!)
        const count = 1 + rnd(scales[rnd(4)]!)
        list.push({ fileBlock: fb, count, stream: 1 + rnd(scales[rnd(4)]!), streamBlock: rnd(scales[rnd(scales.length)]!) })
        fb += count
      }
      const canon = canonicalExtents(list)
      const w = new ByteWriter(64)
      writeExtentList(w, canon)
      expect(inlineMapBytes(canon)).toBe(canon.length > 4 ? Infinity : w.length)
    }
    // svarint boundaries of the stream block delta: −64 (1 byte), 64 and −65 (2 bytes), …
    for (const d of [-64, -65, 63, 64, -8192, -8193, 8191, 8192, -(2 ** 20), 2 ** 20]) {
      const list: Extent[] = [{ fileBlock: 0, count: 1, stream: 1, streamBlock: 2 ** 21 }, { fileBlock: 5, count: 1, stream: 1, streamBlock: 2 ** 21 + 1 + d }]
      const w = new ByteWriter(64)
      writeExtentList(w, list)
      expect(inlineMapBytes(list)).toBe(w.length)
    }
  })
})

describe('DIR, DIRDELTA, DIRINDEX (§2.13)', () => {
  it('DIR: golden bytes, lookup by binary search, robust', () => {
    const entries = allTypes()
    const b = encodeDir(entries)
    pin('dir-all-types', b)
    pin('dir-all-types-id', pieceId(b))
    expect(pieceKind(b, 'd')).toBe(PieceKind.Dir)
    const back = decodeDir(b, 'd')
    expect(back.map((e) => entryBytes(e).toString('hex'))).toEqual(entries.map((e) => entryBytes(e).toString('hex')))
    for (let i = 0; i < entries.length; i++) expect(findEntry(back, entries[i]!.name)).toBe(i)
    for (const miss of ['', 'a', 'd-dir\0', 'zz', 'z-xattrs']) expect(findEntry(back, Buffer.from(miss, 'latin1'))).toBe(-1)
    const small = encodeDir([allTypes()[0]!, allTypes()[7]!])
    pin('dir-small', small)
    expect(robust(small, (x) => decodeDir(x, 'd'), (v) => encodeDir(v))).toBeGreaterThan(small.length)
    // the piece id names the raw payload: a changed byte no longer matches its ref
    const r = { ...REF, id: pieceId(small) }
    checkPieceId(small, r, pieceId, 'd')
    const flipped = Buffer.from(small)
    flipped[flipped.length - 1]! ^= 1
    expect(code(() => checkPieceId(flipped, r, pieceId, 'd'))).toBe('BAD_CHECKSUM')
  })
  it('DIR and DIRINDEX of the smallest possible entries and children decode (the count checks are not too strict)', () => {
    // 19 bytes: a one-byte name, a fifo with every number 0 but its ord
    const tiny = Array.from({ length: 250 }, (_, i) => Object.assign(newEntry2(FileType.Fifo, Buffer.from([i + 2 === 0x2f ? 0xfe : i + 2])), { ord: 1, nlink: 0 }))
    tiny.sort((a, b) => Buffer.compare(a.name, b.name))
    expect(entryBytes(tiny[0]!).length).toBe(19)
    expect(decodeDir(encodeDir(tiny), 'd')).toHaveLength(250)
    const kids = Array.from({ length: 100 }, (_, i) => ({ firstName: i ? Buffer.from([i < 0x2f ? i : i + 1]) : Buffer.alloc(0), ref: ref(1, 0, 64, 1, 0), entries: 1 }))
    expect(decodeDirIndex(encodeDirIndex({ level: 0, totalEntries: 100, children: kids }), 'x').children).toHaveLength(100)
  })
  it('DIR: refuses unsorted or duplicate names, no entries, a wrong kind or version', () => {
    const [a, b] = [allTypes()[0]!, allTypes()[1]!]
    const raw = (list: Entry2[]): Buffer => Buffer.concat([Buffer.from([PieceKind.Dir, 1, list.length]), ...list.map((e) => entryBytes(e))])
    expect(decodeDir(raw([a, b]), 'd')).toHaveLength(2)
    expect(code(() => decodeDir(raw([b, a]), 'd'))).toBe('BAD_VALUE')
    expect(code(() => decodeDir(raw([a, a]), 'd'))).toBe('BAD_VALUE')
    expect(code(() => decodeDir(Buffer.from([1, 1, 0]), 'd'))).toBe('BAD_VALUE')
    expect(code(() => decodeDir(Buffer.from([1, 2, 0]), 'd'))).toBe('BAD_VERSION')
    expect(code(() => decodeDir(Buffer.concat([Buffer.from([PieceKind.DirIndex]), raw([a]).subarray(1)]), 'd'))).toBe('BAD_VALUE')
    expect(code(() => pieceKind(Buffer.from([10, 1]), 'd'))).toBe('BAD_VALUE')
    expect(() => encodeDir([b, a])).toThrow(RangeError)
    expect(() => encodeDir([])).toThrow(RangeError)
    // a count far beyond the bytes is refused before anything is allocated
    expect(code(() => decodeDir(Buffer.from([1, 1, 0xff, 0xff, 0xff, 0x7f]), 'd'))).toBe('BAD_VALUE')
  })
  it('DIRDELTA: golden bytes, applied over its base, computed by diffDir; cumulative and depth 1', () => {
    const base = allTypes()
    const baseDir = encodeDir(base)
    const baseRef = { ...REF, id: pieceId(baseDir) }
    const next = base.filter((e) => e.name.toString('latin1') !== 'h-empty').map((e) => (e.name.toString('latin1') === 'a-fifo' ? { ...e, mode: 0o600 } : e))
    next.splice(2, 0, ent(FileType.File, 'b-new', { ord: 20 }))
    const ops = diffDir(base, next)
    expect(ops.map((o) => `${o.op} ${(o.op === 'put' ? o.entry.name : o.name).toString('latin1')}`)).toEqual(['put a-fifo', 'put b-new', 'delete h-empty'])
    const delta: DirDelta = { base: baseRef, resultEntries: next.length, ops }
    const b = encodeDirDelta(delta)
    pin('dirdelta', b)
    const back = decodeDirDelta(b, 'dd')
    expect(back.base).toEqual(baseRef)
    expect(applyDirDelta(base, back, 'dd').map((e) => entryBytes(e).toString('hex'))).toEqual(next.map((e) => entryBytes(e).toString('hex')))
    const load = (r: PieceRef): Buffer => {
      expect(r).toEqual(baseRef)
      return baseDir
    }
    expect(readDirPiece(b, load, 'dd')).toHaveLength(next.length)
    expect(diffDir(base, base)).toEqual([])
    // depth > 1: a delta whose base is a delta is refused
    expect(code(() => readDirPiece(b, () => b, 'dd'))).toBe('BAD_VALUE')
    expect(() => readDirPiece(b, () => b, 'dd')).toThrow(/depth 1/)
    // wrong result count, delete of a name the base lacks, unsorted ops
    expect(code(() => applyDirDelta(base, { ...back, resultEntries: next.length + 1 }, 'dd'))).toBe('BAD_VALUE')
    expect(code(() => applyDirDelta(base, { ...back, ops: [{ op: 'delete', name: Buffer.from('nope') }] }, 'dd'))).toBe('BAD_VALUE')
    expect(() => encodeDirDelta({ ...delta, ops: [...ops].reverse() })).toThrow(RangeError)
    expect(() => encodeDirDelta({ ...delta, ops: [] })).toThrow(RangeError)
    expect(robust(b, (x) => decodeDirDelta(x, 'dd'), (v) => encodeDirDelta(v))).toBeGreaterThan(b.length)
    // the writer rule: ≥ 64 base entries and a delta of ≤ ¼ of the base's bytes
    expect(deltaWorthIt(64, 4000, 1000)).toBe(true)
    expect(deltaWorthIt(63, 4000, 10)).toBe(false)
    expect(deltaWorthIt(64, 4000, 1001)).toBe(false)
  })
  it('DIRINDEX: golden bytes, lookups, page checks, robust', () => {
    const d: DirIndex = {
      level: 0,
      totalEntries: 5000,
      children: [
        { firstName: Buffer.alloc(0), ref: ref(9, 0, 64, 2000, 4), entries: 2600 },
        { firstName: Buffer.from('m0042'), ref: ref(9, 0, 2064, 1900, 5), entries: 2400 },
      ],
    }
    const b = encodeDirIndex(d)
    pin('dirindex', b)
    expect(decodeDirIndex(b, 'x')).toEqual(d)
    expect(findIndexChild(d.children, Buffer.from('a'))).toBe(0)
    expect(findIndexChild(d.children, Buffer.from('m0041'))).toBe(0)
    expect(findIndexChild(d.children, Buffer.from('m0042'))).toBe(1)
    expect(findIndexChild(d.children, Buffer.from('zzz'))).toBe(1)
    for (const bad of [
      { ...d, totalEntries: 4999 },
      { ...d, level: 5 },
      { ...d, children: [d.children[1]!, d.children[0]!] },
      { ...d, children: [{ ...d.children[0]!, firstName: Buffer.from('a') }, d.children[1]!] },
      { ...d, children: [d.children[0]!, { ...d.children[1]!, entries: 0 }] },
      { ...d, children: [], totalEntries: 0 },
    ]) expect(() => encodeDirIndex(bad)).toThrow(RangeError)
    expect(robust(b, (x) => decodeDirIndex(x, 'x'), (v) => encodeDirIndex(v))).toBeGreaterThan(b.length)
    const page = [ent(FileType.Fifo, 'm0042'), ent(FileType.Fifo, 'm5')]
    checkPage(page, { ...d.children[1]!, entries: 2 }, null, 'p')
    expect(code(() => checkPage(page, { ...d.children[1]!, entries: 3 }, null, 'p'))).toBe('BAD_VALUE')
    expect(code(() => checkPage(page, { ...d.children[1]!, entries: 2 }, Buffer.from('m1'), 'p'))).toBe('BAD_VALUE')
    expect(code(() => checkPage(page, { ...d.children[1]!, firstName: Buffer.from('m0041'), entries: 2 }, null, 'p'))).toBe('BAD_VALUE')
  })
  it('pages are cut by content: an insert moves at most one boundary, so neighbours stay shared', () => {
    const names = Array.from({ length: 20_000 }, (_, i) => `f${String(i * 2).padStart(6, '0')}`)
    const make = (list: string[]): Entry2[] => list.map((n, i) => ent(FileType.Fifo, n, { ord: i + 1 }))
    const before = cutDirPages(make(names), xxh64)
    expect(before.length).toBeGreaterThan(3)
    for (const p of before.slice(0, -1)) expect(p.length).toBeGreaterThanOrEqual(256)
    for (const p of before) expect(p.length).toBeLessThanOrEqual(8192)
    const withNew = [...names]
    withNew.splice(9000, 0, 'f017999') // between f017998 and f018000
    const after = cutDirPages(make(withNew), xxh64)
    const key = (p: Entry2[]): string => p.map((e) => e.name.toString()).join(',')
    const same = after.filter((p) => before.some((q) => key(p) === key(q))).length
    expect(same).toBeGreaterThanOrEqual(before.length - 2)
    // a directory of 4,096 small entries is one DIR; 4,097 is paged
    expect(fitsOneDir(make(names.slice(0, 4096)))).toBe(true)
    expect(fitsOneDir(make(names.slice(0, 4097)))).toBe(false)
    // long names and targets are cut by bytes too: no page over 256 KiB of entries
    const fat = Array.from({ length: 3000 }, (_, i) => ent(FileType.Symlink, `${String(i).padStart(5, '0')}${'x'.repeat(240)}`, { ord: i + 1, size: 4000, target: Buffer.alloc(4000, 0x2f) }))
    for (const p of cutDirPages(fat, () => 1n)) expect(p.reduce((s, e) => s + entryBytes(e).length, 0)).toBeLessThanOrEqual(256 * 1024)
    const groups = groupIndexChildren(Array.from({ length: 10_000 }, (_, i) => ({ firstName: Buffer.from(String(i)) })), xxh64)
    expect(groups.every((g) => g.length <= 4096)).toBe(true)
    expect(groups.slice(0, -1).every((g) => g.length >= 64)).toBe(true)
    expect(groups.flat()).toHaveLength(10_000)
  })
})

// ---- maps ------------------------------------------------------------------------------------

describe('map pieces (§2.14)', () => {
  it('MAPLEAF and MAPINNER: golden bytes, robust', () => {
    const leaf = { shift: 12, base: 8192, extents: [{ fileBlock: 8192, count: 10, stream: 3, streamBlock: 50 }, { fileBlock: 9000, count: 1, stream: 4, streamBlock: 0 }] }
    const lb = encodeMapLeaf(leaf)
    pin('mapleaf', lb)
    expect(decodeMapLeaf(lb, 'l')).toEqual(leaf)
    expect(robust(lb, (x) => decodeMapLeaf(x, 'l'), (v) => encodeMapLeaf(v))).toBeGreaterThan(lb.length)
    const inner = { shift: 20, base: 0, children: [{ slot: 2, ref: ref(3, 0, 64, 40, 6), dataBlocks: 11 }, { slot: 255, ref: ref(3, 0, 104, 50, 7), dataBlocks: 4096 }] }
    const ib = encodeMapInner(inner)
    pin('mapinner', ib)
    expect(decodeMapInner(ib, 'i')).toEqual(inner)
    expect(robust(ib, (x) => decodeMapInner(x, 'i'), (v) => encodeMapInner(v))).toBeGreaterThan(ib.length)
    expect(mapChildSlot(inner, 3 * 4096 - 1)).toBe(2)
    for (const bad of [{ ...leaf, shift: 13 }, { ...leaf, base: 4096 + 1 }, { ...leaf, extents: [] }, { ...leaf, extents: [{ fileBlock: 8192 + 4095, count: 2, stream: 1, streamBlock: 0 }] }]) {
      expect(() => encodeMapLeaf(bad)).toThrow(RangeError)
    }
    for (const bad of [{ ...inner, shift: 12 }, { ...inner, children: [] }, { ...inner, children: [inner.children[1]!, inner.children[0]!] }, { ...inner, children: [{ ...inner.children[0]!, dataBlocks: 4097 }] }]) {
      expect(() => encodeMapInner(bad)).toThrow(RangeError)
    }
  })
  it('buildMap: inline when it fits, else a tree that readMap gives back; equal regions share pieces', () => {
    const pieces = new Map<string, Buffer>()
    // the writer's put: a node whose id is already stored (the file's previous map) keeps its
    // ref, anything else is appended to the pack
    const refs = new Map<string, PieceRef>()
    const put = (payload: Buffer): PieceRef => {
      const key = pieceId(payload).toString('hex')
      const known = refs.get(key)
      if (known) return known
      const r: PieceRef = { run: 5, pack: 0, offset: 64 + pieces.size * 100, storedLen: payload.length, id: pieceId(payload) }
      pieces.set(key, payload)
      refs.set(key, r)
      return r
    }
    const load = (r: PieceRef): Buffer => pieces.get(r.id.toString('hex'))!
    expect(buildMap([], 100, put)).toBeNull()
    const small = buildMap([{ fileBlock: 0, count: 3, stream: 5, streamBlock: 0 }], 3 * 4096, put)
    expect(small).toEqual({ kind: 'inline', extents: [{ fileBlock: 0, count: 3, stream: 5, streamBlock: 0 }] })
    expect(pieces.size).toBe(0)
    // a sparse 1 TiB volume: 3,000 extents spread over 2^28 blocks → an inner root of shift 28
    const size = 2 ** 40
    const ext: Extent[] = Array.from({ length: 3000 }, (_, i) => ({ fileBlock: i * 89_000, count: 1 + (i % 7), stream: 5, streamBlock: i * 10 }))
    const m = buildMap(ext, size, put)!
    expect(m.kind).toBe('ref')
    const dataBlocks = ext.reduce((s, e) => s + e.count, 0)
    expect(readMap(m, size, dataBlocks, load, 'm')).toEqual(ext)
    expect(rootShift(size)).toBe(28)
    const root = decodeMapInner(load((m as { root: PieceRef }).root), 'm')
    expect(root.shift).toBe(28)
    // the same map again: the same pieces (ids), nothing new
    const n = pieces.size
    expect(buildMap(ext, size, put)).toEqual(m)
    expect(pieces.size).toBe(n)
    // one changed region rewrites one leaf and its ancestors only
    const changed = ext.map((e, i) => (i === 1500 ? { ...e, stream: 6, streamBlock: 0 } : e))
    const before = new Set(pieces.keys())
    buildMap(changed, size, put)
    expect(pieces.size - before.size).toBeLessThanOrEqual(3)
    // an extent crossing node edges is split there and merged back by readMap
    const long = [{ fileBlock: 4000, count: 2 ** 21, stream: 9, streamBlock: 0 }, ...Array.from({ length: 1100 }, (_, i) => ({ fileBlock: 2 ** 22 + i * 2, count: 1, stream: 9, streamBlock: 2 ** 21 + i * 2 }))]
    const lm = buildMap(long, 2 ** 35, put)!
    expect(readMap(lm, 2 ** 35, 2 ** 21 + 1100, load, 'm')).toEqual(long)
    // a wrong data block count or extent count in the entry is caught
    expect(code(() => readMap(lm, 2 ** 35, 2 ** 21 + 1101, load, 'm'))).toBe('BAD_VALUE')
    expect(code(() => readMap({ ...(lm as { kind: 'ref'; root: PieceRef; extentCount: number }), extentCount: 3 }, 2 ** 35, 2 ** 21 + 1100, load, 'm'))).toBe('BAD_VALUE')
    expect(findExtent(long, 4000 + 2 ** 21 - 1)).toBe(0)
    expect(findExtent(long, 3999)).toBe(-1)
    expect(findExtent(long, 2 ** 22 + 1)).toBe(-1)
  })
})

// ---- identity tables -------------------------------------------------------------------------

describe('identity tables (§2.15)', () => {
  const rows: LinkRow[] = [
    { srcDev: 2049, srcInoHi: 0, srcInoLo: 12, source: 0, ord: 40, nlinkInGen: 2 },
    { srcDev: 2049, srcInoHi: 0, srcInoLo: 13, source: 0, ord: 41, nlinkInGen: 3 },
    { srcDev: 2050, srcInoHi: 1, srcInoLo: 0, source: 1, ord: 2, nlinkInGen: 1 },
  ]
  it('IDPAGE (links) and IDINDEX: golden bytes, lookups, robust', () => {
    const p: IdPage = { tableKind: TableKind.Links, rows }
    const b = encodeIdPage(p)
    pin('idpage-links', b)
    expect(decodeIdPage(b, 'p')).toEqual(p)
    expect(findRow(rows, { srcDev: 2049, srcInoHi: 0, srcInoLo: 13 })).toBe(1)
    expect(findRow(rows, { srcDev: 2049, srcInoHi: 0, srcInoLo: 14 })).toBe(-1)
    expect(robust(b, (x) => decodeIdPage(x, 'p'), (v) => encodeIdPage(v))).toBeGreaterThan(b.length)
    expect(() => encodeIdPage({ tableKind: TableKind.Links, rows: [rows[1]!, rows[0]!] })).toThrow(RangeError)
    const x = { tableKind: TableKind.Links, level: 0, totalRows: 9000, children: [{ srcDev: 0, srcInoHi: 0, srcInoLo: 0, ref: ref(4, 0, 64, 900, 8), rows: 5000 }, { srcDev: 2049, srcInoHi: 0, srcInoLo: 77, ref: ref(4, 0, 964, 800, 9), rows: 4000 }] }
    const xb = encodeIdIndex(x)
    pin('idindex', xb)
    expect(decodeIdIndex(xb, 'x')).toEqual(x)
    expect(findIdChild(x.children, { srcDev: 2049, srcInoHi: 0, srcInoLo: 76 })).toBe(0)
    expect(findIdChild(x.children, { srcDev: 2049, srcInoHi: 0, srcInoLo: 77 })).toBe(1)
    expect(robust(xb, (y) => decodeIdIndex(y, 'x'), (v) => encodeIdIndex(v))).toBeGreaterThan(xb.length)
    expect(() => encodeIdIndex({ ...x, totalRows: 1 })).toThrow(RangeError)
    expect(() => encodeIdIndex({ ...x, children: [x.children[1]!] , totalRows: 4000 })).toThrow(RangeError)
  })
  it('BI overlay rows (issue 14) round trip; zeros allowed in overlays', () => {
    const p: IdPage = {
      tableKind: TableKind.BiOverlay,
      rows: [
        { srcDev: 1, srcInoHi: 0, srcInoLo: 5, igen: 77, t0Size: 8192, t0MtimeSec: -5, t0MtimeNsec: 1, t0CtimeSec: 10, t0CtimeNsec: 2, flags: 0, overlay: { kind: 'inline', extents: [{ fileBlock: 0, count: 1, stream: 0, streamBlock: 0 }, { fileBlock: 1, count: 1, stream: 12, streamBlock: 3 }] } },
        { srcDev: 1, srcInoHi: 0, srcInoLo: 6, igen: 0, t0Size: 0, t0MtimeSec: 0, t0MtimeNsec: 0, t0CtimeSec: 0, t0CtimeNsec: 0, flags: 4, overlay: null },
        { srcDev: 1, srcInoHi: 0, srcInoLo: 7, igen: 1, t0Size: 1 << 30, t0MtimeSec: 0, t0MtimeNsec: 0, t0CtimeSec: 0, t0CtimeNsec: 0, flags: 8, overlay: { kind: 'ref', root: ref(12, 0, 64, 99, 10) } },
      ],
    }
    const b = encodeIdPage(p)
    pin('idpage-bi', b)
    expect(decodeIdPage(b, 'p')).toEqual(p)
    expect(robust(b, (x) => decodeIdPage(x, 'p'), (v) => encodeIdPage(v))).toBeGreaterThan(b.length)
  })
  it('big tables are cut by content into pages of 256 … 4,096 rows', () => {
    const many = Array.from({ length: 20_000 }, (_, i) => ({ srcDev: 7, srcInoHi: 0, srcInoLo: i * 3 + 1 }))
    const pages = cutIdPages(many, xxh64)
    expect(pages.flat()).toHaveLength(20_000)
    expect(pages.slice(0, -1).every((p) => p.length >= 256 && p.length <= 4096)).toBe(true)
  })
})

// ---- pack and unit files ---------------------------------------------------------------------

describe('pack file (§2.11)', () => {
  // stored bytes stand in for zstd frames: the pack neither compresses nor reads them
  const p1 = Buffer.from('first stored piece')
  const p2 = Buffer.from('second')
  const build = (): { file: Buffer; refs: PieceRef[] } => {
    const pb = new PackBuilder({ run: 12, pack: 3, flags: 0, salt: Buffer.alloc(32) })
    const refs = [pb.add(p1, 100, PieceKind.Dir, id(11)), pb.add(p2, 30, PieceKind.MapLeaf, id(12))]
    return { file: pb.finish(), refs }
  }
  it('header, pieces, table and trailer: golden bytes; the refs point at the pieces', () => {
    const { file, refs } = build()
    pin('pack', file)
    expect(refs).toEqual([ref(12, 3, 64, p1.length, 11), ref(12, 3, 64 + p1.length, p2.length, 12)])
    for (const [i, r] of refs.entries()) expect(file.subarray(r.offset, r.offset + r.storedLen).equals([p1, p2][i]!)).toBe(true)
    const h = decodePackHeader(file, 'p')
    expect(h).toMatchObject({ run: 12, pack: 3, flags: 0 })
    const t = decodePackTrailer(file.subarray(file.length - 32), file.length, false, 'p')
    const rows = decodePackTable(file.subarray(t.tableOffset, t.tableOffset + t.tableBytes), t, false, 'p')
    expect(rows.map((r) => [r.offset, r.storedLen, r.rawLen, r.kind])).toEqual([[64, p1.length, 100, 1], [64 + p1.length, p2.length, 30, 4]])
  })
  it('refuses a flipped byte in the header, table or trailer, and every truncation of the tail', () => {
    const { file } = build()
    const check = (f: Buffer): void => {
      const encrypted = (decodePackHeader(f, 'p', { run: 12, pack: 3 }).flags & 1) !== 0
      const t = decodePackTrailer(f.subarray(f.length - 32), f.length, encrypted, 'p')
      decodePackTable(f.subarray(t.tableOffset, t.tableOffset + t.tableBytes), t, encrypted, 'p')
    }
    check(file)
    const pieces = [64, 64 + p1.length + p2.length] // the pieces' own bytes are the PieceRef id's business
    for (let i = 0; i < file.length; i++) {
      if (i >= pieces[0]! && i < pieces[1]!) continue
      for (const bit of [1, 0x80]) {
        const f = Buffer.from(file)
        f[i]! ^= bit
        expect(() => check(f), `byte ${i}`).toThrow(FormatError)
      }
    }
    for (let n = 0; n < file.length; n++) expect(() => check(file.subarray(0, n))).toThrow(FormatError)
    expect(() => new PackBuilder({ run: 1, pack: 0, flags: 0, salt: Buffer.alloc(32) }).finish()).toThrow(RangeError)
    expect(() => encodePackHeader({ run: 0, pack: 0, flags: 0, salt: Buffer.alloc(32) })).toThrow(RangeError)
  })
})

describe('unit file v2 (§2.9)', () => {
  const h: Omit<UnitHeaderV2, 'version'> = { flags: UNIT_FLAG_DEAD_RANGES, stream: 7, unitIndex: 2, rawBlocks: 100, frameBlocks: 64, frameCount: 2, revision: 1, level: 19, hashAlg: 'xxh64', salt: Buffer.alloc(32) }
  const seek = [
    { compBytes: 1000, rawBytes: 64 * 4096, check: Buffer.from('0102030405060708', 'hex') },
    { compBytes: 500, rawBytes: 36 * 4096, check: Buffer.from('1112131415161718', 'hex') },
  ]
  const dead = [{ start: 0, blocks: 3 }, { start: 10, blocks: 54 }, { start: 99, blocks: 1 }]
  it('header, unit index (seek table + dead ranges), trailer: golden bytes and decode', () => {
    const hb = encodeUnitHeaderV2(h)
    pin('unit-v2-header', hb)
    expect(decodeUnitHeaderV2(hb, 'u')).toEqual({ version: 2, ...h, dict: 0 })
    // a header naming a dictionary (§2.9.1), and a dictionary file
    const hd = { ...h, flags: UNIT_FLAG_DEAD_RANGES | UNIT_FLAG_DICT, dict: 0x4cbd156e }
    pin('unit-v2-header-dict', encodeUnitHeaderV2(hd))
    expect(decodeUnitHeaderV2(encodeUnitHeaderV2(hd), 'u')).toEqual({ version: 2, ...hd })
    expect(() => encodeUnitHeaderV2({ ...h, dict: 5 })).toThrow(RangeError) // an id without the flag
    const zd = Buffer.concat([Buffer.from('37a430ec6e15bd4c', 'hex'), Buffer.from([0, 1, 2, 3, 4, 5, 6, 7])])
    pin('dict-file', encodeDict({ stream: 7, id: 0x4cbd156e, bytes: zd }))
    expect(decodeDict(encodeDict({ stream: 7, id: 0x4cbd156e, bytes: zd }), 'd', { stream: 7, id: 0x4cbd156e })).toEqual({ stream: 7, id: 0x4cbd156e, bytes: zd })
    const index = encodeUnitIndex({ seek, dead }, h)
    pin('unit-v2-index', index)
    const T = 96 + 1500
    const tr = encodeUnitTrailer(T, 2, index)
    pin('unit-v2-trailer', tr)
    const fileBytes = T + index.length + 32
    const t = decodeUnitTrailerV2(tr, fileBytes, { version: 2, ...h }, 'u')
    expect(t.indexOffset).toBe(T)
    const x = decodeUnitIndex(index, t.indexCheck, { version: 2, ...h }, T, 4096, 'u')
    expect(x.dead).toEqual(dead)
    expect(x.offsets).toEqual([96, 1096, 1596])
    // a revision-0 unit without dead ranges, as step 1 writes them
    const plain = { ...h, flags: 0, revision: 0 }
    pin('unit-v2-index-plain', encodeUnitIndex({ seek, dead: [] }, plain))
    expect(decodeUnitIndex(encodeUnitIndex({ seek, dead: [] }, plain), null, { version: 2, ...plain }, T, 4096, 'u').dead).toEqual([])
  })
  it('format 1 units still decode (their header says version 1); v2 headers need their reserved bytes zero', () => {
    const v1 = Buffer.from('424653554e495400010000000700000002000000640000004000000002000000', 'hex') // test/format.test.ts
    expect(decodeAnyUnitHeader(v1, 'u')).toEqual({ version: 1, headerBytes: 32, stream: 7, unitIndex: 2, rawBlocks: 100, frameBlocks: 64, frameCount: 2, revision: 0, flags: 0, dict: 0 })
    const hb = encodeUnitHeaderV2(h)
    expect(decodeAnyUnitHeader(hb, 'u')).toMatchObject({ version: 2, headerBytes: 96, revision: 1 })
    for (let i = 38; i < 96; i++) {
      const b = Buffer.from(hb)
      b[i]! ^= 1
      expect(code(() => decodeUnitHeaderV2(b, 'u')), `byte ${i}`).toBe('BAD_VALUE')
    }
    for (const bad of [{ ...h, revision: 0 }, { ...h, frameCount: 3 }, { ...h, level: 0 }, { ...h, flags: 4 }, { ...h, salt: Buffer.alloc(32, 1) }]) expect(() => encodeUnitHeaderV2(bad)).toThrow(RangeError)
    const b = Buffer.from(hb)
    b.writeUInt16LE(3, 8)
    expect(code(() => decodeAnyUnitHeader(b, 'u'))).toBe('BAD_VERSION')
  })
  it('dead ranges: sorted, apart, inside the unit; the flag agrees; the index checksum holds', () => {
    for (const bad of [[{ start: 5, blocks: 2 }, { start: 7, blocks: 1 }], [{ start: 5, blocks: 2 }, { start: 3, blocks: 1 }], [{ start: 99, blocks: 2 }], [{ start: 0, blocks: 0 }]]) {
      expect(() => encodeUnitIndex({ seek, dead: bad }, h)).toThrow(RangeError)
    }
    expect(() => encodeUnitIndex({ seek, dead: [] }, h)).toThrow(RangeError) // flag set, no ranges
    const index = encodeUnitIndex({ seek, dead }, h)
    const hh = { version: 2 as const, ...h }
    // touching ranges written by hand (gap 0 after the first) are refused
    const touching = Buffer.concat([index.subarray(0, 32), Buffer.from('020003000a', 'hex')])
    expect(code(() => decodeUnitIndex(touching, null, hh, 96 + 1500, 4096, 'u'))).toBe('BAD_VALUE')
    const flipped = Buffer.from(index)
    flipped[33]! ^= 1
    expect(code(() => decodeUnitIndex(flipped, encodeUnitTrailer(1596, 2, index).subarray(16, 24), hh, 1596, 4096, 'u'))).toBe('BAD_CHECKSUM')
    for (let n = 0; n < index.length; n++) expect(() => decodeUnitIndex(index.subarray(0, n), null, hh, 1596, 4096, 'u')).toThrow(FormatError)
  })
})

// ---- envelope and JSON records ---------------------------------------------------------------

describe('envelope v2 (§2.6)', () => {
  it('golden bytes; format 1 envelopes only for hashes, groups and tiers', () => {
    const b = encodeEnvelope2('run', 0, 3, Buffer.from('abc'))
    pin('envelope-v2', b)
    expect(decodeEnvelope2('run', b, 'r')).toMatchObject({ kind: 'run', version: 2, flags: 0, rawBytes: 3, salt: null })
    expect(() => decodeEnvelope2('manifest', b, 'r')).toThrow(/is a bfs run file, expected manifest/)
    const v1hashes = encodeEnvelope('hashes', 0, 3, Buffer.from('abc'))
    expect(decodeEnvelope2('hashes', v1hashes, 'h').version).toBe(1)
    expect(code(() => decodeEnvelope2('config', Buffer.concat([Buffer.from('BFSCONF\0'), v1hashes.subarray(8)]), 'c'))).toBe('BAD_VERSION')
    expect(() => decodeEnvelope2('config', encodeEnvelope('catalog', 0, 1, Buffer.from('x')), 'c')).toThrow(/catalog \(format 1\)/)
    // an encrypted envelope carries its salt where the checksum was (issue 18)
    const salt = Buffer.alloc(32, 0xab)
    const e = encodeEnvelope2('manifest', ENV_FLAG_ENCRYPTED | ENV_FLAG_ZSTD, 1000, Buffer.from('ciphertext+tag'), salt)
    pin('envelope-v2-encrypted', e.subarray(0, 64))
    expect(decodeEnvelope2('manifest', e, 'm').salt).toEqual(salt)
    expect(hashOffset(0)).toBe(64)
    expect(hashOffset(10)).toBe(144)
  })
  it('refuses every flipped header byte, truncations and trailing bytes', () => {
    const b = encodeEnvelope2('lease', ENV_FLAG_ZSTD, 100, Buffer.from('zstd bytes'))
    for (let i = 0; i < 64; i++) {
      if (i >= 16 && i < 24) continue // the raw length: only zstd's own content size can check it
      const c = Buffer.from(b)
      c[i]! ^= 1
      expect(() => decodeEnvelope2('lease', c, 'l'), `byte ${i}`).toThrow(FormatError)
    }
    for (let n = 0; n < b.length; n++) expect(() => decodeEnvelope2('lease', b.subarray(0, n), 'l')).toThrow(FormatError)
    expect(code(() => decodeEnvelope2('lease', Buffer.concat([b, Buffer.from([0])]), 'l'))).toBe('TRAILING_BYTES')
  })
  it('as parts (a run\'s hashes written without a copy): the header, then the stored bytes themselves; the same file', () => {
    const a = randomBytes(4000)
    const b = randomBytes(96)
    const parts = encodeEnvelope2Parts('hashes', 0, 4096, [a, b])
    expect(parts.length).toBe(3)
    expect(parts[1]).toBe(a) // not a copy
    expect(Buffer.concat(parts)).toEqual(encodeEnvelope2('hashes', 0, 4096, Buffer.concat([a, b])))
    expect(decodeEnvelope2('hashes', Buffer.concat(parts), 'h').stored).toEqual(Buffer.concat([a, b]))
    expect(() => encodeEnvelope2Parts('hashes', 0, 4095, [a, b])).toThrow(RangeError)
  })
})

const CONFIG: ConfigV2 = {
  format: 2,
  repoId: '0123456789abcdef0123456789abcdef',
  created: '2026-12-02T10:00:00.000Z',
  blockBytes: 4096,
  hashAlg: 'xxh64',
  compression: 'zstd',
  features: { incompat: ['pieces'], rocompat: [], compat: [] },
  defaults: { ...DEFAULTS, frameBlocks: { ...DEFAULTS.frameBlocks } },
  encryption: null,
  mac: null,
  extra: {},
}

describe('config v2 and features (§2.7)', () => {
  it('golden payload; defaults filled in; unknown fields kept on rewrite', () => {
    const b = encodeConfigV2(CONFIG)
    pin('config', b)
    expect(decodeConfigV2(b, 'c')).toEqual(CONFIG)
    const sparse = JSON.parse(b.toString()) as Record<string, unknown>
    sparse.defaults = { level: 19 }
    sparse.futureField = { x: 1 }
    const d = decodeConfigV2(Buffer.from(JSON.stringify(sparse)), 'c')
    expect(d.defaults).toEqual({ ...DEFAULTS, level: 19 })
    expect(JSON.parse(encodeConfigV2(d).toString()).futureField).toEqual({ x: 1 })
  })
  it('dedupMinBytes: a config without it reads as 1 (what every repository did before); a new one gets 1024 unless told', () => {
    const o = JSON.parse(encodeConfigV2({ ...CONFIG, defaults: { ...CONFIG.defaults, dedupMinBytes: 777 } }).toString())
    expect(decodeConfigV2(Buffer.from(JSON.stringify(o)), 'c').defaults.dedupMinBytes).toBe(777)
    delete o.defaults.dedupMinBytes
    expect(decodeConfigV2(Buffer.from(JSON.stringify(o)), 'c').defaults.dedupMinBytes).toBe(1)
    delete o.defaults
    expect(decodeConfigV2(Buffer.from(JSON.stringify(o)), 'c').defaults.dedupMinBytes).toBe(1)
    expect(newRepoDefaults()).toEqual({ ...DEFAULTS, dedupMinBytes: 1024 })
    expect(newRepoDefaults({ dedupMinBytes: 1 }).dedupMinBytes).toBe(1)
    expect(newRepoDefaults({ dedupMinBytes: 0 }).dedupMinBytes).toBe(0)
    expect(newRepoDefaults().frameBlocks).not.toBe(DEFAULTS.frameBlocks) // a fresh object, not the frozen one
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 53]) expect(() => newRepoDefaults({ dedupMinBytes: bad }), String(bad)).toThrow(RangeError)
  })
  it('an unknown incompat feature is refused by name; rocompat makes it read-only; compat is ignored', () => {
    const withF = (cls: 'incompat' | 'rocompat' | 'compat', name: string): ConfigV2 => decodeConfigV2(encodeConfigV2({ ...CONFIG, features: { ...CONFIG.features, [cls]: [...CONFIG.features[cls], name] } }), 'c')
    expect(checkFeatures(CONFIG, 'c')).toEqual({ readOnly: false, readOnlyBecause: [], ignored: [] })
    // bilog (BI logs, issue 14) is known to this bfs; a bfs without the overlays refuses it
    expect(checkFeatures(withF('incompat', 'bilog'), '/r/config').readOnly).toBe(false)
    expect(code(() => checkFeatures(withF('incompat', 'bilog'), '/r/config', new Set(['pieces'])))).toBe('UNSUPPORTED_FEATURE')
    expect(() => checkFeatures(withF('incompat', 'warp-drive'), '/r/config')).toThrow("/r/config: this repository uses feature 'warp-drive', which this bfs does not support: a newer bfs is needed")
    expect(checkFeatures(withF('rocompat', 'some-index'), 'c')).toEqual({ readOnly: true, readOnlyBecause: ['some-index'], ignored: [] })
    expect(checkFeatures(withF('compat', 'history'), 'c')).toEqual({ readOnly: false, readOnlyBecause: [], ignored: ['history'] })
    expect(checkFeatures(withF('incompat', 'bilog'), 'c', new Set(['pieces', 'bilog'])).readOnly).toBe(false)
  })
  it('refuses a known feature in the wrong class, no `pieces`, bad names, bad defaults, format 1', () => {
    const json = (mut: (o: Record<string, any>) => void): Buffer => {
      const o = JSON.parse(encodeConfigV2(CONFIG).toString())
      mut(o)
      return Buffer.from(JSON.stringify(o))
    }
    for (const [what, m] of [
      ['pieces as compat', (o: any) => (o.features = { incompat: ['pieces'], rocompat: [], compat: ['bilog'] })],
      ['no pieces', (o: any) => (o.features.incompat = [])],
      ['a duplicate', (o: any) => (o.features.compat = ['history', 'history'])],
      ['an upper-case name', (o: any) => (o.features.compat = ['Hist'])],
      ['format 1', (o: any) => (o.format = 1)],
      ['frameBlocks not dividing unitBlocks', (o: any) => (o.defaults.frameBlocks.files = 300)],
      ['level 0', (o: any) => (o.defaults.level = 0)],
      ['repoId', (o: any) => (o.repoId = 'xyz')],
      ['encryption without its feature', (o: any) => (o.encryption = { aead: 'aes-256-gcm', keys: 'keys/' })],
      ['no mac field', (o: any) => delete o.mac],
    ] as const) expect(code(() => decodeConfigV2(json(m), 'c')), what).toBe('BAD_VALUE')
    expect(code(() => decodeConfigV2(Buffer.from('{'), 'c'))).toBe('BAD_VALUE')
  })
})

const ROOT_ENTRY = ent(FileType.Dir, '', { ord: 0, mode: 0o755, nlink: 3, dir: { child: ref(12, 0, 500, 900, 20), entries: 4 } })
const MANIFEST: ManifestV2 = {
  format: 2,
  id: 12,
  rev: 1,
  run: 12,
  time: '2026-12-02T10:00:00.000Z',
  endTime: '2026-12-02T10:05:00.000Z',
  label: 'nightly',
  tags: ['a', 'b'],
  host: 'h1',
  user: 'root',
  kind: 'files',
  group: null,
  sources: [{ path: '/srv/data', parent: 11, nextOrd: 1000, ordBase: 0 }],
  rootEntry: ROOT_ENTRY,
  links: ref(12, 0, 1400, 40, 21),
  biLog: null,
  biIndex: null,
  stream: { blocks: 5000 },
  merged: null,
  partial: false,
  stats: { entries: 4, pieces: 3 },
}

describe('manifest, stream, run and lease records (§2.8)', () => {
  it('manifest: golden payload, round trip, a retired copy', () => {
    const b = encodeManifestV2(MANIFEST)
    pin('manifest', b)
    expect(decodeManifestV2(b, 'm')).toEqual(MANIFEST)
    const retired = { ...MANIFEST, retired: { retiredAt: '2026-12-03T00:00:00.000Z', retiredBy: 14, reason: 'forget' as const } }
    expect(decodeManifestV2(encodeManifestV2(retired), 'm', true)).toEqual(retired)
    expect(code(() => decodeManifestV2(b, 'm', true))).toBe('BAD_VALUE')
  })
  it('manifest: refuses what §2.8.1 forbids', () => {
    const bad: Array<[string, Partial<ManifestV2>]> = [
      ['rev 1 written by another run', { run: 13 }],
      ['a parent not older than itself', { sources: [{ path: '/a', parent: 12, nextOrd: 5, ordBase: 0 }] }],
      ['a single source with an ordBase', { sources: [{ path: '/a', parent: 0, nextOrd: 5, ordBase: 3 }] }],
      ['sources out of order', { sources: [{ path: '/b', parent: 0, nextOrd: 5, ordBase: 0 }, { path: '/a', parent: 0, nextOrd: 5, ordBase: 5 }] }],
      ['ordBase not the running sum', { sources: [{ path: '/a', parent: 0, nextOrd: 5, ordBase: 0 }, { path: '/b', parent: 0, nextOrd: 5, ordBase: 4 }] }],
      ['a reference to a later run', { links: ref(13, 0, 64, 10, 1) }],
      ['consistency on a files generation', { consistency: 'frozen' }],
      ['merged into another generation', { merged: { from: 3, to: 11, runs: [15] } }],
    ]
    for (const [what, m] of bad) expect(() => encodeManifestV2({ ...MANIFEST, ...m }), what).toThrow(FormatError)
    const json = JSON.parse(encodeManifestV2(MANIFEST).toString())
    for (const [k, v] of [['rootEntry', 'not base64!'], ['links', '12.0.64.10'], ['stream', { blocks: 0 }], ['format', 1], ['tags', 'a'], ['time', 'yesterday']] as const) {
      expect(code(() => decodeManifestV2(Buffer.from(JSON.stringify({ ...json, [k]: v })), 'm')), k).toBe('BAD_VALUE')
    }
    // the root entry must be a root entry (empty name, ord 0, a directory)
    const named = Buffer.from(JSON.stringify({ ...json, rootEntry: entryBytes(allTypes()[3]!).toString('base64') }))
    expect(code(() => decodeManifestV2(named, 'm'))).toBe('BAD_VALUE')
  })
  it('stream record: golden payload; units and hashes sizes follow from the blocks', () => {
    const s: StreamRecord = { stream: 12, unitBlocks: 5120, frameBlocks: 256, streamBlocks: 12_000, units: 3, level: 3, hashAlg: 'xxh64', hashes: { bytes: 64 + 8 * 12_000, sha256: 'ab'.repeat(32) }, created: '2026-12-02T10:05:00.000Z' }
    const b = encodeStreamRecord(s)
    pin('stream', b)
    expect(decodeStreamRecord(b, 's')).toEqual(s)
    for (const bad of [{ units: 2 }, { frameBlocks: 300 }, { hashes: { bytes: 64, sha256: 'ab'.repeat(32) } }, { hashes: { bytes: 64 + 8 * 12_000, sha256: null } }, { streamBlocks: 0, units: 0 }]) {
      expect(() => encodeStreamRecord({ ...s, ...bad }), JSON.stringify(bad)).toThrow(FormatError)
    }
    // encrypted (§2.10): no sha256; the sealed file's size, 16 bytes of tag per chunk of 8,192 hashes
    const sealed = (bytes: number): Buffer => Buffer.from(JSON.stringify({ ...JSON.parse(b.toString()), hashes: { bytes, sha256: null } }))
    expect(decodeStreamRecord(sealed(64 + 8 * 12_000 + 16 * 2), 's', true).hashes.sha256).toBeNull()
    for (const bytes of [99, 64 + 8 * 12_000, 64 + 8 * 12_000 + 16]) expect(() => decodeStreamRecord(sealed(bytes), 's', true), String(bytes)).toThrow(FormatError)
  })
  it('run record: golden payload; states and kinds', () => {
    const r: RunRecord = { run: 12, kind: 'backup', state: 'committed', host: 'h1', pid: 4242, lease: '0123456789abcdef', started: '2026-12-02T10:00:00.000Z', ended: '2026-12-02T10:05:00.000Z', gen: 12 }
    const b = encodeRunRecord(r)
    pin('run', b)
    expect(decodeRunRecord(b, 'r')).toEqual(r)
    expect(decodeRunRecord(encodeRunRecord({ run: 3, kind: 'upgrade', state: 'aborted', host: 'h', pid: 1, lease: '', started: r.started, ended: r.ended }), 'r').lease).toBe('')
    for (const bad of [{ state: 'committed', ended: undefined }, { kind: 'merge' }, { gen: 11 }, { lease: 'xyz' }, { kind: 'dance' }] as Partial<RunRecord>[]) {
      expect(() => encodeRunRecord({ ...r, ...bad }), JSON.stringify(bad)).toThrow(FormatError)
    }
  })
  it('lease and lock: golden payload; liveness by the clock', () => {
    const l: LeaseRecord = { lease: 'fedcba9876543210', kind: 'mount', host: 'h1', pid: 77, pidStart: 123456, started: '2026-12-02T10:00:00.000Z', renewed: '2026-12-02T10:10:00.000Z', expiresAfterMs: 1_800_000, pins: ['12@1', '9@2'] }
    const b = encodeLease(l)
    pin('lease', b)
    expect(decodeLease(b, 'l')).toEqual(l)
    const lock = { ...l, lease: 'maintenance', kind: 'maintenance' as const, pins: undefined }
    delete lock.pins
    expect(decodeLease(encodeLease(lock), 'l')).toEqual(lock)
    for (const bad of [{ lease: 'maintenance' }, { pins: ['12'] }, { renewed: '2026-12-02T09:00:00.000Z' }, { expiresAfterMs: 0 }, { pid: 0 }] as Partial<LeaseRecord>[]) {
      expect(() => encodeLease({ ...l, ...bad }), JSON.stringify(bad)).toThrow(FormatError)
    }
    const renewed = Date.parse(l.renewed)
    expect(leaseLive(l, renewed + 1_800_000 + 299_999)).toBe(true)
    expect(leaseLive(l, renewed + 1_800_000 + 300_000)).toBe(false)
  })
  it('store keys (§2.3)', () => {
    expect([keys2.run(12), keys2.manifest(12), keys2.retiredManifest(12, 2), keys2.stream(12), keys2.unit(12, 0), keys2.pack(12, 3), keys2.hashes(12), keys2.dedup(12, 1), keys2.plan(12), keys2.lease('0123456789abcdef'), keys2.maintenanceLock]).toEqual([
      'runs/00000012', 'manifests/gen-00000012', 'retired/gen-00000012-r0002', 'gens/00000012/stream', 'gens/00000012/unit-00000000', 'gens/00000012/pack-00000003', 'gens/00000012/hashes', 'index/dedup-00000012-0001', 'prune/plan-00000012', 'leases/0123456789abcdef', 'locks/maintenance',
    ])
    expect(() => keys2.run(100_000_000)).toThrow(RangeError)
  })
})

// ---- the format 1 guard lock, against the real format 1 writer -------------------------------

describe('the format 1 guard lock (§2.23.1)', () => {
  // made in beforeAll, not at collection: a run that filters these tests out must leave nothing
  let work = ''
  beforeAll(() => {
    work = tmpdir('bfs-fmt2-guard-')
  })
  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true })
  })

  it('golden bytes', () => {
    const g = guardLock('2026-12-02T10:00:00.000Z')
    pin('guard-lock', g)
    expect(isGuardLock(g)).toBe(true)
    expect(isGuardLock(Buffer.from('{"pid":1,"host":"h","time":"t","command":"backup"}\n'))).toBe(false)
  })

  it('a format 1 bfs writes nothing into a format 2 repository: this one refuses at the config (exit 6); the guard lock stops one that treats the config as damage (exit 5)', async () => {
    const repo = path.join(work, 'repo')
    const src = path.join(work, 'src')
    fs.mkdirSync(src)
    fs.writeFileSync(path.join(src, 'f'), 'data')
    expect((await bfs(['init', '--format', '1'], { repo })).code).toBe(0)
    // what format 2's init leaves (§2.23.1): config and config-copy of version 2, and the guard.
    // Without the guard this bfs reads the version 2 config as damage, infers its settings
    // and commits a format 1 generation into the repository (checked by hand, 2026-12-02).
    const payload = encodeConfigV2(CONFIG)
    const config = encodeEnvelope2('config', 0, payload.length, payload)
    fs.writeFileSync(path.join(repo, 'config'), config)
    fs.writeFileSync(path.join(repo, 'config-copy'), config)
    fs.writeFileSync(path.join(repo, 'lock'), guardLock(new Date().toISOString()))
    const list = (): string => JSON.stringify(['manifests', 'gens', 'tmp', '.'].map((d) => fs.readdirSync(path.join(repo, d)).sort()))
    const before = list()
    // this bfs knows format 2 when both copies say so, before it looks at the lock: every command
    // has a format 2 path now (tier, migrate, recall and group since 2026-12-03); ctx.openRepo's
    // one-line refusal (notYetOnFormat2, exit 6) stays as the net for a command that has none
    expect(notYetOnFormat2(repo, 'frobnicate').message).toBe(`${repo} is a format 2 repository: 'bfs frobnicate' does not support format 2 yet (so far it takes backup, generations, group, ls, cat, diff, find, log, mount, restore, verify, forget, tier, migrate and recall)`)
    expect(isFormat2(repo)).toBe(true)
    expect(list()).toBe(before)
    // a format 1 bfs from before that check (or this one, when only config-copy survives as
    // version 1 and config is taken for damage) gets as far as the lock: the guard stops it
    const v1copy = path.join(work, 'v1-config-copy')
    expect((await bfs(['init', '--format', '1'], { repo: path.join(work, 'scratch-v1') })).code).toBe(0)
    fs.copyFileSync(path.join(work, 'scratch-v1', 'config-copy'), v1copy)
    fs.copyFileSync(v1copy, path.join(repo, 'config-copy'))
    const before2 = list()
    const g = await bfs(['backup', src], { repo })
    expect(g.code).toBe(5)
    expect(g.stderr).toMatch(/^bfs: .*locked by pid 0 on bfs-format-2 \(this bfs reads format 1: upgrade bfs\)/m)
    expect(list()).toBe(before2)
    expect(fs.readFileSync(path.join(repo, 'lock')).equals(guardLock(JSON.parse(fs.readFileSync(path.join(repo, 'lock'), 'utf8')).time))).toBe(true)
  })
})
