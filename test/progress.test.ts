import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { durationText, figures, Progress, statusLine, statusObject, type ProgressStream } from '../src/cli/progress.js'
import { recallServicePaths } from '../src/os/runtime.js'
import { pidAlive } from '../src/os/process.js'
import { BFS, bfs, sh, tmpdir } from './helpers.js'

// vitest.config.ts turns status lines off for the other test files; these tests are about them
delete process.env.BFS_TEST_PROGRESS_MS

/** A stream that keeps what is written, with a terminal's attributes when asked. */
function sink(tty = false, columns = 80): ProgressStream & { text: string } {
  const s = { text: '', isTTY: tty, columns, write: (x: string) => ((s.text += x), true) }
  return s
}

describe('formatter and ETA (injected clock)', () => {
  it('rate, fraction and ETA from the bytes when a byte total is known', () => {
    const f = figures({ files: 50, totalFiles: 100, bytes: 25 << 20, totalBytes: 100 << 20 }, 10_000)
    expect(f.rate).toBe((25 << 20) / 10)
    expect(f.fraction).toBe(0.25)
    expect(f.etaS).toBe(30)
    expect(statusLine('backing up:', { files: 50, totalFiles: 100, bytes: 25 << 20, totalBytes: 100 << 20, path: 'a/b' }, 10_000, 120)).toBe('backing up: 50/100 files, 25.0 MiB/100.0 MiB (25%), 2.50 MiB/s, ETA 30s  a/b')
  })

  it('from the files when only a file total is known; "?" when there is none', () => {
    expect(figures({ files: 30, totalFiles: 40, bytes: 0, totalBytes: 0 }, 3_000)).toMatchObject({ fraction: 0.75, etaS: 1 })
    const none = { files: 7, totalFiles: null, bytes: 2048, totalBytes: null }
    expect(figures(none, 2_000)).toMatchObject({ fraction: null, etaS: null, rate: 1024 })
    expect(statusLine('backing up:', none, 2_000, 80)).toBe('backing up: 7/? files, 2.00 KiB/?, 1.00 KiB/s, ETA ?')
    // nothing done yet: no ETA
    expect(figures({ files: 0, totalFiles: 10, bytes: 0, totalBytes: 100 }, 5_000).etaS).toBeNull()
  })

  it('an estimate exceeded (the source grew) stays below 100 % with no ETA', () => {
    const f = figures({ files: 120, totalFiles: 100, bytes: 150, totalBytes: 100 }, 1_000)
    expect(f.fraction).toBe(0.99)
    expect(f.etaS).toBeNull()
    expect(statusLine('backup', { files: 120, totalFiles: 100, bytes: 150, totalBytes: 100 }, 1_000, 80)).toContain('(99%)')
  })

  it('cut to the terminal width, the path from its start', () => {
    const long = 'very/long/'.repeat(20) + 'name.txt'
    const l = statusLine('restore', { files: 1, totalFiles: 2, bytes: 1, totalBytes: 2, path: long }, 1_000, 70)
    expect(l.length).toBeLessThanOrEqual(69)
    expect(l).toMatch(/ {2}….*name\.txt$/)
    // too narrow for a path: the figures, cut
    expect(statusLine('restore', { files: 1, totalFiles: 2, bytes: 1, totalBytes: 2, path: long }, 1_000, 30).length).toBe(29)
  })

  it('units and durations', () => {
    expect(statusLine('verifying:', { files: 1, totalFiles: 1, bytes: 0, totalBytes: 0 }, 3_725_000, 80, 'unit')).toMatch(/^verifying: 1\/1 unit, 0 B\/0 B \(100%\), 0 B\/s, ETA 0s$/)
    expect(statusLine('verifying:', { files: 1, totalFiles: 3, bytes: 0, totalBytes: 0 }, 65_000, 80, 'unit')).toMatch(/^verifying: 1\/3 units, .*ETA 2m10s$/)
    expect(durationText(42.4)).toBe('42s')
    expect(durationText(3_725)).toBe('1h02m')
  })

  it('JSON status object with restic\'s field names', () => {
    expect(statusObject('backup', { files: 5, totalFiles: 10, bytes: 50, totalBytes: 100, path: 'x' }, 2_000)).toEqual({
      message_type: 'status', action: 'backup', seconds_elapsed: 2, seconds_remaining: 2, percent_done: 0.5,
      files_done: 5, total_files: 10, bytes_done: 50, total_bytes: 100, current_files: ['x'],
    })
  })

  it('tty: redrawn in place at most every 200 ms, cleared before a warning and at the end', () => {
    let t = 1_000
    const err = sink(true, 100)
    const out = sink()
    const p = new Progress({ action: 'backup', err, out, now: () => t })
    expect(p.mode).toBe('tty')
    const s = (files: number) => ({ files, totalFiles: 10, bytes: files * 10, totalBytes: 100, path: `f${files}` })
    p.update(s(1)) // drawn at once
    t += 50
    p.update(s(2)) // too soon
    t += 200
    p.update(s(3))
    expect(err.text.split('\r').filter(Boolean)).toEqual([`backup: 1/10 files, 10 B/100 B (10%), 0 B/s, ETA ?  f1\x1b[K`, `backup: 3/10 files, 30 B/100 B (30%), 120 B/s, ETA 1s  f3\x1b[K`])
    err.text = ''
    p.warn('careful')
    expect(err.text).toBe('\r\x1b[Kbfs: warning: careful\n')
    err.text = ''
    p.warn('again') // nothing to clear
    expect(err.text).toBe('bfs: warning: again\n')
    t += 300
    p.update(s(4))
    err.text = ''
    p.finish()
    expect(err.text).toBe('\r\x1b[K')
    expect(out.text).toBe('')
    expect(p.textSummary).toBe(true)
  })

  it('json: one status object per second at most (none in the first second), then the summary', () => {
    let t = 0
    const err = sink(true)
    const out = sink()
    const p = new Progress({ action: 'verify', json: true, err, out, now: () => t })
    const s = { files: 1, totalFiles: 4, bytes: 10, totalBytes: 40 }
    for (; t <= 2_500; t += 100) p.update(s)
    p.wait('repository is locked by pid 1; waiting')
    p.summary({ ok: true })
    const lines = out.text.trimEnd().split('\n').map((l) => JSON.parse(l))
    expect(lines.map((l) => l.message_type)).toEqual(['status', 'status', 'wait', 'summary'])
    expect(lines[0]).toMatchObject({ action: 'verify', seconds_elapsed: 1, files_done: 1, total_files: 4 })
    expect(lines[3]).toEqual({ message_type: 'summary', action: 'verify', ok: true })
    expect(err.text).toBe('')
    expect(p.textSummary).toBe(false)
    // --json --quiet: the summary alone
    const qOut = sink()
    const q = new Progress({ action: 'verify', json: true, quiet: true, err, out: qOut, now: () => (t += 2_000) })
    for (let i = 0; i < 5; i++) q.update(s)
    q.summary({ ok: true })
    expect(qOut.text).toBe('{"message_type":"summary","action":"verify","ok":true}\n')
  })

  it('plain (not a terminal) and quiet: no status; quiet keeps warnings and the lock wait only', () => {
    for (const quiet of [false, true]) {
      const err = sink(!!quiet)
      const out = sink()
      const p = new Progress({ action: 'backup', quiet, err, out, now: () => 5_000 })
      expect(p.mode).toBe(quiet ? 'quiet' : 'plain')
      p.update({ files: 1, totalFiles: null, bytes: 1, totalBytes: null })
      p.show('recalling')
      p.note('a note')
      p.wait('waiting for the lock')
      p.warn('w')
      p.finish()
      expect(err.text).toBe(`${quiet ? '' : 'bfs: a note\n'}bfs: waiting for the lock\nbfs: warning: w\n`)
      expect(out.text).toBe('')
      expect(p.textSummary).toBe(!quiet)
    }
  })
})

// ---- the real CLI ----

const work = tmpdir('bfs-progress-')
const src = path.join(work, 'src')
let files = 0
let bytes = 0
/** Lines of a --json run: all parse; returned as objects. */
const jsonLines = (stdout: string): Array<Record<string, any>> => stdout.trimEnd().split('\n').map((l) => JSON.parse(l))
/** Progress on every update, so that short runs report (NODE_ENV=test only). */
const EVERY = { BFS_TEST_PROGRESS_MS: '0' }

beforeAll(() => {
  for (let d = 0; d < 5; d++) {
    fs.mkdirSync(path.join(src, `d${d}`, 'sub'), { recursive: true })
    for (let i = 0; i < 40; i++) {
      const size = (d * 40 + i) * 97
      fs.writeFileSync(path.join(src, `d${d}`, i % 2 ? 'sub' : '', `f${i}`), Buffer.alloc(size, i + 1))
      files++
      bytes += size
    }
  }
})
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

/** Runs `bfs ARGS` on a pseudo-terminal (util-linux script): stdout and stderr both come back in `out`. */
function onTty(args: string[], repo: string): Promise<{ code: number; out: string }> {
  const cmd = [BFS, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')
  return new Promise((resolve) => {
    const child = spawn('script', ['-qec', `stty cols 100; exec ${cmd}`, '/dev/null'], { env: { ...process.env, ...EVERY, BFS_REPO: repo }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    child.on('close', (code) => resolve({ code: code ?? -1, out }))
  })
}

for (const format of ['1', '2']) {
  describe(`format ${format}: backup, restore and verify`, () => {
    const repo = path.join(work, `repo${format}`)
    beforeAll(async () => {
      const r = await bfs(['init', '--format', format], { repo })
      expect(r.code, r.stderr).toBe(0)
    })

    it('--json: status lines, then a summary whose counts match the tree; the second run estimates from the first', async () => {
      const first = await bfs(['backup', src, '--json'], { repo, env: EVERY })
      expect(first.code, first.stderr).toBe(0)
      const a = jsonLines(first.stdout)
      expect(a.length).toBeGreaterThan(1)
      expect(a.slice(0, -1).every((l) => l.message_type === 'status' && l.action === 'backup')).toBe(true)
      // no previous generation: no totals to estimate from
      expect(a[0]).toMatchObject({ total_files: null, total_bytes: null, percent_done: null, seconds_remaining: null })
      const sum = a.at(-1)!
      expect(sum).toMatchObject({ message_type: 'summary', generation: 'gen1' })
      expect(sum.stats).toMatchObject({ files: files, logicalBytes: bytes, newFiles: files })
      // the next one's totals are the previous generation's
      fs.writeFileSync(path.join(src, 'd0', 'added'), 'more')
      try {
        const second = jsonLines((await bfs(['backup', src, '--json'], { repo, env: EVERY })).stdout)
        expect(second[0]).toMatchObject({ message_type: 'status', total_files: files, total_bytes: bytes })
        expect(second.at(-1)!.stats).toMatchObject({ files: files + 1, logicalBytes: bytes + 4, unchangedFiles: files })
      } finally {
        fs.rmSync(path.join(src, 'd0', 'added'))
      }
      // --full compares with nothing, but estimates from the latest generation all the same
      const full = jsonLines((await bfs(['backup', src, '--json', '--full'], { repo, env: EVERY })).stdout)
      expect(full[0]).toMatchObject({ message_type: 'status', total_files: files + 1, total_bytes: bytes + 4 })
      expect(full.at(-1)!.stats).toMatchObject({ files, logicalBytes: bytes, unchangedFiles: 0 })
      // without the test hook a short run prints its summary alone (one line, as before)
      const plain = await bfs(['backup', src, '--json'], { repo })
      expect(plain.stdout.trimEnd().split('\n')).toHaveLength(1)
      expect(JSON.parse(plain.stdout)).toMatchObject({ message_type: 'summary', generation: 'gen4' })
    })

    it('restore and verify --json: exact totals, summary last', async () => {
      const dest = path.join(work, `out${format}-json`)
      const r = await bfs(['restore', 'latest', dest, '--json'], { repo, env: EVERY })
      expect(r.code, r.stderr).toBe(0)
      const rl = jsonLines(r.stdout)
      expect(rl.length).toBeGreaterThan(1)
      for (const l of rl.slice(0, -1)) expect(l).toMatchObject({ message_type: 'status', action: 'restore', total_files: files, total_bytes: bytes })
      expect(rl.at(-1)).toMatchObject({ message_type: 'summary', action: 'restore', files, bytes })
      expect((await sh(`diff -r '${src}' '${dest}'`)).code).toBe(0)
      const v = await bfs(['verify', '--json'], { repo, env: EVERY })
      expect(v.code, v.stderr).toBe(0)
      const vl = jsonLines(v.stdout)
      expect(vl.length).toBeGreaterThan(1)
      expect(vl[0]).toMatchObject({ message_type: 'status', action: 'verify' })
      expect(vl.at(-1)).toMatchObject({ message_type: 'summary', action: 'verify', ok: true, problems: 0 })
      expect(vl.at(-2)!.total_files).toBe(vl.at(-1)!.units)
    })

    it('--quiet prints nothing on success; not on a terminal there is no status line', async () => {
      for (const args of [['backup', src], ['restore', 'latest', path.join(work, `out${format}-q`)], ['verify']]) {
        const q = await bfs([...args, '--quiet'], { repo, env: EVERY })
        expect([q.code, q.stdout, q.stderr], args[0]).toEqual([0, '', ''])
        const p = await bfs(args[0] === 'restore' ? ['restore', 'latest', path.join(work, `out${format}-p`)] : args, { repo, env: EVERY })
        expect(p.code, p.stderr).toBe(0)
        expect(p.stdout + p.stderr).not.toMatch(/[\r\x1b]/)
        expect(p.stderr).toBe('')
        expect(p.stdout).toMatch(args[0] === 'backup' ? /committed/ : args[0] === 'restore' ? /^restored gen/ : /^ok: /)
      }
      expect((await bfs(['backup', src, '-q'], { repo })).stdout).toBe('')
    })

    it('on a terminal: a status line redrawn in place, cleared, then the summary', async () => {
      const b = await onTty(['backup', src], repo)
      expect(b.code, b.out).toBe(0)
      expect(b.out).toMatch(/\rbacking up: \d+\/\d+ files, [^\r\n]*\x1b\[K/)
      // cleared before the summary, which ends the output
      expect(b.out).toMatch(/\r\x1b\[K(mode: files[^\n]*\r?\n)?gen\d+ committed/)
      expect(b.out).toMatch(/ s\r?\n$/)
      const dest = path.join(work, `out${format}-tty`)
      const r = await onTty(['restore', 'latest', dest], repo)
      expect(r.code, r.out).toBe(0)
      expect(r.out).toMatch(new RegExp(`\\rrestoring: \\d+/${files} files, [^\\r\\n]*\\x1b\\[K`))
      expect(r.out).toMatch(/\r\x1b\[Krestored gen\d+ to [^\n]*\r?\n$/)
      const v = await onTty(['verify'], repo)
      expect(v.code, v.out).toBe(0)
      expect(v.out).toMatch(/\rverifying: \d+\/\d+ units?, [^\r\n]*\x1b\[K/)
      expect(v.out).toMatch(/\r\x1b\[Kok: gen\d+ verified[^\n]*\r?\n$/)
    })
  })
}

describe('migrate and recall (format 1, a virtual tape library)', () => {
  it('--json: status lines (units), then the summary; --quiet: nothing; on a terminal: a status line, cleared', async () => {
    const repo = path.join(work, 'repo-tape')
    const env = { ...EVERY, BFS_RUNTIME_DIR: path.join(work, 'tape-run'), BFS_RECALL_IDLE_S: '1' }
    expect((await bfs(['init', '--format', '1'], { repo })).code).toBe(0)
    for (let g = 1; g <= 3; g++) {
      fs.writeFileSync(path.join(src, 'd0', 'gen'), `generation ${g}\n`.repeat(50_000))
      expect((await bfs(['backup', src, '--unit-blocks', '16', '--frame-blocks', '8'], { repo })).code).toBe(0)
    }
    fs.rmSync(path.join(src, 'd0', 'gen'))
    expect((await bfs(['tier', 'add', 'tape1', '--vtl', path.join(work, 'tape-vtl'), '--clock-scale', '0', '--cartridges', '1'], { repo })).code).toBe(0)
    const pids = new Set<number>()
    const service = (): void => {
      try {
        const pid = Number(fs.readFileSync(recallServicePaths(repo, env).lock, 'utf8').trim())
        if (pid > 0) pids.add(pid)
      } catch {
        // not started
      }
    }
    try {
      const m = await bfs(['migrate', 'gen1', '--json'], { repo, env })
      expect(m.code, m.stderr).toBe(0)
      const ml = jsonLines(m.stdout)
      expect(ml.length).toBeGreaterThan(1)
      for (const l of ml.slice(0, -1)) expect(l).toMatchObject({ message_type: 'status', action: 'migrate' })
      expect(ml.at(-1)).toMatchObject({ message_type: 'summary', action: 'migrate', gens: [1] })
      expect(ml.at(-2)!.total_files).toBe(ml.at(-1)!.units)
      const q = await bfs(['migrate', 'gen2', '--quiet'], { repo, env })
      expect([q.code, q.stdout, q.stderr]).toEqual([0, '', ''])
      const t = await onTty(['migrate', 'gen3'], repo)
      expect(t.code, t.out).toBe(0)
      expect(t.out).toMatch(/\rmigrating: \d+\/\d+ units?, [^\r\n]*\x1b\[K/)
      expect(t.out).toMatch(/\r\x1b\[Kmigrated [^\n]*\r?\n/)
      const r = await bfs(['recall', 'gen1', '--json'], { repo, env })
      service()
      expect(r.code, r.stderr).toBe(0)
      const rl = jsonLines(r.stdout)
      expect(rl.length).toBeGreaterThan(1)
      for (const l of rl.slice(0, -1)) expect(l).toMatchObject({ message_type: 'status', action: 'recall' })
      expect(rl.at(-1)).toMatchObject({ message_type: 'summary', action: 'recall', gen: 1, failed: [] })
      expect(rl.at(-2)!.total_files).toBe(rl.at(-1)!.recalled)
      expect(rl.at(-2)!.files_done).toBeLessThanOrEqual(rl.at(-1)!.recalled)
      expect(rl.at(-2)!.files_done).toBeGreaterThan(0)
      const rq = await bfs(['recall', 'gen2', '--quiet'], { repo, env })
      service()
      expect([rq.code, rq.stdout, rq.stderr]).toEqual([0, '', ''])
    } finally {
      service()
      for (const pid of pids) if (pidAlive(pid)) process.kill(pid, 'SIGKILL')
    }
  })
})

describe('--quiet and the note naming `latest`', () => {
  it('a repository of two sources: restore latest says which generation it took, not with --quiet', async () => {
    const repo = path.join(work, 'repo-two')
    expect((await bfs(['init'], { repo })).code).toBe(0) // the default format (2): its restore gives format 1's note
    for (const d of ['d2', 'd3']) expect((await bfs(['backup', path.join(src, d)], { repo })).code).toBe(0)
    const said = await bfs(['restore', 'latest', path.join(work, 'two-a')], { repo })
    expect(said.code).toBe(0)
    expect(said.stderr).toMatch(/^bfs: latest is gen2 .*--source/m)
    const q = await bfs(['restore', 'latest', path.join(work, 'two-b'), '-q'], { repo })
    expect([q.code, q.stdout, q.stderr]).toEqual([0, '', ''])
  })
})

describe('waiting for the lock (format 1 backup, migrate)', () => {
  const repo = path.join(work, 'repo-lock')
  it('says so once, naming the holder, in text, --quiet, --json and on a terminal', async () => {
    expect((await bfs(['init', '--format', '1'], { repo })).code).toBe(0)
    expect((await bfs(['backup', path.join(src, 'd1')], { repo })).code).toBe(0)
    // a live holder, as cli.test.ts does it: a process that lives until this test lets it go
    const holder = spawn('sleep', ['600'], { detached: true, stdio: 'ignore' })
    const gone = new Promise((res) => holder.once('exit', res))
    try {
      fs.writeFileSync(path.join(repo, 'lock'), JSON.stringify({ pid: holder.pid, host: os.hostname(), time: 'now', command: 'test holder' }))
      const said = /repository .* is locked by pid \d+ .*test holder.*; waiting for it up to 1 s \(--wait\)/
      for (const extra of [[], ['--quiet']]) {
        const r = await bfs(['backup', src, '--wait', '1', ...extra], { repo })
        expect(r.code).toBe(5)
        expect(r.stderr.match(new RegExp(`^bfs: ${said.source}$`, 'gm')), r.stderr).toHaveLength(1)
        expect(r.stdout).toBe('')
      }
      const j = await bfs(['backup', src, '--wait', '1', '--json'], { repo })
      expect(j.code).toBe(5)
      const lines = jsonLines(j.stdout)
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatchObject({ message_type: 'wait', action: 'backup' })
      expect(lines[0]!.message).toMatch(said)
      expect(j.stderr).not.toMatch(said)
      // several sources take the lock before the first source: the same `wait` line
      const several = await bfs(['backup', path.join(src, 'd1'), path.join(src, 'd2'), '--wait', '1', '--json'], { repo })
      expect(several.code).toBe(5)
      const sl = jsonLines(several.stdout)
      expect(sl).toHaveLength(1)
      expect(sl[0]).toMatchObject({ message_type: 'wait', action: 'backup' })
      expect(sl[0]!.message).toMatch(/repository .* is locked by pid \d+ .*test holder.*; waiting for it up to 1 s \(--wait\)/)
      expect(several.stderr).not.toMatch(said)
      const t = await onTty(['backup', src, '--wait', '1'], repo)
      expect(t.code).toBe(5)
      expect(t.out.match(new RegExp(said.source, 'g'))).toHaveLength(1)
      // migrate waits for the same lock, and says so too
      const m = await bfs(['migrate', 'gen1', '--wait', '1'], { repo })
      expect(m.code).toBe(5)
      expect(m.stderr.match(new RegExp(`^bfs: ${said.source}$`, 'gm')), m.stderr).toHaveLength(1)
    } finally {
      holder.kill('SIGKILL')
      await gone
    }
  })
})
