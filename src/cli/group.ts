import type { Command } from 'commander'
import { addGroup, listGroups, readGroup, removeGroup, type Group, type GroupRepo } from '../repo/groups.js'
import { isFormat2 } from '../repo/v2/detect.js'
import { Repo2 } from '../repo/v2/repo2.js'
import type { Repository } from '../repo/repository.js'
import { count } from './output.js'
import { openRepo2 } from './open2.js'
import type { Ctx } from './context.js'
import { groupJson, printJson } from './json.js'

export function registerGroup(program: Command, ctx: Ctx): void {
  // format 2 (format.md §2.14.2): the same group files, through its store
  // an encrypted repository is unlocked: its group files are sealed (format.md §2.14.2)
  const openRepo = async (): Promise<GroupRepo> => (isFormat2(ctx.repoDir()) ? openRepo2(ctx.repoDir(), (m) => void process.stderr.write(`bfs: ${m}\n`)) : ctx.openRepo())
  /** A group's generations (one line each): format 1's chain, or format 2's manifests with that group. */
  const chainOf = (repo: GroupRepo, name: string): Array<{ id: number; time: string; source: string; files: number }> =>
    repo instanceof Repo2
      ? repo.generations().flatMap((g) => ('manifest' in g && g.manifest.group === name ? [{ id: g.id, time: g.manifest.time, source: g.manifest.sources.map((s) => s.path).join(' '), files: Number((g.manifest.stats as Record<string, unknown>).files ?? 0) }] : []))
      : (repo as Repository).generations(name).map((m) => ({ id: m.id, time: m.time, source: m.source, files: m.stats.files }))
  const group = program.command('group').description('file groups: named include/exclude lists, each backed up on its own chain')
  const showGroup = (g: Group): string =>
    `${g.name}\n${g.includes.map((p) => `  include ${p}\n`).join('')}${g.excludes.map((p) => `  exclude ${p}\n`).join('')}`
  group
    .command('add')
    .description('create a group, or add patterns to it (globs relative to the backup source: * ? ** [..]; a directory that matches brings its whole subtree)')
    .argument('<name>')
    .option('--include <pattern>', 'files to include (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--exclude <pattern>', 'files to leave out even if included (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--json', 'print the group as JSON')
    .action(async (name: string, o) => {
      const g = addGroup(await openRepo(), name, o.include, o.exclude)
      if (o.json) return printJson(groupJson(g))
      process.stdout.write(showGroup(g))
    })
  group
    .command('ls')
    .description('list the groups (a damaged group file is named on stderr; the others are listed)')
    .option('--json', 'print JSON')
    .action(async (o) => {
      const { groups, damaged } = listGroups(await openRepo())
      if (o.json) printJson(groups.map((g) => groupJson(g)))
      else for (const g of groups) process.stdout.write(showGroup(g))
      for (const d of damaged) process.stderr.write(`bfs: warning: damaged group file: ${d}\n`)
    })
  group
    .command('show')
    .argument('<name>')
    .description('show a group and its generations')
    .option('--json', 'print JSON')
    .action(async (name: string, o) => {
      const repo = await openRepo()
      if (o.json) return printJson(groupJson(readGroup(repo, name), chainOf(repo, name)))
      process.stdout.write(showGroup(readGroup(repo, name)))
      for (const m of chainOf(repo, name)) process.stdout.write(`  gen${m.id} ${m.time} ${m.source} ${count(m.files, 'file')}\n`)
    })
  group
    .command('rm')
    .argument('<name>')
    .description('remove a group (its generations stay)')
    .action(async (name: string) => {
      removeGroup(await openRepo(), name)
      process.stdout.write(`removed group ${name}\n`)
    })
}
