/**
 * Issue 17 item 4: what `bfs backup` takes besides its engine's options — several sources
 * in one run, `--exclude-file`, `--exclude-caches`, `--exclude-if-present`, `--tag` and
 * `--host` — and the filters of `bfs generations` (--source, --host, --tag, --label,
 * --since, --until), shared by format 1 and format 2.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { InvalidArgumentError, type Command } from 'commander'
import { BfsError } from '../repo/errors.js'
import { readExcludeFile, type TagRules } from '../repo/exclude.js'
import { parseTime } from './find-select.js'
import { WriterLock } from '../repo/commit/index.js'
import type { Repository } from '../repo/repository.js'

const collect = (v: string, acc: string[] = []): string[] => [...acc, v]

/** The options this module adds to `bfs backup`. */
export function addBackupSourceOptions(cmd: Command): Command {
  return cmd
    .option('--exclude-file <file>', 'read --exclude patterns from FILE, one per line (blank lines and lines starting with # ignored; repeatable)', collect)
    .option('--exclude-caches', 'skip the contents of directories holding a valid CACHEDIR.TAG (the directory and the tag file are kept)')
    .option('--exclude-if-present <name>', 'skip the contents of directories holding an entry named NAME (the directory and NAME are kept; repeatable)', collect)
    .option('--tag <tag>', 'tag stored with the generation (repeatable; a,b adds both)', collect)
    .option('--host <name>', 'host name stored with the generation, and whose generations are the incremental base (default: this machine\'s)')
}

/**
 * The sources of one backup, absolute: duplicates, and a source inside another, are usage
 * errors (exit 2) — one generation per source, and two would hold the same files.
 */
export function checkSources(srcs: string[]): string[] {
  const abs = srcs.map((s) => path.resolve(s))
  for (let i = 0; i < abs.length; i++) {
    for (let j = 0; j < abs.length; j++) {
      if (i === j) continue
      const a = abs[i]!
      const b = abs[j]!
      if (a === b && i < j) throw new BfsError('USAGE', `source ${a} is given twice`)
      if (b !== a && b.startsWith(a === '/' ? '/' : `${a}/`)) throw new BfsError('USAGE', `sources ${a} and ${b} overlap (one is inside the other): give one of them, and --exclude what should be left out`)
    }
  }
  return abs
}

/** `--tag a,b --tag c`: a, b and c; an empty tag is a usage error. */
export function parseTags(list: string[]): string[] {
  const out: string[] = []
  for (const v of list) {
    for (const t of v.split(',')) {
      const tag = t.trim()
      if (tag === '') throw new BfsError('USAGE', `--tag '${v}': a tag must not be empty`)
      if (!out.includes(tag)) out.push(tag)
    }
  }
  return out
}

/** The engine options of item 4 from the parsed command line (excludes from files included). */
export function sourceOptions(o: Record<string, unknown>): { excludes: string[]; tagRules: TagRules; tags: string[]; host: string } {
  const host = o.host === undefined ? os.hostname() : String(o.host)
  if (host.trim() === '' || /[\n\r]/.test(host)) throw new BfsError('USAGE', '--host must be a non-empty name on one line')
  const files = (o.excludeFile as string[] | undefined) ?? []
  return {
    excludes: [...((o.exclude as string[] | undefined) ?? []), ...files.flatMap(readExcludeFile)],
    tagRules: { caches: !!o.excludeCaches, ifPresent: (o.excludeIfPresent as string[] | undefined) ?? [] },
    tags: parseTags((o.tag as string[] | undefined) ?? []),
    host,
  }
}

/** Options of `bfs backup` that a run of several sources does not take (each is about one source). */
const ONE_SOURCE_ONLY: Array<[string, (o: Record<string, unknown>) => boolean]> = [
  ['--volume/--mode volume', (o) => !!o.volume || o.mode === 'volume'],
  ['--base', (o) => o.base !== undefined],
  ['--freeze', (o) => !!o.freeze],
  ['--online', (o) => o.online !== undefined],
  ['--t0-file', (o) => o.t0File !== undefined],
]

/**
 * Several sources: refuses what applies to one source only (exit 2), and a source that is
 * missing or not a directory (exit 1) before anything is written, so that a typo in the last
 * one does not leave the others' generations committed.
 */
export function checkSeveral(sources: string[], o: Record<string, unknown>): void {
  if (sources.length < 2) return
  for (const [name, used] of ONE_SOURCE_ONLY) if (used(o)) throw new BfsError('USAGE', `${name} takes one source; ${sources.length} were given`)
  for (const src of sources) {
    let st: fs.Stats
    try {
      st = fs.lstatSync(src)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      throw new BfsError('BAD_INPUT', code === 'ENOENT' ? `source ${src} does not exist` : `cannot read source ${src}: ${code ?? (err as Error).message}`)
    }
    if (!st.isDirectory()) throw new BfsError('BAD_INPUT', `source ${src} is not a directory (several sources are directories; back up a device or image on its own)`)
  }
}

/**
 * Runs `one` for each source in order under ONE writer lock (format 1), taken before the
 * first and released after the last; stops at the first failure (the generations committed
 * before it stay). With one source the lock is left to the commit, as before.
 */
export async function eachSource(repo: () => Repository, sources: string[], waitMs: number, note: (m: string) => void, one: (src: string, heldLock: WriterLock | undefined) => Promise<void>): Promise<void> {
  if (sources.length === 1) return one(sources[0]!, undefined)
  const lock = await WriterLock.acquire(repo().store, `backup ${sources.join(' ')}`, waitMs, { onWait: note })
  try {
    for (const src of sources) await one(src, lock)
  } finally {
    lock.release()
  }
}

// ---- bfs generations: filters ------------------------------------------------------------

/** What the filters look at, the same for both formats. */
export interface GenFacts {
  time: string
  host: string
  tags: string[]
  label: string
  sources: string[]
}

export interface GenFilter {
  sources: string[]
  hosts: string[]
  tags: string[]
  label?: string
  sinceMs?: number
  untilMs?: number
}

/** `--since` / `--until`: the syntax of find's `--newer` (cli/find-select.ts `parseTime`). */
export const parseSince = parseTime

/** The options of the filters on `bfs generations`. */
export function addGenerationFilters(cmd: Command): Command {
  return cmd
    .option('--source <path>', 'only generations of this source (repeatable: any of them)', collect)
    .option('--host <name>', 'only generations of this host (repeatable: any of them)', collect)
    .option('--tag <tag>', 'only generations holding this tag (repeatable, a,b: every tag given)', collect)
    .option('--label <text>', 'only generations with exactly this label')
    .option('--since <time>', 'only generations made at or after TIME: a date (2026-01-31, 2026-01-31T12:00:00Z) or a duration before now (2d, 1w3d, 12h)', parseSince)
    .option('--until <time>', 'only generations made at or before TIME (as --since)', parseSince)
}

/** The filter of the parsed options; null when none is given. */
export function genFilter(o: Record<string, unknown>): GenFilter | null {
  const sources = ((o.source as string[] | string | undefined) ?? [])
  const f: GenFilter = {
    sources: (Array.isArray(sources) ? sources : [sources]).map((s) => path.resolve(s)),
    hosts: (o.host as string[] | undefined) ?? [],
    tags: parseTags((o.tag as string[] | undefined) ?? []),
    label: o.label as string | undefined,
    sinceMs: o.since as number | undefined,
    untilMs: o.until as number | undefined,
  }
  if (f.sinceMs !== undefined && f.untilMs !== undefined && f.sinceMs > f.untilMs) throw new BfsError('USAGE', '--since is after --until: no generation can match')
  const none = !f.sources.length && !f.hosts.length && !f.tags.length && f.label === undefined && f.sinceMs === undefined && f.untilMs === undefined
  return none ? null : f
}

export function matches(f: GenFilter, g: GenFacts): boolean {
  if (f.sources.length && !g.sources.some((s) => f.sources.includes(s))) return false
  if (f.hosts.length && !f.hosts.includes(g.host)) return false
  if (f.tags.some((t) => !g.tags.includes(t))) return false
  if (f.label !== undefined && g.label !== f.label) return false
  const ms = Date.parse(g.time)
  if (f.sinceMs !== undefined && ms < f.sinceMs) return false
  if (f.untilMs !== undefined && ms > f.untilMs) return false
  return true
}
