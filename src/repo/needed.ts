import { EntryType } from '../format/catalog.js'
import { keys } from '../format/layout.js'
import type { Manifest } from '../format/manifest.js'
import type { Extent } from '../format/maps.js'
import { BLOCK_BYTES } from '../codec/hash.js'
import type { Repository } from './repository.js'
import { ObjectResolver } from './resolve.js'
import { dataEntry, subtree } from './tree.js'

/** A unit some files need: generation, index, its store key. */
export interface NeededUnit {
  gen: number
  unit: number
  key: string
  /** Bytes of those files' data in it (raw, 4 KiB blocks), for estimates. */
  rawBytes: number
}

/**
 * The units the files of `man` under entry `root` (default: all of it) read, in stream
 * order (generation, then unit): every file's resolved block map, through base objects and
 * into older generations, as cat and restore read them. What `bfs recall` brings back and
 * what `bfs migrate --keep-on-disk` keeps.
 */
export function neededUnits(repo: Repository, man: Manifest, root = 0, resolver = new ObjectResolver(repo)): NeededUnit[] {
  const entries = repo.catalog(man.id)
  const out = new Map<string, NeededUnit>()
  const seen = new Set<string>()
  for (const i of subtree(entries, root)) {
    if (entries[i]!.type !== EntryType.File) continue
    const d = dataEntry(entries, i)
    if (!d.objGen) continue
    const ok = `${d.objGen}:${d.objIndex}`
    if (seen.has(ok)) continue // hard links and unchanged files share objects
    seen.add(ok)
    const blocks = Math.ceil(d.size / BLOCK_BYTES)
    for (const x of resolver.resolve(d.objGen, d.objIndex)) {
      if (x.gen === 0 || x.fileBlock >= blocks) continue
      const count = Math.min(x.count, blocks - x.fileBlock)
      const ub = repo.manifest(x.gen).unitBlocks
      for (let s = x.streamBlock; s < x.streamBlock + count; ) {
        const u = Math.floor(s / ub)
        const end = Math.min(x.streamBlock + count, (u + 1) * ub)
        const key = keys.unit(x.gen, u)
        const n = out.get(key)
        if (n) n.rawBytes += (end - s) * BLOCK_BYTES
        else out.set(key, { gen: x.gen, unit: u, key, rawBytes: (end - s) * BLOCK_BYTES })
        s = end
      }
    }
  }
  return [...out.values()].sort((a, b) => a.gen - b.gen || a.unit - b.unit)
}

/** The store keys of the units `extents` (a file's resolved block map) read within the file's `sizeBytes`, in file order. */
export function extentUnits(repo: Repository, extents: readonly Extent[], sizeBytes: number): string[] {
  const blocks = Math.ceil(sizeBytes / BLOCK_BYTES)
  const out = new Set<string>()
  for (const x of extents) {
    if (x.gen === 0 || x.fileBlock >= blocks) continue
    const n = Math.min(x.count, blocks - x.fileBlock)
    const ub = repo.manifest(x.gen).unitBlocks
    for (let u = Math.floor(x.streamBlock / ub); u * ub < x.streamBlock + n; u++) out.add(keys.unit(x.gen, u))
  }
  return [...out]
}
