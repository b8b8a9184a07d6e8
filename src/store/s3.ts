/**
 * The Store contract over an S3 bucket (issue 18; native-notes/store.md "S3"), with the
 * official AWS SDK for JavaScript v3, loaded on first use (the CLI bundle keeps it external:
 * a local repository never loads it).
 *
 * - keys are objects `<prefix>/<key>`; prefixes are listed with ListObjectsV2 + Delimiter,
 *   paginated, and sorted (direct children, blobs and sub-prefixes);
 * - 'create' and 'exclusive' puts are `PUT If-None-Match: *` (412 → EEXIST: atomic against
 *   concurrent creators, on any host); 'replace' a plain PUT. Big 'create'/'replace' puts
 *   are multipart (parts of partSize, uploaded in parallel); 'exclusive' is always one PUT
 *   (up to 5 GiB) since not every S3 honours a conditional CompleteMultipartUpload;
 * - an opened blob is read with `GET Range` + `If-Match: <etag at open>`: a blob replaced
 *   since it was opened fails (EIO) instead of mixing versions;
 * - staged writes go to a local spool file (the token names it, so a worker thread writes it
 *   synchronously without any network) and commitStaged uploads it conditionally;
 * - every request is retried on network errors, timeouts, 5xx and throttling with
 *   exponential backoff and full jitter; errors are one-line StoreErrors (auth, network,
 *   missing bucket named as such);
 * - the synchronous face is a worker thread that runs this same store, the caller blocking
 *   in Atomics.wait (store/s3-sync.ts): repository metadata code is synchronous.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import type { S3Client as S3ClientT } from '@aws-sdk/client-s3'
import { pidAlive } from '../os/process.js'
import {
  checkInBlob, checkKey, checkRange, partsOf, StoreError, TEMP_MARK,
  type BlobReader, type BlobStat, type ByteRange, type PutOptions, type Staged, type Store, type S3Location, type S3Options, type StoreDescription, type StoreErrorCode, type SyncStore,
} from './store.js'
import { S3SyncFace } from './s3-sync.js'

type SDK = typeof import('@aws-sdk/client-s3')

export type { S3Location, S3Options }

export type S3Description = Extract<StoreDescription, { kind: 's3' }>

import { parseS3Url } from './s3-url.js'
export { isS3Url, parseS3Url } from './s3-url.js'

const DEFAULTS = { multipartThreshold: 64 << 20, partSize: 16 << 20, maxAttempts: 6, connectTimeoutMs: 5000, requestTimeoutMs: 30_000 }
/** A multipart upload initiated longer ago than this is a dead writer's litter (sweep aborts it). */
const STALE_UPLOAD_MS = 3600_000
const PART_CONCURRENCY = 4

let sdkP: Promise<SDK> | null = null
/**
 * The SDK, loaded on first use with require (its CommonJS build): the CLI bundle runs as a
 * vm.Script with a code cache (cli/load.cjs), where a dynamic import() has no loader.
 */
const sdk = (): Promise<SDK> => (sdkP ??= Promise.resolve().then(requireSdk))

function requireSdk(): SDK {
  // the SDK warns on stderr, once per process, that its releases after January 2027 need Node 22: not bfs's users' business
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
  return createRequire(import.meta.url)('@aws-sdk/client-s3') as SDK
}

/**
 * The SDK loaded now, synchronously (~0.15 s of a core), unless it is already: a command on S3
 * loads it in this thread anyway; loaded while the sync face's request thread loads its own
 * (S3Store.startEarly), the two loads overlap.
 */
export function loadSdkNow(): void {
  sdkP ??= Promise.resolve(requireSdk())
}

interface Credentials {
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string
}

/**
 * Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), else from
 * the shared credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials), profile
 * AWS_PROFILE or 'default'. Nothing else (no instance metadata: a missing key is one clear
 * line at once, not a wait for a metadata service).
 */
export function findCredentials(env: NodeJS.ProcessEnv = process.env): Credentials | string {
  if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
    return { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, sessionToken: env.AWS_SESSION_TOKEN || undefined }
  }
  const file = env.AWS_SHARED_CREDENTIALS_FILE || path.join(env.HOME || os.homedir(), '.aws', 'credentials')
  const profile = env.AWS_PROFILE || 'default'
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch {
    return `no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or write them to ${file}`
  }
  let cur = ''
  const kv: Record<string, string> = {}
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim()
    const sec = /^\[\s*(?:profile\s+)?([^\]]+?)\s*\]$/.exec(line)
    if (sec) cur = sec[1]!
    else if (cur === profile) {
      const m = /^([A-Za-z_]+)\s*=\s*(.*)$/.exec(line)
      if (m) kv[m[1]!.toLowerCase()] = m[2]!
    }
  }
  if (!kv.aws_access_key_id || !kv.aws_secret_access_key) return `no S3 credentials: profile [${profile}] of ${file} has no aws_access_key_id and aws_secret_access_key`
  return { accessKeyId: kv.aws_access_key_id, secretAccessKey: kv.aws_secret_access_key, sessionToken: kv.aws_session_token || undefined }
}

/** What a failed request was, for the retry loop and the message. */
interface Failure {
  status: number | undefined
  code: string
  message: string
  retryable: boolean
  /** The request may have landed (no response seen). */
  ambiguous: boolean
}

const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'EADDRNOTAVAIL'])

function classify(err: unknown): Failure {
  const e = err as { name?: string; code?: string; Code?: string; message?: string; $metadata?: { httpStatusCode?: number }; $response?: { statusCode?: number }; cause?: unknown }
  const status = e.$metadata?.httpStatusCode ?? e.$response?.statusCode
  const sysCode = e.code ?? (e.cause as { code?: string } | undefined)?.code
  if (status === undefined) {
    const msg = e.message ?? ''
    // smithy's two timeouts: no connection within connectionTimeout, no answer within requestTimeout
    const code = /without establishing a connection/i.test(msg) ? 'connect-timeout'
      : /requestTimeout|timed out/i.test(msg) || e.name === 'TimeoutError' ? 'timeout'
        : sysCode && NET_CODES.has(sysCode) ? sysCode : sysCode ?? e.name ?? 'Error'
    const net = code === 'timeout' || code === 'connect-timeout' || NET_CODES.has(code) || /socket hang up|ECONNRESET|EPIPE/.test(e.message ?? '')
    return { status, code, message: e.message ?? String(err), retryable: net, ambiguous: net }
  }
  const code = e.Code ?? e.name ?? `HTTP ${status}`
  const throttled = status === 429 || status === 503 || code === 'SlowDown' || code === 'RequestTimeout' || code === 'RequestTimeTooSkewed'
  return { status, code, message: e.message ?? code, retryable: status >= 500 || throttled, ambiguous: status >= 500 }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/**
 * BFS_S3_LOG=FILE: every request sent (each attempt) is appended to FILE as one line,
 * `<Command> <key> [<Range>] t=<start, ms since the epoch> ms=<duration>`, once answered or
 * failed — a debugging aid, and how the tests count the GETs a command
 * made (every process and thread appends to the same file).
 */
const REQUEST_LOG = process.env.BFS_S3_LOG || ''
function logRequest(cmd: object, key: string, t0: number): void {
  const input = (cmd as { input?: { Range?: string } }).input
  const t1 = performance.now()
  try {
    fs.appendFileSync(REQUEST_LOG, `${cmd.constructor.name.replace(/Command$/, '')} ${key || '-'}${input?.Range ? ' ' + input.Range : ''} t=${(performance.timeOrigin + t0).toFixed(1)} ms=${(t1 - t0).toFixed(1)}\n`)
  } catch {
    // a debugging aid: never fails a request
  }
}

/** An opened S3 object: its size and etag at open; reads are GET Range + If-Match. */
class S3Blob implements BlobReader {
  private closed = false
  readonly localFd = undefined
  constructor(
    private readonly s: S3Store,
    readonly key: string,
    readonly sizeBytes: number,
    readonly etag: string,
  ) {}

  async read(r: ByteRange, into?: Buffer): Promise<Buffer> {
    const where = this.s.where(this.key)
    checkInBlob(this.key, where, r, this.sizeBytes)
    if (this.closed) throw new StoreError('EIO', this.key, `${where}: read after close`)
    if (into && into.length < r.length) throw new TypeError(`buffer of ${into.length} bytes for a read of ${r.length}`)
    const b = r.length === 0 ? Buffer.alloc(0) : await this.s.getRange(this.key, r, this.etag)
    if (!into) return b
    b.copy(into, 0, 0, r.length)
    return into.subarray(0, r.length)
  }

  async close(): Promise<void> {
    this.closed = true
  }
}

/** The Store contract over `bucket/prefix` of an S3 endpoint (see the top of this file). */
export class S3Store implements Store {
  private clientP: Promise<S3ClientT> | null = null
  private bucketChecked = false
  readonly opts: Required<Omit<S3Options, 'spoolDir'>>
  /** This location's spool directory (staged writes). */
  readonly spool: string
  private syncFace: S3SyncFace | null = null

  constructor(
    readonly location: S3Location,
    private readonly options: S3Options = {},
  ) {
    this.opts = { ...DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([k, v]) => v !== undefined && k !== 'spoolDir')) } as Required<Omit<S3Options, 'spoolDir'>>
    if (this.opts.partSize < 5 << 20) throw new TypeError('S3 multipart parts must be at least 5 MiB')
    const base = options.spoolDir ?? process.env.BFS_S3_SPOOL ?? path.join(os.tmpdir(), `bfs-s3-spool-${process.getuid?.() ?? 0}`)
    const id = createHash('sha256').update(`${location.endpoint}/${location.bucket}/${location.prefix}`).digest('hex').slice(0, 16)
    this.spool = path.join(base, `${location.bucket}-${id}`)
  }

  static fromUrl(url: string, options: S3Options = {}): S3Store {
    return new S3Store(parseS3Url(url), options)
  }

  get sync(): SyncStore {
    return (this.syncFace ??= new S3SyncFace(this))
  }

  /**
   * A command's store (storeAt): its sync face's request thread starts now and loads its SDK
   * while this thread loads its own, instead of this thread waiting for the request thread's
   * load at its first synchronous call (the config, ~0.17 s) and loading its own after.
   */
  startEarly(): void {
    ;(this.sync as S3SyncFace).bridge()
    loadSdkNow()
  }

  /** Loads the SDK and makes the client now (the request thread's start, while its first call comes). */
  async preload(): Promise<void> {
    await this.client()
  }

  /** Stops the synchronous face's worker thread, if one was started (the store stays usable). */
  close(): void {
    this.syncFace?.close()
    this.syncFace = null
  }

  /** The object name of a key. */
  objectKey(key: string): string {
    return this.location.prefix === '' ? key : key === '' ? this.location.prefix : `${this.location.prefix}/${key}`
  }

  where(key: string): string {
    const { endpoint, bucket } = this.location
    return `s3:${endpoint}/${bucket}/${this.objectKey(key)}`.replace(/\/$/, '')
  }

  /** The spool directory (made here if missing: callers stat what they are given). */
  localRoots(): string[] {
    try {
      fs.mkdirSync(this.spool, { recursive: true, mode: 0o700 })
    } catch {
      // reported by the first staged write
    }
    return [this.spool]
  }

  describe(): S3Description {
    return { kind: 's3', location: { ...this.location }, options: { ...this.options, spoolDir: path.dirname(this.spool) } }
  }

  private client(): Promise<S3ClientT> {
    return (this.clientP ??= (async () => {
      const creds = findCredentials()
      if (typeof creds === 'string') throw new StoreError('EIO', '', `${this.where('')}: ${creds}`)
      const { S3Client } = await sdk()
      return new S3Client({
        endpoint: this.location.endpoint,
        region: this.location.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
        forcePathStyle: true,
        credentials: creds,
        maxAttempts: 1, // retries are ours (send): the SDK's would retry a conditional PUT blindly
        requestChecksumCalculation: 'WHEN_REQUIRED', // else stream bodies go aws-chunked, which RGW answers 411
        responseChecksumValidation: 'WHEN_REQUIRED',
        // throwOnRequestTimeout: without it this SDK only logs a warning when requestTimeout passes, and waits on
        requestHandler: { connectionTimeout: this.opts.connectTimeoutMs, requestTimeout: this.opts.requestTimeoutMs, throwOnRequestTimeout: true },
      })
    })().catch((err) => {
      this.clientP = null
      throw err
    }))
  }

  /**
   * Sends a command with retries (exponential backoff, full jitter: 0..min(5 s, 100 ms·2^n)).
   * `onFail` sees every failure first and may return a value to resolve with instead (a 404
   * meaning "absent", a 412 meaning EEXIST) or throw; otherwise retryable failures are retried
   * and the last one is thrown as a StoreError.
   */
  async send<T>(key: string, doing: string, make: (s: SDK) => object, onFail?: (f: Failure, attempt: number, prior: Failure[]) => T | undefined): Promise<T> {
    const client = await this.client()
    const s = await sdk()
    const prior: Failure[] = []
    for (let attempt = 0; ; attempt++) {
      try {
        const cmd = make(s)
        if (!REQUEST_LOG) return (await client.send(cmd as never)) as T
        const t0 = performance.now()
        try {
          return (await client.send(cmd as never)) as T
        } finally {
          logRequest(cmd, key, t0)
        }
      } catch (err) {
        if (err instanceof StoreError) throw err
        const f = classify(err)
        const v = onFail?.(f, attempt, prior)
        if (v !== undefined) return v
        if (!f.retryable || attempt + 1 >= this.opts.maxAttempts) throw await this.fail(f, key, doing, err)
        prior.push(f)
        await sleep(Math.random() * Math.min(5000, 100 * 2 ** attempt))
      }
    }
  }

  /** A failure as a one-line StoreError naming where(key). */
  private async fail(f: Failure, key: string, doing: string, cause: unknown): Promise<StoreError> {
    const w = this.where(key)
    const { endpoint, bucket } = this.location
    const mk = (code: StoreErrorCode, msg: string): StoreError => new StoreError(code, key, `${w}: cannot ${doing}: ${msg}`, { cause })
    if (f.status === undefined) {
      const tries = `${this.opts.maxAttempts} attempt${this.opts.maxAttempts > 1 ? 's' : ''}`
      if (f.code === 'timeout') return mk('EIO', `no answer from ${endpoint} within ${this.opts.requestTimeoutMs} ms (${tries})`)
      if (f.code === 'connect-timeout') return mk('EIO', `cannot reach ${endpoint} (no connection within ${this.opts.connectTimeoutMs} ms, ${tries})`)
      return mk('EIO', `cannot reach ${endpoint} (${f.code}${f.message && !f.message.includes(f.code) ? ': ' + f.message.split('\n')[0] : ''}, ${tries})`)
    }
    switch (f.code) {
      case 'NoSuchBucket':
        return mk('EIO', `no bucket ${JSON.stringify(bucket)} at ${endpoint}`)
      case 'NoSuchKey':
        return mk('ENOENT', 'no such blob')
      case 'InvalidAccessKeyId':
        return mk('EIO', 'access denied: the access key is not known to the S3 service (AWS_ACCESS_KEY_ID or the credentials file)')
      case 'SignatureDoesNotMatch':
        return mk('EIO', 'access denied: the signature does not match (a wrong AWS_SECRET_ACCESS_KEY?)')
      case 'AccessDenied':
        return mk('EIO', `access denied to bucket ${JSON.stringify(bucket)} (${f.code})`)
      case 'QuotaExceeded':
        return mk('EDQUOT', 'quota exceeded')
      case 'InsufficientCapacity':
      case 'XMinioStorageFull':
        return mk('ENOSPC', 'the object store is full')
    }
    if (f.status === 404) {
      // a HEAD's 404 has no body: a missing bucket looks like a missing key
      if (await this.bucketMissing()) return mk('EIO', `no bucket ${JSON.stringify(bucket)} at ${endpoint}`)
      return mk('ENOENT', 'no such blob')
    }
    if (f.status === 403) return mk('EIO', `access denied (HTTP 403${f.code && !/^HTTP/.test(f.code) && f.code !== 'Forbidden' ? ', ' + f.code : ''}: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)`)
    if (f.status === 416) return mk('TRUNCATED', 'the range is past the end')
    return mk('EIO', `${f.code} (HTTP ${f.status})${f.message && f.message !== f.code && f.message !== 'UnknownError' ? ': ' + f.message.split('\n')[0] : ''}`)
  }

  /** True if the bucket is missing (checked once: after a HEAD's 404, which cannot tell). */
  private async bucketMissing(): Promise<boolean> {
    if (this.bucketChecked) return false
    try {
      await (await this.client()).send(new (await sdk()).HeadBucketCommand({ Bucket: this.location.bucket }))
      this.bucketChecked = true
      return false
    } catch (err) {
      return classify(err).status === 404
    }
  }

  /** HEAD: size and etag, or undefined if absent. */
  async head(key: string): Promise<{ sizeBytes: number; etag: string; mtimeMs?: number } | undefined> {
    let missing = false
    const r = await this.send<{ ContentLength?: number; ETag?: string; LastModified?: Date } | undefined>(key, 'stat', (s) => new s.HeadObjectCommand({ Bucket: this.location.bucket, Key: this.objectKey(key) }), (f) => {
      if (f.status === 404) missing = true
      return undefined
    }).catch(async (err: StoreError) => {
      if (missing && err.code === 'ENOENT') return undefined
      throw err
    })
    if (!r) return undefined
    return { sizeBytes: r.ContentLength ?? 0, etag: r.ETag ?? '', mtimeMs: r.LastModified?.getTime() }
  }

  /** `length` bytes at `offset` (If-Match `etag` when given: EIO if the object changed). */
  async getRange(key: string, r: ByteRange, etag?: string): Promise<Buffer> {
    const res = await this.send<{ Body?: { transformToByteArray(): Promise<Uint8Array> } }>(key, 'read', (s) =>
      new s.GetObjectCommand({ Bucket: this.location.bucket, Key: this.objectKey(key), Range: `bytes=${r.offset}-${r.offset + r.length - 1}`, IfMatch: etag }),
    (f) => {
      if (f.status === 412) throw new StoreError('EIO', key, `${this.where(key)}: changed since it was opened (replaced or removed): reopen it`, { changed: true })
      return undefined
    })
    const b = await this.body(res.Body, key)
    if (b.length < r.length) throw new StoreError('TRUNCATED', key, `${this.where(key)}: range ${r.offset}+${r.length} is past the end (${b.length} bytes there)`)
    return b
  }

  /**
   * GET of a range, with what the answer says of the whole object: its size (Content-Range)
   * and ETag. A range past the end is clamped by S3 (the bytes there are returned); `etag`:
   * If-Match (EIO if the object changed).
   */
  async getRangeMeta(key: string, r: ByteRange | { suffix: number }, etag?: string): Promise<{ body: Buffer; offset: number; sizeBytes: number; etag: string }> {
    const range = 'suffix' in r ? `bytes=-${r.suffix}` : `bytes=${r.offset}-${r.offset + r.length - 1}`
    const res = await this.send<{ Body?: { transformToByteArray(): Promise<Uint8Array> }; ContentRange?: string; ContentLength?: number; ETag?: string }>(key, 'read', (s) =>
      new s.GetObjectCommand({ Bucket: this.location.bucket, Key: this.objectKey(key), Range: range, IfMatch: etag }),
    (f) => {
      if (f.status === 412) throw new StoreError('EIO', key, `${this.where(key)}: changed while it was read (replaced or removed): reopen it`, { changed: true })
      return undefined
    })
    const body = await this.body(res.Body, key)
    const cr = /(\d+)-\d+\/(\d+)\s*$/.exec(res.ContentRange ?? '')
    return { body, offset: cr ? Number(cr[1]) : 0, sizeBytes: cr ? Number(cr[2]) : body.length, etag: res.ETag ?? '' }
  }

  private async body(body: { transformToByteArray(): Promise<Uint8Array> } | undefined, key: string): Promise<Buffer> {
    if (!body) return Buffer.alloc(0)
    try {
      const u = await body.transformToByteArray()
      return Buffer.from(u.buffer, u.byteOffset, u.byteLength)
    } catch (err) {
      throw new StoreError('EIO', key, `${this.where(key)}: cannot read: the response broke off (${(err as Error).message})`, { cause: err })
    }
  }

  async get(key: string, range?: ByteRange): Promise<Buffer> {
    checkKey(key)
    if (range) {
      checkRange(range)
      if (range.length === 0) {
        const st = await this.stat(key)
        checkInBlob(key, this.where(key), range, st.sizeBytes)
        return Buffer.alloc(0)
      }
      return this.getRange(key, range)
    }
    const res = await this.send<{ Body?: { transformToByteArray(): Promise<Uint8Array> } }>(key, 'read', (s) => new s.GetObjectCommand({ Bucket: this.location.bucket, Key: this.objectKey(key) }))
    return this.body(res.Body, key)
  }

  async open(key: string): Promise<S3Blob> {
    checkKey(key)
    const h = await this.head(key)
    if (!h) throw new StoreError('ENOENT', key, `${this.where(key)}: cannot open: no such blob`)
    return new S3Blob(this, key, h.sizeBytes, h.etag)
  }

  async has(key: string): Promise<boolean> {
    checkKey(key)
    return (await this.head(key)) !== undefined
  }

  async stat(key: string): Promise<BlobStat> {
    checkKey(key)
    const h = await this.head(key)
    if (!h) throw new StoreError('ENOENT', key, `${this.where(key)}: cannot stat: no such blob`)
    return { sizeBytes: h.sizeBytes, mtimeMs: h.mtimeMs }
  }

  async put(key: string, data: Uint8Array | readonly Uint8Array[], opts: PutOptions = {}): Promise<void> {
    checkKey(key)
    await this.upload(key, Buffer.concat(partsOf(data)), opts.mode ?? 'create')
  }

  /** One object from `body`: conditional ('create', 'exclusive') or not, multipart when big (not 'exclusive'). */
  private async upload(key: string, body: Buffer, mode: 'create' | 'replace' | 'exclusive'): Promise<void> {
    if (mode !== 'exclusive' && body.length > this.opts.multipartThreshold) return this.multipart(key, body, mode)
    const cond = mode !== 'replace'
    const md5 = cond ? createHash('md5').update(body).digest('hex') : ''
    let won = false
    await this.send(key, 'write', (s) => new s.PutObjectCommand({ Bucket: this.location.bucket, Key: this.objectKey(key), Body: body, IfNoneMatch: cond ? '*' : undefined }), (f, _n, prior) => {
      if (f.status !== 412 || !cond) return undefined
      // a 412 after an attempt that may have landed: ours if the object holds our bytes
      if (prior.some((p) => p.ambiguous)) {
        won = true
        return null
      }
      throw this.exists(key, mode)
    })
    if (won) {
      const h = await this.head(key)
      if (!h || h.etag.replace(/"/g, '') !== md5) throw this.exists(key, mode)
    }
  }

  private exists(key: string, mode: string): StoreError {
    return new StoreError('EEXIST', key, mode === 'exclusive' ? `${this.where(key)}: exists (another writer created it first)` : `${this.where(key)}: refusing to overwrite a stored blob`)
  }

  /** A multipart upload of `body`, parts in parallel; aborted on failure. 'create' checks for the key before completing (and asks If-None-Match there, which some services honour). */
  private async multipart(key: string, body: Buffer, mode: 'create' | 'replace'): Promise<void> {
    const Bucket = this.location.bucket
    const Key = this.objectKey(key)
    if (mode === 'create' && (await this.head(key))) throw this.exists(key, mode)
    const { UploadId } = await this.send<{ UploadId?: string }>(key, 'write', (s) => new s.CreateMultipartUploadCommand({ Bucket, Key }))
    try {
      const n = Math.ceil(body.length / this.opts.partSize)
      const etags: string[] = new Array(n)
      let next = 0
      const worker = async (): Promise<void> => {
        while (next < n) {
          const i = next++
          const part = body.subarray(i * this.opts.partSize, Math.min(body.length, (i + 1) * this.opts.partSize))
          const r = await this.send<{ ETag?: string }>(key, 'write', (s) => new s.UploadPartCommand({ Bucket, Key, UploadId, PartNumber: i + 1, Body: part }))
          etags[i] = r.ETag ?? ''
        }
      }
      await Promise.all(Array.from({ length: Math.min(PART_CONCURRENCY, n) }, worker))
      if (mode === 'create' && (await this.head(key))) throw this.exists(key, mode)
      await this.send(key, 'write', (s) => new s.CompleteMultipartUploadCommand({
        Bucket, Key, UploadId, MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) }, IfNoneMatch: mode === 'create' ? '*' : undefined,
      }), (f) => {
        if (f.status === 412 && mode === 'create') throw this.exists(key, mode)
        return undefined
      })
      // (CompleteMultipartUpload's ETag is empty on RGW: nothing here needs it)
    } catch (err) {
      await this.send(key, 'abort an upload', (s) => new s.AbortMultipartUploadCommand({ Bucket, Key, UploadId })).catch(() => undefined)
      throw err
    }
  }

  // ---- staged writes: a local spool file, uploaded by commitStaged

  async stage(key: string): Promise<Staged> {
    checkKey(key)
    const name = `${key.replaceAll('/', '+')}${TEMP_MARK}${os.hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`
    return { token: `${key}\n${name}` }
  }

  /** The key and spool file of a staged write's token. */
  staged(s: Staged): { key: string; file: string } {
    const t = typeof s?.token === 'string' ? s.token : ''
    const i = t.indexOf('\n')
    const key = t.slice(0, i)
    const name = t.slice(i + 1)
    if (i < 0 || !name.startsWith(key.replaceAll('/', '+') + TEMP_MARK) || name.includes('/')) throw new TypeError(`not a staged-write token of this store: ${JSON.stringify(t)}`)
    checkKey(key)
    return { key, file: path.join(this.spool, name) }
  }

  async writeStaged(s: Staged, data: readonly Uint8Array[]): Promise<number> {
    return this.writeStagedLocal(s, data)
  }

  /** writeStaged, synchronously and without the network (also the sync face's). */
  writeStagedLocal(s: Staged, data: readonly Uint8Array[]): number {
    const { key, file } = this.staged(s)
    let fd: number
    try {
      fs.mkdirSync(this.spool, { recursive: true, mode: 0o700 })
      fd = fs.openSync(file, 'wx', 0o600)
    } catch (err) {
      throw new StoreError('EIO', key, `${this.where(key)}: cannot stage a write in ${this.spool}: ${(err as Error).message.split(', ')[0]}`, { cause: err })
    }
    let bytes = 0
    try {
      for (const p of data) {
        let off = 0
        while (off < p.length) off += fs.writeSync(fd, p, off, p.length - off)
        bytes += p.length
      }
    } catch (err) {
      fs.rmSync(file, { force: true })
      const e = err as NodeJS.ErrnoException
      throw new StoreError(e.code === 'ENOSPC' ? 'ENOSPC' : e.code === 'EDQUOT' ? 'EDQUOT' : 'EIO', key, `${this.where(key)}: cannot stage a write in ${this.spool}: ${e.message.split(', ')[0]}`, { cause: err })
    } finally {
      fs.closeSync(fd)
    }
    return bytes
  }

  async commitStaged(s: Staged): Promise<void> {
    const { key, file } = this.staged(s)
    let body: Buffer
    try {
      body = await fs.promises.readFile(file)
    } catch (err) {
      throw new StoreError('EIO', key, `${this.where(key)}: cannot commit a staged write: ${(err as Error).message.split(', ')[0]}`, { cause: err })
    }
    try {
      await this.upload(key, body, body.length > this.opts.multipartThreshold ? 'create' : 'exclusive')
    } finally {
      await fs.promises.rm(file, { force: true })
    }
  }

  async abortStaged(s: Staged): Promise<void> {
    await fs.promises.rm(this.staged(s).file, { force: true })
  }

  // ---- listing and removal

  /** Every object name under `objPrefix` (a ListObjectsV2 walk); with `delimiter`, the common prefixes too. */
  private async listObjects(key: string, objPrefix: string, delimiter: boolean, each: (names: string[], prefixes: string[]) => void | Promise<void>): Promise<void> {
    let token: string | undefined
    do {
      const r = await this.send<{ Contents?: { Key?: string }[]; CommonPrefixes?: { Prefix?: string }[]; IsTruncated?: boolean; NextContinuationToken?: string }>(key, 'list', (s) =>
        new s.ListObjectsV2Command({ Bucket: this.location.bucket, Prefix: objPrefix, Delimiter: delimiter ? '/' : undefined, ContinuationToken: token, MaxKeys: 1000 }))
      await each((r.Contents ?? []).map((c) => c.Key ?? ''), (r.CommonPrefixes ?? []).map((p) => p.Prefix ?? ''))
      token = r.IsTruncated ? r.NextContinuationToken : undefined
    } while (token)
  }

  /** The object prefix under which `prefix`'s children are ('' = the top). */
  private childPrefix(prefix: string): string {
    const o = this.objectKey(prefix)
    return o === '' ? '' : `${o}/`
  }

  async list(prefix: string): Promise<string[]> {
    checkKey(prefix, true)
    const op = this.childPrefix(prefix)
    const out: string[] = []
    await this.listObjects(prefix, op, true, (names, prefixes) => {
      for (const n of [...names, ...prefixes.map((p) => p.replace(/\/$/, ''))]) {
        const seg = n.slice(op.length)
        if (seg === '' || seg.includes('/') || seg.includes(TEMP_MARK) || !/^[A-Za-z0-9._-]+$/.test(seg) || seg === '.' || seg === '..') continue
        out.push(prefix === '' ? seg : `${prefix}/${seg}`)
      }
    })
    return [...new Set(out)].sort()
  }

  async remove(key: string, opts: { recursive?: boolean } = {}): Promise<void> {
    checkKey(key, !!opts.recursive)
    const Bucket = this.location.bucket
    if (!opts.recursive) {
      if (!(await this.head(key)) && (await this.list(key)).length > 0) throw new TypeError(`${this.where(key)}: is a prefix; remove it with { recursive: true }`)
      await this.send(key, 'remove', (s) => new s.DeleteObjectCommand({ Bucket, Key: this.objectKey(key) }))
      return
    }
    const del = async (names: string[]): Promise<void> => {
      // one DELETE per object: DeleteObjects needs a Content-MD5 that SDK v3 no longer sends (RGW asks for it)
      let i = 0
      const worker = async (): Promise<void> => {
        while (i < names.length) {
          const Key = names[i++]!
          await this.send(key, 'remove', (s) => new s.DeleteObjectCommand({ Bucket, Key }))
        }
      }
      await Promise.all(Array.from({ length: Math.min(16, names.length) }, worker))
    }
    if (key !== '') await del([this.objectKey(key)])
    const names: string[] = []
    await this.listObjects(key, this.childPrefix(key), false, (n) => {
      names.push(...n)
    })
    await del(names)
  }

  async flush(_prefix: string): Promise<void> {
    // every PUT is durable and listed once it is acknowledged
  }

  /**
   * Removes dead writers' litter under `prefix`: spool files of staged writes whose process is
   * gone, and multipart uploads initiated more than an hour ago (a live upload of one object
   * never takes that long). Returns how many.
   */
  async sweep(prefix = '', opts: { shallow?: boolean } = {}): Promise<number> {
    checkKey(prefix, true)
    let removed = 0
    let names: string[] = []
    try {
      names = fs.readdirSync(this.spool)
    } catch {
      // no spool yet
    }
    const host = os.hostname()
    for (const n of names) {
      const m = /^(.*)\.tmp-(.+)-(\d+)-[0-9a-f]+$/.exec(n)
      if (!m) continue
      const key = m[1]!.replaceAll('+', '/')
      const parent = key.includes('/') ? key.slice(0, key.lastIndexOf('/')) : ''
      const under = prefix === '' ? true : key.startsWith(prefix + '/')
      if (!under || (opts.shallow && parent !== prefix)) continue
      if (m[2] === host && pidAlive(Number(m[3]))) continue
      fs.rmSync(path.join(this.spool, n), { force: true })
      removed++
    }
    const op = this.childPrefix(prefix)
    let keyMarker: string | undefined
    let idMarker: string | undefined
    do {
      const r = await this.send<{ Uploads?: { Key?: string; UploadId?: string; Initiated?: Date }[]; IsTruncated?: boolean; NextKeyMarker?: string; NextUploadIdMarker?: string }>(prefix, 'list uploads', (s) =>
        new s.ListMultipartUploadsCommand({ Bucket: this.location.bucket, Prefix: op, KeyMarker: keyMarker, UploadIdMarker: idMarker }))
      for (const u of r.Uploads ?? []) {
        if (!u.Key || !u.UploadId || (opts.shallow && u.Key.slice(op.length).includes('/'))) continue
        if (!u.Initiated || Date.now() - u.Initiated.getTime() < STALE_UPLOAD_MS) continue
        await this.send(prefix, 'abort an upload', (s) => new s.AbortMultipartUploadCommand({ Bucket: this.location.bucket, Key: u.Key, UploadId: u.UploadId }))
        removed++
      }
      keyMarker = r.IsTruncated ? r.NextKeyMarker : undefined
      idMarker = r.IsTruncated ? r.NextUploadIdMarker : undefined
    } while (keyMarker)
    return removed
  }

  /**
   * `bfs init` on S3: creates the bucket when it is missing (as restic's init does) and says
   * whether it did. An existing bucket is left alone, so a key allowed to write into a bucket
   * but not to create buckets still inits (no CreateBucket is sent).
   */
  async ensureBucket(): Promise<boolean> {
    if (!(await this.bucketMissing())) return false
    await this.createBucket()
    this.bucketChecked = true
    return true
  }

  /** Deletes the (empty) bucket (tests clean up the buckets init made). */
  async deleteBucket(): Promise<void> {
    await this.send('', 'delete the bucket', (s) => new s.DeleteBucketCommand({ Bucket: this.location.bucket }))
    this.bucketChecked = false
  }

  /** Creates the bucket if it does not exist (tests; ensureBucket for bfs init). */
  async createBucket(): Promise<void> {
    await this.send('', 'create the bucket', (s) => new s.CreateBucketCommand({ Bucket: this.location.bucket }), (f) => (f.code === 'BucketAlreadyOwnedByYou' || f.code === 'BucketAlreadyExists' ? null : undefined))
  }
}
