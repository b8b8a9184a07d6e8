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
  scanDirPacked(dirPath: PathLike): { blob: Buffer; ends: Uint32Array; stats: Float64Array }
  lstatRecord(path: PathLike): Float64Array
  fstatRecord(fd: number): Float64Array
  getXattrs(path: PathLike): Array<[Buffer, Buffer]>
  setXattr(path: PathLike, name: Buffer | string, value: Buffer): void
  dataRegions(fd: number, sizeBytes: number): number[]
  setTimes(path: PathLike, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, nofollow: boolean): void
  mknod(path: PathLike, mode: number, rdevMajor: number, rdevMinor: number): void
  blockDeviceSize(fd: number): number
  fadvise(fd: number, offsetBytes: number, lengthBytes: number, advice: FadviseAdvice): boolean
  detach(fd: number): void
  hashBlocks(src: Buffer, srcOffset: number, blocks: number, out: Buffer, outOffset: number): void
  xxh64Into(src: Buffer, out: Buffer, outOffset: number): void
}

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
 * @throws {NativeError} when the directory cannot be opened or read:
 *   syscall `'opendir'` (ENOENT, ENOTDIR, EACCES, ...) or `'readdir'`.
 */
export function scanDir(dirPath: PathLike): DirScan {
  const { blob, ends, stats } = addon().scanDirPacked(dirPath)
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
 * Becomes a daemon in place: setsid() (an existing session leader is fine), then
 * dup2(fd, 1) and dup2(fd, 2), so stdout and stderr go to `fd` (a log file) and
 * a terminal or pipe that waited on them is released.
 * @throws {NativeError} syscall `'setsid'` or `'dup2'`.
 */
export function detach(fd: number): void {
  addon().detach(fd)
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
 * XXH64 (seed 0) of each of `blocks` 4096-byte blocks of `src` starting at byte
 * `srcOffset`, written as 8 little-endian bytes each into `out` at `outOffset`.
 * Throws RangeError if either range falls outside its buffer.
 */
export function hashBlocks(src: Buffer, srcOffset: number, blocks: number, out: Buffer, outOffset: number): void {
  addon().hashBlocks(src, srcOffset, blocks, out, outOffset)
}

/** XXH64 (seed 0) of the whole of `src`, written as 8 little-endian bytes into `out` at `outOffset`. */
export function xxh64Into(src: Buffer, out: Buffer, outOffset: number): void {
  addon().xxh64Into(src, out, outOffset)
}
