import fs from 'node:fs'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { BfsError } from './errors.js'
import { thawFs } from '../native/index.js'

// '../repo/': also right from the bundle in dist/cli/ (Makefile build)
const WATCHDOG = fileURLToPath(new URL('../repo/freeze-watchdog.js', import.meta.url))

/** Default for --freeze-timeout: how long a filesystem may stay frozen at most. */
export const DEFAULT_FREEZE_TIMEOUT_S = 600

export interface FrozenFilesystems {
  /**
   * Set when the filesystems were thawed before {@link thaw} was called: the watchdog's
   * deadline passed, or it was killed (then bfs thawed them itself).
   */
  readonly lost: string | null
  /** Called once when {@link lost} is set. */
  onLost: (() => void) | null
  /** Thaws (through the watchdog) and waits until it has; never throws. */
  thaw(): Promise<void>
}

/**
 * Freezes the filesystems mounted at `targets` (FIFREEZE) through the freeze watchdog
 * (src/repo/freeze-watchdog.ts), a process of its own in its own session, which thaws
 * them when told to, when this process dies (even by SIGKILL: its stdin, our pipe, ends),
 * or after `timeoutS` seconds, whichever comes first. Resolves once every one is frozen.
 * @throws BfsError when a filesystem cannot be frozen (none is left frozen).
 */
export async function freezeFilesystems(targets: Array<{ dev: string; point: string }>, timeoutS: number): Promise<FrozenFilesystems> {
  const child = spawn(process.execPath, [WATCHDOG, String(timeoutS * 1000), ...targets.map((t) => `${t.dev}=${t.point}`)], {
    detached: true, // setsid: Ctrl-C and a kill of our process group do not reach it
    stdio: ['pipe', 'pipe', 'ignore'],
  })
  child.stdin!.on('error', () => undefined) // the watchdog gone: handled by 'close' below
  let buf = ''
  let frozen = false
  let thawed = false
  let thawRequested = false
  let lost: string | null = null
  let exited = false
  const waiters: Array<() => void> = []
  const wake = (): void => {
    for (const w of waiters.splice(0)) w()
  }
  const handle: FrozenFilesystems = {
    get lost() {
      return lost
    },
    onLost: null,
    thaw: async () => {
      if (!thawed && !exited) {
        thawRequested = true
        child.stdin!.end('thaw\n')
        while (!thawed && !exited) await new Promise<void>((res) => waiters.push(res))
      }
      if (!thawed) thawOurselves(targets) // the watchdog died before it said it had thawed
      while (!exited) await new Promise<void>((res) => waiters.push(res))
    },
  }
  const setLost = (why: string): void => {
    if (lost || thawRequested) return
    lost = why
    handle.onLost?.()
  }
  let failure: string | null = null
  child.stdout!.setEncoding('utf8')
  child.stdout!.on('data', (d: string) => {
    buf += d
    let i: number
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      if (line === 'frozen') frozen = true
      else if (line.startsWith('error ')) failure = line.slice(6)
      else if (line.startsWith('thawed')) {
        thawed = true
        if (line.startsWith('thawed deadline')) setLost(`the filesystem was thawed at the --freeze-timeout deadline (${timeoutS} s) before the device was read`)
        else setLost(`the filesystem was thawed before the device was read (${line})`)
      }
      wake()
    }
  })
  // 'close': the watchdog has exited and its stdout is read to the end (its last line seen)
  child.on('close', (code, signal) => {
    exited = true
    if (frozen && !thawed) {
      // killed while holding the freeze: thaw here rather than leave the machine's writers blocked
      thawOurselves(targets)
      thawed = true
      setLost(`the freeze watchdog died (${signal ?? `exit ${code}`}) before the device was read`)
    }
    wake()
  })
  child.on('error', (err) => {
    failure ??= `cannot start the freeze watchdog: ${err.message}`
    exited = true
    wake()
  })
  while (!frozen && !exited && !failure) await new Promise<void>((res) => waiters.push(res))
  if (!frozen) {
    while (!exited) await new Promise<void>((res) => waiters.push(res))
    throw new BfsError('BAD_INPUT', failure ?? 'the freeze watchdog exited before it froze anything')
  }
  return handle
}

/** FITHAW each target ourselves (EINVAL: it was not frozen). */
function thawOurselves(targets: Array<{ point: string }>): void {
  for (const t of targets) {
    try {
      const fd = fs.openSync(t.point, fs.constants.O_RDONLY)
      try {
        thawFs(fd)
      } catch {
        // not frozen
      } finally {
        fs.closeSync(fd)
      }
    } catch {
      // unmounted meanwhile
    }
  }
}

