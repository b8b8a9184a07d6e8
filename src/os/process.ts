import fs from 'node:fs'

/**
 * True while `pid` runs on this host; a zombie (exited, not yet reaped) counts as dead.
 *
 * The one copy: the writer lock, the store's sweep and the mount server's umount all use it
 * (os/ is a leaf, so store/ and fuse/ may import it where they may not import repo/).
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
