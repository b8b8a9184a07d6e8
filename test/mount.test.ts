import fs from 'node:fs'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { BFS, bfs, diffTree, makeTree, sh, statTree, tmpdir, newRepo, newRepoF } from './helpers.js'

// Real FUSE mounts, each served by its own `bfs mount` process. These must run in CI (root, /dev/fuse):
// there is no skip. Every mount is unmounted in teardown.
let work: string
let src: string
let repo: string
const mounts = new Set<string>()

/** `bfs mount [GEN] MNT [options]`; the mount point is the last argument before the options. */
async function mount(args: string[], r = repo): Promise<{ code: number; stdout: string; stderr: string }> {
  const positional = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1]!.startsWith('--')))
  const mnt = path.resolve(positional[positional.length - 1]!)
  const res = await bfs(['mount', ...args], { repo: r })
  if (res.code === 0) mounts.add(mnt)
  return res
}
async function umount(mnt: string): Promise<void> {
  // a mount a failed test left in use is detached lazily; its server exits once it is let go
  if ((await bfs(['umount', mnt])).code !== 0) await bfs(['umount', '--lazy', mnt])
  if ((await sh(`grep -q ' ${mnt} ' /proc/mounts`)).code === 0) await sh(`fusermount -uz '${mnt}'`)
  mounts.delete(mnt)
}
/** Waits (at most 60 s: a loaded machine starts processes slowly) until the process whose pid is in `pidFile` has seq.txt open. */
const waitHolding = async (pidFile: string): Promise<void> => {
  await sh(`end=$((SECONDS+300)); while [ $SECONDS -lt $end ]; do ls -l /proc/$(cat '${pidFile}')/fd 2>/dev/null | grep -q seq.txt && break; sleep 0.05; done`)
}
/** A background process that holds mnt/seq.txt open until file `go` exists (at most 60 s); its pid goes to go.pid. */
const holdOpen = async (mnt: string, go: string): Promise<void> => {
  await sh(`(exec 3<'${mnt}/seq.txt'; end=$((SECONDS+300)); while [ $SECONDS -lt $end ]; do [ -e '${go}' ] && break; sleep 0.05; done) >/dev/null 2>&1 & echo $! > '${go}.pid'`)
  await waitHolding(`${go}.pid`)
}
const mkmnt = (name: string): string => {
  const m = path.join(work, name)
  fs.mkdirSync(m, { recursive: true })
  return m
}

beforeAll(async () => {
  expect(fs.existsSync('/dev/fuse')).toBe(true)
  work = tmpdir('bfs-mount-')
  src = path.join(work, 'src')
  repo = await newRepo(path.join(work, 'repo'))
  await makeTree(src)
  fs.writeFileSync(path.join(src, 'a/b/needle.txt'), 'the quick brown fox\n')
  expect((await bfs(['backup', src, '--frame-blocks', '16'], { repo })).code).toBe(0)
})
afterEach(async () => {
  for (const m of [...mounts]) await umount(m)
})
afterAll(async () => {
  for (const m of [...mounts]) await umount(m)
  fs.rmSync(work, { recursive: true, force: true })
})

describe('one generation mounted read-only', () => {
  it('is what the source was, for ls, stat, find, du, cat, sha256sum, grep, getfattr, readlink, diff, tar, rsync and cp -a', async () => {
    const mnt = mkmnt('m1')
    const m = await mount(['gen1', mnt])
    expect(m.stderr).toBe('')
    expect(m.code).toBe(0)
    expect(m.stdout).toMatch(/^mounted gen1 at /)
    expect((await sh(`ls -la '${mnt}'`)).code).toBe(0)
    // every entry's type, mode, owner, size, ns mtime, link count, symlink target
    expect(await statTree(mnt)).toBe(await statTree(src))
    expect(await diffTree(src, mnt)).toBe('')
    expect((await sh(`cd '${mnt}' && find . | sort`)).stdout).toBe((await sh(`cd '${src}' && find . | sort`)).stdout)
    expect((await sh(`cd '${mnt}' && find . -type f -print0 | sort -z | xargs -0 sha256sum`)).stdout).toBe((await sh(`cd '${src}' && find . -type f -print0 | sort -z | xargs -0 sha256sum`)).stdout)
    expect((await sh(`grep -r 'quick brown' '${mnt}'`)).stdout).toBe(`${mnt}/a/b/needle.txt:the quick brown fox\n`)
    expect((await sh(`cd '${mnt}' && getfattr -d -m - hello.txt seq.txt emptydir`)).stdout).toBe((await sh(`cd '${src}' && getfattr -d -m - hello.txt seq.txt emptydir`)).stdout)
    expect((await sh(`readlink '${mnt}/a/link'`)).stdout).toBe('../hello.txt\n')
    // holes: du shows the sparse file's allocation, not its size
    expect(Number((await sh(`du -k '${mnt}/sparse.img'`)).stdout.split('\t')[0])).toBeLessThan(64)
    expect((await sh(`stat -c '%s' '${mnt}/sparse.img'`)).stdout).toBe(`${64 << 20}\n`)
    // hard links share an inode and a link count
    const ino = (await sh(`stat -c '%i %h' '${mnt}/hello.txt' '${mnt}/a/hardlink.txt'`)).stdout.split('\n')
    expect(ino[0]).toBe(ino[1])
    expect(ino[0]).toMatch(/ 2$/)
    // tar sees the same archive, rsync sees nothing to do
    expect((await sh(`cd '${mnt}' && tar --sort=name --numeric-owner --full-time -cvvf /dev/null .`)).stdout).toBe((await sh(`cd '${src}' && tar --sort=name --numeric-owner --full-time -cvvf /dev/null .`)).stdout)
    const rs = await sh(`rsync -a -n -i -H -X --specials --devices '${mnt}/' '${src}/'`)
    expect(rs.stderr).toBe('')
    expect(rs.stdout).toBe('')
    // partial restore: cp -a of a subtree keeps modes, ns times, symlinks, xattrs
    const out = path.join(work, 'cp-out')
    expect((await sh(`cp -a '${mnt}/a' '${out}' && cp -a '${mnt}/hello.txt' '${mnt}/emptydir' '${out}/'`)).code).toBe(0)
    expect(await statTree(path.join(out))).toContain('./link|symbolic link|777|0:0|12|1999-12-31 23:59:59.500000000')
    expect((await diffTree(path.join(src, 'a'), path.join(out))).split('\n').filter((l) => !/^Only in .*cp-out: (hello.txt|emptydir)$/.test(l)).join('')).toBe('')
    expect((await sh(`stat -c '%y' '${out}/hello.txt'`)).stdout).toBe('2001-02-03 04:05:06.123456789 +0000\n')
    expect((await sh(`getfattr --only-values -n user.dir '${out}/emptydir'`)).stdout).toBe('yes')
  })

  it('odd names round-trip: newlines and invalid UTF-8 bytes', async () => {
    const mnt = mkmnt('m-odd')
    expect((await mount(['gen1', mnt])).code).toBe(0)
    const odd = Buffer.from('odd\nname\xff\xfe.txt', 'latin1')
    const names = fs.readdirSync(mnt, { encoding: 'buffer' })
    expect(names.some((n) => n.equals(odd))).toBe(true)
    const p = Buffer.concat([Buffer.from(mnt + '/'), odd])
    expect((await sh(`cat "$(printf '%s/odd\\nname\\377\\376.txt' '${mnt}')"`)).stdout).toBe('odd name\n')
    expect(fs.existsSync(p)).toBe(true)
  })

  it('every write fails with EROFS', async () => {
    const mnt = mkmnt('m-ro')
    expect((await mount(['gen1', mnt])).code).toBe(0)
    for (const cmd of [
      `touch '${mnt}/new'`, `rm '${mnt}/hello.txt'`, `mkdir '${mnt}/d'`, `mv '${mnt}/hello.txt' '${mnt}/x'`,
      `chmod 600 '${mnt}/hello.txt'`, `truncate -s 0 '${mnt}/hello.txt'`, `setfattr -n user.x -v 1 '${mnt}/hello.txt'`,
      `echo x >> '${mnt}/hello.txt'`, `ln -s x '${mnt}/sym'`, `touch '${mnt}/hello.txt'`,
    ]) {
      const r = await sh(cmd)
      expect(r.code, cmd).not.toBe(0)
      expect(r.stderr, cmd).toMatch(/Read-only file system/)
    }
    expect((await sh(`cat '${mnt}/hello.txt'`)).stdout).toBe('hello world\n')
  })

  it('parallel readers do not deadlock', async () => {
    const mnt = mkmnt('m-par')
    expect((await mount(['gen1', mnt, '--cache-size', '1M'], repo)).code).toBe(0)
    const r = await sh(`cd '${mnt}' && timeout 60 bash -c "for i in 1 2 3 4; do find . -type f -print0; done | xargs -0 -P8 -n4 cat | wc -c"`)
    expect(r.code).toBe(0)
    const one = Number((await sh(`cd '${src}' && find . -type f -print0 | xargs -0 cat | wc -c`)).stdout)
    expect(Number(r.stdout)).toBe(4 * one)
  })
})

/** The pid and log file `bfs mount` printed. */
function serverOf(stdout: string): { pid: number; log: string } {
  const m = /\(pid (\d+), log (.*)\);/.exec(stdout)
  expect(m, stdout).not.toBeNull()
  return { pid: Number(m![1]), log: m![2]! }
}
/** The stat cache's counters in the server's stats line (kill -USR2), waiting (up to 60 s) for a new line. */
async function statCacheStats(server: { pid: number; log: string }): Promise<Record<string, number>> {
  const lines = (): string[] => fs.readFileSync(server.log, 'utf8').split('\n').filter((l) => l.includes(' stat cache: '))
  const before = lines().length
  process.kill(server.pid, 'SIGUSR2')
  for (let t = Date.now() + 60_000; Date.now() < t; await new Promise((r) => setTimeout(r, 50))) {
    const l = lines()
    if (l.length > before) return JSON.parse(/ stat cache: (\{[^}]*\});/.exec(l[l.length - 1]!)![1]!) as Record<string, number>
  }
  throw new Error(`no stats line in ${server.log}`)
}

describe('listings published ahead (format 1, one generation)', () => {
  it('directories below a listed one are answered on the libfuse threads, exactly as the source: stat, ls -ai, find, rsync', async () => {
    // format 1's mount publishes listings ahead (format 2's reads each directory's piece)
    const r1 = await newRepoF(1, path.join(work, 'repo-ahead'))
    expect((await bfs(['backup', src, '--frame-blocks', '16'], { repo: r1 })).code).toBe(0)
    const mnt = mkmnt('m-ahead')
    const m = await mount(['gen1', mnt], r1)
    expect(m.code, m.stderr).toBe(0)
    const server = serverOf(m.stdout)
    // the root's readdir is answered in JavaScript, which then publishes the listings below
    expect((await sh(`ls '${mnt}'`)).code).toBe(0)
    await new Promise((r) => setTimeout(r, 500))
    expect(await statTree(mnt)).toBe(await statTree(src))
    expect((await sh(`cd '${mnt}' && find . | sort`)).stdout).toBe((await sh(`cd '${src}' && find . | sort`)).stdout)
    // . and .. of a directory served from a published listing: the inodes stat gives
    const ls = (await sh(`ls -ai1 '${mnt}/a/b/c'`)).stdout
    const ino = async (p: string): Promise<string> => (await sh(`stat -c %i '${p}'`)).stdout.trim()
    expect(ls).toMatch(new RegExp(`^\\s*${await ino(`${mnt}/a/b/c`)} \\.\n\\s*${await ino(`${mnt}/a/b`)} \\.\\.\n`))
    expect((await sh(`ls -a '${mnt}/emptydir'`)).stdout).toBe('.\n..\n')
    const rs = await sh(`rsync -a -n -i -H -X --specials --devices '${mnt}/' '${src}/'`)
    expect(rs.stderr).toBe('')
    expect(rs.stdout).toBe('')
    const st = await statCacheStats(server)
    // a, a/b … a/b/c/d/e/f/g/h and emptydir: none of them asked JavaScript
    expect(st.listed).toBeGreaterThanOrEqual(10)
  })

  it('a file changed in a newer generation is served new after a remount at the same path, never from the older mount', async () => {
    const csrc = path.join(work, 'chg-src')
    const crepo = await newRepo(path.join(work, 'chg-repo'))
    fs.mkdirSync(path.join(csrc, 'd/e'), { recursive: true })
    fs.writeFileSync(path.join(csrc, 'd/e/f.txt'), 'old\n')
    fs.writeFileSync(path.join(csrc, 'd/keep.txt'), 'keep\n')
    expect((await bfs(['backup', csrc], { repo: crepo })).code).toBe(0)
    const mnt = mkmnt('m-chg')
    expect((await mount(['latest', mnt], crepo)).code).toBe(0)
    const walk = async (): Promise<string> => (await sh(`cd '${mnt}' && ls -la . d d/e >/dev/null && find . -printf '%p %s %n %T@\n' | sort && cat d/e/f.txt`)).stdout
    const srcWalk = async (): Promise<string> => (await sh(`cd '${csrc}' && find . -printf '%p %s %n %T@\n' | sort && cat d/e/f.txt`)).stdout
    expect(await walk()).toBe(await srcWalk())
    await umount(mnt)
    // a newer generation: a changed file (size, time), a new one, a removed directory
    fs.writeFileSync(path.join(csrc, 'd/e/f.txt'), 'new and longer\n')
    fs.utimesSync(path.join(csrc, 'd/e/f.txt'), 1_000_000_000, 1_000_000_000)
    fs.writeFileSync(path.join(csrc, 'd/e/g.txt'), 'g\n')
    fs.rmSync(path.join(csrc, 'd/keep.txt'))
    fs.mkdirSync(path.join(csrc, 'd/e/h'))
    expect((await bfs(['backup', csrc], { repo: crepo })).code).toBe(0)
    expect((await mount(['latest', mnt], crepo)).code).toBe(0)
    expect(await walk()).toBe(await srcWalk())
    expect((await sh(`cat '${mnt}/d/e/f.txt'`)).stdout).toBe('new and longer\n')
    await umount(mnt)
    // and the older generation, mounted again, is still the old one
    expect((await mount(['gen1', mnt], crepo)).code).toBe(0)
    expect((await sh(`cd '${mnt}' && ls d/e && cat d/e/f.txt d/keep.txt`)).stdout).toBe('f.txt\nold\nkeep\n')
  })
})

describe('the native read path', () => {
  // A sparse file over many small units and frames, then changed in place: gen2's extents
  // point into both generations' units. Random ranges are read in a child process (sync
  // reads, never from the mount's own process) and compared with the source byte for byte.
  const RANDOM_READS = `
import fs from 'node:fs'
const [mnt, ref, count] = process.argv.slice(2)
const a = fs.openSync(mnt, 'r'), b = fs.openSync(ref, 'r')
const size = fs.fstatSync(b).size
if (fs.fstatSync(a).size !== size) { console.error('size differs'); process.exit(2) }
let s = 12345
const rnd = (n) => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return Math.floor((s / 4294967296) * n) }
for (let i = 0; i < Number(count); i++) {
  const pos = i % 5 === 0 ? rnd(size / 4096) * 4096 : rnd(size)
  const len = i % 3 === 0 ? 4096 : 1 + rnd(300000)
  const x = Buffer.alloc(len), y = Buffer.alloc(len)
  const n = fs.readSync(a, x, 0, len, pos), m = fs.readSync(b, y, 0, len, pos)
  if (n !== m || !x.subarray(0, n).equals(y.subarray(0, m))) { console.error('differs at ' + pos + ' +' + len); process.exit(1) }
}
const tail = Buffer.alloc(10)
if (fs.readSync(a, tail, 0, 10, size) !== 0) { console.error('read past the end'); process.exit(3) }
`
  const statsOf = async (m: { stdout: string }): Promise<string> => {
    const pid = Number(/pid (\d+)/.exec(m.stdout)![1])
    const log = /log (\S+)\)/.exec(m.stdout)![1]!
    process.kill(pid, 'SIGUSR2')
    for (let i = 0; i < 100; i++) {
      const line = fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('native reads:')).pop()
      if (line) return line
      await sh('sleep 0.05')
    }
    throw new Error('no stats line in the mount log')
  }

  it('serves random ranges across holes, frames, units and generations exactly; --no-native-read the same in JavaScript', async () => {
    const r = await newRepo(path.join(work, 'repo-nr'))
    const s = path.join(work, 'nr-src')
    fs.mkdirSync(s)
    const f = path.join(s, 'big.bin')
    const v1 = path.join(work, 'big.v1')
    // 6 MiB: data, a 1 MiB hole, data, a zero-filled run, data up to an unaligned end
    const fd = fs.openSync(f, 'w')
    let seed = 7
    const chunk = (n: number): Buffer => {
      const b = Buffer.alloc(n)
      for (let i = 0; i < n; i += 4) { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; b.writeUInt32LE(seed & 0x0f0f0f0f, i) }
      return b
    }
    fs.writeSync(fd, chunk(2 << 20), 0, 2 << 20, 0)
    fs.writeSync(fd, chunk(1 << 20), 0, 1 << 20, 3 << 20)
    fs.writeSync(fd, Buffer.alloc(256 << 10), 0, 256 << 10, (4 << 20))
    fs.writeSync(fd, chunk((2 << 20) - 1000), 0, (2 << 20) - 1000, (4 << 20) + (256 << 10))
    fs.closeSync(fd)
    fs.copyFileSync(f, v1)
    fs.writeFileSync(path.join(s, 'small.txt'), 'small\n')
    expect((await bfs(['backup', s, '--unit-blocks', '64', '--frame-blocks', '16'], { repo: r })).code).toBe(0)
    // gen2: ten scattered blocks rewritten, one zeroed, and a tail grown
    const fd2 = fs.openSync(f, 'r+')
    for (let k = 0; k < 10; k++) fs.writeSync(fd2, chunk(4096), 0, 4096, ((k * 37 + 5) % 1500) * 4096 + (k % 2) * 100)
    fs.writeSync(fd2, Buffer.alloc(4096), 0, 4096, 100 * 4096)
    fs.writeSync(fd2, chunk(300000), 0, 300000, fs.fstatSync(fd2).size)
    fs.closeSync(fd2)
    expect((await bfs(['backup', s, '--unit-blocks', '64', '--frame-blocks', '16'], { repo: r })).code).toBe(0)
    const script = path.join(work, 'random-reads.mjs')
    fs.writeFileSync(script, RANDOM_READS)
    for (const [gen, ref] of [['gen2', f], ['gen1', v1]] as const) {
      for (const opt of [[], ['--no-native-read']]) {
        const mnt = mkmnt(`m-nr-${gen}${opt.length ? '-js' : ''}`)
        const m = await mount([gen, mnt, '--cache-size', '1M', ...opt], r)
        expect(m.code).toBe(0)
        const run = await sh(`node '${script}' '${mnt}/big.bin' '${ref}' 400`)
        expect(run.stderr).toBe('')
        expect(run.code).toBe(0)
        expect((await sh(`cmp '${mnt}/big.bin' '${ref}' && cat '${mnt}/small.txt'`)).stdout).toBe('small\n')
        const stats = await statsOf(m)
        if (opt.length) expect(stats).toMatch(/native reads: null/)
        else {
          const n = JSON.parse(/native reads: (\{[^}]*\})/.exec(stats)![1]!)
          // most reads never reach JavaScript; the first of each unit may, until it is open
          expect(n.served).toBeGreaterThan(50)
          expect(n.fallbacks).toBeLessThan(n.served / 4)
          expect(n.misses).toBeGreaterThan(0)
        }
        await umount(mnt)
      }
    }
  })

  it('keeps at most --open-units unit files open, closing the least recently used, and still reads everything exactly', async () => {
    const r = await newRepo(path.join(work, 'repo-units'))
    const s = path.join(work, 'units-src')
    fs.mkdirSync(s)
    let seed = 99
    for (let k = 0; k < 40; k++) {
      const b = Buffer.alloc(200_000 + k * 1000)
      for (let i = 0; i < b.length; i += 4) { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; b.writeUInt32LE(seed & 0x3f3f3f3f, i) }
      fs.writeFileSync(path.join(s, `f${k}`), b)
    }
    // 256 KiB units: the 40 files span about 32 of them
    expect((await bfs(['backup', s, '--unit-blocks', '64', '--frame-blocks', '16'], { repo: r })).code).toBe(0)
    expect(fs.readdirSync(path.join(r, 'gens/00000001')).filter((n) => n.startsWith('unit-')).length).toBeGreaterThan(25)
    for (const opt of [[], ['--no-native-read']]) {
      const mnt = mkmnt(`m-units${opt.length ? '-js' : ''}`)
      const m = await mount(['gen1', mnt, '--open-units', '3', '--cache-size', '1M', ...opt], r)
      expect(m.code).toBe(0)
      const pid = Number(/pid (\d+)/.exec(m.stdout)![1])
      // two passes over every file, eight readers at a time, compared with the source
      for (let pass = 0; pass < 2; pass++) {
        const run = await sh(`cd '${mnt}' && ls | xargs -P8 -I{} cmp '{}' '${s}/{}'`)
        expect(run.stderr).toBe('')
        expect(run.code).toBe(0)
      }
      const stats = await statsOf(m)
      const closed = JSON.parse(/cache: (\{[^}]*\})/.exec(stats)![1]!).unitsClosed
      expect(closed).toBeGreaterThan(20)
      // the bound holds, but for units in use at the moment one was trimmed (8 readers)
      const open = Number(/open units: (\d+)/.exec(stats)![1])
      // (plus units just read natively, which get a second chance)
      expect(open).toBeLessThanOrEqual(3 + 16)
      // unit files only (format 2 keeps its packs, gens/N/pack-*, open as well)
      const fds = (await sh(`ls -l /proc/${pid}/fd | grep -c '/gens/[0-9]*/unit-'`)).stdout.trim()
      expect(Number(fds)).toBe(open)
      await umount(mnt)
    }
  })
})

describe('the whole repository mounted', () => {
  it('shows gen1/ … genN/, latest and by-date/, and generations made after the mount', async () => {
    const mnt = mkmnt('m-all')
    expect((await mount([mnt])).code).toBe(0)
    expect((await sh(`ls '${mnt}'`)).stdout).toBe('by-date\ngen1\nlatest\n')
    expect((await sh(`readlink '${mnt}/latest'`)).stdout).toBe('gen1\n')
    expect((await sh(`cat '${mnt}/latest/hello.txt'`)).stdout).toBe('hello world\n')
    const d = (await sh(`ls '${mnt}/by-date'`)).stdout.trim()
    expect(d).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    expect((await sh(`readlink '${mnt}/by-date/${d}'`)).stdout).toBe('../gen1\n')
    // a backup while mounted: mounts take no lock, and the new generation appears
    fs.appendFileSync(path.join(src, 'hello.txt'), 'second\n')
    const b = await bfs(['backup', src], { repo })
    expect(b.code).toBe(0)
    // the listing is cached for about a second (kernel and vfs): wait until gen2 shows
    await sh(`end=$((SECONDS+300)); while [ $SECONDS -lt $end ]; do ls '${mnt}' | grep -q '^gen2$' && break; sleep 0.1; done`)
    expect((await sh(`ls '${mnt}'`)).stdout).toBe('by-date\ngen1\ngen2\nlatest\n')
    expect((await sh(`readlink '${mnt}/latest'`)).stdout).toBe('gen2\n')
    expect((await sh(`cat '${mnt}/gen2/hello.txt'`)).stdout).toBe('hello world\nsecond\n')
    expect((await sh(`cat '${mnt}/gen1/hello.txt'`)).stdout).toBe('hello world\n')
    expect((await sh(`diff -r '${mnt}/gen2/a' '${src}/a'`)).code).toBe(0)
  })
})

describe('. and .. in listings', () => {
  // Every Linux filesystem lists `.` and `..` (squashfuse does): `ls -a` showed neither.
  let dsrc: string
  let drepo: string
  beforeAll(async () => {
    dsrc = path.join(work, 'dots-src')
    drepo = await newRepo(path.join(work, 'dots-repo'))
    await makeTree(dsrc)
    // a few thousand long names: the kernel reads the listing in many getdents calls
    // (each offset a page into libfuse's copy), so a lost or repeated page shows in the counts
    fs.mkdirSync(path.join(dsrc, 'wide'))
    for (let i = 0; i < 4000; i++) fs.writeFileSync(path.join(dsrc, 'wide', `file-with-a-rather-long-name-${String(i).padStart(5, '0')}`), i % 7 ? '' : `${i}\n`)
    expect((await bfs(['backup', dsrc], { repo: drepo })).code).toBe(0)
  })

  /** `ls -ai1b DIR` as name → inode number. */
  const lsInodes = async (dir: string): Promise<Map<string, string>> => {
    const r = await sh(`ls -ai1b '${dir}'`) // -b: the odd name's newline escaped
    expect(r.code).toBe(0)
    const m = new Map<string, string>()
    for (const line of r.stdout.split('\n').filter(Boolean)) {
      const [, ino, name] = /^\s*(\d+) (.*)$/.exec(line)!
      expect(m.has(name!)).toBe(false)
      m.set(name!, ino!)
    }
    return m
  }
  const ino = async (p: string): Promise<string> => (await sh(`stat -c %i '${p}'`)).stdout.trim()

  it('ls -a lists them with the inodes stat gives; find, diff -r and cp -a see each entry once, as in the source', async () => {
    const mnt = mkmnt('m-dots')
    expect((await mount(['gen1', mnt], drepo)).code).toBe(0)
    expect((await sh(`ls -a '${mnt}/a'`)).stdout).toBe((await sh(`ls -a '${dsrc}/a'`)).stdout)
    expect((await sh(`ls -a '${mnt}/a'`)).stdout).toMatch(/^\.\n\.\.\n/)
    expect((await sh(`ls -a '${mnt}/emptydir'`)).stdout).toBe('.\n..\n')
    for (const [dir, parent] of [[mnt, `${mnt}/..`], [`${mnt}/a`, mnt], [`${mnt}/a/b/c`, `${mnt}/a/b`], [`${mnt}/emptydir`, mnt]] as const) {
      const m = await lsInodes(dir)
      expect(m.get('.')).toBe(await ino(dir))
      expect(m.get('..')).toBe(await ino(parent))
    }
    // ls -la: . and .. are directories with the directory's own mode and link count
    const la = (await sh(`ls -la '${mnt}/a' | awk '$NF=="." || $NF==".." {print $1, $2, $NF}'`)).stdout
    const sa = (await sh(`stat -c '%A %h' '${mnt}/a' '${mnt}'`)).stdout.split('\n')
    expect(la).toBe(`${sa[0]} .\n${sa[1]} ..\n`)
    // the wide directory, read in many getdents calls: nothing lost, nothing twice
    expect((await sh(`ls -a '${mnt}/wide' | wc -l`)).stdout.trim()).toBe('4002')
    expect((await sh(`ls -af '${mnt}/wide' | sort | uniq -d`)).stdout).toBe('')
    expect((await sh(`find '${mnt}/wide' -maxdepth 1 | wc -l`)).stdout.trim()).toBe('4001')
    expect((await sh(`cd '${mnt}/wide' && ls -a`)).stdout).toBe((await sh(`cd '${dsrc}/wide' && ls -a`)).stdout)
    // whole-tree tools skip . and .. themselves: counts and contents as in the source
    expect((await sh(`find '${mnt}' | wc -l`)).stdout).toBe((await sh(`find '${dsrc}' | wc -l`)).stdout)
    expect((await sh(`cd '${mnt}' && find . | sort | uniq -d`)).stdout).toBe('')
    expect(await diffTree(dsrc, mnt)).toBe('')
    const copy = path.join(work, 'dots-copy')
    expect((await sh(`cp -a '${mnt}' '${copy}'`)).code).toBe(0)
    expect(await diffTree(dsrc, copy)).toBe('')
    expect(await statTree(copy)).toBe(await statTree(dsrc))
    fs.rmSync(copy, { recursive: true, force: true })
    // bfs ls is not a filesystem listing: no . or .. there, in text or JSON
    const ls = await bfs(['ls', 'gen1:/a'], { repo: drepo })
    expect(ls.code).toBe(0)
    expect(ls.stdout).not.toMatch(/ \.\.?$/m)
    const lj = await bfs(['ls', '--json', 'gen1:/a'], { repo: drepo })
    expect((JSON.parse(lj.stdout) as { name: string }[]).map((e) => e.name).sort()).toEqual(fs.readdirSync(path.join(dsrc, 'a')).sort())
  })

  it('the whole-repository mount lists them at its root, in by-date/ and in each generation', async () => {
    const mnt = mkmnt('m-dots-all')
    expect((await mount([mnt], drepo)).code).toBe(0)
    expect((await sh(`ls -a '${mnt}'`)).stdout).toBe('.\n..\nby-date\ngen1\nlatest\n')
    for (const [dir, parent] of [[mnt, `${mnt}/..`], [`${mnt}/by-date`, mnt], [`${mnt}/gen1`, mnt], [`${mnt}/gen1/a`, `${mnt}/gen1`]] as const) {
      const m = await lsInodes(dir)
      expect(m.get('.')).toBe(await ino(dir))
      expect(m.get('..')).toBe(await ino(parent))
    }
    expect((await sh(`find '${mnt}/gen1' | wc -l`)).stdout).toBe((await sh(`find '${dsrc}' | wc -l`)).stdout)
    expect((await sh(`ls -ab '${mnt}/latest/' | wc -l`)).stdout.trim()).toBe(String(fs.readdirSync(dsrc).length + 2))
  })
})

describe('lifecycle and failure', () => {
  it('clear errors for a missing, non-empty or mounted mount point and an unknown generation', async () => {
    const mnt = mkmnt('m-life')
    expect((await mount(['gen1', path.join(work, 'nope')])).stderr).toMatch(/^bfs: mount point .*nope does not exist\n$/)
    fs.writeFileSync(path.join(work, 'full-dir-file'), '')
    const full = mkmnt('m-full')
    fs.writeFileSync(path.join(full, 'x'), '')
    const ne = await mount(['gen1', full])
    expect(ne.code).toBe(1)
    expect(ne.stderr).toMatch(/^bfs: mount point .* is not empty\n$/)
    expect((await mount(['gen99', mnt])).stderr).toMatch(/^bfs: no generation gen99/)
    expect((await mount(['gen1', mnt])).code).toBe(0)
    const again = await mount(['gen1', mnt])
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/is already a mount point/)
    expect((await bfs(['umount', path.join(work, 'm-full')])).stderr).toMatch(/is not mounted/)
    expect((await mount(['gen1', repo])).stderr).toMatch(/is not empty|overlaps the repository/)
    // an unusable log fails before anything is mounted, with one line
    const m2 = mkmnt('m-badlog')
    const bl = await mount(['gen1', m2, '--log', path.join(work, 'no-such-dir', 'x.log')])
    expect(bl.code).toBe(1)
    expect(bl.stderr).toMatch(/^bfs: cannot open the log .*x\.log: ENOENT\n$/)
    expect((await sh(`grep -c ' ${m2} ' /proc/mounts`)).stdout.trim()).toBe('0')
  })

  it('--allow-other lets other users in, with the kernel checking permissions as in the source', async () => {
    const base = fs.mkdtempSync('/var/tmp/bfs-perm-')
    fs.chmodSync(base, 0o755)
    const s = path.join(base, 'src')
    fs.mkdirSync(s)
    fs.writeFileSync(path.join(s, 'public'), 'public\n')
    fs.writeFileSync(path.join(s, 'secret'), 'secret\n')
    fs.chmodSync(path.join(s, 'secret'), 0o600)
    const r = await newRepo(path.join(base, 'repo'))
    expect((await bfs(['backup', s], { repo: r })).code).toBe(0)
    const asNobody = async (cmd: string) => await sh(`setpriv --reuid=65534 --regid=65534 --clear-groups bash -c "${cmd}"`)
    try {
      const closed = path.join(base, 'closed')
      fs.mkdirSync(closed)
      expect((await mount(['gen1', closed], r)).code).toBe(0)
      expect((await asNobody(`cat ${closed}/public`)).stderr).toMatch(/Permission denied/)
      const open = path.join(base, 'open')
      fs.mkdirSync(open)
      expect((await mount(['gen1', open, '--allow-other'], r)).code).toBe(0)
      expect((await asNobody(`cat ${open}/public`)).stdout).toBe('public\n')
      expect((await asNobody(`cat ${open}/secret`)).stderr).toMatch(/Permission denied/)
      expect((await sh(`cat ${open}/secret`)).stdout).toBe('secret\n')
    } finally {
      for (const m of [...mounts]) if (m.startsWith(base)) await umount(m)
      fs.rmSync(base, { recursive: true, force: true })
    }
  })

  it('a background mount is one detached process: own session, output to its log, the caller\'s pipe released', async () => {
    const mnt = mkmnt('m-detach')
    const log = path.join(work, 'detach.log')
    // $(...) returns only once every writer of the pipe is gone: the server must have let go of it
    mounts.add(mnt) // before any check: a failed one must still unmount it
    const r = await sh(`out=$('${BFS}' --repo '${repo}' mount gen1 '${mnt}' --log '${log}'); echo "rc=$? $out"`)
    expect(r.stdout).toMatch(/^rc=0 mounted gen1 at .*\(pid \d+, log /)
    const pid = Number(/pid (\d+)/.exec(r.stdout)![1])
    // the server itself is the process that answered (no second Node process in between)
    expect((await sh(`ps -o sid= -p ${pid}`)).stdout.trim()).toBe(String(pid))
    expect(fs.readlinkSync(`/proc/${pid}/fd/1`)).toBe(log)
    expect(fs.readlinkSync(`/proc/${pid}/fd/2`)).toBe(log)
    expect(fs.readFileSync(log, 'utf8')).toMatch(/serving gen1 of .* ms after start\)/)
    expect((await sh(`ls '${mnt}'`)).stdout).toBe((await sh(`ls '${src}'`)).stdout)
    // operands after `--` still mount (Node backgrounds a second process itself)
    const m2 = mkmnt('m-dashdash')
    mounts.add(m2)
    const r2 = await bfs(['mount', '--', 'gen1', m2], { repo })
    expect(r2.code).toBe(0)
    expect(r2.stderr).toBe('')
    expect((await sh(`ls '${m2}'`)).stdout).toBe((await sh(`ls '${src}'`)).stdout)
  })

  it('SIGTERM unmounts cleanly; a killed server is recovered by bfs umount', async () => {
    const mnt = mkmnt('m-sig')
    const m = await mount(['gen1', mnt])
    const pid = Number(/pid (\d+)/.exec(m.stdout)![1])
    process.kill(pid, 'SIGTERM')
    await sh(`end=$((SECONDS+300)); while [ $SECONDS -lt $end ]; do grep -q ' ${mnt} ' /proc/mounts || break; sleep 0.1; done`)
    expect((await sh(`grep -c ' ${mnt} ' /proc/mounts`)).stdout.trim()).toBe('0')
    mounts.delete(mnt)
    const m2 = await mount(['gen1', mnt])
    const pid2 = Number(/pid (\d+)/.exec(m2.stdout)![1])
    process.kill(pid2, 'SIGKILL')
    // until the process is gone (or a zombie) and the kernel has aborted its connection
    await sh(`end=$((SECONDS+300)); while [ $SECONDS -lt $end ]; do s=$(cut -d' ' -f3 /proc/${pid2}/stat 2>/dev/null); [ -z "$s" ] || [ "$s" = Z ] && break; sleep 0.05; done`)
    expect((await sh(`ls '${mnt}'`)).stderr).toMatch(/Transport endpoint is not connected|Software caused connection abort/)
    const u = await bfs(['umount', mnt])
    expect(u.code).toBe(0)
    mounts.delete(mnt)
    expect((await sh(`grep -c ' ${mnt} ' /proc/mounts`)).stdout.trim()).toBe('0')
    expect((await mount(['gen1', mnt])).code).toBe(0)
  })

  it('umount is refused while the mount is in use; --lazy detaches it and still serves open files; an unmount from outside ends the server', async () => {
    const mnt = mkmnt('m-busy')
    const m = await mount(['gen1', mnt])
    expect(m.code).toBe(0)
    const pid = Number(/pid (\d+)/.exec(m.stdout)![1])
    const gone = async (p: number): Promise<string> => (await sh(`end=$((SECONDS+300)); while [ $SECONDS -lt $end ]; do s=$(cut -d' ' -f3 /proc/${p}/stat 2>/dev/null); [ -z "$s" ] || [ "$s" = Z ] && { echo gone; exit; }; sleep 0.05; done; echo alive`)).stdout.trim()
    const mounted = async (): Promise<boolean> => (await sh(`grep -q ' ${mnt} ' /proc/mounts`)).code === 0
    // a reader holds seq.txt open: it reads a line, waits for the go file, then reads the rest
    const go = path.join(work, 'busy-go')
    // (bounded: a failed check must not leave it, and so the server, waiting forever)
    const holder = `exec 3<'${mnt}/seq.txt'; read -r first <&3; end=$((SECONDS+300)); while [ $SECONDS -lt $end ]; do [ -e '${go}' ] && break; sleep 0.05; done; echo "$first"; cat <&3 | wc -l`
    const out = path.join(work, 'busy-out')
    await sh(`(${holder}) > '${out}' 2>&1 & echo $! > '${out}.pid'`)
    await waitHolding(`${out}.pid`)
    // as umount(8): refused while in use, and the mount goes on serving
    const u = await bfs(['umount', mnt])
    expect(u.code).toBe(1)
    expect(u.stderr).toMatch(/^bfs: .*m-busy is busy \(a process is using it\); close it and try again, or detach it now with 'bfs umount --lazy'\n$/)
    expect(await mounted()).toBe(true)
    expect((await sh(`cat '${mnt}/hello.txt'`)).stdout).toBe('hello world\n')
    // the server's own SIGTERM is refused the same way (logged); the mount stays
    const log = /log (\S+)\)/.exec(m.stdout)![1]!
    process.kill(pid, 'SIGTERM')
    await sh(`end=$((SECONDS+300)); while [ $SECONDS -lt $end ]; do grep -q 'is busy (a process is using it): still serving' '${log}' && break; sleep 0.05; done`)
    expect(fs.readFileSync(log, 'utf8')).toMatch(/SIGTERM: unmounting .*m-busy\n.*m-busy is busy \(a process is using it\): still serving;/)
    expect(await mounted()).toBe(true)
    expect((await sh(`cat '${mnt}/hello.txt'`)).stdout).toBe('hello world\n')
    // lazily: gone from the namespace at once, the open file still read to its end
    const l = await bfs(['umount', '--lazy', mnt])
    expect(l.code).toBe(0)
    expect(l.stdout).toMatch(/^detached .*m-busy; files still open there are served until they are closed\n$/)
    expect(await mounted()).toBe(false)
    expect((await sh(`cut -d' ' -f3 /proc/${pid}/stat`)).stdout.trim()).toMatch(/^[RSD]$/) // still serving
    fs.writeFileSync(go, '')
    await sh(`end=$((SECONDS+300)); while [ $SECONDS -lt $end ]; do kill -0 $(cat '${out}.pid') 2>/dev/null || break; sleep 0.05; done`)
    expect(fs.readFileSync(out, 'utf8')).toBe('line 0\n49998\n') // the other lines (the last has no newline)
    // the last file closed: the server ends by itself
    expect(await gone(pid)).toBe('gone')
    mounts.delete(mnt)
    // an unmount from outside (plain umount) ends the server too: no process left behind
    const m2 = await mount(['gen1', mnt])
    const pid2 = Number(/pid (\d+)/.exec(m2.stdout)![1])
    expect((await sh(`umount '${mnt}'`)).code).toBe(0)
    mounts.delete(mnt)
    expect(await gone(pid2)).toBe('gone')
    // detached lazily from outside with a file open, a server still serves it on SIGTERM,
    // and a second signal stops it at once
    const m3 = await mount(['gen1', mnt])
    const pid3 = Number(/pid (\d+)/.exec(m3.stdout)![1])
    const log3 = /log (\S+)\)/.exec(m3.stdout)![1]!
    const go3 = path.join(work, 'busy-go3')
    await holdOpen(mnt, go3)
    expect((await sh(`umount -l '${mnt}'`)).code).toBe(0)
    mounts.delete(mnt)
    process.kill(pid3, 'SIGTERM')
    await sh(`end=$((SECONDS+300)); while [ $SECONDS -lt $end ]; do grep -q 'is detached; the files still open there are served' '${log3}' && break; sleep 0.05; done`)
    expect(fs.readFileSync(log3, 'utf8')).toMatch(/is detached; the files still open there are served until they are closed \(signal again to stop at once\)/)
    expect((await sh(`cut -d' ' -f3 /proc/${pid3}/stat`)).stdout.trim()).toMatch(/^[RSD]$/)
    process.kill(pid3, 'SIGTERM')
    expect(await gone(pid3)).toBe('gone')
    expect(fs.readFileSync(log3, 'utf8')).toMatch(/SIGTERM: stopping now; files still open at .*m-busy fail from here on/)
    fs.writeFileSync(go3, '')
    expect((await mount(['gen1', mnt])).code).toBe(0)
  })

  it('a server knows its mount by device: a newer mount at the same path is left alone, a moved one is still found', async () => {
    const mnt = mkmnt('m-same')
    const m1 = await mount(['gen1', mnt])
    const pid1 = Number(/pid (\d+)/.exec(m1.stdout)![1])
    const gone = async (p: number): Promise<boolean> => (await sh(`end=$((SECONDS+300)); while [ $SECONDS -lt $end ]; do s=$(cut -d' ' -f3 /proc/${p}/stat 2>/dev/null); [ -z "$s" ] || [ "$s" = Z ] && exit 0; sleep 0.05; done; exit 1`)).code === 0
    // a reader keeps the first mount's connection alive after a lazy detach
    const go = path.join(work, 'same-go')
    await holdOpen(mnt, go)
    expect((await bfs(['umount', '--lazy', mnt])).code).toBe(0)
    // a second mount at the same path while the first server still serves its open file
    const m2 = await mount(['gen1', mnt])
    expect(m2.code).toBe(0)
    const pid2 = Number(/pid (\d+)/.exec(m2.stdout)![1])
    fs.writeFileSync(go, '')
    expect(await gone(pid1)).toBe(true)
    // the first server, ending, neither unmounted the second mount nor removed its record
    expect((await sh(`cut -d' ' -f3 /proc/${pid2}/stat`)).stdout.trim()).toMatch(/^[RSD]$/)
    expect((await sh(`cat '${mnt}/hello.txt'`)).stdout).toBe('hello world\n')
    expect((await sh(`cat "$BFS_RUNTIME_DIR"/mount-*.pid`)).stdout).toContain(`${pid2}\n`)
    // a mount point reached through a symlink is known by its target (the kernel's name)
    const target = mkmnt('m-target')
    fs.symlinkSync(target, path.join(work, 'm-link'))
    const ml = await mount(['gen1', path.join(work, 'm-link')])
    mounts.delete(path.join(work, 'm-link'))
    mounts.add(target)
    expect(ml.stdout).toContain(`mounted gen1 at ${target} `)
    process.kill(Number(/pid (\d+)/.exec(ml.stdout)![1]), 'SIGTERM')
    expect(await gone(Number(/pid (\d+)/.exec(ml.stdout)![1]))).toBe(true)
    const logl = /log (\S+?)\)/.exec(ml.stdout)?.[1]
    expect((await sh(`grep -c ' ${target} ' /proc/mounts`)).stdout.trim(), logl && fs.existsSync(logl) ? fs.readFileSync(logl, 'utf8') : ml.stdout).toBe('0')
    mounts.delete(target)
    // moved with its parent directory, the mount is still found and unmounted by SIGTERM
    const parent = path.join(work, 'mv-a')
    fs.mkdirSync(path.join(parent, 'm'), { recursive: true })
    const m3 = await mount(['gen1', path.join(parent, 'm')])
    const pid3 = Number(/pid (\d+)/.exec(m3.stdout)![1])
    fs.renameSync(parent, path.join(work, 'mv-b'))
    mounts.delete(path.join(parent, 'm'))
    mounts.add(path.join(work, 'mv-b', 'm'))
    process.kill(pid3, 'SIGTERM')
    expect(await gone(pid3)).toBe(true)
    const log3 = /log (\S+?)\)/.exec(m3.stdout)?.[1]
    expect((await sh(`grep -c ' ${work}/mv-' /proc/mounts`)).stdout.trim(), log3 && fs.existsSync(log3) ? fs.readFileSync(log3, 'utf8') : m3.stdout).toBe('0')
    mounts.delete(path.join(work, 'mv-b', 'm'))
    expect((await bfs(['umount', mnt])).code).toBe(0)
    mounts.delete(mnt)
    expect(await gone(pid2)).toBe(true)
  })

  it('a corrupt frame fails that file with EIO, is logged, and the mount stays up', async () => {
    const r = await newRepo(path.join(work, 'repo-bad'))
    const s = path.join(work, 'bad-src')
    fs.mkdirSync(s)
    fs.writeFileSync(path.join(s, 'big'), Array.from({ length: 300000 }, (_, i) => `line ${i}`).join('\n'))
    fs.writeFileSync(path.join(s, 'small'), 'small\n')
    expect((await bfs(['backup', s], { repo: r })).code).toBe(0)
    const unit = path.join(r, 'gens/00000001/unit-00000000')
    const b = fs.readFileSync(unit)
    b[200] ^= 0x55 // in frame 0: the start of 'big' ('small' is stored after it, in the last frame)
    fs.writeFileSync(unit, b)
    const mnt = mkmnt('m-bad')
    const m = await mount(['gen1', mnt], r)
    expect(m.code).toBe(0)
    const c = await sh(`cat '${mnt}/big' > /dev/null`)
    expect(c.code).not.toBe(0)
    expect(c.stderr).toMatch(/Input\/output error/)
    expect((await sh(`cat '${mnt}/small'`)).stdout).toBe('small\n')
    const log = /log (\S+)\)/.exec(m.stdout)![1]!
    expect(fs.readFileSync(log, 'utf8')).toMatch(/read \/big: .*frame \d+ is corrupt/)
  })
})
