import fs from 'node:fs'
import { randomBytes } from 'node:crypto'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bfs, diffTree, sh, spawnBfs, tmpdir, newRepo, newRepoF } from './helpers.js'

let work: string
let src: string

/** ~60 MB in 300 files: compressible text and some incompressible data, so a backup takes long enough to be killed mid-way. */
function bigTree(dir: string): void {
  fs.mkdirSync(dir, { recursive: true })
  for (let d = 0; d < 10; d++) {
    fs.mkdirSync(path.join(dir, `d${d}`))
    for (let f = 0; f < 30; f++) {
      const n = 50_000 + ((d * 30 + f) % 7) * 60_000
      const b = randomBytes(n)
      if (f % 3 !== 0) for (let i = 0; i < n; i++) b[i] = 97 + (b[i]! & 15) // compressible text
      fs.writeFileSync(path.join(dir, `d${d}`, `f${f}`), b)
    }
  }
}

beforeAll(() => {
  work = tmpdir()
  src = path.join(work, 'src')
  bigTree(src)
})
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

/**
 * The exit code of a child (null when a signal ended it). Call it right after spawning: a child that ends while the test
 * sleeps emits 'exit' once, and a listener attached later would wait forever.
 */
const exitOf = (p: ReturnType<typeof spawnBfs>): Promise<number | null> =>
  p.exitCode !== null || p.signalCode !== null
    ? Promise.resolve(p.signalCode ? null : p.exitCode)
    : new Promise((r) => p.once('close', (code, sig) => r(sig ? null : code))) // 'close': its output is read too

// Format 1's writer (its lock, gens/N and tmp/ leftovers, summary JSON): `bfs init --format 1`.
// Format 2's crash safety: format2*.test.ts and bench/crash.mjs.
describe('crash safety', () => {
  it('kill -9 at random moments never leaves a half generation; the next backup works and is incremental', async () => {
    const repo = await newRepoF(1, path.join(work, 'repo-kill'))
    const t0 = performance.now()
    expect((await bfs(['backup', src], { repo })).code).toBe(0) // gen1
    // kill within the time a full backup takes on this machine, so most rounds die mid-way however fast it is
    const fullMs = Math.max(100, performance.now() - t0)
    let committed = 1
    let killed = 0
    for (let round = 0; round < 6; round++) {
      // change something so each backup has work to do
      fs.appendFileSync(path.join(src, `d${round}`, 'f1'), `round ${round}\n`)
      fs.writeFileSync(path.join(src, `new${round}`), Buffer.alloc(3 << 20, round))
      const p = spawnBfs(['backup', src, '--full', '--threads', '2'], repo)
      const exited = exitOf(p)
      const delay = Math.floor(fullMs * (0.05 + 0.9 * Math.random()))
      await new Promise((r) => setTimeout(r, delay))
      p.kill('SIGKILL')
      const code = await exited
      if (code === null) killed++
      const gens = JSON.parse((await bfs(['generations', '--json'], { repo })).stdout) as Array<{ id: number }>
      // killed after its commit point (manifest renamed in), a backup's generation is whole
      if (code === 0 || gens.length === committed + 1) committed++
      expect(gens.map((g) => g.id)).toEqual(Array.from({ length: committed }, (_, i) => i + 1))
      const v = await bfs(['verify', '--all'], { repo })
      expect(v.stdout + v.stderr).toMatch(/^ok: /m)
      expect(v.code).toBe(0)
    }
    expect(killed).toBeGreaterThan(0) // the test killed something, and was not only six finished backups
    // the lock of the killed writer is stale and broken; leftovers are cleaned; still incremental
    const b = JSON.parse((await bfs(['backup', src, '--json'], { repo })).stdout)
    expect(b.parent).toBe(committed)
    expect(b.stats.unchangedFiles).toBeGreaterThan(250)
    expect(fs.readdirSync(path.join(repo, 'gens')).length).toBe(committed + 1)
    expect(fs.readdirSync(path.join(repo, 'tmp'))).toEqual([])
    const dest = path.join(work, 'after-kill')
    expect((await bfs(['restore', 'latest', dest], { repo })).code).toBe(0)
    expect(await diffTree(src, dest)).toBe('')
  })

  it('Ctrl-C (SIGINT) stops a backup with exit 130 and commits nothing', async () => {
    const repo = await newRepoF(1, path.join(work, 'repo-int'))
    expect((await bfs(['backup', src], { repo })).code).toBe(0)
    const p = spawnBfs(['backup', src, '--full'], repo)
    const exited = exitOf(p)
    let err = ''
    p.stderr.on('data', (d) => (err += d))
    // the backup holds the lock once it is under way (and its SIGINT handler is in place);
    // however long Node takes to start on this machine
    let ended = false
    void exited.then(() => (ended = true))
    for (let i = 0; i < 6000 && !ended && !fs.existsSync(path.join(repo, 'lock')); i++) await new Promise((r) => setTimeout(r, 10))
    await new Promise((r) => setTimeout(r, 100))
    p.kill('SIGINT')
    const code = await exited
    if (code === 0) return // finished before the signal: nothing to check on this machine
    expect(code).toBe(130)
    expect(err).toMatch(/^bfs: interrupted; nothing was committed$/m)
    expect(JSON.parse((await bfs(['generations', '--json'], { repo })).stdout)).toHaveLength(1)
    expect(fs.readdirSync(path.join(repo, 'gens'))).toEqual(['00000001'])
    expect(fs.existsSync(path.join(repo, 'lock'))).toBe(false)
  })

  it('disk full: the unfinished generation is discarded, older ones stay intact', async () => {
    const mnt = path.join(work, 'small')
    fs.mkdirSync(mnt)
    expect((await sh(`mount -t tmpfs -o size=12m tmpfs '${mnt}'`)).code).toBe(0)
    try {
      const repo = await newRepoF(1, path.join(mnt, 'repo'))
      const small = path.join(work, 'small-src')
      fs.mkdirSync(small)
      fs.writeFileSync(path.join(small, 'a'), 'a small file\n')
      expect((await bfs(['backup', small], { repo })).code).toBe(0)
      const full = await bfs(['backup', src], { repo })
      expect(full.code).toBe(1)
      expect(full.stderr).toMatch(/^bfs: disk full while writing gen2 to .*; it was discarded, older generations are intact\n$/)
      expect(fs.readdirSync(path.join(repo, 'gens'))).toEqual(['00000001'])
      expect((await bfs(['verify', '--all'], { repo })).code).toBe(0)
      expect((await bfs(['cat', 'gen1:a'], { repo })).stdout).toBe('a small file\n')
      expect(fs.existsSync(path.join(repo, 'lock'))).toBe(false)
    } finally {
      await sh(`umount '${mnt}'`)
    }
  })
})

describe('corruption is reported, never returned as data', () => {
  it('a flipped byte in a chunk is found by verify, restore and cat', async () => {
    const repo = await newRepo(path.join(work, 'repo-flip'))
    const s = path.join(work, 'flip-src')
    fs.mkdirSync(s)
    fs.writeFileSync(path.join(s, 'text'), Array.from({ length: 200000 }, (_, i) => `row ${i}`).join('\n'))
    fs.writeFileSync(path.join(s, 'other'), 'other file\n')
    expect((await bfs(['backup', s, '--unit-blocks', '256', '--frame-blocks', '64'], { repo })).code).toBe(0)
    expect((await bfs(['verify'], { repo })).code).toBe(0)
    const unit = path.join(repo, 'gens/00000001/unit-00000000')
    const b = fs.readFileSync(unit)
    b[b.length - 400] ^= 0x10 // inside the last frame: 'text', not 'other' (stored first)
    fs.writeFileSync(unit, b)
    const v = await bfs(['verify'], { repo })
    expect(v.code).toBe(4)
    expect(v.stdout).toMatch(/^FAIL .*unit-00000000: frame \d+: /m)
    const dest = path.join(work, 'flip-restore')
    const r = await bfs(['restore', 'gen1', dest], { repo })
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/text: .*frame \d+ is corrupt/)
    expect(fs.existsSync(path.join(dest, 'text'))).toBe(false)
    expect(fs.readFileSync(path.join(dest, 'other'), 'utf8')).toBe('other file\n')
    const c = await bfs(['cat', 'gen1:text'], { repo })
    expect(c.code).toBe(6)
    expect(c.stderr).toMatch(/^bfs: .*unit-00000000: frame \d+ is corrupt/)
  })

  it('a truncated unit file is reported by verify', async () => {
    const repo = await newRepo(path.join(work, 'repo-trunc'))
    expect((await bfs(['backup', path.join(src, 'd1')], { repo })).code).toBe(0)
    const unit = path.join(repo, 'gens/00000001/unit-00000000')
    fs.truncateSync(unit, fs.statSync(unit).size - 10)
    const v = await bfs(['verify'], { repo })
    expect(v.code).toBe(4)
    expect(v.stdout).toMatch(/unit-00000000: unit trailer missing/)
  })
})
