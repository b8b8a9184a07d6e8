/**
 * Issue 17 item 4, on both formats, through the real CLI on real trees: --exclude-file,
 * --exclude-caches, --exclude-if-present; several sources in one backup (one generation
 * each) and the incremental run after it, checked by restore + diff -r; --tag and --host
 * stored, shown and filtered by `bfs generations` (and --json); bad input.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { bfs, diffTree, sh, spawnBfs, tmpdir } from './helpers.js'
import { decodeEnvelope, encodeEnvelope } from '../src/format/envelope.js'

const SIG = 'Signature: 8a477f597d28d172789f06886806bc55'
let work: string

beforeAll(() => {
  work = tmpdir('bfs-sources-')
})
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

function write(p: string, data: string): void {
  fs.mkdirSync(path.dirname(p), { recursive: true })
  fs.writeFileSync(p, data)
}

interface GenJson {
  generation: string
  id: number
  source: string
  host: string
  tags: string[]
  label: string
  parent: number
  stats?: { unchangedFiles: number; changedFiles: number; newFiles: number }
}

/** A `backup --json` line as GenJson (format 2's manifest names its source and parent in `sources`). */
function backupJson(line: string): GenJson {
  const j = JSON.parse(line) as GenJson & { sources?: Array<{ path: string; parent: number }> }
  return { ...j, source: j.source ?? j.sources![0]!.path, parent: j.parent ?? j.sources![0]!.parent }
}

describe.each(['1', '2'])('format %s', (format) => {
  let n = 0
  async function init(): Promise<string> {
    const repo = path.join(work, `repo-f${format}-${++n}`)
    const r = await bfs(['init', '--format', format], { repo })
    expect(r.code, r.stderr).toBe(0)
    return repo
  }
  async function gens(repo: string, args: string[] = []): Promise<GenJson[]> {
    const r = await bfs(['generations', '--json', ...args], { repo })
    expect(r.code, r.stderr).toBe(0)
    return JSON.parse(r.stdout) as GenJson[]
  }
  async function restore(repo: string, gen: string, dest: string): Promise<void> {
    const r = await bfs(['restore', gen, dest], { repo })
    expect(r.code, r.stderr).toBe(0)
  }

  it('--exclude-file, --exclude-caches and --exclude-if-present leave out what they say, and nothing else', async () => {
    const repo = await init()
    const src = path.join(work, `ex-src-f${format}`)
    write(`${src}/keep.txt`, 'kept\n')
    write(`${src}/#a.txt`, 'a name that starts like a comment\n')
    write(`${src}/x.log`, 'log\n')
    write(`${src}/sub/y.log`, 'log\n')
    write(`${src}/sub/z.tmp`, 'tmp\n')
    write(`${src}/secret/key`, 'secret\n')
    // a real cache: the directory and its tag are kept, the rest is not
    write(`${src}/home/.cache/CACHEDIR.TAG`, `${SIG}\n# This file is a cache directory tag.\n`)
    write(`${src}/home/.cache/blob`, 'cached\n')
    write(`${src}/home/.cache/deep/blob2`, 'cached\n')
    // a tag with the wrong signature, and one that is a directory: ordinary entries
    write(`${src}/home/notcache/CACHEDIR.TAG`, 'Signature: 8a477f597d28d172789f06886806bc56\n')
    write(`${src}/home/notcache/data`, 'kept\n')
    write(`${src}/home/dircache/CACHEDIR.TAG/inside`, `${SIG}\n`)
    write(`${src}/home/dircache/data`, 'kept\n')
    write(`${src}/home/short/CACHEDIR.TAG`, SIG.slice(0, 20))
    write(`${src}/home/short/data`, 'kept\n')
    // --exclude-if-present (two names)
    write(`${src}/vm/.nobackup`, '')
    write(`${src}/vm/disk.img`, 'big\n')
    write(`${src}/vm2/sub/.skip-me`, '')
    write(`${src}/vm2/sub/x`, 'x\n')
    write(`${src}/vm2/y`, 'y\n')
    const ex1 = path.join(work, `ex1-f${format}`)
    const ex2 = path.join(work, `ex2-f${format}`)
    fs.writeFileSync(ex1, '# logs\n\n   *.log   \n#*.txt\n\t\nsecret/\n')
    fs.writeFileSync(ex2, 'sub/*.tmp\n')
    const b = await bfs(['backup', src, '--exclude-file', ex1, '--exclude-file', ex2, '--exclude-caches', '--exclude-if-present', '.nobackup', '--exclude-if-present', '.skip-me'], { repo })
    expect(b.code, b.stderr).toBe(0)
    expect(b.stderr).toBe('')
    const dest = path.join(work, `ex-dest-f${format}`)
    await restore(repo, 'latest', dest)
    // what should be there: the source minus what the options name
    const want = path.join(work, `ex-want-f${format}`)
    expect((await sh(`cp -a '${src}' '${want}' && cd '${want}' && rm -r x.log sub/y.log sub/z.tmp secret home/.cache/blob home/.cache/deep vm/disk.img vm2/sub/x`)).code).toBe(0)
    expect(await diffTree(want, dest)).toBe('')
    expect(fs.readFileSync(path.join(dest, 'home/.cache/CACHEDIR.TAG'), 'utf8')).toMatch(/^Signature: 8a477f/)
    expect(fs.existsSync(path.join(dest, 'home/notcache/data'))).toBe(true)
    expect(fs.existsSync(path.join(dest, '#a.txt'))).toBe(true)

    // without the options everything is backed up (the test could not pass by excluding more)
    const all = await bfs(['backup', src, '--full'], { repo })
    expect(all.code, all.stderr).toBe(0)
    const dest2 = path.join(work, `ex-dest2-f${format}`)
    await restore(repo, 'latest', dest2)
    expect(await diffTree(src, dest2)).toBe('')

    // the next run with the options is incremental and leaves out the same
    write(`${src}/home/.cache/new`, 'new cache entry\n')
    const inc = await bfs(['backup', src, '--json', '--exclude-caches'], { repo })
    expect(inc.code, inc.stderr).toBe(0)
    expect(backupJson(inc.stdout).parent).toBe(2)
    const dest3 = path.join(work, `ex-dest3-f${format}`)
    await restore(repo, 'latest', dest3)
    expect(fs.readdirSync(path.join(dest3, 'home/.cache'))).toEqual(['CACHEDIR.TAG'])
    expect(fs.existsSync(path.join(dest3, 'vm/disk.img'))).toBe(true)
  })

  it('several sources: one generation each in one run; the next run of the same set is incremental to them, and restores right', async () => {
    const repo = await init()
    const s1 = path.join(work, `multi-f${format}`, 'etc')
    const s2 = path.join(work, `multi-f${format}`, 'home')
    const s3 = path.join(work, `multi-f${format}`, 'srv')
    for (let i = 0; i < 20; i++) write(`${s1}/conf${i}`, `setting ${i}\n`)
    write(`${s2}/user/notes.txt`, 'notes\n')
    write(`${s2}/user/big.bin`, 'B'.repeat(300_000))
    write(`${s3}/www/index.html`, '<html></html>\n')
    const b1 = await bfs(['backup', s1, s2, s3, '--json', '--label', 'nightly'], { repo })
    expect(b1.code, b1.stderr).toBe(0)
    const first = b1.stdout.trim().split('\n').map(backupJson)
    expect(first.map((g) => [g.id, g.source, g.parent, g.label])).toEqual([[1, s1, 0, 'nightly'], [2, s2, 0, 'nightly'], [3, s3, 0, 'nightly']])
    if (format === '1') expect(fs.existsSync(path.join(repo, 'lock'))).toBe(false) // (format 2 keeps its guard lock there)

    // change one file of etc, add one to home, leave srv alone
    write(`${s1}/conf3`, 'setting 3 changed\n')
    write(`${s2}/user/new.txt`, 'new\n')
    const b2 = await bfs(['backup', s1, s2, s3, '--json'], { repo })
    expect(b2.code, b2.stderr).toBe(0)
    const second = b2.stdout.trim().split('\n').map(backupJson)
    expect(second.map((g) => [g.id, g.source, g.parent])).toEqual([[4, s1, 1], [5, s2, 2], [6, s3, 3]])
    expect(second.map((g) => [g.stats!.newFiles, g.stats!.changedFiles, g.stats!.unchangedFiles])).toEqual([[0, 1, 19], [1, 0, 2], [0, 0, 1]])

    // each source's latest restores as the source is now; the first run's as it was
    for (const [s, gen] of [[s1, 'gen4'], [s2, 'gen5'], [s3, 'gen6']] as const) {
      const dest = path.join(work, `multi-dest-f${format}-${gen}`)
      await restore(repo, gen, dest)
      expect(await diffTree(s, dest)).toBe('')
    }
    const old = path.join(work, `multi-old-f${format}`)
    await restore(repo, 'gen1', old)
    expect(fs.readFileSync(path.join(old, 'conf3'), 'utf8')).toBe('setting 3\n')
    // latest of one source; ls and cat as for any single-source generation
    const ls = await bfs(['ls', '--source', s2, 'latest:user'], { repo })
    expect(ls.code, ls.stderr).toBe(0)
    expect(ls.stdout).toMatch(/ new\.txt$/m)
    expect((await bfs(['cat', '--source', s1, 'latest:conf3'], { repo })).stdout).toBe('setting 3 changed\n')
    if (format === '1') expect((await bfs(['verify', '--against', s1], { repo })).code).toBe(0)
    // a mount of one of them is that source's tree (real FUSE, unmounted in every case)
    const mnt = path.join(work, `multi-mnt-f${format}`)
    fs.mkdirSync(mnt)
    const m = await bfs(['mount', 'gen5', mnt], { repo })
    expect(m.code, m.stderr).toBe(0)
    try {
      expect(await diffTree(s2, mnt)).toBe('')
    } finally {
      if ((await bfs(['umount', mnt])).code !== 0) await bfs(['umount', '--lazy', mnt])
    }
    expect(fs.readFileSync('/proc/mounts', 'utf8')).not.toContain(mnt)
    expect((await bfs(['verify', '--all'], { repo })).code).toBe(0)

    // a subset of the set: each source still finds its own base
    const b3 = await bfs(['backup', s3, '--json'], { repo })
    expect(backupJson(b3.stdout).parent).toBe(6)
  })

  if (format === '1') {
    it('several sources take the writer lock once, for the whole run: a held lock fails it before anything is committed (exit 5)', async () => {
      const repo = await init()
      const a = path.join(work, 'lock-a')
      const b = path.join(work, 'lock-b')
      write(`${a}/f`, 'a\n')
      write(`${b}/f`, 'b\n')
      // held by a live process of this host: this test's own
      fs.writeFileSync(path.join(repo, 'lock'), JSON.stringify({ pid: process.pid, host: os.hostname(), time: new Date().toISOString(), command: 'test' }) + '\n')
      const r = await bfs(['backup', a, b], { repo })
      expect(r.code).toBe(5)
      expect(r.stderr).toMatch(/^bfs: repository .* is locked by pid \d+ .*\n$/)
      expect(fs.readdirSync(path.join(repo, 'manifests'))).toEqual([])
      fs.rmSync(path.join(repo, 'lock'))
      // while it runs, the lock is the run's, for both sources (not one per generation)
      fs.writeFileSync(`${b}/big`, randomBytes(48 << 20))
      const p = spawnBfs(['backup', a, b, '--threads', '1'], repo)
      const seen = new Set<string>()
      let sawBetween = false
      const done = new Promise<number>((resolve) => p.on('exit', (c) => resolve(c ?? -1)))
      let exited = false
      void done.then(() => (exited = true))
      while (!exited) {
        try {
          seen.add((JSON.parse(fs.readFileSync(path.join(repo, 'lock'), 'utf8')) as { command: string }).command)
          if (fs.existsSync(path.join(repo, 'manifests', 'gen-00000001'))) sawBetween = true
        } catch {
          // no lock (yet, or any more), or caught mid-write
        }
        await new Promise((r) => setTimeout(r, 5))
      }
      expect(await done).toBe(0)
      expect([...seen]).toEqual([`backup ${a} ${b}`])
      expect(sawBetween).toBe(true) // the lock was held after the first generation was committed
      expect((await gens(repo)).map((g) => g.source)).toEqual([a, b])
    })
  }

  if (format === '1') {
    it('a manifest written before tags existed reads as no tags, and is still the incremental base', async () => {
      const repo = await init()
      const a = path.join(work, 'old-a')
      write(`${a}/f`, 'a\n')
      expect((await bfs(['backup', a], { repo })).code).toBe(0)
      const file = path.join(repo, 'manifests', 'gen-00000001')
      const m = JSON.parse(decodeEnvelope('manifest', fs.readFileSync(file), file).stored.toString()) as Record<string, unknown>
      expect(m.tags).toEqual([])
      delete m.tags
      const payload = Buffer.from(JSON.stringify(m))
      fs.writeFileSync(file, encodeEnvelope('manifest', 0, payload.length, payload))
      const g = await gens(repo)
      expect(g.map((x) => [x.id, x.tags, x.host])).toEqual([[1, [], os.hostname()]])
      expect(await gens(repo, ['--tag', 'x'])).toEqual([])
      const text = await bfs(['generations'], { repo })
      expect(text.stderr).toBe('')
      expect(text.stdout).toMatch(/^gen1 .* -\n$/m)
      const next = await bfs(['backup', a, '--json', '--tag', 'x'], { repo })
      expect(backupJson(next.stdout).parent).toBe(1)
      expect((await gens(repo, ['--tag', 'x'])).map((x) => x.id)).toEqual([2])
    })
  }

  it('--tag and --host are stored, shown, and filter generations (with --source, --label, --since, --until)', async () => {
    const repo = await init()
    const a = path.join(work, `tags-f${format}`, 'a')
    const b = path.join(work, `tags-f${format}`, 'b')
    write(`${a}/f`, 'a\n')
    write(`${b}/f`, 'b\n')
    expect((await bfs(['backup', a, '--tag', 'daily,web', '--tag', 'prod', '--host', 'alpha', '--label', 'one'], { repo })).code).toBe(0)
    expect((await bfs(['backup', b, '--tag', 'daily', '--host', 'beta'], { repo })).code).toBe(0)
    expect((await bfs(['backup', a], { repo })).code).toBe(0) // this machine's host, no tags
    const all = await gens(repo)
    expect(all.map((g) => [g.id, g.host, g.tags])).toEqual([[1, 'alpha', ['daily', 'web', 'prod']], [2, 'beta', ['daily']], [3, os.hostname(), []]])
    // the incremental base is of the same host: gen3 (this host) is a full backup of a
    expect(all[2]!.parent).toBe(0)
    const again = await bfs(['backup', a, '--host', 'alpha', '--json'], { repo })
    expect(backupJson(again.stdout).parent).toBe(1)

    const ids = async (args: string[]): Promise<number[]> => (await gens(repo, args)).map((g) => g.id)
    expect(await ids(['--tag', 'daily'])).toEqual([1, 2])
    expect(await ids(['--tag', 'daily', '--tag', 'prod'])).toEqual([1])
    expect(await ids(['--tag', 'daily,web'])).toEqual([1])
    expect(await ids(['--tag', 'nosuch'])).toEqual([])
    expect(await ids(['--host', 'beta'])).toEqual([2])
    expect(await ids(['--host', 'beta', '--host', 'alpha'])).toEqual([1, 2, 4])
    expect(await ids(['--source', a])).toEqual([1, 3, 4])
    expect(await ids(['--source', b, '--tag', 'daily'])).toEqual([2])
    expect(await ids(['--label', 'one'])).toEqual([1])
    expect(await ids(['--since', '1d'])).toEqual([1, 2, 3, 4])
    expect(await ids(['--since', '2099-01-01'])).toEqual([])
    expect(await ids(['--until', '2000-01-01'])).toEqual([])
    expect(await ids(['--until', new Date(Date.now() + 60_000).toISOString()])).toEqual([1, 2, 3, 4])

    // the text listing shows host and tags
    const text = await bfs(['generations', '--host', 'alpha'], { repo })
    expect(text.code, text.stderr).toBe(0)
    expect(text.stdout).toMatch(/^gen1 .*alpha.*daily,web,prod/m)
    expect(text.stdout).not.toMatch(/^gen2 /m)
  })

  it('bad input: one line, the documented exit code, nothing committed', async () => {
    const repo = await init()
    const s = path.join(work, `bad-f${format}`)
    write(`${s}/etc/ssh/x`, 'x\n')
    write(`${s}/home/y`, 'y\n')
    const cases: Array<[string[], number, RegExp]> = [
      [['backup', `${s}/etc`, `${s}/etc/ssh`], 2, /^bfs: sources .*\/etc and .*\/etc\/ssh overlap/],
      [['backup', `${s}/etc/ssh`, `${s}/etc`], 2, /^bfs: sources .*\/etc and .*\/etc\/ssh overlap/],
      [['backup', `${s}/home`, `${s}/home/`], 2, /^bfs: source .*\/home is given twice/],
      [['backup', `${s}/home`, `${s}/nosuch`], 1, /^bfs: source .*\/nosuch does not exist/],
      [['backup', `${s}/home`, '--exclude-file', `${s}/nosuch.txt`], 1, /^bfs: cannot read exclude file .*nosuch\.txt: no such file/],
      [['backup', `${s}/home`, '--tag', 'a,,b'], 2, /^bfs: --tag 'a,,b': a tag must not be empty/],
      [['backup', `${s}/home`, `${s}/etc`, '--volume'], 2, /^bfs: --volume\/--mode volume takes one source; 2 were given/],
      [['backup', `${s}/home`, '--host', ''], 2, /^bfs: --host must be a non-empty name/],
      [['generations', '--since', 'yesterday'], 2, /^bfs: option '--since <time>' argument 'yesterday' is invalid/],
      [['generations', '--until', '2d3x'], 2, /^bfs: option '--until <time>' argument '2d3x' is invalid/],
      [['generations', '--since', '2026-02-01', '--until', '2026-01-01'], 2, /^bfs: --since is after --until/],
    ]
    for (const [args, code, msg] of cases) {
      const r = await bfs(args, { repo })
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(code)
      expect(r.stderr, args.join(' ')).toMatch(msg)
      expect(r.stderr.split('\n').filter(Boolean), args.join(' ')).toHaveLength(1)
      expect(r.stdout, args.join(' ')).toBe('')
    }
    expect((await gens(repo)).length).toBe(0)
  })
})
