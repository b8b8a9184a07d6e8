import fs from 'node:fs'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { bfs, sh, tmpdir, newRepo, newRepoF } from './helpers.js'

// Black-box tests of the real CLI and a real mount over a misbehaving data store
// (BFS_TEST_FAULTS / BFS_TEST_CLAIM, repo/test-hooks.ts; honoured only with NODE_ENV=test,
// which vitest sets): a store error or damaged bytes surface as errors, never as wrong bytes.
let work: string
let src: string
let repo: string
let want: Buffer
const mounts = new Set<string>()

const UNITS = 'gens/*/unit-*'
const faults = (rules: object[], extra: object = {}): Record<string, string> => ({ BFS_TEST_FAULTS: JSON.stringify({ seed: 7, rules, ...extra }) })

beforeAll(async () => {
  expect(process.env.NODE_ENV).toBe('test')
  work = tmpdir('bfs-faults-')
  src = path.join(work, 'src')
  fs.mkdirSync(src)
  // incompressible bytes over several units and frames (16 KiB frames, 64 KiB units)
  expect((await sh(`head -c 400000 /dev/urandom > '${src}/data.bin'`)).code).toBe(0)
  want = fs.readFileSync(path.join(src, 'data.bin'))
  repo = await newRepo(path.join(work, 'repo'))
  expect((await bfs(['backup', src, '--unit-blocks', '16', '--frame-blocks', '4'], { repo })).code).toBe(0)
})
afterEach(async () => {
  for (const m of [...mounts]) {
    if ((await bfs(['umount', m])).code !== 0) await bfs(['umount', '--lazy', m])
    mounts.delete(m)
  }
})
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

/** What a failed command may have written before it failed: a prefix of the true bytes, never other bytes. */
function expectPrefix(out: Buffer): void {
  expect(out.length).toBeLessThan(want.length)
  expect(out.equals(want.subarray(0, out.length))).toBe(true)
}

describe('cat', () => {
  it('reads through the hook unchanged when no rule fires (the hook itself changes nothing)', async () => {
    const r = await bfs(['cat', 'gen1:data.bin'], { repo, env: faults([{ keys: 'no-such-key', fault: 'EIO' }]) })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.out.equals(want)).toBe(true)
  })

  it('EIO on unit reads: one line on stderr, exit 1, no wrong bytes', async () => {
    const r = await bfs(['cat', 'gen1:data.bin'], { repo, env: faults([{ keys: UNITS, ops: ['read'], fault: 'EIO', after: 8 }]) })
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^bfs: [^\n]*unit-\d{8}[^\n]*\n$/)
    expectPrefix(r.out)
  })

  it('flipped bytes in a frame: the frame is refused (exit 6), nothing after it is written', async () => {
    const r = await bfs(['cat', 'gen1:data.bin'], { repo, env: faults([{ keys: UNITS, ops: ['read'], fault: 'flip', flipBytes: 1, after: 10 }]) })
    expect(r.code).toBe(6)
    expect(r.stderr).toMatch(/^bfs: [^\n]*unit-\d{8}[^\n]*\n$/)
    expectPrefix(r.out)
  })

  it('a short unit (the store returns fewer bytes than the unit has): exit 6, no wrong bytes', async () => {
    const r = await bfs(['cat', 'gen1:data.bin'], { repo, env: faults([{ keys: 'gens/*/unit-00000002', fault: 'short', shortBytes: 5000 }]) })
    expect(r.code).toBe(6)
    expect(r.stderr).toMatch(/^bfs: [^\n]*unit-00000002[^\n]*\n$/)
    expectPrefix(r.out)
  })
})

describe('restore', () => {
  it('EIO in the workers: the file is reported and not left behind, exit 1', async () => {
    const dest = path.join(work, 'r-eio')
    const r = await bfs(['restore', 'gen1', dest], { repo, env: faults([{ keys: UNITS, ops: ['read'], fault: 'EIO', after: 3 }]) })
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/data\.bin: .*EIO|data\.bin: .*i\/o error/i)
    expect(fs.existsSync(path.join(dest, 'data.bin'))).toBe(false)
  })

  it('flipped bytes: refused, not restored as wrong bytes', async () => {
    const dest = path.join(work, 'r-flip')
    const r = await bfs(['restore', 'gen1', dest], { repo, env: faults([{ keys: UNITS, ops: ['read'], fault: 'flip', flipBytes: 3, after: 5, times: 1 }]) })
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/data\.bin: .*frame \d+ is corrupt/)
    expect(fs.existsSync(path.join(dest, 'data.bin'))).toBe(false)
  })
})

describe('verify', () => {
  it('flipped bytes and EIO are problems (exit 4), each naming its unit', async () => {
    const flip = await bfs(['verify', 'gen1'], { repo, env: faults([{ keys: 'gens/*/unit-00000001', ops: ['read'], fault: 'flip', flipBytes: 2, after: 3, times: 1 }]) })
    expect(flip.code).toBe(4)
    expect(flip.stdout).toMatch(/^FAIL .*unit-00000001: frame \d+: cannot decompress/m)
    const eio = await bfs(['verify', 'gen1'], { repo, env: faults([{ keys: 'gens/*/unit-00000003', ops: ['open'], fault: 'EIO' }]) })
    expect(eio.code).toBe(4)
    expect(eio.stdout).toMatch(/^FAIL .*unit-00000003/m)
    const ok = await bfs(['verify', 'gen1'], { repo })
    expect(ok.code).toBe(0)
  })
})

describe('the mount', () => {
  const mountWith = async (name: string, env: Record<string, string>, r = repo): Promise<{ mnt: string; stdout: string }> => {
    const mnt = path.join(work, name)
    fs.mkdirSync(mnt)
    const m = await bfs(['mount', 'gen1', mnt], { repo: r, env })
    expect(m.stderr).toBe('')
    expect(m.code).toBe(0)
    mounts.add(mnt)
    return { mnt, stdout: m.stdout }
  }
  const statsOf = async (stdout: string): Promise<string> => {
    const pid = Number(/pid (\d+)/.exec(stdout)![1])
    const log = /log (\S+)\)/.exec(stdout)![1]!
    fs.writeFileSync(log, '')
    process.kill(pid, 'SIGUSR2')
    for (let i = 0; i < 200; i++) {
      const line = fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('native reads:')).pop()
      if (line) return line
      await sh('sleep 0.05')
    }
    throw new Error('no stats line in the mount log')
  }

  it('EIO from the store: reads fail with EIO (the units have no local descriptor: every read is deferred to JavaScript)', async () => {
    const { mnt } = await mountWith('m-eio', faults([{ keys: UNITS, ops: ['read'], fault: 'EIO' }]))
    const r = await sh(`cat '${mnt}/data.bin' > /dev/null`)
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/Input\/output error/)
  })

  it('flipped bytes: EIO, never the flipped bytes', async () => {
    const { mnt } = await mountWith('m-flip', faults([{ keys: UNITS, ops: ['read'], fault: 'flip', flipBytes: 1 }]))
    const r = await sh(`dd if='${mnt}/data.bin' bs=4096 count=1 skip=20 status=none | wc -c`)
    expect(r.stderr).toMatch(/Input\/output error/)
    expect(r.stdout.trim()).toBe('0')
  })

  it('a faulty store with no rule firing reads exactly, all in JavaScript (deferred: the native path hands every read back)', async () => {
    const { mnt, stdout } = await mountWith('m-none', faults([{ keys: 'no-such-key', fault: 'EIO' }]))
    expect((await sh(`cmp '${mnt}/data.bin' '${src}/data.bin'`)).code).toBe(0)
    const s = await statsOf(stdout)
    const native = JSON.parse(/native reads: (\{[^}]*\})/.exec(s)![1]!)
    expect(native.served).toBe(0)
    expect(native.fallbacks).toBeGreaterThan(0)
  })

  it('a Claimer serves its own bytes for the range it claims; the native path serves the rest (deferred extents end to end)', async () => {
    // format 1: the Claimer hook (BFS_TEST_CLAIM) is installed on format 1's Repository
    const r1 = await newRepoF(1, path.join(work, 'repo-claim'))
    expect((await bfs(['backup', src, '--unit-blocks', '16', '--frame-blocks', '4'], { repo: r1 })).code).toBe(0)
    // blocks 3 and 4 of every object read as 'Z'
    const { mnt, stdout } = await mountWith('m-claim', { BFS_TEST_CLAIM: JSON.stringify({ fileBlock: 3, count: 2, byte: 0x5a }) }, r1)
    // first reads (nothing in the page cache yet): one far from the claim, one in it
    expect((await sh(`dd if='${mnt}/data.bin' bs=4096 skip=60 count=1 status=none | cmp - <(dd if='${src}/data.bin' bs=4096 skip=60 count=1 status=none)`)).code).toBe(0)
    expect((await sh(`dd if='${mnt}/data.bin' bs=4096 skip=3 count=1 status=none | tr -d Z | wc -c`)).stdout.trim()).toBe('0')
    const s = await statsOf(stdout)
    const native = JSON.parse(/native reads: (\{[^}]*\})/.exec(s)![1]!)
    expect(native.served).toBeGreaterThan(0)
    expect(native.fallbacks).toBeGreaterThan(0)
    const expected = Buffer.from(want)
    expected.fill(0x5a, 3 * 4096, 5 * 4096)
    const got = fs.readFileSync(path.join(mnt, 'data.bin'))
    expect(got.length).toBe(want.length)
    expect(got.equals(expected)).toBe(true)
  })
})
