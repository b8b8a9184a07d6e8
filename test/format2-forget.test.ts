/**
 * `bfs forget` on format 2 (issue 16 item 1; format.md §2.20.5), through the real CLI on real
 * trees: forgetting a generation by name leaves every other one — including later ones that
 * read its pieces and streams — reading as its source did (ls, cat, restore, diff -r, stat,
 * diff, verify, real FUSE mounts in their own processes, one of them mounted while forget
 * runs); retention policies with fixed times (reasons, groups, --source); --dry-run changes
 * nothing; a crash between the retired copy and the manifest's deletion (BFS_TEST_FAULTS
 * `kill`) is finished by the next forget; the maintenance lock held by a live process refuses
 * (exit 5) or is waited for, a dead holder's is broken; format 1 and bad command lines are
 * refused in one line.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { bfs, BFS, diffTree, makeTree, sh, statTree, tmpdir } from './helpers.js'
import { keys2 } from '../src/format/v2/layout.js'
import { decodeManifestV2, encodeLease, encodeManifestV2, LEASE_EXPIRES_MS, type LeaseRecord } from '../src/format/v2/records.js'
import { pidStartOf } from '../src/repo/v2/lease.js'
import { envelope2, payloadOf, Repo2 } from '../src/repo/v2/repo2.js'

let work: string
let src: string
let repo: string
const snaps: Record<number, string> = {}
const mounts = new Set<string>()
const children: ChildProcess[] = []

const ok = async (args: string[], r = repo, env?: Record<string, string>): Promise<string> => {
  const res = await bfs(args, { repo: r, env })
  expect(res.code, `${args.join(' ')}: ${res.stderr}`).toBe(0)
  return res.stdout
}
async function init2(dir: string): Promise<string> {
  await ok(['init', '--format', '2'], dir)
  return dir
}
async function umount(mnt: string): Promise<void> {
  if ((await bfs(['umount', mnt])).code !== 0) await bfs(['umount', '--lazy', mnt])
  if ((await sh(`grep -q ' ${mnt} ' /proc/mounts`)).code === 0) await sh(`fusermount -uz '${mnt}'`)
  mounts.delete(mnt)
}
async function mount(args: string[]): Promise<void> {
  const mnt = path.resolve(args[args.length - 1]!)
  fs.mkdirSync(mnt, { recursive: true })
  await ok(['mount', ...args])
  mounts.add(mnt)
}
/**
 * Every file of a repository with its size and mtime, and every directory: what "changed
 * nothing" compares (directory mtimes move when a lock attempt's temporary file comes and goes).
 */
async function snapshot(dir: string): Promise<string> {
  return (await sh(`cd '${dir}' && { find . -type d; find . -not -type d -printf '%p %y %s %T@\\n'; } | sort`)).stdout
}
const ids = async (r = repo): Promise<number[]> => (JSON.parse(await ok(['ls', '--json'], r)) as Array<{ id: number }>).map((g) => g.id)
function putLock(dir: string, l: Partial<LeaseRecord> & { pid: number }): void {
  const now = new Date().toISOString()
  const rec: LeaseRecord = { lease: 'maintenance', kind: 'maintenance', host: os.hostname(), pidStart: pidStartOf(l.pid) ?? 0, started: now, renewed: now, expiresAfterMs: LEASE_EXPIRES_MS, command: 'forget', ...l }
  fs.mkdirSync(path.join(dir, 'locks'), { recursive: true })
  fs.writeFileSync(path.join(dir, keys2.maintenanceLock), envelope2('lease', encodeLease(rec)))
}
function sleeper(): ChildProcess {
  const c = spawn('sleep', ['600'], { stdio: 'ignore' })
  children.push(c)
  return c
}
/** A small format 2 repository with `n` generations of one small tree. */
async function smallRepo(name: string, n: number): Promise<{ repo: string; src: string }> {
  const d = path.join(work, name)
  const s = path.join(d, 'src')
  fs.mkdirSync(s, { recursive: true })
  const r = await init2(path.join(d, 'repo'))
  for (let i = 1; i <= n; i++) {
    fs.writeFileSync(path.join(s, `f${i}`), `file ${i}\n`)
    await ok(['backup', s], r)
  }
  return { repo: r, src: s }
}

beforeAll(async () => {
  expect(fs.existsSync('/dev/fuse')).toBe(true)
  work = tmpdir('i16-forget-')
  src = path.join(work, 'src')
  repo = await init2(path.join(work, 'repo'))
  await makeTree(src)
  await sh(`find '${src}' > /dev/null; sleep 0.01`)
  const backup = async (id: number): Promise<void> => {
    await ok(['backup', src, '--frame-blocks', '16'])
    snaps[id] = path.join(work, `snap${id}`)
    expect((await sh(`cp -a '${src}' '${snaps[id]}'`)).code).toBe(0)
  }
  await backup(1)
  // gen2: a block of random.bin changed (the rest of its map stays in stream 1), seq.txt appended, a file added
  expect((await sh(`printf 'XYZ' | dd of='${src}/random.bin' bs=1 seek=1000000 conv=notrunc status=none && echo more >> '${src}/seq.txt' && echo new > '${src}/new.txt'`)).code).toBe(0)
  await backup(2)
  // gen3: a new directory, a file removed
  expect((await sh(`mkdir '${src}/x' && echo y > '${src}/x/y.txt' && rm '${src}/empty'`)).code).toBe(0)
  await backup(3)
  await backup(4) // nothing changed: every piece is gen3's
})
afterEach(async () => {
  for (const m of [...mounts]) await umount(m)
})
afterAll(async () => {
  for (const m of [...mounts]) await umount(m)
  for (const c of children) c.kill('SIGKILL')
  fs.rmSync(work, { recursive: true, force: true })
})

describe('format 2 forget: by name', () => {
  it('forget gen1: its manifest is retired, nothing else is touched, and the later generations that share its pieces read as their sources', async () => {
    // gen3 does read what run 1 wrote (unchanged files: run 1's pieces and stream)
    const faults = JSON.stringify({ rules: [{ keys: 'gens/00000001/**', fault: 'EIO' }] })
    const dep = await bfs(['cat', '3:hello.txt'], { repo, env: { NODE_ENV: 'test', BFS_TEST_FAULTS: faults } })
    expect(dep.code, dep.stderr).not.toBe(0)
    const gensBefore = (await sh(`cd '${repo}/gens' && find . -type f -printf '%p %s %T@\\n' | sort`)).stdout
    const lsBefore = await ok(['ls', '3:a'])
    const r = await bfs(['forget', 'gen1'], { repo })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toBe('')
    expect(r.stdout).toMatch(/^remove {2}gen1 {2}\S+ {2}\S+\nforgot gen1 \(no data was deleted/)
    expect(await ids()).toEqual([2, 3, 4])
    expect(await ok(['ls'])).not.toMatch(/^gen1 /m)
    const gone = await bfs(['cat', '1:hello.txt'], { repo })
    expect(gone.code).toBe(1)
    expect(gone.stderr).toBe(`bfs: no generation 1 in ${repo}\n`)
    // the retired copy: the manifest plus the retirement fields; the manifest is gone; no data touched
    expect(fs.existsSync(path.join(repo, 'manifests/gen-00000001'))).toBe(false)
    const ret = decodeManifestV2(payloadOf('manifest', fs.readFileSync(path.join(repo, 'retired/gen-00000001-r0001')), 'retired'), 'retired', true)
    expect(ret).toMatchObject({ id: 1, rev: 1, retired: { reason: 'forget', retiredBy: 4 } })
    expect(Date.now() - Date.parse(ret.retired!.retiredAt)).toBeLessThan(3_600_000)
    expect((await sh(`cd '${repo}/gens' && find . -type f -printf '%p %s %T@\\n' | sort`)).stdout).toBe(gensBefore)
    expect(fs.readdirSync(path.join(repo, 'locks'))).toEqual([]) // the lock was released
    // every later generation reads as its source did
    for (const [id, snap] of [[2, snaps[2]!], [3, snaps[3]!], [4, snaps[4]!]] as const) {
      const out = path.join(work, `out${id}`)
      await ok(['restore', String(id), out])
      expect(await diffTree(snap, out), `gen${id}`).toBe('')
      expect(await statTree(out), `gen${id}`).toBe(await statTree(snap))
      fs.rmSync(out, { recursive: true, force: true })
    }
    expect((await bfs(['cat', '3:random.bin'], { repo })).out.equals(fs.readFileSync(path.join(snaps[3]!, 'random.bin')))).toBe(true)
    expect(await ok(['cat', 'latest~2:hello.txt'])).toBe('hello world\n') // latest~2 is gen2 now
    expect(await ok(['ls', '3:a'])).toBe(lsBefore)
    expect(await ok(['diff', '2', '3'])).toMatch(/^\+ {4}\/x\/\n\+ {4}\/x\/y\.txt {2}\(2 B\)$/m)
    const v = await bfs(['verify', '--all'], { repo })
    expect(v.code, v.stdout + v.stderr).toBe(0)
  })

  it('mounts in their own processes: the whole repository shows no forgotten generation; a generation forgotten while mounted keeps reading', async () => {
    const all = path.join(work, 'mnt-all')
    const one = path.join(work, 'mnt-2')
    await mount([all])
    await mount(['2', one])
    expect(fs.readdirSync(all).filter((n) => n.startsWith('gen')).sort()).toEqual(['gen2', 'gen3', 'gen4'])
    expect(await diffTree(snaps[3]!, path.join(all, 'gen3'))).toBe('')
    // forget gen2 while it is mounted: the mount read its manifest, and nothing was deleted
    const r = await bfs(['forget', '2'], { repo })
    expect(r.code, r.stderr).toBe(0)
    expect(await diffTree(snaps[2]!, one)).toBe('')
    expect(await statTree(one)).toBe(await statTree(snaps[2]!))
    // the whole-repository mount re-reads its list (at most once a second): gen2 leaves it
    let names: string[] = []
    for (const until = Date.now() + 60_000; Date.now() < until; await new Promise((res) => setTimeout(res, 200))) {
      names = fs.readdirSync(all).filter((n) => n.startsWith('gen')).sort()
      if (!names.includes('gen2')) break
    }
    expect(names).toEqual(['gen3', 'gen4'])
    expect(fs.readlinkSync(path.join(all, 'latest'))).toBe('gen4')
    expect(await diffTree(snaps[4]!, path.join(all, 'gen4'))).toBe('')
  })

  it('a damaged manifest is not forgotten by name (exit 6), and a policy keeps it, naming it', async () => {
    const { repo: r } = await smallRepo('damaged', 3)
    const f = path.join(r, 'manifests/gen-00000002')
    const b = fs.readFileSync(f)
    b[b.length - 5] ^= 0xff
    fs.writeFileSync(f, b)
    const named = await bfs(['forget', '2'], { repo: r })
    expect(named.code).toBe(6)
    expect(named.stderr).toMatch(/^bfs: gen2 is damaged \(.*\); forget leaves it alone \(bfs verify reports it\)\n$/)
    const p = await bfs(['forget', '--keep-last', '1'], { repo: r })
    expect(p.code, p.stderr).toBe(0)
    expect(p.stdout).toMatch(/^keep gen2: damaged, its manifest does not read/m)
    expect(fs.existsSync(f)).toBe(true)
    expect(fs.readdirSync(path.join(r, 'manifests'))).toEqual(['gen-00000002', 'gen-00000003'])
  })
})

describe('format 2 forget: policies', () => {
  let r: string
  /** Backs up `dir` and sets the new generation's time (TZ=UTC for the CLI below). */
  async function backupAt(dir: string, iso: string): Promise<void> {
    fs.writeFileSync(path.join(dir, 'stamp'), iso)
    await ok(['backup', dir], r)
    const repo2 = Repo2.open(r)
    const id = repo2.generationIds().at(-1)!
    const m = repo2.manifest(id)
    repo2.sync.putSync(keys2.manifest(id), envelope2('manifest', encodeManifestV2({ ...m, time: iso, endTime: iso })), { mode: 'replace' })
  }
  const UTC = { TZ: 'UTC' }
  const plan = async (args: string[]): Promise<Record<number, string>> => {
    const out = JSON.parse(await ok(['forget', '-n', '--json', ...args], r, UTC)) as { dryRun: boolean; generations: Array<{ id: number; action: string; reasons: string[] }> }
    expect(out.dryRun).toBe(true)
    return Object.fromEntries(out.generations.map((g) => [g.id, g.action === 'keep' ? g.reasons.join(',') : 'remove']))
  }

  beforeAll(async () => {
    const a = path.join(work, 'pol-a')
    const b = path.join(work, 'pol-b')
    fs.mkdirSync(a)
    fs.mkdirSync(b)
    r = await init2(path.join(work, 'pol-repo'))
    for (const t of ['2026-01-01T10:00:00Z', '2026-01-01T12:00:00Z', '2026-01-02T09:00:00Z', '2026-01-09T09:00:00Z', '2026-01-09T10:00:00Z']) await backupAt(a, t)
    for (const t of ['2026-01-05T00:00:00Z', '2026-01-06T00:00:00Z']) await backupAt(b, t)
  })

  it('--dry-run --json: per host and source, what each rule keeps and why; text says the same; nothing changes', async () => {
    const before = await snapshot(r)
    expect(await plan(['--keep-daily', '2', '--keep-last', '1'])).toEqual({ 5: 'last,daily', 4: 'remove', 3: 'daily', 2: 'remove', 1: 'remove', 7: 'last,daily', 6: 'daily' })
    expect(await plan(['--keep-daily', '3'])).toEqual({ 5: 'daily', 4: 'remove', 3: 'daily', 2: 'daily', 1: 'remove', 7: 'daily', 6: 'daily' })
    expect(await plan(['--keep-daily', '5'])).toMatchObject({ 1: 'oldest daily', 6: 'daily' })
    expect(await plan(['--keep-within', '1w'])).toEqual({ 5: 'within 1w', 4: 'within 1w', 3: 'remove', 2: 'remove', 1: 'remove', 7: 'within 1w', 6: 'within 1w' })
    expect(await plan(['--keep-weekly', '1', '--keep-monthly', '1', '--keep-yearly', '1', '--keep-hourly', '2'])).toMatchObject({ 5: 'hourly,weekly,monthly,yearly', 4: 'hourly', 3: 'remove' })
    // one group for all; one source only
    expect(await plan(['--keep-daily', '2', '--group-by', ''])).toEqual({ 5: 'daily', 4: 'remove', 7: 'daily', 6: 'remove', 3: 'remove', 2: 'remove', 1: 'remove' })
    expect(await plan(['--keep-last', '1', '--source', path.join(work, 'pol-a')])).toEqual({ 5: 'last', 4: 'remove', 3: 'remove', 2: 'remove', 1: 'remove' })
    const text = await ok(['forget', '--dry-run', '--keep-daily', '2', '--keep-last', '1'], r, UTC)
    expect(text).toContain(`host ${os.hostname()}, source ${path.join(work, 'pol-a')}: keep 2, would remove 3\n  keep    gen5  2026-01-09T10:00:00Z  ${path.join(work, 'pol-a')}  (last, daily)\n  remove  gen4  2026-01-09T09:00:00Z`)
    expect(text).toMatch(/\ndry run: would forget gen1, gen2, gen4; nothing was changed\n$/)
    expect(await snapshot(r)).toBe(before)
    // by name too
    const named = await ok(['forget', '-n', '3', 'gen1-2'], r)
    expect(named).toMatch(/^would remove {2}gen1 .*\nwould remove {2}gen2 .*\nwould remove {2}gen3 .*\ndry run: would forget gen1, gen2, gen3; nothing was changed\n$/)
    expect(await snapshot(r)).toBe(before)
  })

  it('applies the policy: what it keeps stays, the rest is retired; running it again forgets nothing', async () => {
    const out = JSON.parse(await ok(['forget', '--keep-daily', '2', '--keep-last', '1', '--json'], r, UTC)) as { dryRun: boolean; forgotten: number[] }
    expect(out.dryRun).toBe(false)
    expect(out.forgotten.sort()).toEqual([1, 2, 4])
    expect(await ids(r)).toEqual([3, 5, 6, 7])
    expect(fs.readdirSync(path.join(r, 'retired')).sort()).toEqual(['gen-00000001-r0001', 'gen-00000002-r0001', 'gen-00000004-r0001'])
    expect(await ok(['cat', '3:stamp'], r)).toBe('2026-01-02T09:00:00Z')
    const again = await ok(['forget', '--keep-daily', '2', '--keep-last', '1'], r, UTC)
    expect(again).toMatch(/\nnothing to forget\n$/)
  })
})

describe('format 2 forget: crash safety and the maintenance lock', () => {
  it('killed after the retired copy and before the manifest is deleted: the generation stays committed, and the next forget finishes it', async () => {
    const { repo: r } = await smallRepo('crash', 3)
    // killed before the retired copy is written: nothing changed at all (but the lock it held)
    const early = await bfs(['forget', '2'], { repo: r, env: { NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ keys: 'retired/*', ops: ['put'], fault: 'kill' }] }) } })
    expect(early.stderr).toContain('killed by SIGKILL')
    expect(fs.existsSync(path.join(r, 'retired')) ? fs.readdirSync(path.join(r, 'retired')) : []).toEqual([])
    expect(await ids(r)).toEqual([1, 2, 3])
    // killed between the two steps
    const crash = await bfs(['forget', '2'], { repo: r, env: { NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ keys: 'manifests/*', ops: ['remove'], fault: 'kill' }] }) } })
    expect(crash.stderr).toContain('killed by SIGKILL')
    expect(fs.existsSync(path.join(r, 'retired/gen-00000002-r0001'))).toBe(true)
    expect(fs.existsSync(path.join(r, 'manifests/gen-00000002'))).toBe(true)
    expect(await ids(r)).toEqual([1, 2, 3]) // still committed
    expect(fs.existsSync(path.join(r, keys2.maintenanceLock))).toBe(true) // the dead process's lock
    const dry = await ok(['forget', '-n', '--keep-last', '10'], r)
    expect(dry).toMatch(/^would finish forgetting gen2 \(an earlier forget was interrupted after retiring it\)\n/)
    expect(await ids(r)).toEqual([1, 2, 3])
    // the next forget (keeping everything) breaks the stale lock and finishes gen2
    const next = await bfs(['forget', '--keep-last', '10'], { repo: r })
    expect(next.code, next.stderr).toBe(0)
    expect(next.stderr).toMatch(/^bfs: broke a stale maintenance lock \(pid \d+ on .* \(forget, since .*\)\)\n$/)
    expect(next.stdout).toMatch(/^finished forgetting gen2 .*\n.*keep 2, remove 0\n/)
    expect(await ids(r)).toEqual([1, 3])
    expect(fs.existsSync(path.join(r, keys2.maintenanceLock))).toBe(false)
    expect(await ok(['cat', '3:f2'], r)).toBe('file 2\n')
  })

  it('a live holder of the maintenance lock: exit 5 in one line, nothing changed; --wait waits for it; a dead holder is broken', async () => {
    const { repo: r } = await smallRepo('locked', 3)
    const s = sleeper()
    putLock(r, { pid: s.pid!, command: 'prune' })
    const before = await snapshot(r)
    const now = await bfs(['forget', '1'], { repo: r })
    expect(now.code).toBe(5)
    expect(now.stderr).toBe(`bfs: ${r}: the maintenance lock is held by pid ${s.pid} on ${os.hostname()} (prune, since ${/"started":"([^"]+)"/.exec(fs.readFileSync(path.join(r, keys2.maintenanceLock), 'latin1'))![1]}); 'forget' did nothing (use --wait to wait for it)\n`)
    const waited = await bfs(['forget', '1', '--wait', '1'], { repo: r })
    expect(waited.code).toBe(5)
    expect(waited.stderr).toMatch(/^bfs: the maintenance lock of .* is held by pid \d+ .*; waiting for it up to 1 s \(--wait\)\nbfs: .*still held by pid \d+ .* after 1 s \(--wait\); 'forget' did nothing\n$/)
    // nothing changed but the history, which records both runs as failed with exit 5 (issue 17)
    const noHistory = (t: string): string => t.split('\n').filter((l) => !l.startsWith('./history/')).join('\n')
    expect(noHistory(await snapshot(r))).toBe(noHistory(before))
    const runs = JSON.parse(await ok(['history', '--json', '--last', '2'], r)) as Array<{ command: string; result: string; exit: number; error: string }>
    expect(runs.map((x) => [x.command, x.result, x.exit])).toEqual([['forget', 'failed', 5], ['forget', 'failed', 5]])
    expect(runs[0]!.error).toMatch(/maintenance lock is held by pid/)
    // forget --wait, then the holder dies: forget goes on
    const child = spawn(BFS, ['forget', '1', '--wait'], { env: { ...process.env, BFS_REPO: r }, stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(child)
    let err = ''
    let out = ''
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()))
    const waiting = new Promise<void>((res) => child.stderr!.on('data', (b: Buffer) => {
      err += b.toString()
      if (err.includes('waiting for it as long as it takes')) res()
    }))
    const done = new Promise<number | null>((res) => child.on('close', res))
    await waiting
    expect(await ids(r)).toEqual([1, 2, 3])
    s.kill('SIGKILL')
    expect(await done, err).toBe(0)
    expect(out).toMatch(/forgot gen1/)
    expect(await ids(r)).toEqual([2, 3])
    // a lock left by a dead process on this host, and one whose pid was reused: broken
    putLock(r, { pid: 2 ** 22 + 7 })
    const d = await bfs(['forget', '2'], { repo: r })
    expect(d.code, d.stderr).toBe(0)
    expect(d.stderr).toMatch(/broke a stale maintenance lock/)
    putLock(r, { pid: process.pid, pidStart: (pidStartOf(process.pid) ?? 0) + 1 })
    const reused = await bfs(['forget', '-n', '--keep-last', '1'], { repo: r })
    expect(reused.code).toBe(0) // a dry run takes no lock
    expect((await bfs(['forget', '--keep-last', '1'], { repo: r })).code).toBe(0)
    expect(await ids(r)).toEqual([3])
  })
})

describe('format 2 forget: refusals', () => {
  it('a format 1 repository: one line, exit 6, nothing written; not a repository: exit 6', async () => {
    const r1 = path.join(work, 'f1')
    await ok(['init', '--format', '1'], r1)
    const s = path.join(work, 'f1src')
    fs.mkdirSync(s)
    fs.writeFileSync(path.join(s, 'a'), 'a\n')
    await ok(['backup', s], r1)
    const before = await snapshot(r1)
    for (const args of [['forget', '1'], ['forget', '--keep-last', '1'], ['forget', '-n', '--keep-daily', '7']]) {
      const r = await bfs(args, { repo: r1 })
      expect(r.code, args.join(' ')).toBe(6)
      expect(r.stderr).toBe(`bfs: ${r1} is a format 1 repository: 'bfs forget' needs a format 2 one (bfs init --format 2); nothing was changed\n`)
    }
    expect(await snapshot(r1)).toBe(before)
    const none = await bfs(['forget', '1'], { repo: path.join(work, 'nothing-here') })
    expect(none.code).toBe(6)
    expect(none.stderr.split('\n')).toHaveLength(2)
  })

  it('bad command lines: exit 2 in one line, nothing changed (no rule, all rules 0, names and rules, bad values)', async () => {
    const before = await snapshot(repo)
    const cases: Array<[string[], RegExp]> = [
      [['forget'], /^bfs: say what to forget: generations by name, or a policy \(--keep-last, .*\); nothing was changed\n$/],
      [['forget', '--dry-run'], /^bfs: say what to forget/],
      [['forget', '--keep-last', '0', '--keep-daily', '0'], /^bfs: every --keep-\* rule given is 0: that would forget every generation; nothing was changed\n$/],
      [['forget', '3', '--keep-last', '1'], /^bfs: name generations or give --keep-\* rules, not both\n$/],
      [['forget', '--keep-last', 'x'], /^bfs: option '--keep-last <n>' argument 'x' is invalid\. --keep-last takes a whole number or 'unlimited'/],
      [['forget', '--keep-within', '3q'], /^bfs: option '--keep-within <duration>' argument '3q' is invalid\. a duration like 2d/],
      [['forget', '--keep-last', '1', '--group-by', 'path'], /^bfs: option '--group-by <fields>' argument 'path' is invalid/],
      [['forget', 'gen3x'], /^bfs: /],
      [['forget', '--keep-last', '1', '--wait', 'soon'], /^bfs: --wait takes a number of seconds\n$/],
    ]
    for (const [args, re] of cases) {
      const r = await bfs(args, { repo })
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2)
      expect(r.stderr, args.join(' ')).toMatch(re)
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1)
    }
    const missing = await bfs(['forget', '99'], { repo })
    expect(missing.code).toBe(1)
    expect(missing.stderr).toBe(`bfs: no generation 99 in ${repo}\n`)
    expect(await snapshot(repo)).toBe(before)
  })
})
