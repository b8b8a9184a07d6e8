import fs from 'node:fs'
import path from 'node:path'
import { Command, Option, InvalidArgumentError } from 'commander'
import { EntryType } from '../format/catalog.js'
import type { Manifest } from '../format/manifest.js'
import { backupTree, streamGeometry, DEFAULT_FRAME_BLOCKS, DEFAULT_LEVEL, DEFAULT_UNIT_BLOCKS } from '../repo/backup.js'
import { restoreTree } from '../repo/restore.js'
import { backupVolume, checkFreeze, decideMode } from '../repo/volume.js'
import { DEFAULT_FREEZE_TIMEOUT_S } from '../repo/freeze.js'
import { addGroup, listGroups, readGroup, removeGroup, type Group } from '../repo/groups.js'
import { verifyGenerations, verifyAgainst } from '../repo/verify.js'
import { CommandReader } from '../repo/read.js'
import { parseGenRef, Repository } from '../repo/repository.js'
import { BfsError, EXIT } from '../repo/errors.js'
import { dataEntry, lookupPath, pathOf } from '../repo/tree.js'
import { count, humanBytes, modeString, ProgressLine, resolveGen, writeOut } from './output.js'
import type { Ctx } from './context.js'
import { registerTier } from './tier.js'

/** The summary's consistency line of a volume generation. */
function consistencyNote(m: Manifest, points: string[]): string {
  const at = points.length ? ` at ${points.join(', ')}` : ''
  switch (m.consistency) {
    case 'frozen':
      return `frozen (the filesystem${at} was frozen while ${m.source} was read: the image is clean)`
    case 'read-only':
      return `read-only (mounted read-only${at}: the image is clean)`
    case 'mounted-rw':
      return `mounted-rw: ${m.source} was mounted read-write${at} and not frozen, so the image is at best crash-consistent: mount it with -o ro,noload (ext4), or back up with --freeze`
    default:
      return `${m.consistency} (nothing on ${m.source} was mounted)`
  }
}

const int = (name: string, min: number, max: number) => (v: string): number => {
  const n = Number(v)
  if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}`)
  return n
}

const SOURCE_HELP = 'latest and latest~K count only the generations of this source (the repository may hold several)'

/** Splits GEN[:PATH]. */
function splitRef(ref: string): { gen: string; path: string } {
  const i = ref.indexOf(':')
  return i < 0 ? { gen: ref, path: '' } : { gen: ref.slice(0, i), path: ref.slice(i + 1) }
}

/** Runs `fn` with an AbortSignal that fires on SIGINT/SIGTERM. */
async function withSignals<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController()
  const onSig = (): void => ac.abort()
  process.on('SIGINT', onSig)
  process.on('SIGTERM', onSig)
  try {
    return await fn(ac.signal)
  } finally {
    process.off('SIGINT', onSig)
    process.off('SIGTERM', onSig)
  }
}

export function registerCommands(program: Command, ctx: Ctx): void {
  registerTier(program, ctx)
  program
    .command('init')
    .description('create an empty repository (the only command that creates one)')
    .action(() => {
      const repo = Repository.init(ctx.repoDir())
      process.stdout.write(`initialized bfs repository ${repo.dir}\n`)
    })

  program
    .command('backup')
    .description('back up a directory tree, a block device or an image file as a new generation (incremental against the last one of the same source)')
    .argument('<src>', 'directory, block device or image file')
    .option('--volume', 'back up SRC as a volume (same as --mode volume)')
    .addOption(new Option('--mode <mode>', 'auto: a device or image, or the root of a mounted block-device filesystem with more than --volume-threshold files, is backed up as a volume; anything else as files').choices(['auto', 'file', 'volume']).default('auto'))
    .option('--volume-threshold <files>', 'auto mode: files above which a whole filesystem is backed up as its device', int('--volume-threshold', 0, Number.MAX_SAFE_INTEGER), 100000)
    .option('--base <gen>', 'volume: the generation to store the difference against (default: the last one of this source)')
    .option('--freeze', 'volume of a block device: freeze its mounted filesystems (FIFREEZE) while it is read, for a clean image; thawed on every way out, even if bfs is killed')
    .option('--freeze-timeout <seconds>', `with --freeze: thaw after this long whatever happens; the backup then fails (default ${DEFAULT_FREEZE_TIMEOUT_S})`, int('--freeze-timeout', 1, 86400))
    .option('--label <text>', 'label stored with the generation', '')
    .option('--exclude <pattern>', 'skip paths matching a glob (repeatable; * ? ** [..]; a pattern with / is anchored at SRC)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--group <name>', 'back up only the files of this group (see bfs group), on its own chain of generations')
    .option('--one-file-system', 'do not descend into other filesystems')
    .option('--full', 'read every file even if unchanged')
    .addOption(new Option('--threads <n>', 'compression worker threads').default(undefined, 'CPUs').argParser(int('--threads', 1, 256)))
    .option('--level <n>', 'zstd compression level', int('--level', 1, 19), DEFAULT_LEVEL)
    .option('--unit-blocks <n>', 'blocks (4 KiB) per unit', int('--unit-blocks', 16, 1 << 20), DEFAULT_UNIT_BLOCKS)
    .option('--frame-blocks <n>', `blocks per independently decompressible frame (default ${DEFAULT_FRAME_BLOCKS.files} for files, ${DEFAULT_FRAME_BLOCKS.volume} for volumes)`, int('--frame-blocks', 1, 4096))
    .option('--wait [seconds]', 'wait for another writer to finish (default: forever)')
    .option('--json', 'print the result as JSON')
    .action(async (src: string, o) => {
      const line = new ProgressLine()
      const waitMs = o.wait === undefined ? 0 : o.wait === true ? Number.MAX_SAFE_INTEGER : Number(o.wait) * 1000
      if (Number.isNaN(waitMs)) throw new BfsError('BAD_INPUT', '--wait takes a number of seconds')
      const decision = o.volume || o.mode === 'volume' ? { mode: 'volume' as const, source: src, reason: 'requested' } : o.mode === 'file' ? { mode: 'file' as const, source: src, reason: 'requested' } : decideMode(src, o.volumeThreshold)
      const modeLine = `mode: ${decision.mode === 'volume' ? 'volume' : 'files'}${decision.reason === 'requested' ? '' : ` (${decision.reason})`}\n`
      if (o.base && decision.mode !== 'volume') throw new BfsError('BAD_INPUT', '--base applies to volume backups')
      if (o.freezeTimeout !== undefined && !o.freeze) throw new BfsError('BAD_INPUT', '--freeze-timeout applies with --freeze')
      if (o.freeze && decision.mode !== 'volume') throw new BfsError('BAD_INPUT', `--freeze applies to volume backups of block devices; ${decision.source} would be backed up as files (${decision.reason})`)
      if (o.freeze) checkFreeze(decision.source, ctx.repoDir()) // before anything is written, maybe on the filesystem to freeze
      const repo = ctx.openRepo()
      // `--base latest`: the latest generation of SRC (when the repository holds any)
      const base = o.base ? resolveGen(repo, o.base, {}, decision.source) : undefined
      if (base && base.kind !== 'volume') throw new BfsError('BAD_INPUT', `--base gen${base.id} is not a volume generation`)
      const group = o.group ? readGroup(repo, o.group) : undefined
      if (group && decision.mode === 'volume') throw new BfsError('BAD_INPUT', `--group selects files; ${decision.source} would be backed up as a volume (use --mode file)`)
      streamGeometry(o, decision.mode === 'volume' ? 'volume' : 'files') // a bad --unit-blocks/--frame-blocks fails before anything starts
      const run = decision.mode === 'volume' ? backupVolume : backupTree
      const res = await withSignals((signal) =>
        run(repo, {
          base, group, freeze: !!o.freeze, freezeTimeoutS: o.freezeTimeout,
          source: decision.source, label: o.label, excludes: o.exclude, oneFileSystem: !!o.oneFileSystem, full: !!o.full,
          threads: o.threads, level: o.level, unitBlocks: o.unitBlocks, frameBlocks: o.frameBlocks, lockWaitMs: waitMs, signal,
          reporter: {
            warn: (m) => line.warn(m),
            progress: (p) => line.update(`${count(p.entries, 'entry', 'entries')}, ${humanBytes(p.bytesRead)} read, ${humanBytes(p.storedBytes)} stored  ${p.path}`),
          },
        }),
      ).finally(() => line.clear())
      const m = res.manifest
      const s = m.stats
      if (o.json) process.stdout.write(JSON.stringify({ generation: `gen${m.id}`, mode: decision.mode, modeReason: decision.reason, ...m, skippedPaths: res.skippedPaths }) + '\n')
      else {
        process.stdout.write(
          modeLine +
          `gen${m.id} committed (${m.parent ? `incremental to gen${m.parent}` : 'full'})\n` +
            `  files: ${s.newFiles} new, ${s.changedFiles} changed, ${s.unchangedFiles} unchanged, ${s.skipped} skipped; ${count(s.dirs, 'dir')}\n` +
            `  read ${humanBytes(s.bytesRead)} of ${humanBytes(s.logicalBytes)}, stored ${humanBytes(s.storedBytes)} data + ${humanBytes(s.metaBytes)} metadata` +
            (s.bytesRead ? `, ratio ${(s.bytesRead / Math.max(1, s.storedBytes)).toFixed(2)}` : '') +
            `, ${s.seconds.toFixed(2)} s\n`,
        )
        if (m.consistency) process.stdout.write(`  consistency: ${consistencyNote(m, res.mountPoints ?? [])}\n`)
        if (res.skippedPaths.length) process.stdout.write(`  skipped:\n${res.skippedPaths.map((p) => `    ${p}\n`).join('')}`)
      }
      if (res.skippedPaths.length) ctx.exitCode = EXIT.PARTIAL
    })

  const listGenerations = (o: { json?: boolean; group?: string }): void => {
    const repo = ctx.openRepo()
    if (o.group) readGroup(repo, o.group)
    const gens = o.group ? repo.generations(o.group) : repo.generations()
    // damaged generations are listed too (their group is unknown), and named on stderr; the exit status stays 0
    const damaged = repo.damagedGenerations()
    const rows: Array<{ id: number; m?: Manifest; bad?: (typeof damaged)[number] }> = [...gens.map((m) => ({ id: m.id, m })), ...damaged.map((d) => ({ id: d.id, bad: d }))].sort((a, b) => a.id - b.id)
    for (const d of damaged) process.stderr.write(`bfs: warning: gen${d.id} is damaged: ${d.problem}\n`)
    if (damaged.length) process.stderr.write(`bfs: warning: ${damaged.length} damaged generation${damaged.length > 1 ? 's' : ''}; the others are intact (details: bfs verify --all)\n`)
    if (o.json) {
      process.stdout.write(JSON.stringify(rows.map(({ id, m, bad }) => m
        ? { generation: `gen${m.id}`, id: m.id, time: m.time, label: m.label, source: m.source, kind: m.kind, group: m.group, parent: m.parent, files: m.stats.files, logicalBytes: m.stats.logicalBytes, storedBytes: m.stats.storedBytes + m.stats.metaBytes, partial: m.partial, consistency: m.consistency ?? null }
        : { generation: `gen${id}`, id, damaged: bad!.kind === 'missing-manifest' ? 'manifest missing' : 'manifest unreadable', problem: bad!.problem })) + '\n')
      return
    }
    const table = rows.map(({ id, m, bad }) => m
      ? [`gen${m.id}`, m.time.replace(/\.\d+Z$/, 'Z'), m.label || '-', m.source + (m.group ? ` [${m.group}]` : ''), m.kind + (m.parent ? '+' : '') + (m.consistency ? ` (${m.consistency})` : ''), String(m.stats.files), humanBytes(m.stats.logicalBytes), humanBytes(m.stats.storedBytes + m.stats.metaBytes)]
      : [`gen${id}`, '-', '-', `(${bad!.kind === 'missing-manifest' ? 'manifest missing' : 'manifest unreadable'})`, 'DAMAGED', '-', '-', '-'])
    const head = ['ID', 'TIME', 'LABEL', 'SOURCE', 'KIND', 'FILES', 'SIZE', 'STORED']
    const widths = head.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)))
    for (const r of [head, ...table]) process.stdout.write(r.map((c, i) => (i >= 5 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd() + '\n')
  }

  program
    .command('generations')
    .description('list the generations (kind "+" = incremental; [name] = a group\'s generation)')
    .option('--group <name>', 'only this group\'s chain')
    .option('--json', 'print JSON')
    .action(listGenerations)

  const group = program.command('group').description('file groups: named include/exclude lists, each backed up on its own chain')
  const showGroup = (g: Group): string =>
    `${g.name}\n${g.includes.map((p) => `  include ${p}\n`).join('')}${g.excludes.map((p) => `  exclude ${p}\n`).join('')}`
  group
    .command('add')
    .description('create a group, or add patterns to it (globs relative to the backup source: * ? ** [..]; a directory that matches brings its whole subtree)')
    .argument('<name>')
    .option('--include <pattern>', 'files to include (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--exclude <pattern>', 'files to leave out even if included (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .action((name: string, o) => {
      const g = addGroup(ctx.openRepo(), name, o.include, o.exclude)
      process.stdout.write(showGroup(g))
    })
  group
    .command('ls')
    .description('list the groups (a damaged group file is named on stderr; the others are listed)')
    .action(() => {
      const { groups, damaged } = listGroups(ctx.openRepo())
      for (const g of groups) process.stdout.write(showGroup(g))
      for (const d of damaged) process.stderr.write(`bfs: warning: damaged group file: ${d}\n`)
    })
  group
    .command('show')
    .argument('<name>')
    .description('show a group and its generations')
    .action((name: string) => {
      const repo = ctx.openRepo()
      process.stdout.write(showGroup(readGroup(repo, name)))
      for (const m of repo.generations(name)) process.stdout.write(`  gen${m.id} ${m.time} ${m.source} ${count(m.stats.files, 'file')}\n`)
    })
  group
    .command('rm')
    .argument('<name>')
    .description('remove a group (its generations stay)')
    .action((name: string) => {
      removeGroup(ctx.openRepo(), name)
      process.stdout.write(`removed group ${name}\n`)
    })

  program
    .command('ls')
    .description('without an argument, list generations; with GEN[:PATH], list a directory inside a generation like ls -l')
    .argument('[ref]', 'GEN[:PATH]')
    .option('--json', 'print JSON (generations only)')
    .option('--source <path>', SOURCE_HELP)
    .action((ref: string | undefined, o) => {
      if (!ref) return listGenerations(o)
      const repo = ctx.openRepo()
      const { gen, path: p } = splitRef(ref)
      const man = resolveGen(repo, gen, o)
      const entries = repo.catalog(man.id)
      const i = lookupPath(entries, Buffer.from(p))
      if (i < 0) throw new BfsError('BAD_INPUT', `${p}: no such file or directory in gen${man.id}`)
      const e = entries[i]!
      const list = e.type === EntryType.Dir ? Array.from({ length: e.childCount }, (_, k) => e.firstChild + k) : [i]
      for (const c of list) {
        const x = entries[c]!
        const d = dataEntry(entries, c)
        const when = new Date(x.mtimeSec * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '')
        const size = x.type === EntryType.CharDev || x.type === EntryType.BlockDev ? `${x.rdevMajor}, ${x.rdevMinor}` : String(d.size)
        const name = e.type === EntryType.Dir ? x.name : pathOf(entries, c)
        writeOut([`${modeString(x.type, x.mode)} ${String(x.nlink).padStart(3)} ${String(x.uid).padEnd(5)} ${String(x.gid).padEnd(5)} ${size.padStart(10)} ${when} `, name, x.type === EntryType.Symlink ? Buffer.concat([Buffer.from(' -> '), x.target!]) : '', '\n'])
      }
    })

  program
    .command('cat')
    .description('write a file of a generation to stdout')
    .argument('<ref>', 'GEN:PATH (for a volume generation, GEN alone is the image)')
    .option('--source <path>', SOURCE_HELP)
    .action((ref: string, o) => {
      const repo = ctx.openRepo()
      const { gen, path: p } = splitRef(ref)
      const man = resolveGen(repo, gen, o)
      const entries = repo.catalog(man.id)
      const i = man.kind === 'volume' && !p ? 1 : lookupPath(entries, Buffer.from(p))
      if (i < 0) throw new BfsError('BAD_INPUT', `${p}: no such file in gen${man.id}`)
      const e = entries[i]!
      if (e.type !== EntryType.File) throw new BfsError('BAD_INPUT', `${p}: is not a regular file`)
      const d = dataEntry(entries, i)
      if (!d.objGen) return
      const reader = new CommandReader(repo)
      reader.each(reader.open(d.objGen, d.objIndex, d.size), (buf, off, len) => {
        for (const end = off + len; off < end; ) {
          try {
            off += fs.writeSync(1, buf, off, end - off)
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue
            if ((err as NodeJS.ErrnoException).code === 'EPIPE') return false
            throw err
          }
        }
        return true
      })
      reader.close()
    })

  program
    .command('restore')
    .description('restore a generation or a subtree into DEST (parallel; keeps modes, owners when root, ns times, links, xattrs, holes)')
    .argument('<ref>', 'GEN[:PATH]')
    .argument('<dest>', 'destination directory (created if absent)')
    .option('--overwrite', 'replace what is in the way in DEST (renamed over, never written through; symlinks below DEST are never followed)')
    .addOption(new Option('--threads <n>', 'worker threads').argParser(int('--threads', 1, 256)))
    .option('--source <path>', SOURCE_HELP)
    .action(async (ref: string, dest: string, o) => {
      const repo = ctx.openRepo()
      const { gen, path: p } = splitRef(ref)
      const man = resolveGen(repo, gen, o)
      const entries = repo.catalog(man.id)
      const root = man.kind === 'volume' && !p ? 1 : lookupPath(entries, Buffer.from(p))
      if (root < 0) throw new BfsError('BAD_INPUT', `${p}: no such file or directory in gen${man.id}`)
      let target = dest
      if (entries[root]!.type !== EntryType.Dir && fs.existsSync(dest) && fs.statSync(dest).isDirectory()) target = path.join(dest, entries[root]!.name.toString())
      const line = new ProgressLine()
      const res = await withSignals((signal) =>
        restoreTree(repo, man, { root, dest: target, overwrite: !!o.overwrite, threads: o.threads, signal, reporter: { warn: (m) => line.warn(m), progress: (x) => line.update(`${count(x.files, 'file')}, ${humanBytes(x.bytes)}`) } }),
      ).finally(() => line.clear())
      const removed = res.removedDirs ? `; removed ${count(res.removedDirs, 'directory', 'directories')} it had created that the errors left empty` : ''
      process.stdout.write(`restored gen${man.id}${p ? `:${p}` : ''} to ${path.resolve(target)}: ${count(res.entries, 'entry', 'entries')}, ${humanBytes(res.bytes)}${res.errors.length ? `, ${count(res.errors.length, 'error')}` : ''}${removed}\n`)
      if (res.errors.length) ctx.exitCode = EXIT.ERROR
    })

  program
    .command('verify')
    .description('read every frame a generation needs and check checksums and structure; --against DIR compares with a live tree')
    .argument('[gen]', 'generation (default: latest)')
    .option('--all', 'verify every generation')
    .option('--against <dir>', 'compare the generation with a live directory tree and list each difference')
    .option('--source <path>', SOURCE_HELP)
    .action(async (gen: string | undefined, o) => {
      if (o.all && (gen !== undefined || o.source !== undefined || o.against !== undefined)) throw new BfsError('USAGE', '--all verifies every generation: give no generation, --source or --against with it')
      const repo = ctx.openRepo()
      if (o.against) {
        // `latest` is the latest generation of DIR itself when DIR is one of the sources
        const man = resolveGen(repo, gen ?? 'latest', o, o.against)
        const diffs = verifyAgainst(repo, man, o.against, (line) => process.stdout.write(line + '\n'))
        process.stdout.write(diffs === 0 ? `gen${man.id} matches ${path.resolve(o.against)}\n` : `${count(diffs, 'difference')} between gen${man.id} and ${path.resolve(o.against)}\n`)
        if (diffs) ctx.exitCode = EXIT.VERIFY_FAILED
        return
      }
      let ids: number[]
      if (o.all) ids = repo.generations().map((m) => m.id)
      else {
        // a damaged generation named explicitly is verified (reported), not refused
        const ref = parseGenRef(gen ?? 'latest')
        ids = 'id' in ref && o.source === undefined && repo.damagedGenerations().some((d) => d.id === ref.id) ? [ref.id] : [resolveGen(repo, gen ?? 'latest', o).id]
      }
      if (ids.length === 0 && repo.damagedGenerations().length === 0) throw new BfsError('NO_SUCH_GEN', `no generations in ${repo.dir}`)
      const res = await verifyGenerations(repo, ids, (line) => process.stdout.write(line + '\n'), { all: !!o.all })
      process.stdout.write(res.problems === 0 ? `ok: ${ids.map((id) => `gen${id}`).join(', ')} verified (${count(res.units, 'unit')}, ${count(res.frames, 'frame')}, ${humanBytes(res.rawBytes)})\n` : `${count(res.problems, 'problem')} found\n`)
      if (res.problems) ctx.exitCode = EXIT.VERIFY_FAILED
    })
}
