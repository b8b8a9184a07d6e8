/**
 * The key hierarchy of an encrypted repository (native-notes/format.md §2.21–2.22):
 *
 *   passphrase ─scrypt-lanes (or scrypt)─► KEK ─AEAD unwrap (key file)─► master key (64 random bytes)
 *   master key ─HKDF-SHA256(salt = repoId's 16 bytes, info = label)─► kEnc kId kContent kBlockSeed kConfigMac kName
 *   kEnc ─HKDF-SHA256(salt = the object's 32-byte salt, info = "bfs v2 " ‖ kind)─► per-object key
 *
 * Pure computation over node:crypto; no store, no prompt. A passphrase that opens no key file
 * is a PassphraseError (distinct from corruption); a key file or config MAC that does not
 * check is a FormatError, as every other damaged object.
 */
import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto'
import { FormatError } from '../format/errors.js'
import { type AeadName, type KeyFile, MASTER_KEY_BYTES, MAX_SCRYPT_MEM_BYTES, SCRYPT_LIMITS, decodeKeyFile, encodeKeyFile, kdfMemBytes, keyFileAad } from '../format/v2/keyfile.js'
import { decodeEnvelope2, encodeEnvelope2 } from '../format/v2/envelope.js'
import { parseJsonObject } from '../format/v2/json.js'
import { KEY_BYTES, NONCE_BYTES, type ObjectKey, SALT_BYTES, openWithNonce, sealWithNonce } from './aead.js'
import { scryptAsync } from '../native/index.js'

/** A key file's KDF parameters: scrypt's N, r, p, and with `lanes` (kdf `scrypt-lanes`, §2.21) that many scrypt instances. */
export interface KdfParams {
  readonly N: number
  readonly r: number
  readonly p: number
  /** Absent: plain scrypt (kdf `scrypt`). */
  readonly lanes?: number
}

/**
 * What a writer puts in a new key file (since 2026-12-05): `scrypt-lanes`, two scrypt
 * instances of N = 2^16, r = 8, p = 1 (64 MiB each), run at once on two threads: the same
 * scrypt work per passphrase guess as one N = 2^17 (OWASP lists N 2^16, r 8, p 2 beside
 * N 2^17, r 8, p 1), in ~0.14 s instead of ~0.27 s of wall time on this 2-core machine
 * (every command that unlocks a repository waits for it; issue 18: encrypted ≤ 1.1× plain).
 */
export const SCRYPT_DEFAULTS: KdfParams = Object.freeze({ N: 1 << 16, r: 8, p: 1, lanes: 2 })
/** What writers used before (kdf `scrypt`, N = 2^17, r = 8, p = 1: 128 MiB, ~0.27 s); readers open such key files as before. */
export const SCRYPT_V1: KdfParams = Object.freeze({ N: 1 << 17, r: 8, p: 1 })
/** HKDF info that joins the lanes' outputs into the KEK (§2.21). */
export const KEK_LANES_INFO = 'bfs v2 kek lanes'

export { PassphraseError } from './errors.js'

/** HKDF labels (§2.22): the info of each repository key. */
export const LABELS = {
  kEnc: 'bfs v2 enc',
  kId: 'bfs v2 id',
  kContent: 'bfs v2 content',
  kBlockSeed: 'bfs v2 block seed',
  kConfigMac: 'bfs v2 config mac',
  kName: 'bfs v2 name',
} as const

/** Per-object key kinds (§2.22): info = "bfs v2 " ‖ kind. */
export type ObjectKind = 'unit' | 'pack' | 'hashes' | 'dedup' | 'object'
const KINDS: ReadonlySet<string> = new Set(['unit', 'pack', 'hashes', 'dedup', 'object'])

/** The repository's keys, derived once per process from the master key. */
export interface RepoKeys {
  readonly aead: AeadName
  /** Root of per-object keys. */
  readonly kEnc: Buffer
  /** BLAKE3 key of piece ids. */
  readonly kId: Buffer
  /** BLAKE3 key of content digests. */
  readonly kContent: Buffer
  readonly kBlockSeed: Buffer
  /** XXH64 seed of block hashes, frame checks and page cuts: kBlockSeed's first 8 bytes, LE. */
  readonly blockSeed: bigint
  /** HMAC-SHA256 key of the config. */
  readonly kConfigMac: Buffer
  /** HMAC-SHA256 key of the object ids that stand for user-given names (§2.14.2: file groups). */
  readonly kName: Buffer
}

const REPO_ID_RE = /^[0-9a-f]{32}$/

function hkdf(ikm: Buffer, salt: Buffer, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from(info, 'utf8'), KEY_BYTES))
}

/** 64 random bytes: a new repository's master key. */
export function newMasterKey(): Buffer {
  return randomBytes(MASTER_KEY_BYTES)
}

/**
 * The key encryption key (§2.21), async. kdf `scrypt` (no `lanes`): scrypt(UTF-8 passphrase,
 * salt, N, r, p) → 32 bytes. kdf `scrypt-lanes`: K_i = scrypt(passphrase, salt ‖ byte i, N, r,
 * p) → 32 bytes for i = 0 … lanes−1, all at once on the threadpool, and KEK =
 * HKDF-SHA256(K_0 ‖ … ‖ K_{lanes−1}, salt, "bfs v2 kek lanes") → 32 bytes.
 */
export async function deriveKek(passphrase: string | Buffer, salt: Buffer, params: KdfParams): Promise<Buffer> {
  const pass = typeof passphrase === 'string' ? Buffer.from(passphrase, 'utf8') : passphrase
  const { N, r, p, lanes } = params
  if (lanes !== undefined && !(Number.isSafeInteger(lanes) && lanes >= SCRYPT_LIMITS.minLanes && lanes <= SCRYPT_LIMITS.maxLanes)) throw new RangeError(`scrypt lanes ${lanes} is not in ${SCRYPT_LIMITS.minLanes} … ${SCRYPT_LIMITS.maxLanes}`)
  // the format's cap on what a key file can make a reader allocate (every lane at once)
  const need = kdfMemBytes(params)
  if (need > MAX_SCRYPT_MEM_BYTES) throw new RangeError(`scrypt would need ${need} bytes`)
  // libsodium's scrypt (native/scrypt.c), on the threadpool: the same bytes as node:crypto's
  // (OpenSSL's), ~0.12 s of a core per N = 2^16 lane instead of ~0.18 s
  if (lanes === undefined) return scryptAsync(pass, salt, N, r, p, KEY_BYTES)
  const parts = await Promise.all(Array.from({ length: lanes }, (_, i) => scryptAsync(pass, Buffer.concat([salt, Buffer.of(i)]), N, r, p, KEY_BYTES)))
  return hkdf(Buffer.concat(parts), salt, KEK_LANES_INFO)
}

/** The six repository keys of §2.22 from the master key and the repository id (32 hex digits). */
export function deriveRepoKeys(masterKey: Buffer, repoId: string, aead: AeadName): RepoKeys {
  if (masterKey.length !== MASTER_KEY_BYTES) throw new RangeError(`a master key is ${MASTER_KEY_BYTES} bytes`)
  if (!REPO_ID_RE.test(repoId)) throw new RangeError(`repoId ${repoId} is not 32 hex digits`)
  const salt = Buffer.from(repoId, 'hex')
  const kBlockSeed = hkdf(masterKey, salt, LABELS.kBlockSeed)
  return {
    aead,
    kEnc: hkdf(masterKey, salt, LABELS.kEnc),
    kId: hkdf(masterKey, salt, LABELS.kId),
    kContent: hkdf(masterKey, salt, LABELS.kContent),
    kBlockSeed,
    blockSeed: kBlockSeed.readBigUInt64LE(0),
    kConfigMac: hkdf(masterKey, salt, LABELS.kConfigMac),
    kName: hkdf(masterKey, salt, LABELS.kName),
  }
}

/** The kinds of user-given names that an encrypted repository stores under a keyed id (§2.14.2). */
export type NamedKind = 'group'

/**
 * The object id of a user-given name in an encrypted repository (§2.14.2): the first 16 bytes
 * of HMAC-SHA256(kName, kind ‖ "/" ‖ the name's UTF-8 bytes), 32 hex digits. Without the
 * master key a name cannot be tested against an id; the same name has the same id in one
 * repository (so a writer finds the object to replace) and another in any other repository.
 */
export function nameId(keys: Pick<RepoKeys, 'kName'>, kind: NamedKind, name: string): string {
  if (kind !== 'group') throw new RangeError(`unknown named kind ${String(kind)}`)
  return createHmac('sha256', keys.kName).update(Buffer.from(`${kind}/${name}`, 'utf8')).digest().subarray(0, 16).toString('hex')
}

/** The key of one object: HKDF-SHA256(kEnc, its 32-byte salt, "bfs v2 " ‖ kind). */
export function objectKey(keys: Pick<RepoKeys, 'aead' | 'kEnc'>, salt: Buffer, kind: ObjectKind): ObjectKey {
  if (!KINDS.has(kind)) throw new RangeError(`unknown object kind ${String(kind)}`)
  if (salt.length !== SALT_BYTES) throw new RangeError(`an object salt is ${SALT_BYTES} bytes`)
  return { aead: keys.aead, key: hkdf(keys.kEnc, salt, `bfs v2 ${kind}`) }
}

// ---- config MAC ---------------------------------------------------------------------------

/** JSON with every object's keys sorted (JS string order) and no whitespace: what the config MAC covers. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>
    return `{${Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`
  }
  return JSON.stringify(v)
}

/** base64 HMAC-SHA256(kConfigMac, canonical JSON of the config payload without its `mac` field). */
export function configMac(keys: Pick<RepoKeys, 'kConfigMac'>, configPayload: Buffer): string {
  const o = parseJsonObject(configPayload, 'config', 'config')
  delete o.mac
  return createHmac('sha256', keys.kConfigMac).update(canonicalJson(o), 'utf8').digest('base64')
}

/** Refuses a config whose `mac` is missing or does not check (§2.22's downgrade refusal): FormatError BAD_CHECKSUM. */
export function checkConfigMac(keys: Pick<RepoKeys, 'kConfigMac'>, configPayload: Buffer, what: string): void {
  const o = parseJsonObject(configPayload, what, 'config')
  if (typeof o.mac !== 'string') throw new FormatError('BAD_CHECKSUM', `${what}: the config of an encrypted repository has no mac`)
  const want = Buffer.from(configMac(keys, configPayload), 'base64')
  const got = Buffer.from(o.mac, 'base64')
  if (got.length !== want.length || !timingSafeEqual(got, want)) throw new FormatError('BAD_CHECKSUM', `${what}: the config's mac does not check (tampered with, or not this repository's)`)
}

// ---- key files ----------------------------------------------------------------------------

export interface NewKeyFile {
  repoId: string
  masterKey: Buffer
  passphrase: string | Buffer
  aead: AeadName
  /** Default: a random `<rand16>`. */
  keyId?: string
  host: string
  user: string
  label: string
  /** Default: now. */
  created?: string
  /** Default: SCRYPT_DEFAULTS (tests pass smaller ones). */
  scrypt?: KdfParams
  /** Fixed scrypt salt and wrap nonce, for golden vectors only; default random. */
  salt?: Buffer
  nonce?: Buffer
}

/**
 * A key file's bytes (BFSKEYF envelope v2, plain, JSON): the master key wrapped under
 * deriveKek(passphrase) with a fresh salt, so each key file has its own KEK and the random nonce
 * is used once under it.
 */
export async function makeKeyFile(o: NewKeyFile): Promise<{ keyId: string; file: Buffer; record: KeyFile }> {
  if (o.masterKey.length !== MASTER_KEY_BYTES) throw new RangeError(`a master key is ${MASTER_KEY_BYTES} bytes`)
  if (!REPO_ID_RE.test(o.repoId)) throw new RangeError(`repoId ${o.repoId} is not 32 hex digits`)
  const keyId = o.keyId ?? randomBytes(8).toString('hex')
  const params = o.scrypt ?? SCRYPT_DEFAULTS
  const salt = o.salt ?? randomBytes(SALT_BYTES)
  const nonce = o.nonce ?? randomBytes(NONCE_BYTES)
  const kek = await deriveKek(o.passphrase, salt, params)
  const wrapped = sealWithNonce({ aead: o.aead, key: kek }, nonce, keyFileAad(o.repoId, keyId), o.masterKey)
  const record: KeyFile = {
    format: 2,
    keyId,
    created: o.created ?? new Date().toISOString(),
    host: o.host,
    user: o.user,
    label: o.label,
    kdf: params.lanes === undefined ? 'scrypt' : 'scrypt-lanes',
    N: params.N,
    r: params.r,
    p: params.p,
    ...(params.lanes === undefined ? {} : { lanes: params.lanes }),
    salt,
    aead: o.aead,
    nonce,
    wrapped,
  }
  const payload = encodeKeyFile(record)
  return { keyId, file: encodeEnvelope2('keyfile', 0, payload.length, payload), record }
}

/** Decodes a key file's bytes (envelope and JSON checked); `what` names it in errors. */
export function readKeyFile(file: Buffer, what: string): KeyFile {
  const env = decodeEnvelope2('keyfile', file, what)
  if (env.flags !== 0) throw new FormatError('BAD_VALUE', `${what}: a key file is never compressed or encrypted`)
  return decodeKeyFile(env.stored, what)
}

/**
 * The master key from one key file, or null when the passphrase does not open it (a wrong
 * passphrase and a tampered wrap are indistinguishable: both fail the AEAD). The key file's
 * keyId must be the name it was found under (`expectKeyId`), which the AAD binds as well.
 */
export async function unwrapKeyFile(k: KeyFile, repoId: string, passphrase: string | Buffer): Promise<Buffer | null> {
  const kek = await deriveKek(passphrase, k.salt, kdfParamsOf(k))
  try {
    return openWithNonce({ aead: k.aead, key: kek }, k.nonce, keyFileAad(repoId, k.keyId), k.wrapped, `keys/${k.keyId}`)
  } catch (err) {
    if (err instanceof FormatError) return null
    throw err
  }
}

/** A key file's KDF parameters (`lanes` only with kdf `scrypt-lanes`). */
export function kdfParamsOf(k: Pick<KeyFile, 'kdf' | 'N' | 'r' | 'p' | 'lanes'>): KdfParams {
  return k.kdf === 'scrypt-lanes' ? { N: k.N, r: k.r, p: k.p, lanes: k.lanes } : { N: k.N, r: k.r, p: k.p }
}
