import fs from 'node:fs'
import type { Command } from 'commander'
import { EntryType } from '../format/catalog.js'
import { BfsError } from '../repo/errors.js'
import { CommandReader } from '../repo/read.js'
import { dataEntry, lookupPath } from '../repo/tree.js'
import { SOURCE_HELP, splitRef } from './common.js'
import { resolveGen } from './output.js'
import type { Ctx } from './context.js'

export function registerCat(program: Command, ctx: Ctx): void {
  program
    .command('cat')
    .description('write a file of a generation to stdout')
    .argument('<ref>', 'GEN:PATH (for a volume generation, GEN alone is the image)')
    .option('--source <path>', SOURCE_HELP)
    .action((ref: string, o) => {
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
      const reader = new CommandReader(repo)
      reader.each(reader.open(d.objGen, d.objIndex, d.size), (buf, off, len) => {
        for (const end = off + len; off < end; ) {
          try {
            off += fs.writeSync(1, buf, off, end - off)
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue
            if ((err as NodeJS.ErrnoException).code === 'EPIPE') return false
            throw err
          }
        }
        return true
      })
      reader.close()
    })
}
