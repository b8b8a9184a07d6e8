import { type PieceRef, MAX_OBJECT_NUMBER, parsePieceRef, pieceRefToString } from './common.js'
import { type Entry2, decodeRootEntry, encodeRootEntry } from './dir.js'
import { type Json, HEX64_RE, RAND16_RE, base64, fields, parseJsonObject } from './json.js'
import type { HashAlg } from './unit.js'

/**
 * The JSON records of format 2: manifest (and retired manifest), stream record, run record,
 * lease and lock, and the format 1 guard lock. native-notes/format.md §2.8, §2.23.1.
 */

const ID_MAX = MAX_OBJECT_NUMBER

// ---- manifest -----------------------------------------------------------------------------

export interface SourceV2 {
  path: string
  /** The generation it was incremental to; 0 = full. */
  parent: number
  /** > every ord of this source in the generation. */
  nextOrd: number
  /** Added to the source's ords for inode numbers (0 for a single source). */
  ordBase: number
  /** Several sources (issue 17): the source directory's entry. */
  rootEntry?: Entry2
}

export type VolumeConsistency = 'unmounted' | 'read-only' | 'frozen' | 'mounted-rw'
export const VOLUME_CONSISTENCIES: readonly VolumeConsistency[] = ['unmounted', 'read-only', 'frozen', 'mounted-rw']

export interface Retirement {
  retiredAt: string
  retiredBy: number
  reason: 'forget' | 'merged-into' | 'superseded'
}

export interface ManifestV2 {
  format: 2
  id: number
  rev: number
  run: number
  time: string
  endTime: string
  label: string
  tags: string[]
  host: string
  user: string
  kind: 'files' | 'volume'
  group: string | null
  sources: SourceV2[]
  /** The root directory's entry (empty name, ord 0). */
  rootEntry: Entry2
  links: PieceRef | null
  biLog: PieceRef | null
  biIndex: PieceRef | null
  /** This run's own stream: its streamBlocks; null when it stored nothing. */
  stream: { blocks: number } | null
  merged: { from: number; to: number; runs: number[] } | null
  consistency?: VolumeConsistency
  partial: boolean
  stats: Json
  /** `--online` runs (issue 14): format 1's `online` record (native-notes/format.md §2.8.1). */
  online?: Json
  /** Present in `retired/` copies only. */
  retired?: Retirement
}

const refOrNull = (r: PieceRef | null): string | null => (r ? pieceRefToString(r) : null)

export function encodeManifestV2(m: ManifestV2): Buffer {
  const o: Json = {
    format: 2,
    id: m.id,
    rev: m.rev,
    run: m.run,
    time: m.time,
    endTime: m.endTime,
    label: m.label,
    tags: m.tags,
    host: m.host,
    user: m.user,
    kind: m.kind,
    group: m.group,
    sources: m.sources.map((s) => {
      const x: Json = { path: s.path, parent: s.parent, nextOrd: s.nextOrd, ordBase: s.ordBase }
      if (s.rootEntry) x.rootEntry = encodeRootEntry(s.rootEntry).toString('base64')
      return x
    }),
    rootEntry: encodeRootEntry(m.rootEntry).toString('base64'),
    links: refOrNull(m.links),
    biLog: refOrNull(m.biLog),
    biIndex: refOrNull(m.biIndex),
    stream: m.stream ? { blocks: m.stream.blocks } : null,
    merged: m.merged ? { from: m.merged.from, to: m.merged.to, runs: m.merged.runs } : null,
    ...(m.consistency !== undefined ? { consistency: m.consistency } : {}),
    partial: m.partial,
    stats: m.stats,
    ...(m.online !== undefined ? { online: m.online } : {}),
    ...(m.retired ? { retiredAt: m.retired.retiredAt, retiredBy: m.retired.retiredBy, reason: m.retired.reason } : {}),
  }
  const b = Buffer.from(JSON.stringify(o), 'utf8')
  decodeManifestV2(b, 'manifest (encoder)', !!m.retired)
  return b
}

/** Decodes and checks a manifest; `retired`: a `retired/` copy (the retirement fields are required). */
export function decodeManifestV2(payload: Buffer, what: string, retired = false): ManifestV2 {
  const o = parseJsonObject(payload, what, 'manifest')
  const f = fields(o, what, 'manifest')
  if (o.format !== 2) f.bad('format')
  const id = f.int('id', 1, ID_MAX)
  const rev = f.int('rev', 1)
  const run = f.int('run', 1, ID_MAX)
  if (rev === 1 && run !== id) f.bad('run')
  const kind = f.oneOf('kind', ['files', 'volume'] as const)
  if (o.group !== null && typeof o.group !== 'string') f.bad('group')
  const ref = (k: string): PieceRef | null => (o[k] === null ? null : parsePieceRef(o[k], `${what}: manifest field '${k}'`))
  // sources
  if (!Array.isArray(o.sources) || o.sources.length === 0) f.bad('sources')
  const sources: SourceV2[] = (o.sources as unknown[]).map((x, i) => {
    if (typeof x !== 'object' || x === null) f.bad(`sources[${i}]`)
    const sf = fields(x as Json, what, `manifest sources[${i}]`)
    const s: SourceV2 = { path: sf.str('path'), parent: sf.int('parent', 0, ID_MAX), nextOrd: sf.int('nextOrd', 1), ordBase: sf.int('ordBase') }
    if (s.path === '' || s.parent >= id) f.bad(`sources[${i}]`)
    if ((x as Json).rootEntry !== undefined) s.rootEntry = decodeRootEntry(base64((x as Json).rootEntry, what, `sources[${i}].rootEntry`, 'manifest'), `${what}: sources[${i}].rootEntry`)
    return s
  })
  for (let i = 1; i < sources.length; i++) {
    if (Buffer.compare(Buffer.from(sources[i - 1]!.path), Buffer.from(sources[i]!.path)) >= 0) f.bad('sources')
    if (sources[i]!.ordBase !== sources[i - 1]!.ordBase + sources[i - 1]!.nextOrd) f.bad(`sources[${i}].ordBase`)
  }
  if (sources.length === 1 && (sources[0]!.ordBase !== 0 || sources[0]!.rootEntry)) f.bad('sources[0]')
  const rootEntry = decodeRootEntry(base64(o.rootEntry, what, 'rootEntry', 'manifest'), `${what}: rootEntry`)
  // stream, merged
  let stream: ManifestV2['stream'] = null
  if (o.stream !== null) {
    if (typeof o.stream !== 'object' || o.stream === undefined) f.bad('stream')
    stream = { blocks: fields(o.stream as Json, what, 'manifest stream').int('blocks', 1) }
  }
  let merged: ManifestV2['merged'] = null
  if (o.merged !== null) {
    if (typeof o.merged !== 'object' || o.merged === undefined) f.bad('merged')
    const mf = fields(o.merged as Json, what, 'manifest merged')
    const runs = (o.merged as Json).runs
    if (!Array.isArray(runs) || runs.some((r) => typeof r !== 'number' || !Number.isSafeInteger(r) || r < 1)) f.bad('merged')
    // (double quotes: scripts/layers.mjs would read `from '…'` as an import)
    merged = { from: mf.int("from", 1, ID_MAX), to: mf.int('to', 1, ID_MAX), runs: [...(runs as number[])] }
    if (merged.from > merged.to || merged.to !== id) f.bad('merged')
  }
  let consistency: VolumeConsistency | undefined
  if (o.consistency !== undefined) {
    if (kind !== 'volume' || !VOLUME_CONSISTENCIES.includes(o.consistency as VolumeConsistency)) f.bad('consistency')
    consistency = o.consistency as VolumeConsistency
  }
  if (typeof o.stats !== 'object' || o.stats === null || Array.isArray(o.stats)) f.bad('stats')
  const m: ManifestV2 = {
    format: 2,
    id,
    rev,
    run,
    time: f.time('time'),
    endTime: f.time('endTime'),
    label: f.str('label'),
    tags: f.strings('tags'),
    host: f.str('host'),
    user: f.str('user'),
    kind,
    group: o.group as string | null,
    sources,
    rootEntry,
    links: ref('links'),
    biLog: ref('biLog'),
    biIndex: ref('biIndex'),
    stream,
    merged,
    partial: f.bool('partial'),
    stats: o.stats as Json,
  }
  if (consistency !== undefined) m.consistency = consistency
  if (o.online !== undefined) {
    if (typeof o.online !== 'object' || o.online === null || Array.isArray(o.online)) f.bad('online')
    m.online = o.online as Json
  }
  // R4 in part: a manifest's own refs are of runs up to its writer's
  for (const r of [m.links, m.biLog, m.biIndex, m.rootEntry.dir?.child]) if (r && r.run > run) f.bad('references')
  if (retired) m.retired = { retiredAt: f.time('retiredAt'), retiredBy: f.int('retiredBy', 1, ID_MAX), reason: f.oneOf('reason', ['forget', 'merged-into', 'superseded'] as const) }
  return m
}

// ---- stream record ------------------------------------------------------------------------

export interface StreamRecord {
  stream: number
  unitBlocks: number
  frameBlocks: number
  streamBlocks: number
  units: number
  level: number
  hashAlg: HashAlg
  /** `sha256` null when encrypted. */
  hashes: { bytes: number; sha256: string | null }
  created: string
}

export function encodeStreamRecord(s: StreamRecord, encrypted = false): Buffer {
  const b = Buffer.from(JSON.stringify({ stream: s.stream, unitBlocks: s.unitBlocks, frameBlocks: s.frameBlocks, streamBlocks: s.streamBlocks, units: s.units, level: s.level, hashAlg: s.hashAlg, hashes: { bytes: s.hashes.bytes, sha256: s.hashes.sha256 }, created: s.created }), 'utf8')
  decodeStreamRecord(b, 'stream record (encoder)', encrypted)
  return b
}

export function decodeStreamRecord(payload: Buffer, what: string, encrypted = false): StreamRecord {
  const o = parseJsonObject(payload, what, 'stream record')
  const f = fields(o, what, 'stream record')
  const s: StreamRecord = {
    stream: f.int('stream', 1, ID_MAX),
    unitBlocks: f.int('unitBlocks', 1, 0xffffffff),
    frameBlocks: f.int('frameBlocks', 1, 0xffffffff),
    streamBlocks: f.int('streamBlocks', 1),
    units: f.int('units', 1, ID_MAX + 1),
    level: f.int('level', 1, 22),
    hashAlg: f.oneOf('hashAlg', ['xxh64', 'sha256-64'] as const),
    hashes: { bytes: 0, sha256: null },
    created: f.time('created'),
  }
  if (s.unitBlocks % s.frameBlocks !== 0) f.bad('frameBlocks')
  if (s.units !== Math.ceil(s.streamBlocks / s.unitBlocks)) f.bad('units')
  const h = o.hashes
  if (typeof h !== 'object' || h === null) f.bad('hashes')
  const hf = fields(h as Json, what, 'stream record hashes')
  s.hashes.bytes = hf.int('bytes')
  const sha = (h as Json).sha256
  if (sha === null ? !encrypted : typeof sha !== 'string' || !HEX64_RE.test(sha)) hf.bad('sha256')
  s.hashes.sha256 = sha as string | null
  // encrypted (§2.10): chunks of 8,192 hashes, each with its 16-byte tag
  if (s.hashes.bytes !== 64 + 8 * s.streamBlocks + (encrypted ? 16 * Math.ceil(s.streamBlocks / 8192) : 0)) hf.bad('bytes')
  return s
}

// ---- run record ---------------------------------------------------------------------------

export type RunKind = 'backup' | 'merge' | 'prune' | 'compact' | 'migrate' | 'upgrade'
export type RunState = 'running' | 'committed' | 'aborted'
export const RUN_KINDS: readonly RunKind[] = ['backup', 'merge', 'prune', 'compact', 'migrate', 'upgrade']

export interface RunRecord {
  run: number
  kind: RunKind
  state: RunState
  host: string
  pid: number
  /** The writer's lease (`<rand16>`); '' for records made by upgrade. */
  lease: string
  started: string
  /** Set once the run is not running. */
  ended?: string
  /** Backup: its generation (= run). */
  gen?: number
  /** Merge: the generation it replaces. */
  target?: number
}

export function encodeRunRecord(r: RunRecord): Buffer {
  const o: Json = { run: r.run, kind: r.kind, state: r.state, host: r.host, pid: r.pid, lease: r.lease, started: r.started }
  if (r.ended !== undefined) o.ended = r.ended
  if (r.gen !== undefined) o.gen = r.gen
  if (r.target !== undefined) o.target = r.target
  const b = Buffer.from(JSON.stringify(o), 'utf8')
  decodeRunRecord(b, 'run record (encoder)')
  return b
}

export function decodeRunRecord(payload: Buffer, what: string): RunRecord {
  const o = parseJsonObject(payload, what, 'run record')
  const f = fields(o, what, 'run record')
  const r: RunRecord = {
    run: f.int('run', 1, ID_MAX),
    kind: f.oneOf('kind', RUN_KINDS),
    state: f.oneOf('state', ['running', 'committed', 'aborted'] as const),
    host: f.str('host'),
    pid: f.int('pid'),
    lease: o.lease === '' ? '' : f.str('lease', RAND16_RE),
    started: f.time('started'),
  }
  if (f.optional('ended')) r.ended = f.time('ended')
  if (r.state !== 'running' && r.ended === undefined) f.bad('ended')
  if (f.optional('gen')) r.gen = f.int('gen', 1, ID_MAX)
  if (f.optional('target')) r.target = f.int('target', 1, ID_MAX)
  if (r.kind === 'backup' && r.gen !== undefined && r.gen !== r.run) f.bad('gen')
  if (r.kind === 'merge' && r.target === undefined) f.bad('target')
  return r
}

// ---- lease and lock -----------------------------------------------------------------------

export type LeaseKind = 'mount' | 'restore' | 'cat' | 'ls' | 'verify' | 'backup' | 'merge' | 'prune' | 'compact' | 'migrate' | 'upgrade' | 'maintenance'
export const LEASE_KINDS: readonly LeaseKind[] = ['mount', 'restore', 'cat', 'ls', 'verify', 'backup', 'merge', 'prune', 'compact', 'migrate', 'upgrade', 'maintenance']
/** Default expiry (30 min) and heartbeat (5 min); clock skew assumed ≤ 5 min. */
export const LEASE_EXPIRES_MS = 30 * 60 * 1000
export const LEASE_HEARTBEAT_MS = 5 * 60 * 1000
export const MAX_CLOCK_SKEW_MS = 5 * 60 * 1000

export interface LeaseRecord {
  /** Its own name: `<rand16>`, or `maintenance` for the lock. */
  lease: string
  kind: LeaseKind
  host: string
  pid: number
  /** Process start in clock ticks since boot (/proc/PID/stat field 22). */
  pidStart: number
  started: string
  renewed: string
  expiresAfterMs: number
  /** `gen@rev` the holder has open; authoritative when present. */
  pins?: string[]
  /** Optional: the command holding it (`forget`, …), for messages naming the holder. */
  command?: string
}

const PIN_RE = /^[1-9]\d{0,7}@[1-9]\d{0,8}$/

export function encodeLease(l: LeaseRecord): Buffer {
  const o: Json = { lease: l.lease, kind: l.kind, host: l.host, pid: l.pid, pidStart: l.pidStart, started: l.started, renewed: l.renewed, expiresAfterMs: l.expiresAfterMs }
  if (l.pins) o.pins = l.pins
  if (l.command !== undefined) o.command = l.command
  const b = Buffer.from(JSON.stringify(o), 'utf8')
  decodeLease(b, 'lease (encoder)')
  return b
}

export function decodeLease(payload: Buffer, what: string): LeaseRecord {
  const o = parseJsonObject(payload, what, 'lease')
  const f = fields(o, what, 'lease')
  const kind = f.oneOf('kind', LEASE_KINDS)
  const l: LeaseRecord = {
    lease: kind === 'maintenance' ? f.str('lease', /^maintenance$/) : f.str('lease', RAND16_RE),
    kind,
    host: f.str('host'),
    pid: f.int('pid', 1),
    pidStart: f.int('pidStart'),
    started: f.time('started'),
    renewed: f.time('renewed'),
    expiresAfterMs: f.int('expiresAfterMs', 1),
  }
  if (Date.parse(l.renewed) < Date.parse(l.started)) f.bad('renewed')
  if (f.optional('pins')) {
    l.pins = f.strings('pins')
    if (l.pins.some((p) => !PIN_RE.test(p))) f.bad('pins')
  }
  if (f.optional('command')) l.command = f.str('command')
  return l
}

/** Whether a lease is live at `nowMs` by its clock (renewed + expiry + skew); same-host pid checks are the caller's. */
export function leaseLive(l: LeaseRecord, nowMs: number, skewMs = MAX_CLOCK_SKEW_MS): boolean {
  return Date.parse(l.renewed) + l.expiresAfterMs + skewMs > nowMs
}

// ---- the format 1 guard lock (§2.23.1) ----------------------------------------------------

export const GUARD_HOST = 'bfs-format-2 (this bfs reads format 1: upgrade bfs)'
export const GUARD_COMMAND = 'format 2 repository'

/**
 * The bytes of `lock` in a format 2 repository: a format 1 lock held by pid 0 on a host no
 * machine has, so a format 1 writer stops (exit 5) before touching anything.
 */
export function guardLock(timeIso: string): Buffer {
  return Buffer.from(JSON.stringify({ pid: 0, host: GUARD_HOST, time: timeIso, command: GUARD_COMMAND }) + '\n', 'utf8')
}

/** Whether `lock`'s bytes are the guard (upgrade's resume test). */
export function isGuardLock(b: Buffer): boolean {
  try {
    const o = JSON.parse(b.toString('utf8')) as Json
    return o.pid === 0 && o.host === GUARD_HOST && o.command === GUARD_COMMAND
  } catch {
    return false
  }
}

/** `gen@rev`, as leases pin generations. */
export function pinName(gen: number, rev: number): string {
  if (!(gen >= 1 && rev >= 1)) throw new RangeError(`pin ${gen}@${rev}`)
  return `${gen}@${rev}`
}


// ---- prune plan (§2.8.7) ------------------------------------------------------------------

export interface PrunePlan {
  run: number
  /** ISO: when the mark began (T1). */
  t1: string
  leasesSeen: Array<{ lease: string; started: string }>
  /** `gen@rev` of every root walked. */
  roots: string[]
  /** Per stream (decimal key): its dead blocks, the units step 7 rewrites (--max-unused) and to delete. */
  streams: Record<string, { deadBlocks: number; rewrite: number[]; delete: number[] }>
  /** Streams whose `stream` and `hashes` go (no unit left once the deletions are done). */
  streamsDrop: number[]
  packs: { delete: string[] }
  dedup: { merge: string[] }
  /** Names in `retired/` to delete (no longer protected). */
  retiredDrop: string[]
  /** Runs whose state is aborted and whose `gens/K/` is still there. */
  abortedDrop: number[]
  bytes: { live: number; dead: number; reclaim: number }
}

const PACK_NAME_RE = /^[1-9]\d{0,7}\.\d{1,8}$/
const RETIRED_NAME_RE = /^gen-\d{8}-r\d{4}$/

export function encodePrunePlan(p: PrunePlan): Buffer {
  const b = Buffer.from(JSON.stringify({
    run: p.run, t1: p.t1, leasesSeen: p.leasesSeen, roots: p.roots, streams: p.streams, streamsDrop: p.streamsDrop,
    packs: { delete: p.packs.delete }, dedup: { merge: p.dedup.merge }, retiredDrop: p.retiredDrop, abortedDrop: p.abortedDrop, bytes: p.bytes,
  }), 'utf8')
  decodePrunePlan(b, 'prune plan (encoder)')
  return b
}

export function decodePrunePlan(payload: Buffer, what: string): PrunePlan {
  const o = parseJsonObject(payload, what, 'prune plan')
  const f = fields(o, what, 'prune plan')
  const ints = (v: unknown, field: string): number[] => {
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0)) f.bad(field)
    return [...(v as number[])]
  }
  const strs = (v: unknown, field: string, re: RegExp): string[] => {
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || !re.test(x))) f.bad(field)
    return [...(v as string[])]
  }
  const run = f.int('run', 1, ID_MAX)
  const t1 = f.time('t1')
  if (!Array.isArray(o.leasesSeen)) f.bad('leasesSeen')
  const leasesSeen = (o.leasesSeen as unknown[]).map((x, i) => {
    const lf = fields(x as Json, what, `prune plan leasesSeen[${i}]`)
    return { lease: lf.str('lease', RAND16_RE), started: lf.time('started') }
  })
  const roots = strs(o.roots, 'roots', PIN_RE)
  if (typeof o.streams !== 'object' || o.streams === null || Array.isArray(o.streams)) f.bad('streams')
  const streams: PrunePlan['streams'] = {}
  for (const [k, v] of Object.entries(o.streams as Json)) {
    if (!/^[1-9]\d{0,7}$/.test(k) || typeof v !== 'object' || v === null) f.bad('streams')
    const sf = fields(v as Json, what, `prune plan streams.${k}`)
    streams[k] = { deadBlocks: sf.int('deadBlocks'), rewrite: ints((v as Json).rewrite, `streams.${k}.rewrite`), delete: ints((v as Json).delete, `streams.${k}.delete`) }
  }
  const packs = o.packs as Json
  const dedup = o.dedup as Json
  if (typeof packs !== 'object' || packs === null || typeof dedup !== 'object' || dedup === null) f.bad('packs')
  const bytes = o.bytes as Json
  if (typeof bytes !== 'object' || bytes === null) f.bad('bytes')
  const bf = fields(bytes, what, 'prune plan bytes')
  return {
    run, t1, leasesSeen, roots, streams,
    streamsDrop: ints(o.streamsDrop, 'streamsDrop'),
    packs: { delete: strs(packs.delete, 'packs.delete', PACK_NAME_RE) },
    dedup: { merge: strs(dedup.merge, 'dedup.merge', /^dedup-\d{8}-\d{4}$/) },
    retiredDrop: strs(o.retiredDrop, 'retiredDrop', RETIRED_NAME_RE),
    abortedDrop: ints(o.abortedDrop, 'abortedDrop'),
    bytes: { live: bf.int('live'), dead: bf.int('dead'), reclaim: bf.int('reclaim') },
  }
}
