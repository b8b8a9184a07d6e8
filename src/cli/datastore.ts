/**
 * The data store a reading command (cat, restore, verify, the mount) reads units from: the
 * repository's disk store, or — once units were migrated to a tape tier — the tiered store
 * reading through the repository's recall service (native-notes/tape.md §"Reading a
 * repository with a tape tier"). A repository without a tape catalog loads none of the tape
 * modules and opens nothing more than its disk store (the native read path as before).
 */
import type { Repository } from '../repo/repository.js'
import type { TapeRepo } from '../repo/tiers.js'
import type { Store } from '../store/store.js'
import type { Repo2 } from '../repo/v2/repo2.js'
import { isS3Url } from '../store/s3-url.js'
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
function maybeOnTape(repo: TapeRepo): boolean {
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
  return openReadStoreOf(repo, o, (s) => useDataStore(repo, s))
}

/** A format 2 repository's tiered store for a reading command (format.md §2.18), made its readers' (Repo2.useData); null without a tape tier. */
export async function openReadStore2(repo: Repo2, o: ReadStoreOptions = {}): Promise<ReadStore | null> {
  if (isS3Url(repo.dir)) return null
  const { tapeRepoOf } = await import('../repo/v2/repo2.js')
  return openReadStoreOf(tapeRepoOf(repo), o, (s) => repo.useData(s))
}

/** openReadStore for either format: `use(store)` makes the repository's readers read through it (null: back to disk). */
export async function openReadStoreOf(repo: TapeRepo, o: ReadStoreOptions, use: (s: Store | null) => void): Promise<ReadStore | null> {
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
  use(ds.store)
  const tiered = ds.tiered
  return {
    tiered,
    close: async () => {
      tiered.unpin(null, holder())
      use(null)
      await ds.close()
    },
  }
}

/** The pin holder of this process's reads. */
export function holder(): string {
  return `bfs-${process.pid}`
}

/** Recalls what `keys` need from tape in one pinned pass; a unit that cannot be recalled fails the command. */
export async function recallFor(repo: TapeRepo, rs: ReadStore, keys: string[]): Promise<void> {
  const { bringIn, planTapePasses } = await import('../repo/tapepasses.js')
  const plan = planTapePasses(repo, rs.tiered, keys, Infinity)
  if (!plan.keys) return
  const failed = await withSignals((signal) => bringIn(rs.tiered, plan.passes.flat(), holder(), signal))
  const first = failed.values().next()
  if (!first.done) throw new BfsError('IO', first.value)
}
