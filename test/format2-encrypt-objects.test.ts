/**
 * The object kinds of an encrypted format 2 repository that were sealed after the first
 * wiring (issue 18; native-notes/format.md §2.22.2): run history records, file groups, the
 * dedup index (its digests keyed with kContent). Real `bfs` processes on real repositories (behind the test switch
 * NODE_ENV=test: a cheap scrypt): each kind round-trips sealed, the repository's bytes
 * hold nothing of it in the clear, a flipped byte or a sealed object moved to another name is
 * damage, and a plain repository still writes the plain objects it wrote before.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bfs, sh, tmpdir } from './helpers.js'
import { blake3Into } from '../src/native/index.js'
import { Repo2 } from '../src/repo/v2/repo2.js'
import { NONCE_TAG, open } from '../src/crypto/aead.js'
import { aad } from '../src/crypto/aad.js'
import { objectKey } from '../src/crypto/keys.js'
import { dedupKeysOf, readDedupObject } from '../src/repo/v2/dedup.js'
import { encodeEnvelope2 } from '../src/format/v2/envelope.js'

const ENC = { NODE_ENV: 'test', BFS_TEST_SCRYPT_N: '1024', BFS_PASSWORD: 'correct horse' }
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

  it('with keys/ gone (damage, or someone with the storage), a run writes no plaintext record: the config says encrypted', async () => {
    const r = path.join(work, 'repo-history-nokeys')
    await ok(['init', '--encrypt'], r)
    await ok(['backup', src], r)
    const before = records(r)
    fs.renameSync(path.join(r, 'keys'), path.join(work, 'keys-moved'))
    try {
      const b = await run(['backup', src], r)
      expect(b.code, b.stderr).not.toBe(0)
      expect(records(r)).toEqual(before)
      expect(await inRepo(path.join(r, 'history'), NAME)).toBe(false)
    } finally {
      fs.renameSync(path.join(work, 'keys-moved'), path.join(r, 'keys'))
    }
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
  const GROUP = 'grp-QUUX-secret-group'
  const INCLUDE = `docs-${NAME}/**`
  const EXCLUDE = '*.XYZZY-secret-exclude'
  /** The group files of a repository (full paths, sorted). */
  const groupFiles = (r: string): string[] => fs.readdirSync(path.join(r, 'groups')).sort().map((f) => path.join(r, 'groups', f))
  /** An encrypted repository's only group file (a plain one's is groups/NAME). */
  const groupFile = (r: string): string => {
    const files = groupFiles(r)
    expect(files).toHaveLength(1)
    return files[0]!
  }
  /** Every object name (path under the repository) and whether `needle` is in one. */
  const inNames = (r: string, needle: string): boolean => (fs.readdirSync(r, { recursive: true }) as string[]).some((p) => p.includes(needle))

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

  it('group add, ls, show, backup --group and generations --group work; the generation holds the group only', async () => {
    // the group file is named by the keyed id of its name (32 hex digits), sealed
    expect(path.basename(groupFile(repo))).toMatch(/^[0-9a-f]{32}$/)
    expect(flagsOf(groupFile(repo)) & 2).toBe(2)
    const ls = JSON.parse(await ok(['group', 'ls', '--json'], repo)) as Array<{ name: string; includes: string[]; excludes: string[] }>
    expect(ls).toEqual([expect.objectContaining({ name: GROUP, includes: [INCLUDE], excludes: [EXCLUDE] })])
    await ok(['backup', '--group', GROUP, src], repo)
    await ok(['backup', src], repo)
    const show = await ok(['group', 'show', GROUP], repo)
    expect(show).toContain(`include ${INCLUDE}`)
    expect(show).toMatch(/gen1 /)
    expect(show).not.toMatch(/gen2 /)
    const gens = JSON.parse(await ok(['generations', '--group', GROUP, '--json'], repo)) as Array<{ id: number }>
    expect(gens.map((g) => g.id)).toEqual([1])
    expect((await run(['generations', '--group', 'no-such-group'], repo)).code).not.toBe(0)
    const top = await ok(['ls', 'gen1'], repo)
    expect(top).toContain(`docs-${NAME}`)
    expect(top).not.toContain('a.txt')
    const inside = await ok(['ls', `gen1:docs-${NAME}`], repo)
    expect(inside).toContain('in.txt')
    expect(inside).not.toContain('out.XYZZY')
    const v = await run(['verify', '--all'], repo)
    expect(v.code, v.stdout + v.stderr).toBe(0)
    // adding to the group rewrites the same object; the other repository lists both groups by name
    await ok(['group', 'add', GROUP, '--include', 'extra/**'], repo)
    expect(JSON.parse(await ok(['group', 'ls', '--json'], repo))[0].includes).toEqual([INCLUDE, 'extra/**'])
    expect(groupFiles(repo)).toHaveLength(1)
    const other = path.join(work, 'repo-groups-other')
    expect((JSON.parse(await ok(['group', 'ls', '--json'], other)) as Array<{ name: string }>).map((g) => g.name)).toEqual([GROUP, 'other'])
    expect(groupFiles(other)).toHaveLength(2)
  })

  it("the repository's names and bytes hold no group name or pattern (the same checks find them in a plain repository)", async () => {
    const plain = path.join(work, 'repo-groups-plain')
    expect((await bfs(['init'], { repo: plain })).code).toBe(0)
    expect((await bfs(['group', 'add', GROUP, '--include', INCLUDE, '--exclude', EXCLUDE], { repo: plain })).code).toBe(0)
    expect((await bfs(['backup', '--group', GROUP, src], { repo: plain })).code).toBe(0)
    expect(await inRepo(plain, INCLUDE)).toBe(true)
    expect(await inRepo(plain, GROUP)).toBe(true)
    expect(inNames(plain, GROUP)).toBe(true)
    // a plain repository still writes format 1's BFSGRUP under the group's name (version 1, JSON in the clear)
    expect(fs.readFileSync(path.join(plain, 'groups', GROUP)).readUInt16LE(8)).toBe(1)
    for (const r of [repo, path.join(work, 'repo-groups-other')]) {
      for (const needle of [GROUP, 'other', 'QUUX']) expect(inNames(r, needle), `${r}: ${needle}`).toBe(false)
      for (const needle of [GROUP, INCLUDE, EXCLUDE, NAME, '"includes"', 'QUUX']) expect(await inRepo(r, needle), `${r}: ${needle}`).toBe(false)
    }
  })

  it('the id is a keyed function of the name: another repository gives the same name another id', async () => {
    const r2 = path.join(work, 'repo-groups-second')
    await ok(['init', '--encrypt'], r2)
    await ok(['group', 'add', GROUP, '--include', INCLUDE], r2)
    expect(path.basename(groupFile(r2))).toMatch(/^[0-9a-f]{32}$/)
    expect(path.basename(groupFile(r2))).not.toBe(path.basename(groupFile(repo)))
  })

  it('a flipped byte, a group copied over another group\'s id, a name that is not the id\'s, or a plain group file is damage: exit 6, one line', async () => {
    const r = path.join(work, 'repo-groups-flip')
    const mine = path.basename(groupFile(repo))
    const damaged = async (how: (file: string) => void | Promise<void>, msg: RegExp): Promise<void> => {
      fs.rmSync(r, { recursive: true, force: true })
      fs.cpSync(repo, r, { recursive: true })
      await how(path.join(r, 'groups', mine))
      for (const args of [['group', 'show', GROUP], ['backup', '--group', GROUP, src], ['group', 'rm', GROUP]]) {
        const res = await run(args, r)
        expect(res.code, `${args.join(' ')}: ${res.stderr}`).toBe(6)
        expect(res.stderr.trim().split('\n')).toHaveLength(1)
        expect(res.stderr).toMatch(msg)
        expect(res.stderr).not.toMatch(/\n\s+at /)
      }
      // ls names it and goes on; verify --all counts it
      const ls = await run(['group', 'ls'], r)
      expect(ls.stderr).toMatch(/damaged group file/)
      expect((await run(['verify', '--all'], r)).code).toBe(4)
    }
    await damaged((f) => flip(f, 90), /authentication failed/)
    // another group's sealed file under this group's id: refused by its AAD (group/<id>)
    const other = groupFiles(path.join(work, 'repo-groups-other')).find((f) => path.basename(f) !== mine)!
    await damaged((f) => fs.copyFileSync(other, f), /authentication failed/)
    // a file sealed under this id (as only a key holder can) that holds another group's name: the id is not that name's
    await damaged(async (f) => {
      const r2 = Repo2.open(r)
      await r2.unlock('correct horse')
      const key = `groups/${mine}`
      fs.writeFileSync(f, r2.seal('group', key, Buffer.from(JSON.stringify({ name: 'other', includes: ['x'], excludes: [], created: new Date().toISOString() }))))
    }, /whose id is not this object's name/)
    await damaged((f) => fs.copyFileSync(path.join(work, 'repo-groups-plain', 'groups', GROUP), f), /\S/)
  })
})

describe('the dedup index, sealed (§2.17)', () => {
  let repo: string
  let plain: string
  const big = Buffer.from(Array.from({ length: 2 << 20 }, (_, i) => (Math.imul(i, 2654435761) >>> 13) & 0xff))
  const small = Buffer.from(`small file of ${NAME}\n`.repeat(500))
  const dsrc = (): string => path.join(work, 'dsrc')
  const index = (r: string): string[] => fs.readdirSync(path.join(r, 'index')).sort().map((f) => path.join(r, 'index', f))
  const digest = (key: Buffer, b: Buffer): Buffer => {
    const out = Buffer.alloc(32)
    blake3Into(b, 0, b.length, key, out, 0, 32)
    return out
  }
  /** Whether `needle` occurs in the bytes of any file under `dir`. */
  const holds = (dir: string, needle: Buffer): boolean =>
    (fs.readdirSync(dir, { recursive: true, withFileTypes: true }) as fs.Dirent[]).some((e) => e.isFile() && fs.readFileSync(path.join(e.parentPath, e.name)).includes(needle))
  type Summary = { stats: { dedupHits: number; dedupIndexed: number; storedBytes: number } }
  const backup = async (r: string, s: string, env: Record<string, string> = {}): Promise<Summary> => JSON.parse(await ok(['backup', '--json', s], r, env)) as Summary

  beforeAll(async () => {
    fs.mkdirSync(path.join(dsrc(), 'a'), { recursive: true })
    fs.writeFileSync(path.join(dsrc(), 'a', 'big'), big)
    fs.writeFileSync(path.join(dsrc(), 'a', 'small'), small)
    repo = path.join(work, 'repo-dedup')
    await ok(['init', '--encrypt'], repo)
    plain = path.join(work, 'repo-dedup-plain')
    expect((await bfs(['init'], { repo: plain })).code).toBe(0)
    for (const r of [repo, plain]) {
      const g1 = await backup(r, dsrc())
      expect(g1.stats.dedupIndexed).toBe(2)
    }
    // copies under other names: the second backup finds them in the index
    fs.mkdirSync(path.join(dsrc(), 'b'))
    fs.copyFileSync(path.join(dsrc(), 'a', 'big'), path.join(dsrc(), 'b', 'big-copy'))
    fs.copyFileSync(path.join(dsrc(), 'a', 'small'), path.join(dsrc(), 'b', 'small-copy'))
  })

  it('an encrypted repository writes a sealed index and the next backup stores no copy', async () => {
    const [obj] = index(repo)
    expect(fs.readFileSync(obj!).readUInt16LE(10)).toBe(1) // flags bit0: encrypted
    const g2 = await backup(repo, dsrc())
    expect(g2.stats.dedupHits).toBe(2)
    expect(g2.stats.storedBytes).toBe(0)
    expect((await run(['cat', 'latest:b/big-copy'], repo)).out.equals(big)).toBe(true)
    expect((await run(['cat', 'latest:b/small-copy'], repo)).out.equals(small)).toBe(true)
    const v = await run(['verify', '--all'], repo)
    expect(v.code, v.stdout + v.stderr).toBe(0)
  })

  it('its digests are keyed with kContent and appear nowhere in the clear; a plain repository keeps the all-zero key, in the clear', async () => {
    // the plain index holds the unkeyed digests as they were (flags 0): the search below can find them
    expect(fs.readFileSync(index(plain)[0]!).readUInt16LE(10)).toBe(0)
    expect(holds(plain, digest(Buffer.alloc(32), big))).toBe(true)
    expect(holds(plain, digest(Buffer.alloc(32), small))).toBe(true)
    const r2 = Repo2.open(repo)
    await r2.unlock('correct horse')
    const entries = readDedupObject(r2, dedupKeysOf(r2, 1)[0]!)
    const keyed = [digest(r2.keys.kContent, big), digest(r2.keys.kContent, small)]
    expect(entries.map((e) => e.digest.toString('hex')).sort()).toEqual(keyed.map((d) => d.toString('hex')).sort())
    for (const d of [...keyed, digest(Buffer.alloc(32), big), digest(Buffer.alloc(32), small)]) expect(holds(repo, d)).toBe(false)
    // the layout §2.17 pins, opened here without the reader: page p at nonce (6, p) and position p, the directory at (7, 0) and position 0
    const b = fs.readFileSync(index(repo)[0]!)
    const k = objectKey(r2.keys, b.subarray(32, 64), 'dedup')
    const D = Number(b.readBigUInt64LE(b.length - 32))
    const dir = open(k, NONCE_TAG.dedupDirectory, 0, aad.dedup(1, 0, 0), b.subarray(D, b.length - 32), 'directory')
    const page0 = open(k, NONCE_TAG.dedupPage, 0, aad.dedup(1, 0, 0), b.subarray(64, D), 'page 0') // one page: 2 entries
    expect(page0.includes(keyed[0]!) && page0.includes(keyed[1]!)).toBe(true)
    expect(dir.readUInt32LE(dir.length - 8)).toBe(64) // the fence: the sealed page at 64, 16 bytes longer than its entries
    expect(dir.readUInt32LE(dir.length - 4)).toBe(page0.length + 16)
    for (const needle of [NAME, 'small-copy']) expect(await inRepo(repo, needle), needle).toBe(false)
  })

  it('init --encrypt makes dedupMinBytes 1024 (files under 1 KiB not indexed); --dedup-min-bytes 1 indexes them, under the MAC', async () => {
    const tiny = path.join(work, 'dsrc-tiny')
    const t = Buffer.from(`tiny ${NAME}\n`.repeat(30)).subarray(0, 500)
    fs.mkdirSync(tiny)
    for (const f of ['x', 'y']) fs.writeFileSync(path.join(tiny, f), t)
    const configOf = (r: string): { defaults: { dedupMinBytes: number }; mac: string | null } => JSON.parse(fs.readFileSync(path.join(r, 'config')).subarray(64).toString())
    for (const [args, min, hits] of [[[], 1024, 0], [['--dedup-min-bytes', '1'], 1, 1]] as const) {
      const r = path.join(work, `repo-dedup-min-${min}`)
      await ok(['init', '--encrypt', ...args], r)
      expect(configOf(r).defaults.dedupMinBytes).toBe(min)
      expect(configOf(r).mac).toEqual(expect.any(String))
      const g = await backup(r, tiny)
      expect(g.stats.dedupIndexed, `dedupMinBytes ${min}`).toBe(hits)
      expect(g.stats.dedupHits, `dedupMinBytes ${min}`).toBe(hits)
      expect((await run(['cat', 'latest:y'], r)).out.equals(t)).toBe(true)
    }
  })

  it('a flipped byte in a page is damage: verify exit 4, one FAIL line; a backup passes over it with one warning and stores the copy', async () => {
    const r = path.join(work, 'repo-dedup-flip')
    fs.cpSync(repo, r, { recursive: true })
    const obj = index(r).find((f) => f.endsWith('dedup-00000001-0000'))!
    flip(obj, 70) // in page 0
    const v = await run(['verify', '1'], r)
    expect(v.code).toBe(4)
    expect(v.stdout.split('\n').filter((l) => l.startsWith('FAIL'))).toEqual([expect.stringMatching(/dedup-00000001-0000 page 0: authentication failed/)])
    fs.mkdirSync(path.join(work, 'dsrc3'))
    fs.copyFileSync(path.join(dsrc(), 'a', 'big'), path.join(work, 'dsrc3', 'again'))
    const b = await run(['backup', '--json', path.join(work, 'dsrc3')], r)
    expect(b.code, b.stderr).toBe(0)
    expect(b.stderr.trim().split('\n')).toHaveLength(1)
    expect(b.stderr).toMatch(/dedup index: .*authentication failed/)
    expect((JSON.parse(b.stdout) as Summary).stats.dedupHits).toBe(0)
    expect((await run(['cat', 'latest:again', '--source', path.join(work, 'dsrc3')], r)).out.equals(big)).toBe(true)
    // a plain object where a sealed one belongs is refused too
    fs.copyFileSync(index(plain)[0]!, obj)
    const p = await run(['verify', '1'], r)
    expect(p.code).toBe(4)
    expect(p.stdout).toMatch(/not encrypted, in an encrypted repository/)
  })
})

describe('init --encrypt --no-dedup (§2.7, §2.17): no content dedup, no index', () => {
  let repo: string
  const big = Buffer.from(Array.from({ length: 2 << 20 }, (_, i) => (Math.imul(i + 7, 2246822519) >>> 11) & 0xff))
  const small = Buffer.from(`a small file, no dedup, of ${NAME}\n`.repeat(400))
  const nsrc = (): string => path.join(work, 'nsrc')
  type Summary = { stats: { dedupHits: number; dedupIndexed: number; storedBytes: number } }
  const backup = async (r: string): Promise<Summary> => JSON.parse(await ok(['backup', '--json', nsrc()], r)) as Summary
  const configOf = (r: string, f = 'config'): { features: { incompat: string[]; rocompat: string[] }; mac: string | null } => JSON.parse(fs.readFileSync(path.join(r, f)).subarray(64).toString())
  const indexObjects = (r: string): string[] => (fs.existsSync(path.join(r, 'index')) ? fs.readdirSync(path.join(r, 'index')) : [])

  beforeAll(async () => {
    fs.mkdirSync(path.join(nsrc(), 'a'), { recursive: true })
    fs.writeFileSync(path.join(nsrc(), 'a', 'big'), big)
    fs.writeFileSync(path.join(nsrc(), 'a', 'small'), small)
    repo = path.join(work, 'repo-nodedup')
    expect(await ok(['init', '--encrypt', '--no-dedup'], repo)).toMatch(/encrypted: aes-256-gcm, no dedup/)
  })

  it('without --encrypt it is a usage error (exit 2, one line) and makes nothing', async () => {
    for (const args of [['init', '--no-dedup'], ['init', '--no-dedup', '--format', '1']]) {
      const r = path.join(work, 'repo-nodedup-plain')
      const res = await bfs(args, { repo: r })
      expect(res.code, res.stderr).toBe(2)
      expect(res.stderr.trim().split('\n')).toHaveLength(1)
      expect(res.stderr).toMatch(/--no-dedup needs --encrypt/)
      expect(fs.existsSync(path.join(r, 'config'))).toBe(false)
    }
  })

  it('the config records the rocompat feature no-dedup, under its MAC; a plain --encrypt repository has no such feature', async () => {
    expect(configOf(repo).features.rocompat).toEqual(['no-dedup'])
    expect(configOf(repo, 'config-copy').features.rocompat).toEqual(['no-dedup'])
    expect(configOf(repo).mac).toEqual(expect.any(String))
    const withIndex = path.join(work, 'repo-nodedup-not')
    await ok(['init', '--encrypt'], withIndex)
    expect(configOf(withIndex).features.rocompat).toEqual([])
  })

  it('backups take no digest and write no index: copies under other names are stored again; block-incremental and restore work', async () => {
    const g1 = await backup(repo)
    expect(g1.stats.dedupIndexed).toBe(0)
    expect(g1.stats.dedupHits).toBe(0)
    expect(indexObjects(repo)).toEqual([])
    // the same copies that a repository with the index stores nothing for (§2.17's test above: storedBytes 0)
    fs.mkdirSync(path.join(nsrc(), 'b'))
    fs.copyFileSync(path.join(nsrc(), 'a', 'big'), path.join(nsrc(), 'b', 'big-copy'))
    fs.copyFileSync(path.join(nsrc(), 'a', 'small'), path.join(nsrc(), 'b', 'small-copy'))
    const g2 = await backup(repo)
    expect(g2.stats.dedupHits).toBe(0)
    expect(g2.stats.dedupIndexed).toBe(0)
    expect(g2.stats.storedBytes).toBeGreaterThan(g1.stats.storedBytes / 2)
    expect(indexObjects(repo)).toEqual([])
    // a changed block of a file is still stored alone (the parent's block hashes, same path: not content dedup)
    const fd = fs.openSync(path.join(nsrc(), 'a', 'big'), 'r+')
    fs.writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, 1 << 20)
    fs.closeSync(fd)
    const g3 = await backup(repo)
    expect(g3.stats.storedBytes).toBeGreaterThan(0)
    expect(g3.stats.storedBytes).toBeLessThan(big.length / 8)
    expect(indexObjects(repo)).toEqual([])
    const out = path.join(work, 'nodedup-out')
    await ok(['restore', 'latest', out], repo)
    const r = await sh(`diff -r '${nsrc()}' '${out}'`)
    expect(r.code, r.stdout + r.stderr).toBe(0)
    const v = await run(['verify', '--all'], repo)
    expect(v.code, v.stdout + v.stderr).toBe(0)
  })

  it('someone who holds the storage cannot turn dedup back on: a config without no-dedup fails its MAC (exit 6)', async () => {
    const r = path.join(work, 'repo-nodedup-tamper')
    fs.cpSync(repo, r, { recursive: true })
    for (const f of ['config', 'config-copy']) {
      const json = JSON.parse(fs.readFileSync(path.join(r, f)).subarray(64).toString()) as { features: { rocompat: string[] } }
      json.features.rocompat = []
      const payload = Buffer.from(JSON.stringify(json))
      fs.writeFileSync(path.join(r, f), encodeEnvelope2('config', 0, payload.length, payload))
    }
    const b = await run(['backup', nsrc()], r)
    expect(b.code, b.stderr).toBe(6)
    expect(b.stderr).toMatch(/mac does not check/)
    expect(indexObjects(r)).toEqual([])
  })
})
