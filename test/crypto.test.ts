/**
 * Encryption core (native-notes/format.md §2.21–2.22, issue 18): golden vectors computed by an
 * independent implementation (test/fixtures/crypto-vectors.py: Python's hashlib, hmac and the
 * `cryptography` package, from the spec's text), so a change to any derivation, label, nonce
 * layout, AAD or key file field fails here; then round trips under both AEADs, every kind of
 * tampering, nonce uniqueness, key files and the key management of a repository on disk.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { createCipheriv, createDecipheriv, createHash, scryptSync } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import { aad } from '../src/crypto/aad.js'
import { openEnvelope, sealEnvelope } from '../src/crypto/envelope.js'
import { NONCE_TAG, type NonceTag, type ObjectKey, newSalt, nonceOf, open, openInto, seal, sealInto } from '../src/crypto/aead.js'
import { aeadOpen, aeadSeal, aeadVersion, scryptAsync, scryptVersion } from '../src/native/index.js'
import {
  LABELS,
  PassphraseError,
  SCRYPT_DEFAULTS,
  SCRYPT_V1,
  canonicalJson,
  checkConfigMac,
  configMac,
  deriveKek,
  deriveRepoKeys,
  nameId,
  makeKeyFile,
  objectKey,
  readKeyFile,
  unwrapKeyFile,
  type ObjectKind,
} from '../src/crypto/keys.js'
import { UNENCRYPTED_SEED, ZERO_BLOCK, frameCheck, hashBlocks, pageCutHash, zeroBlockHash } from '../src/codec/hash.js'
import { FormatError } from '../src/format/errors.js'
import { decodeConfigV2 } from '../src/format/v2/config.js'
import { decodeEnvelope2, encodeEnvelope2 } from '../src/format/v2/envelope.js'
import { type KeyFile, decodeKeyFile, encodeKeyFile } from '../src/format/v2/keyfile.js'
import { keys2 } from '../src/format/v2/layout.js'
import { BfsError } from '../src/repo/errors.js'
import { addKey, listKeys, removeKey, unlock } from '../src/repo/v2/keys.js'
import { DiskStore } from '../src/store/disk.js'
import { reportError } from '../src/cli/main.js'
import { readPassphrase } from '../src/cli/passphrase.js'
import { ROOT, tmpdir } from './helpers.js'

const hex = (h: string): Buffer => Buffer.from(h, 'hex')
const range = (from: number, to: number): Buffer => Buffer.from(Array.from({ length: to - from }, (_, i) => from + i))

// ---- golden vectors (format.md §2.24 "Encryption"; regenerate with test/fixtures/crypto-vectors.py) ----

const IN = {
  passphrase: 'correct horse battery staple',
  scryptSalt: range(0x00, 0x20),
  repoId: '0123456789abcdef0123456789abcdef',
  keyId: '0011223344556677',
  masterKey: range(0x40, 0x80),
  wrapNonce: range(0xa0, 0xac),
  objectSalt: range(0xc0, 0xe0),
  plaintext: Buffer.from('bfs golden vector'),
  aad: Buffer.from('bfs aad'),
}

const V = {
  kek: '55ec668cdcdcadc65ef8bc3635501a2078128ba78c6ee090a6a9ea1231ee42eb',
  wrapped: '4688690b6b7ba2049fd8726efd17a9d9957cd8cfdf66946c870056c68ece6ea4dd50ab333ce71e9a2769c2ff595ae093544635f4a1b6eed134ee7e3ff135238a84bec96a0c234ae6bba65221b92cb8cb',
  keyFileSha256: 'c7a394321604174739cacd68064c8ecce6ca3d67711d27170246f1744735844a',
  keyFileBytes: 447,
  kekLanes: '0e6c3955c9e14e82a931370c87971c4c7d536f6c45421bf15e352960a4e5848a',
  wrappedLanes: 'd6e1c88a2c410de781a505c4c31b7ab6b6bb841dd0ecf8aba0cc4862daf5e4a4d0d3d79d95fa9c3c662b3d3edd52bf19490141a053e313608c030ceb0924841c0b044f4e3f05d8c0dfcb879fa8483dac',
  keyFileLanesSha256: '688affd76aa0909ffb9c6615402f35843b31facf78ef9d3709b74e5115ddde6c',
  keyFileLanesBytes: 462,
  kEnc: '4b4c870763a9b2933d0ec6e5f1fc26d81d9331a6114f44e2ab6677f460b40d6f',
  kId: 'd136e30baac5e736d531c5b755e95a3a4765df669216bceaeaf6c1da9d6d4f27',
  kContent: '6b73258587c2934f3f56df5c73a770154b1709ee0c4b7a5ee4c8eef1e734937f',
  kBlockSeed: '5337734f059c509049468b31d173da317df6f1216600e0483be71deb3617eeb9',
  blockSeed: '10398983086220195667',
  kConfigMac: '2f15482ca233d5bb06a23a0a96c250dd4cda39a1b032bf22c39221be06191c7c',
  kName: '9bb30cf925188805096792d4e6b01cd17bf05c19f22ef5bd3a6a066b9325f233',
  /** the object id of file group `bfs golden group` (§2.14.2) */
  groupId: '6ea4298c344ce2c97e671c218655deac',
  objectKeys: {
    unit: '664e863235d002362dedc4c6031879b9a0096dcc452ba52bf4e61d740d965760',
    pack: '0302b7ae97bfb08717eaf47307f20b451f94463a92b10d03a5c0548fe6beb286',
    hashes: '7c384c701d2a93c0532a131149d57944fbda1a9e831689ad3c53f317ef7e45e7',
    dedup: '485fe5935f2b59bc35fc046b8e18cae270b4f380983840a364ba9cb14ef2dc0e',
    object: 'eb2032b3e69e309bdeecd738f302bddcbabd51637b6583c886187a05a7fe684a',
  } as Record<ObjectKind, string>,
  messages: [
    { tag: 0, counter: 0, kind: 'object' },
    { tag: 1, counter: 5, kind: 'unit' },
    { tag: 2, counter: 0, kind: 'unit' },
    { tag: 3, counter: 4096, kind: 'pack' },
    { tag: 4, counter: 0, kind: 'pack' },
    { tag: 5, counter: 3, kind: 'hashes' },
    { tag: 6, counter: 2, kind: 'dedup' },
    { tag: 7, counter: 0, kind: 'dedup' },
  ] as Array<{ tag: NonceTag; counter: number; kind: ObjectKind }>,
  sealed: {
    'aes-256-gcm': [
      'df5f1f0e5bf1762417c4cadcd9a19ee0320c5abc3dae0f2b7ef0c3f27af184cec5',
      '7db70c01de17f2ac5d506cb3c30332c34c78782a76200feee5cc7a0c8d24bc9732',
      '81027f451e661af2236cb98d3214676de45a6421f34d46aac96b22c903ba3e8ec1',
      '996a83f1707f1f8cf86c206144bace8f1a74f34039df4f9b436933b257f53cbb65',
      '3fcf1752e8caca73247e643122f48f91cdfc2aeca6fe996614551da9434cbe9e68',
      '180ee1d55b435018847c8403c472d045646f90c9020ce8ef973a8bc9aaa1fbef3f',
      '177de00ca4b7f233192867db34cafcabc632da13b3e34ede8d9d519de51a05ca89',
      '0c70596e8053c2267109b77505215841be124e733861ae8e4cd7bd35e70f3a6a4d',
    ],
    'chacha20-poly1305': [
      'e947b81d7780273017e295cc28fc9963afe48d09fe28d5755d45a7fa424fc5f345',
      'e6984fbcf2290ce6a7da024b0cfaff8e040301b2ed0c0f693ecd80325b2b8626ac',
      'e3d8e2b57fece1a856fe91912f039773cf3dc0ccfbfd7f78f00f5eadd6d481f32e',
      'e0045f6d79bbff3a54390e97ce5769a614f85754cf7509a81882b352fd37f0f506',
      'f0f1d8338e5056c8bc488ed1a03bc9bd9695737f651359c733a455ad116cd69048',
      '3f7284b1c8c2d1cdd74cc0decdd4ac9c7f3838d8695fcf6fe55a5942eaf71bfd14',
      '4c7bfd403d636c5b5acb291606b5f7da128a2526f41993c4e395e18761f09cce08',
      '5659acab090735a5983200c0c384bfc20348b72413c6debe3ddc6f9ee98affcc82',
    ],
  },
  configPayload: `{"format":2,"repoId":"0123456789abcdef0123456789abcdef","created":"2026-12-02T10:00:00.000Z","blockBytes":4096,"hashAlg":"xxh64","compression":"zstd","features":{"incompat":["pieces","encryption"],"rocompat":[],"compat":[]},"defaults":{"unitBlocks":5120,"frameBlocks":{"files":256,"volume":32},"level":3,"packBytes":16777216,"dirDelta":true,"dedupMinBytes":1},"encryption":{"aead":"aes-256-gcm","keys":"keys/"},"mac":null}`,
  configMac: 'RawFFvvrK9Ok70l9WJwd4D+5Z8A21wkQk+RWjfhOM38=',
  /** manifest/12/r2, payload {"id":12}, object salt, AES-256-GCM: header ‖ salt ‖ sealed payload */
  envelope: '4246534d414e4900020002000000000009000000000000001900000000000000c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfc61b054a1ea42b720f43103fb882ddc12bb2062cc03b1584b2',
  // seeded XXH64 (§2.22): the block byte i = i mod 256, its frame check with an all-zero second block, the page-cut hash of `bfs golden name`
  xxh64: {
    seeded: { block: '68c786d3428ccf62', zeroBlock: '13c9bb6b0b33edf3', frameCheck: '93fd2981fc20176b', pageCut: '5361774424376004560' },
    seed0: { block: 'a4f66a18be646e0f', zeroBlock: 'dbbbd8326f9b86ac', frameCheck: 'd4f54dfec4299ecb', pageCut: '16247259057982921058' },
  },
  aads: {
    'unitFrame(7,2,1,3,1048576)': '6266732f756e69740700000002000000010000000300000000001000',
    'unitIndex(7,2,1)': '6266732f756e69742d696e646578070000000200000001000000',
    'hashesChunk(7,5)': '6266732f686173686573070000000500000000000000',
    'packPiece(7,0,4096,3012)': '6266732f706965636507000000000000000010000000000000c40b0000',
    'packTable(7,0)': '6266732f7061636b2d7461626c650700000000000000',
    'dedup(7,1,65536)': '6266732f646564757007000000010000000000010000000000',
  } as Record<string, string>,
}

describe('golden vectors (§2.24): the code against an independent implementation of the spec', () => {
  const keys = deriveRepoKeys(IN.masterKey, IN.repoId, 'aes-256-gcm')

  const golden = { repoId: IN.repoId, masterKey: IN.masterKey, passphrase: IN.passphrase, aead: 'aes-256-gcm', keyId: IN.keyId, host: 'host1', user: 'root', label: 'golden', created: '2026-12-03T16:00:00.000Z', salt: IN.scryptSalt, nonce: IN.wrapNonce } as const

  it("the writers' KDF, scrypt-lanes (2 lanes of N 2^16, r 8, p 1, joined by HKDF), and the wrapped master key in a key file, byte for byte", async () => {
    expect(SCRYPT_DEFAULTS).toEqual({ N: 1 << 16, r: 8, p: 1, lanes: 2 })
    const kek = await deriveKek(IN.passphrase, IN.scryptSalt, SCRYPT_DEFAULTS)
    expect(kek.toString('hex')).toBe(V.kekLanes)
    const k = await makeKeyFile(golden)
    expect(k.record.kdf).toBe('scrypt-lanes')
    expect(k.record.wrapped.toString('hex')).toBe(V.wrappedLanes)
    expect(k.file.length).toBe(V.keyFileLanesBytes)
    expect(createHash('sha256').update(k.file).digest('hex')).toBe(V.keyFileLanesSha256)
    expect(await unwrapKeyFile(readKeyFile(k.file, 'golden'), IN.repoId, IN.passphrase)).toEqual(IN.masterKey)
    // the lanes are not interchangeable: another lane count, or a lane's salt, is another KEK
    expect((await deriveKek(IN.passphrase, IN.scryptSalt, { ...SCRYPT_DEFAULTS, lanes: 3 })).toString('hex')).not.toBe(V.kekLanes)
    expect((await deriveKek(IN.passphrase, IN.scryptSalt, { N: 1 << 16, r: 8, p: 2 })).toString('hex')).not.toBe(V.kekLanes)
  })

  it('key files of the first writers (kdf scrypt, N 2^17, r 8, p 1) still open, byte for byte', async () => {
    const kek = await deriveKek(IN.passphrase, IN.scryptSalt, SCRYPT_V1)
    expect(kek.toString('hex')).toBe(V.kek)
    const k = await makeKeyFile({ ...golden, scrypt: SCRYPT_V1 })
    expect(k.record.kdf).toBe('scrypt')
    expect(k.record.wrapped.toString('hex')).toBe(V.wrapped)
    expect(k.file.length).toBe(V.keyFileBytes)
    expect(createHash('sha256').update(k.file).digest('hex')).toBe(V.keyFileSha256)
    expect(await unwrapKeyFile(readKeyFile(k.file, 'golden'), IN.repoId, IN.passphrase)).toEqual(IN.masterKey)
  })

  it("scrypt (native/scrypt.c, libsodium's): RFC 7914's test vectors, node:crypto's bytes for other parameters, and refusals", async () => {
    expect(scryptVersion()).toMatch(/^1\./)
    // RFC 7914 §12 (the two that fit a test's time)
    expect((await scryptAsync(Buffer.alloc(0), Buffer.alloc(0), 16, 1, 1, 64)).toString('hex')).toBe(
      '77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906',
    )
    expect((await scryptAsync(Buffer.from('password'), Buffer.from('NaCl'), 1024, 8, 16, 64)).toString('hex')).toBe(
      'fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640',
    )
    // node:crypto (OpenSSL's scrypt) as the oracle: N, r, p, lengths of passphrase, salt and key
    for (const [N, r, p, len] of [[2, 1, 1, 1], [1 << 10, 8, 1, 32], [1 << 12, 1, 3, 48], [1 << 14, 8, 1, 32], [1 << 10, 32, 2, 100]] as const) {
      const pass = Buffer.from(`correct horse ${N} ✓`)
      const salt = Buffer.alloc(N % 7 === 0 ? 0 : 32, N & 0xff)
      expect((await scryptAsync(pass, salt, N, r, p, len)).equals(scryptSync(pass, salt, len, { N, r, p, maxmem: 1 << 30 })), `${N} ${r} ${p} ${len}`).toBe(true)
    }
    // deriveKek takes a UTF-8 string or its bytes alike
    expect((await deriveKek('pässword', IN.scryptSalt, { N: 1 << 10, r: 8, p: 1 })).equals(await deriveKek(Buffer.from('pässword'), IN.scryptSalt, { N: 1 << 10, r: 8, p: 1 }))).toBe(true)
    await expect(scryptAsync(Buffer.from('x'), Buffer.from('y'), 1000, 8, 1, 32)).rejects.toThrow(/EINVAL/)
    expect(() => scryptAsync(Buffer.from('x'), Buffer.from('y'), 1, 8, 1, 32)).toThrow(RangeError) // (the arguments are checked at the call)
    await expect(deriveKek('x', IN.scryptSalt, { N: 1 << 22, r: 8, p: 1 })).rejects.toThrow(/would need/)
    // every lane at once counts: 8 lanes of 2^17 × r 8 (128 MiB) is 1 GiB, one more doubling is refused
    await expect(deriveKek('x', IN.scryptSalt, { N: 1 << 18, r: 8, p: 1, lanes: 8 })).rejects.toThrow(/would need/)
    for (const lanes of [0, 1, 9, 2.5]) await expect(deriveKek('x', IN.scryptSalt, { N: 1 << 10, r: 8, p: 1, lanes })).rejects.toThrow(/lanes/)
  })

  it('HKDF-SHA256 repository keys, the block-hash seed and per-object keys', () => {
    expect([keys.kEnc, keys.kId, keys.kContent, keys.kBlockSeed, keys.kConfigMac, keys.kName].map((b) => b.toString('hex'))).toEqual([V.kEnc, V.kId, V.kContent, V.kBlockSeed, V.kConfigMac, V.kName])
    expect(nameId(keys, 'group', 'bfs golden group')).toBe(V.groupId)
    expect(keys.blockSeed).toBe(BigInt(V.blockSeed))
    for (const kind of Object.keys(V.objectKeys) as ObjectKind[]) expect(objectKey(keys, IN.objectSalt, kind).key.toString('hex'), kind).toBe(V.objectKeys[kind])
  })

  it('seeded XXH64 (§2.22): block hash, zero-block hash, frame check and page cut with blockSeed; seed 0 as unencrypted repositories have it', () => {
    const golden = Buffer.from(Array.from({ length: 4096 }, (_, i) => i & 0xff))
    for (const [seed, v] of [[keys.blockSeed, V.xxh64.seeded], [UNENCRYPTED_SEED, V.xxh64.seed0]] as const) {
      const h = Buffer.alloc(16)
      hashBlocks('xxh64', Buffer.concat([golden, ZERO_BLOCK]), 0, 2, h, 0, seed)
      expect(h.subarray(0, 8).toString('hex'), `seed ${seed}`).toBe(v.block)
      expect(h.subarray(8).toString('hex')).toBe(v.zeroBlock)
      expect(zeroBlockHash('xxh64', seed).toString('hex')).toBe(v.zeroBlock)
      expect(frameCheck('xxh64', h, seed).toString('hex')).toBe(v.frameCheck)
      expect(pageCutHash(seed)(Buffer.from('bfs golden name'))).toBe(BigInt(v.pageCut))
    }
    expect(V.xxh64.seeded.block).not.toBe(V.xxh64.seed0.block)
    // unkeyed SHA-256 takes no seed: an encrypted repository's hashAlg is xxh64 (its config says so, or it is refused)
    expect(() => hashBlocks('sha256-64', golden, 0, 1, Buffer.alloc(8), 0, keys.blockSeed)).toThrow(/no seed/)
    const cfg = JSON.parse(V.configPayload) as Record<string, unknown>
    expect(() => decodeConfigV2(Buffer.from(JSON.stringify({ ...cfg, hashAlg: 'sha256-64' })), 'config')).toThrow(/hashAlg/)
  })

  it('one sealed message per region tag under each AEAD, and each opens', () => {
    for (const aead of ['aes-256-gcm', 'chacha20-poly1305'] as const) {
      const ks = deriveRepoKeys(IN.masterKey, IN.repoId, aead)
      V.messages.forEach((m, i) => {
        const k = objectKey(ks, IN.objectSalt, m.kind)
        const s = seal(k, m.tag, m.counter, IN.aad, IN.plaintext)
        expect(s.toString('hex'), `${aead} tag ${m.tag}`).toBe(V.sealed[aead][i])
        expect(open(k, m.tag, m.counter, IN.aad, s, 'v')).toEqual(IN.plaintext)
      })
    }
  })

  it('the config MAC over the canonical JSON (keys sorted, no mac), and its check', () => {
    const payload = Buffer.from(V.configPayload)
    decodeConfigV2(payload, 'golden config') // a valid config v2 with encryption
    expect(configMac(keys, payload)).toBe(V.configMac)
    const withMac = Buffer.from(JSON.stringify({ ...JSON.parse(V.configPayload), mac: V.configMac }))
    checkConfigMac(keys, withMac, 'config')
    // the order of fields does not change the MAC; any change of a value does
    const o = JSON.parse(withMac.toString()) as Record<string, unknown>
    const reordered = Buffer.from(JSON.stringify(Object.fromEntries(Object.entries(o).reverse())))
    checkConfigMac(keys, reordered, 'config')
    for (const change of [{ hashAlg: 'sha256-64' }, { encryption: null }, { features: { incompat: ['pieces'], rocompat: [], compat: [] } }, { extraField: 1 }, { mac: null }]) {
      expect(() => checkConfigMac(keys, Buffer.from(JSON.stringify({ ...o, ...change })), 'config'), JSON.stringify(change)).toThrow(FormatError)
    }
    expect(() => checkConfigMac(deriveRepoKeys(range(0, 64), IN.repoId, 'aes-256-gcm'), withMac, 'config')).toThrow(/mac does not check/)
  })

  it('the AAD of each message kind (§2.9, §2.10, §2.11, §2.17), byte for byte', () => {
    const got: Record<string, string> = {
      'unitFrame(7,2,1,3,1048576)': aad.unitFrame(7, 2, 1, 3, 1048576).toString('hex'),
      'unitIndex(7,2,1)': aad.unitIndex(7, 2, 1).toString('hex'),
      'hashesChunk(7,5)': aad.hashesChunk(7, 5).toString('hex'),
      'packPiece(7,0,4096,3012)': aad.packPiece(7, 0, 4096, 3012).toString('hex'),
      'packTable(7,0)': aad.packTable(7, 0).toString('hex'),
      'dedup(7,1,65536)': aad.dedup(7, 1, 65536).toString('hex'),
    }
    expect(got).toEqual(V.aads)
    expect(() => aad.unitFrame(2 ** 32, 0, 0, 0, 0)).toThrow(RangeError)
    expect(() => aad.packPiece(1, 0, -1, 10)).toThrow(RangeError)
  })

  it('an encrypted envelope (§2.6), byte for byte; tampering with any header byte, the salt, the payload or the name fails', () => {
    const payload = Buffer.from('{"id":12}')
    const file = sealEnvelope(keys, 'manifest', 'manifest/12/r2', payload, payload.length, { salt: IN.objectSalt })
    expect(file.toString('hex')).toBe(V.envelope)
    expect(openEnvelope(keys, 'manifest', 'manifest/12/r2', file, 'm')).toEqual({ stored: payload, rawBytes: 9, compressed: false })
    // a fresh salt by default: the same object sealed twice shares no byte past the header's first 32
    const again = sealEnvelope(keys, 'manifest', 'manifest/12/r2', payload, payload.length)
    expect(again.subarray(32, 64).equals(file.subarray(32, 64))).toBe(false)
    expect(openEnvelope(keys, 'manifest', 'manifest/12/r2', again, 'm').stored).toEqual(payload)
    // every byte: a flip is refused (a header field by the decoder or the tag, the rest by the tag)
    for (let i = 0; i < file.length; i++) {
      const t = Buffer.from(file)
      t[i] ^= 0x01
      expect(() => openEnvelope(keys, 'manifest', 'manifest/12/r2', t, 'm'), `byte ${i}`).toThrow(FormatError)
    }
    // moved to another name (another revision, another kind's name), or opened with another repository's keys
    expect(() => openEnvelope(keys, 'manifest', 'manifest/12/r3', file, 'm')).toThrow(expect.objectContaining({ code: 'BAD_CHECKSUM' }))
    expect(() => openEnvelope(keys, 'manifest', 'retired/12/r2', file, 'm')).toThrow(expect.objectContaining({ code: 'BAD_CHECKSUM' }))
    expect(() => openEnvelope(deriveRepoKeys(IN.masterKey, 'f'.repeat(32), 'aes-256-gcm'), 'manifest', 'manifest/12/r2', file, 'm')).toThrow(expect.objectContaining({ code: 'BAD_CHECKSUM' }))
    // a plaintext envelope where an encrypted one belongs: refused (downgrade), as damage
    expect(() => openEnvelope(keys, 'manifest', 'manifest/12/r2', encodeEnvelope2('manifest', 0, 9, payload), 'm')).toThrow(/not encrypted, in an encrypted repository/)
    // compressed flag carried; config and key files are never sealed
    const z = sealEnvelope(keys, 'run', 'run/12', Buffer.from([1, 2, 3]), 100, { compressed: true })
    expect(openEnvelope(keys, 'run', 'run/12', z, 'r')).toEqual({ stored: Buffer.from([1, 2, 3]), rawBytes: 100, compressed: true })
    expect(() => sealEnvelope(keys, 'config', 'config', payload, 9)).toThrow(RangeError)
    expect(() => sealEnvelope(keys, 'keyfile', 'k', payload, 9)).toThrow(RangeError)
  })

  it('the labels are §2.22 text', () => {
    expect(LABELS).toEqual({ kEnc: 'bfs v2 enc', kId: 'bfs v2 id', kContent: 'bfs v2 content', kBlockSeed: 'bfs v2 block seed', kConfigMac: 'bfs v2 config mac', kName: 'bfs v2 name' })
    expect(canonicalJson({ b: [1, { d: null, c: 'x' }], a: true })).toBe('{"a":true,"b":[1,{"c":"x","d":null}]}')
  })
})

// ---- AEAD: round trips, tampering, nonces ----

describe('seal / open', () => {
  const both = ['aes-256-gcm', 'chacha20-poly1305'] as const
  const keyOf = (aead: (typeof both)[number], kind: ObjectKind = 'unit', salt = IN.objectSalt): ObjectKey => objectKey(deriveRepoKeys(IN.masterKey, IN.repoId, aead), salt, kind)

  it('round trips empty, small and 1 MiB messages under both AEADs; output = plaintext length + 16', () => {
    for (const aead of both) {
      const k = keyOf(aead)
      for (const n of [0, 1, 4096, 1 << 20]) {
        const pt = Buffer.alloc(n)
        for (let i = 0; i < n; i++) pt[i] = (i * 31 + 7) & 0xff
        const s = seal(k, NONCE_TAG.unitFrame, 9, IN.aad, pt)
        expect(s.length).toBe(n + 16)
        if (n >= 16) expect(s.subarray(0, n).equals(pt)).toBe(false)
        expect(open(k, NONCE_TAG.unitFrame, 9, IN.aad, s, 'x').equals(pt)).toBe(true) // (toEqual on 1 MiB takes seconds)
      }
    }
  })

  it('seal, sealInto, open and openInto (native/aead.c) make and open node:crypto\'s messages, byte for byte, under both AEADs', () => {
    for (const aead of both) {
      const k = keyOf(aead)
      for (const n of [0, 1, 16, 4095, 65536, 150_001]) {
        for (const a of [Buffer.alloc(0), IN.aad, Buffer.alloc(1000, 9)]) {
          const pt = Buffer.alloc(n)
          for (let i = 0; i < n; i++) pt[i] = (i * 53 + n) & 0xff
          const nonce = nonceOf(NONCE_TAG.packPiece, n)
          const c = aead === 'aes-256-gcm' ? createCipheriv(aead, k.key, nonce, { authTagLength: 16 }) : createCipheriv(aead, k.key, nonce, { authTagLength: 16 })
          c.setAAD(a, { plaintextLength: n })
          const want = Buffer.concat([c.update(pt), c.final(), c.getAuthTag()])
          expect(seal(k, NONCE_TAG.packPiece, n, a, pt).equals(want), `${aead} ${n}`).toBe(true)
          const out = Buffer.alloc(n + 16)
          expect(sealInto(k, NONCE_TAG.packPiece, n, a, pt, out, 0)).toBe(n + 16)
          expect(out.equals(want)).toBe(true)
          expect(open(k, NONCE_TAG.packPiece, n, a, want, 'x').equals(pt)).toBe(true)
          expect(openInto(k, NONCE_TAG.packPiece, n, a, want, Buffer.alloc(n), 'x').equals(pt)).toBe(true)
          const d = aead === 'aes-256-gcm' ? createDecipheriv(aead, k.key, nonce, { authTagLength: 16 }) : createDecipheriv(aead, k.key, nonce, { authTagLength: 16 })
          d.setAAD(a, { plaintextLength: n })
          d.setAuthTag(want.subarray(n))
          expect(Buffer.concat([d.update(want.subarray(0, n)), d.final()]).equals(pt)).toBe(true)
        }
      }
    }
  })

  it('sealInto writes seal()\'s bytes into a buffer at an offset, around every slice boundary, and touches nothing else', () => {
    for (const aead of both) {
      const k = keyOf(aead)
      // 16 KiB slices: empty, less than one, exactly one, one and a byte, many and a part
      for (const n of [0, 1, 16383, 16384, 16385, 150_001, 1 << 20]) {
        const pt = Buffer.alloc(n)
        for (let i = 0; i < n; i++) pt[i] = (i * 131 + 5) & 0xff
        const want = seal(k, NONCE_TAG.unitFrame, 7, IN.aad, pt)
        const out = Buffer.alloc(n + 16 + 40, 0xa5)
        expect(sealInto(k, NONCE_TAG.unitFrame, 7, IN.aad, pt, out, 13)).toBe(n + 16)
        expect(out.subarray(13, 13 + n + 16).equals(want), `${aead} ${n}`).toBe(true)
        expect(out.subarray(0, 13).every((b) => b === 0xa5) && out.subarray(13 + n + 16).every((b) => b === 0xa5)).toBe(true)
        expect(open(k, NONCE_TAG.unitFrame, 7, IN.aad, out.subarray(13, 13 + n + 16), 'x').equals(pt)).toBe(true)
      }
      // no room: refused before anything is written
      const out = Buffer.alloc(40, 1)
      expect(() => sealInto(k, NONCE_TAG.unitFrame, 0, IN.aad, Buffer.alloc(30), out, 0)).toThrow(RangeError)
      expect(out.every((b) => b === 1)).toBe(true)
    }
  })

  it('every tampering is a FormatError BAD_CHECKSUM: a ciphertext byte, a tag byte, the AAD, the tag, the counter, the key', () => {
    const bad = (f: () => unknown): void => {
      try {
        f()
      } catch (err) {
        expect(err).toBeInstanceOf(FormatError)
        expect((err as FormatError).code).toBe('BAD_CHECKSUM')
        expect((err as Error).message).toBe('gens/00000007/unit-00000000 frame 3: authentication failed (corrupt or tampered with)')
        return
      }
      throw new Error('tampering was not detected')
    }
    const what = 'gens/00000007/unit-00000000 frame 3'
    // node:crypto's open and native/aead.c's openInto (into a buffer of its own, and in place)
    const openers = [
      open,
      (k: ObjectKey, t: NonceTag, c: number, a: Uint8Array, s: Buffer, w: string) => openInto(k, t, c, a, s, Buffer.alloc(s.length), w),
      (k: ObjectKey, t: NonceTag, c: number, a: Uint8Array, s: Buffer, w: string) => openInto(k, t, c, a, s, Buffer.from(s), w),
    ]
    for (const aead of both)
      for (const open of openers) {
      const k = keyOf(aead)
      const pt = Buffer.from('a frame of four kilobytes, or so'.repeat(128))
      const s = seal(k, NONCE_TAG.unitFrame, 3, IN.aad, pt)
      for (const at of [0, 1, pt.length - 1, pt.length, s.length - 1]) {
        for (const bit of [0x01, 0x80]) {
          const t = Buffer.from(s)
          t[at] ^= bit
          bad(() => open(k, NONCE_TAG.unitFrame, 3, IN.aad, t, what))
        }
      }
      bad(() => open(k, NONCE_TAG.unitFrame, 3, Buffer.from('bfs aae'), s, what))
      bad(() => open(k, NONCE_TAG.unitFrame, 3, Buffer.alloc(0), s, what))
      bad(() => open(k, NONCE_TAG.unitIndex, 3, IN.aad, s, what))
      bad(() => open(k, NONCE_TAG.unitFrame, 4, IN.aad, s, what))
      bad(() => open(k, NONCE_TAG.unitFrame, 3 + 2 ** 32, IN.aad, s, what))
      bad(() => open(keyOf(aead, 'pack'), NONCE_TAG.unitFrame, 3, IN.aad, s, what))
      bad(() => open(keyOf(aead, 'unit', newSalt()), NONCE_TAG.unitFrame, 3, IN.aad, s, what))
      bad(() => open({ aead: aead === 'aes-256-gcm' ? 'chacha20-poly1305' : 'aes-256-gcm', key: k.key }, NONCE_TAG.unitFrame, 3, IN.aad, s, what))
      bad(() => open(k, NONCE_TAG.unitFrame, 3, IN.aad, Buffer.concat([s, Buffer.alloc(1)]), what))
      bad(() => open(k, NONCE_TAG.unitFrame, 3, IN.aad, s.subarray(1), what))
      expect(() => open(k, NONCE_TAG.unitFrame, 3, IN.aad, s.subarray(0, 15), what)).toThrow(expect.objectContaining({ code: 'TRUNCATED' }))
      }
  })

  it('openInto (native/aead.c) opens what node:crypto sealed, into a buffer or in place, around every size, and touches nothing past the plaintext', () => {
    expect(aeadVersion()).toMatch(/^OpenSSL 3\./)
    for (const aead of both) {
      const k = keyOf(aead)
      for (const n of [0, 1, 15, 16, 17, 4096, 150_001, 1 << 20]) {
        const pt = Buffer.alloc(n)
        for (let i = 0; i < n; i++) pt[i] = (i * 97 + 3) & 0xff
        const s = seal(k, NONCE_TAG.unitFrame, 11, IN.aad, pt)
        const out = Buffer.alloc(n + 40, 0xa5)
        const got = openInto(k, NONCE_TAG.unitFrame, 11, IN.aad, s, out, 'x')
        expect(got.buffer === out.buffer && got.byteOffset === out.byteOffset && got.length === n).toBe(true)
        expect(got.equals(pt), `${aead} ${n}`).toBe(true)
        expect(out.subarray(n).every((b) => b === 0xa5)).toBe(true)
        const inPlace = Buffer.from(s)
        expect(openInto(k, NONCE_TAG.unitFrame, 11, IN.aad, inPlace, inPlace, 'x').equals(pt)).toBe(true)
        if (n) expect(() => openInto(k, NONCE_TAG.unitFrame, 11, IN.aad, s, Buffer.alloc(n - 1), 'x')).toThrow(RangeError)
      }
    }
  })

  it('the native calls: in place or apart only, ranges and sizes checked, as node:crypto for every AAD length', () => {
    const k = keyOf('aes-256-gcm')
    const nonce = nonceOf(NONCE_TAG.unitFrame, 1)
    const pt = Buffer.from('0123456789abcdef0123456789abcdef0123456789')
    const buf = Buffer.alloc(100)
    pt.copy(buf, 10)
    // overlapping but not in place: refused, nothing written
    const before = Buffer.from(buf)
    expect(() => aeadSeal(0, k.key, nonce, IN.aad, buf, 10, pt.length, buf, 11)).toThrow(/overlaps/)
    expect(() => aeadSeal(0, k.key, nonce, IN.aad, buf, 10, pt.length, buf, 0)).toThrow(/overlaps/)
    expect(buf.equals(before)).toBe(true)
    // in place: the same bytes as node:crypto
    expect(aeadSeal(0, k.key, nonce, IN.aad, buf, 10, pt.length, buf, 10)).toBe(pt.length + 16)
    expect(buf.subarray(10, 10 + pt.length + 16).equals(seal(k, NONCE_TAG.unitFrame, 1, IN.aad, pt))).toBe(true)
    expect(aeadOpen(0, k.key, nonce, IN.aad, buf, 10, pt.length + 16, buf, 10)).toBe(pt.length)
    expect(buf.subarray(10, 10 + pt.length).equals(pt)).toBe(true)
    expect(aeadOpen(0, k.key, nonce, Buffer.from('x'), seal(k, NONCE_TAG.unitFrame, 1, IN.aad, pt), 0, pt.length + 16, Buffer.alloc(64), 0)).toBe(-1)
    expect(() => aeadSeal(0, k.key.subarray(1), nonce, IN.aad, pt, 0, pt.length, Buffer.alloc(64), 0)).toThrow(/32 bytes/)
    expect(() => aeadSeal(0, k.key, nonce.subarray(1), IN.aad, pt, 0, pt.length, Buffer.alloc(64), 0)).toThrow(/12/)
    expect(() => aeadSeal(2, k.key, nonce, IN.aad, pt, 0, pt.length, Buffer.alloc(64), 0)).toThrow(RangeError)
    expect(() => aeadSeal(0, k.key, nonce, IN.aad, pt, 1, pt.length, Buffer.alloc(64), 0)).toThrow(/source range/)
    expect(() => aeadSeal(0, k.key, nonce, IN.aad, pt, 0, pt.length, Buffer.alloc(pt.length + 15), 0)).toThrow(/does not fit/)
    expect(() => aeadOpen(0, k.key, nonce, IN.aad, pt, 0, 15, Buffer.alloc(64), 0)).toThrow(/at least/)
    for (const aead of both)
      for (const a of [0, 1, 15, 16, 17, 1000]) {
        const ad = Buffer.alloc(a, 7)
        const out = Buffer.alloc(pt.length + 16)
        aeadSeal(aead === 'aes-256-gcm' ? 0 : 1, keyOf(aead).key, nonce, ad, pt, 0, pt.length, out, 0)
        expect(out.equals(seal(keyOf(aead), NONCE_TAG.unitFrame, 1, ad, pt)), `${aead} aad ${a}`).toBe(true)
      }
  })

  it('nonces: u32 LE tag ‖ u64 LE counter, distinct across every tag and counter; out-of-range ones refused', () => {
    expect(nonceOf(3, 4096).toString('hex')).toBe('03000000' + '0010000000000000')
    expect(nonceOf(7, 2n ** 64n - 1n).toString('hex')).toBe('07000000' + 'ffffffffffffffff')
    const seen = new Set<string>()
    const counters = [0, 1, 2, 255, 256, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2n ** 64n - 1n]
    for (const tag of Object.values(NONCE_TAG)) for (const c of counters) seen.add(nonceOf(tag, c).toString('hex'))
    expect(seen.size).toBe(Object.values(NONCE_TAG).length * counters.length)
    expect(Object.values(NONCE_TAG)).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
    for (const [tag, c] of [[8, 0], [-1, 0], [0, -1], [0, 2 ** 53], [0, 0.5], [0, 2n ** 64n]] as const) expect(() => nonceOf(tag as NonceTag, c), `${tag} ${c}`).toThrow(RangeError)
  })

  it('the same message under two salts (a rewritten object) gives unrelated ciphertexts; salts are never all zeros', () => {
    const a = seal(keyOf('aes-256-gcm', 'unit', newSalt()), 1, 0, IN.aad, IN.plaintext)
    const b = seal(keyOf('aes-256-gcm', 'unit', newSalt()), 1, 0, IN.aad, IN.plaintext)
    expect(a.equals(b)).toBe(false)
    expect(newSalt().length).toBe(32)
    // the envelope refuses an all-zero salt (§2.6), so a forgotten salt cannot pass for one
    expect(() => encodeEnvelope2('manifest', 2, 3, a, Buffer.alloc(32))).toThrow(RangeError)
  })
})

// ---- key files ----

describe('key files (§2.21)', () => {
  const FAST = { N: 1 << 10, r: 8, p: 1, lanes: 2 } // the format's smallest N, in two lanes as writers do: the tests' scrypt in milliseconds
  const make = (o: { passphrase?: string; repoId?: string; aead?: 'aes-256-gcm' | 'chacha20-poly1305' } = {}) =>
    makeKeyFile({ repoId: o.repoId ?? IN.repoId, masterKey: IN.masterKey, passphrase: o.passphrase ?? 'pw', aead: o.aead ?? 'aes-256-gcm', host: 'h', user: 'u', label: '', scrypt: FAST })

  it('round trip under both AEADs; a wrong passphrase, another repository or a renamed key does not open', async () => {
    for (const aead of ['aes-256-gcm', 'chacha20-poly1305'] as const) {
      const k = await make({ aead })
      const rec = readKeyFile(k.file, 'k')
      expect(rec).toEqual(k.record)
      expect(await unwrapKeyFile(rec, IN.repoId, 'pw')).toEqual(IN.masterKey)
      expect(await unwrapKeyFile(rec, IN.repoId, 'pw ')).toBeNull()
      expect(await unwrapKeyFile(rec, IN.repoId, '')).toBeNull()
      expect(await unwrapKeyFile(rec, 'f'.repeat(32), 'pw')).toBeNull()
      expect(await unwrapKeyFile({ ...rec, keyId: 'ffffffffffffffff' }, IN.repoId, 'pw')).toBeNull()
      // the parameters, salt and nonce are bound through the KEK and the nonce
      expect(await unwrapKeyFile({ ...rec, N: 1 << 11 }, IN.repoId, 'pw')).toBeNull()
      expect(await unwrapKeyFile({ ...rec, lanes: 3 }, IN.repoId, 'pw')).toBeNull()
      expect(await unwrapKeyFile({ ...rec, kdf: 'scrypt', lanes: undefined }, IN.repoId, 'pw')).toBeNull()
      expect(await unwrapKeyFile({ ...rec, salt: range(1, 33) }, IN.repoId, 'pw')).toBeNull()
      expect(await unwrapKeyFile({ ...rec, nonce: range(1, 13) }, IN.repoId, 'pw')).toBeNull()
      const w = Buffer.from(rec.wrapped)
      w[70] ^= 1
      expect(await unwrapKeyFile({ ...rec, wrapped: w }, IN.repoId, 'pw')).toBeNull()
    }
  })

  it('two key files of one master key share nothing but it: fresh scrypt salt and nonce each', async () => {
    const [a, b] = [await make(), await make()]
    expect(a.keyId).not.toBe(b.keyId)
    expect(a.record.salt.equals(b.record.salt)).toBe(false)
    expect(a.record.wrapped.equals(b.record.wrapped)).toBe(false)
  })

  it('a damaged key file is a FormatError; the decoder refuses what the spec does not allow', async () => {
    const k = await make()
    const flipped = Buffer.from(k.file)
    flipped[80] ^= 1
    expect(() => readKeyFile(flipped, 'keys/x')).toThrow(expect.objectContaining({ code: 'BAD_CHECKSUM' }))
    expect(() => readKeyFile(k.file.subarray(0, 100), 'keys/x')).toThrow(FormatError)
    const rec = k.record
    const bads: Array<Partial<Record<keyof KeyFile, unknown>>> = [
      { N: 1000 }, { N: 1 << 9 }, { N: 1 << 21 }, { r: 0 }, { p: 17 }, { kdf: 'argon2id' }, { aead: 'aes-128-gcm' },
      { lanes: 1 }, { lanes: 9 }, { lanes: undefined }, { kdf: 'scrypt' }, { lanes: 2.5 },
      { keyId: 'ABC' }, { format: 1 }, { created: 'yesterday' }, { label: 'x'.repeat(257) },
    ]
    for (const b of bads) {
      const o = JSON.parse(encodeKeyFile(rec).toString()) as Record<string, unknown>
      expect(() => decodeKeyFile(Buffer.from(JSON.stringify({ ...o, ...b })), 'k'), JSON.stringify(b)).toThrow(FormatError)
    }
    for (const [f, n] of [['salt', 31], ['nonce', 16], ['wrapped', 64]] as const) {
      const o = JSON.parse(encodeKeyFile(rec).toString()) as Record<string, unknown>
      expect(() => decodeKeyFile(Buffer.from(JSON.stringify({ ...o, [f]: Buffer.alloc(n, 1).toString('base64') })), 'k'), f).toThrow(FormatError)
    }
    // N 2^20 with r 32 asks for 4 GiB: refused before scrypt allocates anything
    const o = JSON.parse(encodeKeyFile(rec).toString()) as Record<string, unknown>
    expect(() => decodeKeyFile(Buffer.from(JSON.stringify({ ...o, N: 1 << 20, r: 32 })), 'k')).toThrow(/memory/)
    // every lane counts: 8 lanes of N 2^18, r 8 ask for 2 GiB at once, though one lane is 256 MiB
    expect(() => decodeKeyFile(Buffer.from(JSON.stringify({ ...o, N: 1 << 18, r: 8, lanes: 8 })), 'k')).toThrow(/memory/)
    expect(decodeKeyFile(Buffer.from(JSON.stringify({ ...o, N: 1 << 17, r: 8, lanes: 8 })), 'k').lanes).toBe(8)
    // an encrypted or compressed key file envelope is refused
    const payload = decodeEnvelope2('keyfile', k.file, 'k').stored
    expect(() => readKeyFile(encodeEnvelope2('keyfile', 1, payload.length, payload), 'k')).toThrow(/never compressed or encrypted/)
  })
})

// ---- a repository's keys, through a real store ----

describe('key management on a store (src/repo/v2/keys.ts)', () => {
  const work = tmpdir('bfs-crypto-')
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }))
  const FAST = { N: 1 << 10, r: 8, p: 1 }
  const meta = { host: 'h', user: 'u', label: 'laptop' }

  it('add, list, unlock with each passphrase, remove; the last key is never removed', async () => {
    const store = DiskStore.create(path.join(work, 'r1'))
    await expect(unlock(store, IN.repoId, 'pw')).rejects.toThrow(/holds no key file/)
    const a = await addKey(store, IN.repoId, 'aes-256-gcm', IN.masterKey, 'first', meta, FAST)
    // one key file of each KDF (a repository made before 2026-12-05 gets scrypt-lanes keys beside its scrypt one)
    const b = await addKey(store, IN.repoId, 'aes-256-gcm', IN.masterKey, 'second', { ...meta, label: 'desk' }, { ...FAST, lanes: 2 })
    expect(fs.readdirSync(path.join(work, 'r1', 'keys')).sort()).toEqual([a, b].sort())
    const list = await listKeys(store)
    expect(list.map((k) => ('record' in k ? [k.keyId, k.record.label, k.record.N, k.record.kdf, k.record.lanes ?? 1] : k.problem)).sort()).toEqual([[a, 'laptop', 1024, 'scrypt', 1], [b, 'desk', 1024, 'scrypt-lanes', 2]].sort())
    expect(await unlock(store, IN.repoId, 'first')).toEqual({ masterKey: IN.masterKey, keyId: a })
    expect(await unlock(store, IN.repoId, 'second')).toEqual({ masterKey: IN.masterKey, keyId: b })
    const wrong = await unlock(store, IN.repoId, 'third').catch((e: unknown) => e)
    expect(wrong).toBeInstanceOf(PassphraseError)
    expect((wrong as Error).message).toBe(`wrong passphrase: it opens none of the 2 keys in ${store.where(keys2.keys)}`)
    // wrong passphrase: one line, its own exit code (README "Exit status": 7), not corruption's 6
    expect(reportError(wrong)).toEqual({ code: 7, line: (wrong as Error).message })
    await expect(removeKey(store, 'ffffffffffffffff')).rejects.toThrow(/no key ffffffffffffffff/)
    await removeKey(store, a)
    await expect(unlock(store, IN.repoId, 'first')).rejects.toThrow(PassphraseError)
    const last = await removeKey(store, b).catch((e: unknown) => e)
    expect(last).toBeInstanceOf(BfsError)
    expect((last as BfsError).message).toMatch(/is the last key of the repository/)
    expect(await unlock(store, IN.repoId, 'second')).toEqual({ masterKey: IN.masterKey, keyId: b })
  })

  it('a damaged, renamed or foreign key file is listed as a problem and never counts as the last key', async () => {
    const store = DiskStore.create(path.join(work, 'r2'))
    const a = await addKey(store, IN.repoId, 'chacha20-poly1305', IN.masterKey, 'pw', meta, FAST)
    const b = await addKey(store, IN.repoId, 'chacha20-poly1305', IN.masterKey, 'pw2', meta, FAST)
    // b damaged: a flipped byte of its JSON (the envelope's SHA-256 catches it)
    const fb = path.join(work, 'r2', 'keys', b)
    const bytes = fs.readFileSync(fb)
    bytes[90] ^= 0x20
    fs.writeFileSync(fb, bytes)
    // a copy of a under another name: its keyId says otherwise
    fs.copyFileSync(path.join(work, 'r2', 'keys', a), path.join(work, 'r2', 'keys', '1111111111111111'))
    const list = await listKeys(store)
    expect(list.filter((k) => 'problem' in k).map((k) => k.keyId).sort()).toEqual(['1111111111111111', b].sort())
    expect(list.find((k) => k.keyId === '1111111111111111')).toMatchObject({ problem: expect.stringMatching(/holds key [0-9a-f]{16}, not 1111111111111111/) })
    await expect(removeKey(store, a)).rejects.toThrow(/last key/)
    await removeKey(store, b) // a damaged key goes while a readable one stays
    // a key file of another repository (same master key, other repoId) does not open here
    const other = DiskStore.create(path.join(work, 'r3'))
    await addKey(other, 'f'.repeat(32), 'aes-256-gcm', IN.masterKey, 'pw', meta, FAST)
    await expect(unlock(other, IN.repoId, 'pw')).rejects.toThrow(PassphraseError)
    // no key file reads at all: corruption (exit 6), not a wrong passphrase
    for (const n of fs.readdirSync(path.join(work, 'r2', 'keys'))) fs.writeFileSync(path.join(work, 'r2', 'keys', n), 'junk')
    const none = await unlock(store, IN.repoId, 'pw').catch((e: unknown) => e)
    expect(none).toBeInstanceOf(BfsError)
    expect((none as BfsError).exitCode).toBe(6)
  })
})

// ---- where the passphrase comes from (src/cli/passphrase.ts) ----

describe('readPassphrase: --password-file, BFS_PASSWORD, the terminal', () => {
  const work = tmpdir('bfs-pass-')
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }))
  const file = (name: string, text: string): string => {
    fs.writeFileSync(path.join(work, name), text)
    return path.join(work, name)
  }
  const noTty = { input: { isTTY: false } as NodeJS.ReadStream, output: process.stderr }

  it('a password file loses one trailing newline only; the file wins over the environment', async () => {
    const env = { BFS_PASSWORD: 'from-env' }
    expect(await readPassphrase({ passwordFile: file('a', 'secret\n'), env, prompt: '', tty: noTty })).toBe('secret')
    expect(await readPassphrase({ passwordFile: file('b', 'secret\r\n'), env, prompt: '', tty: noTty })).toBe('secret')
    expect(await readPassphrase({ passwordFile: file('c', 'two words \n\n'), env, prompt: '', tty: noTty })).toBe('two words \n')
    expect(await readPassphrase({ passwordFile: file('d', 'no newline'), env, prompt: '', tty: noTty })).toBe('no newline')
    expect(await readPassphrase({ env, prompt: '', tty: noTty })).toBe('from-env')
  })

  it('an empty or missing file, and no source at all without a terminal: one line, exit 1 or 2', async () => {
    const fail = async (o: Parameters<typeof readPassphrase>[0]): Promise<BfsError> => (await readPassphrase(o).catch((e: unknown) => e)) as BfsError
    const empty = await fail({ passwordFile: file('e', '\n'), prompt: '', tty: noTty })
    expect([empty.exitCode, empty.message]).toEqual([1, `the password file ${path.join(work, 'e')} is empty`])
    const missing = await fail({ passwordFile: path.join(work, 'nope'), prompt: '', tty: noTty })
    expect([missing.exitCode, missing.message]).toEqual([1, `cannot read the password file ${path.join(work, 'nope')}: ENOENT`])
    const none = await fail({ env: { BFS_PASSWORD: '' }, prompt: '', tty: noTty })
    expect([none.exitCode, none.message]).toEqual([2, 'no passphrase: give --password-file FILE or set BFS_PASSWORD (no terminal to ask on)'])
  })

  it('at a terminal (a pty from script(1)): asked without echo, twice for a new one', async () => {
    const prog = `import(${JSON.stringify(path.join(ROOT, 'dist/cli/passphrase.js'))}).then(async (m) => { try { const p = await m.readPassphrase({ prompt: 'pw: ', confirm: true, env: {} }); process.stdout.write('GOT[' + p + ']\\n') } catch (e) { process.stdout.write('ERR[' + e.message + ']\\n') } })`
    const run = (answers: string[]): Promise<string> =>
      new Promise((resolve, reject) => {
        const child = spawn('script', ['-qec', `node -e ${JSON.stringify(prog).replace(/\$/g, '\\$')}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'] })
        let out = ''
        const left = [...answers]
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString()
          // answer each prompt once it is shown (raw mode is on by then: nothing is echoed)
          if (left.length && /(pw|again): $/.test(out)) child.stdin.write(left.shift()!)
        })
        child.on('error', reject)
        child.on('close', () => resolve(out))
      })
    // 's3', a backspace (DEL), 'ecret': the line is edited, and nothing typed is echoed
    const ok = await run(['s3\u007fecret\r', 'secret\r'])
    expect(ok).toContain('GOT[secret]')
    expect(ok.replace('GOT[secret]', '')).not.toMatch(/s3|ecret/)
    expect(await run(['one\r', 'two\r'])).toContain('ERR[the two passphrases differ]')
  })
})
