import fs from 'node:fs'
import path from 'node:path'
import { isS3Url, parseS3Url } from '../store/s3-url.js'
import { Command, CommanderError, Option } from 'commander'
import { BfsError, EXIT } from '../repo/errors.js'
import { FormatError } from '../format/errors.js'
import { PassphraseError } from '../crypto/errors.js'
import { defaultRepoDir, Repository } from '../repo/repository.js'
import { applyTestHooks } from '../repo/test-hooks.js'
import { canonicalLocation, checkRepo } from '../repo/repo-records.js'
import { isFormat2, notYetOnFormat2 } from '../repo/v2/detect.js'
import type { Ctx } from './context.js'
import { journalPriorities, writeError } from './journal.js'
import { RunRecorder } from './record.js'

export const EXIT_HELP = `
Exit status:
  0    success
  1    error (bad input, I/O error, disk full; nothing committed)
  2    wrong command line
  3    backup finished, but some files could not be read (listed as skipped),
       or (--online) were not covered by the capture (listed); find or log
       finished, but some generations are damaged and were not searched (named)
  4    verify found damage or differences
  5    the repository is locked by another writer, or its maintenance lock is
       held (see --wait)
  6    not a bfs repository, or a stored file is foreign or corrupt, or the
       repository's format does not have the command, or a location this host
       used as an encrypted repository is now unencrypted
  7    wrong passphrase: it opens none of an encrypted repository's key files
  70   internal error (a bug: please report it)
  130  interrupted (nothing committed)

Repository: --repo DIR, else $BFS_REPO, else /var/lib/bfs (root) or $XDG_DATA_HOME/bfs.
Generations: genN, N, latest, latest~K.
History: backup, restore, verify and forget are recorded in the repository with
their outcome and exit status (bfs history); read-only commands are not.`

/** The version in package.json (two levels above dist/cli/ and src/cli/ alike). */
export function version(): string {
  try {
    return (JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version
  } catch {
    return 'unknown'
  }
}

/**
 * Repository locations bfs cannot use: remote URLs as restic, Borg and rclone spell them
 * (sftp:host:/path, rest:…, user@host:path, ssh://…), except bfs's own S3 addresses
 * (`s3:http(s)://HOST:PORT/BUCKET/PREFIX`, issue 18: format 2 only). Without this check such a
 * string would quietly become a local directory of that name.
 */
const REMOTE_REPO = /^(?:(?:sftp|s3|rest|b2|azure|gs|swift|rclone|ssh|http|https|ftp|smb|webdav)(?::|\+)|[^/\s:]+@[^/\s:]+:)/i

/** The repository directory the options and environment name, checked for remote locations. */
export function checkRepoDir(dir: string): string {
  if (isS3Url(dir)) {
    try {
      parseS3Url(dir)
    } catch (err) {
      throw new BfsError('USAGE', (err as Error).message)
    }
    return dir
  }
  if (REMOTE_REPO.test(dir)) throw new BfsError('USAGE', `remote repositories are not supported ('${dir}'): give a local directory`)
  if (dir === '') throw new BfsError('USAGE', 'the repository path is empty (--repo or BFS_REPO)')
  return dir
}

export async function main(argv: string[]): Promise<void> {
  journalPriorities() // under systemd: warnings and errors at their syslog priority
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
    .addOption(new Option('--repo <dir>', 'repository directory, or s3:http(s)://HOST:PORT/BUCKET/PREFIX (format 2)').env('BFS_REPO'))
    .addOption(new Option('--password-file <file>', "an encrypted repository's passphrase: the file's content without one trailing newline (else $BFS_PASSWORD, else asked on the terminal)"))
    .addOption(new Option('--cache-dir <dir>', "read cache of repositories on S3: one sub-directory per bucket and prefix (default $XDG_CACHE_HOME/bfs or ~/.cache/bfs; 'off': none)").env('BFS_CACHE_DIR'))
    .version(`bfs ${version()}`, '--version', 'print the version of bfs')
    .addHelpText('after', EXIT_HELP)
    // Operands a command does not take are an error, never silently dropped (`bfs backup
    // /etc /home` backed up /etc alone). Set before the commands are made: they inherit it.
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({
      writeErr: (s) => process.stderr.write(s),
      // Usage errors read like every other error: one line starting with `bfs: `.
      outputError: (s, write) => write(`bfs: ${s.trim().replace(/^error: /, '')} (see 'bfs ${helpPath(program, argv)}--help')\n`),
    })
  const ctx: Ctx = {
    repoDir: () => checkRepoDir((program.opts().repo as string | undefined) ?? defaultRepoDir()),
    openRepo: () => {
      const dir = ctx.repoDir()
      // a format 2 repository reaches this only in the commands with no format 2 path yet
      if (isFormat2(dir)) throw notYetOnFormat2(dir, subcommand(argv.slice(2)))
      if (isS3Url(dir)) throw new BfsError('NOT_A_REPO', `${dir} is not a bfs repository (S3 holds format 2 repositories only: bfs init --format 2)`)
      if (process.env.BFS_REQUIRE_ENCRYPTION === '1' && fs.existsSync(path.join(dir, 'config'))) throw new BfsError('BAD_INPUT', `${path.resolve(dir)}: a format 1 repository is never encrypted, and BFS_REQUIRE_ENCRYPTION=1 refuses unencrypted ones`)
      const repo = Repository.open(dir, (m) => process.stderr.write(`bfs: warning: ${m}\n`))
      // format 1 is never encrypted: refused where this host recorded an encrypted one (format.md §2.22.3)
      checkRepo({ location: canonicalLocation(repo.dir), repoId: repo.config.repoId, encrypted: false, format: 1 })
      return applyTestHooks(repo)
    },
    exitCode: 0,
    history: new RunRecorder(argv.slice(2)),
  }
  // the S3 read cache's directory reaches storeAt (and a mount's background child) through the environment
  program.hook('preAction', () => {
    const c = program.opts().cacheDir as string | undefined
    if (c) process.env.BFS_CACHE_DIR = c === 'off' ? 'off' : path.resolve(c)
    // (through the environment: a mount's background child reads it too; cli/open2.ts)
    const pw = program.opts().passwordFile as string | undefined
    if (pw !== undefined) process.env.BFS_PASSWORD_FILE = path.resolve(pw)
  })
  // `bfs mount` is timed from start to first answer: it loads only what a mount needs.
  const sub = subcommand(argv.slice(2))
  if (sub !== 'mount' && sub !== 'umount' && sub !== 'unmount') (await import('./commands.js')).registerCommands(program, ctx)
  ;(await import('./mount.js')).registerMount(program, ctx)
  ;(await import('./umount.js')).registerUmount(program, ctx)
  program
    .command('version')
    .description('print the version of bfs')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }) => {
      process.stdout.write(o.json ? JSON.stringify({ version: version() }) + '\n' : `bfs ${version()}\n`)
    })
  // `bfs help COMMAND…` and `bfs generate man|bash|zsh` (src/cli/help.ts)
  ;(await import('./help.js')).registerHelp(program, { version: version(), exitHelp: EXIT_HELP })
  for (const c of program.commands) c.exitOverride()
  // `--online` takes an optional value (on|auto): a bare one followed by SRC would take SRC
  // as its value (`bfs backup --online /data`); it means `--online=on` there
  argv = argv.map((a, i) => (a === '--online' && !['on', 'auto'].includes(argv[i + 1] ?? '') ? '--online=on' : a))
  try {
    await program.parseAsync(argv)
    process.exitCode = ctx.exitCode
    ctx.history.finish(ctx.exitCode, null)
  } catch (err) {
    const { code, line } = reportError(err)
    process.exitCode = code
    ctx.history.finish(code, line)
  }
}

/** `COMMAND ` when the command line names one of the program's commands (for the hint after a usage error), else ''. */
function helpPath(program: Command, argv: string[]): string {
  const sub = subcommand(argv.slice(2))
  return sub && program.commands.some((c) => c.name() === sub || c.aliases().includes(sub)) ? `${sub} ` : ''
}

/** The first word that is not a global option (or its value), if any. */
function subcommand(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (a === '--repo' || a === '--cache-dir' || a === '--password-file') i++
    else if (!a.startsWith('-')) return a
  }
  return undefined
}

/** One line on stderr for every expected failure; a stack only with BFS_DEBUG=1. */
export function report(err: unknown): number {
  return reportError(err).code
}

/** report(), with the line it printed (without `bfs: `; null when it printed none): the history keeps it. */
export function reportError(err: unknown): { code: number; line: string | null } {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return { code: 0, line: null }
    return { code: EXIT.USAGE, line: err.message.trim().replace(/^error: /, '') }
  }
  if (process.env.BFS_DEBUG) process.stderr.write(`${(err as Error)?.stack}\n`)
  const say = (code: number, line: string): { code: number; line: string } => {
    writeError(`bfs: ${line}\n`)
    return { code, line }
  }
  if (err instanceof BfsError) return say(err.exitCode, err.message)
  if (err instanceof FormatError) return say(EXIT.BAD_REPO, err.message)
  if (err instanceof PassphraseError) return say(EXIT.BAD_PASSPHRASE, err.message)
  const e = err as NodeJS.ErrnoException
  if (e && typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code)) return say(EXIT.ERROR, e.code === 'ENOSPC' ? 'disk full' : e.message)
  return say(EXIT.INTERNAL, `internal error: ${e?.message ?? String(err)} (BFS_DEBUG=1 shows where)`)
}

