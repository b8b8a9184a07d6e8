#!/usr/bin/env node
// The layering check of ../shared/design/ARCHITECTURE.md (issue 12 plan §3.2): which layer of
// src/ may import which, which packages and builtins each may use, and no import cycle
// between files (type-only imports count). `node scripts/layers.mjs` prints one line per
// violation and exits 1; test/layers.test.ts runs the same check in `make test`.
//
// ALLOWED holds the violations that existed when the check was introduced. It may only
// shrink: a listed violation that no longer occurs is itself reported ("stale"), so the
// list is edited whenever one is fixed and can never hide a new one.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

/** layer → bfs layers it may import (any lower one listed), packages, and builtins it may not use. */
export const RULES = {
  format: { layers: [], packages: [], builtins: ['node:crypto'] },
  os: { layers: [], packages: [], builtins: '*' },
  native: { layers: [], packages: [], builtins: '*' },
  codec: { layers: ['native'], packages: ['zstd-napi'], builtins: ['node:crypto', 'node:module'] },
  // the virtual tape library and its timing model: a tier's device, below the store that will wrap it
  tape: { layers: ['native', 'os'], packages: [], builtins: '*' },
  // encryption (issue 18, format.md §2.22): key derivation, key files, AEAD of one message; FormatError
  // for tampering. repo, cli, pieces (sealed packs) and blocks (sealed units) import it
  crypto: { layers: ['format', 'native'], packages: [], builtins: ['node:crypto'] },
  // the S3 tier (issue 18) talks to its service with the official AWS SDK v3
  store: { layers: ['tape', 'os', 'native'], packages: ['@aws-sdk/client-s3'], builtins: '*' },
  blocks: { layers: ['store', 'codec', 'crypto', 'format'], packages: ['lru-cache'], builtins: ['node:crypto', 'node:worker_threads'] },
  bilog: { layers: ['store', 'codec', 'format'], packages: [], builtins: ['node:crypto'] },
  // format 2 metadata: packs, the piece reader and its cache, directory trees and file maps (native-notes/pieces.md)
  pieces: { layers: ['store', 'codec', 'crypto', 'format'], packages: ['lru-cache'], builtins: [] },
  repo: { layers: ['pieces', 'blocks', 'bilog', 'store', 'tape', 'codec', 'crypto', 'format', 'native', 'os'], packages: [], builtins: '*' },
  vfs: { layers: ['repo', 'pieces', 'blocks', 'codec', 'format'], packages: [], builtins: ['node:crypto'] },
  fuse: { layers: ['vfs', 'blocks', 'native', 'os'], packages: ['fuse-native'], builtins: '*' },
  cli: { layers: '*', packages: ['commander'], builtins: '*' },
}

/** Violations present when the check was added (main at 43c9176). Remove lines as they are fixed; never add. */
export const ALLOWED = [
]

function walk(dir) {
  const out = []
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) out.push(...walk(p))
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p)
  }
  return out.sort()
}

// every specifier: import … from '…' (also multi-line and `import type`), export … from '…',
// side-effect imports, import('…') and require('…')
const SPEC_RE = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)(['"])([^'"\n]+)\1/gm

function specifiers(text) {
  // comments may mention imports; drop them first (strings with // are rare in import lines)
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1')
  const out = []
  for (const m of code.matchAll(SPEC_RE)) out.push(m[2])
  return out
}

/** The check over src/ of `root`: { violations, stale } (lines). */
export function check(root = ROOT, allowed = ALLOWED) {
  const src = path.join(root, 'src')
  const files = walk(src)
  const rel = (f) => path.relative(root, f).split(path.sep).join('/')
  const layerOf = (f) => path.relative(src, f).split(path.sep)[0]
  const edges = new Map()
  const found = []
  for (const f of files) {
    const layer = layerOf(f)
    const rule = RULES[layer]
    const deps = []
    edges.set(rel(f), deps)
    if (!rule) {
      found.push(`${rel(f)}: layer '${layer}' is not in the layer table (scripts/layers.mjs RULES)`)
      continue
    }
    for (const spec of specifiers(fs.readFileSync(f, 'utf8'))) {
      if (spec.startsWith('.')) {
        const target = path.resolve(path.dirname(f), spec.replace(/\.js$/, '.ts'))
        if (!target.startsWith(src + path.sep)) {
          found.push(`${rel(f)} imports ${spec}: outside src/`)
          continue
        }
        if (fs.existsSync(target)) deps.push(rel(target))
        const to = layerOf(target)
        if (to === layer) continue
        if (to === 'cli') found.push(`${rel(f)} imports ${spec}: nothing imports cli`)
        else if (rule.layers !== '*' && !rule.layers.includes(to)) found.push(`${rel(f)} imports ${spec}: ${layer} may import ${rule.layers.length ? rule.layers.join(', ') : 'no other layer'}`)
      } else if (spec.startsWith('node:')) {
        if (rule.builtins !== '*' && !rule.builtins.includes(spec)) found.push(`${rel(f)} imports ${spec}: ${layer} may use ${rule.builtins.length ? rule.builtins.join(', ') + ' only' : 'no builtin'}`)
      } else if (spec.endsWith('.node')) {
        if (layer !== 'native') found.push(`${rel(f)} loads ${spec}: only src/native loads a .node`)
      } else {
        const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]
        if (!rule.packages.includes(pkg)) found.push(`${rel(f)} imports ${pkg}: ${layer} may use ${rule.packages.length ? rule.packages.join(', ') + ' only' : 'no package'}`)
      }
    }
  }
  for (const c of cycles(edges)) found.push(`cycle: ${c.path.join(' -> ')}${c.members.length > c.path.length - 1 ? ` (one of ${c.members.length} files importing each other: ${c.members.join(', ')})` : ''}`)
  const allow = new Set(allowed)
  return {
    violations: found.filter((v) => !allow.has(v)),
    stale: allowed.filter((a) => !found.includes(a)),
  }
}

/**
 * "Nothing outside the store layer builds a repository path" (ARCHITECTURE.md, issue 12):
 * code outside src/store/ and src/format/ that asks a store for a file path, makes a temp
 * path, joins a path onto a repository root, or spells a repository directory in a string.
 * A heuristic over the text (comments dropped), one line per file and kind with its count.
 */
const PATH_RULES = [
  ['store.path()', /\bstore\.path\(/g],
  ['tmpPath()', /\btmpPath\(/g],
  ['path.join/resolve onto a repository root', /\bpath\.(?:join|resolve)\(\s*(?:repo\.dir|repoDir|repo\.root|store\.root)\b/g],
  ["a 'gens/', 'units/' or 'manifests/' string", /(['"`])(?:gens|units|manifests)\//g],
]

/** Places outside src/store and src/format that build repository paths, present when the check was added; shrink only. */
export const PATHS_ALLOWED = [
  // not a path into the repository: the recall service's name is a hash of the repository's real path
  'src/os/runtime.ts: path.join/resolve onto a repository root x1',
]

/** The path check over src/ of `root`: { violations, stale } (lines). */
export function checkPaths(root = ROOT, allowed = PATHS_ALLOWED) {
  const src = path.join(root, 'src')
  const found = []
  for (const f of walk(src)) {
    const rel = path.relative(root, f).split(path.sep).join('/')
    const layer = path.relative(src, f).split(path.sep)[0]
    if (layer === 'store' || layer === 'format') continue
    const text = fs.readFileSync(f, 'utf8')
    const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1')
    for (const [what, re] of PATH_RULES) {
      const n = [...code.matchAll(re)].length
      if (n) found.push(`${rel}: ${what} x${n}`)
    }
  }
  const allow = new Set(allowed)
  return { violations: found.filter((v) => !allow.has(v)), stale: allowed.filter((a) => !found.includes(a)) }
}

/** Strongly connected components with more than one file (Tarjan), each as one closed path from its smallest file. */
function cycles(edges) {
  let index = 0
  const idx = new Map()
  const low = new Map()
  const stack = []
  const on = new Set()
  const out = []
  const strong = (v) => {
    idx.set(v, index)
    low.set(v, index++)
    stack.push(v)
    on.add(v)
    for (const w of edges.get(v) ?? []) {
      if (!idx.has(w)) {
        strong(w)
        low.set(v, Math.min(low.get(v), low.get(w)))
      } else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)))
    }
    if (low.get(v) === idx.get(v)) {
      const comp = []
      let w
      do {
        w = stack.pop()
        on.delete(w)
        comp.push(w)
      } while (w !== v)
      if (comp.length > 1 || (edges.get(v) ?? []).includes(v)) out.push(comp)
    }
  }
  for (const v of [...edges.keys()].sort()) if (!idx.has(v)) strong(v)
  // report one cycle per component: the shortest path back to its smallest member (BFS)
  return out.map((comp) => {
    const set = new Set(comp)
    const start = [...comp].sort()[0]
    const prev = new Map([[start, null]])
    const queue = [start]
    let end = null
    while (queue.length && !end) {
      const v = queue.shift()
      for (const w of [...(edges.get(v) ?? [])].sort()) {
        if (!set.has(w)) continue
        if (w === start) {
          end = v
          break
        }
        if (!prev.has(w)) {
          prev.set(w, v)
          queue.push(w)
        }
      }
    }
    const p = [start]
    for (let v = end; v !== start; v = prev.get(v)) p.splice(1, 0, v)
    return { path: [...p, start], members: [...comp].sort() }
  })
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { violations, stale } = check()
  for (const v of violations) console.log(v)
  for (const s of stale) console.log(`stale allow-list entry (fixed: remove it from scripts/layers.mjs ALLOWED): ${s}`)
  const paths = checkPaths()
  for (const v of paths.violations) console.log(`builds a repository path outside src/store: ${v}`)
  for (const s of paths.stale) console.log(`stale allow-list entry (fixed: remove or update it in scripts/layers.mjs PATHS_ALLOWED): ${s}`)
  process.exit(violations.length || stale.length || paths.violations.length || paths.stale.length ? 1 : 0)
}
