import { lazyBuiltin } from '../os/builtin.js'
import {
  checkInBlob, partsOf, StoreError,
  type BlobReader, type BlobStat, type ByteRange, type FaultRule, type PutOptions, type Staged, type Store, type StoreDescription,
  type StoreOp, type SyncBlobReader, type SyncStore,
} from './store.js'

const workerThreads = lazyBuiltin<typeof import('node:worker_threads')>('node:worker_threads')

export type { FaultRule } from './store.js'

export interface FaultyOptions {
  /** Seeds the PRNG that draws probabilities, latencies and flipped positions (mixed with the thread id). */
  seed: number
  rules: FaultRule[]
  /**
   * Let opened blobs show the inner store's file descriptor (BlobReader.localFd). Off by
   * default: a native reader given the fd would read around the injected faults, so the
   * blobs of a faulty store count as "not on local disk" (reads deferred to JavaScript).
   */
  exposeFd?: boolean
}

/** Operations each fault applies to when its rule names none. */
const DEFAULT_OPS: Record<FaultRule['fault'], readonly StoreOp[]> = {
  EIO: ['get', 'open', 'read', 'put', 'stage', 'writeStaged', 'commitStaged', 'has', 'stat', 'list', 'remove'],
  ENOSPC: ['put', 'writeStaged', 'commitStaged'],
  EDQUOT: ['put', 'writeStaged', 'commitStaged'],
  ENOENT: ['get', 'open', 'stat', 'has'],
  short: ['get', 'open', 'read', 'stat'],
  flip: ['get', 'read'],
  latency: ['get', 'open', 'read', 'put', 'stage', 'writeStaged', 'commitStaged', 'has', 'stat', 'list', 'remove'],
  torn: ['put', 'writeStaged'],
  unacked: ['put', 'commitStaged'],
  kill: ['get', 'open', 'read', 'put', 'stage', 'writeStaged', 'commitStaged', 'has', 'stat', 'list', 'remove'],
}

/** mulberry32: a small, fast, seedable PRNG; uniform in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A key glob as a regular expression: `**` any keys, `*` within a segment, `?` one character. */
export function globRe(glob: string): RegExp {
  let re = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*'
      i++
    } else if (c === '*') re += '[^/]*'
    else if (c === '?') re += '[^/]'
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&')
  }
  return new RegExp(`^${re}$`)
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4))

interface Armed {
  rule: FaultRule
  re: RegExp | null
  ops: ReadonlySet<StoreOp>
  matched: number
  fired: number
}

/** What fired for one call. */
interface Firing {
  latencyMs: number
  error: FaultRule['fault'] | null
  shortBytes: number
  flipBytes: number
  torn: boolean
  unacked: boolean
}

/**
 * A wrapper that injects faults into another store: errors (EIO, ENOSPC, EDQUOT, ENOENT),
 * short blobs, flipped bytes, latency, torn writes, lost acknowledgements and crashes (SIGKILL), per key glob and operation, always or
 * with a seeded probability, after N calls, at most M times. Records what it injected and
 * counts every call, so tests can assert both that a fault fired and how often a layer
 * above went to the store (single-flight). Test-only; see native-notes/store.md.
 */
export class FaultyStore implements Store {
  /** Every fault injected, in order. */
  readonly injected: Array<{ op: StoreOp; key: string; fault: FaultRule['fault'] }> = []
  /** Calls per `op key` (also for calls no rule matched). */
  readonly calls = new Map<string, number>()
  readonly sync: SyncStore | null
  private readonly armed: Armed[]
  private readonly rnd: () => number
  readonly exposeFd: boolean

  constructor(
    readonly inner: Store,
    private readonly opts: FaultyOptions,
  ) {
    this.rnd = mulberry32(opts.seed ^ Math.imul(workerThreads().threadId, 0x9e3779b1))
    this.exposeFd = !!opts.exposeFd
    this.armed = opts.rules.map((rule) => {
      if (!DEFAULT_OPS[rule.fault]) throw new TypeError(`unknown fault ${JSON.stringify(rule.fault)}`)
      if (rule.fault === 'short' && !(Number.isSafeInteger(rule.shortBytes) && rule.shortBytes! >= 0)) throw new TypeError("fault 'short' needs shortBytes ≥ 0")
      return { rule, re: rule.keys === undefined ? null : globRe(rule.keys), ops: new Set(rule.ops ?? DEFAULT_OPS[rule.fault]), matched: 0, fired: 0 }
    })
    this.sync = inner.sync ? new FaultySyncFace(this, inner.sync) : null
  }

  /** Calls of `op` on keys matching `keys` (a glob; default all). */
  count(op: StoreOp, keys?: string): number {
    const re = keys === undefined ? null : globRe(keys)
    let n = 0
    for (const [k, v] of this.calls) {
      const sp = k.indexOf(' ')
      if (k.slice(0, sp) === op && (!re || re.test(k.slice(sp + 1)))) n += v
    }
    return n
  }

  /** Forgets the call counts and the injected list (rule counters keep counting). */
  resetCounts(): void {
    this.calls.clear()
    this.injected.length = 0
  }

  /** Which rules fire for this call; counts it. */
  fire(op: StoreOp, key: string): Firing | null {
    const ck = `${op} ${key}`
    this.calls.set(ck, (this.calls.get(ck) ?? 0) + 1)
    let f: Firing | null = null
    for (const a of this.armed) {
      const r = a.rule
      if (!a.ops.has(op) || (a.re && !a.re.test(key))) continue
      a.matched++
      if (a.matched <= (r.after ?? 0)) continue
      if (r.times !== undefined && a.fired >= r.times) continue
      if (r.probability !== undefined && r.probability < 1 && this.rnd() >= r.probability) continue
      a.fired++
      this.injected.push({ op, key, fault: r.fault })
      f ??= { latencyMs: 0, error: null, shortBytes: -1, flipBytes: 0, torn: false, unacked: false }
      switch (r.fault) {
        case 'latency': {
          const l = r.latencyMs ?? 1
          f.latencyMs += Array.isArray(l) ? l[0] + this.rnd() * (l[1] - l[0]) : l
          break
        }
        case 'short':
          f.shortBytes = f.shortBytes < 0 ? r.shortBytes! : Math.min(f.shortBytes, r.shortBytes!)
          break
        case 'flip':
          f.flipBytes += r.flipBytes ?? 1
          break
        case 'torn':
          f.torn = true
          break
        case 'unacked':
          f.unacked = true
          break
        case 'kill':
          // a crash right here: nothing after this call happens (no exit handlers, no cleanup)
          process.kill(process.pid, 'SIGKILL')
          break
        default:
          f.error ??= r.fault
      }
    }
    return f
  }

  /** The injected error for a firing, if any. */
  errorOf(f: Firing | null, op: StoreOp, key: string): StoreError | null {
    if (!f?.error) return null
    return new StoreError(f.error as 'EIO', key, `${this.where(key)}: ${op}: injected ${f.error}`)
  }

  /** XORs 0xff into `n` seeded positions of `b`. */
  flip(b: Buffer, n: number): void {
    if (b.length === 0) return
    for (let i = 0; i < n; i++) b[Math.floor(this.rnd() * b.length)]! ^= 0xff
  }

  async delay(f: Firing | null): Promise<void> {
    if (f && f.latencyMs > 0) await new Promise((r) => setTimeout(r, f.latencyMs))
  }

  delaySync(f: Firing | null): void {
    if (f && f.latencyMs > 0) Atomics.wait(sleepCell, 0, 0, f.latencyMs)
  }

  /** A range (or the whole blob) of a blob of `size` bytes that looks `short` bytes long. */
  shortRange(key: string, f: Firing | null, size: number, range: ByteRange | undefined): { size: number; range: ByteRange } {
    const s = f && f.shortBytes >= 0 ? Math.min(size, f.shortBytes) : size
    const r = range ?? { offset: 0, length: s }
    checkInBlob(key, this.where(key), r, s)
    return { size: s, range: r }
  }

  where(key: string): string {
    return this.inner.where(key)
  }

  localRoots(): string[] {
    return this.inner.localRoots()
  }

  describe(): StoreDescription | null {
    const inner = this.inner.describe()
    return inner && { kind: 'faulty', seed: this.opts.seed, rules: this.opts.rules, exposeFd: this.exposeFd, inner }
  }

  async get(key: string, range?: ByteRange): Promise<Buffer> {
    const f = this.fire('get', key)
    await this.delay(f)
    const e = this.errorOf(f, 'get', key)
    if (e) throw e
    let b: Buffer
    if (f && f.shortBytes >= 0) {
      const st = await this.inner.stat(key)
      b = await this.inner.get(key, this.shortRange(key, f, st.sizeBytes, range).range)
    } else b = await this.inner.get(key, range)
    if (f?.flipBytes) this.flip(b, f.flipBytes)
    return b
  }

  async open(key: string): Promise<BlobReader> {
    const f = this.fire('open', key)
    await this.delay(f)
    const e = this.errorOf(f, 'open', key)
    if (e) throw e
    const b = await this.inner.open(key)
    return new FaultyBlob(this, b, f && f.shortBytes >= 0 ? Math.min(b.sizeBytes, f.shortBytes) : b.sizeBytes)
  }

  async put(key: string, data: Uint8Array | readonly Uint8Array[], opts?: PutOptions): Promise<void> {
    const f = this.fire('put', key)
    await this.delay(f)
    const e = this.errorOf(f, 'put', key)
    if (e) throw e
    if (f?.torn) {
      // what a crash mid-write leaves: part of the bytes in a temporary file, never the key
      const s = await this.inner.stage(key)
      await this.inner.writeStaged(s, tornParts(partsOf(data)))
      throw new StoreError('EIO', key, `${this.where(key)}: put: injected torn write`)
    }
    await this.inner.put(key, data, opts)
    if (f?.unacked) throw unackedError(this, 'put', key)
  }

  async stage(key: string): Promise<Staged> {
    const f = this.fire('stage', key)
    await this.delay(f)
    const e = this.errorOf(f, 'stage', key)
    if (e) throw e
    return wrapToken(key, await this.inner.stage(key))
  }

  async writeStaged(ws: Staged, data: readonly Uint8Array[]): Promise<number> {
    const [key, s] = unwrapToken(ws)
    const f = this.fire('writeStaged', key)
    await this.delay(f)
    const e = this.errorOf(f, 'writeStaged', key)
    if (e) throw e
    if (f?.torn) {
      await this.inner.writeStaged(s, tornParts(data))
      throw new StoreError('EIO', key, `${this.where(key)}: writeStaged: injected torn write`)
    }
    return this.inner.writeStaged(s, data)
  }

  async commitStaged(ws: Staged, opts?: { syncListing?: boolean }): Promise<void> {
    const [key, s] = unwrapToken(ws)
    const f = this.fire('commitStaged', key)
    await this.delay(f)
    const e = this.errorOf(f, 'commitStaged', key)
    if (e) throw e
    await this.inner.commitStaged(s, opts)
    if (f?.unacked) throw unackedError(this, 'commitStaged', key)
  }

  abortStaged(ws: Staged): Promise<void> {
    return this.inner.abortStaged(unwrapToken(ws)[1])
  }

  async has(key: string): Promise<boolean> {
    const f = this.fire('has', key)
    await this.delay(f)
    if (f?.error === 'ENOENT') return false
    const e = this.errorOf(f, 'has', key)
    if (e) throw e
    return this.inner.has(key)
  }

  async stat(key: string): Promise<BlobStat> {
    const f = this.fire('stat', key)
    await this.delay(f)
    const e = this.errorOf(f, 'stat', key)
    if (e) throw e
    const st = await this.inner.stat(key)
    return f && f.shortBytes >= 0 ? { sizeBytes: Math.min(st.sizeBytes, f.shortBytes) } : st
  }

  async list(prefix: string): Promise<string[]> {
    const f = this.fire('list', prefix)
    await this.delay(f)
    const e = this.errorOf(f, 'list', prefix)
    if (e) throw e
    return this.inner.list(prefix)
  }

  async remove(key: string, opts?: { recursive?: boolean }): Promise<void> {
    const f = this.fire('remove', key)
    await this.delay(f)
    const e = this.errorOf(f, 'remove', key)
    if (e) throw e
    return this.inner.remove(key, opts)
  }

  flush(prefix: string): Promise<void> {
    return this.inner.flush(prefix)
  }

  sweep(prefix?: string, opts?: { shallow?: boolean }): Promise<number> {
    return this.inner.sweep(prefix, opts)
  }
}

/** A blob opened through a FaultyStore: every read passes the 'read' rules. */
class FaultyBlob implements SyncBlobReader {
  readonly key: string
  constructor(
    private readonly s: FaultyStore,
    private readonly b: BlobReader,
    readonly sizeBytes: number,
  ) {
    this.key = b.key
  }

  get localFd(): number | undefined {
    return this.s.exposeFd ? this.b.localFd : undefined
  }

  private check(f: Firing | null, r: ByteRange): void {
    const e = this.s.errorOf(f, 'read', this.key)
    if (e) throw e
    this.s.shortRange(this.key, f, this.sizeBytes, r)
  }

  async read(r: ByteRange, into?: Buffer): Promise<Buffer> {
    const f = this.s.fire('read', this.key)
    await this.s.delay(f)
    this.check(f, r)
    const out = await this.b.read(r, into)
    if (f?.flipBytes) this.s.flip(out, f.flipBytes)
    return out
  }

  readSync(r: ByteRange, into?: Buffer): Buffer {
    const inner = this.b as Partial<SyncBlobReader>
    if (!inner.readSync) throw new StoreError('ENOSYNC', this.key, `${this.s.where(this.key)}: opened without the synchronous face`)
    const f = this.s.fire('read', this.key)
    this.s.delaySync(f)
    this.check(f, r)
    const out = inner.readSync.call(this.b, r, into)
    if (f?.flipBytes) this.s.flip(out, f.flipBytes)
    return out
  }

  close(): Promise<void> {
    return this.b.close()
  }

  closeSync(): void {
    const inner = this.b as Partial<SyncBlobReader>
    if (inner.closeSync) inner.closeSync.call(this.b)
    else void this.b.close()
  }
}

class FaultySyncFace implements SyncStore {
  constructor(
    private readonly s: FaultyStore,
    private readonly inner: SyncStore,
  ) {}

  private enter(op: StoreOp, key: string): Firing | null {
    const f = this.s.fire(op, key)
    this.s.delaySync(f)
    if (op === 'has' && f?.error === 'ENOENT') return f
    const e = this.s.errorOf(f, op, key)
    if (e) throw e
    return f
  }

  getSync(key: string, range?: ByteRange): Buffer {
    const f = this.enter('get', key)
    const b = f && f.shortBytes >= 0 ? this.inner.getSync(key, this.s.shortRange(key, f, this.inner.statSync(key).sizeBytes, range).range) : this.inner.getSync(key, range)
    if (f?.flipBytes) this.s.flip(b, f.flipBytes)
    return b
  }

  openSync(key: string): SyncBlobReader {
    const f = this.enter('open', key)
    const b = this.inner.openSync(key)
    return new FaultyBlob(this.s, b, f && f.shortBytes >= 0 ? Math.min(b.sizeBytes, f.shortBytes) : b.sizeBytes)
  }

  putSync(key: string, data: Uint8Array | readonly Uint8Array[], opts?: PutOptions): void {
    const f = this.enter('put', key)
    if (f?.torn) throw new StoreError('EIO', key, `${this.s.where(key)}: put: injected torn write`)
    this.inner.putSync(key, data, opts)
    if (f?.unacked) throw unackedError(this.s, 'put', key)
  }

  writeStagedSync(ws: Staged, data: readonly Uint8Array[]): number {
    const [key, st] = unwrapToken(ws)
    const f = this.enter('writeStaged', key)
    if (f?.torn) {
      this.inner.writeStagedSync(st, tornParts(data))
      throw new StoreError('EIO', key, `${this.s.where(key)}: writeStaged: injected torn write`)
    }
    return this.inner.writeStagedSync(st, data)
  }

  hasSync(key: string): boolean {
    const f = this.enter('has', key)
    if (f?.error === 'ENOENT') return false
    return this.inner.hasSync(key)
  }

  statSync(key: string): BlobStat {
    const f = this.enter('stat', key)
    const st = this.inner.statSync(key)
    return f && f.shortBytes >= 0 ? { sizeBytes: Math.min(st.sizeBytes, f.shortBytes) } : st
  }

  listSync(prefix: string): string[] {
    this.enter('list', prefix)
    return this.inner.listSync(prefix)
  }

  removeSync(key: string, opts?: { recursive?: boolean }): void {
    this.enter('remove', key)
    this.inner.removeSync(key, opts)
  }

  flushSync(prefix: string): void {
    this.inner.flushSync(prefix)
  }
}

/** The first half of the data (what a write cut short leaves). */
/** The error of an 'unacked' fault: the write is done, the caller is told it failed. */
function unackedError(s: Pick<Store, 'where'>, op: StoreOp, key: string): StoreError {
  return new StoreError('EIO', key, `${s.where(key)}: ${op}: injected EIO after the write landed`)
}

function tornParts(parts: readonly Uint8Array[]): Uint8Array[] {
  let n = 0
  for (const p of parts) n += p.length
  let keep = Math.floor(n / 2)
  const out: Uint8Array[] = []
  for (const p of parts) {
    if (keep <= 0) break
    out.push(p.subarray(0, Math.min(p.length, keep)))
    keep -= p.length
  }
  return out
}

/** A staged token of the inner store, with its key in front (rules match keys; tokens are opaque). */
function wrapToken(key: string, inner: Staged): Staged {
  return { token: `faulty:${key}\u0000${inner.token}` }
}

function unwrapToken(s: Staged): [string, Staged] {
  const t = String(s.token)
  const z = t.indexOf('\u0000')
  if (!t.startsWith('faulty:') || z < 0) throw new TypeError(`not a staged-write token of a faulty store: ${JSON.stringify(t)}`)
  return [t.slice(7, z), { token: t.slice(z + 1) }]
}
