/**
 * The BI capture engine (native/bilog.c) on real ext4 and xfs filesystems on loop devices:
 * a writer process changes files after T0 in every way it must handle while this process
 * reads them "at T0"; what it reads must equal a copy taken before the writer started. A
 * control run without the engine shows the same reads differ. Also: the watchdog (a SIGKILLed
 * and a SIGSTOPped capturer never leave a writer hanging), coverage (fds and shared mappings
 * open at T0), unsupported filesystems. Needs root and Linux ≥ 6.14; skipped otherwise.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import readline from 'node:readline'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BiCapture, BI_REASON, biReadFileShared, biUnsupportedMessage, xxh64Into } from '../src/native/index.js'
import { BiCause, BiKind, decodeBiLog } from '../src/format/bilog.js'
import { ROOT, sh, sigstop, tmpdir } from './helpers.js'

const IS_ROOT = process.getuid?.() === 0
const [major, minor] = fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').split('.').map(Number)
const HAS_PRECONTENT = major > 6 || (major === 6 && minor >= 14)
const WRITER = path.join(ROOT, 'test', 'fixtures', 'bilog-writer.py')
const CAPTURER = path.join(ROOT, 'test', 'fixtures', 'bilog-capture.mjs')
const xxh64 = (b: Buffer): bigint => {
  const o = Buffer.alloc(8)
  xxh64Into(b, o, 0)
  return o.readBigUInt64LE(0)
}

const work = tmpdir('bfs-bilog-')
const mounts: string[] = []
const loops: string[] = []
const children: ChildProcess[] = []

async function must(cmd: string): Promise<string> {
  const r = await sh(cmd)
  if (r.code !== 0) throw new Error(`${cmd}: ${r.stderr}`)
  return r.stdout
}

/** A fresh filesystem of `type` on a loop device, mounted at work/<name>. */
async function makeFs(type: 'ext4' | 'xfs', name: string): Promise<string> {
  const img = path.join(work, `${name}.img`)
  const mnt = path.join(work, name)
  fs.mkdirSync(mnt, { recursive: true })
  await must(`truncate -s 300M ${img}`)
  await must(type === 'ext4' ? `mkfs.ext4 -q -F ${img}` : `mkfs.xfs -q -f ${img}`)
  const dev = (await must(`losetup --find --show ${img}`)).trim()
  loops.push(dev)
  await must(`mount ${dev} ${mnt}`)
  mounts.push(mnt)
  return mnt
}

/** Files of many sizes with random bytes, and a copy of them (the T0 state) outside the filesystem. */
async function makeFiles(dir: string, copy: string): Promise<string[]> {
  const sizes = [0, 1, 100, 4095, 4096, 4097, 12288, 65536 + 7, 300_000, 1 << 20, 3 * (1 << 20) + 123, 2_500_000]
  fs.mkdirSync(copy, { recursive: true })
  const names: string[] = []
  for (const [i, size] of sizes.entries()) {
    const name = `f${String(i).padStart(2, '0')}`
    await must(`head -c ${size} /dev/urandom > ${path.join(dir, name)}`)
    names.push(name)
  }
  await must(`cp -a ${dir}/. ${copy}/ && sync`)
  return names
}

/** Runs the writer; resolves with its exit code once it has printed "done". */
function startWriter(dir: string, seed: number, ops: number): { done: Promise<number>; progress: () => number } {
  const src = path.join(work, 'cp-source')
  if (!fs.existsSync(src)) fs.writeFileSync(src, Buffer.alloc(123_457, 7))
  const child = spawn('python3', [WRITER, dir, String(seed), String(ops), src], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let lines = 0
  let err = ''
  child.stdout!.on('data', (b: Buffer) => (lines += b.toString().split('\n').length - 1))
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()))
  const done = new Promise<number>((resolve) =>
    child.on('close', (code) => {
      if (code !== 0) console.error(`writer: ${err}`)
      resolve(code ?? -1)
    }),
  )
  return { done, progress: () => lines }
}

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 5))

/** Reads the whole file as at T0 in 64 KiB chunks (marking them read); a null capture reads live. */
async function readFile(cap: BiCapture | null, file: string): Promise<Buffer> {
  const fd = fs.openSync(file, 'r')
  try {
    const parts: Buffer[] = []
    for (let pos = 0; ; ) {
      const buf = Buffer.alloc(65536)
      const n = cap ? cap.readAtT0(fd, buf, 0, buf.length, pos, true) : fs.readSync(fd, buf, 0, buf.length, pos)
      if (n === 0) break
      parts.push(buf.subarray(0, n))
      pos += n
      await tick() // let the writer run between chunks
    }
    return Buffer.concat(parts)
  } finally {
    fs.closeSync(fd)
  }
}

/** Reads every file (some while the writer runs, the rest after it finished); returns name → bytes. */
async function readAll(cap: BiCapture | null, dir: string, names: string[], writer: { done: Promise<number>; progress: () => number }) {
  const order = [...names].sort((a, b) => xxh64(Buffer.from(a + 'x')) < xxh64(Buffer.from(b + 'x')) ? -1 : 1)
  const got = new Map<string, Buffer>()
  for (const name of order.slice(0, order.length / 3)) got.set(name, await readFile(cap, path.join(dir, name)))
  expect(await writer.done).toBe(0)
  for (const name of order.slice(order.length / 3)) got.set(name, await readFile(cap, path.join(dir, name)))
  return got
}

function differences(got: Map<string, Buffer>, copy: string): string[] {
  const out: string[] = []
  for (const [name, bytes] of got) {
    const want = fs.readFileSync(path.join(copy, name))
    if (!bytes.equals(want)) out.push(`${name}: ${bytes.length} bytes, T0 had ${want.length}`)
  }
  return out
}

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  for (const m of mounts.reverse()) await sh(`umount ${m} || umount -l ${m}`)
  for (const d of loops) await sh(`losetup -d ${d}`)
  fs.rmSync(work, { recursive: true, force: true })
})

describe.skipIf(!IS_ROOT || !HAS_PRECONTENT)('BI capture (root, Linux ≥ 6.14)', () => {
  for (const [type, preRead] of [['ext4', true], ['xfs', true], ['ext4', false]] as const) {
    it(`${type}${preRead ? '' : ', small files not read whole'}: files read at T0 equal the copy taken before a writer changed them (and differ without the engine)`, async () => {
      const mnt = await makeFs(type, `${type}-a${preRead ? '' : '-nopre'}`)
      const dir = path.join(mnt, 'tree')
      fs.mkdirSync(dir)
      const copy = path.join(work, `${type}-copy`)
      const names = await makeFiles(dir, copy)
      const logPath = path.join(work, `${type}${preRead ? '' : '-nopre'}.bilog`)

      // with the engine
      const cap = BiCapture.start(mnt, logPath, preRead ? {} : { preReadMax: -1 })
      const info = cap.info()
      expect(info.fifo).toBe(true) // root may ask for SCHED_FIFO
      expect(cap.uncovered()).toEqual([])
      const writer = startWriter(dir, 1, 60)
      const got = await readAll(cap, dir, names, writer)
      const stats = cap.stop()
      expect(differences(got, copy)).toEqual([])
      expect(stats.voidReason).toBe(0)
      expect(stats.images).toBeGreaterThan(0)
      expect(stats.truncates).toBeGreaterThan(0)
      // the files of at most 64 KiB the writer changed before they were read were read whole
      // at its first change, the others logged block by block
      if (preRead) expect(stats.preReads).toBeGreaterThan(0)
      else expect([stats.preReads, stats.preReadBytes]).toEqual([0, 0])
      // the writer did change the files: the live tree no longer matches T0
      const live = new Map(names.map((n) => [n, fs.readFileSync(path.join(dir, n))]))
      expect(differences(live, copy).length).toBeGreaterThan(0)

      // the capture file is what format.md §2.16.1 says, ended cleanly, nothing torn
      const file = decodeBiLog(fs.readFileSync(logPath), xxh64)
      expect(file.tornReason).toBe('')
      expect(file.tornBytes).toBe(0)
      expect(file.ended).toBe(true)
      expect(file.records.length).toBe(stats.records)
      const isPre = (r: { kind: number; cause: number }): boolean => r.kind === BiKind.image && r.cause === BiCause.preRead
      expect(file.records.filter((r) => r.kind === BiKind.image && !isPre(r)).length).toBe(stats.images)
      expect(file.records.filter(isPre).reduce((n, r) => n + r.data.length, 0)).toBe(stats.preReadBytes)
      expect(Number(file.header.t0Sec)).toBe(info.t0Sec)
      expect(file.header.flags & 1).toBe(1)

      // control: the same writer and the same reads without the engine
      await must(`rm -rf ${dir} && mkdir ${dir} && cp -a ${copy}/. ${dir}/`)
      const control = await readAll(null, dir, names, startWriter(dir, 1, 60))
      expect(differences(control, copy).length).toBeGreaterThan(0)
    })
  }

  it('readLive: blocks written after T0 before the read come back as zeros and counted; their images are in the capture file; blocks written after the read are not logged', async () => {
    const mnt = await makeFs('ext4', 'ext4-live')
    const file = path.join(mnt, 'f')
    const t0bytes = Buffer.alloc(16 * 4096)
    for (let i = 0; i < t0bytes.length; i += 4) t0bytes.writeUInt32LE((i * 2654435761) >>> 0, i)
    fs.writeFileSync(file, t0bytes)
    await must('sync')
    const logPath = path.join(work, 'live.bilog')
    const cap = BiCapture.start(mnt, logPath, { preReadMax: -1 }) // (block by block: see the pre-read test)
    try {
      // another process overwrites blocks 2 and 5 (and half of block 9) after T0
      await must(`head -c 4096 /dev/urandom | dd of=${file} bs=4096 seek=2 conv=notrunc status=none && head -c 4096 /dev/urandom | dd of=${file} bs=4096 seek=5 conv=notrunc status=none && head -c 100 /dev/urandom | dd of=${file} bs=1 seek=${9 * 4096 + 50} conv=notrunc status=none`)
      const live = fs.readFileSync(file)
      const fd = fs.openSync(file, 'r')
      const buf = Buffer.alloc(t0bytes.length)
      const [n, zeroed] = cap.readLive(fd, buf, 0, buf.length, 0)
      expect(n).toBe(t0bytes.length)
      expect(zeroed).toBe(3)
      for (let b = 0; b < 16; b++) {
        const got = buf.subarray(b * 4096, (b + 1) * 4096)
        if (b === 2 || b === 5 || b === 9) expect(got.equals(Buffer.alloc(4096)), `block ${b}`).toBe(true)
        else expect(got.equals(live.subarray(b * 4096, (b + 1) * 4096)), `block ${b}`).toBe(true)
      }
      // written after bfs read it: not logged any more
      const before = cap.stats().images
      await must(`head -c 4096 /dev/urandom | dd of=${file} bs=4096 seek=7 conv=notrunc status=none`)
      expect(cap.stats().images).toBe(before)
      fs.closeSync(fd)
    } finally {
      cap.stop()
    }
    // the capture file holds the T0 bytes of exactly the zeroed blocks
    const images = decodeBiLog(fs.readFileSync(logPath), xxh64).records.filter((r) => r.kind === BiKind.image)
    const blocks = new Map<number, Buffer>()
    for (const r of images) for (let i = 0; i * 4096 < r.data.length; i++) blocks.set(Number(r.offset) / 4096 + i, r.data.subarray(i * 4096, (i + 1) * 4096))
    expect([...blocks.keys()].sort((a, b) => a - b)).toEqual([2, 5, 9])
    for (const [b, data] of blocks) expect(data.equals(t0bytes.subarray(b * 4096, (b + 1) * 4096)), `image of block ${b}`).toBe(true)
  })

  it('pre-read: a file of at most 64 KiB is read whole at its first event that may change it (an open for writing, an O_TRUNC open): every read lays its T0 bytes over (none zeroed), its writers raise no more events; a larger file, and one bfs began to read, are logged block by block', async () => {
    const mnt = await makeFs('ext4', 'ext4-pre')
    const t0 = new Map<string, Buffer>()
    const make = (name: string, size: number, seed: number): string => {
      const b = Buffer.alloc(size)
      for (let i = 0; i + 4 <= size; i += 4) b.writeUInt32LE(((i + seed) * 2654435761) >>> 0, i)
      const p = path.join(mnt, name)
      fs.writeFileSync(p, b)
      t0.set(name, b)
      return p
    }
    const small = make('small', 5 * 4096 + 10, 1)
    const trunc = make('trunc', 3 * 4096, 2)
    const big = make('big', 65536 + 4096, 3)
    const part = make('part', 8 * 4096, 4)
    const log = make('log', 2 * 4096, 5)
    await must('sync')
    const logPath = path.join(work, 'pre.bilog')
    const cap = BiCapture.start(mnt, logPath)
    const readAll = (p: string, size: number): [number, number, Buffer] => {
      const fd = cap.openQuiet(p)
      try {
        const buf = Buffer.alloc(size + 4096, 0xee)
        const [n, zeroed] = cap.readLive(fd, buf, 0, buf.length, 0)
        return [n, zeroed, buf.subarray(0, n)]
      } finally {
        fs.closeSync(fd)
      }
    }
    try {
      // appends overwrite nothing: an O_APPEND open and its writes copy nothing
      await must(`echo appended >> ${log}`)
      expect([cap.stats().preReads, cap.stats().preReadBytes, cap.stats().images]).toEqual([0, 0, 0])
      // dd opens the small file for writing (no O_TRUNC): that open is its one event
      const e0 = cap.stats().events
      await must(`head -c 4096 /dev/urandom | dd of=${small} bs=4096 seek=2 conv=notrunc status=none`)
      let st = cap.stats()
      expect([st.preReads, st.preReadBytes, st.images, st.settled, st.events - e0]).toEqual([1, t0.get('small')!.length, 0, 1, 1])
      // its writers raise nothing any more (writes, an append)
      await must(`head -c 8192 /dev/urandom | dd of=${small} bs=4096 seek=3 conv=notrunc status=none && echo y >> ${small}`)
      expect(cap.stats().events).toBe(st.events)
      // read as at T0: its content, none of it zeroed (nothing for the generation's BI log)
      const [n, zeroed, got] = readAll(small, t0.get('small')!.length)
      expect([n, zeroed]).toEqual([t0.get('small')!.length, 0])
      expect(got.equals(t0.get('small')!)).toBe(true)
      expect(fs.readFileSync(small).equals(t0.get('small')!)).toBe(false)

      // an O_TRUNC rewrite: read whole before the truncation
      await must(`echo x > ${trunc}`)
      st = cap.stats()
      expect([st.preReads, st.preReadBytes, st.images]).toEqual([2, t0.get('small')!.length + t0.get('trunc')!.length, 0])
      const [tn, tz, tgot] = readAll(trunc, t0.get('trunc')!.length)
      expect([tn, tz]).toEqual([t0.get('trunc')!.length, 0])
      expect(tgot.equals(t0.get('trunc')!)).toBe(true)

      // over the limit: the written block only, read as zeros (its image goes to the BI log)
      await must(`head -c 4096 /dev/urandom | dd of=${big} bs=4096 seek=3 conv=notrunc status=none`)
      st = cap.stats()
      expect([st.preReads, st.images]).toEqual([2, 1])
      const [bn, bz] = readAll(big, t0.get('big')!.length)
      expect([bn, bz]).toEqual([t0.get('big')!.length, 1])

      // bfs read its first half before the write: block by block
      const pfd = cap.openQuiet(part)
      const pbuf = Buffer.alloc(8 * 4096)
      expect(cap.readLive(pfd, pbuf, 0, 4 * 4096, 0)).toEqual([4 * 4096, 0])
      await must(`head -c 4096 /dev/urandom | dd of=${part} bs=4096 seek=6 conv=notrunc status=none`)
      expect([cap.stats().preReads, cap.stats().images]).toEqual([2, 2])
      expect(cap.readLive(pfd, pbuf, 4 * 4096, 4 * 4096, 4 * 4096)).toEqual([4 * 4096, 1])
      fs.closeSync(pfd)
    } finally {
      cap.stop()
    }
    // the capture file: the two files read whole as cause 7 records of their T0 bytes
    const pre = decodeBiLog(fs.readFileSync(logPath), xxh64).records.filter((r) => r.kind === BiKind.image && r.cause === BiCause.preRead)
    expect(pre.map((r) => [Number(r.offset), r.data.length])).toEqual([[0, t0.get('small')!.length], [0, t0.get('trunc')!.length]])
    expect(pre[0].data.equals(t0.get('small')!)).toBe(true)
    expect(pre[1].data.equals(t0.get('trunc')!)).toBe(true)
  })

  it('settled: once bfs has read a file to its T0 end (every block read or logged), its writers raise no events after the first; a re-read after a change is stale; a file read in part still raises them', async () => {
    const mnt = await makeFs('ext4', 'ext4-settled')
    const whole = path.join(mnt, 'whole')
    const part = path.join(mnt, 'part')
    fs.writeFileSync(whole, Buffer.alloc(8 * 4096, 5))
    fs.writeFileSync(part, Buffer.alloc(8 * 4096, 6))
    await must('sync')
    const cap = BiCapture.start(mnt, path.join(work, 'settled.bilog'), { preReadMax: -1 })
    try {
      // block 3 of whole changes before bfs reads it: logged, read as zeros; the rest read
      await must(`head -c 4096 /dev/urandom | dd of=${whole} bs=4096 seek=3 conv=notrunc status=none`)
      const fd = cap.openQuiet(whole)
      const buf = Buffer.alloc(8 * 4096)
      expect(cap.readLive(fd, buf, 0, 4 * 4096, 0)[0]).toBe(4 * 4096)
      expect(cap.stats().settled).toBe(0) // not at its end yet
      expect(cap.readLive(fd, buf, 4 * 4096, 4 * 4096, 4 * 4096)[0]).toBe(4 * 4096)
      expect(cap.stats().settled).toBe(1)
      const pfd = cap.openQuiet(part)
      expect(cap.readLive(pfd, buf, 0, 4 * 4096, 0)[0]).toBe(4 * 4096) // half of it
      let events = cap.stats().events
      // the first write to the settled file: one event, answered at once (nothing logged), and
      // the file gets its ignore mark
      const images = cap.stats().images
      await must(`head -c 4096 /dev/urandom | dd of=${whole} bs=4096 seek=1 conv=notrunc status=none`)
      expect(cap.stats().events).toBeGreaterThan(events)
      expect(cap.stats().images).toBe(images)
      events = cap.stats().events
      // then writes, an O_TRUNC rewrite and an append: no event at all
      await must(`head -c 8192 /dev/urandom | dd of=${whole} bs=4096 seek=5 conv=notrunc status=none && echo x > ${whole} && echo y >> ${whole}`)
      expect(cap.stats().events).toBe(events)
      // the half-read one still raises them (its unread half must be logged)
      await must(`head -c 4096 /dev/urandom | dd of=${part} bs=4096 seek=6 conv=notrunc status=none`)
      expect(cap.stats().events).toBeGreaterThan(events)
      // the settled file changed behind the capture's back: reading it again is refused
      expect(() => cap.readLive(fd, buf, 0, 4096, 0)).toThrow(/ESTALE/)
      fs.closeSync(fd)
      fs.closeSync(pfd)
      // a file read whole with no block logged (its per-block state is dropped once settled):
      // read again unchanged, the same bytes; after a write, refused too
      const clean = path.join(mnt, 'clean')
      fs.writeFileSync(clean, Buffer.alloc(8 * 4096, 7)) // (after T0: a file of its own, unseen)
      const cfd = cap.openQuiet(clean)
      expect(cap.readLive(cfd, buf, 0, 8 * 4096, 0)).toEqual([8 * 4096, 0])
      expect(cap.stats().settled).toBe(2)
      buf.fill(0)
      expect(cap.readLive(cfd, buf, 0, 8 * 4096, 0)).toEqual([8 * 4096, 0])
      expect(buf.equals(Buffer.alloc(8 * 4096, 7))).toBe(true)
      await must(`head -c 4096 /dev/urandom | dd of=${clean} bs=4096 seek=2 conv=notrunc status=none`)
      expect(() => cap.readLive(cfd, buf, 0, 8 * 4096, 0)).toThrow(/ESTALE/)
      expect(() => cap.readLive(cfd, buf, 3 * 4096, 4096, 3 * 4096)).toThrow(/ESTALE/)
      fs.closeSync(cfd)
    } finally {
      cap.stop()
    }
  })

  it('ignore(dev, inode): writes to a file bfs keeps from an earlier generation log no images; other files still do', async () => {
    const mnt = await makeFs('ext4', 'ext4-ignore')
    const kept = path.join(mnt, 'kept')
    const other = path.join(mnt, 'other')
    fs.writeFileSync(kept, Buffer.alloc(65536, 1))
    fs.writeFileSync(other, Buffer.alloc(65536, 2))
    await must('sync')
    const cap = BiCapture.start(mnt, path.join(work, 'ignore.bilog'), { preReadMax: -1 })
    try {
      const st = fs.statSync(kept, { bigint: true })
      cap.ignore(Number(st.dev), Number(st.ino >> 32n), Number(st.ino & 0xffffffffn))
      await must(`head -c 8192 /dev/urandom | dd of=${kept} bs=4096 seek=3 conv=notrunc status=none`)
      expect(cap.stats().images).toBe(0)
      await must(`head -c 8192 /dev/urandom | dd of=${other} bs=4096 seek=3 conv=notrunc status=none`)
      expect(cap.stats().images).toBeGreaterThan(0) // (dd writes each 4 KiB block on its own: one image each)
    } finally {
      cap.stop()
    }
  })

  it('openQuiet: reads through its fd raise no events (only the open is a round trip through the listener); t0StatIno knows an inode only once something changed it', async () => {
    const mnt = await makeFs('ext4', 'ext4-quiet')
    const file = path.join(mnt, 'f')
    fs.writeFileSync(file, Buffer.alloc(5 * 4096, 3))
    fs.writeFileSync(path.join(mnt, 'g'), Buffer.alloc(3 * 4096, 4))
    await must('sync')
    const cap = BiCapture.start(mnt, path.join(work, 'quiet.bilog'))
    try {
      const buf = Buffer.alloc(4096)
      const own = (): number => cap.stats().ownEvents
      let before = own()
      const plain = fs.openSync(file, 'r')
      for (let i = 0; i < 3; i++) fs.readSync(plain, buf, 0, 4096, i * 4096)
      fs.closeSync(plain)
      expect(own() - before).toBe(4) // the open and each read
      // through the quiet tree (a private clone of the mount with an ignore mark): not even the open
      expect(cap.info().quietTreeErrno).toBe(0)
      before = own()
      const trees = cap.stats().treeOpens
      const quiet = cap.openQuiet(file)
      for (let i = 0; i < 3; i++) expect(fs.readSync(quiet, buf, 0, 4096, i * 4096)).toBe(4096)
      expect(buf.equals(Buffer.alloc(4096, 3))).toBe(true)
      const [n] = cap.readLive(quiet, Buffer.alloc(5 * 4096), 0, 5 * 4096, 0)
      expect(n).toBe(5 * 4096)
      fs.closeSync(quiet)
      expect(own() - before).toBe(0)
      expect(cap.stats().treeOpens - trees).toBe(1)
      // the clone is read-only: reached through /proc/self/fd (as a process allowed to ptrace
      // bfs could), it cannot be written through unseen
      // (the clone's fd is an O_PATH fd of a directory holding this very file `f`)
      const fst = fs.statSync(file)
      const clones = fs.readdirSync('/proc/self/fd').filter((fd) => {
        try {
          const flags = parseInt(/^flags:\s+([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8)
          const st = fs.statSync(`/proc/self/fd/${fd}/f`)
          return (flags & 0o10000000) !== 0 && st.ino === fst.ino && st.dev === fst.dev
        } catch {
          return false
        }
      })
      expect(clones.length).toBeGreaterThanOrEqual(1)
      for (const fd of clones) expect(() => fs.openSync(`/proc/self/fd/${fd}/f`, 'r+')).toThrow(/EROFS/)
      expect(fs.readFileSync(file).equals(Buffer.alloc(5 * 4096, 3))).toBe(true)
      // a path the tree does not serve (relative, so not below the watched directory as given):
      // the open is one round trip, its reads none
      before = own()
      const rel = cap.openQuiet(path.relative(process.cwd(), file))
      for (let i = 0; i < 3; i++) expect(fs.readSync(rel, buf, 0, 4096, i * 4096)).toBe(4096)
      fs.closeSync(rel)
      expect(own() - before).toBe(1) // the open only
      expect(cap.stats().treeOpens - trees).toBe(1)
      // a mount inside the tree hides a file of the watched filesystem: the file bfs opens is the
      // one the path names in its namespace (the tmpfs one), never the hidden one under it
      const sub = path.join(mnt, 'sub')
      fs.mkdirSync(sub)
      fs.writeFileSync(path.join(sub, 'x'), 'hidden under the mount')
      await must(`mount -t tmpfs -o size=1m bfs-quiet-sub ${sub}`)
      try {
        fs.writeFileSync(path.join(sub, 'x'), 'on the tmpfs')
        const xfd = cap.openQuiet(path.join(sub, 'x'))
        expect(fs.readFileSync(xfd, 'utf8')).toBe('on the tmpfs')
        fs.closeSync(xfd)
      } finally {
        await must(`umount ${sub}`)
      }
      expect(cap.stats().treeOpens - trees).toBe(1)
      // a directory or a missing file: one line, as open(2) says
      expect(() => cap.openQuiet(path.join(mnt, 'missing'))).toThrow(/ENOENT/)
      const other = path.join(mnt, 'g')
      const st = fs.statSync(other, { bigint: true })
      const ino = [Number(st.dev), Number(st.ino >> 32n), Number(st.ino & 0xffffffffn)] as const
      expect(cap.t0StatIno(...ino).t0).toBe(null) // nothing changed it: its stat now is its T0 state
      await must(`echo more >> ${other}`)
      expect(cap.t0StatIno(...ino).t0?.sizeBytes).toBe(3 * 4096)
    } finally {
      cap.stop()
    }
  })

  it('biReadFileShared: a range read in one call (quiet open, live read, close) — the T0 size, blocks changed before the read as zeros, no events; a path that no longer names the inode the scan found is opened as openQuiet opens it; a mount made since the scan does not hide the scanned file', async () => {
    const mnt = await makeFs('ext4', 'ext4-readfile')
    const file = path.join(mnt, 'f')
    const t0bytes = Buffer.alloc(6 * 4096 + 100)
    for (let i = 0; i + 4 <= t0bytes.length; i += 4) t0bytes.writeUInt32LE((i * 2654435761) >>> 0, i)
    fs.writeFileSync(file, t0bytes)
    fs.writeFileSync(path.join(mnt, 'old'), 'the file the scan saw')
    fs.mkdirSync(path.join(mnt, 'sub'))
    fs.writeFileSync(path.join(mnt, 'sub', 'x'), 'hidden under the mount')
    await must('sync')
    const idOf = (p: string): [number, number, number] => {
      const st = fs.statSync(p, { bigint: true })
      return [Number(st.dev), Number(st.ino >> 32n), Number(st.ino & 0xffffffffn)]
    }
    const scanned = idOf(file)
    const oldId = idOf(path.join(mnt, 'old'))
    const cap = BiCapture.start(mnt, path.join(work, 'readfile.bilog'), { preReadMax: -1 })
    const id = cap.share()
    const out = new Float64Array(2)
    try {
      // another process overwrites block 1 and appends after T0: block 1 is logged (read as
      // zeros), and the read ends at the T0 size
      await must(`head -c 4096 /dev/urandom | dd of=${file} bs=4096 seek=1 conv=notrunc status=none && echo appended >> ${file}`)
      const live = fs.readFileSync(file)
      const { ownEvents, treeOpens } = cap.stats()
      const buf = Buffer.alloc(8 * 4096, 0xee)
      biReadFileShared(id, file, ...scanned, buf, 4096, 8 * 4096 - 4096, 0, out)
      expect([...out]).toEqual([t0bytes.length, 1])
      expect(buf.subarray(0, 4096).equals(Buffer.alloc(4096, 0xee))).toBe(true) // before bufOffset: untouched
      const got = buf.subarray(4096, 4096 + t0bytes.length)
      expect(got.subarray(4096, 8192).equals(Buffer.alloc(4096))).toBe(true)
      expect(got.subarray(0, 4096).equals(live.subarray(0, 4096))).toBe(true)
      expect(got.subarray(8192).equals(live.subarray(8192, t0bytes.length))).toBe(true)
      expect(cap.stats().treeOpens - treeOpens).toBe(1) // through the quiet tree
      expect(cap.stats().ownEvents - ownEvents).toBe(0) // the open and the read raised nothing
      expect(cap.stats().settled).toBe(1) // read to its T0 end
      // at the T0 size: nothing
      biReadFileShared(id, file, ...scanned, buf, 0, 4096, t0bytes.length, out)
      expect([...out]).toEqual([0, 0])
      // the path now names another file (renamed over since the scan): ESTALE at the open, not
      // the newcomer's bytes (the capture knows it only from its first write: its T0 size is
      // ~0, and the scan's size and times would be stored over zeros)
      fs.renameSync(path.join(mnt, 'old'), path.join(mnt, 'old.bak'))
      fs.writeFileSync(path.join(mnt, 'old'), 'the new file')
      let stale: NodeJS.ErrnoException | undefined
      try {
        biReadFileShared(id, path.join(mnt, 'old'), ...oldId, buf, 0, 4096, 0, out)
      } catch (e) {
        stale = e as NodeJS.ErrnoException
      }
      expect([stale?.code, stale?.syscall]).toEqual(['ESTALE', 'open'])
      // and a fifo put at the path does not hang the open (O_NONBLOCK)
      fs.rmSync(path.join(mnt, 'old'))
      await must(`mkfifo ${path.join(mnt, 'old')}`)
      expect(() => biReadFileShared(id, path.join(mnt, 'old'), ...oldId, buf, 0, 4096, 0, out)).toThrow(/ESTALE/)
      // a mount inside the tree: the tmpfs file the path names in bfs's namespace is not on the
      // captured filesystem (EXDEV, as readLive says), never the one hidden under it; a file the
      // scan found before a mount hid it is the one read
      const sub = path.join(mnt, 'sub')
      const hidden = idOf(path.join(sub, 'x'))
      await must(`mount -t tmpfs -o size=1m bfs-readfile-sub ${sub}`)
      try {
        fs.writeFileSync(path.join(sub, 'x'), 'on the tmpfs')
        expect(() => biReadFileShared(id, path.join(sub, 'x'), ...idOf(path.join(sub, 'x')), buf, 0, 4096, 0, out)).toThrow(/EXDEV/)
        biReadFileShared(id, path.join(sub, 'x'), ...hidden, buf, 0, 4096, 0, out)
        expect(buf.subarray(0, out[0]).toString()).toBe('hidden under the mount')
      } finally {
        await must(`umount ${sub}`)
      }
      // errors say which call failed
      let err: NodeJS.ErrnoException | undefined
      try {
        biReadFileShared(id, path.join(mnt, 'missing'), ...scanned, buf, 0, 4096, 0, out)
      } catch (e) {
        err = e as NodeJS.ErrnoException
      }
      expect([err?.code, err?.syscall]).toEqual(['ENOENT', 'open'])
      cap.unshare()
      expect(() => biReadFileShared(id, file, ...scanned, buf, 0, 4096, 0, out)).toThrow(/ECANCELED/)
    } finally {
      cap.stop()
    }
  })

  it('a SIGKILLed capturer leaves no writer hanging (the kernel releases it once the watchdog exits)', async () => {
    const mnt = await makeFs('ext4', 'kill')
    fs.writeFileSync(path.join(mnt, 'victim'), Buffer.alloc(8192, 1))
    const capturer = await startCapturer(mnt, path.join(work, 'kill.bilog'), 600_000)
    await sigstop(capturer.child.pid!) // the listener cannot answer; the watchdog waits 10 minutes
    const writer = spawn('dd', ['if=/dev/zero', `of=${path.join(mnt, 'victim')}`, 'bs=4096', 'count=1', 'conv=notrunc', 'status=none'])
    children.push(writer)
    const writerDone = new Promise<number>((r) => writer.on('close', (c) => r(c ?? -1)))
    await waitFor(() => blockedOnFanotify(writer.pid!), 'the writer to block on the mark')
    process.kill(capturer.child.pid!, 'SIGKILL')
    expect(await writerDone).toBe(0)
    await waitFor(() => !isAlive(capturer.watchdogPid), 'the watchdog to exit')
  })

  it('a SIGSTOPped capturer: the watchdog answers the writer and voids the run', async () => {
    const mnt = await makeFs('ext4', 'stop')
    fs.writeFileSync(path.join(mnt, 'victim'), Buffer.alloc(8192, 1))
    const capturer = await startCapturer(mnt, path.join(work, 'stop.bilog'), 1000)
    await sigstop(capturer.child.pid!)
    const writer = spawn('dd', ['if=/dev/zero', `of=${path.join(mnt, 'victim')}`, 'bs=4096', 'count=1', 'conv=notrunc', 'status=none'])
    children.push(writer)
    expect(await new Promise<number>((r) => writer.on('close', (c) => r(c ?? -1)))).toBe(0)
    process.kill(capturer.child.pid!, 'SIGCONT')
    const stats = JSON.parse(await capturer.ask('stop'))
    expect(stats.voidReason).toBe(BI_REASON.listener)
    const file = decodeBiLog(fs.readFileSync(path.join(work, 'stop.bilog')), xxh64)
    expect(file.records.some((r) => r.kind === BiKind.uncovered && r.cause === BI_REASON.listener)).toBe(true)
    await waitFor(() => !isAlive(capturer.watchdogPid), 'the watchdog to exit')
  })

  it('the watchdog is the program bfs-bilog-wd, in a session of its own, holding only the group fd, its stop pipe and /dev/null; it exits when the capture stops', async () => {
    const mnt = await makeFs('ext4', 'wd')
    const capturer = await startCapturer(mnt, path.join(work, 'wd.bilog'), 600_000)
    const wd = capturer.watchdogPid
    expect(fs.readlinkSync(`/proc/${wd}/exe`)).toMatch(/\/bfs-bilog-wd$/) // exec'd, not a fork of Node
    const stat = fs.readFileSync(`/proc/${wd}/stat`, 'utf8')
    const [ppid, , sid] = stat.slice(stat.lastIndexOf(') ') + 4).split(' ').map(Number)
    expect(ppid).toBe(capturer.child.pid)
    expect(sid).toBe(wd) // setsid: Ctrl-C and Ctrl-Z at bfs's terminal do not reach it
    const fds = Object.fromEntries(fs.readdirSync(`/proc/${wd}/fd`).map((f) => [f, fs.readlinkSync(`/proc/${wd}/fd/${f}`)]))
    expect(Object.keys(fds).sort()).toEqual(['0', '1', '2', '3', '5'])
    for (const f of ['0', '1', '2']) expect(fds[f]).toBe('/dev/null')
    expect(fds['3']).toBe('anon_inode:[fanotify]')
    expect(fds['5']).toMatch(/^pipe:/)
    JSON.parse(await capturer.ask('stop'))
    await waitFor(() => !isAlive(wd), 'the watchdog to exit')
  })

  it('without a watchdog that runs the capture does not start: an error naming it, no mark, thread or fd left behind', async () => {
    const mnt = await makeFs('ext4', 'nowd')
    fs.writeFileSync(path.join(mnt, 'f'), 'x')
    const fds = (): string[] => fs.readdirSync('/proc/self/fd').sort()
    const captureThreads = (): number => fs.readdirSync('/proc/self/task').filter((t) => fs.readFileSync(`/proc/self/task/${t}/comm`, 'utf8').startsWith('bfs-bilog')).length
    const missing = path.join(work, 'no-such-watchdog')
    // a program that is not a watchdog (exits 1 at once): as one of another build would (exit 2)
    for (const [wd, expected] of [
      [missing, { code: 'ENOENT', syscall: `spawning the watchdog ${missing}` }],
      ['/bin/false', { code: 'ECHILD', syscall: 'the watchdog /bin/false exited at start (status 1)' }],
    ] as const) {
      const before = fds()
      process.env.BFS_BILOG_WD = wd
      let err: unknown
      try {
        BiCapture.start(mnt, path.join(work, 'nowd.bilog')).stop()
      } catch (e) {
        err = e
      } finally {
        delete process.env.BFS_BILOG_WD
      }
      expect(err).toMatchObject(expected)
      expect(fds()).toEqual(before)
      expect(captureThreads()).toBe(0)
      // no mark: a write goes through at once
      const w = spawnSync('dd', ['if=/dev/zero', `of=${path.join(mnt, 'f')}`, 'bs=4096', 'count=1', 'status=none'], { timeout: 60_000 })
      expect(w.status).toBe(0)
    }
  })

  it('bfs-bilog-wd refuses arguments of another build (version, shared page size) or none: exit 2', () => {
    const wd = path.join(ROOT, 'native', 'build', 'Release', 'bfs-bilog-wd')
    for (const args of [[], [String(process.pid), '1000', '999', '4252'], [String(process.pid), '1000', '1', '8'], [String(process.pid), 'x', '1', '4252']]) {
      expect(spawnSync(wd, args, { timeout: 60_000 }).status, args.join(' ')).toBe(2)
    }
  })

  it('lists files with a writable fd or a shared writable mapping open at T0, not read-only ones', async () => {
    const mnt = await makeFs('ext4', 'cover')
    for (const n of ['held-w', 'held-r', 'mapped']) fs.writeFileSync(path.join(mnt, n), Buffer.alloc(8192, 2))
    const holder = spawn('python3', ['-c', `
import mmap, os, sys, time
w = os.open(sys.argv[1] + '/held-w', os.O_WRONLY)
r = os.open(sys.argv[1] + '/held-r', os.O_RDONLY)
m = os.open(sys.argv[1] + '/mapped', os.O_RDWR)
mm = mmap.mmap(m, 8192, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
os.close(m)
print('ready', flush=True)
time.sleep(600)
`, mnt], { stdio: ['ignore', 'pipe', 'inherit'] })
    children.push(holder)
    await new Promise<void>((r) => holder.stdout!.once('data', () => r()))
    const cap = BiCapture.start(mnt, path.join(work, 'cover.bilog'))
    try {
      const unc = cap.uncovered().filter((u) => u.pid === holder.pid)
      const byName = (n: string) => unc.filter((u) => u.path.endsWith('/' + n)).map((u) => u.reason)
      expect(byName('held-w')).toEqual([BI_REASON.fdAtT0])
      expect(byName('mapped')).toContain(BI_REASON.mappingAtT0) // (python's mmap keeps a dup of its fd: reason 1 too)
      expect(byName('held-r')).toEqual([])
      const fd = fs.openSync(path.join(mnt, 'held-w'), 'r')
      expect(cap.t0Stat(fd).uncovered).toBe(BI_REASON.fdAtT0)
      fs.closeSync(fd)
    } finally {
      holder.kill('SIGKILL')
      cap.stop()
    }
  })

  it('tmpfs has no pre-content events: ENOTSUP from fanotify_mark, one line for the user', async () => {
    const mnt = path.join(work, 'tmpfs')
    fs.mkdirSync(mnt)
    await must(`mount -t tmpfs -o size=1M bfs-bilog-test ${mnt}`)
    mounts.push(mnt)
    let err: unknown
    try {
      BiCapture.start(mnt, path.join(work, 'tmpfs.bilog')).stop()
    } catch (e) {
      err = e
    }
    expect(err).toMatchObject({ code: 'ENOTSUP', syscall: 'fanotify_mark' })
    const line = biUnsupportedMessage(err, mnt)
    expect(line).toMatch(/^online capture is not supported on the filesystem of .*tmpfs.*: it has no fanotify pre-content events/)
    expect(line).not.toContain('\n')
  })
})

async function startCapturer(mnt: string, logPath: string, stallMs: number) {
  const child = spawn(process.execPath, [CAPTURER, mnt, logPath, String(stallMs)], { stdio: ['pipe', 'pipe', 'inherit'] })
  children.push(child)
  const lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
  const first = JSON.parse((await lines.next()).value as string)
  return {
    child,
    watchdogPid: first.watchdogPid as number,
    ask: async (cmd: string): Promise<string> => {
      child.stdin!.write(cmd + '\n')
      return (await lines.next()).value as string
    },
  }
}

function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return !/^\d+ \(.*\) Z/.test(stat)
  } catch {
    return false
  }
}

function blockedOnFanotify(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/wchan`, 'utf8').includes('fanotify')
  } catch {
    return false
  }
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
