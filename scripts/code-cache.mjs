#!/usr/bin/env node
// Part of `npm run build`: takes the V8 code caches of the bundle (dist/cli/bfs.cjs) that
// dist/cli/load.cjs compiles it with, one per set of Node options bin/bfs starts it with
// (a cache taken under other flags is rejected by V8). Each is written at the exit of a run
// of `bfs --help` and `bfs mount --help`, so it holds the top level and the functions of
// argument parsing. Never fatal: without a cache bfs compiles the bundle from source.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const load = fileURLToPath(new URL('../dist/cli/load.cjs', import.meta.url))
// bin/bfs: none for most commands, --max-semi-space-size=2 for mount, =4 and less inlining for backup
const FLAG_SETS = [[], ['--max-semi-space-size=2'], ['--max-semi-space-size=4', '--max-inlined-bytecode-size-cumulative=200']]
const env = { ...process.env, BFS_CODE_CACHE: 'write' }
delete env.NODE_EXTRA_CA_CERTS
for (const flags of FLAG_SETS) {
  const cmd = flags.includes('--max-semi-space-size=2') ? ['mount', '--help'] : ['--help']
  const r = spawnSync(process.execPath, [...flags, load, ...cmd], { env, stdio: ['ignore', 'ignore', 'inherit'] })
  if (r.status !== 0) process.stderr.write(`code-cache: taking the cache for [${flags.join(' ')}] failed (exit ${r.status}); bfs compiles from source\n`)
}
