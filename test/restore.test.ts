/**
 * bfs restore against a hostile or damaged destination (issue 11): symlinks, hard links,
 * fifos and device nodes planted in DEST, a process swapping directories for symlinks
 * while restore runs, a restore by an unprivileged user, and a restore that fails.
 * Real files, real processes, real tools (stat, find, sha256sum, setpriv, getcap).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { BFS, bfs, diffTree, ROOT, sh, spawnBfs, statTree, tmpdir, newRepo } from './helpers.js'
import { workerReaderCacheBytes } from '../src/repo/readers.js'

const IS_ROOT = process.getuid?.() === 0
let work: string
let src: string
let repo: string

beforeAll(async () => {
  work = tmpdir('bfs-restore-')
  src = path.join(work, 'src')
  repo = await newRepo(path.join(work, 'repo'))
  fs.mkdirSync(path.join(src, 'sub/deep'), { recursive: true })
  fs.writeFileSync(path.join(src, 'hello.txt'), 'hello from the backup\n')
  fs.writeFileSync(path.join(src, 'linked.txt'), 'restored content of linked.txt\n')
  fs.writeFileSync(path.join(src, 'fifo.txt'), 'a file where DEST has a fifo\n')
  fs.writeFileSync(path.join(src, 'null.txt'), 'a file where DEST has a device node\n')
  fs.writeFileSync(path.join(src, 'dir.txt'), 'a file where DEST has a directory\n')
  fs.writeFileSync(path.join(src, 'sub/a.txt'), 'sub a\n')
  fs.writeFileSync(path.join(src, 'sub/deep/b.txt'), 'sub deep b\n')
  fs.symlinkSync('hello.txt', path.join(src, 'sub/link'))
  fs.chmodSync(path.join(src, 'sub'), 0o751)
  await sh(`touch -d '2003-04-05 06:07:08.5' '${src}/sub' '${src}/hello.txt'`)
  const b = await bfs(['backup', src], { repo })
  expect(b.stderr).toBe('')
  expect(b.code).toBe(0)
})
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

/** Everything about a tree that a write, chmod, chown, utimes, xattr or new entry would change: listing, types, modes, owners, sizes, ns mtimes and ctimes, link targets, contents. */
async function snapshot(dir: string): Promise<string> {
  const r = await sh(`cd '${dir}' && find . -printf '%p|%y|%m|%U:%G|%s|%n|%T@|%C@|%l\\n' | sort && find . -type f -print0 | sort -z | xargs -0r sha256sum`)
  expect(r.code).toBe(0)
  return r.stdout
}

/** A victim directory outside DEST, with files, a subdirectory, odd modes and old times. */
async function makeVictim(dir: string): Promise<void> {
  fs.mkdirSync(path.join(dir, 'sub'), { recursive: true })
  for (const n of ['hello.txt', 'a.txt', 'sub/a.txt', 'deep']) fs.writeFileSync(path.join(dir, n), `victim ${n}\n`)
  fs.chmodSync(path.join(dir, 'a.txt'), 0o600)
  fs.chmodSync(dir, 0o750)
  await sh(`touch -d '1999-01-01 00:00:00' '${dir}/a.txt' '${dir}/hello.txt' '${dir}/sub' '${dir}'`)
}

describe('restore --overwrite never follows what is planted in DEST', () => {
  it('a directory symlink DEST/sub -> victim becomes a real directory; the victim is untouched', async () => {
    const victim = path.join(work, 'victim-dir')
    await makeVictim(victim)
    const dest = path.join(work, 'dest-dirlink')
    fs.mkdirSync(dest)
    fs.symlinkSync(victim, path.join(dest, 'sub'))
    const before = await snapshot(victim)
    const r = await bfs(['restore', 'gen1', dest, '--overwrite'], { repo })
    expect(await snapshot(victim)).toBe(before)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(fs.lstatSync(path.join(dest, 'sub')).isDirectory()).toBe(true)
    expect(await diffTree(src, dest)).toBe('')
    expect(await statTree(dest)).toBe(await statTree(src))
  })

  it('a symlink to a file, a hard link, a fifo, a device node and a directory at file names are replaced, not written through', async () => {
    const victim = path.join(work, 'victim-files')
    await makeVictim(victim)
    const dest = path.join(work, 'dest-files')
    fs.mkdirSync(dest)
    fs.symlinkSync(path.join(victim, 'hello.txt'), path.join(dest, 'hello.txt'))
    // a hard link shares the inode: replacing the name must leave its data, mode and mtime
    // (its link count and ctime change with the name removed, so it lives outside the snapshot)
    const hard = path.join(work, 'victim-hard.txt')
    fs.writeFileSync(hard, 'victim hard link\n')
    fs.chmodSync(hard, 0o640)
    await sh(`touch -d '1999-01-01 00:00:00' '${hard}'`)
    fs.linkSync(hard, path.join(dest, 'linked.txt'))
    const hardBefore = (await sh(`stat -c '%a %s %Y' '${hard}' && sha256sum '${hard}'`)).stdout
    expect((await sh(`mkfifo '${dest}/fifo.txt'`)).code).toBe(0)
    if (IS_ROOT) expect((await sh(`mknod '${victim}/null' c 1 3 && chmod 600 '${victim}/null' && ln -s '${victim}/null' '${dest}/null.txt'`)).code).toBe(0)
    fs.mkdirSync(path.join(dest, 'dir.txt')) // empty: replaced
    fs.symlinkSync(path.join(victim, 'deep'), path.join(dest, 'sub')) // a symlink to a file where a directory goes
    const before = await snapshot(victim)
    const r = await bfs(['restore', 'gen1', dest, '--overwrite'], { repo })
    expect(await snapshot(victim)).toBe(before)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect((await sh(`stat -c '%a %s %Y' '${hard}' && sha256sum '${hard}'`)).stdout).toBe(hardBefore)
    expect(fs.statSync(hard).nlink).toBe(1)
    for (const n of ['hello.txt', 'linked.txt', 'fifo.txt', 'null.txt', 'dir.txt']) {
      expect(fs.lstatSync(path.join(dest, n)).isFile()).toBe(true)
    }
    expect(await diffTree(src, dest)).toBe('')
    expect(await statTree(dest)).toBe(await statTree(src))
  })

  it('a non-empty directory where a file goes is an error for that entry, and is left as it is', async () => {
    const dest = path.join(work, 'dest-fulldir')
    fs.mkdirSync(path.join(dest, 'hello.txt'), { recursive: true })
    fs.writeFileSync(path.join(dest, 'hello.txt/keep'), 'keep me\n')
    const r = await bfs(['restore', 'gen1', dest, '--overwrite'], { repo })
    expect(r.code).toBe(1)
    expect(r.stderr).toBe(`bfs: warning: ${dest}/hello.txt: is a non-empty directory; not replaced\n`)
    expect(r.stdout).toMatch(/, 1 error\n$/)
    expect(fs.readFileSync(path.join(dest, 'hello.txt/keep'), 'utf8')).toBe('keep me\n')
    expect(fs.readFileSync(path.join(dest, 'sub/deep/b.txt'), 'utf8')).toBe('sub deep b\n')
    expect(fs.readdirSync(dest).filter((n) => n.startsWith('.bfs-restore'))).toEqual([])
  })

  it('DEST itself is the user\'s path: a symlink to a directory there is followed, as tar -C does', async () => {
    const real = path.join(work, 'real-dest')
    fs.mkdirSync(real)
    const via = path.join(work, 'via-link')
    fs.symlinkSync(real, via)
    const r = await bfs(['restore', 'gen1', via], { repo })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(fs.lstatSync(via).isSymbolicLink()).toBe(true)
    expect(await diffTree(src, real)).toBe('')
  })

  it('a single file restored over a symlink replaces the symlink; a device node as DEST is refused', async () => {
    const victim = path.join(work, 'victim-single')
    await makeVictim(victim)
    const dest = path.join(work, 'single')
    fs.mkdirSync(dest)
    fs.symlinkSync(path.join(victim, 'hello.txt'), path.join(dest, 'hello.txt'))
    const before = await snapshot(victim)
    const r = await bfs(['restore', 'gen1:hello.txt', dest, '--overwrite'], { repo })
    expect(await snapshot(victim)).toBe(before)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(fs.lstatSync(path.join(dest, 'hello.txt')).isFile()).toBe(true)
    expect(fs.readFileSync(path.join(dest, 'hello.txt'), 'utf8')).toBe('hello from the backup\n')
    if (IS_ROOT) {
      expect((await sh(`mknod '${dest}/dev' c 1 3`)).code).toBe(0)
      const d = await bfs(['restore', 'gen1:hello.txt', path.join(dest, 'dev'), '--overwrite'], { repo })
      expect(d.code).toBe(1)
      expect(d.stderr).toMatch(/^bfs: .*\/dev is a device; restore replaces it with a file, it does not write into it/)
      expect(fs.lstatSync(path.join(dest, 'dev')).isCharacterDevice()).toBe(true)
    }
  })

  it('without --overwrite a planted symlink is a conflict found before anything is written; real directories are merged into', async () => {
    const victim = path.join(work, 'victim-noover')
    await makeVictim(victim)
    const dest = path.join(work, 'dest-noover')
    fs.mkdirSync(dest)
    fs.symlinkSync(victim, path.join(dest, 'sub'))
    const before = await snapshot(victim)
    const r = await bfs(['restore', 'gen1', dest], { repo })
    expect(r.code).toBe(1)
    expect(r.stderr).toBe(`bfs: restore would overwrite ${dest}/sub; use --overwrite or restore elsewhere\n`)
    expect(fs.readdirSync(dest)).toEqual(['sub'])
    expect(await snapshot(victim)).toBe(before)
    // a directory that is already there (a real one) is restored into, as tar does
    fs.unlinkSync(path.join(dest, 'sub'))
    fs.mkdirSync(path.join(dest, 'sub/deep'), { recursive: true })
    const m = await bfs(['restore', 'gen1', dest], { repo })
    expect(m.stderr).toBe('')
    expect(m.code).toBe(0)
    expect(await diffTree(src, dest)).toBe('')
  })
})

describe('restore --overwrite under attack', () => {
  let attacker: ChildProcess | undefined
  afterEach(async () => {
    if (attacker && attacker.exitCode === null) {
      const gone = new Promise((r) => attacker!.once('exit', r))
      attacker.kill('SIGKILL')
      await gone
    }
    attacker = undefined
  })

  it('a process swapping directories under DEST for symlinks to a victim never gets restore to touch the victim', async () => {
    // 24 directories of 3 subdirectories of 5 files, plus files at each level
    const tsrc = path.join(work, 'race-src')
    const names: string[] = []
    for (let d = 0; d < 24; d++) {
      const top = `d${String(d).padStart(2, '0')}`
      names.push(top)
      fs.mkdirSync(path.join(tsrc, top), { recursive: true })
      for (const t of ['hello.txt', 'a.txt']) fs.writeFileSync(path.join(tsrc, top, t), `${top}/${t} restored\n`)
      for (let s = 0; s < 3; s++) {
        names.push(`${top}/sub${s}`)
        fs.mkdirSync(path.join(tsrc, top, `sub${s}`))
        for (let f = 0; f < 5; f++) fs.writeFileSync(path.join(tsrc, top, `sub${s}`, `a.txt${f || ''}`), `${top}/sub${s}/${f} restored\n`.repeat(50))
      }
    }
    const rrepo = await newRepo(path.join(work, 'race-repo'))
    expect((await bfs(['backup', tsrc], { repo: rrepo })).code).toBe(0)
    const victim = path.join(work, 'race-victim')
    await makeVictim(victim)
    const dest = path.join(work, 'race-dest')
    expect((await bfs(['restore', 'gen1', dest], { repo: rrepo })).code).toBe(0)
    const before = await snapshot(victim)

    // The attacker works like restore must: relative to directory fds, never following its
    // own symlinks, so that it cannot touch the victim itself. It flips each directory it
    // picks with a symlink to the victim (rename-exchange: half the time a name is a
    // symlink), and plants a symlink where a directory is missing.
    const script = path.join(work, 'attacker.mjs')
    fs.writeFileSync(script, `
      import fs from 'node:fs'
      import * as n from ${JSON.stringify(path.join(ROOT, 'dist/native/index.js'))}
      const [dest, victim, stop, ...names] = process.argv.slice(2)
      const K = n.atConstants()
      const destFd = fs.openSync(dest, 'r')
      let swaps = 0, plants = 0, rounds = 0
      const flip = (rel) => {
        const slash = rel.lastIndexOf('/')
        let dirFd = destFd
        if (slash > 0) {
          try { dirFd = n.openat2(destFd, rel.slice(0, slash), K.O_PATH | K.O_DIRECTORY, 0, K.RESOLVE_NO_SYMLINKS | K.RESOLVE_BENEATH) } catch { return }
        }
        const name = rel.slice(slash + 1)
        try { n.symlinkat(victim, dirFd, '.evil-' + name) } catch {}
        try { n.renameat2(dirFd, name, dirFd, '.evil-' + name, K.RENAME_EXCHANGE); swaps++ } catch {
          try { n.symlinkat(victim, dirFd, name); plants++ } catch {}
        }
        if (dirFd !== destFd) n.close(dirFd)
      }
      for (const rel of names) flip(rel)
      process.stdout.write('ready\\n')
      while (!fs.existsSync(stop)) {
        for (let i = 0; i < 200; i++) flip(names[Math.floor(Math.random() * names.length)])
        rounds++
      }
      process.stdout.write(JSON.stringify({ swaps, plants, rounds }) + '\\n')
    `)
    const stop = path.join(work, 'race-stop')
    const child = spawn(process.execPath, [script, dest, victim, stop, ...names], { stdio: ['ignore', 'pipe', 'inherit'] })
    attacker = child
    let out = ''
    child.stdout!.on('data', (d: Buffer) => (out += d))
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
    while (!out.includes('ready\n') && child.exitCode === null) await new Promise((r) => setTimeout(r, 20))
    expect(out).toContain('ready\n')

    const outcomes: string[] = []
    for (let round = 0; round < 6; round++) {
      const r = await bfs(['restore', 'gen1', dest, '--overwrite', '--threads', '2'], { repo: rrepo })
      expect(r.stderr).not.toMatch(/INTERNAL|TypeError|at .*\.js:\d+/)
      outcomes.push(`exit ${r.code}, ${r.stderr.split('\n').filter(Boolean).length} warnings`)
      // whatever restore reported, the victim is exactly as it was
      expect(await snapshot(victim)).toBe(before)
    }
    fs.writeFileSync(stop, '')
    expect(await exited).toBe(0)
    const stats = JSON.parse(out.split('\n')[1]!) as { swaps: number; plants: number; rounds: number }
    expect(stats.swaps + stats.plants).toBeGreaterThan(names.length)
    console.log(`race: attacker ${JSON.stringify(stats)}; restores: ${outcomes.join('; ')}`)

    // The attack is over: another restore --overwrite repairs DEST completely.
    await sh(`cd '${dest}' && find . -depth -name '.evil-*' -exec rm -rf {} +`)
    const r = await bfs(['restore', 'gen1', dest, '--overwrite'], { repo: rrepo })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(await diffTree(tsrc, dest)).toBe('')
    expect(await snapshot(victim)).toBe(before)
  })
})

describe('setuid and setgid bits', () => {
  it.skipIf(!IS_ROOT)('a restore by nobody drops them where the owner is not restored, and says so once', async () => {
    const top = tmpdir('bfs-setid-')
    try {
      fs.chmodSync(top, 0o755)
      const s = path.join(top, 'src')
      fs.mkdirSync(path.join(s, 'shared'), { recursive: true })
      for (const [n, mode] of [['su', 0o4755], ['sg', 0o2755], ['plain', 0o755]] as const) {
        fs.writeFileSync(path.join(s, n), '#!/bin/sh\n')
        fs.chmodSync(path.join(s, n), mode)
      }
      fs.chmodSync(path.join(s, 'shared'), 0o2775)
      fs.writeFileSync(path.join(s, 'shared/x'), 'x\n')
      const r = await newRepo(path.join(top, 'repo'))
      expect((await bfs(['backup', s], { repo: r })).code).toBe(0)
      // root restores them as they are
      const asRoot = path.join(top, 'as-root')
      expect((await bfs(['restore', 'gen1', asRoot], { repo: r })).code).toBe(0)
      const modes = async (d: string): Promise<string> => (await sh(`cd '${d}' && stat -c '%n %a %U:%G' su sg plain shared shared/x`)).stdout
      expect(await modes(asRoot)).toBe('su 4755 root:root\nsg 2755 root:root\nplain 755 root:root\nshared 2775 root:root\nshared/x 644 root:root\n')

      // nobody can read the repository and write the destination, not give files to root
      // (and keep its own records of repository locations, as a user does in its home)
      expect((await sh(`chmod -R a+rX '${r}' && mkdir '${top}/out' '${top}/state' && chown nobody:nogroup '${top}/out' '${top}/state'`)).code).toBe(0)
      const dest = path.join(top, 'out/restored')
      const asNobody = await sh(`cd / && BFS_REPO='${r}' BFS_STATE_DIR='${top}/state' setpriv --reuid=nobody --regid=nogroup --clear-groups '${ROOT}/bin/bfs' restore gen1 '${dest}'`)
      expect(await modes(dest)).toBe('su 755 nobody:nogroup\nsg 755 nobody:nogroup\nplain 755 nobody:nogroup\nshared 775 nobody:nogroup\nshared/x 644 nobody:nogroup\n')
      expect(asNobody.stderr).toBe('bfs: warning: 3 files restored without their setuid/setgid bits (their owner could not be restored)\n')
      expect(asNobody.code).toBe(0)
    } finally {
      fs.rmSync(top, { recursive: true, force: true })
    }
  })

  it.skipIf(!IS_ROOT)('root keeps file capabilities (security.capability, which chown clears, is set after it)', async () => {
    const top = tmpdir('bfs-cap-')
    try {
      const s = path.join(top, 'src')
      fs.mkdirSync(s)
      fs.copyFileSync('/bin/true', path.join(s, 'ping'))
      expect((await sh(`setcap cap_net_raw+ep '${s}/ping'`)).code).toBe(0)
      const r = await newRepo(path.join(top, 'repo'))
      expect((await bfs(['backup', s], { repo: r })).code).toBe(0)
      const dest = path.join(top, 'dest')
      expect((await bfs(['restore', 'gen1', dest], { repo: r })).code).toBe(0)
      expect((await sh(`getcap '${dest}/ping'`)).stdout).toBe(`${dest}/ping cap_net_raw=ep\n`)
    } finally {
      fs.rmSync(top, { recursive: true, force: true })
    }
  })
})

describe('a restore that fails', () => {
  /** A repository whose only unit is damaged: every file fails, every directory is made. */
  async function brokenRepo(name: string, withEmptyDir: boolean): Promise<string> {
    const s = path.join(work, `${name}-src`)
    for (const d of ['a/b/c', 'd']) fs.mkdirSync(path.join(s, d), { recursive: true })
    if (withEmptyDir) fs.mkdirSync(path.join(s, 'emptydir'))
    for (const f of ['a/b/c/one', 'a/two', 'd/three']) fs.writeFileSync(path.join(s, f), `${f}\n`.repeat(1000))
    const r = await newRepo(path.join(work, `${name}-repo`))
    expect((await bfs(['backup', s], { repo: r })).code).toBe(0)
    const unit = path.join(r, 'gens/00000001/unit-00000000')
    const b = fs.readFileSync(unit)
    b[b.length - 100] ^= 0xff
    fs.writeFileSync(unit, b)
    return r
  }

  it('removes the directories it created that its errors left empty, and says so', async () => {
    const r = await brokenRepo('fail1', true)
    const dest = path.join(work, 'fail1-dest')
    const res = await bfs(['restore', 'gen1', dest], { repo: r })
    // the backup's own empty directory is restored; nothing else is left
    expect((await sh(`cd '${dest}' && find . | sort`)).stdout).toBe('.\n./emptydir\n')
    expect(res.code).toBe(1)
    expect(res.stderr.match(/^bfs: warning: .*: .*corrupt/gm)).toHaveLength(3)
    expect(res.stdout).toBe(`restored gen1 to ${dest}: 9 entries, 0 B, 3 errors; removed 4 directories it had created that the errors left empty\n`)
  })

  it('removes DEST and the parents it created for it when nothing could be restored', async () => {
    const r = await brokenRepo('fail2', false)
    const dest = path.join(work, 'fail2-new/parent/dest')
    const res = await bfs(['restore', 'gen1', dest], { repo: r })
    expect(fs.existsSync(path.join(work, 'fail2-new'))).toBe(false)
    expect(res.code).toBe(1)
    expect(res.stdout).toMatch(/3 errors; removed 7 directories it had created that the errors left empty\n$/)
    // a DEST that was there before stays, and so does what was in it
    const kept = path.join(work, 'fail2-kept')
    fs.mkdirSync(path.join(kept, 'a'), { recursive: true })
    fs.writeFileSync(path.join(kept, 'mine'), 'mine\n')
    const again = await bfs(['restore', 'gen1', kept, '--overwrite'], { repo: r })
    expect(again.code).toBe(1)
    expect(again.stdout).toMatch(/3 errors; removed 3 directories it had created that the errors left empty\n$/)
    expect((await sh(`cd '${kept}' && find . | sort`)).stdout).toBe('.\n./a\n./mine\n')
  })

  it('interrupted (SIGINT), it finishes the files under way, removes the empty directories it made and says what it left', async () => {
    // 40 directories of one 2 MiB file each: five jobs of 16 MiB, so a signal after the
    // first file leaves jobs that never start
    const s = path.join(work, 'int-src')
    let x = 1
    for (let d = 0; d < 40; d++) {
      const dir = path.join(s, `d${String(d).padStart(2, '0')}`)
      fs.mkdirSync(dir, { recursive: true })
      const b = Buffer.alloc(2 << 20)
      for (let i = 0; i < b.length; i += 4) {
        x = (x * 1103515245 + 12345) >>> 0
        b.writeUInt32LE(x, i)
      }
      fs.writeFileSync(path.join(dir, 'file'), b)
    }
    const r = await newRepo(path.join(work, 'int-repo'))
    expect((await bfs(['backup', s], { repo: r })).code).toBe(0)
    const dest = path.join(work, 'int-dest')
    const p = spawnBfs(['restore', 'gen1', dest, '--threads', '1'], r)
    let err = ''
    p.stderr.on('data', (d) => (err += d))
    const exited = new Promise<number | null>((res) => p.once('exit', (code) => res(code)))
    let ended = false
    void exited.then(() => (ended = true))
    while (!ended && !fs.existsSync(path.join(dest, 'd00/file'))) await new Promise((res) => setTimeout(res, 5))
    p.kill('SIGINT')
    const code = await exited
    if (code === 0) return void console.log('interrupt: the restore finished before the signal; nothing to check') // (a fast machine)
    expect(code).toBe(130)
    console.log(`interrupt: ${err.trim()}`)
    expect(err).toMatch(/^bfs: restore interrupted; \d+ files were restored into .*int-dest, without the modes and times of their directories; removed \d+ empty directories it had created\n$/)
    // what is left is whole: every file there is complete, no directory is empty, no temporary names
    const left = (await sh(`cd '${dest}' && find . -type f | sort`)).stdout.split('\n').filter(Boolean)
    expect(left.length).toBeLessThan(40)
    for (const f of left) expect(fs.readFileSync(path.join(dest, f)).equals(fs.readFileSync(path.join(s, f)))).toBe(true)
    expect((await sh(`cd '${dest}' && find . -mindepth 1 -type d -empty`)).stdout).toBe('')
    expect(fs.readdirSync(dest).length).toBe(left.length)
  })
})

describe('one open-unit budget per process (issue 12)', () => {
  // Before: each restore worker kept up to 65 unit files open (then closed them all), so
  // 4 workers could hold 260 descriptors; now the workers share 64 (16 each here).
  it('restore and verify of files of more units than the process may have descriptors: the worker threads share 64 open units', async () => {
    const r = await newRepo(path.join(work, 'repo-fds'))
    const s = path.join(work, 'fds-src')
    fs.mkdirSync(s)
    for (let i = 0; i < 4; i++) expect((await sh(`head -c 24000000 /dev/urandom > '${s}/f${i}'`)).code).toBe(0)
    expect((await bfs(['backup', s, '--unit-blocks', '64', '--frame-blocks', '16'], { repo: r })).code).toBe(0)
    expect(fs.readdirSync(path.join(r, 'gens/00000001')).filter((n) => n.startsWith('unit-')).length).toBeGreaterThan(350)
    const dest = path.join(work, 'fds-dest')
    const res = await sh(`ulimit -n 150; BFS_REPO='${r}' '${BFS}' restore gen1 '${dest}' --threads 4`)
    expect(res.stderr).toBe('')
    expect(res.code).toBe(0)
    expect(await diffTree(s, dest)).toBe('')
    const v = await sh(`ulimit -n 150; BFS_REPO='${r}' '${BFS}' verify gen1`)
    expect(v.stderr).toBe('')
    expect(v.stdout).toMatch(/^ok: gen1 verified/)
  })
})

describe('restore progress', () => {
  // On a terminal: files and bytes done of the totals, rate, ETA and the last file written;
  // nothing on stderr when it is not one (cron, systemd, pipes).
  let psrc: string
  let prepo: string
  beforeAll(async () => {
    psrc = path.join(work, 'progress-src')
    prepo = await newRepo(path.join(work, 'progress-repo'))
    fs.mkdirSync(path.join(psrc, 'many'), { recursive: true })
    // more files than one restore job takes (2000) and more bytes (16 MiB): several updates
    for (let i = 0; i < 2500; i++) fs.writeFileSync(path.join(psrc, 'many', `f${i}`), `file ${i}\n`)
    await sh(`head -c 20M /dev/urandom > '${psrc}/big.bin'`)
    expect((await bfs(['backup', psrc], { repo: prepo })).code).toBe(0)
  })

  it('on a TTY shows done/expected files and bytes, rate, ETA and the current file; nothing when not a TTY', async () => {
    const dest = path.join(work, 'progress-tty')
    // a wide terminal: the whole path fits (at 80 columns it is cut from its start, below)
    // (every update drawn: BFS_TEST_PROGRESS_MS=0 lifts the 5-a-second limit, NODE_ENV=test only)
    const cmd = `stty cols 200; BFS_TEST_PROGRESS_MS=0 BFS_REPO='${prepo}' '${BFS}' restore --threads 1 gen1 '${dest}'`
    const r = await sh(`script -qec ${JSON.stringify(cmd)} /dev/null`)
    expect(r.code).toBe(0)
    // (each line is drawn after a carriage return and ends with ESC[K, erase to the end of the line)
    const screen = r.stdout.split('\r').map((s) => s.replace(/\x1b\[K/g, '').trim())
    const lines = screen.filter((s) => s.startsWith('restoring: '))
    const total = (20 << 20) + [...Array(2500).keys()].reduce((n, i) => n + `file ${i}\n`.length, 0)
    // the totals are known before the first byte: every update says "of 2501 files, of N bytes"
    expect(lines.length).toBeGreaterThanOrEqual(2)
    for (const l of lines) expect(l).toMatch(new RegExp(`^restoring: \\d+/2501 files, [\\d.]+ [KMG]?i?B/${humanBytesRe(total)} \\(\\d+%\\), [\\d.]+ [KMG]?i?B/s`))
    expect(lines[0]).toMatch(/^restoring: 0\/2501 files, 0 B\//)
    expect(lines.some((l) => / \(100%\), .*ETA 0s {2}\S/.test(l) && l.startsWith('restoring: 2501/2501 files'))).toBe(true)
    // the current file: one the restore wrote, relative to the restored root
    const named = lines.map((l) => /ETA \S+ {2}(.+)$/.exec(l)?.[1]).filter((x): x is string => !!x)
    expect(named.length).toBeGreaterThanOrEqual(1)
    for (const n of named) expect(fs.existsSync(path.join(psrc, n))).toBe(true)
    expect(r.stdout).toMatch(/restored gen1 to .*: 2503 entries/)
    expect(await diffTree(psrc, dest)).toBe('')
    // 80 columns: every line fits; a path too long for the room left is cut from its start
    const deep = path.join(work, 'progress-deep-src')
    const long = 'a-directory-with-a-long-name/'.repeat(4)
    fs.mkdirSync(path.join(deep, long), { recursive: true })
    fs.writeFileSync(path.join(deep, long, 'the-file.txt'), 'x\n')
    expect((await bfs(['backup', deep], { repo: prepo })).code).toBe(0)
    const c80 = `stty cols 80; BFS_TEST_PROGRESS_MS=0 BFS_REPO='${prepo}' '${BFS}' restore --threads 1 gen2 '${path.join(work, 'progress-80')}'`
    const r80 = await sh(`script -qec ${JSON.stringify(c80)} /dev/null`)
    expect(r80.code).toBe(0)
    const l80 = r80.stdout.split('\r').map((s) => s.replace(/\n|\x1b\[K/g, '')).filter((s) => s.startsWith('restoring: '))
    for (const l of l80) expect(l.length).toBeLessThanOrEqual(79)
    expect(l80.some((l) => /ETA 0s {2}…[^ ]*-long-name\/the-file\.txt *$/.test(l))).toBe(true)
    // not a terminal: the result line only
    const dest2 = path.join(work, 'progress-pipe')
    const p = await bfs(['restore', '--threads', '1', 'gen1', dest2], { repo: prepo })
    expect(p.code).toBe(0)
    expect(p.stderr).toBe('')
    expect(p.stdout).toMatch(/^restored gen1 to .*\n$/)
  })

  it('verify on a TTY shows units and stored bytes checked of the totals, rate, ETA and the unit; nothing when not a TTY', async () => {
    const cmd = `stty cols 250; BFS_TEST_PROGRESS_MS=0 BFS_REPO='${prepo}' '${BFS}' verify gen1`
    const r = await sh(`script -qec ${JSON.stringify(cmd)} /dev/null`)
    expect(r.code).toBe(0)
    const units = Number(/ok: gen1 verified \((\d+) units?,/.exec(r.stdout)![1])
    expect(units).toBeGreaterThanOrEqual(2)
    const lines = r.stdout.split('\r').map((s) => s.replace(/\n|\x1b\[K/g, '').trim()).filter((s) => s.startsWith('verifying: '))
    expect(lines[0]).toMatch(new RegExp(`^verifying: 0/${units} units, 0 B/`))
    // every unit counted once, the last line at the totals, each naming a unit file that exists
    const done = lines.map((l) => Number(/^verifying: (\d+)\//.exec(l)![1]))
    expect(done).toEqual([...Array(units + 1).keys()])
    expect(lines[units]).toMatch(new RegExp(`^verifying: ${units}/${units} units, (\\S+ \\S+)/\\1 \\(100%\\), \\S+ \\S+/s, ETA 0s {2}/\\S+$`))
    for (const l of lines.slice(1)) expect(fs.existsSync(/ {2}(\/\S+)$/.exec(l)![1]!)).toBe(true)
    const p = await bfs(['verify', 'gen1'], { repo: prepo })
    expect(p.code).toBe(0)
    expect(p.stderr).toBe('')
    expect(p.stdout).toMatch(/^ok: gen1 verified .*\n$/)
  })
})

/** humanBytes(n) as a regular expression. */
function humanBytesRe(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${(i === 0 ? String(n) : v.toFixed(v < 10 ? 2 : 1)).replace('.', '\\.')} ${units[i]}`
}

describe("the workers' frame cache (restore, verify)", () => {
  // a restore after incrementals meets frames of many streams in turn: a cache of one frame
  // decompressed them again and again (2.3x the CPU of a full generation's restore;
  // native-notes/v2-backup.md "Restore after incrementals")
  it('holds 64 MiB of frames per worker, at least 8 MiB, and 256 MiB over the pool at most', () => {
    expect(workerReaderCacheBytes(1)).toBe(64 << 20)
    expect(workerReaderCacheBytes(2)).toBe(64 << 20)
    expect(workerReaderCacheBytes(4)).toBe(64 << 20)
    expect(workerReaderCacheBytes(8)).toBe(32 << 20)
    expect(workerReaderCacheBytes(16)).toBe(16 << 20)
    expect(workerReaderCacheBytes(64)).toBe(8 << 20)
    for (let n = 1; n <= 256; n++) expect(workerReaderCacheBytes(n)).toBeGreaterThanOrEqual(8 << 20)
    for (let n = 4; n <= 32; n++) expect(n * workerReaderCacheBytes(n)).toBeLessThanOrEqual(256 << 20)
  })
})
