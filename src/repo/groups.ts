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
 * The same object and code on format 2 (native-notes/format.md §2.14.2): only the store is used;
 * an encrypted repository names the file by a keyed id of the group's name (`groups/<id>`).
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
 * opens them (format.md §2.14.2: an encrypted envelope v2, logical name `group/<id>`, stored as `groups/<id>`, the id `nameId` of the name).
 */
export interface GroupRepo {
  readonly dir: string
  readonly store: Store
  readonly encrypted?: boolean
  seal?(kind: 'group', key: string, payload: Buffer): Buffer
  unseal?(kind: 'group', key: string, file: Buffer): Buffer
  /** An encrypted repository's object id of a group name (§2.14.2: 32 hex digits, keyed with kName). */
  nameId?(kind: 'group', name: string): string
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
/** An encrypted repository's group object names: the keyed id of the name (§2.14.2). */
const ID_RE = /^[0-9a-f]{32}$/
/**
 * The store key of group `name`: `groups/<name>` (plain, format 1's), or `groups/<id>` in an
 * encrypted repository, the id a keyed hash of the name, so the name is not an object name.
 */
const groupKey = (repo: GroupRepo, name: string): string => `groups/${repo.encrypted ? repo.nameId!('group', name) : name}`
/** Whether a file name under groups/ is a group's (a name, or an encrypted repository's id). */
const isGroupFile = (repo: GroupRepo, base: string): boolean => (repo.encrypted ? ID_RE : NAME_RE).test(base)
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
  const key = groupKey(repo, name)
  let file: Buffer
  try {
    file = meta(repo).getSync(key)
  } catch {
    throw new BfsError('BAD_INPUT', `no group '${name}' in ${repo.dir} (create it with 'bfs group add ${name} --include PATTERN')`)
  }
  return decodeGroup(repo, key, file, name)
}

/**
 * The group in file `file` read from `key`; `name`: the name it must have (null: listing an
 * encrypted repository, where the key's id is all there is). In an encrypted repository the
 * AAD binds the file to its key (`group/<id>`) and the name inside must be the one whose id
 * the key is, so a group file copied over another group's id is damage (§2.14.2).
 */
function decodeGroup(repo: GroupRepo, key: string, file: Buffer, name: string | null): Group {
  const where = repo.store.where(key)
  try {
    // an encrypted repository: only a sealed group file is one (a plain one there is refused as damage, §2.22)
    const payload = repo.encrypted ? repo.unseal!('group', key, file) : decodeEnvelope('group', file, where).stored
    const g = JSON.parse(payload.toString('utf8')) as Group
    if (typeof g.name !== 'string' || !Array.isArray(g.includes) || !Array.isArray(g.excludes)) throw new FormatError('BAD_VALUE', 'bad group')
    if (repo.encrypted && (!NAME_RE.test(g.name) || groupKey(repo, g.name) !== key)) throw new FormatError('BAD_VALUE', `${where}: holds group '${g.name.slice(0, 64)}', whose id is not this object's name (a group file copied over another group's)`)
    if (name !== null && g.name !== name) throw new FormatError('BAD_VALUE', 'bad group')
    return g
  } catch (err) {
    const what = name !== null && repo.encrypted ? ` (group '${name}')` : ''
    throw new BfsError('CORRUPT', err instanceof FormatError ? `${err.message}${what}` : `${where}: not a valid group file${what}`)
  }
}

/** One line per group file that does not read (verify --all); a writer's temporary files are not groups. */
export function checkGroups(repo: GroupRepo): string[] {
  const out: string[] = []
  for (const k of meta(repo).listSync('groups')) {
    const base = path.basename(k)
    if (base.startsWith('.') && base.includes('.new-')) continue
    if (!isGroupFile(repo, base)) {
      out.push(`${repo.store.where(k)}: not a group file (${repo.encrypted ? "an encrypted repository's group file is named by 32 hex digits" : 'a group name is letters, digits, . _ -'})`)
      continue
    }
    try {
      readGroupFile(repo, k)
    } catch (err) {
      out.push(`${(err as Error).message}${(err as Error).message.includes(repo.store.where(k)) ? '' : ` (${repo.store.where(k)})`}`)
    }
  }
  return out
}

/** The group in store key `key` (a file listed under groups/): by its name (plain) or its id (encrypted). */
function readGroupFile(repo: GroupRepo, key: string): Group {
  if (!repo.encrypted) return readGroup(repo, path.basename(key))
  let file: Buffer
  try {
    file = meta(repo).getSync(key)
  } catch (err) {
    throw new BfsError('CORRUPT', `${repo.store.where(key)}: does not read (${(err as Error).message})`)
  }
  return decodeGroup(repo, key, file, null)
}

/**
 * The groups that read, sorted by name, and one line per group file that does not: one
 * damaged group file does not hide the others (damage stays local).
 */
export function listGroups(repo: GroupRepo): { groups: Group[]; damaged: string[] } {
  const groups: Group[] = []
  const damaged: string[] = []
  for (const k of meta(repo).listSync('groups').filter((k) => isGroupFile(repo, path.basename(k)))) {
    try {
      groups.push(readGroupFile(repo, k))
    } catch (err) {
      if (!(err instanceof BfsError && err.code === 'CORRUPT')) throw err
      damaged.push(err.message)
    }
  }
  // by name: an encrypted repository's ids sort otherwise
  return { groups: groups.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)), damaged }
}

/** Creates a group, or adds patterns to an existing one. */
export function addGroup(repo: GroupRepo, name: string, includes: string[], excludes: string[]): Group {
  if (!NAME_RE.test(name)) throw new BfsError('BAD_INPUT', `'${name}' is not a valid group name (letters, digits, . _ -)`)
  const existing = meta(repo).hasSync(groupKey(repo, name)) ? readGroup(repo, name) : null
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
  // (encrypted: under the name's id, its AAD `group/<id>`; the name only inside, §2.14.2)
  const key = groupKey(repo, g.name)
  const file = repo.encrypted ? repo.seal!('group', key, payload) : envelopeFor('group', payload, false)
  // replaced atomically (tmp → fsync → rename → fsync groups/): a reader sees the old or the new group
  meta(repo).putSync(key, file, { mode: 'replace' })
}

export function removeGroup(repo: GroupRepo, name: string): void {
  readGroup(repo, name)
  meta(repo).removeSync(groupKey(repo, name))
  meta(repo).flushSync('groups')
}
