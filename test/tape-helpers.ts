/**
 * Test helpers for the tape tier: read every file of a generation through the repository's
 * data store (the tiered store when units are on tape) with the one block reader, as cat and
 * restore will once issue 12's switch-over routes them through it, and compare with a tree.
 */
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { BlockReader } from '../src/blocks/reader.js'
import { EntryType } from '../src/format/catalog.js'
import { Repository } from '../src/repo/repository.js'
import { ObjectResolver } from '../src/repo/resolve.js'
import { repoStreamSource } from '../src/repo/stream-source.js'
import { dataEntry, pathOf, subtree } from '../src/repo/tree.js'
import type { Store } from '../src/store/store.js'
import { keys } from '../src/format/layout.js'

/** sha256 of every regular file of gen `id` read through `store`, by path (latin1 of the raw bytes). */
export async function readGeneration(repoDir: string, id: number, store: Store): Promise<Map<string, string>> {
  const repo = Repository.open(repoDir)
  const reader = new BlockReader({ store, source: repoStreamSource(repo), hashAlg: repo.config.hashAlg, cacheBytes: 4 << 20 })
  const resolver = new ObjectResolver(repo)
  const entries = repo.catalog(id)
  const out = new Map<string, string>()
  try {
    for (const i of subtree(entries, 0)) {
      const e = entries[i]!
      if (e.type !== EntryType.File) continue
      const d = dataEntry(entries, i)
      const h = createHash('sha256')
      if (d.objGen) {
        const f = reader.file(resolver.resolve(d.objGen, d.objIndex), d.size)
        const buf = Buffer.alloc(1 << 20)
        for (let pos = 0; pos < d.size; ) {
          const n = await reader.read(f, buf, Math.min(buf.length, d.size - pos), pos)
          if (n <= 0) throw new Error(`short read at ${pos} of ${pathOf(entries, i).toString()}`)
          h.update(buf.subarray(0, n))
          pos += n
        }
      }
      out.set(pathOf(entries, i).toString('latin1'), h.digest('hex'))
    }
  } finally {
    await reader.close()
  }
  return out
}

/** sha256 of every regular file under `dir`, by relative path. */
export function hashTree(dir: string): Map<string, string> {
  const out = new Map<string, string>()
  const walk = (d: string, rel: string): void => {
    for (const x of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, x.name)
      const r = rel ? `${rel}/${x.name}` : x.name
      if (x.isDirectory()) walk(p, r)
      else if (x.isFile()) out.set(Buffer.from(r).toString('latin1'), createHash('sha256').update(fs.readFileSync(p)).digest('hex'))
    }
  }
  walk(dir, '')
  return out
}

/** Every unit key of gen `id`'s manifest. */
export function unitKeys(repoDir: string, id: number): string[] {
  const repo = Repository.open(repoDir)
  return repo.manifest(id).units.map((u) => keys.unit(id, u.index))
}
