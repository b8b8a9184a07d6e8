// The tape tier's targets through the real stack (issue 13, part 2): recalls through the
// TieredStore → buffer cache → recall engine → virtual tape library (clock scale 0, so every
// figure is simulated time as the library's clock accounted it), and migration through the
// real writer. Called by bench/tape-sim.mjs (`make bench-tape`); sections (d)–(i).
//
// The tapes: full cartridges laid out as migration writes them (tape files of a header
// record and 204 slots of 20 records ≈ 4 GiB, up to early warning); a few thousand slots
// hold a real unit of UNIT_KIB KiB in their first record, every other record is a fill
// record (no bytes stored). A slot is 20 records long on tape whatever its unit's size, so
// positions and locate times are those of 20 MiB units; each recall reads one record
// instead of twenty (1,000 × 19 MiB at 400 MB/s = 50 s less than real 20 MiB units, noted).
import fs from 'node:fs'
import path from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'

export async function tierScenarios({ ROOT, BASE, m, p, log, h, seeds, only }) {
  const d = (f) => import(path.join(ROOT, 'dist', f))
  const { VirtualTapeLibrary } = await d('tape/vtl.js')
  const { dismount, runSteps } = await d('tape/execute.js')
  const { arrivalOrderSteps, pbsLikeSteps, sortedByBlockSteps } = await d('tape/schedule.js')
  const { lowerBound } = await d('tape/sim.js')
  const { encodeTapeFileHeader } = await d('tape/tapefile.js')
  const { rng } = await d('tape/rng.js')
  const { DiskStore } = await d('store/disk.js')
  const { BufferCache, CacheStore, TapeSource } = await d('store/cache.js')
  const { TapeStore } = await d('store/tape.js')
  const { TieredStore } = await d('store/tiered.js')
  const { RepoTapeCatalog } = await d('repo/tapecat.js')
  const { recallOrder, recallPasses } = await d('repo/recallplan.js')
  const { capacityBlocks, mountSeconds } = await d('tape/model.js')

  const UNIT_KIB = 256
  const SLOT = 20
  const PER_FILE = 204
  const N = 1000
  const rb = m.recordBytes
  const want = (s) => !only || only.includes(s)

  /**
   * A library of `carts` full cartridges with `units` real units at random slots, and a
   * disk store holding the catalog. Returns the entries (catalog order) and the directory.
   */
  async function build(name, carts, units, seed) {
    const dir = path.join(BASE, name)
    fs.rmSync(dir, { recursive: true, force: true })
    fs.mkdirSync(dir, { recursive: true })
    VirtualTapeLibrary.create(path.join(dir, 'vtl'), { model: m, cartridges: carts, drives: 1, clockScale: 0 })
    const lib = VirtualTapeLibrary.open(path.join(dir, 'vtl'))
    const drive = await lib.drive(0)
    const hot = DiskStore.create(path.join(dir, 'repo'))
    const catalog = new RepoTapeCatalog(hot)
    const random = rng(seed)
    const fileRecords = 1 + PER_FILE * SLOT + 1
    const files = Math.floor((lib.capacityBlocks - lib.earlyWarningBlocks) / fileRecords)
    const slots = files * PER_FILE
    const chosen = new Map() // label → Set of slot indexes
    const labels = lib.state().cartridges
    for (let i = 0; i < units; ) {
      const label = labels[Math.floor(random() * labels.length)]
      const s = Math.floor(random() * slots)
      const set = chosen.get(label) ?? new Set()
      chosen.set(label, set)
      if (set.has(s)) continue
      set.add(s)
      i++
    }
    let k = 0
    for (const label of labels) {
      await dismount(lib, drive)
      await lib.move({ slot: lib.slotOf(label) }, { drive: 0 })
      await drive.load()
      const set = chosen.get(label) ?? new Set()
      for (let f = 0; f < files; f++) {
        const start = f * fileRecords
        const mine = []
        for (let s = 0; s < PER_FILE; s++) if (set.has(f * PER_FILE + s)) mine.push(s)
        const batch = randomBytes(8)
        const blobs = mine.map((s) => ({ key: `gens/00000001/unit-${String(k++).padStart(8, '0')}`, s, data: randomBytes(UNIT_KIB * 1024) }))
        await drive.write([encodeTapeFileHeader({ repoId: Buffer.alloc(16), batch, recordBytes: rb, dataBytes: PER_FILE * SLOT * rb, blobs: blobs.map((b) => ({ key: b.key, bytes: b.data.length, offset: b.s * SLOT * rb })) })])
        let fill = 0
        let at = 0
        for (const b of blobs) {
          fill += (b.s - at) * SLOT
          if (fill) await drive.write({ fill })
          await drive.write([b.data])
          fill = SLOT - 1
          at = b.s + 1
        }
        fill += (PER_FILE - at) * SLOT
        await drive.write({ fill })
        await drive.writeFilemarks(1, { immediate: true })
        if (blobs.length) {
          await drive.flush()
          await catalog.commitBatch({
            tier: 'tape', cartridge: label, batch, file: f, fileBlock: start, recordBytes: rb, dataBlocks: PER_FILE * SLOT,
            blobs: blobs.map((b) => ({ key: b.key, sizeBytes: b.data.length, sha256: createHash('sha256').update(b.data).digest(), offset: b.s * SLOT * rb, head: b.data.subarray(0, 32), tail: b.data.subarray(-96) })),
          })
        }
      }
      await drive.flush()
    }
    await dismount(lib, drive)
    await lib.close()
    return { dir, hot, entries: [...catalog.all()], files, slots }
  }

  /** Runs `fn` with a tiered store over the library (cartridges in their slots first) and a fresh cache; simulated seconds from the library's clock. */
  async function run(t, cacheBytes, fn) {
    const lib = VirtualTapeLibrary.open(path.join(t.dir, 'vtl'))
    const dr = await lib.drive(0)
    await dismount(lib, dr)
    await dr.release()
    const t0 = lib.state().drives[0].clock
    const catalog = new RepoTapeCatalog(t.hot)
    const tape = new TapeStore({ tier: 'tape', library: lib, catalog, engine: { windowMs: 5, lingerMs: 600_000 } })
    const cdir = path.join(t.dir, 'cache')
    fs.rmSync(cdir, { recursive: true, force: true })
    const cache = BufferCache.open(cdir, { owner: true, limitBytes: cacheBytes })
    const tiered = new TieredStore({ hot: t.hot, cold: new CacheStore(cache, new TapeSource(tape, cache)) })
    let out
    try {
      out = await fn(tiered, tape, cache, t0)
    } finally {
      await tape.close()
      cache.close()
      fs.rmSync(cdir, { recursive: true, force: true })
    }
    const seconds = lib.state().drives[0].clock - t0
    const counters = tape.engine.counters
    await lib.close()
    return { seconds, counters, ...out }
  }

  const read = (tiered, key) => tiered.get(key, { offset: 1000, length: 4096 })
  const pick = (entries, n, seed) => {
    const r = rng(seed)
    const a = entries.slice()
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1))
      ;[a[i], a[j]] = [a[j], a[i]]
    }
    return a.slice(0, n)
  }
  const emptyDrive = [{ index: 0, head: { cartridge: null, block: 0 }, freeAt: 0 }]
  const span = (xs) => `${h(xs.reduce((a, b) => a + b, 0) / xs.length)} [${h(Math.min(...xs))}–${h(Math.max(...xs))}]`
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length

  /** A planned restore: every unit asked for at once (pinned), read, unpinned. */
  async function planned(t, es, cacheBytes) {
    return run(t, cacheBytes, async (tiered) => {
      const keys = es.map((e) => e.key)
      await Promise.all(tiered.prefetch(keys, { pin: 'restore' }).values())
      for (const k of keys) await read(tiered, k)
      tiered.unpin(null, 'restore')
      return {}
    })
  }

  /**
   * The baselines for the same units on the same library, re-derived with our model: each
   * strategy's drive commands run on the library (robot, load, locates, reads as the clock
   * accounts them), from every cartridge in its slot; `es` in the order the reader asks
   * (arrival order). The lower bound is the model's (sim.lowerBound).
   */
  async function baselines(t, es) {
    const reqs = es.map((e, i) => ({ id: i, cartridge: e.loc.cartridge, block: e.loc.block, records: e.loc.records, arrival: 0 }))
    const fileOf = (r) => es[r.id].loc.fileBlock
    const lib = VirtualTapeLibrary.open(path.join(t.dir, 'vtl'))
    const drive = await lib.drive(0)
    const out = {}
    try {
      const head = { cartridge: null, block: 0 }
      for (const [name, steps] of [
        ['arrival', arrivalOrderSteps(head, reqs)],
        ['pbs', pbsLikeSteps(head, reqs, fileOf)],
        ['sorted', sortedByBlockSteps(head, reqs)],
      ]) {
        await dismount(lib, drive)
        const t0 = drive.clock.now()
        await runSteps(lib, drive, steps)
        out[name] = drive.clock.now() - t0
      }
      await dismount(lib, drive)
    } finally {
      await drive.release()
      await lib.close()
    }
    out.lb = lowerBound(m, reqs)
    return out
  }

  p('## Through the tiered store (issue 13, part 2)')
  p()
  p(`Every unit below is recalled by the real stack — TieredStore → buffer cache (verified, renamed into place) → recall engine → virtual library — and timed by the library's clock (scale 0). The tapes are laid out as migration writes them: tape files of a header record and ${PER_FILE} slots of ${SLOT} MiB up to early warning; the units asked for are real (${UNIT_KIB} KiB each, in the first record of their slot, the rest fill records), so positions and locates are those of 20 MiB units while each recall reads one record: real 20 MiB units would add 1,000 × 19 MiB / 400 MB/s = 50 s (0.01 h) to each figure.`)
  p()

  let one = null
  if (want('d') || want('f') || want('g') || want('h')) {
    log('(d) building one full tape with 2,000 real units')
    one = await build('bfs-tape-tier-one', 1, 2 * N, 7)
  }

  // ---- (d) planned restore, one tape -----------------------------------------------------
  if (want('d')) {
    const rows = []
    const est = []
    const base = { arrival: [], pbs: [], sorted: [], lb: [] }
    for (let seed = 1; seed <= seeds; seed++) {
      const es = pick(one.entries, N, seed)
      est.push(recallOrder(m, emptyDrive, es).seconds)
      const r = await planned(one, es, 64 * 2 ** 30)
      if (r.counters.served !== N) throw new Error(`(d) served ${r.counters.served} of ${N}`)
      rows.push(r.seconds)
      const b = await baselines(one, es)
      for (const k of Object.keys(base)) base[k].push(b[k])
      log(`(d) seed ${seed}: ${h(r.seconds)} h (plan ${h(est.at(-1))} h), ${r.counters.mounts} mounts, ${r.counters.locates} locates, ${r.counters.readThroughs} read-throughs; arrival ${h(b.arrival)} h, PBS-like ${h(b.pbs)} h, lower bound ${h(b.lb)} h`)
    }
    p(`### (d) restore of 1,000 units scattered over one full tape, planned up front (${seeds} seeds)`)
    p()
    p('bfs: all units asked for at once with a pin (`TieredStore.prefetch(keys, { pin })`, what the restore does after the switch-over), then read from the cache. The baselines: the same units on the same tape, their drive commands run on the library (arrival order: the order the restore asks, a locate each; PBS-like: per tape file in order, a locate to its start, then reading on to its last wanted unit; sorted by block: a locate each). Hours, mean [min–max].')
    p()
    p('| arrival order | PBS-like | sorted by block | **bfs** (measured) | bfs plan\'s estimate (`bfs recall --dry-run`) | lower bound | bfs target |')
    p('|---|---|---|---|---|---|---|')
    p(`| ${span(base.arrival)} | ${span(base.pbs)} | ${span(base.sorted)} | **${span(rows)}** | ${span(est)} | ${span(base.lb)} | ≤ 3.5 |`)
    p()
  }

  // ---- (e) ten cartridges, one drive ------------------------------------------------------
  if (want('e')) {
    log('(e) building ten full tapes with 1,000 real units')
    const ten = await build('bfs-tape-tier-ten', 10, N, 11)
    try {
      // the order a restore asks in has nothing to do with the tapes (the catalog's order is by cartridge and block)
      const es = pick(ten.entries, N, 12)
      const r = await planned(ten, es, 64 * 2 ** 30)
      if (r.counters.served !== N) throw new Error(`(e) served ${r.counters.served} of ${N}`)
      const est = recallOrder(m, emptyDrive, es).seconds
      const b = await baselines(ten, es)
      log(`(e) ${h(r.seconds)} h (plan ${h(est)} h), ${r.counters.mounts} mounts; arrival ${h(b.arrival)} h, PBS-like ${h(b.pbs)} h, lower bound ${h(b.lb)} h`)
      p('### (e) the same over 10 cartridges, one drive')
      p()
      p(`1,000 units at random slots of ten full cartridges, asked for in random order; bfs mounts each cartridge once (${r.counters.mounts} mounts). Arrival order changes cartridges whenever the next unit is on another one; PBS-like and sorted by block mount each cartridge once. Hours.`)
      p()
      p('| arrival order | PBS-like | sorted by block | **bfs** (measured) | bfs plan\'s estimate | lower bound | bfs target |')
      p('|---|---|---|---|---|---|---|')
      p(`| ${h(b.arrival)} | ${h(b.pbs)} | ${h(b.sorted)} | **${h(r.seconds)}** | ${h(est)} | ${h(b.lb)} | ≤ 5 |`)
      p()
    } finally {
      fs.rmSync(ten.dir, { recursive: true, force: true })
    }
  }

  // ---- (f) eight readers, no prefetch -----------------------------------------------------
  if (want('f')) {
    const cases = [
      ['1 unit per file (small files: each open waits for one recall)', 1, false],
      ['10 units per file, read one after another', 10, false],
      ['10 units per file, all asked for when the file is opened (a per-file prefetch at open)', 10, true],
    ]
    const fes = pick(one.entries, N, 101)
    const fb = await baselines(one, fes)
    log(`(f) baselines: arrival ${h(fb.arrival)} h, PBS-like ${h(fb.pbs)} h, lower bound ${h(fb.lb)} h`)
    p('### (f) `find | xargs -P8 cat`-like, no prefetch: 8 concurrent readers of the tiered store')
    p()
    p('**Not through the mount**: the FUSE mount does not read the tape tier yet (issue 13 item 5 waits for issue 12\'s read-path switch-over), so 8 concurrent readers in the bench process stand in for `xargs -P8 cat`: each takes the next file and reads it through `TieredStore.get` (its units in order; a miss waits for its recall, as a FUSE read would). 1,000 units scattered over one full tape, in files whose order (find\'s) has nothing to do with their place on tape. Requests arrive one at a time per reader, so the engine orders at most 8 (or 80) at once; the engine\'s aging and one-hour cap keep every wait bounded. Baselines for the same 1,000 units: arrival order = served first come, first served (a locate each, in find order); PBS-like = PBS has no mount (it restores from tape to disk only), so its restore of the same units; lower bound as in (d). Hours.')
    p()
    p('| files | arrival order | PBS-like (its restore) | **bfs** (measured) | max wait of a request | lower bound | bfs target |')
    p('|---|---|---|---|---|---|---|')
    for (const [label, per, atOpen] of cases) {
      const es = fes
      const files = []
      for (let i = 0; i < es.length; i += per) files.push(es.slice(i, i + per).map((e) => e.key))
      let next = 0
      let maxWait = 0
      const r = await run(one, 64 * 2 ** 30, async (tiered, tape, _cache, start) => {
        const simNow = () => Math.max(start, tape.engine.now())
        const reader = async () => {
          for (let f = next++; f < files.length; f = next++) {
            if (atOpen) tiered.prefetch(files[f])
            for (const k of files[f]) {
              const t0 = simNow()
              await read(tiered, k)
              maxWait = Math.max(maxWait, simNow() - t0)
            }
          }
        }
        await Promise.all(Array.from({ length: 8 }, reader))
        return {}
      })
      log(`(f) ${label}: ${h(r.seconds)} h, max wait ${(maxWait / 60).toFixed(0)} min`)
      p(`| ${label} | ${h(fb.arrival)} | ${h(fb.pbs)} | **${h(r.seconds)}** | ${(maxWait / 60).toFixed(0)} min | ${h(fb.lb)} | ≤ 4.2 |`)
    }
    p()
    // what the depth of the queue buys: the engine's decisions in the model alone
    const { decide } = await d('tape/schedule.js')
    const { ENGINE_SCHEDULE } = await d('tape/engine.js')
    const { readThroughSeconds } = await d('tape/model.js')
    const depth = (k) => {
      const r = rng(5)
      const cap = capacityBlocks(m) - m.earlyWarningBlocks
      const blocks = Array.from({ length: N }, () => Math.floor(r() * (cap / SLOT)) * SLOT)
      let next = 0
      let id = 0
      let t = mountSeconds(m)
      let head = { cartridge: 'A', block: 0 }
      const pending = new Map()
      const over = new Set()
      const add = () => {
        while (pending.size < k && next < blocks.length) {
          // requests asked for at the same moment arrive together (as the engine stamps them)
          const q = { id: id++, cartridge: 'A', block: blocks[next++], records: SLOT, arrival: t }
          pending.set(q.id, q)
        }
      }
      add()
      while (pending.size) {
        const dd = decide(m, head, pending.values(), t, (q) => over.has(q.id), ENGINE_SCHEDULE)
        t += dd.move.seconds + readThroughSeconds(m, dd.request.records)
        head = { cartridge: 'A', block: dd.request.block + dd.request.records }
        pending.delete(dd.request.id)
        for (const q of pending.values()) if (q.arrival < dd.request.arrival) over.add(q.id)
        add()
      }
      return t
    }
    const ks = [1, 8, 16, 32, 64, 128, N]
    p('What the depth of the queue buys (the same decisions in the timing model alone; a reader asks for its next unit when its last one arrived):')
    p()
    p(`| requests outstanding | ${ks.map((k) => (k === N ? 'all 1,000 (a plan)' : String(k))).join(' | ')} |`)
    p(`|---|${ks.map(() => '---').join('|')}|`)
    p(`| hours | ${ks.map((k) => h(depth(k))).join(' | ')} |`)
    p()
  }

  // ---- (g) recall then read, against a planned restore ------------------------------------
  if (want('g')) {
    const es = pick(one.entries, N, 202)
    const restore = await planned(one, es, 64 * 2 ** 30)
    const recall = await run(one, 64 * 2 ** 30, async (tiered) => {
      // bfs recall: everything, in the plan's order, pinned while it runs; then cp -a reads in find order
      const order = recallOrder(m, emptyDrive, es).order.map((x) => x.entry.key)
      await Promise.all(tiered.prefetch(order, { pin: 'recall' }).values())
      tiered.unpin(null, 'recall')
      for (const e of es) await read(tiered, e.key)
      return {}
    })
    log(`(g) recall then read ${h(recall.seconds)} h, restore ${h(restore.seconds)} h`)
    p('### (g) `bfs recall` then `cp -a` from the mount, against `bfs restore` (store level)')
    p()
    p('Store level, not through the mount or the restore command (neither reads the tape tier yet): `bfs recall`\'s order pinned and recalled, then every unit read in find order (the `cp -a`), against (d)\'s planned restore of the same units.')
    p()
    p('| recall, then read everything | planned restore | ratio | target |')
    p('|---|---|---|---|')
    p(`| ${h(recall.seconds)} h (${recall.counters.served} recalls) | ${h(restore.seconds)} h (${restore.counters.served} recalls) | ${(recall.seconds / restore.seconds).toFixed(3)} | within 10 % |`)
    p()
  }

  // ---- (h) a cache of 10 % of the restore's data ------------------------------------------
  if (want('h')) {
    const es = pick(one.entries, N, 303)
    const data = es.reduce((a, e) => a + e.sizeBytes, 0)
    const cacheBytes = Math.floor(data / 10)
    const passes = await run(one, cacheBytes, async (tiered) => {
      const order = recallOrder(m, emptyDrive, es).order.map((x) => x.entry)
      const ps = recallPasses(order, cacheBytes)
      for (const pass of ps) {
        const keys = pass.map((e) => e.key)
        await Promise.all(tiered.prefetch(keys, { pin: 'restore' }).values())
        for (const k of keys) await read(tiered, k)
        tiered.unpin(keys, 'restore')
      }
      return { passes: ps.length }
    })
    const naive = await run(one, cacheBytes, async (tiered) => {
      // everything at once without pins, then read in find order
      await Promise.allSettled(tiered.prefetch(es.map((e) => e.key)).values())
      for (const e of es) await read(tiered, e.key)
      return {}
    })
    const fifo = await run(one, cacheBytes, async (tiered) => {
      // one reader in find order, no prefetch: each miss recalled when it is read (arrival order)
      for (const e of es) await read(tiered, e.key)
      return {}
    })
    const hb = await baselines(one, es)
    log(`(h) passes: ${h(passes.seconds)} h, ${passes.counters.served} recalls; naive ${h(naive.seconds)} h, ${naive.counters.served} recalls; one reader ${h(fifo.seconds)} h, ${fifo.counters.served} recalls; PBS-like ${h(hb.pbs)} h`)
    p('### (h) a buffer cache of 10 % of the restore\'s data')
    p()
    p(`bfs: the restore's 1,000 units in the plan's order, cut into passes that fit the cache (${passes.passes} passes of ≤ ${(cacheBytes / 2 ** 20).toFixed(0)} MiB; \`recallPasses\`): each pass pinned, recalled, read, unpinned. Arrival order, measured through the same stack and cache: one reader in find order, no prefetch, each miss recalled when it is read. Also measured: asking for everything at once without pins, then reading in find order (what a cache-oblivious prefetch does). PBS-like: PBS restores to disk, not through a bounded cache, so its restore time of the same units (drive commands on the library, no unit read twice). Lower bound: the model's, as in (d).`)
    p()
    p('| | hours | recalls | units recalled twice | target |')
    p('|---|---|---|---|---|')
    p(`| arrival order (one reader, find order, no prefetch) | ${h(fifo.seconds)} | ${fifo.counters.served} | ${fifo.counters.served - N} | |`)
    p(`| PBS-like (its restore to disk) | ${h(hb.pbs)} | ${N} | 0 | |`)
    p(`| **bfs**: passes in tape order, pinned | **${h(passes.seconds)}** | ${passes.counters.served} | **${passes.counters.served - N}** | 0 |`)
    p(`| everything at once, no pins | ${h(naive.seconds)} | ${naive.counters.served} | ${naive.counters.served - N} | |`)
    p(`| lower bound | ${h(hb.lb)} | ${N} | 0 | |`)
    p()
  }
  if (one) fs.rmSync(one.dir, { recursive: true, force: true })

  // ---- (i) migration write rate through the real writer ------------------------------------
  if (want('i')) {
    log('(i) migration of a real repository')
    const dir = path.join(BASE, 'bfs-tape-tier-migrate')
    fs.rmSync(dir, { recursive: true, force: true })
    fs.mkdirSync(path.join(dir, 'src'), { recursive: true })
    const GIB = Number(process.env.BENCH_MIGRATE_GIB || 2)
    for (let i = 0; i < GIB * 8; i++) fs.writeFileSync(path.join(dir, 'src', `f${i}`), randomBytes(128 << 20))
    const bfs = (args) => {
      const r = spawnSync(path.join(ROOT, 'bin/bfs'), args, { env: { ...process.env, BFS_REPO: path.join(dir, 'repo') }, encoding: 'utf8' })
      if (r.status !== 0) throw new Error(`bfs ${args.join(' ')}: ${r.stderr}`)
      return r.stdout
    }
    bfs(['init', '--format', '1']) // format 1, as before format 2 became the default: results stay comparable
    bfs(['backup', path.join(dir, 'src')])
    bfs(['tier', 'add', 't', '--vtl', path.join(dir, 'vtl'), '--clock-scale', '0', '--cartridges', '2'])
    const j = JSON.parse(bfs(['migrate', 'gen1', '--json', '--file-size', '256M', '--commit-files', '64']))
    const streamS = j.writeSeconds - m.backhitchS // one commit: one flush's backhitch
    const rate = j.bytes / j.writeSeconds
    const steady = j.bytes / streamS
    const perCommit = 16 * 4 * 2 ** 30
    const projected = perCommit / (perCommit / m.nativeRate + m.backhitchS)
    fs.rmSync(dir, { recursive: true, force: true })
    log(`(i) ${(rate / 1e6).toFixed(0)} MB/s with its flush, ${(steady / 1e6).toFixed(0)} MB/s streaming, feed ${(j.feedRate / 1e6).toFixed(0)} MB/s`)
    p('### (i) migration write rate (`bfs migrate`, the real writer)')
    p()
    p(`${GIB} GiB of incompressible files backed up (20 MiB units), then \`bfs migrate gen1 --file-size 256M\`: ${j.files} tape files, one commit (one flush). The writer spools each WRITE (64 MiB) in memory, so the drive streams from memory; the disk feeds the spool at the rate shown (real time). Simulated rates, native ${m.nativeRate / 1e6} MB/s.`)
    p()
    p('Arrival order and PBS-like have no meaning for a write (there is no order to choose: the writer appends); what a writer that does not spool gets is (c)\'s "not spooled" rows. The bound is the native rate.')
    p()
    p('| | rate | of native | backhitches | target |')
    p('|---|---|---|---|---|')
    p(`| bound: native rate | ${m.nativeRate / 1e6} MB/s | 100 % | 0 | |`)
    p(`| measured, its one flush included | ${(rate / 1e6).toFixed(0)} MB/s | ${((rate / m.nativeRate) * 100).toFixed(1)} % | ${j.backhitches} | |`)
    p(`| measured, streaming (the flush's 3 s backhitch excluded) | **${(steady / 1e6).toFixed(0)} MB/s** | **${((steady / m.nativeRate) * 100).toFixed(1)} %** | | ≥ 90 % |`)
    p(`| defaults (4 GiB files, a flush every 16): 64 GiB per backhitch | ${(projected / 1e6).toFixed(0)} MB/s | ${((projected / m.nativeRate) * 100).toFixed(1)} % | | ≥ 90 % |`)
    p(`| the spool's feed from disk (real) | ${(j.feedRate / 1e6).toFixed(0)} MB/s | | | ≥ ${m.nativeRate / 1e6} MB/s to keep up in real time |`)
    p()
  }
  void mean
}
