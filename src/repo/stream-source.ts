import type { GenGeometry, StreamSource } from '../blocks/source.js'
import { BlockReader, type ReaderOptions } from '../blocks/reader.js'
import type { Repository } from './repository.js'

/**
 * The repository as the block reader's StreamSource: each generation's geometry from its
 * manifest (computed once per generation), block hashes from its hashes file.
 *
 * TODO(issue 12, after issue 11 merges): Repository implements StreamSource itself and this
 * adapter goes.
 */
export function repoStreamSource(repo: Repository): StreamSource {
  const geo = new Map<number, GenGeometry>()
  return {
    geometry(gen: number): GenGeometry {
      let g = geo.get(gen)
      if (!g) {
        const m = repo.manifest(gen)
        g = { unitBlocks: m.unitBlocks, frameBlocks: m.frameBlocks, unitRawBlocks: m.units.map((u) => u.rawBlocks), unitBytes: m.units.map((u) => u.bytes) }
        geo.set(gen, g)
      }
      return g
    },
    blockHashes: (gen: number) => repo.hashes(gen),
  }
}

/** A BlockReader over a repository's store (the Store face of its directory). */
export function repoBlockReader(repo: Repository, opts: Omit<ReaderOptions, 'store' | 'source' | 'hashAlg'> = {}): BlockReader {
  return new BlockReader({ ...opts, store: repo.store.blobs, source: repoStreamSource(repo), hashAlg: repo.config.hashAlg })
}
