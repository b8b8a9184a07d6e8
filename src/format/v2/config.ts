import { FormatError } from '../errors.js'
import { type Json, HEX32_RE, fields, parseJsonObject } from './json.js'
import type { HashAlg } from './unit.js'

/**
 * Config v2 (BFSCONF envelope version 2, JSON) and its feature flags.
 * native-notes/format.md §2.7.
 */

export type FeatureClass = 'incompat' | 'rocompat' | 'compat'

/** Every feature assigned so far, with its class (a known feature in another class is corruption). */
export const FEATURES: Readonly<Record<string, FeatureClass>> = {
  pieces: 'incompat',
  upgrading: 'incompat',
  bilog: 'incompat',
  tape: 'incompat',
  encryption: 'incompat',
  /** Units whose frames need a stream dictionary (compact, §2.9.1). */
  'unit-dictionaries': 'incompat',
  /** No content dedup (`init --encrypt --no-dedup`, §2.7/§2.17): a writer that does not know it would write the index. */
  'no-dedup': 'rocompat',
  'multi-source': 'compat',
  'dedup-index': 'compat',
  history: 'compat',
  'v1-streams': 'compat',
}

/**
 * The features this bfs implements (issue 15 step 1's set; a later step adds its own when it
 * lands). Compat features need not be listed: they are safe to ignore.
 */
export const SUPPORTED_FEATURES: ReadonlySet<string> = new Set(['pieces', 'upgrading', 'v1-streams', 'bilog', 'tape', 'unit-dictionaries', 'encryption', 'no-dedup'])

const FEATURE_RE = /^[a-z0-9-]{1,32}$/

export interface ConfigDefaults {
  unitBlocks: number
  frameBlocks: { files: number; volume: number }
  level: number
  packBytes: number
  dirDelta: boolean
  dedupMinBytes: number
}

/**
 * What a config's missing `defaults` fields read as (§2.7). Not what a new repository gets
 * (newRepoDefaults): `dedupMinBytes` 1 here is what bfs wrote before 2026-12-05, so a config
 * without it keeps indexing what it did.
 */
export const DEFAULTS: Readonly<ConfigDefaults> = Object.freeze({
  unitBlocks: 5120,
  frameBlocks: Object.freeze({ files: 32, volume: 32 }),
  level: 3,
  packBytes: 16 * 1024 * 1024,
  dirDelta: true,
  dedupMinBytes: 1,
})

/**
 * The `dedupMinBytes` a new repository's config gets (`bfs init`, plain and `--encrypt`;
 * `--dedup-min-bytes` sets another). §2.7/§2.17: an index entry (~45 B, plus filter bits) of a
 * file under 1 KiB costs about what the file's own compressed bytes cost (small files share
 * frames), so indexing them cannot pay for itself: on 1M files of 0–200 B, indexing them made
 * a full backup take ~18.5 s instead of ~10.5 s and the repository 168 MB instead of 123 MB.
 */
export const NEW_REPO_DEDUP_MIN_BYTES = 1024

/** A new repository's defaults (a fresh object): DEFAULTS, with dedupMinBytes NEW_REPO_DEDUP_MIN_BYTES unless given. */
export function newRepoDefaults(o: { dedupMinBytes?: number } = {}): ConfigDefaults {
  if (o.dedupMinBytes !== undefined && !(Number.isSafeInteger(o.dedupMinBytes) && o.dedupMinBytes >= 0)) throw new RangeError(`dedupMinBytes must be a whole number ≥ 0, not ${o.dedupMinBytes}`)
  return { ...DEFAULTS, frameBlocks: { ...DEFAULTS.frameBlocks }, dedupMinBytes: o.dedupMinBytes ?? NEW_REPO_DEDUP_MIN_BYTES }
}

export interface ConfigV2 {
  format: 2
  repoId: string
  created: string
  blockBytes: 4096
  hashAlg: HashAlg
  compression: 'zstd'
  features: { incompat: string[]; rocompat: string[]; compat: string[] }
  defaults: ConfigDefaults
  encryption: { aead: 'aes-256-gcm' | 'chacha20-poly1305'; keys: string } | null
  /** base64 HMAC-SHA256 of the config without it (issue 18), or null. */
  mac: string | null
  /** Fields this bfs does not know: kept as they are when it rewrites the config. */
  extra: Json
}

const KNOWN_FIELDS = ['format', 'repoId', 'created', 'blockBytes', 'hashAlg', 'compression', 'features', 'defaults', 'encryption', 'mac']

/** The JSON payload: known fields in a fixed order, then the unknown ones kept from the last read. */
export function encodeConfigV2(c: ConfigV2): Buffer {
  const o: Json = {
    format: 2,
    repoId: c.repoId,
    created: c.created,
    blockBytes: c.blockBytes,
    hashAlg: c.hashAlg,
    compression: c.compression,
    features: { incompat: c.features.incompat, rocompat: c.features.rocompat, compat: c.features.compat },
    defaults: { unitBlocks: c.defaults.unitBlocks, frameBlocks: { files: c.defaults.frameBlocks.files, volume: c.defaults.frameBlocks.volume }, level: c.defaults.level, packBytes: c.defaults.packBytes, dirDelta: c.defaults.dirDelta, dedupMinBytes: c.defaults.dedupMinBytes },
    encryption: c.encryption,
    mac: c.mac,
  }
  for (const [k, v] of Object.entries(c.extra)) if (!KNOWN_FIELDS.includes(k)) o[k] = v
  const b = Buffer.from(JSON.stringify(o), 'utf8')
  decodeConfigV2(b, 'config (encoder)') // the encoder writes nothing its decoder would refuse
  return b
}

export function decodeConfigV2(payload: Buffer, what: string): ConfigV2 {
  const o = parseJsonObject(payload, what, 'config')
  const f = fields(o, what, 'config')
  if (o.format !== 2) f.bad('format')
  const repoId = f.str('repoId', HEX32_RE)
  const created = f.time('created')
  if (o.blockBytes !== 4096) f.bad('blockBytes')
  const hashAlg = f.oneOf('hashAlg', ['xxh64', 'sha256-64'] as const)
  if (o.compression !== 'zstd') f.bad('compression')
  // features
  const feat = o.features
  if (typeof feat !== 'object' || feat === null || Array.isArray(feat)) f.bad('features')
  const features = { incompat: [] as string[], rocompat: [] as string[], compat: [] as string[] }
  const seen = new Set<string>()
  for (const cls of ['incompat', 'rocompat', 'compat'] as const) {
    const list = (feat as Json)[cls]
    if (!Array.isArray(list)) f.bad(`features.${cls}`)
    for (const name of list as unknown[]) {
      if (typeof name !== 'string' || !FEATURE_RE.test(name) || seen.has(name)) f.bad(`features.${cls}`)
      const known = FEATURES[name as string]
      if (known && known !== cls) throw new FormatError('BAD_VALUE', `${what}: feature '${name}' is listed as ${cls}, it is ${known}`)
      seen.add(name as string)
      features[cls].push(name as string)
    }
  }
  if (!features.incompat.includes('pieces')) f.bad('features.incompat')
  // defaults: missing fields take their default values
  const d = o.defaults === undefined ? {} : o.defaults
  if (typeof d !== 'object' || d === null || Array.isArray(d)) f.bad('defaults')
  const df = fields(d as Json, what, 'config defaults')
  const has = (k: string): boolean => (d as Json)[k] !== undefined
  const defaults: ConfigDefaults = {
    unitBlocks: has('unitBlocks') ? df.int('unitBlocks', 1, 1 << 20) : DEFAULTS.unitBlocks,
    frameBlocks: { ...DEFAULTS.frameBlocks },
    level: has('level') ? df.int('level', 1, 22) : DEFAULTS.level,
    packBytes: has('packBytes') ? df.int('packBytes', 1 << 20, 1 << 30) : DEFAULTS.packBytes,
    dirDelta: has('dirDelta') ? df.bool('dirDelta') : DEFAULTS.dirDelta,
    dedupMinBytes: has('dedupMinBytes') ? df.int('dedupMinBytes') : DEFAULTS.dedupMinBytes,
  }
  if (has('frameBlocks')) {
    const fb = (d as Json).frameBlocks
    if (typeof fb !== 'object' || fb === null) df.bad('frameBlocks')
    const ff = fields(fb as Json, what, 'config defaults.frameBlocks')
    defaults.frameBlocks = { files: ff.int('files', 1), volume: ff.int('volume', 1) }
  }
  if (defaults.unitBlocks % defaults.frameBlocks.files !== 0 || defaults.unitBlocks % defaults.frameBlocks.volume !== 0) df.bad('frameBlocks')
  // encryption and mac (issue 18)
  let encryption: ConfigV2['encryption'] = null
  if (o.encryption !== null) {
    const e = o.encryption
    if (typeof e !== 'object' || e === null) f.bad('encryption')
    const ef = fields(e as Json, what, 'config encryption')
    encryption = { aead: ef.oneOf('aead', ['aes-256-gcm', 'chacha20-poly1305'] as const), keys: ef.str('keys') }
    if (!features.incompat.includes('encryption')) f.bad('features.incompat')
    // block hashes of an encrypted repository are XXH64 with its secret seed (§2.22): never unkeyed SHA-256
    if (hashAlg !== 'xxh64') f.bad('hashAlg')
  } else if (features.incompat.includes('encryption')) f.bad('encryption')
  if (o.mac !== null && typeof o.mac !== 'string') f.bad('mac')
  const extra: Json = {}
  for (const [k, v] of Object.entries(o)) if (!KNOWN_FIELDS.includes(k)) extra[k] = v
  return { format: 2, repoId, created, blockBytes: 4096, hashAlg, compression: 'zstd', features, defaults, encryption, mac: (o.mac as string | null) ?? null, extra }
}

/** What a binary may do with a repository, given the features it supports. */
export interface FeatureAccess {
  /** An unknown rocompat feature: read, but no writing command. */
  readOnly: boolean
  /** The unknown rocompat features (for the message). */
  readOnlyBecause: string[]
  /** Unknown compat features (ignored). */
  ignored: string[]
}

/**
 * Applies §2.7's rules: an unknown incompat feature is refused (FormatError
 * 'UNSUPPORTED_FEATURE', naming it); an unknown rocompat one makes the repository read-only;
 * unknown compat ones are ignored.
 */
export function checkFeatures(c: Pick<ConfigV2, 'features'>, what: string, supported: ReadonlySet<string> = SUPPORTED_FEATURES): FeatureAccess {
  const missing = c.features.incompat.filter((n) => !supported.has(n))
  if (missing.length) {
    const list = missing.map((n) => `'${n}'`).join(', ')
    throw new FormatError('UNSUPPORTED_FEATURE', `${what}: this repository uses feature${missing.length > 1 ? 's' : ''} ${list}, which this bfs does not support: a newer bfs is needed`)
  }
  const readOnlyBecause = c.features.rocompat.filter((n) => !supported.has(n))
  return { readOnly: readOnlyBecause.length > 0, readOnlyBecause, ignored: c.features.compat.filter((n) => !supported.has(n)) }
}
