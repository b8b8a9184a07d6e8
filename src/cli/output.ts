import fs from 'node:fs'
import path from 'node:path'
import type { Manifest } from '../format/manifest.js'
import type { Repository } from '../repo/repository.js'

/** Formatting helpers for the CLI; the core never prints. */

/** Simulated seconds as hours, minutes and seconds. */
export function simTime(s: number): string {
  if (s < 60) return `${s.toFixed(1)} s`
  const hh = Math.floor(s / 3600)
  const mm = Math.floor((s % 3600) / 60)
  const ss = Math.floor(s % 60)
  return hh ? `${hh} h ${String(mm).padStart(2, '0')} min ${String(ss).padStart(2, '0')} s` : `${mm} min ${String(ss).padStart(2, '0')} s`
}

/** 64M, 1G, 4GiB, 512K or plain bytes (as mount's --cache-size); null if it is not one. */
export function sizeValue(v: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(v.trim())
  return m ? Math.round(Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase())) : null
}

/** A command's context as the command files use it (cli/main.ts makes it). */
export interface CmdCtx {
  openRepo(): Repository
  repoDir(): string
  exitCode: number
}

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

/** Seconds as `42s`, `3m05s`, `2h07m`. */
export function shortDuration(s: number): string {
  s = Math.max(0, Math.round(s))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
}

/** Writes raw bytes (names may not be UTF-8) to stdout. */
export function writeOut(parts: Array<string | Buffer>): void {
  process.stdout.write(Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p))))
}

/**
 * Lines for stdout, written in 64 KiB pieces: a listing written line by line cost a write(2)
 * and a stream round per line (`bfs ls` of a 1,000-entry directory spent more on that than
 * on reading the repository). `flush()` at the end, and before anything else goes to stdout.
 */
export class OutBuffer {
  private buf = Buffer.allocUnsafe(1 << 16)
  private len = 0

  add(parts: Array<string | Buffer>): void {
    for (const p of parts) {
      // a string's UTF-8 is at most 3 bytes per UTF-16 unit
      const need = typeof p === 'string' ? p.length * 3 : p.length
      if (this.len + need > this.buf.length) {
        this.flush()
        if (need > this.buf.length) this.buf = Buffer.allocUnsafe(need)
      }
      this.len += typeof p === 'string' ? this.buf.write(p, this.len) : p.copy(this.buf, this.len)
    }
  }

  /** Bytes [s, e) of `b` (no array of parts). */
  bytes(b: Buffer, s: number, e: number): void {
    if (this.len + e - s > this.buf.length) {
      this.flush()
      if (e - s > this.buf.length) this.buf = Buffer.allocUnsafe(e - s)
    }
    this.len += b.copy(this.buf, this.len, s, e)
  }

  flush(): void {
    if (this.len === 0) return
    // a copy: stdout may keep the chunk past this call (a pipe that is full)
    process.stdout.write(Buffer.from(this.buf.subarray(0, this.len)))
    this.len = 0
  }
}

/** A repository's warning at open (a damaged config and what is used instead), on stderr. */
export function repoWarning(message: string): void {
  process.stderr.write(`bfs: warning: ${message}\n`)
}

/**
 * Resolves a generation name for a command: `latest` within `--source` (else within
 * `hint`, a path the command is about, when the repository holds generations of it),
 * printing on stderr which generation `latest` was when that is not obvious (not with --quiet).
 */
export function resolveGen(repo: Repository, ref: string, o: { source?: string; quiet?: boolean }, hint?: string): Manifest {
  const r = repo.resolveRef(ref, { source: o.source === undefined ? undefined : path.resolve(o.source), sourceHint: hint === undefined ? undefined : path.resolve(hint) })
  if (!o.quiet) for (const n of r.notes) process.stderr.write(`bfs: ${n}\n`)
  return r.manifest
}

/**
 * Writes bytes to fd 1 whole (a non-blocking pipe may take part or say EAGAIN); false when
 * the reader went away (EPIPE: `bfs cat … | head`), which ends the copy quietly.
 */
export function writeStdout(buf: Buffer, off: number, len: number): boolean {
  for (const end = off + len; off < end; ) {
    try {
      off += fs.writeSync(1, buf, off, end - off)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue
      if ((err as NodeJS.ErrnoException).code === 'EPIPE') return false
      throw err
    }
  }
  return true
}

/** The summary's consistency line of a volume generation (format 1 and 2). */
export function consistencyNote(m: Pick<Manifest, 'consistency' | 'source'>, points: string[]): string {
  const at = points.length ? ` at ${points.join(', ')}` : ''
  switch (m.consistency) {
    case 'frozen':
      return `frozen (the filesystem${at} was frozen while ${m.source} was read: the image is clean)`
    case 'read-only':
      return `read-only (mounted read-only${at}: the image is clean)`
    case 'mounted-rw':
      return `mounted-rw: ${m.source} was mounted read-write${at} and not frozen, so the image is at best crash-consistent: mount it with -o ro,noload (ext4), or back up with --freeze`
    default:
      return `${m.consistency} (nothing on ${m.source} was mounted)`
  }
}
