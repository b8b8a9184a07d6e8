/**
 * `bfs verify --against DIR` of a format 2 generation: the generation's tree (the subtree of
 * the source DIR is, in a generation of several sources) walked directory by directory
 * through its pieces, beside the live tree, with format 1's lines and rules (repo/verify.ts
 * metaDiffs): `-` missing in the live tree, `+` not in the generation, `T` type differs,
 * `M` metadata or content differs; file content compared byte for byte, block by block as the
 * reader hands it over. Only the directory being compared is in memory.
 */
import fs from 'node:fs'
import * as native from '../../native/index.js'
import { E_LINKED, FileType, type Entry2 } from '../../format/v2/dir.js'
import { BfsError } from '../errors.js'
import { closeDeviceReader, openDeviceForRead, type DeviceReader } from '../device.js'
import { liveTypeOf, metaDiffs } from '../verify.js'
import type { GenReader2 } from './read2.js'

const SLASH = Buffer.from('/')

/**
 * Compares generation `r` (from its entry at `genPath`, '' = the root) with the live tree at
 * `root`; prints one line per difference and returns their number. A directory of the
 * generation that does not read is a CORRUPT error naming genN:path (exit 6).
 */
export async function verifyAgainst2(r: GenReader2, genPath: string, root: string, print: (line: string) => void, signal?: AbortSignal): Promise<number> {
  if (!fs.existsSync(root)) throw new BfsError('BAD_INPUT', `${root} does not exist`)
  const top = await r.lookup(genPath)
  if (!top) throw new BfsError('BAD_INPUT', `${genPath}: no such file or directory in gen${r.manifest.id}`)
  let diffs = 0
  const diff = (kind: string, rel: string, what: string): void => {
    diffs++
    print(`${kind} ${rel || '.'}${what ? `: ${what}` : ''}`)
  }
  /** Hard-link groups (the source identity the backup saw) → the live inode their first member has. */
  const groups = new Map<string, string>()
  const CH = 1 << 20
  // one pair of buffers for every file (a tree of 78k files compared them each); a device gets an aligned one
  const plainBuf = Buffer.allocUnsafe(CH)
  const want = Buffer.allocUnsafe(CH)
  const contentEqual = async (e: Entry2, live: Buffer, rel: string, device = false): Promise<boolean> => {
    const f = await r.open(e, rel)
    let dr: DeviceReader
    try {
      // a device is read as a backup reads it: what is on it, not its (maybe stale) page cache
      dr = device ? openDeviceForRead(live.toString()) : { fd: fs.openSync(live, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW), direct: false }
    } catch {
      return false
    }
    const fd = dr.fd
    const buf = dr.direct ? native.alignedBuffer(CH) : plainBuf
    // the stored bytes in CH-sized pieces into `want` (the reader hands over its own buffers: data[offset…offset+bytes], holes as zeros)
    let have = 0
    let pos = 0 // in the file: where `want` starts
    let same = true
    const compare = (): boolean => {
      // O_DIRECT reads whole aligned pieces; the last one may end past the size (short read)
      for (let got = 0; got < have; ) {
        const n = fs.readSync(fd, buf, got, dr.direct ? CH - got : have - got, pos + got)
        if (n === 0) return false
        got += n
      }
      return buf.subarray(0, have).equals(want.subarray(0, have))
    }
    try {
      r.each(f, (data, offset, bytes) => {
        for (let k = 0; k < bytes; ) {
          const n = Math.min(bytes - k, CH - have)
          data.copy(want, have, offset + k, offset + k + n)
          have += n
          k += n
          if (have === CH) {
            if (!compare()) return (same = false)
            pos += have
            have = 0
          }
        }
        return true
      })
      if (same && have > 0) same = compare()
    } finally {
      if (device) closeDeviceReader(dr)
      else fs.closeSync(fd)
    }
    return same
  }
  const walk = async (e: Entry2, live: Buffer, rel: string): Promise<void> => {
    if (signal?.aborted) throw signal.reason
    let st: Float64Array
    try {
      st = native.lstatRecord(live)
    } catch {
      diff('-', rel, 'missing in the live tree')
      return
    }
    if (liveTypeOf(st) !== e.type) {
      diff('T', rel, 'type differs')
      return
    }
    const d = metaDiffs(e, e.size, st, live)
    if (e.type === FileType.File && e.flags & E_LINKED) {
      const id = `${e.srcDev}:${e.srcInoHi}:${e.srcInoLo}`
      const ino = `${st[native.S_DEV]}:${st[native.S_INO_HI]}:${st[native.S_INO_LO]}`
      const seen = groups.get(id)
      if (seen === undefined) groups.set(id, ino)
      else if (seen !== ino) d.push('hard link broken (not the same inode as its group)')
    }
    if (e.type === FileType.File && st[native.S_SIZE] === e.size && e.size > 0 && !(await contentEqual(e, live, rel))) d.push('content differs')
    if (d.length) diff('M', rel, d.join(', '))
    if (e.type !== FileType.Dir) return
    const names = new Set<string>()
    for await (const page of r.pages(e, rel)) {
      for (const c of page) {
        names.add(c.name.toString('latin1'))
        await walk(c, Buffer.concat([live, SLASH, c.name]), rel ? `${rel}/${c.name}` : c.name.toString())
      }
    }
    let liveNames: Buffer[] = []
    try {
      liveNames = fs.readdirSync(live, { encoding: 'buffer' })
    } catch {
      // an unreadable live directory: its children were reported missing
    }
    for (const n of liveNames) if (!names.has(n.toString('latin1'))) diff('+', rel ? `${rel}/${n}` : n.toString(), 'not in the generation')
  }
  if (r.manifest.kind === 'volume' && genPath === '') {
    // a volume: its image (the root's one file) against a live image file or device, by size and bytes, as on format 1
    let img: Entry2 | null = null
    for await (const page of r.pages(top, '')) img ??= page[0] ?? null
    if (!img) throw new BfsError('CORRUPT', `gen${r.manifest.id}: a volume generation without its image`)
    const isDev = fs.statSync(root).isBlockDevice()
    const size = isDev ? (() => { const fd = fs.openSync(root, 'r'); try { return native.blockDeviceSize(fd) } finally { fs.closeSync(fd) } })() : fs.statSync(root).size
    const name = img.name.toString()
    if (size !== img.size) diff('M', name, `size ${img.size} != ${size}`)
    else if (img.size > 0 && !(await contentEqual(img, Buffer.from(root), name, isDev))) diff('M', name, 'content differs')
    return diffs
  }
  await walk(top, Buffer.from(root), '')
  return diffs
}
