/**
 * Where the block reader learns each generation's stream geometry and block hashes: the
 * Repository on the main thread (repo/stream-source.ts), a plain object built from a
 * ReaderSpec in worker threads.
 */

/** How generation `gen`'s stream is cut (its manifest's unitBlocks, frameBlocks and per-unit raw blocks). */
export interface GenGeometry {
  unitBlocks: number
  frameBlocks: number
  /** Raw blocks of each unit (every unit but the last holds unitBlocks). */
  unitRawBlocks: ArrayLike<number>
  /** Bytes of each unit file, as the manifest records them (verify compares); optional. */
  unitBytes?: ArrayLike<number>
}

export interface StreamSource {
  /** Throws (the caller reports it) for a generation that does not exist or cannot be read. */
  geometry(gen: number): GenGeometry
  /** The 8-byte block hashes of `gen`'s stream, indexed by stream block (backup comparisons). */
  blockHashes(gen: number): Buffer
}

/** A StreamSource over plain geometry (worker threads: no block hashes). */
export function plainSource(geometry: Record<number, GenGeometry> | Map<number, GenGeometry>): StreamSource & { add(gen: number, g: GenGeometry): void } {
  const m = geometry instanceof Map ? geometry : new Map(Object.entries(geometry).map(([k, v]) => [Number(k), v]))
  return {
    geometry(gen: number): GenGeometry {
      const g = m.get(gen)
      if (!g) throw new Error(`no geometry for gen${gen} in this reader's spec`)
      return g
    },
    blockHashes(gen: number): Buffer {
      throw new Error(`block hashes of gen${gen} are not available in a worker's reader`)
    },
    add(gen: number, g: GenGeometry): void {
      m.set(gen, g)
    },
  }
}
