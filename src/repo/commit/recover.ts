/**
 * Crash recovery: what a killed writer can have left is removed by the next writer, under
 * the writer lock, before it starts (native-notes/format.md "Write order").
 */
import os from 'node:os'
import { keys } from '../../format/layout.js'
import { pidAlive } from '../../os/process.js'
import { syncOf, type Store, type SyncStore } from '../../store/store.js'
import { BfsError } from '../errors.js'
import type { Repository } from '../repository.js'
import { parseLock, STALE_UNREADABLE_MS } from './lock.js'

/** Turns a full disk (or quota) while writing generation `genId` into one clear error. */
export function storageError(err: unknown, repo: Pick<Repository, 'dir'>, genId: number): unknown {
  const code = (err as NodeJS.ErrnoException).code
  const msg = (err as Error).message ?? ''
  if (code === 'ENOSPC' || code === 'EDQUOT' || msg.startsWith('disk full')) {
    return new BfsError('IO', `disk full while writing gen${genId} to ${repo.dir}; it was discarded, older generations are intact`)
  }
  return err
}

/** Prefixes whose temporary files are swept, each without its sub-prefixes ('' = the top: lock and config temps). */
const SWEPT = ['', keys.manifests, keys.groups, 'tiers', keys.tmp]

/**
 * Removes what a crashed or killed writer can have left, and nothing else: a gens/N without
 * a manifest that is unfinished (Repository.uncommittedState: marked in progress, only
 * temporary files, or an old writer's above every committed id without a catalog), a
 * stale in-progress marker beside a manifest, the temporary files of dead writers (the
 * store's sweep: a live writer's, on this host or another, stay), and an older bfs's lock
 * candidates in tmp/ whose writer is dead. An orphan (a gens/N that lost its manifest) is
 * left alone: `generations` lists it as damaged and verify reports it. Call under the
 * writer lock.
 */
export async function recoverRepository(repo: Repository, store: Store = repo.store): Promise<void> {
  const s = syncOf(store)
  const ids = repo.generationIds()
  const committed = new Set(ids)
  const newest = Math.max(0, ...ids)
  for (const id of repo.genDirIds()) {
    if (committed.has(id)) s.removeSync(keys.marker(id)) // killed between its commit and removing the marker
    else if (repo.uncommittedState(id, newest) === 'unfinished') s.removeSync(keys.genDir(id), { recursive: true })
  }
  for (const prefix of SWEPT) await store.sweep(prefix, { shallow: true })
  // history records (issue 17): best effort, a history/ the sweep cannot read never stops a writer
  await store.sweep('history', { shallow: true }).catch(() => undefined)
  // tmp/ held an older bfs's lock candidates (lock-HOST-PID-MS) and its other temporary
  // files: a candidate is a waiting writer's unless that writer is dead
  for (const k of s.listSync(keys.tmp)) {
    if (!k.slice(keys.tmp.length + 1).startsWith('lock-') || staleLockCandidate(s, k)) s.removeSync(k, { recursive: true })
  }
}

/**
 * Whether an older bfs's lock candidate tmp/lock-HOST-PID-MS is litter: the writer its name
 * (or, for another name, its content) records is dead on this host, or it is unreadable and
 * older than a few seconds. A live writer waiting for the lock keeps its own.
 */
function staleLockCandidate(s: SyncStore, key: string): boolean {
  const host = os.hostname()
  const m = /^lock-(.+)-(\d+)-\d+$/.exec(key.slice(key.lastIndexOf('/') + 1))
  if (m && m[1] === host) return !pidAlive(Number(m[2]))
  let info = null
  try {
    info = parseLock(s.getSync(key))
  } catch {
    // unreadable: judged by its age
  }
  if (info) return info.host === host && !pidAlive(info.pid)
  try {
    const st = s.statSync(key)
    return st.mtimeMs !== undefined && Date.now() - st.mtimeMs > STALE_UNREADABLE_MS
  } catch {
    return false
  }
}
