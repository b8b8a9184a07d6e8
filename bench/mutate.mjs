#!/usr/bin/env node
// Incremental-backup changes to a corpus, and their exact undo.
//   node mutate.mjs apply tree DIR ROUND STATE   append a line to every 100th file (sorted walk)
//   node mutate.mjs apply img FILE ROUND STATE   overwrite ten random 4 KiB blocks (seeded by ROUND)
//   node mutate.mjs revert STATE                 restore the original bytes, sizes and mtimes
// STATE (JSON) is written before anything is touched, so an interrupted run can be undone.
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

const [cmd, a, b, c, d] = process.argv.slice(2)
if (cmd === 'apply' && a === 'tree') applyTree(b, c, d)
else if (cmd === 'apply' && a === 'img') applyImg(b, c, d)
else if (cmd === 'revert') revert(a)
else { console.error('usage: mutate.mjs apply tree|img PATH ROUND STATE | revert STATE'); process.exit(64) }
