/**
 * bfs diff GEN_A GEN_B [PATH] (issue 17): two real backups of a real tree with every kind of
 * change between them; the exact lines, --json, PATH, identical generations, errors.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bfs, sh, tmpdir } from './helpers.js'

const IS_ROOT = process.getuid?.() === 0
const FORMAT = process.env.BFS_DIFF_TEST_FORMAT ?? '1'
let work: string
let src: string
let repo: string

async function backup(): Promise<void> {
  const b = await bfs(['backup', src], { repo })
  expect(b.stderr).toBe('')
  expect(b.code).toBe(0)
}
async function run(cmd: string): Promise<void> {
  const r = await sh(cmd, { cwd: src })
  expect(r.stderr).toBe('')
  expect(r.code).toBe(0)
}

beforeAll(async () => {
  work = tmpdir('bfs-diff-')
  src = path.join(work, 'src')
  repo = path.join(work, 'repo')
  const init = await bfs(['init', '--format', FORMAT], { repo })
  expect(init.code).toBe(0)
  fs.mkdirSync(path.join(src, 'sub/deep'), { recursive: true })
  fs.mkdirSync(path.join(src, 'gone'))
  fs.writeFileSync(path.join(src, 'same.txt'), 'never changes\n')
  fs.writeFileSync(path.join(src, 'grow.txt'), 'short\n')
  fs.writeFileSync(path.join(src, 'samesize.txt'), 'AAAAAAAAAAAAAAAA\n')
  fs.writeFileSync(path.join(src, 'perm.txt'), 'perm\n')
  fs.writeFileSync(path.join(src, 'own.txt'), 'own\n')
  fs.writeFileSync(path.join(src, 'touched.txt'), 'touched\n')
  fs.writeFileSync(path.join(src, 'attr.txt'), 'attr\n')
  fs.writeFileSync(path.join(src, 'becomes-dir'), 'a file first\n')
  fs.writeFileSync(path.join(src, 'removed.txt'), 'removed later\n')
  fs.writeFileSync(path.join(src, 'gone/inside.txt'), '12345\n')
  fs.writeFileSync(path.join(src, 'sub/deep/d.txt'), 'deep\n')
  fs.writeFileSync(path.join(src, 'sub/s.txt'), 'sub s\n')
  fs.symlinkSync('same.txt', path.join(src, 'link'))
  await run(`touch -d '2010-01-02 03:04:05' samesize.txt touched.txt`)
  await backup() // gen1
  await backup() // gen2: nothing changed
  await run(
    [
      'echo "and now it is longer" >> grow.txt',
      // same size, and the mtime put back: only the block map tells
      `printf 'BBBBBBBBBBBBBBBB\\n' > samesize.txt && touch -d '2010-01-02 03:04:05' samesize.txt`,
      'chmod 600 perm.txt',
      IS_ROOT ? 'chown 1234:2345 own.txt' : 'true',
      `touch -m -d '2011-01-01 00:00:00' touched.txt`,
      'setfattr -n user.k -v v attr.txt',
      'ln -sfn grow.txt link',
      'rm becomes-dir && mkdir becomes-dir && echo in > becomes-dir/in.txt',
      'rm removed.txt && rm -r gone',
      'ln same.txt hard',
      'echo new > sub/new.txt',
    ].join(' && '),
  )
  await backup() // gen3
}, 240_000)
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

const LINES = [
  'comparing gen1 to gen3:',
  '',
  'M    /becomes-dir/  (type, mode, mtime; 13 -> 0 B)',
  '+    /becomes-dir/in.txt  (3 B)',
  '-    /gone/',
  '-    /gone/inside.txt  (6 B)',
  'M    /grow.txt  (content, mtime; 6 -> 27 B)',
  '+    /hard  (14 B)',
  'M    /link  (mtime, target)',
  ...(IS_ROOT ? ['M    /own.txt  (owner)'] : []),
  'M    /perm.txt  (mode)',
  '-    /removed.txt  (14 B)',
  'M    /samesize.txt  (content; 17 B)',
  '+    /sub/new.txt  (4 B)',
  'M    /touched.txt  (mtime)',
  '',
]

describe(`bfs diff (format ${FORMAT})`, () => {
  it('lists every change with what changed, then the counts', async () => {
    const r = await bfs(['diff', '1', 'gen3'], { repo })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const lines = r.stdout.split('\n')
    // attr.txt: the xattr (and nothing else; its ctime is not compared)
    expect(lines.filter((l) => l.includes('attr.txt'))).toEqual(['M    /attr.txt  (xattrs)'])
    expect(lines.filter((l) => !l.includes('attr.txt')).slice(0, LINES.length)).toEqual(LINES)
    const changed = IS_ROOT ? 6 : 5
    expect(r.stdout.endsWith(
      `Files:       3 new,     2 removed,     ${changed} changed\n` +
        'Dirs:        0 new,     1 removed,     1 changed\n' +
        'Others:      0 new,     0 removed,     1 changed\n' +
        '  Added:   65 B\n' +
        '  Removed: 56 B\n',
    )).toBe(true)
  })

  it('--json: one change object per line, then the statistics', async () => {
    const r = await bfs(['diff', '--json', 'latest~2', 'latest'], { repo })
    expect(r.code).toBe(0)
    const objs = r.stdout.trim().split('\n').map((l) => JSON.parse(l))
    const same = objs.find((o) => o.path === '/samesize.txt')
    expect(same).toEqual({ message_type: 'change', path: '/samesize.txt', pathBase64: Buffer.from('/samesize.txt').toString('base64'), modifier: 'M', type: 'file', what: ['content'], sizeBefore: 17, sizeAfter: 17 })
    expect(objs.find((o) => o.path === '/gone')).toMatchObject({ modifier: '-', type: 'dir', what: [] })
    expect(objs.find((o) => o.path === '/becomes-dir')).toMatchObject({ modifier: 'M', type: 'dir', what: ['type', 'mode', 'mtime'] })
    const stats = objs.at(-1)
    expect(stats).toEqual({
      message_type: 'statistics', source_generation: 'gen1', target_generation: 'gen3',
      changed_files: IS_ROOT ? 6 : 5, changed_dirs: 1, changed_others: 1,
      added: { files: 3, dirs: 0, others: 0, bytes: 65 }, removed: { files: 2, dirs: 1, others: 0, bytes: 56 },
    })
    expect(objs.filter((o) => o.message_type === 'change')).toHaveLength(objs.length - 1)
  })

  it('PATH limits it to a subtree (a directory, a file, one only in one generation)', async () => {
    const sub = await bfs(['diff', '1', '3', 'sub'], { repo })
    expect(sub.code).toBe(0)
    expect(sub.stdout.split('\n').slice(0, 4)).toEqual(['comparing gen1 to gen3:', '', '+    /sub/new.txt  (4 B)', ''])
    const f = await bfs(['diff', '1', '3', '/samesize.txt'], { repo })
    expect(f.stdout.split('\n')[2]).toBe('M    /samesize.txt  (content; 17 B)')
    const g = await bfs(['diff', '1', '3', 'gone'], { repo })
    expect(g.stdout.split('\n').slice(2, 5)).toEqual(['-    /gone/', '-    /gone/inside.txt  (6 B)', ''])
    const u = await bfs(['diff', '1', '3', 'same.txt'], { repo })
    expect(u.stdout.split('\n').slice(2, 4)).toEqual(['', 'Files:       0 new,     0 removed,     0 changed'])
  })

  it('identical generations: no changes, exit 0', async () => {
    for (const [a, b] of [['1', '2'], ['3', '3']]) {
      const r = await bfs(['diff', a!, b!], { repo })
      expect(r.code).toBe(0)
      expect(r.stdout).toBe(
        `comparing gen${a} to gen${b}:\n\n\n` +
          'Files:       0 new,     0 removed,     0 changed\nDirs:        0 new,     0 removed,     0 changed\nOthers:      0 new,     0 removed,     0 changed\n  Added:   0 B\n  Removed: 0 B\n',
      )
    }
    const j = await bfs(['diff', '--json', '1', '2'], { repo })
    expect(j.stdout.trim().split('\n')).toHaveLength(1)
  })

  it('the reverse direction swaps + and -', async () => {
    const r = await bfs(['diff', '3', '1', 'gone'], { repo })
    expect(r.stdout.split('\n').slice(2, 4)).toEqual(['+    /gone/', '+    /gone/inside.txt  (6 B)'])
  })

  it('errors: one line and the exit code', async () => {
    const cases: Array<[string[], number, RegExp]> = [
      [['diff', '1', '9'], 1, /^bfs: no generation 9 in /],
      [['diff', 'foo', '1'], 2, /^bfs: 'foo' is not a generation/],
      [['diff', '1', '3', 'nope/x'], 1, /^bfs: nope\/x: no such file or directory in gen1 or gen3$/],
      [['diff', '1'], 2, /^bfs: missing required argument/],
      [['diff', '1', '2', 'a', 'b'], 2, /^bfs: too many arguments/],
    ]
    for (const [args, code, re] of cases) {
      const r = await bfs(args, { repo })
      expect(r.code, args.join(' ')).toBe(code)
      expect(r.stdout).toBe('')
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
      expect(r.stderr.trim()).toMatch(re)
    }
    const notRepo = await bfs(['diff', '1', '2'], { repo: path.join(work, 'src') })
    expect(notRepo.code).toBe(6)
  })
})

/**
 * Sparse files (format 1: a hole is a gap in the resolved map; format 2: a gap too, stream 0
 * only in BI overlays): zeros written into a hole are still a hole (no content change), data
 * written into it is a change though size and mtime stay, and a file re-read unchanged (ctime
 * moved) is no change. Each is re-read by the backup (its ctime moved), so the block maps
 * differ and the comparison goes down to the extents and the stored hashes.
 */
describe(`bfs diff of sparse files (format ${FORMAT})`, () => {
  let sw: string
  let ss: string
  let sr: string
  beforeAll(async () => {
    sw = tmpdir('bfs-diff-sparse-')
    ss = path.join(sw, 'src')
    sr = path.join(sw, 'repo')
    fs.mkdirSync(ss)
    expect((await bfs(['init', '--format', FORMAT], { repo: sr })).code).toBe(0)
    // block 0 data, blocks 1-2 a hole, block 3 data (16 KiB)
    const make = (n: string): string =>
      `truncate -s 16384 ${n} && printf head | dd of=${n} conv=notrunc status=none && printf tail | dd of=${n} bs=1 seek=12288 conv=notrunc status=none && touch -d '2010-01-02 03:04:05' ${n}`
    const prep = await sh(['zeroed', 'filled', 'same', 'moved'].map(make).join(' && '), { cwd: ss })
    expect(prep.stderr).toBe('')
    expect((await bfs(['backup', ss], { repo: sr })).code).toBe(0)
    const change = await sh(
      [
        // zeros into the hole: still all holes there
        'dd if=/dev/zero of=zeroed bs=4096 seek=1 count=2 conv=notrunc status=none',
        // data into the hole, same size
        'printf data | dd of=filled bs=4096 seek=1 conv=notrunc status=none',
        // the same bytes again: only the ctime moves
        'chmod 600 same && chmod 644 same',
        // the data block moved into the hole, the old place now zeros
        'printf tail | dd of=moved bs=4096 seek=2 conv=notrunc status=none && dd if=/dev/zero of=moved bs=4096 seek=3 count=1 conv=notrunc status=none',
        `touch -d '2010-01-02 03:04:05' zeroed filled same moved`,
      ].join(' && '),
      { cwd: ss },
    )
    expect(change.stderr).toBe('')
    expect((await bfs(['backup', ss], { repo: sr })).code).toBe(0)
  }, 240_000)
  afterAll(() => {
    fs.rmSync(sw, { recursive: true, force: true })
  })

  it('zeros into a hole and a re-read are no change; data into a hole or moved is', async () => {
    const r = await bfs(['diff', '1', '2'], { repo: sr })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout.split('\n').slice(0, 5)).toEqual([
      'comparing gen1 to gen2:',
      '',
      'M    /filled  (content; 16384 B)',
      'M    /moved  (content; 16384 B)',
      '',
    ])
  })
})
