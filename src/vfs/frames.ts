import fs from 'node:fs'
import { LRUCache } from 'lru-cache'
import { FrameDecompressor } from '../codec/zstd.js'
import { BLOCK_BYTES } from '../codec/hash.js'
import {
  decodeSeekTable, decodeUnitHeader, decodeUnitTrailer, UNIT_HEADER_BYTES, UNIT_TRAILER_BYTES, type SeekTable,
} from '../format/unit.js'
import { FormatError } from '../format/errors.js'
import { keys, type Repository } from '../repo/repository.js'

/** Counters a mount exposes for measuring which caching pays. */
export interface FrameStats {
  hits: number
  misses: number
  sharedLoads: number
  readaheads: number
  decompressedBytes: number
}

interface UnitInfo {
  fh: fs.promises.FileHandle
  table: SeekTable
}

/**
 * Asynchronous access to decompressed frames for the mount: repository files are read with
 * non-blocking I/O (never a sync call in the serving process), decompressed frames sit in
 * a byte-bounded LRU, and concurrent misses of one frame share a single load.
 */
export class FrameCache {
  private readonly frames: LRUCache<string, Buffer>
  private readonly loading = new Map<string, Promise<Buffer>>()
  private readonly units = new Map<string, Promise<UnitInfo>>()
  private readonly dec = new FrameDecompressor()
  readonly stats: FrameStats = { hits: 0, misses: 0, sharedLoads: 0, readaheads: 0, decompressedBytes: 0 }

  constructor(
    private readonly repo: Repository,
    cacheBytes: number,
  ) {
    this.frames = new LRUCache<string, Buffer>({ maxSize: Math.max(cacheBytes, 1 << 20), sizeCalculation: (b) => b.length || 1 })
  }

  private unit(gen: number, unit: number): Promise<UnitInfo> {
    const k = `${gen}:${unit}`
    let p = this.units.get(k)
    if (!p) {
      p = this.openUnit(gen, unit)
      this.units.set(k, p)
      p.catch(() => this.units.delete(k))
    }
    return p
  }

  private async openUnit(gen: number, unit: number): Promise<UnitInfo> {
    const m = this.repo.manifest(gen)
    const ref = m.units[unit]
    const path = this.repo.store.path(keys.unit(gen, unit))
    if (!ref) throw new FormatError('BAD_VALUE', `gen${gen} has no unit ${unit}`)
    const fh = await fs.promises.open(path, 'r')
    try {
      const size = (await fh.stat()).size
      const head = await readAt(fh, 0, UNIT_HEADER_BYTES, path)
      const header = decodeUnitHeader(head, path)
      if (header.genId !== gen || header.unitIndex !== unit || header.rawBlocks !== ref.rawBlocks || header.frameBlocks !== m.frameBlocks) {
        throw new FormatError('BAD_VALUE', `${path}: unit header does not match its manifest`)
      }
      if (size < UNIT_HEADER_BYTES + UNIT_TRAILER_BYTES) throw new FormatError('TRUNCATED', `${path}: unit file truncated`)
      const t = decodeUnitTrailer(await readAt(fh, size - UNIT_TRAILER_BYTES, UNIT_TRAILER_BYTES, path), size, header, path)
      const table = decodeSeekTable(await readAt(fh, t.seekTableOffset, t.tableBytes, path), t.tableCheck, header, t.seekTableOffset, BLOCK_BYTES, path)
      return { fh, table }
    } catch (err) {
      await fh.close()
      throw err
    }
  }

  /** Key and position of stream block `sb` of generation `gen`. */
  locate(gen: number, sb: number): { key: string; unit: number; frame: number; offset: number } {
    const m = this.repo.manifest(gen)
    const unit = Math.floor(sb / m.unitBlocks)
    const inUnit = sb - unit * m.unitBlocks
    const frame = Math.floor(inUnit / m.frameBlocks)
    return { key: `${gen}:${unit}:${frame}`, unit, frame, offset: (inUnit - frame * m.frameBlocks) * BLOCK_BYTES }
  }

  /** The decompressed frame `frame` of unit `unit` of `gen`. */
  get(gen: number, unit: number, frame: number, readahead = false): Promise<Buffer> {
    const key = `${gen}:${unit}:${frame}`
    const hit = this.frames.get(key)
    if (hit) {
      if (!readahead) this.stats.hits++
      return Promise.resolve(hit)
    }
    const pending = this.loading.get(key)
    if (pending) {
      if (!readahead) this.stats.sharedLoads++
      return pending
    }
    if (readahead) this.stats.readaheads++
    else this.stats.misses++
    const p = this.load(gen, unit, frame).finally(() => this.loading.delete(key))
    this.loading.set(key, p)
    return p
  }

  /** Starts loading a frame without waiting for it (sequential readahead); errors are left for the real read. */
  prefetch(gen: number, unit: number, frame: number): void {
    const m = this.repo.manifest(gen)
    if (unit >= m.units.length) return
    const frames = Math.ceil(m.units[unit]!.rawBlocks / m.frameBlocks)
    if (frame >= frames) {
      if (unit + 1 < m.units.length) this.prefetch(gen, unit + 1, frame - frames)
      return
    }
    this.get(gen, unit, frame, true).catch(() => undefined)
  }

  private async load(gen: number, unit: number, frame: number): Promise<Buffer> {
    const u = await this.unit(gen, unit)
    const e = u.table.entries[frame]
    if (!e) throw new FormatError('BAD_VALUE', `gen${gen}: frame ${frame} is past the end of unit ${unit}`)
    const off = u.table.offsets[frame]!
    const comp = await readAt(u.fh, off, e.compBytes, `unit ${gen}:${unit}`)
    const out = Buffer.allocUnsafe(e.rawBytes)
    let n: number
    try {
      n = this.dec.decompressInto(out, comp)
    } catch (err) {
      throw new FormatError('BAD_CHECKSUM', `${this.repo.store.path(keys.unit(gen, unit))}: frame ${frame} is corrupt (${(err as Error).message})`)
    }
    if (n !== e.rawBytes) throw new FormatError('BAD_VALUE', `unit ${gen}:${unit}: frame ${frame} has ${n} bytes, expected ${e.rawBytes}`)
    this.stats.decompressedBytes += n
    this.frames.set(`${gen}:${unit}:${frame}`, out)
    return out
  }

  async close(): Promise<void> {
    for (const p of this.units.values()) {
      try {
        await (await p).fh.close()
      } catch {
        // already failed to open
      }
    }
    this.units.clear()
    this.frames.clear()
  }
}

async function readAt(fh: fs.promises.FileHandle, pos: number, len: number, what: string): Promise<Buffer> {
  const b = Buffer.allocUnsafe(len)
  let got = 0
  while (got < len) {
    const { bytesRead } = await fh.read(b, got, len - got, pos + got)
    if (bytesRead === 0) throw new FormatError('TRUNCATED', `${what}: unexpected end of file at byte ${pos + got}`)
    got += bytesRead
  }
  return b
}
