/**
 * Rewriting sealed units (issue 18; native-notes/format.md §2.22.3): in an encrypted format 2
 * repository `bfs prune --max-unused` rewrites partly used units and `bfs compact` recompresses
 * settled ones, each new unit sealed under a fresh salt at revision + 1. In process: the
 * Recompressor opens the old frames and index with the old unit's key and seals the new ones
 * under the new key (the old key opens nothing of the new unit), refuses a reused salt, a
 * plaintext unit and a tampered frame. Through the real CLI (NODE_ENV=test: a cheap scrypt):
 * a prune after forgetting half the history rewrites the partly used units smaller, each under
 * a new salt, every kept generation restoring byte-identical (and through mounts in their own
 * processes, one started before the prune), verify --all clean, and the
 * next prune finds nothing to rewrite; a prune killed (SIGKILL) between two replaces leaves
 * every generation intact and the next prune finishes; compact's round trip, a compact killed
 * between two replaces, and a tampered frame (that unit left as it was, exit 4).
 */
import { createHash, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type History, restoresIdentical as restoresIdenticalIn, rewriteHistory } from './rewrite-history.js'
import { bfs, diffTree, sh, tmpdir } from './helpers.js'
import { keys2 } from '../src/format/v2/layout.js'
import { encodeUnitFileV2, parseUnitFile } from '../src/format/v2/unit.js'
import { DEFAULT_SMALL_FRAME_LEVEL, DamagedUnit, Recompressor, openUnitIndex, unitReseal } from '../src/repo/v2/compact.js'
import { FrameCompressor, decompressFrame } from '../src/codec/zstd.js'
import { frameCheck, hashBlocks } from '../src/codec/hash.js'
import { NONCE_TAG, newSalt, open, seal } from '../src/crypto/aead.js'
import { aad } from '../src/crypto/aad.js'
import { objectKey } from '../src/crypto/keys.js'

const ENC = { NODE_ENV: 'test', BFS_TEST_SCRYPT_N: '1024', BFS_PASSWORD: 'correct horse' }

let work: string
const mounts = new Set<string>()

async function umount(mnt: string): Promise<void> {
  if ((await bfs(['umount', mnt])).code !== 0) await bfs(['umount', '--lazy', mnt])
  if ((await sh(`grep -q ' ${mnt} ' /proc/mounts`)).code === 0) await sh(`fusermount -uz '${mnt}'`)
  mounts.delete(mnt)
}

const ok = async (args: string[], repo: string, env: Record<string, string> = {}): Promise<string> => {
  const res = await bfs(args, { repo, env: { ...ENC, ...env } })
  expect(res.code, `${args.join(' ')}: ${res.stderr}`).toBe(0)
  return res.stdout
}

/** test/format2-prune-rewrite.test.ts's history (test/rewrite-history.ts), in an encrypted repository, with text for compact. */
const history = (name: string, n: number): Promise<History> => rewriteHistory(path.join(work, name), n, { ok, init: ['init', '--encrypt'], text: true })
const restoresIdentical = (h: History, gens: number[]): Promise<void> => restoresIdenticalIn(h, gens, work, ok)

interface UnitHead {
  flags: number
  revision: number
  level: number
  salt: string
  bytes: number
  sha: string
}

/** Every unit file's header fields (read from its plaintext header) and the SHA-256 of its bytes. */
function units(repo: string): Map<string, UnitHead> {
  const out = new Map<string, UnitHead>()
  for (const g of fs.readdirSync(path.join(repo, 'gens')).sort()) {
    for (const f of fs.readdirSync(path.join(repo, 'gens', g)).sort()) {
      if (!/^unit-\d{8}$/.test(f)) continue
      const b = fs.readFileSync(path.join(repo, 'gens', g, f))
      expect(b.readUInt16LE(8), `${g}/${f} version`).toBe(2)
      out.set(`${g}/${f}`, { flags: b.readUInt16LE(10), revision: b.readUInt32LE(32), level: b[36]!, salt: b.subarray(64, 96).toString('hex'), bytes: b.length, sha: createHash('sha256').update(b).digest('hex') })
    }
  }
  return out
}
const ids = async (repo: string): Promise<number[]> => (JSON.parse(await ok(['ls', '--json'], repo)) as Array<{ id: number }>).map((g) => g.id)
const tmpFiles = (repo: string): string[] => fs.readdirSync(path.join(repo, 'gens'), { recursive: true }).map(String).filter((n) => n.includes('.tmp-'))

beforeAll(() => {
  work = tmpdir('bfs-v2encrw-')
})

afterAll(async () => {
  for (const m of [...mounts]) await umount(m)
  fs.rmSync(work, { recursive: true, force: true })
})

describe('Recompressor of a sealed unit (in process)', () => {
  const keys = { aead: 'aes-256-gcm' as const, kEnc: randomBytes(32) }
  const SEED = 0x1234_5678_9abc_def0n
  const text = (n: number, s: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => `${s}:${i % 251} `).join('').slice(0, n))
  /** A sealed v2 unit at revision 1: 3 frames of 2 blocks (the last 1), frame 1 dead (zeros, a dead range). */
  function sealedUnit(salt: Buffer): { file: Buffer; raws: Buffer[] } {
    const k = objectKey(keys, salt, 'unit')
    const c = new FrameCompressor(1)
    const raws = [text(8192, 1), Buffer.alloc(8192), text(4096, 2)]
    const frames: Buffer[] = []
    const seek = raws.map((raw, i) => {
      const out = Buffer.alloc(FrameCompressor.bound(raw.length))
      const z = Buffer.from(out.subarray(0, c.compressInto(out, raw)))
      const f = seal(k, NONCE_TAG.unitFrame, i, aad.unitFrame(7, 3, 1, i, raw.length), z)
      frames.push(f)
      const h = Buffer.alloc((raw.length / 4096) * 8)
      hashBlocks('xxh64', raw, 0, raw.length / 4096, h, 0, SEED)
      return { compBytes: f.length, rawBytes: raw.length, check: frameCheck('xxh64', h, SEED) }
    })
    const parts = encodeUnitFileV2({ stream: 7, unitIndex: 3, rawBlocks: 5, frameBlocks: 2, revision: 1, level: 1, hashAlg: 'xxh64' }, frames, seek, [{ start: 2, blocks: 2 }], {
      salt, sealIndex: (x) => seal(k, NONCE_TAG.unitIndex, 0, aad.unitIndex(7, 3, 1), x),
    })
    return { file: Buffer.concat(parts), raws }
  }
  const parseWith = (file: Buffer, salt: Buffer) => parseUnitFile(file, 4096, 'u', { stream: 7, unitIndex: 3 }, (b, h) => openUnitIndex(objectKey(keys, salt, 'unit'), h, b, 'u'))
  /** Frame i of a parsed sealed unit, opened with `salt`'s key and decompressed. */
  const frameOf = (file: Buffer, p: ReturnType<typeof parseUnitFile>, salt: Buffer, i: number): Buffer =>
    decompressFrame(open(objectKey(keys, salt, 'unit'), NONCE_TAG.unitFrame, i, aad.unitFrame(7, 3, p.revision, i, p.seek[i]!.rawBytes), file.subarray(p.offsets[i]!, p.offsets[i + 1]!), 'f'), p.seek[i]!.rawBytes)

  it('compact: revision + 1 under a fresh salt, the same raw bytes and frame checks; the old key opens nothing of the new unit', () => {
    const salt = newSalt()
    const { file, raws } = sealedUnit(salt)
    const before = parseWith(file, salt)
    const rs = unitReseal(keys, salt)
    expect(Buffer.from(rs.salt).equals(salt)).toBe(false)
    const out = Buffer.concat(new Recompressor(19, 'xxh64', SEED).rewrite(file, 'u', { stream: 7, unitIndex: 3 }, undefined, undefined, rs).parts)
    expect(out.readUInt16LE(10) & 1).toBe(1) // still encrypted
    const newSalt_ = out.subarray(64, 96)
    expect(newSalt_.equals(Buffer.from(rs.salt))).toBe(true)
    const after = parseWith(out, newSalt_)
    expect({ revision: after.revision, level: after.level, dead: after.dead }).toEqual({ revision: 2, level: 19, dead: [{ start: 2, blocks: 2 }] })
    expect(after.seek.map((e) => [e.rawBytes, e.check.toString('hex')])).toEqual(before.seek.map((e) => [e.rawBytes, e.check.toString('hex')]))
    for (let i = 0; i < 3; i++) expect(frameOf(out, after, newSalt_, i).equals(raws[i]!), `frame ${i}`).toBe(true)
    // the old unit's key opens neither the new index nor a new frame
    expect(() => parseWith(out, salt)).toThrow(/authentication failed/)
    expect(() => frameOf(out, after, salt, 0)).toThrow(/authentication failed/)
    // plaintext: no content of the text frames in the clear
    expect(out.includes(Buffer.from('1:17 1:18'))).toBe(false)
  })

  it('prune: the newly dead blocks zeroed and recorded, each frame sealed again; refuses a reused salt, a plaintext unit, a tampered frame or index', () => {
    const salt = newSalt()
    const { file, raws } = sealedUnit(salt)
    const rs = unitReseal(keys, salt)
    // block 1 (frame 0's second) dies; frame 2 is untouched (sealed again, not decoded)
    const out = Buffer.concat(new Recompressor(1, 'xxh64', SEED).rewrite(file, 'u', { stream: 7, unitIndex: 3 }, [{ start: 1, blocks: 3 }], undefined, rs).parts)
    const ns = out.subarray(64, 96)
    const after = parseWith(out, ns)
    expect({ revision: after.revision, dead: after.dead }).toEqual({ revision: 2, dead: [{ start: 1, blocks: 3 }] })
    const f0 = frameOf(out, after, ns, 0)
    expect(f0.subarray(0, 4096).equals(raws[0]!.subarray(0, 4096))).toBe(true)
    expect(f0.subarray(4096).equals(Buffer.alloc(4096))).toBe(true)
    expect(frameOf(out, after, ns, 2).equals(raws[2]!)).toBe(true)
    // its frame check is over the zeroed block (seeded)
    const h = Buffer.alloc(16)
    hashBlocks('xxh64', f0, 0, 2, h, 0, SEED)
    expect(after.seek[0]!.check.equals(frameCheck('xxh64', h, SEED))).toBe(true)
    const rc = new Recompressor(1, 'xxh64', SEED)
    const exp = { stream: 7, unitIndex: 3 }
    expect(() => rc.rewrite(file, 'u', exp, undefined, undefined, { ...rs, salt, key: rs.oldKey })).toThrow(/salt must be fresh/)
    const bad = Buffer.from(file)
    bad[96 + 5] ^= 0x55
    expect(() => rc.rewrite(bad, 'u', exp, undefined, undefined, rs)).toThrow(DamagedUnit)
    const badIndex = Buffer.from(file)
    badIndex[badIndex.length - 40] ^= 0x01
    expect(() => rc.rewrite(badIndex, 'u', exp, undefined, undefined, rs)).toThrow(DamagedUnit)
    // a plaintext unit where a sealed one belongs
    const plain = Buffer.concat(encodeUnitFileV2({ stream: 7, unitIndex: 3, rawBlocks: 1, frameBlocks: 1, revision: 0, level: 1, hashAlg: 'xxh64' }, [Buffer.from([1])], [{ compBytes: 1, rawBytes: 4096, check: Buffer.alloc(8) }], []))
    expect(() => rc.rewrite(plain, 'u', exp, undefined, undefined, unitReseal(keys, Buffer.alloc(32, 1)))).toThrow(/not encrypted, in an encrypted repository/)
    // and a sealed one without keys
    expect(() => rc.rewrite(file, 'u', exp)).toThrow(/encrypted unit, read without its key/)
  })
})

describe('bfs prune and bfs compact rewrite sealed units (encrypted repository)', () => {
  it('prune --max-unused 0 after forgetting half: the partly used units rewritten smaller under new salts; kept generations restore identical; verify --all clean; the next prune rewrites nothing', async () => {
    const h = await history('prune', 6)
    await ok(['forget', '1', '3', '5'], h.repo)
    const before = units(h.repo)
    // a mount (its own process) of a kept generation, reading before the prune and after it
    const early = path.join(work, 'mnt-early')
    fs.mkdirSync(early)
    await ok(['mount', 'gen4', early], h.repo)
    mounts.add(early)
    expect(await diffTree(h.snaps.get(4)!, early)).toBe('')
    const pr = JSON.parse(await ok(['prune', '--max-unused', '0', '--json'], h.repo)) as Record<string, any>
    expect(pr.units.rewritten, JSON.stringify(pr.units)).toBeGreaterThanOrEqual(3)
    expect(await diffTree(h.snaps.get(4)!, early)).toBe('')
    await umount(early)
    // and one mounted afterwards reads the rewritten units
    const late = path.join(work, 'mnt-late')
    fs.mkdirSync(late)
    await ok(['mount', 'gen2', late], h.repo)
    mounts.add(late)
    expect(await diffTree(h.snaps.get(2)!, late)).toBe('')
    await umount(late)
    expect(pr.units.rewrittenBytesAfter).toBeLessThan(pr.units.rewrittenBytesBefore)
    const after = units(h.repo)
    const rewritten = [...after].filter(([, u]) => u.revision === 1)
    expect(rewritten.length).toBe(pr.units.rewritten)
    for (const [k, u] of rewritten) {
      const b = before.get(k)!
      expect(b.revision, k).toBe(0)
      expect(u.flags & 1, k).toBe(1)
      expect(u.salt, k).not.toBe(b.salt)
      expect(u.bytes, k).toBeLessThan(b.bytes - 1024 * 1024) // a<i>'s 1.5 MiB of incompressible frames are zeros now
    }
    // salts stay distinct across the repository
    const salts = [...after.values()].map((u) => u.salt)
    expect(new Set(salts).size).toBe(salts.length)
    expect(await ids(h.repo)).toEqual([2, 4, 6])
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [2, 4, 6])
    const cat = await bfs(['cat', 'gen4:keep/b3'], { repo: h.repo, env: ENC })
    expect(cat.code, cat.stderr).toBe(0)
    expect(cat.out.equals(fs.readFileSync(path.join(h.snaps.get(4)!, 'keep/b3')))).toBe(true)
    // the dead ranges are recorded in the sealed index: nothing newly dead, nothing rewritten
    const again = JSON.parse(await ok(['prune', '--max-unused', '0', '--json'], h.repo)) as Record<string, any>
    expect(again.units.rewritten).toBe(0)
    expect(units(h.repo)).toEqual(after)
  }, 600_000)

  it('a prune killed between two replaces leaves every generation intact; the next prune finishes', async () => {
    const h = await history('prune-kill', 6)
    await ok(['forget', '1', '3', '5'], h.repo)
    const before = units(h.repo)
    const crash = await bfs(['prune', '--max-unused', '0'], { repo: h.repo, env: { ...ENC, BFS_TEST_FAULTS: JSON.stringify({ rules: [{ keys: 'gens/*/unit-*', ops: ['put'], fault: 'kill', after: 1 }] }) } })
    expect(crash.stderr).toContain('killed by SIGKILL')
    const mid = units(h.repo)
    expect([...mid.values()].filter((u) => u.revision === 1)).toHaveLength(1)
    expect(await ids(h.repo)).toEqual([2, 4, 6])
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [2, 4, 6])
    const pr = JSON.parse(await ok(['prune', '--max-unused', '0', '--json'], h.repo)) as Record<string, any>
    expect(pr.units.rewritten).toBeGreaterThanOrEqual(2)
    const after = units(h.repo)
    const rewritten = [...after].filter(([, u]) => u.revision === 1)
    expect(rewritten.length).toBe(pr.units.rewritten + 1)
    for (const [k, u] of rewritten) expect(u.salt, k).not.toBe(before.get(k)!.salt)
    expect(tmpFiles(h.repo)).toEqual([])
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [2, 4, 6])
  }, 600_000)

  it('compact: every settled unit sealed again under a new salt at the target level; verify --all clean, every generation restores identical; a compact killed between two replaces resumes', async () => {
    const h = await history('compact', 3)
    const before = units(h.repo)
    const out = await ok(['compact', '--min-age', '0', '--json'], h.repo)
    const j = JSON.parse(out.trim().split('\n').pop()!) as Record<string, any>
    expect(j.units.compacted).toBe(before.size)
    expect(j.dictionaries.on).toBe(false)
    expect(j.bytes.after).toBeLessThan(j.bytes.before)
    const after = units(h.repo)
    for (const [k, u] of after) {
      const b = before.get(k)!
      expect({ rev: u.revision, level: u.level, enc: u.flags & 1 }, k).toEqual({ rev: b.revision + 1, level: DEFAULT_SMALL_FRAME_LEVEL, enc: 1 }) // files' 128 KiB frames are small ones
      expect(u.salt, k).not.toBe(b.salt)
    }
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [1, 2, 3])
    expect(JSON.parse((await ok(['compact', '--min-age', '0', '--json'], h.repo)).trim().split('\n').pop()!).units.compacted).toBe(0)
    expect(fs.readdirSync(path.join(h.repo, keys2.genDir(1))).filter((n) => n.startsWith('dict-'))).toEqual([])

    // killed between two replaces: one unit compacted, the rest not; the next compact finishes
    const k = await history('compact-kill', 3)
    const crash = await bfs(['compact', '--min-age', '0'], { repo: k.repo, env: { ...ENC, BFS_TEST_FAULTS: JSON.stringify({ rules: [{ keys: 'gens/*/unit-*', ops: ['put'], fault: 'kill', after: 1 }] }) } })
    expect(crash.stderr).toContain('killed by SIGKILL')
    expect([...units(k.repo).values()].filter((u) => u.revision === 1)).toHaveLength(1)
    await ok(['verify', '--all'], k.repo)
    await restoresIdentical(k, [1, 2, 3])
    const next = JSON.parse((await ok(['compact', '--min-age', '0', '--json'], k.repo)).trim().split('\n').pop()!) as Record<string, any>
    expect(next.units.compacted).toBe(units(k.repo).size - 1)
    expect([...units(k.repo).values()].every((u) => u.revision === 1 && u.level === DEFAULT_SMALL_FRAME_LEVEL)).toBe(true)
    expect(tmpFiles(k.repo)).toEqual([])
    await ok(['verify', '--all'], k.repo)
    await restoresIdentical(k, [1, 2, 3])
  }, 900_000)

  it('a sealed frame that does not authenticate: compact leaves that unit byte for byte as it was (exit 4, named) and compacts the others', async () => {
    const h = await history('compact-bad', 2)
    const f = path.join(h.repo, keys2.unit(1, 0))
    const b = fs.readFileSync(f)
    b[96 + 100] ^= 0x20 // inside frame 0's ciphertext
    fs.writeFileSync(f, b)
    const r = await bfs(['compact', '--min-age', '0', '--json'], { repo: h.repo, env: ENC })
    expect(r.code, r.stderr).toBe(4)
    const j = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, any>
    expect(j.units.damaged).toEqual([{ key: keys2.unit(1, 0), why: expect.stringMatching(/frame 0: authentication failed/) }])
    expect(j.units.compacted).toBe(units(h.repo).size - 1)
    expect(fs.readFileSync(f).equals(b)).toBe(true)
    expect(units(h.repo).get('00000002/unit-00000000')!.revision).toBe(1)
  }, 600_000)
})
