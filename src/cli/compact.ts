/**
 * `bfs compact` (issue 16 item 4): recompresses the settled units of a format 2 repository at
 * a high zstd level, keeping frame sizes and raw bytes (native-notes/format.md §2.20.8,
 * repo/v2/compact.ts). Under the maintenance lock, as a run of its own; at nice 19 and in the
 * lowest best-effort I/O priority; resumable (a unit at the target level is skipped). `bfs prune --compact`
 * runs it after the prune.
 */
import { openRepo2 } from './open2.js'
import { isS3Url } from '../store/s3-url.js'
import path from 'node:path'
import { InvalidArgumentError, type Command } from 'commander'
import { BfsError, EXIT } from '../repo/errors.js'
import { isFormat2 } from '../repo/v2/detect.js'
import { Lease } from '../repo/v2/lease.js'
import {
  type CompactResult, type CompactSurvey, type CompactTarget, DEFAULT_COMPACT_LEVEL, DEFAULT_MIN_AGE_MS, DEFAULT_SMALL_FRAME_LEVEL, claimCompactRun, compactUnits, prepareDictionaries, surveyCompact,
} from '../repo/v2/compact.js'
import { endPruneRun, recoverMaintenanceRuns } from '../repo/v2/prune.js'
import { Repo2 } from '../repo/v2/repo2.js'
import type { RunRecord } from '../format/v2/records.js'
import { backgroundPriority } from '../os/priority.js'
import { parseGrace, withSignals } from './common.js'
import type { Ctx } from './context.js'
import { humanBytes } from './output.js'
import { Progress } from './progress.js'

const warn = (m: string): void => void process.stderr.write(`bfs: ${m}\n`)
const plural = (n: number, w: string): string => `${n} ${w}${n === 1 ? '' : 's'}`

export function parseLevel(v: string): number {
  const n = Number(v)
  if (!/^\d{1,2}$/.test(v.trim()) || !(n >= 1 && n <= 22)) throw new InvalidArgumentError('a zstd level, 1 … 22')
  return n
}

export interface CompactOutcome {
  sv: CompactSurvey
  res: CompactResult | null
  run: number | null
  priority: { nice: number | null; ioLow: boolean } | null
  /** Dictionaries this compact trained and wrote (format.md §2.9.1). */
  dicts?: Array<{ stream: number; id: number; bytes: number }>
}

/** The levels, in words, for the summaries. */
const levelWords = (t: CompactTarget): string =>
  t.level !== null
    ? `zstd level ${t.level}${t.dictionaries === false ? '' : ' (small frames with a dictionary)'}`
    : `zstd level ${DEFAULT_COMPACT_LEVEL} (small frames: ${DEFAULT_SMALL_FRAME_LEVEL}${t.dictionaries === false ? '' : ' with a dictionary'})`

/**
 * A compact under the maintenance lock: lock, lease, run C claimed, dead prune/compact runs
 * marked aborted, the survey, the units one by one (each an atomic replace), run C committed.
 * A failure or Ctrl-C marks C aborted; kill -9 leaves it running, and the next prune or
 * compact marks it aborted. Every unit is whole at every moment, so either way the next
 * compact goes on where this one stopped.
 */
/**
 * Compact replaces units in place (§2.20.9): on disk a reader's open descriptor keeps the old
 * inode; on S3 a reader's next ranged GET of a replaced unit fails its If-Match, and the block
 * reader does not reopen the unit yet (it would fail with EIO). Refused there until it does.
 */
export const S3_REFUSAL = "'bfs compact' is not supported on an S3 repository yet (readers of a unit it replaces would fail); nothing was compacted"

export async function compactNow(repo: Repo2, o: CompactTarget & { minAgeMs: number; waitMs: number; line?: Progress; history?: Ctx['history'] }): Promise<CompactOutcome> {
  const lock = await Lease.maintenance(repo, 'compact', { waitMs: o.waitMs, onWait: warn })
  let lease: Lease | null = null
  let run: RunRecord | null = null
  let done = false
  try {
    lease = Lease.take(repo, 'compact', { command: 'compact' })
    const prio = backgroundPriority()
    if (prio.problem) o.line?.warn(`could not lower the I/O priority (${prio.problem}); compacting at normal I/O priority`)
    return await withSignals(async (signal) => {
      run = claimCompactRun(repo, lease!.name)
      recoverMaintenanceRuns(repo, run.run)
      const sv = surveyCompact(repo, o)
      // each stream's dictionary is durable before the first unit that names it is replaced
      const dicts = prepareDictionaries(repo, sv)
      const totalBytes = sv.todo.reduce((s, u) => s + u.rawBytes, 0)
      o.line?.update({ files: 0, totalFiles: sv.todo.length, bytes: 0, totalBytes })
      let seen = 0
      let seenBytes = 0
      const res = await compactUnits(repo, sv.todo, o.level ?? DEFAULT_COMPACT_LEVEL, (_r, u) => {
        seen++
        seenBytes += u.rawBytes
        o.line?.update({ files: seen, totalFiles: sv.todo.length, bytes: seenBytes, totalBytes, path: repo.store.where(u.key) })
        if (signal.aborted) throw new BfsError('INTERRUPTED', 'compact interrupted; every unit is whole, and the next compact goes on where this one stopped')
      })
      o.history?.add({ bytes: { compacted: res.rawBytes, before: res.bytesBefore, after: res.bytesAfter } })
      endPruneRun(repo, run, 'committed')
      done = true
      return { sv, res, run: run.run, priority: { nice: prio.nice, ioLow: prio.ioLow }, dicts }
    })
  } finally {
    if (run && !done) {
      try {
        endPruneRun(repo, run, 'aborted')
      } catch {
        // the next prune or compact marks it aborted (its lease is gone)
      }
    }
    lease?.release()
    lock.release()
  }
}

export function compactReport(c: CompactOutcome, t: CompactTarget, dryRun: boolean): Record<string, unknown> {
  const todoBytes = c.sv.todo.reduce((s, u) => s + u.bytes, 0)
  const todoRaw = c.sv.todo.reduce((s, u) => s + u.rawBytes, 0)
  return {
    dryRun,
    run: c.run,
    level: t.level ?? { largeFrames: DEFAULT_COMPACT_LEVEL, smallFrames: DEFAULT_SMALL_FRAME_LEVEL },
    dictionaries: { on: t.dictionaries !== false, written: c.dicts ?? [], units: c.sv.todo.filter((u) => u.dict || u.wantDict).length },
    units: {
      todo: c.sv.todo.length, todoBytes, todoRawBytes: todoRaw,
      compacted: c.res?.units ?? 0, alreadyCompact: c.sv.done.units, tooYoung: c.sv.young.units,
      damaged: c.res?.damaged ?? [], unreadable: c.sv.unreadable,
    },
    bytes: c.res ? { raw: c.res.rawBytes, before: c.res.bytesBefore, after: c.res.bytesAfter, saved: c.res.bytesBefore - c.res.bytesAfter } : null,
    leftAlone: c.sv.leftAlone,
    priority: c.priority,
  }
}

export function compactText(c: CompactOutcome, t: CompactTarget, dryRun: boolean): string {
  const level = levelWords(t)
  const out: string[] = []
  const todoBytes = c.sv.todo.reduce((s, u) => s + u.bytes, 0)
  const todoRaw = c.sv.todo.reduce((s, u) => s + u.rawBytes, 0)
  if (dryRun) out.push(`would compact ${plural(c.sv.todo.length, 'unit')} (${humanBytes(todoBytes)} stored, ${humanBytes(todoRaw)} raw) at ${level}`)
  else if (c.res) {
    const r = c.res
    out.push(`compacted ${plural(r.units, 'unit')} at ${level}: ${humanBytes(r.bytesBefore)} → ${humanBytes(r.bytesAfter)}${r.bytesBefore ? ` (${((100 * r.bytesAfter) / r.bytesBefore).toFixed(1)} %)` : ''}, ${humanBytes(r.rawBytes)} raw (compact run ${c.run})`)
    for (const d of c.dicts ?? []) out.push(`  trained a ${humanBytes(d.bytes)} dictionary for gens/${String(d.stream).padStart(8, '0')}`)
    for (const d of r.damaged) out.push(`  left as it is: ${d.why} (bfs verify)`)
  }
  if (c.sv.done.units) out.push(`already compacted: ${plural(c.sv.done.units, 'unit')} (${humanBytes(c.sv.done.bytes)})`)
  if (c.sv.young.units) out.push(`not settled yet (younger than --min-age): ${plural(c.sv.young.units, 'unit')} (${humanBytes(c.sv.young.bytes)})`)
  for (const u of c.sv.unreadable) out.push(`  not read: ${u.why} (bfs verify)`)
  for (const a of c.sv.leftAlone) out.push(`  left gens/${String(a.run).padStart(8, '0')} alone: ${a.why}`)
  if (dryRun) out.push('dry run: nothing was changed')
  return out.join('\n') + '\n'
}

/** Options shared by `bfs compact` and `bfs prune --compact`. */
export function compactOptionsOf(o: Record<string, unknown>): CompactTarget & { minAgeMs: number } {
  return { level: (o.level as number | undefined) ?? null, dictionaries: o.dictionary !== false, minAgeMs: (o.minAge as number | undefined) ?? DEFAULT_MIN_AGE_MS }
}

export function registerCompact(program: Command, ctx: Ctx): void {
  program
    .command('compact')
    .description(`recompress settled data of a format 2 repository at a high zstd level (default ${DEFAULT_COMPACT_LEVEL}; volumes' small frames ${DEFAULT_SMALL_FRAME_LEVEL} with a dictionary per stream), keeping frame sizes, at low CPU and I/O priority; resumable, and mounts keep reading`)
    .option('--level <n>', `zstd level to recompress at (1 … 22; default ${DEFAULT_COMPACT_LEVEL}, and ${DEFAULT_SMALL_FRAME_LEVEL} for frames of 256 KiB or less)`, parseLevel)
    .option('--no-dictionary', 'no dictionary for small frames (by default a stream of 32 MiB or more in frames of 256 KiB or less gets one, trained on its own data)')
    .option('--min-age <duration>', 'only data of backups committed at least this long ago (0, 90s, 30m, 12h, 2d, 1w; default 1w)', parseGrace)
    .option('-n, --dry-run', 'say which units would be recompressed; change nothing')
    .option('--wait [seconds]', 'wait for the maintenance lock held by another process (default: forever)')
    .option('--json', 'print JSON lines: progress (message_type "status"), then the result (message_type "summary")')
    .option('-q, --quiet', 'no progress and no summary (warnings and errors still go to stderr)')
    .action(async (o: Record<string, unknown>) => {
      const waitMs = o.wait === undefined ? 0 : o.wait === true ? Number.MAX_SAFE_INTEGER : Number(o.wait) * 1000
      if (!(waitMs >= 0)) throw new BfsError('USAGE', '--wait takes a number of seconds')
      const target = compactOptionsOf(o)
      const dir = ctx.repoDir()
      if (!isFormat2(dir)) {
        ctx.openRepo() // not a repository at all: exit 6 with its own message
        throw new BfsError('NOT_A_REPO', `${path.resolve(dir)} is a format 1 repository: 'bfs compact' needs a format 2 one (bfs init --format 2); nothing was changed`)
      }
      if (isS3Url(dir)) throw new BfsError('BAD_INPUT', S3_REFUSAL)
      const repo = await openRepo2(dir, warn)
      if (repo.readOnly) throw new BfsError('BAD_INPUT', `${repo.dir}: this repository uses a feature this bfs may only read; nothing was compacted`)
      // encrypted: each unit sealed again under a fresh salt (format.md §2.22.3); no dictionaries (not sealed yet)
      if (repo.encrypted) target.dictionaries = false
      const line = new Progress({ action: 'compact', label: 'compacting:', json: !!o.json, quiet: !!o.quiet, unit: 'unit' })
      let c: CompactOutcome
      if (o.dryRun) {
        // reads only unit headers: no lock, no lease, no run
        c = { sv: surveyCompact(repo, target), res: null, run: null, priority: null }
      } else {
        ctx.history.begin(() => dir, 'compact')
        c = await compactNow(repo, { ...target, waitMs, line, history: ctx.history }).finally(() => line.finish())
      }
      if (c.res?.damaged.length) {
        // exit 4, as verify's: damage was found (those units are left as they were)
        ctx.exitCode = EXIT.VERIFY_FAILED
        ctx.history.warn(`${plural(c.res.damaged.length, 'unit')} left as they were: a frame does not check (bfs verify)`)
      }
      if (o.json) return line.summary(compactReport(c, target, !!o.dryRun))
      if (line.textSummary) process.stdout.write(compactText(c, target, !!o.dryRun))
    })
}
