// The tape tier through the real commands and a real FUSE mount (issue 13, item 5):
// (j) `find | xargs -P8 cat` through `bfs mount`, and (k) `bfs recall` then `cp -a` from the
// mount against `bfs restore` (and a restore with a buffer cache of 10 % of its data).
// Called by bench/tape-sim.mjs (`make bench-tape`, or `--only j,k`).
//
// The repository is real (`bfs backup` of N files of 256 KiB, units of 256 KiB: one unit per
// file), its units placed at random slots of one full LTO-9 cartridge laid out as migration
// writes it (tape files of a header record and 204 slots of 20 records up to early warning,
// fill records elsewhere, as bench/tape-tier.mjs (d)), recorded in the repository's own tape
// catalog, and their disk copies removed: the repository then looks exactly as after `bfs
// migrate`, but with its units scattered over the whole tape, as a generation written among
// many others would be. Every figure is simulated time by the library's clock (scale 0),
// read from the recall service's status (its drive's clock) before and after.
// BENCH_MOUNT_FORMAT=2: (j) on a format 2 repository (`bfs init --format 2`; (k) is format 1's only).
import fs from 'node:fs'
import path from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'

export async function mountScenarios({ ROOT, BASE, m, p, log, h, only }) {
  const want = (s) => !only || only.includes(s)
  const d = (f) => import(path.join(ROOT, 'dist', f))
  const { VirtualTapeLibrary } = await d('tape/vtl.js')
  const { dismount } = await d('tape/execute.js')
  const { encodeTapeFileHeader } = await d('tape/tapefile.js')
  const { rng } = await d('tape/rng.js')
  const { Repository } = await d('repo/repository.js')
  const { RepoTapeCatalog } = await d('repo/tapecat.js')
  const { unitTailBytes } = await d('repo/migrate.js')
  const { UNIT_HEADER_BYTES } = await d('format/unit.js')
  const { keys } = await d('format/layout.js')
  const { recallServicePaths } = await d('os/runtime.js')
  const F2 = process.env.BENCH_MOUNT_FORMAT === '2'
  const { Repo2 } = await d('repo/v2/repo2.js')
  const { DiskStore } = await d('store/disk.js')
  if (F2 && only?.includes('k')) throw new Error('BENCH_MOUNT_FORMAT=2: (j) only')

  const N = Number(process.env.BENCH_MOUNT_FILES || 1000)
  const SLOT = 20
  const PER_FILE = 204
  const rb = m.recordBytes
  const dir = path.join(BASE, 'bfs-tape-mount')
  const repoDir = path.join(dir, 'repo')
  const vtl = path.join(dir, 'vtl')
  const src = path.join(dir, 'src')
  const mnt = path.join(dir, 'mnt')
  const env = { ...process.env, BFS_REPO: repoDir, BFS_RUNTIME_DIR: path.join(dir, 'run'), BFS_RECALL_IDLE_S: '900' }
  const bfs = (args, o = {}) => {
    const r = spawnSync(path.join(ROOT, 'bin/bfs'), args, { env, encoding: 'utf8', maxBuffer: 1 << 26 })
    if (r.status !== 0 && !o.ok) throw new Error(`bfs ${args.join(' ')}: ${r.stderr}`)
    return r.stdout
  }
  const sh = (cmd) => {
    const t = performance.now()
    const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8', maxBuffer: 1 << 26 })
    if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`)
    return (performance.now() - t) / 1000
  }
  const paths = recallServicePaths(repoDir, env)
  const servicePid = () => {
    try {
      const pid = Number(fs.readFileSync(paths.lock, 'utf8').trim())
      process.kill(pid, 0)
      return pid
    } catch {
      return 0
    }
  }
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
  /** Stops the service (started by our commands), empties the buffer cache, puts the cartridge back in its slot; the drive's clock then. */
  async function stopService() {
    const pid = servicePid()
    if (pid) {
      process.kill(pid, 'SIGTERM')
      for (let i = 0; i < 600 && servicePid(); i++) await sleep(100)
    }
  }
  async function reset(scale = 0) {
    await stopService()
    fs.rmSync(path.join(repoDir, 'cache'), { recursive: true, force: true })
    const lib = VirtualTapeLibrary.open(vtl)
    const dr = await lib.drive(0)
    await dismount(lib, dr)
    await dr.release()
    const t0 = lib.state().drives[0].clock
    await lib.close()
    // the clock scale the recall service will run the library at (state.json, read when it opens it)
    const stateFile = path.join(vtl, 'state.json')
    const st = JSON.parse(fs.readFileSync(stateFile, 'utf8'))
    if (st.clockScale !== scale) {
      st.clockScale = scale
      fs.writeFileSync(stateFile, JSON.stringify(st, null, 1) + '\n')
    }
    return t0
  }
  /** The drive's clock and counters as the running service says. */
  const status = () => {
    const s = JSON.parse(bfs(['tier', 'status', 'tape', '--json'])).service
    if (!s) throw new Error('no recall service running')
    const t = s.tiers[0]
    return { clock: Math.max(...t.engine.drives.map((x) => x.clock)), served: t.engine.counters.served, mounts: t.engine.counters.mounts, inserts: s.cache.inserts }
  }
  const umount = () => {
    bfs(['umount', mnt], { ok: true })
    if (fs.readFileSync('/proc/mounts', 'utf8').includes(` ${mnt} `)) spawnSync('fusermount', ['-uz', mnt])
  }

  /** The repository: N units of 256 KiB in files of `upf` units, scattered over one full cartridge. */
  let built = 0
  async function build(upf) {
    if (built === upf) return
    built = upf
    await stopService()
    log(`(j, k) a real repository of ${N / upf} files of ${upf * 256} KiB, its units at random slots of one full cartridge`)
    fs.rmSync(dir, { recursive: true, force: true })
    fs.mkdirSync(src, { recursive: true })
    fs.mkdirSync(mnt, { recursive: true })
    for (let i = 0; i < N / upf; i++) {
      const sub = path.join(src, `d${String(i % 20).padStart(2, '0')}`)
      fs.mkdirSync(sub, { recursive: true })
      fs.writeFileSync(path.join(sub, `f${String(i).padStart(5, '0')}`), randomBytes(upf * (256 << 10)))
    }
    // format 1 unless BENCH_MOUNT_FORMAT=2: format 1's units are placed on tape through its Repository below
    bfs(F2 ? ['init', '--format', '2'] : ['init', '--format', '1'])
    bfs(['backup', src, '--unit-blocks', '64', '--frame-blocks', '16'])
    bfs(['tier', 'add', 'tape', '--vtl', vtl, '--clock-scale', '0', '--cartridges', '1', '--drives', '1'])
    {
      // format 2: its stream 1's unit files (the catalog's head and tail from each unit's own header and trailer)
      const repo = F2 ? null : Repository.open(repoDir)
      const man = repo?.manifest(1)
      const units = F2
        ? fs.readdirSync(path.join(repoDir, 'gens/00000001')).filter((n) => /^unit-\d{8}$/.test(n)).sort().map((n, index) => ({ key: `gens/00000001/${n}`, index }))
        : man.units.map((u) => ({ key: keys.unit(1, u.index), index: u.index }))
      const catalog = new RepoTapeCatalog(F2 ? DiskStore.open(repoDir) : repo.store)
      const lib = VirtualTapeLibrary.open(vtl)
      const drive = await lib.drive(0)
      const label = lib.state().cartridges[0]
      const fileRecords = 1 + PER_FILE * SLOT + 1
      const files = Math.floor((lib.capacityBlocks - lib.earlyWarningBlocks) / fileRecords)
      const random = rng(13)
      const chosen = new Map() // slot → unit
      for (const u of units) {
        let s
        do s = Math.floor(random() * files * PER_FILE)
        while (chosen.has(s))
        chosen.set(s, u)
      }
      await dismount(lib, drive)
      await lib.move({ slot: lib.slotOf(label) }, { drive: 0 })
      await drive.load()
      const id = F2 ? Repo2.open(repoDir).config.repoId : repo.config.repoId
      const repoId = /^[0-9a-f]{32}$/.test(id) ? Buffer.from(id, 'hex') : Buffer.alloc(16)
      for (let f = 0; f < files; f++) {
        const start = f * fileRecords
        const blobs = []
        for (let s = 0; s < PER_FILE; s++) {
          const u = chosen.get(f * PER_FILE + s)
          if (!u) continue
          const data = fs.readFileSync(path.join(repoDir, u.key))
          if (data.length > SLOT * rb) throw new Error(`${u.key}: larger than a slot`)
          const tailBytes = F2 ? data.length - Number(data.readBigUInt64LE(data.length - 32)) : unitTailBytes(man, u.index)
          const headBytes = F2 && data.readUInt16LE(8) === 2 ? 96 : UNIT_HEADER_BYTES
          blobs.push({ key: u.key, s, data, tailBytes, headBytes })
        }
        const batch = randomBytes(8)
        await drive.write([encodeTapeFileHeader({ repoId, batch, recordBytes: rb, dataBytes: PER_FILE * SLOT * rb, blobs: blobs.map((b) => ({ key: b.key, bytes: b.data.length, offset: b.s * SLOT * rb })) })])
        let fill = 0
        let at = 0
        for (const b of blobs) {
          fill += (b.s - at) * SLOT
          if (fill) await drive.write({ fill })
          const recs = []
          for (let o = 0; o < b.data.length; o += rb) recs.push(b.data.subarray(o, o + rb))
          await drive.write(recs)
          fill = SLOT - recs.length
          at = b.s + 1
        }
        fill += (PER_FILE - at) * SLOT
        await drive.write({ fill })
        await drive.writeFilemarks(1, { immediate: true })
        if (blobs.length) {
          await drive.flush()
          await catalog.commitBatch({
            tier: 'tape', cartridge: label, batch, file: f, fileBlock: start, recordBytes: rb, dataBlocks: PER_FILE * SLOT,
            blobs: blobs.map((b) => ({ key: b.key, sizeBytes: b.data.length, sha256: createHash('sha256').update(b.data).digest(), offset: b.s * SLOT * rb, head: b.data.subarray(0, b.headBytes), tail: b.data.subarray(b.data.length - b.tailBytes) })),
          })
        }
      }
      await drive.flush()
      await dismount(lib, drive)
      await drive.release()
      await lib.close()
      // the disk copies go, as migrate removes them once the catalog record is durable
      for (const u of units) fs.rmSync(path.join(repoDir, u.key))
      log(`(j, k) ${units.length} units on tape in ${files} tape files`)
    }
  }


  try {
    // ---- (j) find | xargs -P8 cat through the mount -----------------------------------------
    const jrows = []
    const SCALES = (process.env.BENCH_MOUNT_SCALES || '0').split(',').map(Number)
    for (const [upf, ra, frames, scale] of want('j') ? [[1, null, null], [10, null, null], [1, 0, null], [10, 0, null], [1, 0, 0]].flatMap((v) => SCALES.map((x) => [...v, x])) : []) {
      await build(upf)
      const t0 = await reset(scale)
      // ra null: the mount's defaults (the readahead over the tree on); 0: off
      bfs(['mount', 'gen1', mnt, ...(ra === null ? [] : ['--tape-readahead', String(ra)]), ...(frames === null ? [] : ['--readahead', String(frames)])])
      let real
      let st
      try {
        real = sh(`cd '${mnt}' && find . -type f | xargs -P8 -n1 cat > /dev/null`)
        st = status()
        const cp = path.join(dir, 'j-check')
        sh(`cp -a '${mnt}' '${cp}' && diff -r '${src}' '${cp}' && rm -rf '${cp}'`)
      } finally {
        umount()
      }
      log(`(j) format ${F2 ? 2 : 1}, clock scale ${scale}, ${upf} units per file, tape readahead ${ra}, frame readahead ${frames}: find | xargs -P8 cat through the mount: ${h(st.clock - t0)} h simulated, ${st.served} recalls, ${st.mounts} mounts; ${real.toFixed(0)} s real`)
      const what = ra === null ? "the mount's defaults: the readahead over the tree (up to 256 units asked for ahead once opens follow the tree's order) and the per-file prefetch at open" : ra ? `\`--tape-readahead ${ra}\`` : upf > 1 ? '`--tape-readahead 0`: each open asks for all its units (the per-file prefetch), nothing ahead' : frames === 0 ? '`--tape-readahead 0 --readahead 0`: each open waits for its one recall, nothing else asked for' : '`--tape-readahead 0`: each open waits for its recall; the frame readahead reaches into the next units of the stream'
      jrows.push(`| ${scale} | ${N / upf} files of ${upf} unit${upf > 1 ? 's' : ''} (${what}) | **${h(st.clock - t0)}** | ${st.served} | ${st.mounts} | ${real.toFixed(0)} s | ≤ 4.2 h |`)
    }
    if (jrows.length) {
      p(`### (j) \`find | xargs -P8 cat\` through a real mount (no \`bfs recall\` first)${F2 ? ', format 2' : ''}`)
      p()
      p(`A real repository (\`bfs backup --unit-blocks 64\`: units of 256 KiB, files of 1 or 10 units), its ${N} units at random slots of one full cartridge (tape files of ${PER_FILE} slots of ${SLOT} MiB, as in (d)), the disk copies removed as migrate does; \`bfs mount gen1\`, then \`find . -type f | xargs -P8 -n1 cat\` in it. Every read of a unit on tape waits for its recall through the repository's recall service; opening a file asks for all its units (the mount's per-file prefetch). Simulated hours by the drive's clock (the service's status), from the cartridge in its slot to the last read; the copy is checked with \`diff -r\` afterwards. Baselines as (f) (the same model, 1,000 units scattered over one full tape): arrival order 13.3 h, PBS-like (its restore to disk) 8.0 h, lower bound 1.15 h. Clock scale: at 0 the library takes no real time, so a reader's next request (xargs starts a new cat: fork, exec, open, a few milliseconds) comes after the engine has already started its next batch with the little that was queued, and the scheduler sees a shallower queue than any real drive would give it (a recall takes about a minute, by which time every reader has asked again); at 0.01 (a 48 s locate takes 0.48 s of real time) those real overheads are small against tape time, as on a real library, and the figure is the one to compare with the target.`)
      p()
      p('| clock scale | files | hours | recalls | cartridge mounts | real time | target |')
      p('|---|---|---|---|---|---|---|')
      for (const r of jrows) p(r)
      p()
    }

    // ---- (k) bfs recall then cp -a from the mount, against bfs restore ----------------------
    if (want('k')) {
      await build(1)
      const nUnits = Repository.open(repoDir).manifest(1).units.length
      const unitBytes = Repository.open(repoDir).manifest(1).units.reduce((a, u) => a + u.bytes, 0)
      let t0 = await reset()
      const recall = JSON.parse(bfs(['recall', 'gen1', '--json']))
      bfs(['mount', 'gen1', mnt])
      let cpReal
      let a
      try {
        cpReal = sh(`cp -a '${mnt}' '${path.join(dir, 'k-cp')}'`)
        a = status()
      } finally {
        umount()
      }
      sh(`diff -r '${src}' '${path.join(dir, 'k-cp')}' && rm -rf '${path.join(dir, 'k-cp')}'`)
      const recallThenCp = a.clock - t0
      t0 = await reset()
      const rt = performance.now()
      bfs(['restore', 'gen1', path.join(dir, 'k-restore')])
      const restoreReal = (performance.now() - rt) / 1000
      const b = status()
      sh(`diff -r '${src}' '${path.join(dir, 'k-restore')}' && rm -rf '${path.join(dir, 'k-restore')}'`)
      const restore = b.clock - t0
      // the same restore with a buffer cache of 10 % of its data
      t0 = await reset()
      const limit = Math.floor(unitBytes / 10)
      bfs(['restore', 'gen1', path.join(dir, 'k-small'), '--buffer-cache', String(limit)])
      const c = status()
      sh(`diff -r '${src}' '${path.join(dir, 'k-small')}' && rm -rf '${path.join(dir, 'k-small')}'`)
      const small = c.clock - t0
      log(`(k) recall + cp -a ${h(recallThenCp)} h (${a.served} recalls), restore ${h(restore)} h (${b.served} recalls), ratio ${(recallThenCp / restore).toFixed(3)}; 10 % cache: ${h(small)} h, ${c.served} recalls, ${c.inserts} cache insertions`)
      p('### (k) `bfs recall` then `cp -a` from the mount, against `bfs restore` (real commands)')
      p()
      p(`The repository of (j) with one unit per file. Recall then copy: \`bfs recall gen1\` (estimate ${h(recall.estimateSeconds)} h), then \`bfs mount gen1\` and \`cp -a\` of the whole mount (every unit in the buffer cache by then). Restore: \`bfs restore gen1\` (the whole set planned up front, recalled in passes of half the cache, the next pass recalled while one is restored). Each from an empty cache and the cartridge in its slot; both copies checked with \`diff -r\` against the source. Simulated hours by the drive's clock.`)
      p()
      p('| | tape hours | recalls | real time | target |')
      p('|---|---|---|---|---|')
      p(`| \`bfs recall\` then \`cp -a\` from the mount | ${h(recallThenCp)} | ${a.served} | cp -a ${cpReal.toFixed(0)} s | |`)
      p(`| \`bfs restore\` (default cache, one pass) | ${h(restore)} | ${b.served} | ${restoreReal.toFixed(0)} s | |`)
      p(`| ratio | **${(recallThenCp / restore).toFixed(3)}** | | | within 10 % (0.90–1.10) |`)
      p(`| \`bfs restore --buffer-cache\` 10 % of its data (${(limit / 2 ** 20).toFixed(1)} MiB) | ${h(small)} | ${c.served} (units: ${nUnits}; recalled twice: **${c.served - nUnits}**) | | no unit twice |`)
      p()
    }
  } finally {
    umount()
    const pid = servicePid()
    if (pid) process.kill(pid, 'SIGTERM')
    for (let i = 0; i < 100 && servicePid(); i++) await sleep(100)
    if (!process.env.BENCH_KEEP) fs.rmSync(dir, { recursive: true, force: true })
  }
}
