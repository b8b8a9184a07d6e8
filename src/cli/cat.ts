import fs from 'node:fs'
import type { Command } from 'commander'
import { EntryType } from '../format/catalog.js'
import { BfsError } from '../repo/errors.js'
import { ObjectReader } from '../repo/reader.js'
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
      const reader = new ObjectReader(repo)
      const extents = reader.resolver.resolve(d.objGen, d.objIndex)
      const CH = 1 << 20
      for (let pos = 0; pos < d.size; pos += CH) {
        const buf = reader.read(extents, d.size, pos, CH)
        let off = 0
        while (off < buf.length) {
          try {
            off += fs.writeSync(1, buf, off, buf.length - off)
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue
            if ((err as NodeJS.ErrnoException).code === 'EPIPE') return
            throw err
          }
        }
      }
      reader.close()
    })
}
