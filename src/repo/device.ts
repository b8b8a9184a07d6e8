import fs from 'node:fs'
import { fadvise } from '../native/index.js'

/** A block device opened to read what is on it: see {@link openDeviceForRead}. */
export interface DeviceReader {
  fd: number
  /** O_DIRECT: reads need 4096-aligned offsets, lengths and buffers (native alignedBuffer). */
  direct: boolean
}

/**
 * Opens a block device to read what is on it now. A mounted filesystem writes file data
 * to the device directly, not through the device's own page cache, so pages an earlier
 * reader (an earlier backup, blkid, dd) left in that cache go stale, and a buffered read
 * returns them: the old data. O_DIRECT reads never use that cache (native-notes/volumes.md
 * has the measurements). A device that refuses O_DIRECT (EINVAL) is read through the cache
 * after fadvise(DONTNEED) has dropped its clean pages; {@link closeDeviceReader} drops them
 * again, so that no stale copy is left for the next reader either.
 */
export function openDeviceForRead(dev: string): DeviceReader {
  try {
    return { fd: fs.openSync(dev, fs.constants.O_RDONLY | fs.constants.O_DIRECT), direct: true }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err
  }
  const fd = fs.openSync(dev, fs.constants.O_RDONLY)
  fadvise(fd, 0, 0, 'dontneed')
  fadvise(fd, 0, 0, 'sequential')
  return { fd, direct: false }
}

export function closeDeviceReader(r: DeviceReader): void {
  if (!r.direct) fadvise(r.fd, 0, 0, 'dontneed')
  fs.closeSync(r.fd)
}
