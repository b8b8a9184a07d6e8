import type { Command } from 'commander'
import { isFormat2 } from '../repo/v2/detect.js'
import { lsV2 } from './v2.js'
import type { Manifest } from '../format/manifest.js'
import { readGroup } from '../repo/groups.js'
import { humanBytes } from './output.js'
import { damagedRow, warnDamaged, writeGenerationsTable } from './gentable.js'
import { addGenerationFilters, genFilter, matches } from './sources.js'
import type { Ctx } from './context.js'

/** `bfs generations` (and `bfs ls` without an argument): the table, or JSON. */
export function listGenerations(ctx: Ctx, o: { json?: boolean; group?: string } & Record<string, unknown>): void {
  const filter = genFilter(o)
  const repo = ctx.openRepo()
  if (o.group) readGroup(repo, o.group)
  const all = o.group ? repo.generations(o.group) : repo.generations()
  const gens = filter ? all.filter((m) => matches(filter, { time: m.time, host: m.host, tags: m.tags ?? [], label: m.label, sources: [m.source] })) : all
  // damaged generations are listed too (their group is unknown), and named on stderr; the exit
  // status stays 0. With a filter they are left out of the list (nothing says what they hold).
  const damagedAll = repo.damagedGenerations()
  const damaged = filter ? [] : damagedAll
  const rows: Array<{ id: number; m?: Manifest; bad?: (typeof damaged)[number] }> = [...gens.map((m) => ({ id: m.id, m })), ...damaged.map((d) => ({ id: d.id, bad: d }))].sort((a, b) => a.id - b.id)
  warnDamaged(damagedAll)
  if (o.json) {
    process.stdout.write(JSON.stringify(rows.map(({ id, m, bad }) => m
      ? { generation: `gen${m.id}`, id: m.id, time: m.time, label: m.label, source: m.source, host: m.host, tags: m.tags ?? [], kind: m.kind, group: m.group, parent: m.parent, files: m.stats.files, logicalBytes: m.stats.logicalBytes, storedBytes: m.stats.storedBytes + m.stats.metaBytes, partial: m.partial, consistency: m.consistency ?? null }
      : { generation: `gen${id}`, id, damaged: bad!.kind === 'missing-manifest' ? 'manifest missing' : 'manifest unreadable', problem: bad!.problem })) + '\n')
    return
  }
  writeGenerationsTable(rows.map(({ id, m, bad }) => m
    ? [`gen${m.id}`, m.time.replace(/\.\d+Z$/, 'Z'), m.label || '-', m.source + (m.group ? ` [${m.group}]` : ''), m.kind + (m.parent ? '+' : '') + (m.consistency ? ` (${m.consistency})` : ''), String(m.stats.files), humanBytes(m.stats.logicalBytes), humanBytes(m.stats.storedBytes + m.stats.metaBytes), m.host || '-', (m.tags ?? []).join(',') || '-']
    : damagedRow(id, bad!.kind === 'missing-manifest' ? 'manifest missing' : 'manifest unreadable')))
}

export function registerGenerations(program: Command, ctx: Ctx): void {
  const cmd = program
    .command('generations')
    .description('list the generations (kind "+" = incremental; [name] = a group\'s generation)')
    .option('--group <name>', 'only this group\'s chain')
    .option('--json', 'print JSON')
  addGenerationFilters(cmd)
    .action((o) => (isFormat2(ctx.repoDir()) ? lsV2(ctx, undefined, o) : listGenerations(ctx, o)))
}
