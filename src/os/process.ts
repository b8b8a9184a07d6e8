import fs from 'node:fs'

/**
 * True while `pid` runs on this host; a zombie (exited, not yet reaped) counts as dead.
 *
 * TODO(issue 12 step 2): repo/lock.ts has the same function; it moves here (the store's
 * sweep needs it, and store/ may not import repo/), and that copy goes.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return true
  }
}
