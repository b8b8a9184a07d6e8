/**
 * The history the unit-rewrite tests share (test/format2-prune-rewrite.test.ts, plain, and
 * test/format2-encrypt-rewrite.test.ts, encrypted): generations whose units are partly shared.
 */
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { expect } from 'vitest'
import { diffTree, sh } from './helpers.js'

/** Runs a bfs command on a repository and returns its stdout (the caller's env and checks). */
export type Ok = (args: string[], repo: string) => Promise<string>

/** Deterministic incompressible bytes (the same history twice gives byte-identical units). */
export function bytes(n: number, seed: string): Buffer {
  const out = Buffer.alloc(n)
  for (let o = 0, i = 0; o < n; o += 32, i++) createHash('sha256').update(`${seed}/${i}`).digest().copy(out, o)
  return out
}

export interface History {
  repo: string
  src: string
  snaps: Map<number, string>
}

/**
 * `n` generations in `dir`/repo (made by `init`) whose units are partly shared: each adds `a<i>`
 * (1.5 MiB, removed by the next generation: its frames die whole), `keep/b<i>` (64 KiB, kept by
 * the next three generations) and overwrites 16 KiB of `c` in place, generations 2k−1 and 2k the
 * same range (stored block-incrementally: generation 2k−1's version dies once it is forgotten).
 * A forgotten odd generation's stream is then partly used: its b lives on, its a and its part of
 * c do not. `text`: each generation also adds `keep/t<i>`, text, so that compact has something
 * to gain. Each generation's tree is copied to `dir`/snap<i>.
 */
export async function rewriteHistory(dir: string, n: number, o: { ok: Ok; init: string[]; text?: boolean }): Promise<History> {
  const src = path.join(dir, 'src')
  fs.mkdirSync(path.join(src, 'keep'), { recursive: true })
  fs.writeFileSync(path.join(src, 'keep/const'), 'constant\n'.repeat(1000))
  fs.writeFileSync(path.join(src, 'c'), bytes(512 * 1024, 'c'))
  const repo = path.join(dir, 'repo')
  await o.ok(o.init, repo)
  const snaps = new Map<number, string>()
  for (let i = 1; i <= n; i++) {
    fs.rmSync(path.join(src, `a${i - 1}`), { force: true })
    fs.writeFileSync(path.join(src, `a${i}`), bytes(1536 * 1024, `a${i}`))
    fs.rmSync(path.join(src, 'keep', `b${i - 4}`), { force: true })
    fs.writeFileSync(path.join(src, 'keep', `b${i}`), bytes(64 * 1024, `b${i}`))
    if (o.text) fs.writeFileSync(path.join(src, 'keep', `t${i}`), Array.from({ length: 20_000 }, (_, k) => `gen ${i} line ${k} ${k % 13}`).join('\n'))
    const fd = fs.openSync(path.join(src, 'c'), 'r+')
    fs.writeSync(fd, bytes(16 * 1024, `c${i}`), 0, 16 * 1024, (Math.floor((i - 1) / 2) % 32) * 16 * 1024)
    fs.closeSync(fd)
    await o.ok(['backup', src], repo)
    const snap = path.join(dir, `snap${i}`)
    await sh(`cp -a '${src}' '${snap}'`)
    snaps.set(i, snap)
  }
  return { repo, src, snaps }
}

/** Restores each of `gens` into `work` and compares it with that generation's snapshot. */
export async function restoresIdentical(h: History, gens: number[], work: string, ok: Ok): Promise<void> {
  for (const g of gens) {
    const out = path.join(work, `restore-${path.basename(path.dirname(h.repo))}-${g}`)
    fs.rmSync(out, { recursive: true, force: true })
    await ok(['restore', `gen${g}`, out], h.repo)
    expect(await diffTree(h.snaps.get(g)!, out), `gen${g}`).toBe('')
    fs.rmSync(out, { recursive: true, force: true })
  }
}
