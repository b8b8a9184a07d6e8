import fs from 'node:fs'

const O_NOATIME = fs.constants.O_NOATIME ?? 0

/**
 * Opens a source file or device read-only for backup, without updating its atime where
 * the kernel allows it (owner or root); otherwise (EPERM) opens it normally.
 */
export function openSource(path: string | Buffer): number {
  try {
    return fs.openSync(path, fs.constants.O_RDONLY | O_NOATIME)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err
    return fs.openSync(path, fs.constants.O_RDONLY)
  }
}
