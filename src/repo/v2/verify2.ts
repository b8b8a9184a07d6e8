/**
 * `bfs verify` of format 2 generations: everything a generation's manifest reaches is read and
 * checked — every directory piece (DIR, DIRDELTA and its base, DIRINDEX) and map piece
 * (MAPINNER, MAPLEAF), each against its id (the piece digest), the links table, every map's
 * extents against the stream records of the runs they name — and then every unit those maps read
 * (a prune deletes the others) is read on worker threads: each frame decompressed, checked against its frame check,
 * and its blocks hashed and compared with the stream's stored block hashes (the hashes file,
 * itself checked against the stream record's sha256). One FAIL line per problem, as format 1's
 * verify (repo/verify.ts) prints them; the damage of a directory names genN:path.
 */
import { rethrowUnavailable } from '../../codec/zstd.js'
import os from 'node:os'
import { createHash } from 'node:crypto'
import { BLOCK_BYTES, HASH_BYTES, xxh64Seeded } from '../../codec/hash.js'
import { decodeConfigV2 } from '../../format/v2/config.js'
import { E_LINKED, FileType, type Entry2 } from '../../format/v2/dir.js'
import { type BiOverlayRow, TableKind } from '../../format/v2/idtable.js'
import { Bi2Kind, decodeBiList, decodeBiLogPage } from '../../format/v2/bilog.js'
import { keys2 } from '../../format/v2/layout.js'
import { tapeKeys } from '../tapecat.js'
import type { StreamRecord } from '../../format/v2/records.js'
import { IdTableReader } from '../../pieces/idtables.js'
import { BfsError } from '../errors.js'
import { WorkerPool } from '../pool.js'
import { WorkerReaders } from '../readers.js'
import type { VerifyOptions, VerifyResult } from '../verify.js'
import type { ScanUnitReply, ScanUnitRequest } from '../verify-worker.js'
import { GenReader2, StreamSource2 } from './read2.js'
import { dedupKeysOf, readDedupObject } from './dedup.js'
import { extentDataBlocks } from '../../format/v2/common.js'
import { type Repo2, payloadOf, tapeSealOf } from './repo2.js'
import { checkGroups } from '../groups.js'

/** A problem's text; an addon that cannot load is not damage: it ends the verify (exit 1, its own line). */
const msg = (err: unknown): string => {
  rethrowUnavailable(err)
  return (err as Error).message
}
const SLASH = Buffer.from('/')

/** Decoded pieces a verify keeps (a DIRDELTA's base is read once for all the deltas over it). */
const VERIFY_PIECE_CACHE = 16 << 20

export async function verifyGenerations2(repo: Repo2, ids: number[], print: (line: string) => void, opts: Pick<VerifyOptions, 'signal' | 'progress' | 'all'> = {}): Promise<VerifyResult> {
  let problems = 0
  const problem = (line: string): void => {
    problems++
    print(`FAIL ${line}`)
  }
  const check = (): void => {
    if (opts.signal?.aborted) throw new BfsError('INTERRUPTED', 'verify interrupted')
  }
  // the config and its copy: each must read (open() used whichever did)
  for (const key of [keys2.config, keys2.configCopy]) {
    const where = repo.store.where(key)
    try {
      repo.decodeConfig(repo.sync.getSync(key), where)
    } catch (err) {
      problem(`${msg(err)}${key === keys2.configCopy ? ` (repair: cp ${repo.store.where(keys2.config)} ${where})` : ''}`)
    }
  }
  // --all: every group file (format 1's objects and check, format.md §2.14.2)
  if (opts.all) for (const p of checkGroups(repo)) problem(p)

  /** Streams the generations' maps name: their records read (null: reported). */
  const streams = new Map<number, StreamRecord | null>()
  const streamOf = (s: number): StreamRecord | null => {
    if (streams.has(s)) return streams.get(s)!
    let rec: StreamRecord | null = null
    try {
      rec = repo.stream(s)
    } catch (err) {
      problem(`stream ${s} (run ${s}): ${msg(err)}`)
    }
    streams.set(s, rec)
    return rec
  }

  /** Per stream, the units the generations' maps read: only those must be there (prune deletes units nothing reads). */
  const usedUnits = new Map<number, Set<number>>()
  /** Per stream, a bit per block the generations read: none may lie in a unit's dead range (R2, §2.9). */
  const usedBlocks = new Map<number, Uint8Array>()
  const markUsed = (x: { stream: number; streamBlock: number; count: number }, rec: StreamRecord): void => {
    let bits = usedBlocks.get(x.stream)
    if (!bits) usedBlocks.set(x.stream, (bits = new Uint8Array(Math.ceil(rec.streamBlocks / 8))))
    const end = Math.min(x.streamBlock + x.count, rec.streamBlocks)
    for (let b = x.streamBlock; b < end; b++) bits[b >> 3]! |= 1 << (b & 7)
  }

  for (const id of ids) {
    check()
    let man
    try {
      man = repo.manifest(id)
    } catch (err) {
      if (!(err instanceof BfsError)) throw err
      problem(err.code === 'NO_SUCH_GEN' ? `gen${id} does not exist` : `gen${id} is damaged: ${err.message}`)
      continue
    }
    const r = new GenReader2(repo, man, VERIFY_PIECE_CACHE)
    // this run's own stream: its record says as many blocks as the manifest
    if (man.stream) {
      const rec = streamOf(man.run)
      if (rec && rec.streamBlocks !== man.stream.blocks) problem(`gen${id}: the manifest says its stream has ${man.stream.blocks} blocks, its stream record ${rec.streamBlocks}`)
    }
    /** Identities of the hard-linked files met, and a path of each (for the message). */
    const linked = new Map<string, string>()
    const pathStr = (p: Buffer): string => p.toString()
    // breadth first, one directory at a time
    const dirs: Array<{ e: Entry2; path: Buffer }> = [{ e: man.rootEntry, path: Buffer.alloc(0) }]
    for (let d = 0; d < dirs.length; d++) {
      check()
      const { e: dir, path: dp } = dirs[d]!
      dirs[d] = undefined as never
      try {
        for await (const page of r.pages(dir, pathStr(dp))) {
          for (const c of page) {
            const cp = (): Buffer => (dp.length ? Buffer.concat([dp, SLASH, c.name]) : c.name)
            if (c.type === FileType.Dir) {
              if (c.dir) dirs.push({ e: c, path: cp() })
              continue
            }
            if (c.type !== FileType.File) continue
            if (c.flags & E_LINKED) linked.set(`${c.srcDev}:${c.srcInoHi}:${c.srcInoLo}`, pathStr(cp()))
            if (!c.map && !man.biIndex) continue // (no map: a BI overlay may still hold data, §2.16)
            try {
              const ext = await r.maps.extents(c)
              const past = new Set<number>()
              for (const x of ext) {
                const rec = streamOf(x.stream)
                if (rec) {
                  // the units this extent reads (a prune deletes the others: §2.20.7)
                  let set = usedUnits.get(x.stream)
                  if (!set) usedUnits.set(x.stream, (set = new Set()))
                  const last = Math.min(x.streamBlock + x.count, rec.streamBlocks) - 1
                  for (let u = Math.floor(x.streamBlock / rec.unitBlocks); u <= Math.floor(last / rec.unitBlocks); u++) set.add(u)
                  markUsed(x, rec)
                }
                if (rec && x.streamBlock + x.count > rec.streamBlocks && !past.has(x.stream)) {
                  past.add(x.stream)
                  problem(`gen${id}:${pathStr(cp())}: the map refers past the end of stream ${x.stream} (${rec.streamBlocks} blocks)`)
                }
              }
            } catch (err) {
              problem(msg(r.damageOf(err, pathStr(cp()))))
            }
          }
        }
      } catch (err) {
        // r.pages names genN:path itself
        if (!(err instanceof BfsError)) throw err
        problem(err.message)
      }
    }
    // the links table: every row reads, every hard-linked file has one
    if (man.links || linked.size) {
      try {
        const rows = new IdTableReader(r.pieces, TableKind.Links)
        for await (const row of rows.rows(man.links)) linked.delete(`${row.srcDev}:${row.srcInoHi}:${row.srcInoLo}`)
        for (const p of linked.values()) problem(`gen${id}:${p}: hard-linked, and the links table has no row for it`)
      } catch (err) {
        problem(`gen${id}: links table: ${msg(err)}`)
      }
    }
    // the BI log and index (§2.16): every BILOG page decodes, each image reads back (through
    // its extents) to its check; every BI index row reads, its overlay inside its stream
    const used = (x: { stream: number; streamBlock: number; count: number }, what: string): void => {
      const rec = streamOf(x.stream)
      if (!rec) return
      if (x.streamBlock + x.count > rec.streamBlocks) return problem(`gen${id}: ${what} refers past the end of stream ${x.stream} (${rec.streamBlocks} blocks)`)
      let set = usedUnits.get(x.stream)
      if (!set) usedUnits.set(x.stream, (set = new Set()))
      for (let u = Math.floor(x.streamBlock / rec.unitBlocks); u <= Math.floor((x.streamBlock + x.count - 1) / rec.unitBlocks); u++) set.add(u)
      markUsed(x, rec)
    }
    if (man.biLog) {
      try {
        const list = decodeBiList(await r.pieces.payload(man.biLog), r.pieces.where(man.biLog))
        let records = 0
        let last = 0
        for (const page of list.pages) {
          check()
          const p = decodeBiLogPage(await r.pieces.payload(page), r.pieces.where(page))
          if (p.firstSeq <= last) problem(`gen${id}: ${r.pieces.where(page)}: BI log records out of order`)
          last = p.records[p.records.length - 1]!.seq
          records += p.records.length
          for (const rec of p.records) {
            if (rec.kind !== Bi2Kind.image) continue
            for (const x of rec.data) if (x.stream !== 0) used(x, `BI log record ${rec.seq}`)
            const first = rec.offset / BLOCK_BYTES
            const bytes = await r.readExtents(rec.data.map((x) => ({ ...x, fileBlock: x.fileBlock - first })), rec.length)
            if (xxh64Seeded(bytes, repo.blockSeed) !== rec.check.readBigUInt64LE()) problem(`gen${id}: BI log record ${rec.seq}: the image does not match its check`)
          }
        }
        if (records !== list.totalRecords) problem(`gen${id}: ${r.pieces.where(man.biLog)}: BILIST says ${list.totalRecords} records, its pages hold ${records}`)
      } catch (err) {
        problem(`gen${id}: BI log: ${msg(err)}`)
      }
    }
    if (man.biIndex) {
      try {
        for await (const row of new IdTableReader(r.pieces, TableKind.BiOverlay).rows(man.biIndex)) {
          check()
          for (const x of await r.maps.overlayOf(row as BiOverlayRow)) if (x.stream !== 0) used(x, 'a BI overlay')
        }
      } catch (err) {
        problem(`gen${id}: BI index: ${msg(err)}`)
      }
    }
    await r.close()
    // the dedup objects this backup wrote (§2.17): each decodes whole, its entries name this
    // generation and, when inline, blocks of streams that exist
    if (man.run === id) {
      for (const key of dedupKeysOf(repo, id)) {
        check()
        try {
          for (const e of readDedupObject(repo, key)) {
            if (e.gen !== id) throw new Error(`an entry names gen${e.gen}`)
            if (e.map.kind === 'inline') {
              if (extentDataBlocks(e.map.extents) !== e.dataBlocks) throw new Error(`an entry has ${e.dataBlocks} data blocks, its map ${extentDataBlocks(e.map.extents)}`)
              for (const x of e.map.extents) {
                const rec = x.stream <= id ? streamOf(x.stream) : null
                if (!rec || x.streamBlock + x.count > rec.streamBlocks) throw new Error(`an entry refers to blocks ${x.streamBlock}+${x.count} of stream ${x.stream}, which it does not have`)
              }
            } else if (e.map.root.run > id) throw new Error(`an entry's map is a piece of run ${e.map.root.run}`)
          }
        } catch (err) {
          problem(`${repo.store.where(key)}: ${msg(err)}`)
        }
      }
    }
  }

  // The streams' hashes files, then every unit of them on the workers.
  const todo: Array<{ rec: StreamRecord; hashes: Buffer | null }> = []
  for (const [s, rec] of [...streams].sort((a, b) => a[0] - b[0])) {
    if (!rec) continue
    const key = keys2.hashes(s)
    const where = repo.store.where(key)
    let hashes: Buffer | null = null
    try {
      const file = repo.sync.getSync(key)
      if (file.length !== rec.hashes.bytes) throw new Error(`${file.length} bytes, the stream record says ${rec.hashes.bytes}`)
      hashes = repo.unsealHashes(s, file)
      if (hashes.length !== rec.streamBlocks * HASH_BYTES) throw new Error(`${hashes.length / HASH_BYTES} hashes for ${rec.streamBlocks} blocks`)
      if (rec.hashes.sha256 !== null && createHash('sha256').update(hashes).digest('hex') !== rec.hashes.sha256) throw new Error("does not match the stream record's sha256")
    } catch (err) {
      problem(`${where}: ${msg(err)}`)
      hashes = null
    }
    todo.push({ rec, hashes })
  }
  // units on tape and no longer on disk are not read back here (their catalog entries hold their SHA-256; format.md §2.18)
  const onTape = tapeKeys(repo.store, tapeSealOf(repo))
  if (onTape.size) {
    for (const [s, us] of usedUnits) for (const u of [...us]) if (onTape.has(keys2.unit(s, u)) && !repo.sync.hasSync(keys2.unit(s, u))) us.delete(u)
  }
  const pool = new WorkerPool(os.availableParallelism())
  const source = new StreamSource2(repo)
  const readers = new WorkerReaders({ dir: repo.dir, store: repo.store, hashAlg: repo.config.hashAlg, blockSeed: repo.blockSeed, geometry: (s) => source.geometry(s), sealing: repo.unitSealing }, pool)
  let units = 0
  let frames = 0
  let rawBytes = 0
  try {
    let totalUnits = 0
    let totalBytes = 0
    for (const t of todo) {
      readers.add(t.rec.stream)
      for (const u of usedUnits.get(t.rec.stream) ?? []) {
        totalUnits++
        totalBytes += (Math.min(t.rec.streamBlocks, (u + 1) * t.rec.unitBlocks) - u * t.rec.unitBlocks) * BLOCK_BYTES
      }
    }
    let unitsSeen = 0
    let bytesSeen = 0
    opts.progress?.({ units: 0, totalUnits, bytes: 0, totalBytes, path: '' })
    if (totalUnits) await readers.start()
    const tasks = new Set<Promise<void>>()
    for (const { rec, hashes } of todo) {
      for (const u of [...(usedUnits.get(rec.stream) ?? [])].sort((a, b) => a - b)) {
        check()
        const where = repo.store.where(keys2.unit(rec.stream, u))
        const first = u * rec.unitBlocks
        const last = Math.min(rec.streamBlocks, first + rec.unitBlocks)
        const req: Omit<ScanUnitRequest, 'id'> = {
          op: 'scanUnit', specId: readers.spec.id, gen: rec.stream, unit: u,
          ...(hashes ? { hashes: Uint8Array.from(hashes.subarray(first * HASH_BYTES, last * HASH_BYTES)) } : {}),
        }
        const task: Promise<void> = pool
          .run<ScanUnitReply>(req)
          .then((x) => {
            if (!x.scan) return problem(x.missing ? `${where}: missing` : x.failed!)
            units++
            frames += x.scan.frames
            rawBytes += x.scan.rawBytes
            if (x.scan.rawBytes !== (last - first) * BLOCK_BYTES) problem(`${where}: holds ${x.scan.rawBytes / BLOCK_BYTES} blocks, the stream record says ${last - first}`)
            for (const b of x.scan.bad) problem(`${where}: frame ${b.frame}: ${b.reason}`)
            // a block a generation reads must not be one a prune zeroed
            const bits = usedBlocks.get(rec.stream)
            for (const r of x.scan.dead ?? []) {
              for (let b = first + r.start; b < first + r.start + r.blocks; b++) {
                if (bits && bits[b >> 3]! & (1 << (b & 7))) {
                  problem(`${where}: stream block ${b} is in the unit's dead ranges (zeroed by a prune), and a generation refers to it`)
                  break
                }
              }
            }
          }, (err) => problem(`${where}: ${msg(err)}`))
          .finally(() => {
            tasks.delete(task)
            unitsSeen++
            bytesSeen += (last - first) * BLOCK_BYTES
            opts.progress?.({ units: unitsSeen, totalUnits, bytes: bytesSeen, totalBytes, path: where })
          })
        tasks.add(task)
        if (tasks.size >= pool.size * 2) await Promise.race(tasks)
      }
    }
    await Promise.all(tasks)
  } finally {
    await readers.close()
    await pool.close()
  }
  return { problems, units, frames, rawBytes }
}
