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
