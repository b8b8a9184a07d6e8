import { ByteReader, ByteWriter } from './bytes.js'
import { FormatError } from './errors.js'

/**
 * The catalog of a file generation: every entry of the tree with its metadata.
 * See native-notes/format.md §"Catalog".
 */
export const enum EntryType {
  File = 1,
  Dir = 2,
  Symlink = 3,
  CharDev = 4,
  BlockDev = 5,
  Fifo = 6,
  Socket = 7,
}

export const ENTRY_FLAG_XATTRS = 1
/** A hard link whose data is that of entry `linkLeader`. */
export const ENTRY_FLAG_LINK_FOLLOWER = 2
/** The file changed while it was read: the stored content may be inconsistent. */
export const ENTRY_FLAG_CHANGED_WHILE_READ = 4
const KNOWN_FLAGS = 7

export type Xattrs = Array<[name: Buffer, value: Buffer]>

export interface Entry {
  type: EntryType
  flags: number
  /** Index of the parent directory (the root is entry 0 and its own parent). */
  parent: number
  /** Raw name bytes (any byte but '/' and NUL); empty for the root. */
  name: Buffer
  /** Permission bits, 0o7777. */
  mode: number
  uid: number
  gid: number
  atimeSec: number
  atimeNsec: number
  mtimeSec: number
  mtimeNsec: number
  ctimeSec: number
  ctimeNsec: number
  /** Apparent size in bytes (files, symlinks); 0 for others. */
  size: number
  /** Source identity, for incremental change detection and hard-link groups. */
  srcDev: number
  srcInoHi: number
  srcInoLo: number
  /** Link count on the source. */
  nlink: number
  /** Dir: children are entries [firstChild, firstChild+childCount), sorted by name bytes. */
  firstChild: number
  childCount: number
  /** File: block-map object (objGen 0 = no data: empty or all holes). */
  objGen: number
  objIndex: number
  /** File with ENTRY_FLAG_LINK_FOLLOWER: the entry whose object it shares. */
  linkLeader: number
  /** Symlink target bytes. */
  target: Buffer | null
  rdevMajor: number
  rdevMinor: number
  xattrs: Xattrs | null
}

export function newEntry(type: EntryType, parent: number, name: Buffer): Entry {
  return {
    type, flags: 0, parent, name, mode: 0, uid: 0, gid: 0,
    atimeSec: 0, atimeNsec: 0, mtimeSec: 0, mtimeNsec: 0, ctimeSec: 0, ctimeNsec: 0,
    size: 0, srcDev: 0, srcInoHi: 0, srcInoLo: 0, nlink: 1,
    firstChild: 0, childCount: 0, objGen: 0, objIndex: 0, linkLeader: 0,
    target: null, rdevMajor: 0, rdevMinor: 0, xattrs: null,
  }
}

export function encodeCatalog(entries: Entry[]): Buffer {
  const w = new ByteWriter(1 << 16)
  w.varint(entries.length)
  for (const e of entries) {
    const flags = (e.flags & ~ENTRY_FLAG_XATTRS) | (e.xattrs && e.xattrs.length ? ENTRY_FLAG_XATTRS : 0)
    w.u8(e.type).u8(flags).varint(e.parent).blob(e.name)
    w.varint(e.mode).varint(e.uid).varint(e.gid)
    w.svarint(e.atimeSec).varint(e.atimeNsec).svarint(e.mtimeSec).varint(e.mtimeNsec).svarint(e.ctimeSec).varint(e.ctimeNsec)
    w.varint(e.size).varint(e.srcDev).varint(e.srcInoHi).varint(e.srcInoLo).varint(e.nlink)
    switch (e.type) {
      case EntryType.Dir:
        w.varint(e.firstChild).varint(e.childCount)
        break
      case EntryType.File:
        if (flags & ENTRY_FLAG_LINK_FOLLOWER) w.varint(e.linkLeader)
        else w.varint(e.objGen).varint(e.objIndex)
        break
      case EntryType.Symlink:
        w.blob(e.target ?? Buffer.alloc(0))
        break
      case EntryType.CharDev:
      case EntryType.BlockDev:
        w.varint(e.rdevMajor).varint(e.rdevMinor)
        break
    }
    if (flags & ENTRY_FLAG_XATTRS) {
      w.varint(e.xattrs!.length)
      for (const [n, v] of e.xattrs!) w.blob(n).blob(v)
    }
  }
  return w.finish()
}

export function decodeCatalog(payload: Buffer, what: string): Entry[] {
  const r = new ByteReader(payload, what)
  const n = r.count(20, 'entry')
  if (n === 0) throw new FormatError('BAD_VALUE', `${what}: catalog has no root`)
  const entries: Entry[] = new Array(n)
  for (let i = 0; i < n; i++) {
    const type = r.u8() as EntryType
    if (type < EntryType.File || type > EntryType.Socket) throw new FormatError('BAD_VALUE', `${what}: entry ${i} has unknown type ${type}`)
    const flags = r.u8()
    if (flags & ~KNOWN_FLAGS) throw new FormatError('BAD_VALUE', `${what}: entry ${i} has unknown flags ${flags}`)
    const e = newEntry(type, r.varint(), r.blob(4096))
    e.flags = flags
    if (e.parent >= n) throw new FormatError('BAD_VALUE', `${what}: entry ${i} has parent ${e.parent} out of range`)
    if (i > 0 && (e.name.length === 0 || e.name.includes(0x2f) || e.name.includes(0))) throw new FormatError('BAD_VALUE', `${what}: entry ${i} has an invalid name`)
    e.mode = r.varint()
    e.uid = r.varint()
    e.gid = r.varint()
    e.atimeSec = r.svarint(); e.atimeNsec = r.varint()
    e.mtimeSec = r.svarint(); e.mtimeNsec = r.varint()
    e.ctimeSec = r.svarint(); e.ctimeNsec = r.varint()
    if (e.mode > 0o7777 || e.atimeNsec > 999_999_999 || e.mtimeNsec > 999_999_999 || e.ctimeNsec > 999_999_999) {
      throw new FormatError('BAD_VALUE', `${what}: entry ${i} has an invalid mode or time`)
    }
    e.size = r.varint(); e.srcDev = r.varint(); e.srcInoHi = r.varint(); e.srcInoLo = r.varint(); e.nlink = r.varint()
    switch (type) {
      case EntryType.Dir:
        e.firstChild = r.varint(); e.childCount = r.varint()
        if (e.childCount > 0 && (e.firstChild <= i || e.firstChild + e.childCount > n)) throw new FormatError('BAD_VALUE', `${what}: entry ${i} has children out of range`)
        break
      case EntryType.File:
        if (flags & ENTRY_FLAG_LINK_FOLLOWER) {
          e.linkLeader = r.varint()
          if (e.linkLeader >= i) throw new FormatError('BAD_VALUE', `${what}: entry ${i} links to a later entry`)
        } else { e.objGen = r.varint(); e.objIndex = r.varint() }
        break
      case EntryType.Symlink:
        e.target = r.blob(65536)
        break
      case EntryType.CharDev:
      case EntryType.BlockDev:
        e.rdevMajor = r.varint(); e.rdevMinor = r.varint()
        break
    }
    if (flags & ENTRY_FLAG_XATTRS) {
      const count = r.count(2, 'xattr')
      e.xattrs = []
      for (let j = 0; j < count; j++) e.xattrs.push([r.blob(255), r.blob(1 << 20)])
    }
    entries[i] = e
  }
  if (r.remaining !== 0) throw new FormatError('TRAILING_BYTES', `${what}: ${r.remaining} bytes after the last entry`)
  // Children ranges must be a tree: each child's parent points back.
  for (let i = 0; i < n; i++) {
    const e = entries[i]!
    if (e.type !== EntryType.Dir) continue
    for (let c = e.firstChild; c < e.firstChild + e.childCount; c++) {
      if (entries[c]!.parent !== i) throw new FormatError('BAD_VALUE', `${what}: entry ${c} is listed under ${i} but names parent ${entries[c]!.parent}`)
    }
  }
  if (entries[0]!.type !== EntryType.Dir && entries[0]!.type !== EntryType.File) throw new FormatError('BAD_VALUE', `${what}: root must be a directory or a file`)
  return entries
}
