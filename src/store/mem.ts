import {
  checkInBlob, checkKey, partsOf, StoreError,
  type BlobStat, type ByteRange, type PutOptions, type Staged, type Store, type StoreDescription, type SyncBlobReader, type SyncStore,
} from './store.js'

/** An opened blob of a MemStore: keeps the bytes it was opened on (a later replace does not change them, as with a file descriptor). */
class MemBlob implements SyncBlobReader {
  private bytes: Buffer | null
  readonly localFd = undefined
  constructor(
    readonly key: string,
    sab: SharedArrayBuffer,
  ) {
    this.bytes = Buffer.from(sab)
  }

  get sizeBytes(): number {
    return this.bytes?.length ?? 0
  }

  readSync(r: ByteRange, into?: Buffer): Buffer {
    const b = this.bytes
    if (!b) throw new StoreError('EIO', this.key, `mem:${this.key}: read after close`)
    checkInBlob(this.key, `mem:${this.key}`, r, b.length)
    if (into && into.length < r.length) throw new TypeError(`buffer of ${into.length} bytes for a read of ${r.length}`)
    const out = into ? into.subarray(0, r.length) : Buffer.allocUnsafe(r.length)
    b.copy(out, 0, r.offset, r.offset + r.length)
    return out
  }

  async read(r: ByteRange, into?: Buffer): Promise<Buffer> {
    return this.readSync(r, into)
  }

  closeSync(): void {
    this.bytes = null
  }

  async close(): Promise<void> {
    this.bytes = null
  }
}

interface StagedBlob {
  key: string
  data: SharedArrayBuffer | null
}

/**
 * Blobs in memory (SharedArrayBuffers, never modified once stored: a replace swaps the
 * buffer), for tests and later as a tier's index. describe() shares them with worker
 * threads as a read-only snapshot (writes there fail EROFS). Prefixes are implicit in the keys.
 */
export class MemStore implements Store {
  private readonly blobs = new Map<string, SharedArrayBuffer>()
  private readonly pending = new Map<string, StagedBlob>()
  private nextStage = 1
  readonly sync: SyncStore
  private readonly readOnly: boolean

  constructor(opts: { blobs?: Record<string, SharedArrayBuffer>; readOnly?: boolean } = {}) {
    for (const [k, v] of Object.entries(opts.blobs ?? {})) {
      checkKey(k)
      this.blobs.set(k, v)
    }
    this.readOnly = !!opts.readOnly
    this.sync = new MemSyncFace(this)
  }

  where(key: string): string {
    return `mem:${key}`
  }

  localRoots(): string[] {
    return []
  }

  describe(): StoreDescription {
    return { kind: 'mem', blobs: Object.fromEntries(this.blobs) }
  }

  writable(key: string): void {
    if (this.readOnly) throw new StoreError('EROFS', key, `${this.where(key)}: this memory store is a read-only snapshot`)
  }

  blob(key: string): SharedArrayBuffer {
    checkKey(key)
    const b = this.blobs.get(key)
    if (!b) throw new StoreError('ENOENT', key, `${this.where(key)}: no such blob`)
    return b
  }

  openSync(key: string): MemBlob {
    return new MemBlob(key, this.blob(key))
  }

  getSync(key: string, range?: ByteRange): Buffer {
    const b = this.blob(key)
    const r = range ?? { offset: 0, length: b.byteLength }
    checkInBlob(key, this.where(key), r, b.byteLength)
    return Buffer.from(Buffer.from(b, r.offset, r.length))
  }

  putSync(key: string, data: Uint8Array | readonly Uint8Array[], opts: PutOptions = {}): void {
    checkKey(key)
    this.writable(key)
    const mode = opts.mode ?? 'create'
    if (mode !== 'replace' && this.blobs.has(key)) throw new StoreError('EEXIST', key, `${this.where(key)}: exists`)
    this.blobs.set(key, toShared(partsOf(data)))
  }

  writeStagedSync(s: Staged, data: readonly Uint8Array[]): number {
    if (this.readOnly) this.writable(String(s.token).split(':').slice(2).join(':'))
    const st = this.stagedBlob(s)
    if (st.data) throw new StoreError('EEXIST', st.key, `${this.where(st.key)}: staged write already written`)
    st.data = toShared(data)
    return st.data.byteLength
  }

  listSync(prefix: string): string[] {
    checkKey(prefix, true)
    const head = prefix === '' ? '' : `${prefix}/`
    const out = new Set<string>()
    for (const k of this.blobs.keys()) {
      if (!k.startsWith(head)) continue
      const slash = k.indexOf('/', head.length)
      out.add(slash < 0 ? k : k.slice(0, slash))
    }
    return [...out].sort()
  }

  removeSync(key: string, opts: { recursive?: boolean } = {}): void {
    checkKey(key, !!opts.recursive)
    this.writable(key)
    const head = key === '' ? '' : `${key}/`
    const isPrefix = [...this.blobs.keys()].some((k) => k.startsWith(head))
    if (!opts.recursive) {
      if (!this.blobs.has(key) && isPrefix) throw new TypeError(`${this.where(key)}: is a prefix; remove it with { recursive: true }`)
      this.blobs.delete(key)
      return
    }
    this.blobs.delete(key)
    for (const k of [...this.blobs.keys()]) if (k.startsWith(head)) this.blobs.delete(k)
  }

  stagedBlob(s: Staged): StagedBlob {
    const st = this.pending.get(s.token)
    if (!st) throw new TypeError(`not a pending staged write of this store: ${JSON.stringify(s.token)}`)
    return st
  }

  // --- the async contract: the same, resolved ---

  async get(key: string, range?: ByteRange): Promise<Buffer> {
    return this.getSync(key, range)
  }

  async open(key: string): Promise<MemBlob> {
    return this.openSync(key)
  }

  async put(key: string, data: Uint8Array | readonly Uint8Array[], opts?: PutOptions): Promise<void> {
    this.putSync(key, data, opts)
  }

  async stage(key: string): Promise<Staged> {
    checkKey(key)
    const token = `mem:${this.nextStage++}:${key}`
    this.pending.set(token, { key, data: null })
    return { token }
  }

  async writeStaged(s: Staged, data: readonly Uint8Array[]): Promise<number> {
    return this.writeStagedSync(s, data)
  }

  async commitStaged(s: Staged): Promise<void> {
    const st = this.stagedBlob(s)
    this.writable(st.key)
    if (this.blobs.has(st.key)) throw new StoreError('EEXIST', st.key, `${this.where(st.key)}: exists`)
    this.blobs.set(st.key, st.data ?? new SharedArrayBuffer(0))
    this.pending.delete(s.token)
  }

  async abortStaged(s: Staged): Promise<void> {
    this.pending.delete(s.token)
  }

  async has(key: string): Promise<boolean> {
    return this.sync.hasSync(key)
  }

  async stat(key: string): Promise<BlobStat> {
    return this.sync.statSync(key)
  }

  async list(prefix: string): Promise<string[]> {
    return this.listSync(prefix)
  }

  async remove(key: string, opts?: { recursive?: boolean }): Promise<void> {
    this.removeSync(key, opts)
  }

  async flush(prefix: string): Promise<void> {
    checkKey(prefix, true)
  }

  /**
   * Drops every staged write not committed: a memory store lives in one process, so
   * under the writer lock (where sweep is called) any staged write left is abandoned.
   */
  async sweep(prefix = '', opts: { shallow?: boolean } = {}): Promise<number> {
    checkKey(prefix, true)
    let n = 0
    for (const [t, st] of this.pending) {
      const rest = prefix === '' ? st.key : st.key.startsWith(`${prefix}/`) ? st.key.slice(prefix.length + 1) : null
      if (rest !== null && !(opts.shallow && rest.includes('/'))) {
        this.pending.delete(t)
        n++
      }
    }
    return n
  }

  hasKey(key: string): boolean {
    checkKey(key)
    return this.blobs.has(key)
  }
}

class MemSyncFace implements SyncStore {
  constructor(private readonly s: MemStore) {}
  getSync(key: string, range?: ByteRange): Buffer {
    return this.s.getSync(key, range)
  }
  openSync(key: string): SyncBlobReader {
    return this.s.openSync(key)
  }
  putSync(key: string, data: Uint8Array | readonly Uint8Array[], opts?: PutOptions): void {
    this.s.putSync(key, data, opts)
  }
  writeStagedSync(st: Staged, data: readonly Uint8Array[]): number {
    return this.s.writeStagedSync(st, data)
  }
  hasSync(key: string): boolean {
    return this.s.hasKey(key)
  }
  statSync(key: string): BlobStat {
    return { sizeBytes: this.s.blob(key).byteLength }
  }
  listSync(prefix: string): string[] {
    return this.s.listSync(prefix)
  }
  removeSync(key: string, opts?: { recursive?: boolean }): void {
    this.s.removeSync(key, opts)
  }
  flushSync(prefix: string): void {
    checkKey(prefix, true)
  }
}

function toShared(parts: readonly Uint8Array[]): SharedArrayBuffer {
  let n = 0
  for (const p of parts) n += p.length
  const sab = new SharedArrayBuffer(n)
  const view = new Uint8Array(sab)
  let off = 0
  for (const p of parts) {
    view.set(p, off)
    off += p.length
  }
  return sab
}
