import type { Command } from 'commander'
import { addGroup, listGroups, readGroup, removeGroup, type Group } from '../repo/groups.js'
import { count } from './output.js'
import type { Ctx } from './context.js'
import { groupJson, printJson } from './json.js'

export function registerGroup(program: Command, ctx: Ctx): void {
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
    .action((name: string, o) => {
      const g = addGroup(ctx.openRepo(), name, o.include, o.exclude)
      if (o.json) return printJson(groupJson(g))
      process.stdout.write(showGroup(g))
    })
  group
    .command('ls')
    .description('list the groups (a damaged group file is named on stderr; the others are listed)')
    .option('--json', 'print JSON')
    .action((o) => {
      const { groups, damaged } = listGroups(ctx.openRepo())
      if (o.json) printJson(groups.map((g) => groupJson(g)))
      else for (const g of groups) process.stdout.write(showGroup(g))
      for (const d of damaged) process.stderr.write(`bfs: warning: damaged group file: ${d}\n`)
    })
  group
    .command('show')
    .argument('<name>')
    .description('show a group and its generations')
    .option('--json', 'print JSON')
    .action((name: string, o) => {
      const repo = ctx.openRepo()
      if (o.json) return printJson(groupJson(readGroup(repo, name), repo.generations(name)))
      process.stdout.write(showGroup(readGroup(repo, name)))
      for (const m of repo.generations(name)) process.stdout.write(`  gen${m.id} ${m.time} ${m.source} ${count(m.stats.files, 'file')}\n`)
    })
  group
    .command('rm')
    .argument('<name>')
    .description('remove a group (its generations stay)')
    .action((name: string) => {
      removeGroup(ctx.openRepo(), name)
      process.stdout.write(`removed group ${name}\n`)
    })
}
