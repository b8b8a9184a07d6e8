import { isFormat2 } from '../repo/v2/detect.js'
import { lsV2 } from './v2.js'
import type { Command } from 'commander'
import { EntryType } from '../format/catalog.js'
import { BfsError } from '../repo/errors.js'
import { dataEntry, lookupPath, pathOf } from '../repo/tree.js'
import { SOURCE_HELP, splitRef } from './common.js'
import { listGenerations } from './generations.js'
import { modeString, OutBuffer, resolveGen } from './output.js'
import type { Ctx } from './context.js'
import { lsEntry, printJson } from './json.js'

export function registerLs(program: Command, ctx: Ctx): void {
  program
    .command('ls')
    .description('without an argument, list generations; with GEN[:PATH], list a directory inside a generation like ls -l')
    .argument('[ref]', 'GEN[:PATH]')
    .option('--json', 'print JSON (the generations, or the entries of GEN[:PATH])')
    .option('--source <path>', SOURCE_HELP)
    .action((ref: string | undefined, o) => {
      if (isFormat2(ctx.repoDir())) return lsV2(ctx, ref, o)
      if (!ref) return listGenerations(ctx, o)
      const repo = ctx.openRepo()
      const { gen, path: p } = splitRef(ref)
      const man = resolveGen(repo, gen, o)
      const entries = repo.catalog(man.id)
      const i = lookupPath(entries, Buffer.from(p))
      if (i < 0) throw new BfsError('BAD_INPUT', `${p}: no such file or directory in gen${man.id}`)
      const e = entries[i]!
      const list = e.type === EntryType.Dir ? Array.from({ length: e.childCount }, (_, k) => e.firstChild + k) : [i]
      if (o.json) return printJson(list.map((c) => lsEntry(entries[c]!, dataEntry(entries, c), pathOf(entries, c))))
      const lines = new OutBuffer()
      for (const c of list) {
        const x = entries[c]!
        const d = dataEntry(entries, c)
        const when = new Date(x.mtimeSec * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '')
        const size = x.type === EntryType.CharDev || x.type === EntryType.BlockDev ? `${x.rdevMajor}, ${x.rdevMinor}` : String(d.size)
        const name = e.type === EntryType.Dir ? x.name : pathOf(entries, c)
        lines.add([`${modeString(x.type, x.mode)} ${String(x.nlink).padStart(3)} ${String(x.uid).padEnd(5)} ${String(x.gid).padEnd(5)} ${size.padStart(10)} ${when} `, name, x.type === EntryType.Symlink ? Buffer.concat([Buffer.from(' -> '), x.target!]) : '', '\n'])
      }
      lines.flush()
    })
}
