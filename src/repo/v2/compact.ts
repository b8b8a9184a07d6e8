/**
 * `bfs compact` on a format 2 repository (native-notes/format.md §2.20.8): settled units are
 * recompressed at a high zstd level, frame by frame, at the same frame size and with the same
 * raw bytes (so every frame check, every extent and every block hash stays as it is), written
 * as v2 units (revision + 1, the level in the header) and atomically replaced (temporary
 * file, fsync, rename, directory fsync: §2.20.2). The header's level is the resume marker: a
 * unit already at the target level is skipped, so a compact killed anywhere resumes where it
 * stopped. Readers keep working: an open descriptor keeps the old inode, a unit opened later
 * is the new one, and their live blocks are byte-identical (§2.20.9).
 *
 * Under the maintenance lock, as a run of its own (kind `compact`), like prune; it touches only
 * units of runs committed at least `minAgeMs` ago (a running backup writes only its own run).
 *
 * Encrypted repositories (§2.22.3): the same, each new unit sealed under a fresh salt (its
 * frames and unit index opened with the old unit's key first), and no dictionaries.
 */
import os from 'node:os'
import { BLOCK_BYTES, frameCheck, hashBlocks, HASH_BYTES, type HashAlg } from '../../codec/hash.js'
import { DecompressionDictionary, FrameCompressor, FrameDecompressor, decompressFrame, rethrowUnavailable } from '../../codec/zstd.js'
import { FormatError } from '../../format/errors.js'
import { decodeDict, encodeDict, zstdDictId } from '../../format/v2/dict.js'
import { DICT_RE, keys2, RUN_RE, UNIT2_RE } from '../../format/v2/layout.js'
import { trainDictionary } from '../../native/index.js'
import { enableFeatureLocked } from './features.js'
import { tapeKeys } from '../tapecat.js'
import type { RunRecord } from '../../format/v2/records.js'
import { type DeadRange, type UnitHeaderV2, UNIT_FLAG_ENCRYPTED, UNIT_V2_HEADER_BYTES, decodeAnyUnitHeader, decodeUnitHeaderV2, encodeUnitFileV2, parseUnitFile } from '../../format/v2/unit.js'
import { type AeadName, type ObjectKey, NONCE_TAG, newSalt, open, seal } from '../../crypto/aead.js'
import { aad } from '../../crypto/aad.js'
import { objectKey } from '../../crypto/keys.js'
import type { SeekEntry } from '../../format/unit.js'
import { StoreError } from '../../store/store.js'
import { type Repo2, tapeSealOf } from './repo2.js'
import { WorkerPool } from '../pool.js'
import type { WorkerReply, WorkerRequest } from '../workers/protocol.js'

/**
 * The default target level of large frames (file frames written before 2026-12-04, 1 MiB), chosen by
 * measurement (format.md §2.20.8: CPU per MB and ratio of levels 9 … 19 on the bench image
 * and the Linux tree in 1 MiB frames).
 */
export const DEFAULT_COMPACT_LEVEL = 12
/**
 * The default target level of small frames (≤ SMALL_FRAME_BYTES: the 128 KiB frames of volumes
 * and, since 2026-12-04, of files; the Linux tree in them: 232 MB → 185 MB),
 * which also get a dictionary (format.md §2.9.1, measured there: level 15 with a dictionary
 * makes 128 KiB frames of the bench image 11 % smaller than level 12 alone).
 */
export const DEFAULT_SMALL_FRAME_LEVEL = 15
/** Frames up to this size get the small-frame level and a dictionary. */
export const SMALL_FRAME_BYTES = 256 << 10
/** A stream gets a dictionary only when its units hold at least this much raw data (a 112 KiB dictionary must pay for itself). */
export const DICT_MIN_STREAM_RAW = 32 << 20
/** Dictionary size (zstd's default for `--train`, 110 KiB; 112 KiB measured best of 32 / 112 / 256 KiB). */
export const DICT_BYTES = 112 << 10
/** Frames sampled evenly over a stream to train its dictionary (§2.9.1: 512 made the whole image only 0.1 % smaller than 256). */
export const DICT_SAMPLES = 256

/** What compact aims for: a level given by the user (every unit), or null for the defaults by frame size; dictionaries for small frames unless off. */
export interface CompactTarget {
  level: number | null
  dictionaries?: boolean
}

/** The level and dictionary use a unit of `frameBytes` frames in a stream of `streamRaw` raw bytes is compacted to. */
export function unitTarget(t: CompactTarget, frameBytes: number, streamRaw: number): { level: number; dict: boolean } {
  const small = frameBytes <= SMALL_FRAME_BYTES
  return {
    level: t.level ?? (small ? DEFAULT_SMALL_FRAME_LEVEL : DEFAULT_COMPACT_LEVEL),
    dict: small && t.dictionaries !== false && streamRaw >= DICT_MIN_STREAM_RAW,
  }
}
/** Units of runs committed less than this long ago are not settled yet. */
export const DEFAULT_MIN_AGE_MS = 7 * 86_400_000

export interface CompactUnit {
  stream: number
  unit: number
  key: string
  /** Stored bytes now. */
  bytes: number
  /** Raw bytes (rawBlocks × 4096). */
  rawBytes: number
  version: 1 | 2
  /** v2: the header's level; v1: null (written at the ingest level, not recorded). */
  level: number | null
  /** The level it is recompressed at. */
  targetLevel?: number
  /** Its stream gets a dictionary: set by prepareDictionaries to the one it is compressed with. */
  wantDict?: boolean
  dict?: { id: number; bytes: Buffer }
}

export interface CompactSurvey {
  /** Settled units below the target level, in stream and unit order. */
  todo: CompactUnit[]
  /** Units already at (or above) the target level: done by an earlier compact. */
  done: { units: number; bytes: number; rawBytes: number }
  /** Units of runs committed less than --min-age ago. */
  young: { units: number; bytes: number }
  /** gens/N directories not looked at, with why (not committed, no run record). */
  leftAlone: Array<{ run: number; why: string }>
  /** Unit files whose header does not read: left for bfs verify. */
  unreadable: Array<{ key: string; why: string }>
}

const nameOf = (k: string): string => k.slice(k.lastIndexOf('/') + 1)

/** The units compact would rewrite, and what it leaves and why. Reads only unit headers. */
export function surveyCompact(repo: Repo2, o: CompactTarget & { minAgeMs: number; now?: Date }): CompactSurvey {
  // an encrypted repository gets no dictionary: one is plaintext derived from the data, and
  // sealed dictionaries are not wired (format.md §2.9.1, §2.22.3)
  if (repo.encrypted) o = { ...o, dictionaries: false }
  const now = (o.now ?? new Date()).getTime()
  const runs = new Map<number, RunRecord>(repo.runs().map((r) => [r.run, r]))
  const sv: CompactSurvey = { todo: [], done: { units: 0, bytes: 0, rawBytes: 0 }, young: { units: 0, bytes: 0 }, leftAlone: [], unreadable: [] }
  // units the tape catalog knows stay as the catalog describes them (format.md §2.18)
  const onTape = tapeKeys(repo.store, tapeSealOf(repo))
  for (const name of repo.sync.listSync(keys2.gens).map(nameOf)) {
    if (!RUN_RE.test(name)) continue
    const run = Number(name)
    const rec = runs.get(run)
    if (!rec) {
      sv.leftAlone.push({ run, why: 'no run record' })
      continue
    }
    if (rec.state !== 'committed') {
      sv.leftAlone.push({ run, why: `its run is ${rec.state}` })
      continue
    }
    const young = now - Date.parse(rec.ended ?? rec.started) < o.minAgeMs
    const units = repo.sync
      .listSync(keys2.genDir(run))
      .map(nameOf)
      .flatMap((f) => {
        const m = UNIT2_RE.exec(f)
        return m ? [Number(m[1])] : []
      })
      .sort((a, b) => a - b)
    // the units' headers first: the target depends on the stream's size and frame size
    const seen: Array<{ unit: CompactUnit; dict: number; frameBytes: number }> = []
    for (const u of units) {
      const key = keys2.unit(run, u)
      if (onTape.has(key)) continue
      let head: Buffer
      let bytes: number
      try {
        const blob = repo.sync.openSync(key)
        try {
          bytes = blob.sizeBytes
          head = blob.readSync({ offset: 0, length: Math.min(UNIT_V2_HEADER_BYTES, bytes) })
        } finally {
          blob.closeSync()
        }
      } catch (err) {
        if (err instanceof StoreError && err.code === 'ENOENT') continue
        if (err instanceof StoreError) {
          sv.unreadable.push({ key, why: err.message })
          continue
        }
        throw err
      }
      if (young) {
        sv.young.units++
        sv.young.bytes += bytes
        continue
      }
      let version: 1 | 2
      let level: number | null
      let rawBlocks: number
      let frameBlocks: number
      let dict: number
      try {
        const h = decodeAnyUnitHeader(head, repo.store.where(key))
        version = h.version
        rawBlocks = h.rawBlocks
        frameBlocks = h.frameBlocks
        dict = h.dict
        level = h.version === 2 ? decodeUnitHeaderV2(head, repo.store.where(key)).level : null
        if (h.stream !== run || h.unitIndex !== u) throw new FormatError('BAD_VALUE', `${repo.store.where(key)}: unit header names stream ${h.stream}, unit ${h.unitIndex}`)
      } catch (err) {
        if (!(err instanceof FormatError)) throw err
        sv.unreadable.push({ key, why: err.message })
        continue
      }
      seen.push({ unit: { stream: run, unit: u, key, bytes, rawBytes: rawBlocks * BLOCK_BYTES, version, level }, dict, frameBytes: frameBlocks * BLOCK_BYTES })
    }
    const streamRaw = seen.reduce((n, x) => n + x.unit.rawBytes, 0)
    for (const { unit: cu, dict, frameBytes } of seen) {
      const t = unitTarget(o, frameBytes, streamRaw)
      if (cu.level !== null && cu.level >= t.level && (!t.dict || dict !== 0)) {
        sv.done.units++
        sv.done.bytes += cu.bytes
        sv.done.rawBytes += cu.rawBytes
        continue
      }
      sv.todo.push({ ...cu, targetLevel: t.level, ...(t.dict ? { wantDict: true } : {}) })
    }
  }
  return sv
}

/** A frame whose bytes do not check: the unit is left as it is (compact never rewrites damage). */
export class DamagedUnit extends Error {}

/**
 * An encrypted unit's rewrite (format.md §2.22.3): the key its frames and index are opened
 * with (the old unit's salt), and the fresh salt and key the new unit is sealed under. Plain
 * data (it crosses to a worker thread); derived on the main thread, once per unit.
 */
export interface UnitReseal {
  aead: AeadName
  /** HKDF(kEnc, the old unit's salt, "bfs v2 unit"). */
  oldKey: Uint8Array
  /** The old unit's salt (the new one must differ). */
  oldSalt: Uint8Array
  /** A fresh salt (newSalt) and its key. */
  salt: Uint8Array
  key: Uint8Array
}

const keyOf = (aead: AeadName, k: Uint8Array): ObjectKey => ({ aead, key: Buffer.from(k.buffer, k.byteOffset, k.length) })

/** The sealed unit index of a unit revision, opened (nonce (2, 0), §2.9); FormatError BAD_CHECKSUM when it does not authenticate. */
export function openUnitIndex(k: ObjectKey, h: Pick<UnitHeaderV2, 'stream' | 'unitIndex' | 'revision'>, sealed: Buffer, where: string): Buffer {
  return open(k, NONCE_TAG.unitIndex, 0, aad.unitIndex(h.stream, h.unitIndex, h.revision), sealed, `${where} (unit index)`)
}

/**
 * What rewriting an encrypted unit whose header holds `oldSalt` takes: its key, and a fresh
 * salt (never the old one: a new key, so no (key, nonce) pair is used twice, §2.22.3) with
 * its key.
 */
export function unitReseal(keys: { aead: AeadName; kEnc: Buffer }, oldSalt: Buffer): UnitReseal {
  let salt = newSalt()
  while (salt.equals(oldSalt)) salt = newSalt()
  return { aead: keys.aead, oldKey: objectKey(keys, oldSalt, 'unit').key, oldSalt, salt, key: objectKey(keys, salt, 'unit').key }
}

/** Compresses frames at one level; keeps its zstd contexts and buffers across units. */
export class Recompressor {
  private readonly c: FrameCompressor
  private readonly d = new FrameDecompressor()
  /** The dictionary the new frames are compressed with (format.md §2.9.1), or none. */
  private readonly dict: DecompressionDictionary | undefined
  private readonly dictId: number
  private out = Buffer.alloc(0)
  private back = Buffer.alloc(0)
  private hashes = Buffer.alloc(0)

  constructor(
    readonly level: number,
    private readonly hashAlg: HashAlg,
    /** The repository's XXH64 seed (Repo2.blockSeed) of the new frame checks. */
    private readonly seed: bigint,
    dict?: Uint8Array,
  ) {
    this.c = new FrameCompressor(level)
    if (dict) {
      this.c.useDictionary(dict)
      this.dict = new DecompressionDictionary(dict)
      this.dictId = zstdDictId(Buffer.from(dict.buffer, dict.byteOffset, dict.length))
    } else this.dictId = 0
  }

  /**
   * The unit file `file` (either version) recompressed as a v2 unit at this level: each
   * frame decoded (zstd's checksum), its blocks hashed against its frame check, compressed
   * again and the result decoded back and compared; a frame the level does not make smaller
   * keeps its bytes. Revision + 1; dead ranges carried over. DamagedUnit when a frame does
   * not check.
   *
   * With `dead` (prune's step 7, format.md §2.20.7): the unit's new dead ranges (a superset of
   * its old ones, unit-relative). Then only the frames holding newly dead blocks change: a
   * frame with no live block left becomes a frame of zeros; one with live blocks is decoded,
   * checked as above, its dead blocks zeroed, its frame check recomputed and it is compressed
   * at this level (decoded back and compared). Every other frame is copied byte for byte.
   *
   * With `reseal` (an encrypted unit, format.md §2.22.3): the old index and every frame used
   * are opened with the old key (one that does not authenticate: DamagedUnit), and every frame
   * of the new unit is sealed under the new key at revision + 1 (opened back and compared),
   * its index sealed, the new salt in its header. "Copied byte for byte" then means its zstd
   * bytes, sealed again.
   */
  rewrite(file: Buffer, where: string, expected: { stream: number; unitIndex: number }, dead?: readonly DeadRange[], oldDict?: DecompressionDictionary, reseal?: UnitReseal): { parts: Buffer[]; bytes: number } {
    // encrypted (§2.22.3): the old frames and index are opened with the old unit's key; the
    // new unit is sealed under a fresh salt's key at revision + 1. A plaintext unit given a
    // key, or a sealed one given none, is refused (parseUnitFile / below): never laundered
    const oldKey = reseal ? keyOf(reseal.aead, reseal.oldKey) : null
    const newKey = reseal ? keyOf(reseal.aead, reseal.key) : null
    let p: ReturnType<typeof parseUnitFile>
    try {
      p = parseUnitFile(file, BLOCK_BYTES, where, expected, oldKey ? (b, h) => openUnitIndex(oldKey, h, b, where) : undefined)
    } catch (err) {
      if (err instanceof FormatError && err.code === 'BAD_CHECKSUM') throw new DamagedUnit(err.message)
      throw err
    }
    const encrypted = p.version === 2 && p.salt.some((b) => b !== 0)
    if (reseal && !encrypted) throw new FormatError('BAD_VALUE', `${where}: not encrypted, in an encrypted repository (refused: a plaintext object here is tampering or a downgrade)`)
    if (reseal && (!p.salt.equals(Buffer.from(reseal.oldSalt)) || Buffer.from(reseal.salt).equals(p.salt))) throw new RangeError(`${where}: the new unit's salt must be fresh, and the old key the old salt's`)
    /** Frame i's zstd bytes: the stored frame, opened first when sealed (it authenticates, or the unit is damaged). */
    const zstdOf = (i: number): Buffer => {
      const stored = file.subarray(p.offsets[i]!, p.offsets[i + 1]!)
      if (!oldKey) return stored
      try {
        return open(oldKey, NONCE_TAG.unitFrame, i, aad.unitFrame(p.stream, p.unitIndex, p.revision, i, p.seek[i]!.rawBytes), stored, `${where} frame ${i}`)
      } catch (err) {
        if (err instanceof FormatError) throw new DamagedUnit(err.message)
        throw err
      }
    }
    if (p.dict !== 0 && oldDict?.id !== p.dict) throw new FormatError('BAD_VALUE', `${where}: its frames need dictionary ${p.dict}, which was not given`)
    // every frame of a unit with a dictionary is compressed with it (§2.9.1): old bytes are
    // kept only when they were made with the same dictionary, or with none for none
    const keepOld = p.dict === this.dictId
    const frames: Buffer[] = []
    const seek: SeekEntry[] = []
    const oldDead = blockSet(p.dead)
    const newDead = dead ? blockSet(dead) : null
    if (newDead) for (const b of oldDead) if (!newDead.has(b)) throw new RangeError(`${where}: block ${b} is dead and the new dead ranges leave it out`)
    for (let i = 0; i < p.frameCount; i++) {
      const e = p.seek[i]!
      const blocks = e.rawBytes / BLOCK_BYTES
      const first = i * p.frameBlocks
      const zero: number[] = []
      if (newDead) {
        for (let b = first; b < first + blocks; b++) if (newDead.has(b) && !oldDead.has(b)) zero.push(b - first)
        if (zero.length === 0 && keepOld) {
          // no block of it died since it was written: its bytes as they are (sealed: its zstd
          // frame as it is, opened and sealed again below under the new key and revision)
          const old = zstdOf(i)
          frames.push(old)
          seek.push({ ...e, compBytes: old.length })
          continue
        }
        let live = 0
        for (let b = first; b < first + blocks; b++) if (!newDead.has(b)) live++
        if (live === 0) {
          // nothing of it is read any more: a frame of zeros, without decoding the old bytes
          const raw = this.zeros(e.rawBytes)
          const frame = this.compress(raw, where, i)
          frames.push(frame)
          seek.push({ compBytes: frame.length, rawBytes: e.rawBytes, check: this.check(raw, blocks) })
          continue
        }
      }
      const old = zstdOf(i)
      let raw: Buffer
      try {
        raw = decompressFrame(old, e.rawBytes, this.d, p.dict ? oldDict : undefined)
      } catch (err) {
        rethrowUnavailable(err)
        throw new DamagedUnit(`${where}: frame ${i}: ${(err as Error).message}`)
      }
      if (raw.length !== e.rawBytes) throw new DamagedUnit(`${where}: frame ${i} holds ${raw.length} bytes, its seek entry says ${e.rawBytes}`)
      if (!this.check(raw, blocks).equals(e.check)) throw new DamagedUnit(`${where}: frame ${i} does not match its frame check`)
      if (newDead) {
        for (const b of zero) raw.fill(0, b * BLOCK_BYTES, (b + 1) * BLOCK_BYTES)
        const frame = this.compress(raw, where, i)
        frames.push(frame)
        seek.push({ compBytes: frame.length, rawBytes: e.rawBytes, check: this.check(raw, blocks) })
        continue
      }
      const n = this.c.compressInto(this.buf(e.rawBytes), raw)
      let frame = old
      if (n < old.length || !keepOld) {
        frame = Buffer.from(this.out.subarray(0, n))
        this.decodesTo(frame, raw, where, i)
      }
      frames.push(frame)
      seek.push({ compBytes: frame.length, rawBytes: e.rawBytes, check: e.check })
    }
    const revision = p.revision + 1
    if (newKey) {
      // every frame sealed under the new key: frame i with nonce (1, i) and the new revision in
      // its AAD (§2.9); opened back and compared before it is used, as a new zstd frame is
      for (let i = 0; i < frames.length; i++) {
        const a = aad.unitFrame(p.stream, p.unitIndex, revision, i, seek[i]!.rawBytes)
        const sealed = seal(newKey, NONCE_TAG.unitFrame, i, a, frames[i]!)
        if (!open(newKey, NONCE_TAG.unitFrame, i, a, sealed, `${where} frame ${i}`).equals(frames[i]!)) throw new Error(`${where}: frame ${i} sealed again does not open to its bytes (not replaced)`)
        frames[i] = sealed
        seek[i] = { ...seek[i]!, compBytes: sealed.length }
      }
    }
    const parts = encodeUnitFileV2(
      { stream: p.stream, unitIndex: p.unitIndex, rawBlocks: p.rawBlocks, frameBlocks: p.frameBlocks, revision, level: this.level, hashAlg: this.hashAlg, dict: this.dictId },
      frames,
      seek,
      dead ?? p.dead,
      newKey ? { salt: Buffer.from(reseal!.salt), sealIndex: (x) => seal(newKey, NONCE_TAG.unitIndex, 0, aad.unitIndex(p.stream, p.unitIndex, revision), x) } : undefined,
    )
    return { parts, bytes: parts.reduce((s, b) => s + b.length, 0) }
  }

  /** The frame check of `blocks` blocks of raw data. */
  private check(raw: Buffer, blocks: number): Buffer {
    if (this.hashes.length < blocks * HASH_BYTES) this.hashes = Buffer.alloc(blocks * HASH_BYTES)
    hashBlocks(this.hashAlg, raw, 0, blocks, this.hashes, 0, this.seed)
    return frameCheck(this.hashAlg, this.hashes.subarray(0, blocks * HASH_BYTES), this.seed)
  }

  private buf(rawBytes: number): Buffer {
    const bound = FrameCompressor.bound(rawBytes)
    if (this.out.length < bound) this.out = Buffer.alloc(bound)
    return this.out
  }

  private zeroBuf = Buffer.alloc(0)
  private zeros(n: number): Buffer {
    if (this.zeroBuf.length < n) this.zeroBuf = Buffer.alloc(n)
    return this.zeroBuf.subarray(0, n)
  }

  /** `raw` compressed at this level, decoded back and compared before it is used. */
  private compress(raw: Buffer, where: string, i: number): Buffer {
    const n = this.c.compressInto(this.buf(raw.length), raw)
    const frame = Buffer.from(this.out.subarray(0, n))
    this.decodesTo(frame, raw, where, i)
    return frame
  }

  /** A compressor or memory fault must not become data loss: the new frame is decoded back first. */
  private decodesTo(frame: Buffer, raw: Buffer, where: string, i: number): void {
    if (this.back.length < raw.length) this.back = Buffer.alloc(raw.length)
    const m = this.d.decompressInto(this.back, frame, this.dict)
    if (m !== raw.length || !this.back.subarray(0, m).equals(raw)) throw new Error(`${where}: frame ${i} recompressed at level ${this.level} does not decode to its bytes (not replaced)`)
  }
}

/** The blocks of a list of dead ranges. */
function blockSet(dead: readonly DeadRange[]): Set<number> {
  const s = new Set<number>()
  for (const d of dead) for (let b = d.start; b < d.start + d.blocks; b++) s.add(b)
  return s
}

export interface CompactResult {
  units: number
  rawBytes: number
  bytesBefore: number
  bytesAfter: number
  /** Units left as they were because a frame does not check (bfs verify names them). */
  damaged: Array<{ key: string; why: string }>
}

/** The threads that recompress (2 cores on the reference machine: both, at nice 19). */
export function compactThreads(): number {
  return Math.max(1, Math.min(4, os.availableParallelism()))
}

/** One unit recompressed on a worker thread: the new file's bytes, or why the unit is left as it is. */
export interface RecompressReply extends WorkerReply {
  data?: ArrayBuffer
  damaged?: string
}

const recompressors = new Map<string, Recompressor>()
/** Dictionaries the old frames of units need, by stream:id (a worker keeps them). */
const oldDicts = new Map<string, DecompressionDictionary>()

/** The worker thread's side (repo/worker.ts `recompressUnit`): Recompressor.rewrite of the unit's bytes. */
export function recompressUnit(r: WorkerRequest): RecompressReply {
  const req = r as WorkerRequest & {
    file: ArrayBuffer; where: string; stream: number; unit: number; level: number; hashAlg: HashAlg; blockSeed: bigint; dead?: DeadRange[]
    /** The dictionary of the new frames (id, bytes), and the one the old frames need. */
    dict?: { id: number; bytes: Uint8Array }
    oldDict?: { id: number; bytes: Uint8Array }
    /** An encrypted unit's keys and fresh salt (§2.22.3). */
    reseal?: UnitReseal
  }
  // one compressor per level (and dictionary); units come in stream order, so a worker keeps
  // the dictionaries of the last two streams only (each holds a compression context and tables)
  const k = req.dict ? `${req.level}:${req.hashAlg}:${req.blockSeed}:${req.stream}:${req.dict.id}` : `${req.level}:${req.hashAlg}:${req.blockSeed}`
  let rc = recompressors.get(k)
  if (!rc) {
    if (req.dict) for (const key of [...recompressors.keys()].filter((x) => x.split(':').length > 3).slice(0, -1)) recompressors.delete(key)
    recompressors.set(k, (rc = new Recompressor(req.level, req.hashAlg, req.blockSeed, req.dict?.bytes)))
  }
  let old: DecompressionDictionary | undefined
  if (req.oldDict) {
    const ok = `${req.stream}:${req.oldDict.id}`
    old = oldDicts.get(ok)
    if (!old) {
      if (oldDicts.size >= 2) oldDicts.delete(oldDicts.keys().next().value!)
      oldDicts.set(ok, (old = new DecompressionDictionary(req.oldDict.bytes)))
    }
  }
  try {
    const out = rc.rewrite(Buffer.from(req.file), req.where, { stream: req.stream, unitIndex: req.unit }, req.dead, old, req.reseal)
    const data = new ArrayBuffer(out.bytes)
    let at = 0
    for (const p of out.parts) {
      new Uint8Array(data, at, p.length).set(p)
      at += p.length
    }
    return { id: req.id, data }
  } catch (err) {
    if (err instanceof DamagedUnit || err instanceof FormatError) return { id: req.id, damaged: err.message }
    throw err
  }
}

/**
 * A unit to rewrite: compact's (recompressed at the call's level), or prune's step 7 (`dead`:
 * its new dead ranges, the frames that hold newly dead blocks rewritten at `targetLevel`).
 */
export interface UnitRewrite extends CompactUnit {
  dead?: DeadRange[]
  /** The level of the rewritten frames and of the header (prune: the unit's own). */
  targetLevel?: number
}

/**
 * Rewrites the survey's units (compact's, or prune step 7's with their new dead ranges), `threads` at a time on worker threads (they inherit the
 * caller's priority); the main thread reads each unit and, when its new bytes come back,
 * replaces it atomically (durable before the unit counts as done). Units finish in any order:
 * each is whole on its own, and the level in its header is what a later compact looks at.
 * `onUnit` after each (progress, interruption: it may throw, which stops the launching of
 * units; those in flight finish or are dropped, whole either way).
 */
export async function compactUnits(repo: Repo2, todo: readonly UnitRewrite[], level: number, onUnit: (done: CompactResult, u: UnitRewrite) => void = () => {}, threads = compactThreads()): Promise<CompactResult> {
  const res: CompactResult = { units: 0, rawBytes: 0, bytesBefore: 0, bytesAfter: 0, damaged: [] }
  if (todo.length === 0) return res
  const swept = new Set<number>()
  const pool = new WorkerPool(Math.min(threads, todo.length))
  let failed: unknown = null
  const tasks = new Set<Promise<void>>()
  try {
    for (const u of todo) {
      if (failed) break
      if (!swept.has(u.stream)) {
        // temporary files a killed compact left in this directory (a dead pid's: store sweep)
        swept.add(u.stream)
        await repo.store.sweep(keys2.genDir(u.stream), { shallow: true }).catch(() => 0)
      }
      let file: Buffer
      try {
        file = repo.sync.getSync(u.key)
      } catch (err) {
        if (err instanceof StoreError && err.code === 'ENOENT') continue // deleted meanwhile (cannot be: prune takes the lock)
        throw err
      }
      const before = file.length
      // the dictionary its frames need now, and the one the new frames get: prune's rewrite
      // keeps the unit's own; compact gives the stream's (prepareDictionaries) or none
      let cur: { id: number; bytes: Buffer } | undefined
      let reseal: UnitReseal | undefined
      try {
        const head = file.subarray(0, Math.min(file.length, UNIT_V2_HEADER_BYTES))
        const h = decodeAnyUnitHeader(head, repo.store.where(u.key))
        if (repo.encrypted) {
          // §2.22.3: the unit's key (its salt) and a fresh salt for the new unit
          const v2 = h.version === 2 ? decodeUnitHeaderV2(head, repo.store.where(u.key)) : null
          if (!v2 || !(v2.flags & UNIT_FLAG_ENCRYPTED)) throw new FormatError('BAD_VALUE', `${repo.store.where(u.key)}: not encrypted, in an encrypted repository (refused: a plaintext object here is tampering or a downgrade)`)
          reseal = unitReseal(repo.keys, v2.salt)
        }
        cur = h.dict ? streamDict(repo, u.stream, h.dict) : undefined
      } catch (err) {
        if (!(err instanceof FormatError) && !(err instanceof StoreError)) throw err
        res.damaged.push({ key: u.key, why: err.message })
        onUnit(res, u)
        continue
      }
      const target = u.dead ? cur : u.dict
      const ab = file.buffer.slice(file.byteOffset, file.byteOffset + file.length) as ArrayBuffer
      const task: Promise<void> = pool
        .run<RecompressReply>({
          op: 'recompressUnit', file: ab, where: repo.store.where(u.key), stream: u.stream, unit: u.unit, level: u.targetLevel ?? level, hashAlg: repo.config.hashAlg, blockSeed: repo.blockSeed,
          ...(u.dead ? { dead: u.dead } : {}), ...(target ? { dict: target } : {}), ...(cur ? { oldDict: cur } : {}), ...(reseal ? { reseal } : {}),
        }, [ab])
        .then((x) => {
          if (failed) return
          if (x.damaged !== undefined) res.damaged.push({ key: u.key, why: x.damaged })
          else {
            repo.sync.putSync(u.key, new Uint8Array(x.data!), { mode: 'replace' })
            res.units++
            res.rawBytes += u.rawBytes
            res.bytesBefore += before
            res.bytesAfter += x.data!.byteLength
          }
          onUnit(res, u)
        })
        .catch((err: unknown) => {
          failed ??= err
        })
        .finally(() => tasks.delete(task))
      tasks.add(task)
      if (tasks.size >= pool.size) await Promise.race(tasks)
    }
    await Promise.all(tasks)
  } finally {
    await pool.close()
  }
  if (failed) throw failed
  return res
}

/** Stream `stream`'s dictionary `id`, read and checked (FormatError / StoreError when it does not read). */
export function streamDict(repo: Repo2, stream: number, id: number): { id: number; bytes: Buffer } {
  const key = keys2.dict(stream, id)
  const d = decodeDict(repo.sync.getSync(key), repo.store.where(key), { stream, id })
  return { id: d.id, bytes: d.bytes }
}

/** The dictionary files of stream `stream` (their ids), from its directory's listing. */
export function streamDictIds(repo: Repo2, stream: number): number[] {
  return repo.sync
    .listSync(keys2.genDir(stream))
    .map(nameOf)
    .flatMap((f) => {
      const m = DICT_RE.exec(f)
      return m ? [parseInt(m[1]!, 16)] : []
    })
}

/**
 * Gives each stream whose todo units want a dictionary (surveyCompact's `wantDict`) the one
 * they are compressed with: a valid dictionary file the stream has already (an earlier,
 * interrupted compact's: resuming reuses it), else one trained on DICT_SAMPLES frames taken
 * evenly over the stream's todo units (all-zero frames skipped) and written durably
 * (gens/S/dict-<id>, §2.9.1) before any unit names it. A stream whose frames are too few or
 * too uniform to train on is compacted without one. Returns the dictionaries written.
 */
export function prepareDictionaries(repo: Repo2, sv: CompactSurvey): Array<{ stream: number; id: number; bytes: number }> {
  const written: Array<{ stream: number; id: number; bytes: number }> = []
  const byStream = new Map<number, CompactUnit[]>()
  for (const u of sv.todo) if (u.wantDict) byStream.set(u.stream, [...(byStream.get(u.stream) ?? []), u])
  const settled = new Set<CompactUnit>()
  for (const [stream, units] of byStream) {
    let dict: { id: number; bytes: Buffer } | undefined
    for (const id of streamDictIds(repo, stream)) {
      try {
        dict = streamDict(repo, stream, id)
        break
      } catch (err) {
        if (!(err instanceof FormatError) && !(err instanceof StoreError)) throw err
        // a damaged one is left for verify; a new one is trained
      }
    }
    if (!dict) {
      const samples = sampleFrames(repo, units)
      let bytes: Buffer | null = null
      if (samples.length >= 16) {
        try {
          bytes = trainDictionary(samples, DICT_BYTES)
        } catch (err) {
          if (!(err instanceof RangeError)) throw err
        }
      }
      const id = bytes ? zstdDictId(bytes) : 0
      if (bytes && id >= 1) {
        dict = { id, bytes }
        // older bfs must refuse the repository, not misread its units (the caller holds the maintenance lock)
        enableFeatureLocked(repo, 'unit-dictionaries')
        // (replaced, not skipped, when a file of that name exists: the loop above found it
        // damaged, and the same samples train the same bytes, so this repairs it)
        repo.sync.putSync(keys2.dict(stream, id), encodeDict({ stream, id, bytes }), { mode: 'replace' })
        written.push({ stream, id, bytes: bytes.length })
      }
    }
    for (const u of units) {
      delete u.wantDict
      if (dict) u.dict = dict
      // no dictionary to be had (too few non-zero frames, or zstd could not train one): a unit
      // at the target level already is done, not rewritten by every compact for nothing
      else if (u.level !== null && u.level >= (u.targetLevel ?? 0)) settled.add(u)
    }
  }
  if (settled.size) {
    sv.todo = sv.todo.filter((u) => !settled.has(u))
    for (const u of settled) {
      sv.done.units++
      sv.done.bytes += u.bytes
      sv.done.rawBytes += u.rawBytes
    }
  }
  return written
}

/** Up to DICT_SAMPLES decompressed frames spread evenly over the units' frames (units with a dictionary, and all-zero frames, are skipped). */
function sampleFrames(repo: Repo2, units: readonly CompactUnit[]): Buffer[] {
  const frames: Array<{ u: CompactUnit; frame: number }> = []
  const counts: number[] = []
  // frame counts from the unit sizes are not known without reading: one pass over the headers
  for (const u of units) {
    try {
      const blob = repo.sync.openSync(u.key)
      try {
        const h = decodeAnyUnitHeader(blob.readSync({ offset: 0, length: Math.min(UNIT_V2_HEADER_BYTES, blob.sizeBytes) }), repo.store.where(u.key))
        counts.push(h.dict ? 0 : h.frameCount)
      } finally {
        blob.closeSync()
      }
    } catch (err) {
      if (!(err instanceof FormatError) && !(err instanceof StoreError)) throw err
      counts.push(0)
    }
  }
  const total = counts.reduce((a, b) => a + b, 0)
  if (total === 0) return []
  const want = Math.min(DICT_SAMPLES * 2, total) // twice as many picks: all-zero frames are dropped
  const picks = new Set<number>()
  for (let i = 0; i < want; i++) picks.add(Math.floor(((i + 0.5) * total) / want))
  let base = 0
  units.forEach((u, k) => {
    for (let f = 0; f < counts[k]!; f++) if (picks.has(base + f)) frames.push({ u, frame: f })
    base += counts[k]!
  })
  const out: Buffer[] = []
  const dec = new FrameDecompressor()
  let curKey = ''
  let curFile: Buffer = Buffer.alloc(0)
  let curP: ReturnType<typeof parseUnitFile> | null = null
  let zeros: Buffer = Buffer.alloc(0)
  for (const { u, frame } of frames) {
    if (out.length >= DICT_SAMPLES) break
    try {
      if (curKey !== u.key || !curP) {
        curP = null
        curKey = u.key
        curFile = repo.sync.getSync(u.key)
        curP = parseUnitFile(curFile, BLOCK_BYTES, repo.store.where(u.key))
      }
      const raw = decompressFrame(curFile.subarray(curP.offsets[frame]!, curP.offsets[frame + 1]!), curP.seek[frame]!.rawBytes, dec)
      if (zeros.length !== raw.length) zeros = Buffer.alloc(raw.length)
      if (!raw.equals(zeros)) out.push(raw)
    } catch (err) {
      rethrowUnavailable(err)
      // a frame that does not read is not a sample (the unit's own rewrite reports it)
    }
  }
  return out
}

/** Claims run C for this compact (runs/C exclusive). */
export function claimCompactRun(repo: Repo2, lease: string): RunRecord {
  return repo.claimRun((n) => ({ run: n, kind: 'compact', state: 'running', host: os.hostname(), pid: process.pid, lease, started: new Date().toISOString() }))
}
