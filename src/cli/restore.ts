import fs from 'node:fs'
import path from 'node:path'
import { Option, type Command } from 'commander'
import { EntryType } from '../format/catalog.js'
import { BfsError } from '../repo/errors.js'
import { restoreTree } from '../repo/restore.js'
import { isFormat2 } from '../repo/v2/detect.js'
import { restoreV2 } from './v2.js'
import { reportRestore, showTapePlan } from './restore-report.js'
import { lookupPath } from '../repo/tree.js'
import { int, parseSize, SOURCE_HELP, splitRef, withSignals } from './common.js'
import { holder, openReadStore } from './datastore.js'
import { resolveGen } from './output.js'
import { Progress } from './progress.js'
import type { Ctx } from './context.js'

export function registerRestore(program: Command, ctx: Ctx): void {
  program
    .command('restore')
    .description('restore a generation or a subtree into DEST (parallel; keeps modes, owners when root, ns times, links, xattrs, holes)')
    .argument('<ref>', 'GEN[:PATH]')
    .argument('<dest>', 'destination directory (created if absent)')
    .option('--overwrite', 'replace what is in the way in DEST (renamed over, never written through; symlinks below DEST are never followed)')
    .addOption(new Option('--threads <n>', 'worker threads').argParser(int('--threads', 1, 256)))
    .option('--source <path>', SOURCE_HELP)
    .addOption(new Option('--buffer-cache <size>', "with units on tape: the buffer cache's size limit (kept for later runs); the restore recalls in passes that fit it").argParser(parseSize))
    .option('--json', 'print JSON lines: progress (message_type "status", at most once a second), then the result (message_type "summary")')
    .option('-q, --quiet', 'print nothing but warnings and errors (no progress, no summary)')
    .action(async (ref: string, dest: string, o) => {
      if (isFormat2(ctx.repoDir())) return restoreV2(ctx, ref, dest, o)
      ctx.history.begin(ctx.repoDir, 'restore', {}, { readOnly: true })
      const repo = ctx.openRepo()
      const { gen, path: p } = splitRef(ref)
      const man = resolveGen(repo, gen, o)
      ctx.history.set({ sources: [man.source], gens: [man.id] })
      const entries = repo.catalog(man.id)
      const root = man.kind === 'volume' && !p ? 1 : lookupPath(entries, Buffer.from(p))
      if (root < 0) throw new BfsError('BAD_INPUT', `${p}: no such file or directory in gen${man.id}`)
      let target = dest
      if (entries[root]!.type !== EntryType.Dir && fs.existsSync(dest) && fs.statSync(dest).isDirectory()) target = path.join(dest, entries[root]!.name.toString())
      const line = new Progress({ action: 'restore', label: 'restoring:', json: !!o.json, quiet: !!o.quiet })
      // units on tape: read through the tiered store (workers too), planned up front
      const rs = await openReadStore(repo, { cacheBytes: o.bufferCache })
      const tape = rs ? { tiered: rs.tiered, holder: holder(), passBytes: o.bufferCache } : null
      const res = await withSignals((signal) =>
        restoreTree(repo, man, {
          root, dest: target, overwrite: !!o.overwrite, threads: o.threads, signal, tape,
          reporter: {
            warn: (m) => (ctx.history.warn(m), line.warn(m)),
            progress: (x) => line.update(x),
            tapePlan: showTapePlan(line),
          },
        }),
      ).finally(async () => {
        line.finish()
        await rs?.close()
      })
      reportRestore(ctx, line, man.id, p, target, res)
    })
}

