import type { HashAlg } from '../codec/hash.js'
import { openStore } from '../store/open.js'
import type { StoreDescription } from '../store/store.js'
import { BlockReader } from './reader.js'
import type { UnitSealing } from './units.js'
import { plainSource, type GenGeometry } from './source.js'

/** A generation's geometry in a form that crosses threads (structured clone). */
export interface SpecGeometry {
  unitBlocks: number
  frameBlocks: number
  unitRawBlocks: number[]
  unitBytes?: number[]
}

/**
 * What a worker thread needs to build its own BlockReader (workers cannot share JS
 * objects): the store's description, the hash algorithm, the geometry of the generations
 * its jobs read, and the reader's budgets. `id` names the spec, so a worker builds one
 * reader per spec and reuses it for every job that carries the id.
 */
export interface ReaderSpec {
  id: string
  store: StoreDescription
  hashAlg: HashAlg
  /** The repository's XXH64 seed (format.md §2.22). */
  blockSeed: bigint
  geometry: Record<number, SpecGeometry>
  /** Decompressed-frame cache of the worker's reader, bytes. */
  cacheBytes: number
  /** This worker's share of the process's open-unit budget. */
  maxOpenUnits: number
  /** An encrypted repository's unit keys (units.ts UnitSealing). */
  sealing?: UnitSealing | null
}

/** The geometry of a generation as a spec carries it. */
export function specGeometry(g: GenGeometry): SpecGeometry {
  return {
    unitBlocks: g.unitBlocks,
    frameBlocks: g.frameBlocks,
    unitRawBlocks: Array.from(g.unitRawBlocks),
    ...(g.unitBytes ? { unitBytes: Array.from(g.unitBytes) } : {}),
  }
}

const readers = new Map<string, { reader: BlockReader; add: (gen: number, g: GenGeometry) => void; gens: Set<number> }>()

/**
 * This thread's reader for `spec` (made on first use, cached by spec.id). A later spec with
 * the same id may carry more generations: they are added to the cached reader.
 */
export function readerFromSpec(spec: ReaderSpec): BlockReader {
  let r = readers.get(spec.id)
  if (!r) {
    const src = plainSource({})
    r = {
      reader: new BlockReader({ store: openStore(spec.store), source: src, hashAlg: spec.hashAlg, blockSeed: spec.blockSeed, cacheBytes: spec.cacheBytes, maxOpenUnits: spec.maxOpenUnits, sealing: spec.sealing ?? null }),
      add: src.add,
      gens: new Set(),
    }
    readers.set(spec.id, r)
  }
  for (const [k, g] of Object.entries(spec.geometry)) {
    const gen = Number(k)
    if (!r.gens.has(gen)) {
      r.add(gen, g)
      r.gens.add(gen)
    }
  }
  return r.reader
}

/** This thread's reader for the spec named `id` (readerFromSpec made it); throws if there is none. */
export function specReader(id: string): BlockReader {
  const r = readers.get(id)
  if (!r) throw new Error(`no reader for spec ${id} in this thread`)
  return r.reader
}

/** Closes and forgets this thread's reader for the spec named `id` (its units' descriptors are the process's: a worker that exits does not close them). */
export async function closeSpecReader(id: string): Promise<void> {
  const r = readers.get(id)
  if (!r) return
  readers.delete(id)
  await r.reader.close()
}

/** Closes and forgets this thread's spec readers (a worker, before it exits). */
export async function closeSpecReaders(): Promise<void> {
  const all = [...readers.values()]
  readers.clear()
  for (const r of all) await r.reader.close()
}
