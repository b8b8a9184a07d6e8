/**
 * The virtual tape library (src/tape/vtl.ts, cartridge.ts) on real files and real
 * processes: records written by one process read back by another, a writer killed -9 in
 * the middle of a tape file, SCSI positioning semantics, the end of the medium, the
 * drive and library locks, and the clock's accounting of every command.
 */
import { spawn } from 'node:child_process'
import { createCipheriv, createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { CartridgeFile } from '../src/tape/cartridge.js'
import { TapeError } from '../src/tape/device.js'
import { locateSeconds, LTO9, rewindSeconds } from '../src/tape/model.js'
import { VirtualTapeLibrary, type VirtualTapeDrive } from '../src/tape/vtl.js'
import { ROOT, tmpdir } from './helpers.js'

const base = tmpdir('bfs-tape-vtl-')
afterAll(() => fs.rmSync(base, { recursive: true, force: true }))
let n = 0
const freshDir = (): string => path.join(base, `lib${++n}`)

/** A record whose bytes say which one it is (block b of a 'seed'): AES-CTR keystream keyed by both. */
function record(seed: string, b: number, size = 1 << 20): Buffer {
  const key = createHash('sha256').update(`${seed}:${b}`).digest().subarray(0, 16)
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size))
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

/** Runs an ES module script in a fresh node process with the compiled library (dist/tape). */
function node(script: string, opts: { onLine?: (line: string) => void } = {}): { done: Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }>; kill: (sig: NodeJS.Signals) => void } {
  const prelude = `import { VirtualTapeLibrary } from ${JSON.stringify(path.join(ROOT, 'dist/tape/vtl.js'))}\nimport { createCipheriv, createHash } from 'node:crypto'\n`
  const child = spawn(process.execPath, ['--input-type=module', '-e', prelude + script], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  let partial = ''
  child.stdout.on('data', (b: Buffer) => {
    out += b.toString()
    partial += b.toString()
    const lines = partial.split('\n')
    partial = lines.pop()!
    for (const l of lines) opts.onLine?.(l)
  })
  child.stderr.on('data', (b: Buffer) => (err += b.toString()))
  const timer = setTimeout(() => child.kill('SIGKILL'), 480_000)
  return {
    done: new Promise((resolve) => child.on('close', (code, signal) => (clearTimeout(timer), resolve({ code, signal, out, err })))),
    kill: (sig) => child.kill(sig),
  }
}

/** The same record generator, as source for the child scripts. */
const RECORD_JS = `
function record(seed, b, size = 1 << 20) {
  const key = createHash('sha256').update(seed + ':' + b).digest().subarray(0, 16)
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size))
}
`

async function loaded(dir: string, opts: { cartridges?: number; drives?: number; capacityBlocks?: number; earlyWarningBlocks?: number } = {}): Promise<{ lib: VirtualTapeLibrary; d: VirtualTapeDrive }> {
  VirtualTapeLibrary.create(dir, { model: LTO9, cartridges: opts.cartridges ?? 2, drives: opts.drives ?? 1, clockScale: 0, capacityBlocks: opts.capacityBlocks, earlyWarningBlocks: opts.earlyWarningBlocks })
  const lib = VirtualTapeLibrary.open(dir)
  const d = await lib.drive(0)
  await lib.move({ slot: 0 }, { drive: 0 })
  await d.load()
  return { lib, d }
}

async function expectTapeError(p: Promise<unknown>, code: string): Promise<TapeError> {
  let err: unknown
  try {
    await p
  } catch (e) {
    err = e
  }
  expect(err).toBeInstanceOf(TapeError)
  expect((err as TapeError).code).toBe(code)
  return err as TapeError
}

describe('virtual tape library: state across processes', () => {
  it('reads back in a second process what a first one wrote, with the drive, position and clock it left', async () => {
    const dir = freshDir()
    VirtualTapeLibrary.create(dir, { model: LTO9, cartridges: 3, drives: 2, clockScale: 0 })
    const w = await node(`${RECORD_JS}
      const lib = VirtualTapeLibrary.open(${JSON.stringify(dir)})
      const d = await lib.drive(1)
      await lib.move({ slot: 2 }, { drive: 1 })
      await d.load()
      for (let b = 0; b < 5; b++) await d.write([record('rt', b)])
      await d.write([Buffer.from('short last record')])
      await d.writeFilemarks(1)
      await d.write([record('rt', 7), record('rt', 8)])
      await d.writeFilemarks(1)
      await d.locate(3)
      console.log(JSON.stringify(await d.readPosition()), d.clock.now())
      await lib.close()
    `).done
    expect(w.err).toBe('')
    expect(w.code).toBe(0)
    const [posJson, clock] = w.out.trim().split(' ')
    expect(JSON.parse(posJson!)).toMatchObject({ block: 3, file: 0, eodBlock: 10 })

    const r = await node(`
      const lib = VirtualTapeLibrary.open(${JSON.stringify(dir)})
      const d = await lib.drive(1)
      const st = await d.status()
      const clock0 = d.clock.now()
      await d.locate(0)
      const out = []
      for (;;) {
        const res = await d.read(100)
        for (const rec of res.records) out.push(createHash('sha256').update(rec).digest('hex') + ':' + rec.length)
        if (res.filemark) out.push('FM')
        if (res.eod || (!res.filemark && res.count === 0)) break
      }
      console.log(JSON.stringify({ st, clock0, out, inv: await lib.inventory() }))
      await lib.close()
    `).done
    expect(r.err).toBe('')
    const got = JSON.parse(r.out) as { st: { cartridge: string; loaded: boolean; position: { block: number } }; clock0: number; out: string[]; inv: { slots: Array<string | null> } }
    expect(got.st).toMatchObject({ cartridge: 'BFS003L9', loaded: true, position: { block: 3 } })
    expect(got.clock0).toBeCloseTo(Number(clock), 9)
    expect(got.clock0).toBeGreaterThan(LTO9.loadS + LTO9.robotMoveS)
    const want = [0, 1, 2, 3, 4].map((b) => `${sha(record('rt', b))}:${1 << 20}`)
    want.push(`${sha(Buffer.from('short last record'))}:17`, 'FM', `${sha(record('rt', 7))}:${1 << 20}`, `${sha(record('rt', 8))}:${1 << 20}`, 'FM')
    expect(got.out).toEqual(want)
    expect(got.inv.slots).toEqual(['BFS001L9', 'BFS002L9', null])
  })

  it('keeps the drive to one process: another gets BUSY until the holder dies, even by kill -9', async () => {
    const dir = freshDir()
    VirtualTapeLibrary.create(dir, { model: LTO9, cartridges: 2, drives: 1, clockScale: 0 })
    let ready: () => void
    const isReady = new Promise<void>((r) => (ready = r))
    const holder = node(
      `const lib = VirtualTapeLibrary.open(${JSON.stringify(dir)})
       const d = await lib.drive(0)
       console.log('holding')
       await new Promise((r) => setTimeout(r, 600000))`,
      { onLine: (l) => l === 'holding' && ready() },
    )
    try {
      await isReady
      const lib = VirtualTapeLibrary.open(dir)
      await expectTapeError(lib.drive(0), 'BUSY')
      // the robot cannot reach into a drive another process holds
      await expectTapeError(lib.move({ slot: 0 }, { drive: 0 }), 'BUSY')
      expect((await lib.inventory()).slots).toEqual(['BFS001L9', 'BFS002L9'])
      holder.kill('SIGKILL')
      expect((await holder.done).signal).toBe('SIGKILL')
      const d = await lib.drive(0, { waitMs: 30_000 })
      await lib.move({ slot: 0 }, { drive: 0 })
      expect((await d.status()).cartridge).toBe('BFS001L9')
      await expectTapeError(lib.drive(0), 'BUSY') // this process holds it now
      await lib.close()
    } finally {
      holder.kill('SIGKILL')
      await holder.done
    }
  })
})

describe('virtual tape library: a writer killed -9 mid-file', () => {
  it('recovers end of data at the last complete write; every record before it reads back, and appending goes on', async () => {
    const dir = freshDir()
    VirtualTapeLibrary.create(dir, { model: LTO9, cartridges: 1, drives: 1, clockScale: 0 })
    let reported = -1
    let enough: () => void
    const gotEnough = new Promise<void>((r) => (enough = r))
    // a tape file: header, then records one write at a time, each reported once written
    const writer = node(
      `${RECORD_JS}
       const lib = VirtualTapeLibrary.open(${JSON.stringify(dir)})
       const d = await lib.drive(0)
       await lib.move({ slot: 0 }, { drive: 0 })
       await d.load()
       await d.write([Buffer.from('header of file 0')])
       await d.writeFilemarks(1)
       for (let b = 2; ; b++) {
         await d.write([record('k9', b), record('k9', b + 0.5, 4096)].slice(0, b % 3 === 0 ? 2 : 1))
         console.log((await d.readPosition()).block)
       }`,
      {
        onLine: (l) => {
          reported = Number(l)
          if (reported >= 40) enough()
        },
      },
    )
    await Promise.race([gotEnough, writer.done]) // a writer that fails early must not hang the test
    writer.kill('SIGKILL')
    const res = await writer.done
    expect(res.err).toBe('')
    expect(res.signal).toBe('SIGKILL')
    const cartFile = path.join(dir, 'cartridges', 'BFS001L9.tape')
    const sizeBefore = fs.statSync(cartFile).size

    const lib = VirtualTapeLibrary.open(dir)
    const d = await lib.drive(0)
    const pos = await d.readPosition()
    // everything the writer reported is there; at most the write in flight is lost or kept whole
    expect(pos.eodBlock).toBeGreaterThanOrEqual(reported)
    expect(pos.eodBlock).toBeLessThanOrEqual(reported + 2)
    expect(pos.block).toBeLessThanOrEqual(pos.eodBlock) // the saved position, clamped to end of data
    expect(fs.statSync(cartFile).size).toBe(sizeBefore - d.recovery!.cutBytes)
    await d.locate(0)
    const head = await d.read(5)
    expect(head.records.map((r) => r.toString())).toEqual(['header of file 0'])
    expect(head.filemark).toBe(true)
    // records 2 .. EOD-1, in the writer's pattern
    let b = 2
    const seen: string[] = []
    while (b < pos.eodBlock) {
      const r = await d.read(1)
      seen.push(sha(r.records[0]!))
      b++
    }
    const want: string[] = []
    for (let w = 2; want.length < pos.eodBlock - 2; w++) {
      want.push(sha(record('k9', w)))
      if (w % 3 === 0) want.push(sha(record('k9', w + 0.5, 4096)))
    }
    expect(seen).toEqual(want.slice(0, pos.eodBlock - 2))
    expect((await d.read(1)).eod).toBe(true)
    // the tape goes on from end of data
    await d.write([Buffer.from('after the crash')])
    await d.locate(pos.eodBlock)
    expect((await d.read(1)).records[0]!.toString()).toBe('after the crash')
    await lib.close()
  })

  it('cuts a torn last write, and a crash between rewriting a split entry and cutting the file', async () => {
    const dir = freshDir()
    const { lib, d } = await loaded(dir)
    await d.write(Array.from({ length: 10 }, (_, i) => record('torn', i)))
    await d.write(Array.from({ length: 10 }, (_, i) => record('torn', 10 + i)))
    await lib.close()
    const file = path.join(dir, 'cartridges', 'BFS001L9.tape')
    const whole = fs.readFileSync(file)

    // a write cut short by a crash: the last entry lacks its final 1000 bytes
    fs.truncateSync(file, whole.length - 1000)
    let c = CartridgeFile.open(file)
    expect(c.eod()).toBe(10)
    expect(c.recovery.cutBytes).toBe(whole.length - 1000 - (whole.length - 10 * (1 << 20) - 64))
    c.close()

    // the two steps of cutting the tape at block 5, and a crash after the first
    fs.writeFileSync(file, whole)
    c = CartridgeFile.open(file)
    c.truncate(5)
    c.close()
    const cut = fs.readFileSync(file)
    expect(cut.length).toBeLessThan(whole.length)
    fs.writeFileSync(file, Buffer.concat([cut, whole.subarray(cut.length)])) // header rewritten, old bytes still there
    c = CartridgeFile.open(file)
    expect(c.eod()).toBe(5)
    expect(c.recovery.cutBytes).toBe(whole.length - cut.length)
    const r = c.read(0, 10, true)
    expect(r.records.map(sha)).toEqual([0, 1, 2, 3, 4].map((i) => sha(record('torn', i))))
    expect(r.eod).toBe(true)
    c.close()
  })
})

describe('virtual tape library: positioning', () => {
  // blocks: 0 1 2 = records, 3 = FM, 4 5 = records, 6 7 = FM FM, 8 = record; EOD 9
  async function layout(): Promise<{ lib: VirtualTapeLibrary; d: VirtualTapeDrive }> {
    const x = await loaded(freshDir())
    await x.d.write([record('p', 0, 100), record('p', 1, 100), record('p', 2, 100)])
    await x.d.writeFilemarks(1)
    await x.d.write({ fill: 2, bytes: 100 })
    await x.d.writeFilemarks(2)
    await x.d.write([record('p', 8, 50)])
    return x
  }

  it('READ POSITION counts blocks and filemarks from BOT; READ stops after a filemark and at EOD', async () => {
    const { lib, d } = await layout()
    expect(await d.readPosition()).toEqual({ block: 9, file: 3, bop: false, eod: true, earlyWarning: false, eodBlock: 9 })
    await d.rewind()
    expect(await d.readPosition()).toMatchObject({ block: 0, file: 0, bop: true, eod: false })
    let r = await d.read(10)
    expect(r).toMatchObject({ count: 3, bytes: 300, filemark: true, eod: false })
    expect(r.records.map(sha)).toEqual([0, 1, 2].map((i) => sha(record('p', i, 100))))
    expect(await d.readPosition()).toMatchObject({ block: 4, file: 1 })
    r = await d.read(1)
    expect(r.records[0]).toEqual(Buffer.alloc(100)) // fill records read as zeros
    r = await d.read(10, { data: false })
    expect(r).toMatchObject({ count: 1, bytes: 100, filemark: true, records: [] })
    r = await d.read(10)
    expect(r).toMatchObject({ count: 0, filemark: true }) // the second filemark of the pair
    expect(await d.readPosition()).toMatchObject({ block: 8, file: 3 })
    r = await d.read(10)
    expect(r).toMatchObject({ count: 1, bytes: 50, filemark: false, eod: true })
    r = await d.read(10)
    expect(r).toMatchObject({ count: 0, eod: true })
    await lib.close()
  })

  it('SPACE over filemarks and blocks stops as SCSI says; LOCATE past EOD ends at EOD with an error', async () => {
    const { lib, d } = await layout()
    await d.locate(0)
    expect(await d.space(1, 'filemarks')).toEqual({ block: 4, stoppedBy: null }) // after the filemark
    expect(await d.space(2, 'filemarks')).toEqual({ block: 8, stoppedBy: null })
    expect(await d.space(1, 'filemarks')).toEqual({ block: 9, stoppedBy: 'eod' })
    expect(await d.space(-1, 'filemarks')).toEqual({ block: 7, stoppedBy: null }) // BOT side of the filemark
    expect(await d.space(-2, 'filemarks')).toEqual({ block: 3, stoppedBy: null })
    expect(await d.space(-1, 'filemarks')).toEqual({ block: 0, stoppedBy: 'bot' })
    expect(await d.space(2, 'blocks')).toEqual({ block: 2, stoppedBy: null })
    expect(await d.space(5, 'blocks')).toEqual({ block: 4, stoppedBy: 'filemark' }) // stops after the filemark at 3
    expect(await d.space(-1, 'blocks')).toEqual({ block: 3, stoppedBy: 'filemark' }) // onto its BOT side
    expect(await d.space(-2, 'blocks')).toEqual({ block: 1, stoppedBy: null })
    expect(await d.space(-5, 'blocks')).toEqual({ block: 0, stoppedBy: 'bot' })
    await d.locate(8)
    expect(await d.space(3, 'blocks')).toEqual({ block: 9, stoppedBy: 'eod' })
    await d.locate(5)
    const e = await expectTapeError(d.locate(50), 'EOD')
    expect(e.message).toMatch(/past end of data/)
    expect((await d.readPosition()).block).toBe(9)
    await expectTapeError(d.locate(-1), 'ILLEGAL_REQUEST')
    await expectTapeError(d.space(1.5, 'blocks'), 'ILLEGAL_REQUEST')
    await lib.close()
  })

  it('writing before EOD erases the rest of the tape, as a drive does', async () => {
    const { lib, d } = await layout()
    await d.locate(5)
    await d.write([Buffer.from('new 5')])
    expect(await d.readPosition()).toMatchObject({ block: 6, eod: true, eodBlock: 6, file: 1 })
    await d.locate(4)
    const r = await d.read(10)
    expect(r.records.map(String)).toEqual([Buffer.alloc(100).toString(), 'new 5'])
    expect(r.eod).toBe(true)
    // cut inside a data entry: records 0..1 stay
    await d.locate(2)
    await d.writeFilemarks(1)
    await d.locate(0)
    expect((await d.read(10)).records.map(sha)).toEqual([0, 1].map((i) => sha(record('p', i, 100))))
    expect(await d.readPosition()).toMatchObject({ block: 3, eod: true, file: 1 })
    await lib.close()
  })
})

describe('virtual tape library: end of medium', () => {
  it('warns past the early-warning point and fails with VOLUME OVERFLOW at the end, keeping what fit', async () => {
    const { lib, d } = await loaded(freshDir(), { capacityBlocks: 100, earlyWarningBlocks: 10 })
    expect(await d.write({ fill: 85 })).toMatchObject({ count: 85, earlyWarning: false })
    expect(await d.write([record('e', 85, 10), record('e', 86, 10), record('e', 87, 10), record('e', 88, 10), record('e', 89, 10)])).toMatchObject({ count: 5, earlyWarning: true })
    expect((await d.readPosition()).earlyWarning).toBe(true)
    await d.writeFilemarks(1) // still allowed after early warning
    const e = await expectTapeError(d.write({ fill: 20 }), 'VOLUME_OVERFLOW')
    expect(e.written).toBe(9)
    expect(await d.readPosition()).toMatchObject({ block: 100, eodBlock: 100 })
    await expectTapeError(d.writeFilemarks(1), 'VOLUME_OVERFLOW')
    await expectTapeError(d.write([Buffer.from('x')]), 'VOLUME_OVERFLOW')
    // what fit is there
    await d.locate(85)
    expect((await d.read(5)).records.map(sha)).toEqual([85, 86, 87, 88, 89].map((i) => sha(record('e', i, 10))))
    await lib.close()
  })
})

describe('virtual tape library: the clock accounts every command by the model', () => {
  it('robot, load, locate, read, write, rewind and unload cost what the model says', async () => {
    const dir = freshDir()
    VirtualTapeLibrary.create(dir, { model: LTO9, cartridges: 2, drives: 1, clockScale: 0 })
    const lib = VirtualTapeLibrary.open(dir)
    const d = await lib.drive(0)
    await lib.move({ slot: 1 }, { drive: 0 })
    expect(d.clock.now()).toBe(LTO9.robotMoveS) // waited for the robot
    await expectTapeError(lib.move({ drive: 0 }, { slot: 0 }), 'ILLEGAL_REQUEST') // full slot
    await d.load()
    await expectTapeError(lib.move({ drive: 0 }, { slot: 1 }), 'ILLEGAL_REQUEST') // loaded: unload first
    expect(d.clock.now()).toBe(LTO9.robotMoveS + LTO9.loadS)
    let t = d.clock.now()
    await d.write({ fill: 4000 }) // 4000 MiB at 400 MB/s
    expect(d.clock.now() - t).toBeCloseTo((4000 * 2 ** 20) / 400e6, 9)
    t = d.clock.now()
    await d.locate(1000)
    expect(d.clock.now() - t).toBeCloseTo(locateSeconds(LTO9, 4000, 1000), 9)
    t = d.clock.now()
    await d.read(500, { data: false })
    expect(d.clock.now() - t).toBeCloseTo((500 * 2 ** 20) / 400e6, 9)
    t = d.clock.now()
    await d.unload()
    expect(d.clock.now() - t).toBeCloseTo(rewindSeconds(LTO9, 1500) + LTO9.unloadS, 9)
    await lib.move({ drive: 0 }, { slot: 1 })
    await d.release()
    const st = lib.status()
    expect(st.totals.robot).toEqual({ count: 2, seconds: 2 * LTO9.robotMoveS })
    expect(st.totals.load).toEqual({ count: 1, seconds: LTO9.loadS })
    expect(st.totals.unload.count).toBe(1)
    expect(st.totals.rewind.count).toBe(1)
    expect(st.now).toBeCloseTo(d.clock.now(), 9)
    expect(st.cartridges.find((c) => c.label === 'BFS002L9')!.where).toBe('slot 1')
    await lib.close()
  })

  it('sleeps the scaled real time when the clock scale is above 0', async () => {
    const dir = freshDir()
    VirtualTapeLibrary.create(dir, { model: LTO9, cartridges: 1, drives: 1, clockScale: 0.01 })
    const lib = VirtualTapeLibrary.open(dir)
    const d = await lib.drive(0)
    const t0 = performance.now()
    await lib.move({ slot: 0 }, { drive: 0 }) // 10 s → 100 ms
    await d.load() // 16 s → 160 ms
    expect(performance.now() - t0).toBeGreaterThanOrEqual(240)
    await lib.close()
  })
})
