/**
 * What bfs diff's two halves share (format 1: diff.ts, format 2: diff2.ts): a change, the
 * counts, and the comparisons both make the same way. Its own module so neither half imports
 * the other.
 */
import { EntryType, type Entry } from '../format/catalog.js'

export type Kind = 'files' | 'dirs' | 'others'
export const kindOf = (t: EntryType): Kind => (t === EntryType.File ? 'files' : t === EntryType.Dir ? 'dirs' : 'others')

export interface DiffStats {
  added: Record<Kind, number>
  removed: Record<Kind, number>
  changed: Record<Kind, number>
  addedBytes: number
  removedBytes: number
}

export interface Change {
  modifier: '+' | '-' | 'M'
  path: Buffer
  type: EntryType
  /** For M: what changed (content, type, mode, owner, mtime, xattrs, target). */
  what: string[]
  sizeBefore: number | null
  sizeAfter: number | null
}

export const SLASH = Buffer.from('/')

const NONE: never[] = []

export function sameXattrs(a: Pick<Entry, 'xattrs'>, b: Pick<Entry, 'xattrs'>): boolean {
  if (a.xattrs === null && b.xattrs === null) return true
  const x = a.xattrs ?? NONE
  const y = b.xattrs ?? NONE
  if (x.length !== y.length) return false
  return x.every(([n, v], k) => n.equals(y[k]![0]) && v.equals(y[k]![1]))
}
