/**
 * `bfs backup --online` on a format 2 repository (issue 14, native-notes/format.md §2.16):
 * the ingestion of the capture file (BFSBILG, §2.16.1) before the commit. The capture itself
 * (T0, the reads with the blocks changed since T0 as zeros, the files not covered) is format
 * 1's (repo/online.ts); what differs is where its records go:
 *
 * 1. the before-images of the files this run stored are appended to the run's own stream
 *    (all-zero blocks are stream 0 extents, nothing stored), in file order;
 * 2. the records, in interception order, become BILOG pages listed by one BILIST (the
 *    manifest's `biLog`);
 * 3. per file identity, the images' data extents become a row of the BI index, an identity
 *    table of kind 2 (the manifest's `biIndex`), which every reader lays over the file's map
 *    (pieces/maps.ts, MapReader.extents).
 */
import { BLOCK_BYTES, pageCutHash } from '../../codec/hash.js'
import { BiKind } from '../../format/bilog.js'
import { type Bi2Record, BILOG_PAGE_BYTES, Bi2Kind, encodeBiList, encodeBiLogPage } from '../../format/v2/bilog.js'
import { type Extent, type Identity, type PieceRef, compareIdentity } from '../../format/v2/common.js'
import { type BiOverlayRow, TableKind } from '../../format/v2/idtable.js'
import type { Entry2 } from '../../format/v2/dir.js'
import { FormatError } from '../../format/errors.js'
import type { ManifestOnline } from '../../format/manifest.js'
import { IdTableWriter } from '../../pieces/idtables.js'
import type { MapReader, MapWriter } from '../../pieces/maps.js'
import type { PackWriter } from '../../pieces/packs.js'
import { type PieceReader, isPieceFailure } from '../../pieces/reader.js'
import type { StreamWriter } from '../commit/index.js'
import type { Generation2Context } from '../commit/generation2.js'
import { BfsError } from '../errors.js'
import { OnlineCapture, putImage } from '../online.js'
import { enableFeature } from './features.js'
import type { Repo2 } from './repo2.js'

export interface Ingested2 {
  /** The BILIST (manifest `biLog`) and the BI index (manifest `biIndex`); null when nothing was logged for the files stored. */
  biLog: PieceRef | null
  biIndex: PieceRef | null
  /** Records kept, and 4 KiB blocks of images kept. */
  records: number
  blocks: number
}

/** Rough bytes of a record in a BILOG page (for cutting pages well under the 1 MiB limit). */
const recordBytes = (r: Bi2Record): number => 80 + r.data.length * 12

/**
 * After `cap.stop()`, before the stream is finished: the capture's records of the files
 * noted stored into the run's stream, its packs (BILOG, BILIST) and its BI index. Removes the
 * capture file.
 */
export async function ingest2(cap: OnlineCapture, stream: StreamWriter, packs: PackWriter, pieces: PieceReader, maps: MapWriter, seed: bigint): Promise<Ingested2> {
  // the records' checks and the BI index's page cuts with the repository's seed (§2.22)
  const xxh64 = pageCutHash(seed)
  const none: Ingested2 = { biLog: null, biIndex: null, records: 0, blocks: 0 }
  const out = await cap.ingestRecords(async (kept) => {
    const records: Bi2Record[] = []
    const images: Array<{ rec: Bi2Record; data: Buffer; object: number }> = []
    let blocks = 0
    for (const { r, object } of kept) {
      const ino = r.ino
      const rec: Bi2Record = {
        seq: Number(r.seq),
        kind: r.kind === BiKind.image ? Bi2Kind.image : r.kind === BiKind.truncate ? Bi2Kind.truncate : Bi2Kind.uncovered,
        srcDev: Number(r.dev), srcInoHi: Number(ino >> 32n), srcInoLo: Number(ino & 0xffffffffn), igen: r.igen,
        offset: Number(r.offset), length: r.kind === BiKind.image ? r.data.length : 0, oldSize: Number(r.t0Size),
        mtimeSec: Number(r.mtimeSec), mtimeNsec: r.mtimeNsec, ctimeSec: Number(r.ctimeSec), ctimeNsec: r.ctimeNsec,
        check: Buffer.alloc(8), data: [], reason: r.kind === BiKind.uncovered ? r.cause : 0,
      }
      rec.check.writeBigUInt64LE(xxh64(r.kind === BiKind.image ? r.data : Buffer.alloc(0)))
      if (r.kind === BiKind.image) {
        images.push({ rec, data: r.data, object })
        blocks += Math.ceil(r.data.length / BLOCK_BYTES)
      }
      records.push(rec)
    }
    if (!records.length) return none
    // the images in file order (the order the files were stored, then offset): a reader of a
    // file finds its images together, in the order it reads them
    images.sort((a, b) => a.object - b.object || a.rec.offset - b.rec.offset)
    for (const { rec, data } of images) {
      const x = await putImage(stream, stream.genId, data, rec.offset / BLOCK_BYTES)
      rec.data = x.map((e) => ({ fileBlock: e.fileBlock, count: e.count, stream: e.gen, streamBlock: e.gen === 0 ? 0 : e.streamBlock }))
    }
    // (2) BILOG pages, then the BILIST naming them (R1: children before their parent)
    const pages: PieceRef[] = []
    let page: Bi2Record[] = []
    let bytes = 0
    const cut = (): void => {
      pages.push(packs.add(encodeBiLogPage({ firstSeq: page[0]!.seq, records: page })))
      page = []
      bytes = 0
    }
    for (const rec of records) {
      page.push(rec)
      bytes += recordBytes(rec)
      if (bytes >= BILOG_PAGE_BYTES) cut()
    }
    if (page.length) cut()
    const biLog = packs.add(encodeBiList({ pages, totalRecords: records.length }))
    await packs.settle()
    // (3) the BI index: per identity, the data extents of its images (an all-zero image needs
    // none: the block is a hole in the map already, read as zeros when bfs stored the file)
    const byId = new Map<string, { id: Identity; first: Bi2Record; extents: Extent[] }>()
    for (const rec of records) {
      const key = `${rec.srcDev}:${rec.srcInoHi}:${rec.srcInoLo}`
      let f = byId.get(key)
      if (!f) byId.set(key, (f = { id: { srcDev: rec.srcDev, srcInoHi: rec.srcInoHi, srcInoLo: rec.srcInoLo }, first: rec, extents: [] }))
      for (const x of rec.data) if (x.stream !== 0) f.extents.push(x)
    }
    const table = new IdTableWriter(packs, pieces, TableKind.BiOverlay, null, xxh64)
    for (const f of [...byId.values()].sort((a, b) => compareIdentity(a.id, b.id))) {
      const r = f.first
      f.extents.sort((a, b) => a.fileBlock - b.fileBlock)
      // inline when an entry's map would be (≤ 4 extents in ≤ 48 bytes), else a map tree over the T0 size
      const m = f.extents.length ? await maps.write(f.extents, r.oldSize) : null
      const overlay: BiOverlayRow['overlay'] = !m?.map ? null : m.map.kind === 'inline' ? { kind: 'inline', extents: m.map.extents } : { kind: 'ref', root: m.map.root }
      await table.add({ ...f.id, igen: r.igen, t0Size: r.oldSize, t0MtimeSec: r.mtimeSec, t0MtimeNsec: r.mtimeNsec, t0CtimeSec: r.ctimeSec, t0CtimeNsec: r.ctimeNsec, flags: 0, overlay })
    }
    const t = await table.close()
    return { biLog, biIndex: t?.ref ?? null, records: records.length, blocks }
  })
  return out ?? none
}

/** `--online` as a format 2 backup takes it (tree and volume alike). */
export interface Online2Options {
  online?: 'on' | 'auto'
  /** Created once T0 is set. */
  t0File?: string
  /** bfs's threads this much lower (nice) while the capture is on. */
  onlineNice?: number
}

/** What a format 2 run's build adds to its body and stats with `--online` (nothing without). */
export interface Captured2 {
  online?: ManifestOnline
  biLog?: PieceRef | null
  biIndex?: PieceRef | null
  /** For the manifest's stats: `biRecords`. */
  stats: { biRecords?: number }
}

/**
 * A format 2 run's reads with the capture around them (tree and volume backups): T0 is set
 * on the filesystem holding `watch` before `read` starts (`read` gets the capture, or null
 * without `--online`); after it, the capture stops (writers stop paying) and its records of
 * the files noted stored go into the run's stream, packs and BI index (ingest2). On any
 * failure the capture is aborted: writers released, its file removed.
 */
export async function withCapture2<T>(repo: Repo2, opts: Online2Options, watch: string, warn: (m: string) => void, ctx: Generation2Context, maps: MapWriter, read: (cap: OnlineCapture | null) => Promise<T>): Promise<{ out: T; captured: Captured2 }> {
  let cap: OnlineCapture | null = null
  try {
    if (opts.online) {
      // first the repository's `bilog` feature (§2.7): a bfs without the overlays must not read
      // the generation this run may write (set even if the run then falls back to offline)
      await enableFeature(repo, 'bilog', 'backup --online', { onWait: warn })
      cap = OnlineCapture.start(watch, opts.online, opts.t0File, warn, opts.onlineNice)
    }
    const out = await read(cap)
    if (!cap) return { out, captured: { stats: {} } }
    cap.stop()
    const bi = await ingest2(cap, ctx.stream, ctx.packs, ctx.pieces, maps, repo.blockSeed)
    cap.report.biRecords = bi.records
    cap.report.biBlocks = bi.blocks
    return { out, captured: { online: cap.report, biLog: bi.biLog, biIndex: bi.biIndex, stats: { biRecords: bi.records } } }
  } catch (err) {
    cap?.abort()
    throw err
  }
}

/**
 * An unchanged file of a previous generation with a BI index (§2.16), kept by this run: the
 * previous entry, or, when its identity has an overlay there, a copy whose map is the overlay
 * folded in (this generation has no overlay for it: the file was not read). `mapReader` reads
 * the previous generation (its `biIndex`). Null when the index or the map cannot be read
 * (§2.20.10: the caller reads the file again, and stores it whole).
 */
export async function foldOverlay(mapReader: MapReader, maps: MapWriter, old: Entry2): Promise<Entry2 | null> {
  if (!mapReader.biIndex) return old
  try {
    const row = await mapReader.overlayRow(old)
    if (!row?.overlay) return old
    const m = await maps.write(await mapReader.extents(old), old.size, old)
    return { ...old, map: m.map, dataBlocks: m.dataBlocks }
  } catch (err) {
    if (!isPieceFailure(err) && !(err instanceof FormatError) && !(err instanceof BfsError && err.code === 'CORRUPT')) throw err
    return null
  }
}
