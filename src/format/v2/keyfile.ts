import { FormatError } from '../errors.js'
import { type Json, RAND16_RE, base64, fields, parseJsonObject } from './json.js'

/**
 * Key file (BFSKEYF envelope, never encrypted; JSON): the repository's master key wrapped
 * under a key derived from one passphrase. native-notes/format.md §2.21. The wrapping itself
 * (scrypt, AEAD) is src/crypto's; this is the record only.
 */

export type AeadName = 'aes-256-gcm' | 'chacha20-poly1305'
export const AEADS: readonly AeadName[] = ['aes-256-gcm', 'chacha20-poly1305']

/**
 * scrypt's cost parameters a reader accepts: N a power of two in [2^10, 2^20], 1 ≤ r ≤ 32,
 * 1 ≤ p ≤ 16, and with kdf `scrypt-lanes` 2 ≤ lanes ≤ 8 (and the memory cap below). Writers
 * use `scrypt-lanes` with N 2^16, r 8, p 1, lanes 2 (§2.21); `scrypt` with N 2^17, r 8, p 1
 * before 2026-12-05.
 */
export const SCRYPT_LIMITS = { minLogN: 10, maxLogN: 20, maxR: 32, maxP: 16, minLanes: 2, maxLanes: 8 } as const
/** The memory the KDF needs (128·N·r bytes per lane, every lane at once) must stay under this (1 GiB): a key file cannot make a reader allocate more. */
export const MAX_SCRYPT_MEM_BYTES = 1 << 30

/** The KDFs of §2.21: plain scrypt, or `lanes` independent scrypt instances (one per thread) joined by HKDF. */
export type KdfName = 'scrypt' | 'scrypt-lanes'

/** The bytes of memory a KDF with these parameters holds at once. */
export function kdfMemBytes(params: { N: number; r: number; lanes?: number }): number {
  return 128 * params.N * params.r * (params.lanes ?? 1)
}

export const MASTER_KEY_BYTES = 64
export const AEAD_TAG_BYTES = 16

export interface KeyFile {
  format: 2
  /** `<rand16>`, also the object's name `keys/<keyId>`. */
  keyId: string
  created: string
  host: string
  user: string
  label: string
  kdf: KdfName
  N: number
  r: number
  p: number
  /** With kdf `scrypt-lanes` only: how many scrypt instances (2 … 8). */
  lanes?: number
  /** scrypt's salt, 32 bytes. */
  salt: Buffer
  aead: AeadName
  /** The wrap's nonce, 12 bytes. */
  nonce: Buffer
  /** AEAD(KEK, nonce, aad, master key) ‖ tag: 64 + 16 bytes. */
  wrapped: Buffer
}

const MAX_TEXT = 256

/** The JSON payload, fields in §2.21's order. */
export function encodeKeyFile(k: KeyFile): Buffer {
  const o: Json = {
    format: 2,
    keyId: k.keyId,
    created: k.created,
    host: k.host,
    user: k.user,
    label: k.label,
    kdf: k.kdf,
    N: k.N,
    r: k.r,
    p: k.p,
    ...(k.kdf === 'scrypt-lanes' ? { lanes: k.lanes } : {}),
    salt: k.salt.toString('base64'),
    aead: k.aead,
    nonce: k.nonce.toString('base64'),
    wrapped: k.wrapped.toString('base64'),
  }
  const b = Buffer.from(JSON.stringify(o), 'utf8')
  decodeKeyFile(b, 'key file (encoder)') // the encoder writes nothing its decoder would refuse
  return b
}

export function decodeKeyFile(payload: Buffer, what: string): KeyFile {
  const o = parseJsonObject(payload, what, 'key file')
  const f = fields(o, what, 'key file')
  if (o.format !== 2) f.bad('format')
  const keyId = f.str('keyId', RAND16_RE)
  const created = f.time('created')
  const text = (name: string): string => {
    const v = f.str(name)
    if (v.length > MAX_TEXT) f.bad(name)
    return v
  }
  const host = text('host')
  const user = text('user')
  const label = text('label')
  const kdf = f.oneOf<KdfName>('kdf', ['scrypt', 'scrypt-lanes'])
  const N = f.int('N', 1 << SCRYPT_LIMITS.minLogN, 1 << SCRYPT_LIMITS.maxLogN)
  if ((N & (N - 1)) !== 0) f.bad('N')
  const r = f.int('r', 1, SCRYPT_LIMITS.maxR)
  const p = f.int('p', 1, SCRYPT_LIMITS.maxP)
  // `lanes` belongs to scrypt-lanes alone: one encoding per KDF
  const lanes = kdf === 'scrypt-lanes' ? f.int('lanes', SCRYPT_LIMITS.minLanes, SCRYPT_LIMITS.maxLanes) : f.optional('lanes') ? f.bad('lanes') : undefined
  const mem = kdfMemBytes({ N, r, lanes })
  if (mem > MAX_SCRYPT_MEM_BYTES) throw new FormatError('BAD_VALUE', `${what}: key file asks scrypt for ${mem} bytes of memory (at most ${MAX_SCRYPT_MEM_BYTES})`)
  const salt = base64(o.salt, what, 'salt', 'key file')
  if (salt.length !== 32) f.bad('salt')
  const aead = f.oneOf('aead', AEADS)
  const nonce = base64(o.nonce, what, 'nonce', 'key file')
  if (nonce.length !== 12) f.bad('nonce')
  const wrapped = base64(o.wrapped, what, 'wrapped', 'key file')
  if (wrapped.length !== MASTER_KEY_BYTES + AEAD_TAG_BYTES) f.bad('wrapped')
  return { format: 2, keyId, created, host, user, label, kdf, N, r, p, ...(lanes === undefined ? {} : { lanes }), salt, aead, nonce, wrapped }
}

/** The wrap's associated data: UTF-8 of `bfs/keyfile` ‖ repoId (32 hex digits) ‖ keyId (16 hex digits). */
export function keyFileAad(repoId: string, keyId: string): Buffer {
  return Buffer.from(`bfs/keyfile${repoId}${keyId}`, 'utf8')
}
