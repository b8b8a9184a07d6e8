/**
 * A volume backup of an image file leaves the page cache as it found it (issue 14,
 * src/repo/cache-guard.ts): the 64 MiB regions that were not cached when it began are dropped
 * again once read, the cached ones stay. Real files on a disk filesystem (/var/tmp), real
 * `bfs backup --volume` processes (both formats), the page cache read with cachestat(2) and
 * checked against util-linux's fincore.
 */
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cachestat, fadvise } from '../src/native/index.js'
import { FORMATS, bfs, newRepoF, sh, tmpdir } from './helpers.js'

const MiB = 1 << 20
const REGION = 64 * MiB
const SIZE = 3 * REGION // regions 0 (cached before the backup), 1 and 2 (not)

/** Pages of [off, off + len) of `file` in the page cache. */
function cached(file: string, off: number, len: number): number {
  const fd = fs.openSync(file, 'r')
  try {
    const cs = cachestat(fd, off, len)
    if (!cs) throw new Error('cachestat(2) is not available on this kernel')
    return cs[0]
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * Drops the file's clean pages, then reads [0, REGION) back into the page cache, and only
 * that: what the read-ahead took beyond it is dropped again until none is left (its reads
 * may still be landing after the first drop, on a loaded machine).
 */
async function coldButFirstRegion(file: string): Promise<void> {
  const fd = fs.openSync(file, 'r')
  try {
    fs.fdatasyncSync(fd)
    expect(fadvise(fd, 0, 0, 'dontneed')).toBe(true)
    const buf = Buffer.allocUnsafe(4 * MiB)
    // read again while pages are missing: this machine's proactive reclaim (DAMON pageout of
    // cold regions) may take a few of them meanwhile
    for (let n = 0; n < 5 && cachestat(fd, 0, REGION)![0] < REGION / 4096; n++) {
      for (let pos = 0; pos < REGION; pos += buf.length) fs.readSync(fd, buf, 0, buf.length, pos)
      for (let i = 0; i < 200; i++) {
        fadvise(fd, REGION, 0, 'dontneed')
        if (cachestat(fd, REGION, 0)![0] === 0) break
        await new Promise((r) => setTimeout(r, 25))
      }
    }
  } finally {
    fs.closeSync(fd)
  }
}

describe('a volume backup of an image file and the page cache', () => {
  const work = tmpdir('bfs-volcache-')
  const img = path.join(work, 'image.raw')
  let digest = ''

  beforeAll(async () => {
    // not tmpfs: its pages are the file itself and cannot be dropped
    const fsType = (await sh(`stat -f -c %T ${work}`)).stdout.trim()
    expect(fsType, `${work} must be on a disk filesystem`).not.toBe('tmpfs')
    // compressible, non-zero, and different in every 4 KiB block
    const h = createHash('sha256')
    const fd = fs.openSync(img, 'w')
    const chunk = Buffer.alloc(4 * MiB)
    for (let pos = 0; pos < SIZE; pos += chunk.length) {
      for (let b = 0; b < chunk.length; b += 4096) chunk.write(`block ${(pos + b) / 4096} of the image `.repeat(100), b, 4096, 'latin1')
      fs.writeSync(fd, chunk, 0, chunk.length, pos)
      h.update(chunk)
    }
    fs.closeSync(fd)
    digest = h.digest('hex')
  })
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

  for (const fmt of FORMATS) {
    it(`format ${fmt}: the regions the backup brought in are dropped, the cached one stays; the copy is byte for byte`, async () => {
      const repo = await newRepoF(fmt, path.join(work, `repo-${fmt}`))
      await coldButFirstRegion(img)
      const pages = REGION / 4096
      expect(cached(img, 0, REGION)).toBeGreaterThan(pages * 0.99)
      expect(cached(img, REGION, 2 * REGION)).toBeLessThan(pages / 8)
      const r = await bfs(['backup', '--volume', img], { repo })
      expect(r.code, r.stderr).toBe(0)
      // the region that was cached is still cached; the two the backup read cold are not
      // (without the guard all 3 × 16,384 pages are cached here)
      expect(cached(img, 0, REGION)).toBeGreaterThan(pages * 0.9)
      expect(cached(img, REGION, 2 * REGION)).toBeLessThan(pages / 8)
      // fincore (util-linux) sees the same: less than the first region plus an eighth
      const fin = await sh(`fincore --bytes --noheadings --output RES ${img}`)
      expect(fin.code, fin.stderr).toBe(0)
      expect(Number(fin.stdout.trim())).toBeLessThan(REGION + REGION / 8)
      // and what was stored is the image
      const cat = await sh(`${path.join(import.meta.dirname, '..', 'bin', 'bfs')} --repo ${repo} cat gen1 | sha256sum`)
      expect(cat.stdout.split(' ')[0], cat.stderr).toBe(digest)
    }, 300_000)
  }

  it('a second backup of the same cold image (block-incremental read of every block) leaves nothing behind either', async () => {
    const repo = path.join(work, 'repo-2') // format 2's, holding gen1 of the image: this is gen2
    await coldButFirstRegion(img)
    // one changed block in the cold part, so the incremental reads and hashes it all
    const fd = fs.openSync(img, 'r+')
    fs.writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, REGION + 12_345 * 4096)
    fs.fdatasyncSync(fd)
    fadvise(fd, REGION, 0, 'dontneed')
    fs.closeSync(fd)
    const r = await bfs(['backup', '--volume', img], { repo })
    expect(r.code, r.stderr).toBe(0)
    expect(cached(img, 0, REGION)).toBeGreaterThan((REGION / 4096) * 0.9)
    expect(cached(img, REGION, 2 * REGION)).toBeLessThan(REGION / 4096 / 8)
  }, 300_000)
})
