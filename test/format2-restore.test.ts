/**
 * `bfs restore` and `bfs verify` of format 2 generations (issue 15, item 3/4), through the
 * real CLI on real trees: the whole makeTree generation restored and compared with its source
 * (diff -r, stat of every entry, xattrs, directory times, hard links, holes), a subtree and a
 * single file, the second generation after changes beside the first, and damage: a rotted
 * directory piece or unit is reported by restore in one line naming genN:path (the rest is
 * restored, exit 1) and by verify (exit 4); a clean repository verifies (exit 0).
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bfs, diffTree, makeRotTree, makeTree, sh, statTree, tmpdir } from './helpers.js'
import { Repo2, envelope2, payloadOf } from '../src/repo/v2/repo2.js'
import { encodeStreamRecord } from '../src/format/v2/records.js'
import { createHash } from 'node:crypto'
import { PieceReader } from '../src/pieces/reader.js'
import { TreeReader } from '../src/pieces/tree-reader.js'
import { keys2 } from '../src/format/v2/layout.js'

let work: string
let src: string
let repo: string

async function init2(dir: string): Promise<string> {
  const r = await bfs(['init', '--format', '2'], { repo: dir })
  expect(r.code, r.stderr).toBe(0)
  return dir
}

/** xattrs of every entry (names sorted), directory mtimes, and which paths share an inode: what statTree does not show. */
async function moreOf(dir: string): Promise<string> {
  const x = await sh(`cd '${dir}' && getfattr -R -d -m - -h --absolute-names . 2>/dev/null`)
  const t = await sh(`cd '${dir}' && find . -mindepth 1 -type d -printf '%p %T@ %m\\n' | sort`)
  const links = await sh(`cd '${dir}' && find . -type f -links +1 -printf '%i %p\\n' | sort | awk '{ if ($1 == last) printf " %s", $2; else { if (NR > 1) print ""; printf "%s", $2 }; last = $1 } END { print "" }' | sort`)
  return `${x.stdout}\n${t.stdout}\n${links.stdout}`
}

/** Flips every byte of directory `name`'s piece (below the root) in its pack. */
async function rotDir(r: string, gen: string, name: string): Promise<void> {
  const repo2 = Repo2.open(r)
  const man = repo2.resolve(gen)
  const tree = new TreeReader(new PieceReader(repo2.store))
  const e = await tree.lookup(man.rootEntry.dir, Buffer.from(name))
  const ref = e!.dir!.child
  const pack = path.join(r, keys2.pack(ref.run, ref.pack))
  const b = fs.readFileSync(pack)
  for (let i = ref.offset; i < ref.offset + ref.storedLen; i++) b[i] ^= 0x5a
  fs.writeFileSync(pack, b)
}

beforeAll(async () => {
  work = tmpdir('bfs-v2restore-')
  src = path.join(work, 'src')
  repo = await init2(path.join(work, 'repo'))
  await makeTree(src)
  // settle atimes (the first readdir may move a directory's atime under relatime)
  await sh(`find '${src}' > /dev/null; sleep 0.01`)
  const r = await bfs(['backup', src, '--frame-blocks', '16'], { repo })
  expect(r.code, r.stderr).toBe(0)
})
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

describe('format 2: restore', () => {
  it('the whole makeTree generation restores equal to its source: diff -r, stat of every entry, xattrs, directory times, hard links, holes', async () => {
    const out = path.join(work, 'out-all')
    const r = await bfs(['restore', '1', out], { repo })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toBe('')
    expect(r.stdout).toMatch(new RegExp(`^restored gen1 to ${out}: \\d+ entries, [\\d.]+ \\w+\\n$`))
    expect(await diffTree(src, out)).toBe('')
    expect(await statTree(out)).toBe(await statTree(src))
    expect(await moreOf(out)).toBe(await moreOf(src))
    // the hard link is one inode again, the sparse file keeps its holes, the root its mode and mtime
    expect((await sh(`stat -c %i '${out}/hello.txt' '${out}/a/hardlink.txt' | uniq | wc -l`)).stdout.trim()).toBe('1')
    expect(Number((await sh(`du -k '${out}/sparse.img' | cut -f1`)).stdout)).toBeLessThan(1024)
    expect((await sh(`stat -c '%a %Y' '${out}'`)).stdout).toBe((await sh(`stat -c '%a %Y' '${src}'`)).stdout)
    // as JSON, into a directory that is not empty: refused (nothing overwritten) without --overwrite
    const again = await bfs(['restore', '1', out, '--json'], { repo })
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/^bfs: restore would overwrite .*; use --overwrite or restore elsewhere\n$/)
    const over = await bfs(['restore', 'latest', out, '--overwrite', '--json', '--threads', '1'], { repo })
    expect(over.code, over.stderr).toBe(0)
    const j = JSON.parse(over.stdout) as { generation: string; errors: string[]; dest: string }
    expect(j).toMatchObject({ generation: 'gen1', errors: [], dest: out })
    expect(await diffTree(src, out)).toBe('')
  })

  it('a subtree and a single file; a missing path and refused options exit 1 in one line', async () => {
    const sub = path.join(work, 'out-sub')
    const r = await bfs(['restore', 'gen1:a', sub], { repo })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(new RegExp(`^restored gen1:a to ${sub}: `))
    expect(await diffTree(path.join(src, 'a'), sub)).toBe('')
    // a hard link whose other name is outside the subtree is a plain file there (one link)
    expect(await statTree(sub)).toBe((await statTree(path.join(src, 'a'))).replace("|2|'./hardlink.txt'", "|1|'./hardlink.txt'"))
    expect(fs.readFileSync(path.join(sub, 'hardlink.txt'), 'utf8')).toBe('hello world\n')
    const deep = path.join(work, 'out-deep')
    expect((await bfs(['restore', '1:a/b/c/d', deep], { repo })).code).toBe(0)
    expect(fs.readFileSync(path.join(deep, 'e/f/g/h/deep.txt'), 'utf8')).toBe('deep\n')
    // a file into an existing directory lands under its own name, with its metadata
    const dir = path.join(work, 'out-file')
    fs.mkdirSync(dir)
    const f = await bfs(['restore', '1:hello.txt', dir], { repo })
    expect(f.code, f.stderr).toBe(0)
    expect((await sh(`cd '${dir}' && stat -c '%n %a %s %y' hello.txt && getfattr -n user.color --only-values hello.txt`)).stdout).toBe(
      (await sh(`cd '${src}' && stat -c '%n %a %s %y' hello.txt && getfattr -n user.color --only-values hello.txt`)).stdout,
    )
    const none = await bfs(['restore', '1:no/such', path.join(work, 'out-none')], { repo })
    expect(none.code).toBe(1)
    expect(none.stderr).toBe('bfs: no/such: no such file or directory in gen1\n')
    expect(fs.existsSync(path.join(work, 'out-none'))).toBe(false)
    // --buffer-cache without a tape tier: nothing on tape, the restore as usual (format2-tape.test.ts: with one)
    const bc = await bfs(['restore', '1', path.join(work, 'out-bc'), '--buffer-cache', '1G'], { repo })
    expect(bc.code, bc.stderr).toBe(0)
    expect(fs.existsSync(path.join(repo, 'cache'))).toBe(false)
  })

  it('gen2 after changes restores to the changed tree, gen1 still to the first', async () => {
    const s = path.join(work, 'src2')
    const r2 = await init2(path.join(work, 'repo2'))
    await makeTree(s)
    await sh(`find '${s}' > /dev/null; sleep 0.01`)
    expect((await bfs(['backup', s], { repo: r2 })).code).toBe(0)
    const first = path.join(work, 'src2-first')
    expect((await sh(`cp -a '${s}' '${first}'`)).code).toBe(0)
    // changed, added, removed, renamed, a new hard link, a changed mode and xattr, a grown sparse file
    fs.appendFileSync(path.join(s, 'seq.txt'), '\nmore\n')
    fs.writeFileSync(path.join(s, 'new.txt'), 'new file\n')
    fs.mkdirSync(path.join(s, 'newdir/sub'), { recursive: true })
    fs.writeFileSync(path.join(s, 'newdir/sub/x'), 'x\n')
    fs.rmSync(path.join(s, 'readonly'))
    fs.renameSync(path.join(s, 'a/b/c/d/e/f/g/h/deep.txt'), path.join(s, 'a/deep-moved.txt'))
    fs.linkSync(path.join(s, 'new.txt'), path.join(s, 'newdir/new-link'))
    fs.chmodSync(path.join(s, 'emptydir'), 0o750)
    expect((await sh(`setfattr -n user.color -v red '${s}/hello.txt' && printf 'later' | dd of='${s}/sparse.img' bs=1 seek=1048576 conv=notrunc status=none`)).code).toBe(0)
    await sh(`find '${s}' > /dev/null; sleep 0.01`)
    expect((await bfs(['backup', s], { repo: r2 })).code).toBe(0)
    for (const [gen, want] of [['2', s], ['1', first], ['latest~1', first]] as const) {
      const out = path.join(work, `out2-${gen}`)
      const r = await bfs(['restore', gen, out], { repo: r2 })
      expect(r.code, `${gen}: ${r.stderr}`).toBe(0)
      expect(await diffTree(want, out), gen).toBe('')
      expect(await statTree(out), gen).toBe(await statTree(want))
      expect(await moreOf(out), gen).toBe(await moreOf(want))
    }
  })
})

describe('format 2: damage, and verify', () => {
  let r: string
  let s: string
  beforeAll(async () => {
    s = path.join(work, 'src-dmg')
    for (const d of ['d0', 'd1', 'd2', 'd3', 'broken']) {
      fs.mkdirSync(path.join(s, d), { recursive: true })
      for (let i = 0; i < 10; i++) fs.writeFileSync(path.join(s, d, `f${i}.txt`), `${d} file ${i}\n`)
    }
    fs.symlinkSync('d0/f0.txt', path.join(s, 'top-link'))
    r = await init2(path.join(work, 'repo-dmg'))
    const b = await bfs(['backup', s], { repo: r })
    expect(b.code, b.stderr).toBe(0)
  })

  it('a clean generation verifies: exit 0, the units, frames and bytes read, as format 1 prints them (and as JSON)', async () => {
    const v = await bfs(['verify'], { repo })
    expect(v.code, v.stdout + v.stderr).toBe(0)
    expect(v.stdout).toMatch(/^ok: gen1 verified \(\d+ units?, \d+ frames?, [\d.]+ \w+\)\n$/)
    const j = await bfs(['verify', '1', '--json'], { repo: r })
    expect(j.code, j.stderr).toBe(0)
    expect(JSON.parse(j.stdout)).toMatchObject({ generations: ['gen1'], ok: true, problems: 0, units: 1, lines: [] })
    const all = await bfs(['verify', '--all'], { repo: r })
    expect(all.code, all.stdout).toBe(0)
    const none = await bfs(['verify', '7'], { repo: r })
    expect(none.code).toBe(1)
    expect(none.stderr).toMatch(/^bfs: no generation 7 in .*\n$/)
  })

  it('verify --against: the source and a restore match (exit 0); a changed copy lists each difference as format 1 does (exit 4, and as JSON)', async () => {
    const ag = await bfs(['verify', '--against', s], { repo: r })
    expect(ag.stderr).toBe('')
    expect(ag.stdout).toBe(`gen1 matches ${s}\n`)
    expect(ag.code).toBe(0)
    const dest = path.join(work, 'against-restored')
    expect((await bfs(['restore', '1', dest], { repo: r })).code).toBe(0)
    expect((await bfs(['verify', '--against', dest, '1'], { repo: r })).stdout).toBe(`gen1 matches ${dest}\n`)
    // a copy, then one difference of each kind
    const c = path.join(work, 'against-copy')
    await sh(`cp -a '${s}' '${c}'`)
    await sh(`cd '${c}' && printf 'X' | dd of=d0/f1.txt bs=1 seek=3 conv=notrunc status=none && touch -r '${s}/d0/f1.txt' d0/f1.txt`) // same size and mtime, other bytes
    fs.chmodSync(path.join(c, 'd1/f2.txt'), 0o600)
    fs.rmSync(path.join(c, 'd2/f3.txt'))
    fs.writeFileSync(path.join(c, 'd3/extra.txt'), 'extra\n')
    fs.rmSync(path.join(c, 'top-link'))
    fs.symlinkSync('d1/f0.txt', path.join(c, 'top-link'))
    fs.rmSync(path.join(c, 'broken'), { recursive: true })
    fs.writeFileSync(path.join(c, 'broken'), 'a file now\n')
    const bad = await bfs(['verify', '--against', c, '1'], { repo: r })
    expect(bad.stderr).toBe('')
    expect(bad.code).toBe(4)
    const lines = bad.stdout.trim().split('\n')
    // in walk order: names sorted, a directory's extra live names after its entries
    expect(lines.slice(0, -1)).toEqual([
      'T broken: type differs',
      'M d0/f1.txt: content differs',
      'M d1/f2.txt: mode 644 != 600',
      '- d2/f3.txt: missing in the live tree',
      '+ d3/extra.txt: not in the generation',
      expect.stringMatching(/^M top-link: mtime .*, target d0\/f0\.txt != d1\/f0\.txt$/),
    ])
    expect(lines[lines.length - 1]).toBe(`6 differences between gen1 and ${c}`)
    const j = await bfs(['verify', '--against', c, '1', '--json'], { repo: r })
    expect(j.code).toBe(4)
    expect(JSON.parse(j.stdout)).toMatchObject({ generation: 'gen1', against: c, ok: false, differences: 6 })
    const missing = await bfs(['verify', '--against', path.join(work, 'no-such-dir'), '1'], { repo: r })
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/^bfs: .*no-such-dir does not exist\n$/)
  })

  it('a damaged manifest: verify --all and verify N name it (exit 4); bare verify takes the latest that reads (exit 0)', async () => {
    const s3 = path.join(work, 'src-man')
    fs.mkdirSync(s3)
    fs.writeFileSync(path.join(s3, 'f'), 'one\n')
    const r3 = await init2(path.join(work, 'repo-man'))
    expect((await bfs(['backup', s3], { repo: r3 })).code).toBe(0)
    fs.writeFileSync(path.join(s3, 'f'), 'two\n')
    expect((await bfs(['backup', s3], { repo: r3 })).code).toBe(0)
    const key = path.join(r3, keys2.manifest(2))
    const m = fs.readFileSync(key)
    m[m.length - 2] ^= 0xff
    fs.writeFileSync(key, m)
    const all = await bfs(['verify', '--all'], { repo: r3 })
    expect(all.code).toBe(4)
    expect(all.stdout).toMatch(/^FAIL gen2 is damaged: .*gen-00000002.*\n1 problem found\n$/)
    const two = await bfs(['verify', '2'], { repo: r3 })
    expect(two.code).toBe(4)
    expect(two.stdout).toMatch(/^FAIL gen2 is damaged: /)
    const latest = await bfs(['verify'], { repo: r3 })
    expect(latest.code, latest.stdout).toBe(0)
    expect(latest.stdout).toMatch(/^ok: gen1 verified /)
  })

  it('a rotted directory piece: restore names genN:path in one line, restores the rest (exit 1); a subtree beside it restores (exit 0); verify exits 4 naming it', async () => {
    await rotDir(r, '1', 'broken')
    const out = path.join(work, 'out-dmg')
    const x = await bfs(['restore', '1', out], { repo: r })
    expect(x.code, x.stderr).toBe(1)
    const lines = x.stderr.split('\n').filter(Boolean)
    expect(lines, x.stderr).toHaveLength(1)
    expect(lines[0]).toMatch(new RegExp(`^bfs: warning: ${out}/broken: what is below it was not restored: gen1:broken: .*pack-\\d{8}.* at offset \\d+`))
    expect(x.stdout).toMatch(/, 1 error; removed 1 directory it had created that the errors left empty\n$/)
    for (const d of ['d0', 'd1', 'd2', 'd3']) expect(await diffTree(path.join(s, d), path.join(out, d)), d).toBe('')
    expect(fs.readlinkSync(path.join(out, 'top-link'))).toBe('d0/f0.txt')
    expect(fs.existsSync(path.join(out, 'broken'))).toBe(false)
    // the damaged piece is not on the way to d2: nothing of it is read
    const sub = await bfs(['restore', '1:d2', path.join(work, 'out-dmg-d2')], { repo: r })
    expect(sub.code, sub.stderr).toBe(0)
    expect(await diffTree(path.join(s, 'd2'), path.join(work, 'out-dmg-d2'))).toBe('')
    // on the way to it: nothing to restore, exit 6 naming it
    const on = await bfs(['restore', '1:broken/f1.txt', path.join(work, 'out-dmg-b')], { repo: r })
    expect(on.code).toBe(6)
    expect(on.stderr).toMatch(/^bfs: gen1:broken\/f1.txt: .*pack-\d{8}.* at offset \d+.*\n$/)
    const v = await bfs(['verify'], { repo: r })
    expect(v.code, v.stdout + v.stderr).toBe(4)
    expect(v.stdout).toMatch(/^FAIL gen1:broken: .*pack-\d{8}.* at offset \d+.*\n1 problem found\n$/)
    const j = await bfs(['verify', '--json'], { repo: r })
    expect(j.code).toBe(4)
    const o = JSON.parse(j.stdout) as { ok: boolean; problems: number; lines: string[] }
    expect(o).toMatchObject({ ok: false, problems: 1 })
    expect(o.lines[0]).toMatch(/^FAIL gen1:broken: /)
  })

  it('a rotted unit: restore fails the files in the damaged frame in one line each and restores the others (exit 1); verify exits 4 naming the unit and frame; a rotted hashes file is named too', async () => {
    const s2 = path.join(work, 'src-unit')
    makeRotTree(s2)
    const r2 = await init2(path.join(work, 'repo-unit'))
    expect((await bfs(['backup', s2, '--frame-blocks', '16'], { repo: r2 })).code).toBe(0)
    expect((await bfs(['verify'], { repo: r2 })).code).toBe(0)
    const unit = path.join(r2, keys2.unit(1, 0))
    const b = fs.readFileSync(unit)
    const at = Math.floor(b.length * 0.6)
    b[at] ^= 0xff
    fs.writeFileSync(unit, b)
    const out = path.join(work, 'out-unit')
    const res = await bfs(['restore', '1', out], { repo: r2 })
    expect(res.code).toBe(1)
    const lines = res.stderr.split('\n').filter(Boolean)
    expect(lines, res.stderr).toHaveLength(1)
    expect(lines[0]).toMatch(new RegExp(`^bfs: warning: ${out}/z/big.bin: .*unit-00000000: frame \\d+ is corrupt`))
    expect(await diffTree(path.join(s2, 'a'), path.join(out, 'a'))).toBe('')
    expect(fs.existsSync(path.join(out, 'z/big.bin'))).toBe(false)
    const v = await bfs(['verify'], { repo: r2 })
    expect(v.code).toBe(4)
    expect(v.stdout).toMatch(/^FAIL .*\/gens\/00000001\/unit-00000000: frame \d+: .*\n1 problem found\n$/)
    b[at] ^= 0xff
    fs.writeFileSync(unit, b)
    expect((await bfs(['verify'], { repo: r2 })).code).toBe(0)
    // the hashes file: checked against the stream record's sha256
    const hashes = path.join(r2, keys2.hashes(1))
    const h = fs.readFileSync(hashes)
    h[h.length - 1] ^= 0x01
    fs.writeFileSync(hashes, h)
    const vh = await bfs(['verify'], { repo: r2 })
    expect(vh.code).toBe(4)
    expect(vh.stdout).toMatch(/^FAIL .*\/gens\/00000001\/hashes: .*\n1 problem found\n$/)
    // a stored block hash that is not the data's, in a hashes file its record vouches for: the
    // frame checks pass, the comparison of each block with its stored hash does not
    h[h.length - 1] ^= 0x01
    const repo2 = Repo2.open(r2)
    const rec = repo2.stream(1)
    const payload = Buffer.from(payloadOf('hashes', h, hashes))
    payload[8 * 300] ^= 0x01
    const file = envelope2('hashes', payload)
    fs.writeFileSync(hashes, file)
    fs.writeFileSync(path.join(r2, keys2.stream(1)), envelope2('stream', encodeStreamRecord({ ...rec, hashes: { bytes: file.length, sha256: createHash('sha256').update(payload).digest('hex') } })))
    const vb = await bfs(['verify'], { repo: r2 })
    expect(vb.code).toBe(4)
    expect(vb.stdout).toMatch(/^FAIL .*\/gens\/00000001\/unit-00000000: frame \d+: block 300 of the unit does not match its stored block hash\n1 problem found\n$/)
  })
})
