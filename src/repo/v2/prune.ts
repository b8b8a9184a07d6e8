/**
 * `bfs prune` on a format 2 repository (native-notes/format.md §2.20.7): mark → plan → sweep.
 *
 * - **survey** (step 1–2): T1, the leases (L1), the run records, the committed manifests and
 *   the retired ones; which retired manifests are protected (younger than the grace, pinned by
 *   a live lease, or retired less than the skew before a live lease without pins started) and
 *   which runs are still running with a live writer (their `gens/N/` is not touched at all).
 * - **mark** (step 3): every root is walked — directory pieces (DIR, DIRDELTA and its base,
 *   DIRINDEX), map pieces, the links table, BI overlays (the BI log conservatively: its pages,
 *   and the whole of its run's own stream) — each piece once per id, every place a piece is
 *   referenced from marked live; live blocks per stream as a bitmap.
 * - **decide** (step 4): units with no live block, packs with no live piece, streams left with
 *   no unit, unprotected retired manifests, `gens/K/` of aborted runs; and the partly used
 *   units step 7 rewrites (`--max-unused`, restic's meaning: largest unused share first, until
 *   the unused left is within the limit).
 * - **sweep** (steps 5, 6, 8, 10, 11): the plan [exclusive], the leases listed again (a live
 *   lease started before T1 that was not seen: abort, nothing deleted), then the deletions in
 *   that order; the run committed; older plans deleted.
 * - **rewrite** (step 7, between 6 and 8; cli/prune.ts with compact.ts's compactUnits): the
 *   chosen units' newly dead blocks zeroed, their dead ranges recorded, each atomically replaced.
 *
 * Not built: step 9 (dedup objects do not exist yet), packing old history. Every deletion and
 * every replace is of garbage (or keeps live blocks byte-identical) and atomic on its own:
 * after kill -9 the next prune marks from scratch and finishes (a rewritten unit is known by
 * its dead ranges).
 */
import os from 'node:os'
import { PieceKind, type Extent, type PieceRef } from '../../format/v2/common.js'
import { pieceReader, readPieceRef } from '../../format/v2/common.js'
import { type Entry2, FileType } from '../../format/v2/dir.js'
import { FormatError } from '../../format/errors.js'
import { DICT_RE, keys2, PACK_RE, RETIRED_RE, RUN_RE, UNIT2_RE } from '../../format/v2/layout.js'
import { tapeKeys } from '../tapecat.js'
import {
  type LeaseRecord, type ManifestV2, type PrunePlan, type RunRecord, MAX_CLOCK_SKEW_MS,
  decodeManifestV2, encodePrunePlan, pinName,
} from '../../format/v2/records.js'
import type { BiOverlayRow } from '../../format/v2/idtable.js'
import { PieceReader, isPieceFailure } from '../../pieces/reader.js'
import { StoreError } from '../../store/store.js'
import { BfsError } from '../errors.js'
import { BLOCK_BYTES, HASH_BYTES, ZERO_BLOCK, blockHash } from '../../codec/hash.js'
import { UNIT_HEADER_BYTES as UNIT_V1_HEADER_BYTES, decodeSeekTable, decodeUnitHeader, decodeUnitTrailer } from '../../format/unit.js'
import { type DeadRange, UNIT_FLAG_ENCRYPTED, UNIT_TRAILER_BYTES, UNIT_V2_HEADER_BYTES, decodeAnyUnitHeader, decodeUnitHeaderV2, decodeUnitIndex, decodeUnitTrailerV2 } from '../../format/v2/unit.js'
import { type UnitRewrite, openUnitIndex } from './compact.js'
import { objectKey } from '../../crypto/keys.js'
import { holderAlive, listLeases, readLease } from './lease.js'
import { type Repo2, envelope2, payloadOf, tapeSealOf } from './repo2.js'

const PRUNE_PIECE_CACHE = 16 << 20

export interface RetiredInfo {
  /** Its name in `retired/`. */
  name: string
  id: number
  rev: number
  bytes: number
  manifest: ManifestV2 | null
  protected: boolean
  /** Why it is kept (grace, pinned by a lease, a lease older than it). */
  why: string
}

export interface Survey {
  t1: Date
  leases: LeaseRecord[]
  committed: ManifestV2[]
  retired: RetiredInfo[]
  /** Runs still running with a live writer: their gens/N is left alone. */
  running: Set<number>
  runs: RunRecord[]
}

/** Whether a live lease protects a retired manifest (§2.20.4, §2.20.7 step 2). */
function protectedBy(l: LeaseRecord, id: number, rev: number, retiredAtMs: number): boolean {
  if (l.pins) return l.pins.includes(pinName(id, rev))
  return Date.parse(l.started) < retiredAtMs + MAX_CLOCK_SKEW_MS
}

/**
 * Steps 1–2: T1, the leases live now (`self`: prune's own lease, left out), runs, committed
 * and retired manifests, and which retired ones are protected. A committed manifest that does
 * not decode stops the prune (what it references cannot be known): BfsError CORRUPT.
 */
export function survey(repo: Repo2, graceMs: number, self: string | null, now = new Date()): Survey {
  const t1 = now
  const host = os.hostname()
  const leases = listLeases(repo).filter((l) => l.lease !== self && holderAlive(l, t1.getTime(), host))
  const runs = repo.runs()
  const running = new Set<number>()
  for (const r of runs) if (r.state === 'running' && runWriterLive(repo, r, host)) running.add(r.run)
  const committed: ManifestV2[] = []
  for (const g of repo.generations()) {
    if (!('manifest' in g)) throw new BfsError('CORRUPT', `gen${g.id} is damaged (${g.problem}): what it references cannot be known, so prune deletes nothing (bfs verify)`)
    committed.push(g.manifest)
  }
  const retired: RetiredInfo[] = []
  for (const k of repo.sync.listSync(keys2.retired)) {
    const name = k.slice(k.lastIndexOf('/') + 1)
    const m = RETIRED_RE.exec(name)
    if (!m) continue
    const [id, rev] = [Number(m[1]), Number(m[2])]
    let file: Buffer
    try {
      file = repo.sync.getSync(k)
    } catch (err) {
      if (err instanceof StoreError && err.code === 'ENOENT') continue
      throw err
    }
    let man: ManifestV2 | null = null
    try {
      man = decodeManifestV2(repo.unseal('manifest', k, file), repo.store.where(k), true)
    } catch (err) {
      if (!(err instanceof FormatError)) throw err
    }
    const info: RetiredInfo = { name, id, rev, bytes: file.length, manifest: man, protected: false, why: '' }
    if (!man) {
      // what it references cannot be known: kept, and walked by nobody; its data may go
      info.protected = true
      info.why = 'damaged (does not decode): kept for bfs verify'
    } else {
      const at = Date.parse(man.retired!.retiredAt)
      const holder = leases.find((l) => protectedBy(l, id, rev, at))
      if (t1.getTime() - at < graceMs) {
        info.protected = true
        info.why = 'retired within --grace'
      } else if (holder) {
        info.protected = true
        info.why = `in use by pid ${holder.pid} on ${holder.host} (${holder.command ?? holder.kind})`
      } else if (repo.sync.hasSync(keys2.manifest(id)) && committed.some((c) => c.id === id && c.rev === rev)) {
        // an interrupted forget (both copies): still committed, walked as such; the copy stays for forget to finish.
        // A `superseded` copy of the current revision: a merge that did not commit (its recovery
        // deletes it; one a recovery missed is replaced by the next merge or forget of that generation)
        info.protected = true
        info.why = man.retired!.reason === 'superseded'
          ? `still committed (left by a merge that did not commit: the next merge or forget of gen${id} replaces it)`
          : 'still committed (an interrupted forget: the next forget finishes it)'
      }
    }
    retired.push(info)
  }
  return { t1, leases, committed, retired, running, runs }
}

/** Whether a `running` run record's writer may still be writing (§2.20.6; a record another host wrote without a lease: yes). */
function runWriterLive(repo: Repo2, r: RunRecord, host: string): boolean {
  if (r.host === host && r.pid === process.pid) return false // our own claim: nothing of it is in gens/
  if (r.lease === '') return r.host !== host || holderAliveByPid(r.pid)
  const l = readLease(repo, keys2.lease(r.lease))
  if (!l) return false
  if (!l.record) return true // being written: judged live
  return holderAlive(l.record)
}

function holderAliveByPid(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Live blocks of one stream: a bitmap over its stream blocks. */
export interface StreamMarks {
  stream: number
  unitBlocks: number
  streamBlocks: number
  units: number
  bits: Uint8Array
  /** Every block live (a BI log's run: marked whole). */
  all: boolean
}

export interface Marks {
  /** Roots walked, `gen@rev`. */
  roots: string[]
  /** Live blocks per stream (only streams with a readable record). */
  streams: Map<number, StreamMarks>
  /** Streams referenced whose record does not read: nothing of theirs is deleted. */
  unknownStreams: Set<number>
  /** Live pieces per pack `run.pack`: their stored bytes. */
  packs: Map<string, number>
  /** Distinct pieces walked. */
  pieces: number
}

/** Step 3: walks every root; each piece is decoded once per id, every place it is referenced from is live. */
export async function mark(repo: Repo2, roots: ManifestV2[]): Promise<Marks> {
  const reader = new PieceReader(repo.store, { cacheBytes: PRUNE_PIECE_CACHE, keys: repo.sealing })
  const marks: Marks = { roots: [], streams: new Map(), unknownStreams: new Set(), packs: new Map(), pieces: 0 }
  const seenIds = new Set<string>()
  const seenPlaces = new Set<string>()
  const place = (ref: PieceRef): void => {
    const k = `${ref.run}.${ref.pack}.${ref.offset}`
    if (seenPlaces.has(k)) return
    seenPlaces.add(k)
    const p = `${ref.run}.${ref.pack}`
    marks.packs.set(p, (marks.packs.get(p) ?? 0) + ref.storedLen)
  }
  /** Marks the place live; true when this id is new (its children must be walked). */
  const visit = (ref: PieceRef): boolean => {
    place(ref)
    const id = ref.id.toString('hex')
    if (seenIds.has(id)) return false
    seenIds.add(id)
    marks.pieces++
    return true
  }
  const streamOf = (s: number): StreamMarks | null => {
    let m = marks.streams.get(s)
    if (m) return m
    if (marks.unknownStreams.has(s)) return null
    try {
      const r = repo.stream(s)
      m = { stream: s, unitBlocks: r.unitBlocks, streamBlocks: r.streamBlocks, units: r.units, bits: new Uint8Array(Math.ceil(r.streamBlocks / 8)), all: false }
      marks.streams.set(s, m)
      return m
    } catch (err) {
      if (!(err instanceof BfsError) && !(err instanceof StoreError)) throw err
      marks.unknownStreams.add(s)
      return null
    }
  }
  const extents = (list: readonly Extent[]): void => {
    for (const x of list) {
      if (x.stream === 0) continue // zeros (BI overlays)
      const m = streamOf(x.stream)
      if (!m) continue
      const end = Math.min(x.streamBlock + x.count, m.streamBlocks)
      for (let b = x.streamBlock; b < end; b++) m.bits[b >> 3]! |= 1 << (b & 7)
    }
  }
  const mapTree = async (ref: PieceRef): Promise<void> => {
    if (!visit(ref)) return
    const p = await reader.pieceOf(ref, [PieceKind.MapLeaf, PieceKind.MapInner], 'map node')
    if (p.kind === PieceKind.MapLeaf) extents(p.leaf.extents)
    else for (const c of p.inner.children) await mapTree(c.ref)
  }
  const dirPiece = async (ref: PieceRef): Promise<void> => {
    if (!visit(ref)) return
    const p = await reader.pieceOf(ref, [PieceKind.Dir, PieceKind.DirDelta, PieceKind.DirIndex], 'directory')
    if (p.kind === PieceKind.DirIndex) {
      for (const c of p.index.children) await dirPiece(c.ref)
      return
    }
    // its base is read with it, and may be another root's own directory: walked whole (only
    // marking it seen would leave the entries the delta removed or changed unmarked when that
    // root reaches it later — a protected or concurrent generation's data deleted)
    if (p.kind === PieceKind.DirDelta) await dirPiece(p.delta.base)
    for (const e of p.entries) await entry(e)
  }
  const entry = async (e: Entry2): Promise<void> => {
    if (e.type === FileType.Dir) {
      if (e.dir) await dirPiece(e.dir.child)
      return
    }
    if (!e.map) return
    if (e.map.kind === 'inline') extents(e.map.extents)
    else await mapTree(e.map.root)
  }
  const idTable = async (ref: PieceRef, row?: (r: BiOverlayRow) => Promise<void>): Promise<void> => {
    if (!visit(ref)) return
    const p = await reader.pieceOf(ref, [PieceKind.IdIndex, PieceKind.IdPage], 'identity table node')
    if (p.kind === PieceKind.IdIndex) for (const c of p.index.children) await idTable(c.ref, row)
    else if (row) for (const r of p.page.rows) await row(r as BiOverlayRow)
  }
  for (const m of roots) {
    const root = pinName(m.id, m.rev)
    marks.roots.push(root)
    try {
      await entry(m.rootEntry)
      for (const s of m.sources) if (s.rootEntry) await entry(s.rootEntry)
      if (m.links) await idTable(m.links)
      if (m.biIndex) {
        await idTable(m.biIndex, async (r) => {
          if (r.overlay?.kind === 'inline') extents(r.overlay.extents)
          else if (r.overlay) await mapTree(r.overlay.root)
        })
      }
      if (m.biLog && visit(m.biLog)) {
        // BILIST: varint pageCount, the BILOG pages' refs, varint totalRecords. The records'
        // data lies in the run's own stream (or zeros): that stream is kept whole.
        const raw = await reader.payload(m.biLog)
        const r = pieceReader(raw, PieceKind.BiList, reader.where(m.biLog))
        const pages = r.varint()
        for (let i = 0; i < pages; i++) {
          const page = readPieceRef(r)
          if (visit(page)) await reader.payload(page)
        }
        const own = m.stream ? streamOf(m.run) : null
        if (own) {
          own.all = true
          own.bits.fill(0xff)
        }
      }
    } catch (err) {
      if (err instanceof FormatError || isPieceFailure(err)) {
        throw new BfsError('CORRUPT', `gen${m.id}${m.retired ? ` (retired, rev ${m.rev})` : ''}: ${(err as Error).message}: what it references cannot be known, so prune deletes nothing (bfs verify)`)
      }
      throw err
    }
  }
  reader.close()
  return marks
}

/** Live blocks in [from, to) of a stream's bitmap. */
export function liveIn(m: StreamMarks, from: number, to: number): number {
  let n = 0
  for (let b = from; b < to; b++) if (m.bits[b >> 3]! & (1 << (b & 7))) n++
  return n
}

export interface Decision {
  plan: Omit<PrunePlan, 'run'>
  /**
   * Units deleted / kept partly used (with newly dead blocks: an estimate of their stored
   * bytes the dead blocks take) / whose dead blocks an earlier prune zeroed / kept whole; the
   * partly used ones rewritten by step 7 (`--max-unused`), their stored bytes now and the
   * estimate of what the rewrite frees; the unused bytes left in units after this prune.
   */
  units: {
    delete: number; deleteBytes: number; partly: number; partlyDeadBytes: number; zeroed: number; kept: number
    rewrite: number; rewriteBytes: number; rewriteReclaim: number; unusedLeft: number; usedBytes: number
  }
  /** Step 7's units, most unused share first. */
  rewrite: UnitRewrite[]
  /** Partly used units whose header or unit index does not read: left as they are (bfs verify). */
  unreadableUnits: Array<{ key: string; why: string }>
  packsKept: number
  /** Retired manifests kept, with why. */
  retiredKept: RetiredInfo[]
  /** gens/N directories left alone, with why (running runs, orphans, unknown streams). */
  leftAlone: Array<{ run: number; why: string }>
  /** Keys to delete in step order. */
  deleteUnits: string[]
  deletePacks: string[]
  deleteStreams: string[]
  deleteRetired: string[]
  deleteGens: string[]
}

/**
 * `--max-unused` (restic's meaning): after the prune, the unused bytes left in units may be at
 * most this share of the units' bytes, i.e. unused ≤ p / (100 − p) × used. 100 (or
 * `unlimited`): no unit is rewritten, only units with no live block are deleted. The default
 * is 2 %, below restic's 5 %, by measurement (format.md §2.20.7): packs are reclaimed whole
 * only, so units must carry less of the overhead for the repository to end within 5 % of a
 * fresh one.
 */
export const DEFAULT_MAX_UNUSED_PCT = 2

/** The unused bytes a prune may leave for `used` bytes in use at `pct` percent (Infinity: unlimited). */
export function maxUnusedBytes(pct: number, used: number): number {
  return pct >= 100 ? Infinity : (pct / (100 - pct)) * used
}

/** A partly used unit as step 4 sees it: its version, level and dead ranges, and what its newly dead blocks take. */
export interface UnitUsage {
  version: 1 | 2
  /** v2: the header's; v1: null. */
  level: number | null
  /** Dead ranges after the rewrite: the unit's non-live blocks (a superset of its old ranges). */
  dead: DeadRange[]
  /** Non-live blocks not zeroed yet (not in the unit's dead ranges). */
  newlyDead: number
  /** Estimated stored bytes of those blocks: per frame, its stored size × newly dead / not yet dead blocks. */
  unused: number
  /** Non-live zero blocks not in the dead ranges (`free`): not newly dead, not in `dead`, no unused bytes. */
  zeros: number
  /** Whether the unit has dead ranges already (an earlier prune rewrote it). */
  hadDead: boolean
}

/**
 * Reads a unit's header, trailer and unit index (three range reads, either version) and
 * weighs its newly dead blocks against `live` (unit-relative: whether block b is live).
 * `zero` (unit-relative): whether a block's stored hash is a zero block's. A non-live zero
 * block outside the dead ranges is a writer's padding (frame placement, format.md §2.20.3)
 * or zero data nothing ever referenced (all-zero blocks are holes): it takes next to no
 * stored bytes and no rewrite would reclaim anything from it, so it is neither newly dead
 * nor unused, and stays out of the new dead ranges (it is zeros already; verify checks it
 * against its hash like any block outside them).
 */
export function unitUsage(repo: Repo2, key: string, stream: number, unit: number, rawBlocks: number, live: (b: number) => boolean, zero: (b: number) => boolean = () => false): UnitUsage {
  const where = repo.store.where(key)
  const blob = repo.sync.openSync(key)
  try {
    const size = blob.sizeBytes
    const head = blob.readSync({ offset: 0, length: Math.min(UNIT_V2_HEADER_BYTES, size) })
    const any = decodeAnyUnitHeader(head, where)
    if (any.stream !== stream || any.unitIndex !== unit || any.rawBlocks !== rawBlocks) throw new FormatError('BAD_VALUE', `${where}: unit header names stream ${any.stream}, unit ${any.unitIndex}, ${any.rawBlocks} blocks`)
    if (size < any.headerBytes + UNIT_TRAILER_BYTES) throw new FormatError('TRUNCATED', `${where}: unit file truncated`)
    const trailer = blob.readSync({ offset: size - UNIT_TRAILER_BYTES, length: UNIT_TRAILER_BYTES })
    let comp: number[]
    let old: DeadRange[] = []
    let level: number | null = null
    if (any.version === 1) {
      if (repo.encrypted) throw new FormatError('BAD_VALUE', `${where}: not encrypted, in an encrypted repository (refused: a plaintext object here is tampering or a downgrade)`)
      const h = decodeUnitHeader(head.subarray(0, UNIT_V1_HEADER_BYTES), where)
      const t = decodeUnitTrailer(trailer, size, h, where)
      comp = decodeSeekTable(blob.readSync({ offset: t.seekTableOffset, length: t.tableBytes }), t.tableCheck, h, t.seekTableOffset, BLOCK_BYTES, where).entries.map((e) => e.compBytes)
    } else {
      const h = decodeUnitHeaderV2(head, where)
      const t = decodeUnitTrailerV2(trailer, size, h, where)
      const stored = blob.readSync({ offset: t.indexOffset, length: t.indexBytes })
      const sealed = (h.flags & UNIT_FLAG_ENCRYPTED) !== 0
      if (sealed !== repo.encrypted) throw new FormatError('BAD_VALUE', sealed ? `${where}: an encrypted unit, in a repository that is not encrypted` : `${where}: not encrypted, in an encrypted repository (refused: a plaintext object here is tampering or a downgrade)`)
      // encrypted: the unit index is opened with the unit's key (§2.9; its rewrite: §2.22.3)
      const x = sealed
        ? decodeUnitIndex(openUnitIndex(objectKey(repo.keys, h.salt, 'unit'), h, stored, where), null, h, t.indexOffset, BLOCK_BYTES, where)
        : decodeUnitIndex(stored, t.indexCheck, h, t.indexOffset, BLOCK_BYTES, where)
      comp = x.seek.map((e) => e.compBytes)
      old = x.dead
      level = h.level
    }
    const wasDead = new Uint8Array(rawBlocks)
    for (const r of old) wasDead.fill(1, r.start, r.start + r.blocks)
    const dead: DeadRange[] = []
    let newlyDead = 0
    let unused = 0
    let zeros = 0
    for (let f = 0; f < comp.length; f++) {
      const first = f * any.frameBlocks
      const end = Math.min(rawBlocks, first + any.frameBlocks)
      let notYet = 0
      let fresh = 0
      for (let b = first; b < end; b++) {
        if (!wasDead[b] && !live(b) && zero(b)) {
          zeros++
          continue // (neither in the frame's not yet dead blocks: it costs the frame nothing)
        }
        const isDead = wasDead[b] === 1 || !live(b)
        if (isDead) {
          const last = dead[dead.length - 1]
          if (last && last.start + last.blocks === b) last.blocks++
          else dead.push({ start: b, blocks: 1 })
        }
        if (wasDead[b]) continue
        notYet++
        if (isDead) fresh++
      }
      newlyDead += fresh
      // (at least a byte: a frame that compresses to almost nothing must not round its newly
      // dead blocks away, or --max-unused 0 would pass over the unit)
      if (fresh) unused += Math.max(1, Math.round((comp[f]! * fresh) / notYet))
    }
    return { version: any.version, level, dead, newlyDead, unused, zeros, hadDead: old.length > 0 }
  } finally {
    blob.closeSync()
  }
}

/** The hash of a zero block in this repository (its algorithm and seed). */
function zeroHash(repo: Repo2): Buffer {
  const z = Buffer.alloc(HASH_BYTES)
  blockHash(repo.config.hashAlg, ZERO_BLOCK, z, 0, repo.blockSeed)
  return z
}

/** A stream's block hashes (checked), or null when they do not read or do not match its length. */
function streamHashes(repo: Repo2, run: number, streamBlocks: number): Buffer | null {
  try {
    const h = repo.unsealHashes(run, repo.sync.getSync(keys2.hashes(run)))
    return h.length === streamBlocks * HASH_BYTES ? h : null
  } catch (err) {
    // (RangeError: a hashes file over a Buffer's limit, a stream of ~2 TiB and more)
    if (!(err instanceof FormatError) && !(err instanceof StoreError) && !(err instanceof RangeError)) throw err
    return null
  }
}

/** Step 4: what goes; with `maxUnusedPct` < 100, which partly used units step 7 rewrites. */
export function decide(repo: Repo2, sv: Survey, marks: Marks, maxUnusedPct = DEFAULT_MAX_UNUSED_PCT): Decision {
  let zeroBlockHash: Buffer | undefined // (a zero block's hash: computed once, when a stream needs it)
  const byRun = new Map(sv.runs.map((r) => [r.run, r]))
  // units the tape catalog knows: never deleted or rewritten here, and they keep their stream's records (format.md §2.18)
  const onTape = tapeKeys(repo.store, tapeSealOf(repo))
  const tapePerRun = new Map<string, number>()
  for (const k of onTape) tapePerRun.set(k.slice(0, k.lastIndexOf('/')), (tapePerRun.get(k.slice(0, k.lastIndexOf('/'))) ?? 0) + 1)
  const committedRuns = new Set(sv.committed.map((m) => m.id))
  const d: Decision = {
    plan: {
      t1: sv.t1.toISOString(), leasesSeen: sv.leases.map((l) => ({ lease: l.lease, started: l.started })).filter((l) => /^[0-9a-f]{16}$/.test(l.lease)),
      roots: marks.roots, streams: {}, streamsDrop: [], packs: { delete: [] }, dedup: { merge: [] }, retiredDrop: [], abortedDrop: [], bytes: { live: 0, dead: 0, reclaim: 0 },
    },
    units: { delete: 0, deleteBytes: 0, partly: 0, partlyDeadBytes: 0, zeroed: 0, kept: 0, rewrite: 0, rewriteBytes: 0, rewriteReclaim: 0, unusedLeft: 0, usedBytes: 0 },
    rewrite: [], unreadableUnits: [],
    packsKept: 0, retiredKept: [], leftAlone: [],
    deleteUnits: [], deletePacks: [], deleteStreams: [], deleteRetired: [], deleteGens: [],
  }
  const b = d.plan.bytes
  const candidates: Array<UnitRewrite & { unused: number }> = []
  const streamLevel = (run: number): number => {
    try {
      return repo.stream(run).level
    } catch {
      return repo.config.defaults.level
    }
  }
  const size = (key: string): number => {
    try {
      return repo.sync.statSync(key).sizeBytes
    } catch {
      return 0
    }
  }
  for (const name of repo.sync.listSync(keys2.gens).map((k) => k.slice(k.lastIndexOf('/') + 1))) {
    if (!RUN_RE.test(name)) continue
    const run = Number(name)
    const rec = byRun.get(run)
    if (sv.running.has(run)) {
      d.leftAlone.push({ run, why: 'its run is still running' })
      continue
    }
    const files = repo.sync.listSync(keys2.genDir(run)).map((k) => k.slice(k.lastIndexOf('/') + 1))
    const liveHere = marks.streams.has(run) || [...marks.packs.keys()].some((p) => p.startsWith(`${run}.`))
    if (rec && (rec.state === 'aborted' || (rec.state === 'running' && !committedRuns.has(run)))) {
      if (liveHere) {
        d.leftAlone.push({ run, why: `its run is ${rec.state} and yet a root refers to it (bfs verify)` })
        continue
      }
      if (rec.state === 'running') {
        // a dead writer's run (its recovery was not done: another host's): recovery's rule
        d.leftAlone.push({ run, why: 'its run was left running by a writer that is gone (the next backup on its host recovers it)' })
        continue
      }
      d.plan.abortedDrop.push(run)
      let n = 0
      for (const f of files) n += size(`${keys2.genDir(run)}/${f}`)
      b.reclaim += n
      d.deleteGens.push(keys2.genDir(run))
      continue
    }
    if (!rec) {
      d.leftAlone.push({ run, why: 'no run record (an orphan: left for bfs verify)' })
      continue
    }
    if (marks.unknownStreams.has(run)) {
      d.leftAlone.push({ run, why: 'its stream record does not read and a root refers to it' })
      continue
    }
    // units
    const unitFiles = new Map<number, number>()
    for (const f of files) {
      const m = UNIT2_RE.exec(f)
      if (m && !onTape.has(keys2.unit(run, Number(m[1])))) unitFiles.set(Number(m[1]), size(keys2.unit(run, Number(m[1]))))
    }
    const tapeHere = tapePerRun.get(keys2.genDir(run)) ?? 0
    d.units.kept += tapeHere
    let unitsLeft = unitFiles.size + tapeHere
    if (files.includes('stream')) {
      let geometry: { unitBlocks: number; streamBlocks: number; units: number } | null = marks.streams.get(run) ?? null
      if (!geometry) {
        try {
          geometry = repo.stream(run)
        } catch {
          geometry = null
        }
      }
      if (!geometry) {
        d.leftAlone.push({ run, why: 'its stream record does not read' })
        continue
      }
      const sm = marks.streams.get(run)
      const del: number[] = []
      let dead = 0
      // the stream's block hashes, read when a unit has live and non-live blocks: its non-live
      // zero blocks are not unused (unitUsage); not readable: every non-live block counts
      let zeroPred: ((s: number) => boolean) | undefined
      const zeroAt = (): ((s: number) => boolean) => {
        if (zeroPred) return zeroPred
        const h = streamHashes(repo, run, geometry!.streamBlocks)
        const z = (zeroBlockHash ??= zeroHash(repo))
        zeroPred = h ? (sb) => h.compare(z, 0, HASH_BYTES, sb * HASH_BYTES, (sb + 1) * HASH_BYTES) === 0 : () => false
        return zeroPred
      }
      for (const [u, bytes] of [...unitFiles].sort((x, y) => x[0] - y[0])) {
        const from = u * geometry.unitBlocks
        const to = Math.min(geometry.streamBlocks, from + geometry.unitBlocks)
        const raw = Math.max(0, to - from)
        const live = sm && raw > 0 ? liveIn(sm, from, to) : 0
        dead += raw - live
        const isLive = (x: number): boolean => (sm!.bits[(from + x) >> 3]! & (1 << ((from + x) & 7))) !== 0
        if (live > 0 && live < raw) {
          // a unit whose only non-live blocks are zero blocks (frame placement's padding) is
          // kept whole without reading it: nothing in it to reclaim (a block in its dead
          // ranges keeps its old data's hash, so a unit with dead ranges is read below,
          // unless they hold zero blocks only: zeros already)
          const zero = zeroAt()
          let other = 0
          for (let x = 0; x < raw && other === 0; x++) if (!isLive(x) && !zero(from + x)) other++
          if (other === 0) {
            dead -= raw - live
            b.live += bytes
            d.units.usedBytes += bytes
            d.units.kept++
            continue
          }
        }
        if (live === 0) {
          del.push(u)
          d.deleteUnits.push(keys2.unit(run, u))
          d.units.delete++
          d.units.deleteBytes += bytes
          b.reclaim += bytes
          b.dead += bytes
          unitsLeft--
        } else if (live < raw) {
          // (encrypted too: step 7 seals the new unit under a fresh salt, format.md §2.22.3)
          const key = keys2.unit(run, u)
          let use: UnitUsage
          try {
            const zero = zeroAt()
            use = unitUsage(repo, key, run, u, raw, isLive, (x) => zero(from + x))
          } catch (err) {
            if (!(err instanceof FormatError) && !(err instanceof StoreError)) throw err
            d.unreadableUnits.push({ key, why: (err as Error).message })
            b.live += bytes
            continue
          }
          b.live += bytes - use.unused
          b.dead += use.unused
          d.units.usedBytes += bytes - use.unused
          dead -= use.zeros
          if (use.newlyDead === 0) {
            if (use.hadDead) d.units.zeroed++ // an earlier prune zeroed its dead blocks
            else d.units.kept++
            continue
          }
          d.units.partly++
          d.units.partlyDeadBytes += use.unused
          candidates.push({
            stream: run, unit: u, key, bytes, rawBytes: raw * BLOCK_BYTES, version: use.version, level: use.level,
            dead: use.dead, targetLevel: use.level ?? streamLevel(run), unused: use.unused,
          })
        } else {
          b.live += bytes
          d.units.usedBytes += bytes
          d.units.kept++
        }
      }
      if (dead > 0 || del.length) d.plan.streams[String(run)] = { deadBlocks: dead, rewrite: [], delete: del }
      // the stream's compression dictionaries (§2.9.1) go with its last unit
      const dictKeys = files.filter((f) => DICT_RE.test(f)).map((f) => `${keys2.genDir(run)}/${f}`)
      if (unitsLeft === 0) {
        d.plan.streamsDrop.push(run)
        for (const k of dictKeys) {
          const n = size(k)
          b.reclaim += n
          b.dead += n
          d.deleteStreams.push(k)
        }
        for (const k of [keys2.hashes(run), keys2.stream(run)]) {
          if (!files.includes(k.slice(k.lastIndexOf('/') + 1))) continue
          const n = size(k)
          b.reclaim += n
          b.dead += n
          d.deleteStreams.push(k)
        }
      } else {
        for (const k of [keys2.hashes(run), keys2.stream(run), ...dictKeys]) b.live += size(k)
      }
    }
    // packs
    for (const f of files) {
      const m = PACK_RE.exec(f)
      if (!m) continue
      const pack = Number(m[1])
      const n = size(keys2.pack(run, pack))
      const live = marks.packs.get(`${run}.${pack}`)
      if (live === undefined) {
        d.plan.packs.delete.push(`${run}.${pack}`)
        d.deletePacks.push(keys2.pack(run, pack))
        b.reclaim += n
        b.dead += n
      } else {
        d.packsKept++
        b.live += Math.min(n, live)
        b.dead += Math.max(0, n - live)
      }
    }
  }
  // step 7's choice (restic's): the units with the largest unused share first, until what is left unused is within --max-unused
  candidates.sort((x, y) => y.unused / y.bytes - x.unused / x.bytes || y.unused - x.unused || x.stream - y.stream || x.unit - y.unit)
  let unused = d.units.partlyDeadBytes
  const limit = maxUnusedBytes(maxUnusedPct, d.units.usedBytes)
  for (const c of candidates) {
    if (unused <= limit) break
    unused -= c.unused
    const { unused: u, ...job } = c
    d.rewrite.push(job)
    d.units.rewrite++
    d.units.rewriteBytes += c.bytes
    d.units.rewriteReclaim += u
    b.reclaim += u
    const st = (d.plan.streams[String(c.stream)] ??= { deadBlocks: 0, rewrite: [], delete: [] })
    st.rewrite.push(c.unit)
  }
  for (const st of Object.values(d.plan.streams)) st.rewrite.sort((x, y) => x - y)
  d.units.unusedLeft = unused
  for (const r of sv.retired) {
    if (r.protected) {
      d.retiredKept.push(r)
      continue
    }
    d.plan.retiredDrop.push(r.name)
    d.deleteRetired.push(`${keys2.retired}/${r.name}`)
    b.reclaim += r.bytes
  }
  return d
}

/** Roots of a survey: committed manifests and protected retired ones that decode. */
export function rootsOf(sv: Survey): ManifestV2[] {
  return [...sv.committed, ...sv.retired.flatMap((r) => (r.protected && r.manifest && !sv.committed.some((c) => c.id === r.id && c.rev === r.rev) ? [r.manifest] : []))]
}

/** Claims run P for this prune (runs/P exclusive, the next id when another writer got it). */
export function claimPruneRun(repo: Repo2, lease: string): RunRecord {
  return repo.claimRun((n) => ({ run: n, kind: 'prune', state: 'running', host: os.hostname(), pid: process.pid, lease, started: new Date().toISOString() }))
}

/** Ends run P: committed or aborted. */
export function endPruneRun(repo: Repo2, r: RunRecord, state: 'committed' | 'aborted'): void {
  repo.putRun({ ...r, state, ended: new Date().toISOString() }, 'replace')
  repo.sync.flushSync(keys2.runs)
}

/**
 * Runs of kind prune (and compact, merge's siblings that delete nothing on recovery) left
 * `running` by a dead writer: marked aborted (§2.20.6); their work is finished by this prune.
 */
export function recoverMaintenanceRuns(repo: Repo2, self: number): number {
  const host = os.hostname()
  let n = 0
  for (const r of repo.runs()) {
    if (r.run === self || r.state !== 'running' || (r.kind !== 'prune' && r.kind !== 'compact')) continue
    if (runWriterLive(repo, r, host)) continue
    repo.putRun({ ...r, state: 'aborted', ended: new Date().toISOString() }, 'replace')
    n++
  }
  if (n) repo.sync.flushSync(keys2.runs)
  return n
}

/** Step 5: the plan [exclusive], durable. */
export function writePlan(repo: Repo2, run: number, d: Decision): void {
  const fresh = !repo.sync.listSync('').includes(keys2.prune)
  repo.sync.putSync(keys2.plan(run), repo.seal('plan', keys2.plan(run), encodePrunePlan({ run, ...d.plan })), { mode: 'exclusive' })
  if (fresh) repo.sync.flushSync('')
}

/**
 * Step 6: the leases again. A live lease started before T1 that the survey did not list (its
 * record landed after the listing) may be using a retired manifest judged unprotected: the
 * prune stops before deleting anything (BfsError LOCKED, exit 5: run it again).
 */
export function recheckLeases(repo: Repo2, sv: Survey, self: string | null): void {
  const seen = new Set(sv.leases.map((l) => l.lease))
  for (const l of listLeases(repo)) {
    if (l.lease === self || seen.has(l.lease)) continue
    if (Date.parse(l.started) >= sv.t1.getTime()) continue
    if (!holderAlive(l)) continue
    throw new BfsError('LOCKED', `a reader (pid ${l.pid} on ${l.host}, ${l.command ?? l.kind}, since ${l.started}) appeared while prune was marking; nothing was deleted: run prune again`)
  }
}

/** Steps 8 and 10: the deletions, in order; `onStep` after each key (progress, interruption). */
export function sweep(repo: Repo2, d: Decision, onStep: () => void = () => {}): void {
  const del = (keys: string[], prefixOf: (k: string) => string, recursive = false): void => {
    const dirs = new Set<string>()
    for (const k of keys) {
      onStep()
      repo.sync.removeSync(k, recursive ? { recursive: true } : {})
      dirs.add(prefixOf(k))
    }
    for (const p of dirs) repo.sync.flushSync(p)
  }
  const parent = (k: string): string => k.slice(0, k.lastIndexOf('/'))
  del(d.deleteUnits, parent)
  del(d.deletePacks, parent)
  del(d.deleteStreams, parent)
  // gens/N directories left empty
  const emptied = new Set([...d.deleteUnits, ...d.deletePacks, ...d.deleteStreams].map(parent))
  let removedDirs = false
  for (const dir of emptied) {
    if (repo.sync.listSync(dir).length === 0) {
      onStep()
      repo.sync.removeSync(dir, { recursive: true })
      removedDirs = true
    }
  }
  del(d.deleteRetired, parent)
  del(d.deleteGens, () => keys2.gens, true)
  if (removedDirs) repo.sync.flushSync(keys2.gens)
}

/** Step 11's end: plans of earlier prunes deleted. */
export function dropOldPlans(repo: Repo2, run: number): void {
  let n = 0
  for (const k of repo.sync.listSync(keys2.prune)) {
    const m = /^plan-(\d{8})$/.exec(k.slice(k.lastIndexOf('/') + 1))
    if (m && Number(m[1]) < run) {
      repo.sync.removeSync(k)
      n++
    }
  }
  if (n) repo.sync.flushSync(keys2.prune)
}
