/**
 * `bfs history`: the runs recorded in the repository (repo/history.ts, format.md §2.8.6), one
 * line each, oldest first (like a log), or `--json`. Both formats.
 */
import path from 'node:path'
import type { Command } from 'commander'
import { historySealer, readHistory, type ListedRecord } from '../repo/history.js'
import { isFormat2 } from '../repo/v2/detect.js'
import { openRepo2 } from './open2.js'
import { int } from './common.js'
import type { Ctx } from './context.js'
import { count, humanBytes, shortDuration } from './output.js'

const warn = (m: string): void => void process.stderr.write(`bfs: warning: ${m}\n`)

/** Local time as `2026-12-02 23:40:01`. */
function localTime(iso: string): string {
  const d = new Date(iso)
  const p = (n: number): string => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`
}

/** Seconds as `0.4s`, `12.3s`, `3m05s`, `2h07m`. */
function duration(s: number): string {
  return s < 60 ? `${s.toFixed(1)}s` : shortDuration(s)
}

function seconds(r: ListedRecord): number | null {
  return r.ended === null ? null : Math.max(0, (Date.parse(r.ended) - Date.parse(r.started)) / 1000)
}

/** gen3, gen3,gen5, gen3-gen7 (a run of consecutive ids). */
function gensText(gens: number[]): string {
  if (gens.length === 0) return '-'
  const parts: string[] = []
  for (let i = 0; i < gens.length; ) {
    let j = i
    while (j + 1 < gens.length && gens[j + 1] === gens[j]! + 1) j++
    parts.push(j - i >= 2 ? `gen${gens[i]}-gen${gens[j]}` : gens.slice(i, j + 1).map((g) => `gen${g}`).join(','))
    i = j + 1
  }
  return parts.join(',')
}

const BYTE_WORDS: Array<[string, string]> = [['read', 'read'], ['stored', 'stored'], ['metadata', 'metadata'], ['restored', 'restored'], ['verified', 'verified']]

function line(r: ListedRecord): string {
  const secs = seconds(r)
  const dur = secs !== null ? duration(secs) : r.result === 'running' ? `${duration(Math.max(0, (Date.now() - Date.parse(r.started)) / 1000))}…` : '-'
  const result = r.exit !== null && r.exit !== 0 ? `${r.result} (${r.exit})` : r.result
  const bytes = BYTE_WORDS.filter(([k]) => r.bytes[k] !== undefined).map(([k, w]) => `${w} ${humanBytes(r.bytes[k]!)}`)
  const extra = [
    bytes.join(', '),
    r.warnings ? count(r.warnings, 'warning') : '',
    r.result === 'interrupted' && r.state === 'running' ? `process ${r.pid} on ${r.host} is gone` : '',
    r.result === 'running' ? `pid ${r.pid} on ${r.host}` : '',
    r.error && r.result !== 'ok' ? `error: ${r.error}` : '',
  ].filter(Boolean)
  return [localTime(r.started), r.command.padEnd(7), result.padEnd(16), dur.padStart(7), gensText(r.gens), r.sources.join(' ') || '-', ...extra].join('  ')
}

function json(r: ListedRecord): Record<string, unknown> {
  return {
    id: r.id, command: r.command, result: r.result, recorded: r.state, exit: r.exit, started: r.started, ended: r.ended, seconds: seconds(r),
    host: r.host, user: r.user, pid: r.pid, argv: r.argv, sources: r.sources, generations: r.gens, bytes: r.bytes,
    warnings: r.warnings, firstWarnings: r.firstWarnings, error: r.error,
  }
}

export function registerHistory(program: Command, ctx: Ctx): void {
  program
    .command('history')
    .description('list the runs recorded in the repository (backup, restore, verify, forget, prune, merge, compact), oldest first: start, command, result (ok, partial, failed, interrupted, running), duration, generations, sources, bytes, warnings, error')
    .option('--source <path>', 'only the runs about this source')
    .option('--last <n>', 'only the last n runs (after --source)', int('--last', 1, Number.MAX_SAFE_INTEGER))
    .option('--json', 'print a JSON array of the runs')
    .addHelpText('after', '\nEvery run of backup, restore, verify, forget, prune, merge and compact (not a dry run) is recorded in the repository when it starts and again when it ends, failed or interrupted ones too (a command line refused before the run starts is not); a run whose process is gone without finishing its record (kill -9, a crash) is listed as interrupted. Read-only commands (generations, ls, cat, find, log, diff, mount, history) are not recorded, nor are migrate and recall; nor are restore and verify by a user who cannot write the repository. A record that does not read is skipped with a warning.')
    .action(async (o: { source?: string; last?: number; json?: boolean }) => {
      const dir = ctx.repoDir()
      // an encrypted repository (§2.22) is unlocked: its records are sealed
      const sealer = isFormat2(dir) ? (await openRepo2(dir, warn), historySealer(dir)) : (ctx.openRepo(), undefined) // not a repository: exit 6, as every command
      let rows = readHistory(dir, warn, sealer)
      if (o.source !== undefined) {
        const src = path.resolve(o.source)
        rows = rows.filter((r) => r.sources.includes(src))
      }
      if (o.last !== undefined) rows = rows.slice(-o.last)
      if (o.json) return void process.stdout.write(JSON.stringify(rows.map(json)) + '\n')
      process.stdout.write(rows.map((r) => line(r) + '\n').join(''))
    })
}
