import type { Repository } from '../repo/repository.js'

/** What every command gets from the composition root (cli/main.ts). */
export interface Ctx {
  repoDir(): string
  openRepo(): Repository
  /** Set by a command to choose the exit code. */
  exitCode: number
}
