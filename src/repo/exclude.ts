import fs from 'node:fs'
import { BfsError } from './errors.js'

/**
 * --exclude patterns, as in tar/rsync: `*` and `?` match within one name, `**` across
 * directories, `[…]` a character class. A pattern without '/' matches a name at any
 * depth; with '/' it matches the path relative to the source (a leading '/' anchors it
 * there too). A trailing '/' matches directories only. Paths are latin1 strings of raw bytes.
 */
export function globToRegExp(glob: string): RegExp {
  let re = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!
    if (c === '*') {
      if (glob[i + 1] === '*') {
        re += '.*'
        i++
        if (glob[i + 1] === '/') i++
      } else re += '[^/]*'
    } else if (c === '?') re += '[^/]'
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1)
      if (end < 0) re += '\\['
      else {
        let cls = glob.slice(i + 1, end)
        if (cls.startsWith('!')) cls = '^' + cls.slice(1)
        re += `[${cls.replace(/\\/g, '\\\\')}]`
        i = end
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&')
  }
  return new RegExp(`^${re}$`, 's')
}

export function compileExcludes(patterns: string[]): (rel: string, isDir: boolean) => boolean {
  if (patterns.length === 0) return () => false
  const rules = patterns.map((p) => {
    const dirOnly = p.endsWith('/') && p.length > 1
    let q = dirOnly ? p.slice(0, -1) : p
    const anchored = q.includes('/')
    if (q.startsWith('/')) q = q.slice(1)
    return { re: globToRegExp(Buffer.from(q, 'utf8').toString('latin1')), anchored, dirOnly }
  })
  return (rel, isDir) => {
    const base = rel.slice(rel.lastIndexOf('/') + 1)
    for (const r of rules) {
      if (r.dirOnly && !isDir) continue
      if (r.re.test(r.anchored ? rel : base)) return true
    }
    return false
  }
}

/** The tag file of a cache directory (https://bford.info/cachedir/). */
export const CACHEDIR_TAG = 'CACHEDIR.TAG'
/** What a CACHEDIR.TAG must start with to count: anything else is an ordinary file. */
export const CACHEDIR_SIGNATURE = Buffer.from('Signature: 8a477f597d28d172789f06886806bc55')

/** `--exclude-caches` and `--exclude-if-present NAME`: directories whose contents are skipped. */
export interface TagRules {
  caches?: boolean
  ifPresent?: string[]
}

/** Whether the regular file at `p` starts with the CACHEDIR.TAG signature (unreadable: no). */
function isCacheTag(p: Buffer): boolean {
  let fd = -1
  try {
    fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
    const b = Buffer.alloc(CACHEDIR_SIGNATURE.length)
    const n = fs.readSync(fd, b, 0, b.length, 0)
    return n === b.length && b.equals(CACHEDIR_SIGNATURE)
  } catch {
    return false
  } finally {
    if (fd >= 0) fs.closeSync(fd)
  }
}

/**
 * Compiles the tag rules: the result, given a directory's path and listing (`isFile(i)`:
 * entry i is a regular file), returns the indices of the tag files to keep when the
 * directory is tagged (its other entries are skipped; the directory itself and its tag files
 * are kept, as tar's --exclude-tag and Borg's --keep-exclude-tags do), or null when it is
 * not. A CACHEDIR.TAG counts only as a regular file starting with the signature.
 */
export function compileTagRules(rules: TagRules): ((dir: Buffer, names: Buffer[], isFile: (i: number) => boolean) => Set<number> | null) | null {
  const present = new Set((rules.ifPresent ?? []).map((n) => Buffer.from(n, 'utf8').toString('latin1')))
  if (!rules.caches && present.size === 0) return null
  return (dir, names, isFile) => {
    let keep: Set<number> | null = null
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!.toString('latin1')
      const tag = present.has(name) || (rules.caches && name === CACHEDIR_TAG && isFile(i) && isCacheTag(Buffer.concat([dir, Buffer.from('/'), names[i]!])))
      if (tag) (keep ??= new Set()).add(i)
    }
    return keep
  }
}

/**
 * `--exclude-file FILE`: one pattern per line, as restic reads it (surrounding blanks
 * trimmed; empty lines and lines starting with `#` ignored). A file that cannot be read is a
 * one-line error (exit 1, as a missing source).
 */
export function readExcludeFile(file: string): string[] {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new BfsError('BAD_INPUT', `cannot read exclude file ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : (code ?? (err as Error).message)}`)
  }
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
}
