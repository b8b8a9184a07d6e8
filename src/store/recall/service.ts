/**
 * The recall service (native-notes/tape.md §"Recall service"): one process per repository
 * that owns its buffer cache and drives its tape libraries for every process reading the
 * repository (mounts, restores, cats, `bfs recall`), since they share the drives. Clients
 * reach it over a Unix socket (protocol.ts); the first one starts it, it exits when idle,
 * and a client whose service died starts the next one.
 *
 * Concurrent requests for the same key are one recall; requests of all clients go to the
 * tier's recall engine together, which batches them (a short collection window), mounts
 * each cartridge once per batch, orders by locate time, reads through short gaps and never
 * starves a request. A recalled unit is checked against the catalog's SHA-256 and renamed
 * into the cache only then (cache.ts); clients open cache entries themselves.
 */
import fs from 'node:fs'
import type net from 'node:net'
import { lazyBuiltin } from '../../os/builtin.js'
import { BufferCache } from '../cache.js'
import { StoreError } from '../store.js'
import type { ColdEntry, TapeCatalog, TapeStore } from '../tape.js'
import { encode, lineReader, PROTOCOL_VERSION, type ClientMessage, type ServiceMessage, type ServiceStatus } from './protocol.js'

const netMod = lazyBuiltin<typeof import('node:net')>('node:net')

export interface ServiceOptions {
  socketPath: string
  /** The buffer cache, owned by this process. */
  cache: BufferCache
  catalog: TapeCatalog
  /** Opens a tier's tape store (once per tier, on first need). */
  openTier: (name: string) => TapeStore
  /** Exit after this long without connections or work (ms). */
  idleMs: number
  log: (line: string) => void
  /** Called once when stopping begins (idle, or stop()): the process's guard against a stop that never ends. */
  onStopping?: () => void
}

interface Want {
  conn: Conn
  id: number
}

interface Inflight {
  entry: ColdEntry
  wanters: Set<Want>
  abort: AbortController
  /** Every wanter so far asked for it ahead (no reader waits): the engine orders it by cost alone. */
  ahead: boolean
}

interface Conn {
  n: number
  socket: net.Socket
  holder: string
  requests: Map<number, { keys: Set<string>; total: number; done: number; failed: number; bytes: number; wants: Map<string, Want> }>
  closed: boolean
}

export class RecallService {
  private server: net.Server | null = null
  private readonly conns = new Set<Conn>()
  private readonly inflight = new Map<string, Inflight>()
  private readonly tapes = new Map<string, TapeStore>()
  private nextConn = 1
  private idleTimer: NodeJS.Timeout | null = null
  private readonly startedAt = new Date().toISOString()
  private stopped: Promise<void> | null = null
  private resolveStopped!: () => void
  private readonly finished: Promise<void>

  constructor(private readonly o: ServiceOptions) {
    this.finished = new Promise((r) => (this.resolveStopped = r))
  }

  /** Listens on the socket (a stale one of a dead service is replaced). Resolves once listening. */
  async start(): Promise<void> {
    try {
      fs.unlinkSync(this.o.socketPath)
    } catch {
      // none
    }
    const server = netMod().createServer((s) => this.accept(s))
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.o.socketPath, () => {
        server.off('error', reject)
        resolve()
      })
    })
    fs.chmodSync(this.o.socketPath, 0o600)
    this.o.log(`listening on ${this.o.socketPath}`)
    this.armIdle()
  }

  /** Resolves when the service has stopped (idle, or stop()). */
  done(): Promise<void> {
    return this.finished
  }

  private armIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer)
    this.idleTimer = null
    if (this.conns.size > 0 || this.inflight.size > 0) return
    this.idleTimer = setTimeout(() => {
      if (this.conns.size === 0 && this.inflight.size === 0) {
        this.o.log(`idle for ${Math.round(this.o.idleMs / 1000)} s: stopping`)
        void this.stop()
      }
    }, this.o.idleMs)
  }

  private tape(name: string): TapeStore {
    let t = this.tapes.get(name)
    if (!t) {
      t = this.o.openTier(name)
      this.tapes.set(name, t)
    }
    return t
  }

  private send(c: Conn, m: ServiceMessage): void {
    if (!c.closed) c.socket.write(encode(m))
  }

  private accept(socket: net.Socket): void {
    const c: Conn = { n: this.nextConn++, socket, holder: `conn-${this.nextConn - 1}`, requests: new Map(), closed: false }
    this.conns.add(c)
    this.armIdle()
    socket.on('data', lineReader((m) => this.handle(c, m as ClientMessage), (line) => this.send(c, { op: 'error', error: `not a JSON line: ${line.slice(0, 80)}` })))
    socket.on('error', () => undefined)
    socket.on('close', () => this.dropConn(c))
  }

  /** A client went away: its recalls are cancelled where no one else wants the key, its pins released. */
  private dropConn(c: Conn): void {
    if (c.closed) return
    c.closed = true
    this.conns.delete(c)
    for (const r of c.requests.values()) for (const [key, w] of r.wants) this.unwant(key, w)
    c.requests.clear()
    this.o.cache.unpinHolder(c.holder)
    this.armIdle()
  }

  private unwant(key: string, w: Want): void {
    const f = this.inflight.get(key)
    if (!f) return
    f.wanters.delete(w)
    if (f.wanters.size === 0) {
      f.abort.abort()
      this.inflight.delete(key)
      this.armIdle()
    }
  }

  private handle(c: Conn, m: ClientMessage): void {
    try {
      switch (m.op) {
        case 'hello':
          if (typeof m.cacheBytes === 'number' && m.cacheBytes !== this.o.cache.limitBytes) {
            this.o.cache.setLimit(m.cacheBytes)
            this.o.log(`buffer cache limit set to ${m.cacheBytes} bytes by pid ${m.pid}`)
          }
          this.send(c, { op: 'hello', pid: process.pid, version: PROTOCOL_VERSION })
          return
        case 'recall':
          this.recall(c, m.id, m.keys, !!m.pin, m.deadline, !!m.ahead)
          return
        case 'promote':
          for (const k of m.keys) this.promote(k)
          return
        case 'cancel': {
          const r = c.requests.get(m.id)
          if (!r) return
          if (Array.isArray(m.keys)) {
            // only these keys of the request (a mount's reader gave up on them): the others go on
            const gone = new StoreError('EIO', '', 'cancelled')
            for (const key of m.keys) {
              const w = r.wants.get(key)
              if (!w) continue
              this.unwant(key, w)
              this.finishFor(c, m.id, key, false, gone)
            }
            return
          }
          for (const [key, w] of r.wants) this.unwant(key, w)
          for (const key of r.wants.keys()) this.send(c, { op: 'unit', id: m.id, key, ok: false, code: 'EIO', error: 'cancelled' })
          c.requests.delete(m.id)
          this.send(c, { op: 'done', id: m.id, ok: r.done - r.failed, failed: r.failed + r.wants.size })
          return
        }
        case 'pin':
          for (const k of m.keys) this.o.cache.pin(k, c.holder)
          return
        case 'unpin':
          if (m.keys === null) this.o.cache.unpinHolder(c.holder)
          else for (const k of m.keys) this.o.cache.unpin(k, c.holder)
          return
        case 'touch':
          for (const k of m.keys) this.o.cache.touch(k)
          return
        case 'status':
          this.send(c, { op: 'status', ...this.status() })
          return
        default:
          this.send(c, { op: 'error', error: `unknown op ${JSON.stringify((m as { op: unknown }).op)}` })
      }
    } catch (err) {
      this.send(c, { op: 'error', error: (err as Error).message })
    }
  }

  /** A reader waits for `key` now: if it is being recalled ahead, it becomes an ordinary request. */
  private promote(key: string): void {
    const f = this.inflight.get(key)
    if (!f?.ahead) return
    f.ahead = false
    try {
      this.tape(f.entry.loc.tier).promote(key)
    } catch {
      // its tier is gone: the recall fails on its own
    }
  }

  private recall(c: Conn, id: number, keys: string[], pin: boolean, deadline: number | undefined, ahead = false): void {
    if (c.requests.has(id)) return // sent twice: the first one stands
    const uniq = [...new Set(keys)]
    const r = { keys: new Set(uniq), total: uniq.length, done: 0, failed: 0, bytes: 0, wants: new Map<string, Want>() }
    c.requests.set(id, r)
    if (pin) for (const k of uniq) this.o.cache.pin(k, c.holder)
    if (uniq.length === 0) {
      c.requests.delete(id)
      this.send(c, { op: 'done', id, ok: 0, failed: 0 })
      return
    }
    for (const key of uniq) {
      let e = this.o.catalog.entry(key)
      if (!e && this.o.catalog.refresh()) e = this.o.catalog.entry(key)
      if (!e) {
        this.finishFor(c, id, key, false, new StoreError('ENOENT', key, `${key}: not in the tape catalog`))
        continue
      }
      if (this.o.cache.has(key, e.sizeBytes)) {
        this.o.cache.touch(key)
        this.finishFor(c, id, key, true)
        continue
      }
      const w: Want = { conn: c, id }
      r.wants.set(key, w)
      const f = this.inflight.get(key)
      if (f) {
        f.wanters.add(w)
        if (!ahead) this.promote(key)
        continue
      }
      this.fill(e, w, deadline, ahead)
    }
  }

  /** Recalls one key for its wanters (others may join); every wanter hears the outcome. */
  private fill(e: ColdEntry, first: Want, deadline: number | undefined, ahead: boolean): void {
    const f: Inflight = { entry: e, wanters: new Set([first]), abort: new AbortController(), ahead }
    this.inflight.set(e.key, f)
    this.armIdle()
    let p: Promise<void>
    try {
      const tape = this.tape(e.loc.tier)
      this.o.cache.miss()
      p = tape.recall([e], (x, chunks) => this.o.cache.insert(x.key, x.sha256, chunks), { deadline, signal: f.abort.signal, ahead }).get(e.key)!
    } catch (err) {
      p = Promise.reject(err)
    }
    p.then(
      () => this.settle(e.key, f, true),
      (err: unknown) => {
        if (!f.abort.signal.aborted) this.o.log(`recall of ${e.key} failed: ${(err as Error).message}`)
        this.settle(e.key, f, false, err as Error)
      },
    )
  }

  private settle(key: string, f: Inflight, ok: boolean, err?: Error): void {
    if (this.inflight.get(key) === f) this.inflight.delete(key)
    for (const w of f.wanters) {
      const r = w.conn.requests.get(w.id)
      if (!r || r.wants.get(key) !== w) continue
      this.finishFor(w.conn, w.id, key, ok, err)
    }
    this.armIdle()
  }

  private finishFor(c: Conn, id: number, key: string, ok: boolean, err?: Error): void {
    const r = c.requests.get(id)
    if (!r) return
    r.keys.delete(key)
    r.wants.delete(key)
    r.done++
    if (!ok) r.failed++
    else r.bytes += this.o.catalog.entry(key)?.sizeBytes ?? 0
    this.send(c, ok ? { op: 'unit', id, key, ok: true } : { op: 'unit', id, key, ok: false, code: (err as StoreError)?.code ?? 'EIO', error: err?.message ?? 'failed' })
    this.send(c, { op: 'progress', id, done: r.done - r.failed, failed: r.failed, total: r.total, bytes: r.bytes, simNow: this.simNow() })
    if (r.done === r.total) {
      c.requests.delete(id)
      this.send(c, { op: 'done', id, ok: r.done - r.failed, failed: r.failed })
    }
  }

  private simNow(): number {
    let t = 0
    for (const tp of this.tapes.values()) t = Math.max(t, tp.engine.now())
    return t
  }

  status(): ServiceStatus {
    return {
      pid: process.pid,
      startedAt: this.startedAt,
      connections: this.conns.size,
      inflight: this.inflight.size,
      tiers: [...this.tapes.values()].map((t) => ({ tier: t.tier, dir: t.library.dir, clockScale: t.library.clockScale, engine: t.engine.status() })),
      cache: this.o.cache.stats(),
    }
  }

  /** Stops listening, cancels what is pending, gives the drives back, saves the cache index. */
  stop(): Promise<void> {
    if (!this.stopped) this.o.onStopping?.()
    this.stopped ??= (async () => {
      if (this.idleTimer) clearTimeout(this.idleTimer)
      const server = this.server
      this.server = null
      for (const c of this.conns) c.socket.destroy()
      if (server) await new Promise<void>((r) => server.close(() => r()))
      try {
        fs.unlinkSync(this.o.socketPath)
      } catch {
        // gone
      }
      for (const f of this.inflight.values()) f.abort.abort()
      for (const t of this.tapes.values()) {
        await t.close().catch(() => undefined)
        await t.library.close().catch(() => undefined)
      }
      this.o.cache.close()
      this.resolveStopped()
    })()
    return this.stopped
  }
}
