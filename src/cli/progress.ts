/**
 * Progress of a long command (backup, restore, verify; later migrate and recall), as users of
 * restic expect it (issue 17 item 5). One reporter, four modes:
 *
 * - `tty` (stderr is a terminal, no --json/--quiet): one status line on stderr, redrawn in
 *   place (`\r` … `ESC[K`) at most every TTY_INTERVAL_MS: done/total files and bytes,
 *   percentage, rate, ETA, the current path cut to the terminal's width. The line is cleared
 *   before any other line (a warning, a note, the summary), so those stay readable.
 * - `plain` (stderr is not a terminal: cron, systemd, a pipe): no status line at all.
 * - `quiet` (--quiet): no status line either; the command prints no summary (warnings, errors
 *   and the lock wait still go to stderr).
 * - `json` (--json): a status object per line on stdout at most every JSON_INTERVAL_MS (the
 *   first after one interval, so that a short run prints its summary alone), then the
 *   command's summary object with `message_type: "summary"`; `message_type: "wait"` when
 *   waiting for a lock. With --quiet too: no status lines.
 *
 * The commands' cores call `update` from their main thread with counters they keep anyway;
 * `update` only reads the clock and returns until a redraw is due: no stat, no syscall per
 * file. The clock and the streams are injectable (tests).
 */

/** Counters of a run: done so far, and the expected totals (null: unknown, printed `?`). */
export interface ProgressState {
  files: number
  totalFiles: number | null
  bytes: number
  totalBytes: number | null
  /** The path being worked on ('' if none). */
  path?: string
}

export type ProgressMode = 'tty' | 'plain' | 'quiet' | 'json'

/** What the reporter writes to: a terminal's columns are read at each redraw (a resize). */
export interface ProgressStream {
  write(s: string): unknown
  isTTY?: boolean
  columns?: number
}

export interface ProgressOptions {
  /** `backup`, `restore`, `verify`…: the JSON `action`. */
  action: string
  /** The status line's start (default `ACTION:`): `backing up:`, `restoring:`, `verifying:`. */
  label?: string
  json?: boolean
  quiet?: boolean
  /** What `files` counts (verify: `unit`). */
  unit?: string
  /** Default: chosen from json/quiet and whether `err` is a terminal. */
  mode?: ProgressMode
  err?: ProgressStream
  out?: ProgressStream
  now?: () => number
  ttyIntervalMs?: number
  jsonIntervalMs?: number
}

export const TTY_INTERVAL_MS = 200
export const JSON_INTERVAL_MS = 1000

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

/** Bytes as `512 B`, `1.50 KiB`, `12.3 MiB`. */
export function bytesText(n: number): string {
  let i = 0
  let v = n
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024
    i++
  }
  return i === 0 ? `${Math.round(n)} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${UNITS[i]}`
}

/** Seconds as `42s`, `3m05s`, `2h07m`. */
export function durationText(s: number): string {
  s = Math.max(0, Math.round(s))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
}

/** The figures of a status line or object, from the counters and the time since the run began. */
export interface ProgressFigures {
  elapsedS: number
  /** Bytes per second since the start. */
  rate: number
  /** 0..1, null when there is no expected total. Bytes decide when a byte total is known, else files. */
  fraction: number | null
  /** Seconds left, null when unknown (no total, nothing done yet, or the estimate already exceeded). */
  etaS: number | null
}

export function figures(s: ProgressState, elapsedMs: number): ProgressFigures {
  const elapsedS = Math.max(0, elapsedMs) / 1000
  const rate = elapsedS > 0 ? s.bytes / elapsedS : 0
  let fraction: number | null = null
  if (s.totalBytes !== null && s.totalBytes > 0) fraction = s.bytes / s.totalBytes
  else if (s.totalFiles !== null && s.totalFiles > 0) fraction = s.files / s.totalFiles
  else if (s.totalFiles === 0 && s.totalBytes === 0) fraction = 1
  let etaS: number | null = null
  if (fraction !== null && fraction > 0 && fraction < 1 && elapsedS > 0) etaS = (elapsedS * (1 - fraction)) / fraction
  else if (fraction !== null && fraction >= 1) etaS = s.totalBytes !== null && s.bytes > s.totalBytes ? null : 0
  // an estimate already exceeded (the source grew) is capped at 99 % rather than going past 100
  if (fraction !== null && fraction > 1) fraction = 0.99
  return { elapsedS, rate, fraction, etaS }
}

/**
 * The status line: `backing up: 1234/5000 files, 1.20 GiB/4.00 GiB (30%), 12.3 MiB/s, ETA 2m05s  path`,
 * cut to `columns - 1` characters, the path shortened from its start (`…`) to fit.
 */
export function statusLine(label: string, s: ProgressState, elapsedMs: number, columns: number, unit = 'file'): string {
  const f = figures(s, elapsedMs)
  const plural = s.totalFiles === 1 ? unit : unit === 'entry' ? 'entries' : `${unit}s`
  const tf = s.totalFiles === null ? '?' : String(s.totalFiles)
  const tb = s.totalBytes === null ? '?' : bytesText(s.totalBytes)
  const pct = f.fraction === null ? '' : ` (${Math.floor(f.fraction * 100)}%)`
  const eta = f.etaS === null ? '?' : durationText(f.etaS)
  let text = `${label} ${s.files}/${tf} ${plural}, ${bytesText(s.bytes)}/${tb}${pct}, ${bytesText(f.rate)}/s, ETA ${eta}`
  const width = Math.max(20, columns) - 1
  const p = s.path ?? ''
  if (p) {
    const room = width - text.length - 2
    if (room >= 8) text += `  ${p.length > room ? `…${p.slice(p.length - room + 1)}` : p}`
  }
  return text.length > width ? text.slice(0, width) : text
}

/** The JSON status object (restic's field names). */
export function statusObject(action: string, s: ProgressState, elapsedMs: number): Record<string, unknown> {
  const f = figures(s, elapsedMs)
  return {
    message_type: 'status',
    action,
    seconds_elapsed: Math.round(f.elapsedS),
    seconds_remaining: f.etaS === null ? null : Math.round(f.etaS),
    percent_done: f.fraction,
    files_done: s.files,
    total_files: s.totalFiles,
    bytes_done: s.bytes,
    total_bytes: s.totalBytes,
    current_files: s.path ? [s.path] : [],
  }
}

/** `BFS_TEST_PROGRESS_MS` (NODE_ENV=test only): both intervals, so that a short test run reports. */
function testInterval(): number | undefined {
  const v = process.env.NODE_ENV === 'test' ? process.env.BFS_TEST_PROGRESS_MS : undefined
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined
}

export class Progress {
  readonly mode: ProgressMode
  private readonly err: ProgressStream
  private readonly out: ProgressStream
  private readonly now: () => number
  private readonly ttyMs: number
  private readonly jsonMs: number
  private readonly action: string
  private readonly label: string
  private readonly unit: string
  /** --json --quiet: the summary (and a lock wait) only, no status lines. */
  private readonly noStatus: boolean
  /** When the first counters came (lock waits and set-up before are not the run's rate). */
  private start = -1
  private due = 0
  private shown = false
  private last: ProgressState | null = null

  constructor(o: ProgressOptions) {
    this.err = o.err ?? process.stderr
    this.out = o.out ?? process.stdout
    this.now = o.now ?? Date.now
    this.action = o.action
    this.label = o.label ?? `${o.action}:`
    this.unit = o.unit ?? 'file'
    this.mode = o.mode ?? (o.json ? 'json' : o.quiet ? 'quiet' : this.err.isTTY ? 'tty' : 'plain')
    this.noStatus = this.mode === 'json' && !!o.quiet
    const t = testInterval()
    this.ttyMs = o.ttyIntervalMs ?? t ?? TTY_INTERVAL_MS
    this.jsonMs = o.jsonIntervalMs ?? t ?? JSON_INTERVAL_MS
  }

  /** Whether the command prints its text summary (not with --quiet or --json). */
  get textSummary(): boolean {
    return this.mode === 'tty' || this.mode === 'plain'
  }

  /** New counters: redrawn (tty) or printed (json) when due; otherwise one clock read. */
  update(s: ProgressState): void {
    if (this.mode === 'plain' || this.mode === 'quiet' || this.noStatus) return
    const now = this.now()
    if (this.start < 0) {
      this.start = now
      this.due = now + (this.mode === 'json' ? this.jsonMs : 0)
    }
    this.last = s
    if (now < this.due) return
    this.due = now + (this.mode === 'json' ? this.jsonMs : this.ttyMs)
    this.emit(s, now)
  }

  private emit(s: ProgressState, now: number): void {
    if (this.mode === 'json') this.out.write(JSON.stringify(statusObject(this.action, s, now - this.start)) + '\n')
    else {
      this.err.write(`\r${statusLine(this.label, s, now - this.start, this.err.columns || 80, this.unit)}\x1b[K`)
      this.shown = true
    }
  }

  /** Free text on the status line (tty only: a phase such as a tape recall plan), until the next update. */
  show(text: string): void {
    if (this.mode !== 'tty') return
    const width = Math.max(20, this.err.columns || 80) - 1
    this.err.write(`\r${text.length > width ? text.slice(0, width) : text}\x1b[K`)
    this.shown = true
  }

  /** Removes the status line (before any other output); it comes back at the next update. */
  clear(): void {
    if (this.shown) this.err.write('\r\x1b[K')
    this.shown = false
  }

  /** A warning on stderr (every mode), on its own line. */
  warn(msg: string): void {
    this.clear()
    this.err.write(`bfs: warning: ${msg}\n`)
  }

  /** A note on stderr (`bfs: …`), not with --quiet. */
  note(msg: string): void {
    if (this.mode === 'quiet') return
    this.clear()
    this.err.write(`bfs: ${msg}\n`)
  }

  /**
   * Waiting for a lock (once when the wait starts, once when it ends): said in every mode, on
   * stderr (also with --quiet: an unattended run that waits must say why), and with --json as
   * a `message_type: "wait"` object on stdout.
   */
  wait(msg: string): void {
    if (this.mode === 'json') return void this.out.write(JSON.stringify({ message_type: 'wait', action: this.action, message: msg }) + '\n')
    this.clear()
    this.err.write(`bfs: ${msg}\n`)
  }

  /** The end of the run: the status line is cleared. */
  finish(): void {
    this.clear()
  }

  /** With --json: the command's result object, as the last line (`message_type: "summary"`). */
  summary(obj: Record<string, unknown>): void {
    this.clear()
    this.out.write(JSON.stringify({ message_type: 'summary', action: this.action, ...obj }) + '\n')
  }

  /** The counters last given (tests, and a final figure). */
  get state(): ProgressState | null {
    return this.last
  }
}
