/**
 * `bfs backup --online` (issue 14 phase B, format 1) on a real ext4 filesystem on a loop
 * device: a writer process starts when `--t0-file` appears and hammers the tree (pwrites,
 * appends, O_TRUNC rewrites, truncates, punched holes, collapsed ranges, shared mmap writes,
 * `cp` over files, SQLite transactions) while bfs reads it; the generation must equal the
 * copy taken before the writer started — through `bfs restore` and through `bfs mount`, byte
 * for byte, in size and mtime, and through `bfs cat` of each changed file; `bfs verify`
 * checks the generation's BI log; a later backup compares against it through the log. The
 * same run without `--online` must differ (the control). The same for an image file
 * (`--volume --online`, written with pwrites, mapped writes, punched holes and truncates) on
 * format 1 and format 2 repositories, a format 2 online incremental of an image against an
 * online parent, and a damaged BI log is reported. Also: a file open for writing at T0 is reported (exit 3); tmpfs refuses `--online` with one
 * line and `--online=auto` backs up without it, saying so. Needs root and Linux ≥ 6.14.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { bfs, BFS, diffTree, FORMATS, newRepo, newRepoF, parentOf, ROOT, sh, sigstop, spawnBfs, tmpdir } from './helpers.js'

const IS_ROOT = process.getuid?.() === 0
const [major, minor] = fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').split('.').map(Number)
const HAS_PRECONTENT = major > 6 || (major === 6 && minor >= 14)
const WRITER = path.join(ROOT, 'test', 'fixtures', 'online-writer.py')
const IMAGE_WRITER = path.join(ROOT, 'test', 'fixtures', 'image-writer.py')

const work = tmpdir('bfs-online-test-')
const mounts: string[] = []
const fuseMounts = new Set<string>()
const loops: string[] = []
const children: ChildProcess[] = []

async function must(cmd: string): Promise<string> {
  const r = await sh(cmd)
  if (r.code !== 0) throw new Error(`${cmd}: ${r.stderr}`)
  return r.stdout
}

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  for (const m of fuseMounts) {
    if ((await bfs(['umount', m])).code !== 0) await bfs(['umount', '--lazy', m])
    if ((await sh(`grep -q ' ${m} ' /proc/mounts`)).code === 0) await sh(`fusermount -uz '${m}'`)
  }
  for (const m of mounts.reverse()) await sh(`umount ${m} || umount -l ${m}`)
  for (const d of loops) await sh(`losetup -d ${d}`)
  fs.rmSync(work, { recursive: true, force: true })
}, 120_000)

/** A fresh ext4 on a loop device, mounted at work/<name>. */
async function makeExt4(name: string): Promise<string> {
  const img = path.join(work, `${name}.img`)
  const mnt = path.join(work, name)
  fs.mkdirSync(mnt, { recursive: true })
  await must(`truncate -s 400M ${img} && mkfs.ext4 -q -F ${img}`)
  const dev = (await must(`losetup --find --show ${img}`)).trim()
  loops.push(dev)
  await must(`mount ${dev} ${mnt}`)
  mounts.push(mnt)
  return mnt
}

/** Files of many sizes (random bytes, some compressible, one sparse) in a few directories, and a SQLite database. */
async function makeTree(dir: string): Promise<void> {
  const sizes = [0, 1, 100, 4095, 4096, 4097, 12288, 65543, 300_000, 1 << 20, 3 * (1 << 20) + 123, 2_500_000, 5_000_000]
  for (let d = 0; d < 3; d++) {
    const sub = path.join(dir, `d${d}`)
    fs.mkdirSync(sub, { recursive: true })
    for (const [i, size] of sizes.entries()) {
      const f = path.join(sub, `f${String(i).padStart(2, '0')}`)
      // half random, half text (compressible): the compressor is busy either way
      await must(i % 2 ? `head -c ${size} /dev/urandom > ${f}` : `yes "line $RANDOM of ${f}" | head -c ${size} > ${f}`)
    }
    await must(`truncate -s 20M ${sub}/sparse && head -c 200000 /dev/urandom | dd of=${sub}/sparse bs=4096 seek=1000 conv=notrunc status=none`)
  }
  await must(`python3 ${WRITER} setup ${dir}`)
}

/** Runs a writer script: its exit code once it ends, and how many operations (output lines) it has done. */
function runWriter(args: string[], label: string): { done: Promise<number>; ops: () => number } {
  const child = spawn('python3', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let lines = 0
  let err = ''
  child.stdout!.on('data', (b: Buffer) => (lines += b.toString().split('\n').length - 1))
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()))
  const done = new Promise<number>((resolve) =>
    child.on('close', (code) => {
      if (code !== 0) console.error(`${label}: ${err}`)
      resolve(code ?? -1)
    }),
  )
  return { done, ops: () => lines }
}

/** Starts the writer; it waits for `t0File` ('-': starts at once) and runs until `stop` exists. */
function startWriter(dir: string, t0File: string, stop: string, seed: number): { done: Promise<number>; ops: () => number } {
  const src = path.join(work, 'cp-source')
  if (!fs.existsSync(src)) fs.writeFileSync(src, Buffer.alloc(123_457, 7))
  return runWriter([WRITER, 'run', dir, t0File, stop, src, String(seed)], 'writer')
}

/** The same for an image file (test/fixtures/image-writer.py); `keepSize`: pwrites and mapped writes only, within `window` ([start, length] in bytes) if given. */
function startImageWriter(img: string, t0File: string, stop: string, seed: number, keepSize = false, window?: [number, number]): { done: Promise<number>; ops: () => number } {
  return runWriter([IMAGE_WRITER, img, t0File, stop, String(seed), ...(keepSize ? ['--no-size'] : []), ...(window ? [`--window=${window[0]}:${window[1]}`] : [])], 'image writer')
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 120_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Size and mtime (ns) of every regular file, sorted: what `diff -r` does not compare. */
async function sizesAndTimes(dir: string): Promise<string> {
  return must(`cd '${dir}' && find . -type f -printf '%P %s %T@\\n' | sort`)
}

// Slow on purpose: one compression thread at level 19, and small units, so that reading
// (which waits for a free unit buffer) lasts as long as the compression and the writer
// overlaps it.
const BACKUP = ['--threads', '1', '--level', '19', '--unit-blocks', '16', '--exclude', '*-journal', '--json']
const IMG_BACKUP = ['--volume', '--threads', '1', '--level', '19', '--unit-blocks', '16', '--json']
/** A format 2 PieceRef as `--json` prints it. */
const PIECE_REF = /^\d+\.\d+\.\d+\.\d+:[0-9a-f]{64}$/

/** A volume generation's image equals `copy`: through restore, `bfs cat`, a FUSE mount, and `bfs verify` passes. */
async function expectImage(repo: string, gen: string, copy: string, w: string): Promise<void> {
  const out = path.join(w, `restored-${gen}`)
  const rr = await bfs(['restore', gen, out], { repo })
  expect(rr.stderr).toBe('')
  expect(rr.code).toBe(0)
  await must(`cmp ${out} ${copy}`)
  await must(`BFS_REPO=${repo} ${BFS} cat ${gen}:disk.img | cmp - ${copy}`)
  const v = await bfs(['verify', gen], { repo })
  expect(v.stdout + v.stderr).not.toMatch(/FAIL/)
  expect(v.code).toBe(0)
  const m = path.join(w, `mnt-${gen}`)
  fs.mkdirSync(m)
  expect((await bfs(['mount', gen, m], { repo })).code).toBe(0)
  fuseMounts.add(m)
  await must(`cmp ${m}/disk.img ${copy}`)
  expect((await bfs(['umount', m])).code).toBe(0)
  fuseMounts.delete(m)
}

/** Flips a byte of a format 2 piece (its PieceRef as `--json` prints it) of generation `gen`'s packs. */
function damagePiece(repo: string, gen: number, ref: string): void {
  const [pack, offset, len] = /^\d+\.(\d+)\.(\d+)\.(\d+):/.exec(ref)!.slice(1)
  const packFile = path.join(repo, 'gens', String(gen).padStart(8, '0'), `pack-${pack!.padStart(8, '0')}`)
  const bytes = fs.readFileSync(packFile)
  bytes[Number(offset) + Number(len) - 1] ^= 0x55
  fs.writeFileSync(packFile, bytes)
}

/** How many 4 KiB blocks differ between two files of the same size. */
function changedBlocks(a: string, b: string): number {
  const x = fs.readFileSync(a)
  const y = fs.readFileSync(b)
  let n = 0
  for (let o = 0; o < x.length; o += 4096) if (!x.subarray(o, o + 4096).equals(y.subarray(o, o + 4096))) n++
  return n
}

describe.skipIf(!IS_ROOT || !HAS_PRECONTENT)('backup --online (root, Linux ≥ 6.14)', () => {
  it('stores the tree as it was at T0 while a writer hammers it (restore and mount equal the copy); without --online it differs', async () => {
    const mnt = await makeExt4('hammer')
    const tree = path.join(mnt, 'tree')
    const copy = path.join(work, 'copy')
    await makeTree(tree)
    // a first (offline) generation, then changes: the online one reads changed files
    // against it (block incremental) and new ones in full
    // format 1: the summary's `parent` and `biLog.bytes` are format 1's (format 2: online-v2.test.ts)
    const repo = await newRepoF(1, path.join(work, 'repo'))
    expect((await bfs(['backup', tree], { repo })).code).toBe(0)
    await must(`head -c 300000 /dev/urandom | dd of=${tree}/d0/f10 bs=4096 seek=100 conv=notrunc status=none && truncate -s 1000000 ${tree}/d1/f12 && echo more >> ${tree}/d2/f09`)
    await must(`mkdir -p ${tree}/d3/a ${tree}/d3/b && cp -a ${tree}/d1/. ${tree}/d3/a/ && cp -a ${tree}/d2/. ${tree}/d3/b/`)
    await must(`cp -a ${tree} ${copy} && sync`)
    const t0 = path.join(work, 't0')
    const stop = path.join(work, 'stop')

    const writer = startWriter(tree, t0, stop, 1)
    const r = await bfs(['backup', tree, '--online', '--t0-file', t0, ...BACKUP], { repo })
    const opsDuring = writer.ops()
    fs.writeFileSync(stop, '')
    expect(await writer.done).toBe(0)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const res = JSON.parse(r.stdout)
    expect(res.parent).toBe(1)
    expect(res.online.captured).toBe(true)
    expect(res.online.uncovered).toEqual([])
    expect(fs.readFileSync(t0, 'utf8')).toBe(res.online.t0 + '\n')
    // the writer really ran during the backup, and changed blocks bfs had not read yet
    expect(opsDuring).toBeGreaterThan(0)
    expect(res.online.images).toBeGreaterThan(0)
    // and files of at most 64 KiB it wrote first were read whole then (stored as their data:
    // the restore, the mount and cat below read them as at T0)
    expect(res.online.preReads).toBeGreaterThan(0)
    expect(res.online.preReadBytes).toBeGreaterThan(0)
    expect(await diffTree(copy, tree)).not.toBe('')
    // blocks written after T0 before bfs read them are in the generation's BI log, not its maps
    expect(res.online.biBlocks).toBeGreaterThan(0)
    expect(res.biLog.bytes).toBeGreaterThan(0)

    const out = path.join(work, 'restored')
    const rr = await bfs(['restore', res.generation, out], { repo })
    expect(rr.stderr).toBe('')
    expect(rr.code).toBe(0)
    expect(await diffTree(copy, out)).toBe('')
    expect(await sizesAndTimes(out)).toBe(await sizesAndTimes(copy))
    // the database as it was at T0: byte for byte, and sound
    expect((await must(`python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])" ${out}/db/app.sqlite`)).trim()).toBe('ok')

    const m = path.join(work, 'mnt')
    fs.mkdirSync(m)
    const mr = await bfs(['mount', res.generation, m], { repo })
    expect(mr.code).toBe(0)
    fuseMounts.add(m)
    expect(await diffTree(copy, m)).toBe('')
    expect(await sizesAndTimes(m)).toBe(await sizesAndTimes(copy))
    expect((await bfs(['umount', m])).code).toBe(0)
    fuseMounts.delete(m)
    // cat of each file the writer changed reads the T0 bytes; verify checks the BI log's images
    const changed = (await sh(`diff -rq ${copy} ${tree} | grep '^Files' | cut -d' ' -f2`)).stdout.split('\n').filter(Boolean)
    expect(changed.length).toBeGreaterThan(0)
    for (const f of changed) await must(`BFS_REPO=${repo} ${BFS} cat '${res.generation}:${path.relative(copy, f)}' | cmp - '${f}'`)
    const v = await bfs(['verify', res.generation], { repo })
    expect(v.stdout + v.stderr).not.toMatch(/FAIL/)
    expect(v.code).toBe(0)
    // the next backup (offline, the writer stopped) compares against the T0 generation
    // through its BI log: it restores as the tree is now, and the T0 one still as it was
    const r3 = await bfs(['backup', tree, '--exclude', '*-journal', '--json'], { repo })
    expect(r3.code).toBe(0)
    const out3 = path.join(work, 'restored-later')
    expect((await bfs(['restore', JSON.parse(r3.stdout).generation, out3], { repo })).code).toBe(0)
    expect(await diffTree(tree, out3)).toBe('')
    const out4 = path.join(work, 'restored-again')
    expect((await bfs(['restore', res.generation, out4], { repo })).code).toBe(0)
    expect(await diffTree(copy, out4)).toBe('')

    // control: the same tree, the same writer (started first), no --online
    await must(`rm -rf ${tree} ${stop} && cp -a ${copy} ${tree} && sync`)
    const repo2 = await newRepoF(1, path.join(work, 'repo2'))
    const control = startWriter(tree, '-', stop, 1)
    await waitFor(() => control.ops() >= 5, 'the control writer to start')
    const c = await bfs(['backup', tree, ...BACKUP], { repo: repo2 })
    fs.writeFileSync(stop, '')
    expect(await control.done).toBe(0)
    expect([0, 3]).toContain(c.code) // a file may change while it is read: warned, not an error
    const out2 = path.join(work, 'restored-control')
    expect((await bfs(['restore', 'latest', out2], { repo: repo2 })).code).toBe(0)
    expect(await diffTree(copy, out2)).not.toBe('')
  }, 600_000)

  it('a file open for writing at T0, and one on another filesystem inside the tree, are listed as not covered (summary, --json); exit 3', async () => {
    const mnt = await makeExt4('held')
    const tree = path.join(mnt, 'tree')
    fs.mkdirSync(tree)
    fs.writeFileSync(path.join(tree, 'held'), Buffer.alloc(50_000, 1))
    fs.writeFileSync(path.join(tree, 'free'), Buffer.alloc(50_000, 2))
    // another filesystem inside the tree: not captured (the mark is on the source's), listed
    fs.mkdirSync(path.join(tree, 'sub'))
    await must(`mount -t tmpfs -o size=1M bfs-online-sub ${tree}/sub`)
    mounts.push(path.join(tree, 'sub'))
    fs.writeFileSync(path.join(tree, 'sub', 'other'), 'other fs\n')
    const holder = spawn('python3', ['-c', 'import os, sys, time\nfd = os.open(sys.argv[1], os.O_WRONLY)\nprint("ready", flush=True)\ntime.sleep(600)', path.join(tree, 'held')], { stdio: ['ignore', 'pipe', 'inherit'] })
    children.push(holder)
    await new Promise<void>((r) => holder.stdout!.once('data', () => r()))
    const repo = await newRepo(path.join(work, 'repo-held'))
    try {
      const r = await bfs(['backup', tree, '--online'], { repo })
      expect(r.code).toBe(3)
      expect(r.stdout).toMatch(/online: the tree as it was at T0 \S+, except 2 files below/)
      expect(r.stdout).toContain('not covered (stored as read, may be inconsistent):\n    held (open for writing at T0)\n    sub/other (on another filesystem than the source, read as it is)\n')
      expect(r.stdout).not.toMatch(/^ {4}free/m)
      const j = await bfs(['backup', tree, '--online', '--full', '--json'], { repo })
      expect(j.code).toBe(3)
      expect(JSON.parse(j.stdout).online.uncovered).toEqual([
        { path: 'held', reason: 'open for writing at T0' },
        { path: 'sub/other', reason: 'on another filesystem than the source, read as it is' },
      ])
      const out = path.join(work, 'restored-held')
      expect((await bfs(['restore', 'latest', out], { repo })).code).toBe(0)
      expect(await diffTree(tree, out)).toBe('')
    } finally {
      holder.kill('SIGKILL')
    }
  }, 300_000)

  it('a file created or renamed over after T0 (before the walk reaches it) is listed as not covered', async () => {
    const mnt = await makeExt4('born')
    const tree = path.join(mnt, 'tree')
    fs.mkdirSync(path.join(tree, 'z'), { recursive: true })
    for (let i = 0; i < 6; i++) await must(`head -c 1000000 /dev/urandom > ${tree}/a${i}`)
    fs.writeFileSync(path.join(tree, 'z', 'old'), 'old\n')
    fs.writeFileSync(path.join(tree, 'z', 'kept'), 'kept\n')
    const repo = await newRepo(path.join(work, 'repo-born'))
    // a fifo as --t0-file: bfs blocks there once T0 is set, before it reads anything; the
    // writer acts then, and reading the fifo lets bfs go on (no race with the walk)
    const t0 = path.join(work, 't0-born')
    await must(`mkfifo ${t0}`)
    const b = spawnBfs(['backup', tree, '--online', '--t0-file', t0, '--json'], repo)
    children.push(b)
    let out = ''
    b.stdout!.on('data', (x: Buffer) => (out += x.toString()))
    const exited = new Promise<number>((r) => b.on('close', (code) => r(code ?? -1)))
    await waitFor(() => /^(wait_for_partner|fifo_open)$/.test(fs.readFileSync(`/proc/${b.pid}/wchan`, 'utf8')), 'bfs to open the t0 fifo')
    await must(`echo new > ${tree}/z/new; echo replaced > ${tree}/z/tmp; mv ${tree}/z/tmp ${tree}/z/old`)
    expect((await sh(`cat ${t0}`)).code).toBe(0) // lets bfs go on
    expect(await exited).toBe(3)
    const res = JSON.parse(out)
    expect(res.online.uncovered).toEqual([
      { path: 'z/new', reason: 'created or replaced after T0' },
      { path: 'z/old', reason: 'created or replaced after T0' },
    ])
  }, 300_000)

  it('a file replaced after the scan and before its read is left out and listed as not covered (exit 3)', async () => {
    const mnt = await makeExt4('stale')
    const tree = path.join(mnt, 'tree')
    fs.mkdirSync(tree)
    await must(`head -c 300000 /dev/urandom > ${tree}/a; head -c 300000 /dev/urandom > ${tree}/b; echo kept > ${tree}/c`)
    const copy = path.join(work, 'stale-copy')
    await must(`cp -a ${tree} ${copy}`)
    // format 1: format 2 lists b as 'created or replaced after T0' (its reason wording differs)
    const repo = await newRepoF(1, path.join(work, 'repo-stale'))
    // a permission listener of the test's own holds the worker's open of a (read first: the
    // walk has scanned b by then), replaces b (another inode at the path), then lets it go
    const helper = spawn('python3', [path.join(ROOT, 'test', 'fixtures', 'replace-on-open.py'), path.join(tree, 'a'), path.join(tree, 'b')], { stdio: ['ignore', 'pipe', 'inherit'] })
    children.push(helper)
    let said = ''
    helper.stdout!.on('data', (x: Buffer) => (said += x.toString()))
    const helperDone = new Promise<number>((r) => helper.on('close', (code) => r(code ?? -1)))
    await waitFor(() => said.includes('ready'), 'the permission listener')
    const r = await bfs(['backup', tree, '--online', ...BACKUP], { repo })
    expect(await helperDone).toBe(0)
    expect(said).toBe('ready\nreplaced\n')
    expect(r.code).toBe(3)
    const res = JSON.parse(r.stdout)
    expect(res.online.uncovered).toEqual([{ path: 'b', reason: 'replaced after T0 before it was read (left out)' }])
    // the newcomer's bytes were not stored under b's scanned size and times: b is not in the generation
    const out = path.join(work, 'stale-out')
    expect((await bfs(['restore', res.generation, out], { repo })).code).toBe(0)
    expect(fs.readdirSync(out).sort()).toEqual(['a', 'c'])
    expect(fs.readFileSync(path.join(out, 'a')).equals(fs.readFileSync(path.join(copy, 'a')))).toBe(true)
    expect(fs.readFileSync(path.join(out, 'c'), 'utf8')).toBe('kept\n')
  }, 300_000)

  it('a run whose capture is voided (bfs stopped while a writer waits) commits nothing and says so', async () => {
    const mnt = await makeExt4('void')
    const tree = path.join(mnt, 'tree')
    fs.mkdirSync(tree)
    for (let i = 0; i < 8; i++) await must(`head -c 1000000 /dev/urandom > ${tree}/f${i}`)
    const repo = await newRepo(path.join(work, 'repo-void'))
    // a fifo as --t0-file: bfs creates it once T0 is set and blocks there, before it reads a
    // file, until the fifo is read (no race with the walk on a loaded machine)
    const t0 = path.join(work, 't0-void')
    await must(`mkfifo ${t0}`)
    const b = spawnBfs(['backup', tree, '--online', '--t0-file', t0], repo)
    children.push(b)
    let out = ''
    let err = ''
    b.stdout!.on('data', (x: Buffer) => (out += x.toString()))
    b.stderr!.on('data', (x: Buffer) => (err += x.toString()))
    const exited = new Promise<number>((r) => b.on('close', (code) => r(code ?? -1)))
    await waitFor(() => /^(wait_for_partner|fifo_open)$/.test(fs.readFileSync(`/proc/${b.pid}/wchan`, 'utf8')), 'bfs to open the t0 fifo')
    await sigstop(b.pid!)
    // nothing is read yet: the write waits for the stopped listener until the watchdog (10 s) voids the run
    const dd = await sh(`dd if=/dev/zero of=${tree}/f7 bs=4096 count=1 conv=notrunc status=none`)
    expect(dd.code).toBe(0)
    b.kill('SIGCONT')
    expect((await sh(`cat ${t0}`)).code).toBe(0) // lets bfs go on
    expect(await exited).toBe(1)
    expect(err).toMatch(/^bfs: the online capture was voided: the capture listener stalled, so the files read may not be as they were at T0; nothing was committed\n$/)
    expect(out).toBe('')
    expect((await bfs(['generations'], { repo })).stdout).not.toMatch(/gen1/)
  }, 300_000)

  it('while the capture is on, every thread of bfs but the capture\'s own runs at nice +10 (--online-nice N; 0 leaves them as they are)', async () => {
    const mnt = await makeExt4('nice')
    const tree = path.join(mnt, 'tree')
    fs.mkdirSync(tree)
    for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(tree, `f${i}`), Buffer.alloc(100_000, i))
    // [comm, nice] of every thread
    const nices = (pid: number): Array<[string, number]> =>
      fs.readdirSync(`/proc/${pid}/task`).map((t) => {
        const stat = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8')
        return [stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), Number(stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[16])]
      })
    for (const [args, want] of [[[], 10], [['--online-nice', '3'], 3], [['--online-nice', '0'], 0]] as const) {
      const repo = await newRepo(path.join(work, `repo-nice-${want}`))
      // a fifo as --t0-file: bfs creates it once T0 is set and blocks there until it is read
      const t0 = path.join(work, `t0-nice-${want}`)
      await must(`mkfifo ${t0}`)
      const b = spawnBfs(['backup', tree, '--online', '--t0-file', t0, ...args], repo)
      children.push(b)
      const exited = new Promise<number>((r) => b.on('close', (code) => r(code ?? -1)))
      // (bin/bfs execs node: the pid is the main thread's, blocked in openat(2) of the fifo)
      await waitFor(() => /^(wait_for_partner|fifo_open)$/.test(fs.readFileSync(`/proc/${b.pid}/wchan`, 'utf8')), 'bfs to open the t0 fifo')
      const during = nices(b.pid!)
      const own = during.filter(([c]) => c.startsWith('bfs-bilog'))
      const rest = during.filter(([c]) => !c.startsWith('bfs-bilog'))
      expect(rest.length).toBeGreaterThan(3)
      // (relative to the nice value bfs inherits from this test)
      const base = os.getPriority(process.pid)
      expect(new Set(rest.map(([, n]) => n))).toEqual(new Set([Math.min(19, base + want)]))
      // the capture's listeners and flusher keep their priority (they answer the writers)
      expect(own.length).toBeGreaterThanOrEqual(2)
      expect(new Set(own.map(([, n]) => n))).toEqual(new Set([base]))
      expect(fs.readFileSync(t0, 'utf8')).toMatch(/^\d{4}-\d\d-\d\dT/)
      expect(await exited).toBe(0)
    }
  }, 300_000)

  it('lowerPriority: every thread of the process this much lower, then back', async () => {
    const { lowerPriority } = await import('../src/repo/online.js')
    const base = os.getPriority(process.pid)
    const restore = lowerPriority(4)
    try {
      expect(os.getPriority(process.pid)).toBe(Math.min(19, base + 4))
    } finally {
      restore()
    }
    expect(os.getPriority(process.pid)).toBe(base)
  })

  it('tmpfs: --online fails with one line (exit 1); --online=auto backs up without it and says so in one line', async () => {
    const tm = path.join(work, 'tmpfs')
    fs.mkdirSync(tm)
    await must(`mount -t tmpfs -o size=8M bfs-online-test ${tm}`)
    mounts.push(tm)
    fs.writeFileSync(path.join(tm, 'a'), 'hello\n')
    const repo = await newRepo(path.join(work, 'repo-tmpfs')) // the default format (2): its warnings say `warning:` as format 1's do
    const r = await bfs(['backup', tm, '--online'], { repo })
    expect(r.code).toBe(1)
    expect(r.stdout).toBe('')
    expect(r.stderr).toMatch(/^bfs: online capture is not supported on the filesystem of .*tmpfs: it has no fanotify pre-content events .*\(--online=auto backs up without it\)\n$/)
    // a bare --online before SRC is the flag, not SRC taken as its value (was: usage error, exit 2)
    const before = await bfs(['backup', '--online', tm], { repo })
    expect(before.code, before.stderr).toBe(1)
    expect(before.stderr).toMatch(/^bfs: online capture is not supported on the filesystem of /)
    const t0 = path.join(work, 't0-tmpfs')
    const a = await bfs(['backup', tm, '--online=auto', '--t0-file', t0], { repo })
    expect(a.code).toBe(0)
    expect(a.stderr).toMatch(/^bfs: warning: --online=auto: online capture is not supported on the filesystem of .*; backing up without it, so a file written during the backup may be stored torn\n$/)
    // (format 2 gives each run its generation number before it reads: the two refused runs above used 1 and 2)
    const gen = /^(gen\d+) committed/m.exec(a.stdout)?.[1]
    expect(gen).toBeDefined()
    expect(a.stdout).toMatch(/online: not available/)
    expect(fs.existsSync(t0)).toBe(true)
    const out = path.join(work, 'restored-tmpfs')
    expect((await bfs(['restore', gen!, out], { repo })).code).toBe(0)
    expect(await diffTree(tm, out)).toBe('')
  }, 120_000)

  for (const fmt of FORMATS) {
    it(`--volume --online: an image file written during the backup is stored as it was at T0 (restore, mount, cat, verify, a later incremental); without --online it differs (format ${fmt})`, async () => {
      const w = path.join(work, `img-f${fmt}`)
      fs.mkdirSync(w)
      const mnt = await makeExt4(`image-f${fmt}`)
      const img = path.join(mnt, 'disk.img')
      const copy = path.join(w, 'disk-copy.img')
      // 24 MiB: random and text blocks, a hole, more random data after it
      await must(`head -c 8M /dev/urandom > ${img} && yes "a line of the image" | head -c 8M >> ${img} && truncate -s 24M ${img} && head -c 1M /dev/urandom | dd of=${img} bs=4096 seek=5000 conv=notrunc status=none`)
      await must(`cp --sparse=always ${img} ${copy} && sync`)
      const repo = await newRepoF(fmt, path.join(w, 'repo'))
      const t0 = path.join(w, 't0')
      const stop = path.join(w, 'stop')
      const writer = startImageWriter(img, t0, stop, 3)
      const r = await bfs(['backup', img, '--online', '--t0-file', t0, ...IMG_BACKUP], { repo })
      const opsDuring = writer.ops()
      fs.writeFileSync(stop, '')
      expect(await writer.done).toBe(0)
      expect(r.stderr).toBe('')
      expect(r.code).toBe(0)
      const res = JSON.parse(r.stdout)
      expect(res.kind).toBe('volume')
      expect(res.online.captured).toBe(true)
      expect(res.online.uncovered).toEqual([])
      expect(fs.readFileSync(t0, 'utf8')).toBe(res.online.t0 + '\n')
      expect(opsDuring).toBeGreaterThan(0)
      // the writer changed blocks bfs had not read yet: their before-images are in the generation
      expect(res.online.biBlocks).toBeGreaterThan(0)
      if (fmt === 1) expect(res.biLog.bytes).toBeGreaterThan(0)
      else {
        expect(res.stats.biRecords).toBe(res.online.biRecords)
        expect(res.biLog).toMatch(PIECE_REF)
        expect(res.biIndex).toMatch(PIECE_REF)
      }
      expect((await sh(`cmp -s ${img} ${copy}`)).code).not.toBe(0)
      await expectImage(repo, res.generation, copy, w)

      // a later backup of the image as it is now is a block incremental against the T0 one,
      // which it reads through the BI log: both restore right
      const later = path.join(w, 'disk-later.img')
      await must(`cp --sparse=always ${img} ${later}`)
      const r2 = await bfs(['backup', img, ...IMG_BACKUP], { repo })
      expect(r2.code).toBe(0)
      expect(parentOf(JSON.parse(r2.stdout))).toBe(1)
      const out2 = path.join(w, 'restored2')
      expect((await bfs(['restore', 'latest', out2], { repo })).code).toBe(0)
      await must(`cmp ${out2} ${later}`)
      const out1 = path.join(w, 'restored1')
      expect((await bfs(['restore', 'gen1', out1], { repo })).code).toBe(0)
      await must(`cmp ${out1} ${copy}`)

      if (fmt === 1) {
        // a damaged BI log: verify says so (exit 4), and a read fails with one line (exit 6)
        const bl = path.join(repo, 'gens', '00000001', 'bilog')
        const bytes = fs.readFileSync(bl)
        bytes[bytes.length - 3] ^= 0x55
        fs.writeFileSync(bl, bytes)
        const vb = await bfs(['verify', 'gen1'], { repo })
        expect(vb.code).toBe(4)
        expect(vb.stdout + vb.stderr).toMatch(/bilog/)
        const cb = await bfs(['cat', 'gen1:disk.img'], { repo })
        expect(cb.code).toBe(6)
        expect(cb.stderr).toMatch(/^bfs: .*bilog.*\n$/)
      } else {
        // a damaged BILIST: verify says so (exit 4); the BI index still reads, so restore does too
        damagePiece(repo, 1, res.biLog)
        const vb = await bfs(['verify', 'gen1'], { repo })
        expect(vb.code).toBe(4)
        expect(vb.stdout + vb.stderr).toMatch(/FAIL gen1: BI log: /)
        const out3 = path.join(w, 'restored-damaged-log')
        expect((await bfs(['restore', 'gen1', out3], { repo })).code).toBe(0)
        await must(`cmp ${out3} ${copy}`)
      }

      // control: the same image, the same writer (no size changes, started first), no --online
      fs.rmSync(stop)
      await must(`cp --sparse=always ${copy} ${img} && sync`)
      const repo2 = await newRepoF(fmt, path.join(w, 'repo2'))
      const control = startImageWriter(img, '-', stop, 3, true)
      await waitFor(() => control.ops() >= 5, 'the control writer to start')
      const c = await bfs(['backup', img, ...IMG_BACKUP], { repo: repo2 })
      fs.writeFileSync(stop, '')
      expect(await control.done).toBe(0)
      expect(c.code).toBe(0)
      const outc = path.join(w, 'restored-control')
      expect((await bfs(['restore', 'latest', outc], { repo: repo2 })).code).toBe(0)
      expect((await sh(`cmp -s ${outc} ${copy}`)).code).not.toBe(0)
    }, 600_000)
  }

  for (const fmt of FORMATS) {
    it(`--volume --online: an image open for writing at T0 is listed as not covered (summary lines, exit 3; format ${fmt})`, async () => {
      const w = path.join(work, `img-open-f${fmt}`)
      fs.mkdirSync(w)
      const mnt = await makeExt4(`image-open-f${fmt}`)
      const img = path.join(mnt, 'disk.img')
      await must(`head -c 4M /dev/urandom > ${img}`)
      const repo = await newRepoF(fmt, path.join(w, 'repo'))
      // a writer that opened the image before T0 (a hypervisor, say): its writes raise no event
      const holder = spawn('python3', ['-c', 'import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY); print("open", flush=True); sys.stdin.read()', img], { stdio: ['pipe', 'pipe', 'inherit'] })
      children.push(holder)
      await new Promise((r) => holder.stdout!.once('data', r))
      const r = await bfs(['backup', img, '--volume', '--online'], { repo })
      holder.stdin!.end()
      expect(r.stderr).toBe('')
      expect(r.code).toBe(3)
      expect(r.stdout).toMatch(/\n {2}online: the image as it was at T0 \S+, except 1 file below; \d+ events? of other processes intercepted, .* of before-images logged\n {2}not covered \(stored as read, may be inconsistent\):\n {4}disk\.img \(open for writing at T0\)\n$/)
      // flagged as changed while read: the next backup reads it again although nothing
      // changed (format 2; format 1's volume backup skips an image whose times are the same)
      const again = await bfs(['backup', img, '--volume', '--json'], { repo })
      expect(again.code).toBe(0)
      expect(JSON.parse(again.stdout).stats.bytesRead).toBe(fmt === 2 ? 4 << 20 : 0)
    }, 300_000)
  }

  for (const fmt of FORMATS) {
    it(`--volume --online of an image named through a symlink reads the image (format ${fmt})`, async () => {
      const w = path.join(work, `img-link-f${fmt}`)
      fs.mkdirSync(w)
      const mnt = await makeExt4(`image-link-f${fmt}`)
      const img = path.join(mnt, 'disk.img')
      await must(`head -c 3M /dev/urandom > ${img} && ln -s disk.img ${mnt}/link.img`)
      const repo = await newRepoF(fmt, path.join(w, 'repo'))
      // the capture's own open of the image does not follow symlinks: bfs opens the real path
      const r = await bfs(['backup', path.join(mnt, 'link.img'), '--volume', '--online', '--json'], { repo })
      expect(r.stderr).toBe('')
      expect(r.code).toBe(0)
      const res = JSON.parse(r.stdout)
      expect(res.online.captured).toBe(true)
      await must(`BFS_REPO=${repo} ${BFS} cat '${res.generation}:link.img' | cmp - ${img}`)
    }, 300_000)
  }

  it('--volume --online on format 2, incremental: a block-incremental against the parent (itself online) while a writer changes the image; equal to the copy at T0, and so is the parent', async () => {
    const w = path.join(work, 'img-inc')
    fs.mkdirSync(w)
    const mnt = await makeExt4('image-inc')
    const img = path.join(mnt, 'disk.img')
    // 32 MiB of random data (nothing compresses: stored bytes say what was stored)
    await must(`head -c 32M /dev/urandom > ${img} && sync`)
    const repo = await newRepoF(2, path.join(w, 'repo'))
    const copies: string[] = []
    const gens: Array<Record<string, any>> = []
    // gen1: full, online, with the writer (pwrites and mappings only, in the last 4 MiB, which
    // bfs reads last); gen2: 64 blocks changed while nothing writes, then online with the writer again
    for (const [i, before] of [[1, ''], [2, `head -c 262144 /dev/urandom | dd of=${img} bs=4096 seek=3000 conv=notrunc status=none`]] as const) {
      if (before) await must(before)
      const copy = path.join(w, `copy${i}.img`)
      await must(`cp ${img} ${copy} && sync`)
      copies.push(copy)
      const t0 = path.join(w, `t0-${i}`)
      const stop = path.join(w, `stop-${i}`)
      const writer = startImageWriter(img, t0, stop, 10 + i, true, [28 << 20, 4 << 20])
      const r = await bfs(['backup', img, '--online', '--t0-file', t0, ...IMG_BACKUP], { repo })
      fs.writeFileSync(stop, '')
      expect(await writer.done).toBe(0)
      expect(r.stderr).toBe('')
      expect(r.code).toBe(0)
      const res = JSON.parse(r.stdout)
      expect(res.online.captured).toBe(true)
      expect(res.online.uncovered).toEqual([])
      expect(res.online.biBlocks).toBeGreaterThan(0)
      expect(res.biIndex).toMatch(PIECE_REF)
      gens.push(res)
      await expectImage(repo, res.generation, copy, w)
    }
    const inc = gens[1]!
    expect(parentOf(inc)).toBe(1)
    expect(inc.stats.changedFiles).toBe(1)
    // block-incremental: what gen2 stored is the 64 blocks changed before T0, the blocks the
    // writer changed since gen1's T0 (gen1 is compared as it was at its T0) and those it
    // changed after gen2's T0 before bfs read them (their images), far less than the image
    const w1 = changedBlocks(copies[0]!, copies[1]!)
    expect(w1).toBeGreaterThanOrEqual(64)
    expect(inc.stats.bytesRead).toBe(32 << 20)
    expect(inc.stats.storedBytes).toBeGreaterThan(w1 * 4096 * 0.9)
    expect(inc.stats.storedBytes).toBeLessThanOrEqual((w1 + inc.online.biBlocks) * 4096 * 1.05 + (1 << 20))
    expect(inc.stats.storedBytes).toBeLessThan(12 << 20) // (≤ 64 blocks + the 4 MiB window + its images)
    // the parent still restores as it was at its own T0
    const out1 = path.join(w, 'gen1-again')
    expect((await bfs(['restore', 'gen1', out1], { repo })).code).toBe(0)
    await must(`cmp ${out1} ${copies[0]}`)
    const v = await bfs(['verify', '--all'], { repo })
    expect(v.stdout + v.stderr).not.toMatch(/FAIL/)
    expect(v.code).toBe(0)
  }, 600_000)

  for (const fmt of FORMATS) {
    it(`refuses --online for a block device (--volume or auto mode) and --t0-file without --online (one line, exit 1; format ${fmt})`, async () => {
      const repo = await newRepoF(fmt, path.join(work, `repo-bad-f${fmt}`))
      const img = path.join(work, `vol-f${fmt}.img`)
      await must(`truncate -s 1M ${img}`)
      const dev = (await must(`losetup --find --show ${img}`)).trim()
      loops.push(dev)
      for (const args of [[dev, '--volume', '--online'], [dev, '--online']]) {
        const v = await bfs(['backup', ...args], { repo })
        expect(v.code).toBe(1)
        expect(v.stderr).toMatch(/^bfs: --online covers directories and image files, not block devices: \/dev\/loop\d+ is one .*\n$/)
      }
      expect(JSON.parse((await bfs(['generations', '--json'], { repo })).stdout)).toEqual([])
      const t = await bfs(['backup', work, '--t0-file', path.join(work, 'x')], { repo })
      expect(t.code).toBe(1)
      expect(t.stderr).toBe('bfs: --t0-file applies with --online\n')
      const n = await bfs(['backup', work, '--online-nice', '5'], { repo })
      expect(n.code).toBe(1)
      expect(n.stderr).toBe('bfs: --online-nice applies with --online\n')
    }, 120_000)
  }
})
