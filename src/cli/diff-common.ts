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

/** The fields of an entry (format 1's Entry, format 2's Entry2: the same type numbers) that diff and log compare. */
export type Compared = Pick<Entry, 'mode' | 'uid' | 'gid' | 'mtimeSec' | 'mtimeNsec' | 'xattrs' | 'target' | 'rdevMajor' | 'rdevMinor'> & { type: number }

/**
 * What changed from `a` to `b`, in diff's order: type, content, mode, owner, mtime (not for
 * directories: theirs moves with every entry added or removed), xattrs, target.
 * `contentDiffers`: the caller's verdict on two files' data (block maps, hashes).
 */
export function whatChanged(a: Compared, b: Compared, contentDiffers: boolean): string[] {
  const what: string[] = []
  if (a.type !== b.type) what.push('type')
  else if (a.type === EntryType.File) {
    if (contentDiffers) what.push('content')
  } else if (a.type === EntryType.CharDev || a.type === EntryType.BlockDev) {
    if (a.rdevMajor !== b.rdevMajor || a.rdevMinor !== b.rdevMinor) what.push('content')
  }
  if (a.mode !== b.mode) what.push('mode')
  if (a.uid !== b.uid || a.gid !== b.gid) what.push('owner')
  if (a.type !== EntryType.Dir && (a.mtimeSec !== b.mtimeSec || a.mtimeNsec !== b.mtimeNsec)) what.push('mtime')
  if (!sameXattrs(a, b)) what.push('xattrs')
  if (a.type === EntryType.Symlink && b.type === EntryType.Symlink && !(a.target ?? Buffer.alloc(0)).equals(b.target ?? Buffer.alloc(0))) what.push('target')
  return what
}
