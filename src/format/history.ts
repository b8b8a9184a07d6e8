import { FormatError } from './errors.js'
import { decodeEnvelope2, encodeEnvelope2 } from './v2/envelope.js'
import { type Json, fields, parseJsonObject } from './v2/json.js'

/**
 * History records (BFSHIST, native-notes/format.md §2.8.6): one per run of a command that
 * changes or checks the repository, in `history/<started>-<rand8>`, in format 1 and format 2
 * repositories alike (an envelope v2 around JSON in both). Written `running` when the command
 * starts and replaced with its outcome when it ends.
 */

export const HISTORY_PREFIX = 'history'
/** `history/YYYYMMDDTHHMMSSZ-<rand8>`: sorted by name = sorted by start (to the second). */
export const HISTORY_NAME_RE = /^(\d{8}T\d{6}Z)-([0-9a-f]{8})$/

export type HistoryState = 'running' | 'ok' | 'partial' | 'failed' | 'interrupted'
export const HISTORY_STATES: readonly HistoryState[] = ['running', 'ok', 'partial', 'failed', 'interrupted']
/** How many warnings a record keeps word for word (the count is of all of them). */
export const HISTORY_WARNINGS_KEPT = 5
/** A kept warning or error line is cut to this many characters. */
export const HISTORY_LINE_MAX = 500

export interface HistoryRecord {
  /** backup, restore, verify, forget, … (lowercase words and dashes). */
  command: string
  state: HistoryState
  host: string
  user: string
  pid: number
  /** /proc/PID/stat field 22 (clock ticks since boot) when it was readable, else 0: with pid, tells a reused pid apart. */
  pidStart: number
  /** The command line after `bfs` (no option of bfs takes a secret yet). */
  argv: string[]
  started: string
  /** Set once not running. */
  ended: string | null
  /** The exit status; null while running (and for a record finalized by a signal's default action). */
  exit: number | null
  /** Absolute source paths the run was about (backup: what it read; restore, verify: the generations' sources). */
  sources: string[]
  /** Generations the run made, read, checked or forgot. */
  gens: number[]
  /** Byte counts that fit the command: read, stored (backup), restored (restore), verified (verify). */
  bytes: Record<string, number>
  /** All warnings the run gave. */
  warnings: number
  /** The first HISTORY_WARNINGS_KEPT of them. */
  firstWarnings: string[]
  /** The error line of a failed or interrupted run (what it printed after `bfs: `). */
  error: string | null
}

const COMMAND_RE = /^[a-z][a-z0-9-]{0,31}$/

/** `YYYYMMDDTHHMMSSZ-<rand8>` for a record started at `iso`. */
export function historyName(iso: string, rand8: string): string {
  return `${iso.slice(0, 19).replace(/[-:]/g, '')}Z-${rand8}`
}

/** A record's envelope (plain: flags 0). */
export function encodeHistory(r: HistoryRecord): Buffer {
  const payload = encodeHistoryPayload(r)
  return encodeEnvelope2('history', 0, payload.length, payload)
}

/** A record's JSON payload (what an encrypted repository seals, §2.8.6). */
export function encodeHistoryPayload(r: HistoryRecord): Buffer {
  const cut = (s: string): string => (s.length > HISTORY_LINE_MAX ? `${s.slice(0, HISTORY_LINE_MAX - 1)}…` : s)
  const o: Json = {
    command: r.command, state: r.state, host: r.host, user: r.user, pid: r.pid, pidStart: r.pidStart, argv: r.argv,
    started: r.started, ended: r.ended, exit: r.exit, sources: r.sources, gens: r.gens, bytes: r.bytes,
    warnings: r.warnings, firstWarnings: r.firstWarnings.slice(0, HISTORY_WARNINGS_KEPT).map(cut), error: r.error === null ? null : cut(r.error),
  }
  const payload = Buffer.from(JSON.stringify(o), 'utf8')
  decodeHistoryPayload(payload, 'history record (encoder)')
  return payload
}

export function decodeHistory(file: Buffer, what: string): HistoryRecord {
  const env = decodeEnvelope2('history', file, what)
  if (env.flags !== 0) throw new FormatError('UNSUPPORTED_FEATURE', `${what}: compressed or encrypted history records are not read by this bfs yet`)
  return decodeHistoryPayload(env.stored, what)
}

export function decodeHistoryPayload(payload: Buffer, what: string): HistoryRecord {
  const o = parseJsonObject(payload, what, 'history record')
  const f = fields(o, what, 'history record')
  const nullable = <T>(k: string, get: () => T): T | null => (o[k] === null ? null : get())
  const bytes = o.bytes
  if (typeof bytes !== 'object' || bytes === null || Array.isArray(bytes)) f.bad('bytes')
  for (const v of Object.values(bytes as Json)) if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) f.bad('bytes')
  const gens = o.gens
  if (!Array.isArray(gens) || gens.some((g) => typeof g !== 'number' || !Number.isSafeInteger(g) || g < 1)) f.bad('gens')
  const r: HistoryRecord = {
    command: f.str('command', COMMAND_RE),
    state: f.oneOf('state', HISTORY_STATES),
    host: f.str('host'),
    user: f.str('user'),
    pid: f.int('pid', 1),
    pidStart: f.int('pidStart'),
    argv: f.strings('argv'),
    started: f.time('started'),
    ended: nullable('ended', () => f.time('ended')),
    exit: nullable('exit', () => f.int('exit', 0, 255)),
    sources: f.strings('sources'),
    gens: [...(gens as number[])],
    bytes: { ...(bytes as Record<string, number>) },
    warnings: f.int('warnings'),
    firstWarnings: f.strings('firstWarnings'),
    error: nullable('error', () => f.str('error')),
  }
  if ((r.state === 'running') !== (r.ended === null)) f.bad('ended')
  if (r.firstWarnings.length > r.warnings) f.bad('firstWarnings')
  return r
}
