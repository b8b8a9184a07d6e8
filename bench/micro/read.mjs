#!/usr/bin/env node
// Reader micro-benchmark: the mount's JavaScript read path without FUSE or the kernel, for
// each reader implementation, on the same repository, alternating.
//
//   node bench/micro/read.mjs [--runs 5] [--impls old,new] [--tasks cat,pread]
//        [--tree DIR] [--img FILE] [--work DIR] [--bfs bin/bfs] [--cache BYTES] [--preads 20000]
//   node bench/micro/read.mjs --repo DIR --tree-gen N --img-gen M …   (an existing repository)
//
// Tasks (each in a fresh child process, flags and environment as bin/bfs gives a mount):
//   cat    every regular file of the tree generation read front to back in 128 KiB reads
//          (the kernel's pattern for `cat`, so readahead engages), one file at a time;
//   pread  20,000 reads of 4 KiB at seeded random 4 KiB-aligned offsets of the image
//          generation's file, one at a time (bench/pread.mjs's pattern, more of them).
// Implementations:
//   old    vfs/tree.ts Vfs.open/read/release (what `bfs mount --no-native-read` runs),
//          cache --cache bytes (default 16 MiB, the mount's). Before issue 12's switch-over
//          it read through vfs/frames.ts; since then through BlockReader, so run this
//          script from two trees (the base and the branch) to compare the mount's path;
//   new    blocks/reader.ts BlockReader.read over the Store contract directly (the same
//          lookups through GenView), same cache and readahead.
// Each child prints wall ms, bytes, a checksum (both implementations must agree) and its
// peak RSS. The parent runs old/new alternately (A B B A …) and prints medians.
//
// Sources default to the bench's quick corpora ($BENCH_DIR/corpus/quick/{tree,img/linux-6.1.img},
// made by `bash bench/run.sh quick`); the repository is built once with bin/bfs into
// $BENCH_DIR/micro-read and reused while the sources' stamp is unchanged.
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const DIST = path.join(ROOT, 'dist')
const BENCH_DIR = process.env.BENCH_DIR || '/var/tmp/bfs-bench'

function args(argv) {
  const o = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`)
    const k = a.slice(2)
    if (k === 'child') o.child = argv.slice(i + 1)
    if (k === 'child') break
    o[k] = argv[++i]
  }
  return o
}

// ------------------------------------------------------------------ child: one measurement

async function child([impl, task, repoDir, genStr, cacheStr, npreadStr]) {
  const gen = Number(genStr)
  const cacheBytes = Number(cacheStr)
  const { Repository } = await import(pathToFileURL(path.join(DIST, 'repo/repository.js')))
  const { Vfs, GenView } = await import(pathToFileURL(path.join(DIST, 'vfs/tree.js')))
  const FILE = 1 // EntryType.File (a const enum: not in dist)
  const repo = Repository.open(repoDir)
  const view = new GenView(repo, repo.manifest(gen))
  // the work list, untimed: paths of every regular file (tree), or the largest file (image)
  const cat = view.cat
  const pathOf = (i) => {
    const parts = []
    for (let j = i; j > 0; j = cat.parent[j]) parts.push(cat.name(j))
    return Buffer.concat(parts.reverse().flatMap((p) => [Buffer.from('/'), p]))
  }
  const files = []
  for (let i = 0; i < cat.length; i++) if (cat.type[i] === FILE) files.push({ i, path: pathOf(i), size: view.entry(view.leader(i)).size })
  let readFile // (pathBuf) => { size, read(dst, len, pos): Promise<number>, done() }
  let finish
  if (impl === 'old') {
    const vfs = new Vfs(repo, { generation: gen, cacheBytes, nativeReads: false })
    vfs.startWarming()
    readFile = (p) => {
      const h = vfs.open(p)
      return { read: (dst, len, pos) => vfs.read(h, dst, len, pos), done: () => vfs.release(h) }
    }
    finish = () => vfs.close()
  } else if (impl === 'new') {
    const { repoBlockReader } = await import(pathToFileURL(path.join(DIST, 'repo/stream-source.js')))
    const reader = repoBlockReader(repo, { cacheBytes, maxOpenUnits: 1024 })
    reader.warm(gen)
    // the lookups and extents exactly as the old path makes them (a Vfs's view: lazily decoded maps)
    const v2 = new Vfs(repo, { generation: gen, cacheBytes: 1 << 20 }).view(gen)
    readFile = (p) => {
      const i = v2.lookup(p)
      const d = v2.entry(v2.leader(i))
      const f = reader.file(v2.extents(i), d.size, d.objGen ? { gen: d.objGen, index: d.objIndex } : undefined)
      return { read: (dst, len, pos) => reader.read(f, dst, len, pos), done: () => undefined }
    }
    finish = () => reader.close()
  } else throw new Error(`unknown implementation ${impl}`)

  const dst = Buffer.alloc(131072)
  let bytes = 0
  let sum = 0
  const t0 = process.hrtime.bigint()
  const c0 = process.cpuUsage()
  if (task === 'cat') {
    for (const f of files) {
      const h = readFile(f.path)
      for (let pos = 0; ; pos += 131072) {
        const n = await h.read(dst, 131072, pos)
        if (n === 0) break
        bytes += n
        sum = (sum + dst[0] + dst[n - 1] * 3) >>> 0
      }
      h.done()
    }
  } else if (task === 'pread') {
    const big = files.reduce((a, b) => (b.size > a.size ? b : a))
    const h = readFile(big.path)
    const blocks = Math.floor(big.size / 4096)
    let s = 42
    for (let k = 0; k < Number(npreadStr); k++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0
      const pos = ((s >>> 4) % blocks) * 4096
      const n = await h.read(dst, 4096, pos)
      bytes += n
      sum = (sum + dst[0] + dst[n - 1] * 3 + dst[2048]) >>> 0
    }
    h.done()
  } else throw new Error(`unknown task ${task}`)
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  const cu = process.cpuUsage(c0)
  await finish()
  process.stdout.write(JSON.stringify({ impl, task, ms, cpuMs: (cu.user + cu.system) / 1000, bytes, sum, rssMiB: process.resourceUsage().maxRSS / 1024, files: files.length }) + '\n')
}

// ------------------------------------------------------------------ parent

function ensureRepo(o) {
  if (o.repo) return { repo: path.resolve(o.repo), treeGen: Number(o['tree-gen'] ?? 1), imgGen: Number(o['img-gen'] ?? 2) }
  const tree = path.resolve(o.tree ?? path.join(BENCH_DIR, 'corpus/quick/tree'))
  const img = path.resolve(o.img ?? path.join(BENCH_DIR, 'corpus/quick/img/linux-6.1.img'))
  for (const p of [tree, img]) if (!fs.existsSync(p)) throw new Error(`${p} does not exist: run 'bash bench/run.sh quick' once to make the corpora, or pass --tree and --img`)
  const work = path.resolve(o.work ?? path.join(BENCH_DIR, 'micro-read'))
  const bfsBin = path.resolve(o.bfs ?? path.join(ROOT, 'bin/bfs'))
  const stamp = JSON.stringify({ v: 1, tree, img, treeM: fs.statSync(tree).mtimeMs, imgM: fs.statSync(img).mtimeMs, imgS: fs.statSync(img).size })
  const repo = path.join(work, 'repo')
  if (fs.existsSync(path.join(work, 'stamp')) && fs.readFileSync(path.join(work, 'stamp'), 'utf8') === stamp) return { repo, treeGen: 1, imgGen: 2 }
  fs.rmSync(work, { recursive: true, force: true })
  fs.mkdirSync(work, { recursive: true })
  for (const a of [['init'], ['backup', tree], ['backup', '--volume', img]]) {
    console.error(`[micro] bfs ${a.join(' ')}`)
    const r = spawnSync(bfsBin, ['--repo', repo, ...a], { stdio: ['ignore', 'ignore', 'inherit'] })
    if (r.status !== 0) throw new Error(`bfs ${a.join(' ')} failed (${r.status})`)
  }
  fs.writeFileSync(path.join(work, 'stamp'), stamp)
  return { repo, treeGen: 1, imgGen: 2 }
}

function runChild(impl, task, repo, gen, cache, preads) {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, UV_THREADPOOL_SIZE: '16', MALLOC_ARENA_MAX: '2' }
    const c = spawn(process.execPath, ['--max-semi-space-size=2', fileURLToPath(import.meta.url), '--child', impl, task, repo, String(gen), String(cache), String(preads)], { env, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    c.stdout.on('data', (b) => (out += b))
    c.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`${impl} ${task} exited ${code}`))))
  })
}

const median = (a) => {
  const s = [...a].sort((x, y) => x - y)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

async function main() {
  const o = args(process.argv.slice(2))
  if (o.child) return child(o.child)
  const runs = Number(o.runs ?? 5)
  const impls = (o.impls ?? 'old,new').split(',')
  const tasks = (o.tasks ?? 'cat,pread').split(',')
  const cache = Number(o.cache ?? 16 << 20)
  const preads = Number(o.preads ?? 20000)
  if (impls.includes('new') && !fs.existsSync(path.join(DIST, 'blocks/reader.js'))) throw new Error('dist/blocks/reader.js is missing: make build')
  const { repo, treeGen, imgGen } = ensureRepo(o)
  const res = {}
  for (const task of tasks) {
    const gen = task === 'cat' ? treeGen : imgGen
    // one untimed round first: page cache and disk state the same for every timed run
    for (const impl of impls) await runChild(impl, task, repo, gen, cache, Math.min(preads, 2000))
    for (let r = 1; r <= runs; r++) {
      const order = r % 2 ? impls : [...impls].reverse()
      for (const impl of order) {
        const x = await runChild(impl, task, repo, gen, cache, preads)
        ;((res[task] ??= {})[impl] ??= []).push(x)
        console.error(`[micro] ${task} ${impl} run ${r}: ${x.ms.toFixed(0)} ms (CPU ${x.cpuMs.toFixed(0)} ms), ${(x.bytes / 2 ** 20).toFixed(0)} MiB, RSS ${x.rssMiB.toFixed(1)} MiB, sum ${x.sum}`)
      }
    }
  }
  console.log(`reader micro-benchmark: ${runs} alternating runs per implementation, repository ${repo}, cache ${cache} bytes`)
  console.log('| task | impl | wall ms median (min–max) | MiB/s | CPU ms median (min–max) | peak RSS MiB median | wall vs old | CPU vs old |')
  console.log('|---|---|---|---|---|---|---|---|')
  for (const task of tasks) {
    const byImpl = res[task]
    const sums = new Set(Object.values(byImpl).flat().map((x) => `${x.bytes}:${x.sum}`))
    for (const impl of impls) {
      const xs = byImpl[impl]
      const ms = xs.map((x) => x.ms)
      const m = median(ms)
      const cpu = xs.map((x) => x.cpuMs)
      const ratio = byImpl.old && impl !== 'old' ? (m / median(byImpl.old.map((x) => x.ms))).toFixed(3) : ''
      const cratio = byImpl.old && impl !== 'old' ? (median(cpu) / median(byImpl.old.map((x) => x.cpuMs))).toFixed(3) : ''
      console.log(`| ${task} | ${impl} | ${m.toFixed(0)} (${Math.min(...ms).toFixed(0)}–${Math.max(...ms).toFixed(0)}) | ${(xs[0].bytes / 2 ** 20 / (m / 1000)).toFixed(0)} | ${median(cpu).toFixed(0)} (${Math.min(...cpu).toFixed(0)}–${Math.max(...cpu).toFixed(0)}) | ${median(xs.map((x) => x.rssMiB)).toFixed(1)} | ${ratio} | ${cratio} |`)
    }
    if (sums.size !== 1) {
      console.log(`| ${task} | MISMATCH | implementations read different bytes: ${[...sums].join(', ')} | | | | | |`)
      process.exitCode = 1
    }
  }
}

main().catch((err) => {
  console.error(`read.mjs: ${err.message}`)
  process.exit(1)
})
