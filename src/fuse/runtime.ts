/**
 * Where background mounts keep their pid files and logs: one file of each per mount point,
 * named after a hash of its canonical path.
 */
import path from 'node:path'
import { createHash } from 'node:crypto'
import { runtimeDir } from '../os/runtime.js'

export { runtimeDir }

const mountId = (mnt: string): string => createHash('sha1').update(mnt).digest('hex').slice(0, 16)

/** The log of the background mount at `mnt`: `given`, else a file in the runtime directory. */
export const logFile = (mnt: string, given?: string): string => path.resolve(given ?? path.join(runtimeDir(), `mount-${mountId(mnt)}.log`))

/** The pid file of the server of `mnt`. */
export const pidFile = (mnt: string): string => path.join(runtimeDir(), `mount-${mountId(mnt)}.pid`)
