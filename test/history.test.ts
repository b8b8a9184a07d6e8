/**
 * Run history (issue 17 item 6; format.md §2.8.6), through the real CLI on real repositories of
 * both formats: a backup that succeeds, one that skips an unreadable file (exit 3, partial), one
 * that fails (missing source, exit 1), one killed with SIGKILL mid-run (shown interrupted by the
 * pid check), and ones stopped by SIGINT and SIGTERM (exit 130, finalized interrupted); restore,
 * verify and forget records; `--source`, `--last`, `--json`; a damaged record is skipped with a
 * warning, and a history that cannot be written leaves the backup unharmed.
 */
import fs from 'node:fs'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bfs, BFS, sh, spawnBfs, tmpdir } from './helpers.js'

const IS_ROOT = process.getuid?.() === 0

let work: string
let small: string
let other: string
let big: string

interface Rec {
  id: string
  command: string
  result: string
  recorded: string
  exit: number | null
  started: string
  ended: string | null
  seconds: number | null
  host: string
  user: string
  pid: number
  argv: string[]
  sources: string[]
  generations: number[]
  bytes: Record<string, number>
  warnings: number
  firstWarnings: string[]
  error: string | null
}

const history = async (repo: string, args: string[] = []): Promise<Rec[]> => {
  const r = await bfs(['history', '--json', ...args], { repo })
  expect(r.code, r.stderr).toBe(0)
  return JSON.parse(r.stdout) as Rec[]
}

beforeAll(async () => {
  work = tmpdir('bfs-history-')
  fs.chmodSync(work, 0o755) // nobody walks in for the unreadable-file runs
  small = path.join(work, 'small')
  fs.mkdirSync(small)
  fs.writeFileSync(path.join(small, 'a.txt'), 'alpha\n')
  fs.writeFileSync(path.join(small, 'b.bin'), randomBytes(200_000))
  other = path.join(work, 'other')
  fs.mkdirSync(other)
  fs.writeFileSync(path.join(other, 'c.txt'), 'gamma\n')
  // enough incompressible data, compressed hard on one thread, that a backup is still running when its first unit exists
  big = path.join(work, 'big')
  fs.mkdirSync(big)
  for (let i = 0; i < 6; i++) fs.writeFileSync(path.join(big, `big${i}`), randomBytes(24 << 20))
})

afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

/** Waits until the backup `p` has written a unit file since `sinceMs` (so it is mid-run), or has ended. */
async function midRun(p: ReturnType<typeof spawnBfs>, repo: string, sinceMs: number): Promise<void> {
  const gens = path.join(repo, 'gens')
  const hasUnit = (): boolean => {
    try {
      return fs.readdirSync(gens).some((g) => {
        try {
          const d = path.join(gens, g)
          return fs.readdirSync(d).some((f) => /^unit-\d+$/.test(f) && fs.statSync(path.join(d, f)).mtimeMs >= sinceMs)
        } catch {
          return false
        }
      })
    } catch {
      return false
    }
  }
  while (!hasUnit() && p.exitCode === null && p.signalCode === null) await new Promise((r) => setTimeout(r, 20))
}

describe.each([1, 2])('format %i', (format) => {
  let repo: string
  beforeAll(async () => {
    repo = path.join(work, `repo${format}`)
    const r = await bfs(['init', '--format', String(format)], { repo })
    expect(r.code, r.stderr).toBe(0)
  })

  it('a backup that succeeds is recorded ok, with its generation, source, bytes and times; the text line says so', async () => {
    const b = await bfs(['backup', small], { repo })
    expect(b.code, b.stderr).toBe(0)
    const h = await history(repo)
    expect(h).toHaveLength(1)
    const r = h[0]!
    expect(r).toMatchObject({ command: 'backup', result: 'ok', recorded: 'ok', exit: 0, sources: [small], generations: [1], warnings: 0, firstWarnings: [], error: null, argv: ['backup', small] })
    expect(r.bytes.read).toBeGreaterThanOrEqual(200_000)
    expect(r.bytes.stored).toBeGreaterThan(0)
    expect(Date.parse(r.ended!)).toBeGreaterThanOrEqual(Date.parse(r.started))
    expect(r.seconds).toBeGreaterThanOrEqual(0)
    expect(Object.keys(r).sort()).toEqual(['argv', 'bytes', 'command', 'ended', 'error', 'exit', 'firstWarnings', 'generations', 'host', 'id', 'pid', 'recorded', 'result', 'seconds', 'sources', 'started', 'user', 'warnings'].sort())
    expect(r.id).toMatch(/^\d{8}T\d{6}Z-[0-9a-f]{8}$/)
    expect(fs.readdirSync(path.join(repo, 'history'))).toEqual([r.id])
    const t = await bfs(['history'], { repo })
    expect(t.code, t.stderr).toBe(0)
    expect(t.stdout).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d  backup +ok +\\d+\\.\\ds  gen1  ${small}  read [\\d.]+ KiB, stored .*\\n$`))
  })

  it('a backup whose source is missing is recorded failed, exit 1, with its error line', async () => {
    const missing = path.join(work, 'no-such-dir')
    const b = await bfs(['backup', missing], { repo })
    expect(b.code).toBe(1)
    const r = (await history(repo)).at(-1)!
    expect(r).toMatchObject({ command: 'backup', result: 'failed', exit: 1, sources: [missing], generations: [] })
    expect(r.error).toMatch(/does not exist|no such file/i)
    expect(b.stderr).toContain(r.error!)
    expect((await bfs(['history', '--last', '1'], { repo })).stdout).toMatch(/backup +failed \(1\) .* error: /)
    // a command line refused before the run starts is no run: not recorded (such refusals write nothing)
    const n = (await history(repo)).length
    const refused = await bfs(['backup', small, '--freeze-timeout', '5'], { repo })
    expect(refused.code).toBe(1)
    expect((await bfs(['backup', small, '--level', '99'], { repo })).code).toBe(2)
    expect(await history(repo)).toHaveLength(n)
  })

  it.skipIf(!IS_ROOT)('a backup that skips an unreadable file is recorded partial (exit 3) with its warning', async () => {
    const s = path.join(work, `unreadable${format}`)
    fs.mkdirSync(s)
    fs.writeFileSync(path.join(s, 'ok'), 'ok')
    fs.writeFileSync(path.join(s, 'secret'), 'secret')
    fs.chmodSync(path.join(s, 'secret'), 0o000)
    const r2 = path.join(work, `repo-nobody${format}`)
    expect((await bfs(['init', '--format', String(format)], { repo: r2 })).code).toBe(0)
    expect((await sh(`chown -R 65534:65534 '${r2}'`)).code).toBe(0)
    const u = await sh(`BFS_REPO='${r2}' setpriv --reuid=65534 --regid=65534 --clear-groups '${BFS}' backup '${s}'; echo "exit=$?"`)
    expect(u.stdout).toMatch(/exit=3/)
    const r = (await history(r2)).at(-1)!
    expect(r).toMatchObject({ command: 'backup', result: 'partial', exit: 3, sources: [s], generations: [1], user: 'nobody' })
    expect(r.warnings).toBeGreaterThanOrEqual(1)
    expect(r.firstWarnings.join('\n')).toMatch(/secret/)
    expect((await bfs(['history'], { repo: r2 })).stdout).toMatch(/backup +partial \(3\) .* 1 warning/)
  })

  it('a backup killed with SIGKILL mid-run stays "running" in the repository and is listed as interrupted', async () => {
    const since = Date.now() - 20 // file times are a little coarser than the clock; an earlier run's units are older than that
    const p = spawnBfs(['backup', big, '--full', '--threads', '1', '--level', '19'], repo)
    const exited = new Promise<number | null>((res) => p.once('close', (code, sig) => res(sig ? null : code)))
    await midRun(p, repo, since)
    p.kill('SIGKILL')
    expect(await exited).toBeNull() // killed, not finished
    const r = (await history(repo)).at(-1)!
    expect(r).toMatchObject({ command: 'backup', result: 'interrupted', recorded: 'running', exit: null, ended: null, pid: p.pid, sources: [big] })
    expect((await bfs(['history', '--last', '1'], { repo })).stdout).toMatch(new RegExp(`backup +interrupted +-  -  ${big}  process ${p.pid} on .* is gone\\n$`))
  })

  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    it(`a backup stopped by ${sig} exits 130 and its record is finished as interrupted`, async () => {
      const since = Date.now() - 20 // file times are a little coarser than the clock; an earlier run's units are older than that
      const p = spawnBfs(['backup', big, '--full', '--threads', '1', '--level', '19'], repo)
      const exited = new Promise<number | null>((res) => p.once('close', (code, s) => res(s ? null : code)))
      await midRun(p, repo, since)
      p.kill(sig)
      expect(await exited).toBe(130)
      const r = (await history(repo)).at(-1)!
      expect(r).toMatchObject({ command: 'backup', result: 'interrupted', recorded: 'interrupted', exit: 130, pid: p.pid, sources: [big] })
      expect(r.ended).not.toBeNull()
      expect(r.error).toMatch(/interrupted/)
    })
  }

  it('a signal the command does not handle (SIGHUP) finishes the record as interrupted and still ends the process by that signal', async () => {
    const since = Date.now() - 20
    const p = spawnBfs(['backup', big, '--full', '--threads', '1', '--level', '19'], repo)
    const exited = new Promise<string | number | null>((res) => p.once('close', (code, s) => res(s ?? code)))
    await midRun(p, repo, since)
    p.kill('SIGHUP')
    expect(await exited).toBe('SIGHUP')
    const r = (await history(repo)).at(-1)!
    expect(r).toMatchObject({ command: 'backup', result: 'interrupted', recorded: 'interrupted', exit: 129, pid: p.pid, error: 'interrupted by SIGHUP' })
  })

  it('restore and verify are recorded with their generation, source and bytes; --source and --last filter', async () => {
    expect((await bfs(['backup', other], { repo })).code).toBe(0)
    const dest = path.join(work, `restored${format}`)
    const rs = await bfs(['restore', 'latest', dest, '--source', small], { repo })
    expect(rs.code, rs.stderr).toBe(0)
    const v = await bfs(['verify', '--all'], { repo })
    expect(v.code, v.stderr).toBe(0)
    const h = await history(repo)
    const [restore, verify] = h.slice(-2)
    expect(restore).toMatchObject({ command: 'restore', result: 'ok', exit: 0, sources: [small], generations: [1], bytes: { restored: 200_006 } })
    expect(verify).toMatchObject({ command: 'verify', result: 'ok', exit: 0, sources: [small, other] })
    expect(verify!.generations).toEqual(h.filter((r) => r.command === 'backup' && r.result !== 'failed' && r.generations.length).flatMap((r) => r.generations))
    expect(verify!.bytes.verified).toBeGreaterThan(200_000)
    // oldest first
    expect(h.map((r) => Date.parse(r.started))).toEqual([...h.map((r) => Date.parse(r.started))].sort((a, b) => a - b))
    // --source: the runs about that source only (verify --all read both)
    const o = await history(repo, ['--source', other])
    expect(o.map((r) => r.command)).toEqual(['backup', 'verify'])
    expect((await history(repo, ['--source', path.relative(process.cwd(), small)])).map((r) => r.command)).toEqual(['backup', 'restore', 'verify'])
    expect((await history(repo, ['--last', '2'])).map((r) => r.command)).toEqual(['restore', 'verify'])
    expect(await history(repo, ['--source', path.join(work, 'never')])).toEqual([])
    // read-only commands are not recorded
    const n = h.length
    for (const args of [['generations'], ['ls', 'latest:'], ['cat', `1:a.txt`], ['history']]) expect((await bfs(args, { repo })).code).toBe(0)
    expect(await history(repo)).toHaveLength(n)
  })

  it('verify that finds damage is recorded failed (exit 4) with the problem', async () => {
    const r3 = path.join(work, `repo-damage${format}`)
    expect((await bfs(['init', '--format', String(format)], { repo: r3 })).code).toBe(0)
    expect((await bfs(['backup', small], { repo: r3 })).code).toBe(0)
    const unit = path.join(r3, 'gens', '00000001', 'unit-00000000')
    const b = fs.readFileSync(unit)
    b[b.length >> 1] ^= 0xff
    fs.writeFileSync(unit, b)
    const v = await bfs(['verify'], { repo: r3 })
    expect(v.code).toBe(4)
    const r = (await history(r3)).at(-1)!
    expect(r).toMatchObject({ command: 'verify', result: 'failed', exit: 4, generations: [1] })
    expect(r.error).toMatch(/problem/)
  })

  it('a damaged or foreign record is skipped with a warning; a history that cannot be written leaves the backup unharmed', async () => {
    const r4 = path.join(work, `repo-broken${format}`)
    expect((await bfs(['init', '--format', String(format)], { repo: r4 })).code).toBe(0)
    expect((await bfs(['backup', small], { repo: r4 })).code).toBe(0)
    const dir = path.join(r4, 'history')
    fs.writeFileSync(path.join(dir, '20260101T000000Z-0badf00d'), 'not a record')
    fs.writeFileSync(path.join(dir, 'README'), 'hello')
    const l = await bfs(['history', '--json'], { repo: r4 })
    expect(l.code).toBe(0)
    expect(JSON.parse(l.stdout)).toHaveLength(1)
    expect(l.stderr).toMatch(/20260101T000000Z-0badf00d: .*skipped/)
    expect(l.stderr).toMatch(/README: not a history record, skipped/)
    // history/ is a file: no record can be written; the backup warns once and commits
    fs.rmSync(dir, { recursive: true })
    fs.writeFileSync(dir, 'in the way')
    const b = await bfs(['backup', small, '--full'], { repo: r4 })
    expect(b.code, b.stderr).toBe(0)
    expect(b.stderr).toMatch(/^bfs: warning: the run was not recorded in the history: .*\n$/)
    expect(b.stdout).toMatch(/^gen2 committed/m)
    expect((await bfs(['cat', '2:a.txt'], { repo: r4 })).stdout).toBe('alpha\n')
  })

  if (format === 2) {
    it('forget is recorded with the generations it forgot and their source; a dry run is not', async () => {
      const before = (await history(repo)).length
      expect((await bfs(['forget', '1', '--dry-run'], { repo })).code).toBe(0)
      expect(await history(repo)).toHaveLength(before)
      const f = await bfs(['forget', '1'], { repo })
      expect(f.code, f.stderr).toBe(0)
      const r = (await history(repo)).at(-1)!
      expect(r).toMatchObject({ command: 'forget', result: 'ok', exit: 0, generations: [1], sources: [small] })
    })
  }

  it('on a non-repository, history fails like every command (exit 6)', async () => {
    const r = await bfs(['history'], { repo: path.join(work, 'nothing-here') })
    expect(r.code).toBe(6)
    expect(r.stderr).toMatch(/^bfs: .*not a bfs repository/)
  })
})

describe('help', () => {
  it('bfs help history documents the command and what is not recorded', async () => {
    const r = await bfs(['help', 'history'])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/--source <path>/)
    expect(r.stdout).toMatch(/--last <n>/)
    expect(r.stdout).toMatch(/Read-only commands \(generations, ls, cat, find, log, diff, mount, history\) are not recorded/)
  })
})
