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

/** A run of file blocks stored at `streamBlock` of a stream (format 1: a generation's, `gen`; format 2: `stream`). */
export interface BlockRun {
  fileBlock: number
  count: number
  streamBlock: number
}

/**
 * Whether two resolved extent lists (sorted, gaps are holes) cover the same file blocks with
 * the same data: block for block the same stream address, or blocks whose stored 8-byte hashes
 * (`hashesOf(stream)`, indexed by stream block) are equal: the same data stored again. Stream 0
 * is zeros (format 1 never has it in a resolved list, format 2 only in BI overlays): zeros
 * against zeros are the same, zeros against stored data are not (all-zero blocks are never
 * stored). No file data is read.
 */
export function sameBlocks<E extends BlockRun>(x: readonly E[], y: readonly E[], streamOf: (e: E) => number, hashesOf: (stream: number) => Buffer): boolean {
  let k = 0
  let l = 0
  let offX = 0
  let offY = 0
  while (k < x.length && l < y.length) {
    const p = x[k]!
    const q = y[l]!
    if (p.fileBlock + offX !== q.fileBlock + offY) return false
    const n = Math.min(p.count - offX, q.count - offY)
    const s = streamOf(p)
    const t = streamOf(q)
    if (s === 0 || t === 0) {
      if (s !== t) return false
    } else if (s !== t || p.streamBlock + offX !== q.streamBlock + offY) {
      const sp = (p.streamBlock + offX) * 8
      const sq = (q.streamBlock + offY) * 8
      if (hashesOf(s).compare(hashesOf(t), sq, sq + n * 8, sp, sp + n * 8) !== 0) return false
    }
    offX += n
    offY += n
    if (offX === p.count) k++, offX = 0
    if (offY === q.count) l++, offY = 0
  }
  return k === x.length && l === y.length
}
