/**
 * `bfs prune` (issue 16 item 3): reclaims the space of a format 2 repository that no
 * committed generation, no protected retired one and no running backup references
 * (native-notes/format.md §2.20.7, repo/v2/prune.ts): units with no live block, packs with no
 * live piece, emptied streams' records, unprotected retired manifests, aborted runs' data; and
 * the dead blocks of partly used units, rewritten (`--max-unused`, default 2 %).
 * Under the maintenance lock, as a run of its own; mounts, restores and backups keep running
 * (their leases pin what they use). `--dry-run` changes nothing.
 */
import { openRepo2 } from './open2.js'
import { isS3Url } from '../store/s3-url.js'
import path from 'node:path'
import type { Command } from 'commander'
import { BfsError, EXIT } from '../repo/errors.js'
import { recoverRuns2 } from '../repo/commit/generation2.js'
import { isFormat2 } from '../repo/v2/detect.js'
import { Lease } from '../repo/v2/lease.js'
import {
  type Decision, type Marks, type Survey, DEFAULT_MAX_UNUSED_PCT, claimPruneRun, decide, dropOldPlans, endPruneRun, mark, recheckLeases, recoverMaintenanceRuns, rootsOf, survey, sweep, writePlan,
} from '../repo/v2/prune.js'
import { type CompactResult, compactUnits } from '../repo/v2/compact.js'
import { InvalidArgumentError } from 'commander'
import { Repo2 } from '../repo/v2/repo2.js'
import type { RunRecord } from '../format/v2/records.js'
import { parseGrace, withSignals } from './common.js'
import { type CompactOutcome, S3_REFUSAL, compactNow, compactOptionsOf, compactReport, compactText, parseLevel } from './compact.js'
import { DEFAULT_COMPACT_LEVEL, DEFAULT_SMALL_FRAME_LEVEL, surveyCompact } from '../repo/v2/compact.js'
import type { Ctx } from './context.js'
import { humanBytes } from './output.js'

const warn = (m: string): void => void process.stderr.write(`bfs: ${m}\n`)

export { parseGrace }

/** `--max-unused`: `5%`, `5`, `0`, `100%` or `unlimited` (= 100: no unit is rewritten) → percent. */
export function parseMaxUnused(v: string): number {
  const t = v.trim().toLowerCase()
  if (t === 'unlimited') return 100
  const m = /^(\d{1,3}(?:\.\d+)?)%?$/.exec(t)
  if (!m || !(Number(m[1]) <= 100)) throw new InvalidArgumentError('a percentage from 0% to 100%, or unlimited')
  return Number(m[1])
}

const plural = (n: number, w: string): string => `${n} ${w}${n === 1 ? '' : 's'}`
const gensOf = (names: string[]): string => names.map((n) => n.replace(/^gen-0*(\d+)-r0*(\d+)$/, 'gen$1 rev $2')).join(', ')

export function report(sv: Survey, marks: Marks, d: Decision, dryRun: boolean, run: number | null, rw: CompactResult | null = null): object {
  return {
    dryRun,
    run,
    roots: marks.roots,
    committed: sv.committed.map((m) => m.id),
    retired: {
      dropped: d.plan.retiredDrop,
      kept: d.retiredKept.map((r) => ({ name: r.name, generation: `gen${r.id}`, rev: r.rev, why: r.why })),
    },
    pieces: marks.pieces,
    units: {
      deleted: d.units.delete, deletedBytes: d.units.deleteBytes, partlyUsed: d.units.partly, partlyUsedDeadBytes: d.units.partlyDeadBytes, zeroedBefore: d.units.zeroed, whole: d.units.kept,
      // step 7: chosen, their bytes before, and after (the estimate in a dry run); unused bytes left in units
      rewritten: rw ? rw.units : d.units.rewrite, rewrittenBytesBefore: rw ? rw.bytesBefore : d.units.rewriteBytes, rewrittenBytesAfter: rw ? rw.bytesAfter : d.units.rewriteBytes - d.units.rewriteReclaim,
      unusedLeft: d.units.unusedLeft, usedBytes: d.units.usedBytes, damaged: rw ? rw.damaged : [], unreadable: d.unreadableUnits,
    },
    packs: { deleted: d.plan.packs.delete.length, kept: d.packsKept },
    streams: { dropped: d.plan.streamsDrop },
    abortedRuns: d.plan.abortedDrop,
    leftAlone: d.leftAlone,
    bytes: { live: d.plan.bytes.live, dead: d.plan.bytes.dead, reclaimable: d.plan.bytes.reclaim },
  }
}

export function printText(sv: Survey, marks: Marks, d: Decision, dryRun: boolean, run: number | null, rw: CompactResult | null = null): void {
  const out: string[] = []
  const w = dryRun ? 'would delete' : 'deleted'
  out.push(`roots: ${plural(sv.committed.length, 'committed generation')}${d.retiredKept.length ? `, ${plural(d.retiredKept.length, 'retired one')} kept` : ''}; ${plural(marks.pieces, 'piece')} walked`)
  for (const r of d.retiredKept) out.push(`  kept retired gen${r.id} rev ${r.rev}: ${r.why}`)
  for (const a of d.leftAlone) out.push(`  left gens/${String(a.run).padStart(8, '0')} alone: ${a.why}`)
  out.push(`bytes: live ${humanBytes(d.plan.bytes.live)}, dead ${humanBytes(d.plan.bytes.dead)}, reclaimable ${humanBytes(d.plan.bytes.reclaim)}`)
  out.push(`${w}: ${plural(d.units.delete, 'unit')} (${humanBytes(d.units.deleteBytes)}), ${plural(d.plan.packs.delete.length, 'pack')}, the records of ${plural(d.plan.streamsDrop.length, 'emptied stream')}, ${plural(d.plan.retiredDrop.length, 'retired manifest')}${d.plan.retiredDrop.length ? ` (${gensOf(d.plan.retiredDrop)})` : ''}, data of ${plural(d.plan.abortedDrop.length, 'aborted run')}`)
  if (d.units.partly) {
    const r = rw ? `rewrote ${rw.units} of them: ${humanBytes(rw.bytesBefore)} → ${humanBytes(rw.bytesAfter)}` : `${dryRun ? 'would rewrite' : 'rewrote'} ${d.units.rewrite} of them: ${humanBytes(d.units.rewriteBytes)} → ~${humanBytes(d.units.rewriteBytes - d.units.rewriteReclaim)}`
    out.push(`partly used: ${plural(d.units.partly, 'unit')} holding ~${humanBytes(d.units.partlyDeadBytes)} of dead data; ${r}; ~${humanBytes(d.units.unusedLeft)} unused left`)
  }
  for (const x of rw?.damaged ?? []) out.push(`  left ${x.key} as it is: ${x.why} (bfs verify)`)
  for (const x of d.unreadableUnits) out.push(`  left ${x.key} as it is: ${x.why} (bfs verify)`)
  out.push(`kept: ${plural(d.units.kept, 'fully used unit')}${d.units.zeroed ? `, ${plural(d.units.zeroed, 'unit')} an earlier prune rewrote` : ''}, ${plural(d.packsKept, 'pack')}`)
  out.push(dryRun ? `dry run: would reclaim ~${humanBytes(d.plan.bytes.reclaim)}; nothing was changed` : `reclaimed ~${humanBytes(d.plan.bytes.reclaim - d.units.rewriteReclaim + (rw ? rw.bytesBefore - rw.bytesAfter : 0))} (prune run ${run})`)
  process.stdout.write(out.join('\n') + '\n')
}

/**
 * The --max-unused a prune uses: on S3 no unit is rewritten (readers of a unit it replaces
 * would fail, as compact's S3_REFUSAL says): the default becomes unlimited, and an explicit
 * value below 100 % is refused (BAD_INPUT, nothing changed).
 */
export function maxUnusedFor(repo: Repo2, requested: number | undefined): { pct: number; s3: boolean } {
  if (!isS3Url(repo.dir)) return { pct: requested ?? DEFAULT_MAX_UNUSED_PCT, s3: false }
  if (requested !== undefined && requested < 100) throw new BfsError('BAD_INPUT', "'bfs prune --max-unused' below 100% is not supported on an S3 repository yet (readers of a unit it rewrites would fail); nothing was pruned")
  return { pct: 100, s3: true }
}

export interface PruneOutcome {
  sv: Survey
  marks: Marks
  d: Decision
  run: number
  /** Step 7's outcome. */
  rewrite: CompactResult
}

/**
 * A prune under the maintenance lock (steps of format.md §2.20.7 "as built"): lock, lease,
 * recovery, run P, survey, mark, decide, plan, leases again, sweep, run committed, older plans
 * deleted. The caller has begun the history record (`bfs forget --prune` joins its own).
 */
export async function pruneNow(repo: Repo2, ctx: Ctx, o: { graceMs: number; waitMs: number; maxUnusedPct?: number }): Promise<PruneOutcome> {
  const lock = await Lease.maintenance(repo, 'prune', { waitMs: o.waitMs, onWait: warn })
  let lease: Lease | null = null
  let run: RunRecord | null = null
  let done = false
  try {
    lease = Lease.take(repo, 'prune', { command: 'prune' })
    return await withSignals(async (signal) => {
      const check = (): void => {
        if (signal.aborted) throw new BfsError('INTERRUPTED', 'prune interrupted; every generation is intact, and the next prune finishes the job')
      }
      await recoverRuns2(repo) // dead backups of this host (and of any host, by their leases)
      run = claimPruneRun(repo, lease!.name)
      recoverMaintenanceRuns(repo, run.run)
      const sv = survey(repo, o.graceMs, lease!.name)
      check()
      const marks = await mark(repo, rootsOf(sv))
      check()
      const d = decide(repo, sv, marks, maxUnusedFor(repo, o.maxUnusedPct).pct)
      writePlan(repo, run.run, d)
      recheckLeases(repo, sv, lease!.name)
      ctx.history.add({ gens: sv.retired.filter((r) => !r.protected).map((r) => r.id), bytes: { reclaimed: d.plan.bytes.reclaim } })
      // step 7: partly used units rewritten (compact's machinery: worker threads, atomic replace, one at a time durable)
      const rewrite = await compactUnits(repo, d.rewrite, repo.config.defaults.level, () => check())
      sweep(repo, d, check)
      endPruneRun(repo, run, 'committed')
      done = true
      dropOldPlans(repo, run.run)
      return { sv, marks, d, run: run.run, rewrite }
    })
  } finally {
    if (run && !done) {
      try {
        endPruneRun(repo, run, 'aborted')
      } catch {
        // the next prune marks it aborted (its lease is gone)
      }
    }
    lease?.release()
    lock.release()
  }
}

export function registerPrune(program: Command, ctx: Ctx): void {
  program
    .command('prune')
    .description('reclaim the space of data no generation references any more (after forget) in a format 2 repository: deletes whole units, packs and retired manifests nothing needs, and rewrites partly used units (--max-unused); mounts, restores and backups may keep running')
    .option('-n, --dry-run', 'say what would be reclaimed (bytes live, dead, reclaimable; units and packs to delete, units to rewrite); change nothing')
    .option('--max-unused <percent>', `rewrite partly used units (their dead blocks zeroed) until the unused data left in units is at most this share of them, the units with the most unused first (restic's meaning); 0 rewrites every partly used unit, 100% or unlimited none (only units with no live block are deleted) (default ${DEFAULT_MAX_UNUSED_PCT}%)`, parseMaxUnused)
    .option('--grace <duration>', 'keep retired (forgotten) generations this long after they were forgotten, as roots (0, 90s, 30m, 12h, 2d, 1w)', parseGrace, 0)
    .option('--wait [seconds]', 'wait for the maintenance lock held by another process (default: forever)')
    .option('--json', 'print the result as JSON')
    .option('--compact', 'then recompress settled data at a high zstd level (bfs compact)')
    .option('--level <n>', `with --compact: the zstd level (1 … 22; default ${DEFAULT_COMPACT_LEVEL}, and ${DEFAULT_SMALL_FRAME_LEVEL} for frames of 256 KiB or less)`, parseLevel)
    .option('--no-dictionary', 'with --compact: no dictionary for small frames')
    .option('--min-age <duration>', 'with --compact: only data of backups committed at least this long ago (default 1w)', parseGrace)
    .action(async (o: Record<string, unknown>) => {
      if ((o.level !== undefined || o.minAge !== undefined || o.dictionary === false) && !o.compact) throw new BfsError('USAGE', '--level, --min-age and --no-dictionary go with --compact')
      if (o.compact && isS3Url(ctx.repoDir())) throw new BfsError('BAD_INPUT', S3_REFUSAL.replace("'bfs compact'", "'bfs prune --compact'"))
      const waitMs = o.wait === undefined ? 0 : o.wait === true ? Number.MAX_SAFE_INTEGER : Number(o.wait) * 1000
      if (!(waitMs >= 0)) throw new BfsError('USAGE', '--wait takes a number of seconds')
      const graceMs = o.grace as number
      const dir = ctx.repoDir()
      if (!isFormat2(dir)) {
        ctx.openRepo() // not a repository at all: exit 6 with its own message
        throw new BfsError('NOT_A_REPO', `${path.resolve(dir)} is a format 1 repository: 'bfs prune' needs a format 2 one (bfs init --format 2); nothing was changed`)
      }
      const repo = await openRepo2(dir, warn)
      if (repo.readOnly) throw new BfsError('BAD_INPUT', `${repo.dir}: this repository uses a feature this bfs may only read; nothing was pruned`)
      let sv: Survey
      let marks: Marks
      let d: Decision
      let runNo: number | null = null
      let rw: CompactResult | null = null
      const mu = maxUnusedFor(repo, o.maxUnused as number | undefined)
      const maxUnusedPct = mu.pct
      if (o.dryRun) {
        // reads only: no lock, no lease, no run, no history (a concurrent prune may delete what it reads: an error, never damage)
        sv = survey(repo, graceMs, null)
        marks = await mark(repo, rootsOf(sv))
        d = decide(repo, sv, marks, maxUnusedPct)
      } else {
        ctx.history.begin(() => dir, 'prune')
        const done = await pruneNow(repo, ctx, { graceMs, waitMs, maxUnusedPct })
        sv = done.sv
        marks = done.marks
        d = done.d
        runNo = done.run
        rw = done.rewrite
        if (rw.damaged.length) ctx.exitCode = EXIT.VERIFY_FAILED // as compact: a unit that does not check is left as it is
      }
      let compacted: CompactOutcome | null = null
      const c = compactOptionsOf(o)
      if (repo.encrypted) c.dictionaries = false // (no sealed dictionaries yet: format.md §2.22.3)
      if (o.compact) {
        // after the prune (dead units are not recompressed), under the maintenance lock again
        compacted = o.dryRun ? { sv: surveyCompact(repo, c), res: null, run: null, priority: null } : await compactNow(repo, { ...c, waitMs, history: ctx.history })
        if (compacted.res?.damaged.length) ctx.exitCode = EXIT.VERIFY_FAILED // as bfs compact: a unit that does not check, left as it is
      }
      if (o.json) process.stdout.write(JSON.stringify({ ...report(sv!, marks!, d!, !!o.dryRun, runNo, rw), ...(compacted ? { compact: compactReport(compacted, c, !!o.dryRun) } : {}) }) + '\n')
      else {
        printText(sv!, marks!, d!, !!o.dryRun, runNo, rw)
        if (compacted) process.stdout.write(compactText(compacted, c, !!o.dryRun))
      }
    })
}
