/**
 * `bfs key list|add|remove` (issue 18; native-notes/format.md §2.21): the passphrases of an
 * encrypted format 2 repository. Each is a key file wrapping the one master key; adding one
 * needs a passphrase that opens the repository, removing one too, and the last readable key
 * file is never removed. add and remove change `keys/` under the maintenance lock (§2.3).
 */
import os from 'node:os'
import { Option, type Command } from 'commander'
import { BfsError } from '../repo/errors.js'
import { isFormat2 } from '../repo/v2/detect.js'
import { Lease } from '../repo/v2/lease.js'
import { addKey, listKeys, removeKey } from '../repo/v2/keys.js'
import { Repo2 } from '../repo/v2/repo2.js'
import type { Ctx } from './context.js'
import { printJson } from './json.js'
import { readPassphrase } from './passphrase.js'
import { type KdfParams, SCRYPT_DEFAULTS } from '../crypto/keys.js'

const warn = (m: string): void => void process.stderr.write(`bfs: warning: ${m}\n`)

/** How long add and remove wait for the maintenance lock (a prune may hold it). */
const KEY_LOCK_WAIT_MS = 10 * 60_000

function openEncrypted(ctx: Ctx): Repo2 {
  const dir = ctx.repoDir()
  if (!isFormat2(dir)) {
    ctx.openRepo() // not a repository at all: exit 6 with its own message
    throw new BfsError('BAD_INPUT', `${dir} is a format 1 repository: it has no keys (encryption needs format 2)`)
  }
  const repo = Repo2.open(dir, warn)
  if (!repo.encrypted) throw new BfsError('BAD_INPUT', `${repo.dir} is not encrypted: it has no keys`)
  return repo
}

async function unlockWithMaster(repo: Repo2): Promise<{ keyId: string; masterKey: Buffer }> {
  const pass = await readPassphrase({ passwordFile: process.env.BFS_PASSWORD_FILE || undefined, prompt: `passphrase for ${repo.dir}: ` })
  return repo.unlockWithMaster(pass)
}

export function registerKey(program: Command, ctx: Ctx): void {
  const key = program.command('key').description("an encrypted repository's passphrases: each one a key file wrapping the repository's master key")
  key
    .command('list')
    .description('list the key files (no passphrase needed: key files are not encrypted)')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const repo = openEncrypted(ctx)
      const keys = await listKeys(repo.store)
      if (o.json) return printJson(keys.map((k) => ('record' in k ? { keyId: k.keyId, created: k.record.created, host: k.record.host, user: k.record.user, label: k.record.label, aead: k.record.aead, kdf: { name: k.record.kdf, N: k.record.N, r: k.record.r, p: k.record.p, ...(k.record.lanes === undefined ? {} : { lanes: k.record.lanes }) } } : { keyId: k.keyId, problem: k.problem })))
      process.stdout.write(`${'KEY'.padEnd(16)}  ${'CREATED'.padEnd(20)}  HOST  USER  LABEL\n`)
      for (const k of keys) {
        if ('problem' in k) process.stdout.write(`${k.keyId.padEnd(16)}  damaged: ${k.problem}\n`)
        else process.stdout.write(`${k.keyId}  ${k.record.created.slice(0, 19)}Z  ${k.record.host}  ${k.record.user}  ${k.record.label || '-'}\n`)
      }
      const damaged = keys.filter((k) => 'problem' in k).length
      if (damaged) ctx.exitCode = 6
    })
  key
    .command('add')
    .description('add a passphrase (asks for one that opens the repository, then the new one)')
    .option('--label <text>', 'a note kept in the key file, in plaintext (e.g. whose passphrase it is)', '')
    .addOption(new Option('--new-password-file <file>', "the new passphrase: the file's content without one trailing newline (else $BFS_NEW_PASSWORD, else asked twice on the terminal)"))
    .action(async (o: { label: string; newPasswordFile?: string }) => {
      if (o.label.length > 256) throw new BfsError('USAGE', '--label takes at most 256 characters')
      const repo = openEncrypted(ctx)
      const { masterKey } = await unlockWithMaster(repo)
      try {
        const pass = await readPassphrase({ passwordFile: o.newPasswordFile, env: { BFS_PASSWORD: process.env.BFS_NEW_PASSWORD }, prompt: 'new passphrase: ', confirm: true })
        const lock = await Lease.maintenance(repo, 'key add', { waitMs: KEY_LOCK_WAIT_MS, onWait: warn })
        try {
          const id = await addKey(repo.store, repo.config.repoId, repo.config.encryption!.aead, masterKey, pass, { host: os.hostname(), user: os.userInfo().username, label: o.label }, testScrypt())
          process.stdout.write(`added key ${id}\n`)
        } finally {
          lock.release()
        }
      } finally {
        masterKey.fill(0)
      }
    })
  key
    .command('remove')
    .description('remove a passphrase (its key file); the last readable key is never removed')
    .argument('<keyId>', 'the key, as bfs key list shows it')
    .action(async (keyId: string) => {
      if (!/^[0-9a-f]{16}$/.test(keyId)) throw new BfsError('USAGE', `${keyId} is not a key id (16 hex digits, as bfs key list shows)`)
      const repo = openEncrypted(ctx)
      ;(await unlockWithMaster(repo)).masterKey.fill(0)
      const lock = await Lease.maintenance(repo, 'key remove', { waitMs: KEY_LOCK_WAIT_MS, onWait: warn })
      try {
        await removeKey(repo.store, keyId)
      } finally {
        lock.release()
      }
      process.stdout.write(`removed key ${keyId}\n`)
    })
}

/** Tests only (NODE_ENV=test): BFS_TEST_SCRYPT_N makes key files cheap to open (scrypt N of each of the writers' two lanes; r 8, p 1). */
export function testScrypt(): KdfParams | undefined {
  const n = process.env.NODE_ENV === 'test' ? Number(process.env.BFS_TEST_SCRYPT_N) : NaN
  return Number.isSafeInteger(n) && n > 0 ? { ...SCRYPT_DEFAULTS, N: n } : undefined
}
