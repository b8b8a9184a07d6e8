/**
 * Opens a format 2 repository for a command: Repo2.open, then — an encrypted repository
 * (§2.21–2.22) — its passphrase (`--password-file FILE`, which reaches here as
 * $BFS_PASSWORD_FILE so a mount's background child has it too; else $BFS_PASSWORD; else a
 * prompt) unlocks the master key and the repository keys are derived once, the config's MAC
 * checked. A wrong passphrase is PassphraseError (exit 7).
 */
import { Repo2 } from '../repo/v2/repo2.js'
import { readPassphrase } from './passphrase.js'

export async function openRepo2(dir: string, warn?: (m: string) => void): Promise<Repo2> {
  const repo = Repo2.open(dir, warn)
  await unlockRepo2(repo)
  return repo
}

/** Unlocks an encrypted repository with the passphrase of this command line (a no-op otherwise). */
export async function unlockRepo2(repo: Repo2): Promise<void> {
  if (!repo.encrypted || repo.unlocked) return
  const passphrase = await readPassphrase({ passwordFile: process.env.BFS_PASSWORD_FILE || undefined, prompt: `passphrase for ${repo.dir}: ` })
  await repo.unlock(passphrase)
}
