/**
 * An encrypted repository on S3 (issue 18; native-notes/format.md §2.22.2): the real CLI —
 * init --encrypt, backup, restore, verify, file groups, a FUSE mount (in its own process) read
 * by ls, stat, diff -r and cp -a, `bfs key add|list|remove` — against a real S3 service (`make
 * test-s3`: a local Ceph RGW); NODE_ENV=test only makes scrypt cheap (BFS_TEST_SCRYPT_N).
 * The bucket is listed and read with the AWS SDK itself, not through bfs's store: no object
 * name and no object's bytes hold a file's or a group's name or a file's content, and a
 * flipped byte in an object is found. Skipped, and saying so, without S3_ENDPOINT.
 */
import fs from 'node:fs'
import path from 'node:path'
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { S3Store } from '../src/store/s3.js'
import { bfs, diffTree, makeTree, sh, statTree, tmpdir, umountBfs } from './helpers.js'

const ENDPOINT = process.env.S3_ENDPOINT
const BUCKET = process.env.S3_BUCKET ?? 'bfs-test'
const creds = ENDPOINT
  ? { AWS_ACCESS_KEY_ID: process.env.S3_ACCESS_KEY ?? process.env.AWS_ACCESS_KEY_ID ?? '', AWS_SECRET_ACCESS_KEY: process.env.S3_SECRET_KEY ?? process.env.AWS_SECRET_ACCESS_KEY ?? '' }
  : {}
const ENC = { NODE_ENV: 'test', BFS_TEST_SCRYPT_N: '1024', BFS_PASSWORD: 'correct horse' }
const NAME = 'PLUGH-s3-secret-name'
const CONTENT = 'XYZZY-s3-secret-content '
const GROUP = 'grp-QUUX-s3-group'

if (!ENDPOINT) {
  describe('an encrypted repository on S3', () => {
    it.skip('SKIPPED: S3_ENDPOINT is not set (make test-s3 runs these against a local Ceph RGW)', () => undefined)
  })
} else {
  const work = tmpdir('bfs-s3enc-')
  const src = path.join(work, `src-${NAME}`)
  const prefix = `enc${Date.now().toString(36)}${process.pid}`
  const repo = `s3:${ENDPOINT}/${BUCKET}/${prefix}`
  const spool = path.join(work, 'spool')
  const mnt = path.join(work, 'mnt')
  let cacheN = 0
  /** Each call its own read cache unless `cache` is given: a later command never reads an object from an earlier one's cache. */
  const run = (args: string[], more: Record<string, string> = {}) =>
    bfs(args, { repo, env: { ...creds, ...ENC, BFS_S3_SPOOL: spool, BFS_CACHE_DIR: path.join(work, `cache-${cacheN++}`), ...more } })
  const ok = async (args: string[], more: Record<string, string> = {}): Promise<string> => {
    const r = await run(args, more)
    expect(r.code, `bfs ${args.join(' ')}: ${r.stderr}`).toBe(0)
    return r.stdout
  }
  const client = new S3Client({
    endpoint: ENDPOINT,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: creds.AWS_ACCESS_KEY_ID ?? '', secretAccessKey: creds.AWS_SECRET_ACCESS_KEY ?? '' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  })
  /** Every object name under the repository's prefix, as the service lists them (relative to the prefix). */
  const objects = async (under = prefix): Promise<string[]> => {
    const out: string[] = []
    let token: string | undefined
    do {
      const r = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${under}/`, ContinuationToken: token }))
      for (const o of r.Contents ?? []) out.push(o.Key!.slice(under.length + 1))
      token = r.IsTruncated ? r.NextContinuationToken : undefined
    } while (token)
    return out.sort()
  }
  const getObject = async (name: string, under = prefix): Promise<Buffer> => {
    const r = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${under}/${name}` }))
    return Buffer.from(await r.Body!.transformToByteArray())
  }
  const putObject = (name: string, b: Buffer) => client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${prefix}/${name}`, Body: b }))

  beforeAll(async () => {
    Object.assign(process.env, creds)
    const s = S3Store.fromUrl(repo, { spoolDir: spool })
    await s.createBucket()
    s.close()
    await makeTree(src)
    fs.mkdirSync(path.join(src, `dir-${NAME}`))
    fs.writeFileSync(path.join(src, `dir-${NAME}`, `file-${NAME}.txt`), CONTENT.repeat(2000))
  })
  afterAll(async () => {
    Object.assign(process.env, creds)
    if ((await sh(`grep -q ' ${mnt} ' /proc/mounts`)).code === 0) await umountBfs(mnt) // a test that failed before its own unmount
    for (const r of [repo, `${repo}-plain`]) {
      const s = S3Store.fromUrl(r, { spoolDir: spool })
      await s.remove('', { recursive: true })
      s.close()
    }
    client.destroy()
    fs.rmSync(work, { recursive: true, force: true })
  })

  describe('an encrypted repository on S3', () => {
    it('init --encrypt, backup (full, incremental, --group), restore: the restored tree equals the source; verify is clean', async () => {
      expect(await ok(['init', '--encrypt'])).toMatch(/\(format 2, encrypted: aes-256-gcm;/)
      expect(await ok(['backup', src])).toMatch(/committed \(full; format 2\)/)
      fs.appendFileSync(path.join(src, 'seq.txt'), '\nmore\n')
      expect(await ok(['backup', src])).toMatch(/committed \(incremental to gen1; format 2\)/)
      await ok(['group', 'add', GROUP, '--include', `dir-${NAME}/**`])
      await ok(['backup', '--group', GROUP, src])
      expect(JSON.parse(await ok(['group', 'ls', '--json'])).map((g: { name: string }) => g.name)).toEqual([GROUP])
      expect((await ok(['cat', `gen3:dir-${NAME}/file-${NAME}.txt`]))).toBe(CONTENT.repeat(2000))
      const dest = path.join(work, 'restored')
      const rs = await run(['restore', 'gen2', dest])
      expect(rs.code, rs.stderr).toBe(0)
      expect(await diffTree(src, dest)).toBe('')
      expect(await statTree(dest)).toBe(await statTree(src))
      const v = await run(['verify', '--all'])
      expect(v.code, v.stdout + v.stderr).toBe(0)
      expect((await run(['ls', 'latest'], { BFS_PASSWORD: 'wrong' })).code).toBe(7)
    })

    it('a FUSE mount of the encrypted generation, in its own process, cold: ls -l, stat, diff -r and cp -a of a subtree are the source', async () => {
      expect(fs.existsSync('/dev/fuse')).toBe(true)
      fs.mkdirSync(mnt)
      const m = await run(['mount', 'gen2', mnt])
      expect(m.code, m.stderr).toBe(0)
      expect(m.stdout).toMatch(/^mounted gen2 at /)
      try {
        expect(fs.readFileSync('/proc/mounts', 'utf8')).toMatch(new RegExp(` ${mnt} fuse\\.bfs ro,`))
        // ls -l (numeric owners, ns times) of the top and a subdirectory; a directory's own size is the filesystem's, so not compared
        const lsl = async (dir: string): Promise<string> => (await sh(`cd '${dir}' && ls -ln --time-style=full-iso . a dir-${NAME}`)).stdout.split('\n').filter((l) => !/^(total |d)/.test(l)).join('\n')
        const ls = await lsl(mnt)
        expect(ls).toContain(`file-${NAME}.txt`)
        expect(ls).toBe(await lsl(src))
        // every entry's type, mode, owner, size, ns mtime, link count, symlink target, by stat(1)
        expect(await statTree(mnt)).toBe(await statTree(src))
        expect(await diffTree(src, mnt)).toBe('')
        expect(fs.readFileSync(path.join(mnt, `dir-${NAME}`, `file-${NAME}.txt`), 'utf8')).toBe(CONTENT.repeat(2000))
        // a partial restore: cp -a of a subtree keeps modes, ns times, symlinks, hard links' content
        const out = path.join(work, 'cp-a')
        const cp = await sh(`cp -a '${mnt}/a' '${out}'`)
        expect(cp.code, cp.stderr).toBe(0)
        expect(await diffTree(path.join(src, 'a'), out)).toBe('')
        // (a/hardlink.txt's other name, /hello.txt, is outside the subtree: the copy's has one link)
        const want = await statTree(path.join(src, 'a'))
        expect(want).toContain("|2|'./hardlink.txt'")
        expect(await statTree(out)).toBe(want.replace("|2|'./hardlink.txt'", "|1|'./hardlink.txt'"))
        expect(await statTree(out)).toContain('./link|symbolic link|777|0:0|12|1999-12-31 23:59:59.500000000')
      } finally {
        await umountBfs(mnt)
      }
      expect((await sh(`grep -q ' ${mnt} ' /proc/mounts`)).code).not.toBe(0)
    })

    it('bfs key add, list, remove on S3: an added passphrase opens the repository; a removed one is refused (exit 7), the other still opens it', async () => {
      const keyIds = async (): Promise<Array<{ keyId: string; label: string }>> => JSON.parse(await ok(['key', 'list', '--json']))
      const [first, ...none] = await keyIds()
      expect(none).toEqual([])
      expect(first!.keyId).toMatch(/^[0-9a-f]+$/)
      expect(await ok(['key', 'add', '--label', 'second'], { BFS_NEW_PASSWORD: 'battery staple' })).toMatch(/^added key [0-9a-f]+\n$/)
      const two = await keyIds()
      expect(two.map((k) => k.label).sort()).toEqual(['', 'second'])
      const second = two.find((k) => k.label === 'second')!
      // the key files are objects in the bucket, under keys/
      expect((await objects()).filter((n) => n.startsWith('keys/'))).toHaveLength(2)
      const list = await ok(['key', 'list'])
      expect(list.trim().split('\n')).toHaveLength(3) // heading and two keys
      expect(list).toContain(second.keyId)
      // the new passphrase opens it (names and content: the master key is the same)
      const file = `gen2:dir-${NAME}/file-${NAME}.txt`
      expect(await ok(['cat', file], { BFS_PASSWORD: 'battery staple' })).toBe(CONTENT.repeat(2000))
      // adding needs a passphrase that opens it
      expect((await run(['key', 'add'], { BFS_PASSWORD: 'nope', BFS_NEW_PASSWORD: 'x' })).code).toBe(7)
      // the first removed with the second: the first is refused, one line, exit 7; the second opens it
      expect(await ok(['key', 'remove', first!.keyId], { BFS_PASSWORD: 'battery staple' })).toBe(`removed key ${first!.keyId}\n`)
      const refused = await run(['ls', 'gen2'])
      expect(refused.code, refused.stderr).toBe(7)
      expect(refused.stderr).toMatch(/wrong passphrase/)
      expect(refused.stderr.trim().split('\n')).toHaveLength(1)
      expect((await keyIds()).map((k) => k.keyId)).toEqual([second.keyId])
      expect(await ok(['cat', file], { BFS_PASSWORD: 'battery staple' })).toBe(CONTENT.repeat(2000))
      // the last key is never removed
      const last = await run(['key', 'remove', second.keyId], { BFS_PASSWORD: 'battery staple' })
      expect(last.code).toBe(1)
      expect(last.stderr).toMatch(/last key/)
      // and back: the first passphrase added again, the second removed with it
      await ok(['key', 'add'], { BFS_PASSWORD: 'battery staple', BFS_NEW_PASSWORD: 'correct horse' })
      await ok(['key', 'remove', second.keyId])
      expect((await run(['ls', 'gen2'], { BFS_PASSWORD: 'battery staple' })).code).toBe(7)
      expect(await ok(['cat', file])).toBe(CONTENT.repeat(2000))
      const v = await run(['verify', '--all'])
      expect(v.code, v.stdout + v.stderr).toBe(0)
    })

    it("the bucket's object names and bytes hold no file name, group name or content (the listing is the service's own)", async () => {
      // the checks can fail: an unencrypted repository's group is found by both (its name is an object's, its pattern in the clear)
      const plain = `${prefix}-plain`
      const p = await bfs(['init'], { repo: `${repo}-plain`, env: { ...creds, BFS_S3_SPOOL: spool, BFS_CACHE_DIR: path.join(work, 'cache-plain') } })
      expect(p.code, p.stderr).toBe(0)
      const g = await bfs(['group', 'add', GROUP, '--include', `dir-${NAME}/**`], { repo: `${repo}-plain`, env: { ...creds, BFS_S3_SPOOL: spool, BFS_CACHE_DIR: path.join(work, 'cache-plain') } })
      expect(g.code, g.stderr).toBe(0)
      expect((await objects(plain)).filter((n) => n.includes(GROUP))).toEqual([`groups/${GROUP}`])
      expect((await getObject(`groups/${GROUP}`, plain)).includes(Buffer.from(NAME))).toBe(true)
      const names = await objects()
      expect(names.some((n) => n.startsWith('keys/'))).toBe(true)
      expect(names.filter((n) => n.startsWith('groups/')).map((n) => n.slice(7))).toEqual([expect.stringMatching(/^[0-9a-f]{32}$/)])
      expect(names.some((n) => /\/unit-\d{8}$/.test(n))).toBe(true)
      for (const needle of [NAME, GROUP, 'QUUX', 'PLUGH', 'hello', 'seq.txt']) expect(names.filter((n) => n.includes(needle)), needle).toEqual([])
      // every object's bytes (a few MB): the file's and group's names, the file's content, a plain name of the tree
      const needles = [NAME, GROUP, CONTENT, 'hello.txt', 'deep.txt', 'hello world'].map((s) => Buffer.from(s))
      for (const n of names) {
        const b = await getObject(n)
        for (const needle of needles) expect(b.includes(needle), `${n} holds ${needle.toString()}`).toBe(false)
      }
    })

    it('a flipped byte in a unit on S3 is found: verify exit 4 (authentication failed), the other objects still read', async () => {
      const unit = (await objects()).find((n) => /^gens\/00000001\/unit-\d{8}$/.test(n))!
      const b = await getObject(unit)
      b[200] = b[200]! ^ 0x10
      await putObject(unit, b)
      const v = await run(['verify', '1'])
      expect(v.code, v.stdout + v.stderr).toBe(4)
      expect(v.stdout + v.stderr).toMatch(/authentication failed/)
      expect(v.stderr).not.toMatch(/\n\s+at /)
      expect((await run(['ls', 'latest'])).code).toBe(0)
    })
  })
}
