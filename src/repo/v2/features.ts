/**
 * Feature flags of a format 2 repository set by the commands that need them
 * (native-notes/format.md §2.7): under the maintenance lock, the config re-read, then
 * `config-copy` and `config` replaced (in that order: a crash between the two leaves `config`
 * without the feature, and nothing needing it written yet). Done before the first object
 * that needs the feature is written, so an older bfs that does not know it refuses the
 * repository (incompat) or opens it read-only (rocompat) instead of misreading it.
 */
import { type FeatureClass, FEATURES } from '../../format/v2/config.js'
import { keys2 } from '../../format/v2/layout.js'
import { BfsError } from '../errors.js'
import { Lease } from './lease.js'
import type { Repo2 } from './repo2.js'

/** How long a command that needs a feature waits for the maintenance lock (a prune may hold it). */
const FEATURE_LOCK_WAIT_MS = 10 * 60_000

/**
 * Sets feature `name` (its class from FEATURES) unless the config has it. Returns whether it
 * was written now. `onWait` hears about a wait for the maintenance lock.
 */
export async function enableFeature(repo: Repo2, name: string, command: string, o: { waitMs?: number; onWait?: (m: string) => void } = {}): Promise<boolean> {
  const cls: FeatureClass | undefined = FEATURES[name]
  if (!cls) throw new TypeError(`unknown feature ${name}`)
  if (repo.config.features[cls].includes(name)) return false
  if (repo.readOnly) throw new BfsError('BAD_INPUT', `${repo.dir}: this bfs may only read this repository (it uses a feature it does not know)`)
  const lock = await Lease.maintenance(repo, command, { waitMs: o.waitMs ?? FEATURE_LOCK_WAIT_MS, onWait: o.onWait })
  try {
    return enableFeatureLocked(repo, name)
  } finally {
    lock.release()
  }
}

/** enableFeature for a caller that holds the maintenance lock already (compact, prune). */
export function enableFeatureLocked(repo: Repo2, name: string): boolean {
  const cls: FeatureClass | undefined = FEATURES[name]
  if (!cls) throw new TypeError(`unknown feature ${name}`)
  if (repo.config.features[cls].includes(name)) return false
  if (repo.readOnly) throw new BfsError('BAD_INPUT', `${repo.dir}: this bfs may only read this repository (it uses a feature it does not know)`)
  // the config as it is now (another command may have set features since this one read it)
  const now = repo.decodeConfig(repo.sync.getSync(keys2.config), repo.store.where(keys2.config))
  for (const c of ['incompat', 'rocompat', 'compat'] as const) for (const f of now.features[c]) if (!repo.config.features[c].includes(f)) repo.config.features[c].push(f)
  if (now.features[cls].includes(name)) return false
  now.features[cls].push(name)
  const file = repo.configFile(now)
  repo.sync.putSync(keys2.configCopy, file, { mode: 'replace' })
  repo.sync.putSync(keys2.config, file, { mode: 'replace' })
  repo.config.features[cls].push(name)
  return true
}
