import type { TapeRepo } from '../repo/tiers.js'
import { isFormat2 } from '../repo/v2/detect.js'
import { tapeRepoOf } from '../repo/v2/repo2.js'
import type { CmdCtx } from './output.js'
import { openRepo2 } from './open2.js'

/**
 * The repository as the tape tier takes it (tier, tier serve), of either format (format 2:
 * format.md §2.18). An encrypted repository is unlocked first: its tier files and tape
 * catalog are sealed (§2.18 "Encrypted repositories").
 */
export async function openTapeRepo(ctx: CmdCtx): Promise<TapeRepo> {
  const dir = ctx.repoDir()
  if (!isFormat2(dir)) return ctx.openRepo()
  return tapeRepoOf(await openRepo2(dir, (m) => process.stderr.write(`bfs: warning: ${m}\n`)))
}
