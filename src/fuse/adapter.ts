import { execFile } from 'node:child_process'
import { readMounts, type MountEntry } from '../os/mountinfo.js'
import { createRequire } from 'node:module'
import { VfsError, type Attr, type InterruptibleRead, type Vfs } from '../vfs/tree.js'
import { NATIVE_FH, createFastPath, type NativeReadStats, type StatCacheStats } from '../native/fastpath.js'
import type { LazyVfs } from '../vfs/gen2.js'
import { STAT_FIELDS, makedev, packAttr } from '../vfs/statpack.js'

/**
 * The only importer of fuse-native (patched: patches/fuse-native+2.2.6.patch, see
 * native-notes/fuse-native.md). One handler per operation, one wrapper that calls back
 * exactly once and maps errors through one errno table. Paths cross the binding as latin1
 * strings, one char per byte, so names that are not UTF-8 round-trip.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type FuseCtor = any
const require = createRequire(import.meta.url)
let FuseMod: FuseCtor | null = null
export function fuseBinding(): FuseCtor {
  FuseMod ??= require('fuse-native')
  return FuseMod
}

const ERRNO: Record<string, number> = {
  ENOENT: -2, EINTR: -4, EIO: -5, EBADF: -9, EACCES: -13, ENOTDIR: -20, EISDIR: -21, EINVAL: -22, ERANGE: -34,
  EROFS: -30, ENOSYS: -38, ENODATA: -61, ENOTSUP: -95,
}

export interface MountLog {
  (message: string): void
}

export interface FuseServeOptions {
  mountpoint: string
  allowOther?: boolean
  /** Seconds the kernel may cache attributes and entries (generations are immutable). */
  attrTimeoutS?: number
  /** Format 1, one generation: entries whose listings are published to the native side after each readdir JavaScript answers (default AHEAD_ENTRIES; 0: none). */
  aheadEntries?: number
  /** Entries the native stat cache keeps at most (default STAT_CACHE_ENTRIES, 262,144: ~190 B each). */
  statCacheEntries?: number
  /** Seconds the kernel may cache a failed lookup (0 for a whole-repository mount, whose root grows). */
  negativeTimeoutS?: number
  fsname?: string
  log: MountLog
  debug?: boolean
  /**
   * Bytes of decompressed frames for the native read path (src/native/fastpath.ts, called
   * by the patched binding through its hook table): reads of open files are then served on
   * the libfuse threads without this event loop. 0 = off.
   */
  nativeReadCacheBytes?: number
}

const P = (path: string): Buffer => Buffer.from(path, 'latin1')

export function toStat(a: Attr, hasXattrs: boolean): Record<string, unknown> {
  return {
    ino: a.ino,
    mode: a.mode,
    nlink: a.nlink,
    uid: a.uid,
    gid: a.gid,
    size: a.size,
    blocks: a.blocks,
    blksize: 4096,
    rdev: a.rdevMajor || a.rdevMinor ? makedev(a.rdevMajor, a.rdevMinor) : 0,
    atime: { sec: a.atimeSec, nsec: a.atimeNsec },
    mtime: { sec: a.mtimeSec, nsec: a.mtimeNsec },
    ctime: { sec: a.ctimeSec, nsec: a.ctimeNsec },
    noXattrs: !hasXattrs,
  }
}

/**
 * The operations of a format 2 mount, whose tree answers asynchronously (a directory's piece
 * is read on its first lookup or readdir): each handler calls back exactly once, with the
 * result or with the errno `fail` maps its error to.
 */
function lazyOps(vfs: LazyVfs, fail: (err: unknown, op: string, path: string) => number, failRead: (err: unknown, path: string) => number): Record<string, unknown> {
  const wrap = <A extends unknown[]>(op: string, fn: (path: string, ...a: A) => Promise<unknown[]>) =>
    (path: string, ...args: [...A, (...r: unknown[]) => void]) => {
      const cb = args.pop() as (...r: unknown[]) => void
      let p: Promise<unknown[]>
      try {
        p = fn(path, ...(args as unknown as A))
      } catch (err) {
        return cb(fail(err, op, path))
      }
      p.then((res) => cb(0, ...res), (err: unknown) => cb(fail(err, op, path)))
    }
  const stat = async (path: string): Promise<unknown[]> => {
    const s = await vfs.stat(P(path))
    return [toStat(s.attr, s.hasXattrs)]
  }
  return {
    getattr: wrap('getattr', stat),
    fgetattr: wrap('fgetattr', stat),
    access: wrap('access', async (path, mode: number) => {
      await vfs.resolve(P(path))
      if (mode & 2) throw new VfsError('EROFS')
      return []
    }),
    readdir: wrap('readdir', async (path) => {
      // `.` and `..` first, as format 1's readdir (see there): their slots are left for us;
      // the stats go to the binding packed (vfs/statpack.ts)
      const d = await vfs.readdir(P(path))
      packAttr(d.stats, 0, d.self, true, true)
      packAttr(d.stats, STAT_FIELDS, d.parent, true, true)
      return [d.names, d.stats]
    }),
    readlink: wrap('readlink', async (path) => [(await vfs.readlink(P(path))).toString('latin1')]),
    listxattr: wrap('listxattr', async (path) => [(await vfs.listxattr(P(path))).map((n) => n.toString('latin1'))]),
    getxattr: wrap('getxattr', async (path, name: string) => [await vfs.getxattr(P(path), P(name))]),
    open: wrap('open', async (path, flags: number) => {
      if ((flags & 3) !== 0) throw new VfsError('EROFS')
      return [await vfs.open(P(path))]
    }),
    release: wrap('release', async (_path, fd: number) => {
      vfs.release(fd)
      return []
    }),
    read: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void, req?: InterruptibleRead) => {
      // buf is libfuse's memory: fill it before calling back, never keep it after.
      // A handle opened natively (native/hooks.c) whose read the native path handed back (its
      // unit retired meanwhile, an I/O error, a corrupt frame): opened here by its path first.
      const r = 'adopt' in vfs && fd >= NATIVE_FH ? vfs.adopt(fd, P(path)).then(() => vfs.read(fd, buf, len, pos, req)) : vfs.read(fd, buf, len, pos, req)
      r.then(cb, (err) => cb(failRead(err, path)))
    },
  }
}

/** The stat of a `.` or `..` readdir entry: for d_ino and d_type only, never kept by the stat cache. */
function dotStat(a: Attr): Record<string, unknown> {
  return { ...toStat(a, true), noCache: true }
}

export type { NativeReadStats }

/** Refused to unmount: something uses the mount, which goes on serving. */
export class MountBusyError extends Error {
  readonly code = 'EBUSY'
}

export interface FuseServer {
  /**
   * Unmounts, as umount(8) does: while a process uses the mount (an open file, a working
   * directory) it is refused with a MountBusyError and the mount goes on serving. `lazy`
   * detaches it at once instead (umount -l): the files still open there go on being
   * served, and this resolves when the last is closed.
   * Resolves true once the native read path has stopped, so the unit files it reads may be
   * closed; false if a read of it was still in progress after `drainMs`.
   */
  unmount(opts?: { lazy?: boolean; drainMs?: number; onDetached?: () => void }): Promise<boolean>
  /** Calls `gone` (once, within about a second) when the mount has gone away without unmount(): umount or fusermount from outside. */
  watchGone(gone: () => void): void
  nativeStats(): NativeReadStats | null
  /** getattr answered on the libfuse threads (hits) or not (misses), and what the cache holds. */
  statCacheStats(): StatCacheStats
  /** Operations that reached JavaScript (the event loop), by name, since the mount. */
  jsOps(): Record<string, number>
}

/**
 * Entries (of whole directories) published ahead after a readdir answered in JavaScript on a
 * format 1 mount of one generation: ~20-30 ms of the event loop here, so a `find` of the
 * Linux tree (84k entries, 5k directories) asks JavaScript for ~15 listings instead of 5k.
 */
const AHEAD_ENTRIES = 8192

/** A file's reads failing on bfs's recall deadline are logged once in this long. */
const DEADLINE_LOG_MS = 30_000

const U32 = 0xffffffff
/** Frames of the largest size the native read path's cache holds at least (see --cache-size). */
const NATIVE_MIN_FRAMES = 8

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function mounts(): Promise<MountEntry[] | null> {
  try {
    return await readMounts()
  } catch {
    return null
  }
}

/** fusermount's complaint, or null when it succeeded. */
const fusermount = (flag: string, point: string): Promise<string | null> =>
  new Promise((res) => execFile('fusermount', [flag, point], (e, _out, stderr) => res(e ? String(stderr).trim() || e.message : null)))

/**
 * Mounts `served` read-only at opts.mountpoint; resolves once the kernel accepted the mount.
 * Format 1's Vfs answers metadata synchronously (its catalog is in memory); format 2's Vfs2 and Repo2Vfs
 * reads pieces as it goes, so its operations are the asynchronous ones of lazyOps.
 */
export function serveFuse(served: Vfs | LazyVfs, opts: FuseServeOptions): Promise<FuseServer> {
  // the ops below are format 1's; a LazyVfs replaces them (lazyOps) and shares the rest
  // (attachNative, virtualXattrs, cancelsOnFlush and flush)
  const vfs = served as Vfs
  const Fuse = fuseBinding()
  // A read past bfs's recall deadline is logged once per file and half minute: the kernel's
  // readahead and its retry of a failed page send several reads for one read(2).
  const deadlineLogged = new Map<string, number>()
  const quiet = (path: string, msg: string): boolean => {
    if (!msg.includes("bfs's recall deadline")) return false
    const now = Date.now()
    const last = deadlineLogged.get(path)
    if (last !== undefined && now - last < DEADLINE_LOG_MS) return true
    if (deadlineLogged.size > 10_000) deadlineLogged.clear()
    deadlineLogged.set(path, now)
    return false
  }
  const fail = (err: unknown, op: string, path: string): number => {
    if (err instanceof VfsError) {
      const msg = (err.cause as Error | undefined)?.message ?? 'I/O error'
      if (err.errno === 'EIO' && !quiet(path, msg)) opts.log(`${op} ${path}: ${msg}`)
      return ERRNO[err.errno] ?? ERRNO.EIO!
    }
    opts.log(`${op} ${path}: ${(err as Error).message}`)
    return ERRNO.EIO!
  }
  // a read's error; with a tape tier, one the kernel interrupted while it waited for a recall (its reader got a signal) is said once
  const failRead = (err: unknown, path: string): number => {
    if ((err as { interrupted?: boolean }).interrupted) opts.log(`read of ${path} interrupted while it waited for tape (EINTR): its close gives up the unit recalls no other open file needs`)
    return fail(err, 'read', path)
  }
  /** Wraps a synchronous handler: its result or its error reaches the callback exactly once. */
  const sync = <A extends unknown[]>(op: string, fn: (path: string, ...a: A) => unknown[]) =>
    (path: string, ...args: [...A, (...r: unknown[]) => void]) => {
      const cb = args.pop() as (...r: unknown[]) => void
      let res: unknown[]
      try {
        res = fn(path, ...(args as unknown as A))
      } catch (err) {
        return cb(fail(err, op, path))
      }
      cb(0, ...res)
    }
  // with a tape tier every regular file has user.bfs.residency (not listed): never "no xattrs" natively
  const virtualX = vfs.virtualXattrs
  const hasX = (path: Buffer): boolean => {
    if (virtualX) return true
    try {
      return vfs.listxattr(path).length > 0
    } catch {
      return false
    }
  }
  // Format 1, one generation: listings published ahead of the kernel's readdir (Vfs.publishAhead),
  // AHEAD_ENTRIES after each readdir answered here, after the reply (setImmediate)
  const publishAhead = !('lazy' in served) && (opts.aheadEntries ?? AHEAD_ENTRIES) > 0
  let aheadQueue: Buffer[] = []
  let fpRef: { publishListing(dir: Buffer, names: Buffer, stats: Float64Array): number } | null = null
  const runAhead = (): void => {
    const q = aheadQueue
    aheadQueue = []
    for (const p of q) {
      try {
        vfs.publishAhead(p, opts.aheadEntries ?? AHEAD_ENTRIES, (dir, l) => void fpRef?.publishListing(dir, l.names, l.stats))
      } catch (err) {
        // only a hint: the directories are then read in JavaScript, which reports what is wrong
        opts.log(`listing ahead of ${p.toString('latin1')}: ${(err as Error).message}`)
      }
    }
  }
  const queueAhead = (p: Buffer): void => {
    if (aheadQueue.push(p) === 1) setImmediate(runAhead)
  }
  const erofs = (...args: unknown[]): void => (args[args.length - 1] as (e: number) => void)(ERRNO.EROFS!)
  const ops = {
    init: (cb: (e: number) => void) => cb(0),
    statfs: sync('statfs', () => [{ bsize: 4096, frsize: 4096, blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, favail: 0, fsid: 0, flag: 1, namemax: 255 }]),
    getattr: sync('getattr', (path) => {
      const p = P(path)
      return [toStat(vfs.getattr(p), hasX(p))]
    }),
    fgetattr: sync('fgetattr', (path) => {
      const p = P(path)
      return [toStat(vfs.getattr(p), hasX(p))]
    }),
    access: sync('access', (path, mode: number) => {
      vfs.getattr(P(path))
      if (mode & 2) throw new VfsError('EROFS')
      return []
    }),
    readdir: sync('readdir', (path) => {
      const p = P(path)
      // a generation's directory: names and stats packed as the binding takes them, `.` and
      // `..` in slots 0 and 1 (the same stats as below)
      const packed = vfs.listing(p)
      if (packed) {
        const self = vfs.getattr(p)
        const slash = path.lastIndexOf('/')
        const parent = path === '/' ? self : vfs.getattr(P(slash <= 0 ? '/' : path.slice(0, slash)))
        packAttr(packed.stats, 0, self, true, true)
        packAttr(packed.stats, STAT_FIELDS, parent, true, true)
        // then, once this reply is on its way, the listings of the directories below, so
        // that a walk (find, du, ls -R, cp -a) finds them answered on the libfuse threads
        if (publishAhead) queueAhead(p)
        return [packed.names, packed.stats]
      }
      const d = vfs.readdir(p)
      const base = path === '/' ? '/' : `${path}/`
      const names = d.names.map((n) => n.toString('latin1'))
      const stats = d.attrs.map((a, i) => toStat(a, virtualX || (d.hasXattrs ? d.hasXattrs[i]! : hasX(P(base + names[i]!)))))
      // `.` and `..` lead the listing, as on every Linux filesystem (`ls -a`, `ls -ai`: their
      // d_ino is the directory's and its parent's ino). `..` of the mount root is the root
      // itself, as on ext4: the kernel resolves `..` at a mount root without asking us.
      // noCache: a listing's stats feed the stat cache by dir + "/" + name, and these two
      // names describe other paths (the cache skips them too; this says so at the source).
      const self = vfs.getattr(p)
      const slash = path.lastIndexOf('/')
      const parent = path === '/' ? self : vfs.getattr(P(slash <= 0 ? '/' : path.slice(0, slash)))
      return [['.', '..', ...names], [dotStat(self), dotStat(parent), ...stats]]
    }),
    readlink: sync('readlink', (path) => [vfs.readlink(P(path)).toString('latin1')]),
    listxattr: sync('listxattr', (path) => [vfs.listxattr(P(path)).map((n) => n.toString('latin1'))]),
    getxattr: sync('getxattr', (path, name: string) => [vfs.getxattr(P(path), P(name))]),
    open: sync('open', (path, flags: number) => {
      if ((flags & 3) !== 0) throw new VfsError('EROFS')
      return [vfs.open(P(path))]
    }),
    release: sync('release', (_path, fd: number) => {
      vfs.release(fd)
      return []
    }),
    // req: the patched binding tells when the kernel interrupts this read (its reader got a
    // signal while it waited): with a tape tier, a read waiting for a recall answers EINTR
    read: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void, req?: InterruptibleRead) => {
      // buf is libfuse's memory: fill it before calling back, never keep it after.
      vfs.read(fd, buf, len, pos, req).then(cb, (err) => cb(failRead(err, path)))
    },
    write: erofs, create: erofs, truncate: erofs, ftruncate: erofs, unlink: erofs, rmdir: erofs, mkdir: erofs,
    rename: erofs, link: erofs, symlink: erofs, chmod: erofs, chown: erofs, utimens: erofs, setxattr: erofs,
    removexattr: erofs, mknod: erofs,
  }
  if ('lazy' in served) Object.assign(ops, lazyOps(served, fail, failRead))
  // With a tape tier, a close(2) is the one message that tells a reader went away while it
  // waited for a recall (native-notes/tape.md, "Interrupting a read"): flush() gives up the
  // recalls that only closed files' reads wait for, and answers those reads. Without one, no flush op: the kernel
  // then stops sending FLUSH after the first ENOSYS, and a close costs no JS round trip.
  if (vfs.cancelsOnFlush) {
    Object.assign(ops, {
      flush: (path: string, fd: number, cb: (e: number) => void) => {
        try {
          const done = vfs.flush(fd)
          if (done) opts.log(`close of ${path}: ${done.cancelled} unit recall${done.cancelled === 1 ? '' : 's'} given up (no open file needs them), ${done.reads} read${done.reads === 1 ? '' : 's'} of closed files waiting for them interrupted (EINTR)`)
        } catch (err) {
          opts.log(`flush ${path}: ${(err as Error).message}`)
        }
        cb(0)
      },
    })
  }
  // every operation that reaches JavaScript is counted (the stats line: what still costs an
  // event-loop round trip, beside what the hook table answers on the libfuse threads)
  const jsOps: Record<string, number> = {}
  for (const [name, fn] of Object.entries(ops)) {
    if (typeof fn !== 'function' || name === 'init') continue
    const f = fn as (...a: unknown[]) => unknown
    ;(ops as Record<string, unknown>)[name] = (...a: unknown[]): unknown => {
      jsOps[name] = (jsOps[name] ?? 0) + 1
      return f(...a)
    }
  }
  const ttl = opts.attrTimeoutS ?? 86400
  const native = (opts.nativeReadCacheBytes ?? 0) > 0
  // a cache smaller than a few frames would keep none, and decompress a whole frame for
  // every 4 KiB read: it grows to hold NATIVE_MIN_FRAMES of the largest frames registered
  let cacheBytes = opts.nativeReadCacheBytes ?? 0
  // reads of registered handles (when native) and getattr of paths a readdir or getattr
  // reply described (always: generations never change) are answered on the libfuse threads
  const fp = createFastPath({ readCacheBytes: native ? cacheBytes : undefined, statCache: { getattr: true, maxEntries: opts.statCacheEntries } })
  // a format 2 generation: readdir in C on the libfuse threads where it can (native/dirsrc.c)
  const dirSource = 'dirSource' in served && typeof served.dirSource === 'function' ? served.dirSource() : null
  if (dirSource) fp.dirSource(dirSource)
  // and the opens of its files whose maps those listings hold, where JavaScript's open would
  // only register the handle (native/hooks.c hook_open; BFS_OPEN_JS=1: every open in
  // JavaScript, for comparisons)
  if (dirSource?.openFiles && native && process.env.BFS_OPEN_JS !== '1') fp.openFiles(true)
  fpRef = fp
  const fuse = new Fuse(opts.mountpoint, ops, {
    timeout: false, // tape recalls may take minutes; the kernel has its own limits
    useIno: true,
    kernelCache: true,
    attrTimeout: ttl,
    entryTimeout: ttl,
    negativeTimeout: opts.negativeTimeoutS ?? ttl,
    readOnly: true,
    defaultPermissions: true,
    allowOther: !!opts.allowOther,
    fsname: opts.fsname ?? 'bfs',
    subtype: 'bfs',
    maxRead: 1 << 20,
    debug: !!opts.debug,
    hooks: fp.hooks(),
  })
  return new Promise((resolve, reject) => {
    fuse.mount((err: Error | null) => {
      if (err) return reject(err)
      if (native) {
        vfs.attachNative({
          unit: (id, fd, frameBytes, frames, at, dict, seal) => {
            if (frameBytes * NATIVE_MIN_FRAMES > cacheBytes) fp.setCacheBytes((cacheBytes = frameBytes * NATIVE_MIN_FRAMES))
            // (where it is, for the native open: numbers beyond 32 bits are never opened there;
            // a sealed unit without it throws and stays in JavaScript)
            fp.unit(id, fd, frameBytes, frames, at && at.stream <= U32 && at.unit <= U32 && at.unitBlocks <= U32 ? at : undefined, dict, seal)
          },
          dict: (slot, bytes) => fp.dict(slot, bytes),
          retire: (id) => fp.retire(id),
          file: (h, size, extents) => fp.file(h, size, extents),
          release: (h) => fp.release(h),
          adopt: (h) => void fp.adopt(h),
        })
      }
      const mnt = opts.mountpoint
      // Which mount is ours, by its device number: the path alone could name a newer mount
      // made there after ours was detached, or none after a parent directory was renamed.
      // Read once, before the mount is reported ready (one read of the mount table), so
      // that a parent directory renamed right after `bfs mount` returns cannot hide it;
      // polled briefly in case the table shows the mount a moment after the callback.
      const devAtStart = (async (): Promise<string | null> => {
        for (let t = Date.now() + 10_000; ; await sleep(10)) {
          const all = await mounts()
          const dev = all?.filter((e) => e.point === mnt).pop()?.dev ?? null
          if (dev !== null || !all || Date.now() > t) {
            if (dev === null) opts.log(`${mnt} is not in the mount table${all ? '' : ' (unreadable)'}: unmounting will go by its path, so a moved mount point would not be found`)
            return dev
          }
        }
      })()
      /** Where our mount (device `dev`) is now; null once it is detached (or the mount table unreadable). */
      const ourPoint = async (dev: string | null): Promise<string | null> => {
        const all = await mounts()
        if (!all) return null
        if (dev === null) return all.some((e) => e.point === mnt) ? mnt : null
        return all.filter((e) => e.dev === dev).pop()?.point ?? null
      }
      const server: FuseServer = {
        async unmount({ lazy = false, drainMs = 60_000, onDetached } = {}) {
          if (!fuse.loopEnded()) {
            const dev = await devAtStart
            // fuse-native's own unmount is always lazy (fusermount -uz) and stops serving at
            // once; unmount our mount where it is now, as umount(8) would
            const point = await ourPoint(dev)
            const err = point === null ? null : await fusermount(lazy ? '-uz' : '-u', point)
            if (err !== null && !fuse.loopEnded() && (await ourPoint(dev)) !== null) {
              throw !lazy && /busy/i.test(err) ? new MountBusyError(`${point} is busy`) : new Error(err)
            }
            // The FUSE loop ends when the kernel lets the connection go: at once after a
            // plain unmount, after a lazy one (ours or anybody's) when the last file open
            // there is closed; until then those files are still served. After a plain one of
            // ours it is bounded: should the loop linger, fuse-native detaches anyway.
            // (Without our device number, "not found" may only mean a path we cannot match:
            // bounded too, rather than waiting forever on a mount that is still there.)
            const untilClosed = dev !== null && (lazy || point === null || err !== null)
            if (untilClosed && !fuse.loopEnded()) onDetached?.()
            for (let t = Date.now() + 5000; !fuse.loopEnded() && (untilClosed || Date.now() < t); ) await sleep(20)
          }
          // fuse-native's bookkeeping, once the loop has ended (the patch then skips its
          // fusermount; before that, its fusermount -uz of the path could hit a newer mount)
          if (fuse.loopEnded()) await new Promise<Error | null>((res) => fuse.unmount((x: Error | null) => res(x)))
          // no read starts any more; wait (without blocking this loop) for those in progress
          // to finish before the caller closes the unit files they read
          const until = Date.now() + drainMs
          while (fp.close() > 0) {
            if (Date.now() > until) return false
            await sleep(5)
          }
          return true
        },
        watchGone(gone) {
          const t = setInterval(() => {
            if (!fuse.loopEnded()) return
            clearInterval(t)
            gone()
          }, 1000)
          t.unref()
        },
        nativeStats: () => (native ? fp.info() : null),
        jsOps: () => ({ ...jsOps }),
        statCacheStats: () => {
          if (!dirSource) return fp.statInfo()
          const d = fp.dirInfo()
          return { ...fp.statInfo(), readdirInC: d.served, readdirFallbacks: d.fallbacks, lookupsInC: d.lookups, lookupFallbacks: d.lookupFallbacks }
        },
      }
      void devAtStart.then(() => resolve(server), () => resolve(server))
    })
  })
}
