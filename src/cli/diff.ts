/**
 * `bfs diff GEN_A GEN_B [PATH]` (issue 17): what changed between two generations, as
 * `restic diff`, from the catalogs and block maps alone — no file data is read. A file whose
 * block-map object reference is the same in both (carried over unchanged) has the same
 * content; otherwise the resolved extents are compared (the same extents: the same content)
 * and, when they differ, the stored 8-byte hashes of their blocks (data stored again: the same
 * hashes). File data is never read or decompressed.
 * Format 2: cli/diff2.ts.
 */
import type { Command } from 'commander'
import { EntryType, type Entry } from '../format/catalog.js'
import { BfsError } from '../repo/errors.js'
import { ObjectResolver } from '../repo/resolve.js'
import type { Repository } from '../repo/repository.js'
import { dataEntry, lookupPath } from '../repo/tree.js'
import { SOURCE_HELP } from './common.js'
import type { Ctx } from './context.js'
import { humanBytes, resolveGen, writeOut } from './output.js'
import { isFormat2 } from '../repo/v2/detect.js'
import { diffV2 } from './diff2.js'
import { kindOf, sameBlocks, SLASH, whatChanged, type Change, type DiffStats } from './diff-common.js'

const TYPES: Record<number, string> = { [EntryType.File]: 'file', [EntryType.Dir]: 'dir', [EntryType.Symlink]: 'symlink', [EntryType.CharDev]: 'chardev', [EntryType.BlockDev]: 'blockdev', [EntryType.Fifo]: 'fifo', [EntryType.Socket]: 'socket' }

/**
 * Whether two files (their data entries: the hard-link leaders) have the same content: the
 * same block-map object, else the same resolved extents, else the same stored hashes.
 */
export function sameContent1(repo: Repository, resolver: ObjectResolver, a: Pick<Entry, 'size' | 'objGen' | 'objIndex'>, b: Pick<Entry, 'size' | 'objGen' | 'objIndex'>): boolean {
  if (a.size !== b.size) return false
  if (a.objGen === b.objGen && a.objIndex === b.objIndex) return true
  if (!a.objGen || !b.objGen) return false
  const x = resolver.resolve(a.objGen, a.objIndex)
  const y = resolver.resolve(b.objGen, b.objIndex)
  if (x.length === y.length && x.every((p, k) => p.fileBlock === y[k]!.fileBlock && p.count === y[k]!.count && p.gen === y[k]!.gen && p.streamBlock === y[k]!.streamBlock)) return true
  // different extents: the same data may have been stored again (a file re-read after a
  // ctime change); its blocks' stored hashes (metadata, no data read) then say so
  return sameBlocks(x, y, (e) => e.gen, (g) => repo.hashes(g))
}

/** Compares two generations' catalogs below `rel`, calling `emit` for each change in path order. */
export function diffGenerations(repo: Repository, genA: number, genB: number, rel: string, emit: (c: Change) => void, begin: () => void = () => undefined): DiffStats {
  const A = repo.catalog(genA)
  const B = repo.catalog(genB)
  const resolver = new ObjectResolver(repo)
  const stats: DiffStats = {
    added: { files: 0, dirs: 0, others: 0 }, removed: { files: 0, dirs: 0, others: 0 }, changed: { files: 0, dirs: 0, others: 0 },
    addedBytes: 0, removedBytes: 0,
  }
  const sizeOf = (es: Entry[], i: number): number => (es[i]!.type === EntryType.File ? dataEntry(es, i).size : es[i]!.type === EntryType.Symlink ? es[i]!.size : 0)

  const sameContent = (i: number, j: number): boolean => sameContent1(repo, resolver, dataEntry(A, i), dataEntry(B, j))

  /** The whole subtree at es[i] as added (+) or removed (-). */
  const one = (es: Entry[], i: number, path: Buffer, mod: '+' | '-'): void => {
    const e = es[i]!
    const size = sizeOf(es, i)
    const k = kindOf(e.type)
    if (mod === '+') {
      stats.added[k]++
      if (e.type === EntryType.File) stats.addedBytes += size
    } else {
      stats.removed[k]++
      if (e.type === EntryType.File) stats.removedBytes += size
    }
    emit({ modifier: mod, path, type: e.type, what: [], sizeBefore: mod === '-' ? size : null, sizeAfter: mod === '+' ? size : null })
    if (e.type === EntryType.Dir) for (let c = e.firstChild; c < e.firstChild + e.childCount; c++) one(es, c, Buffer.concat([path, SLASH, es[c]!.name]), mod)
  }

  /** `dir` + '/' + the entry's name, or `path` itself when `name` is null (PATH's root). */
  const both = (i: number, j: number, dir: Buffer, name: Buffer | null): void => {
    const a = A[i]!
    const b = B[j]!
    let p: Buffer | null = name === null ? dir : null
    const pathOf = (): Buffer => (p ??= Buffer.concat([dir, SLASH, name!]))
    const what = whatChanged(a, b, a.type === EntryType.File && b.type === EntryType.File && !sameContent(i, j))
    if (what.length) {
      stats.changed[kindOf(b.type)]++
      const before = sizeOf(A, i)
      const after = sizeOf(B, j)
      if (what.includes('content') || what.includes('type')) {
        if (a.type === EntryType.File) stats.removedBytes += before
        if (b.type === EntryType.File) stats.addedBytes += after
      }
      emit({ modifier: 'M', path: pathOf(), type: b.type, what, sizeBefore: before, sizeAfter: after })
    }
    if (a.type === EntryType.Dir && b.type === EntryType.Dir) children(i, j, pathOf())
    else if (a.type === EntryType.Dir) for (let c = a.firstChild; c < a.firstChild + a.childCount; c++) one(A, c, Buffer.concat([pathOf(), SLASH, A[c]!.name]), '-')
    else if (b.type === EntryType.Dir) for (let c = b.firstChild; c < b.firstChild + b.childCount; c++) one(B, c, Buffer.concat([pathOf(), SLASH, B[c]!.name]), '+')
  }

  /** Merge-joins two directories' children (sorted by name bytes). */
  const children = (i: number, j: number, path: Buffer): void => {
    const a = A[i]!
    const b = B[j]!
    let x = a.firstChild
    let y = b.firstChild
    const xe = a.firstChild + a.childCount
    const ye = b.firstChild + b.childCount
    const sub = (name: Buffer): Buffer => Buffer.concat([path, SLASH, name])
    while (x < xe || y < ye) {
      const c = x >= xe ? 1 : y >= ye ? -1 : Buffer.compare(A[x]!.name, B[y]!.name)
      if (c < 0) one(A, x, sub(A[x]!.name), '-'), x++
      else if (c > 0) one(B, y, sub(B[y]!.name), '+'), y++
      else both(x, y, path, A[x]!.name), x++, y++
    }
  }

  const relBuf = Buffer.from(rel)
  const i = lookupPath(A, relBuf)
  const j = lookupPath(B, relBuf)
  if (i < 0 && j < 0) throw new BfsError('BAD_INPUT', `${rel}: no such file or directory in gen${genA} or gen${genB}`)
  const clean = rel.split('/').filter((s) => s && s !== '.').join('/')
  const root = clean ? Buffer.from('/' + clean) : Buffer.alloc(0)
  begin()
  if (i < 0) one(B, j, root, '+')
  else if (j < 0) one(A, i, root, '-')
  else if (!clean) children(i, j, root)
  else both(i, j, root, null)
  return stats
}

/** Bytes as a string when they are UTF-8, else null (then pathBase64 has them). */
function text(b: Buffer): string | null {
  const s = b.toString('utf8')
  return Buffer.from(s, 'utf8').equals(b) ? s : null
}

export function registerDiff(program: Command, ctx: Ctx): void {
  program
    .command('diff')
    .description('list what changed between two generations (added +, removed -, changed M with what changed), from the catalogs and block maps without reading file data')
    .argument('<gen-a>', 'the older generation (N, genN, latest, latest~K)')
    .argument('<gen-b>', 'the newer generation')
    .argument('[subtree]', 'a path in the generations: only this file or directory and what is below it')
    .option('--json', 'print one JSON object per change, then a statistics object')
    .option('--source <path>', SOURCE_HELP)
    .action(async (ga: string, gb: string, p: string | undefined, o) => {
      if (isFormat2(ctx.repoDir())) return printDiff(o, (emit, begin) => diffV2(ctx.repoDir(), ga, gb, p ?? '', o, emit, begin))
      const repo = ctx.openRepo()
      const a = resolveGen(repo, ga, o)
      const b = resolveGen(repo, gb, o)
      return printDiff(o, (emit, begin) => ({ a: a.id, b: b.id, stats: diffGenerations(repo, a.id, b.id, p ?? '', emit, () => begin(a.id, b.id)) }))
    })
}

type Runner = (emit: (c: Change) => void, begin: (a: number, b: number) => void) => { a: number; b: number; stats: DiffStats } | Promise<{ a: number; b: number; stats: DiffStats }>

/** Prints the changes as they come (text or --json), then the counts. */
async function printDiff(o: { json?: boolean }, run: Runner): Promise<void> {
  const { a, b, stats } = await run((c) => {
    const path = c.path.length ? c.path : SLASH
    if (o.json) {
      process.stdout.write(JSON.stringify({
        message_type: 'change', path: text(path), pathBase64: path.toString('base64'), modifier: c.modifier,
        type: TYPES[c.type] ?? 'unknown', what: c.what, sizeBefore: c.sizeBefore, sizeAfter: c.sizeAfter,
      }) + '\n')
      return
    }
    const dir = c.type === EntryType.Dir && c.path.length ? '/' : ''
    let tail = ''
    if (c.modifier === 'M') {
      const sz = c.what.includes('content') || c.what.includes('type') ? (c.sizeBefore !== c.sizeAfter ? `; ${c.sizeBefore} -> ${c.sizeAfter} B` : `; ${c.sizeAfter} B`) : ''
      tail = `  (${c.what.join(', ')}${sz})`
    } else if (c.type !== EntryType.Dir) tail = `  (${c.modifier === '+' ? c.sizeAfter : c.sizeBefore} B)`
    writeOut([`${c.modifier}    `, path, dir, tail, '\n'])
  }, (a, b) => {
    if (!o.json) writeOut([`comparing gen${a} to gen${b}:\n\n`])
  })
  if (o.json) {
    process.stdout.write(JSON.stringify({
      message_type: 'statistics', source_generation: `gen${a}`, target_generation: `gen${b}`,
      changed_files: stats.changed.files, changed_dirs: stats.changed.dirs, changed_others: stats.changed.others,
      added: { ...stats.added, bytes: stats.addedBytes }, removed: { ...stats.removed, bytes: stats.removedBytes },
    }) + '\n')
    return
  }
  const col = (n: number): string => String(n).padStart(5)
  writeOut([
    '\n',
    `Files:   ${col(stats.added.files)} new, ${col(stats.removed.files)} removed, ${col(stats.changed.files)} changed\n`,
    `Dirs:    ${col(stats.added.dirs)} new, ${col(stats.removed.dirs)} removed, ${col(stats.changed.dirs)} changed\n`,
    `Others:  ${col(stats.added.others)} new, ${col(stats.removed.others)} removed, ${col(stats.changed.others)} changed\n`,
    `  Added:   ${humanBytes(stats.addedBytes)}\n`,
    `  Removed: ${humanBytes(stats.removedBytes)}\n`,
  ])
}
