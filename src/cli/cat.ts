import { isFormat2 } from '../repo/v2/detect.js'
import { catV2 } from './v2.js'
import type { Command } from 'commander'
import { EntryType } from '../format/catalog.js'
import { BfsError } from '../repo/errors.js'
import { CommandReader } from '../repo/read.js'
import { dataEntry, lookupPath } from '../repo/tree.js'
import { SOURCE_HELP, splitRef } from './common.js'
import { neededUnits } from '../repo/needed.js'
import { openReadStore, recallFor } from './datastore.js'
import { resolveGen, writeStdout } from './output.js'
import type { Ctx } from './context.js'

export function registerCat(program: Command, ctx: Ctx): void {
  program
    .command('cat')
    .description('write a file of a generation to stdout')
    .argument('<ref>', 'GEN:PATH (for a volume generation, GEN alone is the image)')
    .option('--source <path>', SOURCE_HELP)
    .action(async (ref: string, o) => {
      if (isFormat2(ctx.repoDir())) return catV2(ctx, ref, o)
      const repo = ctx.openRepo()
      const { gen, path: p } = splitRef(ref)
      const man = resolveGen(repo, gen, o)
      const entries = repo.catalog(man.id)
      const i = man.kind === 'volume' && !p ? 1 : lookupPath(entries, Buffer.from(p))
      if (i < 0) throw new BfsError('BAD_INPUT', `${p}: no such file in gen${man.id}`)
      const e = entries[i]!
      if (e.type !== EntryType.File) throw new BfsError('BAD_INPUT', `${p}: is not a regular file`)
      const d = dataEntry(entries, i)
      if (!d.objGen) return
      // units on tape: recalled (pinned) before the synchronous read, in the tape's order
      const rs = await openReadStore(repo)
      try {
        if (rs) await recallFor(repo, rs, neededUnits(repo, man, i).map((u) => u.key))
        readOut(new CommandReader(repo), d)
      } finally {
        await rs?.close()
      }
    })
}

function readOut(reader: CommandReader, d: { objGen: number; objIndex: number; size: number }): void {
  reader.each(reader.open(d.objGen, d.objIndex, d.size), writeStdout)
  reader.close()
}
