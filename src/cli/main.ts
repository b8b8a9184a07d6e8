import { Command, CommanderError, Option } from 'commander'
import { BfsError, EXIT } from '../repo/errors.js'
import { FormatError } from '../format/errors.js'
import { defaultRepoDir, Repository } from '../repo/repository.js'

export const EXIT_HELP = `
Exit status:
  0    success
  1    error (bad input, I/O error, disk full; nothing committed)
  2    wrong command line
  3    backup finished, but some files could not be read (listed as skipped)
  4    verify found damage or differences
  5    the repository is locked by another writer (see --wait)
  6    not a bfs repository, or a stored file is foreign or corrupt
  70   internal error (a bug: please report it)
  130  interrupted (nothing committed)

Repository: --repo DIR, else $BFS_REPO, else /var/lib/bfs (root) or $XDG_DATA_HOME/bfs.
Generations: genN, N, latest, latest~K.`

export interface Ctx {
  repoDir(): string
  openRepo(): Repository
  /** Set by a command to choose the exit code. */
  exitCode: number
}

export async function main(argv: string[]): Promise<void> {
  // `bfs ls … | head`: a closed pipe ends the output quietly, never with a stack trace.
  // (Not for a mount that will detach: a stream made on a terminal keeps a private fd of it.)
  if (process.env.BFS_DETACH !== '1') for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0)
      throw err
    })
  }
  const program = new Command()
  program
    .name('bfs')
    .description('Backup filesystem: generations of block maps and zstd chunks, mountable read-only.')
    .addOption(new Option('--repo <dir>', 'repository directory').env('BFS_REPO'))
    .showHelpAfterError('(run bfs --help for usage)')
    .addHelpText('after', EXIT_HELP)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
  const ctx: Ctx = {
    repoDir: () => (program.opts().repo as string | undefined) ?? defaultRepoDir(),
    openRepo: () => Repository.open(ctx.repoDir(), (m) => process.stderr.write(`bfs: warning: ${m}\n`)),
    exitCode: 0,
  }
  // `bfs mount` is timed from start to first answer: it loads only what a mount needs.
  const sub = subcommand(argv.slice(2))
  if (sub !== 'mount' && sub !== 'umount' && sub !== 'unmount') (await import('./commands.js')).registerCommands(program, ctx)
  ;(await import('./mount.js')).registerMount(program, ctx)
  for (const c of program.commands) c.exitOverride()
  try {
    await program.parseAsync(argv)
    process.exitCode = ctx.exitCode
  } catch (err) {
    process.exitCode = report(err)
  }
}

/** The first word that is not a global option (or its value), if any. */
function subcommand(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (a === '--repo') i++
    else if (!a.startsWith('-')) return a
  }
  return undefined
}

/** One line on stderr for every expected failure; a stack only with BFS_DEBUG=1. */
export function report(err: unknown): number {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0
    return EXIT.USAGE
  }
  if (process.env.BFS_DEBUG) process.stderr.write(`${(err as Error)?.stack}\n`)
  if (err instanceof BfsError) {
    process.stderr.write(`bfs: ${err.message}\n`)
    return err.exitCode
  }
  if (err instanceof FormatError) {
    process.stderr.write(`bfs: ${err.message}\n`)
    return EXIT.BAD_REPO
  }
  const e = err as NodeJS.ErrnoException
  if (e && typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code)) {
    const what = e.code === 'ENOSPC' ? 'disk full' : e.message
    process.stderr.write(`bfs: ${what}\n`)
    return EXIT.ERROR
  }
  process.stderr.write(`bfs: internal error: ${e?.message ?? String(err)} (BFS_DEBUG=1 shows where)\n`)
  return EXIT.INTERNAL
}

