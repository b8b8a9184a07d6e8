import { LRUCache } from 'lru-cache'
import type { Extent } from '../format/maps.js'
import { FrameDecompressor } from '../codec/zstd.js'
import { BLOCK_BYTES } from '../codec/hash.js'
import { keys, Repository } from './repository.js'
import { firstExtentEndingAfter, ObjectResolver } from './resolve.js'
import { UnitFile } from './unitfile.js'

/**
 * Synchronous reads of object data for the CLI (cat, verify --against): resolved extents,
 * binary search per read, decompressed frames in a byte-bounded LRU. Not for the mount,
 * which must not block its event loop.
 */
export class ObjectReader {
  readonly resolver: ObjectResolver
  private readonly units = new Map<string, UnitFile>()
  private readonly frames: LRUCache<string, Buffer>
  private readonly dec = new FrameDecompressor()
  private readonly hashAlg: Repository['config']['hashAlg']

  constructor(private readonly repo: Repository, cacheBytes = 64 << 20, private readonly fullCheck = false) {
    this.hashAlg = repo.config.hashAlg
    this.resolver = new ObjectResolver(repo)
    this.frames = new LRUCache<string, Buffer>({ maxSize: cacheBytes, sizeCalculation: (b) => b.length || 1 })
  }

  /** An open unit; at most READER_OPEN_UNITS stay open (least recently used closed first). */
  private unit(gen: number, unit: number): UnitFile {
    const k = `${gen}:${unit}`
    let u = this.units.get(k)
    if (u) {
      this.units.delete(k)
    } else {
      const m = this.repo.manifest(gen)
      const ref = m.units[unit]
      if (!ref) throw new Error(`gen${gen} has no unit ${unit}`)
      u = UnitFile.open(this.repo.store.path(keys.unit(gen, unit)), { genId: gen, unitIndex: unit, rawBlocks: ref.rawBlocks, frameBlocks: m.frameBlocks })
      for (const [old, v] of this.units) {
        if (this.units.size < READER_OPEN_UNITS) break
        v.close()
        this.units.delete(old)
      }
    }
    this.units.set(k, u)
    return u
  }

  /** The decompressed frame holding stream block `sb` of `gen`, and the byte offset of that block in it. */
  frameFor(gen: number, sb: number): { data: Buffer; offset: number } {
    const m = this.repo.manifest(gen)
    const unit = Math.floor(sb / m.unitBlocks)
    const inUnit = sb - unit * m.unitBlocks
    const frame = Math.floor(inUnit / m.frameBlocks)
    const key = `${gen}:${unit}:${frame}`
    let data = this.frames.get(key)
    if (!data) {
      const u = this.unit(gen, unit)
      const e = u.table.entries[frame]
      if (!e) throw new Error(`gen${gen}: stream block ${sb} is past the end of unit ${unit}`)
      data = u.readFrame(frame, Buffer.allocUnsafe(e.rawBytes), this.dec, this.fullCheck ? this.hashAlg : null)
      this.frames.set(key, data)
    }
    return { data, offset: (inUnit - frame * m.frameBlocks) * BLOCK_BYTES }
  }

  /** Reads [pos, pos+len) of an object of `sizeBytes` with resolved `extents` into a new buffer (holes read as zeros). */
  read(extents: Extent[], sizeBytes: number, pos: number, len: number): Buffer {
    const end = Math.min(sizeBytes, pos + len)
    if (end <= pos) return Buffer.alloc(0)
    const out = Buffer.alloc(end - pos)
    for (let i = firstExtentEndingAfter(extents, Math.floor(pos / BLOCK_BYTES)); i < extents.length; i++) {
      const x = extents[i]!
      const xs = x.fileBlock * BLOCK_BYTES
      if (xs >= end) break
      let p = Math.max(pos, xs)
      const xe = Math.min(end, (x.fileBlock + x.count) * BLOCK_BYTES)
      while (p < xe) {
        const fb = Math.floor(p / BLOCK_BYTES)
        const fr = this.frameFor(x.gen, x.streamBlock + (fb - x.fileBlock))
        const inBlock = p - fb * BLOCK_BYTES
        const avail = fr.data.length - fr.offset - inBlock
        const n = Math.min(avail, xe - p)
        fr.data.copy(out, p - pos, fr.offset + inBlock, fr.offset + inBlock + n)
        p += n
      }
    }
    return out
  }

  close(): void {
    for (const u of this.units.values()) u.close()
    this.units.clear()
  }
}

/**
 * Unit files an ObjectReader keeps open: `bfs cat` of a large file or volume, or verify
 * --against, would otherwise hold one descriptor per unit of it (a 1 TB image has 50,000).
 */
const READER_OPEN_UNITS = 32
