/**
 * Crash recovery: what a killed writer can have left is removed by the next writer, under
 * the writer lock, before it starts (native-notes/format.md "Write order").
 */
import path from 'node:path'
import { BfsError } from '../errors.js'
import { keys, type Repository } from '../repository.js'
import { WriterLock } from './lock.js'

/** Turns a full disk (or quota) while writing generation `genId` into one clear error. */
export function storageError(err: unknown, repo: Repository, genId: number): unknown {
  const code = (err as NodeJS.ErrnoException).code
  const msg = (err as Error).message ?? ''
  if (code === 'ENOSPC' || code === 'EDQUOT' || msg.startsWith('disk full')) {
    return new BfsError('IO', `disk full while writing gen${genId} to ${repo.dir}; it was discarded, older generations are intact`)
  }
  return err
}

/**
 * Removes what a crashed or killed writer can have left, and nothing else: a gens/N without
 * a manifest that is unfinished (Repository.uncommittedState: marked in progress, only
 * temporary files, or an old writer's above every committed id without a catalog), a
 * stale in-progress marker beside a manifest, temp files. An orphan (a gens/N that lost
 * its manifest) is left alone: `generations` lists it as damaged and verify reports it.
 * Call under the writer lock.
 */
export function recoverRepository(repo: Repository): void {
  const ids = repo.generationIds()
  const committed = new Set(ids)
  const newest = Math.max(0, ...ids)
  for (const id of repo.genDirIds()) {
    if (committed.has(id)) repo.store.removeTree(keys.marker(id)) // killed between its commit and removing the marker
    else if (repo.uncommittedState(id, newest) === 'unfinished') repo.store.removeTree(keys.genDir(id))
  }
  // a lock-* temp file is another writer's, waiting for the lock, unless that writer is dead
  for (const k of repo.store.list('tmp')) {
    if (!path.basename(k).startsWith('lock-') || WriterLock.isStaleTemp(repo.store.path(k))) repo.store.removeTree(k)
  }
  for (const k of repo.store.list('manifests')) if (k.includes('.tmp-')) repo.store.removeTree(k)
}
