/**
 * Opens a format 2 repository for a command: Repo2.open, then — an encrypted repository
 * (§2.21–2.22) — its passphrase (`--password-file FILE`, which reaches here as
 * $BFS_PASSWORD_FILE so a mount's background child has it too; else $BFS_PASSWORD; else a
 * prompt) unlocks the master key and the repository keys are derived once, the config's MAC
 * checked. A wrong passphrase is PassphraseError (exit 7).
 */
import fs from 'node:fs'
import { historyUnlocked } from '../repo/history.js'
import { Repo2 } from '../repo/v2/repo2.js'
import { readPassphrase } from './passphrase.js'
import { canonicalLocation, checkRepo, rememberRepo } from '../repo/repo-records.js'

export async function openRepo2(dir: string, warn?: (m: string) => void): Promise<Repo2> {
  const opened = openRepo2Checked(dir, warn)
  await opened.unlock()
  return opened.repo
}

/**
 * openRepo2 in two steps, for a command that starts work between them (the backup of an
 * encrypted repository starts its workers while scrypt runs): the repository opened and this
 * host's record of the location checked (format.md §2.22.3: a repository swapped for a plain
 * one is refused here, before anything is written), then `unlock()`.
 */
export function openRepo2Checked(dir: string, warn?: (m: string) => void): { repo: Repo2; unlock(): Promise<void> } {
  const repo = Repo2.open(dir, warn)
  const seen = { location: canonicalLocation(repo.dir), repoId: repo.config.repoId, encrypted: repo.encrypted, format: 2 as const }
  const prev = checkRepo(seen)
  return {
    repo,
    unlock: async () => {
      await unlockRepo2(repo)
      if (repo.encrypted) rememberRepo(seen, prev)
    },
  }
}

/**
 * The passphrase this process asked for at the terminal (null: none, or it came from a file or
 * the environment, which a mount's background child reads as well): the mount hands it to
 * its child on the child's stdin.
 */
export let askedPassphrase: string | null = null

/**
 * The passphrase that unlocked each repository (by its id) in this process: a command that
 * opens the same repository twice (a second Repo2) neither asks again at the terminal nor
 * reads a background child's stdin a second time (it would read nothing).
 */
const unlockedWith = new Map<string, string>()

/**
 * The passphrase of this process when no child could find it on its own (asked at the
 * terminal, or handed over on stdin by a parent that asked): the recall service this process
 * starts gets it on its stdin (format.md §2.18 "Encrypted repositories"). Null otherwise.
 */
export let passphraseForChildren: string | null = null

/** Unlocks an encrypted repository with the passphrase of this command line (a no-op otherwise). */
export async function unlockRepo2(repo: Repo2): Promise<void> {
  if (!repo.encrypted || repo.unlocked) return
  let passphrase: string
  const known = unlockedWith.get(repo.config.repoId)
  if (known !== undefined) {
    passphrase = known
  } else if (process.env.BFS_PASSWORD_STDIN === '1') {
    // a mount's background child: its parent asked at the terminal and wrote it here (server.ts)
    delete process.env.BFS_PASSWORD_STDIN
    passphrase = fs.readFileSync(0, 'utf8').replace(/\r?\n$/, '')
    passphraseForChildren = passphrase
  } else {
    const fromTerminal = !process.env.BFS_PASSWORD_FILE && !process.env.BFS_PASSWORD
    // a mount that will detach (bin/bfs): the prompt goes to fd 2 by plain writes and the
    // terminal's input stream is closed after it, so the daemon keeps no descriptor of the
    // terminal (a tty stream holds a private one)
    const detaching = process.env.BFS_DETACH === '1' && fromTerminal && !!process.stdin.isTTY
    const tty = detaching ? { input: process.stdin, output: { write: (s: string) => (fs.writeSync(2, s), true) } as unknown as NodeJS.WriteStream } : undefined
    try {
      passphrase = await readPassphrase({ passwordFile: process.env.BFS_PASSWORD_FILE || undefined, prompt: `passphrase for ${repo.dir}: `, tty })
    } finally {
      if (detaching) process.stdin.destroy()
    }
    if (fromTerminal) askedPassphrase = passphraseForChildren = passphrase
  }
  await repo.unlock(passphrase)
  unlockedWith.set(repo.config.repoId, passphrase)
  // this run's history record can be sealed now (and `bfs history` opens the records)
  historyUnlocked(repo.dir, { seal: (key, payload) => repo.seal('history', key, payload), open: (key, file) => repo.unseal('history', key, file) })
}
