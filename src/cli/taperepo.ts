import type { TapeRepo } from '../repo/tiers.js'
import { isFormat2 } from '../repo/v2/detect.js'
import { Repo2, tapeRepoOf } from '../repo/v2/repo2.js'
import type { CmdCtx } from './output.js'
import { BfsError } from '../repo/errors.js'

/** The repository as the tape tier takes it (tier, tier serve), of either format (format 2: format.md §2.18). */
export function openTapeRepo(ctx: CmdCtx): TapeRepo {
  const dir = ctx.repoDir()
  if (!isFormat2(dir)) return ctx.openRepo()
  const repo = Repo2.open(dir, (m) => process.stderr.write(`bfs: warning: ${m}\n`))
  // tiers/ and the tape catalog are not sealed (issue 18, format.md §2.22.2)
  if (repo.encrypted) throw new BfsError('BAD_INPUT', `${repo.dir} is encrypted: tape tiers are not supported for encrypted repositories yet`)
  return tapeRepoOf(repo)
}

