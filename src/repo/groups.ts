import path from 'node:path'
import { envelopeFor } from './repository.js'
import { decodeEnvelope } from '../format/envelope.js'
import { FormatError } from '../format/errors.js'
import { BfsError } from './errors.js'
import { globToRegExp } from './exclude.js'
import { syncOf, type Store, type SyncStore } from '../store/store.js'

/**
 * File groups (C5): named include/exclude lists stored as REPO/groups/<name> (a BFSGRUP
 * envelope, JSON). A group file is replaced atomically (tmp → fsync → rename), never
 * edited in place. A file may belong to several groups; each group has its own chain.
 * The same object and code on format 2 (native-notes/format.md §2.14.2): only the store is used.
 */
export interface Group {
  name: string
  includes: string[]
  excludes: string[]
  created: string
}

/**
 * What group files need of a repository (format 1's Repository, format 2's Repo2): its store
 * and its name for messages; an encrypted format 2 repository (unlocked) also seals and
 * opens them (format.md §2.14.2: an encrypted envelope v2, logical name `group/<name>`).
 */
export interface GroupRepo {
  readonly dir: string
  readonly store: Store
  readonly encrypted?: boolean
  seal?(kind: 'group', key: string, payload: Buffer): Buffer
  unseal?(kind: 'group', key: string, file: Buffer): Buffer
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
const groupKey = (name: string): string => `groups/${name}`
/** Group files are read and written through the store's synchronous face. */
const meta = (repo: GroupRepo): SyncStore => syncOf(repo.store)

/** Checks one pattern: non-empty, relative, no '..', balanced brackets; returns it normalized (no trailing '/' duplication). */
export function checkPattern(p: string, what: string): string {
  if (!p || !p.trim()) throw new BfsError('BAD_INPUT', `${what}: empty pattern`)
  if (p.includes('\0')) throw new BfsError('BAD_INPUT', `${what} '${p}': contains a NUL byte`)
  const parts = p.replace(/^\/+/, '').split('/')
  if (parts.includes('..')) throw new BfsError('BAD_INPUT', `${what} '${p}': '..' is not allowed (patterns are relative to the backup source)`)
  let depth = 0
  for (const c of p) {
    if (c === '[') depth++
    else if (c === ']') depth = Math.max(0, depth - 1)
  }
  if (depth > 0) throw new BfsError('BAD_INPUT', `${what} '${p}': unbalanced '['`)
  try {
    globToRegExp(p)
  } catch {
    throw new BfsError('BAD_INPUT', `${what} '${p}': not a valid pattern`)
  }
  return p
}

export function readGroup(repo: GroupRepo, name: string): Group {
  if (!NAME_RE.test(name)) throw new BfsError('BAD_INPUT', `'${name}' is not a valid group name (letters, digits, . _ -)`)
  let file: Buffer
  try {
    file = meta(repo).getSync(groupKey(name))
  } catch {
    throw new BfsError('BAD_INPUT', `no group '${name}' in ${repo.dir} (create it with 'bfs group add ${name} --include PATTERN')`)
  }
  try {
    // an encrypted repository: only a sealed group file is one (a plain one there is refused as damage, §2.22)
    const payload = repo.encrypted ? repo.unseal!('group', groupKey(name), file) : decodeEnvelope('group', file, repo.store.where(groupKey(name))).stored
    const g = JSON.parse(payload.toString('utf8')) as Group
    if (g.name !== name || !Array.isArray(g.includes) || !Array.isArray(g.excludes)) throw new FormatError('BAD_VALUE', 'bad group')
    return g
  } catch (err) {
    throw new BfsError('CORRUPT', err instanceof FormatError ? err.message : `${repo.store.where(groupKey(name))}: not a valid group file`)
  }
}

/** One line per group file that does not read (verify --all); a writer's temporary files are not groups. */
export function checkGroups(repo: GroupRepo): string[] {
  const out: string[] = []
  for (const k of meta(repo).listSync('groups')) {
    const name = path.basename(k)
    if (name.startsWith('.') && name.includes('.new-')) continue
    if (!NAME_RE.test(name)) {
      out.push(`${repo.store.where(k)}: not a group file (a group name is letters, digits, . _ -)`)
      continue
    }
    try {
      readGroup(repo, name)
    } catch (err) {
      out.push(`${(err as Error).message}${(err as Error).message.includes(repo.store.where(k)) ? '' : ` (${repo.store.where(k)})`}`)
    }
  }
  return out
}

/**
 * The groups that read, sorted by name, and one line per group file that does not: one
 * damaged group file does not hide the others (damage stays local).
 */
export function listGroups(repo: GroupRepo): { groups: Group[]; damaged: string[] } {
  const groups: Group[] = []
  const damaged: string[] = []
  for (const n of meta(repo).listSync('groups').map((k) => path.basename(k)).filter((n) => NAME_RE.test(n)).sort()) {
    try {
      groups.push(readGroup(repo, n))
    } catch (err) {
      if (!(err instanceof BfsError && err.code === 'CORRUPT')) throw err
      damaged.push(err.message)
    }
  }
  return { groups, damaged }
}

/** Creates a group, or adds patterns to an existing one. */
export function addGroup(repo: GroupRepo, name: string, includes: string[], excludes: string[]): Group {
  if (!NAME_RE.test(name)) throw new BfsError('BAD_INPUT', `'${name}' is not a valid group name (letters, digits, . _ -)`)
  const existing = meta(repo).hasSync(groupKey(name)) ? readGroup(repo, name) : null
  if (!existing && includes.length === 0) throw new BfsError('BAD_INPUT', `group '${name}' needs at least one --include`)
  const inc = [...(existing?.includes ?? [])]
  const exc = [...(existing?.excludes ?? [])]
  for (const p of includes) {
    checkPattern(p, '--include')
    if (inc.includes(p)) throw new BfsError('BAD_INPUT', `--include '${p}' is already in group '${name}'`)
    inc.push(p)
  }
  for (const p of excludes) {
    checkPattern(p, '--exclude')
    if (exc.includes(p)) throw new BfsError('BAD_INPUT', `--exclude '${p}' is already in group '${name}'`)
    exc.push(p)
  }
  const both = inc.find((p) => exc.includes(p))
  if (both) throw new BfsError('BAD_INPUT', `pattern '${both}' is both included and excluded in group '${name}'`)
  const g: Group = { name, includes: inc, excludes: exc, created: existing?.created ?? new Date().toISOString() }
  writeGroup(repo, g)
  return g
}

function writeGroup(repo: GroupRepo, g: Group): void {
  const payload = Buffer.from(JSON.stringify(g))
  // plain: format 1's envelope, as ever; encrypted: sealed under a fresh salt (§2.14.2)
  const file = repo.encrypted ? repo.seal!('group', groupKey(g.name), payload) : envelopeFor('group', payload, false)
  // replaced atomically (tmp → fsync → rename → fsync groups/): a reader sees the old or the new group
  meta(repo).putSync(groupKey(g.name), file, { mode: 'replace' })
}

export function removeGroup(repo: GroupRepo, name: string): void {
  readGroup(repo, name)
  meta(repo).removeSync(groupKey(name))
  meta(repo).flushSync('groups')
}
