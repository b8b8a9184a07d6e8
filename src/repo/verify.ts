import fs from 'node:fs'
import { rethrowUnavailable } from '../codec/zstd.js'
import os from 'node:os'
import path from 'node:path'
import * as native from '../native/index.js'
import { EntryType, ENTRY_FLAG_LINK_FOLLOWER, type Entry } from '../format/catalog.js'
import type { Manifest } from '../format/manifest.js'
import { keys, Repository } from './repository.js'
import { WorkerPool } from './pool.js'
import { WorkerReaders } from './readers.js'
import { dataStoreOf, repoBlockReader } from './stream-source.js'
import { bringIn, planTapePasses } from './tapepasses.js'
import type { TieredStore } from '../store/tiered.js'
import type { ScanUnitReply, ScanUnitRequest } from './verify-worker.js'
import { CommandReader } from './read.js'
import { BfsError } from './errors.js'
import { checkGroups } from './groups.js'
import { closeDeviceReader, openDeviceForRead, type DeviceReader } from './device.js'

export interface VerifyResult {
  problems: number
  units: number
  frames: number
  rawBytes: number
}

/** A problem's text; an addon that cannot load is not damage: it ends the verify (exit 1, its own line). */
const msg = (err: unknown): string => {
  rethrowUnavailable(err)
  return (err as Error).message
}

export interface VerifyOptions {
  /** `verify --all`: also report every damaged generation and check groups/. */
  all?: boolean
  /**
   * The repository's tiered store when units are on tape (its readers read through it):
   * the units not on disk are recalled in passes that fit the buffer cache, each pinned for
   * `holder` while its units are checked.
   */
  tape?: { tiered: TieredStore; holder: string } | null
  signal?: AbortSignal
  /**
   * After the structure checks and after each unit read: units and their stored bytes checked
   * of those the generations need, and the last unit checked ('' before the first).
   */
  progress?(p: { units: number; totalUnits: number; bytes: number; totalBytes: number; path: string }): void
}

/**
 * Checks the repository's config, then the structure of each generation (manifest,
 * catalog, maps, hashes against their checksums; every reference in range and into a
 * readable generation) and reads every frame of every unit the generations need, older
 * generations included, checking each frame's zstd checksum and block hashes. A damaged
 * generation is reported, as is every generation that refers into it (one line per pair).
 */
export async function verifyGenerations(repo: Repository, ids: number[], print: (line: string) => void, opts: VerifyOptions = {}): Promise<VerifyResult> {
  let problems = 0
  const problem = (line: string): void => {
    problems++
    print(`FAIL ${line}`)
  }
  const cfg = repo.checkConfig()
  if (cfg.problem) problem(cfg.problem)
  if (cfg.copyProblem) problem(`${cfg.copyProblem} (repair: cp ${repo.store.where(keys.config)} ${repo.store.where(keys.configCopy)})`)
  if (opts.all) for (const p of checkGroups(repo)) problem(p)
  const damaged = new Map(repo.damagedGenerations().map((d) => [d.id, d]))
  const readable = repo.readableIds()
  /** Generations whose data is needed (their units are read below), metadata read. */
  const needGens = new Set<number>()
  const metaOk = new Map<number, boolean>()
  const reported = new Set<number>()
  const reportDamaged = (g: number): void => {
    if (reported.has(g)) return
    reported.add(g)
    const d = damaged.get(g)
    problem(d ? `gen${g} is damaged: ${d.problem}` : `gen${g} does not exist`)
  }
  /** Whether a generation's data can be used: readable manifest, hashes and maps. */
  const need = (g: number): boolean => {
    let ok = metaOk.get(g)
    if (ok !== undefined) return ok
    ok = false
    if (readable.has(g)) {
      try {
        repo.manifest(g)
        repo.hashes(g)
        const objects = repo.maps(g).length
        // the BI log decodes and checks its own ranges; its objects must exist
        for (const r of repo.biLog(g)?.records ?? []) if (r.object >= objects) throw new BfsError('CORRUPT', `gen${g}: BI log record ${r.seq} names object ${r.object}, the maps have ${objects}`)
        needGens.add(g)
        ok = true
      } catch (err) {
        problem(msg(err))
      }
    }
    metaOk.set(g, ok)
    return ok
  }
  // references of the generation being verified into damaged or missing ones, counted (not one line per file)
  let badRefs = new Map<number, number>()
  const countBad = (g: number): void => {
    badRefs.set(g, (badRefs.get(g) ?? 0) + 1)
  }
  /** Damaged or missing generations each checked object depends on (memoized: a shared object is checked once). */
  const objectBad = new Map<string, number[]>()
  const checkObject = (g: number, k: number): number[] => {
    const key = `${g}:${k}`
    const hit = objectBad.get(key)
    if (hit) return hit
    const bad: number[] = []
    objectBad.set(key, bad)
    const o = repo.maps(g)[k]!
    const use = (x: number): boolean => {
      if (need(x)) return true
      if (!readable.has(x) && !bad.includes(x)) bad.push(x)
      return false
    }
    if (o.baseGen) {
      if (o.baseGen >= g) problem(`gen${g}: object ${k} has its base in a later generation gen${o.baseGen}`)
      else if (use(o.baseGen)) {
        if (repo.maps(o.baseGen).length <= o.baseIndex) problem(`gen${g}: object ${k} has a missing base gen${o.baseGen}/${o.baseIndex}`)
        else for (const b of checkObject(o.baseGen, o.baseIndex)) if (!bad.includes(b)) bad.push(b)
      }
    }
    for (const x of o.extents) {
      if (x.gen === 0) continue
      if (x.gen > g) {
        problem(`gen${g}: object ${k} refers to a later generation gen${x.gen}`)
        continue
      }
      if (!use(x.gen)) continue
      if (x.streamBlock + x.count > repo.manifest(x.gen).streamBlocks) problem(`gen${g}: object ${k} refers past the end of gen${x.gen}'s data`)
    }
    return bad
  }
  /** A generation asked for: its whole catalog and block maps, and what they refer to in older generations. */
  const verifyGen = (id: number): void => {
    if (!readable.has(id)) return reportDamaged(id)
    badRefs = new Map()
    try {
      if (!need(id)) return
      const entries = repo.catalog(id)
      entries.forEach((e, i) => {
        if (e.type !== EntryType.File || e.flags & ENTRY_FLAG_LINK_FOLLOWER || !e.objGen) return
        if (e.objGen > id) problem(`gen${id}: entry ${i} refers to a later generation gen${e.objGen}`)
        else if (!need(e.objGen)) {
          if (!readable.has(e.objGen)) countBad(e.objGen)
        } else if (repo.maps(e.objGen).length <= e.objIndex) problem(`gen${id}: entry ${i} refers to missing object gen${e.objGen}/${e.objIndex}`)
        else for (const b of checkObject(e.objGen, e.objIndex)) countBad(b)
      })
      for (let k = 0; k < repo.maps(id).length; k++) for (const b of checkObject(id, k)) countBad(b)
    } catch (err) {
      problem(msg(err))
    }
    for (const [g, n] of badRefs) {
      problem(`gen${id}: ${n} reference${n > 1 ? 's' : ''} into ${damaged.has(g) ? 'damaged' : 'missing'} gen${g} (data that cannot be read)`)
      reportDamaged(g)
    }
  }
  for (const id of ids) verifyGen(id)
  if (opts.all) for (const id of damaged.keys()) reportDamaged(id)

  const pool = new WorkerPool(os.availableParallelism())
  const readers = new WorkerReaders(repo, pool)
  let units = 0
  let frames = 0
  let rawBytes = 0
  try {
    const todo: Manifest[] = []
    for (const g of [...needGens].sort((a, b) => a - b)) {
      try {
        todo.push(repo.manifest(g))
        readers.add(g)
      } catch {
        continue
      }
    }
    // Workers open, validate and read the units themselves (each within its share of the
    // open-unit budget); the main thread only schedules (gen, unit).
    let unitsSeen = 0
    let bytesSeen = 0
    let totalUnits = 0
    let totalBytes = 0
    for (const m of todo) {
      totalUnits += m.units.length
      for (const u of m.units) totalBytes += u.bytes
    }
    opts.progress?.({ units: 0, totalUnits, bytes: 0, totalBytes, path: '' })
    if (todo.some((m) => m.units.length)) await readers.start()
    // In-flight unit checks; each removes itself when done. (An earlier version spliced an
    // array by indexOf from every race: a second splice of a finished task removed the
    // last, still running one, and the pool was closed under it.)
    const tasks = new Set<Promise<void>>()
    const scan = async (m: Manifest, u: Manifest['units'][number]): Promise<void> => {
      const where = dataStoreOf(repo).where(keys.unit(m.id, u.index))
      const req: Omit<ScanUnitRequest, 'id'> = { op: 'scanUnit', specId: readers.spec.id, gen: m.id, unit: u.index }
      const task: Promise<void> = pool
        .run<ScanUnitReply>(req)
        .then((r) => {
          if (!r.scan) return problem(r.missing ? `${where}: missing` : r.failed!)
          if (r.scan.sizeBytes !== u.bytes) problem(`${where}: size does not match the manifest`)
          units++
          frames += r.scan.frames
          rawBytes += r.scan.rawBytes
          for (const b of r.scan.bad) problem(`${where}: frame ${b.frame}: ${b.reason}`)
        }, (err) => problem(`${where}: ${msg(err)}`))
        .finally(() => {
          tasks.delete(task)
          unitsSeen++
          bytesSeen += u.bytes
          opts.progress?.({ units: unitsSeen, totalUnits, bytes: bytesSeen, totalBytes, path: where })
        })
      tasks.add(task)
      if (tasks.size >= pool.size * 2) await Promise.race(tasks)
    }
    const tape = opts.tape ?? null
    const plan = tape ? planTapePasses(repo, tape.tiered, todo.flatMap((m) => m.units.map((u) => keys.unit(m.id, u.index)))) : null
    // units on disk (and, without a tape tier, all of them) first; then those on tape, recalled pass by pass
    const later: Array<Array<[Manifest, Manifest['units'][number]]>> = Array.from({ length: plan?.passes.length ?? 0 }, () => [])
    for (const m of todo) {
      for (const u of m.units) {
        const p = plan?.passOf.get(keys.unit(m.id, u.index))
        if (p === undefined) await scan(m, u)
        else later[p]!.push([m, u])
      }
    }
    if (tape && plan) {
      try {
        for (let p = 0; p < plan.passes.length; p++) {
          const failed = await bringIn(tape.tiered, plan.passes[p]!, tape.holder, opts.signal)
          for (const [m, u] of later[p]!) {
            const why = failed.get(keys.unit(m.id, u.index))
            if (why !== undefined) problem(why)
            else await scan(m, u)
          }
          await Promise.all(tasks)
          tape.tiered.unpin(plan.passes[p]!, tape.holder)
        }
      } finally {
        tape.tiered.unpin(null, tape.holder)
      }
    }
    await Promise.all(tasks)
    // Before-images: read back through their extents, each must hash to the check the
    // capture took (the frame checks above cover the stored blocks; this covers the log's
    // extents). Not with units on tape: the frame checks are what is read there.
    if (!opts.tape) for (const g of [...needGens].sort((a, b) => a - b)) await checkBiImages(repo, g, problem)
  } finally {
    await readers.close()
    await pool.close()
  }
  return { problems, units, frames, rawBytes }
}

/** Reads back each before-image of generation g's BI log and compares its XXH64 with the record's. */
async function checkBiImages(repo: Repository, g: number, problem: (line: string) => void): Promise<void> {
  let log
  try {
    log = repo.biLog(g)
  } catch {
    return // reported with the generation's metadata
  }
  if (!log) return
  const reader = repoBlockReader(repo)
  const check = Buffer.alloc(8)
  for (const r of log.records) {
    if (r.length === 0) continue
    const buf = Buffer.alloc(r.length)
    try {
      // (gen-0 extents are all-zero blocks: holes to the reader)
      const f = reader.file(r.extents.filter((e) => e.gen !== 0), r.offset + r.length)
      reader.readSync(f, buf, r.length, r.offset)
      native.xxh64Into(buf, check, 0) // seed 0: format 1 is never encrypted (format.md §2.22)
      if (!check.equals(r.check)) problem(`gen${g}: BI log record ${r.seq} (object ${r.object}, ${r.length} bytes at ${r.offset}): the image does not match its checksum`)
    } catch (err) {
      problem(`gen${g}: BI log record ${r.seq}: ${msg(err)}`)
    }
  }
  await reader.close()
}

function fmtTime(s: number, ns: number): string {
  return `${new Date(s * 1000).toISOString().replace(/\.000Z$/, '')}.${String(ns).padStart(9, '0')}`
}

const LIVE_TYPE: Record<number, number> = { 0o100000: 1, 0o040000: 2, 0o120000: 3, 0o020000: 4, 0o060000: 5, 0o010000: 6, 0o140000: 7 }

/** The entry type (format 1's EntryType and format 2's FileType: the same numbers) of an lstat record. */
export function liveTypeOf(st: Float64Array): number | undefined {
  return LIVE_TYPE[st[native.S_MODE]! & 0o170000]
}

/** What `verify --against` compares of an entry, in either format. */
export interface AgainstFields {
  type: number
  mode: number
  uid: number
  gid: number
  mtimeSec: number
  mtimeNsec: number
  target: Buffer | null
  rdevMajor: number
  rdevMinor: number
  xattrs: Array<[Buffer, Buffer]> | null
}

/**
 * The metadata differences of a stored entry (of the same type; its data `size`) and the
 * live path `live` with lstat record `st`: mode, owner, mtime (not of directories: restoring
 * their children moves it), size, device number, symlink target, xattrs.
 */
export function metaDiffs(e: AgainstFields, size: number, st: Float64Array, live: Buffer): string[] {
  const d: string[] = []
  if ((st[native.S_MODE]! & 0o7777) !== e.mode && e.type !== EntryType.Symlink) d.push(`mode ${e.mode.toString(8)} != ${(st[native.S_MODE]! & 0o7777).toString(8)}`)
  if (st[native.S_UID] !== e.uid || st[native.S_GID] !== e.gid) d.push(`owner ${e.uid}:${e.gid} != ${st[native.S_UID]}:${st[native.S_GID]}`)
  if (e.type !== EntryType.Dir && (st[native.S_MTIME_SEC] !== e.mtimeSec || st[native.S_MTIME_NSEC] !== e.mtimeNsec)) d.push(`mtime ${fmtTime(e.mtimeSec, e.mtimeNsec)} != ${fmtTime(st[native.S_MTIME_SEC]!, st[native.S_MTIME_NSEC]!)}`)
  if (e.type === EntryType.File && st[native.S_SIZE] !== size) d.push(`size ${size} != ${st[native.S_SIZE]}`)
  if ((e.type === EntryType.CharDev || e.type === EntryType.BlockDev) && (st[native.S_RDEV_MAJOR] !== e.rdevMajor || st[native.S_RDEV_MINOR] !== e.rdevMinor)) d.push('device number differs')
  if (e.type === EntryType.Symlink) {
    const t = fs.readlinkSync(live, { encoding: 'buffer' })
    if (!t.equals(e.target!)) d.push(`target ${e.target} != ${t}`)
  }
  let lx: Array<[Buffer, Buffer]> = []
  try {
    lx = native.getXattrs(live)
  } catch {
    // unsupported: compare as none
  }
  const key = (x: Array<[Buffer, Buffer]> | null): string => (x ?? []).map(([n, v]) => `${n.toString('hex')}=${v.toString('hex')}`).sort().join(',')
  if (key(lx) !== key(e.xattrs)) d.push('xattrs differ')
  return d
}

/** Compares a file generation with a live tree (restore-and-compare without the restore). Prints one line per difference; returns how many. */
export function verifyAgainst(repo: Repository, man: Manifest, dir: string, print: (line: string) => void): number {
  const root = path.resolve(dir)
  if (!fs.existsSync(root)) throw new BfsError('BAD_INPUT', `${root} does not exist`)
  const entries = repo.catalog(man.id)
  const reader = new CommandReader(repo)
  if (man.kind === 'volume') {
    // A volume: compare the image's bytes with a live image file or device.
    const img = entries[1]!
    const live = Buffer.from(root)
    const isDev = fs.statSync(root).isBlockDevice()
    const size = isDev ? (() => { const fd = fs.openSync(root, 'r'); try { return native.blockDeviceSize(fd) } finally { fs.closeSync(fd) } })() : fs.statSync(root).size
    let n = 0
    if (size !== img.size) {
      print(`M ${img.name}: size ${img.size} != ${size}`)
      n++
    } else if (!contentEqual(reader, img, live, isDev)) {
      print(`M ${img.name}: content differs`)
      n++
    }
    reader.close()
    return n
  }
  let diffs = 0
  const diff = (kind: string, rel: string, what: string): void => {
    diffs++
    print(`${kind} ${rel || '.'}${what ? `: ${what}` : ''}`)
  }
  const liveIno = new Map<number, string>()
  const walk = (i: number, live: Buffer, rel: string): void => {
    const e = entries[i]!
    let st: Float64Array
    try {
      st = native.lstatRecord(live)
    } catch {
      diff('-', rel, 'missing in the live tree')
      return
    }
    if (liveTypeOf(st) !== e.type) {
      diff('T', rel, `type differs`)
      return
    }
    const data = e.flags & ENTRY_FLAG_LINK_FOLLOWER ? entries[e.linkLeader]! : e
    const d = metaDiffs(e, data.size, st, live)
    if (e.type === EntryType.File && st[native.S_NLINK]! > 1) {
      const leader = e.flags & ENTRY_FLAG_LINK_FOLLOWER ? e.linkLeader : i
      const ino = `${st[native.S_DEV]}:${st[native.S_INO_HI]}:${st[native.S_INO_LO]}`
      const seen = liveIno.get(leader)
      if (seen === undefined) liveIno.set(leader, ino)
      else if (seen !== ino) d.push('hard link broken (not the same inode as its group)')
    }
    if (e.type === EntryType.File && st[native.S_SIZE] === data.size && data.size > 0 && !contentEqual(reader, data, live)) d.push('content differs')
    if (d.length) diff('M', rel, d.join(', '))
    if (e.type === EntryType.Dir) {
      const names = new Set<string>()
      for (let c = e.firstChild; c < e.firstChild + e.childCount; c++) {
        const ce = entries[c]!
        names.add(ce.name.toString('latin1'))
        walk(c, Buffer.concat([live, Buffer.from('/'), ce.name]), rel ? `${rel}/${ce.name}` : ce.name.toString())
      }
      let liveNames: Buffer[] = []
      try {
        liveNames = fs.readdirSync(live, { encoding: 'buffer' })
      } catch {
        // unreadable live dir: its children were reported missing
      }
      for (const n of liveNames) if (!names.has(n.toString('latin1'))) diff('+', rel ? `${rel}/${n}` : n.toString(), 'not in the generation')
    }
  }
  try {
    walk(0, Buffer.from(root), '')
  } finally {
    reader.close()
  }
  return diffs
}

function contentEqual(reader: CommandReader, e: Entry, live: Buffer, device = false): boolean {
  const f = reader.open(e.objGen, e.objIndex, e.size)
  let dr: DeviceReader
  try {
    // a device is read as a backup reads it: what is on it, not its (maybe stale) page cache
    dr = device ? openDeviceForRead(live.toString()) : { fd: fs.openSync(live, 'r'), direct: false }
  } catch {
    return false
  }
  const fd = dr.fd
  try {
    const CH = 1 << 20
    const buf = dr.direct ? native.alignedBuffer(CH) : Buffer.allocUnsafe(CH)
    const want = Buffer.allocUnsafe(CH)
    for (let pos = 0; pos < e.size; pos += CH) {
      const len = reader.reader.readSync(f, want, CH, pos)
      let got = 0
      while (got < len) {
        const n = fs.readSync(fd, buf, got, len - got, pos + got)
        if (n === 0) return false
        got += n
      }
      if (!buf.subarray(0, got).equals(want.subarray(0, len))) return false
    }
    return true
  } finally {
    if (device) closeDeviceReader(dr)
    else fs.closeSync(fd)
  }
}
