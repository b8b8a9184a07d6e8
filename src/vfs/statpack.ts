/**
 * Stats packed as the patched fuse-native binding takes them (patches/fuse-native+2.2.6.patch,
 * FN_ST_* in its fuse-native.c): STAT_FIELDS doubles per stat. A readdir that answers a
 * Float64Array in this layout skips the per-entry stat objects (and the binding's walk over
 * them): a format 2 directory's entries are written here straight from their decoded form.
 */
/** A file's attributes as the mount serves them (vfs/tree.ts and vfs/gen2.ts make them). */
export interface Attr {
  ino: number
  /** Type and permission bits, as st_mode. */
  mode: number
  nlink: number
  uid: number
  gid: number
  size: number
  /** 512-byte units actually stored (holes excluded). */
  blocks: number
  rdevMajor: number
  rdevMinor: number
  atimeSec: number
  atimeNsec: number
  mtimeSec: number
  mtimeNsec: number
  ctimeSec: number
  ctimeNsec: number
}

export const STAT_FIELDS = 18
/** Field 17: flags. */
export const STAT_NO_XATTRS = 1
/** The stat cache of the native fast path must not keep this one (`.`, `..`). */
export const STAT_NO_CACHE = 2

// field offsets (FN_ST_* in the binding)
export const F_MODE = 0
export const F_UID = 1
export const F_GID = 2
export const F_SIZE = 3
export const F_NLINK = 5
export const F_INO_LO = 6
export const F_INO_HI = 7
export const F_RDEV = 8
export const F_BLKSIZE = 9
export const F_BLOCKS = 10
export const F_ATIME = 11
export const F_MTIME = 13
export const F_CTIME = 15
export const F_FLAGS = 17

/** dev_t of major:minor as glibc's makedev. */
export function makedev(major: number, minor: number): number {
  return (major & 0xfff) * 256 + (minor & 0xff) + (minor & ~0xff) * 4096 + Math.floor(major / 4096) * 2 ** 32
}

/** Writes the inode number (up to 2^53) as its low and high 32 bits. */
export function packIno(arr: Float64Array, o: number, ino: number): void {
  const lo = ino % 4294967296
  arr[o + F_INO_LO] = lo
  arr[o + F_INO_HI] = (ino - lo) / 4294967296
}

/** Writes one Attr at arr[o] (fields the Attr has no value for stay 0, as fuse-native's writeStat leaves dev). */
export function packAttr(arr: Float64Array, o: number, a: Attr, hasXattrs: boolean, noCache = false): void {
  arr[o + F_MODE] = a.mode
  arr[o + F_UID] = a.uid
  arr[o + F_GID] = a.gid
  arr[o + F_SIZE] = a.size
  arr[o + F_NLINK] = a.nlink || 1
  packIno(arr, o, a.ino)
  arr[o + F_RDEV] = a.rdevMajor || a.rdevMinor ? makedev(a.rdevMajor, a.rdevMinor) : 0
  arr[o + F_BLKSIZE] = 4096
  arr[o + F_BLOCKS] = a.blocks
  arr[o + F_ATIME] = a.atimeSec
  arr[o + F_ATIME + 1] = a.atimeNsec
  arr[o + F_MTIME] = a.mtimeSec
  arr[o + F_MTIME + 1] = a.mtimeNsec
  arr[o + F_CTIME] = a.ctimeSec
  arr[o + F_CTIME + 1] = a.ctimeNsec
  arr[o + F_FLAGS] = (hasXattrs ? 0 : STAT_NO_XATTRS) | (noCache ? STAT_NO_CACHE : 0)
}
