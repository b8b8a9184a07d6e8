import type { Command } from 'commander'
import { isFormat2 } from '../repo/v2/detect.js'
import { lsV2 } from './v2.js'
import type { Manifest } from '../format/manifest.js'
import { readGroup } from '../repo/groups.js'
import { humanBytes } from './output.js'
import type { Ctx } from './context.js'

/** `bfs generations` (and `bfs ls` without an argument): the table, or JSON. */
export function listGenerations(ctx: Ctx, o: { json?: boolean; group?: string }): void {
  const repo = ctx.openRepo()
  if (o.group) readGroup(repo, o.group)
  const gens = o.group ? repo.generations(o.group) : repo.generations()
  // damaged generations are listed too (their group is unknown), and named on stderr; the exit status stays 0
  const damaged = repo.damagedGenerations()
  const rows: Array<{ id: number; m?: Manifest; bad?: (typeof damaged)[number] }> = [...gens.map((m) => ({ id: m.id, m })), ...damaged.map((d) => ({ id: d.id, bad: d }))].sort((a, b) => a.id - b.id)
  for (const d of damaged) process.stderr.write(`bfs: warning: gen${d.id} is damaged: ${d.problem}\n`)
  if (damaged.length) process.stderr.write(`bfs: warning: ${damaged.length} damaged generation${damaged.length > 1 ? 's' : ''}; the others are intact (details: bfs verify --all)\n`)
  if (o.json) {
    process.stdout.write(JSON.stringify(rows.map(({ id, m, bad }) => m
      ? { generation: `gen${m.id}`, id: m.id, time: m.time, label: m.label, source: m.source, kind: m.kind, group: m.group, parent: m.parent, files: m.stats.files, logicalBytes: m.stats.logicalBytes, storedBytes: m.stats.storedBytes + m.stats.metaBytes, partial: m.partial, consistency: m.consistency ?? null }
      : { generation: `gen${id}`, id, damaged: bad!.kind === 'missing-manifest' ? 'manifest missing' : 'manifest unreadable', problem: bad!.problem })) + '\n')
    return
  }
  const table = rows.map(({ id, m, bad }) => m
    ? [`gen${m.id}`, m.time.replace(/\.\d+Z$/, 'Z'), m.label || '-', m.source + (m.group ? ` [${m.group}]` : ''), m.kind + (m.parent ? '+' : '') + (m.consistency ? ` (${m.consistency})` : ''), String(m.stats.files), humanBytes(m.stats.logicalBytes), humanBytes(m.stats.storedBytes + m.stats.metaBytes)]
    : [`gen${id}`, '-', '-', `(${bad!.kind === 'missing-manifest' ? 'manifest missing' : 'manifest unreadable'})`, 'DAMAGED', '-', '-', '-'])
  const head = ['ID', 'TIME', 'LABEL', 'SOURCE', 'KIND', 'FILES', 'SIZE', 'STORED']
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)))
  for (const r of [head, ...table]) process.stdout.write(r.map((c, i) => (i >= 5 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd() + '\n')
}

export function registerGenerations(program: Command, ctx: Ctx): void {
  program
    .command('generations')
    .description('list the generations (kind "+" = incremental; [name] = a group\'s generation)')
    .option('--group <name>', 'only this group\'s chain')
    .option('--json', 'print JSON')
    .action((o) => (isFormat2(ctx.repoDir()) ? lsV2(ctx, undefined, o) : listGenerations(ctx, o)))
}
