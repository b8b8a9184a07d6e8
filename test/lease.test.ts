/**
 * Leases and the maintenance lock of format 2 (src/repo/v2/lease.ts, format.md §2.8.5,
 * §2.20.4) on a real repository directory, with real processes as holders: creation (exclusive,
 * BFSLEAS fields, pidStart from /proc), renewal, pins, release, removal at exit (a child
 * process), liveness on this host (pid + start time: a reused pid is dead) and on another
 * (renewed + expiry + skew), and the lock: a live holder refuses (LOCKED) or is waited for, a
 * stale one (dead pid, reused pid, expired elsewhere, unreadable and old) is broken.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { keys2 } from '../src/format/v2/layout.js'
import { decodeLease, encodeLease, LEASE_EXPIRES_MS, type LeaseRecord } from '../src/format/v2/records.js'
import { BfsError } from '../src/repo/errors.js'
import { holderAlive, Lease, listLeases, pidStartOf, readLease } from '../src/repo/v2/lease.js'
import { envelope2, payloadOf, Repo2 } from '../src/repo/v2/repo2.js'
import { ROOT, tmpdir } from './helpers.js'

let work: string
let repo: Repo2
const children: ChildProcess[] = []

/** A live process to hold things (sleep), and its pid. */
function sleeper(): ChildProcess {
  const c = spawn('sleep', ['600'], { stdio: 'ignore' })
  children.push(c)
  return c
}

function lockOf(pid: number, o: Partial<LeaseRecord> = {}): LeaseRecord {
  const now = new Date().toISOString()
  return { lease: 'maintenance', kind: 'maintenance', host: os.hostname(), pid, pidStart: pidStartOf(pid) ?? 0, started: now, renewed: now, expiresAfterMs: LEASE_EXPIRES_MS, command: 'forget', ...o }
}

function putLock(l: LeaseRecord): void {
  fs.mkdirSync(path.join(repo.dir, 'locks'), { recursive: true })
  fs.writeFileSync(path.join(repo.dir, keys2.maintenanceLock), envelope2('lease', encodeLease(l)))
}

beforeAll(() => {
  work = tmpdir('i16-forget-lease-')
  repo = Repo2.init(path.join(work, 'repo'))
})
afterAll(() => {
  for (const c of children) c.kill('SIGKILL')
  fs.rmSync(work, { recursive: true, force: true })
})

describe('leases', () => {
  it('pidStartOf reads field 22 of /proc/PID/stat (this process: what ps says), null for no process', async () => {
    const ps = fs.readFileSync(`/proc/${process.pid}/stat`, 'latin1')
    const fields = ps.slice(ps.lastIndexOf(')') + 2).split(' ')
    expect(pidStartOf(process.pid)).toBe(Number(fields[19]))
    expect(pidStartOf(process.pid)).toBeGreaterThan(0)
    expect(pidStartOf(2 ** 22 + 7)).toBe(null)
  })

  it('take: leases/<rand16> created with every BFSLEAS field; renew moves renewed; pins are written; release deletes it', async () => {
    const l = Lease.take(repo, 'restore', { pins: ['3@1'] })
    try {
      expect(l.key).toMatch(/^leases\/[0-9a-f]{16}$/)
      const r = readLease(repo, l.key)!.record!
      expect(r).toMatchObject({ lease: l.name, kind: 'restore', host: os.hostname(), pid: process.pid, pidStart: pidStartOf(process.pid), expiresAfterMs: LEASE_EXPIRES_MS, pins: ['3@1'] })
      expect(r.started).toBe(r.renewed)
      expect(listLeases(repo).map((x) => x.lease)).toContain(l.name)
      expect(holderAlive(r)).toBe(true)
      await new Promise((res) => setTimeout(res, 5))
      await l.renew()
      const r2 = readLease(repo, l.key)!.record!
      expect(Date.parse(r2.renewed)).toBeGreaterThan(Date.parse(r.renewed))
      expect(r2.started).toBe(r.started)
      await l.setPins(['3@1', '4@1'])
      expect(readLease(repo, l.key)!.record!.pins).toEqual(['3@1', '4@1'])
      expect(l.lapsed()).toBe(false)
    } finally {
      l.release()
    }
    expect(fs.existsSync(path.join(repo.dir, l.key))).toBe(false)
    l.release() // twice is fine
  })

  it('leases and the lock are atomic but not fsynced (§2.8.5: worthless after a crash), while other objects still are', async () => {
    const fh = await fs.promises.open(path.join(repo.dir, 'config'), 'r')
    const proto = Object.getPrototypeOf(fh) as { sync: () => Promise<void> }
    await fh.close()
    const syncs = vi.spyOn(fs, 'fsyncSync')
    const asyncSyncs = vi.spyOn(proto, 'sync')
    try {
      // the control: a durable write fsyncs its file and its directory
      repo.sync.putSync('leases/control-durable', Buffer.from('x'), { mode: 'replace' })
      expect(syncs.mock.calls.length).toBeGreaterThanOrEqual(2)
      await repo.store.put('leases/control-durable', Buffer.from('y'), { mode: 'replace' })
      expect(asyncSyncs.mock.calls.length).toBeGreaterThanOrEqual(2)
      repo.sync.removeSync('leases/control-durable')
      syncs.mockClear()
      asyncSyncs.mockClear()
      const l = Lease.take(repo, 'mount', { pins: ['1@1'] })
      await l.setPins(['1@1', '2@1'])
      await l.renew()
      const m = await Lease.maintenance(repo, 'prune')
      expect(readLease(repo, l.key)!.record!.pins).toEqual(['1@1', '2@1'])
      expect(readLease(repo, keys2.maintenanceLock)!.record!.command).toBe('prune')
      l.release()
      m.release()
      expect(syncs).not.toHaveBeenCalled()
      expect(asyncSyncs).not.toHaveBeenCalled()
      expect(fs.readdirSync(path.join(repo.dir, 'leases')).filter((n) => n.includes('.tmp'))).toEqual([])
    } finally {
      syncs.mockRestore()
      asyncSyncs.mockRestore()
    }
  })

  it('the heartbeat renews on its own, and a process that exits without release() leaves no lease', async () => {
    const script = `
      const { Repo2 } = await import(${JSON.stringify(path.join(ROOT, 'dist/repo/v2/repo2.js'))})
      const { Lease } = await import(${JSON.stringify(path.join(ROOT, 'dist/repo/v2/lease.js'))})
      const l = Lease.take(Repo2.open(${JSON.stringify(repo.dir)}), 'mount', { heartbeatMs: 20 })
      process.stdout.write(l.key + '\\n')
      // wait until a heartbeat has landed, then exit without release()
      const first = l.info.renewed
      const t = setInterval(() => { if (l.info.renewed !== first) { clearInterval(t); process.stdout.write('renewed\\n'); process.exit(0) } }, 5)
    `
    const c = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    c.stdout!.on('data', (b: Buffer) => (out += b.toString()))
    c.stderr!.on('data', (b: Buffer) => (err += b.toString()))
    const code = await new Promise<number | null>((res) => c.on('close', res))
    expect(code, err).toBe(0)
    const [key, renewed] = out.trim().split('\n')
    expect(key).toMatch(/^leases\//)
    expect(renewed).toBe('renewed')
    expect(fs.existsSync(path.join(repo.dir, key!))).toBe(false)
  })

  it('liveness: this host by pid and its start time (a reused pid is dead); another host by renewed + expiry + skew', () => {
    const s = sleeper()
    const live = lockOf(s.pid!)
    expect(holderAlive(live)).toBe(true)
    expect(holderAlive({ ...live, pidStart: live.pidStart + 1 })).toBe(false) // the pid now belongs to another process
    expect(holderAlive({ ...live, pid: 2 ** 22 + 7 })).toBe(false)
    const now = Date.now()
    const other = { ...live, host: 'elsewhere.invalid', pid: 1 }
    expect(holderAlive({ ...other, renewed: new Date(now - 20 * 60_000).toISOString(), started: new Date(now - 20 * 60_000).toISOString() }, now)).toBe(true)
    // 30 min expiry + 5 min skew: 34 min ago is live, 36 is not
    expect(holderAlive({ ...other, renewed: new Date(now - 34 * 60_000).toISOString(), started: new Date(now - 40 * 60_000).toISOString() }, now)).toBe(true)
    expect(holderAlive({ ...other, renewed: new Date(now - 36 * 60_000).toISOString(), started: new Date(now - 40 * 60_000).toISOString() }, now)).toBe(false)
  })
})

describe('the maintenance lock', () => {
  it('taken by exclusive create as a lease of kind maintenance naming its command, and released', async () => {
    const l = await Lease.maintenance(repo, 'forget')
    const file = fs.readFileSync(path.join(repo.dir, keys2.maintenanceLock))
    const r = decodeLease(payloadOf('lease', file, 'lock'), 'lock')
    expect(r).toMatchObject({ lease: 'maintenance', kind: 'maintenance', pid: process.pid, command: 'forget' })
    // a second taker (this very process, another command) finds it live and held
    await expect(Lease.maintenance(repo, 'prune')).rejects.toThrow(/the maintenance lock is held by pid \d+ on .* \(forget, since .*\); 'prune' did nothing/)
    l.release()
    expect(fs.existsSync(path.join(repo.dir, keys2.maintenanceLock))).toBe(false)
  })

  it('a live holder: LOCKED (exit 5) at once, or after --wait; waited for, it is taken once the holder dies', async () => {
    const s = sleeper()
    putLock(lockOf(s.pid!))
    const err = await Lease.maintenance(repo, 'forget').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(BfsError)
    expect((err as BfsError).exitCode).toBe(5)
    const said: string[] = []
    const waited = await Lease.maintenance(repo, 'forget', { waitMs: 300, pollMs: 20, onWait: (m) => said.push(m) }).catch((e: unknown) => e)
    expect((waited as BfsError).message).toMatch(/still held by pid \d+ .* after 0 s \(--wait\)/)
    expect(said[0]).toMatch(/waiting for it up to 0 s/)
    // waiting as long as it takes: the holder dies meanwhile
    const said2: string[] = []
    const p = Lease.maintenance(repo, 'forget', { waitMs: Number.MAX_SAFE_INTEGER, pollMs: 20, onWait: (m) => said2.push(m) })
    while (said2.length === 0) await new Promise((r) => setTimeout(r, 10))
    s.kill('SIGKILL')
    const l = await p
    expect(readLease(repo, keys2.maintenanceLock)!.record!.pid).toBe(process.pid)
    expect(said2.join('\n')).toMatch(/broke a stale maintenance lock/)
    l.release()
  })

  it('stale holders are broken: a dead pid, a reused pid, a lock of another host that expired, an unreadable lock older than 10 s', async () => {
    const s = sleeper()
    const now = Date.now()
    const stale: Array<[string, () => void]> = [
      ['dead pid', () => putLock(lockOf(2 ** 22 + 7))],
      ['reused pid', () => putLock({ ...lockOf(s.pid!), pidStart: (pidStartOf(s.pid!) ?? 0) + 1 })],
      ['expired elsewhere', () => putLock({ ...lockOf(1), host: 'elsewhere.invalid', started: new Date(now - 3_600_000).toISOString(), renewed: new Date(now - 3_600_000).toISOString() })],
      ['unreadable, old', () => {
        putLock(lockOf(s.pid!))
        const f = path.join(repo.dir, keys2.maintenanceLock)
        fs.writeFileSync(f, 'garbage')
        fs.utimesSync(f, new Date(now - 60_000), new Date(now - 60_000))
      }],
    ]
    for (const [what, make] of stale) {
      make()
      const l = await Lease.maintenance(repo, 'forget')
      expect(readLease(repo, keys2.maintenanceLock)!.record!.pid, what).toBe(process.pid)
      l.release()
    }
    // not stale: another host's lock renewed a minute ago, an unreadable one just written
    putLock({ ...lockOf(1), host: 'elsewhere.invalid', renewed: new Date(now - 60_000).toISOString(), started: new Date(now - 60_000).toISOString() })
    await expect(Lease.maintenance(repo, 'forget')).rejects.toThrow(/held by pid 1 on elsewhere\.invalid/)
    fs.writeFileSync(path.join(repo.dir, keys2.maintenanceLock), 'garbage')
    await expect(Lease.maintenance(repo, 'forget')).rejects.toThrow(/held by another process/)
    fs.rmSync(path.join(repo.dir, keys2.maintenanceLock))
  })
})
