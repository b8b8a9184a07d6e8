/**
 * A test driver for the pieces layer: walks a real directory tree depth first and writes it
 * as a format 2 tree the way the streaming backup will (each directory's listing merged with
 * the previous generation's, read lazily; unchanged files copy their entry's ord and map;
 * directories written in post-order). File data is not stored: a changed or new file gets a
 * map of fresh stream blocks (one extent, or one extent per other block for names containing
 * "frag", so maps big enough for MAPLEAF/MAPINNER trees exist), which is what the tree and map
 * pieces must carry. Not a backup: no units, no manifest.
 */
import fs from 'node:fs'
import type { Extent } from '../src/format/v2/common.js'
import { type Entry2, FileType, newEntry2 } from '../src/format/v2/dir.js'
import { getXattrs } from '../src/native/index.js'
import type { MapWriter } from '../src/pieces/maps.js'
import { type DirRef, type TreeReader, PrevCursor } from '../src/pieces/tree-reader.js'
import type { TreeWriter } from '../src/pieces/tree-writer.js'

export interface Gen {
  root: Entry2
  nextOrd: number
}

export interface WalkStats {
  files: number
  dirs: number
  /** Files whose map was (re)built. */
  changedFiles: number
  /** Directories whose listing differs from the previous generation's. */
  changedDirs: number
}

const cat = (a: Buffer, b: Buffer): Buffer => Buffer.concat([a, Buffer.from('/'), b])

/** The synthetic map of a changed file: fresh blocks of stream `run` from `*next`. */
export function syntheticExtents(name: Buffer, size: number, run: number, next: { block: number }): Extent[] {
  const blocks = Math.ceil(size / 4096)
  if (blocks === 0) return []
  const out: Extent[] = []
  if (name.includes('frag')) {
    for (let b = 0; b < blocks; b += 2) out.push({ fileBlock: b, count: 1, stream: run, streamBlock: next.block++ })
  } else {
    out.push({ fileBlock: 0, count: blocks, stream: run, streamBlock: next.block })
    next.block += blocks
  }
  return out
}

function typeOf(st: fs.BigIntStats): FileType {
  if (st.isFile()) return FileType.File
  if (st.isDirectory()) return FileType.Dir
  if (st.isSymbolicLink()) return FileType.Symlink
  if (st.isCharacterDevice()) return FileType.CharDev
  if (st.isBlockDevice()) return FileType.BlockDev
  if (st.isFIFO()) return FileType.Fifo
  return FileType.Socket
}

function fill(e: Entry2, st: fs.BigIntStats): void {
  e.mode = Number(st.mode & 0o7777n)
  e.uid = Number(st.uid)
  e.gid = Number(st.gid)
  const t = (ns: bigint): [number, number] => {
    const s = ns / 1_000_000_000n
    let n = ns % 1_000_000_000n
    let sec = s
    if (n < 0n) {
      n += 1_000_000_000n
      sec -= 1n
    }
    return [Number(sec), Number(n)]
  }
  ;[e.atimeSec, e.atimeNsec] = t(st.atimeNs)
  ;[e.mtimeSec, e.mtimeNsec] = t(st.mtimeNs)
  ;[e.ctimeSec, e.ctimeNsec] = t(st.ctimeNs)
  e.srcDev = Number(st.dev)
  e.srcInoHi = Number(st.ino >> 32n)
  e.srcInoLo = Number(st.ino & 0xffffffffn)
}

/** Whether a file is unchanged since `prev` (the incremental test: size, mtime, ctime, inode). */
function unchanged(prev: Entry2 | null, e: Entry2): boolean {
  return !!prev && prev.type === e.type && prev.size === e.size && prev.mtimeSec === e.mtimeSec && prev.mtimeNsec === e.mtimeNsec &&
    prev.ctimeSec === e.ctimeSec && prev.ctimeNsec === e.ctimeNsec && prev.srcInoLo === e.srcInoLo && prev.srcInoHi === e.srcInoHi
}

export interface WalkDeps {
  tree: TreeWriter
  maps: MapWriter
  reader: TreeReader
  run: number
  /** Where each changed file's synthetic extents go (path → extents), for checking. */
  extents?: Map<string, Extent[]>
}

/**
 * Writes the tree at `dir` as run `run` against `prev` (null: a full walk). Returns the new
 * generation's root entry (the manifest's rootEntry) and nextOrd.
 */
export async function walkTree(dir: string, deps: WalkDeps, prev: Gen | null, stats: WalkStats = { files: 0, dirs: 0, changedFiles: 0, changedDirs: 0 }): Promise<Gen & { stats: WalkStats }> {
  let nextOrd = prev?.nextOrd ?? 1
  const next = { block: 0 }
  const walkDir = async (p: Buffer, prevDir: DirRef | null): Promise<{ ref: DirRef | null; subdirs: number }> => {
    stats.dirs++
    const names = (fs.readdirSync(p, { encoding: 'buffer' }) as Buffer[]).sort(Buffer.compare)
    const w = deps.tree.openDir(prevDir)
    // merge of two sorted lists: the previous generation's entries read lazily, page by page
    const prevCursor = new PrevCursor(deps.reader, prevDir)
    let subdirs = 0
    let changed = false
    for (const name of names) {
      const old = await prevCursor.seek(name)
      if (!old) changed = true
      const full = cat(p, name)
      const st = fs.lstatSync(full, { bigint: true })
      const e = newEntry2(typeOf(st), Buffer.from(name))
      fill(e, st)
      e.ord = old && old.type === e.type ? old.ord : nextOrd++
      const xa = getXattrs(full).sort((a, b) => Buffer.compare(a[0], b[0]))
      e.xattrs = xa.length ? xa : null
      switch (e.type) {
        case FileType.Dir: {
          subdirs++
          const sub = await walkDir(full, old?.type === FileType.Dir ? old.dir : null)
          e.dir = sub.ref
          e.nlink = 2 + sub.subdirs
          break
        }
        case FileType.File: {
          stats.files++
          e.size = Number(st.size)
          e.nlink = Number(st.nlink)
          if (e.nlink > 1) e.flags |= 0 // links table: not this layer's
          if (old && unchanged(old, e)) {
            e.map = old.map
            e.dataBlocks = old.dataBlocks
          } else {
            stats.changedFiles++
            const ext = syntheticExtents(name, e.size, deps.run, next)
            const m = await deps.maps.write(ext, e.size, old?.type === FileType.File ? old : null)
            e.map = m.map
            e.dataBlocks = m.dataBlocks
            deps.extents?.set(full.toString('latin1'), ext)
          }
          break
        }
        case FileType.Symlink:
          e.size = Number(st.size)
          e.target = fs.readlinkSync(full, { encoding: 'buffer' }) as Buffer
          e.nlink = Number(st.nlink)
          break
        case FileType.CharDev:
        case FileType.BlockDev:
          e.rdevMajor = Number((st.rdev >> 8n) & 0xfffn)
          e.rdevMinor = Number((st.rdev & 0xffn) | ((st.rdev >> 12n) & 0xfff00n))
          e.nlink = Number(st.nlink)
          break
        default:
          e.nlink = Number(st.nlink)
      }
      await w.add(e)
    }
    if ((await prevCursor.finish()) > 0) changed = true // deleted entries
    if (changed) stats.changedDirs++
    return { ref: await w.close(), subdirs }
  }
  const rootSt = fs.lstatSync(dir, { bigint: true })
  const root = newEntry2(FileType.Dir, Buffer.alloc(0))
  fill(root, rootSt)
  const r = await walkDir(Buffer.from(dir), prev?.root.dir ?? null)
  root.dir = r.ref
  root.nlink = 2 + r.subdirs
  return { root, nextOrd, stats }
}
