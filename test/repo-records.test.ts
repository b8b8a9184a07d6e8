/**
 * This host's record of each repository location (issue 18; native-notes/format.md §2.22.3,
 * src/repo/repo-records.ts), through real `bfs` processes: an encrypted repository swapped for a
 * plain one at the same path (its files deleted, a plain repository made there by someone
 * with another record, i.e. another host) is refused (exit 6, one line) and nothing is written
 * to it; BFS_ACCEPT_CHANGED_REPO=1 goes on and updates the record; a repository that was
 * always plain, and a new location, work with no extra line; --password-file for a plain
 * repository is refused (exit 2); a state directory that cannot be written is a warning.
 * Each test file has its own BFS_STATE_DIR (test/setup.ts); these tests name their own.
 */
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bfs, tmpdir } from './helpers.js'

const ENC = { NODE_ENV: 'test', BFS_TEST_SCRYPT_N: '1024', BFS_PASSWORD: 'correct horse' }

let work: string
let src: string
/** This host's state directory, and another host's (the one that swaps the repository). */
let mine: string
let theirs: string

const run = (args: string[], repo: string, env: Record<string, string> = {}) => bfs(args, { repo, env: { ...ENC, BFS_STATE_DIR: mine, ...env } })

/** Every file under `dir` with the sha256 of its content (what a refused command must not change). */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const e of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue
    const p = path.join(e.parentPath, e.name)
    out[path.relative(dir, p)] = createHash('sha256').update(fs.readFileSync(p)).digest('hex')
  }
  return out
}

/** A one-line error, no stack trace. */
function oneLine(stderr: string): void {
  expect(stderr.trim().split('\n')).toHaveLength(1)
  expect(stderr).not.toMatch(/\n\s+at /)
}

/** Replaces the repository at `repo` by a plain one made by another host (`format` 2 or 1). */
async function swapForPlain(repo: string, format = '2'): Promise<void> {
  fs.rmSync(repo, { recursive: true, force: true })
  const i = await bfs(['init', '--format', format], { repo, env: { BFS_STATE_DIR: theirs, BFS_PASSWORD: '' } })
  expect(i.code, i.stderr).toBe(0)
  expect(fs.existsSync(path.join(repo, 'keys'))).toBe(false)
}

beforeAll(() => {
  work = tmpdir('bfs-records-')
  src = path.join(work, 'src')
  fs.mkdirSync(src)
  fs.writeFileSync(path.join(src, 'secret.txt'), 'XYZZY-secret-content\n')
  mine = path.join(work, 'state-mine')
  theirs = path.join(work, 'state-theirs')
})
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

describe('a repository swapped for a plain one', () => {
  it('is refused (exit 6, one line) and receives nothing; BFS_ACCEPT_CHANGED_REPO=1 goes on and updates the record', async () => {
    const repo = path.join(work, 'swapped')
    expect((await run(['init', '--encrypt'], repo)).code).toBe(0)
    const b = await run(['backup', src], repo)
    expect(b.code, b.stderr).toBe(0)
    // the record: one file for the location, saying encrypted
    const files = fs.readdirSync(path.join(mine, 'repos'))
    expect(files).toHaveLength(1)
    const rec = JSON.parse(fs.readFileSync(path.join(mine, 'repos', files[0]!), 'utf8'))
    expect(rec).toMatchObject({ v: 1, location: fs.realpathSync(repo), encrypted: true, format: 2 })
    expect(rec.repoId).toMatch(/^[0-9a-f]{32}$/)

    await swapForPlain(repo)
    const before = snapshot(repo)
    const r = await run(['backup', src], repo)
    expect(r.code).toBe(6)
    oneLine(r.stderr)
    expect(r.stderr).toMatch(/^bfs: .*swapped: was an encrypted repository \(id [0-9a-f]{32}\) when this host last used it, and is now an unencrypted repository with another id .*refused.*BFS_ACCEPT_CHANGED_REPO=1/)
    expect(snapshot(repo)).toEqual(before)
    // every command, a read as well (a swapped repository could also feed a restore)
    const g = await run(['generations'], repo)
    expect(g.code).toBe(6)
    oneLine(g.stderr)
    // without BFS_PASSWORD set either
    expect((await run(['backup', src], repo, { BFS_PASSWORD: '' })).code).toBe(6)
    expect(snapshot(repo)).toEqual(before)

    // the user replaced it: the override goes on, with a warning, and the record says plain now
    const ok = await run(['backup', src], repo, { BFS_ACCEPT_CHANGED_REPO: '1', BFS_PASSWORD: '' })
    expect(ok.code, ok.stderr).toBe(0)
    expect(ok.stderr).toMatch(/^bfs: warning: .*accepted \(BFS_ACCEPT_CHANGED_REPO=1\), and recorded as unencrypted now/)
    const after = await run(['backup', src], repo, { BFS_PASSWORD: '' })
    expect(after.code, after.stderr).toBe(0)
    expect(after.stderr).toBe('')
  })

  it('the same repository with its keys deleted and a plain config put in its place: refused', async () => {
    const repo = path.join(work, 'same-id')
    expect((await run(['init', '--encrypt'], repo)).code).toBe(0)
    expect((await run(['backup', src], repo)).code).toBe(0)
    // a plain repository made elsewhere, its config and copy put over the encrypted one's, keys/ removed:
    // the config no longer says encrypted and nothing in the repository contradicts it
    const other = path.join(work, 'same-id-other')
    expect((await bfs(['init'], { repo: other, env: { BFS_STATE_DIR: theirs, BFS_PASSWORD: '' } })).code).toBe(0)
    fs.rmSync(path.join(repo, 'keys'), { recursive: true })
    for (const f of ['config', 'config-copy']) fs.copyFileSync(path.join(other, f), path.join(repo, f))
    const before = snapshot(repo)
    const r = await run(['backup', src], repo)
    expect(r.code).toBe(6)
    oneLine(r.stderr)
    expect(r.stderr).toMatch(/was an encrypted repository .* and is now .*unencrypted.*refused/)
    expect(snapshot(repo)).toEqual(before)
  })

  it('a format 1 repository put where an encrypted one was: refused', async () => {
    const repo = path.join(work, 'to-format1')
    expect((await run(['init', '--encrypt'], repo)).code).toBe(0)
    await swapForPlain(repo, '1')
    const before = snapshot(repo)
    const r = await run(['backup', src], repo, { BFS_PASSWORD: '' })
    expect(r.code).toBe(6)
    oneLine(r.stderr)
    expect(r.stderr).toMatch(/was an encrypted repository .*refused/)
    expect(snapshot(repo)).toEqual(before)
  })

  it('--password-file for an unencrypted repository is refused (exit 2), on first use as well', async () => {
    const repo = path.join(work, 'plain-pwfile')
    expect((await bfs(['init'], { repo, env: { BFS_STATE_DIR: theirs } })).code).toBe(0)
    const pf = path.join(work, 'pass')
    fs.writeFileSync(pf, 'correct horse\n')
    const before = snapshot(repo)
    const r = await run(['--password-file', pf, 'backup', src], repo, { BFS_PASSWORD: '' })
    expect(r.code).toBe(2)
    oneLine(r.stderr)
    expect(r.stderr).toMatch(/is not an encrypted repository, but --password-file was given: refused/)
    expect(snapshot(repo)).toEqual(before)
    // init: --password-file without --encrypt makes nothing
    const i = await run(['--password-file', pf, 'init'], path.join(work, 'plain-pwfile-init'))
    expect(i.code).toBe(2)
    expect(fs.existsSync(path.join(work, 'plain-pwfile-init', 'config'))).toBe(false)
  })
})

describe('what still works as before', () => {
  it('a repository that was always plain: no extra line, no prompt; BFS_PASSWORD set warns once, on first use', async () => {
    const repo = path.join(work, 'plain')
    const i = await run(['init'], repo, { BFS_PASSWORD: '' })
    expect(i.code, i.stderr).toBe(0)
    for (let k = 0; k < 2; k++) {
      const b = await run(['backup', src], repo, { BFS_PASSWORD: '' })
      expect(b.code, b.stderr).toBe(0)
      expect(b.stderr).toBe('')
    }
    // made by another host, first used here with BFS_PASSWORD set (kept for other repositories)
    const repo2 = path.join(work, 'plain-elsewhere')
    expect((await bfs(['init'], { repo: repo2, env: { BFS_STATE_DIR: theirs } })).code).toBe(0)
    const first = await run(['backup', src], repo2)
    expect(first.code, first.stderr).toBe(0)
    expect(first.stderr).toMatch(/^bfs: warning: BFS_PASSWORD is set, but .* is not an encrypted repository \(first use from this host/)
    const second = await run(['backup', src], repo2)
    expect(second.code, second.stderr).toBe(0)
    expect(second.stderr).toBe('')
  })

  it('a new repository at a new location, encrypted or not, works; so does one made by another host', async () => {
    const enc = path.join(work, 'new-enc')
    expect((await run(['init', '--encrypt'], enc)).code).toBe(0)
    const b = await run(['backup', src], enc)
    expect([b.code, b.stderr]).toEqual([0, ''])
    const elsewhere = path.join(work, 'new-enc-elsewhere')
    expect((await bfs(['init', '--encrypt'], { repo: elsewhere, env: { ...ENC, BFS_STATE_DIR: theirs } })).code).toBe(0)
    const e = await run(['backup', src], elsewhere)
    expect([e.code, e.stderr]).toEqual([0, ''])
    // an encrypted repository replaced by another encrypted one: it must be unlocked, and is then recorded
    fs.rmSync(enc, { recursive: true })
    expect((await bfs(['init', '--encrypt'], { repo: enc, env: { ...ENC, BFS_STATE_DIR: theirs, BFS_PASSWORD: 'theirs' } })).code).toBe(0)
    expect((await run(['backup', src], enc)).code).toBe(7)
    expect((await run(['backup', src], enc, { BFS_PASSWORD: 'theirs' })).code).toBe(0)
  })

  it('a state directory that cannot be written: a warning, not a failure', async () => {
    const blocker = path.join(work, 'not-a-dir')
    fs.writeFileSync(blocker, '')
    const repo = path.join(work, 'ro-state')
    const i = await run(['init'], repo, { BFS_STATE_DIR: path.join(blocker, 'state'), BFS_PASSWORD: '' })
    expect(i.code, i.stderr).toBe(0)
    expect(i.stderr).toMatch(/^bfs: warning: cannot record .* \(ENOTDIR\): a repository swapped for a plain one there will not be noticed/)
    const b = await run(['backup', src], repo, { BFS_STATE_DIR: path.join(blocker, 'state'), BFS_PASSWORD: '' })
    expect(b.code, b.stderr).toBe(0)
    expect(b.stderr).toMatch(/^bfs: warning: cannot record /)
    const enc = path.join(work, 'ro-state-enc')
    const ie = await run(['init', '--encrypt'], enc, { BFS_STATE_DIR: path.join(blocker, 'state') })
    expect(ie.code, ie.stderr).toBe(0)
    const be = await run(['backup', src], enc, { BFS_STATE_DIR: path.join(blocker, 'state') })
    expect(be.code, be.stderr).toBe(0)
    expect(be.stderr).toMatch(/^bfs: warning: cannot record /)
  })
})
