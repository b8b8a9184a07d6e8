/**
 * Telling a format 2 repository from a format 1 one before opening it (the CLI's dispatch),
 * and the refusal of the commands that have no format 2 path yet. Kept apart from repo2.ts
 * so that `bfs mount`, which loads only what a mount needs, pays for two small reads only.
 */
import path from 'node:path'
import { keys2 } from '../../format/v2/layout.js'
import { storeAt } from '../../store/open.js'
import { isS3Url } from '../../store/s3-url.js'
import { StoreError, type Store } from '../../store/store.js'
import { BfsError } from '../errors.js'

/**
 * Whether `dir` holds a format 2 repository: `config` is an envelope of version 2 and its
 * copy does not say version 1, or `config` is missing or unreadable and its copy is of version
 * 2. A version 2 `config` beside a version 1 copy is a format 1 repository with a flipped
 * byte (format 1 repairs it from the copy, as issue 11 wants), not a format 2 one. Used by
 * the commands that have a format 2 path before they open the repository the format 1 way;
 * every other command meets it in ctx.openRepo.
 */
export function isFormat2(dir: string): boolean {
  let store: Store
  try {
    store = storeAt(dir)
  } catch (err) {
    if (err instanceof StoreError) return false
    throw err
  }
  const [config, copy] = [keys2.config, keys2.configCopy].map((key) => envelopeVersion(store, key))
  return config === 2 ? copy !== 1 : config === null && copy === 2
}

/** The envelope version of a config file, or null when it is missing or not a config envelope. */
function envelopeVersion(store: Store, key: string): number | null {
  let b: Buffer
  try {
    b = store.sync!.getSync(key, { offset: 0, length: 10 })
  } catch (err) {
    // on S3, only a missing config means "not format 2": access denied or an unreachable endpoint is said as such
    if (err instanceof StoreError && (err.code === 'ENOENT' || err.code === 'TRUNCATED' || !isS3Url(store.where('')))) return null
    throw err
  }
  return b.subarray(0, 8).toString('latin1') === 'BFSCONF\0' ? b.readUInt16LE(8) : null
}

/**
 * The refusal of a command that has no format 2 path yet (issue 15 step 1): one line, exit 6
 * (README "formats 1 and 2"), naming the command and what a format 2 repository takes so far.
 */
export function notYetOnFormat2(dir: string, command = 'this command'): BfsError {
  return new BfsError('NOT_A_REPO', `${isS3Url(dir) ? dir : path.resolve(dir)} is a format 2 repository: 'bfs ${command}' does not support format 2 yet (so far it takes backup, generations, group, ls, cat, diff, find, log, mount, restore, verify, forget, tier, migrate and recall)`)
}
