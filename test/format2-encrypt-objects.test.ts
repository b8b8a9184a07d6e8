/**
 * The object kinds of an encrypted format 2 repository that were sealed after the first
 * wiring (issue 18; native-notes/format.md §2.22.2): run history records, file groups, the
 * dedup index. Real `bfs` processes on real repositories (behind the test switch
 * NODE_ENV=test BFS_TEST_ENCRYPTION=1): each kind round-trips sealed, the repository's bytes
 * hold nothing of it in the clear, a flipped byte or a sealed object moved to another name is
 * damage, and a plain repository still writes the plain objects it wrote before.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bfs, sh, tmpdir } from './helpers.js'

const ENC = { NODE_ENV: 'test', BFS_TEST_ENCRYPTION: '1', BFS_TEST_SCRYPT_N: '1024', BFS_PASSWORD: 'correct horse' }
const NAME = 'PLUGH-secret-name'

let work: string
let src: string

const run = (args: string[], repo: string, env: Record<string, string> = {}) => bfs(args, { repo, env: { ...ENC, ...env } })
const ok = async (args: string[], repo: string, env: Record<string, string> = {}): Promise<string> => {
  const r = await run(args, repo, env)
  expect(r.code, `bfs ${args.join(' ')}: ${r.stderr}`).toBe(0)
  return r.stdout
}

/** Flips one bit of the byte at `offset`. */
function flip(file: string, offset: number): void {
  const b = fs.readFileSync(file)
  b[offset] = b[offset]! ^ 0x10
  fs.writeFileSync(file, b)
}

/** An envelope's flags (header bytes 10–11, §2.6). */
const flagsOf = (file: string): number => fs.readFileSync(file).readUInt16LE(10)

/** Whether `needle` occurs in any file under `dir` (grep -r: exit 0 found, 1 not). */
async function inRepo(dir: string, needle: string): Promise<boolean> {
  const g = await sh(`grep -rl -F -e '${needle}' '${dir}'`)
  expect(g.code === 0 || g.code === 1, g.stderr).toBe(true)
  return g.code === 0
}

beforeAll(() => {
  work = tmpdir('bfs-v2enc-obj-')
  src = path.join(work, `src-${NAME}`)
  fs.mkdirSync(path.join(src, 'sub'), { recursive: true })
  fs.writeFileSync(path.join(src, 'a.txt'), 'some content\n'.repeat(100))
  fs.writeFileSync(path.join(src, 'sub', 'b.txt'), 'other content\n'.repeat(100))
})
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

describe('run history, sealed (§2.8.6)', () => {
  let repo: string
  const records = (r: string): string[] => fs.readdirSync(path.join(r, 'history')).sort().map((f) => path.join(r, 'history', f))

  beforeAll(async () => {
    repo = path.join(work, 'repo-history')
    await ok(['init', '--encrypt'], repo)
    await ok(['backup', src, '--label', `label-${NAME}`], repo)
    await ok(['verify', 'latest'], repo)
  })

  it('backup and verify are recorded, sealed, and bfs history reads them back', async () => {
    const files = records(repo)
    expect(files).toHaveLength(2)
    for (const f of files) expect(flagsOf(f) & 2).toBe(2) // bit1: encrypted
    const rows = JSON.parse(await ok(['history', '--json'], repo)) as Array<{ command: string; result: string; argv: string[]; sources: string[]; generations: number[] }>
    expect(rows.map((r) => [r.command, r.result])).toEqual([['backup', 'ok'], ['verify', 'ok']])
    expect(rows[0]!.argv).toEqual(['backup', src, '--label', `label-${NAME}`])
    expect(rows[0]!.sources).toEqual([src])
    expect(rows[1]!.generations).toEqual([1])
    expect(await ok(['history'], repo)).toMatch(/backup\s+ok/)
  })

  it("the repository's bytes hold no command line, source path or record field (the guard lock, plaintext for format 1 binaries, is not a record)", async () => {
    // the check can fail: the same records in a plain repository are found by the same grep
    const plain = path.join(work, 'repo-history-plain')
    expect((await bfs(['init'], { repo: plain })).code).toBe(0)
    expect((await bfs(['backup', src], { repo: plain })).code).toBe(0)
    expect(await inRepo(path.join(plain, 'history'), NAME)).toBe(true)
    for (const needle of [NAME, src, '"argv"', '"firstWarnings"', '"warnings"']) expect(await inRepo(repo, needle), needle).toBe(false)
  })

  it('a plain repository still writes plain records (flags 0, JSON in the clear)', async () => {
    const plain = path.join(work, 'repo-history-plain')
    for (const f of records(plain)) {
      expect(flagsOf(f)).toBe(0)
      expect(JSON.parse(fs.readFileSync(f).subarray(64).toString()).argv).toEqual(['backup', src])
    }
  })

  it('a run that cannot unlock the repository (wrong passphrase, exit 7) leaves no record', async () => {
    const before = records(repo)
    const w = await run(['backup', src], repo, { BFS_PASSWORD: 'wrong' })
    expect(w.code).toBe(7)
    expect(records(repo)).toEqual(before)
  })

  it('a flipped byte, or a record moved to another name, is damage: one warning, the record skipped', async () => {
    const r = path.join(work, 'repo-history-flip')
    fs.cpSync(repo, r, { recursive: true })
    // (names sort by start to the second only: which is which, from the history itself)
    const ids = (JSON.parse(await ok(['history', '--json'], r)) as Array<{ id: string }>).map((x) => path.join(r, 'history', x.id))
    const [first, second] = ids
    flip(first!, 80)
    const h = await run(['history', '--json'], r)
    // §2.8.6: a record that does not read is skipped with a warning (exit 0: history never fails a run)
    expect(h.code, h.stderr).toBe(0)
    expect(h.stderr.trim().split('\n')).toHaveLength(1)
    expect(h.stderr).toMatch(/authentication failed .*skipped/)
    expect(h.stderr).not.toMatch(/\n\s+at /)
    expect((JSON.parse(h.stdout) as Array<{ command: string }>).map((x) => x.command)).toEqual(['verify'])
    // the verify record copied over the backup's name: its logical name is in its AAD
    fs.copyFileSync(second!, first!)
    const m = await run(['history', '--json'], r)
    expect(m.code).toBe(0)
    expect(m.stderr).toMatch(new RegExp(`${path.basename(first!)}: authentication failed`))
    expect((JSON.parse(m.stdout) as unknown[]).length).toBe(1)
  })
})

describe('file groups, sealed (§2.14.2)', () => {
  let repo: string
  const GROUP = 'grp-plain-name'
  const INCLUDE = `docs-${NAME}/**`
  const EXCLUDE = '*.XYZZY-secret-exclude'
  const groupFile = (r: string): string => path.join(r, 'groups', GROUP)

  beforeAll(async () => {
    repo = path.join(work, 'repo-groups')
    await ok(['init', '--encrypt'], repo)
    fs.mkdirSync(path.join(src, `docs-${NAME}`), { recursive: true })
    fs.writeFileSync(path.join(src, `docs-${NAME}`, 'in.txt'), 'in the group\n')
    fs.writeFileSync(path.join(src, `docs-${NAME}`, 'out.XYZZY-secret-exclude'), 'excluded\n')
    await ok(['group', 'add', GROUP, '--include', INCLUDE, '--exclude', EXCLUDE], repo)
    // a second group, in a copy (the damage tests move its file)
    fs.cpSync(repo, path.join(work, 'repo-groups-other'), { recursive: true })
    await ok(['group', 'add', 'other', '--include', 'sub/**'], path.join(work, 'repo-groups-other'))
  })

  it('group add, ls, show and backup --group work; the generation holds the group only', async () => {
    expect(flagsOf(groupFile(repo)) & 2).toBe(2)
    const ls = JSON.parse(await ok(['group', 'ls', '--json'], repo)) as Array<{ name: string; includes: string[]; excludes: string[] }>
    expect(ls).toEqual([expect.objectContaining({ name: GROUP, includes: [INCLUDE], excludes: [EXCLUDE] })])
    await ok(['backup', '--group', GROUP, src], repo)
    const show = await ok(['group', 'show', GROUP], repo)
    expect(show).toContain(`include ${INCLUDE}`)
    expect(show).toMatch(/gen1 /)
    const top = await ok(['ls', 'latest'], repo)
    expect(top).toContain(`docs-${NAME}`)
    expect(top).not.toContain('a.txt')
    const inside = await ok(['ls', `latest:docs-${NAME}`], repo)
    expect(inside).toContain('in.txt')
    expect(inside).not.toContain('out.XYZZY')
    const v = await run(['verify', '--all'], repo)
    expect(v.code, v.stdout + v.stderr).toBe(0)
  })

  it("the repository's bytes hold no pattern (the same grep finds them in a plain repository)", async () => {
    const plain = path.join(work, 'repo-groups-plain')
    expect((await bfs(['init'], { repo: plain })).code).toBe(0)
    expect((await bfs(['group', 'add', GROUP, '--include', INCLUDE, '--exclude', EXCLUDE], { repo: plain })).code).toBe(0)
    expect(await inRepo(plain, INCLUDE)).toBe(true)
    // a plain repository still writes format 1's BFSGRUP (version 1, JSON in the clear)
    expect(fs.readFileSync(groupFile(plain)).readUInt16LE(8)).toBe(1)
    for (const needle of [INCLUDE, EXCLUDE, NAME, '"includes"']) expect(await inRepo(repo, needle), needle).toBe(false)
  })

  it('a flipped byte, a group copied over another name, or a plain group file is damage: exit 6, one line', async () => {
    const r = path.join(work, 'repo-groups-flip')
    const damaged = async (how: (file: string) => void): Promise<void> => {
      fs.rmSync(r, { recursive: true, force: true })
      fs.cpSync(repo, r, { recursive: true })
      how(groupFile(r))
      for (const args of [['group', 'show', GROUP], ['backup', '--group', GROUP, src]]) {
        const res = await run(args, r)
        expect(res.code, `${args.join(' ')}: ${res.stderr}`).toBe(6)
        expect(res.stderr.trim().split('\n')).toHaveLength(1)
        expect(res.stderr).not.toMatch(/\n\s+at /)
      }
      // ls names it and goes on; verify --all counts it
      const ls = await run(['group', 'ls'], r)
      expect(ls.stderr).toMatch(/damaged group file/)
      expect((await run(['verify', '--all'], r)).code).toBe(4)
    }
    await damaged((f) => flip(f, 90))
    // another group's sealed file under this group's name: refused by its AAD (the logical name)
    await damaged((f) => fs.copyFileSync(path.join(work, 'repo-groups-other', 'groups', 'other'), f))
    await damaged((f) => fs.copyFileSync(groupFile(path.join(work, 'repo-groups-plain')), f))
  })
})
