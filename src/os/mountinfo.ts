/**
 * The one parser of /proc/self/mountinfo (proc(5)). A leaf: the fuse layer (its own mount,
 * umount), repo (which filesystems sit on a device being backed up) and cli read it here.
 */
import fs from 'node:fs'
import { readFile } from 'node:fs/promises'

export interface MountEntry {
  point: string
  type: string
  /** major:minor of the mounted filesystem: for FUSE, one of its own per mount. */
  dev: string
  /** What was mounted, as mount(8) was given it: a device path such as /dev/loop3, or e.g. `tmpfs`. */
  source: string
  /** This mount's options (`rw`/`ro`, nosuid, …). */
  mountOptions: string[]
  /** The filesystem's (superblock's) options: `ro` here means no mount of it can write. */
  superOptions: string[]
}

/** Decodes mountinfo's octal escapes (\040 for a space, \012 for a newline…). */
const unescapeMountinfo = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))

/** The mounts in the text of /proc/self/mountinfo, in mount order. */
export function mountinfoEntries(text: string): MountEntry[] {
  const out: MountEntry[] = []
  for (const line of text.split('\n')) {
    const f = line.split(' ')
    if (f.length < 10) continue
    const dash = f.indexOf('-')
    out.push({ point: unescapeMountinfo(f[4]!), type: f[dash + 1] ?? '', dev: f[2]!, source: unescapeMountinfo(f[dash + 2] ?? ''), mountOptions: f[5]!.split(','), superOptions: (f[dash + 3] ?? '').split(',') })
  }
  return out
}

/** Mount points and their filesystem types (the last mount at a point wins). */
export function parseMountinfo(text: string): Map<string, string> {
  return new Map(mountinfoEntries(text).map((e) => [e.point, e.type]))
}

/** The mounts of this process's mount namespace, in mount order (synchronous: never for a FUSE server's own event loop while it serves). */
export function readMountsSync(): MountEntry[] {
  return mountinfoEntries(fs.readFileSync('/proc/self/mountinfo', 'utf8'))
}

/** The same, without blocking the event loop. */
export async function readMounts(): Promise<MountEntry[]> {
  return mountinfoEntries(await readFile('/proc/self/mountinfo', 'utf8'))
}

/** Mount points of this namespace and their filesystem types, read now (synchronous); empty if mountinfo cannot be read. */
export function mountPointsSync(): Map<string, string> {
  try {
    return parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8'))
  } catch {
    return new Map()
  }
}
