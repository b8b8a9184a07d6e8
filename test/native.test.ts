/**
 * Tests of the bfs_native addon through its typed wrapper, on real files with
 * real tools (stat, ls, setfattr/getfattr from Debian `attr`, truncate, dd,
 * mkfifo, losetup/blockdev). No mocks.
 *
 * Where the files live: xattrs (user.*) and holes depend on the filesystem, so
 * each candidate base directory is probed first (setfattr user.* must work and a
 * truncated file must be sparse). The first one that passes is the main test
 * directory: os.tmpdir() (ext4 on the development machines), else /var/tmp,
 * else native/build/ inside the checkout. The filesystem-dependent tests (xattrs,
 * dataRegions, setTimes) also run on every other passing candidate on a
 * different filesystem, e.g. the tmpfs at /dev/shm.
 */
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import {
  ADDON_FUNCTIONS,
  STAT_FIELDS,
  S_ATIME_NSEC,
  S_ATIME_SEC,
  S_BLOCKS,
  S_CTIME_NSEC,
  S_CTIME_SEC,
  S_DEV,
  S_ERRNO,
  S_GID,
  S_INO_HI,
  S_INO_LO,
  S_MODE,
  S_MTIME_NSEC,
  S_MTIME_SEC,
  S_NLINK,
  S_RDEV_MAJOR,
  S_RDEV_MINOR,
  S_SIZE,
  S_UID,
  alignedBuffer,
  adviseHugePages,
  READ_FILE_INFO,
  READ_FILE_SHORT,
  READ_FILE_XATTRS,
  ReadFileStep,
  readFilesAsync,
  scanDirAsync,
  blockDeviceSectorSize,
  atConstants,
  blockDeviceSize,
  close,
  dataRegions,
  flushBlockDevice,
  freezeFs,
  thawFs,
  fadvise,
  fchmodat,
  fchownat,
  fsetxattr,
  flock,
  fstatRecord,
  fstatatRecord,
  futimens,
  linkat,
  mkdirat,
  mknodat,
  openBeneathWalk,
  openat2,
  renameat2,
  setxattrat,
  symlinkat,
  unlinkat,
  utimensat,
  getXattrs,
  lstatRecord,
  mknod,
  scanDir,
  setTimes,
  setXattr,
  BLAKE3_OUT_BYTES,
  Blake3Hasher,
  blake3,
  blake3Into,
  blake3Version,
} from '../src/native/index.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const ADDON = path.resolve(HERE, '../native/build/Release/bfs_native.node')
const IS_ROOT = process.getuid?.() === 0
const S_IFMT = 0o170000
const S_IFIFO = 0o010000
const S_IFCHR = 0o020000
const S_IFDIR = 0o040000
const S_IFBLK = 0o060000
const S_IFREG = 0o100000
const S_IFLNK = 0o120000
const S_IFSOCK = 0o140000

/** Runs a tool; returns stdout as a Buffer (throws with stderr on failure). */
function run(cmd: string, args: string[]): Buffer {
  return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
}
function runText(cmd: string, args: string[]): string {
  return run(cmd, args).toString('utf8').trim()
}

/** Joins a directory (string) and a raw name (Buffer) into a raw path. */
function rawJoin(dir: string, name: Buffer): Buffer {
  return Buffer.concat([Buffer.from(dir + '/'), name])
}

interface TestFs {
  base: string
  dir: string
  fsType: string
  dev: number
}

/** Makes a temp dir under `base` and checks user xattrs and sparse files work there. */
function probe(base: string): TestFs | undefined {
  let dir: string
  try {
    fs.mkdirSync(base, { recursive: true })
    dir = fs.mkdtempSync(path.join(base, 'bfs-native-'))
  } catch {
    return undefined
  }
  const keep = (() => {
    const f = path.join(dir, 'probe')
    fs.writeFileSync(f, 'p')
    const r = spawnSync('setfattr', ['-n', 'user.probe', '-v', '1', f], { encoding: 'utf8' })
    if (r.error) throw new Error(`setfattr is not installed (Debian package attr; run make deps): ${r.error.message}`)
    if (r.status !== 0) return false // no user xattrs on this filesystem
    const s = path.join(dir, 'sparse')
    run('truncate', ['-s', '8M', s])
    const fd = fs.openSync(s, 'r+')
    fs.writeSync(fd, 'x', 4 << 20)
    fs.closeSync(fd)
    const sparse = fs.statSync(s).blocks * 512 < 1 << 20
    fs.rmSync(f)
    fs.rmSync(s)
    return sparse
  })()
  if (!keep) {
    fs.rmSync(dir, { recursive: true, force: true })
    return undefined
  }
  return { base, dir, fsType: runText('stat', ['-f', '-c', '%T', dir]), dev: fs.statSync(dir).dev }
}

const candidates = [os.tmpdir(), '/var/tmp', path.resolve(HERE, '../native/build/test-tmp')]
let main: TestFs | undefined
for (const base of candidates) {
  main = probe(base)
  if (main) break
}
if (!main) throw new Error(`no directory with user xattrs and sparse files among ${candidates.join(', ')}`)
const MAIN: TestFs = main
// Further filesystems for the fs-dependent tests (tmpfs at /dev/shm here).
const extra = ['/dev/shm']
  .map((b) => (fs.existsSync(b) ? probe(b) : undefined))
  .filter((t): t is TestFs => t !== undefined && t.dev !== MAIN.dev)
const ALL_FS: TestFs[] = [MAIN, ...extra]

afterAll(() => {
  for (const t of ALL_FS) fs.rmSync(t.dir, { recursive: true, force: true })
})

let counter = 0
/** A fresh subdirectory of a test filesystem's temp dir. */
function freshDir(t: TestFs = MAIN): string {
  const d = path.join(t.dir, `t${++counter}`)
  fs.mkdirSync(d)
  return d
}

/** Asserts a thrown error looks like Node's own fs errors. */
function expectErrno(fn: () => unknown, code: string, errno: number, syscall: string, p?: string): void {
  let err: unknown
  try {
    fn()
  } catch (e) {
    err = e
  }
  expect(err, `expected ${code} from ${syscall}`).toBeInstanceOf(Error)
  const e = err as NodeJS.ErrnoException
  expect(e.code).toBe(code)
  expect(e.errno).toBe(-errno)
  expect(e.syscall).toBe(syscall)
  if (p !== undefined) {
    expect(e.path).toBe(p)
    expect(e.message).toMatch(new RegExp(`^${code}: [a-z][^,]*, ${syscall} '`))
    expect(e.message.endsWith(`, ${syscall} '${p}'`)).toBe(true)
  } else {
    expect(e.message).toMatch(new RegExp(`^${code}: [a-z][^,]*, ${syscall}$`))
  }
}

function expectArgError(fn: () => unknown, name: 'TypeError' | 'RangeError', code: string): void {
  let err: unknown
  try {
    fn()
  } catch (e) {
    err = e
  }
  expect((err as Error)?.name).toBe(name)
  expect((err as NodeJS.ErrnoException).code).toBe(code)
}

/** One entry as GNU stat prints it. */
interface ToolStat {
  dev: number
  ino: bigint
  mode: number
  nlink: number
  uid: number
  gid: number
  rdevMajor: number
  rdevMinor: number
  size: number
  blocks: number
  atime: [number, number]
  mtime: [number, number]
  ctime: [number, number]
}

function parseTime(s: string): [number, number] {
  // "%.9X" prints seconds.nanoseconds; before 1970 GNU stat prints e.g. "-1.000000005" for -1 s + 5 ns.
  const [sec, frac] = s.split('.')
  return [Number(sec), Number(frac)]
}

const STAT_FMT = '%d %i %f %h %u %g %t %T %s %b %.9X %.9Y %.9Z'
function parseToolStat(line: string): ToolStat {
  const f = line.split(' ')
  return {
    dev: Number(f[0]),
    ino: BigInt(f[1]!),
    mode: parseInt(f[2]!, 16),
    nlink: Number(f[3]),
    uid: Number(f[4]),
    gid: Number(f[5]),
    rdevMajor: parseInt(f[6]!, 16),
    rdevMinor: parseInt(f[7]!, 16),
    size: Number(f[8]),
    blocks: Number(f[9]),
    atime: parseTime(f[10]!),
    mtime: parseTime(f[11]!),
    ctime: parseTime(f[12]!),
  }
}

/** `stat` (not following symlinks) of every entry of dir, keyed by the name's hex. */
function toolStatDir(dir: string): Map<string, ToolStat> {
  const out = run('sh', ['-c', `cd "$1" && exec stat --printf '%n\\0${STAT_FMT}\\0' -- * .[!.]*`, 'sh', dir])
  const parts: Buffer[] = []
  let start = 0
  for (let i = 0; i < out.length; i++) {
    if (out[i] === 0) {
      parts.push(out.subarray(start, i))
      start = i + 1
    }
  }
  const m = new Map<string, ToolStat>()
  for (let i = 0; i + 1 < parts.length; i += 2) m.set(parts[i]!.toString('hex'), parseToolStat(parts[i + 1]!.toString()))
  return m
}

function toolStat(p: string): ToolStat {
  return parseToolStat(runText('stat', ['--printf', STAT_FMT, '--', p]))
}

/** Names in readdir order, as `ls -f` lists them (raw bytes). */
function lsF(dir: string): Buffer[] {
  const out = run('ls', ['-f', '--zero', '--', dir])
  const names: Buffer[] = []
  let start = 0
  for (let i = 0; i < out.length; i++) {
    if (out[i] === 0) {
      const n = out.subarray(start, i)
      if (!n.equals(Buffer.from('.')) && !n.equals(Buffer.from('..'))) names.push(n)
      start = i + 1
    }
  }
  return names
}

function expectRecordMatches(rec: Float64Array, off: number, t: ToolStat): void {
  expect(rec[off + S_ERRNO]).toBe(0)
  expect(rec[off + S_DEV]).toBe(t.dev)
  expect(BigInt(rec[off + S_INO_HI]!) * 2n ** 32n + BigInt(rec[off + S_INO_LO]!)).toBe(t.ino)
  expect(rec[off + S_MODE]).toBe(t.mode)
  expect(rec[off + S_NLINK]).toBe(t.nlink)
  expect(rec[off + S_UID]).toBe(t.uid)
  expect(rec[off + S_GID]).toBe(t.gid)
  expect(rec[off + S_RDEV_MAJOR]).toBe(t.rdevMajor)
  expect(rec[off + S_RDEV_MINOR]).toBe(t.rdevMinor)
  expect(rec[off + S_SIZE]).toBe(t.size)
  expect(rec[off + S_BLOCKS]).toBe(t.blocks)
  expect([rec[off + S_ATIME_SEC], rec[off + S_ATIME_NSEC]]).toEqual(t.atime)
  expect([rec[off + S_MTIME_SEC], rec[off + S_MTIME_NSEC]]).toEqual(t.mtime)
  expect([rec[off + S_CTIME_SEC], rec[off + S_CTIME_NSEC]]).toEqual(t.ctime)
}

describe('test filesystems', () => {
  it('found a directory with user xattrs and holes', () => {
    // Logged so a run shows which filesystems were exercised.
    console.log(`native tests on: ${ALL_FS.map((t) => `${t.dir} (${t.fsType})`).join(', ')}`)
    expect(ALL_FS.length).toBeGreaterThan(0)
  })
})

describe('scanDir', () => {
  const RAW_NAME = Buffer.from([0x66, 0xff, 0xfe, 0x0a, 0x20]) // "f", invalid UTF-8, newline, space
  let dir: string

  beforeAll(() => {
    dir = freshDir()
    fs.writeFileSync(path.join(dir, 'file.txt'), 'hello')
    fs.linkSync(path.join(dir, 'file.txt'), path.join(dir, 'hard'))
    fs.mkdirSync(path.join(dir, 'sub'))
    fs.symlinkSync('file.txt', path.join(dir, 'link'))
    fs.symlinkSync('does-not-exist', path.join(dir, 'dangling'))
    run('mkfifo', [path.join(dir, 'fifo')])
    fs.writeFileSync(path.join(dir, '.hidden'), '')
    fs.writeFileSync(rawJoin(dir, RAW_NAME), 'raw')
    run('truncate', ['-s', '10M', path.join(dir, 'sparse')])
    if (IS_ROOT) run('mknod', [path.join(dir, 'null-dev'), 'c', '1', '3'])
  })

  it('lists every child except . and .. in readdir order, names as raw bytes', () => {
    const { names, stats } = scanDir(dir)
    expect(names.every((n) => Buffer.isBuffer(n))).toBe(true)
    expect(names.map((n) => n.toString('hex'))).toEqual(lsF(dir).map((n) => n.toString('hex')))
    expect(names.some((n) => n.equals(RAW_NAME))).toBe(true)
    expect(stats).toBeInstanceOf(Float64Array)
    expect(stats.length).toBe(names.length * STAT_FIELDS)
  })

  it('gives for each child exactly what stat(1) reports (lstat semantics)', () => {
    const tool = toolStatDir(dir)
    const { names, stats } = scanDir(dir)
    expect(names.length).toBe(tool.size)
    names.forEach((name, i) => {
      const t = tool.get(name.toString('hex'))
      expect(t, `stat(1) lists ${name.toString('hex')}`).toBeDefined()
      expectRecordMatches(stats, i * STAT_FIELDS, t!)
    })
    const byName = (n: string) => stats.subarray(names.findIndex((x) => x.equals(Buffer.from(n))) * STAT_FIELDS)
    expect(byName('link')[S_MODE]! & S_IFMT).toBe(S_IFLNK) // not followed
    expect(byName('link')[S_SIZE]).toBe('file.txt'.length)
    expect(byName('dangling')[S_MODE]! & S_IFMT).toBe(S_IFLNK)
    expect(byName('fifo')[S_MODE]! & S_IFMT).toBe(S_IFIFO)
    expect(byName('sub')[S_MODE]! & S_IFMT).toBe(S_IFDIR)
    expect(byName('hard')[S_NLINK]).toBe(2)
    expect(byName('sparse')[S_SIZE]).toBe(10 << 20)
    expect(byName('sparse')[S_BLOCKS]).toBe(0)
    if (IS_ROOT) {
      expect(byName('null-dev')[S_MODE]! & S_IFMT).toBe(S_IFCHR)
      expect([byName('null-dev')[S_RDEV_MAJOR], byName('null-dev')[S_RDEV_MINOR]]).toEqual([1, 3])
    }
  })

  it('accepts the directory as a Buffer of raw bytes', () => {
    const sub = rawJoin(dir, Buffer.from([0xc3, 0x28])) // invalid UTF-8 directory name
    fs.mkdirSync(sub)
    fs.writeFileSync(Buffer.concat([sub, Buffer.from('/inner')]), 'x')
    const { names, stats } = scanDir(sub)
    expect(names.map(String)).toEqual(['inner'])
    expect(stats[S_SIZE]).toBe(1)
    fs.rmSync(sub, { recursive: true })
  })

  it('returns empty results for an empty directory', () => {
    const { names, stats } = scanDir(freshDir())
    expect(names).toEqual([])
    expect(stats.length).toBe(0)
  })

  it('handles a large directory with long names (buffers grow)', () => {
    const big = freshDir()
    const expected = new Set<string>()
    for (let i = 0; i < 3000; i++) {
      const n = `${i}-${'n'.repeat(i % 250)}`
      fs.writeFileSync(path.join(big, n), String(i))
      expected.add(n)
    }
    const { names, stats } = scanDir(big)
    expect(names.map(String).sort()).toEqual([...expected].sort())
    const wrong = names.filter(
      (n, i) =>
        stats[i * STAT_FIELDS + S_SIZE] !== String(parseInt(String(n), 10)).length ||
        (stats[i * STAT_FIELDS + S_MODE]! & S_IFMT) !== S_IFREG,
    )
    expect(wrong.map(String)).toEqual([])
    // The name Buffers are independent views: distinct, non-overlapping byte ranges.
    expect(names[0]!.equals(names[1]!)).toBe(false)
    expect(names.map((n) => n.byteOffset + n.length).reduce((a, b) => Math.max(a, b))).toBeLessThanOrEqual(
      names[0]!.buffer.byteLength,
    )
  })

  it('throws ENOENT / ENOTDIR with syscall opendir', () => {
    const missing = path.join(dir, 'missing')
    expectErrno(() => scanDir(missing), 'ENOENT', 2, 'opendir', missing)
    const file = path.join(dir, 'file.txt')
    expectErrno(() => scanDir(file), 'ENOTDIR', 20, 'opendir', file)
    const err = (() => {
      try {
        scanDir(missing)
      } catch (e) {
        return e as Error
      }
    })()
    expect(err?.message).toBe(`ENOENT: no such file or directory, opendir '${missing}'`)
  })

  it('rejects bad arguments with typed errors', () => {
    expectArgError(() => scanDir('a\0b'), 'TypeError', 'ERR_INVALID_ARG_VALUE')
    expectArgError(() => scanDir(Buffer.from('a\0b')), 'TypeError', 'ERR_INVALID_ARG_VALUE')
    expectArgError(() => scanDir(42 as unknown as string), 'TypeError', 'ERR_INVALID_ARG_TYPE')
  })

  it('marks a child that cannot be stat()ed with S_ERRNO, and reports EACCES (as an unprivileged user)', () => {
    // A directory with read but no search permission: readdir works, fstatat fails with EACCES.
    // Root bypasses permission checks, so the check runs in a child process as uid/gid 65534.
    const d = freshDir()
    fs.chmodSync(MAIN.dir, 0o755)
    fs.chmodSync(d, 0o755)
    fs.mkdirSync(path.join(d, 'noexec'))
    fs.writeFileSync(path.join(d, 'noexec', 'a'), 'x')
    fs.chmodSync(path.join(d, 'noexec'), 0o444)
    fs.mkdirSync(path.join(d, 'noread'))
    fs.chmodSync(path.join(d, 'noread'), 0o311)
    fs.copyFileSync(ADDON, path.join(d, 'addon.node'))
    fs.writeFileSync(
      path.join(d, 'child.cjs'),
      `const n = require(${JSON.stringify(path.join(d, 'addon.node'))})
      const r = n.scanDirPacked(${JSON.stringify(path.join(d, 'noexec'))})
      let err = null
      try { n.scanDirPacked(${JSON.stringify(path.join(d, 'noread'))}) } catch (e) { err = { code: e.code, errno: e.errno, syscall: e.syscall, message: e.message } }
      process.stdout.write(JSON.stringify({ names: r.blob.toString(), stats: Array.from(r.stats), err }))`,
    )
    fs.chmodSync(path.join(d, 'child.cjs'), 0o644)
    const [cmd, args] = IS_ROOT
      ? ['setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, path.join(d, 'child.cjs')]]
      : [process.execPath, [path.join(d, 'child.cjs')]]
    const out = JSON.parse(runText(cmd as string, args as string[])) as {
      names: string
      stats: number[]
      err: { code: string; errno: number; syscall: string; message: string } | null
    }
    expect(out.names).toBe('a')
    const expected = new Array<number>(STAT_FIELDS).fill(0)
    expected[S_ERRNO] = 13 // EACCES, every other field 0
    expect(out.stats).toEqual(expected)
    expect(out.err).toEqual({
      code: 'EACCES',
      errno: -13,
      syscall: 'opendir',
      message: `EACCES: permission denied, opendir '${path.join(d, 'noread')}'`,
    })
    fs.chmodSync(path.join(d, 'noexec'), 0o755)
    fs.chmodSync(path.join(d, 'noread'), 0o755)
  })
})

describe('scanDirAsync, readFilesAsync, adviseHugePages (the format 2 walk)', () => {
  it('scanDirAsync gives what scanDir gives, sorted bytewise; a missing directory rejects with ENOENT (opendir)', async () => {
    const d = freshDir()
    for (const n of ['b', 'a', 'C', 'ab']) fs.writeFileSync(path.join(d, n), n)
    fs.writeFileSync(rawJoin(d, Buffer.from([0x61, 0xff])), 'raw')
    const sync = scanDir(d)
    const as = await scanDirAsync(d)
    const hex = (b: Buffer): string => b.toString('hex')
    expect(as.names.map(hex)).toEqual([...sync.names].sort(Buffer.compare).map(hex))
    as.names.forEach((n, i) => {
      const j = sync.names.findIndex((m) => m.equals(n))
      expect([...as.stats.subarray(i * STAT_FIELDS, (i + 1) * STAT_FIELDS)]).toEqual([...sync.stats.subarray(j * STAT_FIELDS, (j + 1) * STAT_FIELDS)])
    })
    await expect(scanDirAsync(path.join(d, 'missing'))).rejects.toMatchObject({ code: 'ENOENT', syscall: 'opendir' })
  })

  it('readFilesAsync reads small files whole, zero-filled to the block, with both fstats; leaves the others to the caller and says why', async () => {
    const d = freshDir()
    const small = Buffer.from('hello, small file')
    fs.writeFileSync(path.join(d, 'small'), small)
    const two = Buffer.alloc(4096 + 10, 7)
    two.fill(0, 0, 4096) // first block all zero
    fs.writeFileSync(path.join(d, 'two'), two)
    fs.writeFileSync(path.join(d, 'grown'), Buffer.alloc(5000, 1)) // two blocks, one slot given
    run('truncate', ['-s', '64K', path.join(d, 'sparse')])
    fs.mkdirSync(path.join(d, 'dir'))
    fs.writeFileSync(path.join(d, 'xattr'), 'x')
    run('setfattr', ['-n', 'user.k', '-v', 'v', path.join(d, 'xattr')])
    const names = ['small', 'two', 'grown', 'missing', 'sparse', 'dir', 'xattr'].map((n) => Buffer.from(n))
    const slotBlocks = [1, 2, 1, 1, 16, 1, 1]
    const ends = new Uint32Array(names.length)
    const slots = new Uint32Array(2 * names.length)
    let len = 0
    let block = 0
    names.forEach((n, i) => {
      len += n.length
      ends[i] = len
      slots[2 * i] = block
      slots[2 * i + 1] = slotBlocks[i]!
      block += slotBlocks[i]!
    })
    const out = Buffer.alloc(block * 4096, 0xee)
    const recs = new Float64Array(2 * STAT_FIELDS * names.length)
    const info = new Int32Array(READ_FILE_INFO * names.length)
    await readFilesAsync(Buffer.from(d), Buffer.concat(names), ends, slots, out, recs, info)
    const at = (i: number) => ({ err: info[i * 5]!, step: info[i * 5 + 1]!, got: info[i * 5 + 2]!, flags: info[i * 5 + 3]!, zero: info[i * 5 + 4]! })
    // small: its bytes, then zeros to the end of the block; st1 = st2 = stat of the file
    expect(at(0)).toEqual({ err: 0, step: ReadFileStep.Ok, got: small.length, flags: 0, zero: 0 })
    expect(out.subarray(0, small.length).equals(small)).toBe(true)
    expect(out.subarray(small.length, 4096).every((b) => b === 0)).toBe(true)
    const st = lstatRecord(path.join(d, 'small'))
    expect([...recs.subarray(0, STAT_FIELDS)]).toEqual([...st].map((v, k) => (k === S_ATIME_SEC || k === S_ATIME_NSEC ? recs[k] : v)))
    expect(recs[STAT_FIELDS + S_SIZE]).toBe(small.length)
    // two blocks, the first all zero (mask bit 0), the second zero-filled after its 10 bytes
    expect(at(1)).toMatchObject({ step: ReadFileStep.Ok, got: two.length, zero: 1 })
    expect(out.subarray(4096, 4096 + two.length).equals(two)).toBe(true)
    expect(out.subarray(4096 + two.length, 3 * 4096).every((b) => b === 0)).toBe(true)
    // bigger than its slot, missing, sparse, not a regular file: left alone (their slots untouched)
    expect(at(2)).toMatchObject({ step: ReadFileStep.TooBig, got: 0 })
    expect(out.subarray(3 * 4096, 4 * 4096).every((b) => b === 0xee)).toBe(true)
    expect(at(3)).toMatchObject({ err: 2, step: ReadFileStep.Open }) // ENOENT
    expect(at(4)).toMatchObject({ step: ReadFileStep.Sparse }) // (the test directory makes holes: probed above)
    expect(at(5)).toMatchObject({ step: ReadFileStep.NotRegular })
    expect(at(6)).toMatchObject({ step: ReadFileStep.Ok, got: 1 })
    expect(at(6).flags & READ_FILE_XATTRS).toBe(READ_FILE_XATTRS)
    expect(at(0).flags & READ_FILE_SHORT).toBe(0)
    // a directory that cannot be opened: every file says so
    const info2 = new Int32Array(READ_FILE_INFO)
    await readFilesAsync(path.join(d, 'missing'), Buffer.from('small'), new Uint32Array([5]), new Uint32Array([0, 1]), Buffer.alloc(4096), new Float64Array(2 * STAT_FIELDS), info2)
    expect([info2[0], info2[1]]).toEqual([2, ReadFileStep.Dir])
    // arrays too short for the names: a RangeError, nothing read
    expect(() => readFilesAsync(d, Buffer.from('small'), new Uint32Array([5]), new Uint32Array(1), Buffer.alloc(4096), new Float64Array(2 * STAT_FIELDS), new Int32Array(5))).toThrow(RangeError)
  })

  it('adviseHugePages takes a large buffer (true where the kernel has transparent huge pages) and says false for a small one', () => {
    expect(adviseHugePages(Buffer.alloc(1024))).toBe(false)
    const thp = fs.existsSync('/sys/kernel/mm/transparent_hugepage/enabled') && !/\[never\]/.test(fs.readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))
    const big = Buffer.from(new SharedArrayBuffer(8 << 20))
    expect(adviseHugePages(big)).toBe(thp)
    big.fill(1)
    expect(big[(8 << 20) - 1]).toBe(1)
  })
})

describe('lstatRecord / fstatRecord', () => {
  it('match stat(1), without following symlinks', () => {
    const d = freshDir()
    const f = path.join(d, 'f')
    fs.writeFileSync(f, 'x'.repeat(12345))
    fs.symlinkSync('f', path.join(d, 'l'))
    const rec = lstatRecord(f)
    expect(rec).toBeInstanceOf(Float64Array)
    expect(rec.length).toBe(STAT_FIELDS)
    expectRecordMatches(rec, 0, toolStat(f))
    const lrec = lstatRecord(Buffer.from(path.join(d, 'l')))
    expectRecordMatches(lrec, 0, toolStat(path.join(d, 'l')))
    expect(lrec[S_MODE]! & S_IFMT).toBe(S_IFLNK)
    // Agrees with Node's own bigint lstat, to the nanosecond.
    const ns = fs.lstatSync(f, { bigint: true })
    expect(BigInt(rec[S_MTIME_SEC]!) * 1_000_000_000n + BigInt(rec[S_MTIME_NSEC]!)).toBe(ns.mtimeNs)
    expect(BigInt(rec[S_CTIME_SEC]!) * 1_000_000_000n + BigInt(rec[S_CTIME_NSEC]!)).toBe(ns.ctimeNs)
    expect(BigInt(rec[S_INO_HI]!) * 2n ** 32n + BigInt(rec[S_INO_LO]!)).toBe(ns.ino)
  })

  it('fstatRecord of an open fd equals lstatRecord of the file', () => {
    const f = path.join(freshDir(), 'f')
    fs.writeFileSync(f, 'abc')
    const fd = fs.openSync(f, 'r')
    try {
      expect(Array.from(fstatRecord(fd))).toEqual(Array.from(lstatRecord(f)))
    } finally {
      fs.closeSync(fd)
    }
  })

  it('throw typed errors', () => {
    const missing = path.join(MAIN.dir, 'nope', 'x')
    expectErrno(() => lstatRecord(missing), 'ENOENT', 2, 'lstat', missing)
    const f = path.join(freshDir(), 'f')
    fs.writeFileSync(f, '')
    const fd = fs.openSync(f, 'r')
    fs.closeSync(fd)
    expectErrno(() => fstatRecord(fd), 'EBADF', 9, 'fstat')
    expectArgError(() => fstatRecord(-1), 'RangeError', 'ERR_OUT_OF_RANGE')
    expectArgError(() => fstatRecord(1.5), 'RangeError', 'ERR_OUT_OF_RANGE')
    expectArgError(() => fstatRecord('3' as unknown as number), 'TypeError', 'ERR_INVALID_ARG_TYPE')
  })
})

describe.each(ALL_FS.map((t) => [`${t.fsType} at ${t.base}`, t] as const))('on %s', (_label, T) => {
  describe('getXattrs / setXattr', () => {
    const sorted = (xs: Array<[Buffer, Buffer]>) =>
      xs
        .filter(([n]) => n.toString('latin1').startsWith('user.'))
        .map(([n, v]) => [n.toString('hex'), v.toString('hex')])
        .sort()

    it('reads what setfattr wrote, byte for byte', () => {
      const f = path.join(freshDir(T), 'f')
      fs.writeFileSync(f, '')
      run('setfattr', ['-n', 'user.text', '-v', 'hello world', f])
      run('setfattr', ['-n', 'user.bin', '-v', '0x00ff0a00', f])
      run('setfattr', ['-n', 'user.empty', f])
      const xs = getXattrs(f)
      expect(xs.every(([n, v]) => Buffer.isBuffer(n) && Buffer.isBuffer(v))).toBe(true)
      expect(sorted(xs)).toEqual(
        [
          ['user.bin', Buffer.from([0x00, 0xff, 0x0a, 0x00])],
          ['user.empty', Buffer.alloc(0)],
          ['user.text', Buffer.from('hello world')],
        ]
          .map(([n, v]) => [Buffer.from(n as string).toString('hex'), (v as Buffer).toString('hex')])
          .sort(),
      )
    })

    it('writes what getfattr reads, including raw-byte names and values', () => {
      const f = path.join(freshDir(T), 'f')
      fs.writeFileSync(f, '')
      const value = Buffer.alloc(3000)
      for (let i = 0; i < value.length; i++) value[i] = (i * 7) & 0xff
      setXattr(f, 'user.big', value)
      setXattr(Buffer.from(f), Buffer.from('user.raw\xff', 'latin1'), Buffer.from([1, 2, 3]))
      setXattr(f, 'user.zero', Buffer.alloc(0))
      setXattr(f, 'user.big', value) // replaces
      const raw = run('getfattr', ['--absolute-names', '--only-values', '-n', 'user.big', f])
      expect(raw.equals(value)).toBe(true) // --only-values prints the raw bytes
      const dump = runText('getfattr', ['--absolute-names', '-d', '-e', 'hex', f])
      expect(dump).toContain('user.zero')
      expect(dump).toContain('=0x010203') // user.raw\xff (getfattr escapes the name)
      expect(sorted(getXattrs(f))).toEqual(
        [
          ['user.big', value],
          [Buffer.from('user.raw\xff', 'latin1'), Buffer.from([1, 2, 3])],
          ['user.zero', Buffer.alloc(0)],
        ]
          .map(([n, v]) => [Buffer.from(n as string | Buffer).toString('hex'), (v as Buffer).toString('hex')])
          .sort(),
      )
    })

    it('returns [] for a file without user xattrs', () => {
      const f = path.join(freshDir(T), 'f')
      fs.writeFileSync(f, '')
      expect(sorted(getXattrs(f))).toEqual([])
      expect(getXattrs(f).map(([n]) => n.toString())).toEqual(
        runText('getfattr', ['--absolute-names', '-m', '-', '--', f])
          .split('\n')
          .filter((l) => l && !l.startsWith('#')),
      )
    })

    it('does not follow symlinks', () => {
      const d = freshDir(T)
      fs.writeFileSync(path.join(d, 't'), '')
      fs.symlinkSync('t', path.join(d, 'l'))
      setXattr(path.join(d, 't'), 'user.on-target', Buffer.from('1'))
      expect(sorted(getXattrs(path.join(d, 't')))).toHaveLength(1)
      expect(sorted(getXattrs(path.join(d, 'l')))).toEqual([])
      // user.* is not allowed on symlinks: lsetxattr must not silently set it on the target.
      expectErrno(() => setXattr(path.join(d, 'l'), 'user.x', Buffer.from('1')), 'EPERM', 1, 'lsetxattr', path.join(d, 'l'))
      expect(sorted(getXattrs(path.join(d, 't')))).toHaveLength(1)
    })

    it('throws typed errors', () => {
      const missing = path.join(T.dir, 'missing')
      expectErrno(() => getXattrs(missing), 'ENOENT', 2, 'llistxattr', missing)
      expectErrno(() => setXattr(missing, 'user.x', Buffer.from('1')), 'ENOENT', 2, 'lsetxattr', missing)
      const f = path.join(freshDir(T), 'f')
      fs.writeFileSync(f, '')
      expectErrno(() => setXattr(f, 'nonamespace', Buffer.from('1')), 'ENOTSUP', 95, 'lsetxattr', f)
      expectErrno(() => setXattr(f, 'user.too-big', Buffer.alloc(65537)), 'E2BIG', 7, 'lsetxattr', f)
      expectArgError(() => setXattr(f, 'user.x', 'str' as unknown as Buffer), 'TypeError', 'ERR_INVALID_ARG_TYPE')
      expectArgError(() => setXattr(f, 'user.\0x', Buffer.from('1')), 'TypeError', 'ERR_INVALID_ARG_VALUE')
    })
  })

  describe('dataRegions', () => {
    function withFd<T>(p: string, fn: (fd: number) => T): T {
      const fd = fs.openSync(p, 'r')
      try {
        return fn(fd)
      } finally {
        fs.closeSync(fd)
      }
    }
    /** Writes one byte with dd at `offset`, without truncating. */
    function ddByte(p: string, offset: number): void {
      run('sh', ['-c', `printf x | dd of="$1" bs=1 seek=${offset} conv=notrunc status=none`, 'sh', p])
    }
    const size = (p: string) => fs.statSync(p).size

    it('gives [0, size] for a file without holes and [] for empty and all-hole files', () => {
      const d = freshDir(T)
      fs.writeFileSync(path.join(d, 'dense'), Buffer.alloc(10000, 1))
      fs.writeFileSync(path.join(d, 'empty'), '')
      run('truncate', ['-s', '5M', path.join(d, 'hole')])
      expect(withFd(path.join(d, 'dense'), (fd) => dataRegions(fd, 10000))).toEqual([0, 10000])
      expect(withFd(path.join(d, 'empty'), (fd) => dataRegions(fd, 0))).toEqual([])
      expect(withFd(path.join(d, 'hole'), (fd) => dataRegions(fd, 5 << 20))).toEqual([])
    })

    it('finds the data between holes, block-aligned, clipped to the size', () => {
      const p = path.join(freshDir(T), 'sparse')
      const total = (3 << 20) + 100
      run('truncate', ['-s', String(total), p])
      ddByte(p, 0)
      ddByte(p, 1 << 20)
      ddByte(p, (1 << 20) + 5000) // same region as the previous byte? only if in the same or next block
      ddByte(p, total - 1)
      const r = withFd(p, (fd) => dataRegions(fd, size(p)))
      expect(r.length % 2).toBe(0)
      for (let i = 0; i < r.length; i += 2) {
        expect(r[i]).toBeLessThan(r[i + 1]!)
        if (i > 0) expect(r[i]).toBeGreaterThan(r[i - 1]!) // sorted, holes between
        expect(r[i]! % 4096).toBe(0)
      }
      const covered = (off: number) => r.some((_, i) => i % 2 === 0 && r[i]! <= off && off < r[i + 1]!)
      for (const off of [0, 1 << 20, (1 << 20) + 5000, total - 1]) expect(covered(off)).toBe(true)
      expect(covered(2 << 20)).toBe(false)
      expect(r[0]).toBe(0)
      expect(r[r.length - 1]).toBe(total)
      // Data is whole blocks: the regions (rounded up to 4 KiB) are exactly the allocated space stat(1) reports.
      const dataBytes = r.reduce((acc, v, i) => (i % 2 ? acc + (Math.ceil(v / 4096) * 4096 - r[i - 1]!) : acc), 0)
      expect(dataBytes).toBe(toolStat(p).blocks * 512)
      expect(r.length).toBe(6) // [0..4K) [1M..1M+8K) [3M..3M+100)
    })

    it('stays within sizeBytes, stops at the real end, and restores the file offset', () => {
      const p = path.join(freshDir(T), 'dense')
      fs.writeFileSync(p, Buffer.from('0123456789'.repeat(1000)))
      withFd(p, (fd) => {
        const buf = Buffer.alloc(4)
        fs.readSync(fd, buf, 0, 4, null) // file offset now 4
        expect(dataRegions(fd, 2000)).toEqual([0, 2000])
        expect(dataRegions(fd, 20000)).toEqual([0, 10000]) // file is shorter than the caller thought
        fs.readSync(fd, buf, 0, 4, null)
        expect(buf.toString()).toBe('4567')
      })
    })

    it('throws ESPIPE for a pipe and EBADF for a closed fd', () => {
      const fifo = path.join(freshDir(T), 'fifo')
      run('mkfifo', [fifo])
      const fd = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK)
      try {
        expectErrno(() => dataRegions(fd, 10), 'ESPIPE', 29, 'lseek')
      } finally {
        fs.closeSync(fd)
      }
      expectErrno(() => dataRegions(fd, 10), 'EBADF', 9, 'lseek')
      expectArgError(() => dataRegions(0, -1), 'RangeError', 'ERR_OUT_OF_RANGE')
    })
  })

  describe('setTimes', () => {
    const times = (p: string) => {
      const t = toolStat(p)
      return [...t.atime, ...t.mtime]
    }

    it('sets atime and mtime to the nanosecond, including before 1970 and after 2106', () => {
      const f = path.join(freshDir(T), 'f')
      fs.writeFileSync(f, '')
      setTimes(f, 1_700_000_000, 123_456_789, 1_600_000_000, 987_654_321, false)
      expect(times(f)).toEqual([1_700_000_000, 123_456_789, 1_600_000_000, 987_654_321])
      setTimes(Buffer.from(f), 2 ** 33, 1, 2 ** 32 + 5, 999_999_999, false)
      expect(times(f)).toEqual([2 ** 33, 1, 2 ** 32 + 5, 999_999_999])
      setTimes(f, -1, 0, -86_400 * 365, 500, false)
      const ns = fs.statSync(f, { bigint: true })
      expect(ns.atimeNs).toBe(-1_000_000_000n)
      expect(ns.mtimeNs).toBe(BigInt(-86_400 * 365) * 1_000_000_000n + 500n)
    })

    it("nofollow=true sets a symlink's own times, false sets its target's", () => {
      const d = freshDir(T)
      fs.writeFileSync(path.join(d, 't'), '')
      fs.symlinkSync('t', path.join(d, 'l'))
      setTimes(path.join(d, 't'), 1000, 0, 2000, 0, false)
      setTimes(path.join(d, 'l'), 3000, 1, 4000, 2, true)
      expect(times(path.join(d, 'l'))).toEqual([3000, 1, 4000, 2])
      expect(times(path.join(d, 't'))).toEqual([1000, 0, 2000, 0])
      setTimes(path.join(d, 'l'), 5000, 3, 6000, 4, false)
      expect(times(path.join(d, 't'))).toEqual([5000, 3, 6000, 4])
      // The link's mtime is untouched (following it may refresh its atime: relatime).
      expect(times(path.join(d, 'l')).slice(2)).toEqual([4000, 2])
    })

    it('throws typed errors', () => {
      const missing = path.join(T.dir, 'missing')
      expectErrno(() => setTimes(missing, 0, 0, 0, 0, false), 'ENOENT', 2, 'utimensat', missing)
      expectArgError(() => setTimes(missing, 0, 1e9, 0, 0, false), 'RangeError', 'ERR_OUT_OF_RANGE')
      expectArgError(() => setTimes(missing, 0, 0, 0, -1, false), 'RangeError', 'ERR_OUT_OF_RANGE')
      expectArgError(() => setTimes(missing, 0.5, 0, 0, 0, false), 'RangeError', 'ERR_OUT_OF_RANGE')
      expectArgError(() => setTimes(missing, 0, 0, 0, 0, 1 as unknown as boolean), 'TypeError', 'ERR_INVALID_ARG_TYPE')
    })
  })
})

describe('mknod', () => {
  const kind = (p: string) => runText('stat', ['--printf', '%F %t %T %a', p])

  it('creates FIFOs and sockets', () => {
    const d = freshDir()
    const old = process.umask(0o022)
    try {
      mknod(path.join(d, 'fifo'), S_IFIFO | 0o666, 0, 0)
      mknod(Buffer.from(path.join(d, 'sock')), S_IFSOCK | 0o640, 0, 0)
    } finally {
      process.umask(old)
    }
    expect(kind(path.join(d, 'fifo'))).toBe('fifo 0 0 644') // umask applied
    expect(kind(path.join(d, 'sock'))).toBe('socket 0 0 640')
    expect(lstatRecord(path.join(d, 'fifo'))[S_MODE]).toBe(S_IFIFO | 0o644)
  })

  it.skipIf(!IS_ROOT)('creates character and block devices with their numbers (root)', () => {
    const d = freshDir()
    mknod(path.join(d, 'chr'), S_IFCHR | 0o600, 1, 3)
    mknod(path.join(d, 'blk'), S_IFBLK | 0o600, 7, 300)
    expect(kind(path.join(d, 'chr'))).toBe('character special file 1 3 600')
    expect(kind(path.join(d, 'blk'))).toBe('block special file 7 12c 600')
    const rec = lstatRecord(path.join(d, 'blk'))
    expect([rec[S_RDEV_MAJOR], rec[S_RDEV_MINOR]]).toEqual([7, 300])
  })

  it('throws typed errors', () => {
    const d = freshDir()
    mknod(path.join(d, 'f'), S_IFIFO | 0o600, 0, 0)
    expectErrno(() => mknod(path.join(d, 'f'), S_IFIFO | 0o600, 0, 0), 'EEXIST', 17, 'mknod', path.join(d, 'f'))
    expectErrno(() => mknod(path.join(d, 'no', 'f'), S_IFIFO | 0o600, 0, 0), 'ENOENT', 2, 'mknod', path.join(d, 'no', 'f'))
    expectErrno(() => mknod(path.join(d, 'dir'), S_IFDIR | 0o700, 0, 0), 'EPERM', 1, 'mknod', path.join(d, 'dir'))
    expectErrno(() => mknod(path.join(d, 'bad'), S_IFMT | 0o700, 0, 0), 'EINVAL', 22, 'mknod', path.join(d, 'bad'))
    if (!IS_ROOT) expectErrno(() => mknod(path.join(d, 'c'), S_IFCHR | 0o600, 1, 3), 'EPERM', 1, 'mknod', path.join(d, 'c'))
    expectArgError(() => mknod(path.join(d, 'g'), -1, 0, 0), 'RangeError', 'ERR_OUT_OF_RANGE')
  })
})

describe('blockDeviceSize', () => {
  it('throws ENOTTY for a regular file', () => {
    const f = path.join(freshDir(), 'f')
    fs.writeFileSync(f, 'x')
    const fd = fs.openSync(f, 'r')
    try {
      expectErrno(() => blockDeviceSize(fd), 'ENOTTY', 25, 'ioctl')
    } finally {
      fs.closeSync(fd)
    }
  })

  it('gives the size of a loop device, as blockdev(8) does (root, loop devices available)', ({ skip }) => {
    if (!IS_ROOT) return skip('needs root for losetup')
    const img = path.join(freshDir(), 'disk.img')
    run('truncate', ['-s', '3M', img])
    const r = spawnSync('losetup', ['--find', '--show', img], { encoding: 'utf8' })
    if (r.status !== 0) return skip(`no loop device: ${(r.stderr || String(r.error)).trim()}`)
    const dev = r.stdout.trim()
    try {
      const fd = fs.openSync(dev, 'r')
      try {
        expect(blockDeviceSize(fd)).toBe(3 << 20)
        expect(blockDeviceSize(fd)).toBe(Number(runText('blockdev', ['--getsize64', dev])))
        expect(fstatRecord(fd)[S_MODE]! & S_IFMT).toBe(S_IFBLK)
      } finally {
        fs.closeSync(fd)
      }
    } finally {
      run('losetup', ['-d', dev])
    }
  })
})

describe('blockDeviceSectorSize, flushBlockDevice', () => {
  it('throw ENOTTY for a regular file', () => {
    const f = path.join(freshDir(), 'f')
    fs.writeFileSync(f, 'x')
    const fd = fs.openSync(f, 'r')
    try {
      expectErrno(() => blockDeviceSectorSize(fd), 'ENOTTY', 25, 'ioctl')
      expectErrno(() => flushBlockDevice(fd), 'ENOTTY', 25, 'ioctl')
    } finally {
      fs.closeSync(fd)
    }
    expectArgError(() => blockDeviceSectorSize(-1), 'RangeError', 'ERR_OUT_OF_RANGE')
  })

  it('give the logical block size of a loop device, as blockdev --getss does, and flush its cache (root)', ({ skip }) => {
    if (!IS_ROOT) return skip('needs root for losetup')
    const img = path.join(freshDir(), 'disk.img')
    run('truncate', ['-s', '1M', img])
    const r = spawnSync('losetup', ['--find', '--show', '--sector-size', '4096', img], { encoding: 'utf8' })
    if (r.status !== 0) return skip(`no loop device: ${(r.stderr || String(r.error)).trim()}`)
    const dev = r.stdout.trim()
    try {
      const fd = fs.openSync(dev, 'r')
      try {
        expect(blockDeviceSectorSize(fd)).toBe(4096)
        expect(blockDeviceSectorSize(fd)).toBe(Number(runText('blockdev', ['--getss', dev])))
        flushBlockDevice(fd)
      } finally {
        fs.closeSync(fd)
      }
    } finally {
      run('losetup', ['-d', dev])
    }
  })
})

describe('alignedBuffer', () => {
  it('is zero-filled and 4096-aligned: O_DIRECT reads into it work where a plain Buffer fails with EINVAL', () => {
    const b = alignedBuffer(3 * 4096)
    expect(b.length).toBe(3 * 4096)
    expect(b.equals(Buffer.alloc(3 * 4096))).toBe(true)
    const f = path.join(freshDir(), 'data')
    const data = Buffer.alloc(3 * 4096, 0x5a)
    fs.writeFileSync(f, data)
    const fd = fs.openSync(f, fs.constants.O_RDONLY | fs.constants.O_DIRECT)
    try {
      expect(fs.readSync(fd, b, 0, 3 * 4096, 0)).toBe(3 * 4096)
      expect(b.equals(data)).toBe(true)
      b.fill(0)
      expect(fs.readSync(fd, b, 4096, 4096, 8192)).toBe(4096) // a 4096-multiple offset stays aligned
      expect(b.subarray(4096, 8192).equals(data.subarray(0, 4096))).toBe(true)
      const plain = Buffer.alloc(2 * 4096)
      let code = ''
      try {
        fs.readSync(fd, plain, 1, 4096, 0)
      } catch (err) {
        code = (err as NodeJS.ErrnoException).code!
      }
      expect(code).toBe('EINVAL')
    } finally {
      fs.closeSync(fd)
    }
    expectArgError(() => alignedBuffer(0), 'RangeError', 'ERR_OUT_OF_RANGE')
    expectArgError(() => alignedBuffer(1.5), 'RangeError', 'ERR_OUT_OF_RANGE')
  })
})

describe('freezeFs, thawFs', () => {
  it('freeze a mounted ext4 (a second freeze: EBUSY), thaw it (a second thaw: EINVAL) (root)', ({ skip }) => {
    if (!IS_ROOT) return skip('needs root for losetup and FIFREEZE')
    const d = freshDir()
    const img = path.join(d, 'fs.img')
    const mnt = path.join(d, 'mnt')
    fs.mkdirSync(mnt)
    run('truncate', ['-s', '16M', img])
    run('mkfs.ext4', ['-q', '-F', img])
    const m = spawnSync('mount', ['-o', 'loop', img, mnt], { encoding: 'utf8' })
    if (m.status !== 0) return skip(`no loop mount: ${m.stderr.trim()}`)
    let fd = -1
    try {
      fd = fs.openSync(mnt, 'r')
      freezeFs(fd)
      try {
        expectErrno(() => freezeFs(fd), 'EBUSY', 16, 'ioctl')
      } finally {
        thawFs(fd)
      }
      expectErrno(() => thawFs(fd), 'EINVAL', 22, 'ioctl')
      fs.writeFileSync(path.join(mnt, 'after'), 'writable again') // would block if still frozen
    } finally {
      if (fd >= 0) {
        try {
          thawFs(fd)
        } catch {
          // not frozen: the normal case
        }
        fs.closeSync(fd)
      }
      run('umount', [mnt])
    }
    const tmpfd = fs.openSync('/proc/self/status', 'r') // procfs cannot be frozen
    try {
      expectErrno(() => freezeFs(tmpfd), 'ENOTSUP', 95, 'ioctl')
    } finally {
      fs.closeSync(tmpfd)
    }
  })
})

describe('fadvise', () => {
  it('returns true when the kernel takes the hint and false when it fails', () => {
    const d = freshDir()
    const f = path.join(d, 'f')
    fs.writeFileSync(f, Buffer.alloc(1 << 16))
    const fd = fs.openSync(f, 'r')
    try {
      for (const a of ['sequential', 'willneed', 'dontneed', 'normal'] as const) expect(fadvise(fd, 0, 0, a)).toBe(true)
      expect(fadvise(fd, 4096, 8192, 'willneed')).toBe(true)
    } finally {
      fs.closeSync(fd)
    }
    expect(fadvise(fd, 0, 0, 'normal')).toBe(false) // closed fd: EBADF, ignored
    const fifo = path.join(d, 'fifo')
    run('mkfifo', [fifo])
    const pfd = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK)
    try {
      expect(fadvise(pfd, 0, 0, 'sequential')).toBe(false) // ESPIPE, ignored
    } finally {
      fs.closeSync(pfd)
    }
    expectArgError(() => fadvise(0, 0, 0, 'random' as 'normal'), 'TypeError', 'ERR_INVALID_ARG_VALUE')
  })
})

describe('directory-fd-relative calls (restore never follows a symlink it did not create)', () => {
  const K = atConstants()
  const SAFE = K.RESOLVE_NO_SYMLINKS | K.RESOLVE_BENEATH
  /** d/ with sub/x (a file), link -> victim dir, flink -> victim file, and a victim beside it. */
  const layout = (): { d: string; victim: string; fd: number } => {
    const top = freshDir()
    const d = path.join(top, 'd')
    const victim = path.join(top, 'victim')
    fs.mkdirSync(path.join(d, 'sub'), { recursive: true })
    fs.mkdirSync(victim)
    fs.writeFileSync(path.join(victim, 'secret'), 'victim data\n')
    fs.writeFileSync(path.join(d, 'sub/x'), 'x data\n')
    fs.symlinkSync(victim, path.join(d, 'link'))
    fs.symlinkSync(path.join(victim, 'secret'), path.join(d, 'sub/flink'))
    return { d, victim, fd: fs.openSync(d, 'r') }
  }
  const readFd = (fd: number): string => {
    try {
      return fs.readFileSync(fd, 'utf8')
    } finally {
      fs.closeSync(fd)
    }
  }

  it('atConstants gives the Linux values', () => {
    expect(K.AT_FDCWD).toBe(-100)
    expect(K.RESOLVE_NO_SYMLINKS).toBe(4)
    expect(K.RESOLVE_BENEATH).toBe(8)
    expect(K.O_NOFOLLOW).toBe(fs.constants.O_NOFOLLOW)
    expect(K.O_DIRECTORY).toBe(fs.constants.O_DIRECTORY)
    expect(K.O_PATH).toBeGreaterThan(0)
  })

  for (const [name, open] of [
    ['openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)', (fd: number, p: string, flags: number, mode: number) => openat2(fd, p, flags, mode, SAFE)],
    ['openBeneathWalk (its fallback)', openBeneathWalk],
  ] as const) {
    it(`${name} refuses a symlink in any component and a path that leaves dirFd`, () => {
      const { d, fd } = layout()
      const syscall = name.startsWith('openat2') ? 'openat2' : 'openat'
      try {
        expect(readFd(open(fd, 'sub/x', K.O_RDONLY, 0))).toBe('x data\n')
        fs.closeSync(open(fd, 'sub', K.O_PATH | K.O_DIRECTORY, 0))
        fs.closeSync(open(fd, 'sub/', K.O_RDONLY | K.O_DIRECTORY, 0))
        expectErrno(() => open(fd, 'link', K.O_PATH | K.O_DIRECTORY, 0), 'ELOOP', 40, syscall, 'link')
        expectErrno(() => open(fd, 'link/secret', K.O_RDONLY, 0), 'ELOOP', 40, syscall, 'link/secret')
        expectErrno(() => open(fd, 'sub/flink', K.O_RDONLY, 0), 'ELOOP', 40, syscall, 'sub/flink')
        expectErrno(() => open(fd, 'sub/flink', K.O_WRONLY | K.O_CREAT | K.O_TRUNC, 0o600), 'ELOOP', 40, syscall, 'sub/flink')
        expectErrno(() => open(fd, 'link/new', K.O_WRONLY | K.O_CREAT | K.O_EXCL, 0o600), 'ELOOP', 40, syscall, 'link/new')
        expectErrno(() => open(fd, '../d/sub/x', K.O_RDONLY, 0), 'EXDEV', 18, syscall, '../d/sub/x')
        expectErrno(() => open(fd, d + '/sub/x', K.O_RDONLY, 0), 'EXDEV', 18, syscall, d + '/sub/x')
        expectErrno(() => open(fd, 'sub/none', K.O_RDONLY, 0), 'ENOENT', 2, syscall, 'sub/none')
        expectErrno(() => open(fd, 'sub/x/y', K.O_RDONLY, 0), 'ENOTDIR', 20, syscall, 'sub/x/y')
        // O_PATH | O_NOFOLLOW on a final symlink gives the symlink itself (as openat2 documents)
        const l = open(fd, 'sub/flink', K.O_PATH | K.O_NOFOLLOW, 0)
        expect(fstatRecord(l)[S_MODE]! & S_IFMT).toBe(S_IFLNK)
        fs.closeSync(l)
        // O_CREAT | O_EXCL creates with the mode (minus umask) and then refuses
        const old = process.umask(0o022)
        try {
          fs.closeSync(open(fd, 'sub/new', K.O_WRONLY | K.O_CREAT | K.O_EXCL, 0o640))
        } finally {
          process.umask(old)
        }
        expect(toolStat(path.join(d, 'sub/new')).mode).toBe(S_IFREG | 0o640)
        expectErrno(() => open(fd, 'sub/new', K.O_WRONLY | K.O_CREAT | K.O_EXCL, 0o600), 'EEXIST', 17, syscall, 'sub/new')
        if (syscall === 'openat2') {
          // an expected errno comes back as its negation instead of a thrown error; others still throw
          expect(openat2(fd, 'sub/new', K.O_WRONLY | K.O_CREAT | K.O_EXCL, 0o600, SAFE, os.constants.errno.EEXIST)).toBe(-17)
          expectErrno(() => openat2(fd, 'link/new', K.O_WRONLY | K.O_CREAT | K.O_EXCL, 0o600, SAFE, os.constants.errno.EEXIST), 'ELOOP', 40, syscall, 'link/new')
          expectArgError(() => openat2(fd, 'sub/new', K.O_RDONLY, 0, SAFE, 0), 'RangeError', 'ERR_OUT_OF_RANGE')
        }
      } finally {
        fs.closeSync(fd)
      }
      // the victim was neither read through nor written
      expect(fs.readdirSync(path.join(d, '../victim'))).toEqual(['secret'])
    })
  }

  it('openat2 without resolve flags follows symlinks (what the flags prevent), and rejects bad arguments', () => {
    const { fd } = layout()
    try {
      expect(readFd(openat2(fd, 'link/secret', K.O_RDONLY, 0, 0))).toBe('victim data\n')
      expect(readFd(openat2(K.AT_FDCWD, '/proc/self/fd/' + fd + '/sub/x', K.O_RDONLY, 0, 0))).toBe('x data\n')
      const magic = '/proc/self/fd/' + fd + '/sub/x'
      expectErrno(() => openat2(K.AT_FDCWD, magic, K.O_RDONLY, 0, K.RESOLVE_NO_MAGICLINKS), 'ELOOP', 40, 'openat2', magic)
      expectErrno(() => openat2(fd, 'sub/x', K.O_RDONLY, 0, 1 << 20), 'EINVAL', 22, 'openat2', 'sub/x')
      expectArgError(() => openat2(-1, 'x', 0, 0, 0), 'RangeError', 'ERR_OUT_OF_RANGE')
      expectArgError(() => openat2(fd, 'x', 0, 0o10000, 0), 'RangeError', 'ERR_OUT_OF_RANGE')
      expectArgError(() => openat2(fd, 'a\0b', 0, 0, 0), 'TypeError', 'ERR_INVALID_ARG_VALUE')
    } finally {
      fs.closeSync(fd)
    }
  })

  it('mkdirat, symlinkat, mknodat, linkat create names relative to dirFd and never follow the last component', () => {
    const { d, victim, fd } = layout()
    const sub = openat2(fd, 'sub', K.O_PATH | K.O_DIRECTORY, 0, SAFE)
    try {
      const old = process.umask(0)
      try {
        mkdirat(sub, 'dir', 0o751)
        symlinkat(Buffer.from('t\xffarget', 'latin1'), sub, 'sl')
        mknodat(sub, 'fifo', S_IFIFO | 0o604, 0, 0)
        linkat(sub, 'x', sub, 'hard')
        linkat(sub, 'flink', sub, 'flink2') // the symlink itself, not its target
      } finally {
        process.umask(old)
      }
      expect(toolStat(path.join(d, 'sub/dir')).mode).toBe(S_IFDIR | 0o751)
      expect(fs.readlinkSync(path.join(d, 'sub/sl'), { encoding: 'buffer' })).toEqual(Buffer.from('t\xffarget', 'latin1'))
      expect(toolStat(path.join(d, 'sub/fifo')).mode).toBe(S_IFIFO | 0o604)
      expect(toolStat(path.join(d, 'sub/hard')).ino).toBe(toolStat(path.join(d, 'sub/x')).ino)
      expect(toolStat(path.join(d, 'sub/flink2')).ino).toBe(toolStat(path.join(d, 'sub/flink')).ino)
      // an existing symlink in the last place is EEXIST, never followed
      expectErrno(() => mkdirat(fd, 'link', 0o700), 'EEXIST', 17, 'mkdirat', 'link')
      expectErrno(() => symlinkat('x', sub, 'flink'), 'EEXIST', 17, 'symlinkat', 'flink')
      expectErrno(() => mknodat(sub, 'flink', S_IFIFO | 0o600, 0, 0), 'EEXIST', 17, 'mknodat', 'flink')
      expectErrno(() => linkat(sub, 'x', sub, 'flink'), 'EEXIST', 17, 'linkat', 'flink')
      expectErrno(() => mkdirat(sub, 'none/dir', 0o700), 'ENOENT', 2, 'mkdirat', 'none/dir')
      expect(fs.readdirSync(victim)).toEqual(['secret'])
    } finally {
      fs.closeSync(sub)
      fs.closeSync(fd)
    }
  })

  it('renameat2 replaces a symlink itself (never its target), exchanges, and refuses with RENAME_NOREPLACE', () => {
    const { d, victim, fd } = layout()
    try {
      fs.writeFileSync(path.join(d, 'sub/tmp'), 'new\n')
      renameat2(fd, 'sub/tmp', fd, 'sub/flink')
      expect(fs.lstatSync(path.join(d, 'sub/flink')).isFile()).toBe(true)
      expect(fs.readFileSync(path.join(d, 'sub/flink'), 'utf8')).toBe('new\n')
      expect(fs.readFileSync(path.join(victim, 'secret'), 'utf8')).toBe('victim data\n')
      renameat2(fd, 'sub', fd, 'link', K.RENAME_EXCHANGE)
      expect(fs.lstatSync(path.join(d, 'sub')).isSymbolicLink()).toBe(true)
      expect(fs.lstatSync(path.join(d, 'link')).isDirectory()).toBe(true)
      expectErrno(() => renameat2(fd, 'link/x', fd, 'link/flink', K.RENAME_NOREPLACE), 'EEXIST', 17, 'renameat2', 'link/flink')
      expectErrno(() => renameat2(fd, 'link/x', fd, 'none/y'), 'ENOENT', 2, 'renameat2', 'none/y')
      fs.mkdirSync(path.join(d, 'full'))
      fs.writeFileSync(path.join(d, 'full/f'), '')
      expectErrno(() => renameat2(fd, 'link/x', fd, 'full'), 'EISDIR', 21, 'renameat2', 'full')
      expect(fs.readdirSync(victim)).toEqual(['secret'])
    } finally {
      fs.closeSync(fd)
    }
  })

  it('unlinkat removes a symlink itself and only an empty directory with AT_REMOVEDIR', () => {
    const { d, victim, fd } = layout()
    try {
      unlinkat(fd, 'link')
      expect(fs.existsSync(path.join(d, 'link'))).toBe(false)
      expect(fs.readdirSync(victim)).toEqual(['secret'])
      expectErrno(() => unlinkat(fd, 'sub'), 'EISDIR', 21, 'unlinkat', 'sub')
      expectErrno(() => unlinkat(fd, 'sub', K.AT_REMOVEDIR), 'ENOTEMPTY', 39, 'unlinkat', 'sub')
      expectErrno(() => unlinkat(fd, 'sub/x', K.AT_REMOVEDIR), 'ENOTDIR', 20, 'unlinkat', 'sub/x')
      fs.mkdirSync(path.join(d, 'empty'))
      unlinkat(fd, 'empty', K.AT_REMOVEDIR)
      expect(fs.existsSync(path.join(d, 'empty'))).toBe(false)
    } finally {
      fs.closeSync(fd)
    }
  })

  it('fstatatRecord matches stat(1), with and without following; AT_EMPTY_PATH is dirFd itself', () => {
    const { d, fd } = layout()
    try {
      const l = fstatatRecord(fd, 'sub/flink', K.AT_SYMLINK_NOFOLLOW)
      expectRecordMatches(l, 0, toolStat(path.join(d, 'sub/flink')))
      expect(l[S_MODE]! & S_IFMT).toBe(S_IFLNK)
      expect(fstatatRecord(fd, 'sub/flink', 0)[S_SIZE]).toBe('victim data\n'.length)
      expectRecordMatches(fstatatRecord(fd, '', K.AT_EMPTY_PATH), 0, toolStat(d))
      expectErrno(() => fstatatRecord(fd, 'none', 0), 'ENOENT', 2, 'fstatat', 'none')
    } finally {
      fs.closeSync(fd)
    }
  })

  it('fchmodat, utimensat and setxattrat with AT_SYMLINK_NOFOLLOW never reach a symlink target', () => {
    const { d, victim, fd } = layout()
    const before = toolStat(path.join(victim, 'secret'))
    try {
      expectErrno(() => fchmodat(fd, 'sub/flink', 0o777, K.AT_SYMLINK_NOFOLLOW), 'ENOTSUP', 95, 'fchmodat2', 'sub/flink')
      utimensat(fd, 'sub/flink', 1000, 1, 2000, 2, K.AT_SYMLINK_NOFOLLOW)
      expect(toolStat(path.join(d, 'sub/flink')).mtime).toEqual([2000, 2])
      // user.* is not allowed on a symlink: refused, not applied to the target
      expectErrno(() => setxattrat(fd, 'sub/flink', 'user.x', Buffer.from('1'), K.AT_SYMLINK_NOFOLLOW), 'EPERM', 1, 'setxattrat', 'sub/flink')
      if (IS_ROOT) {
        setxattrat(fd, 'sub/flink', 'trusted.bfs', Buffer.from('on the link'), K.AT_SYMLINK_NOFOLLOW)
        expect(runText('getfattr', ['-h', '--only-values', '-n', 'trusted.bfs', path.join(d, 'sub/flink')])).toBe('on the link')
        fchownat(fd, 'sub/flink', 1234, 5678, K.AT_SYMLINK_NOFOLLOW)
        expect([toolStat(path.join(d, 'sub/flink')).uid, toolStat(path.join(d, 'sub/flink')).gid]).toEqual([1234, 5678])
        fchownat(fd, 'sub/x', -1, 42, 0)
        expect([toolStat(path.join(d, 'sub/x')).uid, toolStat(path.join(d, 'sub/x')).gid]).toEqual([0, 42])
      }
      // the target: not one byte, mode, time or xattr changed (its ctime says so)
      expect(toolStat(path.join(victim, 'secret'))).toEqual(before)
      // on what is not a symlink they act as usual, also on a fifo and on dirFd itself
      mknodat(fd, 'fifo', S_IFIFO | 0o600, 0, 0)
      fchmodat(fd, 'fifo', 0o4640, K.AT_SYMLINK_NOFOLLOW)
      expect(toolStat(path.join(d, 'fifo')).mode).toBe(S_IFIFO | 0o4640)
      fchmodat(fd, 'sub/x', 0o604, 0)
      expect(toolStat(path.join(d, 'sub/x')).mode).toBe(S_IFREG | 0o604)
      fchmodat(fd, '', 0o751, K.AT_EMPTY_PATH)
      expect(toolStat(d).mode).toBe(S_IFDIR | 0o751)
      utimensat(fd, 'sub/x', 5, 6, 7, 8, 0)
      expect(toolStat(path.join(d, 'sub/x')).mtime).toEqual([7, 8])
      setxattrat(fd, 'sub', 'user.color', Buffer.from([0, 0xff]), K.AT_SYMLINK_NOFOLLOW)
      expect(getXattrs(path.join(d, 'sub'))).toEqual([[Buffer.from('user.color'), Buffer.from([0, 0xff])]])
      setxattrat(fd, '', 'user.top', Buffer.from('t'), K.AT_EMPTY_PATH)
      expect(getXattrs(d)).toEqual([[Buffer.from('user.top'), Buffer.from('t')]])
      expectErrno(() => fchmodat(fd, 'none', 0o600, 0), 'ENOENT', 2, 'fchmodat2', 'none')
      expectErrno(() => utimensat(fd, 'none', 0, 0, 0, 0, 0), 'ENOENT', 2, 'utimensat', 'none')
      expectArgError(() => utimensat(fd, 'sub/x', 0, 1e9, 0, 0, 0), 'RangeError', 'ERR_OUT_OF_RANGE')
      expectArgError(() => fchmodat(fd, 'sub/x', 0o10000, 0), 'RangeError', 'ERR_OUT_OF_RANGE')
    } finally {
      fs.closeSync(fd)
    }
  })

  it('close closes an fd the addon opened, and says EBADF for one that is not open', () => {
    const { fd } = layout()
    const sub = openat2(fd, 'sub', K.O_PATH | K.O_DIRECTORY, 0, SAFE)
    close(sub)
    expectErrno(() => fstatRecord(sub), 'EBADF', 9, 'fstat')
    expectErrno(() => close(sub), 'EBADF', 9, 'close')
    expectArgError(() => close(-1), 'RangeError', 'ERR_OUT_OF_RANGE')
    fs.closeSync(fd)
  })

  it('futimens and fsetxattr act on an open file', () => {
    const { d, fd } = layout()
    try {
      const f = openat2(fd, 'sub/made', K.O_WRONLY | K.O_CREAT | K.O_EXCL, 0o600, SAFE)
      try {
        fs.writeSync(f, 'data')
        fsetxattr(f, 'user.k', Buffer.from('v'))
        futimens(f, 2 ** 33, 1, -5, 999_999_999)
      } finally {
        fs.closeSync(f)
      }
      const t = toolStat(path.join(d, 'sub/made'))
      expect(t.atime).toEqual([2 ** 33, 1])
      const ns = fs.statSync(path.join(d, 'sub/made'), { bigint: true })
      expect(ns.mtimeNs).toBe(-5n * 1_000_000_000n + 999_999_999n)
      expect(getXattrs(path.join(d, 'sub/made'))).toEqual([[Buffer.from('user.k'), Buffer.from('v')]])
      const p = openat2(fd, 'sub', K.O_PATH | K.O_DIRECTORY, 0, SAFE)
      try {
        expectErrno(() => futimens(p, 0, 0, 0, 0), 'EBADF', 9, 'futimens')
        expectErrno(() => fsetxattr(p, 'user.k', Buffer.from('v')), 'EBADF', 9, 'fsetxattr')
      } finally {
        fs.closeSync(p)
      }
    } finally {
      fs.closeSync(fd)
    }
  })
})

describe('flock', () => {
  /** Polls `cond` every 20 ms for up to 30 s (a loaded machine starts processes slowly). */
  const waitFor = async (cond: () => boolean, what: string): Promise<void> => {
    for (let i = 0; i < 1500; i++) {
      if (cond()) return
      await new Promise((r) => setTimeout(r, 20))
    }
    throw new Error(`timed out waiting for ${what}`)
  }

  it('excludes a second open file description in this process, shares shared locks, and unlocks', () => {
    const f = path.join(freshDir(), 'lock')
    fs.writeFileSync(f, '')
    const a = fs.openSync(f, 'r+')
    const b = fs.openSync(f, 'r')
    try {
      expect(flock(a, 'exclusive')).toBe(true)
      expect(flock(b, 'exclusive')).toBe(false)
      expect(flock(b, 'shared')).toBe(false)
      expect(flock(a, 'unlock')).toBe(true)
      expect(flock(b, 'shared')).toBe(true)
      expect(flock(a, 'shared')).toBe(true)
      expect(flock(a, 'exclusive')).toBe(false) // b still shares it
      expect(flock(b, 'unlock')).toBe(true)
      expect(flock(a, 'exclusive')).toBe(true) // a converts its shared lock
    } finally {
      fs.closeSync(a)
      fs.closeSync(b)
    }
    const c = fs.openSync(f, 'r')
    try {
      expect(flock(c, 'exclusive')).toBe(true) // the close released a's lock
    } finally {
      fs.closeSync(c)
    }
    expectErrno(() => flock(c, 'shared'), 'EBADF', 9, 'flock')
    expectArgError(() => flock(0, 'both' as 'shared'), 'TypeError', 'ERR_INVALID_ARG_VALUE')
    expectArgError(() => flock(-1, 'shared'), 'RangeError', 'ERR_OUT_OF_RANGE')
  })

  it('conflicts with flock(1) in another process, and the kernel frees the lock when that process is killed -9', async () => {
    const d = freshDir()
    const f = path.join(d, 'lock')
    const ready = path.join(d, 'ready')
    fs.writeFileSync(f, '')
    // flock(1) takes the lock, then its command says so and holds it (in a process group
    // of its own, so that the kill below reaches flock and its command, and nothing else)
    const child = spawn('flock', ['-x', f, 'sh', '-c', `touch '${ready}'; exec sleep 600`], { stdio: 'ignore', detached: true })
    const killGroup = (): void => {
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {
        // already gone
      }
    }
    const fd = fs.openSync(f, 'r')
    try {
      await waitFor(() => fs.existsSync(ready), 'flock(1) to take the lock')
      expect(flock(fd, 'exclusive')).toBe(false)
      expect(flock(fd, 'shared')).toBe(false)
      const gone = new Promise((r) => child.on('exit', r))
      killGroup()
      await gone
      await waitFor(() => flock(fd, 'exclusive'), 'the lock to be freed')
      // and flock(1) now fails at once, exit 1
      const r = spawnSync('flock', ['-n', '-x', f, 'true'])
      expect(r.status).toBe(1)
    } finally {
      killGroup()
      fs.closeSync(fd)
    }
  })
})

describe('BLAKE3 (the official C implementation from librust-blake3-dev)', () => {
  // BLAKE3's own test vectors (test_vectors/test_vectors.json of github.com/BLAKE3-team/BLAKE3,
  // copied unchanged): input byte i is i % 251; each output is 131 bytes of extended output,
  // whose first 32 bytes are the standard digest.
  const VECTORS = JSON.parse(fs.readFileSync(path.join(HERE, 'fixtures/blake3-test-vectors.json'), 'utf8')) as {
    key: string
    cases: Array<{ input_len: number; hash: string; keyed_hash: string }>
  }
  const KEY = Buffer.from(VECTORS.key, 'ascii')
  const input = (n: number): Buffer => {
    const b = Buffer.alloc(n)
    for (let i = 0; i < n; i++) b[i] = i % 251
    return b
  }

  it('reports the version of the sources it was built from', () => {
    expect(blake3Version()).toMatch(/^\d+\.\d+\.\d+$/)
  })

  it('matches every official vector: plain and keyed, standard digest and extended output', () => {
    expect(VECTORS.key).toBe('whats the Elvish word for friend')
    expect(VECTORS.cases.length).toBeGreaterThanOrEqual(35)
    for (const c of VECTORS.cases) {
      const data = input(c.input_len)
      const xof = c.hash.length / 2
      expect(blake3(data).toString('hex'), `hash(${c.input_len})`).toBe(c.hash.slice(0, 64))
      expect(blake3(data, null, xof).toString('hex'), `hash xof(${c.input_len})`).toBe(c.hash)
      expect(blake3(data, KEY).toString('hex'), `keyed(${c.input_len})`).toBe(c.keyed_hash.slice(0, 64))
      expect(blake3(data, KEY, xof).toString('hex'), `keyed xof(${c.input_len})`).toBe(c.keyed_hash)
    }
    // the empty input's digest, as published in the BLAKE3 paper and README
    expect(blake3(Buffer.alloc(0)).toString('hex')).toBe('af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262')
  })

  it('the incremental hasher gives the one-shot result for any split, and goes on after a digest', () => {
    for (const c of VECTORS.cases) {
      const data = input(c.input_len)
      for (const step of [1, 63, 64, 65, 1000, 1024, 4096]) {
        if (step === 1 && c.input_len > 8193) continue // slow in JS, and nothing new
        const h = new Blake3Hasher(KEY)
        for (let o = 0; o < data.length; o += step) h.update(data, o, Math.min(step, data.length - o))
        expect(h.digest().toString('hex'), `keyed(${c.input_len}) in steps of ${step}`).toBe(c.keyed_hash.slice(0, 64))
      }
      const p = new Blake3Hasher()
      p.update(data.subarray(0, c.input_len >> 1))
      p.digest() // does not end the input
      p.update(data.subarray(c.input_len >> 1))
      expect(p.digest(c.hash.length / 2).toString('hex')).toBe(c.hash)
      expect(p.reset().update(data).digest().toString('hex')).toBe(c.hash.slice(0, 64))
    }
  })

  it('hashes a range of a buffer into a range of another', () => {
    const data = input(5000)
    const big = Buffer.concat([Buffer.alloc(7, 0xee), data, Buffer.alloc(9, 0xdd)])
    const out = Buffer.alloc(40, 0xaa)
    blake3Into(big, 7, 5000, KEY, out, 4, 32)
    expect(out.subarray(4, 36).equals(blake3(data, KEY))).toBe(true)
    expect(out.subarray(0, 4).equals(Buffer.alloc(4, 0xaa))).toBe(true)
    expect(out.subarray(36).equals(Buffer.alloc(4, 0xaa))).toBe(true)
    const d = Buffer.alloc(32)
    new Blake3Hasher().update(big, 7, 5000).digestInto(d, 0)
    expect(d.equals(blake3(data))).toBe(true)
    expect(BLAKE3_OUT_BYTES).toBe(32)
  })

  it('agrees with b3sum (the Rust implementation) on large and odd-sized inputs, plain and keyed', async () => {
    const dir = freshDir()
    const key = Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff))
    const b3 = (args: string[], stdin?: Buffer): Promise<string> =>
      new Promise((resolve, reject) => {
        const child = execFile('b3sum', ['--no-names', ...args], { encoding: 'buffer', maxBuffer: 1 << 20 }, (err, stdout) =>
          err ? reject(err) : resolve(stdout.toString().trim()),
        )
        // b3sum reads stdin only for --keyed (the key); a write after it exited is EPIPE, not a failure
        child.stdin!.on('error', () => {})
        child.stdin!.end(stdin ?? Buffer.alloc(0))
      })
    let seed = 12345
    for (const size of [0, 1, 1025, 65536, 65537, 1_000_003, 16 * 1024 * 1024 + 17]) {
      const data = Buffer.alloc(size)
      for (let i = 0; i < size; i++) {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
        data[i] = seed >>> 24
      }
      const f = path.join(dir, `in-${size}`)
      fs.writeFileSync(f, data)
      expect(blake3(data).toString('hex'), `plain ${size}`).toBe(await b3([f]))
      expect(blake3(data, key).toString('hex'), `keyed ${size}`).toBe(await b3(['--keyed', f], key))
      expect(blake3(data, null, 100).toString('hex'), `xof ${size}`).toBe(await b3(['--length', '100', f]))
      // large inputs through the incremental hasher in 1 MiB pieces, as a file would be fed
      const h = new Blake3Hasher(key)
      for (let o = 0; o < size; o += 1 << 20) h.update(data, o, Math.min(1 << 20, size - o))
      expect(h.digest().toString('hex'), `keyed incremental ${size}`).toBe(await b3(['--keyed', f], key))
      fs.rmSync(f)
    }
  })

  it('rejects a key that is not 32 bytes, ranges outside the buffers and a foreign hasher', () => {
    const b = Buffer.alloc(10)
    expectArgError(() => blake3(b, Buffer.alloc(31)), 'RangeError', 'ERR_OUT_OF_RANGE')
    expectArgError(() => blake3(b, Buffer.alloc(33)), 'RangeError', 'ERR_OUT_OF_RANGE')
    expectArgError(() => new Blake3Hasher(Buffer.alloc(16)), 'RangeError', 'ERR_OUT_OF_RANGE')
    expectArgError(() => blake3(b, 'k' as unknown as Buffer), 'TypeError', 'ERR_INVALID_ARG_TYPE')
    expectArgError(() => blake3Into(b, 5, 6, null, Buffer.alloc(32), 0, 32), 'RangeError', 'ERR_OUT_OF_RANGE')
    expectArgError(() => blake3Into(b, 0, 10, null, Buffer.alloc(32), 1, 32), 'RangeError', 'ERR_OUT_OF_RANGE')
    expectArgError(() => blake3Into(b, 0, 10, null, Buffer.alloc(32), 0, 0), 'RangeError', 'ERR_OUT_OF_RANGE')
    expectArgError(() => blake3(b, null, 65537), 'RangeError', 'ERR_OUT_OF_RANGE')
    expectArgError(() => blake3Into(b, -1, 1, null, Buffer.alloc(32), 0, 32), 'RangeError', 'ERR_OUT_OF_RANGE')
    expectArgError(() => new Blake3Hasher().update(b, 3, 8), 'RangeError', 'ERR_OUT_OF_RANGE')
    const raw = createRequire(import.meta.url)(ADDON) as { blake3HasherUpdate: (h: unknown, b: Buffer, o: number, l: number) => void }
    expectArgError(() => raw.blake3HasherUpdate({}, b, 0, 1), 'TypeError', 'ERR_INVALID_ARG_TYPE')
    expectArgError(() => raw.blake3HasherUpdate(null, b, 0, 1), 'TypeError', 'ERR_INVALID_ARG_TYPE')
  })
})

describe('the addon and its typed wrapper agree', () => {
  it('every function the built addon exports is one the wrapper checks for at load (and the wrapper checks no other)', async () => {
    const { createRequire } = await import('node:module')
    const raw = createRequire(import.meta.url)('../native/build/Release/bfs_native.node') as Record<string, unknown>
    const exported = Object.keys(raw).filter((k) => typeof raw[k] === 'function').sort()
    const { FASTPATH_FUNCTIONS } = await import('../src/native/fastpath.js')
    expect(exported).toEqual([...ADDON_FUNCTIONS, ...FASTPATH_FUNCTIONS].sort())
  })
})
