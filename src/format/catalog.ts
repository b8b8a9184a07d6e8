import { ByteReader, ByteWriter, rdSetPos, rdSi, rdSkip, rdU8, rdVi } from './bytes.js'
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

/** Reads entry `i` of `n` at the reader's position, checking it as it goes. */
function readEntry(r: ByteReader, i: number, n: number, what: string): Entry {
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
  return e
}

function badTree(what: string, c: number, dir: number, parent: number): FormatError {
  return new FormatError('BAD_VALUE', `${what}: entry ${c} is listed under ${dir} but names parent ${parent}`)
}

export function decodeCatalog(payload: Buffer, what: string): Entry[] {
  const r = new ByteReader(payload, what)
  const n = r.count(20, 'entry')
  if (n === 0) throw new FormatError('BAD_VALUE', `${what}: catalog has no root`)
  const entries: Entry[] = new Array(n)
  for (let i = 0; i < n; i++) entries[i] = readEntry(r, i, n, what)
  if (r.remaining !== 0) throw new FormatError('TRAILING_BYTES', `${what}: ${r.remaining} bytes after the last entry`)
  // Children ranges must be a tree: each child's parent points back.
  for (let i = 0; i < n; i++) {
    const e = entries[i]!
    if (e.type !== EntryType.Dir) continue
    for (let c = e.firstChild; c < e.firstChild + e.childCount; c++) {
      if (entries[c]!.parent !== i) throw badTree(what, c, i, entries[c]!.parent)
    }
  }
  if (entries[0]!.type !== EntryType.Dir && entries[0]!.type !== EntryType.File) throw new FormatError('BAD_VALUE', `${what}: root must be a directory or a file`)
  return entries
}

/** Indices of CatalogIndex.identity()'s output. */
export const ID_TYPE = 0
export const ID_FLAGS = 1
export const ID_SIZE = 2
export const ID_DEV = 3
export const ID_INO_HI = 4
export const ID_INO_LO = 5
export const ID_MTIME_SEC = 6
export const ID_MTIME_NSEC = 7
export const ID_CTIME_SEC = 8
export const ID_CTIME_NSEC = 9
export const ID_OBJ_GEN = 10
export const ID_OBJ_INDEX = 11
/** The entry holding the data (the hard-link leader, or the entry itself). */
export const ID_LEADER = 12
export const ID_FIELDS = 13

/** Indices of CatalogIndex.stat()'s output. */
export const ST_TYPE = 0
export const ST_MODE = 1
export const ST_UID = 2
export const ST_GID = 3
export const ST_ATIME_SEC = 4
export const ST_ATIME_NSEC = 5
export const ST_MTIME_SEC = 6
export const ST_MTIME_NSEC = 7
export const ST_CTIME_SEC = 8
export const ST_CTIME_NSEC = 9
export const ST_SIZE = 10
export const ST_OBJ_GEN = 11
export const ST_OBJ_INDEX = 12
export const ST_RDEV_MAJOR = 13
export const ST_RDEV_MINOR = 14
/** Symlinks: the target's length. */
export const ST_TARGET_LEN = 15
/** How many extended attributes the entry has. */
export const ST_XATTRS = 16
export const ST_FIELDS = 17

/**
 * A catalog kept as its encoded bytes plus a few typed columns, decoding an entry
 * only when asked. The mount uses it: 84k entries as objects cost ~140 ms to build
 * and ~70 MB of heap; this costs one checking pass over the bytes and ~35 B/entry.
 * The checks are exactly decodeCatalog's.
 */
export class CatalogIndex {
  readonly length: number
  readonly type: Uint8Array
  readonly parent: Uint32Array
  /** Dirs: children are [firstChild, firstChild + childCount). */
  readonly firstChild: Uint32Array
  readonly childCount: Uint32Array
  /** The entry holding the data: the hard-link leader, or the entry itself. */
  readonly leader: Uint32Array
  readonly nlink: Uint32Array
  private readonly offset: Uint32Array
  /** Entry i's name is bytes [nameStart[i], nameStart[i] + nameLen[i]) of `payload` (bfs find matches names in place). */
  readonly nameStart: Uint32Array
  readonly nameLen: Uint16Array
  private cache = new Map<number, Entry>()

  constructor(
    readonly payload: Buffer,
    private readonly what: string,
  ) {
    const r = new ByteReader(payload, what)
    const n = r.count(20, 'entry')
    if (n === 0) throw new FormatError('BAD_VALUE', `${what}: catalog has no root`)
    this.length = n
    this.type = new Uint8Array(n)
    this.parent = new Uint32Array(n)
    this.firstChild = new Uint32Array(n)
    this.childCount = new Uint32Array(n)
    this.leader = new Uint32Array(n)
    this.nlink = new Uint32Array(n)
    this.offset = new Uint32Array(n)
    this.nameStart = new Uint32Array(n)
    this.nameLen = new Uint16Array(n)
    // One allocation-free pass with the same checks as readEntry (kept in step with it;
    // test/format.test.ts runs every bad-catalog case through both).
    const b = payload
    const end = b.length
    let pos = r.pos
    let i = 0
    const trunc = (): never => {
      throw new FormatError('TRUNCATED', `${what}: truncated at byte ${pos}`)
    }
    const bad = (m: string): never => {
      throw new FormatError('BAD_VALUE', `${what}: entry ${i} ${m}`)
    }
    const vi = (): number => {
      if (pos >= end) trunc()
      let x = b[pos++]!
      if (x < 0x80) return x
      let v = x & 0x7f
      let mul = 0x80
      for (let k = 1; k < 8; k++) {
        if (pos >= end) trunc()
        x = b[pos++]!
        v += (x & 0x7f) * mul
        if (x < 0x80) {
          if (!Number.isSafeInteger(v)) break
          return v
        }
        mul *= 0x80
      }
      throw new FormatError('BAD_VALUE', `${what}: bad varint at byte ${pos}`)
    }
    const skip = (max: number): number => {
      const len = vi()
      if (len > max) throw new FormatError('BAD_VALUE', `${what}: length ${len} over limit ${max} at byte ${pos}`)
      if (pos + len > end) trunc()
      const at = pos
      pos += len
      return at
    }
    for (; i < n; i++) {
      this.offset[i] = pos
      if (pos >= end) trunc()
      const type = b[pos++]!
      if (type < EntryType.File || type > EntryType.Socket) bad(`has unknown type ${type}`)
      if (pos >= end) trunc()
      const flags = b[pos++]!
      if (flags & ~KNOWN_FLAGS) bad(`has unknown flags ${flags}`)
      const parent = vi()
      const ns = skip(4096)
      const nl = pos - ns
      if (parent >= n) bad(`has parent ${parent} out of range`)
      if (i > 0) {
        if (nl === 0) bad('has an invalid name')
        for (let k = ns; k < pos; k++) if (b[k] === 0x2f || b[k] === 0) bad('has an invalid name')
      }
      const mode = vi()
      vi(); vi() // uid, gid
      vi(); const an = vi(); vi(); const mn = vi(); vi(); const cn = vi()
      if (mode > 0o7777 || an > 999_999_999 || mn > 999_999_999 || cn > 999_999_999) bad('has an invalid mode or time')
      vi(); vi(); vi(); vi() // size, srcDev, srcInoHi, srcInoLo
      const nlink = vi()
      let leader = i
      switch (type) {
        case EntryType.Dir: {
          const fc = vi()
          const cc = vi()
          if (cc > 0 && (fc <= i || fc + cc > n)) bad('has children out of range')
          this.firstChild[i] = fc
          this.childCount[i] = cc
          break
        }
        case EntryType.File:
          if (flags & ENTRY_FLAG_LINK_FOLLOWER) {
            leader = vi()
            if (leader >= i) bad('links to a later entry')
          } else { vi(); vi() }
          break
        case EntryType.Symlink:
          skip(65536)
          break
        case EntryType.CharDev:
        case EntryType.BlockDev:
          vi(); vi()
          break
      }
      if (flags & ENTRY_FLAG_XATTRS) {
        const count = vi()
        if (count * 2 > end - pos) throw new FormatError('BAD_VALUE', `${what}: xattr count ${count} exceeds the data left`)
        for (let j = 0; j < count; j++) { skip(255); skip(1 << 20) }
      }
      this.type[i] = type
      this.parent[i] = parent
      this.leader[i] = leader
      this.nlink[i] = Math.min(nlink, 0xffffffff)
      this.nameStart[i] = ns
      this.nameLen[i] = nl
    }
    r.pos = pos
    if (r.remaining !== 0) throw new FormatError('TRAILING_BYTES', `${what}: ${r.remaining} bytes after the last entry`)
    for (let i = 0; i < n; i++) {
      if (this.type[i] !== EntryType.Dir) continue
      const end = this.firstChild[i]! + this.childCount[i]!
      for (let c = this.firstChild[i]!; c < end; c++) if (this.parent[c] !== i) throw badTree(what, c, i, this.parent[c]!)
    }
    if (this.type[0] !== EntryType.Dir && this.type[0] !== EntryType.File) throw new FormatError('BAD_VALUE', `${what}: root must be a directory or a file`)
  }

  /** Entry i, decoded (a small cache keeps the recently used ones). */
  entry(i: number): Entry {
    if (!(i >= 0 && i < this.length)) throw new RangeError(`${this.what}: no entry ${i}`)
    let e = this.cache.get(i)
    if (e) return e
    if (this.cache.size >= 4096) this.cache = new Map()
    e = readEntry(new ByteReader(this.payload, this.what, this.offset[i]), i, this.length, this.what)
    this.cache.set(i, e)
    return e
  }

  /**
   * The fields of entry i that decide whether a file is unchanged, read straight from the
   * bytes into `out` (indices ID_*), without decoding the entry: a no-change backup asks
   * this of every file, and building 80k entry objects for it was a sixth of its time.
   * The bytes were checked when the index was built.
   */
  identity(i: number, out: Float64Array): void {
    const b = this.payload
    let pos = this.offset[i]!
    const vi = (): number => {
      let x = b[pos++]!
      if (x < 0x80) return x
      let v = x & 0x7f
      let mul = 0x80
      do {
        x = b[pos++]!
        v += (x & 0x7f) * mul
        mul *= 0x80
      } while (x >= 0x80)
      return v
    }
    const si = (): number => {
      const z = vi()
      return z % 2 === 0 ? z / 2 : -(z + 1) / 2
    }
    const type = b[pos++]!
    const flags = b[pos++]!
    vi() // parent
    const nameLen = vi()
    pos += nameLen // (not `pos += vi()`: that adds to pos as it was before vi() moved it)
    vi(); vi(); vi() // mode, uid, gid
    si(); vi() // atime
    out[ID_TYPE] = type
    out[ID_FLAGS] = flags
    out[ID_MTIME_SEC] = si()
    out[ID_MTIME_NSEC] = vi()
    out[ID_CTIME_SEC] = si()
    out[ID_CTIME_NSEC] = vi()
    out[ID_SIZE] = vi()
    out[ID_DEV] = vi()
    out[ID_INO_HI] = vi()
    out[ID_INO_LO] = vi()
    vi() // nlink
    out[ID_OBJ_GEN] = 0
    out[ID_OBJ_INDEX] = 0
    out[ID_LEADER] = i
    if (type === EntryType.File) {
      if (flags & ENTRY_FLAG_LINK_FOLLOWER) out[ID_LEADER] = vi()
      else {
        out[ID_OBJ_GEN] = vi()
        out[ID_OBJ_INDEX] = vi()
      }
    }
  }

  /**
   * The fields of entry i a stat needs, read straight from the bytes into `out` (indices
   * ST_*), without decoding the entry: the mount's readdir asks this of every child (an
   * Entry object per child was a fifth of a cold `find`'s server time). Same bytes and
   * meaning as readEntry's (checked when the index was built).
   */
  stat(i: number, out: Float64Array): void {
    // bytes.ts's cursor readers: no closure allocated per call (this runs per entry)
    const b = this.payload
    rdSetPos(this.offset[i]!)
    const type = rdU8(b)
    const flags = rdU8(b)
    rdVi(b) // parent
    rdSkip(rdVi(b)) // name
    out[ST_TYPE] = type
    out[ST_MODE] = rdVi(b)
    out[ST_UID] = rdVi(b)
    out[ST_GID] = rdVi(b)
    out[ST_ATIME_SEC] = rdSi(b)
    out[ST_ATIME_NSEC] = rdVi(b)
    out[ST_MTIME_SEC] = rdSi(b)
    out[ST_MTIME_NSEC] = rdVi(b)
    out[ST_CTIME_SEC] = rdSi(b)
    out[ST_CTIME_NSEC] = rdVi(b)
    out[ST_SIZE] = rdVi(b)
    rdVi(b); rdVi(b); rdVi(b); rdVi(b) // srcDev, srcInoHi, srcInoLo, nlink
    out[ST_OBJ_GEN] = 0
    out[ST_OBJ_INDEX] = 0
    out[ST_RDEV_MAJOR] = 0
    out[ST_RDEV_MINOR] = 0
    out[ST_TARGET_LEN] = 0
    switch (type) {
      case EntryType.Dir:
        rdVi(b); rdVi(b)
        break
      case EntryType.File:
        if (flags & ENTRY_FLAG_LINK_FOLLOWER) rdVi(b)
        else {
          out[ST_OBJ_GEN] = rdVi(b)
          out[ST_OBJ_INDEX] = rdVi(b)
        }
        break
      case EntryType.Symlink: {
        const len = rdVi(b)
        out[ST_TARGET_LEN] = len
        rdSkip(len)
        break
      }
      case EntryType.CharDev:
      case EntryType.BlockDev:
        out[ST_RDEV_MAJOR] = rdVi(b)
        out[ST_RDEV_MINOR] = rdVi(b)
        break
    }
    out[ST_XATTRS] = flags & ENTRY_FLAG_XATTRS ? rdVi(b) : 0
  }

  /** Raw name bytes of entry i (a view into the catalog). */
  name(i: number): Buffer {
    const s = this.nameStart[i]!
    return this.payload.subarray(s, s + this.nameLen[i]!)
  }

  /** Buffer.compare(name of entry i, name). */
  compareName(i: number, name: Buffer): number {
    const s = this.nameStart[i]!
    return this.payload.compare(name, 0, name.length, s, s + this.nameLen[i]!)
  }

  /** Index of the child of `dir` named `name` (binary search over sorted names); -1 if none. */
  childIndex(dir: number, name: Buffer): number {
    let lo = this.firstChild[dir]!
    let hi = lo + this.childCount[dir]! - 1
    const p = this.payload
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      const s = this.nameStart[mid]!
      // stored name (source) against the wanted one (target)
      const c = p.compare(name, 0, name.length, s, s + this.nameLen[mid]!)
      if (c === 0) return mid
      if (c < 0) lo = mid + 1
      else hi = mid - 1
    }
    return -1
  }
}
