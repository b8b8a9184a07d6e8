/**
 * The history record of this process's command (repo/history.ts, format.md §2.8.6): begun by
 * a command once it knows its repository (`running`, written at once), filled in as it goes
 * (sources, generations, bytes, warnings), and finished by main.ts with the exit status and
 * the error line — or, when the process ends some other way, by a signal or exit handler here.
 *
 * Recording never changes how a command ends: every error writing the record is one warning
 * on stderr, and a signal nobody else handles is re-raised after the record is finished, so
 * the process dies of it as it would have.
 */
import fs from 'node:fs'
import path from 'node:path'
import { canonicalLocation, refusesPlain } from '../repo/repo-records.js'
import type { HistoryRecord } from '../format/history.js'
import { HISTORY_WARNINGS_KEPT } from '../format/history.js'
import { historySealer, isEncryptedDir, isRepositoryDir, newRecord, newRecordKey, onHistoryUnlocked, stateOfExit, writeRecord } from '../repo/history.js'

const SIGNALS: Array<[NodeJS.Signals, number]> = [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]

export class RunRecorder {
  private rec: HistoryRecord | null = null
  private dir = ''
  private key = ''
  private writeWarned = false
  /** An encrypted repository (§2.22): the record is sealed, so written only once the command has unlocked it. */
  private sealed = false
  private stopListening: (() => void) | null = null
  private errorLine: string | null = null
  private readonly handlers = new Map<NodeJS.Signals, () => void>()
  private readonly onExit = (code: number): void => this.finish(code ?? Number(process.exitCode ?? 0), null)

  constructor(private readonly argv: string[]) {}

  /** Whether a record is being kept (begun and not finished). */
  get active(): boolean {
    return this.rec !== null && this.rec.state === 'running'
  }

  /**
   * Starts this process's record in the repository at `dir` (once; later calls only add what
   * they give). Nothing is recorded where `dir` is not a repository: the command fails on its
   * own. A repository this user cannot write (or on a read-only mount) is used without
   * a record and without a warning, as format 2's leases are.
   */
  begin(repoDir: () => string, command: string, info: { sources?: string[]; gens?: number[] } = {}, _opts: { readOnly?: boolean } = {}): void {
    if (this.rec) return this.add(info) // a second begin in one run (several sources): joined
    let dir: string
    try {
      dir = repoDir() // a bad --repo fails the command itself, in its own time
      if (!isRepositoryDir(dir)) return
      // a repository this user (or mount) cannot write gets no record and no warning: a
      // command that must write there fails on its own, in its own words
      try {
        fs.accessSync(dir, fs.constants.W_OK)
      } catch {
        return
      }
    } catch {
      return
    }
    // a repository this host's record refuses (format.md §2.22.3: swapped for a plain one) receives nothing
    if (!isEncryptedDir(dir) && refusesPlain(canonicalLocation(dir))) return
    this.dir = dir
    this.rec = newRecord(command, this.argv)
    this.key = newRecordKey(this.rec.started)
    this.set(info)
    this.sealed = isEncryptedDir(dir)
    // an encrypted repository: the `running` record is written when the command unlocks it
    // (open2.ts); a run that ends before (a wrong passphrase) leaves no record
    if (this.sealed && !historySealer(dir)) this.stopListening = onHistoryUnlocked((d) => d === path.resolve(this.dir) && this.write())
    this.write()
    for (const [sig, num] of SIGNALS) {
      const h = (): void => this.onSignal(sig, num)
      this.handlers.set(sig, h)
      process.on(sig, h)
    }
    process.on('exit', this.onExit)
  }

  /** Adds what the command learned (replacing the fields given); written with the end. */
  set(info: { sources?: string[]; gens?: number[]; bytes?: Record<string, number> }): void {
    const r = this.rec
    if (!r) return
    if (info.sources) r.sources = [...new Set(info.sources)]
    if (info.gens) r.gens = [...new Set(info.gens)].sort((a, b) => a - b)
    if (info.bytes) r.bytes = { ...r.bytes, ...Object.fromEntries(Object.entries(info.bytes).filter(([, v]) => Number.isSafeInteger(v) && v >= 0)) }
  }

  /** Adds to what the command learned (sources and generations joined, bytes summed): one run that makes several generations (several sources). */
  add(info: { sources?: string[]; gens?: number[]; bytes?: Record<string, number> }): void {
    const r = this.rec
    if (!r) return
    const bytes: Record<string, number> = { ...r.bytes }
    for (const [k, v] of Object.entries(info.bytes ?? {})) if (Number.isSafeInteger(v) && v >= 0) bytes[k] = (bytes[k] ?? 0) + v
    this.set({ sources: [...r.sources, ...(info.sources ?? [])], gens: [...r.gens, ...(info.gens ?? [])], bytes })
  }

  /** One warning the command gave (counted; the first few kept word for word). */
  warn(message: string): void {
    const r = this.rec
    if (!r) return
    r.warnings++
    if (r.firstWarnings.length < HISTORY_WARNINGS_KEPT) r.firstWarnings.push(message.replace(/^bfs: (warning: )?/, '').trim())
  }

  /** The error line of a command that fails without throwing (verify's damage, restore's errors). */
  fail(line: string): void {
    this.errorLine = line
  }

  /** Replaces the `running` record with the outcome of exit status `exit` (and `error`, the line printed for it). Synchronous: also from 'exit'. */
  finish(exit: number, error: string | null): void {
    const r = this.rec
    if (!r || r.state !== 'running') return
    r.exit = exit
    r.state = stateOfExit(exit)
    r.ended = new Date().toISOString()
    r.error = exit === 0 ? null : (error ?? this.errorLine ?? (r.state === 'interrupted' ? 'interrupted' : null))
    this.write()
    this.stopListening?.()
    this.stopListening = null
    for (const [sig, h] of this.handlers) process.off(sig, h)
    this.handlers.clear()
    process.off('exit', this.onExit)
  }

  /**
   * A signal: when the command handles it too (withSignals), that handler ends the command
   * (exit 130) and main.ts finishes the record; else the record is finished here as
   * interrupted and the signal re-raised, so the process dies of it as it would have.
   */
  private onSignal(sig: NodeJS.Signals, num: number): void {
    if (process.listenerCount(sig) > 1) return
    this.finish(128 + num, `interrupted by ${sig}`)
    process.kill(process.pid, sig)
  }

  private write(): void {
    if (!this.rec) return
    const sealer = this.sealed ? historySealer(this.dir) : undefined
    if (this.sealed && !sealer) return // not unlocked (yet): nothing can be written
    try {
      writeRecord(this.dir, this.key, this.rec, sealer)
    } catch (err) {
      if (this.writeWarned) return
      this.writeWarned = true
      process.stderr.write(`bfs: warning: the run was not recorded in the history: ${(err as Error).message}\n`)
    }
  }
}
