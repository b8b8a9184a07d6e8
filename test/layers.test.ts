import fs from 'node:fs'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
// @ts-expect-error plain .mjs script without types
import { check, checkPaths } from '../scripts/layers.mjs'
import { ROOT, tmpdir } from './helpers.js'

type Result = { violations: string[]; stale: string[] }
const run = check as (root?: string, allowed?: string[]) => Result
const runPaths = checkPaths as (root?: string, allowed?: string[]) => Result

describe('layering (scripts/layers.mjs)', () => {
  it('src/ has no import outside the layer table and no cycle but the allow-listed ones, and no stale allow-list entry', () => {
    const r = run(ROOT)
    expect(r.violations).toEqual([])
    expect(r.stale).toEqual([])
  })

  const work = tmpdir('bfs-layers-')
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }))
  const write = (rel: string, text: string): void => {
    fs.mkdirSync(path.dirname(path.join(work, rel)), { recursive: true })
    fs.writeFileSync(path.join(work, rel), text)
  }

  it('finds each kind of violation in a tree made to have them', () => {
    write('src/format/a.ts', "import { x } from '../store/s.js'\nexport const a = 1\n")
    write('src/store/s.ts', "export const x = 1\n")
    write('src/blocks/r.ts', "import fs from 'node:fs'\nimport {\n  type T,\n} from '../repo/t.js'\nconst m = await import('../cli/main.js')\n")
    write('src/repo/t.ts', "export type T = number\nimport type { U } from './u.js'\n")
    write('src/repo/u.ts', "export type U = number\nexport { type T } from './t.js'\n// import fs from 'node:fs' in a comment is not an import\n")
    write('src/cli/main.ts', "import { Command } from 'commander'\n")
    write('src/vfs/v.ts', "const f = require('fuse-native')\n")
    const r = run(work, ['src/repo/gone.ts imports x: never happens'])
    expect(r.violations.sort()).toEqual([
      'cycle: src/repo/t.ts -> src/repo/u.ts -> src/repo/t.ts',
      'src/blocks/r.ts imports ../cli/main.js: nothing imports cli',
      'src/blocks/r.ts imports ../repo/t.js: blocks may import store, codec, crypto, format',
      'src/blocks/r.ts imports node:fs: blocks may use node:crypto, node:worker_threads only',
      'src/format/a.ts imports ../store/s.js: format may import no other layer',
      'src/vfs/v.ts imports fuse-native: vfs may use no package',
    ])
    expect(r.stale).toEqual(['src/repo/gone.ts imports x: never happens'])
    // an allow-listed violation is not reported, and is not stale
    const allowed = run(work, ['src/vfs/v.ts imports fuse-native: vfs may use no package'])
    expect(allowed.violations).not.toContain('src/vfs/v.ts imports fuse-native: vfs may use no package')
    expect(allowed.stale).toEqual([])
  })

  it('nothing outside src/store and src/format builds a repository path but the allow-listed places, and no stale entry', () => {
    const r = runPaths(ROOT)
    expect(r.violations).toEqual([])
    expect(r.stale).toEqual([])
  })

  it('finds each way of building a repository path, outside the store and format layers only', () => {
    write('src/repo/p.ts', [
      "import path from 'node:path'",
      'export const a = (repo: { dir: string; store: Record<string, (k: string) => string> }) => [',
      "  repo.store.path('config'), repo.store.tmpPath('x'), path.join(repo.dir, 'lock'),",
      "  `gens/${1}`, 'gens/00000001/catalog', 'manifests/gen-00000001',",
      ']',
      "// repo.store.path('in a comment') is not code",
    ].join('\n'))
    write('src/store/q.ts', "import path from 'node:path'\nexport const b = (root: string) => [path.join(root, 'gens/x'), 'units/y']\n")
    write('src/format/k.ts', "export const keys = { unit: (g: number) => `gens/${g}/unit` }\n")
    const r = runPaths(work, ['src/repo/old.ts: store.path() x1'])
    expect(r.violations.sort()).toEqual([
      "src/repo/p.ts: a 'gens/', 'units/' or 'manifests/' string x3",
      'src/repo/p.ts: path.join/resolve onto a repository root x1',
      'src/repo/p.ts: store.path() x1',
      'src/repo/p.ts: tmpPath() x1',
    ])
    expect(r.stale).toEqual(['src/repo/old.ts: store.path() x1'])
  })
})
