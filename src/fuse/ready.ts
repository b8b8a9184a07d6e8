/**
 * The ready pipe of a background mount: the server writes `ready` on it once the mount
 * answers, then closes it. bin/bfs's pipe (BFS_READY_FD) also hears how the server ended if
 * it ends before that — `exit CODE`, from the exit handler — so that the launcher, which
 * does not wait for the server (it is not its child), exits with the server's status.
 */
import fs from 'node:fs'

let watched: number | null = null

/** From the start of the process: say `exit CODE` on `fd` if the process exits before `ready`. */
export function watchReadyFd(fd: number): void {
  watched = fd
  process.on('exit', (code) => {
    if (watched === null) return
    try {
      fs.writeSync(watched, `exit ${code}\n`)
    } catch {
      // the launcher is gone
    }
  })
}

/** Writes `ready` on `fd` and closes it (the launcher returns). */
export function announceReady(fd: number): void {
  // first: once closed, the descriptor's number may be reused by any file
  if (watched === fd) watched = null
  try {
    fs.writeSync(fd, 'ready\n')
    fs.closeSync(fd)
  } catch {
    // the launcher is gone (killed while waiting): keep serving, as it asked
  }
}
