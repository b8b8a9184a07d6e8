/**
 * `bfs backup --volume` on a format 2 repository (native-notes/format.md §2.14.1): an image
 * file (or a block device) as a volume generation — a synthetic root directory holding one
 * regular file named after the source, whose map covers the volume's block space. The data
 * goes through the run's stream as a file backup's does (storeObject: all-zero blocks are
 * holes, a full read keeps the stream in phase with the image, an incremental stores only the
 * blocks whose hash differs from the previous generation's), and the map is written by the
 * file backup's MapWriter, which reuses every map piece of the previous map that comes out
 * equal: a changed region of a large image rewrites only the touched leaves and their
 * ancestors. The root's one-entry DIR piece is reused as it is when the image is unchanged.
 * An image whose identity, size, mtime and ctime are the previous generation's is not read.
 *
 * `--online` (issue 14, §2.16): format 1's capture around the read (repo/volume.ts and
 * repo/online.ts: the image at T0, read through the capture with the blocks changed since T0
 * as zeros), its records ingested as a tree backup's are (online2.ts: the before-images in
 * the run's stream, BILOG/BILIST, a BI index row for the image's identity).
 */
import os from 'node:os'
import path from 'node:path'
import * as native from '../../native/index.js'
import type { Extent } from '../../format/v2/common.js'
import { type Entry2, E_CHANGED_WHILE_READ, E_SYNTHETIC, FileType, newEntry2 } from '../../format/v2/dir.js'
import type { ManifestV2 } from '../../format/v2/records.js'
import { FormatError } from '../../format/errors.js'
import { MAX_DELTA_DEPTH } from '../../format/maps.js'
import { MapReader, MapWriter } from '../../pieces/maps.js'
import { isPieceFailure } from '../../pieces/reader.js'
import { TreeReader } from '../../pieces/tree-reader.js'
import { TreeWriter } from '../../pieces/tree-writer.js'
import { type CommitOptions, type StreamSettings, streamGeometry } from '../commit/index.js'
import { type Commit2Options, type Commit2Result, type Generation2Context, writeGeneration2 } from '../commit/generation2.js'
import { changedWhileRead, fillMeta, sameVersion, type BackupProgress } from '../backup.js'
import { mountState } from '../device.js'
import { BfsError } from '../errors.js'
import type { BaseObject } from '../objects.js'
import { freezeTargets, imageAtT0, openVolumeSource, refuseOnlineDevice, sourceMounts, storeVolume } from '../volume.js'
import type { MountEntry } from '../../os/mountinfo.js'
import { type Online2Options, foldOverlay, withCapture2 } from './online2.js'
import { StreamSource2 } from './read2.js'
import type { Repo2 } from './repo2.js'

export interface Volume2Options extends Commit2Options, StreamSettings, Online2Options {
  source: string
  reporter?: CommitOptions['reporter'] & { progress?(p: BackupProgress): void }
  /** Read the whole volume, with no previous generation. */
  full?: boolean
  /** `--base`: the generation to take the difference against (default: the newest volume generation of this source and host). */
  baseId?: number
  /** `--freeze`: the filesystems mounted from the device frozen (FIFREEZE) while it is read (format 1's readSource and watchdog). */
  freeze?: boolean
  /** `--freeze-timeout`: thaw after this many seconds whatever happens (default 600). */
  freezeTimeoutS?: number
}

/** The image's one entry in a volume generation's root directory (format 1's name: the image's basename, or `<device>.img`). */
export function volumeEntryName(source: string, isDev: boolean): Buffer {
  return Buffer.from(isDev ? `${path.basename(source)}.img` : path.basename(source))
}

/** Backs up an image file or a block device as a format 2 volume generation, block-incremental to the newest volume generation of the same source and host. */
export async function backupVolume2(repo: Repo2, opts: Volume2Options): Promise<Commit2Result & { mountPoints: string[] }> {
  const source = path.resolve(opts.source)
  const { fd, st: st1, isDev, sizeOf } = openVolumeSource(source)
  try {
    if (opts.online) refuseOnlineDevice(source, isDev)
    const size = sizeOf()
    const reporter = opts.reporter ?? { warn: () => undefined }
    const mounts = sourceMounts(st1, isDev)
    // --freeze: what to freeze, or format 1's one-line refusal (before the run is claimed)
    const toFreeze = opts.freeze ? freezeTargets(source, isDev, mounts, repo.store.localRoots()) : []
    const { unitBlocks, frameBlocks } = streamGeometry(opts, 'volume')
    const host = opts.host ?? os.hostname()
    const res = await writeGeneration2(repo, opts, {
      source,
      kind: 'volume',
      consistency: opts.freeze ? 'frozen' : mountState(mounts),
      unitBlocks,
      frameBlocks,
      level: opts.level,
      choosePrev: (r) => {
        if (opts.full) return null
        if (opts.baseId !== undefined) return r.manifest(opts.baseId) // (gone or damaged since it was named: the backup stops)
        for (const id of r.generationIds().reverse()) {
          try {
            const m = r.manifest(id)
            if (m.kind === 'volume' && m.sources.length === 1 && m.sources[0]!.path === source && m.host === host) return m
          } catch (err) {
            if (!(err instanceof BfsError) || err.code !== 'CORRUPT') throw err
            reporter.warn(`gen${id} cannot be the base of this backup: ${err.message}`)
          }
        }
        return null
      },
      build: (ctx) => buildVolume(repo, ctx, { source, fd, st1, isDev, size, sizeOf, mounts, toFreeze, opts, reporter }),
    })
    return { ...res, mountPoints: mounts.map((m) => m.point) }
  } finally {
    native.close(fd)
  }
}

interface VolumeSource {
  source: string
  fd: number
  st1: Float64Array
  isDev: boolean
  size: number
  sizeOf(): number
  /** The filesystems mounted from the source (or from loop devices over the image). */
  mounts: MountEntry[]
  /** --freeze: the mounts to freeze while the device is read (none without). */
  toFreeze: MountEntry[]
  opts: Volume2Options
  reporter: { warn(m: string): void; progress?(p: BackupProgress): void }
}

async function buildVolume(repo: Repo2, ctx: Generation2Context, v: VolumeSource) {
  const { source, fd, st1, isDev, toFreeze, opts, reporter } = v
  const warnings: string[] = []
  const warn = (m: string): void => {
    warnings.push(m)
    reporter.warn(m)
  }
  const tree = new TreeWriter(ctx.packs, ctx.pieces, { xxh64: repo.pageCut })
  const maps = new MapWriter(ctx.packs, ctx.pieces)
  // the previous image as it was at its T0 (its BI overlay laid over its map: §2.16)
  const mapReader = new MapReader(ctx.pieces, ctx.prev?.biIndex ?? null)
  const name = volumeEntryName(source, isDev)

  const root = newEntry2(FileType.Dir, Buffer.alloc(0))
  root.flags = E_SYNTHETIC
  root.mode = 0o755
  root.atimeSec = root.mtimeSec = root.ctimeSec = Math.floor(Date.now() / 1000)
  root.ord = 0
  root.nlink = 2

  const img = newEntry2(FileType.File, name)
  fillMeta(img, st1, 0)
  img.ord = 1
  img.nlink = 1 // (format 1's: the image is the generation's only file; no links table)
  img.size = v.size

  const stats = { entries: 2, files: 1, dirs: 1, logicalBytes: v.size, newFiles: 0, changedFiles: 0, unchangedFiles: 0, skipped: 0, bytesRead: 0, changedDirs: 0 }
  // the previous generation's image entry (§2.20.10: a root piece that does not read makes this a full read)
  const prevDir = ctx.prev?.rootEntry.dir ?? null
  let prevImg: Entry2 | null = null
  if (prevDir) {
    try {
      const e = await new TreeReader(ctx.pieces).lookup(prevDir, name)
      if (e?.type === FileType.File) prevImg = e
    } catch (err) {
      if (!isPieceFailure(err) && !(err instanceof FormatError)) throw err
      warn(`gen${ctx.prev!.id} cannot be the base of this backup: its root directory does not read (${(err as Error).message}); the volume is read in full`)
    }
  }
  // --online: T0 is set here, under the lock; the image is taken as it was then
  const { captured } = await withCapture2(repo, opts, source, warn, ctx, maps, async (online) => {
    const cap = online?.active ? online : null
    if (cap && imageAtT0(cap, fd, img, name.toString(), v.mounts)) img.flags |= E_CHANGED_WHILE_READ
    const size = img.size
    stats.logicalBytes = size
    if (prevImg && prevImg.size > size) warn(`${source} shrank from ${prevImg.size} to ${size} bytes since gen${ctx.prev!.id}`)
    // an image whose identity, size, mtime and ctime are the previous generation's is not
    // read (its BI overlay there, if any, folded into its map: this generation has none for it)
    const kept = !isDev && prevImg && sameVersion(prevImg, img) && !(prevImg.flags & E_CHANGED_WHILE_READ) ? await foldOverlay(mapReader, maps, prevImg) : null
    if (kept) {
      img.map = kept.map
      img.dataBlocks = kept.dataBlocks
      img.xattrs = kept.xattrs
      stats.unchangedFiles = 1
      cap?.keep(img.srcDev, img.srcInoHi, img.srcInoLo) // (never read: its writes need no images)
      return
    }
    const base = prevImg?.map ? await baseOf(repo, mapReader, prevImg, warn) : null
    const { stored, logged } = await storeVolume({ fd, st: st1, isDev, sizeOf: v.sizeOf }, source, size, ctx.stream, base, cap, toFreeze, opts, reporter.progress)
    stats.bytesRead = stored.bytesRead
    if (cap) {
      // (what was read is the image at T0, whatever its size and times are now)
      if (stored.short) throw new BfsError('IO', `${source}: short read at T0; nothing was committed`)
      if (logged) cap.noteStored(img.srcDev, img.srcInoHi, img.srcInoLo, 0)
    } else {
      const after = v.sizeOf()
      if (after !== size || stored.short) throw new BfsError('BAD_INPUT', `the size of ${source} changed during the backup (${size} → ${after} bytes); nothing was committed`)
      if (!isDev && changedWhileRead(st1, native.fstatRecord(fd), false)) {
        img.flags |= E_CHANGED_WHILE_READ
        warn(`${source} changed while it was read; its copy may be inconsistent (it will be read again next time)`)
      }
    }
    if (prevImg) stats.changedFiles = 1
    else stats.newFiles = 1
    // nothing differs from the previous image: its map stays — unless the previous generation
    // has a BI index: the base was its overlaid (T0) content, which its map alone does not hold
    if (stored.sameAsBase && prevImg && !ctx.prev?.biIndex) {
      img.map = prevImg.map
      img.dataBlocks = prevImg.dataBlocks
    } else {
      const extents: Extent[] = stored.object.extents.filter((x) => x.gen !== 0).map((x) => ({ fileBlock: x.fileBlock, count: x.count, stream: x.gen, streamBlock: x.streamBlock }))
      const m = await maps.write(extents, size, prevImg)
      img.map = m.map
      img.dataBlocks = m.dataBlocks
    }
  })
  if (maps.unreadable.count) warn(`${maps.unreadable.count} map piece${maps.unreadable.count > 1 ? 's' : ''} of the previous generation could not be read and ${maps.unreadable.count > 1 ? 'were' : 'was'} written afresh (${maps.unreadable.messages[0] ?? ''})`)
  const { stats: biStats, ...bi } = captured
  root.dir = await tree.writeDir([img], prevDir)
  if (!stats.unchangedFiles) stats.changedDirs = 1
  await ctx.packs.settle()
  return {
    rootEntry: root, links: null, nextOrd: 2,
    stats: { ...stats, ...tree.stats, mapPieces: maps.stats.written, mapPiecesReused: maps.stats.reused, ...biStats },
    warnings, skippedPaths: [],
    ...bi,
  }
}

/**
 * The previous image as the base of the block-incremental: its resolved extents and the
 * block hashes of the streams they name (whole hashes files, read once each). Null (read and
 * stored in full, with a warning) when its map or a hashes file does not read (§2.20.10).
 */
async function baseOf(repo: Repo2, mapReader: MapReader, old: Entry2, warn: (m: string) => void): Promise<BaseObject | null> {
  const hashes = new Map<number, Buffer>()
  const streams = new StreamSource2(repo)
  try {
    const ext = await mapReader.extents(old)
    for (const x of ext) if (!hashes.has(x.stream)) hashes.set(x.stream, streams.blockHashes(x.stream))
    return {
      // (depth at the limit: storeObject returns the whole resolved map; format 2 maps are never deltas, §2.13.1)
      gen: 0, index: 0, depth: MAX_DELTA_DEPTH, sizeBytes: old.size, hashAlg: repo.config.hashAlg, blockSeed: repo.blockSeed,
      extents: ext.map((x) => ({ fileBlock: x.fileBlock, count: x.count, gen: x.stream, streamBlock: x.streamBlock })),
      hashesOf: (g) => hashes.get(g)!,
    }
  } catch (err) {
    if (!isPieceFailure(err) && !(err instanceof BfsError && err.code === 'CORRUPT') && !(err instanceof FormatError)) throw err
    warn(`the previous generation's map or block hashes of the volume could not be read: it was read and stored in full (${(err as Error).message})`)
    return null
  }
}
