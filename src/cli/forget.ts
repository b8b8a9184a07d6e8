/**
 * `bfs forget` (issue 16): removes generations from a format 2 repository, by name or by a
 * retention policy with restic's rules (repo/v2/retention.ts), under the maintenance lock
 * (repo/v2/lease.ts). Forgetting retires the manifest (repo/v2/forget.ts) and deletes no data:
 * the other generations read as before. Format 1 repositories are refused (exit 6).
 */
import { openRepo2 } from './open2.js'
import path from 'node:path'
import { InvalidArgumentError, Option, type Command } from 'commander'
import { BfsError } from '../repo/errors.js'
import { parseGenRef } from '../repo/repository.js'
import { isFormat2 } from '../repo/v2/detect.js'
import { finishInterrupted, GROUP_FIELDS, planByIds, planByPolicy, retireGeneration, type ForgetPlan, type GroupField, type PlannedGen } from '../repo/v2/forget.js'
import { Lease } from '../repo/v2/lease.js'
import { Repo2 } from '../repo/v2/repo2.js'
import { BUCKET_RULES, isEmptyPolicy, NO_POLICY, parseKeepCount, parseWithin, type Policy, type Within } from '../repo/v2/retention.js'
import { SOURCE_HELP, withSignals } from './common.js'
import type { Ctx } from './context.js'
import { printText as printPrune, pruneNow, report as pruneReport, type PruneOutcome } from './prune.js'

const warn = (m: string): void => void process.stderr.write(`bfs: ${m}\n`)

const keepCount = (name: string) => (v: string): number => {
  const n = parseKeepCount(v)
  if (n === null) throw new InvalidArgumentError(`${name} takes a whole number or 'unlimited'`)
  return n
}

const within = (v: string): Within => {
  const w = parseWithin(v)
  if (!w) throw new InvalidArgumentError('a duration like 2d, 1w3d, 12h or 1y5m7d2h (y years, m months, w weeks, d days, h hours)')
  return w
}

const groupBy = (v: string): GroupField[] => {
  const fields = v.split(',').map((f) => f.trim()).filter((f) => f !== '')
  for (const f of fields) if (!(GROUP_FIELDS as readonly string[]).includes(f)) throw new InvalidArgumentError(`group by ${GROUP_FIELDS.join(', ')} (comma-separated), or '' for one group`)
  return [...new Set(fields)] as GroupField[]
}

/** genN, N, latest, latest~K (with --source), and ranges genA-genB (A-B): generation ids, ascending. */
function namedIds(repo: Repo2, refs: string[], source: string | undefined): number[] {
  const ids = new Set<number>()
  for (const ref of refs) {
    const r = /^(?:gen)?(\d+)-(?:gen)?(\d+)$/.exec(ref)
    if (r) {
      const [a, b] = [Number(r[1]), Number(r[2])]
      if (a > b) throw new BfsError('USAGE', `${ref}: the range ends before it starts`)
      const inRange = repo.generationIds().filter((id) => id >= a && id <= b)
      if (inRange.length === 0) throw new BfsError('NO_SUCH_GEN', `no generations in ${ref} in ${repo.dir}`)
      for (const id of inRange) ids.add(id)
      continue
    }
    const p = parseGenRef(ref)
    ids.add('id' in p && source === undefined ? p.id : repo.resolve(ref, source).id)
  }
  return [...ids].sort((a, b) => a - b)
}

function groupName(g: PlannedGen['group']): string {
  const parts = Object.entries(g).map(([k, v]) => `${k} ${v === '' ? "''" : v}`)
  return parts.length ? parts.join(', ') : 'all generations'
}

function printText(plan: ForgetPlan, byPolicy: boolean, dryRun: boolean, finished: number[], forgotten: number[]): void {
  const out: string[] = []
  for (const id of finished) out.push(`${dryRun ? 'would finish' : 'finished'} forgetting gen${id} (an earlier forget was interrupted after retiring it)`)
  if (byPolicy) {
    const groups = new Map<string, PlannedGen[]>()
    for (const g of plan.gens) {
      const k = JSON.stringify(g.group)
      if (!groups.has(k)) groups.set(k, [])
      groups.get(k)!.push(g)
    }
    for (const list of groups.values()) {
      const kept = list.filter((g) => g.keep).length
      out.push(`${groupName(list[0]!.group)}: keep ${kept}, ${dryRun ? 'would remove' : 'remove'} ${list.length - kept}`)
      for (const g of list) out.push(`  ${g.keep ? 'keep  ' : 'remove'}  gen${g.id}  ${g.time}  ${g.source}${g.label ? `  ${g.label}` : ''}${g.keep ? `  (${g.reasons.join(', ')})` : ''}`)
    }
    for (const d of plan.damaged) out.push(`keep gen${d.id}: damaged, its manifest does not read (a policy never removes it): ${d.problem}`)
  } else for (const g of plan.gens) out.push(`${dryRun ? 'would remove' : 'remove'}  gen${g.id}  ${g.time}  ${g.source}${g.label ? `  ${g.label}` : ''}`)
  const gone = (dryRun ? plan.gens.filter((g) => !g.keep).map((g) => g.id) : [...forgotten]).sort((a, b) => a - b)
  const names = gone.map((id) => `gen${id}`).join(', ')
  if (dryRun) out.push(gone.length ? `dry run: would forget ${names}; nothing was changed` : 'dry run: nothing to forget; nothing was changed')
  else out.push(gone.length ? `forgot ${names} (no data was deleted: bfs prune reclaims it)` : 'nothing to forget')
  process.stdout.write(out.join('\n') + '\n')
}

export function registerForget(program: Command, ctx: Ctx): void {
  program
    .command('forget')
    .description('remove generations of a format 2 repository, by name or by a retention policy (restic\'s --keep-* rules, per host and source); deletes no data, so the other generations read as before')
    .argument('[gens...]', 'generations to forget: N, genN, latest, latest~K, or ranges genA-genB')
    .option('--keep-last <n>', 'keep the n newest generations', keepCount('--keep-last'))
    .option('--keep-hourly <n>', 'keep the newest generation of each of the last n hours that have one', keepCount('--keep-hourly'))
    .option('--keep-daily <n>', 'keep the newest generation of each of the last n days that have one', keepCount('--keep-daily'))
    .option('--keep-weekly <n>', 'keep the newest generation of each of the last n ISO weeks that have one', keepCount('--keep-weekly'))
    .option('--keep-monthly <n>', 'keep the newest generation of each of the last n months that have one', keepCount('--keep-monthly'))
    .option('--keep-yearly <n>', 'keep the newest generation of each of the last n years that have one', keepCount('--keep-yearly'))
    .option('--keep-within <duration>', 'keep every generation newer than the newest one minus this (2d, 1w3d, 12h, 1y5m7d2h; m = months)', within)
    .addOption(new Option('--group-by <fields>', "apply the policy per group of generations with the same values of these (host, source, label; '' for one group)").argParser(groupBy).default(['host', 'source'] as GroupField[], 'host,source'))
    .option('--source <path>', `${SOURCE_HELP}; with a policy, only this source's generations are considered`)
    .option('-n, --dry-run', 'say what would be kept (and which rule keeps it) and what would be removed; change nothing')
    .option('--wait [seconds]', 'wait for the maintenance lock held by another process (default: forever)')
    .option('--prune', 'then run bfs prune: reclaim the space nothing needs any more (with --dry-run: not simulated)')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', '\nCount options take a whole number or \'unlimited\'. Rules are independent: a generation is kept when any rule keeps it. With no generation named and no --keep-* rule, forget refuses (it would forget everything).')
    .action(async (refs: string[], o: Record<string, unknown>) => {
      const policy: Policy = { ...NO_POLICY, last: (o.keepLast as number | undefined) ?? 0, within: (o.keepWithin as Within | undefined) ?? null }
      for (const r of BUCKET_RULES) policy[r] = (o[`keep${r[0]!.toUpperCase()}${r.slice(1)}`] as number | undefined) ?? 0
      const byPolicy = !isEmptyPolicy(policy)
      const anyKeep = Object.keys(o).some((k) => k.startsWith('keep'))
      if (refs.length && anyKeep) throw new BfsError('USAGE', 'name generations or give --keep-* rules, not both')
      if (!refs.length && !byPolicy) {
        throw new BfsError('USAGE', anyKeep
          ? 'every --keep-* rule given is 0: that would forget every generation; nothing was changed'
          : 'say what to forget: generations by name, or a policy (--keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, --keep-within); nothing was changed')
      }
      const waitMs = o.wait === undefined ? 0 : o.wait === true ? Number.MAX_SAFE_INTEGER : Number(o.wait) * 1000
      if (!(waitMs >= 0)) throw new BfsError('USAGE', '--wait takes a number of seconds')
      const dir = ctx.repoDir()
      if (!isFormat2(dir)) {
        ctx.openRepo() // not a repository at all: exit 6 with its own message
        throw new BfsError('NOT_A_REPO', `${path.resolve(dir)} is a format 1 repository: 'bfs forget' needs a format 2 one (bfs init --format 2); nothing was changed`)
      }
      const source = typeof o.source === 'string' ? path.resolve(o.source) : undefined
      const repo = await openRepo2(dir, warn)
      if (repo.readOnly) throw new BfsError('BAD_INPUT', `${repo.dir}: this repository uses a feature this bfs may only read; nothing was forgotten`)
      const plan = (exclude: number[] = []): ForgetPlan => {
        if (!byPolicy) return planByIds(repo, namedIds(repo, refs, source).filter((id) => !exclude.includes(id)))
        const p = planByPolicy(repo, policy, o.groupBy as GroupField[], 'local', new Set(exclude))
        return source === undefined ? p : { gens: p.gens.filter((g) => g.source === source), damaged: p.damaged }
      }
      let finished: number[]
      let chosen: ForgetPlan
      const forgotten: number[] = []
      const sources: string[] = source === undefined ? [] : [source]
      if (o.dryRun) {
        finished = finishInterrupted(repo, true)
        chosen = plan(finished)
      } else {
        plan() // a name that does not resolve fails here, before the lock is taken
        // recorded from here (a dry run changes nothing, and a command line refused above is not a run)
        ctx.history.begin(() => dir, 'forget', { sources: source === undefined ? [] : [source] })
        const lock = await Lease.maintenance(repo, 'forget', { waitMs, onWait: warn })
        try {
          await withSignals(async (signal) => {
            finished = finishInterrupted(repo)
            ctx.history.set({ gens: finished })
            chosen = plan()
            const retiredBy = repo.highestId()
            for (const g of chosen.gens) {
              if (g.keep) continue
              if (signal.aborted) throw new BfsError('INTERRUPTED', `interrupted: forgot ${forgotten.length ? forgotten.map((id) => `gen${id}`).join(', ') : 'nothing'}; the others are kept`)
              retireGeneration(repo, g.id, retiredBy)
              forgotten.push(g.id)
              sources.push(g.source)
              ctx.history.set({ gens: [...finished, ...forgotten], sources })
            }
          })
        } finally {
          lock.release()
        }
      }
      // --prune: after the forget's lock is released, a prune takes it again (its own run)
      let pruned: PruneOutcome | null = null
      // a prune that fails (a held lock, damage) fails the command, after the forget it follows is reported
      let pruneError: unknown = null
      if (o.prune && !o.dryRun) {
        try {
          pruned = await pruneNow(repo, ctx, { graceMs: 0, waitMs })
        } catch (err) {
          pruneError = err
        }
      }
      if (o.json) {
        process.stdout.write(JSON.stringify({
          dryRun: !!o.dryRun,
          finished: finished!,
          generations: chosen!.gens.map((g) => ({ generation: `gen${g.id}`, id: g.id, time: g.time, host: g.host, source: g.source, label: g.label, group: g.group, action: g.keep ? 'keep' : 'remove', reasons: g.reasons })),
          damaged: chosen!.damaged.map((d) => ({ generation: `gen${d.id}`, id: d.id, problem: d.problem })),
          forgotten,
          ...(o.prune ? { prune: pruned ? pruneReport(pruned.sv, pruned.marks, pruned.d, false, pruned.run, pruned.rewrite) : pruneError ? { error: (pruneError as Error).message } : null } : {}),
        }) + '\n')
      } else {
        printText(chosen!, byPolicy, !!o.dryRun, finished!, forgotten)
        if (pruned) printPrune(pruned.sv, pruned.marks, pruned.d, false, pruned.run, pruned.rewrite)
        else if (o.prune && !pruneError) process.stdout.write('prune: not simulated by --dry-run (after forgetting, bfs prune --dry-run says what it would reclaim)\n')
      }
      if (pruneError) throw pruneError
    })
}
