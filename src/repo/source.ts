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

/**
 * Opens a regular file of a tree being backed up: as openSource, but the path must still name
 * a regular file. A file replaced after the scan by a symlink is not followed (O_NOFOLLOW:
 * ELOOP), and one replaced by a fifo or a device neither hangs the open (O_NONBLOCK, which
 * changes nothing for regular files) nor is read: an error naming what it became.
 */
export function openTreeFile(path: string | Buffer): number {
  const flags = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK
  let fd: number
  try {
    fd = fs.openSync(path, flags | O_NOATIME)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err
    fd = fs.openSync(path, flags)
  }
  let st: fs.Stats
  try {
    st = fs.fstatSync(fd)
  } catch (err) {
    fs.closeSync(fd)
    throw err
  }
  if (!st.isFile()) {
    fs.closeSync(fd)
    throw new Error('no longer a regular file (replaced since it was listed)')
  }
  return fd
}
