/**
 * `bfs migrate` through the real CLI on a real repository and a virtual tape library with
 * clock scale 0: what moves, what stays on disk, the catalog, reading every generation back
 * through the tiered store, and kill -9 at random moments.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Repository } from '../src/repo/repository.js'
import { openDataStore } from '../src/repo/stores.js'
import { bfs, newRepoF, tmpdir } from './helpers.js'

import { backupsAndTier, census as censusOf, migrateKilled, readGeneration, unitKeys, writeTree } from './tape-helpers.js'

let work: string
beforeAll(() => {
  work = tmpdir('bfs-migrate-')
})
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

/** ~24 MB in 120 files, half compressible; `round` changes some of them. */
const tree = (dir: string, round: number): void => writeTree(dir, round, { dirs: 6, files: 20, base: 80_000 })

/** A repository with 3 generations of `src` (1 MiB units) and a tape tier (clock 0); each generation's tree restored for comparison. */
async function setup(name: string): Promise<{ repo: string; expected: Map<number, Map<string, string>> }> {
  // format 1: the test reads the migrated repository through format 1's Repository and data store; format 2: format2-tape.test.ts
  const repo = await newRepoF(1, path.join(work, name))
  const expected = await backupsAndTier(repo, path.join(work, `${name}-src`), path.join(work, `${name}-vtl`), tree)
  return { repo, expected }
}

/** Reads every generation through the repository's data store (this process reads the tape) and compares. */
async function checkAll(repo: string, expected: Map<number, Map<string, string>>): Promise<void> {
  const ds = openDataStore(Repository.open(repo), { recall: 'local', engine: { windowMs: 0, lingerMs: 20 }, cacheBytes: 1 << 30 })
  try {
    for (const [id, want] of expected) {
      const got = await readGeneration(repo, id, ds.store)
      expect(got.size, `gen${id}`).toBe(want.size)
      for (const [p, h] of want) expect(got.get(p), `gen${id}:${p}`).toBe(h)
    }
  } finally {
    await ds.close()
  }
}

/** Where each unit of the generations is: on disk, on tape (catalog), both, or neither. */
const census = (repo: string, gens: number[]): ReturnType<typeof censusOf> => censusOf(repo, gens.flatMap((g) => unitKeys(repo, g)))

describe('bfs migrate', () => {
  it('moves the chosen generations\' units to tape; metadata stays; every generation reads the same through the tiered store', async () => {
    const { repo, expected } = await setup('basic')
    const aside = path.join(work, 'basic-unit')
    fs.copyFileSync(path.join(repo, 'gens/00000002/unit-00000000'), aside)
    const dry = await bfs(['migrate', 'gen1-gen2', '--dry-run'], { repo })
    expect(dry.stdout).toMatch(/^would migrate \d+ units \([\d.]+ MiB\) of gen1, gen2 to tier tape1\n$/)
    expect(fs.existsSync(path.join(repo, 'tape'))).toBe(false)
    expect(fs.existsSync(path.join(repo, 'gens/00000002/unit-00000000'))).toBe(true)
    const m = await bfs(['migrate', 'gen1-gen2', '--verify', '--file-size', '4M', '--json'], { repo })
    expect(m.stderr).toBe('')
    expect(m.code).toBe(0)
    const j = JSON.parse(m.stdout)
    const units = unitKeys(repo, 1).length + unitKeys(repo, 2).length
    expect(j).toMatchObject({ tier: 'tape1', gens: [1, 2], units, removed: units, cartridges: ['BFS001L9'], failed: [] })
    expect(j.files).toBeGreaterThan(3) // 4 MiB tape files
    expect(j.verifySeconds).toBeGreaterThan(0)
    const c = census(repo, [1, 2, 3])
    expect(c).toEqual({ disk: unitKeys(repo, 3).length, tape: units, both: 0, lost: [] })
    // catalog, block maps, hashes and the manifests stay on disk
    for (const g of ['00000001', '00000002']) expect(fs.readdirSync(path.join(repo, 'gens', g)).sort()).toEqual(['catalog', 'hashes', 'maps'])
    // ls and generations never touch tape (the library's clock does not move)
    const clock = JSON.parse(fs.readFileSync(path.join(work, 'basic-vtl/state.json'), 'utf8')).drives[0].clock
    expect((await bfs(['ls', 'gen1'], { repo })).code).toBe(0)
    expect((await bfs(['generations'], { repo })).code).toBe(0)
    expect(JSON.parse(fs.readFileSync(path.join(work, 'basic-vtl/state.json'), 'utf8')).drives[0].clock).toBe(clock)
    await checkAll(repo, expected)
    // what a migration killed between its catalog commit and removing the disk copy leaves:
    // the unit on disk and on tape; readers use the disk copy; the next run removes it
    fs.copyFileSync(aside, path.join(repo, 'gens/00000002/unit-00000000'))
    expect(census(repo, [2]).both).toBe(1)
    await checkAll(repo, expected)
    const left = await bfs(['migrate', 'gen2'], { repo })
    expect(left.stdout).toMatch(/^nothing to migrate to tier tape1 \(\d+ units of gen2 already on tape\); removed 1 disk copy of units already on tape\n$/)
    expect(census(repo, [2]).both).toBe(0)
    // again: nothing to do
    const again = await bfs(['migrate', 'gen1-gen2'], { repo })
    expect(again.stdout).toMatch(/^nothing to migrate to tier tape1 \(\d+ units of gen1, gen2 already on tape\)\n$/)
    // --keep-on-disk 1: gen3's own units stay, and so do the older units gen3 reads (none left on disk here but its own)
    const keep = await bfs(['migrate', '--keep-on-disk', '1', '--json'], { repo })
    expect(JSON.parse(keep.stdout)).toMatchObject({ gens: [1, 2], units: 0 })
    expect(census(repo, [3]).disk).toBe(unitKeys(repo, 3).length)
  })

  it('--keep-on-disk N keeps what the N newest generations read, even in older generations', async () => {
    const { repo, expected } = await setup('keep')
    const m = await bfs(['migrate', '--keep-on-disk', '1', '--json'], { repo })
    expect(m.code, m.stderr).toBe(0)
    const j = JSON.parse(m.stdout)
    expect(j.gens).toEqual([1, 2])
    expect(j.kept).toBeGreaterThan(0) // gen3 is incremental: it reads unchanged files' data from gen1 and gen2
    // gen3 reads only from disk now: with the library gone, it still reads
    fs.renameSync(path.join(work, 'keep-vtl'), path.join(work, 'keep-vtl-away'))
    try {
      const ds = openDataStore(Repository.open(repo), { recall: 'local', engine: { windowMs: 0 } })
      await ds.close()
    } catch {
      // the tier's library is gone: reading gen3 must not need it — read with the disk store alone
    }
    const got = await readGeneration(repo, 3, Repository.open(repo).store)
    for (const [p, h] of expected.get(3)!) expect(got.get(p), p).toBe(h)
    fs.renameSync(path.join(work, 'keep-vtl-away'), path.join(work, 'keep-vtl'))
    await checkAll(repo, expected)
  })

  it('kill -9 at random moments loses nothing: every generation reads the same, and the next run finishes the job', async () => {
    const { repo, expected } = await setup('kill')
    const all = [1, 2, 3]
    const total = all.reduce((a, g) => a + unitKeys(repo, g).length, 0)
    let killed = 0
    for (let round = 0; round < 6; round++) {
      // a commit (flush, read-back, catalog record, disk copies removed) after every 1 MiB tape file
      const onDisk = (): number => all.reduce((a, g) => a + fs.readdirSync(path.join(repo, 'gens', String(g).padStart(8, '0'))).filter((n) => /^unit-\d+$/.test(n)).length, 0)
      const code = await migrateKilled(repo, ['gen1-3', '--verify', '--file-size', '1M', '--commit-files', '1'], onDisk)
      if (code === null) killed++
      const c = census(repo, all)
      if (process.env.BFS_TEST_LOG) console.log(`round ${round}: exit ${code}, ${JSON.stringify({ ...c, lost: c.lost.length })}`)
      expect(c.lost, `round ${round}`).toEqual([])
      expect(c.disk + c.tape + c.both).toBe(total)
      await checkAll(repo, expected)
    }
    expect(killed).toBeGreaterThan(0)
    // the repository takes a backup after the kills (the killed writer's lock is stale), and the new generation reads back
    const b = await bfs(['backup', path.join(work, 'kill-src'), '--unit-blocks', '256', '--frame-blocks', '64'], { repo })
    expect(b.code, b.stderr).toBe(0)
    expected.set(4, expected.get(3)!)
    await checkAll(repo, expected)
    // the next run: its litter swept, leftovers removed
    const fin = await bfs(['migrate', 'gen1-3', '--verify', '--json'], { repo })
    expect(fin.code, fin.stderr).toBe(0)
    expect(census(repo, all)).toEqual({ disk: 0, tape: total, both: 0, lost: [] })
    expect(fs.readdirSync(path.join(repo, 'tape')).every((n) => /^rec-\d{8}$/.test(n))).toBe(true)
    expect(fs.existsSync(path.join(repo, 'lock'))).toBe(false)
    await checkAll(repo, expected)
  })

  it('bad input: one line, a documented exit code', async () => {
    const repo = await newRepoF(1, path.join(work, 'bad'))
    const none = await bfs(['migrate'], { repo })
    expect(none.code).toBe(2)
    expect(none.stderr).toMatch(/^bfs: say what to migrate: generations, --older-than or --keep-on-disk\n$/)
    const noTier = await bfs(['migrate', '--older-than', '30d'], { repo })
    expect(noTier.code).toBe(1)
    expect(noTier.stderr).toMatch(/^bfs: .* has no tier to migrate to \(add one with 'bfs tier add NAME --vtl DIR'\)\n$/)
    const dur = await bfs(['migrate', '--older-than', 'soon'], { repo })
    expect(dur.code).toBe(2)
    expect(dur.stderr).toMatch(/^bfs: .*a duration like 90d, 12h, 2w or 30m/)
    const range = await bfs(['migrate', 'gen5-gen2'], { repo })
    expect(range.code).toBe(2)
    expect(range.stderr).toBe('bfs: gen5-gen2: the range ends before it starts\n')
    fs.writeFileSync(path.join(repo, 'lock'), JSON.stringify({ pid: process.pid, host: (await import('node:os')).hostname(), time: new Date().toISOString(), command: 'backup' }) + '\n')
    expect((await bfs(['tier', 'add', 't', '--vtl', path.join(work, 'bad-vtl'), '--clock-scale', '0'], { repo })).code).toBe(0)
    const locked = await bfs(['migrate', '--older-than', '0s'], { repo })
    expect(locked.code).toBe(5)
    expect(locked.stderr).toMatch(/^bfs: repository .* is locked by pid \d+/)
    fs.rmSync(path.join(repo, 'lock'))
  })
})
