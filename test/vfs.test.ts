import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Repository } from '../src/repo/repository.js'
import { Vfs, VfsError, type PackedListing } from '../src/vfs/tree.js'
import { STAT_FIELDS, packAttr } from '../src/vfs/statpack.js'
import { bfs, makeTree, tmpdir, newRepoF } from './helpers.js'

let work: string
let src: string
let repo: string
beforeAll(async () => {
  work = tmpdir()
  src = path.join(work, 'src')
  // format 1: the test drives format 1's Vfs (Repository) directly
  repo = await newRepoF(1, path.join(work, 'repo'))
  await makeTree(src)
  // small frames and units so reads cross frame and unit boundaries
  expect((await bfs(['backup', src, '--unit-blocks', '128', '--frame-blocks', '8'], { repo })).code).toBe(0)
})
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

const P = (s: string): Buffer => Buffer.from(s, 'latin1')
const errno = (fn: () => unknown): string => {
  try {
    fn()
  } catch (err) {
    return (err as VfsError).errno
  }
  return 'none'
}

describe('vfs of one generation', () => {
  it('reads any range exactly as the source, holes as zeros, with and without readahead', async () => {
    for (const readaheadFrames of [0, 4]) {
      const vfs = new Vfs(Repository.open(repo), { generation: 1, cacheBytes: 1 << 20, readaheadFrames })
      for (const name of ['random.bin', 'seq.txt', 'sparse.img', 'hello.txt']) {
        const want = fs.readFileSync(path.join(src, name))
        const h = vfs.open(P(`/${name}`))
        let seed = 42
        const rnd = (n: number): number => {
          seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0
          return seed % n
        }
        for (let k = 0; k < 60; k++) {
          const pos = k === 0 ? 0 : rnd(want.length + 10)
          const len = 1 + rnd(300_000)
          const dst = Buffer.alloc(len)
          const n = await vfs.read(h, dst, len, pos)
          const exp = want.subarray(pos, pos + len)
          expect(n).toBe(exp.length)
          expect(dst.subarray(0, n).equals(exp)).toBe(true)
        }
        // a whole sequential pass in 128 KiB reads (the kernel's pattern)
        const all = Buffer.alloc(want.length)
        for (let pos = 0; pos < want.length; pos += 131072) await vfs.read(h, all.subarray(pos), Math.min(131072, want.length - pos), pos)
        expect(all.equals(want)).toBe(true)
        vfs.release(h)
      }
      if (readaheadFrames) expect(vfs.reader.stats.readaheads).toBeGreaterThan(0)
      await vfs.close()
    }
  })

  it('gives hard links one inode and their link count, holes in blocks, ns times, xattrs', async () => {
    const vfs = new Vfs(Repository.open(repo), { generation: 1 })
    const a = vfs.getattr(P('/hello.txt'))
    const b = vfs.getattr(P('/a/hardlink.txt'))
    expect(a.ino).toBe(b.ino)
    expect(a.nlink).toBe(2)
    expect(vfs.getattr(P('/seq.txt')).nlink).toBe(1)
    const st = fs.statSync(path.join(src, 'hello.txt'), { bigint: true })
    expect(BigInt(a.mtimeSec) * 1_000_000_000n + BigInt(a.mtimeNsec)).toBe(st.mtimeNs)
    const sp = vfs.getattr(P('/sparse.img'))
    expect(sp.size).toBe(64 << 20)
    expect(sp.blocks).toBeLessThanOrEqual(16)
    expect(vfs.getattr(P('/setuid')).mode).toBe(0o104755)
    expect(vfs.readlink(P('/a/link')).toString()).toBe('../hello.txt')
    expect(vfs.listxattr(P('/hello.txt')).map(String)).toEqual(['user.color'])
    expect(vfs.getxattr(P('/hello.txt'), P('user.color')).toString()).toBe('blue')
    expect(errno(() => vfs.getxattr(P('/hello.txt'), P('user.nope')))).toBe('ENODATA')
    expect(errno(() => vfs.getattr(P('/nope')))).toBe('ENOENT')
    expect(errno(() => vfs.getattr(P('/hello.txt/x')))).toBe('ENOTDIR')
    expect(errno(() => vfs.open(P('/a')))).toBe('EISDIR')
    const root = vfs.readdir(P('/'))
    expect(root.names.map((n) => n.toString('latin1'))).toContain('odd\nname\xff\xfe.txt')
    expect(vfs.getattr(P('/odd\nname\xff\xfe.txt')).size).toBe(9)
    // directory link count = 2 + subdirectories
    expect(vfs.getattr(P('/a')).nlink).toBe(3)
    await vfs.close()
  })
})

describe('readdir packed for the binding, and listings published ahead (format 1)', () => {
  /** A packed listing's names (NUL-ended in one Buffer). */
  const namesOf = (l: PackedListing): string[] => {
    const out: string[] = []
    for (let s = 0, z; (z = l.names.indexOf(0, s)) >= 0; s = z + 1) out.push(l.names.toString('latin1', s, z))
    return out
  }
  /** What the JavaScript readdir answers for `dir`, packed as the adapter packs it, `.` and `..` included. */
  const expected = (vfs: Vfs, dir: string): { names: string[]; stats: Float64Array } => {
    const d = vfs.readdir(P(dir))
    const stats = new Float64Array((d.names.length + 2) * STAT_FIELDS)
    packAttr(stats, 0, vfs.getattr(P(dir)), true, true)
    packAttr(stats, STAT_FIELDS, vfs.getattr(P(dir === '/' ? '/' : dir.slice(0, dir.lastIndexOf('/')) || '/')), true, true)
    d.attrs.forEach((a, i) => packAttr(stats, (i + 2) * STAT_FIELDS, a, d.hasXattrs![i]!))
    return { names: ['.', '..', ...d.names.map((n) => n.toString('latin1'))], stats }
  }
  const dirsOf = (vfs: Vfs, dir = '/'): string[] => {
    const d = vfs.readdir(P(dir))
    const subs = d.names.filter((_, i) => (d.attrs[i]!.mode & 0o170000) === 0o040000).map((n) => (dir === '/' ? '/' : `${dir}/`) + n.toString('latin1'))
    return [dir, ...subs.flatMap((s) => dirsOf(vfs, s))]
  }

  it('every directory: the same names and stats (hard links, symlinks, devices, fifo, sparse, xattrs, odd names) as attr() gives', async () => {
    const vfs = new Vfs(Repository.open(repo), { generation: 1 })
    const dirs = dirsOf(vfs)
    expect(dirs.length).toBeGreaterThan(8)
    for (const dir of dirs) {
      const l = vfs.listing(P(dir))!
      const want = expected(vfs, dir)
      expect(namesOf(l), dir).toEqual(want.names)
      // `.` and `..` are the adapter's to fill: compare the children
      expect([...l.stats.subarray(2 * STAT_FIELDS)], dir).toEqual([...want.stats.subarray(2 * STAT_FIELDS)])
    }
    expect(errno(() => vfs.listing(P('/hello.txt')))).toBe('ENOTDIR')
    expect(errno(() => vfs.listing(P('/nope')))).toBe('ENOENT')
    await vfs.close()
  })

  it('publishes each directory below the one listed once, depth first by name, as readdir would answer it; a small budget goes on where it stopped', async () => {
    const vfs = new Vfs(Repository.open(repo), { generation: 1 })
    const dirs = dirsOf(vfs)
    const all = new Map<string, PackedListing>()
    const order: string[] = []
    const sink = (p: Buffer, l: PackedListing): void => {
      const k = p.toString('latin1')
      expect(all.has(k), k).toBe(false)
      all.set(k, l)
      order.push(k)
    }
    // a budget of one entry: one directory per call, each call going on from where the last stopped
    let calls = 0
    while (vfs.publishAhead(P('/'), 1, sink) > 0) expect(++calls).toBeLessThan(100)
    expect(order).toEqual(dirs.slice(1)) // the order find visits them in; not the root (its readdir was answered)
    for (const [dir, l] of all) {
      const want = expected(vfs, dir)
      expect(namesOf(l), dir).toEqual(want.names)
      expect([...l.stats], dir).toEqual([...want.stats])
    }
    // a directory below: nothing left to publish
    expect(vfs.publishAhead(P('/a'), 1 << 20, sink)).toBe(0)
    // from a deep directory: its subtree, then what a depth-first walk visits after it (the
    // later siblings of it and of its ancestors), never the ancestors themselves
    const fresh = new Vfs(Repository.open(repo), { generation: 1 })
    const after: string[] = []
    fresh.publishAhead(P('/a/b/c/d/e/f/g'), 1 << 20, (p) => void after.push(p.toString('latin1')))
    expect(after).toEqual(dirs.slice(dirs.indexOf('/a/b/c/d/e/f/g') + 1))
    expect(after).toContain('/emptydir')
    await fresh.close()
    // the whole-repository mount publishes nothing (its root grows)
    const whole = new Vfs(Repository.open(repo))
    expect(whole.publishAhead(P('/gen1'), 1 << 20, sink)).toBe(0)
    await whole.close()
    await vfs.close()
  })
})

describe('file handles', () => {
  it('stay below 2^31 (fuse-native passes them as int32): after the last they start again at 1, skipping open ones', async () => {
    const vfs = new Vfs(Repository.open(repo), { generation: 1 })
    const a = vfs.open(P('/hello.txt'))
    expect(a).toBe(1)
    const b = vfs.open(P('/seq.txt'))
    ;(vfs as unknown as { nextHandle: number }).nextHandle = 0x7fffffff - 1 // as after 2^31 opens
    const c = vfs.open(P('/hello.txt'))
    expect(c).toBe(0x7fffffff)
    const d = vfs.open(P('/seq.txt')) // wraps: 1 and 2 are still open
    expect(d).toBe(3)
    vfs.release(a)
    vfs.release(b)
    const buf = Buffer.alloc(64)
    expect(buf.subarray(0, await vfs.read(c, buf, 64, 0)).toString()).toBe('hello world\n')
    expect(buf.subarray(0, await vfs.read(d, buf, 7, 0)).toString()).toBe('line 0\n')
    expect(vfs.open(P('/hello.txt'))).toBe(4) // numbers go on upwards; 1 and 2, released, are free at the next wrap
    await vfs.close()
  })
})

describe('vfs of the whole repository', () => {
  it('lists genN/, latest and by-date/, and picks up a new generation without remounting', async () => {
    let t = 0
    const vfs = new Vfs(Repository.open(repo), { refreshMs: 1000, now: () => t })
    expect(vfs.readdir(P('/')).names.map(String)).toEqual(['gen1', 'by-date', 'latest'])
    expect(vfs.readlink(P('/latest')).toString()).toBe('gen1')
    const [d] = vfs.readdir(P('/by-date')).names
    expect(vfs.readlink(Buffer.concat([P('/by-date/'), d!])).toString()).toBe('../gen1')
    expect(vfs.getattr(P('/gen1/a/hardlink.txt')).nlink).toBe(2)
    fs.appendFileSync(path.join(src, 'hello.txt'), 'more\n')
    expect((await bfs(['backup', src], { repo })).code).toBe(0)
    t += 5000
    expect(vfs.readdir(P('/')).names.map(String)).toEqual(['gen1', 'gen2', 'by-date', 'latest'])
    expect(vfs.readlink(P('/latest')).toString()).toBe('gen2')
    const h = vfs.open(P('/gen2/hello.txt'))
    const buf = Buffer.alloc(100)
    const n = await vfs.read(h, buf, 100, 0)
    expect(buf.subarray(0, n).toString()).toBe(fs.readFileSync(path.join(src, 'hello.txt'), 'utf8'))
    expect(vfs.getattr(P('/gen1/hello.txt')).ino).not.toBe(vfs.getattr(P('/gen2/hello.txt')).ino)
    await vfs.close()
  })
})
