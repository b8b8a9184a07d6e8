/**
 * The native listing of format 2 directories (native/dirlist.c, issue 15: `find` over a
 * mount): for every directory of a real backup, Vfs2's readdir through C answers exactly
 * what the JavaScript decoder answers (names, and every packed stat field bit for bit), and
 * declines what it cannot answer (hard links); a damaged piece is never listed differently
 * from what the decoder reads (it declines, and JavaScript reports the damage). No FUSE here:
 * test/format2-mount.test.ts checks the same listings through real mounts.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { bfs, diffTree, makeTree, sh, statTree, tmpdir } from './helpers.js'
import { createFastPath, packPathForTest } from '../src/native/fastpath.js'
import { keys2 } from '../src/format/v2/layout.js'
import { Repo2 } from '../src/repo/v2/repo2.js'
import { Vfs2 } from '../src/vfs/gen2.js'
import { STAT_FIELDS } from '../src/vfs/statpack.js'
import { dirListing } from '../src/codec/dirlist.js'
import { dirListingLazyForTest } from '../src/native/index.js'
import { PieceReader } from '../src/pieces/reader.js'
import { decodeDir, FileType } from '../src/format/v2/dir.js'
import type { PieceRef } from '../src/format/v2/common.js'

let work: string
let src: string
let repoDir: string

beforeAll(async () => {
  work = tmpdir('bfs-dirlist-')
  src = path.join(work, 'src')
  await makeTree(src) // hard links at the top and in a/: those directories are declined
  // every kind of entry in directories without hard links
  const k = path.join(src, 'kinds')
  fs.mkdirSync(path.join(k, 'sub/empty'), { recursive: true })
  fs.writeFileSync(path.join(k, 'small'), 'x')
  fs.writeFileSync(path.join(k, 'zero'), '')
  fs.symlinkSync('a-target-of-some-length', path.join(k, 'sym'))
  const r = await sh(
    [
      `cd '${k}'`,
      'mkfifo fifo',
      'mknod chr c 4 64 && mknod blk b 4095 300000',
      // many data islands: a map too long to stay inline (a map reference)
      'truncate -s 8M frag && for i in 0 2 4 6 8 10 12 14 16 18; do printf "island-$i" | dd of=frag bs=4096 seek=$((i*32)) conv=notrunc status=none; done',
      'head -c 300000 /dev/urandom > big',
      "setfattr -n user.a -v 1 small && setfattr -n user.b -v '' zero && setfattr -n user.c -v dir sub",
      "touch -d '1960-01-01 00:00:00.25' small && touch -h -d '2100-06-07 08:09:10.999999999' sym",
      'chmod 7777 zero && chown 4294967294:77 big',
      'python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.bind(\'sock\')"',
      'mkdir wide && cd wide && for i in $(seq 1 600); do echo $i > "f$i"; done',
    ].join(' && '),
  )
  expect(r.code, r.stderr).toBe(0)
  repoDir = path.join(work, 'repo')
  expect((await bfs(['init', '--format', '2'], { repo: repoDir })).code).toBe(0)
  const b = await bfs(['backup', src], { repo: repoDir })
  expect(b.code, b.stderr).toBe(0)
  // gen2: kinds/ alone (no hard links anywhere: every directory can be listed in C)
  const b2 = await bfs(['backup', k], { repo: repoDir })
  expect(b2.code, b2.stderr).toBe(0)
}, 300_000)

const mounts = new Set<string>()
afterEach(async () => {
  for (const m of mounts) {
    if ((await bfs(['umount', m])).code !== 0) await bfs(['umount', '--lazy', m])
    if ((await sh(`grep -q ' ${m} ' /proc/mounts`)).code === 0) await sh(`fusermount -uz '${m}'`)
    mounts.delete(m)
  }
})

afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

/** Every directory of the source tree, as the mount names it (relative, '' = the root). */
function dirsOf(root: string): string[] {
  const out = ['']
  const walk = (rel: string): void => {
    for (const e of fs.readdirSync(Buffer.from(path.join(root, rel), 'latin1'), { withFileTypes: true, encoding: 'buffer' })) {
      if (!e.isDirectory()) continue
      const r = (rel ? rel + '/' : '') + e.name.toString('latin1')
      out.push(r)
      walk(r)
    }
  }
  walk('')
  return out
}

const namesOf = (n: string[] | Buffer): string[] => (Array.isArray(n) ? n : n.toString('latin1').split('\0').slice(0, -1))

describe('the native listing of a format 2 directory', () => {
  it('answers every directory of a real backup as the JavaScript decoder does, bit for bit', async () => {
    const repo = Repo2.open(repoDir)
    const man = repo.resolve('1')
    const js = new Vfs2(repo, man, { nativeListing: false })
    const c = new Vfs2(repo, man, { nativeListing: true })
    let native = 0
    let declined = 0
    const dirs = dirsOf(src)
    expect(dirs.length).toBeGreaterThan(12)
    for (const d of dirs) {
      const p = Buffer.from(d, 'latin1')
      const a = await js.readdir(p)
      const b = await c.readdir(p)
      expect(Array.isArray(a.names)).toBe(true)
      if (Buffer.isBuffer(b.names)) native++
      else declined++
      expect(namesOf(b.names), d).toEqual(namesOf(a.names))
      // slots 0 and 1 (. and ..) are filled by the adapter from self/parent
      expect(b.self, d).toEqual(a.self)
      expect(b.parent, d).toEqual(a.parent)
      expect(b.stats.length, d).toBe(a.stats.length)
      expect(Array.from(b.stats.subarray(2 * STAT_FIELDS)), d).toEqual(Array.from(a.stats.subarray(2 * STAT_FIELDS)))
    }
    // the root and a/ hold hard links (declined); every other non-empty directory is listed in C
    expect(declined).toBeGreaterThanOrEqual(2)
    expect(native).toBeGreaterThanOrEqual(dirs.length - 2 - 3) // empty directories have no piece
    // an entry of each kind went through C
    const k = await c.readdir(Buffer.from('kinds'))
    expect(Buffer.isBuffer(k.names)).toBe(true)
    expect(namesOf(k.names)).toEqual(['.', '..', 'big', 'blk', 'chr', 'fifo', 'frag', 'small', 'sock', 'sub', 'sym', 'wide', 'zero'])
    await js.close()
    await c.close()
  })

  it('never lists a damaged piece differently from the decoder: it declines, and JavaScript reports', async () => {
    const repo = Repo2.open(repoDir)
    const man = repo.resolve('1')
    const pieces = new PieceReader(repo.store)
    // the DIR pieces of kinds/ and kinds/wide, raw
    const refs: PieceRef[] = []
    const root = await pieces.piece(man.rootEntry.dir!.child)
    const kinds = root.kind === 1 ? root.entries.find((e) => e.name.toString() === 'kinds')! : null
    expect(kinds?.type).toBe(FileType.Dir)
    refs.push(kinds!.dir!.child)
    const kp = await pieces.piece(kinds!.dir!.child)
    if (kp.kind === 1) refs.push(kp.entries.find((e) => e.name.toString() === 'wide')!.dir!.child)
    let x = 99
    const rnd = (n: number): number => {
      x = (x * 1103515245 + 12345) >>> 0
      return Math.floor((x / 4294967296) * n) // the high bits: an LCG's low bits repeat within a few steps
    }
    let listed = 0
    let declined = 0
    let lazyPartial = 0
    for (const ref of refs) {
      const raw = await pieces.payload(ref)
      expect(dirListing(raw, 1000)).not.toBeNull()
      expect(dirListingLazyForTest(raw, 1000)?.[3]).toBe(0)
      // truncated anywhere: declined
      for (let cut = 0; cut < raw.length; cut += Math.max(1, raw.length >> 6)) {
        expect(dirListing(raw.subarray(0, cut), 1000)).toBeNull()
        expect(dirListingLazyForTest(raw.subarray(0, cut), 1000)).toBeNull()
      }
      expect(dirListing(Buffer.concat([raw, Buffer.from([0])]), 1000)).toBeNull()
      expect(dirListingLazyForTest(Buffer.concat([raw, Buffer.from([0])]), 1000)).toBeNull()
      for (let t = 0; t < 1500; t++) {
        const m = Buffer.from(raw)
        for (let f = 1 + rnd(3); f > 0; f--) m[rnd(m.length)] ^= 1 << rnd(8)
        const got = dirListing(m, 1000)
        // the native readdir's way (a quick pass; each entry read whole at its lookup): what
        // dirListing lists, it lists the same, every entry read; what dirListing declines, the
        // quick pass declines or a lookup of some entry does (JavaScript then reports it)
        const lazy = dirListingLazyForTest(m, 1000)
        if (got !== null) {
          expect(lazy, `flips ${t}`).not.toBeNull()
          expect(lazy![3]).toBe(0)
          expect(lazy![0].equals(got[0])).toBe(true)
          // a struct stat holds uid and gid in 32 bits (what the kernel is given either way)
          const want = Float64Array.from(got[1], (v, j) => (j % STAT_FIELDS === 1 || j % STAT_FIELDS === 2 ? v % 2 ** 32 : v))
          if (!Buffer.from(lazy![1].buffer).equals(Buffer.from(want.buffer))) expect(Array.from(lazy![1])).toEqual(Array.from(want))
          for (let i = 0; i < lazy![2].length / 2; i++) {
            const o = (i + 2) * STAT_FIELDS
            if (lazy![2][2 * i] !== got[1][o] || lazy![2][2 * i + 1] !== got[1][o + 6]! + got[1][o + 7]! * 2 ** 32) expect([i, lazy![2][2 * i], lazy![2][2 * i + 1]]).toEqual([i, got[1][o], got[1][o + 6]! + got[1][o + 7]! * 2 ** 32])
          }
        } else if (lazy !== null) {
          lazyPartial++
          expect(lazy[3], `flips ${t}: the quick pass and every entry's read accept what dirListing declines`).toBeGreaterThan(0)
        }
        // what a readdir shows from the quick pass is always well formed: a type and permission bits
        if (lazy) for (let i = 0; i < lazy[2].length / 2; i++) {
          const mode = lazy[2][2 * i]!
          if (![0o100000, 0o040000, 0o120000, 0o020000, 0o060000, 0o010000, 0o140000].includes(mode & 0o170000) || (mode & ~0o177777) !== 0) expect([t, i, mode.toString(8)]).toEqual([t, i, 'a type and ≤ 7777'])
        }
        let decoded: ReturnType<typeof decodeDir> | null = null
        let why = ''
        try {
          decoded = decodeDir(m, 'test')
        } catch (err) {
          decoded = null
          why = (err as Error).message
        }
        if (got === null) {
          declined++
          continue
        }
        listed++
        expect(decoded, `the decoder refuses a piece C listed: ${why}`).not.toBeNull()
        const names = decoded!.map((e) => e.name.toString('latin1'))
        const want = decoded!.map((e) => [e.mode, 1000 + e.ord, e.mtimeSec, e.mtimeNsec].join())
        const have = decoded!.map((_, i) => {
          const o = (i + 2) * STAT_FIELDS
          return [got[1][o]! & 0o7777, got[1][o + 6]! + got[1][o + 7]! * 2 ** 32, got[1][o + 13], got[1][o + 14]].join()
        })
        if (namesOf(got[0]).slice(2).join('/') !== names.join('/') || have.join(' ') !== want.join(' ')) {
          expect(namesOf(got[0]).slice(2)).toEqual(names)
          expect(have).toEqual(want)
        }
      }
    }
    expect(declined).toBeGreaterThan(100)
    expect(listed).toBeGreaterThan(100) // flips in data the listing does not show
    expect(lazyPartial).toBeGreaterThan(10) // flips the quick pass steps over, found at the entry's lookup
  }, 120_000)

  it('refuses what is not a Buffer, and declines what is not a DIR piece', () => {
    expect(() => dirListing('x' as unknown as Buffer, 0)).toThrow(TypeError)
    expect(() => dirListing(Buffer.alloc(4), -1)).toThrow(RangeError)
    expect(dirListing(Buffer.from([3, 1, 1, 0]), 0)).toBeNull() // a DIRINDEX
    expect(dirListing(Buffer.from([1, 2, 1]), 0)).toBeNull() // version 2
    expect(dirListing(Buffer.alloc(0), 0)).toBeNull()
  })
})

describe('readdir in C (native/dirsrc.c), on the calling thread as a libfuse thread does it', () => {
  it('answers a generation from its root down as JavaScript does, and hands back what it cannot', async () => {
    const repo = Repo2.open(repoDir)
    const man = repo.resolve('2')
    const js = new Vfs2(repo, man, { nativeListing: false })
    const v = new Vfs2(repo, man)
    const ds = v.dirSource()
    expect(ds).not.toBeNull()
    const fp = createFastPath({ statCache: { getattr: true } })
    fp.dirSource(ds!)
    const same = async (p: string): Promise<void> => {
      const c = fp.readdirForTest(Buffer.from(p))
      expect(c, p).not.toBeNull()
      const d = await js.readdir(Buffer.from(p === '/' ? '' : p.slice(1)))
      const names = namesOf(d.names)
      expect(c!.map((x) => x[0]), p).toEqual(names)
      // . and ..: the directory's and its parent's inode numbers and types; then every entry's
      const want = [d.self, d.parent].map((a) => [a.ino, a.mode])
      for (let i = 2; i < names.length; i++) want.push([d.stats[i * STAT_FIELDS + 6]! + d.stats[i * STAT_FIELDS + 7]! * 2 ** 32, d.stats[i * STAT_FIELDS]!])
      expect(c!.map((x) => [x[1], x[2]]), p).toEqual(want)
      // and every entry's full stat is what getattr will now answer without JavaScript
      for (let i = 2; i < names.length; i++) {
        const g = fp.statGetForTest(Buffer.from(`${p === '/' ? '' : p}/${names[i]}`, 'latin1'))
        expect(g?.ino).toBe(want[i]![0])
        // every field, as the decoder packs it (the stat is read from the kept payload at lookup)
        expect(fp.statPackedForTest(Buffer.from(`${p === '/' ? '' : p}/${names[i]}`, 'latin1')), `${p}/${names[i]}`).toEqual(Array.from(d.stats.subarray(i * STAT_FIELDS, (i + 1) * STAT_FIELDS)))
      }
    }
    // a child first: nothing tells C where its piece is yet
    expect(fp.readdirForTest(Buffer.from('/sub'))).toBeNull()
    await same('/')
    await same('/sub')
    await same('/wide')
    expect(fp.readdirForTest(Buffer.from('/sub/empty'))).toBeNull() // an empty directory has no piece: JavaScript answers it
    expect(fp.readdirForTest(Buffer.from('/small'))).toBeNull() // not a directory
    expect(fp.dirInfo()).toEqual({ served: 3, fallbacks: 3, lookups: 0, lookupFallbacks: 0 })
    // the pack path C opens is the store's
    expect(packPathForTest('/r', 1, 2)).toBe(path.join('/r', keys2.pack(1, 2)))
    expect(packPathForTest('/r', 12345678, 99999999)).toBe(path.join('/r', keys2.pack(12345678, 99999999)))
    expect(packPathForTest('/r', 100000000, 1)).toBeNull()
    expect(fp.close()).toBe(0)
    await js.close()
    await v.close()
  })

  it('a lookup of a path whose directories were never listed: the listings on the way loaded in C, top down (hooks.c getattr, ds_lookup)', async () => {
    const repo = Repo2.open(repoDir)
    const man = repo.resolve('2')
    const js = new Vfs2(repo, man, { nativeListing: false })
    const v = new Vfs2(repo, man)
    const fp = createFastPath({ statCache: { getattr: true } })
    fp.dirSource(v.dirSource()!)
    const same = async (p: string): Promise<void> => {
      const g = fp.getattrForTest(Buffer.from(p))
      expect(g, p).not.toBeNull()
      const a = (await js.stat(Buffer.from(p === '/' ? '' : p.slice(1)))).attr
      expect(g, p).toEqual([a.ino, a.mode, a.size, a.nlink])
    }
    await same('/') // the root: from the registered root stat
    expect(fp.dirInfo().lookups).toBe(0)
    await same('/sub/empty') // lists / and /sub
    expect(fp.dirInfo()).toEqual({ served: 0, fallbacks: 0, lookups: 2, lookupFallbacks: 0 })
    await same('/wide/f77') // lists /wide
    await same('/wide/f600')
    await same('/sym')
    await same('/big')
    expect(fp.dirInfo().lookups).toBe(3)
    // not there, under a file, under an empty directory (no piece): JavaScript answers; nothing loaded
    expect(fp.getattrForTest(Buffer.from('/wide/nope'))).toBeNull()
    expect(fp.getattrForTest(Buffer.from('/small/x'))).toBeNull()
    expect(fp.getattrForTest(Buffer.from('/sub/empty/x'))).toBeNull()
    expect(fp.getattrForTest(Buffer.from('/nope/x'))).toBeNull()
    expect(fp.dirInfo()).toEqual({ served: 0, fallbacks: 0, lookups: 3, lookupFallbacks: 0 })
    // a directory listed for a lookup is then read in C, whole
    expect(fp.readdirForTest(Buffer.from('/wide'))!.length).toBe(602)
    expect(fp.close()).toBe(0)
    // a directory of more entries than the stat cache holds: listed, not kept, so declined once
    const small = createFastPath({ statCache: { getattr: true, maxEntries: 100 } })
    small.dirSource(v.dirSource()!)
    await (async () => {
      const g = small.getattrForTest(Buffer.from('/sub'))
      expect(g).not.toBeNull()
      expect(small.getattrForTest(Buffer.from('/wide/f1'))).toBeNull()
      expect(small.getattrForTest(Buffer.from('/wide/f2'))).toBeNull()
      expect(small.dirInfo()).toEqual({ served: 0, fallbacks: 0, lookups: 1, lookupFallbacks: 1 })
      expect(small.readdirForTest(Buffer.from('/wide'))!.length).toBe(602) // a readdir is served all the same
    })()
    expect(small.close()).toBe(0)
    // gen1 has hard links at its root: C declines that directory once, and then does not load it again
    const man1 = repo.resolve('1')
    const v1 = new Vfs2(repo, man1)
    const fp1 = createFastPath({ statCache: { getattr: true } })
    fp1.dirSource(v1.dirSource()!)
    expect(fp1.getattrForTest(Buffer.from('/kinds/small'))).toBeNull()
    expect(fp1.getattrForTest(Buffer.from('/kinds/big'))).toBeNull()
    expect(fp1.dirInfo()).toEqual({ served: 0, fallbacks: 0, lookups: 0, lookupFallbacks: 1 })
    expect(fp1.close()).toBe(0)
    await js.close()
    await v.close()
    await v1.close()
  })

  it('declines a damaged piece (JavaScript then reports it)', async () => {
    const copy = path.join(work, 'repo-damaged')
    await sh(`rm -rf '${copy}' && cp -a '${repoDir}' '${copy}'`)
    const repo = Repo2.open(copy)
    const man = repo.resolve('2')
    const v = new Vfs2(repo, man)
    const fp = createFastPath({ statCache: { getattr: true } })
    fp.dirSource(v.dirSource()!)
    expect(fp.readdirForTest(Buffer.from('/'))).not.toBeNull()
    const wide = (await new Vfs2(repo, man, { nativeListing: false }).stat(Buffer.from('wide'))).attr
    expect(wide.mode & 0o170000).toBe(0o040000)
    // rot one byte in the middle of wide/'s stored piece
    const e = man.rootEntry.dir!
    const root = await new PieceReader(repo.store).piece(e.child)
    const ref = root.kind === 1 ? root.entries.find((x) => x.name.toString() === 'wide')!.dir!.child : null
    const pack = path.join(copy, keys2.pack(ref!.run, ref!.pack))
    const b = fs.readFileSync(pack)
    b[ref!.offset + (ref!.storedLen >> 1)] ^= 0x40
    fs.writeFileSync(pack, b)
    expect(fp.readdirForTest(Buffer.from('/wide'))).toBeNull()
    expect(fp.getattrForTest(Buffer.from('/wide/f1'))).toBeNull() // nor does a lookup below it load it
    expect(fp.readdirForTest(Buffer.from('/sub'))).not.toBeNull()
    expect(fp.dirInfo()).toEqual({ served: 2, fallbacks: 1, lookups: 0, lookupFallbacks: 1 })
    await expect(v.readdir(Buffer.from('wide'))).rejects.toMatchObject({ errno: 'EIO' })
    expect(fp.close()).toBe(0)
  })

  it('through a real mount: the tree is what the source was, listed in C (find, ls -l, stat, getfattr, diff -r)', async () => {
    const mnt = path.join(work, 'mnt-kinds')
    fs.mkdirSync(mnt, { recursive: true })
    const m = await bfs(['mount', '2', mnt], { repo: repoDir })
    expect(m.code, m.stderr).toBe(0)
    mounts.add(mnt)
    const k = path.join(src, 'kinds')
    expect(await diffTree(k, mnt)).toBe('')
    expect(await statTree(mnt)).toBe(await statTree(k))
    expect((await sh(`cd '${mnt}' && find . | sort`)).stdout).toBe((await sh(`cd '${k}' && find . | sort`)).stdout)
    expect((await sh(`getfattr -d '${mnt}/small' '${mnt}/sub'`)).stdout).toMatch(/user\.a="1"[\s\S]*user\.c="dir"/)
    expect((await sh(`ls -ln --time-style=+%s.%N '${mnt}/wide' | wc -l`)).stdout.trim()).toBe('601')
    // the server says how many directories C listed
    const pid = Number(/\(pid (\d+), log (.*)\);/.exec(m.stdout)![1])
    const log = /\(pid (\d+), log (.*)\);/.exec(m.stdout)![2]!
    const before = fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.includes(' stat cache: ')).length
    process.kill(pid, 'SIGUSR2')
    let line = ''
    for (let t = Date.now() + 60_000; Date.now() < t && !line; await new Promise((r) => setTimeout(r, 50))) {
      const lines = fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.includes(' stat cache: '))
      if (lines.length > before) line = lines[lines.length - 1]!
    }
    const sc = JSON.parse(/ stat cache: (\{[^}]*\});/.exec(line)![1]!) as Record<string, number>
    expect(sc.readdirInC).toBeGreaterThanOrEqual(3)
  }, 120_000)
})
