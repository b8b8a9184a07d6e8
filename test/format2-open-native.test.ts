/**
 * Opens and releases of a format 2 generation answered on the libfuse threads (issue 15,
 * `cp -a`: native/hooks.c hook_open / hook_release, the fuse-native patch's open and release
 * hooks): real mounts, each served by its own `bfs mount` process. A file whose map the C
 * listing holds, its units registered, is opened and released without JavaScript; the first
 * file of a unit, BFS_OPEN_JS=1, and a native handle whose read the native path hands back
 * (a corrupt frame) go through JavaScript as before. Every mount is unmounted in teardown.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { bfs, diffTree, makeRotTree, makeTree, sh, statTree, tmpdir } from './helpers.js'
import { keys2 } from '../src/format/v2/layout.js'

let work: string
const mounts = new Set<string>()

async function mount(repo: string, args: string[], env?: Record<string, string>): Promise<{ pid: number; log: string; mnt: string }> {
  const mnt = path.resolve(args[args.length - 1]!)
  fs.mkdirSync(mnt, { recursive: true })
  const res = await bfs(['mount', ...args], { repo, env })
  expect(res.code, res.stderr).toBe(0)
  mounts.add(mnt)
  const m = /\(pid (\d+), log (.*)\);/.exec(res.stdout)
  expect(m, res.stdout).not.toBeNull()
  return { pid: Number(m![1]), log: m![2]!, mnt }
}
async function umount(mnt: string): Promise<void> {
  if ((await bfs(['umount', mnt])).code !== 0) await bfs(['umount', '--lazy', mnt])
  if ((await sh(`grep -q ' ${mnt} ' /proc/mounts`)).code === 0) await sh(`fusermount -uz '${mnt}'`)
  mounts.delete(mnt)
}

interface Counters {
  native: Record<string, number>
  js: Record<string, number>
  sc: Record<string, number>
}

/** The server's native read counters and its operations in JavaScript, from a new stats line (kill -USR2; up to 60 s). */
async function counters(server: { pid: number; log: string }): Promise<Counters> {
  const lines = (): string[] => fs.readFileSync(server.log, 'utf8').split('\n').filter((l) => l.includes(' ops in JavaScript: '))
  const before = lines().length
  process.kill(server.pid, 'SIGUSR2')
  for (let t = Date.now() + 60_000; Date.now() < t; await new Promise((r) => setTimeout(r, 50))) {
    const l = lines()
    if (l.length > before) {
      const line = l[l.length - 1]!
      return {
        native: JSON.parse(/ native reads: (\{[^}]*\});/.exec(line)![1]!) as Record<string, number>,
        js: JSON.parse(/ ops in JavaScript: (\{[^}]*\});/.exec(line)![1]!) as Record<string, number>,
        sc: JSON.parse(/ stat cache: (\{[^}]*\});/.exec(line)![1]!) as Record<string, number>,
      }
    }
  }
  throw new Error(`no stats line in ${server.log}`)
}

/** Counters once every release the kernel sends after the reader's close has arrived (releases are asynchronous). */
async function settled(server: { pid: number; log: string }): Promise<Counters> {
  for (let t = Date.now() + 30_000; ; await new Promise((r) => setTimeout(r, 100))) {
    const c = await counters(server)
    if (c.native.opens + (c.js.open ?? 0) === c.native.releases + (c.js.release ?? 0) || Date.now() > t) return c
  }
}

let src: string
let repo: string
let files: number

beforeAll(async () => {
  expect(fs.existsSync('/dev/fuse')).toBe(true)
  work = tmpdir('bfs-openc-')
  src = path.join(work, 'src')
  // many small files in directories without hard links (listed in C), and the odd tree
  for (let d = 0; d < 12; d++) {
    fs.mkdirSync(path.join(src, 'many', `d${d}`), { recursive: true })
    for (let f = 0; f < 25; f++) fs.writeFileSync(path.join(src, 'many', `d${d}`, `f${f}.txt`), `file ${d}/${f}\n`.repeat(1 + ((d * 25 + f) % 300)))
  }
  fs.writeFileSync(path.join(src, 'many', 'empty'), '')
  await makeTree(path.join(src, 'odd'))
  // (cp -a opens one of a file's hard links, and links the others)
  files = Number((await sh(`find '${src}' -type f -printf '%i\\n' | sort -u | wc -l`)).stdout.trim())
  repo = path.join(work, 'repo')
  expect((await bfs(['init', '--format', '2'], { repo })).code).toBe(0)
  const r = await bfs(['backup', src, '--frame-blocks', '16'], { repo })
  expect(r.code, r.stderr).toBe(0)
})
afterEach(async () => {
  for (const m of [...mounts]) await umount(m)
})
afterAll(async () => {
  for (const m of [...mounts]) await umount(m)
  fs.rmSync(work, { recursive: true, force: true })
})

describe('format 2 mount: open and release on the libfuse threads', () => {
  it('cp -a of the tree is byte-identical, with opens and releases answered natively (JavaScript opens only what C cannot: a unit not open yet, maps in map pieces, directories with hard links)', async () => {
    const s = await mount(repo, ['gen1', path.join(work, 'm1')])
    const out = path.join(work, 'cp1')
    const cp = await sh(`cp -a '${s.mnt}/.' '${out}'`)
    expect(cp.stderr).toBe('')
    expect(await diffTree(src, out)).toBe('')
    expect(await statTree(out)).toBe(await statTree(src))
    const c = await settled(s)
    // every regular file was opened once, in C or in JavaScript
    expect(c.native.opens + (c.js.open ?? 0)).toBe(files)
    // the 301 files of many/ are listed in C; of them only the first of each unit goes to JavaScript
    expect(c.native.opens).toBeGreaterThanOrEqual(280)
    expect(c.js.open ?? 0).toBeLessThan(files - 280)
    expect(c.native.openFallbacks).toBeGreaterThan(0) // the first file of a unit
    // each handle released where it was opened
    expect(c.native.releases).toBe(c.native.opens)
    expect(c.js.release ?? 0).toBe(c.js.open ?? 0)
    // a second cp finds the units open: no file of many/ is opened, read or released in JavaScript
    const out2 = path.join(work, 'cp2')
    expect((await sh(`cp -a '${s.mnt}/many' '${out2}'`)).code).toBe(0)
    expect(await diffTree(path.join(src, 'many'), out2)).toBe('')
    const c2 = await settled(s)
    expect(c2.native.opens - c.native.opens).toBe(301)
    expect(c2.native.releases - c.native.releases).toBe(301)
    expect(c2.js.open ?? 0).toBe(c.js.open ?? 0)
    expect(c2.js.read ?? 0).toBe(c.js.read ?? 0)
    expect(c2.js.release ?? 0).toBe(c.js.release ?? 0)
  })

  it('a path opened on a fresh mount without a listing of its directories (cat DIR/FILE, stat) is looked up and opened in C: the directories on the way are listed from their pieces', async () => {
    const s = await mount(repo, ['gen1', path.join(work, 'm4')])
    const before = await settled(s)
    const same = async (rel: string): Promise<void> => {
      const r = await sh(`cat '${s.mnt}/${rel}'`)
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout, rel).toBe(fs.readFileSync(path.join(src, rel), 'utf8'))
    }
    // no ls: the kernel looks up many, many/d3 and f7.txt, each a getattr of its path
    await same('many/d3/f7.txt')
    const c = await settled(s)
    expect((c.js.getattr ?? 0) - (before.js.getattr ?? 0)).toBe(0)
    expect(c.sc.lookupsInC! - before.sc.lookupsInC!).toBe(3) // /, /many, /many/d3
    expect(c.sc.lookupFallbacks).toBe(0)
    // the unit is open now: the next files open in C too, one more directory listed for d4
    await same('many/d3/f8.txt')
    await same('many/d4/f1.txt')
    const c2 = await settled(s)
    expect((c2.js.getattr ?? 0) - (before.js.getattr ?? 0)).toBe(0)
    expect(c2.sc.lookupsInC! - c.sc.lookupsInC!).toBe(1)
    expect(c2.native.opens - c.native.opens).toBe(2)
    expect((c2.js.open ?? 0) - (c.js.open ?? 0)).toBe(0)
    // stat of a file in another directory never listed: what the source says
    const fmt = `-c '%s %a %Y %h %F'`
    expect((await sh(`stat ${fmt} '${s.mnt}/many/d5/f2.txt'`)).stdout).toBe((await sh(`stat ${fmt} '${path.join(src, 'many/d5/f2.txt')}'`)).stdout)
    // a name that is not there: ENOENT, from JavaScript once C has the listing (nothing loaded again)
    const c3 = await settled(s)
    const nope = await sh(`stat '${s.mnt}/many/d3/nope'`)
    expect(nope.code).not.toBe(0)
    expect(nope.stderr).toMatch(/No such file or directory/)
    const c4 = await settled(s)
    expect(c4.sc.lookupsInC).toBe(c3.sc.lookupsInC)
    expect((c4.js.getattr ?? 0) - (c3.js.getattr ?? 0)).toBe(1)
    // and a readdir of a directory listed for a lookup is answered in C, whole
    expect((await sh(`ls '${s.mnt}/many/d3' | wc -l`)).stdout.trim()).toBe('25')
  })

  it('many readers at once on a fresh mount, by paths never listed: every file reads as the source, its lookups answered in C', async () => {
    const s = await mount(repo, ['gen1', path.join(work, 'm5')])
    const before = await settled(s)
    // paths from the source (no readdir of the mount), eight md5sum processes at once
    const sums = (root: string): Promise<{ code: number; stdout: string; stderr: string }> =>
      sh(`cd '${src}' && find many -type f | sort | (cd '${root}' && xargs -P 8 -n 7 md5sum) | sort -k2`)
    const want = await sums(src)
    const got = await sums(s.mnt)
    expect(got.stderr).toBe('')
    expect(got.stdout).toBe(want.stdout)
    expect(got.stdout.split('\n').filter(Boolean)).toHaveLength(301)
    const c = await settled(s)
    expect((c.js.getattr ?? 0) - (before.js.getattr ?? 0)).toBe(0)
    expect(c.sc.lookupsInC! - before.sc.lookupsInC!).toBeGreaterThanOrEqual(14) // /, many, d0 … d11 (a race may load one twice)
    expect(c.sc.lookupFallbacks).toBe(0)
  })

  it('BFS_OPEN_JS=1 opens every file in JavaScript (as before), with the same bytes', async () => {
    const s = await mount(repo, ['gen1', path.join(work, 'm2')], { BFS_OPEN_JS: '1' })
    const out = path.join(work, 'cp-js')
    expect((await sh(`cp -a '${s.mnt}/.' '${out}'`)).stderr).toBe('')
    expect(await diffTree(src, out)).toBe('')
    const c = await settled(s)
    expect(c.native.opens).toBe(0)
    expect(c.native.releases).toBe(0)
    expect(c.js.open).toBe(files)
    expect(c.js.release).toBe(files)
  })

  it('a native handle whose read the native path hands back (a corrupt frame) is opened in JavaScript by its path: the read fails EIO naming the frame, its release goes to JavaScript, other files read on', async () => {
    const s2 = path.join(work, 'src-rot')
    makeRotTree(s2)
    const r2 = path.join(work, 'repo-rot')
    expect((await bfs(['init', '--format', '2'], { repo: r2 })).code).toBe(0)
    expect((await bfs(['backup', s2, '--frame-blocks', '16'], { repo: r2 })).code).toBe(0)
    const unit = path.join(r2, keys2.unit(1, 0))
    const b = fs.readFileSync(unit)
    b[Math.floor(b.length * 0.6)] ^= 0xff
    fs.writeFileSync(unit, b)
    const s = await mount(r2, ['gen1', path.join(work, 'm3')])
    // listed (in C: the listings hold the maps), the first file opens the unit (in JavaScript);
    // then big.bin is opened natively
    expect((await sh(`ls -R '${s.mnt}'`)).code).toBe(0)
    expect((await sh(`cat '${s.mnt}/a/f0'`)).stdout).toBe('small 0\n')
    const before = await settled(s)
    const cat = await sh(`cat '${s.mnt}/z/big.bin' > /dev/null`)
    expect(cat.code).not.toBe(0)
    expect(cat.stderr).toMatch(/Input\/output error/)
    const c = await settled(s)
    expect(c.native.opens - before.native.opens).toBe(1)
    expect((c.js.open ?? 0) - (before.js.open ?? 0)).toBe(0)
    expect(c.native.fallbacks - before.native.fallbacks).toBeGreaterThan(0)
    expect((c.js.read ?? 0) - (before.js.read ?? 0)).toBeGreaterThan(0)
    // adopted: released in JavaScript, not twice
    expect((c.js.release ?? 0) - (before.js.release ?? 0)).toBe(1)
    expect(c.native.releases - before.native.releases).toBe(0)
    expect(fs.readFileSync(s.log, 'utf8')).toMatch(/read \/z\/big\.bin: .*unit-00000000: frame \d+ is corrupt/)
    // the rest of the unit reads on, natively
    for (let i = 1; i < 5; i++) expect((await sh(`cat '${s.mnt}/a/f${i}'`)).stdout).toBe(`small ${i}\n`)
    const after = await settled(s)
    expect(after.native.opens - c.native.opens).toBe(4)
  })
})
