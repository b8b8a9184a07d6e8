import { FormatError } from './errors.js'

/**
 * The manifest of a generation (JSON payload in a BFSMANI envelope): its commit record.
 * See native-notes/format.md §"Manifest".
 */
export interface FileRef {
  bytes: number
  /** hex SHA-256 of the whole stored file */
  sha256: string
}

export interface UnitRef {
  index: number
  bytes: number
  rawBlocks: number
}

export interface GenStats {
  entries: number
  files: number
  dirs: number
  /** Sum of apparent sizes of regular files (or the volume size). */
  logicalBytes: number
  /** Bytes of unit files this generation added to the repository. */
  storedBytes: number
  /** Bytes of metadata files (catalog, maps, hashes, manifest not included). */
  metaBytes: number
  newFiles: number
  changedFiles: number
  unchangedFiles: number
  skipped: number
  bytesRead: number
  seconds: number
}

export interface Manifest {
  format: 1
  id: number
  /** ISO 8601 UTC time the backup started. */
  time: string
  label: string
  /** Absolute path of what was backed up. */
  source: string
  host: string
  /**
   * `--tag`s (written since issue 17; absent in older manifests: read as none). Each a
   * non-empty string without a comma.
   */
  tags?: string[]
  kind: 'files' | 'volume'
  group: string | null
  /** The generation this one is incremental to (0 = full). */
  parent: number
  blockBytes: number
  unitBlocks: number
  frameBlocks: number
  level: number
  /** Number of 4 KiB blocks in this generation's data stream. */
  streamBlocks: number
  units: UnitRef[]
  /** Files: the tree. Volumes: a root directory holding one regular file, the volume. */
  catalog: FileRef
  maps: FileRef
  hashes: FileRef
  /** True when some source files could not be read (they are not in the catalog). */
  partial: boolean
  stats: GenStats
  /**
   * Volume generations: what the filesystem on the source was doing while it was read
   * (absent in generations written before it was recorded, and in file generations).
   */
  consistency?: VolumeConsistency
  /**
   * `gens/N/bilog` (size and SHA-256), present exactly when the generation has a BI log:
   * readers lay its images over the maps (native-notes/format.md §"Before-image log").
   */
  biLog?: FileRef
  /** `--online` backups: what the capture did (a record; format.md §"Manifest"). */
  online?: ManifestOnline
}

/** The manifest's record of an `--online` backup. */
export interface ManifestOnline {
  /** Whether the capture ran (`--online=auto` without pre-content events: false, and `unavailable` says why). */
  captured: boolean
  unavailable?: string
  /** T0, ISO 8601 with nanoseconds (when captured). */
  t0?: string
  /** Files stored as read, not as at T0 (flagged changed-while-read in the catalog). */
  uncovered: Array<{ path: string; reason: string }>
  events: number
  images: number
  imageBytes: number
  truncates: number
  /**
   * Small files the capture read whole at their first event that may change them, and their
   * bytes (stored as the files' data, not in the BI log; absent when none; since 2026-12-04).
   */
  preReads?: number
  preReadBytes?: number
  /** Records and 4 KiB blocks of the generation's BI log. */
  biRecords: number
  biBlocks: number
}

/**
 * `unmounted` (nothing mounted from the source), `read-only` (mounted read-only), `frozen`
 * (mounted read-write and frozen for the whole read: clean), `mounted-rw` (mounted
 * read-write and not frozen: at best crash-consistent; ext4 needs `mount -o ro,noload`).
 */
export type VolumeConsistency = 'unmounted' | 'read-only' | 'frozen' | 'mounted-rw'
export const VOLUME_CONSISTENCIES: readonly VolumeConsistency[] = ['unmounted', 'read-only', 'frozen', 'mounted-rw']

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const isRef = (v: unknown): v is FileRef =>
  typeof v === 'object' && v !== null && isNum((v as FileRef).bytes) && typeof (v as FileRef).sha256 === 'string' && /^[0-9a-f]{64}$/.test((v as FileRef).sha256)

export function encodeManifest(m: Manifest): Buffer {
  return Buffer.from(JSON.stringify(m), 'utf8')
}

export function decodeManifest(payload: Buffer, what: string): Manifest {
  let m: Manifest
  try {
    m = JSON.parse(payload.toString('utf8')) as Manifest
  } catch {
    throw new FormatError('BAD_VALUE', `${what}: manifest is not valid JSON`)
  }
  const bad = (field: string): never => {
    throw new FormatError('BAD_VALUE', `${what}: manifest field '${field}' is missing or invalid`)
  }
  if (typeof m !== 'object' || m === null) bad('(root)')
  if (m.format !== 1) bad('format')
  for (const f of ['id', 'blockBytes', 'unitBlocks', 'frameBlocks', 'streamBlocks', 'parent', 'level'] as const) if (!isNum(m[f])) bad(f)
  if (m.id < 1) bad('id')
  if (m.blockBytes !== 4096) bad('blockBytes')
  if (m.unitBlocks < 1 || m.frameBlocks < 1 || m.unitBlocks % m.frameBlocks !== 0) bad('unitBlocks')
  if (typeof m.time !== 'string' || Number.isNaN(Date.parse(m.time))) bad('time')
  if (typeof m.label !== 'string') bad('label')
  if (typeof m.source !== 'string') bad('source')
  if (typeof m.host !== 'string') bad('host')
  if (m.tags !== undefined && (!Array.isArray(m.tags) || m.tags.some((t) => typeof t !== 'string' || t === '' || t.includes(',')))) bad('tags')
  if (m.kind !== 'files' && m.kind !== 'volume') bad('kind')
  if (m.group !== null && typeof m.group !== 'string') bad('group')
  if (!Array.isArray(m.units)) bad('units')
  let blocks = 0
  m.units.forEach((u, i) => {
    if (!isNum(u.index) || u.index !== i || !isNum(u.bytes) || !isNum(u.rawBlocks) || u.rawBlocks > m.unitBlocks) bad(`units[${i}]`)
    if (i < m.units.length - 1 && u.rawBlocks !== m.unitBlocks) bad(`units[${i}].rawBlocks`)
    blocks += u.rawBlocks
  })
  if (blocks !== m.streamBlocks) bad('streamBlocks')
  if (!isRef(m.catalog)) bad('catalog')
  if (!isRef(m.maps)) bad('maps')
  if (!isRef(m.hashes)) bad('hashes')
  if (typeof m.partial !== 'boolean') bad('partial')
  if (typeof m.stats !== 'object' || m.stats === null) bad('stats')
  if (m.consistency !== undefined && (m.kind !== 'volume' || !VOLUME_CONSISTENCIES.includes(m.consistency))) bad('consistency')
  if (m.biLog !== undefined && !isRef(m.biLog)) bad('biLog')
  if (m.online !== undefined && (typeof m.online !== 'object' || m.online === null || typeof m.online.captured !== 'boolean' || !Array.isArray(m.online.uncovered))) bad('online')
  return m
}

/** Repository config (JSON payload in a BFSCONF envelope). */
export interface RepoConfig {
  format: 1
  repoId: string
  created: string
  blockBytes: 4096
  /** Per-block hash: 'xxh64' (XXH64 of the block) or 'sha256-64' (first 8 bytes of SHA-256). */
  hashAlg: 'xxh64' | 'sha256-64'
  compression: 'zstd'
}

export function decodeConfig(payload: Buffer, what: string): RepoConfig {
  let c: RepoConfig
  try {
    c = JSON.parse(payload.toString('utf8')) as RepoConfig
  } catch {
    throw new FormatError('BAD_VALUE', `${what}: config is not valid JSON`)
  }
  if (typeof c !== 'object' || c === null || c.format !== 1 || c.blockBytes !== 4096 || (c.hashAlg !== 'xxh64' && c.hashAlg !== 'sha256-64') || c.compression !== 'zstd' || typeof c.repoId !== 'string') {
    throw new FormatError('BAD_VALUE', `${what}: unsupported repository config`)
  }
  return c
}
