/**
 * `bfs tier add | ls | status` through the real CLI: the library it creates on disk, what
 * the repository records, and one line with a documented exit code for every bad input.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LTO9 } from '../src/tape/model.js'
import { VirtualTapeLibrary } from '../src/tape/vtl.js'
import { bfs, newRepo, tmpdir } from './helpers.js'

let work: string
let repo: string
beforeAll(async () => {
  work = tmpdir('bfs-tape-cli-')
  repo = await newRepo(path.join(work, 'repo'))
})
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

/** One line on stderr, starting with `bfs: `, and this exit code. */
function failsWith(r: { code: number; stderr: string; stdout: string }, code: number, re: RegExp): void {
  expect(r.code).toBe(code)
  expect(r.stdout).toBe('')
  expect(r.stderr).toMatch(/^bfs: [^\n]+\n$/)
  expect(r.stderr).toMatch(re)
}

describe('bfs tier', () => {
  it('adds a virtual tape library with its cartridges in slots, lists it and shows its state', async () => {
    const dir = path.join(work, 'vtl1')
    const add = await bfs(['tier', 'add', 'tape1', '--vtl', dir, '--cartridges', '4', '--drives', '2', '--clock-scale', '0'], { repo })
    expect(add.stderr).toBe('')
    expect(add.code).toBe(0)
    expect(add.stdout).toMatch(/^added tier tape1: virtual tape library .*vtl1 \(lto9, 4 cartridges BFS001L9…, 2 drives, clock scale 0\)\n$/)
    // the library on disk: a state file and one cartridge file per label, each only a header
    expect(fs.readdirSync(path.join(dir, 'cartridges')).sort()).toEqual(['BFS001L9.tape', 'BFS002L9.tape', 'BFS003L9.tape', 'BFS004L9.tape'])
    for (const f of fs.readdirSync(path.join(dir, 'cartridges'))) expect(fs.statSync(path.join(dir, 'cartridges', f)).size).toBe(4096)
    const st = VirtualTapeLibrary.readState(dir)
    expect(st).toMatchObject({ model: 'lto9', clockScale: 0, slots: ['BFS001L9', 'BFS002L9', 'BFS003L9', 'BFS004L9'], capacityBlocks: Math.floor(18e12 / 2 ** 20) })
    expect(st.drives).toHaveLength(2)
    // the repository records the tier (BFSTIER envelope)
    const tierFile = fs.readFileSync(path.join(repo, 'tiers', 'tape1'))
    expect(tierFile.toString('latin1', 0, 8)).toBe('BFSTIER\0')
    expect(JSON.parse(tierFile.subarray(64).toString())).toMatchObject({ name: 'tape1', kind: 'vtl', dir, model: 'lto9' })

    // the defaults: lto9, 10 cartridges, 1 drive, real time
    expect((await bfs(['tier', 'add', 'tape2', '--vtl', path.join(work, 'vtl2')], { repo })).code).toBe(0)
    expect(VirtualTapeLibrary.readState(path.join(work, 'vtl2'))).toMatchObject({ clockScale: 1, cartridges: Array.from({ length: 10 }, (_, i) => `BFS${String(i + 1).padStart(3, '0')}L9`) })

    const ls = await bfs(['tier', 'ls'], { repo })
    expect(ls.code).toBe(0)
    expect(ls.stdout.split('\n')[0]).toMatch(/^NAME +KIND +MODEL +CARTRIDGES +DRIVES +SCALE +DIR$/)
    expect(ls.stdout).toMatch(/^tape1 +vtl +lto9 +4 +2 +0 +\/.*vtl1$/m)
    expect(ls.stdout).toMatch(/^tape2 +vtl +lto9 +10 +1 +1 +\/.*vtl2$/m)
    const lsj = JSON.parse((await bfs(['tier', 'ls', '--json'], { repo })).stdout) as Array<{ name: string; drives: number }>
    expect(lsj.map((t) => [t.name, t.drives])).toEqual([['tape1', 2], ['tape2', 1]])

    // use the library (another process), then look at it through the CLI
    const lib = VirtualTapeLibrary.open(dir)
    const d = await lib.drive(1)
    await lib.move({ slot: 2 }, { drive: 1 })
    await d.load()
    await d.write({ fill: 1000 })
    await d.locate(200)
    await lib.close()
    const status = await bfs(['tier', 'status', 'tape1'], { repo })
    expect(status.stderr).toBe('')
    expect(status.code).toBe(0)
    expect(status.stdout).toMatch(/^tier tape1: virtual tape library \//)
    expect(status.stdout).toMatch(/^ {2}0 {2}empty; clock 0\.0 s$/m)
    expect(status.stdout).toMatch(/^ {2}1 {2}BFS003L9 loaded, block 200; clock [\d.]+ s$/m)
    expect(status.stdout).toMatch(/^ {2}2 {2}empty$/m) // slot 2
    expect(status.stdout).toMatch(/^ {2}BFS003L9 {2}drive 1 \(loaded\)/m)
    expect(status.stdout).toMatch(/^ {2}robot +1 × 10\.0 s$/m)
    expect(status.stdout).toMatch(/^ {2}load +1 × 16\.0 s$/m)
    const j = JSON.parse((await bfs(['tier', 'status', 'tape1', '--json'], { repo })).stdout) as { drives: Array<{ cartridge: string | null; block: number; clock: number }>; now: number; totals: Record<string, { count: number }> }
    expect(j.drives[1]).toMatchObject({ cartridge: 'BFS003L9', block: 200 })
    const expected = LTO9.robotMoveS + LTO9.loadS + (1000 * 2 ** 20) / LTO9.nativeRate
    expect(j.drives[1]!.clock).toBeGreaterThan(expected) // plus the locate back to 200
    expect(j.now).toBe(j.drives[1]!.clock)
    expect(j.totals.write!.count).toBe(1)
  })

  it('refuses bad input with one line and a documented exit code', async () => {
    const d = (n: string): string => path.join(work, n)
    // usage errors: exit 2
    failsWith(await bfs(['tier', 'add', 'x', '--vtl', d('m'), '--model', 'lto8'], { repo }), 2, /'--model <model>' argument 'lto8' is invalid. Allowed choices are lto9/)
    failsWith(await bfs(['tier', 'add', 'x', '--vtl', d('m'), '--cartridges', '0'], { repo }), 2, /--cartridges must be a whole number from 1 to 999/)
    failsWith(await bfs(['tier', 'add', 'x', '--vtl', d('m'), '--cartridges', '1e2'], { repo }), 2, /--cartridges must be a whole number/)
    failsWith(await bfs(['tier', 'add', 'x', '--vtl', d('m'), '--drives', 'two'], { repo }), 2, /--drives must be a whole number from 1 to 64/)
    failsWith(await bfs(['tier', 'add', 'x', '--vtl', d('m'), '--clock-scale', '-1'], { repo }), 2, /--clock-scale must be a number ≥ 0/)
    failsWith(await bfs(['tier', 'add', 'x', '--vtl', d('m'), '--clock-scale', 'fast'], { repo }), 2, /--clock-scale must be a number ≥ 0/)
    failsWith(await bfs(['tier', 'add', 'x'], { repo }), 2, /required option '--vtl <dir>' not specified/)
    failsWith(await bfs(['tier', 'add', 'x', 'y', '--vtl', d('m')], { repo }), 2, /too many arguments/)
    // runtime errors: exit 1
    fs.mkdirSync(d('exists'))
    failsWith(await bfs(['tier', 'add', 'x', '--vtl', d('exists')], { repo }), 1, /exists already exists \(bfs tier add creates the library directory\)/)
    fs.writeFileSync(d('afile'), '')
    failsWith(await bfs(['tier', 'add', 'x', '--vtl', d('afile')], { repo }), 1, /already exists/)
    failsWith(await bfs(['tier', 'add', 'x', '--vtl', d('no/such/parent/vtl')], { repo }), 1, /does not exist/)
    failsWith(await bfs(['tier', 'add', 'bad/name', '--vtl', d('m')], { repo }), 1, /'bad\/name' is not a valid tier name/)
    expect((await bfs(['tier', 'add', 'dup', '--vtl', d('dup1'), '--clock-scale', '0'], { repo })).code).toBe(0)
    failsWith(await bfs(['tier', 'add', 'dup', '--vtl', d('dup2')], { repo }), 1, /tier 'dup' already exists/)
    expect(fs.existsSync(d('dup2'))).toBe(false) // nothing made
    failsWith(await bfs(['tier', 'status', 'nope'], { repo }), 1, /no tier 'nope'/)
    // nothing was created by the failures
    expect(fs.existsSync(d('m'))).toBe(false)
    expect(fs.readdirSync(work).filter((n) => n.includes('.tmp-'))).toEqual([])
    // not a repository: exit 6
    failsWith(await bfs(['tier', 'ls'], { repo: d('norepo') }), 6, /is not a bfs repository/)
    // a tier whose library was damaged: exit 6
    fs.writeFileSync(path.join(d('dup1'), 'state.json'), '{"format":"something else"}')
    failsWith(await bfs(['tier', 'status', 'dup'], { repo }), 6, /not a bfs virtual tape library state/)
    expect((await bfs(['tier', 'ls'], { repo })).stdout).toMatch(/^dup +vtl +lto9 +\? +\? +\? +\/.*dup1 \(/m)
  })
})
