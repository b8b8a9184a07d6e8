/**
 * bfs on a repository in S3 (issue 18): the real CLI — init, backup (full and incremental),
 * generations, ls, cat, diff, restore, verify, mount — against a real S3 service (`make
 * test-s3`: a local Ceph RGW). Skipped, and saying so, without S3_ENDPOINT.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { S3Store } from '../src/store/s3.js'
import { bfs, diffTree, makeTree, sh, statTree, tmpdir } from './helpers.js'

const ENDPOINT = process.env.S3_ENDPOINT
const BUCKET = process.env.S3_BUCKET ?? 'bfs-test'
const env: Record<string, string> = ENDPOINT
  ? { AWS_ACCESS_KEY_ID: process.env.S3_ACCESS_KEY ?? process.env.AWS_ACCESS_KEY_ID ?? '', AWS_SECRET_ACCESS_KEY: process.env.S3_SECRET_KEY ?? process.env.AWS_SECRET_ACCESS_KEY ?? '' }
  : {}

if (!ENDPOINT) {
  describe('bfs on an S3 repository', () => {
    it.skip('SKIPPED: S3_ENDPOINT is not set (make test-s3 runs these against a local Ceph RGW)', () => undefined)
  })
} else {
  const work = tmpdir('bfs-s3cli-')
  const src = path.join(work, 'src')
  const prefix = `cli${Date.now().toString(36)}${process.pid}`
  const repo = `s3:${ENDPOINT}/${BUCKET}/${prefix}`
  const spool = path.join(work, 'spool')
  // the read cache (store/objcache.ts) under the test's directory, not the user's ~/.cache
  const run = (args: string[], more: Record<string, string> = {}) => bfs(args, { repo, env: { ...env, BFS_S3_SPOOL: spool, BFS_CACHE_DIR: path.join(work, 'cache'), ...more } })
  const store = (): S3Store => {
    Object.assign(process.env, env)
    return S3Store.fromUrl(repo, { spoolDir: spool })
  }

  beforeAll(async () => {
    await store().createBucket()
    await makeTree(src)
  })
  afterAll(async () => {
    await sh(`fusermount -u '${path.join(work, 'mnt')}' 2>/dev/null`)
    await store().remove('', { recursive: true })
    fs.rmSync(work, { recursive: true, force: true })
  })

  describe('bfs on an S3 repository', () => {
    it('init --format 2; a second init and a format 1 init are refused in one line', async () => {
      const r = await run(['init', '--format', '2'])
      expect(r.stderr).toBe('')
      expect(r.stdout).toBe(`initialized bfs repository ${repo} (format 2)\n`)
      const again = await run(['init', '--format', '2'])
      expect(again.code).not.toBe(0)
      expect(again.stderr).toBe(`bfs: ${repo} is already a bfs repository\n`)
      const f1 = await run(['init', '--format', '1'], {})
      expect(f1.code).toBe(2)
      expect(f1.stderr).toMatch(/^bfs: .*: a repository on S3 is format 2 only: bfs init --format 2\n$/)
      expect(fs.readdirSync(process.cwd()).filter((n) => n.startsWith('s3:'))).toEqual([]) // no local directory named like the URL
    })

    it('init creates a missing bucket (as restic does) and says so; a second repository in it does not', async () => {
      const bucket = `bfs-init-${prefix}`.toLowerCase().slice(0, 63)
      const at = (p: string): string => `s3:${ENDPOINT}/${bucket}/${p}`
      const init = (p: string) => bfs(['init', '--format', '2'], { repo: at(p), env: { ...env, BFS_S3_SPOOL: spool, BFS_CACHE_DIR: path.join(work, 'cache') } })
      try {
        const a = await init('one')
        expect(a.stderr).toBe('')
        expect(a.stdout).toBe(`created bucket "${bucket}" at ${ENDPOINT}\ninitialized bfs repository ${at('one')} (format 2)\n`)
        const b = await init('two')
        expect(b.stderr).toBe('')
        expect(b.stdout).toBe(`initialized bfs repository ${at('two')} (format 2)\n`)
        const g = await bfs(['generations'], { repo: at('one'), env: { ...env, BFS_S3_SPOOL: spool, BFS_CACHE_DIR: path.join(work, 'cache') } })
        expect(g.code, g.stderr).toBe(0)
      } finally {
        Object.assign(process.env, env)
        const s = S3Store.fromUrl(at(''), { spoolDir: spool })
        await s.remove('', { recursive: true })
        await s.deleteBucket()
        s.close()
      }
    })

    it('backup, generations, ls, cat, restore and verify: the restored tree equals the source', async () => {
      const b = await run(['backup', src])
      expect(b.stderr).toBe('')
      expect(b.code).toBe(0)
      expect(b.stdout).toMatch(/committed \(full; format 2\)/)
      const g = await run(['generations'])
      expect(g.stdout).toContain(src)
      const ls = await run(['ls', 'latest'])
      expect(ls.code).toBe(0)
      expect(ls.stdout).toMatch(/ hello\.txt\n/)
      expect(ls.stdout).toMatch(/ random\.bin\n/)
      expect((await run(['cat', 'latest:/hello.txt'])).stdout).toBe('hello world\n')
      const cat = await run(['cat', 'latest:/random.bin'])
      expect(cat.out.equals(fs.readFileSync(path.join(src, 'random.bin')))).toBe(true)
      const dest = path.join(work, 'restored')
      const rs = await run(['restore', 'latest', dest])
      expect(rs.stderr).toBe('')
      expect(rs.code).toBe(0)
      expect(await diffTree(src, dest)).toBe('')
      expect(await statTree(dest)).toBe(await statTree(src))
      const v = await run(['verify'])
      expect(v.code).toBe(0)
      expect(v.stdout).toMatch(/^ok: /)
    })

    it('an incremental backup, diff, and a mount of the generation reads the same bytes', async () => {
      fs.appendFileSync(path.join(src, 'seq.txt'), '\nmore\n')
      const b = await run(['backup', src])
      expect(b.code).toBe(0)
      expect(b.stdout).toMatch(/committed \(incremental to gen\d+; format 2\)/)
      const d = await run(['diff', 'latest~1', 'latest'])
      expect(d.code).toBe(0)
      expect(d.stdout).toMatch(/M +\/seq\.txt/)
      const mnt = path.join(work, 'mnt')
      fs.mkdirSync(mnt)
      const m = await run(['mount', 'latest', mnt])
      expect(m.code, m.stderr).toBe(0)
      try {
        expect(fs.readFileSync(path.join(mnt, 'seq.txt')).equals(fs.readFileSync(path.join(src, 'seq.txt')))).toBe(true)
        expect(fs.readFileSync(path.join(mnt, 'random.bin')).equals(fs.readFileSync(path.join(src, 'random.bin')))).toBe(true)
        expect(fs.readlinkSync(path.join(mnt, 'a/link'))).toBe('../hello.txt')
      } finally {
        expect((await run(['umount', mnt])).code).toBe(0)
      }
    })

    it('compact and prune --compact are refused on S3 in one line (exit 1), nothing changed', async () => {
      for (const args of [['compact'], ['prune', '--compact']]) {
        const r = await run(args)
        expect(r.code, args.join(' ')).toBe(1)
        expect(r.stderr).toMatch(/^bfs: 'bfs (prune --)?compact' is not supported on an S3 repository yet .*; nothing was compacted\n$/)
      }
    })

    it('wrong credentials, a missing bucket, an unreachable endpoint: one line each, no stack trace', async () => {
      const bad = await run(['ls'], { AWS_SECRET_ACCESS_KEY: 'wrong' })
      expect(bad.code).not.toBe(0)
      expect(bad.stderr).toMatch(/^bfs: s3:.*: access denied: the signature does not match \(a wrong AWS_SECRET_ACCESS_KEY\?\)\n$/)
      const nb = await bfs(['ls'], { repo: `s3:${ENDPOINT}/bfs-no-such-bucket/x`, env })
      expect(nb.stderr).toMatch(/^bfs: .*no bucket "bfs-no-such-bucket" at http.*\n$/)
      const down = await bfs(['ls'], { repo: 's3:http://127.0.0.1:1/bfs-test/x', env })
      expect(down.stderr).toMatch(/^bfs: .*cannot reach http:\/\/127\.0\.0\.1:1 \(ECONNREFUSED, 6 attempts\)\n$/)
      const none = await bfs(['ls'], { repo, env: { AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', HOME: work } })
      expect(none.stderr).toMatch(/^bfs: .*no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or write them to .*\n$/)
      const url = await bfs(['ls'], { repo: 's3:http://h/B_ad', env })
      expect(url.code).toBe(2)
      expect(url.stderr).toBe('bfs: s3:http://h/B_ad: "B_ad" is not a valid bucket name\n')
    })
  })
}
