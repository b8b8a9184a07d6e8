/**
 * `bfs merge genA..genB` (issue 16 item 2): consolidates a run of generations of a format 2
 * repository into generation B (revision r+1, the same content), whose directories read in one
 * step, and retires A … B−1 (repo/v2/merge.ts, native-notes/format.md §2.20.5). Under the
 * maintenance lock, as a run of its own; data is not moved (no --relocate yet).
 */
import { openRepo2 } from './open2.js'
import path from 'node:path'
import type { Command } from 'commander'
import { BfsError } from '../repo/errors.js'
import { isFormat2 } from '../repo/v2/detect.js'
import { Lease } from '../repo/v2/lease.js'
import { type MergeOutcome, mergeGenerations } from '../repo/v2/merge.js'
import { Repo2 } from '../repo/v2/repo2.js'
import { withSignals } from './common.js'
import type { Ctx } from './context.js'
import { humanBytes } from './output.js'

const warn = (m: string): void => void process.stderr.write(`bfs: ${m}\n`)

/** `genA..genB` or `A..B` → [A, B]. */
export function parseMergeRange(v: string): [number, number] {
  const m = /^(?:gen)?(\d{1,8})\.\.(?:gen)?(\d{1,8})$/.exec(v.trim())
  if (!m) throw new BfsError('USAGE', `${JSON.stringify(v)}: name the range as genA..genB (e.g. gen1..gen20)`)
  const [a, b] = [Number(m[1]), Number(m[2])]
  if (a < 1 || b < 1) throw new BfsError('USAGE', `${v}: generation numbers start at 1`)
  if (a > b) throw new BfsError('USAGE', `${v}: the range ends before it starts`)
  return [a, b]
}

function printText(r: MergeOutcome): void {
  const out: string[] = []
  for (const id of r.finished) out.push(`finished retiring gen${id} (an earlier forget or merge was interrupted after retiring it)`)
  if (r.run === null) out.push(`gen${r.target} was already merged from gen${r.from} (rev ${r.rev}); only retirements were left`)
  else {
    out.push(`gen${r.target} rev ${r.rev} committed by merge run ${r.run}: ${r.fold.dirs} directories, ${r.fold.deltasFolded} DIRDELTAs folded into DIRs, ${r.fold.dirPieces} DIR and ${r.fold.indexPieces} index pieces written (${humanBytes(r.fold.pieceBytes)}), ${r.fold.reused} kept`)
  }
  out.push(r.retired.length ? `retired ${r.retired.map((id) => `gen${id}`).join(', ')} (merged into gen${r.target}; no data was deleted or moved: bfs prune reclaims what nothing needs)` : 'no generation left to retire')
  process.stdout.write(out.join('\n') + '\n')
}

export function registerMerge(program: Command, ctx: Ctx): void {
  program
    .command('merge')
    .description('consolidate generations genA..genB of a format 2 repository into genB (same content, a new revision whose directories read in one step) and retire genA … genB-1; data stays where it is')
    .argument('<range>', 'genA..genB: the generations to merge (those of genB\'s source, host and group); genB keeps its number')
    .option('--wait [seconds]', 'wait for the maintenance lock held by another process (default: forever)')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', '\nData blocks are not moved: genB\'s files keep reading their blocks from the streams of the runs that stored them (no --relocate yet). The generations before genB are retired as bfs forget retires them; bfs prune then reclaims what no generation needs. Later generations that share data or pieces with the merged ones keep working. Rerunning an interrupted merge finishes it.')
    .action(async (rangeArg: string, o: Record<string, unknown>) => {
      const [from, to] = parseMergeRange(rangeArg)
      const waitMs = o.wait === undefined ? 0 : o.wait === true ? Number.MAX_SAFE_INTEGER : Number(o.wait) * 1000
      if (!(waitMs >= 0)) throw new BfsError('USAGE', '--wait takes a number of seconds')
      const dir = ctx.repoDir()
      if (!isFormat2(dir)) {
        ctx.openRepo() // not a repository at all: exit 6 with its own message
        throw new BfsError('NOT_A_REPO', `${path.resolve(dir)} is a format 1 repository: 'bfs merge' needs a format 2 one (bfs init --format 2); nothing was changed`)
      }
      const repo = await openRepo2(dir, warn)
      if (repo.readOnly) throw new BfsError('BAD_INPUT', `${repo.dir}: this repository uses a feature this bfs may only read; nothing was merged`)
      repo.manifest(to) // a target that is not there fails before the lock is taken
      ctx.history.begin(() => dir, 'merge', { gens: [to] })
      const lock = await Lease.maintenance(repo, 'merge', { waitMs, onWait: warn })
      let lease: Lease | null = null
      let r: MergeOutcome
      try {
        lease = Lease.take(repo, 'merge', { command: 'merge' })
        r = await withSignals((signal) => mergeGenerations(repo, { from, to, lease: lease!, signal }))
        ctx.history.set({ gens: [...r.retired, to] })
      } finally {
        lease?.release()
        lock.release()
      }
      if (o.json) {
        process.stdout.write(JSON.stringify({ generation: `gen${r.target}`, target: r.target, from: r.from, rev: r.rev, run: r.run, retired: r.retired, finished: r.finished, fold: r.fold }) + '\n')
      } else printText(r)
    })
}
