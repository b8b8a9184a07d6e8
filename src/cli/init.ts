import { Option, type Command } from 'commander'
import { Repository } from '../repo/repository.js'
import { BfsError } from '../repo/errors.js'
import { isS3Url } from '../store/s3-url.js'
import type { Ctx } from './context.js'
import { initV2 } from './v2.js'

export function registerInit(program: Command, ctx: Ctx): void {
  program
    .command('init')
    .description('create an empty repository (the only command that creates one)')
    .addOption(new Option('--format <n>', 'on-disk format: 1 (the default) or 2 (issue 15, in development: file backups; backup, generations, ls, cat, diff, find, log, mount, restore, verify and forget; no volumes, groups, --volume --online or tape tier yet)').choices(['1', '2']).default('1'))
    .action((o: { format: string }) => {
      if (o.format !== '2' && isS3Url(ctx.repoDir())) throw new BfsError('USAGE', `${ctx.repoDir()}: a repository on S3 is format 2 only: bfs init --format 2`)
      if (o.format === '2') return void process.stdout.write(`initialized bfs repository ${initV2(ctx.repoDir())} (format 2)\n`)
      const repo = Repository.init(ctx.repoDir())
      process.stdout.write(`initialized bfs repository ${repo.dir}\n`)
    })
}
