/**
 * Mount points of bfs mounts, seen from outside the server: a path as the kernel records
 * it, whether a pid is the server of a mount point, the checks before a mount, and
 * `bfs umount` (which also clears a mount whose server died).
 */
import fs from 'node:fs'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { mountPointsSync } from '../os/mountinfo.js'
import { pidAlive } from '../os/process.js'
import { pidFile } from './runtime.js'

/** A refusal of the mount lifecycle: `kind` says which exit status it deserves (bad input, or an I/O failure). */
export class MountError extends Error {
  override readonly name = 'MountError'
  constructor(
    readonly kind: 'bad-input' | 'io',
    message: string,
  ) {
    super(message)
  }
}

/**
 * A mount point as /proc/self/mountinfo spells it: absolute, its parent's symlinks resolved
 * (not the last component: stat of a dead FUSE mount fails).
 */
export function canonical(p: string, points = mountPointsSync()): string {
  const abs = path.resolve(p)
  let viaParent = abs
  try {
    viaParent = path.join(fs.realpathSync(path.dirname(abs)), path.basename(abs))
  } catch {
    // a parent that does not resolve: as given
  }
  // a mount point as such: never stat it (a hung server would hang this command)
  if (points.has(viaParent)) return viaParent
  try {
    return fs.realpathSync(abs) // a symlink to the mount point: the kernel records its target
  } catch {
    return viaParent
  }
}

/** Whether pid is a live `bfs mount` server of mount point mnt (not a reused pid). */
export function isServerOf(pid: number, mnt: string): boolean {
  if (!pidAlive(pid)) return false
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
    const cwd = fs.readlinkSync(`/proc/${pid}/cwd`)
    if (!argv.includes('mount') || !argv.includes('--foreground')) return false
    const points = mountPointsSync()
    return argv.some((a) => a !== '' && !a.startsWith('-') && (path.resolve(cwd, a) === mnt || canonical(path.resolve(cwd, a), points) === mnt))
  } catch {
    return false
  }
}

/**
 * Checks a mount point before anything is started: exists, is a directory, empty, not
 * mounted, and does not overlap `keepOut` (the local directories holding the repository).
 */
export function checkMountpoint(mnt: string, keepOut: string[]): void {
  let st: fs.Stats
  try {
    st = fs.statSync(mnt)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOTCONN') throw new MountError('bad-input', `${mnt} is a dead bfs mount; run 'bfs umount ${mnt}' first`)
    throw new MountError('bad-input', code === 'ENOENT' ? `mount point ${mnt} does not exist` : `cannot use mount point ${mnt}: ${code}`)
  }
  if (mountPointsSync().has(mnt)) throw new MountError('bad-input', `${mnt} is already a mount point`)
  if (!st.isDirectory()) throw new MountError('bad-input', `mount point ${mnt} is not a directory`)
  if (fs.readdirSync(mnt).length > 0) throw new MountError('bad-input', `mount point ${mnt} is not empty`)
  const inside = (a: string, b: string): boolean => a === b || a.startsWith(b.endsWith('/') ? b : `${b}/`)
  for (const dir of keepOut) {
    const repo = fs.realpathSync(dir)
    if (inside(mnt, repo) || inside(repo, mnt)) throw new MountError('bad-input', `mount point ${mnt} overlaps the repository ${repo}`)
  }
}

/**
 * Unmounts the bfs mount at `m` (canonicalized here) and lets its server finish; refused
 * while in use unless `lazy`. Also clears a dead mount. Returns the line to print.
 */
export async function unmountBfs(m: string, opts: { lazy?: boolean } = {}): Promise<string> {
  const mnt = canonical(m)
  const type = mountPointsSync().get(mnt)
  if (!type) throw new MountError('bad-input', `${mnt} is not mounted`)
  if (type !== 'fuse.bfs') throw new MountError('bad-input', `${mnt} is not a bfs mount (it is ${type})`)
  let pid = 0
  try {
    pid = Number(fs.readFileSync(pidFile(mnt), 'utf8').trim())
  } catch {
    // no record: a mount whose process is gone, or not ours
  }
  const busy = `${mnt} is busy (a process is using it); close it and try again, or detach it now with 'bfs umount --lazy'`
  // Unmount here first, so that a mount in use is refused at once and its server goes
  // on serving; then the server, its mount gone, finishes and exits.
  const r = spawnSync('fusermount', [opts.lazy ? '-uz' : '-u', mnt], { encoding: 'utf8' })
  if (r.status !== 0 && mountPointsSync().has(mnt) && /busy/i.test(r.stderr)) throw new MountError('io', busy)
  // a pid file left by a killed server may name a reused pid: only a bfs mount server of this mount point counts
  if (pid && !isServerOf(pid, mnt)) pid = 0
  if (opts.lazy && r.status !== 0 && mountPointsSync().has(mnt)) throw new MountError('io', `cannot detach ${mnt}: ${r.stderr.trim()}`)
  if (opts.lazy && r.status === 0 && pid && pidAlive(pid)) {
    // the server goes on serving the files still open there; it exits after the last is closed
    return `detached ${mnt}; files still open there are served until they are closed\n`
  }
  if (pid && pidAlive(pid)) {
    try {
      process.kill(pid, 'SIGTERM')
    } catch {
      // gone meanwhile (it noticed the unmount), or not ours to signal
    }
    for (let i = 0; i < 100 && mountPointsSync().has(mnt); i++) await new Promise((r) => setTimeout(r, 50))
    for (let i = 0; i < 100 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 50))
  }
  if (mountPointsSync().has(mnt)) {
    // a server that did not unmount it, or a dead mount ("transport endpoint is not connected")
    const u = spawnSync('fusermount', ['-u', mnt], { encoding: 'utf8' })
    if (u.status !== 0) {
      if (/busy/i.test(u.stderr)) throw new MountError('io', busy)
      const z = spawnSync('fusermount', ['-uz', mnt], { encoding: 'utf8' })
      if (z.status !== 0) throw new MountError('io', `cannot unmount ${mnt}: ${(z.stderr || u.stderr).trim()}`)
    }
  }
  fs.rmSync(pidFile(mnt), { force: true })
  return `unmounted ${mnt}\n`
}
