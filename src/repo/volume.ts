import fs from 'node:fs'
import path from 'node:path'
import * as native from '../native/index.js'
import { PageCacheGuard } from './cache-guard.js'
import { EntryType, newEntry, type Entry } from '../format/catalog.js'
import type { Manifest } from '../format/manifest.js'
import type { Repository } from './repository.js'
import { BfsError } from './errors.js'
import { ObjectResolver } from './resolve.js'
import { type BaseObject, type StoredObject, storeObject } from './objects.js'
import { openSource } from './source.js'
import { SafeRefs, type BackupOptions, type BackupProgress, type BackupResult } from './backup.js'
import { emptyStats, newStream, writeGeneration, type StreamWriter } from './commit/index.js'
import { closeDeviceReader, deviceMounts, filesystemOf, filesystemsOf, loopDevicesOf, mountState, openDeviceForRead, readMounts, type Consistency, type DeviceReader } from './device.js'
import type { MountEntry } from '../os/mountinfo.js'
import { DEFAULT_FREEZE_TIMEOUT_S, freezeFilesystems, type FrozenFilesystems } from './freeze.js'
import { BI_REASON_TEXT, OnlineCapture } from './online.js'
import { ENTRY_FLAG_CHANGED_WHILE_READ } from '../format/catalog.js'

const S_IFMT = 0o170000
const S_IFREG = 0o100000
const S_IFBLK = 0o060000

export interface VolumeOptions extends BackupOptions {
  /** The generation to take the difference against (`--base genK`); default: the latest volume generation of this source. */
  base?: Manifest
  /** Freeze the filesystems mounted from the device (FIFREEZE) while it is read (`--freeze`). */
  freeze?: boolean
  /** Thaw after this many seconds whatever happens (`--freeze-timeout`, default 600). */
  freezeTimeoutS?: number
}

/** A volume source opened for reading (the caller closes `fd`): its fstat at the open, whether it is a block device, its size now. */
export interface VolumeSource {
  fd: number
  st: Float64Array
  isDev: boolean
  /** The size now: a device's from the kernel, an image's from fstat. */
  sizeOf: () => number
}

/** Opens an image file or block device to back up (format 1 and 2): one-line errors for a missing, unreadable or wrong-type source. */
export function openVolumeSource(source: string): VolumeSource {
  let fd: number
  try {
    fd = openSource(source)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new BfsError('BAD_INPUT', code === 'ENOENT' ? `source ${source} does not exist` : code === 'EACCES' ? `cannot read ${source}: permission denied` : `cannot open ${source}: ${code ?? (err as Error).message}`)
  }
  try {
    const st1 = native.fstatRecord(fd)
    const fmt = st1[native.S_MODE]! & S_IFMT
    if (fmt !== S_IFREG && fmt !== S_IFBLK) throw new BfsError('BAD_INPUT', `${source} is not a block device or an image file`)
    const isDev = fmt === S_IFBLK
    return { fd, st: st1, isDev, sizeOf: () => (isDev ? native.blockDeviceSize(fd) : native.fstatRecord(fd)[native.S_SIZE]!) }
  } catch (err) {
    fs.closeSync(fd)
    throw err
  }
}

/**
 * --online covers trees and image files, not block devices (format 1 and 2): a one-line
 * refusal when `source` is one (`isDev`; by default stat'ed here: a source that cannot be
 * stat'ed is left for the backup to report).
 */
export function refuseOnlineDevice(source: string, isDev?: boolean): void {
  let dev = isDev
  if (dev === undefined) {
    try {
      dev = fs.statSync(source).isBlockDevice()
    } catch {
      dev = false
    }
  }
  if (dev) throw new BfsError('BAD_INPUT', `--online covers directories and image files, not block devices: ${source} is one (writes to a device do not pass the filesystem hooks the capture uses; use --freeze, or a snapshot)`)
}

/**
 * Backs up a block device or an image file as a volume generation: a catalog with one
 * regular file (named after the source) whose block map covers the volume's block space.
 * Holes and all-zero blocks are stored as holes; an incremental stores only blocks whose
 * hash differs from the base generation's, and an image whose size, mtime and ctime are
 * unchanged is not read at all.
 */
export async function backupVolume(repo: Repository, opts: VolumeOptions): Promise<BackupResult> {
  const source = path.resolve(opts.source)
  const { fd, st: st1, isDev, sizeOf } = openVolumeSource(source)
  try {
    if (opts.online) refuseOnlineDevice(source, isDev)
    const size = sizeOf()
    const reporter = opts.reporter ?? { warn: () => undefined }
    // What writes to the source while it is read: filesystems mounted from the device (its
    // partitions, what is stacked on it), or from loop devices over the image file.
    const mounts = sourceMounts(st1, isDev)
    const state = mountState(mounts)
    const toFreeze = opts.freeze ? freezeTargets(source, isDev, mounts, repo.store.localRoots()) : []
    const consistency: Consistency = opts.freeze ? 'frozen' : state
    const res = await writeGeneration(repo, opts, {
      source,
      kind: 'volume',
      group: null,
      choosePrev: (r) => {
        if (opts.full) return null
        if (opts.base) return opts.base
        // the newest readable volume generation of this source whose catalog reads
        for (const m of [...r.generations(null)].reverse()) {
          if (m.kind !== 'volume' || m.source !== source) continue
          try {
            r.catalog(m.id)
            return m
          } catch (err) {
            if (!(err instanceof BfsError) || err.code !== 'CORRUPT') throw err
            reporter.warn(`gen${m.id} cannot be the base of this backup: ${err.message}`)
          }
        }
        return null
      },
      build: async ({ genId, pool, prev }) => {
        const warnings: string[] = []
        const warn = (m: string): void => {
          warnings.push(m)
          reporter.warn(m)
        }
        // --online: T0 is set here, under the lock; the image is taken as it was then
        const online = opts.online ? OnlineCapture.start(source, opts.online, opts.t0File, warn, opts.onlineNice) : null
        try {
          const cap = online?.active ? online : null
          const stream = newStream(repo, pool, genId, opts, 'volume')
          const stats = emptyStats()
          const root = newEntry(EntryType.Dir, 0, Buffer.alloc(0))
          const now = Date.now()
          root.mode = 0o755
          root.atimeSec = root.mtimeSec = root.ctimeSec = Math.floor(now / 1000)
          root.firstChild = 1
          root.childCount = 1
          const img = newEntry(EntryType.File, 0, Buffer.from(isDev ? `${path.basename(source)}.img` : path.basename(source)))
          img.mode = st1[native.S_MODE]! & 0o7777
          img.uid = st1[native.S_UID]!
          img.gid = st1[native.S_GID]!
          img.atimeSec = st1[native.S_ATIME_SEC]!
          img.atimeNsec = st1[native.S_ATIME_NSEC]!
          img.mtimeSec = st1[native.S_MTIME_SEC]!
          img.mtimeNsec = st1[native.S_MTIME_NSEC]!
          img.ctimeSec = st1[native.S_CTIME_SEC]!
          img.ctimeNsec = st1[native.S_CTIME_NSEC]!
          img.srcDev = st1[native.S_DEV]!
          img.srcInoHi = st1[native.S_INO_HI]!
          img.srcInoLo = st1[native.S_INO_LO]!
          img.nlink = 1
          img.size = size
          let imgSize = size
          if (cap) {
            if (imageAtT0(cap, fd, img, img.name.toString(), mounts)) img.flags |= ENTRY_FLAG_CHANGED_WHILE_READ
            imgSize = img.size
          }
          const entries: Entry[] = [root, img]
          stats.files = 1
          stats.logicalBytes = imgSize
          const prevImg = prev ? repo.catalog(prev.id)[1] : undefined
          if (prev && prevImg && prevImg.size > imgSize) warn(`${source} shrank from ${prevImg.size} to ${imgSize} bytes since gen${prev.id}`)
          // An image file whose identity, size, mtime and ctime are those of the base is not read.
          // a base whose data depends on a damaged generation is not used: the volume is read in full
          const refs = new SafeRefs(repo, new ObjectResolver(repo), warn)
          const unchanged = !isDev && prevImg && (!prevImg.objGen || refs.objectOk(prevImg.objGen, prevImg.objIndex)) && prevImg.srcDev === img.srcDev && prevImg.srcInoHi === img.srcInoHi && prevImg.srcInoLo === img.srcInoLo &&
            prevImg.size === imgSize && prevImg.mtimeSec === img.mtimeSec && prevImg.mtimeNsec === img.mtimeNsec && prevImg.ctimeSec === img.ctimeSec && prevImg.ctimeNsec === img.ctimeNsec
          const objects = []
          if (unchanged) {
            img.objGen = prevImg!.objGen
            img.objIndex = prevImg!.objIndex
            stats.unchangedFiles = 1
            cap?.keep(img.srcDev, img.srcInoHi, img.srcInoLo)
          } else {
            const base = prevImg?.objGen ? refs.base(prevImg.objGen, prevImg.objIndex) : null
            const { stored, logged } = await storeVolume({ fd, st: st1, isDev, sizeOf }, source, imgSize, stream, base, cap, toFreeze, opts, reporter.progress)
            stats.bytesRead = stored.bytesRead
            const after = sizeOf()
            // (--online: what was read is the image at T0, whatever its size is now)
            if (!cap && (after !== size || stored.short)) throw new BfsError('BAD_INPUT', `the size of ${source} changed during the backup (${size} → ${after} bytes); nothing was committed`)
            if (prevImg) stats.changedFiles = 1
            else stats.newFiles = 1
            if (cap && stored.short) throw new BfsError('IO', `${source}: short read at T0; nothing was committed`)
            // (an image with blocks in the BI log needs an object of its own for the log to lay them over)
            if (stored.sameAsBase && base && !logged) {
              img.objGen = base.gen
              img.objIndex = base.index
            } else if (stored.object.extents.length > 0 || stored.object.baseGen !== 0 || logged) {
              img.objGen = genId
              img.objIndex = 0
              objects.push(stored.object)
              if (logged) cap!.noteStored(img.srcDev, img.srcInoHi, img.srcInoLo, 0)
            }
          }
          // the last read is done: writers stop paying; the images go into the stream before it ends
          let biLog: Buffer | null = null
          if (online) {
            online.stop()
            biLog = await online.ingest(stream, genId)
          }
          await stream.finish()
          return { entries, objects, stream, stats, warnings, skippedPaths: [], consistency, ...(online ? { online: online.report } : {}), ...(biLog ? { biLog } : {}) }
        } catch (err) {
          online?.abort()
          throw err
        }
      },
    })
    return { ...res, mountPoints: mounts.map((m) => m.point), ...(res.manifest.online ? { online: res.manifest.online } : {}) }
  } finally {
    fs.closeSync(fd)
  }
}

/** The fields of a volume generation's image entry (format 1 and 2) that --online takes from T0. */
interface ImageTimes {
  size: number
  mtimeSec: number
  mtimeNsec: number
  ctimeSec: number
  ctimeNsec: number
}

/**
 * --online (format 1 and 2): sets the image entry `e` (named `name`) to the image as it was at
 * T0 — its size and times then. True when its copy may be torn, which is listed in the
 * capture's report: writes through an fd or mapping from before T0, and a loop device's (a
 * kernel writer: `mounts`, the filesystems on loop devices over the image), raise no event.
 */
export function imageAtT0(cap: OnlineCapture, fd: number, e: ImageTimes, name: string, mounts: MountEntry[]): boolean {
  const t0 = cap.t0Stat(fd)
  e.size = t0.sizeBytes
  e.mtimeSec = t0.mtimeSec
  e.mtimeNsec = t0.mtimeNsec
  e.ctimeSec = t0.ctimeSec
  e.ctimeNsec = t0.ctimeNsec
  const why = t0.uncovered ? (BI_REASON_TEXT[t0.uncovered] ?? `reason ${t0.uncovered}`) : mounts.length ? `a filesystem on a loop device over it is mounted (${mounts.map((m) => m.point).join(', ')}): the loop device writes from the kernel, which the capture does not see` : ''
  if (why) cap.uncovered(name, why)
  return why !== ''
}

/**
 * Reads a volume (`size` bytes) into `stream` as one object (format 1 and 2): an image's data
 * regions only, by SEEK_DATA/SEEK_HOLE, a block-incremental against `base` when given,
 * through {@link readSource}, with a progress report every 64 MiB. With the capture (`cap`,
 * --online) the whole T0 size is read (a hole punched since T0 was data then), through an fd
 * whose reads raise no capture events (each would be a round trip through the listener,
 * queued with the writers' events), as the live bytes with the blocks changed since T0 read
 * as zeros: `logged` counts those, whose images go into the BI log.
 */
export async function storeVolume(v: VolumeSource, source: string, size: number, stream: StreamWriter, base: BaseObject | null, cap: OnlineCapture | null, toFreeze: MountEntry[], opts: Pick<VolumeOptions, 'signal' | 'freezeTimeoutS'>, progress?: (p: BackupProgress) => void): Promise<{ stored: StoredObject; logged: number }> {
  let regions = size > 0 ? [0, size] : []
  if (!cap && !v.isDev && size > 0 && v.st[native.S_BLOCKS]! * 512 < size) regions = native.dataRegions(v.fd, size)
  let last = 0
  let logged = 0
  const quietFd = cap ? quietOpen(cap, source, v) : -1
  try {
    const stored = await readSource(quietFd >= 0 ? quietFd : v.fd, source, v.isDev, toFreeze, opts, (readFd, direct, signal) => {
      // an image file: what the backup brings into the page cache goes again once read (a
      // device is read with O_DIRECT, or its cache dropped, by readSource)
      const guard = v.isDev ? null : PageCacheGuard.open(readFd, size)
      return storeObject(readFd, size, regions, stream, base, {
        direct,
        signal,
        alignFrames: true,
        ...(cap ? { read: cap.readHook(readFd, (n) => (logged += n)) } : {}),
        ...(guard ? { afterRead: (pos: number, len: number) => guard.release(pos, len) } : {}),
        onRead: (n) => {
          if (n - last >= 64 << 20) {
            last = n
            progress?.({ entries: 1, bytesRead: n, storedBytes: stream.storedBytes, path: source, files: 0, bytes: n, expectedFiles: 1, expectedBytes: size })
          }
        },
      })
    })
    return { stored, logged }
  } finally {
    if (quietFd >= 0) native.close(quietFd)
  }
}

/**
 * --online: the image opened again by path through the capture (its reads raise no events),
 * or -1 to read through `v.fd` (bfs's own reads are answered at once, one round trip each)
 * when that open fails (a symlink: the capture's open does not follow it; the path gone) or
 * finds another inode than the one opened at the start (renamed over since: its T0 state,
 * identity and before-images are the opened file's, so its bytes must be too).
 */
function quietOpen(cap: OnlineCapture, source: string, v: VolumeSource): number {
  let fd = -1
  try {
    fd = cap.openQuiet(Buffer.from(fs.realpathSync(source)))
    if (fd < 0) return -1
    const st = fs.fstatSync(fd, { bigint: true })
    const ino = (BigInt(v.st[native.S_INO_HI]!) << 32n) | BigInt(v.st[native.S_INO_LO]!)
    if (st.dev === BigInt(v.st[native.S_DEV]!) && st.ino === ino) return fd
  } catch {
    // read through v.fd
  }
  if (fd >= 0) native.close(fd)
  return -1
}

/**
 * Runs `read` over the source so that it reads what is on it: a block device is read with
 * O_DIRECT, past the device's page cache, which a mounted filesystem's writes bypass (see
 * {@link openDeviceForRead} and native-notes/volumes.md); an image file through the page
 * cache, which is where its writers' data is. With --freeze the read runs while the
 * filesystems on the device are frozen, and they are thawed on every way out.
 */
export async function readSource<T>(fd: number, source: string, isDev: boolean, toFreeze: MountEntry[], opts: Pick<VolumeOptions, 'signal' | 'freezeTimeoutS'>, read: (fd: number, direct: boolean, signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController()
  const onAbort = (): void => ac.abort()
  if (opts.signal?.aborted) ac.abort()
  else opts.signal?.addEventListener('abort', onAbort, { once: true })
  let frozen: FrozenFilesystems | null = null
  let dev: DeviceReader | null = null
  const lostError = (lost: string): BfsError => new BfsError('BAD_INPUT', `${lost}; nothing was committed (--freeze-timeout gives it more time)`)
  try {
    if (toFreeze.length) {
      frozen = await freezeFilesystems(toFreeze.map((m) => ({ dev: m.dev, point: m.point })), opts.freezeTimeoutS ?? DEFAULT_FREEZE_TIMEOUT_S)
      frozen.onLost = () => ac.abort() // thawed under us: stop reading, commit nothing
      if (frozen.lost) ac.abort()
    }
    // opened after the freeze: its fallback drops the device's cached pages once the
    // filesystem has written everything out
    if (isDev) dev = openDeviceForRead(source)
    else native.fadvise(fd, 0, 0, 'sequential')
    let out: T
    try {
      out = await read(dev?.fd ?? fd, dev?.direct ?? false, ac.signal)
    } catch (err) {
      if (frozen?.lost) throw lostError(frozen.lost)
      throw err
    }
    if (frozen?.lost) throw lostError(frozen.lost)
    return out
  } finally {
    if (dev) closeDeviceReader(dev)
    opts.signal?.removeEventListener('abort', onAbort)
    if (frozen) await frozen.thaw()
  }
}

/** The mounts of filesystems that write to `source` (a block device or an image file), from its stat record. */
export function sourceMounts(st: Float64Array, isDev: boolean): MountEntry[] {
  const all = readMounts()
  return isDev
    ? deviceMounts(`${st[native.S_RDEV_MAJOR]}:${st[native.S_RDEV_MINOR]}`, all)
    : loopDevicesOf(st[native.S_DEV]!, st[native.S_INO_HI]! * 2 ** 32 + st[native.S_INO_LO]!).flatMap((d) => deviceMounts(d, all))
}

/**
 * The refusals of --freeze, checked before anything is created (the repository neither):
 * throws the same one-line BfsError backupVolume would. A source that cannot be opened is
 * left for backupVolume to report.
 */
export function checkFreeze(source: string, repoRoots: string[]): void {
  const abs = path.resolve(source)
  let st: Float64Array
  try {
    st = native.lstatRecord(fs.realpathSync(abs))
  } catch {
    return
  }
  const isDev = (st[native.S_MODE]! & S_IFMT) === S_IFBLK
  freezeTargets(abs, isDev, sourceMounts(st, isDev), repoRoots)
}

/**
 * `--freeze` and `--freeze-timeout` against the mode decided, for either format, before
 * anything is written (the repository neither): `--freeze-timeout` needs `--freeze`,
 * `--freeze` needs a volume backup, and then {@link checkFreeze}'s refusals.
 */
export function checkFreezeOptions(o: { freeze?: unknown; freezeTimeout?: unknown }, decision: ModeDecision, repoRoots: string[]): void {
  if (o.freezeTimeout !== undefined && !o.freeze) throw new BfsError('BAD_INPUT', '--freeze-timeout applies with --freeze')
  if (!o.freeze) return
  if (decision.mode !== 'volume') throw new BfsError('BAD_INPUT', `--freeze applies to volume backups of block devices; ${decision.source} would be backed up as files (${decision.reason})`)
  checkFreeze(decision.source, repoRoots)
}

/**
 * The filesystems --freeze freezes (one mount point each), or a one-line refusal: the
 * source must be a block device with a mounted filesystem, and the repository must not be
 * on one of them (the backup writes into it while they are frozen: it would hang).
 * `roots`: the repository's local directories (its store's localRoots()). Format 1 and 2.
 */
export function freezeTargets(source: string, isDev: boolean, mounts: MountEntry[], roots: string[]): MountEntry[] {
  if (!isDev) throw new BfsError('BAD_INPUT', `--freeze needs a block device; ${source} is an image file`)
  if (mounts.length === 0) throw new BfsError('BAD_INPUT', `--freeze: no filesystem on ${source} is mounted, so there is nothing to freeze`)
  const fss = filesystemsOf(mounts)
  for (const root of roots) {
    const hit = fss.find((m) => m.dev === filesystemOf(root))
    if (hit) throw new BfsError('BAD_INPUT', `--freeze: the repository ${root} is on the filesystem of ${source} (mounted at ${hit.point}), which could not be written to while frozen`)
  }
  return fss
}

export interface ModeDecision {
  mode: 'file' | 'volume'
  /** The path to back up: the source, or the block device under a mounted filesystem's root. */
  source: string
  reason: string
}

/**
 * Auto mode: a block device or an image file is a volume; a directory that is the root of a
 * mounted block-device filesystem with more than `threshold` files (used inodes) is backed
 * up as a volume of that device if the device can be opened (it is opened and closed
 * here: access(2) says yes to root where a device cgroup or an LSM then refuses the open);
 * anything else as files, with the reason.
 */
export function decideMode(src: string, threshold: number): ModeDecision {
  const abs = path.resolve(src)
  let st: fs.Stats
  try {
    st = fs.statSync(abs)
  } catch {
    return { mode: 'file', source: abs, reason: 'source not found' }
  }
  if (st.isBlockDevice()) return { mode: 'volume', source: abs, reason: `${abs} is a block device` }
  if (st.isFile()) return { mode: 'volume', source: abs, reason: `${abs} is an image file` }
  if (!st.isDirectory()) return { mode: 'file', source: abs, reason: 'not a directory, device or image' }
  const real = fs.realpathSync(abs)
  const here = readMounts().filter((m) => m.point === real)
  const top = here[here.length - 1] // the last mount on a point is the one seen there
  if (!top) return { mode: 'file', source: abs, reason: `${real} is not the root of a mounted filesystem` }
  const dev = top.source
  const fstype = top.type
  let isBlk = false
  try {
    isBlk = fs.statSync(dev).isBlockDevice()
  } catch {
    // e.g. tmpfs, overlay: no device node
  }
  if (!isBlk) return { mode: 'file', source: abs, reason: `${real} is on ${fstype} (${dev}), not a block device` }
  const sf = fs.statfsSync(real)
  const files = sf.files - sf.ffree
  if (files <= threshold) return { mode: 'file', source: abs, reason: `${real} (${fstype} on ${dev}) holds ${files} files, not more than ${threshold}` }
  try {
    fs.closeSync(openSource(dev))
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    return { mode: 'file', source: abs, reason: `${real} is the root of ${dev} (${fstype}) with ${files} files, but ${dev} cannot be opened: ${e.code ?? e.message}` }
  }
  return { mode: 'volume', source: dev, reason: `${real} is the root of ${dev} (${fstype}) with ${files} files, more than ${threshold}` }
}
