/**
 * `bfs mount GEN MNT` of a format 2 generation (issue 15 item 3): real FUSE mounts, each
 * served by its own `bfs mount` process, checked with real tools against the source tree
 * (as test/mount.test.ts does for format 1); the mount is lazy (no piece read until a
 * directory is visited; a damaged directory piece fails only that directory); inode numbers
 * per format.md §2.19. Every mount is unmounted in teardown.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { bfs, diffTree, makeTree, sh, statTree, tmpdir } from './helpers.js'
import { Repo2 } from '../src/repo/v2/repo2.js'
import { PieceReader } from '../src/pieces/reader.js'
import { TreeReader } from '../src/pieces/tree-reader.js'
import { keys2 } from '../src/format/v2/layout.js'

let work: string
let src: string
let repo: string
const mounts = new Set<string>()

async function mount(args: string[], r = repo): Promise<{ code: number; stdout: string; stderr: string }> {
  const mnt = path.resolve(args[args.length - 1]!)
  const res = await bfs(['mount', ...args], { repo: r })
  if (res.code === 0) mounts.add(mnt)
  return res
}
async function umount(mnt: string): Promise<void> {
  if ((await bfs(['umount', mnt])).code !== 0) await bfs(['umount', '--lazy', mnt])
  if ((await sh(`grep -q ' ${mnt} ' /proc/mounts`)).code === 0) await sh(`fusermount -uz '${mnt}'`)
  mounts.delete(mnt)
}
const mkmnt = (name: string): string => {
  const m = path.join(work, name)
  fs.mkdirSync(m, { recursive: true })
  return m
}
async function init2(dir: string): Promise<string> {
  const r = await bfs(['init', '--format', '2'], { repo: dir })
  expect(r.code, r.stderr).toBe(0)
  return dir
}
/** The pid and log file `bfs mount` printed. */
function serverOf(stdout: string): { pid: number; log: string } {
  const m = /\(pid (\d+), log (.*)\);/.exec(stdout)
  expect(m, stdout).not.toBeNull()
  return { pid: Number(m![1]), log: m![2]! }
}
/** The piece counters of the server's stats line (kill -USR2), waiting (up to 60 s) for a new line. */
async function pieceStats(server: { pid: number; log: string }): Promise<Record<string, number>> {
  const before = fs.readFileSync(server.log, 'utf8').split('\n').filter((l) => l.includes(' pieces: ')).length
  process.kill(server.pid, 'SIGUSR2')
  for (let t = Date.now() + 60_000; Date.now() < t; await new Promise((r) => setTimeout(r, 50))) {
    const lines = fs.readFileSync(server.log, 'utf8').split('\n').filter((l) => l.includes(' pieces: '))
    if (lines.length > before) return JSON.parse(/ pieces: (\{[^}]*\});/.exec(lines[lines.length - 1]!)![1]!) as Record<string, number>
  }
  throw new Error(`no stats line in ${server.log}`)
}

/** The stat cache's counters (with readdirInC) of the server's latest stats line (after pieceStats asked for one). */
async function statCacheStats(server: { pid: number; log: string }): Promise<Record<string, number>> {
  const lines = fs.readFileSync(server.log, 'utf8').split('\n').filter((l) => l.includes(' stat cache: '))
  return JSON.parse(/ stat cache: (\{[^}]*\});/.exec(lines[lines.length - 1]!)![1]!) as Record<string, number>
}

beforeAll(async () => {
  expect(fs.existsSync('/dev/fuse')).toBe(true)
  work = tmpdir('bfs-v2mount-')
  src = path.join(work, 'src')
  repo = await init2(path.join(work, 'repo'))
  await makeTree(src)
  fs.writeFileSync(path.join(src, 'a/b/needle.txt'), 'the quick brown fox\n')
  // settle atimes (the first readdir may move a directory's atime under relatime)
  await sh(`find '${src}' > /dev/null; sleep 0.01`)
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

describe('format 2: one generation mounted read-only', () => {
  it('is what the source was, for ls, stat, find, cat, sha256sum, grep, getfattr, readlink, du, diff -r, tar, rsync and cp -a', async () => {
    const mnt = mkmnt('m1')
    const m = await mount(['gen1', mnt])
    expect(m.stderr).toBe('')
    expect(m.code).toBe(0)
    expect(m.stdout).toMatch(/^mounted gen1 at /)
    expect((await sh(`ls -la '${mnt}'`)).code).toBe(0)
    expect(fs.readFileSync('/proc/mounts', 'utf8')).toMatch(new RegExp(` ${mnt} fuse\\.bfs ro,`))
    // every entry's type, mode, owner, size, ns mtime, link count, symlink target
    expect(await statTree(mnt)).toBe(await statTree(src))
    expect(await diffTree(src, mnt)).toBe('')
    expect((await sh(`cd '${mnt}' && find . | sort`)).stdout).toBe((await sh(`cd '${src}' && find . | sort`)).stdout)
    expect((await sh(`cd '${mnt}' && find . -type f -print0 | sort -z | xargs -0 sha256sum`)).stdout).toBe((await sh(`cd '${src}' && find . -type f -print0 | sort -z | xargs -0 sha256sum`)).stdout)
    expect((await sh(`grep -r 'quick brown' '${mnt}'`)).stdout).toBe(`${mnt}/a/b/needle.txt:the quick brown fox\n`)
    const gf = (await sh(`cd '${mnt}' && getfattr -d -m - hello.txt seq.txt emptydir`)).stdout
    expect(gf).toContain('user.color="blue"')
    expect(gf).toBe((await sh(`cd '${src}' && getfattr -d -m - hello.txt seq.txt emptydir`)).stdout)
    expect((await sh(`getfattr -n user.nothing '${mnt}/hello.txt'`)).stderr).toMatch(/No such attribute/)
    expect((await sh(`readlink '${mnt}/a/link'`)).stdout).toBe('../hello.txt\n')
    expect((await sh(`readlink '${mnt}/dangling'`)).stdout).toBe('/nonexistent/target\n')
    // holes: du shows the sparse file's allocation, not its size
    expect(Number((await sh(`du -k '${mnt}/sparse.img'`)).stdout.split('\t')[0])).toBeLessThan(64)
    expect((await sh(`stat -c '%s' '${mnt}/sparse.img'`)).stdout).toBe(`${64 << 20}\n`)
    // sizes, ns mtimes, modes of a few by stat(1) directly
    const st = `stat -c '%n %s %y %a %F %u:%g'`
    for (const f of ['hello.txt', 'setuid', 'readonly', 'random.bin', 'a/link', 'emptydir', 'fifo', 'a/b/c/d/e/f/g/h/deep.txt']) {
      expect((await sh(`cd '${mnt}' && ${st} '${f}'`)).stdout, f).toBe((await sh(`cd '${src}' && ${st} '${f}'`)).stdout)
    }
    // hard links share an inode and a link count; directories count 2 + subdirectories
    const ino = (await sh(`stat -c '%i %h' '${mnt}/hello.txt' '${mnt}/a/hardlink.txt'`)).stdout.split('\n')
    expect(ino[0]).toBe(ino[1])
    expect(ino[0]).toMatch(/ 2$/)
    expect((await sh(`stat -c '%h' '${mnt}/seq.txt' '${mnt}/a' '${mnt}'`)).stdout).toBe((await sh(`stat -c '%h' '${src}/seq.txt' '${src}/a' '${src}'`)).stdout)
    // inode numbers are unique in the mount (hard links aside), and what ls -i and readdir say
    const inos = (await sh(`cd '${mnt}' && find . -printf '%i\\n' | sort | uniq -d`)).stdout.trim().split('\n').filter(Boolean)
    expect(inos).toEqual([ino[0]!.split(' ')[0]])
    expect((await sh(`cd '${mnt}' && ls -i hello.txt | cut -d' ' -f1; ls -ia . | grep ' hello.txt$' | tr -s ' ' | sed 's/^ //' | cut -d' ' -f1`)).stdout).toBe(`${ino[0]!.split(' ')[0]}\n${ino[0]!.split(' ')[0]}\n`)
    // tar sees the same archive, rsync sees nothing to do
    expect((await sh(`cd '${mnt}' && tar --sort=name --numeric-owner --full-time -cvvf /dev/null .`)).stdout).toBe((await sh(`cd '${src}' && tar --sort=name --numeric-owner --full-time -cvvf /dev/null .`)).stdout)
    const rs = await sh(`rsync -a -n -i -H -X --specials --devices '${mnt}/' '${src}/'`)
    expect(rs.stderr).toBe('')
    expect(rs.stdout).toBe('')
    // partial restore: cp -a of a subtree keeps modes, ns times, symlinks, xattrs
    const out = path.join(work, 'cp-out')
    expect((await sh(`cp -a '${mnt}/a' '${out}' && cp -a '${mnt}/hello.txt' '${mnt}/emptydir' '${out}/'`)).code).toBe(0)
    expect(await statTree(out)).toContain('./link|symbolic link|777|0:0|12|1999-12-31 23:59:59.500000000')
    expect((await diffTree(path.join(src, 'a'), out)).split('\n').filter((l) => !/^Only in .*cp-out: (hello.txt|emptydir)$/.test(l)).join('')).toBe('')
    expect((await sh(`stat -c '%y' '${out}/hello.txt'`)).stdout).toBe('2001-02-03 04:05:06.123456789 +0000\n')
    expect((await sh(`getfattr --only-values -n user.dir '${out}/emptydir'`)).stdout).toBe('yes')
    // the same through the JavaScript read path
    const mnt2 = mkmnt('m1-js')
    expect((await mount(['--no-native-read', 'gen1', mnt2])).code).toBe(0)
    expect(await diffTree(src, mnt2)).toBe('')
  })

  it('odd names round-trip; every write fails with EROFS; a missing name is ENOENT', async () => {
    const mnt = mkmnt('m-odd')
    expect((await mount(['latest', mnt])).code).toBe(0)
    const odd = Buffer.from('odd\nname\xff\xfe.txt', 'latin1')
    expect(fs.readdirSync(mnt, { encoding: 'buffer' }).some((n) => n.equals(odd))).toBe(true)
    expect((await sh(`cat "$(printf '%s/odd\\nname\\377\\376.txt' '${mnt}')"`)).stdout).toBe('odd name\n')
    for (const cmd of [`touch '${mnt}/new'`, `rm '${mnt}/hello.txt'`, `mkdir '${mnt}/d'`, `chmod 600 '${mnt}/hello.txt'`, `echo x >> '${mnt}/hello.txt'`, `setfattr -n user.x -v 1 '${mnt}/hello.txt'`]) {
      const r = await sh(cmd)
      expect(r.code, cmd).not.toBe(0)
      expect(r.stderr, cmd).toMatch(/Read-only file system/)
    }
    expect((await sh(`ls '${mnt}/nope' '${mnt}/a/nope/x' '${mnt}/hello.txt/x'`)).stderr).toMatch(/nope': No such file or directory[\s\S]*nope\/x': No such file or directory[\s\S]*hello.txt\/x': Not a directory/)
  })

  it('takes --tape-readahead (no tape tier: nothing to ask for), refuses a missing generation without mounting', async () => {
    const mnt = mkmnt('m-refused')
    // (what it does with units on tape: test/format2-tape-mount.test.ts)
    const tape = await bfs(['mount', '1', mnt, '--tape-readahead', '4'], { repo })
    expect([tape.code, tape.stderr]).toEqual([0, ''])
    mounts.add(mnt)
    expect(fs.readFileSync(path.join(mnt, 'hello.txt'), 'utf8').length).toBeGreaterThan(0)
    await umount(mnt)
    const none = await bfs(['mount', '9', mnt], { repo })
    expect(none.code).not.toBe(0)
    expect(none.stderr).toMatch(/^bfs: .*gen-00000009|^bfs: .*9/)
    expect(none.stderr.split('\n').length).toBe(2)
    // --piece-cache is format 2's: a format 1 repository refuses it by name
    const r1 = path.join(work, 'v1-repo')
    expect((await bfs(['init', '--format', '1'], { repo: r1 })).code).toBe(0)
    const v1 = await bfs(['mount', '--piece-cache', '1M', '1', mnt], { repo: r1 })
    expect([v1.code, v1.stderr]).toEqual([1, 'bfs: --piece-cache applies to format 2 repositories only\n'])
    expect(fs.readFileSync('/proc/mounts', 'utf8')).not.toContain(mnt)
  })
})

describe('format 2 mount: lazy', () => {
  it('mounting reads no piece; a directory is read on its first visit; a damaged directory piece fails only that directory (EIO), naming it in the log', async () => {
    const r = await init2(path.join(work, 'lazy-repo'))
    const s = path.join(work, 'lazy-src')
    for (let d = 0; d < 20; d++) {
      fs.mkdirSync(path.join(s, `d${d}`, 'sub'), { recursive: true })
      for (let f = 0; f < 30; f++) fs.writeFileSync(path.join(s, `d${d}`, `f${f}.txt`), `dir ${d} file ${f}\n`)
      fs.writeFileSync(path.join(s, `d${d}`, 'sub', 'x'), `x of ${d}\n`)
    }
    fs.mkdirSync(path.join(s, 'broken'))
    for (let f = 0; f < 5; f++) fs.writeFileSync(path.join(s, 'broken', `b${f}`), `broken ${f}\n`)
    await sh(`find '${s}' > /dev/null`)
    expect((await bfs(['backup', s], { repo: r })).code).toBe(0)

    // no damage yet: the mount reads nothing until asked, then only what it visits
    const mnt = mkmnt('m-lazy')
    const m = await mount(['--piece-cache', '1M', '1', mnt], r)
    expect(m.code, m.stderr).toBe(0)
    const server = serverOf(m.stdout)
    expect((await pieceStats(server)).loads).toBe(0)
    // from the root entry and the root's piece only, read by the lookup in C (native/dirsrc.c
    // ds_lookup): JavaScript reads no piece (statCacheStats reads the line pieceStats asked for)
    expect((await sh(`stat -c %h '${mnt}' '${mnt}/d3'`)).stdout).toBe('23\n3\n')
    expect((await pieceStats(server)).loads).toBe(0)
    expect((await statCacheStats(server)).lookupsInC).toBe(1)
    expect((await sh(`ls '${mnt}/d3' | wc -l`)).stdout.trim()).toBe('31')
    expect((await pieceStats(server)).loads).toBe(0)
    expect((await statCacheStats(server)).readdirInC).toBe(1)
    // sub/ is listed in C for the lookup of x; x is the first file of its unit: JavaScript opens
    // it, reading the three pieces on its path
    expect((await sh(`cat '${mnt}/d3/sub/x'`)).stdout).toBe('x of 3\n')
    expect((await pieceStats(server)).loads).toBe(3)
    expect((await statCacheStats(server)).lookupsInC).toBe(2)
    expect((await sh(`find '${mnt}' | wc -l`)).stdout.trim()).toBe(String(1 + 21 + 20 * 32 + 5))
    // find lists every directory in C (native/dirsrc.c): from the root's listing down, each
    // piece read once there; JavaScript read nothing more
    const all = await pieceStats(server)
    expect(all.loads).toBe(3)
    expect((await statCacheStats(server)).readdirInC).toBe(1 + 1 + 20 * 2 + 1)
    expect(all.cachedBytes).toBeGreaterThan(0)
    expect(all.cachedBytes).toBeLessThanOrEqual(1 << 20)
    await umount(mnt)

    // rot the bytes of broken/'s piece only (found through the reader, as the mount would)
    const repo2 = Repo2.open(r)
    const man = repo2.resolve('1')
    const tree = new TreeReader(new PieceReader(repo2.store))
    const e = await tree.lookup(man.rootEntry.dir, Buffer.from('broken'))
    const ref = e!.dir!.child
    const pack = path.join(r, keys2.pack(ref.run, ref.pack))
    const b = fs.readFileSync(pack)
    for (let i = ref.offset; i < ref.offset + ref.storedLen; i++) b[i] ^= 0x5a
    fs.writeFileSync(pack, b)

    const m2 = await mount(['1', mnt], r)
    expect(m2.code, m2.stderr).toBe(0)
    expect((await sh(`ls '${mnt}'`)).stdout.split('\n').filter(Boolean)).toHaveLength(21)
    expect((await sh(`stat -c '%F %h' '${mnt}/broken'`)).stdout).toBe('directory 2\n')
    expect((await sh(`cat '${mnt}/d7/f9.txt' '${mnt}/d19/sub/x'`)).stdout).toBe('dir 7 file 9\nx of 19\n')
    const ls = await sh(`ls '${mnt}/broken'`)
    expect(ls.code).not.toBe(0)
    expect(ls.stderr).toMatch(/Input\/output error/)
    const cat = await sh(`cat '${mnt}/broken/b1'`)
    expect(cat.stderr).toMatch(/Input\/output error/)
    // the others still read after the failures, and the log says where the damage is
    expect((await sh(`cat '${mnt}/d0/f0.txt'`)).stdout).toBe('dir 0 file 0\n')
    expect(await diffTree(path.join(s, 'd5'), path.join(mnt, 'd5'))).toBe('')
    const log = fs.readFileSync(serverOf(m2.stdout).log, 'utf8')
    expect(log).toMatch(/readdir \/broken: gen1:broken: .*pack-\d{8}.* at offset \d+/)
  })
})

describe('format 2 mount: generations', () => {
  it('the whole repository: gen1/ … genN/, latest and by-date/, . and .. with their inode numbers, and generations made after the mount', async () => {
    const r = await init2(path.join(work, 'all-repo'))
    const s = path.join(work, 'all-src')
    await makeTree(s)
    await sh(`find '${s}' > /dev/null`)
    expect((await bfs(['backup', s], { repo: r })).code).toBe(0)
    const mnt = mkmnt('m-all')
    const m = await mount([mnt], r)
    expect(m.code, m.stderr).toBe(0)
    expect(m.stdout).toMatch(/^mounted repository .*all-repo at /)
    expect((await sh(`ls -a '${mnt}'`)).stdout).toBe('.\n..\nby-date\ngen1\nlatest\n')
    expect((await sh(`readlink '${mnt}/latest'`)).stdout).toBe('gen1\n')
    expect((await sh(`cat '${mnt}/latest/hello.txt'`)).stdout).toBe('hello world\n')
    const d = (await sh(`ls '${mnt}/by-date'`)).stdout.trim()
    expect(d).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    expect((await sh(`readlink '${mnt}/by-date/${d}'`)).stdout).toBe('../gen1\n')
    expect(await diffTree(s, `${mnt}/gen1`)).toBe('')
    expect(await statTree(`${mnt}/gen1`)).toBe(await statTree(s))
    // . and .. of the mount's root, by-date/, a generation's root and a directory in it
    const ino = async (p: string): Promise<string> => (await sh(`stat -c %i '${p}'`)).stdout.trim()
    const dots = async (dir: string): Promise<string[]> => (await sh(`ls -ai '${dir}' | awk '$2 == "." || $2 == ".." {print $1}'`)).stdout.trim().split('\n')
    for (const [dir, parent] of [[mnt, `${mnt}/..`], [`${mnt}/by-date`, mnt], [`${mnt}/gen1`, mnt], [`${mnt}/gen1/a`, `${mnt}/gen1`]] as const) {
      expect(await dots(dir), dir).toEqual([await ino(dir), await ino(parent)])
    }
    expect(await ino(`${mnt}/gen1`)).toBe(String(2 ** 32 + 16))
    // a backup while mounted: the new generation appears (the list is read again at most once a second)
    fs.appendFileSync(path.join(s, 'hello.txt'), 'second\n')
    expect((await bfs(['backup', s], { repo: r })).code).toBe(0)
    await sh(`end=$((SECONDS+300)); while [ $SECONDS -lt $end ]; do ls '${mnt}' | grep -q '^gen2$' && break; sleep 0.1; done`)
    expect((await sh(`ls '${mnt}'`)).stdout).toBe('by-date\ngen1\ngen2\nlatest\n')
    expect((await sh(`readlink '${mnt}/latest'`)).stdout).toBe('gen2\n')
    expect((await sh(`cat '${mnt}/gen2/hello.txt' '${mnt}/gen1/hello.txt'`)).stdout).toBe('hello world\nsecond\nhello world\n')
    expect(await diffTree(s, `${mnt}/gen2`)).toBe('')
    expect((await sh(`ls '${mnt}/gen3' '${mnt}/latest/x' '${mnt}/nope'`)).stderr.split('\n').filter(Boolean)).toHaveLength(3)
  })

  it('a second generation after changes mounts with the new content, beside the first; unchanged paths keep their inode number below 2^32 (§2.19)', async () => {
    const r = await init2(path.join(work, 'gens-repo'))
    const s = path.join(work, 'gens-src')
    await makeTree(s)
    await sh(`find '${s}' > /dev/null`)
    expect((await bfs(['backup', s], { repo: r })).code).toBe(0)
    const old = path.join(work, 'gens-old')
    expect((await sh(`cp -a '${s}' '${old}'`)).code).toBe(0)
    // changes: content, a new file and directory, a deletion, a new hard link, an xattr, a mode
    fs.writeFileSync(path.join(s, 'seq.txt'), 'changed\n')
    fs.mkdirSync(path.join(s, 'newdir'))
    fs.writeFileSync(path.join(s, 'newdir', 'n.txt'), 'new\n')
    fs.rmSync(path.join(s, 'random.bin'))
    fs.linkSync(path.join(s, 'hello.txt'), path.join(s, 'newdir', 'third-link'))
    expect((await sh(`setfattr -n user.more -v 1 '${s}/readonly' && chmod 600 '${s}/empty'`)).code).toBe(0)
    expect((await bfs(['backup', s], { repo: r })).code).toBe(0)

    const m1 = mkmnt('g1')
    const m2 = mkmnt('g2')
    expect((await mount(['1', m1], r)).code).toBe(0)
    expect((await mount(['latest', m2], r)).stdout).toMatch(/^mounted gen2 at /)
    expect(await diffTree(s, m2)).toBe('')
    expect(await statTree(m2)).toBe(await statTree(s))
    expect((await sh(`getfattr -d '${m2}/readonly'`)).stdout).toContain('user.more="1"')
    expect(await diffTree(old, m1)).toBe('')
    expect((await sh(`stat -c '%h' '${m1}/hello.txt' '${m2}/hello.txt' '${m2}/newdir/third-link'`)).stdout).toBe('2\n3\n3\n')
    const ino = async (p: string): Promise<bigint> => BigInt((await sh(`stat -c %i '${p}'`)).stdout.trim())
    const low = (x: bigint): bigint => x & 0xffffffffn
    expect(await ino(`${m2}/hello.txt`)).toBe(await ino(`${m2}/newdir/third-link`))
    expect((await ino(`${m1}/hello.txt`)) >> 32n).toBe(1n)
    expect((await ino(`${m2}/hello.txt`)) >> 32n).toBe(2n)
    for (const p of ['hello.txt', 'a/b/c/d/e/f/g/h/deep.txt', 'seq.txt', 'a', '.']) expect(low(await ino(`${m2}/${p}`)), p).toBe(low(await ino(`${m1}/${p}`)))
    expect(low(await ino(m2))).toBe(16n)
  })
})
