/**
 * bfs find's native walk of format 2 trees (cli/find.ts Find2, native/dirlist.c dl_scan):
 * directory pages scanned in C, names matched in place, only matches decoded. Every answer is
 * checked against the JavaScript walk (BFS_FIND_JS=1: every page decoded into entries) and
 * against fixed expectations (a walk that is wrong in both ways still fails), on a history
 * built for it: a 200-entry directory changed a little in every generation (DIRDELTA pieces,
 * whose base is read with them), a directory paged under a DIRINDEX (walked in C by findwalk.c, and by the page scan for patterns C does not take),
 * hard links (which the mount's listing declines and find does not), names with bytes ≥ 0x80
 * (valid and invalid UTF-8), mtimes for --newer/--older, and two sources. dirScan itself is
 * compared with the decoder on every page of the repository, whole and damaged. No FUSE.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bfs, sh, tmpdir } from './helpers.js'
import { Repo2 } from '../src/repo/v2/repo2.js'
import { PieceReader } from '../src/pieces/reader.js'
import { PieceKind, StrictReader, comparePieceRefs, readPieceRef, type PieceRef } from '../src/format/v2/common.js'
import { applyDirDelta, decodeDir, decodeDirDelta, decodeDirIndex, readEntry, FileType, type Entry2 } from '../src/format/v2/dir.js'
import { DIR_ROW, ROW_ENTRIES, ROW_ENTRY, ROW_ID, ROW_NAME, ROW_NAME_LEN, ROW_REF, ROW_SRC, ROW_TYPE, ROWS_START, dirScan } from '../src/codec/dirlist.js'

let work: string
let a: string
let b: string
let repo: string
const GENS_A = [1, 3, 4, 5, 6]

async function run(cmd: string, cwd: string): Promise<void> {
  const r = await sh(`export TZ=UTC; ${cmd}`, { cwd })
  expect(r.stderr).toBe('')
  expect(r.code).toBe(0)
}
async function backup(dir: string): Promise<void> {
  const r = await bfs(['backup', dir], { repo })
  expect(r.stderr).toBe('')
  expect(r.code).toBe(0)
}

beforeAll(async () => {
  work = tmpdir('bfs-find-native-')
  a = path.join(work, 'a')
  b = path.join(work, 'b')
  repo = path.join(work, 'repo')
  expect((await bfs(['init', '--format', '2'], { repo })).code).toBe(0)
  fs.mkdirSync(a, { recursive: true })
  await run(
    [
      'mkdir -p big/sub/deep/x/y paged b2',
      // 200 entries: a changed page of it is written as a DIRDELTA over its DIR (§2.13.3)
      'for i in $(seq -w 0 199); do echo "$i" > big/f$i; done',
      "printf 'caf\\xc3\\xa9.txt\\0raw\\xff\\xfe.bin\\0\\xc3\\x9cber.TXT\\0' | xargs -0 touch -d '2019-05-05 00:00:00' --",
      "mv caf* raw* *ber.TXT big/",
      'echo linked > big/h1 && ln big/h1 big/h2 && ln big/h1 big/sub/h3',
      'echo m > big/sub/Makefile && echo m > big/sub/deep/x/y/Makefile && echo m > Makefile',
      // paged: its pages are under a DIRINDEX
      'cd paged && seq -f "a-file-with-a-rather-long-name-%05g" 1 5000 | xargs touch && cd ..',
      "touch -d '2020-01-01 00:00:00' big/f*",
    ].join(' && '),
    a,
  )
  fs.mkdirSync(b, { recursive: true })
  await run("echo b > Makefile && mkdir -p big && echo x > big/f000 && touch -d '2018-01-01' big/f000", b)
  await backup(a) // gen1
  await backup(b) // gen2 (source b)
  for (let g = 0; g < 4; g++) {
    // a few changes to big/ in every generation: deltas over big/'s DIR
    await run(
      [
        `echo changed-${g} >> big/f1${g}0 && touch -d '2022-0${g + 1}-01 00:00:00' big/f1${g}0`,
        `rm big/f19${g}`,
        `echo new > big/n${g}`,
        g === 1 ? 'echo m > big/Makefile && mkdir big/sub/new && echo m > big/sub/new/Makefile' : 'true',
        g === 2 ? 'rm big/sub/deep/x/y/Makefile' : 'true',
        g === 3 ? 'rm paged/a-file-with-a-rather-long-name-00007' : 'true',
      ].join(' && '),
      a,
    )
    await backup(a) // gen3..gen6
  }
}, 600_000)
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

/** find with the native walk and with the JavaScript one: the same stdout, stderr and exit code; the native walk's counts. */
async function both(args: string[]): Promise<{ stdout: string; code: number; native: number; deltas: number; js: number; inC: number; piecesInC: number }> {
  const n = await bfs(['find', ...args], { repo, env: { BFS_FIND_STATS: '1' } })
  const j = await bfs(['find', ...args], { repo, env: { BFS_FIND_JS: '1' } })
  expect(n.stdout, args.join(' ')).toBe(j.stdout)
  expect(n.code, `${args.join(' ')}: ${n.stderr}`).toBe(j.code)
  // (the walk in C, native/findwalk.c, declines a generation with a DIRINDEX: those are walked here)
  const c = /^bfs: find: (\d+) generations walked in C \((\d+) pieces read\) in \d+ ms\n/m.exec(n.stderr)
  const m = /^bfs: find: (\d+) directories scanned natively \((\d+) DIRDELTA\), (\d+) in JavaScript; \d+ pieces read, \d+ bytes$/m.exec(n.stderr)
  expect(m ?? c, n.stderr).not.toBeNull() // (every generation walked in C: no line of the page scan)
  expect(n.stderr.replace(m ? m[0] + '\n' : '', '').replace(c?.[0] ?? '', '')).toBe(j.stderr)
  return { stdout: n.stdout, code: n.code, native: m ? +m[1]! : 0, deltas: m ? +m[2]! : 0, js: m ? +m[3]! : 0, inC: c ? +c[1]! : 0, piecesInC: c ? +c[2]! : 0 }
}

interface Hit { generation: string; matches: Array<{ path: string; pathBase64: string; type: string; size: number; mtime: string; nlink: number }> }
const paths = (out: string): Record<string, string[]> =>
  Object.fromEntries((JSON.parse(out) as Hit[]).map((g) => [g.generation, g.matches.map((x) => Buffer.from(x.pathBase64, 'base64').toString('latin1'))]))

describe('bfs find: the native walk of format 2 trees', () => {
  it('a name at any depth: the same answers as the JavaScript walk, in C (a DIRINDEX too), and through the page scan for a pattern C does not take', async () => {
    const c = await both(['--json', 'Makefile'])
    expect(c.inC).toBe(6) // every generation, paged/ (a DIRINDEX) included
    expect(c.piecesInC).toBeLessThan(8 * 6) // unchanged directories read once
    // [M]: a class, which C does not match: the page scan (DIRDELTA pages natively, the DIRINDEX's pages in JavaScript)
    const r = await both(['--json', '[M]akefile'])
    expect(r.stdout).toBe(c.stdout)
    expect(r.inC).toBe(0)
    expect(r.code).toBe(0)
    const p = paths(r.stdout)
    expect(p.gen1).toEqual(['/Makefile', '/big/sub/Makefile', '/big/sub/deep/x/y/Makefile'])
    expect(p.gen2).toEqual(['/Makefile'])
    expect(p.gen4).toEqual(['/Makefile', '/big/Makefile', '/big/sub/Makefile', '/big/sub/deep/x/y/Makefile', '/big/sub/new/Makefile'])
    expect(p.gen5).toEqual(['/Makefile', '/big/Makefile', '/big/sub/Makefile', '/big/sub/new/Makefile'])
    expect(r.native).toBeGreaterThan(8)
    expect(r.deltas).toBeGreaterThanOrEqual(3) // big/ in gens 4..6 at least
    expect(r.js).toBeGreaterThanOrEqual(1) // paged/
    // unchanged directories are walked once for all generations (the memo by piece id)
    expect(r.native + r.js).toBeLessThan(8 * 6)
  })

  it('globs (*, ?, [...], [!...], **, a trailing /), -i, and entries of DIRDELTA pieces and of their bases', async () => {
    const cases: Array<[string[], Record<string, string[]> | null]> = [
      [['f1?0', '--gens', '6'], { gen6: ['/big/f100', '/big/f110', '/big/f120', '/big/f130', '/big/f140', '/big/f150', '/big/f160', '/big/f170', '/big/f180'] }],
      [['f19*'], null],
      [['n[0-2]'], { gen3: ['/big/n0'], gen4: ['/big/n0', '/big/n1'], gen5: ['/big/n0', '/big/n1', '/big/n2'], gen6: ['/big/n0', '/big/n1', '/big/n2'] }],
      [['/big/[!fnhMcr]*', '--gens', '1'], { gen1: ['/big/sub', '/big/\u00c3\u009cber.TXT'] }],
      [['/big/**/Makefile', '--gens', '4'], { gen4: ['/big/Makefile', '/big/sub/Makefile', '/big/sub/deep/x/y/Makefile', '/big/sub/new/Makefile'] }],
      [['big/sub/**', '--gens', '1'], { gen1: ['/big/sub/Makefile', '/big/sub/deep', '/big/sub/deep/x', '/big/sub/deep/x/y', '/big/sub/deep/x/y/Makefile', '/big/sub/h3'] }],
      [['sub/'], null],
      [['*.txt', '-i', '--gens', '1'], { gen1: ['/big/caf\u00c3\u00a9.txt', '/big/\u00c3\u009cber.TXT'] }],
      [['*/*', '--gens', '2'], { gen2: ['/big/f000'] }],
      [['paged/*00099', '--gens', '6'], { gen6: ['/paged/a-file-with-a-rather-long-name-00099'] }],
      [['a-file-*-0000?', '--gens', '5..6'], {
        gen5: [1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => `/paged/a-file-with-a-rather-long-name-0000${i}`),
        gen6: [1, 2, 3, 4, 5, 6, 8, 9].map((i) => `/paged/a-file-with-a-rather-long-name-0000${i}`),
      }],
    ]
    for (const [args, want] of cases) {
      const r = await both(['--json', ...args])
      expect(r.code, args.join(' ')).toBe(0)
      const p = paths(r.stdout)
      if (want) expect(p, args.join(' ')).toEqual(want)
      else expect(Object.keys(p).length, args.join(' ')).toBeGreaterThan(0)
    }
    // every page of the DIRINDEX walked in C, in name order, the one removed in gen6 gone
    const ix = await both(['--json', '/paged/*'])
    expect(ix.inC).toBe(6)
    const px = paths(ix.stdout)
    expect(px.gen1).toHaveLength(5000)
    expect(px.gen6).toHaveLength(4999)
    expect(px.gen6).not.toContain('/paged/a-file-with-a-rather-long-name-00007')
    expect([...px.gen1!].sort()).toEqual(px.gen1)
    // f19*: one removed per generation (f190 in gen3, f191 in gen4, …)
    const r = paths((await both(['--json', 'f19*'])).stdout)
    expect(r.gen1!.length).toBe(10)
    expect(r.gen6!).toEqual(['/big/f194', '/big/f195', '/big/f196', '/big/f197', '/big/f198', '/big/f199'])
  })

  it('names with bytes >= 0x80: valid UTF-8 matched as text, invalid bytes as one character each; the path bytes kept', async () => {
    const r = await both(['--json', 'café.txt'])
    const hits = JSON.parse(r.stdout) as Hit[]
    expect(hits.map((h) => h.generation)).toEqual(GENS_A.map((g) => `gen${g}`))
    expect(hits[0]!.matches[0]!.path).toBe('/big/café.txt')
    const raw = await both(['--json', 'raw??.bin'])
    const rh = JSON.parse(raw.stdout) as Hit[]
    expect(rh).toHaveLength(5)
    expect(Buffer.from(rh[0]!.matches[0]!.pathBase64, 'base64')).toEqual(Buffer.from('/big/raw\xff\xfe.bin', 'latin1'))
    expect((await both(['--json', 'raw?.bin'])).stdout).toBe('[]\n')
    // [...] with a non-ASCII member, and -i on one
    expect(paths((await both(['--json', '[Ü]ber.TXT', '--gens', '1'])).stdout)).toEqual({ gen1: ['/big/\u00c3\u009cber.TXT'] })
    expect(paths((await both(['--json', '-i', 'üBER.txt', '--gens', '1'])).stdout)).toEqual({ gen1: ['/big/\u00c3\u009cber.TXT'] })
  })

  it('hard links are found (the mount listing declines them, find does not), with their sizes and link counts', async () => {
    const r = await both(['--json', 'h[0-9]', '--gens', '1'])
    const g = JSON.parse(r.stdout) as Hit[]
    expect(g[0]!.matches.map((x) => [x.path, x.size, x.nlink])).toEqual([['/big/h1', 7, 3], ['/big/h2', 7, 3], ['/big/sub/h3', 7, 3]])
  })

  it('--newer/--older on the decoded matches; --gens; several sources (--source)', async () => {
    const newer = paths((await both(['--json', 'f1?0', '--newer', '2022-02-15'])).stdout)
    expect(newer).toEqual({ gen5: ['/big/f120'], gen6: ['/big/f120', '/big/f130'] })
    const older = paths((await both(['--json', 'f0*', '--older', '2021-01-01', '--gens', '2..3'])).stdout)
    expect(older.gen2).toEqual(['/big/f000'])
    expect(older.gen3).toHaveLength(100)
    expect(paths((await both(['--json', 'f000', '--source', b])).stdout)).toEqual({ gen2: ['/big/f000'] })
    expect(paths((await both(['--json', 'Makefile', '--source', a, '--gens', '..3'])).stdout)).toEqual({
      gen1: ['/Makefile', '/big/sub/Makefile', '/big/sub/deep/x/y/Makefile'],
      gen3: ['/Makefile', '/big/sub/Makefile', '/big/sub/deep/x/y/Makefile'],
    })
    // the text output, byte for byte the JavaScript walk's (both() compares)
    const t = await both(['ber.TXT', '-i', '--gens', '1'])
    expect(t.stdout).toBe('')
    const u = await both(['*ber.TXT', '--gens', '1'])
    expect(u.stdout).toMatch(/\/big\/.*ber\.TXT\n$/)
  })

  it('a damaged DIRDELTA page: the generations that hold it are named (exit 3), as the JavaScript walk names them', async () => {
    const dmg = path.join(work, 'damaged')
    fs.cpSync(repo, dmg, { recursive: true })
    // big/'s DIRDELTA in gen6: its stored bytes flipped in the pack
    const r2 = Repo2.open(dmg)
    const pieces = new PieceReader(r2.store)
    const root = await pieces.piece(r2.manifest(6).rootEntry.dir!.child)
    const big = root.kind === PieceKind.Dir || root.kind === PieceKind.DirDelta ? root.entries.find((e) => e.name.toString() === 'big')! : null
    const ref = big!.dir!.child
    expect((await pieces.payload(ref))[0]).toBe(PieceKind.DirDelta)
    const pack = path.join(dmg, 'gens', String(ref.run).padStart(8, '0'), `pack-${String(ref.pack).padStart(8, '0')}`)
    expect(fs.existsSync(pack), pack).toBe(true)
    const fd = fs.openSync(pack, 'r+')
    const byte = Buffer.alloc(1)
    fs.readSync(fd, byte, 0, 1, ref.offset + Math.floor(ref.storedLen / 2))
    byte[0] ^= 0x5a
    fs.writeSync(fd, byte, 0, 1, ref.offset + Math.floor(ref.storedLen / 2))
    fs.closeSync(fd)
    const n = await bfs(['find', 'Makefile'], { repo: dmg })
    const j = await bfs(['find', 'Makefile'], { repo: dmg, env: { BFS_FIND_JS: '1' } })
    expect(n.code).toBe(3)
    expect(n.stderr).toBe(j.stderr)
    expect(n.stdout).toBe(j.stdout)
    expect(n.stderr).toMatch(/^bfs: warning: gen6 is damaged and was not searched: \/big: .*\n$/)
    expect(Object.keys(paths((await bfs(['find', '--json', 'Makefile'], { repo: dmg })).stdout))).toEqual(['gen1', 'gen2', 'gen3', 'gen4', 'gen5'])
  })

  it('a damaged DIRINDEX and a damaged page under it: C declines the generations that hold them, named as the JavaScript walk names them', async () => {
    for (const which of ['index', 'page'] as const) {
      const dmg = path.join(work, `damaged-${which}`)
      fs.cpSync(repo, dmg, { recursive: true })
      const r2 = Repo2.open(dmg)
      const pieces = new PieceReader(r2.store)
      const root = await pieces.piece(r2.manifest(1).rootEntry.dir!.child)
      const paged = (root.kind === PieceKind.Dir || root.kind === PieceKind.DirDelta ? root.entries : []).find((e) => e.name.toString() === 'paged')!
      let ref = paged.dir!.child
      const raw = await pieces.payload(ref)
      expect(raw[0]).toBe(PieceKind.DirIndex)
      if (which === 'page') ref = decodeDirIndex(raw, 'test').children[1]!.ref
      const pack = path.join(dmg, 'gens', String(ref.run).padStart(8, '0'), `pack-${String(ref.pack).padStart(8, '0')}`)
      const fd = fs.openSync(pack, 'r+')
      const byte = Buffer.alloc(1)
      fs.readSync(fd, byte, 0, 1, ref.offset + Math.floor(ref.storedLen / 2))
      byte[0] ^= 0x5a
      fs.writeSync(fd, byte, 0, 1, ref.offset + Math.floor(ref.storedLen / 2))
      fs.closeSync(fd)
      const n = await bfs(['find', 'Makefile'], { repo: dmg, env: { BFS_FIND_STATS: '1' } })
      const j = await bfs(['find', 'Makefile'], { repo: dmg, env: { BFS_FIND_JS: '1' } })
      expect(j.code, which).toBe(3)
      expect(n.code, which).toBe(3)
      expect(n.stdout, which).toBe(j.stdout)
      expect(j.stderr, which).toMatch(/^bfs: warning: gen1 is damaged and was not searched: \/paged: /)
      const c = /^bfs: find: (\d+) generations walked in C .*\n/m.exec(n.stderr)
      expect(c, n.stderr).not.toBeNull()
      expect(+c![1]!, which).toBeLessThan(6)
      expect(n.stderr.replace(c![0], '').replace(/^bfs: find: \d+ directories scanned natively .*\n/m, ''), which).toBe(j.stderr)
    }
  })
})

/** Every DIR and DIRDELTA page of every generation (DIRINDEX nodes followed), with its ref. */
async function allPages(r: Repo2, pieces: PieceReader): Promise<PieceRef[]> {
  const seen = new Map<string, PieceRef>()
  const visit = async (ref: PieceRef): Promise<void> => {
    const k = ref.id.toString('hex')
    if (seen.has(k)) return
    const raw = await pieces.payload(ref)
    if (raw[0] === PieceKind.DirIndex) {
      for (const c of decodeDirIndex(raw, 'test').children) await visit(c.ref)
      return
    }
    seen.set(k, ref)
    const p = await pieces.piece(ref)
    if (p.kind === PieceKind.Dir || p.kind === PieceKind.DirDelta) for (const e of p.entries) if (e.dir) await visit(e.dir.child)
  }
  for (const g of r.generations()) if ('manifest' in g && g.manifest.rootEntry.dir) await visit(g.manifest.rootEntry.dir.child)
  return [...seen.values()]
}

/** The entries dirScan's rows stand for, decoded at their offsets, with their refs as the rows give them. */
function fromRows(rows: Float64Array, bufs: Buffer[]): Array<{ e: Entry2; name: Buffer; type: number; ref: PieceRef | null; id: string | null; entries: number }> {
  const out = []
  for (let i = ROWS_START; i < rows.length; i += DIR_ROW) {
    const b = bufs[rows[i + ROW_SRC]!]!
    const e = readEntry(new StrictReader(b, 'test', rows[i + ROW_ENTRY]!))
    const refAt = rows[i + ROW_REF]!
    const idAt = rows[i + ROW_ID]!
    out.push({
      e,
      name: b.subarray(rows[i + ROW_NAME]!, rows[i + ROW_NAME]! + rows[i + ROW_NAME_LEN]!),
      type: rows[i + ROW_TYPE]!,
      ref: refAt >= 0 ? readPieceRef(new StrictReader(b, 'test', refAt)) : null,
      id: idAt >= 0 ? b.toString('hex', idAt, idAt + 32) : null,
      entries: rows[i + ROW_ENTRIES]!,
    })
  }
  return out
}

describe('dirScan (native/dirlist.c dl_scan) against the decoder', () => {
  it('every DIR and DIRDELTA page of the repository: the same entries, names, types and directory refs', async () => {
    const r = Repo2.open(repo)
    const pieces = new PieceReader(r.store)
    const refs = await allPages(r, pieces)
    let dirs = 0
    let deltas = 0
    let linked = 0
    for (const ref of refs) {
      const raw = await pieces.payload(ref)
      let base: Buffer | null = null
      let want: Entry2[]
      if (raw[0] === PieceKind.DirDelta) {
        const d = decodeDirDelta(raw, 'test')
        expect(comparePieceRefs(d.base, ref)).toBeLessThan(0)
        base = await pieces.payload(d.base)
        want = applyDirDelta(decodeDir(base, 'test'), d, 'test')
        deltas++
        // without its base, or on a base that is not a DIR, it declines
        expect(dirScan(raw, null)).toBeNull()
        expect(dirScan(raw, raw)).toBeNull()
      } else {
        want = decodeDir(raw, 'test')
        dirs++
      }
      const rows = dirScan(raw, base)
      expect(rows, ref.id.toString('hex')).not.toBeNull()
      expect(rows![0]).toBe(want.length)
      // the base's rows given (parsed once for many deltas): the same rows
      if (base) expect(dirScan(raw, base, null, dirScan(base, null))).toEqual(rows)
      const got = fromRows(rows!, base ? [raw, base] : [raw])
      expect(got.map((x) => x.e)).toEqual(want)
      // keep: the directories with a piece, and the entries of that name
      for (const keep of [want[0]!.name, Buffer.from('Makefile'), Buffer.from('no-such-name')]) {
        const k = dirScan(raw, base, keep)
        expect(k![0]).toBe(want.length)
        expect(fromRows(k!, base ? [raw, base] : [raw]).map((x) => x.e)).toEqual(want.filter((e) => e.dir || e.name.equals(keep)))
      }
      for (const x of got) {
        expect(x.name).toEqual(x.e.name)
        expect(x.type).toBe(x.e.type)
        expect(x.ref).toEqual(x.e.dir?.child ?? null)
        expect(x.id).toBe(x.e.dir ? x.e.dir.child.id.toString('hex') : null)
        expect(x.entries).toBe(x.e.dir?.entries ?? 0)
        if (x.e.flags & 2) linked++
      }
    }
    expect(dirs).toBeGreaterThan(5)
    expect(deltas).toBeGreaterThanOrEqual(3)
    expect(linked).toBeGreaterThanOrEqual(3)
  })

  it('damaged payloads (bytes flipped, cut short, trailing bytes): declined, or read exactly as the decoder reads them', async () => {
    const r = Repo2.open(repo)
    const pieces = new PieceReader(r.store)
    const refs = await allPages(r, pieces)
    let x = 7
    const rnd = (n: number): number => {
      x = (x * 1103515245 + 12345) >>> 0
      return x % n
    }
    let declined = 0
    let same = 0
    for (const ref of refs.slice(0, 24)) {
      const raw = await pieces.payload(ref)
      const base = raw[0] === PieceKind.DirDelta ? await pieces.payload(decodeDirDelta(raw, 'test').base) : null
      const decode = (p: Buffer): Entry2[] | null => {
        try {
          return p[0] === PieceKind.DirDelta ? applyDirDelta(decodeDir(base!, 'test'), decodeDirDelta(p, 'test'), 'test') : decodeDir(p, 'test')
        } catch {
          return null
        }
      }
      expect(dirScan(raw.subarray(0, raw.length - 1), base)).toBeNull()
      expect(dirScan(Buffer.concat([raw, Buffer.from([0])]), base)).toBeNull()
      expect(dirScan(raw.subarray(0, 1), base)).toBeNull()
      for (let k = 0; k < 24; k++) {
        const bad = Buffer.from(raw)
        const at = rnd(bad.length)
        bad[at] ^= 1 << rnd(8)
        const rows = dirScan(bad, base)
        if (!rows) {
          declined++
          continue
        }
        // accepted: the decoder reads the same entries (the scan never answers what it would refuse)
        const want = decode(bad)
        if (want === null) {
          // a field the scan steps over without the decoder's finer checks (an xattr's value, a map's
          // rules): allowed only where it does not change what find shows: names, types and refs
          continue
        }
        expect(fromRows(rows, base ? [bad, base] : [bad]).map((y) => y.e)).toEqual(want)
        same++
      }
    }
    expect(declined).toBeGreaterThan(100)
    expect(same).toBeGreaterThan(0)
  })

  it('refuses what is not a Buffer', () => {
    expect(() => dirScan('x' as unknown as Buffer, null)).toThrow(/payload/)
    expect(() => dirScan(Buffer.from([1, 1, 1]), 'x' as unknown as Buffer)).toThrow(/base/)
    expect(dirScan(Buffer.alloc(0), null)).toBeNull()
    expect(() => dirScan(Buffer.from([2, 1]), Buffer.from([1, 1]), null, new Float64Array([5, 1]))).toThrow(/baseRows/)
  })
})
