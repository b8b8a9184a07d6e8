import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EXIT } from '../src/repo/errors.js'
import { BFS, ROOT, bfs, diffTree, makeTree, newRepo, newRepoF, sh, spawnBfs, statTree, tmpdir } from './helpers.js'

let work: string
let src: string
let repo: string
beforeAll(async () => {
  work = tmpdir()
  src = path.join(work, 'src')
  // the default format (2): its summary JSON (`parent`), listing and messages are format 1's
  repo = await newRepo(path.join(work, 'repo'))
  await makeTree(src)
})
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

describe('backup, list, cat, restore, verify', () => {
  it('backs up every file type and restores an identical tree', async () => {
    const b = await bfs(['backup', src, '--label', 'first', '--json'], { repo })
    expect(b.stderr).toBe('')
    expect(b.code).toBe(0)
    const j = JSON.parse(b.stdout)
    expect(j.generation).toBe('gen1')
    expect(j.parent).toBe(0)
    expect(j.stats.skipped).toBe(0)
    // the 64 MiB sparse file costs almost nothing: only data blocks are read and stored
    expect(j.stats.bytesRead).toBeLessThan(8 << 20)

    const dest = path.join(work, 'restore1')
    const r = await bfs(['restore', 'gen1', dest], { repo })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(await diffTree(src, dest)).toBe('')
    expect(await statTree(dest)).toBe(await statTree(src))
    // xattrs, hard links, holes
    expect((await sh(`cd '${dest}' && getfattr -d -m - --absolute-names hello.txt seq.txt emptydir`)).stdout).toBe((await sh(`cd '${src}' && getfattr -d -m - --absolute-names hello.txt seq.txt emptydir`)).stdout)
    expect(fs.statSync(path.join(dest, 'hello.txt')).ino).toBe(fs.statSync(path.join(dest, 'a/hardlink.txt')).ino)
    expect(fs.statSync(path.join(dest, 'sparse.img')).blocks).toBeLessThan(64)
    // the tree itself compares equal through verify --against, and tar sees the same archive listing
    expect((await bfs(['verify', '--against', dest, 'gen1'], { repo })).code).toBe(0)
    expect((await sh(`cd '${dest}' && tar --sort=name --numeric-owner -cvvf /dev/null .`)).stdout).toBe((await sh(`cd '${src}' && tar --sort=name --numeric-owner -cvvf /dev/null .`)).stdout)
  })

  it('lists generations and directories, and cats files (including odd names)', async () => {
    const g = await bfs(['generations'], { repo })
    expect(g.code).toBe(0)
    expect(g.stdout).toMatch(/^gen1\s+\S+\s+first\s/m)
    expect((await bfs(['ls'], { repo })).stdout).toBe(g.stdout)
    const ls = await bfs(['ls', 'latest:a'], { repo })
    expect(ls.stdout).toMatch(/^lrwxrwxrwx .* link -> \.\.\/hello\.txt$/m)
    expect(ls.stdout).toMatch(/^-rw-r--r-- +2 .* hardlink\.txt$/m)
    expect((await bfs(['cat', 'gen1:seq.txt'], { repo })).out.equals(fs.readFileSync(path.join(src, 'seq.txt')))).toBe(true)
    expect((await bfs(['cat', 'latest:random.bin'], { repo })).out.equals(fs.readFileSync(path.join(src, 'random.bin')))).toBe(true)
    const odd = Buffer.from('odd\nname\xff\xfe.txt', 'latin1')
    expect((await bfs(['ls', 'gen1'], { repo })).out.includes(odd)).toBe(true)
    const sparse = (await bfs(['cat', 'gen1:sparse.img'], { repo })).out
    expect(sparse.length).toBe(64 << 20)
    expect(sparse.equals(fs.readFileSync(path.join(src, 'sparse.img')))).toBe(true)
  })

  it('is incremental: unchanged files are not read, changed files store only changed blocks', async () => {
    await sh(`cd '${src}' && printf 'X' | dd of=random.bin bs=1 seek=1000000 conv=notrunc status=none && echo appended >> seq.txt && echo new > a/new.txt && rm readonly`)
    const b = JSON.parse((await bfs(['backup', src, '--json'], { repo })).stdout)
    expect(b.generation).toBe('gen2')
    expect(b.parent).toBe(1)
    expect(b.stats.newFiles).toBe(1)
    expect(b.stats.changedFiles).toBe(2)
    // one 4 KiB block of random.bin and the tail of seq.txt: far less than the 3 MiB file
    expect(b.stats.storedBytes).toBeLessThan(64 << 10)
    const dest = path.join(work, 'restore2')
    expect((await bfs(['restore', 'latest', dest], { repo })).code).toBe(0)
    expect(await diffTree(src, dest)).toBe('')
    expect(await statTree(dest)).toBe(await statTree(src))
    // the older generation is intact and still restores as it was
    expect((await bfs(['verify', '--against', src, 'gen1'], { repo })).stdout).toMatch(/^M random.bin: .*content differs/m)
    expect((await bfs(['verify', '--all'], { repo })).code).toBe(0)
    const nochange = JSON.parse((await bfs(['backup', src, '--json'], { repo })).stdout)
    expect(nochange.stats.bytesRead).toBe(0)
    expect(nochange.stats.storedBytes).toBe(0)
    expect(nochange.stats.newFiles + nochange.stats.changedFiles).toBe(0)
    // format 2 counts the hard link follower as unchanged (format 1 counted it as neither: files - 1)
    expect(nochange.stats.unchangedFiles).toBe(nochange.stats.files)
  })

  it('verifies a generation of many units, and finds a flipped byte in the last one', async () => {
    // ~50 units: more than the verifier keeps in flight, so a wrongly tracked queue shows
    // (it once closed its worker pool under the last running checks: false failures).
    const r = await newRepo(path.join(work, 'repo-many'))
    expect((await bfs(['backup', src, '--unit-blocks', '16', '--frame-blocks', '8'], { repo: r })).code).toBe(0)
    const ok = await bfs(['verify', 'gen1'], { repo: r })
    expect(ok.stdout + ok.stderr).toMatch(/gen1 verified \((\d+) units/)
    expect(Number(/\((\d+) units/.exec(ok.stdout)![1])).toBeGreaterThan(40)
    expect(ok.code).toBe(0)
    const units = fs.readdirSync(path.join(r, 'gens/00000001')).filter((n) => n.startsWith('unit-')).sort()
    const last = path.join(r, 'gens/00000001', units[units.length - 1]!)
    const b = fs.readFileSync(last)
    b[100] ^= 0xff
    fs.writeFileSync(last, b)
    const bad = await bfs(['verify', 'gen1'], { repo: r })
    expect(bad.code).not.toBe(0)
    expect(bad.stdout.match(/^FAIL /gm)).toHaveLength(1)
    expect(bad.stdout).toContain(`${units[units.length - 1]}: frame 0`)
  })

  it('cats a file of more units than it may have descriptors (96 here, for 115 units; cat keeps at most 64 open)', async () => {
    const r = await newRepo(path.join(work, 'repo-fds'))
    const s = path.join(work, 'fds-src')
    fs.mkdirSync(s)
    expect((await sh(`head -c 30000000 /dev/urandom > '${s}/big'`)).code).toBe(0)
    expect((await bfs(['backup', s, '--unit-blocks', '64', '--frame-blocks', '16'], { repo: r })).code).toBe(0)
    expect(fs.readdirSync(path.join(r, 'gens/00000001')).filter((n) => n.startsWith('unit-')).length).toBeGreaterThan(100)
    const c = await sh(`ulimit -n 96; BFS_REPO='${r}' '${BFS}' cat gen1:big | cmp - '${s}/big' && echo same`)
    expect(c.stderr).toBe('')
    expect(c.stdout).toBe('same\n')
  })

  it('one compression worker given several units at once writes each of them intact (an image with --threads 1, so the spare buffer queues a second unit on it)', async () => {
    // A worker once awaited its store between compressing a unit into its reused buffer and
    // writing it: the next queued unit overwrote the buffer, and units were stored with
    // another unit's frames (caught only by reading them back).
    const r = await newRepo(path.join(work, 'repo-one-worker'))
    const img = path.join(work, 'one-worker.img')
    expect((await sh(`head -c 12000000 /dev/urandom > '${img}'`)).code).toBe(0)
    const b = await bfs(['backup', '--volume', img, '--threads', '1', '--unit-blocks', '64', '--frame-blocks', '16'], { repo: r })
    expect(b.code, b.stderr).toBe(0)
    expect(fs.readdirSync(path.join(r, 'gens/00000001')).filter((n) => n.startsWith('unit-')).length).toBeGreaterThan(40)
    expect((await bfs(['verify', 'gen1'], { repo: r })).code).toBe(0)
    expect((await bfs(['cat', 'gen1'], { repo: r })).out.equals(fs.readFileSync(img))).toBe(true)
  })

  it('restores a subtree and a single file, and refuses to overwrite', async () => {
    const dest = path.join(work, 'partial')
    expect((await bfs(['restore', 'latest:a', dest], { repo })).code).toBe(0)
    expect(await diffTree(`${src}/a`, dest)).toBe('')
    const again = await bfs(['restore', 'gen1:a', dest], { repo })
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/^bfs: restore would overwrite .*use --overwrite/)
    expect((await bfs(['restore', 'gen1:a', dest, '--overwrite'], { repo })).code).toBe(0)
    expect((await bfs(['restore', 'gen1:a', path.join(work, 'no/such/parent/a')], { repo })).code).toBe(0)
    const one = path.join(work, 'one')
    fs.mkdirSync(one)
    expect((await bfs(['restore', 'gen1:seq.txt', one], { repo })).code).toBe(0)
    expect(fs.readFileSync(path.join(one, 'seq.txt')).length).toBeGreaterThan(0)
  })

  it('keeps the repository out of its own backup (the directories its store occupies), and a mount out of the repository', async () => {
    const s = path.join(work, 'self')
    fs.mkdirSync(path.join(s, 'd'), { recursive: true })
    fs.writeFileSync(path.join(s, 'd/f'), 'x')
    const r = path.join(s, 'repo')
    expect((await bfs(['init'], { repo: r })).code).toBe(0)
    expect((await bfs(['backup', s], { repo: r })).code).toBe(0)
    expect((await bfs(['backup', s], { repo: r })).code).toBe(0)
    const ls = await bfs(['ls', 'latest:'], { repo: r })
    expect(ls.code).toBe(0)
    expect(ls.stdout).toMatch(/ d\n/)
    expect(ls.stdout).not.toMatch(/repo/)
    fs.mkdirSync(path.join(r, 'mnt'))
    const m = await bfs(['mount', 'latest', path.join(r, 'mnt')], { repo: r })
    expect(m.code).toBe(1)
    expect(m.stderr).toMatch(/^bfs: mount point .*mnt overlaps the repository .*\n$/)
  })

  it('honours --exclude', async () => {
    const r = await newRepo(path.join(work, 'repo-ex'))
    expect((await bfs(['backup', src, '--exclude', '*.bin', '--exclude', '/a/b', '--json'], { repo: r })).code).toBe(0)
    const ls = (await bfs(['ls', 'latest'], { repo: r })).stdout
    expect(ls).not.toMatch(/random\.bin/)
    expect((await bfs(['ls', 'latest:a'], { repo: r })).stdout).not.toMatch(/ b$/m)
    expect((await bfs(['ls', 'latest:a/b'], { repo: r })).code).toBe(1)
  })
})

describe('bad input gets one clear line and a documented exit code', () => {
  it('missing source, not a repository, unknown generation, usage', async () => {
    const r = await newRepo(path.join(work, 'repo-bad'))
    const miss = await bfs(['backup', path.join(work, 'nope')], { repo: r })
    expect(miss.code).toBe(1)
    expect(miss.stderr).toBe(`bfs: source ${path.join(work, 'nope')} does not exist\n`)
    const notRepo = await bfs(['generations'], { repo: src })
    expect(notRepo.code).toBe(6)
    expect(notRepo.stderr).toMatch(/^bfs: .* is not a bfs repository .*\n$/)
    expect((await bfs(['restore', 'gen99', path.join(work, 'x')], { repo })).stderr).toMatch(/^bfs: no generation gen99/)
    // a malformed generation name is a usage error (exit 2), one line
    const bogus = await bfs(['restore', 'bogus', path.join(work, 'x')], { repo })
    expect(bogus.code).toBe(2)
    expect(bogus.stderr).toBe("bfs: 'bogus' is not a generation (use genN, N, latest or latest~K)\n")
    expect((await bfs(['backup'], { repo })).code).toBe(2)
    expect((await bfs(['frobnicate'], { repo })).code).toBe(2)
    const help = await bfs(['--help'])
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/Exit status:[\s\S]*5 +the repository is locked/)
    // every code of EXIT is listed
    for (const code of Object.values(EXIT)) expect(help.stdout, `exit ${code}`).toMatch(new RegExp(`\n  ${code} +\\S`))
  })

  it('a foreign or corrupt metadata file is named in the error', async () => {
    const r = await newRepoF(1, path.join(work, 'repo-corrupt')) // format 1's catalog
    expect((await bfs(['backup', path.join(src, 'a')], { repo: r })).code).toBe(0)
    const cat = path.join(r, 'gens/00000001/catalog')
    const buf = fs.readFileSync(cat)
    buf[buf.length - 5] ^= 0x40
    fs.chmodSync(cat, 0o644)
    fs.writeFileSync(cat, buf)
    const res = await bfs(['ls', 'gen1'], { repo: r })
    expect(res.code).toBe(6)
    expect(res.stderr).toBe(`bfs: ${cat}: does not match its manifest (corrupt or replaced)\n`)
    fs.writeFileSync(path.join(r, 'config'), 'hello')
    expect((await bfs(['generations'], { repo: r })).stderr).toMatch(/config: 5 bytes, too short for a bfs file/)
  })

  it('unreadable files and directories are skipped, listed, and give exit 3', async () => {
    // Run as an unprivileged user: root can read everything.
    const base = fs.mkdtempSync('/var/tmp/bfs-nobody-')
    fs.chmodSync(base, 0o755)
    const s = path.join(base, 'src')
    fs.mkdirSync(s)
    fs.writeFileSync(path.join(s, 'ok'), 'ok')
    fs.writeFileSync(path.join(s, 'secret'), 'secret')
    fs.chmodSync(path.join(s, 'secret'), 0o000)
    fs.mkdirSync(path.join(s, 'locked'))
    fs.writeFileSync(path.join(s, 'locked/f'), 'f')
    fs.chmodSync(path.join(s, 'locked'), 0o000)
    await newRepo(path.join(base, 'repo'), 65534)
    const u = await sh(`BFS_REPO='${base}/repo' setpriv --reuid=65534 --regid=65534 --clear-groups '${BFS}' backup '${s}'; echo "exit=$?"`)
    fs.rmSync(base, { recursive: true, force: true })
    expect(u.stderr).toMatch(/skipped locked: cannot list directory \(EACCES\)/)
    expect(u.stderr).toMatch(/skipped secret: cannot open \(EACCES\)/)
    expect(u.stdout).toMatch(/1 new, 0 changed, 0 unchanged, 2 skipped/)
    expect(u.stdout).toMatch(/skipped:\n( +(secret|locked)\n){2}/)
    expect(u.stdout).toMatch(/ secret\n/)
    expect(u.stdout).toMatch(/ locked\n/)
    expect(u.stdout).toMatch(/exit=3/)
  })

  it('a file that changes while it is read is detected and warned about', async () => {
    const s = path.join(work, 'src-changing')
    fs.mkdirSync(s)
    await sh(`head -c 300000000 /dev/zero | tr '\\0' 'x' > '${s}/big'`)
    // a writer that keeps changing the file for the whole backup
    const writer = (await sh(`(while true; do printf y | dd of='${s}/big' bs=1 seek=$((RANDOM * 9000)) conv=notrunc status=none; done) >/dev/null 2>&1 & echo $!`)).stdout.trim()
    try {
      const r = await bfs(['backup', s, '--json'], { repo: await newRepo(path.join(work, 'repo-changing')) }) // the default format (2)
      expect(r.code).toBe(0)
      expect(r.stderr).toMatch(/^bfs: warning: big changed while it was read; its copy may be inconsistent/m)
    } finally {
      await sh(`kill ${writer}`)
    }
    // it is read again next time, because its recorded times are those from before the read
    const again = JSON.parse((await bfs(['backup', s, '--json'], { repo: path.join(work, 'repo-changing') })).stdout)
    expect(again.stats.changedFiles).toBe(1)
  })

  it('--wait waits for a live writer; a bounded wait gives up with exit 5', async () => {
    const r = path.join(work, 'repo-wait')
    expect((await bfs(['init', '--format', '1'], { repo: r })).code).toBe(0) // format 1's writer lock (format 2 backups take none)
    // A live writer: a detached process that lives until this test lets it go. (It used to
    // sleep 3 s, and on a loaded machine it could be gone before bfs even looked at it.)
    const holderProc = spawn('sleep', ['600'], { detached: true, stdio: 'ignore' })
    const holderGone = new Promise((res) => holderProc.once('exit', res))
    try {
      const host = (await import('node:os')).hostname()
      fs.writeFileSync(path.join(r, 'lock'), JSON.stringify({ pid: holderProc.pid, host, time: 'now', command: 'test holder' }))
      const t0 = Date.now()
      const short = await bfs(['backup', path.join(src, 'a'), '--wait', '1'], { repo: r })
      expect(short.code).toBe(5)
      // it said it was waiting, and for whom, then gave up
      expect(short.stderr).toMatch(/^bfs: repository .* is locked by pid \d+ .*test holder.*; waiting for it up to 1 s \(--wait\)\n/)
      expect(short.stderr).toMatch(/^bfs: repository .* is still locked by pid \d+ .*test holder.* after 1 s \(--wait\)$/m)
      expect(Date.now() - t0).toBeGreaterThanOrEqual(900)
      // an unbounded wait: it is still waiting once it has said so, and it commits once the
      // holder is gone
      const long = spawnBfs(['backup', path.join(src, 'a'), '--wait'], r)
      const longExit = new Promise<number | null>((res) => long.once('exit', (code) => res(code)))
      let longErr = ''
      long.stderr.on('data', (d: Buffer) => (longErr += d.toString()))
      for (let i = 0; i < 3000 && !longErr.includes('waiting for it') && long.exitCode === null; i++) await new Promise((res) => setTimeout(res, 20))
      expect(longErr).toMatch(/^bfs: repository .* is locked by pid \d+ .*test holder.*; waiting for it as long as it takes \(--wait\)\n/)
      expect(long.exitCode).toBe(null)
      holderProc.kill('SIGKILL')
      await holderGone
      expect(await longExit).toBe(0)
      expect(fs.readdirSync(path.join(r, 'manifests'))).toEqual(['gen-00000001'])
    } finally {
      holderProc.kill('SIGKILL')
    }
  })

  it('a second writer fails clearly; --wait waits', async () => {
    const r = path.join(work, 'repo-lock')
    expect((await bfs(['init', '--format', '1'], { repo: r })).code).toBe(0) // format 1's writer lock (format 2 backups take none)
    fs.writeFileSync(path.join(r, 'lock'), JSON.stringify({ pid: process.pid, host: (await import('node:os')).hostname(), time: 'now', command: 'test' }))
    const res = await bfs(['backup', path.join(src, 'a')], { repo: r })
    expect(res.code).toBe(5)
    expect(res.stderr).toMatch(/^bfs: repository .* is locked by pid \d+ .*use --wait/)
    // a stale lock (dead pid on this host) is broken automatically
    fs.writeFileSync(path.join(r, 'lock'), JSON.stringify({ pid: 999999, host: (await import('node:os')).hostname(), time: 'then', command: 'test' }))
    // the lock's temp file of a writer killed while taking it is litter; a waiting writer's is not
    const host = (await import('node:os')).hostname()
    const dead = path.join(r, 'tmp', `lock-${host}-999999-1`)
    const cut = path.join(r, 'tmp', `lock-${host}-999998-1`) // killed before it was written
    const waiting = path.join(r, 'tmp', `lock-${host}-${process.pid}-2`)
    fs.writeFileSync(dead, JSON.stringify({ pid: 999999, host, time: 'then', command: 'killed' }))
    fs.writeFileSync(cut, '')
    fs.writeFileSync(waiting, JSON.stringify({ pid: process.pid, host, time: 'now', command: 'waiting' }))
    // the store's temporary files (<key>.tmp-HOST-PID-HEX; before: .tmp-PID-HEX) of a writer
    // killed while taking the lock or committing are litter; a live process's are not
    const litter = ['lock.tmp-' + host + '-999999-0badc0de', 'manifests/gen-00000007.tmp-' + host + '-999999-0badc0de', 'manifests/gen-00000008.tmp-999999-0badc0de']
    const live = ['lock.tmp-' + host + '-' + process.pid + '-0badc0de', 'manifests/gen-00000009.tmp-' + host + '-' + process.pid + '-0badc0de', 'manifests/gen-00000009.tmp-other.host-999999-0badc0de']
    for (const n of [...litter, ...live]) fs.writeFileSync(path.join(r, n), '')
    expect((await bfs(['backup', path.join(src, 'a')], { repo: r })).code).toBe(0)
    expect(fs.existsSync(path.join(r, 'lock'))).toBe(false)
    expect(fs.readdirSync(path.join(r, 'tmp'))).toEqual([path.basename(waiting)])
    for (const n of litter) expect(fs.existsSync(path.join(r, n)), n).toBe(false)
    for (const n of live) expect(fs.existsSync(path.join(r, n)), n).toBe(true)
    // an unreadable lock (an older bfs did not fsync it: a power cut) holds while it is fresh,
    // and is broken once it is older than 10 s
    fs.writeFileSync(path.join(r, 'lock'), '')
    const fresh = await bfs(['backup', path.join(src, 'a')], { repo: r })
    expect(fresh.code).toBe(5)
    expect(fresh.stderr).toMatch(/^bfs: repository .* is locked by another process/)
    const old = new Date(Date.now() - 60_000)
    fs.utimesSync(path.join(r, 'lock'), old, old)
    expect((await bfs(['backup', path.join(src, 'a')], { repo: r })).code).toBe(0)
    expect(fs.existsSync(path.join(r, 'lock'))).toBe(false)
  })
})

describe('the command line is strict', () => {
  it('a checkout that was never built says so in one line (exit 1), not with a stack trace', async () => {
    const root = path.join(work, 'unbuilt')
    fs.mkdirSync(path.join(root, 'bin'), { recursive: true })
    fs.copyFileSync(path.join(ROOT, 'bin', 'bfs'), path.join(root, 'bin', 'bfs'))
    fs.chmodSync(path.join(root, 'bin', 'bfs'), 0o755)
    const r = await sh(`'${path.join(root, 'bin', 'bfs')}' --version`)
    expect(r.code).toBe(1)
    expect(r.stderr).toBe(`bfs: not built: run 'make build' in ${root}\n`)
  })
  it('extra operands are a usage error (exit 2) and nothing is backed up', async () => {
    const r = await newRepo(path.join(work, 'repo-strict'))
    // backup takes several sources (issue 17), but not one inside another
    const two = await bfs(['backup', path.join(src, 'a'), src], { repo: r })
    expect(two.code).toBe(2)
    expect(two.stderr).toMatch(/^bfs: sources .* overlap \(one is inside the other\).*\n$/)
    expect(fs.readdirSync(path.join(r, 'manifests'))).toEqual([])
    for (const args of [['ls', 'gen1', 'extra'], ['cat', 'gen1:a', 'b'], ['verify', 'gen1', 'gen2'], ['init', 'somewhere'], ['generations', 'x'], ['restore', 'gen1', path.join(work, 'x'), 'y']]) {
      const res = await bfs(args, { repo: r })
      expect(res.code, args.join(' ')).toBe(2)
      expect(res.stderr, args.join(' ')).toMatch(/^bfs: too many arguments for '[a-z]+'.*\n$/)
    }
  })

  it('only bfs init creates a repository: a typo in --repo or BFS_REPO fails and creates nothing', async () => {
    const typo = path.join(work, 'no-such-repo')
    for (const res of [await bfs(['backup', path.join(src, 'a')], { repo: typo }), await bfs(['--repo', typo, 'backup', path.join(src, 'a')]), await bfs(['group', 'add', 'g', '--include', 'x'], { repo: typo })]) {
      expect(res.code).toBe(6)
      expect(res.stderr).toBe(`bfs: ${typo} is not a bfs repository (no config file; create one with 'bfs init')\n`)
      expect(fs.existsSync(typo)).toBe(false)
    }
    // an existing empty directory is not a repository either until init
    fs.mkdirSync(typo)
    expect((await bfs(['backup', path.join(src, 'a')], { repo: typo })).code).toBe(6)
    expect(fs.readdirSync(typo)).toEqual([])
    expect((await bfs(['init'], { repo: typo })).code).toBe(0)
    expect((await bfs(['backup', path.join(src, 'a')], { repo: typo })).code).toBe(0)
  })

  it('remote repository locations are refused, not made into local directories', async () => {
    for (const loc of ['sftp:backup@host:/srv/repo', 'rest:http://host:8000/', 'alice@host:repo', 'ssh://host/repo']) {
      for (const res of [await bfs(['init'], { repo: loc, cwd: work }), await bfs(['--repo', loc, 'backup', path.join(src, 'a')], { cwd: work })]) {
        expect(res.code, loc).toBe(2)
        expect(res.stderr).toBe(`bfs: remote repositories are not supported ('${loc}'): give a local directory\n`)
      }
    }
    // S3 is bfs's own (issue 18, format 2: test/s3-cli.test.ts); an address of another form (restic's) is a usage error
    for (const loc of ['s3:s3.amazonaws.com/bucket', 's3://bucket/repo']) {
      for (const res of [await bfs(['init'], { repo: loc, cwd: work }), await bfs(['--repo', loc, 'backup', path.join(src, 'a')], { cwd: work })]) {
        expect(res.code, loc).toBe(2)
        expect(res.stderr).toBe(`bfs: ${loc}: not an S3 repository address (s3:http://HOST:PORT/BUCKET[/PREFIX] or s3:https://…)\n`)
      }
    }
    const f1 = await bfs(['init', '--format', '1'], { repo: 's3:https://s3.example.com/bucket', cwd: work })
    expect(f1.code).toBe(2)
    expect(f1.stderr).toBe('bfs: s3:https://s3.example.com/bucket: a repository on S3 is format 2 only: bfs init --format 2\n')
    expect(fs.readdirSync(work).filter((n) => /^(sftp:|s3:|rest:|alice@|ssh:)/.test(n))).toEqual([])
  })

  it('--version and version; usage errors are one line starting with bfs:', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }
    for (const args of [['--version'], ['version']]) {
      const v = await bfs(args)
      expect(v.code).toBe(0)
      expect(v.stdout).toBe(`bfs ${pkg.version}\n`)
    }
    const cases: Array<[string[], RegExp]> = [
      [['--bogus'], /^bfs: unknown option '--bogus' \(see 'bfs --help'\)\n$/],
      [['frobnicate'], /^bfs: unknown command 'frobnicate' \(see 'bfs --help'\)\n$/],
      [['backup'], /^bfs: missing required argument 'src' \(see 'bfs backup --help'\)\n$/],
      [['backup', '--level', '99', src], /^bfs: option '--level <n>' argument '99' is invalid\. --level must be a whole number from 1 to 19 \(see 'bfs backup --help'\)\n$/],
      // decimal digits only: Number() would take '' as 0, '1e1' as 10, '0x10' as 16
      [['backup', '--level', '1e1', src], /^bfs: option '--level <n>' argument '1e1' is invalid\. --level must be a whole number from 1 to 19 \(see 'bfs backup --help'\)\n$/],
      [['backup', '--level', '0x10', src], /^bfs: option '--level <n>' argument '0x10' is invalid\. --level must be a whole number from 1 to 19 \(see 'bfs backup --help'\)\n$/],
      [['backup', '--volume-threshold', '', src], /^bfs: option '--volume-threshold <files>' argument '' is invalid\. --volume-threshold must be a whole number from 0 to \d+ \(see 'bfs backup --help'\)\n$/],
      [['mount'], /^bfs: missing required argument 'gen-or-mountpoint' \(see 'bfs mount --help'\)\n$/],
    ]
    for (const [args, re] of cases) {
      const res = await bfs(args, { repo })
      expect(res.code, args.join(' ')).toBe(2)
      expect(res.stderr, args.join(' ')).toMatch(re)
    }
  })

  it('counts are spelled with the right plural', async () => {
    const r = await newRepoF(1, path.join(work, 'repo-plural'))
    const one = path.join(work, 'plural-src')
    fs.mkdirSync(path.join(one, 'd'), { recursive: true })
    fs.writeFileSync(path.join(one, 'd/f'), 'x')
    const b = await bfs(['backup', one], { repo: r })
    expect(b.stdout).toMatch(/; 1 dir\n/)
    // the default format (2) counts the directories below the source as format 1 does (was: 2 dirs)
    const b2 = await bfs(['backup', one], { repo: await newRepo(path.join(work, 'repo-plural2')) })
    expect(b2.stdout).toMatch(/; 1 dir\n/)
    const rs = await bfs(['restore', 'gen1:d/f', path.join(work, 'plural-out')], { repo: r })
    expect(rs.stdout).toMatch(/: 1 entry, 1 B\n$/)
    const v = await bfs(['verify', 'gen1'], { repo: r })
    expect(v.stdout).toMatch(/\(1 unit, 1 frame, /)
    fs.writeFileSync(path.join(one, 'd/f'), 'y')
    const diff = await bfs(['verify', '--against', one, 'gen1'], { repo: r })
    expect(diff.stdout).toMatch(/^1 difference between gen1/m)
  })
})
