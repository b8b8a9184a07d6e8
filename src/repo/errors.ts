/** Exit codes; listed in `bfs --help` and README.md. */
export const EXIT = {
  OK: 0,
  /** A runtime failure: bad input, I/O error, disk full. */
  ERROR: 1,
  /** Wrong command line. */
  USAGE: 2,
  /** The backup finished but some files could not be read (they are listed); find/log finished but some generations are damaged (named). */
  PARTIAL: 3,
  /** verify found damage or differences. */
  VERIFY_FAILED: 4,
  /** Another writer holds the repository lock (format 2: the maintenance lock). */
  LOCKED: 5,
  /** Not a bfs repository, or a stored file is foreign or corrupt, or the repository's format does not have the command. */
  BAD_REPO: 6,
  /** An encrypted repository's passphrase opens none of its key files (issue 18). */
  BAD_PASSPHRASE: 7,
  /** Interrupted by a signal; nothing was committed. */
  INTERRUPTED: 130,
  /** A bug in bfs. */
  INTERNAL: 70,
} as const

export type RepoErrorCode = 'USAGE' | 'NOT_A_REPO' | 'CORRUPT' | 'LOCKED' | 'NO_SUCH_GEN' | 'BAD_INPUT' | 'EXISTS' | 'IO' | 'INTERRUPTED'

const EXIT_FOR: Record<RepoErrorCode, number> = {
  NOT_A_REPO: EXIT.BAD_REPO,
  CORRUPT: EXIT.BAD_REPO,
  LOCKED: EXIT.LOCKED,
  NO_SUCH_GEN: EXIT.ERROR,
  BAD_INPUT: EXIT.ERROR,
  /** A malformed argument found after parsing (e.g. a generation name): as commander's own usage errors. */
  USAGE: EXIT.USAGE,
  EXISTS: EXIT.ERROR,
  IO: EXIT.ERROR,
  INTERRUPTED: EXIT.INTERRUPTED,
}

/** An expected failure with a one-line message for the user. */
export class BfsError extends Error {
  constructor(
    readonly code: RepoErrorCode,
    message: string,
  ) {
    super(message)
    this.name = 'BfsError'
  }
  get exitCode(): number {
    return EXIT_FOR[this.code]
  }
}
