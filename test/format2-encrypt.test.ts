/**
 * Encryption at rest wired into format 2 repositories (issue 18 item 4; native-notes/format.md
 * §2.21–2.22.1): real repositories made by the real `bfs init --encrypt` (behind the test
 * switch NODE_ENV=test BFS_TEST_ENCRYPTION=1 while it is not exposed), real backups, restores,
 * verifies and a real FUSE mount in its own process, byte for byte against the source; the
 * repository's bytes hold neither a file name nor a file's content; a flipped byte in each
 * kind of object, a plaintext object where a sealed one belongs and a tampered config are
 * damage (never wrong data); a wrong passphrase is exit 7; `bfs key add|list|remove`.
 * scrypt runs at N = 1024 here (BFS_TEST_SCRYPT_N), not the writers' 2^17, to keep it quick.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { BFS, bfs, diffTree, sh, tmpdir } from './helpers.js'
import { encodeEnvelope2 } from '../src/format/v2/envelope.js'

const ENC = { NODE_ENV: 'test', BFS_TEST_ENCRYPTION: '1', BFS_TEST_SCRYPT_N: '1024', BFS_PASSWORD: 'correct horse' }
const NAME = 'PLUGH-secret-name'
const CONTENT = 'XYZZY-secret-content'

let work: string
let src: string
let repo: string

const run = (args: string[], r = repo, env: Record<string, string> = {}) => bfs(args, { repo: r, env: { ...ENC, ...env } })
const pad8 = (n: number): string => String(n).padStart(8, '0')
const gens = (r: string, n: number, f: string): string => path.join(r, 'gens', pad8(n), f)

/** Flips one bit of the byte at `offset` (negative: from the end). */
function flip(file: string, offset: number): void {
  const b = fs.readFileSync(file)
  const i = offset < 0 ? b.length + offset : offset
  b[i] = b[i]! ^ 0x10
  fs.writeFileSync(file, b)
}

/** Where a pack's table starts (its trailer's first field): the end of its last piece. */
function tableAt(pack: string): number {
  const b = fs.readFileSync(pack)
  return Number(b.readBigUInt64LE(b.length - 32))
}

/** A copy of the repository to damage (the tests of damage never touch the shared one). */
function copyRepo(name: string): string {
  const r = path.join(work, name)
  fs.cpSync(repo, r, { recursive: true })
  return r
}

/** A one-line error, no stack trace. */
function oneLine(stderr: string): void {
  expect(stderr.trim().split('\n')).toHaveLength(1)
  expect(stderr).not.toMatch(/\n\s+at /)
}

beforeAll(async () => {
  work = tmpdir('bfs-v2enc-')
  src = path.join(work, 'src')
  fs.mkdirSync(path.join(src, `dir-${NAME}`, 'sub'), { recursive: true })
  fs.writeFileSync(path.join(src, `dir-${NAME}`, `${NAME}.txt`), `${CONTENT}\n`.repeat(3))
  // several frames of text (zstd would keep its literals readable) and incompressible bytes
  const lines: string[] = []
  for (let i = 0; i < 60_000; i++) lines.push(`line ${i} of the text file, ${CONTENT} ${i % 97}`)
  fs.writeFileSync(path.join(src, 'text.txt'), lines.join('\n'))
  fs.writeFileSync(path.join(src, `dir-${NAME}`, 'sub', 'random.bin'), Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 2654435761) >>> 24)))
  fs.symlinkSync(`${NAME}.txt`, path.join(src, `dir-${NAME}`, 'link'))
  repo = path.join(work, 'repo')
  const i = await run(['init', '--encrypt'])
  expect(i.code, i.stderr).toBe(0)
  const b = await run(['backup', src, '--frame-blocks', '64'])
  expect(b.code, b.stderr).toBe(0)
})
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

describe('an encrypted repository reads back byte for byte', () => {
  it('ls, cat, restore, diff and verify', async () => {
    const ls = await run(['ls', 'latest'])
    expect(ls.code, ls.stderr).toBe(0)
    expect(ls.stdout).toContain(`dir-${NAME}`)
    const cat = await run(['cat', `latest:dir-${NAME}/${NAME}.txt`])
    expect(cat.code, cat.stderr).toBe(0)
    expect(cat.stdout).toBe(`${CONTENT}\n`.repeat(3))
    const big = await run(['cat', 'latest:text.txt'])
    expect(big.out.equals(fs.readFileSync(path.join(src, 'text.txt')))).toBe(true)
    const out = path.join(work, 'restored')
    const r = await run(['restore', 'latest', out])
    expect(r.code, r.stderr).toBe(0)
    expect(await diffTree(src, out)).toBe('')
    expect(fs.readlinkSync(path.join(out, `dir-${NAME}`, 'link'))).toBe(`${NAME}.txt`)
    const v = await run(['verify', '--all'])
    expect(v.code, v.stdout + v.stderr).toBe(0)
    // find walks in JavaScript (its walk in C reads packs itself: not for sealed ones)
    const f = await run(['find', `${NAME}.txt`])
    expect(f.code, f.stderr).toBe(0)
    expect(f.stdout).toContain(`dir-${NAME}/${NAME}.txt`)
    // a second generation: diff names the change
    const src2 = path.join(work, 'src2')
    fs.cpSync(src, src2, { recursive: true, verbatimSymlinks: true })
    fs.appendFileSync(path.join(src2, `dir-${NAME}`, `${NAME}.txt`), 'more\n')
    const r2 = copyRepo('repo-diff')
    expect((await run(['backup', src2], r2)).code).toBe(0)
    const d = await run(['diff', '1', '2'], r2)
    expect(d.code, d.stderr).toBe(0)
    expect(d.stdout).toContain(`${NAME}.txt`)
  })

  it('a mount, in its own process, serves the same bytes', async () => {
    expect(fs.existsSync('/dev/fuse')).toBe(true)
    const mnt = path.join(work, 'mnt')
    fs.mkdirSync(mnt)
    const m = await run(['mount', 'latest', mnt])
    expect(m.code, m.stderr).toBe(0)
    try {
      expect(await diffTree(src, mnt)).toBe('')
      expect((await sh(`cat '${mnt}/dir-${NAME}/${NAME}.txt'`)).stdout).toBe(`${CONTENT}\n`.repeat(3))
    } finally {
      if ((await bfs(['umount', mnt])).code !== 0) await sh(`fusermount -uz '${mnt}'`)
    }
    expect((await sh(`grep -q ' ${mnt} ' /proc/mounts`)).code).not.toBe(0)
  })

  it("the repository's bytes hold no file name and no file content", async () => {
    // (grep exits 1 when nothing matches; the source itself matches, so the search works)
    expect((await sh(`grep -rl -F -e '${CONTENT}' '${src}'`)).code).toBe(0)
    expect((await sh(`find '${repo}' -name '*PLUGH*'`)).stdout).toBe('')
    for (const needle of [NAME, CONTENT, 'line 1234 of the text file', 'random.bin', 'text.txt', src]) {
      const g = await sh(`grep -rl -F -e '${needle}' '${repo}'`)
      expect(g.code, `${needle}: ${g.stdout}`).toBe(1)
    }
    // every object but config, config-copy, key files and the guard lock is sealed: no JSON in the clear
    const g = await sh(`grep -rl -F -e '"rootEntry"' -e '"streamBlocks"' -e '"kind"' '${repo}'`)
    expect(g.code, g.stdout).toBe(1)
  })
})

describe('passphrases', () => {
  it('a wrong passphrase is exit 7, one line; --password-file and BFS_PASSWORD both work', async () => {
    const w = await run(['ls', 'latest'], repo, { BFS_PASSWORD: 'wrong' })
    expect(w.code).toBe(7)
    oneLine(w.stderr)
    expect(w.stderr).toMatch(/wrong passphrase/)
    const pf = path.join(work, 'pass')
    fs.writeFileSync(pf, 'correct horse\n')
    const f = await run(['--password-file', pf, 'generations'], repo, { BFS_PASSWORD: '' })
    expect(f.code, f.stderr).toBe(0)
    expect(f.stdout).toMatch(/gen1/)
    const none = await run(['generations'], repo, { BFS_PASSWORD: '' })
    expect(none.code).toBe(2) // no terminal to ask on
    oneLine(none.stderr)
  })

  it("a passphrase typed at the terminal reaches the mount's background child, never its environment", async () => {
    const mnt = path.join(work, 'mnt-tty')
    fs.mkdirSync(mnt)
    const env: NodeJS.ProcessEnv = { ...process.env, ...ENC, BFS_REPO: repo }
    delete env.BFS_PASSWORD
    const cmd = `${BFS} mount latest '${mnt}'`
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn('script', ['-qec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'], env })
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
    try {
      expect(out).toMatch(/mounted gen1/)
      expect(await diffTree(src, mnt)).toBe('')
      const pid = Number(/\(pid (\d+)/.exec(out)![1])
      expect(fs.readFileSync(`/proc/${pid}/environ`, 'latin1')).not.toContain('correct horse')
      expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1')).not.toContain('correct horse')
    } finally {
      if ((await bfs(['umount', mnt])).code !== 0) await sh(`fusermount -uz '${mnt}'`)
    }
  })

  it('bfs key add, list, remove; the last key is never removed', async () => {
    const r = copyRepo('repo-keys')
    const before = await run(['key', 'list', '--json'], r)
    expect(before.code, before.stderr).toBe(0)
    const [first] = JSON.parse(before.stdout) as Array<{ keyId: string }>
    const add = await run(['key', 'add', '--label', 'second'], r, { BFS_NEW_PASSWORD: 'battery staple' })
    expect(add.code, add.stderr).toBe(0)
    const list = await run(['key', 'list'], r)
    expect(list.stdout.trim().split('\n')).toHaveLength(3) // heading and two keys
    expect(list.stdout).toContain('second')
    // the new passphrase opens the repository; adding one needs a passphrase that opens it
    expect((await run(['cat', `latest:dir-${NAME}/${NAME}.txt`], r, { BFS_PASSWORD: 'battery staple' })).stdout).toBe(`${CONTENT}\n`.repeat(3))
    expect((await run(['key', 'add'], r, { BFS_PASSWORD: 'nope', BFS_NEW_PASSWORD: 'x' })).code).toBe(7)
    // remove the first with the second: the first passphrase no longer opens it
    const rm = await run(['key', 'remove', first!.keyId], r, { BFS_PASSWORD: 'battery staple' })
    expect(rm.code, rm.stderr).toBe(0)
    expect((await run(['ls', 'latest'], r)).code).toBe(7)
    const [second] = JSON.parse((await run(['key', 'list', '--json'], r)).stdout) as Array<{ keyId: string }>
    const last = await run(['key', 'remove', second!.keyId], r, { BFS_PASSWORD: 'battery staple' })
    expect(last.code).toBe(1)
    oneLine(last.stderr)
    expect(last.stderr).toMatch(/last key/)
    expect((await run(['ls', 'latest'], r, { BFS_PASSWORD: 'battery staple' })).code).toBe(0)
  })

  it('BFS_REQUIRE_ENCRYPTION=1 refuses unencrypted repositories, and making one', async () => {
    const plain = path.join(work, 'plain')
    expect((await bfs(['init'], { repo: plain })).code).toBe(0)
    const refused = await bfs(['generations'], { repo: plain, env: { BFS_REQUIRE_ENCRYPTION: '1' } })
    expect(refused.code).toBe(1)
    oneLine(refused.stderr)
    expect((await bfs(['init'], { repo: path.join(work, 'plain2'), env: { BFS_REQUIRE_ENCRYPTION: '1' } })).code).toBe(2)
    expect((await run(['generations'], repo, { BFS_REQUIRE_ENCRYPTION: '1' })).code).toBe(0)
  })

  it('without the test switch, an encrypted repository is refused and none is made', async () => {
    const off = { BFS_TEST_ENCRYPTION: '' }
    const o = await run(['ls', 'latest'], repo, off)
    expect(o.code).toBe(6)
    expect(o.stderr).toMatch(/feature 'encryption'/)
    expect((await run(['init', '--encrypt'], path.join(work, 'never'), off)).code).toBe(2)
    expect(fs.existsSync(path.join(work, 'never'))).toBe(false)
  })
})

describe('tampering reads as damage', () => {
  const cases: Array<{ kind: string; damage: (r: string) => void; args: string[]; code: number; says: RegExp }> = [
    { kind: 'manifest', damage: (r) => flip(path.join(r, 'manifests', `gen-${pad8(1)}`), 70), args: ['ls', '1'], code: 6, says: /authentication failed/ },
    { kind: 'stream record', damage: (r) => flip(gens(r, 1, 'stream'), -3), args: ['cat', 'latest:text.txt'], code: 6, says: /authentication failed/ },
    { kind: 'hashes chunk', damage: (r) => flip(gens(r, 1, 'hashes'), 100), args: ['verify', '1'], code: 4, says: /authentication failed/ },
    // the last piece before the table: the root directory (written last)
    { kind: 'pack piece (directory: names)', damage: (r) => flip(gens(r, 1, `pack-${pad8(0)}`), tableAt(gens(r, 1, `pack-${pad8(0)}`)) - 20), args: ['ls', '1'], code: 6, says: /authentication failed/ },
    { kind: 'pack piece (any: restore)', damage: (r) => flip(gens(r, 1, `pack-${pad8(0)}`), 70), args: ['restore', '1', '@out'], code: 1, says: /authentication failed/ },
    { kind: 'pack header (its salt)', damage: (r) => flip(gens(r, 1, `pack-${pad8(0)}`), 40), args: ['ls', '1'], code: 6, says: /authentication failed/ },
    { kind: 'unit frame', damage: (r) => flip(gens(r, 1, `unit-${pad8(0)}`), 200), args: ['verify', '1'], code: 4, says: /authentication failed/ },
    { kind: 'unit index', damage: (r) => flip(gens(r, 1, `unit-${pad8(0)}`), -40), args: ['cat', 'latest:text.txt'], code: 6, says: /authentication failed/ },
    { kind: 'unit header (its salt)', damage: (r) => flip(gens(r, 1, `unit-${pad8(0)}`), 70), args: ['cat', 'latest:text.txt'], code: 6, says: /authentication failed/ },
    {
      kind: 'config (a field changed, its mac kept)',
      damage: (r) => {
        for (const f of ['config', 'config-copy']) {
          const env = fs.readFileSync(path.join(r, f))
          const json = JSON.parse(env.subarray(64).toString()) as { defaults: { level: number } }
          json.defaults.level = 19
          const payload = Buffer.from(JSON.stringify(json))
          fs.writeFileSync(path.join(r, f), encodeEnvelope2('config', 0, payload.length, payload))
        }
      },
      args: ['ls', '1'],
      code: 6,
      says: /mac does not check/,
    },
    {
      kind: 'config (encryption removed: a downgrade)',
      damage: (r) => {
        for (const f of ['config', 'config-copy']) {
          const env = fs.readFileSync(path.join(r, f))
          const json = JSON.parse(env.subarray(64).toString()) as { features: { incompat: string[] }; encryption: unknown; mac: unknown }
          json.features.incompat = json.features.incompat.filter((x) => x !== 'encryption')
          json.encryption = null
          json.mac = null
          const payload = Buffer.from(JSON.stringify(json))
          fs.writeFileSync(path.join(r, f), encodeEnvelope2('config', 0, payload.length, payload))
        }
      },
      args: ['ls', '1'],
      code: 6,
      says: /has key files/,
    },
    {
      kind: 'a plaintext manifest where a sealed one belongs',
      damage: (r) => {
        const payload = Buffer.from('{"format":2}')
        fs.writeFileSync(path.join(r, 'manifests', `gen-${pad8(1)}`), encodeEnvelope2('manifest', 0, payload.length, payload))
      },
      args: ['ls', '1'],
      code: 6,
      says: /not encrypted, in an encrypted repository/,
    },
    {
      kind: 'a manifest moved to another name',
      damage: (r) => {
        fs.copyFileSync(path.join(r, 'runs', pad8(1)), path.join(r, 'manifests', `gen-${pad8(1)}`))
      },
      args: ['ls', '1'],
      code: 6,
      says: /expected manifest|authentication failed/,
    },
  ]
  for (const c of cases) {
    it(`${c.kind}: exit ${c.code}`, async () => {
      const r = copyRepo(`repo-${c.kind.replace(/[^a-z]+/g, '-')}`)
      c.damage(r)
      // (restore's damage is local, §2.20.10: the rest is restored, exit 1)
      const res = await run(c.args.map((a) => (a === '@out' ? `${r}-out` : a)), r)
      expect(res.code, res.stdout + res.stderr).toBe(c.code)
      expect(res.stdout + res.stderr).toMatch(c.says)
      expect(res.stderr).not.toMatch(/\n\s+at /)
      fs.rmSync(r, { recursive: true, force: true })
      fs.rmSync(`${r}-out`, { recursive: true, force: true })
    })
  }
})

describe('maintenance on an encrypted repository', () => {
  let r: string
  afterEach(() => undefined)
  it('forget, merge and prune work; compact refuses in one line; what is left reads back', async () => {
    r = copyRepo('repo-maint')
    const src2 = path.join(work, 'src-maint')
    fs.cpSync(src, src2, { recursive: true, verbatimSymlinks: true })
    fs.writeFileSync(path.join(src2, 'new.txt'), `${CONTENT} new\n`)
    expect((await run(['backup', src2], r)).code).toBe(0)
    fs.rmSync(path.join(src2, 'text.txt'))
    expect((await run(['backup', src2], r)).code).toBe(0)
    const merge = await run(['merge', 'gen2..gen3'], r)
    expect(merge.code, merge.stderr).toBe(0)
    const forget = await run(['forget', '1'], r)
    expect(forget.code, forget.stderr).toBe(0)
    const prune = await run(['prune', '--grace', '0'], r)
    expect(prune.code, prune.stderr).toBe(0)
    const compact = await run(['compact'], r)
    expect(compact.code).toBe(1)
    oneLine(compact.stderr)
    expect(compact.stderr).toMatch(/encrypted/)
    const v = await run(['verify', '--all'], r)
    expect(v.code, v.stdout + v.stderr).toBe(0)
    const out = path.join(work, 'restored-maint')
    expect((await run(['restore', 'latest', out], r)).code).toBe(0)
    expect(await diffTree(src2, out)).toBe('')
    for (const needle of [NAME, CONTENT]) expect((await sh(`grep -rl -F -e '${needle}' '${r}'`)).code).toBe(1)
  })
})
