import fs from 'node:fs'
import path from 'node:path'
import { readMountsSync, type MountEntry } from '../os/mountinfo.js'
import type { VolumeConsistency } from '../format/manifest.js'
import { fadvise } from '../native/index.js'

/** How consistent a volume generation's image is: see the manifest's `consistency` (src/format/manifest.ts). */
export type Consistency = VolumeConsistency

/** "major:minor" of a dev_t as Node and the addon report it (Linux's encoding, as glibc's major()/minor()). */
export function majorMinor(dev: number): string {
  const d = BigInt(dev)
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn)
  const minor = (d & 0xffn) | ((d >> 12n) & ~0xffn)
  return `${major}:${minor}`
}

export function readMounts(): MountEntry[] {
  try {
    return readMountsSync()
  } catch {
    return []
  }
}

const readSys = (p: string): string | null => {
  try {
    return fs.readFileSync(p, 'utf8').trim()
  } catch {
    return null
  }
}

/**
 * The block devices (as "major:minor") whose writes land on device `majmin`: itself, its
 * partitions, and what is stacked on any of them (device-mapper, md, … : their sysfs
 * `holders`; loop devices backed by one of them), recursively. A filesystem mounted from any of them writes to the device.
 */
export function devicesOn(majmin: string): Set<string> {
  const out = new Set<string>()
  const visit = (mm: string): void => {
    if (out.has(mm)) return
    out.add(mm)
    const dir = `/sys/dev/block/${mm}`
    let names: string[] = []
    try {
      names = fs.readdirSync(dir)
    } catch {
      return
    }
    for (const n of names) {
      // a partition: a subdirectory with a `partition` file and its own `dev`
      if (readSys(path.join(dir, n, 'partition')) !== null) {
        const d = readSys(path.join(dir, n, 'dev'))
        if (d) visit(d)
      }
    }
    let holders: string[] = []
    try {
      holders = fs.readdirSync(path.join(dir, 'holders'))
    } catch {
      // none
    }
    for (const h of holders) {
      const d = readSys(`/sys/class/block/${h}/dev`)
      if (d) visit(d)
    }
    // a loop device whose backing file is this device (losetup -o OFFSET DEV): loop devices
    // register no sysfs holder, but their writes land here all the same
    for (const d of loopDevicesOver(mm)) visit(d)
  }
  visit(majmin)
  return out
}

/** The loop devices ("major:minor") backed by block device `majmin` itself. */
function loopDevicesOver(majmin: string): string[] {
  const out: string[] = []
  for (const n of loopNames()) {
    const backing = readSys(`/sys/block/${n}/loop/backing_file`)
    if (!backing?.startsWith('/dev/')) continue // (never stat a path elsewhere: it may be on a hung FUSE mount)
    try {
      const st = fs.statSync(backing)
      if (st.isBlockDevice() && majorMinor(st.rdev) === majmin) {
        const mm = readSys(`/sys/block/${n}/dev`)
        if (mm) out.push(mm)
      }
    } catch {
      // detached since it was listed
    }
  }
  return out
}

function loopNames(): string[] {
  try {
    return fs.readdirSync('/sys/block').filter((n) => n.startsWith('loop'))
  } catch {
    return []
  }
}

/**
 * The mounts of filesystems on block device `majmin` (see {@link devicesOn}): found by the
 * major:minor mountinfo gives the filesystem (ext4, xfs…), or, for filesystems with a
 * device number of their own (btrfs), by a mount source that is one of those devices.
 */
export function deviceMounts(majmin: string, entries: MountEntry[] = readMounts()): MountEntry[] {
  const devs = devicesOn(majmin)
  return entries.filter((e) => {
    if (devs.has(e.dev)) return true
    if (!e.source.startsWith('/dev/')) return false // (never stat a path on another filesystem: a hung FUSE server would hang this)
    try {
      const st = fs.statSync(e.source)
      return st.isBlockDevice() && devs.has(majorMinor(st.rdev))
    } catch {
      return false
    }
  })
}

/** The state of the filesystems on a device from its mounts: none, all read-only, or some read-write. */
export function mountState(mounts: MountEntry[]): Exclude<Consistency, 'frozen'> {
  if (mounts.length === 0) return 'unmounted'
  return mounts.some((m) => !m.superOptions.includes('ro')) ? 'mounted-rw' : 'read-only'
}

/**
 * The loop devices ("major:minor") whose backing file is the file with this device and
 * inode number (an image file attached with losetup): their filesystems write to it.
 */
export function loopDevicesOf(dev: number, ino: number): string[] {
  const out: string[] = []
  for (const n of loopNames()) {
    const backing = readSys(`/sys/block/${n}/loop/backing_file`)
    if (!backing) continue
    try {
      const st = fs.statSync(backing)
      if (st.dev === dev && st.ino === ino) {
        const mm = readSys(`/sys/block/${n}/dev`)
        if (mm) out.push(mm)
      }
    } catch {
      // deleted or renamed since it was attached
    }
  }
  return out
}

/** One mount point per filesystem (the first mounted), in mount order: what --freeze freezes. */
export function filesystemsOf(mounts: MountEntry[]): MountEntry[] {
  const seen = new Set<string>()
  return mounts.filter((m) => !seen.has(m.dev) && seen.add(m.dev))
}

/** "major:minor" of the filesystem holding `p`, or of its nearest existing ancestor (a repository not created yet). */
export function filesystemOf(p: string): string {
  let cur = path.resolve(p)
  for (;;) {
    try {
      return majorMinor(fs.statSync(cur).dev)
    } catch {
      const up = path.dirname(cur)
      if (up === cur) throw new Error(`cannot stat any ancestor of ${p}`)
      cur = up
    }
  }
}

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
