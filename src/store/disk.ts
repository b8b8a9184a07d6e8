import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { pidAlive } from '../os/process.js'
import {
  checkInBlob, checkKey, checkRange, partsOf, StoreError, TEMP_MARK,
  type BlobStat, type ByteRange, type PutOptions, type Staged, type Store, type StoreDescription, type StoreErrorCode,
  type SyncBlobReader, type SyncStore, getByOpen
} from './store.js'

/**
 * A temporary name next to `final`: `<final>.tmp-<host>-<pid>-<8 hex>` (native-notes/format.md
 * "Layout"), so that sweep() can tell a dead writer's litter from a live writer's file on
 * this host and leave other hosts' alone. Names without the host (`.tmp-<pid>-<hex>`, what
 * bfs wrote before) are read as this host's.
 */
export function tempName(final: string): string {
  return `${final}${TEMP_MARK}${os.hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`
}

/** `.tmp-[host-]pid-hex` at the end of a name: the writer that left it. */
const TEMP_RE = /\.tmp-(?:(.+)-)?(\d+)-[0-9a-f]+$/
/** An unparseable temporary file older than this is litter (a live writer renames its own within a write). */
const STALE_TEMP_MS = 10_000

const NODE_CODES: Record<string, StoreErrorCode> = {
  ENOENT: 'ENOENT', ENOTDIR: 'ENOENT', EISDIR: 'ENOENT', EEXIST: 'EEXIST', ENOSPC: 'ENOSPC', EDQUOT: 'EDQUOT', EROFS: 'EROFS',
}

/** A failed system call as a one-line StoreError naming where(key). */
function fail(err: unknown, key: string, where: string, doing: string): StoreError {
  if (err instanceof StoreError || err instanceof TypeError) return err as StoreError
  const e = err as NodeJS.ErrnoException
  const code = NODE_CODES[e.code ?? ''] ?? 'EIO'
  // Node's message is "CODE: description, syscall 'path'": keep "CODE: description"
  const what = (e.message ?? String(err)).split(', ')[0]
  return new StoreError(code, key, `${where}: cannot ${doing}: ${what}`, { cause: err })
}

function pread(fd: number, b: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, b, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))))
}

/** An opened blob: a file descriptor (also the native read path's), ranged reads by pread. */
class DiskBlob implements SyncBlobReader {
  private fd: number
  constructor(
    readonly key: string,
    fd: number,
    readonly sizeBytes: number,
    private readonly whereKey: string,
  ) {
    this.fd = fd
  }

  get localFd(): number | undefined {
    return this.fd >= 0 ? this.fd : undefined
  }

  private target(r: ByteRange, into: Buffer | undefined): Buffer {
    checkInBlob(this.key, this.whereKey, r, this.sizeBytes)
    if (this.fd < 0) throw new StoreError('EIO', this.key, `${this.whereKey}: read after close`)
    if (into && into.length < r.length) throw new TypeError(`buffer of ${into.length} bytes for a read of ${r.length}`)
    return into ? into.subarray(0, r.length) : Buffer.allocUnsafe(r.length)
  }

  private short(pos: number): StoreError {
    return new StoreError('TRUNCATED', this.key, `${this.whereKey}: unexpected end of file at byte ${pos}`)
  }

  async read(r: ByteRange, into?: Buffer): Promise<Buffer> {
    const b = this.target(r, into)
    let got = 0
    try {
      while (got < r.length) {
        const n = await pread(this.fd, b, got, r.length - got, r.offset + got)
        if (n === 0) throw this.short(r.offset + got)
        got += n
      }
    } catch (err) {
      throw fail(err, this.key, this.whereKey, 'read')
    }
    return b
  }

  readSync(r: ByteRange, into?: Buffer): Buffer {
    const b = this.target(r, into)
    let got = 0
    try {
      while (got < r.length) {
        const n = fs.readSync(this.fd, b, got, r.length - got, r.offset + got)
        if (n === 0) throw this.short(r.offset + got)
        got += n
      }
    } catch (err) {
      throw fail(err, this.key, this.whereKey, 'read')
    }
    return b
  }

  async close(): Promise<void> {
    const fd = this.fd
    if (fd < 0) return
    this.fd = -1
    await new Promise<void>((resolve, reject) => fs.close(fd, (err) => (err ? reject(fail(err, this.key, this.whereKey, 'close')) : resolve())))
  }

  closeSync(): void {
    const fd = this.fd
    if (fd < 0) return
    this.fd = -1
    fs.closeSync(fd)
  }
}

/**
 * The Store contract over a local directory (native-notes/store.md). Blobs are files, prefixes
 * directories (made as needed); writes go to a temporary name next to the key, are fsynced,
 * then renamed (link(2) for 'exclusive'); the directory is fsynced unless the caller batches
 * that with flush(). Opened blobs expose their descriptor (localFd) for the native read path.
 */
export class DiskStore implements Store {
  readonly sync: DiskSyncFace
  private constructor(readonly root: string) {
    this.sync = new DiskSyncFace(this)
  }

  /** Makes an empty prefix (a directory) that lists before anything is put under it (a fresh repository's layout). */
  makePrefix(prefix: string): void {
    const d = this.file(prefix)
    try {
      fs.mkdirSync(d, { recursive: true })
    } catch (err) {
      throw fail(err, prefix, d, 'make the prefix')
    }
  }

  /** Makes `dir` (and its parents; 0700 if new) and opens it. */
  static create(dir: string): DiskStore {
    const root = path.resolve(dir)
    try {
      fs.mkdirSync(root, { recursive: true, mode: 0o700 })
    } catch (err) {
      throw fail(err, '', root, 'create the store directory')
    }
    return DiskStore.open(root)
  }

  /** Opens the store in an existing directory: ENOENT if it is missing or not a directory. */
  static open(dir: string): DiskStore {
    const root = path.resolve(dir)
    let st: fs.Stats | undefined
    try {
      st = fs.statSync(root)
    } catch (err) {
      throw fail(err, '', root, 'open the store')
    }
    if (!st.isDirectory()) throw new StoreError('ENOENT', '', `${root}: not a directory`)
    return new DiskStore(root)
  }

  /** The file of a (checked) key. */
  file(key: string, prefix = false): string {
    checkKey(key, prefix)
    return key === '' ? this.root : `${this.root}/${key}`
  }

  where(key: string): string {
    return key === '' ? this.root : path.join(this.root, key)
  }

  localRoots(): string[] {
    return [this.root]
  }

  /**
   * The local directory at `prefix`, for a tier that keeps its own files next to this store's
   * blobs and manages them itself (the disk buffer cache): the one way out of the store's keys
   * to a path. Not made here.
   */
  localDir(prefix: string): string {
    return this.file(prefix)
  }

  describe(): StoreDescription {
    return { kind: 'disk', root: this.root }
  }

  get(key: string, range?: ByteRange): Promise<Buffer> {
    return getByOpen(this, key, range)
  }

  async open(key: string): Promise<DiskBlob> {
    const f = this.file(key)
    let fd: number
    try {
      fd = await new Promise<number>((resolve, reject) => fs.open(f, 'r', (err, d) => (err ? reject(err) : resolve(d))))
    } catch (err) {
      throw fail(err, key, f, 'open')
    }
    try {
      const st = await new Promise<fs.Stats>((resolve, reject) => fs.fstat(fd, (err, s) => (err ? reject(err) : resolve(s))))
      if (!st.isFile()) throw new StoreError('ENOENT', key, `${f}: is a prefix, not a blob`)
      return new DiskBlob(key, fd, st.size, f)
    } catch (err) {
      fs.close(fd, () => undefined)
      throw fail(err, key, f, 'open')
    }
  }

  async put(key: string, data: Uint8Array | readonly Uint8Array[], opts: PutOptions = {}): Promise<void> {
    const f = this.file(key)
    const mode = opts.mode ?? 'create'
    if (mode === 'create' && (await this.exists(f, key))) throw new StoreError('EEXIST', key, `${f}: refusing to overwrite a stored blob`)
    const tmp = tempName(f)
    const durable = opts.durable !== false
    await this.writeTemp(tmp, key, partsOf(data), durable)
    await this.publish(tmp, f, key, mode)
    if (durable && opts.syncListing !== false) await this.fsyncDir(path.dirname(f), key)
  }

  async stage(key: string): Promise<Staged> {
    return { token: stageToken(key, path.basename(tempName(this.file(key)))) }
  }

  async writeStaged(s: Staged, data: readonly Uint8Array[]): Promise<number> {
    const { key, tmp } = this.staged(s)
    return this.writeTemp(tmp, key, data, false)
  }

  async appendStaged(s: Staged, data: readonly Uint8Array[], at: number): Promise<number> {
    const { key, tmp } = this.staged(s)
    if (!Number.isSafeInteger(at) || at < 0) throw new RangeError(`appendStaged: at ${at}`)
    return this.writeTemp(tmp, key, data, false, at)
  }

  async commitStaged(s: Staged, opts: { syncListing?: boolean } = {}): Promise<void> {
    const { key, tmp } = this.staged(s)
    const f = this.file(key)
    if (await this.exists(f, key)) throw new StoreError('EEXIST', key, `${f}: refusing to overwrite a stored blob`)
    try {
      // fsync through a new descriptor flushes what the writer (maybe another thread) wrote
      const fh = await fs.promises.open(tmp, 'r')
      try {
        await fh.sync()
      } finally {
        await fh.close()
      }
    } catch (err) {
      throw fail(err, key, f, 'commit a staged write')
    }
    await this.publish(tmp, f, key, 'replace')
    if (opts.syncListing !== false) await this.fsyncDir(path.dirname(f), key)
  }

  async abortStaged(s: Staged): Promise<void> {
    const { key, tmp } = this.staged(s)
    try {
      await fs.promises.rm(tmp, { force: true })
    } catch (err) {
      throw fail(err, key, this.where(key), 'remove a staged write')
    }
  }

  async has(key: string): Promise<boolean> {
    const f = this.file(key)
    try {
      return (await fs.promises.stat(f)).isFile()
    } catch (err) {
      const e = fail(err, key, f, 'stat')
      if (e.code === 'ENOENT') return false
      throw e
    }
  }

  async stat(key: string): Promise<BlobStat> {
    const f = this.file(key)
    let st: fs.Stats
    try {
      st = await fs.promises.stat(f)
    } catch (err) {
      throw fail(err, key, f, 'stat')
    }
    if (!st.isFile()) throw new StoreError('ENOENT', key, `${f}: is a prefix, not a blob`)
    return { sizeBytes: st.size, mtimeMs: st.mtimeMs }
  }

  async list(prefix: string): Promise<string[]> {
    const d = this.file(prefix, true)
    let names: string[]
    try {
      names = await fs.promises.readdir(d)
    } catch (err) {
      const e = fail(err, prefix, d, 'list')
      if (e.code === 'ENOENT') return []
      throw e
    }
    return listed(prefix, names)
  }

  async remove(key: string, opts: { recursive?: boolean } = {}): Promise<void> {
    const f = this.file(key, !!opts.recursive)
    try {
      if (opts.recursive) {
        if (key === '') for (const n of await fs.promises.readdir(f)) await fs.promises.rm(`${f}/${n}`, { recursive: true, force: true })
        else await fs.promises.rm(f, { recursive: true, force: true })
      } else await fs.promises.unlink(f)
    } catch (err) {
      const e = fail(err, key, f, 'remove')
      if ((err as NodeJS.ErrnoException).code === 'EISDIR' || (err as NodeJS.ErrnoException).code === 'EPERM') {
        throw new TypeError(`${f}: is a prefix; remove it with { recursive: true }`)
      }
      if (e.code !== 'ENOENT') throw e
    }
  }

  async flush(prefix: string): Promise<void> {
    await this.fsyncDir(this.file(prefix, true), prefix, true)
  }

  async sweep(prefix = '', opts: { shallow?: boolean } = {}): Promise<number> {
    return this.sync.sweepSync(prefix, opts)
  }

  /** The key and temporary file of a staged write (a token from any thread's store on this root). */
  staged(s: Staged): { key: string; tmp: string } {
    const [key, name] = parseToken(s.token)
    const f = this.file(key)
    if (!name.startsWith(path.basename(f) + TEMP_MARK) || !TEMP_RE.test(name)) throw new TypeError(`not a staged-write token of this store: ${JSON.stringify(s.token)}`)
    return { key, tmp: `${path.dirname(f)}/${name}` }
  }

  private async exists(f: string, key: string): Promise<boolean> {
    try {
      await fs.promises.lstat(f)
      return true
    } catch (err) {
      const e = fail(err, key, f, 'stat')
      if (e.code === 'ENOENT') return false
      throw e
    }
  }

  /** Writes `parts` to the new file `tmp` (making its directory if needed), fsynced if `sync`; removes it on failure. */
  /**
   * Writes `parts` to a new temporary file; with `appendAt` (appendStaged) > 0, at the end of
   * the existing one, which must hold exactly `appendAt` bytes (never made again: a temporary
   * file removed meanwhile fails the write instead of becoming a blob without its first bytes).
   */
  private async writeTemp(tmp: string, key: string, parts: readonly Uint8Array[], sync: boolean, appendAt = 0): Promise<number> {
    let fh: fs.promises.FileHandle
    try {
      if (appendAt > 0) {
        fh = await fs.promises.open(tmp, fs.constants.O_WRONLY | fs.constants.O_APPEND)
        const size = (await fh.stat().catch(async (err: unknown) => { await fh.close().catch(() => undefined); throw err })).size
        if (size !== appendAt) {
          await fh.close().catch(() => undefined)
          throw new StoreError('EIO', key, `${tmp}: a staged blob of ${appendAt} bytes holds ${size}: changed by someone else while it was written`)
        }
      } else {
        fh = await fs.promises.open(tmp, 'wx', 0o644).catch(async (err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err
          await fs.promises.mkdir(path.dirname(tmp), { recursive: true })
          return fs.promises.open(tmp, 'wx', 0o644)
        })
      }
    } catch (err) {
      if (err instanceof StoreError) throw err
      throw fail(err, key, this.where(key), 'write')
    }
    let bytes = 0
    try {
      for (const p of parts) {
        let off = 0
        while (off < p.length) off += (await fh.write(p, off, p.length - off)).bytesWritten
        bytes += p.length
      }
      if (sync) await fh.sync()
      await fh.close()
    } catch (err) {
      await fh.close().catch(() => undefined)
      await fs.promises.rm(tmp, { force: true }).catch(() => undefined)
      throw fail(err, key, this.where(key), 'write')
    }
    return bytes
  }

  /** Gives a durable temporary file its final name; the temporary name is gone afterwards either way. */
  private async publish(tmp: string, f: string, key: string, mode: 'create' | 'replace' | 'exclusive'): Promise<void> {
    try {
      if (mode === 'exclusive') {
        try {
          await fs.promises.link(tmp, f)
        } finally {
          await fs.promises.rm(tmp, { force: true })
        }
      } else await fs.promises.rename(tmp, f)
    } catch (err) {
      if (mode !== 'exclusive') await fs.promises.rm(tmp, { force: true }).catch(() => undefined)
      const e = fail(err, key, f, 'write')
      throw e.code === 'EEXIST' ? new StoreError('EEXIST', key, `${f}: exists (another writer created it first)`, { cause: err }) : e
    }
  }

  private async fsyncDir(dir: string, key: string, missingOk = false): Promise<void> {
    let fh: fs.promises.FileHandle
    try {
      fh = await fs.promises.open(dir, 'r')
    } catch (err) {
      const e = fail(err, key, dir, 'sync the listing')
      if (missingOk && e.code === 'ENOENT') return
      throw e
    }
    try {
      await fh.sync()
    } catch (err) {
      throw fail(err, key, dir, 'sync the listing')
    } finally {
      await fh.close()
    }
  }
}


/** The synchronous face of a DiskStore (same files, same rules). */
class DiskSyncFace implements SyncStore {
  constructor(private readonly s: DiskStore) {}

  getSync(key: string, range?: ByteRange): Buffer {
    const b = this.openSync(key)
    try {
      return b.readSync(range ?? { offset: 0, length: b.sizeBytes })
    } finally {
      b.closeSync()
    }
  }

  openSync(key: string): SyncBlobReader {
    const f = this.s.file(key)
    let fd: number
    try {
      fd = fs.openSync(f, 'r')
    } catch (err) {
      throw fail(err, key, f, 'open')
    }
    try {
      const st = fs.fstatSync(fd)
      if (!st.isFile()) throw new StoreError('ENOENT', key, `${f}: is a prefix, not a blob`)
      return new DiskBlob(key, fd, st.size, f)
    } catch (err) {
      fs.closeSync(fd)
      throw fail(err, key, f, 'open')
    }
  }

  putSync(key: string, data: Uint8Array | readonly Uint8Array[], opts: PutOptions = {}): void {
    const f = this.s.file(key)
    const mode = opts.mode ?? 'create'
    if (mode === 'create' && this.exists(f, key)) throw new StoreError('EEXIST', key, `${f}: refusing to overwrite a stored blob`)
    const tmp = tempName(f)
    const durable = opts.durable !== false
    this.writeTemp(tmp, key, partsOf(data), durable)
    try {
      if (mode === 'exclusive') {
        try {
          fs.linkSync(tmp, f)
        } finally {
          fs.rmSync(tmp, { force: true })
        }
      } else fs.renameSync(tmp, f)
    } catch (err) {
      if (mode !== 'exclusive') fs.rmSync(tmp, { force: true })
      const e = fail(err, key, f, 'write')
      throw e.code === 'EEXIST' ? new StoreError('EEXIST', key, `${f}: exists (another writer created it first)`, { cause: err }) : e
    }
    if (durable && opts.syncListing !== false) this.fsyncDir(path.dirname(f), key)
  }

  writeStagedSync(st: Staged, data: readonly Uint8Array[]): number {
    const { key, tmp } = this.s.staged(st)
    return this.writeTemp(tmp, key, data, false)
  }

  hasSync(key: string): boolean {
    const f = this.s.file(key)
    try {
      return fs.statSync(f).isFile()
    } catch (err) {
      const e = fail(err, key, f, 'stat')
      if (e.code === 'ENOENT') return false
      throw e
    }
  }

  statSync(key: string): BlobStat {
    const f = this.s.file(key)
    let st: fs.Stats
    try {
      st = fs.statSync(f)
    } catch (err) {
      throw fail(err, key, f, 'stat')
    }
    if (!st.isFile()) throw new StoreError('ENOENT', key, `${f}: is a prefix, not a blob`)
    return { sizeBytes: st.size, mtimeMs: st.mtimeMs }
  }

  listSync(prefix: string): string[] {
    const d = this.s.file(prefix, true)
    let names: string[]
    try {
      names = fs.readdirSync(d)
    } catch (err) {
      const e = fail(err, prefix, d, 'list')
      if (e.code === 'ENOENT') return []
      throw e
    }
    return listed(prefix, names)
  }

  removeSync(key: string, opts: { recursive?: boolean } = {}): void {
    const f = this.s.file(key, !!opts.recursive)
    try {
      if (opts.recursive) {
        if (key === '') for (const n of fs.readdirSync(f)) fs.rmSync(`${f}/${n}`, { recursive: true, force: true })
        else fs.rmSync(f, { recursive: true, force: true })
      } else fs.unlinkSync(f)
    } catch (err) {
      const e = fail(err, key, f, 'remove')
      if ((err as NodeJS.ErrnoException).code === 'EISDIR' || (err as NodeJS.ErrnoException).code === 'EPERM') {
        throw new TypeError(`${f}: is a prefix; remove it with { recursive: true }`)
      }
      if (e.code !== 'ENOENT') throw e
    }
  }

  flushSync(prefix: string): void {
    this.fsyncDir(this.s.file(prefix, true), prefix, true)
  }

  /** sweep(), synchronously: walks the directories under `prefix`, removes temporary files of dead writers. */
  sweepSync(prefix: string, opts: { shallow?: boolean } = {}): number {
    const host = os.hostname()
    const now = Date.now()
    let removed = 0
    const walk = (dir: string): void => {
      let ents: fs.Dirent[]
      try {
        ents = fs.readdirSync(dir, { withFileTypes: true })
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return
        throw fail(err, prefix, dir, 'sweep')
      }
      for (const e of ents) {
        const p = `${dir}/${e.name}`
        if (!e.name.includes(TEMP_MARK)) {
          if (e.isDirectory() && !opts.shallow) walk(p)
          continue
        }
        const m = TEMP_RE.exec(e.name)
        let litter: boolean
        if (m && (m[1] === undefined || m[1] === host)) litter = !pidAlive(Number(m[2]))
        else if (m) litter = false // another host's writer: it may be alive
        else {
          const st = fs.lstatSync(p, { throwIfNoEntry: false })
          litter = !!st && now - st.mtimeMs > STALE_TEMP_MS
        }
        if (!litter) continue
        fs.rmSync(p, { recursive: true, force: true })
        removed++
      }
    }
    walk(this.s.file(prefix, true))
    return removed
  }

  private exists(f: string, key: string): boolean {
    try {
      fs.lstatSync(f)
      return true
    } catch (err) {
      const e = fail(err, key, f, 'stat')
      if (e.code === 'ENOENT') return false
      throw e
    }
  }

  private writeTemp(tmp: string, key: string, parts: readonly Uint8Array[], sync: boolean): number {
    let fd: number
    try {
      try {
        fd = fs.openSync(tmp, 'wx', 0o644)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
        fs.mkdirSync(path.dirname(tmp), { recursive: true })
        fd = fs.openSync(tmp, 'wx', 0o644)
      }
    } catch (err) {
      throw fail(err, key, this.s.where(key), 'write')
    }
    let bytes = 0
    try {
      for (const p of parts) {
        let off = 0
        while (off < p.length) off += fs.writeSync(fd, p, off, p.length - off)
        bytes += p.length
      }
      if (sync) fs.fsyncSync(fd)
      fs.closeSync(fd)
    } catch (err) {
      try {
        fs.closeSync(fd)
      } catch {
        // closed already
      }
      fs.rmSync(tmp, { force: true })
      throw fail(err, key, this.s.where(key), 'write')
    }
    return bytes
  }

  private fsyncDir(dir: string, key: string, missingOk = false): void {
    let fd: number
    try {
      fd = fs.openSync(dir, 'r')
    } catch (err) {
      const e = fail(err, key, dir, 'sync the listing')
      if (missingOk && e.code === 'ENOENT') return
      throw e
    }
    try {
      fs.fsyncSync(fd)
    } catch (err) {
      throw fail(err, key, dir, 'sync the listing')
    } finally {
      fs.closeSync(fd)
    }
  }
}

/** A staged write's token: key and temporary name, so any thread's store on the same root can find it. */
function stageToken(key: string, tmpName: string): string {
  return `${key}\n${tmpName}`
}

function parseToken(token: string): [string, string] {
  const i = typeof token === 'string' ? token.indexOf('\n') : -1
  if (i < 0) throw new TypeError(`not a staged-write token: ${JSON.stringify(token)}`)
  return [token.slice(0, i), token.slice(i + 1)]
}

/** Directory entries as sorted keys: temporary names and names no key can have are left out. */
function listed(prefix: string, names: string[]): string[] {
  const out: string[] = []
  for (const n of names) {
    if (n.includes(TEMP_MARK) || !/^[A-Za-z0-9._-]+$/.test(n) || n === '.' || n === '..') continue
    out.push(prefix === '' ? n : `${prefix}/${n}`)
  }
  return out.sort()
}
