import type { Repository } from '../repo/repository.js'
import type { RunRecorder } from './record.js'

/** What every command gets from the composition root (cli/main.ts). */
export interface Ctx {
  repoDir(): string
  openRepo(): Repository
  /** Set by a command to choose the exit code. */
  exitCode: number
  /** This run's history record (commands that change or check the repository begin it). */
  history: RunRecorder
}
