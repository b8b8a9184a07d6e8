import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ROOT, bfs, newRepoF, sh, tmpdir } from './helpers.js'

// `make install` into a temporary DESTDIR, the installed systemd units checked by
// systemd-analyze verify, and the backup service's ExecStart and the cron line run for real
// against a real repository. (No systemd runs as PID 1 here, so the units are not started.)

const PREFIX = '/usr/local'
let work: string
let stage: string
let repo: string
let src: string
const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`
const unitDir = (): string => path.join(stage, PREFIX, 'lib/systemd/system')

beforeAll(async () => {
  work = tmpdir('bfs-sched-')
  stage = path.join(work, 'stage')
  // format 1: the service tests check format 1's summary lines and its writer lock (--wait)
  repo = await newRepoF(1, path.join(work, 'repo'))
  src = path.join(work, 'src')
  fs.mkdirSync(path.join(src, 'sub'), { recursive: true })
  fs.writeFileSync(path.join(src, 'keep.txt'), 'kept\n')
  fs.writeFileSync(path.join(src, 'sub', 'scratch.tmp'), 'excluded\n')
  const r = await sh(`make -C ${q(ROOT)} install PREFIX=${PREFIX} DESTDIR=${q(stage)}`)
  if (r.code !== 0) throw new Error(`make install: ${r.stdout}\n${r.stderr}`)
})
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

describe('make install DESTDIR=… PREFIX=…', () => {
  it('installs the command, its runtime, the man page, completions, units and examples under DESTDIR only', async () => {
    const at = (p: string): string => path.join(stage, PREFIX, p)
    // a relative link, so the stage works where it is and once copied to PREFIX
    expect(fs.readlinkSync(at('bin/bfs'))).toBe('../lib/bfs/bin/bfs')
    for (const f of ['lib/bfs/dist/cli/run.js', 'lib/bfs/dist/cli/bfs.cjs', 'lib/bfs/dist/cli/load.cjs', 'lib/bfs/native/build/Release/bfs_native.node', 'lib/bfs/native/build/Release/bfs-bilog-wd', 'lib/bfs/node_modules/commander/package.json', 'lib/bfs/node_modules/fuse-native/build/Release/fuse.node', 'share/man/man1/bfs.1', 'share/bash-completion/completions/bfs', 'share/zsh/site-functions/_bfs', 'share/doc/bfs/examples/backup-job.env', 'share/doc/bfs/examples/forget-job.env', 'share/doc/bfs/examples/bfs.cron']) expect(fs.existsSync(at(f)), f).toBe(true)
    expect(fs.readdirSync(unitDir()).sort()).toEqual(['bfs-backup@.service', 'bfs-backup@.timer', 'bfs-forget@.service', 'bfs-forget@.timer'])
    // dev-only packages stay out
    expect(fs.existsSync(at('lib/bfs/node_modules/vitest'))).toBe(false)
    expect(fs.existsSync(at('lib/bfs/node_modules/typescript'))).toBe(false)
    // nothing outside the stage: the units name the final paths, not DESTDIR
    for (const u of fs.readdirSync(unitDir())) {
      const text = fs.readFileSync(path.join(unitDir(), u), 'utf8')
      expect(text).not.toContain(stage)
      expect(text).not.toMatch(/@[A-Z]+@/)
    }
    // the installed command runs from the stage, with no file of the checkout, and works
    const v = await sh(`cd / && ${q(at('bin/bfs'))} --version && ${q(at('bin/bfs'))} --repo ${q(repo)} generations --json`)
    expect(v.stderr).toBe('')
    expect(v.stdout).toBe(`bfs ${JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version}\n[]\n`)
    const man = await sh(`MANWIDTH=120 man -l ${q(at('share/man/man1/bfs.1'))} | col -b`)
    expect(man.stdout).toMatch(/^ {3}bfs backup \[options\] <src...>$/m)
  })
})

describe('systemd units', () => {
  /** systemd-analyze verify of instances of the installed templates, against the stage as root. */
  async function verify(units: string[]): Promise<{ code: number; out: string }> {
    const r = await sh(`cd / && MANPATH=${q(path.join(stage, PREFIX, 'share/man'))} SYSTEMD_LOG_COLOR=0 systemd-analyze verify --root=${q(stage)} ${units.map((u) => q(path.join(unitDir(), u))).join(' ')} 2>&1`)
    return { code: r.code, out: r.stdout }
  }

  beforeAll(async () => {
    // The stage stands in for the machine: its system units (sysinit.target, timers.target …
    // the default dependencies) and /bin/sh, which ExecCondition runs.
    const r = await sh(`mkdir -p ${q(stage)}/usr/lib/systemd ${q(stage)}/bin && cp -a /usr/lib/systemd/system ${q(stage)}/usr/lib/systemd/ && cp /bin/sh ${q(stage)}/bin/sh`)
    expect(r.code).toBe(0)
  })

  it('systemd-analyze verify passes for the service and timer instances (Documentation=man:bfs(1) resolves to the installed page)', async () => {
    expect((await sh('command -v systemd-analyze')).code).toBe(0)
    const r = await verify(['bfs-backup@nightly.service', 'bfs-backup@nightly.timer', 'bfs-forget@nightly.service', 'bfs-forget@nightly.timer'])
    expect(r.out).toBe('')
    expect(r.code).toBe(0)
  })

  it('and fails when the command the unit runs is not installed (the check is not vacuous)', async () => {
    const link = path.join(stage, PREFIX, 'bin/bfs')
    const target = fs.readlinkSync(link)
    fs.rmSync(link)
    try {
      const r = await verify(['bfs-backup@nightly.service'])
      expect(r.code).not.toBe(0)
      expect(r.out).toMatch(/\/usr\/local\/bin\/bfs is not executable/)
    } finally {
      fs.symlinkSync(target, link)
    }
  })

  it("bfs-forget's ExecCondition, run for real, exits 0 now that bfs forget has --prune (with a bfs without it: 1-254, and systemd skips the unit, not fails it)", async () => {
    const unit = fs.readFileSync(path.join(unitDir(), 'bfs-forget@.service'), 'utf8')
    const m = /^ExecCondition=\/bin\/sh -c "(.*)"$/m.exec(unit)
    expect(m).not.toBe(null)
    const r = await sh(`sh -c ${q(m![1]!.replace('/usr/local/bin/bfs', path.join(stage, PREFIX, 'bin/bfs')))}`)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    // with a bfs whose forget has no --prune, the same gate fails without a message (exit 1)
    const older = await sh(`sh -c ${q(m![1]!.replace('/usr/local/bin/bfs help forget', 'echo usage: bfs forget --keep-daily'))}`)
    expect(older.code).toBe(1)
    // the gate looks at the real help: `bfs help forget` works and is what grep reads
    expect((await sh(`${q(path.join(stage, PREFIX, 'bin/bfs'))} help forget`)).stdout).toMatch(/--keep-daily/)
  })

  it('documents the exit status and treats only 0 as success; forget is gated on its policy file and on bfs having the command', () => {
    const backup = fs.readFileSync(path.join(unitDir(), 'bfs-backup@.service'), 'utf8')
    expect(backup).not.toMatch(/^SuccessExitStatus=/m)
    expect(backup).toMatch(/^# .*SuccessExitStatus=3$/m) // the opt-in, documented
    const forget = fs.readFileSync(path.join(unitDir(), 'bfs-forget@.service'), 'utf8')
    expect(forget).toMatch(/^ConditionPathExists=\/etc\/bfs\/%i\.forget\.env$/m)
    expect(forget).toMatch(/^ExecCondition=.*\/usr\/local\/bin\/bfs help forget/m)
  })
})

/**
 * The argv systemd makes of an ExecStart= line (systemd.service(5), "Command lines"): `$VAR`
 * splits the value at whitespace into words (none when empty), `${VAR}` is one word; the
 * environment is the unit's Environment= lines overridden by its EnvironmentFile= files.
 */
function execStart(unit: string, instance: string, files: Record<string, string>): { argv: string[]; env: Record<string, string> } {
  const lines = fs.readFileSync(unit, 'utf8').split('\n')
  const env: Record<string, string> = {}
  for (const l of lines) {
    const m = /^Environment=([A-Z_]+)=(.*)$/.exec(l)
    if (m) env[m[1]!] = m[2]!
  }
  for (const l of lines) {
    const m = /^EnvironmentFile=(.*)$/.exec(l)
    if (!m) continue
    const file = m[1]!.replace(/%i/g, instance)
    expect(files[file], file).toBeDefined()
    for (const e of files[file]!.split('\n')) {
      const v = /^([A-Z_]+)=(.*)$/.exec(e)
      if (v) env[v[1]!] = v[2]!.replace(/^"(.*)"$/, '$1')
    }
  }
  const cmd = lines.find((l) => l.startsWith('ExecStart='))!.slice('ExecStart='.length)
  const argv = cmd.split(/\s+/).filter(Boolean).flatMap((w) => {
    let m = /^\$\{([A-Z_]+)\}$/.exec(w)
    if (m) return [env[m[1]!] ?? '']
    m = /^\$([A-Z_]+)$/.exec(w)
    if (m) return (env[m[1]!] ?? '').split(/\s+/).filter(Boolean)
    return [w]
  })
  return { argv, env }
}

/**
 * Runs argv (argv[0] an installed path, taken inside the stage) with env added, stdin, stdout
 * and stderr not a terminal. `stderr()` is what it wrote there so far.
 */
function startUnattended(argv: string[], env: Record<string, string>): { done: Promise<{ code: number; stdout: string; stderr: string }>; stderr: () => string } {
  let stdout = ''
  let stderr = ''
  const done = new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(path.join(stage, argv[0]!), argv.slice(1), { cwd: '/', env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()))
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 150_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code: code ?? -1, stdout, stderr })
    })
  })
  return { done, stderr: () => stderr }
}
const runUnattended = (argv: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> => startUnattended(argv, env).done

describe('the backup service, run as systemd would run it', () => {
  const jobEnv = (): Record<string, string> => ({
    '/etc/bfs/nightly.env': `# a job\nBFS_REPO=${repo}\nBFS_SOURCES=${src}\nBFS_BACKUP_OPTIONS="--label nightly --exclude *.tmp"\nBFS_WAIT=120\n`,
  })

  it("ExecStart with the job's settings backs up for real; output is one line per event, no progress redraws", async () => {
    const { argv, env } = execStart(path.join(unitDir(), 'bfs-backup@.service'), 'nightly', jobEnv())
    expect(argv).toEqual(['/usr/local/bin/bfs', 'backup', '--wait', '120', '--label', 'nightly', '--exclude', '*.tmp', src])
    const r = await runUnattended(argv, env)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).not.toContain('\r')
    expect(r.stdout).toMatch(/^gen1 committed \(full\)$/m)
    const gens = JSON.parse((await bfs(['generations', '--json'], { repo })).stdout)
    expect(gens.map((g: { label: string; source: string }) => [g.label, g.source])).toEqual([['nightly', src]])
    const ls = await bfs(['ls', 'gen1:sub'], { repo })
    expect(ls.stdout).toBe('') // scratch.tmp was excluded
  })

  it('waits for another writer and says so on stderr, in lines a journal keeps', async () => {
    const holder = spawn('sleep', ['600'], { detached: true, stdio: 'ignore' })
    const gone = new Promise((res) => holder.once('exit', res))
    try {
      fs.writeFileSync(path.join(repo, 'lock'), JSON.stringify({ pid: holder.pid, host: os.hostname(), time: 'now', command: 'backup /elsewhere' }))
      const { argv, env } = execStart(path.join(unitDir(), 'bfs-backup@.service'), 'nightly', jobEnv())
      const run = startUnattended(argv, env)
      // the writer says it waits, and waits until the holder is gone (up to 120 s: BFS_WAIT)
      for (let i = 0; i < 6000 && !run.stderr().includes('waiting'); i++) await new Promise((res) => setTimeout(res, 20))
      expect(run.stderr()).toContain('waiting')
      holder.kill('SIGKILL')
      await gone
      const r = await run.done
      expect(r.code).toBe(0)
      const lines = r.stderr.split('\n').filter(Boolean)
      expect(lines[0]).toMatch(new RegExp(`^bfs: repository ${repo} is locked by pid ${holder.pid} on \\S+ \\(backup /elsewhere, since now\\); waiting for it up to 120 s \\(--wait\\)$`))
      expect(lines[1]).toMatch(/^bfs: got the repository lock after \d+ s$/)
      expect(lines).toHaveLength(2)
      expect(r.stderr + r.stdout).not.toContain('\r')
      expect(r.stdout).toMatch(/^gen2 committed \(incremental to gen1\)$/m)
    } finally {
      holder.kill('SIGKILL')
    }
  })

  it('the example cron line runs as is (paths of the example replaced): summary dropped, nothing on stderr', async () => {
    const cron = fs.readFileSync(path.join(stage, PREFIX, 'share/doc/bfs/examples/bfs.cron'), 'utf8')
    const line = cron.split('\n').find((l) => /^\d/.test(l))!
    const fields = line.split(/\s+/)
    expect(fields.slice(0, 6)).toEqual(['30', '2', '*', '*', '*', 'root'])
    const cmd = line.replace(/^(\S+\s+){6}/, '').replace('/usr/local/bin/bfs', path.join(stage, PREFIX, 'bin/bfs')).replace('/srv/backup/bfs', repo).replace('/srv/data', src)
    const r = await sh(`sh -c ${q(cmd)}`) // as cron runs it
    expect(r.stderr).toBe('')
    expect(r.stdout).toBe('')
    expect(r.code).toBe(0)
    expect(JSON.parse((await bfs(['generations', '--json'], { repo })).stdout)).toHaveLength(3)
  })
})

describe('under systemd, warnings and errors reach the journal at their priority', () => {
  /** Runs bfs with stderr to a file and $JOURNAL_STREAM naming that file's device:inode (as systemd sets it for the journal's stream), or another's. */
  async function asJournal(args: string, match: boolean): Promise<{ code: number; stderr: string }> {
    const err = path.join(work, `stderr-${match}`)
    fs.writeFileSync(err, '')
    const other = path.join(work, 'other')
    fs.writeFileSync(other, '')
    const r = await sh(`JOURNAL_STREAM=$(stat -c %d:%i ${q(match ? err : other)}) ${q(path.join(ROOT, 'bin/bfs'))} ${args} 2>${q(err)}`)
    return { code: r.code, stderr: fs.readFileSync(err, 'utf8') }
  }

  it('<4> before each warning and <3> before the error line when stderr is the journal stream; nothing otherwise', async () => {
    const r = await newRepoF(1, path.join(work, 'repo-journal')) // format 1's two warning lines of generations
    for (let i = 0; i < 2; i++) expect((await bfs(['backup', src], { repo: r })).code).toBe(0)
    fs.writeFileSync(path.join(r, 'manifests', 'gen-00000001'), 'not a manifest') // gen1 damaged: generations warns, exit 0
    const warn = await asJournal(`--repo ${q(r)} generations`, true)
    expect(warn.code).toBe(0)
    const lines = warn.stderr.trimEnd().split('\n')
    expect(lines.length).toBeGreaterThanOrEqual(2)
    for (const l of lines) expect(l).toMatch(/^<4>bfs: warning: /)
    const err = await asJournal(`--repo ${q(path.join(work, 'no-repo'))} generations`, true)
    expect(err.code).toBe(6)
    expect(err.stderr).toMatch(/^<3>bfs: .* is not a bfs repository/)
    expect(err.stderr.split('\n').filter(Boolean)).toHaveLength(1)
    // $JOURNAL_STREAM inherited by a process whose stderr is something else: plain lines
    const plain = await asJournal(`--repo ${q(r)} generations`, false)
    expect(plain.stderr).toBe(warn.stderr.replace(/^<4>/gm, ''))
    expect(plain.stderr).toMatch(/^bfs: warning: gen1 is damaged/m)
  })
})
