/**
 * What this host (this user) remembers of each repository location it used (issue 18;
 * native-notes/format.md §2.22.3): the repository id and whether it was encrypted, so that a
 * repository swapped for a plain one (its `keys/` deleted, a plain config put in its place)
 * is refused instead of receiving the next backups in plaintext. Borg keeps the same kind
 * of record per repository id (~/.config/borg/security); bfs keys it by location, since the
 * attack replaces what is at a location.
 *
 * One small file per location, `<state dir>/repos/<32 hex of sha256(location)>`, written to a
 * temporary file and renamed. The state directory: $BFS_STATE_DIR, else $XDG_STATE_HOME/bfs,
 * else ~/.local/state/bfs. It cannot be written (a read-only user): a warning, never a failure.
 * Synchronous: called once when a command opens its repository, before anything is served.
 */
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { BfsError } from './errors.js'
import { isS3Url } from '../store/s3-url.js'

/** What a command found at a location. */
export interface RepoSeen {
  /** The canonical location: the real path of a local repository, or its s3: URL. */
  location: string
  repoId: string
  encrypted: boolean
  format: 1 | 2
}

/** The record of a location (format.md §2.22.3). */
export interface RepoRecord extends RepoSeen {
  v: 1
  /** When it was written (ISO 8601); for the user reading the file. */
  recorded: string
}

/** The environment variable that lets a command go on with a repository that changed (and updates the record). */
export const ACCEPT_CHANGED = 'BFS_ACCEPT_CHANGED_REPO'

/** $BFS_STATE_DIR, else $XDG_STATE_HOME/bfs, else ~/.local/state/bfs (not made here). */
export function stateDir(env = process.env): string {
  if (env.BFS_STATE_DIR) return path.resolve(env.BFS_STATE_DIR)
  return path.join(env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state'), 'bfs')
}

/** A repository's location as records name it: the s3: URL as given, else the real path (the absolute one when it cannot be resolved). */
export function canonicalLocation(dir: string): string {
  if (isS3Url(dir)) return dir
  const abs = path.resolve(dir)
  try {
    return fs.realpathSync(abs)
  } catch {
    return abs
  }
}

/** The record file of `location`. */
export function recordFile(location: string, env = process.env): string {
  return path.join(stateDir(env), 'repos', createHash('sha256').update(location).digest('hex').slice(0, 32))
}

/** The record of `location`, or null (none, unreadable, or not a record of it). */
export function readRecord(location: string, env = process.env): RepoRecord | null {
  let text: string
  try {
    text = fs.readFileSync(recordFile(location, env), 'utf8')
  } catch {
    return null
  }
  try {
    const r = JSON.parse(text) as RepoRecord
    if (r.v !== 1 || r.location !== location || typeof r.repoId !== 'string' || typeof r.encrypted !== 'boolean') return null
    return r
  } catch {
    return null // a damaged record is no record: it is written again
  }
}

/** Writes the record of `seen` (temporary file, fsync, rename). Throws what fs throws. */
function writeRecord(seen: RepoSeen, env: NodeJS.ProcessEnv): void {
  const file = recordFile(seen.location, env)
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  const rec: RepoRecord = { v: 1, location: seen.location, repoId: seen.repoId, encrypted: seen.encrypted, format: seen.format, recorded: new Date().toISOString() }
  const tmp = `${file}.tmp-${process.pid}`
  const fd = fs.openSync(tmp, 'w', 0o600)
  try {
    fs.writeSync(fd, JSON.stringify(rec) + '\n')
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  try {
    fs.renameSync(tmp, file)
  } catch (err) {
    fs.rmSync(tmp, { force: true })
    throw err
  }
}

const warnLine = (m: string): void => void process.stderr.write(`bfs: warning: ${m}\n`)

/**
 * Checks what a command found at a location against this host's record of it, before the
 * command reads or writes anything: a location recorded as encrypted that is now unencrypted
 * is refused (exit 6) unless $BFS_ACCEPT_CHANGED_REPO=1; `--password-file` given for an
 * unencrypted repository is refused (exit 2). Returns the record (null: none), for
 * rememberRepo. An unencrypted repository is remembered here; an encrypted one after it
 * unlocked (rememberRepo), so a repository nobody could unlock is not recorded.
 */
export function checkRepo(seen: RepoSeen, env = process.env, warn = warnLine): RepoRecord | null {
  if (!seen.encrypted && env.BFS_PASSWORD_FILE) {
    throw new BfsError('USAGE', `${seen.location} is not an encrypted repository, but --password-file was given: refused (a repository swapped for a plain one?); leave --password-file out for an unencrypted repository`)
  }
  const prev = readRecord(seen.location, env)
  if (prev?.encrypted && !seen.encrypted) {
    const what = `${seen.location}: was an encrypted repository (id ${prev.repoId}) when this host last used it, and is now ${prev.repoId === seen.repoId ? 'unencrypted' : `an unencrypted repository with another id (${seen.repoId})`}`
    if (env[ACCEPT_CHANGED] !== '1') throw new BfsError('CORRUPT', `${what}: refused (a repository swapped for a plain one?); if you replaced it yourself, run again with ${ACCEPT_CHANGED}=1`)
    warn(`${what}: accepted (${ACCEPT_CHANGED}=1), and recorded as unencrypted now`)
  }
  if (!seen.encrypted) {
    if (prev === null && env.BFS_PASSWORD) warn(`BFS_PASSWORD is set, but ${seen.location} is not an encrypted repository (first use from this host: it is recorded as unencrypted)`)
    rememberRepo(seen, prev, env, warn)
  }
  return prev
}

/**
 * Whether checkRepo refuses an unencrypted repository at `location` (the history record of a
 * run asks before it writes its `running` record: a refused repository receives nothing).
 */
export function refusesPlain(location: string, env = process.env): boolean {
  return !!env.BFS_PASSWORD_FILE || (readRecord(location, env)?.encrypted === true && env[ACCEPT_CHANGED] !== '1')
}

/** Writes the record of `seen` when it says something else than `prev` (a warning when it cannot). */
export function rememberRepo(seen: RepoSeen, prev: RepoRecord | null, env = process.env, warn = warnLine): void {
  if (prev && prev.repoId === seen.repoId && prev.encrypted === seen.encrypted && prev.format === seen.format) return
  try {
    writeRecord(seen, env)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message
    warn(`cannot record ${seen.location} in ${path.join(stateDir(env), 'repos')} (${code}): a repository swapped for a plain one there will not be noticed (set BFS_STATE_DIR to a writable directory, or BFS_REQUIRE_ENCRYPTION=1)`)
  }
}
