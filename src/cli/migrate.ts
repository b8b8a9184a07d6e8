import { openRepo2 } from './open2.js'
import { Command, InvalidArgumentError, Option } from 'commander'
import { BfsError, EXIT } from '../repo/errors.js'
import { migrate, type MigrateOptions, type MigrateResult } from '../repo/migrate.js'
import { isFormat2 } from '../repo/v2/detect.js'
import { Repo2 } from '../repo/v2/repo2.js'
import { migrate2 } from '../repo/v2/tape2.js'
import { parseGenRef, type Repository } from '../repo/repository.js'
import { count, humanBytes, simTime, sizeValue, type CmdCtx } from './output.js'
import { Progress } from './progress.js'

const DURATION_S: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400, y: 365 * 86400 }

/** 90d, 12h, 2w, 30m, 3600s (a plain number is seconds). */
export function parseDuration(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([smhdwy]?)$/i.exec(v.trim())
  if (!m) throw new InvalidArgumentError('a duration like 90d, 12h, 2w or 30m')
  return Number(m[1]) * DURATION_S[(m[2] || 's').toLowerCase()]! * 1000
}

/** genN, N, latest, latest~K, and ranges genA-genB (or A-B, genA-B): generation ids. */
export function parseGenSelection(repo: { dir: string; generationIds(): number[]; idOf(ref: string): number }, refs: string[]): number[] {
  const ids = new Set<number>()
  for (const ref of refs) {
    const r = /^(?:gen)?(\d+)-(?:gen)?(\d+)$/.exec(ref)
    if (r) {
      const [a, b] = [Number(r[1]), Number(r[2])]
      if (a > b) throw new BfsError('USAGE', `${ref}: the range ends before it starts`)
      const inRange = repo.generationIds().filter((id) => id >= a && id <= b)
      if (inRange.length === 0) throw new BfsError('NO_SUCH_GEN', `no generations in ${ref} in ${repo.dir}`)
      for (const id of inRange) ids.add(id)
      continue
    }
    const p = parseGenRef(ref)
    ids.add('id' in p ? p.id : repo.idOf(ref))
  }
  return [...ids].sort((a, b) => a - b)
}

function summary(r: MigrateResult, verify: boolean): string {
  const p = r.plan
  const lines: string[] = []
  const w = r.write
  if (!w) {
    lines.push(`nothing to migrate to tier ${p.tier.name}${p.onTape ? ` (${count(p.onTape, 'unit')} of ${p.gens.map((g) => `gen${g}`).join(', ') || 'them'} already on tape)` : ''}${p.kept ? `, ${count(p.kept, 'unit')} kept on disk for the newest generations` : ''}${r.removed ? `; removed ${count(r.removed, 'disk copy', 'disk copies')} of units already on tape` : ''}`)
    return lines.join('\n') + '\n'
  }
  const rate = w.writeSeconds > 0 ? w.bytes / w.writeSeconds : 0
  const native = 400e6
  lines.push(
    `migrated ${count(w.blobs - w.failed.length, 'unit')} of ${p.gens.map((g) => `gen${g}`).join(', ')} to tier ${p.tier.name}: ${humanBytes(w.bytes)} in ${count(w.files, 'tape file')} on ${w.cartridges.join(', ')}` +
      `${verify ? ', read back and verified' : ''}; removed ${count(r.removed, 'unit')} from disk`,
  )
  lines.push(`  tape time ${simTime(w.seconds)} simulated: writing at ${(rate / 1e6).toFixed(0)} MB/s (${((rate / native) * 100).toFixed(1)} % of native, ${count(w.backhitches, 'backhitch', 'backhitches')})${verify ? `, verifying ${simTime(w.verifySeconds)}` : ''}; read from disk at ${Number.isFinite(w.feedRate) ? `${(w.feedRate / 1e6).toFixed(0)} MB/s` : 'memory speed'}`)
  if (p.kept) lines.push(`  ${count(p.kept, 'unit')} kept on disk: the newest generations read them`)
  if (w.failed.length) lines.push(`  ${count(w.failed.length, 'unit')} failed the read-back and stay on disk`)
  return lines.join('\n') + '\n'
}

const parseSize = (v: string): number => {
  const n = sizeValue(v)
  if (n === null) throw new InvalidArgumentError('a size like 4G, 512M or 1048576')
  return n
}

export function registerMigrate(program: Command, ctx: CmdCtx): void {
  program
    .command('migrate')
    .description('move the units of generations from disk to a tape tier (catalog, block maps, hashes and unit headers stay on disk)')
    .argument('[gens...]', 'generations: genN, N, latest~K, ranges genA-genB (default: every generation the options select)')
    .option('--older-than <duration>', 'only generations older than this (90d, 12h, 2w)', parseDuration)
    .addOption(new Option('--keep-on-disk <n>', 'keep on disk what the N newest generations read (and those generations)').argParser((v) => {
      const n = Number(v)
      if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('--keep-on-disk takes a whole number')
      return n
    }))
    .option('--tier <name>', 'the tier to migrate to (default: the only one)')
    .addOption(new Option('--file-size <size>', 'data per tape file').default(4 * 2 ** 30, '4G').argParser(parseSize))
    .addOption(new Option('--commit-files <n>', 'tape files between a flush (one backhitch) and the catalog commit that frees their disk copies').default(16).argParser((v) => {
      const n = Number(v)
      if (!/^\d+$/.test(v.trim()) || n < 1 || n > 100000) throw new InvalidArgumentError('--commit-files takes a whole number from 1')
      return n
    }))
    .option('--verify', 'read every tape file back and check each unit before removing its disk copy')
    .option('--dry-run', 'show what would be migrated')
    .option('--wait [seconds]', 'wait for another writer (and for a drive) to finish (default: forever)')
    .option('--json', 'print JSON lines: progress (message_type "status", at most once a second), a lock wait ("wait"), then the result ("summary")')
    .option('-q, --quiet', 'print nothing but warnings and errors (no progress, no summary)')
    .action(async (gens: string[], o) => {
      if (gens.length === 0 && o.olderThan === undefined && o.keepOnDisk === undefined) {
        throw new BfsError('USAGE', 'say what to migrate: generations, --older-than or --keep-on-disk')
      }
      if (!(o.fileSize >= 1 << 20)) throw new BfsError('USAGE', '--file-size must be at least 1M')
      const waitMs = o.wait === undefined ? 0 : o.wait === true ? Number.MAX_SAFE_INTEGER : Number(o.wait) * 1000
      if (Number.isNaN(waitMs)) throw new BfsError('USAGE', '--wait takes a number of seconds')
      // format 2: the same migration under the maintenance lock (repo/v2/tape2.ts)
      const v2 = isFormat2(ctx.repoDir()) ? await openRepo2(ctx.repoDir(), (m) => process.stderr.write(`bfs: warning: ${m}\n`)) : null
      const repo = v2 ?? ctx.openRepo()
      const ids = gens.length ? parseGenSelection({ dir: repo.dir, generationIds: () => repo.generationIds(), idOf: (ref) => (v2 ? v2.resolve(ref).id : (repo as Repository).resolveRef(ref).manifest.id) }, gens) : undefined
      const line = new Progress({ action: 'migrate', label: 'migrating:', json: !!o.json, quiet: !!o.quiet, unit: 'unit' })
      const ac = new AbortController()
      const onSig = (): void => ac.abort()
      process.on('SIGINT', onSig)
      process.on('SIGTERM', onSig)
      let res: MigrateResult
      try {
        res = await (v2 ? (x: MigrateOptions) => migrate2(v2, x) : (x: MigrateOptions) => migrate(repo as Repository, x))({
          gens: ids,
          olderThanMs: o.olderThan,
          keepOnDisk: o.keepOnDisk,
          tier: o.tier,
          fileBytes: o.fileSize,
          commitFiles: o.commitFiles,
          verify: !!o.verify,
          dryRun: !!o.dryRun,
          lockWaitMs: waitMs,
          driveWaitMs: o.wait === undefined ? undefined : waitMs,
          signal: ac.signal,
          reporter: {
            warn: (m) => line.warn(m),
            note: (m) => line.wait(m), // (the only note: waiting for the lock)
            progress: (p) => line.update({ files: p.blobs, totalFiles: p.totalBlobs, bytes: p.bytes, totalBytes: p.totalBytes }),
          },
        })
      } finally {
        line.finish()
        process.off('SIGINT', onSig)
        process.off('SIGTERM', onSig)
      }
      const p = res.plan
      if (o.json) {
        const w = res.write
        line.summary({
          tier: p.tier.name, gens: p.gens, dryRun: !!o.dryRun, units: p.units.length, bytes: p.bytes, kept: p.kept, onTape: p.onTape, leftovers: p.leftovers.length,
          removed: res.removed, files: w?.files ?? 0, cartridges: w?.cartridges ?? [], seconds: w?.seconds ?? 0, writeSeconds: w?.writeSeconds ?? 0, verifySeconds: w?.verifySeconds ?? 0,
          writeRate: w && w.writeSeconds > 0 ? w.bytes / w.writeSeconds : 0, feedRate: w && Number.isFinite(w.feedRate) ? w.feedRate : null, backhitches: w?.backhitches ?? 0, failed: w?.failed ?? [],
        })
      } else if (!line.textSummary) {
        // --quiet: failures are said by the exit code and the warnings
      } else if (o.dryRun) {
        process.stdout.write(`would migrate ${count(p.units.length, 'unit')} (${humanBytes(p.bytes)}) of ${p.gens.map((g) => `gen${g}`).join(', ') || 'no generation'} to tier ${p.tier.name}${p.onTape ? `; ${count(p.onTape, 'unit')} already on tape` : ''}${p.kept ? `; ${count(p.kept, 'unit')} kept on disk for the newest generations` : ''}\n`)
      } else process.stdout.write(summary(res, !!o.verify))
      if (res.write?.failed.length) ctx.exitCode = EXIT.ERROR
    })
}
