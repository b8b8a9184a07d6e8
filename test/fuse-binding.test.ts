import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createFastPath } from '../src/native/fastpath.js'
import { ROOT, sh, tmpdir } from './helpers.js'

// The patched fuse-native binding (patches/fuse-native+2.2.6.patch, native-notes/fuse-native.md),
// through real mounts served by small servers (test/fixtures/fuse/) in their own processes, and
// bfs's stat cache behind the binding's hook table (native/statcache.c). These must run in CI
// (root, /dev/fuse): there is no skip.

const FIXTURES = path.join(ROOT, 'test/fixtures/fuse')
const PATCH = path.join(ROOT, 'patches/fuse-native+2.2.6.patch')

/** The hook table's definition: from its magic to the end of the typedef. */
function hookStruct(file: string): string {
  const text = fs.readFileSync(file, 'utf8')
  const m = /#define FUSE_NATIVE_HOOKS_MAGIC[\s\S]*?\} fuse_native_hooks_t;/.exec(text)
  if (!m) throw new Error(`no fuse_native_hooks_t in ${file}`)
  return m[0]
}

describe('the patch', () => {
  it('defines the hook table identically to bfs (native/fuse_hooks.h)', () => {
    const ours = hookStruct(path.join(ROOT, 'native/fuse_hooks.h'))
    expect(ours).toMatch(/int \(\*read\)\(void \*ctx, uint64_t fh, char \*buf, size_t len, int64_t offset\);/)
    expect(hookStruct(path.join(ROOT, 'node_modules/fuse-native/fuse-native.c'))).toBe(ours)
    // and that is what the patch puts there
    expect(hookStruct(PATCH).replace(/^\+/gm, '')).toBe(ours)
  })

  it('stays small: only what must live in the binding (under 1030 lines; patch 5 added the read interrupts, then the open and release hooks)', () => {
    const lines = fs.readFileSync(PATCH, 'utf8').split('\n').length - 1
    expect(lines).toBeLessThan(1030)
    // no build machinery, no read path, no stat cache table in it
    expect(fs.readFileSync(PATCH, 'utf8')).not.toMatch(/bfs-build\.js|fuse-config\.js|ZSTD_|pthread_rwlock|nativeRead/)
  })
})

describe("bfs's stat cache (no FUSE)", () => {
  const P = (s: string): Buffer => Buffer.from(s, 'latin1')
  const st = (ino: number) => ({ mode: 0o100644, size: ino * 10, ino, nlink: 1, mtimeSec: 1700000000, mtimeNsec: 123456789 })

  it('keeps what readdir and getattr replies said, joined to full paths, as raw bytes', () => {
    const fp = createFastPath({ statCache: { getattr: true } })
    fp.statReplyForTest(P('/'), [[P('a'), st(1)]])
    fp.statReplyForTest(P('/dir'), [[P('b\xff\n'), st(2), 1], [P('.'), st(4)], [P('..'), st(5)], [P('nocache'), st(6), 2], [P('notype'), { ...st(7), mode: 0 }]])
    fp.statSeenForTest(null, P('/dir/c'), st(3))
    expect(fp.statGetForTest(P('/a'))).toEqual({ ...st(1), flags: 0 })
    expect(fp.statGetForTest(P('/dir/b\xff\n'))).toEqual({ ...st(2), flags: 1 })
    expect(fp.statGetForTest(P('/dir/c'))).toEqual({ ...st(3), flags: 0 })
    for (const p of ['/dir/.', '/dir/..', '/dir/nocache', '/dir/notype', '/dir/b', '/a/', '/', '/dir/', 'a', '/dir/b\xff\n/x']) expect(fp.statGetForTest(P(p))).toBeNull()
    // a newer reply of a directory replaces its older listing whole
    fp.statReplyForTest(P('/'), [[P('a'), st(9)], [P('z'), st(10)]])
    expect(fp.statGetForTest(P('/a'))!.ino).toBe(9)
    expect(fp.statGetForTest(P('/z'))!.ino).toBe(10)
    fp.statReplyForTest(P('/dir/'), [[P('d'), st(11)]]) // a trailing slash names the same directory
    expect(fp.statGetForTest(P('/dir/b\xff\n'))).toBeNull()
    expect(fp.statGetForTest(P('/dir/d'))!.ino).toBe(11)
    expect(fp.statGetForTest(P('/dir/c'))!.ino).toBe(3) // getattr replies are kept apart
    // a reply with nothing to keep drops the directory's listing
    fp.statReplyForTest(P('/'), [[P('.'), st(12)]])
    expect(fp.statGetForTest(P('/a'))).toBeNull()
    expect(fp.statInfo()).toMatchObject({ entries: 2, inserts: 6 })
    // close (after the mount is gone) empties it
    expect(fp.close()).toBe(0)
    expect(fp.statGetForTest(P('/dir/d'))).toBeNull()
    expect(fp.statGetForTest(P('/dir/c'))).toBeNull()
  })

  it('finds every name of a big listing, duplicates resolved to the later stat', () => {
    const fp = createFastPath({ statCache: { maxEntries: 10_000 } })
    const names = Array.from({ length: 5000 }, (_, i) => `f${(i * 7919) % 5000}`)
    fp.statReplyForTest(P('/big'), [...names.map((n, i): [Buffer, ReturnType<typeof st>] => [P(n), st(i + 1)]), [P('f17'), st(99_999)]])
    names.forEach((n, i) => {
      if (n !== 'f17') expect(fp.statGetForTest(P(`/big/${n}`))!.ino).toBe(i + 1)
    })
    expect(fp.statGetForTest(P('/big/f17'))!.ino).toBe(99_999)
    expect(fp.statGetForTest(P('/big/f5000'))).toBeNull()
  })

  it('without getattr, keeps only what readdir said', () => {
    const fp = createFastPath({ statCache: {} })
    fp.statSeenForTest(null, P('/x'), st(1))
    fp.statSeenForTest(P('/'), P('y'), st(2))
    expect(fp.statGetForTest(P('/x'))).toBeNull()
    expect(fp.statGetForTest(P('/y'))).not.toBeNull()
  })

  it('is bounded: whole listings evicted oldest first, a looked-up one kept a turn longer', () => {
    const fp = createFastPath({ statCache: { maxEntries: 100 } })
    const reply = (d: number): void => fp.statReplyForTest(P(`/d${d}`), Array.from({ length: 10 }, (_, i): [Buffer, ReturnType<typeof st>] => [P(`f${i}`), st(d * 100 + i + 1)]))
    for (let d = 0; d < 10; d++) reply(d)
    expect(fp.statInfo()).toMatchObject({ entries: 100, inserts: 100 })
    expect(fp.statGetForTest(P('/d0/f3'))!.ino).toBe(4) // referenced: a second chance
    reply(10)
    reply(11)
    expect(fp.statInfo().entries).toBeLessThanOrEqual(100)
    expect(fp.statGetForTest(P('/d0/f9'))).not.toBeNull()
    expect(fp.statGetForTest(P('/d1/f0'))).toBeNull() // the oldest unreferenced, dropped whole
    expect(fp.statGetForTest(P('/d2/f0'))).toBeNull()
    expect(fp.statGetForTest(P('/d3/f0'))).not.toBeNull()
    expect(fp.statGetForTest(P('/d11/f9'))!.ino).toBe(1110)
    // a reply larger than the whole bound is not kept (and drops nothing)
    fp.statReplyForTest(P('/huge'), Array.from({ length: 101 }, (_, i): [Buffer, ReturnType<typeof st>] => [P(`h${i}`), st(i + 1)]))
    expect(fp.statGetForTest(P('/huge/h0'))).toBeNull()
    expect(fp.statGetForTest(P('/d11/f9'))).not.toBeNull()
  })
})

let work: string
const servers = new Set<{ proc: ChildProcess; mnt: string }>()

beforeAll(() => {
  expect(fs.existsSync('/dev/fuse')).toBe(true)
  work = tmpdir('bfs-fuse-binding-')
})
async function stop(s: { proc: ChildProcess; mnt: string }): Promise<void> {
  if (s.proc.exitCode === null && s.proc.signalCode === null) {
    const exited = new Promise((r) => s.proc.once('exit', r))
    await sh(`fusermount -u '${s.mnt}' 2>/dev/null`)
    s.proc.kill('SIGTERM')
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))])
    if (s.proc.exitCode === null) s.proc.kill('SIGKILL')
  }
  if ((await sh(`grep -q ' ${s.mnt} ' /proc/mounts`)).code === 0) await sh(`fusermount -uz '${s.mnt}'`)
  servers.delete(s)
}
afterEach(async () => {
  for (const s of [...servers]) await stop(s)
})
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

/** Starts a fixture server on a fresh mount point; resolves once it printed ready (or error). */
async function serve(fixture: string, opts: Record<string, unknown> = {}): Promise<{ proc: ChildProcess; mnt: string; out: () => string; stats: () => Promise<string> }> {
  const mnt = fs.mkdtempSync(path.join(work, 'mnt-'))
  const proc = spawn(process.execPath, [path.join(FIXTURES, fixture), mnt, JSON.stringify(opts)], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()))
  const s = { proc, mnt }
  servers.add(s)
  await new Promise<void>((resolve) => {
    const t = setInterval(() => {
      if (/^(ready|error)/m.test(out) || proc.exitCode !== null) {
        clearInterval(t)
        resolve()
      }
    }, 20)
  })
  const stats = async (): Promise<string> => {
    const before = out.split('\n').filter((l) => l.startsWith('stats:')).length
    proc.kill('SIGUSR2')
    for (let i = 0; i < 500; i++) {
      const lines = out.split('\n').filter((l) => l.startsWith('stats:'))
      if (lines.length > before) return lines.pop()!
      await new Promise((r) => setTimeout(r, 20))
    }
    throw new Error('no stats line')
  }
  return { ...s, out: () => out, stats }
}
const jsCount = (stats: string, what: string): number => Number(new RegExp(`js ${what}=(\\d+)`).exec(stats)![1])

describe('the patched binding, mounted', () => {
  it('64-bit inodes, hard links, nanosecond times, nlink/blksize/blocks, pre-1970 times, statfs above 2^32', async () => {
    const m = await serve('memfs.mjs', { useIno: true, hooks: true, readOnly: true, attrTimeout: 3600, entryTimeout: 3600 })
    expect(m.out()).toMatch(/^ready/m)
    const a = (await sh(`stat -c '%i %h %y' '${m.mnt}/links/a' '${m.mnt}/links/b'`)).stdout.trim().split('\n')
    expect(a).toEqual(['1099511627783 2 2023-11-14 22:13:20.123456789 +0000', '1099511627783 2 2023-11-14 22:13:20.123456789 +0000'])
    expect((await sh(`ls -i '${m.mnt}/links' | awk '{print $1}' | sort -u`)).stdout.trim()).toBe('1099511627783') // readdir d_ino
    expect((await sh(`stat -c '%y' '${m.mnt}/big'`)).stdout).toMatch(/\.123456789 /) // BigInt mtimeNs
    expect((await sh(`stat -c '%i %o %b %h %.9Y %.9X %.9Z' '${m.mnt}/odd'`)).stdout.trim()).toBe('12345678901234567890 65536 7 3 -1.500000000 10.000000005 1.234567800')
    expect((await sh(`stat -f -c '%b %f' '${m.mnt}'`)).stdout.trim()).toBe(`${2 ** 33} ${2 ** 32 + 5}`)
    const missing = await sh(`stat '${m.mnt}/nonexistent'`)
    expect(missing.code).not.toBe(0)
    expect(missing.stderr).toMatch(/No such file/)
  })

  it('names and link targets that are not UTF-8 round-trip (latin1 = raw bytes)', async () => {
    const m = await serve('memfs.mjs', { useIno: true, hooks: true, readOnly: true })
    const names = (await sh(`cd '${m.mnt}' && find . -maxdepth 1 -name 'raw*' -print0 | od -An -tx1`)).stdout.replace(/\s+/g, ' ').trim()
    expect(names).toBe('2e 2f 72 61 77 ff fe 00') // ./raw\xff\xfe
    const target = (await sh(`readlink "$(printf '${m.mnt}/raw\\377\\376')" | od -An -tx1`)).stdout.replace(/\s+/g, ' ').trim()
    expect(target).toBe('2f 72 61 77 fd 0a') // /raw\xfd
  })

  it('with the hook table, a cold stat of every entry never reaches JavaScript, and says what JavaScript says', async () => {
    const opts = { useIno: true, attrTimeout: 3600, entryTimeout: 3600, negativeTimeout: 60 }
    const walk = `cd MNT && find . -printf '%p %i %n %s %T@ %m\\n' | sort | md5sum`
    const plain = await serve('memfs.mjs', opts)
    const want = (await sh(walk.replace('MNT', `'${plain.mnt}'`))).stdout
    expect(jsCount(await plain.stats(), 'getattr')).toBeGreaterThan(80_000)
    await stop(plain)
    const m = await serve('memfs.mjs', { ...opts, hooks: true, readOnly: true })
    expect((await sh(`find '${m.mnt}' | wc -l`)).stdout.trim()).toBe('90809')
    await stop(m)
    const c = await serve('memfs.mjs', { ...opts, hooks: true, readOnly: true })
    expect((await sh(walk.replace('MNT', `'${c.mnt}'`))).stdout).toBe(want)
    const stats = await c.stats()
    expect(jsCount(stats, 'getattr')).toBeLessThan(100) // the root, and what no readdir described
    expect(JSON.parse(/cache=(\{.*\})/.exec(stats)![1]!).hits).toBeGreaterThan(80_000)
    // ls -l asks two xattrs of every file: entries marked noXattrs are answered without JavaScript
    expect((await sh(`ls -l '${c.mnt}/wide' | wc -l`)).stdout.trim()).toBe('10001')
    expect((await sh(`getfattr -d -m - '${c.mnt}/wide/w7' '${c.mnt}/big'; echo rc=$?`)).stdout.trim()).toBe('rc=0')
    expect(jsCount(await c.stats(), 'getxattr')).toBe(0)
  })

  it('reads data exactly (reads without a read hook go to JavaScript)', async () => {
    const m = await serve('memfs.mjs', { useIno: true, hooks: true, readOnly: true, kernelCache: true, maxRead: 1 << 20 })
    const sum = (await sh(`head -c 268435456 '${m.mnt}/big' | md5sum`)).stdout
    expect(sum).toBe((await sh(`head -c 268435456 /dev/zero | tr '\\0' '\\7' | md5sum`)).stdout)
    expect((await sh(`cat '${m.mnt}/links/a'`)).stdout).toBe('link\n')
  })

  it('a malformed readdir reply neither hangs the request nor loses the good names', async () => {
    const m = await serve('edgefs.mjs')
    expect(m.out()).toMatch(/^ready/m)
    expect((await sh(`timeout 10 ls -f '${m.mnt}/bad' | sort | tr '\\n' ' '`)).stdout).toBe('ok ok2 ')
    expect((await sh(`timeout 10 ls -f '${m.mnt}/badstats' | sort | tr '\\n' ' '`)).stdout).toBe('x y ')
  })

  it('refuses a hook table on a writable mount, and a value that is not a hook table of this ABI', async () => {
    const rw = await serve('memfs.mjs', { hooks: true })
    expect(rw.out()).toMatch(/^error: fuse-native: hooks need readOnly: true/m)
    for (const bad of ['object', 'external']) {
      const m = await serve('memfs.mjs', { badHooks: bad, readOnly: true })
      expect(m.out()).toMatch(/^error: fuse-native: the hooks table does not match this build/m)
      expect((await sh(`grep -c ' ${m.mnt} ' /proc/mounts`)).stdout.trim()).toBe('0')
    }
  })

  it('passes the kernel\'s interrupt of a read waiting in JavaScript on: a reader killed in it exits, one that handles the signal gets EINTR', async () => {
    // /stall's read is answered only when interrupted. O_DIRECT: a synchronous FUSE read
    // (the kernel's request_wait_answer), for which the kernel sends FUSE_INTERRUPT when its
    // reader gets a signal; without the patch's pass-on, a reader killed there stays in
    // state D until the read is answered, i.e. here for ever
    const m = await serve('memfs.mjs', { useIno: true, readOnly: true })
    const f = path.join(m.mnt, 'stall')
    const stack = (pid: number | undefined): string => {
      try {
        return fs.readFileSync(`/proc/${pid}/stack`, 'utf8')
      } catch {
        return ''
      }
    }
    const run = async (cmd: string, args: string[], sig: NodeJS.Signals): Promise<{ code: number | null; signal: string | null; out: string }> => {
      const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] })
      let out = ''
      p.stdout!.on('data', (d: Buffer) => (out += d.toString()))
      const exited = new Promise<{ code: number | null; signal: string | null }>((r) => p.on('close', (code, signal) => r({ code, signal })))
      try {
        // in the read itself (not a lookup or open that the signal would find on the way)
        for (let t = Date.now() + 30_000; !/request_wait_answer[^]*fuse_direct_io/.test(stack(p.pid)); await new Promise((r) => setTimeout(r, 20))) {
          if (Date.now() > t) throw new Error(`${cmd} did not come to wait for its read: ${stack(p.pid)}`)
        }
        p.kill(sig)
        const r = await Promise.race([exited, new Promise<null>((r) => setTimeout(r, 10_000, null))])
        if (!r) throw new Error(`${cmd} is still held 10 s after ${sig}: ${stack(p.pid)}`)
        return { ...r, out }
      } finally {
        if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL')
      }
    }
    const killed = await run('dd', [`if=${f}`, 'of=/dev/null', 'bs=4096', 'count=1', 'iflag=direct'], 'SIGKILL')
    expect(killed.signal).toBe('SIGKILL')
    const py = 'import os, sys, mmap\nfd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)\nm = mmap.mmap(-1, 4096)\ntry:\n    os.readv(fd, [m])\nexcept KeyboardInterrupt:\n    print("interrupted", flush=True)'
    const handled = await run('python3', ['-c', py, f], 'SIGINT')
    expect(handled).toMatchObject({ code: 0, out: 'interrupted\n' })
    expect(m.out().split('\n').filter((l) => l === 'interrupted read of /stall')).toHaveLength(2)
    // reads answered at once are as before
    expect((await sh(`cat '${m.mnt}/links/a'`)).stdout).toBe('link\n')
  })

  it('unmounts on SIGTERM and the server exits', async () => {
    const m = await serve('memfs.mjs', { useIno: true, hooks: true, readOnly: true })
    expect((await sh(`ls '${m.mnt}'`)).stdout).toContain('links')
    const exited = new Promise((r) => m.proc.once('exit', r))
    m.proc.kill('SIGTERM')
    await exited
    expect((await sh(`grep -c ' ${m.mnt} ' /proc/mounts`)).stdout.trim()).toBe('0')
  })
})
