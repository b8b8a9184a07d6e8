/**
 * The tape tier's two on-disk/on-tape formats: the tape catalog record (format/tapecat.ts,
 * REPO/tape/rec-N inside a BFSTCAT envelope) and a tape file's header record
 * (tape/tapefile.ts). Golden vectors pin the bytes; every damage is refused.
 */
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { decodeTapeCat, encodeTapeCat, unitBlocks, type TapeBatchRecord } from '../src/format/tapecat.js'
import { FormatError } from '../src/format/errors.js'
import { decodeEnvelope } from '../src/format/envelope.js'
import { envelopeFor } from '../src/repo/repository.js'
import { readRecord } from '../src/repo/tapecat.js'
import { decodeTapeFileHeader, encodeTapeFileHeader, TapeFileError, type TapeFileSealer } from '../src/tape/tapefile.js'
import zlib from 'node:zlib'
import { NONCE_TAG, newSalt, open, seal } from '../src/crypto/aead.js'
import { deriveRepoKeys, objectKey } from '../src/crypto/keys.js'

const sha = (s: string): Buffer => createHash('sha256').update(s).digest()

const batch = (): TapeBatchRecord => ({
  kind: 'batch',
  tier: 'tape1',
  cartridge: 'BFS001L9',
  batch: Buffer.from('0123456789abcdef', 'hex'),
  file: 3,
  fileBlock: 12_000,
  recordBytes: 1 << 20,
  dataBlocks: 3,
  units: [
    { key: 'gens/00000001/unit-00000000', bytes: 1_500_000, sha256: sha('a'), offset: 0, head: Buffer.from('HEADHEAD'), tail: Buffer.from('TAIL') },
    { key: 'gens/00000001/unit-00000001', bytes: 700_000, sha256: sha('b'), offset: 1_500_000, head: Buffer.alloc(0), tail: Buffer.from('T') },
  ],
})

describe('tape catalog record', () => {
  it('round-trips, and its bytes are pinned (golden vector)', () => {
    const b = encodeTapeCat(batch())
    expect(decodeTapeCat(b, 'rec')).toEqual(batch())
    expect(createHash('sha256').update(b).digest('hex')).toBe(GOLDEN_BATCH)
    const drop = encodeTapeCat({ kind: 'drop', keys: ['gens/00000001/unit-00000000'] })
    expect(drop.toString('hex')).toBe('02011b67656e732f30303030303030312f756e69742d3030303030303030')
    expect(decodeTapeCat(drop, 'rec')).toEqual({ kind: 'drop', keys: ['gens/00000001/unit-00000000'] })
  })

  it('derives a unit\'s block address and record count from its offset in the stream', () => {
    const r = batch()
    // first unit: records 0 and 1 of the data stream (block after the header record)
    expect(unitBlocks(r, r.units[0]!)).toEqual({ block: 12_001, skip: 0, records: 2 })
    // second: starts 1_500_000 − 1_048_576 = 451_424 bytes into the stream's second record, ends in its third
    expect(unitBlocks(r, r.units[1]!)).toEqual({ block: 12_002, skip: 451_424, records: 2 })
  })

  it('refuses what breaks the invariants: overlap, a blob past the file, copies larger than the blob, bad names, trailing bytes', () => {
    const bad = (f: (r: TapeBatchRecord) => void): void => {
      const r = batch()
      f(r)
      expect(() => encodeTapeCat(r)).toThrow(FormatError)
    }
    bad((r) => (r.units[1]!.offset = 1_000_000))
    bad((r) => (r.dataBlocks = 2))
    bad((r) => (r.units[1]!.head = Buffer.alloc(700_000)))
    bad((r) => (r.units[1]!.key = '../escape'))
    bad((r) => (r.units[1]!.key = r.units[0]!.key))
    bad((r) => (r.cartridge = ''))
    bad((r) => (r.batch = Buffer.alloc(4)))
    const b = encodeTapeCat(batch())
    expect(() => decodeTapeCat(Buffer.concat([b, Buffer.from([0])]), 'rec')).toThrow(/bytes after the record/)
    expect(() => decodeTapeCat(b.subarray(0, b.length - 3), 'rec')).toThrow(/truncated/)
    const k = Buffer.from(b)
    k[0] = 9
    expect(() => decodeTapeCat(k, 'rec')).toThrow(/unknown tape catalog record kind 9/)
  })

  it('is stored in a BFSTCAT envelope (zstd); a flipped byte fails its checksum', () => {
    const file = envelopeFor('tapecat', encodeTapeCat(batch()), true)
    expect(file.toString('latin1', 0, 8)).toBe('BFSTCAT\0')
    expect(readRecord(file, 'tape/rec-00000001')).toEqual(batch())
    const flipped = Buffer.from(file)
    flipped[file.length - 2]! ^= 1
    expect(() => readRecord(flipped, 'tape/rec-00000001')).toThrow(/checksum mismatch/)
    expect(() => decodeEnvelope('tier', file, 'x')).toThrow(/is a bfs tapecat file/)
  })
})

describe('tape file header record', () => {
  const h = {
    repoId: Buffer.from('00112233445566778899aabbccddeeff', 'hex'),
    batch: Buffer.from('0123456789abcdef', 'hex'),
    recordBytes: 1 << 20,
    dataBytes: 2_200_000,
    blobs: [
      { key: 'gens/00000001/unit-00000000', bytes: 1_500_000, offset: 0 },
      { key: 'gens/00000001/unit-00000001', bytes: 700_000, offset: 1_500_000 },
    ],
  }

  it('round-trips, and its bytes are pinned (golden vector)', () => {
    const b = encodeTapeFileHeader(h)
    expect(b.length).toBe(64 + 2 * (2 + 27 + 16))
    expect(b.toString('latin1', 0, 8)).toBe('BFSTFIL\0')
    expect(decodeTapeFileHeader(b, 'f')).toEqual(h)
    expect(createHash('sha256').update(b).digest('hex')).toBe(GOLDEN_HEADER)
  })

  it('refuses a wrong magic, a flipped byte, a short record, trailing bytes', () => {
    const b = encodeTapeFileHeader(h)
    for (let i = 0; i < b.length; i += 7) {
      const x = Buffer.from(b)
      x[i]! ^= 0x40
      expect(() => decodeTapeFileHeader(x, 'f'), `byte ${i}`).toThrow(TapeFileError)
    }
    expect(() => decodeTapeFileHeader(b.subarray(0, 100), 'f')).toThrow(TapeFileError)
    expect(() => decodeTapeFileHeader(Buffer.concat([b, Buffer.alloc(1)]), 'f')).toThrow(TapeFileError)
    expect(() => decodeTapeFileHeader(Buffer.from(JSON.stringify({ magic: 'bfs-sim-tape-file' })), 'f')).toThrow(/bad magic/)
  })

  // an encrypted repository's (format.md §2.18): the blob list sealed with the repository's keys
  const sealerOf = (keys: ReturnType<typeof deriveRepoKeys>): TapeFileSealer => ({
    seal: (aad, plain) => {
      const salt = newSalt()
      return Buffer.concat([salt, seal(objectKey(keys, salt, 'object'), NONCE_TAG.envelope, 0, aad, plain)])
    },
    open: (aad, sealed, what) => open(objectKey(keys, sealed.subarray(0, 32), 'object'), NONCE_TAG.envelope, 0, aad, sealed.subarray(32), what),
  })
  const repoId = '00112233445566778899aabbccddeeff'
  const k1 = sealerOf(deriveRepoKeys(Buffer.alloc(64, 1), repoId, 'aes-256-gcm'))
  const k2 = sealerOf(deriveRepoKeys(Buffer.alloc(64, 2), repoId, 'aes-256-gcm'))

  it('sealed: round-trips with the keys, holds no key in the clear, is refused without them or with others, and every flipped byte fails', () => {
    const b = encodeTapeFileHeader(h, k1)
    expect(b.length).toBe(64 + 4 + 32 + 16 + 2 * (2 + 27 + 16))
    expect(b.readUInt16LE(10)).toBe(1)
    expect(b.readUInt32LE(44)).toBe(0)
    expect(b.includes(Buffer.from('gens/'))).toBe(false)
    expect(encodeTapeFileHeader(h).includes(Buffer.from('gens/'))).toBe(true)
    expect(decodeTapeFileHeader(b, 'f', k1)).toEqual(h)
    expect(() => decodeTapeFileHeader(b, 'f')).toThrow(/needs the repository's keys/)
    expect(() => decodeTapeFileHeader(b, 'f', k2)).toThrow(/authentication failed/)
    for (let i = 0; i < b.length; i += 5) {
      const x = Buffer.from(b)
      x[i]! ^= 0x40
      expect(() => decodeTapeFileHeader(x, 'f', k1), `byte ${i}`).toThrow()
      // with the CRC fixed up: the AEAD (or the header's own checks) still refuse it
      if (i >= 60 && i < 64) continue
      x.writeUInt32LE(0, 60)
      x.writeUInt32LE(zlib.crc32(x), 60)
      expect(() => decodeTapeFileHeader(x, 'f', k1), `byte ${i}, CRC fixed`).toThrow(i < 60 ? /./ : FormatError)
    }
    // a plain header is still read when a sealer is given (flags 0)
    expect(decodeTapeFileHeader(encodeTapeFileHeader(h), 'f', k1)).toEqual(h)
  })
})

const GOLDEN_BATCH = 'fbb1c094fa51751c2a1e7d588a6978ec65c82e0d070145e6f5c8e50f1651f094'
const GOLDEN_HEADER = '45adfb6d5767f026122fd42a7d2e90326a5edda0e5a0014c044ab5f00d740269'
