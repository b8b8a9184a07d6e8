/**
 * The one place a repository's data store is built: its disk store, or — once units have
 * been migrated to a tape tier — a TieredStore over the disk store, the tape catalog and
 * the disk buffer cache (native-notes/tape.md §"Reading a repository with a tape tier").
 *
 * The reading commands and the mount open it through src/cli/datastore.ts openReadStore
 * (native-notes/tape.md §"Reading through the commands and the mount").
 */
import { keys } from '../format/layout.js'
import { BufferCache, CacheBusy, CacheStore, TapeSource, type ColdSource } from '../store/cache.js'
import type { Store } from '../store/store.js'
import { TapeStore } from '../store/tape.js'
import { TieredStore, type ReadPolicy } from '../store/tiered.js'
import type { EngineOptions } from '../tape/engine.js'
import { VirtualTapeLibrary } from '../tape/vtl.js'
import { BfsError } from './errors.js'
import { RepoTapeCatalog, TAPE_PREFIX } from './tapecat.js'
import { readTier, tapeToBfs, type TapeRepo } from './tiers.js'

/** Where a repository's disk buffer cache lives: REPO/cache (see tape.md for why, and how to put it elsewhere). */
export function cacheDir(repo: TapeRepo): string {
  return repo.store.localDir(keys.cache)
}

export interface DataStoreOptions {
  /**
   * 'service' (default): recalls go through the repository's recall service, shared by
   * every process reading the repository; 'local': this process drives the library and owns
   * the cache itself (the recall service, tests, benches).
   */
  recall?: 'service' | 'local'
  /** Buffer cache limit, bytes (kept in the cache's config.json; default 10 GiB). */
  cacheBytes?: number
  /** 'local': overrides the libraries' clock scale. */
  clockScale?: number
  /** 'local': engine options. */
  engine?: EngineOptions
  /** 'service': how a client reaches and starts the service (recall/client.ts). */
  service?: (repo: TapeRepo, catalog: RepoTapeCatalog, cache: BufferCache) => ColdSource
  /** How reads of units on tape behave (the mount's --offline and recall deadline). */
  policy?: ReadPolicy
}

export interface RepoDataStore {
  /** What readers use: the TieredStore when the repository has a tape catalog, else the disk store. */
  store: Store
  tiered: TieredStore | null
  catalog: RepoTapeCatalog | null
  /** 'local' only: the tape stores, by tier. */
  tapes: TapeStore[]
  close(): Promise<void>
}

/** Whether any unit was ever migrated (a tape catalog record exists). */
export function hasTapeCatalog(repo: TapeRepo): boolean {
  return repo.store.sync.listSync(TAPE_PREFIX).some((k) => /\/rec-\d{8,}$/.test(k))
}

/**
 * Whether a reader of the repository may meet units on tape during its run: some were
 * migrated already, or a tape tier is configured (a `bfs migrate` may free units on disk
 * while a mount started before it still serves them).
 */
export function mayReachTape(repo: TapeRepo): boolean {
  return hasTapeCatalog(repo) || repo.store.sync.listSync('tiers').length > 0
}

export function openDataStore(repo: TapeRepo, o: DataStoreOptions = {}): RepoDataStore {
  const disk = repo.store
  // through the recall service, a configured tier is enough: the catalog is read again on a miss
  if (!((o.recall ?? 'service') === 'service' ? mayReachTape(repo) : hasTapeCatalog(repo))) return { store: disk, tiered: null, catalog: null, tapes: [], close: async () => undefined }
  const catalog = new RepoTapeCatalog(disk, repo.tapeSeal ?? null)
  if ((o.recall ?? 'service') === 'service') {
    if (!o.service) throw new TypeError("openDataStore: recall 'service' needs the service client (recall/client.ts serviceSource)")
    const cache = BufferCache.open(cacheDir(repo))
    const source = o.service(repo, catalog, cache)
    const tiered = new TieredStore({ hot: disk, cold: new CacheStore(cache, source), ...o.policy })
    return { store: tiered, tiered, catalog, tapes: [], close: async () => (source as { close?: () => Promise<void> }).close?.() }
  }
  const tiers = new Set<string>()
  for (const e of catalog.all()) tiers.add(e.loc.tier)
  const libs: VirtualTapeLibrary[] = []
  const tapes: TapeStore[] = []
  try {
    for (const name of [...tiers].sort()) {
      const tier = readTier(repo, name)
      const lib = VirtualTapeLibrary.open(tier.dir, o.clockScale === undefined ? {} : { clockScale: o.clockScale })
      libs.push(lib)
      tapes.push(new TapeStore({ tier: name, library: lib, catalog, engine: o.engine }))
    }
  } catch (err) {
    for (const l of libs) void l.close()
    throw tapeToBfs(err)
  }
  if (tapes.length === 0) return { store: disk, tiered: null, catalog, tapes, close: async () => undefined }
  let cache: BufferCache
  try {
    cache = BufferCache.open(cacheDir(repo), { owner: true, limitBytes: o.cacheBytes })
  } catch (err) {
    for (const t of tapes) void t.close()
    for (const l of libs) void l.close()
    if (err instanceof CacheBusy) throw new BfsError('LOCKED', `${err.message}: the repository's recall service owns it`)
    throw err
  }
  const tiered = new TieredStore({ hot: disk, cold: new CacheStore(cache, new TapeSource(tapes, cache)), ...o.policy })
  return {
    store: tiered,
    tiered,
    catalog,
    tapes,
    close: async () => {
      cache.close()
      for (const t of tapes) await t.close()
      for (const l of libs) await l.close()
    },
  }
}
