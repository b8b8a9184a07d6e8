/**
 * Encryption at rest wired into format 2 repositories (issue 18 item 4; native-notes/format.md
 * §2.21–2.22.1): real repositories made by the real `bfs init --encrypt` (the test
 * environment only makes scrypt cheap: BFS_TEST_SCRYPT_N), real backups, restores,
 * verifies and a real FUSE mount in its own process, byte for byte against the source; the
 * repository's bytes hold neither a file name nor a file's content; a flipped byte in each
 * kind of object, a plaintext object where a sealed one belongs and a tampered config are
 * damage (never wrong data); a wrong passphrase is exit 7; `bfs key add|list|remove`.
 * scrypt runs at N = 1024 here (BFS_TEST_SCRYPT_N), not the writers' 2^17, to keep it quick.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type ChildProcess, spawn } from 'node:child_process'
import { BFS, ROOT, bfs, diffTree, mountNativeStats, sh, tmpdir } from './helpers.js'
import { encodeEnvelope2 } from '../src/format/v2/envelope.js'
import { Repo2 } from '../src/repo/v2/repo2.js'
import { StreamSource2 } from '../src/repo/v2/read2.js'
import { hashBlocks, xxh64Seed0, xxh64Seeded } from '../src/codec/hash.js'

const ENC = { NODE_ENV: 'test', BFS_TEST_SCRYPT_N: '1024', BFS_PASSWORD: 'correct horse' }
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
      // the encrypted frames were opened by the native read path (native/nread.c), not in JavaScript
      const native = await mountNativeStats(m.stdout)
      expect(native.served, JSON.stringify(native)).toBeGreaterThan(0)
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

  it('a backup started its compression workers while the passphrase was checked: a wrong passphrase or a bad source ends it (no worker left running), writing nothing', async () => {
    // (cli/v2.ts starts an encrypted repository's workers before the scrypt: a pool left open would keep the process alive and this test would time out)
    const r = copyRepo('repo-early-workers')
    const listing = (): string[] => (fs.readdirSync(r, { recursive: true }) as string[]).filter((f) => !f.startsWith('history')).sort()
    const before = listing()
    const w = await run(['backup', src], r, { BFS_PASSWORD: 'wrong' })
    expect(w.code).toBe(7)
    oneLine(w.stderr)
    expect(w.stderr).toMatch(/wrong passphrase/)
    const gone = await run(['backup', path.join(work, 'no-such-source')], r)
    expect(gone.code).toBe(1)
    oneLine(gone.stderr)
    expect(gone.stderr).toMatch(/does not exist/)
    expect(listing()).toEqual(before)
    // and the workers started early do the backup's work
    const src2 = path.join(work, 'src-early-workers')
    fs.cpSync(src, src2, { recursive: true, verbatimSymlinks: true })
    fs.writeFileSync(path.join(src2, 'later.txt'), `${CONTENT} later\n`.repeat(1000))
    const b = await run(['backup', src2], r)
    expect(b.code, b.stderr).toBe(0)
    const out = path.join(work, 'restore-early-workers')
    const x = await run(['restore', 'latest', out], r)
    expect(x.code, x.stderr).toBe(0)
    expect(await diffTree(src2, out)).toBe('')
  })

  it('a restore starts its workers while the passphrase is checked: a wrong passphrase, a missing generation or path ends it (no worker left running), creating nothing', async () => {
    // (cli/v2.ts restoreV2: a pool left open would keep the process alive and this test would time out)
    const out = path.join(work, 'restore-early')
    const w = await run(['restore', 'latest', out], repo, { BFS_PASSWORD: 'wrong' })
    expect(w.code).toBe(7)
    oneLine(w.stderr)
    expect(w.stderr).toMatch(/wrong passphrase/)
    expect(fs.existsSync(out)).toBe(false)
    const none = await run(['restore', '999', out], repo)
    expect(none.code).toBe(1)
    oneLine(none.stderr)
    expect(none.stderr).toMatch(/no generation 999/)
    expect(fs.existsSync(out)).toBe(false)
    // a subtree that is not there: refused after the unlock, before any file work
    const miss = await run(['restore', 'latest:no/such/dir', out], repo)
    expect(miss.code).toBe(1)
    oneLine(miss.stderr)
    expect(miss.stderr).toMatch(/no such file or directory/)
    // and the workers started early restore the whole tree
    const x = await run(['restore', 'latest', out], repo)
    expect(x.code, x.stderr).toBe(0)
    expect(await diffTree(src, out)).toBe('')
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

  it('works as a user runs it: no test environment, a key file at the real scrypt cost', async () => {
    // NODE_ENV is not "test" here, so no test switch or cheap scrypt applies (BFS_TEST_* ignored)
    const user = { NODE_ENV: 'production', BFS_TEST_SCRYPT_N: '', BFS_PASSWORD: 'a user passphrase' }
    const r = path.join(work, 'user')
    const i = await bfs(['init', '--encrypt'], { repo: r, env: user })
    expect(i.code, i.stderr).toBe(0)
    const kf = fs.readdirSync(path.join(r, 'keys'))
    expect(kf).toHaveLength(1)
    expect(fs.readFileSync(path.join(r, 'keys', kf[0]!), 'utf8')).toMatch(/"kdf":"scrypt-lanes","N":65536,"r":8,"p":1,"lanes":2,/)
    const b = await bfs(['backup', src], { repo: r, env: user })
    expect(b.code, b.stderr).toBe(0)
    const c = await bfs(['cat', `latest:dir-${NAME}/${NAME}.txt`], { repo: r, env: user })
    expect(c.code, c.stderr).toBe(0)
    expect(c.stdout).toBe(`${CONTENT}\n`.repeat(3))
    const wrong = await bfs(['ls', 'latest'], { repo: r, env: { ...user, BFS_PASSWORD: 'not it' } })
    expect(wrong.code).toBe(7)
    oneLine(wrong.stderr)
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

  it("a unit frame tampered with, read through a mount: the native path refuses it, that file's read fails (EIO) and the mount goes on", async () => {
    const r = copyRepo('repo-mount-frame')
    flip(gens(r, 1, `unit-${pad8(0)}`), 200) // frame 0: the small file and the start of random.bin (256 KiB frames)
    const mnt = path.join(work, 'mnt-damaged')
    fs.mkdirSync(mnt)
    const m = await run(['mount', 'latest', mnt], r)
    expect(m.code, m.stderr).toBe(0)
    try {
      const bad = await sh(`cat '${mnt}/dir-${NAME}/sub/random.bin' > /dev/null`)
      expect(bad.code).not.toBe(0)
      expect(bad.stderr).toMatch(/Input\/output error/)
      // text.txt's frames are intact: read natively, byte for byte
      expect((await sh(`cmp '${mnt}/text.txt' '${path.join(src, 'text.txt')}'`)).code).toBe(0)
      const native = await mountNativeStats(m.stdout)
      expect(native.served, JSON.stringify(native)).toBeGreaterThan(0) // text.txt
      expect(native.fallbacks, JSON.stringify(native)).toBeGreaterThan(0) // the damaged frame, handed to JavaScript
      expect(fs.readFileSync(/\(pid \d+, log (.*)\);/.exec(m.stdout)![1]!, 'utf8')).toMatch(/authentication failed/)
    } finally {
      if ((await bfs(['umount', mnt])).code !== 0) await sh(`fusermount -uz '${mnt}'`)
      fs.rmSync(r, { recursive: true, force: true })
    }
  })
})

describe('maintenance on an encrypted repository', () => {
  let r: string
  afterEach(() => undefined)
  it('forget, merge, prune and compact work; what is left reads back', async () => {
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
    // (rewriting sealed units in depth: test/format2-encrypt-rewrite.test.ts)
    const compact = await run(['compact', '--min-age', '0'], r)
    expect(compact.code, compact.stderr).toBe(0)
    expect(compact.stdout).toMatch(/compacted [1-9]\d* units?/)
    const v = await run(['verify', '--all'], r)
    expect(v.code, v.stdout + v.stderr).toBe(0)
    const out = path.join(work, 'restored-maint')
    expect((await run(['restore', 'latest', out], r)).code).toBe(0)
    expect(await diffTree(src2, out)).toBe('')
    for (const needle of [NAME, CONTENT]) expect((await sh(`grep -rl -F -e '${needle}' '${r}'`)).code).toBe(1)
  })
})

describe("the repository's block seed (§2.22): block hashes, frame checks, page cuts and BI checks are XXH64 seeded with blockSeed", () => {
  const MiB = 1 << 20
  /** The 8-byte hashes of each 4 KiB block of `b` (the last padded with zeros) under `seed`, as hex strings. */
  const hashesOf = (b: Buffer, seed: bigint): string[] => {
    const padded = Buffer.concat([b, Buffer.alloc((4096 - (b.length % 4096)) % 4096)])
    const h = Buffer.alloc((padded.length / 4096) * 8)
    hashBlocks('xxh64', padded, 0, padded.length / 4096, h, 0, seed)
    return Array.from({ length: padded.length / 4096 }, (_, i) => h.subarray(i * 8, i * 8 + 8).toString('hex'))
  }
  /** Every block hash repository `r` stores (its hashes files opened with the keys), and the repository (unlocked). */
  const storedHashes = async (r: string): Promise<{ repo: Repo2; stored: Set<string> }> => {
    const repo = Repo2.open(r)
    await repo.unlock(ENC.BFS_PASSWORD)
    const stored = new Set<string>()
    const source = new StreamSource2(repo)
    for (const g of fs.readdirSync(path.join(r, 'gens'))) {
      if (!fs.existsSync(path.join(r, 'gens', g, 'hashes'))) continue
      const h = source.blockHashes(Number(g))
      for (let i = 0; i < h.length; i += 8) stored.add(h.subarray(i, i + 8).toString('hex'))
    }
    return { repo, stored }
  }

  it('a stored block hash is the seeded one, never seed 0\'s; two repositories differ; an incremental backup stores only the changed blocks; restore, cat, verify and a mount read it back', async () => {
    const s = path.join(work, 'seed-src')
    fs.mkdirSync(s)
    const big = Buffer.from(Array.from({ length: 2 * MiB + 1000 }, (_, i) => ((i * 2654435761) >>> 13) & 0xff))
    fs.writeFileSync(path.join(s, 'big.bin'), big)
    // many names: the directory is cut into pages by the page-cut hash
    for (let i = 0; i < 3000; i++) fs.writeFileSync(path.join(s, `n${i}`), `${i}`)
    const r1 = path.join(work, 'seed-r1')
    const r2 = path.join(work, 'seed-r2')
    for (const r of [r1, r2]) {
      expect((await run(['init', '--encrypt'], r)).code).toBe(0)
      const b = await run(['backup', s, '--json'], r)
      expect(b.code, b.stderr).toBe(0)
    }
    const a = await storedHashes(r1)
    const b = await storedHashes(r2)
    const seed = a.repo.blockSeed
    expect(seed).toBe(a.repo.keys.blockSeed)
    expect(seed).not.toBe(0n)
    expect(b.repo.blockSeed).not.toBe(seed)
    // every block of big.bin is stored under its seeded hash; none under seed 0's (nor the other repository's)
    const seeded = hashesOf(big, seed)
    for (const h of seeded) expect(a.stored.has(h)).toBe(true)
    for (const h of hashesOf(big, 0n)) expect(a.stored.has(h)).toBe(false)
    for (const h of hashesOf(big, b.repo.blockSeed)) expect(a.stored.has(h)).toBe(false)
    for (const h of hashesOf(big, b.repo.blockSeed)) expect(b.stored.has(h)).toBe(true)
    // the page cuts of this repository are its seeded XXH64 (the one place: Repo2.pageCut)
    const name = Buffer.from('n1234')
    expect(a.repo.pageCut(name)).toBe(xxh64Seeded(name, seed))
    expect(a.repo.pageCut(name)).not.toBe(xxh64Seed0(name))

    // block-incremental: three blocks change in the middle; the rest compare equal against
    // gen1's stored (seeded) hashes, so only those are stored again
    const changed = Buffer.from(big)
    for (const blk of [100, 101, 300]) changed.fill(0x5a, blk * 4096 + 10, blk * 4096 + 20)
    fs.writeFileSync(path.join(s, 'big.bin'), changed)
    const g2 = await run(['backup', s, '--json'], r1)
    expect(g2.code, g2.stderr).toBe(0)
    const st = JSON.parse(g2.stdout).stats
    expect(st.changedFiles).toBe(1)
    expect(st.storedBytes).toBeLessThan(64 * 1024)
    expect(st.storedBytes).toBeGreaterThan(0)
    const c = await storedHashes(r1)
    for (const h of hashesOf(changed, seed)) expect(c.stored.has(h)).toBe(true)
    const cat = await run(['cat', 'latest:big.bin'], r1)
    expect(cat.code, cat.stderr).toBe(0)
    expect(cat.out.equals(changed)).toBe(true)
    const out = path.join(work, 'seed-restored')
    expect((await run(['restore', 'latest', out], r1)).code).toBe(0)
    expect(await diffTree(s, out)).toBe('')
    const v = await run(['verify', '--all'], r1)
    expect(v.code, v.stdout + v.stderr).toBe(0)
    const mnt = path.join(work, 'seed-mnt')
    fs.mkdirSync(mnt)
    const m = await run(['mount', 'latest', mnt], r1)
    expect(m.code, m.stderr).toBe(0)
    try {
      expect(fs.readFileSync(path.join(mnt, 'big.bin')).equals(changed)).toBe(true)
      expect(fs.readdirSync(mnt).length).toBe(3001)
    } finally {
      if ((await bfs(['umount', mnt])).code !== 0) await sh(`fusermount -uz '${mnt}'`)
    }
    // a frame whose check no longer matches is damage: verify reads every frame against its seeded check
    expect(v.stdout).not.toMatch(/checksum mismatch/)
  })

  it('--volume: full and block-incremental generations round-trip byte for byte; verify passes', async () => {
    const r = path.join(work, 'seed-vol')
    expect((await run(['init', '--encrypt'], r)).code).toBe(0)
    const img = path.join(work, 'seed-vol.img')
    fs.writeFileSync(img, '')
    fs.truncateSync(img, 16 * MiB)
    const fd = fs.openSync(img, 'r+')
    for (const at of [1, 7, 12]) fs.writeSync(fd, Buffer.from(Array.from({ length: MiB }, (_, i) => ((i + at) * 2654435761) >>> 24)), 0, MiB, at * MiB)
    fs.closeSync(fd)
    const g1 = await run(['backup', '--volume', img, '--json'], r)
    expect(g1.code, g1.stderr).toBe(0)
    const copy1 = fs.readFileSync(img)
    const fd2 = fs.openSync(img, 'r+')
    fs.writeSync(fd2, Buffer.alloc(4096, 0x77), 0, 4096, 7 * MiB + 8192)
    fs.closeSync(fd2)
    const g2 = await run(['backup', '--volume', img, '--json'], r)
    expect(g2.code, g2.stderr).toBe(0)
    expect(JSON.parse(g2.stdout).stats.storedBytes).toBeLessThan(64 * 1024)
    for (const [gen, want] of [['gen1', copy1], ['gen2', fs.readFileSync(img)]] as const) {
      const cat = await run(['cat', gen], r)
      expect(cat.code, cat.stderr).toBe(0)
      expect(cat.out.equals(want), gen).toBe(true)
    }
    const v = await run(['verify', '--all'], r)
    expect(v.code, v.stdout + v.stderr).toBe(0)
  })
})

const IS_ROOT = process.getuid?.() === 0
const [KMAJOR, KMINOR] = fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').split('.').map(Number)
const HAS_PRECONTENT = KMAJOR! > 6 || (KMAJOR === 6 && KMINOR! >= 14)

describe.skipIf(!IS_ROOT || !HAS_PRECONTENT)('backup --online of an encrypted repository (root, Linux ≥ 6.14; test/online-v2.test.ts\'s writer)', () => {
  const loops: string[] = []
  const mounts: string[] = []
  const children: ChildProcess[] = []
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    for (const m of mounts.reverse()) await sh(`umount '${m}' || umount -l '${m}'`)
    for (const d of loops) await sh(`losetup -d ${d}`)
  }, 120_000)
  const must = async (cmd: string): Promise<string> => {
    const r = await sh(cmd)
    if (r.code !== 0) throw new Error(`${cmd}: ${r.stderr}`)
    return r.stdout
  }

  it('the T0 tree (before-images in the BI log, checked with the seeded XXH64) restores, mounts and verifies byte for byte', async () => {
    const img = path.join(work, 'online.img')
    const fsDir = path.join(work, 'online-fs')
    fs.mkdirSync(fsDir)
    await must(`truncate -s 200M '${img}' && mkfs.ext4 -q -F '${img}'`)
    const dev = (await must(`losetup --find --show '${img}'`)).trim()
    loops.push(dev)
    await must(`mount ${dev} '${fsDir}'`)
    mounts.push(fsDir)
    const tree = path.join(fsDir, 'tree')
    const sizes = [0, 100, 4097, 65543, 300_000, 1 << 20, 2_500_000, 5_000_000]
    for (let d = 0; d < 2; d++) {
      fs.mkdirSync(path.join(tree, `d${d}`), { recursive: true })
      for (const [i, size] of sizes.entries()) {
        const f = path.join(tree, `d${d}`, `f${i}`)
        await must(i % 2 ? `head -c ${size} /dev/urandom > '${f}'` : `yes "line $RANDOM of ${f}" | head -c ${size} > '${f}'`)
      }
    }
    const writerPy = path.join(ROOT, 'test', 'fixtures', 'online-writer.py')
    await must(`python3 '${writerPy}' setup '${tree}'`)
    const r = path.join(work, 'seed-online')
    expect((await run(['init', '--encrypt'], r)).code).toBe(0)
    expect((await run(['backup', tree, '--exclude', '*-journal'], r)).code).toBe(0)
    await must(`head -c 300000 /dev/urandom | dd of='${tree}/d0/f6' bs=4096 seek=100 conv=notrunc status=none && echo more >> '${tree}/d1/f4'`)
    const copy = path.join(work, 'online-copy')
    await must(`cp -a '${tree}' '${copy}' && sync`)
    const t0 = path.join(work, 'online-t0')
    const stop = path.join(work, 'online-stop')
    const cpSrc = path.join(work, 'online-cp-source')
    fs.writeFileSync(cpSrc, Buffer.alloc(123_457, 7))
    const child = spawn('python3', [writerPy, 'run', tree, t0, stop, cpSrc, '1'], { stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(child)
    let ops = 0
    child.stdout!.on('data', (b: Buffer) => (ops += b.toString().split('\n').length - 1))
    const done = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)))
    // slow on purpose (online-v2.test.ts): one thread, level 19, small units, so that the writer overlaps the reads;
    // block by block (BFS_BILOG_PREREAD=0): this test checks the BI log's images, and a small
    // file read whole at its first write leaves none (its bytes are stored as its data), so a
    // writer whose early operations all went to small files left the BI log empty (CI, 2026-12-04)
    const b = await run(['backup', tree, '--online', '--t0-file', t0, '--threads', '1', '--level', '19', '--unit-blocks', '16', '--exclude', '*-journal', '--json'], r, { BFS_BILOG_PREREAD: '0' })
    fs.writeFileSync(stop, '')
    expect(await done).toBe(0)
    expect(b.code, b.stderr).toBe(0)
    const res = JSON.parse(b.stdout)
    expect(res.online.captured).toBe(true)
    expect(ops).toBeGreaterThan(0)
    expect(res.online.images).toBeGreaterThan(0)
    expect(res.online.preReads).toBeUndefined() // (the switch reached bfs)
    expect(res.online.biBlocks).toBeGreaterThan(0)
    expect(await diffTree(copy, tree)).not.toBe('')
    // verify reads every image of the BI log and compares it with its record's check (seeded XXH64)
    const v = await run(['verify', res.generation], r)
    expect(v.code, v.stdout + v.stderr).toBe(0)
    expect(v.stdout + v.stderr).not.toMatch(/does not match/)
    const out = path.join(work, 'online-restored')
    const rr = await run(['restore', res.generation, out], r)
    expect(rr.code, rr.stderr).toBe(0)
    expect(await diffTree(copy, out)).toBe('')
    const m = path.join(work, 'online-mnt')
    fs.mkdirSync(m)
    expect((await run(['mount', res.generation, m], r)).code).toBe(0)
    try {
      expect(await diffTree(copy, m)).toBe('')
    } finally {
      if ((await bfs(['umount', m])).code !== 0) await sh(`fusermount -uz '${m}'`)
    }
    for (const needle of ['line 1 of', 'app.sqlite']) expect((await sh(`grep -rl -F -e '${needle}' '${r}'`)).code).toBe(1)
  }, 300_000)
})
