import { onlineSummary } from './online-summary.js'
import path from 'node:path'
import { Option, type Command } from 'commander'
import { isFormat2 } from '../repo/v2/detect.js'
import { backupV2 } from './v2.js'
import { backupTree } from '../repo/backup.js'
import { streamGeometry, DEFAULT_FRAME_BLOCKS, DEFAULT_LEVEL, DEFAULT_UNIT_BLOCKS } from '../repo/commit/index.js'
import { backupVolume, checkFreezeOptions, decideMode, refuseOnlineDevice } from '../repo/volume.js'
import { DEFAULT_FREEZE_TIMEOUT_S } from '../repo/freeze.js'
import { readGroup } from '../repo/groups.js'
import { BfsError, EXIT } from '../repo/errors.js'
import { DEFAULT_ONLINE_NICE } from '../repo/online.js'
import { int, withSignals } from './common.js'
import { consistencyNote, count, humanBytes, resolveGen } from './output.js'
import { Progress } from './progress.js'
import type { Ctx } from './context.js'
import { addBackupSourceOptions, checkSeveral, checkSources, eachSource, sourceOptions } from './sources.js'

export function registerBackup(program: Command, ctx: Ctx): void {
  const cmd = program
    .command('backup')
    .description('back up a directory tree, a block device or an image file as a new generation (incremental against the last one of the same source); several directories make one generation each, in one run under one lock')
    .argument('<src...>', 'directory, block device or image file (several: directories)')
    .option('--volume', 'back up SRC as a volume (same as --mode volume)')
    .addOption(new Option('--mode <mode>', 'auto: a device or image, or the root of a mounted block-device filesystem with more than --volume-threshold files, is backed up as a volume; anything else as files').choices(['auto', 'file', 'volume']).default('auto'))
    .option('--volume-threshold <files>', 'auto mode: files above which a whole filesystem is backed up as its device', int('--volume-threshold', 0, Number.MAX_SAFE_INTEGER), 100000)
    .option('--base <gen>', 'volume: the generation to store the difference against (default: the last one of this source)')
    .option('--freeze', 'volume of a block device: freeze its mounted filesystems (FIFREEZE) while it is read, for a clean image; thawed on every way out, even if bfs is killed')
    .option('--freeze-timeout <seconds>', `with --freeze: thaw after this long whatever happens; the backup then fails (default ${DEFAULT_FREEZE_TIMEOUT_S})`, int('--freeze-timeout', 1, 86400))
    .option('--label <text>', 'label stored with the generation', '')
    .option('--exclude <pattern>', 'skip paths matching a glob (repeatable; * ? ** [..]; a pattern with / is anchored at SRC)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--group <name>', 'back up only the files of this group (see bfs group), on its own chain of generations')
    .option('--one-file-system', 'do not descend into other filesystems')
    .option('--full', 'read every file even if unchanged')
    .addOption(new Option('--online [when]', 'store the tree (or, with --volume, the image file) as it was when the backup started (T0), although it is written meanwhile, without a snapshot (Linux 6.14+, root, ext4/xfs/btrfs); "auto" backs up without it where the filesystem cannot (write --online=auto). Block devices are not covered. Exit 3 lists files open for writing at T0').choices(['on', 'auto']).preset('on'))
    .option('--t0-file <path>', 'with --online: create this file once T0 is set (for scripts)')
    .option('--online-nice <n>', `with --online: run bfs's own threads this much lower (nice, 0-19) while the capture holds writers up, so that they get a CPU first (default ${DEFAULT_ONLINE_NICE}; 0: unchanged)`, int('--online-nice', 0, 19))
    .addOption(new Option('--threads <n>', 'compression worker threads').default(undefined, 'CPUs').argParser(int('--threads', 1, 256)))
    .option('--level <n>', 'zstd compression level', int('--level', 1, 19), DEFAULT_LEVEL)
    .option('--unit-blocks <n>', 'blocks (4 KiB) per unit', int('--unit-blocks', 16, 1 << 20), DEFAULT_UNIT_BLOCKS)
    .option('--frame-blocks <n>', `blocks per independently decompressible frame (default ${DEFAULT_FRAME_BLOCKS.files} for files, ${DEFAULT_FRAME_BLOCKS.volume} for volumes)`, int('--frame-blocks', 1, 4096))
    .option('--wait [seconds]', 'wait for another writer to finish (default: forever)')
    .option('--json', 'print JSON lines: progress (message_type "status", at most once a second), then the result (message_type "summary"; several sources: one per generation)')
    .option('-q, --quiet', 'print nothing but warnings and errors (no progress, no summary)')
  addBackupSourceOptions(cmd)
    .action(async (srcs: string[], o) => {
      // issue 17 item 4 (cli/sources.ts): several sources, one generation each
      const sources = checkSources(srcs)
      checkSeveral(sources, o)
      const more = sourceOptions(o)
      if (isFormat2(ctx.repoDir())) {
        for (const src of sources) await backupV2(ctx, src, o, more)
        return
      }
      const waitMs = o.wait === undefined ? 0 : o.wait === true ? Number.MAX_SAFE_INTEGER : Number(o.wait) * 1000
      if (Number.isNaN(waitMs)) throw new BfsError('BAD_INPUT', '--wait takes a number of seconds')
      let repoOpened: ReturnType<Ctx['openRepo']> | undefined
      const openRepo = (): ReturnType<Ctx['openRepo']> => (repoOpened ??= ctx.openRepo())
      // several sources take the lock before the first: its wait is said as a single source's is (a JSON `wait` line with --json)
      const lockWait = new Progress({ action: 'backup', label: 'backing up:', json: !!o.json, quiet: !!o.quiet })
      await eachSource(openRepo, sources, waitMs, (m) => lockWait.wait(m), async (src, heldLock) => {
      const line = new Progress({ action: 'backup', label: 'backing up:', json: !!o.json, quiet: !!o.quiet })
      const decision = o.volume || o.mode === 'volume' ? { mode: 'volume' as const, source: src, reason: 'requested' } : o.mode === 'file' ? { mode: 'file' as const, source: src, reason: 'requested' } : decideMode(src, o.volumeThreshold)
      const modeLine = `mode: ${decision.mode === 'volume' ? 'volume' : 'files'}${decision.reason === 'requested' ? '' : ` (${decision.reason})`}\n`
      if (o.base && decision.mode !== 'volume') throw new BfsError('BAD_INPUT', '--base applies to volume backups')
      if (o.t0File !== undefined && !o.online) throw new BfsError('BAD_INPUT', '--t0-file applies with --online')
      if (o.onlineNice !== undefined && !o.online) throw new BfsError('BAD_INPUT', '--online-nice applies with --online')
      if (o.online && decision.mode === 'volume') refuseOnlineDevice(decision.source)
      checkFreezeOptions(o, decision, [ctx.repoDir()]) // before anything is written, maybe on the filesystem to freeze
      // recorded from here: what was refused above (options that do not go together) is not a run
      ctx.history.begin(ctx.repoDir, 'backup', { sources: [path.resolve(src)] })
      const repo = openRepo()
      // `--base latest`: the latest generation of SRC (when the repository holds any)
      const base = o.base ? resolveGen(repo, o.base, {}, decision.source) : undefined
      if (base && base.kind !== 'volume') throw new BfsError('BAD_INPUT', `--base gen${base.id} is not a volume generation`)
      const group = o.group ? readGroup(repo, o.group) : undefined
      if (group && decision.mode === 'volume') throw new BfsError('BAD_INPUT', `--group selects files; ${decision.source} would be backed up as a volume (use --mode file)`)
      streamGeometry(o, decision.mode === 'volume' ? 'volume' : 'files') // a bad --unit-blocks/--frame-blocks fails before anything starts
      const run = decision.mode === 'volume' ? backupVolume : backupTree
      // --full compares with no previous generation; the progress totals are still the latest one's of SRC
      const est = o.full && decision.mode === 'file' ? repo.generations(group?.name ?? null).filter((g) => g.kind === 'files' && g.source === path.resolve(decision.source)).at(-1)?.stats : undefined
      const res = await withSignals((signal) =>
        run(repo, {
          base, group, freeze: !!o.freeze, freezeTimeoutS: o.freezeTimeout,
          source: decision.source, label: o.label, excludes: more.excludes, tagRules: more.tagRules, tags: more.tags, host: more.host, heldLock, oneFileSystem: !!o.oneFileSystem, full: !!o.full,
          online: o.online, t0File: o.t0File, onlineNice: o.onlineNice,
          threads: o.threads, level: o.level, unitBlocks: o.unitBlocks, frameBlocks: o.frameBlocks, lockWaitMs: waitMs, signal,
          reporter: {
            warn: (m) => (ctx.history.warn(m), line.warn(m)),
            note: (m) => line.wait(m), // (the only note: waiting for the lock)
            progress: (p) => line.update({ files: p.files, totalFiles: p.expectedFiles ?? est?.files ?? null, bytes: p.bytes, totalBytes: p.expectedBytes ?? est?.logicalBytes ?? null, path: p.path }),
          },
        }),
      ).finally(() => line.finish())
      const m = res.manifest
      const s = m.stats
      ctx.history.add({ sources: [m.source], gens: [m.id], bytes: { read: s.bytesRead, stored: s.storedBytes, metadata: s.metaBytes } })
      const online = 'online' in res ? res.online : undefined
      if (o.json) line.summary({ generation: `gen${m.id}`, mode: decision.mode, modeReason: decision.reason, ...m, skippedPaths: res.skippedPaths, ...(online ? { online } : {}) })
      else if (line.textSummary) {
        process.stdout.write(
          modeLine +
          `gen${m.id} committed (${m.parent ? `incremental to gen${m.parent}` : 'full'})\n` +
            `  files: ${s.newFiles} new, ${s.changedFiles} changed, ${s.unchangedFiles} unchanged, ${s.skipped} skipped; ${count(s.dirs, 'dir')}\n` +
            `  read ${humanBytes(s.bytesRead)} of ${humanBytes(s.logicalBytes)}, stored ${humanBytes(s.storedBytes)} data + ${humanBytes(s.metaBytes)} metadata` +
            (s.bytesRead ? `, ratio ${(s.bytesRead / Math.max(1, s.storedBytes)).toFixed(2)}` : '') +
            `, ${s.seconds.toFixed(2)} s\n`,
        )
        if (m.consistency) process.stdout.write(`  consistency: ${consistencyNote(m, res.mountPoints ?? [])}\n`)
        if (res.skippedPaths.length) process.stdout.write(`  skipped:\n${res.skippedPaths.map((p) => `    ${p}\n`).join('')}`)
        if (online) process.stdout.write(onlineSummary(online, decision.mode === 'volume' ? 'image' : 'tree'))
      }
      if (res.skippedPaths.length || (online && online.uncovered.length)) ctx.exitCode = EXIT.PARTIAL
      })
    })
}
