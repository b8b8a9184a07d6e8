/**
 * The S3 store (issue 18) against a real S3 service: `make test-s3` brings up a one-node Ceph
 * RGW (.ci/ceph-up.sh) and sets S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY. Without
 * S3_ENDPOINT every test here is skipped, and says so.
 */
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { S3Store, parseS3Url, findCredentials } from '../src/store/s3.js'
import { openStore } from '../src/store/open.js'
import type { Store } from '../src/store/store.js'
import { describeStore, storeError } from './store-conformance.js'
import { ROOT, tmpdir } from './helpers.js'

const ENDPOINT = process.env.S3_ENDPOINT
const BUCKET = process.env.S3_BUCKET ?? 'bfs-test'
if (ENDPOINT) {
  process.env.AWS_ACCESS_KEY_ID = process.env.S3_ACCESS_KEY ?? process.env.AWS_ACCESS_KEY_ID
  process.env.AWS_SECRET_ACCESS_KEY = process.env.S3_SECRET_KEY ?? process.env.AWS_SECRET_ACCESS_KEY
}
const work = tmpdir('bfs-s3-')
const spoolDir = path.join(work, 'spool')
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))
const run = `t${Date.now().toString(36)}${process.pid}`
let n = 0

/** A store on a fresh prefix; small multipart sizes so that the suite's 16 and 20 MiB puts go multipart. */
const make = (o: { prefix?: string; bucket?: string; endpoint?: string; maxAttempts?: number } = {}): S3Store =>
  new S3Store({ endpoint: o.endpoint ?? ENDPOINT!, bucket: o.bucket ?? BUCKET, prefix: o.prefix ?? `${run}/s${n++}` }, { multipartThreshold: 8 << 20, partSize: 5 << 20, spoolDir, maxAttempts: o.maxAttempts })

/** A separate Node process that stages and writes `key` and exits without committing: a killed writer's litter. */
function litterFromDeadProcess(s: Store, key: string): Promise<void> {
  const code = `
    const { openStore } = await import(${JSON.stringify('file://' + path.join(ROOT, 'dist/store/open.js'))})
    const s = openStore(JSON.parse(process.argv[1]))
    const st = await s.stage(${JSON.stringify(key)})
    await s.writeStaged(st, [Buffer.from('half a unit')])
    process.exit(0)`
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', code, JSON.stringify(s.describe())], { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    child.stderr.on('data', (b: Buffer) => (err += b))
    child.on('close', (c) => (c === 0 ? resolve() : reject(new Error(`litter writer exited ${c}: ${err}`))))
  })
}

describe('parseS3Url', () => {
  it('splits endpoint, bucket and prefix; refuses what is not one, in one line', () => {
    expect(parseS3Url('s3:http://127.0.0.1:17480/bucket/a/b')).toEqual({ endpoint: 'http://127.0.0.1:17480', bucket: 'bucket', prefix: 'a/b' })
    expect(parseS3Url('s3:https://s3.example.com/my-bucket')).toEqual({ endpoint: 'https://s3.example.com', bucket: 'my-bucket', prefix: '' })
    expect(parseS3Url('s3:https://h:9000/bkt/repo/')).toEqual({ endpoint: 'https://h:9000', bucket: 'bkt', prefix: 'repo' })
    for (const bad of ['s3:ftp://h/b', 's3://b/p', 's3:http://h', 's3:http://h/', 's3:http://h/B_ad', 's3:http://h/bkt/a//b', 's3:http://h/bkt/../x', 's3:http://h/bkt/sp ace']) {
      expect(() => parseS3Url(bad), bad).toThrow(TypeError)
      try {
        parseS3Url(bad)
      } catch (e) {
        expect((e as Error).message).not.toContain('\n')
      }
    }
  })

  it('credentials: the environment first, then the credentials file and its profile; a clear line without', () => {
    const f = path.join(work, 'credentials')
    fs.mkdirSync(work, { recursive: true })
    fs.writeFileSync(f, '[default]\naws_access_key_id = AK1\naws_secret_access_key = SK1\n\n[profile other]\naws_access_key_id=AK2\naws_secret_access_key=SK2 # comment\n')
    expect(findCredentials({ AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 'b', AWS_SHARED_CREDENTIALS_FILE: f })).toEqual({ accessKeyId: 'a', secretAccessKey: 'b', sessionToken: undefined })
    expect(findCredentials({ AWS_SHARED_CREDENTIALS_FILE: f })).toEqual({ accessKeyId: 'AK1', secretAccessKey: 'SK1', sessionToken: undefined })
    expect(findCredentials({ AWS_SHARED_CREDENTIALS_FILE: f, AWS_PROFILE: 'other' })).toEqual({ accessKeyId: 'AK2', secretAccessKey: 'SK2', sessionToken: undefined })
    expect(findCredentials({ AWS_SHARED_CREDENTIALS_FILE: f, AWS_PROFILE: 'none' })).toMatch(/^no S3 credentials: profile \[none\]/)
    expect(findCredentials({ AWS_SHARED_CREDENTIALS_FILE: path.join(work, 'missing') })).toMatch(/^no S3 credentials: set AWS_ACCESS_KEY_ID/)
  })
})

describe('S3 store without a service', () => {
  it('a service that accepts and never answers: each attempt times out, then one line says so', async () => {
    const conns: net.Socket[] = []
    const srv = net.createServer((c) => void conns.push(c)) // reads the request, answers nothing
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
    const keys = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY }
    process.env.AWS_ACCESS_KEY_ID ||= 'AKIDEXAMPLE'
    process.env.AWS_SECRET_ACCESS_KEY ||= 'secret'
    try {
      const port = (srv.address() as net.AddressInfo).port
      const s = new S3Store({ endpoint: `http://127.0.0.1:${port}`, bucket: 'b-silent', prefix: '' }, { requestTimeoutMs: 500, maxAttempts: 2, spoolDir })
      const e = await storeError(s.get('k'))
      expect(e.code).toBe('EIO')
      expect(e.message).toBe(`s3:http://127.0.0.1:${port}/b-silent/k: cannot read: no answer from http://127.0.0.1:${port} within 500 ms (2 attempts)`)
      expect(e.message).not.toContain('\n')
      expect(conns.length).toBe(2) // both attempts reached it
    } finally {
      process.env.AWS_ACCESS_KEY_ID = keys.id
      process.env.AWS_SECRET_ACCESS_KEY = keys.secret
      if (keys.id === undefined) delete process.env.AWS_ACCESS_KEY_ID
      if (keys.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY
      for (const c of conns) c.destroy()
      await new Promise((r) => srv.close(r))
    }
  })
})

if (!ENDPOINT) {
  describe('S3 store against a real S3 service', () => {
    it.skip('SKIPPED: S3_ENDPOINT is not set (make test-s3 runs these against a local Ceph RGW)', () => undefined)
  })
} else {
  beforeAll(async () => {
    await make({ prefix: 'x' }).createBucket()
  })

  describeStore('s3 (Ceph RGW)', {
    make: async () => make(),
    destroy: async (s) => {
      await s.remove('', { recursive: true })
      ;(s as S3Store).close()
    },
    makeLitter: litterFromDeadProcess,
    liveStagedSurvivesSweep: true,
    workerWrites: true,
    localFd: false,
    manyKeys: 2500, // more than two pages of ListObjectsV2
    localRoots: (s) => [(s as S3Store).spool],
  })

  describe('S3 store specifics', () => {
    it('openStore(describe()) is the same store (another process finds the same blobs)', async () => {
      const s = make()
      await s.put('a/b', Buffer.from('hello'))
      const t = openStore(s.describe())
      expect((await t.get('a/b')).toString()).toBe('hello')
      expect(t.where('a/b')).toBe(s.where('a/b'))
      expect(s.where('a/b')).toBe(`s3:${ENDPOINT}/${BUCKET}/${s.location.prefix}/a/b`)
      await s.remove('', { recursive: true })
    })

    it("two stores on one bucket and prefix (two hosts' views): 'exclusive' and staged commits — exactly one wins", async () => {
      const prefix = `${run}/shared`
      const a = make({ prefix })
      const b = make({ prefix })
      for (let round = 0; round < 3; round++) {
        const r = await Promise.allSettled([a.put(`lock${round}`, Buffer.from('a'), { mode: 'exclusive' }), b.put(`lock${round}`, Buffer.from('b'), { mode: 'exclusive' })])
        expect(r.filter((x) => x.status === 'fulfilled').length).toBe(1)
        const sa = await a.stage(`gen${round}`)
        const sb = await b.stage(`gen${round}`)
        await a.writeStaged(sa, [Buffer.from('from a')])
        await b.writeStaged(sb, [Buffer.from('from b')])
        const c = await Promise.allSettled([a.commitStaged(sa), b.commitStaged(sb)])
        expect(c.filter((x) => x.status === 'fulfilled').length).toBe(1)
        const lost = c.find((x) => x.status === 'rejected') as PromiseRejectedResult
        expect(lost.reason.code).toBe('EEXIST')
      }
      expect(fs.readdirSync(a.spool).filter((f) => f.startsWith('gen'))).toEqual([])
      await a.remove('', { recursive: true })
    })

    it('an opened blob replaced underneath fails its next read (If-Match) instead of mixing versions', async () => {
      const s = make()
      await s.put('k', Buffer.alloc(1000, 1))
      const r = await s.open('k')
      expect((await r.read({ offset: 0, length: 10 })).equals(Buffer.alloc(10, 1))).toBe(true)
      await s.put('k', Buffer.alloc(1000, 2), { mode: 'replace' })
      const e = await storeError(r.read({ offset: 10, length: 10 }))
      expect(e.code).toBe('EIO')
      expect(e.message).toMatch(/changed since it was opened/)
      const r2 = s.sync.openSync('k')
      await s.put('k', Buffer.alloc(1000, 3), { mode: 'replace' })
      expect((await storeError(() => r2.readSync({ offset: 0, length: 1 }))).message).toMatch(/changed since it was opened/)
      await s.remove('', { recursive: true })
      s.close()
    })

    it('a missing bucket, a wrong secret and an unreachable endpoint are one-line errors that say so', async () => {
      const nb = make({ bucket: 'bfs-no-such-bucket' })
      for (const p of [() => nb.get('k'), () => nb.has('k'), () => nb.put('k', Buffer.from('x')), () => nb.list('')]) {
        const e = await storeError(p)
        expect(e.message).toMatch(/no bucket "bfs-no-such-bucket" at http/)
        expect(e.message).not.toContain('\n')
      }
      const secret = process.env.AWS_SECRET_ACCESS_KEY
      process.env.AWS_SECRET_ACCESS_KEY = 'wrong'
      try {
        const e = await storeError(make().put('k', Buffer.from('x')))
        expect(e.message).toMatch(/access denied: the signature does not match/)
        expect((await storeError(make().has('k'))).message).toMatch(/access denied/)
      } finally {
        process.env.AWS_SECRET_ACCESS_KEY = secret
      }
      const key = process.env.AWS_ACCESS_KEY_ID
      process.env.AWS_ACCESS_KEY_ID = 'NOSUCHKEY'
      try {
        expect((await storeError(make().list(''))).message).toMatch(/access denied: the access key is not known/)
      } finally {
        process.env.AWS_ACCESS_KEY_ID = key
      }
      // a port nobody listens on: retried, then one line naming the endpoint
      const srv = net.createServer()
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
      const port = (srv.address() as net.AddressInfo).port
      await new Promise((r) => srv.close(r))
      const e = await storeError(make({ endpoint: `http://127.0.0.1:${port}`, maxAttempts: 2 }).get('k'))
      expect(e.message).toMatch(new RegExp(`cannot reach http://127.0.0.1:${port} \\(ECONNREFUSED`))
      expect(e.message).not.toContain('\n')
      // and through the sync face
      const sy = make({ bucket: 'bfs-no-such-bucket' })
      expect((await storeError(() => sy.sync.hasSync('k'))).message).toMatch(/no bucket/)
      sy.close()
    })

    it('retries: a 503 and a reset connection are retried; a conditional PUT whose answer was lost is still ours (not EEXIST)', async () => {
      // a proxy in front of RGW that answers the next `fail503` requests with 503, and cuts the
      // next `dropAnswers` connections after RGW has answered (the request landed, the answer is lost)
      const up = new URL(ENDPOINT!)
      const ctl = { fail503: 0, dropAnswers: 0, seen503: 0, dropped: 0 }
      const conns = new Set<net.Socket>()
      const proxy = net.createServer((c) => {
        conns.add(c)
        c.on('close', () => conns.delete(c))
        if (ctl.fail503 > 0) {
          ctl.fail503--
          ctl.seen503++
          c.once('data', () => c.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'))
          return
        }
        const u = net.connect(Number(up.port), up.hostname)
        c.pipe(u)
        u.on('data', (d) => {
          // the next answer on any connection (earlier ones are complete: the store waits for them)
          if (ctl.dropAnswers > 0) {
            ctl.dropAnswers--
            ctl.dropped++
            c.destroy()
            u.destroy()
          } else if (!c.destroyed) c.write(d)
        })
        u.on('end', () => c.end())
        u.on('error', () => c.destroy())
        c.on('error', () => u.destroy())
      })
      await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r))
      try {
        const s = make({ endpoint: `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}` })
        ctl.fail503 = 2
        await s.put('a', Buffer.from('one'))
        expect(ctl.seen503).toBe(2)
        expect((await s.get('a')).toString()).toBe('one')
        ctl.dropAnswers = 1
        await s.put('b', Buffer.from('mine'), { mode: 'exclusive' }) // landed, answer lost, retried: 412 — but the bytes are ours
        expect(ctl.dropped).toBe(1)
        expect((await s.get('b')).toString()).toBe('mine')
        // someone else's object under the key is still EEXIST after a lost answer
        await s.put('c', Buffer.from('theirs'))
        ctl.dropAnswers = 1
        expect((await storeError(s.put('c', Buffer.from('mine'), { mode: 'exclusive' }))).code).toBe('EEXIST')
        await s.remove('', { recursive: true })
      } finally {
        for (const c of conns) c.destroy() // the SDK's kept-alive connections, else close() waits for them
        await new Promise((r) => proxy.close(r))
      }
    })
  })
}
