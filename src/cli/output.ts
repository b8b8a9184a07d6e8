import path from 'node:path'
import type { Manifest } from '../format/manifest.js'
import type { Repository } from '../repo/repository.js'

/** Formatting helpers for the CLI; the core never prints. */

/** `1 file`, `2 files`, `1 entry`, `3 entries` (`many` when the plural is not `one` + s). */
export function count(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`
}

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`
}

export function modeString(type: number, mode: number): string {
  const t = { 1: '-', 2: 'd', 3: 'l', 4: 'c', 5: 'b', 6: 'p', 7: 's' }[type] ?? '?'
  const rwx = (m: number, s: boolean, sc: string): string =>
    (m & 4 ? 'r' : '-') + (m & 2 ? 'w' : '-') + (s ? (m & 1 ? sc : sc.toUpperCase()) : m & 1 ? 'x' : '-')
  return t + rwx(mode >> 6, !!(mode & 0o4000), 's') + rwx(mode >> 3, !!(mode & 0o2000), 's') + rwx(mode, !!(mode & 0o1000), 't')
}

/** A one-line progress display on stderr, only when stderr is a terminal. */
export class ProgressLine {
  private readonly enabled = !!process.stderr.isTTY
  private shown = false
  update(text: string): void {
    if (!this.enabled) return
    const cols = process.stderr.columns || 80
    process.stderr.write(`\r${text.slice(0, cols - 1).padEnd(cols - 1)}`)
    this.shown = true
  }
  clear(): void {
    if (this.shown) process.stderr.write(`\r${' '.repeat((process.stderr.columns || 80) - 1)}\r`)
    this.shown = false
  }
  /** Prints a note (`bfs: …`, not a warning) on its own line without garbling the progress line. */
  note(msg: string): void {
    this.clear()
    process.stderr.write(`bfs: ${msg}\n`)
  }
  /** Prints a warning on its own line without garbling the progress line. */
  warn(msg: string): void {
    this.clear()
    process.stderr.write(`bfs: warning: ${msg}\n`)
  }
}

/** Writes raw bytes (names may not be UTF-8) to stdout. */
export function writeOut(parts: Array<string | Buffer>): void {
  process.stdout.write(Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p))))
}

/** A repository's warning at open (a damaged config and what is used instead), on stderr. */
export function repoWarning(message: string): void {
  process.stderr.write(`bfs: warning: ${message}\n`)
}

/**
 * Resolves a generation name for a command: `latest` within `--source` (else within
 * `hint`, a path the command is about, when the repository holds generations of it),
 * printing on stderr which generation `latest` was when that is not obvious.
 */
export function resolveGen(repo: Repository, ref: string, o: { source?: string }, hint?: string): Manifest {
  const r = repo.resolveRef(ref, { source: o.source === undefined ? undefined : path.resolve(o.source), sourceHint: hint === undefined ? undefined : path.resolve(hint) })
  for (const n of r.notes) process.stderr.write(`bfs: ${n}\n`)
  return r.manifest
}
