/**
 * Start-up of the CLI (issue 15, mount ready): bin/bfs runs the CommonJS bundle through
 * dist/cli/load.cjs with the V8 code cache the build took for the Node options of that
 * command — one V8 rejects (other flags, another Node) would cost every start the bundle's
 * compile; and a background mount's launcher, which waits on a pipe rather than for the
 * server, still exits with the server's status when it fails before it is ready.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { bfs, newRepo, tmpdir } from './helpers.js'

describe('start-up', () => {
  const work = tmpdir('bfs-startup-')
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

  it('every command starts from a code cache V8 accepts: the default options, mount\'s and backup\'s', async () => {
    for (const [args, flags] of [[['--version'], 'default'], [['mount', '--help'], '--max-semi-space-size=2'], [['backup', '--help'], '--max-semi-space-size=4_--max-inlined-bytecode-size-cumulative=200']] as const) {
      const r = await bfs([...args], { env: { BFS_CODE_CACHE: 'check' } })
      expect(r.code, r.stderr).toBe(0)
      expect(r.stderr, args.join(' ')).toContain(`bfs.cjs.${flags}.cache: accepted`)
    }
  })

  it('a background mount that fails before it is ready exits with the server\'s status; one killed first exits 1 saying so, and leaves no mount', async () => {
    const mnt = path.join(work, 'mnt')
    fs.mkdirSync(mnt)
    const notRepo = await bfs(['mount', 'gen1', mnt], { repo: path.join(work, 'nothing') })
    expect(notRepo.code, notRepo.stderr).toBe(6)
    expect(notRepo.stderr).toMatch(/^bfs: .* is not a bfs repository/)
    const repo = await newRepo(path.join(work, 'repo'))
    const src = path.join(work, 'src')
    fs.mkdirSync(src)
    fs.writeFileSync(path.join(src, 'a.txt'), 'a\n')
    expect((await bfs(['backup', src], { repo })).code).toBe(0)
    const hook = path.join(work, 'die.cjs')
    fs.writeFileSync(hook, "process.kill(process.pid, 'SIGKILL')\n")
    const killed = await bfs(['mount', 'gen1', mnt], { repo, env: { NODE_OPTIONS: `--require ${hook}` } })
    expect(killed.code, killed.stderr).toBe(1)
    expect(killed.stderr).toContain('bfs: the mount process ended before the mount was ready')
    expect(fs.readFileSync('/proc/mounts', 'utf8')).not.toContain(` ${mnt} `)
  })
})
