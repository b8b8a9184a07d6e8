/**
 * `bfs backup --online` on a format 2 repository (issue 14, native-notes/format.md §2.16):
 * test/online.test.ts's key cases on format 2. On a real ext4 filesystem on a loop device, a
 * writer process starts when `--t0-file` appears and hammers the tree while bfs reads it; the
 * generation (its before-images in the run's stream, its BI log as BILOG/BILIST pieces, its BI
 * index as an identity table of kind 2) must equal the copy taken before the writer started —
 * through `bfs restore`, through `bfs mount` and `bfs cat`, byte for byte, in size and mtime;
 * `bfs verify` passes; the next backup compares against the T0 content (not the torn one); a
 * prune after forgetting the older generation keeps the online one whole. The same run without
 * `--online` differs (the control). A file open for writing at T0 and one on another
 * filesystem are listed as not covered (exit 3). Needs root and Linux ≥ 6.14.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { bfs, BFS, diffTree, ROOT, sh, sigstop, spawnBfs, tmpdir } from './helpers.js'
import { checkFeatures } from '../src/format/v2/config.js'

/** The features of a format 2 repository's config (or config-copy): the JSON after the 64-byte envelope header. */
const features = (repo: string, name = 'config'): { incompat: string[]; rocompat: string[]; compat: string[] } =>
  JSON.parse(fs.readFileSync(path.join(repo, name)).subarray(64).toString('utf8')).features

const IS_ROOT = process.getuid?.() === 0
const [major, minor] = fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').split('.').map(Number)
const HAS_PRECONTENT = major > 6 || (major === 6 && minor >= 14)
const WRITER = path.join(ROOT, 'test', 'fixtures', 'online-writer.py')

const work = tmpdir('bfs-online-v2-test-')
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

async function newRepo2(dir: string): Promise<string> {
  const r = await bfs(['init', '--format', '2'], { repo: dir })
  if (r.code !== 0) throw new Error(`bfs init --format 2 ${dir}: ${r.stderr.trim()}`)
  return dir
}

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

/** Files of many sizes (random and compressible, one sparse) in a few directories, and a SQLite database (online.test.ts's tree). */
async function makeTree(dir: string): Promise<void> {
  const sizes = [0, 1, 100, 4095, 4096, 4097, 12288, 65543, 300_000, 1 << 20, 3 * (1 << 20) + 123, 2_500_000, 5_000_000]
  for (let d = 0; d < 3; d++) {
    const sub = path.join(dir, `d${d}`)
    fs.mkdirSync(sub, { recursive: true })
    for (const [i, size] of sizes.entries()) {
      const f = path.join(sub, `f${String(i).padStart(2, '0')}`)
      await must(i % 2 ? `head -c ${size} /dev/urandom > ${f}` : `yes "line $RANDOM of ${f}" | head -c ${size} > ${f}`)
    }
    await must(`truncate -s 20M ${sub}/sparse && head -c 200000 /dev/urandom | dd of=${sub}/sparse bs=4096 seek=1000 conv=notrunc status=none`)
  }
  await must(`python3 ${WRITER} setup ${dir}`)
}

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

/** The writer of online.test.ts: waits for `t0File` ('-': starts at once), runs until `stop` exists. */
function startWriter(dir: string, t0File: string, stop: string, seed: number): { done: Promise<number>; ops: () => number } {
  const src = path.join(work, 'cp-source')
  if (!fs.existsSync(src)) fs.writeFileSync(src, Buffer.alloc(123_457, 7))
  return runWriter([WRITER, 'run', dir, t0File, stop, src, String(seed)], 'writer')
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 120_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

async function sizesAndTimes(dir: string): Promise<string> {
  return must(`cd '${dir}' && find . -type f -printf '%P %s %T@\\n' | sort`)
}

/** An mtime in milliseconds as `ls --json` prints it, to the millisecond (2026-12-03T08:00:00.123). */
function nsTimeOf(ms: number): string {
  return new Date(Math.floor(ms)).toISOString().slice(0, 23)
}

// Slow on purpose (online.test.ts): one compression thread at level 19 and small units, so
// that the reads last and the writer overlaps them.
const BACKUP = ['--threads', '1', '--level', '19', '--unit-blocks', '16', '--exclude', '*-journal', '--json']

describe.skipIf(!IS_ROOT || !HAS_PRECONTENT)('format 2: backup --online (root, Linux ≥ 6.14)', () => {
  it('stores the tree as it was at T0 while a writer hammers it (restore, mount, cat, verify, the next backup, prune after forget); without --online it differs', async () => {
    const mnt = await makeExt4('hammer')
    const tree = path.join(mnt, 'tree')
    const copy = path.join(work, 'copy')
    await makeTree(tree)
    // an offline generation first, then changes: the online one reads changed files against
    // it (block incremental) and new ones in full
    const repo = await newRepo2(path.join(work, 'repo'))
    expect((await bfs(['backup', tree], { repo })).code).toBe(0)
    expect(features(repo).incompat).not.toContain('bilog')
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
    expect(res.format).toBe(2)
    expect(res.sources[0].parent).toBe(1)
    expect(res.online.captured).toBe(true)
    expect(res.online.uncovered).toEqual([])
    expect(fs.readFileSync(t0, 'utf8')).toBe(res.online.t0 + '\n')
    expect(opsDuring).toBeGreaterThan(0)
    expect(res.online.images).toBeGreaterThan(0)
    // and files of at most 64 KiB it wrote first were read whole then (stored as their data:
    // the restore, the mount and cat below read them as at T0)
    expect(res.online.preReads).toBeGreaterThan(0)
    expect(res.online.preReadBytes).toBeGreaterThan(0)
    expect(await diffTree(copy, tree)).not.toBe('')
    // blocks written after T0 before bfs read them: in the BI log and the BI index, not the maps
    expect(res.online.biBlocks).toBeGreaterThan(0)
    expect(res.stats.biRecords).toBe(res.online.biRecords)
    expect(res.biLog).toMatch(/^2\.\d+\.\d+\.\d+:[0-9a-f]{64}$/)
    expect(res.biIndex).toMatch(/^2\.\d+\.\d+\.\d+:[0-9a-f]{64}$/)
    // the repository says that it holds BI logs (§2.7): a bfs without the overlays refuses it
    // rather than read the torn maps; both copies of the config
    expect(features(repo).incompat).toContain('bilog')
    expect(features(repo, 'config-copy').incompat).toContain('bilog')
    expect(() => checkFeatures({ features: features(repo) }, 'config', new Set(['pieces', 'upgrading', 'v1-streams']))).toThrow(/feature 'bilog', which this bfs does not support/)

    const out = path.join(work, 'restored')
    const rr = await bfs(['restore', res.generation, out], { repo })
    expect(rr.stderr).toBe('')
    expect(rr.code).toBe(0)
    expect(await diffTree(copy, out)).toBe('')
    expect(await sizesAndTimes(out)).toBe(await sizesAndTimes(copy))
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
    const changed = (await sh(`diff -rq ${copy} ${tree} | grep '^Files' | cut -d' ' -f2`)).stdout.split('\n').filter(Boolean)
    expect(changed.length).toBeGreaterThan(0)
    for (const f of changed) await must(`BFS_REPO=${repo} ${BFS} cat '${res.generation}:${path.relative(copy, f)}' | cmp - '${f}'`)
    const v = await bfs(['verify', res.generation], { repo })
    expect(v.stdout + v.stderr).not.toMatch(/FAIL/)
    expect(v.code).toBe(0)

    // the next backup (offline, the writer stopped) compares against the T0 content: it
    // restores as the tree is now, and the online generation still as it was at T0
    const r3 = await bfs(['backup', tree, '--exclude', '*-journal', '--json'], { repo })
    expect(r3.code).toBe(0)
    expect(JSON.parse(r3.stdout).sources[0].parent).toBe(2)
    const out3 = path.join(work, 'restored-later')
    expect((await bfs(['restore', JSON.parse(r3.stdout).generation, out3], { repo })).code).toBe(0)
    expect(await diffTree(tree, out3)).toBe('')
    // a prune after forgetting the older (offline) generation keeps the online one whole:
    // its BILOG/BILIST and BI index pieces, and the before-images in its stream
    expect((await bfs(['forget', 'gen1'], { repo })).code).toBe(0)
    const pr = await bfs(['prune', '--json'], { repo })
    expect(pr.stderr).toBe('')
    expect(pr.code).toBe(0)
    const v2 = await bfs(['verify', '--all'], { repo })
    expect(v2.stdout + v2.stderr).not.toMatch(/FAIL/)
    expect(v2.code).toBe(0)
    const out4 = path.join(work, 'restored-again')
    expect((await bfs(['restore', res.generation, out4], { repo })).code).toBe(0)
    expect(await diffTree(copy, out4)).toBe('')
    expect(await sizesAndTimes(out4)).toBe(await sizesAndTimes(copy))
    // a damaged BILIST: verify says so (exit 4); the BI index still reads, so restore does too
    const [, pack, offset, len] = /^(\d+)\.(\d+)\.(\d+)\.(\d+):/.exec(res.biLog)!.slice(1)
    const packFile = path.join(repo, 'gens', String(res.id).padStart(8, '0'), `pack-${pack!.padStart(8, '0')}`)
    const bytes = fs.readFileSync(packFile)
    bytes[Number(offset) + Number(len) - 1] ^= 0x55
    fs.writeFileSync(packFile, bytes)
    const vb = await bfs(['verify', res.generation], { repo })
    expect(vb.code).toBe(4)
    expect(vb.stdout + vb.stderr).toMatch(/FAIL gen2: BI log: /)
    const out5 = path.join(work, 'restored-damaged-log')
    expect((await bfs(['restore', res.generation, out5], { repo })).code).toBe(0)
    expect(await diffTree(copy, out5)).toBe('')

    // control: the same tree, the same writer (started first), no --online
    await must(`rm -rf ${tree} ${stop} && cp -a ${copy} ${tree} && sync`)
    const repo2 = await newRepo2(path.join(work, 'repo2'))
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
    fs.mkdirSync(path.join(tree, 'sub'))
    await must(`mount -t tmpfs -o size=1M bfs-online-v2-sub ${tree}/sub`)
    mounts.push(path.join(tree, 'sub'))
    fs.writeFileSync(path.join(tree, 'sub', 'other'), 'other fs\n')
    const holder = spawn('python3', ['-c', 'import os, sys, time\nfd = os.open(sys.argv[1], os.O_WRONLY)\nprint("ready", flush=True)\ntime.sleep(600)', path.join(tree, 'held')], { stdio: ['ignore', 'pipe', 'inherit'] })
    children.push(holder)
    await new Promise<void>((r) => holder.stdout!.once('data', () => r()))
    const repo = await newRepo2(path.join(work, 'repo-held'))
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
    const repo = await newRepo2(path.join(work, 'repo-born'))
    // a fifo as --t0-file: bfs blocks there once T0 is set, before it reads anything
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

  it('the second name of a hard-linked file appended to after T0 has the T0 size, times and bytes too (cat, ls --json); the next backup stores the current bytes for both names', async () => {
    const mnt = await makeExt4('linked')
    const tree = path.join(mnt, 'tree')
    fs.mkdirSync(path.join(tree, 'z'), { recursive: true })
    await must(`head -c 100000 /dev/urandom > ${tree}/z/h1 && ln ${tree}/z/h1 ${tree}/z/h2`)
    const atT0 = fs.readFileSync(path.join(tree, 'z', 'h1'))
    const stT0 = fs.statSync(path.join(tree, 'z', 'h1'))
    const repo = await newRepo2(path.join(work, 'repo-linked'))
    // a fifo as --t0-file: bfs blocks there once T0 is set, before it reads anything; the
    // append lands then, before the walk stats and reads either name
    const t0 = path.join(work, 't0-linked')
    await must(`mkfifo ${t0}`)
    const b = spawnBfs(['backup', tree, '--online', '--t0-file', t0, '--json'], repo)
    children.push(b)
    let out = ''
    let err = ''
    b.stdout!.on('data', (x: Buffer) => (out += x.toString()))
    b.stderr!.on('data', (x: Buffer) => (err += x.toString()))
    const exited = new Promise<number>((r) => b.on('close', (code) => r(code ?? -1)))
    await waitFor(() => /^(wait_for_partner|fifo_open)$/.test(fs.readFileSync(`/proc/${b.pid}/wchan`, 'utf8')), 'bfs to open the t0 fifo')
    await must(`head -c 50000 /dev/urandom >> ${tree}/z/h1`)
    expect((await sh(`cat ${t0}`)).code).toBe(0) // lets bfs go on
    expect(await exited).toBe(0)
    expect(err).toBe('')
    const res = JSON.parse(out)
    expect(res.online.uncovered).toEqual([])
    const ls = JSON.parse((await bfs(['ls', `${res.generation}:z`, '--json'], { repo })).stdout) as Array<{ name: string; size: number; mtime: string; ctime: string }>
    const [h1, h2] = ['h1', 'h2'].map((n) => ls.find((x) => x.name === n)!)
    const mtimeT0 = nsTimeOf(stT0.mtimeMs)
    expect(h1!.size).toBe(100_000)
    expect(h2!.size).toBe(100_000)
    expect(h2!.mtime).toBe(h1!.mtime)
    expect(h2!.ctime).toBe(h1!.ctime)
    expect(h1!.mtime.slice(0, 23)).toBe(mtimeT0)
    for (const n of ['h1', 'h2']) expect((await bfs(['cat', `${res.generation}:z/${n}`], { repo })).out.equals(atT0)).toBe(true)

    // the next (plain) backup: both names changed since the online generation, both stored as they are now
    const now = fs.readFileSync(path.join(tree, 'z', 'h1'))
    expect(now.length).toBe(150_000)
    const r2 = await bfs(['backup', tree, '--json'], { repo })
    expect(r2.stderr).toBe('')
    expect(r2.code).toBe(0)
    const g2 = JSON.parse(r2.stdout).generation
    for (const n of ['h1', 'h2']) expect((await bfs(['cat', `${g2}:z/${n}`], { repo })).out.equals(now)).toBe(true)
    const ls2 = JSON.parse((await bfs(['ls', `${g2}:z`, '--json'], { repo })).stdout) as Array<{ name: string; size: number }>
    expect(ls2.map((x) => x.size)).toEqual([150_000, 150_000])
  }, 300_000)

  it('a run whose capture is voided (bfs stopped while a writer waits) commits nothing and says so', async () => {
    const mnt = await makeExt4('void')
    const tree = path.join(mnt, 'tree')
    fs.mkdirSync(tree)
    for (let i = 0; i < 8; i++) await must(`head -c 1000000 /dev/urandom > ${tree}/f${i}`)
    const repo = await newRepo2(path.join(work, 'repo-void'))
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
    expect((await sh(`dd if=/dev/zero of=${tree}/f7 bs=4096 count=1 conv=notrunc status=none`)).code).toBe(0)
    b.kill('SIGCONT')
    expect((await sh(`cat ${t0}`)).code).toBe(0) // lets bfs go on
    expect(await exited).toBe(1)
    expect(err).toMatch(/^bfs: the online capture was voided: the capture listener stalled, so the files read may not be as they were at T0; nothing was committed\n$/)
    expect(out).toBe('')
    expect((await bfs(['generations'], { repo })).stdout).not.toMatch(/gen1/)
    // the run is recorded as aborted, its gens/1 gone: the next backup commits
    expect(fs.existsSync(path.join(repo, 'gens', '00000001'))).toBe(false)
    expect((await bfs(['backup', tree], { repo })).code).toBe(0)
  }, 300_000)
})
