/**
 * Typed wrapper around the `bfs_native` N-API addon (native/bfs_native.c): the
 * POSIX calls Node.js does not expose. See native-notes/native-addon.md.
 *
 * Conventions shared by every function here:
 * - Calls are synchronous and run on the calling thread.
 * - A path may be a `string` (encoded as UTF-8) or a `Buffer` (raw bytes, used as
 *   they are: file names need not be valid UTF-8). Paths are relative to the
 *   process's current directory unless absolute.
 * - A failed system call throws an {@link NativeError}: an `Error` whose `code`
 *   is the errno name (`'ENOENT'`, `'ENOTSUP'`, ...), `errno` the negative errno
 *   number, `syscall` the call that failed and, for path calls, `path` (as a
 *   string; bytes that are not UTF-8 show as U+FFFD). The message reads like
 *   Node's: `ENOENT: no such file or directory, lgetxattr '/some/path'`.
 * - A wrong argument (type, range, NUL byte in a path) throws a `TypeError`
 *   (`code` `'ERR_INVALID_ARG_TYPE'` / `'ERR_INVALID_ARG_VALUE'`) or a
 *   `RangeError` (`code` `'ERR_OUT_OF_RANGE'`): those are bugs, not conditions.
 *
 * The addon is loaded on first use, so importing this module never fails; if
 * the addon has not been built, the first call throws an Error with code
 * `'ERR_BFS_NATIVE_MISSING'` (build it with `make native`).
 */
import { createRequire } from 'node:module'

/** A path as text (UTF-8) or as raw bytes. */
export type PathLike = string | Buffer

/** The error a failed system call throws (see the module comment). */
export interface NativeError extends Error {
  /** errno name, e.g. `'ENOENT'`. */
  code: string
  /** Negative errno number, e.g. `-2`, as Node reports it. */
  errno: number
  /** The system call that failed, e.g. `'lgetxattr'`. */
  syscall: string
  /** The path argument, when the call took one. */
  path?: string
}

/** One entry per directory child: readdir + fstatat(AT_SYMLINK_NOFOLLOW) in one native call. */
export interface DirScan {
  /** Raw names, excluding "." and "..", in readdir order. */
  names: Buffer[]
  /** {@link STAT_FIELDS} doubles per entry, same order as `names`. */
  stats: Float64Array
}

/** Doubles per stat record. */
export const STAT_FIELDS: number = 18

// Indices into each entry's 18-double record.
/** st_dev (exact while below 2^53, which Linux device numbers are). */
export const S_DEV = 0
/** High 32 bits of st_ino. The inode is `S_INO_HI * 2**32 + S_INO_LO`. */
export const S_INO_HI = 1
/** Low 32 bits of st_ino. */
export const S_INO_LO = 2
/** st_mode: file type bits and permission bits. */
export const S_MODE = 3
export const S_NLINK = 4
export const S_UID = 5
export const S_GID = 6
/** major(st_rdev), for device files (0 otherwise). */
export const S_RDEV_MAJOR = 7
/** minor(st_rdev), for device files (0 otherwise). */
export const S_RDEV_MINOR = 8
/** st_size in bytes. */
export const S_SIZE = 9
/** st_blocks: allocated space in 512-byte units. */
export const S_BLOCKS = 10
/** Seconds since the epoch (may be negative). */
export const S_ATIME_SEC = 11
/** Nanoseconds, 0..999999999. */
export const S_ATIME_NSEC = 12
export const S_MTIME_SEC = 13
export const S_MTIME_NSEC = 14
export const S_CTIME_SEC = 15
export const S_CTIME_NSEC = 16
/** 0, or the positive errno if fstatat failed (entry vanished: other fields 0). */
export const S_ERRNO = 17

/** posix_fadvise advice. */
export type FadviseAdvice = 'sequential' | 'willneed' | 'dontneed' | 'normal'

interface Addon {
  STAT_FIELDS: number
  /** All names back to back in `blob`; name i is blob[ends[i-1], ends[i]) with ends[-1] = 0. */
  scanDirPacked(dirPath: PathLike, sorted?: boolean): { blob: Buffer; ends: Uint32Array; stats: Float64Array }
  scanDirAsync(dirPath: PathLike): Promise<{ blob: Buffer; ends: Uint32Array; stats: Float64Array }>
  readFilesAsync(dirPath: PathLike, blob: Buffer, ends: Uint32Array, slots: Uint32Array, out: Buffer, recs: Float64Array, info: Int32Array): Promise<void>
  lstatRecord(path: PathLike): Float64Array
  fstatRecord(fd: number): Float64Array
  getXattrs(path: PathLike): Array<[Buffer, Buffer]>
  setXattr(path: PathLike, name: Buffer | string, value: Buffer): void
  dataRegions(fd: number, sizeBytes: number): number[]
  setTimes(path: PathLike, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, nofollow: boolean): void
  mknod(path: PathLike, mode: number, rdevMajor: number, rdevMinor: number): void
  blockDeviceSize(fd: number): number
  blockDeviceSectorSize(fd: number): number
  flushBlockDevice(fd: number): void
  alignedBuffer(bytes: number): Buffer
  adviseHugePages(buf: Uint8Array): boolean
  dirListing(payload: Buffer, inoBase: number): [names: Buffer, stats: Float64Array] | null
  dirListingLazyForTest(payload: Buffer, inoBase: number): [names: Buffer, stats: Float64Array, heads: Float64Array, declined: number] | null
  dirScan(payload: Buffer, base: Buffer | null, keep: Buffer | null, baseRows: Float64Array | null): Float64Array | null
  pieceRaw(stored: Buffer, maxRaw: number, key: Uint8Array | null, id: Buffer): Buffer | null
  trainDictionary(samples: Buffer, sizes: Buffer, capacity: number): Buffer
  findWalk(root: Buffer, key: Buffer, spec: Buffer, refs: Float64Array, ids: Buffer): FindWalkResult
  dirDiff(a: Buffer, baseA: Buffer | null, baseRowsA: Float64Array | null, b: Buffer, baseB: Buffer | null, baseRowsB: Float64Array | null): Float64Array | null
  freezeFs(fd: number): void
  thawFs(fd: number): void
  fadvise(fd: number, offsetBytes: number, lengthBytes: number, advice: FadviseAdvice): boolean
  cachestat(fd: number, offsetBytes: number, lengthBytes: number): [cached: number, dirty: number, writeback: number] | null
  flock(fd: number, mode: FlockMode): boolean
  detach(fd: number): void
  exitWatchdog(ms: number, code: number): void
  hashBlocks(src: Buffer, srcOffset: number, blocks: number, out: Buffer, outOffset: number, seed?: bigint): void
  xxh64Into(src: Buffer, out: Buffer, outOffset: number, seed?: bigint): void
  blake3Into(src: Uint8Array, srcOffset: number, srcLength: number, key: Uint8Array | null, out: Uint8Array, outOffset: number, outLength: number): void
  aeadSeal(alg: number, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, src: Uint8Array, srcOffset: number, srcLength: number, out: Uint8Array, outOffset: number): number
  aeadOpen(alg: number, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, src: Uint8Array, srcOffset: number, srcLength: number, out: Uint8Array, outOffset: number): number
  readonly aeadVersion: string
  scryptAsync(pass: Uint8Array, salt: Uint8Array, N: number, r: number, p: number, outLen: number): Promise<Buffer>
  readonly scryptVersion: string
  blake3HasherNew(key: Uint8Array | null): Blake3Handle
  blake3HasherUpdate(hasher: Blake3Handle, src: Uint8Array, srcOffset: number, srcLength: number): void
  blake3HasherFinal(hasher: Blake3Handle, out: Uint8Array, outOffset: number, outLength: number): void
  blake3HasherReset(hasher: Blake3Handle): void
  /** The version of the BLAKE3 C sources compiled in (`blake3_version()`), e.g. `'1.3.1'`. */
  blake3Version: string
  atConstants: AtConstants
  openat2(dirFd: number, path: PathLike, flags: number, mode: number, resolve: number, quietErrno?: number): number
  openBeneathWalk(dirFd: number, path: PathLike, flags: number, mode: number): number
  close(fd: number): void
  mkdirat(dirFd: number, path: PathLike, mode: number): void
  symlinkat(target: PathLike, dirFd: number, path: PathLike): void
  mknodat(dirFd: number, path: PathLike, mode: number, rdevMajor: number, rdevMinor: number): void
  linkat(oldDirFd: number, oldPath: PathLike, newDirFd: number, newPath: PathLike, flags: number): void
  renameat2(oldDirFd: number, oldPath: PathLike, newDirFd: number, newPath: PathLike, flags: number): void
  unlinkat(dirFd: number, path: PathLike, flags: number): void
  fstatatRecord(dirFd: number, path: PathLike, flags: number): Float64Array
  fchownat(dirFd: number, path: PathLike, uid: number, gid: number, flags: number): void
  fchmodat(dirFd: number, path: PathLike, mode: number, flags: number): void
  utimensat(dirFd: number, path: PathLike, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, flags: number): void
  futimens(fd: number, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void
  fsetxattr(fd: number, name: Buffer | string, value: Buffer): void
  setxattrat(dirFd: number, path: PathLike, name: Buffer | string, value: Buffer, flags: number): void
  bilogStart(watchPath: PathLike, logPath: PathLike, stallMs: number, fifoPriority: number, preReadMax: number): BiCaptureHandle
  bilogInfo(h: BiCaptureHandle): Float64Array
  bilogStats(h: BiCaptureHandle): Float64Array
  bilogUncovered(h: BiCaptureHandle): Array<[number, number, number, number, number, string]>
  bilogReadT0(h: BiCaptureHandle, fd: number, buf: Buffer, bufOffset: number, length: number, position: number, markRead: boolean): number
  bilogReadLive(h: BiCaptureHandle, fd: number, buf: Buffer, bufOffset: number, length: number, position: number): [number, number]
  bilogIgnore(h: BiCaptureHandle, dev: number, inoHi: number, inoLo: number): void
  bilogShare(h: BiCaptureHandle): number
  bilogOpenQuiet(h: BiCaptureHandle, path: PathLike): number
  bilogOpenQuietShared(id: number, path: PathLike): number
  bilogT0StatIno(h: BiCaptureHandle, dev: number, inoHi: number, inoLo: number): Float64Array | undefined
  bilogUnshare(h: BiCaptureHandle): void
  bilogReadLiveShared(id: number, fd: number, buf: Buffer, bufOffset: number, length: number, position: number): [number, number]
  bilogReadFileShared(id: number, path: PathLike, dev: number, inoHi: number, inoLo: number, buf: Buffer, bufOffset: number, length: number, position: number, out: Float64Array): void
  bilogMarkRead(h: BiCaptureHandle, fd: number, offset: number, length: number): void
  bilogT0Stat(h: BiCaptureHandle, fd: number): Float64Array
  bilogStop(h: BiCaptureHandle): Float64Array
}

/**
 * Every function of the addon this module calls. A build from older sources lacks some (a
 * checkout updated without `make native`): it is refused at load with one clear line, not
 * with "x is not a function" deep inside a command. The type below fails to compile when a
 * function of {@link Addon} is missing here; test/native.test.ts checks the built addon
 * exports nothing that is missing here either.
 */
export const ADDON_FUNCTIONS = [
  'scanDirPacked',
  'scanDirAsync',
  'readFilesAsync',
  'lstatRecord',
  'fstatRecord',
  'getXattrs',
  'setXattr',
  'dataRegions',
  'setTimes',
  'mknod',
  'blockDeviceSize',
  'blockDeviceSectorSize',
  'flushBlockDevice',
  'alignedBuffer',
  'adviseHugePages',
  'dirListing',
  'dirListingLazyForTest',
  'dirScan',
  'pieceRaw',
  'trainDictionary',
  'findWalk',
  'dirDiff',
  'freezeFs',
  'thawFs',
  'fadvise',
  'cachestat',
  'flock',
  'detach',
  'exitWatchdog',
  'hashBlocks',
  'xxh64Into',
  'blake3Into',
  'aeadSeal',
  'aeadOpen',
  'scryptAsync',
  'blake3HasherNew',
  'blake3HasherUpdate',
  'blake3HasherFinal',
  'blake3HasherReset',
  'openat2',
  'openBeneathWalk',
  'close',
  'mkdirat',
  'symlinkat',
  'mknodat',
  'linkat',
  'renameat2',
  'unlinkat',
  'fstatatRecord',
  'fchownat',
  'fchmodat',
  'utimensat',
  'futimens',
  'fsetxattr',
  'setxattrat',
  'bilogStart',
  'bilogInfo',
  'bilogStats',
  'bilogUncovered',
  'bilogReadT0',
  'bilogReadLive',
  'bilogIgnore',
  'bilogShare',
  'bilogOpenQuiet',
  'bilogOpenQuietShared',
  'bilogT0StatIno',
  'bilogUnshare',
  'bilogReadLiveShared',
  'bilogReadFileShared',
  'bilogMarkRead',
  'bilogT0Stat',
  'bilogStop',
] as const satisfies ReadonlyArray<keyof Addon>
type AddonFunction = { [K in keyof Addon]: Addon[K] extends (...args: never[]) => unknown ? K : never }[keyof Addon]
const everyFunctionListed: Exclude<AddonFunction, (typeof ADDON_FUNCTIONS)[number]> extends never ? true : never = true
void everyFunctionListed

// From src/native/ (vitest) and dist/native/ (after tsc) alike, the addon is two levels up.
const ADDON_PATH = '../../native/build/Release/bfs_native.node'
let loaded: Addon | undefined

function addon(): Addon {
  if (loaded) return loaded
  const require = createRequire(import.meta.url)
  let mod: Addon
  try {
    mod = require(ADDON_PATH) as Addon
  } catch (cause) {
    const err = new Error(
      `bfs native addon could not be loaded (${ADDON_PATH}): ${(cause as Error).message.split('\n')[0]}; run \`make native\``,
    ) as Error & { code: string }
    err.code = 'ERR_BFS_NATIVE_MISSING'
    throw err
  }
  if (mod.STAT_FIELDS !== STAT_FIELDS) {
    throw new Error(`bfs native addon is out of date: STAT_FIELDS ${mod.STAT_FIELDS}, expected ${STAT_FIELDS}; run \`make native\``)
  }
  const missing = ADDON_FUNCTIONS.filter((f) => typeof (mod as unknown as Record<string, unknown>)[f] !== 'function')
  if (missing.length) throw new Error(`bfs native addon is out of date (it has no ${missing.join(', ')}): run \`make native\``)
  loaded = mod
  return mod
}

/** The loaded addon, for the other typed wrappers of src/native/ (fastpath.ts): loaded and checked as above. */
export function loadAddon(): unknown {
  return addon()
}

/**
 * Lists a directory and lstat()s every child in one native call
 * (open(O_DIRECTORY) + readdir + fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)).
 *
 * `dirPath` itself is followed if it is a symlink (like readdir). A child that
 * vanishes between readdir and fstatat is still listed, with its record's
 * {@link S_ERRNO} set (e.g. 2 for ENOENT) and every other field 0.
 *
 * The name Buffers are views into one Buffer per call (one allocation per
 * directory instead of one per name, for speed): they do not overlap, but
 * `name.buffer` is shared, and keeping any one name keeps the directory's
 * whole name block alive; `Buffer.from(name)` makes an independent copy.
 *
 * `sorted`: in bytewise name order (as {@link scanDirAsync}), sorted in C.
 *
 * @throws {NativeError} when the directory cannot be opened or read:
 *   syscall `'opendir'` (ENOENT, ENOTDIR, EACCES, ...) or `'readdir'`.
 */
export function scanDir(dirPath: PathLike, sorted = false): DirScan {
  const { blob, ends, stats } = addon().scanDirPacked(dirPath, sorted)
  const count = ends.length
  const names: Buffer[] = new Array<Buffer>(count)
  let start = 0
  for (let i = 0; i < count; i++) {
    const end = ends[i]
    names[i] = blob.subarray(start, end)
    start = end
  }
  return { names, stats }
}

/** {@link scanDir} on the threadpool (the directory is read while this thread goes on), entries in bytewise name order. */
export async function scanDirAsync(dirPath: PathLike): Promise<DirScan> {
  const { blob, ends, stats } = await addon().scanDirAsync(dirPath)
  const count = ends.length
  const names: Buffer[] = new Array<Buffer>(count)
  let start = 0
  for (let i = 0; i < count; i++) {
    const end = ends[i]
    names[i] = blob.subarray(start, end)
    start = end
  }
  return { names, stats }
}

/** Why {@link readFilesAsync} left a file to the caller (`info[5i + 1]`). */
export enum ReadFileStep { Ok = 0, Dir = 1, Open = 2, Fstat = 3, Read = 4, TooBig = 5, Sparse = 6, NotRegular = 7 }
/** Flags of {@link readFilesAsync} (`info[5i + 3]`): the file has extended attributes (or flistxattr failed); the read ended before st_size. */
export const READ_FILE_XATTRS = 1
export const READ_FILE_SHORT = 2
/** int32 values per file in readFilesAsync's `info`, and the most 4 KiB blocks it reads of one file. */
export const READ_FILE_INFO = 5
export const READ_FILE_MAX_BLOCKS = 32

/**
 * The small regular files `names` of directory `dirPath` read on the threadpool in one call:
 * per file i, open (O_NOATIME when allowed), fstat → recs[36i…], the st_size bytes into `out`
 * at 4 KiB block slots[2i] (zero-filled to the block's end; at most slots[2i+1] blocks), fstat
 * again → recs[36i + 18…], whether it has xattrs, close. info[5i…5i+5): errno, the
 * {@link ReadFileStep} that stopped it (not Ok: the file was not read here, the caller's general
 * path takes it), bytes read, flags, the mask of its all-zero blocks. Nothing of it may be
 * touched until the promise settles.
 */
export function readFilesAsync(dirPath: PathLike, blob: Buffer, ends: Uint32Array, slots: Uint32Array, out: Buffer, recs: Float64Array, info: Int32Array): Promise<void> {
  return addon().readFilesAsync(dirPath, blob, ends, slots, out, recs, info)
}

/**
 * lstat() of one path as an 18-double record (see the `S_*` indices);
 * {@link S_ERRNO} is always 0.
 * @throws {NativeError} syscall `'lstat'`.
 */
export function lstatRecord(path: PathLike): Float64Array {
  return addon().lstatRecord(path)
}

/**
 * fstat() of an open file descriptor as an 18-double record.
 * @throws {NativeError} syscall `'fstat'` (e.g. EBADF).
 */
export function fstatRecord(fd: number): Float64Array {
  return addon().fstatRecord(fd)
}

/**
 * All extended attributes of a path, not following symlinks (llistxattr +
 * lgetxattr), in the order the filesystem lists them. Names are raw bytes
 * without a trailing NUL (e.g. `user.comment`); values are raw bytes.
 *
 * Returns `[]` when the file has none or the filesystem does not support
 * xattrs (ENOTSUP). An attribute removed between listing and reading is left out.
 * Only the namespaces the caller may read are listed (for non-root, `trusted.*`
 * is invisible).
 * @throws {NativeError} syscall `'llistxattr'` or `'lgetxattr'` (ENOENT, EACCES, ...).
 */
export function getXattrs(path: PathLike): Array<[name: Buffer, value: Buffer]> {
  return addon().getXattrs(path)
}

/**
 * lsetxattr(): creates or replaces one extended attribute, not following
 * symlinks. `name` includes its namespace (`user.foo`); a string name is
 * encoded as UTF-8. Values are at most 64 KiB on Linux (larger: E2BIG), and
 * filesystems may allow less (ext4: about one block for all of a file's xattrs, ENOSPC).
 * @throws {NativeError} syscall `'lsetxattr'`: ENOTSUP (no xattr support, or an
 *   unknown namespace), EPERM (`user.*` on a symlink or device file; `trusted.*`
 *   as non-root), ENOENT, EACCES, E2BIG, ENOSPC, ERANGE (name too long).
 */
export function setXattr(path: PathLike, name: Buffer | string, value: Buffer): void {
  addon().setXattr(path, name, value)
}

/**
 * The data regions of an open file, found with lseek(SEEK_DATA / SEEK_HOLE),
 * as `[start0, end0, start1, end1, ...]` byte offsets within `[0, sizeBytes)`,
 * in ascending order, not touching each other.
 *
 * - A file with no holes gives `[0, size]`; an empty or all-hole file gives `[]`.
 * - Granularity is the filesystem's: a region is usually whole blocks (4096
 *   bytes on ext4/tmpfs), clipped to `sizeBytes`.
 * - Where the filesystem does not support SEEK_DATA (EINVAL/EOPNOTSUPP), the
 *   rest of the file counts as data: `[0, size]`.
 * - If the file shrank below `sizeBytes`, regions stop at its real end.
 *
 * The file offset of `fd` is restored before returning.
 * @param sizeBytes the file's size as the caller saw it (usually from fstat).
 * @throws {NativeError} syscall `'lseek'` (EBADF; ESPIPE for a pipe or socket).
 */
export function dataRegions(fd: number, sizeBytes: number): number[] {
  return addon().dataRegions(fd, sizeBytes)
}

/**
 * utimensat(): sets access and modification times with nanosecond precision.
 * Seconds are integers since the epoch and may be negative or above 2^32
 * (within ±(2^53 - 1); the filesystem may clamp what it stores: ext4 with
 * 256-byte inodes keeps 1901..2446); nanoseconds are integers 0..999999999.
 *
 * @param nofollow `true` uses AT_SYMLINK_NOFOLLOW, setting a symlink's own times.
 * @throws {NativeError} syscall `'utimensat'` (ENOENT, EPERM, EACCES, ...).
 * @throws {RangeError} code ERR_OUT_OF_RANGE for a non-integer second or
 *   nanoseconds outside 0..999999999.
 */
export function setTimes(
  path: PathLike,
  atimeSec: number,
  atimeNsec: number,
  mtimeSec: number,
  mtimeNsec: number,
  nofollow: boolean,
): void {
  addon().setTimes(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec, nofollow)
}

/**
 * mknod(path, mode, makedev(major, minor)). `mode` includes the file type bits
 * (S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK, or S_IFREG for an empty regular file)
 * and the permission bits, which the process umask reduces as usual. The
 * device numbers matter only for S_IFCHR / S_IFBLK.
 * @throws {NativeError} syscall `'mknod'`: EEXIST, EPERM (a device node without
 *   CAP_MKNOD), EINVAL (bad file type), ENOENT, EACCES.
 */
export function mknod(path: PathLike, mode: number, rdevMajor: number, rdevMinor: number): void {
  addon().mknod(path, mode, rdevMajor, rdevMinor)
}

/**
 * The size in bytes of an open block device: ioctl(fd, BLKGETSIZE64).
 * (fstat reports a block device's st_size as 0.)
 * @throws {NativeError} syscall `'ioctl'`: ENOTTY when `fd` is not a block device, EBADF.
 */
export function blockDeviceSize(fd: number): number {
  return addon().blockDeviceSize(fd)
}

/**
 * The logical block size of an open block device: ioctl(fd, BLKSSZGET), usually 512 or
 * 4096. An O_DIRECT read's file offset, length and buffer address must be multiples of it.
 * @throws {NativeError} syscall `'ioctl'`: ENOTTY when `fd` is not a block device, EBADF.
 */
export function blockDeviceSectorSize(fd: number): number {
  return addon().blockDeviceSectorSize(fd)
}

/**
 * ioctl(fd, BLKFLSBUF): writes the block device's dirty page-cache pages and drops its
 * clean ones. Needs CAP_SYS_ADMIN.
 * @throws {NativeError} syscall `'ioctl'`: EACCES without CAP_SYS_ADMIN, ENOTTY when
 *   `fd` is not a block device.
 */
export function flushBlockDevice(fd: number): void {
  addon().flushBlockDevice(fd)
}

/**
 * A zero-filled Buffer of `bytes` bytes whose memory starts on a 4096-byte boundary
 * (posix_memalign; freed when the Buffer is garbage-collected). O_DIRECT reads need an
 * aligned buffer address, which Node's own Buffers do not have; a 4096-multiple offset
 * into this one is aligned too. `bytes` is 1 … 1 GiB.
 * @throws {NativeError} syscall `'posix_memalign'` (ENOMEM).
 */
/**
 * madvise(MADV_HUGEPAGE) on the 2 MiB-aligned part of a large, long-lived buffer: its first
 * touch costs one page fault per 2 MiB instead of one per 4 KiB (tens of microseconds each in
 * a VM). False when nothing was advised; harmless either way.
 */
export function adviseHugePages(buf: Uint8Array): boolean {
  return addon().adviseHugePages(buf)
}

/**
 * A format 2 DIR piece's listing as the patched binding's readdir takes it (native/dirlist.c):
 * names = one Buffer (".", "..", then each entry's name, each ended by a NUL), stats =
 * STAT_FIELDS doubles per name with slots 0 and 1 left zero; inode numbers inoBase + ord.
 * null: declined (a hard-linked entry, or a piece the JavaScript decoder would refuse).
 */
export function dirListing(payload: Buffer, inoBase: number): [names: Buffer, stats: Float64Array] | null {
  return addon().dirListing(payload, inoBase)
}

/**
 * Tests: dirListing's answer read as the native readdir and its lookups read a piece
 * (native/dirsrc.c): names and heads (st_mode and inode number per entry) from the quick pass
 * (dl_heads), each stat from its entry's full read (dl_entry_stat; left zero for an entry it
 * declines, which `declined` counts). null: the quick pass declines.
 */
export function dirListingLazyForTest(payload: Buffer, inoBase: number): [names: Buffer, stats: Float64Array, heads: Float64Array, declined: number] | null {
  return addon().dirListingLazyForTest(payload, inoBase)
}

/**
 * A format 2 directory page (a DIR payload, or a DIRDELTA payload and its base DIR's) as rows
 * of DIR_ROW doubles (native/dirlist.h, dl_scan) after the page's entry count: offsets of
 * each entry, its name and its directory ref in the payload (src 0) or the base (src 1), in
 * name order; with `keep`, only directories with a piece and entries of that name; `baseRows`:
 * what dirScan(base) returned (a base shared by many deltas parsed once). null: declined
 * (anything the JavaScript decoder might refuse): read it in JavaScript.
 */
export function dirScan(payload: Buffer, base: Buffer | null, keep: Buffer | null = null, baseRows: Float64Array | null = null): Float64Array | null {
  return addon().dirScan(payload, base, keep, baseRows)
}

/**
 * A stored piece decompressed (one whole zstd frame with its content size, at most maxRaw
 * bytes) and checked against its id (keyed BLAKE3 of the raw bytes) in one call; null when
 * anything is wrong (the caller's own checks then name it).
 */
export function pieceRaw(stored: Buffer, maxRaw: number, key: Uint8Array | null, id: Buffer): Buffer | null {
  return addon().pieceRaw(stored, maxRaw, key, id)
}

/**
 * findWalk's answer (native/findwalk.c): per generation its match count (its rows follow
 * those of the generations before) or -1, declined (walk it in JavaScript); every match's
 * path ('/' + names from the root) as offset and length in `paths` and its entry number
 * (three doubles a match); the matched entries' bytes as their pieces hold them (readEntry
 * decodes one), two doubles an entry (start, end in `ents`); the pieces read.
 */
export type FindWalkResult = [counts: Float64Array, paths: Buffer, rows: Float64Array, ents: Buffer, entOffs: Float64Array, piecesRead: number]

/**
 * bfs find's walk of format 2 generations in C, one call for the whole search: `root` the
 * repository's directory (packs read there), `key` the piece id key, `spec` the pattern
 * (PathPattern.nativeSpec), five doubles a generation in `refs` (run, pack, offset, stored
 * length, entry count of its root directory's piece) and 32 bytes a generation in `ids`.
 */
/**
 * A zstd dictionary of at most `capacity` bytes trained on `samples` (zstd's fastCover, as
 * `zstd --train`; its id comes from its content). Throws RangeError when zstd cannot train
 * one. Synchronous and CPU-bound (a second or so for 16 MiB of samples): compact's thread only.
 */
export function trainDictionary(samples: readonly Buffer[], capacity: number): Buffer {
  const sizes = Buffer.alloc(4 * samples.length)
  samples.forEach((b, i) => sizes.writeUInt32LE(b.length, 4 * i))
  return addon().trainDictionary(Buffer.concat(samples as Buffer[]), sizes, capacity)
}

export function findWalk(root: Buffer, key: Buffer, spec: Buffer, refs: Float64Array, ids: Buffer): FindWalkResult {
  return addon().findWalk(root, key, spec, refs, ids)
}

/**
 * Two directory pages (each as dirScan takes it: a DIR payload, or a DIRDELTA's with its base
 * DIR's and optionally the base's rows) merged by name in C for bfs diff: [0] and [1] the
 * entry counts of A and B, then five doubles for each name whose entries differ: kind (1 only
 * in A, 2 only in B, 3 both, other bytes), A's payload (0, or 1 its base) and entry offset,
 * B's (-1 where absent). Entries with equal bytes are left out. null: declined.
 */
export function dirDiff(a: Buffer, baseA: Buffer | null, baseRowsA: Float64Array | null, b: Buffer, baseB: Buffer | null, baseRowsB: Float64Array | null): Float64Array | null {
  return addon().dirDiff(a, baseA, baseRowsA, b, baseB, baseRowsB)
}

export function alignedBuffer(bytes: number): Buffer {
  return addon().alignedBuffer(bytes)
}

/**
 * ioctl(fd, FIFREEZE) on an fd of a filesystem's mount point (any file of it): syncs the
 * filesystem and blocks every writer to it until {@link thawFs}. The freeze belongs to the
 * filesystem, not to the fd or the process: it outlives both. Needs CAP_SYS_ADMIN.
 * @throws {NativeError} syscall `'ioctl'`: EBUSY already frozen, EOPNOTSUPP a filesystem
 *   that cannot be frozen, EPERM without CAP_SYS_ADMIN.
 */
export function freezeFs(fd: number): void {
  addon().freezeFs(fd)
}

/**
 * ioctl(fd, FITHAW): thaws a filesystem frozen with {@link freezeFs}.
 * @throws {NativeError} syscall `'ioctl'`: EINVAL when it is not frozen, EPERM.
 */
export function thawFs(fd: number): void {
  addon().thawFs(fd)
}

/**
 * Becomes a daemon in place: setsid() (an existing session leader is fine), then
 * dup2(fd, 1) and dup2(fd, 2), so stdout and stderr go to `fd` (a log file) and
 * a terminal or pipe that waited on them is released.
 * @throws {NativeError} syscall `'setsid'` or `'dup2'`.
 */
export function detach(fd: number): void {
  addon().detach(fd)
}

/**
 * Ends the process with _exit(code) after `ms` unless it has ended by then: armed right
 * before process.exit(), it bounds an exit that hangs in C exit handlers (native/bfs_native.c).
 */
export function exitWatchdog(ms: number, code: number): void {
  addon().exitWatchdog(ms, code)
}

/**
 * posix_fadvise(fd, offset, len, advice): a hint to the kernel's page cache
 * (`lengthBytes` 0 means "to the end of the file"). Failures of the call are
 * ignored: returns `true` when the kernel accepted the hint, `false` otherwise
 * (e.g. a pipe, a bad fd).
 * @throws {TypeError} code ERR_INVALID_ARG_VALUE for an unknown `advice`.
 */
export function fadvise(fd: number, offsetBytes: number, lengthBytes: number, advice: FadviseAdvice): boolean {
  return addon().fadvise(fd, offsetBytes, lengthBytes, advice)
}

/**
 * cachestat(2): how many pages of the file's range [offsetBytes, offsetBytes + lengthBytes)
 * are in the page cache, dirty and under writeback (`lengthBytes` 0: to the end of the file);
 * null where the kernel cannot say (Linux < 6.5, or a file without a page cache).
 */
export function cachestat(fd: number, offsetBytes: number, lengthBytes: number): [cached: number, dirty: number, writeback: number] | null {
  return addon().cachestat(fd, offsetBytes, lengthBytes)
}

/** What {@link flock} does: take an exclusive or a shared lock, or release it. */
export type FlockMode = 'exclusive' | 'shared' | 'unlock'

/**
 * flock(fd, mode | LOCK_NB): an advisory whole-file lock that never blocks. Returns `true`
 * when the lock was taken (or released), `false` when another open file description holds
 * a conflicting lock. The lock belongs to the open file description, so two opens of one
 * file in the same process conflict like two processes do; it is released by `'unlock'`,
 * by the last close of the descriptor, and by the kernel when the process dies (even by
 * kill -9), so a crashed holder never leaves it behind. Wait by polling with a timer.
 * @throws {NativeError} syscall `'flock'`: EBADF, EINTR never (retried), ENOLCK.
 * @throws {TypeError} code ERR_INVALID_ARG_VALUE for an unknown `mode`.
 */
export function flock(fd: number, mode: FlockMode): boolean {
  return addon().flock(fd, mode)
}

/**
 * XXH64 with `seed` (default 0; a BigInt in 0 … 2^64-1) of each of `blocks` 4096-byte blocks
 * of `src` starting at byte `srcOffset`, written as 8 little-endian bytes each into `out` at
 * `outOffset`. Throws RangeError if either range falls outside its buffer.
 */
export function hashBlocks(src: Buffer, srcOffset: number, blocks: number, out: Buffer, outOffset: number, seed: bigint = 0n): void {
  addon().hashBlocks(src, srcOffset, blocks, out, outOffset, seed)
}

/** XXH64 with `seed` (default 0) of the whole of `src`, written as 8 little-endian bytes into `out` at `outOffset`. */
export function xxh64Into(src: Buffer, out: Buffer, outOffset: number, seed: bigint = 0n): void {
  addon().xxh64Into(src, out, outOffset, seed)
}

// ---- AEAD ---------------------------------------------------------------------------------

/** aeadSeal/aeadOpen's AEADs: 0 AES-256-GCM, 1 ChaCha20-Poly1305. */
export const AEAD_AES256GCM = 0
export const AEAD_CHACHA20POLY1305 = 1

/**
 * Seals `src[srcOffset, srcOffset + srcLength)` into `out` at `outOffset`: the ciphertext, then
 * the 16-byte tag; returns srcLength + 16. The messages node:crypto's createCipheriv makes
 * (native/aead.c, on the OpenSSL inside node), with no allocation. `out`'s range may be the
 * source's exactly (in place; then 16 bytes more), else must not overlap it (RangeError).
 */
export function aeadSeal(alg: number, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, src: Uint8Array, srcOffset: number, srcLength: number, out: Uint8Array, outOffset: number): number {
  return addon().aeadSeal(alg, key, nonce, aad, src, srcOffset, srcLength, out, outOffset)
}

/**
 * Opens `src[srcOffset, srcOffset + srcLength)` (ciphertext ‖ 16-byte tag) into `out` at
 * `outOffset`: returns srcLength - 16, or -1 when it does not authenticate (the bytes written
 * are then garbage, never to be used). In place or apart, as aeadSeal.
 */
export function aeadOpen(alg: number, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, src: Uint8Array, srcOffset: number, srcLength: number, out: Uint8Array, outOffset: number): number {
  return addon().aeadOpen(alg, key, nonce, aad, src, srcOffset, srcLength, out, outOffset)
}

/**
 * scrypt(pass, salt, N, r, p) → outLen bytes (RFC 7914: the bytes node:crypto's scrypt gives),
 * computed on the threadpool by libsodium's escrypt (native/scrypt.c: ~30 % less CPU here than
 * OpenSSL's, which node:crypto runs). Rejects with an errno Error (EINVAL: parameters it
 * refuses, e.g. N not a power of 2; ENOMEM).
 */
export function scryptAsync(pass: Uint8Array, salt: Uint8Array, N: number, r: number, p: number, outLen: number): Promise<Buffer> {
  return addon().scryptAsync(pass, salt, N, r, p, outLen)
}

/** The libsodium scryptAsync uses. */
export function scryptVersion(): string {
  return addon().scryptVersion
}

/** The OpenSSL aeadSeal/aeadOpen use (the one inside node). */
export function aeadVersion(): string {
  return addon().aeadVersion
}

// ---- BLAKE3 -------------------------------------------------------------------------------

/** An incremental BLAKE3 state held by the addon (freed with the object that holds it). */
declare const blake3HandleBrand: unique symbol
type Blake3Handle = { readonly [blake3HandleBrand]: true }

/** Bytes of a BLAKE3 key (keyed mode). */
export const BLAKE3_KEY_BYTES = 32
/** Bytes of a standard BLAKE3 digest; longer outputs (up to 65,536 bytes) extend it (XOF). */
export const BLAKE3_OUT_BYTES = 32

/**
 * BLAKE3 of `src[srcOffset, srcOffset + srcLength)` written into `out[outOffset, outOffset +
 * outLength)`: the plain hash when `key` is null, keyed mode (a PRF) with a 32-byte `key`.
 * `outLength` 32 is the standard digest; 1 … 65,536 bytes are the extended output, of which
 * the standard digest is a prefix. Runs on the calling thread (BLAKE3's official C code with
 * its run-time SIMD dispatch: AVX-512, AVX2, SSE4.1, SSE2 or portable). Throws RangeError if
 * a range falls outside its buffer or the key is not 32 bytes.
 */
export function blake3Into(
  src: Uint8Array,
  srcOffset: number,
  srcLength: number,
  key: Uint8Array | null,
  out: Uint8Array,
  outOffset: number,
  outLength: number = BLAKE3_OUT_BYTES,
): void {
  addon().blake3Into(src, srcOffset, srcLength, key, out, outOffset, outLength)
}

/** BLAKE3 of all of `data` (keyed if `key` is given), `outBytes` long (default 32). */
export function blake3(data: Uint8Array, key: Uint8Array | null = null, outBytes: number = BLAKE3_OUT_BYTES): Buffer {
  const out = Buffer.alloc(outBytes)
  addon().blake3Into(data, 0, data.length, key, out, 0, outBytes)
  return out
}

/**
 * Incremental BLAKE3 for inputs that arrive in pieces or are too large for one buffer:
 * `update()` any number of times, then `digest()`. The state stays usable after `digest()`
 * (more `update()`s extend the same input), and `reset()` starts over with the same key.
 * Feeding the input in any split gives the one-shot {@link blake3} result.
 */
export class Blake3Hasher {
  private readonly handle: Blake3Handle

  /** `key`: 32 bytes for keyed mode; null or omitted for the plain hash. */
  constructor(key: Uint8Array | null = null) {
    this.handle = addon().blake3HasherNew(key)
  }

  /** Adds `data[offset, offset + length)` (default: all of it from `offset`). */
  update(data: Uint8Array, offset = 0, length: number = data.length - offset): this {
    addon().blake3HasherUpdate(this.handle, data, offset, length)
    return this
  }

  /** The digest of everything added so far, `outBytes` long (1 … 65,536; default 32). */
  digest(outBytes: number = BLAKE3_OUT_BYTES): Buffer {
    const out = Buffer.alloc(outBytes)
    addon().blake3HasherFinal(this.handle, out, 0, outBytes)
    return out
  }

  /** Writes the digest so far into `out[outOffset, outOffset + outLength)`. */
  digestInto(out: Uint8Array, outOffset: number, outLength: number = BLAKE3_OUT_BYTES): void {
    addon().blake3HasherFinal(this.handle, out, outOffset, outLength)
  }

  /** Forgets the input; the key stays. */
  reset(): this {
    addon().blake3HasherReset(this.handle)
    return this
  }
}

/** The version of BLAKE3's C sources the addon was built from (Debian's librust-blake3-dev). */
export function blake3Version(): string {
  return addon().blake3Version
}

// ---- directory-fd-relative calls ------------------------------------------------------

/**
 * Linux constants for the directory-fd-relative calls below, as the addon was compiled
 * with them (O_DIRECTORY and O_NOFOLLOW differ between architectures, and Node's
 * `fs.constants` has neither O_PATH nor the RESOLVE_* and AT_* flags).
 */
export interface AtConstants {
  readonly O_RDONLY: number
  readonly O_WRONLY: number
  readonly O_RDWR: number
  readonly O_CREAT: number
  readonly O_EXCL: number
  readonly O_TRUNC: number
  readonly O_NOFOLLOW: number
  readonly O_DIRECTORY: number
  /** An fd that names a file without opening it: usable as a dirFd, not for reading. */
  readonly O_PATH: number
  readonly O_NONBLOCK: number
  /** openat2: refuse to cross a mount point. */
  readonly RESOLVE_NO_XDEV: number
  /** openat2: refuse /proc "magic links" (/proc/self/fd/N and the like). */
  readonly RESOLVE_NO_MAGICLINKS: number
  /** openat2: refuse any symlink in any component, the last one included (ELOOP). */
  readonly RESOLVE_NO_SYMLINKS: number
  /** openat2: refuse to leave the directory of dirFd (absolute paths, escaping "..": EXDEV). */
  readonly RESOLVE_BENEATH: number
  readonly RESOLVE_IN_ROOT: number
  /** The current directory as a dirFd (-100). */
  readonly AT_FDCWD: number
  readonly AT_SYMLINK_NOFOLLOW: number
  readonly AT_SYMLINK_FOLLOW: number
  /** unlinkat: remove a directory (which must be empty) instead of a non-directory. */
  readonly AT_REMOVEDIR: number
  /** An empty path means dirFd itself. */
  readonly AT_EMPTY_PATH: number
  /** renameat2: fail with EEXIST instead of replacing. */
  readonly RENAME_NOREPLACE: number
  /** renameat2: swap the two names atomically (both must exist). */
  readonly RENAME_EXCHANGE: number
}

/** The constants the *at calls take (loads the addon). */
export function atConstants(): AtConstants {
  return addon().atConstants
}

/**
 * openat2(dirFd, path, {flags | O_CLOEXEC, mode, resolve}) → a new file descriptor
 * (close it with `fs.closeSync`). `resolve` is a mask of `RESOLVE_*` flags that the
 * kernel applies to every component of `path` atomically with the lookup: with
 * `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH` no symlink anywhere in the path is
 * followed (ELOOP) and the path cannot leave `dirFd`'s directory (EXDEV). `mode`
 * (permission bits, reduced by the umask) counts only with O_CREAT. EAGAIN (a
 * concurrent rename raced a `..` lookup) is retried inside.
 *
 * On a kernel without openat2 (ENOSYS: Linux before 5.6, or a seccomp filter), a
 * `resolve` of `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH` (optionally with
 * `RESOLVE_NO_MAGICLINKS`) falls back to {@link openBeneathWalk}.
 * @param dirFd a directory fd, or `AT_FDCWD`.
 * @param quietErrno an errno number (e.g. `os.constants.errno.EEXIST`) that is an expected
 *   outcome: the call then returns its negation instead of throwing. A thrown error costs
 *   about 30 µs (an Error and its stack trace), which for a restore with `--overwrite`
 *   onto an existing tree was a third of the CPU time per file.
 * @returns the new fd, or `-quietErrno`.
 * @throws {NativeError} syscall `'openat2'` (or `'openat'` from the fallback): ELOOP
 *   (a symlink where none may be), EXDEV (would leave dirFd), ENOENT, EEXIST
 *   (O_CREAT | O_EXCL), ENOTDIR, EACCES, EINVAL (bad flags).
 */
export function openat2(dirFd: number, path: PathLike, flags: number, mode: number, resolve: number, quietErrno?: number): number {
  return addon().openat2(dirFd, path, flags, mode, resolve, quietErrno)
}

/**
 * The fallback of {@link openat2} for `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH`, callable on
 * its own: opens `path` one component at a time, each directory with
 * `O_PATH | O_DIRECTORY | O_NOFOLLOW` relative to the one before, the last with
 * `flags | O_NOFOLLOW | O_CLOEXEC`. A symlink anywhere fails with ELOOP (except an
 * `O_PATH | O_NOFOLLOW` open of a final symlink, which returns it, as openat2 does); an
 * absolute path or any `..` component fails with EXDEV; an empty path with ENOENT.
 * @throws {NativeError} syscall `'openat'`.
 */
export function openBeneathWalk(dirFd: number, path: PathLike, flags: number, mode: number): number {
  return addon().openBeneathWalk(dirFd, path, flags, mode)
}

/**
 * close(fd), for fds this addon opened. (Node's `fs.closeSync` closes them too, but in a
 * worker thread it warns about an fd that thread's `fs` did not open.)
 * @throws {NativeError} syscall `'close'` (EBADF).
 */
export function close(fd: number): void {
  addon().close(fd)
}

/**
 * mkdirat(dirFd, path, mode). The last component is never followed (an existing
 * symlink there is EEXIST). Intermediate components are resolved as usual, symlinks
 * included: give a single name relative to a directory fd you trust.
 * @throws {NativeError} syscall `'mkdirat'` (EEXIST, ENOENT, ENOTDIR, EACCES, ENOSPC).
 */
export function mkdirat(dirFd: number, path: PathLike, mode: number): void {
  addon().mkdirat(dirFd, path, mode)
}

/**
 * symlinkat(target, dirFd, path): creates the symlink `path` (never following an
 * existing one: EEXIST) whose contents are `target` (raw bytes allowed).
 * @throws {NativeError} syscall `'symlinkat'`.
 */
export function symlinkat(target: PathLike, dirFd: number, path: PathLike): void {
  addon().symlinkat(target, dirFd, path)
}

/**
 * mknodat(dirFd, path, mode, makedev(major, minor)): as {@link mknod}, relative to dirFd.
 * @throws {NativeError} syscall `'mknodat'` (EEXIST, EPERM for a device without CAP_MKNOD).
 */
export function mknodat(dirFd: number, path: PathLike, mode: number, rdevMajor: number, rdevMinor: number): void {
  addon().mknodat(dirFd, path, mode, rdevMajor, rdevMinor)
}

/**
 * linkat(oldDirFd, oldPath, newDirFd, newPath, flags): a hard link. With `flags` 0 a
 * symlink at `oldPath` is linked itself, not followed (`AT_SYMLINK_FOLLOW` follows it).
 * `newPath` is never followed (EEXIST).
 * @throws {NativeError} syscall `'linkat'` (path is `newPath`): EEXIST, ENOENT, EXDEV,
 *   EPERM (fs.protected_hardlinks, a directory), EMLINK.
 */
export function linkat(oldDirFd: number, oldPath: PathLike, newDirFd: number, newPath: PathLike, flags = 0): void {
  addon().linkat(oldDirFd, oldPath, newDirFd, newPath, flags)
}

/**
 * renameat2(oldDirFd, oldPath, newDirFd, newPath, flags): neither last component is
 * followed: renaming onto a symlink replaces the symlink, never its target.
 * `RENAME_NOREPLACE` fails with EEXIST instead of replacing; `RENAME_EXCHANGE` swaps
 * the two atomically.
 * @throws {NativeError} syscall `'renameat2'` (path is `newPath`): ENOENT, EISDIR (a
 *   non-directory onto a directory), ENOTDIR, ENOTEMPTY, EXDEV (another filesystem), EINVAL.
 */
export function renameat2(oldDirFd: number, oldPath: PathLike, newDirFd: number, newPath: PathLike, flags = 0): void {
  addon().renameat2(oldDirFd, oldPath, newDirFd, newPath, flags)
}

/**
 * unlinkat(dirFd, path, flags): removes a name, never following it (a symlink is
 * removed itself). With `AT_REMOVEDIR` removes an empty directory (ENOTEMPTY otherwise).
 * @throws {NativeError} syscall `'unlinkat'` (ENOENT, EISDIR, ENOTDIR, ENOTEMPTY, EBUSY).
 */
export function unlinkat(dirFd: number, path: PathLike, flags = 0): void {
  addon().unlinkat(dirFd, path, flags)
}

/**
 * fstatat(dirFd, path, flags) as an 18-double record (see the `S_*` indices);
 * `AT_SYMLINK_NOFOLLOW` describes a symlink itself, `AT_EMPTY_PATH` with `''` dirFd itself.
 * @throws {NativeError} syscall `'fstatat'`.
 */
export function fstatatRecord(dirFd: number, path: PathLike, flags: number): Float64Array {
  return addon().fstatatRecord(dirFd, path, flags)
}

/**
 * fchownat(dirFd, path, uid, gid, flags); -1 leaves that id as it is.
 * `AT_SYMLINK_NOFOLLOW` changes a symlink itself (as lchown).
 * @throws {NativeError} syscall `'fchownat'` (EPERM without CAP_CHOWN, EINVAL for an id
 *   the user namespace cannot map).
 */
export function fchownat(dirFd: number, path: PathLike, uid: number, gid: number, flags: number): void {
  addon().fchownat(dirFd, path, uid, gid, flags)
}

/**
 * Sets permission bits (0..0o7777) relative to dirFd: the fchmodat2 system call (Linux
 * 6.6), where `AT_SYMLINK_NOFOLLOW` makes a symlink fail with ENOTSUP instead of its
 * target changing, and `AT_EMPTY_PATH` with `''` means dirFd itself. On older kernels
 * glibc's fchmodat, which emulates `AT_SYMLINK_NOFOLLOW` safely through an O_PATH fd.
 * @throws {NativeError} syscall `'fchmodat2'` (or `'fchmodat'`): ENOTSUP (a symlink with
 *   AT_SYMLINK_NOFOLLOW), EPERM, ENOENT.
 */
export function fchmodat(dirFd: number, path: PathLike, mode: number, flags: number): void {
  addon().fchmodat(dirFd, path, mode, flags)
}

/**
 * utimensat(dirFd, path, times, flags) with nanoseconds (ranges as {@link setTimes});
 * `AT_SYMLINK_NOFOLLOW` sets a symlink's own times.
 * @throws {NativeError} syscall `'utimensat'`.
 */
export function utimensat(dirFd: number, path: PathLike, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, flags: number): void {
  addon().utimensat(dirFd, path, atimeSec, atimeNsec, mtimeSec, mtimeNsec, flags)
}

/**
 * futimens(fd, times): access and modification times of an open file, with
 * nanoseconds (ranges as {@link setTimes}). A later write changes mtime again.
 * @throws {NativeError} syscall `'futimens'` (EBADF: also for an O_PATH fd).
 */
export function futimens(fd: number, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void {
  addon().futimens(fd, atimeSec, atimeNsec, mtimeSec, mtimeNsec)
}

/**
 * fsetxattr(fd, name, value): as {@link setXattr} on an open file (EBADF for an O_PATH fd).
 * @throws {NativeError} syscall `'fsetxattr'`.
 */
export function fsetxattr(fd: number, name: Buffer | string, value: Buffer): void {
  addon().fsetxattr(fd, name, value)
}

/**
 * Sets one extended attribute relative to dirFd: the setxattrat system call (Linux
 * 6.13), `AT_SYMLINK_NOFOLLOW` for a symlink itself, `AT_EMPTY_PATH` with `''` for
 * dirFd itself. On older kernels (ENOSYS) fsetxattr(dirFd) for the empty path, else
 * lsetxattr (setxattr without AT_SYMLINK_NOFOLLOW) of `/proc/self/fd/<dirFd>/<path>`:
 * the magic link leads to dirFd's directory without resolving its path again.
 * @throws {NativeError} syscall `'setxattrat'`: the errors of {@link setXattr}.
 */
export function setxattrat(dirFd: number, path: PathLike, name: Buffer | string, value: Buffer, flags: number): void {
  addon().setxattrat(dirFd, path, name, value, flags)
}

// ---- before-image capture (native/bilog.c; native-notes/bilog.md) ----

/** Opaque handle of a running capture (an N-API external). */
export type BiCaptureHandle = { readonly __brand: 'BiCaptureHandle' }

/** Why a file (or the whole run) is not covered by a capture (format.md §2.16.1, kind 3). */
export const BI_REASON = { fdAtT0: 1, unclassified: 4, listener: 5, mappingAtT0: 6 } as const

/** A file with a writable fd or a shared writable mapping open at T0 (found in /proc). */
export interface BiUncovered {
  reason: number
  pid: number
  /** -1 for a mapping. */
  fd: number
  dev: number
  ino: number
  /** As /proc showed it (the fd's link, or the mapping's path). */
  path: string
}

/** Counters of a capture; `voidReason` non-zero means the run cannot be trusted. */
export interface BiStats {
  events: number
  /** Events of bfs's own threads (allowed at once). */
  ownEvents: number
  openEvents: number
  /** Events that needed no record (reads by other processes, private mappings, …). */
  skipped: number
  firstSights: number
  /** Image records and the bytes they hold. */
  images: number
  imageBytes: number
  truncates: number
  uncovered: number
  logBytes: number
  records: number
  /** Blocks bfs had marked read and a writer changed afterwards (reading them again fails). */
  staleBlocks: number
  /** 0, or {@link BI_REASON}.listener when the listener stalled or a capture-file write failed. */
  voidReason: number
  /** errno of a failed capture-file write, else 0. */
  logErrno: number
  /** Files bfs had read in full (every T0 block read or logged): their writers raise no more events. */
  settled: number
  /** {@link BiCapture.openQuiet} calls served through the quiet tree: no event, no round trip. */
  treeOpens: number
  /**
   * How events woke the listeners (native-notes/bilog.md, "One listener woken, on the writer's
   * CPU"): other processes' events; those answered from another CPU than the writer's while one
   * listener is woken per event; those whose writer was on another CPU than the previous
   * foreign event's; how often the listeners' registration changed; how often every listener came to be
   * woken for a while (writers hopping between CPUs).
   */
  followEvents: number
  followRemote: number
  followHops: number
  followReorders: number
  followAllwake: number
  /**
   * Small files (T0 size ≤ 64 KiB; `BFS_BILOG_PREREAD=BYTES` for another limit, 0 for none) read
   * whole by the listener at their first event that may change them, and their bytes: their
   * content at T0, laid over by every read (stored as the file's data, not kept in the BI log;
   * not counted in `images` / `imageBytes`). native-notes/bilog.md, "Small files read whole".
   */
  preReads: number
  preReadBytes: number
}

/** What a file looked like at T0. */
export interface BiT0Stat {
  sizeBytes: number
  mtimeSec: number
  mtimeNsec: number
  ctimeSec: number
  ctimeNsec: number
  /** i_generation, 0 when the filesystem has none. */
  igen: number
  /** A {@link BI_REASON} when the capture does not cover this file, else 0. */
  uncovered: number
}

function biStats(v: Float64Array): BiStats {
  return {
    events: v[0], ownEvents: v[1], openEvents: v[2], skipped: v[3], firstSights: v[4], images: v[5], imageBytes: v[6],
    truncates: v[7], uncovered: v[8], logBytes: v[9], records: v[10], staleBlocks: v[11], voidReason: v[12], logErrno: v[13],
    settled: v[14], treeOpens: v[15], followEvents: v[16], followRemote: v[17], followHops: v[18], followReorders: v[19], followAllwake: v[20],
    preReads: v[21], preReadBytes: v[22],
  }
}

/**
 * A running before-image capture on one filesystem (Linux ≥ 6.14, root; ext4, xfs, btrfs).
 *
 * The listener is a C thread of this process (never Node's event loop); a watchdog
 * process (the program bfs-bilog-wd, next to the addon) voids the run and answers writers itself when the listener stalls for `stallMs`,
 * and exits when this process dies (the kernel then releases every writer).
 * Read files through {@link readAtT0}; say what you have stored with {@link markRead}.
 */
export class BiCapture {
  private constructor(private readonly h: BiCaptureHandle) {}

  /**
   * Sets the filesystem mark on the filesystem holding `watchPath`; T0 is the moment it is
   * in place (when this returns). `logPath` is created (truncated) before the mark.
   *
   * @param opts.stallMs watchdog limit in ms (default 10000).
   * @param opts.fifoPriority SCHED_FIFO priority of the listener, 1 … 99 (default 10), -1: do not ask.
   * @param opts.preReadMax files of at most this many bytes at T0 are read whole at their first
   *   event that may change them (default 64 KiB, or `BFS_BILOG_PREREAD`), -1: never.
   * @throws {NativeError} syscall `'fanotify_mark'` with code `'ENOTSUP'` on tmpfs, FUSE,
   *   overlayfs (no pre-content hooks) — {@link biUnsupportedMessage} words it for the user —,
   *   `'EINVAL'` on kernels without pre-content events, `'EPERM'` without CAP_SYS_ADMIN;
   *   `'open'` for the capture file.
   */
  static start(watchPath: PathLike, logPath: PathLike, opts: { stallMs?: number; fifoPriority?: number; preReadMax?: number } = {}): BiCapture {
    return new BiCapture(addon().bilogStart(watchPath, logPath, opts.stallMs ?? 0, opts.fifoPriority ?? 0, opts.preReadMax ?? 0))
  }

  /**
   * T0 (wall clock), whether the listener got SCHED_FIFO (and the errno when not), the
   * watchdog's pid, and `quietTreeErrno`: 0 when {@link openQuiet} opens through the quiet tree
   * (a private clone of the watched mount whose opens and reads raise no events), else why not.
   */
  info(): { t0Sec: number; t0Nsec: number; fifo: boolean; schedErrno: number; fsDev: number; watchdogPid: number; quietTreeErrno: number } {
    const v = addon().bilogInfo(this.h)
    return { t0Sec: v[0], t0Nsec: v[1], fifo: v[2] === 1, schedErrno: v[3], fsDev: v[4], watchdogPid: v[5], quietTreeErrno: v[6] }
  }

  stats(): BiStats {
    return biStats(addon().bilogStats(this.h))
  }

  /** Files with a writable fd or shared writable mapping open at T0 (scanned before and after the mark). */
  uncovered(): BiUncovered[] {
    return addon().bilogUncovered(this.h).map(([reason, pid, fd, dev, ino, path]) => ({ reason, pid, fd, dev, ino, path }))
  }

  /**
   * Reads `length` bytes at `position` of the file open as `fd` as they were at T0 (the live
   * bytes with the before-images laid over them) into `buf` at `bufOffset`. Returns the bytes
   * read: fewer only at the T0 size, 0 at or beyond it. With `markRead`, the blocks wholly
   * inside the range (and a last one ending at the T0 size) are marked read in the same step.
   *
   * @throws {NativeError} `'ESTALE'` when a block in the range was marked read and written
   *   since; `'EXDEV'` for a file on another filesystem; `'ECANCELED'` after {@link stop}.
   */
  readAtT0(fd: number, buf: Buffer, bufOffset: number, length: number, position: number, markRead = false): number {
    return addon().bilogReadT0(this.h, fd, buf, bufOffset, length, position, markRead)
  }

  /**
   * Reads `length` bytes at `position` of `fd` as they are now, except that every block
   * logged so far (changed since T0 before this read) reads as zeros: the caller stores these
   * bytes and the BI log the logged blocks' images (native-notes/format.md, "Before-image
   * log"). Marks the blocks read, like {@link readAtT0} with `markRead`; each block must be
   * read once. Returns `[bytes read, blocks read as zeros]`; bytes are fewer only at the T0
   * size.
   *
   * @throws {NativeError} as {@link readAtT0}.
   */
  readLive(fd: number, buf: Buffer, bufOffset: number, length: number, position: number): [number, number] {
    return addon().bilogReadLive(this.h, fd, buf, bufOffset, length, position)
  }

  /**
   * Lets worker threads read through this capture: returns an id for
   * {@link biReadLiveShared} (valid until {@link unshare} or {@link stop}, which wait for
   * the shared reads in progress).
   */
  share(): number {
    return addon().bilogShare(this.h)
  }

  /**
   * Opens a regular file read-only (O_NOATIME where allowed, O_NOFOLLOW) so that reads
   * through the fd raise no events (each would be a round trip through the listener). An
   * absolute path below the watched directory is opened through the quiet tree (a private
   * clone of its mount with an ignore mark: the open raises no event either) when it names the
   * same inode there; otherwise the fd of the open's own permission event, kept for the
   * opening thread; otherwise a plain fd. The caller closes it.
   */
  openQuiet(path: PathLike): number {
    return addon().bilogOpenQuiet(this.h, path)
  }

  /**
   * The T0 size and times of (st_dev, inode) when the capture has seen it; null when it has
   * not (nothing changed it since T0: its current stat is its T0 state). `uncovered` either
   * way, as {@link t0Stat}'s.
   */
  t0StatIno(dev: number, inoHi: number, inoLo: number): { t0: BiT0Stat | null; uncovered: number } {
    const v = addon().bilogT0StatIno(this.h, dev, inoHi, inoLo)
    if (!v) return { t0: null, uncovered: 0 } // (not seen, covered: the addon makes no array)
    return { t0: v[0] ? { sizeBytes: v[1]!, mtimeSec: v[2]!, mtimeNsec: v[3]!, ctimeSec: v[4]!, ctimeNsec: v[5]!, igen: v[6]!, uncovered: v[7]! } : null, uncovered: v[7]! }
  }

  /** Ends {@link share}: waits for shared reads in progress; later ones fail with ECANCELED. */
  unshare(): void {
    addon().bilogUnshare(this.h)
  }

  /**
   * bfs keeps the file (st_dev, inode) as an earlier generation stored it and will not read
   * it (its ctime has not moved since): its writes from now on are allowed without images.
   */
  ignore(dev: number, inoHi: number, inoLo: number): void {
    addon().bilogIgnore(this.h, dev, inoHi, inoLo)
  }

  /** bfs has read (and keeps) [offset, offset+length) of fd as at T0: those whole blocks need no more logging. */
  markRead(fd: number, offset: number, length: number): void {
    addon().bilogMarkRead(this.h, fd, offset, length)
  }

  /** The file's size and times at T0. */
  t0Stat(fd: number): BiT0Stat {
    const v = addon().bilogT0Stat(this.h, fd)
    return { sizeBytes: v[0], mtimeSec: v[1], mtimeNsec: v[2], ctimeSec: v[3], ctimeNsec: v[4], igen: v[5], uncovered: v[6] }
  }

  /**
   * Removes the mark, answers what is queued, stops the listener and the watchdog, appends
   * the end record. Returns the final counters. Reads at T0 fail afterwards.
   */
  stop(): BiStats {
    return biStats(addon().bilogStop(this.h))
  }
}

/**
 * {@link BiCapture.readLive} from any thread (a worker's), through the capture shared as
 * `id` ({@link BiCapture.share}).
 * @throws {NativeError} `'ECANCELED'` when the capture is no longer shared; else as readLive.
 */
export function biReadLiveShared(id: number, fd: number, buf: Buffer, bufOffset: number, length: number, position: number): [number, number] {
  return addon().bilogReadLiveShared(id, fd, buf, bufOffset, length, position)
}

/**
 * One range of a file read through the capture shared as `id`, from any thread: what
 * {@link biOpenQuietShared}, {@link biReadLiveShared} (until the range or the T0 size ends) and
 * a close do, in one call and with fewer system calls. `dev`/`inoHi`/`inoLo` are the inode
 * the caller's scan found at `path`: when the quiet open finds that inode, the path is not
 * looked up a second time to prove it is the same file (otherwise it is, as openQuiet does:
 * a file renamed over since the scan is read as the path names it now), and the open's fstat
 * serves the read. (So the scanned inode is read even if a mount made since the scan hides
 * its path in bfs's namespace: the quiet tree has no mounts.) `out` (a Float64Array of at
 * least 2) receives `[bytes read, blocks read as zeros]`.
 * @throws {NativeError} syscall `'open'` when the file could not be opened, `'read'` when it
 *   could not be read (as {@link biReadLiveShared}); `'ECANCELED'` when no longer shared.
 */
export function biReadFileShared(
  id: number,
  path: PathLike,
  dev: number,
  inoHi: number,
  inoLo: number,
  buf: Buffer,
  bufOffset: number,
  length: number,
  position: number,
  out: Float64Array,
): void {
  addon().bilogReadFileShared(id, path, dev, inoHi, inoLo, buf, bufOffset, length, position, out)
}

/** {@link BiCapture.openQuiet} from any thread, through the capture shared as `id`. */
export function biOpenQuietShared(id: number, path: PathLike): number {
  return addon().bilogOpenQuietShared(id, path)
}

/**
 * The one line for a user when {@link BiCapture.start} fails because the filesystem or
 * kernel has no pre-content events; undefined for any other error.
 */
export function biUnsupportedMessage(err: unknown, watchPath: string): string | undefined {
  const e = err as NativeError
  if (e?.syscall !== 'fanotify_mark' && e?.syscall !== 'fanotify_init') return undefined
  if (e.code === 'ENOTSUP')
    return `online capture is not supported on the filesystem of ${watchPath}: it has no fanotify pre-content events (ext4, xfs and btrfs have them; tmpfs, FUSE and overlayfs do not)`
  if (e.code === 'EINVAL') return `online capture needs fanotify pre-content events (Linux 6.14 or later): this kernel refused them for ${watchPath}`
  return undefined
}
