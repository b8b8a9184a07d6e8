import { EntryType, ENTRY_FLAG_LINK_FOLLOWER, type Entry } from '../format/catalog.js'

/** Index of the child of `dir` named `name` (binary search over sorted names); -1 if none. */
export function childIndex(entries: Entry[], dir: number, name: Buffer): number {
  const d = entries[dir]!
  let lo = d.firstChild
  let hi = d.firstChild + d.childCount - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const c = Buffer.compare(entries[mid]!.name, name)
    if (c === 0) return mid
    if (c < 0) lo = mid + 1
    else hi = mid - 1
  }
  return -1
}

/** Entry index of a '/'-separated path relative to the root ('' or '/' is the root). */
export function lookupPath(entries: Entry[], rel: Buffer): number {
  let cur = 0
  let start = 0
  while (start <= rel.length) {
    let end = rel.indexOf(0x2f, start)
    if (end < 0) end = rel.length
    if (end > start) {
      const name = rel.subarray(start, end)
      if (name.equals(Buffer.from('.'))) {
        // stay
      } else {
        if (entries[cur]!.type !== EntryType.Dir) return -1
        cur = childIndex(entries, cur, name)
        if (cur < 0) return -1
      }
    }
    start = end + 1
  }
  return cur
}

/** Raw path bytes of entry i relative to the root. */
export function pathOf(entries: Entry[], i: number): Buffer {
  const parts: Buffer[] = []
  while (i !== 0) {
    parts.push(entries[i]!.name)
    i = entries[i]!.parent
  }
  return Buffer.concat(parts.reverse().flatMap((p, k) => (k ? [SLASH, p] : [p])))
}

const SLASH = Buffer.from('/')

/** All entries of the subtree rooted at `root`, in index order (parents before children). */
export function subtree(entries: Entry[], root: number): number[] {
  const out: number[] = [root]
  for (let k = 0; k < out.length; k++) {
    const e = entries[out[k]!]!
    if (e.type === EntryType.Dir) for (let c = e.firstChild; c < e.firstChild + e.childCount; c++) out.push(c)
  }
  return out.sort((a, b) => a - b)
}

/** The entry holding a file's data: its hard-link leader, or itself. */
export function dataEntry(entries: Entry[], i: number): Entry {
  const e = entries[i]!
  return e.flags & ENTRY_FLAG_LINK_FOLLOWER ? entries[e.linkLeader]! : e
}
