/**
 * The recall service's protocol (native-notes/tape.md §"Recall service"): JSON lines over a
 * Unix stream socket, one object per line, each way.
 *
 * Client → service:
 *   {op:'hello', pid, cacheBytes?}                 first; cacheBytes sets the buffer cache's limit
 *   {op:'recall', id, keys, pin?, deadline?, ahead?}  bring keys into the cache; pin: keep them
 *                                                  until unpinned (or this connection ends);
 *                                                  deadline: simulated seconds (urgency);
 *                                                  ahead: no reader waits for them yet (a
 *                                                  mount's readahead: ordered by cost alone)
 *   {op:'promote', keys}                           a reader now waits for these keys, asked
 *                                                  for ahead (by anyone): ordinary requests now
 *   {op:'cancel', id, keys?}                       the keys of request id (or only those of
 *                                                  `keys`) that no one else wants
 *   {op:'pin', keys} / {op:'unpin', keys | null}   pins of this connection (null: all)
 *   {op:'touch', keys}                             cache hits (eviction order)
 *   {op:'status'}
 * Service → client:
 *   {op:'hello', pid, version}
 *   {op:'unit', id, key, ok, code?, error?}        one per key of a recall, as it completes
 *   {op:'progress', id, done, failed, total, bytes, simNow}
 *   {op:'done', id, ok, failed}                    after the last key of a recall
 *   {op:'status', ...ServiceStatus}
 *   {op:'error', error}                            a line it could not take
 * A recall whose connection closes is cancelled (for keys no other client wants) and its
 * pins are released.
 */
import type { CacheStats } from '../cache.js'
import type { EngineStatus } from '../../tape/engine.js'

/**
 * 2: `recall` takes `ahead`, `promote` is new, `cancel` takes `keys` (a client cancels some
 * keys of a request only if the service says 2 or more).
 */
export const PROTOCOL_VERSION = 2

export type ClientMessage =
  | { op: 'hello'; pid: number; cacheBytes?: number }
  | { op: 'recall'; id: number; keys: string[]; pin?: boolean; deadline?: number; ahead?: boolean }
  | { op: 'promote'; keys: string[] }
  | { op: 'cancel'; id: number; keys?: string[] }
  | { op: 'pin'; keys: string[] }
  | { op: 'unpin'; keys: string[] | null }
  | { op: 'touch'; keys: string[] }
  | { op: 'status' }

export interface TierStatus {
  tier: string
  dir: string
  clockScale: number
  engine: EngineStatus
}

export interface ServiceStatus {
  pid: number
  startedAt: string
  connections: number
  /** Keys being recalled now, and how many clients wait for them. */
  inflight: number
  tiers: TierStatus[]
  cache: CacheStats
}

export type ServiceMessage =
  | { op: 'hello'; pid: number; version: number }
  | { op: 'unit'; id: number; key: string; ok: boolean; code?: string; error?: string }
  | { op: 'progress'; id: number; done: number; failed: number; total: number; bytes: number; simNow: number }
  | { op: 'done'; id: number; ok: number; failed: number }
  | ({ op: 'status' } & ServiceStatus)
  | { op: 'error'; error: string }

/** Splits a byte stream into JSON lines; calls `on` with each parsed object (bad lines go to `bad`). */
export function lineReader(on: (msg: unknown) => void, bad: (line: string, err: Error) => void): (chunk: Buffer) => void {
  let buf = ''
  return (chunk) => {
    buf += chunk.toString('utf8')
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      if (!line.trim()) continue
      let msg: unknown
      try {
        msg = JSON.parse(line)
      } catch (err) {
        bad(line, err as Error)
        continue
      }
      on(msg)
    }
  }
}

export const encode = (m: ClientMessage | ServiceMessage): string => JSON.stringify(m) + '\n'
