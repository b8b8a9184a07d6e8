import type { Command } from 'commander'
import { MountError, unmountBfs } from '../fuse/umount.js'
import { BfsError } from '../repo/errors.js'
import type { Ctx } from './context.js'

/** The mount lifecycle's refusals as the CLI's errors (exit status 1 either way; the message as it is). */
export async function asBfsError<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof MountError) throw new BfsError(err.kind === 'bad-input' ? 'BAD_INPUT' : 'IO', err.message)
    throw err
  }
}

export function registerUmount(program: Command, _ctx: Ctx): void {
  program
    .command('umount')
    .alias('unmount')
    .description('unmount a bfs mount (also one whose process died); refused while it is in use, as umount(8)')
    .argument('<mountpoint>')
    .option('-l, --lazy', 'detach it now even while in use, as umount -l (files still open there are served until closed)')
    .action(async (m: string, o: { lazy?: boolean }) => {
      process.stdout.write(await asBfsError(() => unmountBfs(m, { lazy: o.lazy })))
    })
}
