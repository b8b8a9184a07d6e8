/**
 * The synchronous face of an S3 store (native-notes/store.md "S3: the synchronous face").
 * bfs's repository code reads and writes its metadata synchronously (config, runs, leases,
 * manifests, the commit), and a network request cannot be made synchronously in Node. So the
 * face runs a second S3Store in a worker thread and blocks the calling thread in Atomics.wait
 * until the worker has answered on a MessagePort, then takes the answer with
 * receiveMessageOnPort (no event loop turn). The worker starts on the first call, or at once
 * for a command's store (S3Store.startEarly), loads the SDK as it starts (~0.2 s), is shared by
 * the faces of equal stores in this thread, and is unref'd, so it never keeps a process alive.
 * Staged writes need no worker: they go to the local spool file directly (what compression
 * workers do).
 */
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { MessagePort, Worker } from 'node:worker_threads'
import { lazyBuiltin } from '../os/builtin.js'
import {
  checkInBlob, checkKey, checkRange, partsOf, StoreError,
  type BlobStat, type ByteRange, type PutOptions, type Staged, type SyncBlobReader, type SyncStore,
} from './store.js'

const workerThreads = lazyBuiltin<typeof import('node:worker_threads')>('node:worker_threads')

/** What the face needs of its S3Store (an interface, so that s3.ts and this file do not import each other). */
export interface S3SyncTarget {
  readonly opts: { maxAttempts: number; connectTimeoutMs: number; requestTimeoutMs: number }
  where(key: string): string
  describe(): unknown
  getRange(key: string, r: ByteRange, etag?: string): Promise<Buffer>
  writeStagedLocal(s: Staged, data: readonly Uint8Array[]): number
}

/** The worker's script: tsc's dist/store/s3-worker.js (also from the CLI bundle in dist/cli/, and from src/ under the tests). */
export function workerFile(): string {
  const here = fileURLToPath(import.meta.url)
  if (here.endsWith('.ts')) return path.join(path.dirname(here), '..', '..', 'dist', 'store', 's3-worker.js')
  return fileURLToPath(new URL('../store/s3-worker.js', import.meta.url))
}

export type SyncOp = 'get' | 'head' | 'getRange' | 'put' | 'list' | 'remove' | 'fill'

/** One worker thread answering one blocked caller at a time. */
class Bridge {
  private readonly worker: Worker
  private readonly port: MessagePort
  private readonly flag = new Int32Array(new SharedArrayBuffer(4))
  private dead: string | null = null

  constructor(private readonly s: S3SyncTarget) {
    const { port1, port2 } = new (workerThreads().MessageChannel)()
    this.port = port1
    this.worker = new (workerThreads().Worker)(workerFile(), { workerData: { desc: s.describe(), port: port2, flag: this.flag }, transferList: [port2] })
    this.worker.unref()
    this.port.unref()
    this.worker.on('error', (err) => (this.dead = err.message))
  }

  /** The thread failed or stopped answering: every call fails now (a face asking for one gets a new thread). */
  get isDead(): boolean {
    return this.dead !== null
  }

  call(op: SyncOp, key: string, ...args: unknown[]): unknown {
    Atomics.store(this.flag, 0, 0)
    this.port.postMessage({ op, key, args })
    const o = this.s.opts
    // every attempt may take the connect and the request timeout, plus backoff; plus the worker's start
    const deadline = Date.now() + o.maxAttempts * (o.connectTimeoutMs + o.requestTimeoutMs + 5000) + 30_000
    while (Atomics.load(this.flag, 0) === 0) {
      Atomics.wait(this.flag, 0, 0, 1000)
      if (Atomics.load(this.flag, 0) !== 0) break
      if (Date.now() > deadline) {
        this.dead = 'no answer'
        throw new StoreError('EIO', key, `${this.s.where(key)}: the S3 request thread did not answer in time`)
      }
    }
    const m = workerThreads().receiveMessageOnPort(this.port)?.message as { r?: unknown; e?: { name: string; code: string; key: string; message: string } } | undefined
    if (!m) throw new StoreError('EIO', key, `${this.s.where(key)}: the S3 request thread failed${this.dead ? ': ' + this.dead : ''}`)
    if (m.e) {
      if (m.e.name === 'TypeError') throw new TypeError(m.e.message)
      if (m.e.name === 'StoreError') throw new StoreError(m.e.code as never, m.e.key, m.e.message)
      throw new StoreError('EIO', key, `${this.s.where(key)}: ${m.e.message.split('\n')[0]}`)
    }
    return m.r
  }

  close(): void {
    void this.worker.terminate()
    this.port.close()
  }
}

const buf = (u: unknown): Buffer => {
  const a = u as Uint8Array
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength)
}

/** An S3 object opened through the sync face: etag at open, reads GET Range + If-Match (sync or async). */
class S3SyncBlob implements SyncBlobReader {
  private closed = false
  readonly localFd = undefined
  constructor(
    private readonly face: S3SyncFace,
    private readonly s: S3SyncTarget,
    readonly key: string,
    readonly sizeBytes: number,
    private readonly etag: string,
  ) {}

  private check(r: ByteRange, into: Buffer | undefined): void {
    checkInBlob(this.key, this.s.where(this.key), r, this.sizeBytes)
    if (this.closed) throw new StoreError('EIO', this.key, `${this.s.where(this.key)}: read after close`)
    if (into && into.length < r.length) throw new TypeError(`buffer of ${into.length} bytes for a read of ${r.length}`)
  }

  private out(b: Buffer, r: ByteRange, into: Buffer | undefined): Buffer {
    if (!into) return b
    b.copy(into, 0, 0, r.length)
    return into.subarray(0, r.length)
  }

  readSync(r: ByteRange, into?: Buffer): Buffer {
    this.check(r, into)
    if (r.length === 0) return Buffer.alloc(0)
    return this.out(buf(this.face.bridge().call('getRange', this.key, r, this.etag)), r, into)
  }

  async read(r: ByteRange, into?: Buffer): Promise<Buffer> {
    this.check(r, into)
    if (r.length === 0) return Buffer.alloc(0)
    return this.out(await this.s.getRange(this.key, r, this.etag), r, into)
  }

  closeSync(): void {
    this.closed = true
  }

  async close(): Promise<void> {
    this.closed = true
  }
}

/**
 * The request threads of this thread's faces, by their store's description: faces of equal
 * stores share one (each thread's SDK load is ~0.15 s of a core; a command's dispatch opened
 * the repository's store once to tell its format and again to open it, and waited for two).
 * The thread ends when the last face using it is closed.
 */
const bridges = new Map<string, { bridge: Bridge; users: number }>()

export class S3SyncFace implements SyncStore {
  private b: Bridge | null = null
  private id = ''
  constructor(private readonly s: S3SyncTarget) {}

  bridge(): Bridge {
    if (this.b) return this.b
    this.id = JSON.stringify(this.s.describe())
    let e = bridges.get(this.id)
    // (a dead one is left to the faces holding it, whose calls fail; their close() ends it)
    if (!e || e.bridge.isDead) bridges.set(this.id, (e = { bridge: new Bridge(this.s), users: 0 }))
    e.users++
    return (this.b = e.bridge)
  }

  close(): void {
    if (!this.b) return
    const e = bridges.get(this.id)
    if (e?.bridge === this.b) {
      if (--e.users === 0) {
        bridges.delete(this.id)
        e.bridge.close()
      }
    } else this.b.close() // a dead one, replaced in the map since
    this.b = null
  }

  /** HEAD: size and ETag, or undefined if absent. */
  head(key: string): { sizeBytes: number; etag: string; mtimeMs?: number } | undefined {
    return (this.bridge().call('head', key) as { sizeBytes: number; etag: string; mtimeMs?: number } | null) ?? undefined
  }

  getSync(key: string, range?: ByteRange): Buffer {
    checkKey(key)
    if (range) checkRange(range)
    return buf(this.bridge().call('get', key, range))
  }

  openSync(key: string): SyncBlobReader {
    checkKey(key)
    const h = this.head(key)
    if (!h) throw new StoreError('ENOENT', key, `${this.s.where(key)}: cannot open: no such blob`)
    return new S3SyncBlob(this, this.s, key, h.sizeBytes, h.etag)
  }

  putSync(key: string, data: Uint8Array | readonly Uint8Array[], opts: PutOptions = {}): void {
    checkKey(key)
    this.bridge().call('put', key, Buffer.concat(partsOf(data)), { mode: opts.mode })
  }

  writeStagedSync(st: Staged, data: readonly Uint8Array[]): number {
    return this.s.writeStagedLocal(st, data)
  }

  hasSync(key: string): boolean {
    checkKey(key)
    return this.head(key) !== undefined
  }

  statSync(key: string): BlobStat {
    checkKey(key)
    const h = this.head(key)
    if (!h) throw new StoreError('ENOENT', key, `${this.s.where(key)}: cannot stat: no such blob`)
    return { sizeBytes: h.sizeBytes, mtimeMs: h.mtimeMs }
  }

  listSync(prefix: string): string[] {
    checkKey(prefix, true)
    return this.bridge().call('list', prefix) as string[]
  }

  removeSync(key: string, opts: { recursive?: boolean } = {}): void {
    checkKey(key, !!opts.recursive)
    this.bridge().call('remove', key, { recursive: !!opts.recursive })
  }

  flushSync(_prefix: string): void {
    // every PUT is durable and listed once acknowledged
  }
}
