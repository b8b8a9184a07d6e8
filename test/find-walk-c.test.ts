/**
 * bfs find's walk in C (native/findwalk.c, cli/find.ts walkInC): every generation of a format
 * 2 repository walked in one native call, pieces read, checked and matched in C, a piece
 * shared by generations walked once. On a history without a DIRINDEX (so that C walks every
 * generation) with renames (within and across directories), hard links, names that are not
 * UTF-8, deletions and a 200-entry directory changed in every generation (DIRDELTA pages):
 * the same output as the JavaScript walk (BFS_FIND_JS=1), byte for byte, and fixed answers;
 * patterns C does not match (`?`, `[...]`, -i) go to the JavaScript walk unchanged; a damaged
 * piece makes C decline the generations that hold it, which the JavaScript walk names.
 * No FUSE.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bfs, sh, tmpdir } from './helpers.js'
import { Repo2 } from '../src/repo/v2/repo2.js'
import { PieceReader } from '../src/pieces/reader.js'
import { PieceKind } from '../src/format/v2/common.js'
import { PathPattern } from '../src/cli/find-select.js'

let work: string
let src: string
let repo: string

async function run(cmd: string): Promise<void> {
  const r = await sh(`export TZ=UTC; ${cmd}`, { cwd: src })
  expect(r.stderr).toBe('')
  expect(r.code).toBe(0)
}
async function backup(): Promise<void> {
  const r = await bfs(['backup', src], { repo })
  expect(r.stderr).toBe('')
  expect(r.code).toBe(0)
}

beforeAll(async () => {
  work = tmpdir('bfs-find-c-')
  src = path.join(work, 'src')
  repo = path.join(work, 'repo')
  fs.mkdirSync(src)
  expect((await bfs(['init', '--format', '2'], { repo })).code).toBe(0)
  await run(
    [
      'mkdir -p big a/b/c d/e empty',
      'for i in $(seq -w 0 199); do echo "$i" > big/f$i.c; done',
      'echo m > Makefile && echo m > a/Makefile && echo m > a/b/c/Makefile && echo m > d/e/Makefile',
      "printf 'raw\\xff\\xfe.c\\0caf\\xc3\\xa9.c\\0' | xargs -0 touch --",
      "mv raw* caf* a/b/",
      'echo linked > a/h1.c && ln a/h1.c a/h2.c && ln a/h1.c d/h3.c',
      "touch -d '2020-01-01 00:00:00' big/f* a/b/c/Makefile",
    ].join(' && '),
  )
  await backup() // gen1
  await run('mv a/b/c/Makefile a/b/Makefile && mv big/f000.c d/moved.c && rm big/f199.c d/e/Makefile && echo n > big/n0.c') // renames, deletions
  await backup() // gen2
  await run("rm a/h2.c && ln d/h3.c big/h4.c && printf 'x\\x80y.c\\0' | xargs -0 touch -- && mv x*y.c d/e/ && echo m > d/e/Makefile") // links, a non-UTF-8 name, a name back
  await backup() // gen3
  await run('rm -r a/b && echo changed >> big/f100.c && echo m > empty/Makefile') // a whole subtree gone
  await backup() // gen4
}, 600_000)
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

const C_LINE = /^bfs: find: (\d+) generations walked in C \((\d+) pieces read\) in \d+ ms\n/m

/** find with the walk in C and with the JavaScript one: the same stdout, stderr and code; how many generations C walked. */
async function both(args: string[]): Promise<{ stdout: string; code: number; inC: number; pieces: number }> {
  const n = await bfs(['find', ...args], { repo, env: { BFS_FIND_STATS: '1' } })
  const j = await bfs(['find', ...args], { repo, env: { BFS_FIND_JS: '1' } })
  expect(n.stdout, args.join(' ')).toBe(j.stdout)
  expect(n.code, `${args.join(' ')}: ${n.stderr}`).toBe(j.code)
  const c = C_LINE.exec(n.stderr)
  const rest = n.stderr.replace(c?.[0] ?? '', '').replace(/^bfs: find: \d+ directories scanned natively .*\n/m, '')
  expect(rest).toBe(j.stderr)
  return { stdout: n.stdout, code: n.code, inC: c ? +c[1]! : 0, pieces: c ? +c[2]! : 0 }
}

interface Hit { generation: string; matches: Array<{ path: string; pathBase64: string; type: string; size: number; nlink: number }> }
const paths = (out: string): Record<string, string[]> =>
  Object.fromEntries((JSON.parse(out) as Hit[]).map((g) => [g.generation, g.matches.map((x) => Buffer.from(x.pathBase64, 'base64').toString('latin1'))]))

describe('bfs find: the walk in C', () => {
  it('names at any depth across renames, deletions and a removed subtree: the JavaScript walk\'s answers, every generation in C', async () => {
    const r = await both(['--json', 'Makefile'])
    expect(r.code).toBe(0)
    expect(r.inC).toBe(4)
    expect(paths(r.stdout)).toEqual({
      gen1: ['/Makefile', '/a/Makefile', '/a/b/c/Makefile', '/d/e/Makefile'],
      gen2: ['/Makefile', '/a/Makefile', '/a/b/Makefile'],
      gen3: ['/Makefile', '/a/Makefile', '/a/b/Makefile', '/d/e/Makefile'],
      gen4: ['/Makefile', '/a/Makefile', '/d/e/Makefile', '/empty/Makefile'],
    })
    // the text output too (byte for byte: both() compares)
    const t = await both(['Makefile'])
    expect(t.stdout).toMatch(/^Found matching entries in gen1 from .*:\nfile +2 {2}\S+ \S+ {2}\/Makefile\n(.*\n)*file +2 {2}2020-01-01 00:00:00 {2}\/a\/b\/c\/Makefile\n/)
    // unchanged directories are read once for the four generations: fewer pieces than 4 trees
    expect(r.pieces).toBeLessThan(4 * 8)
  })

  it('globs with * (DIRDELTA pages and their bases), ** and a trailing /, non-UTF-8 names kept byte for byte', async () => {
    const f = await both(['--json', 'f1*0.c', '--gens', '4'])
    expect(f.inC).toBe(1)
    expect(paths(f.stdout)).toEqual({ gen4: ['/big/f100.c', '/big/f110.c', '/big/f120.c', '/big/f130.c', '/big/f140.c', '/big/f150.c', '/big/f160.c', '/big/f170.c', '/big/f180.c', '/big/f190.c'] })
    const all = paths((await both(['--json', '*.c'])).stdout)
    expect(all.gen1).toHaveLength(200 + 3 + 2)
    expect(all.gen1).toContain('/a/b/raw\xff\xfe.c')
    expect(all.gen2).toContain('/d/moved.c')
    expect(all.gen2).not.toContain('/big/f000.c')
    expect(all.gen2).not.toContain('/big/f199.c')
    expect(all.gen3).toContain('/d/e/x\x80y.c')
    expect(all.gen3).toContain('/big/h4.c')
    expect(all.gen4!.some((p) => p.startsWith('/a/b/'))).toBe(false)
    const raw = await both(['--json', 'raw*'])
    expect(raw.inC).toBe(4)
    expect(Buffer.from((JSON.parse(raw.stdout) as Hit[])[0]!.matches[0]!.pathBase64, 'base64')).toEqual(Buffer.from('/a/b/raw\xff\xfe.c', 'latin1'))
    expect(paths((await both(['--json', 'x*y.c'])).stdout)).toEqual({ gen3: ['/d/e/x\x80y.c'], gen4: ['/d/e/x\x80y.c'] })
    expect(paths((await both(['--json', '/d/**', '--gens', '2'])).stdout)).toEqual({ gen2: ['/d/e', '/d/h3.c', '/d/moved.c'] })
    expect(paths((await both(['--json', 'e/', '--gens', '1'])).stdout)).toEqual({ gen1: ['/d/e'] })
    expect(paths((await both(['--json', '/a/*/*', '--gens', '1'])).stdout)).toEqual({ gen1: ['/a/b/c', '/a/b/caf\u00c3\u00a9.c', '/a/b/raw\u00ff\u00fe.c'] })
    expect((await both(['--json', 'nothing*here'])).stdout).toBe('[]\n')
  })

  it('hard links: each name with the size and link count its entry holds', async () => {
    const r = await both(['--json', 'h*.c'])
    expect(r.inC).toBe(4)
    const g = JSON.parse(r.stdout) as Hit[]
    expect(g[0]!.matches.map((x) => [x.path, x.size, x.nlink])).toEqual([['/a/h1.c', 7, 3], ['/a/h2.c', 7, 3], ['/d/h3.c', 7, 3]])
    expect(g[2]!.matches.map((x) => x.path)).toEqual(['/a/h1.c', '/big/h4.c', '/d/h3.c'])
  })

  it('--newer/--older and --gens on the walk in C; patterns it does not match stay JavaScript\'s', async () => {
    const old = await both(['--json', 'Makefile', '--older', '2021-01-01'])
    expect(old.inC).toBe(4)
    expect(paths(old.stdout)).toEqual({ gen1: ['/a/b/c/Makefile'], gen2: ['/a/b/Makefile'], gen3: ['/a/b/Makefile'] })
    for (const p of [['f00?.c'], ['[fn]0*.c', '--gens', '2'], ['-i', 'MAKEFILE'], ['caf\u00e9*']]) {
      const r = await both(['--json', ...p])
      expect(r.inC, p.join(' ')).toBe(0)
      expect(Object.keys(paths(r.stdout)).length, p.join(' ')).toBeGreaterThan(0)
    }
  })

  it('the pattern spec: C takes **, literals and ASCII globs with * only', () => {
    expect(new PathPattern('Makefile', false).nativeSpec).toEqual(Buffer.from([2, 0, 0, 0, 0, 1, 8, 0, ...Buffer.from('Makefile')]))
    expect(new PathPattern('/etc/**', false).nativeSpec).toEqual(Buffer.from([3, 0, 1, 3, 0, ...Buffer.from('etc'), 2, 1, 0, 42, 0, 0, 0]))
    expect(new PathPattern('sub/', false).nativeSpec![1]).toBe(1)
    expect(new PathPattern('caf\u00e9', false).nativeSpec).not.toBeNull() // a literal: bytes
    for (const p of ['f?', '[ab]c', 'a\\*', 'caf\u00e9*']) expect(new PathPattern(p, false).nativeSpec, p).toBeNull()
    expect(new PathPattern('Makefile', true).nativeSpec).toBeNull()
  })

  it('a damaged directory piece: C declines the generations that hold it, which the JavaScript walk names (exit 3)', async () => {
    const dmg = path.join(work, 'damaged')
    fs.cpSync(repo, dmg, { recursive: true })
    // d/e in gen3 (written in gen3, kept in gen4): a stored byte flipped
    const r2 = Repo2.open(dmg)
    const pieces = new PieceReader(r2.store)
    const entriesOf = async (ref: Parameters<PieceReader['piece']>[0]) => {
      const p = await pieces.piece(ref)
      return p.kind === PieceKind.Dir || p.kind === PieceKind.DirDelta ? p.entries : []
    }
    const d = (await entriesOf(r2.manifest(3).rootEntry.dir!.child)).find((e) => e.name.toString() === 'd')!
    const e = (await entriesOf(d.dir!.child)).find((x) => x.name.toString() === 'e')!
    const ref = e.dir!.child
    const pack = path.join(dmg, 'gens', String(ref.run).padStart(8, '0'), `pack-${String(ref.pack).padStart(8, '0')}`)
    const fd = fs.openSync(pack, 'r+')
    const byte = Buffer.alloc(1)
    fs.readSync(fd, byte, 0, 1, ref.offset + Math.floor(ref.storedLen / 2))
    byte[0] ^= 0x5a
    fs.writeSync(fd, byte, 0, 1, ref.offset + Math.floor(ref.storedLen / 2))
    fs.closeSync(fd)
    const n = await bfs(['find', 'Makefile'], { repo: dmg, env: { BFS_FIND_STATS: '1' } })
    const j = await bfs(['find', 'Makefile'], { repo: dmg, env: { BFS_FIND_JS: '1' } })
    expect(j.code).toBe(3)
    expect(n.code).toBe(3)
    expect(n.stdout).toBe(j.stdout)
    expect(C_LINE.exec(n.stderr)?.[1]).toBe('2') // gens 1 and 2 in C; 3 and 4 declined
    expect(j.stderr).toMatch(/^bfs: warning: gen3 is damaged and was not searched: \/d\/e: .*\nbfs: warning: gen4 is damaged and was not searched: \/d\/e: .*\n$/)
    expect(n.stderr.replace(C_LINE, '').replace(/^bfs: find: \d+ directories scanned natively .*\n/m, '')).toBe(j.stderr)
  })
})
