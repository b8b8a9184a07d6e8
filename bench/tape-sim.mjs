#!/usr/bin/env node
// The tape-tier scenarios of issue 13's targets table that need neither the mount nor the
// buffer cache, driven through the virtual tape library (dist/tape/) with clock scale 0:
// every figure is simulated time as the library's clock accounted it for the drive's
// commands. Usage: node bench/tape-sim.mjs [--seeds N] [--requests N] [--no-write]
// (make bench-tape). Prints a markdown report and writes it to
// bench/results/YYYY-MM-DD-tape.md (with --only d,f: YYYY-MM-DD-tape-df.md); the tables also replace the generated section of
// native-notes/tape.md unless --no-notes.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const { LTO9, calibrate, readThroughBreakEvenBytes } = await import(path.join(ROOT, 'dist/tape/model.js'))
const sim = await import(path.join(ROOT, 'dist/tape/sim.js'))

const args = process.argv.slice(2)
const opt = (name, def) => {
  const i = args.indexOf(name)
  if (i < 0) return def
  const v = Number(args[i + 1])
  if (!Number.isInteger(v) || v < 1) {
    console.error(`bench/tape-sim.mjs: ${name} takes a whole number ≥ 1`)
    process.exit(2)
  }
  return v
}
const SEEDS = opt('--seeds', 5)
const N = opt('--requests', 1000)
const WRITE = !args.includes('--no-write')
// --only d,f: just those sections (a–c: the scheduler on the library; d–i: the tiered store; j–k: the commands and a real mount)
const ONLY = (() => {
  const i = args.indexOf('--only')
  return i < 0 ? null : String(args[i + 1] ?? '').split(',')
})()
const want = (s) => !ONLY || ONLY.includes(s)
const NOTES = !args.includes('--no-notes')
const BASE = process.env.BENCH_TAPE_DIR || '/var/tmp'
const m = LTO9
const h = (s) => (s / 3600).toFixed(2)
const started = performance.now()
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length
const span = (xs) => `${h(mean(xs))} [${h(Math.min(...xs))}–${h(Math.max(...xs))}]`
const log = (s) => process.stderr.write(`tape-sim: ${s}\n`)

const out = []
const p = (s = '') => out.push(s)

// ---- calibration ----------------------------------------------------------------------
const cal = calibrate(m, 20000, sim.rng(2))
p('### Model calibration (LTO-9, 20,000 random positions)')
p()
p('| check | model | target |')
p('|---|---|---|')
p(`| average locate from load point | ${cal.avgLocateFromBot.toFixed(1)} s | 65 s (IBM) |`)
p(`| average locate, random → random | ${cal.avgLocateRandom.toFixed(1)} s | ~48 s |`)
p(`| shortest / longest locate sampled | ${cal.minLocate.toFixed(2)} s / ${cal.maxLocate.toFixed(1)} s | ≥ 4 s |`)
p(`| average rewind | ${cal.avgRewind.toFixed(1)} s | 62 s (IBM) |`)
p(`| end-to-end traverse (LPOS range × coefficient) | ${cal.fullLengthS.toFixed(1)} s | |`)
p(`| read-through break-even (min locate × native rate) | ${(readThroughBreakEvenBytes(m) / 1e9).toFixed(2)} GB | ~1.7 GB |`)
p(`| full tape read at native rate | ${h(cal.fullTapeReadS)} h | |`)
p()

// ---- (a) one full tape ----------------------------------------------------------------
if (want('a')) {
log('(a) filling one cartridge')
  const { lib, drive, cleanup } = await sim.scratchLibrary(BASE, 'bfs-tape-sim-a', m, 1)
  try {
    const layouts = await sim.fillAll(lib, drive)
    const lay = [...layouts.values()][0]
    const rows = { arrival: [], pbs: [], sorted: [], bfs: [], lb: [] }
    for (let seed = 1; seed <= SEEDS; seed++) {
      const reqs = sim.pickRequests(lay, N, sim.rng(seed))
      for (const s of sim.STRATEGIES) rows[s].push((await sim.runStrategy(lib, drive, s, reqs, layouts)).seconds)
      rows.lb.push(sim.lowerBound(m, reqs))
      log(`(a) seed ${seed}: bfs ${h(rows.bfs.at(-1))} h`)
    }
    p(`### (a) ${N.toLocaleString('en')} × 20 MiB units scattered over one full tape, one drive (${SEEDS} seeds)`)
    p()
    p(`The tape: ${lay.fileStarts.length.toLocaleString('en')} tape files of a header record and 204 units (≈ 4 GiB), ${lay.units.length.toLocaleString('en')} units, written up to early warning. Each run starts with the cartridge in its slot (robot move and load included) and ends when the last unit is read. Hours, mean [min–max].`)
    p()
    p('| arrival order | PBS-like | sorted by block | **bfs** | lower bound | bfs target |')
    p('|---|---|---|---|---|---|')
    p(`| ${span(rows.arrival)} | ${span(rows.pbs)} | ${span(rows.sorted)} | **${span(rows.bfs)}** | ${span(rows.lb)} | ≤ 3.5 |`)
    p()
    p(`bfs is ${(mean(rows.arrival) / mean(rows.bfs)).toFixed(1)}× faster than arrival order and ${(mean(rows.pbs) / mean(rows.bfs)).toFixed(2)}× faster than PBS-like, ${(mean(rows.bfs) / mean(rows.lb)).toFixed(2)}× the lower bound.`)
    p()
  } finally {
    await cleanup()
  }
}

// ---- (b) ten cartridges, one drive ----------------------------------------------------
if (want('b')) {
log('(b) filling ten cartridges')
  const { lib, drive, cleanup } = await sim.scratchLibrary(BASE, 'bfs-tape-sim-b', m, 10)
  try {
    const layouts = await sim.fillAll(lib, drive)
    const labels = [...layouts.keys()]
    const rows = { arrival: [], pbs: [], sorted: [], bfs: [], lb: [] }
    for (let seed = 1; seed <= SEEDS; seed++) {
      const random = sim.rng(1000 + seed)
      // each request: a random cartridge, a random unit on it (distinct units)
      const seen = new Set()
      const reqs = []
      while (reqs.length < N) {
        const lay = layouts.get(labels[Math.floor(random() * labels.length)])
        const u = Math.floor(random() * lay.units.length)
        const key = `${lay.cartridge}:${u}`
        if (seen.has(key)) continue
        seen.add(key)
        reqs.push({ id: reqs.length, cartridge: lay.cartridge, block: lay.units[u], records: lay.unitRecords, arrival: 0 })
      }
      for (const s of sim.STRATEGIES) rows[s].push((await sim.runStrategy(lib, drive, s, reqs, layouts)).seconds)
      rows.lb.push(sim.lowerBound(m, reqs))
      log(`(b) seed ${seed}: arrival ${h(rows.arrival.at(-1))} h, bfs ${h(rows.bfs.at(-1))} h`)
    }
    p(`### (b) the same spread over 10 cartridges, one drive (${SEEDS} seeds)`)
    p()
    p(`${N.toLocaleString('en')} distinct units, each on a random cartridge of ten full ones. A cartridge change is rewind, unload (${m.unloadS} s), two robot moves (${m.robotMoveS} s each) and load (${m.loadS} s). Arrival order changes cartridges whenever the next request is on another one; the others mount each cartridge once. Hours, mean [min–max].`)
    p()
    p('| arrival order | PBS-like | sorted by block | **bfs** | lower bound | bfs target |')
    p('|---|---|---|---|---|---|')
    p(`| ${span(rows.arrival)} | ${span(rows.pbs)} | ${span(rows.sorted)} | **${span(rows.bfs)}** | ${span(rows.lb)} | ≤ 5 |`)
    p()
  } finally {
    await cleanup()
  }
}

// ---- (c) migration write --------------------------------------------------------------
if (want('c')) {
log('(c) migration writes')
  const { lib, drive, cleanup } = await sim.scratchLibrary(BASE, 'bfs-tape-sim-c', m, 1)
  try {
    await lib.move({ slot: 0 }, { drive: 0 })
    await drive.load()
    const GIB = 256
    const cases = [
      ['spooled, the spool disk reads 1 GB/s', 1000e6, false],
      ['spooled, the spool disk reads 500 MB/s', 500e6, false],
      ['not spooled, the source gives 300 MB/s (speed matching)', 300e6, false],
      ['not spooled, the source gives 150 MB/s (shoe-shine)', 150e6, false],
      ['not spooled, the source gives 100 MB/s (shoe-shine)', 100e6, false],
      ['spooled at 1 GB/s, a synchronous filemark after each file', 1000e6, true],
    ]
    const rows = []
    for (const [label, rate, sync] of cases) rows.push(await sim.migrationWrite(lib, drive, GIB, rate, sync, label))
    p(`### (c) migration write: ${GIB} GiB in ~4 GiB tape files`)
    p()
    p(`Native rate ${m.nativeRate / 1e6} MB/s, minimum streaming rate ${m.minStreamRate / 1e6} MB/s, ${m.bufferBytes / 2 ** 30} GiB buffer, ${m.backhitchS} s per backhitch. Each file: a header record, then the data fed at the given rate, then a filemark (immediate unless stated); one flush at the end.`)
    p()
    p('| feed | rate | of native | backhitches | target |')
    p('|---|---|---|---|---|')
    for (const r of rows) p(`| ${r.label} | ${(r.bytes / r.seconds / 1e6).toFixed(0)} MB/s | ${(r.fraction * 100).toFixed(1)} % | ${r.backhitches} | ${r.label.startsWith('spooled, the') ? '≥ 90 %' : ''} |`)
    p()
  } finally {
    await cleanup()
  }
}

// ---- (d)–(i) through the tiered store --------------------------------------------------
if (['d', 'e', 'f', 'g', 'h', 'i'].some(want)) {
  const { tierScenarios } = await import('./tape-tier.mjs')
  await tierScenarios({ ROOT, BASE, m, p, log, h, seeds: Math.min(SEEDS, 3), only: ONLY })
}

// ---- (j)–(k) through the real commands and a real mount ----------------------------------
if (['j', 'k'].some(want)) {
  const { mountScenarios } = await import('./tape-mount.mjs')
  await mountScenarios({ ROOT, BASE, m, p, log, h, only: ONLY })
}

const secs = ((performance.now() - started) / 1000).toFixed(1)
const report = out.join('\n')
const date = new Date().toISOString().slice(0, 10)
// a partial run (--only) must not replace the day's full report
const file = path.join(ROOT, 'bench/results', ONLY ? `${date}-tape-${ONLY.join('')}.md` : `${date}-tape.md`)
const doc = `# bfs tape simulation, ${date}\n\n\`make bench-tape\` (bench/tape-sim.mjs): ${SEEDS} seeds, ${N} requests, clock scale 0, ${secs} s of real time on ${process.env.HOSTNAME || 'this machine'}.\n\n${report}\n`
process.stdout.write(doc)
if (WRITE) {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, doc)
  log(`wrote ${path.relative(ROOT, file)}`)
}
if (NOTES && WRITE && !ONLY) {
  const notes = path.join(ROOT, 'native-notes/tape.md')
  const text = fs.readFileSync(notes, 'utf8')
  const begin = '<!-- bench-tape:begin -->'
  const end = '<!-- bench-tape:end -->'
  const i = text.indexOf(begin)
  const j = text.indexOf(end)
  if (i >= 0 && j > i) {
    fs.writeFileSync(notes, `${text.slice(0, i + begin.length)}\n(generated by \`make bench-tape\`, ${SEEDS} seeds × ${N} requests)\n\n${report}\n${text.slice(j)}`)
    log(`updated ${path.relative(ROOT, notes)}`)
  }
}
log(`done in ${secs} s`)
