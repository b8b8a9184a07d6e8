/**
 * bfs find PATTERN and bfs log [GEN:]PATH (issue 17): four real backups of a real tree with
 * adds, removes, renames and changes between them; the exact lines, --json, the pattern
 * forms, --gens, --newer/--older, and errors (one line, the documented exit code).
 * find2.test.ts runs the same on a format 2 repository.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bfs, sh, tmpdir } from './helpers.js'
import { listLeases } from '../src/repo/v2/lease.js'
import { Repo2 } from '../src/repo/v2/repo2.js'

const FORMAT = process.env.BFS_FIND_TEST_FORMAT ?? '1'
let work: string
let src: string
let repo: string

async function backup(): Promise<void> {
  const b = await bfs(['backup', src], { repo })
  expect(b.stderr).toBe('')
  expect(b.code).toBe(0)
}
async function run(cmd: string): Promise<void> {
  const r = await sh(`export TZ=UTC; ${cmd}`, { cwd: src })
  expect(r.stderr).toBe('')
  expect(r.code).toBe(0)
}
const OLD = `touch -h -d '2020-01-01 00:00:00'`

beforeAll(async () => {
  work = tmpdir('bfs-find-')
  src = path.join(work, 'src')
  repo = path.join(work, 'repo')
  expect((await bfs(['init', '--format', FORMAT], { repo })).code).toBe(0)
  for (const d of ['etc/nginx/sites', 'src', 'docs']) fs.mkdirSync(path.join(src, d), { recursive: true })
  const files: Record<string, string> = {
    'etc/hosts': '127.0.0.1 localhost\n',
    'etc/nginx/nginx.conf': 'worker_processes 1;\n',
    'etc/nginx/sites/default.conf': 'server {}\n',
    'src/main.c': 'int main() { return 0; }\n',
    'src/util.c': 'int util;\n',
    'src/README.md': 'the sources\n',
    'docs/README.md': 'the docs\n',
    'Notes.TXT': 'notes\n',
    'same.txt': 'AAAA\n',
    'reread.txt': 'never changes\n',
  }
  for (const [p, c] of Object.entries(files)) fs.writeFileSync(path.join(src, p), c)
  fs.symlinkSync('etc/hosts', path.join(src, 'link'))
  await run(`find . -exec ${OLD} {} +`)
  await backup() // gen1
  await run(
    [
      `echo '10.0.0.1 db' >> etc/hosts && touch -d '2021-06-01 00:00:00' etc/hosts`,
      'echo "int n;" > src/new.c',
      'mv src/util.c src/helpers.c',
      'rm -r docs',
      // same size, the mtime put back: only the block maps tell
      `printf 'BBBB\\n' > same.txt && ${OLD} same.txt`,
      // re-read (ctime moves), nothing else
      'chmod 600 reread.txt && chmod 644 reread.txt',
      `${OLD} src/new.c src etc . src/helpers.c`,
    ].join(' && '),
  )
  await backup() // gen2
  await run(`rm etc/hosts && ${OLD} etc`)
  await backup() // gen3
  await run(`echo 'back again' > etc/hosts && ${OLD} etc/hosts etc`)
  await backup() // gen4
}, 300_000)
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

/** The groups of `bfs find`'s text: generation → lines. */
function groups(out: string): Record<string, string[]> {
  const g: Record<string, string[]> = {}
  let cur = ''
  for (const l of out.split('\n')) {
    const m = /^Found matching entries in (gen\d+) from \d{4}-\d\d-\d\d \d\d:\d\d:\d\d:$/.exec(l)
    if (m) g[(cur = m[1]!)] = []
    else if (l) g[cur]!.push(l)
  }
  return g
}
const T = '2020-01-01 00:00:00'
/** One line of find's text: type, size, mtime, path. */
const L = (type: string, size: number, path: string, mtime = T): string => `${type.padEnd(8)} ${String(size).padStart(12)}  ${mtime}  ${path}`
/** One line of log's text, the backup time as TIME. */
const V = (gen: number, status: string, type?: string, size?: number, mtime = T, what = ''): string =>
  type === undefined ? `gen${gen}`.padEnd(7) + ` TIME  ${status}` : `${`gen${gen}`.padEnd(7)} TIME  ${status.padEnd(9)}  ${type.padEnd(8)} ${String(size).padStart(12)}  ${mtime}${what ? `  (${what})` : ''}`

describe(`bfs find (format ${FORMAT})`, () => {
  it('a name at any depth, grouped per generation, path order', async () => {
    const r = await bfs(['find', 'README.md'], { repo })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const g = groups(r.stdout)
    expect(Object.keys(g)).toEqual(['gen1', 'gen2', 'gen3', 'gen4'])
    expect(g.gen1).toEqual([L('file', 9, '/docs/README.md'), L('file', 12, '/src/README.md')])
    for (const k of ['gen2', 'gen3', 'gen4']) expect(g[k]).toEqual([L('file', 12, '/src/README.md')])
    expect(r.stdout).toMatch(/^Found matching entries in gen1 from .*:\nfile .*\nfile .*\n\nFound matching entries in gen2 /)
  })

  it('wildcards: *, ?, [...]; a rename shows as the new name; only generations with matches', async () => {
    const c = groups((await bfs(['find', '*.c'], { repo })).stdout)
    expect(c.gen1!.map((l) => l.split('  ').at(-1))).toEqual(['/src/main.c', '/src/util.c'])
    expect(c.gen2!.map((l) => l.split('  ').at(-1))).toEqual(['/src/helpers.c', '/src/main.c', '/src/new.c'])
    const q = groups((await bfs(['find', '?ain.[a-c]'], { repo })).stdout)
    expect(Object.values(q).map((l) => l.length)).toEqual([1, 1, 1, 1])
    const neg = groups((await bfs(['find', '[!mh]*.c', '--gens', '2'], { repo })).stdout)
    expect(neg).toEqual({ gen2: [L('file', 7, '/src/new.c')] })
    const none = await bfs(['find', 'util.c', '--gens', '2..'], { repo })
    expect(none.code).toBe(0)
    expect(none.stdout).toBe('')
  })

  it('a pattern with a slash matches the whole path; ** any directories; a trailing / directories only', async () => {
    const a = groups((await bfs(['find', 'etc/*', '--gens', '1'], { repo })).stdout)
    expect(a.gen1!.map((l) => l.split('  ').at(-1))).toEqual(['/etc/hosts', '/etc/nginx/'])
    const b = groups((await bfs(['find', '/etc/**/*.conf', '--gens', '1'], { repo })).stdout)
    expect(b.gen1!.map((l) => l.split('  ').at(-1))).toEqual(['/etc/nginx/nginx.conf', '/etc/nginx/sites/default.conf'])
    const c = groups((await bfs(['find', 'nginx/*', '--gens', '1'], { repo })).stdout)
    expect(c).toEqual({}) // not at the root
    const d = groups((await bfs(['find', 'sites/', '--gens', '1'], { repo })).stdout)
    expect(d.gen1!).toEqual([expect.stringMatching(/^dir +0 {2}2020-01-01 00:00:00 {2}\/etc\/nginx\/sites\/$/)])
    const e = groups((await bfs(['find', '*s', '--gens', '1'], { repo })).stdout)
    expect(e.gen1!.map((l) => l.split('  ').at(-1))).toEqual(['/docs/', '/etc/hosts', '/etc/nginx/sites/'])
    const f = groups((await bfs(['find', 'l*', '--gens', '1'], { repo })).stdout)
    expect(f.gen1!).toEqual([L('symlink', 9, '/link')])
    // a trailing ** is what is inside the directory, not the directory itself
    const g = groups((await bfs(['find', 'etc/**', '--gens', '1'], { repo })).stdout)
    expect(g.gen1!.map((l) => l.split('  ').at(-1))).toEqual(['/etc/hosts', '/etc/nginx/', '/etc/nginx/nginx.conf', '/etc/nginx/sites/', '/etc/nginx/sites/default.conf'])
    const h = groups((await bfs(['find', 'etc', '--gens', '1'], { repo })).stdout)
    expect(h.gen1!.map((l) => l.split('  ').at(-1))).toEqual(['/etc/'])
  })

  it('bfs help find explains etc, etc/, /etc, etc/* and etc/**', async () => {
    const r = await bfs(['help', 'find'])
    expect(r.code).toBe(0)
    for (const re of [/^ +etc +.*any depth/m, /^ +etc\/ +.*director.*any depth/m, /^ +\/etc +.*root/m, /^ +etc\/\*\* +.*not etc itself/m]) expect(r.stdout).toMatch(re)
  })

  it('--ignore-case; case-sensitive by default', async () => {
    expect((await bfs(['find', 'notes.txt'], { repo })).stdout).toBe('')
    const r = groups((await bfs(['find', '-i', 'notes.txt', '--gens', 'latest'], { repo })).stdout)
    expect(r).toEqual({ gen4: [L('file', 6, '/Notes.TXT')] })
    const s = groups((await bfs(['find', '--ignore-case', 'SRC/MAIN.C', '--gens', 'latest~1..latest'], { repo })).stdout)
    expect(Object.keys(s)).toEqual(['gen3', 'gen4'])
  })

  it('--newer and --older filter on the mtime', async () => {
    const n = groups((await bfs(['find', '*', '--newer', '2021-01-01'], { repo })).stdout)
    expect(n).toEqual({ gen2: [L('file', 32, '/etc/hosts', '2021-06-01 00:00:00')] })
    const o = groups((await bfs(['find', 'hosts', '--older', '2021-01-01T00:00:00Z'], { repo })).stdout)
    expect(Object.keys(o)).toEqual(['gen1', 'gen4'])
    const d = groups((await bfs(['find', 'hosts', '--newer', '3650d'], { repo })).stdout)
    expect(Object.keys(d)).toEqual(['gen1', 'gen2', 'gen4'])
  })

  it('--gens: ranges, lists, names', async () => {
    const keys = async (spec: string): Promise<string[]> => Object.keys(groups((await bfs(['find', 'main.c', '--gens', spec], { repo })).stdout))
    expect(await keys('2..3')).toEqual(['gen2', 'gen3'])
    expect(await keys('gen2..latest')).toEqual(['gen2', 'gen3', 'gen4'])
    expect(await keys('1,3')).toEqual(['gen1', 'gen3'])
    expect(await keys('..2,latest')).toEqual(['gen1', 'gen2', 'gen4'])
    expect(await keys('latest~1')).toEqual(['gen3'])
  })

  it('--json: per generation with matches, ls --json entries with / paths', async () => {
    const r = await bfs(['find', '--json', 'hosts'], { repo })
    expect(r.code).toBe(0)
    const j = JSON.parse(r.stdout) as Array<Record<string, unknown>>
    expect(j.map((x) => x.generation)).toEqual(['gen1', 'gen2', 'gen4'])
    expect(j[0]).toMatchObject({ id: 1, source: src, hits: 1 })
    expect(j[1]!.matches).toEqual([expect.objectContaining({ name: 'hosts', path: '/etc/hosts', type: 'file', size: 32, mtime: '2021-06-01T00:00:00.000000000Z', permissions: '-rw-r--r--' })])
    expect(typeof j[1]!.time).toBe('string')
    expect((await bfs(['find', '--json', 'nothing-like-it'], { repo })).stdout).toBe('[]\n')
  })

  it('errors: one line and the exit code', async () => {
    const cases: Array<[string[], number, RegExp]> = [
      [['find', '[abc'], 2, /^bfs: bad pattern '\[abc': a \[ has no closing \]$/],
      [['find', 'a//b'], 2, /^bfs: bad pattern 'a\/\/b'/],
      [['find', ''], 2, /^bfs: bad pattern '': it is empty$/],
      [['find', '[z-a]'], 2, /^bfs: bad pattern '\[z-a\]': the range z-a is backwards$/],
      [['find', 'x', '--gens', '3..1'], 2, /^bfs: bad generation range '3\.\.1': gen3 comes after gen1$/],
      [['find', 'x', '--gens', 'foo'], 2, /^bfs: 'foo' is not a generation/],
      [['find', 'x', '--gens', '1,,2'], 2, /^bfs: bad generation range/],
      [['find', 'x', '--gens', '9'], 1, /^bfs: no generation 9 in /],
      [['find', 'x', '--gens', '2..9'], 1, /^bfs: no generation 9 in /],
      [['find', 'x', '--newer', 'yesterday'], 2, /^bfs: option '--newer <time>' argument 'yesterday' is invalid/],
      [['find'], 2, /^bfs: missing required argument/],
      [['log', 'nope/x'], 1, /^bfs: \/nope\/x: not in any of the 4 generations looked in$/],
      [['log', '9:etc/hosts'], 1, /^bfs: no generation 9 in /],
      [['log', '/'], 2, /^bfs: bfs log needs a path/],
    ]
    for (const [args, code, re] of cases) {
      const r = await bfs(args, { repo })
      expect(r.code, args.join(' ')).toBe(code)
      expect(r.stdout).toBe('')
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1)
      expect(r.stderr.trim()).toMatch(re)
    }
    expect((await bfs(['find', 'x'], { repo: path.join(work, 'src') })).code).toBe(6)
  })
})

describe(`bfs log (format ${FORMAT})`, () => {
  const row = (l: string): string => l.replace(/^(gen\d+ +)\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  /, '$1TIME  ')
  it('present, absent, what changed from the version before', async () => {
    const r = await bfs(['log', 'etc/hosts'], { repo })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout.trim().split('\n').map(row)).toEqual([
      'versions of /etc/hosts:',
      V(1, 'added', 'file', 20),
      V(2, 'changed', 'file', 32, '2021-06-01 00:00:00', 'content, mtime'),
      V(3, 'removed'),
      V(4, 'added', 'file', 11),
    ])
  })

  it('a content change with size and mtime kept; a re-read file is unchanged; a renamed one removed', async () => {
    const s = (await bfs(['log', '/same.txt'], { repo })).stdout.trim().split('\n').map(row)
    expect(s.slice(1, 3)).toEqual([V(1, 'added', 'file', 5), V(2, 'changed', 'file', 5, T, 'content')])
    expect(s[3]).toMatch(/^gen3 +TIME {2}unchanged/)
    const u = (await bfs(['log', 'reread.txt', '--gens', '1..2'], { repo })).stdout.trim().split('\n').map(row)
    expect(u).toEqual(['versions of /reread.txt:', V(1, 'added', 'file', 14), V(2, 'unchanged', 'file', 14)])
    const m = (await bfs(['log', 'src/util.c'], { repo })).stdout.trim().split('\n').map(row)
    expect(m.slice(1)).toEqual([V(1, 'added', 'file', 10), V(2, 'removed'), V(3, 'absent'), V(4, 'absent')])
  })

  it('GEN:PATH: the generations up to GEN', async () => {
    const r = await bfs(['log', 'gen2:etc/hosts'], { repo })
    expect(r.code).toBe(0)
    expect(r.stdout.trim().split('\n').map((l) => l.split(' ')[0])).toEqual(['versions', 'gen1', 'gen2'])
  })

  it('--json', async () => {
    const r = await bfs(['log', '--json', 'etc/hosts'], { repo })
    expect(r.code).toBe(0)
    const j = JSON.parse(r.stdout) as Array<Record<string, unknown>>
    expect(j.map((v) => [v.generation, v.present, v.status, v.contentChanged])).toEqual([
      ['gen1', true, 'added', null], ['gen2', true, 'changed', true], ['gen3', false, 'removed', null], ['gen4', true, 'added', null],
    ])
    expect(j[1]).toMatchObject({ id: 2, what: ['content', 'mtime'], entry: expect.objectContaining({ path: '/etc/hosts', size: 32, type: 'file' }) })
    expect(j[2]!.entry).toBe(null)
  })
})

// Format 2: find and log hold a reader's lease (§2.20.4) while they read, as ls, cat, restore,
// verify and diff do, so that forget/prune cannot delete what they read; killed while reading
// a directory piece (BFS_TEST_FAULTS kill, as format2-leases.test.ts), each leaves the lease it
// held: kind ls, named by its command, pinning every generation it searches.
if (FORMAT === '2') {
  describe('bfs find and bfs log hold a lease (format 2)', () => {
    const leasesDir = (): string => path.join(repo, 'leases')
    const leaseFiles = (): string[] => (fs.existsSync(leasesDir()) ? fs.readdirSync(leasesDir()) : [])
    const killInPieces = { NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ keys: 'gens/*/pack-*', ops: ['open', 'get', 'read'], fault: 'kill' }] }) }
    it('killed mid-way, each leaves its lease: kind ls, its command, every generation it reads pinned; ended, none is left', async () => {
      const cases: Array<[string[], string, string[]]> = [
        [['find', 'hosts'], 'find', ['1@1', '2@1', '3@1', '4@1']],
        [['find', 'hosts', '--gens', '2..3'], 'find', ['2@1', '3@1']],
        [['log', 'etc/hosts'], 'log', ['1@1', '2@1', '3@1', '4@1']],
        [['log', 'gen2:etc/hosts'], 'log', ['1@1', '2@1']],
      ]
      for (const [args, command, pins] of cases) {
        fs.rmSync(leasesDir(), { recursive: true, force: true })
        const r = await bfs(args, { repo, env: killInPieces })
        expect(r.stderr, args.join(' ')).toContain('killed by SIGKILL')
        const ls = listLeases(Repo2.open(repo))
        expect(ls, args.join(' ')).toEqual([expect.objectContaining({ kind: 'ls', command, pins })])
        expect(ls[0]!.pid).not.toBe(process.pid)
      }
      fs.rmSync(leasesDir(), { recursive: true, force: true })
      for (const args of [['find', 'hosts'], ['find', '--json', 'nothing-like-it'], ['log', 'etc/hosts'], ['log', 'nope']]) {
        await bfs(args, { repo })
        expect(leaseFiles(), args.join(' ')).toEqual([])
      }
    })
  })
}

// Format 1 volume generations (backup --volume): one regular file named after the source (the
// image file's name; NAME.img for a block device /dev/NAME) below an unnamed root. find lists
// it like any file, with its size and mtime, and log follows its versions; its source path
// (an absolute path on the host) is not a path inside the generation (--source selects by it).
if (FORMAT === '1') {
  describe('bfs find and bfs log on volume generations (format 1)', () => {
    it('the image is found by its name like any file, with size and mtime; log shows its versions', async () => {
      const vrepo = path.join(work, 'vrepo')
      const img = path.join(work, 'vol', 'disk.img')
      fs.mkdirSync(path.dirname(img))
      expect((await bfs(['init', '--format', FORMAT], { repo: vrepo })).code).toBe(0)
      fs.writeFileSync(img, Buffer.alloc(1 << 20, 7))
      fs.utimesSync(img, new Date('2020-01-01T00:00:00Z'), new Date('2020-01-01T00:00:00Z'))
      const b1 = await bfs(['backup', '--volume', img], { repo: vrepo })
      expect(b1.code, b1.stderr).toBe(0)
      fs.appendFileSync(img, Buffer.alloc(4096, 9))
      fs.utimesSync(img, new Date('2021-06-01T00:00:00Z'), new Date('2021-06-01T00:00:00Z'))
      const b2 = await bfs(['backup', '--volume', img], { repo: vrepo })
      expect(b2.code, b2.stderr).toBe(0)
      // and a file tree in the same repository: one search covers both kinds
      expect((await bfs(['backup', src], { repo: vrepo })).code).toBe(0)
      for (const pattern of ['disk.img', '*.img', '/disk.img', 'disk.*']) {
        const r = await bfs(['find', pattern], { repo: vrepo })
        expect(r.stderr, pattern).toBe('')
        expect(r.code, pattern).toBe(0)
        expect(groups(r.stdout), pattern).toEqual({ gen1: [L('file', 1 << 20, '/disk.img')], gen2: [L('file', (1 << 20) + 4096, '/disk.img', '2021-06-01 00:00:00')] })
      }
      const all = groups((await bfs(['find', '*', '--gens', '..2'], { repo: vrepo })).stdout)
      expect(all).toEqual({ gen1: [L('file', 1 << 20, '/disk.img')], gen2: [L('file', (1 << 20) + 4096, '/disk.img', '2021-06-01 00:00:00')] })
      const j = JSON.parse((await bfs(['find', '--json', 'disk.img', '--source', img], { repo: vrepo })).stdout) as Array<Record<string, unknown>>
      expect(j.map((x) => [x.generation, x.source, x.hits])).toEqual([['gen1', img, 1], ['gen2', img, 1]])
      expect((j[1]!.matches as unknown[])[0]).toMatchObject({ path: '/disk.img', type: 'file', size: (1 << 20) + 4096, mtime: '2021-06-01T00:00:00.000000000Z' })
      // the source path is where the image was on the host, not a path in the generation
      expect((await bfs(['find', img], { repo: vrepo })).stdout).toBe('')
      const l = await bfs(['log', 'disk.img', '--source', img], { repo: vrepo })
      expect(l.code, l.stderr).toBe(0)
      expect(l.stdout.trim().split('\n').slice(1).map((x) => x.replace(/^(gen\d+ +)\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  /, '$1TIME  '))).toEqual([
        V(1, 'added', 'file', 1 << 20), V(2, 'changed', 'file', (1 << 20) + 4096, '2021-06-01 00:00:00', 'content, mtime'),
      ])
    })
  })
}

// A damaged generation (native-notes/format.md; damage.test.ts flips bytes the same way): find
// and log name it on stderr in one line, go on with the others, and exit 3 (they finished, but
// did not search everything). Format 1: gen2's catalog; format 2: gen2's manifest, then the
// directory pieces in gen2's packs.
describe(`a damaged generation (format ${FORMAT})`, () => {
  const flipAll = (file: string): void => {
    const b = fs.readFileSync(file)
    for (let i = 0; i < b.length; i += 64) b[i] = b[i]! ^ 0x10
    fs.writeFileSync(file, b)
  }
  const copy = async (name: string): Promise<string> => {
    const d = path.join(work, name)
    expect((await sh(`cp -a '${repo}' '${d}'`)).code).toBe(0)
    return d
  }
  const gen = (id: number): string => String(id).padStart(8, '0')
  const WARN = (id: number): RegExp => new RegExp(`^bfs: warning: gen${id} is damaged and was not searched: \\S`)
  const row = (l: string): string => l.replace(/^(gen\d+ +)\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  /, '$1TIME  ')

  it('find and log: one warning line naming it, the other generations as before, exit 3', async () => {
    const intact = groups((await bfs(['find', 'hosts'], { repo })).stdout)
    const dmg = await copy('damaged-1')
    flipAll(FORMAT === '1' ? path.join(dmg, 'gens', gen(2), 'catalog') : path.join(dmg, 'manifests', `gen-${gen(2)}`))
    const r = await bfs(['find', 'hosts'], { repo: dmg })
    expect(r.code, r.stderr).toBe(3)
    expect(r.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(WARN(2))])
    expect(groups(r.stdout)).toEqual({ gen1: intact.gen1, gen4: intact.gen4 })
    const j = await bfs(['find', '--json', 'hosts'], { repo: dmg })
    expect(j.code).toBe(3)
    expect(j.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(WARN(2))])
    expect((JSON.parse(j.stdout) as Array<{ generation: string }>).map((x) => x.generation)).toEqual(['gen1', 'gen4'])
    // not among the generations asked for: not searched, not a problem
    const other = await bfs(['find', 'hosts', '--gens', '3..4'], { repo: dmg })
    expect([other.code, other.stderr]).toEqual([0, ''])
    expect(Object.keys(groups(other.stdout))).toEqual(['gen4'])
    const l = await bfs(['log', 'etc/hosts'], { repo: dmg })
    expect(l.code, l.stderr).toBe(3)
    expect(l.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(WARN(2))])
    expect(l.stdout.trim().split('\n').map(row)).toEqual(['versions of /etc/hosts:', V(1, 'added', 'file', 20), V(3, 'removed'), V(4, 'added', 'file', 11)])
  })

  if (FORMAT === '1') {
    it('a damaged manifest too (gen3), with a damaged catalog (gen2): both named, exit 3', async () => {
      const dmg = await copy('damaged-2')
      flipAll(path.join(dmg, 'gens', gen(2), 'catalog'))
      flipAll(path.join(dmg, 'manifests', `gen-${gen(3)}`))
      const r = await bfs(['find', 'main.c'], { repo: dmg })
      expect(r.code, r.stderr).toBe(3)
      expect(r.stderr.trimEnd().split('\n').sort()).toEqual([expect.stringMatching(WARN(2)), expect.stringMatching(WARN(3))])
      expect(Object.keys(groups(r.stdout))).toEqual(['gen1', 'gen4'])
    })
  } else {
    it("gen2's directory pieces damaged: each generation that needs one is named once, gen1 is listed as before, exit 3", async () => {
      const intact = groups((await bfs(['find', 'hosts'], { repo })).stdout)
      const dmg = await copy('damaged-2')
      const packs = fs.readdirSync(path.join(dmg, 'gens', gen(2))).filter((f) => f.startsWith('pack-'))
      expect(packs.length).toBeGreaterThan(0)
      for (const p of packs) flipAll(path.join(dmg, 'gens', gen(2), p))
      const r = await bfs(['find', 'hosts'], { repo: dmg })
      expect(r.code, r.stderr).toBe(3)
      const lines = r.stderr.trimEnd().split('\n')
      expect(lines[0]).toMatch(WARN(2))
      for (const x of lines) expect(x).toMatch(/^bfs: warning: gen[234] is damaged and was not searched: \S.*pack-\d+/)
      expect(new Set(lines.map((x) => x.split(' ')[2])).size).toBe(lines.length)
      expect(groups(r.stdout).gen1).toEqual(intact.gen1)
    })
  }
})
