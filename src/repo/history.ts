/**
 * The run history of a repository (native-notes/format.md §2.8.6), either format: writing a
 * record (`running` at the start, replaced with the outcome at the end) and reading them all
 * back, a `running` record whose process is gone judged `interrupted`.
 *
 * Nothing here may make the command it records fail: the writer's errors are the caller's to
 * turn into warnings, and a record that does not decode is skipped with a warning.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { decodeHistory, decodeHistoryPayload, encodeHistory, encodeHistoryPayload, HISTORY_NAME_RE, HISTORY_PREFIX, historyName, type HistoryRecord, type HistoryState } from '../format/history.js'
import { pidAlive } from '../os/process.js'
import { DiskStore } from '../store/disk.js'
import { TEMP_MARK } from '../store/store.js'
import { pidStartOf } from './v2/lease.js'
import { isFormat2 } from './v2/detect.js'
import { isGuardLock } from '../format/v2/records.js'

/** Whether `dir` looks like a repository of either format (its config or the copy is there): only those get history. */
export function isRepositoryDir(dir: string): boolean {
  let store: DiskStore
  try {
    store = DiskStore.open(dir)
  } catch {
    return false
  }
  if (!['config', 'config-copy'].some((f) => store.sync.hasSync(f))) return false
  // a format 2 repository this bfs does not read as one (a damaged config, a version 1 copy):
  // its guard lock (format.md §2.23.1) will stop the command, which must write nothing there
  if (!isFormat2(dir) && store.sync.hasSync('lock')) {
    try {
      if (isGuardLock(fs.readFileSync(store.where('lock')))) return false
    } catch {
      // unreadable: the command's own lock handling says what is wrong
    }
  }
  return true
}

/**
 * Whether the repository in `dir` is encrypted (§2.22): it has `keys/`, or its config says
 * so (`"encryption":{`: a plain format 2 config holds `"encryption":null`, a format 1 config
 * no such field), or the config cannot be read to tell (an existing one that fails to read:
 * the command then fails in its own words). Its history records are sealed (§2.8.6), so they
 * are written only once the command has unlocked it (a run that ends before, a wrong
 * passphrase among them, is not recorded): a missing or unreadable `keys/` alone must not
 * make the `running` record of an encrypted repository go out in plaintext.
 */
export function isEncryptedDir(dir: string): boolean {
  let store: DiskStore
  try {
    store = DiskStore.open(dir)
  } catch {
    return false
  }
  try {
    if (fs.existsSync(store.where('keys'))) return true
    return fs.readFileSync(store.where('config')).includes('"encryption":{')
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT'
  }
}

/** How the records of an unlocked encrypted repository are sealed and opened (Repo2.seal/unseal with kind `history`). */
export interface HistorySealer {
  seal(key: string, payload: Buffer): Buffer
  open(key: string, file: Buffer): Buffer
}

const sealers = new Map<string, HistorySealer>()
const unlockedListeners = new Set<(dir: string) => void>()

/** An encrypted repository was unlocked in this process (cli/open2.ts): its records can be sealed and opened from now on. */
export function historyUnlocked(dir: string, sealer: HistorySealer): void {
  const abs = path.resolve(dir)
  sealers.set(abs, sealer)
  for (const l of [...unlockedListeners]) l(abs)
}

/** The sealer of the unlocked encrypted repository in `dir`, if any. */
export function historySealer(dir: string): HistorySealer | undefined {
  return sealers.get(path.resolve(dir))
}

/** Calls `l(dir)` whenever a repository is unlocked; returns the function that stops it. */
export function onHistoryUnlocked(l: (dir: string) => void): () => void {
  unlockedListeners.add(l)
  return () => void unlockedListeners.delete(l)
}

/** The outcome an exit status means. */
export function stateOfExit(exit: number): Exclude<HistoryState, 'running'> {
  if (exit === 0) return 'ok'
  if (exit === 3) return 'partial'
  if (exit >= 128) return 'interrupted'
  return 'failed'
}

/** A new `running` record of this process, started now. */
export function newRecord(command: string, argv: string[]): HistoryRecord {
  let user: string
  try {
    user = os.userInfo().username
  } catch {
    user = String(process.getuid?.() ?? '')
  }
  return {
    command, state: 'running', host: os.hostname(), user, pid: process.pid, pidStart: pidStartOf(process.pid) ?? 0, argv,
    started: new Date().toISOString(), ended: null, exit: null, sources: [], gens: [], bytes: {}, warnings: 0, firstWarnings: [], error: null,
  }
}

/** Where a record of `started` is written: a fresh name (8 random hex digits after the start second). */
export function newRecordKey(started: string): string {
  return `${HISTORY_PREFIX}/${historyName(started, randomBytes(4).toString('hex'))}`
}

/**
 * Writes (or replaces) a record: temporary file, fsync, rename, fsync of `history/` (the
 * store's put). With `sealer` (an encrypted repository) the record is an encrypted envelope.
 */
export function writeRecord(dir: string, key: string, r: HistoryRecord, sealer?: HistorySealer): void {
  const store = DiskStore.open(dir)
  if (!fs.existsSync(store.where(HISTORY_PREFIX))) {
    // the first record: history/ made and its entry in the top directory made durable
    store.makePrefix(HISTORY_PREFIX)
    store.sync.flushSync('')
  }
  store.sync.putSync(key, sealer ? sealer.seal(key, encodeHistoryPayload(r)) : encodeHistory(r), { mode: 'replace' })
}

export interface ListedRecord extends HistoryRecord {
  /** Its name in `history/`. */
  id: string
  /** `running` as stored, judged: `interrupted` when its process is gone (this host: pid dead or another process under it). */
  result: HistoryState
}

/** Whether a `running` record's process is certainly gone: only on its own host (elsewhere it cannot be told). */
export function recordOrphaned(r: HistoryRecord, host = os.hostname()): boolean {
  if (r.state !== 'running' || r.host !== host) return false
  if (!pidAlive(r.pid)) return true
  if (r.pidStart === 0) return false
  const start = pidStartOf(r.pid)
  return start !== null && start !== r.pidStart
}

/**
 * Every record of the repository in `dir`, oldest first (by start, then name). A temporary
 * file is passed over; a foreign name or a record that does not decode (or, sealed, does
 * not authenticate) is skipped with a warning. `sealer`: an encrypted repository's, unlocked.
 */
export function readHistory(dir: string, warn: (m: string) => void, sealer?: HistorySealer): ListedRecord[] {
  const store = DiskStore.open(dir)
  const out: ListedRecord[] = []
  for (const key of store.sync.listSync(HISTORY_PREFIX)) {
    const name = key.slice(HISTORY_PREFIX.length + 1)
    if (name.includes(TEMP_MARK)) continue
    if (!HISTORY_NAME_RE.test(name)) {
      warn(`${HISTORY_PREFIX}/${name}: not a history record, skipped`)
      continue
    }
    let r: HistoryRecord
    try {
      const file = store.sync.getSync(key)
      r = sealer ? decodeHistoryPayload(sealer.open(key, file), store.where(key)) : decodeHistory(file, store.where(key))
    } catch (err) {
      warn(`${(err as Error).message}; skipped`)
      continue
    }
    out.push({ ...r, id: name, result: recordOrphaned(r) ? 'interrupted' : r.state })
  }
  return out.sort((a, b) => Date.parse(a.started) - Date.parse(b.started) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
}
