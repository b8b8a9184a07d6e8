/**
 * The S3 read cache's local half (store/objcache.ts, store/cache.ts), without S3: entries kept
 * with their record, checked on first open, a corrupt one dropped; a cache shared by an owner
 * and a writer that is not (another process's handle), counted by the owner's rescan and
 * evicted with its record. test/s3-cache.test.ts covers the rest against a real RGW.
 */
import fs from 'node:fs'
import path from 'node:path'
import { createHash } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import { BufferCache } from '../src/store/cache.js'
import { cacheable, cacheDirOf, checkFetched, ObjectCache } from '../src/store/objcache.js'
import { tmpdir } from './helpers.js'

const work = tmpdir('bfs-objcache-')
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

const fetched = (bytes: Buffer, etag = `"${createHash('md5').update(bytes).digest('hex')}"`) => ({ chunks: [bytes.subarray(0, 1000), bytes.subarray(1000)], sizeBytes: bytes.length, etag })

describe('the S3 read cache, locally', () => {
  it('which keys are cached: immutable objects only, never mutable ones', () => {
    for (const k of ['gens/00000001/unit-00000000', 'gens/00000012/pack-00000003', 'gens/00000001/stream', 'gens/00000001/hashes', 'index/dedup-00000002-0000']) expect(cacheable(k), k).toBe(true)
    for (const k of ['config', 'config-copy', 'manifests/gen-00000001', 'runs/00000001', 'leases/0123456789abcdef', 'locks/maintenance', 'retired/gen-00000001-r0001', 'groups/x', 'tiers/t', 'lock', 'gens/00000001']) expect(cacheable(k), k).toBe(false)
  })

  it('the directory: one per endpoint, bucket and prefix; --cache-dir, BFS_CACHE_DIR, XDG_CACHE_HOME, ~/.cache', () => {
    const loc = { endpoint: 'http://h:1', bucket: 'b', prefix: 'p' }
    expect(cacheDirOf(loc, '/x')).toMatch(/^\/x\/s3-b-[0-9a-f]{16}$/)
    expect(cacheDirOf(loc, undefined, { BFS_CACHE_DIR: '/y' })).toMatch(/^\/y\/s3-b-/)
    expect(cacheDirOf(loc, undefined, { XDG_CACHE_HOME: '/z' })).toMatch(/^\/z\/bfs\/s3-b-/)
    expect(cacheDirOf(loc, undefined, {})).toMatch(/\/\.cache\/bfs\/s3-b-/)
    expect(cacheDirOf({ ...loc, prefix: 'q' }, '/x')).not.toBe(cacheDirOf(loc, '/x'))
  })

  it('a fetch whose bytes do not match the ETag (MD5) is refused; a multipart ETag leaves size', () => {
    const b = Buffer.from('x'.repeat(3000))
    expect(checkFetched('w', 'k', fetched(b))).toBe(createHash('sha256').update(b).digest('hex'))
    expect(() => checkFetched('w', 'k', fetched(b, '"00000000000000000000000000000000"'))).toThrow(/do not match the object's ETag/)
    expect(checkFetched('w', 'k', fetched(b, '"abc-2"'))).toMatch(/^[0-9a-f]{64}$/)
    expect(() => checkFetched('w', 'k', { ...fetched(b, '"abc-2"'), sizeBytes: 3001 })).toThrow(/fetched 3000 bytes of an object of 3001/)
  })

  it('an entry is served with its descriptor; corrupted on disk, a new process finds it, drops it and says so', async () => {
    const dir = path.join(work, 'c1')
    const warnings: string[] = []
    const a = ObjectCache.open(dir, { warn: (m) => warnings.push(m) })
    const bytes = Buffer.from(Array.from({ length: 5000 }, (_, i) => i & 0xff))
    const key = 'gens/00000001/unit-00000000'
    expect(await a.put(key, fetched(bytes), checkFetched('w', key, fetched(bytes)))).not.toBe('')
    const e = a.entrySync(key)!
    expect(e.localFd).toBeTypeOf('number')
    expect(e.readSync({ offset: 0, length: 5000 }).equals(bytes)).toBe(true)
    e.closeSync()
    a.close()
    // one byte flipped, size unchanged
    const f = path.join(dir, 'data', key)
    const buf = fs.readFileSync(f)
    buf[2500] ^= 1
    fs.writeFileSync(f, buf)
    const b = ObjectCache.open(dir, { warn: (m) => warnings.push(m) })
    expect(b.entrySync(key)).toBeNull()
    expect(b.counters.corrupt).toBe(1)
    expect(warnings.join('\n')).toMatch(/does not match its SHA-256 \(corrupt on local disk\); removed, fetching it again/)
    expect(fs.existsSync(f)).toBe(false)
    expect(fs.existsSync(path.join(dir, 'meta', key))).toBe(false)
    // an entry without its record is not used either
    expect(await b.put(key, fetched(bytes), checkFetched('w', key, fetched(bytes)))).not.toBe('')
    fs.rmSync(path.join(dir, 'meta', key))
    const c = ObjectCache.open(path.join(dir), { owner: false })
    expect(c.entrySync(key)).toBeNull()
    b.close()
    c.close()
  })

  it('shared: a writer that is not the owner adds entries; the owner counts them at rescan, evicts them and their records', async () => {
    const dir = path.join(work, 'c2')
    const owner = ObjectCache.open(dir, { limitBytes: 10_000 })
    expect(owner.cache.owner).toBe(true)
    const other = ObjectCache.open(dir) // the lock is taken: a writer only
    expect(other.cache.owner).toBe(false)
    const keys = ['gens/00000001/unit-00000000', 'gens/00000001/unit-00000001', 'gens/00000001/unit-00000002']
    for (const k of keys) {
      const bytes = Buffer.alloc(4000, k.length + k.charCodeAt(k.length - 1))
      expect(await other.put(k, fetched(bytes), checkFetched('w', k, fetched(bytes)))).not.toBe('')
    }
    expect(owner.cache.stats().entries).toBe(0)
    owner.cache.rescan()
    // 12,000 bytes over a 10,000 limit: the oldest goes, with its record
    const st = owner.cache.stats()
    expect(st.entries).toBe(2)
    expect(st.evictions).toBe(1)
    const left = keys.filter((k) => fs.existsSync(path.join(dir, 'data', k)))
    expect(left.length).toBe(2)
    for (const k of keys) expect(fs.existsSync(path.join(dir, 'meta', k))).toBe(left.includes(k))
    // the ones left are served to the owner too (hashed once, then trusted)
    for (const k of left) {
      const e = owner.entrySync(k)!
      expect(e.sizeBytes).toBe(4000)
      e.closeSync()
    }
    other.close()
    owner.close()
    const next = BufferCache.open(dir, { owner: true }) // the lock was given up
    expect(next.owner).toBe(true)
    next.close()
  })
})
