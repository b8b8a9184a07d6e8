/**
 * Telling a format 2 repository from a format 1 one before opening it (the CLI's dispatch),
 * and the refusal of the commands that have no format 2 path yet. Kept apart from repo2.ts
 * so that `bfs mount`, which loads only what a mount needs, pays for two small reads only.
 */
import path from 'node:path'
import { keys2 } from '../../format/v2/layout.js'
import { DiskStore } from '../../store/disk.js'
import { StoreError } from '../../store/store.js'
import { BfsError } from '../errors.js'

/**
 * Whether `dir` holds a format 2 repository: its config (or, config being unreadable, its
 * copy) is an envelope of version 2. Used by the commands that have a format 2 path before
 * they open the repository the format 1 way; every other command meets it in ctx.openRepo.
 */
export function isFormat2(dir: string): boolean {
  let store: DiskStore
  try {
    store = DiskStore.open(dir)
  } catch (err) {
    if (err instanceof StoreError) return false
    throw err
  }
  for (const key of [keys2.config, keys2.configCopy]) {
    let b: Buffer
    try {
      b = store.sync.getSync(key, { offset: 0, length: 10 })
    } catch (err) {
      if (err instanceof StoreError) continue
      throw err
    }
    if (b.subarray(0, 8).toString('latin1') === 'BFSCONF\0') return b.readUInt16LE(8) === 2
  }
  return false
}

/**
 * The refusal of a command that has no format 2 path yet (issue 15 step 1): one line, exit 6
 * (README "format 2"), naming the command and what a format 2 repository takes so far.
 */
export function notYetOnFormat2(dir: string, command = 'this command'): BfsError {
  return new BfsError('NOT_A_REPO', `${path.resolve(dir)} is a format 2 repository: 'bfs ${command}' does not support format 2 yet (so far it takes backup, ls, cat and generations)`)
}
