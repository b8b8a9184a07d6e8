import os from 'node:os'
import type { Worker } from 'node:worker_threads'
import { lazyBuiltin } from '../os/builtin.js'
import type { WorkerReply, WorkerRequest } from './workers/protocol.js'

const workerThreads = lazyBuiltin<typeof import('node:worker_threads')>('node:worker_threads')

/**
 * N worker threads, started on first use (a backup with nothing to read never starts
 * them); work goes to a worker chosen by the caller (units round-robin by
 * unit index) or to the least-busy one. Each call resolves with the worker's reply.
 */
export class WorkerPool {
  private readonly workers: Worker[] = []
  private readonly busy: number[] = []
  private readonly pending = new Map<number, { resolve: (r: WorkerReply) => void; reject: (e: Error) => void; worker: number }>()
  private nextId = 1
  private failed: Error | null = null

  constructor(readonly size = os.availableParallelism()) {}

  private start(): void {
    for (let i = 0; i < this.size; i++) {
      const w = new (workerThreads().Worker)(new URL('../repo/worker.js', import.meta.url)) // '../repo/': also right from the bundle in dist/cli/
      w.on('message', (reply: WorkerReply) => {
        const p = this.pending.get(reply.id)
        if (!p) return
        this.pending.delete(reply.id)
        this.busy[p.worker]!--
        if (reply.error) p.reject(Object.assign(new Error(reply.error), { code: reply.errorCode, syscall: reply.errorSyscall }))
        else p.resolve(reply)
      })
      w.on('error', (err) => this.fail(err))
      w.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`worker thread exited with code ${code}`))
      })
      this.workers.push(w)
      this.busy.push(0)
    }
  }

  private fail(err: Error): void {
    this.failed = err
    for (const [id, p] of this.pending) {
      this.pending.delete(id)
      p.reject(err)
    }
  }

  /** Starts the threads now (their start-up then overlaps the caller's work); idempotent. */
  prestart(): void {
    if (this.workers.length === 0 && !this.failed) this.start()
  }

  get inFlight(): number {
    return this.pending.size
  }

  /** Runs `req` on worker `index % size` (or the least busy when index is undefined). */
  run<R extends WorkerReply = WorkerReply>(req: Omit<WorkerRequest, 'id'>, transfer: ArrayBuffer[] = [], index?: number): Promise<R> {
    if (this.failed) return Promise.reject(this.failed)
    if (this.workers.length === 0) this.start()
    let w = index === undefined ? this.busy.indexOf(Math.min(...this.busy)) : index % this.size
    const id = this.nextId++
    this.busy[w]!++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (r: WorkerReply) => void, reject, worker: w })
      this.workers[w]!.postMessage({ ...req, id } as WorkerRequest, transfer)
    })
  }

  /** Runs `req` on every worker (each gets it after the jobs sent to it before; e.g. a reader spec before the jobs that use it). */
  broadcast<R extends WorkerReply = WorkerReply>(req: Omit<WorkerRequest, 'id'>): Promise<R[]> {
    return Promise.all(Array.from({ length: this.size }, (_, i) => this.run<R>(req, [], i)))
  }

  /** Ends the threads (idempotent: a pool handed to writeGeneration2 is closed by it and by its owner). */
  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()))
  }
}
