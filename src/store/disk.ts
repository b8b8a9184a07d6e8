import fs from 'node:fs'
import path from 'node:path'
import { randomBytes } from 'node:crypto'

/**
 * Opaque files under a root directory, addressed by '/'-separated keys.
 * Every put is write-once: tmp file → fsync → rename → fsync(dir). Knows nothing of bfs formats.
 */
export class DiskStore {
  constructor(readonly root: string) {}

  path(key: string): string {
    return path.join(this.root, key)
  }

  exists(key: string): boolean {
    return fs.existsSync(this.path(key))
  }

  readAll(key: string): Buffer {
    return fs.readFileSync(this.path(key))
  }

  async readAllAsync(key: string): Promise<Buffer> {
    return fs.promises.readFile(this.path(key))
  }

  size(key: string): number {
    return fs.statSync(this.path(key)).size
  }

  /** Keys of the files directly inside `dir` (a key prefix naming a directory); [] if it does not exist. */
  list(dir: string): string[] {
    try {
      return fs.readdirSync(this.path(dir)).map((n) => `${dir}/${n}`)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw err
    }
  }

  mkdirp(dir: string): void {
    fs.mkdirSync(this.path(dir), { recursive: true })
  }

  /** A fresh temporary name next to `key` (for a writer that fills it elsewhere, then calls commitTmp). */
  tmpPath(key: string): string {
    return `${this.path(key)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
  }

  /** Writes `parts` as the new file `key`, durably, synchronously. Fails if the key exists. */
  putSync(key: string, parts: Uint8Array[], { syncDir = true } = {}): number {
    const final = this.path(key)
    if (fs.existsSync(final)) throw Object.assign(new Error(`refusing to overwrite stored file ${final}`), { code: 'EEXIST' })
    const tmp = this.tmpPath(key)
    const fd = fs.openSync(tmp, 'wx', 0o644)
    let bytes = 0
    try {
      for (const p of parts) {
        let off = 0
        while (off < p.length) off += fs.writeSync(fd, p, off, p.length - off)
        bytes += p.length
      }
      fs.fsyncSync(fd)
    } catch (err) {
      fs.closeSync(fd)
      fs.rmSync(tmp, { force: true })
      throw err
    }
    fs.closeSync(fd)
    fs.renameSync(tmp, final)
    if (syncDir) this.syncDir(path.dirname(key))
    return bytes
  }

  /**
   * Makes a temporary file written (and closed) by another thread durable and gives it its
   * final name. The caller syncs the directory. fsync through a new descriptor flushes the
   * file's dirty pages all the same.
   */
  async commitTmp(tmp: string, key: string): Promise<void> {
    const fh = await fs.promises.open(tmp, 'r')
    try {
      await fh.sync()
    } finally {
      await fh.close()
    }
    await fs.promises.rename(tmp, this.path(key))
  }

  /** Atomically replaces `to` with `from` (both keys in one directory), then syncs the directory. */
  rename(from: string, to: string): void {
    fs.renameSync(this.path(from), this.path(to))
    this.syncDir(path.dirname(to))
  }

  syncDir(dir: string): void {
    const fd = fs.openSync(this.path(dir), 'r')
    try {
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
  }

  removeTree(key: string): void {
    fs.rmSync(this.path(key), { recursive: true, force: true })
  }
}
