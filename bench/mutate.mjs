#!/usr/bin/env node
// Incremental-backup changes to a corpus, and their exact undo.
//   node mutate.mjs apply tree DIR ROUND STATE   append a line to every 100th file (sorted walk)
//   node mutate.mjs apply img FILE ROUND STATE   overwrite ten random 4 KiB blocks (seeded by ROUND)
//   node mutate.mjs revert STATE                 restore the original bytes, sizes and mtimes
// STATE (JSON) is written before anything is touched, so an interrupted run can be undone.
// The admin step (bench/admin.sh, issue 17) works on its own copy of the tree, so these two
// have no undo:
//   node mutate.mjs gen DIR ROUND [KEEP]      1 % of the regular files (sorted walk, seeded by
//        ROUND): 60 % of them changed (a line appended), 20 % removed, and as many added (a
//        header line + the bytes of another file of the tree, next to a random file)
//   node mutate.mjs rename DIR SEED [KEEP]    1 % of the regular files: half renamed (in place
//        or into another directory), half copied into another directory under a new name
// KEEP: comma-separated file names never removed or renamed (find's patterns must stay
// present in every generation). Both print one JSON line: counts and bytes.
import fs from 'node:fs'
import path from 'node:path'
import { spawnSync } from 'node:child_process'

const BLOCK = 4096

function prng(seed) { // mulberry32
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function walk(dir, out = []) {
  const ents = fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  for (const e of ents) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) walk(p, out)
    else if (e.isFile()) out.push(p)
  }
  return out
}

const times = (st) => ({ atimeNs: st.atimeNs.toString(), mtimeNs: st.mtimeNs.toString() })
const setTimes = (p, t) => fs.utimesSync(p, Number(BigInt(t.atimeNs)) / 1e9, Number(BigInt(t.mtimeNs)) / 1e9)
const save = (file, state) => { fs.writeFileSync(file + '.tmp', JSON.stringify(state)); fs.renameSync(file + '.tmp', file) }

function applyTree(dir, round, stateFile) {
  let state
  if (fs.existsSync(stateFile)) state = JSON.parse(fs.readFileSync(stateFile, 'utf8'))
  else {
    const files = walk(dir).filter((_, i) => (i + 1) % 100 === 0)
    state = { kind: 'tree', dir, files: files.map((p) => { const st = fs.statSync(p, { bigint: true }); return { p, size: Number(st.size), ...times(st) } }) }
    save(stateFile, state)
  }
  for (const f of state.files) fs.appendFileSync(f.p, `bfs-bench incremental change, round ${round}\n`)
  console.log(`appended a line to ${state.files.length} files`)
}

function applyImg(file, round, stateFile) {
  let state
  if (fs.existsSync(stateFile)) state = JSON.parse(fs.readFileSync(stateFile, 'utf8'))
  else state = { kind: 'img', file, ...times(fs.statSync(file, { bigint: true })), blocks: {} }
  const fd = fs.openSync(file, 'r+')
  const nblocks = Math.floor(fs.fstatSync(fd).size / BLOCK)
  const rnd = prng(0x5eed0000 + Number(round))
  const offs = []
  while (offs.length < 10) { const o = Math.floor(rnd() * nblocks) * BLOCK; if (!offs.includes(o)) offs.push(o) }
  const buf = Buffer.alloc(BLOCK)
  for (const o of offs) {
    if (state.blocks[o]) continue
    fs.readSync(fd, buf, 0, BLOCK, o)
    state.blocks[o] = buf.every((b) => b === 0) ? { zero: true } : { data: buf.toString('base64') }
  }
  save(stateFile, state)
  for (const o of offs) {
    for (let i = 0; i < BLOCK; i++) buf[i] = Math.floor(rnd() * 256)
    fs.writeSync(fd, buf, 0, BLOCK, o)
  }
  fs.fsyncSync(fd)
  fs.closeSync(fd)
  console.log(`overwrote 10 blocks at ${offs.join(',')}`)
}

function revert(stateFile) {
  const state = JSON.parse(fs.readFileSync(stateFile, 'utf8'))
  if (state.kind === 'tree') {
    for (const f of state.files) { fs.truncateSync(f.p, f.size); setTimes(f.p, f) }
  } else {
    const fd = fs.openSync(state.file, 'r+')
    for (const [o, b] of Object.entries(state.blocks)) {
      if (b.zero) {
        fs.writeSync(fd, Buffer.alloc(BLOCK), 0, BLOCK, Number(o))
        spawnSync('fallocate', ['-p', '-o', String(o), '-l', String(BLOCK), state.file]) // keep it sparse
      } else fs.writeSync(fd, Buffer.from(b.data, 'base64'), 0, BLOCK, Number(o))
    }
    fs.fsyncSync(fd)
    fs.closeSync(fd)
    setTimes(state.file, state)
  }
  fs.unlinkSync(stateFile)
}

// pick K distinct indices < N from rnd, skipping those for which skip(i) is true
function pick(rnd, n, k, taken, skip = () => false) {
  const out = []
  let guard = 0
  while (out.length < k && guard++ < k * 100) {
    const i = Math.floor(rnd() * n)
    if (taken.has(i) || skip(i)) continue
    taken.add(i); out.push(i)
  }
  return out
}

function genTree(dir, round, keep) {
  const files = walk(dir)
  const rnd = prng(0x17000000 + Number(round))
  const n = Math.max(1, Math.round(files.length / 100))
  const nChanged = Math.round(n * 0.6), nRemoved = Math.round(n * 0.2), nAdded = n - nChanged - nRemoved
  const taken = new Set()
  const kept = (i) => keep.has(path.basename(files[i]))
  const changed = pick(rnd, files.length, nChanged, taken)
  const removed = pick(rnd, files.length, nRemoved, taken, kept)
  const res = { round: Number(round), files: files.length, changed: 0, changed_bytes: 0, removed: 0, removed_bytes: 0, added: 0, added_bytes: 0 }
  for (const i of changed) {
    fs.appendFileSync(files[i], `bfs-bench admin change, round ${round}\n`)
    res.changed++; res.changed_bytes += fs.statSync(files[i]).size
  }
  // added files: their content comes from files not removed in this round
  const adds = []
  for (let k = 0; k < nAdded; k++) {
    const near = files[Math.floor(rnd() * files.length)]
    let from
    do from = Math.floor(rnd() * files.length); while (removed.includes(from))
    adds.push([path.join(path.dirname(near), `bfs-bench-added-r${round}-${k}.txt`), files[from]])
  }
  for (const [p, from] of adds) {
    const data = Buffer.concat([Buffer.from(`bfs-bench admin: added in round ${round}\n`), fs.readFileSync(from)])
    fs.writeFileSync(p, data)
    res.added++; res.added_bytes += data.length
  }
  for (const i of removed) { res.removed_bytes += fs.statSync(files[i]).size; fs.unlinkSync(files[i]); res.removed++ }
  console.log(JSON.stringify(res))
}

function renameTree(dir, seed, keep) {
  const files = walk(dir)
  const dirs = [...new Set(files.map((p) => path.dirname(p)))].sort()
  const rnd = prng(0x17170000 + Number(seed))
  const n = Math.max(2, Math.round(files.length / 100))
  const taken = new Set()
  const chosen = pick(rnd, files.length, n, taken, (i) => keep.has(path.basename(files[i])))
  const res = { seed: Number(seed), files: files.length, renamed: 0, renamed_bytes: 0, moved: 0, copied: 0, copied_bytes: 0 }
  chosen.forEach((i, k) => {
    const p = files[i], size = fs.statSync(p).size
    const other = dirs[Math.floor(rnd() * dirs.length)]
    if (k % 2 === 0) {   // rename: every other one into another directory
      const into = k % 4 === 0 ? path.dirname(p) : other
      fs.renameSync(p, path.join(into, `${path.basename(p)}.renamed-${seed}-${k}`))
      res.renamed++; res.renamed_bytes += size; if (into !== path.dirname(p)) res.moved++
    } else {             // copy (cp -p: same bytes, mode and mtime)
      const q = path.join(other, `copy-${seed}-${k}-${path.basename(p)}`)
      fs.copyFileSync(p, q)
      const st = fs.statSync(p)
      fs.chmodSync(q, st.mode & 0o7777); fs.utimesSync(q, st.atime, st.mtime)
      res.copied++; res.copied_bytes += size
    }
  })
  console.log(JSON.stringify(res))
}

const [cmd, a, b, c, d] = process.argv.slice(2)
const keepSet = (s) => new Set((s || '').split(',').filter(Boolean))
if (cmd === 'gen') genTree(a, b, keepSet(c))
else if (cmd === 'rename') renameTree(a, b, keepSet(c))
else
if (cmd === 'apply' && a === 'tree') applyTree(b, c, d)
else if (cmd === 'apply' && a === 'img') applyImg(b, c, d)
else if (cmd === 'revert') revert(a)
else { console.error('usage: mutate.mjs apply tree|img PATH ROUND STATE | revert STATE | gen DIR ROUND [KEEP] | rename DIR SEED [KEEP]'); process.exit(64) }
