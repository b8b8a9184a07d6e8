import { InvalidArgumentError, Option, type Command } from 'commander'
import { Repository } from '../repo/repository.js'
import { BfsError } from '../repo/errors.js'
import { isS3Url } from '../store/s3-url.js'
import { S3Store } from '../store/s3.js'
import { S3CachedStore } from '../store/objcache.js'
import { storeAt } from '../store/open.js'
import type { Ctx } from './context.js'
import { canonicalLocation, rememberRepo } from '../repo/repo-records.js'
import { Repo2 } from '../repo/v2/repo2.js'
import { NEW_REPO_DEDUP_MIN_BYTES } from '../format/v2/config.js'

import { testScrypt } from './key.js'

/** `--dedup-min-bytes N`: a whole number of bytes ≥ 0 (digits only: no '', 1e3, 0x10 or 4K). */
function dedupMinBytes(v: string): number {
  const n = Number(v)
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('--dedup-min-bytes must be a whole number of bytes ≥ 0')
  return n
}

export function registerInit(program: Command, ctx: Ctx): void {
  program
    .command('init')
    .description('create an empty repository (the only command that creates one)')
    .addOption(new Option('--format <n>', 'on-disk format: 2 (the default: metadata in content-addressed pieces shared between generations; every command takes it; the only format on S3) or 1 (the earlier format, still read and written: backup, restore, mount, verify and the read commands take it; forget, merge, prune and compact need format 2)').choices(['1', '2']).default('2'))
    .addOption(new Option('--encrypt', 'encrypt every object with a key derived from a passphrase (--password-file FILE, BFS_PASSWORD, or asked twice on the terminal)'))
    .addOption(new Option('--aead <name>', 'with --encrypt: the AEAD (aes-256-gcm, or chacha20-poly1305 for CPUs without AES instructions)').choices(['aes-256-gcm', 'chacha20-poly1305']).default('aes-256-gcm'))
    // issue 18 (format.md §2.17 "no-dedup"): no content dedup, so the repository's growth does not say whether a file's content was stored already
    .addOption(new Option('--no-dedup', 'with --encrypt: no content dedup across files (no dedup index): a copy of a file is stored again, so what a backup stores does not tell whether that content was already in the repository'))
    // format.md §2.7/§2.17: below 1 KiB an index entry costs about what the file's compressed bytes do
    .addOption(new Option('--dedup-min-bytes <n>', `format 2: files smaller than N bytes get no content dedup index entry, so a copy of one is stored again (default: ${NEW_REPO_DEDUP_MIN_BYTES}: below 1 KiB an entry costs about what the file's compressed bytes do); 1 indexes every non-empty file, for trees of many small duplicated files; fixed at init`).argParser(dedupMinBytes))
    .action(async (o: { format: string; encrypt?: boolean; aead: string; dedup: boolean; dedupMinBytes?: number }) => {
      if (o.dedupMinBytes !== undefined && o.format !== '2') throw new BfsError('USAGE', '--dedup-min-bytes needs format 2 (format 1 has no content dedup)')
      if (o.dedupMinBytes !== undefined && !o.dedup) throw new BfsError('USAGE', '--dedup-min-bytes with --no-dedup: a repository without content dedup indexes no file')
      if (!o.dedup && !o.encrypt) throw new BfsError('USAGE', '--no-dedup needs --encrypt (it closes the dedup oracle of an encrypted repository; an unencrypted repository holds its contents in the clear)')
      if (!o.encrypt && process.env.BFS_REQUIRE_ENCRYPTION === '1') throw new BfsError('USAGE', 'BFS_REQUIRE_ENCRYPTION=1: only encrypted repositories may be made (bfs init --encrypt)')
      if (o.encrypt) {
        if (o.format !== '2') throw new BfsError('USAGE', '--encrypt needs format 2')
      } else if (process.env.BFS_PASSWORD_FILE) throw new BfsError('USAGE', '--password-file without --encrypt: an unencrypted repository has no passphrase (bfs init --encrypt)')
      if (o.format !== '2' && isS3Url(ctx.repoDir())) throw new BfsError('USAGE', `${ctx.repoDir()}: a repository on S3 is format 2 only: bfs init --format 2`)
      if (isS3Url(ctx.repoDir())) {
        const st = storeAt(ctx.repoDir())
        const s3 = st instanceof S3CachedStore ? st.inner : st
        if (s3 instanceof S3Store) {
          try {
            if (await s3.ensureBucket()) process.stdout.write(`created bucket ${JSON.stringify(s3.location.bucket)} at ${s3.location.endpoint}\n`)
          } finally {
            s3.close()
          }
        }
      }
      if (o.encrypt) {
        const { readPassphrase } = await import('./passphrase.js')
        const passphrase = await readPassphrase({ passwordFile: process.env.BFS_PASSWORD_FILE || undefined, prompt: 'new passphrase: ', confirm: true })
        const repo = await Repo2.initEncrypted(ctx.repoDir(), { passphrase, aead: o.aead as 'aes-256-gcm' | 'chacha20-poly1305', scrypt: testScrypt(), noDedup: !o.dedup, dedupMinBytes: o.dedupMinBytes })
        // this host's record of the location (format.md §2.22.3): a new repository, whatever was recorded there
        rememberRepo({ location: canonicalLocation(repo.dir), repoId: repo.config.repoId, encrypted: true, format: 2 }, null)
        return void process.stdout.write(`initialized bfs repository ${repo.dir} (format 2, encrypted: ${o.aead}${o.dedup ? '' : ', no dedup'}; keep the passphrase: without it nothing in the repository can be read)\n`)
      }
      if (o.format === '2') {
        const r2 = Repo2.init(ctx.repoDir(), { dedupMinBytes: o.dedupMinBytes })
        rememberRepo({ location: canonicalLocation(r2.dir), repoId: r2.config.repoId, encrypted: false, format: 2 }, null)
        return void process.stdout.write(`initialized bfs repository ${r2.dir} (format 2)\n`)
      }
      const repo = Repository.init(ctx.repoDir())
      rememberRepo({ location: canonicalLocation(repo.dir), repoId: repo.config.repoId, encrypted: false, format: 1 }, null)
      process.stdout.write(`initialized bfs repository ${repo.dir}\n`)
    })
}
