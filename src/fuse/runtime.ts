/**
 * Where background mounts keep their pid files and logs: one file of each per mount point,
 * named after a hash of its canonical path.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createHash } from 'node:crypto'

/** The runtime directory ($BFS_RUNTIME_DIR, else /run/bfs for root, else $XDG_RUNTIME_DIR/bfs-UID); made 0700 if missing. */
export function runtimeDir(): string {
  const d = process.env.BFS_RUNTIME_DIR || (process.getuid?.() === 0 ? '/run/bfs' : path.join(process.env.XDG_RUNTIME_DIR || os.tmpdir(), `bfs-${process.getuid?.()}`))
  fs.mkdirSync(d, { recursive: true, mode: 0o700 })
  return d
}

const mountId = (mnt: string): string => createHash('sha1').update(mnt).digest('hex').slice(0, 16)

/** The log of the background mount at `mnt`: `given`, else a file in the runtime directory. */
export const logFile = (mnt: string, given?: string): string => path.resolve(given ?? path.join(runtimeDir(), `mount-${mountId(mnt)}.log`))

/** The pid file of the server of `mnt`. */
export const pidFile = (mnt: string): string => path.join(runtimeDir(), `mount-${mountId(mnt)}.pid`)
