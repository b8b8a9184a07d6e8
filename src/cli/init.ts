import type { Command } from 'commander'
import { Repository } from '../repo/repository.js'
import type { Ctx } from './context.js'

export function registerInit(program: Command, ctx: Ctx): void {
  program
    .command('init')
    .description('create an empty repository (the only command that creates one)')
    .action(() => {
      const repo = Repository.init(ctx.repoDir())
      process.stdout.write(`initialized bfs repository ${repo.dir}\n`)
    })
}
