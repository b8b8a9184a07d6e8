/**
 * The data store a reading command (cat, restore, verify, the mount) reads units from: the
 * repository's disk store, or — once units were migrated to a tape tier — the tiered store
 * reading through the repository's recall service (native-notes/tape.md §"Reading a
 * repository with a tape tier"). A repository without a tape catalog loads none of the tape
 * modules and opens nothing more than its disk store (the native read path as before).
 */
import type { Repository } from '../repo/repository.js'
import type { RepoDataStore } from '../repo/stores.js'
import { useDataStore } from '../repo/stream-source.js'
import { BfsError } from '../repo/errors.js'
import { withSignals } from './common.js'
import type { TieredStore, ReadPolicy } from '../store/tiered.js'

export interface ReadStoreOptions {
  /** --buffer-cache: the buffer cache's limit (kept for later runs). */
  cacheBytes?: number
  /** How reads of units still on tape behave (the mount: --offline, --recall-timeout). */
  policy?: ReadPolicy
}

/** The repository's data store for reading, made the one its readers use (useDataStore); null without a tape tier. */
export interface ReadStore {
  tiered: TieredStore
  close(): Promise<void>
}

/** Whether units were ever migrated (the tape catalog's directory has records) or a tape tier is configured: listings only. */
function maybeOnTape(repo: Repository): boolean {
  try {
    return repo.store.sync.listSync('tape').length > 0 || repo.store.sync.listSync('tiers').length > 0
  } catch {
    return false
  }
}

/**
 * Opens the tiered store when the repository has a tape catalog and makes every reader of
 * `repo` made from now on read through it (worker threads too: they get it by its
 * description); null (nothing opened) otherwise. close() it at the end.
 */
export async function openReadStore(repo: Repository, o: ReadStoreOptions = {}): Promise<ReadStore | null> {
  if (!maybeOnTape(repo)) return null
  const { mayReachTape } = await import('../repo/stores.js')
  // a tier without a catalog yet: a migrate may free units on disk while this reader runs
  // (a mount started before it); the catalog is read again when a unit is missing
  if (!mayReachTape(repo)) return null
  const { recallStores } = await import('./recall.js')
  const ds: RepoDataStore = recallStores(repo, { cacheBytes: o.cacheBytes, policy: o.policy })
  if (!ds.tiered) {
    await ds.close()
    return null
  }
  useDataStore(repo, ds.store)
  const tiered = ds.tiered
  return {
    tiered,
    close: async () => {
      tiered.unpin(null, holder())
      useDataStore(repo, null)
      await ds.close()
    },
  }
}

/** The pin holder of this process's reads. */
export function holder(): string {
  return `bfs-${process.pid}`
}

/** Recalls what `keys` need from tape in one pinned pass; a unit that cannot be recalled fails the command. */
export async function recallFor(repo: Repository, rs: ReadStore, keys: string[]): Promise<void> {
  const { bringIn, planTapePasses } = await import('../repo/tapepasses.js')
  const plan = planTapePasses(repo, rs.tiered, keys, Infinity)
  if (!plan.keys) return
  const failed = await withSignals((signal) => bringIn(rs.tiered, plan.passes.flat(), holder(), signal))
  const first = failed.values().next()
  if (!first.done) throw new BfsError('IO', first.value)
}
