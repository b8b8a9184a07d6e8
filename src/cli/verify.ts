import path from 'node:path'
import type { Command } from 'commander'
import { BfsError, EXIT } from '../repo/errors.js'
import { parseGenRef } from '../repo/repository.js'
import { isFormat2 } from '../repo/v2/detect.js'
import { verifyV2 } from './v2.js'
import { verifyGenerations, verifyAgainst } from '../repo/verify.js'
import { SOURCE_HELP, withSignals } from './common.js'
import { holder, openReadStore, recallFor } from './datastore.js'
import { neededUnits } from '../repo/needed.js'
import { count, humanBytes, resolveGen } from './output.js'
import { Progress } from './progress.js'
import type { Ctx } from './context.js'
import { verifyJson } from './json.js'

export function registerVerify(program: Command, ctx: Ctx): void {
  program
    .command('verify')
    .description('read every frame a generation needs and check checksums and structure; --against DIR compares with a live tree')
    .argument('[gen]', 'generation (default: latest)')
    .option('--all', 'verify every generation')
    .option('--against <dir>', 'compare the generation with a live directory tree and list each difference')
    .option('--source <path>', SOURCE_HELP)
    .option('--json', 'print JSON lines: progress (message_type "status", at most once a second), then the result (message_type "summary", with the lines the text output lists)')
    .option('-q, --quiet', 'print nothing but problems, warnings and errors (no progress, no "ok" line)')
    .action(async (gen: string | undefined, o) => {
      const lines: string[] = []
      const line = new Progress({ action: 'verify', label: 'verifying:', json: !!o.json, quiet: !!o.quiet, unit: 'unit' })
      // a FAIL line on the terminal the progress line is on: cleared first, redrawn at the next update
      let first: string | undefined
      const print = (l: string): void => void ((first ??= l), o.json ? lines.push(l) : (line.clear(), process.stdout.write(l + '\n')))
      if (o.all && (gen !== undefined || o.source !== undefined || o.against !== undefined)) throw new BfsError('USAGE', '--all verifies every generation: give no generation, --source or --against with it')
      if (isFormat2(ctx.repoDir())) return verifyV2(ctx, gen, o)
      ctx.history.begin(ctx.repoDir, 'verify', {}, { readOnly: true })
      const repo = ctx.openRepo()
      if (o.against) {
        // `latest` is the latest generation of DIR itself when DIR is one of the sources
        const man = resolveGen(repo, gen ?? 'latest', o, o.against)
        ctx.history.set({ sources: [man.source], gens: [man.id] })
        // units on tape: recalled (pinned, in the tape's order) before the synchronous comparison
        const rs = await openReadStore(repo)
        let diffs: number
        try {
          if (rs) await recallFor(repo, rs, neededUnits(repo, man).map((u) => u.key))
          diffs = verifyAgainst(repo, man, o.against, print)
        } finally {
          await rs?.close()
        }
        if (diffs) {
          ctx.exitCode = EXIT.VERIFY_FAILED
          ctx.history.fail(`${count(diffs, 'difference')} between gen${man.id} and ${path.resolve(o.against)}${first ? `: ${first}` : ''}`)
        }
        if (o.json) return line.summary(verifyJson({ generations: [man.id], against: path.resolve(o.against), lines, differences: diffs }))
        if (diffs === 0 && !line.textSummary) return
        process.stdout.write(diffs === 0 ? `gen${man.id} matches ${path.resolve(o.against)}\n` : `${count(diffs, 'difference')} between gen${man.id} and ${path.resolve(o.against)}\n`)
        if (diffs) ctx.exitCode = EXIT.VERIFY_FAILED
        return
      }
      let ids: number[]
      if (o.all) ids = repo.generations().map((m) => m.id)
      else {
        // a damaged generation named explicitly is verified (reported), not refused
        const ref = parseGenRef(gen ?? 'latest')
        ids = 'id' in ref && o.source === undefined && repo.damagedGenerations().some((d) => d.id === ref.id) ? [ref.id] : [resolveGen(repo, gen ?? 'latest', o).id]
      }
      if (ids.length === 0 && repo.damagedGenerations().length === 0) throw new BfsError('NO_SUCH_GEN', `no generations in ${repo.dir}`)
      ctx.history.set({ gens: ids, sources: repo.generations().filter((m) => ids.includes(m.id)).map((m) => m.source) })
      // units on tape: recalled pass by pass and checked like the others
      const rs = await openReadStore(repo)
      const res = await withSignals((signal) =>
        verifyGenerations(repo, ids, print, {
          all: !!o.all,
          signal,
          tape: rs ? { tiered: rs.tiered, holder: holder() } : null,
          progress: (x) => line.update({ files: x.units, totalFiles: x.totalUnits, bytes: x.bytes, totalBytes: x.totalBytes, path: x.path }),
        }),
      ).finally(async () => {
        line.finish()
        await rs?.close()
      })
      ctx.history.set({ bytes: { verified: res.rawBytes } })
      if (res.problems) {
        ctx.exitCode = EXIT.VERIFY_FAILED
        ctx.history.fail(`${count(res.problems, 'problem')} found${first ? `: ${first}` : ''}`)
      }
      if (o.json) return line.summary(verifyJson({ generations: ids, lines, result: res }))
      if (res.problems === 0 && !line.textSummary) return
      process.stdout.write(res.problems === 0 ? `ok: ${ids.map((id) => `gen${id}`).join(', ')} verified (${count(res.units, 'unit')}, ${count(res.frames, 'frame')}, ${humanBytes(res.rawBytes)})\n` : `${count(res.problems, 'problem')} found\n`)
      if (res.problems) ctx.exitCode = EXIT.VERIFY_FAILED
    })
}
