/**
 * Reading units that are not on disk, planned up front (native-notes/tape.md §"Planning a
 * restore"): the units a command needs that live only in the tape tier (or its buffer
 * cache) are put in the order the scheduler will read them (planRecall) and cut into
 * passes that fit the buffer cache (recallPasses); each pass is recalled pinned, used,
 * then unpinned, so no unit is recalled twice and the tape moves forward through the plan.
 * Used by restore and verify (the whole set), cat and verify --against (one pass).
 */
import { BfsError } from './errors.js'
import { planRecall, recallPasses } from './recallplan.js'
import type { TapeRepo } from './tiers.js'
import type { ColdEntry } from '../store/tape.js'
import type { TieredStore } from '../store/tiered.js'

export interface TapePlan {
  /** Keys per pass, in the order the tape gives them. */
  passes: string[][]
  /** The pass each planned key is in. */
  passOf: Map<string, number>
  /** Keys planned (not on disk), and how many of them need the tape now (not in the buffer cache). */
  keys: number
  onTape: number
  bytes: number
  /** The plan's estimated tape time, simulated seconds. */
  seconds: number
}

/**
 * Plans the keys among `keys` that are not on disk: in tape order, in passes of at most
 * `passBytes` (default: the buffer cache's limit). Keys the catalog does not know are left
 * to the readers (which report them missing).
 */
export function planTapePasses(repo: TapeRepo, tiered: TieredStore, keys: Iterable<string>, passBytes?: number): TapePlan {
  const cold = tiered.cold
  const entries: ColdEntry[] = []
  const seen = new Set<string>()
  let onTape = 0
  let bytes = 0
  const disk = tiered.hot.sync
  for (const k of keys) {
    if (seen.has(k)) continue
    seen.add(k)
    if (!cold || disk?.hasSync(k)) continue
    const e = cold.entry(k)
    if (!e) continue
    entries.push(e)
    bytes += e.sizeBytes
    if (!cold.cache.has(k, e.sizeBytes)) onTape++
  }
  const plan = { passes: [] as string[][], passOf: new Map<string, number>(), keys: entries.length, onTape, bytes, seconds: 0 }
  if (!entries.length) return plan
  const r = planRecall(repo, entries)
  plan.seconds = r.seconds
  const limit = Math.max(1, passBytes ?? cold!.cache.limitBytes)
  plan.passes = recallPasses(r.order, limit).map((p) => p.map((e) => e.key))
  plan.passes.forEach((p, i) => {
    for (const k of p) plan.passOf.set(k, i)
  })
  return plan
}

/**
 * Recalls `keys` into the buffer cache pinned (for `holder`) and waits for all of them.
 * Returns the keys that could not be recalled, with why (their readers fail on them).
 */
export async function bringIn(tiered: TieredStore, keys: string[], holder: string, signal?: AbortSignal): Promise<Map<string, string>> {
  const failed = new Map<string, string>()
  const got = tiered.prefetch(keys, { pin: holder, signal })
  await Promise.all([...got].map(([k, p]) => p.catch((err: Error) => void failed.set(k, err.message))))
  if (signal?.aborted) throw new BfsError('INTERRUPTED', 'interrupted while recalling from tape; what was recalled stays in the buffer cache')
  return failed
}
