import type { GenGeometry, StreamSource } from '../blocks/source.js'
import { BlockReader, type ReaderOptions } from '../blocks/reader.js'
import type { Claimer } from '../blocks/extents.js'
import type { Store } from '../store/store.js'
import { UNENCRYPTED_SEED } from '../codec/hash.js'
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

/** What the readers of a repository read through, when the composition root says so (repo/test-hooks.ts). */
export interface ReadLayers {
  /** Wraps the store unit blobs are read from (e.g. a FaultyStore over it); applied over the data store in use. */
  wrap?: (data: Store) => Store
  /** Layers that serve ranges of objects themselves (deferred extents). */
  claimers?: Claimer[]
}

interface RepoLayers extends ReadLayers {
  /** The repository's data store, when it is not its disk store (a TieredStore: units on tape). */
  base?: Store
  /** wrap(base ?? repo.store), made once. */
  made?: Store
}

const layers = new WeakMap<Repository, RepoLayers>()

/** Makes every reader of `repo` made from now on read through `l` (test hooks). */
export function setReadLayers(repo: Repository, l: ReadLayers): void {
  const cur = layers.get(repo)
  layers.set(repo, { ...l, base: cur?.base })
}

/**
 * Makes every reader of `repo` made from now on read units from `data` (the repository's
 * data store across its tiers: repo/stores.ts openDataStore), under any test layer; null
 * goes back to the disk store.
 */
export function useDataStore(repo: Repository, data: Store | null): void {
  const cur = layers.get(repo) ?? {}
  layers.set(repo, { wrap: cur.wrap, claimers: cur.claimers, base: data ?? undefined })
}

/**
 * The store a repository's stored data (units) is read from.
 * TODO(issue 12, with Repository over { meta, data }): repo.data.
 */
export function dataStoreOf(repo: Repository): Store {
  const l = layers.get(repo)
  if (!l) return repo.store
  if (!l.made) l.made = l.wrap ? l.wrap(l.base ?? repo.store) : (l.base ?? repo.store)
  return l.made
}

/** A BlockReader over a repository's data store, with the claimers installed for it. */
export function repoBlockReader(repo: Repository, opts: Omit<ReaderOptions, 'store' | 'source' | 'hashAlg' | 'blockSeed'> = {}): BlockReader {
  const claimers = layers.get(repo)?.claimers
  return new BlockReader({ ...(claimers ? { claimers } : {}), ...opts, store: dataStoreOf(repo), source: repoStreamSource(repo), hashAlg: repo.config.hashAlg, blockSeed: UNENCRYPTED_SEED /* format 1 is never encrypted */ })
}
