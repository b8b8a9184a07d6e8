/**
 * The mount server's lifecycle: started in the background (a detached child that says
 * "ready" on a pipe), or serving in the foreground: mount, pid file, detach from the
 * terminal, signals → unmount (busy → serving again; again → lazy), unmounted from outside,
 * drain of native reads, stats line, exit. The cli parses arguments and builds the Vfs;
 * everything from there to the process's exit is here.
 */
import fs from 'node:fs'
import { spawn } from 'node:child_process'
import { detach, exitWatchdog } from '../native/index.js'
import type { Vfs } from '../vfs/tree.js'
import type { LazyVfs } from '../vfs/gen2.js'
import { MountBusyError, serveFuse } from './adapter.js'
import { logFile, pidFile } from './runtime.js'
import { MountError } from './umount.js'
import { announceReady } from './ready.js'

const mountedMessage = (what: string, mnt: string, pid: number, log: string): string =>
  `mounted ${what} at ${mnt} (pid ${pid}, log ${log}); unmount with: bfs umount ${mnt}\n`

function memoryLine(): string {
  const m = process.memoryUsage()
  const mib = (n: number): string => (n / 1048576).toFixed(1)
  return `rss ${mib(m.rss)}, heap ${mib(m.heapUsed)}/${mib(m.heapTotal)}, external ${mib(m.external)}, arrayBuffers ${mib(m.arrayBuffers)}`
}

export interface BackgroundOptions {
  mountpoint: string
  /** Arguments of this program (after the script) that make a foreground server of it; `--ready-fd 3` is among them. */
  args: string[]
  /** The log file (default: one in the runtime directory). */
  log?: string
  /** What is mounted, for the message ("gen3", "repository /r"). */
  what: string
  /** Written to the child's stdin, which is then closed (an encrypted repository's passphrase asked at the terminal: never in its environment or arguments). */
  input?: string
  /** The child's environment (default: this process's). */
  env?: NodeJS.ProcessEnv
}

/**
 * Starts a foreground server of `mountpoint` as a detached child, waits until it is ready
 * (or has exited: its last `bfs: ` log line is the error), returns the line to print.
 */
export async function startInBackground(o: BackgroundOptions): Promise<string> {
  const log = logFile(o.mountpoint, o.log)
  const logFd = fs.openSync(log, 'a', 0o600)
  const child = spawn(process.execPath, [process.argv[1]!, ...o.args], { detached: true, stdio: [o.input === undefined ? 'ignore' : 'pipe', logFd, logFd, 'pipe'], env: o.env ?? process.env })
  fs.closeSync(logFd)
  if (o.input !== undefined) {
    child.stdin!.on('error', () => undefined) // a child that exits without reading it
    child.stdin!.end(o.input)
  }
  const ready = await new Promise<boolean>((resolve) => {
    let buf = ''
    const pipe = child.stdio[3] as NodeJS.ReadableStream
    pipe.on('data', (d: Buffer) => {
      buf += d.toString()
      if (buf.includes('ready')) resolve(true)
    })
    child.on('exit', () => resolve(false))
  })
  if (!ready) {
    const tail = fs.readFileSync(log, 'utf8').trim().split('\n').filter((l) => l.startsWith('bfs: ')).pop()
    throw new MountError('io', tail ? tail.replace(/^bfs: /, '') : `the mount process exited; see ${log}`)
  }
  child.unref()
  ;(child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy()
  return mountedMessage(o.what, o.mountpoint, child.pid!, log)
}

export interface ServeOptions {
  mountpoint: string
  allowOther: boolean
  /** Kernel cache time of failed lookups (a single generation never changes: long). */
  negativeTimeoutS: number
  /** What mount(8) and /proc/mounts show as the source. */
  fsname: string
  debug: boolean
  /** The native read path's frame cache, bytes (0: native reads off). */
  nativeReadCacheBytes: number
  /** Entries of the native stat cache (default: the adapter's). */
  statCacheEntries?: number
  /** Write "ready" here once serving (the background launcher's pipe). */
  readyFd?: number
  /** Work started before the mount that must have finished before it is announced (the pid file, "ready"). */
  beforeReady?: Promise<unknown>
  /** The log file when started detaching (BFS_DETACH=1, from bin/bfs). */
  log?: string
  /** For messages: what is mounted ("gen3", "repository /r") and what is served ("gen3 of /r", "all generations of /r"). */
  what: string
  serving: string
}

/**
 * Serves the Vfs `makeVfs` builds (once the log is open) at the mount point until it is unmounted (by a signal, or from outside),
 * then drains, closes and exits the process. Detaches from the terminal first when bin/bfs
 * started it that way (BFS_DETACH=1). It never touches the mount point itself.
 */
export async function serveUntilUnmounted(makeVfs: () => Vfs | LazyVfs, o: ServeOptions): Promise<never> {
  const mnt = o.mountpoint
  // Started by bin/bfs for a background mount: the log must be writable before we mount.
  const detaching = process.env.BFS_DETACH === '1'
  delete process.env.BFS_DETACH
  let logPath = ''
  let logFd = -1
  if (detaching) {
    logPath = logFile(mnt, o.log)
    try {
      logFd = fs.openSync(logPath, 'a', 0o600)
    } catch (err) {
      throw new MountError('bad-input', `cannot open the log ${logPath}: ${(err as NodeJS.ErrnoException).code}`)
    }
  }
  // After detach() stderr is the log file: plain writes to fd 2 (a stream handle made
  // for a terminal would still point at the terminal).
  let detached = false
  const log = (m: string): void => {
    const line = `${new Date().toISOString()} ${m}\n`
    if (detaching || detached) fs.writeSync(2, line)
    else process.stderr.write(line)
  }
  // SIGINT/SIGTERM are caught from before the mount: until a listener exists Node leaves
  // them at their default action, and a signal between the mount (or the announcement: the
  // caller's pipe released, `bfs mount` returned) and the serving loop's listeners killed
  // this process and left its mount behind. Signals caught early are acted on once the loop
  // is set up; if starting fails, the listeners go and a signal kills again.
  const early: string[] = []
  const onEarlyInt = (): void => void early.push('SIGINT')
  const onEarlyTerm = (): void => void early.push('SIGTERM')
  const dropEarly = (): void => {
    process.off('SIGINT', onEarlyInt)
    process.off('SIGTERM', onEarlyTerm)
  }
  const vfs = makeVfs()
  process.on('SIGINT', onEarlyInt)
  process.on('SIGTERM', onEarlyTerm)
  const server = await serveFuse(vfs, {
    mountpoint: mnt,
    allowOther: o.allowOther,
    negativeTimeoutS: o.negativeTimeoutS,
    fsname: o.fsname,
    log,
    debug: o.debug,
    nativeReadCacheBytes: o.nativeReadCacheBytes,
    statCacheEntries: o.statCacheEntries,
  }).catch((err: Error) => {
    dropEarly()
    throw new MountError('io', `cannot mount ${mnt}: ${err.message}`)
  })
  // Once mounted, any failure before "ready" must unmount again: the FUSE session
  // would otherwise keep this process alive, serving, with its caller still waiting.
  try {
    await o.beforeReady
    fs.writeFileSync(pidFile(mnt), `${process.pid}\n`)
    if (detaching) {
      // say where we are, then detach (stdout and stderr to the log; the caller's
      // terminal or pipe is released)
      fs.writeSync(1, mountedMessage(o.what, mnt, process.pid, logPath))
      detach(logFd)
      fs.closeSync(logFd)
      detached = true
    }
    log(`serving ${o.serving} at ${mnt} (${Math.round(performance.now())} ms after start)`)
  } catch (err) {
    dropEarly()
    await server.unmount({ lazy: true }).catch(() => undefined)
    fs.rmSync(pidFile(mnt), { force: true })
    throw new MountError('io', `cannot start serving ${mnt}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  const statsLine = (): string => `cache: ${JSON.stringify(vfs.frames.stats)}; open units: ${vfs.frames.openUnitCount}; native reads: ${JSON.stringify(server.nativeStats())}; ${'pieceStats' in vfs ? `pieces: ${JSON.stringify(vfs.pieceStats)}; ` : ''}${'tapeAheadStats' in vfs && vfs.tapeAheadStats ? `tape readahead: ${JSON.stringify(vfs.tapeAheadStats)}; ` : ''}stat cache: ${JSON.stringify(server.statCacheStats())}; ops in JavaScript: ${JSON.stringify(server.jsOps())}; memory MiB: ${memoryLine()}`
  // kill -USR2 <pid>: cache counters and memory to the log. Listened to before the caller
  // hears "ready": a SIGUSR2 sent as soon as `bfs mount` returned (the tests do) found no
  // listener yet and killed the server (SIGUSR2's default action), leaving its mount dead.
  process.on('SIGUSR2', () => log(statsLine()))
  if (o.readyFd) announceReady(o.readyFd)
  // the record is ours unless a newer mount at this path (ours was detached) wrote its own
  const dropPidFile = (): void => {
    try {
      if (fs.readFileSync(pidFile(mnt), 'utf8').trim() === String(process.pid)) fs.rmSync(pidFile(mnt), { force: true })
    } catch {
      // gone already
    }
  }
  vfs.startWarming()
  // true once no native read is in progress, so the unit files may be closed
  const drained = await new Promise<boolean>((resolve) => {
    // serving → (signal) unmounting → done; busy → serving again, and the next signal
    // (or one that came while the first try was under way) detaches lazily; a signal
    // while a lazy detach waits for open files ends the server at once
    let phase: 'serving' | 'unmounting' | 'lazy' = 'serving'
    let lazyNext = false
    const waiting = (): void => {
      phase = 'lazy'
      log(`${mnt} is detached; the files still open there are served until they are closed (signal again to stop at once)`)
    }
    const lazily = (why: string): void => {
      phase = 'unmounting'
      log(`${why}: detaching ${mnt} lazily`)
      server.unmount({ lazy: true, onDetached: waiting }).then(resolve, (e: Error) => {
        // still mounted: keep serving rather than leave a dead mount behind
        log(`lazy unmount failed: ${e.message}; still serving`)
        phase = 'serving'
      })
    }
    const stop = (sig: string): void => {
      if (phase === 'lazy') {
        log(`${sig}: stopping now; files still open at ${mnt} fail from here on`)
        dropPidFile()
        exitNow()
      }
      if (phase === 'unmounting') {
        lazyNext = true
        return
      }
      if (lazyNext) return lazily(sig)
      phase = 'unmounting'
      log(`${sig}: unmounting ${mnt}`)
      // (detached already from outside, lazily, with files still open: it waits for them)
      server.unmount({ onDetached: waiting }).then(resolve, (err: Error) => {
        if (!(err instanceof MountBusyError)) return lazily(`unmount failed (${err.message})`)
        if (lazyNext) return lazily(`${mnt} is busy and was signalled again`)
        // as umount(8): a mount in use stays; the next signal detaches it lazily
        log(`${mnt} is busy (a process is using it): still serving; unmount again once it is closed, or signal again to detach it lazily`)
        phase = 'serving'
        lazyNext = true
      })
    }
    process.on('SIGINT', () => stop('SIGINT'))
    process.on('SIGTERM', () => stop('SIGTERM'))
    dropEarly()
    for (const sig of early.splice(0)) stop(sig)
    // unmounted from outside (umount, fusermount): nothing left to serve
    // (an unmount of ours under way notices the same by itself)
    server.watchGone(() => {
      if (phase === 'serving') stop('unmounted from outside')
    })
  })
  dropPidFile()
  log(statsLine())
  // a read still in progress on a libfuse thread may use a unit file: leave them to exit
  if (drained) await vfs.close()
  else log('reads were still in progress; exiting without closing the unit files first')
  exitNow()
}

/** process.exit(0), bounded: libfuse can leave exit() stuck on stderr's lock (native exitWatchdog). */
function exitNow(): never {
  try {
    exitWatchdog(10_000, 0)
  } catch {
    // no thread for it: exit as before
  }
  process.exit(0)
}
