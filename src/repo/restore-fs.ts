/**
 * How restore touches DEST, shared by the main thread (src/repo/restore.ts) and its
 * workers (restore-worker.ts): every directory below DEST is opened relative to DEST's
 * fd with openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH), and every other call is a
 * single name relative to such a directory fd. So no symlink below DEST is ever
 * followed, whoever planted it and whenever (native-notes/native-addon.md,
 * "Directory-fd-relative calls").
 */
import { lazyBuiltin } from '../os/builtin.js'
import * as native from '../native/index.js'

const workerThreads = lazyBuiltin<typeof import('node:worker_threads')>('node:worker_threads')

let consts: native.AtConstants | undefined
/** The addon's constants (loaded on first use, so importing this module never loads the addon). */
export function K(): native.AtConstants {
  return (consts ??= native.atConstants())
}

/** openat2 resolve flags for every path below DEST: no symlink anywhere, never out of DEST. */
export function safeResolve(): number {
  const k = K()
  return k.RESOLVE_NO_SYMLINKS | k.RESOLVE_BENEATH | k.RESOLVE_NO_MAGICLINKS
}

/**
 * O_PATH fds of directories below a base directory fd, by relative path, the most recently
 * used kept open (at most `capacity`, at least 2 so that two may be held at once). Path ''
 * is the base itself. Entries come in catalog order, where siblings are contiguous, so a
 * small cache opens each directory about once per phase.
 */
export class DirFds {
  private readonly fds = new Map<string, number>()
  private lastRel: string | null = null
  private lastFd = -1

  constructor(
    readonly baseFd: number,
    private readonly capacity = 16,
  ) {}

  /**
   * The fd of directory `rel`: relative to the base, '/'-separated, no trailing slash,
   * as a latin1 string (one char per byte: names need not be UTF-8).
   * @throws {NativeError} from openat2: ELOOP when a symlink is in the way, ENOENT, ENOTDIR.
   */
  get(rel: string): number {
    if (rel.length === 0) return this.baseFd
    if (rel === this.lastRel) return this.lastFd
    let fd = this.fds.get(rel)
    if (fd !== undefined) {
      this.fds.delete(rel) // most recently used goes last
    } else {
      const k = K()
      fd = native.openat2(this.baseFd, Buffer.from(rel, 'latin1'), k.O_PATH | k.O_DIRECTORY, 0, safeResolve())
      if (this.fds.size >= this.capacity) {
        const [oldRel, oldFd] = this.fds.entries().next().value as [string, number]
        this.fds.delete(oldRel)
        native.close(oldFd)
      }
    }
    this.fds.set(rel, fd)
    this.lastRel = rel
    this.lastFd = fd
    return fd
  }

  /** Forgets (and closes) a directory's fd, e.g. after it was removed. */
  drop(rel: string): void {
    const fd = this.fds.get(rel)
    if (fd === undefined) return
    this.fds.delete(rel)
    native.close(fd)
    if (this.lastRel === rel) {
      this.lastRel = null
      this.lastFd = -1
    }
  }

  /** Closes every fd but the base's. */
  close(): void {
    for (const fd of this.fds.values()) native.close(fd)
    this.fds.clear()
    this.lastRel = null
    this.lastFd = -1
  }
}

let tmpCounter = 0
/** A temporary name for a new entry beside the one it will replace (made with O_EXCL-like calls, so a clash is retried). */
export function tmpName(): string {
  return `.bfs-restore.${process.pid}.${workerThreads().threadId}.${++tmpCounter}`
}

/** The error restore reports for an entry it may not replace. */
export function notReplaced(what: string): Error {
  return Object.assign(new Error(what), { code: 'EEXIST' })
}

/**
 * Creates an entry with `make(name)` in directory `dirFd`; with `overwrite`, an existing
 * non-directory entry of that name is replaced: the new entry is made under a temporary
 * name and renamed over it, which replaces a symlink itself (never its target) and a hard
 * link's name (never the other names' data). An empty directory in the way is removed; a
 * non-empty one is an error. Without `overwrite` an existing entry is an error.
 */
export function createOrReplace(dirFd: number, name: Buffer, overwrite: boolean, make: (name: Buffer | string) => void): void {
  try {
    make(name)
    return
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    if (!overwrite) throw notReplaced('exists (use --overwrite to replace it)')
  }
  let tmp = tmpName()
  for (let attempt = 0; ; attempt++) {
    try {
      make(tmp)
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 100) throw err
      tmp = tmpName()
    }
  }
  try {
    renameOver(dirFd, tmp, name)
  } catch (err) {
    try {
      native.unlinkat(dirFd, tmp, 0)
    } catch {
      // already gone
    }
    throw err
  }
}

/**
 * renameat2(dirFd, tmp, dirFd, name): puts the non-directory `tmp` in the place of `name`.
 * A directory at `name` (EISDIR) is removed first if empty; if not, the call fails and
 * the caller removes `tmp`.
 */
export function renameOver(dirFd: number, tmp: Buffer | string, name: Buffer): void {
  try {
    native.renameat2(dirFd, tmp, dirFd, name, 0)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EISDIR') throw err
    try {
      native.unlinkat(dirFd, name, K().AT_REMOVEDIR)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'ENOTEMPTY' || code === 'EEXIST') throw notReplaced('is a non-empty directory; not replaced')
      throw e
    }
    native.renameat2(dirFd, tmp, dirFd, name, 0)
  }
}

const S_ISUID = 0o4000
const S_ISGID = 0o2000

/**
 * The permission bits to give an entry whose owner or group may not have been restored.
 * A regular file keeps setuid and setgid only if its owner was restored (and setgid only
 * if its group was too), as tar and rsync do: a root-owned 4755 file restored by another
 * user must not become setuid to that user. On a directory setgid only means "children
 * inherit the group": it goes only with a group that was not restored. Setuid on anything
 * but a regular file goes with an owner that was not restored.
 */
export function setidSafeMode(mode: number, regularFile: boolean, ownerRestored: boolean, groupRestored: boolean): number {
  let m = mode
  if (!ownerRestored) m &= ~S_ISUID
  if (!groupRestored || (regularFile && !ownerRestored)) m &= ~S_ISGID
  return m
}

/** What went wrong, for a message that already names the entry: the error's message without its path. */
export function why(err: unknown): string {
  const e = err as NodeJS.ErrnoException
  if (e.code === 'ELOOP' && e.syscall === 'openat2') return 'a symlink is in its way below the destination (not followed)'
  if (e.code === 'EXDEV' && e.syscall === 'openat2') return 'its path leads out of the destination (not followed)'
  const m = String(e.message ?? e)
  return e.syscall && e.path !== undefined ? m.replace(/ '[^]*'$/, '') : m
}
