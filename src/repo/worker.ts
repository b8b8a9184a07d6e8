import fs from 'node:fs'
import { parentPort } from 'node:worker_threads'
import { FrameCompressor } from '../codec/zstd.js'
import { encodeSeekTableAndTrailer, encodeUnitHeader, UNIT_HEADER_BYTES, type SeekEntry } from '../format/unit.js'
import { BLOCK_BYTES, frameCheck, hashBlocks, HASH_BYTES, type HashAlg } from '../codec/hash.js'
import type { ReaderSpec } from '../blocks/spec.js'
import type { Staged, Store, StoreDescription } from '../store/store.js'
import type { Handler, WorkerReply, WorkerRequest } from './workers/protocol.js'
import * as native from '../native/index.js'
import { type AeadName, type ObjectKey, NONCE_TAG, TAG_BYTES, seal, sealInto } from '../crypto/aead.js'
import { aad } from '../crypto/aad.js'
import { UNIT_FLAG_ENCRYPTED, UNIT_V2_HEADER_BYTES, encodeUnitHeaderV2, encodeUnitIndex, encodeUnitTrailer } from '../format/v2/unit.js'
import { openTreeFile } from './source.js'

/**
 * Worker thread: compresses units into frames (hashing every block); restore and verify
 * jobs read through the thread's block readers (built from ReaderSpecs). Keeps its zstd
 * contexts for its whole life.
 */

/** compress: one unit in shared memory (not copied, not transferred), written by the worker to a temporary file. */
export interface CompressRequest extends WorkerRequest {
  op: 'compress'
  raw: SharedArrayBuffer
  rawBlocks: number
  frameBlocks: number
  level: number
  hashAlg: HashAlg
  /** The repository's XXH64 seed of block hashes and frame checks (Repo2.blockSeed; 0 unless encrypted, format.md §2.22). */
  blockSeed: bigint
  /** The repository's store (its description) and a staged write of the unit there: the worker writes it, the caller commits it. */
  store: StoreDescription
  staged: Staged
  genId: number
  unitIndex: number
  /** File ranges to read into the unit first (the main thread only plans them). */
  reads?: PlannedRead[]
  /**
   * An encrypted repository (§2.9, §2.22): write a v2 unit (revision 0) under this salt, its
   * frames and unit index sealed with the unit's key (derived on the main thread, once per unit).
   */
  seal?: { aead: AeadName; key: Uint8Array; salt: Uint8Array }
}

export interface CompressReply extends WorkerReply {
  /** Bytes written to the staged blob. */
  fileBytes: number
  hashes: ArrayBuffer
  readResults?: ReadResult[]
}

/** A range of a source file that goes to unitOffsetBytes of a unit. */
export interface PlannedRead {
  /** Caller's tag (the catalog entry). */
  tag: number
  path: Uint8Array
  fileOffset: number
  bytes: number
  unitOffsetBytes: number
  /** The file's first range: also read its xattrs. */
  first: boolean
  /** The file's last range: also fstat it afterwards, for change detection. */
  last: boolean
  /**
   * `--online`: the capture shared under this id (BiCapture.share): read through it — the
   * live bytes, with blocks changed since T0 as zeros (ReadResult.logged counts them).
   */
  bilog?: number
  /**
   * With `bilog`: the inode the scan found at `path` (st_dev, st_ino's high and low 32 bits).
   * The range is then read in one call (native.biReadFileShared): open, read and close, the
   * path looked up once and the file stat'ed once. The file's last range reports `last`, not
   * `after` (with --online a change after T0 is not one).
   */
  ino?: [number, number, number]
}

/** What reading one planned range found. */
export interface ReadResult {
  tag: number
  bytesRead: number
  /** errno name when the file could not be opened or read (its range is zeros). */
  error?: string
  /** Which call failed. */
  errorAt?: 'open' | 'read'
  xattrs?: Array<[Uint8Array, Uint8Array]> | null
  /** fstat after reading, when last: size, mtime sec, mtime nsec, ctime sec, ctime nsec. */
  after?: [number, number, number, number, number]
  /** With `bilog`: blocks read as zeros because their before-images are in the capture. */
  logged?: number
  /** The file's last range was read (set instead of `after` for a read with `ino`). */
  last?: boolean
}

/** readPlanned's out argument of native.biReadFileShared: [bytes read, blocks logged]. */
const fileOut = new Float64Array(2)

const compressors = new Map<number, FrameCompressor>()
/** Reused output buffer: one frame's worst-case compressed size. */
let compressOut = Buffer.allocUnsafe(0)
/** Reused, growing buffer for a unit's compressed frames (only the used part is copied out). */
let unitOut = Buffer.allocUnsafe(4 << 20)

/** Reads the planned ranges into the unit; failures leave zeros and are reported. (Also run on the main thread: StreamWriter.settleReads.) */
export function readPlanned(raw: Buffer, reads: PlannedRead[]): ReadResult[] {
  const results: ReadResult[] = []
  for (const r of reads) {
    const res: ReadResult = { tag: r.tag, bytesRead: 0 }
    const path = Buffer.from(r.path.buffer, r.path.byteOffset, r.path.byteLength)
    const padded = Math.ceil(r.bytes / BLOCK_BYTES) * BLOCK_BYTES
    let fd = -1
    try {
      if (r.bilog && r.ino) {
        // --online: open (quietly: no events), read and close in one native call
        try {
          native.biReadFileShared(r.bilog, path, r.ino[0], r.ino[1], r.ino[2], raw, r.unitOffsetBytes, r.bytes, r.fileOffset, fileOut)
        } catch (err) {
          res.errorAt = (err as native.NativeError).syscall === 'open' ? 'open' : 'read'
          throw err
        }
        res.bytesRead = fileOut[0]!
        if (fileOut[1]) res.logged = fileOut[1]
      } else {
        // --online: an fd whose reads raise no events (each would be a round trip through the listener)
        fd = r.bilog ? native.biOpenQuietShared(r.bilog, path) : openTreeFile(path)
        res.errorAt = 'read'
        let got = 0
        while (got < r.bytes) {
          let n: number
          if (r.bilog) {
            const [k, z] = native.biReadLiveShared(r.bilog, fd, raw, r.unitOffsetBytes + got, r.bytes - got, r.fileOffset + got)
            n = k
            if (z) res.logged = (res.logged ?? 0) + z
          } else n = fs.readSync(fd, raw, r.unitOffsetBytes + got, r.bytes - got, r.fileOffset + got)
          if (n === 0) break
          got += n
        }
        res.bytesRead = got
      }
      if (r.first) {
        try {
          const x = native.getXattrs(path)
          res.xattrs = x.length ? x : null
        } catch {
          res.xattrs = null
        }
      }
      if (r.last && fd < 0) res.last = true
      else if (r.last) {
        const st = native.fstatRecord(fd)
        res.after = [st[native.S_SIZE]!, st[native.S_MTIME_SEC]!, st[native.S_MTIME_NSEC]!, st[native.S_CTIME_SEC]!, st[native.S_CTIME_NSEC]!]
      }
    } catch (err) {
      res.error = (err as NodeJS.ErrnoException).code ?? (err as Error).message
      res.errorAt ??= 'open'
    } finally {
      // (a quiet fd is not Node's: fs.closeSync would warn about it in a worker thread)
      if (fd >= 0) r.bilog ? native.close(fd) : fs.closeSync(fd)
    }
    raw.fill(0, r.unitOffsetBytes + res.bytesRead, r.unitOffsetBytes + padded)
    if (!res.error) delete res.errorAt
    results.push(res)
  }
  return results
}

async function compress(r: WorkerRequest): Promise<CompressReply> {
  const req = r as CompressRequest
  // The only await, and before this thread's shared buffers (compressOut, unitOut) are
  // touched: the pool may queue several units on one worker, and a compress that yielded
  // after filling unitOut would have it overwritten by the next before writing it.
  const store = stores.get(JSON.stringify(req.store)) ?? (await storeOf(req.store))
  const raw = Buffer.from(req.raw)
  const readResults = req.reads?.length ? readPlanned(raw, req.reads) : undefined
  const rawBlocks = req.rawBlocks
  const frameBlocks = req.frameBlocks
  let c = compressors.get(req.level)
  if (!c) compressors.set(req.level, (c = new FrameCompressor(req.level)))
  const frames = Math.ceil(rawBlocks / frameBlocks)
  const hashes = Buffer.allocUnsafe(rawBlocks * HASH_BYTES)
  const checks = Buffer.allocUnsafe(frames * HASH_BYTES)
  // One frame at a time through a small reused buffer into a result that grows as needed:
  // no worst-case 20 MiB buffer per worker.
  const frameNeed = FrameCompressor.bound(frameBlocks * BLOCK_BYTES)
  if (compressOut.length < frameNeed) compressOut = Buffer.allocUnsafe(frameNeed)
  let out = unitOut
  const frameSizes: number[] = []
  let pos = 0
  const k: ObjectKey | null = req.seal ? { aead: req.seal.aead, key: Buffer.from(req.seal.key.buffer, req.seal.key.byteOffset, req.seal.key.length) } : null
  const tag = k ? TAG_BYTES : 0
  for (let f = 0; f < frames; f++) {
    const b0 = f * frameBlocks
    const nb = Math.min(frameBlocks, rawBlocks - b0)
    hashBlocks(req.hashAlg, raw, b0 * BLOCK_BYTES, nb, hashes, b0 * HASH_BYTES, req.blockSeed)
    frameCheck(req.hashAlg, hashes.subarray(b0 * HASH_BYTES, (b0 + nb) * HASH_BYTES), req.blockSeed).copy(checks, f * HASH_BYTES)
    const z = c.compressInto(compressOut, raw.subarray(b0 * BLOCK_BYTES, (b0 + nb) * BLOCK_BYTES))
    const n = z + tag
    if (pos + n > out.length) {
      const grown = Buffer.allocUnsafe(Math.max(pos + n, Math.floor(out.length * 1.5)))
      out.copy(grown, 0, 0, pos)
      out = unitOut = grown
    }
    // encrypted: frame f is AEAD(unitKey, nonce(1, f), aad, zstd frame) ‖ tag (§2.9)
    if (k) sealInto(k, NONCE_TAG.unitFrame, f, aad.unitFrame(req.genId, req.unitIndex, 0, f, nb * BLOCK_BYTES), compressOut.subarray(0, z), out, pos)
    else compressOut.copy(out, pos, 0, n)
    frameSizes.push(n)
    pos += n
  }
  if (k) return sealedUnit(req, store, k, frames, frameSizes, checks, out.subarray(0, pos), hashes, readResults)
  const header = encodeUnitHeader({ genId: req.genId, unitIndex: req.unitIndex, rawBlocks, frameBlocks, frameCount: frames })
  const entries: SeekEntry[] = frameSizes.map((compBytes, f) => ({
    compBytes,
    rawBytes: Math.min(frameBlocks, rawBlocks - f * frameBlocks) * BLOCK_BYTES,
    check: checks.subarray(f * HASH_BYTES, (f + 1) * HASH_BYTES),
  }))
  const tail = encodeSeekTableAndTrailer(entries, UNIT_HEADER_BYTES + pos)
  // The worker writes the file itself: the compressed unit never crosses to the main
  // thread (no multi-MiB transfer per unit left for the main thread's GC to free).
  if (!store.sync) throw new Error(`${store.where('')}: the compress workers need a store with a synchronous face`)
  const fileBytes = store.sync.writeStagedSync(req.staged, [header, out.subarray(0, pos), tail])
  return { id: req.id, fileBytes, hashes: toAB(hashes), readResults }
}

/** An encrypted unit's file (v2, revision 0): header with the salt, the sealed frames, the sealed unit index, the trailer. */
function sealedUnit(req: CompressRequest, store: Store, k: ObjectKey, frames: number, frameSizes: number[], checks: Buffer, body: Buffer, hashes: Buffer, readResults: ReadResult[] | undefined): CompressReply {
  const flags = UNIT_FLAG_ENCRYPTED
  const header = encodeUnitHeaderV2({ flags, stream: req.genId, unitIndex: req.unitIndex, rawBlocks: req.rawBlocks, frameBlocks: req.frameBlocks, frameCount: frames, revision: 0, level: req.level, hashAlg: req.hashAlg, salt: Buffer.from(req.seal!.salt) })
  const seek = frameSizes.map((compBytes, f) => ({ compBytes, rawBytes: Math.min(req.frameBlocks, req.rawBlocks - f * req.frameBlocks) * BLOCK_BYTES, check: checks.subarray(f * HASH_BYTES, (f + 1) * HASH_BYTES) }))
  const index = seal(k, NONCE_TAG.unitIndex, 0, aad.unitIndex(req.genId, req.unitIndex, 0), encodeUnitIndex({ seek, dead: [] }, { rawBlocks: req.rawBlocks, frameCount: frames, flags }))
  const trailer = encodeUnitTrailer(UNIT_V2_HEADER_BYTES + body.length, frames, index, true)
  if (!store.sync) throw new Error(`${store.where('')}: the compress workers need a store with a synchronous face`)
  const fileBytes = store.sync.writeStagedSync(req.staged, [header, body, index, trailer])
  return { id: req.id, fileBytes, hashes: toAB(hashes), readResults }
}

/** This thread's stores, by description (opened on the first unit written to each). */
const stores = new Map<string, Store>()
async function storeOf(d: StoreDescription): Promise<Store> {
  const k = JSON.stringify(d)
  let s = stores.get(k)
  // a disk store without loading every tier's module into every compress worker (RSS)
  if (!s) stores.set(k, (s = d.kind === 'disk' ? (await import('../store/disk.js')).DiskStore.open(d.root) : (await import('../store/open.js')).openStore(d)))
  return s
}

function toAB(b: Buffer): ArrayBuffer {
  const ab = new ArrayBuffer(b.length)
  Buffer.from(ab).set(b)
  return ab
}

/*
 * The reading jobs' modules (the block reader, the stores, restore's file creation) load on
 * a thread's first such job: backup's compress workers never load them.
 */
const handlers: Record<string, Handler> = {
  compress,
  restoreFiles: async (req) => (await import('./restore-worker.js')).restoreFiles(req),
  scanUnit: async (req) => (await import('./verify-worker.js')).scanUnit(req),
  recompressUnit: async (req) => (await import('./v2/compact.js')).recompressUnit(req),
  /** Loads the reading jobs' modules now (a pool started ahead of its jobs: cli/v2.ts restoreV2). */
  preloadReaders: async (req) => {
    await Promise.all([import('./restore-worker.js'), import('../blocks/spec.js')])
    return { id: req.id }
  },
  /** Builds this thread's reader for a spec (sent to every worker before the jobs that name it). */
  readerSpec: async (req) => {
    ;(await import('../blocks/spec.js')).readerFromSpec(req.spec as ReaderSpec)
    return { id: req.id }
  },
  /** Closes this thread's reader for a spec (its units' descriptors belong to the process). */
  closeReader: async (req) => {
    await (await import('../blocks/spec.js')).closeSpecReader(req.specId as string)
    return { id: req.id }
  },
}

if (parentPort) {
  const port = parentPort
  port.on('message', async (req: WorkerRequest) => {
    try {
      const h = handlers[req.op]
      if (!h) throw new Error(`unknown op ${req.op}`)
      const reply = await h(req)
      const transfer: ArrayBuffer[] = []
      for (const k of ['hashes', 'data'] as const) {
        const v = reply[k]
        if (v instanceof ArrayBuffer) transfer.push(v)
      }
      port.postMessage(reply, transfer)
    } catch (err) {
      port.postMessage({ id: req.id, error: (err as Error).message, errorCode: (err as NodeJS.ErrnoException).code, errorSyscall: (err as NodeJS.ErrnoException).syscall })
    }
  })
}
