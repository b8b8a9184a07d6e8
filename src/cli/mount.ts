import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { Command, InvalidArgumentError, Option } from 'commander'
import { BfsError } from '../repo/errors.js'
import { pidAlive } from '../os/process.js'
import { Vfs } from '../vfs/tree.js'
import { MountBusyError, serveFuse } from '../fuse/adapter.js'
import { parseMountinfo } from '../os/mountinfo.js'
import { detach } from '../native/index.js'
import type { Ctx } from './context.js'
import { resolveGen } from './output.js'

/** Parses 64M, 1G, 512K or plain bytes. */
export function parseSize(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(v.trim())
  if (!m) throw new InvalidArgumentError('a size like 64M, 1G or 1048576')
  return Math.round(Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase()))
}

/** Mount points in /proc/self/mountinfo (octal escapes decoded). */
export function mountPoints(): Map<string, string> {
  try {
    return parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8'))
  } catch {
    return new Map()
  }
}

/** Where background mounts keep their pid files and logs ($BFS_RUNTIME_DIR overrides it). */
function runtimeDir(): string {
  const d = process.env.BFS_RUNTIME_DIR || (process.getuid?.() === 0 ? '/run/bfs' : path.join(process.env.XDG_RUNTIME_DIR || os.tmpdir(), `bfs-${process.getuid?.()}`))
  fs.mkdirSync(d, { recursive: true, mode: 0o700 })
  return d
}

const mountId = (mnt: string): string => createHash('sha1').update(mnt).digest('hex').slice(0, 16)
const logFile = (mnt: string, given?: string): string => path.resolve(given ?? path.join(runtimeDir(), `mount-${mountId(mnt)}.log`))
const mountedMessage = (what: string, mnt: string, pid: number, log: string): string =>
  `mounted ${what} at ${mnt} (pid ${pid}, log ${log}); unmount with: bfs umount ${mnt}\n`

function memoryLine(): string {
  const m = process.memoryUsage()
  const mib = (n: number): string => (n / 1048576).toFixed(1)
  return `rss ${mib(m.rss)}, heap ${mib(m.heapUsed)}/${mib(m.heapTotal)}, external ${mib(m.external)}, arrayBuffers ${mib(m.arrayBuffers)}`
}

const pidFile = (mnt: string): string => path.join(runtimeDir(), `mount-${mountId(mnt)}.pid`)

/**
 * A mount point as /proc/self/mountinfo spells it: absolute, its parent's symlinks resolved
 * (not the last component: stat of a dead FUSE mount fails).
 */
function canonical(p: string, points = mountPoints()): string {
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
function isServerOf(pid: number, mnt: string): boolean {
  if (!pidAlive(pid)) return false
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
    const cwd = fs.readlinkSync(`/proc/${pid}/cwd`)
    if (!argv.includes('mount') || !argv.includes('--foreground')) return false
    const points = mountPoints()
    return argv.some((a) => a !== '' && !a.startsWith('-') && (path.resolve(cwd, a) === mnt || canonical(path.resolve(cwd, a), points) === mnt))
  } catch {
    return false
  }
}

/** Checks a mount point before anything is started: exists, is a directory, empty, not mounted, not overlapping the repository. */
function checkMountpoint(mnt: string, repoDir: string): void {
  let st: fs.Stats
  try {
    st = fs.statSync(mnt)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOTCONN') throw new BfsError('BAD_INPUT', `${mnt} is a dead bfs mount; run 'bfs umount ${mnt}' first`)
    throw new BfsError('BAD_INPUT', code === 'ENOENT' ? `mount point ${mnt} does not exist` : `cannot use mount point ${mnt}: ${code}`)
  }
  if (mountPoints().has(mnt)) throw new BfsError('BAD_INPUT', `${mnt} is already a mount point`)
  if (!st.isDirectory()) throw new BfsError('BAD_INPUT', `mount point ${mnt} is not a directory`)
  if (fs.readdirSync(mnt).length > 0) throw new BfsError('BAD_INPUT', `mount point ${mnt} is not empty`)
  const repo = fs.realpathSync(repoDir)
  const inside = (a: string, b: string): boolean => a === b || a.startsWith(b.endsWith('/') ? b : `${b}/`)
  if (inside(mnt, repo) || inside(repo, mnt)) throw new BfsError('BAD_INPUT', `mount point ${mnt} overlaps the repository ${repo}`)
}

export function registerMount(program: Command, ctx: Ctx): void {
  program
    .command('mount')
    .description('mount one generation (GEN MOUNTPOINT) or the whole repository (MOUNTPOINT: gen1/ … genN/, latest, by-date/) read-only')
    .argument('<gen-or-mountpoint>', 'generation, or the mount point to mount every generation at')
    .argument('[mountpoint]', 'mount point (an empty directory)')
    .option('--foreground', 'stay in the foreground and serve until unmounted or interrupted')
    .option('--allow-other', 'let other users in (the kernel checks permissions as in the source)')
    .addOption(new Option('--cache-size <size>', 'decompressed-frame cache (e.g. 64M; never less than 8 frames)').default(16 << 20, '16M').argParser(parseSize))
    .addOption(new Option('--readahead <frames>', 'frames to prefetch for sequential reads').default(undefined, 'about 1 MiB').argParser((v) => {
      const n = Number(v)
      if (!Number.isInteger(n) || n < 0 || n > 256) throw new InvalidArgumentError('0 to 256')
      return n
    }))
    .option('--no-native-read', 'serve every read in JavaScript (the native read path is on by default)')
    .option('--log <file>', 'log file of the background mount (default: a file under $BFS_RUNTIME_DIR, else /run/bfs for root, else $XDG_RUNTIME_DIR)')
    .addOption(new Option('--open-units <n>', 'unit files kept open at most, one descriptor each (default 1024)').argParser((v) => {
      const n = Number(v)
      if (!Number.isInteger(n) || n < 1 || n > 1 << 20) throw new InvalidArgumentError('1 to 1048576')
      return n
    }))
    .addOption(new Option('--ready-fd <fd>').hideHelp().argParser(Number))
    .option('--debug', 'FUSE debug output (foreground)')
    .option('--source <path>', 'with GEN: latest and latest~K count only the generations of this source')
    .action(async (a: string, b: string | undefined, o) => {
      if (b === undefined && o.source !== undefined) throw new BfsError('USAGE', '--source applies to a generation (bfs mount GEN MOUNTPOINT --source PATH); the whole-repository mount shows every source')
      const repo = ctx.openRepo()
      const mnt = canonical(b ?? a)
      const man = b === undefined ? null : resolveGen(repo, a, o)
      // the server mounts the generation resolved here (a backup in between must not change what `latest` meant)
      const genRef = man ? `gen${man.id}` : null
      if (!o.foreground) {
        checkMountpoint(mnt, repo.dir)
        const log = logFile(mnt, o.log)
        const logFd = fs.openSync(log, 'a', 0o600)
        const args = [process.argv[1]!, '--repo', repo.dir, 'mount', ...(genRef ? [genRef] : []), mnt, '--foreground', '--ready-fd', '3', '--cache-size', String(o.cacheSize), ...(o.readahead === undefined ? [] : ['--readahead', String(o.readahead)])]
        if (o.allowOther) args.push('--allow-other')
        if (o.nativeRead === false) args.push('--no-native-read')
        if (o.openUnits !== undefined) args.push('--open-units', String(o.openUnits))
        const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', logFd, logFd, 'pipe'], env: process.env })
        fs.closeSync(logFd)
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
          throw new BfsError('IO', tail ? tail.replace(/^bfs: /, '') : `the mount process exited; see ${log}`)
        }
        child.unref()
        ;(child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy()
        process.stdout.write(mountedMessage(man ? `gen${man.id}` : `repository ${repo.dir}`, mnt, child.pid!, log))
        return
      }
      // Foreground: this process serves the mount. It never touches the mount point itself.
      checkMountpoint(mnt, repo.dir)
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
          throw new BfsError('BAD_INPUT', `cannot open the log ${logPath}: ${(err as NodeJS.ErrnoException).code}`)
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
      const nativeReads = o.nativeRead !== false
      const vfs = new Vfs(repo, { generation: man?.id, cacheBytes: o.cacheSize, readaheadFrames: o.readahead, nativeReads, maxOpenUnits: o.openUnits })
      const server = await serveFuse(vfs, {
        mountpoint: mnt,
        allowOther: !!o.allowOther,
        negativeTimeoutS: man ? 86400 : 0,
        fsname: `bfs:${repo.dir}${man ? `:gen${man.id}` : ''}`,
        log,
        debug: !!o.debug,
        nativeReadCacheBytes: nativeReads ? o.cacheSize : 0,
      }).catch((err: Error) => {
        throw new BfsError('IO', `cannot mount ${mnt}: ${err.message}`)
      })
      // Once mounted, any failure before "ready" must unmount again: the FUSE session
      // would otherwise keep this process alive, serving, with its caller still waiting.
      try {
        fs.writeFileSync(pidFile(mnt), `${process.pid}\n`)
        if (detaching) {
          // say where we are, then detach (stdout and stderr to the log; the caller's
          // terminal or pipe is released)
          fs.writeSync(1, mountedMessage(man ? `gen${man.id}` : `repository ${repo.dir}`, mnt, process.pid, logPath))
          detach(logFd)
          fs.closeSync(logFd)
          detached = true
        }
        log(`serving ${man ? `gen${man.id}` : 'all generations'} of ${repo.dir} at ${mnt} (${Math.round(performance.now())} ms after start)`)
      } catch (err) {
        await server.unmount({ lazy: true }).catch(() => undefined)
        fs.rmSync(pidFile(mnt), { force: true })
        throw new BfsError('IO', `cannot start serving ${mnt}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
      }
      if (o.readyFd) {
        try {
          fs.writeSync(o.readyFd, 'ready\n')
          fs.closeSync(o.readyFd)
        } catch {
          // the launcher is gone (killed while waiting): keep serving, as it asked
        }
      }
      // the record is ours unless a newer mount at this path (ours was detached) wrote its own
      const dropPidFile = (): void => {
        try {
          if (fs.readFileSync(pidFile(mnt), 'utf8').trim() === String(process.pid)) fs.rmSync(pidFile(mnt), { force: true })
        } catch {
          // gone already
        }
      }
      const statsLine = (): string => `cache: ${JSON.stringify(vfs.frames.stats)}; open units: ${vfs.frames.openUnitCount}; native reads: ${JSON.stringify(server.nativeStats())}; stat cache: ${JSON.stringify(server.statCacheStats())}; memory MiB: ${memoryLine()}`
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
            process.exit(0)
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
        // kill -USR2 <pid>: cache counters and memory to the log
        process.on('SIGUSR2', () => log(statsLine()))
        process.on('SIGINT', () => stop('SIGINT'))
        process.on('SIGTERM', () => stop('SIGTERM'))
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
      process.exit(0)
    })

  program
    .command('umount')
    .alias('unmount')
    .description('unmount a bfs mount (also one whose process died); refused while it is in use, as umount(8)')
    .argument('<mountpoint>')
    .option('-l, --lazy', 'detach it now even while in use, as umount -l (files still open there are served until closed)')
    .action(async (m: string, o: { lazy?: boolean }) => {
      const mnt = canonical(m)
      const type = mountPoints().get(mnt)
      if (!type) throw new BfsError('BAD_INPUT', `${mnt} is not mounted`)
      if (type !== 'fuse.bfs') throw new BfsError('BAD_INPUT', `${mnt} is not a bfs mount (it is ${type})`)
      let pid = 0
      try {
        pid = Number(fs.readFileSync(pidFile(mnt), 'utf8').trim())
      } catch {
        // no record: a mount whose process is gone, or not ours
      }
      const busy = `${mnt} is busy (a process is using it); close it and try again, or detach it now with 'bfs umount --lazy'`
      // Unmount here first, so that a mount in use is refused at once and its server goes
      // on serving; then the server, its mount gone, finishes and exits.
      const r = spawnSync('fusermount', [o.lazy ? '-uz' : '-u', mnt], { encoding: 'utf8' })
      if (r.status !== 0 && mountPoints().has(mnt) && /busy/i.test(r.stderr)) throw new BfsError('IO', busy)
      // a pid file left by a killed server may name a reused pid: only a bfs mount server of this mount point counts
      if (pid && !isServerOf(pid, mnt)) pid = 0
      if (o.lazy && r.status !== 0 && mountPoints().has(mnt)) throw new BfsError('IO', `cannot detach ${mnt}: ${r.stderr.trim()}`)
      if (o.lazy && r.status === 0 && pid && pidAlive(pid)) {
        // the server goes on serving the files still open there; it exits after the last is closed
        process.stdout.write(`detached ${mnt}; files still open there are served until they are closed\n`)
        return
      }
      if (pid && pidAlive(pid)) {
        try {
          process.kill(pid, 'SIGTERM')
        } catch {
          // gone meanwhile (it noticed the unmount), or not ours to signal
        }
        for (let i = 0; i < 100 && mountPoints().has(mnt); i++) await new Promise((r) => setTimeout(r, 50))
        for (let i = 0; i < 100 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 50))
      }
      if (mountPoints().has(mnt)) {
        // a server that did not unmount it, or a dead mount ("transport endpoint is not connected")
        const u = spawnSync('fusermount', ['-u', mnt], { encoding: 'utf8' })
        if (u.status !== 0) {
          if (/busy/i.test(u.stderr)) throw new BfsError('IO', busy)
          const z = spawnSync('fusermount', ['-uz', mnt], { encoding: 'utf8' })
          if (z.status !== 0) throw new BfsError('IO', `cannot unmount ${mnt}: ${(z.stderr || u.stderr).trim()}`)
        }
      }
      fs.rmSync(pidFile(mnt), { force: true })
      process.stdout.write(`unmounted ${mnt}\n`)
    })
}
