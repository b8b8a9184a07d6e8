import fs from 'node:fs'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { BFS, bfs, FORMATS, newRepo, newRepoF, parentOf, sh, spawnBfs, tmpdir } from './helpers.js'
import { Repository } from '../src/repo/repository.js'
import { GenView } from '../src/vfs/tree.js'

// Volume backups of real ext4 images made with mkfs.ext4 -d (no root needed to build them);
// the loop mount from the bfs mount needs root and loop devices, as in CI.
let work: string
let tree: string
/** A backup summary's source (format 1: `source`; format 2: its one source's path). */
const sourceOf = (j: { source?: string; sources?: Array<{ path: string }> }): string | undefined => j.source ?? j.sources?.[0]?.path
let diskImg: string
const mounts: string[] = []

function overwriteRandomBlocks(file: string, n: number, seed: number): number[] {
  const size = fs.statSync(file).size
  const fd = fs.openSync(file, 'r+')
  const blocks: number[] = []
  let x = seed
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0
    const b = x % (size / 4096)
    blocks.push(b)
    fs.writeSync(fd, randomBytes(4096), 0, 4096, b * 4096)
  }
  fs.closeSync(fd)
  return blocks
}

beforeAll(async () => {
  work = tmpdir('bfs-vol-')
  tree = path.join(work, 'tree')
  for (let d = 0; d < 20; d++) {
    fs.mkdirSync(path.join(tree, `d${d}`), { recursive: true })
    for (let f = 0; f < 20; f++) fs.writeFileSync(path.join(tree, `d${d}`, `f${f}.txt`), `file ${d}/${f}\n`.repeat(200 + d * f))
  }
  fs.writeFileSync(path.join(tree, 'random.bin'), randomBytes(3 << 20))
  diskImg = path.join(work, 'disk.img')
  expect((await sh(`truncate -s 128M '${diskImg}' && mkfs.ext4 -q -F -d '${tree}' '${diskImg}'`)).code).toBe(0)
})
afterAll(async () => {
  // loop mounts first; umount (as root) also removes a bfs mount, whose server then exits by itself
  for (const m of mounts.reverse()) await sh(`umount '${m}' 2>/dev/null || '${BFS}' umount --lazy '${m}' 2>/dev/null || fusermount -uz '${m}' 2>/dev/null`)
  fs.rmSync(work, { recursive: true, force: true })
})

describe('volume backup of an ext4 image', () => {
  for (const fmt of FORMATS) {
    it(`stores used blocks only, skips an unchanged image, stores only changed blocks, and restores byte for byte (format ${fmt})`, async () => {
      const w = fs.mkdtempSync(path.join(work, `f${fmt}-`))
      // (its own copy of the image: the test changes it)
      const img = path.join(w, 'disk.img')
      expect((await sh(`cp --sparse=always '${diskImg}' '${img}'`)).code).toBe(0)
      const repo = await newRepoF(fmt, path.join(w, 'repo'))
      const full = JSON.parse((await bfs(['backup', '--volume', img, '--json'], { repo })).stdout)
      expect(full.kind).toBe('volume')
      expect(full.stats.logicalBytes).toBe(128 << 20)
      // holes are not read, and stored data is far below the image size
      expect(full.stats.bytesRead).toBeLessThan(fs.statSync(img).blocks * 512 + 4096)
      expect(full.stats.storedBytes).toBeLessThan(16 << 20)
      const same = JSON.parse((await bfs(['backup', img, '--json'], { repo })).stdout)
      expect(same.mode).toBe('volume')
      expect(same.modeReason).toMatch(/is an image file/)
      expect(same.stats.bytesRead).toBe(0)
      expect(same.stats.storedBytes).toBe(0)
      const copies: string[] = [path.join(w, 'gen1.img')]
      fs.copyFileSync(img, copies[0]!)
      for (let round = 0; round < 3; round++) {
        overwriteRandomBlocks(img, 10, round + 7)
        const inc = JSON.parse((await bfs(['backup', img, '--json'], { repo })).stdout)
        expect(parentOf(inc)).toBe(inc.id - 1)
        expect(inc.stats.storedBytes).toBeLessThanOrEqual(10 * 4200)
        expect(inc.stats.storedBytes + inc.stats.metaBytes).toBeLessThan(200_000)
        const copy = path.join(w, `gen${inc.id}.img`)
        fs.copyFileSync(img, copy)
        copies.push(copy)
      }
      // every generation restores exactly as the image was, as a sparse file
      const gens = JSON.parse((await bfs(['generations', '--json'], { repo })).stdout) as Array<{ id: number }>
      expect(gens.map((g) => g.id)).toEqual([1, 2, 3, 4, 5])
      for (const [id, copy] of [[1, copies[0]], [3, copies[1]], [5, copies[3]]] as const) {
        const out = path.join(w, `restored-${id}.img`)
        expect((await bfs(['restore', `gen${id}`, out], { repo })).code).toBe(0)
        expect((await sh(`cmp '${copy}' '${out}'`)).code).toBe(0)
        expect(fs.statSync(out).blocks * 512).toBeLessThan(40 << 20)
        expect((await bfs(['cat', `gen${id}`], { repo })).out.equals(fs.readFileSync(copy))).toBe(true)
      }
      expect((await bfs(['verify', '--all'], { repo })).code).toBe(0)
      expect((await bfs(['verify', '--against', img, 'latest'], { repo })).code).toBe(0)
      expect((await bfs(['verify', '--against', img, 'gen1'], { repo })).stdout).toMatch(/content differs/)
      // --base: the difference against an older generation
      const based = JSON.parse((await bfs(['backup', img, '--base', 'gen1', '--json'], { repo })).stdout)
      expect(parentOf(based)).toBe(1)
      expect(based.stats.storedBytes).toBeGreaterThan(20 * 4096)
      const out = path.join(w, 'restored-based.img')
      expect((await bfs(['restore', 'latest', out], { repo })).code).toBe(0)
      expect((await sh(`cmp '${img}' '${out}'`)).code).toBe(0)
    })
  }

  for (const fmt of FORMATS) {
    it(`an incremental keeps long changed runs, zeroed blocks, punched holes and filled holes exact (format ${fmt})`, async () => {
      const w = fs.mkdtempSync(path.join(work, `f${fmt}-`))
      // A synthetic sparse image (not ext4): data and holes placed so that the changes cross
      // read-ahead chunks (4 MiB) and units (--unit-blocks 256 = 1 MiB).
      const repo = await newRepoF(fmt, path.join(w, 'repo-edges'))
      const f = path.join(w, 'edges.img')
      const MiB = 1 << 20
      await sh(`truncate -s 64M '${f}'`)
      const fd = fs.openSync(f, 'r+')
      for (const at of [0, 3, 7, 20, 40]) fs.writeSync(fd, randomBytes(2 * MiB), 0, 2 * MiB, at * MiB)
      fs.closeSync(fd)
      const args = ['--unit-blocks', '256', '--frame-blocks', '32', '--json']
      expect((await bfs(['backup', '--volume', f, ...args], { repo })).code).toBe(0)
      const gen1 = path.join(w, 'edges-gen1.img')
      fs.copyFileSync(f, gen1)
      const fd2 = fs.openSync(f, 'r+')
      fs.writeSync(fd2, randomBytes(5 * MiB), 0, 5 * MiB, 2.5 * MiB) // a long run over data and a hole
      fs.writeSync(fd2, Buffer.alloc(8192), 0, 8192, 20 * MiB + 4096) // data blocks zeroed
      fs.writeSync(fd2, randomBytes(4096), 0, 4096, 30 * MiB) // a block in a former hole
      // new data directly followed by a block zeroed since the base, in one read chunk: the
      // hole must come after the data in the extent list (it once came first, and writing
      // the block map failed)
      fs.writeSync(fd2, randomBytes(4096), 0, 4096, 41.5 * MiB)
      fs.writeSync(fd2, Buffer.alloc(4096), 0, 4096, 41.5 * MiB + 4096)
      fs.closeSync(fd2)
      expect((await sh(`fallocate --punch-hole --offset ${40 * MiB + 8192} --length ${MiB} '${f}'`)).code).toBe(0) // data punched out
      const inc = JSON.parse((await bfs(['backup', '--volume', f, ...args], { repo })).stdout)
      expect(parentOf(inc)).toBe(1)
      expect(inc.generation).toBe('gen2')
      expect(inc.stats.storedBytes).toBeGreaterThan(5 * MiB)
      expect(inc.stats.storedBytes).toBeLessThan(6 * MiB)
      expect((await bfs(['cat', 'gen2'], { repo })).out.equals(fs.readFileSync(f))).toBe(true)
      expect((await bfs(['cat', 'gen1'], { repo })).out.equals(fs.readFileSync(gen1))).toBe(true)
      const out = path.join(w, 'edges-restored.img')
      expect((await bfs(['restore', 'gen2', out], { repo })).code).toBe(0)
      expect((await sh(`cmp '${f}' '${out}'`)).code).toBe(0)
      // unchanged content after a touch: read again, nothing stored, the base object kept
      await sh(`touch '${f}'`)
      const again = JSON.parse((await bfs(['backup', '--volume', f, ...args], { repo })).stdout)
      expect(again.stats.bytesRead).toBeGreaterThan(0)
      expect(again.stats.storedBytes).toBe(0)
      expect((await bfs(['verify', '--all'], { repo })).code).toBe(0)
    })
  }

  it('keeps the stored stream in phase with the image (stream block = file block, modulo the frame) across scattered zero blocks; zeros stay holes', async () => {
    const img = path.join(work, 'phase.img')
    const data = randomBytes(1200 * 4096)
    const zeroAt = [3, 4, 100, 101, 102, 333, 500, 640, 641, 700]
    for (const b of zeroAt) data.fill(0, b * 4096, (b + 1) * 4096)
    data.fill(0, 800 * 4096, 870 * 4096) // a run longer than a 32-block frame
    fs.writeFileSync(img, data)
    const repo = await newRepoF(1, path.join(work, 'repo-phase')) // format 1: read back through format 1's Repository and GenView
    const r = await bfs(['backup', img, '--volume', '--frame-blocks', '32', '--unit-blocks', '256'], { repo })
    expect(r.code, r.stderr).toBe(0)
    const rp = Repository.open(repo)
    const man = rp.manifest(1)
    expect(man.frameBlocks).toBe(32)
    const v = new GenView(rp, man)
    const i = v.lookup(Buffer.from('/phase.img'))
    expect(i).toBeGreaterThanOrEqual(0)
    const ext = v.extents(i).filter((e) => e.gen !== 0)
    expect(ext.length).toBeGreaterThan(1)
    for (const e of ext) expect((((e.streamBlock - e.fileBlock) % 32) + 32) % 32, JSON.stringify(e)).toBe(0)
    // the zero blocks are holes: no extent covers them
    const covered = new Set<number>()
    for (const e of ext) for (let b = e.fileBlock; b < e.fileBlock + e.count; b++) covered.add(b)
    for (const b of [...zeroAt, 800, 835, 869]) expect(covered.has(b), `block ${b}`).toBe(false)
    expect(covered.size).toBe(1200 - zeroAt.length - 70)
    expect((await sh(`${BFS} --repo ${repo} cat gen1:phase.img | cmp - ${img}`)).code).toBe(0)
    expect((await bfs(['verify'], { repo })).code).toBe(0)
  }, 120_000)

  for (const fmt of FORMATS) {
    it(`mounts as one file of the full size with holes, which mount -o loop,ro shows as the filesystem was (format ${fmt})`, async () => {
      const w = fs.mkdtempSync(path.join(work, `f${fmt}-`))
      const r = await newRepoF(fmt, path.join(w, 'repo-mount'))
      const clean = path.join(w, 'clean.img')
      expect((await sh(`truncate -s 128M '${clean}' && mkfs.ext4 -q -F -d '${tree}' '${clean}'`)).code).toBe(0)
      expect((await bfs(['backup', '--volume', clean], { repo: r })).code).toBe(0)
      const mnt = path.join(w, 'mnt')
      fs.mkdirSync(mnt)
      const m = await bfs(['mount', 'gen1', mnt], { repo: r })
      expect(m.code).toBe(0)
      mounts.push(mnt)
      expect((await sh(`ls '${mnt}'`)).stdout).toBe('clean.img\n')
      expect((await sh(`stat -c '%s' '${mnt}/clean.img'`)).stdout).toBe(`${128 << 20}\n`)
      expect(Number((await sh(`du -k '${mnt}/clean.img'`)).stdout.split('\t')[0])).toBeLessThan(20_000)
      expect((await sh(`cmp '${mnt}/clean.img' '${clean}'`)).code).toBe(0)
      const fsdir = path.join(w, 'loop')
      fs.mkdirSync(fsdir)
      const lm = await sh(`mount -o loop,ro '${mnt}/clean.img' '${fsdir}'`)
      if (lm.code === 0) mounts.push(fsdir)
      expect(lm.code).toBe(0)
      try {
        expect((await sh(`diff -r -x lost+found '${fsdir}' '${tree}'`)).stdout).toBe('')
      } finally {
        expect((await sh(`umount '${fsdir}'`)).code).toBe(0)
        mounts.pop()
      }
      // the loop device lets go of the image on its last close (udev may still hold it briefly)
      expect((await sh(`for i in $(seq 1200); do [ -z "$(losetup -j '${mnt}/clean.img')" ] && break; sleep 0.05; done; losetup -j '${mnt}/clean.img'`)).stdout).toBe('')
      expect((await bfs(['umount', mnt])).code).toBe(0)
      mounts.pop()
    })
  }

  for (const fmt of FORMATS) {
    it(`auto mode: a mounted block-device filesystem with more files than the threshold is backed up as its device (format ${fmt})`, async () => {
      const w = fs.mkdtempSync(path.join(work, `f${fmt}-`))
      const r = await newRepoF(fmt, path.join(w, 'repo-auto'))
      const dev = path.join(w, 'auto.img')
      expect((await sh(`truncate -s 64M '${dev}' && mkfs.ext4 -q -F -d '${tree}' '${dev}'`)).code).toBe(0)
      const mp = path.join(w, 'automnt')
      fs.mkdirSync(mp)
      expect((await sh(`mount -o loop,ro '${dev}' '${mp}'`)).code).toBe(0)
      mounts.push(mp)
      try {
        const asVolume = JSON.parse((await bfs(['backup', mp, '--volume-threshold', '100', '--json'], { repo: r })).stdout)
        expect(asVolume.mode).toBe('volume')
        expect(asVolume.modeReason).toMatch(/is the root of \/dev\/loop\d+ \(ext4\) with \d+ files, more than 100/)
        expect(sourceOf(asVolume)).toMatch(/^\/dev\/loop\d+$/)
        const asFiles = JSON.parse((await bfs(['backup', mp, '--json'], { repo: r })).stdout)
        expect(asFiles.mode).toBe('file')
        expect(asFiles.modeReason).toMatch(/holds \d+ files, not more than 100000/)
        const forced = JSON.parse((await bfs(['backup', mp, '--mode', 'file', '--volume-threshold', '1', '--json'], { repo: r })).stdout)
        expect(forced.mode).toBe('file')
        // the device volume restores to an image identical to what is on the device, which is
        // auto.img itself (a read-only ext4 mount rewrites its journal superblock, but only in
        // the device's page cache, which bfs does not read: a buffered read would differ)
        const out = path.join(w, 'auto-restored.img')
        expect((await bfs(['restore', `gen${asVolume.id}`, out], { repo: r })).code).toBe(0)
        expect((await sh(`dd if='${sourceOf(asVolume)}' iflag=direct bs=1M status=none | cmp - '${out}'`)).code).toBe(0)
        expect((await sh(`cmp '${out}' '${dev}'`)).code).toBe(0)
        expect(asVolume.consistency).toBe('read-only')
      } finally {
        await sh(`umount '${mp}'`)
        mounts.pop()
      }
    })
  }

  for (const fmt of FORMATS) {
    it(`bad input: unreadable device, size changing during the backup, an image that shrinks (format ${fmt})`, async () => {
      const w = fs.mkdtempSync(path.join(work, `f${fmt}-`))
      const r = await newRepoF(fmt, path.join(w, 'repo-bad'))
      const ro = path.join(w, 'private.img')
      fs.writeFileSync(ro, randomBytes(1 << 20))
      fs.chmodSync(ro, 0o600)
      fs.chmodSync(work, 0o755)
      fs.chmodSync(w, 0o755)
      await newRepoF(fmt, path.join(w, 'nobody-repo'), 65534)
      const u = await sh(`BFS_REPO='${w}/nobody-repo' setpriv --reuid=65534 --regid=65534 --clear-groups '${BFS}' backup --volume '${ro}'; echo "exit=$?"`)
      expect(u.stderr).toMatch(/^bfs: cannot read .*private\.img: permission denied$/m)
      expect(u.stdout).toMatch(/exit=1/)
      // a file that grows while it is read: the backup fails cleanly and commits nothing
      const grow = path.join(w, 'grow.img')
      fs.writeFileSync(grow, randomBytes(64 << 20))
      const writer = (await sh(`(for i in $(seq 2000); do head -c 65536 /dev/urandom >> '${grow}'; done) >/dev/null 2>&1 & echo $!`)).stdout.trim()
      const g = await bfs(['backup', '--volume', grow, '--threads', '1', '--level', '9'], { repo: r })
      await sh(`kill ${writer} 2>/dev/null`)
      expect(g.stderr).toMatch(/^bfs: the size of .*grow\.img changed during the backup .*; nothing was committed\n$/)
      expect(g.code).toBe(1)
      expect(JSON.parse((await bfs(['generations', '--json'], { repo: r })).stdout)).toEqual([])
      // an image that shrinks between generations: warned about, stored, restores exactly
      const shrink = path.join(w, 'shrink.img')
      fs.writeFileSync(shrink, randomBytes(2 << 20))
      expect((await bfs(['backup', '--volume', shrink], { repo: r })).code).toBe(0)
      fs.truncateSync(shrink, 1 << 20)
      const s = await bfs(['backup', '--volume', shrink], { repo: r })
      expect(s.code).toBe(0)
      // (format 2: the failed backup's run took id 1, and run ids are never reused)
      expect(s.stderr).toMatch(new RegExp(`shrank from 2097152 to 1048576 bytes since gen${fmt === 1 ? 1 : 2}\\n`))
      const out = path.join(w, 'shrink-restored.img')
      expect((await bfs(['restore', 'latest', out], { repo: r })).code).toBe(0)
      expect((await sh(`cmp '${out}' '${shrink}'`)).code).toBe(0)
      // not a device or image
      expect((await bfs(['backup', '--volume', tree], { repo: r })).stderr).toMatch(/is not a block device or an image file/)
    })
  }
})

// Block devices: loop devices over ext4 images, mounted read-write as a user's disk would
// be. Everything a test sets up is undone in afterEach, even when it fails: a frozen
// filesystem is thawed first (a frozen one left behind blocks every writer to it, and
// sync(2) machine-wide), then unmounted, then its loop device detached; bfs processes a
// test started are killed.
const loops: string[] = []
const devMounts: string[] = []
const children: ChildProcess[] = []
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  for (const m of devMounts.splice(0).reverse()) await sh(`fsfreeze -u '${m}' 2>/dev/null; umount '${m}' 2>/dev/null || umount -l '${m}'`)
  for (const l of loops.splice(0).reverse()) await sh(`losetup -d '${l}'`)
})

/**
 * A new ext4 image of `mib` MiB, attached to a loop device and mounted read-write at a new
 * directory. The filesystem writes nothing on its own once synced, so that what a test
 * compares stays put: its inode tables and journal are zeroed by mkfs (not by a kernel
 * thread after mounting) and reading a file does not update its atime.
 */
async function mountedExt4(name: string, mib = 64): Promise<{ image: string; dev: string; mp: string }> {
  const image = path.join(work, `${name}.img`)
  const mp = path.join(work, `${name}-mnt`)
  fs.mkdirSync(mp)
  expect((await sh(`truncate -s ${mib}M '${image}' && mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 '${image}'`)).code).toBe(0)
  const dev = (await sh(`losetup -f --show '${image}'`)).stdout.trim()
  expect(dev).toMatch(/^\/dev\/loop\d+$/)
  loops.push(dev)
  expect((await sh(`mount -o noatime '${dev}' '${mp}'`)).code).toBe(0)
  devMounts.push(mp)
  return { image, dev, mp }
}

/** Loop-mounts an image at a new directory with the given options; the mount(8) result. */
async function loopMount(image: string, opts: string): Promise<{ code: number; stderr: string; mp: string }> {
  const mp = fs.mkdtempSync(path.join(work, 'lm-'))
  const r = await sh(`mount -o loop,${opts} '${image}' '${mp}'`)
  if (r.code === 0) devMounts.push(mp)
  return { code: r.code, stderr: r.stderr, mp }
}

async function unmount(mp: string): Promise<void> {
  expect((await sh(`umount '${mp}'`)).code).toBe(0)
  devMounts.splice(devMounts.indexOf(mp), 1)
}

async function waitFor<T>(what: string, probe: () => T | null | undefined | false | Promise<T | null | undefined | false>, ms = 300_000): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = await probe()
    if (v) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Pids of freeze watchdogs holding the filesystem mounted at mp (argv: node …/freeze-watchdog.js MS DEV=MP). */
function watchdogs(mp: string): number[] {
  const out: number[] = []
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue
    let argv: string[]
    try {
      argv = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0')
    } catch {
      continue
    }
    if (argv[1]?.endsWith('freeze-watchdog.js') && argv.some((a) => a.endsWith(`=${mp}`))) out.push(Number(p))
  }
  return out
}

const procState = (pid: number): string | null => {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0] ?? null
  } catch {
    return null
  }
}

/**
 * Waits until the filesystem at mp is frozen, seen from outside: a writer started there
 * stays blocked in the kernel (state D) instead of finishing. Returns that writer, still
 * blocked, and its exit promise: it finishes when the filesystem is thawed.
 */
async function blockedWriter(mp: string): Promise<{ child: ChildProcess; done: Promise<number | null> }> {
  for (;;) {
    if (watchdogs(mp).length === 0) throw new Error(`no freeze watchdog holds ${mp}: bfs thawed before the test saw it frozen`)
    const child = spawn('sh', ['-c', `echo probe > '${mp}/.probe'`], { stdio: 'ignore' })
    const done = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
    let blocked = 0
    while (child.exitCode === null && blocked < 15) {
      await new Promise((r) => setTimeout(r, 20))
      blocked = procState(child.pid!) === 'D' ? blocked + 1 : 0
    }
    if (blocked >= 15) return { child, done }
    await done // it could write: not frozen yet
  }
}

const exitOf = (p: ChildProcess): Promise<{ code: number | null; stderr: string }> => {
  let stderr = ''
  p.stderr!.on('data', (b: Buffer) => (stderr += b))
  return new Promise((r) => p.once('close', (code) => r({ code, stderr })))
}

describe('volume backup of a block device', () => {
  for (const fmt of FORMATS) {
    it(`of a mounted ext4 stores what is on the device, not the device page cache (issue 11: the rewritten file came back as zeros) (format ${fmt})`, async () => {
      const { dev, mp } = await mountedExt4(`rw${fmt}`)
      const repo = await newRepoF(fmt, path.join(work, `repo-dev-${fmt}`))
      for (let i = 0; i < 50; i++) fs.writeFileSync(path.join(mp, `f${i}`), randomBytes(20_000 + i * 100))
      await sh('sync')
      const g1 = await bfs(['backup', '--volume', dev], { repo })
      expect(g1.code).toBe(0)
      // rewrite one file and add another: ext4 writes file data to the device directly, past
      // the device's page cache, which still holds what the first backup read there
      const rewritten = Buffer.from('the new content of f7\n'.repeat(500))
      const added = randomBytes(300_000)
      fs.writeFileSync(path.join(mp, 'f7'), rewritten)
      fs.writeFileSync(path.join(mp, 'added'), added)
      await sh('sync')
      // and settle: a freeze checkpoints the journal, so the writeback of journalled metadata
      // to its home blocks (some 30 s after the sync) cannot change the device under the
      // byte-for-byte comparisons below
      expect((await sh(`fsfreeze -f '${mp}' && fsfreeze -u '${mp}'`)).code).toBe(0)
      const g2 = await bfs(['backup', '--volume', dev], { repo })
      expect(g2.code).toBe(0)
      const out = path.join(work, `rw-restored-${fmt}.img`)
      expect((await bfs(['restore', 'latest', out], { repo })).code).toBe(0)
      const m = await loopMount(out, 'ro,noload')
      expect(m.code).toBe(0)
      expect(fs.readFileSync(path.join(m.mp, 'f7')).equals(rewritten)).toBe(true)
      expect(fs.readFileSync(path.join(m.mp, 'added')).equals(added)).toBe(true)
      expect((await sh(`diff -r -x lost+found '${m.mp}' '${mp}'`)).stdout).toBe('')
      await unmount(m.mp)
      // byte for byte what a read that bypasses every cache finds on the device now, and verify agrees
      expect((await sh(`dd if='${dev}' iflag=direct bs=1M status=none | cmp - '${out}'`)).code).toBe(0)
      const v = await bfs(['verify', '--against', dev, 'latest'], { repo })
      expect(v.code, v.stdout + v.stderr).toBe(0)
      // mounted read-write and not frozen: said in the summary and the manifest
      expect(g2.stdout).toMatch(new RegExp(`^  consistency: mounted-rw: ${dev} was mounted read-write at ${mp} and not frozen, so the image is at best crash-consistent: mount it with -o ro,noload \\(ext4\\), or back up with --freeze$`, 'm'))
      const gens = JSON.parse((await bfs(['generations', '--json'], { repo })).stdout) as Array<{ consistency: string }>
      expect(gens.map((g) => g.consistency)).toEqual(['mounted-rw', 'mounted-rw'])
      // (format 2's list marks no incremental: `volume (mounted-rw)`)
      expect((await bfs(['generations'], { repo })).stdout).toMatch(fmt === 1 ? / volume\+ \(mounted-rw\) / : / volume \(mounted-rw\) /)
      // such an image has the journal's needs_recovery flag set: a plain read-only mount refuses it
      expect((await loopMount(out, 'ro')).code).not.toBe(0)
      // mounted read-only, and not mounted at all
      await sh(`mount -o remount,ro '${mp}'`)
      expect(JSON.parse((await bfs(['backup', '--volume', dev, '--json'], { repo })).stdout).consistency).toBe('read-only')
      await unmount(mp)
      const un = await bfs(['backup', '--volume', dev], { repo })
      expect(un.stdout).toMatch(/^  consistency: unmounted \(nothing on \/dev\/loop\d+ was mounted\)$/m)
    })
  }

  for (const fmt of FORMATS) {
    it(`--freeze: the filesystem is frozen while the device is read, the image is clean, and nothing is left frozen (format ${fmt})`, async () => {
      const { dev, mp } = await mountedExt4(`frz${fmt}`)
      const repo = await newRepoF(fmt, path.join(work, `repo-frz-${fmt}`))
      for (let i = 0; i < 50; i++) fs.writeFileSync(path.join(mp, `f${i}`), randomBytes(20_000))
      // not synced: the freeze writes it out. bfs is stopped while the filesystem is frozen: a
      // writer started then blocks, and goes through once bfs, continued, has read the device
      // and thawed it; what it wrote is not in the image
      const p = spawnBfs(['backup', '--volume', '--freeze', '--level', '19', '--threads', '1', dev], repo)
      children.push(p)
      let stdout = ''
      p.stdout!.on('data', (b: Buffer) => (stdout += b))
      const ended = exitOf(p)
      await waitFor('the freeze watchdog', () => watchdogs(mp).length > 0)
      process.kill(p.pid!, 'SIGSTOP')
      const w = await blockedWriter(mp)
      const during = spawn('sh', ['-c', `echo during > '${mp}/during'`], { stdio: 'ignore' })
      const duringDone = new Promise<number | null>((res) => during.once('exit', (code) => res(code)))
      await waitFor('the second writer to block', () => procState(during.pid!) === 'D')
      process.kill(p.pid!, 'SIGCONT')
      const r = await ended
      expect(r.code, r.stderr).toBe(0)
      expect(await w.done).toBe(0) // released by the thaw
      expect(await duringDone).toBe(0)
      expect(fs.readFileSync(path.join(mp, 'during'), 'utf8')).toBe('during\n')
      expect(stdout).toMatch(new RegExp(`^  consistency: frozen \\(the filesystem at ${mp} was frozen while ${dev} was read: the image is clean\\)$`, 'm'))
      expect(watchdogs(mp)).toEqual([])
      expect((await sh(`timeout 20 sh -c "echo after > '${mp}/after'"`)).code).toBe(0)
      const out = path.join(work, `frz-restored-${fmt}.img`)
      expect((await bfs(['restore', 'latest', out], { repo })).code).toBe(0)
      const fsck = await sh(`e2fsck -fn '${out}'`)
      expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0)
      const m = await loopMount(out, 'ro') // no noload needed
      expect(m.code, m.stderr).toBe(0)
      // (.probe: the freeze probes' file, written before the freeze or blocked by it)
      expect((await sh(`diff -r -x lost+found -x after -x during -x .probe '${m.mp}' '${mp}'`)).stdout).toBe('')
      expect(fs.existsSync(path.join(m.mp, 'during'))).toBe(false)
      await unmount(m.mp)
      expect(JSON.parse((await bfs(['generations', '--json'], { repo })).stdout)[0].consistency).toBe('frozen')
      expect((await bfs(['generations'], { repo })).stdout).toMatch(/ volume \(frozen\) /)
    })
  }

  for (const fmt of FORMATS) {
    it(`--freeze: kill -9 of bfs while frozen thaws the filesystem promptly (the watchdog outlives bfs), and a deadline thaws it too (format ${fmt})`, async () => {
      const { dev, mp } = await mountedExt4(`kill${fmt}`)
      const repo = await newRepoF(fmt, path.join(work, `repo-kill-${fmt}`))
      fs.writeFileSync(path.join(mp, 'text'), Buffer.from('compressible text, slowly at level 19\n'.repeat(400_000)))
      // kill -9 while frozen: stop bfs as soon as its watchdog exists (so it cannot thaw), wait
      // until the filesystem is frozen, then kill it
      const p = spawnBfs(['backup', '--volume', '--freeze', '--level', '19', '--threads', '1', dev], repo)
      children.push(p)
      const killed = exitOf(p)
      const [wd] = await waitFor('the freeze watchdog', () => watchdogs(mp).length > 0 && watchdogs(mp))
      process.kill(p.pid!, 'SIGSTOP')
      const w = await blockedWriter(mp)
      process.kill(p.pid!, 'SIGKILL')
      expect((await killed).code).toBe(null)
      expect(await w.done).toBe(0) // the blocked writer went through: thawed
      expect((await sh(`timeout 20 sh -c "echo after > '${mp}/after' && sync -f '${mp}/after'"`)).code).toBe(0)
      await waitFor('the watchdog to exit', () => procState(wd!) === null)
      expect(watchdogs(mp)).toEqual([])
      expect(JSON.parse((await bfs(['generations', '--json'], { repo })).stdout)).toEqual([])
      // the deadline: bfs stopped while frozen is thawed after --freeze-timeout, and fails
      const q = spawnBfs(['backup', '--volume', '--freeze', '--freeze-timeout', '2', '--level', '19', '--threads', '1', dev], repo)
      children.push(q)
      const ended = exitOf(q)
      await waitFor('the freeze watchdog', () => watchdogs(mp).length > 0)
      process.kill(q.pid!, 'SIGSTOP')
      const w2 = await blockedWriter(mp)
      expect(await w2.done).toBe(0) // thawed by the watchdog at the deadline, bfs still stopped
      process.kill(q.pid!, 'SIGCONT')
      const e = await ended
      expect(e.code).toBe(1)
      expect(e.stderr).toBe('bfs: the filesystem was thawed at the --freeze-timeout deadline (2 s) before the device was read; nothing was committed (--freeze-timeout gives it more time)\n')
      expect(watchdogs(mp)).toEqual([])
      expect(JSON.parse((await bfs(['generations', '--json'], { repo })).stdout)).toEqual([])
    })
  }

  for (const fmt of FORMATS) {
    it(`--freeze refuses, in one line and committing nothing: the repository on that filesystem, an unmounted device, an image file, files (format ${fmt})`, async () => {
      const { image, dev, mp } = await mountedExt4(`refuse${fmt}`, 32)
      const inside = await newRepoF(fmt, path.join(mp, 'repo'))
      const r1 = await bfs(['backup', '--volume', '--freeze', dev], { repo: inside })
      expect(r1.stderr).toBe(`bfs: --freeze: the repository ${inside} is on the filesystem of ${dev} (mounted at ${mp}), which could not be written to while frozen\n`)
      expect(r1.code).toBe(1)
      expect(fs.readdirSync(path.join(inside, 'manifests'))).toEqual([])
      const repo = await newRepoF(fmt, path.join(work, `repo-refuse-${fmt}`))
      const r2 = await bfs(['backup', '--freeze', '--mode', 'file', mp], { repo })
      expect(r2.stderr).toMatch(/^bfs: --freeze applies to volume backups of block devices; .* would be backed up as files \(requested\)\n$/)
      expect(r2.code).toBe(1)
      const r3 = await bfs(['backup', '--volume', '--freeze-timeout', '5', dev], { repo })
      expect(r3.stderr).toBe('bfs: --freeze-timeout applies with --freeze\n')
      expect((await bfs(['backup', '--volume', '--freeze', '--freeze-timeout', '0', dev], { repo })).code).toBe(2)
      await unmount(mp)
      const r4 = await bfs(['backup', '--volume', '--freeze', dev], { repo })
      expect(r4.stderr).toBe(`bfs: --freeze: no filesystem on ${dev} is mounted, so there is nothing to freeze\n`)
      const r5 = await bfs(['backup', '--volume', '--freeze', image], { repo })
      expect(r5.stderr).toBe(`bfs: --freeze needs a block device; ${image} is an image file\n`)
      expect(r5.code).toBe(1)
      expect(fs.readdirSync(path.join(repo, 'manifests'))).toEqual([])
      // (format 2: nor a run claimed: the refusals come before the repository is opened)
      if (fmt === 2) expect(fs.readdirSync(path.join(repo, 'runs'))).toEqual([])
    })
  }

  for (const fmt of FORMATS) {
    it(`a filesystem on a slice of the device (a partition, or a loop device over it at an offset) counts as mounted from it, and --freeze freezes it (format ${fmt})`, async () => {
      // The kernel here parses no partition table (CONFIG_MSDOS_PARTITION and
      // CONFIG_EFI_PARTITION unset) and has no device-mapper, so the slice is a loop device
      // over the device from 1 MiB on: writes through it land on the device, like a
      // partition's, and sysfs links it to the device only through its backing file.
      const image = path.join(work, `parted-${fmt}.img`)
      await sh(`truncate -s 48M '${image}'`)
      const dev = (await sh(`losetup -f --show '${image}'`)).stdout.trim()
      loops.push(dev)
      const part = (await sh(`losetup -f --show -o 1048576 '${dev}'`)).stdout.trim()
      expect(part).toMatch(/^\/dev\/loop\d+$/)
      loops.push(part)
      expect((await sh(`mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 '${part}'`)).code).toBe(0)
      const mp = path.join(work, `parted-mnt-${fmt}`)
      fs.mkdirSync(mp)
      expect((await sh(`mount -o noatime '${part}' '${mp}'`)).code).toBe(0)
      devMounts.push(mp)
      fs.writeFileSync(path.join(mp, 'data'), randomBytes(100_000))
      const repo = await newRepoF(fmt, path.join(work, `repo-parted-${fmt}`))
      expect(JSON.parse((await bfs(['backup', '--volume', dev, '--json'], { repo })).stdout).consistency).toBe('mounted-rw')
      const f = await bfs(['backup', '--volume', '--freeze', dev, '--json'], { repo })
      expect(f.code, f.stderr).toBe(0)
      expect(JSON.parse(f.stdout).consistency).toBe('frozen')
      expect(watchdogs(mp)).toEqual([])
      const out = path.join(work, `parted-restored-${fmt}.img`)
      expect((await bfs(['restore', 'latest', out], { repo })).code).toBe(0)
      const p1 = path.join(work, `parted-p1-${fmt}.img`)
      expect((await sh(`dd if='${out}' of='${p1}' bs=1M skip=1 status=none && e2fsck -fn '${p1}'`)).code).toBe(0)
      const m = await loopMount(p1, 'ro')
      expect(m.code, m.stderr).toBe(0)
      expect(fs.readFileSync(path.join(m.mp, 'data')).equals(fs.readFileSync(path.join(mp, 'data')))).toBe(true)
    })
  }

  it('auto mode never picks a device it cannot open: files, and why (issue 11: `bfs backup /` failed with EPERM)', async () => {
    // The filesystem is mounted through a device node in a directory that is then made
    // nodev: the node still stats as a block device and access(2) allows it, but open(2)
    // fails (EACCES), as the root disk of a container or VM may (EPERM).
    const { dev, mp } = await mountedExt4('auto-noopen', 32)
    for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(mp, `f${i}`), `file ${i}\n`)
    const nd = path.join(work, 'nodes')
    fs.mkdirSync(nd)
    const st = fs.statSync(dev)
    const [maj, min] = [Math.floor(st.rdev / 256) & 0xfff, (st.rdev & 0xff) | ((st.rdev >> 12) & ~0xff)]
    const node = path.join(nd, 'disk')
    expect((await sh(`mknod '${node}' b ${maj} ${min}`)).code).toBe(0)
    const mp2 = path.join(work, 'auto-noopen-2')
    fs.mkdirSync(mp2)
    expect((await sh(`mount '${node}' '${mp2}'`)).code).toBe(0) // the same filesystem, its source named by the node
    devMounts.push(mp2)
    expect((await sh(`mount --bind '${nd}' '${nd}' && mount -o remount,bind,nodev '${nd}' '${nd}'`)).code).toBe(0)
    devMounts.push(nd)
    const repo = await newRepo(path.join(work, 'repo-auto-noopen')) // the default format (2): its `mode:` line says why, as format 1's
    const r = await bfs(['backup', mp2, '--volume-threshold', '5'], { repo })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(new RegExp(`^mode: files \\(${mp2} is the root of ${node} \\(ext4\\) with \\d+ files, but ${node} cannot be opened: EACCES\\)$`, 'm'))
    expect((await bfs(['ls', 'latest:f3'], { repo })).code).toBe(0)
  })
})

describe('--one-file-system: filesystems mounted inside the source', () => {
  for (const fmt of FORMATS) {
    it(`are crossed without it; with it each mount point is stored as an empty directory, the other filesystem's root (format ${fmt})`, async () => {
      const src = path.join(work, `ofs-src-${fmt}`)
      fs.mkdirSync(path.join(src, 'a', 'b'), { recursive: true })
      fs.writeFileSync(path.join(src, 'top'), 'top\n')
      fs.writeFileSync(path.join(src, 'a', 'b', 'deep'), 'deep\n')
      // a tmpfs at tmp/, and an ext4 on a loop device at a/disk/ (a level down), each with files
      const tmp = path.join(src, 'tmp')
      fs.mkdirSync(tmp)
      expect((await sh(`mount -t tmpfs -o size=8m,mode=0710 tmpfs '${tmp}'`)).code).toBe(0)
      devMounts.push(tmp)
      fs.mkdirSync(path.join(tmp, 'sub'))
      fs.writeFileSync(path.join(tmp, 'sub', 't1'), 't1\n')
      const image = path.join(work, `ofs-disk-${fmt}.img`)
      expect((await sh(`truncate -s 32M '${image}' && mkfs.ext4 -q -F '${image}'`)).code).toBe(0)
      const dev = (await sh(`losetup -f --show '${image}'`)).stdout.trim()
      expect(dev).toMatch(/^\/dev\/loop\d+$/)
      loops.push(dev)
      const disk = path.join(src, 'a', 'disk')
      fs.mkdirSync(disk)
      expect((await sh(`mount -o noatime '${dev}' '${disk}'`)).code).toBe(0)
      devMounts.push(disk)
      fs.writeFileSync(path.join(disk, 'x'), 'on the disk\n')
      const repo = await newRepoF(fmt, path.join(work, `repo-ofs-${fmt}`))
      const listing = async (gen: number): Promise<string> => {
        const out = path.join(work, `ofs-restored-${fmt}-${gen}`)
        const r = await bfs(['restore', `gen${gen}`, out], { repo })
        expect(r.code, r.stderr).toBe(0)
        return (await sh(`cd '${out}' && find . | LC_ALL=C sort`)).stdout
      }
      const crossed = '.\n./a\n./a/b\n./a/b/deep\n./a/disk\n./a/disk/lost+found\n./a/disk/x\n./tmp\n./tmp/sub\n./tmp/sub/t1\n./top\n'
      // without the option: both are crossed
      const g1 = JSON.parse((await bfs(['backup', src, '--json'], { repo })).stdout)
      expect(g1.stats.files).toBe(4)
      expect(await listing(g1.id)).toBe(crossed)
      // with it: neither; the mount points themselves are kept, empty, with their roots' modes
      const g2r = await bfs(['backup', '--one-file-system', src, '--json'], { repo })
      expect(g2r.code, g2r.stderr).toBe(0)
      const g2 = JSON.parse(g2r.stdout)
      expect(parentOf(g2)).toBe(g1.id)
      expect(g2.stats.files).toBe(2)
      expect(await listing(g2.id)).toBe('.\n./a\n./a/b\n./a/b/deep\n./a/disk\n./tmp\n./top\n')
      expect(fs.statSync(path.join(work, `ofs-restored-${fmt}-${g2.id}`, 'tmp')).mode & 0o7777).toBe(0o710)
      expect((await bfs(['ls', `gen${g2.id}:tmp`, '--json'], { repo })).stdout).toBe('[]\n')
      // an unchanged run with the option: the same; and one without crosses them again
      const g3 = JSON.parse((await bfs(['backup', '--one-file-system', src, '--json'], { repo })).stdout)
      expect(g3.stats.files).toBe(2)
      expect(await listing(g3.id)).toBe('.\n./a\n./a/b\n./a/b/deep\n./a/disk\n./tmp\n./top\n')
      const g4 = JSON.parse((await bfs(['backup', src, '--json'], { repo })).stdout)
      expect(g4.stats.files).toBe(4)
      expect(await listing(g4.id)).toBe(crossed)
    })
  }
})

describe('groups', () => {
  for (const fmt of FORMATS) {
    it(`back up only their files, each on its own chain; bad patterns and empty groups are refused (format ${fmt})`, async () => {
      const r = await newRepoF(fmt, path.join(work, `repo-groups-${fmt}`))
      const s = path.join(work, `gsrc-${fmt}`)
      for (const d of ['dir_A/sub', 'dir_B', 'dir_C', 'dir_D']) fs.mkdirSync(path.join(s, d), { recursive: true })
      for (const f of ['dir_A/a1', 'dir_A/sub/a2', 'dir_B/b1', 'dir_C/c1', 'dir_D/d1', 'dir_D/file_d', 'top']) fs.writeFileSync(path.join(s, f), f)
      expect((await bfs(['group', 'add', 'ac', '--include', 'dir_A/*', '--include', 'dir_C/*', '--exclude', 'dir_D/file_d'], { repo: r })).code).toBe(0)
      expect((await bfs(['group', 'add', 'd', '--include', 'dir_D', '--exclude', 'dir_D/file_d'], { repo: r })).code).toBe(0)
      expect((await bfs(['group', 'ls'], { repo: r })).stdout).toBe('ac\n  include dir_A/*\n  include dir_C/*\n  exclude dir_D/file_d\nd\n  include dir_D\n  exclude dir_D/file_d\n')
      const ac = JSON.parse((await bfs(['backup', '--group', 'ac', s, '--json'], { repo: r })).stdout)
      expect(ac.group).toBe('ac')
      const gac = path.join(work, `g-ac-${fmt}`)
      expect((await sh(`'${BFS}' --repo '${r}' restore gen${ac.id} '${gac}' >/dev/null && cd '${gac}' && find . -type f | sort`)).stdout).toBe('./dir_A/a1\n./dir_A/sub/a2\n./dir_C/c1\n')
      // directories outside the group that hold nothing of it are left out
      expect((await sh(`cd '${gac}' && find . -type d | sort`)).stdout).toBe('.\n./dir_A\n./dir_A/sub\n./dir_C\n')
      const d = JSON.parse((await bfs(['backup', '--group', 'd', s, '--json'], { repo: r })).stdout)
      expect((await bfs(['ls', `gen${d.id}:dir_D`], { repo: r })).stdout).toMatch(/ d1\n$/)
      // a file in several groups; each group's chain is its own, and a backup without --group is on none
      expect((await bfs(['group', 'add', 'all', '--include', '*'], { repo: r })).code).toBe(0)
      expect(JSON.parse((await bfs(['backup', '--group', 'all', s, '--json'], { repo: r })).stdout).stats.files).toBe(7)
      const plain = JSON.parse((await bfs(['backup', s, '--json'], { repo: r })).stdout)
      expect([plain.group, parentOf(plain), plain.stats.files]).toEqual([null, 0, 7])
      fs.appendFileSync(path.join(s, 'dir_A/a1'), '+')
      const ac2 = JSON.parse((await bfs(['backup', '--group', 'ac', s, '--json'], { repo: r })).stdout)
      expect(parentOf(ac2)).toBe(ac.id)
      expect(ac2.stats.changedFiles).toBe(1)
      expect((await bfs(['cat', `gen${ac2.id}:dir_A/a1`], { repo: r })).stdout).toBe('dir_A/a1+')
      // unchanged: format 2 writes no piece and counts no changed directory (the directories left out are not changes)
      const ac3 = JSON.parse((await bfs(['backup', '--group', 'ac', s, '--json'], { repo: r })).stdout)
      expect([parentOf(ac3), ac3.stats.unchangedFiles]).toEqual([ac2.id, 3])
      if (fmt === 2) expect([ac3.stats.pieces, ac3.stats.changedDirs]).toEqual([0, 0])
      expect((await bfs(['generations', '--group', 'ac', '--json'], { repo: r })).stdout).toMatch(new RegExp(`^\\[\\{"generation":"gen${ac.id}".*"gen${ac2.id}".*"gen${ac3.id}"`))
      expect((JSON.parse((await bfs(['generations', '--group', 'ac', '--json'], { repo: r })).stdout) as Array<{ id: number }>).map((g) => g.id)).toEqual([ac.id, ac2.id, ac3.id])
      expect((await bfs(['group', 'show', 'ac'], { repo: r })).stdout).toMatch(new RegExp(`^  gen${ac.id} .* 3 files\n  gen${ac2.id} .* 3 files\n  gen${ac3.id} .* 3 files\n$`, 'm'))
      // refusals
      expect((await bfs(['group', 'add', 'x', '--include', '[ab'], { repo: r })).stderr).toBe("bfs: --include '[ab': unbalanced '['\n")
      expect((await bfs(['group', 'add', 'x', '--include', 'p', '--exclude', 'p'], { repo: r })).stderr).toBe("bfs: pattern 'p' is both included and excluded in group 'x'\n")
      expect((await bfs(['group', 'add', 'x', '--include', '../etc'], { repo: r })).code).toBe(1)
      expect((await bfs(['group', 'add', 'ac', '--include', 'dir_A/*'], { repo: r })).stderr).toMatch(/already in group 'ac'/)
      expect((await bfs(['group', 'add', 'empty', '--include', 'nothing-here*'], { repo: r })).code).toBe(0)
      const e = await bfs(['backup', '--group', 'empty', s], { repo: r })
      expect(e.code).toBe(1)
      expect(e.stderr).toBe(`bfs: group 'empty' matches no files in ${s}; nothing was committed\n`)
      expect((await bfs(['backup', '--group', 'nope', s], { repo: r })).stderr).toMatch(/^bfs: no group 'nope'/)
      expect((await bfs(['backup', '--group', 'ac', '--volume', diskImg], { repo: r })).stderr).toBe(`bfs: --group selects files; ${diskImg} would be backed up as a volume (use --mode file)\n`)
      expect((await bfs(['generations', '--group', 'nope'], { repo: r })).stderr).toMatch(/^bfs: no group 'nope'/)
      expect((await bfs(['group', 'rm', 'empty'], { repo: r })).code).toBe(0)
      expect((await bfs(['group', 'show', 'empty'], { repo: r })).code).toBe(1)
      // nothing was committed by the refused runs
      expect((JSON.parse((await bfs(['generations', '--json'], { repo: r })).stdout) as unknown[]).length).toBe(6)
    })
  }
})
