/**
 * The format 2 paths of init, backup, ls and cat (issue 15 step 1). Each command checks
 * `isFormat2(repo)` before opening the repository the format 1 way; every other command
 * meets a format 2 repository in ctx.openRepo (cli/main.ts), which refuses it in one line
 * naming the command (notYetOnFormat2, exit 6).
 */
import { openRepo2, openRepo2Checked } from './open2.js'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { E_LINKED, FileType, type Entry2 } from '../format/v2/dir.js'
import { pieceRefToString } from '../format/v2/common.js'
import { BfsError, EXIT } from '../repo/errors.js'
import { parseGenRef } from '../repo/repository.js'
import { verifyGenerations2 } from '../repo/v2/verify2.js'
import { verifyAgainst2 } from '../repo/v2/against2.js'
import { backupTree2 } from '../repo/v2/backup2.js'
import { backupVolume2 } from '../repo/v2/volume2.js'
import type { Commit2Result } from '../repo/commit/generation2.js'
import type { BackupProgress } from '../repo/backup.js'
import { checkFreezeOptions, decideMode, refuseOnlineDevice } from '../repo/volume.js'
import type { TagRules } from '../repo/exclude.js'
import { genFilter, matches } from './sources.js'
import { readGroup } from '../repo/groups.js'
import { restoreEntries } from '../repo/restore.js'
import { restoreSet2, warmGeneration } from '../repo/v2/restore2.js'
import { reportRestore, showTapePlan } from './restore-report.js'
import { holder, openReadStore2, recallFor } from './datastore.js'
import { GenReader2 } from '../repo/v2/read2.js'
import { PieceReader } from '../pieces/reader.js'
import { Repo2, tapeRepoOf } from '../repo/v2/repo2.js'
import { WorkerPool } from '../repo/pool.js'
import { readerLease } from '../repo/v2/lease.js'
import { type ManifestV2, pinName } from '../format/v2/records.js'
import { DICT_RE, keys2, UNIT2_RE } from '../format/v2/layout.js'
import { splitRef, withSignals } from './common.js'
import type { Ctx } from './context.js'
import { lsEntry, verifyJson } from './json.js'
import { consistencyNote, count, humanBytes, modeString, OutBuffer, writeOut, writeStdout } from './output.js'
import { onlineSummary } from './online-summary.js'
import { Progress } from './progress.js'
import { damagedRow, warnDamaged, writeGenerationsTable } from './gentable.js'

const SLASH = Buffer.from('/')
/** A warning, as format 1 prints it (`bfs: warning: …`: the journal's level, the history's first warnings). */
const warn = (m: string): void => void process.stderr.write(`bfs: warning: ${m}\n`)

export async function backupV2(ctx: Ctx, src: string, o: Record<string, unknown>, more: { excludes: string[]; tagRules: TagRules; tags: string[]; host: string }): Promise<void> {
  // the mode as format 1 decides it (--volume, --mode, or auto: a device or an image file is a volume)
  const decision = o.volume || o.mode === 'volume' ? { mode: 'volume' as const, source: src, reason: 'requested' } : o.mode === 'file' ? { mode: 'file' as const, source: src, reason: 'requested' } : decideMode(src, o.volumeThreshold as number)
  const volume = decision.mode === 'volume'
  if (o.base !== undefined && !volume) throw new BfsError('BAD_INPUT', '--base applies to volume backups')
  if (o.online && volume) refuseOnlineDevice(decision.source)
  const modeLine = `mode: ${volume ? 'volume' : 'files'}${decision.reason === 'requested' ? '' : ` (${decision.reason})`}\n`
  if (o.t0File !== undefined && !o.online) throw new BfsError('BAD_INPUT', '--t0-file applies with --online')
  if (o.onlineNice !== undefined && !o.online) throw new BfsError('BAD_INPUT', '--online-nice applies with --online')
  checkFreezeOptions(o, decision, [ctx.repoDir()]) // format 1's refusals, before anything is written (maybe on the filesystem to freeze)
  ctx.history.begin(ctx.repoDir, 'backup', { sources: [path.resolve(src)] }) // recorded from here (a refusal above is not a run)
  // (this host's record of the location checked first: cli/open2.ts)
  const opened = openRepo2Checked(ctx.repoDir(), warn)
  const repo = opened.repo
  // An encrypted repository: its compression workers start now, on their own threads, while the
  // passphrase goes through scrypt (~0.4 s on the threadpool: cli/open2.ts), instead of after it
  // (issue 18: the backup's time against a plain one). They get no key, data or work before
  // the repository is unlocked: every job comes from the backup below.
  const pool = repo.encrypted && !repo.unlocked ? new WorkerPool((o.threads as number | undefined) ?? os.availableParallelism()) : undefined
  pool?.prestart()
  try {
    await opened.unlock()
    // --group (format.md §2.14.2): format 1's group file and refusals
    const group = o.group !== undefined ? readGroup(repo, String(o.group)) : undefined
    if (group && volume) throw new BfsError('BAD_INPUT', `--group selects files; ${decision.source} would be backed up as a volume (use --mode file)`)
    const prog = new Progress({ action: 'backup', label: 'backing up:', json: !!o.json, quiet: !!o.quiet })
    // --full compares with no previous generation; the progress totals are still the latest one's of SRC (in the group)
    const est = o.full && !volume ? latestStats(repo, path.resolve(src), group?.name ?? null) : undefined
    // `--base GEN`: a volume generation of this source (read again under the backup's lease)
    const base = o.base !== undefined ? repo.resolve(String(o.base), path.resolve(decision.source)) : undefined
    if (base && base.kind !== 'volume') throw new BfsError('BAD_INPUT', `--base gen${base.id} is not a volume generation`)
    const common = {
      online: o.online as 'on' | 'auto' | undefined, t0File: o.t0File as string | undefined, onlineNice: o.onlineNice as number | undefined,
      source: decision.source, label: o.label as string, full: !!o.full, tags: more.tags, host: more.host, threads: o.threads as number | undefined, pool, level: o.level as number,
      unitBlocks: o.unitBlocks as number, frameBlocks: o.frameBlocks as number | undefined,
      reporter: {
        warn: (m: string) => (ctx.history.warn(m), prog.clear(), warn(m)),
        progress: (p: BackupProgress) => prog.update({ files: p.files, totalFiles: p.expectedFiles ?? est?.files ?? null, bytes: p.bytes, totalBytes: p.expectedBytes ?? est?.logicalBytes ?? null, path: p.path }),
      },
    }
    const res: Commit2Result & { mountPoints?: string[] } = await withSignals((signal) =>
      volume ? backupVolume2(repo, { ...common, baseId: base?.id, freeze: !!o.freeze, freezeTimeoutS: o.freezeTimeout as number | undefined, signal }) : backupTree2(repo, { ...common, oneFileSystem: !!o.oneFileSystem, group, excludes: more.excludes, tagRules: more.tagRules, signal, online: o.online as 'on' | 'auto' | undefined, t0File: o.t0File as string | undefined, onlineNice: o.onlineNice as number | undefined }),
    ).finally(() => prog.finish())
    const m = res.manifest
    const s = m.stats as Record<string, number>
    ctx.history.add({ sources: m.sources.map((x) => x.path), gens: [m.id], bytes: { read: s.bytesRead ?? 0, stored: s.storedBytes ?? 0, metadata: s.metaBytes ?? 0 } })
    const online = res.online
    // `parent` at the top as format 1 has it (0: a full backup); sources[0].parent stays
    if (o.json) prog.summary({ generation: `gen${m.id}`, mode: decision.mode, modeReason: decision.reason, ...m, parent: m.sources[0]!.parent, rootEntry: undefined, links: m.links ? pieceRefToString(m.links) : null, biLog: m.biLog ? pieceRefToString(m.biLog) : null, biIndex: m.biIndex ? pieceRefToString(m.biIndex) : null, skippedPaths: res.skippedPaths })
    else if (prog.textSummary) {
      // dirs: as format 1 counts them, below the source (the manifest's stats.dirs counts its root too)
      process.stdout.write(
        modeLine + // as format 1: files or volume, and why (auto mode)
        `gen${m.id} committed (${m.sources[0]!.parent ? `incremental to gen${m.sources[0]!.parent}` : 'full'}; format 2)\n` +
          (volume
            ? `  image: ${s.newFiles ? 'new' : s.changedFiles ? 'changed' : 'unchanged (not read)'}; ${count(s.mapPieces ?? 0, 'map piece')} written, ${s.mapPiecesReused ?? 0} reused\n`
            : `  files: ${s.newFiles} new, ${s.changedFiles} changed, ${s.unchangedFiles} unchanged, ${s.skipped} skipped; ${count(Math.max(0, (s.dirs ?? 0) - 1), 'dir')}\n`) +
          `  read ${humanBytes(s.bytesRead ?? 0)} of ${humanBytes(s.logicalBytes ?? 0)}, stored ${humanBytes(s.storedBytes ?? 0)} data + ${humanBytes(s.metaBytes ?? 0)} metadata (${count(s.pieces ?? 0, 'piece')}), ${(s.seconds ?? 0).toFixed(2)} s\n`,
      )
      if (m.consistency) process.stdout.write(`  consistency: ${consistencyNote({ consistency: m.consistency, source: m.sources[0]!.path }, res.mountPoints ?? [])}\n`)
      if (res.skippedPaths.length) process.stdout.write(`  skipped:\n${res.skippedPaths.map((p) => `    ${p}\n`).join('')}`)
      if (online) process.stdout.write(onlineSummary(online, volume ? 'image' : 'tree'))
    }
    if (res.skippedPaths.length || (online && online.uncovered.length)) ctx.exitCode = EXIT.PARTIAL
  } finally {
    // (writeGeneration2 closed them already, unless the backup ended before it started)
    await pool?.close()
  }
}

/**
 * A generation's own data (its run's unit files): as its backup stored them (the manifest's
 * `storedBytes`), and now — smaller after `bfs compact`, or after a prune deleted units no
 * generation uses any more. Unit files and the dictionaries compact wrote for them (§2.9.1): the
 * packs and hashes are never rewritten.
 */
function storedOf(repo: Repo2, m: ManifestV2): { backup: number; now: number } {
  const backup = Number((m.stats as Record<string, unknown>).storedBytes ?? 0)
  let now = 0
  // the backup's own stream: gens/<id> (after a merge, `run` names the merge run, which stored no data)
  for (const k of repo.sync.listSync(keys2.genDir(m.id))) {
    const name = k.slice(k.lastIndexOf('/') + 1)
    if (!UNIT2_RE.test(name) && !DICT_RE.test(name)) continue
    try {
      now += repo.sync.statSync(k).sizeBytes
    } catch {
      // deleted meanwhile
    }
  }
  return { backup, now }
}

/** The stats of the newest readable generation of `source` and `group` (format 2), if any. */
function latestStats(repo: Repo2, source: string, group: string | null): Record<string, number> | undefined {
  for (const id of repo.generationIds().reverse()) {
    try {
      const m = repo.manifest(id)
      if (m.kind === 'files' && m.sources.length === 1 && m.sources[0]!.path === source && m.group === group) return m.stats as Record<string, number>
    } catch {
      // a damaged manifest: the one before
    }
  }
  return undefined
}

function lsLine(x: Entry2, name: Buffer | string): Array<string | Buffer> {
  const when = new Date(x.mtimeSec * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '')
  const size = x.type === FileType.CharDev || x.type === FileType.BlockDev ? `${x.rdevMajor}, ${x.rdevMinor}` : String(x.size)
  return [`${modeString(x.type, x.mode)} ${String(x.nlink).padStart(3)} ${String(x.uid).padEnd(5)} ${String(x.gid).padEnd(5)} ${size.padStart(10)} ${when} `, name, x.type === FileType.Symlink && x.target ? Buffer.concat([Buffer.from(' -> '), x.target]) : '', '\n']
}

/** repo.resolve with format 1's notes on stderr (resolveGen in cli/output.ts): which source a bare `latest` took, damaged generations it passed over; none with --quiet. */
export function resolve2(repo: Repo2, ref: string, o: { quiet?: unknown }, source?: string, sourceHint?: string): ManifestV2 {
  const r = repo.resolveRef(ref, { source, sourceHint })
  if (!o.quiet) for (const n of r.notes) process.stderr.write(`bfs: ${n}\n`)
  return r.manifest
}

/** `--group` (groups are not in format 2 yet) refused by name; `--source` as an absolute path. */
function readOptions(o: Record<string, unknown>): { source?: string } {
  if (o.group !== undefined) throw new BfsError('BAD_INPUT', '--group is not supported on a format 2 repository yet')
  return { source: typeof o.source === 'string' ? path.resolve(o.source) : undefined }
}

export async function lsV2(ctx: Ctx, ref: string | undefined, o: Record<string, unknown>): Promise<void> {
  // (`bfs generations --group NAME`: that group's chain, as on format 1)
  const { source } = readOptions(ref ? o : { ...o, group: undefined })
  const repo = await openRepo2(ctx.repoDir(), warn)
  const group = !ref && o.group !== undefined ? readGroup(repo, String(o.group)).name : undefined
  // §2.20.4: a lease before the manifests are listed (removed at exit; none where the repository is read-only)
  const lease = readerLease(repo, 'ls')
  if (!ref) {
    // a damaged manifest is listed, marked, and named on stderr; the others list as usual (§2.20.10)
    // the filters of `bfs generations` (cli/sources.ts); a damaged manifest matches none but is still named
    const filter = genFilter(o)
    const all = repo.generations().filter((g) => group === undefined || !('manifest' in g) || g.manifest.group === group)
    const rows = filter ? all.filter((g) => 'manifest' in g && matches(filter, { time: g.manifest.time, host: g.manifest.host, tags: g.manifest.tags, label: g.manifest.label, sources: g.manifest.sources.map((s) => s.path) })) : all
    const damaged = all.filter((g) => 'problem' in g)
    warnDamaged(damaged as Array<{ id: number; problem: string }>)
    if (o.json) {
      return void process.stdout.write(JSON.stringify(rows.map((g) => 'manifest' in g
        ? { generation: `gen${g.id}`, id: g.id, time: g.manifest.time, label: g.manifest.label, source: g.manifest.sources[0]?.path, host: g.manifest.host, tags: g.manifest.tags, group: g.manifest.group, parent: g.manifest.sources[0]?.parent, kind: g.manifest.kind, consistency: g.manifest.consistency ?? null, partial: g.manifest.partial, stats: g.manifest.stats, stored: storedOf(repo, g.manifest) }
        : { generation: `gen${g.id}`, id: g.id, damaged: 'manifest unreadable', problem: g.problem })) + '\n')
    }
    // format 1's table (cli/generations.ts); format 2's own: several sources in SOURCE, `partial` in
    // KIND, and in STORED what the generation's own units hold now, after a compact or a prune
    writeGenerationsTable(rows.map((g) => {
      if (!('manifest' in g)) return damagedRow(g.id, 'manifest unreadable')
      const m = g.manifest
      const s = m.stats as Record<string, number>
      const st = storedOf(repo, m)
      const meta = s.metaBytes ?? 0
      const parent = m.sources.some((x) => x.parent)
      return [
        `gen${m.id}`, m.time.replace(/\.\d+Z$/, 'Z'), m.label || '-', m.sources.map((x) => x.path).join(' ') + (m.group ? ` [${m.group}]` : ''),
        m.kind + (parent ? '+' : '') + (m.consistency ? ` (${m.consistency})` : '') + (m.partial ? ' partial' : ''),
        String(s.files ?? 0), humanBytes(s.logicalBytes ?? 0), humanBytes(st.backup + meta) + (st.now !== st.backup ? ` (now ${humanBytes(st.now + meta)})` : ''),
        m.host || '-', m.tags.join(',') || '-',
      ]
    }))
    return
  }
  const { gen, path: asked } = splitRef(ref)
  const r = new GenReader2(repo, resolve2(repo, gen, o, source))
  await lease?.setPins([pinName(r.manifest.id, r.manifest.rev)])
  const e = await r.lookup(asked)
  if (!e) throw new BfsError('BAD_INPUT', `${asked}: no such file or directory in gen${r.manifest.id}`)
  // the path as format 1 prints it: no leading, trailing or doubled slash, no '.'
  const p = asked.split('/').filter((c) => c !== '' && c !== '.').join('/')
  if (e.type !== FileType.Dir) {
    if (o.json) return void process.stdout.write(JSON.stringify([jsonOf(e, Buffer.from(p))]) + '\n')
    return writeOut(lsLine(e, p))
  }
  const out: unknown[] = []
  const lines = new OutBuffer()
  for await (const x of r.entries(e, p)) {
    if (o.json) out.push(jsonOf(x, p ? Buffer.concat([Buffer.from(p), SLASH, x.name]) : x.name))
    else lines.add(lsLine(x, x.name))
  }
  lines.flush()
  if (o.json) process.stdout.write(JSON.stringify(out) + '\n')
}

/** Format 1's JSON of an entry (README "JSON output"), plus format 2's own: linked, ord, dataBlocks. */
function jsonOf(x: Entry2, p: Buffer): Record<string, unknown> {
  return { ...lsEntry(x, x, p), linked: (x.flags & E_LINKED) !== 0, ord: x.ord, dataBlocks: x.dataBlocks }
}

export async function catV2(ctx: Ctx, ref: string, o: Record<string, unknown>): Promise<void> {
  const { source } = readOptions(o)
  const repo = await openRepo2(ctx.repoDir(), warn)
  const lease = readerLease(repo, 'cat')
  const { gen, path: asked } = splitRef(ref)
  const r = new GenReader2(repo, resolve2(repo, gen, o, source))
  await lease?.setPins([pinName(r.manifest.id, r.manifest.rev)])
  const rs = await openReadStore2(repo)
  try {
    const p = await volumeImage(r, asked)
    const e = await r.lookup(p)
    if (!e) throw new BfsError('BAD_INPUT', `${p}: no such file in gen${r.manifest.id}`)
    if (e.type !== FileType.File) throw new BfsError('BAD_INPUT', `${p}: is not a regular file`)
    const f = await r.open(e, p)
    // units on tape: recalled (pinned) before the synchronous read, in the tape's order, as on format 1
    if (rs) await recallFor(tapeRepoOf(repo), rs, await r.unitKeys(e, p))
    r.each(f, writeStdout)
  } finally {
    await r.close()
    await rs?.close()
  }
}

/**
 * A path of `cat` or `restore`: a volume generation named without a path means its image
 * (the root directory's one file), as on format 1; any other path is itself.
 */
async function volumeImage(r: GenReader2, p: string): Promise<string> {
  if (r.manifest.kind !== 'volume' || p.split('/').some((c) => c !== '' && c !== '.')) return p
  for await (const e of r.entries(r.manifest.rootEntry, '')) return e.name.toString()
  return p
}

/**
 * `bfs restore GEN[:PATH] DEST` of a format 2 generation: the tree read directory by directory
 * below PATH (repo/v2/restore2.ts), restored by format 1's restore (the same options, output
 * and exit codes; units on tape recalled up front in tape order, in passes of `--buffer-cache`).
 */
export async function restoreV2(ctx: Ctx, ref: string, dest: string, o: Record<string, unknown>): Promise<void> {
  ctx.history.begin(ctx.repoDir, 'restore', {}, { readOnly: true })
  const { source } = readOptions(o)
  const opened = openRepo2Checked(ctx.repoDir(), warn)
  // The restore's workers start now (~0.13-0.17 s here, with their modules), while the tree is
  // read and the directories are made (and, on an encrypted repository, while the passphrase
  // goes through scrypt, as backupV2's do). They get no key or work before then: the reader
  // spec and every job come from restoreEntries.
  const pool = new WorkerPool((o.threads as number | undefined) ?? os.availableParallelism())
  // (and load the reading modules: they would otherwise load at the first job)
  pool.broadcast({ op: 'preloadReaders' }).catch(() => undefined)
  try {
    await opened.unlock()
    await restoreV2Unlocked(ctx, opened.repo, ref, dest, o, source, pool)
  } finally {
    await pool.close() // (idempotent: restoreEntries closes it when it gets that far)
  }
}

async function restoreV2Unlocked(ctx: Ctx, repo: Repo2, ref: string, dest: string, o: Record<string, unknown>, source: string | undefined, pool: WorkerPool): Promise<void> {
  const lease = readerLease(repo, 'restore')
  const { gen, path: asked } = splitRef(ref)
  // The tree and the maps by synchronous reads, the packs kept open (on S3: each pack fetched
  // whole into the read cache at its first open, by the sync face): this thread only
  // coordinates, the workers write the data. By promises, every piece was an open, a read and
  // a close through the threadpool (or a ranged GET), and the tree walk of the Linux tree
  // waited ~60 % of its 1.6 s for them; now it takes ~0.3 s.
  const pieces = new PieceReader(repo.store, { cacheBytes: 16 << 20, syncReads: true, openPacks: 64, keys: repo.sealing })
  const r = new GenReader2(repo, resolve2(repo, gen, o, source), undefined, pieces)
  try {
    await restoreGen2(ctx, repo, r, asked, dest, o, lease, pool)
  } finally {
    pieces.close()
  }
}

async function restoreGen2(ctx: Ctx, repo: Repo2, r: GenReader2, asked: string, dest: string, o: Record<string, unknown>, lease: ReturnType<typeof readerLease>, pool: WorkerPool): Promise<void> {
  ctx.history.set({ sources: r.manifest.sources.map((s) => s.path), gens: [r.manifest.id] })
  await lease?.setPins([pinName(r.manifest.id, r.manifest.rev)])
  const p = await volumeImage(r, asked)
  // on S3: what the restore reads (the tree's packs, the maps, the units) is fetched whole into
  // the read cache from its first read on, not once reads pause
  repo.data.readingAll?.()
  // units on tape: read through the tiered store (workers too), planned up front
  const rs = await openReadStore2(repo, { cacheBytes: o.bufferCache as number | undefined })
  const tape = rs ? { tiered: rs.tiered, holder: holder(), passBytes: o.bufferCache as number | undefined } : null
  // the whole generation from S3: its units start coming while the tree is read and the
  // directories are made (the main thread's work; the other core is idle)
  const whole = asked.split('/').every((c) => c === '' || c === '.')
  if (whole) warmGeneration(r, (o.threads as number | undefined) ?? os.availableParallelism())
  // a restore that ends (done, interrupted, failed) waits for no fetch still under way
  const stopWarm = (): void => repo.data.stopFetching?.()
  let set
  let target = dest
  try {
    set = await restoreSet2(r, p)
    const root = set.entries[0]!
    if (root.type !== FileType.Dir && fs.existsSync(dest) && fs.statSync(dest).isDirectory()) target = path.join(dest, root.name.toString())
  } catch (err) {
    stopWarm()
    await rs?.close()
    throw err
  }
  const line = new Progress({ action: 'restore', label: 'restoring:', json: !!o.json, quiet: !!o.quiet })
  const res = await withSignals((signal) =>
    restoreEntries(set, {
      root: 0, dest: target, overwrite: !!o.overwrite, threads: o.threads as number | undefined, signal, tape, pool,
      reporter: { warn: (m) => (ctx.history.warn(m), line.warn(m)), progress: (x) => line.update(x), tapePlan: showTapePlan(line) },
    }),
  ).finally(async () => {
    stopWarm()
    line.finish()
    await r.close()
    await rs?.close()
  })
  reportRestore(ctx, line, r.manifest.id, p, target, res)
}

/**
 * `bfs verify [GEN]` (or `--all`) of a format 2 repository (repo/v2/verify2.ts): format 1's
 * output and exit codes (4 when something is damaged); `--against DIR` compares with a live tree (repo/v2/against2.ts).
 */
export async function verifyV2(ctx: Ctx, gen: string | undefined, o: Record<string, unknown>): Promise<void> {
  ctx.history.begin(ctx.repoDir, 'verify', {}, { readOnly: true })
  const { source } = readOptions(o)
  const repo = await openRepo2(ctx.repoDir(), warn)
  const lease = readerLease(repo, 'verify')
  const lines: string[] = []
  const line = new Progress({ action: 'verify', label: 'verifying:', json: !!o.json, quiet: !!o.quiet, unit: 'unit' })
  let first: string | undefined
  const print = (l: string): void => void ((first ??= l), o.json ? lines.push(l) : (line.clear(), process.stdout.write(l + '\n')))
  if (typeof o.against === 'string') {
    // `latest` is DIR's own latest generation when DIR is a source of this repository (as on format 1)
    const against = path.resolve(o.against)
    const m = resolve2(repo, gen ?? 'latest', o, source, against)
    ctx.history.set({ sources: m.sources.map((s) => s.path), gens: [m.id] })
    await lease?.setPins([pinName(m.id, m.rev)])
    const r = new GenReader2(repo, m)
    const diffs = await withSignals((signal) => verifyAgainst2(r, '', against, print, signal)).finally(() => r.close())
    if (diffs) {
      ctx.exitCode = EXIT.VERIFY_FAILED
      ctx.history.fail(`${count(diffs, 'difference')} between gen${m.id} and ${against}${first ? `: ${first}` : ''}`)
    }
    if (o.json) return line.summary(verifyJson({ generations: [m.id], against, lines, differences: diffs }))
    if (diffs === 0 && !line.textSummary) return
    process.stdout.write(diffs === 0 ? `gen${m.id} matches ${against}\n` : `${count(diffs, 'difference')} between gen${m.id} and ${against}\n`)
    return
  }
  let ids: number[]
  if (o.all) ids = repo.generationIds()
  else {
    // a damaged generation named by number is verified (reported), not refused, as on format 1
    const ref = parseGenRef(gen ?? 'latest')
    ids = 'id' in ref && source === undefined && repo.generationIds().includes(ref.id) ? [ref.id] : [repo.resolve(gen ?? 'latest', source).id]
  }
  if (ids.length === 0) throw new BfsError('NO_SUCH_GEN', `no generations in ${repo.dir}`)
  ctx.history.set({ gens: ids, sources: repo.generations().flatMap((g) => ('manifest' in g && ids.includes(g.id) ? g.manifest.sources.map((s) => s.path) : [])) })
  // pinned: the generations whose manifests read (a damaged one is verified, not pinned)
  await lease?.setPins(ids.flatMap((id) => {
    try {
      return [pinName(id, repo.manifest(id).rev)]
    } catch {
      return []
    }
  }))
  const res = await withSignals((signal) =>
    verifyGenerations2(repo, ids, print, {
      signal, all: !!o.all,
      progress: (x) => line.update({ files: x.units, totalFiles: x.totalUnits, bytes: x.bytes, totalBytes: x.totalBytes, path: x.path }),
    }),
  ).finally(() => line.finish())
  ctx.history.set({ bytes: { verified: res.rawBytes } })
  if (res.problems) {
    ctx.exitCode = EXIT.VERIFY_FAILED
    ctx.history.fail(`${count(res.problems, 'problem')} found${first ? `: ${first}` : ''}`)
  }
  if (o.json) return line.summary(verifyJson({ generations: ids, lines, result: res }))
  if (res.problems === 0 && !line.textSummary) return
  process.stdout.write(res.problems === 0 ? `ok: ${ids.map((id) => `gen${id}`).join(', ')} verified (${count(res.units, 'unit')}, ${count(res.frames, 'frame')}, ${humanBytes(res.rawBytes)})\n` : `${count(res.problems, 'problem')} found\n`)
}
