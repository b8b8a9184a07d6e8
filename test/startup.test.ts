/**
 * Start-up of the CLI (issue 15, mount ready): bin/bfs runs the CommonJS bundle through
 * dist/cli/load.cjs with the V8 code cache the build took for the Node options of that
 * command — one V8 rejects (other flags, another Node) would cost every start the bundle's
 * compile; and a background mount's launcher, which waits on a pipe rather than for the
 * server, still exits with the server's status when it fails before it is ready.
 */
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { bfs, newRepo, newRepoF, tmpdir } from './helpers.js'

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

  it('a zstd-napi that cannot load is named as such (exit 1), never reported as a corrupt repository or damaged generation', async () => {
    // format 1 keeps its catalogs as zstd envelopes that JavaScript decompresses with zstd-napi
    const repo = await newRepoF(1, path.join(work, 'repo-noz'))
    const src = path.join(work, 'src-noz')
    fs.mkdirSync(src)
    fs.writeFileSync(path.join(src, 'f.txt'), 'hello\n'.repeat(1000))
    expect((await bfs(['backup', src], { repo })).code).toBe(0)
    // a real process whose require of the addon fails, as after a broken install
    const pre = path.join(work, 'no-zstd.cjs')
    fs.writeFileSync(pre, "const M = require('module'); const load = M._load; M._load = function (req, ...rest) { if (String(req).startsWith('zstd-napi')) throw new Error('simulated: addon missing'); return load.call(this, req, ...rest) }\n")
    const env = { NODE_OPTIONS: `--require ${pre}` }
    for (const args of [['ls', 'gen1'], ['verify', 'gen1']]) {
      const r = await bfs(args, { repo, env })
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(1)
      expect(r.stderr.trim()).toBe("bfs: cannot load the zstd library (zstd-napi: simulated: addon missing); reinstall bfs ('make build')")
    }
    // and without the fault the same commands work: the repository was never in question
    expect((await bfs(['verify', 'gen1'], { repo })).code).toBe(0)
  })

  it('a format 2 mount answers its first ls without loading zstd-napi (its 1 MB addon is loaded on first use only), and serves a file\'s first read natively', async () => {
    const repo = await newRepoF(2, path.join(work, 'repo2'))
    const src = path.join(work, 'src2')
    fs.mkdirSync(path.join(src, 'd'), { recursive: true })
    fs.writeFileSync(path.join(src, 'd', 'f.txt'), 'hello\n'.repeat(1000))
    expect((await bfs(['backup', src], { repo })).code).toBe(0)
    const mnt = path.join(work, 'mnt2')
    fs.mkdirSync(mnt)
    const m = await bfs(['mount', 'gen1', mnt], { repo })
    expect(m.code, m.stderr).toBe(0)
    try {
      const pid = Number(/\(pid (\d+),/.exec(m.stdout)?.[1])
      expect(pid).toBeGreaterThan(0)
      expect(fs.readdirSync(mnt)).toEqual(['d'])
      expect(fs.readdirSync(path.join(mnt, 'd'))).toEqual(['f.txt'])
      const maps = fs.readFileSync(`/proc/${pid}/maps`, 'utf8')
      expect(maps).toContain('bfs_native.node') // (the check reads the right process)
      expect(maps).not.toContain('zstd-napi')
      // the first read of a file is served natively: its unit was registered before the
      // open was answered (a read handed back to JavaScript counts as a fallback)
      // (the repository's files dropped from the page cache first: with the unit's index to
      // read from disk, a read sent before the unit is registered loses the race every time)
      for (const f of fs.readdirSync(repo, { recursive: true }) as string[]) {
        if (fs.statSync(path.join(repo, f)).isFile()) execFileSync('dd', [`if=${path.join(repo, f)}`, 'iflag=nocache', 'count=0', 'status=none'])
      }
      expect(fs.readFileSync(path.join(mnt, 'd', 'f.txt'), 'utf8')).toBe('hello\n'.repeat(1000))
      const log = /log ([^)]+)\)/.exec(m.stdout)![1]!
      process.kill(pid, 'SIGUSR2')
      let stats = ''
      for (let i = 0; i < 200 && !stats; i++) {
        await new Promise((r) => setTimeout(r, 50))
        stats = fs.readFileSync(log, 'utf8').split('\n').find((l) => l.includes('native reads:')) ?? ''
      }
      expect(stats).toMatch(/native reads: \{"served":[1-9]\d*,"fallbacks":0,/)
    } finally {
      expect((await bfs(['umount', mnt])).code).toBe(0)
    }
  })

  it('a format 2 mount\'s modules do not bring in the format 2 command stack (backup, verify, restore: cli/v2.ts)', () => {
    // The modules a module loads when it is imported (its static imports, type-only ones left
    // out: the bundle initialises exactly these), followed through src/.
    const src = path.resolve(__dirname, '..', 'src')
    const loaded = (from: string): Set<string> => {
      const seen = new Set<string>()
      const visit = (file: string): void => {
        if (seen.has(file)) return
        seen.add(file)
        const text = fs.readFileSync(file, 'utf8')
        for (const m of text.matchAll(/^import\s+(?!type\s)[^'"]*?from\s+'(\.[^']+)'/gm)) visit(path.resolve(path.dirname(file), m[1].replace(/\.js$/, '.ts')))
        for (const m of text.matchAll(/^import\s+'(\.[^']+)'/gm)) visit(path.resolve(path.dirname(file), m[1].replace(/\.js$/, '.ts')))
      }
      visit(path.join(src, from))
      return new Set([...seen].map((f) => path.relative(src, f)))
    }
    const mount2 = loaded('cli/mount2.ts')
    // (the walk does reach what the mount needs: it is not vacuous)
    for (const f of ['vfs/gen2.ts', 'repo/v2/repo2.ts', 'fuse/server.ts']) expect(mount2, f).toContain(f)
    for (const f of ['cli/v2.ts', 'repo/v2/backup2.ts', 'repo/v2/verify2.ts', 'repo/v2/restore2.ts']) expect(mount2, f).not.toContain(f)
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
