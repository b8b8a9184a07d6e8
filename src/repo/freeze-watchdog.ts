/**
 * The freeze watchdog: a small process that `bfs backup --freeze` starts in a session of
 * its own (so a Ctrl-C or a kill of bfs's process group does not reach it), which freezes
 * the filesystems, holds them frozen while bfs reads the device, and thaws them — whatever
 * happens to bfs. See src/repo/freeze.ts for the other end.
 *
 *   argv:   DEADLINE_MS MAJ:MIN=MOUNTPOINT …
 *   stdout: "frozen"                     every filesystem is frozen
 *           "error MESSAGE"              a freeze failed (those already frozen were thawed); exits 1
 *           "thawed REASON [ERRORS]"     REASON: requested | closed | deadline | signal
 *   stdin:  "thaw" (or end of file: bfs is gone, even by SIGKILL) → thaw and exit.
 *
 * The thaw runs on the first of: a "thaw" line, end of stdin, the deadline, SIGTERM/SIGINT/
 * SIGHUP. It never writes to a filesystem (it would block on the frozen one).
 */
import fs from 'node:fs'
import { majorMinor } from './device.js'
import { freezeFs, thawFs } from '../native/index.js'

const say = (line: string): void => {
  try {
    fs.writeSync(1, line + '\n')
  } catch {
    // bfs is gone (EPIPE): nobody to tell
  }
}

const [deadlineArg, ...targets] = process.argv.slice(2)
const deadlineMs = Number(deadlineArg)
const frozen: Array<{ fd: number; point: string }> = []
let done = false

function thawAll(reason: string): void {
  if (done) return
  done = true
  const errors: string[] = []
  for (const f of frozen.reverse()) {
    try {
      thawFs(f.fd)
    } catch (err) {
      errors.push(`${f.point}: ${(err as Error).message}`)
    }
  }
  say(`thawed ${reason}${errors.length ? ` ${errors.join('; ')}` : ''}`)
  process.exit(errors.length ? 1 : 0)
}

try {
  process.chdir('/')
} catch {
  // keep the directory it was started in
}
if (!Number.isSafeInteger(deadlineMs) || deadlineMs <= 0 || targets.length === 0) {
  say('error usage: freeze-watchdog DEADLINE_MS MAJ:MIN=MOUNTPOINT …')
  process.exit(2)
}
for (const t of targets) {
  const i = t.indexOf('=')
  const dev = t.slice(0, i)
  const point = t.slice(i + 1)
  try {
    const fd = fs.openSync(point, fs.constants.O_RDONLY)
    // the filesystem mounted there is still the one bfs found (not unmounted and replaced)
    const actual = majorMinor(fs.fstatSync(fd).dev)
    if (actual !== dev) {
      fs.closeSync(fd)
      throw new Error(`${point} is no longer the mount point of ${dev} (it is on ${actual})`)
    }
    freezeFs(fd)
    frozen.push({ fd, point })
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    done = true
    for (const f of frozen.reverse()) {
      try {
        thawFs(f.fd)
      } catch {
        // reported below as the freeze error; nothing more can be done
      }
    }
    say(`error cannot freeze ${point}: ${e.code === 'EBUSY' ? 'it is already frozen' : e.code === 'EOPNOTSUPP' || e.code === 'ENOTSUP' ? 'its filesystem cannot be frozen' : e.message}`)
    process.exit(1)
  }
}
process.on('SIGTERM', () => thawAll('signal'))
process.on('SIGINT', () => thawAll('signal'))
process.on('SIGHUP', () => thawAll('signal'))
setTimeout(() => thawAll('deadline'), deadlineMs)
process.stdin.on('data', (d: Buffer) => {
  if (d.includes('thaw')) thawAll('requested')
})
process.stdin.on('end', () => thawAll('closed'))
process.stdin.on('close', () => thawAll('closed'))
process.stdin.on('error', () => thawAll('closed'))
say('frozen')
