import { DiskStore } from './disk.js'
import { FaultyStore } from './faulty.js'
import { MemStore } from './mem.js'
import { cacheDirOf, ObjectCache, S3CachedStore } from './objcache.js'
import { S3Store } from './s3.js'
import { isS3Url } from './s3-url.js'
import { TieredStore } from './tiered.js'
import type { Store, StoreDescription } from './store.js'

/**
 * Re-creates a store from its description (Store.describe()), e.g. in a worker thread: the
 * one place a tier is named. A memory store comes back as a read-only snapshot of the
 * same shared buffers; a fault-injecting one with the same rules and seed (its PRNG mixed
 * with the thread id, its counters its own).
 */
export function openStore(d: StoreDescription): Store {
  switch (d.kind) {
    case 'disk':
      return DiskStore.open(d.root)
    case 'mem':
      return new MemStore({ blobs: d.blobs, readOnly: true })
    case 'tiered':
      return new TieredStore({ hot: openStore(d.hot), cacheDir: d.cacheDir })
    case 's3':
      return new S3Store(d.location, d.options)
    case 's3cached':
      return new S3CachedStore(new S3Store(d.s3.location, d.s3.options), d.cacheDir, () => ObjectCache.open(d.cacheDir, { owner: false }))
    case 'faulty':
      return new FaultyStore(openStore(d.inner), { seed: d.seed, rules: d.rules, exposeFd: d.exposeFd })
    default:
      throw new TypeError(`unknown store kind ${JSON.stringify((d as { kind: unknown }).kind)}`)
  }
}

/**
 * The store of a repository location (`--repo`): an S3 store for `s3:http(s)://…` addresses,
 * else a disk store on the directory (ENOENT if it is missing). `create`: make the directory.
 */
export function storeAt(dir: string, o: { create?: boolean } = {}): Store {
  if (isS3Url(dir)) {
    const s3 = S3Store.fromUrl(dir)
    s3.startEarly()
    // the read cache (objcache.ts): $BFS_CACHE_DIR (--cache-dir), else under ~/.cache/bfs; BFS_CACHE_DIR=off: none
    if (process.env.BFS_CACHE_DIR === 'off') return s3
    return new S3CachedStore(s3, cacheDirOf(s3.location))
  }
  return o.create ? DiskStore.create(dir) : DiskStore.open(dir)
}
