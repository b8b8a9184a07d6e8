import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createHash } from 'node:crypto'

/**
 * Where bfs keeps its runtime files (sockets, pid and lock files, logs of background
 * processes): $BFS_RUNTIME_DIR, else /run/bfs for root, else $XDG_RUNTIME_DIR/bfs-UID
 * (a temporary directory without it). Made (0700) if missing.
 * Background mounts (fuse/runtime.ts) and the recall service both use it.
 */
export function runtimeDir(env = process.env): string {
  const d = env.BFS_RUNTIME_DIR || (process.getuid?.() === 0 ? '/run/bfs' : path.join(env.XDG_RUNTIME_DIR || os.tmpdir(), `bfs-${process.getuid?.()}`))
  fs.mkdirSync(d, { recursive: true, mode: 0o700 })
  return d
}

/** The recall service's files for the repository in `repoDir`: one service per repository (by its real path). */
export function recallServicePaths(repoDir: string, env = process.env): { socket: string; lock: string; log: string } {
  let real = path.resolve(repoDir)
  try {
    real = fs.realpathSync(real)
  } catch {
    // not there (yet): its name is all there is
  }
  const id = createHash('sha1').update(real).digest('hex').slice(0, 16)
  const d = runtimeDir(env)
  return { socket: path.join(d, `recall-${id}.sock`), lock: path.join(d, `recall-${id}.lock`), log: path.join(d, `recall-${id}.log`) }
}
