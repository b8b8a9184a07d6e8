/**
 * The tape tier of an encrypted format 2 repository (issue 18; native-notes/format.md §2.18
 * "Encrypted repositories"), through real `bfs` processes behind the test switch
 * (NODE_ENV=test: a cheap scrypt) and a virtual tape library at clock scale 0:
 * `bfs tier add` seals the tier file and `bfs migrate` the catalog records; nothing in the
 * repository or the library holds a file name or file content in the clear; cat, restore and
 * a FUSE mount (its own process) read the migrated generations back through the recall
 * service, which unlocks the repository itself (and, when it cannot, the reader says why at
 * once); a flipped byte in a tier file or a catalog
 * record, or a record moved to another number, is damage (one line, exit 6); an unencrypted
 * repository still writes format 1's plain envelopes.
 */
import { createHash, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { recallServicePaths } from '../src/os/runtime.js'
import { Repo2, tapeRepoOf } from '../src/repo/v2/repo2.js'
import { spawn } from 'node:child_process'
import { BFS, bfs, sh, tmpdir } from './helpers.js'
import { hashTree, killServices, unmountBfs } from './tape-helpers.js'

const ENC = { NODE_ENV: 'test', BFS_TEST_SCRYPT_N: '1024', BFS_PASSWORD: 'correct horse' }
const NAME = 'PLUGH-secret-name'
const CONTENT = 'XYZZY-secret-content'

let work: string
const services = new Set<string>()
const mounts = new Set<string>()

beforeAll(() => {
  work = tmpdir('bfs-v2enc-tape-')
})
afterAll(async () => {
  for (const m of [...mounts]) await unmountBfs(m)
  await killServices(services)
  for (let i = 0; ; i++) {
    try {
      fs.rmSync(work, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 })
      break
    } catch (err) {
      if (i >= 40 || (err as NodeJS.ErrnoException).code !== 'ENOTEMPTY') throw err
      await new Promise((r) => setTimeout(r, 500))
    }
  }
}, 60_000)

/** Flips one bit of the byte at `offset`. */
function flip(file: string, offset: number): void {
  const b = fs.readFileSync(file)
  b[offset] = b[offset]! ^ 0x10
  fs.writeFileSync(file, b)
}

/** Whether `needle` occurs in any file under `dir` (grep -r: exit 0 found, 1 not). */
async function inFiles(dir: string, needle: string): Promise<boolean> {
  const g = await sh(`grep -rl -F -e '${needle}' '${dir}'`)
  expect(g.code === 0 || g.code === 1, g.stderr).toBe(true)
  return g.code === 0
}

/** A tree whose names hold NAME and whose text files hold CONTENT (compressible), with random files, ~3 MB; `round` changes some. */
function tree(dir: string, round: number): void {
  for (let d = 0; d < 2; d++) {
    const sub = path.join(dir, `dir-${NAME}-${d}`)
    fs.mkdirSync(sub, { recursive: true })
    for (let f = 0; f < 4; f++) {
      if (round > 0 && (d + f + round) % 3 !== 0) continue
      fs.writeFileSync(path.join(sub, `file-${NAME}-${f}.txt`), `${CONTENT} ${round} ${d} ${f}\n`.repeat(8000))
      fs.writeFileSync(path.join(sub, `rand-${NAME}-${f}.bin`), randomBytes(150_000))
    }
  }
}

interface Setup {
  repo: string
  src: string
  vtl: string
  env: Record<string, string>
  expected: Map<number, Map<string, string>>
}

async function setup(name: string, encrypted = true): Promise<Setup> {
  const repo = path.join(work, name)
  const env: Record<string, string> = { ...(encrypted ? ENC : {}), BFS_RUNTIME_DIR: path.join(work, `${name}-run`), BFS_RECALL_IDLE_S: '3' }
  fs.mkdirSync(env.BFS_RUNTIME_DIR!, { recursive: true })
  services.add(recallServicePaths(repo, env).lock)
  const run = async (args: string[]): Promise<string> => {
    const r = await bfs(args, { repo, env })
    expect(r.code, `bfs ${args.join(' ')}: ${r.stderr}`).toBe(0)
    return r.stdout
  }
  await run(encrypted ? ['init', '--encrypt'] : ['init', '--format', '2'])
  const src = path.join(work, `${name}-src-${NAME}`)
  const expected = new Map<number, Map<string, string>>()
  for (let round = 0; round < 2; round++) {
    tree(src, round)
    await run(['backup', src, '--unit-blocks', '256', '--frame-blocks', '64'])
    expected.set(round + 1, hashTree(src))
  }
  const vtl = path.join(work, `${name}-vtl-${NAME}`)
  await run(['tier', 'add', 'tape1', '--vtl', vtl, '--clock-scale', '0', '--cartridges', '2'])
  return { repo, src, vtl, env, expected }
}

const recs = (repo: string): string[] => fs.readdirSync(path.join(repo, 'tape')).filter((n) => /^rec-\d{8}$/.test(n)).sort().map((n) => path.join(repo, 'tape', n))

async function restoreAll(s: Setup, label: string): Promise<void> {
  for (const [id, want] of s.expected) {
    const dest = path.join(work, `restore-${path.basename(s.repo)}-${id}`)
    fs.rmSync(dest, { recursive: true, force: true })
    const r = await bfs(['restore', `gen${id}`, dest], { repo: s.repo, env: s.env })
    expect(r.code, `${label} gen${id}: ${r.stderr}`).toBe(0)
    expect(hashTree(dest), `${label} gen${id}`).toEqual(want)
    fs.rmSync(dest, { recursive: true, force: true })
  }
}

describe('format 2, encrypted: tape tier (§2.18)', () => {
  let s: Setup

  beforeAll(async () => {
    s = await setup('enc')
  }, 300_000)

  it('tier add and migrate seal the tier file and every catalog record; no file name or content in the clear in the repository or the library', async () => {
    const tierFile = fs.readFileSync(path.join(s.repo, 'tiers', 'tape1'))
    expect(tierFile.subarray(0, 8).toString('latin1')).toBe('BFSTIER\0')
    expect(tierFile.readUInt16LE(8)).toBe(2) // envelope v2
    expect(tierFile.readUInt16LE(10) & 2).toBe(2) // bit1: encrypted
    const ls = await bfs(['tier', 'ls', '--json'], { repo: s.repo, env: s.env })
    expect(ls.code, ls.stderr).toBe(0)
    expect(JSON.parse(ls.stdout)).toMatchObject([{ name: 'tape1', kind: 'vtl', dir: s.vtl, cartridges: 2, clockScale: 0 }])
    const m = await bfs(['migrate', 'gen1-gen2', '--verify', '--file-size', '1M', '--json'], { repo: s.repo, env: s.env })
    expect(m.code, m.stderr).toBe(0)
    const res = JSON.parse(m.stdout)
    expect(res).toMatchObject({ tier: 'tape1', gens: [1, 2], failed: [] })
    expect(res.units).toBeGreaterThan(2)
    expect(res.removed).toBe(res.units)
    // units are gone from disk: on tape only
    for (const g of ['00000001', '00000002']) expect(fs.readdirSync(path.join(s.repo, 'gens', g)).filter((n) => n.startsWith('unit-'))).toEqual([])
    const rs = recs(s.repo)
    expect(rs.length).toBeGreaterThan(1) // one per tape file
    for (const f of rs) {
      const b = fs.readFileSync(f)
      expect(b.subarray(0, 8).toString('latin1')).toBe('BFSTCAT\0')
      expect(b.readUInt16LE(8)).toBe(2)
      expect(b.readUInt16LE(10)).toBe(2) // encrypted, not compressed
    }
    // the library's directory is in the tier file, sealed; names and contents appear nowhere
    for (const dir of [s.repo, s.vtl]) {
      expect(await inFiles(dir, NAME), dir).toBe(false)
      expect(await inFiles(dir, CONTENT), dir).toBe(false)
    }
    expect(await inFiles(path.join(s.repo, 'tiers'), s.vtl)).toBe(false)
    expect(await inFiles(path.join(s.repo, 'tape'), 'tape1')).toBe(false)
    expect(await inFiles(path.join(s.repo, 'tape'), 'BFS001L9')).toBe(false)
    // the tape files' header records are sealed: no unit key on tape (the units are the sealed files of the disk)
    expect(await inFiles(s.vtl, 'gens/0000')).toBe(false)
    // (the greps find both in a plain repository's tier file and tape: the last test)
  }, 300_000)

  it('cat, restore, verify and a FUSE mount (its own process) read the migrated generations back through the recall service', async () => {
    const want = s.expected.get(1)!.get(`dir-${NAME}-0/file-${NAME}-0.txt`)!
    const c = await bfs(['cat', `gen1:dir-${NAME}-0/file-${NAME}-0.txt`], { repo: s.repo, env: s.env })
    expect(c.code, c.stderr).toBe(0)
    expect(createHash('sha256').update(c.out).digest('hex')).toBe(want)
    await restoreAll(s, 'restore')
    const v = await bfs(['verify', '--all'], { repo: s.repo, env: s.env })
    expect(v.code, v.stdout + v.stderr).toBe(0)
    const mnt = path.join(work, 'mnt')
    fs.mkdirSync(mnt)
    const r = await bfs(['mount', 'gen2', mnt], { repo: s.repo, env: s.env })
    expect(r.code, r.stderr).toBe(0)
    mounts.add(mnt)
    expect(hashTree(mnt)).toEqual(s.expected.get(2))
    await unmountBfs(mnt)
    mounts.delete(mnt)
  }, 300_000)

  it('a flipped byte in a catalog record or the tier file, or a record under another number, is damage: one line, exit 6', async () => {
    const rs = recs(s.repo)
    const keep = rs.map((f) => fs.readFileSync(f))
    const ref = `gen1:dir-${NAME}-0/file-${NAME}-0.txt`
    const expectDamage = async (args: string[], what: RegExp): Promise<void> => {
      const r = await bfs(args, { repo: s.repo, env: s.env })
      expect(r.code, `bfs ${args.join(' ')}: ${r.stderr}`).toBe(6)
      expect(r.stderr).toMatch(what)
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
      expect(r.stderr).not.toMatch(/\n\s+at /)
    }
    const authFailed = (f: string): RegExp => new RegExp(`${f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: authentication failed`)
    // a byte of the sealed payload of the first record
    flip(rs[0]!, 64 + 5)
    for (const args of [['cat', ref], ['restore', 'gen1', path.join(work, 'never')], ['migrate', 'gen1'], ['verify', '--all'], ['prune', '--dry-run'], ['recall', 'gen1', '--dry-run']]) await expectDamage(args, authFailed(rs[0]!))
    expect(fs.existsSync(path.join(work, 'never'))).toBe(false)
    fs.writeFileSync(rs[0]!, keep[0]!)
    // a byte of the header (in the AAD): the flags' reserved neighbour, the raw length
    flip(rs[0]!, 16)
    await expectDamage(['cat', ref], /rec-00000001/)
    fs.writeFileSync(rs[0]!, keep[0]!)
    // two records swapped: each is sealed for its own number (logical name tapecat/N)
    fs.writeFileSync(rs[0]!, keep[1]!)
    fs.writeFileSync(rs[1]!, keep[0]!)
    await expectDamage(['cat', ref], authFailed(rs[0]!))
    fs.writeFileSync(rs[0]!, keep[0]!)
    fs.writeFileSync(rs[1]!, keep[1]!)
    // the tier file
    const tf = path.join(s.repo, 'tiers', 'tape1')
    const tierBytes = fs.readFileSync(tf)
    flip(tf, tierBytes.length - 3)
    await expectDamage(['tier', 'ls'], authFailed(tf))
    await expectDamage(['tier', 'status', 'tape1'], authFailed(tf))
    fs.writeFileSync(tf, tierBytes)
    // put back: everything reads again
    const c = await bfs(['cat', ref], { repo: s.repo, env: s.env })
    expect(c.code, c.stderr).toBe(0)
    expect(createHash('sha256').update(c.out).digest('hex')).toBe(s.expected.get(1)!.get(`dir-${NAME}-0/file-${NAME}-0.txt`))
  }, 300_000)

  it('a passphrase typed at the terminal reaches the recall service the reader starts (on its stdin): a restore of units on tape only', async () => {
    const t = await setup('tty')
    t.env.BFS_RECALL_IDLE_S = '600' // (killed in afterAll): its environment is looked at below
    const m = await bfs(['migrate', 'gen1-2', '--file-size', '1M'], { repo: t.repo, env: t.env })
    expect(m.code, m.stderr).toBe(0)
    expect(fs.existsSync(path.join(t.repo, 'cache'))).toBe(false) // nothing recalled yet: the restore must start the service
    const dest = path.join(work, 'tty-restore')
    const env: NodeJS.ProcessEnv = { ...process.env, ...t.env }
    delete env.BFS_PASSWORD
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn('script', ['-qec', `${BFS} --repo '${t.repo}' restore gen1 '${dest}'`, '/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'], env })
      let text = ''
      let asked = false
      child.stdout.on('data', (d: Buffer) => {
        text += d.toString()
        if (!asked && /passphrase for .*: $/.test(text)) {
          asked = true
          child.stdin.write('correct horse\r')
        }
      })
      child.on('error', reject)
      child.on('close', () => resolve(text))
    })
    expect(out).toMatch(/restored gen1/)
    expect(hashTree(dest)).toEqual(t.expected.get(1))
    const pid = Number(fs.readFileSync(recallServicePaths(t.repo, t.env).lock, 'utf8').trim())
    expect(pid).toBeGreaterThan(0)
    expect(fs.readFileSync(recallServicePaths(t.repo, t.env).log, 'utf8')).toMatch(/started/)
    // the service got it on its stdin: not in its environment or command line
    expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1')).toMatch(/tier\0serve/)
    expect(fs.readFileSync(`/proc/${pid}/environ`, 'latin1')).not.toContain('correct horse')
    expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1')).not.toContain('correct horse')
  }, 300_000)

  it('a recall service that cannot unlock the repository: the reader says why in its one line (not a start timeout)', async () => {
    const w = await setup('wrongpass')
    const m = await bfs(['migrate', 'gen1', '--file-size', '1M'], { repo: w.repo, env: w.env })
    expect(m.code, m.stderr).toBe(0)
    // the password file is a FIFO: the reader's read of it gets the passphrase, the service's
    // (it reads $BFS_PASSWORD_FILE itself) a wrong one, as when the file changed since a mount
    // began. The second is written once the reader has made the service's log (it has read
    // and closed the FIFO by then: a writer opening it while the reader still held it open
    // would add to the reader's passphrase)
    const fifo = path.join(work, 'wrongpass-fifo')
    const mk = await sh(`mkfifo '${fifo}'`)
    expect(mk.code, mk.stderr).toBe(0)
    const log = recallServicePaths(w.repo, w.env).log
    expect(fs.existsSync(log)).toBe(false)
    const feeder = spawn('bash', ['-c', `printf 'correct horse\\n' > '${fifo}'; while [ ! -e '${log}' ]; do sleep 0.05; done; printf 'not it\\n' > '${fifo}'`], { stdio: 'ignore' })
    try {
      const r = await bfs(['--password-file', fifo, 'cat', `gen1:dir-${NAME}-0/file-${NAME}-0.txt`], { repo: w.repo, env: { ...w.env, BFS_PASSWORD: '' } })
      expect(r.code).not.toBe(0)
      expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1)
      expect(r.stderr).toMatch(/the recall service could not start: wrong passphrase.*\(exit 7; its log: .*recall-[0-9a-f]+\.log\)/)
      expect(r.stderr).not.toMatch(/did not start within/)
      expect(r.out.length).toBe(0)
    } finally {
      feeder.kill()
    }
  }, 300_000)

  it('forget and prune with units on tape: the sealed catalog is read, the tape units and their streams stay, the rest reads back', async () => {
    const p = await setup('prune')
    const m = await bfs(['migrate', 'gen1', '--file-size', '1M'], { repo: p.repo, env: p.env })
    expect(m.code, m.stderr).toBe(0)
    const before = recs(p.repo).map((f) => fs.readFileSync(f))
    expect((await bfs(['forget', '1'], { repo: p.repo, env: p.env })).code).toBe(0)
    const pr = await bfs(['prune', '--grace', '0'], { repo: p.repo, env: p.env })
    expect(pr.code, pr.stderr).toBe(0)
    // gen2 still reads much of stream 1, wholly on tape: its records stay, the catalog is untouched
    expect(fs.existsSync(path.join(p.repo, 'gens/00000001/stream'))).toBe(true)
    expect(fs.existsSync(path.join(p.repo, 'gens/00000001/hashes'))).toBe(true)
    expect(recs(p.repo).map((f) => fs.readFileSync(f))).toEqual(before)
    p.expected.delete(1)
    await restoreAll(p, 'after prune')
  }, 300_000)

  it('the tape tier of an encrypted repository is not reached before unlock (in process)', () => {
    const repo = Repo2.open(s.repo)
    expect(repo.encrypted).toBe(true)
    expect(() => tapeRepoOf(repo)).toThrow(/before unlock/)
  })

  it('a plain tier file or catalog record put into an encrypted repository is refused (downgrade), and a plain repository still writes format 1 envelopes', async () => {
    const p = await setup('plain', false)
    const m = await bfs(['migrate', 'gen1', '--file-size', '1M'], { repo: p.repo, env: p.env })
    expect(m.code, m.stderr).toBe(0)
    const tierFile = fs.readFileSync(path.join(p.repo, 'tiers', 'tape1'))
    expect(tierFile.subarray(0, 8).toString('latin1')).toBe('BFSTIER\0')
    expect(tierFile.readUInt16LE(8)).toBe(1) // format 1's envelope, as before
    const prs = recs(p.repo)
    expect(prs.length).toBeGreaterThan(0)
    for (const f of prs) {
      const b = fs.readFileSync(f)
      expect(b.subarray(0, 8).toString('latin1')).toBe('BFSTCAT\0')
      expect(b.readUInt16LE(8)).toBe(1)
    }
    // plain: the tier's JSON (the library's directory, which holds NAME) and the units' data are readable
    expect(await inFiles(path.join(p.repo, 'tiers'), p.vtl)).toBe(true)
    expect(await inFiles(path.join(p.repo, 'tiers'), NAME)).toBe(true)
    expect(await inFiles(p.vtl, CONTENT)).toBe(true)
    expect(await inFiles(p.vtl, 'gens/0000')).toBe(true) // plain header records list the unit keys
    // the plain repository's first record where the encrypted one's belongs
    const rs = recs(s.repo)
    const keep = fs.readFileSync(rs[0]!)
    fs.copyFileSync(prs[0]!, rs[0]!)
    const r = await bfs(['cat', `gen1:dir-${NAME}-0/file-${NAME}-0.txt`], { repo: s.repo, env: s.env })
    expect(r.code, r.stderr).toBe(6)
    expect(r.stderr).toMatch(/rec-00000001: format version 1 is not supported here/)
    fs.writeFileSync(rs[0]!, keep)
    const tf = path.join(s.repo, 'tiers', 'tape1')
    const tierBytes = fs.readFileSync(tf)
    fs.copyFileSync(path.join(p.repo, 'tiers', 'tape1'), tf)
    const t = await bfs(['tier', 'ls'], { repo: s.repo, env: s.env })
    expect(t.code, t.stderr).toBe(6)
    expect(t.stderr).toMatch(/not encrypted, in an encrypted repository/)
    fs.writeFileSync(tf, tierBytes)
  }, 300_000)
})
