/**
 * Leases taken by format 2's commands (format.md §2.20.3 steps 1 and 7, §2.20.4), through the
 * real CLI: each command killed mid-way (BFS_TEST_FAULTS `kill`) leaves the lease it held, which
 * shows what it took — backup (named by its run record), restore, cat, ls, verify, each pinning
 * its generation — and a command that ends removes its lease. The mount's server holds one for
 * as long as it serves (pinning the generation, or each generation the whole-repository mount
 * opens). Recovery: a dead backup of this host, or of another host whose lease is gone or
 * expired, is aborted and its gens/N removed; a live one elsewhere is left alone; dead leases
 * of this host are removed.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { bfs, sh, tmpdir } from './helpers.js'
import { keys2 } from '../src/format/v2/layout.js'
import { decodeRunRecord, encodeLease, encodeRunRecord, LEASE_EXPIRES_MS, type LeaseRecord } from '../src/format/v2/records.js'
import { Lease, listLeases } from '../src/repo/v2/lease.js'
import { envelope2, payloadOf, Repo2 } from '../src/repo/v2/repo2.js'

let work: string
let src: string
let repo: string
const mounts = new Set<string>()

const ok = async (args: string[], env?: Record<string, string>): Promise<string> => {
  const r = await bfs(args, { repo, env })
  expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0)
  return r.stdout
}
const killAt = (keys: string, ops: string[]): Record<string, string> => ({ NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ keys, ops, fault: 'kill' }] }) })
const leases = (): LeaseRecord[] => listLeases(Repo2.open(repo))
const clearLeases = (): void => fs.rmSync(path.join(repo, 'leases'), { recursive: true, force: true })
async function umount(mnt: string): Promise<void> {
  if ((await bfs(['umount', mnt])).code !== 0) await bfs(['umount', '--lazy', mnt])
  if ((await sh(`grep -q ' ${mnt} ' /proc/mounts`)).code === 0) await sh(`fusermount -uz '${mnt}'`)
  mounts.delete(mnt)
}
async function until<T>(what: string, f: () => T | undefined): Promise<T> {
  for (const end = Date.now() + 60_000; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) {
    const v = f()
    if (v !== undefined) return v
  }
  throw new Error(`timed out waiting for ${what}`)
}

beforeAll(async () => {
  work = tmpdir('i16-forget-leases-')
  src = path.join(work, 'src')
  fs.mkdirSync(path.join(src, 'd'), { recursive: true })
  fs.writeFileSync(path.join(src, 'd/a.txt'), 'a\n'.repeat(5000))
  repo = path.join(work, 'repo')
  await ok(['init', '--format', '2'])
  await ok(['backup', src])
  fs.writeFileSync(path.join(src, 'd/b.txt'), 'b\n')
  await ok(['backup', src])
})
afterEach(async () => {
  for (const m of [...mounts]) await umount(m)
})
afterAll(async () => {
  for (const m of [...mounts]) await umount(m)
  fs.rmSync(work, { recursive: true, force: true })
})

describe('format 2 leases: what each command holds', () => {
  it('commands that end remove their lease', async () => {
    await ok(['ls'])
    await ok(['ls', '1:d'])
    await ok(['cat', '2:d/b.txt'])
    await ok(['diff', '1', '2'])
    await ok(['verify'])
    const out = path.join(work, 'out-ok')
    await ok(['restore', '1', out])
    fs.writeFileSync(path.join(src, 'd/c.txt'), 'c\n')
    await ok(['backup', src])
    expect(fs.existsSync(path.join(repo, 'leases')) ? fs.readdirSync(path.join(repo, 'leases')) : []).toEqual([])
    // the backup's run record names the lease it held
    const run = decodeRunRecord(payloadOf('run', fs.readFileSync(path.join(repo, keys2.run(3))), 'run'), 'run')
    expect(run).toMatchObject({ state: 'committed', lease: expect.stringMatching(/^[0-9a-f]{16}$/) })
  })

  it('killed mid-way, each leaves the lease it held: kind, this host, its pid, pinned to its generation', async () => {
    const cases: Array<[string[], Record<string, string>, string, string[] | undefined]> = [
      [['restore', '1', path.join(work, 'out-killed')], killAt('gens/*/unit-*', ['open', 'get', 'read']), 'restore', ['1@1']],
      [['cat', '2:d/a.txt'], killAt('gens/*/unit-*', ['open', 'get', 'read']), 'cat', ['2@1']],
      [['ls', '2:d'], killAt('gens/*/pack-*', ['open', 'get', 'read']), 'ls', ['2@1']],
      [['verify', '2'], killAt('gens/*/pack-*', ['open', 'get', 'read']), 'verify', ['2@1']],
    ]
    for (const [args, env, kind, pins] of cases) {
      clearLeases()
      const r = await bfs(args, { repo, env })
      expect(r.stderr, args.join(' ')).toContain('killed by SIGKILL')
      const ls = leases()
      expect(ls, args.join(' ')).toHaveLength(1)
      expect(ls[0], args.join(' ')).toMatchObject({ kind, host: os.hostname(), pins })
      expect(ls[0]!.pid).not.toBe(process.pid)
    }
    clearLeases()
  })

  it('backup: the lease is taken before the run is claimed and named by its record; killed before the commit, the next backup recovers the run and removes the dead lease', async () => {
    clearLeases()
    fs.writeFileSync(path.join(src, 'd/e.txt'), 'e\n') // something to store: gens/4 is written
    const r = await bfs(['backup', src], { repo, env: killAt('manifests/*', ['put']) })
    expect(r.stderr).toContain('killed by SIGKILL')
    const [l] = leases()
    expect(l).toMatchObject({ kind: 'backup', host: os.hostname() })
    const run = decodeRunRecord(payloadOf('run', fs.readFileSync(path.join(repo, keys2.run(4))), 'run'), 'run')
    expect(run).toMatchObject({ state: 'running', lease: l!.lease, pid: l!.pid })
    expect(fs.existsSync(path.join(repo, keys2.genDir(4)))).toBe(true)
    await ok(['backup', src])
    const after = decodeRunRecord(payloadOf('run', fs.readFileSync(path.join(repo, keys2.run(4))), 'run'), 'run')
    expect(after.state).toBe('aborted')
    expect(fs.existsSync(path.join(repo, keys2.genDir(4)))).toBe(false)
    expect(leases()).toEqual([])
  })

  it("recovery judges another host's running backup by its lease: gone or expired → aborted and gens/N removed; live → left alone", async () => {
    const r2 = Repo2.open(repo)
    const next = r2.highestId() + 1
    const now = Date.now()
    const run = (n: number, lease: string) => ({ run: n, kind: 'backup' as const, state: 'running' as const, host: 'elsewhere.invalid', pid: 4242, lease, started: new Date(now - 7_200_000).toISOString(), gen: n })
    const lease = (name: string, renewedAgoMs: number): LeaseRecord => ({
      lease: name, kind: 'backup', host: 'elsewhere.invalid', pid: 4242, pidStart: 1, started: new Date(now - 7_200_000).toISOString(), renewed: new Date(now - renewedAgoMs).toISOString(), expiresAfterMs: LEASE_EXPIRES_MS,
    })
    const plant = (n: number, name: string, renewedAgoMs: number | null): void => {
      r2.sync.putSync(keys2.run(n), envelope2('run', encodeRunRecord(run(n, name))), { mode: 'exclusive' })
      r2.sync.putSync(`${keys2.genDir(n)}/pack-00000000`, Buffer.from('junk'))
      if (renewedAgoMs !== null) r2.sync.putSync(keys2.lease(name), envelope2('lease', encodeLease(lease(name, renewedAgoMs))))
    }
    plant(next, 'aaaaaaaaaaaaaaaa', null) // lease gone
    plant(next + 1, 'bbbbbbbbbbbbbbbb', 3_600_000) // expired an hour ago
    plant(next + 2, 'cccccccccccccccc', 60_000) // renewed a minute ago: live
    plant(next + 3, '', null) // written before leases: not judged
    await ok(['backup', src])
    const state = (n: number): string => decodeRunRecord(payloadOf('run', fs.readFileSync(path.join(repo, keys2.run(n))), 'run'), 'run').state
    expect([next, next + 1, next + 2, next + 3].map(state)).toEqual(['aborted', 'aborted', 'running', 'running'])
    expect([next, next + 1, next + 2, next + 3].map((n) => fs.existsSync(path.join(repo, keys2.genDir(n))))).toEqual([false, false, true, true])
    // another host's leases are not this host's to remove
    expect(leases().map((l) => l.lease).sort()).toEqual(['bbbbbbbbbbbbbbbb', 'cccccccccccccccc'])
    clearLeases()
  })

  it('a lease that was not renewed within its expiry minus the skew has lapsed (a backup then does not commit)', () => {
    const r2 = Repo2.open(repo)
    const fresh = Lease.take(r2, 'backup')
    const short = Lease.take(r2, 'backup', { expiresAfterMs: 1000 })
    try {
      expect(fresh.lapsed()).toBe(false)
      expect(short.lapsed()).toBe(true) // 1 s of expiry is less than the 5 min skew allowance
    } finally {
      fresh.release()
      short.release()
    }
  })

  it('a lease that lapsed stays lapsed after a later renewal lands (the machine slept past its expiry: prune may have judged it dead meanwhile)', async () => {
    const r2 = Repo2.open(repo)
    const l = Lease.take(r2, 'backup', { expiresAfterMs: 10 * 60_000 })
    try {
      await l.renew()
      expect(l.lapsed()).toBe(false)
      // as after a suspend of 11 minutes: the wall clock moved on, the last renewal is that old
      const p = l as unknown as { lastRenewalWall: number }
      p.lastRenewalWall -= 11 * 60_000
      await l.renew() // the heartbeat on wake-up: it lands
      expect(l.lapsed()).toBe(true)
      await l.renew()
      expect(l.lapsed()).toBe(true)
    } finally {
      l.release()
    }
  })

  it('a read-only repository (a read-only bind mount) is read without a lease; forget, which must lock it, fails in one line (exit 1)', async () => {
    const ro = path.join(work, 'ro')
    fs.mkdirSync(ro)
    expect((await sh(`mount --bind -o ro '${repo}' '${ro}'`)).code).toBe(0)
    try {
      const run = (args: string[]) => bfs(args, { repo: ro })
      expect((await run(['ls'])).stdout).toMatch(/^gen1 /m) // below the table's header
      expect((await run(['cat', '2:d/b.txt'])).stdout).toBe('b\n')
      const out = path.join(work, 'out-ro')
      const r = await run(['restore', '1', out])
      expect(r.code, r.stderr).toBe(0)
      expect(fs.readFileSync(path.join(out, 'd/a.txt'), 'utf8')).toBe('a\n'.repeat(5000))
      const f = await run(['forget', '1'])
      expect(f.code).toBe(1)
      expect(f.stderr).toMatch(/^bfs: cannot take the maintenance lock: .*EROFS.*\n$/)
    } finally {
      await sh(`umount '${ro}'`)
    }
  })

  it('a mount server holds a lease while it serves, pinning its generation (the whole repository: each generation it opens); gone at unmount', async () => {
    clearLeases()
    const one = path.join(work, 'mnt-one')
    fs.mkdirSync(one)
    const m = await bfs(['mount', '1', one], { repo })
    expect(m.code, m.stderr).toBe(0)
    mounts.add(one)
    const pid = Number(/\(pid (\d+),/.exec(m.stdout)![1])
    expect(leases()).toEqual([expect.objectContaining({ kind: 'mount', pid, pins: ['1@1'] })])
    await umount(one)
    await until('the lease removed', () => (leases().length === 0 ? true : undefined))
    const all = path.join(work, 'mnt-all')
    fs.mkdirSync(all)
    expect((await bfs(['mount', all], { repo })).code).toBe(0)
    mounts.add(all)
    expect(fs.readFileSync(path.join(all, 'gen2/d/b.txt'), 'utf8')).toBe('b\n')
    await until('gen2 pinned', () => (leases()[0]?.pins?.includes('2@1') ? true : undefined))
    expect(fs.readFileSync(path.join(all, 'gen1/d/a.txt'), 'utf8')).toBe('a\n'.repeat(5000))
    const l = await until('gen1 and gen2 pinned', () => (leases()[0]?.pins?.length === 2 ? leases()[0] : undefined))
    expect(l.pins!.sort()).toEqual(['1@1', '2@1'])
    expect(l.kind).toBe('mount')
    await umount(all)
    await until('the lease removed', () => (leases().length === 0 ? true : undefined))
  })
})
