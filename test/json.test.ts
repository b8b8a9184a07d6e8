import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bfs, makeTree, newRepo, sh, tmpdir } from './helpers.js'

// --json on every command that prints data, with the field names README.md documents.

let work: string
let repo: string
let src: string
beforeAll(async () => {
  work = tmpdir('bfs-json-')
  repo = await newRepo(path.join(work, 'repo'))
  src = path.join(work, 'src')
  await makeTree(src)
  const b = await bfs(['backup', src], { repo })
  expect(b.code).toBe(0)
})
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

describe('--json', () => {
  it('every command that prints data offers it', async () => {
    for (const c of [['generations'], ['ls'], ['backup'], ['restore'], ['verify'], ['group', 'add'], ['group', 'ls'], ['group', 'show'], ['tier', 'add'], ['tier', 'ls'], ['tier', 'status'], ['version']]) {
      expect((await bfs([...c, '--help'])).stdout, c.join(' ')).toMatch(/^ {2}--json +\S/m)
    }
  })

  it('ls GEN:PATH --json lists the entries as stat(1) and ls -l see them, names as bytes', async () => {
    const r = await bfs(['ls', '--json', 'gen1'], { repo })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const list = JSON.parse(r.stdout) as Array<Record<string, unknown>>
    const byPath = new Map(list.map((e) => [Buffer.from(e.pathBase64 as string, 'base64').toString('latin1'), e]))
    // the same names as the source directory, bytes and all
    const names = (fs.readdirSync(src, { encoding: 'buffer' }) as Buffer[]).map((b) => b.toString('latin1')).sort()
    expect([...byPath.keys()].sort()).toEqual(names)
    const hello = byPath.get('hello.txt')!
    const st = (await sh(`stat -c '%s %u %g %a %h %F' '${src}/hello.txt'`)).stdout.trim().split(' ')
    expect([hello.size, hello.uid, hello.gid, (hello.mode as number).toString(8), hello.nlink, hello.type]).toEqual([Number(st[0]), Number(st[1]), Number(st[2]), st[3], Number(st[4]), 'file'])
    expect(hello.mtime).toBe((await sh(`TZ=UTC date -d "$(stat -c %y '${src}/hello.txt')" +%Y-%m-%dT%H:%M:%S.%NZ`)).stdout.trim())
    expect(hello.mtime).toMatch(/\.123456789Z$/)
    expect(hello.permissions).toBe('-rw-r--r--')
    expect(hello.name).toBe('hello.txt')
    expect(byPath.get('setuid')!.permissions).toBe('-rwsr-xr-x')
    expect(byPath.get('dangling')).toMatchObject({ type: 'symlink', target: '/nonexistent/target' })
    expect(byPath.get('fifo')!.type).toBe('fifo')
    expect(byPath.get('sparse.img')!.size).toBe(64 << 20)
    // a name that is not UTF-8: null as text, exact as bytes
    const odd = byPath.get('odd\nname\xff\xfe.txt')!
    expect(odd.name).toBe(null)
    expect(Buffer.from(odd.nameBase64 as string, 'base64').equals(Buffer.from('odd\nname\xff\xfe.txt', 'latin1'))).toBe(true)
    if (process.getuid?.() === 0) expect(byPath.get('chardev')).toMatchObject({ type: 'chardev', rdevMajor: 1, rdevMinor: 3 })
    // a file alone, and a subdirectory: paths are from the generation's root
    const one = JSON.parse((await bfs(['ls', '--json', 'latest:a/b/c/d/e/f/g/h/deep.txt'], { repo })).stdout)
    expect(one).toMatchObject([{ name: 'deep.txt', path: 'a/b/c/d/e/f/g/h/deep.txt', type: 'file', size: 5 }])
    const a = JSON.parse((await bfs(['ls', '--json', 'gen1:a'], { repo })).stdout) as Array<{ path: string }>
    expect(a.map((e) => e.path).sort()).toEqual(['a/b', 'a/hardlink.txt', 'a/link'])
    // without a ref it is the generations list, as before
    expect(JSON.parse((await bfs(['ls', '--json'], { repo })).stdout)[0].generation).toBe('gen1')
  })

  it('restore --json reports what was restored where; verify --json the result and each line', async () => {
    const dest = path.join(work, 'out')
    const r = await bfs(['restore', '--json', 'gen1:a', dest], { repo })
    expect(r.code).toBe(0)
    expect((await sh(`diff -r --no-dereference '${src}/a' '${dest}'`)).code).toBe(0)
    // counted by find in what was restored
    const n = async (cmd: string): Promise<number> => Number((await sh(cmd)).stdout.trim())
    const [entries, files, bytes] = [await n(`find '${dest}' | wc -l`), await n(`find '${dest}' -type f | wc -l`), await n(`find '${dest}' -type f -printf '%s\\n' | paste -sd+ | bc`)]
    expect([entries, files, bytes]).toEqual([11, 2, 17])
    expect(JSON.parse(r.stdout)).toEqual({ message_type: 'summary', action: 'restore', generation: 'gen1', path: 'a', dest, entries, files, bytes, errors: [], setidDropped: 0, removedDirs: 0 })
    const v = await bfs(['verify', '--json'], { repo })
    expect(v.code).toBe(0)
    expect(JSON.parse(v.stdout)).toMatchObject({ generations: ['gen1'], ok: true, problems: 0, lines: [] })
    fs.writeFileSync(path.join(src, 'new'), 'x')
    const d = await bfs(['verify', '--json', '--against', src, 'gen1'], { repo })
    fs.rmSync(path.join(src, 'new'))
    expect(d.code).toBe(4)
    const j = JSON.parse(d.stdout)
    expect(j).toMatchObject({ generation: 'gen1', against: src, ok: false })
    expect(j.differences).toBe(j.lines.length)
    expect(j.lines).toContain('+ new: not in the generation')
  })

  it('group add|ls|show --json and version --json', async () => {
    expect(JSON.parse((await bfs(['group', 'add', 'web', '--include', 'a/*', '--exclude', 'a/link', '--json'], { repo })).stdout)).toEqual({ name: 'web', includes: ['a/*'], excludes: ['a/link'] })
    expect((await bfs(['backup', '--group', 'web', src], { repo })).code).toBe(0)
    expect(JSON.parse((await bfs(['group', 'ls', '--json'], { repo })).stdout)).toEqual([{ name: 'web', includes: ['a/*'], excludes: ['a/link'] }])
    const show = JSON.parse((await bfs(['group', 'show', 'web', '--json'], { repo })).stdout)
    expect(show).toMatchObject({ name: 'web', generations: [{ generation: 'gen2', id: 2, source: src }] })
    const version = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, '..', 'package.json'), 'utf8')).version
    expect(JSON.parse((await bfs(['version', '--json'])).stdout)).toEqual({ version })
  })
})
