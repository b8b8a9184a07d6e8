/**
 * A client of the repository's recall service (service.ts, protocol.ts): connects, starting
 * the service when none answers, and starts it again when it dies, re-sending what was
 * still outstanding (recalls and pins). `ServiceSource` makes it the ColdSource of a
 * CacheStore: every process reading a repository with units on tape reads through it.
 */
import type net from 'node:net'
import { lazyBuiltin } from '../../os/builtin.js'
import type { BufferCache, ColdSource, FillOptions } from '../cache.js'
import { withTimeout } from '../cache.js'
import { StoreError } from '../store.js'
import type { ColdEntry, TapeCatalog } from '../tape.js'
import { encode, lineReader, type ClientMessage, type ServiceMessage, type ServiceStatus } from './protocol.js'

const netMod = lazyBuiltin<typeof import('node:net')>('node:net')

export interface ClientOptions {
  socketPath: string
  /**
   * Starts a service (detached; it takes its lock and listens); null: never start one (status
   * only). It may return the started process's fate: `failure()` says why it ended before
   * answering (null while it runs, or when it ended well: another service had the lock), so
   * the client fails at once with that reason instead of waiting out `startTimeoutMs`.
   */
  spawn: (() => StartedService | void) | null
  /** How long to wait for a service to answer after starting it (default 30 s). */
  startTimeoutMs?: number
  /** Sets the buffer cache's limit when connecting (--buffer-cache). */
  cacheBytes?: number
  /** Disconnect after this long with nothing outstanding (default 2 s), so the service can go idle. */
  lingerMs?: number
}

export interface RecallProgress {
  done: number
  failed: number
  total: number
  bytes: number
  /** The library's simulated time, seconds. */
  simNow: number
}

interface Req {
  id: number
  keys: string[]
  pin: boolean
  deadline?: number
  /** Asked for ahead of any reader (protocol `ahead`). */
  ahead: boolean
  left: Set<string>
  perKey: Map<string, { resolve: () => void; reject: (e: unknown) => void }>
  onProgress?: (p: RecallProgress) => void
  failed: number
  resolveDone: (r: { ok: number; failed: number }) => void
  /** The connection it was last sent on (sent again on a new one). */
  sentOn: net.Socket | null
}

/** The service could not be reached or started. */
/** A service process a client started (cli/recall.ts spawnService). */
export interface StartedService {
  /** Why it ended without answering (one line, e.g. its error and exit status), or null. */
  failure(): Promise<string | null>
}

export class ServiceUnavailable extends Error {
  override readonly name = 'ServiceUnavailable'
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

export class RecallClient {
  private socket: net.Socket | null = null
  private connecting: Promise<net.Socket> | null = null
  private readonly reqs = new Map<number, Req>()
  private readonly pins = new Set<string>()
  private touches = new Set<string>()
  private touchTimer: NodeJS.Timeout | null = null
  private lingerTimer: NodeJS.Timeout | null = null
  private statusWaiters: Array<(s: ServiceStatus) => void> = []
  private nextId = 1
  private closed = false
  /** The protocol version the connected service said in its hello (0 until it answered). */
  private serviceVersion = 0
  /** Services this client started (tests; logs). */
  starts = 0

  constructor(private readonly o: ClientOptions) {}

  /** Connects (starting the service if none answers). */
  private ensure(): Promise<net.Socket> {
    if (this.socket) return Promise.resolve(this.socket)
    this.connecting ??= this.connect().finally(() => {
      this.connecting = null
    })
    return this.connecting
  }

  private tryConnect(): Promise<net.Socket | null> {
    return new Promise((resolve) => {
      const s = netMod().createConnection(this.o.socketPath)
      s.once('connect', () => {
        s.removeAllListeners('error')
        resolve(s)
      })
      s.once('error', () => resolve(null))
    })
  }

  private async connect(): Promise<net.Socket> {
    if (this.closed) throw new ServiceUnavailable('the recall client is closed')
    let s = await this.tryConnect()
    if (!s) {
      if (!this.o.spawn) throw new ServiceUnavailable(`no recall service answers on ${this.o.socketPath}`)
      const started = this.o.spawn()
      this.starts++
      const deadline = performance.now() + (this.o.startTimeoutMs ?? 30_000)
      for (let delay = 10; !s; delay = Math.min(200, delay * 2)) {
        if (performance.now() > deadline) throw new ServiceUnavailable(`the recall service did not start within ${Math.round((this.o.startTimeoutMs ?? 30_000) / 1000)} s (its log: next to ${this.o.socketPath})`)
        await sleep(delay)
        s = await this.tryConnect()
        // the service this client started ended (a wrong passphrase, a broken library): say why, now
        const why = s || !started ? null : await started.failure()
        if (why !== null) throw new ServiceUnavailable(`the recall service could not start: ${why}`)
      }
    }
    this.adopt(s)
    return s
  }

  private adopt(s: net.Socket): void {
    this.socket = s
    this.serviceVersion = 0
    s.on('data', lineReader((m) => this.onMessage(m as ServiceMessage), () => undefined))
    s.on('error', () => undefined)
    s.on('close', () => this.lost(s))
    this.write({ op: 'hello', pid: process.pid, ...(this.o.cacheBytes !== undefined ? { cacheBytes: this.o.cacheBytes } : {}) })
    // what the last service did not finish: pins first, then the recalls
    if (this.pins.size) this.write({ op: 'pin', keys: [...this.pins] })
    for (const r of this.reqs.values()) this.sendRecall(r)
    if (this.touches.size) this.flushTouches()
    this.armLinger()
  }

  /** The connection went away (the service died or stopped): reconnect if anything is outstanding. */
  private lost(s: net.Socket): void {
    if (this.socket !== s) return
    this.socket = null
    if (this.closed || (this.reqs.size === 0 && this.pins.size === 0)) return
    this.ensure().catch((err: unknown) => {
      for (const r of this.reqs.values()) this.failAll(r, err)
    })
  }

  private write(m: ClientMessage): void {
    this.socket?.write(encode(m))
  }

  private sendRecall(r: Req): void {
    if (!this.socket || r.sentOn === this.socket) return
    r.sentOn = this.socket
    this.write({ op: 'recall', id: r.id, keys: [...r.left], pin: r.pin, ...(r.deadline !== undefined ? { deadline: r.deadline } : {}), ...(r.ahead ? { ahead: true } : {}) })
    // sent again on a new connection: keys promoted since are promoted again
    if (r.ahead) {
      const p = [...r.left].filter((k) => this.promoted.has(k))
      if (p.length) this.write({ op: 'promote', keys: p })
    }
  }

  /** Keys asked for ahead that a reader now waits for (until they are done). */
  private readonly promoted = new Set<string>()

  /** A reader now waits for these keys, which were asked for ahead: the service orders them as any other request from now. */
  promote(keys: string[]): void {
    const mine = keys.filter((k) => [...this.reqs.values()].some((r) => r.ahead && r.left.has(k)))
    if (!mine.length) return
    for (const k of mine) this.promoted.add(k)
    if (this.socket) this.write({ op: 'promote', keys: mine })
  }

  private onMessage(m: ServiceMessage): void {
    switch (m.op) {
      case 'unit': {
        const r = this.reqs.get(m.id)
        if (!r || !r.left.has(m.key)) return
        r.left.delete(m.key)
        this.promoted.delete(m.key)
        const k = r.perKey.get(m.key)
        if (m.ok) k?.resolve()
        else {
          r.failed++
          k?.reject(new StoreError((m.code as StoreError['code']) ?? 'EIO', m.key, m.error ?? `${m.key}: recall failed`))
        }
        if (r.left.size === 0) this.finish(r)
        return
      }
      case 'progress':
        this.reqs.get(m.id)?.onProgress?.({ done: m.done, failed: m.failed, total: m.total, bytes: m.bytes, simNow: m.simNow })
        return
      case 'done': {
        const r = this.reqs.get(m.id)
        if (r && r.left.size === 0) this.finish(r)
        return
      }
      case 'status':
        for (const w of this.statusWaiters.splice(0)) w(m)
        return
      case 'hello':
        this.serviceVersion = typeof m.version === 'number' ? m.version : 0
        return
      default:
    }
  }

  private finish(r: Req): void {
    if (!this.reqs.delete(r.id)) return
    r.resolveDone({ ok: r.keys.length - r.failed, failed: r.failed })
    this.armLinger()
  }

  private failAll(r: Req, err: unknown): void {
    for (const key of r.left) {
      this.promoted.delete(key)
      r.failed++
      r.perKey.get(key)?.reject(err instanceof StoreError ? err : new StoreError('EIO', key, `${key}: ${(err as Error).message}`))
    }
    r.left.clear()
    this.finish(r)
  }

  /**
   * Asks the service to bring `keys` into the cache. `perKey` resolves (or fails) per key;
   * `done` when all are settled. `signal` cancels what is not done.
   */
  recall(keys: string[], o: { pin?: boolean; deadline?: number; ahead?: boolean; signal?: AbortSignal; onProgress?: (p: RecallProgress) => void } = {}): { perKey: Map<string, Promise<void>>; done: Promise<{ ok: number; failed: number }> } {
    const uniq = [...new Set(keys)]
    const perKey = new Map<string, Promise<void>>()
    let resolveDone!: Req['resolveDone']
    const done = new Promise<{ ok: number; failed: number }>((r) => (resolveDone = r))
    const r: Req = { id: this.nextId++, keys: uniq, pin: !!o.pin, deadline: o.deadline, ahead: !!o.ahead, left: new Set(uniq), perKey: new Map(), onProgress: o.onProgress, failed: 0, resolveDone, sentOn: null }
    for (const k of uniq) {
      const p = new Promise<void>((resolve, reject) => r.perKey.set(k, { resolve, reject }))
      p.catch(() => undefined) // each caller handles its own
      perKey.set(k, p)
    }
    if (o.pin) for (const k of uniq) this.pins.add(k)
    if (uniq.length === 0) {
      resolveDone({ ok: 0, failed: 0 })
      return { perKey, done }
    }
    this.reqs.set(r.id, r)
    this.clearLinger()
    this.ensure().then(
      (s) => {
        if (this.socket === s && this.reqs.has(r.id)) this.sendRecall(r)
      },
      (err: unknown) => this.failAll(r, err),
    )
    o.signal?.addEventListener('abort', () => this.cancel(r.id), { once: true })
    return { perKey, done }
  }

  /** Gives up request `id`'s keys that are not done (the service cancels them unless someone else wants them). */
  cancel(id: number): void {
    const r = this.reqs.get(id)
    if (!r) return
    this.write({ op: 'cancel', id })
    this.failAll(r, new StoreError('EIO', '', 'recall cancelled'))
  }

  /**
   * Gives up `keys` wherever they are still outstanding in this client's requests: a
   * request all of whose outstanding keys are among them is cancelled as by cancel(); from
   * the others only those keys are (a service that does not know per-key cancels, protocol
   * 1, keeps them: the recall goes on, nothing else fails). Their promises fail EIO "recall
   * cancelled"; the service cancels each unless another client wants it. Returns the keys
   * given up.
   */
  cancelKeys(keys: Iterable<string>): number {
    const drop = new Set(keys)
    let n = 0
    for (const r of [...this.reqs.values()]) {
      const mine = [...r.left].filter((k) => drop.has(k))
      if (mine.length === 0) continue
      if (mine.length === r.left.size) {
        n += mine.length
        this.cancel(r.id)
        continue
      }
      // not sent on this connection yet: it is sent (again) without them
      if (r.sentOn === this.socket && this.socket) {
        if (this.serviceVersion < 2) continue
        this.write({ op: 'cancel', id: r.id, keys: mine })
      }
      for (const k of mine) {
        r.left.delete(k)
        this.promoted.delete(k)
        r.failed++
        r.perKey.get(k)?.reject(new StoreError('EIO', k, `${k}: recall cancelled`))
        n++
      }
    }
    return n
  }

  pin(keys: string[]): void {
    for (const k of keys) this.pins.add(k)
    if (this.socket) this.write({ op: 'pin', keys })
    else void this.ensure().catch(() => undefined)
  }

  unpin(keys: string[] | null): void {
    if (keys === null) this.pins.clear()
    else for (const k of keys) this.pins.delete(k)
    this.write({ op: 'unpin', keys })
    this.armLinger()
  }

  /** A cache hit: sent in batches while connected, kept (bounded) for the next connection otherwise. */
  touch(key: string): void {
    if (this.touches.size < 10_000) this.touches.add(key)
    if (this.socket && !this.touchTimer) {
      this.touchTimer = setTimeout(() => {
        this.touchTimer = null
        this.flushTouches()
      }, 200)
      this.touchTimer.unref()
    }
  }

  private flushTouches(): void {
    if (!this.socket || this.touches.size === 0) return
    this.write({ op: 'touch', keys: [...this.touches] })
    this.touches = new Set()
  }

  /** The service's status, if one is running (never starts one). */
  async status(timeoutMs = 5000): Promise<ServiceStatus | null> {
    let s = this.socket
    if (!s) {
      s = await this.tryConnect()
      if (!s) return null
      this.adopt(s)
    }
    const got = new Promise<ServiceStatus>((r) => this.statusWaiters.push(r))
    this.write({ op: 'status' })
    try {
      return await withTimeout(got, timeoutMs, () => new ServiceUnavailable('the recall service did not answer'))
    } finally {
      this.armLinger()
    }
  }

  private clearLinger(): void {
    if (this.lingerTimer) clearTimeout(this.lingerTimer)
    this.lingerTimer = null
  }

  private armLinger(): void {
    this.clearLinger()
    if (!this.socket || this.reqs.size > 0 || this.pins.size > 0) return
    this.lingerTimer = setTimeout(() => {
      if (this.reqs.size > 0 || this.pins.size > 0) return
      this.flushTouches()
      const s = this.socket
      this.socket = null
      s?.end()
    }, this.o.lingerMs ?? 2000)
    this.lingerTimer.unref()
  }

  /** Disconnects (pins are released by the service; outstanding recalls are cancelled). */
  close(): void {
    this.closed = true
    this.clearLinger()
    if (this.touchTimer) clearTimeout(this.touchTimer)
    this.flushTouches()
    for (const r of [...this.reqs.values()]) this.failAll(r, new StoreError('EIO', '', 'the recall client closed'))
    const s = this.socket
    this.socket = null
    s?.end()
  }
}

/** The repository's tape catalog and its recall service as the ColdSource of a CacheStore (in a client process). */
export class ServiceSource implements ColdSource {
  readonly writer = null
  /** The service owns the cache and evicts (a pinned fetch of a cached key asks it: CacheStore.fetch). */
  readonly sharedCache = true

  constructor(
    private readonly catalog: TapeCatalog,
    readonly client: RecallClient,
    private readonly cache: BufferCache,
    private readonly o: { timeoutMs?: number; where?: (key: string) => string } = {},
  ) {}

  entry(key: string): ColdEntry | undefined {
    const e = this.catalog.entry(key)
    if (e) return e
    return this.catalog.refresh() ? this.catalog.entry(key) : undefined
  }

  async list(prefix: string): Promise<string[]> {
    return this.listSync(prefix)
  }

  listSync(prefix: string): string[] {
    this.catalog.refresh()
    return this.catalog.list(prefix)
  }

  where(key: string): string {
    const e = this.catalog.entry(key)
    return this.o.where?.(key) ?? (e ? `tape ${e.loc.cartridge} file ${e.loc.file} block ${e.loc.block}: ${key}` : `tape: ${key}`)
  }

  localRoots(): string[] {
    return [this.cache.dir]
  }

  fill(entries: ColdEntry[], o: FillOptions): Map<string, Promise<void>> {
    const { perKey } = this.client.recall(entries.map((e) => e.key), { pin: !!o.pin, deadline: o.deadline, ahead: o.ahead, signal: o.signal })
    const timeout = o.timeoutMs ?? this.o.timeoutMs
    if (timeout === undefined) return perKey
    const out = new Map<string, Promise<void>>()
    for (const [k, p] of perKey) {
      const t = withTimeout(p, timeout, () => new StoreError('EIO', k, `${this.where(k)}: not recalled within ${Math.round(timeout / 1000)} s (bfs's recall deadline)`))
      t.catch(() => undefined)
      out.set(k, t)
    }
    return out
  }

  promote(keys: string[]): void {
    this.client.promote(keys)
  }

  touch(key: string): void {
    this.client.touch(key)
  }

  cancel(keys: string[]): number {
    return this.client.cancelKeys(keys)
  }

  pin(keys: string[]): void {
    this.client.pin(keys)
  }

  unpin(keys: string[] | null): void {
    this.client.unpin(keys)
  }

  async close(): Promise<void> {
    this.client.close()
  }
}
