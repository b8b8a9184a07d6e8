/**
 * bfs diff's directory compare in C (native dirDiff, cli/diff2.ts): two directory pages
 * merge-joined by name in C, only entries whose bytes differ decoded. On a format 2 history
 * with renames (within and across directories), hard links added and removed, names that are
 * not UTF-8, deletions of files and of a subtree, a file that becomes a directory, mode and
 * mtime changes, and a 200-entry directory changed in every generation (DIRDELTA pages over
 * a base): every pair of generations gives the same bytes as the JavaScript merge
 * (BFS_DIFF_JS=1), text and --json, and fixed answers; a damaged piece is named as the
 * JavaScript merge names it. No FUSE.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bfs, sh, tmpdir } from './helpers.js'
import { Repo2 } from '../src/repo/v2/repo2.js'
import { PieceReader } from '../src/pieces/reader.js'
import { PieceKind } from '../src/format/v2/common.js'

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
  work = tmpdir('bfs-diff-c-')
  src = path.join(work, 'src')
  repo = path.join(work, 'repo')
  fs.mkdirSync(src)
  expect((await bfs(['init', '--format', '2'], { repo })).code).toBe(0)
  await run(
    [
      'mkdir -p big a/b/c d/e',
      'for i in $(seq -w 0 199); do echo "$i" > big/f$i; done',
      'echo one > a/one && echo two > a/b/two && echo three > a/b/c/three && echo x > d/e/x && echo file > d/later',
      "printf 'raw\\xff\\xfe\\0caf\\xc3\\xa9\\0' | xargs -0 -I{} sh -c 'echo v > \"$1\"' _ {} && mv raw* caf* a/",
      'echo linked > a/h1 && ln a/h1 a/h2',
      "touch -d '2020-01-01 00:00:00' big/f* a/one",
    ].join(' && '),
  )
  await backup() // gen1
  await run(
    [
      'mv a/one a/uno && mv a/b/two d/two', // renames
      'echo changed >> big/f100 && rm big/f199 && echo new > big/n0', // a DIRDELTA
      'ln a/h1 d/h3', // a link added: every name's link count changes
      "printf 'x\\x80y\\0' | xargs -0 -I{} sh -c 'echo w > \"$1\"' _ {} && mv x*y d/e/",
      'chmod 600 a/b/c/three',
    ].join(' && '),
  )
  await backup() // gen2
  await run(
    [
      'rm -r a/b', // a subtree removed
      'rm d/later && mkdir d/later && echo in > d/later/f', // a file becomes a directory
      'rm a/h2', // a link removed
      "echo changed >> big/f101 && touch -d '2021-01-01 00:00:00' big/f000",
      "echo more >> a/raw*",
    ].join(' && '),
  )
  await backup() // gen3
  await backup() // gen4: no change
}, 600_000)
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

/** diff with the compare in C and with the JavaScript merge: the same stdout, stderr and exit code. */
async function both(args: string[], r = repo): Promise<{ stdout: string; stderr: string; code: number }> {
  const n = await bfs(['diff', ...args], { repo: r })
  const j = await bfs(['diff', ...args], { repo: r, env: { BFS_DIFF_JS: '1' } })
  expect(n.stdout, args.join(' ')).toBe(j.stdout)
  expect(n.stderr, args.join(' ')).toBe(j.stderr)
  expect(n.code, args.join(' ')).toBe(j.code)
  return n
}

describe('bfs diff: directories compared in C', () => {
  it('every pair of generations, text and --json: the JavaScript merge\'s bytes', async () => {
    for (let x = 1; x <= 4; x++) {
      for (let y = 1; y <= 4; y++) {
        if (x === y) continue
        const t = await both([String(x), String(y)])
        expect(t.code).toBe(0)
        await both(['--json', String(x), String(y)])
      }
    }
    await both(['1', '3', 'd'])
    await both(['1', '3', 'big'])
  })

  it('the changes of each generation (renames, links, non-UTF-8 names, a DIRDELTA, a removed subtree, a file that became a directory)', async () => {
    const lines = (s: string): string[] => s.split('\n').filter((l) => /^[-+M] /.test(l))
    // a line is `X    PATH` and, for files, `  (N B)` or `  (what changed)`
    const has = (ls: string[], l: string): boolean => ls.some((x) => x === l || x.startsWith(l + '  '))
    const g2 = lines((await both(['1', '2'])).stdout)
    for (const l of ['-    /a/one', '+    /a/uno', '-    /a/b/two', '+    /d/two', '+    /d/h3', '+    /big/n0', '-    /big/f199', '+    /d/e/x\ufffdy', 'M    /big/f100', 'M    /a/b/c/three'])
      expect(has(g2, l), `${l} in ${g2.join('\n')}`).toBe(true)
    expect(g2.some((l) => l.includes('/big/f101'))).toBe(false)
    const g3 = lines((await both(['2', '3'])).stdout)
    for (const l of ['-    /a/b/', '-    /a/b/c/', '-    /a/b/c/three', '-    /a/h2', '+    /d/later/f', 'M    /d/later/', 'M    /big/f000', 'M    /big/f101'])
      expect(has(g3, l), `${l} in ${g3.join('\n')}`).toBe(true)
    expect(g3.some((l) => l.startsWith('M    /a/raw'))).toBe(true)
    expect(lines((await both(['3', '4'])).stdout)).toEqual([])
  })

  it('a damaged directory piece: named as the JavaScript merge names it', async () => {
    const dmg = path.join(work, 'damaged')
    fs.cpSync(repo, dmg, { recursive: true })
    const r2 = Repo2.open(dmg)
    const pieces = new PieceReader(r2.store)
    const root = await pieces.piece(r2.manifest(2).rootEntry.dir!.child)
    const big = (root.kind === PieceKind.Dir || root.kind === PieceKind.DirDelta ? root.entries : []).find((e) => e.name.toString() === 'big')!
    const ref = big.dir!.child
    const pack = path.join(dmg, 'gens', String(ref.run).padStart(8, '0'), `pack-${String(ref.pack).padStart(8, '0')}`)
    const fd = fs.openSync(pack, 'r+')
    const byte = Buffer.alloc(1)
    fs.readSync(fd, byte, 0, 1, ref.offset + Math.floor(ref.storedLen / 2))
    byte[0] ^= 0x5a
    fs.writeSync(fd, byte, 0, 1, ref.offset + Math.floor(ref.storedLen / 2))
    fs.closeSync(fd)
    const r = await both(['1', '2'], dmg)
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/gen2:\/big: /)
  })
})
