import fs from 'node:fs'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { bfs, diffTree, makeTree, sh, spawnBfs, statTree, tmpdir } from './helpers.js'
import { encodeEnvelope } from '../src/format/envelope.js'

// Damage stays local (issue 11, items 4, 5, 6, 10): one bad manifest, config, group file or
// unit trailer takes down only what depends on it; recovery removes only what a crashed
// writer can have left; `latest` is resolved within a source. Real files, the real CLI.

let work: string
beforeAll(() => {
  work = tmpdir('bfs-damage-')
})
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

/** Flips one bit of the byte at `offset` (negative: from the end). */
function flip(file: string, offset: number): void {
  const b = fs.readFileSync(file)
  const i = offset < 0 ? b.length + offset : offset
  b[i] = b[i]! ^ 0x10
  fs.writeFileSync(file, b)
}

// Format 1's damage handling and recovery (its manifests, gens/N, catalogs, config, lock and
// summary JSON): the repositories are made with `bfs init --format 1`; format 2's are in the
// format2*.test.ts files. (The unit trailer test runs on the default format: same units.)
const manifest = (repo: string, id: number): string => path.join(repo, 'manifests', `gen-${String(id).padStart(8, '0')}`)
const genDir = (repo: string, id: number): string => path.join(repo, 'gens', String(id).padStart(8, '0'))

async function backup(src: string, repo: string, extra: string[] = []): Promise<{ code: number; stderr: string; json: { id: number; parent: number; stats: { unchangedFiles: number; changedFiles: number } } }> {
  const r = await bfs(['backup', src, '--json', ...extra], { repo })
  if (r.code !== 0) throw new Error(`backup failed (${r.code}): ${r.stderr}`)
  return { code: r.code, stderr: r.stderr, json: JSON.parse(r.stdout) }
}

/**
 * Three generations of one source where gen3 depends on gen2: gen2 changes one block of
 * random.bin (a delta over gen1) and adds two.txt; gen3 adds three.txt and leaves both
 * unchanged (its catalog points at gen2's objects). src1 is a copy of the source at gen1.
 */
async function threeGenerations(name: string): Promise<{ repo: string; src: string; src1: string }> {
  const dir = path.join(work, name)
  const src = path.join(dir, 'src')
  const src1 = path.join(dir, 'src1')
  const repo = path.join(dir, 'repo')
  await makeTree(src)
  expect((await bfs(['init', '--format', '1'], { repo })).code).toBe(0)
  await backup(src, repo)
  expect((await sh(`cp -a '${src}' '${src1}'`)).code).toBe(0)
  expect((await sh(`printf 'CHANGED-BLOCK' | dd of='${src}/random.bin' bs=1 seek=1048576 conv=notrunc status=none`)).code).toBe(0)
  fs.writeFileSync(path.join(src, 'two.txt'), 'second generation\n'.repeat(1000))
  const g2 = await backup(src, repo)
  expect(g2.json.id).toBe(2)
  fs.writeFileSync(path.join(src, 'three.txt'), 'third\n')
  const g3 = await backup(src, repo)
  expect(g3.json.id).toBe(3)
  expect(g3.json.stats.unchangedFiles).toBeGreaterThan(5)
  return { repo, src, src1 }
}

/** Restores `ref` into a fresh directory and expects it identical to `src` (diff -r and every stat field). */
async function restoresAs(repo: string, ref: string, src: string): Promise<void> {
  const dest = fs.mkdtempSync(path.join(work, 'restore-'))
  fs.rmdirSync(dest)
  const r = await bfs(['restore', ref, dest], { repo })
  expect(r.stderr).toBe('')
  expect(r.code).toBe(0)
  expect(await diffTree(src, dest)).toBe('')
  expect(await statTree(dest)).toBe(await statTree(src))
  fs.rmSync(dest, { recursive: true, force: true })
}

describe('one damaged manifest stays local (item 5)', () => {
  it('restore of a generation that depends on a damaged one restores every file it can and names the others (exit 1)', async () => {
    const { repo, src } = await threeGenerations('dependent')
    flip(manifest(repo, 2), 100)
    const dest = path.join(work, 'dependent-out')
    const r = await bfs(['restore', 'gen3', dest], { repo })
    expect(r.code).toBe(1)
    // two.txt and random.bin keep their data in gen2 (random.bin: a delta over gen1)
    const lost = r.stderr.split('\n').filter((l) => / not restored: .*gen-00000002/.test(l)).map((l) => l.replace(/^bfs: warning: (.*?): not restored: .*$/, '$1'))
    expect(lost.sort()).toEqual([path.join(dest, 'random.bin'), path.join(dest, 'two.txt')])
    expect(r.stdout).toMatch(/, 2 errors\n$/)
    // everything else is there, exactly
    for (const f of ['hello.txt', 'three.txt', 'seq.txt', 'a/b/c/d/e/f/g/h/deep.txt', 'sparse.img']) {
      expect(fs.readFileSync(path.join(dest, f)).equals(fs.readFileSync(path.join(src, f))), f).toBe(true)
    }
    expect(fs.existsSync(path.join(dest, 'two.txt'))).toBe(false)
    expect(fs.readlinkSync(path.join(dest, 'a/link'))).toBe('../hello.txt')
  })

  it('a flipped byte in gen-00000002 of 3 generations: generations, restore gen1, cat, verify gen1 and a new backup all work', async () => {
    const { repo, src, src1 } = await threeGenerations('item5')
    flip(manifest(repo, 2), 100)

    const g = await bfs(['generations'], { repo })
    expect(g.code).toBe(0)
    expect(g.stdout).toMatch(/^gen1\s+\d{4}-/m)
    expect(g.stdout).toMatch(/^gen2\s+-\s+-\s+\(manifest unreadable\)\s+DAMAGED\b/m)
    expect(g.stdout).toMatch(/^gen3\s+\d{4}-.*files\+/m)
    expect(g.stderr).toMatch(/^bfs: warning: gen2 is damaged: .*gen-00000002: checksum mismatch/m)
    const j = JSON.parse((await bfs(['generations', '--json'], { repo })).stdout) as Array<{ id: number; damaged?: string; source?: string }>
    expect(j.map((x) => x.id)).toEqual([1, 2, 3])
    expect(j[1]!.damaged).toBe('manifest unreadable')
    expect(j[0]!.source).toBe(src)
    expect(j[2]!.damaged).toBeUndefined()

    await restoresAs(repo, 'gen1', src1)
    const cat = await bfs(['cat', 'gen1:hello.txt'], { repo })
    expect(cat.code).toBe(0)
    expect(cat.stdout).toBe('hello world\n')
    expect((await bfs(['cat', 'gen1:random.bin'], { repo })).out.equals(fs.readFileSync(path.join(src1, 'random.bin')))).toBe(true)
    expect((await bfs(['ls', 'gen1:a'], { repo })).code).toBe(0)
    // gen3 itself is readable: files that do not depend on gen2 are there
    expect((await bfs(['cat', 'gen3:three.txt'], { repo })).stdout).toBe('third\n')
    expect((await bfs(['cat', 'latest:three.txt'], { repo })).stdout).toBe('third\n')

    const v1 = await bfs(['verify', 'gen1'], { repo })
    expect(v1.stdout).toMatch(/^ok: gen1 verified/m)
    expect(v1.code).toBe(0)
    const v2 = await bfs(['verify', 'gen2'], { repo })
    expect(v2.stdout).toMatch(/^FAIL gen2 is damaged: .*checksum mismatch/m)
    expect(v2.code).toBe(4)
    const all = await bfs(['verify', '--all'], { repo })
    expect(all.stdout).toMatch(/^FAIL gen2 is damaged/m)
    expect(all.stdout).toMatch(/^FAIL gen3: \d+ references? into damaged gen2/m)
    expect(all.stdout).not.toMatch(/FAIL gen1/)
    expect(all.code).toBe(4)

    // a new backup does not depend on gen2: what gen3 kept there is read again, unchanged
    // (random.bin) or changed (two.txt, whose block-incremental base would be in gen2)
    fs.writeFileSync(path.join(src, 'four.txt'), 'fourth\n')
    fs.appendFileSync(path.join(src, 'two.txt'), 'changed after gen3\n')
    const b = await backup(src, repo)
    expect(b.json.id).toBe(4)
    expect(b.json.parent).toBe(3)
    expect(b.stderr).toMatch(/read again/)
    expect(fs.existsSync(path.join(genDir(repo, 2), 'catalog'))).toBe(true) // left alone
    const v4 = await bfs(['verify', 'gen4'], { repo })
    expect(v4.stdout).toMatch(/^ok: gen4 verified/m)
    expect(v4.code).toBe(0)
    await restoresAs(repo, 'gen4', src)
    // and the one after it is incremental again, depending on nothing damaged
    const b5 = await backup(src, repo)
    expect(b5.json.parent).toBe(4)
    expect(b5.stderr).toBe('')
    expect(b5.json.stats.changedFiles).toBe(0)
    expect((await bfs(['verify', 'gen5'], { repo })).code).toBe(0)
  })

  it('a damaged newest manifest: latest is the newest readable one, said on stderr; the next backup gets a new id', async () => {
    const { repo, src } = await threeGenerations('newest')
    flip(manifest(repo, 3), 120)
    const ls = await bfs(['ls', 'latest'], { repo })
    expect(ls.code).toBe(0)
    expect(ls.stdout).toMatch(/ two\.txt$/m)
    expect(ls.stdout).not.toMatch(/three\.txt/)
    expect(ls.stderr).toBe('bfs: warning: latest is gen2; gen3 is damaged and was not considered (see bfs verify --all)\n')
    const b = await backup(src, repo)
    expect(b.json.id).toBe(4) // never gen3 again
    expect(b.json.parent).toBe(2)
    expect(fs.existsSync(genDir(repo, 3))).toBe(true)
    expect((await bfs(['verify', 'latest'], { repo })).code).toBe(0)
    await restoresAs(repo, 'latest', src)
  })

  it('a volume whose base is in a damaged generation is read in full, and restores byte-identical', async () => {
    const dir = path.join(work, 'volume')
    const repo = path.join(dir, 'repo')
    fs.mkdirSync(dir, { recursive: true })
    const img = path.join(dir, 'disk.img')
    expect((await sh(`head -c 6M /dev/urandom > '${img}'`)).code).toBe(0)
    expect((await bfs(['init', '--format', '1'], { repo })).code).toBe(0)
    await backup(img, repo, ['--volume'])
    expect((await sh(`printf 'second' | dd of='${img}' bs=1 seek=20480 conv=notrunc status=none`)).code).toBe(0)
    expect((await backup(img, repo, ['--volume'])).json.parent).toBe(1) // a delta over gen1, in gen2
    const g3 = await backup(img, repo, ['--volume'])
    expect(g3.json.stats.unchangedFiles).toBe(1) // gen3 points at gen2's object
    flip(manifest(repo, 2), 100)
    const b = await backup(img, repo, ['--volume'])
    expect(b.json.id).toBe(4)
    expect(b.json.parent).toBe(3)
    expect(b.json.stats.unchangedFiles).toBe(0)
    expect(b.stderr).toMatch(/gen2 is damaged/)
    expect((await bfs(['verify', 'gen4'], { repo })).code).toBe(0)
    const out = path.join(dir, 'out.img')
    expect((await bfs(['restore', 'gen4', out], { repo })).code).toBe(0)
    expect(fs.readFileSync(out).equals(fs.readFileSync(img))).toBe(true)
  })

  it('a manifest replaced by one naming another generation is damaged too, and listed so', async () => {
    const { repo } = await threeGenerations('swapped')
    fs.copyFileSync(manifest(repo, 1), manifest(repo, 2))
    const g = JSON.parse((await bfs(['generations', '--json'], { repo })).stdout) as Array<{ id: number; damaged?: string }>
    expect(g.map((x) => [x.id, x.damaged ?? 'ok'])).toEqual([[1, 'ok'], [2, 'manifest unreadable'], [3, 'ok']])
    const r = await bfs(['restore', 'gen2', path.join(work, 'swapped-out')], { repo })
    expect(r.code).toBe(6)
    expect(r.stderr).toMatch(/^bfs: gen2 is damaged: .*names generation 1\n$/)
  })
})

describe('recovery removes only what a crashed writer can have left (item 4)', () => {
  it('a lost middle manifest: the next backup neither deletes gens/2 nor refers into it; putting it back heals the repository', async () => {
    const { repo, src } = await threeGenerations('item4')
    const saved = fs.readFileSync(manifest(repo, 2))
    const before = (await sh(`cd '${genDir(repo, 2)}' && sha256sum * | sort`)).stdout
    fs.rmSync(manifest(repo, 2))
    const g = await bfs(['generations'], { repo })
    expect(g.code).toBe(0)
    expect(g.stdout).toMatch(/^gen2\s+-\s+-\s+\(manifest missing\)\s+DAMAGED\b/m)
    expect(g.stderr).toMatch(/gen2 is damaged: .*gen-00000002 is missing, but .*gens\/00000002 holds gen2's data/)
    const v = await bfs(['verify', 'gen2'], { repo })
    expect(v.code).toBe(4)
    expect(v.stdout).toMatch(/^FAIL gen2 is damaged: .*is missing/m)

    fs.appendFileSync(path.join(src, 'seq.txt'), '\nmore\n')
    const b = await backup(src, repo)
    expect(b.json.id).toBe(4)
    // gens/2 is untouched, byte for byte
    expect((await sh(`cd '${genDir(repo, 2)}' && sha256sum * | sort`)).stdout).toBe(before)
    const v4 = await bfs(['verify', 'gen4'], { repo })
    expect(v4.stdout).toMatch(/^ok: gen4 verified/m)
    expect(v4.code).toBe(0)
    await restoresAs(repo, 'gen4', src)
    // the manifest was only lost: with it back every generation verifies
    fs.writeFileSync(manifest(repo, 2), saved)
    const all = await bfs(['verify', '--all'], { repo })
    expect(all.stdout).toMatch(/^ok: gen1, gen2, gen3, gen4 verified/m)
    expect(all.code).toBe(0)
  })

  it('removes a marked or empty gens/N and an old writer\'s unfinished one, keeps an orphan with a catalog, and numbers past it', async () => {
    const { repo, src } = await threeGenerations('recovery')
    // what a crashed writer leaves: marked in progress (any id), only temp files, or (an old
    // writer) above the newest committed id without a catalog
    fs.mkdirSync(genDir(repo, 7))
    fs.writeFileSync(path.join(genDir(repo, 7), 'in-progress'), '')
    fs.writeFileSync(path.join(genDir(repo, 7), 'unit-00000000'), 'partial')
    fs.mkdirSync(genDir(repo, 8))
    fs.writeFileSync(path.join(genDir(repo, 8), 'in-progress.tmp-123-abcd'), '')
    fs.mkdirSync(genDir(repo, 9))
    fs.writeFileSync(path.join(genDir(repo, 9), 'unit-00000000'), 'old writer')
    // a newest generation whose manifest was lost: it has its catalog
    fs.cpSync(genDir(repo, 3), genDir(repo, 6), { recursive: true })
    // a stale marker beside a committed generation (killed between commit and unmarking)
    fs.writeFileSync(path.join(genDir(repo, 3), 'in-progress'), '')
    // a stray file named like a generation is not a writer's: reported, kept
    fs.writeFileSync(genDir(repo, 5), 'not a directory')
    // readers do not list a writer's unfinished generations as damaged
    const g = JSON.parse((await bfs(['generations', '--json'], { repo })).stdout) as Array<{ id: number; damaged?: string }>
    expect(g.map((x) => [x.id, x.damaged ?? 'ok'])).toEqual([[1, 'ok'], [2, 'ok'], [3, 'ok'], [5, 'manifest missing'], [6, 'manifest missing']])

    const b = await backup(src, repo)
    expect(b.json.id).toBe(7) // above the orphan gen6
    expect(fs.readdirSync(path.join(repo, 'gens')).sort()).toEqual(['00000001', '00000002', '00000003', '00000005', '00000006', '00000007'])
    expect(fs.existsSync(path.join(genDir(repo, 3), 'in-progress'))).toBe(false)
    expect(fs.existsSync(path.join(genDir(repo, 7), 'in-progress'))).toBe(false)
    expect(fs.readdirSync(genDir(repo, 6)).sort()).toEqual(fs.readdirSync(genDir(repo, 3)).sort())
    const v = await bfs(['verify', '--all'], { repo })
    expect(v.stdout).toMatch(/^FAIL gen6 is damaged: .*is missing/m)
    expect(v.stdout).toMatch(/^FAIL gen5 is damaged: /m)
    expect(v.stdout.match(/^FAIL/gm)).toHaveLength(2)
    expect(v.code).toBe(4)
  })

  it('a backup killed with SIGKILL while writing leaves its gens/N marked in progress, and only that is removed', async () => {
    const dir = path.join(work, 'killed')
    const src = path.join(dir, 'src')
    const repo = path.join(dir, 'repo')
    fs.mkdirSync(src, { recursive: true })
    expect((await bfs(['init', '--format', '1'], { repo })).code).toBe(0)
    fs.writeFileSync(path.join(src, 'small'), 'x\n')
    await backup(src, repo)
    // enough incompressible data that the writer is still at it when it is killed
    expect((await sh(`head -c 200M /dev/urandom > '${src}/big'`)).code).toBe(0)
    const p = spawnBfs(['backup', src, '--threads', '1'], repo)
    const exited = new Promise((r) => p.once('close', r))
    // wait until its first unit is in gens/2, then kill it
    await sh(`end=$((SECONDS+300)); while [ $SECONDS -lt $end ]; do ls '${genDir(repo, 2)}' 2>/dev/null | grep -q '^unit-[0-9]*$' && break; sleep 0.05; done`)
    p.kill('SIGKILL')
    await exited
    const names = fs.readdirSync(genDir(repo, 2))
    expect(names).toContain('in-progress')
    expect(names.some((n) => /^unit-\d+$/.test(n))).toBe(true)
    expect(fs.existsSync(manifest(repo, 2))).toBe(false)
    // not damage: a reader does not list it
    const g = JSON.parse((await bfs(['generations', '--json'], { repo })).stdout) as Array<{ id: number }>
    expect(g.map((x) => x.id)).toEqual([1])
    fs.rmSync(path.join(src, 'big'))
    const b = await backup(src, repo)
    expect(b.json.id).toBe(2)
    expect(fs.readdirSync(genDir(repo, 2))).not.toContain('in-progress')
    expect((await bfs(['verify', '--all'], { repo })).code).toBe(0)
  })
})

describe('a damaged config does not take the repository down', () => {
  it('a config of a later format is refused (exit 6), never taken for damage; one flipped version byte is damage', async () => {
    const dir = path.join(work, 'newer')
    const repo = path.join(dir, 'repo')
    const src = path.join(dir, 'src')
    fs.mkdirSync(src, { recursive: true })
    fs.writeFileSync(path.join(src, 'f.txt'), 'data\n')
    expect((await bfs(['init', '--format', '1'], { repo })).code).toBe(0)
    await backup(src, repo)
    const v1 = fs.readFileSync(path.join(repo, 'config'))
    // a later bfs's repository: both copies carry envelope version 3 (payload checksum intact);
    // version 2 is format 2 now, which this bfs reads (issue 15)
    const v3 = Buffer.from(v1)
    v3.writeUInt16LE(3, 8)
    fs.writeFileSync(path.join(repo, 'config'), v3)
    fs.writeFileSync(path.join(repo, 'config-copy'), v3)
    for (const args of [['generations'], ['backup', src], ['cat', 'gen1:f.txt']]) {
      const r = await bfs(args, { repo })
      expect(r.code, args.join(' ')).toBe(6)
      expect(r.stderr).toBe(`bfs: ${repo} is a bfs repository of format 3; this bfs reads format 1: use a newer bfs\n`)
    }
    expect(fs.readdirSync(path.join(repo, 'manifests'))).toEqual(['gen-00000001'])
    // version 2 on both, over a payload that is no format 2 config: refused as such, in one line, never inferred or written to
    const v2 = Buffer.from(v1)
    v2.writeUInt16LE(2, 8)
    fs.writeFileSync(path.join(repo, 'config'), v2)
    fs.writeFileSync(path.join(repo, 'config-copy'), v2)
    for (const args of [['generations'], ['backup', src], ['cat', 'gen1:f.txt'], ['verify']]) {
      const r = await bfs(args, { repo })
      expect(r.code, args.join(' ')).toBe(6)
      expect(r.stderr, args.join(' ')).toMatch(/^bfs: [^\n]*\n$/)
    }
    expect(fs.readdirSync(path.join(repo, 'manifests'))).toEqual(['gen-00000001'])
    // only config says 2, its copy says 1: a flipped byte, repaired from the copy as before
    fs.writeFileSync(path.join(repo, 'config-copy'), v1)
    const g = await bfs(['generations'], { repo })
    expect(g.code).toBe(0)
    expect(g.stderr).toMatch(/format version 2 is not supported .*; using its copy/)
  })

  it('falls back to config-copy with a warning; verify reports it and says how to repair', async () => {
    const { repo, src, src1 } = await threeGenerations('config')
    expect(fs.readFileSync(path.join(repo, 'config-copy')).equals(fs.readFileSync(path.join(repo, 'config')))).toBe(true)
    flip(path.join(repo, 'config'), 70)
    const g = await bfs(['generations'], { repo })
    expect(g.code).toBe(0)
    expect(g.stderr).toBe(`bfs: warning: ${repo}/config: checksum mismatch (file is corrupt); using its copy ${repo}/config-copy (repair: cp ${repo}/config-copy ${repo}/config)\n`)
    const dest = path.join(work, 'config-out')
    const r = await bfs(['restore', 'gen1', dest], { repo })
    expect(r.code).toBe(0)
    expect(await diffTree(src1, dest)).toBe('')
    const v = await bfs(['verify', 'gen3'], { repo })
    expect(v.stdout).toMatch(/^FAIL .*\/config: checksum mismatch .*repair: cp .*config-copy .*\/config\)$/m)
    expect(v.stdout.match(/^FAIL/gm)).toHaveLength(1)
    expect(v.code).toBe(4)
    fs.writeFileSync(path.join(src, 'new.txt'), 'new\n')
    const b = await bfs(['backup', src], { repo })
    expect(b.code).toBe(0)
    // repaired as verify says: all is well again
    expect((await sh(`cp '${repo}/config-copy' '${repo}/config'`)).code).toBe(0)
    const ok = await bfs(['verify', '--all'], { repo })
    expect(ok.stderr).toBe('')
    expect(ok.code).toBe(0)
  })

  it('with no intact copy (a repository from before copies, or both damaged) infers the settings, sha256-64 too', async () => {
    const dir = path.join(work, 'infer')
    const src = path.join(dir, 'src')
    const repo = path.join(dir, 'repo')
    await makeTree(src)
    expect((await bfs(['init', '--format', '1'], { repo })).code).toBe(0)
    // a repository whose block hash is sha256-64, made before config-copy existed
    const cfg = { format: 1, repoId: '0123456789abcdef0123456789abcdef', created: '2026-01-01T00:00:00.000Z', blockBytes: 4096, hashAlg: 'sha256-64', compression: 'zstd' }
    const file = encodeEnvelope('config', 0, JSON.stringify(cfg).length, Buffer.from(JSON.stringify(cfg)))
    fs.writeFileSync(path.join(repo, 'config'), file)
    fs.rmSync(path.join(repo, 'config-copy'))
    expect((await bfs(['generations'], { repo })).stderr).toBe('') // an old repository reads as before
    await backup(src, repo)
    // its first writer added the copy
    expect(fs.readFileSync(path.join(repo, 'config-copy')).equals(file)).toBe(true)
    fs.rmSync(path.join(repo, 'config-copy'))
    flip(path.join(repo, 'config'), 80)
    const v = await bfs(['verify', 'gen1'], { repo })
    expect(v.stderr).toMatch(/^bfs: warning: .*\/config: checksum mismatch .*there is no copy of it .*hashAlg sha256-64, checked against gen1's data/)
    // only the config is reported: the data checks out with the inferred hash
    expect(v.stdout.match(/^FAIL/gm)).toHaveLength(1)
    expect(v.stdout).not.toMatch(/frame/)
    expect(v.code).toBe(4)
    // both damaged: the same
    fs.writeFileSync(path.join(repo, 'config-copy'), fs.readFileSync(path.join(repo, 'config')))
    const v2 = await bfs(['verify', 'gen1'], { repo })
    expect(v2.stdout).not.toMatch(/frame/)
    expect(v2.stderr).toMatch(/hashAlg sha256-64/)
    const dest = path.join(dir, 'out')
    expect((await bfs(['restore', 'gen1', dest], { repo })).code).toBe(0)
    expect(await diffTree(src, dest)).toBe('')
  })
})

describe('verify --all, unit trailers, generation names (item 6)', () => {
  for (const fmt of [1, 2] as const) {
    it(`verify --all checks groups/: a damaged group file is reported (exit 4) (format ${fmt})`, async () => {
      const dir = path.join(work, `groups-${fmt}`)
      const repo = path.join(dir, 'repo')
      const src = path.join(dir, 'src')
      fs.mkdirSync(path.join(src, 'web'), { recursive: true })
      fs.writeFileSync(path.join(src, 'web/index.html'), '<p>hi</p>\n')
      expect((await bfs(['init', '--format', String(fmt)], { repo })).code).toBe(0)
      expect((await bfs(['group', 'add', 'web', '--include', 'web'], { repo })).code).toBe(0)
      expect((await bfs(['group', 'add', 'other', '--include', 'x'], { repo })).code).toBe(0)
      await backup(src, repo, ['--group', 'web'])
      expect((await bfs(['verify', '--all'], { repo })).code).toBe(0)
      flip(path.join(repo, 'groups', 'other'), -3)
      const v = await bfs(['verify', '--all'], { repo })
      expect(v.stdout).toMatch(/^FAIL .*groups\/other: checksum mismatch/m)
      expect(v.stdout.match(/^FAIL/gm)).toHaveLength(1)
      expect(v.code).toBe(4)
      // group ls lists the group that reads and names the damaged one; the web group still backs up
      const ls = await bfs(['group', 'ls'], { repo })
      expect(ls.code).toBe(0)
      expect(ls.stdout).toBe('web\n  include web\n')
      expect(ls.stderr).toMatch(/^bfs: warning: damaged group file: .*groups\/other: checksum mismatch.*\n$/)
      await backup(src, repo, ['--group', 'web'])
      expect((await bfs(['group', 'show', 'other'], { repo })).code).toBe(6)
    })
  }

  it('group files are replaced through the store: no temporary file stays, a dead writer\'s is swept by the next writer, a live one stays, none is a group', async () => {
    const dir = path.join(work, 'groups-tmp')
    const repo = path.join(dir, 'repo')
    const src = path.join(dir, 'src')
    fs.mkdirSync(path.join(src, 'web'), { recursive: true })
    fs.writeFileSync(path.join(src, 'web/index.html'), '<p>hi</p>\n')
    expect((await bfs(['init', '--format', '1'], { repo })).code).toBe(0)
    expect((await bfs(['group', 'add', 'web', '--include', 'web'], { repo })).code).toBe(0)
    expect((await bfs(['group', 'add', 'web', '--include', 'more'], { repo })).code).toBe(0) // replaced
    expect(fs.readdirSync(path.join(repo, 'groups'))).toEqual(['web'])
    const host = (await import('node:os')).hostname()
    const dead = `web.tmp-${host}-999999-0badc0de` // a group add killed before its rename
    const live = `web.tmp-${host}-${process.pid}-0badc0de`
    const older = '.web.new-999999' // what an older bfs used as its temporary name
    for (const n of [dead, live, older]) fs.writeFileSync(path.join(repo, 'groups', n), 'partial')
    const ls = await bfs(['group', 'ls'], { repo })
    expect(ls.stdout).toBe('web\n  include web\n  include more\n')
    expect(ls.stderr).toBe('')
    await backup(src, repo, ['--group', 'web'])
    expect(fs.readdirSync(path.join(repo, 'groups')).sort()).toEqual([older, live, 'web'].sort())
    const v = await bfs(['verify', '--all'], { repo })
    expect(v.stdout).not.toMatch(/FAIL/)
    expect(v.code).toBe(0)
  })

  it('a flipped reserved byte in a unit trailer is found by verify and by reads', async () => {
    const dir = path.join(work, 'trailer')
    const repo = path.join(dir, 'repo')
    const src = path.join(dir, 'src')
    fs.mkdirSync(src, { recursive: true })
    fs.writeFileSync(path.join(src, 'f.txt'), 'some data\n'.repeat(100))
    expect((await bfs(['init'], { repo })).code).toBe(0)
    await backup(src, repo)
    flip(path.join(genDir(repo, 1), 'unit-00000000'), -20)
    const v = await bfs(['verify', 'gen1'], { repo })
    expect(v.stdout).toMatch(/^FAIL .*unit-00000000: unit trailer reserved field is 0x10, not 0/m)
    expect(v.code).toBe(4)
    const c = await bfs(['cat', 'gen1:f.txt'], { repo })
    expect(c.code).toBe(6)
    expect(c.stderr).toMatch(/^bfs: .*unit trailer reserved field/)
  })

  it('a malformed generation name is a usage error: exit 2, one line', async () => {
    const { repo } = await threeGenerations('names')
    const mnt = path.join(work, 'names-mnt')
    fs.mkdirSync(mnt)
    const msg = (ref: string): string => `bfs: '${ref}' is not a generation (use genN, N, latest or latest~K)\n`
    for (const [args, ref] of [
      [['restore', 'gen1x', path.join(work, 'names-out')], 'gen1x'],
      [['cat', 'foo:bar'], 'foo'],
      [['ls', 'latest~x'], 'latest~x'],
      [['ls', 'latest~'], 'latest~'],
      [['verify', 'latest~x'], 'latest~x'],
      [['verify', '--against', work, 'g1'], 'g1'],
      [['mount', 'gen1x', mnt], 'gen1x'],
      [['backup', path.join(work, 'names', 'src'), '--mode', 'volume', '--base', 'latest~x'], 'latest~x'],
    ] as Array<[string[], string]>) {
      const r = await bfs(args, { repo })
      expect(r.stderr, args.join(' ')).toBe(msg(ref))
      expect(r.code, args.join(' ')).toBe(2)
    }
    expect(fs.existsSync(path.join(work, 'names-out'))).toBe(false)
  })
})

describe('latest within a source (item 10)', () => {
  it.each([1, 2])('several sources: --source picks the chain, a path the command is about is used, and bare latest says what it chose (format %i)', async (fmt) => {
    const dir = path.join(work, `sources-f${fmt}`)
    const repo = path.join(dir, 'repo')
    const a = path.join(dir, 'a')
    const b = path.join(dir, 'b')
    fs.mkdirSync(a, { recursive: true })
    fs.mkdirSync(b, { recursive: true })
    fs.writeFileSync(path.join(a, 'file'), 'a1\n')
    fs.writeFileSync(path.join(b, 'file'), 'b1\n')
    expect((await bfs(['init', '--format', String(fmt)], { repo })).code).toBe(0)
    expect((await backup(a, repo)).json.id).toBe(1)
    expect((await backup(b, repo)).json.id).toBe(2)
    fs.writeFileSync(path.join(a, 'file'), 'a2\n')
    expect((await backup(a, repo)).json.id).toBe(3)
    fs.writeFileSync(path.join(b, 'file'), 'b2\n')
    expect((await backup(b, repo)).json.id).toBe(4)

    const bare = await bfs(['cat', 'latest:file'], { repo })
    expect(bare.stdout).toBe('b2\n')
    expect(bare.stderr).toBe(`bfs: latest is gen4 (${b}); the repository holds 2 sources, pick one with --source\n`)
    expect(bare.code).toBe(0)
    const ca = await bfs(['cat', 'latest:file', '--source', a], { repo })
    expect(ca.stdout).toBe('a2\n')
    expect(ca.stderr).toBe('')
    expect((await bfs(['cat', 'latest~1:file', '--source', a], { repo })).stdout).toBe('a1\n')
    expect((await bfs(['ls', 'latest', '--source', path.relative(process.cwd(), a)], { repo })).stderr).toBe('')
    const rs = await bfs(['restore', 'latest', path.join(dir, 'ra'), '--source', a], { repo })
    expect(rs.stdout).toMatch(/^restored gen3 /)
    expect(rs.stderr).toBe('')
    expect(fs.readFileSync(path.join(dir, 'ra', 'file'), 'utf8')).toBe('a2\n')
    const vs = await bfs(['verify', '--source', a], { repo })
    expect(vs.stdout).toMatch(/^ok: gen3 verified/m)
    expect(vs.stderr).toBe('')
    // verify --against DIR: latest of DIR's own source
    const va = await bfs(['verify', '--against', a], { repo })
    expect(va.stdout).toBe(`gen3 matches ${a}\n`)
    expect(va.stderr).toBe('')
    expect(va.code).toBe(0)
    // a directory that is no source (a restore, say): the newest overall, and it says so
    const vr = await bfs(['verify', '--against', path.join(dir, 'ra')], { repo })
    expect(vr.stderr).toBe(`bfs: latest is gen4 (${b}); the repository holds 2 sources, pick one with --source\n`)
    // a source with no generations, and a generation of another source
    const none = await bfs(['ls', 'latest', '--source', path.join(dir, 'c')], { repo })
    expect(none.code).toBe(1)
    expect(none.stderr).toBe(`bfs: no generations of ${path.join(dir, 'c')} in ${repo} (it holds generations of ${a}, ${b})\n`)
    const other = await bfs(['ls', 'gen1', '--source', b], { repo })
    expect(other.code).toBe(1)
    expect(other.stderr).toBe(`bfs: gen1 is a generation of ${a}, not of ${b}\n`)
  })

  it('backup SRC --base latest is SRC\'s latest', async () => {
    const dir = path.join(work, 'vol-sources')
    const repo = path.join(dir, 'repo')
    fs.mkdirSync(dir, { recursive: true })
    const img = path.join(dir, 'disk.img')
    const other = path.join(dir, 'other.img')
    expect((await sh(`head -c 4M /dev/urandom > '${img}' && head -c 1M /dev/urandom > '${other}'`)).code).toBe(0)
    expect((await bfs(['init', '--format', '1'], { repo })).code).toBe(0)
    expect((await backup(img, repo, ['--volume'])).json.id).toBe(1)
    expect((await backup(other, repo, ['--volume'])).json.id).toBe(2)
    expect((await sh(`printf 'x' | dd of='${img}' bs=1 seek=8192 conv=notrunc status=none`)).code).toBe(0)
    const b = await backup(img, repo, ['--volume', '--base', 'latest'])
    expect(b.json.parent).toBe(1)
    expect(b.stderr).toBe('')
    expect(b.json.stats.changedFiles).toBe(1)
    const out = path.join(dir, 'restored.img')
    expect((await bfs(['restore', 'gen3', out], { repo })).code).toBe(0)
    expect(fs.readFileSync(out).equals(fs.readFileSync(img))).toBe(true)
  })
})

// Real FUSE mounts, each served by its own `bfs mount` process; always unmounted in teardown.
describe('mounts of a repository with a damaged generation', () => {
  const mounts = new Set<string>()
  /** `bfs mount ARGS`, where `mnt` is the mount point among them. */
  const mount = async (repo: string, mnt: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    const r = await bfs(['mount', ...args], { repo })
    if (r.code === 0) mounts.add(mnt)
    return r
  }
  const umount = async (mnt: string): Promise<void> => {
    if ((await bfs(['umount', mnt])).code !== 0) await bfs(['umount', '--lazy', mnt])
    if ((await sh(`grep -q ' ${mnt} ' /proc/mounts`)).code === 0) await sh(`fusermount -uz '${mnt}'`)
    mounts.delete(mnt)
  }
  afterEach(async () => {
    for (const m of [...mounts]) await umount(m)
  })

  it('mounts a healthy generation, and the whole repository without the damaged one', async () => {
    expect(fs.existsSync('/dev/fuse')).toBe(true)
    const { repo, src, src1 } = await threeGenerations('mount')
    // gen3 as it was, before gen2 is damaged (a copy of the source at gen3)
    const src3 = path.join(work, 'mount', 'src3')
    expect((await sh(`cp -a '${src}' '${src3}'`)).code).toBe(0)
    flip(manifest(repo, 2), 100)
    const m1 = path.join(work, 'mount', 'm1')
    fs.mkdirSync(m1)
    const r = await mount(repo, m1, ['gen1', m1])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(await diffTree(src1, m1)).toBe('')
    expect(await statTree(m1)).toBe(await statTree(src1))
    const all = path.join(work, 'mount', 'all')
    fs.mkdirSync(all)
    expect((await mount(repo, all, [all])).code).toBe(0)
    expect(fs.readdirSync(all).sort()).toEqual(['by-date', 'gen1', 'gen3', 'latest'])
    expect(fs.readlinkSync(path.join(all, 'latest'))).toBe('gen3')
    expect(fs.readFileSync(path.join(all, 'gen3', 'three.txt'), 'utf8')).toBe('third\n')
    expect((await sh(`cmp '${all}/gen1/random.bin' '${src1}/random.bin'`)).code).toBe(0)
    // data of gen3 kept in gen2 cannot be read: an I/O error for that file only
    const bad = await sh(`cat '${all}/gen3/two.txt' > /dev/null`)
    expect(bad.code).not.toBe(0)
    expect((await sh(`cmp '${all}/gen3/seq.txt' '${src3}/seq.txt'`)).code).toBe(0)
  })

  it('mount latest --source mounts that source\'s latest', async () => {
    const dir = path.join(work, 'mount-src')
    const repo = path.join(dir, 'repo')
    const a = path.join(dir, 'a')
    const b = path.join(dir, 'b')
    fs.mkdirSync(a, { recursive: true })
    fs.mkdirSync(b, { recursive: true })
    fs.writeFileSync(path.join(a, 'file'), 'a\n')
    fs.writeFileSync(path.join(b, 'file'), 'b\n')
    expect((await bfs(['init', '--format', '1'], { repo })).code).toBe(0)
    await backup(a, repo)
    await backup(b, repo)
    const m = path.join(dir, 'm')
    fs.mkdirSync(m)
    const r = await mount(repo, m, ['latest', m, '--source', a])
    expect(r.stderr).toBe('')
    expect(r.stdout).toMatch(/^mounted gen1 at /)
    expect(fs.readFileSync(path.join(m, 'file'), 'utf8')).toBe('a\n')
    await umount(m)
    const r2 = await mount(repo, m, ['latest', m])
    expect(r2.stdout).toMatch(/^mounted gen2 at /)
    expect(r2.stderr).toBe(`bfs: latest is gen2 (${b}); the repository holds 2 sources, pick one with --source\n`)
  })
})
