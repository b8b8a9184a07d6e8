import type { TapeRepo } from '../repo/tiers.js'
import { isFormat2 } from '../repo/v2/detect.js'
import { Repo2, tapeRepoOf } from '../repo/v2/repo2.js'
import type { CmdCtx } from './output.js'

/** The repository as the tape tier takes it (tier, tier serve), of either format (format 2: format.md §2.18). */
export function openTapeRepo(ctx: CmdCtx): TapeRepo {
  const dir = ctx.repoDir()
  return isFormat2(dir) ? tapeRepoOf(Repo2.open(dir, (m) => process.stderr.write(`bfs: warning: ${m}\n`))) : ctx.openRepo()
}

