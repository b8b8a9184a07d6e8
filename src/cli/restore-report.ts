/** How a restore ends on the command line, for both formats (cli/restore.ts, cli/v2.ts). */
import path from 'node:path'
import { EXIT } from '../repo/errors.js'
import type { RestoreResult } from '../repo/restore.js'
import type { Ctx } from './context.js'
import { restoreJson } from './json.js'
import { count, humanBytes, simTime } from './output.js'
import type { TapePlan } from '../repo/tapepasses.js'
import type { Progress } from './progress.js'

/** The end of a restore, either format: the result line (or the JSON summary; nothing with --quiet), exit 1 when something was not restored. */
export function reportRestore(ctx: Ctx, prog: Progress, gen: number, p: string, target: string, res: RestoreResult): void {
  ctx.history.set({ bytes: { restored: res.bytes } })
  if (res.errors.length) {
    ctx.exitCode = EXIT.ERROR
    ctx.history.fail(`${count(res.errors.length, 'error')}: ${res.errors[0]}`)
  }
  if (prog.mode === 'json') return prog.summary(restoreJson({ generation: gen, path: p, dest: path.resolve(target), res }))
  if (!prog.textSummary) return
  const removed = res.removedDirs ? `; removed ${count(res.removedDirs, 'directory', 'directories')} it had created that the errors left empty` : ''
  process.stdout.write(`restored gen${gen}${p ? `:${p}` : ''} to ${path.resolve(target)}: ${count(res.entries, 'entry', 'entries')}, ${humanBytes(res.bytes)}${res.errors.length ? `, ${count(res.errors.length, 'error')}` : ''}${removed}\n`)
}

/** The restore's line about its recalls from tape (both formats). */
export function showTapePlan(line: Progress): (x: TapePlan) => void {
  return (x) => {
    if (x.onTape) line.show(`recalling ${count(x.onTape, 'unit')} from tape in ${count(x.passes.length, 'pass', 'passes')} (estimated tape time ${simTime(x.seconds)}, simulated)`)
  }
}
