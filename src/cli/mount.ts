import { InvalidArgumentError, Option, type Command } from 'commander'
import { BfsError } from '../repo/errors.js'
import { Vfs } from '../vfs/tree.js'
import { startInBackground, serveUntilUnmounted } from '../fuse/server.js'
import { canonical, checkMountpoint } from '../fuse/umount.js'
import { parseSize } from './common.js'
import { asBfsError } from './umount.js'
import type { Ctx } from './context.js'
import { resolveGen } from './output.js'
import { openReadStore } from './datastore.js'
import { isFormat2 } from '../repo/v2/detect.js'

export function registerMount(program: Command, ctx: Ctx): void {
  program
    .command('mount')
    .description('mount one generation (GEN MOUNTPOINT) or the whole repository (MOUNTPOINT: gen1/ … genN/, latest, by-date/) read-only')
    .argument('<gen-or-mountpoint>', 'generation, or the mount point to mount every generation at')
    .argument('[mountpoint]', 'mount point (an empty directory)')
    .option('--foreground', 'stay in the foreground and serve until unmounted or interrupted')
    .option('--allow-other', 'let other users in (the kernel checks permissions as in the source)')
    .addOption(new Option('--cache-size <size>', 'decompressed-frame cache (e.g. 64M; never less than 8 frames)').default(16 << 20, '16M').argParser(parseSize))
    .addOption(new Option('--readahead <frames>', 'frames to prefetch for sequential reads').default(undefined, 'about 1 MiB').argParser((v) => {
      const n = Number(v)
      if (!Number.isInteger(n) || n < 0 || n > 256) throw new InvalidArgumentError('0 to 256')
      return n
    }))
    .option('--no-native-read', 'serve every read in JavaScript (the native read path is on by default)')
    .option('--log <file>', 'log file of the background mount (default: a file under $BFS_RUNTIME_DIR, else /run/bfs for root, else $XDG_RUNTIME_DIR)')
    .addOption(new Option('--open-units <n>', 'unit files kept open at most, one descriptor each (default 1024)').argParser((v) => {
      const n = Number(v)
      if (!Number.isInteger(n) || n < 1 || n > 1 << 20) throw new InvalidArgumentError('1 to 1048576')
      return n
    }))
    .addOption(new Option('--offline <mode>', "reads of data on tape: 'wait' for the recall, or fail at once with EIO ('eio': nothing is recalled)").choices(['wait', 'eio']).default('wait'))
    .addOption(new Option('--recall-timeout <seconds>', 'a read still waiting for its recall from tape after this long fails with EIO (the recall goes on); default: no limit').argParser((v) => {
      const n = Number(v)
      if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError('a number of seconds > 0')
      return n
    }))
    .addOption(new Option('--buffer-cache <size>', "with units on tape: the buffer cache's size limit (kept for later runs)").argParser(parseSize))
    .addOption(new Option('--tape-readahead <units>', 'with units on tape: once files are opened in the tree\'s order (find, cp -a), ask for the units on tape of the files that come next, UNITS at most (and a quarter of the buffer cache; default 256, 0: off)').argParser((v) => {
      const n = Number(v)
      if (!Number.isInteger(n) || n < 0 || n > 100_000) throw new InvalidArgumentError('0 to 100000')
      return n
    }))
    .addOption(new Option('--piece-cache <size>', 'format 2 repositories: decoded directory and map pieces kept (e.g. 64M; default 2M)').argParser(parseSize))
    .addOption(new Option('--ready-fd <fd>').hideHelp().argParser(Number))
    .option('--debug', 'FUSE debug output (foreground)')
    .option('--source <path>', 'with GEN: latest and latest~K count only the generations of this source')
    .action(async (a: string, b: string | undefined, o) => {
      if (b === undefined && o.source !== undefined) throw new BfsError('USAGE', '--source applies to a generation (bfs mount GEN MOUNTPOINT --source PATH); the whole-repository mount shows every source')
      // format 2: the lazy mount of one generation (cli/mount2.ts), loaded only then
      if (isFormat2(ctx.repoDir())) return (await import('./mount2.js')).mountV2(ctx.repoDir(), a, b, o)
      if (o.pieceCache !== undefined) throw new BfsError('BAD_INPUT', '--piece-cache applies to format 2 repositories only')
      const repo = ctx.openRepo()
      const mnt = canonical(b ?? a)
      const man = b === undefined ? null : resolveGen(repo, a, o)
      // the server mounts the generation resolved here (a backup in between must not change what `latest` meant)
      const genRef = man ? `gen${man.id}` : null
      const what = man ? `gen${man.id}` : `repository ${repo.dir}`
      await asBfsError(() => checkMountpoint(mnt, repo.store.localRoots()))
      if (!o.foreground) {
        const args = ['--repo', repo.dir, 'mount', ...(genRef ? [genRef] : []), mnt, '--foreground', '--ready-fd', '3', '--cache-size', String(o.cacheSize), ...(o.readahead === undefined ? [] : ['--readahead', String(o.readahead)])]
        if (o.allowOther) args.push('--allow-other')
        if (o.nativeRead === false) args.push('--no-native-read')
        if (o.openUnits !== undefined) args.push('--open-units', String(o.openUnits))
        if (o.offline !== 'wait') args.push('--offline', o.offline)
        if (o.recallTimeout !== undefined) args.push('--recall-timeout', String(o.recallTimeout))
        if (o.bufferCache !== undefined) args.push('--buffer-cache', String(o.bufferCache))
        if (o.tapeReadahead !== undefined) args.push('--tape-readahead', String(o.tapeReadahead))
        process.stdout.write(await asBfsError(() => startInBackground({ mountpoint: mnt, args, log: o.log, what })))
        return
      }
      // Foreground: this process serves the mount until it is unmounted, then exits.
      const nativeReads = o.nativeRead !== false
      // units on tape: read through the tiered store and the repository's recall service
      const rs = await openReadStore(repo, { cacheBytes: o.bufferCache, policy: { offline: o.offline, recallTimeoutMs: o.recallTimeout === undefined ? undefined : o.recallTimeout * 1000 } })
      await asBfsError(() => serveUntilUnmounted(() => new Vfs(repo, { generation: man?.id, cacheBytes: o.cacheSize, readaheadFrames: o.readahead, nativeReads, maxOpenUnits: o.openUnits, tape: rs?.tiered ?? null, tapeReadaheadUnits: o.tapeReadahead, onClose: rs?.close }), {
        mountpoint: mnt,
        allowOther: !!o.allowOther,
        negativeTimeoutS: man ? 86400 : 0,
        fsname: `bfs:${repo.dir}${man ? `:gen${man.id}` : ''}`,
        debug: !!o.debug,
        nativeReadCacheBytes: nativeReads ? o.cacheSize : 0,
        readyFd: o.readyFd,
        log: o.log,
        what,
        serving: `${man ? `gen${man.id}` : 'all generations'} of ${repo.dir}`,
      }))
    })
}
