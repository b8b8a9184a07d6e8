import { EntryType, type Entry } from '../format/catalog.js'
import type { Group } from '../repo/groups.js'
import type { Manifest } from '../format/manifest.js'
import type { RestoreResult } from '../repo/restore.js'
import type { VerifyResult } from '../repo/verify.js'
import { modeString } from './output.js'

/**
 * The --json shapes of the commands that print data. Field names are stable (README.md,
 * "JSON output"): add fields, never rename or remove one. One JSON document per command,
 * on one line, on stdout.
 */

const TYPES: Record<number, string> = { [EntryType.File]: 'file', [EntryType.Dir]: 'dir', [EntryType.Symlink]: 'symlink', [EntryType.CharDev]: 'chardev', [EntryType.BlockDev]: 'blockdev', [EntryType.Fifo]: 'fifo', [EntryType.Socket]: 'socket' }

/** Seconds and nanoseconds as an RFC 3339 UTC time with all nine digits. */
export function nsTime(sec: number, nsec: number): string {
  return new Date(sec * 1000).toISOString().replace(/\.\d{3}Z$/, `.${String(nsec).padStart(9, '0')}Z`)
}

/** Bytes as a string when they are UTF-8, else null (then the *Base64 field has them). */
function text(b: Buffer): string | null {
  const s = b.toString('utf8')
  return Buffer.from(s, 'utf8').equals(b) ? s : null
}

/** What lsEntry prints of an entry: fields format 1's Entry and format 2's Entry2 share (the same type numbers). */
export type LsFields = Pick<Entry, 'name' | 'mode' | 'uid' | 'gid' | 'nlink' | 'mtimeSec' | 'mtimeNsec' | 'atimeSec' | 'atimeNsec' | 'ctimeSec' | 'ctimeNsec' | 'target' | 'rdevMajor' | 'rdevMinor'> & { type: number }

/**
 * One entry of `bfs ls --json GEN[:PATH]`. Names and link targets are bytes: `name` is the
 * name when it is valid UTF-8 (else null), `nameBase64` is always the exact bytes.
 */
export function lsEntry(x: LsFields, data: Pick<Entry, 'size'>, path: Buffer): Record<string, unknown> {
  const out: Record<string, unknown> = {
    name: text(x.name),
    nameBase64: x.name.toString('base64'),
    path: text(path),
    pathBase64: path.toString('base64'),
    type: TYPES[x.type] ?? 'unknown',
    mode: x.mode,
    permissions: modeString(x.type, x.mode),
    uid: x.uid,
    gid: x.gid,
    size: x.type === EntryType.File ? data.size : x.type === EntryType.Symlink ? (x.target?.length ?? 0) : 0,
    nlink: x.nlink,
    mtime: nsTime(x.mtimeSec, x.mtimeNsec),
    atime: nsTime(x.atimeSec, x.atimeNsec),
    ctime: nsTime(x.ctimeSec, x.ctimeNsec),
  }
  if (x.type === EntryType.Symlink && x.target) Object.assign(out, { target: text(x.target), targetBase64: x.target.toString('base64') })
  if (x.type === EntryType.CharDev || x.type === EntryType.BlockDev) Object.assign(out, { rdevMajor: x.rdevMajor, rdevMinor: x.rdevMinor })
  return out
}

/** A group (`group add|ls|show --json`), with its generations for `show`. */
export function groupJson(g: Group, gens?: Array<Pick<Manifest, 'id' | 'time' | 'source'> & { files: number }>): Record<string, unknown> {
  const out: Record<string, unknown> = { name: g.name, includes: g.includes, excludes: g.excludes }
  if (gens) out.generations = gens.map((m) => ({ generation: `gen${m.id}`, id: m.id, time: m.time, source: m.source, files: m.files }))
  return out
}

/** `bfs verify --json`: the result and every line the text output lists (FAIL …, or a difference). */
export function verifyJson(o: { generations: number[]; against?: string; lines: string[]; result?: VerifyResult; differences?: number }): Record<string, unknown> {
  return o.against !== undefined
    ? { generation: `gen${o.generations[0]}`, against: o.against, ok: o.differences === 0, differences: o.differences, lines: o.lines }
    : { generations: o.generations.map((id) => `gen${id}`), ok: o.result!.problems === 0, problems: o.result!.problems, units: o.result!.units, frames: o.result!.frames, rawBytes: o.result!.rawBytes, lines: o.lines }
}

/** `bfs restore --json`: what was restored where. */
export function restoreJson(o: { generation: number; path: string; dest: string; res: RestoreResult }): Record<string, unknown> {
  return { generation: `gen${o.generation}`, path: o.path, dest: o.dest, entries: o.res.entries, files: o.res.files, bytes: o.res.bytes, errors: o.res.errors, setidDropped: o.res.setidDropped, removedDirs: o.res.removedDirs }
}

export const printJson = (v: unknown): void => {
  process.stdout.write(JSON.stringify(v) + '\n')
}
