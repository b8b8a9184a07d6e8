import { ByteReader, ByteWriter } from '../bytes.js'
import { FormatError } from '../errors.js'
import {
  type Extent,
  type PieceRef,
  type Xxh64Fn,
  BLOCK_BYTES,
  PieceKind,
  StrictReader,
  expectEnd,
  extentDataBlocks,
  finishPiece,
  pieceReader,
  pieceWriter,
  readExtentList,
  readPieceRef,
  writeExtentList,
  writePieceRef,
} from './common.js'

/**
 * Directory pieces: the entry, DIR, DIRDELTA, DIRINDEX, and the deterministic rules that make
 * generations share them (page cuts, when to write a delta). native-notes/format.md §2.13.
 */

/** Entry types (the same numbers as format 1). */
export const FileType = {
  File: 1,
  Dir: 2,
  Symlink: 3,
  CharDev: 4,
  BlockDev: 5,
  Fifo: 6,
  Socket: 7,
} as const
export type FileType = (typeof FileType)[keyof typeof FileType]

// Entry flags (§2.13.1). The structural ones (xattrs, inlineMap, mapRef, emptyDir) follow from
// the entry's fields when encoding; the others are taken from `flags`.
export const E_XATTRS = 1
/** Source nlink > 1: inode number and link count come from the links table. Non-directories. */
export const E_LINKED = 2
/** The file changed while it was read. Files. */
export const E_CHANGED_WHILE_READ = 4
export const E_INLINE_MAP = 8
export const E_MAP_REF = 16
/** A directory made up by bfs (volume root, multi-source paths). Dirs. */
export const E_SYNTHETIC = 32
export const E_EMPTY_DIR = 64
const E_KNOWN = 127
const E_SEMANTIC = E_LINKED | E_CHANGED_WHILE_READ | E_SYNTHETIC

/** Limits of §2.13. Names: Linux writes ≤ 255 bytes; format 1 accepted 4,096, and upgrade carries them. */
export const NAME_MAX_WRITE = 4096
export const NAME_MAX_READ = 4096
export const SYMLINK_TARGET_MAX = 65536
export const XATTR_NAME_MAX = 255
export const XATTR_VALUE_MAX = 65536
export const INLINE_MAX_EXTENTS = 4
export const INLINE_MAX_BYTES = 48
/** One DIR piece holds at most this many entries and bytes of entries; bigger directories are paged. */
export const DIR_MAX_ENTRIES = 4096
export const DIR_MAX_BYTES = 256 * 1024
export const PAGE_MIN_ENTRIES = 256
export const PAGE_MAX_ENTRIES = 8192
export const PAGE_CUT_MASK = 2047n
export const INDEX_MAX_CHILDREN = 4096
export const INDEX_MIN_CHILDREN = 64
export const INDEX_CUT_MASK = 255n
export const INDEX_MAX_LEVEL = 4
/** The smallest encodings (count checks): a one-byte name, every number one byte. */
export const MIN_ENTRY_BYTES = 19
/** The empty first name (1), the smallest PieceRef (36), entries (1). */
export const MIN_INDEX_CHILD_BYTES = 38
/** A delta is written only over a base of at least this many entries ... */
export const DELTA_MIN_BASE_ENTRIES = 64

export type Xattrs = Array<[name: Buffer, value: Buffer]>

export type FileMap =
  | { kind: 'inline'; extents: Extent[] }
  | { kind: 'ref'; root: PieceRef; extentCount: number }

export interface Entry2 {
  /** Raw name bytes: 1 … 4,096 (Linux: ≤ 255), no '/' or NUL; empty only for a manifest's root entry. */
  name: Buffer
  type: FileType
  /** Decoded flags; when encoding only E_LINKED, E_CHANGED_WHILE_READ and E_SYNTHETIC are taken from here. */
  flags: number
  /** Stable per path (§2.19); 0 only for the root entry. */
  ord: number
  /** Permission bits, ≤ 0o7777. */
  mode: number
  uid: number
  gid: number
  atimeSec: number
  atimeNsec: number
  mtimeSec: number
  mtimeNsec: number
  ctimeSec: number
  ctimeNsec: number
  /** Bytes (files, symlinks); 0 for others. */
  size: number
  srcDev: number
  srcInoHi: number
  srcInoLo: number
  /** Files: the source's st_nlink; dirs: 2 + subdirectories in this generation. */
  nlink: number
  /** Dirs: the directory's piece and entry count; null = empty directory. */
  dir: { child: PieceRef; entries: number } | null
  /** Files: data blocks of the map (st_blocks = 8 × this). */
  dataBlocks: number
  /** Files: null = no data (empty, or holes only). */
  map: FileMap | null
  /** Symlinks. */
  target: Buffer | null
  rdevMajor: number
  rdevMinor: number
  /** Sorted strictly by name when encoded; null or [] = none. */
  xattrs: Xattrs | null
}

export function newEntry2(type: FileType, name: Buffer): Entry2 {
  return {
    name, type, flags: 0, ord: 0, mode: 0, uid: 0, gid: 0,
    atimeSec: 0, atimeNsec: 0, mtimeSec: 0, mtimeNsec: 0, ctimeSec: 0, ctimeNsec: 0,
    size: 0, srcDev: 0, srcInoHi: 0, srcInoLo: 0, nlink: type === FileType.Dir ? 2 : 1,
    dir: null, dataBlocks: 0, map: null, target: null, rdevMajor: 0, rdevMinor: 0, xattrs: null,
  }
}

const varintBytes = (v: number): number => {
  let n = 1
  while (v >= 0x80) {
    v = Math.floor(v / 0x80)
    n++
  }
  return n
}

/**
 * Bytes of an inline map's extent list (count included), or Infinity when it cannot be inline
 * (counted, not encoded: this runs for every file entry written; extents that are not a valid
 * list are refused by the encoder that follows).
 */
export function inlineMapBytes(extents: readonly Extent[]): number {
  if (extents.length < 1 || extents.length > INLINE_MAX_EXTENTS) return Infinity
  let n = varintBytes(extents.length)
  let next = 0
  let lastStream = 0
  for (const e of extents) {
    n += varintBytes(e.fileBlock - next) + varintBytes(e.count) + varintBytes(e.stream)
    if (e.stream !== 0) {
      const d = e.streamBlock - lastStream
      n += varintBytes(d >= 0 ? d * 2 : -d * 2 - 1)
      lastStream = e.streamBlock + e.count
    }
    next = e.fileBlock + e.count
  }
  return n
}

/** Whether a canonical map is stored inline (exactly when it fits: §2.13.1). */
export function fitsInline(extents: readonly Extent[]): boolean {
  return inlineMapBytes(extents) <= INLINE_MAX_BYTES
}

const fileBlocks = (size: number): number => Math.ceil(size / BLOCK_BYTES)

function nameProblem(name: Buffer, max: number): string | null {
  if (name.length === 0) return 'an empty name'
  if (name.length > max) return `a name of ${name.length} bytes`
  if (name.includes(0x2f) || name.includes(0)) return 'a name with / or NUL'
  return null
}

/** What is wrong with an entry (the same rules for encoder and decoder), or null. */
function entryProblem(e: Entry2, root: boolean, nameMax: number, flags: number = e.flags): string | null {
  if (root) {
    if (e.name.length !== 0) return 'is a root entry with a name'
    if (e.type !== FileType.Dir) return 'is a root entry that is not a directory'
    if (e.ord !== 0) return `is a root entry with ord ${e.ord}`
  } else {
    const p = nameProblem(e.name, nameMax)
    if (p) return `has ${p}`
  }
  if (!(e.type >= FileType.File && e.type <= FileType.Socket)) return `has unknown type ${e.type}`
  if (flags & ~E_KNOWN) return `has unknown flags 0x${flags.toString(16)}`
  if (!root && e.ord === 0) return 'has ord 0 (only the root has it)'
  if (e.mode > 0o7777) return `has mode 0o${e.mode.toString(8)} beyond the permission bits`
  if (e.atimeNsec > 999_999_999 || e.mtimeNsec > 999_999_999 || e.ctimeNsec > 999_999_999) return 'has nanoseconds over 999,999,999'
  const dir = e.type === FileType.Dir
  const file = e.type === FileType.File
  if (dir && flags & E_LINKED) return 'is a linked directory'
  if (!file && flags & E_CHANGED_WHILE_READ) return 'is changed-while-read but not a file'
  if (!dir && flags & E_SYNTHETIC) return 'is synthetic but not a directory'
  if (!file && e.type !== FileType.Symlink && e.size !== 0) return `has size ${e.size}`
  if (dir && e.dir && e.dir.entries < 1) return 'is a directory piece with no entries'
  if (!dir && e.dir) return 'has a directory piece but is not a directory'
  if (!file && (e.map || e.dataBlocks !== 0)) return 'has a map or data blocks but is not a file'
  if (e.type !== FileType.Symlink && e.target) return 'has a symlink target but is not a symlink'
  if (e.type !== FileType.CharDev && e.type !== FileType.BlockDev && (e.rdevMajor || e.rdevMinor)) return 'has a device number but is not a device'
  if (file) {
    const m = e.map
    if (!m) {
      if (e.dataBlocks !== 0) return 'has data blocks but no map'
    } else if (m.kind === 'inline') {
      if (inlineMapBytes(m.extents) > INLINE_MAX_BYTES) return 'has an inline map over the inline limits'
      if (m.extents.some((x) => x.stream === 0)) return 'has a zero extent in its map'
      if (extentDataBlocks(m.extents) !== e.dataBlocks) return `has ${e.dataBlocks} data blocks, its map ${extentDataBlocks(m.extents)}`
      const last = m.extents[m.extents.length - 1]!
      if (last.fileBlock + last.count > fileBlocks(e.size)) return 'has a map beyond its size'
    } else {
      if (m.extentCount < 1 || e.dataBlocks < 1) return 'has a map reference with no extents or no data'
      if (m.extentCount > e.dataBlocks) return 'has more extents than data blocks'
    }
  }
  if (e.type === FileType.Symlink && (!e.target || e.target.length > SYMLINK_TARGET_MAX)) return 'has no symlink target, or one over 65,536 bytes'
  if (e.xattrs && e.xattrs.length) {
    for (let i = 0; i < e.xattrs.length; i++) {
      const [n, v] = e.xattrs[i]!
      if (n.length === 0 || n.length > XATTR_NAME_MAX || n.includes(0)) return `has an invalid xattr name`
      if (v.length > XATTR_VALUE_MAX) return `has an xattr value of ${v.length} bytes`
      if (i > 0 && Buffer.compare(e.xattrs[i - 1]![0], n) >= 0) return 'has xattr names out of order'
    }
  }
  return null
}

function structuralFlags(e: Entry2): number {
  let f = e.flags & E_SEMANTIC
  if (e.xattrs && e.xattrs.length) f |= E_XATTRS
  if (e.type === FileType.File && e.map) f |= e.map.kind === 'inline' ? E_INLINE_MAP : E_MAP_REF
  if (e.type === FileType.Dir && !e.dir) f |= E_EMPTY_DIR
  return f
}

/** Writes one entry (§2.13.1). `root`: the manifest's root entry (empty name, ord 0 allowed). */
export function writeEntry(w: ByteWriter, e: Entry2, root = false): void {
  const flags = structuralFlags(e)
  const p = entryProblem(e, root, NAME_MAX_WRITE, flags)
  if (p) throw new RangeError(`entry ${JSON.stringify(e.name.toString('latin1'))} ${p}`)
  w.blob(e.name).u8(e.type).varint(flags).varint(e.ord)
  w.varint(e.mode).varint(e.uid).varint(e.gid)
  w.svarint(e.atimeSec).varint(e.atimeNsec).svarint(e.mtimeSec).varint(e.mtimeNsec).svarint(e.ctimeSec).varint(e.ctimeNsec)
  w.varint(e.size).varint(e.srcDev).varint(e.srcInoHi).varint(e.srcInoLo).varint(e.nlink)
  switch (e.type) {
    case FileType.Dir:
      if (e.dir) {
        writePieceRef(w, e.dir.child)
        w.varint(e.dir.entries)
      }
      break
    case FileType.File:
      w.varint(e.dataBlocks)
      if (e.map?.kind === 'inline') writeExtentList(w, e.map.extents)
      else if (e.map) {
        writePieceRef(w, e.map.root)
        w.varint(e.map.extentCount)
      }
      break
    case FileType.Symlink:
      w.blob(e.target!)
      break
    case FileType.CharDev:
    case FileType.BlockDev:
      w.varint(e.rdevMajor).varint(e.rdevMinor)
      break
  }
  if (flags & E_XATTRS) {
    w.varint(e.xattrs!.length)
    for (const [n, v] of e.xattrs!) w.blob(n).blob(v)
  }
}

function badEntry(r: ByteReader, name: Buffer, m: string): never {
  throw new FormatError('BAD_VALUE', `${r.what}: entry ${JSON.stringify(name.toString('latin1').slice(0, 64))} ${m}`)
}

/**
 * Reads one entry at the reader's position, checking every rule of §2.13.1. The name is a
 * view into the reader's buffer, not a copy (as scanDir's names are: keeping an entry keeps
 * its piece's payload, ~40 bytes an entry, alive; a copy per name was a tenth of a format 2
 * no-change backup's time). Callers that keep entries of a buffer they reuse copy them.
 */
export function readEntry(r: ByteReader, root = false): Entry2 {
  const name = r.blob(NAME_MAX_READ)
  const type = r.u8() as FileType
  const e = newEntry2(type, name)
  if (!(type >= FileType.File && type <= FileType.Socket)) badEntry(r, name, `has unknown type ${type}`)
  const flags = (e.flags = r.varint())
  if (flags & ~E_KNOWN) badEntry(r, name, `has unknown flags 0x${flags.toString(16)}`)
  if (type !== FileType.File && flags & (E_INLINE_MAP | E_MAP_REF)) badEntry(r, name, 'has a map but is not a file')
  if ((flags & (E_INLINE_MAP | E_MAP_REF)) === (E_INLINE_MAP | E_MAP_REF)) badEntry(r, name, 'has both an inline map and a map reference')
  if (type !== FileType.Dir && flags & E_EMPTY_DIR) badEntry(r, name, 'is an empty directory but not a directory')
  e.ord = r.varint()
  e.mode = r.varint()
  e.uid = r.varint()
  e.gid = r.varint()
  e.atimeSec = r.svarint(); e.atimeNsec = r.varint()
  e.mtimeSec = r.svarint(); e.mtimeNsec = r.varint()
  e.ctimeSec = r.svarint(); e.ctimeNsec = r.varint()
  e.size = r.varint()
  e.srcDev = r.varint(); e.srcInoHi = r.varint(); e.srcInoLo = r.varint()
  e.nlink = r.varint()
  switch (type) {
    case FileType.Dir:
      if (!(flags & E_EMPTY_DIR)) e.dir = { child: readPieceRef(r), entries: r.varint() }
      break
    case FileType.File:
      e.dataBlocks = r.varint()
      if (flags & E_INLINE_MAP) {
        const start = r.pos
        const extents = readExtentList(r, { limit: Math.ceil(e.size / BLOCK_BYTES) }, INLINE_MAX_EXTENTS)
        if (r.pos - start > INLINE_MAX_BYTES || extents.length === 0) badEntry(r, name, 'has an inline map over the inline limits')
        e.map = { kind: 'inline', extents }
      } else if (flags & E_MAP_REF) {
        e.map = { kind: 'ref', root: readPieceRef(r), extentCount: r.varint() }
      }
      break
    case FileType.Symlink:
      e.target = Buffer.from(r.blob(SYMLINK_TARGET_MAX))
      break
    case FileType.CharDev:
    case FileType.BlockDev:
      e.rdevMajor = r.varint()
      e.rdevMinor = r.varint()
      break
  }
  if (flags & E_XATTRS) {
    const n = r.count(2, 'xattr')
    if (n === 0) badEntry(r, name, 'has the xattrs flag and no xattrs')
    e.xattrs = []
    for (let i = 0; i < n; i++) e.xattrs.push([Buffer.from(r.blob(XATTR_NAME_MAX)), Buffer.from(r.blob(XATTR_VALUE_MAX))])
  }
  const p = entryProblem(e, root, NAME_MAX_READ)
  if (p) badEntry(r, name, p)
  return e
}

/** An entry's bytes (equal entries, equal bytes: what deltas and sharing compare). */
export function entryBytes(e: Entry2, root = false): Buffer {
  const w = new ByteWriter(128)
  writeEntry(w, e, root)
  return Buffer.from(w.finish())
}

/** The manifest's `rootEntry`: the encoded root entry (empty name). */
export function encodeRootEntry(e: Entry2): Buffer {
  return entryBytes(e, true)
}

export function decodeRootEntry(b: Buffer, what: string): Entry2 {
  const r = new StrictReader(b, what)
  const e = readEntry(r, true)
  expectEnd(r)
  return e
}

function checkSorted(entries: readonly { name: Buffer }[], what: string, asFormat: boolean): void {
  for (let i = 1; i < entries.length; i++) {
    if (Buffer.compare(entries[i - 1]!.name, entries[i]!.name) >= 0) {
      const m = `names are not strictly increasing at entry ${i}`
      if (asFormat) throw new FormatError('BAD_VALUE', `${what}: ${m}`)
      throw new RangeError(m)
    }
  }
}

// ---- DIR -----------------------------------------------------------------------------------

/** A DIR piece payload: entries sorted strictly by name (≥ 1). */
export function encodeDir(entries: readonly Entry2[]): Buffer {
  if (entries.length === 0) throw new RangeError('a DIR piece has at least one entry (an empty directory has none)')
  checkSorted(entries, 'DIR', false)
  const w = pieceWriter(PieceKind.Dir, 64 + entries.length * 64)
  w.varint(entries.length)
  for (const e of entries) writeEntry(w, e)
  return finishPiece(w)
}

export function decodeDir(payload: Buffer, what: string): Entry2[] {
  const r = pieceReader(payload, PieceKind.Dir, what)
  const n = r.count(MIN_ENTRY_BYTES, 'entry')
  if (n === 0) throw new FormatError('BAD_VALUE', `${what}: DIR piece with no entries`)
  if (n > PAGE_MAX_ENTRIES) throw new FormatError('BAD_VALUE', `${what}: DIR piece with ${n} entries (at most ${PAGE_MAX_ENTRIES})`)
  const out: Entry2[] = new Array(n)
  for (let i = 0; i < n; i++) out[i] = readEntry(r)
  expectEnd(r)
  checkSorted(out, what, true)
  return out
}

/** Index of the entry named `name` (binary search over sorted names), or -1. */
export function findEntry(entries: readonly Entry2[], name: Buffer): number {
  let lo = 0
  let hi = entries.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const c = Buffer.compare(entries[mid]!.name, name)
    if (c === 0) return mid
    if (c < 0) lo = mid + 1
    else hi = mid - 1
  }
  return -1
}

// ---- DIRDELTA ------------------------------------------------------------------------------

export type DirOp = { op: 'put'; entry: Entry2 } | { op: 'delete'; name: Buffer }
export interface DirDelta {
  /** A DIR piece (R3). */
  base: PieceRef
  resultEntries: number
  /** Sorted strictly by name. */
  ops: DirOp[]
}
const opName = (o: DirOp): Buffer => (o.op === 'put' ? o.entry.name : o.name)

export function encodeDirDelta(d: DirDelta): Buffer {
  if (d.ops.length === 0) throw new RangeError('a DIRDELTA has at least one op (an unchanged directory reuses its piece)')
  if (d.resultEntries < 1) throw new RangeError('a DIRDELTA results in at least one entry (else the directory is empty)')
  checkSorted(d.ops.map((o) => ({ name: opName(o) })), 'DIRDELTA', false)
  const w = pieceWriter(PieceKind.DirDelta, 128 + d.ops.length * 64)
  writePieceRef(w, d.base)
  w.varint(d.resultEntries).varint(d.ops.length)
  for (const o of d.ops) {
    if (o.op === 'put') {
      w.u8(1)
      writeEntry(w, o.entry)
    } else {
      const p = nameProblem(o.name, NAME_MAX_WRITE)
      if (p) throw new RangeError(`DIRDELTA delete of ${p}`)
      w.u8(2).blob(o.name)
    }
  }
  return finishPiece(w)
}

export function decodeDirDelta(payload: Buffer, what: string): DirDelta {
  const r = pieceReader(payload, PieceKind.DirDelta, what)
  const base = readPieceRef(r)
  const resultEntries = r.varint()
  if (resultEntries < 1) throw new FormatError('BAD_VALUE', `${what}: DIRDELTA results in no entries`)
  const n = r.count(2, 'op')
  if (n === 0) throw new FormatError('BAD_VALUE', `${what}: DIRDELTA with no ops`)
  const ops: DirOp[] = new Array(n)
  for (let i = 0; i < n; i++) {
    const op = r.u8()
    if (op === 1) ops[i] = { op: 'put', entry: readEntry(r) }
    else if (op === 2) {
      const name = Buffer.from(r.blob(NAME_MAX_READ))
      const p = nameProblem(name, NAME_MAX_READ)
      if (p) throw new FormatError('BAD_VALUE', `${what}: DIRDELTA deletes ${p}`)
      ops[i] = { op: 'delete', name }
    } else throw new FormatError('BAD_VALUE', `${what}: DIRDELTA op ${i} has unknown code ${op}`)
  }
  expectEnd(r)
  checkSorted(ops.map((o) => ({ name: opName(o) })), what, true)
  return { base, resultEntries, ops }
}

/**
 * The directory a DIRDELTA stands for: `base` (the decoded entries of its base, a DIR piece:
 * the caller has checked the base's kind — R3) with the ops applied. Checks that every delete
 * names a base entry and that the result has `resultEntries` entries.
 */
export function applyDirDelta(base: readonly Entry2[], delta: DirDelta, what: string): Entry2[] {
  const out: Entry2[] = []
  let i = 0
  for (const o of delta.ops) {
    const name = opName(o)
    while (i < base.length && Buffer.compare(base[i]!.name, name) < 0) out.push(base[i++]!)
    const hit = i < base.length && base[i]!.name.equals(name)
    if (o.op === 'delete') {
      if (!hit) throw new FormatError('BAD_VALUE', `${what}: DIRDELTA deletes ${JSON.stringify(name.toString('latin1'))}, which its base does not have`)
      i++
    } else {
      if (hit) i++
      out.push(o.entry)
    }
  }
  while (i < base.length) out.push(base[i++]!)
  if (out.length !== delta.resultEntries) throw new FormatError('BAD_VALUE', `${what}: DIRDELTA gives ${out.length} entries, it says ${delta.resultEntries}`)
  return out
}

/**
 * The ops that turn `base` into `next` (both sorted): puts for new and changed entries (by
 * their bytes), deletes for gone ones. Empty when they are equal.
 */
export function diffDir(base: readonly Entry2[], next: readonly Entry2[]): DirOp[] {
  const ops: DirOp[] = []
  let i = 0
  let j = 0
  while (i < base.length || j < next.length) {
    const c = i >= base.length ? 1 : j >= next.length ? -1 : Buffer.compare(base[i]!.name, next[j]!.name)
    if (c < 0) ops.push({ op: 'delete', name: base[i++]!.name })
    else if (c > 0) ops.push({ op: 'put', entry: next[j++]! })
    else {
      if (!entryBytes(base[i]!).equals(entryBytes(next[j]!))) ops.push({ op: 'put', entry: next[j]! })
      i++
      j++
    }
  }
  return ops
}

/**
 * The writer rule of §2.13.3 step 2: a delta over a base DIR of `baseEntries` entries and
 * `baseRawBytes` payload bytes is written iff the base has ≥ 64 entries and the delta's
 * payload is ≤ ¼ of the base's.
 */
export function deltaWorthIt(baseEntries: number, baseRawBytes: number, deltaRawBytes: number): boolean {
  return baseEntries >= DELTA_MIN_BASE_ENTRIES && deltaRawBytes * 4 <= baseRawBytes
}

// ---- DIRINDEX ------------------------------------------------------------------------------

export interface IndexChild {
  /** Empty for the first child; the first entry's name for the others. */
  firstName: Buffer
  ref: PieceRef
  entries: number
}
export interface DirIndex {
  /** 0: children are DIR/DIRDELTA pages; L ≥ 1: DIRINDEX of level L−1. */
  level: number
  totalEntries: number
  children: IndexChild[]
}

function indexProblem(d: DirIndex): string | null {
  if (!(d.level >= 0 && d.level <= INDEX_MAX_LEVEL)) return `has level ${d.level}`
  if (d.children.length < 1 || d.children.length > INDEX_MAX_CHILDREN) return `has ${d.children.length} children`
  let sum = 0
  for (let i = 0; i < d.children.length; i++) {
    const c = d.children[i]!
    if (c.entries < 1) return `child ${i} has no entries`
    if (i === 0 ? c.firstName.length !== 0 : !!nameProblem(c.firstName, NAME_MAX_READ)) return `child ${i} has an invalid first name`
    if (i > 0 && Buffer.compare(d.children[i - 1]!.firstName, c.firstName) >= 0) return `first names are not strictly increasing at child ${i}`
    sum += c.entries
  }
  if (sum !== d.totalEntries) return `says ${d.totalEntries} entries, its children hold ${sum}`
  return null
}

export function encodeDirIndex(d: DirIndex): Buffer {
  const p = indexProblem(d)
  if (p) throw new RangeError(`DIRINDEX ${p}`)
  const w = pieceWriter(PieceKind.DirIndex, 64 + d.children.length * 64)
  w.varint(d.level).varint(d.totalEntries).varint(d.children.length)
  for (const c of d.children) {
    w.blob(c.firstName)
    writePieceRef(w, c.ref)
    w.varint(c.entries)
  }
  return finishPiece(w)
}

export function decodeDirIndex(payload: Buffer, what: string): DirIndex {
  const r = pieceReader(payload, PieceKind.DirIndex, what)
  const level = r.varint()
  const totalEntries = r.varint()
  const n = r.count(MIN_INDEX_CHILD_BYTES, 'child')
  const children: IndexChild[] = new Array(n)
  for (let i = 0; i < n; i++) children[i] = { firstName: Buffer.from(r.blob(NAME_MAX_READ)), ref: readPieceRef(r), entries: r.varint() }
  expectEnd(r)
  const d = { level, totalEntries, children }
  const p = indexProblem(d)
  if (p) throw new FormatError('BAD_VALUE', `${what}: DIRINDEX ${p}`)
  return d
}

/** The child of a DIRINDEX that holds `name`: the last whose firstName ≤ name. */
export function findIndexChild(children: readonly IndexChild[], name: Buffer): number {
  let lo = 0
  let hi = children.length - 1
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1
    if (Buffer.compare(children[mid]!.firstName, name) <= 0) lo = mid
    else hi = mid - 1
  }
  return lo
}

/**
 * Checks a page read through a DIRINDEX child: `entries` entries, names ≥ its firstName and <
 * the next child's (`nextFirstName`, null for the last child).
 */
export function checkPage(page: readonly Entry2[], child: IndexChild, nextFirstName: Buffer | null, what: string): void {
  const bad = (m: string): never => {
    throw new FormatError('BAD_VALUE', `${what}: page ${m}`)
  }
  if (page.length !== child.entries) bad(`holds ${page.length} entries, its index says ${child.entries}`)
  if (Buffer.compare(page[0]!.name, child.firstName) < 0) bad('starts below its first name')
  if (child.firstName.length > 0 && !page[0]!.name.equals(child.firstName)) bad('does not start with its first name')
  if (nextFirstName && Buffer.compare(page[page.length - 1]!.name, nextFirstName) >= 0) bad("reaches into the next page's names")
}

// ---- paging (deterministic, §2.13.5) -------------------------------------------------------

/** Whether a directory fits one DIR piece (else it is paged under a DIRINDEX). */
export function fitsOneDir(entries: readonly Entry2[]): boolean {
  if (entries.length > DIR_MAX_ENTRIES) return false
  let bytes = 0
  for (const e of entries) if ((bytes += entryBytes(e).length) > DIR_MAX_BYTES) return false
  return true
}

/**
 * Cuts a big directory's sorted entries into pages: after entry e when the page holds ≥ 256
 * entries and XXH64(seed, name) & 2047 == 0, or at 8,192 entries, or before an entry that
 * would take the page's encoded entries over 256 KiB.
 */
export function cutDirPages(entries: readonly Entry2[], xxh64: Xxh64Fn): Entry2[][] {
  const pages: Entry2[][] = []
  let page: Entry2[] = []
  let bytes = 0
  for (const e of entries) {
    const size = entryBytes(e).length
    if (page.length > 0 && bytes + size > DIR_MAX_BYTES) {
      pages.push(page)
      page = []
      bytes = 0
    }
    page.push(e)
    bytes += size
    if ((page.length >= PAGE_MIN_ENTRIES && (xxh64(e.name) & PAGE_CUT_MASK) === 0n) || page.length >= PAGE_MAX_ENTRIES) {
      pages.push(page)
      page = []
      bytes = 0
    }
  }
  if (page.length) pages.push(page)
  return pages
}

/**
 * Groups index children into nodes of the next level: a node ends after child c when it holds
 * ≥ 64 children and XXH64(seed, firstName_c) & 255 == 0, or at 4,096 children. Called only
 * when there are more than 4,096 children; repeated until one node remains.
 */
export function groupIndexChildren<T extends { firstName: Buffer }>(children: readonly T[], xxh64: Xxh64Fn): T[][] {
  const groups: T[][] = []
  let g: T[] = []
  for (const c of children) {
    g.push(c)
    if ((g.length >= INDEX_MIN_CHILDREN && (xxh64(c.firstName) & INDEX_CUT_MASK) === 0n) || g.length >= INDEX_MAX_CHILDREN) {
      groups.push(g)
      g = []
    }
  }
  if (g.length) groups.push(g)
  return groups
}

// ---- reading a directory -------------------------------------------------------------------

/**
 * The entries of a DIR or DIRDELTA piece (a page, or a whole small directory). A delta's base
 * is fetched with `loadBase` (raw payload, id already checked) and must be a DIR: a delta over
 * a delta (depth > 1, R3) or over an index is refused.
 */
export function readDirPiece(payload: Buffer, loadBase: (ref: PieceRef) => Buffer, what: string): Entry2[] {
  if (payload[0] === PieceKind.DirDelta) {
    const delta = decodeDirDelta(payload, what)
    const base = loadBase(delta.base)
    if (base[0] !== PieceKind.Dir) throw new FormatError('BAD_VALUE', `${what}: DIRDELTA's base is not a DIR piece (deltas have depth 1)`)
    return applyDirDelta(decodeDir(base, `${what} (base)`), delta, what)
  }
  return decodeDir(payload, what)
}
